/*
 * exec.h - the glue between the protocol library and the engine: parse
 * the requests a connection has buffered, run each against the cache,
 * and queue the replies.  exec.c is the only file that sees both
 * server/proto/proto.h and corral.h.
 */
#ifndef CORRALD_EXEC_H
#define CORRALD_EXEC_H

#include <stddef.h>

struct conn;

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
 * exec_reply_nomem - queue memcached's reply to a store that found no
 * memory, for a data block the connection cannot buffer.
 */
void exec_reply_nomem(struct conn *c);

#endif /* CORRALD_EXEC_H */
