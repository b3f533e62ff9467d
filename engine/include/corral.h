/*
 * corral.h - the public interface of libcorral, an in-process cache engine.
 *
 * This header is the whole API: anything not declared here is internal.
 *
 * Model.  A cache (corral_t) maps keys (1..250 bytes, any bytes) to items.
 * An item holds a value (0..max_item_size bytes), 32-bit client flags, a
 * 64-bit CAS that changes on every mutation, and an expiry time.  The key
 * space is split into shards; each shard has its own lock, hash table,
 * memory budget and eviction state, so threads working on different shards
 * never contend, and hits on one shard do not serialise (shared locks).
 *
 * Time.  Expiry times ("exptime") follow memcached: 0 never expires, 1 up to
 * 30 days (2592000) is relative to now in seconds, anything larger is an
 * absolute Unix time, and a negative value or a time in the past means the
 * item is already expired.  The clock is injectable (corral_config_t.clock).
 *
 * Ownership.  Keys, values and option structs passed in are copied before
 * return (or only read during the call) unless a comment says otherwise.
 * Items returned by the get family are pinned: the value pointer stays valid,
 * and the bytes unchanged, until the caller passes the item to
 * corral_item_release(), even if the key is overwritten, deleted or evicted
 * meanwhile.  Every function with an out_item parameter documents this.
 *
 * Threads.  Every function taking a corral_t may be called from any number of
 * threads at once, except corral_destroy(), which must be the last call.
 * Items may be read and released from any thread.
 *
 * Errors.  Functions return corral_status_t: CORRAL_OK (0) or a negative code
 * named in CORRAL_STATUS_TABLE; corral_strerror() describes one.  Misuse
 * (NULL cache, NULL out pointer) is a programming error checked by assert in
 * debug builds; bad data (an oversized key, say) gets CORRAL_EINVAL.
 *
 * Option structs (corral_get_opts_t and friends) are plain structs that the
 * caller zero-initialises ("= {0}") and fills; zero always means the default
 * behaviour.  corral_config_t is different: it starts with its own size and
 * must be filled by corral_config_init() first.
 */
#ifndef CORRAL_H
#define CORRAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CORRAL_BUILDING) && defined(__GNUC__)
#define CORRAL_API __attribute__((visibility("default")))
#else
#define CORRAL_API
#endif

#define CORRAL_VERSION_MAJOR 0
#define CORRAL_VERSION_MINOR 1
#define CORRAL_VERSION_PATCH 0

/* The longest key, in bytes, as in memcached. */
#define CORRAL_KEY_MAX 250

/* Tags: at most this many per item, each 1..CORRAL_TAG_MAX bytes. */
#define CORRAL_TAGS_MAX 8
#define CORRAL_TAG_MAX 250

/* Exptimes above this many seconds are absolute Unix times (30 days). */
#define CORRAL_RELTIME_MAX 2592000

/*
 * Status codes.  X(name, value, description): one table generates the enum
 * and the strings corral_strerror() returns.
 */
#define CORRAL_STATUS_TABLE(X)                                                \
    X(OK, 0, "success")                                                       \
    X(ENOTFOUND, -1, "not found")                                             \
    X(EEXISTS, -2, "the item was modified since its CAS was read")            \
    X(ENOTSTORED, -3, "not stored: the mode's condition was not met")         \
    X(ENOMEM, -4, "out of memory")                                            \
    X(ETOOBIG, -5, "item larger than the maximum item size")                  \
    X(EINVAL, -6, "invalid argument")                                         \
    X(ENONNUMERIC, -7, "value is not a decimal unsigned 64-bit number")       \
    X(ERANGE, -8, "buffer too small")                                         \
    X(ETIMEDOUT, -9, "timed out")                                             \
    X(ESTALE, -10, "stale: superseded by a newer write or invalidation")      \
    X(EBUSY, -11, "busy: a circuit is open or a queue is full")              \
    X(ELOAD, -12, "the loader failed")

typedef enum corral_status {
#define CORRAL_STATUS_ENUM(name, value, text) CORRAL_##name = (value),
    CORRAL_STATUS_TABLE(CORRAL_STATUS_ENUM)
#undef CORRAL_STATUS_ENUM
} corral_status_t;

/* An opaque cache.  Create with corral_create(), free with corral_destroy(). */
typedef struct corral corral_t;

/* An opaque pinned item, released with corral_item_release(). */
typedef struct corral_item corral_item_t;

/*
 * A clock: nanoseconds since the Unix epoch.  The default is
 * CLOCK_MONOTONIC shifted by the whole number of seconds that made it read
 * CLOCK_REALTIME at creation (to within half a second), so it never steps
 * backwards and its seconds begin where the whole-second item times do.
 * Tests inject their own.  Must be thread-safe.
 */
typedef uint64_t (*corral_clock_fn)(void *ud);

/* Log levels for corral_log_fn. */
enum corral_log_level {
    CORRAL_LOG_ERROR = 0,
    CORRAL_LOG_WARN = 1,
    CORRAL_LOG_INFO = 2,
    CORRAL_LOG_DEBUG = 3
};

/*
 * An optional log sink.  The engine never prints; it reports rare events
 * (allocation failures, for instance) here.  Called without any engine lock
 * held.  msg is borrowed for the duration of the call.
 */
typedef void (*corral_log_fn)(void *ud, int level, const char *msg);

/* Eviction policies. */
typedef enum corral_policy {
    /* S3-FIFO: a small probationary FIFO, a main FIFO with reinsertion and
     * a ghost FIFO of recently evicted keys.  A hit sets a counter bit and
     * never moves list nodes. */
    CORRAL_POLICY_S3FIFO = 0
} corral_policy_t;

/*
 * Cache configuration.  Fill with corral_config_init(), then change fields.
 * Fields are only ever appended; `size` lets the library tell which exist.
 */
typedef struct corral_config {
    size_t size;           /* sizeof(corral_config_t); set by init */
    size_t max_memory;     /* memory limit in bytes, counted as allocated:
                            * items, hash tables and eviction metadata.
                            * Not counted: fixed per-cache structures,
                            * tag records, pending prefix rules, the
                            * event ring, loads in flight and queued
                            * write-behind writes (each bounded, see
                            * their functions), and items evicted or
                            * removed while a reader still pins them
                            * (freed when released).  Default 64 MiB.
                            * Minimum 1 MiB. */
    size_t max_items;      /* item count limit; 0 (default) = no limit.
                            * Split exactly between the shards, so with
                            * several shards a cache may evict before it
                            * holds max_items (its keys do not spread
                            * perfectly); at least one item per shard.
                            * The hash tables start with room for it, up
                            * to an eighth of max_memory, and grow past
                            * that as items come */
    size_t max_item_size;  /* largest item (key + value + metadata), bytes.
                            * Default 1 MiB; 1 KiB .. max_memory / 2, at
                            * most 1 GiB (as memcached's -I). */
    unsigned shards;       /* a power of two up to 1024; 0 (default) picks
                            * 32 per CPU, at most 256, fewer when a shard
                            * would hold less than 8 items of
                            * max_item_size or (with max_items) less than
                            * 4096 items */
    corral_policy_t policy;   /* default CORRAL_POLICY_S3FIFO */
    corral_clock_fn clock;    /* default NULL: the system clock */
    void *clock_ud;
    corral_log_fn log;        /* default NULL: no logging */
    void *log_ud;
    size_t event_ring;        /* invalidation events held for subscribers
                               * that fall behind or replay (see
                               * corral_subscribe); default 4096, 16 ..
                               * 1048576, about 330 bytes each, allocated
                               * on the first subscription (and as many
                               * again on the first
                               * corral_subscribe_evictions) */
    unsigned refresh_threads; /* threads for background refreshes
                               * (CORRAL_FETCH_BACKGROUND), started on
                               * first use; default 2, at most 64 */
    unsigned breaker_failures;/* consecutive loader failures (any key)
                               * that open the circuit breaker; 0 turns it
                               * off; default 20 */
    int64_t breaker_open_ms;  /* how long it stays open before letting one
                               * trial load through; default 1000, at
                               * least 0 */
    int64_t backoff_min_ms;   /* first retry delay of a failing key's
                               * loader; doubles per failure, with jitter;
                               * default 100, at least 1 */
    int64_t backoff_max_ms;   /* cap of that delay; default 10000, at
                               * least backoff_min_ms */
} corral_config_t;

