/*
 * leases.c - a direct-mapped memory of the W tokens handed out, for the
 * lease timeout count (the contract is in leases.h).
 *
 *   slot[h % LEASES_SLOTS] = h | 1   a W for the key with hash h waits
 *                            0       nothing waits there
 *
 * h | 1 keeps a waiting slot nonzero; a store clears the slot only if it
 * still holds its own key (compare-exchange), so a store never ends
 * another key's lease.
 */
#include "leases.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "keyhash.h"

struct leases {
    _Atomic uint64_t slot[LEASES_SLOTS];
};

/* A key's hash, odd so that a waiting slot is never 0. */
static uint64_t
leases_hash(const void *key, size_t nkey)
{
    return key_hash(key, nkey) | 1;
}

struct leases *
leases_create(void)
{
    struct leases *l = malloc(sizeof(*l));

    if (l != NULL) {
        for (size_t i = 0; i < LEASES_SLOTS; i++) {
            atomic_init(&l->slot[i], 0);
        }
    }
    return l;
}

void
leases_destroy(struct leases *l)
{
    free(l);
}

bool
leases_won(struct leases *l, const void *key, size_t nkey)
{
    uint64_t h;

    if (l == NULL) {
        return false;
    }
    h = leases_hash(key, nkey);
    return atomic_exchange_explicit(&l->slot[h % LEASES_SLOTS], h,
                                    memory_order_relaxed) == h;
}

void
leases_done(struct leases *l, const void *key, size_t nkey)
{
    uint64_t h, want;

    if (l == NULL) {
        return;
    }
    h = leases_hash(key, nkey);
    want = h;
    if (atomic_load_explicit(&l->slot[h % LEASES_SLOTS],
                             memory_order_relaxed) == h) {
        atomic_compare_exchange_strong_explicit(
            &l->slot[h % LEASES_SLOTS], &want, 0, memory_order_relaxed,
            memory_order_relaxed);
    }
}

void
leases_forget(struct leases *l)
{
    if (l == NULL) {
        return;
    }
    for (size_t i = 0; i < LEASES_SLOTS; i++) {
        atomic_store_explicit(&l->slot[i], 0, memory_order_relaxed);
    }
}
