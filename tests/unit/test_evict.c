/*
 * test_evict.c - the memory limit and S3-FIFO eviction.
 *
 * The limit: while a cache is filled far past max_memory with values of
 * many sizes, mem_used never exceeds it, in total or in any shard, and the
 * engine's accounting stays exact (each shard's mem_used is its table, its
 * ghost and its queued items, nothing else).  Evictions happen and are
 * counted (evictions, evicted_unfetched; total_items = curr_items +
 * evictions for distinct keys).
 *
 * The policy: a key read a few times survives a scan of one-time keys ten
 * times the cache's size, which would flush an LRU; a key evicted as a
 * one-timer and stored again soon after is a ghost hit and goes straight to
 * the main queue, where the next scan does not reach it.
 *
 * Limits: max_items bounds curr_items; items larger than max_item_size are
 * refused with ETOOBIG and the largest allowed item fits in a full cache.
 * Pinned items never block eviction: the engine evicts them (the reader
 * keeps its copy), so a cache whose every item is pinned still stores.
 *
 * The test looks inside the cache (cache.h) only to check accounting and
 * queue membership.
 */
#include "cache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounting.h"
#include "cu_main.h"

#define NS 1000000000ull
#define T0 1700000000ull
#define MIB ((size_t)1 << 20)
#define K(s) (s), (sizeof(s) - 1)

static uint64_t
fake_clock(void *ud)
{
    (void)ud;
    return T0 * NS;
}

static corral_t *
new_cache(size_t max_memory, size_t max_item_size, unsigned shards,
          size_t max_items)
{
    corral_config_t cfg;
    corral_t *c = NULL;

    corral_config_init(&cfg);
    cfg.clock = fake_clock;
    cfg.max_memory = max_memory;
    cfg.max_item_size = max_item_size;
    cfg.shards = shards;
    cfg.max_items = max_items;
    CU_ASSERT_EQUAL_FATAL(corral_create(&cfg, &c), CORRAL_OK);
    return c;
}

static corral_stats_t
stats_of(corral_t *c)
{
    corral_stats_t s;
    corral_stats(c, &s, sizeof(s));
    return s;
}

static uint64_t rng_state;

static uint64_t
rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* The accounting invariants (accounting.h), any segment allowed. */
static bool
accounting_ok(corral_t *c)
{
    return shards_accounting_ok(c, false);
}

/* A value size from a spread that crosses many allocation size classes. */
static size_t
some_size(size_t max_value)
{
    static const size_t sizes[] = {0,    1,    7,    15,    16,    33,
                                   100,  200,  500,  1000,  1500,  3000,
                                   4000, 8000, 9000, 20000, 40000, 70000};
    uint64_t r = rng();
    size_t n;

    if (r % 8 == 0) {
        n = (size_t)(r >> 8) % (max_value + 1);
    } else {
        n = sizes[(r >> 8) % (sizeof(sizes) / sizeof(sizes[0]))];
    }
    return n > max_value ? max_value : n;
}

/* ---------------------------------------------------------------------- */
/* The limit                                                              */

static void
fill_and_check(size_t max_memory, size_t max_item_size, unsigned shards)
{
    corral_t *c = new_cache(max_memory, max_item_size, shards, 0);
    size_t max_value = max_item_size - 300;
    char *value = malloc(max_item_size);
    size_t stored = 0;
    bool ok = true;
    corral_stats_t st;
    char key[32];

    CU_ASSERT_PTR_NOT_NULL_FATAL(value);
    memset(value, 'v', max_item_size);
    rng_state = 0x9e3779b97f4a7c15u ^ max_memory ^ shards;
    /* ten times the limit, in distinct keys and overwrites */
    while (stored < 10 * max_memory) {
        size_t n = some_size(max_value);
        unsigned k = (unsigned)(rng() % 4 == 0 ? rng() % 64 : stored);
        corral_status_t rc;

        snprintf(key, sizeof(key), "key:%u", k);
        rc = corral_set(c, key, strlen(key), value, n, (uint32_t)k, 0);
        CU_ASSERT_EQUAL(rc, CORRAL_OK);
        stored += n + 40;
        if (ok && !accounting_ok(c)) {
            ok = false;
        }
    }
    CU_ASSERT(ok);
    st = stats_of(c);
    CU_ASSERT(st.evictions > 0);
    CU_ASSERT(st.mem_used <= max_memory);
    CU_ASSERT(st.bytes <= st.mem_used);
    /* the cache is well used: the policy did not throw away half of it */
    CU_ASSERT(st.mem_used > max_memory / 2);
    free(value);
    corral_destroy(c);
}

static void
test_limit_1mib_one_shard(void)
{
    fill_and_check(MIB, 64 * 1024, 1);
}

static void
test_limit_auto_shards(void)
{
    fill_and_check(8 * MIB, 128 * 1024, 0);
}

static void
test_limit_many_shards(void)
{
    fill_and_check(4 * MIB, 16 * 1024, 16);
}

