/*
 * memory.c - `corral-bench memory`: does a byte limit hold the process
 * near it, and what does an item cost beyond its key and value?
 *
 * For each limit (--limits) and load (--loads), one deterministic stream
 * of sets writes --fill times the limit in key and value bytes:
 *   fixed      new 16-byte keys, 32-byte values: the cache evicts for most
 *              of the run;
 *   mixed      new 16-byte keys, values log-uniform in [32 B, 64 KiB);
 *   overwrite  limit / 256 16-byte keys (their items take about half the
 *              limit), stored, then overwritten at random with values of
 *              32 to 95 bytes: nothing needs evicting, and a cache that
 *              evicts loses part of a working set that fits.
 *
 * The same stream goes to
 *   libcorral  in a child process (a clean heap, so its RSS growth is the
 *              cache's), with corral_config_t.max_memory = the limit;
 *   memcached  spawned with -m = the limit, filled over loopback TCP;
 *   corrald    likewise, when it is built.
 * libcorral also times every set (two clock reads around it) and prints
 * the latency percentiles and the longest.
 * Each prints its RSS growth (RSS after the fill minus RSS before, from
 * /proc/<pid>/statm) divided by the limit, its item count, and per item
 * with the fixed load: the bytes its own statistics count (libcorral:
 * mem_used, which includes tables and ghost; the servers: "bytes", which
 * counts items only) and its RSS growth, each minus the 48 bytes of key and
 * value.  Targets (issue 6): RSS / limit <= 1.10; overhead <= 40 bytes.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <corral.h>

#include "hist.h"
#include "keydist.h"
#include "spawn.h"

#define KEY_SIZE 16
#define FIXED_VALUE 32
#define MIXED_MIN 32
#define MIXED_LOG2_SPAN 11 /* 32 B << 11 = 64 KiB */
#define BATCH 64

#define OVERWRITE_KEY_SHARE 256 /* one key per this many bytes of limit */
#define OVERWRITE_MIN 32
#define OVERWRITE_SPAN 64

enum load { LOAD_FIXED = 0, LOAD_MIXED, LOAD_OVERWRITE, LOAD_COUNT };
static const char *const load_names[LOAD_COUNT] = {"fixed", "mixed",
                                                   "overwrite"};

/* The overwrite load's key count for the limit being run. */
static uint64_t overwrite_keys;

/* The value size of set number i of a load (deterministic). */
static size_t
value_size(enum load load, uint64_t i)
{
    struct rng r;
    if (load == LOAD_FIXED) {
        return FIXED_VALUE;
    }
    rng_seed(&r, i * 0x9e3779b97f4a7c15u + 17);
    if (load == LOAD_OVERWRITE) {
        return OVERWRITE_MIN + rng_next(&r) % OVERWRITE_SPAN;
    }
    return (size_t)((double)MIXED_MIN * exp2(rng_unit(&r) * MIXED_LOG2_SPAN));
}

/* The key index of set number i: a new key, or for the overwrite load,
 * after each key was stored once, one of them at random. */
static uint64_t
key_index(enum load load, uint64_t i)
{
    struct rng r;
    if (load != LOAD_OVERWRITE || i < overwrite_keys) {
        return i;
    }
    rng_seed(&r, i * 0xbf58476d1ce4e5b9u + 29);
    return rng_next(&r) % overwrite_keys;
}

/* How many sets write `bytes` of keys and values. */
static uint64_t
stream_length(enum load load, uint64_t bytes)
{
    uint64_t n = 0, sum = 0;
    while (sum < bytes) {
        sum += KEY_SIZE + value_size(load, n);
        n++;
    }
    return n;
}

struct outcome {
    uint64_t sets, failures;
    uint64_t items, evictions;
    uint64_t counted;                 /* the implementation's own byte count */
    uint64_t item_bytes, table_bytes; /* libcorral: its parts */
    uint64_t rss0, rss1;
    double seconds;
    bool have_counted;
    bool have_latency;                /* libcorral: every set timed */
    double lat_ns[5];                 /* p50, p99, p99.9, p99.99, max */
};

static const double lat_quantiles[4] = {0.5, 0.99, 0.999, 0.9999};

/* ---------------------------------------------------------------------- */
/* libcorral, in a child process                                          */
/* ---------------------------------------------------------------------- */

