/*
 * evict.c - S3-FIFO queues, sweep and ghost; see evict.h.
 */
#include "evict.h"

#include <string.h>

#include "hash.h"

#define GHOST_WAYS 8u
#define GHOST_EPOCHS 16u   /* an entry is live for this many epochs */
#define GHOST_EPOCH_BITS 5 /* so that 16 more epochs read as dead */
#define GHOST_EPOCH_MASK ((1u << GHOST_EPOCH_BITS) - 1)
#define GHOST_FP_MAX 0x7ffu /* 16 - GHOST_EPOCH_BITS bits of fingerprint */
#define GHOST_MIN_CAPACITY 64u

/* Hits an item needs while in the small queue to move to main, and the
 * credit a key returning through the ghost starts with in main (one
 * reinsertion).  Chosen by the miss ratios of the traces in
 * shared/traces (bench/README.md, "Hit ratio"). */
#define SMALL_PROMOTE_HITS 2u
#define GHOST_RETURN_FREQ 1u

/* ---------------------------------------------------------------------- */
/* FIFO queues                                                            */

static void
fifo_push(struct fifo *q, item_t *it, size_t bytes)
{
    it->next = NULL;
    if (q->head != NULL) {
        q->head->next = it;
    } else {
        q->tail = it;
    }
    q->head = it;
    q->count++;
    q->bytes += bytes;
}

static item_t *
fifo_pop(struct fifo *q)
{
    item_t *it = q->tail;
    if (it == NULL) {
        return NULL;
    }
    if (q->cursor == it) {
        q->cursor = NULL;
    }
    q->tail = it->next;
    if (q->tail == NULL) {
        q->head = NULL;
    }
    it->next = NULL;
    q->count--;
    q->bytes -= item_real_size(it);
    return it;
}

/* ---------------------------------------------------------------------- */
/* Ghost                                                                  */

static unsigned
ghost_epoch(const struct ghost *g)
{
    return g->epoch & GHOST_EPOCH_MASK;
}

/* 1 .. GHOST_FP_MAX (an entry is never 0, empty), from hash bits 16-39:
 * not the table's tag (0-15), nor the shard and bucket index (the top
 * bits). */
static unsigned
ghost_fp(uint64_t h)
{
    return (unsigned)(((h >> 16) & 0xffffff) % GHOST_FP_MAX) + 1;
}

static unsigned
entry_fp(uint16_t e)
{
    return e >> GHOST_EPOCH_BITS;
}

static uint16_t *
ghost_bucket(const struct ghost *g, uint64_t h, unsigned shard_bits)
{
    return g->slots + hash_range(h, shard_bits, g->nbuckets) * GHOST_WAYS;
}

/* Age of an entry in epochs (0 = current), modulo 2^GHOST_EPOCH_BITS. */
static unsigned
ghost_age(const struct ghost *g, uint16_t e)
{
    return (ghost_epoch(g) - e) & GHOST_EPOCH_MASK;
}

/* Reallocate the table for `room` entries; forgets everything.  Keeps the
 * old table when memory is short. */
static void
ghost_resize(struct ghost *g, struct mem *m, size_t room)
{
    size_t nbuckets = (room + GHOST_WAYS - 1) / GHOST_WAYS;
    size_t real;
    uint16_t *slots = mem_zalloc(m, nbuckets * GHOST_WAYS * sizeof(uint16_t),
                                 &real);
    if (slots == NULL) {
        return;
    }
    mem_free(g->slots);
    g->slots = slots;
    g->nbuckets = nbuckets;
    g->room = room;
    g->bytes = mem_real_size(nbuckets * GHOST_WAYS * sizeof(uint16_t));
    (void)real;
}

static void
ghost_put(struct ghost *g, uint64_t h, unsigned shard_bits)
{
    unsigned fp = ghost_fp(h);
    uint16_t *b;
    unsigned victim = 0;
    unsigned oldest = 0;

    if (g->slots == NULL) {
        return;
    }
    b = ghost_bucket(g, h, shard_bits);
    for (unsigned i = 0; i < GHOST_WAYS; i++) {
        unsigned age;
        if (b[i] == 0 || entry_fp(b[i]) == fp) {
            victim = i;
            break;
        }
        age = ghost_age(g, b[i]);
        if (age >= oldest) {
            oldest = age;
            victim = i;
        }
    }
    b[victim] = (uint16_t)(fp << GHOST_EPOCH_BITS | ghost_epoch(g));
    /* an epoch is a sixteenth of the window: entries live 16 epochs */
    if (++g->inserts >= g->capacity / GHOST_EPOCHS) {
        g->inserts = 0;
        g->epoch++;
    }
}

