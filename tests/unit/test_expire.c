/*
 * test_expire.c - expiry, on an injected clock (corral_config_t.clock).
 *
 * memcached's exptime rules: 0 never expires; 1..2592000 (30 days) is
 * relative to now, up to and including the boundary; anything larger is an
 * absolute Unix time, in the past or the future; a negative exptime means
 * already expired.  An item is expired from the second its expiry time is
 * reached.  Expired items are never returned by any call; corral_item_ttl()
 * and corral_item_info() report the time left; expired items are reclaimed
 * lazily, on access, by the sweep a write does and by corral_sweep(), and
 * memory and curr_items go down when they are.
 */
#include "corral.h"

#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cu_main.h"
#include "expire.h"

#define NS 1000000000ull
#define T0 1700000000ull
#define MIB ((size_t)1 << 20)
#define K(s) (s), (sizeof(s) - 1)

static _Atomic uint64_t clock_ns;

static uint64_t
fake_clock(void *ud)
{
    (void)ud;
    return atomic_load(&clock_ns);
}

static void
set_clock(uint64_t seconds, uint64_t nanos)
{
    atomic_store(&clock_ns, seconds * NS + nanos);
}

static void
advance(uint64_t seconds)
{
    atomic_fetch_add(&clock_ns, seconds * NS);
}

/* A cache on the fake clock, which reads T0 (one shard when asked, so
 * that sweeps and queues are easy to reason about). */
static corral_t *
new_cache(unsigned shards)
{
    corral_config_t cfg;
    corral_t *c = NULL;

    corral_config_init(&cfg);
    cfg.clock = fake_clock;
    cfg.shards = shards;
    set_clock(T0, 0);
    CU_ASSERT_EQUAL_FATAL(corral_create(&cfg, &c), CORRAL_OK);
    return c;
}

static bool
present(corral_t *c, const char *key)
{
    static char buf[4096];
    return corral_get_copy(c, key, strlen(key), buf, sizeof(buf), NULL, NULL,
                           NULL) == CORRAL_OK;
}

/* TTL of a live key without counting an access; INT64_MIN when absent. */
static int64_t
ttl_of(corral_t *c, const char *key)
{
    corral_get_opts_t o = {0};
    corral_item_t *it;
    int64_t ttl;

    o.flags = CORRAL_GET_NOBUMP;
    if (corral_get_ex(c, key, strlen(key), &o, &it, NULL) != CORRAL_OK) {
        return INT64_MIN;
    }
    ttl = corral_item_ttl(c, it);
    corral_item_release(it);
    return ttl;
}

static corral_stats_t
stats_of(corral_t *c)
{
    corral_stats_t s;
    corral_stats(c, &s, sizeof(s));
    return s;
}

/* ---------------------------------------------------------------------- */
/* The exptime rules                                                      */

static void
test_zero_never_expires(void)
{
    corral_t *c = new_cache(0);

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), -1);
    advance(100ull * 365 * 86400); /* a century, to 2123 */
    CU_ASSERT(present(c, "k"));
    CU_ASSERT_EQUAL(ttl_of(c, "k"), -1);
    CU_ASSERT_EQUAL(corral_sweep(c, 1000), 0);
    corral_destroy(c);
}

static void
test_relative(void)
{
    static const int64_t rel[] = {1, 2, 59, 3600, 86400, CORRAL_RELTIME_MAX};
    corral_t *c = new_cache(0);

    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        char key[16];

        snprintf(key, sizeof(key), "k%zu", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), K("v"), 0, rel[i]),
                        CORRAL_OK);
        CU_ASSERT_EQUAL(ttl_of(c, key), rel[i]);
        advance((uint64_t)rel[i] - 1);
        CU_ASSERT(present(c, key)); /* the last second it lives */
        CU_ASSERT_EQUAL(ttl_of(c, key), 1);
        advance(1);
        CU_ASSERT(!present(c, key));
        CU_ASSERT_EQUAL(ttl_of(c, key), INT64_MIN);
    }
    corral_destroy(c);
}

