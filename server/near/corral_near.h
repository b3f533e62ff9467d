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
 * cache; a delayed flush_all pending on the server when the stream
 * starts (its sync line says when) is scheduled locally too.  A server
 * that vanishes without closing the connection, or whose process stops,
 * is noticed by the stream's silence (its heartbeat lines stop: within
 * silence_ms, 5 s by default), and the stream is then treated as
 * broken.  Items stored with tags or under prefixes follow the
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
    int64_t silence_ms;         /* a stream that brings no line for this
                                 * long is taken as broken, however its
                                 * TCP connection looks (a stopped server
                                 * process): the server is asked for a
                                 * ping line every silence_ms / 4 (whole
                                 * seconds, at least 1) while it has
                                 * nothing else to send.  Default (0)
                                 * 5000, at least 2000; negative: off */
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

/* ---------------------------------------------------------------------- */
/* One loader for the whole fleet                                         */
/* ---------------------------------------------------------------------- */

/*
 * corral_near_fetch() makes one thread per process run the loader for a
 * missing key (corral_fetch's single flight); with N processes that is
 * still up to N loads of a cold or expired key.  corral_near_fetch_fleet()
 * makes it one for the whole fleet: the process's single loader asks the
 * server with memcached's meta lease flags, and only the process that
 * wins the lease calls the backend:
 *
 *   local miss ─► corral_fetch (one caller per process) ─► fleet loader:
 *      mg <key> v f t c N<lease_ttl> [R<recache_ttl>]
 *        ├─ VA, no W/Z: the server has it ─► store locally, done
 *        ├─ W: this process won ─► backend() ─► ms <key> T<ttl> C<cas>
 *        │     (C: a write or delete on the server meanwhile wins over
 *        │     this load) ─► store locally, done
 *        ├─ Z with X and a value: another process refreshes; serve the
 *        │     stale value now (the stream drops it when the new one is
 *        │     stored)
 *        └─ Z: another process loads ─► poll again after 1, 2, 4 ...
 *              up to poll_max_ms (jitter +-20 %), for wait_ms in all
 *
 * If the winner dies or gives up, its lease (the empty item N created)
 * expires after lease_ttl seconds and the next poller wins.  A backend
 * error releases a fresh lease at once (md with the lease's CAS) so that
 * another process may try.  If the server cannot be reached or refuses
 * the request, the process loads from the backend itself (counted in
 * fallbacks): availability first, single flight per process only.
 *
 * The talk with the server uses a small pool of connections of this
 * library's own (up to CORRAL_NEAR_FLEET_POOL idle ones), separate from
 * the invalidation stream; an idle one the server has closed (a restart)
 * is dropped when next taken, before anything is sent on it.  Keys that are not valid memcached text keys
 * (over 250 bytes, spaces, control characters) travel base64 (flag b)
 * when they fit, else the process loads alone.
 */
#define CORRAL_NEAR_FLEET_POOL 8

/*
 * The loader's error code when the lease holder's value did not come
 * within wait_ms (corral_near_fetch_fleet() then returns
 * CORRAL_ETIMEDOUT; callers of corral_fetch() on the same local cache
 * see CORRAL_ELOAD with this code).  Backends must not return it.
 */
#define CORRAL_NEAR_EWAIT (-0x4e454152)

/* The value a backend produces, valid during the backend call only. */
typedef struct corral_near_value corral_near_value_t;

/*
 * corral_near_value_set - the backend's value (copied) and client flags.
 * Calling it again replaces the value; a backend that returns 0 without
 * calling it produces an empty value.  Returns CORRAL_OK or
 * CORRAL_ENOMEM.
 */
CORRAL_NEAR_API corral_status_t corral_near_value_set(
    corral_near_value_t *v, const void *value, size_t nvalue,
    uint32_t flags);

/*
 * A backend reads the source of truth (never the server).  It returns 0
 * with the value set, or a nonzero code of its own, which every local
 * caller waiting for this load receives (CORRAL_ELOAD, *out_error).  It
 * runs on a fetching thread, in the one process that holds the lease.
 */
