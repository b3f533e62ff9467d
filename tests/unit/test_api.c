/*
 * test_api.c - every public function of corral.h against its documented
 * contract and memcached 1.6 semantics, through the public API only.
 *
 * Suites: lifecycle (configs, defaults, version, status strings),
 * retrieval (get, get_copy, get_multi, gat, get_ex with its options and
 * result bits), storage (every mode, CAS rules, flags, limits), deletion
 * and touch, arithmetic (memcached's incr/decr number rules), flush
 * (immediate and delayed), statistics (each counter moves exactly when it
 * should) and pinning (a pinned item never changes).
 *
 * Every cache runs on an injected clock, so times and TTLs are exact.  Each
 * test creates its own cache and destroys it.
 */
#include "corral.h"

#include <limits.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"

#define NS 1000000000ull
#define T0 1700000000ull /* a plausible "now", in Unix seconds */
#define MIB ((size_t)1 << 20)

/* A key or value literal as (pointer, length). */
#define K(s) (s), (sizeof(s) - 1)

/* ---------------------------------------------------------------------- */
/* Helpers                                                                */

static _Atomic uint64_t clock_ns;

static uint64_t
fake_clock(void *ud)
{
    (void)ud;
    return atomic_load(&clock_ns);
}

static void
advance(uint64_t seconds)
{
    atomic_fetch_add(&clock_ns, seconds * NS);
}

/* A cache with cfg (clock filled in) on a clock reset to T0. */
static corral_t *
new_cache_cfg(corral_config_t *cfg)
{
    corral_t *c = NULL;

    atomic_store(&clock_ns, T0 * NS);
    cfg->clock = fake_clock;
    cfg->clock_ud = NULL;
    CU_ASSERT_EQUAL_FATAL(corral_create(cfg, &c), CORRAL_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    return c;
}

static corral_t *
new_cache(void)
{
    corral_config_t cfg;
    corral_config_init(&cfg);
    return new_cache_cfg(&cfg);
}

static corral_status_t
put(corral_t *c, const char *key, const char *value)
{
    return corral_set(c, key, strlen(key), value, strlen(value), 0, 0);
}

/* True when key holds exactly want. */
static bool
value_is(corral_t *c, const char *key, const char *want)
{
    char buf[4096];
    size_t len = 0;

    if (corral_get_copy(c, key, strlen(key), buf, sizeof(buf), &len, NULL,
                        NULL) != CORRAL_OK) {
        return false;
    }
    return len == strlen(want) && memcmp(buf, want, len) == 0;
}

static bool
absent(corral_t *c, const char *key)
{
    corral_item_t *it = (corral_item_t *)&it; /* must be overwritten */
    corral_status_t st = corral_get(c, key, strlen(key), &it);
    corral_item_release(st == CORRAL_OK ? it : NULL);
    return st == CORRAL_ENOTFOUND && it == NULL;
}

/* The key's CAS, or 0 when absent. */
static uint64_t
cas_of(corral_t *c, const char *key)
{
    uint64_t cas = 0;
    char buf[4096];
    if (corral_get_copy(c, key, strlen(key), buf, sizeof(buf), NULL, NULL,
                        &cas) != CORRAL_OK) {
        return 0;
    }
    return cas;
}

/* The key's TTL as corral_item_ttl() reports it, or INT64_MIN if absent. */
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

static corral_item_info_t
info_of(corral_t *c, const char *key)
{
    corral_get_opts_t o = {0};
    corral_item_info_t info;
    corral_item_t *it;

    memset(&info, 0xff, sizeof(info));
    o.flags = CORRAL_GET_NOBUMP;
    if (corral_get_ex(c, key, strlen(key), &o, &it, NULL) == CORRAL_OK) {
        corral_item_info(c, it, &info);
        corral_item_release(it);
    }
    return info;
}

static corral_stats_t
stats_of(const corral_t *c)
{
    corral_stats_t s;
    corral_stats(c, &s, sizeof(s));
    return s;
}

/* ---------------------------------------------------------------------- */
/* Lifecycle                                                              */

static void
test_config_defaults(void)
{
    corral_config_t cfg;

    memset(&cfg, 0xa5, sizeof(cfg));
    corral_config_init(&cfg);
    CU_ASSERT_EQUAL(cfg.size, sizeof(cfg));
    CU_ASSERT_EQUAL(cfg.max_memory, 64 * MIB);
    CU_ASSERT_EQUAL(cfg.max_items, 0);
    CU_ASSERT_EQUAL(cfg.max_item_size, MIB);
    CU_ASSERT_EQUAL(cfg.shards, 0);
    CU_ASSERT_EQUAL(cfg.policy, CORRAL_POLICY_S3FIFO);
    CU_ASSERT_PTR_NULL(cfg.clock);
    CU_ASSERT_PTR_NULL(cfg.clock_ud);
    CU_ASSERT_PTR_NULL(cfg.log);
    CU_ASSERT_PTR_NULL(cfg.log_ud);
    CU_ASSERT_EQUAL(cfg.event_ring, 4096);
}

static void
test_create_null_config(void)
{
    corral_config_t got;
    corral_t *c = NULL;

    CU_ASSERT_EQUAL_FATAL(corral_create(NULL, &c), CORRAL_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    memset(&got, 0xa5, sizeof(got));
    corral_config_get(c, &got);
    CU_ASSERT_EQUAL(got.size, sizeof(got));
    CU_ASSERT_EQUAL(got.max_memory, 64 * MIB);
    CU_ASSERT_EQUAL(got.max_items, 0);
    CU_ASSERT_EQUAL(got.max_item_size, MIB);
    /* the automatic shard count is resolved to a power of two */
    CU_ASSERT(got.shards >= 1 && got.shards <= 1024);
    CU_ASSERT_EQUAL(got.shards & (got.shards - 1), 0);
    CU_ASSERT(64 * MIB / got.shards >= 2 * MIB);
    CU_ASSERT_EQUAL(got.policy, CORRAL_POLICY_S3FIFO);
    /* the system clock is reported as the default, NULL */
    CU_ASSERT_PTR_NULL(got.clock);
    CU_ASSERT_PTR_NULL(got.clock_ud);
    CU_ASSERT_PTR_NULL(got.log);
    /* and it works */
    CU_ASSERT_EQUAL(put(c, "k", "v"), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "v"));
    corral_destroy(c);
}

/* A config change that must be refused. */
struct bad_config {
    const char *what;
    size_t size;           /* 0: sizeof(corral_config_t) */
    size_t max_memory;     /* 0: keep the default */
    size_t max_item_size;
    unsigned shards;
    int policy;
    size_t event_ring;     /* 0: keep the default */
};

static const struct bad_config bad_configs[] = {
    {"memory below 1 MiB", 0, MIB - 1, 1024, 0, 0, 0},
    {"tiny memory", 0, 1, 1024, 0, 0, 0},
    {"item size below 1 KiB", 0, 0, 1023, 0, 0, 0},
    {"item size 0", 0, 0, 0, 0, 0, 0},
    {"item size above memory/2", 0, 4 * MIB, 2 * MIB + 1, 0, 0, 0},
    {"item size equal to memory", 0, 2 * MIB, 2 * MIB, 0, 0, 0},
    {"3 shards", 0, 0, 0, 3, 0, 0},
    {"6 shards", 0, 0, 0, 6, 0, 0},
    {"2048 shards", 0, 0, 0, 2048, 0, 0},
    {"shards too small for two items", 0, 8 * MIB, MIB, 8, 0, 0},
    {"1024 shards of 1 KiB", 0, MIB, 1024, 1024, 0, 0},
    {"unknown policy", 0, 0, 0, 0, 1, 0},
    {"negative policy", 0, 0, 0, 0, -1, 0},
    {"size 0", 1, 0, 0, 0, 0, 0},
    {"size without max_memory", 2, 0, 0, 0, 0, 0},
    {"event ring of 15", 0, 0, 0, 0, 0, 15},
    {"event ring of 1", 0, 0, 0, 0, 0, 1},
    {"event ring above 2^20", 0, 0, 0, 0, 0, ((size_t)1 << 20) + 1},
    /* its allocation's size would wrap: 16 slots for it, then overrun */
    {"event ring of 2^61 + 16", 0, 0, 0, 0, 0, ((size_t)1 << 61) + 16},
    {"event ring of SIZE_MAX", 0, 0, 0, 0, 0, SIZE_MAX},
};

static void
test_create_bad_configs(void)
{
    for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]);
         i++) {
        const struct bad_config *b = &bad_configs[i];
        corral_config_t cfg;
        corral_t *c = (corral_t *)&cfg; /* must be reset to NULL */
        corral_status_t st;

        corral_config_init(&cfg);
        if (b->size == 1) {
            cfg.size = 0;
        } else if (b->size == 2) {
            cfg.size = sizeof(size_t) - 1;
        }
        if (b->max_memory != 0) {
            cfg.max_memory = b->max_memory;
        }
        if (b->max_item_size != 0 || strcmp(b->what, "item size 0") == 0) {
            cfg.max_item_size = b->max_item_size;
        }
        cfg.shards = b->shards;
        cfg.policy = (corral_policy_t)b->policy;
        if (b->event_ring != 0) {
            cfg.event_ring = b->event_ring;
        }
        st = corral_create(&cfg, &c);
        if (st != CORRAL_EINVAL) {
            printf("\n  config '%s' gave %d\n", b->what, (int)st);
        }
        CU_ASSERT_EQUAL(st, CORRAL_EINVAL);
        CU_ASSERT_PTR_NULL(c);
        if (st == CORRAL_OK) {
            corral_destroy(c);
        }
    }
}

static void
test_create_boundaries(void)
{
    static const struct {
        size_t max_memory, max_item_size;
        unsigned shards;
    } ok[] = {
        {MIB, 1024, 0},           /* the smallest cache */
        {MIB, MIB / 2, 1},        /* the largest item for it */
        {MIB, MIB / 2, 0},        /* auto shards must honour it */
        {2 * MIB, 1024, 1024},    /* the most shards */
        {8 * MIB, MIB, 4},        /* exactly two items per shard */
        {64 * MIB, 1024, 1},
    };

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        corral_config_t cfg, got;
        corral_t *c = NULL;

        corral_config_init(&cfg);
        cfg.max_memory = ok[i].max_memory;
        cfg.max_item_size = ok[i].max_item_size;
        cfg.shards = ok[i].shards;
        cfg.max_items = 4096; /* at least one per shard */
        CU_ASSERT_EQUAL_FATAL(corral_create(&cfg, &c), CORRAL_OK);
        corral_config_get(c, &got);
        CU_ASSERT_EQUAL(got.max_memory, ok[i].max_memory);
        CU_ASSERT_EQUAL(got.max_item_size, ok[i].max_item_size);
        CU_ASSERT_EQUAL(got.max_items, 4096);
        if (ok[i].shards != 0) {
            CU_ASSERT_EQUAL(got.shards, ok[i].shards);
        } else {
            CU_ASSERT(got.shards >= 1);
            CU_ASSERT_EQUAL(got.shards & (got.shards - 1), 0);
            CU_ASSERT(got.max_memory / got.shards >= 2 * got.max_item_size);
        }
        CU_ASSERT_EQUAL(stats_of(c).limit_maxbytes, ok[i].max_memory);
        corral_destroy(c);
    }
}

/* A caller compiled against an older, shorter corral_config_t: fields past
 * its size are not read and take their defaults. */
static void
test_config_older_size(void)
{
    corral_config_t cfg, got;
    corral_t *c = NULL;

    memset(&cfg, 0xa5, sizeof(cfg)); /* garbage past the known size */
    cfg.size = offsetof(corral_config_t, max_items);
    cfg.max_memory = 4 * MIB;
    CU_ASSERT_EQUAL_FATAL(corral_create(&cfg, &c), CORRAL_OK);
    corral_config_get(c, &got);
    CU_ASSERT_EQUAL(got.size, sizeof(got));
    CU_ASSERT_EQUAL(got.max_memory, 4 * MIB);
    CU_ASSERT_EQUAL(got.max_items, 0);
    CU_ASSERT_EQUAL(got.max_item_size, MIB);
    CU_ASSERT_PTR_NULL(got.clock);
    CU_ASSERT_PTR_NULL(got.log);
    CU_ASSERT_EQUAL(put(c, "k", "v"), CORRAL_OK);
    corral_destroy(c);

    /* a newer, longer struct is accepted too */
    corral_config_init(&cfg);
    cfg.size = sizeof(cfg) + 64;
    CU_ASSERT_EQUAL_FATAL(corral_create(&cfg, &c), CORRAL_OK);
    corral_destroy(c);
}

static void
test_config_get_reports_clock(void)
{
    corral_config_t cfg, got;
    corral_t *c;

    corral_config_init(&cfg);
    cfg.max_memory = 16 * MIB;
    cfg.max_items = 12345;
    cfg.max_item_size = 4096;
    cfg.shards = 2;
    c = new_cache_cfg(&cfg);
    corral_config_get(c, &got);
    CU_ASSERT_EQUAL(got.max_memory, 16 * MIB);
    CU_ASSERT_EQUAL(got.max_items, 12345);
    CU_ASSERT_EQUAL(got.max_item_size, 4096);
    CU_ASSERT_EQUAL(got.shards, 2);
    CU_ASSERT(got.clock == fake_clock);
    corral_destroy(c);
}

static void
test_null_is_noop(void)
{
    corral_destroy(NULL);
    corral_item_release(NULL);
}

static void
test_version(void)
{
    char want[64];

    snprintf(want, sizeof(want), "%d.%d.%d", CORRAL_VERSION_MAJOR,
             CORRAL_VERSION_MINOR, CORRAL_VERSION_PATCH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(corral_version());
    CU_ASSERT_STRING_EQUAL(corral_version(), want);
    CU_ASSERT_PTR_EQUAL(corral_version(), corral_version());
}

static void
test_strerror(void)
{
    static const struct {
        corral_status_t st;
        const char *text;
    } table[] = {
#define STATUS_ROW(name, value, text) {CORRAL_##name, text},
        CORRAL_STATUS_TABLE(STATUS_ROW)
#undef STATUS_ROW
    };
    static const int unknown[] = {1, 2, 100, -999, -100, INT_MIN, INT_MAX};
    size_t n = sizeof(table) / sizeof(table[0]);

    CU_ASSERT_EQUAL(CORRAL_OK, 0);
    for (size_t i = 0; i < n; i++) {
        const char *s = corral_strerror(table[i].st);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT_STRING_EQUAL(s, table[i].text);
        CU_ASSERT(strlen(s) > 0);
        CU_ASSERT_STRING_NOT_EQUAL(s, "unknown status");
        CU_ASSERT(table[i].st <= 0);
        for (size_t j = 0; j < i; j++) {
            CU_ASSERT_NOT_EQUAL(table[i].st, table[j].st);
            CU_ASSERT_STRING_NOT_EQUAL(s, table[j].text);
        }
    }
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        CU_ASSERT_STRING_EQUAL(corral_strerror((corral_status_t)unknown[i]),
                               "unknown status");
    }
}

