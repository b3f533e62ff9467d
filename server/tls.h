/*
 * tls.h - TLS for corrald's connections (-Z), over OpenSSL, behind an
 * interface shaped like read(2) and writev(2) so that conn.c keeps one
 * code path for both kinds of connection.
 *
 * Non-blocking contract.  tls_read() and tls_writev() never block.  When
 * one cannot proceed it returns -1 with errno EAGAIN and sets *want to
 * the socket readiness it waits for: TLS_WANT_READ or TLS_WANT_WRITE.
 * The two can differ from the call's own direction (a read may have to
 * send handshake bytes first), and the caller must then watch for that
 * readiness and repeat the same call.  Decrypted bytes may wait inside
 * the TLS layer with the socket showing nothing to read: the caller
 * reads again while tls_pending() is true.
 *
 * Writes go through a per-connection staging buffer (ssl_wbuf_size): the
 * iovecs are copied into it and sent as one record.  After EAGAIN the
 * next tls_writev() must be given the same leading bytes (the bytes not
 * yet acknowledged as written), which conn.c's output queue guarantees
 * since it only advances by what was acknowledged.
 *
 * Threads: the context is created before the workers start and is then
 * only read (OpenSSL's SSL_CTX is safe to share); a tls_conn belongs to
 * its connection's worker thread.
 *
 * Without OpenSSL (configure found no libssl-dev) the functions below
 * are stubs: tls_ctx_create() fails, and nothing else is ever called.
 */
#ifndef CORRALD_TLS_H
#define CORRALD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct settings;
struct tls_ctx;
struct tls_conn;

enum tls_want {
    TLS_WANT_NONE = 0,
    TLS_WANT_READ = 1,
    TLS_WANT_WRITE = 2
};

/*
 * tls_ctx_create - load the certificate, key and options of @st->tls.
 * Returns NULL with the reasons logged.
 */
struct tls_ctx *tls_ctx_create(const struct settings *st);

/* tls_ctx_destroy - free.  NULL is a no-op. */
void tls_ctx_destroy(struct tls_ctx *t);

/* tls_library - the TLS library's version text, for logs and stats. */
const char *tls_library(void);

/* tls_handshake_errors - connections dropped in their handshake so far
 * (all threads; an approximate count read without a lock). */
unsigned long tls_handshake_errors(const struct tls_ctx *t);

/*
 * tls_conn_create - TLS state for an accepted socket @fd, as the server
 * side; the handshake happens in the first tls_read().  Returns NULL on
 * allocation failure.
 */
struct tls_conn *tls_conn_create(struct tls_ctx *t, int fd);

/*
 * tls_conn_destroy - send close_notify if the session is intact (without
 * waiting for the peer's), then free.  Does not close the fd.  NULL is a
 * no-op.
 */
void tls_conn_destroy(struct tls_conn *tc);

/*
 * tls_read - up to @n decrypted bytes into @buf.  Returns the count, 0
 * at the end of the stream (close_notify or TCP end), or -1 with errno:
 * EAGAIN (see *want), or another code for a broken connection (EPROTO
 * for a TLS failure, including a failed handshake).
 */
ssize_t tls_read(struct tls_conn *tc, void *buf, size_t n,
                 enum tls_want *want);

/*
 * tls_writev - encrypt and send bytes from @iov (@cnt entries).  Returns
 * the number of bytes from the front of @iov now sent, or -1 with errno
 * EAGAIN (see *want) or another code for a broken connection.
 */
ssize_t tls_writev(struct tls_conn *tc, const struct iovec *iov, int cnt,
                   enum tls_want *want);

/* tls_pending - decrypted bytes are waiting to be read. */
bool tls_pending(const struct tls_conn *tc);

/* tls_idle - the output is drained: give back the staging buffer, so an
 * idle connection holds none. */
void tls_idle(struct tls_conn *tc);

#endif /* CORRALD_TLS_H */
