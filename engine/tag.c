/*
 * tag.c - the tag registry; see tag.h for the design.
 *
 * Record lifetime: refs counts the items that hold the record.  A new item
 * takes its reference under the stripe lock (tag_acquire), so a record
 * found in the table is never freed under the finder.  The last release
 * takes the stripe lock, checks that no acquire revived the record in the
 * meantime, unlinks and frees it.  Records of items that readers still
 * hold when the cache is destroyed are detached (owner NULL) and freed by
 * their last release alone.
 */
#include "tag.h"

#include <string.h>

#include "common.h"
#include "hash.h"

#define STRIPE_MIN_BUCKETS 16u

bool
tags_init(struct tags *t, struct mem *m, uint64_t seed)
{
    memset(t, 0, sizeof(*t));
    atomic_init(&t->epoch, 0);
    atomic_init(&t->records, 0);
    t->seed = seed ^ 0x7461677300000000u;
    t->mem = m;
    for (unsigned i = 0; i < TAG_STRIPES; i++) {
        if (pthread_mutex_init(&t->stripes[i].lock, NULL) != 0) {
            while (i-- > 0) {
                pthread_mutex_destroy(&t->stripes[i].lock);
            }
            return false;
        }
    }
    return true;
}

void
tags_deinit(struct tags *t)
{
    /* The cache's destroy has freed every item but those that readers
     * still hold (pin.h); their records outlive the registry, detached:
     * the last release frees such a record without looking it up. */
    for (unsigned i = 0; i < TAG_STRIPES; i++) {
        struct tag_stripe *s = &t->stripes[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            for (struct tag_rec *r = s->buckets[b]; r != NULL; r = r->hnext) {
                r->owner = NULL;
            }
        }
        mem_free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
}

static struct tag_stripe *
stripe_of(struct tags *t, uint64_t h)
{
    return &t->stripes[h % TAG_STRIPES];
}

static struct tag_rec **
bucket_of(struct tag_stripe *s, uint64_t h)
{
    return &s->buckets[(h / TAG_STRIPES) % s->nbuckets];
}

static struct tag_rec *
stripe_find(struct tag_stripe *s, uint64_t h, const char *name, size_t len)
{
    if (s->nbuckets == 0) {
        return NULL;
    }
    for (struct tag_rec *r = *bucket_of(s, h); r != NULL; r = r->hnext) {
        if (r->hash == h && r->len == len && memcmp(r->name, name, len) == 0) {
            return r;
        }
    }
    return NULL;
}

/* Double the buckets when the chains average more than one record. */
static void
stripe_grow(struct tags *t, struct tag_stripe *s)
{
    size_t n = s->nbuckets ? s->nbuckets * 2 : STRIPE_MIN_BUCKETS;
    struct tag_rec **b = mem_zalloc(t->mem, n * sizeof(*b), NULL);
    struct tag_rec **old = s->buckets;
    size_t oldn = s->nbuckets;

    if (b == NULL) {
        return; /* keep the longer chains */
    }
    s->buckets = b;
    s->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        struct tag_rec *r = old[i];
        while (r != NULL) {
            struct tag_rec *next = r->hnext;
            struct tag_rec **dst = bucket_of(s, r->hash);
            r->hnext = *dst;
            *dst = r;
            r = next;
        }
    }
    mem_free(old);
}

/* The remembered invalidation epoch of a tag without a record. */
static uint64_t *
forgotten_of(struct tag_stripe *s, uint64_t h)
{
    return &s->forgotten[(h >> 32) % TAG_FORGOTTEN];
}

struct tag_rec *
tag_acquire(struct tags *t, const char *name, size_t len)
{
    uint64_t h = hash_key(t->seed, name, len);
    struct tag_stripe *s = stripe_of(t, h);
    struct tag_rec *r;

    pthread_mutex_lock(&s->lock);
    r = stripe_find(s, h, name, len);
    if (r != NULL) {
        tag_ref(r);
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    if (s->count >= s->nbuckets) {
        stripe_grow(t, s);
    }
    if (s->nbuckets == 0 ||
        (r = mem_alloc(t->mem, sizeof(*r) + len + 1, NULL)) == NULL) {
        pthread_mutex_unlock(&s->lock);
        return NULL;
    }
    atomic_init(&r->inval, *forgotten_of(s, h));
    atomic_init(&r->refs, 1);
    r->len = (uint32_t)len;
    r->hash = h;
    r->owner = t;
    memcpy(r->name, name, len);
    r->name[len] = '\0';
    r->hnext = *bucket_of(s, h);
    *bucket_of(s, h) = r;
    s->count++;
    atomic_fetch_add_explicit(&t->records, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->lock);
    return r;
}

void
tag_release(struct tag_rec *r)
{
    struct tags *t = r->owner;
    struct tag_stripe *s;
    struct tag_rec **pp;
    uint32_t old = atomic_load_explicit(&r->refs, memory_order_relaxed);

    /* Fast path: not the last reference. */
    while (old > 1) {
        if (atomic_compare_exchange_weak_explicit(&r->refs, &old, old - 1,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            return;
        }
    }
    if (t == NULL) { /* detached: its cache is gone */
        if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) ==
            1) {
            mem_free(r);
        }
        return;
    }
    s = stripe_of(t, r->hash);
    pthread_mutex_lock(&s->lock);
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1) {
        pthread_mutex_unlock(&s->lock); /* revived by an acquire */
        return;
    }
    for (pp = bucket_of(s, r->hash); *pp != r; pp = &(*pp)->hnext) {
        CR_ASSERT(*pp != NULL);
    }
    *pp = r->hnext;
    s->count--;
    {
        uint64_t *f = forgotten_of(s, r->hash);
        uint64_t inval = atomic_load_explicit(&r->inval,
                                              memory_order_relaxed);
        if (inval > *f) {
            *f = inval;
        }
    }
    atomic_fetch_sub_explicit(&t->records, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->lock);
    mem_free(r);
}

uint64_t
tag_invalidate(struct tags *t, const char *name, size_t len)
{
    uint64_t h = hash_key(t->seed, name, len);
    struct tag_stripe *s = stripe_of(t, h);
    struct tag_rec *r;
    uint64_t e;

    pthread_mutex_lock(&s->lock);
    e = atomic_fetch_add_explicit(&t->epoch, 1, memory_order_acq_rel) + 1;
    r = stripe_find(s, h, name, len);
    if (r != NULL) {
        atomic_store_explicit(&r->inval, e, memory_order_release);
    } else {
        *forgotten_of(s, h) = e;
    }
    pthread_mutex_unlock(&s->lock);
    return e;
}
