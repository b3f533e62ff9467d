/*
 * trace.c - `corral-bench trace` and `trace-table`: miss ratios of cache
 * traces replayed through the engine and through reference policies.
 *
 * Traces are libCacheSim "oracleGeneral" files compressed with zstd
 * (../shared/traces/README.md): packed 24-byte little-endian records
 *
 *   0        4                12       16                       24
 *   +--------+----------------+--------+------------------------+
 *   | time   | obj_id         | size   | next_access_vtime      |
 *   +--------+----------------+--------+------------------------+
 *
 * read here with libzstd's streaming decoder, a record at a time.
 *
 * Replay rules (the README's): every record is a get of obj_id and a miss
 * inserts it; capacity counts objects, whatever their size; the miss ratio
 * is misses / requests from a cold start.
 *
 * Policies:
 *   default  libcorral as configured by default for the capacity
 *            (corral_config_t.max_items = capacity, shards included), with a
 *            memory limit far above what the objects take, so that only the
 *            count binds.  Keys are the 8 bytes of obj_id, values empty.
 *   lru      exact LRU: a hash map from obj_id to a node of a doubly linked
 *            recency list; it must reproduce the README's self-check figures,
 *            which proves the reader and the replay rules.
 *   fifo     the same list without moves on hits (also in the self-check).
 *   opt      Belady: evict the object whose next request is farthest away,
 *            read from next_access_vtime (-1 = never again); a max-heap of
 *            next-request times.  On a miss the object is always inserted
 *            (after evicting the farthest of the objects already cached),
 *            as libCacheSim's Belady does.  No policy can beat it.
 *
 * The reference structures hold at most capacity objects and cost O(1)
 * (lru, fifo) or O(log capacity) (opt) per request.
 */
#include "bench.h"

#include <dirent.h>
#include <endian.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include <corral.h>

#include "keydist.h"

#define RECORD_SIZE 24
#define NEVER INT64_MAX

/* ---------------------------------------------------------------------- */
/* Reading                                                                */
/* ---------------------------------------------------------------------- */

struct record {
    uint64_t id;
    int64_t next; /* 1-based request index, NEVER if none */
};

struct reader {
    FILE *f;
    ZSTD_DCtx *dctx;
    void *in;
    size_t in_cap;
    ZSTD_inBuffer zin;
    char *out; /* decompressed bytes [pos, len) not yet read */
    size_t out_cap, pos, len;
    bool eof;
    const char *path;
};

static void
reader_open(struct reader *r, const char *path)
{
    memset(r, 0, sizeof(*r));
    r->path = path;
    r->f = fopen(path, "rb");
    if (r->f == NULL) {
        bench_die("%s: cannot open", path);
    }
    r->dctx = ZSTD_createDCtx();
    r->in_cap = ZSTD_DStreamInSize();
    r->in = bench_calloc(1, r->in_cap);
    r->out_cap = ZSTD_DStreamOutSize() + RECORD_SIZE;
    r->out = bench_calloc(1, r->out_cap);
    if (r->dctx == NULL) {
        bench_die("out of memory");
    }
    r->zin.src = r->in;
}

static void
reader_close(struct reader *r)
{
    ZSTD_freeDCtx(r->dctx);
    fclose(r->f);
    free(r->in);
    free(r->out);
}

