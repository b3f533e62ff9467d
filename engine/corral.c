/*
 * corral.c - the public API: configuration, creation, and every key
 * operation, each routed to the shard that owns the key.
 *
 * The shape of an operation:
 *   1. validate arguments and hash the key (no lock);
 *   2. for stores, allocate and fill the new item (no lock);
 *   3. lock the shard (shared for plain lookups, exclusive otherwise),
 *      find the live item, decide, link or unlink, evict as needed;
 *   4. unlock, then drop references (freeing memory outside the lock
 *      where possible).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"

#define MIB ((size_t)1 << 20)
#define DEFAULT_MAX_MEMORY (64 * MIB)
#define DEFAULT_MAX_ITEM_SIZE MIB
#define MIN_MAX_MEMORY MIB
#define MIN_MAX_ITEM_SIZE 1024u
#define MAX_SHARDS 1024u
#define MAX_EVENT_RING ((size_t)1 << 20)
#define AUTO_MAX_SHARDS 256u
#define DEFAULT_EVENT_RING 4096u

/* ---------------------------------------------------------------------- */
/* Configuration and lifetime                                             */

CORRAL_API void
corral_config_init(corral_config_t *cfg)
{
    assert(cfg != NULL);
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->max_memory = DEFAULT_MAX_MEMORY;
    cfg->max_items = 0;
    cfg->max_item_size = DEFAULT_MAX_ITEM_SIZE;
    cfg->shards = 0;
    cfg->policy = CORRAL_POLICY_S3FIFO;
    cfg->event_ring = DEFAULT_EVENT_RING;
    cfg->refresh_threads = 2;
    cfg->breaker_failures = 20;
    cfg->breaker_open_ms = 1000;
    cfg->backoff_min_ms = 100;
    cfg->backoff_max_ms = 10000;
}

static bool
is_pow2(unsigned n)
{
    return n != 0 && (n & (n - 1)) == 0;
}

static unsigned
log2u(unsigned n)
{
    unsigned b = 0;
    while ((1u << b) < n) {
        b++;
    }
    return b;
}

/* Pick a shard count: enough to spread the CPUs' threads, few enough that
 * each shard holds several of the largest items and, with an item limit,
 * enough items for the policy to work with.  32 per CPU rather than a few:
 * under skewed keys the hot keys' shards take most writes, and two writers
 * meet on one of them far less often among 64 shards than among 8 (2
 * threads setting Zipf-distributed keys scale 1.9x against 1.4-1.6x; see
 * bench/README.md).  An empty shard costs about a kilobyte. */
static unsigned
auto_shards(const corral_config_t *cfg)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = 1;

    if (ncpu < 1) {
        ncpu = 1;
    }
    while (n < (unsigned)ncpu * 32 && n < AUTO_MAX_SHARDS) {
        n <<= 1;
    }
    while (n > 1 && cfg->max_memory / n < 8 * cfg->max_item_size) {
        n >>= 1;
    }
    while (n > 1 && cfg->max_items != 0 && cfg->max_items / n < 4096) {
        n >>= 1;
    }
    return n;
}

static corral_status_t
config_resolve(const corral_config_t *in, corral_config_t *out)
{
    corral_config_init(out);
    if (in != NULL) {
        size_t n = in->size < sizeof(*out) ? in->size : sizeof(*out);
        if (n < offsetof(corral_config_t, max_memory)) {
            return CORRAL_EINVAL;
        }
        memcpy(out, in, n);
        out->size = sizeof(*out);
    }
    if (out->max_memory < MIN_MAX_MEMORY ||
        out->max_item_size < MIN_MAX_ITEM_SIZE ||
        out->max_item_size > out->max_memory / 2 ||
        out->max_item_size > ITEM_VALUE_MAX ||
        out->policy != CORRAL_POLICY_S3FIFO || out->event_ring < 16 ||
        out->event_ring > MAX_EVENT_RING ||
        out->refresh_threads > 64 || out->breaker_open_ms < 0 ||
        out->backoff_min_ms < 1 || out->backoff_max_ms < out->backoff_min_ms) {
        return CORRAL_EINVAL;
    }
    if (out->shards == 0) {
        out->shards = auto_shards(out);
    } else if (!is_pow2(out->shards) || out->shards > MAX_SHARDS ||
               out->max_memory / out->shards < 2 * out->max_item_size ||
               (out->max_items != 0 && out->max_items < out->shards)) {
        return CORRAL_EINVAL;
    }
    if (out->clock == NULL) {
        out->clock_ud = NULL;
    }
    return CORRAL_OK;
}

static uint64_t
random_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15u ^
               (uint64_t)(uintptr_t)&seed;
    }
    return seed;
}

CORRAL_API corral_status_t
corral_create(const corral_config_t *cfg, corral_t **out_cache)
{
    struct corral *c;
    corral_status_t st;
    unsigned ready = 0;
    void *mem;

    assert(out_cache != NULL);
    *out_cache = NULL;
    c = mem_fail_any() ? NULL : calloc(1, sizeof(*c));
    if (c == NULL) {
        return CORRAL_ENOMEM;
    }
    st = config_resolve(cfg, &c->cfg);
    if (st != CORRAL_OK) {
        free(c);
        return st;
    }
    sysclock_init(&c->sysclock);
    if (c->cfg.clock == NULL) {
        c->cfg.clock = sysclock_now;
        c->cfg.clock_ud = &c->sysclock;
    }
    mem_init(&c->mem);
    atomic_init(&c->oldest_live, 0);
    atomic_init(&c->max_memory, c->cfg.max_memory);
    atomic_init(&c->purge_due, false);
    atomic_init(&c->writer, NULL);
    atomic_init(&c->write_seq, 0);
    c->nshards = c->cfg.shards;
    c->shard_bits = log2u(c->nshards);
    c->seed = random_seed();
    if (!stats_reg_init(&c->counters)) {
        goto fail;
    }
    if (!tags_init(&c->tags, &c->mem, c->seed)) {
        goto fail_counters;
    }
    if (!events_init(&c->events, &c->mem, c->cfg.event_ring)) {
        goto fail_tags;
    }
    if (!events_init(&c->evictions, &c->mem, c->cfg.event_ring)) {
        goto fail_events;
    }
    if (!fetch_init(&c->fetch)) {
        goto fail_evictions;
    }
    if (mem_fail_any() ||
        posix_memalign(&mem, CR_CACHELINE,
                       c->nshards * sizeof(struct shard)) != 0) {
        goto fail_fetch;
    }
    c->shards = mem;
    for (; ready < c->nshards; ready++) {
        if (!shard_init(c, &c->shards[ready], ready)) {
            goto fail_shards;
        }
    }
    *out_cache = c;
    return CORRAL_OK;

fail_shards:
    while (ready-- > 0) {
        shard_deinit(&c->shards[ready]);
    }
    free(c->shards);
fail_fetch:
    fetch_deinit(c);
fail_evictions:
    events_deinit(&c->evictions);
fail_events:
    events_deinit(&c->events);
fail_tags:
    tags_deinit(&c->tags);
fail_counters:
    stats_reg_deinit(&c->counters);
fail:
    free(c);
    return CORRAL_ENOMEM;
}

CORRAL_API void
corral_destroy(corral_t *c)
{
    if (c == NULL) {
        return;
    }
    fetch_stop(c);   /* background refreshes finish (they may put) */
    writer_close(c); /* every acknowledged write reaches the writer */
    for (unsigned i = 0; i < c->nshards; i++) {
        shard_deinit(&c->shards[i]);
    }
    free(c->shards);
    fetch_deinit(c);
    events_deinit(&c->evictions);
    events_deinit(&c->events);
    /* after the items, which hold tag records; no orphan of this cache
     * is freed while its records are detached */
    pin_orphans_lock();
    tags_deinit(&c->tags);
    pin_orphans_unlock();
    stats_reg_deinit(&c->counters);
    free(c);
}

CORRAL_API void
corral_config_get(const corral_t *c, corral_config_t *out_cfg)
{
    assert(c != NULL && out_cfg != NULL);
    *out_cfg = c->cfg;
    out_cfg->max_memory = atomic_load_explicit(
        &((struct corral *)c)->max_memory, memory_order_relaxed);
    if (out_cfg->clock == sysclock_now) {
        out_cfg->clock = NULL;
        out_cfg->clock_ud = NULL;
    }
}

/* ---------------------------------------------------------------------- */
/* Items                                                                  */

/* Bytes of private copies handed out and not yet released, all caches:
 * an item pinned more times than its count holds is copied for each
 * further pin (a multiget naming one key 100,000 times, say), and
 * without a bound those copies could take any amount of memory. */
static _Atomic size_t private_copy_bytes;

