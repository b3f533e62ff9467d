/*
 * test_fetch.c - corral_fetch: single flight (1,000 threads on one cold
 * key run the loader once; an error reaches every waiter), negative
 * caching, remembered errors and backoff, stale-while-revalidate inline
 * and in the background, XFetch early refresh, stale-if-error, the
 * circuit breaker, a loader's own TTL (corral_load_ttl), and leases
 * proven with deterministic interleavings (a write, delete, tag or prefix
 * invalidation or flush during a load keeps its result out of the
 * cache).  Time comes from an injected clock.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corral.h"
#include "cu_main.h"

/* ---------------------------------------------------------------------- */
/* Fixtures                                                               */

static _Atomic uint64_t fake_ns;

static uint64_t
fake_clock(void *ud)
{
    (void)ud;
    return atomic_load(&fake_ns);
}

static void
advance(double seconds)
{
    atomic_fetch_add(&fake_ns, (uint64_t)(seconds * 1e9));
}

static corral_t *
mk(void)
{
    corral_config_t cfg;
    corral_t *c = NULL;
    atomic_store(&fake_ns, (uint64_t)1700000000 * 1000000000u);
    corral_config_init(&cfg);
    cfg.shards = 4;
    cfg.clock = fake_clock;
    CU_ASSERT_FATAL(corral_create(&cfg, &c) == CORRAL_OK);
    return c;
}

static uint64_t
stat_at(corral_t *c, size_t off)
{
    corral_stats_t st;
    corral_stats(c, &st, sizeof(st));
    return *(uint64_t *)((char *)&st + off);
}
#define STAT(c, f) stat_at((c), offsetof(corral_stats_t, f))

static bool
value_is(corral_item_t *it, const char *want)
{
    size_t len;
    const char *v = corral_item_value(it, &len);
    return len == strlen(want) && memcmp(v, want, len) == 0;
}

/* A loader that sets a fixed value and counts its calls. */
struct fixed {
    const char *value;
    int error;           /* nonzero: fail with it */
    bool absent;
    int64_t absent_ttl;
    double takes;        /* seconds of fake time the load takes */
    _Atomic int calls;
};

static int
fixed_loader(corral_load_t *ld, const void *key, size_t nkey, void *ud)
{
    struct fixed *f = ud;
    (void)key;
    (void)nkey;
    atomic_fetch_add(&f->calls, 1);
    if (f->takes > 0) {
        advance(f->takes);
    }
    if (f->error != 0) {
        return f->error;
    }
    if (f->absent) {
        corral_load_absent(ld, f->absent_ttl);
        return 0;
    }
    return corral_load_set(ld, f->value, strlen(f->value), 7) == CORRAL_OK
               ? 0
               : -1;
}

/* Options with a 10 s TTL and 20 s of stale serving after it. */
static corral_fetch_opts_t
stale_opts(unsigned options)
{
    corral_fetch_opts_t o = {0};
    o.ttl = 10;
    o.stale_ttl = 20;
    o.options = options;
    return o;
}

/* Load `value` for "k", then let `later` seconds pass. */
static void
load_then_age(corral_t *c, struct fixed *f, const char *value,
              const corral_fetch_opts_t *o, double later)
{
    corral_item_t *it = NULL;
    f->value = value;
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, f, o, &it, NULL) ==
              CORRAL_OK);
    corral_item_release(it);
    advance(later);
}

/* ---------------------------------------------------------------------- */
/* Single flight                                                          */

#define HERD 1000

struct herd {
    corral_t *c;
    int error;
    _Atomic int calls;
    _Atomic int ok;
    _Atomic int failed;
};

/* Holds the load until every other caller is waiting on it, so that the
 * counters can be exact. */
static int
herd_loader(corral_load_t *ld, const void *key, size_t nkey, void *ud)
{
    struct herd *h = ud;
    struct timespec start, now;
    (void)key;
    (void)nkey;
    atomic_fetch_add(&h->calls, 1);
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        sched_yield();
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (STAT(h->c, load_waits) < HERD - 1 &&
             now.tv_sec - start.tv_sec < 60);
    if (h->error != 0) {
        return h->error;
    }
    return corral_load_set(ld, "cold value", 10, 0) == CORRAL_OK ? 0 : -1;
}

static void *
herd_thread(void *arg)
{
    struct herd *h = arg;
    corral_item_t *it = NULL;
    corral_fetch_opts_t o = {0};
    int err = 0;
    corral_status_t st;

    o.ttl = 60;
    o.wait_ms = 120000;
    st = corral_fetch(h->c, "cold", 4, herd_loader, h, &o, &it, &err);
    if (st == CORRAL_OK && value_is(it, "cold value")) {
        atomic_fetch_add(&h->ok, 1);
    } else if (st == CORRAL_ELOAD && err == h->error) {
        atomic_fetch_add(&h->failed, 1);
    }
    corral_item_release(it);
    return NULL;
}

static void
run_herd(struct herd *h)
{
    static pthread_t th[HERD];
    pthread_attr_t attr;
    int started = 0;

    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (int i = 0; i < HERD; i++) {
        if (pthread_create(&th[i], &attr, herd_thread, h) == 0) {
            started++;
        }
    }
    CU_ASSERT_EQUAL_FATAL(started, HERD);
    for (int i = 0; i < HERD; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_attr_destroy(&attr);
}

static void
test_single_flight_value(void)
{
    static struct herd h;
    memset(&h, 0, sizeof(h));
    h.c = mk();
    run_herd(&h);
    CU_ASSERT_EQUAL(atomic_load(&h.calls), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.ok), HERD);
    CU_ASSERT_EQUAL(STAT(h.c, fetches), HERD);
    CU_ASSERT_EQUAL(STAT(h.c, loads), 1);
    CU_ASSERT_EQUAL(STAT(h.c, load_waits), HERD - 1);
    CU_ASSERT_EQUAL(STAT(h.c, stampedes_absorbed), HERD - 1);
    CU_ASSERT_EQUAL(STAT(h.c, load_timeouts), 0);
    corral_destroy(h.c);
}

