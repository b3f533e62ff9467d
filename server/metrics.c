/*
 * metrics.c - the Prometheus endpoint: a minimal HTTP responder on the
 * main loop, and the rendering of every figure corrald has into the text
 * exposition format (version 0.0.4).
 *
 * One scrape, on the main thread:
 *
 *   accept ──► read until the end of the request head (at most
 *              METRICS_REQUEST_MAX bytes; 431 beyond)
 *          ──► parse the request line: GET or HEAD, /metrics[?...],
 *              HTTP/1.0 or HTTP/1.1 (400, 404, 405, 505 otherwise)
 *          ──► render: engine statistics (corral_stats through the
 *              server's baseline-free view), worker counters, the
 *              invalidation stream (watch history, watchers) and peer
 *              links (one series per link, labelled peer="host:port"),
 *              per-command histograms summed over workers, log
 *              streams, process
 *          ──► write the response, then shut the write side and wait
 *              for the client to close (so an unread request byte cannot
 *              turn the close into a reset that loses the response)
 *
 * Every connection has one deadline timer (METRICS_TIMEOUT from accept);
 * at most METRICS_CONNS_MAX connections are served at once, and one
 * beyond that is closed at once.  No keep-alive: every response says
 * "Connection: close".
 *
 * Names follow Prometheus' conventions: the corral_ prefix, _total on
 * counters, base units (seconds, bytes) in the name.  Engine statistics
 * come from CORRAL_STATS_TABLE with their kinds and descriptions, so a
 * statistic added to the engine appears here without a change; the few
 * whose memcached names lack a unit are renamed by metrics_rename[].
 * Counters are never reset ("stats reset" moves baselines only), so
 * they only grow for the life of the process.
 */
#include "metrics.h"

#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include <corral.h>

#include "exec.h"
#include "log.h"
#include "logstream.h"
#include "peer.h"
#include "server.h"
#include "watch.h"
#include "worker.h"

#define METRICS_MAX_SOCKETS 8

/* How long a finished exchange waits for the client to close. */
#define METRICS_LINGER 2.0

struct http_conn {
    struct metrics *m;
    struct http_conn *prev, *next;
    int fd;
    ev_io io;
    ev_timer deadline;
    bool writing;             /* the response is being written */
    bool lingering;           /* written: waiting for the client's EOF */
    size_t rlen;
    char req[METRICS_REQUEST_MAX];
    char *out;
    size_t olen, opos;
};

struct metrics_sock {
    int fd;
    ev_io io;
    struct metrics *m;
};

struct metrics {
    struct server *srv;
    struct metrics_sock socks[METRICS_MAX_SOCKETS];
    size_t nsocks;
    unsigned port;
    struct http_conn *conns;
    size_t nconns;
    bool stopped;
};

/* ---------------------------------------------------------------------- */
/* Rendering                                                              */

/* A growing text buffer; a failed allocation sticks (oom). */
struct mbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void
mbuf_printf(struct mbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom) {
        return;
    }
    for (;;) {
        size_t room = b->cap - b->len;

        va_start(ap, fmt);
        n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        {
            size_t cap = b->cap ? b->cap * 2 : 16384;
            char *p;

            while (cap - b->len <= (size_t)n) {
                cap *= 2;
            }
            p = realloc(b->p, cap);
            if (p == NULL) {
                b->oom = true;
                return;
            }
            b->p = p;
            b->cap = cap;
        }
    }
}

