/*
 * near.c - the near cache: a thread that follows a corrald's invalidation
 * stream and applies it to a local corral_t (see corral_near.h).
 *
 * The thread's life, one connection after another:
 *
 *   connect ─► "watch invalidations [filters]" ─► OK ─► sync line
 *      ▲                                                   │ flush local,
 *      │ backoff (doubling, jitter)                         │ synced = 1
 *      │                                                   ▼
 *   synced = 0, flush local ◄── EOF, error, silence ──── apply each line
 *                                lagged/shutdown          (gap: flush)
 *
 * The local cache is flushed at every sync line because nothing tells the
 * thread what happened on the server while it was not listening: every
 * event after the sync line will arrive, nothing before it is known.
 * Applied events carry the server's node id as their origin, so the
 * local cache's own subscribers can tell them from local changes.
 *
 * Invariant: `synced` is 1 only between the flush that follows a sync
 * line and the first sign that the stream broke; corral_near_get() serves
 * nothing outside that window.
 *
 * Threads: one background thread per near cache owns the socket and the
 * read buffer.  `synced`, the counters and the node id are atomics; `lock`
 * and `cond` exist only for corral_near_wait_synced().  Stopping: destroy
 * writes to a pipe the thread polls, then joins it.
 *
 * The stream's lines are parsed by libcorral_proto (proto.h); this file
 * sees the engine only through corral.h.  The fleet-wide fetch
 * (corral_near_fetch_fleet) is in fleet.c.
 */
#include "corral_near.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#include "near_internal.h"

/* ---------------------------------------------------------------------- */
/* Local cache                                                            */

static void
near_set_synced(struct corral_near *n, int v)
{
    pthread_mutex_lock(&n->lock);
    atomic_store_explicit(&n->synced, v, memory_order_release);
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->lock);
}

/* Forget everything now.  type: CORRAL_EVENT_FLUSH also cancels a
 * delayed flush still to come (the server's state replaces the local one
 * at a sync line); CORRAL_EVENT_GAP keeps it. */
static void
near_flush(struct corral_near *n, corral_event_type_t type)
{
    corral_invalidation_t inv;
    uint64_t node = atomic_load(&n->node);

    memset(&inv, 0, sizeof(inv));
    inv.type = type;
    inv.flush_time = 0;
    inv.origin = node != 0 ? node : 1;
    corral_invalidate(n->cache, &inv);
    atomic_fetch_add_explicit(&n->flushes, 1, memory_order_relaxed);
}

/* The server's delayed flush still to come (its sync line's at=). */
static void
near_flush_at(struct corral_near *n, int64_t at)
{
    corral_invalidation_t inv;
    uint64_t node = atomic_load(&n->node);

    if (at <= 0) {
        return;
    }
    memset(&inv, 0, sizeof(inv));
    inv.type = CORRAL_EVENT_FLUSH;
    inv.flush_time = at;
    inv.origin = node != 0 ? node : 1;
    corral_invalidate(n->cache, &inv);
}

/* The stream broke: stop serving, then forget everything (once: what is
 * stored while unsynced is flushed at the next sync line). */
static void
near_lost(struct corral_near *n)
{
    if (atomic_load(&n->synced)) {
        near_set_synced(n, 0);
        near_flush(n, CORRAL_EVENT_GAP);
    }
}

static void
near_apply(struct corral_near *n, const struct proto_watch_event *ev)
{
    corral_invalidation_t inv;
    char tag[CORRAL_TAG_MAX + 1];

    memset(&inv, 0, sizeof(inv));
    inv.origin = atomic_load(&n->node);
    if (inv.origin == 0) {
        inv.origin = 1;
    }
    switch (ev->type) {
    case PROTO_WEV_DELETE:
    case PROTO_WEV_OVERWRITE:
    case PROTO_WEV_STALE:
        if (ev->len == 0) {
            return;
        }
        inv.type = CORRAL_EVENT_DELETE;
        inv.name = ev->name;
        inv.len = ev->len;
        break;
    case PROTO_WEV_TAG:
        if (ev->len == 0 || ev->len > CORRAL_TAG_MAX) {
            return;
        }
        memcpy(tag, ev->name, ev->len);
        tag[ev->len] = '\0';
        inv.type = CORRAL_EVENT_TAG;
        inv.name = tag;
        inv.len = ev->len;
        break;
    case PROTO_WEV_PREFIX:
        if (ev->len == 0) {
            return;
        }
        inv.type = CORRAL_EVENT_PREFIX;
        inv.name = ev->name;
        inv.len = ev->len;
        break;
    case PROTO_WEV_FLUSH:
        inv.type = CORRAL_EVENT_FLUSH;
        inv.flush_time = ev->at;
        atomic_fetch_add_explicit(&n->flushes, 1, memory_order_relaxed);
        break;
    default:
        return;
    }
    corral_invalidate(n->cache, &inv);
    atomic_fetch_add_explicit(&n->applied, 1, memory_order_relaxed);
    atomic_store_explicit(&n->last_seq, ev->seq, memory_order_relaxed);
}