/* Very small items: the table and the ghost grow, and count too. */
static void
test_limit_tiny_items(void)
{
    corral_t *c = new_cache(MIB, 4096, 1, 0);
    bool ok = true;
    char key[32];

    for (unsigned i = 0; i < 80000; i++) {
        size_t n = (size_t)snprintf(key, sizeof(key), "%u", i);
        CU_ASSERT_EQUAL(corral_set(c, key, n, NULL, 0, 0, 0), CORRAL_OK);
        if (ok && (i % 7 == 0 || i < 30000) && !accounting_ok(c)) {
            ok = false;
            printf("  after %u items\n", i);
        }
    }
    CU_ASSERT(ok);
    CU_ASSERT(stats_of(c).evictions > 0);
    corral_destroy(c);
}

/* A full cache of large items that turns to small ones: the item count
 * rises while memory is full, so the hash table grows with no slack left;
 * that growth must be paid for by eviction like anything else. */
static void
test_limit_table_growth_when_full(void)
{
    corral_t *c = new_cache(MIB, 8192, 1, 0);
    static char value[4000];
    bool ok = true;
    char key[32];

    for (unsigned i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "big%u", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, sizeof(value),
                                   0, 0),
                        CORRAL_OK);
    }
    CU_ASSERT(accounting_ok(c));
    for (unsigned i = 0; i < 40000 && ok; i++) {
        snprintf(key, sizeof(key), "small%u", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, 8, 0, 0),
                        CORRAL_OK);
        if (!accounting_ok(c)) {
            printf("  after %u small items\n", i);
            ok = false;
        }
    }
    CU_ASSERT(ok);
    CU_ASSERT(stats_of(c).curr_items > 10000);
    corral_destroy(c);
}

/* A cache filled far past its budget with items of one size: its table
 * was sized, on its last growth, for the count the budget holds, so it is
 * at least 55 % full (the allocator's size class may add up to a quarter
 * to the slots asked for, and the larger table's own bytes come out of
 * the budget; by 1.5-fold growth alone it would stand anywhere from 50 to
 * 75 %).  Budgets an eighth apart put the count at points all along one
 * growth step. */
static void
test_table_load_when_full(void)
{
    char key[32], value[32];

    memset(value, 'v', sizeof(value));
    for (unsigned k = 0; k < 8; k++) {
        size_t budget = MIB + k * (MIB / 8);
        corral_t *c = new_cache(budget, 4096, 1, 0);
        corral_stats_t st;
        double load;

        for (unsigned i = 0; i < 2 * budget / 48; i++) {
            size_t n = (size_t)snprintf(key, sizeof(key), "k%015u", i);
            CU_ASSERT_EQUAL(corral_set(c, key, n, value, sizeof(value), 0, 0),
                            CORRAL_OK);
        }
        st = stats_of(c);
        CU_ASSERT(st.evictions > 0);
        load = (double)st.curr_items * 8 / (double)st.hash_bytes;
        if (load < 0.55 || load > 0.75) {
            printf("  budget %zu: %llu items, %llu table bytes, load %.3f\n",
                   budget, (unsigned long long)st.curr_items,
                   (unsigned long long)st.hash_bytes, load);
        }
        CU_ASSERT(load >= 0.55 && load <= 0.75);
        CU_ASSERT(accounting_ok(c));
        corral_destroy(c);
    }
}

/* Unique keys, never read: every item leaves by eviction, unfetched. */
static void
test_evictions_counted(void)
{
    corral_t *c = new_cache(MIB, 4096, 1, 0);
    corral_stats_t st;
    char key[32], value[500];
    unsigned n = 20000;

    memset(value, 'x', sizeof(value));
    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "u%u", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, sizeof(value),
                                   0, 0),
                        CORRAL_OK);
    }
    st = stats_of(c);
    CU_ASSERT(st.evictions > 0);
    CU_ASSERT_EQUAL(st.total_items, n);
    CU_ASSERT_EQUAL(st.curr_items + st.evictions, n);
    CU_ASSERT_EQUAL(st.evicted_unfetched, st.evictions);
    CU_ASSERT_EQUAL(st.reclaimed, 0);
    /* The survivors are the newest keys, but for a few: a new key whose
     * 11-bit fingerprint matches a remembered evicted one (odds of about
     * 8 in 2047 per key: 26 to 71 of these 20000 in 30 runs, each cache
     * drawing its own hash seed) goes straight to the main queue and
     * outlives newer keys in the small one. */
    {
        char buf[600];
        size_t live = 0;
        for (unsigned i = n - (unsigned)st.curr_items; i < n; i++) {
            snprintf(key, sizeof(key), "u%u", i);
            live += corral_get_copy(c, key, strlen(key), buf, sizeof(buf),
                                    NULL, NULL, NULL) == CORRAL_OK;
        }
        CU_ASSERT(live <= st.curr_items && live + n / 100 >= st.curr_items);
    }
    corral_destroy(c);
}