static void
mbuf_append(struct mbuf *b, const char *p, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 16384;
        char *q;

        while (cap - b->len < n + 1) {
            cap *= 2;
        }
        q = realloc(b->p, cap);
        if (q == NULL) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* "# HELP" text: backslashes and newlines escaped. */
static void
mbuf_help(struct mbuf *b, const char *name, const char *type,
          const char *help)
{
    mbuf_printf(b, "# HELP %s ", name);
    for (const char *p = help; *p != '\0'; p++) {
        if (*p == '\\') {
            mbuf_printf(b, "\\\\");
        } else if (*p == '\n') {
            mbuf_printf(b, "\\n");
        } else {
            mbuf_printf(b, "%c", *p);
        }
    }
    mbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void
metric_u64(struct mbuf *b, const char *name, const char *type,
           const char *help, uint64_t v)
{
    mbuf_help(b, name, type, help);
    mbuf_printf(b, "%s %" PRIu64 "\n", name, v);
}

/*
 * Engine statistics whose memcached names carry no unit, or read badly
 * with _total appended.  Everything else is corral_<name>[_total].
 */
static const struct {
    const char *stat;
    const char *metric;
} metrics_rename[] = {
    {"curr_items", "corral_items"},
    {"total_items", "corral_items_stored_total"},
    {"bytes", "corral_item_memory_bytes"},
    {"limit_maxbytes", "corral_memory_limit_bytes"},
    {"mem_used", "corral_memory_used_bytes"},
    {"hash_bytes", "corral_hash_table_bytes"},
    {"hash_is_expanding", "corral_hash_tables_growing"},
};

static void
metrics_engine(struct mbuf *b, const corral_stats_t *cs)
{
    static const struct {
        const char *name;
        bool counter;
        const char *help;
    } table[] = {
#define METRICS_KIND_counter true
#define METRICS_KIND_gauge false
#define METRICS_ROW(name, kind, text) {#name, METRICS_KIND_##kind, text},
        CORRAL_STATS_TABLE(METRICS_ROW)
#undef METRICS_ROW
    };
    const uint64_t values[] = {
#define METRICS_VALUE(name, kind, text) cs->name,
        CORRAL_STATS_TABLE(METRICS_VALUE)
#undef METRICS_VALUE
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        char name[96];

        snprintf(name, sizeof(name), "corral_%s%s", table[i].name,
                 table[i].counter ? "_total" : "");
        for (size_t r = 0; r < sizeof(metrics_rename) /
                                   sizeof(metrics_rename[0]); r++) {
            if (strcmp(metrics_rename[r].stat, table[i].name) == 0) {
                snprintf(name, sizeof(name), "%s", metrics_rename[r].metric);
            }
        }
        metric_u64(b, name, table[i].counter ? "counter" : "gauge",
                   table[i].help, values[i]);
    }
}

static void
metrics_server(struct mbuf *b, struct server *srv,
               const struct server_snapshot *ss)
{
    struct logstream_stats ls;

    metric_u64(b, "corral_connections", "gauge",
               "client connections open now", ss->curr_conns);
    metric_u64(b, "corral_connections_max", "gauge",
               "the connection limit (-c)", srv->settings->max_conns);
    metric_u64(b, "corral_connections_total", "counter",
               "client connections accepted", ss->total_conns);
    metric_u64(b, "corral_connections_rejected_total", "counter",
               "connections refused at the connection limit",
               ss->rejected_conns);
    metric_u64(b, "corral_listen_disabled_total", "counter",
               "times accepting paused for lack of descriptors",
               ss->listen_disabled_num);
    metric_u64(b, "corral_accepting", "gauge",
               "1 while new connections are accepted", ss->accepting);
    metric_u64(b, "corral_idle_kicks_total", "counter",
               "connections closed by the idle timeout", ss->idle_kicks);
    metric_u64(b, "corral_auth_commands_total", "counter",
               "authentication attempts (-Y)", ss->auth_cmds);
    metric_u64(b, "corral_auth_errors_total", "counter",
               "authentication attempts refused (-Y)", ss->auth_errors);
    metric_u64(b, "corral_conn_yields_total", "counter",
               "batches cut short to let other connections run",
               ss->conn_yields);
    metric_u64(b, "corral_read_bytes_total", "counter",
               "bytes read from clients", ss->bytes_read);
    metric_u64(b, "corral_written_bytes_total", "counter",
               "bytes written to clients", ss->bytes_written);
    metric_u64(b, "corral_threads", "gauge", "worker threads",
               srv->nworkers);
    metric_u64(b, "corral_meta_commands_total", "counter",
               "meta commands (mg ms md ma mn me)", ss->cmd_meta);
    metric_u64(b, "corral_meta_stale_total", "counter",
               "mg requests that found a stale item (X)", ss->meta_stale);
    metric_u64(b, "corral_meta_vivified_total", "counter",
               "mg requests that created a missing item (N)",
               ss->meta_vivified);
    metric_u64(b, "corral_meta_lease_timeouts_total", "counter",
               "W handed out again before the previous holder stored",
               ss->meta_lease_timeouts);

    logstream_stats(srv->logs, &ls);
    metric_u64(b, "corral_log_watchers", "gauge",
               "connections watching log streams (watch fetchers, "
               "mutations, evictions)", ls.watchers);
    metric_u64(b, "corral_log_lines_total", "counter",
               "log stream lines produced", ls.written);
    metric_u64(b, "corral_log_lines_sent_total", "counter",
               "log stream lines given to watchers", ls.sent);
    metric_u64(b, "corral_log_lines_skipped_total", "counter",
               "log stream lines lost by watchers that fell behind",
               ls.skipped);
}

/* A label value with backslash, quote and newline escaped. */
static void
mbuf_label(struct mbuf *b, const char *v)
{
    for (const char *p = v; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"') {
            mbuf_printf(b, "\\%c", *p);
        } else if (*p == '\n') {
            mbuf_printf(b, "\\n");
        } else {
            mbuf_printf(b, "%c", *p);
        }
    }
}

/* The stream of invalidations: the server's commands, the watch history
 * and its watchers (when --watch-history is not 0). */
static void
metrics_invalidation(struct mbuf *b, struct server *srv,
                     const struct server_snapshot *ss)
{
    metric_u64(b, "corral_invalidate_tag_commands_total", "counter",
               "invalidate_tag requests", ss->cmd_invalidate_tag);
    metric_u64(b, "corral_invalidate_prefix_commands_total", "counter",
               "invalidate_prefix requests", ss->cmd_invalidate_prefix);
    metric_u64(b, "corral_tagged_stores_total", "counter",
               "storage requests that gave the item at least one tag "
               "(tags on the command, or --key-tags)",
               ss->cmd_tagged_store);
    if (srv->watch != NULL) {
        struct watch_stats ws;

        watch_stats_get(srv->watch, &ws);
        metric_u64(b, "corral_watch_history_events", "gauge",
                   "events the invalidation history holds at most "
                   "(--watch-history)", ws.history);
        metric_u64(b, "corral_watch_history_used_events", "gauge",
                   "events the invalidation history holds now",
                   ws.history_used);
        metric_u64(b, "corral_watch_next_seq", "gauge",
                   "the sequence number the next invalidation event will "
                   "carry", ws.next_seq);
        metric_u64(b, "corral_watch_events_total", "counter",
                   "invalidation events recorded in the history",
                   ws.events);
        metric_u64(b, "corral_watchers", "gauge",
                   "connections watching invalidations now", ws.watchers);
        metric_u64(b, "corral_watchers_total", "counter",
                   "watch invalidations commands accepted",
                   ws.watchers_total);
        metric_u64(b, "corral_watch_lines_sent_total", "counter",
                   "event lines queued to watchers", ws.lines_sent);
        metric_u64(b, "corral_watchers_lagged_total", "counter",
                   "watchers closed for falling too far behind",
                   ws.watchers_lagged);
        metric_u64(b, "corral_watch_gaps_total", "counter",
                   "gap lines sent (the watcher must flush what it holds)",
                   ws.gaps);
        metric_u64(b, "corral_watch_replays_total", "counter",
                   "watch invalidations since= answered from the history",
                   ws.replays);
    }
}

/* One "name{peer="host:port"" prefix; the caller adds the rest. */
static void
peer_series(struct mbuf *b, const char *name, const struct peer_stats *p)
{
    mbuf_printf(b, "%s{peer=\"", name);
    mbuf_label(b, p->name);
    mbuf_printf(b, "\"");
}

/*
 * Peer links (--peer): totals, then one series per link labelled with
 * the peer's address as given (peers are few, so labels stay bounded),
 * its state as a state set, and its counters and lag.
 */
static void
metrics_peers(struct mbuf *b, struct server *srv)
{
    /* the uint64_t fields of struct peer_stats exported as they are, or
     * (us) from microseconds to seconds */
    static const struct {
        const char *name, *type, *help;
        size_t off;
        bool us;
    } fam[] = {
        {"corral_peer_events_applied_total", "counter",
         "invalidation events applied from this peer",
         offsetof(struct peer_stats, applied), false},
        {"corral_peer_flushes_total", "counter",
         "flushes of this node's cache for lack of continuity with this "
         "peer (first link, peer restarted, gap)",
         offsetof(struct peer_stats, flushes), false},
        {"corral_peer_connects_total", "counter",
         "connections made to this peer (watch commands sent)",
         offsetof(struct peer_stats, connects), false},
        {"corral_peer_lag_seconds", "gauge",
         "for the last event applied from this peer, the time from its "
         "timestamp on the peer to its application here (the two hosts' "
         "clocks); 0 before any",
         offsetof(struct peer_stats, lag_us), true},
        {"corral_peer_lag_seconds_total", "counter",
         "the lag of every event applied from this peer, summed: its "
         "increase over that of corral_peer_events_applied_total is the "
         "mean lag",
         offsetof(struct peer_stats, lag_sum_us), true},
        {"corral_peer_last_event_timestamp_seconds", "gauge",
         "Unix time at which the last event from this peer was applied; "
         "0 before any",
         offsetof(struct peer_stats, last_us), true},
    };
    struct peers *ps = srv->peers;
    unsigned n = peers_count(ps), up = 0;
    struct peer_stats *st;

    if (n == 0) {
        return;
    }
    st = calloc(n, sizeof(*st));
    if (st == NULL) {
        b->oom = true;
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        peers_link_stats(ps, i, &st[i]);
        up += st[i].up;
    }
    metric_u64(b, "corral_peers", "gauge", "peer links configured (--peer)",
               n);
    metric_u64(b, "corral_peers_up", "gauge",
               "peer links applying their peer's stream", up);
    mbuf_help(b, "corral_peer_up", "gauge",
              "1 while the link applies the peer's stream, else 0");
    for (unsigned i = 0; i < n; i++) {
        peer_series(b, "corral_peer_up", &st[i]);
        mbuf_printf(b, "} %d\n", st[i].up);
    }
    mbuf_help(b, "corral_peer_state", "gauge",
              "1 for the link's current state (down, connecting, waiting, "
              "up, self), 0 for the others");
    for (unsigned i = 0; i < n; i++) {
        const char *sn;

        for (unsigned k = 0; (sn = peers_state_name(k)) != NULL; k++) {
            peer_series(b, "corral_peer_state", &st[i]);
            mbuf_printf(b, ",state=\"%s\"} %d\n", sn, k == st[i].state);
        }
    }
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        mbuf_help(b, fam[f].name, fam[f].type, fam[f].help);
        for (unsigned i = 0; i < n; i++) {
            uint64_t v;

            memcpy(&v, (const char *)&st[i] + fam[f].off, sizeof(v));
            peer_series(b, fam[f].name, &st[i]);
            if (fam[f].us) {
                mbuf_printf(b, "} %" PRIu64 ".%06" PRIu64 "\n", v / 1000000,
                            v % 1000000);
            } else {
                mbuf_printf(b, "} %" PRIu64 "\n", v);
            }
        }
    }
    free(st);
}

