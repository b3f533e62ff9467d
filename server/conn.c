/*
 * conn.c - one client connection: input buffer, batch execution, output
 * queue, back-pressure and close.
 *
 * Life of a read event:
 *
 *   read() ──► rbuf ──► exec_process() ──► output queue ──► writev()
 *              (grows    (every complete    (iovecs: arena    (one call
 *               only as   request in the     bytes and pinned  per batch)
 *               needed)   buffer)            item values)
 *
 * Input.  rbuf is borrowed from the worker's block pool when bytes
 * arrive and given back as soon as every byte in it has been consumed, so
 * an idle connection holds no data buffer.  A request larger than a block
 * (a big value, a long multi-get line) grows rbuf to the size it needs,
 * up to settings->request_max; past that the request is refused and the
 * connection closed.  Bytes the protocol says to discard after an error
 * (a refused data block) are counted down in `swallow`.
 *
 * Output.  Replies are a list of iovecs, each pointing either into the
 * arena (a chain of chunks holding composed lines and small values) or
 * into the value of a pinned item (own[i] != NULL), which is released
 * once its bytes are written.  Consecutive arena bytes share one iovec.
 * Items whose small values were copied stay pinned too (`held`) until
 * the queue has been written, as memcached keeps every item a pending
 * reply refers to: an incr pipelined behind a get of the same key then
 * finds the item in use and stores a new one, as memcached does.
 * After each batch the queue is written with writev(); what the socket
 * does not take waits for EV_WRITE.
 *
 * Back-pressure.  When the unsent output passes CONN_OUT_MAX, requests
 * are no longer executed and the socket is no longer read, until the
 * queue has been written completely.  A client that does not read its
 * replies therefore stalls only itself, and its memory stays bounded.
 *
 * TLS (-Z).  The same path serves TLS connections: conn_sys_read() and
 * conn_sys_writev() call tls_read() and tls_writev() instead of read()
 * and writev() (one test of c->tls, nothing else, on the plain path).
 * A TLS read may have to wait until the socket is writable, and a TLS
 * write until it is readable (handshake messages); conn_tls_watch()
 * watches for that and the callbacks repeat the blocked call first.
 * Decrypted bytes buffered in the TLS layer are read by feeding the read
 * watcher an event, since the socket itself may show nothing.
 *
 * Idle timeout.  last_active is the time of the last progress: a
 * complete request executed, or reply bytes accepted by the socket.
 * Bytes of an incomplete request are not progress, so a client that
 * trickles a line, or stops reading its replies, is closed by the idle
 * timeout like a silent one.
 *
 * Invariants: head <= niov; out_bytes is the sum of iov[head..niov) lengths;
 * the read watcher is active unless paused, closing or at EOF; the write
 * watcher is active exactly while output is pending (for TLS: also while
 * a read waits for writability, and not while a write waits for input).
 * A connection is freed only at the end of a top-level event callback
 * (conn_after_io) or by the worker, never in the middle of exec_process().
 *
 * Streams.  After "watch" a connection becomes a stream: conn_process()
 * discards its input (read only to notice EOF), and its producer queues
 * output with conn_out_copy(), then sends it with conn_send() when it
 * queued from its own callbacks on the worker's thread; the producer
 * hears when the queue has been written (ops->writable, which may queue
 * more), when the server drains (ops->drain) and when the connection
 * closes (ops->closed, before it is freed).
 *
 * Threads: a connection is used only by its worker's thread.  `state`,
 * `last_cmd`, `peer` and `fd` are also read by "stats conns" from other
 * workers under the owner's list lock; the first two are atomics, the
 * others never change.
 */
#include "conn.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <ev.h>

#include "exec.h"
#include "fault.h"
#include "log.h"
#include "server.h"
#include "tls.h"
#include "worker.h"

/* Unsent output beyond which a connection stops executing and reading. */
#define CONN_OUT_MAX ((size_t)1 << 20)

/* Values up to this size are copied into the arena rather than pinned:
 * cheaper than one more iovec and a pinned item. */
#define CONN_INLINE_MAX 512

/* iovecs per writev() call. */
#ifdef IOV_MAX
#define CONN_IOV_BATCH IOV_MAX
#else
#define CONN_IOV_BATCH 1024
#endif

/* Shrink the iovec arrays back when they grew past this. */
#define CONN_IOV_KEEP 256

