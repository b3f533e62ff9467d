/*
 * fleet.c - corral_near_fetch_fleet(): one backend call per key for every
 * process that shares a corrald, built on memcached's meta lease flags
 * (the contract and the picture are in corral_near.h).
 *
 * Layers, each caller of the next:
 *
 *   corral_near_fetch_fleet()     local single flight (corral_fetch)
 *     └─ fleet_loader()           runs once per process per load:
 *          the lease loop         mg N ─► W: backend, ms C │ Z: poll
 *            └─ fleet_mg/ms/md    one request, one reply, on a pooled
 *                 └─ conn_*       connection with a deadline
 *
 * A connection is owned by one thread between fleet_conn_get() and
 * fleet_conn_put(); any I/O error or unexpected reply closes it instead
 * of returning it, so a pooled connection never holds a half-read reply.
 *
 * Threads: any.  pool_lock (near_internal.h) guards the pool only; the
 * counters are relaxed atomics.
 */
#include "corral_near.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#include "near_internal.h"

#define FLEET_LINE_MAX 512       /* longest reply line accepted */
#define FLEET_REQ_MAX 1024       /* longest request line sent */
#define FLEET_KEY_MAX 250        /* memcached's key limit */

struct fleet_conn {
    int fd;
    char buf[4096];              /* read buffer */
    size_t len;
};

struct corral_near_value {
    char *data;
    size_t n;
    uint32_t flags;
};

/* A reply to mg: the return flags Corral's server sends. */
struct fleet_reply {
    bool hit;                    /* VA (else EN) */
    bool won, lost, stale;       /* W Z X */
    uint32_t flags;              /* f */
    int64_t ttl;                 /* t: -1 never expires */
    uint64_t cas;                /* c */
    char *value;                 /* malloc'd, NUL-terminated */
    size_t nvalue;
};

/* One fleet load: what fleet_loader() needs. */
struct fleet_load {
    corral_near_t *near;
    corral_near_backend_fn backend;
    void *ud;
    corral_near_fleet_opts_t fo;
    int64_t local_ttl;           /* the fetch's ttl */
    char key[FLEET_KEY_MAX + 1]; /* as sent: raw or base64 */
    size_t nkey;
    bool b64;
};

static void
count(atomic_uint_fast64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------- */
/* Connections                                                            */

static void
fleet_conn_close(struct fleet_conn *c)
{
    if (c != NULL) {
        close(c->fd);
        free(c);
    }
}

/* Whether a pooled connection is still open.  An idle connection has
 * nothing to read: readable means the server closed it (it restarted, or
 * timed the connection out) or reset it, and a request sent on it would
 * fail.  Found before sending, so that nothing is retried: a request
 * whose fate is unknown (a timeout) may have won a lease. */
static bool
fleet_conn_alive(const struct fleet_conn *c)
{
    struct pollfd p = {c->fd, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
}

static struct fleet_conn *
fleet_conn_get(corral_near_t *n)
{
    struct fleet_conn *c;

    for (;;) {
        c = NULL;
        pthread_mutex_lock(&n->pool_lock);
        if (n->npool > 0) {
            c = n->pool[--n->npool];
        }
        pthread_mutex_unlock(&n->pool_lock);
        if (c == NULL) {
            break;
        }
        if (fleet_conn_alive(c)) {
            return c;
        }
        fleet_conn_close(c);
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->fd = near_connect(n);
    if (c->fd < 0) {
        free(c);
        return NULL;
    }
    return c;
}

/* Back to the pool (a clean connection: no reply pending). */
static void
fleet_conn_put(corral_near_t *n, struct fleet_conn *c)
{
    pthread_mutex_lock(&n->pool_lock);
    if (c->len == 0 && n->npool < CORRAL_NEAR_FLEET_POOL) {
        n->pool[n->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&n->pool_lock);
    fleet_conn_close(c);
}

void
fleet_pool_drain(struct corral_near *n)
{
    pthread_mutex_lock(&n->pool_lock);
    while (n->npool > 0) {
        fleet_conn_close(n->pool[--n->npool]);
    }
    pthread_mutex_unlock(&n->pool_lock);
}

/* Wait for @events on the connection until @deadline (now_ms). */
static bool
conn_wait(struct fleet_conn *c, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {c->fd, events, 0};
        int64_t left = deadline - now_ms();
        int r;

        if (left <= 0) {
            return false;
        }
        r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0) {
            return true;
        }
        if (r < 0 && errno != EINTR) {
            return false;
        }
    }
}

static bool
conn_send(struct fleet_conn *c, const char *p, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);

        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!conn_wait(c, POLLOUT, deadline)) {
                return false;
            }
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

static bool
conn_fill(struct fleet_conn *c, int64_t deadline)
{
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);

        if (r > 0) {
            c->len += (size_t)r;
            return true;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            return false;
        }
        if (!conn_wait(c, POLLIN, deadline)) {
            return false;
        }
    }
}