/* Fetched items that are evicted are not counted as unfetched. */
static void
test_evicted_fetched(void)
{
    corral_t *c = new_cache(MIB, 4096, 1, 0);
    corral_stats_t st;
    char key[32], value[500];
    unsigned n = 20000;

    memset(value, 'x', sizeof(value));
    for (unsigned i = 0; i < n; i++) {
        char buf[600];
        snprintf(key, sizeof(key), "u%u", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, sizeof(value),
                                   0, 0),
                        CORRAL_OK);
        if (i % 2 == 0) {
            CU_ASSERT_EQUAL(corral_get_copy(c, key, strlen(key), buf,
                                            sizeof(buf), NULL, NULL, NULL),
                            CORRAL_OK);
        }
    }
    st = stats_of(c);
    CU_ASSERT(st.evictions > 0);
    CU_ASSERT_EQUAL(st.curr_items + st.evictions, n);
    CU_ASSERT(st.evicted_unfetched < st.evictions);
    CU_ASSERT(st.evicted_unfetched > 0);
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* S3-FIFO                                                                */

static bool
present(corral_t *c, const char *key)
{
    corral_get_opts_t o = {0};
    corral_item_t *it;

    o.flags = CORRAL_GET_NOBUMP; /* looking must not change the outcome */
    if (corral_get_ex(c, key, strlen(key), &o, &it, NULL) != CORRAL_OK) {
        return false;
    }
    corral_item_release(it);
    return true;
}

/* Whether the key's item is in the main queue. */
static bool
in_main(corral_t *c, const char *key)
{
    corral_get_opts_t o = {0};
    corral_item_t *it;
    bool main;

    o.flags = CORRAL_GET_NOBUMP;
    if (corral_get_ex(c, key, strlen(key), &o, &it, NULL) != CORRAL_OK) {
        return false;
    }
    main = item_has(pin_item(it), ITEM_MAIN);
    corral_item_release(it);
    return main;
}

/* Store `count` one-time keys named prefix<i>. */
static void
scan(corral_t *c, const char *prefix, unsigned count, size_t vlen)
{
    static char value[4096];
    char key[CORRAL_KEY_MAX];

    memset(value, 's', sizeof(value));
    for (unsigned i = 0; i < count; i++) {
        snprintf(key, sizeof(key), "%.32s%u", prefix, i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, vlen, 0, 0),
                        CORRAL_OK);
    }
}

/*
 * A few hot keys, read a handful of times, then a scan of one-time keys
 * ten times the cache's capacity with no further reads of the hot keys.
 * An LRU would have flushed them after one capacity of the scan; S3-FIFO
 * keeps them in its main queue.  Keys written but never read go.
 */
static void
test_scan_resistance(void)
{
    corral_t *c = new_cache(MIB, 4096, 1, 0);
    char key[32], buf[600];
    unsigned capacity;
    corral_stats_t st;

    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "hot%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), K("hot value"), 0, 0),
                        CORRAL_OK);
        snprintf(key, sizeof(key), "cold%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), K("cold value"), 0,
                                   0),
                        CORRAL_OK);
    }
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < 20; i++) {
            snprintf(key, sizeof(key), "hot%d", i);
            CU_ASSERT_EQUAL(corral_get_copy(c, key, strlen(key), buf,
                                            sizeof(buf), NULL, NULL, NULL),
                            CORRAL_OK);
        }
    }
    /* about how many 500-byte items the cache holds */
    capacity = (unsigned)(MIB / 600);
    scan(c, "scan", 10 * capacity, 500);
    st = stats_of(c);
    CU_ASSERT(st.evictions >= 8 * capacity);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "hot%d", i);
        CU_ASSERT(present(c, key));
        CU_ASSERT(in_main(c, key));
        snprintf(key, sizeof(key), "cold%d", i);
        CU_ASSERT(!present(c, key));
    }
    /* most of the scan is gone, the end of it is there */
    CU_ASSERT(!present(c, "scan0"));
    snprintf(key, sizeof(key), "scan%u", 10 * capacity - 1);
    CU_ASSERT(present(c, key));
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);
}

/*
 * A key evicted from the small queue without being read is remembered by
 * the ghost; stored again soon after, it goes straight to main and the
 * next scan leaves it alone, while a key stored for the first time just
 * before that scan is evicted by it.
 */
static void
test_ghost_hit_returns_to_main(void)
{
    corral_t *c = new_cache(MIB, 4096, 1, 0);
    unsigned capacity = (unsigned)(MIB / 600);
    unsigned i;
    char key[32];

    CU_ASSERT_EQUAL(corral_set(c, K("returning"), K("v1"), 0, 0), CORRAL_OK);
    CU_ASSERT(!in_main(c, "returning"));
    /* scan until it has been evicted, a little at a time */
    for (i = 0; i < 4 * capacity && present(c, "returning"); i++) {
        snprintf(key, sizeof(key), "a%u.", i);
        scan(c, key, 1, 500);
    }
    CU_ASSERT_FATAL(!present(c, "returning"));
    CU_ASSERT(stats_of(c).evictions > 0);

    /* back soon after: a ghost hit */
    CU_ASSERT_EQUAL(corral_set(c, K("returning"), K("v2"), 0, 0), CORRAL_OK);
    CU_ASSERT(in_main(c, "returning"));
    CU_ASSERT_EQUAL(corral_set(c, K("newcomer"), K("v"), 0, 0), CORRAL_OK);
    CU_ASSERT(!in_main(c, "newcomer"));

    scan(c, "b", 3 * capacity, 500);
    CU_ASSERT(present(c, "returning"));
    CU_ASSERT(!present(c, "newcomer"));
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);
}

