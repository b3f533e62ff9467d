/*
 * watch.c - the invalidation history and its fan-out to watchers.
 *
 * Data flow:
 *
 *   engine event ──► exec.c ──► watch_record()          (changing thread)
 *                                 │ lock; ring[head % cap] = event; head++
 *                                 │ publish avail; ev_async_send() to each
 *                                 ▼ worker with watchers not yet signalled
 *   worker loop: ww_on_async() ──► serve(watcher) for each of its watchers
 *                                 │ batch = ring[cursor .. head) copied
 *                                 │ under the lock, each line composed
 *                                 │ once per worker, filtered per watcher
 *                                 ▼ conn_out_copy(); conn_send()
 *
 * The history.  A ring of `cap` slots indexed by a 64-bit position that
 * only grows: slot i holds position i % cap, positions [head - cap, head)
 * are held.  Each slot holds one event (its seq, the engine's, grows by
 * one per event) with its name inline when short, else in a block of its
 * own.  The ring is the single queue every watcher reads with its own
 * cursor (a position), so an event is stored once whatever the number of
 * watchers, and memory is bounded by `cap` whatever they do.  It also
 * serves since=: a reconnecting watcher resumes at the position of that
 * seq, if it is still held.
 *
 * Lag.  A watcher's cursor may trail head by at most lag_max positions,
 * and never by more than the ring holds.  A watcher that starts further
 * back (a since= replay) may trail by as much as it started with, an
 * allowance that shrinks to lag_max as it catches up: only a watcher
 * that falls further behind is dropped.  A dropped watcher is sent a
 * final "type=lagged next=<seq>" line and its connection is closed: it
 * is never skipped silently, and it may reconnect with since=<seq>.
 *
 * Back-pressure.  A watcher is served only while its connection has less
 * than WATCH_OUT_HIGH bytes unsent; the rest waits in the ring until
 * conn.c reports the output drained (the stream's writable callback).
 * Its kernel send buffer is bounded too (WATCH_SNDBUF), so that a
 * watcher that stops reading is seen to fall behind.
 *
 * Locks and threads.  hub->lock guards the ring, head, next_seq, the
 * pending-gap mark and each ww->attached; it is a leaf (see watch.h),
 * held by readers only to copy a batch out.  hub->avail publishes head
 * for readers that only want to know whether anything is new.  A struct
 * watch_worker and its watchers belong to that worker's thread, except
 * `nwatchers` and `signalled` (atomics shared with watch_record(), see
 * ww_on_async()) and the counters (single writer, read by "stats").  Hub
 * counters are atomics.
 */
#include "watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <ev.h>
#include <proto.h>

#include "conn.h"
#include "log.h"
#include "server.h"
#include "worker.h"

/* Names up to this many bytes live in the slot. */
#define WSLOT_INLINE 48

/* Events a worker copies out of the ring at a time. */
#define WATCH_BATCH 128

/* Stop serving a watcher while this much output is unsent. */
#define WATCH_OUT_HIGH ((size_t)64 << 10)

/* The smallest history. */
#define WATCH_HISTORY_MIN 16

/* A watcher's kernel send buffer: without a bound the kernel's autotuning
 * would hide megabytes of backlog from the lag check. */
#define WATCH_SNDBUF (256 << 10)

struct wslot {
    uint64_t seq;
    uint64_t ts_us;
    uint64_t cas;
    uint64_t origin;
    int64_t at;
    uint64_t next;          /* GAP: the seq delivery resumed at */
    uint8_t type;           /* proto_wev_t */
    uint16_t len;
    char *heap;             /* the name when longer than WSLOT_INLINE */
    char name[WSLOT_INLINE];
};

/* An event as a worker holds it while serving: decoded and composed. */
struct cev {
    proto_wev_t type;
    uint64_t origin;
    uint16_t len;
    uint32_t line_off;
    uint32_t line_len;
    char name[PROTO_KEY_MAX];
};

