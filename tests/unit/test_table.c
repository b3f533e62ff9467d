/*
 * test_table.c - the shard hash table: lookups, replacement, backward-shift
 * deletion and incremental growth, checked against a plain array model
 * through long random operation sequences.
 */
#include "table.h"

#include <stdio.h>
#include <stdlib.h>

#include "cu_main.h"
#include "hash.h"

#define SEED 0x1234abcdu

static struct mem m;

static item_t *
mk(const char *key)
{
    item_t *it = item_create(&m, key, strlen(key), 0, 0, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(it);
    return it;
}

static uint64_t
hk(const char *key, unsigned bits)
{
    (void)bits;
    return hash_key(SEED, key, strlen(key));
}

static void
test_insert_find_remove(void)
{
    struct table t;
    item_t *a, *b;

    mem_init(&m);
    CU_ASSERT_FATAL(table_init(&t, &m, 0, 0, SEED));
    a = mk("alpha");
    b = mk("beta");
    CU_ASSERT_PTR_NULL(table_find(&t, hk("alpha", 0), "alpha", 5));
    CU_ASSERT(table_insert(&t, &m, hk("alpha", 0), a));
    CU_ASSERT(table_insert(&t, &m, hk("beta", 0), b));
    CU_ASSERT_EQUAL(table_count(&t), 2);
    CU_ASSERT_PTR_EQUAL(table_find(&t, hk("alpha", 0), "alpha", 5), a);
    CU_ASSERT_PTR_EQUAL(table_find(&t, hk("beta", 0), "beta", 4), b);
    /* a prefix or a longer key is a different key */
    CU_ASSERT_PTR_NULL(table_find(&t, hk("alph", 0), "alph", 4));
    table_remove(&t, hk("alpha", 0), a);
    CU_ASSERT_PTR_NULL(table_find(&t, hk("alpha", 0), "alpha", 5));
    CU_ASSERT_PTR_EQUAL(table_find(&t, hk("beta", 0), "beta", 4), b);
    CU_ASSERT_EQUAL(table_count(&t), 1);
    table_deinit(&t);
    item_unref(a);
    item_unref(b);
}

static void
test_replace(void)
{
    struct table t;
    item_t *a1, *a2;

    mem_init(&m);
    CU_ASSERT_FATAL(table_init(&t, &m, 0, 0, SEED));
    a1 = mk("k");
    a2 = mk("k");
    CU_ASSERT(table_insert(&t, &m, hk("k", 0), a1));
    table_replace(&t, hk("k", 0), a1, a2);
    CU_ASSERT_PTR_EQUAL(table_find(&t, hk("k", 0), "k", 1), a2);
    CU_ASSERT_EQUAL(table_count(&t), 1);
    table_deinit(&t);
    item_unref(a1);
    item_unref(a2);
}

/*
 * Random inserts, replacements and removals on a key space of N, with the
 * model an array of the item each key maps to.  Every step checks a few
 * random keys; the end checks them all.  Growth and migration happen many
 * times on the way (the table starts at 16 slots).
 */
static void
run_model(unsigned shard_bits, unsigned steps, unsigned nkeys)
{
    struct table t;
    item_t **model = calloc(nkeys, sizeof(*model));
    char key[32];
    unsigned grows = 0;
    uint64_t rng = 88172645463325252u;

    mem_init(&m);
    CU_ASSERT_FATAL(table_init(&t, &m, 0, shard_bits, SEED));
    for (unsigned i = 0; i < steps; i++) {
        unsigned k, op;
        uint64_t h;
        size_t n;

        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        k = (unsigned)(rng % nkeys);
        op = (unsigned)((rng >> 32) % 10);
        n = (size_t)snprintf(key, sizeof(key), "key:%u", k);
        h = hash_key(SEED, key, n);
        if (op < 6) {
            item_t *it = item_create(&m, key, n, 0, 0, 0, NULL);
            bool was_old = t.old != NULL;
            if (model[k] != NULL) {
                table_replace(&t, h, model[k], it);
                item_unref(model[k]);
            } else {
                CU_ASSERT(table_insert(&t, &m, h, it));
            }
            grows += !was_old && t.old != NULL;
            model[k] = it;
        } else if (model[k] != NULL) {
            table_remove(&t, h, model[k]);
            item_unref(model[k]);
            model[k] = NULL;
        }
        CU_ASSERT_PTR_EQUAL(table_find(&t, h, key, n), model[k]);
    }
    for (unsigned k = 0; k < nkeys; k++) {
        size_t n = (size_t)snprintf(key, sizeof(key), "key:%u", k);
        uint64_t h = hash_key(SEED, key, n);
        CU_ASSERT_PTR_EQUAL(table_find(&t, h, key, n), model[k]);
        if (model[k] != NULL) {
            item_unref(model[k]);
        }
    }
    CU_ASSERT(grows >= 5);
    table_deinit(&t);
    free(model);
}

static void
test_model_no_shard_bits(void)
{
    run_model(0, 200000, 5000);
}

static void
test_model_shard_bits(void)
{
    /* with 6 shard bits the position comes from the remaining bits */
    run_model(6, 200000, 5000);
}

static void
test_load_stays_bounded(void)
{
    struct table t;
    item_t *items[1000];
    char key[16];

    mem_init(&m);
    CU_ASSERT_FATAL(table_init(&t, &m, 0, 0, SEED));
    for (int i = 0; i < 1000; i++) {
        size_t n = (size_t)snprintf(key, sizeof(key), "%d", i);
        items[i] = item_create(&m, key, n, 0, 0, 0, NULL);
        CU_ASSERT(table_insert(&t, &m, hash_key(SEED, key, n), items[i]));
        /* never fuller than 3/4 */
        CU_ASSERT(table_count(&t) * 4 <= t.cap * 3);
    }
    table_migrate(&t, SIZE_MAX);
    CU_ASSERT_PTR_NULL(t.old);
    CU_ASSERT_EQUAL(t.count, 1000);
    CU_ASSERT(t.bytes >= t.cap * sizeof(uint64_t));
    table_deinit(&t);
    for (int i = 0; i < 1000; i++) {
        item_unref(items[i]);
    }
}

static void
test_alloc_failure_on_growth(void)
{
    struct table t;
    item_t *items[15];
    char key[16];
    size_t cap;
    bool armed = false;

    mem_init(&m);
    CU_ASSERT_FATAL(table_init(&t, &m, 0, 0, SEED));
    cap = t.cap;
    for (int i = 0; i < 15; i++) {
        size_t n = (size_t)snprintf(key, sizeof(key), "%d", i);
        items[i] = item_create(&m, key, n, 0, 0, 0, NULL);
    }
    /* The first insert past 3/4 of the slots tries to grow; make that
     * allocation fail.  The insert must still succeed, in place. */
    for (int i = 0; i < 15; i++) {
        size_t n = (size_t)snprintf(key, sizeof(key), "%d", i);
        if (!armed && (table_count(&t) + 1) * 4 > cap * 3) {
            mem_fail_after(&m, 1);
            armed = true;
        }
        CU_ASSERT(table_insert(&t, &m, hash_key(SEED, key, n), items[i]));
        if (i == (int)(cap * 3 / 4)) {
            CU_ASSERT_EQUAL(t.cap, cap); /* growth failed, still here */
        }
    }
    CU_ASSERT(t.cap > cap); /* a later insert grew it */
    for (int i = 0; i < 15; i++) {
        size_t n = (size_t)snprintf(key, sizeof(key), "%d", i);
        CU_ASSERT_PTR_EQUAL(table_find(&t, hash_key(SEED, key, n), key, n),
                            items[i]);
    }
    table_deinit(&t);
    for (int i = 0; i < 15; i++) {
        item_unref(items[i]);
    }
}

/* hash_key() takes a shortcut for short keys; it must be XXH3 all the
 * same, at every length around the shortcut's bounds, for any seed; and
 * hash_shard() must use exactly the top bits, none at 0 bits. */
static void
test_hash_is_xxh3(void)
{
    unsigned char buf[80];
    const uint64_t seeds[] = {0, 1, SEED, UINT64_MAX};

    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (unsigned char)(i * 37 + 11);
    }
    for (size_t k = 0; k < sizeof(seeds) / sizeof(seeds[0]); k++) {
        for (size_t n = 0; n <= sizeof(buf); n++) {
            CU_ASSERT_EQUAL(hash_key(seeds[k], buf, n),
                            XXH3_64bits_withSeed(buf, n, seeds[k]));
        }
    }
    CU_ASSERT_EQUAL(hash_shard(UINT64_MAX, 0), 0);
    CU_ASSERT_EQUAL(hash_shard(UINT64_MAX, 1), 1);
    CU_ASSERT_EQUAL(hash_shard(UINT64_C(0x8000000000000000), 3), 4);
    CU_ASSERT_EQUAL(hash_shard(UINT64_C(0x7fffffffffffffff), 10), 511);
    CU_ASSERT_EQUAL(hash_shard(UINT64_MAX, 10), 1023);
}

static const struct cu_test table_tests[] = {
    CU_TEST(test_insert_find_remove),
    CU_TEST(test_replace),
    CU_TEST(test_model_no_shard_bits),
    CU_TEST(test_model_shard_bits),
    CU_TEST(test_load_stays_bounded),
    CU_TEST(test_alloc_failure_on_growth),
    CU_TEST(test_hash_is_xxh3),
    CU_END,
};

CU_MAIN({"table", table_tests, NULL, NULL})
