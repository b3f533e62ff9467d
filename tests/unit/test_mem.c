/*
 * test_mem.c - allocation failures, injected (mem_fail_after, Lua's
 * "failnext") at every allocation of every operation in turn.
 *
 * For each operation: build a cache and its starting state, make the n-th
 * allocation from now fail, run the operation, and look at what it did;
 * repeat with n = 1, 2, 3, ... until the operation completes without
 * reaching the n-th allocation.  Each run must end in a clean
 * CORRAL_ENOMEM or in the operation's normal result (where the engine has
 * a documented fallback: a table that cannot grow takes the item anyway,
 * a ghost that cannot grow keeps its size, a prefix rule with no room is
 * applied at once), never a crash or a leak (ASan checks both, and debug
 * builds check the engine's invariants).  After each run the cache must be
 * consistent: the accounting exact, the key in the state memcached's
 * semantics give (a failed set removes the old value; a failed add,
 * replace, append, prepend, cas or incr leaves it), every other key
 * intact, and the cache still working.
 *
 * corral_create is failed the same way, at each of its own allocations
 * (mem_fail_any_after).
 *
 * The test reaches into the cache (cache.h) for mem_fail_after and the
 * accounting.
 */
#include "cache.h"

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

static unsigned cache_shards = 1;

static corral_t *
new_cache(void)
{
    corral_config_t cfg;
    corral_t *c = NULL;

    corral_config_init(&cfg);
    cfg.clock = fake_clock;
    cfg.max_memory = MIB;
    cfg.max_item_size = 16 * 1024;
    cfg.shards = cache_shards;
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

/* The value of key, in a static buffer ("" with *found false if absent). */
static const char *
value_of(corral_t *c, const char *key, bool *found)
{
    static char buf[8192];
    size_t len = 0;

    *found = corral_get_copy(c, key, strlen(key), buf, sizeof(buf) - 1, &len,
                             NULL, NULL) == CORRAL_OK;
    buf[*found ? len : 0] = '\0';
    return buf;
}

static bool
has_value(corral_t *c, const char *key, const char *want)
{
    bool found;
    const char *v = value_of(c, key, &found);
    return found && strcmp(v, want) == 0;
}

static bool
absent(corral_t *c, const char *key)
{
    bool found;
    value_of(c, key, &found);
    return !found;
}

static uint64_t
cas_of(corral_t *c, const char *key)
{
    char buf[8192];
    uint64_t cas = 0;
    corral_get_copy(c, key, strlen(key), buf, sizeof(buf), NULL, NULL, &cas);
    return cas;
}

/* Accounting (accounting.h). */
static bool
consistent(corral_t *c)
{
    return shards_accounting_ok(c, false);
}

/* ---------------------------------------------------------------------- */
/* The cases                                                              */

/*
 * Keys every starting state holds ("other0".."other9" = "o<i>"); each run
 * checks they are intact (unless the case evicts).
 */
static void
put_others(corral_t *c)
{
    char key[16], value[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "other%d", i);
        snprintf(value, sizeof(value), "o%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, strlen(value),
                                   0, 0),
                        CORRAL_OK);
    }
}

static bool
others_intact(corral_t *c)
{
    char key[16], value[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "other%d", i);
        snprintf(value, sizeof(value), "o%d", i);
        if (!has_value(c, key, value)) {
            printf("\n  %s lost\n", key);
            return false;
        }
    }
    return true;
}

/* State shared between a case's steps within one run. */
static corral_item_t *held;          /* an item pinned by setup */
static corral_item_t **many;         /* many pins, for saturation */
static size_t nmany;
static corral_sub_t *sub;
static uint64_t saved_cas;
static uint64_t older_cas;
static corral_status_t batch_status[100];

static void
on_event(const corral_event_t *ev, void *ud)
{
    (void)ev;
    (*(unsigned *)ud)++;
}

static unsigned events_seen;

static void
setup_plain(corral_t *c)
{
    put_others(c);
}

