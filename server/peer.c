/*
 * peer.c - peer links: this node watches each peer's own invalidations
 * and applies them to its cache.
 *
 * Protocol.  A link is an ordinary client connection to the peer that
 * sends one command and then reads the invalidation stream (proto.h):
 *
 *   first time:    watch invalidations origin=local heartbeat=1
 *   reconnecting:  watch invalidations origin=local heartbeat=1
 *                      since=<next> node=<id>
 *
 *   peer ─► OK
 *        ─► ts=... type=sync node=<id> next=<seq>
 *        ─► [ts=... type=gap missed=<seq> next=<seq>]
 *        ─► ts=... seq=<n> type=<delete|overwrite|stale|tag|prefix|flush>
 *               ... origin=<id>            (one line per event of its own)
 *
 * origin=local asks only for events caused on the peer itself, not those
 * it applied from its own peers: with every node linked to every other
 * (a full mesh), each invalidation travels exactly one hop, so nothing
 * loops and nothing arrives twice.  An applied event is tagged with the
 * peer's id as its origin (corral_invalidate()), which is how it is told
 * apart from local ones here, in turn.  Per origin, the link keeps the
 * seq it expects next; an event below it (a replay overlapping what was
 * already applied) is skipped.
 *
 * Continuity.  A link that reconnects to the same process (same node id)
 * resumes at since=<next>: the peer replays what the link missed from its
 * history, and nothing is lost.  When that is impossible -- the first
 * connection, a peer that restarted (a new id), a history that no longer
 * holds <next> (the peer says "gap") -- this node cannot know what it
 * missed, so it flushes its cache (an event with the peer's origin, which
 * this node's own watchers hear) rather than keep possibly stale items.
 * Such a flush leaves this node's own delayed flush pending, and the
 * peer's delayed flush, given in its sync line, is scheduled here too.
 * A "lagged" or "shutdown" line gives <next> before the peer closes.
 *
 * A link whose peer turns out to be this very process (the same node id
 * in the sync line: a peer list shared by every node) closes for good.
 * Links reconnect after failures with exponential backoff and jitter
 * (100 ms doubling to 5 s; it starts over once a link has stayed up for
 * 5 s).  A link that reads nothing for PEER_SILENCE seconds (the peer
 * sends a ping line every second when it has nothing else) is closed
 * and reconnected: that notices a peer that vanished without closing or
 * whose process stopped, which TCP keepalive alone does not.
 *
 * Threads: the main loop only (see peer.h); counters and the state read
 * by "stats invalidations" are atomics.
 */
#include "peer.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <proto.h>

#include "exec.h"
#include "log.h"
#include "server.h"

#define PEER_RBUF (64 * 1024)
#define PEER_BACKOFF_MIN 0.1
#define PEER_BACKOFF_MAX 5.0
#define PEER_SILENCE 5.0 /* seconds without a byte: the link is dead */

/* The link's kernel receive buffer: bounded, like the peer's send buffer
 * for watchers, so that a node that stops reading is seen to fall behind
 * by its peer rather than hidden by the kernel's autotuning. */
#define PEER_RCVBUF (256 << 10)

#define PEER_STATE_TABLE(X)                                                   \
    X(DOWN, "down")             /* waiting to reconnect */                    \
    X(CONNECTING, "connecting") /* connect() in progress */                   \
    X(WAITING, "waiting")       /* watch sent, no sync line yet */            \
    X(UP, "up")                 /* applying the stream */                     \
    X(SELF, "self")             /* this very node: closed for good */

enum peer_state {
#define PEER_STATE_ENUM(e, s) PEER_##e,
    PEER_STATE_TABLE(PEER_STATE_ENUM)
#undef PEER_STATE_ENUM
};

static const char *const peer_state_names[] = {
#define PEER_STATE_NAME(e, s) s,
    PEER_STATE_TABLE(PEER_STATE_NAME)
#undef PEER_STATE_NAME
};

struct peer_link {
    struct peers *ps;
    char host[SETTINGS_LISTEN_MAX];
    unsigned port;
    char name[SETTINGS_LISTEN_MAX + 8]; /* "host:port" */
    int fd;
    ev_io io;
    ev_timer timer;
    ev_timer silence;          /* restarted by every read */
    double backoff;
    double up_since;           /* ev_now of the last sync line, or 0 */
    bool got_ok;               /* the "OK" answering watch was read */
    bool resumed;              /* the watch asked since= */
    int64_t sync_at;           /* the peer's pending flush, from its sync */
    uint64_t next;             /* the peer's seq expected next; 0: none */
    char *rbuf;
    size_t rlen;

