/*
 * hist.h - a log-linear latency histogram in nanoseconds.
 *
 * Values below 2^(HIST_SUB_BITS + 1) ns get one bucket each; above, every
 * power of two is split into 2^HIST_SUB_BITS equal buckets, so a
 * percentile is exact to within 1/2^HIST_SUB_BITS (about 3 %) of its value
 * whatever its size.  Recording is a count-leading-zeros, a shift and an
 * increment; histograms merge by adding counts, so each thread or run
 * keeps its own and they are summed at the end.
 *
 *   value:  0 1 .. 63 | 64 66 .. 126 | 128 132 .. 252 | 256 ...
 *   width:  1          | 2            | 4              | 8 ...
 */
#ifndef CORRAL_BENCH_HIST_H
#define CORRAL_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) << HIST_SUB_BITS)

struct hist {
    uint64_t count;
    uint64_t sum; /* ns, for the mean */
    uint64_t max;
    uint64_t buckets[HIST_BUCKETS];
};

/* Empty the histogram (caller memory). */
void hist_init(struct hist *h);

/* The bucket of a value. */
static inline unsigned
hist_index(uint64_t v)
{
    unsigned msb, shift;
    if (v < (UINT64_C(1) << (HIST_SUB_BITS + 1))) {
        return (unsigned)v;
    }
    msb = 63u - (unsigned)__builtin_clzll(v);
    shift = msb - HIST_SUB_BITS;
    return (shift << HIST_SUB_BITS) + (unsigned)(v >> shift);
}

/* Record one value.  O(1). */
static inline void
hist_add(struct hist *h, uint64_t ns)
{
    h->buckets[hist_index(ns)]++;
    h->count++;
    h->sum += ns;
    if (ns > h->max) {
        h->max = ns;
    }
}

/* dst += src. */
void hist_merge(struct hist *dst, const struct hist *src);

/* The value at quantile q (0 < q <= 1), in ns: the middle of the bucket
 * holding the ceil(q * count)-th smallest value; 0 when empty. */
double hist_quantile(const struct hist *h, double q);

/* The mean, in ns; 0 when empty. */
double hist_mean(const struct hist *h);

#endif /* CORRAL_BENCH_HIST_H */