struct watch_worker {
    struct watch_hub *hub;
    struct worker *w;
    ev_async async;
    ev_timer beat;            /* every second: heartbeats */
    bool attached;            /* under hub->lock */
    atomic_uint nwatchers;    /* read by watch_record() */
    atomic_bool signalled;    /* an ev_async is pending or the worker is
                               * serving: recorders need not send one */
    struct watcher *list;     /* owner thread */

    /* the batch last copied out: positions [lo, hi) */
    uint64_t lo, hi;
    struct cev ev[WATCH_BATCH];
    char lines[WATCH_BATCH * PROTO_WATCH_LINE_MAX];

    srv_counter_t lines_sent; /* single writer: this worker */
    srv_counter_t lagged;
    srv_counter_t gaps;
};

struct wfilter {
    const char *s;
    size_t len;
};

struct watcher {
    struct watch_worker *ww;
    struct conn *c;
    struct watcher *prev, *next;
    uint64_t pos;             /* next position to serve */
    uint64_t allow;           /* how far behind head it may be */
    uint64_t node;            /* this server's id, for origin=local */
    bool local_only;
    bool done;                /* final line queued */
    unsigned heartbeat;       /* seconds between pings when quiet; 0 none */
    ev_tstamp quiet_since;    /* when a line was last queued */
    size_t nprefix, ntag;
    struct wfilter *prefix, *tag;
    char *names;              /* the filters' bytes */
};

struct watch_hub {
    struct server *srv;
    pthread_mutex_t lock;
    struct wslot *ring;
    size_t cap;
    size_t lag_max;
    uint64_t head;            /* positions written so far */
    uint64_t next_seq;        /* the seq the next event will carry */
    bool gap_open;            /* the last slot is a GAP awaiting `next` */
    uint64_t lost_local;      /* the last seq overwritten in the ring that
                               * an origin=local watcher would have been
                               * sent (0: none) */
    int64_t flush_at;         /* the last flush event's time (0: at once):
                               * a delayed flush still to come is told to
                               * a new watcher in its sync line */
    _Atomic uint64_t avail;   /* positions readers may serve, published
                               * after they are written (a hint, read
                               * without the lock) */
    unsigned nworkers;
    struct watch_worker **ww; /* by worker id */

    atomic_uint_fast64_t events;
    atomic_uint_fast64_t watchers;
    atomic_uint_fast64_t watchers_total;
    atomic_uint_fast64_t replays;
};

static void ww_on_async(struct ev_loop *loop, ev_async *a, int revents);
static void ww_on_beat(struct ev_loop *loop, ev_timer *t, int revents);
static uint64_t hub_avail_locked(const struct watch_hub *hub);

/* ---------------------------------------------------------------------- */
/* Hub                                                                    */

struct watch_hub *
watch_hub_create(struct server *srv, size_t history, size_t lag_max,
                 uint64_t first_seq)
{
    struct watch_hub *hub = calloc(1, sizeof(*hub));

    if (hub == NULL) {
        return NULL;
    }
    if (history < WATCH_HISTORY_MIN) {
        history = WATCH_HISTORY_MIN;
    }
    hub->srv = srv;
    hub->cap = history;
    hub->lag_max = lag_max == 0 || lag_max > history ? history : lag_max;
    hub->next_seq = first_seq;
    hub->nworkers = srv->nworkers;
    hub->ring = calloc(history, sizeof(*hub->ring));
    hub->ww = calloc(srv->nworkers > 0 ? srv->nworkers : 1,
                     sizeof(*hub->ww));
    if (hub->ring == NULL || hub->ww == NULL ||
        pthread_mutex_init(&hub->lock, NULL) != 0) {
        free(hub->ring);
        free(hub->ww);
        free(hub);
        return NULL;
    }
    return hub;
}