/*
 * corral_config_init - fill a config with the documented defaults.
 *
 * @cfg (OUT): caller memory; every field is written.
 * Thread-safe; O(1).
 */
CORRAL_API void corral_config_init(corral_config_t *cfg);

/*
 * corral_create - create a cache.
 *
 * @cfg: the configuration, or NULL for the defaults.  Read during the call
 *       only.
 * @out_cache (OUT): the new cache; the caller frees it with
 *       corral_destroy().
 * Returns CORRAL_OK, CORRAL_EINVAL for an inconsistent configuration (a
 * shard count that is not a power of two, limits out of range), or
 * CORRAL_ENOMEM.
 * Thread-safe (caches share nothing); O(shards).
 */
CORRAL_API corral_status_t corral_create(const corral_config_t *cfg,
                                         corral_t **out_cache);

/*
 * corral_destroy - free a cache and every item in it.  NULL is a no-op.
 *
 * First the background refreshes still queued run (their loaders may use
 * the cache, corral_put() included), then every write-behind write
 * queued is written (waiting as long as the writer keeps failing; see
 * corral_write_flush), then the cache's threads stop.
 * Items still pinned by the caller stay valid until released (after
 * this returns, not while it runs).
 * Not thread-safe: no other call on this cache may run or follow, except
 * from those loaders and writers while it runs.
 * O(items), plus the waits above.
 */
CORRAL_API void corral_destroy(corral_t *cache);

/*
 * corral_version - the library version, "MAJOR.MINOR.PATCH".
 * Static storage; thread-safe.
 */
CORRAL_API const char *corral_version(void);

/*
 * corral_strerror - a description of a status code.
 * Static storage; an unknown code gets "unknown status".  Thread-safe.
 */
CORRAL_API const char *corral_strerror(corral_status_t status);

/*
 * corral_config_get - the configuration a cache runs with, defaults and
 * automatic choices (the shard count, for one) resolved.
 *
 * @out_cfg (OUT): caller memory, filled completely.
 * Thread-safe; O(1).
 */
CORRAL_API void corral_config_get(const corral_t *cache,
                                  corral_config_t *out_cfg);

/* ---------------------------------------------------------------------- */
/* Items                                                                  */
/* ---------------------------------------------------------------------- */

/*
 * corral_item_release - unpin an item returned by the get family.
 * NULL is a no-op.  After the call the item and its pointers are invalid.
 * Any thread may release an item, not only the one that got it.
 * Thread-safe; O(1).
 *
 * Cost of a pin: a thread pins the first 24 items it holds at once by
 * storing into a slot of its own, which writes nothing that other threads
 * read.  Each item it holds beyond those takes a small allocation and a
 * reference count.  Memory of an evicted or deleted item that a reader
 * still held goes back (with the rest of its segment) after the release,
 * when the shard next frees a batch of segments or corral_sweep() runs.
 */
CORRAL_API void corral_item_release(corral_item_t *item);

/*
 * corral_item_key / corral_item_value - the item's key or value bytes.
 *
 * @out_len (OUT, may be NULL): the length in bytes.
 * Returns a pointer borrowed until corral_item_release(); the bytes never
 * change while the item is pinned.  The value is not NUL-terminated.
 * Thread-safe; O(1).
 */
CORRAL_API const void *corral_item_key(const corral_item_t *item,
                                       size_t *out_len);
CORRAL_API const void *corral_item_value(const corral_item_t *item,
                                         size_t *out_len);

/* corral_item_flags - the 32-bit client flags.  O(1). */
CORRAL_API uint32_t corral_item_flags(const corral_item_t *item);

/* corral_item_cas - the CAS of the item as it was when pinned.  O(1). */
CORRAL_API uint64_t corral_item_cas(const corral_item_t *item);

/*
 * corral_item_tags - the tags an item was stored with.
 *
 * @out_tags (OUT, may be NULL): up to @max NUL-terminated names, borrowed
 *       until corral_item_release().
 * Returns the item's number of tags (which may exceed max).  O(tags).
 */
CORRAL_API size_t corral_item_tags(const corral_item_t *item,
                                   const char **out_tags, size_t max);

/*
 * corral_item_key_binary - 1 if the item was stored with
 * CORRAL_STORE_BINARY_KEY (or vivified with CORRAL_GET_BINARY_KEY or
 * CORRAL_ARITH_BINARY_KEY), else 0: a mark the engine keeps for the
 * caller (memcached's meta protocol reports such keys in base64).  Values
 * derived from the item (append, incr) keep it.  O(1).
 */
CORRAL_API int corral_item_key_binary(const corral_item_t *item);

/*
 * corral_item_ttl - remaining time to live in whole seconds, as the cache's
 * clock reads now: -1 when the item never expires, else >= 0.  O(1).
 */
CORRAL_API int64_t corral_item_ttl(const corral_t *cache,
                                   const corral_item_t *item);

/*
 * Everything the engine knows about an item, for introspection
 * (memcached's "me" command, debugging).  Filled by corral_item_info().
 */
typedef struct corral_item_info {
    uint32_t flags;          /* client flags */
    uint64_t cas;            /* CAS */
    int64_t exptime;         /* absolute Unix expiry time; 0 = never */
    int64_t ttl;             /* remaining seconds; -1 = never expires */
    int64_t last_access;     /* seconds since the last access */
    int fetched;             /* 1 if fetched since it was stored */
    int stale;               /* 1 if marked stale (corral_delete_ex) */
    int binary_key;          /* 1 if stored with a BINARY_KEY option */
    size_t nkey;             /* key length */
    size_t nvalue;           /* value length */
    size_t alloc_size;       /* bytes the item occupies in memory */
} corral_item_info_t;

/*
 * corral_item_info - describe a pinned item.
 * @out_info (OUT): caller memory, filled completely.  O(1).
 */
CORRAL_API void corral_item_info(const corral_t *cache,
                                 const corral_item_t *item,
                                 corral_item_info_t *out_info);

/* ---------------------------------------------------------------------- */
/* Retrieval                                                              */
/* ---------------------------------------------------------------------- */

