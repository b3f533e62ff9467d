/*
 * hotkeys.c - sampled per-worker Space-Saving summaries, merged on
 * demand (see hotkeys.h).
 *
 * Per worker:
 *
 *   countdown, rng          owner thread only: which request to sample
 *   lock ─┬─ tab[0] ─ epoch e, up to HOTKEYS_CAPACITY {key, count, error}
 *         └─ tab[1] ─ epoch e - 1 (or older: then ignored)
 *
 * An epoch is floor(monotonic seconds / HOTKEYS_WINDOW), the same for
 * every worker.  A sample in a new epoch recycles the older table.
 *
 * Space-Saving, for a sampled key k in the current table:
 *   1. k is there: count + 1.
 *   2. there is room: add k with count 1, error 0.
 *   3. otherwise replace the entry with the smallest count m by k with
 *      count m + 1 and error m (k may have been among those m).
 * Counts only ever overestimate, by at most the entry's error.
 *
 * A report copies the tables of the current and the previous epoch out of
 * every worker (one lock at a time), sorts the copies by key, adds counts
 * and errors of equal keys, and keeps the largest counts.
 */
#include "hotkeys.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyhash.h"

struct hk_entry {
    uint64_t hash;
    uint64_t count;
    uint64_t error;
    uint8_t nkey;
    char key[250];
};

struct hk_table {
    int64_t epoch;
    uint64_t samples;
    size_t n;
    struct hk_entry e[HOTKEYS_CAPACITY];
};

struct hk_worker {
    unsigned countdown;       /* owner only */
    uint64_t rng;             /* owner only */
    pthread_mutex_t lock;     /* guards tab[] */
    struct hk_table tab[2];
} __attribute__((aligned(64)));

struct hotkeys {
    unsigned nworkers;
    unsigned sample;
    struct hk_worker *w;
};

