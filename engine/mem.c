/*
 * mem.c - see mem.h.  Two back ends chosen at build time: jemalloc's
 * mallocx/nallocx/dallocx (the default), or libc malloc with
 * malloc_usable_size under sanitizers.
 */
#include "mem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

#ifdef CORRAL_MEM_LIBC
#include <malloc.h>
#else
#include <jemalloc/jemalloc.h>
#endif

void
mem_init(struct mem *m)
{
    atomic_init(&m->fail_countdown, 0);
}

void
mem_fail_after(struct mem *m, long n)
{
    atomic_store(&m->fail_countdown, n < 0 ? 0 : n);
}

/* Allocations left before the one mem_fail_any_after() asked to fail. */
static _Atomic long fail_any_countdown;

void
mem_fail_any_after(long n)
{
    atomic_store(&fail_any_countdown, n < 0 ? 0 : n);
}

/* Count an allocation down; true if it is the one to fail. */
static bool
countdown_hit(_Atomic long *countdown)
{
    long n = ld_relaxed(countdown);
    while (n > 0) {
        if (atomic_compare_exchange_weak(countdown, &n, n - 1)) {
            return n == 1;
        }
    }
    return false;
}

bool
mem_fail_any(void)
{
    return countdown_hit(&fail_any_countdown);
}

/* True when this allocation is one a test asked to fail. */
static bool
mem_injected_failure(struct mem *m)
{
    return countdown_hit(&m->fail_countdown) || mem_fail_any();
}

void
mem_purge(void)
{
#ifndef CORRAL_MEM_LIBC
#define MEM_STR_(x) #x
#define MEM_STR(x) MEM_STR_(x)
    mallctl("arena." MEM_STR(MALLCTL_ARENAS_ALL) ".purge", NULL, NULL, NULL,
            0);
#endif
}

size_t
mem_real_size(size_t size)
{
#ifdef CORRAL_MEM_LIBC
    /* glibc: 16-byte granules, 8 bytes of chunk header, minimum 24. */
    size_t s = (size + 8 + 15) & ~(size_t)15;
    return (s < 32 ? 32 : s) - 8;
#else
    return nallocx(size ? size : 1, 0);
#endif
}

static void *
mem_alloc_flags(struct mem *m, size_t size, size_t *out_real, int zero)
{
    void *p;

    if (unlikely(mem_injected_failure(m))) {
        return NULL;
    }
    if (size == 0) {
        size = 1;
    }
#ifdef CORRAL_MEM_LIBC
    p = zero ? calloc(1, size) : malloc(size);
    if (p != NULL && out_real != NULL) {
        *out_real = malloc_usable_size(p);
    }
#else
    p = mallocx(size, zero ? MALLOCX_ZERO : 0);
    if (p != NULL && out_real != NULL) {
        *out_real = sallocx(p, 0);
    }
#endif
    return p;
}

void *
mem_alloc(struct mem *m, size_t size, size_t *out_real)
{
    return mem_alloc_flags(m, size, out_real, 0);
}

void *
mem_zalloc(struct mem *m, size_t size, size_t *out_real)
{
    return mem_alloc_flags(m, size, out_real, 1);
}

void *
mem_alloc_aligned(struct mem *m, size_t size, size_t align)
{
    void *p = NULL;

    if (unlikely(mem_injected_failure(m))) {
        return NULL;
    }
#ifdef CORRAL_MEM_LIBC
    if (posix_memalign(&p, align, size) != 0) {
        p = NULL;
    }
#else
    p = mallocx(size, MALLOCX_ALIGN(align));
#endif
    return p;
}

/* Rounded up to whole pages (asked each time: only large arrays, which
 * are rare, need it, and a cached value would be shared unsynchronised). */
static size_t
page_round(size_t size)
{
    long n = sysconf(_SC_PAGESIZE);
    size_t page = n > 0 ? (size_t)n : 4096;
    return (size + page - 1) & ~(page - 1);
}

/* Whether an array is mapped by the page. */
static bool
array_mapped(size_t size, bool exact)
{
    return exact && size >= MEM_MAP_MIN;
}

size_t
mem_array_size(size_t size, bool exact)
{
    return array_mapped(size, exact) ? page_round(size) : mem_real_size(size);
}

void *
mem_array_alloc(struct mem *m, size_t size, bool exact)
{
    void *p;

    if (!array_mapped(size, exact)) {
        return mem_zalloc(m, size, NULL);
    }
    if (unlikely(mem_injected_failure(m))) {
        return NULL;
    }
    p = mmap(NULL, page_round(size), PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void
mem_array_free(void *p, size_t size, bool exact)
{
    if (p == NULL) {
        return;
    }
    if (array_mapped(size, exact)) {
        munmap(p, page_round(size));
    } else {
        mem_free(p);
    }
}

void
mem_free(void *p)
{
    if (p == NULL) {
        return;
    }
#ifdef CORRAL_MEM_LIBC
    free(p);
#else
    dallocx(p, 0);
#endif
}