/* The next reply line, without its "\r\n", NUL-terminated into @line. */
static bool
conn_line(struct fleet_conn *c, char *line, size_t cap, int64_t deadline)
{
    for (;;) {
        char *end = c->len > 0 ? memchr(c->buf, '\n', c->len) : NULL;

        if (end != NULL) {
            size_t n = (size_t)(end - c->buf) + 1;
            size_t m = n >= 2 && end[-1] == '\r' ? n - 2 : n - 1;

            if (m >= cap) {
                return false;
            }
            memcpy(line, c->buf, m);
            line[m] = '\0';
            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            return true;
        }
        if (c->len == sizeof(c->buf) || !conn_fill(c, deadline)) {
            return false;
        }
    }
}

/* Exactly @n bytes into @dst. */
static bool
conn_read(struct fleet_conn *c, char *dst, size_t n, int64_t deadline)
{
    while (n > 0) {
        size_t k;

        if (c->len == 0 && !conn_fill(c, deadline)) {
            return false;
        }
        k = c->len < n ? c->len : n;
        memcpy(dst, c->buf, k);
        memmove(c->buf, c->buf + k, c->len - k);
        c->len -= k;
        dst += k;
        n -= k;
    }
    return true;
}

/* ---------------------------------------------------------------------- */
/* Requests                                                               */

/* Parse "VA <n> <flags>*" or "EN"; reads the data block.  False on
 * anything else (the connection is then unusable). */
static bool
fleet_read_mg(struct fleet_conn *c, struct fleet_reply *r, int64_t deadline)
{
    char line[FLEET_LINE_MAX], *save = NULL, *w;
    unsigned long long vlen;
    char *end;

    memset(r, 0, sizeof(*r));
    r->ttl = -1;
    if (!conn_line(c, line, sizeof(line), deadline)) {
        return false;
    }
    if (strcmp(line, "EN") == 0) {
        return true;
    }
    if (strncmp(line, "VA ", 3) != 0) {
        return false;
    }
    vlen = strtoull(line + 3, &end, 10);
    if (end == line + 3 || vlen > (1ull << 31)) {
        return false;
    }
    for (w = strtok_r(end, " ", &save); w != NULL;
         w = strtok_r(NULL, " ", &save)) {
        switch (w[0]) {
        case 'W':
            r->won = true;
            break;
        case 'Z':
            r->lost = true;
            break;
        case 'X':
            r->stale = true;
            break;
        case 'f':
            r->flags = (uint32_t)strtoul(w + 1, NULL, 10);
            break;
        case 't':
            r->ttl = strtoll(w + 1, NULL, 10);
            break;
        case 'c':
            r->cas = strtoull(w + 1, NULL, 10);
            break;
        default:
            break;
        }
    }
    r->value = malloc((size_t)vlen + 2);
    if (r->value == NULL ||
        !conn_read(c, r->value, (size_t)vlen + 2, deadline) ||
        memcmp(r->value + vlen, "\r\n", 2) != 0) {
        free(r->value);
        r->value = NULL;
        return false;
    }
    r->value[vlen] = '\0';
    r->nvalue = (size_t)vlen;
    r->hit = true;
    return true;
}

/* mg with the lease flags.  Returns false when the connection failed
 * (then it is closed and *cp is NULL). */