/*
 * Keys that keep being read stay through sustained churn, while the main
 * queue itself is bounded: keys that stop being read leave it.  The cache
 * first reaches a steady state on a stream of keys each read twice (so
 * that they too reach main), then a working set of 300 keys arrives, each
 * read twice as it is stored; from then on only the first `hot` of them
 * are read.
 */
static void
test_main_queue_churn(void)
{
    corral_t *c = new_cache(MIB, 4096, 1, 0);
    char key[32], buf[600];
    unsigned hot = 50, gone = 0, n = 0;

    rng_state = 42;
    memset(buf, 'n', sizeof(buf));
    for (int phase = 0; phase < 2; phase++) {
        for (unsigned i = 0; phase == 1 && i < 300; i++) {
            snprintf(key, sizeof(key), "w%u", i);
            scan(c, key, 1, 500); /* stores key + "0" */
            strcat(key, "0");
            for (int r = 0; r < 2; r++) {
                CU_ASSERT_EQUAL(corral_get_copy(c, key, strlen(key), buf,
                                                sizeof(buf), NULL, NULL,
                                                NULL),
                                CORRAL_OK);
            }
        }
        for (unsigned i = 0; i < 10000; i++, n++) {
            snprintf(key, sizeof(key), "n%u", n);
            CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), buf, 500, 0, 0),
                            CORRAL_OK);
            for (int r = 0; r < 2; r++) {
                corral_get_copy(c, key, strlen(key), buf, sizeof(buf), NULL,
                                NULL, NULL);
            }
            if (phase == 1) {
                snprintf(key, sizeof(key), "w%u0", (unsigned)(rng() % hot));
                corral_get_copy(c, key, strlen(key), buf, sizeof(buf), NULL,
                                NULL, NULL);
            }
        }
    }
    CU_ASSERT(stats_of(c).evictions > 10000);
    for (unsigned i = 0; i < hot; i++) {
        snprintf(key, sizeof(key), "w%u0", i);
        CU_ASSERT(present(c, key));
        CU_ASSERT(in_main(c, key));
    }
    for (unsigned i = hot; i < 300; i++) {
        snprintf(key, sizeof(key), "w%u0", i);
        gone += !present(c, key);
    }
    CU_ASSERT_EQUAL(gone, 300 - hot);
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Item count limit                                                       */

static void
check_max_items(unsigned shards, size_t max_items)
{
    corral_t *c = new_cache(16 * MIB, 4096, shards, max_items);
    corral_stats_t st;
    char key[32];
    bool ok = true;
    unsigned n = (unsigned)max_items * 4;

    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "i%u", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), K("v"), 0, 0),
                        CORRAL_OK);
        if (max_items > 1000 && i % 16 != 0) {
            continue; /* a large case: check often, not always */
        }
        st = stats_of(c);
        if (ok && (st.curr_items > max_items || !accounting_ok(c))) {
            printf("\n  %llu items, limit %zu\n",
                   (unsigned long long)st.curr_items, max_items);
            ok = false;
        }
    }
    CU_ASSERT(ok);
    st = stats_of(c);
    CU_ASSERT_EQUAL(st.curr_items + st.evictions, n);
    /* the limit is reached, not just approached */
    CU_ASSERT(st.curr_items >= max_items * 8 / 10);
    CU_ASSERT(st.mem_used < 16 * MIB / 2);
    corral_destroy(c);
}

static void
test_max_items_one_shard(void)
{
    check_max_items(1, 1000);
}

static void
test_max_items_sharded(void)
{
    check_max_items(4, 1000);
    check_max_items(0, 40000);
}

/* ---------------------------------------------------------------------- */
/* Limits on items, and pinning                                           */

/* The largest item allowed fits even in a full cache, every time. */
static void
test_largest_item_fits(void)
{
    size_t max_item = MIB / 2;
    corral_t *c = new_cache(MIB, max_item, 1, 0);
    char *value = calloc(1, max_item);
    size_t n;
    char key[32];

    CU_ASSERT_PTR_NOT_NULL_FATAL(value);
    /* find the largest value for key "big" */
    for (n = max_item; n > 0; n--) {
        if (corral_set(c, K("big"), value, n, 0, 0) == CORRAL_OK) {
            break;
        }
    }
    CU_ASSERT(n > max_item - 64);
    CU_ASSERT_EQUAL(corral_set(c, K("big"), value, n + 1, 0, 0),
                    CORRAL_ETOOBIG);
    CU_ASSERT_EQUAL(corral_set(c, K("big"), value, max_item, 0, 0),
                    CORRAL_ETOOBIG);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 500; i++) {
            snprintf(key, sizeof(key), "s%d.%d", round, i);
            CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, 1000, 0,
                                       0),
                            CORRAL_OK);
        }
        snprintf(key, sizeof(key), "big%d", round);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value,
                                   n - (strlen(key) - 3), 0, 0),
                        CORRAL_OK);
        CU_ASSERT(present(c, key));
        CU_ASSERT(accounting_ok(c));
    }
    CU_ASSERT(stats_of(c).store_too_large >= 2);
    free(value);
    corral_destroy(c);
}

