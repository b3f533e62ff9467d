/*
 * tag.h - tags and prefix rules: invalidating many items in O(1) (tags) or
 * O(shards) (prefixes) for the caller, without visiting the items.
 *
 * Tags.  A cache-wide registry maps a tag name to a record.  An item
 * stored with tags holds pointers to their records and the value of the
 * cache's tag epoch when it was stored.  Invalidating a tag advances the
 * epoch and writes the new value into the record's `inval`; an item is
 * invalid when any of its records has inval > its stored epoch.  So an
 * item stored before the invalidation misses, one stored after it (which
 * read the advanced epoch) lives, and the reader pays one atomic load per
 * tag of the item.  The registry is split into stripes, each with a
 * mutex, by tag hash; records are reference-counted by the items that
 * hold them and freed with the last one.
 *
 * A tag without a record (none was made yet, or its last item went)
 * still has a past: a load that began before its invalidation may attach
 * the tag afterwards, stamped with the epoch of its start (leases,
 * fetch.c).  So each stripe remembers, in a small table by tag hash, the
 * latest invalidation epoch of the tags that had no record then and of
 * the records it freed, and a new record starts from its slot.  Tags
 * sharing a slot only make such loads miss more often (the value is not
 * cached); a store, which reads the epoch after taking its records, is
 * never affected.
 *
 *   item ext: | mask | flags? | ntags | epoch (8) | rec* x ntags |
 *                                                     |
 *   registry stripe: bucket -> rec { inval, refs, hnext, name } <-+
 *
 * Prefix rules (per shard, under the shard lock).  Invalidating a prefix
 * appends to every shard a rule (prefix, the shard's CAS at that moment);
 * an item is invalid when its key starts with the prefix and its CAS is
 * not newer.  Reads of a shard compare the key with its pending rules.  A
 * rule is retired once the shard's sweep has made a full pass over both
 * queues after it was added (every item it could match has then been
 * unlinked).  At most TAG_PREFIX_RULES_MAX rules wait per shard; past that
 * the oldest rules are applied at once by walking the shard's queues.
 */
#ifndef CORRAL_TAG_H
#define CORRAL_TAG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

#define TAG_STRIPES 16u
#define TAG_FORGOTTEN 256u          /* slots per stripe */
#define TAG_PREFIX_RULES_MAX 64u

struct tags;

struct tag_rec {
    _Atomic uint64_t inval;     /* epoch of the last invalidation; 0 never */
    _Atomic uint32_t refs;      /* items holding the record */
    uint32_t len;
    uint64_t hash;
    struct tag_rec *hnext;      /* stripe bucket chain */
    struct tags *owner;
    char name[];                /* len bytes, NUL-terminated */
};

struct tag_stripe {
    pthread_mutex_t lock;       /* guards everything here */
    struct tag_rec **buckets;
    size_t nbuckets;
    size_t count;
    uint64_t forgotten[TAG_FORGOTTEN]; /* inval of tags with no record */
} __attribute__((aligned(64)));

struct tags {
    _Atomic uint64_t epoch;     /* advances by one per tag invalidation */
    _Atomic uint64_t records;   /* live records, all stripes */
    uint64_t seed;
    struct mem *mem;
    struct tag_stripe stripes[TAG_STRIPES];
};

bool tags_init(struct tags *t, struct mem *m, uint64_t seed);
void tags_deinit(struct tags *t);

/* The current epoch, read when an item is stored. */
static inline uint64_t
tags_epoch(const struct tags *t)
{
    return atomic_load_explicit(&((struct tags *)t)->epoch,
                                memory_order_acquire);
}

/* Find or create the record for a tag and take a reference on it; NULL
 * on ENOMEM. */
struct tag_rec *tag_acquire(struct tags *t, const char *name, size_t len);

/* Add a reference to a record already held. */
static inline void
tag_ref(struct tag_rec *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

/* Drop a reference; the last one unlinks and frees the record. */
void tag_release(struct tag_rec *r);

/* Invalidate every item stored with this tag so far.  O(1) plus a stripe
 * lookup.  Returns the new epoch. */
uint64_t tag_invalidate(struct tags *t, const char *name, size_t len);

/* True if an item stored at `epoch` with record r is invalidated. */
static inline bool
tag_rec_invalid(const struct tag_rec *r, uint64_t epoch)
{
    return atomic_load_explicit(&((struct tag_rec *)r)->inval,
                                memory_order_acquire) > epoch;
}

/* A prefix rule of one shard. */
struct prefix_rule {
    uint64_t cas;               /* items with CAS <= this are invalid */
    uint64_t seq;               /* the shard's inval_seq for this rule */
    uint64_t sweep_gen[2];      /* sweep passes of small/main when added */
    uint8_t len;
    char prefix[256];
};

#endif /* CORRAL_TAG_H */
