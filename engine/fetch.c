/*
 * fetch.c - corral_fetch(): read-through loading with single flight,
 * stale-while-revalidate, XFetch early refresh, negative caching, error
 * backoff, the circuit breaker, leases and background refreshes.  The
 * data structures are described in fetch.h.
 *
 * A fetch:
 *   1. Looks the key up under the shared shard lock.  A fresh hit returns
 *      at once.  A negative entry answers CORRAL_ENOTFOUND.  A hit that is
 *      stale (past its fresh time, before its hard expiry) or that XFetch
 *      picks for an early refresh goes to 2 with the current value pinned.
 *   2. Refresh: under the exclusive lock, if no load of the key is running
 *      and neither its backoff nor the breaker forbids it, the caller
 *      starts one (in its own thread, or queued for the refresh threads);
 *      everyone else returns the current value at once.
 *   3. Miss: under the exclusive lock, join the running load of the key
 *      and wait for its attempt, or answer the key's remembered error, or
 *      lead a new load.
 * The leader runs the loader with no lock held, then takes the exclusive
 * lock, stores the result if the lease holds, records a failure's
 * backoff, publishes the result in the attempt and wakes the waiters.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"

#define DEFAULT_WAIT_MS 10000
#define DEFAULT_ERROR_MS 1000

/* Options with the defaults applied. */
struct fopts {
    unsigned options;
    int64_t ttl;
    int64_t stale_ttl;
    int64_t wait_ms;
    int64_t error_ms;
    int64_t stale_if_error;
    double beta;
};

struct corral_load {
    struct corral *c;
    char *value;
    size_t nvalue;
    uint32_t flags;
    bool has_value;
    bool absent;
    bool ttl_set;
    int64_t ttl;
    int64_t stale_ttl;
    int64_t absent_ttl;
    corral_status_t failed;      /* a corral_load_set that failed */
    struct tag_rec *tags[CORRAL_TAGS_MAX];
    size_t ntags;
};

/* Everything a load needs, for the caller's thread or a refresh thread. */
struct leader {
    struct corral *c;
    struct shard *s;
    uint64_t h;
    const void *key;
    size_t nkey;
    struct keyrec *kr;
    struct attempt *at;
    bool trial;                  /* the breaker's half-open trial */
    bool queued;                 /* handed to a refresh job */
    corral_loader_fn loader;
    void *ud;
    struct fopts o;
};

struct refresh_job {
    struct refresh_job *next;
    struct leader l;
    char key[CORRAL_KEY_MAX];
};

enum freshness { FRESH, EARLY, STALE };

/* ---------------------------------------------------------------------- */
/* Time and randomness                                                    */

static uint64_t
now_ms(const struct corral *c)
{
    return cache_now_ns(c) / 1000000u;
}

double
rand_unit(void)
{
    static _Thread_local uint64_t x;
    if (x == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        x = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)&x ^
            0x9e3779b97f4a7c15u;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return ((double)((x * 0x2545f4914f6cdd1du) >> 11) + 1.0) /
           9007199254740992.0;
}

/* Backoff after n consecutive failures: min * 2^(n-1) capped at max, then
 * "equal jitter": half of it fixed, half random. */
static uint64_t
backoff_ms(const struct corral *c, uint32_t n)
{
    uint64_t lo = (uint64_t)(c->cfg.backoff_min_ms > 0 ? c->cfg.backoff_min_ms
                                                       : 1);
    uint64_t hi = (uint64_t)(c->cfg.backoff_max_ms > (int64_t)lo
                                 ? c->cfg.backoff_max_ms
                                 : (int64_t)lo);
    uint64_t d = lo;
    while (--n > 0 && d < hi) {
        d *= 2;
    }
    if (d > hi) {
        d = hi;
    }
    return d / 2 + (uint64_t)(rand_unit() * (double)(d - d / 2));
}

/* ---------------------------------------------------------------------- */
/* Attempts and key records                                               */

static struct attempt *
attempt_new(void)
{
    struct attempt *a = calloc(1, sizeof(*a));
    pthread_condattr_t attr;

    if (a == NULL) {
        return NULL;
    }
    atomic_init(&a->refs, 1);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (pthread_cond_init(&a->cond, &attr) != 0) {
        pthread_condattr_destroy(&attr);
        free(a);
        return NULL;
    }
    pthread_condattr_destroy(&attr);
    return a;
}

static void
attempt_unref(struct attempt *a)
{
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1) {
        if (a->item != NULL) {
            pin_unref(a->item);
        }
        pthread_cond_destroy(&a->cond);
        free(a);
    }
}

