/*
 * conn.h - one client connection: its input buffer, its output queue and
 * its state machine.  A connection belongs to one worker thread for its
 * whole life; every function here must be called on that thread, except
 * the conn_report_*() readers, which "stats conns" calls from any worker
 * under the owning worker's lock.
 *
 * Output.  exec.c composes replies through the conn_out_*() calls: bytes
 * are copied into the connection's output arena, and large item values
 * are queued by reference (zero copy) with the item kept pinned until
 * its bytes have been written.  Everything queued is sent with writev()
 * after the batch of requests that produced it.
 */
#ifndef CORRALD_CONN_H
#define CORRALD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <corral.h>

struct conn;
struct worker;
struct server;

/*
 * conn_create - take an accepted non-blocking socket into worker @w and
 * start reading it.  @peer is copied.  On allocation failure the fd is
 * closed and NULL returned.
 */
struct conn *conn_create(struct worker *w, int fd, const char *peer);

/* conn_close - close now, dropping unsent output; frees @c. */
void conn_close(struct conn *c);

/*
 * conn_drain - begin a graceful close (SIGTERM): the requests already
 * received are executed, their replies written, then the connection
 * closes.  A request only partly received may still complete.
 */
void conn_drain(struct conn *c);

/* Seconds a closing connection may wait for its client to read its last
 * replies before it is closed without them. */
#define CONN_CLOSING_GRACE 10.0

/*
 * conn_idle_check - close @c if it has been idle for @timeout seconds at
 * time @now (the idle timeout; 0: none), or if it is closing and its
 * client has read nothing for CONN_CLOSING_GRACE seconds.  Returns true
 * if it was closed.
 */
bool conn_idle_check(struct conn *c, double now, double timeout);

/* Accessors. */
struct worker *conn_worker(const struct conn *c);
struct server *conn_server(const struct conn *c);
int conn_fd(const struct conn *c);

/* ---- output, for exec.c ---- */

/*
 * conn_out_reserve - room for at least @n bytes in the output arena.
 * Write into it, then conn_out_commit() what was written (at most @n).
 * Returns NULL when memory is exhausted; the connection is then closed
 * (a reply cut short would desynchronise the client).
 */
char *conn_out_reserve(struct conn *c, size_t n);
void conn_out_commit(struct conn *c, size_t n);

/* conn_out_copy - queue a copy of @n bytes.  Returns false on ENOMEM. */
bool conn_out_copy(struct conn *c, const void *p, size_t n);

/*
 * conn_out_value - queue @n bytes at @p, which lie inside @item's value,
 * and take over the caller's pin on @item: it is released once written
 * (small values are copied and released at once).  Returns false on
 * ENOMEM, with the item released.
 */
bool conn_out_value(struct conn *c, corral_item_t *item, const void *p,
                    size_t n);

/*
 * conn_out_hold - keep @item pinned until the output queued so far has
 * been written, then release it (the caller's pin is taken over).  For
 * replies that name an item without sending its value.  Returns false
 * on ENOMEM, with the item released.
 */
bool conn_out_hold(struct conn *c, corral_item_t *item);

/*
 * A position in the output queue, to drop what was queued after it
 * (a multi-key reply abandoned half way).  Valid until the batch ends.
 */
struct conn_mark {
    size_t niov;
    size_t nheld;
    size_t last_len;
    void *chunk;
    size_t chunk_used;
    size_t bytes;
};
void conn_out_mark(const struct conn *c, struct conn_mark *m);
void conn_out_rewind(struct conn *c, const struct conn_mark *m);

/* conn_out_full - true once the unsent output passes the bound: stop
 * executing requests for this connection until it drains. */
bool conn_out_full(const struct conn *c);

/* conn_out_pending - bytes queued and not yet written. */
size_t conn_out_pending(const struct conn *c);

/* ---- control, for exec.c ---- */

/* conn_swallow - discard the next @n input bytes (a refused data block). */
void conn_swallow(struct conn *c, size_t n);

/* conn_quit - close once the output queued so far is written. */
void conn_quit(struct conn *c);

/* conn_kill - close without writing anything more ("shutdown"). */
void conn_kill(struct conn *c);

/* conn_closing - true after conn_quit() or conn_kill(). */
bool conn_closing(const struct conn *c);

/* conn_out_pending - bytes queued and not yet written. */
size_t conn_out_pending(const struct conn *c);

/* ---- streams ("watch"), owner thread only ---- */

/*
 * A stream connection no longer executes requests: what it sends is
 * read only to notice the peer closing, and it receives whatever its
 * producer queues (conn_out_copy, then conn_send).  It is exempt from
 * the idle timeout, and closes on SIGTERM once its output is written.
 */
struct conn_stream_ops {
    /* Everything queued so far has been written: queue more now if there
     * is any (conn_out_copy; never send or close from here). */
    void (*writable)(void *ud);
    /* SIGTERM: queue a last line if wanted (optional; the same rules). */
    void (*drain)(void *ud);
    /* The connection is closing: forget it (it is freed on return). */
    void (*closed)(void *ud);
};

/*
 * conn_stream_begin - make @c a stream from the end of the current
 * request on (input after it is discarded).  @ops is borrowed for the
 * connection's life; @ud is passed to its callbacks.
 */
void conn_stream_begin(struct conn *c, const struct conn_stream_ops *ops,
                       void *ud);

/*
 * conn_send - write what is queued now (on a stream, asking its producer
 * for more as it drains) and close @c if it is done.  For producers that
 * queued with conn_out_copy() from their own callbacks, never from
 * inside conn.c's.  Returns false when @c was closed (and freed).
 */
bool conn_send(struct conn *c);

/* conn_streaming - true once conn_stream_begin() was called. */
bool conn_streaming(const struct conn *c);
/* conn_authenticated - false until an -Y server accepts credentials;
 * true from the start without -Y. */
bool conn_authenticated(const struct conn *c);
void conn_set_authenticated(struct conn *c);

/* ---- readable from other threads under the worker's lock ---- */

/* memcached's state name ("conn_new_cmd", ...). */
const char *conn_report_state(const struct conn *c);
/* Seconds since the last command, at Unix time @now. */
long conn_report_idle(const struct conn *c, double now);
const char *conn_report_peer(const struct conn *c);
int conn_report_fd(const struct conn *c);

#endif /* CORRALD_CONN_H */