enum conn_state {
#define CONN_STATE_TABLE(X)                                                   \
    X(NEW_CMD, "conn_new_cmd")                                                \
    X(WAITING, "conn_waiting")                                                \
    X(NREAD, "conn_nread")                                                    \
    X(SWALLOW, "conn_swallow")                                                \
    X(PARSE_CMD, "conn_parse_cmd")                                            \
    X(MWRITE, "conn_mwrite")                                                  \
    X(CLOSING, "conn_closing")                                                \
    X(WATCH, "conn_watch")
#define CONN_STATE_ENUM(name, text) CONN_##name,
    CONN_STATE_TABLE(CONN_STATE_ENUM)
#undef CONN_STATE_ENUM
};

static const char *const conn_state_names[] = {
#define CONN_STATE_NAME(name, text) text,
    CONN_STATE_TABLE(CONN_STATE_NAME)
#undef CONN_STATE_NAME
};

struct out_chunk {
    struct out_chunk *next;
    size_t cap;       /* bytes in data[] */
    size_t used;
    bool pooled;      /* a worker block, returned to the pool */
    char data[];
};

#define CHUNK_POOLED_CAP (WORKER_BLOCK_SIZE - sizeof(struct out_chunk))

struct conn {
    struct worker *w;
    struct worker_link link;      /* worker list, under w->lock */
    int fd;
    ev_io rio;
    ev_io wio;

    /* input */
    char *rbuf;
    size_t rcap;
    size_t rlen;
    bool rpooled;
    size_t swallow;               /* input bytes still to discard */

    /* output */
    struct iovec *iov;
    corral_item_t **own;          /* parallel to iov: pinned item or NULL */
    size_t niov, head, iovcap;
    struct out_chunk *chunks, *tail;
    size_t out_bytes;             /* unsent */
    corral_item_t **held;         /* pinned until the queue is written */
    size_t nheld, heldcap;

    bool closing;                 /* close once the output is written */
    bool killed;                  /* close now */
    bool eof;                     /* the peer closed its side */
    bool paused;                  /* reading stopped by back-pressure */
    bool draining;                /* SIGTERM: close when idle */
    bool drain_reading;           /* draining, a request still arriving */
    bool lingering;               /* draining, replies sent, FIN sent */
    bool authenticated;           /* -Y: may send commands */
    double last_active;           /* ev_now() of the last progress */

    /* TLS (-Z): the session, and which readiness a blocked TLS read or
     * write waits for when it is not its own direction. */
    struct tls_conn *tls;
    bool tls_read_wants_write;
    bool tls_write_wants_read;

    /* a stream ("watch"): no more requests, output from a producer */
    const struct conn_stream_ops *stream;
    void *stream_ud;

    _Atomic unsigned char state;  /* enum conn_state, for stats conns */
    _Atomic int64_t last_cmd;     /* Unix seconds of the last command */
    char peer[64];
};

static void conn_on_read(struct ev_loop *loop, ev_io *w, int revents);
static void conn_on_write(struct ev_loop *loop, ev_io *w, int revents);
static void conn_tls_watch(struct conn *c);
static bool conn_linger(struct conn *c);

static void
conn_set_state(struct conn *c, enum conn_state s)
{
    unsigned char old = atomic_load_explicit(&c->state,
                                             memory_order_relaxed);

    if (old != (unsigned char)s) {
        log_debug("%d: going from %s to %s", c->fd, conn_state_names[old],
                  conn_state_names[s]);
    }
    atomic_store_explicit(&c->state, (unsigned char)s, memory_order_relaxed);
}

struct conn *
conn_create(struct worker *w, int fd, const char *peer)
{
    struct conn *c = srv_calloc(1, sizeof(*c));

    if (c == NULL) {
        log_warn("out of memory accepting a connection");
        close(fd);
        atomic_fetch_sub(&w->srv->curr_conns, 1);
        return NULL;
    }
    if (w->srv->tls != NULL) {
        c->tls = tls_conn_create(w->srv->tls, fd);
        if (c->tls == NULL) {
            log_warn("out of memory starting TLS for a connection");
            free(c);
            close(fd);
            atomic_fetch_sub(&w->srv->curr_conns, 1);
            return NULL;
        }
    }
    c->authenticated = w->srv->auth == NULL;
    c->w = w;
    c->fd = fd;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->last_active = ev_now(w->loop);
    atomic_store_explicit(&c->last_cmd, (int64_t)c->last_active,
                          memory_order_relaxed);
    conn_set_state(c, CONN_NEW_CMD);
    ev_io_init(&c->rio, conn_on_read, fd, EV_READ);
    ev_io_init(&c->wio, conn_on_write, fd, EV_WRITE);
    c->rio.data = c;
    c->wio.data = c;
    c->link.conn = c;
    worker_conn_add(w, &c->link);
    ev_io_start(w->loop, &c->rio);
    log_verbose("<%d new client connection from %s", fd, c->peer);
    return c;
}