static void
setup_k(corral_t *c)
{
    put_others(c);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("old"), 7, 0), CORRAL_OK);
    saved_cas = cas_of(c, "k");
}

/* k = "newer", with the CAS of its previous value kept in older_cas */
static void
setup_k_superseded(corral_t *c)
{
    setup_k(c);
    older_cas = saved_cas;
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("newer"), 0, 0), CORRAL_OK);
    saved_cas = cas_of(c, "k");
}

static void
setup_k_number(corral_t *c)
{
    put_others(c);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("99"), 7, 0), CORRAL_OK);
    saved_cas = cas_of(c, "k");
}

static void
setup_k_pinned(corral_t *c)
{
    setup_k(c);
    CU_ASSERT_EQUAL(corral_get(c, K("k"), &held), CORRAL_OK);
}

static void
setup_k_number_pinned(corral_t *c)
{
    setup_k_number(c);
    CU_ASSERT_EQUAL(corral_get(c, K("k"), &held), CORRAL_OK);
}

/* k pinned in every slot of this thread and then as often as the
 * reference count allows: the next lookup needs a private copy. */
static void
setup_k_saturated(corral_t *c)
{
    setup_k(c);
    nmany = ITEM_REFS_MAX + PIN_SLOTS * PIN_BLOCKS_MAX;
    many = calloc(nmany, sizeof(*many));
    CU_ASSERT_PTR_NOT_NULL_FATAL(many);
    for (size_t i = 0; i < nmany; i++) {
        CU_ASSERT_EQUAL_FATAL(corral_get(c, K("k"), &many[i]), CORRAL_OK);
    }
}

/* Twelve keys in a one-shard cache: its 16-slot table grows at the next
 * new key. */
static void
setup_table_full(corral_t *c)
{
    put_others(c);
    CU_ASSERT_EQUAL(corral_set(c, K("t10"), K("v"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("t11"), K("v"), 0, 0), CORRAL_OK);
}

/* A cache filled to just short of its limit: the next new keys evict,
 * and the first eviction in each shard allocates its ghost table. */
static void
setup_cache_full(corral_t *c)
{
    char key[32], value[4000];
    corral_stats_t st = stats_of(c);

    memset(value, 'f', sizeof(value));
    for (int i = 0; st.mem_used + 4 * 5000 * c->nshards < MIB; i++) {
        snprintf(key, sizeof(key), "fill%d", i);
        CU_ASSERT_EQUAL_FATAL(corral_set(c, key, strlen(key), value,
                                         sizeof(value), 0, 0),
                              CORRAL_OK);
        st = stats_of(c);
    }
    if (c->nshards == 1) {
        CU_ASSERT_EQUAL(st.evictions, 0);
    }
}

static void
setup_subscribed(corral_t *c)
{
    setup_k(c);
    events_seen = 0;
    CU_ASSERT_EQUAL(corral_subscribe(c, on_event, &events_seen, 0, &sub),
                    CORRAL_OK);
}

static void
setup_prefixed(corral_t *c)
{
    put_others(c);
    CU_ASSERT_EQUAL(corral_set(c, K("user:1"), K("a"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("user:2"), K("b"), 0, 0), CORRAL_OK);
}

static void
setup_tagged(corral_t *c)
{
    static const char *const tags[] = {"red", "blue"};
    corral_store_opts_t o = {0};

    put_others(c);
    o.tags = tags;
    o.ntags = 2;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("old"), &o, NULL), CORRAL_OK);
}

/* Operations. */

static corral_status_t
op_set_k(corral_t *c)
{
    return corral_set(c, K("k"), K("new"), 0xdeadbeef, 100);
}

static corral_status_t
op_set_k_tags(corral_t *c)
{
    static const char *const tags[] = {"t1", "t2", "t3", "red"};
    corral_store_opts_t o = {0};
    o.tags = tags;
    o.ntags = 4;
    return corral_store(c, K("k"), K("new"), &o, NULL);
}

static corral_status_t
op_add_k(corral_t *c)
{
    return corral_add(c, K("k"), K("new"), 0, 0);
}