/* ---------------------------------------------------------------------- */
/* Connection                                                             */

/* Sleep @ms unless asked to stop.  Returns true when asked to stop. */
static bool
near_sleep(struct corral_near *n, int64_t ms)
{
    struct pollfd p = {n->stop_pipe[0], POLLIN, 0};

    return poll(&p, 1, ms > INT32_MAX ? INT32_MAX : (int)ms) > 0;
}

int
near_connect(struct corral_near *n)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[8];
    int fd = -1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", n->port);
    if (getaddrinfo(n->host, port, &hints, &res) != 0) {
        return -1;
    }
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        struct pollfd p[2];
        int one = 1, err = 0;
        socklen_t len = sizeof(err);

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
                                       SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
#ifdef TCP_KEEPIDLE
        {
            int idle = 2, intvl = 1, cnt = 3;
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
                       sizeof(intvl));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
        }
#endif
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
            errno != EINPROGRESS) {
            close(fd);
            fd = -1;
            continue;
        }
        p[0].fd = fd;
        p[0].events = POLLOUT;
        p[1].fd = n->stop_pipe[0];
        p[1].events = POLLIN;
        if (poll(p, 2, (int)n->opts.connect_timeout_ms) <= 0 ||
            (p[1].revents & POLLIN) ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
            err != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static bool
near_send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd pf = {fd, POLLOUT, 0};
            poll(&pf, 1, 1000);
            continue;
        }
        if (w <= 0) {
            return false;
        }
        p += w;
        len -= (size_t)w;
    }
    return true;
}

/*
 * Parse what has been read.  Returns 0 to go on, -1 when the stream is
 * unusable (refused, malformed).
 */
static int
near_parse(struct corral_near *n, bool *got_ok)
{
    char name[PROTO_KEY_MAX];
    size_t off = 0;

    if (!*got_ok) {
        if (n->rlen < 4) {
            return 0;
        }
        if (memcmp(n->rbuf, "OK\r\n", 4) != 0) {
            return -1; /* not a corrald, or watch refused */
        }
        *got_ok = true;
        off = 4;
    }
    while (off < n->rlen) {
        struct proto_watch_event ev;
        size_t used;
        proto_status_t st = proto_parse_watch_line(
            n->rbuf + off, n->rlen - off, &ev, name, sizeof(name), &used);

        if (st == PROTO_AGAIN) {
            break;
        }
        if (st != PROTO_OK) {
            return -1;
        }
        off += used;
        switch (ev.type) {
        case PROTO_WEV_SYNC:
            atomic_store(&n->node, ev.node);
            near_flush(n, CORRAL_EVENT_FLUSH);
            near_flush_at(n, ev.at);
            atomic_fetch_add_explicit(&n->connects, 1, memory_order_relaxed);
            near_set_synced(n, 1);
            break;
        case PROTO_WEV_GAP:
            near_flush(n, CORRAL_EVENT_GAP);
            break;
        case PROTO_WEV_LAGGED:
        case PROTO_WEV_SHUTDOWN:
            /* the server closes next; stop serving at once */
            near_lost(n);
            break;
        default:
            if (atomic_load(&n->synced)) {
                near_apply(n, &ev);
            }
            break;
        }
    }
    if (off > 0) {
        memmove(n->rbuf, n->rbuf + off, n->rlen - off);
        n->rlen -= off;
    }
    return 0;
}

/* One connection, until it breaks or destroy is asked.  Returns true
 * when asked to stop. */
