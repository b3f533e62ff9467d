/*
 * events.c - the event ring and its dispatcher; see events.h.
 *
 * Slot i of the ring holds the event with sequence number s where
 * s % cap == i; the ring holds the events [next_seq - cap, next_seq).
 *
 * Subscriber lifetime: only the thread that unsubscribes frees a
 * subscriber, after waiting for the dispatch round in progress to end,
 * except when it unsubscribes from inside a callback (it is the
 * dispatcher): then the subscriber is marked a zombie and the dispatcher
 * frees it when the round ends.
 */
#include "events.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

bool
events_init(struct events *ev, struct mem *m, size_t cap)
{
    memset(ev, 0, sizeof(*ev));
    ev->cap = cap;
    ev->next_seq = 1;
    ev->mem = m;
    atomic_init(&ev->nsubs, 0);
    if (pthread_mutex_init(&ev->lock, NULL) != 0) {
        return false;
    }
    if (pthread_cond_init(&ev->idle, NULL) != 0) {
        pthread_mutex_destroy(&ev->lock);
        return false;
    }
    return true;
}

void
events_deinit(struct events *ev)
{
    struct corral_sub *s = ev->subs;
    while (s != NULL) {
        struct corral_sub *next = s->next_sub;
        free(s);
        s = next;
    }
    mem_free(ev->ring);
    pthread_cond_destroy(&ev->idle);
    pthread_mutex_destroy(&ev->lock);
}

/* Claim the next slot and fill what every event has; NULL when nobody
 * ever subscribed.  Called with ev->lock held, which the caller keeps
 * until the slot is complete. */
static struct ev_slot *
slot_next(struct events *ev, corral_event_type_t type, const void *name,
          size_t len, uint64_t cas)
{
    struct ev_slot *slot;

    if (ev->ring == NULL) {
        return NULL;
    }
    slot = &ev->ring[ev->next_seq % ev->cap];
    slot->seq = ev->next_seq++;
    slot->type = type;
    slot->cas = cas;
    slot->origin = 0;
    slot->flush_time = 0;
    memset(&slot->evict, 0, sizeof(slot->evict));
    if (len > CORRAL_KEY_MAX) {
        len = CORRAL_KEY_MAX;
    }
    slot->len = (uint16_t)len;
    if (len > 0) {
        memcpy(slot->name, name, len);
    }
    slot->name[len] = '\0';
    return slot;
}

void
events_push(struct events *ev, corral_event_type_t type, const void *name,
            size_t len, uint64_t cas, uint64_t origin, int64_t flush_time)
{
    struct ev_slot *slot;

    pthread_mutex_lock(&ev->lock);
    slot = slot_next(ev, type, name, len, cas);
    if (slot != NULL) {
        slot->origin = origin;
        slot->flush_time = flush_time;
    }
    pthread_mutex_unlock(&ev->lock);
}

void
events_push_evict(struct events *ev, const void *key, size_t len,
                  uint64_t cas, const struct ev_evict *info)
{
    struct ev_slot *slot;

    pthread_mutex_lock(&ev->lock);
    slot = slot_next(ev, CORRAL_EVENT_EVICT, key, len, cas);
    if (slot != NULL) {
        slot->evict = *info;
    }
    pthread_mutex_unlock(&ev->lock);
}

/* Fill *e for the subscriber's next event, advancing it.  Lock held. */
static void
next_event(struct events *ev, struct corral_sub *s, corral_event_t *e,
           char *name)
{
    uint64_t oldest = ev->next_seq > ev->cap ? ev->next_seq - ev->cap : 1;
    const struct ev_slot *slot;

    memset(e, 0, sizeof(*e));
    if (s->next < oldest) {
        e->seq = s->next;
        e->type = CORRAL_EVENT_GAP;
        e->name = name;
        name[0] = '\0';
        s->next = oldest;
        return;
    }
    slot = &ev->ring[s->next % ev->cap];
    CR_ASSERT(slot->seq == s->next);
    e->seq = slot->seq;
    e->type = slot->type;
    e->cas = slot->cas;
    e->origin = slot->origin;
    e->flush_time = slot->flush_time;
    if (slot->type == CORRAL_EVENT_EVICT) {
        e->ttl = slot->evict.ttl;
        e->last_access = slot->evict.last_access;
        e->fetched = slot->evict.fetched;
        e->nvalue = (size_t)slot->evict.nvalue;
        e->flags = slot->evict.flags;
    }
    e->len = slot->len;
    memcpy(name, slot->name, (size_t)slot->len + 1);
    e->name = name;
    s->next++;
}

