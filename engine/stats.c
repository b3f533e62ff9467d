/*
 * stats.c - see stats.h.
 */
#include "stats.h"

static const unsigned char stat_is_counter[ST_COUNT] = {
#define STAT_KIND_counter 1
#define STAT_KIND_gauge 0
#define STAT_KIND(name, kind, text) STAT_KIND_##kind,
    CORRAL_STATS_TABLE(STAT_KIND)
#undef STAT_KIND
};

void
stats_init(struct stats *s)
{
    for (int i = 0; i < ST_COUNT; i++) {
        atomic_init(&s->v[i], 0);
    }
}

void
stats_sum(const struct stats *s, uint64_t *out)
{
    for (int i = 0; i < ST_COUNT; i++) {
        out[i] += ld_relaxed(&((struct stats *)s)->v[i]);
    }
}

void
stats_reset_counters(struct stats *s)
{
    for (int i = 0; i < ST_COUNT; i++) {
        if (stat_is_counter[i]) {
            st_relaxed(&s->v[i], 0);
        }
    }
}