void
watch_hub_destroy(struct watch_hub *hub)
{
    if (hub == NULL) {
        return;
    }
    for (size_t i = 0; i < hub->cap; i++) {
        free(hub->ring[i].heap);
    }
    for (unsigned i = 0; i < hub->nworkers; i++) {
        free(hub->ww[i]);
    }
    free(hub->ww);
    free(hub->ring);
    pthread_mutex_destroy(&hub->lock);
    free(hub);
}

int
watch_worker_attach(struct watch_hub *hub, struct worker *w)
{
    struct watch_worker *ww;

    if (w->id >= hub->nworkers) {
        return -1;
    }
    ww = calloc(1, sizeof(*ww));
    if (ww == NULL) {
        return -1;
    }
    ww->hub = hub;
    ww->w = w;
    ev_async_init(&ww->async, ww_on_async);
    ww->async.data = ww;
    ev_async_start(w->loop, &ww->async);
    ev_timer_init(&ww->beat, ww_on_beat, 1., 1.);
    ww->beat.data = ww;
    ev_timer_start(w->loop, &ww->beat);
    pthread_mutex_lock(&hub->lock);
    ww->attached = true;
    hub->ww[w->id] = ww;
    pthread_mutex_unlock(&hub->lock);
    return 0;
}

void
watch_worker_detach(struct watch_hub *hub, struct worker *w)
{
    struct watch_worker *ww;

    if (hub == NULL || w->id >= hub->nworkers) {
        return;
    }
    pthread_mutex_lock(&hub->lock);
    ww = hub->ww[w->id];
    if (ww != NULL) {
        ww->attached = false;
    }
    pthread_mutex_unlock(&hub->lock);
    if (ww != NULL) {
        ev_async_stop(w->loop, &ww->async);
        ev_timer_stop(w->loop, &ww->beat);
    }
}

static const char *
slot_name(const struct wslot *s)
{
    return s->heap != NULL ? s->heap : s->name;
}

void
watch_record(struct watch_hub *hub, const struct proto_watch_event *ev)
{
    struct wslot *s;
    size_t len = ev->len > PROTO_KEY_MAX ? PROTO_KEY_MAX : ev->len;
    char *heap = NULL;

    if (len > WSLOT_INLINE) {
        /* Allocated outside the lock; on failure the name is cut to what
         * fits inline, and the event becomes a gap (nothing is lost
         * silently). */
        heap = malloc(len);
    }
    pthread_mutex_lock(&hub->lock);
    if (hub->gap_open && hub->head > 0) {
        hub->ring[(hub->head - 1) % hub->cap].next = ev->seq;
        hub->gap_open = false;
    }
    s = &hub->ring[hub->head % hub->cap];
    if (hub->head >= hub->cap &&
        (s->origin == hub->srv->node_id || s->type == PROTO_WEV_FLUSH ||
         s->type == PROTO_WEV_GAP)) {
        hub->lost_local = s->seq;
    }
    free(s->heap);
    s->heap = NULL;
    s->seq = ev->seq;
    s->ts_us = ev->ts_us;
    s->cas = ev->cas;
    s->origin = ev->origin;
    s->at = ev->at;
    s->next = 0;
    s->type = (uint8_t)ev->type;
    if (len > WSLOT_INLINE && heap == NULL) {
        s->type = PROTO_WEV_GAP;
        len = 0;
    }
    s->len = (uint16_t)len;
    if (len > WSLOT_INLINE) {
        memcpy(heap, ev->name, len);
        s->heap = heap;
    } else if (len > 0) {
        memcpy(s->name, ev->name, len);
    }
    if (s->type == PROTO_WEV_FLUSH) {
        hub->flush_at = ev->at;
    }
    if (s->type == PROTO_WEV_GAP) {
        /* delivery resumes at the next event recorded */
        hub->gap_open = true;
    } else {
        hub->next_seq = ev->seq + 1;
    }
    hub->head++;
    /* seq_cst, paired with ww_on_async(): either this sees the worker's
     * cleared flag, or the worker sees this position (see there) */
    atomic_store(&hub->avail, hub_avail_locked(hub));
    for (unsigned i = 0; i < hub->nworkers; i++) {
        struct watch_worker *ww = hub->ww[i];
        if (ww != NULL && ww->attached &&
            atomic_load_explicit(&ww->nwatchers, memory_order_relaxed) > 0 &&
            !atomic_load(&ww->signalled) &&
            !atomic_exchange(&ww->signalled, true)) {
            ev_async_send(ww->w->loop, &ww->async);
        }
    }
    pthread_mutex_unlock(&hub->lock);
    atomic_fetch_add_explicit(&hub->events, 1, memory_order_relaxed);
}