/*
 * corral_get - look a key up.
 *
 * @key, @nkey: the key, 1..CORRAL_KEY_MAX bytes; read during the call only.
 * @out_item (OUT): on CORRAL_OK, the pinned item; the caller releases it
 *       with corral_item_release().  Set to NULL otherwise.
 * Returns CORRAL_OK, CORRAL_ENOTFOUND (absent, expired, flushed or
 * invalidated) or CORRAL_EINVAL (bad key); CORRAL_ENOMEM only when the
 * item is pinned about 65,000 times at once and the private copy handed
 * out instead cannot be made: no memory, or the private copies
 * outstanding (of all caches in the process) already take an eighth of
 * max_memory (at least max_item_size).
 * Counts as an access for eviction.  Thread-safe; takes the key's shard
 * lock shared; O(1) expected.
 */
CORRAL_API corral_status_t corral_get(corral_t *cache, const void *key,
                                      size_t nkey, corral_item_t **out_item);

/*
 * corral_get_copy - look a key up and copy its value out.
 *
 * @buf, @cap: where the value goes.
 * @out_len (OUT, may be NULL): the value's length, also when it does not
 *       fit.
 * @out_flags, @out_cas (OUT, may be NULL): the client flags and CAS.
 * Returns CORRAL_OK, CORRAL_ENOTFOUND, CORRAL_EINVAL, or CORRAL_ERANGE when
 * cap is smaller than the value (nothing is copied; *out_len says how much
 * room is needed).  Thread-safe; O(1) expected plus the copy.
 */
CORRAL_API corral_status_t corral_get_copy(corral_t *cache, const void *key,
                                           size_t nkey, void *buf, size_t cap,
                                           size_t *out_len,
                                           uint32_t *out_flags,
                                           uint64_t *out_cas);

/*
 * corral_get_multi - look several keys up.
 *
 * @n: number of keys.  @keys, @nkeys: the keys and their lengths.
 * @out_items (OUT): n slots; slot i receives the pinned item for key i, or
 *       NULL on a miss, a bad key, or a hit that could not be pinned
 *       (no memory for the thread's pin slots).  The caller releases
 *       every non-NULL slot with corral_item_release().
 * Returns the number of hits.  Thread-safe; O(n) expected.
 */
CORRAL_API size_t corral_get_multi(corral_t *cache, size_t n,
                                   const void *const *keys,
                                   const size_t *nkeys,
                                   corral_item_t **out_items);

/*
 * corral_get_multi_ex - corral_get_multi, also saying why each miss
 * missed.
 * @out_reasons (OUT, may be NULL): n slots; slot i gets 0 for a hit or a
 *       plain miss, else one of CORRAL_RES_MISS_EXPIRED, _FLUSHED or
 *       _INVALIDATED.
 */
CORRAL_API size_t corral_get_multi_ex(corral_t *cache, size_t n,
                                      const void *const *keys,
                                      const size_t *nkeys,
                                      corral_item_t **out_items,
                                      unsigned *out_reasons);

/*
 * corral_gat - get and touch: look a key up and, on a hit, set its expiry.
 * Same contract as corral_get(); @exptime as described at the top.
 * Takes the shard lock exclusively.  O(1) expected.
 */
CORRAL_API corral_status_t corral_gat(corral_t *cache, const void *key,
                                      size_t nkey, int64_t exptime,
                                      corral_item_t **out_item);

/* Options for corral_get_ex(): OR of these in corral_get_opts_t.flags. */
#define CORRAL_GET_NOBUMP 0x1u  /* not an access: no hit mark, no atime */
#define CORRAL_GET_TOUCH 0x2u   /* on a hit set exptime to touch_exptime */
#define CORRAL_GET_VIVIFY 0x4u  /* on a miss create an empty item with
                                 * vivify_exptime and win it (see below) */
#define CORRAL_GET_RECACHE 0x8u /* win when the remaining TTL is below
                                 * recache_ttl seconds */
#define CORRAL_GET_BINARY_KEY 0x10u /* a vivified item is marked as having
                                     * a binary key */
#define CORRAL_GET_EARLY 0x20u  /* win early, with XFetch's probability:
                                 * when now - delta * beta * ln(u) reaches
                                 * the expiry, u uniform in (0, 1], delta
                                 * learned per key as the time from a win to
                                 * the store that followed it (or the fetch
                                 * load time) */

typedef struct corral_get_opts {
    unsigned flags;            /* CORRAL_GET_* */
    int64_t touch_exptime;     /* with CORRAL_GET_TOUCH */
    int64_t vivify_exptime;    /* with CORRAL_GET_VIVIFY */
    int64_t recache_ttl;       /* with CORRAL_GET_RECACHE */
    double beta;               /* with CORRAL_GET_EARLY; 0 means 1.0 */
} corral_get_opts_t;

/* Result bits in corral_get_result_t.flags. */
#define CORRAL_RES_WIN 0x1u        /* the caller won the right to recache:
                                    * no other caller gets this bit until
                                    * the item is replaced */
#define CORRAL_RES_STALE 0x2u      /* the item is marked stale */
#define CORRAL_RES_LOST 0x4u       /* another caller already won */
#define CORRAL_RES_HIT_BEFORE 0x8u /* had been fetched before this call */
#define CORRAL_RES_VIVIFIED 0x10u  /* the item was created by this call */
#define CORRAL_RES_MISS_EXPIRED 0x20u     /* a miss: the item had expired */
#define CORRAL_RES_MISS_FLUSHED 0x40u     /* a miss: flushed */
#define CORRAL_RES_MISS_INVALIDATED 0x80u /* a miss: tag or prefix */

typedef struct corral_get_result {
    unsigned flags;            /* CORRAL_RES_* */
    int64_t last_access;       /* seconds since the access before this one */
    int64_t ttl_before;        /* on a hit: the remaining TTL before this
                                * call changed it (-1 = never expires) */
} corral_get_result_t;

/*
 * corral_get_ex - the general lookup behind memcached's meta get.
 *
 * Recache tokens: an item carries one "win" that is handed to exactly one
 * caller until the item is replaced.  A caller wins it (CORRAL_RES_WIN) when
 * it vivifies a missing key, when the item is stale, or with
 * CORRAL_GET_RECACHE when the item's remaining TTL is below recache_ttl;
 * once handed out, later callers in those situations see CORRAL_RES_LOST.
 *
 * @opts: may be NULL (then this is corral_get()); read during the call.
 * @out_item (OUT): as corral_get(); a vivified item is returned pinned too.
 * @out_res (OUT, may be NULL): result bits and the previous access time.
 * Returns CORRAL_OK, CORRAL_ENOTFOUND, CORRAL_EINVAL, or CORRAL_ENOMEM when
 * vivifying fails.  Shard lock shared, or exclusive with TOUCH or VIVIFY.
 */
CORRAL_API corral_status_t corral_get_ex(corral_t *cache, const void *key,
                                         size_t nkey,
                                         const corral_get_opts_t *opts,
                                         corral_item_t **out_item,
                                         corral_get_result_t *out_res);

/* ---------------------------------------------------------------------- */
/* Storage                                                                */
/* ---------------------------------------------------------------------- */

