/*
 * watch.c - `corral-bench watch`: the invalidation stream and tags.
 *
 *   latency     one writer overwrites a key, one event at a time; W
 *               watcher connections ("watch invalidations") each time
 *               read the line it causes.  Per delivery: the time from
 *               sending the write to reading the line; per event: the
 *               time until the last watcher has it.  For each W in
 *               --watchers, --lat-rounds runs with fresh connections;
 *               each run also gives the CPU time the server and this
 *               client spent per event.
 *   throughput  the server's rate of overwrites (sets on existing keys,
 *               each an event) with pipelined connections, and the
 *               server's CPU time per set (from /proc), for corrald
 *               without the invalidation machinery (--watch-history 0),
 *               with it and no watcher, and with each W in --watchers
 *               (a second thread reads and discards their streams).
 *               Configurations alternate round by round; after each
 *               run the server's "stats invalidations" says how many
 *               watchers it dropped for falling behind.
 *   tags        invalidate_tag on a tag carried by N items: in-process
 *               through corral.h (no subscriber, then with one) for each
 *               N in --items, with the item count checked and 1000 keys
 *               probed afterwards, and over the wire on a corrald holding
 *               --server-items items (the command's round trip beside
 *               that of "mn", which does nothing).
 *
 * Everything runs on loopback against servers this program spawns; the
 * machine is shared, so read the figures as orders of magnitude and
 * ratios within a run.  Nothing here asserts anything.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <corral.h>

#include "hist.h"
#include "spawn.h"

#define MAX_W 8
#define MAX_ITEMS 8
#define NTAGS 8

struct wopts {
    bool latency, throughput, tags;
    unsigned watchers[MAX_W];
    size_t nw;
    unsigned events, lat_rounds;
    double duration;
    unsigned rounds;
    unsigned conns, pipeline, keys;
    unsigned items[MAX_ITEMS];
    size_t nitems;
    unsigned server_items;
    struct spawn_opts so;
};

/* ---------------------------------------------------------------------- */
/* Small blocking helpers                                                 */