static void
test_two_caches_independent(void)
{
    corral_t *a = new_cache(), *b = new_cache();

    CU_ASSERT_EQUAL(put(a, "k", "in a"), CORRAL_OK);
    CU_ASSERT(absent(b, "k"));
    CU_ASSERT_EQUAL(put(b, "k", "in b"), CORRAL_OK);
    CU_ASSERT(value_is(a, "k", "in a"));
    CU_ASSERT(value_is(b, "k", "in b"));
    CU_ASSERT_EQUAL(corral_flush(a, 0), CORRAL_OK);
    CU_ASSERT(absent(a, "k"));
    CU_ASSERT(value_is(b, "k", "in b"));
    CU_ASSERT_EQUAL(stats_of(a).curr_items, 0);
    CU_ASSERT_EQUAL(stats_of(b).curr_items, 1);
    corral_destroy(a);
    CU_ASSERT(value_is(b, "k", "in b"));
    corral_destroy(b);
}

/* ---------------------------------------------------------------------- */
/* Retrieval                                                              */

static void
test_get_hit_and_miss(void)
{
    corral_t *c = new_cache();
    corral_item_t *it = (corral_item_t *)&c;
    const char *p;
    size_t len = 99;

    CU_ASSERT_EQUAL(corral_get(c, K("k"), &it), CORRAL_ENOTFOUND);
    CU_ASSERT_PTR_NULL(it);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("hello"), 42, 0), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("k"), &it), CORRAL_OK);
    p = corral_item_key(it, &len);
    CU_ASSERT_EQUAL(len, 1);
    CU_ASSERT_EQUAL(memcmp(p, "k", 1), 0);
    p = corral_item_value(it, &len);
    CU_ASSERT_EQUAL(len, 5);
    CU_ASSERT_EQUAL(memcmp(p, "hello", 5), 0);
    CU_ASSERT_PTR_NOT_NULL(corral_item_value(it, NULL));
    CU_ASSERT_PTR_NOT_NULL(corral_item_key(it, NULL));
    CU_ASSERT_EQUAL(corral_item_flags(it), 42);
    CU_ASSERT_NOT_EQUAL(corral_item_cas(it), 0);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), -1);
    corral_item_release(it);
    corral_destroy(c);
}

/* Keys are any bytes; lengths 1..250. */
static void
test_key_lengths(void)
{
    corral_t *c = new_cache();
    char key[CORRAL_KEY_MAX + 2];
    corral_item_t *it = NULL;
    corral_get_opts_t go = {0};
    corral_arith_opts_t ao = {0};
    size_t len;

    memset(key, 'x', sizeof(key));
    CU_ASSERT_EQUAL(corral_set(c, key, 250, K("max"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, key, 250, &it), CORRAL_OK);
    corral_item_key(it, &len);
    CU_ASSERT_EQUAL(len, 250);
    corral_item_release(it);

    /* binary keys: NUL, spaces, newlines, high bytes */
    CU_ASSERT_EQUAL(corral_set(c, "a\0b", 3, K("nul"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, "a\0c", 3, K("nul2"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, "a", 1, K("a"), 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, " \r\n\xff", 4, K("odd"), 0, 0),
                    CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, "a\0b", 3, &it), CORRAL_OK);
    CU_ASSERT_EQUAL(memcmp(corral_item_value(it, &len), "nul", 3), 0);
    corral_item_release(it);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, " \r\n\xff", 4, &it), CORRAL_OK);
    corral_item_release(it);
    CU_ASSERT(value_is(c, "a", "a"));

    /* 251 bytes, 0 bytes and a NULL key are refused by every call */
    for (int bad = 0; bad < 3; bad++) {
        const char *k = bad == 2 ? NULL : key;
        size_t n = bad == 0 ? 251 : bad == 1 ? 0 : 1;
        char buf[8];
        const void *keys[1] = {k};
        size_t nkeys[1] = {n};
        corral_item_t *items[1] = {(corral_item_t *)&c};

        it = (corral_item_t *)&c;
        CU_ASSERT_EQUAL(corral_get(c, k, n, &it), CORRAL_EINVAL);
        CU_ASSERT_PTR_NULL(it);
        CU_ASSERT_EQUAL(corral_get_copy(c, k, n, buf, sizeof(buf), NULL,
                                        NULL, NULL),
                        CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_get_multi(c, 1, keys, nkeys, items), 0);
        CU_ASSERT_PTR_NULL(items[0]);
        CU_ASSERT_EQUAL(corral_gat(c, k, n, 10, &it), CORRAL_EINVAL);
        go.flags = CORRAL_GET_VIVIFY;
        CU_ASSERT_EQUAL(corral_get_ex(c, k, n, &go, &it, NULL),
                        CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_set(c, k, n, K("v"), 0, 0), CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_add(c, k, n, K("v"), 0, 0), CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_replace(c, k, n, K("v"), 0, 0),
                        CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_append(c, k, n, K("v")), CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_prepend(c, k, n, K("v")), CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_cas(c, k, n, K("v"), 0, 0, 1, NULL),
                        CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_delete(c, k, n), CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_delete_ex(c, k, n, NULL), CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_touch(c, k, n, 10), CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_incr(c, k, n, 1, NULL), CORRAL_EINVAL);
        CU_ASSERT_EQUAL(corral_decr(c, k, n, 1, NULL), CORRAL_EINVAL);
        ao.options = CORRAL_ARITH_VIVIFY;
        CU_ASSERT_EQUAL(corral_arith(c, k, n, &ao, NULL), CORRAL_EINVAL);
    }
    CU_ASSERT_EQUAL(stats_of(c).curr_items, 5);
    corral_destroy(c);
}

static void
test_get_copy(void)
{
    corral_t *c = new_cache();
    char buf[16];
    size_t len = 0;
    uint32_t flags = 0;
    uint64_t cas = 0;

    memset(buf, '#', sizeof(buf));
    CU_ASSERT_EQUAL(corral_get_copy(c, K("k"), buf, sizeof(buf), &len, &flags,
                                    &cas),
                    CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("0123456789"), 0xdeadbeef, 0),
                    CORRAL_OK);
    CU_ASSERT_EQUAL(corral_get_copy(c, K("k"), buf, sizeof(buf), &len, &flags,
                                    &cas),
                    CORRAL_OK);
    CU_ASSERT_EQUAL(len, 10);
    CU_ASSERT_EQUAL(memcmp(buf, "0123456789", 10), 0);
    CU_ASSERT_EQUAL(buf[10], '#'); /* no terminator written */
    CU_ASSERT_EQUAL(flags, 0xdeadbeef);
    CU_ASSERT_EQUAL(cas, cas_of(c, "k"));

    /* exactly the right size */
    memset(buf, '#', sizeof(buf));
    CU_ASSERT_EQUAL(corral_get_copy(c, K("k"), buf, 10, &len, NULL, NULL),
                    CORRAL_OK);
    CU_ASSERT_EQUAL(memcmp(buf, "0123456789", 10), 0);

    /* too small: nothing copied, the needed length reported */
    memset(buf, '#', sizeof(buf));
    len = 0;
    flags = 0;
    CU_ASSERT_EQUAL(corral_get_copy(c, K("k"), buf, 9, &len, &flags, NULL),
                    CORRAL_ERANGE);
    CU_ASSERT_EQUAL(len, 10);
    CU_ASSERT_EQUAL(buf[0], '#');
    CU_ASSERT_EQUAL(corral_get_copy(c, K("k"), buf, 0, NULL, NULL, NULL),
                    CORRAL_ERANGE);
    CU_ASSERT_EQUAL(buf[0], '#');

    /* an empty value fits in no room at all */
    CU_ASSERT_EQUAL(corral_set(c, K("e"), NULL, 0, 0, 0), CORRAL_OK);
    len = 99;
    CU_ASSERT_EQUAL(corral_get_copy(c, K("e"), buf, 0, &len, NULL, NULL),
                    CORRAL_OK);
    CU_ASSERT_EQUAL(len, 0);
    corral_destroy(c);
}

/* Many keys over many shards, past the batch size, with duplicates,
 * misses, expired items and bad keys in every position: each slot gets
 * exactly what corral_get would return. */
static void
test_get_multi_large(void)
{
    corral_config_t cfg;
    corral_t *c;
    enum { N = 300 };
    static char names[N][16];
    const void *keys[N];
    size_t nkeys[N];
    corral_item_t *out[N];
    size_t hits = 0, want = 0;

    corral_config_init(&cfg);
    cfg.shards = 16;
    c = new_cache_cfg(&cfg);
    for (int i = 0; i < N; i++) {
        int k = i % 7 == 0 ? i / 2 : i; /* some keys asked twice */
        nkeys[i] = (size_t)snprintf(names[i], sizeof(names[i]), "mk%d", k);
        keys[i] = names[i];
        if (k % 5 == 1) {
            CU_ASSERT_EQUAL(corral_set(c, names[i], nkeys[i], names[i],
                                       nkeys[i], 0, 0), CORRAL_OK);
        } else if (k % 5 == 2) {
            CU_ASSERT_EQUAL(corral_set(c, names[i], nkeys[i], names[i],
                                       nkeys[i], 0, 10), CORRAL_OK);
        }
        if (i % 41 == 40) {
            nkeys[i] = 0; /* a bad key */
        }
    }
    advance(20); /* the k % 5 == 2 keys expire */
    for (int i = 0; i < N; i++) {
        corral_item_t *it = NULL;
        if (nkeys[i] > 0 && corral_get(c, keys[i], nkeys[i], &it) ==
                                CORRAL_OK) {
            want++;
        }
        corral_item_release(it);
    }
    hits = corral_get_multi(c, N, keys, nkeys, out);
    CU_ASSERT_EQUAL(hits, want);
    for (int i = 0; i < N; i++) {
        int k = i % 7 == 0 ? i / 2 : i;
        bool live = nkeys[i] > 0 && k % 5 == 1;
        CU_ASSERT_EQUAL(out[i] != NULL, live);
        if (out[i] != NULL) {
            size_t len;
            const void *v = corral_item_value(out[i], &len);
            CU_ASSERT(len == nkeys[i] && memcmp(v, names[i], len) == 0);
            corral_item_release(out[i]);
        }
    }
    corral_destroy(c);
}

/* cache_memlimit: a lower limit evicts at once; stats and config follow;
 * nonsense limits are refused. */
static void
test_set_max_memory(void)
{
    corral_config_t cfg, got;
    corral_t *c;
    char key[32], val[1000];
    corral_stats_t st;

    corral_config_init(&cfg);
    cfg.shards = 4;
    cfg.max_memory = 64u << 20;
    c = new_cache_cfg(&cfg);
    memset(val, 'v', sizeof(val));
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)snprintf(key, sizeof(key), "m%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, n, val, sizeof(val), 0, 0),
                        CORRAL_OK);
    }
    st = stats_of(c);
    CU_ASSERT(st.mem_used > (8u << 20));
    CU_ASSERT_EQUAL(corral_set_max_memory(c, 8u << 20), CORRAL_OK);
    st = stats_of(c);
    CU_ASSERT(st.mem_used <= (8u << 20));
    CU_ASSERT(st.evictions > 0);
    CU_ASSERT_EQUAL(st.limit_maxbytes, 8u << 20);
    corral_config_get(c, &got);
    CU_ASSERT_EQUAL(got.max_memory, 8u << 20);
    /* stores keep within the new limit */
    for (int i = 0; i < 5000; i++) {
        size_t n = (size_t)snprintf(key, sizeof(key), "n%d", i);
        corral_set(c, key, n, val, sizeof(val), 0, 0);
        CU_ASSERT(stats_of(c).mem_used <= (8u << 20));
    }
    CU_ASSERT_EQUAL(corral_set_max_memory(c, 1000), CORRAL_EINVAL);
    CU_ASSERT_EQUAL(corral_set_max_memory(c, 4 * cfg.max_item_size - 1),
                    CORRAL_EINVAL);
    CU_ASSERT_EQUAL(corral_set_max_memory(c, 128u << 20), CORRAL_OK);
    CU_ASSERT_EQUAL(stats_of(c).limit_maxbytes, 128u << 20);
    corral_destroy(c);
}

/* The result fields meta commands need: the TTL before a touch, and
 * whether an arithmetic call created its item. */
static void
test_result_details(void)
{
    corral_t *c = new_cache();
    corral_get_opts_t o = {0};
    corral_get_result_t r;
    corral_arith_opts_t a = {0};
    corral_arith_result_t ar;
    corral_item_t *it;

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 0, 100), CORRAL_OK);
    o.flags = CORRAL_GET_TOUCH;
    o.touch_exptime = 30;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.ttl_before, 100);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), 30);
    corral_item_release(it);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), NULL, &it, &r),
                          CORRAL_OK);
    CU_ASSERT_EQUAL(r.ttl_before, 30);
    corral_item_release(it);

    a.options = CORRAL_ARITH_VIVIFY;
    a.delta = 1;
    a.initial = 7;
    CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, &ar), CORRAL_OK);
    CU_ASSERT_EQUAL(ar.created, 1);
    CU_ASSERT_EQUAL(ar.value, 7);
    CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, &ar), CORRAL_OK);
    CU_ASSERT_EQUAL(ar.created, 0);
    CU_ASSERT_EQUAL(ar.value, 8);
    corral_destroy(c);
}

/* Server-side early refresh: the delay from a win to the store that
 * follows it is learned per key; CORRAL_GET_EARLY then hands the token out
 * with XFetch's probability, never far from expiry, never twice. */
static void
test_get_early(void)
{
    corral_t *c = new_cache();
    corral_get_opts_t o = {0};
    corral_get_result_t r;
    corral_item_t *it;
    int wins = 0, lost = 0;

    /* nothing learned yet: no early win even right before expiry */
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 0, 1000), CORRAL_OK);
    o.flags = CORRAL_GET_EARLY;
    advance(999);
    for (int i = 0; i < 50; i++) {
        CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r),
                              CORRAL_OK);
        CU_ASSERT_EQUAL(r.flags & CORRAL_RES_WIN, 0);
        corral_item_release(it);
    }
    /* a win (vivify on a miss), then the store 5 s later: delta = 5 s */
    o.flags = CORRAL_GET_VIVIFY;
    o.vivify_exptime = 30;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("e"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT(r.flags & CORRAL_RES_WIN);
    corral_item_release(it);
    advance(5);
    CU_ASSERT_EQUAL(corral_set(c, K("e"), K("fresh"), 0, 1000), CORRAL_OK);
    /* 999 s from expiry: exp(-999 / 5) chance: never */
    o.flags = CORRAL_GET_EARLY;
    advance(1);
    for (int i = 0; i < 200; i++) {
        CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("e"), &o, &it, &r),
                              CORRAL_OK);
        CU_ASSERT_EQUAL(r.flags & CORRAL_RES_WIN, 0);
        corral_item_release(it);
    }
    /* 1 s from expiry: each lookup wins with probability exp(-1/5) =
     * 0.82 until one has; the rest see the token taken */
    advance(998);
    for (int i = 0; i < 40; i++) {
        CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("e"), &o, &it, &r),
                              CORRAL_OK);
        wins += (r.flags & CORRAL_RES_WIN) != 0;
        lost += (r.flags & CORRAL_RES_LOST) != 0;
        corral_item_release(it);
    }
    CU_ASSERT_EQUAL(wins, 1);
    CU_ASSERT(lost >= 1 && lost <= 39); /* every lookup after the win */
    CU_ASSERT_EQUAL(stats_of(c).early_wins, 1);
    CU_ASSERT_EQUAL(stats_of(c).recache_wins, 2);
    corral_destroy(c);
}

/* max_items is split exactly between the shards: never more items than
 * asked for, and fewer than one per shard is refused. */
