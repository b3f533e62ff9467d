/*
 * leases.h - the server's memory of the recache tokens (meta W) it has
 * handed out, to count the leases whose holder never stored: "lease
 * timeouts" in "stats corral" and on the metrics endpoint.
 *
 * A lease is the W an mg answer carries (N on a miss, R, X, or Corral's
 * A).  The engine hands a key's token out again only once the item that
 * carried it is gone (the holder's stub expired) or replaced; so a second
 * W for a key with no store or delete of that key in between means the
 * first holder let its lease run out: that second W counts one timeout.
 *
 * The memory is a direct-mapped table of LEASES_SLOTS key hashes (64-bit
 * FNV-1a), one atomic word each: a key whose slot another key took
 * forgets its lease, so the count can miss a timeout (never invent one
 * unless two keys share a 64-bit hash).  flush_all forgets everything.
 *
 * Threads: every function is thread-safe (atomics only, no lock); each is
 * O(key length).
 */
#ifndef CORRALD_LEASES_H
#define CORRALD_LEASES_H

#include <stdbool.h>
#include <stddef.h>

#define LEASES_SLOTS 4096u

struct leases;

/* leases_create - an empty memory, or NULL when out of memory. */
struct leases *leases_create(void);

/* leases_destroy - free it; NULL is a no-op. */
void leases_destroy(struct leases *l);

/*
 * leases_won - a W was handed out for the key.  Returns true when the
 * key's previous W was still waiting for its store (a lease timeout).
 * @l may be NULL (then false).
 */
bool leases_won(struct leases *l, const void *key, size_t nkey);

/* leases_done - the key was stored or deleted: its lease, if any, ended.
 * @l may be NULL. */
void leases_done(struct leases *l, const void *key, size_t nkey);

/* leases_forget - drop every lease (flush_all).  @l may be NULL. */
void leases_forget(struct leases *l);

#endif /* CORRALD_LEASES_H */
