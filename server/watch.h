/*
 * watch.h - "watch invalidations": the engine's invalidation events, kept
 * in a bounded history and fanned out to the connections that watch them.
 *
 * Threads.  watch_record() runs on whatever thread changed the cache (the
 * engine delivers events there, one at a time); it only appends to the
 * history and signals the workers that have watchers.  Everything about
 * a watcher runs on the worker thread that owns its connection.  The
 * hub's lock guards the history and each worker's `attached` flag; it is
 * a leaf lock (ev_async_send() is the only call made under it).
 *
 * This module uses the protocol library for the stream's lines and never
 * calls the engine: exec.c turns engine events into proto_watch_event
 * values and hands them to watch_record().
 */
#ifndef CORRALD_WATCH_H
#define CORRALD_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct proto_cmd;
struct proto_watch_event;
struct server;
struct worker;
struct watch_hub;
struct watcher;

/* A snapshot of the module's counters, for "stats invalidations". */
struct watch_stats {
    uint64_t history;          /* events the history holds at most */
    uint64_t history_used;     /* events it holds now */
    uint64_t next_seq;         /* the seq the next event will get */
    uint64_t events;           /* events recorded since start */
    uint64_t watchers;         /* connections watching now */
    uint64_t watchers_total;   /* watch invalidations accepted */
    uint64_t lines_sent;       /* event lines queued to watchers */
    uint64_t watchers_lagged;  /* closed for falling behind */
    uint64_t gaps;             /* gap lines sent (flush everything) */
    uint64_t replays;          /* since= answered by a replay */
};

/*
 * watch_hub_create - the history (@history events, at least 16) and the
 * fan-out state for @srv's workers.  @lag_max: a watcher more events
 * behind than this is dropped (0: the history size; at most that).
 * @first_seq: the seq the first recorded event will carry.  Call before
 * the workers start.  Returns NULL on allocation failure.
 */
struct watch_hub *watch_hub_create(struct server *srv, size_t history,
                                   size_t lag_max, uint64_t first_seq);

/* watch_hub_destroy - after every worker has been detached.  NULL: no-op. */
void watch_hub_destroy(struct watch_hub *hub);

/*
 * watch_worker_attach - give worker @w its fan-out state: an ev_async on
 * its loop.  Called on the main thread before the worker's thread runs.
 * Returns 0 or -1 (out of memory).
 * watch_worker_detach - after the worker's thread has ended, before its
 * loop is destroyed: no signal reaches it afterwards.
 */
int watch_worker_attach(struct watch_hub *hub, struct worker *w);
void watch_worker_detach(struct watch_hub *hub, struct worker *w);

/*
 * watch_record - append one event (DELETE ... FLUSH, or GAP when the
 * server itself missed engine events) and wake the workers that have
 * watchers.  @ev->name is copied.  Any thread; callers are serialised by
 * the engine.  O(1) plus one ev_async_send() per such worker.
 */
void watch_record(struct watch_hub *hub, const struct proto_watch_event *ev);

/*
 * watch_add - make @c, on its worker's thread, a watcher for the parsed
 * "watch invalidations" @cmd: queue the sync line, a gap line when since=
 * cannot be replayed, and the replay itself.  The caller has queued "OK".
 * @node: this server's id.  Returns 0, or -1 on allocation failure
 * (nothing changed).
 */
int watch_add(struct watch_hub *hub, struct conn *c,
              const struct proto_cmd *cmd, uint64_t node);

/* watch_stats_get - the counters, summed.  Any thread. */
void watch_stats_get(struct watch_hub *hub, struct watch_stats *out);

#endif /* CORRALD_WATCH_H */