static corral_status_t
op_replace_k(corral_t *c)
{
    return corral_replace(c, K("k"), K("new"), 0, 0);
}

static corral_status_t
op_append_k(corral_t *c)
{
    return corral_append(c, K("k"), K("+"));
}

static corral_status_t
op_prepend_k(corral_t *c)
{
    return corral_prepend(c, K("k"), K("+"));
}

static corral_status_t
op_cas_k(corral_t *c)
{
    return corral_cas(c, K("k"), K("new"), 0, 0, saved_cas, NULL);
}

static corral_status_t
op_invalidating_store_k(corral_t *c)
{
    corral_store_opts_t o = {0};
    o.mode = CORRAL_CAS;
    o.cas = older_cas;
    o.options = CORRAL_STORE_INVALIDATE;
    return corral_store(c, K("k"), K("new"), &o, NULL);
}

static corral_status_t
op_incr_k(corral_t *c)
{
    return corral_incr(c, K("k"), 1, NULL);
}

static corral_status_t
op_decr_k(corral_t *c)
{
    return corral_decr(c, K("k"), 1, NULL);
}

static corral_status_t
op_arith_vivify(corral_t *c)
{
    corral_arith_opts_t a = {0};
    a.options = CORRAL_ARITH_VIVIFY;
    a.initial = 5;
    return corral_arith(c, K("k"), &a, NULL);
}

static corral_status_t
op_get_vivify(corral_t *c)
{
    corral_get_opts_t o = {0};
    corral_item_t *it = NULL;
    corral_status_t st;

    o.flags = CORRAL_GET_VIVIFY;
    st = corral_get_ex(c, K("k"), &o, &it, NULL);
    CU_ASSERT((st == CORRAL_OK) == (it != NULL));
    corral_item_release(it);
    return st;
}

static corral_status_t
op_get_k(corral_t *c)
{
    corral_item_t *it = NULL;
    corral_status_t st = corral_get(c, K("k"), &it);
    size_t len = 0;

    CU_ASSERT((st == CORRAL_OK) == (it != NULL));
    if (it != NULL) {
        const void *v = corral_item_value(it, &len);
        CU_ASSERT(len == 3 && memcmp(v, "old", 3) == 0);
        CU_ASSERT_EQUAL(corral_item_flags(it), 7);
        CU_ASSERT_EQUAL(corral_item_cas(it), saved_cas);
    }
    corral_item_release(it);
    return st;
}

static corral_status_t
op_mark_stale_k(corral_t *c)
{
    corral_delete_opts_t d = {0};
    d.options = CORRAL_DELETE_STALE;
    return corral_delete_ex(c, K("k"), &d);
}

static corral_status_t
op_delete_k(corral_t *c)
{
    return corral_delete(c, K("k"));
}

static corral_status_t
op_touch_k(corral_t *c)
{
    return corral_touch(c, K("k"), 100);
}

static corral_status_t
op_flush(corral_t *c)
{
    return corral_flush(c, 0);
}

static corral_status_t
op_new_key(corral_t *c)
{
    return corral_set(c, K("t12"), K("v"), 0, 0);
}

/* BATCH new keys into a nearly full cache; the status of each is kept. */
#define BATCH 60

static corral_status_t
op_batch(corral_t *c)
{
    static char value[4000];
    corral_status_t worst = CORRAL_OK;
    char key[32];

    memset(value, 'b', sizeof(value));
    for (int i = 0; i < BATCH; i++) {
        snprintf(key, sizeof(key), "batch%d", i);
        batch_status[i] = corral_set(c, key, strlen(key), value,
                                     sizeof(value), 0, 0);
        if (batch_status[i] != CORRAL_OK) {
            worst = batch_status[i];
        }
    }
    return worst;
}

static corral_status_t
op_subscribe(corral_t *c)
{
    events_seen = 0;
    return corral_subscribe(c, on_event, &events_seen, 0, &sub);
}

static corral_status_t
op_set_k_subscribed(corral_t *c)
{
    return corral_set(c, K("k"), K("new"), 0xdeadbeef, 100);
}

