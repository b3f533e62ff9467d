/*
 * exec.h - the glue between the protocol library and the engine: parse
 * the requests a connection has buffered, run each against the cache,
 * and queue the replies.  exec.c is the only file that sees both
 * server/proto/proto.h and corral.h.
 */
#ifndef CORRALD_EXEC_H
#define CORRALD_EXEC_H

#include <stddef.h>
#include <stdint.h>

struct conn;
struct server;
struct proto_watch_event;

/*
 * exec_process - execute the complete requests at the start of @buf.
 *
 * Stops at the first incomplete request, when the connection's output is
 * full (conn_out_full), when it is closing, or right after asking it to
 * swallow input (conn_swallow), so the caller discards those bytes before
 * calling again.
 * @need (OUT): when stopped at an incomplete request, the total number of
 *       bytes that request needs if known (a data block), else 0.
 * Returns the number of bytes consumed.  Owner thread of @c only.
 */
size_t exec_process(struct conn *c, const char *buf, size_t len,
                    size_t *need);

/*
 * exec_reply_too_large - queue the error for a request larger than the
 * request size limit (the connection is then closed).
 */
void exec_reply_too_large(struct conn *c);

/*
 * exec_command_name - the protocol name of command slot @slot of
 * struct server_cmdstats ("get"; "unknown" for slot 0, unrecognised
 * commands), or NULL past the last command.  Static storage.
 */
const char *exec_command_name(size_t slot);

/*
 * exec_events_start - create the invalidation history (srv->watch) and
 * subscribe the server to the engine's events, before the workers start.
 * Returns 0, or -1 with a message logged.
 * exec_events_stop - end the subscription (no event is recorded after
 * it returns); the caller then destroys srv->watch.
 */
int exec_events_start(struct server *srv);
void exec_events_stop(struct server *srv);

/*
 * exec_apply_remote - apply an event received from a peer to this cache,
 * tagged with @origin (the peer's id) so that it is never sent back to
 * peers: a key's delete, overwrite or stale mark deletes the key here, a
 * tag, prefix or flush is applied as such, and a gap flushes everything.
 * Returns 0, or -1 when the cache refused it.  Any thread.
 */
int exec_apply_remote(struct server *srv, const struct proto_watch_event *ev,
                      uint64_t origin);

/*
 * exec_reply_nomem - queue memcached's reply to a store that found no
 * memory, for a data block the connection cannot buffer.
 */
void exec_reply_nomem(struct conn *c);

#endif /* CORRALD_EXEC_H */