static bool
fleet_mg(struct fleet_load *L, struct fleet_conn **cp, struct fleet_reply *r)
{
    char req[FLEET_REQ_MAX];
    int64_t deadline = now_ms() + L->fo.io_timeout_ms;
    int len;

    len = snprintf(req, sizeof(req), "mg %.*s%s v f t c N%lld", (int)L->nkey,
                   L->key, L->b64 ? " b" : "", (long long)L->fo.lease_ttl);
    if (L->fo.recache_ttl > 0) {
        len += snprintf(req + len, sizeof(req) - (size_t)len, " R%lld",
                        (long long)L->fo.recache_ttl);
    }
    len += snprintf(req + len, sizeof(req) - (size_t)len, "\r\n");
    if (!conn_send(*cp, req, (size_t)len, deadline) ||
        !fleet_read_mg(*cp, r, deadline)) {
        fleet_conn_close(*cp);
        *cp = NULL;
        return false;
    }
    return true;
}

/* One request line (and data block), one reply line into @out. */
static bool
fleet_simple(struct fleet_load *L, struct fleet_conn **cp, const char *req,
             size_t nreq, const char *data, size_t ndata, char *out,
             size_t cap)
{
    int64_t deadline = now_ms() + L->fo.io_timeout_ms;

    if (!conn_send(*cp, req, nreq, deadline) ||
        (data != NULL && (!conn_send(*cp, data, ndata, deadline) ||
                          !conn_send(*cp, "\r\n", 2, deadline))) ||
        !conn_line(*cp, out, cap, deadline)) {
        fleet_conn_close(*cp);
        *cp = NULL;
        return false;
    }
    return true;
}

/* Store the won value, conditional on the lease's CAS: a write or delete
 * of the key on the server since the lease was taken wins. */
static void
fleet_ms(struct fleet_load *L, struct fleet_conn **cp,
         const struct corral_near_value *v, uint64_t cas)
{
    char req[FLEET_REQ_MAX], out[FLEET_LINE_MAX];
    int len;

    len = snprintf(req, sizeof(req), "ms %.*s %zu%s T%lld F%u C%llu\r\n",
                   (int)L->nkey, L->key, v->n, L->b64 ? " b" : "",
                   (long long)L->fo.server_ttl, (unsigned)v->flags,
                   (unsigned long long)cas);
    if (fleet_simple(L, cp, req, (size_t)len, v->data != NULL ? v->data : "",
                     v->n, out, sizeof(out)) &&
        strcmp(out, "HD") != 0) {
        count(&L->near->fleet_store_rejected);
    }
}

/* Give a lease back at once (the backend failed), if the item is still
 * the one won: delete the empty item a miss's lease holds, or, for a
 * stale or recache win over a value, mark the value stale again (md I),
 * which keeps serving it and hands the next caller a new win. */
static void
fleet_md(struct fleet_load *L, struct fleet_conn **cp, uint64_t cas,
         bool keep_value)
{
    char req[FLEET_REQ_MAX], out[FLEET_LINE_MAX];
    int len = snprintf(req, sizeof(req), "md %.*s%s C%llu%s\r\n",
                       (int)L->nkey, L->key, L->b64 ? " b" : "",
                       (unsigned long long)cas, keep_value ? " I" : "");

    fleet_simple(L, cp, req, (size_t)len, NULL, 0, out, sizeof(out));
}

/* ---------------------------------------------------------------------- */
/* The loader                                                             */

CORRAL_NEAR_API corral_status_t
corral_near_value_set(corral_near_value_t *v, const void *value,
                      size_t nvalue, uint32_t flags)
{
    char *d = malloc(nvalue > 0 ? nvalue : 1);

    if (d == NULL) {
        return CORRAL_ENOMEM;
    }
    if (nvalue > 0) {
        memcpy(d, value, nvalue);
    }
    free(v->data);
    v->data = d;
    v->n = nvalue;
    v->flags = flags;
    return CORRAL_OK;
}

/* Run the backend here; its value goes into the local load. */
static int
fleet_backend(struct fleet_load *L, corral_load_t *load, const void *key,
              size_t nkey, struct corral_near_value *v)
{
    int rc;

    count(&L->near->fleet_loads);
    rc = L->backend(v, key, nkey, L->ud);
    if (rc != 0) {
        count(&L->near->fleet_load_errors);
        return rc;
    }
    /* a local refusal (too big, no memory) is the load's error */
    return (int)corral_load_set(load, v->data != NULL ? v->data : "", v->n,
                                v->flags);
}

