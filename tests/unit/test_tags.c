/*
 * test_tags.c - tags and prefix invalidation: which items miss after an
 * invalidation and which live, what append and incr keep, argument
 * limits, reclamation of invalidated items and of tag records, prefix
 * rules retiring after the sweep, and concurrent stores against
 * invalidations.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "corral.h"
#include "cu_main.h"

static corral_t *
mk(unsigned shards)
{
    corral_config_t cfg;
    corral_t *c = NULL;
    corral_config_init(&cfg);
    cfg.shards = shards;
    CU_ASSERT_FATAL(corral_create(&cfg, &c) == CORRAL_OK);
    return c;
}

static corral_status_t
set_tagged(corral_t *c, const char *key, const char *val,
           const char *const *tags, size_t ntags)
{
    corral_store_opts_t o = {0};
    o.tags = tags;
    o.ntags = ntags;
    return corral_store(c, key, strlen(key), val, strlen(val), &o, NULL);
}

static bool
has(corral_t *c, const char *key)
{
    corral_item_t *it = NULL;
    corral_status_t st = corral_get(c, key, strlen(key), &it);
    corral_item_release(it);
    return st == CORRAL_OK;
}

static uint64_t
stat_of(corral_t *c, size_t offset)
{
    corral_stats_t st;
    corral_stats(c, &st, sizeof(st));
    return *(uint64_t *)((char *)&st + offset);
}
#define STAT(c, f) stat_of((c), offsetof(corral_stats_t, f))

static void
test_tag_invalidation(void)
{
    corral_t *c = mk(4);
    const char *user[] = {"user:7"};
    const char *both[] = {"user:7", "team:3"};
    const char *team[] = {"team:3"};

    CU_ASSERT(set_tagged(c, "a", "1", user, 1) == CORRAL_OK);
    CU_ASSERT(set_tagged(c, "b", "2", both, 2) == CORRAL_OK);
    CU_ASSERT(set_tagged(c, "c", "3", team, 1) == CORRAL_OK);
    CU_ASSERT(corral_set(c, "d", 1, "4", 1, 0, 0) == CORRAL_OK);

    CU_ASSERT(corral_invalidate_tag(c, "user:7") == CORRAL_OK);
    CU_ASSERT(!has(c, "a"));
    CU_ASSERT(!has(c, "b")); /* any one of its tags is enough */
    CU_ASSERT(has(c, "c"));
    CU_ASSERT(has(c, "d"));
    CU_ASSERT_EQUAL(STAT(c, get_invalidated), 2);
    CU_ASSERT_EQUAL(STAT(c, tag_invalidations), 1);

    /* stored after the invalidation: live */
    CU_ASSERT(set_tagged(c, "a", "5", user, 1) == CORRAL_OK);
    CU_ASSERT(has(c, "a"));
    /* invalidating a tag nobody holds is fine */
    CU_ASSERT(corral_invalidate_tag(c, "nobody") == CORRAL_OK);
    CU_ASSERT(has(c, "a"));
    CU_ASSERT(corral_invalidate_tag(c, "user:7") == CORRAL_OK);
    CU_ASSERT(!has(c, "a"));
    CU_ASSERT(has(c, "c"));
    corral_destroy(c);
}

static void
test_item_tags_and_derived_items(void)
{
    corral_t *c = mk(1);
    const char *tags[] = {"x", "y"};
    const char *got[4];
    corral_item_t *it;
    uint64_t v;

    CU_ASSERT(set_tagged(c, "k", "10", tags, 2) == CORRAL_OK);
    CU_ASSERT_FATAL(corral_get(c, "k", 1, &it) == CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_tags(it, got, 4), 2);
    CU_ASSERT_STRING_EQUAL(got[0], "x");
    CU_ASSERT_STRING_EQUAL(got[1], "y");
    CU_ASSERT_EQUAL(corral_item_tags(it, NULL, 0), 2);
    corral_item_release(it);

    /* append and incr keep the tags */
    CU_ASSERT(corral_append(c, "k", 1, "0", 1) == CORRAL_OK);
    CU_ASSERT(corral_incr(c, "k", 1, 5, &v) == CORRAL_OK);
    CU_ASSERT_EQUAL(v, 105);
    CU_ASSERT(corral_incr(c, "k", 1, 99999, &v) == CORRAL_OK); /* grows */
    CU_ASSERT_FATAL(corral_get(c, "k", 1, &it) == CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_tags(it, got, 4), 2);
    CU_ASSERT_STRING_EQUAL(got[1], "y");
    corral_item_release(it);
    CU_ASSERT(corral_invalidate_tag(c, "y") == CORRAL_OK);
    CU_ASSERT(!has(c, "k"));

    /* a plain set drops the tags */
    CU_ASSERT(set_tagged(c, "k", "1", tags, 1) == CORRAL_OK);
    CU_ASSERT(corral_set(c, "k", 1, "2", 1, 0, 0) == CORRAL_OK);
    CU_ASSERT(corral_invalidate_tag(c, "x") == CORRAL_OK);
    CU_ASSERT(has(c, "k"));
    corral_destroy(c);
}