/* ---------------------------------------------------------------------- */
/* Buffers                                                                */

static void
rbuf_release(struct conn *c)
{
    if (c->rbuf == NULL) {
        return;
    }
    if (c->rpooled) {
        worker_block_put(c->w, c->rbuf);
    } else {
        free(c->rbuf);
    }
    c->rbuf = NULL;
    c->rcap = 0;
    c->rlen = 0;
    c->rpooled = false;
}

static bool
rbuf_acquire(struct conn *c)
{
    c->rbuf = worker_block_get(c->w);
    if (c->rbuf == NULL) {
        return false;
    }
    c->rcap = WORKER_BLOCK_SIZE;
    c->rpooled = true;
    c->rlen = 0;
    return true;
}

/* Grow rbuf to @cap bytes, keeping its contents. */
static bool
rbuf_grow(struct conn *c, size_t cap)
{
    char *nb;

    if (c->rpooled) {
        nb = srv_malloc(cap);
        if (nb == NULL) {
            return false;
        }
        memcpy(nb, c->rbuf, c->rlen);
        worker_block_put(c->w, c->rbuf);
        c->rpooled = false;
    } else {
        nb = srv_realloc(c->rbuf, cap);
        if (nb == NULL) {
            return false;
        }
    }
    c->rbuf = nb;
    c->rcap = cap;
    return true;
}

static void
chunk_free(struct conn *c, struct out_chunk *k)
{
    if (k->pooled) {
        worker_block_put(c->w, k);
    } else {
        free(k);
    }
}

static void
chunks_free_after(struct conn *c, struct out_chunk *keep)
{
    struct out_chunk *k = keep != NULL ? keep->next : c->chunks;

    while (k != NULL) {
        struct out_chunk *next = k->next;
        chunk_free(c, k);
        k = next;
    }
    if (keep != NULL) {
        keep->next = NULL;
    } else {
        c->chunks = NULL;
    }
    c->tail = keep;
}

static void
held_release(struct conn *c)
{
    for (size_t i = 0; i < c->nheld; i++) {
        corral_item_release(c->held[i]);
    }
    c->nheld = 0;
    if (c->heldcap > CONN_IOV_KEEP) {
        free(c->held);
        c->held = NULL;
        c->heldcap = 0;
    }
}

/* Everything has been written: release the queue's memory. */
static void
out_reset(struct conn *c)
{
    if (c->tls != NULL) {
        tls_idle(c->tls);
    }
    for (size_t i = c->head; i < c->niov; i++) {
        corral_item_release(c->own[i]);
    }
    held_release(c);
    c->niov = 0;
    c->head = 0;
    c->out_bytes = 0;
    chunks_free_after(c, NULL);
    if (c->iovcap > CONN_IOV_KEEP) {
        free(c->iov);
        free(c->own);
        c->iov = NULL;
        c->own = NULL;
        c->iovcap = 0;
    }
}

static bool
iov_reserve(struct conn *c)
{
    size_t cap;
    struct iovec *iov;
    corral_item_t **own;

    if (c->niov < c->iovcap) {
        return true;
    }
    cap = c->iovcap == 0 ? 16 : c->iovcap * 2;
    iov = srv_realloc(c->iov, cap * sizeof(*iov));
    if (iov == NULL) {
        return false;
    }
    c->iov = iov;
    own = srv_realloc(c->own, cap * sizeof(*own));
    if (own == NULL) {
        return false;
    }
    c->own = own;
    c->iovcap = cap;
    return true;
}

/* ---------------------------------------------------------------------- */
/* Output API                                                             */