static void
engine_fill(size_t limit, enum load load, uint64_t n, struct outcome *out)
{
    char key[KEY_SIZE];
    char *value = bench_calloc(1, (size_t)MIXED_MIN << MIXED_LOG2_SPAN);
    struct hist *lat = bench_calloc(1, sizeof(*lat));
    corral_config_t cfg;
    corral_stats_t st;
    corral_t *cache;
    uint64_t t0;

    hist_init(lat);
    memset(value, 'v', (size_t)MIXED_MIN << MIXED_LOG2_SPAN);
    memset(out, 0, sizeof(*out));
    out->rss0 = bench_rss_bytes();
    corral_config_init(&cfg);
    cfg.max_memory = limit;
    if (corral_create(&cfg, &cache) != CORRAL_OK) {
        bench_die("corral_create with max_memory %zu failed", limit);
    }
    t0 = bench_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t s0;
        corral_status_t rc;
        key_format(key, KEY_SIZE, key_index(load, i));
        s0 = bench_now_ns();
        rc = corral_set(cache, key, KEY_SIZE, value, value_size(load, i), 0,
                        0);
        hist_add(lat, bench_now_ns() - s0);
        if (rc != CORRAL_OK) {
            out->failures++;
        }
    }
    out->seconds = (double)(bench_now_ns() - t0) / 1e9;
    for (int q = 0; q < 4; q++) {
        out->lat_ns[q] = hist_quantile(lat, lat_quantiles[q]);
    }
    out->lat_ns[4] = (double)lat->max;
    out->have_latency = true;
    free(lat);
    out->sets = n;
    out->rss1 = bench_rss_bytes();
    corral_stats(cache, &st, sizeof(st));
    out->items = st.curr_items;
    out->evictions = st.evictions;
    out->counted = st.mem_used;
    out->item_bytes = st.bytes;
    out->table_bytes = st.hash_bytes;
    out->have_counted = true;
    /* No corral_destroy(): the process ends here, and freeing a large
     * cache item by item would only add seconds. */
    free(value);
}

static void
engine_run(size_t limit, enum load load, uint64_t n, struct outcome *out)
{
    int fds[2];
    pid_t pid;
    ssize_t got;

    if (pipe(fds) != 0) {
        bench_die("pipe: %s", strerror(errno));
    }
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        bench_die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        struct outcome o;
        close(fds[0]);
        engine_fill(limit, load, n, &o);
        _exit(write(fds[1], &o, sizeof(o)) == (ssize_t)sizeof(o) ? 0 : 1);
    }
    close(fds[1]);
    got = read(fds[0], out, sizeof(*out));
    close(fds[0]);
    waitpid(pid, NULL, 0);
    if (got != (ssize_t)sizeof(*out)) {
        bench_die("the libcorral child failed");
    }
}

/* ---------------------------------------------------------------------- */
/* A server, over loopback TCP                                            */
/* ---------------------------------------------------------------------- */

/* Send sets [from, to) as one pipelined batch and read every reply line;
 * returns how many were not STORED. */
static uint64_t
server_batch(int fd, enum load load, uint64_t from, uint64_t to, char *buf,
             size_t cap)
{
    size_t len = 0, want = (size_t)(to - from), lines = 0, pos = 0;
    uint64_t bad = 0;
    char rbuf[4096];
    size_t rlen = 0;

    for (uint64_t i = from; i < to; i++) {
        size_t vs = value_size(load, i);
        len += (size_t)snprintf(buf + len, cap - len, "set ");
        key_format(buf + len, KEY_SIZE, key_index(load, i));
        len += KEY_SIZE;
        len += (size_t)snprintf(buf + len, cap - len, " 0 0 %zu\r\n", vs);
        memset(buf + len, 'v', vs);
        len += vs;
        memcpy(buf + len, "\r\n", 2);
        len += 2;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w <= 0) {
            bench_die("server write failed: %s", strerror(errno));
        }
        off += (size_t)w;
    }
    /* Replies are one line each; count the lines that are not STORED. */
    while (lines < want) {
        ssize_t r = read(fd, rbuf + rlen, sizeof(rbuf) - rlen);
        if (r <= 0) {
            bench_die("server read failed");
        }
        rlen += (size_t)r;
        pos = 0;
        for (;;) {
            char *nl = memchr(rbuf + pos, '\n', rlen - pos);
            if (nl == NULL) {
                break;
            }
            if ((size_t)(nl - (rbuf + pos)) != 7 ||
                memcmp(rbuf + pos, "STORED\r", 7) != 0) {
                bad++;
            }
            lines++;
            pos = (size_t)(nl - rbuf) + 1;
        }
        memmove(rbuf, rbuf + pos, rlen - pos);
        rlen -= pos;
        if (rlen == sizeof(rbuf)) {
            bench_die("server reply line too long");
        }
    }
    return bad;
}

