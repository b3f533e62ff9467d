/*
 * hotkeys.h - the keys clients ask for most, by request rate, sampled at
 * a cost the request path does not notice ("stats hotkeys").
 *
 * Every keyed request (each key of a multi-get counts) goes through
 * hotkeys_note(), which on average lets one in `sample` through: a
 * per-worker countdown, drawn at random so that a periodic request
 * pattern cannot hide a key.  A sampled key enters the worker's
 * Space-Saving summary (Metwally et al., 2005) of HOTKEYS_CAPACITY keys:
 * any key that makes up more than 1/HOTKEYS_CAPACITY of a worker's
 * samples is in it, and its count errs by at most the error it carries.
 *
 * Summaries cover fixed windows of HOTKEYS_WINDOW seconds, aligned for
 * every worker; a report merges the previous window and the current one
 * across workers, so rates describe the last 10 to 20 seconds.
 *
 * Threads: hotkeys_note() on worker @wid's thread only; hotkeys_top()
 * anywhere.  A worker's summaries are guarded by its own mutex, taken by
 * that worker on a sampled request only and by readers to copy them out.
 */
#ifndef CORRALD_HOTKEYS_H
#define CORRALD_HOTKEYS_H

#include <stddef.h>
#include <stdint.h>

struct hotkeys;

#define HOTKEYS_CAPACITY 64   /* keys per worker summary */
#define HOTKEYS_WINDOW 10     /* seconds */
#define HOTKEYS_TOP_MAX 64    /* most keys a report lists */

/* One key of a report. */
struct hotkeys_entry {
    char key[251];            /* raw bytes, NUL after nkey */
    size_t nkey;
    uint64_t requests;        /* estimated requests in the span */
    uint64_t error;           /* at most this many of them are not its */
};

/* A report. */
struct hotkeys_report {
    unsigned sample;          /* 1 request in `sample` was counted */
    double span;              /* seconds the counts cover */
    uint64_t sampled;         /* samples taken in the span */
    size_t n;                 /* entries, most requested first */
    struct hotkeys_entry top[HOTKEYS_TOP_MAX];
};

/*
 * hotkeys_create - summaries for @nworkers workers sampling 1 keyed
 * request in @sample (> 0).  NULL when out of memory.
 */
struct hotkeys *hotkeys_create(unsigned nworkers, unsigned sample);

/* hotkeys_destroy - free.  NULL is a no-op. */
void hotkeys_destroy(struct hotkeys *h);

/*
 * hotkeys_note - count one request for @key on worker @wid.  Worker
 * @wid's thread only.  O(1) unless sampled; a sampled request costs
 * O(HOTKEYS_CAPACITY) comparisons under the worker's mutex.
 */
void hotkeys_note(struct hotkeys *h, unsigned wid, const void *key,
                  size_t nkey);

/*
 * hotkeys_top - the @limit (at most HOTKEYS_TOP_MAX) keys with the most
 * estimated requests.  @out is caller memory.  Any thread; O(workers *
 * HOTKEYS_CAPACITY * log) to merge.  Returns 0, or -1 when out of memory.
 */
int hotkeys_top(struct hotkeys *h, size_t limit, struct hotkeys_report *out);

#endif /* CORRALD_HOTKEYS_H */