char *
conn_out_reserve(struct conn *c, size_t n)
{
    struct out_chunk *k = c->tail;

    if (k != NULL && k->cap - k->used >= n) {
        return k->data + k->used;
    }
    if (n <= CHUNK_POOLED_CAP) {
        k = worker_block_get(c->w);
        if (k == NULL) {
            c->killed = true; /* a reply cut short would desynchronise */
            return NULL;
        }
        k->cap = CHUNK_POOLED_CAP;
        k->pooled = true;
    } else {
        k = srv_malloc(sizeof(*k) + n);
        if (k == NULL) {
            c->killed = true;
            return NULL;
        }
        k->cap = n;
        k->pooled = false;
    }
    k->used = 0;
    k->next = NULL;
    if (c->tail != NULL) {
        c->tail->next = k;
    } else {
        c->chunks = k;
    }
    c->tail = k;
    return k->data;
}

void
conn_out_commit(struct conn *c, size_t n)
{
    struct out_chunk *k = c->tail;
    char *p;

    if (n == 0) {
        return;
    }
    p = k->data + k->used;
    k->used += n;
    c->out_bytes += n;
    if (c->niov > c->head && c->own[c->niov - 1] == NULL &&
        (char *)c->iov[c->niov - 1].iov_base + c->iov[c->niov - 1].iov_len ==
            p) {
        c->iov[c->niov - 1].iov_len += n;
        return;
    }
    if (!iov_reserve(c)) {
        /* Drop the bytes and the connection: the reply cannot be sent
         * whole. */
        c->out_bytes -= n;
        c->killed = true;
        return;
    }
    c->iov[c->niov].iov_base = p;
    c->iov[c->niov].iov_len = n;
    c->own[c->niov] = NULL;
    c->niov++;
}

bool
conn_out_copy(struct conn *c, const void *p, size_t n)
{
    char *dst;

    if (n == 0) {
        return true;
    }
    dst = conn_out_reserve(c, n);
    if (dst == NULL) {
        return false;
    }
    memcpy(dst, p, n);
    conn_out_commit(c, n);
    return true;
}

bool
conn_out_hold(struct conn *c, corral_item_t *item)
{
    if (c->nheld == c->heldcap) {
        size_t cap = c->heldcap ? c->heldcap * 2 : 16;
        corral_item_t **h = srv_realloc(c->held, cap * sizeof(*h));
        if (h == NULL) {
            corral_item_release(item);
            c->killed = true;
            return false;
        }
        c->held = h;
        c->heldcap = cap;
    }
    c->held[c->nheld++] = item;
    return true;
}

bool
conn_out_value(struct conn *c, corral_item_t *item, const void *p, size_t n)
{
    if (n <= CONN_INLINE_MAX) {
        bool ok = conn_out_copy(c, p, n);
        return conn_out_hold(c, item) && ok;
    }
    if (!iov_reserve(c)) {
        corral_item_release(item);
        c->killed = true;
        return false;
    }
    c->iov[c->niov].iov_base = (void *)(uintptr_t)p;
    c->iov[c->niov].iov_len = n;
    c->own[c->niov] = item;
    c->niov++;
    c->out_bytes += n;
    return true;
}

void
conn_out_mark(const struct conn *c, struct conn_mark *m)
{
    m->niov = c->niov;
    m->nheld = c->nheld;
    m->last_len = c->niov > 0 ? c->iov[c->niov - 1].iov_len : 0;
    m->chunk = c->tail;
    m->chunk_used = c->tail != NULL ? c->tail->used : 0;
    m->bytes = c->out_bytes;
}

void
conn_out_rewind(struct conn *c, const struct conn_mark *m)
{
    struct out_chunk *keep = m->chunk;

    for (size_t i = m->niov; i < c->niov; i++) {
        corral_item_release(c->own[i]);
    }
    for (size_t i = m->nheld; i < c->nheld; i++) {
        corral_item_release(c->held[i]);
    }
    c->nheld = m->nheld;
    c->niov = m->niov;
    if (c->niov > 0) {
        c->iov[c->niov - 1].iov_len = m->last_len;
    }
    chunks_free_after(c, keep);
    if (keep != NULL) {
        keep->used = m->chunk_used;
    }
    c->out_bytes = m->bytes;
}

bool
conn_out_full(const struct conn *c)
{
    return c->out_bytes >= CONN_OUT_MAX;
}

size_t
conn_out_pending(const struct conn *c)
{
    return c->out_bytes;
}

