/*
 * engine.c - `corral-bench engine`: throughput, latency and memory per item
 * of libcorral through its public API, beside a bare hash table measured
 * in the same run.
 *
 * What runs.  One cache is filled with every key once (single thread,
 * timed as "fill"), its memory read from corral_stats() and from the RSS.
 * Then, for each round, distribution and operation, the bare table runs on
 * one thread and the cache on each thread count, one after the other, each
 * for a fixed time (or a fixed number of operations per thread).  A cell's
 * throughput is the median over the rounds; its latency histogram sums
 * them.  Interleaving the reference with the engine inside every round
 * keeps slow drifts of a shared machine out of the ratios.
 *
 * Operations:
 *   get-hit   corral_get() of a stored key, read 8 bytes of the value,
 *             corral_item_release();
 *   get-miss  corral_get() of a key never stored (same length);
 *   set       corral_set() of a stored key (a replacement, the steady
 *             state of a cache);
 *   mix       get-hit with probability --read-ratio, else set.
 *
 * Keys.  2n distinct key names are made up front (keydist.h): [0, n) are
 * stored, [n, 2n) are the misses.  The key index sequence of each
 * distribution is drawn before any timing into a ring of 4 Mi indexes that
 * the threads walk from evenly spaced offsets, so the drawing (a binary
 * search for Zipf) is not part of what is measured, and the bare table and
 * the engine draw from one sequence.  Each run takes up the ring where the
 * run before it stopped, so no run finds its keys in the cache because an
 * earlier run walked them moments ago.
 *
 * Latency.  Timing every operation would cost more than some operations.
 * Instead every Nth operation (--sample-every, default 64) is bracketed by
 * two reads of the time-stamp counter (rdtsc on x86-64, calibrated against
 * CLOCK_MONOTONIC at start; clock_gettime elsewhere); the smallest
 * back-to-back difference of the two reads is subtracted.  The samples go
 * into a per-thread histogram (hist.h).
 *
 * The bare table.  What one core can do at all with the same hash: XXH3
 * 64 (seeded) over the same keys, open addressing with linear probing at
 * load factor <= 0.5, 8-byte slots (32-bit hash tag, 32-bit entry index),
 * entries of key + value packed in one array.  No locks, no expiry, no
 * statistics, no eviction, no pinning.  Its "set" overwrites the value in
 * place, so it bounds a set's lookup cost, not an allocating set.
 */
#include "bench.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define ENGINE_HAVE_TSC 1
#else
#define ENGINE_HAVE_TSC 0
#endif

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <corral.h>

#include "hist.h"
#include "keydist.h"

#define MAX_THREADS 64
#define MAX_ROUNDS 64
#define STREAM_BITS 22       /* 4 Mi key indexes per distribution */
#define SAMPLES_PER_CHECK 16 /* timed samples between clock checks */
#define TIMER_PROBES 10001

enum op { OP_GET_HIT = 0, OP_GET_MISS, OP_SET, OP_MIX, OP_COUNT };

static const char *const op_names[OP_COUNT] = {"get-hit", "get-miss", "set",
                                               "mix"};

/* ---------------------------------------------------------------------- */
/* Timer                                                                  */
/* ---------------------------------------------------------------------- */

static double tick_ns = 1.0;   /* nanoseconds per tick */
static uint64_t tick_overhead; /* ticks of two back-to-back reads */

