/*
 * common.h - small helpers every engine file uses: assertions, branch
 * hints, alignment, and the symbol-visibility switch.
 *
 * CR_ASSERT states an invariant of the engine itself.  It is checked in
 * debug builds (--enable-debug) and compiled out otherwise; misuse of the
 * public API is checked with assert() in the same builds.
 */
#ifndef CORRAL_COMMON_H
#define CORRAL_COMMON_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#ifdef CORRAL_DEBUG
#define CR_ASSERT(cond) assert(cond)
#else
#define CR_ASSERT(cond) ((void)0)
#endif

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define CR_CACHELINE 64
#define CR_ALIGNED(n) __attribute__((aligned(n)))
#define CR_UNUSED __attribute__((unused))
/* For the few helpers of the lookup path that the compiler would
 * otherwise call out of line. */
#define CR_INLINE inline __attribute__((always_inline))

#define CR_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CR_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Relaxed atomics: counters and flags that order nothing. */
#define ld_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define st_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define sub_relaxed(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)

#endif /* CORRAL_COMMON_H */
