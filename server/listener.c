/*
 * listener.c - bind, listen and accept; hand each connection to a worker.
 *
 * Accepting (one readiness event):
 *   1. accept4() non-blocking, up to LISTENER_BATCH connections, so one
 *      busy listener cannot starve the rest of the main loop;
 *   2. past the connection limit (-c), write memcached's
 *      "ERROR Too many open connections" line, close, and count it in
 *      rejected_connections (memcached's maxconns_fast behaviour);
 *   3. otherwise set TCP_NODELAY, count it, and pass it to the next
 *      worker in round-robin order.
 * When accept() fails for lack of descriptors (EMFILE, ENFILE), accepting
 * pauses for LISTENER_RETRY seconds (listen_disabled_num counts it) instead
 * of spinning on a socket that stays readable.
 *
 * The listening sockets, their addresses and the port never change after
 * listener_create(); everything else is main-thread only.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "worker.h"

#define LISTENER_MAX_SOCKETS 8
#define LISTENER_BATCH 64
#define LISTENER_RETRY 0.1

static const char too_many[] = "ERROR Too many open connections\r\n";

struct listen_sock {
    int fd;
    ev_io io;
    char addr[80];
    struct listener *l;
};

struct listener {
    struct server *srv;
    struct listen_sock socks[LISTENER_MAX_SOCKETS];
    size_t nsocks;
    unsigned port;
    unsigned next_worker;
    ev_timer retry;
    bool paused;
    bool stopped;
};

static void listener_on_accept(struct ev_loop *loop, ev_io *w, int revents);

/* "tcp:<addr>:<port>" (IPv6 in brackets) for a socket address. */
static void
format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(buf, len, "tcp:%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(buf, len, "tcp6:[%s]:%u", host, port);
    } else {
        snprintf(buf, len, "unknown");
    }
}

static void
listener_pause(struct listener *l)
{
    if (l->paused) {
        return;
    }
    l->paused = true;
    atomic_store(&l->srv->accepting, false);
    srv_counter_add(&l->srv->listen_disabled_num, 1);
    for (size_t i = 0; i < l->nsocks; i++) {
        ev_io_stop(l->srv->main_loop, &l->socks[i].io);
    }
    ev_timer_set(&l->retry, LISTENER_RETRY, 0.);
    ev_timer_start(l->srv->main_loop, &l->retry);
}

static void
listener_on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct listener *l = t->data;

    (void)revents;
    l->paused = false;
    if (l->stopped) {
        return;
    }
    atomic_store(&l->srv->accepting, true);
    for (size_t i = 0; i < l->nsocks; i++) {
        ev_io_start(loop, &l->socks[i].io);
    }
}

static void
listener_reject(struct listener *l, int fd)
{
    /* Best effort, as memcached: the socket buffer of a new connection
     * always has room for one line. */
    if (write(fd, too_many, sizeof(too_many) - 1) < 0) {
        log_verbose("rejected connection: %s", strerror(errno));
    }
    close(fd);
    srv_counter_add(&l->srv->rejected_conns, 1);
}

static void
listener_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct listen_sock *ls = w->data;
    struct listener *l = ls->l;
    struct server *srv = l->srv;

    (void)loop;
    (void)revents;
    for (int i = 0; i < LISTENER_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char peer[64];
        int one = 1;
        struct worker *wk;
        int fd;

        fd = accept4(ls->fd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                log_warn("accept: %s; accepting paused", strerror(errno));
                listener_pause(l);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_warn("accept: %s", strerror(errno));
            }
            return;
        }
        if (atomic_load(&srv->curr_conns) >= srv->settings->max_conns) {
            log_verbose("connection limit (%u) reached; rejecting",
                        srv->settings->max_conns);
            listener_reject(l, fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        format_addr((struct sockaddr *)&ss, peer, sizeof(peer));
        atomic_fetch_add(&srv->curr_conns, 1);
        srv_counter_add(&srv->total_conns, 1);
        wk = &srv->workers[l->next_worker];
        l->next_worker = (l->next_worker + 1) % srv->nworkers;
        if (worker_dispatch(wk, fd, peer) != 0) {
            log_warn("out of memory handing a connection over");
            close(fd);
            atomic_fetch_sub(&srv->curr_conns, 1);
        }
    }
}