/* One past 30 days is an absolute Unix time: 1970-01-31, long past. */
static void
test_reltime_boundary(void)
{
    corral_t *c = new_cache(0);

    CU_ASSERT_EQUAL(corral_set(c, K("max"), K("v"), 0, CORRAL_RELTIME_MAX),
                    CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("past"), K("v"), 0,
                               CORRAL_RELTIME_MAX + 1),
                    CORRAL_OK);
    CU_ASSERT(present(c, "max"));
    CU_ASSERT_EQUAL(ttl_of(c, "max"), CORRAL_RELTIME_MAX);
    CU_ASSERT(!present(c, "past"));
    corral_destroy(c);

    /* on a clock that reads early 1970 the same exptime lies ahead, and
     * is still absolute, not relative */
    c = new_cache(0);
    set_clock(1000, 0);
    CU_ASSERT_EQUAL(corral_set(c, K("abs"), K("v"), 0,
                               CORRAL_RELTIME_MAX + 1),
                    CORRAL_OK);
    CU_ASSERT_EQUAL(ttl_of(c, "abs"), CORRAL_RELTIME_MAX + 1 - 1000);
    set_clock(CORRAL_RELTIME_MAX, 0);
    CU_ASSERT(present(c, "abs"));
    set_clock(CORRAL_RELTIME_MAX + 1, 0);
    CU_ASSERT(!present(c, "abs"));
    corral_destroy(c);
}

static void
test_absolute(void)
{
    corral_t *c = new_cache(0);
    corral_item_info_t info;
    corral_item_t *it;

    CU_ASSERT_EQUAL(corral_set(c, K("future"), K("v"), 0, T0 + 100),
                    CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("now"), K("v"), 0, T0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("past"), K("v"), 0, T0 - 1), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("far"), K("v"), 0, T0 + 50ull * 86400),
                    CORRAL_OK);
    CU_ASSERT_EQUAL(ttl_of(c, "future"), 100);
    CU_ASSERT_EQUAL(ttl_of(c, "far"), 50 * 86400);
    CU_ASSERT(!present(c, "now"));
    CU_ASSERT(!present(c, "past"));
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("future"), &it), CORRAL_OK);
    corral_item_info(c, it, &info);
    CU_ASSERT_EQUAL(info.exptime, (int64_t)T0 + 100);
    CU_ASSERT_EQUAL(info.ttl, 100);
    corral_item_release(it);
    advance(99);
    CU_ASSERT(present(c, "future"));
    advance(1);
    CU_ASSERT(!present(c, "future"));
    CU_ASSERT(present(c, "far"));
    corral_destroy(c);
}

static void
test_negative(void)
{
    static const int64_t neg[] = {-1, -2, -CORRAL_RELTIME_MAX, INT64_MIN};
    corral_t *c = new_cache(0);

    for (size_t i = 0; i < sizeof(neg) / sizeof(neg[0]); i++) {
        CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 0, neg[i]), CORRAL_OK);
        CU_ASSERT(!present(c, "k"));
        CU_ASSERT_EQUAL(corral_add(c, K("k"), K("v"), 0, neg[i]), CORRAL_OK);
        CU_ASSERT(!present(c, "k"));
    }
    corral_destroy(c);
}

/* Beyond what 32-bit times hold: still in the future, not wrapped. */
static void
test_far_future(void)
{
    corral_t *c = new_cache(0);

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 0, INT64_MAX), CORRAL_OK);
    CU_ASSERT(present(c, "k"));
    CU_ASSERT(ttl_of(c, "k") > 80ll * 365 * 86400);
    CU_ASSERT_EQUAL(corral_set(c, K("k2"), K("v"), 0, (int64_t)1 << 40),
                    CORRAL_OK);
    CU_ASSERT(present(c, "k2"));
    CU_ASSERT(ttl_of(c, "k2") > 0);
    corral_destroy(c);
}

/* The clock's nanoseconds do not matter: expiry is by whole seconds. */
static void
test_subsecond_clock(void)
{
    corral_t *c = new_cache(0);

    set_clock(T0, 999999999);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 0, 2), CORRAL_OK);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), 2);
    set_clock(T0 + 1, 500000000);
    CU_ASSERT(present(c, "k"));
    CU_ASSERT_EQUAL(ttl_of(c, "k"), 1);
    set_clock(T0 + 2, 0);
    CU_ASSERT(!present(c, "k"));
    corral_destroy(c);
}

