/*
 * pin.h - how a lookup hands an item to its caller: pins that, on the
 * common path, write nothing shared.
 *
 * A handle (corral_item_t *) is one of three things, told apart by its
 * low two bits (items and slots are at least 8-byte aligned):
 *
 *   ...00  a private item: a copy nobody else can reach, freed when its
 *          reference count drops to zero (item_unref);
 *   ...01  a pin slot: a word of the pinning thread's pin block that holds
 *          the item.  Pinning is a plain store into the slot, releasing a
 *          plain store of NULL: no atomic read-modify-write on the item,
 *          whose cache line the lookup has only read;
 *   ...10  a counted item: one reference on the item, for a thread whose
 *          slots are all in use (or whose count is saturated: then the
 *          caller gets a private copy instead).
 *
 * The slots are hazard pointers whose ordering comes from the shard lock.
 * A slot is filled only while the item cannot be retired: under its
 * shard's lock (shared or exclusive), or while the caller holds a
 * reference that it drops later.  An item is retired when its last
 * reference goes, after it left the table; its segment (item.h) is
 * retired when its last item is and its queue has released it.  So every
 * slot filled before then is visible to whoever frees the segment, and
 * none can be filled after.  A retired segment is freed once no slot
 * points into it.
 *
 * Retired segments wait in two kinds of list.  The engine drops its
 * references under the shard lock, into the shard's list, which is
 * scanned every RETIRE_BATCH segments (shard.c).  A reference dropped
 * without a shard lock (a counted handle's release, a finished load), and
 * what a destroyed cache leaves held, go to one process-wide list of
 * orphans under its own mutex, scanned then, whenever a shard scans or
 * corral_sweep() runs, and at every slot release while orphans wait (see
 * pin_clear).  So items stay valid after corral_destroy() until released,
 * as corral.h promises.
 *
 * Each thread has up to PIN_BLOCKS_MAX blocks of PIN_SLOTS slots, made on
 * first use.  A thread that exits leaves its blocks to the next thread
 * that starts pinning; slots it still held (handles it passed to other
 * threads) stay valid, and any thread may release them.  Blocks are never
 * freed: the scan walks them without a lock.
 */
#ifndef CORRAL_PIN_H
#define CORRAL_PIN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "corral.h"
#include "item.h"

#define PIN_SLOTS 6
#define PIN_BLOCKS_MAX 4

#define PIN_TAG_MASK 3u
#define PIN_TAG_SLOT 1u
#define PIN_TAG_REF 2u

struct pin_block {
    _Atomic(item_t *) slot[PIN_SLOTS];
    struct pin_block *all; /* the next block of every thread (set once) */
} CR_ALIGNED(CR_CACHELINE);

/* This thread's first block (NULL until its first pin). */
extern _Thread_local struct pin_block *pin_first
    __attribute__((tls_model("initial-exec")));

_Atomic(item_t *) *pin_slot_slow(void);

/*
 * A free slot of this thread, or NULL when its blocks are all in use (or
 * there is no memory for one).  The slot stays free until pin_fill: only
 * this thread fills its slots.  Needs no lock.
 */
static CR_INLINE _Atomic(item_t *) *
pin_slot(void)
{
    struct pin_block *b = pin_first;
    if (likely(b != NULL)) {
        for (unsigned i = 0; i < PIN_SLOTS; i++) {
            if (ld_relaxed(&b->slot[i]) == NULL) {
                return &b->slot[i];
            }
        }
    }
    return pin_slot_slow();
}

/* Pin it in slot (see the rules above) and return the handle. */
static CR_INLINE corral_item_t *
pin_fill(_Atomic(item_t *) *slot, item_t *it)
{
    st_relaxed(slot, it);
    return (corral_item_t *)((uintptr_t)slot | PIN_TAG_SLOT);
}

static inline unsigned
pin_tag(const corral_item_t *h)
{
    return (unsigned)((uintptr_t)h & PIN_TAG_MASK);
}

/* The item a handle stands for. */
static CR_INLINE item_t *
pin_item(const corral_item_t *h)
{
    uintptr_t p = (uintptr_t)h & ~(uintptr_t)PIN_TAG_MASK;
    if (pin_tag(h) == PIN_TAG_SLOT) {
        return ld_relaxed((_Atomic(item_t *) *)p);
    }
    return (item_t *)p;
}

/* A counted handle for it (the caller took the reference). */
static inline corral_item_t *
pin_counted(item_t *it)
{
    return (corral_item_t *)((uintptr_t)it | PIN_TAG_REF);
}

/* Orphans wait (see above): a released slot should look at them. */
extern _Atomic bool pin_orphans_waiting;

/* Without membarrier(2), releases order themselves with a full fence. */
extern bool pin_fenced;

void pin_collect(void);

/*
 * Release a slot handle: the caller's reads of the item are over.
 *
 * The item may be an orphan that the scan which made it so saw held.
 * Then either that scan sees the slot cleared, or this release sees the
 * orphans flag and collects: the orphaning side sets the flag, then runs
 * membarrier(2), which puts a full barrier into every running thread of
 * the process, then scans; so this side needs only a compiler barrier
 * between its store and its load (or a full fence where membarrier is
 * not available).
 */
static CR_INLINE void
pin_clear(const corral_item_t *h)
{
    atomic_store_explicit(
        (_Atomic(item_t *) *)((uintptr_t)h & ~(uintptr_t)PIN_TAG_MASK),
        NULL, memory_order_release);
    if (unlikely(pin_fenced)) {
        atomic_thread_fence(memory_order_seq_cst);
    } else {
        atomic_signal_fence(memory_order_seq_cst);
    }
    if (unlikely(ld_relaxed(&pin_orphans_waiting))) {
        pin_collect();
    }
}

/* Hold off orphan frees (corral_destroy, while it detaches its tag
 * records: an orphan of the cache freed meanwhile would release into
 * them). */
void pin_orphans_lock(void);
void pin_orphans_unlock(void);

/* Drop a reference taken on a shared item without a shard lock; the last
 * one retires it, and if it was the last of its segment, which its queue
 * released, that makes the segment an orphan, freed once no slot points
 * into it. */
void pin_unref(item_t *it);

/* Make retired segments orphans: a list linked through next, NULL-ended
 * (corral_destroy). */
void pin_orphan(struct seg *list);

/* Free the segments of *list (linked through next) that no slot points
 * into; the rest stay in *list.  Returns how many stayed. */
size_t pin_free_unheld(struct seg **list);

/* True if some slot holds it.  O(blocks). */
bool pin_held(const item_t *it);

#endif /* CORRAL_PIN_H */
