/*
 * logstream.c - memcached's fetchers, mutations and evictions log streams
 * (see logstream.h for the line formats).
 *
 * Delivery, from any producing thread to a watcher owned by one worker:
 *
 *   producer (any worker)                 watcher's worker
 *   ─────────────────────                 ────────────────
 *   wants(stream)? ── no ──► done
 *   format the line once
 *   rdlock(ls->lock)
 *     for each watcher of the stream:
 *       lock(w->lock)
 *       append to w->fill  (or skip,
 *         counting, when it is full)
 *       unlock(w->lock)
 *       was empty? ev_async_send ──────►  wake: if the connection's output
 *   unlock(ls->lock)                        is written, swap fill and spare
 *                                           under w->lock, then queue the
 *                                           spare bytes and send
 *                                           them (conn_send)
 *
 * A watcher's connection that still has a buffer's worth of output
 * queued is not given more: the worker drains fill again once that
 * output has been written (the stream's writable callback).  So a slow
 * watcher holds at most a buffer of lines waiting and two being written,
 * and loses lines (then hears "skipped=N") rather than growing.
 *
 * Locks.  ls->lock (a rwlock) guards the watcher table and the mask:
 * producers read it, watch and close write it.  w->lock guards w->fill,
 * w->nfill and w->skipped; it is a leaf.  Order: ls->lock, then w->lock.
 * ev_async_send is called under ls->lock held shared, so a watcher
 * cannot be freed (which needs the lock exclusively) while a producer
 * signals it.  Nothing here calls the engine while producing, so
 * producers may run under engine locks.
 *
 * Evictions.  The engine reports evictions only to a subscriber
 * (corral_subscribe_evictions), and recording them costs every eviction a
 * lock, so the log streams subscribe only while someone watches
 * evictions: sync_evictions() runs after each watch and each close,
 * outside ls->lock (unsubscribing waits for a delivery in progress, which
 * takes ls->lock), serialized by sub_lock.
 */
#include "logstream.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "conn.h"
#include "log.h"
#include "worker.h"

/* Each of a watcher's two buffers. */
#define LOGSTREAM_HALF (LOGSTREAM_BUFFER / 2)

/* The longest line: a 250-byte key encoded is 750 bytes. */
#define LOGSTREAM_LINE_MAX 1024

struct watcher {
    struct logstream *ls;
    struct conn *c;            /* owner thread only */
    struct ev_loop *loop;
    ev_async wake;
    unsigned streams;          /* LOGSTREAM_* bits; fixed */
    int slot;                  /* index in ls->watchers */

    pthread_mutex_t lock;      /* guards the three fields below */
    char *fill;                /* lines not yet handed to the connection */
    size_t nfill;
    uint64_t skipped;          /* lines lost since the last delivered */

    char *spare;               /* owner thread: the buffer being sent */
};

struct logstream {
    corral_t *cache;
    pthread_mutex_t sub_lock;  /* guards evsub */
    corral_sub_t *evsub;       /* the engine's eviction events, or NULL */
    pthread_rwlock_t lock;     /* guards watchers[] and nwatchers */
    struct watcher *watchers[LOGSTREAM_WATCHERS_MAX];
    unsigned nwatchers;
    _Atomic unsigned mask;     /* streams someone watches */
    _Atomic uint64_t gid;
    _Atomic uint64_t written;
    _Atomic uint64_t sent;
    _Atomic uint64_t skipped;
};

static void watcher_on_wake(struct ev_loop *loop, ev_async *a, int revents);
static void watcher_writable(void *ud);
static void watcher_closed(void *ud);

static const struct conn_stream_ops watcher_ops = {
    .writable = watcher_writable,
    .closed = watcher_closed,
};

static const char *const logstream_status_names[] = {
#define LOGSTREAM_STATUS_NAME(e, s) s,
    LOGSTREAM_STATUS_TABLE(LOGSTREAM_STATUS_NAME)
#undef LOGSTREAM_STATUS_NAME
};

static const char *const logstream_cmd_names[] = {
#define LOGSTREAM_CMD_NAME(e, s) s,
    LOGSTREAM_CMD_TABLE(LOGSTREAM_CMD_NAME)
#undef LOGSTREAM_CMD_NAME
};

