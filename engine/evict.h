/*
 * evict.h - the S3-FIFO eviction policy of one shard (Yang et al., "FIFO
 * queues are all you need for cache eviction", SOSP 2023).
 *
 *          insert (ghost miss)             insert (ghost hit, freq 1)
 *               |                                 |
 *               v                                 v
 *   small: [head ... tail] --freq>1--> main: [head ... tail] --freq>0--+
 *               |                          ^          |                |
 *            freq=0                        +----------|-- freq-1 ------+
 *               v                                     v freq=0
 *   ghost: fingerprints of keys                    evicted
 *          evicted from small
 *
 * A hit only increments the item's 2-bit counter (item_freq_bump); nodes
 * move only at eviction time, under the shard's exclusive lock.  The small
 * queue holds about 10 % of the shard's capacity.
 *
 * Queues are singly linked from the oldest (tail) to the newest (head).  A
 * removed item (deleted, overwritten, expired and unlinked) stays in its
 * queue until eviction reaches it or the sweep (a cursor that walks each
 * queue a few nodes per write) splices it out; either way its memory is
 * freed within a bounded amount of work.
 *
 * An item moves from small to main after two hits there.  The ghost is a
 * table of 16-bit entries in 8-slot buckets: an 11-bit key fingerprint
 * and a 5-bit epoch.  An entry counts as present for the last `capacity`
 * insertions (16 epochs; the next 16 read as dead), and capacity follows
 * the number of items the shard holds.  The table has room for 1.25 times
 * the window, one slot per key: about 2.5 bytes per item.  A fingerprint
 * matches a key it was not made from with odds of about 8 in 2047 per
 * lookup (then a new key starts in main instead of small).
 */
#ifndef CORRAL_EVICT_H
#define CORRAL_EVICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "item.h"
#include "mem.h"

struct fifo {
    item_t *head;          /* newest */
    item_t *tail;          /* oldest */
    item_t *cursor;        /* sweep position, or NULL to restart */
    uint64_t passes;       /* sweep passes completed over this queue */
    size_t count;          /* items in the queue, dead ones included */
    size_t bytes;          /* their real bytes */
};

struct ghost {
    uint16_t *slots;       /* nbuckets * GHOST_WAYS entries, 0 = empty */
    size_t nbuckets;
    size_t capacity;       /* entries remembered (the window) */
    size_t room;           /* entries the table was sized for */
    uint64_t inserts;      /* insertions in the current epoch */
    uint32_t epoch;
    size_t bytes;          /* real bytes of slots */
};

struct policy {
    struct fifo small;
    struct fifo main;
    struct ghost ghost;
    unsigned shard_bits;
    size_t small_bytes;    /* the small queue's share of the byte budget */
    size_t small_items;    /* ... of the item budget, 0 = none */
};

/* Decides, for the policy, whether a queued item can be dropped without
 * being an eviction: removed already, expired or flushed. */
typedef bool (*policy_dead_fn)(item_t *it, void *ud);

void policy_init(struct policy *p, unsigned shard_bits, size_t budget_bytes,
                 size_t budget_items);
void policy_deinit(struct policy *p);

/* Queue a newly linked item.  in_main: put it straight into main (a ghost
 * hit, or the new version of a key that was in main). */
void policy_insert(struct policy *p, item_t *it, size_t bytes, bool in_main);

/* Queue a new key that the ghost remembered: into main, with one
 * reinsertion's credit. */
void policy_insert_returning(struct policy *p, item_t *it, size_t bytes);

/* True if h was recently evicted from small (and forget it). */
bool policy_ghost_take(struct policy *p, uint64_t h);

/* Pop the next victim, applying S3-FIFO's moves; NULL when both queues are
 * empty.  The queue's reference passes to the caller.  hash_fn recomputes
 * a key's hash for the ghost. */
item_t *policy_evict(struct policy *p, struct mem *m, policy_dead_fn dead,
                     void *ud, uint64_t (*hash_fn)(const item_t *, void *));

/* Advance the sweep by up to n nodes; every dead item found is removed
 * from its queue and passed to drop(), which takes the queue's reference.
 */
void policy_sweep(struct policy *p, size_t n, policy_dead_fn dead,
                  void (*drop)(item_t *it, void *ud), void *ud);

/* Bytes of policy metadata (the ghost). */
static inline size_t
policy_bytes(const struct policy *p)
{
    return p->ghost.bytes;
}

/* Call fn on every queued item, leaving the queues as they are; fn must
 * not dequeue anything.  O(items). */
void policy_walk(struct policy *p, void (*fn)(item_t *it, void *ud),
                 void *ud);

/* Hand every queued item to fn (destroy). */
void policy_foreach(struct policy *p, void (*fn)(item_t *it, void *ud),
                    void *ud);

#endif /* CORRAL_EVICT_H */