bool
policy_ghost_take(struct policy *p, uint64_t h)
{
    struct ghost *g = &p->ghost;
    unsigned fp = ghost_fp(h);
    uint16_t *b;

    if (g->slots == NULL) {
        return false;
    }
    b = ghost_bucket(g, h, p->shard_bits);
    for (unsigned i = 0; i < GHOST_WAYS; i++) {
        if (b[i] != 0 && entry_fp(b[i]) == fp) {
            bool live = ghost_age(g, b[i]) < GHOST_EPOCHS;
            b[i] = 0;
            return live;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------- */
/* Policy                                                                 */

void
policy_init(struct policy *p, unsigned shard_bits, size_t budget_bytes,
            size_t budget_items)
{
    memset(p, 0, sizeof(*p));
    p->shard_bits = shard_bits;
    p->small_bytes = budget_bytes / 10;
    p->small_items = budget_items / 10;
}

void
policy_deinit(struct policy *p)
{
    mem_free(p->ghost.slots);
    memset(&p->ghost, 0, sizeof(p->ghost));
}

void
policy_insert_returning(struct policy *p, item_t *it, size_t bytes)
{
    item_freq_set(it, GHOST_RETURN_FREQ);
    policy_insert(p, it, bytes, true);
}

void
policy_insert(struct policy *p, item_t *it, size_t bytes, bool in_main)
{
    if (in_main) {
        item_set(it, ITEM_MAIN);
        fifo_push(&p->main, it, bytes);
    } else {
        item_clear(it, ITEM_MAIN);
        fifo_push(&p->small, it, bytes);
    }
}

static bool
small_over(const struct policy *p)
{
    return p->small.bytes > p->small_bytes ||
           (p->small_items != 0 && p->small.count > p->small_items);
}

/* Keep the ghost's window as many keys as the cache holds items (the
 * table is reallocated, forgetting, only when it outgrows its room). */
static void
ghost_fit(struct policy *p, struct mem *m)
{
    size_t want = p->main.count + p->small.count;
    if (want < GHOST_MIN_CAPACITY) {
        want = GHOST_MIN_CAPACITY;
    }
    if (p->ghost.slots == NULL || want > p->ghost.room) {
        ghost_resize(&p->ghost, m, want + want / 4);
    }
    p->ghost.capacity = want;
}

item_t *
policy_evict(struct policy *p, struct mem *m, policy_dead_fn dead, void *ud,
             uint64_t (*hash_fn)(const item_t *, void *))
{
    for (;;) {
        item_t *it;

        if (p->small.tail != NULL &&
            (small_over(p) || p->main.tail == NULL)) {
            it = fifo_pop(&p->small);
            if (dead(it, ud)) {
                return it;
            }
            if (item_freq(it) >= SMALL_PROMOTE_HITS) {
                item_freq_set(it, 0);
                policy_insert(p, it, item_real_size(it), true);
                continue;
            }
            ghost_fit(p, m);
            ghost_put(&p->ghost, hash_fn(it, ud), p->shard_bits);
            return it;
        }
        it = fifo_pop(&p->main);
        if (it == NULL) {
            return NULL;
        }
        if (dead(it, ud)) {
            return it;
        }
        if (item_freq(it) > 0) {
            item_freq_set(it, item_freq(it) - 1);
            fifo_push(&p->main, it, item_real_size(it));
            continue;
        }
        return it;
    }
}

/* One sweep step on a queue; true if it dropped an item. */
static bool
fifo_sweep_step(struct fifo *q, policy_dead_fn dead,
                void (*drop)(item_t *it, void *ud), void *ud)
{
    item_t *next;

    if (q->tail == NULL) {
        q->passes++; /* nothing to visit: a complete pass */
        return false;
    }
    if (q->cursor == NULL) {
        if (dead(q->tail, ud)) {
            drop(fifo_pop(q), ud);
            return true;
        }
        q->cursor = q->tail;
        return false;
    }
    next = q->cursor->next;
    if (next == NULL) {
        q->cursor = NULL; /* reached the head: start over */
        q->passes++;
        return false;
    }
    if (!dead(next, ud)) {
        q->cursor = next;
        return false;
    }
    q->cursor->next = next->next;
    if (next == q->head) {
        q->head = q->cursor;
    }
    next->next = NULL;
    q->count--;
    q->bytes -= item_real_size(next);
    drop(next, ud);
    return true;
}

void
policy_sweep(struct policy *p, size_t n, policy_dead_fn dead,
             void (*drop)(item_t *it, void *ud), void *ud)
{
    for (size_t i = 0; i < n; i++) {
        fifo_sweep_step(&p->small, dead, drop, ud);
        fifo_sweep_step(&p->main, dead, drop, ud);
    }
    /* The next step's item is usually a cache miss: start it now, to be
     * there when a later write sweeps on. */
    if (p->main.cursor != NULL && p->main.cursor->next != NULL) {
        __builtin_prefetch(p->main.cursor->next);
    }
    if (p->small.cursor != NULL && p->small.cursor->next != NULL) {
        __builtin_prefetch(p->small.cursor->next);
    }
}

void
policy_walk(struct policy *p, void (*fn)(item_t *it, void *ud), void *ud)
{
    for (item_t *it = p->small.tail; it != NULL; it = it->next) {
        fn(it, ud);
    }
    for (item_t *it = p->main.tail; it != NULL; it = it->next) {
        fn(it, ud);
    }
}

void
policy_foreach(struct policy *p, void (*fn)(item_t *it, void *ud), void *ud)
{
    item_t *it;
    while ((it = fifo_pop(&p->small)) != NULL) {
        fn(it, ud);
    }
    while ((it = fifo_pop(&p->main)) != NULL) {
        fn(it, ud);
    }
}