/*
 * Per-command counts, refusals and latency histograms, summed over the
 * workers.  Commands never seen are left out (they appear with their
 * first request and stay).
 */
static void
metrics_commands(struct mbuf *b, struct server *srv)
{
    struct histogram_snap *h;
    uint64_t errors[SERVER_CMD_SLOTS] = {0};
    size_t nslots = 0;

    while (nslots < SERVER_CMD_SLOTS && exec_command_name(nslots) != NULL) {
        nslots++;
    }
    h = calloc(nslots ? nslots : 1, sizeof(*h));
    if (h == NULL) {
        b->oom = true;
        return;
    }
    for (unsigned w = 0; w < srv->nworkers; w++) {
        const struct server_cmdstats *cs = &srv->cmdstats[w];

        for (size_t i = 0; i < nslots; i++) {
            histogram_add_to(&h[i], &cs->latency[i]);
            errors[i] += srv_counter_get(&cs->errors[i]);
        }
    }

    {
        bool any = false;

        for (size_t i = 0; i < nslots; i++) {
            any = any || h[i].count > 0 || errors[i] > 0;
        }
        if (!any) {
            free(h); /* no family without a sample */
            return;
        }
    }
    mbuf_help(b, "corral_commands_total", "counter",
              "requests executed, by command");
    for (size_t i = 0; i < nslots; i++) {
        if (h[i].count > 0 || errors[i] > 0) {
            mbuf_printf(b, "corral_commands_total{command=\"%s\"} %" PRIu64
                           "\n", exec_command_name(i), h[i].count);
        }
    }
    mbuf_help(b, "corral_command_errors_total", "counter",
              "requests refused with an error reply before execution, by "
              "command (\"unknown\": not a command)");
    for (size_t i = 0; i < nslots; i++) {
        if (h[i].count > 0 || errors[i] > 0) {
            mbuf_printf(b, "corral_command_errors_total{command=\"%s\"} "
                           "%" PRIu64 "\n", exec_command_name(i), errors[i]);
        }
    }
    mbuf_help(b, "corral_command_duration_seconds", "histogram",
              "time to parse and execute a request and compose its reply "
              "(network and queueing excluded), by command");
    for (size_t i = 0; i < nslots; i++) {
        uint64_t cum = 0;
        const char *cmd = exec_command_name(i);

        if (h[i].count == 0 && errors[i] == 0) {
            continue;
        }
        for (size_t k = 0; k < HISTOGRAM_BUCKETS; k++) {
            cum += h[i].bucket[k];
            mbuf_printf(b, "corral_command_duration_seconds_bucket{"
                           "command=\"%s\",le=\"%s\"} %" PRIu64 "\n",
                        cmd, histogram_bound_text(k), cum);
        }
        mbuf_printf(b, "corral_command_duration_seconds_sum{command=\"%s\"} "
                       "%.9f\n", cmd, (double)h[i].sum_ns / 1e9);
        mbuf_printf(b, "corral_command_duration_seconds_count{command=\"%s\"}"
                       " %" PRIu64 "\n", cmd, cum);
    }
    free(h);
}