/*
 * Every item pinned by the caller: the engine still evicts them (it stops
 * counting their memory, which the caller now holds), so stores keep
 * succeeding and the limit holds; every pinned value stays intact; the
 * memory comes back as the pins are released.
 */
static void
test_all_pinned(void)
{
    enum { N = 6000 };
    corral_t *c = new_cache(MIB, 4096, 1, 0);
    corral_item_t **pins = calloc(N, sizeof(*pins));
    char key[32], value[500];
    size_t intact = 0;
    corral_stats_t st;

    CU_ASSERT_PTR_NOT_NULL_FATAL(pins);
    for (unsigned i = 0; i < N; i++) {
        corral_status_t rc;

        snprintf(key, sizeof(key), "p%u", i);
        memset(value, 'a' + (int)(i % 26), sizeof(value));
        memcpy(value, key, strlen(key));
        rc = corral_set(c, key, strlen(key), value, sizeof(value), 0, 0);
        CU_ASSERT_EQUAL(rc, CORRAL_OK);
        if (rc == CORRAL_OK) {
            CU_ASSERT_EQUAL(corral_get(c, key, strlen(key), &pins[i]),
                            CORRAL_OK);
        }
    }
    st = stats_of(c);
    CU_ASSERT(st.evictions > 0);
    CU_ASSERT(st.mem_used <= MIB);
    CU_ASSERT(accounting_ok(c));
    for (unsigned i = 0; i < N; i++) {
        size_t len;
        const char *v;

        if (pins[i] == NULL) {
            continue;
        }
        v = corral_item_value(pins[i], &len);
        snprintf(key, sizeof(key), "p%u", i);
        intact += len == sizeof(value) &&
                  memcmp(v, key, strlen(key)) == 0 &&
                  v[len - 1] == 'a' + (int)(i % 26);
    }
    CU_ASSERT_EQUAL(intact, N);
    for (unsigned i = 0; i < N; i++) {
        corral_item_release(pins[i]);
    }
    free(pins);
    /* after the release the cache carries on as usual */
    scan(c, "after", 3000, 500);
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);
}

/* Overwrites, deletes and appends under pressure keep the books right. */
static void
test_mixed_churn_accounting(void)
{
    corral_t *c = new_cache(2 * MIB, 32 * 1024, 2, 0);
    static char value[32 * 1024];
    bool ok = true;
    char key[32];

    rng_state = 7;
    memset(value, '1', sizeof(value));
    for (unsigned i = 0; i < 40000 && ok; i++) {
        uint64_t r = rng();
        size_t n = some_size(8000);
        snprintf(key, sizeof(key), "m%u", (unsigned)(r % 3000));
        switch ((r >> 32) % 8) {
        case 0:
            corral_delete(c, key, strlen(key));
            break;
        case 1:
            corral_append(c, key, strlen(key), value, n % 300);
            break;
        case 2:
            corral_incr(c, key, strlen(key), 1, NULL);
            break;
        case 3:
            corral_touch(c, key, strlen(key), (r >> 40) % 2 ? -1 : 0);
            break;
        case 4:
            corral_sweep(c, 10);
            break;
        default:
            CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, n, 0, 0),
                            CORRAL_OK);
            break;
        }
        ok = accounting_ok(c);
    }
    CU_ASSERT(ok);
    corral_destroy(c);
}

/* Overwrite n keys at random, `rounds` times over, with values of 32 to
 * 95 bytes (a new size is a new record: the old one stays, dead, in its
 * segment).  Every set must succeed. */
static void
overwrite_rounds(corral_t *c, unsigned n, unsigned rounds)
{
    static char value[96];
    char key[32];

    memset(value, 'o', sizeof(value));
    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "w%u", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, 40, 0, 0),
                        CORRAL_OK);
    }
    for (unsigned i = 0; i < n * rounds; i++) {
        uint64_t r = rng();
        snprintf(key, sizeof(key), "w%u", (unsigned)(r % n));
        CU_ASSERT_EQUAL_FATAL(corral_set(c, key, strlen(key), value,
                                         32 + (r >> 40) % 64, 0, 0),
                              CORRAL_OK);
    }
}

/* A working set of about half the memory, overwritten with values of
 * varying sizes, keeps all but a thousandth of its keys: the dead records
 * its overwrites leave in their segments are reclaimed by compacting the
 * queues (live items copied forward), not by evicting live items.
 * (Without compaction, dead records filled the cache and it evicted.) */
static void
test_overwrites_keep_working_set(void)
{
    corral_t *c = new_cache(4 * MIB, 64 * 1024, 1, 0);
    const unsigned n = 17000; /* about 1.8 MiB of records */
    corral_stats_t st;

    rng_state = 11;
    overwrite_rounds(c, n, 8);
    st = stats_of(c);
    CU_ASSERT(st.curr_items >= n - n / 1000);
    CU_ASSERT(st.evictions <= n / 1000);
    CU_ASSERT(st.mem_used <= 4 * MIB);
    CU_ASSERT(accounting_ok(c));
    /* the compaction ran: the overwrites left far more dead records
     * than the memory holds */
    CU_ASSERT(st.total_items > 8 * (uint64_t)n);
    corral_destroy(c);
}