void
conn_swallow(struct conn *c, size_t n)
{
    c->swallow += n;
}

void
conn_quit(struct conn *c)
{
    c->closing = true;
}

void
conn_kill(struct conn *c)
{
    c->killed = true;
}

bool
conn_closing(const struct conn *c)
{
    return c->closing || c->killed;
}

bool
conn_authenticated(const struct conn *c)
{
    return c->authenticated;
}

void
conn_set_authenticated(struct conn *c)
{
    c->authenticated = true;
}

struct worker *
conn_worker(const struct conn *c)
{
    return c->w;
}

struct server *
conn_server(const struct conn *c)
{
    return c->w->srv;
}

int
conn_fd(const struct conn *c)
{
    return c->fd;
}

void
conn_stream_begin(struct conn *c, const struct conn_stream_ops *ops,
                  void *ud)
{
    c->stream = ops;
    c->stream_ud = ud;
    conn_set_state(c, CONN_WATCH);
}

const char *
conn_report_state(const struct conn *c)
{
    unsigned s = atomic_load_explicit(&((struct conn *)c)->state,
                                      memory_order_relaxed);
    return s < sizeof(conn_state_names) / sizeof(conn_state_names[0])
               ? conn_state_names[s]
               : "conn_unknown";
}

long
conn_report_idle(const struct conn *c, double now)
{
    int64_t t = atomic_load_explicit(&((struct conn *)c)->last_cmd,
                                     memory_order_relaxed);
    return now > (double)t ? (long)(now - (double)t) : 0;
}

const char *
conn_report_peer(const struct conn *c)
{
    return c->peer;
}

int
conn_report_fd(const struct conn *c)
{
    return c->fd;
}

/* ---------------------------------------------------------------------- */
/* I/O                                                                    */

/* read(2), or through TLS; a TLS read that must first send bytes says so
 * in tls_read_wants_write. */
static ssize_t
conn_sys_read(struct conn *c, void *buf, size_t n)
{
    enum tls_want want;
    ssize_t r;

    if (c->tls == NULL) {
        return read(c->fd, buf, n);
    }
    r = tls_read(c->tls, buf, n, &want);
    c->tls_read_wants_write = r < 0 && want == TLS_WANT_WRITE;
    return r;
}

/* writev(2), or through TLS; a TLS write that must first receive bytes
 * says so in tls_write_wants_read. */
static ssize_t
conn_sys_writev(struct conn *c, const struct iovec *iov, int cnt)
{
    enum tls_want want;
    ssize_t r;

    if (c->tls == NULL) {
        return writev(c->fd, iov, cnt);
    }
    r = tls_writev(c->tls, iov, cnt, &want);
    c->tls_write_wants_read = r < 0 && want == TLS_WANT_READ;
    return r;
}

/* Read once.  Sets eof or killed on end of stream or error. */
static void
conn_read_once(struct conn *c)
{
    ssize_t n;

    if (c->rbuf == NULL && !rbuf_acquire(c)) {
        log_warn("out of memory reading from %s", c->peer);
        c->killed = true;
        return;
    }
    if (c->rlen == c->rcap) {
        return; /* conn_process() grows the buffer before reading again */
    }
    n = conn_sys_read(c, c->rbuf + c->rlen, c->rcap - c->rlen);
    if (n > 0) {
        c->rlen += (size_t)n;
        srv_counter_add(&c->w->counters.bytes_read, (uint64_t)n);
        return;
    }
    if (n == 0) {
        c->eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        log_verbose("<%d read error: %s", c->fd, strerror(errno));
        c->killed = true;
    }
    if (c->rlen == 0) {
        rbuf_release(c);
    }
}

/*
 * No memory to buffer the rest of a request.  When it is a data block of
 * known size (@need bytes from the start of rbuf), answer as memcached
 * does when it cannot allocate an item, and discard the block as it
 * arrives; otherwise (a long line) close the connection.
 */
static void
conn_refuse_nomem(struct conn *c, size_t need)
{
    log_warn("out of memory buffering a request from %s", c->peer);
    if (need > c->rlen) {
        exec_reply_nomem(c);
        c->swallow += need - c->rlen;
        rbuf_release(c);
    } else {
        c->killed = true;
    }
}

/*
 * Execute every complete request in rbuf.  Returns true when it stopped
 * with requests left because the output is full.
 */