/* The process figures Prometheus' client libraries export. */
static void
metrics_process(struct mbuf *b, struct server *srv)
{
    struct rusage ru;
    struct rlimit rl;
    FILE *f;

    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        mbuf_help(b, "process_cpu_seconds_total", "counter",
                  "user and system CPU time spent in seconds");
        mbuf_printf(b, "process_cpu_seconds_total %.6f\n",
                    (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                        ((double)ru.ru_utime.tv_usec +
                         (double)ru.ru_stime.tv_usec) / 1e6);
    }
    f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        unsigned long long size, resident;
        long page = sysconf(_SC_PAGESIZE);

        if (fscanf(f, "%llu %llu", &size, &resident) == 2 && page > 0) {
            metric_u64(b, "process_virtual_memory_bytes", "gauge",
                       "virtual memory size in bytes",
                       (uint64_t)size * (uint64_t)page);
            metric_u64(b, "process_resident_memory_bytes", "gauge",
                       "resident memory size in bytes",
                       (uint64_t)resident * (uint64_t)page);
        }
        fclose(f);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        metric_u64(b, "process_max_fds", "gauge",
                   "maximum number of open file descriptors",
                   (uint64_t)rl.rlim_cur);
    }
    metric_u64(b, "process_start_time_seconds", "gauge",
               "start time of the process since unix epoch in seconds",
               (uint64_t)srv->started);
    mbuf_help(b, "corral_build_info", "gauge",
              "1, labelled with the versions of corrald and libcorral");
    mbuf_printf(b, "corral_build_info{version=\"%s\",libcorral=\"%s\"} 1\n",
                PACKAGE_VERSION, corral_version());
}

