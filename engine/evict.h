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
 * A hit only increments the item's 2-bit counter (item_freq_bump); items
 * move only at eviction time, under the shard's exclusive lock.  The small
 * queue holds about 10 % of the shard's capacity.
 *
 * A queue is a sequence of segments (item.h): solo segments of large
 * items, then its open shared segment, which takes each small item that
 * joins the queue.  A full open segment joins the sequence and a new one
 * opens.  Eviction walks the sequence from its oldest record; moving an
 * item to the newer end of main copies it there (a solo segment moves
 * whole), and the table is pointed at the copy.  A segment the walk has
 * passed leaves the queue.  An item unlinked from the table (deleted,
 * overwritten, expired) stays where it is, dead, until the walk passes it
 * or nothing else in its segment is linked: a segment with no linked item
 * leaves the queue at once (the open one when it closes, or at
 * policy_trim), so a large item's memory returns with its deletion and a
 * small one's with the last of its neighbours'.  A large item that joins
 * while the walk is inside the open segment closes it first; otherwise
 * large items may leave up to one open segment's worth of small items
 * before them.
 *
 * The sweep is a second walk, a few records per write, that finds items
 * expired, flushed or matched by a prefix rule and has them unlinked.
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
    struct seg *tail;      /* oldest segment before the open one, or NULL */
    struct seg *head;      /* newest segment before the open one */
    struct seg *open;      /* the shared segment taking small items */
    uint32_t pos;          /* the walk's offset in the first segment */
    uint32_t cpos;         /* the sweep's offset in cseg */
    struct seg *cseg;      /* the sweep's segment, or NULL to restart */
    uint64_t passes;       /* sweep passes completed over this queue */
    size_t count;          /* linked items in the queue */
    size_t bytes;          /* their record bytes */
    size_t mem;            /* real bytes of its segments */
    size_t dead;           /* record bytes in its shared segments no
                            * longer linked (overwritten, deleted, passed):
                            * freed with their segment */
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
    size_t seg_size;       /* bytes of a shared segment, 0 = all solo */
    size_t solo_min;       /* records this large or larger go solo */
};

/* What the policy needs from the shard.  All run under the exclusive
 * lock. */
struct policy_ops {
    /* Whether a linked item can go without being an eviction: expired or
     * flushed. */
    bool (*dead)(item_t *it, void *ud);
    /* The item's key hash (for the ghost and the table). */
    uint64_t (*hash)(const item_t *it, void *ud);
    /* `to`, a copy of the linked item `from`, takes its place in the
     * table; `from` is unlinked and its cache reference dropped. */
    void (*moved)(item_t *from, item_t *to, void *ud);
    /* A segment left its queue: drop the queue's reference. */
    void (*seg_done)(struct seg *g, size_t bytes, void *ud);
    void *ud;
};

/* budget_bytes and budget_items are the shard's; budget_bytes also sizes
 * the shared segments (a budget under 1 MiB has none: every item is
 * solo). */
void policy_init(struct policy *p, unsigned shard_bits, size_t budget_bytes,
                 size_t budget_items);
void policy_deinit(struct policy *p);

/* Queue the private item it (refs 1, not linked): a small one is copied
 * into the queue's open segment, a large one's segment joins the queue.
 * Returns the queued item (refs 1, its own tag references; `it` is left
 * to the caller if different), or NULL without memory.  in_main: straight
 * into main (a ghost hit, or the new version of a key in main);
 * returning: a new key the ghost remembered (main, with one
 * reinsertion's credit). */
item_t *policy_insert(struct policy *p, struct mem *m, item_t *it,
                      bool in_main, bool returning,
                      const struct policy_ops *ops);

/* Bytes of memory queueing an item of `bytes` record bytes may add. */
size_t policy_insert_cost(const struct policy *p, size_t bytes);

/* The item left the table (not by policy_evict's moves): forget it in its
 * queue's counts.  Its record stays until the walk passes it, or until
 * nothing else in its segment is linked (then the segment leaves the
 * queue at once, unless it is the open one). */
void policy_removed(struct policy *p, item_t *it,
                    const struct policy_ops *ops);

/* True if h was recently evicted from small (and forget it). */
bool policy_ghost_take(struct policy *p, uint64_t h);

/*
 * One step of eviction, applying S3-FIFO's moves: *victim gets the next
 * item to unlink (a dead one or an eviction), or stays NULL when the
 * step released a segment instead.  False when both queues are empty.
 *
 * spare (room is wanted for bytes, not for an item count): while more
 * than a quarter of the walked queue's segment bytes are dead records, a
 * live item the walk would evict is copied to the queue's newer end
 * instead, so that passing its segment frees the dead records around it
 * (the queue is compacted in FIFO order) rather than evicting live items
 * while memory is held by dead ones.
 */
bool policy_evict(struct policy *p, struct mem *m,
                  const struct policy_ops *ops, bool spare, item_t **victim);

/* Advance the sweep by up to n records; every linked dead item found is
 * passed to drop(), which unlinks it. */
void policy_sweep(struct policy *p, size_t n, const struct policy_ops *ops,
                  void (*drop)(item_t *it, void *ud));

/* Release the open segments that hold nothing linked (their memory would
 * otherwise wait for the next item to close them). */
void policy_trim(struct policy *p, const struct policy_ops *ops);

/* Bytes of policy metadata (the ghost). */
static inline size_t
policy_bytes(const struct policy *p)
{
    return p->ghost.bytes;
}

/* Real bytes of the queues' segments. */
static inline size_t
policy_seg_bytes(const struct policy *p)
{
    return p->small.mem + p->main.mem;
}

/* The oldest linked item of a queue among the next few the walk reaches,
 * or NULL.  Shared lock. */
const item_t *policy_oldest(const struct policy *p, bool main);

/* Call fn on every linked item; fn may unlink it.  O(records). */
void policy_walk(struct policy *p, void (*fn)(item_t *it, void *ud),
                 void *ud);

/* Empty the queues (destroy): fn gets every linked item, then seg_done
 * every segment. */
void policy_foreach(struct policy *p, void (*fn)(item_t *it, void *ud),
                    const struct policy_ops *ops);

#endif /* CORRAL_EVICT_H */