static void
test_max_items_exact(void)
{
    corral_config_t cfg;
    corral_t *c = NULL;
    char key[16];

    corral_config_init(&cfg);
    cfg.shards = 4;
    cfg.max_items = 3;
    CU_ASSERT_EQUAL(corral_create(&cfg, &c), CORRAL_EINVAL);
    cfg.max_items = 10;
    c = new_cache_cfg(&cfg);
    for (int i = 0; i < 100; i++) {
        size_t n = (size_t)snprintf(key, sizeof(key), "x%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, n, "v", 1, 0, 0), CORRAL_OK);
        CU_ASSERT(stats_of(c).curr_items <= 10);
    }
    corral_destroy(c);
}

/* A max_items far beyond what max_memory holds: the hash tables are
 * presized for it only up to an eighth of the memory (a quarter allows
 * for the allocator's rounding), so the cache still stores (it used to
 * start with 190 MiB of table against 16 MiB). */
static void
test_max_items_beyond_memory(void)
{
    corral_config_t cfg;
    corral_t *c = NULL;
    char key[16];
    int stored = 0;

    corral_config_init(&cfg);
    cfg.max_memory = 16 * MIB;
    cfg.max_items = 20000000;
    c = new_cache_cfg(&cfg);
    CU_ASSERT(stats_of(c).hash_bytes <= cfg.max_memory / 4);
    for (int i = 0; i < 50000; i++) {
        size_t n = (size_t)snprintf(key, sizeof(key), "x%d", i);
        stored += corral_set(c, key, n, "v", 1, 0, 0) == CORRAL_OK;
    }
    CU_ASSERT_EQUAL(stored, 50000);
    CU_ASSERT_EQUAL(stats_of(c).curr_items, 50000);
    CU_ASSERT(stats_of(c).mem_used <= cfg.max_memory);
    corral_destroy(c);
}

static void
test_get_multi(void)
{
    corral_t *c = new_cache();
    const void *keys[6] = {"a", "missing", "b", "", "a", "c"};
    size_t nkeys[6] = {1, 7, 1, 0, 1, 1};
    corral_item_t *out[6];
    size_t len;

    CU_ASSERT_EQUAL(put(c, "a", "va"), CORRAL_OK);
    CU_ASSERT_EQUAL(put(c, "b", "vb"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("c"), K("vc"), 0, -1), CORRAL_OK);
    memset(out, 0xff, sizeof(out));
    CU_ASSERT_EQUAL(corral_get_multi(c, 6, keys, nkeys, out), 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out[0]);
    CU_ASSERT_EQUAL(memcmp(corral_item_value(out[0], &len), "va", 2), 0);
    CU_ASSERT_PTR_NULL(out[1]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out[2]);
    CU_ASSERT_EQUAL(memcmp(corral_item_value(out[2], &len), "vb", 2), 0);
    CU_ASSERT_PTR_NULL(out[3]); /* bad key */
    CU_ASSERT_PTR_NOT_NULL_FATAL(out[4]); /* a key twice: pinned twice */
    CU_ASSERT_EQUAL(memcmp(corral_item_value(out[4], &len), "va", 2), 0);
    CU_ASSERT_PTR_NULL(out[5]); /* expired */
    for (int i = 0; i < 6; i++) {
        corral_item_release(out[i]);
    }
    CU_ASSERT_EQUAL(corral_get_multi(c, 0, NULL, NULL, NULL), 0);
    CU_ASSERT_EQUAL(stats_of(c).cmd_get, 5); /* the bad key is not looked up */
    corral_destroy(c);
}

static void
test_gat(void)
{
    corral_t *c = new_cache();
    corral_item_t *it = (corral_item_t *)&c;
    uint64_t cas;
    size_t len;

    CU_ASSERT_EQUAL(corral_gat(c, K("k"), 100, &it), CORRAL_ENOTFOUND);
    CU_ASSERT_PTR_NULL(it);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 5, 0), CORRAL_OK);
    cas = cas_of(c, "k");
    CU_ASSERT_EQUAL_FATAL(corral_gat(c, K("k"), 100, &it), CORRAL_OK);
    CU_ASSERT_EQUAL(memcmp(corral_item_value(it, &len), "v", 1), 0);
    CU_ASSERT_EQUAL(corral_item_flags(it), 5);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), 100);
    CU_ASSERT_EQUAL(corral_item_cas(it), cas); /* touch keeps the CAS */
    corral_item_release(it);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), 100);
    advance(40);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), 60);
    /* gat 0 removes the expiry */
    CU_ASSERT_EQUAL_FATAL(corral_gat(c, K("k"), 0, &it), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), -1);
    corral_item_release(it);
    advance(1000);
    CU_ASSERT(value_is(c, "k", "v"));
    /* a negative exptime expires it: returned this once, then gone */
    CU_ASSERT_EQUAL_FATAL(corral_gat(c, K("k"), -1, &it), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), 0);
    corral_item_release(it);
    CU_ASSERT(absent(c, "k"));
    CU_ASSERT_EQUAL(cas_of(c, "k"), 0);
    corral_destroy(c);
}

static void
test_get_ex_plain(void)
{
    corral_t *c = new_cache();
    corral_get_result_t r;
    corral_item_t *it;

    CU_ASSERT_EQUAL(corral_get_ex(c, K("k"), NULL, &it, &r),
                    CORRAL_ENOTFOUND);
    CU_ASSERT_PTR_NULL(it);
    CU_ASSERT_EQUAL(r.flags, 0);
    CU_ASSERT_EQUAL(put(c, "k", "v"), CORRAL_OK);
    advance(3);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), NULL, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags, 0); /* first fetch: no HIT_BEFORE */
    CU_ASSERT_EQUAL(r.last_access, 3);
    corral_item_release(it);
    advance(7);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), NULL, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags, CORRAL_RES_HIT_BEFORE);
    CU_ASSERT_EQUAL(r.last_access, 7);
    corral_item_release(it);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), NULL, &it, NULL),
                          CORRAL_OK);
    corral_item_release(it);
    corral_destroy(c);
}

static void
test_get_ex_nobump(void)
{
    corral_t *c = new_cache();
    corral_get_opts_t o = {0};
    corral_get_result_t r;
    corral_item_info_t info;
    corral_item_t *it;

    o.flags = CORRAL_GET_NOBUMP;
    CU_ASSERT_EQUAL(put(c, "k", "v"), CORRAL_OK);
    advance(5);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r),
                              CORRAL_OK);
        CU_ASSERT_EQUAL(r.flags & CORRAL_RES_HIT_BEFORE, 0);
        CU_ASSERT_EQUAL(r.last_access, 5 + i);
        corral_item_info(c, it, &info);
        CU_ASSERT_EQUAL(info.fetched, 0);
        CU_ASSERT_EQUAL(info.last_access, 5 + i);
        corral_item_release(it);
        advance(1);
    }
    /* a real fetch now sets both */
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("k"), &it), CORRAL_OK);
    corral_item_release(it);
    info = info_of(c, "k");
    CU_ASSERT_EQUAL(info.fetched, 1);
    CU_ASSERT_EQUAL(info.last_access, 0);
    corral_destroy(c);
}

static void
test_get_ex_touch(void)
{
    corral_t *c = new_cache();
    corral_get_opts_t o = {0};
    corral_get_result_t r;
    corral_item_t *it = (corral_item_t *)&c;
    corral_stats_t s;

    o.flags = CORRAL_GET_TOUCH;
    o.touch_exptime = 50;
    CU_ASSERT_EQUAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_ENOTFOUND);
    CU_ASSERT_PTR_NULL(it);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 0, 10), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), 50);
    corral_item_release(it);
    advance(20);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), 30);
    s = stats_of(c);
    CU_ASSERT_EQUAL(s.touch_hits, 1);
    CU_ASSERT_EQUAL(s.touch_misses, 1);
    CU_ASSERT_EQUAL(s.cmd_touch, 2);
    corral_destroy(c);
}

static void
test_get_ex_vivify(void)
{
    corral_t *c = new_cache();
    corral_get_opts_t o = {0};
    corral_get_result_t r;
    corral_item_t *it;
    size_t len = 99;

    o.flags = CORRAL_GET_VIVIFY;
    o.vivify_exptime = 30;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags, CORRAL_RES_WIN | CORRAL_RES_VIVIFIED);
    corral_item_value(it, &len);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_EQUAL(corral_item_flags(it), 0);
    CU_ASSERT_EQUAL(corral_item_ttl(c, it), 30);
    CU_ASSERT_NOT_EQUAL(corral_item_cas(it), 0);
    corral_item_release(it);
    CU_ASSERT_EQUAL(stats_of(c).curr_items, 1);

    /* the next callers find it and lose the token */
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r),
                              CORRAL_OK);
        CU_ASSERT_EQUAL(r.flags & (CORRAL_RES_WIN | CORRAL_RES_VIVIFIED), 0);
        CU_ASSERT(r.flags & CORRAL_RES_LOST);
        corral_item_release(it);
    }
    /* a plain lookup sees an empty value */
    CU_ASSERT(value_is(c, "k", ""));
    /* storing the real value replaces the token */
    CU_ASSERT_EQUAL(put(c, "k", "real"), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags & (CORRAL_RES_WIN | CORRAL_RES_LOST |
                               CORRAL_RES_VIVIFIED),
                    0);
    corral_item_release(it);

    /* a vivified item expires like any other */
    o.vivify_exptime = 5;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("v2"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT(r.flags & CORRAL_RES_VIVIFIED);
    corral_item_release(it);
    advance(5);
    CU_ASSERT(absent(c, "v2"));
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("v2"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags, CORRAL_RES_WIN | CORRAL_RES_VIVIFIED);
    corral_item_release(it);
    corral_destroy(c);
}

static void
test_get_ex_recache(void)
{
    corral_t *c = new_cache();
    corral_get_opts_t o = {0};
    corral_get_result_t r;
    corral_item_t *it;

    o.flags = CORRAL_GET_RECACHE;
    o.recache_ttl = 30;
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 0, 100), CORRAL_OK);
    CU_ASSERT_EQUAL(put(c, "forever", "v"), CORRAL_OK);

    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags & (CORRAL_RES_WIN | CORRAL_RES_LOST), 0);
    corral_item_release(it);
    advance(70); /* ttl 30: not below 30 yet */
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags & (CORRAL_RES_WIN | CORRAL_RES_LOST), 0);
    corral_item_release(it);
    advance(1); /* ttl 29 */
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags & (CORRAL_RES_WIN | CORRAL_RES_LOST),
                    CORRAL_RES_WIN);
    corral_item_release(it);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags & (CORRAL_RES_WIN | CORRAL_RES_LOST),
                    CORRAL_RES_LOST);
    corral_item_release(it);
    /* without RECACHE the token state still shows */
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), NULL, &it, &r),
                          CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags & (CORRAL_RES_WIN | CORRAL_RES_LOST),
                    CORRAL_RES_LOST);
    corral_item_release(it);

    /* a new value brings a new token */
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v2"), 0, 10), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags & (CORRAL_RES_WIN | CORRAL_RES_LOST),
                    CORRAL_RES_WIN);
    corral_item_release(it);

    /* an item that never expires is never below the threshold */
    o.recache_ttl = INT64_MAX;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("forever"), &o, &it, &r),
                          CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags & (CORRAL_RES_WIN | CORRAL_RES_LOST), 0);
    corral_item_release(it);
    corral_destroy(c);
}

static void
test_get_ex_stale(void)
{
    corral_t *c = new_cache();
    corral_delete_opts_t d = {0};
    corral_get_opts_t o = {0};
    corral_get_result_t r;
    corral_item_t *it;
    size_t len;

    CU_ASSERT_EQUAL(put(c, "k", "old"), CORRAL_OK);
    d.options = CORRAL_DELETE_STALE;
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_OK);
    /* the stale value is still served, flagged, and the token is won once */
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags & ~CORRAL_RES_HIT_BEFORE,
                    CORRAL_RES_STALE | CORRAL_RES_WIN);
    CU_ASSERT_EQUAL(memcmp(corral_item_value(it, &len), "old", 3), 0);
    corral_item_release(it);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), NULL, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags & ~CORRAL_RES_HIT_BEFORE,
                    CORRAL_RES_STALE | CORRAL_RES_LOST);
    corral_item_release(it);
    /* lookups that take no result (get, gat) leave the token alone */
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_gat(c, K("k"), 100, &it), CORRAL_OK);
    corral_item_release(it);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("k"), &it), CORRAL_OK);
    corral_item_release(it);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT(r.flags & CORRAL_RES_WIN);
    corral_item_release(it);
    /* marking it stale again hands out a fresh token */
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT(r.flags & CORRAL_RES_WIN);
    corral_item_release(it);
    /* a plain store clears the stale mark */
    CU_ASSERT_EQUAL(put(c, "k", "new"), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &o, &it, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.flags & (CORRAL_RES_STALE | CORRAL_RES_WIN |
                               CORRAL_RES_LOST),
                    0);
    corral_item_release(it);
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Storage                                                                */

static void
test_set_overwrite(void)
{
    corral_t *c = new_cache();
    uint64_t cas1, cas2;
    corral_item_info_t info;

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("one"), 1, 100), CORRAL_OK);
    cas1 = cas_of(c, "k");
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("two!"), 2, 0), CORRAL_OK);
    cas2 = cas_of(c, "k");
    CU_ASSERT(value_is(c, "k", "two!"));
    CU_ASSERT(cas2 > cas1);
    info = info_of(c, "k");
    CU_ASSERT_EQUAL(info.flags, 2);
    CU_ASSERT_EQUAL(info.ttl, -1);
    CU_ASSERT_EQUAL(info.exptime, 0);
    CU_ASSERT_EQUAL(info.nkey, 1);
    CU_ASSERT_EQUAL(info.nvalue, 4);
    CU_ASSERT(info.alloc_size >= 5);
    CU_ASSERT_EQUAL(stats_of(c).curr_items, 1);
    CU_ASSERT_EQUAL(stats_of(c).total_items, 2);
    corral_destroy(c);
}

static void
test_flags_32bit(void)
{
    static const uint32_t flags[] = {0, 1, 0xff, 0x100, 0x7fffffff,
                                     0x80000000u, 0xfffffffeu, 0xffffffffu};
    corral_t *c = new_cache();

    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        char key[16];
        corral_item_t *it;

        snprintf(key, sizeof(key), "f%zu", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), K("v"), flags[i], 0),
                        CORRAL_OK);
        CU_ASSERT_EQUAL_FATAL(corral_get(c, key, strlen(key), &it),
                              CORRAL_OK);
        CU_ASSERT_EQUAL(corral_item_flags(it), flags[i]);
        corral_item_release(it);
        /* overwrite with flags 0 drops them */
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), K("v"), 0, 0),
                        CORRAL_OK);
        CU_ASSERT_EQUAL(info_of(c, key).flags, 0);
    }
    corral_destroy(c);
}

/* The binary-key mark: set by the store, vivify and arith options, kept
 * by append and incr, reported by corral_item_key_binary and the info. */