static void
test_single_flight_error(void)
{
    static struct herd h;
    memset(&h, 0, sizeof(h));
    h.c = mk();
    h.error = 42;
    run_herd(&h);
    CU_ASSERT_EQUAL(atomic_load(&h.calls), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.failed), HERD);
    CU_ASSERT_EQUAL(STAT(h.c, load_errors), 1);
    CU_ASSERT_EQUAL(STAT(h.c, stampedes_absorbed), HERD - 1);
    corral_destroy(h.c);
}

/* ---------------------------------------------------------------------- */
/* Negative caching, remembered errors, backoff                           */

static void
test_negative_cache(void)
{
    corral_t *c = mk();
    struct fixed f = {0};
    corral_item_t *it = NULL;

    f.absent = true;
    f.absent_ttl = 5;
    CU_ASSERT(corral_fetch(c, "gone", 4, fixed_loader, &f, NULL, &it,
                           NULL) == CORRAL_ENOTFOUND);
    CU_ASSERT_PTR_NULL(it);
    CU_ASSERT(corral_fetch(c, "gone", 4, fixed_loader, &f, NULL, &it,
                           NULL) == CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 1);
    CU_ASSERT_EQUAL(STAT(c, negative_hits), 1);
    /* invisible to everything else */
    CU_ASSERT(corral_get(c, "gone", 4, &it) == CORRAL_ENOTFOUND);
    CU_ASSERT(corral_fetch(c, "gone", 4, fixed_loader, &f, NULL, &it,
                           NULL) == CORRAL_ENOTFOUND);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 1);
    /* once its TTL passes the loader is asked again */
    advance(6);
    f.absent = false;
    f.value = "back";
    CU_ASSERT(corral_fetch(c, "gone", 4, fixed_loader, &f, NULL, &it,
                           NULL) == CORRAL_OK);
    CU_ASSERT(it && value_is(it, "back"));
    CU_ASSERT_EQUAL(corral_item_flags(it), 7);
    corral_item_release(it);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 2);

    /* an add over a negative entry succeeds: the key is absent */
    f.absent = true;
    CU_ASSERT(corral_fetch(c, "neg2", 4, fixed_loader, &f, NULL, &it,
                           NULL) == CORRAL_ENOTFOUND);
    CU_ASSERT(corral_add(c, "neg2", 4, "x", 1, 0, 0) == CORRAL_OK);
    CU_ASSERT(corral_fetch(c, "neg2", 4, fixed_loader, &f, NULL, &it,
                           NULL) == CORRAL_OK);
    CU_ASSERT(it && value_is(it, "x"));
    corral_item_release(it);
    corral_destroy(c);
}

static void
test_error_backoff(void)
{
    corral_t *c = mk();
    struct fixed f = {0};
    corral_item_t *it = NULL;
    int err = 0;

    f.error = 13;
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, NULL, &it, &err) ==
              CORRAL_ELOAD);
    CU_ASSERT_EQUAL(err, 13);
    /* remembered: answered without calling the loader */
    err = 0;
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, NULL, &it, &err) ==
              CORRAL_ELOAD);
    CU_ASSERT_EQUAL(err, 13);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 1);
    CU_ASSERT_EQUAL(STAT(c, error_hits), 1);
    /* after the error window and the backoff, the loader runs again and
     * each failure doubles the wait (100 ms, 200 ms, ...) */
    for (int i = 2; i <= 6; i++) {
        advance(11);
        CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, NULL, &it,
                               &err) == CORRAL_ELOAD);
        CU_ASSERT_EQUAL(atomic_load(&f.calls), i);
    }
    f.error = 0;
    f.value = "fine";
    advance(11);
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, NULL, &it, &err) ==
              CORRAL_OK);
    CU_ASSERT(it && value_is(it, "fine"));
    corral_item_release(it);
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, NULL, &it, &err) ==
              CORRAL_OK);
    corral_item_release(it);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 7);
    corral_destroy(c);
}

/* Hundreds of keys' errors remembered at once (the table of key records
 * grows and rehashes them; successes in between keep the breaker shut):
 * each is still answered from memory; once their backoff is over, new
 * records drop the spent ones, and each key loads again. */
