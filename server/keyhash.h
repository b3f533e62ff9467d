/*
 * keyhash.h - FNV-1a over a key's bytes: the server's small tables that
 * only need to tell keys apart or spread them over slots (the hot-key
 * sampler, the lease memory), without the engine's seeded hash.
 */
#ifndef CORRAL_SERVER_KEYHASH_H
#define CORRAL_SERVER_KEYHASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t
key_hash(const void *key, size_t nkey)
{
    const unsigned char *p = key;
    uint64_t h = UINT64_C(0xcbf29ce484222325);

    for (size_t i = 0; i < nkey; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

#endif /* CORRAL_SERVER_KEYHASH_H */
