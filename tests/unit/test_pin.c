/*
 * test_pin.c - handles (pin.h): slot pins, counted references past a
 * thread's slots, release from another thread or after the pinning thread
 * exited or the cache was destroyed, and the retired items a held handle
 * keeps alive.
 *
 * Use after free shows under --enable-asan (every sanitizer build
 * allocates with libc); the plain build checks the bytes a handle reads.
 */
#include "cache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"

#define K(s) (s), (sizeof(s) - 1)
#define HELD (PIN_SLOTS * PIN_BLOCKS_MAX + 40)

static corral_t *
mk(unsigned shards, size_t max_memory)
{
    corral_config_t cfg;
    corral_t *c = NULL;
    corral_config_init(&cfg);
    cfg.shards = shards;
    cfg.max_memory = max_memory;
    cfg.max_item_size = 1024;
    CU_ASSERT_FATAL(corral_create(&cfg, &c) == CORRAL_OK);
    return c;
}

static bool
value_is(const corral_item_t *it, const char *want)
{
    size_t n;
    const void *v = corral_item_value(it, &n);
    return n == strlen(want) && memcmp(v, want, n) == 0;
}

static uint64_t
stat_evictions(corral_t *c)
{
    corral_stats_t st;
    corral_stats(c, &st, sizeof(st));
    return st.evictions;
}

/* Retired items still waiting in any shard. */
static size_t
retired(corral_t *c)
{
    size_t n = 0;
    for (unsigned i = 0; i < c->nshards; i++) {
        shard_wrlock(&c->shards[i]);
        n += c->shards[i].nretired;
        shard_unlock(&c->shards[i]);
    }
    return n;
}

/* More handles at once than a thread has slots: the rest are counted, and
 * every one reads its own item and releases in any order. */
static void
test_many_handles(void)
{
    corral_t *c = mk(4, 64u << 20);
    corral_item_t *h[HELD];
    char key[16], val[16];
    unsigned tags[4] = {0};

    for (int i = 0; i < HELD; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        CU_ASSERT(corral_set(c, key, strlen(key), val, strlen(val), 0, 0) ==
                  CORRAL_OK);
    }
    for (int i = 0; i < HELD; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT_FATAL(corral_get(c, key, strlen(key), &h[i]) == CORRAL_OK);
        tags[pin_tag(h[i])]++;
    }
    CU_ASSERT(tags[PIN_TAG_SLOT] >= 1);
    CU_ASSERT(tags[PIN_TAG_SLOT] <= PIN_SLOTS * PIN_BLOCKS_MAX);
    CU_ASSERT(tags[PIN_TAG_REF] >= 40);
    CU_ASSERT_EQUAL(tags[0], 0);
    /* overwrite them all while held: the handles keep the old bytes */
    for (int i = 0; i < HELD; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT(corral_set(c, key, strlen(key), "new", 3, 0, 0) ==
                  CORRAL_OK);
    }
    for (int i = 0; i < HELD; i += 2) {
        snprintf(val, sizeof(val), "v%d", i);
        CU_ASSERT(value_is(h[i], val));
        corral_item_release(h[i]);
    }
    for (int i = HELD - 1; i > 0; i -= 2) {
        snprintf(val, sizeof(val), "v%d", i);
        CU_ASSERT(value_is(h[i], val));
        corral_item_release(h[i]);
    }
    corral_item_release(NULL);
    corral_destroy(c);
}

/* A value written in place (same size: the store's fast path; incr) is
 * not written while a slot holds the item. */
static void
test_no_write_in_place_while_pinned(void)
{
    corral_t *c = mk(1, 64u << 20);
    corral_item_t *a, *b;
    uint64_t v;

    CU_ASSERT(corral_set(c, K("k"), K("aaaa"), 0, 0) == CORRAL_OK);
    CU_ASSERT_FATAL(corral_get(c, K("k"), &a) == CORRAL_OK);
    CU_ASSERT_EQUAL(pin_tag(a), PIN_TAG_SLOT);
    CU_ASSERT(corral_set(c, K("k"), K("bbbb"), 0, 0) == CORRAL_OK);
    CU_ASSERT(value_is(a, "aaaa"));
    corral_item_release(a);

    CU_ASSERT(corral_set(c, K("n"), K("10"), 0, 0) == CORRAL_OK);
    CU_ASSERT_FATAL(corral_get(c, K("n"), &b) == CORRAL_OK);
    CU_ASSERT(corral_incr(c, K("n"), 5, &v) == CORRAL_OK);
    CU_ASSERT_EQUAL(v, 15);
    CU_ASSERT(value_is(b, "10"));
    corral_item_release(b);
    /* unpinned now: incr rewrites in place, padded as memcached does */
    CU_ASSERT_FATAL(corral_get(c, K("n"), &b) == CORRAL_OK);
    CU_ASSERT(value_is(b, "15"));
    corral_item_release(b);
    CU_ASSERT(corral_decr(c, K("n"), 6, &v) == CORRAL_OK);
    CU_ASSERT_FATAL(corral_get(c, K("n"), &b) == CORRAL_OK);
    CU_ASSERT(value_is(b, "9 "));
    corral_item_release(b);
    corral_destroy(c);
}

