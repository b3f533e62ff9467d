/*
 * server.c - the server-wide counters: snapshots for "stats", the
 * "stats reset" baselines, and the shutdown request.
 *
 * A snapshot sums each worker's single-writer counters (relaxed loads,
 * no lock) and subtracts the baseline, which reset_lock guards.  Gauges
 * (curr_conns, conn_structures, accepting) are never reset.  The engine's
 * counters get the same treatment: "stats reset" records their values
 * instead of calling corral_stats_reset(), so that counters read raw (the
 * metrics endpoint) never go backwards.
 */
#include "server.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

static void
server_raw(struct server *srv, struct server_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < srv->nworkers; i++) {
        const struct worker_counters *wc = &srv->workers[i].counters;
#define SNAP_SUM(name) out->name += srv_counter_get(&wc->name);
        WORKER_COUNTERS(SNAP_SUM)
#undef SNAP_SUM
    }
    out->curr_conns = atomic_load(&srv->curr_conns);
    out->total_conns = srv_counter_get(&srv->total_conns);
    out->rejected_conns = srv_counter_get(&srv->rejected_conns);
    out->listen_disabled_num = srv_counter_get(&srv->listen_disabled_num);
    out->accepting = atomic_load(&srv->accepting);
}

void
server_raw_snapshot(struct server *srv, struct server_snapshot *out)
{
    server_raw(srv, out);
    out->conn_structures = out->curr_conns;
}

/* Counters get their baseline subtracted; gauges are left alone.  A
 * counter is read once and never below the baseline read before it, but
 * clamp anyway rather than wrap. */
#define ENGINE_SUB_counter(name)                                              \
    out->name = out->name >= base.name ? out->name - base.name : 0;
#define ENGINE_SUB_gauge(name)
#define ENGINE_SUB(name, kind, text) ENGINE_SUB_##kind(name)

void
server_engine_stats(struct server *srv, corral_stats_t *out)
{
    corral_stats_t base;

    memset(out, 0, sizeof(*out));
    corral_stats(srv->cache, out, sizeof(*out));
    pthread_mutex_lock(&srv->reset_lock);
    base = srv->engine_baseline;
    pthread_mutex_unlock(&srv->reset_lock);
    CORRAL_STATS_TABLE(ENGINE_SUB)
}

void
server_snapshot(struct server *srv, struct server_snapshot *out)
{
    struct server_snapshot base;

    server_raw(srv, out);
    pthread_mutex_lock(&srv->reset_lock);
    base = srv->baseline;
    pthread_mutex_unlock(&srv->reset_lock);
    /* A reset between the read above and the baseline's may have moved
     * the baseline past what was read: 0 then, not a wrapped count. */
#define SNAP_SUB(name)                                                         \
    out->name = out->name > base.name ? out->name - base.name : 0;
    WORKER_COUNTERS(SNAP_SUB)
    SNAP_SUB(total_conns)
    SNAP_SUB(rejected_conns)
    SNAP_SUB(listen_disabled_num)
#undef SNAP_SUB
    out->conn_structures = out->curr_conns;
}

void
server_stats_reset(struct server *srv)
{
    struct server_snapshot now;
    corral_stats_t engine;

    server_raw(srv, &now);
    memset(&engine, 0, sizeof(engine));
    corral_stats(srv->cache, &engine, sizeof(engine));
    pthread_mutex_lock(&srv->reset_lock);
    srv->baseline = now;
    srv->engine_baseline = engine;
    pthread_mutex_unlock(&srv->reset_lock);
}

void
server_request_shutdown(struct server *srv)
{
    (void)srv;
    /* The main loop's SIGINT watcher runs the graceful shutdown, exactly
     * as for a signal from outside (memcached raises SIGINT too). */
    kill(getpid(), SIGINT);
}