static void
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && errno == EAGAIN) {
            usleep(100);
            continue;
        }
        if (w <= 0) {
            bench_die("write: %s", strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Read until @marker has arrived (blocking fd).  Bytes after it are
 * discarded, so use it only where nothing follows. */
static void
read_until(int fd, const char *marker)
{
    char buf[65536];
    size_t len = 0, m = strlen(marker);

    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (r <= 0) {
            bench_die("read: %s", r == 0 ? "closed" : strerror(errno));
        }
        len += (size_t)r;
        buf[len] = '\0';
        if (len >= m && memmem(buf, len, marker, m) != NULL) {
            return;
        }
        if (len > sizeof(buf) / 2) {
            memmove(buf, buf + len - m, m);
            len = m;
        }
    }
}

/* A watcher connection past its OK and sync line (blocking). */
static int
open_watcher(const struct target *t)
{
    int fd = spawn_connect(t->host, t->port);
    char buf[512];
    size_t len = 0;
    int nl = 0;

    if (fd < 0) {
        bench_die("connect: %s", strerror(errno));
    }
    write_all(fd, "watch invalidations\r\n", 21);
    /* "OK\r\n" then the sync line: two '\n', and nothing after them
     * until an event happens */
    while (nl < 2) {
        ssize_t r = read(fd, buf + len, sizeof(buf) - len);
        if (r <= 0) {
            bench_die("watch: no answer");
        }
        for (ssize_t i = 0; i < r; i++) {
            nl += buf[len + (size_t)i] == '\n';
        }
        len += (size_t)r;
        if (len == sizeof(buf)) {
            len = 0;
        }
    }
    return fd;
}

static void
set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static double
ms(double ns)
{
    return ns / 1e6;
}

/* ---------------------------------------------------------------------- */
/* Latency                                                                */

/* The 1-minute load average, to print beside figures the neighbours can
 * spoil; -1 when unknown. */
static double
loadavg(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double l = -1;

    if (f != NULL) {
        if (fscanf(f, "%lf", &l) != 1) {
            l = -1;
        }
        fclose(f);
    }
    return l;
}

/* One latency run at @w watchers: per-delivery times into @all, per-event
 * times of the last watcher into @last. */
static void
latency_one(const struct target *t, unsigned w, unsigned events,
            struct hist *all, struct hist *last)
{
    int *fds = bench_calloc(w, sizeof(int));
    unsigned *got = bench_calloc(w, sizeof(unsigned));
    struct epoll_event *evs = bench_calloc(w, sizeof(*evs));
    int ep = epoll_create1(0), writer;
    unsigned warm = events / 10 + 10;
    char cmd[64];

    writer = spawn_connect(t->host, t->port);
    {
        static const char first[] = "set bench:lat 0 0 8\r\n00000000\r\n";
        write_all(writer, first, sizeof(first) - 1);
    }
    read_until(writer, "STORED\r\n");
    for (unsigned i = 0; i < w; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        fds[i] = open_watcher(t);
        set_nonblock(fds[i]);
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
    }
    for (unsigned ev = 0; ev < warm + events; ev++) {
        uint64_t t0, worst = 0;
        unsigned remaining = w;
        int n = snprintf(cmd, sizeof(cmd), "set bench:lat 0 0 8\r\n%08u\r\n",
                         ev % 100000000u);

        memset(got, 0, w * sizeof(unsigned));
        t0 = bench_now_ns();
        write_all(writer, cmd, (size_t)n);
        while (remaining > 0) {
            int k = epoll_wait(ep, evs, (int)w, 5000);
            uint64_t now;

            if (k <= 0) {
                bench_die("latency: a watcher got nothing for 5 s");
            }
            now = bench_now_ns();
            for (int j = 0; j < k; j++) {
                unsigned i = evs[j].data.u32;
                char buf[4096];
                ssize_t r;

                /* one read: the line is all this watcher gets per event
                 * (a partial line waits for the next wake-up) */
                if ((r = read(fds[i], buf, sizeof(buf))) > 0) {
                    for (ssize_t b = 0; b < r; b++) {
                        if (buf[b] == '\n' && got[i]++ == 0) {
                            remaining--;
                            if (ev >= warm) {
                                hist_add(all, now - t0);
                            }
                            if (now - t0 > worst) {
                                worst = now - t0;
                            }
                        }
                    }
                } else if (r == 0) {
                    bench_die("latency: a watcher was closed");
                }
            }
        }
        if (ev >= warm) {
            hist_add(last, worst);
        }
        read_until(writer, "STORED\r\n");
    }
    for (unsigned i = 0; i < w; i++) {
        close(fds[i]);
    }
    close(writer);
    close(ep);
    free(fds);
    free(got);
    free(evs);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/*
 * For each W: --lat-rounds runs of --events events, each with fresh
 * connections, on one server.  A neighbour on the shared cores can only
 * add delay, so beside the percentiles of all rounds together the summary
 * gives the median and the best of the rounds' own p99.
 */
static void
run_latency(const struct wopts *o)
{
    struct target t;
    struct hist *all = bench_calloc(1, sizeof(*all));
    struct hist *last = bench_calloc(1, sizeof(*last));
    struct hist *rall = bench_calloc(1, sizeof(*rall));
    struct hist *rlast = bench_calloc(1, sizeof(*rlast));
    double *p99 = bench_calloc(o->lat_rounds, sizeof(double));

    memset(&t, 0, sizeof(t));
    spawn_server(&t, "corrald", &o->so);
    printf("\nlatency: write -> watcher line, one event at a time, "
           "%u events x %u rounds per watcher count\n",
           o->events, o->lat_rounds);
    for (size_t i = 0; i < o->nw; i++) {
        unsigned w = o->watchers[i];

        hist_init(all);
        hist_init(last);
        for (unsigned r = 0; r < o->lat_rounds; r++) {
            double load = loadavg();
            uint64_t s0 = 0, s1 = 0, c0, c1;
            double nev = o->events + o->events / 10 + 10; /* + warm-up */

            hist_init(rall);
            hist_init(rlast);
            bench_proc_cpu_ns(t.pid, &s0);
            c0 = bench_self_cpu_ns();
            latency_one(&t, w, o->events, rall, rlast);
            c1 = bench_self_cpu_ns();
            bench_proc_cpu_ns(t.pid, &s1);
            hist_merge(all, rall);
            hist_merge(last, rlast);
            p99[r] = ms(hist_quantile(rall, 0.99));
            /* CPU time per event (setup and warm-up included): what the
             * two cores must find for one event, server and client */
            printf("  round %u  %4u watchers  delivery p50 %7.3f ms  "
                   "p99 %7.3f ms | last watcher p50 %7.3f ms  p99 %7.3f ms"
                   " | cpu/event server %6.1f us  client %6.1f us"
                   "  (load %.1f)\n",
                   r + 1, w, ms(hist_quantile(rall, 0.5)), p99[r],
                   ms(hist_quantile(rlast, 0.5)),
                   ms(hist_quantile(rlast, 0.99)),
                   (double)(s1 - s0) / 1e3 / nev,
                   (double)(c1 - c0) / 1e3 / nev, load);
        }
        qsort(p99, o->lat_rounds, sizeof(p99[0]), cmp_double);
        printf("  %4u watchers  delivery p50 %7.3f ms  p99 %7.3f ms  "
               "p99.9 %7.3f ms | last watcher p50 %7.3f ms  p99 %7.3f ms"
               " | p99 of rounds: median %.3f ms, best %.3f ms  "
               "(%u deliveries)\n",
               w, ms(hist_quantile(all, 0.5)), ms(hist_quantile(all, 0.99)),
               ms(hist_quantile(all, 0.999)), ms(hist_quantile(last, 0.5)),
               ms(hist_quantile(last, 0.99)), p99[o->lat_rounds / 2],
               p99[0], (unsigned)all->count);
    }
    spawn_stop(&t);
    free(all);
    free(last);
    free(rall);
    free(rlast);
    free(p99);
}

/* ---------------------------------------------------------------------- */
/* Throughput                                                             */

struct drain {
    int *fds;
    unsigned n;
    atomic_bool stop;
    uint64_t lines;
    unsigned closed; /* watchers the server closed */
};

static void *
drain_main(void *arg)
{
    struct drain *d = arg;
    int ep = epoll_create1(0);
    struct epoll_event evs[64];
    char buf[65536];

    for (unsigned i = 0; i < d->n; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        set_nonblock(d->fds[i]);
        epoll_ctl(ep, EPOLL_CTL_ADD, d->fds[i], &e);
    }
    while (!atomic_load(&d->stop)) {
        int k = epoll_wait(ep, evs, 64, 100);
        for (int j = 0; j < k; j++) {
            int fd = d->fds[evs[j].data.u32];
            ssize_t r;

            while ((r = read(fd, buf, sizeof(buf))) > 0) {
                for (ssize_t b = 0; b < r; b++) {
                    d->lines += buf[b] == '\n';
                }
            }
            if (r == 0) {
                /* dropped by the server (lagged): stop polling it */
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                d->closed++;
            }
        }
    }
    close(ep);
    return NULL;
}

/* Overwrites for @secs seconds: @conns connections, @pipe sets in flight
 * each.  Returns ops/s; *out_ops the operations counted. */
static double
load_sets(const struct target *t, unsigned conns, unsigned pipe,
          unsigned keys, double secs, uint64_t *out_ops)
{
    int *fds = bench_calloc(conns, sizeof(int));
    unsigned *inflight = bench_calloc(conns, sizeof(unsigned));
    size_t *partial = bench_calloc(conns, sizeof(size_t));
    struct epoll_event *evs = bench_calloc(conns, sizeof(*evs));
    int ep = epoll_create1(0);
    uint64_t ops = 0, start, end, seed = 88172645463325252u;
    char out[16 * 64], in[65536];

    for (unsigned i = 0; i < conns; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        fds[i] = spawn_connect(t->host, t->port);
        if (fds[i] < 0) {
            bench_die("connect: %s", strerror(errno));
        }
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
    }
    start = bench_now_ns();
    end = start + (uint64_t)(secs * 1e9);
    /* prime every connection */
    for (unsigned i = 0; i < conns; i++) {
        size_t len = 0;
        for (unsigned p = 0; p < pipe && len + 64 < sizeof(out); p++) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            len += (size_t)snprintf(out + len, sizeof(out) - len,
                                    "set k%u 0 0 8\r\nvvvvvvvv\r\n",
                                    (unsigned)(seed % keys));
            inflight[i]++;
        }
        write_all(fds[i], out, len);
    }
    for (;;) {
        uint64_t now = bench_now_ns();
        int k;
        bool done = now >= end;

        if (done) {
            bool idle = true;
            for (unsigned i = 0; i < conns; i++) {
                idle &= inflight[i] == 0;
            }
            if (idle) {
                break;
            }
        }
        k = epoll_wait(ep, evs, (int)conns, 1000);
        for (int j = 0; j < k; j++) {
            unsigned i = evs[j].data.u32;
            ssize_t r = read(fds[i], in, sizeof(in));
            unsigned replies = 0;
            size_t len = 0;

            if (r <= 0) {
                bench_die("load: connection lost");
            }
            /* "STORED\r\n" is 8 bytes: count whole replies */
            partial[i] += (size_t)r;
            replies = (unsigned)(partial[i] / 8);
            partial[i] %= 8;
            inflight[i] -= replies;
            if (bench_now_ns() < end) {
                ops += replies;
                for (unsigned p = 0; p < replies && len + 64 < sizeof(out);
                     p++) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    len += (size_t)snprintf(out + len, sizeof(out) - len,
                                            "set k%u 0 0 8\r\nvvvvvvvv\r\n",
                                            (unsigned)(seed % keys));
                    inflight[i]++;
                }
                if (len > 0) {
                    write_all(fds[i], out, len);
                }
            }
        }
    }
    for (unsigned i = 0; i < conns; i++) {
        close(fds[i]);
    }
    close(ep);
    free(fds);
    free(inflight);
    free(partial);
    free(evs);
    *out_ops = ops;
    return (double)ops / secs;
}