char *
metrics_render(struct server *srv, size_t *out_len)
{
    struct mbuf b = {NULL, 0, 0, false};
    corral_stats_t cs;
    struct server_snapshot ss;

    memset(&cs, 0, sizeof(cs));
    corral_stats(srv->cache, &cs, sizeof(cs));
    server_raw_snapshot(srv, &ss);
    metrics_engine(&b, &cs);
    metrics_server(&b, srv, &ss);
    metrics_invalidation(&b, srv, &ss);
    metrics_peers(&b, srv);
    metrics_commands(&b, srv);
    metrics_process(&b, srv);
    if (b.oom || b.p == NULL) {
        free(b.p);
        return NULL;
    }
    *out_len = b.len;
    return b.p;
}

/* ---------------------------------------------------------------------- */
/* HTTP                                                                   */

static void http_on_io(struct ev_loop *loop, ev_io *w, int revents);
static void http_on_deadline(struct ev_loop *loop, ev_timer *t, int revents);

static void
http_close(struct http_conn *h)
{
    struct metrics *m = h->m;
    struct ev_loop *loop = m->srv->main_loop;

    ev_io_stop(loop, &h->io);
    ev_timer_stop(loop, &h->deadline);
    close(h->fd);
    if (h->prev != NULL) {
        h->prev->next = h->next;
    } else {
        m->conns = h->next;
    }
    if (h->next != NULL) {
        h->next->prev = h->prev;
    }
    m->nconns--;
    free(h->out);
    free(h);
}