static void
test_binary_key_mark(void)
{
    corral_t *c = new_cache();
    corral_store_opts_t o = {0};
    corral_get_opts_t g = {0};
    corral_arith_opts_t a = {0};
    corral_item_info_t info;
    corral_item_t *it;
    uint64_t v;

    o.options = CORRAL_STORE_BINARY_KEY;
    CU_ASSERT_EQUAL(corral_store(c, "b1", 2, "5", 1, &o, NULL), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, "t1", 2, "5", 1, 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_append(c, "b1", 2, "0", 1), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_incr(c, "b1", 2, 1000, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 1050);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, "b1", 2, &it), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_key_binary(it), 1);
    corral_item_info(c, it, &info);
    CU_ASSERT_EQUAL(info.binary_key, 1);
    corral_item_release(it);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, "t1", 2, &it), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_key_binary(it), 0);
    corral_item_release(it);
    /* a plain set of the same key drops the mark */
    CU_ASSERT_EQUAL(corral_set(c, "b1", 2, "x", 1, 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, "b1", 2, &it), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_key_binary(it), 0);
    corral_item_release(it);

    g.flags = CORRAL_GET_VIVIFY | CORRAL_GET_BINARY_KEY;
    g.vivify_exptime = 30;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, "v1", 2, &g, &it, NULL),
                          CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_key_binary(it), 1);
    corral_item_release(it);
    a.options = CORRAL_ARITH_VIVIFY | CORRAL_ARITH_BINARY_KEY;
    a.delta = 1;
    CU_ASSERT_EQUAL(corral_arith(c, "a1", 2, &a, NULL), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, "a1", 2, &it), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_item_key_binary(it), 1);
    corral_item_release(it);
    corral_destroy(c);
}

static void
test_empty_and_binary_values(void)
{
    corral_t *c = new_cache();
    corral_store_opts_t o = {0};
    corral_item_t *it;
    char big[300];
    size_t len = 99;

    CU_ASSERT_EQUAL(corral_set(c, K("e"), NULL, 0, 9, 0), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("e"), &it), CORRAL_OK);
    CU_ASSERT_PTR_NOT_NULL(corral_item_value(it, &len));
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_EQUAL(corral_item_flags(it), 9);
    corral_item_release(it);
    CU_ASSERT_EQUAL(corral_set(c, K("e2"), "x", 0, 0, 0), CORRAL_OK);
    CU_ASSERT(value_is(c, "e2", ""));
    /* a NULL value with a length is refused, and changes nothing */
    CU_ASSERT_EQUAL(corral_set(c, K("e"), NULL, 1, 0, 0), CORRAL_EINVAL);
    CU_ASSERT_EQUAL(corral_append(c, K("e"), NULL, 1), CORRAL_EINVAL);
    CU_ASSERT(value_is(c, "e", ""));
    /* a mode that does not exist */
    o.mode = (corral_mode_t)42;
    CU_ASSERT_EQUAL(corral_store(c, K("e"), K("v"), &o, NULL), CORRAL_EINVAL);
    o.mode = (corral_mode_t)-1;
    CU_ASSERT_EQUAL(corral_store(c, K("e"), K("v"), &o, NULL), CORRAL_EINVAL);
    CU_ASSERT(value_is(c, "e", ""));
    /* NULL options: a plain set */
    CU_ASSERT_EQUAL(corral_store(c, K("e"), K("plain"), NULL, NULL),
                    CORRAL_OK);
    CU_ASSERT(value_is(c, "e", "plain"));
    /* every byte value survives */
    for (int i = 0; i < 300; i++) {
        big[i] = (char)(i * 7);
    }
    CU_ASSERT_EQUAL(corral_set(c, K("bin"), big, sizeof(big), 0, 0),
                    CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("bin"), &it), CORRAL_OK);
    CU_ASSERT_EQUAL(memcmp(corral_item_value(it, &len), big, sizeof(big)),
                    0);
    CU_ASSERT_EQUAL(len, sizeof(big));
    corral_item_release(it);
    corral_destroy(c);
}

static void
test_add(void)
{
    corral_t *c = new_cache();
    uint64_t cas;

    CU_ASSERT_EQUAL(corral_add(c, K("k"), K("first"), 1, 0), CORRAL_OK);
    cas = info_of(c, "k").cas; /* without reading it */
    CU_ASSERT_EQUAL(corral_add(c, K("k"), K("second"), 2, 0),
                    CORRAL_ENOTSTORED);
    CU_ASSERT_EQUAL(info_of(c, "k").fetched, 0); /* a failed add is no read */
    CU_ASSERT(value_is(c, "k", "first"));
    CU_ASSERT_EQUAL(info_of(c, "k").flags, 1);
    CU_ASSERT_EQUAL(cas_of(c, "k"), cas);
    /* after a delete or an expiry the key is free again */
    CU_ASSERT_EQUAL(corral_delete(c, K("k")), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_add(c, K("k"), K("third"), 0, 10), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "third"));
    advance(10);
    CU_ASSERT_EQUAL(corral_add(c, K("k"), K("fourth"), 0, 0), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "fourth"));
    /* and after a flush */
    CU_ASSERT_EQUAL(corral_flush(c, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_add(c, K("k"), K("fifth"), 0, 0), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "fifth"));
    corral_destroy(c);
}

static void
test_replace(void)
{
    corral_t *c = new_cache();

    CU_ASSERT_EQUAL(corral_replace(c, K("k"), K("v"), 0, 0),
                    CORRAL_ENOTSTORED);
    CU_ASSERT(absent(c, "k"));
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 1, 100), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_replace(c, K("k"), K("w"), 2, 0), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "w"));
    CU_ASSERT_EQUAL(info_of(c, "k").flags, 2);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), -1);
    /* an expired key cannot be replaced */
    CU_ASSERT_EQUAL(corral_set(c, K("x"), K("v"), 0, 5), CORRAL_OK);
    advance(5);
    CU_ASSERT_EQUAL(corral_replace(c, K("x"), K("w"), 0, 0),
                    CORRAL_ENOTSTORED);
    CU_ASSERT(absent(c, "x"));
    corral_destroy(c);
}

static void
test_append_prepend(void)
{
    corral_t *c = new_cache();
    corral_store_opts_t o = {0};
    corral_item_info_t info;
    uint64_t cas, cas2;

    CU_ASSERT_EQUAL(corral_append(c, K("k"), K("x")), CORRAL_ENOTSTORED);
    CU_ASSERT_EQUAL(corral_prepend(c, K("k"), K("x")), CORRAL_ENOTSTORED);
    CU_ASSERT(absent(c, "k"));

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("mid"), 77, 100), CORRAL_OK);
    cas = cas_of(c, "k");
    CU_ASSERT_EQUAL(corral_append(c, K("k"), K("-end")), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "mid-end"));
    CU_ASSERT_EQUAL(corral_prepend(c, K("k"), K("start-")), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "start-mid-end"));
    cas2 = cas_of(c, "k");
    CU_ASSERT(cas2 > cas);

    /* flags and exptime in the options are ignored: the item keeps its own */
    advance(10);
    o.mode = CORRAL_APPEND;
    o.flags = 5;
    o.exptime = 3;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("!"), &o, NULL), CORRAL_OK);
    o.mode = CORRAL_PREPEND;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("<"), &o, NULL), CORRAL_OK);
    info = info_of(c, "k");
    CU_ASSERT_EQUAL(info.flags, 77);
    CU_ASSERT_EQUAL(info.ttl, 90);
    CU_ASSERT_EQUAL(info.exptime, (int64_t)T0 + 100);
    CU_ASSERT(value_is(c, "k", "<start-mid-end!"));

    /* empty additions still make a new version */
    cas = cas_of(c, "k");
    CU_ASSERT_EQUAL(corral_append(c, K("k"), NULL, 0), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "<start-mid-end!"));
    CU_ASSERT(cas_of(c, "k") > cas);

    /* on an empty value */
    CU_ASSERT_EQUAL(corral_set(c, K("e"), NULL, 0, 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_prepend(c, K("e"), K("p")), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_append(c, K("e"), K("a")), CORRAL_OK);
    CU_ASSERT(value_is(c, "e", "pa"));

    /* with a CAS: an extra condition */
    cas = cas_of(c, "e");
    o.mode = CORRAL_APPEND;
    o.cas = cas + 1000;
    CU_ASSERT_EQUAL(corral_store(c, K("e"), K("X"), &o, NULL),
                    CORRAL_EEXISTS);
    CU_ASSERT(value_is(c, "e", "pa"));
    o.cas = cas;
    CU_ASSERT_EQUAL(corral_store(c, K("e"), K("X"), &o, &cas2), CORRAL_OK);
    CU_ASSERT(value_is(c, "e", "paX"));
    CU_ASSERT_EQUAL(cas2, cas_of(c, "e"));
    o.mode = CORRAL_PREPEND;
    o.cas = cas; /* now out of date */
    CU_ASSERT_EQUAL(corral_store(c, K("e"), K("Y"), &o, NULL),
                    CORRAL_EEXISTS);
    CU_ASSERT_EQUAL(corral_store(c, K("nope"), K("Y"), &o, NULL),
                    CORRAL_ENOTSTORED);
    corral_destroy(c);
}

static void
test_cas_store(void)
{
    corral_t *c = new_cache();
    uint64_t cas, out = 99, out2;
    corral_stats_t s;

    /* absent */
    CU_ASSERT_EQUAL(corral_cas(c, K("k"), K("v"), 0, 0, 1234, &out),
                    CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(out, 0);
    CU_ASSERT_EQUAL(corral_cas(c, K("k"), K("v"), 0, 0, 0, NULL),
                    CORRAL_ENOTFOUND);
    CU_ASSERT(absent(c, "k"));

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v1"), 1, 0), CORRAL_OK);
    cas = cas_of(c, "k");
    CU_ASSERT_NOT_EQUAL(cas, 0);
    /* a wrong CAS, including 0, changes nothing */
    CU_ASSERT_EQUAL(corral_cas(c, K("k"), K("bad"), 2, 0, cas + 1, &out),
                    CORRAL_EEXISTS);
    CU_ASSERT_EQUAL(out, 0);
    CU_ASSERT_EQUAL(corral_cas(c, K("k"), K("bad"), 2, 0, cas - 1, NULL),
                    CORRAL_EEXISTS);
    CU_ASSERT_EQUAL(corral_cas(c, K("k"), K("bad"), 2, 0, 0, NULL),
                    CORRAL_EEXISTS);
    CU_ASSERT(value_is(c, "k", "v1"));
    CU_ASSERT_EQUAL(cas_of(c, "k"), cas);
    /* the right one stores, with the given flags and exptime */
    CU_ASSERT_EQUAL(corral_cas(c, K("k"), K("v2"), 2, 60, cas, &out),
                    CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "v2"));
    CU_ASSERT_EQUAL(info_of(c, "k").flags, 2);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), 60);
    CU_ASSERT(out > cas);
    CU_ASSERT_EQUAL(out, cas_of(c, "k"));
    /* once used, the old CAS is stale */
    CU_ASSERT_EQUAL(corral_cas(c, K("k"), K("v3"), 0, 0, cas, NULL),
                    CORRAL_EEXISTS);
    /* CORRAL_SET with a CAS behaves as a CAS store */
    {
        corral_store_opts_t o = {0};
        o.mode = CORRAL_SET;
        o.cas = cas;
        CU_ASSERT_EQUAL(corral_store(c, K("k"), K("v4"), &o, NULL),
                        CORRAL_EEXISTS);
        CU_ASSERT_EQUAL(corral_store(c, K("nope"), K("v4"), &o, NULL),
                        CORRAL_ENOTFOUND);
        o.cas = out;
        CU_ASSERT_EQUAL(corral_store(c, K("k"), K("v4"), &o, &out2),
                        CORRAL_OK);
        CU_ASSERT(out2 > out);
        CU_ASSERT(value_is(c, "k", "v4"));
    }
    s = stats_of(c);
    CU_ASSERT_EQUAL(s.cas_misses, 3);
    CU_ASSERT_EQUAL(s.cas_badval, 5);
    CU_ASSERT_EQUAL(s.cas_hits, 2);
    corral_destroy(c);
}

/* corral.h: add and replace ignore a CAS in the options. */
static void
test_add_replace_ignore_cas(void)
{
    corral_t *c = new_cache();
    corral_store_opts_t o = {0};
    uint64_t cas, out;

    o.mode = CORRAL_REPLACE;
    o.cas = 1;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("v"), &o, NULL),
                    CORRAL_ENOTSTORED);
    CU_ASSERT(absent(c, "k"));
    o.mode = CORRAL_ADD;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("v1"), &o, &out), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "v1"));
    cas = cas_of(c, "k");
    CU_ASSERT_EQUAL(out, cas);
    o.cas = cas;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("v2"), &o, NULL),
                    CORRAL_ENOTSTORED);
    o.mode = CORRAL_REPLACE;
    o.cas = cas + 1;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("v2"), &o, NULL), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "v2"));
    CU_ASSERT_EQUAL(stats_of(c).cas_badval + stats_of(c).cas_hits +
                        stats_of(c).cas_misses,
                    0);
    corral_destroy(c);
}

/* CORRAL_STORE_INVALIDATE: an older CAS may store, but only stale data. */
static void
test_store_invalidate(void)
{
    corral_t *c = new_cache();
    corral_store_opts_t o = {0};
    corral_get_opts_t go = {0};
    corral_get_result_t r;
    corral_item_info_t info;
    corral_item_t *it;
    uint64_t cas1, cas2, out;

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v1"), 0, 100), CORRAL_OK);
    cas1 = cas_of(c, "k");
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v2"), 0, 50), CORRAL_OK);
    cas2 = cas_of(c, "k");

    /* without the option an old CAS fails */
    o.mode = CORRAL_CAS;
    o.cas = cas1;
    o.exptime = 1000;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("late"), &o, NULL),
                    CORRAL_EEXISTS);
    /* a CAS newer than the item's fails even with it */
    o.options = CORRAL_STORE_INVALIDATE;
    o.cas = cas2 + 1000;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("late"), &o, NULL),
                    CORRAL_EEXISTS);
    CU_ASSERT(value_is(c, "k", "v2"));

    /* hand out the recache token, then store stale data */
    go.flags = CORRAL_GET_RECACHE;
    go.recache_ttl = 1000;
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &go, &it, &r), CORRAL_OK);
    CU_ASSERT(r.flags & CORRAL_RES_WIN);
    corral_item_release(it);
    o.cas = cas1;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("late"), &o, &out), CORRAL_OK);
    CU_ASSERT(out > cas2);
    CU_ASSERT(value_is(c, "k", "late"));
    info = info_of(c, "k");
    CU_ASSERT_EQUAL(info.stale, 1);
    CU_ASSERT_EQUAL(info.ttl, 50); /* the item's expiry is kept */
    CU_ASSERT_EQUAL(info.cas, out);
    /* stale, and the token already handed out stays handed out */
    CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("k"), &go, &it, &r), CORRAL_OK);
    CU_ASSERT(r.flags & CORRAL_RES_STALE);
    CU_ASSERT(r.flags & CORRAL_RES_LOST);
    CU_ASSERT_EQUAL(r.flags & CORRAL_RES_WIN, 0);
    corral_item_release(it);
    /* the matching CAS stores normal data */
    o.cas = out;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("fresh"), &o, NULL), CORRAL_OK);
    CU_ASSERT_EQUAL(info_of(c, "k").stale, 0);
    CU_ASSERT_EQUAL(info_of(c, "k").ttl, 1000);
    /* on a missing key it is a miss like any CAS store */
    CU_ASSERT_EQUAL(corral_store(c, K("nope"), K("x"), &o, NULL),
                    CORRAL_ENOTFOUND);
    corral_destroy(c);
}

