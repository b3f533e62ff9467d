/*
 * keydist.c - key distributions and key names (see keydist.h).
 *
 * Zipf by inverse transform:
 *   1. p(i) = (i + 1)^-s / H, H = sum over i of (i + 1)^-s;
 *   2. cdf[i] = p(0) + ... + p(i), accumulated in long double so that the
 *      tail of a million terms keeps its precision; cdf[n - 1] = 1;
 *   3. a draw takes u uniform in [0, 1) and returns the smallest i with
 *      cdf[i] > u (binary search).
 */
#include "keydist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool
keydist_parse(const char *name, enum keydist_kind *out)
{
    if (strcmp(name, "uniform") == 0) {
        *out = KEYDIST_UNIFORM;
        return true;
    }
    if (strcmp(name, "zipf") == 0) {
        *out = KEYDIST_ZIPF;
        return true;
    }
    return false;
}

const char *
keydist_name(enum keydist_kind kind)
{
    return kind == KEYDIST_ZIPF ? "zipf" : "uniform";
}

bool
keydist_init(struct keydist *kd, enum keydist_kind kind, uint64_t n, double s)
{
    long double total = 0, acc = 0;

    memset(kd, 0, sizeof(*kd));
    kd->kind = kind;
    kd->n = n;
    kd->s = s;
    if (kind != KEYDIST_ZIPF || n == 0) {
        return true;
    }
    kd->cdf = malloc(n * sizeof(*kd->cdf));
    if (kd->cdf == NULL) {
        return false;
    }
    for (uint64_t i = 0; i < n; i++) {
        total += powl((long double)(i + 1), -(long double)s);
    }
    for (uint64_t i = 0; i < n; i++) {
        acc += powl((long double)(i + 1), -(long double)s);
        kd->cdf[i] = (double)(acc / total);
    }
    kd->cdf[n - 1] = 1.0;
    return true;
}

void
keydist_deinit(struct keydist *kd)
{
    free(kd->cdf);
    kd->cdf = NULL;
}

uint64_t
keydist_next(const struct keydist *kd, struct rng *r)
{
    uint64_t lo = 0, hi;
    double u;

    if (kd->kind == KEYDIST_UNIFORM || kd->cdf == NULL) {
        return rng_below(r, kd->n);
    }
    /* Invariant: the answer is in [lo, hi]. */
    hi = kd->n - 1;
    u = rng_unit(r);
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (kd->cdf[mid] > u) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

void
key_format(char *out, size_t ksize, uint64_t id)
{
    static const char hex[] = "0123456789abcdef";

    if (ksize >= 16) {
        uint64_t x = key_mix(id);
        for (int i = 15; i >= 0; i--) {
            out[i] = hex[x & 15];
            x >>= 4;
        }
        memset(out + 16, '.', ksize - 16);
        return;
    }
    for (size_t i = ksize; i-- > 0;) {
        out[i] = (char)('0' + id % 10);
        id /= 10;
    }
}
