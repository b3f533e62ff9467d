/*
 * tls.c - TLS connections over OpenSSL, see tls.h for the contract.
 *
 * The context.  One SSL_CTX for the server, built from -Z's options
 * (memcached's names): certificate chain and key, optional client
 * certificate verification against ssl_ca_cert, cipher list, oldest
 * protocol version, and the session cache.  Renegotiation and
 * compression are off; buffers are released while a connection is idle
 * (SSL_MODE_RELEASE_BUFFERS), so an idle TLS connection costs little
 * more than a plain one.
 *
 * A connection.  The socket is handed to OpenSSL directly (SSL_set_fd);
 * the handshake runs inside the first reads.  The layers:
 *
 *   conn rbuf ◄── SSL_read ◄── socket          (tls_read)
 *   conn iovecs ──copy──► wbuf ──SSL_write──► socket   (tls_writev)
 *
 * Writing stages up to ssl_wbuf_size bytes of the iovecs in wbuf and
 * sends them as one SSL_write, which either takes them all (partial
 * writes are not enabled) or asks to be repeated.  `staged` remembers
 * how many bytes wait in wbuf: while it is nonzero they are the leading
 * bytes of the caller's iovecs (nothing was acknowledged), and the next
 * call repeats SSL_write with them rather than copying again.
 *
 * Errors.  OpenSSL's error queue is per thread; it is cleared before
 * every call whose result is examined with SSL_get_error().  A failure
 * before the handshake is complete counts as a handshake error.
 */
#include "tls.h"

#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "settings.h"

#ifdef CORRAL_HAVE_OPENSSL

#include <openssl/err.h>
#include <openssl/ssl.h>

struct tls_ctx {
    SSL_CTX *ctx;
    size_t wbuf_size;
    atomic_ulong handshake_errors;
};

struct tls_conn {
    struct tls_ctx *t;
    SSL *ssl;
    char *wbuf;          /* staging buffer, wbuf_size bytes, or NULL */
    size_t staged;       /* bytes in wbuf not yet acknowledged */
    bool broken;         /* a fatal error: no close_notify */
};

/* Log OpenSSL's queued errors, one line each. */
static int
tls_log_one(const char *str, size_t len, void *u)
{
    int level = *(int *)u;

    while (len > 0 && (str[len - 1] == '\n' || str[len - 1] == '\r')) {
        len--;
    }
    log_msg((enum log_level)level, "TLS: %.*s", (int)len, str);
    return 1;
}

static void
tls_log_errors(enum log_level level)
{
    int l = (int)level;

    if (level <= LOG_WARN || log_enabled(level)) {
        ERR_print_errors_cb(tls_log_one, &l);
    } else {
        ERR_clear_error();
    }
}

static const int tls_versions[] = {TLS1_VERSION, TLS1_1_VERSION,
                                   TLS1_2_VERSION, TLS1_3_VERSION};

static int
tls_verify_flags(int mode)
{
    switch (mode) {
    case SETTINGS_SSL_VERIFY_REQUEST:
        return SSL_VERIFY_PEER;
    case SETTINGS_SSL_VERIFY_REQUIRE:
        return SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    case SETTINGS_SSL_VERIFY_ONCE:
        return SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
    case SETTINGS_SSL_VERIFY_NONE:
    default:
        return SSL_VERIFY_NONE;
    }
}

