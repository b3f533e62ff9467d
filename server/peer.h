/*
 * peer.h - links to peer nodes (--peer HOST:PORT): each link watches a
 * peer's own invalidations and applies them here, so that an invalidation
 * on any node of a full mesh reaches every node and every node's
 * watchers.  The protocol is the invalidation stream itself; see peer.c.
 *
 * Threads.  Links live on the main thread's event loop (the accept
 * loop): peers_create(), peers_destroy() and everything the links do run
 * there.  peers_report() may run on any thread: it reads only atomics and
 * the links' fixed names.
 */
#ifndef CORRALD_PEER_H
#define CORRALD_PEER_H

#include <stdbool.h>
#include <stdint.h>

struct ev_loop;
struct server;
struct peers;

/*
 * peers_create - one link per srv->settings->peers entry, connecting at
 * once on @loop and reconnecting with backoff for as long as the loop
 * runs.  Returns NULL on allocation failure (a message is logged).
 */
struct peers *peers_create(struct server *srv, struct ev_loop *loop);

/* peers_destroy - close every link.  Main thread, loop stopped or not.
 * NULL is a no-op. */
void peers_destroy(struct peers *ps);

/*
 * peers_report - call @fn with "STAT"-style name/value pairs: the totals
 * (peers, peers_up, peer_events_applied, peer_flushes, peer_connects)
 * and, per link, peer:<host:port>:{state,node,applied,flushes,connects,
 * lag_us}.  Any thread.
 */
void peers_report(struct peers *ps,
                  void (*fn)(const char *name, const char *value, void *ud),
                  void *ud);

/* One link's figures, read from its atomics (peers_link_stats). */
struct peer_stats {
    const char *name;   /* "host:port", borrowed: lives as long as @ps */
    unsigned state;     /* peers_state_name(state): "down", ..., "self" */
    bool up;            /* state is "up": applying the peer's stream */
    uint64_t node;      /* the peer's id; 0 until its first sync line */
    uint64_t applied;   /* events applied from this peer */
    uint64_t flushes;   /* flushes of this node for lack of continuity */
    uint64_t connects;  /* watch commands sent (connections made) */
    uint64_t lag_us;    /* the last applied event: microseconds from its
                           timestamp on the peer to its application here
                           (both CLOCK_REALTIME); 0 before any */
    uint64_t last_us;   /* when that was, Unix microseconds; 0: never */
    uint64_t lag_sum_us; /* lag_us summed over every applied event */
};

/* peers_count - the number of links (configured peers); 0 for NULL. */
unsigned peers_count(const struct peers *ps);

/* peers_state_name - a link state's name, or NULL past the last. */
const char *peers_state_name(unsigned state);

/*
 * peers_link_stats - link @i's figures (i < peers_count()).  The fields
 * are read one by one: a link that changes meanwhile may give a mix of
 * old and new figures.  Any thread.
 */
void peers_link_stats(struct peers *ps, unsigned i, struct peer_stats *out);

#endif /* CORRALD_PEER_H */
