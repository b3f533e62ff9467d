/*
 * fetch.h - read-through loading: single flight, leases, backoff, the
 * circuit breaker and the background refresh threads.
 *
 * Each shard keeps a small table of key records (struct keyrec), under
 * the shard lock:
 *
 *   LOADING  a load of the key is running; `cur` is the attempt that
 *            callers wait on.  The record is the load's lease: writes and
 *            deletes of the key set `broken`; with the shard's prefix-rule
 *            sequence, the cache's flush generation and the tag epoch read
 *            when the load began, the leader can tell at store time
 *            whether anything invalidated the key meanwhile.
 *   FAILED   the last load failed: until error_until, fetches answer its
 *            error; no new load starts before retry_at (backoff).
 *
 * An attempt (struct attempt) is what waiters hold: a reference count, the
 * result, and a condition variable on the cache's wait lock.  The leader
 * publishes the result under the shard lock, then marks the attempt done
 * under the wait lock.  Lock order: shard lock, then wait lock.
 */
#ifndef CORRAL_FETCH_H
#define CORRAL_FETCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "corral.h"
#include "item.h"

/* Failure records remembered per shard at most (loads are not limited). */
#define KEYREC_FAILED_MAX 4096u

struct attempt {
    _Atomic unsigned refs;
    bool done;                 /* under the cache's wait lock */
    corral_status_t status;    /* OK, ENOTFOUND (absent), ELOAD, ENOMEM */
    int error;                 /* the loader's code with ELOAD */
    item_t *item;              /* result (one reference), or NULL */
    pthread_cond_t cond;
};

enum keyrec_state { KEYREC_LOADING = 1, KEYREC_FAILED };

struct keyrec {
    struct keyrec *hnext;
    uint64_t h;
    enum keyrec_state state;
    struct attempt *cur;       /* LOADING: the attempt being run */
    bool broken;               /* LOADING: the key changed since it began */
    uint64_t inval_seq;        /* shard prefix-rule sequence at start */
    uint64_t flush_gen;        /* cache flush generation at start */
    uint64_t tag_epoch;        /* tag epoch at start */
    uint32_t failures;         /* consecutive failed loads */
    uint64_t retry_at_ms;      /* FAILED: no load before this */
    uint64_t error_until_ms;   /* FAILED: answer last_error until this */
    int last_error;
    uint32_t first_fail_s;     /* first failure since the last success */
    uint8_t nkey;
    char key[];
};

struct keyrecs {
    struct keyrec **buckets;
    size_t nbuckets;
    size_t count;
    size_t failed;
};

/* The cache-wide loader circuit breaker. */
struct breaker {
    _Atomic unsigned failures;       /* consecutive, any key */
    _Atomic uint64_t open_until_ms;  /* 0 = closed */
    _Atomic int trial;               /* half-open: a trial load is out */
};

struct refresh_job;

struct refresh_pool {
    pthread_mutex_t lock;      /* guards everything below */
    pthread_cond_t cond;
    struct refresh_job *head, *tail;
    pthread_t *threads;
    unsigned nthreads;
    bool started;
    bool stop;
};

struct fetch_state {
    pthread_mutex_t wait_lock; /* attempts' done flags and conditions */
    struct breaker breaker;
    _Atomic uint64_t flush_gen;
    struct refresh_pool pool;
};

struct corral;
struct shard;

bool fetch_init(struct fetch_state *f);
/* Stop the refresh threads (running queued jobs first). */
void fetch_stop(struct corral *c);
void fetch_deinit(struct corral *c);
void keyrecs_deinit(struct keyrecs *t);

/* A write or delete of the key: break the lease of a load in flight.
 * Exclusive shard lock. */
void keyrecs_break(struct keyrecs *t, uint64_t h, const void *key,
                   size_t nkey);

/* A uniform double in (0, 1] from a per-thread xorshift64* generator
 * (XFetch's draws, backoff jitter). */
double rand_unit(void);

/* Record a flush for the leases. */
static inline void
fetch_flushed(struct fetch_state *f)
{
    atomic_fetch_add_explicit(&f->flush_gen, 1, memory_order_acq_rel);
}

#endif /* CORRAL_FETCH_H */
