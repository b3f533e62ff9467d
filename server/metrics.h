/*
 * metrics.h - Prometheus metrics over HTTP (--metrics-port).
 *
 * A small HTTP/1.0-1.1 responder on the main thread's ev_loop (the one
 * that accepts memcached connections, which it never delays for long: a
 * scrape is rendered in well under a millisecond).  It answers
 * "GET /metrics" (and HEAD) with the text exposition format, version
 * 0.0.4, and closes the connection after every response.  Everything else
 * gets a short error response; a request whose head exceeds
 * METRICS_REQUEST_MAX bytes gets 431, and a connection that has not
 * finished within METRICS_TIMEOUT seconds is closed.
 *
 * Threads: every function runs on the main thread.  What a scrape reads
 * (engine statistics, worker counters and histograms, log stream
 * figures) is thread-safe to read from there.
 */
#ifndef CORRALD_METRICS_H
#define CORRALD_METRICS_H

#include <stddef.h>

struct server;
struct metrics;

/* Request head limit, simultaneous scrapes, and the time each may take. */
#define METRICS_REQUEST_MAX 8192
#define METRICS_CONNS_MAX 16
#define METRICS_TIMEOUT 10.0

/*
 * metrics_create - bind settings->metrics_listen : settings->metrics_port
 * and serve on srv->main_loop.  Returns NULL, with a message logged, when
 * the address cannot be resolved or bound.
 */
struct metrics *metrics_create(struct server *srv);

/* metrics_stop - close the listening sockets and every connection. */
void metrics_stop(struct metrics *m);

/* metrics_destroy - stop, then free.  NULL is a no-op. */
void metrics_destroy(struct metrics *m);

/* metrics_port - the port bound. */
unsigned metrics_port(const struct metrics *m);

/*
 * metrics_render - the exposition text for @srv, NUL-terminated, in a
 * buffer the caller frees; *out_len gets its length.  Returns NULL when
 * memory is exhausted.  Any thread.
 */
char *metrics_render(struct server *srv, size_t *out_len);

#endif /* CORRALD_METRICS_H */
