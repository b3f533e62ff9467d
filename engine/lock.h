/*
 * lock.h - the shard lock: a reader-writer lock that spins briefly, then
 * sleeps on a futex, and prefers writers.
 *
 * Why not pthread_rwlock: a shared acquisition and release cost about 50
 * instructions in glibc, and a contended writer sleeps in the kernel at
 * once, where the critical sections here last well under a microsecond.
 * This lock costs one atomic instruction to take and one to release, and
 * sleeps only after spinning about as long as a critical section lasts.
 *
 * The state word:
 *
 *   31                                   2    1        0
 *   +------------------------------------+---------+--------+
 *   |          readers holding           | writer  | writer |
 *   |                                    | waiting | holds  |
 *   +------------------------------------+---------+--------+
 *
 * A reader enters when neither writer bit is set (a waiting writer keeps
 * new readers out, so writers do not starve).  A writer enters when the
 * word is 0 or just "waiting", and clears "waiting" as it enters; other
 * writers still waiting set it again when they next look.  Sleepers wait
 * on the state word with FUTEX_WAIT (which sleeps only if the word still
 * holds the value they saw) after announcing themselves in `sleepers`;
 * whoever releases the lock wakes them all if any announced themselves.
 * Acquire and release ordering on the state word makes the critical
 * sections happen one after another, as ThreadSanitizer checks.
 */
#ifndef CORRAL_LOCK_H
#define CORRAL_LOCK_H

#include <limits.h>
#include <stdbool.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

#define RW_WRITER 1u
#define RW_WAITING 2u
#define RW_READER 4u
#define RW_SPINS 200

struct rwlock {
    _Atomic uint32_t state;
    _Atomic uint32_t sleepers;
};

static inline void
rw_init(struct rwlock *l)
{
    atomic_init(&l->state, 0);
    atomic_init(&l->sleepers, 0);
}

static inline void
rw_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Sleep while the state word still reads `seen`. */
static inline void
rw_sleep(struct rwlock *l, uint32_t seen)
{
    atomic_fetch_add_explicit(&l->sleepers, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&l->state, memory_order_seq_cst) == seen) {
        syscall(SYS_futex, &l->state, FUTEX_WAIT_PRIVATE, seen, NULL, NULL,
                0);
    }
    atomic_fetch_sub_explicit(&l->sleepers, 1, memory_order_relaxed);
}

static inline void
rw_wake(struct rwlock *l)
{
    if (atomic_load_explicit(&l->sleepers, memory_order_seq_cst) != 0) {
        syscall(SYS_futex, &l->state, FUTEX_WAKE_PRIVATE, INT_MAX, NULL,
                NULL, 0);
    }
}

void rw_rdlock_slow(struct rwlock *l);
void rw_wrlock_slow(struct rwlock *l);

static inline void
rw_rdlock(struct rwlock *l)
{
    uint32_t s = atomic_load_explicit(&l->state, memory_order_relaxed);
    if (likely(!(s & (RW_WRITER | RW_WAITING))) &&
        likely(atomic_compare_exchange_weak_explicit(
            &l->state, &s, s + RW_READER, memory_order_acquire,
            memory_order_relaxed))) {
        return;
    }
    rw_rdlock_slow(l);
}

static inline void
rw_wrlock(struct rwlock *l)
{
    uint32_t s = 0;
    if (likely(atomic_compare_exchange_weak_explicit(
            &l->state, &s, RW_WRITER, memory_order_acquire,
            memory_order_relaxed))) {
        return;
    }
    rw_wrlock_slow(l);
}

/* Take the lock exclusively only if it is free right now. */
static inline bool
rw_trywrlock(struct rwlock *l)
{
    uint32_t s = 0;
    return atomic_compare_exchange_strong_explicit(
        &l->state, &s, RW_WRITER, memory_order_acquire, memory_order_relaxed);
}

/* Release a shared or an exclusive hold (the state tells which). */
static inline void
rw_unlock(struct rwlock *l)
{
    uint32_t s = atomic_load_explicit(&l->state, memory_order_relaxed);
    /* seq_cst, as rw_wake's load of sleepers and rw_sleep's two
     * operations: either this unlock sees the sleeper's count or the
     * sleeper sees this unlock's state (no lost wake-up).  On x86 the
     * same instruction as a release. */
    if (s & RW_WRITER) {
        s = atomic_fetch_and_explicit(&l->state, ~RW_WRITER,
                                      memory_order_seq_cst);
    } else {
        s = atomic_fetch_sub_explicit(&l->state, RW_READER,
                                      memory_order_seq_cst);
        if (s >= 2 * RW_READER) {
            return; /* other readers still hold it: nobody to wake */
        }
    }
    rw_wake(l);
}

#endif /* CORRAL_LOCK_H */