typedef enum corral_mode {
    CORRAL_SET = 0,    /* store unconditionally */
    CORRAL_ADD,        /* store only if absent, else CORRAL_ENOTSTORED */
    CORRAL_REPLACE,    /* store only if present, else CORRAL_ENOTSTORED */
    CORRAL_APPEND,     /* add bytes after the value; keeps flags, exptime */
    CORRAL_PREPEND,    /* add bytes before the value; keeps flags, exptime */
    CORRAL_CAS         /* store only if the CAS matches (opts.cas) */
} corral_mode_t;

/* Options for corral_store(): OR of these in corral_store_opts_t.options. */
#define CORRAL_STORE_INVALIDATE 0x1u /* with a CAS: a CAS older than the
                                      * item's is accepted, and the stored
                                      * item is marked stale */
#define CORRAL_STORE_BINARY_KEY 0x2u /* mark the key as binary (see
                                      * corral_item_key_binary) */

typedef struct corral_store_opts {
    corral_mode_t mode;
    uint32_t flags;        /* client flags (ignored by append/prepend) */
    int64_t exptime;       /* expiry (ignored by append/prepend) */
    uint64_t cas;          /* nonzero: store only if the item exists with
                            * this CAS (CORRAL_CAS needs it: with 0 it
                            * matches no item, CORRAL_EEXISTS or
                            * CORRAL_ENOTFOUND; other modes accept it as
                            * an extra condition) */
    unsigned options;      /* CORRAL_STORE_* */
    const char *const *tags; /* NUL-terminated tag names, or NULL; copied.
                              * Append and prepend keep the item's tags and
                              * ignore these. */
    size_t ntags;          /* 0..CORRAL_TAGS_MAX */
} corral_store_opts_t;

/*
 * corral_store - store a value under a mode.
 *
 * @key, @nkey: 1..CORRAL_KEY_MAX bytes.  @value, @nvalue: the bytes (value
 *       may be NULL when nvalue is 0).  Both copied before return.
 * @opts: may be NULL for a plain set with flags 0 and no expiry.
 * @out_cas (OUT, may be NULL): the new item's CAS on success.
 * Returns CORRAL_OK; CORRAL_ENOTSTORED when an add finds the key or a
 * replace, append or prepend does not; for a CAS store, CORRAL_ENOTFOUND
 * when the key is absent and CORRAL_EEXISTS when the CAS differs;
 * CORRAL_ETOOBIG when the item would exceed max_item_size; CORRAL_ENOMEM
 * when nothing can be evicted to make room (after either, a set without a
 * CAS has also removed the old value, as memcached does, and subscribers
 * get a delete event); CORRAL_EINVAL for a bad key, more
 * than CORRAL_TAGS_MAX tags or a tag that is empty or too long.
 * A nonzero opts->cas makes CORRAL_SET behave as CORRAL_CAS, and makes
 * append and prepend require it (CORRAL_EEXISTS otherwise); add and
 * replace ignore it, as memcached's meta set does.
 * Evicts as needed.  Shard lock exclusive; O(1) amortised plus the copy.
 */
CORRAL_API corral_status_t corral_store(corral_t *cache, const void *key,
                                        size_t nkey, const void *value,
                                        size_t nvalue,
                                        const corral_store_opts_t *opts,
                                        uint64_t *out_cas);

/*
 * Shorthands for corral_store() with one mode.  Same contract.
 */
CORRAL_API corral_status_t corral_set(corral_t *cache, const void *key,
                                      size_t nkey, const void *value,
                                      size_t nvalue, uint32_t flags,
                                      int64_t exptime);
CORRAL_API corral_status_t corral_add(corral_t *cache, const void *key,
                                      size_t nkey, const void *value,
                                      size_t nvalue, uint32_t flags,
                                      int64_t exptime);
CORRAL_API corral_status_t corral_replace(corral_t *cache, const void *key,
                                          size_t nkey, const void *value,
                                          size_t nvalue, uint32_t flags,
                                          int64_t exptime);
CORRAL_API corral_status_t corral_append(corral_t *cache, const void *key,
                                         size_t nkey, const void *value,
                                         size_t nvalue);
CORRAL_API corral_status_t corral_prepend(corral_t *cache, const void *key,
                                          size_t nkey, const void *value,
                                          size_t nvalue);
CORRAL_API corral_status_t corral_cas(corral_t *cache, const void *key,
                                      size_t nkey, const void *value,
                                      size_t nvalue, uint32_t flags,
                                      int64_t exptime, uint64_t cas,
                                      uint64_t *out_cas);

/* ---------------------------------------------------------------------- */
/* Deletion, touch, arithmetic, flush                                     */
/* ---------------------------------------------------------------------- */

/*
 * corral_delete - remove a key.
 * Returns CORRAL_OK, CORRAL_ENOTFOUND or CORRAL_EINVAL.
 * Pinned copies stay readable until released.  Shard lock exclusive; O(1).
 */
CORRAL_API corral_status_t corral_delete(corral_t *cache, const void *key,
                                         size_t nkey);

/* Options for corral_delete_ex(). */
#define CORRAL_DELETE_STALE 0x1u /* keep the item, mark it stale, give it a
                                  * new CAS and a fresh recache token */
#define CORRAL_DELETE_TOUCH 0x2u /* with STALE: also set exptime */

typedef struct corral_delete_opts {
    unsigned options;      /* CORRAL_DELETE_* */
    uint64_t cas;          /* nonzero: act only if the CAS matches, else
                            * CORRAL_EEXISTS */
    int64_t exptime;       /* with CORRAL_DELETE_TOUCH */
} corral_delete_opts_t;

/*
 * corral_delete_ex - delete, conditionally or by marking stale (memcached's
 * meta delete).  @opts may be NULL.  Returns as corral_delete(), plus
 * CORRAL_EEXISTS on a CAS mismatch, and CORRAL_ENOMEM when marking an
 * item stale that readers have pinned (their copy keeps its CAS, so the
 * mark goes on a new copy) finds no memory for the copy.  Shard lock
 * exclusive; O(1) plus that copy.
 */
CORRAL_API corral_status_t corral_delete_ex(corral_t *cache, const void *key,
                                            size_t nkey,
                                            const corral_delete_opts_t *opts);

/*
 * corral_touch - set a key's expiry without reading its value.  Counts
 * as an access for eviction, as memcached's touch does.
 * Returns CORRAL_OK, CORRAL_ENOTFOUND or CORRAL_EINVAL.  The CAS is kept.
 * Shard lock exclusive; O(1).
 */
CORRAL_API corral_status_t corral_touch(corral_t *cache, const void *key,
                                        size_t nkey, int64_t exptime);

/* Options for corral_arith(). */
#define CORRAL_ARITH_DECR 0x1u   /* decrement (stops at 0) instead of incr */
#define CORRAL_ARITH_VIVIFY 0x2u /* on a miss create the item with value
                                  * `initial` and `vivify_exptime` */
#define CORRAL_ARITH_TOUCH 0x4u  /* on success set exptime to
                                  * touch_exptime */
#define CORRAL_ARITH_BINARY_KEY 0x8u /* a vivified item's key is marked
                                      * binary */

typedef struct corral_arith_opts {
    unsigned options;        /* CORRAL_ARITH_* */
    uint64_t delta;          /* amount to add or subtract */
    uint64_t cas;            /* nonzero: only if the CAS matches */
    uint64_t initial;        /* with VIVIFY */
    int64_t vivify_exptime;  /* with VIVIFY */
    int64_t touch_exptime;   /* with TOUCH */
} corral_arith_opts_t;

