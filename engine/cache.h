/*
 * cache.h - the cache and its shards, shared by the engine's files (never
 * installed).
 *
 * Locks.  Each shard has one rwlock; it guards the shard's table, queues,
 * budgets, CAS sequence, flush mark and retired list.  Lookups take it
 * shared (a hit only touches atomics in the item, bits and atime, and the
 * thread's own pin slot); everything that links, unlinks, moves or frees
 * items takes it exclusive.  No code path holds two shard locks at once,
 * and no user callback runs under a shard lock.  Statistics are relaxed
 * atomics read without locks.
 *
 * Reference counts.  A linked item holds one reference for the cache;
 * engine operations and counted handles add their own (pin.h).  Unlinking
 * from the table clears ITEM_LINKED and drops the cache's reference; the
 * item's record stays in its segment (and its memory counted) until the
 * eviction walk passes it.  The last reference retires the item; its
 * segment is freed once all its items are retired, its queue has released
 * it, and no reader's pin slot points into it.
 */
#ifndef CORRAL_CACHE_H
#define CORRAL_CACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common.h"
#include "corral.h"
#include "events.h"
#include "evict.h"
#include "expire.h"
#include "fetch.h"
#include "hash.h"
#include "item.h"
#include "lock.h"
#include "mem.h"
#include "pin.h"
#include "stats.h"
#include "table.h"
#include "tag.h"

/* Larger values are not overwritten in place: the copy under the lock
 * would cost more than the removed copy waiting for the sweep. */
#define SHARD_OVERWRITE_MAX 4096u

/* Server-side early refresh (CORRAL_GET_EARLY): a direct-mapped memory,
 * per shard, of when a key's recache token was handed out and how long
 * the store that followed it took.  Entries are keyed by the whole hash
 * only: a collision perturbs an estimate, nothing more.  Atomics: the
 * token is handed out under the shared lock. */
#define EARLY_SLOTS 1024u

struct early_slot {
    _Atomic uint64_t hash;
    _Atomic uint64_t won_at_ms;  /* 0: no win waiting for its store */
    _Atomic uint32_t delta_ms;   /* the last win-to-store time */
    _Atomic uint32_t won_exp;    /* the item's exptime at the last win */
};

struct shard {
    /* The first cache line holds what every operation touches besides the
     * table: a lookup takes the lock and reads the flush and rule marks, a
     * write also takes a CAS and counts itself.  Two threads using the
     * shard in turn then pass two lines between them (this and the
     * table's), not five. */
    struct rwlock lock;
    struct corral *cache;  /* the owner, for its counters */
    uint64_t cas_seq;      /* last CAS sequence number handed out */
    uint64_t flush_cas;    /* items with a CAS <= this are flushed */
    _Atomic(struct early_slot *) early; /* allocated on first use */
    unsigned writes;       /* writes so far, for the sweep's pace */
    unsigned nrules;
    unsigned index;
    struct table table;
    size_t mem_used;       /* real bytes: segments, table, ghost */
    struct policy policy;
    size_t budget;         /* byte budget */
    size_t item_budget;    /* item budget, 0 = none */
    size_t evicted_bytes;  /* since this shard last asked for a purge */
    struct prefix_rule *rules; /* pending prefix rules, oldest first */
    uint64_t inval_seq;    /* prefix rules added so far (leases compare) */
    uint64_t retired_seq;  /* highest sequence of a retired rule */
    struct seg *retired;   /* segments to free once no pin slot points
                            * into them, linked through next */
    unsigned nretired;
    unsigned reap_at;      /* scan the slots at this many retired */
    size_t retired_bytes;  /* retired since the last scan */
    struct keyrecs keyrecs; /* loads in flight and failing keys */
    struct stats stats;
} CR_ALIGNED(CR_CACHELINE);