static inline uint64_t
ticks(void)
{
#if ENGINE_HAVE_TSC
    return __rdtsc();
#else
    return bench_now_ns();
#endif
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void
timer_calibrate(void)
{
    static uint64_t diffs[TIMER_PROBES];
    uint64_t t0, c0, t1, c1;

#if ENGINE_HAVE_TSC
    t0 = bench_now_ns();
    c0 = ticks();
    do {
        t1 = bench_now_ns();
    } while (t1 - t0 < 50000000u);
    c1 = ticks();
    tick_ns = (double)(t1 - t0) / (double)(c1 - c0);
#else
    (void)t0;
    (void)c0;
    (void)t1;
    (void)c1;
#endif
    /* The median of back-to-back differences: the minimum can be far
     * below the usual cost when the counter advances in steps. */
    for (int i = 0; i < TIMER_PROBES; i++) {
        uint64_t a = ticks();
        uint64_t b = ticks();
        diffs[i] = b - a;
    }
    qsort(diffs, TIMER_PROBES, sizeof(diffs[0]), cmp_u64);
    tick_overhead = diffs[TIMER_PROBES / 2];
}

/* ---------------------------------------------------------------------- */
/* The bare table                                                         */
/* ---------------------------------------------------------------------- */

struct bare {
    uint64_t *slots; /* (hash >> 32) << 32 | (entry index + 1) */
    size_t mask;
    char *entries; /* n * (ksize + vsize) */
    size_t ksize, vsize, esize;
    uint64_t seed;
};

static void
bare_init(struct bare *b, size_t n, size_t ksize, size_t vsize, uint64_t seed)
{
    size_t cap = 16;
    while (cap < 2 * n) {
        cap <<= 1;
    }
    b->slots = bench_calloc(cap, sizeof(*b->slots));
    b->mask = cap - 1;
    b->ksize = ksize;
    b->vsize = vsize;
    b->esize = ksize + vsize;
    b->entries = bench_calloc(n, b->esize);
    b->seed = seed;
}

static void
bare_deinit(struct bare *b)
{
    free(b->slots);
    free(b->entries);
}

static inline char *
bare_find(const struct bare *b, const char *key)
{
    uint64_t h = XXH3_64bits_withSeed(key, b->ksize, b->seed);
    uint64_t tag = h >> 32;
    size_t i = (size_t)h & b->mask;

    for (;;) {
        uint64_t s = b->slots[i];
        if (s == 0) {
            return NULL;
        }
        if (s >> 32 == tag) {
            char *e = b->entries + ((s & 0xffffffffu) - 1) * b->esize;
            if (memcmp(e, key, b->ksize) == 0) {
                return e + b->ksize;
            }
        }
        i = (i + 1) & b->mask;
    }
}

static void
bare_insert(struct bare *b, size_t index, const char *key, const char *value)
{
    uint64_t h = XXH3_64bits_withSeed(key, b->ksize, b->seed);
    size_t i = (size_t)h & b->mask;
    char *e = b->entries + index * b->esize;

    memcpy(e, key, b->ksize);
    memcpy(e + b->ksize, value, b->vsize);
    while (b->slots[i] != 0) {
        i = (i + 1) & b->mask;
    }
    b->slots[i] = (h >> 32) << 32 | (uint64_t)(index + 1);
}

/* ---------------------------------------------------------------------- */
/* Runs                                                                   */
/* ---------------------------------------------------------------------- */

struct opts {
    size_t nkeys, ksize, vsize;
    unsigned threads[MAX_THREADS];
    size_t nthreads;
    bool dist_on[2];
    double zipf_s;
    bool op_on[OP_COUNT];
    double read_ratio;
    double duration;
    uint64_t ops_per_run; /* per thread; 0: run for `duration` */
    unsigned rounds;
    unsigned every;
    unsigned shards;
    size_t max_memory;
    uint64_t seed;
    bool pin;
    bool bare;
    bool bare_locked;
    unsigned bare_pad;
};

struct run {
    corral_t *cache; /* the engine, or NULL for the bare table */
    struct bare *bare;
    enum op op;
    const uint32_t *stream;
    size_t stream_mask;
    const char *keys; /* 2n keys of ksize bytes */
    size_t nkeys, ksize;
    const char *value;
    size_t vsize;
    uint64_t read_below; /* mix: a get when rng_next() < this */
    uint64_t duration_ns;
    uint64_t ops_per_run;
    size_t base; /* where in the stream this run starts; past its end after */
    unsigned nthreads;
    unsigned every;
    bool pin;
    bool bare_locked; /* one locked instruction per bare lookup */
    unsigned bare_pad; /* register additions before each bare lookup */
    pthread_barrier_t barrier;
};

struct worker {
    pthread_t tid;
    struct run *run;
    unsigned index;
    uint64_t ops;
    uint64_t hits; /* gets that found their key */
    uint64_t elapsed_ns;
    uint64_t cpu_ns;         /* the thread's CPU time over the same span */
    uint64_t sink;           /* value bytes read, so reads are not dropped */
    _Atomic uint64_t locked; /* target of --bare-locked's instruction */
    struct hist hist;
};

/* --bare-pad: n additions (rounded up to 32) in four independent register
 * chains, none touching memory, in straight runs of 32 so that the loop
 * around them ends a few iterations in and is predicted.  They cost a core
 * little time of their own, but they take room in its out-of-order window,
 * so they show how much of the bare table's rate comes from overlapping
 * the cache misses of consecutive lookups. */
static inline void
bare_pad(unsigned n)
{
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (unsigned i = 0; i < n; i += 32) {
#pragma GCC unroll 8
        for (unsigned j = 0; j < 8; j++) {
            __asm__ __volatile__("" : "+r"(a), "+r"(b), "+r"(c), "+r"(d));
            a++;
            b++;
            c++;
            d++;
        }
    }
}

/* One operation of kind `op` (a constant after inlining) on the cache or
 * the bare table.  Returns 1 for a get that hit. */
static inline __attribute__((always_inline)) unsigned
one_op(const struct run *r, struct worker *w, struct rng *rng, enum op op,
       bool engine, uint32_t idx)
{
    const char *key = r->keys + (size_t)idx * r->ksize;
    uint64_t x = 0;

    if (op == OP_MIX) {
        op = rng_next(rng) < r->read_below ? OP_GET_HIT : OP_SET;
    }
    if (op == OP_GET_MISS) {
        key += r->nkeys * r->ksize;
    }
    if (op == OP_SET) {
        if (engine) {
            corral_set(r->cache, key, r->ksize, r->value, r->vsize, 0, 0);
        } else {
            char *v = bare_find(r->bare, key);
            if (v != NULL) {
                memcpy(v, r->value, r->vsize);
            }
        }
        return 0;
    }
    if (engine) {
        corral_item_t *it;
        if (corral_get(r->cache, key, r->ksize, &it) != CORRAL_OK) {
            return 0;
        }
        size_t len;
        const char *v = corral_item_value(it, &len);
        memcpy(&x, v, len < sizeof(x) ? len : sizeof(x));
        w->sink += x + len;
        corral_item_release(it);
        return 1;
    } else {
        const char *v;
        if (r->bare_locked) {
            /* What any lock or reference count costs besides its own
             * latency: a locked instruction orders all memory accesses
             * (on x86), so the next lookup's cache misses can no longer
             * overlap this one's. */
            atomic_fetch_add_explicit(&w->locked, 1, memory_order_relaxed);
        }
        if (r->bare_pad != 0) {
            bare_pad(r->bare_pad);
        }
        v = bare_find(r->bare, key);
        if (v == NULL) {
            return 0;
        }
        memcpy(&x, v, r->vsize < sizeof(x) ? r->vsize : sizeof(x));
        w->sink += x + r->vsize;
        return 1;
    }
}

static uint64_t
thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline __attribute__((always_inline)) void
worker_loop(struct worker *w, enum op op, bool engine)
{
    const struct run *r = w->run;
    const uint32_t *stream = r->stream;
    size_t mask = r->stream_mask;
    size_t pos = (r->base + ((mask + 1) / r->nthreads) * w->index) & mask;
    uint64_t start, deadline, cpu0, ops = 0, hits = 0;
    struct rng rng;

    rng_seed(&rng, 0x5eed0000u + w->index);
    cpu0 = thread_cpu_ns();
    start = bench_now_ns();
    deadline = start + r->duration_ns;
    for (;;) {
        for (unsigned b = 0; b < SAMPLES_PER_CHECK; b++) {
            uint64_t t0, t1;
            t0 = ticks();
            hits += one_op(r, w, &rng, op, engine, stream[pos]);
            t1 = ticks();
            pos = (pos + 1) & mask;
            t1 -= t0;
            t1 = t1 > tick_overhead ? t1 - tick_overhead : 0;
            hist_add(&w->hist, (uint64_t)((double)t1 * tick_ns));
            for (unsigned k = 1; k < r->every; k++) {
                hits += one_op(r, w, &rng, op, engine, stream[pos]);
                pos = (pos + 1) & mask;
            }
        }
        ops += (uint64_t)SAMPLES_PER_CHECK * r->every;
        if (r->ops_per_run != 0 ? ops >= r->ops_per_run
                                : bench_now_ns() >= deadline) {
            break;
        }
    }
    w->elapsed_ns = bench_now_ns() - start;
    w->cpu_ns = thread_cpu_ns() - cpu0;
    w->ops = ops;
    w->hits = hits;
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;

    if (r->pin) {
        cpu_set_t set;
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        CPU_ZERO(&set);
        CPU_SET((int)(w->index % (unsigned)(ncpu > 0 ? ncpu : 1)), &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    pthread_barrier_wait(&r->barrier);
    /* Constant arguments: each call inlines into a loop of its own. */
    if (r->cache != NULL) {
        switch (r->op) {
        case OP_GET_HIT:
            worker_loop(w, OP_GET_HIT, true);
            break;
        case OP_GET_MISS:
            worker_loop(w, OP_GET_MISS, true);
            break;
        case OP_SET:
            worker_loop(w, OP_SET, true);
            break;
        default:
            worker_loop(w, OP_MIX, true);
            break;
        }
    } else {
        switch (r->op) {
        case OP_GET_HIT:
            worker_loop(w, OP_GET_HIT, false);
            break;
        case OP_GET_MISS:
            worker_loop(w, OP_GET_MISS, false);
            break;
        case OP_SET:
            worker_loop(w, OP_SET, false);
            break;
        default:
            worker_loop(w, OP_MIX, false);
            break;
        }
    }
    return NULL;
}

/* A cell of the result table: one distribution, operation, implementation
 * and thread count, over every round. */
struct cell {
    bool used;
    double rate[MAX_ROUNDS];  /* ops/s per round */
    double share[MAX_ROUNDS]; /* CPU time / wall time per round */
    unsigned nrates;
    uint64_t ops, hits;
    struct hist hist;
};

/* How a cell's rounds make one figure. */
static bool use_median;

/* Run `nthreads` workers once; add the result to the cell. */
static void
run_once(struct run *r, unsigned nthreads, struct cell *cell)
{
    struct worker *w = bench_calloc(nthreads, sizeof(*w));
    double rate = 0;
    uint64_t cpu = 0, wall = 0, most = 0;

    r->nthreads = nthreads;
    pthread_barrier_init(&r->barrier, NULL, nthreads);
    for (unsigned i = 0; i < nthreads; i++) {
        w[i].run = r;
        w[i].index = i;
        hist_init(&w[i].hist);
        if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
            bench_die("pthread_create failed");
        }
    }
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(w[i].tid, NULL);
        rate += (double)w[i].ops * 1e9 / (double)w[i].elapsed_ns;
        cell->ops += w[i].ops;
        cell->hits += w[i].hits;
        most = w[i].ops > most ? w[i].ops : most;
        cpu += w[i].cpu_ns;
        wall += w[i].elapsed_ns;
        hist_merge(&cell->hist, &w[i].hist);
    }
    pthread_barrier_destroy(&r->barrier);
    r->base = (r->base + most) & r->stream_mask;
    cell->used = true;
    cell->share[cell->nrates] = wall ? (double)cpu / (double)wall : 0;
    cell->rate[cell->nrates++] = rate;
    free(w);
}

/* The round that stands for the cell: the fastest, or with --median the
 * (lower) median by throughput. */
static unsigned
cell_pick(const struct cell *c)
{
    unsigned order[MAX_ROUNDS];

    for (unsigned i = 0; i < c->nrates; i++) {
        order[i] = i;
    }
    /* Insertion sort by rate: at most MAX_ROUNDS entries. */
    for (unsigned i = 1; i < c->nrates; i++) {
        for (unsigned j = i; j > 0 && c->rate[order[j - 1]] > c->rate[order[j]];
             j--) {
            unsigned t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
    return use_median ? order[(c->nrates - 1) / 2] : order[c->nrates - 1];
}

static double
cell_rate(const struct cell *c)
{
    return c->nrates ? c->rate[cell_pick(c)] : 0;
}

/* The share of its wall time the picked round's threads were on a CPU. */
static double
cell_cpu_share(const struct cell *c)
{
    return c->nrates ? c->share[cell_pick(c)] : 0;
}

/* The ratios a.rate[r] / b.rate[r] of the rounds both cells ran, sorted;
 * returns how many. */
static unsigned
paired_ratios(const struct cell *a, const struct cell *b, double *out)
{
    unsigned n = a->nrates < b->nrates ? a->nrates : b->nrates, k = 0;

    for (unsigned r = 0; r < n; r++) {
        if (b->rate[r] > 0) {
            double v = a->rate[r] / b->rate[r];
            unsigned j = k++;
            while (j > 0 && out[j - 1] > v) {
                out[j] = out[j - 1];
                j--;
            }
            out[j] = v;
        }
    }
    return k;
}

/* One line of the ratio summary: the ratio of the two cells' figures
 * (best rounds, or medians with --median), then the median and range of
 * the ratios within each round.  target > 0: a floor to meet; 0: no
 * target; < 0: the machine's own scaling, for reference. */
static void
print_ratio(const char *dist, const char *op, const char *what,
            const struct cell *a, const struct cell *b, double target)
{
    double v[MAX_ROUNDS], med, ratio;
    unsigned n = paired_ratios(a, b, v);

    if (n == 0 || cell_rate(b) <= 0) {
        return;
    }
    ratio = cell_rate(a) / cell_rate(b);
    med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    printf("  %-8s %-9s %-32s %6.3f  (%.2f [%.2f..%.2f])", dist, op, what,
           ratio, med, v[0], v[n - 1]);
    if (target > 0) {
        printf("  %s (>= %.2f)", ratio >= target ? "met" : "MISSED", target);
    } else if (target < 0) {
        printf("  (the machine's own scaling)");
    }
    printf("\n");
}

/* The median CPU share of a cell's rounds. */
static double
median_share(const struct cell *c)
{
    double v[MAX_ROUNDS];
    unsigned n = c->nrates;

    for (unsigned i = 0; i < n; i++) {
        unsigned j = i;
        while (j > 0 && v[j - 1] > c->share[i]) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = c->share[i];
    }
    return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---------------------------------------------------------------------- */
/* Options                                                                */
/* ---------------------------------------------------------------------- */

static void
usage(void)
{
    printf("usage: corral-bench engine [options]\n"
           "\n"
           "  --keys N            stored keys (default 1M)\n"
           "  --key-size B        key length in bytes (default 16)\n"
           "  --value-size B      value length in bytes (default 32)\n"
           "  --threads LIST      thread counts (default 1,2)\n"
           "  --dist LIST         uniform,zipf (default both)\n"
           "  --zipf-s S          Zipf exponent (default 0.99)\n"
           "  --ops LIST          get-hit,get-miss,set,mix (default the "
           "first three)\n"
           "  --read-ratio R      share of gets in mix (default 0.9)\n"
           "  --duration SEC      seconds per run (default 0.25)\n"
           "  --ops-per-run N     a fixed number of operations per thread "
           "instead\n"
           "  --rounds R          rounds; a cell's ops/s is the best "
           "(default 3)\n"
           "  --median            the median of the rounds instead of the "
           "best\n"
           "  --sample-every N    time one operation in N (default 64)\n"
           "  --shards N          engine shards (default: the engine's "
           "choice)\n"
           "  --max-memory B      engine memory limit (default: enough for "
           "every key)\n"
           "  --no-bare           skip the bare table\n"
           "  --pin               pin thread i to CPU i\n"
           "  --bare-locked       one locked instruction per bare lookup "
           "(a diagnostic)\n"
           "  --bare-pad N        N register additions before each bare "
           "lookup (a diagnostic)\n"
           "  --seed N            random seed (default 1)\n");
}

static void
parse_opts(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->nkeys = 1000000;
    o->ksize = 16;
    o->vsize = 32;
    o->threads[0] = 1;
    o->threads[1] = 2;
    o->nthreads = 2;
    o->dist_on[KEYDIST_UNIFORM] = o->dist_on[KEYDIST_ZIPF] = true;
    o->zipf_s = 0.99;
    o->op_on[OP_GET_HIT] = o->op_on[OP_GET_MISS] = o->op_on[OP_SET] = true;
    o->read_ratio = 0.9;
    o->duration = 0.25;
    o->rounds = 3;
    o->every = 64;
    o->seed = 1;
    o->bare = true;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            exit(0);
        } else if (strcmp(a, "--no-bare") == 0) {
            o->bare = false;
            continue;
        } else if (strcmp(a, "--pin") == 0) {
            o->pin = true;
            continue;
        } else if (strcmp(a, "--bare-locked") == 0) {
            o->bare_locked = true;
            continue;
        } else if (strcmp(a, "--median") == 0) {
            use_median = true;
            continue;
        } else if (v == NULL) {
            bench_usage_error("unknown option or missing value: %s", a);
        } else if (strcmp(a, "--keys") == 0) {
            o->nkeys = bench_parse_size(a, v, false);
        } else if (strcmp(a, "--key-size") == 0) {
            o->ksize = bench_parse_size(a, v, false);
        } else if (strcmp(a, "--value-size") == 0) {
            o->vsize = bench_parse_size(a, v, true);
        } else if (strcmp(a, "--threads") == 0) {
            o->nthreads = bench_parse_list(a, v, o->threads, MAX_THREADS);
        } else if (strcmp(a, "--dist") == 0) {
            o->dist_on[KEYDIST_UNIFORM] = bench_list_has(v, "uniform");
            o->dist_on[KEYDIST_ZIPF] = bench_list_has(v, "zipf");
            if (!o->dist_on[0] && !o->dist_on[1]) {
                bench_usage_error("--dist: uniform and/or zipf");
            }
        } else if (strcmp(a, "--zipf-s") == 0) {
            o->zipf_s = bench_parse_double(a, v);
        } else if (strcmp(a, "--ops") == 0) {
            bool any = false;
            for (int k = 0; k < OP_COUNT; k++) {
                o->op_on[k] = bench_list_has(v, op_names[k]);
                any = any || o->op_on[k];
            }
            if (!any) {
                bench_usage_error("--ops: get-hit,get-miss,set,mix");
            }
        } else if (strcmp(a, "--read-ratio") == 0) {
            o->read_ratio = bench_parse_double(a, v);
        } else if (strcmp(a, "--duration") == 0) {
            o->duration = bench_parse_double(a, v);
        } else if (strcmp(a, "--ops-per-run") == 0) {
            o->ops_per_run = bench_parse_size(a, v, false);
        } else if (strcmp(a, "--rounds") == 0) {
            o->rounds = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--sample-every") == 0) {
            o->every = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--shards") == 0) {
            o->shards = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--max-memory") == 0) {
            o->max_memory = bench_parse_size(a, v, true);
        } else if (strcmp(a, "--bare-pad") == 0) {
            o->bare_pad = (unsigned)bench_parse_size(a, v, true);
        } else if (strcmp(a, "--seed") == 0) {
            o->seed = bench_parse_size(a, v, false);
        } else {
            bench_usage_error("unknown option: %s", a);
        }
        i++;
    }
    if (o->nkeys < 1 || o->nkeys > UINT32_MAX / 2) {
        bench_usage_error("--keys: 1 .. %u", UINT32_MAX / 2);
    }
    if (o->ksize < 1 || o->ksize > CORRAL_KEY_MAX ||
        (o->ksize < 16 && pow(10, (double)o->ksize) < 2.0 * o->nkeys)) {
        bench_usage_error("--key-size: 1 .. 250, and at least 16 unless "
                          "10^size >= 2 x keys");
    }
    if (o->vsize > (1u << 20) - 1024) {
        bench_usage_error("--value-size: at most 1 MiB - 1 KiB");
    }
    if (o->rounds < 1 || o->rounds > MAX_ROUNDS) {
        bench_usage_error("--rounds: 1 .. %d", MAX_ROUNDS);
    }
    if (o->every < 1 || o->every > 1u << 20) {
        bench_usage_error("--sample-every: 1 .. 1M");
    }
    if (o->read_ratio < 0 || o->read_ratio > 1) {
        bench_usage_error("--read-ratio: 0 .. 1");
    }
    if (o->duration <= 0 && o->ops_per_run == 0) {
        bench_usage_error("--duration must be positive");
    }
    if (o->max_memory == 0) {
        /* Room for every key several times over: the runs measure the
         * engine without eviction. */
        size_t need = o->nkeys * (o->ksize + o->vsize + 256) * 2;
        o->max_memory = need < (64u << 20) ? (64u << 20) : need;
    }
}

/* ---------------------------------------------------------------------- */
/* Reporting                                                              */
/* ---------------------------------------------------------------------- */

static void
print_rate(double r)
{
    if (r >= 1e6) {
        printf(" %8.2f M", r / 1e6);
    } else {
        printf(" %8.1f k", r / 1e3);
    }
}

static void
print_cell(const char *dist, const char *op, const char *impl, unsigned threads,
           const struct cell *c)
{
    double rate = cell_rate(c);
    printf("%-8s %-9s %-7s %3u", dist, op, impl, threads);
    print_rate(rate);
    printf(" %8.1f %7.0f %7.0f %7.0f %7.1f%% %4.0f%%\n",
           rate > 0 ? 1e9 * threads / rate : 0, hist_quantile(&c->hist, 0.50),
           hist_quantile(&c->hist, 0.99), hist_quantile(&c->hist, 0.999),
           c->ops ? 100.0 * (double)c->hits / (double)c->ops : 0.0,
           100 * cell_cpu_share(c));
}

static void
print_memory(const char *when, corral_t *cache, size_t kv, double rss_delta)
{
    corral_stats_t st;
    double n, ghost;

    corral_stats(cache, &st, sizeof(st));
    n = (double)st.curr_items;
    if (n == 0) {
        printf("memory %s: no items\n", when);
        return;
    }
    ghost = (double)st.mem_used - (double)st.bytes - (double)st.hash_bytes;
    printf("memory %s: %llu items, %llu evictions, %llu of the hash "
           "tables growing\n",
           when, (unsigned long long)st.curr_items,
           (unsigned long long)st.evictions,
           (unsigned long long)st.hash_is_expanding);
    printf("  mem_used %.1f MiB = items %.1f + hash tables %.1f + ghost and "
           "segment space not in use %.1f\n",
           (double)st.mem_used / 1048576, (double)st.bytes / 1048576,
           (double)st.hash_bytes / 1048576, ghost / 1048576);
    printf("  per item %.1f B; overhead beyond key+value (%zu B) %.1f B "
           "[item records %.1f + table %.1f + ghost and segment space "
           "%.1f]\n",
           (double)st.mem_used / n, kv, (double)st.mem_used / n - (double)kv,
           (double)st.bytes / n - (double)kv, (double)st.hash_bytes / n,
           ghost / n);
    if (rss_delta > 0) {
        printf("  process RSS delta %.1f MiB = %.1f B per item; overhead "
               "%.1f B\n",
               rss_delta / 1048576, rss_delta / n, rss_delta / n - (double)kv);
    }
}

/* ---------------------------------------------------------------------- */
/* Machine primitives                                                     */
/* ---------------------------------------------------------------------- */

#define PRIM_ITERS 2000000

#define PRIM_HANDOFFS 200000
#define PRIM_PINGPONG_NS 500000000u

static _Atomic uint64_t prim_shared;
static volatile uint64_t prim_sink;

/* Ping-pong: thread k increments the shared counter when its parity is k,
 * so every increment first moves the cache line from the other core.  It
 * gives up after PRIM_PINGPONG_NS (a thread without a CPU of its own, or
 * a serialising tool like valgrind, would make it spin for minutes). */
static _Atomic bool prim_stop;
static uint64_t prim_deadline;

static void *
prim_pingpong(void *arg)
{
    uint64_t k = (uint64_t)(uintptr_t)arg;
    for (uint64_t want = k; want < 2 * PRIM_HANDOFFS; want += 2) {
        unsigned spins = 0;
        while (atomic_load_explicit(&prim_shared, memory_order_acquire) !=
               want) {
            if (++spins % 4096 == 0 &&
                (atomic_load(&prim_stop) || bench_now_ns() > prim_deadline)) {
                atomic_store(&prim_stop, true);
                return NULL;
            }
        }
        atomic_fetch_add_explicit(&prim_shared, 1, memory_order_release);
    }
    return NULL;
}

static double
prim_clock(clockid_t id)
{
    struct timespec ts;
    uint64_t t0 = bench_now_ns(), sum = 0;
    for (int i = 0; i < PRIM_ITERS; i++) {
        clock_gettime(id, &ts);
        sum += (uint64_t)ts.tv_nsec;
    }
    prim_sink += sum & 1;
    return (double)(bench_now_ns() - t0) / PRIM_ITERS;
}

/*
 * What the costs of an engine call are made of, on this machine: the clock
 * reads, an uncontended atomic read-modify-write, an uncontended read-lock
 * pair, and the same atomic when two threads write one cache line.  These
 * explain the ratios below; they are not targets.
 */
static void
print_primitives(void)
{
    pthread_rwlock_t lock;
    _Atomic uint64_t local = 0;
    pthread_t tid;
    uint64_t t0;
    double add, rw;

    t0 = bench_now_ns();
    for (int i = 0; i < PRIM_ITERS; i++) {
        atomic_fetch_add_explicit(&local, 1, memory_order_relaxed);
    }
    add = (double)(bench_now_ns() - t0) / PRIM_ITERS;
    pthread_rwlock_init(&lock, NULL);
    t0 = bench_now_ns();
    for (int i = 0; i < PRIM_ITERS; i++) {
        pthread_rwlock_rdlock(&lock);
        pthread_rwlock_unlock(&lock);
    }
    rw = (double)(bench_now_ns() - t0) / PRIM_ITERS;
    pthread_rwlock_destroy(&lock);
    printf("machine: clock_gettime MONOTONIC %.1f ns, MONOTONIC_COARSE %.1f "
           "ns; atomic add %.1f ns; rwlock rdlock+unlock %.1f ns",
           prim_clock(CLOCK_MONOTONIC), prim_clock(CLOCK_MONOTONIC_COARSE), add,
           rw);
    prim_shared = 0;
    t0 = bench_now_ns();
    prim_deadline = t0 + PRIM_PINGPONG_NS;
    if (pthread_create(&tid, NULL, prim_pingpong, (void *)(uintptr_t)1) == 0) {
        prim_pingpong((void *)(uintptr_t)0);
        pthread_join(tid, NULL);
        if (prim_shared > 0) {
            printf("; cache line moved between 2 threads %.1f ns%s",
                   (double)(bench_now_ns() - t0) / (double)prim_shared,
                   atomic_load(&prim_stop) ? " (cut short)" : "");
        }
    }
    printf("\n");
}

/* ---------------------------------------------------------------------- */
/* Main                                                                   */
/* ---------------------------------------------------------------------- */

int
bench_engine_main(int argc, char **argv)
{
    struct opts o;
    corral_config_t cfg;
    corral_t *cache;
    corral_stats_t st;
    struct bare bare;
    char *keys, *value;
    uint32_t *streams[2] = {NULL, NULL};
    size_t stream_len = (size_t)1 << STREAM_BITS;
    /* cells[dist][op][0 bare, 1 corral][thread count index] */
    static struct cell cells[2][OP_COUNT][2][MAX_THREADS];
    size_t rss0, rss1;
    uint64_t t0, t1;
    double mem_overhead, rss_overhead;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    parse_opts(argc, argv, &o);
    timer_calibrate();

    /* Keys: [0, n) stored, [n, 2n) never stored. */
    keys = bench_calloc(2 * o.nkeys, o.ksize);
    for (size_t i = 0; i < 2 * o.nkeys; i++) {
        key_format(keys + i * o.ksize, o.ksize, i);
    }
    value = bench_calloc(1, o.vsize + 8);
    for (size_t i = 0; i < o.vsize; i++) {
        value[i] = (char)('a' + i % 26);
    }
    for (int d = 0; d < 2; d++) {
        struct keydist kd;
        struct rng rng;
        if (!o.dist_on[d]) {
            continue;
        }
        if (!keydist_init(&kd, (enum keydist_kind)d, o.nkeys, o.zipf_s)) {
            bench_die("out of memory");
        }
        rng_seed(&rng, o.seed * 1000 + (uint64_t)d);
        streams[d] = bench_calloc(stream_len, sizeof(uint32_t));
        for (size_t i = 0; i < stream_len; i++) {
            streams[d][i] = (uint32_t)keydist_next(&kd, &rng);
        }
        keydist_deinit(&kd);
    }

    /* The cache, filled once. */
    rss0 = bench_rss_bytes();
    corral_config_init(&cfg);
    cfg.max_memory = o.max_memory;
    cfg.shards = o.shards;
    if (corral_create(&cfg, &cache) != CORRAL_OK) {
        bench_die("corral_create failed (max memory %zu, shards %u)",
                  o.max_memory, o.shards);
    }
    corral_config_get(cache, &cfg);
    t0 = bench_now_ns();
    for (size_t i = 0; i < o.nkeys; i++) {
        corral_status_t s = corral_set(cache, keys + i * o.ksize, o.ksize,
                                       value, o.vsize, 0, 0);
        if (s != CORRAL_OK) {
            bench_die("fill: corral_set: %s", corral_strerror(s));
        }
    }
    t1 = bench_now_ns();
    rss1 = bench_rss_bytes();

    printf("corral-bench engine: libcorral %s, %zu keys of %zu B, values "
           "%zu B, %u shards, %ld CPUs online\n",
           corral_version(), o.nkeys, o.ksize, o.vsize, cfg.shards, ncpu);
    if (o.ops_per_run != 0) {
        printf("runs of %llu ops per thread",
               (unsigned long long)o.ops_per_run);
    } else {
        printf("runs of %.2f s", o.duration);
    }
    printf(", %u rounds, ops/s = the %s of the rounds; latency: 1 op in "
           "%u timed with %s (%.2f ns/tick, %.0f ns timer cost subtracted); "
           "cpu = the share of that round its threads were on a CPU\n",
           o.rounds, use_median ? "median" : "best", o.every,
           ENGINE_HAVE_TSC ? "rdtsc" : "clock_gettime", tick_ns,
           (double)tick_overhead * tick_ns);
    printf("fill: %zu sets in %.2f s = %.2f M/s (1 thread, inserts)\n", o.nkeys,
           (double)(t1 - t0) / 1e9, (double)o.nkeys * 1e3 / (double)(t1 - t0));
    print_memory("after fill", cache, o.ksize + o.vsize,
                 rss1 > rss0 ? (double)(rss1 - rss0) : 0);
    corral_stats(cache, &st, sizeof(st));
    if (st.curr_items != o.nkeys || st.evictions != 0) {
        printf("WARNING: the cache holds %llu of %zu keys (%llu "
               "evictions): raise --max-memory\n",
               (unsigned long long)st.curr_items, o.nkeys,
               (unsigned long long)st.evictions);
    }
    mem_overhead = (double)st.mem_used / (double)st.curr_items -
                   (double)(o.ksize + o.vsize);
    rss_overhead =
        (double)(rss1 > rss0 ? rss1 - rss0 : 0) / (double)st.curr_items -
        (double)(o.ksize + o.vsize);

    if (o.bare) {
        bare_init(&bare, o.nkeys, o.ksize, o.vsize, o.seed);
        for (size_t i = 0; i < o.nkeys; i++) {
            bare_insert(&bare, i, keys + i * o.ksize, value);
        }
    }

    print_primitives();

    /* The rounds.  The bare table runs at every thread count for gets
     * (read only, so threads may share it) and at one thread for sets.
     * Each run starts where the one before it in that distribution's
     * stream stopped: a run that began where an earlier one did would find
     * the keys' lines, and those of whoever walked them last, still in
     * the last-level cache when runs are short. */
    size_t cursor[2] = {0, 0};
    for (unsigned round = 0; round < o.rounds; round++) {
        for (int d = 0; d < 2; d++) {
            if (!o.dist_on[d]) {
                continue;
            }
            for (int op = 0; op < OP_COUNT; op++) {
                struct run r;
                if (!o.op_on[op]) {
                    continue;
                }
                memset(&r, 0, sizeof(r));
                r.op = (enum op)op;
                r.stream = streams[d];
                r.stream_mask = stream_len - 1;
                r.base = cursor[d];
                r.keys = keys;
                r.nkeys = o.nkeys;
                r.ksize = o.ksize;
                r.value = value;
                r.vsize = o.vsize;
                r.read_below = o.read_ratio >= 1.0
                                   ? UINT64_MAX
                                   : (uint64_t)(o.read_ratio * 0x1p64);
                r.duration_ns = (uint64_t)(o.duration * 1e9);
                r.ops_per_run = o.ops_per_run;
                r.every = o.every;
                r.pin = o.pin;
                r.bare_locked = o.bare_locked;
                r.bare_pad = o.bare_pad;
                for (size_t t = 0; t < o.nthreads; t++) {
                    if (o.bare && (o.threads[t] == 1 || op == OP_GET_HIT ||
                                   op == OP_GET_MISS)) {
                        r.cache = NULL;
                        r.bare = &bare;
                        run_once(&r, o.threads[t], &cells[d][op][0][t]);
                    }
                    r.cache = cache;
                    r.bare = NULL;
                    run_once(&r, o.threads[t], &cells[d][op][1][t]);
                }
                cursor[d] = r.base;
            }
        }
        fprintf(stderr, "round %u of %u done\n", round + 1, o.rounds);
    }

    /* The table. */
    printf("\n%-8s %-9s %-7s %3s %10s %8s %7s %7s %7s %8s %5s\n", "dist", "op",
           "impl", "thr", "ops/s", "ns/op", "p50 ns", "p99 ns", "p99.9", "hits",
           "cpu");
    for (int d = 0; d < 2; d++) {
        for (int op = 0; op < OP_COUNT; op++) {
            if (!o.dist_on[d] || !o.op_on[op]) {
                continue;
            }
            for (int impl = 0; impl < 2; impl++) {
                for (size_t t = 0; t < o.nthreads; t++) {
                    if (cells[d][op][impl][t].used) {
                        print_cell(keydist_name((enum keydist_kind)d),
                                   op_names[op], impl ? "corral" : "bare",
                                   o.threads[t], &cells[d][op][impl][t]);
                    }
                }
            }
        }
    }

    /* The ratios the foundation issue sets as targets. */
    printf("\nratios of the figures above; in parentheses the median "
           "[and range] of the same ratio within each of the %u rounds\n"
           "(targets: corral 1 thread >= 0.50 x bare get-hit; 2 threads >= "
           "1.80 x 1 thread; overhead <= 48 B)\n",
           o.rounds);
    for (int d = 0; d < 2; d++) {
        const char *dn = keydist_name((enum keydist_kind)d);
        int one = -1, two = -1;
        if (!o.dist_on[d]) {
            continue;
        }
        for (size_t t = 0; t < o.nthreads; t++) {
            if (o.threads[t] == 1) {
                one = (int)t;
            } else if (o.threads[t] == 2) {
                two = (int)t;
            }
        }
        for (int op = 0; op < OP_COUNT; op++) {
            const struct cell *b1, *b2, *c1, *c2;
            double share;
            if (!o.op_on[op] || one < 0) {
                continue;
            }
            b1 = &cells[d][op][0][one];
            c1 = &cells[d][op][1][one];
            if (b1->used && (op == OP_GET_HIT || op == OP_GET_MISS)) {
                print_ratio(dn, op_names[op], "corral 1 thread / bare 1 thread",
                            c1, b1, op == OP_GET_HIT ? 0.5 : 0);
            }
            if (two < 0) {
                continue;
            }
            c2 = &cells[d][op][1][two];
            b2 = &cells[d][op][0][two];
            print_ratio(dn, op_names[op], "corral 2 threads / 1 thread", c2, c1,
                        1.8);
            if (b1->used && b2->used) {
                print_ratio(dn, op_names[op], "bare 2 threads / 1 thread", b2,
                            b1, -1);
            }
            share = median_share(c2);
            if (share < 0.95) {
                printf("  %-8s %-9s   (corral's 2 threads were on a CPU "
                       "%.0f %% of the time, median of the rounds: other "
                       "load, or waits)\n",
                       dn, op_names[op], 100 * share);
            }
        }
    }
    printf("  per-item overhead: mem_used / curr_items - %zu  %6.1f B%s\n",
           o.ksize + o.vsize, mem_overhead,
           mem_overhead <= 48 ? "  met (<= 48)" : "  MISSED (<= 48)");
    printf("  per-item overhead: RSS delta / items - %zu      %6.1f B\n",
           o.ksize + o.vsize, rss_overhead);
    print_memory("after the runs", cache, o.ksize + o.vsize, 0);

    corral_destroy(cache);
    if (o.bare) {
        bare_deinit(&bare);
    }
    free(streams[0]);
    free(streams[1]);
    free(keys);
    free(value);
    return 0;
}