struct logstream *
logstream_create(corral_t *cache)
{
    struct logstream *ls = calloc(1, sizeof(*ls));

    if (ls == NULL) {
        return NULL;
    }
    if (pthread_rwlock_init(&ls->lock, NULL) != 0) {
        free(ls);
        return NULL;
    }
    if (pthread_mutex_init(&ls->sub_lock, NULL) != 0) {
        pthread_rwlock_destroy(&ls->lock);
        free(ls);
        return NULL;
    }
    ls->cache = cache;
    return ls;
}

void
logstream_destroy(struct logstream *ls)
{
    if (ls == NULL) {
        return;
    }
    if (ls->evsub != NULL) {
        corral_unsubscribe(ls->cache, ls->evsub);
    }
    pthread_mutex_destroy(&ls->sub_lock);
    pthread_rwlock_destroy(&ls->lock);
    free(ls);
}

/* An engine eviction event: a line for the evictions watchers. */
static void
on_engine_eviction(const corral_event_t *ev, void *ud)
{
    if (ev->type == CORRAL_EVENT_EVICT) {
        logstream_eviction(ud, ev->name, ev->len, ev->fetched != 0, ev->ttl,
                           ev->last_access, ev->nvalue);
    }
}

/* Subscribe to the engine's evictions while someone watches them. */
static void
sync_evictions(struct logstream *ls)
{
    bool wanted;

    if (ls->cache == NULL) {
        return;
    }
    pthread_mutex_lock(&ls->sub_lock);
    wanted = logstream_wants(ls, LOGSTREAM_EVICTIONS);
    if (wanted && ls->evsub == NULL) {
        if (corral_subscribe_evictions(ls->cache, on_engine_eviction, ls,
                                       &ls->evsub) != CORRAL_OK) {
            ls->evsub = NULL;
            log_warn("out of memory subscribing to evictions: "
                     "\"watch evictions\" will stay silent");
        }
    } else if (!wanted && ls->evsub != NULL) {
        corral_unsubscribe(ls->cache, ls->evsub);
        ls->evsub = NULL;
    }
    pthread_mutex_unlock(&ls->sub_lock);
}

bool
logstream_wants(struct logstream *ls, unsigned streams)
{
    return (atomic_load_explicit(&ls->mask, memory_order_relaxed) &
            streams) != 0;
}

/* Recompute the mask; ls->lock held exclusively. */
static void
logstream_remask(struct logstream *ls)
{
    unsigned m = 0;

    for (size_t i = 0; i < LOGSTREAM_WATCHERS_MAX; i++) {
        if (ls->watchers[i] != NULL) {
            m |= ls->watchers[i]->streams;
        }
    }
    atomic_store_explicit(&ls->mask, m, memory_order_relaxed);
}

static void
watcher_free(struct watcher *w)
{
    pthread_mutex_destroy(&w->lock);
    free(w->fill);
    free(w->spare);
    free(w);
}

enum logstream_watch_result
logstream_watch(struct logstream *ls, struct conn *c, unsigned streams)
{
    struct watcher *w = calloc(1, sizeof(*w));
    int slot = -1;

    if (w == NULL) {
        return LOGSTREAM_WATCH_FAILED;
    }
    w->fill = malloc(LOGSTREAM_HALF);
    w->spare = malloc(LOGSTREAM_HALF);
    if (w->fill == NULL || w->spare == NULL ||
        pthread_mutex_init(&w->lock, NULL) != 0) {
        free(w->fill);
        free(w->spare);
        free(w);
        return LOGSTREAM_WATCH_FAILED;
    }
    w->ls = ls;
    w->c = c;
    w->loop = conn_worker(c)->loop;
    w->streams = streams;
    ev_async_init(&w->wake, watcher_on_wake);
    w->wake.data = w;
    /* Started before producers can see it, so no signal is lost. */
    ev_async_start(w->loop, &w->wake);

    pthread_rwlock_wrlock(&ls->lock);
    for (int i = 0; i < LOGSTREAM_WATCHERS_MAX; i++) {
        if (ls->watchers[i] == NULL) {
            slot = i;
            break;
        }
    }
    if (slot >= 0) {
        w->slot = slot;
        ls->watchers[slot] = w;
        ls->nwatchers++;
        logstream_remask(ls);
    }
    pthread_rwlock_unlock(&ls->lock);
    if (slot < 0) {
        ev_async_stop(w->loop, &w->wake);
        watcher_free(w);
        return LOGSTREAM_WATCH_TOO_MANY;
    }
    conn_stream_begin(c, &watcher_ops, w);
    sync_evictions(ls);
    return LOGSTREAM_WATCH_OK;
}