static void
test_many_remembered_errors(void)
{
    enum { N = 300 };
    corral_t *c = mk();
    struct fixed bad = {0}, good = {0};
    corral_item_t *it = NULL;
    char key[16];
    int err, remembered = 0, loaded = 0;

    bad.error = 13;
    good.value = "ok";
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "e%d", i);
        CU_ASSERT(corral_fetch(c, key, strlen(key), fixed_loader, &bad, NULL,
                               &it, &err) == CORRAL_ELOAD);
        snprintf(key, sizeof(key), "s%d", i);
        CU_ASSERT(corral_fetch(c, key, strlen(key), fixed_loader, &good,
                               NULL, &it, NULL) == CORRAL_OK);
        corral_item_release(it);
    }
    CU_ASSERT_EQUAL(STAT(c, breaker_opens), 0);
    for (int i = 0; i < N; i++) {
        err = 0;
        snprintf(key, sizeof(key), "e%d", i);
        remembered += corral_fetch(c, key, strlen(key), fixed_loader, &good,
                                   NULL, &it, &err) == CORRAL_ELOAD &&
                      err == 13;
    }
    CU_ASSERT_EQUAL(remembered, N);
    CU_ASSERT_EQUAL(atomic_load(&bad.calls), N);
    CU_ASSERT_EQUAL(atomic_load(&good.calls), N);
    advance(11); /* past the error window and the first backoff */
    for (int i = 0; i < N; i++) { /* new records drop the spent ones */
        snprintf(key, sizeof(key), "n%d", i);
        CU_ASSERT(corral_fetch(c, key, strlen(key), fixed_loader, &good,
                               NULL, &it, NULL) == CORRAL_OK);
        corral_item_release(it);
    }
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "e%d", i);
        if (corral_fetch(c, key, strlen(key), fixed_loader, &good, NULL, &it,
                         NULL) == CORRAL_OK) {
            loaded += value_is(it, "ok");
            corral_item_release(it);
        }
    }
    CU_ASSERT_EQUAL(loaded, N);
    CU_ASSERT_EQUAL(atomic_load(&good.calls), 3 * N);
    corral_destroy(c);
}

static void
test_breaker(void)
{
    corral_config_t cfg;
    corral_t *c = NULL;
    struct fixed f = {0};
    corral_item_t *it = NULL;
    char key[8];

    atomic_store(&fake_ns, (uint64_t)1700000000 * 1000000000u);
    corral_config_init(&cfg);
    cfg.clock = fake_clock;
    cfg.breaker_failures = 3;
    cfg.breaker_open_ms = 2000;
    CU_ASSERT_FATAL(corral_create(&cfg, &c) == CORRAL_OK);
    f.error = 1;
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CU_ASSERT(corral_fetch(c, key, strlen(key), fixed_loader, &f, NULL,
                               &it, NULL) == CORRAL_ELOAD);
    }
    CU_ASSERT_EQUAL(STAT(c, breaker_opens), 1);
    /* open: other keys are refused without calling the loader */
    CU_ASSERT(corral_fetch(c, "other", 5, fixed_loader, &f, NULL, &it,
                           NULL) == CORRAL_EBUSY);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 3);
    CU_ASSERT_EQUAL(STAT(c, breaker_rejects), 1);
    /* half-open after the timeout: a failed trial reopens it */
    advance(2.5);
    CU_ASSERT(corral_fetch(c, "t1", 2, fixed_loader, &f, NULL, &it, NULL) ==
              CORRAL_ELOAD);
    CU_ASSERT_EQUAL(STAT(c, breaker_opens), 2);
    CU_ASSERT(corral_fetch(c, "t2", 2, fixed_loader, &f, NULL, &it, NULL) ==
              CORRAL_EBUSY);
    /* a successful trial closes it */
    advance(2.5);
    f.error = 0;
    f.value = "ok";
    CU_ASSERT(corral_fetch(c, "t3", 2, fixed_loader, &f, NULL, &it, NULL) ==
              CORRAL_OK);
    corral_item_release(it);
    CU_ASSERT(corral_fetch(c, "t4", 2, fixed_loader, &f, NULL, &it, NULL) ==
              CORRAL_OK);
    corral_item_release(it);
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Stale-while-revalidate, early refresh, stale-if-error                 */

/* A loader that blocks until released, returning a given value. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool entered;
    bool open;
    const char *value;
    const char *tag;
    bool tag_late;       /* attach the tag after the gate, not before */
    int error;
    _Atomic int calls;
};

static void
gate_init(struct gate *g, const char *value)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->value = value;
}