static void
server_run(const char *kind, const struct spawn_opts *so, enum load load,
           uint64_t n, struct outcome *out)
{
    struct target t;
    size_t cap = BATCH * (64 + ((size_t)MIXED_MIN << MIXED_LOG2_SPAN));
    char *buf = bench_calloc(1, cap);
    uint64_t t0;
    int fd;

    memset(out, 0, sizeof(*out));
    memset(&t, 0, sizeof(t));
    snprintf(t.name, sizeof(t.name), "%s", kind);
    spawn_server(&t, kind, so);
    out->rss0 = bench_proc_rss(t.pid);
    fd = spawn_connect(t.host, t.port);
    if (fd < 0) {
        bench_die("%s: cannot connect: %s", kind, strerror(errno));
    }
    t0 = bench_now_ns();
    for (uint64_t i = 0; i < n; i += BATCH) {
        uint64_t to = i + BATCH < n ? i + BATCH : n;
        out->failures += server_batch(fd, load, i, to, buf, cap);
    }
    out->seconds = (double)(bench_now_ns() - t0) / 1e9;
    out->sets = n;
    close(fd);
    out->rss1 = bench_proc_rss(t.pid);
    spawn_stat(&t, "curr_items", &out->items);
    spawn_stat(&t, "evictions", &out->evictions);
    out->have_counted = spawn_stat(&t, "bytes", &out->counted);
    spawn_stop(&t);
    free(buf);
}

/* ---------------------------------------------------------------------- */
/* Main                                                                   */
/* ---------------------------------------------------------------------- */

static void
print_outcome(const char *name, size_t limit, enum load load,
              const struct outcome *o)
{
    double growth = o->rss1 > o->rss0 ? (double)(o->rss1 - o->rss0) : 0;
    double kv = KEY_SIZE + FIXED_VALUE;

    printf("  %-10s %9llu %9llu %10llu %8.1f %9.3f %6.1f", name,
           (unsigned long long)o->failures, (unsigned long long)o->items,
           (unsigned long long)o->evictions, growth / 1048576,
           growth / (double)limit, o->seconds);
    if (load == LOAD_FIXED && o->items > 0) {
        if (o->have_counted) {
            printf(" %9.1f", (double)o->counted / (double)o->items - kv);
        } else {
            printf(" %9s", "?");
        }
        printf(" %9.1f", growth / (double)o->items - kv);
    }
    printf("\n");
    if (o->have_latency) {
        printf("  %-10s set latency (us): p50 %.2f  p99 %.2f  p99.9 %.2f  "
               "p99.99 %.1f  max %.1f\n",
               "", o->lat_ns[0] / 1e3, o->lat_ns[1] / 1e3, o->lat_ns[2] / 1e3,
               o->lat_ns[3] / 1e3, o->lat_ns[4] / 1e3);
    }
    if (load == LOAD_FIXED && o->items > 0 && o->item_bytes > 0) {
        double n = (double)o->items;
        printf("  %-10s ovh/item = item records %.1f + hash table %.1f + "
               "ghost and segment space not in use %.1f\n",
               "", (double)o->item_bytes / n - kv, (double)o->table_bytes / n,
               (double)(o->counted - o->item_bytes - o->table_bytes) / n);
    }
}

static void
usage(void)
{
    printf("usage: corral-bench memory [options]\n"
           "\n"
           "  --limits LIST      byte limits (default 64M; e.g. 64M,1G)\n"
           "  --fill F           write F x the limit in keys and values "
           "(default 3)\n"
           "  --loads LIST       fixed,mixed,overwrite (default all)\n"
           "  --servers LIST     memcached,corrald, or none (default: both; "
           "corrald\n"
           "                     only if it is built)\n"
           "  --memcached PATH   --corrald PATH   --server-threads N "
           "(default 2)\n");
}

