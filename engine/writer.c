/*
 * writer.c - write-through and write-behind: corral_put() and
 * corral_remove() change the backend through a registered writer as well
 * as the cache.
 *
 * Per-key order.  Puts and removes of one key are serialised by a key
 * lock held across "write the backend (or queue the write), then change
 * the cache", so the cache and the backend see a key's changes in the
 * same order.  A key lock is a record on the writing thread's stack in a
 * list of its stripe (by key hash) of keys being written; only writes of
 * the same key wait for one another, so a writer function may put other
 * keys.  A thread that already holds the key's lock (a writer function
 * putting its own key) gets CORRAL_EBUSY instead of waiting for itself.
 * The events of the change are delivered after the key lock is released
 * (cache_hold_delivery), so a subscriber may put and remove too.
 *
 * Write-through calls the writer first and changes the cache only when it
 * succeeded: the cache is never newer than the backend.
 *
 * Write-behind.  A map from key to entry holds at most one queued write
 * per key plus, while that write is with the batch writer ("in flight"),
 * one newer write behind it; a later write of the key replaces the queued
 * one (coalescing).  A FIFO of queued entries feeds the flusher thread,
 * which takes due entries (up to batch_max, after they waited delay_ms so
 * that writes coalesce), calls the batch writer without any lock, then:
 * written entries leave (their newer write, if any, is queued); failed
 * ones are queued again with exponential backoff and jitter, unless a
 * newer write of the key supersedes them.  Nothing acknowledged is dropped
 * except by coalescing with a newer write of the same key.
 *
 *   map: key -> entry { queued | in flight, newer -> entry }
 *   fifo: entry -> entry -> ...   (queued entries, oldest first)
 *
 * Locks: a stripe's lock is held only to look at and change its list; a
 * key lock is held across the writer function, then w->lock, then the
 * shard locks taken by corral_set and corral_delete (never under
 * w->lock).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"

#define WRITER_STRIPES 64u
#define MODE_THROUGH 1
#define MODE_BEHIND 2

struct wb_entry {
    struct wb_entry *hnext;      /* map chain */
    struct wb_entry *qnext;      /* FIFO */
    struct wb_entry *newer;      /* a write queued behind this in-flight one */
    uint64_t h;
    uint64_t seq;
    uint64_t due_ms;             /* not before (delay, or retry backoff) */
    int64_t expires;
    uint32_t attempts;
    uint32_t flags;
    corral_write_op_t op;
    bool inflight;
    bool in_map;                 /* the entry the map points at */
    char *value;
    size_t nvalue;
    uint8_t nkey;
    char key[CORRAL_KEY_MAX];
};

/* A key being written, on the writing thread's stack. */
struct key_lock {
    struct key_lock *next;
    uint64_t h;
    pthread_t owner;
};

struct stripe {
    pthread_mutex_t lock;
    pthread_cond_t freed;        /* a key of the stripe was released */
    struct key_lock *held;
    unsigned waiters;
};

struct writer {
    int mode;
    corral_writer_fn through;
    corral_batch_writer_fn behind;
    void *ud;
    struct stripe stripes[WRITER_STRIPES];