/* A held item outlives its eviction and many batches of frees, and goes
 * back after the release. */
static void
test_held_through_eviction(void)
{
    corral_t *c = mk(1, 2u << 20);
    char key[32], val[200];
    corral_item_t *h;
    corral_stats_t st;

    memset(val, 'x', sizeof(val));
    CU_ASSERT(corral_set(c, K("held"), K("precious"), 0, 0) == CORRAL_OK);
    CU_ASSERT_FATAL(corral_get(c, K("held"), &h) == CORRAL_OK);
    for (int i = 0; i < 40000; i++) {
        snprintf(key, sizeof(key), "fill%d", i);
        CU_ASSERT_FATAL(corral_set(c, key, strlen(key), val, sizeof(val), 0,
                                   0) == CORRAL_OK);
    }
    corral_stats(c, &st, sizeof(st));
    CU_ASSERT(st.evictions > 10000);
    CU_ASSERT_EQUAL(corral_get(c, K("held"), &(corral_item_t *){NULL}),
                    CORRAL_ENOTFOUND);
    CU_ASSERT(value_is(h, "precious"));
    corral_sweep(c, 0);
    CU_ASSERT_EQUAL(retired(c), 1); /* only the held one waits */
    corral_item_release(h);
    corral_sweep(c, 0);
    CU_ASSERT_EQUAL(retired(c), 0);
    corral_destroy(c);
}

/* Handles of both kinds stay valid after corral_destroy(), until
 * released, whether their items were deleted before or not, and so do
 * the names of their tags. */
static void
test_held_past_destroy(void)
{
    corral_t *c = mk(2, 64u << 20);
    corral_item_t *h[HELD];
    char key[16], val[16];

    for (int i = 0; i < HELD; i++) {
        const char *tags[2] = {i % 2 ? "odd" : "even", "all"};
        corral_store_opts_t o = {0};
        o.tags = tags;
        o.ntags = 2;
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        CU_ASSERT(corral_store(c, key, strlen(key), val, strlen(val), &o,
                               NULL) == CORRAL_OK);
        CU_ASSERT_FATAL(corral_get(c, key, strlen(key), &h[i]) == CORRAL_OK);
        if (i % 3 == 0) {
            CU_ASSERT(corral_delete(c, key, strlen(key)) == CORRAL_OK);
        }
    }
    corral_sweep(c, 0);
    corral_destroy(c);
    for (int i = 0; i < HELD; i++) {
        const char *names[2] = {NULL, NULL};
        snprintf(val, sizeof(val), "v%d", i);
        CU_ASSERT(value_is(h[i], val));
        CU_ASSERT_EQUAL_FATAL(corral_item_tags(h[i], names, 2), 2);
        CU_ASSERT_STRING_EQUAL(names[0], i % 2 ? "odd" : "even");
        CU_ASSERT_STRING_EQUAL(names[1], "all");
        corral_item_release(h[i]);
    }
    /* the orphans went with their last release */
    CU_ASSERT_FALSE(atomic_load(&pin_orphans_waiting));
}

/* An item held by a slot and by a counted handle, deleted: the counted
 * release makes its segment an orphan that the slot still points into;
 * the slot's release frees it.  (The item is large enough to have a
 * segment of its own, which nothing else keeps.) */