/* The oldest position held.  Lock held. */
static uint64_t
hub_oldest_locked(const struct watch_hub *hub)
{
    return hub->head > hub->cap ? hub->head - hub->cap : 0;
}

/* Positions a reader may serve: not an open GAP.  Lock held. */
static uint64_t
hub_avail_locked(const struct watch_hub *hub)
{
    return hub->gap_open ? hub->head - 1 : hub->head;
}

/* The seq of the event at @pos, or next_seq when @pos is not yet
 * written.  Lock held. */
static uint64_t
hub_seq_at_locked(const struct watch_hub *hub, uint64_t pos)
{
    uint64_t oldest = hub_oldest_locked(hub);

    if (pos < oldest) {
        /* Overwritten: seqs grow by at least one per position, so this
         * is below what the ring holds, and since= from it is a gap. */
        uint64_t s = hub->ring[oldest % hub->cap].seq;
        return s > oldest - pos ? s - (oldest - pos) : 1;
    }
    if (pos < hub_avail_locked(hub)) {
        return hub->ring[pos % hub->cap].seq;
    }
    return hub->next_seq;
}

/* ---------------------------------------------------------------------- */
/* Lines                                                                  */

static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Queue a control line (sync, gap, lagged, shutdown); at is the sync's
 * pending flush (0: none). */
static void
queue_control(struct conn *c, proto_wev_t type, uint64_t node, uint64_t seq,
              uint64_t next, int64_t at)
{
    struct proto_watch_event ev;
    char *buf;
    size_t n;

    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.ts_us = now_us();
    ev.node = node;
    ev.seq = seq;
    ev.next = next;
    ev.at = at;
    buf = conn_out_reserve(c, PROTO_WATCH_LINE_MAX);
    if (buf == NULL) {
        return;
    }
    n = proto_compose_watch(buf, PROTO_WATCH_LINE_MAX, &ev);
    conn_out_commit(c, n);
}

/*
 * Copy the events at positions [from, from + WATCH_BATCH) that exist into
 * ww's batch and compose their lines (each line once, whatever the number
 * of watchers that get it).  Returns false when @from is no longer held
 * (the reader lagged).
 */
static bool
ww_fill(struct watch_worker *ww, uint64_t from)
{
    struct watch_hub *hub = ww->hub;
    struct proto_watch_event evs[WATCH_BATCH];
    uint64_t avail, n;
    size_t off = 0;

    pthread_mutex_lock(&hub->lock);
    if (from < hub_oldest_locked(hub)) {
        pthread_mutex_unlock(&hub->lock);
        return false;
    }
    avail = hub_avail_locked(hub);
    n = avail > from ? avail - from : 0;
    if (n > WATCH_BATCH) {
        n = WATCH_BATCH;
    }
    if (n == 0) {
        /* nothing new: keep the batch other watchers may still use */
        pthread_mutex_unlock(&hub->lock);
        return true;
    }
    for (uint64_t i = 0; i < n; i++) {
        const struct wslot *s = &hub->ring[(from + i) % hub->cap];
        struct proto_watch_event *ev = &evs[i];
        struct cev *e = &ww->ev[i];

        memset(ev, 0, sizeof(*ev));
        ev->type = (proto_wev_t)s->type;
        ev->ts_us = s->ts_us;
        ev->seq = s->seq;
        ev->cas = s->cas;
        ev->origin = s->origin;
        ev->at = s->at;
        ev->next = s->next;
        e->type = ev->type;
        e->origin = s->origin;
        e->len = s->len;
        memcpy(e->name, slot_name(s), s->len);
    }
    pthread_mutex_unlock(&hub->lock);

    for (uint64_t i = 0; i < n; i++) {
        struct cev *e = &ww->ev[i];
        size_t k;

        evs[i].name = e->name;
        evs[i].len = e->len;
        k = proto_compose_watch(ww->lines + off, PROTO_WATCH_LINE_MAX,
                                &evs[i]);
        e->line_off = (uint32_t)off;
        e->line_len = (uint32_t)k;
        off += k;
    }
    ww->lo = from;
    ww->hi = from + n;
    return true;
}