static corral_status_t
op_invalidate_prefix(corral_t *c)
{
    return corral_invalidate_prefix(c, K("user:"));
}

static corral_status_t
op_invalidate_tag(corral_t *c)
{
    return corral_invalidate_tag(c, "red");
}

/* Checks after the operation: `failed` when it returned CORRAL_ENOMEM. */

static void
check_set_k(corral_t *c, bool failed)
{
    corral_item_info_t info;
    corral_get_opts_t o = {0};
    corral_item_t *it;

    if (failed) {
        /* memcached: a set that fails removes the old value */
        CU_ASSERT(absent(c, "k"));
        return;
    }
    CU_ASSERT(has_value(c, "k", "new"));
    o.flags = CORRAL_GET_NOBUMP;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, NULL), CORRAL_OK);
    corral_item_info(c, it, &info);
    CU_ASSERT_EQUAL(info.flags, 0xdeadbeef);
    CU_ASSERT_EQUAL(info.ttl, 100);
    corral_item_release(it);
}

static void
check_set_k_tags(corral_t *c, bool failed)
{
    corral_item_t *it;
    const char *tags[8];

    if (failed) {
        CU_ASSERT(absent(c, "k"));
    } else {
        CU_ASSERT_EQUAL_FATAL(corral_get(c, K("k"), &it), CORRAL_OK);
        CU_ASSERT_EQUAL(corral_item_tags(it, tags, 8), 4);
        CU_ASSERT_STRING_EQUAL(tags[0], "t1");
        CU_ASSERT_STRING_EQUAL(tags[3], "red");
        corral_item_release(it);
    }
    /* the tag registry still works either way */
    CU_ASSERT_EQUAL(corral_invalidate_tag(c, "t2"), CORRAL_OK);
    CU_ASSERT(absent(c, "k"));
}

/* The old value is untouched: value, flags, CAS. */
static void
check_k_unchanged(corral_t *c)
{
    CU_ASSERT(has_value(c, "k", "old") || has_value(c, "k", "99"));
    CU_ASSERT_EQUAL(cas_of(c, "k"), saved_cas);
}

static void
check_add_k(corral_t *c, bool failed)
{
    (void)failed;
    /* k existed: ENOTSTORED or ENOMEM, either way unchanged */
    check_k_unchanged(c);
}

static void
check_replace_k(corral_t *c, bool failed)
{
    if (failed) {
        check_k_unchanged(c);
    } else {
        CU_ASSERT(has_value(c, "k", "new"));
    }
}

static void
check_append_k(corral_t *c, bool failed)
{
    if (failed) {
        check_k_unchanged(c);
    } else {
        CU_ASSERT(has_value(c, "k", "old+"));
    }
}

static void
check_prepend_k(corral_t *c, bool failed)
{
    if (failed) {
        check_k_unchanged(c);
    } else {
        CU_ASSERT(has_value(c, "k", "+old"));
    }
}

static void
check_invalidating_store_k(corral_t *c, bool failed)
{
    if (failed) {
        CU_ASSERT(has_value(c, "k", "newer"));
        CU_ASSERT_EQUAL(cas_of(c, "k"), saved_cas);
    } else {
        corral_item_t *it;
        corral_item_info_t info;
        CU_ASSERT(has_value(c, "k", "new"));
        CU_ASSERT_EQUAL_FATAL(corral_get(c, K("k"), &it), CORRAL_OK);
        corral_item_info(c, it, &info);
        CU_ASSERT_EQUAL(info.stale, 1);
        corral_item_release(it);
    }
}

static void
check_incr_k(corral_t *c, bool failed)
{
    if (failed) {
        check_k_unchanged(c);
    } else {
        CU_ASSERT(has_value(c, "k", "100"));
        CU_ASSERT(cas_of(c, "k") > saved_cas);
    }
    if (held != NULL) {
        size_t len;
        CU_ASSERT_EQUAL(memcmp(corral_item_value(held, &len), "99", 2), 0);
    }
}