static void
prefill(const struct target *t, unsigned keys)
{
    int fd = spawn_connect(t->host, t->port);
    char line[64];

    for (unsigned i = 0; i < keys; i++) {
        int n = snprintf(line, sizeof(line),
                         "set k%u 0 0 8 noreply\r\nvvvvvvvv\r\n", i);
        write_all(fd, line, (size_t)n);
    }
    write_all(fd, "mn\r\n", 4);
    read_until(fd, "MN\r\n");
    close(fd);
}

/* The STAT @name of "stats invalidations" on @t, or 0. */
static uint64_t
inval_stat(const struct target *t, const char *name)
{
    uint64_t v = 0;
    spawn_stat_group(t, "invalidations", name, &v);
    return v;
}

struct tconf {
    char name[32];
    bool no_history;
    unsigned watchers;
    double sum;
    uint64_t lines, lagged;
    uint64_t ops, cpu_ns; /* for the server's CPU time per set */
    unsigned clean;       /* rounds without a watcher dropped */
    double *ratio;        /* each clean round's sets/s over that round's
                             "no history" */
};

static void
run_throughput(const struct wopts *o)
{
    static const char *const off[] = {"--watch-history", "0", NULL};
    struct tconf cf[MAX_W + 2];
    size_t ncf = 0;

    memset(cf, 0, sizeof(cf));
    snprintf(cf[ncf].name, sizeof(cf[ncf].name), "no history");
    cf[ncf++].no_history = true;
    snprintf(cf[ncf].name, sizeof(cf[ncf].name), "0 watchers");
    ncf++;
    for (size_t i = 0; i < o->nw; i++) {
        snprintf(cf[ncf].name, sizeof(cf[ncf].name), "%u watchers",
                 o->watchers[i]);
        cf[ncf++].watchers = o->watchers[i];
    }
    for (size_t c = 0; c < ncf; c++) {
        cf[c].ratio = bench_calloc(o->rounds, sizeof(double));
    }
    printf("\nthroughput: overwrites, %u connections x %u in flight, "
           "%.1f s per run, %u rounds\n",
           o->conns, o->pipeline, o->duration, o->rounds);
    for (unsigned r = 0; r < o->rounds; r++) {
        double rate0 = 0; /* this round's "no history" */

        for (size_t c = 0; c < ncf; c++) {
            struct spawn_opts so = o->so;
            struct target t;
            struct drain d;
            pthread_t tid;
            double rate;
            uint64_t ops = 0, cpu0 = 0, cpu1 = 0, lagged;
            double load = loadavg();

            memset(&t, 0, sizeof(t));
            memset(&d, 0, sizeof(d));
            if (cf[c].no_history) {
                so.extra_args = off;
            }
            spawn_server(&t, "corrald", &so);
            prefill(&t, o->keys);
            d.n = cf[c].watchers;
            d.fds = bench_calloc(d.n > 0 ? d.n : 1, sizeof(int));
            for (unsigned i = 0; i < d.n; i++) {
                d.fds[i] = open_watcher(&t);
            }
            atomic_init(&d.stop, false);
            pthread_create(&tid, NULL, drain_main, &d);
            bench_proc_cpu_ns(t.pid, &cpu0);
            rate = load_sets(&t, o->conns, o->pipeline, o->keys,
                             o->duration, &ops);
            usleep(200000);
            bench_proc_cpu_ns(t.pid, &cpu1);
            lagged = cf[c].no_history ? 0 : inval_stat(&t, "watchers_lagged");
            atomic_store(&d.stop, true);
            pthread_join(tid, NULL);
            for (unsigned i = 0; i < d.n; i++) {
                close(d.fds[i]);
            }
            free(d.fds);
            spawn_stop(&t);
            /* a round in which the server dropped a watcher did not
             * measure W watchers throughout: it is shown, not summed */
            cf[c].lagged += lagged;
            cf[c].lines += d.lines;
            if (c == 0) {
                rate0 = rate;
            }
            if (lagged == 0) {
                cf[c].ratio[cf[c].clean] = rate / rate0;
                cf[c].clean++;
                cf[c].sum += rate;
                cf[c].ops += ops;
                cf[c].cpu_ns += cpu1 - cpu0;
            }
            printf("  round %u  %-12s %9.0f sets/s  server %5.2f us/set  "
                   "%10llu lines read  %3llu dropped for lag  (load %.1f)\n",
                   r + 1, cf[c].name, rate,
                   ops > 0 ? (double)(cpu1 - cpu0) / 1e3 / (double)ops : 0,
                   (unsigned long long)d.lines, (unsigned long long)lagged,
                   load);
        }
    }
    printf("  summary over the rounds that kept every watcher: mean "
           "sets/s; ratio to 'no history': of the means, and the median of "
           "the same ratio within each round; server CPU per set:\n");
    for (size_t c = 0; c < ncf; c++) {
        double mean = cf[c].clean > 0 ? cf[c].sum / cf[c].clean : 0;
        double mean0 = cf[0].sum / o->rounds;
        double us = cf[c].ops > 0
                        ? (double)cf[c].cpu_ns / 1e3 / (double)cf[c].ops
                        : 0;
        double us0 = cf[0].ops > 0
                         ? (double)cf[0].cpu_ns / 1e3 / (double)cf[0].ops
                         : 0;

        if (cf[c].clean == 0) {
            printf("  %-12s no round kept all its watchers (%llu dropped "
                   "for lag)\n",
                   cf[c].name, (unsigned long long)cf[c].lagged);
            continue;
        }
        qsort(cf[c].ratio, cf[c].clean, sizeof(double), cmp_double);
        printf("  %-12s %9.0f sets/s  x%.2f (per round %.2f)  server "
               "%5.2f us/set  x%.2f  [%u of %u rounds]",
               cf[c].name, mean, mean / mean0,
               cf[c].ratio[cf[c].clean / 2], us, us0 > 0 ? us / us0 : 0,
               cf[c].clean, o->rounds);
        if (cf[c].watchers > 0) {
            /* the server's extra CPU time per line it delivered */
            printf("  +%.3f us per set per watcher", (us - us0) /
                                                     cf[c].watchers);
        }
        printf("\n");
    }
    for (size_t c = 0; c < ncf; c++) {
        free(cf[c].ratio);
    }
}

