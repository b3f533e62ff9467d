/*
 * stats.h - statistics: names from CORRAL_STATS_TABLE in corral.h, so the
 * public struct and the slots can never disagree.
 *
 * Gauges (curr_items, bytes, mem_used, ...) live per shard and change
 * under the shard's exclusive lock; they are relaxed atomics so that
 * corral_stats() reads them without locks.
 *
 * Counters are the hot ones (every lookup bumps one), so they are kept
 * per thread: each thread that uses a cache gets its own block of
 * counters in that cache's registry, which it alone writes with plain
 * (relaxed load, relaxed store) increments: no locked instruction, no
 * shared cache line on the read path.  A snapshot sums the blocks; a
 * reset records a baseline to subtract, since it cannot clear other
 * threads' blocks.  A thread finds its block through a small
 * thread-local map from cache id to block.  Past STATS_BLOCKS_MAX
 * threads, further threads share one block updated with atomic adds.
 *
 *   registry --> block(thread A) --> block(thread B) --> ...
 *   thread-local: [cache id -> block] x STATS_TLS_SLOTS
 */
#ifndef CORRAL_STATS_H
#define CORRAL_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "corral.h"

#define STATS_BLOCKS_MAX 256u
#define STATS_TLS_SLOTS 4u

enum stat_id {
#define STAT_ENUM(name, kind, text) ST_##name,
    CORRAL_STATS_TABLE(STAT_ENUM)
#undef STAT_ENUM
    ST_COUNT
};

/* Gauges of one shard (counter slots unused). */
struct stats {
    _Atomic uint64_t v[ST_COUNT];
};

static inline void
stat_add(struct stats *s, enum stat_id id, uint64_t n)
{
    add_relaxed(&s->v[id], n);
}

static inline void
stat_sub(struct stats *s, enum stat_id id, uint64_t n)
{
    sub_relaxed(&s->v[id], n);
}

static inline void
stat_set(struct stats *s, enum stat_id id, uint64_t n)
{
    st_relaxed(&s->v[id], n);
}

void stats_init(struct stats *s);

/* Add the gauges of s into out (a corral_stats_t viewed as an array). */
void stats_sum_gauges(const struct stats *s, uint64_t *out);

/* A thread's counters for one cache. */
struct stats_block {
    _Atomic uint64_t v[ST_COUNT];
    struct stats_block *next;
} CR_ALIGNED(CR_CACHELINE);

struct stats_reg {
    pthread_mutex_t lock;      /* guards blocks, nblocks and base */
    uint64_t id;               /* unique per cache, never reused */
    struct stats_block *blocks;
    unsigned nblocks;
    struct stats_block shared; /* for threads past STATS_BLOCKS_MAX */
    uint64_t base[ST_COUNT];   /* subtracted: the last reset */
};

struct stats_tls {
    uint64_t id;
    struct stats_block *block;
};

/* Initial-exec TLS: a direct %fs-relative access instead of a call to
 * __tls_get_addr on every count.  The map is small enough for the static
 * TLS surplus glibc keeps for libraries loaded with dlopen. */
extern _Thread_local struct stats_tls stats_tls[STATS_TLS_SLOTS]
    __attribute__((tls_model("initial-exec")));

bool stats_reg_init(struct stats_reg *r);
void stats_reg_deinit(struct stats_reg *r);

/* count_add() when the cache is not the thread's most recent one: find
 * or register the thread's block and move it to the front of the map. */
void count_add_slow(struct stats_reg *r, enum stat_id id, uint64_t n);

/* Count n events.  The thread's block for the cache it used last is the
 * map's first entry, and only this thread writes it: a compare and a plain
 * add.  (Threads past STATS_BLOCKS_MAX share a block; their entries never
 * match here, so their adds take the slow, atomic path.) */
static inline void
count_add(struct stats_reg *r, enum stat_id id, uint64_t n)
{
    if (likely(stats_tls[0].id == r->id)) {
        struct stats_block *b = stats_tls[0].block;
        st_relaxed(&b->v[id], ld_relaxed(&b->v[id]) + n);
    } else {
        count_add_slow(r, id, n);
    }
}

/* Add every counter (minus the reset baseline) into out. */
void stats_reg_sum(struct stats_reg *r, uint64_t *out);

/* Make every counter read zero from now on. */
void stats_reg_reset(struct stats_reg *r);

#endif /* CORRAL_STATS_H */