static struct keyrec **
keyrec_bucket(const struct keyrecs *t, uint64_t h)
{
    return &t->buckets[(h >> 20) % t->nbuckets];
}

static struct keyrec *
keyrec_find(const struct keyrecs *t, uint64_t h, const void *key,
            size_t nkey)
{
    if (t->count == 0) {
        return NULL;
    }
    for (struct keyrec *k = *keyrec_bucket(t, h); k != NULL; k = k->hnext) {
        if (k->h == h && k->nkey == nkey && memcmp(k->key, key, nkey) == 0) {
            return k;
        }
    }
    return NULL;
}

static void
keyrec_remove(struct keyrecs *t, struct keyrec *kr)
{
    struct keyrec **pp = keyrec_bucket(t, kr->h);
    while (*pp != kr) {
        pp = &(*pp)->hnext;
    }
    *pp = kr->hnext;
    t->count--;
    if (kr->state == KEYREC_FAILED) {
        t->failed--;
    }
    free(kr);
}

/* Drop failure records of a bucket whose remembered error and backoff are
 * both over: nothing depends on them any more. */
static void
keyrec_prune(struct keyrecs *t, uint64_t h, uint64_t now)
{
    struct keyrec **pp = keyrec_bucket(t, h);
    while (*pp != NULL) {
        struct keyrec *k = *pp;
        if (k->state == KEYREC_FAILED && now >= k->error_until_ms &&
            now >= k->retry_at_ms) {
            *pp = k->hnext;
            t->count--;
            t->failed--;
            free(k);
        } else {
            pp = &k->hnext;
        }
    }
}

static struct keyrec *
keyrec_add(struct keyrecs *t, uint64_t h, const void *key, size_t nkey,
           uint64_t now)
{
    struct keyrec *kr;

    if (t->count >= t->nbuckets) {
        size_t n = t->nbuckets ? t->nbuckets * 2 : 16;
        struct keyrec **b = calloc(n, sizeof(*b));
        if (b != NULL) {
            for (size_t i = 0; i < t->nbuckets; i++) {
                struct keyrec *k = t->buckets[i];
                while (k != NULL) {
                    struct keyrec *next = k->hnext;
                    k->hnext = b[(k->h >> 20) % n];
                    b[(k->h >> 20) % n] = k;
                    k = next;
                }
            }
            free(t->buckets);
            t->buckets = b;
            t->nbuckets = n;
        } else if (t->nbuckets == 0) {
            return NULL;
        }
    }
    keyrec_prune(t, h, now);
    kr = calloc(1, sizeof(*kr) + nkey);
    if (kr == NULL) {
        return NULL;
    }
    kr->h = h;
    kr->nkey = (uint8_t)nkey;
    memcpy(kr->key, key, nkey);
    kr->hnext = *keyrec_bucket(t, h);
    *keyrec_bucket(t, h) = kr;
    t->count++;
    return kr;
}

void
keyrecs_break(struct keyrecs *t, uint64_t h, const void *key, size_t nkey)
{
    struct keyrec *kr = keyrec_find(t, h, key, nkey);
    if (kr != NULL && kr->state == KEYREC_LOADING) {
        kr->broken = true;
    }
}

void
keyrecs_deinit(struct keyrecs *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct keyrec *k = t->buckets[i];
        while (k != NULL) {
            struct keyrec *next = k->hnext;
            free(k);
            k = next;
        }
    }
    free(t->buckets);
    memset(t, 0, sizeof(*t));
}

/* Make kr (or a new record) the lease of a load starting now. */
static struct keyrec *
start_load(struct corral *c, struct shard *s, uint64_t h, const void *key,
           size_t nkey, struct keyrec *kr, uint64_t now)
{
    struct attempt *at = attempt_new();

    if (at == NULL) {
        return NULL;
    }
    if (kr == NULL) {
        kr = keyrec_add(&s->keyrecs, h, key, nkey, now);
        if (kr == NULL) {
            attempt_unref(at);
            return NULL;
        }
    } else if (kr->state == KEYREC_FAILED) {
        s->keyrecs.failed--;
        if (now > kr->retry_at_ms + (uint64_t)c->cfg.backoff_max_ms) {
            kr->failures = 0; /* backoff starts over after a long pause */
        }
    }
    kr->state = KEYREC_LOADING;
    kr->cur = at;
    kr->broken = false;
    kr->inval_seq = s->inval_seq;
    kr->flush_gen = atomic_load_explicit(&c->fetch.flush_gen,
                                         memory_order_acquire);
    kr->tag_epoch = tags_epoch(&c->tags);
    return kr;
}