struct corral {
    corral_config_t cfg;   /* resolved configuration */
    unsigned shard_bits;
    unsigned nshards;
    uint64_t seed;         /* hash seed */
    struct mem mem;
    struct sysclock sysclock;
    _Atomic size_t max_memory;    /* the limit now (corral_set_max_memory) */
    _Atomic uint32_t oldest_live; /* delayed flush: items last stored or
                                   * accessed at or before this second are
                                   * flushed once it has come; 0 = none */
    struct stats_reg counters; /* per-thread counter blocks */
    struct tags tags;
    struct events events;
    struct events evictions;   /* corral_subscribe_evictions */
    struct fetch_state fetch;
    _Atomic bool purge_due;    /* a shard evicted enough: mem_purge() */
    _Atomic(struct writer *) writer; /* write-through/behind, or NULL */
    _Atomic uint64_t write_seq;
    struct shard *shards;
};

/* Bump a counter of the cache a shard belongs to. */
#define COUNT(s, name) count_add(&(s)->cache->counters, ST_##name, 1)
#define COUNT_ID(s, id) count_add(&(s)->cache->counters, (id), 1)

/* Why an item is not live. */
enum item_state {
    ITEM_LIVE = 0,
    ITEM_EXPIRED,
    ITEM_FLUSHED,
    ITEM_INVALIDATED, /* by tag or prefix */
    ITEM_NEGATIVE     /* live, but a cached "does not exist": a miss for
                       * every call except corral_fetch */
};

/* States whose items can be reclaimed. */
static inline bool
item_state_dead(enum item_state st)
{
    return st != ITEM_LIVE && st != ITEM_NEGATIVE;
}

/* True if a pending prefix rule of the shard covers the item. */
static inline bool
prefix_rules_match(const struct shard *s, const item_t *it)
{
    for (unsigned i = 0; i < s->nrules; i++) {
        const struct prefix_rule *r = &s->rules[i];
        if (item_cas(it) <= r->cas && it->nkey >= r->len &&
            memcmp(it->data, r->prefix, r->len) == 0) {
            return true;
        }
    }
    return false;
}

/* True if one of the item's tags was invalidated after it was stored. */
static inline bool
item_tags_invalid(const item_t *it)
{
    size_t n = item_ntags(it);
    if (n != 0) {
        uint64_t e = item_tag_epoch(it);
        for (size_t i = 0; i < n; i++) {
            if (tag_rec_invalid(item_tag(it, i), e)) {
                return true;
            }
        }
    }
    return false;
}

static inline uint64_t
cache_now_ns(const struct corral *c)
{
    return c->cfg.clock(c->cfg.clock_ud);
}

/* For measuring durations: the precise clock when the cache runs on the
 * system's. */
static inline uint64_t
cache_now_precise_ns(const struct corral *c)
{
    if (c->cfg.clock == sysclock_now) {
        return sysclock_precise(&c->sysclock);
    }
    return c->cfg.clock(c->cfg.clock_ud);
}