static void
test_tag_limits(void)
{
    corral_t *c = mk(1);
    const char *nine[] = {"1", "2", "3", "4", "5", "6", "7", "8", "9"};
    const char *empty[] = {""};
    const char *null[] = {NULL};
    char long_tag[CORRAL_TAG_MAX + 2];
    const char *lt[] = {long_tag};

    CU_ASSERT(set_tagged(c, "k", "v", nine, 9) == CORRAL_EINVAL);
    CU_ASSERT(set_tagged(c, "k", "v", nine, 8) == CORRAL_OK);
    CU_ASSERT(set_tagged(c, "k", "v", empty, 1) == CORRAL_EINVAL);
    CU_ASSERT(set_tagged(c, "k", "v", null, 1) == CORRAL_EINVAL);
    memset(long_tag, 't', sizeof(long_tag) - 1);
    long_tag[CORRAL_TAG_MAX + 1] = '\0';
    CU_ASSERT(set_tagged(c, "k", "v", lt, 1) == CORRAL_EINVAL);
    long_tag[CORRAL_TAG_MAX] = '\0';
    CU_ASSERT(set_tagged(c, "k", "v", lt, 1) == CORRAL_OK);
    CU_ASSERT(corral_invalidate_tag(c, "") == CORRAL_EINVAL);
    CU_ASSERT(corral_invalidate_tag(c, NULL) == CORRAL_EINVAL);
    CU_ASSERT(corral_invalidate_tag(c, long_tag) == CORRAL_OK);
    CU_ASSERT(!has(c, "k"));
    corral_destroy(c);
}

/* Invalidated items are reclaimed afterwards; tag records go with the
 * last item holding them (its segment). */
static void
test_tag_reclamation(void)
{
    corral_t *c = mk(4);
    const char *t[] = {"bulk"};
    char key[32];

    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        CU_ASSERT(set_tagged(c, key, "value", t, 1) == CORRAL_OK);
    }
    CU_ASSERT_EQUAL(STAT(c, curr_items), 5000);
    CU_ASSERT_EQUAL(STAT(c, tags_live), 1);
    CU_ASSERT(corral_invalidate_tag(c, "bulk") == CORRAL_OK);
    /* the caller's cost did not depend on the items: they are all still
     * linked until something reclaims them */
    CU_ASSERT_EQUAL(STAT(c, curr_items), 5000);
    for (int i = 0; i < 100 && STAT(c, curr_items) > 0; i++) {
        corral_sweep(c, 1000);
    }
    CU_ASSERT_EQUAL(STAT(c, curr_items), 0);
    CU_ASSERT_EQUAL(STAT(c, bytes), 0);
    /* the records go with the items' segments, once the sweep has passed
     * them all */
    for (int i = 0; i < 10; i++) {
        corral_sweep(c, 10000);
    }
    CU_ASSERT_EQUAL(STAT(c, tags_live), 0);
    CU_ASSERT(STAT(c, reclaimed) >= 5000);
    corral_destroy(c);
}

/* Thousands of tags live at once (each stripe's table grows several
 * times, rehashing the records it holds): every tag still names exactly
 * its own items, as invalidating half of them shows. */
