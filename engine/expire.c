/*
 * expire.c - the default clock: the monotonic clock shifted by a whole
 * number of seconds, chosen once so that it reads wall time (to within
 * half a second); it never steps backwards.  Lookups read the coarse
 * monotonic clock (a few nanoseconds, millisecond resolution: item times
 * are whole seconds); durations, such as a load's, read the precise one.
 * Both have one base, so an item's whole-second expiry and a refresh
 * decided in nanoseconds (XFetch, fresh windows) agree on when a second
 * begins.  Whole seconds for lookups come from mono_seconds() (see
 * expire.h), which reads the clock about once a second per thread.
 */
#include "expire.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
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
    uint64_t mono = read_clock(CLOCK_MONOTONIC);

    sc->sec_offset = (int64_t)((real + 500000000u) / 1000000000u) -
                     (int64_t)(mono / 1000000000u);
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

_Thread_local struct clock_tls clock_tls
    __attribute__((tls_model("initial-exec")));

#if defined(__x86_64__)
/* Counter ticks per nanosecond in 32.32 fixed point, lowered by 1/64;
 * 0 while unknown, TSC_UNUSABLE when the kernel does not trust the
 * counter.  Measured from the first read (calib_tsc, calib_ns) to the
 * first one at least CALIB_NS later. */
#define TSC_UNUSABLE UINT64_MAX
#define CALIB_NS 20000000u
static _Atomic uint64_t tsc_rate;
static _Atomic uint64_t calib_tsc, calib_ns;
static _Atomic int tsc_checked; /* 0 not yet, 1 looking, 2 usable */

static bool
kernel_uses_tsc(void)
{
    char buf[16] = "";
    FILE *f = fopen(
        "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        "re");
    if (f == NULL) {
        return false;
    }
    if (fgets(buf, sizeof(buf), f) == NULL) {
        buf[0] = '\0';
    }
    fclose(f);
    return strcmp(buf, "tsc\n") == 0;
}

static uint64_t
tsc_rate_update(uint64_t tsc, uint64_t ns)
{
    uint64_t rate = atomic_load_explicit(&tsc_rate, memory_order_relaxed);
    uint64_t t0, ns0;
    int checked;

    if (rate != 0) {
        return rate;
    }
    checked = atomic_load(&tsc_checked);
    if (checked == 0) {
        /* One thread looks; the others read the clock meanwhile. */
        if (!atomic_compare_exchange_strong(&tsc_checked, &checked, 1)) {
            return 0;
        }
        if (!kernel_uses_tsc()) {
            atomic_store(&tsc_rate, TSC_UNUSABLE);
            return TSC_UNUSABLE;
        }
        atomic_store(&tsc_checked, 2);
    } else if (checked == 1) {
        return 0;
    }
    t0 = atomic_load(&calib_tsc);
    if (t0 == 0) {
        /* The first reader's pair is the start of the measurement; ns
         * before tsc, so that a reader seeing tsc sees its ns. */
        uint64_t zero = 0;
        if (atomic_compare_exchange_strong(&calib_ns, &zero, ns)) {
            atomic_store(&calib_tsc, tsc);
        }
        return 0;
    }
    ns0 = atomic_load(&calib_ns);
    if (ns < ns0 + CALIB_NS || tsc <= t0) {
        return 0;
    }
    {
        unsigned __int128 r =
            ((unsigned __int128)(tsc - t0) << 32) / (ns - ns0);
        rate = (uint64_t)(r - r / 64);
    }
    atomic_store(&tsc_rate, rate == 0 ? TSC_UNUSABLE : rate);
    return rate;
}
#endif

int64_t
mono_seconds_read(void)
{
    struct timespec ts;
#if defined(__x86_64__)
    uint64_t tsc, rate;

    if (atomic_load_explicit(&tsc_rate, memory_order_relaxed) !=
        TSC_UNUSABLE) {
        /* The counter first: the span then starts no later than the
         * clock reading it is computed from. */
        tsc = __builtin_ia32_rdtsc();
        clock_gettime(CLOCK_MONOTONIC, &ts);
        rate = tsc_rate_update(tsc, (uint64_t)ts.tv_sec * 1000000000u +
                                        (uint64_t)ts.tv_nsec);
        if (rate != TSC_UNUSABLE) {
            clock_tls.tsc_from = tsc;
            clock_tls.sec = ts.tv_sec;
            clock_tls.tsc_span =
                rate == 0 ? 0
                          : (uint64_t)(((unsigned __int128)(
                                            1000000000u -
                                            (uint64_t)ts.tv_nsec) *
                                        rate) >> 32);
            return ts.tv_sec;
        }
    }
#endif
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts.tv_sec;
}
