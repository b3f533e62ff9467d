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
 * and, per link, peer:<host:port>:{state,node,applied,flushes,connects}.
 * Any thread.
 */
void peers_report(struct peers *ps,
                  void (*fn)(const char *name, const char *value, void *ud),
                  void *ud);

#endif /* CORRALD_PEER_H */