CORRAL_API void
corral_item_release(corral_item_t *h)
{
    switch (pin_tag(h)) {
    case PIN_TAG_SLOT:
        pin_clear(h);
        break;
    case PIN_TAG_REF:
        pin_unref(pin_item(h));
        break;
    default:
        if (h != NULL) { /* a private copy (pin_for_caller) */
            atomic_fetch_sub_explicit(&private_copy_bytes,
                                      item_real_size(pin_item(h)),
                                      memory_order_relaxed);
            item_unref(pin_item(h));
        }
        break;
    }
}

CORRAL_API const void *
corral_item_key(const corral_item_t *h, size_t *out_len)
{
    const item_t *it = pin_item(h);
    assert(h != NULL);
    if (out_len != NULL) {
        *out_len = it->nkey;
    }
    return it->data;
}

CORRAL_API const void *
corral_item_value(const corral_item_t *h, size_t *out_len)
{
    const item_t *it = pin_item(h);
    assert(h != NULL);
    if (out_len != NULL) {
        *out_len = it->nvalue;
    }
    return it->data + it->nkey;
}

CORRAL_API uint32_t
corral_item_flags(const corral_item_t *h)
{
    assert(h != NULL);
    return item_flags(pin_item(h));
}

CORRAL_API uint64_t
corral_item_cas(const corral_item_t *h)
{
    assert(h != NULL);
    return item_cas(pin_item(h));
}

CORRAL_API size_t
corral_item_tags(const corral_item_t *h, const char **out_tags, size_t max)
{
    const item_t *it = pin_item(h);
    size_t n;

    assert(h != NULL);
    n = item_ntags(it);
    for (size_t i = 0; out_tags != NULL && i < n && i < max; i++) {
        out_tags[i] = item_tag(it, i)->name;
    }
    return n;
}

CORRAL_API int
corral_item_key_binary(const corral_item_t *h)
{
    assert(h != NULL);
    return item_binkey(pin_item(h));
}

CORRAL_API int64_t
corral_item_ttl(const corral_t *c, const corral_item_t *h)
{
    assert(c != NULL && h != NULL);
    return exptime_ttl(item_exptime(pin_item(h)), cache_now(c));
}

CORRAL_API void
corral_item_info(const corral_t *c, const corral_item_t *h,
                 corral_item_info_t *out)
{
    const item_t *it = pin_item(h);
    uint32_t now;

    assert(c != NULL && h != NULL && out != NULL);
    now = cache_now(c);
    memset(out, 0, sizeof(*out));
    out->flags = item_flags(it);
    out->cas = item_cas(it);
    out->exptime = item_exptime(it);
    out->ttl = exptime_ttl(item_exptime(it), now);
    out->last_access = now > item_atime(it) ? now - item_atime(it) : 0;
    out->fetched = item_has(it, ITEM_FETCHED);
    out->stale = item_has(it, ITEM_STALE);
    out->binary_key = item_binkey(it);
    out->nkey = it->nkey;
    out->nvalue = it->nvalue;
    out->alloc_size = item_real_size(it);
}

/* ---------------------------------------------------------------------- */
/* Retrieval                                                              */

static inline bool
key_ok(const void *key, size_t nkey)
{
    return key != NULL && nkey > 0 && nkey <= CORRAL_KEY_MAX;
}

/* Record an invalidation event (shard lock held). */
static inline void
emit(struct corral *c, struct shard *s, corral_event_type_t type,
     const void *name, size_t len, uint64_t cas, uint64_t origin,
     int64_t flush_time)
{
    if (events_wanted(&c->events)) {
        events_push(&c->events, type, name, len, cas, origin, flush_time);
        COUNT(s, events);
    }
}

/* A write or delete of a key: a load of it in flight must not store its
 * now older result (exclusive shard lock). */
static inline void
lease_break(struct shard *s, uint64_t h, const void *key, size_t nkey)
{
    if (unlikely(s->keyrecs.count != 0)) {
        keyrecs_break(&s->keyrecs, h, key, nkey);
    }
}

/* Nonzero while this thread holds back delivering events (writer.c). */
static _Thread_local unsigned delivery_held
    __attribute__((tls_model("initial-exec")));

void
cache_hold_delivery(bool hold)
{
    if (hold) {
        delivery_held++;
    } else {
        delivery_held--;
    }
}

/* Deliver recorded events, and return evicted memory to the system when
 * enough was evicted (no engine lock held). */
void
cache_deliver(struct corral *c)
{
    if (unlikely(delivery_held != 0)) {
        return;
    }
    if (events_wanted(&c->events)) {
        events_dispatch(&c->events);
    }
    if (events_wanted(&c->evictions)) {
        events_dispatch(&c->evictions);
    }
    if (unlikely(atomic_load_explicit(&c->purge_due, memory_order_relaxed)) &&
        atomic_exchange_explicit(&c->purge_due, false,
                                 memory_order_relaxed)) {
        mem_purge();
        COUNT(&c->shards[0], memory_purges);
    }
}

/* Why a lookup that found @st missed, as a CORRAL_RES_MISS_* flag. */
static inline unsigned
miss_reason(enum item_state st)
{
    switch (st) {
    case ITEM_EXPIRED:
        return CORRAL_RES_MISS_EXPIRED;
    case ITEM_FLUSHED:
        return CORRAL_RES_MISS_FLUSHED;
    case ITEM_INVALIDATED:
        return CORRAL_RES_MISS_INVALIDATED;
    default:
        return 0;
    }
}

/* Count why a lookup found nothing live. */
static void
count_dead(struct shard *s, enum item_state seen)
{
    switch (seen) {
    case ITEM_EXPIRED:
        COUNT(s, get_expired);
        break;
    case ITEM_FLUSHED:
        COUNT(s, get_flushed);
        break;
    case ITEM_INVALIDATED:
        COUNT(s, get_invalidated);
        break;
    case ITEM_LIVE:
    case ITEM_NEGATIVE:
        break;
    }
}

corral_item_t *
pin_for_caller(struct corral *c, item_t *it)
{
    _Atomic(item_t *) *slot = pin_slot();
    size_t limit, size;
    item_t *copy;

    if (likely(slot != NULL)) {
        return pin_fill(slot, it);
    }
    if (likely(item_pin(it))) {
        return pin_counted(it);
    }
    /* Private copies may take an eighth of the limit (at least one item
     * of the largest size); past that the lookup is refused (ENOMEM). */
    limit = atomic_load_explicit(&c->max_memory, memory_order_relaxed) / 8;
    if (limit < c->cfg.max_item_size) {
        limit = c->cfg.max_item_size;
    }
    if (atomic_load_explicit(&private_copy_bytes, memory_order_relaxed) >=
            limit ||
        (copy = item_clone(&c->mem, it)) == NULL) {
        return NULL;
    }
    size = item_real_size(copy);
    if (atomic_fetch_add_explicit(&private_copy_bytes, size,
                                  memory_order_relaxed) +
            size >
        limit) {
        atomic_fetch_sub_explicit(&private_copy_bytes, size,
                                  memory_order_relaxed);
        item_unref(copy);
        return NULL;
    }
    return (corral_item_t *)copy;
}

/* Count a lookup that found a dead item, and unlink it. */
static void
reclaim_dead(struct corral *c, struct shard *s, uint64_t h, const void *key,
             size_t nkey, enum item_state seen)
{
    shard_wrlock(s);
    shard_find_live(c, s, h, key, nkey, cache_now(c), NULL);
    shard_unlock(s);
    count_dead(s, seen);
}

/* ---- early refresh memory (see struct early_slot) ---- */

static struct early_slot *
early_table(struct corral *c, struct shard *s)
{
    struct early_slot *t = atomic_load_explicit(&s->early,
                                                 memory_order_acquire);
    struct early_slot *none = NULL;

    if (t != NULL) {
        return t;
    }
    t = mem_zalloc(&c->mem, EARLY_SLOTS * sizeof(*t), NULL);
    if (t == NULL) {
        return NULL;
    }
    if (!atomic_compare_exchange_strong(&s->early, &none, t)) {
        mem_free(t); /* another thread installed one */
        t = none;
    }
    return t;
}

/* Key h's slot, if the shard has a table and the slot is h's; NULL
 * otherwise.  Reads only. */
static struct early_slot *
early_find(struct shard *s, uint64_t h)
{
    struct early_slot *t = atomic_load_explicit(&s->early,
                                                memory_order_acquire);
    struct early_slot *e;

    if (t == NULL) {
        return NULL;
    }
    e = &t[h % EARLY_SLOTS];
    return atomic_load_explicit(&e->hash, memory_order_relaxed) == h ? e
                                                                     : NULL;
}

/* A token was handed out for key h, whose item expires at @exp: remember
 * when. */
