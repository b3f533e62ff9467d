/*
 * table.c - see table.h for the design.
 *
 * Deletion in the current table (backward shift): after emptying slot i,
 * walk the cluster that follows.  An entry at j whose home position h does
 * not lie cyclically in (i, j] may move back to i, which then becomes j.
 * The walk stops at the first empty slot.  This keeps every entry
 * reachable from its home without tombstones.
 */
#include "table.h"

#include <string.h>

#include "hash.h"

#define TABLE_MIN_CAP 16u
#define TABLE_MIGRATE_STEP 8u

/* Grow when entries exceed 3/4 of the slots: linear probing's probe
 * counts climb fast past that. */
static inline bool
table_over_load(size_t entries, size_t cap)
{
    return entries * 4 > cap * 3;
}

static inline uint64_t
slot_make(const item_t *it, uint64_t h)
{
    uintptr_t p = (uintptr_t)it;
    CR_ASSERT((p & ~SLOT_PTR_MASK) == 0);
    return ((uint64_t)hash_tag(h) << 48) | (uint64_t)p;
}

static inline size_t
slot_next(size_t i, size_t cap)
{
    return i + 1 == cap ? 0 : i + 1;
}

/* Slot arrays: `exact` when sized for an expected count (mem.h). */
static uint64_t *
slots_alloc(struct mem *m, size_t cap, bool exact)
{
    return mem_array_alloc(m, cap * sizeof(uint64_t), exact);
}

static void
slots_free(uint64_t *slots, size_t cap, bool exact)
{
    mem_array_free(slots, cap * sizeof(uint64_t), exact);
}

static size_t
slots_bytes(size_t cap, bool exact)
{
    return cap == 0 ? 0 : mem_array_size(cap * sizeof(uint64_t), exact);
}

static void
table_update_bytes(struct table *t)
{
    t->bytes = slots_bytes(t->cap, t->exact) +
               (t->old ? slots_bytes(t->old_cap, t->old_exact) : 0);
}

bool
table_init(struct table *t, struct mem *m, size_t cap, unsigned shard_bits,
           uint64_t seed)
{
    memset(t, 0, sizeof(*t));
    t->cap = cap < TABLE_MIN_CAP ? TABLE_MIN_CAP : cap;
    t->shard_bits = shard_bits;
    t->seed = seed;
    t->slots = slots_alloc(m, t->cap, false);
    if (t->slots == NULL) {
        return false;
    }
    table_update_bytes(t);
    return true;
}

void
table_deinit(struct table *t)
{
    slots_free(t->slots, t->cap, t->exact);
    slots_free(t->old, t->old_cap, t->old_exact);
    memset(t, 0, sizeof(*t));
}

static inline uint64_t
table_hash_item(const struct table *t, const item_t *it)
{
    return hash_key(t->seed, item_key(it), it->nkey);
}

/* Index of the slot holding exactly this item, or SIZE_MAX. */
static size_t
probe_item(const uint64_t *slots, size_t cap, unsigned bits, uint64_t h,
           const item_t *it)
{
    size_t i = hash_range(h, bits, cap);

    for (;;) {
        uint64_t s = slots[i];
        if (s == SLOT_EMPTY) {
            return SIZE_MAX;
        }
        if (slot_used(s) && slot_item(s) == it) {
            return i;
        }
        i = slot_next(i, cap);
    }
}

void
table_prefetch_slot(const struct table *t, uint64_t h)
{
    __builtin_prefetch(&t->slots[hash_range(h, t->shard_bits, t->cap)]);
}

void
table_prefetch_item(const struct table *t, uint64_t h)
{
    uint64_t tag = hash_tag(h);
    size_t i = hash_range(h, t->shard_bits, t->cap);

    for (;;) {
        uint64_t s = t->slots[i];
        if (s == SLOT_EMPTY) {
            return;
        }
        if (slot_used(s) && (s >> 48) == tag) {
            __builtin_prefetch(slot_item(s));
            return;
        }
        i = slot_next(i, t->cap);
    }
}

/* Put a slot word into the first free place of its probe sequence. */
static void
place(uint64_t *slots, size_t cap, unsigned bits, uint64_t h, uint64_t word)
{
    size_t i = hash_range(h, bits, cap);
    while (slots[i] != SLOT_EMPTY) {
        i = slot_next(i, cap);
    }
    slots[i] = word;
}

bool
table_migrate(struct table *t, size_t n)
{
    if (t->old == NULL) {
        return false;
    }
    while (n-- > 0 && t->migrate_pos < t->old_cap) {
        uint64_t s = t->old[t->migrate_pos];
        if (slot_used(s)) {
            uint64_t h = table_hash_item(t, slot_item(s));
            place(t->slots, t->cap, t->shard_bits, h, s);
            t->old[t->migrate_pos] = SLOT_TOMB;
            t->old_count--;
            t->count++;
        }
        t->migrate_pos++;
    }
    if (t->migrate_pos == t->old_cap) {
        CR_ASSERT(t->old_count == 0);
        slots_free(t->old, t->old_cap, t->old_exact);
        t->old = NULL;
        t->old_cap = 0;
        t->migrate_pos = 0;
        table_update_bytes(t);
        return false;
    }
    return true;
}

