/* embed.c - a cache inside a C program: store, read zero-copy, count. */
#include <corral.h>
#include <stdio.h>
#include <string.h>

int
main(void)
{
    corral_config_t cfg;
    corral_t *cache;
    corral_item_t *item;
    const char *value;
    uint64_t visits;
    size_t len;

    corral_config_init(&cfg);
    cfg.max_memory = 64u << 20; /* 64 MiB, counted as really allocated */
    if (corral_create(&cfg, &cache) != CORRAL_OK) {
        return 1;
    }

    /* set: key, value, client flags, exptime (seconds; 0 = never) */
    corral_set(cache, "greeting", 8, "hello", 5, 0, 300);

    /* get: a pinned, zero-copy view of the value, released when done */
    if (corral_get(cache, "greeting", 8, &item) == CORRAL_OK) {
        value = corral_item_value(item, &len);
        printf("greeting = %.*s (ttl %lld s)\n", (int)len, value,
               (long long)corral_item_ttl(cache, item));
        corral_item_release(item);
    }

    /* counters are decimal strings, as in memcached */
    corral_set(cache, "visits", 6, "41", 2, 0, 0);
    corral_incr(cache, "visits", 6, 1, &visits);
    printf("visits = %llu\n", (unsigned long long)visits);

    if (corral_get(cache, "missing", 7, &item) == CORRAL_ENOTFOUND) {
        printf("missing: %s\n", corral_strerror(CORRAL_ENOTFOUND));
    }
    corral_destroy(cache);
    return 0;
}
