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
 * insert moves TABLE_MIGRATE_STEP old slots into it.  While both exist,
 * lookups probe the new table, then the old one; inserts go to the new one;
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
    unsigned shard_bits;   /* hash bits taken by the shard index */
    uint64_t seed;         /* the cache's hash seed, to rehash keys */
    size_t bytes;          /* real bytes of both slot arrays */
};

/* Set up an empty table with at least cap slots.  False on ENOMEM. */
bool table_init(struct table *t, struct mem *m, size_t cap,
                unsigned shard_bits, uint64_t seed);
void table_deinit(struct table *t);

/* The item with this key, or NULL.  Shared lock. */
item_t *table_find(const struct table *t, uint64_t h, const void *key,
                   size_t nkey);

/* Prefetch the slot a lookup of h starts at, or the item its first tag
 * match points to (for batched lookups: several misses in flight at once).
 * Shared lock. */
void table_prefetch_slot(const struct table *t, uint64_t h);
void table_prefetch_item(const struct table *t, uint64_t h);

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
