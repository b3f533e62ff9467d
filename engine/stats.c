/*
 * stats.c - see stats.h.
 */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

_Thread_local struct stats_tls stats_tls[STATS_TLS_SLOTS]
    __attribute__((tls_model("initial-exec")));

/* Cache ids: process-wide and never reused, so that a thread-local entry
 * for a destroyed cache can never match a new one at the same address. */
static _Atomic uint64_t stats_next_id = 1;

static const unsigned char stat_is_counter[ST_COUNT] = {
#define STAT_KIND_counter 1
#define STAT_KIND_gauge 0
#define STAT_KIND(name, kind, text) STAT_KIND_##kind,
    CORRAL_STATS_TABLE(STAT_KIND)
#undef STAT_KIND
};

void
stats_init(struct stats *s)
{
    for (int i = 0; i < ST_COUNT; i++) {
        atomic_init(&s->v[i], 0);
    }
}

void
stats_sum_gauges(const struct stats *s, uint64_t *out)
{
    for (int i = 0; i < ST_COUNT; i++) {
        if (!stat_is_counter[i]) {
            out[i] += ld_relaxed(&((struct stats *)s)->v[i]);
        }
    }
}

static void
block_init(struct stats_block *b)
{
    for (int i = 0; i < ST_COUNT; i++) {
        atomic_init(&b->v[i], 0);
    }
    b->next = NULL;
}

bool
stats_reg_init(struct stats_reg *r)
{
    memset(r, 0, sizeof(*r));
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        return false;
    }
    r->id = atomic_fetch_add(&stats_next_id, 1);
    block_init(&r->shared);
    return true;
}

void
stats_reg_deinit(struct stats_reg *r)
{
    struct stats_block *b = r->blocks;
    while (b != NULL) {
        struct stats_block *next = b->next;
        free(b);
        b = next;
    }
    pthread_mutex_destroy(&r->lock);
}

/* A map entry for a block shared by threads past STATS_BLOCKS_MAX: the
 * cache id with this bit, so that count_add()'s fast test fails. */
#define TLS_SHARED (UINT64_C(1) << 63)

static struct stats_block *
block_register(struct stats_reg *r)
{
    struct stats_block *b = NULL;

    pthread_mutex_lock(&r->lock);
    if (r->nblocks < STATS_BLOCKS_MAX &&
        posix_memalign((void **)&b, CR_CACHELINE, sizeof(*b)) == 0) {
        block_init(b);
        b->next = r->blocks;
        r->blocks = b;
        r->nblocks++;
    } else {
        b = &r->shared;
    }
    pthread_mutex_unlock(&r->lock);
    return b;
}

void
count_add_slow(struct stats_reg *r, enum stat_id id, uint64_t n)
{
    struct stats_tls e = {0};
    unsigned i;

    for (i = 0; i < STATS_TLS_SLOTS; i++) {
        if ((stats_tls[i].id & ~TLS_SHARED) == r->id) {
            e = stats_tls[i];
            break;
        }
    }
    if (e.block == NULL) {
        e.block = block_register(r);
        e.id = r->id | (e.block == &r->shared ? TLS_SHARED : 0);
        i = STATS_TLS_SLOTS - 1; /* the least recent entry goes */
    }
    /* move to the front */
    memmove(&stats_tls[1], &stats_tls[0], i * sizeof(stats_tls[0]));
    stats_tls[0] = e;
    if (e.id & TLS_SHARED) {
        add_relaxed(&e.block->v[id], n);
    } else {
        st_relaxed(&e.block->v[id], ld_relaxed(&e.block->v[id]) + n);
    }
}

static void
reg_sum_raw(struct stats_reg *r, uint64_t *out)
{
    for (int i = 0; i < ST_COUNT; i++) {
        if (stat_is_counter[i]) {
            out[i] += ld_relaxed(&r->shared.v[i]);
        }
    }
    for (struct stats_block *b = r->blocks; b != NULL; b = b->next) {
        for (int i = 0; i < ST_COUNT; i++) {
            if (stat_is_counter[i]) {
                out[i] += ld_relaxed(&b->v[i]);
            }
        }
    }
}

void
stats_reg_sum(struct stats_reg *r, uint64_t *out)
{
    uint64_t raw[ST_COUNT] = {0};

    pthread_mutex_lock(&r->lock);
    reg_sum_raw(r, raw);
    for (int i = 0; i < ST_COUNT; i++) {
        if (stat_is_counter[i]) {
            /* a counter another thread bumped between two reads can make
             * a fresh sum trail the baseline by a little: never negative */
            out[i] += raw[i] > r->base[i] ? raw[i] - r->base[i] : 0;
        }
    }
    pthread_mutex_unlock(&r->lock);
}

void
stats_reg_reset(struct stats_reg *r)
{
    uint64_t raw[ST_COUNT] = {0};

    pthread_mutex_lock(&r->lock);
    reg_sum_raw(r, raw);
    memcpy(r->base, raw, sizeof(raw));
    pthread_mutex_unlock(&r->lock);
}
