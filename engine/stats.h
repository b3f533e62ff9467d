/*
 * stats.h - per-shard statistics slots, indexed by names generated from
 * CORRAL_STATS_TABLE in corral.h, so the public struct and the slots can
 * never disagree.  Every slot is a relaxed atomic: counters are bumped
 * under a shared lock by many readers at once.
 */
#ifndef CORRAL_STATS_H
#define CORRAL_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "common.h"
#include "corral.h"

enum stat_id {
#define STAT_ENUM(name, kind, text) ST_##name,
    CORRAL_STATS_TABLE(STAT_ENUM)
#undef STAT_ENUM
    ST_COUNT
};

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

#define STAT_INC(s, name) stat_add((s), ST_##name, 1)

void stats_init(struct stats *s);

/* Add every slot of s into out (a corral_stats_t viewed as an array). */
void stats_sum(const struct stats *s, uint64_t *out);

/* Zero the counters of s, keeping the gauges. */
void stats_reset_counters(struct stats *s);

#endif /* CORRAL_STATS_H */