static bool
conn_process(struct conn *c)
{
    size_t pos = 0, need = 0;
    bool stalled = false;
    const struct settings *st = c->w->srv->settings;

    if (c->stream != NULL) {
        rbuf_release(c);
        c->swallow = 0;
        return false;
    }
    if (c->rlen == 0) {
        return false;
    }
    conn_set_state(c, CONN_PARSE_CMD);
    atomic_store_explicit(&c->last_cmd, (int64_t)ev_now(c->w->loop),
                          memory_order_relaxed);
    while (pos < c->rlen && !conn_closing(c) && c->stream == NULL) {
        size_t used;

        if (c->swallow > 0) {
            size_t k = c->rlen - pos < c->swallow ? c->rlen - pos
                                                  : c->swallow;
            pos += k;
            c->swallow -= k;
            continue;
        }
        if (conn_out_full(c)) {
            stalled = true;
            break;
        }
        need = 0;
        used = exec_process(c, c->rbuf + pos, c->rlen - pos, &need);
        pos += used;
        if (used > 0) {
            /* A complete request is progress for the idle timeout; bytes
             * of an incomplete one are not (a client trickling a line
             * must not hold its connection forever). */
            c->last_active = ev_now(c->w->loop);
            /* Draining: the request that was arriving is complete. */
            c->drain_reading = false;
        }
        if (c->swallow > 0) {
            continue;
        }
        if (pos < c->rlen && conn_out_full(c) && !conn_closing(c)) {
            stalled = true;
        }
        break;
    }

    /* Keep only the unconsumed bytes, at the front.  A request that made
     * this a stream ends the requests. */
    if (pos >= c->rlen || c->stream != NULL) {
        rbuf_release(c);
    } else if (pos > 0) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }

    if (c->rlen > 0 && !stalled && !conn_closing(c)) {
        /* An incomplete request: make room for all of it. */
        size_t want = need > c->rcap ? need : 0;
        if (want == 0 && c->rlen == c->rcap) {
            want = c->rcap * 2;
        }
        if (want > 0) {
            if (c->rcap >= st->request_max || need > st->request_max) {
                log_verbose("<%d request larger than %zu bytes", c->fd,
                            st->request_max);
                exec_reply_too_large(c);
                conn_quit(c);
                rbuf_release(c);
            } else if (!rbuf_grow(c, want < st->request_max
                                         ? want : st->request_max)) {
                conn_refuse_nomem(c, need);
            }
        }
        conn_set_state(c, need > 0 ? CONN_NREAD : CONN_WAITING);
    } else if (c->swallow > 0) {
        conn_set_state(c, CONN_SWALLOW);
    }
    return stalled;
}

/* Write what is queued.  Returns 0 when all is written, 1 when the socket
 * is full, -1 on error (the connection is marked killed). */
static int
conn_flush(struct conn *c)
{
    while (c->head < c->niov) {
        size_t cnt = c->niov - c->head;
        ssize_t n;

        if (cnt > CONN_IOV_BATCH) {
            cnt = CONN_IOV_BATCH;
        }
        n = conn_sys_writev(c, c->iov + c->head, (int)cnt);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 1;
            }
            log_verbose("<%d write error: %s", c->fd, strerror(errno));
            c->killed = true;
            return -1;
        }
        srv_counter_add(&c->w->counters.bytes_written, (uint64_t)n);
        c->out_bytes -= (size_t)n;
        if (n > 0) {
            c->last_active = ev_now(c->w->loop); /* the client reads */
        }
        while (c->head < c->niov &&
               (n > 0 || c->iov[c->head].iov_len == 0)) {
            struct iovec *v = &c->iov[c->head];
            if ((size_t)n >= v->iov_len) {
                n -= (ssize_t)v->iov_len;
                corral_item_release(c->own[c->head]);
                c->own[c->head] = NULL;
                c->head++;
            } else {
                v->iov_base = (char *)v->iov_base + n;
                v->iov_len -= (size_t)n;
                n = 0;
            }
        }
    }
    out_reset(c);
    return 0;
}

/*
 * A stream's output: write, and each time everything queued is written,
 * let the producer queue more, until the socket is full or nothing is
 * left.  Bounded, so that one busy stream yields to the loop; what is
 * still queued then goes out on EV_WRITE (conn_after_io arms it).
 */
