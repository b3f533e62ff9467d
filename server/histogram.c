/*
 * histogram.c - single-writer latency histograms (see histogram.h).
 *
 * Layout: HISTOGRAM_BOUNDS upper bounds in nanoseconds, increasing, and
 * one overflow bucket:
 *
 *   bucket  0      1      2           21     22
 *   bound   1us   2.5us   5us  ...   10s    +Inf
 *
 * Invariant: only the owning thread stores into a histogram, so an
 * increment is a relaxed load and a relaxed store (no read-modify-write
 * is needed, and readers never see a torn value).
 */
#include "histogram.h"

static const uint64_t histogram_ns[HISTOGRAM_BOUNDS] = {
    1000,        2500,        5000,        10000,       25000,
    50000,       100000,      250000,      500000,      1000000,
    2500000,     5000000,     10000000,    25000000,    50000000,
    100000000,   250000000,   500000000,   1000000000,  2500000000,
    5000000000,  10000000000,
};

static const char *const histogram_text[HISTOGRAM_BOUNDS] = {
    "0.000001", "0.0000025", "0.000005", "0.00001", "0.000025",
    "0.00005",  "0.0001",    "0.00025",  "0.0005",  "0.001",
    "0.0025",   "0.005",     "0.01",     "0.025",   "0.05",
    "0.1",      "0.25",      "0.5",      "1",       "2.5",
    "5",        "10",
};

static inline void
histogram_bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) +
                                 n, memory_order_relaxed);
}

void
histogram_record(struct histogram *h, uint64_t ns)
{
    size_t i = 0;

    while (i < HISTOGRAM_BOUNDS && ns > histogram_ns[i]) {
        i++;
    }
    histogram_bump(&h->bucket[i], 1);
    histogram_bump(&h->sum_ns, ns);
}

void
histogram_add_to(struct histogram_snap *dst, const struct histogram *h)
{
    for (size_t i = 0; i < HISTOGRAM_BUCKETS; i++) {
        uint64_t n = atomic_load_explicit(
            (_Atomic uint64_t *)&h->bucket[i], memory_order_relaxed);
        dst->bucket[i] += n;
        dst->count += n;
    }
    dst->sum_ns += atomic_load_explicit((_Atomic uint64_t *)&h->sum_ns,
                                        memory_order_relaxed);
}

double
histogram_bound(size_t i)
{
    return i < HISTOGRAM_BOUNDS ? (double)histogram_ns[i] / 1e9 : 0.0;
}

const char *
histogram_bound_text(size_t i)
{
    return i < HISTOGRAM_BOUNDS ? histogram_text[i] : "+Inf";
}