static void
test_orphan_freed_by_slot_release(void)
{
    corral_config_t cfg;
    corral_t *c = NULL;
    corral_item_t *other[PIN_SLOTS * PIN_BLOCKS_MAX + 1];
    corral_item_t *counted, *slotted;
    static char big[20000];
    size_t n = 0;

    corral_config_init(&cfg);
    cfg.shards = 1;
    cfg.max_memory = 64u << 20;
    CU_ASSERT_FATAL(corral_create(&cfg, &c) == CORRAL_OK);
    memset(big, 'v', sizeof(big) - 1);
    CU_ASSERT(corral_set(c, K("k"), big, strlen(big), 0, 0) == CORRAL_OK);
    CU_ASSERT(corral_set(c, K("o"), K("w"), 0, 0) == CORRAL_OK);
    /* take this thread's free slots, then one more: counted */
    do {
        CU_ASSERT_FATAL(n < PIN_SLOTS * PIN_BLOCKS_MAX + 1);
        CU_ASSERT_FATAL(corral_get(c, K("o"), &other[n]) == CORRAL_OK);
    } while (pin_tag(other[n++]) == PIN_TAG_SLOT);
    corral_item_release(other[--n]); /* the counted one */
    CU_ASSERT_FATAL(corral_get(c, K("k"), &counted) == CORRAL_OK);
    CU_ASSERT_EQUAL(pin_tag(counted), PIN_TAG_REF);
    corral_item_release(other[--n]); /* frees a slot */
    CU_ASSERT_FATAL(corral_get(c, K("k"), &slotted) == CORRAL_OK);
    CU_ASSERT_EQUAL(pin_tag(slotted), PIN_TAG_SLOT);

    CU_ASSERT(corral_delete(c, K("k")) == CORRAL_OK);
    corral_sweep(c, 100); /* out of its queue: only the handles hold it */
    CU_ASSERT_FALSE(atomic_load(&pin_orphans_waiting));
    corral_item_release(counted);
    CU_ASSERT_TRUE(atomic_load(&pin_orphans_waiting)); /* held by a slot */
    CU_ASSERT(value_is(slotted, big));
    corral_item_release(slotted);
    CU_ASSERT_FALSE(atomic_load(&pin_orphans_waiting));
    while (n > 0) {
        corral_item_release(other[--n]);
    }
    corral_destroy(c);
}

struct handoff {
    corral_t *c;
    corral_item_t *h;
};

static void *
get_and_exit(void *p)
{
    struct handoff *x = p;
    CU_ASSERT(corral_get(x->c, K("k"), &x->h) == CORRAL_OK);
    return NULL;
}

static void *
release_it(void *p)
{
    struct handoff *x = p;
    CU_ASSERT(value_is(x->h, "v"));
    corral_item_release(x->h);
    return NULL;
}

/* A handle released by another thread, and after its thread exited;
 * later threads reuse the exited thread's slots. */
static void
test_release_elsewhere(void)
{
    corral_t *c = mk(2, 64u << 20);
    struct handoff x = {c, NULL};
    pthread_t t;

    CU_ASSERT(corral_set(c, K("k"), K("v"), 0, 0) == CORRAL_OK);
    for (int round = 0; round < 20; round++) {
        CU_ASSERT_FATAL(pthread_create(&t, NULL, get_and_exit, &x) == 0);
        pthread_join(t, NULL);
        CU_ASSERT_EQUAL_FATAL(pin_tag(x.h), PIN_TAG_SLOT);
        CU_ASSERT(corral_delete(c, K("k")) == CORRAL_OK);
        CU_ASSERT(corral_set(c, K("k"), K("v"), 0, 0) == CORRAL_OK);
        corral_sweep(c, 100);
        /* the deleted item waits for the exited thread's handle */
        CU_ASSERT(value_is(x.h, "v"));
        if (round % 2 == 0) {
            CU_ASSERT_FATAL(pthread_create(&t, NULL, release_it, &x) == 0);
            pthread_join(t, NULL);
        } else {
            release_it(&x);
        }
        corral_sweep(c, 100);
        CU_ASSERT_EQUAL(retired(c), 0);
    }
    corral_destroy(c);
}

/* Readers check every byte they read while writers overwrite, delete and
 * evict the same keys: a freed or rewritten item shows as a bad value
 * (and to the sanitizers). */
#define READERS 2
#define KEYS 4096
#define ROUNDS 60000

struct churn {
    corral_t *c;
    _Atomic bool stop;
    _Atomic unsigned long bad;
    _Atomic unsigned long hits;
};

/* A value: its key's number, then a length-derived fill, so a value is
 * self-checking. */
static size_t
make_value(char *buf, unsigned k, unsigned salt)
{
    size_t n = 16 + (salt * 37 + k) % 600;
    memset(buf, 'a' + (int)(n % 26), n);
    memcpy(buf, &k, sizeof(k));
    return n;
}