static int
gate_loader(corral_load_t *ld, const void *key, size_t nkey, void *ud)
{
    struct gate *g = ud;
    (void)key;
    (void)nkey;
    atomic_fetch_add(&g->calls, 1);
    if (g->tag != NULL && !g->tag_late) {
        corral_load_tags(ld, &g->tag, 1);
    }
    pthread_mutex_lock(&g->lock);
    g->entered = true;
    pthread_cond_broadcast(&g->cond);
    while (!g->open) {
        pthread_cond_wait(&g->cond, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
    if (g->error != 0) {
        return g->error;
    }
    if (g->tag != NULL && g->tag_late) {
        corral_load_tags(ld, &g->tag, 1);
    }
    return corral_load_set(ld, g->value, strlen(g->value), 0) == CORRAL_OK
               ? 0
               : -1;
}

static void
gate_wait_entered(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    while (!g->entered) {
        pthread_cond_wait(&g->cond, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
}

static void
gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

struct fetcher {
    corral_t *c;
    const char *key;
    struct gate *g;
    corral_fetch_opts_t o;
    corral_status_t st;
    char got[64];
    int err;
};

static void *
fetcher_main(void *arg)
{
    struct fetcher *f = arg;
    corral_item_t *it = NULL;
    f->st = corral_fetch(f->c, f->key, strlen(f->key), gate_loader, f->g,
                         &f->o, &it, &f->err);
    if (it != NULL) {
        size_t len;
        const char *v = corral_item_value(it, &len);
        snprintf(f->got, sizeof(f->got), "%.*s", (int)len, v);
        corral_item_release(it);
    }
    return NULL;
}

static void
test_stale_while_revalidate(void)
{
    corral_t *c = mk();
    struct fixed first = {0};
    struct gate g;
    struct fetcher bg;
    pthread_t th;
    corral_fetch_opts_t o = stale_opts(CORRAL_FETCH_NO_EARLY);
    corral_item_t *it = NULL;

    load_then_age(c, &first, "v1", &o, 15); /* stale, still servable */

    /* the first caller refreshes in its own thread ... */
    gate_init(&g, "v2");
    memset(&bg, 0, sizeof(bg));
    bg.c = c;
    bg.key = "k";
    bg.g = &g;
    bg.o = o;
    pthread_create(&th, NULL, fetcher_main, &bg);
    gate_wait_entered(&g);
    /* ... while everyone else gets the stale value at once */
    CU_ASSERT(corral_fetch(c, "k", 1, gate_loader, &g, &o, &it, NULL) ==
              CORRAL_OK);
    CU_ASSERT(it && value_is(it, "v1"));
    corral_item_release(it);
    CU_ASSERT_EQUAL(STAT(c, stale_served), 2);
    gate_open(&g);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(bg.st, CORRAL_OK);
    CU_ASSERT_STRING_EQUAL(bg.got, "v2");
    CU_ASSERT_EQUAL(atomic_load(&g.calls), 1);
    CU_ASSERT_EQUAL(STAT(c, refreshes), 1);
    CU_ASSERT(corral_fetch(c, "k", 1, gate_loader, &g, &o, &it, NULL) ==
              CORRAL_OK);
    CU_ASSERT(it && value_is(it, "v2"));
    corral_item_release(it);

    /* past the stale window it is a plain miss */
    advance(31);
    first.value = "v3";
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &first, &o, &it, NULL) ==
              CORRAL_OK);
    CU_ASSERT(it && value_is(it, "v3"));
    corral_item_release(it);
    corral_destroy(c);
}

/* A loader that sets "v<call number>" with a TTL of its own. */
struct own_ttl {
    int64_t ttl, stale_ttl;
    _Atomic int calls;
};

static int
own_ttl_loader(corral_load_t *ld, const void *key, size_t nkey, void *ud)
{
    struct own_ttl *t = ud;
    int call = atomic_fetch_add(&t->calls, 1) + 1;
    char v[16];
    int n = snprintf(v, sizeof(v), "v%d", call);
    (void)key;
    (void)nkey;
    corral_load_ttl(ld, t->ttl, t->stale_ttl);
    return corral_load_set(ld, v, (size_t)n, 0) == CORRAL_OK ? 0 : -1;
}

static bool
present(corral_t *c, const char *key)
{
    corral_item_t *it = NULL;
    corral_status_t st = corral_get(c, key, strlen(key), &it);
    corral_item_release(it);
    return st == CORRAL_OK;
}

/* corral_load_ttl overrides the fetch's ttl and stale_ttl for the value
 * loaded (here 3 s fresh and 5 s stale against the options' 10 and 20);
 * a negative stale_ttl means none. */
static void
test_load_ttl(void)
{
    corral_t *c = mk();
    struct own_ttl t = {3, 5, 0};
    corral_fetch_opts_t o = stale_opts(CORRAL_FETCH_NO_EARLY);
    corral_item_t *it = NULL;

    CU_ASSERT(corral_fetch(c, "k", 1, own_ttl_loader, &t, &o, &it, NULL) ==
              CORRAL_OK);
    CU_ASSERT(it && value_is(it, "v1"));
    corral_item_release(it);
    advance(2); /* fresh: a hit */
    CU_ASSERT(corral_fetch(c, "k", 1, own_ttl_loader, &t, &o, &it, NULL) ==
              CORRAL_OK);
    CU_ASSERT(it && value_is(it, "v1"));
    corral_item_release(it);
    CU_ASSERT_EQUAL(atomic_load(&t.calls), 1);
    advance(2); /* 4 s: stale after 3, not 10: refreshed */
    CU_ASSERT(corral_fetch(c, "k", 1, own_ttl_loader, &t, &o, &it, NULL) ==
              CORRAL_OK);
    CU_ASSERT(it && value_is(it, "v2"));
    corral_item_release(it);
    CU_ASSERT_EQUAL(atomic_load(&t.calls), 2);
    advance(7); /* 7 s after the refresh: stale, still held */
    CU_ASSERT(present(c, "k"));
    advance(2); /* 9 s: past 3 + 5, though not past 10 + 20 */
    CU_ASSERT_FALSE(present(c, "k"));

    t.stale_ttl = -1; /* no stale window: gone after 3 s */
    CU_ASSERT(corral_fetch(c, "n", 1, own_ttl_loader, &t, &o, &it, NULL) ==
              CORRAL_OK);
    corral_item_release(it);
    advance(2);
    CU_ASSERT(present(c, "n"));
    advance(2);
    CU_ASSERT_FALSE(present(c, "n"));
    corral_destroy(c);
}

/* The item an inline refresh hands back is the one the cache now holds,
 * with its CAS (the caller's pin on the stale value keeps the new value
 * from being copied into it). */
static void
test_refresh_cas(void)
{
    corral_t *c = mk();
    struct fixed f = {0};
    corral_fetch_opts_t o = stale_opts(CORRAL_FETCH_NO_EARLY);
    corral_item_t *it = NULL, *again = NULL;

    load_then_age(c, &f, "v1", &o, 15); /* the next fetch refreshes */
    f.value = "v2";
    CU_ASSERT_FATAL(corral_fetch(c, "k", 1, fixed_loader, &f, &o, &it,
                                 NULL) == CORRAL_OK);
    CU_ASSERT(value_is(it, "v2"));
    CU_ASSERT_EQUAL(STAT(c, refreshes), 1);
    CU_ASSERT_FATAL(corral_get(c, "k", 1, &again) == CORRAL_OK);
    CU_ASSERT(value_is(again, "v2"));
    CU_ASSERT_NOT_EQUAL(corral_item_cas(it), 0);
    CU_ASSERT_EQUAL(corral_item_cas(it), corral_item_cas(again));
    corral_item_release(again);
    corral_item_release(it);
    corral_destroy(c);
}

static void
test_background_refresh(void)
{
    corral_t *c = mk();
    struct fixed f = {0};
    corral_fetch_opts_t o =
        stale_opts(CORRAL_FETCH_BACKGROUND | CORRAL_FETCH_NO_EARLY);
    corral_item_t *it = NULL;
    struct timespec t0, t1;
    bool updated = false;

    load_then_age(c, &f, "old", &o, 12);
    f.value = "new";
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, &o, &it, NULL) ==
              CORRAL_OK);
    CU_ASSERT(it && value_is(it, "old")); /* at once, stale */
    corral_item_release(it);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        corral_item_t *g = NULL;
        if (corral_get(c, "k", 1, &g) == CORRAL_OK) {
            updated = value_is(g, "new");
            corral_item_release(g);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
    } while (!updated && t1.tv_sec - t0.tv_sec < 30);
    CU_ASSERT(updated);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 2);
    corral_destroy(c);
}