static void
test_many_tags(void)
{
    enum { N = 4000 };
    corral_t *c = mk(4);
    char key[32], tag[32];
    int gone = 0, kept = 0;

    for (int i = 0; i < N; i++) {
        const char *t[] = {tag, "all"};
        snprintf(key, sizeof(key), "key:%d", i);
        snprintf(tag, sizeof(tag), "tag:%d", i / 2); /* two items a tag */
        CU_ASSERT(set_tagged(c, key, "value", t, 2) == CORRAL_OK);
    }
    CU_ASSERT_EQUAL(STAT(c, tags_live), N / 2 + 1);
    for (int i = 0; i < N / 2; i += 2) {
        snprintf(tag, sizeof(tag), "tag:%d", i);
        CU_ASSERT(corral_invalidate_tag(c, tag) == CORRAL_OK);
    }
    for (int i = 0; i < N; i++) { /* tags 0, 2, 4, ...: keys 0, 1, 4, 5 */
        bool invalidated = (i / 2) % 2 == 0;
        bool present;
        snprintf(key, sizeof(key), "key:%d", i);
        present = has(c, key);
        gone += invalidated && !present;
        kept += !invalidated && present;
    }
    CU_ASSERT_EQUAL(gone, N / 2);
    CU_ASSERT_EQUAL(kept, N / 2);
    CU_ASSERT(corral_invalidate_tag(c, "all") == CORRAL_OK);
    CU_ASSERT_FALSE(has(c, "key:1"));
    CU_ASSERT_FALSE(has(c, "key:3"));
    corral_destroy(c);
}

/* A reader's pin outlives the invalidation. */
static void
test_pinned_survives_invalidation(void)
{
    corral_t *c = mk(1);
    const char *t[] = {"t"};
    corral_item_t *it;
    size_t len;

    CU_ASSERT(set_tagged(c, "k", "pinned", t, 1) == CORRAL_OK);
    CU_ASSERT_FATAL(corral_get(c, "k", 1, &it) == CORRAL_OK);
    CU_ASSERT(corral_invalidate_tag(c, "t") == CORRAL_OK);
    corral_sweep(c, 100);
    corral_sweep(c, 100);
    CU_ASSERT(!has(c, "k"));
    CU_ASSERT(memcmp(corral_item_value(it, &len), "pinned", 6) == 0);
    CU_ASSERT_EQUAL(len, 6);
    corral_item_release(it);
    corral_destroy(c);
}

static void
test_prefix_invalidation(void)
{
    corral_t *c = mk(4);

    corral_set(c, "user:1", 6, "a", 1, 0, 0);
    corral_set(c, "user:2", 6, "b", 1, 0, 0);
    corral_set(c, "user", 4, "c", 1, 0, 0);
    corral_set(c, "usex:1", 6, "d", 1, 0, 0);
    CU_ASSERT(corral_invalidate_prefix(c, "user:", 5) == CORRAL_OK);
    CU_ASSERT_EQUAL(STAT(c, prefix_rules), 4); /* one per shard */
    CU_ASSERT(!has(c, "user:1"));
    CU_ASSERT(!has(c, "user:2"));
    CU_ASSERT(has(c, "user"));
    CU_ASSERT(has(c, "usex:1"));
    corral_set(c, "user:3", 6, "e", 1, 0, 0);
    CU_ASSERT(has(c, "user:3"));
    CU_ASSERT_EQUAL(STAT(c, prefix_invalidations), 1);

    CU_ASSERT(corral_invalidate_prefix(c, "", 0) == CORRAL_EINVAL);
    CU_ASSERT(corral_invalidate_prefix(c, NULL, 3) == CORRAL_EINVAL);
    {
        char p[CORRAL_KEY_MAX + 1];
        memset(p, 'p', sizeof(p));
        CU_ASSERT(corral_invalidate_prefix(c, p, sizeof(p)) ==
                  CORRAL_EINVAL);
        CU_ASSERT(corral_invalidate_prefix(c, p, CORRAL_KEY_MAX) ==
                  CORRAL_OK);
    }
    corral_destroy(c);
}

/* Rules retire once the sweep has passed over everything they match. */
static void
test_prefix_rules_retire(void)
{
    corral_t *c = mk(2);
    char key[32];

    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "%s:%d", i % 2 ? "odd" : "even", i);
        corral_set(c, key, strlen(key), "v", 1, 0, 0);
    }
    CU_ASSERT(corral_invalidate_prefix(c, "odd:", 4) == CORRAL_OK);
    CU_ASSERT_EQUAL(STAT(c, prefix_rules), 2);
    for (int i = 0; i < 20 && STAT(c, prefix_rules) > 0; i++) {
        corral_sweep(c, 2000);
    }
    CU_ASSERT_EQUAL(STAT(c, prefix_rules), 0);
    CU_ASSERT_EQUAL(STAT(c, curr_items), 1000);
    CU_ASSERT(!has(c, "odd:1"));
    CU_ASSERT(has(c, "even:0"));
    corral_destroy(c);
}