/* ---------------------------------------------------------------------- */
/* Tags                                                                   */

static void
nop_event(const corral_event_t *ev, void *ud)
{
    (void)ev;
    (void)ud;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * One cache of @n items, each carrying the same NTAGS tags; then
 * corral_invalidate_tag() of an unused tag (cold), and of each tag in
 * turn, timed.  The first of these
 * invalidates @n live items; the later ones tags of the same items,
 * already invalid (an implementation that walked the items would walk
 * them all again).  Afterwards, 1000 keys spread over the key space must
 * all be gone.
 */
static void
tags_engine(unsigned n, bool subscribed)
{
    static const char *const names[NTAGS] = {"t0", "t1", "t2", "t3",
                                             "t4", "t5", "t6", "t7"};
    corral_config_t cfg;
    corral_stats_t st;
    corral_t *c;
    corral_sub_t *sub = NULL;
    corral_store_opts_t so;
    uint64_t dt[NTAGS], first, cold, t0;
    char key[32];
    unsigned left = 0, probes = n < 1000 ? n : 1000;

    corral_config_init(&cfg);
    cfg.max_memory = (size_t)n * 400 + (64u << 20);
    if (corral_create(&cfg, &c) != CORRAL_OK) {
        bench_die("corral_create");
    }
    if (subscribed) {
        corral_subscribe(c, nop_event, NULL, 0, &sub);
    }
    memset(&so, 0, sizeof(so));
    so.tags = names;
    so.ntags = NTAGS;
    for (unsigned i = 0; i < n; i++) {
        int k = snprintf(key, sizeof(key), "item:%u", i);
        if (corral_store(c, key, (size_t)k, "0123456789abcdef", 16, &so,
                         NULL) != CORRAL_OK) {
            bench_die("store %u of %u failed", i, n);
        }
    }
    memset(&st, 0, sizeof(st));
    corral_stats(c, &st, sizeof(st));
    /* the cache's first invalidation (of a tag no item carries) pays
     * for first touches (the event ring's memory, with a subscriber),
     * whatever the item count: timed apart */
    t0 = bench_now_ns();
    corral_invalidate_tag(c, "unused");
    cold = bench_now_ns() - t0;
    for (unsigned t = 0; t < NTAGS; t++) {
        t0 = bench_now_ns();
        corral_invalidate_tag(c, names[t]);
        dt[t] = bench_now_ns() - t0;
    }
    first = dt[0];
    for (unsigned p = 0; p < probes; p++) {
        corral_item_t *item;
        int k = snprintf(key, sizeof(key), "item:%u",
                         (unsigned)((uint64_t)p * n / probes));

        if (corral_get(c, key, (size_t)k, &item) == CORRAL_OK) {
            corral_item_release(item);
            left++;
        }
    }
    qsort(dt, NTAGS, sizeof(dt[0]), cmp_u64);
    printf("  %8u items (%llu stored, %llu evicted)  %s  invalidate_tag "
           "cold %6.2f us | first %6.2f us  median %6.2f us  max %6.2f us"
           " | %u of %u probed keys left\n",
           n, (unsigned long long)st.curr_items,
           (unsigned long long)st.evictions,
           subscribed ? "1 subscriber " : "no subscriber", (double)cold / 1e3,
           (double)first / 1e3, (double)dt[NTAGS / 2] / 1e3,
           (double)dt[NTAGS - 1] / 1e3, left, probes);
    corral_unsubscribe(c, sub);
    corral_destroy(c);
}

static uint64_t
rtt(int fd, const char *cmd, const char *reply)
{
    uint64_t t0 = bench_now_ns();
    write_all(fd, cmd, strlen(cmd));
    read_until(fd, reply);
    return bench_now_ns() - t0;
}

static void
tags_server(const struct wopts *o)
{
    struct spawn_opts so = o->so;
    struct target t;
    uint64_t inv[NTAGS], base[64], unused[64];
    char buf[64 * 1024], cmd[64];
    size_t len = 0;
    int fd;

    if (so.memory_mb < 1024) {
        so.memory_mb = 1024;
    }
    memset(&t, 0, sizeof(t));
    spawn_server(&t, "corrald", &so);
    fd = spawn_connect(t.host, t.port);
    for (unsigned i = 0; i < o->server_items; i++) {
        len += (size_t)snprintf(buf + len, sizeof(buf) - len,
                                "tset item:%u 0 0 4 t0,t1,t2,t3,t4,t5,t6,t7"
                                " noreply\r\nvvvv\r\n",
                                i);
        if (len > sizeof(buf) - 128) {
            write_all(fd, buf, len);
            len = 0;
        }
    }
    write_all(fd, buf, len);
    write_all(fd, "mn\r\n", 4);
    read_until(fd, "MN\r\n");
    for (unsigned i = 0; i < 64; i++) {
        base[i] = rtt(fd, "mn\r\n", "MN\r\n");
        snprintf(cmd, sizeof(cmd), "invalidate_tag unused%u\r\n", i);
        unused[i] = rtt(fd, cmd, "INVALIDATED\r\n");
    }
    for (unsigned i = 0; i < NTAGS; i++) {
        snprintf(cmd, sizeof(cmd), "invalidate_tag t%u\r\n", i);
        inv[i] = rtt(fd, cmd, "INVALIDATED\r\n");
    }
    qsort(base, 64, sizeof(base[0]), cmp_u64);
    qsort(unused, 64, sizeof(unused[0]), cmp_u64);
    qsort(inv, NTAGS, sizeof(inv[0]), cmp_u64);
    printf("  corrald, %u items: round trip median: mn %6.1f us, "
           "invalidate_tag of an unused tag %6.1f us, of a tag on every "
           "item %6.1f us (max %6.1f us)\n",
           o->server_items, (double)base[32] / 1e3, (double)unused[32] / 1e3,
           (double)inv[NTAGS / 2] / 1e3, (double)inv[NTAGS - 1] / 1e3);
    close(fd);
    spawn_stop(&t);
}

static void
run_tags(const struct wopts *o)
{
    printf("\ntags: invalidate_tag of a tag carried by every item "
           "(8 tags per item, one call per tag; cold: the cache's first "
           "invalidation, of an unused tag; first: the call that "
           "invalidates the live items)\n");
    for (size_t i = 0; i < o->nitems; i++) {
        tags_engine(o->items[i], false);
        tags_engine(o->items[i], true);
    }
    if (o->server_items > 0) {
        tags_server(o);
    }
}

/* ---------------------------------------------------------------------- */
/* Options                                                                */

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: corral-bench watch [options]\n"
            "  --part LIST         latency,throughput,tags (default: all)\n"
            "  --watchers LIST     watcher counts (default 1,10,100)\n"
            "  --events N          events per latency run (default 2000)\n"
            "  --lat-rounds N      latency runs per watcher count "
            "(default 3)\n"
            "  --duration S        seconds per throughput run (default 3)\n"
            "  --rounds N          throughput rounds (default 2)\n"
            "  --conns N           throughput connections (default 8)\n"
            "  --pipeline N        sets in flight per connection "
            "(default 16)\n"
            "  --keys N            keys overwritten (default 10000)\n"
            "  --items LIST        in-process item counts "
            "(default 1k,10k,100k,1M)\n"
            "  --server-items N    items on corrald for the wire figure "
            "(default 1M; 0 skips)\n"
            "  --threads N         corrald worker threads (default 2)\n"
            "  --corrald PATH      the server binary\n");
}