static void
check_decr_k(corral_t *c, bool failed)
{
    if (failed) {
        check_k_unchanged(c);
    } else {
        CU_ASSERT(has_value(c, "k", "98"));
    }
}

static void
check_vivified(corral_t *c, bool failed)
{
    if (failed) {
        CU_ASSERT(absent(c, "k"));
    } else {
        CU_ASSERT(!absent(c, "k"));
    }
}

static void
check_get_k(corral_t *c, bool failed)
{
    (void)failed;
    check_k_unchanged(c);
}

static void
check_mark_stale_k(corral_t *c, bool failed)
{
    corral_get_opts_t o = {0};
    corral_get_result_t r;
    corral_item_t *it;

    o.flags = CORRAL_GET_NOBUMP;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    if (failed) {
        /* nothing happened */
        CU_ASSERT_EQUAL(r.flags & CORRAL_RES_STALE, 0);
        CU_ASSERT_EQUAL(corral_item_cas(it), saved_cas);
    } else {
        CU_ASSERT(r.flags & CORRAL_RES_STALE);
        CU_ASSERT(corral_item_cas(it) > saved_cas);
    }
    corral_item_release(it);
    /* the reader's pin never changes */
    CU_ASSERT_EQUAL(corral_item_cas(held), saved_cas);
}

static void
check_gone_k(corral_t *c, bool failed)
{
    (void)failed;
    CU_ASSERT(absent(c, "k"));
}

static void
check_touched_k(corral_t *c, bool failed)
{
    corral_get_opts_t o = {0};
    corral_item_t *it;

    (void)failed;
    o.flags = CORRAL_GET_NOBUMP;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, NULL), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), 100);
    corral_item_release(it);
}

static void
check_flushed(corral_t *c, bool failed)
{
    char key[16];

    (void)failed;
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "other%d", i);
        CU_ASSERT(absent(c, key));
    }
    CU_ASSERT(absent(c, "k"));
    CU_ASSERT_EQUAL(stats_of(c).curr_items, 0);
}

static void
check_new_key(corral_t *c, bool failed)
{
    char key[16];

    if (failed) {
        CU_ASSERT(absent(c, "t12"));
    } else {
        CU_ASSERT(has_value(c, "t12", "v"));
    }
    for (int i = 10; i < 12; i++) {
        snprintf(key, sizeof(key), "t%d", i);
        CU_ASSERT(has_value(c, key, "v"));
    }
}

static void
check_batch(corral_t *c, bool failed)
{
    char key[32], want[4001];
    int ok = 0, nomem = 0;

    (void)failed;
    memset(want, 'b', 4000);
    want[4000] = '\0';
    for (int i = 0; i < BATCH; i++) {
        bool found;
        const char *v;

        snprintf(key, sizeof(key), "batch%d", i);
        v = value_of(c, key, &found);
        CU_ASSERT(batch_status[i] == CORRAL_OK ||
                  batch_status[i] == CORRAL_ENOMEM);
        ok += batch_status[i] == CORRAL_OK;
        nomem += batch_status[i] == CORRAL_ENOMEM;
        /* present means exactly right; a failed store is absent */
        if (found) {
            CU_ASSERT_STRING_EQUAL(v, want);
        }
        if (batch_status[i] == CORRAL_ENOMEM) {
            CU_ASSERT(!found);
        }
    }
    CU_ASSERT(nomem <= 1);
    CU_ASSERT_EQUAL(ok + nomem, BATCH);
    CU_ASSERT(stats_of(c).evictions > 0);
}