/* More pending rules than a shard holds: the oldest are applied at once,
 * and every invalidation still holds. */
static void
test_prefix_rule_overflow(void)
{
    corral_t *c = mk(1);
    char key[32];

    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "p%d:x", i);
        corral_set(c, key, strlen(key), "v", 1, 0, 0);
    }
    for (int i = 0; i < 150; i++) {
        snprintf(key, sizeof(key), "p%d:", i);
        CU_ASSERT(corral_invalidate_prefix(c, key, strlen(key)) ==
                  CORRAL_OK);
    }
    CU_ASSERT(STAT(c, prefix_rules) <= TAG_PREFIX_RULES_MAX);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "p%d:x", i);
        CU_ASSERT(has(c, key) == (i >= 150));
    }
    corral_destroy(c);
}

static void
test_flush_drops_rules(void)
{
    corral_t *c = mk(2);
    corral_set(c, "a:1", 3, "v", 1, 0, 0);
    corral_invalidate_prefix(c, "a:", 2);
    CU_ASSERT_EQUAL(STAT(c, prefix_rules), 2);
    corral_flush(c, 0);
    CU_ASSERT_EQUAL(STAT(c, prefix_rules), 0);
    corral_set(c, "a:1", 3, "v", 1, 0, 0);
    CU_ASSERT(has(c, "a:1"));
    corral_destroy(c);
}

/*
 * Writers store tagged keys while another thread invalidates the tag.
 * For each key a writer records how many invalidations had finished
 * before it stored, and how many had started once the store returned.  A
 * key stored after the last invalidation finished must be live; one
 * stored before the last invalidation started must miss.
 */
#define RACE_KEYS 2000
static corral_t *race_cache;
static _Atomic int race_round;   /* invalidations finished */
static _Atomic int race_started; /* invalidations started */
static _Atomic int race_before[2][RACE_KEYS];
static _Atomic int race_after[2][RACE_KEYS];

static void *
race_writer(void *arg)
{
    int w = (int)(intptr_t)arg;
    const char *t[] = {"hot"};
    char key[32];
    for (int i = 0; i < RACE_KEYS; i++) {
        snprintf(key, sizeof(key), "w%d:%d", w, i);
        atomic_store(&race_before[w][i], atomic_load(&race_round));
        set_tagged(race_cache, key, "v", t, 1);
        atomic_store(&race_after[w][i], atomic_load(&race_started));
    }
    return NULL;
}

static void *
race_invalidator(void *arg)
{
    (void)arg;
    for (int i = 0; i < 50; i++) {
        atomic_fetch_add(&race_started, 1);
        corral_invalidate_tag(race_cache, "hot");
        atomic_fetch_add(&race_round, 1);
    }
    return NULL;
}

static void
test_concurrent_invalidation(void)
{
    pthread_t th[3];
    char key[32];
    int final;

    race_cache = mk(4);
    atomic_store(&race_round, 0);
    atomic_store(&race_started, 0);
    pthread_create(&th[0], NULL, race_writer, (void *)0);
    pthread_create(&th[1], NULL, race_writer, (void *)1);
    pthread_create(&th[2], NULL, race_invalidator, NULL);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
    }
    final = atomic_load(&race_round);
    for (int w = 0; w < 2; w++) {
        for (int i = 0; i < RACE_KEYS; i++) {
            snprintf(key, sizeof(key), "w%d:%d", w, i);
            if (atomic_load(&race_before[w][i]) == final) {
                CU_ASSERT(has(race_cache, key));
            } else if (atomic_load(&race_after[w][i]) < final) {
                CU_ASSERT(!has(race_cache, key));
            }
        }
    }
    corral_destroy(race_cache);
}

static const struct cu_test tag_tests[] = {
    CU_TEST(test_tag_invalidation),
    CU_TEST(test_item_tags_and_derived_items),
    CU_TEST(test_tag_limits),
    CU_TEST(test_tag_reclamation),
    CU_TEST(test_many_tags),
    CU_TEST(test_pinned_survives_invalidation),
    CU_TEST(test_concurrent_invalidation),
    CU_END,
};

static const struct cu_test prefix_tests[] = {
    CU_TEST(test_prefix_invalidation),
    CU_TEST(test_prefix_rules_retire),
    CU_TEST(test_prefix_rule_overflow),
    CU_TEST(test_flush_drops_rules),
    CU_END,
};

CU_MAIN({"tags", tag_tests, NULL, NULL}, {"prefix", prefix_tests, NULL, NULL})