/* Compaction never stands in for eviction: a working set larger than the
 * memory, or than max_items, overwritten the same way, is evicted down to
 * fit, and every set succeeds. */
static void
test_compaction_still_evicts(void)
{
    corral_t *c = new_cache(2 * MIB, 64 * 1024, 1, 0);
    corral_stats_t st;

    rng_state = 12;
    overwrite_rounds(c, 30000, 3); /* about 3 MiB of records */
    st = stats_of(c);
    CU_ASSERT(st.evictions > 0);
    CU_ASSERT(st.curr_items < 30000);
    CU_ASSERT(st.mem_used <= 2 * MIB);
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);

    c = new_cache(4 * MIB, 64 * 1024, 1, 5000);
    overwrite_rounds(c, 8000, 3);
    st = stats_of(c);
    CU_ASSERT(st.curr_items <= 5000);
    CU_ASSERT(st.evictions >= 3000);
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);
}

/* Compaction under concurrency: two threads overwrite a working set of
 * half the memory with values of varying sizes (each value one byte
 * repeated, 32 to 95 of them) while two others read it, holding each
 * value for a moment while its record may be copied forward and its
 * segment retired.  Every value read is whole; nothing is lost to
 * eviction; the books balance (ASan and TSan builds check the rest). */
#define CC_KEYS 15000u
#define CC_OPS 60000u

struct cc_arg {
    corral_t *c;
    unsigned id;
    bool writer;
    unsigned bad;
};

static void *
cc_thread(void *p)
{
    struct cc_arg *a = p;
    uint64_t r = 0x9e3779b97f4a7c15u * (a->id + 1);
    char key[32], value[96];

    for (unsigned i = 0; i < CC_OPS; i++) {
        unsigned k;
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        k = (unsigned)(r % CC_KEYS);
        snprintf(key, sizeof(key), "cc%u", k);
        if (!a->writer && i % 8 != 0) {
            continue; /* few reads: most items stay unread, to be copied
                       * forward by compaction rather than promoted */
        }
        if (a->writer) {
            size_t n = 32 + (r >> 40) % 64;
            memset(value, 'a' + (int)((r >> 20) % 26), n);
            if (corral_set(a->c, key, strlen(key), value, n, 0, 0) !=
                CORRAL_OK) {
                a->bad++;
            }
        } else {
            corral_item_t *h;
            if (corral_get(a->c, key, strlen(key), &h) == CORRAL_OK) {
                size_t n;
                const char *v = corral_item_value(h, &n);
                bool whole = n >= 32 && n <= 95;
                for (size_t j = 1; whole && j < n; j++) {
                    whole = v[j] == v[0];
                }
                a->bad += !whole;
                corral_item_release(h);
            }
        }
    }
    return NULL;
}

static void
test_compaction_concurrent(void)
{
    corral_t *c = new_cache(4 * MIB, 64 * 1024, 2, 0);
    struct cc_arg args[4];
    pthread_t tids[4];
    corral_stats_t st;
    char key[32];

    for (unsigned k = 0; k < CC_KEYS; k++) {
        snprintf(key, sizeof(key), "cc%u", k);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key),
                                   "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", 36,
                                   0, 0),
                        CORRAL_OK);
    }
    for (unsigned t = 0; t < 4; t++) {
        args[t] = (struct cc_arg){c, t, t < 2, 0};
        CU_ASSERT_EQUAL_FATAL(
            pthread_create(&tids[t], NULL, cc_thread, &args[t]), 0);
    }
    for (unsigned t = 0; t < 4; t++) {
        pthread_join(tids[t], NULL);
        CU_ASSERT_EQUAL(args[t].bad, 0);
    }
    st = stats_of(c);
    CU_ASSERT(st.curr_items >= CC_KEYS - CC_KEYS / 100);
    /* far more records were written than the memory holds */
    CU_ASSERT(st.total_items * 100 > 4 * MIB);
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);
}

/* Memory freed by eviction is handed back to the system in steps of a
 * 128th of the limit, or of a segment when that is larger (memory comes
 * back a segment at a time): one purge per step for about three limits'
 * worth evicted. */
