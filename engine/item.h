/*
 * item.h - the item: header, key, value and an optional extension block,
 * stored in a segment.
 *
 *   0        8        12       16          20    22  23 24
 *   +--------+--------+--------+-----------+-----+---+---+------...
 *   | cas    |exptime | atime  |nvalue|solo|refs |key|bit| key bytes
 *   +--------+--------+--------+-----------+-----+---+---+------...
 *   ...| value bytes (nvalue) | ext (if ITEM_EXT): mask byte, fields |
 *
 * - cas: (per-shard sequence << shard bits) | shard index; unique in the
 *   cache, increasing within a shard.
 * - exptime, atime: absolute Unix seconds; exptime 0 = never.
 * - nvalue: 31 bits (values are at most ITEM_VALUE_MAX); solo: the item
 *   has a segment of its own (below).
 * - refs: one reference for the cache while the item is linked in the
 *   table, plus one per engine operation or counted handle holding it
 *   (pin.h).  Readers' slot pins do not count here.  An item that was
 *   ever shared is retired when the count drops to zero (shard_unref);
 *   its memory goes when its segment's does.  A private item (a copy, or
 *   one not yet linked) is freed at once (item_unref).
 * - bits: eviction frequency, queue, state flags (ITEM_*).
 * - ext: optional fields, in mask-bit order: client flags (u32, only when
 *   nonzero, as memcached does); tags (u8 count, u64 tag epoch at store,
 *   then one tag record pointer each: see tag.h); fetch metadata (u32
 *   end of freshness, u32 duration of the load that produced the value,
 *   see fetch.c); the negative mark.  Fields are unaligned: read and
 *   written with memcpy.
 *
 * Segments.  Every item lives in a segment: a header (struct seg) and
 * records, each an item rounded up to 8 bytes.  A shared segment is a
 * block of SEG_ALIGN bytes at most, aligned to SEG_ALIGN, that an eviction
 * queue fills with small items in the order they join it (evict.h), so
 * the queue needs no link in the item and an item costs no allocator
 * rounding; its segment is found by rounding the item's address down.  A
 * solo segment holds one item just after its header: a large item, or a
 * private one (every item is created solo; linking copies a small one
 * into its queue's shared segment).  A segment's memory goes back when
 * its queue has passed it and every item in it has been retired (its
 * `live` count reaches zero), once no pin slot points into it (pin.h).
 *
 * A linked item's key, value, nkey and nvalue never change; exptime and cas
 * may (touch, mark-stale), so they are atomics.  The value bytes may change
 * in place only under the exclusive lock while no engine reference but the
 * cache's and the writer's and no pin slot holds the item (shard.c), which
 * is how incr/decr avoid an allocation; a change of record size never
 * happens in place.
 */
#ifndef CORRAL_ITEM_H
#define CORRAL_ITEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "corral.h"
#include "mem.h"

struct item {
    _Atomic uint64_t cas;
    _Atomic uint32_t exptime;
    _Atomic uint32_t atime;
    uint32_t nvalue : 31;
    uint32_t solo : 1;
    _Atomic uint16_t refs;
    uint8_t nkey;
    _Atomic uint8_t bits;
    char data[];
};

typedef struct item item_t;

/* The largest value an item holds (memcached's largest item size). */
#define ITEM_VALUE_MAX (UINT32_C(1) << 30)

struct seg {
    struct seg *next;      /* toward the queue's newer end; in a list of
                            * retired segments, the next one */
    struct seg *prev;      /* toward the queue's older end */
    uint32_t size;         /* real bytes of the allocation */
    uint32_t used;         /* offset of the end of the last record */
    _Atomic uint32_t live; /* items not yet retired, plus one while a
                            * queue holds the segment */
    uint32_t linked;       /* items in it linked in the table */
};

#define SEG_ALIGN ((size_t)64 * 1024)
#define SEG_HEADER_SIZE sizeof(struct seg)

/* The segment holding it. */
static inline struct seg *
item_seg(const item_t *it)
{
    if (it->solo) {
        return (struct seg *)((uintptr_t)it - SEG_HEADER_SIZE);
    }
    return (struct seg *)((uintptr_t)it & ~(uintptr_t)(SEG_ALIGN - 1));
}

/* Bytes a record of req bytes takes in a shared segment. */
static inline size_t
rec_size(size_t req)
{
    return (req + 7) & ~(size_t)7;
}

/* bits */
#define ITEM_FREQ_MASK 0x03u /* S3-FIFO access counter, 0..3 */
#define ITEM_MAIN 0x04u      /* in the main queue (else the small one) */
#define ITEM_LINKED 0x08u    /* in the hash table */
#define ITEM_FETCHED 0x10u   /* read since stored */
#define ITEM_STALE 0x20u     /* marked stale */
#define ITEM_TOKEN 0x40u     /* recache token handed out */
#define ITEM_EXT 0x80u       /* extension block present */