static int
listener_bind_one(struct listener *l, const struct addrinfo *ai)
{
    const struct settings *st = l->srv->settings;
    struct listen_sock *ls;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int one = 1;
    int fd;

    if (l->nsocks == LISTENER_MAX_SOCKETS) {
        return 0;
    }
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
        log_error("socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        char where[80];
        format_addr(ai->ai_addr, where, sizeof(where));
        log_error("bind %s: %s", where, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, (int)st->backlog) != 0) {
        log_error("listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    ls = &l->socks[l->nsocks++];
    ls->fd = fd;
    ls->l = l;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        format_addr((struct sockaddr *)&ss, ls->addr, sizeof(ls->addr));
        if (ss.ss_family == AF_INET) {
            l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            l->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    ev_io_init(&ls->io, listener_on_accept, fd, EV_READ);
    ls->io.data = ls;
    return 0;
}

struct listener *
listener_create(struct server *srv)
{
    const struct settings *st = srv->settings;
    struct addrinfo hints, *res = NULL, *ai;
    struct listener *l;
    char port[16];
    const char *host;
    int err;

    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        log_error("out of memory");
        return NULL;
    }
    l->srv = srv;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(port, sizeof(port), "%u", st->port);
    /* memcached treats "-l 0.0.0.0"-style wildcards and host names
     * alike; an explicit "*" means every interface. */
    host = strcmp(st->listen, "*") == 0 ? NULL : st->listen;
    err = getaddrinfo(host, port, &hints, &res);
    if (err != 0) {
        log_error("cannot resolve listen address \"%s\": %s", st->listen,
                  gai_strerror(err));
        free(l);
        return NULL;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        if (listener_bind_one(l, ai) != 0) {
            freeaddrinfo(res);
            listener_destroy(l);
            return NULL;
        }
        /* With -p 0 every further address must use the port the first
         * one was given. */
        if (st->port == 0 && l->port != 0) {
            break;
        }
    }
    freeaddrinfo(res);
    if (l->nsocks == 0) {
        log_error("no address to listen on for \"%s\"", st->listen);
        free(l);
        return NULL;
    }
    ev_init(&l->retry, listener_on_retry);
    l->retry.data = l;
    for (size_t i = 0; i < l->nsocks; i++) {
        ev_io_start(srv->main_loop, &l->socks[i].io);
        log_info("listening on %s", l->socks[i].addr);
    }
    atomic_store(&srv->accepting, true);
    return l;
}

void
listener_stop(struct listener *l)
{
    if (l == NULL || l->stopped) {
        return;
    }
    l->stopped = true;
    atomic_store(&l->srv->accepting, false);
    ev_timer_stop(l->srv->main_loop, &l->retry);
    for (size_t i = 0; i < l->nsocks; i++) {
        ev_io_stop(l->srv->main_loop, &l->socks[i].io);
        close(l->socks[i].fd);
    }
}

void
listener_destroy(struct listener *l)
{
    if (l == NULL) {
        return;
    }
    if (!l->stopped) {
        for (size_t i = 0; i < l->nsocks; i++) {
            if (ev_is_active(&l->socks[i].io)) {
                ev_io_stop(l->srv->main_loop, &l->socks[i].io);
            }
            close(l->socks[i].fd);
        }
    }
    free(l);
}

unsigned
listener_port(const struct listener *l)
{
    return l->port;
}

void
listener_foreach(const struct listener *l,
                 void (*fn)(int fd, const char *addr, void *ud), void *ud)
{
    for (size_t i = 0; i < l->nsocks; i++) {
        fn(l->socks[i].fd, l->socks[i].addr, ud);
    }
}

const char *
listener_addr(const struct listener *l)
{
    return l->nsocks > 0 ? l->socks[0].addr : "";
}