static bool
value_ok(const corral_item_t *it, unsigned k)
{
    size_t n;
    const char *v = corral_item_value(it, &n);
    unsigned got;
    if (n < 16) {
        return false;
    }
    memcpy(&got, v, sizeof(got));
    if (got != k) {
        return false;
    }
    for (size_t i = sizeof(got); i < n; i++) {
        if (v[i] != 'a' + (int)(n % 26)) {
            return false;
        }
    }
    return true;
}

static void *
churn_reader(void *p)
{
    struct churn *x = p;
    corral_item_t *held[8] = {NULL};
    unsigned held_key[8] = {0};
    unsigned r = 12345;

    while (!atomic_load(&x->stop)) {
        unsigned k = (r = r * 1103515245u + 12345u) >> 8 & (KEYS - 1);
        unsigned slot = (r >> 20) & 7;
        char key[16];
        corral_item_t *it;

        snprintf(key, sizeof(key), "key%u", k);
        if (held[slot] != NULL) {
            if (!value_ok(held[slot], held_key[slot])) {
                atomic_fetch_add(&x->bad, 1);
            }
            corral_item_release(held[slot]);
            held[slot] = NULL;
        }
        if (corral_get(x->c, key, strlen(key), &it) == CORRAL_OK) {
            atomic_fetch_add(&x->hits, 1);
            if (!value_ok(it, k)) {
                atomic_fetch_add(&x->bad, 1);
            }
            held[slot] = it; /* kept a while: others write meanwhile */
            held_key[slot] = k;
        }
    }
    for (int i = 0; i < 8; i++) {
        if (held[i] != NULL && !value_ok(held[i], held_key[i])) {
            atomic_fetch_add(&x->bad, 1);
        }
        corral_item_release(held[i]);
    }
    return NULL;
}

static void
test_readers_against_writers(void)
{
    struct churn x;
    pthread_t t[READERS];
    char buf[700], key[16];
    uint64_t v;

    x.c = mk(4, 1u << 20); /* the keys take more: writes evict */
    atomic_init(&x.stop, false);
    atomic_init(&x.bad, 0);
    atomic_init(&x.hits, 0);
    for (unsigned k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "key%u", k);
        CU_ASSERT(corral_set(x.c, key, strlen(key), buf,
                             make_value(buf, k, 0), 0, 0) == CORRAL_OK);
    }
    CU_ASSERT(corral_set(x.c, K("counter"), K("1000"), 0, 0) == CORRAL_OK);
    for (int i = 0; i < READERS; i++) {
        CU_ASSERT_FATAL(pthread_create(&t[i], NULL, churn_reader, &x) == 0);
    }
    for (unsigned i = 0; i < ROUNDS; i++) {
        unsigned k = (i * 2654435761u) >> 8 & (KEYS - 1);
        snprintf(key, sizeof(key), "key%u", k);
        switch (i % 8) {
        case 0:
            corral_delete(x.c, key, strlen(key));
            break;
        case 1:
            corral_incr(x.c, "counter", 7, 1, &v); /* in place when free */
            break;
        default:
            /* the same size half the time: overwritten in place */
            CU_ASSERT(corral_set(x.c, key, strlen(key), buf,
                                 make_value(buf, k, (i % 2) ? 0 : i), 0,
                                 0) == CORRAL_OK);
            break;
        }
        if (i % 1000 == 0) {
            corral_sweep(x.c, 64);
        }
    }
    atomic_store(&x.stop, true);
    for (int i = 0; i < READERS; i++) {
        pthread_join(t[i], NULL);
    }
    CU_ASSERT_EQUAL(atomic_load(&x.bad), 0);
    CU_ASSERT(atomic_load(&x.hits) > 0);
    CU_ASSERT(stat_evictions(x.c) > 0);
    corral_sweep(x.c, 0);
    CU_ASSERT_EQUAL(retired(x.c), 0);
    corral_destroy(x.c);
}

static const struct cu_test pin_tests[] = {
    CU_TEST(test_many_handles),
    CU_TEST(test_no_write_in_place_while_pinned),
    CU_TEST(test_held_through_eviction),
    CU_TEST(test_held_past_destroy),
    CU_TEST(test_orphan_freed_by_slot_release),
    CU_TEST(test_release_elsewhere),
    CU_TEST(test_readers_against_writers),
    CU_END,
};

CU_MAIN({"pin", pin_tests, NULL, NULL})