    _Atomic int state;         /* enum peer_state */
    _Atomic uint64_t node;     /* the peer's id; 0 until first sync */
    atomic_uint_fast64_t applied;
    atomic_uint_fast64_t flushes;
    atomic_uint_fast64_t connects;
    /* Lag: for the last applied event, microseconds from its ts on the
     * peer to its application here (last_lag_us) and the Unix time of
     * that application (last_us); and the sum of the former over every
     * applied event (lag_sum_us).  Written together by the main loop;
     * a reader may see one updated before the other. */
    atomic_uint_fast64_t last_lag_us;
    atomic_uint_fast64_t last_us;
    atomic_uint_fast64_t lag_sum_us;
};

struct peers {
    struct server *srv;
    struct ev_loop *loop;
    unsigned n;
    struct peer_link *links;
    unsigned seed;
};

static void link_schedule(struct peer_link *l);
static void link_on_io(struct ev_loop *loop, ev_io *w, int revents);
static void link_on_silence(struct ev_loop *loop, ev_timer *t, int revents);

static void
link_set_state(struct peer_link *l, enum peer_state s)
{
    atomic_store_explicit(&l->state, (int)s, memory_order_relaxed);
}

static enum peer_state
link_state(const struct peer_link *l)
{
    return (enum peer_state)atomic_load_explicit(
        &((struct peer_link *)l)->state, memory_order_relaxed);
}

/* ---------------------------------------------------------------------- */
/* Connection                                                             */

static void
link_close(struct peer_link *l)
{
    if (l->fd >= 0) {
        ev_io_stop(l->ps->loop, &l->io);
        close(l->fd);
        l->fd = -1;
    }
    ev_timer_stop(l->ps->loop, &l->silence);
    l->rlen = 0;
    l->got_ok = false;
}

/* Close and try again later (unless the link is this node). */
static void
link_fail(struct peer_link *l, const char *why)
{
    bool was_up = link_state(l) == PEER_UP;

    if (was_up) {
        log_info("peer %s: link down (%s)", l->name, why);
    } else {
        log_verbose("peer %s: %s", l->name, why);
    }
    link_close(l);
    link_set_state(l, PEER_DOWN);
    link_schedule(l);
}

static void
link_flush_here(struct peer_link *l, uint64_t origin, const char *why)
{
    struct proto_watch_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = PROTO_WEV_GAP;
    log_info("peer %s: %s: flushing this node's cache", l->name, why);
    exec_apply_remote(l->ps->srv, &ev, origin != 0 ? origin : 1);
    atomic_fetch_add_explicit(&l->flushes, 1, memory_order_relaxed);
}

/* After a flush for lost events: schedule the peer's delayed flush that
 * its sync line gave (none: at is 0), which those events may have held. */
static void
link_flush_at(struct peer_link *l, uint64_t origin, int64_t at)
{
    struct proto_watch_event ev;

    if (at <= 0) {
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.type = PROTO_WEV_FLUSH;
    ev.at = at;
    exec_apply_remote(l->ps->srv, &ev, origin != 0 ? origin : 1);
}

static void
link_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct peer_link *l = t->data;
    struct addrinfo hints, *res = NULL, *ai;
    char port[8];
    int fd = -1, rc;

    (void)loop;
    (void)revents;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", l->port);
    rc = getaddrinfo(l->host, port, &hints, &res);
    if (rc != 0) {
        link_fail(l, gai_strerror(rc));
        return;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int one = 1;

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
                                       SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        int rcvbuf = PEER_RCVBUF;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
#ifdef TCP_KEEPIDLE
        {
            int idle = 5, intvl = 2, cnt = 3;
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
                       sizeof(intvl));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
        }
#endif
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
            errno == EINPROGRESS) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        link_fail(l, "cannot connect");
        return;
    }
    l->fd = fd;
    link_set_state(l, PEER_CONNECTING);
    ev_io_init(&l->io, link_on_io, fd, EV_WRITE);
    l->io.data = l;
    ev_io_start(l->ps->loop, &l->io);
    ev_timer_again(l->ps->loop, &l->silence);
}

/* Nothing read for PEER_SILENCE seconds, though the peer sends a ping
 * every second while it has nothing else: it is stopped or unreachable
 * (TCP keepalive is answered by a stopped process's kernel), or it never
 * accepted the connection. */
static void
link_on_silence(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    link_fail(t->data, "silent");
}

