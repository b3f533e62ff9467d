/*
 * hash.h - the one hash function (XXH3, 64 bits, seeded per cache) and how
 * its bits are split:
 *
 *   63            64-S   63-S                         16 15         0
 *   +---------------+---------------------------------+------------+
 *   |  shard (S)    |  table position (fastrange)     |  slot tag  |
 *   +---------------+---------------------------------+------------+
 *
 * The shard comes from the high S bits; the in-shard position multiplies the
 * remaining bits by the table size (Lemire's fastrange, so sizes need not be
 * powers of two); the low 16 bits are a tag stored in the table slot so that
 * most probes never touch an item.  A per-cache random seed keeps
 * adversarial keys from piling into one probe sequence.
 */
#ifndef CORRAL_HASH_H
#define CORRAL_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

/* Keys of up to 16 bytes (most keys) go straight to XXH3's short-input
 * function, inlined: the public entry point is a call that first
 * dispatches on the length.  The result is the same.  That function is
 * xxHash's own, unexported but defined by the header under
 * XXH_INLINE_ALL in the 0.8 series; other versions take the public path. */
static CR_INLINE uint64_t
hash_key(uint64_t seed, const void *key, size_t nkey)
{
#if XXH_VERSION_MAJOR == 0 && XXH_VERSION_MINOR == 8
    if (__builtin_expect(nkey <= 16, 1)) {
        return XXH3_len_0to16_64b((const xxh_u8 *)key, nkey, XXH3_kSecret,
                                  seed);
    }
#endif
    return XXH3_64bits_withSeed(key, nkey, seed);
}

/* The shard of a hash, for 2^bits shards. */
static inline unsigned
hash_shard(uint64_t h, unsigned bits)
{
    return (unsigned)((h >> 1) >> (63 - bits)); /* no shift by 64 at 0 */
}

/* A position in [0, n) from the bits below the shard bits. */
static inline size_t
hash_range(uint64_t h, unsigned shard_bits, size_t n)
{
    uint64_t x = h << shard_bits;
    return (size_t)(((unsigned __int128)x * n) >> 64);
}

static inline uint16_t
hash_tag(uint64_t h)
{
    return (uint16_t)h;
}

#endif /* CORRAL_HASH_H */