/* A per-call ud for CORRAL_FETCH_RELEASE: malloc'd by the caller, freed
 * by the loader's release call; the counters show each is released once,
 * never used after, and released only after its own load. */
static _Atomic int owned_live, owned_released, owned_loads, owned_misuse;

struct owned {
    const char *value;
    bool loaded;
    bool released;
};

static int
owned_loader(corral_load_t *ld, const void *key, size_t nkey, void *ud)
{
    struct owned *o = ud;
    (void)key;
    (void)nkey;
    if (o->released) {
        atomic_fetch_add(&owned_misuse, 1);
        return -1;
    }
    if (ld == NULL) { /* the release */
        if (key != NULL || nkey != 0) {
            atomic_fetch_add(&owned_misuse, 1);
        }
        o->released = true;
        atomic_fetch_add(&owned_released, 1);
        atomic_fetch_sub(&owned_live, 1);
        free(o);
        return 0;
    }
    o->loaded = true;
    atomic_fetch_add(&owned_loads, 1);
    return corral_load_set(ld, o->value, strlen(o->value), 0) == CORRAL_OK
               ? 0
               : -1;
}

static corral_status_t
owned_fetch(corral_t *c, const char *key, const char *value,
            const corral_fetch_opts_t *o, corral_item_t **it)
{
    struct owned *u = calloc(1, sizeof(*u));
    CU_ASSERT_FATAL(u != NULL);
    u->value = value;
    atomic_fetch_add(&owned_live, 1);
    return corral_fetch(c, key, key != NULL ? strlen(key) : 0, owned_loader,
                        u, o, it, NULL);
}

/* CORRAL_FETCH_RELEASE: the ud is released exactly once on every path: a
 * miss loaded inline, a fresh hit, a bad key, an inline refresh, and a
 * background refresh, whose ud is released only after the refresh ran
 * (on the refresh thread), and refreshes still queued when the cache is
 * destroyed. */
static void
test_fetch_release(void)
{
    corral_t *c = mk();
    corral_fetch_opts_t o = stale_opts(CORRAL_FETCH_RELEASE |
                                       CORRAL_FETCH_NO_EARLY);
    corral_item_t *it = NULL;
    struct timespec t0, t1;

    atomic_store(&owned_live, 0);
    atomic_store(&owned_released, 0);
    atomic_store(&owned_loads, 0);
    atomic_store(&owned_misuse, 0);

    /* a miss, loaded inline, then a fresh hit */
    CU_ASSERT(owned_fetch(c, "r", "v1", &o, &it) == CORRAL_OK);
    CU_ASSERT(it && value_is(it, "v1"));
    corral_item_release(it);
    CU_ASSERT(owned_fetch(c, "r", "v2", &o, &it) == CORRAL_OK);
    CU_ASSERT(it && value_is(it, "v1"));
    corral_item_release(it);
    CU_ASSERT_EQUAL(atomic_load(&owned_loads), 1);
    CU_ASSERT_EQUAL(atomic_load(&owned_released), 2);
    /* a bad key */
    CU_ASSERT(owned_fetch(c, NULL, "x", &o, &it) == CORRAL_EINVAL);
    CU_ASSERT_EQUAL(atomic_load(&owned_released), 3);
    /* stale: an inline refresh */
    advance(12);
    CU_ASSERT(owned_fetch(c, "r", "v3", &o, &it) == CORRAL_OK);
    CU_ASSERT(it && value_is(it, "v3"));
    corral_item_release(it);
    CU_ASSERT_EQUAL(atomic_load(&owned_loads), 2);
    CU_ASSERT_EQUAL(atomic_load(&owned_live), 0);

    /* stale again, 200 background fetches: one refresh is queued (the
     * others find it running or done, and serve the value they see) */
    o.options |= CORRAL_FETCH_BACKGROUND;
    advance(12);
    for (int i = 0; i < 200; i++) {
        CU_ASSERT(owned_fetch(c, "r", "v4", &o, &it) == CORRAL_OK);
        corral_item_release(it);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        clock_gettime(CLOCK_MONOTONIC, &t1);
    } while (atomic_load(&owned_live) != 0 && t1.tv_sec - t0.tv_sec < 30);
    CU_ASSERT_EQUAL(atomic_load(&owned_live), 0);
    CU_ASSERT_EQUAL(atomic_load(&owned_released), 4 + 200);
    CU_ASSERT_EQUAL(atomic_load(&owned_loads), 3);
    CU_ASSERT_EQUAL(atomic_load(&owned_misuse), 0);
    CU_ASSERT(owned_fetch(c, "r", "v5", &o, &it) == CORRAL_OK);
    CU_ASSERT(it && value_is(it, "v4"));
    corral_item_release(it);

    /* queued refreshes still run, and release, when the cache goes */
    advance(12);
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof(key), "q%d", i);
        o.options &= ~CORRAL_FETCH_BACKGROUND;
        CU_ASSERT(owned_fetch(c, key, "q", &o, &it) == CORRAL_OK);
        corral_item_release(it);
    }
    advance(12);
    o.options |= CORRAL_FETCH_BACKGROUND;
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof(key), "q%d", i);
        CU_ASSERT(owned_fetch(c, key, "q2", &o, &it) == CORRAL_OK);
        corral_item_release(it);
    }
    corral_destroy(c);
    CU_ASSERT_EQUAL(atomic_load(&owned_live), 0);
    CU_ASSERT_EQUAL(atomic_load(&owned_misuse), 0);
}