/* Every way of setting an expiry uses the same rules. */
static void
test_every_setter(void)
{
    corral_t *c = new_cache(0);
    corral_item_t *it;
    corral_get_opts_t go = {0};
    corral_delete_opts_t d = {0};
    corral_arith_opts_t a = {0};
    corral_arith_result_t r;
    corral_store_opts_t so = {0};

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("1"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_touch(c, K("k"), CORRAL_RELTIME_MAX), CORRAL_OK);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), CORRAL_RELTIME_MAX);
    CU_ASSERT_EQUAL(corral_touch(c, K("k"), T0 + 7), CORRAL_OK);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), 7);
    CU_ASSERT_EQUAL_FATAL(corral_gat(c, K("k"), 9, &it), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), 9);
    corral_item_release(it);
    go.flags = CORRAL_GET_TOUCH;
    go.touch_exptime = T0 + 11;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &go, &it, NULL),
                          CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), 11);
    corral_item_release(it);
    d.options = CORRAL_DELETE_STALE | CORRAL_DELETE_TOUCH;
    d.exptime = 13;
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_OK);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), 13);
    a.options = CORRAL_ARITH_TOUCH;
    a.delta = 1;
    a.touch_exptime = T0 + 15;
    CU_ASSERT_EQUAL(corral_arith(c, K("k"), &a, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.ttl, 15);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), 15);
    a.options = CORRAL_ARITH_VIVIFY;
    a.vivify_exptime = 17;
    CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.ttl, 17);
    go.flags = CORRAL_GET_VIVIFY;
    go.vivify_exptime = T0 + 19;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("v"), &go, &it, NULL),
                          CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), 19);
    corral_item_release(it);
    so.mode = CORRAL_REPLACE;
    so.exptime = 21;
    CU_ASSERT_EQUAL(corral_store(c, K("v"), K("x"), &so, NULL), CORRAL_OK);
    CU_ASSERT_EQUAL(ttl_of(c, "v"), 21);

    /* a negative one through each expires the key */
    CU_ASSERT_EQUAL(corral_touch(c, K("k"), -1), CORRAL_OK);
    CU_ASSERT(!present(c, "k"));
    a.options = CORRAL_ARITH_TOUCH;
    a.touch_exptime = -1;
    CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.ttl, 0);
    CU_ASSERT(!present(c, "n"));
    go.flags = CORRAL_GET_TOUCH;
    go.touch_exptime = -1;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("v"), &go, &it, NULL),
                          CORRAL_OK);
    corral_item_release(it);
    CU_ASSERT(!present(c, "v"));
    corral_destroy(c);
}

