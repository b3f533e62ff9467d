/*
 * mem.h - allocation with real-size accounting and failure injection.
 *
 * Every engine allocation goes through here.  Normal builds use jemalloc's
 * non-standard API: nallocx() tells the size class a request will really
 * occupy, so the memory limit counts what the process actually spends.
 * Sanitizer builds (CORRAL_MEM_LIBC) use malloc and malloc_usable_size(),
 * so ASan and TSan see every allocation.
 *
 * Failure injection (for tests): mem_fail_after(m, n) makes the n-th
 * allocation from now through m fail once (Lua's "failnext").
 */
#ifndef CORRAL_MEM_H
#define CORRAL_MEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct mem {
    _Atomic long fail_countdown; /* > 0: allocations left before a failure */
};

void mem_init(struct mem *m);

/* Allocate size bytes (16-byte aligned).  *out_real gets the bytes the
 * allocation really occupies.  NULL on failure. */
void *mem_alloc(struct mem *m, size_t size, size_t *out_real);

/* As mem_alloc, zero-filled. */
void *mem_zalloc(struct mem *m, size_t size, size_t *out_real);

/* Allocate size bytes aligned to align (a power of two, at most size),
 * for a size the caller knows to be a real size (a page multiple).  NULL
 * on failure. */
void *mem_alloc_aligned(struct mem *m, size_t size, size_t align);

/*
 * Zero-filled arrays (hash tables, the ghost).  An array sized exactly for
 * what it must hold (`exact`) of MEM_MAP_MIN or more is mapped from the
 * system by the page: the allocator's large size classes are a quarter
 * apart, and a table sized for the count a budget holds would otherwise
 * lose up to a fifth of its bytes to the class above.  Other arrays take
 * the allocator's class (a growing table's spare slots shorten its
 * probes until it grows again).  mem_array_size is what an array of size
 * bytes really takes; mem_array_free needs the size and `exact` it was
 * allocated with.
 */
#define MEM_MAP_MIN ((size_t)64 * 1024)
void *mem_array_alloc(struct mem *m, size_t size, bool exact);
void mem_array_free(void *p, size_t size, bool exact);
size_t mem_array_size(size_t size, bool exact);

/* Free memory from mem_alloc/mem_zalloc/mem_alloc_aligned.  NULL is a no-op. */
void mem_free(void *p);

/* The bytes an allocation of size would really occupy. */
size_t mem_real_size(size_t size);

/* Test hook: fail the n-th allocation from now (n >= 1); 0 cancels. */
void mem_fail_after(struct mem *m, long n);

/* Test hook, process-wide: fail the n-th allocation from now made through
 * any struct mem or checked with mem_fail_any() (corral_create's own);
 * 0 cancels. */
void mem_fail_any_after(long n);

/* True for the allocation mem_fail_any_after() asked to fail: for the
 * allocations that do not go through a struct mem. */
bool mem_fail_any(void);

/*
 * mem_purge - hand the allocator's unused dirty pages back to the system
 * now (jemalloc: every arena's; a no-op with libc malloc).  Costs a
 * system call per run of pages; call it without engine locks, after a
 * large amount was freed.
 */
void mem_purge(void);

#endif /* CORRAL_MEM_H */