static void
test_eviction_purges(void)
{
    corral_config_t cfg;
    corral_t *c = NULL;
    corral_stats_t st;
    static char val[4000];
    char key[32];
    size_t step;
    double steps;

    corral_config_init(&cfg);
    cfg.shards = 1;
    cfg.max_memory = 4u << 20;
    CU_ASSERT_EQUAL_FATAL(corral_create(&cfg, &c), CORRAL_OK);
    corral_stats(c, &st, sizeof(st));
    CU_ASSERT_EQUAL(st.memory_purges, 0);
    for (unsigned i = 0; i < 4000; i++) { /* 16 MB: 3 x the limit evicted */
        int n = snprintf(key, sizeof(key), "p%u", i);
        CU_ASSERT_EQUAL(corral_set(c, key, (size_t)n, val, sizeof(val), 0, 0),
                        CORRAL_OK);
    }
    corral_stats(c, &st, sizeof(st));
    CU_ASSERT(st.evictions > 2000);
    step = c->shards[0].policy.seg_size;
    if (step < cfg.max_memory / 128) {
        step = cfg.max_memory / 128;
    }
    steps = 3.0 * (double)cfg.max_memory / (double)step;
    CU_ASSERT(st.memory_purges >= steps * 0.75 &&
              st.memory_purges <= steps * 1.25);
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Segments                                                               */

/* The linked item of a key, found in the table (no pin, no bump). */
static item_t *
linked_item(corral_t *c, const char *key)
{
    uint64_t h = hash_key(c->seed, key, strlen(key));
    struct shard *s = cache_shard(c, h);
    return table_find(&s->table, h, key, strlen(key));
}

/* Small items are records, in the order they were stored, in their
 * queue's shared segment: 8-byte rounded, no allocator class.  A large
 * one has a segment of its own.  The books balance. */
static void
test_segment_layout(void)
{
    corral_t *c = new_cache(8 * MIB, 64 * 1024, 1, 0);
    static char big[20000];
    item_t *prev = NULL;
    char key[32];

    for (int i = 0; i < 100; i++) {
        item_t *it;
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), K("abc"), 0, 0),
                        CORRAL_OK);
        it = linked_item(c, key);
        CU_ASSERT_FATAL(it != NULL);
        CU_ASSERT_FALSE(it->solo);
        CU_ASSERT_EQUAL(item_real_size(it) % 8, 0);
        CU_ASSERT_EQUAL(item_real_size(it),
                        rec_size(ITEM_HEADER_SIZE + strlen(key) + 3));
        CU_ASSERT_EQUAL((uintptr_t)item_seg(it) % SEG_ALIGN, 0);
        if (prev != NULL) { /* right after the one before */
            CU_ASSERT_PTR_EQUAL((char *)it,
                                (char *)prev + item_real_size(prev));
        }
        prev = it;
    }
    CU_ASSERT_EQUAL(ITEM_HEADER_SIZE, 24);
    CU_ASSERT_EQUAL(corral_set(c, K("big"), big, sizeof(big), 0, 0),
                    CORRAL_OK);
    CU_ASSERT(linked_item(c, "big")->solo);
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);
}

/* Deleting a large item gives its memory back at once; deleting every
 * item of a closed segment gives the segment back at once. */
static void
test_segment_freed_when_unlinked(void)
{
    corral_t *c = new_cache(8 * MIB, 64 * 1024, 1, 0);
    static char big[20000];
    corral_stats_t s0, s1;
    struct seg *first;
    size_t first_size;
    char key[32];
    int n = 0;

    CU_ASSERT_EQUAL(corral_set(c, K("big"), big, sizeof(big), 0, 0),
                    CORRAL_OK);
    s0 = stats_of(c);
    CU_ASSERT_EQUAL(corral_delete(c, K("big")), CORRAL_OK);
    s1 = stats_of(c);
    CU_ASSERT(s1.mem_used + sizeof(big) <= s0.mem_used);
    /* small items until the first segment is closed */
    snprintf(key, sizeof(key), "s%d", n);
    CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), K("v"), 0, 0), CORRAL_OK);
    first = item_seg(linked_item(c, key));
    do {
        n++;
        snprintf(key, sizeof(key), "s%d", n);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), K("v"), 0, 0),
                        CORRAL_OK);
    } while (item_seg(linked_item(c, key)) == first);
    first_size = first->size;
    s0 = stats_of(c);
    for (int i = 0; i < n; i++) { /* the first segment's items */
        snprintf(key, sizeof(key), "s%d", i);
        CU_ASSERT_EQUAL(corral_delete(c, key, strlen(key)), CORRAL_OK);
        if (i + 1 < n) {
            CU_ASSERT_EQUAL(stats_of(c).mem_used, s0.mem_used);
        }
    }
    s1 = stats_of(c);
    CU_ASSERT_EQUAL(s1.mem_used + first_size, s0.mem_used);
    CU_ASSERT_EQUAL(s1.curr_items, 1);
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);
}

/* Eviction moves a twice-read item into main by copying it: a reader
 * holding it keeps reading the value it got, the cache serves the copy
 * with the same value and CAS, and the old record's segment goes only
 * once the reader lets go. */