/* Decompress until at least one record is buffered; false at the end. */
static bool
reader_fill(struct reader *r)
{
    while (r->len - r->pos < RECORD_SIZE) {
        ZSTD_outBuffer zout;
        size_t ret;

        /* Keep the partial record, at the front. */
        memmove(r->out, r->out + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
        if (r->zin.pos == r->zin.size) {
            if (r->eof) {
                if (r->len != 0) {
                    bench_die("%s: %zu bytes after the last whole record",
                              r->path, r->len);
                }
                return false;
            }
            r->zin.size = fread(r->in, 1, r->in_cap, r->f);
            r->zin.pos = 0;
            if (r->zin.size == 0) {
                if (ferror(r->f)) {
                    bench_die("%s: read error", r->path);
                }
                r->eof = true;
                continue;
            }
        }
        zout.dst = r->out;
        zout.size = r->out_cap;
        zout.pos = r->len;
        ret = ZSTD_decompressStream(r->dctx, &zout, &r->zin);
        if (ZSTD_isError(ret)) {
            bench_die("%s: zstd: %s", r->path, ZSTD_getErrorName(ret));
        }
        r->len = zout.pos;
    }
    return true;
}

static inline bool
reader_next(struct reader *r, struct record *out)
{
    uint64_t id, next;

    if (r->len - r->pos < RECORD_SIZE && !reader_fill(r)) {
        return false;
    }
    memcpy(&id, r->out + r->pos + 4, 8);
    memcpy(&next, r->out + r->pos + 16, 8);
    r->pos += RECORD_SIZE;
    out->id = le64toh(id);
    out->next = (int64_t)le64toh(next);
    if (out->next < 0) {
        out->next = NEVER;
    }
    return true;
}

/* ---------------------------------------------------------------------- */
/* An obj_id -> uint32 map: open addressing, linear probing, deletion by  */
/* backward shift, doubling at half full.                                 */
/* ---------------------------------------------------------------------- */

struct idmap {
    uint64_t *keys;
    uint32_t *vals; /* UINT32_MAX = empty slot */
    size_t mask, count;
};

static void
idmap_init(struct idmap *m, size_t expect)
{
    size_t cap = 64;
    while (cap < 2 * expect + 2) {
        cap <<= 1;
    }
    m->keys = bench_calloc(cap, sizeof(*m->keys));
    m->vals = bench_calloc(cap, sizeof(*m->vals));
    memset(m->vals, 0xff, cap * sizeof(*m->vals));
    m->mask = cap - 1;
    m->count = 0;
}

static void
idmap_deinit(struct idmap *m)
{
    free(m->keys);
    free(m->vals);
}

static inline size_t
idmap_slot(const struct idmap *m, uint64_t id)
{
    size_t i = (size_t)key_mix(id) & m->mask;
    while (m->vals[i] != UINT32_MAX && m->keys[i] != id) {
        i = (i + 1) & m->mask;
    }
    return i;
}

/* The value of id, or UINT32_MAX. */
static inline uint32_t
idmap_get(const struct idmap *m, uint64_t id)
{
    return m->vals[idmap_slot(m, id)];
}

static void idmap_put(struct idmap *m, uint64_t id, uint32_t val);

static void
idmap_grow(struct idmap *m)
{
    struct idmap old = *m;
    idmap_init(m, old.mask + 1);
    for (size_t i = 0; i <= old.mask; i++) {
        if (old.vals[i] != UINT32_MAX) {
            idmap_put(m, old.keys[i], old.vals[i]);
        }
    }
    idmap_deinit(&old);
}

static void
idmap_put(struct idmap *m, uint64_t id, uint32_t val)
{
    size_t i;
    if (2 * (m->count + 1) > m->mask + 1) {
        idmap_grow(m);
    }
    i = idmap_slot(m, id);
    if (m->vals[i] == UINT32_MAX) {
        m->count++;
        m->keys[i] = id;
    }
    m->vals[i] = val;
}

static void
idmap_del(struct idmap *m, uint64_t id)
{
    size_t i = idmap_slot(m, id), j = i;

    if (m->vals[i] == UINT32_MAX) {
        return;
    }
    m->count--;
    /* Backward shift: pull later members of the cluster into the hole
     * when their home slot does not lie cyclically in (hole, j]. */
    for (;;) {
        size_t home;
        m->vals[i] = UINT32_MAX;
        for (;;) {
            j = (j + 1) & m->mask;
            if (m->vals[j] == UINT32_MAX) {
                return;
            }
            home = (size_t)key_mix(m->keys[j]) & m->mask;
            if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
                break;
            }
        }
        m->keys[i] = m->keys[j];
        m->vals[i] = m->vals[j];
        i = j;
    }
}

/* ---------------------------------------------------------------------- */
/* Reference policies                                                     */
/* ---------------------------------------------------------------------- */