/* ---------------------------------------------------------------------- */
/* Watchers                                                               */

static bool
has_prefix(const char *s, size_t n, const char *p, size_t np)
{
    return np <= n && memcmp(s, p, np) == 0;
}

static bool
watcher_wants(const struct watcher *wt, const struct cev *e)
{
    if (e->type == PROTO_WEV_GAP) {
        return true;
    }
    if (wt->local_only && e->origin != wt->node) {
        return false;
    }
    if (e->type == PROTO_WEV_FLUSH || (wt->nprefix == 0 && wt->ntag == 0)) {
        return true;
    }
    switch (e->type) {
    case PROTO_WEV_DELETE:
    case PROTO_WEV_OVERWRITE:
    case PROTO_WEV_STALE:
        for (size_t i = 0; i < wt->nprefix; i++) {
            if (has_prefix(e->name, e->len, wt->prefix[i].s,
                           wt->prefix[i].len)) {
                return true;
            }
        }
        return false;
    case PROTO_WEV_PREFIX:
        /* some watched key may start with the invalidated prefix */
        for (size_t i = 0; i < wt->nprefix; i++) {
            if (has_prefix(e->name, e->len, wt->prefix[i].s,
                           wt->prefix[i].len) ||
                has_prefix(wt->prefix[i].s, wt->prefix[i].len, e->name,
                           e->len)) {
                return true;
            }
        }
        return false;
    case PROTO_WEV_TAG:
        for (size_t i = 0; i < wt->ntag; i++) {
            if (wt->tag[i].len == e->len &&
                memcmp(wt->tag[i].s, e->name, e->len) == 0) {
                return true;
            }
        }
        return false;
    default:
        return false;
    }
}

/* The seq of the first event @wt has not been sent. */
static uint64_t
watcher_next_seq(const struct watcher *wt)
{
    struct watch_hub *hub = wt->ww->hub;
    uint64_t s;

    pthread_mutex_lock(&hub->lock);
    s = hub_seq_at_locked(hub, wt->pos);
    pthread_mutex_unlock(&hub->lock);
    return s;
}

/* Close @wt's connection after a last control line. */
static void
watcher_finish(struct watcher *wt, proto_wev_t type)
{
    queue_control(wt->c, type, 0, 0, watcher_next_seq(wt), 0);
    wt->done = true;
    conn_quit(wt->c);
}

/*
 * Queue what @wt may be sent now: events from its cursor, while its
 * output stays under WATCH_OUT_HIGH.  Never closes or frees anything;
 * the caller sends (conn_send) when it is outside conn.c.
 */