/* Append, prepend, incr and decr keep the item's expiry. */
static void
test_changes_keep_expiry(void)
{
    corral_t *c = new_cache(0);
    uint64_t v;

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("10"), 0, 100), CORRAL_OK);
    advance(10);
    CU_ASSERT_EQUAL(corral_append(c, K("k"), K("0")), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_prepend(c, K("k"), K("1")), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_incr(c, K("k"), 100000, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 101100);
    CU_ASSERT_EQUAL(corral_decr(c, K("k"), 1, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), 90);
    advance(89);
    CU_ASSERT(present(c, "k"));
    advance(1);
    CU_ASSERT(!present(c, "k"));
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Expired items are never returned                                       */

/*
 * Each operation on a key that has just expired, with what it must do.
 * The value "1" was stored with exptime 5 and flags 9; the clock then
 * moved to its expiry.  No call may return or act on the old item.
 */
static void
check_expired_everywhere(corral_t *c, int which)
{
    corral_item_t *it = NULL;
    corral_get_opts_t go = {0};
    corral_get_result_t gr;
    corral_delete_opts_t d = {0};
    corral_arith_opts_t a = {0};
    corral_arith_result_t ar;
    corral_store_opts_t so = {0};
    char buf[16];
    size_t len = 0;
    const void *keys[2] = {"k", "k"};
    size_t nkeys[2] = {1, 1};
    corral_item_t *items[2];

    switch (which) {
    case 0:
        CU_ASSERT_EQUAL(corral_get(c, K("k"), &it), CORRAL_ENOTFOUND);
        CU_ASSERT_PTR_NULL(it);
        break;
    case 1:
        CU_ASSERT_EQUAL(corral_get_copy(c, K("k"), buf, sizeof(buf), &len,
                                        NULL, NULL),
                        CORRAL_ENOTFOUND);
        break;
    case 2:
        CU_ASSERT_EQUAL(corral_get_multi(c, 2, keys, nkeys, items), 0);
        CU_ASSERT_PTR_NULL(items[0]);
        CU_ASSERT_PTR_NULL(items[1]);
        break;
    case 3:
        CU_ASSERT_EQUAL(corral_gat(c, K("k"), 100, &it), CORRAL_ENOTFOUND);
        break;
    case 4:
        go.flags = CORRAL_GET_NOBUMP;
        CU_ASSERT_EQUAL(corral_get_ex(c, K("k"), &go, &it, &gr),
                        CORRAL_ENOTFOUND);
        break;
    case 5:
        go.flags = CORRAL_GET_RECACHE;
        go.recache_ttl = 1000;
        CU_ASSERT_EQUAL(corral_get_ex(c, K("k"), &go, &it, &gr),
                        CORRAL_ENOTFOUND);
        break;
    case 6:
        go.flags = CORRAL_GET_TOUCH;
        go.touch_exptime = 1000;
        CU_ASSERT_EQUAL(corral_get_ex(c, K("k"), &go, &it, &gr),
                        CORRAL_ENOTFOUND);
        break;
    case 7:
        /* vivify makes a new, empty item: not the old one */
        go.flags = CORRAL_GET_VIVIFY;
        CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &go, &it, &gr),
                              CORRAL_OK);
        CU_ASSERT(gr.flags & CORRAL_RES_VIVIFIED);
        corral_item_value(it, &len);
        CU_ASSERT_EQUAL(len, 0);
        CU_ASSERT_EQUAL(corral_item_flags(it), 0);
        corral_item_release(it);
        return;
    case 8:
        CU_ASSERT_EQUAL(corral_touch(c, K("k"), 1000), CORRAL_ENOTFOUND);
        break;
    case 9:
        CU_ASSERT_EQUAL(corral_delete(c, K("k")), CORRAL_ENOTFOUND);
        break;
    case 10:
        d.options = CORRAL_DELETE_STALE | CORRAL_DELETE_TOUCH;
        d.exptime = 1000;
        CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_ENOTFOUND);
        break;
    case 11:
        CU_ASSERT_EQUAL(corral_incr(c, K("k"), 1, NULL), CORRAL_ENOTFOUND);
        break;
    case 12:
        CU_ASSERT_EQUAL(corral_decr(c, K("k"), 1, NULL), CORRAL_ENOTFOUND);
        break;
    case 13:
        a.options = CORRAL_ARITH_VIVIFY;
        a.delta = 5;
        a.initial = 40;
        CU_ASSERT_EQUAL(corral_arith(c, K("k"), &a, &ar), CORRAL_OK);
        CU_ASSERT_EQUAL(ar.value, 40); /* not 1 + 5 */
        CU_ASSERT_EQUAL(corral_get_copy(c, K("k"), buf, sizeof(buf), &len,
                                        NULL, NULL),
                        CORRAL_OK);
        CU_ASSERT(len == 2 && memcmp(buf, "40", 2) == 0);
        return;
    case 14:
        CU_ASSERT_EQUAL(corral_replace(c, K("k"), K("2"), 0, 0),
                        CORRAL_ENOTSTORED);
        break;
    case 15:
        CU_ASSERT_EQUAL(corral_append(c, K("k"), K("2")), CORRAL_ENOTSTORED);
        break;
    case 16:
        CU_ASSERT_EQUAL(corral_prepend(c, K("k"), K("2")),
                        CORRAL_ENOTSTORED);
        break;
    case 17:
        CU_ASSERT_EQUAL(corral_cas(c, K("k"), K("2"), 0, 0, 1, NULL),
                        CORRAL_ENOTFOUND);
        break;
    case 18:
        so.mode = CORRAL_APPEND;
        so.cas = 1;
        CU_ASSERT_EQUAL(corral_store(c, K("k"), K("2"), &so, NULL),
                        CORRAL_ENOTSTORED);
        break;
    case 19:
        /* add sees a free key */
        CU_ASSERT_EQUAL(corral_add(c, K("k"), K("new"), 0, 0), CORRAL_OK);
        CU_ASSERT_EQUAL(corral_get_copy(c, K("k"), buf, sizeof(buf), &len,
                                        NULL, NULL),
                        CORRAL_OK);
        CU_ASSERT(len == 3 && memcmp(buf, "new", 3) == 0);
        return;
    }
    /* and after any of them the key is still absent */
    CU_ASSERT_EQUAL(corral_get(c, K("k"), &it), CORRAL_ENOTFOUND);
}