/* The connection closes: unpublish, then free. */
static void
watcher_closed(void *ud)
{
    struct watcher *w = ud;
    struct logstream *ls = w->ls;

    pthread_rwlock_wrlock(&ls->lock);
    ls->watchers[w->slot] = NULL;
    ls->nwatchers--;
    logstream_remask(ls);
    pthread_rwlock_unlock(&ls->lock);
    ev_async_stop(w->loop, &w->wake);
    watcher_free(w);
    sync_evictions(ls);
}

/* Queue the waiting lines on the connection, if it has written the last
 * ones.  Closes nothing; the caller sends. */
static void
watcher_take(struct watcher *w)
{
    char *buf;
    size_t n;

    if (conn_out_pending(w->c) >= LOGSTREAM_HALF) {
        return; /* being written: watcher_writable() comes back */
    }
    pthread_mutex_lock(&w->lock);
    buf = w->fill;
    n = w->nfill;
    w->fill = w->spare;
    w->nfill = 0;
    pthread_mutex_unlock(&w->lock);
    w->spare = buf;
    if (n > 0 && !conn_out_copy(w->c, buf, n)) {
        conn_kill(w->c);
    }
}

static void
watcher_on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    struct watcher *w = a->data;

    watcher_take(w);
    conn_send(w->c); /* may close the connection and free @w */
}

static void
watcher_writable(void *ud)
{
    watcher_take(ud);
}

/* Append one line for @w (and the skipped notice owed before it).
 * Returns true if @w must be woken. */
static bool
watcher_offer(struct logstream *ls, struct watcher *w, const char *line,
              size_t n)
{
    char note[48];
    size_t nn = 0;
    bool wake;

    pthread_mutex_lock(&w->lock);
    if (w->skipped > 0) {
        nn = (size_t)snprintf(note, sizeof(note), "skipped=%" PRIu64 "\n",
                              w->skipped);
    }
    if (w->nfill + nn + n > LOGSTREAM_HALF) {
        w->skipped++;
        pthread_mutex_unlock(&w->lock);
        atomic_fetch_add_explicit(&ls->skipped, 1, memory_order_relaxed);
        return false;
    }
    wake = w->nfill == 0;
    if (nn > 0) {
        memcpy(w->fill + w->nfill, note, nn);
        w->nfill += nn;
        w->skipped = 0;
    }
    memcpy(w->fill + w->nfill, line, n);
    w->nfill += n;
    pthread_mutex_unlock(&w->lock);
    atomic_fetch_add_explicit(&ls->sent, 1, memory_order_relaxed);
    return wake;
}

/* Deliver a formatted line to every watcher of @stream. */
static void
logstream_emit(struct logstream *ls, unsigned stream, const char *line,
               size_t n)
{
    atomic_fetch_add_explicit(&ls->written, 1, memory_order_relaxed);
    pthread_rwlock_rdlock(&ls->lock);
    for (size_t i = 0; i < LOGSTREAM_WATCHERS_MAX; i++) {
        struct watcher *w = ls->watchers[i];

        if (w != NULL && (w->streams & stream) != 0 &&
            watcher_offer(ls, w, line, n)) {
            ev_async_send(w->loop, &w->wake);
        }
    }
    pthread_rwlock_unlock(&ls->lock);
}

size_t
logstream_uriencode(const void *key, size_t nkey, char *dst, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *k = key;
    size_t d = 0;

    if (cap == 0) {
        return 0;
    }
    for (size_t i = 0; i < nkey; i++) {
        unsigned char ch = k[i];
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
                     ch == '_' || ch == '~';

        if (plain) {
            if (d + 1 >= cap) {
                break;
            }
            dst[d++] = (char)ch;
        } else {
            if (d + 3 >= cap) {
                break;
            }
            dst[d++] = '%';
            dst[d++] = hex[ch >> 4];
            dst[d++] = hex[ch & 15];
        }
    }
    dst[d] = '\0';
    return d;
}