static void
conn_stream_flush(struct conn *c)
{
    for (int round = 0; round < 64; round++) {
        size_t before;

        if (conn_flush(c) != 0 || conn_closing(c) ||
            c->stream->writable == NULL) {
            return;
        }
        before = c->out_bytes;
        c->stream->writable(c->stream_ud);
        if (c->out_bytes == before) {
            return;
        }
    }
}

/* Execute and write until nothing more can be done now. */
static void
conn_run(struct conn *c)
{
    for (;;) {
        bool stalled = conn_process(c);
        int r;

        if (c->killed) {
            return;
        }
        if (c->stream != NULL) {
            conn_stream_flush(c);
            return;
        }
        r = conn_flush(c);
        if (r != 0 || !stalled || conn_closing(c)) {
            return;
        }
    }
}

/*
 * Settle the watchers after an event, and close the connection when its
 * work is done.  Returns true if the connection was freed.
 */
static bool
conn_after_io(struct conn *c)
{
    struct ev_loop *loop = c->w->loop;

    if (c->killed) {
        conn_close(c);
        return true;
    }
    if (c->head < c->niov) {
        conn_set_state(c, CONN_MWRITE);
        ev_io_start(loop, &c->wio);
        if (conn_closing(c) || c->eof || conn_out_full(c)) {
            c->paused = !conn_closing(c) && !c->eof;
            ev_io_stop(loop, &c->rio);
        }
        if (c->draining && !c->drain_reading) {
            ev_io_stop(loop, &c->rio);
        }
    } else {
        ev_io_stop(loop, &c->wio);
        if (conn_closing(c) || c->eof) {
            conn_close(c);
            return true;
        }
        if (c->draining && (!c->drain_reading ||
                            (c->rlen == 0 && c->swallow == 0))) {
            return conn_linger(c);
        }
        if (c->stream != NULL) {
            conn_set_state(c, CONN_WATCH);
        } else if (c->rlen == 0 && c->swallow == 0) {
            conn_set_state(c, CONN_NEW_CMD);
        }
        if (c->paused || !ev_is_active(&c->rio)) {
            c->paused = false;
            ev_io_start(loop, &c->rio);
        }
    }
    if (c->tls != NULL) {
        conn_tls_watch(c);
    }
    return false;
}

/*
 * TLS adjustments to the watchers conn_after_io() set: a TLS read or
 * write blocked on the other direction needs that direction watched
 * (and the write watcher must not spin while a write waits for input);
 * decrypted bytes held inside the TLS layer do not make the socket
 * readable, so a read is fed to the loop while they wait.
 */
static void
conn_tls_watch(struct conn *c)
{
    struct ev_loop *loop = c->w->loop;

    if (c->tls_write_wants_read) {
        ev_io_stop(loop, &c->wio);
        ev_io_start(loop, &c->rio);
    }
    if (c->tls_read_wants_write) {
        ev_io_start(loop, &c->wio);
    }
    if (ev_is_active(&c->rio) && !c->paused && !c->eof &&
        !conn_closing(c) && tls_pending(c->tls)) {
        ev_feed_event(loop, &c->rio, EV_READ);
    }
}

/*
 * The end of a drain: every reply is written.  Closing a socket whose
 * input has not all been read makes the kernel reset the connection and
 * throw away replies not yet delivered, so a client still sending gets
 * a lingering close instead: close_notify (TLS) and FIN are sent, and
 * input is read and discarded until the client closes its side (or the
 * drain deadline passes).  A client is closed at once only when nothing
 * is waiting to be read and it has acknowledged every byte sent to it:
 * then even a request still in flight, reset by the closed socket, can
 * no longer cost it a reply (an idle pooled connection does not hold the
 * shutdown).  Returns true if the connection was freed.
 */
static bool
conn_linger(struct conn *c)
{
    struct ev_loop *loop = c->w->loop;
    int unread = 0, unacked = 0;

    if (c->lingering) {
        return false;
    }
    if (c->rlen == 0 &&
        (ioctl(c->fd, FIONREAD, &unread) != 0 || unread == 0) &&
        (ioctl(c->fd, SIOCOUTQ, &unacked) != 0 || unacked == 0)) {
        conn_close(c);
        return true;
    }
    log_verbose("<%d draining: discarding input until the client closes",
                c->fd);
    c->lingering = true;
    conn_set_state(c, CONN_CLOSING);
    tls_conn_destroy(c->tls);
    c->tls = NULL;
    c->tls_read_wants_write = false;
    c->tls_write_wants_read = false;
    shutdown(c->fd, SHUT_WR);
    rbuf_release(c);
    c->swallow = 0;
    ev_io_stop(loop, &c->wio);
    ev_io_start(loop, &c->rio);
    return false;
}