/* A background refresh still queued when the cache is destroyed runs
 * before the writer goes: its loader may put. */
static atomic_bool destroying;
static _Atomic int refresh_put_status = -100;
static _Atomic int puts_written;

static int
count_writer(const corral_write_t *w, void *ud)
{
    (void)w;
    (void)ud;
    atomic_fetch_add(&puts_written, 1);
    return 0;
}

static int
putting_loader(corral_load_t *ld, const void *key, size_t nkey, void *ud)
{
    corral_t *c = ud;
    struct timespec pause = {0, 200 * 1000000};
    (void)key;
    (void)nkey;
    while (!atomic_load(&destroying)) {
        struct timespec tick = {0, 1000000};
        nanosleep(&tick, NULL);
    }
    nanosleep(&pause, NULL); /* corral_destroy is well under way */
    atomic_store(&refresh_put_status,
                 (int)corral_put(c, "other", 5, "p", 1, 0, 0, NULL));
    return corral_load_set(ld, "new", 3, 0) == CORRAL_OK ? 0 : -1;
}

static void
test_refresh_puts_during_destroy(void)
{
    corral_t *c = mk();
    struct fixed f = {0};
    corral_fetch_opts_t o =
        stale_opts(CORRAL_FETCH_BACKGROUND | CORRAL_FETCH_NO_EARLY);
    corral_item_t *it = NULL;

    atomic_store(&destroying, false);
    atomic_store(&puts_written, 0);
    CU_ASSERT(corral_use_write_through(c, count_writer, NULL) == CORRAL_OK);
    load_then_age(c, &f, "old", &o, 12);
    CU_ASSERT(corral_fetch(c, "k", 1, putting_loader, c, &o, &it, NULL) ==
              CORRAL_OK);
    CU_ASSERT(it && value_is(it, "old"));
    corral_item_release(it);
    atomic_store(&destroying, true);
    corral_destroy(c);
    CU_ASSERT_EQUAL(atomic_load(&refresh_put_status), CORRAL_OK);
    CU_ASSERT_EQUAL(atomic_load(&puts_written), 1);
}

/*
 * XFetch: refresh early with probability exp(-gap / (delta * beta)).  A
 * load that took 5 s of clock time, 1 s before expiry: each fetch refreshes
 * with probability exp(-0.2) = 0.82.  1,000 s before expiry: exp(-200).
 */
static void
test_early_refresh(void)
{
    corral_t *c = mk();
    struct fixed f = {0};
    corral_fetch_opts_t o = {0};
    corral_item_t *it = NULL;
    int early;

    o.ttl = 2000;
    f.value = "v";
    f.takes = 5;
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, &o, &it, NULL) ==
              CORRAL_OK);
    corral_item_release(it);
    f.takes = 0;
    /* far from expiry: never */
    for (int i = 0; i < 200; i++) {
        corral_fetch(c, "k", 1, fixed_loader, &f, &o, &it, NULL);
        corral_item_release(it);
    }
    CU_ASSERT_EQUAL(STAT(c, early_refreshes), 0);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 1);
    /* 1 s before expiry, with early refresh turned off: never */
    advance(1999 - 5);
    o.options = CORRAL_FETCH_NO_EARLY;
    for (int i = 0; i < 50; i++) {
        corral_fetch(c, "k", 1, fixed_loader, &f, &o, &it, NULL);
        corral_item_release(it);
    }
    CU_ASSERT_EQUAL(STAT(c, early_refreshes), 0);
    /* and with it on: the first few fetches refresh (each refresh pushes
     * expiry 2000 s away again, and its load took no time) */
    o.options = 0;
    for (int i = 0; i < 50; i++) {
        corral_fetch(c, "k", 1, fixed_loader, &f, &o, &it, NULL);
        corral_item_release(it);
    }
    early = (int)STAT(c, early_refreshes);
    CU_ASSERT(early >= 1);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 1 + early);
    corral_destroy(c);
}