/* Schedule the next connection attempt after the current backoff. */
static void
link_schedule(struct peer_link *l)
{
    double d;
    unsigned r = rand_r(&l->ps->seed);

    /* A link that stayed up a while starts its backoff over; one that
     * fails right after its sync line (a peer that accepts, then sends
     * garbage or closes) keeps doubling it. */
    if (l->up_since > 0 &&
        ev_now(l->ps->loop) - l->up_since >= PEER_BACKOFF_MAX) {
        l->backoff = PEER_BACKOFF_MIN;
    }
    l->up_since = 0;
    d = l->backoff;

    /* +-20 % jitter, so that nodes restarted together spread out */
    d *= 0.8 + 0.4 * ((double)(r % 1000) / 1000.0);
    l->backoff = l->backoff * 2 > PEER_BACKOFF_MAX ? PEER_BACKOFF_MAX
                                                   : l->backoff * 2;
    ev_timer_stop(l->ps->loop, &l->timer);
    ev_timer_set(&l->timer, d, 0.);
    ev_timer_start(l->ps->loop, &l->timer);
}

/* The connection is up: ask for the stream. */
static void
link_send_watch(struct peer_link *l)
{
    char cmd[160];
    uint64_t node = atomic_load_explicit(&l->node, memory_order_relaxed);
    int n;
    ssize_t w;

    l->resumed = node != 0 && l->next != 0;
    if (l->resumed) {
        n = snprintf(cmd, sizeof(cmd),
                     "watch invalidations origin=local heartbeat=1 "
                     "since=%" PRIu64 " node=%016" PRIx64 "\r\n",
                     l->next, node);
    } else {
        n = snprintf(cmd, sizeof(cmd),
                     "watch invalidations origin=local heartbeat=1\r\n");
    }
    /* a fresh socket takes 100 bytes at once */
    w = write(l->fd, cmd, (size_t)n);
    if (w != n) {
        link_fail(l, "cannot send the watch command");
        return;
    }
    atomic_fetch_add_explicit(&l->connects, 1, memory_order_relaxed);
    link_set_state(l, PEER_WAITING);
    ev_io_stop(l->ps->loop, &l->io);
    ev_io_set(&l->io, l->fd, EV_READ);
    ev_io_start(l->ps->loop, &l->io);
}

/* ---------------------------------------------------------------------- */
/* The stream                                                             */

/*
 * Record the lag of an event just applied: wall-clock time here minus
 * the peer's timestamp on it.  Both are CLOCK_REALTIME, so across hosts
 * the figure includes their clocks' offset; a negative difference (a
 * peer's clock ahead of this one's) counts as 0.
 */
static void
link_note_lag(struct peer_link *l, uint64_t ts_us)
{
    struct timespec ts;
    uint64_t now, lag;

    clock_gettime(CLOCK_REALTIME, &ts);
    now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    lag = ts_us != 0 && now > ts_us ? now - ts_us : 0;
    atomic_store_explicit(&l->last_lag_us, lag, memory_order_relaxed);
    atomic_store_explicit(&l->last_us, now, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->lag_sum_us, lag, memory_order_relaxed);
}

/* One line.  Returns false when the link was closed. */
static bool
link_line(struct peer_link *l, const struct proto_watch_event *ev)
{
    struct peers *ps = l->ps;
    uint64_t node = atomic_load_explicit(&l->node, memory_order_relaxed);

    switch (ev->type) {
    case PROTO_WEV_SYNC:
        if (ev->node == ps->srv->node_id) {
            log_info("peer %s is this node: link closed", l->name);
            link_close(l);
            link_set_state(l, PEER_SELF);
            return false;
        }
        if (!l->resumed) {
            /* no continuity with anything this node heard before (a
             * resumed link that lost some is told so by a gap line) */
            link_flush_here(l, ev->node, "first link to this peer");
            link_flush_at(l, ev->node, ev->at);
        }
        l->sync_at = ev->at;
        atomic_store_explicit(&l->node, ev->node, memory_order_relaxed);
        l->next = ev->next;
        l->up_since = ev_now(ps->loop);
        link_set_state(l, PEER_UP);
        log_info("peer %s: link up (node %016" PRIx64 ", next %" PRIu64 ")",
                 l->name, ev->node, ev->next);
        return true;
    case PROTO_WEV_GAP:
        link_flush_here(l, node, "missed events");
        link_flush_at(l, node, l->sync_at);
        l->next = ev->next;
        return true;
    case PROTO_WEV_LAGGED:
    case PROTO_WEV_SHUTDOWN:
        /* the peer closes next; resume there */
        if (ev->next != 0) {
            l->next = ev->next;
        }
        return true;
    case PROTO_WEV_DELETE:
    case PROTO_WEV_OVERWRITE:
    case PROTO_WEV_STALE:
    case PROTO_WEV_TAG:
    case PROTO_WEV_PREFIX:
    case PROTO_WEV_FLUSH:
        if (link_state(l) != PEER_UP || ev->origin != node) {
            /* not what origin=local promised: distrust the link */
            link_fail(l, "unexpected event on the stream");
            return false;
        }
        if (ev->seq < l->next) {
            return true; /* already applied */
        }
        if (exec_apply_remote(ps->srv, ev, node) != 0) {
            log_warn("peer %s: event %" PRIu64 " refused by the cache",
                     l->name, ev->seq);
        }
        l->next = ev->seq + 1;
        atomic_fetch_add_explicit(&l->applied, 1, memory_order_relaxed);
        link_note_lag(l, ev->ts_us);
        return true;
    case PROTO_WEV_PING:
        /* everything before next was sent or filtered out: a resume
         * from there misses nothing */
        if (link_state(l) == PEER_UP && ev->next > l->next) {
            l->next = ev->next;
        }
        return true;
    case PROTO_WEV_NONE:
    case PROTO_WEV_COUNT:
    default:
        return true; /* a line of a newer kind: ignored */
    }
}

