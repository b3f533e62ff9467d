/*
 * logstream.h - memcached's log streams: "watch fetchers", "watch
 * mutations" and "watch evictions", line for line in memcached 1.6's
 * format.
 *
 * A watching connection receives "OK\r\n", then one line per event of
 * the streams it chose, each ending in "\n":
 *
 *   ts=<sec>.<usec> gid=<n> type=item_get key=<k>
 *       status=found|not_found|expired|flushed clsid=<c> cfd=<fd>
 *       size=<value bytes>
 *   ts=... gid=... type=item_store key=<k> status=<s> cmd=<c> ttl=<secs>
 *       clsid=<c> cfd=<fd> size=<value bytes>
 *   ts=... gid=... type=eviction key=<k> fetch=yes|no ttl=<secs|-1>
 *       la=<secs> clsid=<c> size=<value bytes>
 *
 * (one line each).  Keys are percent-encoded except for letters, digits
 * and "-._~"; gid grows by one per event across every stream, so a
 * watcher sees gaps where it does not watch.  A watcher that cannot keep
 * up loses lines, never memory: its buffer holds LOGSTREAM_BUFFER bytes,
 * and once it has room again it first receives "skipped=<n>\n".
 *
 * Cost.  Producers first test logstream_wants() (one relaxed atomic
 * load); only while somebody watches a stream do its events get
 * formatted and delivered, under the locks described in logstream.c.
 *
 * Threads: producers on any thread; logstream_watch() on the watching
 * connection's worker thread.
 */
#ifndef CORRALD_LOGSTREAM_H
#define CORRALD_LOGSTREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <corral.h>

struct conn;
struct logstream;

/* Streams a watcher may ask for. */
#define LOGSTREAM_FETCHERS 0x1u
#define LOGSTREAM_MUTATIONS 0x2u
#define LOGSTREAM_EVICTIONS 0x4u

/* memcached's limits: watchers at once, buffer per watcher. */
#define LOGSTREAM_WATCHERS_MAX 20
#define LOGSTREAM_BUFFER (256 * 1024)

/* item_store outcomes and commands, in memcached's order. */
#define LOGSTREAM_STATUS_TABLE(X)                                             \
    X(NOT_STORED, "not_stored")                                               \
    X(STORED, "stored")                                                       \
    X(EXISTS, "exists")                                                       \
    X(NOT_FOUND, "not_found")                                                 \
    X(TOO_LARGE, "too_large")                                                 \
    X(NO_MEMORY, "no_memory")

#define LOGSTREAM_CMD_TABLE(X)                                                \
    X(NULL, "null")                                                           \
    X(ADD, "add")                                                             \
    X(SET, "set")                                                             \
    X(REPLACE, "replace")                                                     \
    X(APPEND, "append")                                                       \
    X(PREPEND, "prepend")                                                     \
    X(CAS, "cas")

enum logstream_status {
#define LOGSTREAM_STATUS_ENUM(e, s) LOGSTREAM_##e,
    LOGSTREAM_STATUS_TABLE(LOGSTREAM_STATUS_ENUM)
#undef LOGSTREAM_STATUS_ENUM
};

enum logstream_cmd {
#define LOGSTREAM_CMD_ENUM(e, s) LOGSTREAM_CMD_##e,
    LOGSTREAM_CMD_TABLE(LOGSTREAM_CMD_ENUM)
#undef LOGSTREAM_CMD_ENUM
};

enum logstream_watch_result {
    LOGSTREAM_WATCH_OK = 0,
    LOGSTREAM_WATCH_TOO_MANY,   /* LOGSTREAM_WATCHERS_MAX reached */
    LOGSTREAM_WATCH_FAILED      /* out of memory */
};

/* Figures for "stats" (memcached's log_* lines) and the metrics. */
struct logstream_stats {
    uint64_t watchers;   /* log_watchers: connections watching now */
    uint64_t written;    /* log_worker_written: events formatted */
    uint64_t sent;       /* log_watcher_sent: lines given to watchers */
    uint64_t skipped;    /* log_watcher_skipped: lines a full watcher lost */
};

/*
 * logstream_create - no watchers yet.  @cache (may be NULL) is the engine
 * whose evictions "watch evictions" reports; it must outlive the log
 * streams.  NULL when out of memory.
 */
struct logstream *logstream_create(corral_t *cache);

/*
 * logstream_destroy - free.  Every watching connection must have closed
 * (the workers have stopped).  NULL is a no-op.
 */
void logstream_destroy(struct logstream *ls);

/*
 * logstream_wants - whether anybody watches one of @streams.  The test
 * every producer makes first; a relaxed load.
 */
bool logstream_wants(struct logstream *ls, unsigned streams);

/*
 * logstream_watch - make @c (on its worker thread, inside the "watch"
 * request) a watcher of @streams.  On LOGSTREAM_WATCH_OK the caller
 * queues "OK\r\n" as the request's reply; the connection is a stream
 * from then on (conn_stream_begin) and the watcher goes when it closes.
 */
enum logstream_watch_result logstream_watch(struct logstream *ls,
                                            struct conn *c,
                                            unsigned streams);

/*
 * Events.  Keys are borrowed for the call.  @cfd is the requesting
 * connection's descriptor; @size the value's length in bytes.
 */
enum logstream_fetch {
    LOGSTREAM_FETCH_FOUND,
    LOGSTREAM_FETCH_MISS,
    LOGSTREAM_FETCH_EXPIRED, /* memcached's words for a miss on an item */
    LOGSTREAM_FETCH_FLUSHED  /* that had expired or been flushed */
};
void logstream_item_get(struct logstream *ls, int cfd, const void *key,
                        size_t nkey, enum logstream_fetch status,
                        size_t size);
void logstream_item_store(struct logstream *ls, int cfd, const void *key,
                          size_t nkey, enum logstream_status status,
                          enum logstream_cmd cmd, uint32_t ttl,
                          unsigned clsid, size_t size);
/* @ttl: seconds left, -1 for none; @la: seconds since the last access. */
void logstream_eviction(struct logstream *ls, const void *key, size_t nkey,
                        bool fetched, int64_t ttl, int64_t la, size_t size);

/* logstream_stats - the counters so far.  Any thread. */
void logstream_stats(struct logstream *ls, struct logstream_stats *out);

/*
 * logstream_uriencode - memcached's key encoding for log lines: letters,
 * digits and "-._~" as they are, every other byte as "%XX".  Writes at
 * most @cap - 1 bytes and a NUL into @dst; returns the length written
 * (3 * nkey + 1 bytes always suffice).
 */
size_t logstream_uriencode(const void *key, size_t nkey, char *dst,
                           size_t cap);

#endif /* CORRALD_LOGSTREAM_H */
