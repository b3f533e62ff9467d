/*
 * table.h - a shard's hash table: open addressing with linear probing and
 * incremental growth.
 *
 * A slot is one 64-bit word: the item pointer in the low 48 bits and a
 * 16-bit tag from the key's hash in the high 16, so a probe compares tags
 * and touches an item only on a likely match.  0 is an empty slot.
 *
 * Growth is incremental (redis's rehashidx): when the live count passes
 * 75 % of the slots, a table 1.5 times larger is allocated and every later
 * insert moves TABLE_MIGRATE_STEP old slots into it.  When the owner
 * expects the count to level off soon (a shard near its memory budget
 * sets `expect`), the new table is sized for that count at 75 % load
 * instead, but at least 1.125 times larger; either way it takes every
 * slot its allocation holds.  A full cache's table then sits at 60-75 %
 * load (the allocator's size classes decide where) rather than anywhere
 * from 50 to 75 %.  While the old and the new table both exist, lookups
 * probe the new one, then the old one; inserts go to the new one;
 * a slot moved out of or deleted from the old table becomes a tombstone (1)
 * so that probe sequences through it stay intact.  In the current table a
 * deletion shifts the following cluster back, so it never holds tombstones.
 *
 * The table does no locking: the shard lock covers it (shared for lookups,
 * exclusive for changes).
 */
#ifndef CORRAL_TABLE_H
#define CORRAL_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hash.h"
#include "item.h"
#include "mem.h"

struct table {
    uint64_t *slots;       /* current table */
    size_t cap;            /* its slot count */
    size_t count;          /* live entries in it */
    uint64_t *old;         /* table being emptied, or NULL */
    size_t old_cap;
    size_t old_count;      /* live entries left in it */
    size_t migrate_pos;    /* next old slot to move */
    size_t expect;         /* entries expected at most, 0 = unknown */
    bool exact;            /* slots sized for `expect` (mem_array_alloc) */
    bool old_exact;
    unsigned shard_bits;   /* hash bits taken by the shard index */
    uint64_t seed;         /* the cache's hash seed, to rehash keys */
    size_t bytes;          /* real bytes of both slot arrays */
};

/* Set up an empty table with at least cap slots.  False on ENOMEM. */
bool table_init(struct table *t, struct mem *m, size_t cap,
                unsigned shard_bits, uint64_t seed);
void table_deinit(struct table *t);

#define SLOT_EMPTY 0u
#define SLOT_TOMB 1u
#define SLOT_PTR_MASK ((UINT64_C(1) << 48) - 1)

static inline item_t *
slot_item(uint64_t s)
{
    return (item_t *)(uintptr_t)(s & SLOT_PTR_MASK);
}

static inline bool
slot_used(uint64_t s)
{
    return s > SLOT_TOMB;
}

/* Key equality without a call.  Keys of 8 to 16 bytes (the common case)
 * take two overlapping 8-byte compares. */
static CR_INLINE bool
key_eq(const char *a, const char *b, size_t n)
{
    uint64_t x, y, u, v;

    if (n >= 8) {
        while (n > 16) {
            memcpy(&x, a, 8);
            memcpy(&y, b, 8);
            if (x != y) {
                return false;
            }
            a += 8;
            b += 8;
            n -= 8;
        }
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        memcpy(&u, a + n - 8, 8);
        memcpy(&v, b + n - 8, 8);
        return ((x ^ y) | (u ^ v)) == 0;
    }
    while (n-- > 0) {
        if (*a++ != *b++) {
            return false;
        }
    }
    return true;
}

/* The item with this key in one slot array, or NULL.  A slot whose tag
 * bits match is compared by key; a tombstone's tag bits are 0, and so are
 * an empty slot's, so both fail the pointer test that follows a tag
 * match. */
static CR_INLINE item_t *
table_probe(const uint64_t *slots, size_t cap, unsigned bits, uint64_t h,
            const void *key, size_t nkey)
{
    uint64_t tag = (uint64_t)hash_tag(h) << 48;
    size_t i = hash_range(h, bits, cap);

    for (;;) {
        uint64_t s = slots[i];
        if ((s & ~SLOT_PTR_MASK) == tag && slot_used(s)) {
            const item_t *it = slot_item(s);
            if (it->nkey == nkey && key_eq(it->data, key, nkey)) {
                return (item_t *)it;
            }
        }
        if (s == SLOT_EMPTY) {
            return NULL;
        }
        if (++i == cap) {
            i = 0;
        }
    }
}

/* The item with this key, or NULL.  Shared lock. */
static CR_INLINE item_t *
table_find(const struct table *t, uint64_t h, const void *key, size_t nkey)
{
    item_t *it = table_probe(t->slots, t->cap, t->shard_bits, h, key, nkey);
    if (it == NULL && t->old != NULL) {
        it = table_probe(t->old, t->old_cap, t->shard_bits, h, key, nkey);
    }
    return it;
}

/* Prefetch the slot a lookup of h starts at, or the item its first tag
 * match points to (for batched lookups: several misses in flight at once).
 * Shared lock. */
void table_prefetch_slot(const struct table *t, uint64_t h);
void table_prefetch_item(const struct table *t, uint64_t h);

/* Make sure one more entry fits (growing if due); false when the table is
 * completely full and growth needs memory it cannot get.  Exclusive
 * lock. */
bool table_reserve(struct table *t, struct mem *m);

/* Add an item whose key is absent.  Starts or continues growth; false
 * when growth needs memory it cannot get (the item is still inserted
 * unless the table is completely full).  Exclusive lock. */
bool table_insert(struct table *t, struct mem *m, uint64_t h, item_t *it);

/* Bytes the slot arrays would grow by if one entry were inserted now
 * (the insert that passes the load limit allocates the larger table). */
size_t table_insert_growth(const struct table *t);

/* Put new_it in old_it's slot (same key).  Exclusive lock. */
void table_replace(struct table *t, uint64_t h, item_t *old_it,
                   item_t *new_it);

/* Remove this item.  Exclusive lock. */
void table_remove(struct table *t, uint64_t h, item_t *it);

/* Entries in the table. */
static inline size_t
table_count(const struct table *t)
{
    return t->count + t->old_count;
}

/* Move up to n old slots; true while growth is still under way. */
bool table_migrate(struct table *t, size_t n);

/* Call fn on every item (for destroy).  Exclusive lock. */
void table_foreach(struct table *t, void (*fn)(item_t *it, void *ud),
                   void *ud);

#endif /* CORRAL_TABLE_H */