/* Parse what has been read.  Returns false when the link was closed. */
static bool
link_parse(struct peer_link *l)
{
    size_t off = 0;
    char name[PROTO_KEY_MAX];

    if (!l->got_ok) {
        const char *nl = memchr(l->rbuf, '\n', l->rlen);

        if (nl == NULL) {
            if (l->rlen > 256) {
                link_fail(l, "no answer to watch");
                return false;
            }
            return true;
        }
        if (l->rlen < 4 || memcmp(l->rbuf, "OK\r\n", 4) != 0) {
            log_warn("peer %s refused watch invalidations: %.*s", l->name,
                     (int)(nl - l->rbuf), l->rbuf);
            l->backoff = PEER_BACKOFF_MAX;
            link_fail(l, "watch refused");
            return false;
        }
        l->got_ok = true;
        off = 4;
    }
    while (off < l->rlen) {
        struct proto_watch_event ev;
        size_t used;
        proto_status_t st = proto_parse_watch_line(
            l->rbuf + off, l->rlen - off, &ev, name, sizeof(name), &used);

        if (st == PROTO_AGAIN) {
            break;
        }
        if (st != PROTO_OK) {
            link_fail(l, "malformed stream");
            return false;
        }
        off += used;
        if (!link_line(l, &ev)) {
            return false;
        }
    }
    if (off > 0) {
        memmove(l->rbuf, l->rbuf + off, l->rlen - off);
        l->rlen -= off;
    }
    return true;
}

static void
link_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct peer_link *l = w->data;

    if (link_state(l) == PEER_CONNECTING && (revents & EV_WRITE)) {
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
            err != 0) {
            link_fail(l, err != 0 ? strerror(err) : "connect failed");
            return;
        }
        link_send_watch(l);
        return;
    }
    for (;;) {
        ssize_t n = read(l->fd, l->rbuf + l->rlen, PEER_RBUF - l->rlen);

        if (n > 0) {
            l->rlen += (size_t)n;
            ev_timer_again(loop, &l->silence);
            if (!link_parse(l)) {
                return;
            }
            if (l->rlen == PEER_RBUF) {
                link_fail(l, "line too long");
                return;
            }
            continue;
        }
        if (n == 0) {
            link_fail(l, "closed by the peer");
            return;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            link_fail(l, strerror(errno));
        }
        return;
    }
}

/* ---------------------------------------------------------------------- */
/* Setup and report                                                       */

struct peers *
peers_create(struct server *srv, struct ev_loop *loop)
{
    const struct settings *st = srv->settings;
    struct peers *ps = calloc(1, sizeof(*ps));

    if (ps == NULL) {
        log_error("out of memory creating peer links");
        return NULL;
    }
    ps->srv = srv;
    ps->loop = loop;
    ps->n = st->npeers;
    ps->seed = (unsigned)(srv->node_id ^ (srv->node_id >> 32));
    ps->links = calloc(st->npeers > 0 ? st->npeers : 1, sizeof(*ps->links));
    if (ps->links == NULL) {
        free(ps);
        log_error("out of memory creating peer links");
        return NULL;
    }
    for (unsigned i = 0; i < ps->n; i++) {
        struct peer_link *l = &ps->links[i];

        l->ps = ps;
        l->fd = -1;
        snprintf(l->host, sizeof(l->host), "%s", st->peers[i].host);
        l->port = st->peers[i].port;
        snprintf(l->name, sizeof(l->name),
                 strchr(l->host, ':') != NULL ? "[%s]:%u" : "%s:%u", l->host,
                 l->port);
        l->rbuf = malloc(PEER_RBUF);
        if (l->rbuf == NULL) {
            ps->n = i;
            peers_destroy(ps);
            log_error("out of memory creating peer links");
            return NULL;
        }
        l->backoff = PEER_BACKOFF_MIN;
        atomic_init(&l->state, PEER_DOWN);
        ev_timer_init(&l->timer, link_on_timer, 0., 0.);
        l->timer.data = l;
        ev_timer_start(loop, &l->timer);
        ev_timer_init(&l->silence, link_on_silence, 0., PEER_SILENCE);
        l->silence.data = l;
    }
    return ps;
}