typedef int (*corral_near_backend_fn)(corral_near_value_t *out,
                                      const void *key, size_t nkey,
                                      void *ud);

typedef struct corral_near_fleet_opts {
    size_t size;            /* sizeof(corral_near_fleet_opts_t); by init */
    int64_t server_ttl;     /* exptime of the value stored on the server;
                             * 0 (default): the fetch's ttl */
    int64_t lease_ttl;      /* seconds a lease lasts if its holder never
                             * stores (mg N); default 30 */
    int64_t recache_ttl;    /* > 0: also win a refresh when the server's
                             * remaining TTL falls below this (mg R);
                             * default 0 */
    int64_t wait_ms;        /* how long to wait for another process's
                             * value; default 10000.  Keep it below the
                             * fetch's wait_ms, which bounds the local
                             * callers waiting for this process's load */
    int64_t poll_max_ms;    /* cap of the polling interval; default 50 */
    int64_t io_timeout_ms;  /* connect, send or reply beyond this: the
                             * connection is dropped and the process
                             * loads alone; default 2000 */
} corral_near_fleet_opts_t;

/* corral_near_fleet_opts_init - fill @opts with the defaults. */
CORRAL_NEAR_API void corral_near_fleet_opts_init(
    corral_near_fleet_opts_t *opts);

/*
 * corral_near_fetch_fleet - read through the local cache, with one
 * backend call per key for every process sharing the server (see above).
 *
 * @backend, @ud: called only in the process that wins the server's lease,
 *       once per load (the local single flight).
 * @fleet: may be NULL (defaults); read during the call.
 * @opts: the local corral_fetch() options, may be NULL.  Their ttl is the
 *       local copy's lifetime (a value read from the server lives locally
 *       no longer than its remaining TTL there).  CORRAL_FETCH_BACKGROUND
 *       and CORRAL_FETCH_RELEASE are ignored: a refresh runs in the
 *       calling thread.
 * @out_item (OUT): on CORRAL_OK the pinned value (release it with
 *       corral_item_release()); NULL otherwise.
 * @out_error (OUT, may be NULL): the backend's code on CORRAL_ELOAD.
 * While the invalidation stream is not live, the local copy is dropped
 * first, as corral_near_fetch() does.
 * Returns as corral_fetch(), and CORRAL_ETIMEDOUT when the lease holder's
 * value did not come in time.  Thread-safe.  Blocking: at most one
 * backend call, or wait_ms of polling, plus the server's round trips.
 */
CORRAL_NEAR_API corral_status_t corral_near_fetch_fleet(
    corral_near_t *near, const void *key, size_t nkey,
    corral_near_backend_fn backend, void *ud,
    const corral_near_fleet_opts_t *fleet, const corral_fetch_opts_t *opts,
    corral_item_t **out_item, int *out_error);

/* What corral_near_fetch_fleet() has done in this process. */
typedef struct corral_near_fleet_stats {
    uint64_t server_hits;   /* loads answered by the server's value */
    uint64_t loads;         /* backend calls (leases won) */
    uint64_t load_errors;   /* backend calls that failed */
    uint64_t waits;         /* polls after a Z (another process loads) */
    uint64_t wait_timeouts; /* loads that gave up waiting (lease timeouts
                             * seen from here) */
    uint64_t stale_served;  /* stale values served (X with Z) */
    uint64_t store_rejected; /* won loads the server did not store: the
                              * key changed meanwhile (EX, NF) */
    uint64_t fallbacks;     /* loads run without the server (unreachable,
                             * refused, key unusable) */
} corral_near_fleet_stats_t;

/*
 * corral_near_fleet_stats - a snapshot.  @out: caller memory of @size
 * bytes (sizeof as the caller knows it; later fields are not written).
 * Thread-safe.
 */
CORRAL_NEAR_API void corral_near_fleet_stats(const corral_near_t *near,
                                             corral_near_fleet_stats_t *out,
                                             size_t size);

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