#define NCHECKS 20

static void
test_expired_never_returned(void)
{
    for (int which = 0; which < NCHECKS; which++) {
        /* on a plain cache, and on one where the item was fetched and the
         * key exists in other states too */
        for (int variant = 0; variant < 2; variant++) {
            corral_t *c = new_cache(variant == 0 ? 1 : 0);
            corral_item_t *it;

            CU_ASSERT_EQUAL(corral_set(c, K("k"), K("1"), 9, 5), CORRAL_OK);
            if (variant == 1) {
                CU_ASSERT_EQUAL_FATAL(corral_get(c, K("k"), &it), CORRAL_OK);
                corral_item_release(it);
            }
            advance(5);
            check_expired_everywhere(c, which);
            corral_destroy(c);
        }
    }
}

/* An item that expires while pinned is still readable through the pin;
 * its TTL reads 0. */
static void
test_expires_while_pinned(void)
{
    corral_t *c = new_cache(0);
    corral_item_info_t info;
    corral_item_t *it;
    size_t len;

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("value"), 0, 3), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("k"), &it), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), 3);
    advance(10);
    CU_ASSERT(!present(c, "k"));
    for (int i = 0; i < 50; i++) {
        corral_sweep(c, 100);
    }
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), 0);
    corral_item_info(c, it, &info);
    CU_ASSERT_EQUAL(info.ttl, 0);
    CU_ASSERT_EQUAL(info.exptime, (int64_t)T0 + 3);
    CU_ASSERT_EQUAL(memcmp(corral_item_value(it, &len), "value", 5), 0);
    CU_ASSERT_EQUAL(len, 5);
    corral_item_release(it);
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* TTL reporting                                                          */

static void
test_ttl_counts_down(void)
{
    corral_t *c = new_cache(0);
    corral_item_t *it;
    corral_item_info_t info;

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 0, 1000), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("never"), K("v"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("k"), &it), CORRAL_OK);
    for (int64_t t = 0; t < 1000; t += 111) {
        set_clock(T0 + (uint64_t)t, 0);
        CU_ASSERT_EQUAL(corral_item_ttl(c, it), 1000 - t);
        corral_item_info(c, it, &info);
        CU_ASSERT_EQUAL(info.ttl, 1000 - t);
        CU_ASSERT_EQUAL(info.exptime, (int64_t)T0 + 1000);
        CU_ASSERT_EQUAL(info.last_access, t);
        CU_ASSERT_EQUAL(ttl_of(c, "k"), 1000 - t);
    }
    corral_item_release(it);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("never"), &it), CORRAL_OK);
    corral_item_info(c, it, &info);
    CU_ASSERT_EQUAL(info.ttl, -1);
    CU_ASSERT_EQUAL(info.exptime, 0);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), -1);
    corral_item_release(it);
    corral_destroy(c);
}

/* The default clock follows the system's real time. */
static void
test_default_clock(void)
{
    corral_t *c = NULL;
    corral_item_t *it;
    corral_item_info_t info;
    time_t now = time(NULL);
    int64_t ttl;

    CU_ASSERT_EQUAL_FATAL(corral_create(NULL, &c), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("rel"), K("v"), 0, 1000), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("abs"), K("v"), 0, (int64_t)now + 5000),
                    CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("past"), K("v"), 0, (int64_t)now - 5000),
                    CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("rel"), &it), CORRAL_OK);
    ttl = corral_item_ttl(c, it);
    CU_ASSERT(ttl >= 990 && ttl <= 1000);
    corral_item_info(c, it, &info);
    CU_ASSERT(info.exptime >= (int64_t)now + 990 &&
              info.exptime <= (int64_t)now + 1010);
    corral_item_release(it);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("abs"), &it), CORRAL_OK);
    ttl = corral_item_ttl(c, it);
    CU_ASSERT(ttl >= 4980 && ttl <= 5010);
    corral_item_release(it);
    CU_ASSERT(!present(c, "past"));
    corral_destroy(c);
}

/* The default clock's whole seconds (read through the thread's cached
 * second and time-stamp-counter span where the kernel keeps time with the
 * counter) must always be the monotonic clock's: never behind a reading
 * taken just before, never ahead of one taken just after.  Checked over
 * two second boundaries, after the counter's rate is known, in a loop that
 * also sleeps at random points so that spans start anywhere in a second. */