/* ---------------------------------------------------------------------- */
/* Circuit breaker                                                        */

static bool
breaker_admit(struct corral *c, uint64_t now, bool *out_trial)
{
    struct breaker *b = &c->fetch.breaker;
    uint64_t until;
    int expected = 0;

    *out_trial = false;
    if (c->cfg.breaker_failures == 0) {
        return true;
    }
    until = atomic_load_explicit(&b->open_until_ms, memory_order_acquire);
    if (until == 0) {
        return true;
    }
    if (now < until) {
        return false;
    }
    /* half-open: one trial load decides */
    if (atomic_compare_exchange_strong(&b->trial, &expected, 1)) {
        *out_trial = true;
        return true;
    }
    return false;
}

static void
breaker_report(struct corral *c, struct shard *s, bool ok, bool trial,
               uint64_t now)
{
    struct breaker *b = &c->fetch.breaker;
    unsigned n = c->cfg.breaker_failures;
    uint64_t closed = 0;

    if (n == 0) {
        return;
    }
    if (ok) {
        atomic_store(&b->failures, 0);
        atomic_store(&b->open_until_ms, 0);
        atomic_store(&b->trial, 0);
        return;
    }
    if (trial) {
        atomic_store(&b->open_until_ms, now + (uint64_t)c->cfg.breaker_open_ms);
        atomic_store(&b->trial, 0);
        COUNT(s, breaker_opens);
        return;
    }
    if (atomic_fetch_add(&b->failures, 1) + 1 >= n &&
        atomic_compare_exchange_strong(&b->open_until_ms, &closed,
                                       now + (uint64_t)c->cfg.breaker_open_ms)) {
        COUNT(s, breaker_opens);
    }
}

/* ---------------------------------------------------------------------- */
/* The loader's handle                                                    */

CORRAL_API corral_status_t
corral_load_set(corral_load_t *ld, const void *value, size_t nvalue,
                uint32_t flags)
{
    char *v;

    assert(ld != NULL);
    if (value == NULL && nvalue > 0) {
        return CORRAL_EINVAL;
    }
    if (nvalue > ld->c->cfg.max_item_size) {
        ld->failed = CORRAL_ETOOBIG;
        return CORRAL_ETOOBIG;
    }
    v = malloc(nvalue ? nvalue : 1);
    if (v == NULL) {
        ld->failed = CORRAL_ENOMEM;
        return CORRAL_ENOMEM;
    }
    if (nvalue > 0) {
        memcpy(v, value, nvalue);
    }
    free(ld->value);
    ld->value = v;
    ld->nvalue = nvalue;
    ld->flags = flags;
    ld->has_value = true;
    ld->absent = false;
    ld->failed = CORRAL_OK;
    return CORRAL_OK;
}

CORRAL_API void
corral_load_ttl(corral_load_t *ld, int64_t ttl, int64_t stale_ttl)
{
    assert(ld != NULL);
    ld->ttl = ttl;
    ld->stale_ttl = stale_ttl < 0 ? 0 : stale_ttl;
    ld->ttl_set = true;
}

static void
load_drop_tags(corral_load_t *ld)
{
    for (size_t i = 0; i < ld->ntags; i++) {
        tag_release(ld->tags[i]);
    }
    ld->ntags = 0;
}

CORRAL_API corral_status_t
corral_load_tags(corral_load_t *ld, const char *const *tags, size_t ntags)
{
    assert(ld != NULL);
    if (ntags > CORRAL_TAGS_MAX || (ntags > 0 && tags == NULL)) {
        return CORRAL_EINVAL;
    }
    for (size_t i = 0; i < ntags; i++) {
        size_t len = tags[i] ? strnlen(tags[i], CORRAL_TAG_MAX + 1) : 0;
        if (len == 0 || len > CORRAL_TAG_MAX) {
            return CORRAL_EINVAL;
        }
    }
    load_drop_tags(ld);
    for (size_t i = 0; i < ntags; i++) {
        struct tag_rec *r = tag_acquire(&ld->c->tags, tags[i],
                                        strlen(tags[i]));
        if (r == NULL) {
            load_drop_tags(ld);
            return CORRAL_ENOMEM;
        }
        ld->tags[ld->ntags++] = r;
    }
    return CORRAL_OK;
}

CORRAL_API void
corral_load_absent(corral_load_t *ld, int64_t ttl)
{
    assert(ld != NULL);
    ld->absent = true;
    ld->absent_ttl = ttl;
    ld->has_value = false;
}

/* ---------------------------------------------------------------------- */
/* Leading a load                                                         */

/* Whether a prefix invalidation covering the key happened since the load
 * began (conservatively yes once a newer rule has been retired). */