/*
 * "ts=<sec>.<usec> gid=<n> " into @line: memcached prints the
 * microseconds without leading zeros, and so does this.
 */
static int
logstream_head(struct logstream *ls, char *line, size_t cap)
{
    struct timespec ts;
    uint64_t gid = atomic_fetch_add_explicit(&ls->gid, 1,
                                             memory_order_relaxed) + 1;

    clock_gettime(CLOCK_REALTIME, &ts);
    return snprintf(line, cap, "ts=%lld.%d gid=%" PRIu64 " ",
                    (long long)ts.tv_sec, (int)(ts.tv_nsec / 1000), gid);
}

void
logstream_item_get(struct logstream *ls, int cfd, const void *key,
                   size_t nkey, enum logstream_fetch status, size_t size)
{
    static const char *const names[] = {"found", "not_found", "expired",
                                         "flushed"};
    bool found = status == LOGSTREAM_FETCH_FOUND;
    char line[LOGSTREAM_LINE_MAX];
    char k[3 * 250 + 1];
    int n;

    if (!logstream_wants(ls, LOGSTREAM_FETCHERS)) {
        return;
    }
    logstream_uriencode(key, nkey, k, sizeof(k));
    n = logstream_head(ls, line, sizeof(line));
    n += snprintf(line + n, sizeof(line) - (size_t)n,
                  "type=item_get key=%s status=%s clsid=%u cfd=%d "
                  "size=%zu\n",
                  k, names[status], found ? 1u : 0u, cfd,
                  found ? size : 0);
    if (n > 0 && (size_t)n < sizeof(line)) {
        logstream_emit(ls, LOGSTREAM_FETCHERS, line, (size_t)n);
    }
}

void
logstream_item_store(struct logstream *ls, int cfd, const void *key,
                     size_t nkey, enum logstream_status status,
                     enum logstream_cmd cmd, uint32_t ttl, unsigned clsid,
                     size_t size)
{
    char line[LOGSTREAM_LINE_MAX];
    char k[3 * 250 + 1];
    int n;

    if (!logstream_wants(ls, LOGSTREAM_MUTATIONS)) {
        return;
    }
    logstream_uriencode(key, nkey, k, sizeof(k));
    n = logstream_head(ls, line, sizeof(line));
    n += snprintf(line + n, sizeof(line) - (size_t)n,
                  "type=item_store key=%s status=%s cmd=%s ttl=%u "
                  "clsid=%u cfd=%d size=%zu\n",
                  k, logstream_status_names[status],
                  logstream_cmd_names[cmd], (unsigned)ttl, clsid, cfd, size);
    if (n > 0 && (size_t)n < sizeof(line)) {
        logstream_emit(ls, LOGSTREAM_MUTATIONS, line, (size_t)n);
    }
}

void
logstream_eviction(struct logstream *ls, const void *key, size_t nkey,
                   bool fetched, int64_t ttl, int64_t la, size_t size)
{
    char line[LOGSTREAM_LINE_MAX];
    char k[3 * 250 + 1];
    int n;

    if (!logstream_wants(ls, LOGSTREAM_EVICTIONS)) {
        return;
    }
    logstream_uriencode(key, nkey, k, sizeof(k));
    n = logstream_head(ls, line, sizeof(line));
    n += snprintf(line + n, sizeof(line) - (size_t)n,
                  "type=eviction key=%s fetch=%s ttl=%lld la=%d clsid=1 "
                  "size=%zu\n",
                  k, fetched ? "yes" : "no", (long long)ttl, (int)la, size);
    if (n > 0 && (size_t)n < sizeof(line)) {
        logstream_emit(ls, LOGSTREAM_EVICTIONS, line, (size_t)n);
    }
}

void
logstream_stats(struct logstream *ls, struct logstream_stats *out)
{
    pthread_rwlock_rdlock(&ls->lock);
    out->watchers = ls->nwatchers;
    pthread_rwlock_unlock(&ls->lock);
    out->written = atomic_load_explicit(&ls->written, memory_order_relaxed);
    out->sent = atomic_load_explicit(&ls->sent, memory_order_relaxed);
    out->skipped = atomic_load_explicit(&ls->skipped, memory_order_relaxed);
}