static void
test_mono_seconds_exact(void)
{
    struct timespec a, b;
    int64_t start, m;
    unsigned wrong = 0, reads = 0;

    clock_gettime(CLOCK_MONOTONIC, &a);
    start = a.tv_sec;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &a);
        m = mono_seconds();
        clock_gettime(CLOCK_MONOTONIC, &b);
        reads++;
        if (m < a.tv_sec || m > b.tv_sec) {
            wrong++;
        }
        if (b.tv_sec >= start + 3) {
            break;
        }
        if (reads % 4096 == 0) {
            struct timespec d = {0, (long)(reads % 7919) * 1000};
            nanosleep(&d, NULL);
        }
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(reads > 1000);
}

/* ---------------------------------------------------------------------- */
/* Reclamation                                                            */

static void
fill_expiring(corral_t *c, int n, int64_t exptime)
{
    char key[16], value[100];

    memset(value, 'v', sizeof(value));
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "e%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, sizeof(value),
                                   0, exptime),
                        CORRAL_OK);
    }
}

/* A lookup that meets an expired item unlinks it at once (curr_items and
 * bytes drop); its memory comes back with its segment, which the sweep
 * hands back once nothing in it is live. */
static void
test_reclaim_on_access(void)
{
    corral_t *c = new_cache(1);
    corral_stats_t s0, s1, s2;
    char key[16];

    fill_expiring(c, 100, 10);
    CU_ASSERT_EQUAL(corral_set(c, K("live"), K("v"), 0, 0), CORRAL_OK);
    advance(10);
    s0 = stats_of(c);
    CU_ASSERT_EQUAL(s0.curr_items, 101); /* nothing looked at them yet */
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "e%d", i);
        CU_ASSERT(!present(c, key));
    }
    s1 = stats_of(c);
    CU_ASSERT_EQUAL(s1.curr_items, 1);
    CU_ASSERT(s1.bytes < s0.bytes);
    CU_ASSERT_EQUAL(s1.get_expired - s0.get_expired, 100);
    CU_ASSERT_EQUAL(s1.reclaimed - s0.reclaimed, 100);
    CU_ASSERT_EQUAL(s1.expired_unfetched - s0.expired_unfetched, 100);
    for (int i = 0; i < 100; i++) {
        corral_sweep(c, 100);
    }
    s2 = stats_of(c);
    CU_ASSERT(s2.mem_used <= s0.mem_used);
    CU_ASSERT_EQUAL(s2.reclaimed, s1.reclaimed); /* counted once */
    CU_ASSERT(present(c, "live"));
    /* the live item kept their segment; without it the sweep hands it
     * back: memory is the table alone */
    CU_ASSERT_EQUAL(corral_delete(c, K("live")), CORRAL_OK);
    for (int i = 0; i < 10; i++) {
        corral_sweep(c, 100);
    }
    s2 = stats_of(c);
    CU_ASSERT_EQUAL(s2.mem_used, s2.hash_bytes);
    corral_destroy(c);
}