enum policy {
    POL_DEFAULT = 0,
    POL_LRU,
    POL_FIFO,
    POL_OPT,
    POL_S3FIFO,
    POL_COUNT
};

static const char *const policy_names[POL_COUNT] = {"default", "lru", "fifo",
                                                    "opt", "s3fifo"};

/* LRU and FIFO: nodes 0..cap-1 in a list, head = most recent. */
struct list_cache {
    struct idmap map;
    uint64_t *id;
    uint32_t *prev, *next;
    uint32_t head, tail;
    size_t size, cap;
    bool move_on_hit;
};

#define NIL UINT32_MAX

static void
list_unlink(struct list_cache *c, uint32_t n)
{
    if (c->prev[n] != NIL) {
        c->next[c->prev[n]] = c->next[n];
    } else {
        c->head = c->next[n];
    }
    if (c->next[n] != NIL) {
        c->prev[c->next[n]] = c->prev[n];
    } else {
        c->tail = c->prev[n];
    }
}

static void
list_push_head(struct list_cache *c, uint32_t n)
{
    c->prev[n] = NIL;
    c->next[n] = c->head;
    if (c->head != NIL) {
        c->prev[c->head] = n;
    }
    c->head = n;
    if (c->tail == NIL) {
        c->tail = n;
    }
}

/* One request; true on a hit. */
static bool
list_access(struct list_cache *c, uint64_t id)
{
    uint32_t n = idmap_get(&c->map, id);

    if (n != NIL) {
        if (c->move_on_hit && c->head != n) {
            list_unlink(c, n);
            list_push_head(c, n);
        }
        return true;
    }
    if (c->size < c->cap) {
        n = (uint32_t)c->size++;
    } else {
        n = c->tail;
        list_unlink(c, n);
        idmap_del(&c->map, c->id[n]);
    }
    c->id[n] = id;
    list_push_head(c, n);
    idmap_put(&c->map, id, n);
    return false;
}

/* Belady: a max-heap of (next request, id); map id -> heap position. */
struct opt_cache {
    struct idmap map;
    int64_t *when;
    uint64_t *id;
    size_t size, cap;
};

static void
opt_swap(struct opt_cache *c, size_t a, size_t b)
{
    int64_t w = c->when[a];
    uint64_t id = c->id[a];
    c->when[a] = c->when[b];
    c->id[a] = c->id[b];
    c->when[b] = w;
    c->id[b] = id;
    idmap_put(&c->map, c->id[a], (uint32_t)a);
    idmap_put(&c->map, c->id[b], (uint32_t)b);
}

