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

/*
 * Whole monotonic seconds, read on every lookup, so they must cost next to
 * nothing.  Each thread keeps the second it last read and the span of
 * time-stamp-counter ticks, from that read, within which the second
 * certainly has not ended: a lookup inside the span costs one rdtsc and a
 * compare; the first one past it reads the clock again.  The span comes
 * from the counter's rate (measured against CLOCK_MONOTONIC, then lowered
 * by 1/64 so that it ends early rather than late), and exists only where
 * the kernel itself keeps time with the counter (its clocksource is "tsc",
 * so the counter is constant-rate and synchronized across CPUs).
 * Elsewhere, and until the rate is known, every call reads the clock.
 */
struct clock_tls {
    uint64_t tsc_from;     /* the counter at the last read */
    uint64_t tsc_span;     /* ticks from there that stay in `sec`; 0 none */
    int64_t sec;           /* monotonic seconds at the last read */
};

extern _Thread_local struct clock_tls clock_tls
    __attribute__((tls_model("initial-exec")));

/* Read the clock and renew the calling thread's span. */
int64_t mono_seconds_read(void);

static inline int64_t
mono_seconds(void)
{
#if defined(__x86_64__)
    uint64_t t = __builtin_ia32_rdtsc();
    if (__builtin_expect(t - clock_tls.tsc_from < clock_tls.tsc_span, 1)) {
        return clock_tls.sec;
    }
#endif
    return mono_seconds_read();
}

/* Unix seconds by the default clock, without nanosecond arithmetic. */
static inline uint32_t
sysclock_seconds(const struct sysclock *sc)
{
    int64_t s = mono_seconds() + sc->sec_offset;
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