/* corral_sweep frees expired items nobody looks up. */
static void
test_reclaim_by_sweep(void)
{
    corral_t *c = new_cache(0);
    corral_stats_t s0, s1;
    corral_config_t cfg;
    size_t freed = 0;
    char key[16];

    corral_config_get(c, &cfg);
    fill_expiring(c, 300, 10);
    /* fetch a third of them first: they are not "unfetched" */
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "e%d", i);
        CU_ASSERT(present(c, key));
    }
    CU_ASSERT_EQUAL(corral_set(c, K("live"), K("v"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_sweep(c, 10000), 0);
    advance(9);
    CU_ASSERT_EQUAL(corral_sweep(c, 10000), 0); /* one second left */
    advance(1);
    s0 = stats_of(c);
    for (int i = 0; i < 1000 && freed < 300; i++) {
        size_t n = corral_sweep(c, 64);
        /* about the budget: each step looks at both queues */
        CU_ASSERT(n <= 2 * (64 + cfg.shards));
        freed += n;
    }
    CU_ASSERT_EQUAL(freed, 300);
    s1 = stats_of(c);
    CU_ASSERT_EQUAL(s1.curr_items, 1);
    CU_ASSERT(s1.mem_used < s0.mem_used); /* segments without "live" */
    CU_ASSERT(s1.bytes < s0.bytes);
    CU_ASSERT_EQUAL(s1.reclaimed - s0.reclaimed, 300);
    CU_ASSERT_EQUAL(s1.expired_unfetched - s0.expired_unfetched, 200);
    CU_ASSERT_EQUAL(s1.evictions, 0);
    CU_ASSERT_EQUAL(corral_sweep(c, 10000), 0);
    CU_ASSERT(present(c, "live"));
    corral_destroy(c);
}

/* Writes sweep a little each: a busy cache frees expired items without
 * any lookup or corral_sweep. */
static void
test_reclaim_by_writes(void)
{
    corral_t *c = new_cache(1);
    corral_stats_t s0, s1;

    fill_expiring(c, 200, 10);
    advance(10);
    s0 = stats_of(c);
    CU_ASSERT_EQUAL(s0.curr_items, 200);
    for (int i = 0; i < 2000; i++) {
        CU_ASSERT_EQUAL(corral_set(c, K("busy"), K("v"), 0, 0), CORRAL_OK);
    }
    s1 = stats_of(c);
    CU_ASSERT_EQUAL(s1.curr_items, 1);
    CU_ASSERT_EQUAL(s1.reclaimed - s0.reclaimed, 200);
    CU_ASSERT(s1.bytes < s0.bytes);
    /* 2000 writes of one key took no memory (rewritten in place) */
    CU_ASSERT(s1.mem_used <= s0.mem_used);
    corral_destroy(c);
}

/* An expired item is reclaimed rather than evicted when room is needed. */
static void
test_expired_reclaimed_before_eviction(void)
{
    corral_config_t cfg;
    corral_t *c = NULL;
    corral_stats_t s;
    char key[16], value[1000];

    corral_config_init(&cfg);
    cfg.clock = fake_clock;
    cfg.shards = 1;
    cfg.max_memory = MIB;
    cfg.max_item_size = 64 * 1024;
    set_clock(T0, 0);
    CU_ASSERT_EQUAL_FATAL(corral_create(&cfg, &c), CORRAL_OK);
    memset(value, 'v', sizeof(value));
    /* fill about half the cache with items that then expire */
    for (int i = 0; i < 400; i++) {
        snprintf(key, sizeof(key), "old%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, sizeof(value),
                                   0, 5),
                        CORRAL_OK);
    }
    advance(5);
    corral_stats_reset(c);
    /* then store as much again: room comes from the expired ones */
    for (int i = 0; i < 400; i++) {
        snprintf(key, sizeof(key), "new%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, sizeof(value),
                                   0, 0),
                        CORRAL_OK);
    }
    s = stats_of(c);
    CU_ASSERT_EQUAL(s.evictions, 0);
    CU_ASSERT(s.reclaimed > 0);
    for (int i = 0; i < 400; i++) {
        snprintf(key, sizeof(key), "new%d", i);
        CU_ASSERT(present(c, key));
    }
    corral_destroy(c);
}

static const struct cu_test rule_tests[] = {
    CU_TEST(test_zero_never_expires),
    CU_TEST(test_relative),
    CU_TEST(test_reltime_boundary),
    CU_TEST(test_absolute),
    CU_TEST(test_negative),
    CU_TEST(test_far_future),
    CU_TEST(test_subsecond_clock),
    CU_TEST(test_every_setter),
    CU_TEST(test_changes_keep_expiry),
    CU_END,
};

/* corral_get_ex and corral_get_multi_ex say why a key missed.  (Writes
 * sweep a few dead items each, so the lookups come before more writes.) */
