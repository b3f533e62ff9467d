/*
 * expire.c - the default clock: wall time read once, then advanced by the
 * monotonic clock so that it never steps backwards.  Lookups read the
 * coarse monotonic clock (a few nanoseconds, millisecond resolution: item
 * times are whole seconds); durations, such as a load's, use the precise
 * one.
 */
#include "expire.h"

#include <time.h>

static uint64_t
read_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
sysclock_init(struct sysclock *sc)
{
    sc->real0 = read_clock(CLOCK_REALTIME);
    sc->mono0 = read_clock(CLOCK_MONOTONIC);
    sysclock_init_coarse(sc);
}

void
sysclock_init_coarse(struct sysclock *sc)
{
    sc->coarse0 = read_clock(CLOCK_MONOTONIC_COARSE);
    sc->sec_offset = (int64_t)((sc->real0 + 500000000u) / 1000000000u) -
                     (int64_t)(sc->coarse0 / 1000000000u);
}

uint64_t
sysclock_now(void *ud)
{
    const struct sysclock *sc = ud;
    uint64_t m = read_clock(CLOCK_MONOTONIC_COARSE);
    return sc->real0 + (m > sc->coarse0 ? m - sc->coarse0 : 0);
}

uint64_t
sysclock_precise(const struct sysclock *sc)
{
    return sc->real0 + (read_clock(CLOCK_MONOTONIC) - sc->mono0);
}
