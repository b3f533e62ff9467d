/*
 * events.h - invalidation events: a bounded ring and its subscribers.
 *
 * Producers (deletes, overwrites, tag and prefix invalidations, flushes)
 * append to the ring under ev->lock, while they still hold the shard lock
 * of the change, so sequence numbers follow the order of the changes: one
 * counter per cache, +1 per event, no gaps.  Lock order: shard lock, then
 * ev->lock; nothing takes a shard lock while holding ev->lock.
 *
 * Delivery happens after the shard lock is released (events_dispatch): the
 * first thread to find the ring undelivered becomes the dispatcher and
 * calls every subscriber's callback, in sequence order, with no engine lock
 * held, until nothing is left; other producers just append and return.  So
 * callbacks run on a thread that made a change, one at a time per cache,
 * and may call back into the cache.
 *
 * The ring has a fixed number of slots.  A subscriber whose next event has
 * been overwritten before it was delivered (it is slow, or subscribed with
 * an old `since`) first receives a CORRAL_EVENT_GAP event and then
 * continues from the oldest event still held: memory stays bounded and a
 * gap is never silent.
 */
#ifndef CORRAL_EVENTS_H
#define CORRAL_EVENTS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "corral.h"
#include "mem.h"

/* What an eviction event says about the item (CORRAL_EVENT_EVICT). */
struct ev_evict {
    int64_t ttl;                /* remaining seconds; -1: never expires */
    int64_t last_access;        /* seconds since */
    uint64_t nvalue;
    uint32_t flags;
    bool fetched;
};

struct ev_slot {
    uint64_t seq;
    uint64_t cas;
    uint64_t origin;
    int64_t flush_time;
    struct ev_evict evict;
    corral_event_type_t type;
    uint16_t len;
    char name[CORRAL_KEY_MAX + 1];
};

struct corral_sub {
    struct events *owner;       /* the stream it reads */
    corral_event_fn fn;
    void *ud;
    uint64_t next;              /* next sequence number to deliver */
    bool dead;                  /* unsubscribed: skip it */
    bool zombie;                /* unsubscribed from a callback: the
                                 * dispatcher frees it after the round */
    struct corral_sub *next_sub;
};

struct events {
    pthread_mutex_t lock;       /* guards everything below */
    pthread_cond_t idle;        /* signalled when a dispatch round ends */
    struct ev_slot *ring;       /* cap slots, allocated on first subscribe */
    size_t cap;
    uint64_t next_seq;          /* sequence of the next event */
    struct corral_sub *subs;
    bool dispatching;
    pthread_t dispatcher;
    _Atomic unsigned nsubs;     /* read without the lock by producers */
    struct mem *mem;
};

bool events_init(struct events *ev, struct mem *m, size_t cap);
void events_deinit(struct events *ev);

/* True when someone listens: producers skip all event work otherwise. */
static inline bool
events_wanted(const struct events *ev)
{
    return atomic_load_explicit(&((struct events *)ev)->nsubs,
                                memory_order_relaxed) != 0;
}

/* Append an event (name may be NULL with len 0). */
void events_push(struct events *ev, corral_event_type_t type,
                 const void *name, size_t len, uint64_t cas, uint64_t origin,
                 int64_t flush_time);

/* Append a CORRAL_EVENT_EVICT event for key @key. */
void events_push_evict(struct events *ev, const void *key, size_t len,
                       uint64_t cas, const struct ev_evict *info);

/* Deliver pending events unless another thread is doing it.  Call with no
 * engine lock held. */
void events_dispatch(struct events *ev);

corral_status_t events_subscribe(struct events *ev, corral_event_fn fn,
                                 void *ud, uint64_t since,
                                 corral_sub_t **out);
/* End @sub's subscription to the stream it reads (sub->owner). */
void events_unsubscribe(corral_sub_t *sub);

/* The sequence number the next event will get. */
uint64_t events_next_seq(struct events *ev);

#endif /* CORRAL_EVENTS_H */
