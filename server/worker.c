/*
 * worker.c - worker threads, each with its own ev_loop, owning the
 * connections the listener hands it.
 *
 * Hand-off (memcached's thread.c model, with an ev_async instead of a
 * pipe):
 *
 *   listener thread                      worker thread
 *   ───────────────                      ─────────────
 *   lock; queue[tail] = {fd, peer};      notify fires:
 *   unlock; ev_async_send(notify) ──►      lock; take every entry; unlock
 *                                          conn_create() for each
 *
 * Drain (SIGTERM): main sets drain_requested under the lock and signals
 * notify; the worker then drains every connection (conn_drain), refuses
 * new ones, starts a deadline timer, and stops its loop when its last
 * connection closes or the deadline passes (then it closes the rest).
 *
 * Idle timeout: when configured, one timer per worker fires every
 * second and walks the worker's connections; without it idle
 * connections cost nothing at all (no timer, no buffer).
 *
 * Locks: `lock` guards the queue, the connection list and
 * drain_requested (see worker.h); it is a leaf lock.
 */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "fault.h"
#include "log.h"
#include "watch.h"

static void worker_on_notify(struct ev_loop *loop, ev_async *a, int revents);
static void worker_on_idle(struct ev_loop *loop, ev_timer *t, int revents);
static void worker_on_deadline(struct ev_loop *loop, ev_timer *t,
                               int revents);

/* ---------------------------------------------------------------------- */
/* Block pool                                                             */

void *
worker_block_get(struct worker *w)
{
    if (w->npool > 0) {
        return w->pool[--w->npool];
    }
    return srv_malloc(WORKER_BLOCK_SIZE);
}

void
worker_block_put(struct worker *w, void *block)
{
    if (block == NULL) {
        return;
    }
    if (w->npool < WORKER_POOL_MAX) {
        w->pool[w->npool++] = block;
    } else {
        free(block);
    }
}

/* ---------------------------------------------------------------------- */
/* Connection list                                                        */

void
worker_conn_add(struct worker *w, struct worker_link *link)
{
    pthread_mutex_lock(&w->lock);
    link->prev = NULL;
    link->next = w->conns;
    if (link->next != NULL) {
        link->next->prev = link;
    }
    w->conns = link;
    pthread_mutex_unlock(&w->lock);
    w->nconns++;
}

void
worker_conn_remove(struct worker *w, struct worker_link *link)
{
    pthread_mutex_lock(&w->lock);
    if (link->prev != NULL) {
        link->prev->next = link->next;
    } else {
        w->conns = link->next;
    }
    if (link->next != NULL) {
        link->next->prev = link->prev;
    }
    pthread_mutex_unlock(&w->lock);
    w->nconns--;
    if (w->draining && w->nconns == 0) {
        ev_break(w->loop, EVBREAK_ALL);
    }
}

void
worker_conns_foreach(struct worker *w,
                     void (*fn)(const struct conn *c, void *ud), void *ud)
{
    pthread_mutex_lock(&w->lock);
    for (struct worker_link *k = w->conns; k != NULL; k = k->next) {
        fn(k->conn, ud);
    }
    pthread_mutex_unlock(&w->lock);
}

/* Snapshot the connections, for walks that may close them. */
static struct conn **
worker_conns_snapshot(struct worker *w, size_t *out_n)
{
    struct conn **v;
    size_t n = 0, cap;

    pthread_mutex_lock(&w->lock);
    cap = w->nconns;
    v = srv_malloc((cap ? cap : 1) * sizeof(*v));
    if (v != NULL) {
        for (struct worker_link *k = w->conns; k != NULL && n < cap;
             k = k->next) {
            v[n++] = k->conn;
        }
    }
    pthread_mutex_unlock(&w->lock);
    *out_n = n;
    return v;
}

/* ---------------------------------------------------------------------- */
/* Hand-off                                                               */

int
worker_dispatch(struct worker *w, int fd, const char *peer)
{
    pthread_mutex_lock(&w->lock);
    if (w->qlen == w->qcap) {
        size_t cap = w->qcap ? w->qcap * 2 : 64;
        struct worker_handoff *q = srv_malloc(cap * sizeof(*q));
        if (q == NULL) {
            pthread_mutex_unlock(&w->lock);
            return -1;
        }
        for (size_t i = 0; i < w->qlen; i++) {
            q[i] = w->queue[(w->qhead + i) % w->qcap];
        }
        free(w->queue);
        w->queue = q;
        w->qcap = cap;
        w->qhead = 0;
    }
    {
        struct worker_handoff *h = &w->queue[(w->qhead + w->qlen) % w->qcap];
        h->fd = fd;
        snprintf(h->peer, sizeof(h->peer), "%s", peer);
        w->qlen++;
    }
    pthread_mutex_unlock(&w->lock);
    ev_async_send(w->loop, &w->notify);
    return 0;
}