/* Whether the next growth is sized for an expected count. */
static bool
grows_exact(const struct table *t)
{
    return t->expect != 0 && t->expect <= SIZE_MAX / 64;
}

/* The next growth's slot count: room for `expect` entries at 75 % load
 * when the owner expects a count, but never under 1.125 times the present
 * one; else 1.5 times.  Then every slot the allocation really holds. */
static size_t
grown_cap(const struct table *t)
{
    size_t cap = t->cap + t->cap / 2;
    size_t least = t->cap + t->cap / 8;

    if (grows_exact(t)) {
        size_t fit = t->expect / 3 * 4 + 4;
        cap = fit < least ? least : fit;
    }
    return slots_bytes(cap, grows_exact(t)) / sizeof(uint64_t);
}

/* Begin growth: the current table becomes the old one. */
static bool
table_grow(struct table *t, struct mem *m)
{
    size_t cap;
    uint64_t *slots;

    if (t->old != NULL) {
        table_migrate(t, SIZE_MAX);
    }
    cap = grown_cap(t);
    slots = slots_alloc(m, cap, grows_exact(t));
    if (slots == NULL) {
        return false;
    }
    t->old = t->slots;
    t->old_cap = t->cap;
    t->old_exact = t->exact;
    t->exact = grows_exact(t);
    t->old_count = t->count;
    t->migrate_pos = 0;
    t->slots = slots;
    t->cap = cap;
    t->count = 0;
    table_update_bytes(t);
    return true;
}

bool
table_reserve(struct table *t, struct mem *m)
{
    if (table_over_load(table_count(t) + 1, t->cap)) {
        if (!table_grow(t, m) && table_count(t) + 1 >= t->cap) {
            return false; /* completely full and cannot grow */
        }
    }
    return true;
}

bool
table_insert(struct table *t, struct mem *m, uint64_t h, item_t *it)
{
    if (!table_reserve(t, m)) {
        return false;
    }
    table_migrate(t, TABLE_MIGRATE_STEP);
    place(t->slots, t->cap, t->shard_bits, h, slot_make(it, h));
    t->count++;
    return true;
}

size_t
table_insert_growth(const struct table *t)
{
    size_t cap = grown_cap(t);

    if (!table_over_load(table_count(t) + 1, t->cap)) {
        return 0;
    }
    /* table_grow finishes a growth under way first, freeing its slots */
    return slots_bytes(cap, grows_exact(t)) -
           (t->old != NULL ? slots_bytes(t->old_cap, t->old_exact) : 0);
}

void
table_replace(struct table *t, uint64_t h, item_t *old_it, item_t *new_it)
{
    size_t i = probe_item(t->slots, t->cap, t->shard_bits, h, old_it);
    if (i != SIZE_MAX) {
        t->slots[i] = slot_make(new_it, h);
        return;
    }
    CR_ASSERT(t->old != NULL);
    i = probe_item(t->old, t->old_cap, t->shard_bits, h, old_it);
    CR_ASSERT(i != SIZE_MAX);
    t->old[i] = slot_make(new_it, h);
}

/* Empty slot i of the current table and close the gap (backward shift). */
static void
remove_at(struct table *t, size_t i)
{
    size_t j = i;

    t->slots[i] = SLOT_EMPTY;
    for (;;) {
        uint64_t s;
        size_t home;
        bool stays;

        j = slot_next(j, t->cap);
        s = t->slots[j];
        if (s == SLOT_EMPTY) {
            return;
        }
        home = hash_range(table_hash_item(t, slot_item(s)), t->shard_bits,
                          t->cap);
        /* s stays when its home lies cyclically in (i, j]. */
        if (i <= j) {
            stays = i < home && home <= j;
        } else {
            stays = i < home || home <= j;
        }
        if (!stays) {
            t->slots[i] = s;
            t->slots[j] = SLOT_EMPTY;
            i = j;
        }
    }
}

void
table_remove(struct table *t, uint64_t h, item_t *it)
{
    size_t i = probe_item(t->slots, t->cap, t->shard_bits, h, it);
    if (i != SIZE_MAX) {
        remove_at(t, i);
        t->count--;
        return;
    }
    CR_ASSERT(t->old != NULL);
    i = probe_item(t->old, t->old_cap, t->shard_bits, h, it);
    CR_ASSERT(i != SIZE_MAX);
    if (i != SIZE_MAX) {
        t->old[i] = SLOT_TOMB;
        t->old_count--;
    }
}

void
table_foreach(struct table *t, void (*fn)(item_t *it, void *ud), void *ud)
{
    for (size_t i = 0; i < t->cap; i++) {
        if (slot_used(t->slots[i])) {
            fn(slot_item(t->slots[i]), ud);
        }
    }
    for (size_t i = 0; t->old != NULL && i < t->old_cap; i++) {
        if (slot_used(t->old[i])) {
            fn(slot_item(t->old[i]), ud);
        }
    }
}