static void
test_out_cas(void)
{
    corral_t *c = new_cache();
    corral_store_opts_t o = {0};
    uint64_t out = 1;
    uint64_t prev = 0;

    static const corral_mode_t modes[] = {CORRAL_SET, CORRAL_REPLACE,
                                          CORRAL_APPEND, CORRAL_PREPEND,
                                          CORRAL_SET};
    o.mode = CORRAL_ADD;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("v"), &o, &out), CORRAL_OK);
    CU_ASSERT_EQUAL(out, cas_of(c, "k"));
    prev = out;
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        o.mode = modes[i];
        CU_ASSERT_EQUAL(corral_store(c, K("k"), K("v"), &o, &out), CORRAL_OK);
        CU_ASSERT(out > prev);
        CU_ASSERT_EQUAL(out, cas_of(c, "k"));
        prev = out;
    }
    o.mode = CORRAL_ADD;
    out = 1;
    CU_ASSERT_EQUAL(corral_store(c, K("k"), K("v"), &o, &out),
                    CORRAL_ENOTSTORED);
    CU_ASSERT_EQUAL(out, 0);
    corral_destroy(c);
}

/* The largest value that fits with a key of nkey bytes and these flags. */
static size_t
largest_value(corral_t *c, size_t nkey, uint32_t flags, size_t limit)
{
    static char value[8192];
    char key[CORRAL_KEY_MAX];
    size_t lo = 0, hi = limit + 1; /* lo fits, hi does not */

    memset(key, 'k', sizeof(key));
    memset(value, 'v', sizeof(value));
    CU_ASSERT_EQUAL_FATAL(corral_set(c, key, nkey, value, 0, flags, 0),
                          CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_set(c, key, nkey, value, hi, flags, 0),
                          CORRAL_ETOOBIG);
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        corral_status_t st = corral_set(c, key, nkey, value, mid, flags, 0);
        CU_ASSERT(st == CORRAL_OK || st == CORRAL_ETOOBIG);
        if (st == CORRAL_OK) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void
test_too_big(void)
{
    corral_config_t cfg;
    corral_t *c;
    size_t n1, n10, nflags, n250;
    static char value[4096];

    corral_config_init(&cfg);
    cfg.max_item_size = 1024;
    c = new_cache_cfg(&cfg);
    memset(value, 'x', sizeof(value));

    /* key + value + a small, fixed overhead make the item */
    n1 = largest_value(c, 1, 0, 1024);
    CU_ASSERT(n1 + 1 < 1024);
    CU_ASSERT(n1 + 1 >= 1024 - 64);
    n10 = largest_value(c, 10, 0, 1024);
    CU_ASSERT_EQUAL(n10, n1 - 9);
    n250 = largest_value(c, 250, 0, 1024);
    CU_ASSERT_EQUAL(n250, n1 - 249);
    nflags = largest_value(c, 1, 0xffffffffu, 1024);
    CU_ASSERT(nflags <= n1);
    CU_ASSERT(nflags + 16 >= n1);

    /* at the limit it works; one past it does not */
    CU_ASSERT_EQUAL(corral_set(c, K("k"), value, n1, 0, 0), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get_copy(c, K("k"), value, sizeof(value),
                                          NULL, NULL, NULL),
                          CORRAL_OK);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), value, n1 + 1, 0, 0),
                    CORRAL_ETOOBIG);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), value, sizeof(value), 0, 0),
                    CORRAL_ETOOBIG);
    CU_ASSERT(stats_of(c).store_too_large > 0);
    corral_destroy(c);
}

/* A set that fails removes the old value (memcached); a conditional store
 * that fails leaves it alone. */
static void
test_failed_store_and_old_value(void)
{
    corral_config_t cfg;
    corral_t *c;
    static char big[2048];
    corral_stats_t s;

    corral_config_init(&cfg);
    cfg.max_item_size = 1024;
    c = new_cache_cfg(&cfg);
    memset(big, 'b', sizeof(big));

    CU_ASSERT_EQUAL(put(c, "k", "old"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_add(c, K("k"), big, sizeof(big), 0, 0),
                    CORRAL_ETOOBIG);
    CU_ASSERT(value_is(c, "k", "old"));
    CU_ASSERT_EQUAL(corral_replace(c, K("k"), big, sizeof(big), 0, 0),
                    CORRAL_ETOOBIG);
    CU_ASSERT(value_is(c, "k", "old"));
    CU_ASSERT_EQUAL(corral_cas(c, K("k"), big, sizeof(big), 0, 0,
                               cas_of(c, "k"), NULL),
                    CORRAL_ETOOBIG);
    CU_ASSERT(value_is(c, "k", "old"));
    /* an append that would pass the limit */
    CU_ASSERT_EQUAL(corral_append(c, K("k"), big, 1000), CORRAL_ETOOBIG);
    CU_ASSERT(value_is(c, "k", "old"));
    CU_ASSERT_EQUAL(corral_prepend(c, K("k"), big, 1000), CORRAL_ETOOBIG);
    CU_ASSERT(value_is(c, "k", "old"));
    /* an append of a value that alone is too big, on a missing key */
    CU_ASSERT_EQUAL(corral_append(c, K("none"), big, sizeof(big)),
                    CORRAL_ENOTSTORED);
    s = stats_of(c);
    CU_ASSERT_EQUAL(s.store_too_large, 5);
    CU_ASSERT_EQUAL(s.curr_items, 1);

    /* the set */
    CU_ASSERT_EQUAL(corral_set(c, K("k"), big, sizeof(big), 0, 0),
                    CORRAL_ETOOBIG);
    CU_ASSERT(absent(c, "k"));
    CU_ASSERT_EQUAL(stats_of(c).curr_items, 0);
    CU_ASSERT_EQUAL(corral_set(c, K("none"), big, sizeof(big), 0, 0),
                    CORRAL_ETOOBIG);
    CU_ASSERT(absent(c, "none"));
    corral_destroy(c);
}

/* The CAS changes with every mutation, and only then.  CAS values are
 * unique and increase with each change of a key. */
static void
test_cas_changes(void)
{
    corral_t *c = new_cache();
    corral_delete_opts_t d = {0};
    corral_arith_opts_t a = {0};
    corral_item_t *it;
    uint64_t prev, now;

#define MUTATES(call)                                                         \
    do {                                                                      \
        CU_ASSERT_EQUAL(call, CORRAL_OK);                                     \
        now = cas_of(c, "k");                                                 \
        CU_ASSERT(now > prev);                                                \
        prev = now;                                                           \
    } while (0)
#define KEEPS(call, want)                                                     \
    do {                                                                      \
        CU_ASSERT_EQUAL(call, want);                                          \
        CU_ASSERT_EQUAL(cas_of(c, "k"), prev);                                \
    } while (0)

    CU_ASSERT_EQUAL(put(c, "k", "10"), CORRAL_OK);
    prev = cas_of(c, "k");
    MUTATES(put(c, "k", "10"));
    MUTATES(corral_replace(c, K("k"), K("100"), 0, 0));
    MUTATES(corral_append(c, K("k"), K("0")));
    MUTATES(corral_prepend(c, K("k"), K("1")));
    MUTATES(corral_incr(c, K("k"), 1, NULL)); /* in place */
    MUTATES(corral_decr(c, K("k"), 1, NULL));
    MUTATES(corral_incr(c, K("k"), 0, NULL)); /* even by zero */
    MUTATES(corral_cas(c, K("k"), K("5"), 0, 0, prev, NULL));
    MUTATES(corral_incr(c, K("k"), 5, NULL)); /* longer: a new item */
    a.delta = 1;
    a.options = CORRAL_ARITH_TOUCH;
    a.touch_exptime = 100;
    MUTATES(corral_arith(c, K("k"), &a, NULL));
    d.options = CORRAL_DELETE_STALE;
    MUTATES(corral_delete_ex(c, K("k"), &d));

    KEEPS(corral_touch(c, K("k"), 500), CORRAL_OK);
    KEEPS(corral_gat(c, K("k"), 600, &it), CORRAL_OK);
    corral_item_release(it);
    KEEPS(corral_get(c, K("k"), &it), CORRAL_OK);
    corral_item_release(it);
    KEEPS(corral_add(c, K("k"), K("x"), 0, 0), CORRAL_ENOTSTORED);
    KEEPS(corral_cas(c, K("k"), K("x"), 0, 0, prev + 1, NULL),
          CORRAL_EEXISTS);
    KEEPS(corral_delete_ex(c, K("k"), &(corral_delete_opts_t){0, 1, 0}),
          CORRAL_EEXISTS);
    CU_ASSERT_EQUAL(put(c, "k", "abc"), CORRAL_OK);
    prev = cas_of(c, "k");
    KEEPS(corral_incr(c, K("k"), 1, NULL), CORRAL_ENONNUMERIC);
#undef MUTATES
#undef KEEPS

    /* CAS values across keys never repeat */
    {
        uint64_t seen[200];
        for (int i = 0; i < 200; i++) {
            char key[16];
            snprintf(key, sizeof(key), "u%d", i % 50);
            CU_ASSERT_EQUAL(put(c, key, "v"), CORRAL_OK);
            seen[i] = cas_of(c, key);
            for (int j = 0; j < i; j++) {
                CU_ASSERT_NOT_EQUAL(seen[i], seen[j]);
            }
        }
    }
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Deletion and touch                                                     */

static void
test_delete(void)
{
    corral_t *c = new_cache();
    corral_stats_t s;

    CU_ASSERT_EQUAL(corral_delete(c, K("k")), CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(put(c, "k", "v"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_delete(c, K("k")), CORRAL_OK);
    CU_ASSERT(absent(c, "k"));
    CU_ASSERT_EQUAL(corral_delete(c, K("k")), CORRAL_ENOTFOUND);
    /* an expired item is not found */
    CU_ASSERT_EQUAL(corral_set(c, K("x"), K("v"), 0, 1), CORRAL_OK);
    advance(1);
    CU_ASSERT_EQUAL(corral_delete(c, K("x")), CORRAL_ENOTFOUND);
    s = stats_of(c);
    CU_ASSERT_EQUAL(s.delete_hits, 1);
    CU_ASSERT_EQUAL(s.delete_misses, 3);
    CU_ASSERT_EQUAL(s.curr_items, 0);
    corral_destroy(c);
}

static void
test_delete_ex(void)
{
    corral_t *c = new_cache();
    corral_delete_opts_t d = {0};
    corral_item_info_t info;
    uint64_t cas;

    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 3, 100), CORRAL_OK);
    cas = cas_of(c, "k");
    /* conditional on the CAS */
    d.cas = cas + 1;
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_EEXISTS);
    CU_ASSERT(value_is(c, "k", "v"));
    d.cas = cas;
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_OK);
    CU_ASSERT(absent(c, "k"));
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), NULL), CORRAL_ENOTFOUND);

    /* stale: kept, flagged, new CAS, same expiry */
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 3, 100), CORRAL_OK);
    cas = cas_of(c, "k");
    d.cas = 0;
    d.options = CORRAL_DELETE_STALE;
    d.exptime = 5; /* ignored without TOUCH */
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "v"));
    info = info_of(c, "k");
    CU_ASSERT_EQUAL(info.stale, 1);
    CU_ASSERT(info.cas > cas);
    CU_ASSERT_EQUAL(info.ttl, 100);
    CU_ASSERT_EQUAL(info.flags, 3);
    /* stale + touch: also the expiry */
    d.options = CORRAL_DELETE_STALE | CORRAL_DELETE_TOUCH;
    d.exptime = 7;
    d.cas = info.cas;
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_OK);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), 7);
    CU_ASSERT(cas_of(c, "k") > info.cas);
    /* with a stale CAS nothing happens */
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_EEXISTS);
    /* a real delete removes a stale item */
    CU_ASSERT_EQUAL(corral_delete(c, K("k")), CORRAL_OK);
    CU_ASSERT(absent(c, "k"));
    CU_ASSERT_EQUAL(stats_of(c).delete_hits, 4);
    corral_destroy(c);
}

static void
test_touch(void)
{
    corral_t *c = new_cache();
    corral_item_info_t info;
    uint64_t cas;
    corral_stats_t s;

    CU_ASSERT_EQUAL(corral_touch(c, K("k"), 10), CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("v"), 8, 10), CORRAL_OK);
    cas = cas_of(c, "k");
    CU_ASSERT_EQUAL(corral_touch(c, K("k"), 100), CORRAL_OK);
    info = info_of(c, "k");
    CU_ASSERT_EQUAL(info.ttl, 100);
    CU_ASSERT_EQUAL(info.cas, cas);
    CU_ASSERT_EQUAL(info.flags, 8);
    CU_ASSERT(value_is(c, "k", "v"));
    advance(50);
    CU_ASSERT(value_is(c, "k", "v")); /* past the old expiry */
    CU_ASSERT_EQUAL(corral_touch(c, K("k"), 0), CORRAL_OK);
    CU_ASSERT_EQUAL(ttl_of(c, "k"), -1);
    CU_ASSERT_EQUAL(corral_touch(c, K("k"), -1), CORRAL_OK);
    CU_ASSERT(absent(c, "k"));
    CU_ASSERT_EQUAL(corral_touch(c, K("k"), 100), CORRAL_ENOTFOUND);
    s = stats_of(c);
    CU_ASSERT_EQUAL(s.cmd_touch, 5);
    CU_ASSERT_EQUAL(s.touch_hits, 3);
    CU_ASSERT_EQUAL(s.touch_misses, 2);
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Arithmetic                                                             */