static void
worker_begin_drain(struct worker *w)
{
    struct conn **v;
    size_t n;

    w->draining = true;
    if (w->nconns == 0) {
        ev_break(w->loop, EVBREAK_ALL);
        return;
    }
    ev_timer_init(&w->drain_timer, worker_on_deadline,
                  (double)w->srv->settings->drain_timeout, 0.);
    w->drain_timer.data = w;
    ev_timer_start(w->loop, &w->drain_timer);
    v = worker_conns_snapshot(w, &n);
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        conn_drain(v[i]);
    }
    free(v);
}

static void
worker_on_notify(struct ev_loop *loop, ev_async *a, int revents)
{
    struct worker *w = a->data;
    struct worker_handoff batch[64];
    bool drain;

    (void)loop;
    (void)revents;
    for (;;) {
        size_t n = 0;

        pthread_mutex_lock(&w->lock);
        while (w->qlen > 0 && n < sizeof(batch) / sizeof(batch[0])) {
            batch[n++] = w->queue[w->qhead];
            w->qhead = (w->qhead + 1) % w->qcap;
            w->qlen--;
        }
        drain = w->drain_requested;
        pthread_mutex_unlock(&w->lock);
        if (n == 0) {
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (drain) {
                close(batch[i].fd);
                atomic_fetch_sub(&w->srv->curr_conns, 1);
            } else {
                conn_create(w, batch[i].fd, batch[i].peer);
            }
        }
    }
    if (drain && !w->draining) {
        worker_begin_drain(w);
    }
}

static void
worker_on_idle(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    double timeout = (double)w->srv->settings->idle_timeout;
    struct conn **v;
    size_t n;

    (void)revents;
    v = worker_conns_snapshot(w, &n);
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        conn_idle_check(v[i], ev_now(loop), timeout);
    }
    free(v);
}

static void
worker_on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    struct conn **v;
    size_t n;

    (void)revents;
    v = worker_conns_snapshot(w, &n);
    if (v != NULL && n > 0) {
        log_info("worker %u: closing %zu connections at the shutdown "
                 "deadline", w->id, n);
        for (size_t i = 0; i < n; i++) {
            conn_close(v[i]);
        }
    }
    free(v);
    ev_break(loop, EVBREAK_ALL);
}

/* ---------------------------------------------------------------------- */
/* Threads                                                                */

static void *
worker_main(void *arg)
{
    struct worker *w = arg;

    ev_run(w->loop, 0);
    return NULL;
}

static int
worker_init(struct worker *w, struct server *srv, unsigned id)
{
    memset(w, 0, sizeof(*w));
    w->srv = srv;
    w->id = id;
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (w->loop == NULL) {
        log_error("cannot create an event loop for worker %u", id);
        return -1;
    }
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        ev_loop_destroy(w->loop);
        return -1;
    }
    ev_async_init(&w->notify, worker_on_notify);
    w->notify.data = w;
    ev_async_start(w->loop, &w->notify);
    if (srv->watch != NULL && watch_worker_attach(srv->watch, w) != 0) {
        log_error("out of memory setting up worker %u", id);
        ev_loop_destroy(w->loop);
        pthread_mutex_destroy(&w->lock);
        return -1;
    }
    /* every second: idle connections (with -o idle_timeout) and
     * closing ones whose client reads nothing */
    ev_timer_init(&w->idle_timer, worker_on_idle, 1., 1.);
    w->idle_timer.data = w;
    ev_timer_start(w->loop, &w->idle_timer);
    return 0;
}

int
worker_start_all(struct server *srv)
{
    unsigned n = srv->nworkers;

    srv->workers = calloc(n, sizeof(*srv->workers));
    if (srv->workers == NULL) {
        log_error("out of memory creating %u workers", n);
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        if (worker_init(&srv->workers[i], srv, i) != 0) {
            srv->nworkers = i;
            return -1;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        int err = pthread_create(&srv->workers[i].thread, NULL, worker_main,
                                 &srv->workers[i]);
        if (err != 0) {
            log_error("cannot start worker thread %u: %s", i, strerror(err));
            /* The threads already running are drained and joined. */
            srv->nworkers = i;
            return -1;
        }
    }
    return 0;
}

void
worker_drain_all(struct server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];
        pthread_mutex_lock(&w->lock);
        w->drain_requested = true;
        pthread_mutex_unlock(&w->lock);
        ev_async_send(w->loop, &w->notify);
    }
}

void
worker_join_all(struct server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];

        pthread_join(w->thread, NULL);
        /* Connections handed over after the loop ended. */
        for (size_t k = 0; k < w->qlen; k++) {
            close(w->queue[(w->qhead + k) % w->qcap].fd);
            atomic_fetch_sub(&srv->curr_conns, 1);
        }
        free(w->queue);
        while (w->npool > 0) {
            free(w->pool[--w->npool]);
        }
        watch_worker_detach(srv->watch, w);
        ev_loop_destroy(w->loop);
        pthread_mutex_destroy(&w->lock);
    }
    free(srv->workers);
    srv->workers = NULL;
}
