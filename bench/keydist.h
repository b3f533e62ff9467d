/*
 * keydist.h - random numbers, key distributions and key names for the
 * benchmarks.
 *
 * The generator is SplitMix64: one add and a 64-bit finaliser per number,
 * statistically sound for load generation and cheap enough to sit in a
 * client's request loop.  Each thread owns its own state.
 *
 * Distributions draw a key index in [0, n):
 * - uniform: every index equally likely (Lemire's multiply-shift range
 *   reduction, no modulo bias worth measuring at these sizes);
 * - zipf: index i (0-based rank) with probability proportional to
 *   1 / (i + 1)^s.  Exact, by inverse transform: keydist_init() builds the
 *   cumulative distribution (n doubles) and each draw binary-searches it,
 *   O(log n).  Rank 0 is the hottest key.
 *
 * Key names are fixed-length, so that every request moves the same bytes:
 * key_format() writes the 16 hex digits of a bijective mix of the index
 * (distinct indexes give distinct keys, and hot keys are not neighbours in
 * any order), padded with '.' to the requested length; keys shorter than
 * 16 bytes are the zero-padded decimal index instead.
 */
#ifndef CORRAL_BENCH_KEYDIST_H
#define CORRAL_BENCH_KEYDIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rng {
    uint64_t state;
};

static inline void
rng_seed(struct rng *r, uint64_t seed)
{
    r->state = seed;
}

static inline uint64_t
rng_next(struct rng *r)
{
    uint64_t z = (r->state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static inline uint64_t
rng_below(struct rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Uniform in [0, 1). */
static inline double
rng_unit(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

enum keydist_kind { KEYDIST_UNIFORM = 0, KEYDIST_ZIPF };

struct keydist {
    enum keydist_kind kind;
    uint64_t n;
    double s;    /* zipf exponent */
    double *cdf; /* zipf: n cumulative probabilities */
};

/* Parse "uniform" or "zipf"; false otherwise. */
bool keydist_parse(const char *name, enum keydist_kind *out);
const char *keydist_name(enum keydist_kind kind);

/* Set up a distribution over [0, n).  s is the zipf exponent (ignored for
 * uniform).  Zipf allocates n doubles and takes O(n) time.  False on
 * ENOMEM. */
bool keydist_init(struct keydist *kd, enum keydist_kind kind, uint64_t n,
                  double s);
void keydist_deinit(struct keydist *kd);

/* Draw an index.  Thread-safe with a per-thread rng (kd is read only). */
uint64_t keydist_next(const struct keydist *kd, struct rng *r);

/* A bijection on 64-bit integers (the SplitMix64 finaliser). */
static inline uint64_t
key_mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* Write the key name of index id, exactly ksize bytes (1..250), no NUL.
 * Distinct ids give distinct names when ksize >= 16 or when id <
 * 10^ksize. */
void key_format(char *out, size_t ksize, uint64_t id);

#endif /* CORRAL_BENCH_KEYDIST_H */
