/*
 * hist.c - percentiles from the log-linear histogram (see hist.h).
 *
 * Bucket i covers [low(i), low(i) + width(i)).  Below 2^(SUB+1) the width is
 * 1 and low(i) = i.  Above, i = (shift << SUB) + mantissa with the
 * mantissa in [2^SUB, 2^(SUB+1)), so low(i) = mantissa << shift and the
 * width is 1 << shift.
 */
#include "hist.h"

#include <math.h>
#include <string.h>

void
hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
}

void
hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        dst->buckets[i] += src->buckets[i];
    }
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max) {
        dst->max = src->max;
    }
}

static double
bucket_mid(unsigned i)
{
    unsigned shift, mant;
    if (i < (1u << (HIST_SUB_BITS + 1))) {
        return (double)i;
    }
    shift = (i >> HIST_SUB_BITS) - 1;
    mant = i - (shift << HIST_SUB_BITS);
    return ldexp((double)mant, (int)shift) + ldexp(1.0, (int)shift) / 2;
}

double
hist_quantile(const struct hist *h, double q)
{
    uint64_t rank, seen = 0;

    if (h->count == 0) {
        return 0;
    }
    rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1) {
        rank = 1;
    }
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            double mid = bucket_mid(i);
            return mid > (double)h->max ? (double)h->max : mid;
        }
    }
    return (double)h->max;
}

double
hist_mean(const struct hist *h)
{
    return h->count == 0 ? 0 : (double)h->sum / (double)h->count;
}