typedef struct corral_arith_result {
    uint64_t value;          /* the new value */
    uint64_t cas;            /* the item's new CAS */
    int64_t ttl;             /* remaining seconds; -1 = never expires */
    int created;             /* 1 if VIVIFY created the item */
} corral_arith_result_t;

/*
 * corral_arith - add to or subtract from a value holding a decimal
 * unsigned 64-bit number (memcached's incr, decr and meta arithmetic).
 * Increments wrap at 2^64; decrements stop at 0.  The CAS changes.
 *
 * @out (OUT, may be NULL): the new value, CAS and TTL on success.
 * Returns CORRAL_OK, CORRAL_ENOTFOUND, CORRAL_ENONNUMERIC (the value is not
 * a decimal number below 2^64, as memcached reads it: optional leading
 * white space, digits (leading zeros allowed), then the end or white
 * space), CORRAL_EEXISTS (CAS mismatch),
 * CORRAL_ENOMEM, CORRAL_EINVAL.  Shard lock exclusive; O(value length).
 */
CORRAL_API corral_status_t corral_arith(corral_t *cache, const void *key,
                                        size_t nkey,
                                        const corral_arith_opts_t *opts,
                                        corral_arith_result_t *out);

/*
 * corral_incr / corral_decr - shorthands for corral_arith().
 * @out_value (OUT, may be NULL): the new value.
 */
CORRAL_API corral_status_t corral_incr(corral_t *cache, const void *key,
                                       size_t nkey, uint64_t delta,
                                       uint64_t *out_value);
CORRAL_API corral_status_t corral_decr(corral_t *cache, const void *key,
                                       size_t nkey, uint64_t delta,
                                       uint64_t *out_value);

/*
 * corral_flush - invalidate every item, now or at a later time.
 *
 * @when: an exptime: 0 or negative means now; otherwise, as memcached's
 *       "flush_all <delay>" does, once the clock reaches the second before
 *       that moment, every item last stored or read before it becomes a
 *       miss, while items stored from then on are kept.  A new flush
 *       replaces a pending one.
 * Memory is reclaimed lazily and by the incremental sweep.
 * Returns CORRAL_OK.  Takes each shard lock in turn; O(shards).
 */
CORRAL_API corral_status_t corral_flush(corral_t *cache, int64_t when);

/*
 * corral_set_max_memory - change the memory limit of a running cache
 * (memcached's cache_memlimit).  Each shard gets its share at once, and
 * a lower limit evicts down to it before the call returns.  Hash tables
 * keep their size.  corral_config_get() and the limit_maxbytes statistic
 * report the new limit.
 * Returns CORRAL_OK, or CORRAL_EINVAL for a limit under 1 MiB or below
 * twice max_item_size per shard.  Thread-safe; O(shards) plus the
 * evictions.
 */
CORRAL_API corral_status_t corral_set_max_memory(corral_t *cache,
                                                 size_t max_memory);

/*
 * corral_sweep - run the incremental reclamation sweep by hand.
 *
 * Writes already do a little of this work each; an idle cache with expired
 * items unlinks them only when this runs.  Examines about @budget items
 * across the shards and unlinks the expired, flushed and invalidated ones.
 * Items are stored together in segments: an unlinked item's memory goes
 * back once nothing else in its segment is linked (at once for a large
 * item, which has a segment of its own), or when eviction passes it.
 * This call also hands back the segments that hold nothing linked and
 * those that readers held and have released since.  Returns the number of
 * items unlinked.  Thread-safe; O(budget + shards x threads).
 */
CORRAL_API size_t corral_sweep(corral_t *cache, size_t budget);

/* ---------------------------------------------------------------------- */
/* Invalidation and events                                                */
/* ---------------------------------------------------------------------- */

/*
 * corral_invalidate_tag - make every item stored with this tag so far a
 * miss.  Items stored with it afterwards are live.
 *
 * @tag: NUL-terminated, 1..CORRAL_TAG_MAX bytes.
 * Returns CORRAL_OK (also when no item has the tag) or CORRAL_EINVAL.
 * O(1) whatever the number of tagged items: readers find the items invalid
 * (one atomic load per tag of an item), and their memory is reclaimed by
 * eviction, lookups and the sweep afterwards.  Thread-safe.
 */
CORRAL_API corral_status_t corral_invalidate_tag(corral_t *cache,
                                                 const char *tag);

/*
 * corral_invalidate_prefix - make every key that starts with @prefix (as
 * stored so far) a miss.
 *
 * @prefix, @nprefix: 1..CORRAL_KEY_MAX bytes (an empty prefix would be a
 *       flush: use corral_flush).
 * Returns CORRAL_OK or CORRAL_EINVAL.
 * Cost: O(shards) for the caller (a rule is added to each shard; no item
 * is visited).  Until the incremental sweep has passed over a shard once
 * more, lookups there compare the key with each pending rule (at most 64
 * per shard; past that, the oldest rule is applied by walking the shard's
 * items under its lock).  Thread-safe.
 */
CORRAL_API corral_status_t corral_invalidate_prefix(corral_t *cache,
                                                    const void *prefix,
                                                    size_t nprefix);

/* Event types, for corral_event_t.type and corral_invalidate(). */
typedef enum corral_event_type {
    CORRAL_EVENT_DELETE = 1,    /* a key was deleted (or invalidated) */
    CORRAL_EVENT_OVERWRITE = 2, /* a key's value was replaced: set, cas,
                                 * append, prepend, incr, decr */
    CORRAL_EVENT_STALE = 3,     /* a key was marked stale */
    CORRAL_EVENT_TAG = 4,       /* a tag was invalidated */
    CORRAL_EVENT_PREFIX = 5,    /* a key prefix was invalidated */
    CORRAL_EVENT_FLUSH = 6,     /* everything, at flush_time */
    CORRAL_EVENT_GAP = 7,       /* this subscriber missed events from seq
                                 * on: treat everything as invalidated */
    CORRAL_EVENT_EVICT = 8      /* a live item was evicted to make room
                                 * (corral_subscribe_evictions only) */
} corral_event_type_t;

typedef struct corral_event {
    uint64_t seq;               /* +1 per event in this cache */
    corral_event_type_t type;
    const void *name;           /* the key, tag or prefix, NUL-terminated
                                 * (a key may contain NUL bytes: use len);
                                 * borrowed for the callback's duration */
    size_t len;
    uint64_t cas;               /* the item's CAS where there is one: the
                                 * new CAS of an overwrite or a stale mark,
                                 * the old CAS of a delete; else 0 */
    uint64_t origin;            /* who caused it: 0 for calls of this API,
                                 * else the origin given to
                                 * corral_invalidate() */
    int64_t flush_time;         /* FLUSH: Unix time it takes effect, 0 =
                                 * at once */
    /* EVICT only: */
    int64_t ttl;                /* remaining seconds; -1 = never expires */
    int64_t last_access;        /* seconds since the last access */
    int fetched;                /* 1 if it was read after being stored */
    size_t nvalue;              /* its value's length */
    uint32_t flags;             /* its client flags */
} corral_event_t;