/* A value read from the server: keep it locally no longer than there. */
static int
fleet_take(struct fleet_load *L, corral_load_t *load,
           const struct fleet_reply *r)
{
    corral_status_t st = corral_load_set(load, r->value, r->nvalue,
                                         r->flags);

    if (st != CORRAL_OK) {
        return (int)st;
    }
    if (r->ttl >= 0) {
        /* t is whole seconds left: t0 still has up to a second */
        int64_t t = r->ttl > 0 ? r->ttl : 1;
        if (L->local_ttl <= 0 || t < L->local_ttl) {
            corral_load_ttl(load, t, 0);
        }
    }
    return 0;
}

/*
 * Act on one mg reply.  Returns 1 when the load is over (*rc set), 0 when
 * another process holds the lease (poll again), -1 when the server is no
 * use for this key.
 */
static int
fleet_answer(struct fleet_load *L, struct fleet_conn **cp,
             corral_load_t *load, const void *key, size_t nkey,
             const struct fleet_reply *r, int *rc)
{
    corral_near_t *n = L->near;

    if (r->won) {
        struct corral_near_value v = {NULL, 0, 0};

        *rc = fleet_backend(L, load, key, nkey, &v);
        if (*rc == 0) {
            fleet_ms(L, cp, &v, r->cas);
        } else {
            fleet_md(L, cp, r->cas, r->stale || r->nvalue > 0);
        }
        free(v.data);
        return 1;
    }
    if (r->hit && !r->lost) {
        count(&n->fleet_server_hits);
        *rc = fleet_take(L, load, r);
        return 1;
    }
    if (r->hit && r->nvalue > 0) {
        /* another process refreshes it: a stale value (X), or one still
         * good that a recache (R) handed a win for */
        if (r->stale) {
            count(&n->fleet_stale_served);
        }
        *rc = fleet_take(L, load, r);
        return 1;
    }
    return r->hit ? 0 : -1; /* EN despite N: not a lease-capable server */
}