int
bench_watch_main(int argc, char **argv)
{
    struct wopts o;
    const char *parts = "latency,throughput,tags";

    memset(&o, 0, sizeof(o));
    o.watchers[0] = 1;
    o.watchers[1] = 10;
    o.watchers[2] = 100;
    o.nw = 3;
    o.events = 2000;
    o.lat_rounds = 3;
    o.duration = 3;
    o.rounds = 2;
    o.conns = 8;
    o.pipeline = 16;
    o.keys = 10000;
    o.items[0] = 1000;
    o.items[1] = 10000;
    o.items[2] = 100000;
    o.items[3] = 1000000;
    o.nitems = 4;
    o.server_items = 1000000;
    o.so.threads = 2;
    o.so.memory_mb = 256;
    o.so.max_conns = 4096;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            bench_usage_error("%s needs a value", a);
        }
        i++;
        if (strcmp(a, "--part") == 0) {
            parts = v;
        } else if (strcmp(a, "--watchers") == 0) {
            o.nw = bench_parse_list(a, v, o.watchers, MAX_W);
        } else if (strcmp(a, "--events") == 0) {
            o.events = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--lat-rounds") == 0) {
            o.lat_rounds = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--duration") == 0) {
            o.duration = bench_parse_double(a, v);
        } else if (strcmp(a, "--rounds") == 0) {
            o.rounds = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--conns") == 0) {
            o.conns = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--pipeline") == 0) {
            o.pipeline = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--keys") == 0) {
            o.keys = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--items") == 0) {
            /* each count may carry a k or M suffix */
            unsigned tmp[MAX_ITEMS];
            char buf[256];
            char *save = NULL;

            o.nitems = 0;
            snprintf(buf, sizeof(buf), "%s", v);
            for (char *t = strtok_r(buf, ",", &save);
                 t != NULL && o.nitems < MAX_ITEMS;
                 t = strtok_r(NULL, ",", &save)) {
                tmp[o.nitems++] = (unsigned)bench_parse_size(a, t, false);
            }
            memcpy(o.items, tmp, o.nitems * sizeof(tmp[0]));
        } else if (strcmp(a, "--server-items") == 0) {
            o.server_items = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--threads") == 0) {
            o.so.threads = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--corrald") == 0) {
            o.so.corrald_bin = v;
        } else {
            bench_usage_error("unknown option %s", a);
        }
    }
    if (o.nw == 0 || o.events == 0 || o.lat_rounds == 0 || o.rounds == 0 ||
        o.conns == 0 || o.pipeline == 0 || o.pipeline > 16 || o.keys == 0) {
        bench_usage_error("counts must be positive; --pipeline at most 16");
    }
    o.latency = bench_list_has(parts, "latency");
    o.throughput = bench_list_has(parts, "throughput");
    o.tags = bench_list_has(parts, "tags");
    printf("corral-bench watch (libcorral %s)\n", corral_version());
    if (o.latency) {
        run_latency(&o);
    }
    if (o.throughput) {
        run_throughput(&o);
    }
    if (o.tags) {
        run_tags(&o);
    }
    return 0;
}