static void
serve(struct watcher *wt)
{
    struct watch_worker *ww = wt->ww;
    struct watch_hub *hub = ww->hub;
    uint64_t sent = 0;

    if (!wt->done && conn_out_pending(wt->c) >= WATCH_OUT_HIGH) {
        /* Not reading: drop it once it is too far behind, rather than
         * when it reads again.  The last line waits behind the output
         * already queued; memory stays bounded by WATCH_OUT_HIGH. */
        uint64_t behind, oldest;

        pthread_mutex_lock(&hub->lock);
        behind = hub->head - wt->pos;
        oldest = hub_oldest_locked(hub);
        pthread_mutex_unlock(&hub->lock);
        if (behind > wt->allow || wt->pos < oldest) {
            log_verbose("<%d watcher not reading, %llu events behind: "
                        "closing", conn_fd(wt->c),
                        (unsigned long long)behind);
            srv_counter_add(&ww->lagged, 1);
            watcher_finish(wt, PROTO_WEV_LAGGED);
        }
        return;
    }
    while (!wt->done && conn_out_pending(wt->c) < WATCH_OUT_HIGH) {
        const char *lines;

        if (!(wt->pos >= ww->lo && wt->pos < ww->hi)) {
            uint64_t behind;

            if (wt->pos >= atomic_load_explicit(&hub->avail,
                                                memory_order_acquire)) {
                break; /* caught up: nothing to lock for */
            }
            pthread_mutex_lock(&hub->lock);
            behind = hub->head - wt->pos;
            pthread_mutex_unlock(&hub->lock);
            if (behind < wt->allow) {
                /* catching up: the allowance shrinks with the gap */
                wt->allow = behind > hub->lag_max ? behind : hub->lag_max;
            }
            if (behind > wt->allow || !ww_fill(ww, wt->pos)) {
                log_verbose("<%d watcher lagged %llu events behind: closing",
                            conn_fd(wt->c), (unsigned long long)behind);
                srv_counter_add(&ww->lagged, 1);
                watcher_finish(wt, PROTO_WEV_LAGGED);
                break;
            }
            if (!(wt->pos >= ww->lo && wt->pos < ww->hi)) {
                break; /* nothing new */
            }
        }
        lines = ww->lines;
        while (wt->pos < ww->hi &&
               conn_out_pending(wt->c) < WATCH_OUT_HIGH) {
            const struct cev *e = &ww->ev[wt->pos - ww->lo];

            if (watcher_wants(wt, e)) {
                if (!conn_out_copy(wt->c, lines + e->line_off,
                                   e->line_len)) {
                    return; /* the connection is being killed */
                }
                sent++;
                if (e->type == PROTO_WEV_GAP) {
                    srv_counter_add(&ww->gaps, 1);
                }
            }
            wt->pos++;
        }
    }
    if (sent > 0) {
        srv_counter_add(&ww->lines_sent, sent);
        wt->quiet_since = ev_now(ww->w->loop);
    }
}

/*
 * Every second: a watcher that asked for heartbeats (heartbeat=S) and
 * was sent nothing for S seconds, with nothing queued, gets a ping line,
 * so that its client can tell a quiet server from one that stopped (a
 * stopped process's kernel still answers TCP keepalives).
 */
static void
ww_on_beat(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct watch_worker *ww = t->data;
    struct watcher *wt, *next;
    ev_tstamp now = ev_now(loop);

    (void)revents;
    for (wt = ww->list; wt != NULL; wt = next) {
        struct conn *c = wt->c;

        next = wt->next;
        if (wt->heartbeat == 0 || wt->done ||
            now - wt->quiet_since < wt->heartbeat ||
            conn_out_pending(c) != 0) {
            continue;
        }
        queue_control(c, PROTO_WEV_PING, 0, 0, watcher_next_seq(wt), 0);
        wt->quiet_since = now;
        conn_send(c); /* may close c and free wt */
    }
}

/*
 * A worker's wake-up: serve every watcher.  Recorders send an ev_async
 * only when `signalled` is clear, and it stays set while this runs, so a
 * burst of events costs one wake-up and no system call per event.  After
 * a round the flag is cleared and the published position read again
 * (both seq_cst, against the recorder's store of the position and load
 * of the flag): events recorded during the round are either seen here,
 * and served in another round, or find the flag clear and send a new
 * ev_async.
 */
