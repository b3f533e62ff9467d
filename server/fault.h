/*
 * fault.h - allocation failure injection for tests (debug builds only).
 *
 * corrald's allocations made while serving (connections, read blocks,
 * reply arenas, iovec arrays, hand-off queues, TLS staging buffers) go
 * through srv_malloc(), srv_calloc() and srv_realloc().  In a build
 * configured with --enable-debug, the environment variable
 *
 *   CORRAL_TEST_FAIL_ALLOC=<n>     (n >= 2)
 *
 * makes every n-th of those allocations fail, in all threads together,
 * so that tests can check that a failure gives an error reply or a
 * closed connection, never a crash or a leak.  In other builds the
 * wrappers are malloc, calloc and realloc, and the variable is ignored
 * with a warning.  Startup allocations do not go through here: a
 * failure there ends the process with a message anyway.
 *
 * Threads: fault_init() runs in main before any thread starts; the
 * wrappers are thread-safe (one relaxed atomic when armed, nothing else
 * in ordinary builds).
 */
#ifndef CORRALD_FAULT_H
#define CORRALD_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

/* fault_init - read CORRAL_TEST_FAIL_ALLOC; logs what it armed.
 * Returns 0, or -1 for a malformed value (a message is logged). */
int fault_init(void);

#ifdef CORRAL_DEBUG
/* fault_alloc_fails - true when this allocation is to fail. */
bool fault_alloc_fails(void);
#else
static inline bool
fault_alloc_fails(void)
{
    return false;
}
#endif

static inline void *
srv_malloc(size_t n)
{
    return fault_alloc_fails() ? NULL : malloc(n);
}

static inline void *
srv_calloc(size_t k, size_t n)
{
    return fault_alloc_fails() ? NULL : calloc(k, n);
}

/* On failure @p is left as it was, as with realloc. */
static inline void *
srv_realloc(void *p, size_t n)
{
    return fault_alloc_fails() ? NULL : realloc(p, n);
}

#endif /* CORRALD_FAULT_H */