static void
test_incr_decr_basic(void)
{
    corral_t *c = new_cache();
    uint64_t v = 7;

    CU_ASSERT_EQUAL(corral_incr(c, K("n"), 1, &v), CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(v, 7); /* untouched on failure */
    CU_ASSERT_EQUAL(corral_decr(c, K("n"), 1, &v), CORRAL_ENOTFOUND);
    CU_ASSERT(absent(c, "n"));
    CU_ASSERT_EQUAL(corral_set(c, K("n"), K("41"), 12, 100), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_incr(c, K("n"), 1, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 42);
    CU_ASSERT(value_is(c, "n", "42"));
    CU_ASSERT_EQUAL(corral_incr(c, K("n"), 958, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 1000);
    CU_ASSERT(value_is(c, "n", "1000"));
    CU_ASSERT_EQUAL(corral_decr(c, K("n"), 1, NULL), CORRAL_OK);
    CU_ASSERT(value_is(c, "n", "999 "));
    CU_ASSERT_EQUAL(corral_incr(c, K("n"), 0, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 999);
    /* flags and expiry survive both the in-place and the new-item path */
    CU_ASSERT_EQUAL(info_of(c, "n").flags, 12);
    CU_ASSERT_EQUAL(ttl_of(c, "n"), 100);
    CU_ASSERT_EQUAL(corral_incr(c, K("n"), 99001, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 100000);
    CU_ASSERT_EQUAL(info_of(c, "n").flags, 12);
    CU_ASSERT_EQUAL(ttl_of(c, "n"), 100);
    corral_destroy(c);
}

static void
test_incr_wraps_decr_floors(void)
{
    corral_t *c = new_cache();
    uint64_t v;

    CU_ASSERT_EQUAL(put(c, "n", "18446744073709551615"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_incr(c, K("n"), 0, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, UINT64_MAX);
    CU_ASSERT_EQUAL(corral_incr(c, K("n"), 1, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT(value_is(c, "n", "0" "          " "         "));
    CU_ASSERT_EQUAL(put(c, "n", "18446744073709551610"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_incr(c, K("n"), 10, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 4);
    CU_ASSERT_EQUAL(corral_incr(c, K("n"), UINT64_MAX, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 3);

    CU_ASSERT_EQUAL(put(c, "d", "5"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_decr(c, K("d"), 3, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 2);
    CU_ASSERT_EQUAL(corral_decr(c, K("d"), 10, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT(value_is(c, "d", "0"));
    CU_ASSERT_EQUAL(corral_decr(c, K("d"), 1, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(put(c, "d", "18446744073709551615"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_decr(c, K("d"), UINT64_MAX, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 0);
    corral_destroy(c);
}

/* Values incr/decr refuse (memcached's safe_strtoull on the value). */
static void
test_arith_non_numeric(void)
{
    static const char *const bad[] = {
        "", "abc", "12abc", "-5", "-0x", "1.5", "0x10", "1e3", "+", "-",
        " ", "   ", "5-", "\x01", "18446744073709551616",
        "99999999999999999999", "100000000000000000000",
        "184467440737095516150",
    };
    corral_t *c = new_cache();

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 12345, cas;
        corral_arith_opts_t a = {0};

        CU_ASSERT_EQUAL(put(c, "n", bad[i]), CORRAL_OK);
        cas = cas_of(c, "n");
        CU_ASSERT_EQUAL(corral_incr(c, K("n"), 1, &v), CORRAL_ENONNUMERIC);
        CU_ASSERT_EQUAL(corral_decr(c, K("n"), 1, &v), CORRAL_ENONNUMERIC);
        a.options = CORRAL_ARITH_VIVIFY | CORRAL_ARITH_TOUCH;
        a.touch_exptime = 5;
        CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, NULL),
                        CORRAL_ENONNUMERIC);
        if (v != 12345 || !value_is(c, "n", bad[i])) {
            printf("\n  value '%s' changed\n", bad[i]);
        }
        CU_ASSERT_EQUAL(v, 12345);
        CU_ASSERT(value_is(c, "n", bad[i]));
        CU_ASSERT_EQUAL(cas_of(c, "n"), cas);
        CU_ASSERT_EQUAL(ttl_of(c, "n"), -1);
    }
    corral_destroy(c);
}

/* Values incr/decr accept: leading white space, a trailing space or
 * NUL, a plus sign, leading zeros, the 20-digit maximum. */
static void
test_arith_numeric_forms(void)
{
    static const struct {
        const char *value;
        size_t len;
        uint64_t after_incr;
    } ok[] = {
        {" 5", 2, 6},
        {"5 ", 2, 6},
        {"\t7\n", 3, 8},
        {"+5", 2, 6},
        {"007", 3, 8},
        {"0", 1, 1},
        {"9\0junk", 6, 10},
        {"18446744073709551614", 20, UINT64_MAX},
        {"-0", 2, 1},
        {"1 2", 3, 2},
    };
    corral_t *c = new_cache();

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 0;

        CU_ASSERT_EQUAL(corral_set(c, K("n"), ok[i].value, ok[i].len, 0, 0),
                        CORRAL_OK);
        CU_ASSERT_EQUAL(corral_incr(c, K("n"), 1, &v), CORRAL_OK);
        if (v != ok[i].after_incr) {
            printf("\n  value '%s' + 1 gave %llu\n", ok[i].value,
                   (unsigned long long)v);
        }
        CU_ASSERT_EQUAL(v, ok[i].after_incr);
    }
    corral_destroy(c);
}

/* Like memcached, a result no longer than the old value is written in
 * place, padded with spaces; a longer one makes a new item. */
static void
test_arith_in_place_padding(void)
{
    corral_t *c = new_cache();
    corral_item_t *it;
    uint64_t v;
    size_t len;

    CU_ASSERT_EQUAL(put(c, "n", "100"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_decr(c, K("n"), 1, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(v, 99);
    CU_ASSERT(value_is(c, "n", "99 "));
    CU_ASSERT_EQUAL(corral_incr(c, K("n"), 1, &v), CORRAL_OK);
    CU_ASSERT(value_is(c, "n", "100"));
    CU_ASSERT_EQUAL(corral_decr(c, K("n"), 91, &v), CORRAL_OK);
    CU_ASSERT(value_is(c, "n", "9  "));
    CU_ASSERT_EQUAL(corral_incr(c, K("n"), 1, &v), CORRAL_OK);
    CU_ASSERT(value_is(c, "n", "10 "));
    CU_ASSERT_EQUAL(corral_incr(c, K("n"), 990, &v), CORRAL_OK);
    CU_ASSERT(value_is(c, "n", "1000"));
    CU_ASSERT_EQUAL(corral_decr(c, K("n"), 1000, &v), CORRAL_OK);
    CU_ASSERT(value_is(c, "n", "0   "));

    /* while a reader holds it, the value is not rewritten: a new item
     * holds the result, with no padding */
    CU_ASSERT_EQUAL(put(c, "p", "100"), CORRAL_OK);
    CU_ASSERT_EQUAL_FATAL(corral_get(c, K("p"), &it), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_decr(c, K("p"), 1, &v), CORRAL_OK);
    CU_ASSERT_EQUAL(memcmp(corral_item_value(it, &len), "100", 3), 0);
    CU_ASSERT_EQUAL(len, 3);
    CU_ASSERT(value_is(c, "p", "99"));
    corral_item_release(it);
    corral_destroy(c);
}

static void
test_arith_options(void)
{
    corral_t *c = new_cache();
    corral_arith_opts_t a = {0};
    corral_arith_result_t r;
    corral_stats_t s;
    uint64_t cas;

    /* vivify: a miss creates the item with `initial`, delta not applied */
    a.options = CORRAL_ARITH_VIVIFY;
    a.delta = 5;
    a.initial = 100;
    a.vivify_exptime = 60;
    CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.value, 100);
    CU_ASSERT_EQUAL(r.ttl, 60);
    CU_ASSERT_EQUAL(r.cas, cas_of(c, "n"));
    CU_ASSERT(value_is(c, "n", "100"));
    CU_ASSERT_EQUAL(info_of(c, "n").flags, 0);
    /* a hit applies the delta and keeps the expiry */
    advance(10);
    CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.value, 105);
    CU_ASSERT_EQUAL(r.ttl, 50);
    /* decrement */
    a.options = CORRAL_ARITH_DECR;
    a.delta = 6;
    CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.value, 99);
    CU_ASSERT(value_is(c, "n", "99 "));
    CU_ASSERT_EQUAL(r.cas, cas_of(c, "n"));
    /* touch */
    a.options = CORRAL_ARITH_TOUCH;
    a.delta = 1;
    a.touch_exptime = 0;
    CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.value, 100);
    CU_ASSERT_EQUAL(r.ttl, -1);
    CU_ASSERT_EQUAL(ttl_of(c, "n"), -1);
    a.touch_exptime = 30;
    CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.ttl, 30);
    CU_ASSERT_EQUAL(ttl_of(c, "n"), 30);
    /* CAS condition */
    cas = cas_of(c, "n");
    a.options = 0;
    a.cas = cas + 1;
    memset(&r, 0xff, sizeof(r));
    CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, &r), CORRAL_EEXISTS);
    CU_ASSERT_EQUAL(r.value, 0); /* zeroed on failure */
    CU_ASSERT(value_is(c, "n", "101"));
    a.cas = cas;
    CU_ASSERT_EQUAL(corral_arith(c, K("n"), &a, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.value, 102);
    CU_ASSERT(r.cas > cas);
    /* a CAS on a missing key is a miss, with or without vivify */
    CU_ASSERT_EQUAL(corral_arith(c, K("m"), &a, &r), CORRAL_ENOTFOUND);
    /* vivify with touch: the new item gets the touch expiry */
    a.cas = 0;
    a.options = CORRAL_ARITH_VIVIFY | CORRAL_ARITH_TOUCH | CORRAL_ARITH_DECR;
    a.initial = 7;
    a.vivify_exptime = 100;
    a.touch_exptime = 200;
    CU_ASSERT_EQUAL(corral_arith(c, K("m"), &a, &r), CORRAL_OK);
    CU_ASSERT_EQUAL(r.value, 7);
    CU_ASSERT(value_is(c, "m", "7"));
    CU_ASSERT(r.ttl == 100 || r.ttl == 200);
    CU_ASSERT_EQUAL(ttl_of(c, "m"), r.ttl);
    /* NULL options: increment by one; NULL result */
    CU_ASSERT_EQUAL(corral_arith(c, K("m"), NULL, NULL), CORRAL_OK);
    CU_ASSERT(value_is(c, "m", "8"));

    s = stats_of(c);
    CU_ASSERT_EQUAL(s.incr_hits, 5);
    CU_ASSERT_EQUAL(s.incr_misses, 2);
    CU_ASSERT_EQUAL(s.decr_hits, 1);
    CU_ASSERT_EQUAL(s.decr_misses, 1);
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Flush and sweep                                                        */

static void
test_flush_now(void)
{
    corral_t *c = new_cache();
    char key[16];
    corral_stats_t s;

    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT_EQUAL(put(c, key, "v"), CORRAL_OK);
    }
    CU_ASSERT_EQUAL(corral_flush(c, 0), CORRAL_OK);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT(absent(c, key));
    }
    /* stored after the flush: kept */
    CU_ASSERT_EQUAL(put(c, "after", "v"), CORRAL_OK);
    CU_ASSERT(value_is(c, "after", "v"));
    CU_ASSERT_EQUAL(corral_flush(c, -5), CORRAL_OK); /* negative: now */
    CU_ASSERT(absent(c, "after"));
    CU_ASSERT_EQUAL(put(c, "after", "v"), CORRAL_OK);
    /* an absolute time already past: now */
    CU_ASSERT_EQUAL(corral_flush(c, (int64_t)T0 - 100), CORRAL_OK);
    CU_ASSERT(absent(c, "after"));
    s = stats_of(c);
    CU_ASSERT_EQUAL(s.cmd_flush, 3);
    CU_ASSERT_EQUAL(s.get_flushed, 102);
    CU_ASSERT_EQUAL(s.curr_items, 0);
    corral_destroy(c);
}

static void
test_flush_delayed(void)
{
    corral_t *c = new_cache();

    CU_ASSERT_EQUAL(put(c, "early", "v"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_flush(c, 10), CORRAL_OK);
    CU_ASSERT(value_is(c, "early", "v"));
    advance(5);
    CU_ASSERT_EQUAL(put(c, "mid", "v"), CORRAL_OK);
    CU_ASSERT(value_is(c, "early", "v"));
    CU_ASSERT(value_is(c, "mid", "v"));
    advance(3); /* T0 + 8 */
    CU_ASSERT(value_is(c, "early", "v"));
    CU_ASSERT_EQUAL(put(c, "late", "v"), CORRAL_OK);
    advance(2); /* T0 + 10: the flush time */
    CU_ASSERT(absent(c, "early"));
    CU_ASSERT(absent(c, "mid"));
    CU_ASSERT(absent(c, "late"));
    CU_ASSERT_EQUAL(put(c, "after", "v"), CORRAL_OK);
    advance(100);
    CU_ASSERT(value_is(c, "after", "v"));
    CU_ASSERT_EQUAL(corral_add(c, K("early"), K("again"), 0, 0), CORRAL_OK);
    CU_ASSERT(value_is(c, "early", "again"));
    corral_destroy(c);
}

static void
test_flush_absolute_time(void)
{
    corral_t *c = new_cache();

    CU_ASSERT_EQUAL(put(c, "k", "v"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_flush(c, (int64_t)T0 + CORRAL_RELTIME_MAX + 500),
                    CORRAL_OK);
    advance(CORRAL_RELTIME_MAX + 498);
    CU_ASSERT(value_is(c, "k", "v"));
    advance(2);
    CU_ASSERT(absent(c, "k"));
    corral_destroy(c);
}

static void
test_flush_replaces_pending(void)
{
    corral_t *c = new_cache();

    /* a sooner flush replaces a later one */
    CU_ASSERT_EQUAL(put(c, "a", "v"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_flush(c, 100), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_flush(c, 10), CORRAL_OK);
    advance(10);
    CU_ASSERT(absent(c, "a"));

    /* a later flush replaces a sooner one */
    CU_ASSERT_EQUAL(put(c, "b", "v"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_flush(c, 10), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_flush(c, 100), CORRAL_OK);
    advance(10);
    CU_ASSERT(value_is(c, "b", "v"));
    advance(88);
    CU_ASSERT(value_is(c, "b", "v"));
    advance(2);
    CU_ASSERT(absent(c, "b"));

    /* an immediate flush cancels a pending one */
    CU_ASSERT_EQUAL(put(c, "c", "v"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_flush(c, 10), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_flush(c, 0), CORRAL_OK);
    CU_ASSERT(absent(c, "c"));
    CU_ASSERT_EQUAL(put(c, "d", "v"), CORRAL_OK);
    advance(20);
    CU_ASSERT(value_is(c, "d", "v"));
    corral_destroy(c);
}

/* Flush events seen by gap_log. */
struct flush_log {
    size_t n;
    int64_t at[4];
    uint64_t origin[4];
};

static void
gap_log(const corral_event_t *ev, void *ud)
{
    struct flush_log *l = ud;
    if (ev->type == CORRAL_EVENT_FLUSH && l->n < 4) {
        l->at[l->n] = ev->flush_time;
        l->origin[l->n++] = ev->origin;
    }
}

/* A GAP invalidation (the flush of a cache that missed events) flushes
 * now but leaves a delayed flush pending, and its events say both. */
static void
test_flush_gap_keeps_pending(void)
{
    corral_t *c = new_cache();
    corral_invalidation_t gap = {.type = CORRAL_EVENT_GAP, .origin = 7};
    struct flush_log l = {0};
    corral_sub_t *sub;

    CU_ASSERT_FATAL(corral_subscribe(c, gap_log, &l, 0, &sub) == CORRAL_OK);
    CU_ASSERT_EQUAL(put(c, "a", "v"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_flush(c, 10), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_invalidate(c, &gap), CORRAL_OK);
    CU_ASSERT(absent(c, "a"));
    CU_ASSERT_EQUAL(put(c, "b", "v"), CORRAL_OK);
    advance(5);
    CU_ASSERT(value_is(c, "b", "v"));
    advance(5); /* T0 + 10: the delayed flush still comes */
    CU_ASSERT(absent(c, "b"));
    CU_ASSERT_EQUAL_FATAL(l.n, 3);
    CU_ASSERT_EQUAL(l.at[0], (int64_t)T0 + 10); /* corral_flush(c, 10) */
    CU_ASSERT_EQUAL(l.at[1], 0);                /* the gap: now */
    CU_ASSERT_EQUAL(l.at[2], (int64_t)T0 + 10); /* ... and still pending */
    CU_ASSERT_EQUAL(l.origin[1], 7);
    CU_ASSERT_EQUAL(l.origin[2], 7);

    /* with nothing pending (the delayed flush came), one event, and the
     * flush is as a FLUSH at once */
    CU_ASSERT_EQUAL(put(c, "c", "v"), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_invalidate(c, &gap), CORRAL_OK);
    CU_ASSERT(absent(c, "c"));
    CU_ASSERT_EQUAL(put(c, "d", "v"), CORRAL_OK);
    advance(100);
    CU_ASSERT(value_is(c, "d", "v"));
    CU_ASSERT_EQUAL(l.n, 4);
    CU_ASSERT_EQUAL(l.at[3], 0);
    corral_unsubscribe(c, sub);
    corral_destroy(c);
}

static void
test_sweep(void)
{
    corral_t *c = new_cache();
    corral_stats_t before, after;
    char key[16];
    size_t freed = 0;

    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), K("value"), 0,
                                   i < 100 ? 5 : 0),
                        CORRAL_OK);
    }
    CU_ASSERT_EQUAL(corral_sweep(c, 1000), 0); /* nothing dead yet */
    advance(5);
    before = stats_of(c);
    CU_ASSERT_EQUAL(before.curr_items, 200);
    for (int i = 0; i < 100 && freed < 100; i++) {
        freed += corral_sweep(c, 50);
    }
    CU_ASSERT_EQUAL(freed, 100);
    after = stats_of(c);
    CU_ASSERT_EQUAL(after.curr_items, 100);
    CU_ASSERT(after.bytes < before.bytes);
    /* (their memory goes with their segments', shared with live items) */
    CU_ASSERT(after.mem_used <= before.mem_used);
    CU_ASSERT_EQUAL(after.reclaimed, 100);
    CU_ASSERT_EQUAL(after.expired_unfetched, 100);
    CU_ASSERT_EQUAL(after.evictions, 0);
    CU_ASSERT_EQUAL(corral_sweep(c, 0) + corral_sweep(c, 1000), 0);
    /* deleted and overwritten items are freed too */
    CU_ASSERT_EQUAL(corral_delete(c, K("k150")), CORRAL_OK);
    CU_ASSERT_EQUAL(put(c, "k151", "new value"), CORRAL_OK);
    freed = 0;
    for (int i = 0; i < 100; i++) {
        freed += corral_sweep(c, 50);
    }
    CU_ASSERT(freed <= 2);
    after = stats_of(c);
    CU_ASSERT_EQUAL(after.curr_items, 99);
    /* once the rest go too, the sweep hands back every segment: memory is
     * the table alone (nothing was evicted: no ghost) */
    for (int i = 100; i < 200; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        corral_delete(c, key, strlen(key));
    }
    for (int i = 0; i < 100; i++) {
        corral_sweep(c, 50);
    }
    after = stats_of(c);
    CU_ASSERT_EQUAL(after.curr_items, 0);
    CU_ASSERT_EQUAL(after.mem_used, after.hash_bytes);
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Statistics                                                             */

static const struct stat_field {
    const char *name;
    size_t offset;
    bool counter;
} stat_fields[] = {
#define STAT_FIELD(name, kind, text)                                          \
    {#name, offsetof(corral_stats_t, name), sizeof(#kind) == 8},
    CORRAL_STATS_TABLE(STAT_FIELD)
#undef STAT_FIELD
};

#define NFIELDS (sizeof(stat_fields) / sizeof(stat_fields[0]))

static uint64_t
stat_get(const corral_stats_t *s, size_t i)
{
    uint64_t v;
    memcpy(&v, (const char *)s + stat_fields[i].offset, sizeof(v));
    return v;
}

/*
 * One operation and the statistics it moves.  prepare runs first (its
 * changes are not counted); op is measured; `moves` lists "name=delta"
 * for every counter and the curr_items gauge; every other counter must
 * stay put.
 */
struct stat_case {
    const char *what;
    void (*prepare)(corral_t *c);
    void (*op)(corral_t *c);
    const char *moves;
};

static void
prep_k(corral_t *c)
{
    CU_ASSERT_EQUAL(put(c, "k", "1"), CORRAL_OK);
}

static void
prep_k_expired(corral_t *c)
{
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("1"), 0, 1), CORRAL_OK);
    advance(1);
}

static void
prep_k_flushed(corral_t *c)
{
    prep_k(c);
    CU_ASSERT_EQUAL(corral_flush(c, 0), CORRAL_OK);
}

static void
prep_k_fetched_expired(corral_t *c)
{
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("1"), 0, 1), CORRAL_OK);
    CU_ASSERT(value_is(c, "k", "1"));
    advance(1);
}

static void
prep_none(corral_t *c)
{
    (void)c;
}

static void
op_get(corral_t *c)
{
    corral_item_t *it;
    if (corral_get(c, K("k"), &it) == CORRAL_OK) {
        corral_item_release(it);
    }
}

static void
op_gat(corral_t *c)
{
    corral_item_t *it;
    if (corral_gat(c, K("k"), 100, &it) == CORRAL_OK) {
        corral_item_release(it);
    }
}

static void
op_vivify(corral_t *c)
{
    corral_get_opts_t o = {0};
    corral_item_t *it;
    o.flags = CORRAL_GET_VIVIFY;
    CU_ASSERT_EQUAL(corral_get_ex(c, K("k"), &o, &it, NULL), CORRAL_OK);
    corral_item_release(it);
}

static void
op_get_multi(corral_t *c)
{
    const void *keys[3] = {"k", "x", "k"};
    size_t nkeys[3] = {1, 1, 1};
    corral_item_t *out[3];
    CU_ASSERT_EQUAL(corral_get_multi(c, 3, keys, nkeys, out), 2);
    for (int i = 0; i < 3; i++) {
        corral_item_release(out[i]);
    }
}

static void
op_set(corral_t *c)
{
    CU_ASSERT_EQUAL(put(c, "k", "2"), CORRAL_OK);
}

static void
op_add(corral_t *c)
{
    corral_add(c, K("k"), K("2"), 0, 0);
}

static void
op_too_big(corral_t *c)
{
    static char big[2 * 1024 * 1024];
    CU_ASSERT_EQUAL(corral_set(c, K("k"), big, sizeof(big), 0, 0),
                    CORRAL_ETOOBIG);
}

static void
op_delete(corral_t *c)
{
    corral_delete(c, K("k"));
}

static void
op_incr(corral_t *c)
{
    corral_incr(c, K("k"), 1, NULL);
}

static void
op_decr(corral_t *c)
{
    corral_decr(c, K("k"), 1, NULL);
}

static void
op_incr_vivify(corral_t *c)
{
    corral_arith_opts_t a = {0};
    a.options = CORRAL_ARITH_VIVIFY;
    CU_ASSERT_EQUAL(corral_arith(c, K("k"), &a, NULL), CORRAL_OK);
}

static void
op_cas_good(corral_t *c)
{
    CU_ASSERT_EQUAL(corral_cas(c, K("k"), K("2"), 0, 0, cas_of(c, "k"), NULL),
                    CORRAL_OK);
}

static void
op_cas_bad(corral_t *c)
{
    corral_status_t st = corral_cas(c, K("k"), K("2"), 0, 0, UINT64_MAX,
                                    NULL);
    CU_ASSERT(st == CORRAL_EEXISTS || st == CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(corral_cas(c, K("k"), K("2"), 0, 0, UINT64_MAX, NULL),
                    st);
}

static void
op_touch(corral_t *c)
{
    corral_touch(c, K("k"), 100);
}

static void
op_flush(corral_t *c)
{
    corral_flush(c, 0);
}

static void
op_sweep(corral_t *c)
{
    CU_ASSERT_EQUAL(corral_sweep(c, 1000), 1);
}

static const struct stat_case stat_cases[] = {
    {"get hit", prep_k, op_get, "cmd_get=1 get_hits=1"},
    {"get miss", prep_none, op_get, "cmd_get=1 get_misses=1"},
    {"get expired", prep_k_expired, op_get,
     "cmd_get=1 get_misses=1 get_expired=1 reclaimed=1 expired_unfetched=1 "
     "curr_items=-1"},
    {"get flushed", prep_k_flushed, op_get,
     "cmd_get=1 get_misses=1 get_flushed=1 reclaimed=1 curr_items=-1"},
    {"get_multi", prep_k, op_get_multi, "cmd_get=3 get_hits=2 get_misses=1"},
    {"gat hit", prep_k, op_gat,
     "cmd_get=1 get_hits=1 cmd_touch=1 touch_hits=1"},
    {"gat miss", prep_none, op_gat,
     "cmd_get=1 get_misses=1 cmd_touch=1 touch_misses=1"},
    {"vivify", prep_none, op_vivify,
     "cmd_get=1 get_misses=1 total_items=1 curr_items=1 recache_wins=1"},
    {"set new", prep_none, op_set, "cmd_set=1 total_items=1 curr_items=1"},
    {"set over", prep_k, op_set, "cmd_set=1 total_items=1"},
    {"set over expired", prep_k_expired, op_set,
     "cmd_set=1 total_items=1 reclaimed=1 expired_unfetched=1"},
    {"set over fetched expired", prep_k_fetched_expired, op_set,
     "cmd_set=1 total_items=1 reclaimed=1"},
    {"set too big", prep_k, op_too_big,
     "cmd_set=1 store_too_large=1 curr_items=-1"},
    {"add exists", prep_k, op_add, "cmd_set=1"},
    {"add new", prep_none, op_add, "cmd_set=1 total_items=1 curr_items=1"},
    {"delete hit", prep_k, op_delete, "delete_hits=1 curr_items=-1"},
    {"delete miss", prep_none, op_delete, "delete_misses=1"},
    {"incr hit", prep_k, op_incr, "incr_hits=1"},
    {"incr miss", prep_none, op_incr, "incr_misses=1"},
    {"incr vivify", prep_none, op_incr_vivify,
     "incr_misses=1 total_items=1 curr_items=1"},
    {"decr hit", prep_k, op_decr, "decr_hits=1"},
    {"decr miss", prep_none, op_decr, "decr_misses=1"},
    {"cas hit", prep_k, op_cas_good,
     "cmd_get=1 get_hits=1 cmd_set=1 cas_hits=1 total_items=1"},
    {"cas badval", prep_k, op_cas_bad, "cmd_set=2 cas_badval=2"},
    {"cas miss", prep_none, op_cas_bad, "cmd_set=2 cas_misses=2"},
    {"touch hit", prep_k, op_touch, "cmd_touch=1 touch_hits=1"},
    {"touch miss", prep_none, op_touch, "cmd_touch=1 touch_misses=1"},
    {"flush", prep_k, op_flush, "cmd_flush=1"},
    {"sweep expired", prep_k_expired, op_sweep,
     "reclaimed=1 expired_unfetched=1 curr_items=-1"},
};

/* The expected delta of field i in moves, 0 if not listed. */
static int64_t
stat_expected(const char *moves, size_t i)
{
    size_t n = strlen(stat_fields[i].name);
    const char *p = moves;

    while ((p = strstr(p, stat_fields[i].name)) != NULL) {
        if ((p == moves || p[-1] == ' ') && p[n] == '=') {
            return strtoll(p + n + 1, NULL, 10);
        }
        p += n;
    }
    return 0;
}

static void
test_stats_each_counter(void)
{
    for (size_t k = 0; k < sizeof(stat_cases) / sizeof(stat_cases[0]); k++) {
        const struct stat_case *sc = &stat_cases[k];
        corral_t *c = new_cache();
        corral_stats_t before, after;

        sc->prepare(c);
        before = stats_of(c);
        sc->op(c);
        after = stats_of(c);
        for (size_t i = 0; i < NFIELDS; i++) {
            int64_t want = stat_expected(sc->moves, i);
            int64_t got = (int64_t)(stat_get(&after, i) -
                                    stat_get(&before, i));
            if (!stat_fields[i].counter &&
                strcmp(stat_fields[i].name, "curr_items") != 0) {
                continue;
            }
            if (got != want) {
                printf("\n  %s: %s moved by %lld, expected %lld\n", sc->what,
                       stat_fields[i].name, (long long)got, (long long)want);
            }
            CU_ASSERT_EQUAL(got, want);
        }
        corral_destroy(c);
    }
}

static void
test_stats_gauges(void)
{
    corral_config_t cfg;
    corral_t *c;
    corral_stats_t s0, s;
    uint64_t bytes = 0;
    char key[16];

    corral_config_init(&cfg);
    cfg.max_memory = 8 * MIB;
    c = new_cache_cfg(&cfg);
    s0 = stats_of(c);
    CU_ASSERT_EQUAL(s0.curr_items, 0);
    CU_ASSERT_EQUAL(s0.bytes, 0);
    CU_ASSERT_EQUAL(s0.limit_maxbytes, 8 * MIB);
    CU_ASSERT(s0.hash_bytes > 0);
    CU_ASSERT(s0.mem_used >= s0.hash_bytes);
    CU_ASSERT(s0.mem_used <= 8 * MIB);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), key, strlen(key), 0,
                                   0),
                        CORRAL_OK);
        bytes += info_of(c, key).alloc_size;
    }
    s = stats_of(c);
    CU_ASSERT_EQUAL(s.curr_items, 50);
    CU_ASSERT_EQUAL(s.total_items, 50);
    CU_ASSERT_EQUAL(s.bytes, bytes);
    CU_ASSERT(s.mem_used >= s.bytes + s.hash_bytes);
    /* deleting takes the bytes out of `bytes` at once */
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT_EQUAL(corral_delete(c, key, strlen(key)), CORRAL_OK);
    }
    s = stats_of(c);
    CU_ASSERT_EQUAL(s.curr_items, 0);
    CU_ASSERT_EQUAL(s.bytes, 0);
    /* and the sweep gives the memory back */
    for (int i = 0; i < 20; i++) {
        corral_sweep(c, 100);
    }
    s = stats_of(c);
    CU_ASSERT_EQUAL(s.mem_used, s.hash_bytes + (s0.mem_used - s0.hash_bytes));
    corral_destroy(c);
}

static void
test_stats_reset(void)
{
    corral_t *c = new_cache();
    corral_stats_t before, s;

    CU_ASSERT_EQUAL(put(c, "a", "1"), CORRAL_OK);
    CU_ASSERT_EQUAL(put(c, "b", "2"), CORRAL_OK);
    CU_ASSERT(value_is(c, "a", "1"));
    CU_ASSERT(absent(c, "z"));
    CU_ASSERT_EQUAL(corral_incr(c, K("a"), 1, NULL), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_delete(c, K("b")), CORRAL_OK);
    CU_ASSERT_EQUAL(corral_touch(c, K("z"), 1), CORRAL_ENOTFOUND);
    before = stats_of(c);
    corral_stats_reset(c);
    s = stats_of(c);
    for (size_t i = 0; i < NFIELDS; i++) {
        if (stat_fields[i].counter) {
            CU_ASSERT_EQUAL(stat_get(&s, i), 0);
        } else {
            CU_ASSERT_EQUAL(stat_get(&s, i), stat_get(&before, i));
        }
    }
    CU_ASSERT_EQUAL(s.curr_items, 1);
    CU_ASSERT(s.bytes > 0);
    CU_ASSERT_EQUAL(s.limit_maxbytes, 64 * MIB);
    /* counting starts again */
    CU_ASSERT(value_is(c, "a", "2"));
    s = stats_of(c);
    CU_ASSERT_EQUAL(s.cmd_get, 1);
    CU_ASSERT_EQUAL(s.get_hits, 1);
    corral_destroy(c);
}

/* A thread counts into a per-cache block that it finds through a small
 * map with room for four caches, the last used first: counting in turn
 * into more caches than that moves and replaces entries, and no count may
 * go to the wrong cache or get lost. */
static void
test_stats_many_caches(void)
{
    enum { NCACHES = 7, ROUNDS = 50 };
    corral_t *c[NCACHES];
    corral_stats_t s;

    for (int i = 0; i < NCACHES; i++) {
        c[i] = new_cache();
        CU_ASSERT_EQUAL(put(c[i], "a", "1"), CORRAL_OK);
    }
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < NCACHES; i++) {
            /* cache i: i + 1 hits and one miss per round */
            for (int k = 0; k <= i; k++) {
                CU_ASSERT(value_is(c[i], "a", "1"));
            }
            CU_ASSERT(absent(c[i], "z"));
        }
        /* and now and then the same cache many times in a row */
        for (int k = 0; k < 3; k++) {
            CU_ASSERT(value_is(c[r % NCACHES], "a", "1"));
        }
    }
    for (int i = 0; i < NCACHES; i++) {
        unsigned extra = 0;
        for (int r = 0; r < ROUNDS; r++) {
            extra += r % NCACHES == i ? 3 : 0;
        }
        s = stats_of(c[i]);
        CU_ASSERT_EQUAL(s.get_hits, (uint64_t)ROUNDS * (i + 1) + extra);
        CU_ASSERT_EQUAL(s.get_misses, ROUNDS);
        CU_ASSERT_EQUAL(s.cmd_set, 1);
        corral_destroy(c[i]);
    }
}

/* Fields past the caller's size are not written. */
static void
test_stats_size(void)
{
    corral_t *c = new_cache();
    corral_stats_t s;
    unsigned char *p = (unsigned char *)&s;
    size_t cut = offsetof(corral_stats_t, bytes);

    CU_ASSERT_EQUAL(put(c, "a", "1"), CORRAL_OK);
    memset(&s, 0xab, sizeof(s));
    corral_stats(c, &s, cut);
    CU_ASSERT_EQUAL(s.curr_items, 1);
    CU_ASSERT_EQUAL(s.total_items, 1);
    for (size_t i = cut; i < sizeof(s); i++) {
        CU_ASSERT_EQUAL_FATAL(p[i], 0xab);
    }
    memset(&s, 0xab, sizeof(s));
    corral_stats(c, &s, 0);
    for (size_t i = 0; i < sizeof(s); i++) {
        CU_ASSERT_EQUAL_FATAL(p[i], 0xab);
    }
    /* a partial field is written only as far as the size goes */
    memset(&s, 0xab, sizeof(s));
    corral_stats(c, &s, 3);
    for (size_t i = 3; i < sizeof(s); i++) {
        CU_ASSERT_EQUAL_FATAL(p[i], 0xab);
    }
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Pinned items                                                           */

/* A pinned item and what it held when pinned. */
struct pin {
    corral_item_t *it;
    char value[64];
    size_t len;
    uint32_t flags;
    uint64_t cas;
};

static void
pin_take(corral_t *c, const char *key, struct pin *p)
{
    const void *v;

    CU_ASSERT_EQUAL_FATAL(corral_get(c, key, strlen(key), &p->it),
                          CORRAL_OK);
    v = corral_item_value(p->it, &p->len);
    CU_ASSERT_FATAL(p->len <= sizeof(p->value));
    memcpy(p->value, v, p->len);
    p->flags = corral_item_flags(p->it);
    p->cas = corral_item_cas(p->it);
}

/* True if the pinned item is exactly as it was. */
static bool
pin_intact(const struct pin *p, const char *key)
{
    size_t len, nkey;
    const void *v = corral_item_value(p->it, &len);
    const void *k = corral_item_key(p->it, &nkey);

    return len == p->len && memcmp(v, p->value, len) == 0 &&
           nkey == strlen(key) && memcmp(k, key, nkey) == 0 &&
           corral_item_flags(p->it) == p->flags &&
           corral_item_cas(p->it) == p->cas;
}

static void
test_pinned_survives_changes(void)
{
    corral_t *c = new_cache();
    corral_delete_opts_t d = {0};
    struct pin p[9];

    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("100"), 7, 0), CORRAL_OK);
    pin_take(c, "k", &p[0]);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("200"), 8, 0), CORRAL_OK);
    pin_take(c, "k", &p[1]);
    CU_ASSERT_EQUAL(corral_append(c, K("k"), K("0")), CORRAL_OK);
    pin_take(c, "k", &p[2]);
    CU_ASSERT_EQUAL(corral_decr(c, K("k"), 1, NULL), CORRAL_OK);
    pin_take(c, "k", &p[3]);
    CU_ASSERT_EQUAL(corral_incr(c, K("k"), 1, NULL), CORRAL_OK);
    pin_take(c, "k", &p[4]);
    CU_ASSERT_EQUAL(corral_touch(c, K("k"), 100), CORRAL_OK);
    d.options = CORRAL_DELETE_STALE;
    CU_ASSERT_EQUAL(corral_delete_ex(c, K("k"), &d), CORRAL_OK);
    pin_take(c, "k", &p[5]);
    CU_ASSERT_EQUAL(corral_delete(c, K("k")), CORRAL_OK);
    CU_ASSERT_EQUAL(put(c, "k", "new"), CORRAL_OK);
    pin_take(c, "k", &p[6]);
    CU_ASSERT_EQUAL(corral_flush(c, 0), CORRAL_OK);
    CU_ASSERT_EQUAL(put(c, "k", "after flush"), CORRAL_OK);
    pin_take(c, "k", &p[7]);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("expiring"), 0, 1), CORRAL_OK);
    pin_take(c, "k", &p[8]);
    advance(2);
    CU_ASSERT(absent(c, "k"));
    for (int i = 0; i < 100; i++) {
        corral_sweep(c, 100);
    }
    CU_ASSERT_EQUAL(stats_of(c).curr_items, 0);

    for (int i = 0; i < 9; i++) {
        if (!pin_intact(&p[i], "k")) {
            printf("\n  pin %d changed\n", i);
        }
        CU_ASSERT(pin_intact(&p[i], "k"));
    }
    CU_ASSERT_EQUAL(memcmp(p[0].value, "100", 3), 0);
    CU_ASSERT_EQUAL(memcmp(p[3].value, "1999", 4), 0);
    CU_ASSERT_EQUAL(memcmp(p[6].value, "new", 3), 0);
    for (int i = 0; i < 9; i++) {
        corral_item_release(p[i].it);
    }
    corral_destroy(c);
}

/* Pinned items outlive their eviction: the engine stops counting them, the
 * reader keeps them. */
static void
test_pinned_survives_eviction(void)
{
    corral_config_t cfg;
    corral_t *c;
    struct pin p;
    char key[16], value[200];
    corral_stats_t s;

    corral_config_init(&cfg);
    cfg.max_memory = MIB;
    cfg.max_item_size = 4096;
    cfg.shards = 1;
    c = new_cache_cfg(&cfg);
    CU_ASSERT_EQUAL(corral_set(c, K("pinned"), K("precious"), 3, 0),
                    CORRAL_OK);
    /* pinned without counting as an access, so S3-FIFO lets it go */
    {
        corral_get_opts_t o = {0};
        size_t len;
        o.flags = CORRAL_GET_NOBUMP;
        CU_ASSERT_EQUAL_FATAL(corral_get_ex(c, K("pinned"), &o, &p.it, NULL),
                              CORRAL_OK);
        const void *v = corral_item_value(p.it, &len);
        memcpy(p.value, v, len);
        p.len = len;
        p.flags = corral_item_flags(p.it);
        p.cas = corral_item_cas(p.it);
    }
    memset(value, 'x', sizeof(value));
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "f%d", i);
        CU_ASSERT_EQUAL(corral_set(c, key, strlen(key), value, sizeof(value),
                                   0, 0),
                        CORRAL_OK);
    }
    s = stats_of(c);
    CU_ASSERT(s.evictions > 0);
    CU_ASSERT(s.mem_used <= MIB);
    CU_ASSERT(absent(c, "pinned"));
    CU_ASSERT(pin_intact(&p, "pinned"));
    corral_item_release(p.it);
    corral_destroy(c);
}