static void
test_stale_if_error(void)
{
    corral_t *c = mk();
    struct fixed f = {0};
    corral_fetch_opts_t o = {0};
    corral_item_t *it = NULL;

    o.ttl = 10;
    o.stale_ttl = 5;
    o.stale_if_error = 60;
    o.options = CORRAL_FETCH_NO_EARLY;
    f.value = "good";
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, &o, &it, NULL) ==
              CORRAL_OK);
    corral_item_release(it);
    advance(12);
    f.error = 5;
    /* the refresh fails: the stale value is still the answer */
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, &o, &it, NULL) ==
              CORRAL_OK);
    CU_ASSERT(it && value_is(it, "good"));
    corral_item_release(it);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 2);
    /* within the backoff: no new load, still stale */
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, &o, &it, NULL) ==
              CORRAL_OK);
    corral_item_release(it);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 2);
    /* past the normal stale window (15 s) but inside stale-if-error */
    advance(20);
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, &o, &it, NULL) ==
              CORRAL_OK);
    CU_ASSERT(it && value_is(it, "good"));
    corral_item_release(it);
    /* and not beyond it */
    advance(60);
    CU_ASSERT(corral_fetch(c, "k", 1, fixed_loader, &f, &o, &it, NULL) ==
              CORRAL_ELOAD);
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Leases: deterministic interleavings                                    */

enum change { CH_SET, CH_DELETE, CH_TAG, CH_PREFIX, CH_FLUSH, CH_NONE };

/* A load of "user:1" with tag T, and a change while it runs.  tag_late:
 * the loader attaches its tag after the change (as a loader that reads
 * the backend first would), so T may have no record when the change
 * comes; held_elsewhere: another item holds T until just after the
 * change, so T's record goes away between the change and the attach. */
static void
lease_case_ex(enum change ch, bool tag_late, bool held_elsewhere)
{
    corral_t *c = mk();
    struct gate g;
    struct fetcher fe;
    pthread_t th;
    corral_item_t *it = NULL;

    gate_init(&g, "loaded");
    g.tag = "T";
    g.tag_late = tag_late;
    if (held_elsewhere) {
        const char *t = "T";
        corral_store_opts_t so = {0};
        so.tags = &t;
        so.ntags = 1;
        CU_ASSERT(corral_store(c, "other", 5, "o", 1, &so, NULL) ==
                  CORRAL_OK);
    }
    memset(&fe, 0, sizeof(fe));
    fe.c = c;
    fe.key = "user:1";
    fe.g = &g;
    fe.o.ttl = 100;
    /* 1. the load starts and reads the backend */
    pthread_create(&th, NULL, fetcher_main, &fe);
    gate_wait_entered(&g);
    /* 2. the key changes while the load runs */
    switch (ch) {
    case CH_SET:
        CU_ASSERT(corral_set(c, "user:1", 6, "newer", 5, 0, 0) == CORRAL_OK);
        break;
    case CH_DELETE:
        corral_delete(c, "user:1", 6);
        break;
    case CH_TAG:
        corral_invalidate_tag(c, "T");
        break;
    case CH_PREFIX:
        corral_invalidate_prefix(c, "user:", 5);
        break;
    case CH_FLUSH:
        corral_flush(c, 0);
        break;
    case CH_NONE:
        break;
    }
    if (held_elsewhere) {
        corral_delete(c, "other", 5);
    }
    /* 3. the load finishes */
    gate_open(&g);
    pthread_join(th, NULL);
    /* the caller gets what it loaded ... */
    CU_ASSERT_EQUAL(fe.st, CORRAL_OK);
    CU_ASSERT_STRING_EQUAL(fe.got, "loaded");
    /* ... but the cache keeps the newer state */
    if (ch == CH_NONE) {
        CU_ASSERT(corral_get(c, "user:1", 6, &it) == CORRAL_OK);
        CU_ASSERT(it && value_is(it, "loaded"));
        CU_ASSERT_EQUAL(STAT(c, lease_rejects), 0);
    } else if (ch == CH_SET) {
        CU_ASSERT(corral_get(c, "user:1", 6, &it) == CORRAL_OK);
        CU_ASSERT(it && value_is(it, "newer"));
        CU_ASSERT_EQUAL(STAT(c, lease_rejects), 1);
    } else {
        CU_ASSERT(corral_get(c, "user:1", 6, &it) == CORRAL_ENOTFOUND);
        CU_ASSERT_EQUAL(STAT(c, lease_rejects), 1);
    }
    corral_item_release(it);
    corral_destroy(c);
}

static void
lease_case(enum change ch)
{
    lease_case_ex(ch, false, false);
}

static void
test_lease_no_change(void)
{
    lease_case(CH_NONE);
    lease_case_ex(CH_NONE, true, false);
    lease_case_ex(CH_NONE, true, true);
}

static void
test_lease_set(void)
{
    lease_case(CH_SET);
}

static void
test_lease_delete(void)
{
    lease_case(CH_DELETE);
}

static void
test_lease_tag(void)
{
    lease_case(CH_TAG);
}

/* The tag is invalidated while no record of it exists, and the loader
 * attaches it afterwards: still a change during the load. */
static void
test_lease_tag_without_record(void)
{
    lease_case_ex(CH_TAG, true, false);
}

/* The tag's record, invalidated during the load, goes with the last item
 * holding it before the loader attaches the tag. */
static void
test_lease_tag_record_gone(void)
{
    lease_case_ex(CH_TAG, true, true);
}

static void
test_lease_prefix(void)
{
    lease_case(CH_PREFIX);
}

static void
test_lease_flush(void)
{
    lease_case(CH_FLUSH);
}

/* A caller that arrives after the key changed while a load runs does not
 * take that load's (older) result: it waits for it, then loads itself.
 * Without a change it joins the load as usual. */