static void
early_won(struct corral *c, struct shard *s, uint64_t h, uint32_t exp)
{
    struct early_slot *t = early_table(c, s);
    if (t != NULL) {
        struct early_slot *e = &t[h % EARLY_SLOTS];
        atomic_store_explicit(&e->hash, h, memory_order_relaxed);
        atomic_store_explicit(&e->won_exp, exp, memory_order_relaxed);
        atomic_store_explicit(&e->won_at_ms, cache_now_ns(c) / 1000000u,
                              memory_order_relaxed);
    }
}

/* Key h was stored: if a win was waiting for it, learn the delay. */
static void
early_stored(struct corral *c, struct shard *s, uint64_t h)
{
    struct early_slot *e = early_find(s, h);
    uint64_t won;

    if (e == NULL) {
        return;
    }
    won = atomic_load_explicit(&e->won_at_ms, memory_order_relaxed);
    if (won != 0) {
        uint64_t now = cache_now_ns(c) / 1000000u;
        /* a store within the millisecond of its win took under 1 ms,
         * not 0 (which would mean "nothing learned") */
        uint64_t d = now > won ? now - won : 1;
        atomic_store_explicit(&e->delta_ms,
                              d > UINT32_MAX ? UINT32_MAX : (uint32_t)d,
                              memory_order_relaxed);
        atomic_store_explicit(&e->won_at_ms, 0, memory_order_relaxed);
    }
}

/* The recompute time to assume for an item: its fetch load time, else
 * what stores after wins taught us (@e: the key's slot, or NULL), else 0
 * (no early refresh). */
static uint32_t
early_delta(const struct early_slot *e, const item_t *it)
{
    const char *fb = item_fetch_block(it);
    uint32_t d = 0;

    if (fb != NULL) {
        memcpy(&d, fb + 4, 4);
        if (d != 0) {
            return d;
        }
    }
    return e != NULL ? atomic_load_explicit(&e->delta_ms,
                                            memory_order_relaxed)
                     : 0;
}

/* XFetch on the server's side: time to hand out the token early? */
static bool
early_due(struct corral *c, struct shard *s, uint64_t h, const item_t *it,
          const corral_get_opts_t *o)
{
    uint32_t e = item_exptime(it);
    struct early_slot *slot = early_find(s, h);
    uint32_t delta;
    double beta = o->beta > 0 ? o->beta : 1.0;
    double now_ms;

    if (e == 0 || (delta = early_delta(slot, it)) == 0) {
        return false;
    }
    /* One early refresh per expiry: a value stored again within the same
     * expiry second (a refresh in the last second of a short TTL) is not
     * due again at once. */
    if (slot != NULL &&
        atomic_load_explicit(&slot->won_exp, memory_order_relaxed) == e) {
        return false;
    }
    now_ms = (double)(cache_now_ns(c) / 1000000u);
    return now_ms - (double)delta * beta * log(rand_unit()) >=
           (double)e * 1000.0;
}

/*
 * Decide the recache token on a live item (memcached's W, X and Z flags):
 * a stale item, or one whose TTL is below the caller's recache threshold,
 * hands its single token to the first caller that asks.  Only a caller
 * that takes the result (out_res) can ask: corral_gat() and other plain
 * lookups leave the token alone, as memcached's gat does.
 */
static unsigned
token_decide(struct corral *c, struct shard *s, uint64_t h, item_t *it,
             const corral_get_opts_t *o, uint32_t now)
{
    unsigned res = 0;
    bool want = false, early = false;

    if (o != NULL && (o->flags & CORRAL_GET_RECACHE)) {
        uint32_t e = item_exptime(it);
        if (e != 0 && (int64_t)e - now < o->recache_ttl) {
            want = true;
        }
    }
    if (item_has(it, ITEM_STALE)) {
        res |= CORRAL_RES_STALE;
        want = true;
    }
    if (!want && o != NULL && (o->flags & CORRAL_GET_EARLY) &&
        !item_has(it, ITEM_TOKEN) && early_due(c, s, h, it, o)) {
        want = early = true;
    }
    if (want && item_test_and_set(it, ITEM_TOKEN)) {
        res |= CORRAL_RES_WIN;
        COUNT(s, recache_wins);
        if (early) {
            COUNT(s, early_wins);
        }
        early_won(c, s, h, item_exptime(it));
    } else if (item_has(it, ITEM_TOKEN)) {
        res |= CORRAL_RES_LOST;
        COUNT(s, recache_lost);
    }
    return res;
}

/* The hit path shared by every lookup: results, token, access, pin. */
static corral_status_t
hit(struct corral *c, struct shard *s, uint64_t h, item_t *it,
    const corral_get_opts_t *o, uint32_t now, corral_item_t **out_item,
    corral_get_result_t *out_res)
{
    unsigned f = o != NULL ? o->flags : 0;
    corral_item_t *pinned = pin_for_caller(c, it);

    /* Pin first: a lookup that fails must not have taken the token. */
    if (pinned == NULL) {
        return CORRAL_ENOMEM;
    }
    if (out_res != NULL) {
        uint32_t at = item_atime(it);
        out_res->flags |= item_has(it, ITEM_FETCHED) ? CORRAL_RES_HIT_BEFORE
                                                     : 0;
        if (!(f & CORRAL_GET_TOUCH)) {
            out_res->ttl_before = exptime_ttl(item_exptime(it), now);
        }
        out_res->last_access = now > at ? now - at : 0;
        out_res->flags |= token_decide(c, s, h, it, o, now);
    }
    if (!(f & CORRAL_GET_NOBUMP)) {
        item_touch_access(it, now);
    }
    COUNT(s, get_hits);
    *out_item = pinned;
    return CORRAL_OK;
}

/* Create, link and pin an empty item for a vivifying lookup. */
static corral_status_t
vivify(struct corral *c, struct shard *s, uint64_t h, const void *key,
       size_t nkey, const corral_get_opts_t *o, uint32_t now,
       corral_item_t **out_item, corral_get_result_t *out_res)
{
    unsigned extras = (o->flags & CORRAL_GET_BINARY_KEY) ? EXT_BINKEY : 0;
    item_t *it = item_create_ext(&c->mem, key, nkey, 0, 0, 0, extras, NULL);
    item_t *rec = it;
    bool linked = false;

    if (it == NULL) {
        return CORRAL_ENOMEM;
    }
    atomic_store(&it->exptime, exptime_abs(o->vivify_exptime, now));
    atomic_store(&it->atime, now);
    item_set(it, ITEM_TOKEN);
    if (shard_make_room(c, s, item_real_size(it), 1)) {
        atomic_store(&it->cas, shard_next_cas(c, s));
        linked = shard_link(c, s, h, &rec, NULL);
    }
    if (!linked || rec != it) {
        item_unref(it); /* refused, or linked as a copy */
    }
    if (!linked) {
        return CORRAL_ENOMEM;
    }
    /* cannot fail: a new item's count is far from saturated, so this is
     * a slot or a counted reference, never a copy */
    *out_item = pin_for_caller(c, rec);
    COUNT(s, recache_wins);
    early_won(c, s, h, item_exptime(rec));
    if (out_res != NULL) {
        out_res->flags |= CORRAL_RES_WIN | CORRAL_RES_VIVIFIED;
    }
    return CORRAL_OK;
}

CORRAL_API corral_status_t
corral_get_ex(corral_t *c, const void *key, size_t nkey,
              const corral_get_opts_t *o, corral_item_t **out_item,
              corral_get_result_t *out_res)
{
    unsigned f = o != NULL ? o->flags : 0;
    corral_status_t st = CORRAL_ENOTFOUND;
    enum item_state seen = ITEM_LIVE;
    bool growing;
    struct shard *s;
    uint32_t now;
    uint64_t h;
    item_t *it;

    assert(c != NULL && out_item != NULL);
    *out_item = NULL;
    if (out_res != NULL) {
        memset(out_res, 0, sizeof(*out_res));
    }
    if (!key_ok(key, nkey)) {
        return CORRAL_EINVAL;
    }
    h = hash_key(c->seed, key, nkey);
    s = cache_shard(c, h);
    now = cache_now(c);

    if (!(f & (CORRAL_GET_TOUCH | CORRAL_GET_VIVIFY))) {
        shard_rdlock(s);
        it = table_find(&s->table, h, key, nkey);
        if (it != NULL) {
            seen = item_state(c, s, it, now);
            if (seen == ITEM_LIVE) {
                st = hit(c, s, h, it, o, now, out_item, out_res);
            }
        }
        growing = s->table.old != NULL;
        shard_unlock(s);
        if (it != NULL && item_state_dead(seen)) {
            reclaim_dead(c, s, h, key, nkey, seen);
        }
        if (st == CORRAL_ENOTFOUND) {
            COUNT(s, get_misses);
            if (out_res != NULL) {
                out_res->flags |= miss_reason(seen);
            }
        }
        if (unlikely(growing) && rw_trywrlock(&s->lock)) {
            /* a cache that only reads would otherwise keep probing two
             * tables: help the growth along when nobody else holds it */
            shard_migrate(s, SHARD_MIGRATE_BY_READER);
            shard_unlock(s);
        }
        return st;
    }

    shard_wrlock(s);
    it = shard_find_live(c, s, h, key, nkey, now, &seen);
    count_dead(s, seen);
    if (f & CORRAL_GET_TOUCH) {
        COUNT(s, cmd_touch);
        COUNT_ID(s, it ? ST_touch_hits : ST_touch_misses);
    }
    if (it != NULL) {
        if (f & CORRAL_GET_TOUCH) {
            if (out_res != NULL) {
                out_res->ttl_before = exptime_ttl(item_exptime(it), now);
            }
            atomic_store_explicit(&it->exptime,
                                  exptime_abs(o->touch_exptime, now),
                                  memory_order_relaxed);
        }
        st = hit(c, s, h, it, o, now, out_item, out_res);
    } else {
        COUNT(s, get_misses);
        if (out_res != NULL) {
            out_res->flags |= miss_reason(seen);
        }
        if (f & CORRAL_GET_VIVIFY) {
            st = vivify(c, s, h, key, nkey, o, now, out_item, out_res);
        }
    }
    shard_write_done(c, s);
    shard_unlock(s);
    cache_deliver(c); /* a vivified item may have evicted others */
    return st;
}