static void
check_subscribe(corral_t *c, bool failed)
{
    CU_ASSERT_EQUAL(corral_set(c, K("ev"), K("v"), 0, 0), CORRAL_OK);
    if (failed) {
        CU_ASSERT_PTR_NULL(sub);
        CU_ASSERT_EQUAL(corral_delete(c, K("ev")), CORRAL_OK);
        CU_ASSERT_EQUAL(events_seen, 0);
        /* a later subscription works */
        CU_ASSERT_EQUAL(corral_set(c, K("ev"), K("v"), 0, 0), CORRAL_OK);
        CU_ASSERT_EQUAL(corral_subscribe(c, on_event, &events_seen, 0, &sub),
                        CORRAL_OK);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
    CU_ASSERT_EQUAL(corral_delete(c, K("ev")), CORRAL_OK);
    CU_ASSERT_EQUAL(events_seen, 1);
}

static void
check_set_k_subscribed(corral_t *c, bool failed)
{
    check_set_k(c, failed);
    /* an overwrite, or the delete of the old value: one event each way */
    CU_ASSERT_EQUAL(events_seen, 1);
}

static void
check_prefix(corral_t *c, bool failed)
{
    (void)failed;
    CU_ASSERT(absent(c, "user:1"));
    CU_ASSERT(absent(c, "user:2"));
    CU_ASSERT_EQUAL(corral_set(c, K("user:3"), K("c"), 0, 0), CORRAL_OK);
    CU_ASSERT(has_value(c, "user:3", "c"));
}

static void
check_tag(corral_t *c, bool failed)
{
    (void)failed;
    CU_ASSERT(absent(c, "k"));
}

/*
 * A case: how to start, what to run, what it returns when no allocation
 * fails (`ok`), what to check, and the fewest allocations it must make.
 */
struct mem_case {
    const char *name;
    void (*setup)(corral_t *c);
    corral_status_t (*op)(corral_t *c);
    corral_status_t ok;
    void (*check)(corral_t *c, bool failed);
    int min_allocs;
    bool keeps_others;
    bool absorbs;
};

/* keeps: the other keys survive; absorbs: failures never show */
#define CASE(name, setup, op, ok, check, min, keeps, absorbs)                 \
    {name, setup, op, ok, check, min, keeps, absorbs}

static const struct mem_case cases[] = {
    CASE("set new", setup_plain, op_set_k, CORRAL_OK, check_set_k, 1, true,
         false),
    CASE("set over", setup_k, op_set_k, CORRAL_OK, check_set_k, 1, true,
         false),
    CASE("set over pinned", setup_k_pinned, op_set_k, CORRAL_OK, check_set_k,
         1, true, false),
    CASE("set with tags", setup_tagged, op_set_k_tags, CORRAL_OK,
         check_set_k_tags, 4, true, false),
    CASE("add existing", setup_k, op_add_k, CORRAL_ENOTSTORED, check_add_k, 1,
         true, false),
    CASE("replace", setup_k, op_replace_k, CORRAL_OK, check_replace_k, 1,
         true, false),
    CASE("append", setup_k, op_append_k, CORRAL_OK, check_append_k, 1, true,
         false),
    CASE("prepend", setup_k, op_prepend_k, CORRAL_OK, check_prepend_k, 1,
         true, false),
    CASE("cas", setup_k, op_cas_k, CORRAL_OK, check_replace_k, 1, true,
         false),
    CASE("invalidating store", setup_k_superseded, op_invalidating_store_k,
         CORRAL_OK, check_invalidating_store_k, 1, true, false),
    CASE("incr, longer", setup_k_number, op_incr_k, CORRAL_OK, check_incr_k,
         1, true, false),
    CASE("incr, pinned", setup_k_number_pinned, op_incr_k, CORRAL_OK,
         check_incr_k, 1, true, false),
    CASE("decr in place", setup_k_number, op_decr_k, CORRAL_OK, check_decr_k,
         0, true, false),
    CASE("incr vivify", setup_plain, op_arith_vivify, CORRAL_OK,
         check_vivified, 1, true, false),
    CASE("get vivify", setup_plain, op_get_vivify, CORRAL_OK, check_vivified,
         1, true, false),
    CASE("get", setup_k, op_get_k, CORRAL_OK, check_get_k, 0, true, false),
    CASE("get, pins saturated", setup_k_saturated, op_get_k, CORRAL_OK,
         check_get_k, 1, true, false),
    CASE("mark stale, pinned", setup_k_pinned, op_mark_stale_k, CORRAL_OK,
         check_mark_stale_k, 1, true, false),
    CASE("delete", setup_k, op_delete_k, CORRAL_OK, check_gone_k, 0, true,
         false),
    CASE("touch", setup_k, op_touch_k, CORRAL_OK, check_touched_k, 0, true,
         false),
    CASE("flush", setup_k, op_flush, CORRAL_OK, check_flushed, 0, false,
         false),
    CASE("table growth", setup_table_full, op_new_key, CORRAL_OK,
         check_new_key, 2, true, false),
    CASE("full cache", setup_cache_full, op_batch, CORRAL_OK, check_batch,
         BATCH + 1, false, false),
    CASE("subscribe", setup_plain, op_subscribe, CORRAL_OK, check_subscribe,
         1, true, false),
    CASE("set, subscribed", setup_subscribed, op_set_k_subscribed, CORRAL_OK,
         check_set_k_subscribed, 1, true, false),
    CASE("invalidate prefix", setup_prefixed, op_invalidate_prefix, CORRAL_OK,
         check_prefix, 1, true, true),
    CASE("invalidate tag", setup_tagged, op_invalidate_tag, CORRAL_OK,
         check_tag, 0, true, false),
};

static void
cleanup_run(corral_t *c)
{
    corral_item_release(held);
    held = NULL;
    for (size_t i = 0; i < nmany; i++) {
        corral_item_release(many[i]);
    }
    free(many);
    many = NULL;
    nmany = 0;
    corral_unsubscribe(c, sub);
    sub = NULL;
    corral_destroy(c);
}

/*
 * Run one case with the n-th allocation failing.  Returns true when the
 * operation did not reach the n-th allocation (the loop is over).
 */
static bool
run_once(const struct mem_case *mc, long n, int *failures, int *fallbacks)
{
    corral_t *c = new_cache();
    corral_stats_t before, after;
    corral_status_t st;
    bool reached, failed;

    mc->setup(c);
    before = stats_of(c);
    mem_fail_after(&c->mem, n);
    st = mc->op(c);
    reached = atomic_load(&c->mem.fail_countdown) == 0;
    mem_fail_after(&c->mem, 0);
    after = stats_of(c);

    failed = st == CORRAL_ENOMEM;
    if (!failed && st != mc->ok) {
        printf("\n  %s, allocation %ld failing: status %d (%s)\n", mc->name,
               n, (int)st, corral_strerror(st));
    }
    CU_ASSERT(failed || st == mc->ok);
    CU_ASSERT(reached || !failed);
    if (reached) {
        *failures += failed;
        *fallbacks += !failed;
    }
    if (failed && mc->op != op_batch && mc->op != op_get_vivify &&
        mc->op != op_get_k && mc->op != op_mark_stale_k &&
        mc->op != op_subscribe && mc->op != op_arith_vivify &&
        mc->op != op_incr_k) {
        /* a store refused for memory is counted as such */
        CU_ASSERT_EQUAL(after.store_no_memory - before.store_no_memory, 1);
    }
    if (!consistent(c)) {
        printf("  %s, allocation %ld failing\n", mc->name, n);
        CU_FAIL("inconsistent accounting");
    }
    mc->check(c, failed);
    if (mc->keeps_others) {
        CU_ASSERT(others_intact(c));
    }
    /* the cache carries on */
    CU_ASSERT_EQUAL(corral_set(c, K("probe"), K("works"), 0, 0), CORRAL_OK);
    CU_ASSERT(has_value(c, "probe", "works"));
    CU_ASSERT(consistent(c));
    cleanup_run(c);
    return !reached;
}

static void
run_cases(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct mem_case *mc = &cases[i];
        int failures = 0, fallbacks = 0;
        long n;

        for (n = 1; n < 2000; n++) {
            if (run_once(mc, n, &failures, &fallbacks)) {
                break;
            }
        }
        CU_ASSERT(n < 2000);
        /* n - 1 allocations were made, each failed in turn (with more
         * shards the keys spread out: the table-growth case may not
         * grow) */
        if (cache_shards == 1 && n - 1 < mc->min_allocs) {
            printf("\n  %s: %ld allocations, expected at least %d\n",
                   mc->name, n - 1, mc->min_allocs);
        }
        CU_ASSERT(cache_shards != 1 || n - 1 >= mc->min_allocs);
        CU_ASSERT_EQUAL(failures + fallbacks, n - 1);
        if (mc->absorbs) {
            CU_ASSERT_EQUAL(failures, 0);
        } else if (mc->min_allocs > 0) {
            CU_ASSERT(failures > 0); /* the first one cannot be dodged */
        }
    }
}