/* Everything that can fail in building the context; logs the reason. */
static int
tls_configure(SSL_CTX *ctx, const struct settings_tls *o)
{
    static const unsigned char sid_ctx[] = "corrald";
    const char *key = o->key[0] != '\0' ? o->key : o->chain_cert;
    int key_type = o->key_format == 2 ? SSL_FILETYPE_ASN1
                                      : SSL_FILETYPE_PEM;

    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!SSL_CTX_set_min_proto_version(ctx,
                                       tls_versions[o->min_version])) {
        log_error("TLS: cannot set the oldest protocol version");
        return -1;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, o->chain_cert) != 1) {
        log_error("TLS: cannot load the certificate chain %s",
                  o->chain_cert);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, key_type) != 1) {
        log_error("TLS: cannot load the private key %s", key);
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        log_error("TLS: the private key %s does not match the "
                  "certificate", key);
        return -1;
    }
    if (o->ciphers[0] != '\0' &&
        SSL_CTX_set_cipher_list(ctx, o->ciphers) != 1) {
        log_error("TLS: no usable cipher in \"%s\"", o->ciphers);
        return -1;
    }
    if (o->ca_cert[0] != '\0') {
        STACK_OF(X509_NAME) *names;

        if (SSL_CTX_load_verify_locations(ctx, o->ca_cert, NULL) != 1) {
            log_error("TLS: cannot load the CA certificates %s",
                      o->ca_cert);
            return -1;
        }
        names = SSL_load_client_CA_file(o->ca_cert);
        if (names == NULL) {
            log_error("TLS: no CA names in %s", o->ca_cert);
            return -1;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL_CTX_set_verify(ctx, tls_verify_flags(o->verify_mode), NULL);
    /* Needed for resumption with client certificates; harmless else. */
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    if (o->session_cache) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    } else {
        /* No resumption at all: no cache and no tickets (which would
         * cost a write after every handshake). */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    return 0;
}

struct tls_ctx *
tls_ctx_create(const struct settings *st)
{
    struct tls_ctx *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        log_error("TLS: out of memory");
        return NULL;
    }
    t->wbuf_size = (size_t)st->tls.wbuf_kb * 1024;
    atomic_init(&t->handshake_errors, 0);
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (t->ctx == NULL || tls_configure(t->ctx, &st->tls) != 0) {
        tls_log_errors(LOG_ERROR);
        tls_ctx_destroy(t);
        return NULL;
    }
    return t;
}

void
tls_ctx_destroy(struct tls_ctx *t)
{
    if (t == NULL) {
        return;
    }
    SSL_CTX_free(t->ctx);
    free(t);
}

