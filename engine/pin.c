/*
 * pin.c - the threads' pin blocks: made on a thread's first pin, handed
 * to a later thread when it exits, scanned before a retired segment is
 * freed.  The rules are in pin.h.
 */
#include "pin.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A thread's blocks.  Kept for reuse when the thread exits. */
struct pin_owner {
    struct pin_block *blocks[PIN_BLOCKS_MAX];
    unsigned nblocks;
    struct pin_owner *next_free;
};

_Thread_local struct pin_block *pin_first
    __attribute__((tls_model("initial-exec")));
static _Thread_local struct pin_owner *pin_me
    __attribute__((tls_model("initial-exec")));

/* Every block ever made, newest first: pushed under pin_lock, walked
 * without it (a block's `all` is written before the block is published). */
static _Atomic(struct pin_block *) pin_all;
static pthread_mutex_t pin_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pin_owner *pin_free_owners; /* of exited threads; pin_lock */
static pthread_key_t pin_key;
static pthread_once_t pin_once = PTHREAD_ONCE_INIT;

/* Thread exit: leave the blocks to the next thread that pins. */
static void
owner_exit(void *p)
{
    struct pin_owner *o = p;
    pin_me = NULL; /* a later destructor that pins attaches again */
    pin_first = NULL;
    pthread_mutex_lock(&pin_lock);
    o->next_free = pin_free_owners;
    pin_free_owners = o;
    pthread_mutex_unlock(&pin_lock);
}

bool pin_fenced = true;

static void
key_init(void)
{
    /* Without the key, exited threads' blocks are not reused: they stay
     * in use by nobody, which wastes a line each and nothing else. */
    if (pthread_key_create(&pin_key, owner_exit) != 0) {
        pin_key = (pthread_key_t)-1;
    }
    /* Decided before any thread has a slot, so before any release. */
    pin_fenced = syscall(SYS_membarrier,
                         MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0;
}

/* A full barrier in every running thread of the process (pin_clear). */
static void
barrier_everywhere(void)
{
    if (pin_fenced ||
        syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) !=
            0) {
        atomic_thread_fence(memory_order_seq_cst);
    }
}