/* ext mask */
#define EXT_FLAGS 0x01u
#define EXT_TAGS 0x02u
#define EXT_FETCH 0x04u    /* u32 fresh_until, u32 last load in ms */
#define EXT_NEGATIVE 0x08u /* a cached "does not exist" (no payload) */
#define EXT_BINKEY 0x10u   /* the key was given base64-encoded (memcached's
                            * meta b flag): reported back the same way */
#define EXT_MARKS (EXT_NEGATIVE | EXT_BINKEY) /* masks without payload */

struct tag_rec;

/* A counted pin (pin.h) fails past this count; the caller falls back to
 * a private copy. */
#define ITEM_REFS_MAX 0xff00u

#define ITEM_HEADER_SIZE offsetof(struct item, data)

/* Bytes of the extension block for these optional fields; extras is
 * EXT_FETCH and/or EXT_NEGATIVE. */
static inline size_t
ext_size(uint32_t flags, size_t ntags, unsigned extras)
{
    if (flags == 0 && ntags == 0 && extras == 0) {
        return 0;
    }
    return 1 + (flags != 0 ? 4 : 0) + (ntags != 0 ? 1 + 8 + 8 * ntags : 0) +
           ((extras & EXT_FETCH) ? 8 : 0);
}

/* Bytes to allocate for an item of this shape. */
static inline size_t
item_size_ext(size_t nkey, size_t nvalue, uint32_t flags, size_t ntags,
              unsigned extras)
{
    return ITEM_HEADER_SIZE + nkey + nvalue + ext_size(flags, ntags, extras);
}

static inline size_t
item_size(size_t nkey, size_t nvalue, uint32_t flags, size_t ntags)
{
    return item_size_ext(nkey, nvalue, flags, ntags, 0);
}

static inline const char *
item_key(const item_t *it)
{
    return it->data;
}

static inline char *
item_value(item_t *it)
{
    return it->data + it->nkey;
}

static inline unsigned
item_bits(const item_t *it)
{
    return atomic_load_explicit(&((item_t *)it)->bits, memory_order_relaxed);
}

static inline bool
item_has(const item_t *it, unsigned bit)
{
    return (item_bits(it) & bit) != 0;
}

static inline void
item_set(item_t *it, unsigned bit)
{
    if ((item_bits(it) & bit) != bit) {
        atomic_fetch_or_explicit(&it->bits, (uint8_t)bit,
                                 memory_order_relaxed);
    }
}

static inline void
item_clear(item_t *it, unsigned bit)
{
    if (item_bits(it) & bit) {
        atomic_fetch_and_explicit(&it->bits, (uint8_t)~bit,
                                  memory_order_relaxed);
    }
}

/* Atomically set bit; true if this call set it (it was clear). */
static inline bool
item_test_and_set(item_t *it, unsigned bit)
{
    if (item_bits(it) & bit) {
        return false;
    }
    return (atomic_fetch_or_explicit(&it->bits, (uint8_t)bit,
                                     memory_order_relaxed) & bit) == 0;
}

static inline unsigned
item_freq(const item_t *it)
{
    return item_bits(it) & ITEM_FREQ_MASK;
}

/* Count an access: freq = min(freq + 1, 3).  Safe under a shared lock. */
static inline void
item_freq_bump(item_t *it)
{
    uint8_t b = (uint8_t)item_bits(it);
    while ((b & ITEM_FREQ_MASK) != ITEM_FREQ_MASK) {
        if (atomic_compare_exchange_weak_explicit(
                &it->bits, &b, (uint8_t)(b + 1), memory_order_relaxed,
                memory_order_relaxed)) {
            return;
        }
    }
}