/* Queue a response: status line, headers, and @body unless @head_only. */
static void
http_respond(struct http_conn *h, const char *status, const char *ctype,
             const char *extra, const char *body, size_t nbody,
             bool head_only)
{
    struct mbuf b = {NULL, 0, 0, false};

    mbuf_printf(&b, "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
                    "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                status, ctype, nbody, extra != NULL ? extra : "");
    if (!head_only) {
        mbuf_append(&b, body, nbody);
    }
    if (b.oom) {
        free(b.p);
        http_close(h);
        return;
    }
    h->out = b.p;
    h->olen = b.len;
    h->opos = 0;
    h->writing = true;
    ev_io_stop(h->m->srv->main_loop, &h->io);
    ev_io_set(&h->io, h->fd, EV_WRITE);
    ev_io_start(h->m->srv->main_loop, &h->io);
}

static void
http_error(struct http_conn *h, const char *status, const char *extra,
           bool head_only)
{
    char body[128];
    int n = snprintf(body, sizeof(body), "%s\n", status);

    http_respond(h, status, "text/plain; charset=utf-8", extra, body,
                 (size_t)n, head_only);
}

/* The end of the request head, or NULL: "\r\n\r\n" or a bare "\n\n". */
static const char *
http_head_end(const char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] == '\n' &&
            (p[i + 1] == '\n' ||
             (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n'))) {
            return p + i;
        }
    }
    return NULL;
}