/* An event callback.  Runs with no engine lock held, one at a time per
 * stream (the invalidation events of corral_subscribe() are one stream,
 * the evictions of corral_subscribe_evictions() another: callbacks of
 * the two may run at the same time), on a thread that made a change; it
 * may call into the cache, including corral_unsubscribe() of itself and
 * corral_put()/corral_remove(). */
typedef void (*corral_event_fn)(const corral_event_t *ev, void *ud);

typedef struct corral_sub corral_sub_t;

/*
 * corral_subscribe - receive invalidation events.
 *
 * Events are recorded only while someone is subscribed.  Keys expiring or
 * being evicted are not invalidations and send nothing.
 * @since: 0 to start with the next event; else the first sequence number
 *       wanted (replayed while the ring still holds it; otherwise the
 *       first event delivered is CORRAL_EVENT_GAP; a number not given
 *       out yet means the next event).
 * @out_sub (OUT): the subscription, ended with corral_unsubscribe().
 * Returns CORRAL_OK or CORRAL_ENOMEM.  A subscriber that falls more than
 * event_ring events behind gets CORRAL_EVENT_GAP and continues from the
 * oldest held event: memory never grows with a slow subscriber.
 * Thread-safe; O(1).
 */
CORRAL_API corral_status_t corral_subscribe(corral_t *cache,
                                            corral_event_fn fn, void *ud,
                                            uint64_t since,
                                            corral_sub_t **out_sub);

/*
 * corral_unsubscribe - end a subscription.  NULL is a no-op.  After it
 * returns the callback is not running and will not run again (unless it
 * is called from inside that callback, which is allowed).  Do not call it
 * while holding a lock the callback takes.  Thread-safe.
 */
CORRAL_API void corral_unsubscribe(corral_t *cache, corral_sub_t *sub);

/*
 * corral_subscribe_evictions - receive a CORRAL_EVENT_EVICT event for every
 * live item evicted to make room (not for expired or removed items), for
 * introspection such as memcached's "watch evictions".  A stream of its
 * own, with its own ring and sequence numbers, so that evictions never
 * crowd invalidations out of corral_subscribe's ring; the same delivery
 * rules (its callbacks run one at a time, but may run while an
 * invalidation callback runs on another thread), and a subscriber that
 * falls behind gets CORRAL_EVENT_GAP.  Events
 * are recorded only while someone subscribes.  End it with
 * corral_unsubscribe().  Returns CORRAL_OK or CORRAL_ENOMEM.
 */
CORRAL_API corral_status_t corral_subscribe_evictions(corral_t *cache,
                                                      corral_event_fn fn,
                                                      void *ud,
                                                      corral_sub_t **out_sub);

/* corral_event_seq - the sequence number the next event will get. */
CORRAL_API uint64_t corral_event_seq(corral_t *cache);

/* What corral_invalidate() invalidates. */
typedef struct corral_invalidation {
    corral_event_type_t type;   /* DELETE (a key), TAG, PREFIX, FLUSH or
                                 * GAP (see corral_invalidate) */
    const void *name;           /* the key, tag (NUL-terminated) or prefix */
    size_t len;
    int64_t flush_time;         /* FLUSH: an exptime, as corral_flush() */
    uint64_t origin;            /* copied into the resulting event */
} corral_invalidation_t;

/*
 * corral_invalidate - apply an invalidation received from elsewhere (a
 * peer, a server stream), tagging the event it causes with an origin so
 * that whoever forwards events can tell local changes from relayed ones.
 * A DELETE of an absent key still produces its event.
 * GAP is the flush of a cache that missed invalidations (a stream that
 * broke): every item is invalidated at once, as by a FLUSH at once, but a
 * delayed flush that has not come yet stays pending, where a FLUSH would
 * cancel it.  Its events are a FLUSH at once and, when a delayed flush
 * stays pending, a FLUSH at that time, so that a subscriber applying them
 * in order ends in the same state.
 * Returns CORRAL_OK or CORRAL_EINVAL.  Thread-safe.
 */
CORRAL_API corral_status_t corral_invalidate(corral_t *cache,
                                             const corral_invalidation_t *inv);

/* ---------------------------------------------------------------------- */
/* Cache-aside: fetch through a loader                                    */
/* ---------------------------------------------------------------------- */

/*
 * The loader's handle on the value it produces, valid during the loader
 * call only.
 */
typedef struct corral_load corral_load_t;

/*
 * A loader computes the value of a key that is missing, stale or due for
 * an early refresh.  It calls corral_load_set() (or corral_load_absent())
 * and returns 0, or returns a nonzero error code of its own choosing,
 * which every caller waiting for this load receives (CORRAL_ELOAD with
 * *out_error set).  It runs with no engine lock held, on a fetching thread
 * or, for background refreshes, on one of the cache's refresh threads; it
 * may use the cache, except to fetch the very key it is loading.  With
 * CORRAL_FETCH_RELEASE it is also called once with load and key NULL, to
 * release ud (its return value is then ignored).
 */
typedef int (*corral_loader_fn)(corral_load_t *load, const void *key,
                                size_t nkey, void *ud);

/*
 * corral_load_set - the loaded value (copied) and its client flags.
 * Returns CORRAL_OK, CORRAL_ETOOBIG (the value alone exceeds
 * max_item_size; with the key, tags and metadata the item may still be
 * too large when stored: the fetch then returns CORRAL_ETOOBIG) or
 * CORRAL_ENOMEM.  Calling it again replaces the value.  A loader that
 * returns 0 without calling it (or corral_load_absent) loads an empty
 * value.
 */
CORRAL_API corral_status_t corral_load_set(corral_load_t *load,
                                           const void *value, size_t nvalue,
                                           uint32_t flags);

/*
 * corral_load_ttl - override the fetch's ttl and stale_ttl for this value.
 */
CORRAL_API void corral_load_ttl(corral_load_t *load, int64_t ttl,
                                int64_t stale_ttl);

/*
 * corral_load_tags - tags for the loaded item (names copied).  An
 * invalidation of one of them while the load runs keeps the result out of
 * the cache (see leases at corral_fetch).  Returns CORRAL_OK,
 * CORRAL_EINVAL or CORRAL_ENOMEM.
 */
CORRAL_API corral_status_t corral_load_tags(corral_load_t *load,
                                            const char *const *tags,
                                            size_t ntags);

/*
 * corral_load_absent - the key does not exist in the backend: remember
 * that for ttl seconds (negative caching; fetches answer
 * CORRAL_ENOTFOUND meanwhile without calling the loader).
 */
CORRAL_API void corral_load_absent(corral_load_t *load, int64_t ttl);

/* Options for corral_fetch(): OR of these in corral_fetch_opts_t.options. */
#define CORRAL_FETCH_BACKGROUND 0x1u /* refresh stale or early-expiring
                                      * values on the refresh threads; the
                                      * caller always gets the current
                                      * value at once */
#define CORRAL_FETCH_NO_EARLY 0x2u   /* no probabilistic early refresh */
#define CORRAL_FETCH_RELEASE 0x4u    /* the cache calls loader(NULL, NULL,
                                      * 0, ud) exactly once when it no
                                      * longer needs ud: before
                                      * corral_fetch() returns, or after
                                      * the background refresh it queued
                                      * has run; so ud may be allocated
                                      * per call, and freed there */