/* The rest of corral_get, entered with the shared lock held: an item that
 * needs the full state check (or finds the thread's slots all taken), or
 * a miss.  Out of line, so that the common hit saves and restores few
 * registers. */
static __attribute__((noinline)) corral_status_t
get_rest(struct corral *c, struct shard *s, uint64_t h, const void *key,
         size_t nkey, item_t *it, uint32_t now, corral_item_t **out_item)
{
    enum item_state seen = ITEM_LIVE;
    corral_item_t *pinned = NULL;
    bool growing;

    if (it != NULL) {
        seen = item_state(c, s, it, now);
        if (likely(seen == ITEM_LIVE)) {
            pinned = pin_for_caller(c, it);
            if (likely(pinned != NULL)) {
                item_touch_access(it, now);
            }
        }
    }
    growing = s->table.old != NULL;
    shard_unlock(s);

    if (likely(pinned != NULL)) {
        COUNT(s, get_hits);
        *out_item = pinned;
        return CORRAL_OK;
    }
    if (unlikely(it != NULL && seen == ITEM_LIVE)) {
        return CORRAL_ENOMEM; /* no slot, count saturated, no memory to copy */
    }
    if (it != NULL && item_state_dead(seen)) {
        reclaim_dead(c, s, h, key, nkey, seen);
    }
    COUNT(s, get_misses);
    if (unlikely(growing) && rw_trywrlock(&s->lock)) {
        shard_migrate(s, SHARD_MIGRATE_BY_READER);
        shard_unlock(s);
    }
    return CORRAL_ENOTFOUND;
}

/* corral_get_ex without options, kept short: the hot path of every
 * lookup. */
CORRAL_API corral_status_t
corral_get(corral_t *c, const void *key, size_t nkey,
           corral_item_t **out_item)
{
    _Atomic(item_t *) *slot;
    struct shard *s;
    uint32_t now;
    uint64_t h;
    item_t *it;

    assert(c != NULL && out_item != NULL);
    *out_item = NULL;
    if (unlikely(!key_ok(key, nkey))) {
        return CORRAL_EINVAL;
    }
    h = hash_key(c->seed, key, nkey);
    s = cache_shard(c, h);
    now = cache_now(c);
    slot = pin_slot();

    shard_rdlock(s);
    it = table_find(&s->table, h, key, nkey);
    if (likely(it != NULL) && likely(item_plainly_live(c, s, it, now)) &&
        likely(slot != NULL)) {
        /* the common hit, kept short */
        *out_item = pin_fill(slot, it);
        item_touch_access(it, now);
        shard_unlock(s);
        COUNT(s, get_hits);
        return CORRAL_OK;
    }
    return get_rest(c, s, h, key, nkey, it, now, out_item);
}

CORRAL_API corral_status_t
corral_gat(corral_t *c, const void *key, size_t nkey, int64_t exptime,
           corral_item_t **out_item)
{
    corral_get_opts_t o = {0};
    o.flags = CORRAL_GET_TOUCH;
    o.touch_exptime = exptime;
    return corral_get_ex(c, key, nkey, &o, out_item, NULL);
}

CORRAL_API corral_status_t
corral_get_copy(corral_t *c, const void *key, size_t nkey, void *buf,
                size_t cap, size_t *out_len, uint32_t *out_flags,
                uint64_t *out_cas)
{
    corral_item_t *it;
    corral_status_t st = corral_get(c, key, nkey, &it);
    size_t len;
    const void *v;

    if (st != CORRAL_OK) {
        return st;
    }
    v = corral_item_value(it, &len);
    if (out_len != NULL) {
        *out_len = len;
    }
    if (out_flags != NULL) {
        *out_flags = corral_item_flags(it);
    }
    if (out_cas != NULL) {
        *out_cas = corral_item_cas(it);
    }
    if (len > cap) {
        st = CORRAL_ERANGE;
    } else if (len > 0) {
        memcpy(buf, v, len);
    }
    corral_item_release(it);
    return st;
}

/* Keys looked up together by corral_get_multi. */
#define MULTI_BATCH 32u

/*
 * A batch of lookups: take the read locks of the shards involved (in
 * shard order; writers hold one shard lock at a time, so this cannot
 * deadlock), prefetch every key's first table slot, then every first
 * candidate item, then do the lookups: the cache misses of different keys
 * overlap instead of coming one after another.
 */