static void
test_each_allocation_one_shard(void)
{
    cache_shards = 1;
    run_cases();
}

static void
test_each_allocation_sharded(void)
{
    cache_shards = 4;
    run_cases();
    cache_shards = 1;
}

/*
 * A lookup that cannot get a private copy (slots taken, count saturated,
 * no memory) must not have handed out the recache token: the next caller,
 * with memory, wins it.
 */
static void
test_failed_lookup_keeps_token(void)
{
    corral_t *c = new_cache();
    corral_delete_opts_t d = {0};
    corral_get_opts_t o = {0};
    corral_get_result_t r;
    corral_item_t *it = NULL;
    corral_stats_t before, after;

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("old"), 0, 0), CORRAL_OK);
    d.options = CORRAL_DELETE_STALE;
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_OK);
    nmany = ITEM_REFS_MAX + PIN_SLOTS * PIN_BLOCKS_MAX;
    many = calloc(nmany, sizeof(*many));
    CU_ASSERT_PTR_NOT_NULL_FATAL(many);
    /* plain lookups: they do not ask for the token */
    for (size_t i = 0; i < nmany; i++) {
        CU_ASSERT_EQUAL_FATAL(corral_get(c, K("k"), &many[i]), CORRAL_OK);
    }
    before = stats_of(c);
    mem_fail_after(&c->mem, 1);
    CU_ASSERT_EQUAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_ENOMEM);
    CU_ASSERT_PTR_NULL(it);
    after = stats_of(c);
    CU_ASSERT_EQUAL(after.get_hits, before.get_hits);
    /* with memory again, the token is still there to win */
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT(r.flags & CORRAL_RES_WIN);
    CU_ASSERT(r.flags & CORRAL_RES_STALE);
    corral_item_release(it);
    cleanup_run(c);
}

