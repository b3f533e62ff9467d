/*
 * expire.h - time: the cache clock and memcached's exptime rules.
 *
 * Items store absolute Unix seconds in 32 bits (0 = never).  An exptime
 * from the API is converted once, at the call: 0 stays 0; negative means
 * "already expired" and becomes 1 (a moment long past); up to
 * CORRAL_RELTIME_MAX seconds is relative to now; anything larger is
 * already absolute.  An item is expired when exptime != 0 and
 * exptime <= now.
 */
#ifndef CORRAL_EXPIRE_H
#define CORRAL_EXPIRE_H

#include <stdint.h>
#include <time.h>

#include "corral.h"

/* The clock behind the default corral_clock_fn. */
struct sysclock {
    int64_t sec_offset;    /* Unix seconds minus monotonic seconds */
    int64_t ns_offset;     /* the same, in nanoseconds */
};

/* Unix seconds by the default clock, without nanosecond arithmetic. */
static inline uint32_t
sysclock_seconds(const struct sysclock *sc)
{
    struct timespec ts;
    int64_t s;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    s = (int64_t)ts.tv_sec + sc->sec_offset;
    return s > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

void sysclock_init(struct sysclock *sc);

/* The default corral_clock_fn (coarse: about a millisecond). */
uint64_t sysclock_now(void *sc);

/* The same time base, read precisely (for durations). */
uint64_t sysclock_precise(const struct sysclock *sc);

/* exptime (API form) to absolute seconds. */
static inline uint32_t
exptime_abs(int64_t exptime, uint32_t now)
{
    int64_t t;
    if (exptime == 0) {
        return 0;
    }
    if (exptime < 0) {
        return 1;
    }
    t = exptime <= CORRAL_RELTIME_MAX ? (int64_t)now + exptime : exptime;
    if (t > (int64_t)UINT32_MAX) {
        t = UINT32_MAX;
    }
    return t == 0 ? 1 : (uint32_t)t;
}

static inline int
exptime_passed(uint32_t exptime, uint32_t now)
{
    return exptime != 0 && exptime <= now;
}

/* Remaining seconds: -1 never, else >= 0. */
static inline int64_t
exptime_ttl(uint32_t exptime, uint32_t now)
{
    if (exptime == 0) {
        return -1;
    }
    return exptime > now ? (int64_t)exptime - now : 0;
}

#endif /* CORRAL_EXPIRE_H */