static size_t
get_batch(struct corral *c, size_t n, const void *const *keys,
          const size_t *nkeys, corral_item_t **out, unsigned *reasons)
{
    uint64_t h[MULTI_BATCH];
    unsigned sh[MULTI_BATCH];
    enum item_state seen[MULTI_BATCH];
    item_t *found[MULTI_BATCH];
    unsigned order[MULTI_BATCH];
    uint32_t now = cache_now(c);
    size_t hits = 0, m = 0;

    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
        found[i] = NULL;
        seen[i] = ITEM_LIVE;
        if (!key_ok(keys[i], nkeys[i])) {
            continue;
        }
        h[i] = hash_key(c->seed, keys[i], nkeys[i]);
        sh[i] = hash_shard(h[i], c->shard_bits);
        order[m++] = (unsigned)i; /* insertion sort by shard below */
        for (size_t j = m - 1; j > 0 && sh[order[j - 1]] > sh[order[j]];
             j--) {
            unsigned t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
    for (size_t j = 0; j < m; j++) {
        if (j == 0 || sh[order[j]] != sh[order[j - 1]]) {
            shard_rdlock(&c->shards[sh[order[j]]]);
        }
    }
    for (size_t j = 0; j < m; j++) {
        table_prefetch_slot(&c->shards[sh[order[j]]].table, h[order[j]]);
    }
    for (size_t j = 0; j < m; j++) {
        table_prefetch_item(&c->shards[sh[order[j]]].table, h[order[j]]);
    }
    for (size_t j = 0; j < m; j++) {
        size_t i = order[j];
        struct shard *s = &c->shards[sh[i]];
        item_t *it = table_find(&s->table, h[i], keys[i], nkeys[i]);
        if (it == NULL) {
            continue;
        }
        seen[i] = item_state(c, s, it, now);
        if (seen[i] == ITEM_LIVE) {
            out[i] = pin_for_caller(c, it);
            if (out[i] != NULL) {
                item_touch_access(it, now);
                hits++;
            }
        }
        found[i] = it;
    }
    for (size_t j = m; j-- > 0;) {
        if (j == 0 || sh[order[j]] != sh[order[j - 1]]) {
            shard_unlock(&c->shards[sh[order[j]]]);
        }
    }
    for (size_t j = 0; j < m; j++) {
        size_t i = order[j];
        struct shard *s = &c->shards[sh[i]];
        if (out[i] != NULL) {
            COUNT(s, get_hits);
            continue;
        }
        if (found[i] != NULL && item_state_dead(seen[i])) {
            reclaim_dead(c, s, h[i], keys[i], nkeys[i], seen[i]);
        }
        if (reasons != NULL) {
            reasons[i] = miss_reason(seen[i]);
        }
        COUNT(s, get_misses);
    }
    return hits;
}

CORRAL_API size_t
corral_get_multi_ex(corral_t *c, size_t n, const void *const *keys,
                    const size_t *nkeys, corral_item_t **out_items,
                    unsigned *out_reasons)
{
    size_t hits = 0;
    assert(c != NULL);
    assert(n == 0 || (keys != NULL && nkeys != NULL && out_items != NULL));
    if (out_reasons != NULL) {
        memset(out_reasons, 0, n * sizeof(*out_reasons));
    }
    for (size_t done = 0; done < n; done += MULTI_BATCH) {
        size_t k = n - done < MULTI_BATCH ? n - done : MULTI_BATCH;
        hits += get_batch(c, k, keys + done, nkeys + done, out_items + done,
                          out_reasons != NULL ? out_reasons + done : NULL);
    }
    return hits;
}

CORRAL_API size_t
corral_get_multi(corral_t *c, size_t n, const void *const *keys,
                 const size_t *nkeys, corral_item_t **out_items)
{
    return corral_get_multi_ex(c, n, keys, nkeys, out_items, NULL);
}

/* ---------------------------------------------------------------------- */
/* Storage                                                                */

/* A new item holding old's value with extra bytes before or after. */
static corral_status_t
concat_item(struct corral *c, const item_t *old, const void *value,
            size_t nvalue, bool append, uint32_t now, item_t **out)
{
    size_t nold = old->nvalue;
    uint32_t flags = item_flags(old);
    item_t *it;
    char *dst;

    *out = NULL;
    size_t ntags = item_ntags(old);
    unsigned extras = item_ext_mask(old) & EXT_BINKEY;

    if (item_size_ext(old->nkey, nold + nvalue, flags, ntags, extras) >
        c->cfg.max_item_size) {
        return CORRAL_ETOOBIG;
    }
    it = item_create_ext(&c->mem, item_key(old), old->nkey, nold + nvalue,
                         flags, ntags, extras, NULL);
    if (it == NULL) {
        return CORRAL_ENOMEM;
    }
    item_copy_tags(it, old);
    dst = item_value(it);
    if (append) {
        memcpy(dst, old->data + old->nkey, nold);
        if (nvalue > 0) {
            memcpy(dst + nold, value, nvalue);
        }
    } else {
        if (nvalue > 0) {
            memcpy(dst, value, nvalue);
        }
        memcpy(dst + nvalue, old->data + old->nkey, nold);
    }
    atomic_store(&it->exptime, item_exptime(old));
    atomic_store(&it->atime, now);
    *out = it;
    return CORRAL_OK;
}

/* Tag names are 1..CORRAL_TAG_MAX bytes; at most CORRAL_TAGS_MAX. */
static bool
tags_ok(const char *const *tags, size_t ntags)
{
    if (ntags > CORRAL_TAGS_MAX || (ntags > 0 && tags == NULL)) {
        return false;
    }
    for (size_t i = 0; i < ntags; i++) {
        size_t len;
        if (tags[i] == NULL) {
            return false;
        }
        len = strnlen(tags[i], CORRAL_TAG_MAX + 1);
        if (len == 0 || len > CORRAL_TAG_MAX) {
            return false;
        }
    }
    return true;
}

/* Take a reference on each tag's record for a new item. */
static corral_status_t
attach_tags(struct corral *c, item_t *it, const char *const *tags,
            size_t ntags)
{
    for (size_t i = 0; i < ntags; i++) {
        struct tag_rec *r = tag_acquire(&c->tags, tags[i], strlen(tags[i]));
        if (r == NULL) {
            return CORRAL_ENOMEM; /* item_unref releases those taken */
        }
        item_set_tag(it, i, r);
    }
    return CORRAL_OK;
}

/* Remove a key's live item, if any (a set that failed must not leave the
 * old value behind). */
static void
drop_key_locked(struct corral *c, struct shard *s, uint64_t h,
                const void *key, size_t nkey, uint32_t now)
{
    item_t *old = shard_find_live(c, s, h, key, nkey, now, NULL);
    lease_break(s, h, key, nkey);
    if (old != NULL) {
        shard_unlink(c, s, h, old);
        emit(c, s, CORRAL_EVENT_DELETE, key, nkey, item_cas(old), 0, 0);
    }
}

/*
 * Link `it` in place of `old` (or as new), evicting to make room.  old is
 * pinned by the caller so that eviction cannot free it under us; if
 * eviction unlinked it, the new item goes in as a fresh key.
 */
corral_status_t
cache_install(struct corral *c, struct shard *s, uint64_t h, item_t **itp,
              item_t *old, uint64_t *out_cas)
{
    item_t *it = *itp;
    uint64_t cas;

    if (unlikely(atomic_load_explicit(&s->early, memory_order_relaxed) !=
                 NULL)) {
        early_stored(c, s, h);
    }
    if (old != NULL && shard_can_overwrite(old, it)) {
        /* same allocation size and nobody reading it: reuse it */
        lease_break(s, h, item_key(it), it->nkey);
        cas = shard_next_cas(c, s);
        shard_overwrite(s, old, it, cas);
        *itp = old; /* the caller frees `it` */
        emit(c, s, CORRAL_EVENT_OVERWRITE, item_key(old), old->nkey, cas, 0,
             0);
        if (out_cas != NULL) {
            *out_cas = cas;
        }
        return CORRAL_OK;
    }
    if (!shard_make_room(c, s, item_real_size(it), old ? 0 : 1)) {
        COUNT(s, store_no_memory);
        return CORRAL_ENOMEM;
    }
    if (old != NULL && !item_has(old, ITEM_LINKED)) {
        /* evicted, or moved within its queue (a copy took its place) */
        old = table_find(&s->table, h, item_key(it), it->nkey);
    }
    lease_break(s, h, item_key(it), it->nkey);
    cas = shard_next_cas(c, s);
    atomic_store_explicit(&it->cas, cas, memory_order_relaxed);
    if (!shard_link(c, s, h, itp, old)) {
        COUNT(s, store_no_memory);
        return CORRAL_ENOMEM;
    }
    if (old != NULL) {
        emit(c, s, CORRAL_EVENT_OVERWRITE, item_key(it), it->nkey, cas, 0, 0);
    }
    if (out_cas != NULL) {
        *out_cas = cas;
    }
    return CORRAL_OK;
}

CORRAL_API corral_status_t
corral_store(corral_t *c, const void *key, size_t nkey, const void *value,
             size_t nvalue, const corral_store_opts_t *opts,
             uint64_t *out_cas)
{
    static const corral_store_opts_t defaults = {0};
    const corral_store_opts_t *o = opts != NULL ? opts : &defaults;
    corral_mode_t mode = o->mode;
    bool concat = mode == CORRAL_APPEND || mode == CORRAL_PREPEND;
    bool cas_mode = mode == CORRAL_CAS || (mode == CORRAL_SET && o->cas);
    corral_status_t st = CORRAL_OK;
    bool counted_nomem = false;
    item_t *it = NULL;
    item_t *old;
    struct shard *s;
    size_t ntags;
    uint32_t now;
    uint64_t h;

    assert(c != NULL);
    if (out_cas != NULL) {
        *out_cas = 0;
    }
    if (!key_ok(key, nkey) || (value == NULL && nvalue > 0) ||
        mode < CORRAL_SET || mode > CORRAL_CAS ||
        (!concat && !tags_ok(o->tags, o->ntags))) {
        return CORRAL_EINVAL;
    }
    ntags = concat ? 0 : o->ntags;
    h = hash_key(c->seed, key, nkey);
    s = cache_shard(c, h);
    now = cache_now(c);
    COUNT(s, cmd_set);

    /* Build the new item before taking the lock. */
    if (!concat) {
        unsigned extras =
            (o->options & CORRAL_STORE_BINARY_KEY) ? EXT_BINKEY : 0;
        if (item_size_ext(nkey, nvalue, o->flags, ntags, extras) >
            c->cfg.max_item_size) {
            st = CORRAL_ETOOBIG;
        } else if ((it = item_create_ext(&c->mem, key, nkey, nvalue,
                                         o->flags, ntags, extras, NULL)) ==
                   NULL) {
            st = CORRAL_ENOMEM;
        } else {
            if (nvalue > 0) {
                memcpy(item_value(it), value, nvalue);
            }
            atomic_store(&it->exptime, exptime_abs(o->exptime, now));
            atomic_store(&it->atime, now);
            st = attach_tags(c, it, o->tags, ntags);
        }
    }

    /* Bring the key's slot and current item into this CPU's cache under
     * the shared lock, so that the exclusive section does not wait for
     * those misses while other writers of the shard wait for it. */
    shard_rdlock(s);
    table_prefetch_item(&s->table, h);
    shard_unlock(s);

    shard_wrlock(s);
    old = shard_find_live(c, s, h, key, nkey, now, NULL);
    if (old != NULL) {
        item_ref(old);
    }
    if (st != CORRAL_OK) {
        /* refused before we got here */
    } else if (mode == CORRAL_ADD && old != NULL) {
        /* memcached bumps the item in its LRU but does not count a
         * fetch: a later "h" or "me" still says it was never read. */
        item_freq_bump(old);
        atomic_store_explicit(&old->atime, now, memory_order_relaxed);
        st = CORRAL_ENOTSTORED;
    } else if ((mode == CORRAL_REPLACE || concat) && old == NULL) {
        st = CORRAL_ENOTSTORED;
    } else if (cas_mode) {
        uint64_t cur = old != NULL ? item_cas(old) : 0;
        if (old == NULL) {
            st = CORRAL_ENOTFOUND;
            COUNT(s, cas_misses);
        } else if (o->cas != 0 && o->cas == cur) {
            COUNT(s, cas_hits);
        } else if (o->cas != 0 && (o->options & CORRAL_STORE_INVALIDATE) &&
                   o->cas < cur) {
            /* An older writer may still store, but only as stale data. */
            COUNT(s, cas_hits);
            atomic_store(&it->exptime, item_exptime(old));
            item_set(it, ITEM_STALE |
                             (item_bits(old) & ITEM_TOKEN));
        } else {
            st = CORRAL_EEXISTS;
            COUNT(s, cas_badval);
        }
    } else if (concat && o->cas != 0 && o->cas != item_cas(old)) {
        st = CORRAL_EEXISTS;
    }
    if (st == CORRAL_OK && concat) {
        st = concat_item(c, old, value, nvalue, mode == CORRAL_APPEND, now,
                         &it);
    } else if (st == CORRAL_OK && ntags > 0) {
        /* Read after the tag records exist and under the shard lock: a tag
         * invalidation either sees this item's records or advanced the
         * epoch before this read (tag.c). */
        item_set_tag_epoch(it, tags_epoch(&c->tags));
    }
    if (st == CORRAL_OK) {
        item_t *linked = it;
        st = cache_install(c, s, h, &linked, old, out_cas);
        if (st == CORRAL_OK && linked == it) {
            it = NULL; /* the cache owns it now */
        }
        counted_nomem = true; /* cache_install counts its own refusals */
    }
    if (st == CORRAL_ETOOBIG) {
        COUNT(s, store_too_large);
    }
    if (st == CORRAL_ENOMEM && !counted_nomem) {
        COUNT(s, store_no_memory);
    }
    if ((st == CORRAL_ETOOBIG || st == CORRAL_ENOMEM) &&
        mode == CORRAL_SET && !cas_mode) {
        drop_key_locked(c, s, h, key, nkey, now);
    }
    if (old != NULL) {
        shard_unref(s, old);
    }
    shard_write_done(c, s);
    shard_unlock(s);
    cache_deliver(c);

    if (it != NULL) {
        item_unref(it); /* refused, or copied in place: never linked */
    }
    return st;
}

static corral_status_t
store_mode(corral_t *c, corral_mode_t mode, const void *key, size_t nkey,
           const void *value, size_t nvalue, uint32_t flags, int64_t exptime)
{
    corral_store_opts_t o = {0};
    o.mode = mode;
    o.flags = flags;
    o.exptime = exptime;
    return corral_store(c, key, nkey, value, nvalue, &o, NULL);
}

CORRAL_API corral_status_t
corral_set(corral_t *c, const void *key, size_t nkey, const void *value,
           size_t nvalue, uint32_t flags, int64_t exptime)
{
    return store_mode(c, CORRAL_SET, key, nkey, value, nvalue, flags,
                      exptime);
}

CORRAL_API corral_status_t
corral_add(corral_t *c, const void *key, size_t nkey, const void *value,
           size_t nvalue, uint32_t flags, int64_t exptime)
{
    return store_mode(c, CORRAL_ADD, key, nkey, value, nvalue, flags,
                      exptime);
}

CORRAL_API corral_status_t
corral_replace(corral_t *c, const void *key, size_t nkey, const void *value,
               size_t nvalue, uint32_t flags, int64_t exptime)
{
    return store_mode(c, CORRAL_REPLACE, key, nkey, value, nvalue, flags,
                      exptime);
}

CORRAL_API corral_status_t
corral_append(corral_t *c, const void *key, size_t nkey, const void *value,
              size_t nvalue)
{
    return store_mode(c, CORRAL_APPEND, key, nkey, value, nvalue, 0, 0);
}

CORRAL_API corral_status_t
corral_prepend(corral_t *c, const void *key, size_t nkey, const void *value,
               size_t nvalue)
{
    return store_mode(c, CORRAL_PREPEND, key, nkey, value, nvalue, 0, 0);
}

CORRAL_API corral_status_t
corral_cas(corral_t *c, const void *key, size_t nkey, const void *value,
           size_t nvalue, uint32_t flags, int64_t exptime, uint64_t cas,
           uint64_t *out_cas)
{
    corral_store_opts_t o = {0};
    o.mode = CORRAL_CAS;
    o.flags = flags;
    o.exptime = exptime;
    o.cas = cas;
    return corral_store(c, key, nkey, value, nvalue, &o, out_cas);
}

/* ---------------------------------------------------------------------- */
/* Deletion and touch                                                     */

/*
 * Put a copy of the pinned item *itp in its place, so that marking the
 * key stale does not change the CAS its readers pinned.  On success *itp
 * is the copy, linked.  CORRAL_ENOMEM without memory for it;
 * CORRAL_ENOTFOUND if making room evicted the item.
 */
static corral_status_t
stale_copy(struct corral *c, struct shard *s, uint64_t h, item_t **itp)
{
    item_t *old = *itp;
    item_t *copy = item_clone(&c->mem, old);
    corral_status_t st = CORRAL_OK;

    if (copy == NULL) {
        return CORRAL_ENOMEM;
    }
    item_ref(old); /* eviction must not free it under us */
    if (!shard_make_room(c, s, item_real_size(copy), 0)) {
        st = CORRAL_ENOMEM;
    } else {
        /* eviction may have moved it (a copy took its place) */
        item_t *cur = item_has(old, ITEM_LINKED)
                          ? old
                          : table_find(&s->table, h, item_key(old),
                                       old->nkey);
        item_t *linked = copy;
        if (cur == NULL) {
            st = CORRAL_ENOTFOUND;
        } else if (!shard_link(c, s, h, &linked, cur)) {
            st = CORRAL_ENOMEM;
        } else {
            *itp = linked;
            if (linked == copy) {
                copy = NULL; /* the cache's now; else freed below */
            }
        }
    }
    shard_unref(s, old);
    if (copy != NULL) {
        item_unref(copy);
    }
    return st;
}

/*
 * Delete (or mark stale) a key.  origin goes into the event; with
 * always_emit the event is recorded even when the key is absent (an
 * invalidation relayed from elsewhere must reach local subscribers
 * whatever this cache holds).
 */
static corral_status_t
delete_key(struct corral *c, const void *key, size_t nkey,
           const corral_delete_opts_t *o, uint64_t origin, bool always_emit)
{
    corral_status_t st = CORRAL_OK;
    struct shard *s;
    uint32_t now;
    uint64_t h;
    item_t *it;

    if (!key_ok(key, nkey)) {
        return CORRAL_EINVAL;
    }
    h = hash_key(c->seed, key, nkey);
    s = cache_shard(c, h);
    now = cache_now(c);

    shard_wrlock(s);
    lease_break(s, h, key, nkey);
    it = shard_find_live(c, s, h, key, nkey, now, NULL);
    if (it == NULL) {
        st = CORRAL_ENOTFOUND;
        COUNT(s, delete_misses);
        if (always_emit) {
            emit(c, s, CORRAL_EVENT_DELETE, key, nkey, 0, origin, 0);
        }
    } else if (o != NULL && o->cas != 0 && o->cas != item_cas(it)) {
        st = CORRAL_EEXISTS;
    } else if (o != NULL && (o->options & CORRAL_DELETE_STALE) &&
               !item_unshared(it, 1) &&
               (st = stale_copy(c, s, h, &it)) != CORRAL_OK) {
        /* pinned, and no memory for the copy that must take its place */
    } else if (o != NULL && (o->options & CORRAL_DELETE_STALE)) {
        /* Keep serving the value, flagged, and hand out a new token. */
        uint64_t cas = shard_next_cas(c, s);
        item_set(it, ITEM_STALE);
        item_clear(it, ITEM_TOKEN);
        atomic_store_explicit(&it->cas, cas, memory_order_relaxed);
        if (o->options & CORRAL_DELETE_TOUCH) {
            atomic_store_explicit(&it->exptime, exptime_abs(o->exptime, now),
                                  memory_order_relaxed);
        }
        COUNT(s, delete_hits);
        emit(c, s, CORRAL_EVENT_STALE, key, nkey, cas, origin, 0);
    } else {
        shard_unlink(c, s, h, it);
        COUNT(s, delete_hits);
        emit(c, s, CORRAL_EVENT_DELETE, key, nkey, item_cas(it), origin, 0);
    }
    shard_write_done(c, s);
    shard_unlock(s);
    cache_deliver(c);
    return st;
}

CORRAL_API corral_status_t
corral_delete_ex(corral_t *c, const void *key, size_t nkey,
                 const corral_delete_opts_t *o)
{
    assert(c != NULL);
    return delete_key(c, key, nkey, o, 0, false);
}

CORRAL_API corral_status_t
corral_delete(corral_t *c, const void *key, size_t nkey)
{
    return corral_delete_ex(c, key, nkey, NULL);
}

CORRAL_API corral_status_t
corral_touch(corral_t *c, const void *key, size_t nkey, int64_t exptime)
{
    struct shard *s;
    uint32_t now;
    uint64_t h;
    item_t *it;

    assert(c != NULL);
    if (!key_ok(key, nkey)) {
        return CORRAL_EINVAL;
    }
    h = hash_key(c->seed, key, nkey);
    s = cache_shard(c, h);
    now = cache_now(c);
    COUNT(s, cmd_touch);

    shard_wrlock(s);
    it = shard_find_live(c, s, h, key, nkey, now, NULL);
    if (it != NULL) {
        atomic_store_explicit(&it->exptime, exptime_abs(exptime, now),
                              memory_order_relaxed);
        item_touch_access(it, now);
        COUNT(s, touch_hits);
    } else {
        COUNT(s, touch_misses);
    }
    shard_unlock(s);
    return it != NULL ? CORRAL_OK : CORRAL_ENOTFOUND;
}

/* ---------------------------------------------------------------------- */
/* Arithmetic                                                             */

static bool
is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' ||
           ch == '\f' || ch == '\r';
}