static void
test_move_keeps_readers(void)
{
    corral_t *c = new_cache(MIB, 4096, 1, 0);
    corral_item_t *held;
    uint64_t cas;
    item_t *before;
    size_t n;
    char buf[32];

    CU_ASSERT_EQUAL(corral_set(c, K("hot"), K("hot value"), 0, 0),
                    CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("hot"), &held), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_get_copy(c, K("hot"), buf, sizeof(buf), NULL,
                                    NULL, NULL),
                    CORRAL_OK);
    cas = corral_item_cas(held);
    before = pin_item(held);
    CU_ASSERT_FALSE(item_has(before, ITEM_MAIN));
    scan(c, "fill", 4000, 500); /* twice the cache: small is walked */
    CU_ASSERT(in_main(c, "hot"));
    CU_ASSERT_PTR_NOT_EQUAL(linked_item(c, "hot"), before);
    CU_ASSERT_FALSE(item_has(before, ITEM_LINKED));
    CU_ASSERT_EQUAL(memcmp(corral_item_value(held, &n), "hot value", 9), 0);
    CU_ASSERT_EQUAL(n, 9);
    CU_ASSERT_EQUAL(corral_get_copy(c, K("hot"), buf, sizeof(buf), &n, NULL,
                                    NULL),
                    CORRAL_OK);
    CU_ASSERT(n == 9 && memcmp(buf, "hot value", 9) == 0);
    CU_ASSERT_EQUAL(item_cas(linked_item(c, "hot")), cas);
    corral_item_release(held);
    corral_sweep(c, 1000);
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);
}

/* A walk over every item (a prefix rule applied at once, for want of
 * memory to keep it) that unlinks items goes on past the segments it
 * empties: here every item is large enough to have a segment of its own,
 * so each unlink takes its segment out of the queue. */
static void
test_walk_past_emptied_segments(void)
{
    corral_t *c = new_cache(MIB, 4096, 1, 0);
    static char value[3000];
    char key[32];

    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "%s:%d", i % 2 ? "p" : "q", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, sizeof(value),
                                   0, 0),
                        CORRAL_OK);
        CU_ASSERT(linked_item(c, key)->solo);
    }
    mem_fail_after(&c->mem, 1); /* no rule array: applied by a walk */
    CU_ASSERT_EQUAL(corral_invalidate_prefix(c, K("p:")), CORRAL_OK);
    mem_fail_after(&c->mem, 0);
    CU_ASSERT_PTR_NULL(c->shards[0].rules);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "%s:%d", i % 2 ? "p" : "q", i);
        CU_ASSERT_EQUAL(linked_item(c, key) == NULL, i % 2 == 1);
    }
    CU_ASSERT_EQUAL(stats_of(c).curr_items, 10);
    CU_ASSERT(accounting_ok(c));
    corral_destroy(c);
}

/* Two threads changing the limit at once: every shard ends with its
 * share of the limit the cache reports. */
struct limit_changer {
    corral_t *c;
    size_t a, b;
};

static void *
change_limits(void *arg)
{
    struct limit_changer *l = arg;
    for (int i = 0; i < 300; i++) {
        corral_set_max_memory(l->c, i % 2 ? l->a : l->b);
    }
    return NULL;
}

static void
test_limit_changes_concurrent(void)
{
    corral_t *c = new_cache(64 * MIB, 4096, 8, 0);
    struct limit_changer one = {c, 32 * MIB, 48 * MIB};
    struct limit_changer two = {c, 40 * MIB, 56 * MIB};
    pthread_t t1, t2;
    corral_config_t cfg;
    bool same = true;

    pthread_create(&t1, NULL, change_limits, &one);
    pthread_create(&t2, NULL, change_limits, &two);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    corral_config_get(c, &cfg);
    for (unsigned i = 0; i < c->nshards; i++) {
        same = same && c->shards[i].budget == cfg.max_memory / c->nshards;
    }
    CU_ASSERT(same);
    CU_ASSERT_EQUAL(accounting_stats(c).limit_maxbytes, cfg.max_memory);
    corral_destroy(c);
}

static const struct cu_test limit_tests[] = {
    CU_TEST(test_limit_1mib_one_shard),
    CU_TEST(test_limit_auto_shards),
    CU_TEST(test_limit_many_shards),
    CU_TEST(test_limit_tiny_items),
    CU_TEST(test_limit_table_growth_when_full),
    CU_TEST(test_table_load_when_full),
    CU_TEST(test_evictions_counted),
    CU_TEST(test_evicted_fetched),
    CU_TEST(test_mixed_churn_accounting),
    CU_END,
};

static const struct cu_test policy_tests[] = {
    CU_TEST(test_scan_resistance),
    CU_TEST(test_ghost_hit_returns_to_main),
    CU_TEST(test_main_queue_churn),
    CU_END,
};

static const struct cu_test bound_tests[] = {
    CU_TEST(test_max_items_one_shard),
    CU_TEST(test_max_items_sharded),
    CU_TEST(test_largest_item_fits),
    CU_TEST(test_all_pinned),
    CU_TEST(test_eviction_purges),
    CU_END,
};

static const struct cu_test segment_tests[] = {
    CU_TEST(test_segment_layout),
    CU_TEST(test_segment_freed_when_unlinked),
    CU_TEST(test_move_keeps_readers),
    CU_TEST(test_walk_past_emptied_segments),
    CU_TEST(test_overwrites_keep_working_set),
    CU_TEST(test_compaction_still_evicts),
    CU_TEST(test_compaction_concurrent),
    CU_TEST(test_limit_changes_concurrent),
    CU_END,
};

CU_MAIN({"memory_limit", limit_tests, NULL, NULL},
        {"segments", segment_tests, NULL, NULL},
        {"s3fifo", policy_tests, NULL, NULL},
        {"bounds", bound_tests, NULL, NULL})