/* Set the frequency (exclusive lock held). */
static inline void
item_freq_set(item_t *it, unsigned f)
{
    uint8_t b = (uint8_t)item_bits(it);
    while (!atomic_compare_exchange_weak_explicit(
        &it->bits, &b, (uint8_t)((b & ~ITEM_FREQ_MASK) | f),
        memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* The extension block, or NULL. */
static inline char *
item_ext(const item_t *it)
{
    return item_has(it, ITEM_EXT) ? (char *)it->data + it->nkey + it->nvalue
                                  : NULL;
}

static inline uint32_t
item_flags(const item_t *it)
{
    const char *ext = item_ext(it);
    uint32_t f = 0;
    if (ext != NULL && ((uint8_t)ext[0] & EXT_FLAGS)) {
        memcpy(&f, ext + 1, sizeof(f));
    }
    return f;
}

/* The tag part of the extension block (count byte first), or NULL. */
static inline char *
item_tag_block(const item_t *it)
{
    char *ext = item_ext(it);
    if (ext == NULL || !((uint8_t)ext[0] & EXT_TAGS)) {
        return NULL;
    }
    return ext + 1 + (((uint8_t)ext[0] & EXT_FLAGS) ? 4 : 0);
}

static inline size_t
item_ntags(const item_t *it)
{
    const char *tb = item_tag_block(it);
    return tb != NULL ? (uint8_t)tb[0] : 0;
}

static inline unsigned
item_ext_mask(const item_t *it)
{
    const char *ext = item_ext(it);
    return ext != NULL ? (uint8_t)ext[0] : 0;
}

/* The fetch metadata (8 bytes), or NULL. */
static inline char *
item_fetch_block(const item_t *it)
{
    char *ext = item_ext(it);
    unsigned mask;
    size_t off = 1;
    if (ext == NULL || !((mask = (uint8_t)ext[0]) & EXT_FETCH)) {
        return NULL;
    }
    if (mask & EXT_FLAGS) {
        off += 4;
    }
    if (mask & EXT_TAGS) {
        off += 1 + 8 + 8 * (size_t)(uint8_t)ext[off];
    }
    return ext + off;
}

/* Bytes this item's allocation was requested with. */
static inline size_t
item_req_size(const item_t *it);

/* Bytes of this item's extension block. */
static inline size_t
item_ext_bytes(const item_t *it)
{
    return item_has(it, ITEM_EXT)
               ? ext_size(item_flags(it), item_ntags(it),
                          item_ext_mask(it) & (EXT_FETCH | EXT_MARKS))
               : 0;
}

static inline size_t
item_req_size(const item_t *it)
{
    return ITEM_HEADER_SIZE + it->nkey + it->nvalue + item_ext_bytes(it);
}

static inline bool
item_binkey(const item_t *it)
{
    return (item_ext_mask(it) & EXT_BINKEY) != 0;
}

static inline bool
item_negative(const item_t *it)
{
    return (item_ext_mask(it) & EXT_NEGATIVE) != 0;
}

static inline uint64_t
item_tag_epoch(const item_t *it)
{
    uint64_t e;
    memcpy(&e, item_tag_block(it) + 1, sizeof(e));
    return e;
}

static inline void
item_set_tag_epoch(item_t *it, uint64_t e)
{
    memcpy(item_tag_block(it) + 1, &e, sizeof(e));
}

static inline struct tag_rec *
item_tag(const item_t *it, size_t i)
{
    struct tag_rec *r;
    memcpy(&r, item_tag_block(it) + 1 + 8 + 8 * i, sizeof(r));
    return r;
}

static inline void
item_set_tag(item_t *it, size_t i, struct tag_rec *r)
{
    memcpy(item_tag_block(it) + 1 + 8 + 8 * i, &r, sizeof(r));
}

static inline uint64_t
item_cas(const item_t *it)
{
    return atomic_load_explicit(&((item_t *)it)->cas, memory_order_relaxed);
}

static inline uint32_t
item_exptime(const item_t *it)
{
    return atomic_load_explicit(&((item_t *)it)->exptime,
                                memory_order_relaxed);
}

static inline uint32_t
item_atime(const item_t *it)
{
    return atomic_load_explicit(&((item_t *)it)->atime, memory_order_relaxed);
}

/* Allocate an unlinked, private item (solo) with refs = 1, key and flags filled, value
 * uninitialised, room for ntags tags (all NULL: the caller sets each with
 * item_set_tag, handing over one reference per record).  *out_real gets
 * the allocation's real size. */
item_t *item_create(struct mem *m, const void *key, size_t nkey,
                    size_t nvalue, uint32_t flags, size_t ntags,
                    size_t *out_real);

/* As item_create, with room for the extra ext fields (EXT_FETCH, zeroed)
 * and marks (EXT_NEGATIVE). */
item_t *item_create_ext(struct mem *m, const void *key, size_t nkey,
                        size_t nvalue, uint32_t flags, size_t ntags,
                        unsigned extras, size_t *out_real);

/* Give `to` (created with item_ntags(from) tag slots) the tags of `from`,
 * each with a new reference, and from's tag epoch. */
void item_copy_tags(item_t *to, const item_t *from);

/* The bytes an item counts for: its record's size. */
static inline size_t
item_real_size(const item_t *it)
{
    return rec_size(item_req_size(it));
}

/* Add a reference for a counted handle.  False when the count is
 * saturated. */
static inline bool
item_pin(item_t *it)
{
    uint16_t old = atomic_fetch_add_explicit(&it->refs, 1,
                                             memory_order_relaxed);
    if (unlikely(old >= ITEM_REFS_MAX)) {
        atomic_fetch_sub_explicit(&it->refs, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

/* A reference for the engine itself, under the shard's exclusive lock:
 * never fails (ITEM_REFS_MAX leaves room for these above counted pins). */
static inline void
item_ref(item_t *it)
{
    atomic_fetch_add_explicit(&it->refs, 1, memory_order_relaxed);
}

/* Drop a reference to a private item (one no other thread can have seen:
 * see pin.h); frees it when it was the last. */
void item_unref(item_t *it);

/* Free a private item (solo) and release its tag records. */
void item_free(item_t *it);

/* Free a segment whose items are all retired, releasing their tag
 * records. */
void seg_free(struct seg *g);

/* A private (never linked) copy of a live item, refs = 1; NULL on ENOMEM. */
item_t *item_clone(struct mem *m, const item_t *it);

#endif /* CORRAL_ITEM_H */