typedef struct corral_fetch_opts {
    unsigned options;       /* CORRAL_FETCH_* */
    int64_t ttl;            /* seconds a loaded value is fresh (exptime
                             * rules; 0 never expires), unless the loader
                             * says otherwise */
    int64_t stale_ttl;      /* seconds after that during which the old
                             * value is still served while one caller
                             * refreshes it; 0 none */
    int64_t wait_ms;        /* how long a caller waits for a load another
                             * caller runs; 0 means 10000; negative: do not
                             * wait (CORRAL_ETIMEDOUT at once) */
    int64_t error_ms;       /* a failed load's error is answered to
                             * fetches of the key for this long without
                             * calling the loader again (the key's backoff
                             * delay, if longer, applies instead); 0 means
                             * 1000 */
    int64_t stale_if_error; /* seconds a stale value keeps being served
                             * after its refresh failed, counted from the
                             * first failure; 0 means stale_ttl */
    double beta;            /* XFetch's beta; 0 means 1.0; larger refreshes
                             * earlier */
} corral_fetch_opts_t;

/*
 * corral_fetch - read through: return the cached value, or load it.
 *
 * Single flight: however many threads fetch the same missing key at once,
 * the loader runs once; the others wait (up to wait_ms) and receive that
 * same value, or that same error.  A failing key is retried no sooner
 * than its backoff (backoff_min_ms doubling up to backoff_max_ms, with
 * jitter); meanwhile fetches answer its last error.  After
 * breaker_failures consecutive failures across the cache the breaker
 * opens: fetches that would load answer CORRAL_EBUSY (or a stale value)
 * for breaker_open_ms, then one trial load decides.
 *
 * Stale-while-revalidate: during the stale_ttl window after ttl, the first
 * caller refreshes (in its own thread, getting the new value, or on the
 * refresh threads with CORRAL_FETCH_BACKGROUND) and everyone else gets
 * the stale value at once.  Early refresh (XFetch, Vattani et al. 2015):
 * a caller also refreshes when now - delta * beta * ln(u) >= expiry, with
 * u uniform in (0, 1] and delta the duration of the key's last load.
 * If a refresh fails, the stale value stays servable for stale_if_error
 * seconds.
 *
 * Leases: a load's result is stored only if no write, delete, tag or
 * prefix invalidation of its key and no flush happened after the load
 * began; otherwise the callers still get the loaded value (they asked
 * before the change) but the cache keeps the newer state.
 *
 * @loader, @ud: called as described above.  @opts: may be NULL.
 * @out_item (OUT): on CORRAL_OK the pinned value (release it with
 *       corral_item_release()); NULL otherwise.
 * @out_error (OUT, may be NULL): the loader's code on CORRAL_ELOAD.
 * Returns CORRAL_OK; CORRAL_ENOTFOUND when the loader said the key is
 * absent (now or in a negative entry still cached); CORRAL_ELOAD;
 * CORRAL_ETIMEDOUT; CORRAL_EBUSY (breaker open, nothing stale to serve);
 * CORRAL_ETOOBIG (the loaded item exceeds max_item_size); CORRAL_ENOMEM;
 * CORRAL_EINVAL.  Thread-safe.
 */
CORRAL_API corral_status_t corral_fetch(corral_t *cache, const void *key,
                                        size_t nkey, corral_loader_fn loader,
                                        void *ud,
                                        const corral_fetch_opts_t *opts,
                                        corral_item_t **out_item,
                                        int *out_error);

/* ---------------------------------------------------------------------- */
/* Write-through and write-behind                                         */
/* ---------------------------------------------------------------------- */

typedef enum corral_write_op {
    CORRAL_WRITE_SET = 1,
    CORRAL_WRITE_DELETE = 2
} corral_write_op_t;

/* A write for the backend.  Pointers are borrowed for the writer call. */
typedef struct corral_write {
    corral_write_op_t op;
    const void *key;
    size_t nkey;
    const void *value;      /* SET only */
    size_t nvalue;
    uint32_t flags;
    uint64_t seq;           /* increases with every put/remove of the
                             * cache: a key's writes reach the writer in
                             * increasing seq */
    int64_t expires;        /* SET: when the value expires, in Unix
                             * seconds by the cache's clock (corral_put's
                             * exptime resolved as corral_set resolves
                             * it; 1 for one already past), 0 = never;
                             * DELETE: 0 */
} corral_write_t;

/*
 * A write-through writer: write one change to the backend; return 0, or a
 * nonzero error code (returned to the caller of corral_put/remove).  Runs
 * on the caller's thread with no engine lock held; writes of one key are
 * never concurrent.  It may call into the cache, corral_put() and
 * corral_remove() of other keys included; a put or remove of the key it
 * is writing returns CORRAL_EBUSY.
 */
typedef int (*corral_writer_fn)(const corral_write_t *write, void *ud);

/*
 * A write-behind batch writer: write n changes (distinct keys) and set
 * results[i] to 0 for each one written or to a nonzero code for each one
 * to retry later.  Runs on the cache's flusher thread.
 */
typedef int (*corral_batch_writer_fn)(const corral_write_t *writes,
                                      size_t n, int *results, void *ud);

/*
 * corral_use_write_through - route corral_put() and corral_remove()
 * through fn before the cache is changed.  Returns CORRAL_OK,
 * CORRAL_EINVAL if fn is NULL or a writer is already set, or
 * CORRAL_ENOMEM.
 */
CORRAL_API corral_status_t corral_use_write_through(corral_t *cache,
                                                    corral_writer_fn fn,
                                                    void *ud);

typedef struct corral_wb_opts {
    size_t queue_max;       /* keys waiting to be written; 0 means 65536 */
    size_t batch_max;       /* writes per batch; 0 means 128 */
    int64_t delay_ms;       /* how long a write may wait to be batched and
                             * coalesced with later writes of its key;
                             * 0 means 50 */
    int64_t retry_min_ms;   /* first retry delay; 0 means 10 */
    int64_t retry_max_ms;   /* retry delay cap; 0 means 5000 */
    int refuse_when_full;   /* nonzero: corral_put answers CORRAL_EBUSY
                             * when the queue is full; zero (default):
                             * it blocks until there is room */
} corral_wb_opts_t;

/*
 * corral_use_write_behind - acknowledge corral_put()/corral_remove() once
 * queued; a flusher thread writes them in batches through fn, coalescing
 * writes of one key (the latest wins), retrying failures with exponential
 * backoff and jitter, in order per key.  @opts may be NULL.
 * Returns CORRAL_OK, CORRAL_EINVAL (a writer is already set) or
 * CORRAL_ENOMEM.
 */
CORRAL_API corral_status_t corral_use_write_behind(
    corral_t *cache, corral_batch_writer_fn fn, void *ud,
    const corral_wb_opts_t *opts);