/* corral_loader_fn: the lease loop (see corral_near.h). */
static int
fleet_loader(corral_load_t *load, const void *key, size_t nkey, void *ud)
{
    struct fleet_load *L = ud;
    corral_near_t *n = L->near;
    struct corral_near_value v = {NULL, 0, 0};
    struct fleet_conn *c = NULL;
    int64_t deadline = now_ms() + L->fo.wait_ms;
    int64_t pause = 1;
    unsigned seed = (unsigned)now_ms() ^ (unsigned)(uintptr_t)&v;
    int rc = 0;

    while (L->nkey > 0 &&
           (c != NULL || (c = fleet_conn_get(n)) != NULL)) {
        struct fleet_reply r;
        int done;

        if (!fleet_mg(L, &c, &r)) {
            break;
        }
        done = fleet_answer(L, &c, load, key, nkey, &r, &rc);
        free(r.value);
        if (done < 0) {
            break;
        }
        if (done > 0) {
            if (c != NULL) {
                fleet_conn_put(n, c);
            }
            return rc;
        }
        /* Z: another process holds the lease; poll with backoff */
        if (now_ms() + pause > deadline) {
            count(&n->fleet_wait_timeouts);
            fleet_conn_put(n, c);
            return CORRAL_NEAR_EWAIT;
        }
        count(&n->fleet_waits);
        {
            int64_t d = pause * (80 + (int64_t)(rand_r(&seed) % 41)) / 100;
            struct timespec ts = {d / 1000, (d % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
        pause = pause * 2 > L->fo.poll_max_ms ? L->fo.poll_max_ms
                                              : pause * 2;
    }
    /* No usable server, or a key it cannot name: availability first. */
    fleet_conn_close(c);
    count(&n->fleet_fallbacks);
    rc = fleet_backend(L, load, key, nkey, &v);
    free(v.data);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* API                                                                    */

CORRAL_NEAR_API void
corral_near_fleet_opts_init(corral_near_fleet_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->size = sizeof(*o);
    o->lease_ttl = 30;
    o->wait_ms = 10000;
    o->poll_max_ms = 50;
    o->io_timeout_ms = 2000;
}

/* Is @key a memcached text key (no spaces or control bytes)? */
static bool
text_key(const char *key, size_t nkey)
{
    if (nkey == 0 || nkey > FLEET_KEY_MAX) {
        return false;
    }
    for (size_t i = 0; i < nkey; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (ch <= ' ' || ch == 127) {
            return false;
        }
    }
    return true;
}

CORRAL_NEAR_API corral_status_t
corral_near_fetch_fleet(corral_near_t *n, const void *key, size_t nkey,
                        corral_near_backend_fn backend, void *ud,
                        const corral_near_fleet_opts_t *fleet,
                        const corral_fetch_opts_t *opts,
                        corral_item_t **out_item, int *out_error)
{
    struct fleet_load L;
    corral_fetch_opts_t o;
    corral_status_t st;
    int err = 0;

    *out_item = NULL;
    if (n == NULL || backend == NULL || key == NULL || nkey == 0) {
        return CORRAL_EINVAL;
    }
    memset(&L, 0, sizeof(L));
    L.near = n;
    L.backend = backend;
    L.ud = ud;
    corral_near_fleet_opts_init(&L.fo);
    if (fleet != NULL) {
        size_t sz = fleet->size < sizeof(L.fo) ? fleet->size
                                               : sizeof(L.fo);
        memcpy(&L.fo, fleet, sz);
        L.fo.size = sizeof(L.fo);
    }
    L.local_ttl = opts != NULL ? opts->ttl : 0;
    if (L.fo.server_ttl == 0) {
        L.fo.server_ttl = L.local_ttl;
    }
    if (L.fo.lease_ttl <= 0) {
        L.fo.lease_ttl = 30;
    }
    if (L.fo.poll_max_ms <= 0) {
        L.fo.poll_max_ms = 50;
    }
    if (L.fo.io_timeout_ms <= 0) {
        L.fo.io_timeout_ms = 2000;
    }
    if (text_key(key, nkey)) {
        memcpy(L.key, key, nkey);
        L.nkey = nkey;
    } else if ((nkey + 2) / 3 * 4 <= FLEET_KEY_MAX) {
        L.nkey = proto_base64_encode(key, nkey, L.key, sizeof(L.key));
        L.b64 = true;
    } else {
        L.nkey = 0; /* cannot be named on the wire */
    }
    if (!corral_near_synced(n)) {
        /* as corral_near_fetch(): the local copy may be stale */
        corral_delete(n->cache, key, nkey);
    }
    /* L lives on this stack: a refresh runs here, not on the refresh
     * threads, and there is nothing of the caller's to release */
    if (opts != NULL) {
        o = *opts;
        o.options &= ~(unsigned)(CORRAL_FETCH_BACKGROUND | CORRAL_FETCH_RELEASE);
        opts = &o;
    }
    st = corral_fetch(n->cache, key, nkey, fleet_loader, &L, opts, out_item,
                      &err);
    if (st == CORRAL_ELOAD && err == CORRAL_NEAR_EWAIT) {
        return CORRAL_ETIMEDOUT;
    }
    if (out_error != NULL) {
        *out_error = err;
    }
    return st;
}

CORRAL_NEAR_API void
corral_near_fleet_stats(const corral_near_t *n,
                        corral_near_fleet_stats_t *out, size_t size)
{
    corral_near_t *m = (corral_near_t *)n;
    corral_near_fleet_stats_t s;

    s.server_hits = atomic_load(&m->fleet_server_hits);
    s.loads = atomic_load(&m->fleet_loads);
    s.load_errors = atomic_load(&m->fleet_load_errors);
    s.waits = atomic_load(&m->fleet_waits);
    s.wait_timeouts = atomic_load(&m->fleet_wait_timeouts);
    s.stale_served = atomic_load(&m->fleet_stale_served);
    s.store_rejected = atomic_load(&m->fleet_store_rejected);
    s.fallbacks = atomic_load(&m->fleet_fallbacks);
    memcpy(out, &s, size < sizeof(s) ? size : sizeof(s));
}