static void
opt_sift_up(struct opt_cache *c, size_t i)
{
    while (i > 0 && c->when[(i - 1) / 2] < c->when[i]) {
        opt_swap(c, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void
opt_sift_down(struct opt_cache *c, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, big = i;
        if (l < c->size && c->when[l] > c->when[big]) {
            big = l;
        }
        if (r < c->size && c->when[r] > c->when[big]) {
            big = r;
        }
        if (big == i) {
            return;
        }
        opt_swap(c, i, big);
        i = big;
    }
}

static bool
opt_access(struct opt_cache *c, const struct record *rec)
{
    uint32_t pos = idmap_get(&c->map, rec->id);
    size_t i;

    if (pos != NIL) {
        /* Its key was this request's time; the next one is later. */
        c->when[pos] = rec->next;
        opt_sift_up(c, pos);
        return true;
    }
    if (c->size == c->cap) {
        idmap_del(&c->map, c->id[0]);
        c->size--;
        if (c->size > 0) {
            c->when[0] = c->when[c->size];
            c->id[0] = c->id[c->size];
            idmap_put(&c->map, c->id[0], 0);
            opt_sift_down(c, 0);
        }
    }
    i = c->size++;
    c->when[i] = rec->next;
    c->id[i] = rec->id;
    idmap_put(&c->map, rec->id, (uint32_t)i);
    opt_sift_up(c, i);
    return false;
}

/*
 * S3-FIFO as a reference (Yang et al., SOSP 2023), with its parameters
 * exposed, to see how the engine's implementation compares with the
 * algorithm and how the miss ratio moves with the small queue's size.
 *
 *   1. A hit increments the object's counter, capped at 3.
 *   2. A miss inserts the object into the main queue if its id is in the
 *      ghost (and removes it there), else into the small queue.
 *   3. To make room: when the small queue holds at least its share of the
 *      capacity (or main is empty), its oldest object moves to main if its
 *      counter is >= the threshold (counter reset), else it is evicted and
 *      its id enters the ghost; otherwise main's oldest object is evicted
 *      if its counter is 0, else the counter drops by one and the object
 *      goes back to main's head.
 *   4. The ghost remembers as many ids as main can hold (FIFO).
 */
static double s3_small = 0.10; /* the small queue's share of capacity */
static unsigned s3_threshold = 1;

struct s3_cache {
    struct idmap map;       /* id -> node */
    struct idmap ghost_map; /* id -> ghost ring slot */
    uint64_t *id;
    uint8_t *freq, *in_main;
    uint32_t *prev, *next;
    uint32_t head[2], tail[2]; /* [0] small, [1] main; head = newest */
    size_t count[2];
    uint32_t *free_nodes;
    size_t nfree;
    size_t cap, small_cap;
    uint64_t *ghost; /* ring of ids */
    size_t ghost_cap, ghost_pos, ghost_len;
};

static void
s3_init(struct s3_cache *c, size_t cap)
{
    memset(c, 0, sizeof(*c));
    c->cap = cap;
    c->small_cap = (size_t)((double)cap * s3_small);
    if (c->small_cap < 1) {
        c->small_cap = 1;
    }
    c->ghost_cap = cap - c->small_cap > 0 ? cap - c->small_cap : 1;
    idmap_init(&c->map, cap);
    idmap_init(&c->ghost_map, c->ghost_cap);
    c->id = bench_calloc(cap, sizeof(*c->id));
    c->freq = bench_calloc(cap, 1);
    c->in_main = bench_calloc(cap, 1);
    c->prev = bench_calloc(cap, sizeof(*c->prev));
    c->next = bench_calloc(cap, sizeof(*c->next));
    c->free_nodes = bench_calloc(cap, sizeof(*c->free_nodes));
    for (size_t i = 0; i < cap; i++) {
        c->free_nodes[i] = (uint32_t)(cap - 1 - i);
    }
    c->nfree = cap;
    c->head[0] = c->head[1] = c->tail[0] = c->tail[1] = NIL;
    c->ghost = bench_calloc(c->ghost_cap, sizeof(*c->ghost));
}

static void
s3_deinit(struct s3_cache *c)
{
    idmap_deinit(&c->map);
    idmap_deinit(&c->ghost_map);
    free(c->id);
    free(c->freq);
    free(c->in_main);
    free(c->prev);
    free(c->next);
    free(c->free_nodes);
    free(c->ghost);
}

static void
s3_push(struct s3_cache *c, int q, uint32_t n)
{
    c->in_main[n] = (uint8_t)q;
    c->prev[n] = NIL;
    c->next[n] = c->head[q];
    if (c->head[q] != NIL) {
        c->prev[c->head[q]] = n;
    }
    c->head[q] = n;
    if (c->tail[q] == NIL) {
        c->tail[q] = n;
    }
    c->count[q]++;
}

/* Remove the oldest node of queue q. */
static uint32_t
s3_pop(struct s3_cache *c, int q)
{
    uint32_t n = c->tail[q];
    c->tail[q] = c->prev[n];
    if (c->tail[q] != NIL) {
        c->next[c->tail[q]] = NIL;
    } else {
        c->head[q] = NIL;
    }
    c->count[q]--;
    return n;
}

static void
s3_ghost_add(struct s3_cache *c, uint64_t id)
{
    if (c->ghost_len == c->ghost_cap) {
        uint64_t old = c->ghost[c->ghost_pos];
        /* Forget the overwritten id unless it was re-added later. */
        if (idmap_get(&c->ghost_map, old) == c->ghost_pos) {
            idmap_del(&c->ghost_map, old);
        }
    } else {
        c->ghost_len++;
    }
    c->ghost[c->ghost_pos] = id;
    idmap_put(&c->ghost_map, id, (uint32_t)c->ghost_pos);
    c->ghost_pos = (c->ghost_pos + 1) % c->ghost_cap;
}

static void
s3_evict(struct s3_cache *c)
{
    for (;;) {
        uint32_t n;
        if (c->count[0] > 0 &&
            (c->count[0] >= c->small_cap || c->count[1] == 0)) {
            n = s3_pop(c, 0);
            if (c->freq[n] >= s3_threshold) {
                c->freq[n] = 0;
                s3_push(c, 1, n);
                continue;
            }
            s3_ghost_add(c, c->id[n]);
        } else {
            n = s3_pop(c, 1);
            if (c->freq[n] > 0) {
                c->freq[n]--;
                s3_push(c, 1, n);
                continue;
            }
        }
        idmap_del(&c->map, c->id[n]);
        c->free_nodes[c->nfree++] = n;
        return;
    }
}

static bool
s3_access(struct s3_cache *c, uint64_t id)
{
    uint32_t n = idmap_get(&c->map, id);
    bool ghost;

    if (n != NIL) {
        if (c->freq[n] < 3) {
            c->freq[n]++;
        }
        return true;
    }
    if (c->nfree == 0) {
        s3_evict(c);
    }
    n = c->free_nodes[--c->nfree];
    c->id[n] = id;
    c->freq[n] = 0;
    ghost = idmap_get(&c->ghost_map, id) != NIL;
    if (ghost) {
        idmap_del(&c->ghost_map, id);
    }
    s3_push(c, ghost ? 1 : 0, n);
    idmap_put(&c->map, id, n);
    return false;
}

/* ---------------------------------------------------------------------- */
/* Replay                                                                 */
/* ---------------------------------------------------------------------- */

struct result {
    uint64_t requests, misses;
    double seconds;
    /* default policy only */
    unsigned shards;
    uint64_t evictions, store_failures, mem_used, limit;
    uint64_t curr_items;
};

static void
replay(const char *path, size_t capacity, enum policy pol, struct result *res)
{
    struct reader rd;
    struct record rec;
    struct list_cache lc;
    struct opt_cache oc;
    struct s3_cache sc;
    corral_t *cache = NULL;
    uint64_t t0 = bench_now_ns();

    memset(res, 0, sizeof(*res));
    memset(&lc, 0, sizeof(lc));
    memset(&oc, 0, sizeof(oc));
    memset(&sc, 0, sizeof(sc));
    if (capacity == 0 || capacity >= UINT32_MAX) {
        bench_usage_error("--capacity: 1 .. %u", UINT32_MAX - 1);
    }
    switch (pol) {
    case POL_DEFAULT: {
        corral_config_t cfg;
        corral_status_t st;
        corral_config_init(&cfg);
        cfg.max_items = capacity;
        /* Empty values: an item takes well under 256 bytes with its share
         * of table and ghost, so this limit never binds. */
        cfg.max_memory = capacity * 1024 + (256u << 20);
        st = corral_create(&cfg, &cache);
        if (st != CORRAL_OK) {
            bench_die("corral_create: %s", corral_strerror(st));
        }
        corral_config_get(cache, &cfg);
        res->shards = cfg.shards;
        res->limit = cfg.max_memory;
        break;
    }
    case POL_LRU:
    case POL_FIFO:
        idmap_init(&lc.map, capacity);
        lc.id = bench_calloc(capacity, sizeof(*lc.id));
        lc.prev = bench_calloc(capacity, sizeof(*lc.prev));
        lc.next = bench_calloc(capacity, sizeof(*lc.next));
        lc.head = lc.tail = NIL;
        lc.cap = capacity;
        lc.move_on_hit = pol == POL_LRU;
        break;
    case POL_S3FIFO:
        s3_init(&sc, capacity);
        break;
    default:
        idmap_init(&oc.map, capacity);
        oc.when = bench_calloc(capacity, sizeof(*oc.when));
        oc.id = bench_calloc(capacity, sizeof(*oc.id));
        oc.cap = capacity;
        break;
    }

    reader_open(&rd, path);
    while (reader_next(&rd, &rec)) {
        bool hit;
        res->requests++;
        switch (pol) {
        case POL_DEFAULT: {
            corral_item_t *it;
            uint64_t key = htole64(rec.id);
            hit = corral_get(cache, &key, sizeof(key), &it) == CORRAL_OK;
            if (hit) {
                corral_item_release(it);
            } else if (corral_set(cache, &key, sizeof(key), NULL, 0, 0, 0) !=
                       CORRAL_OK) {
                res->store_failures++;
            }
            break;
        }
        case POL_LRU:
        case POL_FIFO:
            hit = list_access(&lc, rec.id);
            break;
        case POL_S3FIFO:
            hit = s3_access(&sc, rec.id);
            break;
        default:
            hit = opt_access(&oc, &rec);
            break;
        }
        res->misses += !hit;
    }
    reader_close(&rd);
    res->seconds = (double)(bench_now_ns() - t0) / 1e9;

    if (cache != NULL) {
        corral_stats_t st;
        corral_stats(cache, &st, sizeof(st));
        res->evictions = st.evictions;
        res->mem_used = st.mem_used;
        res->curr_items = st.curr_items;
        corral_destroy(cache);
    }
    idmap_deinit(&lc.map);
    free(lc.id);
    free(lc.prev);
    free(lc.next);
    idmap_deinit(&oc.map);
    free(oc.when);
    free(oc.id);
    if (pol == POL_S3FIFO) {
        s3_deinit(&sc);
    }
}

static double
miss_ratio(const struct result *r)
{
    return r->requests ? (double)r->misses / (double)r->requests : 0;
}

static bool
parse_policy(const char *s, enum policy *out)
{
    for (int i = 0; i < POL_COUNT; i++) {
        if (strcmp(s, policy_names[i]) == 0) {
            *out = (enum policy)i;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------- */
/* corral-bench trace FILE --capacity N [--policy P]                      */
/* ---------------------------------------------------------------------- */

int
bench_trace_main(int argc, char **argv)
{
    const char *path = NULL;
    size_t capacity = 0;
    enum policy pol = POL_DEFAULT;
    struct result res;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: corral-bench trace FILE.zst --capacity N "
                   "[--policy default|lru|fifo|opt|s3fifo]\n"
                   "                         [--small R] [--threshold T]\n"
                   "\n"
                   "Replays a libCacheSim oracleGeneral trace: every "
                   "record a get, a miss\n"
                   "inserts; capacity in objects.  default is libcorral; "
                   "the others are\n"
                   "reference simulations (s3fifo: small queue share R, "
                   "default 0.10, and\n"
                   "move-to-main threshold T, default 1).  The last line "
                   "is\n"
                   "miss_ratio=0.NNNN requests=R misses=M\n");
            return 0;
        } else if (strcmp(a, "--capacity") == 0 && i + 1 < argc) {
            capacity = bench_parse_size(a, argv[++i], false);
        } else if (strcmp(a, "--policy") == 0 && i + 1 < argc) {
            if (!parse_policy(argv[++i], &pol)) {
                bench_usage_error("--policy: default, lru, fifo, opt or "
                                  "s3fifo");
            }
        } else if (strcmp(a, "--small") == 0 && i + 1 < argc) {
            s3_small = bench_parse_double(a, argv[++i]);
            if (s3_small <= 0 || s3_small >= 1) {
                bench_usage_error("--small: between 0 and 1");
            }
        } else if (strcmp(a, "--threshold") == 0 && i + 1 < argc) {
            s3_threshold = (unsigned)bench_parse_size(a, argv[++i], false);
        } else if (a[0] != '-' && path == NULL) {
            path = a;
        } else {
            bench_usage_error("unknown option or missing value: %s", a);
        }
    }
    if (path == NULL || capacity == 0) {
        bench_usage_error("trace needs FILE.zst and --capacity N");
    }
    replay(path, capacity, pol, &res);
    if (pol == POL_S3FIFO) {
        printf("s3fifo: small queue %.2f of capacity, move-to-main "
               "threshold %u\n",
               s3_small, s3_threshold);
    }
    printf("trace %s capacity %zu policy %s: %.2f s, %.2f M requests/s\n", path,
           capacity, policy_names[pol], res.seconds,
           (double)res.requests / res.seconds / 1e6);
    if (pol == POL_DEFAULT) {
        printf("engine: %u shards, %llu items at the end, %llu evictions, "
               "%llu failed stores, mem_used %llu of %llu bytes\n",
               res.shards, (unsigned long long)res.curr_items,
               (unsigned long long)res.evictions,
               (unsigned long long)res.store_failures,
               (unsigned long long)res.mem_used, (unsigned long long)res.limit);
    }
    printf("miss_ratio=%.4f requests=%llu misses=%llu\n", miss_ratio(&res),
           (unsigned long long)res.requests, (unsigned long long)res.misses);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* corral-bench trace-table [DIR]                                         */
/* ---------------------------------------------------------------------- */

/* The bar of issue 6: the best of the well-known policies as libCacheSim
 * simulates them, per trace and fraction (1 %, 10 %). */
static const struct bar {
    const char *trace;
    double best[2];
    double bar[2]; /* 1.05 x best, as the issue rounds it */
    const char *who[2];
} bars[] = {
    {"scarab_recs", {0.5725, 0.3718}, {0.6011, 0.3904}, {"S3-FIFO", "S3-FIFO"}},
    {"cache2k_orm_busy_3M", {0.2492, 0.1158}, {0.2617, 0.1216}, {"2Q", "2Q"}},
    {"arc_oltp", {0.5353, 0.3222}, {0.5621, 0.3383}, {"S3-FIFO", "S3-FIFO"}},
    {"cloudphysics_io", {0.8275, 0.7518}, {0.8689, 0.7894}, {"ARC", "LIRS"}},
};

static const struct bar *
find_bar(const char *name)
{
    for (size_t i = 0; i < sizeof(bars) / sizeof(bars[0]); i++) {
        size_t n = strlen(bars[i].trace);
        if (strncmp(name, bars[i].trace, n) == 0 && name[n] == '.') {
            return &bars[i];
        }
    }
    return NULL;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t
count_unique(const char *path, uint64_t *out_requests)
{
    struct reader rd;
    struct record rec;
    struct idmap m;
    size_t n;

    idmap_init(&m, 1u << 16);
    reader_open(&rd, path);
    *out_requests = 0;
    while (reader_next(&rd, &rec)) {
        (*out_requests)++;
        if (idmap_get(&m, rec.id) == NIL) {
            idmap_put(&m, rec.id, 0);
        }
    }
    reader_close(&rd);
    n = m.count;
    idmap_deinit(&m);
    return n;
}

int
bench_trace_table_main(int argc, char **argv)
{
    const char *dir = "/work/shared/traces";
    static const unsigned pct[2] = {1, 10};
    unsigned runs = 3;
    char *names[64];
    size_t nnames = 0;
    unsigned met = 0, cells = 0, beat_lru = 0, goal = 0, opt_beaten = 0;
    struct dirent *de;
    DIR *d;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: corral-bench trace-table [--runs N] [DIR]\n"
                   "\n"
                   "Replays every *.zst trace in DIR (default %s) at 1 %% "
                   "and 10 %% of its\n"
                   "unique objects with the lru, fifo, s3fifo and opt "
                   "policies once and the default\n"
                   "policy N times (default 3: each cache draws its own "
                   "hash seed), and\n"
                   "prints the miss ratios beside issue 6's bar.\n",
                   dir);
            return 0;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = (unsigned)bench_parse_size("--runs", argv[++i], false);
            if (runs < 1) {
                bench_usage_error("--runs: at least 1");
            }
        } else if (argv[i][0] != '-') {
            dir = argv[i];
        } else {
            bench_usage_error("unknown option: %s", argv[i]);
        }
    }
    d = opendir(dir);
    if (d == NULL) {
        bench_die("%s: cannot open directory", dir);
    }
    while ((de = readdir(d)) != NULL && nnames < 64) {
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".zst") == 0) {
            names[nnames++] = strdup(de->d_name);
        }
    }
    closedir(d);
    if (nnames == 0) {
        bench_die("%s: no .zst traces", dir);
    }
    qsort(names, nnames, sizeof(names[0]), cmp_str);

    printf("miss ratios; default = libcorral's default policy (mean, and "
           "min..max, of %u runs)\n\n",
           runs);
    printf("%-19s %4s %6s %-24s %6s %6s %6s %6s %6s %6s  %s\n", "trace", "size",
           "cap", "default", "lru", "fifo", "s3fifo", "opt", "best", "bar",
           "verdict (worst default run)");
    for (size_t t = 0; t < nnames; t++) {
        char path[4096];
        char shortname[64];
        const struct bar *bar = find_bar(names[t]);
        uint64_t requests;
        size_t unique;
        char *dot;

        snprintf(path, sizeof(path), "%s/%s", dir, names[t]);
        snprintf(shortname, sizeof(shortname), "%s", names[t]);
        dot = strchr(shortname, '.');
        if (dot != NULL) {
            *dot = '\0';
        }
        unique = count_unique(path, &requests);
        for (int f = 0; f < 2; f++) {
            size_t cap = unique * pct[f] / 100;
            struct result r;
            double mr[POL_COUNT], lo = 1, hi = 0, sum = 0;
            char dbuf[64];
            if (cap == 0) {
                continue;
            }
            for (int p = POL_LRU; p < POL_COUNT; p++) {
                replay(path, cap, (enum policy)p, &r);
                mr[p] = miss_ratio(&r);
            }
            for (unsigned k = 0; k < runs; k++) {
                double m;
                replay(path, cap, POL_DEFAULT, &r);
                m = miss_ratio(&r);
                sum += m;
                lo = m < lo ? m : lo;
                hi = m > hi ? m : hi;
            }
            mr[POL_DEFAULT] = sum / runs;
            snprintf(dbuf, sizeof(dbuf), "%.4f (%.4f..%.4f)", sum / runs, lo,
                     hi);
            printf("%-19s %3u%% %6zu %-24s %6.4f %6.4f %6.4f %6.4f", shortname,
                   pct[f], cap, dbuf, mr[POL_LRU], mr[POL_FIFO], mr[POL_S3FIFO],
                   mr[POL_OPT]);
            if (bar != NULL) {
                /* Compared as the issue writes them: to four decimals. */
                double worst = round(hi * 1e4) / 1e4;
                bool ok = worst <= bar->bar[f] + 1e-9;
                bool lru = hi <= mr[POL_LRU];
                cells++;
                met += ok;
                beat_lru += lru;
                goal += hi <= bar->best[f] * 1.02;
                printf(" %6.4f %6.4f  %s, %s lru; x%.3f of best (%s)",
                       bar->best[f], bar->bar[f], ok ? "met" : "MISSED",
                       lru ? "<=" : "WORSE than", hi / bar->best[f],
                       bar->who[f]);
            }
            for (int p = 0; p < POL_COUNT; p++) {
                double m = p == POL_DEFAULT ? lo : mr[p];
                if (p != POL_OPT && m < mr[POL_OPT]) {
                    printf("  BUG: %s beats opt", policy_names[p]);
                    opt_beaten++;
                }
            }
            printf("\n");
        }
        printf("%-19s %llu requests, %zu unique objects\n", "",
               (unsigned long long)requests, unique);
        free(names[t]);
    }
    printf("\ndefault policy, worst of %u runs: %u of %u cells within the bar "
           "(1.05 x best known), %u of %u within the goal (1.02 x best), %u "
           "of %u no worse than lru; nothing beat opt: %s\n",
           runs, met, cells, goal, cells, beat_lru, cells,
           opt_beaten == 0 ? "yes" : "NO");
    return 0;
}
