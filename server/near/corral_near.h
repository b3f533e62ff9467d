/*
 * corral_near.h - a near cache: keep a process's own corral_t coherent
 * with a corrald by applying the server's invalidation stream to it.
 *
 * Model.  The application reads from its in-process cache and, on a
 * miss, from the server (with whatever memcached client it uses), keeping
 * what it read locally.  A background thread of this library holds a
 * "watch invalidations" connection to the server and applies every line:
 * a key deleted, overwritten or marked stale there is deleted here; a
 * tag, a prefix or a flush is applied here as such.  So a write made
 * through any client of the server -- or of its peers, when corrald runs
 * with --peer -- makes the local copies miss, typically within a
 * fraction of a millisecond on a local network.
 *
 * Never silently stale.  Until the stream is live (connected and past its
 * sync line), and from the moment it breaks, corral_near_get() misses
 * and corral_near_fetch() loads from the loader without reusing the
 * local copy.  Whenever the library cannot know what it missed -- at
 * every (re)connection, and on a "gap" line -- it flushes the local
 * cache.  A server that vanishes without closing the connection is
 * noticed by TCP keepalive (within about 5 s), and the stream is then
 * treated as broken.  Items stored with tags or under prefixes follow the
 * server's tag and prefix invalidations only if they were given the same
 * tags locally (corral_load_tags()); keys match byte for byte.
 *
 * Fills.  corral_near_fetch() goes through corral_fetch(), whose leases
 * keep a value loaded before an invalidation of its key from being stored
 * after it: an overwrite on the server that the stream reports while the
 * loader is reading the old value never leaves the old value cached.
 *
 * Threads.  Every function may be called from any thread, except that
 * corral_near_destroy() must be the last call on a near cache.  The
 * cache given to corral_near_create() must outlive the near cache; the
 * application may use it directly too (then it bypasses the rules above).
 *
 * Errors are corral_status_t values (corral.h).
 */
#ifndef CORRAL_NEAR_H
#define CORRAL_NEAR_H

#include <corral.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CORRAL_NEAR_BUILDING) && defined(__GNUC__)
#define CORRAL_NEAR_API __attribute__((visibility("default")))
#else
#define CORRAL_NEAR_API
#endif

/* An opaque near cache. */
typedef struct corral_near corral_near_t;

/*
 * Options.  Fill with corral_near_opts_init(), then change fields; fields
 * are only ever appended (`size` tells which exist).
 */
typedef struct corral_near_opts {
    size_t size;                /* sizeof(corral_near_opts_t); set by init */
    int64_t connect_timeout_ms; /* per attempt; default 2000 */
    int64_t backoff_min_ms;     /* first delay after a failure, doubling
                                 * with jitter; default 100 */
    int64_t backoff_max_ms;     /* cap of that delay; default 5000 */
    const char *filters;        /* extra words for the watch command, as
                                 * "prefix=user%3A tag=site" (corrald's
                                 * syntax); NULL (default): every event.
                                 * Only keys the filters cover may be
                                 * cached then.  Copied. */
} corral_near_opts_t;

/* corral_near_opts_init - fill @opts with the defaults.  Thread-safe. */
CORRAL_NEAR_API void corral_near_opts_init(corral_near_opts_t *opts);

/*
 * corral_near_create - bind @cache to the server at @host:@port.
 *
 * Starts the background thread, which connects at once and reconnects
 * with backoff for as long as the near cache exists.  Returns without
 * waiting for the connection (see corral_near_wait_synced()).
 * @opts may be NULL.  @host is copied.
 * @out (OUT): the near cache, freed with corral_near_destroy().
 * Returns CORRAL_OK, CORRAL_EINVAL (empty host, port 0 or above 65535,
 * a filter string over 1000 bytes) or CORRAL_ENOMEM (including a thread
 * that cannot be started).
 */
CORRAL_NEAR_API corral_status_t corral_near_create(
    corral_t *cache, const char *host, unsigned port,
    const corral_near_opts_t *opts, corral_near_t **out);

/*
 * corral_near_destroy - stop the thread, close the connection, free.
 * The local cache keeps its contents.  NULL is a no-op.  Not thread-safe
 * with other calls on the same near cache.
 */
CORRAL_NEAR_API void corral_near_destroy(corral_near_t *near);

/* corral_near_synced - 1 while the stream is live, else 0.  O(1). */
CORRAL_NEAR_API int corral_near_synced(const corral_near_t *near);

/*
 * corral_near_wait_synced - wait until the stream is live, at most
 * @timeout_ms (negative: no limit).  Returns CORRAL_OK or
 * CORRAL_ETIMEDOUT.
 */
CORRAL_NEAR_API corral_status_t corral_near_wait_synced(
    corral_near_t *near, int64_t timeout_ms);

/*
 * corral_near_get - look a key up in the local cache, as corral_get(),
 * but only while the stream is live: CORRAL_ENOTFOUND otherwise.
 * @out_item (OUT): the pinned item on CORRAL_OK (release it with
 * corral_item_release()), else NULL.
 */
CORRAL_NEAR_API corral_status_t corral_near_get(corral_near_t *near,
                                                const void *key,
                                                size_t nkey,
                                                corral_item_t **out_item);

/*
 * corral_near_fetch - read through the local cache: corral_fetch() with
 * @loader (which reads the server) while the stream is live; while it is
 * not, the local copy is dropped first, so the loader always runs (what
 * it stores is flushed when the stream comes back).  Arguments and
 * returns as corral_fetch().
 */
CORRAL_NEAR_API corral_status_t corral_near_fetch(
    corral_near_t *near, const void *key, size_t nkey,
    corral_loader_fn loader, void *ud, const corral_fetch_opts_t *opts,
    corral_item_t **out_item, int *out_error);

/* What the background thread has done so far. */
typedef struct corral_near_stats {
    uint64_t connects;   /* streams established (past their sync line) */
    uint64_t applied;    /* invalidations applied to the local cache */
    uint64_t flushes;    /* local flushes: reconnections, gaps, flushes
                          * received */
    uint64_t last_seq;   /* the server's seq of the last event applied */
    uint64_t node;       /* the server's node id (0 before the first
                          * connection) */
} corral_near_stats_t;

/* corral_near_stats - a snapshot.  @out: caller memory.  Thread-safe. */
CORRAL_NEAR_API void corral_near_stats(const corral_near_t *near,
                                       corral_near_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* CORRAL_NEAR_H */