    /* write-behind; everything below under lock */
    pthread_mutex_t lock;
    pthread_cond_t work;         /* the flusher waits for work */
    pthread_cond_t room;         /* writers wait for queue space */
    pthread_cond_t drained;      /* flushers of corral_write_flush */
    struct wb_entry **buckets;
    size_t nbuckets;
    struct wb_entry *head, *tail;
    size_t count;                /* entries: queued, in flight, newer */
    size_t queued;
    unsigned flush_waiters;
    bool stop;
    bool started;
    pthread_t thread;
    corral_wb_opts_t o;
    struct corral *c;
    struct wb_entry **batch;     /* the flusher's, batch_max each */
    corral_write_t *writes;
    int *results;
};

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
deadline_in(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* A condition variable timed by CLOCK_MONOTONIC.  (glibc's
 * pthread_cond_init allocates nothing and cannot fail.) */
static void
cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* calloc, failed on request by tests (mem_fail_any_after). */
static void *
writer_calloc(size_t n, size_t size)
{
    return mem_fail_any() ? NULL : calloc(n, size);
}

static struct writer *
writer_new(struct corral *c, int mode)
{
    struct writer *w = writer_calloc(1, sizeof(*w));
    if (w == NULL) {
        return NULL;
    }
    w->mode = mode;
    w->c = c;
    for (unsigned i = 0; i < WRITER_STRIPES; i++) {
        pthread_mutex_init(&w->stripes[i].lock, NULL);
        pthread_cond_init(&w->stripes[i].freed, NULL);
    }
    pthread_mutex_init(&w->lock, NULL);
    cond_init_mono(&w->work);
    cond_init_mono(&w->room);
    cond_init_mono(&w->drained);
    return w;
}

/* Free a writer (from writer_new) whose flusher is not running. */
static void
writer_free(struct writer *w)
{
    free(w->buckets);
    free(w->batch);
    free(w->writes);
    free(w->results);
    for (unsigned i = 0; i < WRITER_STRIPES; i++) {
        pthread_cond_destroy(&w->stripes[i].freed);
        pthread_mutex_destroy(&w->stripes[i].lock);
    }
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->room);
    pthread_cond_destroy(&w->drained);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* Install w as the cache's writer unless one is there already. */
static bool
writer_attach(struct corral *c, struct writer *w)
{
    struct writer *none = NULL;
    return atomic_compare_exchange_strong(&c->writer, &none, w);
}

CORRAL_API corral_status_t
corral_use_write_through(corral_t *c, corral_writer_fn fn, void *ud)
{
    struct writer *w;

    assert(c != NULL);
    if (fn == NULL || atomic_load(&c->writer) != NULL) {
        return CORRAL_EINVAL;
    }
    w = writer_new(c, MODE_THROUGH);
    if (w == NULL) {
        return CORRAL_ENOMEM;
    }
    w->through = fn;
    w->ud = ud;
    if (!writer_attach(c, w)) {
        writer_free(w);
        return CORRAL_EINVAL;
    }
    return CORRAL_OK;
}

/* ---------------------------------------------------------------------- */
/* Write-behind queue                                                     */

static struct wb_entry **
wb_bucket(struct writer *w, uint64_t h)
{
    return &w->buckets[h % w->nbuckets];
}

static struct wb_entry *
wb_find(struct writer *w, uint64_t h, const void *key, size_t nkey)
{
    for (struct wb_entry *e = *wb_bucket(w, h); e != NULL; e = e->hnext) {
        if (e->h == h && e->nkey == nkey && memcmp(e->key, key, nkey) == 0) {
            return e;
        }
    }
    return NULL;
}

static void
wb_map_remove(struct writer *w, struct wb_entry *e)
{
    struct wb_entry **pp = wb_bucket(w, e->h);
    while (*pp != e) {
        pp = &(*pp)->hnext;
    }
    *pp = e->hnext;
    e->in_map = false;
}

static void
wb_map_add(struct writer *w, struct wb_entry *e)
{
    e->hnext = *wb_bucket(w, e->h);
    *wb_bucket(w, e->h) = e;
    e->in_map = true;
}

static void
wb_fifo_push(struct writer *w, struct wb_entry *e)
{
    e->qnext = NULL;
    if (w->tail != NULL) {
        w->tail->qnext = e;
    } else {
        w->head = e;
    }
    w->tail = e;
    w->queued++;
}

static void
wb_free(struct wb_entry *e)
{
    free(e->value);
    free(e);
}

static void
wb_set_gauge(struct writer *w)
{
    stat_set(&w->c->shards[0].stats, ST_write_queue, w->count);
}

/* Fill an entry's write from wr (the value copied). */
static bool
wb_fill(struct wb_entry *e, const corral_write_t *wr)
{
    char *v = NULL;
    if (wr->op == CORRAL_WRITE_SET) {
        v = malloc(wr->nvalue ? wr->nvalue : 1);
        if (v == NULL) {
            return false;
        }
        if (wr->nvalue > 0) {
            memcpy(v, wr->value, wr->nvalue);
        }
    }
    free(e->value);
    e->value = v;
    e->nvalue = wr->op == CORRAL_WRITE_SET ? wr->nvalue : 0;
    e->op = wr->op;
    e->flags = wr->flags;
    e->expires = wr->expires;
    e->seq = wr->seq;
    return true;
}

static void *wb_main(void *arg);

CORRAL_API corral_status_t
corral_use_write_behind(corral_t *c, corral_batch_writer_fn fn, void *ud,
                        const corral_wb_opts_t *opts)
{
    struct writer *w;

    assert(c != NULL);
    if (fn == NULL || atomic_load(&c->writer) != NULL) {
        return CORRAL_EINVAL;
    }
    w = writer_new(c, MODE_BEHIND);
    if (w == NULL) {
        return CORRAL_ENOMEM;
    }
    w->behind = fn;
    w->ud = ud;
    if (opts != NULL) {
        w->o = *opts;
    }
    if (w->o.queue_max == 0) {
        w->o.queue_max = 65536;
    }
    if (w->o.batch_max == 0) {
        w->o.batch_max = 128;
    }
    if (w->o.delay_ms <= 0) {
        w->o.delay_ms = 50;
    }
    if (w->o.retry_min_ms <= 0) {
        w->o.retry_min_ms = 10;
    }
    if (w->o.retry_max_ms < w->o.retry_min_ms) {
        w->o.retry_max_ms = w->o.retry_min_ms > 5000 ? w->o.retry_min_ms
                                                     : 5000;
    }
    w->nbuckets = 1024;
    while (w->nbuckets < w->o.queue_max) {
        w->nbuckets *= 2;
    }
    w->buckets = writer_calloc(w->nbuckets, sizeof(*w->buckets));
    /* the flusher's batch arrays, allocated here so that it cannot fail */
    w->batch = writer_calloc(w->o.batch_max, sizeof(*w->batch));
    w->writes = writer_calloc(w->o.batch_max, sizeof(*w->writes));
    w->results = writer_calloc(w->o.batch_max, sizeof(*w->results));
    w->started = true; /* before the thread exists: it reads nearby */
    if (w->buckets == NULL || w->batch == NULL || w->writes == NULL ||
        w->results == NULL ||
        pthread_create(&w->thread, NULL, wb_main, w) != 0) {
        writer_free(w);
        return CORRAL_ENOMEM;
    }
    if (!writer_attach(c, w)) {
        /* raced with another registration: stop our thread */
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->work);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        writer_free(w);
        return CORRAL_EINVAL;
    }
    return CORRAL_OK;
}