/* A pinned item stays readable after the cache is destroyed. */
static void
test_pinned_outlives_cache(void)
{
    corral_t *c = new_cache();
    struct pin p;

    CU_ASSERT_EQUAL(put(c, "k", "value"), CORRAL_OK);
    pin_take(c, "k", &p);
    corral_destroy(c);
    CU_ASSERT(pin_intact(&p, "k"));
    corral_item_release(p.it);
}

/* Very many pins of one item: past the reference count's range the caller
 * gets private copies, which read the same. */
static void
test_many_pins(void)
{
    enum { NPINS = 70000 };
    corral_t *c = new_cache();
    corral_item_t **items = calloc(NPINS, sizeof(*items));
    size_t ok = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(items);
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("shared"), 9, 0), CORRAL_OK);
    for (size_t i = 0; i < NPINS; i++) {
        CU_ASSERT_EQUAL_FATAL(corral_get(c, K("k"), &items[i]), CORRAL_OK);
    }
    CU_ASSERT_EQUAL(corral_set(c, K("k"), K("replaced"), 0, 0), CORRAL_OK);
    for (size_t i = 0; i < NPINS; i++) {
        size_t len;
        const void *v = corral_item_value(items[i], &len);
        ok += len == 6 && memcmp(v, "shared", 6) == 0 &&
              corral_item_flags(items[i]) == 9 &&
              corral_item_cas(items[i]) == corral_item_cas(items[0]);
    }
    CU_ASSERT_EQUAL(ok, NPINS);
    for (size_t i = 0; i < NPINS; i++) {
        corral_item_release(items[i]);
    }
    CU_ASSERT(value_is(c, "k", "replaced"));
    free(items);
    corral_destroy(c);
}