/*
 * corral_put - store through the writer: write-through calls it first and
 * changes the cache only if it succeeded; write-behind queues the write
 * and changes the cache.  Arguments as corral_set().
 * @out_error (OUT, may be NULL): the writer's code on CORRAL_ELOAD.
 * Puts and removes of one key are applied to the backend and to the cache
 * in the same order (a second one waits for the first); the events of the
 * change are delivered after that, so a subscriber may put and remove
 * too.  Thread-safe.  Cost: the writer's call (write-through) or O(1)
 * (write-behind), then a corral_set().
 * Returns CORRAL_OK; CORRAL_ELOAD (write-through writer failed; the cache
 * is untouched); CORRAL_ETOOBIG (the item would exceed max_item_size: the
 * writer is not called, nothing is queued, the cache is untouched);
 * CORRAL_EBUSY (write-behind queue full and refusing, or called by the
 * writer function for the key it is writing); CORRAL_EINVAL (no writer
 * set, bad arguments); CORRAL_ENOMEM (the backend has the value but the
 * cache could not store it: the key is dropped from the cache).
 */
CORRAL_API corral_status_t corral_put(corral_t *cache, const void *key,
                                      size_t nkey, const void *value,
                                      size_t nvalue, uint32_t flags,
                                      int64_t exptime, int *out_error);

/* corral_remove - delete through the writer; as corral_put().  Removing
 * an absent key still goes to the writer and returns CORRAL_OK. */
CORRAL_API corral_status_t corral_remove(corral_t *cache, const void *key,
                                         size_t nkey, int *out_error);

/*
 * corral_write_flush - wait until every write queued so far has been
 * written (retrying failures), or timeout_ms passes (negative: no limit).
 * @out_pending (OUT, may be NULL): writes still queued.
 * Returns CORRAL_OK or CORRAL_ETIMEDOUT.  corral_destroy() does this with
 * no limit before it frees the cache: after a clean destroy, every
 * acknowledged write reached the writer.
 */
CORRAL_API corral_status_t corral_write_flush(corral_t *cache,
                                              int64_t timeout_ms,
                                              size_t *out_pending);

/* ---------------------------------------------------------------------- */
/* Statistics                                                             */
/* ---------------------------------------------------------------------- */

/*
 * X(name, kind, description).  kind is "counter" (only grows; reset by
 * corral_stats_reset) or "gauge".  Names match memcached's "stats" where
 * the meaning is the same.
 */
#define CORRAL_STATS_TABLE(X)                                                 \
    X(curr_items, gauge, "items stored now")                                  \
    X(oldest_item_age, gauge, "seconds since the least recently queued "     \
                              "item was last accessed")                       \
    X(total_items, counter, "items stored since start")                       \
    X(bytes, gauge, "bytes held by stored items (record sizes)")              \
    X(limit_maxbytes, gauge, "the memory limit in bytes")                     \
    X(mem_used, gauge, "bytes counted against the limit: items, tables, "   \
                       "policy metadata, and removed items not yet freed")   \
    X(hash_bytes, gauge, "bytes of hash tables")                              \
    X(hash_is_expanding, gauge, "shards whose hash table is growing")         \
    X(cmd_get, counter, "keys looked up")                                     \
    X(cmd_set, counter, "store requests")                                     \
    X(cmd_touch, counter, "touch requests")                                   \
    X(cmd_flush, counter, "flush requests")                                   \
    X(get_hits, counter, "lookups that found a live item")                    \
    X(get_misses, counter, "lookups that found nothing live")                 \
    X(get_expired, counter, "lookups that found an expired item")             \
    X(get_flushed, counter, "lookups that found a flushed item")              \
    X(get_invalidated, counter, "lookups that found an item invalidated by "  \
                                "tag or prefix")                              \
    X(delete_hits, counter, "deletes that found the key")                     \
    X(delete_misses, counter, "deletes that did not")                         \
    X(incr_hits, counter, "increments that found the key")                   \
    X(incr_misses, counter, "increments that did not")                        \
    X(decr_hits, counter, "decrements that found the key")                    \
    X(decr_misses, counter, "decrements that did not")                        \
    X(cas_hits, counter, "CAS stores that matched")                           \
    X(cas_misses, counter, "CAS stores on absent keys")                       \
    X(cas_badval, counter, "CAS stores with a stale CAS")                     \
    X(touch_hits, counter, "touches that found the key")                      \
    X(touch_misses, counter, "touches that did not")                          \
    X(evictions, counter, "live items evicted to make room")                  \
    X(memory_purges, counter, "times memory freed by eviction was returned "  \
                              "to the system")                                \
    X(evicted_unfetched, counter, "evicted items never fetched")              \
    X(expired_unfetched, counter, "expired items reclaimed never fetched")    \
    X(reclaimed, counter, "expired, flushed or removed items freed")          \
    X(store_too_large, counter, "stores refused as too large")                \
    X(store_no_memory, counter, "stores refused for lack of memory")         \
    X(tag_invalidations, counter, "tags invalidated")                         \
    X(prefix_invalidations, counter, "prefixes invalidated")                  \
    X(prefix_rules, gauge, "prefix rules waiting for the sweep")              \
    X(tags_live, gauge, "distinct tags held by items")                        \
    X(events, counter, "invalidation events recorded")                       \
    X(recache_wins, counter, "recache tokens handed out (meta W)")           \
    X(recache_lost, counter, "lookups told another holds the token (Z)")     \
    X(early_wins, counter, "tokens handed out early (CORRAL_GET_EARLY)")     \
    X(fetches, counter, "corral_fetch calls")                                 \
    X(loads, counter, "loader calls")                                         \
    X(load_errors, counter, "loader calls that failed")                       \
    X(load_waits, counter, "fetches that waited for another's load")          \
    X(load_timeouts, counter, "fetches that gave up waiting")                 \
    X(stampedes_absorbed, counter, "fetches answered by another's load")      \
    X(stale_served, counter, "stale values served during a refresh")          \
    X(early_refreshes, counter, "refreshes started early (XFetch)")           \
    X(refreshes, counter, "refreshes of stale values")                        \
    X(negative_hits, counter, "fetches answered by a negative entry")         \
    X(error_hits, counter, "fetches answered by a remembered load error")     \
    X(lease_rejects, counter, "loaded values not stored: the key changed")    \
    X(breaker_opens, counter, "times the loader circuit breaker opened")      \
    X(breaker_rejects, counter, "fetches refused while it was open")          \
    X(writes, counter, "corral_put/corral_remove calls")                      \
    X(write_errors, counter, "writer calls that failed")                      \
    X(write_retries, counter, "write-behind writes retried")                  \
    X(write_coalesced, counter, "write-behind writes replaced by newer ones") \
    X(write_queue, gauge, "write-behind writes waiting")

typedef struct corral_stats {
#define CORRAL_STATS_FIELD(name, kind, text) uint64_t name;
    CORRAL_STATS_TABLE(CORRAL_STATS_FIELD)
#undef CORRAL_STATS_FIELD
} corral_stats_t;

/*
 * corral_stats - a snapshot of the cache's statistics.
 *
 * @out (OUT): caller memory.  @size: sizeof(*out) as the caller knows it;
 *       fields past it are not written, so older callers stay safe.
 * Each field is read atomically; the set is not one instant.
 * Thread-safe; O(shards).
 */
CORRAL_API void corral_stats(const corral_t *cache, corral_stats_t *out,
                             size_t size);

/* corral_stats_reset - zero every counter (gauges keep their value). */
CORRAL_API void corral_stats_reset(corral_t *cache);

#ifdef __cplusplus
}
#endif

#endif /* CORRAL_H */