/*
 * Parse a value as memcached does (strtoull on the value followed by
 * "\r\n"): optional leading white space, an optional sign, at least one
 * digit, then the end, white space or a NUL byte.  A '-' is refused when
 * the negated result would read as negative, as in memcached's
 * safe_strtoull.  Overflow is refused.
 */
static bool
parse_u64(const char *p, size_t n, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;
    bool neg = false;
    size_t digits = 0;

    while (i < n && is_space(p[i])) {
        i++;
    }
    if (i < n && (p[i] == '+' || p[i] == '-')) {
        neg = p[i] == '-';
        i++;
    }
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    if (digits == 0 || (i < n && !is_space(p[i]) && p[i] != '\0')) {
        return false;
    }
    if (neg) {
        v = (uint64_t)0 - v;
        if ((int64_t)v < 0) {
            return false;
        }
    }
    *out = v;
    return true;
}

static size_t
format_u64(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) {
        buf[i] = tmp[n - 1 - i];
    }
    return n;
}

/* A new item for key holding a decimal number (with the tags and key
 * marking of `like`, the item it replaces, if any, else `extras`). */
static item_t *
number_item(struct corral *c, const void *key, size_t nkey, uint64_t v,
            uint32_t flags, uint32_t exptime, uint32_t now,
            const item_t *like, unsigned extras)
{
    char digits[20];
    size_t n = format_u64(digits, v);
    size_t ntags = like != NULL ? item_ntags(like) : 0;
    item_t *it;

    if (like != NULL) {
        extras = item_ext_mask(like) & EXT_BINKEY;
    }
    it = item_create_ext(&c->mem, key, nkey, n, flags, ntags, extras, NULL);
    if (it != NULL) {
        if (ntags > 0) {
            item_copy_tags(it, like);
        }
        memcpy(item_value(it), digits, n);
        atomic_store(&it->exptime, exptime);
        atomic_store(&it->atime, now);
    }
    return it;
}