const char *
tls_library(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

unsigned long
tls_handshake_errors(const struct tls_ctx *t)
{
    return t != NULL ? atomic_load_explicit(
                           &((struct tls_ctx *)t)->handshake_errors,
                           memory_order_relaxed)
                     : 0;
}

struct tls_conn *
tls_conn_create(struct tls_ctx *t, int fd)
{
    struct tls_conn *tc = srv_calloc(1, sizeof(*tc));

    if (tc == NULL) {
        return NULL;
    }
    tc->t = t;
    ERR_clear_error();
    tc->ssl = SSL_new(t->ctx);
    if (tc->ssl == NULL || SSL_set_fd(tc->ssl, fd) != 1) {
        tls_log_errors(LOG_WARN);
        SSL_free(tc->ssl);
        free(tc);
        return NULL;
    }
    SSL_set_accept_state(tc->ssl);
    return tc;
}

void
tls_conn_destroy(struct tls_conn *tc)
{
    if (tc == NULL) {
        return;
    }
    if (!tc->broken && SSL_is_init_finished(tc->ssl)) {
        /* One attempt at close_notify; the peer's is not awaited. */
        ERR_clear_error();
        SSL_shutdown(tc->ssl);
        ERR_clear_error();
    }
    SSL_free(tc->ssl);
    free(tc->wbuf);
    free(tc);
}

/*
 * Turn an SSL_read/SSL_write result @r into the read(2)-like return
 * value and errno (see tls.h).
 */
static ssize_t
tls_result(struct tls_conn *tc, int r, enum tls_want *want)
{
    int err = SSL_get_error(tc->ssl, r);
    int saved = errno;

    *want = TLS_WANT_NONE;
    switch (err) {
    case SSL_ERROR_WANT_READ:
        *want = TLS_WANT_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want = TLS_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify */
    case SSL_ERROR_SYSCALL:
        tc->broken = true;
        if (ERR_peek_error() == 0 && (r == 0 || saved == 0)) {
            /* The TCP stream ended without close_notify (OpenSSL 1.1)
             * or the peer vanished: an end of stream either way. */
            ERR_clear_error();
            return 0;
        }
        tls_log_errors(LOG_VERBOSE);
        errno = saved != 0 ? saved : EPIPE;
        return -1;
    case SSL_ERROR_SSL:
    default:
        tc->broken = true;
        if (!SSL_is_init_finished(tc->ssl)) {
            atomic_fetch_add_explicit(&tc->t->handshake_errors, 1,
                                      memory_order_relaxed);
        }
        /* OpenSSL 3 reports a TCP end without close_notify here. */
        if (ERR_GET_REASON(ERR_peek_error()) ==
            SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return 0;
        }
        tls_log_errors(LOG_VERBOSE);
        errno = EPROTO;
        return -1;
    }
}

ssize_t
tls_read(struct tls_conn *tc, void *buf, size_t n, enum tls_want *want)
{
    int r;

    if (n > INT32_MAX) {
        n = INT32_MAX;
    }
    ERR_clear_error();
    errno = 0;
    r = SSL_read(tc->ssl, buf, (int)n);
    if (r > 0) {
        *want = TLS_WANT_NONE;
        return r;
    }
    return tls_result(tc, r, want);
}

ssize_t
tls_writev(struct tls_conn *tc, const struct iovec *iov, int cnt,
           enum tls_want *want)
{
    size_t cap = tc->t->wbuf_size;
    ssize_t sent;
    int r;

    if (tc->wbuf == NULL) {
        tc->wbuf = srv_malloc(cap);
        if (tc->wbuf == NULL) {
            errno = ENOMEM;
            return -1;
        }
    }
    if (tc->staged == 0) {
        for (int i = 0; i < cnt && tc->staged < cap; i++) {
            size_t k = iov[i].iov_len;
            if (k > cap - tc->staged) {
                k = cap - tc->staged;
            }
            memcpy(tc->wbuf + tc->staged, iov[i].iov_base, k);
            tc->staged += k;
        }
        if (tc->staged == 0) {
            *want = TLS_WANT_NONE;
            return 0;
        }
    }
    ERR_clear_error();
    errno = 0;
    r = SSL_write(tc->ssl, tc->wbuf, (int)tc->staged);
    if (r > 0) {
        /* Without partial writes, success means everything staged. */
        sent = (ssize_t)tc->staged;
        tc->staged = 0;
        *want = TLS_WANT_NONE;
        return sent;
    }
    sent = tls_result(tc, r, want);
    if (sent == 0) {
        /* The peer closed: nothing more can be written. */
        errno = EPIPE;
        sent = -1;
    }
    return sent;
}

bool
tls_pending(const struct tls_conn *tc)
{
    return SSL_pending(tc->ssl) > 0;
}

void
tls_idle(struct tls_conn *tc)
{
    if (tc->staged == 0 && tc->wbuf != NULL) {
        free(tc->wbuf);
        tc->wbuf = NULL;
    }
}

#else /* !CORRAL_HAVE_OPENSSL */

struct tls_ctx *
tls_ctx_create(const struct settings *st)
{
    (void)st;
    log_error("TLS: this corrald was built without OpenSSL");
    return NULL;
}

void
tls_ctx_destroy(struct tls_ctx *t)
{
    (void)t;
}

const char *
tls_library(void)
{
    return "none";
}

unsigned long
tls_handshake_errors(const struct tls_ctx *t)
{
    (void)t;
    return 0;
}

struct tls_conn *
tls_conn_create(struct tls_ctx *t, int fd)
{
    (void)t;
    (void)fd;
    return NULL;
}

void
tls_conn_destroy(struct tls_conn *tc)
{
    (void)tc;
}

ssize_t
tls_read(struct tls_conn *tc, void *buf, size_t n, enum tls_want *want)
{
    (void)tc;
    (void)buf;
    (void)n;
    *want = TLS_WANT_NONE;
    errno = ENOTSUP;
    return -1;
}

ssize_t
tls_writev(struct tls_conn *tc, const struct iovec *iov, int cnt,
           enum tls_want *want)
{
    (void)tc;
    (void)iov;
    (void)cnt;
    *want = TLS_WANT_NONE;
    errno = ENOTSUP;
    return -1;
}

bool
tls_pending(const struct tls_conn *tc)
{
    (void)tc;
    return false;
}

void
tls_idle(struct tls_conn *tc)
{
    (void)tc;
}

#endif /* CORRAL_HAVE_OPENSSL */