/* Pins past what an item's count holds are private copies, bounded to an
 * eighth of the memory limit (a multiget naming one key 100,000 times
 * used to copy it 35,000 times); past that the lookup is refused with
 * CORRAL_ENOMEM, and releasing the copies gives the room back. */
static void
test_private_copies_bounded(void)
{
    enum { NPINS = 70000 };
    corral_config_t cfg;
    corral_t *c = NULL;
    corral_item_t **items = calloc(NPINS, sizeof(*items));
    static char value[64 * 1024];
    size_t ok = 0, refused = 0, other = 0;
    corral_item_t *again = NULL;

    corral_config_init(&cfg);
    cfg.max_memory = 16 * MIB; /* copies: 2 MiB, about 31 of 64 KiB */
    c = new_cache_cfg(&cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(items);
    memset(value, 'v', sizeof(value));
    CU_ASSERT_EQUAL(corral_set(c, K("big"), value, sizeof(value), 0, 0),
                    CORRAL_OK);
    for (size_t i = 0; i < NPINS; i++) {
        corral_status_t st = corral_get(c, K("big"), &items[i]);
        ok += st == CORRAL_OK;
        refused += st == CORRAL_ENOMEM;
        other += st != CORRAL_OK && st != CORRAL_ENOMEM;
    }
    CU_ASSERT_EQUAL(other, 0);
    CU_ASSERT(refused > 0);
    CU_ASSERT(ok >= 65000 && ok < 65300 + 40); /* the count, then ~31 */
    for (size_t i = 0; i < NPINS; i++) {
        corral_item_release(items[i]); /* NULL for the refused ones */
    }
    /* the room is back: a lookup works, and copies are made again */
    CU_ASSERT_EQUAL(corral_get(c, K("big"), &again), CORRAL_OK);
    corral_item_release(again);
    free(items);
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */

static const struct cu_test lifecycle_tests[] = {
    CU_TEST(test_config_defaults),
    CU_TEST(test_create_null_config),
    CU_TEST(test_create_bad_configs),
    CU_TEST(test_create_boundaries),
    CU_TEST(test_config_older_size),
    CU_TEST(test_config_get_reports_clock),
    CU_TEST(test_null_is_noop),
    CU_TEST(test_version),
    CU_TEST(test_strerror),
    CU_TEST(test_two_caches_independent),
    CU_END,
};

static const struct cu_test retrieval_tests[] = {
    CU_TEST(test_get_hit_and_miss),
    CU_TEST(test_key_lengths),
    CU_TEST(test_get_copy),
    CU_TEST(test_get_multi),
    CU_TEST(test_get_multi_large),
    CU_TEST(test_set_max_memory),
    CU_TEST(test_result_details),
    CU_TEST(test_get_early),
    CU_TEST(test_max_items_exact),
    CU_TEST(test_max_items_beyond_memory),
    CU_TEST(test_gat),
    CU_TEST(test_get_ex_plain),
    CU_TEST(test_get_ex_nobump),
    CU_TEST(test_get_ex_touch),
    CU_TEST(test_get_ex_vivify),
    CU_TEST(test_get_ex_recache),
    CU_TEST(test_get_ex_stale),
    CU_END,
};

static const struct cu_test storage_tests[] = {
    CU_TEST(test_set_overwrite),
    CU_TEST(test_flags_32bit),
    CU_TEST(test_empty_and_binary_values),
    CU_TEST(test_binary_key_mark),
    CU_TEST(test_add),
    CU_TEST(test_replace),
    CU_TEST(test_append_prepend),
    CU_TEST(test_cas_store),
    CU_TEST(test_add_replace_ignore_cas),
    CU_TEST(test_store_invalidate),
    CU_TEST(test_out_cas),
    CU_TEST(test_too_big),
    CU_TEST(test_failed_store_and_old_value),
    CU_TEST(test_cas_changes),
    CU_END,
};

static const struct cu_test delete_touch_tests[] = {
    CU_TEST(test_delete),
    CU_TEST(test_delete_ex),
    CU_TEST(test_touch),
    CU_END,
};

static const struct cu_test arith_tests[] = {
    CU_TEST(test_incr_decr_basic),
    CU_TEST(test_incr_wraps_decr_floors),
    CU_TEST(test_arith_non_numeric),
    CU_TEST(test_arith_numeric_forms),
    CU_TEST(test_arith_in_place_padding),
    CU_TEST(test_arith_options),
    CU_END,
};

static const struct cu_test flush_tests[] = {
    CU_TEST(test_flush_now),
    CU_TEST(test_flush_delayed),
    CU_TEST(test_flush_gap_keeps_pending),
    CU_TEST(test_flush_absolute_time),
    CU_TEST(test_flush_replaces_pending),
    CU_TEST(test_sweep),
    CU_END,
};

static const struct cu_test stats_tests[] = {
    CU_TEST(test_stats_each_counter),
    CU_TEST(test_stats_gauges),
    CU_TEST(test_stats_reset),
    CU_TEST(test_stats_many_caches),
    CU_TEST(test_stats_size),
    CU_END,
};

static const struct cu_test pin_tests[] = {
    CU_TEST(test_pinned_survives_changes),
    CU_TEST(test_pinned_survives_eviction),
    CU_TEST(test_pinned_outlives_cache),
    CU_TEST(test_many_pins),
    CU_TEST(test_private_copies_bounded),
    CU_END,
};

CU_MAIN({"lifecycle", lifecycle_tests, NULL, NULL},
        {"retrieval", retrieval_tests, NULL, NULL},
        {"storage", storage_tests, NULL, NULL},
        {"delete_touch", delete_touch_tests, NULL, NULL},
        {"arith", arith_tests, NULL, NULL},
        {"flush", flush_tests, NULL, NULL},
        {"stats", stats_tests, NULL, NULL},
        {"pinned", pin_tests, NULL, NULL})
