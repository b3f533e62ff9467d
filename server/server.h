/*
 * server.h - the state corrald's threads share: the settings, the engine,
 * the workers and the listener, and the few counters that are not owned
 * by a single worker.
 *
 * Ownership and threads.  main() fills a struct server before any thread
 * starts and frees it after every thread has stopped; between the two,
 * the plain fields are read-only.  The counters below are atomics:
 *   - curr_conns is incremented by the listener and decremented by the
 *     worker that closes a connection (fetch_add / fetch_sub);
 *   - the srv_counter_t fields have a single writer each (named beside
 *     them), which updates them with a relaxed load and store, so reads
 *     from other threads are race-free without a locked instruction.
 * reset_lock guards the "stats reset" baselines only; it is a leaf lock.
 *
 * "stats reset" never zeroes a counter: it records baselines that "stats"
 * subtracts (engine and server counters alike), so the metrics endpoint,
 * which reads the raw values, only ever sees counters grow.
 */
#ifndef CORRALD_SERVER_H
#define CORRALD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <corral.h>

#include "histogram.h"
#include "settings.h"

struct ev_loop;
struct hotkeys;
struct leases;
struct logstream;
struct metrics;
struct worker;
struct listener;
struct watch_hub;
struct peers;
struct auth;
struct tls_ctx;

/* A counter with one writing thread. */
typedef _Atomic uint64_t srv_counter_t;

static inline void
srv_counter_add(srv_counter_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) +
                                 n, memory_order_relaxed);
}

static inline uint64_t
srv_counter_get(const srv_counter_t *c)
{
    return atomic_load_explicit((srv_counter_t *)c, memory_order_relaxed);
}

/*
 * Counters each worker keeps for its own connections, summed for
 * "stats".  X(name): memcached's stat name where it has one.
 */
#define WORKER_COUNTERS(X)                                                    \
    X(bytes_read)                                                             \
    X(bytes_written)                                                          \
    X(cmd_meta)                                                               \
    X(idle_kicks)                                                             \
    X(conn_yields)                                                            \
    X(meta_stale)                                                             \
    X(meta_vivified)                                                          \
    X(meta_lease_timeouts)                                                    \
    X(cmd_invalidate_tag)                                                     \
    X(cmd_invalidate_prefix)                                                  \
    X(cmd_tagged_store)                                                       \
    X(auth_cmds)                                                              \
    X(auth_errors)

struct worker_counters {
#define WORKER_COUNTER_FIELD(name) srv_counter_t name;
    WORKER_COUNTERS(WORKER_COUNTER_FIELD)
#undef WORKER_COUNTER_FIELD
};

/*
 * Per command type (the protocol's command table, indexed by its enum;
 * exec.c checks that SERVER_CMD_SLOTS is enough): how long parsing and
 * executing took and how many requests were refused.  One per worker, written by
 * that worker only; the metrics endpoint sums them.
 */
#define SERVER_CMD_SLOTS 40

struct server_cmdstats {
    struct histogram latency[SERVER_CMD_SLOTS];
    srv_counter_t errors[SERVER_CMD_SLOTS];
};

/* A plain snapshot of the server-level counters. */
struct server_snapshot {
#define WORKER_SNAP_FIELD(name) uint64_t name;
    WORKER_COUNTERS(WORKER_SNAP_FIELD)
#undef WORKER_SNAP_FIELD
    uint64_t curr_conns;
    uint64_t total_conns;
    uint64_t rejected_conns;
    uint64_t listen_disabled_num;
    uint64_t conn_structures;
    bool accepting;
};

struct server {
    const struct settings *settings;
    corral_t *cache;
    struct worker *workers;       /* nworkers of them */
    unsigned nworkers;
    struct listener *listener;
    struct ev_loop *main_loop;    /* the accept loop, on the main thread */
    struct auth *auth;            /* -Y credentials, or NULL: no auth */
    struct tls_ctx *tls;          /* -Z context, or NULL: plain TCP */
    time_t started;               /* Unix time at startup */
    pid_t pid;

    atomic_uint curr_conns;       /* open client connections */
    srv_counter_t total_conns;    /* writer: the listener */
    srv_counter_t rejected_conns; /* writer: the listener */
    srv_counter_t listen_disabled_num; /* writer: the listener */
    atomic_bool accepting;        /* writer: the listener */
    atomic_bool stopping;         /* set once by main on shutdown */

    /* Invalidations (watch.c, peer.c): set up by main before the workers
     * start, torn down after they stop; NULL when disabled. */
    uint64_t node_id;             /* this process's id on the stream */
    struct watch_hub *watch;
    corral_sub_t *events_sub;     /* the server's engine subscription */
    struct peers *peers;

    pthread_mutex_t reset_lock;   /* guards both baselines */
    struct server_snapshot baseline; /* counters at the last "stats reset" */
    corral_stats_t engine_baseline; /* engine counters at that moment */

    struct server_cmdstats *cmdstats; /* nworkers, entry i for worker i */
    struct logstream *logs;       /* watch fetchers|mutations|evictions */
    struct hotkeys *hot;          /* sampled hot keys, or NULL */
    struct metrics *metrics;      /* the HTTP endpoint, or NULL */
    struct leases *leases;        /* W tokens awaiting their store */
};

/*
 * server_snapshot - sum every worker's counters and the server's, minus
 * the baseline taken by the last server_stats_reset().  Thread-safe.
 */
void server_snapshot(struct server *srv, struct server_snapshot *out);

/*
 * server_raw_snapshot - the same sums without the baseline: counters as
 * they have grown since startup (the metrics endpoint).  Thread-safe.
 */
void server_raw_snapshot(struct server *srv, struct server_snapshot *out);

/*
 * server_engine_stats - corral_stats() minus the engine baseline of the
 * last server_stats_reset(); gauges are left as they are.  Thread-safe.
 */
void server_engine_stats(struct server *srv, corral_stats_t *out);

/*
 * server_stats_reset - make the current counter values the new zero for
 * "stats", server and engine counters alike; the raw values go on.
 */
void server_stats_reset(struct server *srv);

/*
 * server_request_shutdown - ask the main thread to shut down gracefully,
 * as SIGINT does (the "shutdown" command).  Thread-safe.
 */
void server_request_shutdown(struct server *srv);

#endif /* CORRALD_SERVER_H */