/* Queue a write (w->lock held).  May wait for room. */
static corral_status_t
wb_enqueue(struct writer *w, uint64_t h, const corral_write_t *wr)
{
    struct wb_entry *e = wb_find(w, h, wr->key, wr->nkey);
    struct wb_entry *slot;

    if (e != NULL && !e->inflight) {
        slot = e; /* coalesce with the queued write */
        COUNT(&w->c->shards[0], write_coalesced);
        return wb_fill(slot, wr) ? CORRAL_OK : CORRAL_ENOMEM;
    }
    if (e != NULL && e->newer != NULL) {
        COUNT(&w->c->shards[0], write_coalesced);
        return wb_fill(e->newer, wr) ? CORRAL_OK : CORRAL_ENOMEM;
    }
    while (w->count >= w->o.queue_max) {
        if (w->o.refuse_when_full) {
            return CORRAL_EBUSY;
        }
        pthread_cond_signal(&w->work);
        pthread_cond_wait(&w->room, &w->lock);
        e = wb_find(w, h, wr->key, wr->nkey); /* the map may have changed */
        if (e != NULL && (!e->inflight || e->newer != NULL)) {
            return wb_enqueue(w, h, wr);
        }
    }
    slot = calloc(1, sizeof(*slot));
    if (slot == NULL || !wb_fill(slot, wr)) {
        free(slot);
        return CORRAL_ENOMEM;
    }
    slot->h = h;
    slot->nkey = (uint8_t)wr->nkey;
    memcpy(slot->key, wr->key, wr->nkey);
    slot->due_ms = mono_ms() + (uint64_t)w->o.delay_ms;
    w->count++;
    if (e != NULL) {
        e->newer = slot; /* queued when e comes back */
    } else {
        wb_map_add(w, slot);
        wb_fifo_push(w, slot);
        if (w->queued == 1 || w->queued >= w->o.batch_max) {
            /* an idle flusher sleeps without a deadline; a full batch
             * need not wait for one */
            pthread_cond_signal(&w->work);
        }
    }
    wb_set_gauge(w);
    return CORRAL_OK;
}