/* Parse the request line of a complete head and answer it. */
static void
http_handle(struct http_conn *h)
{
    char line[512];
    const char *nl = memchr(h->req, '\n', h->rlen);
    size_t n = (size_t)(nl - h->req);
    char *method, *target, *version, *save = NULL;
    bool head_only;

    if (n > 0 && h->req[n - 1] == '\r') {
        n--;
    }
    if (n == 0 || n >= sizeof(line)) {
        http_error(h, n == 0 ? "400 Bad Request" : "414 URI Too Long",
                   NULL, false);
        return;
    }
    memcpy(line, h->req, n);
    line[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch < 0x20 || ch == 0x7f) {
            http_error(h, "400 Bad Request", NULL, false);
            return;
        }
    }
    method = strtok_r(line, " ", &save);
    target = strtok_r(NULL, " ", &save);
    version = strtok_r(NULL, " ", &save);
    if (method == NULL || target == NULL || version == NULL ||
        strtok_r(NULL, " ", &save) != NULL ||
        strncmp(version, "HTTP/", 5) != 0) {
        http_error(h, "400 Bad Request", NULL, false);
        return;
    }
    head_only = strcmp(method, "HEAD") == 0;
    if (strcmp(version, "HTTP/1.0") != 0 && strcmp(version, "HTTP/1.1") != 0) {
        http_error(h, "505 HTTP Version Not Supported", NULL, head_only);
        return;
    }
    if (!head_only && strcmp(method, "GET") != 0) {
        http_error(h, "405 Method Not Allowed", "Allow: GET, HEAD\r\n",
                   false);
        return;
    }
    if (strcmp(target, "/metrics") != 0 &&
        strncmp(target, "/metrics?", 9) != 0) {
        http_error(h, "404 Not Found", NULL, head_only);
        return;
    }
    {
        size_t len = 0;
        char *text = metrics_render(h->m->srv, &len);

        if (text == NULL) {
            log_warn("metrics: out of memory rendering a scrape");
            http_error(h, "500 Internal Server Error", NULL, head_only);
            return;
        }
        http_respond(h, "200 OK", "text/plain; version=0.0.4; charset=utf-8",
                     NULL, text, len, head_only);
        free(text);
    }
}

static void
http_read(struct http_conn *h)
{
    for (;;) {
        ssize_t n;

        if (h->rlen == sizeof(h->req)) {
            http_error(h, "431 Request Header Fields Too Large", NULL,
                       false);
            return;
        }
        n = read(h->fd, h->req + h->rlen, sizeof(h->req) - h->rlen);
        if (n > 0) {
            size_t from = h->rlen > 3 ? h->rlen - 3 : 0;

            h->rlen += (size_t)n;
            if (http_head_end(h->req + from, h->rlen - from) != NULL) {
                http_handle(h);
                return;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        http_close(h); /* EOF before a whole request, or an error */
        return;
    }
}

static void
http_write(struct http_conn *h)
{
    struct ev_loop *loop = h->m->srv->main_loop;

    while (h->opos < h->olen) {
        ssize_t n = send(h->fd, h->out + h->opos, h->olen - h->opos,
                         MSG_NOSIGNAL);

        if (n > 0) {
            h->opos += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        http_close(h);
        return;
    }
    /* Done: close our side, and let the client close its own. */
    free(h->out);
    h->out = NULL;
    h->writing = false;
    h->lingering = true;
    shutdown(h->fd, SHUT_WR);
    ev_io_stop(loop, &h->io);
    ev_io_set(&h->io, h->fd, EV_READ);
    ev_io_start(loop, &h->io);
    ev_timer_stop(loop, &h->deadline);
    ev_timer_set(&h->deadline, METRICS_LINGER, 0.);
    ev_timer_start(loop, &h->deadline);
}

/* After the response: discard whatever comes until EOF. */
static void
http_linger(struct http_conn *h)
{
    char sink[512];

    for (;;) {
        ssize_t n = read(h->fd, sink, sizeof(sink));

        if (n > 0) {
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        http_close(h);
        return;
    }
}

static void
http_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct http_conn *h = w->data;

    (void)loop;
    (void)revents;
    if (h->writing) {
        http_write(h);
    } else if (h->lingering) {
        http_linger(h);
    } else {
        http_read(h);
    }
}

static void
http_on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct http_conn *h = t->data;

    (void)loop;
    (void)revents;
    if (!h->lingering) {
        log_verbose("metrics: closing a connection after %.0f s",
                    METRICS_TIMEOUT);
    }
    http_close(h);
}

static void
metrics_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct metrics_sock *ms = w->data;
    struct metrics *m = ms->m;

    (void)revents;
    for (int i = 0; i < 16; i++) {
        struct http_conn *h;
        int fd = accept4(ms->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_warn("metrics: accept: %s", strerror(errno));
            }
            return;
        }
        if (m->nconns >= METRICS_CONNS_MAX) {
            log_verbose("metrics: %d scrapes at once; closing a new one",
                        METRICS_CONNS_MAX);
            close(fd);
            continue;
        }
        h = calloc(1, sizeof(*h));
        if (h == NULL) {
            log_warn("metrics: out of memory accepting a scrape");
            close(fd);
            continue;
        }
        h->m = m;
        h->fd = fd;
        ev_io_init(&h->io, http_on_io, fd, EV_READ);
        h->io.data = h;
        ev_timer_init(&h->deadline, http_on_deadline, METRICS_TIMEOUT, 0.);
        h->deadline.data = h;
        h->next = m->conns;
        if (h->next != NULL) {
            h->next->prev = h;
        }
        m->conns = h;
        m->nconns++;
        ev_io_start(loop, &h->io);
        ev_timer_start(loop, &h->deadline);
    }
}