CORRAL_API corral_status_t
corral_arith(corral_t *c, const void *key, size_t nkey,
             const corral_arith_opts_t *opts, corral_arith_result_t *out)
{
    static const corral_arith_opts_t defaults = {0, 1, 0, 0, 0, 0};
    const corral_arith_opts_t *o = opts != NULL ? opts : &defaults;
    bool decr = (o->options & CORRAL_ARITH_DECR) != 0;
    int created = 0;
    corral_status_t st = CORRAL_OK;
    item_t *it, *fresh = NULL;
    uint64_t v = 0;
    struct shard *s;
    uint32_t now;
    uint64_t h;

    assert(c != NULL);
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (!key_ok(key, nkey)) {
        return CORRAL_EINVAL;
    }
    h = hash_key(c->seed, key, nkey);
    s = cache_shard(c, h);
    now = cache_now(c);

    shard_wrlock(s);
    it = shard_find_live(c, s, h, key, nkey, now, NULL);
    if (it == NULL) {
        COUNT_ID(s, decr ? ST_decr_misses : ST_incr_misses);
        if (!(o->options & CORRAL_ARITH_VIVIFY)) {
            st = CORRAL_ENOTFOUND;
        } else {
            v = o->initial;
            fresh = number_item(
                c, key, nkey, v, 0, exptime_abs(o->vivify_exptime, now), now,
                NULL,
                (o->options & CORRAL_ARITH_BINARY_KEY) ? EXT_BINKEY : 0);
            item_t *linked = fresh;
            st = fresh == NULL ? CORRAL_ENOMEM
                               : cache_install(c, s, h, &linked, NULL, NULL);
            it = st == CORRAL_OK ? linked : NULL;
            if (st == CORRAL_OK && linked == fresh) {
                fresh = NULL; /* the cache's now; else freed below */
            }
            created = st == CORRAL_OK;
        }
    } else if (o->cas != 0 && o->cas != item_cas(it)) {
        st = CORRAL_EEXISTS;
    } else if (!parse_u64(it->data + it->nkey, it->nvalue, &v)) {
        st = CORRAL_ENONNUMERIC;
    } else {
        char digits[20];
        size_t n;

        COUNT_ID(s, decr ? ST_decr_hits : ST_incr_hits);
        v = decr ? (v < o->delta ? 0 : v - o->delta) : v + o->delta;
        n = format_u64(digits, v);
        if (n <= it->nvalue && item_unshared(it, 1)) {
            /* Nobody can be reading it: rewrite in place, padded with
             * spaces as memcached does. */
            uint64_t cas = shard_next_cas(c, s);
            lease_break(s, h, key, nkey);
            memcpy(item_value(it), digits, n);
            memset(item_value(it) + n, ' ', it->nvalue - n);
            atomic_store_explicit(&it->cas, cas, memory_order_relaxed);
            emit(c, s, CORRAL_EVENT_OVERWRITE, key, nkey, cas, 0, 0);
        } else {
            fresh = number_item(c, key, nkey, v, item_flags(it),
                                item_exptime(it), now, it, 0);
            if (fresh == NULL) {
                st = CORRAL_ENOMEM;
            } else {
                item_t *linked = fresh;
                item_ref(it);
                st = cache_install(c, s, h, &linked, it, NULL);
                shard_unref(s, it);
                if (st == CORRAL_OK) {
                    it = linked;
                    if (linked == fresh) {
                        fresh = NULL; /* else freed below */
                    }
                } else {
                    it = NULL;
                }
            }
        }
    }
    if (st == CORRAL_OK && (o->options & CORRAL_ARITH_TOUCH)) {
        atomic_store_explicit(&it->exptime,
                              exptime_abs(o->touch_exptime, now),
                              memory_order_relaxed);
    }
    if (st == CORRAL_OK && out != NULL) {
        out->value = v;
        out->cas = item_cas(it);
        out->ttl = exptime_ttl(item_exptime(it), now);
        out->created = created;
    }
    shard_write_done(c, s);
    shard_unlock(s);
    cache_deliver(c);
    if (fresh != NULL) {
        item_unref(fresh);
    }
    return st;
}

static corral_status_t
arith_simple(corral_t *c, const void *key, size_t nkey, uint64_t delta,
             unsigned options, uint64_t *out_value)
{
    corral_arith_opts_t o = {0};
    corral_arith_result_t r;
    corral_status_t st;

    o.options = options;
    o.delta = delta;
    st = corral_arith(c, key, nkey, &o, &r);
    if (st == CORRAL_OK && out_value != NULL) {
        *out_value = r.value;
    }
    return st;
}

CORRAL_API corral_status_t
corral_incr(corral_t *c, const void *key, size_t nkey, uint64_t delta,
            uint64_t *out_value)
{
    return arith_simple(c, key, nkey, delta, 0, out_value);
}

CORRAL_API corral_status_t
corral_decr(corral_t *c, const void *key, size_t nkey, uint64_t delta,
            uint64_t *out_value)
{
    return arith_simple(c, key, nkey, delta, CORRAL_ARITH_DECR, out_value);
}

/* ---------------------------------------------------------------------- */
/* Flush, sweep, stats                                                    */

/* Flush now or at `when`; the events carry origin.  With keep_pending (a
 * flush for missed invalidations, not a user's), an immediate flush leaves
 * a delayed one that has not come yet pending, and says so in a second
 * event, so that whoever applies the events in order ends in the same
 * state. */