static inline uint32_t
cache_now(const struct corral *c)
{
    uint64_t s;
    if (likely(c->cfg.clock == sysclock_now)) {
        return sysclock_seconds(&c->sysclock);
    }
    s = cache_now_ns(c) / 1000000000u;
    return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

static inline struct shard *
cache_shard(struct corral *c, uint64_t h)
{
    return &c->shards[hash_shard(h, c->shard_bits)];
}

/* True when nothing can make the item anything but live: no expiry
 * passed, no flush or prefix rule of its shard or delayed flush pending,
 * no extension (tags, negative mark).  The lookups' first test; item_state()
 * decides the rest.  Any shard lock. */
static inline bool
item_plainly_live(const struct corral *c, const struct shard *s,
                  const item_t *it, uint32_t now)
{
    uint32_t e = item_exptime(it);
    /* The CAS is read only after a flush: it is the one header field
     * outside the 16 bytes before the key, so an item is more often
     * read from one cache line. */
    return (e == 0 || e > now) &&
           (s->flush_cas == 0 || item_cas(it) > s->flush_cas) &&
           (item_bits(it) & ITEM_EXT) == 0 && s->nrules == 0 &&
           ld_relaxed(&((struct corral *)c)->oldest_live) == 0;
}

/* Whether an item is live.  Any shard lock. */
static inline enum item_state
item_state(const struct corral *c, const struct shard *s, const item_t *it,
           uint32_t now)
{
    uint32_t ol;
    if (exptime_passed(item_exptime(it), now)) {
        return ITEM_EXPIRED;
    }
    if (item_cas(it) <= s->flush_cas) {
        return ITEM_FLUSHED;
    }
    ol = ld_relaxed(&((struct corral *)c)->oldest_live);
    if (ol != 0 && ol <= now && item_atime(it) <= ol) {
        return ITEM_FLUSHED;
    }
    if (unlikely(s->nrules != 0) && prefix_rules_match(s, it)) {
        return ITEM_INVALIDATED;
    }
    if (unlikely(item_has(it, ITEM_EXT))) {
        if (item_tags_invalid(it)) {
            return ITEM_INVALIDATED;
        }
        if (item_negative(it)) {
            return ITEM_NEGATIVE;
        }
    }
    return ITEM_LIVE;
}

static inline void
shard_wrlock(struct shard *s)
{
    rw_wrlock(&s->lock);
}

static inline void
shard_rdlock(struct shard *s)
{
    rw_rdlock(&s->lock);
}

static inline void
shard_unlock(struct shard *s)
{
    rw_unlock(&s->lock);
}

/* shard.c: operations under the shard's exclusive lock. */

/* Next CAS for this shard. */
uint64_t shard_next_cas(struct corral *c, struct shard *s);

/* Link the private item *itp: queue and table (replacing old_it when
 * given).  On success *itp is the linked item: *itp itself, whose
 * reference the cache now owns, or a copy of it in a shared segment
 * (then the caller still owns the original and frees it).  False on
 * ENOMEM; the caller still owns *itp. */
bool shard_link(struct corral *c, struct shard *s, uint64_t h, item_t **itp,
                item_t *old_it);

/* Whether nothing but `refs` engine references holds the item: no counted
 * handle and no pin slot, so that it may be written in place.  Exclusive
 * lock.  O(pin blocks). */
static inline bool
item_unshared(const item_t *it, unsigned refs)
{
    /* acquire: the last counted reader's release happens before our writes
     * into the memory it was reading (pin_held orders the slots') */
    return atomic_load_explicit(&((item_t *)it)->refs,
                                memory_order_acquire) == refs &&
           !pin_held(it);
}

/* Whether a store can copy `it` into `old` instead of linking it: it
 * takes the same record size (so that old's segment stays walkable), and
 * nothing holds old beyond the queue's and the caller's references (no
 * reader has it pinned).  Exclusive lock. */
static inline bool
shard_can_overwrite(const item_t *old, const item_t *it)
{
    return item_has(old, ITEM_LINKED) &&
           it->nkey + (size_t)it->nvalue <= SHARD_OVERWRITE_MAX &&
           item_real_size(it) == item_real_size(old) &&
           item_unshared(old, 2);
}

/* Drop an engine reference to an item that may have been shared (linked,
 * or handed to readers); the last one retires it.  Exclusive lock (else
 * pin_unref). */
void shard_unref(struct shard *s, item_t *it);

/* Free the retired segments no pin slot points into.  Exclusive lock. */
void shard_reap(struct shard *s);

/* Copy `it` (same key) into `old` in place, with a new CAS; old keeps its
 * queue position, table slot and eviction credit.  it is left intact (the
 * caller drops its reference).  Exclusive lock. */
void shard_overwrite(struct shard *s, item_t *old, const item_t *it,
                     uint64_t cas);

/* Unlink an item from the table and drop the cache's reference (its
 * record stays in its segment until the eviction walk passes it). */
void shard_unlink(struct corral *c, struct shard *s, uint64_t h,
                  item_t *it);

/* Give the shard a new byte budget, evicting down to it now. */
void shard_set_budget(struct shard *s, size_t budget);

/* Evict until `bytes` more (and `items` more items) fit.  False if it
 * cannot. */
bool shard_make_room(struct corral *c, struct shard *s, size_t bytes,
                     size_t items);

/* Move up to n slots of a growing table (exclusive lock). */
void shard_migrate(struct shard *s, size_t n);

/* Table slots moved per write while a table grows, and by a reader that
 * found one growing and the lock free. */
#define SHARD_MIGRATE_PER_WRITE 32u
#define SHARD_MIGRATE_BY_READER 1024u

/* Sweep up to n records of each queue; returns items unlinked. */
size_t shard_sweep(struct corral *c, struct shard *s, size_t n);

/* Release the open segments that hold nothing linked. */
void shard_trim(struct corral *c, struct shard *s);

/* End of every write: a little sweeping finds expired items. */
void shard_write_done(struct corral *c, struct shard *s);

/* Find a live item, unlinking a dead one found on the way.  Exclusive. */
item_t *shard_find_live(struct corral *c, struct shard *s, uint64_t h,
                        const void *key, size_t nkey, uint32_t now,
                        enum item_state *out_dead_state);

/* Record an access. */
static inline void
item_touch_access(item_t *it, uint32_t now)
{
    uint8_t b = (uint8_t)item_bits(it);
    const uint8_t full = ITEM_FREQ_MASK | ITEM_FETCHED;

    /* A hot item is saturated and fetched already: nothing to write.
     * Otherwise one compare-and-swap counts the access and marks the item
     * fetched (the counter is the low bits: +1 cannot carry out of it). */
    while ((b & full) != full) {
        uint8_t nb = (uint8_t)((b | ITEM_FETCHED) +
                               ((b & ITEM_FREQ_MASK) != ITEM_FREQ_MASK));
        if (atomic_compare_exchange_weak_explicit(
                &it->bits, &b, nb, memory_order_relaxed,
                memory_order_relaxed)) {
            break;
        }
    }
    if (item_atime(it) != now) {
        atomic_store_explicit(&it->atime, now, memory_order_relaxed);
    }
}

/* Add a prefix rule to the shard (exclusive lock). */
void shard_add_prefix_rule(struct corral *c, struct shard *s,
                           const void *prefix, size_t len);

/* Drop rules that a flush made moot (exclusive lock). */
void shard_prune_prefix_rules(struct shard *s);

bool shard_init(struct corral *c, struct shard *s, unsigned index);

/* corral.c: shared by the access-pattern files. */

/* Link *itp in place of `old` (referenced by the caller, or NULL) or as
 * a new key, evicting to make room; breaks leases, records the overwrite
 * event.  On success *itp is the item now linked.  Either that is the
 * caller's item, and the cache owns the caller's reference; or *itp was
 * copied into old, *itp is now old, and the caller still holds its
 * reference to its own item (never linked: free it after the lock is
 * released, off the critical section).  Exclusive lock. */
corral_status_t cache_install(struct corral *c, struct shard *s, uint64_t h,
                              item_t **itp, item_t *old, uint64_t *out_cas);

/* Deliver recorded events; no engine lock held.  Does nothing while the
 * thread holds delivery back. */
void cache_deliver(struct corral *c);

/* Hold back (true) this thread's delivery of events, or stop holding it
 * back (false; holds nest): writer.c changes the cache under a key lock
 * that a subscriber calling corral_put() would wait for, and delivers
 * after releasing it. */
void cache_hold_delivery(bool hold);

/* Pin an item for a caller (see pin.h for when this may be called): a
 * slot, else a counted reference, else (the count saturated) a private
 * copy.  NULL without memory for the copy. */
corral_item_t *pin_for_caller(struct corral *c, item_t *it);

/* writer.c: flush queued writes and free the writer (destroy). */
void writer_close(struct corral *c);
void shard_deinit(struct shard *s);

#endif /* CORRAL_CACHE_H */