/* ---------------------------------------------------------------------- */
/* Life                                                                   */

static int
metrics_bind_one(struct metrics *m, const struct addrinfo *ai)
{
    struct metrics_sock *ms;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int one = 1;
    int fd;

    if (m->nsocks == METRICS_MAX_SOCKETS) {
        return 0;
    }
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
        log_error("metrics: socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        log_error("metrics: cannot listen on port %u: %s",
                  m->srv->settings->metrics_port, strerror(errno));
        close(fd);
        return -1;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            m->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            m->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    ms = &m->socks[m->nsocks++];
    ms->fd = fd;
    ms->m = m;
    ev_io_init(&ms->io, metrics_on_accept, fd, EV_READ);
    ms->io.data = ms;
    return 0;
}

struct metrics *
metrics_create(struct server *srv)
{
    const struct settings *st = srv->settings;
    struct addrinfo hints, *res = NULL, *ai;
    struct metrics *m;
    char port[16];
    const char *host;
    int err;

    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        log_error("out of memory");
        return NULL;
    }
    m->srv = srv;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(port, sizeof(port), "%u", st->metrics_port);
    host = strcmp(st->metrics_listen, "*") == 0 ? NULL : st->metrics_listen;
    err = getaddrinfo(host, port, &hints, &res);
    if (err != 0) {
        log_error("metrics: cannot resolve \"%s\": %s", st->metrics_listen,
                  gai_strerror(err));
        free(m);
        return NULL;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        if (metrics_bind_one(m, ai) != 0) {
            freeaddrinfo(res);
            metrics_destroy(m);
            return NULL;
        }
    }
    freeaddrinfo(res);
    if (m->nsocks == 0) {
        log_error("metrics: no address to listen on for \"%s\"",
                  st->metrics_listen);
        free(m);
        return NULL;
    }
    for (size_t i = 0; i < m->nsocks; i++) {
        ev_io_start(srv->main_loop, &m->socks[i].io);
    }
    log_info("metrics: serving http://%s:%u/metrics", st->metrics_listen,
             m->port);
    return m;
}

void
metrics_stop(struct metrics *m)
{
    if (m == NULL || m->stopped) {
        return;
    }
    m->stopped = true;
    for (size_t i = 0; i < m->nsocks; i++) {
        ev_io_stop(m->srv->main_loop, &m->socks[i].io);
        close(m->socks[i].fd);
    }
    while (m->conns != NULL) {
        http_close(m->conns);
    }
}

void
metrics_destroy(struct metrics *m)
{
    if (m == NULL) {
        return;
    }
    metrics_stop(m);
    free(m);
}

unsigned
metrics_port(const struct metrics *m)
{
    return m->port;
}
