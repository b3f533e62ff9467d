/*
 * expire.c - the default clock: wall time read once, then advanced by the
 * monotonic clock so that it never steps backwards.
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
}

uint64_t
sysclock_now(void *ud)
{
    const struct sysclock *sc = ud;
    return sc->real0 + (read_clock(CLOCK_MONOTONIC) - sc->mono0);
}