int
bench_memory_main(int argc, char **argv)
{
    static const char *const kinds[2] = {"memcached", "corrald"};
    const char *limits = "64M", *servers = NULL;
    bool load_on[LOAD_COUNT] = {true, true, true};
    bool server_on[2];
    struct spawn_opts so;
    double fill = 3;
    const char *p;

    memset(&so, 0, sizeof(so));
    so.threads = 2;
    so.max_conns = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 0;
        } else if (v == NULL) {
            bench_usage_error("unknown option or missing value: %s", a);
        } else if (strcmp(a, "--limits") == 0) {
            limits = v;
        } else if (strcmp(a, "--fill") == 0) {
            fill = bench_parse_double(a, v);
        } else if (strcmp(a, "--loads") == 0) {
            load_on[LOAD_FIXED] = bench_list_has(v, "fixed");
            load_on[LOAD_MIXED] = bench_list_has(v, "mixed");
            load_on[LOAD_OVERWRITE] = bench_list_has(v, "overwrite");
        } else if (strcmp(a, "--servers") == 0) {
            servers = v;
        } else if (strcmp(a, "--memcached") == 0) {
            so.memcached_bin = v;
        } else if (strcmp(a, "--corrald") == 0) {
            so.corrald_bin = v;
        } else if (strcmp(a, "--server-threads") == 0) {
            so.threads = (unsigned)bench_parse_size(a, v, false);
        } else {
            bench_usage_error("unknown option: %s", a);
        }
        i++;
    }
    if (fill <= 0 || fill > 100) {
        bench_usage_error("--fill: 0 .. 100");
    }
    if (so.corrald_bin == NULL) {
        so.corrald_bin = spawn_default_corrald();
    }
    for (int k = 0; k < 2; k++) {
        server_on[k] =
            servers == NULL ? true : bench_list_has(servers, kinds[k]);
    }
    if (servers == NULL && access(so.corrald_bin, X_OK) != 0) {
        printf("(no corrald at %s: skipped)\n", so.corrald_bin);
        server_on[1] = false;
    }
    signal(SIGPIPE, SIG_IGN);

    printf("corral-bench memory: keys %d B; fixed values %d B; mixed values "
           "log-uniform in [%d B, %d KiB), new keys; overwrite: limit / %d "
           "keys, overwritten at random with values of %d-%d B; each load "
           "writes %.1f x the limit in keys and values\n",
           KEY_SIZE, FIXED_VALUE, MIXED_MIN,
           (MIXED_MIN << MIXED_LOG2_SPAN) / 1024, OVERWRITE_KEY_SHARE,
           OVERWRITE_MIN, OVERWRITE_MIN + OVERWRITE_SPAN - 1, fill);
    printf("targets (issue 6): RSS growth / limit <= 1.10; per-item "
           "overhead <= 40 B\n");
    for (p = limits; p != NULL && *p != '\0';) {
        const char *comma = strchr(p, ',');
        char one[32];
        size_t limit;
        snprintf(one, sizeof(one), "%.*s",
                 (int)(comma ? (size_t)(comma - p) : strlen(p)), p);
        p = comma ? comma + 1 : NULL;
        limit = bench_parse_size("--limits", one, true);
        if (limit < (1u << 20) || limit % (1u << 20) != 0) {
            bench_usage_error("--limits: whole MiB, at least 1M");
        }
        so.memory_mb = (unsigned)(limit >> 20);
        overwrite_keys = limit / OVERWRITE_KEY_SHARE;
        for (int l = 0; l < LOAD_COUNT; l++) {
            uint64_t n;
            struct outcome o;
            if (!load_on[l]) {
                continue;
            }
            n = stream_length((enum load)l, (uint64_t)(fill * (double)limit));
            printf("\nlimit %zu MiB, %s load: %llu sets", limit >> 20,
                   load_names[l], (unsigned long long)n);
            if (l == LOAD_OVERWRITE) {
                printf(" of %llu keys (items: how many of them it holds)",
                       (unsigned long long)overwrite_keys);
            }
            printf("\n");
            printf("  %-10s %9s %9s %10s %8s %9s %6s", "", "failed", "items",
                   "evictions", "RSS+ MiB", "RSS+/lim", "sec");
            if (l == LOAD_FIXED) {
                printf(" %9s %9s", "ovh/item", "RSS+/item");
            }
            printf("\n");
            engine_run(limit, (enum load)l, n, &o);
            print_outcome("libcorral", limit, (enum load)l, &o);
            for (int k = 0; k < 2; k++) {
                if (server_on[k]) {
                    server_run(kinds[k], &so, (enum load)l, n, &o);
                    print_outcome(kinds[k], limit, (enum load)l, &o);
                }
            }
        }
    }
    printf("\novh/item: the implementation's own count per item minus the "
           "48 B of key and value (libcorral: mem_used = items + tables + "
           "ghost; servers: stats \"bytes\", items only).  RSS+/item: RSS "
           "growth per item minus 48 B.\n");
    return 0;
}