static void
ww_on_async(struct ev_loop *loop, ev_async *a, int revents)
{
    struct watch_worker *ww = a->data;
    struct watcher *wt, *next;
    uint64_t seen;

    (void)revents;
    for (int round = 0;; round++) {
        seen = atomic_load(&ww->hub->avail);
        for (wt = ww->list; wt != NULL; wt = next) {
            struct conn *c = wt->c;

            next = wt->next;
            serve(wt);
            conn_send(c); /* may close c and free wt */
        }
        atomic_store(&ww->signalled, false);
        if (atomic_load(&ww->hub->avail) == seen ||
            atomic_exchange(&ww->signalled, true)) {
            break; /* nothing new, or a recorder signalled again */
        }
        if (round == 7) {
            /* still busy: let the loop serve the worker's clients, and
             * come back (the flag is ours, so nobody else signals) */
            ev_async_send(loop, &ww->async);
            break;
        }
    }
}

/* Copy the filters of @cmd into @wt. */
static int
watcher_filters(struct watcher *wt, const struct proto_cmd *cmd)
{
    struct proto_iter it;
    proto_watch_filter_t kind;
    char buf[PROTO_KEY_MAX];
    size_t n, total = 0, np = 0, nt = 0;
    char *p;

    proto_args_begin(&it, cmd);
    while (proto_watch_filter_next(&it, &kind, buf, sizeof(buf), &n)) {
        if (kind == PROTO_WF_LOCAL) {
            wt->local_only = true;
        } else {
            total += n;
            np += kind == PROTO_WF_PREFIX;
            nt += kind == PROTO_WF_TAG;
        }
    }
    if (np + nt == 0) {
        return 0;
    }
    wt->prefix = calloc(np + nt, sizeof(*wt->prefix));
    wt->names = malloc(total > 0 ? total : 1);
    if (wt->prefix == NULL || wt->names == NULL) {
        return -1;
    }
    wt->tag = wt->prefix + np;
    p = wt->names;
    proto_args_begin(&it, cmd);
    while (proto_watch_filter_next(&it, &kind, buf, sizeof(buf), &n)) {
        struct wfilter *f;

        if (kind == PROTO_WF_LOCAL) {
            continue;
        }
        f = kind == PROTO_WF_PREFIX ? &wt->prefix[wt->nprefix++]
                                    : &wt->tag[wt->ntag++];
        memcpy(p, buf, n);
        f->s = p;
        f->len = n;
        p += n;
    }
    return 0;
}

static void
watcher_free(struct watcher *wt)
{
    free(wt->prefix);
    free(wt->names);
    free(wt);
}