/*
 * corral_create, with each of its allocations failing in turn (the cache,
 * the shard array, each shard's table): CORRAL_ENOMEM, no cache, and no
 * leak (ASan) from the cleanup of whatever was set up before; then a
 * create that reaches no failure works.
 */
static void
test_create_each_allocation(void)
{
    corral_config_t cfg;
    corral_t *c;
    corral_status_t st = CORRAL_ENOMEM;
    long n;

    corral_config_init(&cfg);
    cfg.shards = 4;
    for (n = 1; n < 100; n++) {
        c = (corral_t *)&cfg; /* create sets it to NULL when it fails */
        mem_fail_any_after(n);
        st = corral_create(&cfg, &c);
        mem_fail_any_after(0);
        if (st == CORRAL_OK) {
            break;
        }
        CU_ASSERT_EQUAL(st, CORRAL_ENOMEM);
        CU_ASSERT_PTR_NULL(c);
    }
    CU_ASSERT_EQUAL_FATAL(st, CORRAL_OK);
    /* the cache, the shard array and the four shards' tables */
    CU_ASSERT(n >= 7);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 0, 0), CORRAL_OK);
    CU_ASSERT(consistent(c));
    corral_destroy(c);
}

static const struct cu_test mem_tests[] = {
    CU_TEST(test_each_allocation_one_shard),
    CU_TEST(test_each_allocation_sharded),
    CU_TEST(test_failed_lookup_keeps_token),
    CU_TEST(test_create_each_allocation),
    CU_END,
};

CU_MAIN({"alloc_failure", mem_tests, NULL, NULL})
