/*
 * lock.c - the slow paths of the shard lock (lock.h): spin, then sleep.
 */
#include "lock.h"

void
rw_rdlock_slow(struct rwlock *l)
{
    for (int spins = 0;; spins++) {
        uint32_t s = atomic_load_explicit(&l->state, memory_order_relaxed);
        if (!(s & (RW_WRITER | RW_WAITING))) {
            if (atomic_compare_exchange_weak_explicit(
                    &l->state, &s, s + RW_READER, memory_order_acquire,
                    memory_order_relaxed)) {
                return;
            }
            continue;
        }
        if (spins < RW_SPINS) {
            rw_pause();
        } else {
            rw_sleep(l, s);
        }
    }
}

void
rw_wrlock_slow(struct rwlock *l)
{
    for (int spins = 0;; spins++) {
        uint32_t s = atomic_load_explicit(&l->state, memory_order_relaxed);
        if ((s & ~RW_WAITING) == 0) {
            /* free: take it (clearing "waiting"; other waiting writers
             * set it again) */
            if (atomic_compare_exchange_weak_explicit(
                    &l->state, &s, RW_WRITER, memory_order_acquire,
                    memory_order_relaxed)) {
                return;
            }
            continue;
        }
        if (!(s & RW_WAITING)) {
            /* keep new readers out until we are in */
            if (!atomic_compare_exchange_weak_explicit(
                    &l->state, &s, s | RW_WAITING, memory_order_relaxed,
                    memory_order_relaxed)) {
                continue;
            }
            s |= RW_WAITING;
        }
        if (spins < RW_SPINS) {
            rw_pause();
        } else {
            rw_sleep(l, s);
        }
    }
}