/* A new block for o, published for the scans.  pin_lock held. */
static struct pin_block *
block_new(struct pin_owner *o)
{
    struct pin_block *b = aligned_alloc(CR_CACHELINE, sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    for (unsigned i = 0; i < PIN_SLOTS; i++) {
        atomic_init(&b->slot[i], NULL);
    }
    b->all = atomic_load_explicit(&pin_all, memory_order_relaxed);
    atomic_store_explicit(&pin_all, b, memory_order_release);
    o->blocks[o->nblocks++] = b;
    return b;
}

/* This thread's owner: an exited thread's, or a new one with a block. */
static struct pin_owner *
owner_attach(void)
{
    struct pin_owner *o;

    pthread_once(&pin_once, key_init);
    pthread_mutex_lock(&pin_lock);
    o = pin_free_owners;
    if (o != NULL) {
        pin_free_owners = o->next_free;
        o->next_free = NULL;
    } else if ((o = calloc(1, sizeof(*o))) != NULL &&
               block_new(o) == NULL) {
        free(o);
        o = NULL;
    }
    pthread_mutex_unlock(&pin_lock);
    if (o == NULL) {
        return NULL;
    }
    if (pin_key != (pthread_key_t)-1) {
        pthread_setspecific(pin_key, o);
    }
    pin_me = o;
    pin_first = o->blocks[0];
    return o;
}

_Atomic(item_t *) *
pin_slot_slow(void)
{
    struct pin_owner *o = pin_me;
    struct pin_block *b;

    if (o == NULL && (o = owner_attach()) == NULL) {
        return NULL;
    }
    for (unsigned k = 0; k < o->nblocks; k++) {
        b = o->blocks[k];
        for (unsigned i = 0; i < PIN_SLOTS; i++) {
            if (ld_relaxed(&b->slot[i]) == NULL) {
                return &b->slot[i];
            }
        }
    }
    if (o->nblocks == PIN_BLOCKS_MAX) {
        return NULL;
    }
    pthread_mutex_lock(&pin_lock);
    b = block_new(o);
    pthread_mutex_unlock(&pin_lock);
    return b != NULL ? &b->slot[0] : NULL;
}

/* Set held[i] for every segment v[i] that some slot points into.
 * O(blocks x n). */
static void
mark_held(struct seg *const *v, size_t n, bool *held)
{
    for (struct pin_block *b =
             atomic_load_explicit(&pin_all, memory_order_acquire);
         b != NULL; b = b->all) {
        for (unsigned i = 0; i < PIN_SLOTS; i++) {
            uintptr_t x = (uintptr_t)atomic_load_explicit(
                &b->slot[i], memory_order_acquire);
            if (x == 0) {
                continue;
            }
            for (size_t j = 0; j < n; j++) {
                if (x - (uintptr_t)v[j] < v[j]->size) {
                    held[j] = true;
                }
            }
        }
    }
}

bool
pin_held(const item_t *it)
{
    for (struct pin_block *b =
             atomic_load_explicit(&pin_all, memory_order_acquire);
         b != NULL; b = b->all) {
        for (unsigned i = 0; i < PIN_SLOTS; i++) {
            if (atomic_load_explicit(&b->slot[i], memory_order_acquire) ==
                it) {
                return true;
            }
        }
    }
    return false;
}

#define SCAN_AT_ONCE 64

size_t
pin_free_unheld(struct seg **list)
{
    struct seg *rest = *list, *keep = NULL;
    size_t kept = 0;

    while (rest != NULL) {
        struct seg *v[SCAN_AT_ONCE];
        bool held[SCAN_AT_ONCE] = {false};
        size_t n = 0;

        while (rest != NULL && n < SCAN_AT_ONCE) {
            v[n++] = rest;
            rest = rest->next;
        }
        mark_held(v, n, held);
        for (size_t i = 0; i < n; i++) {
            if (held[i]) {
                v[i]->next = keep;
                keep = v[i];
                kept++;
            } else {
                seg_free(v[i]);
            }
        }
    }
    *list = keep;
    return kept;
}

/* Orphans: retired segments that belong to no shard's list (pin.h). */
static pthread_mutex_t orphan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct seg *orphans; /* orphan_lock */
_Atomic bool pin_orphans_waiting;

/* Set the flag, put a barrier in every thread, then scan: a release that
 * the scan does not see sees the flag (pin_clear).  While the flag stays
 * set, every release after that barrier sees it: one barrier serves every
 * scan until the flag is cleared. */
static void
collect_locked(void)
{
    if (orphans == NULL) {
        return;
    }
    if (!ld_relaxed(&pin_orphans_waiting)) {
        atomic_store_explicit(&pin_orphans_waiting, true,
                              memory_order_seq_cst);
        barrier_everywhere();
    }
    pin_free_unheld(&orphans);
    if (orphans == NULL) {
        st_relaxed(&pin_orphans_waiting, false);
    }
}

void
pin_collect(void)
{
    pthread_mutex_lock(&orphan_lock);
    collect_locked();
    pthread_mutex_unlock(&orphan_lock);
}

void
pin_orphan(struct seg *list)
{
    struct seg *last = list;

    if (list == NULL) {
        return;
    }
    while (last->next != NULL) {
        last = last->next;
    }
    pthread_mutex_lock(&orphan_lock);
    last->next = orphans;
    orphans = list;
    collect_locked(); /* one scan for the whole list */
    pthread_mutex_unlock(&orphan_lock);
}

void
pin_orphans_lock(void)
{
    pthread_mutex_lock(&orphan_lock);
}

void
pin_orphans_unlock(void)
{
    pthread_mutex_unlock(&orphan_lock);
}

void
pin_unref(item_t *it)
{
    struct seg *g = item_seg(it);

    if (atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) ==
            1 &&
        atomic_fetch_sub_explicit(&g->live, 1, memory_order_acq_rel) == 1) {
        g->next = NULL; /* out of its queue: the link is free */
        pin_orphan(g);
    }
}
