/*
 * histogram.h - latency histograms with one writer and any number of
 * readers, for the per-command latencies the metrics endpoint exports.
 *
 * Each worker owns its histograms and records into them with relaxed
 * loads and stores (no locked instruction, no lock); a reader on another
 * thread sums every worker's copy into a plain snapshot.  A snapshot is
 * not one instant: a bucket may already count a request whose sum has
 * not been added yet, which a scrape cannot tell from a request that
 * arrived a moment later.
 *
 * Buckets are fixed, in Prometheus' 1-2.5-5 progression from 1 us to
 * 10 s, plus +Inf.  Bucket i counts durations d with
 * bound(i - 1) < d <= bound(i): the counts are not cumulative here; the
 * exporter accumulates them.
 */
#ifndef CORRALD_HISTOGRAM_H
#define CORRALD_HISTOGRAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Finite bucket bounds; one more bucket counts everything above. */
#define HISTOGRAM_BOUNDS 22
#define HISTOGRAM_BUCKETS (HISTOGRAM_BOUNDS + 1)

struct histogram {
    _Atomic uint64_t bucket[HISTOGRAM_BUCKETS];
    _Atomic uint64_t sum_ns;
};

/* A plain copy, summed over writers. */
struct histogram_snap {
    uint64_t bucket[HISTOGRAM_BUCKETS];
    uint64_t sum_ns;
    uint64_t count;
};

/*
 * histogram_record - count one duration of @ns nanoseconds.  The owning
 * thread only; O(buckets) at worst, a few comparisons for the short
 * durations most requests take.
 */
void histogram_record(struct histogram *h, uint64_t ns);

/*
 * histogram_add_to - add @h's counts to @dst (which the caller zeroed
 * once).  Any thread; O(buckets).
 */
void histogram_add_to(struct histogram_snap *dst, const struct histogram *h);

/*
 * histogram_bound - bucket @i's upper bound in seconds, for i below
 * HISTOGRAM_BOUNDS; its text, as the exporter prints it in "le", is
 * histogram_bound_text(i).  Static storage.
 */
double histogram_bound(size_t i);
const char *histogram_bound_text(size_t i);

#endif /* CORRALD_HISTOGRAM_H */