static void
join_after_change(enum change ch)
{
    corral_t *c = mk();
    struct gate g, g2;
    struct fetcher fe, fe2;
    pthread_t th, th2;
    uint64_t waits;

    gate_init(&g, "loaded");
    gate_init(&g2, "after");
    gate_open(&g2);
    memset(&fe, 0, sizeof(fe));
    fe.c = c;
    fe.key = "user:1";
    fe.g = &g;
    fe.o.ttl = 100;
    fe2 = fe;
    fe2.g = &g2;
    pthread_create(&th, NULL, fetcher_main, &fe);
    gate_wait_entered(&g);
    if (ch == CH_DELETE) {
        corral_delete(c, "user:1", 6);
    } else if (ch == CH_FLUSH) {
        corral_flush(c, 0);
    }
    waits = STAT(c, load_waits);
    pthread_create(&th2, NULL, fetcher_main, &fe2);
    while (STAT(c, load_waits) == waits) {
        struct timespec tick = {0, 1000000};
        nanosleep(&tick, NULL); /* until the second caller waits */
    }
    gate_open(&g);
    pthread_join(th, NULL);
    pthread_join(th2, NULL);
    CU_ASSERT_EQUAL(fe.st, CORRAL_OK);
    CU_ASSERT_STRING_EQUAL(fe.got, "loaded");
    CU_ASSERT_EQUAL(fe2.st, CORRAL_OK);
    if (ch == CH_NONE) {
        CU_ASSERT_STRING_EQUAL(fe2.got, "loaded");
        CU_ASSERT_EQUAL(atomic_load(&g2.calls), 0);
    } else {
        CU_ASSERT_STRING_EQUAL(fe2.got, "after");
        CU_ASSERT_EQUAL(atomic_load(&g2.calls), 1);
    }
    corral_destroy(c);
}

static void
test_join_after_change(void)
{
    join_after_change(CH_NONE);
    join_after_change(CH_DELETE);
    join_after_change(CH_FLUSH);
}

/* A waiter gives up after wait_ms; the load still completes for others. */
static void
test_wait_timeout(void)
{
    corral_t *c = mk();
    struct gate g;
    struct fetcher leader;
    pthread_t th;
    corral_fetch_opts_t o = {0};
    corral_item_t *it = NULL;

    gate_init(&g, "slow");
    memset(&leader, 0, sizeof(leader));
    leader.c = c;
    leader.key = "k";
    leader.g = &g;
    pthread_create(&th, NULL, fetcher_main, &leader);
    gate_wait_entered(&g);
    o.wait_ms = 50;
    CU_ASSERT(corral_fetch(c, "k", 1, gate_loader, &g, &o, &it, NULL) ==
              CORRAL_ETIMEDOUT);
    o.wait_ms = -1;
    CU_ASSERT(corral_fetch(c, "k", 1, gate_loader, &g, &o, &it, NULL) ==
              CORRAL_ETIMEDOUT);
    CU_ASSERT_EQUAL(STAT(c, load_timeouts), 2);
    gate_open(&g);
    pthread_join(th, NULL);
    CU_ASSERT_STRING_EQUAL(leader.got, "slow");
    CU_ASSERT_EQUAL(atomic_load(&g.calls), 1);
    corral_destroy(c);
}

static void
test_fetch_args(void)
{
    corral_t *c = mk();
    struct fixed f = {0};
    corral_item_t *it = NULL;
    char big[300];

    memset(big, 'k', sizeof(big));
    CU_ASSERT(corral_fetch(c, "k", 1, NULL, NULL, NULL, &it, NULL) ==
              CORRAL_EINVAL);
    CU_ASSERT(corral_fetch(c, "", 0, fixed_loader, &f, NULL, &it, NULL) ==
              CORRAL_EINVAL);
    CU_ASSERT(corral_fetch(c, big, sizeof(big), fixed_loader, &f, NULL, &it,
                           NULL) == CORRAL_EINVAL);
    CU_ASSERT_EQUAL(atomic_load(&f.calls), 0);
    corral_destroy(c);
}

static const struct cu_test flight_tests[] = {
    CU_TEST(test_single_flight_value),
    CU_TEST(test_single_flight_error),
    CU_TEST(test_wait_timeout),
    CU_TEST(test_fetch_args),
    CU_END,
};

static const struct cu_test failure_tests[] = {
    CU_TEST(test_negative_cache),
    CU_TEST(test_error_backoff),
    CU_TEST(test_many_remembered_errors),
    CU_TEST(test_breaker),
    CU_END,
};

static const struct cu_test fresh_tests[] = {
    CU_TEST(test_stale_while_revalidate),
    CU_TEST(test_load_ttl),
    CU_TEST(test_refresh_cas),
    CU_TEST(test_background_refresh),
    CU_TEST(test_fetch_release),
    CU_TEST(test_refresh_puts_during_destroy),
    CU_TEST(test_early_refresh),
    CU_TEST(test_stale_if_error),
    CU_END,
};

static const struct cu_test lease_tests[] = {
    CU_TEST(test_lease_no_change),
    CU_TEST(test_lease_set),
    CU_TEST(test_lease_delete),
    CU_TEST(test_lease_tag),
    CU_TEST(test_lease_tag_without_record),
    CU_TEST(test_lease_tag_record_gone),
    CU_TEST(test_join_after_change),
    CU_TEST(test_lease_prefix),
    CU_TEST(test_lease_flush),
    CU_END,
};

CU_MAIN({"single flight", flight_tests, NULL, NULL},
        {"failures", failure_tests, NULL, NULL},
        {"freshness", fresh_tests, NULL, NULL},
        {"leases", lease_tests, NULL, NULL})
