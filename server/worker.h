/*
 * worker.h - worker threads: each runs its own ev_loop and owns the
 * connections handed to it, from accept to close.
 *
 * Threads and locks.  Everything in struct worker is touched only by the
 * worker's own thread, except:
 *   - the fields under `lock` (the hand-off queue, the connection list
 *     and drain_requested): the listener pushes to the queue, main sets
 *     drain_requested, and "stats conns" on any worker walks the list.
 *     `lock` is a leaf: nothing else is locked while it is held, and no
 *     engine call is made under it.  Lock order when "stats conns" walks
 *     all workers: one worker lock at a time, never two.
 *   - `counters`, single-writer atomics read by "stats" on any worker.
 *   - `notify`, an ev_async any thread may signal.
 */
#ifndef CORRALD_WORKER_H
#define CORRALD_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "server.h"

struct conn;

/* A connection accepted by the listener and not yet taken by a worker. */
struct worker_handoff {
    int fd;
    char peer[64];   /* "tcp:<address>:<port>", for stats conns */
};

/* A connection's node in its worker's list (embedded in struct conn). */
struct worker_link {
    struct worker_link *prev, *next;
    struct conn *conn;
};

/* Buffers a worker recycles for its connections' input and output. */
#define WORKER_BLOCK_SIZE (16 * 1024)
#define WORKER_POOL_MAX 256

struct worker {
    struct server *srv;
    unsigned id;
    pthread_t thread;
    struct ev_loop *loop;
    ev_async notify;          /* new connections, or drain */
    ev_timer idle_timer;      /* runs only with an idle timeout */
    ev_timer drain_timer;     /* the SIGTERM deadline */
    bool draining;            /* owner only: closing down */

    pthread_mutex_t lock;     /* guards the four fields below */
    struct worker_handoff *queue; /* ring of qcap entries */
    size_t qhead, qlen, qcap;
    struct worker_link *conns; /* every open connection */
    bool drain_requested;

    void *pool[WORKER_POOL_MAX]; /* owner only: free WORKER_BLOCK_SIZE blocks */
    size_t npool;
    size_t nconns;            /* owner only */

    struct worker_counters counters;
};

/*
 * worker_start_all - create srv->nworkers workers and start their
 * threads.  Call with the signals that main handles blocked, so the
 * threads inherit the mask.  Returns 0, or -1 with a message logged.
 */
int worker_start_all(struct server *srv);

/*
 * worker_dispatch - hand an accepted, non-blocking socket to @w.  Called
 * by the listener; takes ownership of the fd.  Returns 0, or -1 (queue
 * memory exhausted; the caller closes the fd).
 */
int worker_dispatch(struct worker *w, int fd, const char *peer);

/*
 * worker_drain_all - ask every worker to finish the requests in flight,
 * close its connections and stop its loop (SIGTERM).  Thread-safe.
 */
void worker_drain_all(struct server *srv);

/* worker_join_all - wait for every worker thread, then free them. */
void worker_join_all(struct server *srv);

/* Block pool, owner thread only: WORKER_BLOCK_SIZE bytes, or NULL. */
void *worker_block_get(struct worker *w);
void worker_block_put(struct worker *w, void *block);

/* Connection list, owner thread only (takes `lock` inside).  @link is
 * memory inside the connection, with link->conn set. */
void worker_conn_add(struct worker *w, struct worker_link *link);
void worker_conn_remove(struct worker *w, struct worker_link *link);

/*
 * worker_conns_foreach - call @fn for every connection of @w under its
 * lock.  @fn may read only what conn.h says is readable from other
 * threads, and must not lock anything.
 */
void worker_conns_foreach(struct worker *w,
                          void (*fn)(const struct conn *c, void *ud),
                          void *ud);

#endif /* CORRALD_WORKER_H */
