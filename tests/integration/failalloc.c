/*
 * failalloc.c - a test library, loaded into corrald with LD_PRELOAD, that
 * makes the engine's allocator fail: jemalloc's mallocx(), through which
 * libcorral allocates items, hash tables and eviction metadata (engine/
 * mem.c), returns NULL for every N-th call while a file exists.
 *
 *   CORRAL_FAILALLOC_FILE=<path>   armed while <path> exists
 *   CORRAL_FAILALLOC_EVERY=<n>     fail every n-th call (default 3)
 *
 * The file lets a test arm the failures once corrald has started and
 * disarm them to check that it recovers.  Only builds that allocate with
 * jemalloc (not the sanitizer builds, which use libc malloc so that the
 * sanitizers see everything) reach mallocx(); test_faults.py skips the
 * check elsewhere.  This is test code: it is never installed.
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>

typedef void *(*mallocx_fn)(size_t size, int flags);

void *mallocx(size_t size, int flags);

static mallocx_fn
real_mallocx(void)
{
    static _Atomic(mallocx_fn) real;
    mallocx_fn f = atomic_load(&real);

    if (f == NULL) {
        union {
            void *obj;
            mallocx_fn fn;
        } u;
        u.obj = dlsym(RTLD_NEXT, "mallocx");
        f = u.fn;
        atomic_store(&real, f);
    }
    return f;
}

static int
armed(void)
{
    const char *path = getenv("CORRAL_FAILALLOC_FILE");
    struct stat sb;

    return path != NULL && stat(path, &sb) == 0;
}

void *
mallocx(size_t size, int flags)
{
    static atomic_ulong calls;
    mallocx_fn f = real_mallocx();

    if (armed()) {
        const char *e = getenv("CORRAL_FAILALLOC_EVERY");
        unsigned long every = e != NULL ? strtoul(e, NULL, 10) : 3;
        if (every < 1) {
            every = 1;
        }
        if ((atomic_fetch_add(&calls, 1) + 1) % every == 0) {
            return NULL;
        }
    }
    return f != NULL ? f(size, flags) : NULL;
}