static bool
near_session(struct corral_near *n)
{
    char cmd[NEAR_FILTERS_MAX + 64];
    bool got_ok = false;
    int len;

    n->fd = near_connect(n);
    if (n->fd < 0) {
        return false;
    }
    if (n->opts.silence_ms > 0) {
        int64_t hb = n->opts.silence_ms / 4000;
        len = snprintf(cmd, sizeof(cmd),
                       "watch invalidations heartbeat=%lld%s%s\r\n",
                       (long long)(hb < 1 ? 1 : hb > 3600 ? 3600 : hb),
                       n->filters[0] != '\0' ? " " : "", n->filters);
    } else {
        len = snprintf(cmd, sizeof(cmd), "watch invalidations%s%s\r\n",
                       n->filters[0] != '\0' ? " " : "", n->filters);
    }
    if (!near_send_all(n->fd, cmd, (size_t)len)) {
        close(n->fd);
        n->fd = -1;
        return false;
    }
    n->rlen = 0;
    for (;;) {
        struct pollfd p[2] = {{n->fd, POLLIN, 0},
                              {n->stop_pipe[0], POLLIN, 0}};
        ssize_t r;
        int ready = poll(p, 2,
                         n->opts.silence_ms > 0 ? (int)n->opts.silence_ms
                                                : -1);

        if (ready < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (ready == 0) {
            break; /* silent for silence_ms: not a live stream */
        }
        if (p[1].revents & POLLIN) {
            close(n->fd);
            n->fd = -1;
            return true;
        }
        r = recv(n->fd, n->rbuf + n->rlen, NEAR_RBUF - n->rlen, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (r <= 0) {
            break; /* closed, reset, or keepalive gave up */
        }
        n->rlen += (size_t)r;
        if (near_parse(n, &got_ok) != 0 || n->rlen == NEAR_RBUF) {
            break;
        }
    }
    close(n->fd);
    n->fd = -1;
    return false;
}

static void *
near_main(void *arg)
{
    struct corral_near *n = arg;
    int64_t backoff = n->opts.backoff_min_ms;

    for (;;) {
        uint64_t before = atomic_load(&n->connects);
        int64_t d;

        if (near_session(n)) {
            break;
        }
        near_lost(n);
        if (atomic_load(&n->connects) != before) {
            backoff = n->opts.backoff_min_ms; /* it had worked */
        }
        /* jitter of +-20 % */
        d = backoff * (80 + (int64_t)(rand_r(&n->seed) % 41)) / 100;
        if (near_sleep(n, d)) {
            break;
        }
        backoff = backoff * 2 > n->opts.backoff_max_ms
                      ? n->opts.backoff_max_ms
                      : backoff * 2;
    }
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* API                                                                    */

CORRAL_NEAR_API void
corral_near_opts_init(corral_near_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->size = sizeof(*opts);
    opts->connect_timeout_ms = 2000;
    opts->backoff_min_ms = 100;
    opts->backoff_max_ms = 5000;
    opts->filters = NULL;
}

CORRAL_NEAR_API corral_status_t
corral_near_create(corral_t *cache, const char *host, unsigned port,
                   const corral_near_opts_t *opts, corral_near_t **out)
{
    struct corral_near *n;

    *out = NULL;
    if (cache == NULL || host == NULL || host[0] == '\0' ||
        strlen(host) >= NEAR_HOST_MAX || port == 0 || port > 65535) {
        return CORRAL_EINVAL;
    }
    if (opts != NULL && opts->filters != NULL &&
        (strlen(opts->filters) > NEAR_FILTERS_MAX ||
         strpbrk(opts->filters, "\r\n") != NULL)) {
        return CORRAL_EINVAL;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        return CORRAL_ENOMEM;
    }
    n->cache = cache;
    memcpy(n->host, host, strlen(host) + 1);
    n->port = port;
    corral_near_opts_init(&n->opts);
    if (opts != NULL) {
        size_t sz = opts->size < sizeof(n->opts) ? opts->size
                                                 : sizeof(n->opts);
        memcpy(&n->opts, opts, sz);
        n->opts.size = sizeof(n->opts);
    }
    if (n->opts.connect_timeout_ms <= 0) {
        n->opts.connect_timeout_ms = 2000;
    }
    if (n->opts.backoff_min_ms <= 0) {
        n->opts.backoff_min_ms = 100;
    }
    if (n->opts.backoff_max_ms < n->opts.backoff_min_ms) {
        n->opts.backoff_max_ms = n->opts.backoff_min_ms;
    }
    if (n->opts.silence_ms == 0) {
        n->opts.silence_ms = 5000;
    } else if (n->opts.silence_ms > 0 && n->opts.silence_ms < 2000) {
        n->opts.silence_ms = 2000;
    }
    if (n->opts.filters != NULL) {
        memcpy(n->filters, n->opts.filters, strlen(n->opts.filters) + 1);
    }
    n->opts.filters = NULL;
    n->fd = -1;
    n->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)n;
    n->rbuf = malloc(NEAR_RBUF);
    if (n->rbuf == NULL || pipe(n->stop_pipe) != 0) {
        free(n->rbuf);
        free(n);
        return CORRAL_ENOMEM;
    }
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->cond, NULL);
    pthread_mutex_init(&n->pool_lock, NULL);
    if (pthread_create(&n->thread, NULL, near_main, n) != 0) {
        pthread_cond_destroy(&n->cond);
        pthread_mutex_destroy(&n->lock);
        pthread_mutex_destroy(&n->pool_lock);
        close(n->stop_pipe[0]);
        close(n->stop_pipe[1]);
        free(n->rbuf);
        free(n);
        return CORRAL_ENOMEM;
    }
    *out = n;
    return CORRAL_OK;
}

CORRAL_NEAR_API void
corral_near_destroy(corral_near_t *n)
{
    char b = 0;

    if (n == NULL) {
        return;
    }
    while (write(n->stop_pipe[1], &b, 1) < 0 && errno == EINTR) {
    }
    pthread_join(n->thread, NULL);
    fleet_pool_drain(n);
    pthread_mutex_destroy(&n->pool_lock);
    close(n->stop_pipe[0]);
    close(n->stop_pipe[1]);
    pthread_cond_destroy(&n->cond);
    pthread_mutex_destroy(&n->lock);
    free(n->rbuf);
    free(n);
}

CORRAL_NEAR_API int
corral_near_synced(const corral_near_t *n)
{
    return atomic_load_explicit(&((corral_near_t *)n)->synced,
                                memory_order_acquire);
}

CORRAL_NEAR_API corral_status_t
corral_near_wait_synced(corral_near_t *n, int64_t timeout_ms)
{
    struct timespec deadline;
    corral_status_t st = CORRAL_OK;

    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (timeout_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&n->lock);
    while (!atomic_load(&n->synced)) {
        int rc = timeout_ms < 0
                     ? pthread_cond_wait(&n->cond, &n->lock)
                     : pthread_cond_timedwait(&n->cond, &n->lock, &deadline);
        if (rc == ETIMEDOUT) {
            st = atomic_load(&n->synced) ? CORRAL_OK : CORRAL_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&n->lock);
    return st;
}

CORRAL_NEAR_API corral_status_t
corral_near_get(corral_near_t *n, const void *key, size_t nkey,
                corral_item_t **out_item)
{
    *out_item = NULL;
    if (!corral_near_synced(n)) {
        return CORRAL_ENOTFOUND;
    }
    return corral_get(n->cache, key, nkey, out_item);
}

CORRAL_NEAR_API corral_status_t
corral_near_fetch(corral_near_t *n, const void *key, size_t nkey,
                  corral_loader_fn loader, void *ud,
                  const corral_fetch_opts_t *opts, corral_item_t **out_item,
                  int *out_error)
{
    if (!corral_near_synced(n)) {
        /* The local copy may be stale: make the loader run.  A load in
         * flight elsewhere that began before this delete cannot store
         * its result afterwards (leases). */
        corral_delete(n->cache, key, nkey);
    }
    return corral_fetch(n->cache, key, nkey, loader, ud, opts, out_item,
                        out_error);
}

CORRAL_NEAR_API void
corral_near_stats(const corral_near_t *n, corral_near_stats_t *out)
{
    corral_near_t *m = (corral_near_t *)n;

    memset(out, 0, sizeof(*out));
    out->connects = atomic_load(&m->connects);
    out->applied = atomic_load(&m->applied);
    out->flushes = atomic_load(&m->flushes);
    out->last_seq = atomic_load(&m->last_seq);
    out->node = atomic_load(&m->node);
}