static void
flush_all(struct corral *c, int64_t when, uint64_t origin, bool keep_pending)
{
    uint32_t now = cache_now(c);
    uint32_t at = when > 0 ? exptime_abs(when, now) : 0;
    uint32_t pending = 0;

    COUNT(&c->shards[0], cmd_flush);
    fetch_flushed(&c->fetch);
    if (at > now) {
        /* memcached: items last stored (or used) at or before the second
         * before the deadline are flushed once it arrives. */
        atomic_store(&c->oldest_live, at - 1);
    } else {
        uint32_t ol = atomic_load(&c->oldest_live);
        at = 0;
        if (keep_pending && ol > now) {
            pending = ol + 1;
        } else {
            atomic_store(&c->oldest_live, 0);
        }
        for (unsigned i = 0; i < c->nshards; i++) {
            struct shard *s = &c->shards[i];
            shard_wrlock(s);
            s->flush_cas = (s->cas_seq << c->shard_bits) | s->index;
            shard_prune_prefix_rules(s);
            shard_unlock(s);
        }
    }
    if (events_wanted(&c->events)) {
        struct shard *s = &c->shards[0];
        shard_wrlock(s); /* events are recorded under a shard lock */
        emit(c, s, CORRAL_EVENT_FLUSH, NULL, 0, 0, origin, at);
        if (pending != 0) {
            emit(c, s, CORRAL_EVENT_FLUSH, NULL, 0, 0, origin, pending);
        }
        shard_unlock(s);
        cache_deliver(c);
    }
}

CORRAL_API corral_status_t
corral_flush(corral_t *c, int64_t when)
{
    assert(c != NULL);
    flush_all(c, when, 0, false);
    return CORRAL_OK;
}

/* ---------------------------------------------------------------------- */
/* Tags, prefixes, events                                                 */

static corral_status_t
invalidate_tag(struct corral *c, const char *tag, size_t len,
               uint64_t origin)
{
    struct shard *s = &c->shards[0];

    if (tag == NULL || len == 0 || len > CORRAL_TAG_MAX ||
        memchr(tag, '\0', len) != NULL) {
        return CORRAL_EINVAL;
    }
    /* The shard lock orders the event with the other events; the tag
     * itself needs no shard lock. */
    shard_wrlock(s);
    tag_invalidate(&c->tags, tag, len);
    COUNT(s, tag_invalidations);
    emit(c, s, CORRAL_EVENT_TAG, tag, len, 0, origin, 0);
    shard_unlock(s);
    cache_deliver(c);
    return CORRAL_OK;
}

CORRAL_API corral_status_t
corral_invalidate_tag(corral_t *c, const char *tag)
{
    assert(c != NULL);
    if (tag == NULL) {
        return CORRAL_EINVAL;
    }
    return invalidate_tag(c, tag, strnlen(tag, CORRAL_TAG_MAX + 1), 0);
}

static corral_status_t
invalidate_prefix(struct corral *c, const void *prefix, size_t len,
                  uint64_t origin)
{
    if (prefix == NULL || len == 0 || len > CORRAL_KEY_MAX) {
        return CORRAL_EINVAL;
    }
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        shard_wrlock(s);
        shard_add_prefix_rule(c, s, prefix, len);
        if (i == 0) {
            COUNT(s, prefix_invalidations);
            emit(c, s, CORRAL_EVENT_PREFIX, prefix, len, 0, origin, 0);
        }
        shard_unlock(s);
    }
    cache_deliver(c);
    return CORRAL_OK;
}

CORRAL_API corral_status_t
corral_invalidate_prefix(corral_t *c, const void *prefix, size_t nprefix)
{
    assert(c != NULL);
    return invalidate_prefix(c, prefix, nprefix, 0);
}

CORRAL_API corral_status_t
corral_invalidate(corral_t *c, const corral_invalidation_t *inv)
{
    assert(c != NULL && inv != NULL);
    switch (inv->type) {
    case CORRAL_EVENT_DELETE: {
        corral_status_t st = delete_key(c, inv->name, inv->len, NULL,
                                        inv->origin, true);
        return st == CORRAL_ENOTFOUND ? CORRAL_OK : st;
    }
    case CORRAL_EVENT_TAG:
        return invalidate_tag(c, inv->name, inv->len, inv->origin);
    case CORRAL_EVENT_PREFIX:
        return invalidate_prefix(c, inv->name, inv->len, inv->origin);
    case CORRAL_EVENT_FLUSH:
        flush_all(c, inv->flush_time, inv->origin, false);
        return CORRAL_OK;
    case CORRAL_EVENT_GAP:
        flush_all(c, 0, inv->origin, true);
        return CORRAL_OK;
    default:
        return CORRAL_EINVAL;
    }
}

CORRAL_API corral_status_t
corral_subscribe(corral_t *c, corral_event_fn fn, void *ud, uint64_t since,
                 corral_sub_t **out_sub)
{
    assert(c != NULL && fn != NULL && out_sub != NULL);
    *out_sub = NULL;
    return events_subscribe(&c->events, fn, ud, since, out_sub);
}

CORRAL_API void
corral_unsubscribe(corral_t *c, corral_sub_t *sub)
{
    assert(c != NULL);
    if (sub != NULL) {
        events_unsubscribe(sub);
    }
}

CORRAL_API corral_status_t
corral_subscribe_evictions(corral_t *c, corral_event_fn fn, void *ud,
                           corral_sub_t **out_sub)
{
    assert(c != NULL && fn != NULL && out_sub != NULL);
    *out_sub = NULL;
    return events_subscribe(&c->evictions, fn, ud, 0, out_sub);
}

CORRAL_API uint64_t
corral_event_seq(corral_t *c)
{
    assert(c != NULL);
    return events_next_seq(&c->events);
}

CORRAL_API corral_status_t
corral_set_max_memory(corral_t *c, size_t max_memory)
{
    size_t per;

    assert(c != NULL);
    per = max_memory / c->nshards;
    if (max_memory < MIN_MAX_MEMORY || per < 2 * c->cfg.max_item_size) {
        return CORRAL_EINVAL;
    }
    /* The limit first, then each shard takes its share of the limit as it
     * is when the shard is locked: of two calls at once, every shard ends
     * with the share of the one that stored last. */
    atomic_store_explicit(&c->max_memory, max_memory, memory_order_relaxed);
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        shard_wrlock(s);
        shard_set_budget(s, atomic_load_explicit(&c->max_memory,
                                                 memory_order_relaxed) /
                                c->nshards);
        shard_unlock(s);
    }
    cache_deliver(c);
    return CORRAL_OK;
}

CORRAL_API size_t
corral_sweep(corral_t *c, size_t budget)
{
    size_t freed = 0;
    size_t per = budget / c->nshards + 1;

    assert(c != NULL);
    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        shard_wrlock(s);
        freed += shard_sweep(c, s, per);
        shard_trim(c, s);
        if (s->retired != NULL) {
            shard_reap(s); /* what an idle shard would keep otherwise */
        }
        shard_unlock(s);
    }
    if (ld_relaxed(&pin_orphans_waiting)) {
        pin_collect();
    }
    return freed;
}

/* The oldest last access among the items next in line for eviction (the
 * tails of every shard's queues): memcached's LRU "age".  Takes each
 * shard's read lock in turn. */
static uint64_t
oldest_item_age(struct corral *c)
{
    uint32_t now = cache_now(c);
    uint64_t age = 0;

    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        const item_t *tails[2];

        shard_rdlock(s);
        tails[0] = policy_oldest(&s->policy, false);
        tails[1] = policy_oldest(&s->policy, true);
        for (int q = 0; q < 2; q++) {
            uint32_t at = tails[q] != NULL ? item_atime(tails[q]) : now;
            if (now > at && now - at > age) {
                age = now - at;
            }
        }
        shard_unlock(s);
    }
    return age;
}

CORRAL_API void
corral_stats(const corral_t *c, corral_stats_t *out, size_t size)
{
    corral_stats_t all;

    assert(c != NULL && out != NULL);
    memset(&all, 0, sizeof(all));
    for (unsigned i = 0; i < c->nshards; i++) {
        stats_sum_gauges(&c->shards[i].stats, (uint64_t *)&all);
    }
    stats_reg_sum(&((struct corral *)c)->counters, (uint64_t *)&all);
    all.cmd_get = all.get_hits + all.get_misses; /* every lookup is one */
    all.limit_maxbytes = atomic_load_explicit(
        &((struct corral *)c)->max_memory, memory_order_relaxed);
    all.tags_live = atomic_load_explicit(&((struct corral *)c)->tags.records,
                                         memory_order_relaxed);
    all.oldest_item_age = oldest_item_age((struct corral *)c);
    memcpy(out, &all, size < sizeof(all) ? size : sizeof(all));
}

CORRAL_API void
corral_stats_reset(corral_t *c)
{
    assert(c != NULL);
    stats_reg_reset(&c->counters);
}