/* Lingering: discard what arrives; close at the end of the stream. */
static void
conn_linger_read(struct conn *c)
{
    char sink[4096];

    for (int i = 0; i < 16; i++) {
        ssize_t n = read(c->fd, sink, sizeof(sink));
        if (n > 0) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
                      errno == EINTR)) {
            return;
        }
        conn_close(c); /* the end of the stream, or an error */
        return;
    }
}

static void
conn_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;

    (void)loop;
    (void)revents;
    if (c->lingering) {
        conn_linger_read(c);
        return;
    }
    if (c->tls_write_wants_read) {
        /* A TLS write waited for this readiness: repeat it first. */
        c->tls_write_wants_read = false;
        conn_flush(c);
    }
    if (!c->killed && !c->paused && !c->tls_write_wants_read) {
        conn_read_once(c);
        if (!c->killed) {
            conn_run(c);
        }
    }
    conn_after_io(c);
}

static void
conn_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;

    (void)loop;
    (void)revents;
    if (c->tls_read_wants_write) {
        /* A TLS read waited for this readiness: repeat it first. */
        c->tls_read_wants_write = false;
        conn_read_once(c);
        if (!c->killed) {
            conn_run(c);
        }
    }
    if (c->killed || c->tls_write_wants_read) {
        /* closing, or a TLS write waits for input (conn_on_read) */
    } else if (c->stream != NULL) {
        conn_stream_flush(c);
    } else if (conn_flush(c) == 0 && !conn_closing(c)) {
        /* Requests held back by back-pressure may now run. */
        conn_run(c);
    }
    conn_after_io(c);
}

bool
conn_send(struct conn *c)
{
    if (!c->killed) {
        if (c->stream != NULL) {
            conn_stream_flush(c);
        } else {
            conn_flush(c);
        }
    }
    return !conn_after_io(c);
}

/*
 * Draining reads what has arrived, then only until the request that was
 * arriving then is complete: a client that keeps pipelining gets the
 * replies to what it had sent, and the shutdown does not wait for it to
 * stop.  Requests after that one are dropped unanswered.
 */
void
conn_drain(struct conn *c)
{
    c->draining = true;
    if (c->stream != NULL && c->stream->drain != NULL && !conn_closing(c)) {
        c->stream->drain(c->stream_ud);
    }
    if (!conn_closing(c) && !c->eof && !c->paused) {
        conn_read_once(c);
        if (!c->killed) {
            conn_run(c);
        }
    }
    c->drain_reading = c->rlen > 0;
    conn_after_io(c);
}

bool
conn_streaming(const struct conn *c)
{
    return c->stream != NULL;
}

bool
conn_idle_check(struct conn *c, double now, double timeout)
{
    if (c->closing && now - c->last_active >= CONN_CLOSING_GRACE) {
        /* its last lines wait behind output the client does not read
         * (a watcher dropped for lagging, say): they will not get out */
        log_verbose("<%d not reading its last replies: closed", c->fd);
        conn_close(c);
        return true;
    }
    if (timeout <= 0 || c->stream != NULL ||
        now - c->last_active < timeout) {
        return false;
    }
    log_verbose("<%d idle timeout", c->fd);
    srv_counter_add(&c->w->counters.idle_kicks, 1);
    conn_close(c);
    return true;
}

void
conn_close(struct conn *c)
{
    struct worker *w = c->w;

    log_verbose("<%d connection closed.", c->fd);
    if (c->stream != NULL && c->stream->closed != NULL) {
        c->stream->closed(c->stream_ud);
    }
    conn_set_state(c, CONN_CLOSING);
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    worker_conn_remove(w, &c->link);
    tls_conn_destroy(c->tls);
    c->tls = NULL;
    close(c->fd);
    out_reset(c);
    free(c->held);
    free(c->iov);
    free(c->own);
    rbuf_release(c);
    atomic_fetch_sub(&w->srv->curr_conns, 1);
    free(c);
}