void
events_dispatch(struct events *ev)
{
    char name[CORRAL_KEY_MAX + 1];
    bool delivered;

    pthread_mutex_lock(&ev->lock);
    if (ev->dispatching || ev->ring == NULL) {
        pthread_mutex_unlock(&ev->lock);
        return;
    }
    ev->dispatching = true;
    ev->dispatcher = pthread_self();
    do {
        delivered = false;
        for (struct corral_sub *s = ev->subs; s != NULL; s = s->next_sub) {
            while (!s->dead && s->next < ev->next_seq) {
                corral_event_t e;
                next_event(ev, s, &e, name);
                pthread_mutex_unlock(&ev->lock);
                s->fn(&e, s->ud);
                pthread_mutex_lock(&ev->lock);
                delivered = true;
            }
        }
    } while (delivered);
    for (struct corral_sub **pp = &ev->subs; *pp != NULL;) {
        struct corral_sub *s = *pp;
        if (s->zombie) {
            *pp = s->next_sub;
            free(s);
        } else {
            pp = &s->next_sub;
        }
    }
    ev->dispatching = false;
    pthread_cond_broadcast(&ev->idle);
    pthread_mutex_unlock(&ev->lock);
}

corral_status_t
events_subscribe(struct events *ev, corral_event_fn fn, void *ud,
                 uint64_t since, corral_sub_t **out)
{
    struct corral_sub *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return CORRAL_ENOMEM;
    }
    pthread_mutex_lock(&ev->lock);
    if (ev->ring == NULL) {
        ev->ring = mem_zalloc(ev->mem, ev->cap * sizeof(*ev->ring), NULL);
        if (ev->ring == NULL) {
            pthread_mutex_unlock(&ev->lock);
            free(s);
            return CORRAL_ENOMEM;
        }
    }
    s->owner = ev;
    s->fn = fn;
    s->ud = ud;
    /* since == 0: from now on; otherwise replay from `since` (a gap event
     * first if it is no longer held). */
    s->next = since == 0 || since > ev->next_seq ? ev->next_seq : since;
    s->next_sub = ev->subs;
    ev->subs = s;
    atomic_fetch_add_explicit(&ev->nsubs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&ev->lock);
    *out = s;
    return CORRAL_OK;
}

void
events_unsubscribe(corral_sub_t *sub)
{
    struct events *ev = sub->owner;

    pthread_mutex_lock(&ev->lock);
    if (!sub->dead) {
        sub->dead = true;
        atomic_fetch_sub_explicit(&ev->nsubs, 1, memory_order_relaxed);
    }
    if (ev->dispatching && pthread_equal(ev->dispatcher, pthread_self())) {
        sub->zombie = true;
        pthread_mutex_unlock(&ev->lock);
        return;
    }
    while (ev->dispatching) {
        pthread_cond_wait(&ev->idle, &ev->lock);
    }
    for (struct corral_sub **pp = &ev->subs; *pp != NULL;
         pp = &(*pp)->next_sub) {
        if (*pp == sub) {
            *pp = sub->next_sub;
            break;
        }
    }
    pthread_mutex_unlock(&ev->lock);
    free(sub);
}

uint64_t
events_next_seq(struct events *ev)
{
    uint64_t n;
    pthread_mutex_lock(&ev->lock);
    n = ev->next_seq;
    pthread_mutex_unlock(&ev->lock);
    return n;
}