/* Take up to batch_max due entries off the FIFO (lock held). */
static size_t
wb_take(struct writer *w, struct wb_entry **batch, uint64_t now,
        bool all_due)
{
    struct wb_entry **pp = &w->head;
    struct wb_entry *prev = NULL;
    size_t n = 0;

    while (*pp != NULL && n < w->o.batch_max) {
        struct wb_entry *e = *pp;
        if (e->due_ms <= now || (all_due && e->attempts == 0)) {
            *pp = e->qnext;
            if (w->tail == e) {
                w->tail = prev;
            }
            w->queued--;
            e->inflight = true;
            batch[n++] = e;
        } else {
            prev = e;
            pp = &e->qnext;
        }
    }
    return n;
}

/* When the flusher should look again: the earliest due entry. */
static uint64_t
wb_next_due(const struct writer *w)
{
    uint64_t due = UINT64_MAX;
    for (const struct wb_entry *e = w->head; e != NULL; e = e->qnext) {
        if (e->due_ms < due) {
            due = e->due_ms;
        }
    }
    return due;
}

static uint64_t
wb_backoff(const struct writer *w, uint32_t attempts)
{
    uint64_t d = (uint64_t)w->o.retry_min_ms;
    while (--attempts > 0 && d < (uint64_t)w->o.retry_max_ms) {
        d *= 2;
    }
    if (d > (uint64_t)w->o.retry_max_ms) {
        d = (uint64_t)w->o.retry_max_ms;
    }
    return d / 2 + (uint64_t)rand() % (d - d / 2 + 1);
}

/* Settle a batch after the writer returned (lock held). */
static void
wb_settle(struct writer *w, struct wb_entry **batch, const int *results,
          size_t n)
{
    uint64_t now = mono_ms();
    for (size_t i = 0; i < n; i++) {
        struct wb_entry *e = batch[i];
        e->inflight = false;
        if (results[i] != 0) {
            COUNT(&w->c->shards[0], write_errors);
        }
        if (results[i] != 0 && e->newer == NULL) {
            COUNT(&w->c->shards[0], write_retries);
            e->attempts++;
            e->due_ms = now + wb_backoff(w, e->attempts);
            wb_fifo_push(w, e);
            continue;
        }
        /* written, or superseded by a newer write of the key */
        wb_map_remove(w, e);
        w->count--;
        if (e->newer != NULL) {
            struct wb_entry *nw = e->newer;
            if (nw->due_ms < now) {
                nw->due_ms = now;
            }
            wb_map_add(w, nw);
            wb_fifo_push(w, nw);
        }
        wb_free(e);
    }
    wb_set_gauge(w);
    pthread_cond_broadcast(&w->room);
    if (w->count == 0 || w->flush_waiters > 0) {
        pthread_cond_broadcast(&w->drained);
    }
}