/* First position holding seq >= @seq, by binary search.  Lock held. */
static uint64_t
hub_find_locked(const struct watch_hub *hub, uint64_t seq)
{
    uint64_t lo = hub_oldest_locked(hub), hi = hub_avail_locked(hub);

    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (hub->ring[mid % hub->cap].seq < seq) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void watcher_writable(void *ud);
static void watcher_drain(void *ud);
static void watcher_closed(void *ud);

static const struct conn_stream_ops watcher_ops = {
    .writable = watcher_writable,
    .drain = watcher_drain,
    .closed = watcher_closed,
};

int
watch_add(struct watch_hub *hub, struct conn *c, const struct proto_cmd *cmd,
          uint64_t node)
{
    struct worker *w = conn_worker(c);
    struct watch_worker *ww = w->id < hub->nworkers ? hub->ww[w->id] : NULL;
    struct watcher *wt;
    uint64_t start, oldest_seq, next_seq;
    int64_t flush_at;
    bool gap = false;

    if (ww == NULL) {
        return -1;
    }
    wt = calloc(1, sizeof(*wt));
    if (wt == NULL) {
        return -1;
    }
    if (watcher_filters(wt, cmd) != 0) {
        watcher_free(wt);
        return -1;
    }
    wt->ww = ww;
    wt->c = c;
    wt->node = node;
    wt->heartbeat = cmd->heartbeat;
    wt->quiet_since = ev_now(w->loop);

    pthread_mutex_lock(&hub->lock);
    next_seq = hub->next_seq;
    flush_at = hub->flush_at > (int64_t)(now_us() / 1000000) ? hub->flush_at
                                                            : 0;
    start = hub_avail_locked(hub);
    if (cmd->since != 0) {
        uint64_t oldest = hub_oldest_locked(hub);

        oldest_seq = oldest < hub_avail_locked(hub)
                         ? hub->ring[oldest % hub->cap].seq
                         : next_seq;
        if ((cmd->node != 0 && cmd->node != node) || cmd->since > next_seq) {
            gap = true;
        } else if (cmd->since >= oldest_seq) {
            start = hub_find_locked(hub, cmd->since);
        } else if (cmd->node == node && wt->local_only &&
                   wt->nprefix + wt->ntag == 0 &&
                   cmd->since > hub->lost_local) {
            /* what left the history since then was other nodes' events,
             * which this watcher (a peer) is not sent anyway */
            start = oldest;
        } else {
            gap = true;
        }
    }
    wt->allow = hub->head - start > hub->lag_max ? hub->head - start
                                                 : hub->lag_max;
    pthread_mutex_unlock(&hub->lock);

    wt->pos = start;
    queue_control(c, PROTO_WEV_SYNC, node, 0,
                  gap || cmd->since == 0 ? next_seq : cmd->since, flush_at);
    if (gap) {
        queue_control(c, PROTO_WEV_GAP, 0, cmd->since, next_seq, 0);
        srv_counter_add(&ww->gaps, 1);
    } else if (cmd->since != 0) {
        atomic_fetch_add_explicit(&hub->replays, 1, memory_order_relaxed);
    }
    wt->next = ww->list;
    if (ww->list != NULL) {
        ww->list->prev = wt;
    }
    ww->list = wt;
    atomic_fetch_add_explicit(&ww->nwatchers, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hub->watchers, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hub->watchers_total, 1, memory_order_relaxed);
    {
        int sndbuf = WATCH_SNDBUF;
        setsockopt(conn_fd(c), SOL_SOCKET, SO_SNDBUF, &sndbuf,
                   sizeof(sndbuf));
    }
    conn_stream_begin(c, &watcher_ops, wt);
    serve(wt);
    return 0;
}

/* The stream callbacks conn.c makes for a watching connection. */
static void
watcher_writable(void *ud)
{
    serve(ud);
}

static void
watcher_drain(void *ud)
{
    struct watcher *wt = ud;

    if (!wt->done) {
        serve(wt);
        if (!wt->done) {
            watcher_finish(wt, PROTO_WEV_SHUTDOWN);
        }
    }
}

static void
watcher_closed(void *ud)
{
    struct watcher *wt = ud;
    struct watch_worker *ww = wt->ww;

    if (wt->prev != NULL) {
        wt->prev->next = wt->next;
    } else {
        ww->list = wt->next;
    }
    if (wt->next != NULL) {
        wt->next->prev = wt->prev;
    }
    atomic_fetch_sub_explicit(&ww->nwatchers, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&ww->hub->watchers, 1, memory_order_relaxed);
    watcher_free(wt);
}

void
watch_stats_get(struct watch_hub *hub, struct watch_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&hub->lock);
    out->history = hub->cap;
    out->history_used = hub->head < hub->cap ? hub->head : hub->cap;
    out->next_seq = hub->next_seq;
    for (unsigned i = 0; i < hub->nworkers; i++) {
        const struct watch_worker *ww = hub->ww[i];
        if (ww != NULL) {
            out->lines_sent += srv_counter_get(&ww->lines_sent);
            out->watchers_lagged += srv_counter_get(&ww->lagged);
            out->gaps += srv_counter_get(&ww->gaps);
        }
    }
    pthread_mutex_unlock(&hub->lock);
    out->events = atomic_load(&hub->events);
    out->watchers = atomic_load(&hub->watchers);
    out->watchers_total = atomic_load(&hub->watchers_total);
    out->replays = atomic_load(&hub->replays);
}