void
peers_destroy(struct peers *ps)
{
    if (ps == NULL) {
        return;
    }
    for (unsigned i = 0; i < ps->n; i++) {
        struct peer_link *l = &ps->links[i];

        ev_timer_stop(ps->loop, &l->timer);
        link_close(l);
        free(l->rbuf);
    }
    free(ps->links);
    free(ps);
}

void
peers_report(struct peers *ps,
             void (*fn)(const char *name, const char *value, void *ud),
             void *ud)
{
    char name[SETTINGS_LISTEN_MAX + 32], v[32];
    uint64_t up = 0, applied = 0, flushes = 0, connects = 0;

    for (unsigned i = 0; i < ps->n; i++) {
        const struct peer_link *l = &ps->links[i];
        up += link_state(l) == PEER_UP;
        applied += atomic_load(&l->applied);
        flushes += atomic_load(&l->flushes);
        connects += atomic_load(&l->connects);
    }
#define REPORT_U64(label, value)                                              \
    do {                                                                      \
        snprintf(v, sizeof(v), "%" PRIu64, (uint64_t)(value));               \
        fn(label, v, ud);                                                     \
    } while (0)
    REPORT_U64("peers", ps->n);
    REPORT_U64("peers_up", up);
    REPORT_U64("peer_events_applied", applied);
    REPORT_U64("peer_flushes", flushes);
    REPORT_U64("peer_connects", connects);
    for (unsigned i = 0; i < ps->n; i++) {
        const struct peer_link *l = &ps->links[i];

        snprintf(name, sizeof(name), "peer:%s:state", l->name);
        fn(name, peer_state_names[link_state(l)], ud);
        snprintf(name, sizeof(name), "peer:%s:node", l->name);
        snprintf(v, sizeof(v), "%016" PRIx64,
                 (uint64_t)atomic_load(&((struct peer_link *)l)->node));
        fn(name, v, ud);
        snprintf(name, sizeof(name), "peer:%s:applied", l->name);
        REPORT_U64(name, atomic_load(&l->applied));
        snprintf(name, sizeof(name), "peer:%s:flushes", l->name);
        REPORT_U64(name, atomic_load(&l->flushes));
        snprintf(name, sizeof(name), "peer:%s:connects", l->name);
        REPORT_U64(name, atomic_load(&l->connects));
        snprintf(name, sizeof(name), "peer:%s:lag_us", l->name);
        REPORT_U64(name, atomic_load(&l->last_lag_us));
    }
#undef REPORT_U64
}

unsigned
peers_count(const struct peers *ps)
{
    return ps != NULL ? ps->n : 0;
}

const char *
peers_state_name(unsigned state)
{
    return state < sizeof(peer_state_names) / sizeof(peer_state_names[0])
               ? peer_state_names[state]
               : NULL;
}

void
peers_link_stats(struct peers *ps, unsigned i, struct peer_stats *out)
{
    struct peer_link *l = &ps->links[i];

    assert(i < ps->n);
    memset(out, 0, sizeof(*out));
    out->name = l->name;
    out->state = (unsigned)link_state(l);
    out->up = link_state(l) == PEER_UP;
    out->node = atomic_load_explicit(&l->node, memory_order_relaxed);
    out->applied = atomic_load_explicit(&l->applied, memory_order_relaxed);
    out->flushes = atomic_load_explicit(&l->flushes, memory_order_relaxed);
    out->connects = atomic_load_explicit(&l->connects, memory_order_relaxed);
    out->lag_us = atomic_load_explicit(&l->last_lag_us, memory_order_relaxed);
    out->last_us = atomic_load_explicit(&l->last_us, memory_order_relaxed);
    out->lag_sum_us =
        atomic_load_explicit(&l->lag_sum_us, memory_order_relaxed);
}