static void *
wb_main(void *arg)
{
    struct writer *w = arg;
    struct wb_entry **batch = w->batch;
    corral_write_t *writes = w->writes;
    int *results = w->results;

    pthread_mutex_lock(&w->lock);
    while (batch != NULL && writes != NULL && results != NULL) {
        uint64_t now = mono_ms();
        /* flush requests and shutdown do not wait for the batching delay
         * (retries still honour their backoff) */
        bool hurry = w->stop || w->flush_waiters > 0;
        size_t n = wb_take(w, batch, now, hurry);

        if (n == 0) {
            struct timespec ts;
            uint64_t due;
            if (w->stop && w->count == 0) {
                break;
            }
            due = wb_next_due(w);
            if (due == UINT64_MAX) {
                pthread_cond_wait(&w->work, &w->lock);
            } else {
                deadline_in(&ts, due > now ? due - now : 0);
                pthread_cond_timedwait(&w->work, &w->lock, &ts);
            }
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            struct wb_entry *e = batch[i];
            writes[i].op = e->op;
            writes[i].key = e->key;
            writes[i].nkey = e->nkey;
            writes[i].value = e->value;
            writes[i].nvalue = e->nvalue;
            writes[i].flags = e->flags;
            writes[i].expires = e->expires;
            writes[i].seq = e->seq;
            results[i] = 0;
        }
        pthread_mutex_unlock(&w->lock);
        w->behind(writes, n, results, w->ud);
        pthread_mutex_lock(&w->lock);
        wb_settle(w, batch, results, n);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* put / remove / flush                                                   */

/* Take the key lock of hash h into rec; CORRAL_EBUSY if this thread
 * holds it already. */
static corral_status_t
key_lock(struct writer *w, uint64_t h, struct key_lock *rec)
{
    struct stripe *sp = &w->stripes[h % WRITER_STRIPES];
    pthread_t self = pthread_self();
    struct key_lock *k;

    pthread_mutex_lock(&sp->lock);
    for (;;) {
        for (k = sp->held; k != NULL && k->h != h; k = k->next) {
        }
        if (k == NULL) {
            break;
        }
        if (pthread_equal(k->owner, self)) {
            pthread_mutex_unlock(&sp->lock);
            return CORRAL_EBUSY;
        }
        sp->waiters++;
        pthread_cond_wait(&sp->freed, &sp->lock);
        sp->waiters--;
    }
    rec->h = h;
    rec->owner = self;
    rec->next = sp->held;
    sp->held = rec;
    pthread_mutex_unlock(&sp->lock);
    return CORRAL_OK;
}

static void
key_unlock(struct writer *w, struct key_lock *rec)
{
    struct stripe *sp = &w->stripes[rec->h % WRITER_STRIPES];
    struct key_lock **pp;

    pthread_mutex_lock(&sp->lock);
    for (pp = &sp->held; *pp != rec; pp = &(*pp)->next) {
    }
    *pp = rec->next;
    if (sp->waiters > 0) {
        pthread_cond_broadcast(&sp->freed);
    }
    pthread_mutex_unlock(&sp->lock);
}

/* Write the backend (or queue the write), then change the cache, under
 * the key lock.  wr gets its sequence number here. */
static corral_status_t
write_locked(struct corral *c, struct writer *w, uint64_t h,
             corral_write_t *wr, int64_t exptime, int *out_error)
{
    corral_status_t st;

    wr->seq = atomic_fetch_add(&c->write_seq, 1) + 1;
    if (w->mode == MODE_THROUGH) {
        int err = w->through(wr, w->ud);
        if (err != 0) {
            COUNT(cache_shard(c, h), write_errors);
            if (out_error != NULL) {
                *out_error = err;
            }
            return CORRAL_ELOAD;
        }
    } else {
        pthread_mutex_lock(&w->lock);
        st = wb_enqueue(w, h, wr);
        pthread_mutex_unlock(&w->lock);
        if (st != CORRAL_OK) {
            return st;
        }
    }
    if (wr->op == CORRAL_WRITE_SET) {
        return corral_set(c, wr->key, wr->nkey, wr->value, wr->nvalue,
                          wr->flags, exptime);
    }
    st = corral_delete(c, wr->key, wr->nkey);
    return st == CORRAL_ENOTFOUND ? CORRAL_OK : st;
}

static corral_status_t
write_one(corral_t *c, corral_write_op_t op, const void *key, size_t nkey,
          const void *value, size_t nvalue, uint32_t flags, int64_t exptime,
          int *out_error)
{
    struct writer *w = atomic_load(&c->writer);
    struct key_lock rec;
    corral_write_t wr;
    corral_status_t st;
    uint64_t h;

    if (out_error != NULL) {
        *out_error = 0;
    }
    if (w == NULL || key == NULL || nkey == 0 || nkey > CORRAL_KEY_MAX ||
        (value == NULL && nvalue > 0)) {
        return CORRAL_EINVAL;
    }
    /* A value the cache would refuse never reaches the backend. */
    if (op == CORRAL_WRITE_SET &&
        item_size_ext(nkey, nvalue, flags, 0, 0) > c->cfg.max_item_size) {
        return CORRAL_ETOOBIG;
    }
    memset(&wr, 0, sizeof(wr));
    wr.op = op;
    wr.key = key;
    wr.nkey = nkey;
    wr.value = value;
    wr.nvalue = nvalue;
    wr.flags = flags;
    wr.expires = op == CORRAL_WRITE_SET ? exptime_abs(exptime, cache_now(c))
                                        : 0;
    h = hash_key(c->seed, key, nkey);
    COUNT(cache_shard(c, h), writes);

    if (key_lock(w, h, &rec) != CORRAL_OK) {
        return CORRAL_EBUSY;
    }
    cache_hold_delivery(true);
    st = write_locked(c, w, h, &wr, exptime, out_error);
    key_unlock(w, &rec);
    cache_hold_delivery(false);
    cache_deliver(c);
    return st;
}

CORRAL_API corral_status_t
corral_put(corral_t *c, const void *key, size_t nkey, const void *value,
           size_t nvalue, uint32_t flags, int64_t exptime, int *out_error)
{
    assert(c != NULL);
    return write_one(c, CORRAL_WRITE_SET, key, nkey, value, nvalue, flags,
                     exptime, out_error);
}

CORRAL_API corral_status_t
corral_remove(corral_t *c, const void *key, size_t nkey, int *out_error)
{
    assert(c != NULL);
    return write_one(c, CORRAL_WRITE_DELETE, key, nkey, NULL, 0, 0, 0,
                     out_error);
}

CORRAL_API corral_status_t
corral_write_flush(corral_t *c, int64_t timeout_ms, size_t *out_pending)
{
    struct writer *w;
    struct timespec ts;
    corral_status_t st = CORRAL_OK;

    assert(c != NULL);
    w = atomic_load(&c->writer);
    if (out_pending != NULL) {
        *out_pending = 0;
    }
    if (w == NULL || w->mode != MODE_BEHIND) {
        return CORRAL_OK;
    }
    if (timeout_ms >= 0) {
        deadline_in(&ts, (uint64_t)timeout_ms);
    }
    pthread_mutex_lock(&w->lock);
    w->flush_waiters++;
    pthread_cond_signal(&w->work);
    while (w->count > 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&w->drained, &w->lock);
        } else if (pthread_cond_timedwait(&w->drained, &w->lock, &ts) ==
                   ETIMEDOUT) {
            st = w->count > 0 ? CORRAL_ETIMEDOUT : CORRAL_OK;
            break;
        }
    }
    w->flush_waiters--;
    if (out_pending != NULL) {
        *out_pending = w->count;
    }
    pthread_mutex_unlock(&w->lock);
    return st;
}

/* Flush everything and stop the flusher (destroy). */
void
writer_close(struct corral *c)
{
    struct writer *w = atomic_load(&c->writer);

    if (w == NULL) {
        return;
    }
    if (w->mode == MODE_BEHIND && w->started) {
        corral_write_flush(c, -1, NULL);
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->work);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    }
    for (size_t i = 0; i < w->nbuckets; i++) {
        struct wb_entry *e = w->buckets[i];
        while (e != NULL) {
            struct wb_entry *next = e->hnext;
            if (e->newer != NULL) {
                wb_free(e->newer);
            }
            wb_free(e);
            e = next;
        }
    }
    atomic_store(&c->writer, NULL);
    writer_free(w);
}