static void
test_miss_reasons(void)
{
    corral_t *c = new_cache(1);
    corral_get_opts_t o = {0};
    corral_get_result_t r;
    corral_item_t *it = NULL;
    corral_item_t *items[4];
    unsigned why[4];
    const void *keys[4] = {"e2", "f2", "t2", "none"};
    size_t nkeys[4] = {2, 2, 2, 4};
    const char *tags[] = {"tg"};
    corral_store_opts_t so = {0};

    so.tags = tags;
    so.ntags = 1;
    CU_ASSERT_EQUAL(corral_set(c, K("e"), K("v"), 0, 10), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("e2"), K("v"), 0, 10), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("f"), K("v"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("f2"), K("v"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_store(c, K("t"), K("v"), &so, NULL), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_store(c, K("t2"), K("v"), &so, NULL), CORRAL_OK);
    advance(11);
    CU_ASSERT_EQUAL(corral_get_ex(c, K("e"), &o, &it, &r), CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(r.flags, CORRAL_RES_MISS_EXPIRED);
    /* reclaimed by that lookup: now a plain miss */
    CU_ASSERT_EQUAL(corral_get_ex(c, K("e"), &o, &it, &r), CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(r.flags, 0);
    CU_ASSERT_EQUAL(corral_invalidate_tag(c, "tg"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_get_ex(c, K("t"), &o, &it, &r), CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(r.flags, CORRAL_RES_MISS_INVALIDATED);
    CU_ASSERT_EQUAL(corral_flush(c, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_get_ex(c, K("f"), &o, &it, &r), CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(r.flags, CORRAL_RES_MISS_FLUSHED);
    CU_ASSERT_EQUAL(corral_get_ex(c, K("none"), &o, &it, &r),
                    CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(r.flags, 0);

    /* e2 expired (and flushed: expiry is checked first), f2 flushed, t2
     * invalidated and flushed (either may be said), none absent */
    CU_ASSERT_EQUAL(corral_get_multi_ex(c, 4, keys, nkeys, items, why), 0);
    CU_ASSERT_EQUAL(why[0], CORRAL_RES_MISS_EXPIRED);
    CU_ASSERT_EQUAL(why[1], CORRAL_RES_MISS_FLUSHED);
    CU_ASSERT(why[2] == CORRAL_RES_MISS_INVALIDATED ||
              why[2] == CORRAL_RES_MISS_FLUSHED);
    CU_ASSERT_EQUAL(why[3], 0);

    /* a touching lookup (the write path) says it too */
    o.flags = CORRAL_GET_TOUCH;
    o.touch_exptime = 100;
    CU_ASSERT_EQUAL(corral_set(c, K("e3"), K("v"), 0, 5), CORRAL_OK);
    advance(6);
    CU_ASSERT_EQUAL(corral_get_ex(c, K("e3"), &o, &it, &r), CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(r.flags, CORRAL_RES_MISS_EXPIRED);
    corral_destroy(c);
}

/* oldest_item_age: the last access of the items next in line to go. */
static void
test_oldest_item_age(void)
{
    corral_t *c = new_cache(1);
    corral_stats_t st;
    corral_item_t *it = NULL;

    corral_stats(c, &st, sizeof(st));
    CU_ASSERT_EQUAL(st.oldest_item_age, 0); /* empty */
    CU_ASSERT_EQUAL(corral_set(c, K("a"), K("v"), 0, 0), CORRAL_OK);
    advance(40);
    CU_ASSERT_EQUAL(corral_set(c, K("b"), K("v"), 0, 0), CORRAL_OK);
    advance(60);
    corral_stats(c, &st, sizeof(st));
    CU_ASSERT_EQUAL(st.oldest_item_age, 100); /* a, the queue's tail */
    /* Reading the tail makes it recent.  Only the queues' tails are
     * looked at (a hit does not move an item), so b's 60 s is not seen. */
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("a"), &it), CORRAL_OK);
    corral_item_release(it);
    corral_stats(c, &st, sizeof(st));
    CU_ASSERT_EQUAL(st.oldest_item_age, 0);
    corral_destroy(c);
}

static const struct cu_test visibility_tests[] = {
    CU_TEST(test_expired_never_returned),
    CU_TEST(test_expires_while_pinned),
    CU_TEST(test_ttl_counts_down),
    CU_TEST(test_default_clock),
    CU_TEST(test_mono_seconds_exact),
    CU_TEST(test_miss_reasons),
    CU_TEST(test_oldest_item_age),
    CU_END,
};

static const struct cu_test reclaim_tests[] = {
    CU_TEST(test_reclaim_on_access),
    CU_TEST(test_reclaim_by_sweep),
    CU_TEST(test_reclaim_by_writes),
    CU_TEST(test_expired_reclaimed_before_eviction),
    CU_END,
};

CU_MAIN({"exptime_rules", rule_tests, NULL, NULL},
        {"visibility", visibility_tests, NULL, NULL},
        {"reclamation", reclaim_tests, NULL, NULL})