static bool
prefix_changed(const struct shard *s, const struct keyrec *kr,
               const void *key, size_t nkey)
{
    if (s->inval_seq == kr->inval_seq) {
        return false;
    }
    if (s->retired_seq > kr->inval_seq) {
        return true;
    }
    for (unsigned i = 0; i < s->nrules; i++) {
        const struct prefix_rule *r = &s->rules[i];
        if (r->seq > kr->inval_seq && nkey >= r->len &&
            memcmp(key, r->prefix, r->len) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether the load of kr still holds its lease: no write or delete of
 * the key (kr->broken), flush or prefix invalidation covering it since it
 * began (tags are checked against the loaded item).  Shard lock held. */
static bool
lease_intact(struct corral *c, const struct shard *s,
             const struct keyrec *kr, const void *key, size_t nkey)
{
    return !kr->broken &&
           atomic_load(&c->fetch.flush_gen) == kr->flush_gen &&
           !prefix_changed(s, kr, key, nkey);
}

/* Build the item a successful load produced (no lock held). */
static corral_status_t
build_item(const struct leader *L, corral_load_t *ld, uint64_t now_ns,
           uint32_t delta_ms, item_t **out)
{
    struct corral *c = L->c;
    item_t *it;
    int64_t ttl = ld->ttl_set ? ld->ttl : L->o.ttl;
    int64_t stale = ld->ttl_set ? ld->stale_ttl : L->o.stale_ttl;
    uint32_t now = (uint32_t)(now_ns / 1000000000u);
    uint32_t fresh_until, hard;
    char *fb;

    *out = NULL;
    if (ld->absent) {
        it = item_create_ext(&c->mem, L->key, L->nkey, 0, 0, 0,
                             EXT_NEGATIVE, NULL);
        if (it == NULL) {
            return CORRAL_ENOMEM;
        }
        atomic_store(&it->exptime, exptime_abs(ld->absent_ttl, now));
        atomic_store(&it->atime, now);
        *out = it;
        return CORRAL_OK;
    }
    if (item_size_ext(L->nkey, ld->nvalue, ld->flags, ld->ntags, EXT_FETCH) >
        c->cfg.max_item_size) {
        return CORRAL_ETOOBIG;
    }
    it = item_create_ext(&c->mem, L->key, L->nkey, ld->nvalue, ld->flags,
                         ld->ntags, EXT_FETCH, NULL);
    if (it == NULL) {
        return CORRAL_ENOMEM;
    }
    if (ld->nvalue > 0) {
        memcpy(item_value(it), ld->value, ld->nvalue);
    }
    for (size_t i = 0; i < ld->ntags; i++) {
        item_set_tag(it, i, ld->tags[i]); /* the load's references move */
    }
    ld->ntags = 0;
    fresh_until = exptime_abs(ttl, now);
    hard = fresh_until;
    if (fresh_until > 1 && stale > 0) {
        int64_t h = (int64_t)fresh_until + stale;
        hard = h > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)h;
        if (ttl > 0 && ttl <= CORRAL_RELTIME_MAX &&
            now_ns % 1000000000u != 0) {
            /* Fresh for ttl seconds from now, not from the start of this
             * second (the stale window has room for the difference): a
             * value refreshed in the last second of a short TTL is
             * otherwise due again at once.  The item's expiry, which
             * callers see, stays memcached's. */
            fresh_until++;
        }
    }
    atomic_store(&it->exptime, hard);
    atomic_store(&it->atime, now);
    fb = item_fetch_block(it);
    memcpy(fb, &fresh_until, 4);
    memcpy(fb + 4, &delta_ms, 4);
    *out = it;
    return CORRAL_OK;
}

/* After a failed refresh, keep a stale value servable until
 * first failure + stale_if_error. */
static void
extend_stale(struct corral *c, struct shard *s, const struct leader *L,
             uint32_t first_fail, uint32_t now)
{
    item_t *it = table_find(&s->table, L->h, L->key, L->nkey);
    int64_t until;

    if (it == NULL || item_state(c, s, it, now) != ITEM_LIVE ||
        item_fetch_block(it) == NULL || L->o.stale_if_error <= 0) {
        return;
    }
    until = (int64_t)first_fail + L->o.stale_if_error;
    if (item_exptime(it) != 0 && until > (int64_t)item_exptime(it)) {
        atomic_store_explicit(&it->exptime,
                              until > (int64_t)UINT32_MAX ? UINT32_MAX
                                                          : (uint32_t)until,
                              memory_order_relaxed);
    }
}

/* Run the loader, store and publish.  On return L->at holds the result. */
static void
lead(struct leader *L)
{
    struct corral *c = L->c;
    struct shard *s = L->s;
    struct keyrec *kr = L->kr;
    struct attempt *at = L->at;
    corral_load_t ld;
    uint64_t t0, t1, ms;
    uint32_t now, delta_ms;
    item_t *it = NULL;
    corral_status_t st = CORRAL_OK;
    int err;

    memset(&ld, 0, sizeof(ld));
    ld.c = c;
    t0 = cache_now_precise_ns(c);
    err = L->loader(&ld, L->key, L->nkey, L->ud);
    t1 = cache_now_precise_ns(c);
    COUNT(s, loads);
    ms = t1 > t0 ? (t1 - t0) / 1000000u : 0;
    delta_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    now = (uint32_t)(t1 / 1000000000u);
    if (err == 0 && ld.failed != CORRAL_OK) {
        st = ld.failed;
    } else if (err == 0) {
        st = build_item(L, &ld, t1, delta_ms, &it);
    }
    load_drop_tags(&ld);
    free(ld.value);

    shard_wrlock(s);
    if (err == 0) {
        bool stored = false;
        if (it != NULL) {
            bool lease = lease_intact(c, s, kr, L->key, L->nkey);
            if (item_ntags(it) > 0) {
                /* stamped with the epoch of the load's start: a tag
                 * invalidated since then already covers it */
                item_set_tag_epoch(it, kr->tag_epoch);
                lease = lease && !item_tags_invalid(it);
            }
            if (lease) {
                item_t *old = shard_find_live(c, s, L->h, L->key, L->nkey,
                                              now, NULL);
                if (old != NULL) {
                    item_ref(old);
                }
                item_t *linked = it;
                item_ref(it); /* one reference for the cache, one kept */
                stored = cache_install(c, s, L->h, &linked, old, NULL) ==
                         CORRAL_OK;
                if (!stored) {
                    item_unref(it); /* never linked: ours is kept */
                } else if (linked != it && linked == old) {
                    /* copied into old, which is now the value (with its
                     * CAS): it keeps our reference; ours is not needed */
                    item_free(it);
                    it = linked;
                    old = NULL;
                } else if (linked != it) {
                    /* linked as a copy: ours moves to the copy */
                    item_ref(linked);
                    item_free(it);
                    it = linked;
                }
                if (old != NULL) {
                    shard_unref(s, old);
                }
            } else {
                COUNT(s, lease_rejects);
            }
            st = item_negative(it) ? CORRAL_ENOTFOUND : CORRAL_OK;
        }
        at->status = st;
        at->item = it != NULL && !item_negative(it) ? it : NULL;
        if (it != NULL && item_negative(it)) {
            shard_unref(s, it);
        }
        keyrec_remove(&s->keyrecs, kr);
        breaker_report(c, s, true, L->trial, t1 / 1000000u);
        (void)stored;
    } else {
        uint64_t tms = t1 / 1000000u;
        uint64_t back;
        COUNT(s, load_errors);
        kr->failures++;
        if (kr->first_fail_s == 0) {
            kr->first_fail_s = now; /* kept until a load succeeds */
        }
        back = backoff_ms(c, kr->failures);
        kr->retry_at_ms = tms + back;
        kr->error_until_ms = tms + ((uint64_t)L->o.error_ms > back
                                        ? (uint64_t)L->o.error_ms
                                        : back);
        kr->last_error = err;
        kr->cur = NULL;
        extend_stale(c, s, L, kr->first_fail_s, now);
        at->status = CORRAL_ELOAD;
        at->error = err;
        if (s->keyrecs.failed >= KEYREC_FAILED_MAX) {
            keyrec_remove(&s->keyrecs, kr); /* too many to remember */
        } else {
            kr->state = KEYREC_FAILED;
            s->keyrecs.failed++;
        }
        breaker_report(c, s, false, L->trial, tms);
    }
    shard_unlock(s);
    cache_deliver(c);

    pthread_mutex_lock(&c->fetch.wait_lock);
    at->done = true;
    pthread_cond_broadcast(&at->cond);
    pthread_mutex_unlock(&c->fetch.wait_lock);
}

/* Hand a finished attempt's result to a caller. */
static corral_status_t
take_result(struct corral *c, struct attempt *at, corral_item_t **out_item,
            int *out_error)
{
    corral_status_t st = at->status;
    if (st == CORRAL_OK) {
        *out_item = pin_for_caller(c, at->item);
        if (*out_item == NULL) {
            st = CORRAL_ENOMEM;
        }
    } else if (st == CORRAL_ELOAD && out_error != NULL) {
        *out_error = at->error;
    }
    return st;
}

/* Wait for another caller's load. */
static corral_status_t
wait_for(struct corral *c, struct shard *s, struct attempt *at,
         const struct fopts *o, corral_item_t **out_item, int *out_error)
{
    struct timespec deadline;
    corral_status_t st;
    bool done;

    COUNT(s, load_waits);
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += o->wait_ms / 1000;
    deadline.tv_nsec += (o->wait_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->fetch.wait_lock);
    while (!at->done && o->wait_ms >= 0) {
        if (pthread_cond_timedwait(&at->cond, &c->fetch.wait_lock,
                                   &deadline) == ETIMEDOUT) {
            break;
        }
    }
    done = at->done;
    pthread_mutex_unlock(&c->fetch.wait_lock);
    if (!done) {
        COUNT(s, load_timeouts);
        attempt_unref(at);
        return CORRAL_ETIMEDOUT;
    }
    COUNT(s, stampedes_absorbed);
    st = take_result(c, at, out_item, out_error);
    attempt_unref(at);
    return st;
}

/* ---------------------------------------------------------------------- */
/* Background refreshes                                                   */

static void *
refresh_main(void *arg)
{
    struct refresh_pool *p = arg;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct refresh_job *j = p->head;
        if (j == NULL) {
            if (p->stop) {
                break;
            }
            pthread_cond_wait(&p->cond, &p->lock);
            continue;
        }
        p->head = j->next;
        if (p->head == NULL) {
            p->tail = NULL;
        }
        pthread_mutex_unlock(&p->lock);
        lead(&j->l);
        attempt_unref(j->l.at);
        if (j->l.o.options & CORRAL_FETCH_RELEASE) {
            j->l.loader(NULL, NULL, 0, j->l.ud);
        }
        free(j);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Queue a refresh; false if there is no pool to run it. */
static bool
refresh_submit(struct corral *c, const struct leader *L)
{
    struct refresh_pool *p = &c->fetch.pool;
    struct refresh_job *j;

    if (c->cfg.refresh_threads == 0 ||
        (j = malloc(sizeof(*j))) == NULL) {
        return false;
    }
    j->next = NULL;
    j->l = *L;
    memcpy(j->key, L->key, L->nkey);
    j->l.key = j->key;
    pthread_mutex_lock(&p->lock);
    if (!p->started && !p->stop) {
        p->threads = calloc(c->cfg.refresh_threads, sizeof(pthread_t));
        for (unsigned i = 0; p->threads && i < c->cfg.refresh_threads; i++) {
            if (pthread_create(&p->threads[i], NULL, refresh_main, p) != 0) {
                break;
            }
            p->nthreads++;
        }
        p->started = true;
    }
    if (p->nthreads == 0 || p->stop) {
        pthread_mutex_unlock(&p->lock);
        free(j);
        return false;
    }
    if (p->tail != NULL) {
        p->tail->next = j;
    } else {
        p->head = j;
    }
    p->tail = j;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return true;
}

bool
fetch_init(struct fetch_state *f)
{
    memset(f, 0, sizeof(*f));
    atomic_init(&f->breaker.failures, 0);
    atomic_init(&f->breaker.open_until_ms, 0);
    atomic_init(&f->breaker.trial, 0);
    atomic_init(&f->flush_gen, 0);
    if (pthread_mutex_init(&f->wait_lock, NULL) != 0) {
        return false;
    }
    if (pthread_mutex_init(&f->pool.lock, NULL) != 0) {
        pthread_mutex_destroy(&f->wait_lock);
        return false;
    }
    if (pthread_cond_init(&f->pool.cond, NULL) != 0) {
        pthread_mutex_destroy(&f->pool.lock);
        pthread_mutex_destroy(&f->wait_lock);
        return false;
    }
    return true;
}

void
fetch_stop(struct corral *c)
{
    struct refresh_pool *p = &c->fetch.pool;

    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++) {
        pthread_join(p->threads[i], NULL); /* they finish the queue first */
    }
    free(p->threads);
    p->threads = NULL;
    p->nthreads = 0;
}

void
fetch_deinit(struct corral *c)
{
    pthread_cond_destroy(&c->fetch.pool.cond);
    pthread_mutex_destroy(&c->fetch.pool.lock);
    pthread_mutex_destroy(&c->fetch.wait_lock);
}

/* ---------------------------------------------------------------------- */
/* corral_fetch                                                           */

static void
resolve(struct fopts *o, const corral_fetch_opts_t *in)
{
    memset(o, 0, sizeof(*o));
    if (in != NULL) {
        o->options = in->options;
        o->ttl = in->ttl;
        o->stale_ttl = in->stale_ttl > 0 ? in->stale_ttl : 0;
        o->wait_ms = in->wait_ms;
        o->error_ms = in->error_ms;
        o->stale_if_error = in->stale_if_error;
        o->beta = in->beta;
    }
    if (o->wait_ms == 0) {
        o->wait_ms = DEFAULT_WAIT_MS;
    }
    if (o->error_ms <= 0) {
        o->error_ms = DEFAULT_ERROR_MS;
    }
    if (o->stale_if_error <= 0) {
        o->stale_if_error = o->stale_ttl;
    }
    if (!(o->beta > 0)) {
        o->beta = 1.0;
    }
}

/*
 * Is a live item fresh, due for an early refresh, or stale?  Fresh until
 * its fetch metadata says (else its exptime); XFetch refreshes early when
 * now - delta * beta * ln(u) >= that time.
 */
static enum freshness
freshness(const item_t *it, const struct fopts *o, uint64_t now_ns)
{
    const char *fb = item_fetch_block(it);
    uint32_t fresh_until = item_exptime(it);
    uint32_t delta_ms = 0;
    double gap_ms;

    if (fb != NULL) {
        memcpy(&fresh_until, fb, 4);
        memcpy(&delta_ms, fb + 4, 4);
    }
    if (fresh_until == 0) {
        return FRESH;
    }
    if (now_ns / 1000000000u >= fresh_until) {
        return STALE;
    }
    if (delta_ms == 0 || (o->options & CORRAL_FETCH_NO_EARLY)) {
        return FRESH;
    }
    gap_ms = (double)delta_ms * o->beta * -log(rand_unit());
    if ((double)(now_ns / 1000000u) + gap_ms >= (double)fresh_until * 1e3) {
        return EARLY;
    }
    return FRESH;
}

/* A live value that is stale or due early: refresh it unless someone is,
 * and answer with it (or with the new value after an inline refresh). */
static corral_status_t
refresh(struct leader *L, corral_item_t *cur, enum freshness why,
        corral_item_t **out_item)
{
    struct corral *c = L->c;
    struct shard *s = L->s;
    uint64_t now = now_ms(c);
    struct keyrec *kr;
    bool started = false;

    shard_wrlock(s);
    kr = keyrec_find(&s->keyrecs, L->h, L->key, L->nkey);
    if ((kr == NULL || (kr->state == KEYREC_FAILED &&
                        now >= kr->retry_at_ms)) &&
        breaker_admit(c, now, &L->trial)) {
        kr = start_load(c, s, L->h, L->key, L->nkey, kr, now);
        if (kr != NULL) {
            L->kr = kr;
            L->at = kr->cur;
            started = true;
        } else if (L->trial) {
            atomic_store(&c->fetch.breaker.trial, 0);
        }
    }
    shard_unlock(s);
    if (why == STALE) {
        COUNT(s, stale_served);
    }
    if (!started) {
        *out_item = cur;
        return CORRAL_OK;
    }
    COUNT_ID(s, why == EARLY ? ST_early_refreshes : ST_refreshes);
    if ((L->o.options & CORRAL_FETCH_BACKGROUND) && refresh_submit(c, L)) {
        L->queued = true; /* the job may have run already: ud is its own */
        *out_item = cur;
        return CORRAL_OK;
    }
    lead(L);
    if (L->at->status == CORRAL_OK) {
        corral_item_t *fresh = pin_for_caller(c, L->at->item);
        if (fresh != NULL) {
            corral_item_release(cur);
            cur = fresh;
        }
    }
    attempt_unref(L->at);
    *out_item = cur;
    return CORRAL_OK;
}

/* A miss: join the running load, answer a remembered error, or lead. */
static corral_status_t
load_missing(struct leader *L, uint32_t now_s, corral_item_t **out_item,
             int *out_error)
{
    struct corral *c = L->c;
    struct shard *s = L->s;
    uint64_t now = now_ms(c);
    struct keyrec *kr;
    corral_status_t st;
    item_t *it;

again:
    shard_wrlock(s);
    it = table_find(&s->table, L->h, L->key, L->nkey);
    if (it != NULL) {
        enum item_state state = item_state(c, s, it, now_s);
        if (state == ITEM_NEGATIVE) {
            shard_unlock(s);
            COUNT(s, negative_hits);
            return CORRAL_ENOTFOUND;
        }
        if (state == ITEM_LIVE) { /* stored meanwhile */
            *out_item = pin_for_caller(c, it);
            shard_unlock(s);
            return *out_item != NULL ? CORRAL_OK : CORRAL_ENOMEM;
        }
        shard_find_live(c, s, L->h, L->key, L->nkey, now_s, NULL);
    }
    kr = keyrec_find(&s->keyrecs, L->h, L->key, L->nkey);
    if (kr != NULL && kr->state == KEYREC_LOADING) {
        struct attempt *at = kr->cur;
        /* A load whose lease a write, delete, prefix invalidation or
         * flush has broken since it began may return what the key was
         * before: a caller arriving now asked after the change, so it
         * waits for that load to end, then looks again (and loads, if
         * the key is still missing). */
        bool intact = lease_intact(c, s, kr, L->key, L->nkey);
        atomic_fetch_add_explicit(&at->refs, 1, memory_order_relaxed);
        shard_unlock(s);
        if (intact) {
            return wait_for(c, s, at, &L->o, out_item, out_error);
        }
        st = wait_for(c, s, at, &L->o, out_item, NULL);
        if (st == CORRAL_ETIMEDOUT) {
            return st;
        }
        corral_item_release(*out_item);
        *out_item = NULL;
        now = now_ms(c);
        now_s = cache_now(c);
        goto again;
    }
    if (kr != NULL && now < kr->error_until_ms) {
        int err = kr->last_error;
        shard_unlock(s);
        COUNT(s, error_hits);
        if (out_error != NULL) {
            *out_error = err;
        }
        return CORRAL_ELOAD;
    }
    if (!breaker_admit(c, now, &L->trial)) {
        shard_unlock(s);
        COUNT(s, breaker_rejects);
        return CORRAL_EBUSY;
    }
    kr = start_load(c, s, L->h, L->key, L->nkey, kr, now);
    if (kr == NULL) {
        if (L->trial) {
            atomic_store(&c->fetch.breaker.trial, 0);
        }
        shard_unlock(s);
        return CORRAL_ENOMEM;
    }
    L->kr = kr;
    L->at = kr->cur;
    shard_unlock(s);
    lead(L);
    st = take_result(c, L->at, out_item, out_error);
    attempt_unref(L->at);
    return st;
}

/* corral_fetch of a valid key. */
static corral_status_t
fetch_key(struct leader *L, corral_item_t **out_item, int *out_error)
{
    struct corral *c = L->c;
    uint64_t now_ns;
    uint32_t now;
    item_t *it;

    L->h = hash_key(c->seed, L->key, L->nkey);
    L->s = cache_shard(c, L->h);
    now_ns = cache_now_ns(c);
    now = (uint32_t)(now_ns / 1000000000u);
    COUNT(L->s, fetches);

    shard_rdlock(L->s);
    it = table_find(&L->s->table, L->h, L->key, L->nkey);
    if (it != NULL) {
        enum item_state st = item_state(c, L->s, it, now);
        if (st == ITEM_NEGATIVE) {
            shard_unlock(L->s);
            COUNT(L->s, negative_hits);
            return CORRAL_ENOTFOUND;
        }
        if (st == ITEM_LIVE) {
            enum freshness f = freshness(it, &L->o, now_ns);
            corral_item_t *cur;
            item_touch_access(it, now);
            cur = pin_for_caller(c, it);
            shard_unlock(L->s);
            if (cur == NULL) {
                return CORRAL_ENOMEM;
            }
            if (f == FRESH) {
                *out_item = cur;
                return CORRAL_OK;
            }
            return refresh(L, cur, f, out_item);
        }
    }
    shard_unlock(L->s);
    return load_missing(L, now, out_item, out_error);
}

CORRAL_API corral_status_t
corral_fetch(corral_t *c, const void *key, size_t nkey,
             corral_loader_fn loader, void *ud,
             const corral_fetch_opts_t *opts, corral_item_t **out_item,
             int *out_error)
{
    struct leader L;
    corral_status_t st;

    assert(c != NULL && out_item != NULL);
    *out_item = NULL;
    if (out_error != NULL) {
        *out_error = 0;
    }
    if (loader == NULL) {
        return CORRAL_EINVAL;
    }
    memset(&L, 0, sizeof(L));
    L.c = c;
    L.key = key;
    L.nkey = nkey;
    L.loader = loader;
    L.ud = ud;
    resolve(&L.o, opts);
    st = key == NULL || nkey == 0 || nkey > CORRAL_KEY_MAX
             ? CORRAL_EINVAL
             : fetch_key(&L, out_item, out_error);
    if ((L.o.options & CORRAL_FETCH_RELEASE) && !L.queued) {
        loader(NULL, NULL, 0, ud);
    }
    return st;
}