/* xorshift64*: the gap to the next sample, uniform in 1..2*sample-1. */
static unsigned
hk_gap(struct hk_worker *w, unsigned sample)
{
    uint64_t x = w->rng;

    if (sample <= 1) {
        return 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return 1 + (unsigned)((x * UINT64_C(2685821657736338717)) >> 33) %
                   (2 * sample - 1);
}

static double
hk_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct hotkeys *
hotkeys_create(unsigned nworkers, unsigned sample)
{
    struct hotkeys *h = calloc(1, sizeof(*h));
    uint64_t seed = (uint64_t)time(NULL);

    if (h == NULL || sample == 0) {
        free(h);
        return NULL;
    }
    if (posix_memalign((void **)&h->w, 64, nworkers * sizeof(*h->w)) != 0) {
        free(h);
        return NULL;
    }
    memset(h->w, 0, nworkers * sizeof(*h->w));
    h->nworkers = nworkers;
    h->sample = sample;
    for (unsigned i = 0; i < nworkers; i++) {
        struct hk_worker *w = &h->w[i];

        pthread_mutex_init(&w->lock, NULL);
        w->rng = (seed ^ ((uint64_t)(i + 1) * UINT64_C(0x9E3779B97F4A7C15))) |
                 1;
        w->countdown = hk_gap(w, sample);
        w->tab[0].epoch = -2;
        w->tab[1].epoch = -2;
    }
    return h;
}

void
hotkeys_destroy(struct hotkeys *h)
{
    if (h == NULL) {
        return;
    }
    for (unsigned i = 0; i < h->nworkers; i++) {
        pthread_mutex_destroy(&h->w[i].lock);
    }
    free(h->w);
    free(h);
}

static int64_t
hk_epoch(double now)
{
    return (int64_t)(now / HOTKEYS_WINDOW);
}

/* Space-Saving step 1-3 on @t. */
static void
hk_count(struct hk_table *t, uint64_t hash, const void *key, size_t nkey)
{
    struct hk_entry *min = NULL;

    t->samples++;
    for (size_t i = 0; i < t->n; i++) {
        struct hk_entry *e = &t->e[i];

        if (e->hash == hash && e->nkey == nkey &&
            memcmp(e->key, key, nkey) == 0) {
            e->count++;
            return;
        }
        if (min == NULL || e->count < min->count) {
            min = e;
        }
    }
    if (t->n < HOTKEYS_CAPACITY) {
        min = &t->e[t->n++];
        min->count = 0;
    }
    min->error = min->count;
    min->count++;
    min->hash = hash;
    min->nkey = (uint8_t)nkey;
    memcpy(min->key, key, nkey);
}

void
hotkeys_note(struct hotkeys *h, unsigned wid, const void *key, size_t nkey)
{
    struct hk_worker *w = &h->w[wid];
    struct hk_table *t;
    uint64_t hash;
    int64_t epoch;

    if (--w->countdown > 0) {
        return;
    }
    w->countdown = hk_gap(w, h->sample);
    if (nkey == 0 || nkey > sizeof(w->tab[0].e[0].key)) {
        return;
    }
    hash = key_hash(key, nkey);
    epoch = hk_epoch(hk_now());
    pthread_mutex_lock(&w->lock);
    t = w->tab[0].epoch >= w->tab[1].epoch ? &w->tab[0] : &w->tab[1];
    if (t->epoch != epoch) {
        /* A new window: recycle the older table. */
        t = t == &w->tab[0] ? &w->tab[1] : &w->tab[0];
        t->epoch = epoch;
        t->samples = 0;
        t->n = 0;
    }
    hk_count(t, hash, key, nkey);
    pthread_mutex_unlock(&w->lock);
}

static int
hk_by_key(const void *a, const void *b)
{
    const struct hk_entry *x = a, *y = b;
    size_t n = x->nkey < y->nkey ? x->nkey : y->nkey;
    int c;

    if (x->hash != y->hash) {
        return x->hash < y->hash ? -1 : 1;
    }
    c = memcmp(x->key, y->key, n);
    if (c != 0) {
        return c;
    }
    return (int)x->nkey - (int)y->nkey;
}

static int
hk_by_count(const void *a, const void *b)
{
    const struct hk_entry *x = a, *y = b;

    if (x->count != y->count) {
        return x->count > y->count ? -1 : 1;
    }
    return hk_by_key(a, b);
}

int
hotkeys_top(struct hotkeys *h, size_t limit, struct hotkeys_report *out)
{
    size_t cap = (size_t)h->nworkers * 2 * HOTKEYS_CAPACITY, n = 0, m = 0;
    struct hk_entry *all = malloc((cap ? cap : 1) * sizeof(*all));
    double now = hk_now();
    int64_t epoch = hk_epoch(now);

    if (all == NULL) {
        return -1;
    }
    memset(out, 0, sizeof(*out));
    out->sample = h->sample;
    /* The previous window in full and the current one so far. */
    out->span = now - (double)(epoch - 1) * HOTKEYS_WINDOW;
    for (unsigned i = 0; i < h->nworkers; i++) {
        struct hk_worker *w = &h->w[i];

        pthread_mutex_lock(&w->lock);
        for (int k = 0; k < 2; k++) {
            const struct hk_table *t = &w->tab[k];

            if (t->epoch != epoch && t->epoch != epoch - 1) {
                continue;
            }
            out->sampled += t->samples;
            memcpy(&all[n], t->e, t->n * sizeof(t->e[0]));
            n += t->n;
        }
        pthread_mutex_unlock(&w->lock);
    }
    /* Add up equal keys. */
    qsort(all, n, sizeof(*all), hk_by_key);
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && hk_by_key(&all[m - 1], &all[i]) == 0) {
            all[m - 1].count += all[i].count;
            all[m - 1].error += all[i].error;
        } else {
            all[m++] = all[i];
        }
    }
    qsort(all, m, sizeof(*all), hk_by_count);
    if (limit > HOTKEYS_TOP_MAX) {
        limit = HOTKEYS_TOP_MAX;
    }
    for (size_t i = 0; i < m && i < limit; i++) {
        struct hotkeys_entry *e = &out->top[out->n++];

        memcpy(e->key, all[i].key, all[i].nkey);
        e->key[all[i].nkey] = '\0';
        e->nkey = all[i].nkey;
        e->requests = all[i].count * h->sample;
        e->error = all[i].error * h->sample;
    }
    free(all);
    return 0;
}
