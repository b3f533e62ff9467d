/*
 * listener.h - the listening sockets and the accept loop, on the main
 * thread's ev_loop.  Accepted connections go round-robin to the workers.
 *
 * Threads: every function here runs on the main thread, except
 * listener_foreach(), which "stats conns" calls from a worker: it reads
 * only fields that never change after listener_create().
 */
#ifndef CORRALD_LISTENER_H
#define CORRALD_LISTENER_H

#include "server.h"

struct listener;

/*
 * listener_create - resolve settings->listen, bind and listen on every
 * address it names (port settings->port), and start accepting on
 * srv->main_loop.  Returns NULL with a message logged on failure.
 */
struct listener *listener_create(struct server *srv);

/* listener_stop - stop accepting and close the listening sockets. */
void listener_stop(struct listener *l);

/* listener_destroy - stop, then free.  NULL is a no-op. */
void listener_destroy(struct listener *l);

/* listener_port - the port bound (useful with -p 0). */
unsigned listener_port(const struct listener *l);

/*
 * listener_foreach - call @fn with each listening socket's fd and
 * address ("tcp:127.0.0.1:11211").  Thread-safe.
 */
void listener_foreach(const struct listener *l,
                      void (*fn)(int fd, const char *addr, void *ud),
                      void *ud);

/* listener_addr - the first listening address, for stats conns'
 * listen_addr; thread-safe. */
const char *listener_addr(const struct listener *l);

#endif /* CORRALD_LISTENER_H */
