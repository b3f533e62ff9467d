/*
 * fault.c - the test hook behind srv_malloc() and friends, see fault.h.
 *
 * Armed by CORRAL_TEST_FAIL_ALLOC=<n> in debug builds: a process-wide
 * counter numbers the allocations, and those whose number is a multiple
 * of n fail.  The counter is shared by the worker threads, so which
 * request meets a failure varies from run to run, while the rate stays
 * fixed.
 */
#include "fault.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "log.h"

#define FAULT_ENV "CORRAL_TEST_FAIL_ALLOC"

#ifdef CORRAL_DEBUG

static unsigned long fault_every;     /* 0: disarmed; set before threads */
static atomic_ulong fault_counter;

bool
fault_alloc_fails(void)
{
    if (fault_every == 0) {
        return false;
    }
    return (atomic_fetch_add_explicit(&fault_counter, 1,
                                      memory_order_relaxed) +
            1) % fault_every == 0;
}

int
fault_init(void)
{
    const char *v = getenv(FAULT_ENV);
    char *end;
    unsigned long n;

    if (v == NULL || v[0] == '\0') {
        return 0;
    }
    errno = 0;
    n = strtoul(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < 2) {
        log_error("%s=\"%s\": expected a whole number of at least 2",
                  FAULT_ENV, v);
        return -1;
    }
    fault_every = n;
    log_warn("%s: every %lu-th server allocation fails (a test hook of "
             "debug builds)", FAULT_ENV, n);
    return 0;
}

#else /* !CORRAL_DEBUG */

int
fault_init(void)
{
    if (getenv(FAULT_ENV) != NULL) {
        log_warn("%s is ignored: allocation failures are injected only "
                 "in builds configured with --enable-debug", FAULT_ENV);
    }
    return 0;
}

#endif /* CORRAL_DEBUG */
