/* example.c - a local cache kept coherent by a corrald (HOST PORT). */
#include <corral.h>
#include <corral_near.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The slow source of truth (a database, say), tagged for invalidation. */
static int
load_user(corral_load_t *load, const void *key, size_t nkey, void *ud)
{
    static const char *const tags[] = {"users"};
    char row[64];
    int n = snprintf(row, sizeof(row), "row of %.*s", (int)nkey,
                     (const char *)key);

    (void)ud;
    corral_load_tags(load, tags, 1);
    return corral_load_set(load, row, (size_t)n, 0);
}

int
main(int argc, char **argv)
{
    corral_t *cache;
    corral_near_t *near;
    corral_item_t *item;
    size_t len;

    if (argc != 3 || corral_create(NULL, &cache) != CORRAL_OK ||
        corral_near_create(cache, argv[1], (unsigned)atoi(argv[2]), NULL,
                           &near) != CORRAL_OK ||
        corral_near_wait_synced(near, 5000) != CORRAL_OK) {
        return 1;
    }
    /* read through: loaded once, then served from this process */
    if (corral_near_fetch(near, "user:42", 7, load_user, NULL, NULL, &item,
                          NULL) == CORRAL_OK) {
        const char *v = corral_item_value(item, &len);
        printf("user:42 = %.*s\n", (int)len, v);
        corral_item_release(item);
    }
    fflush(stdout);
    /* any client of the server: "invalidate_tag users" */
    while (corral_near_get(near, "user:42", 7, &item) == CORRAL_OK) {
        corral_item_release(item);
        usleep(1000);
    }
    printf("user:42 is gone from the local cache\n");
    corral_near_destroy(near);
    corral_destroy(cache);
    return 0;
}
