/*
 * expire.c - the default clock: the monotonic clock shifted by a whole
 * number of seconds, chosen once so that it reads wall time (to within
 * half a second); it never steps backwards.  Lookups read the coarse
 * monotonic clock (a few nanoseconds, millisecond resolution: item times
 * are whole seconds); durations, such as a load's, read the precise one.
 * Both have one base, so an item's whole-second expiry and a refresh
 * decided in nanoseconds (XFetch, fresh windows) agree on when a second
 * begins.
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
    uint64_t real = read_clock(CLOCK_REALTIME);
    uint64_t coarse = read_clock(CLOCK_MONOTONIC_COARSE);

    sc->sec_offset = (int64_t)((real + 500000000u) / 1000000000u) -
                     (int64_t)(coarse / 1000000000u);
    sc->ns_offset = sc->sec_offset * (int64_t)1000000000;
}

uint64_t
sysclock_now(void *ud)
{
    const struct sysclock *sc = ud;
    return (uint64_t)((int64_t)read_clock(CLOCK_MONOTONIC_COARSE) +
                      sc->ns_offset);
}

uint64_t
sysclock_precise(const struct sysclock *sc)
{
    return (uint64_t)((int64_t)read_clock(CLOCK_MONOTONIC) + sc->ns_offset);
}
