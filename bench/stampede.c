/*
 * stampede.c - `corral-bench stampede`: a hot key that expires under
 * constant load, and a slow backend (--loader-ms, 10 ms) behind it.
 * Per variant: backend calls per TTL window and request latency.
 *
 *   naive        in-process cache-aside: corral_get, on a miss call the
 *                backend and corral_set (every thread that misses loads)
 *   fetch        corral_fetch: single flight, no stale window, no early
 *                refresh (the others wait for the one load)
 *   fetch-swr    corral_fetch with stale_ttl = ttl, XFetch and
 *                CORRAL_FETCH_BACKGROUND: a refresh thread reloads while
 *                every caller gets the current value
 *   net-naive    through corrald: mg; on EN the client loads and ms's
 *   net-lease    mg N30: W loads and ms's, Z polls (1 ms, doubling to 8)
 *   net-early    mg N30 A<beta>: as net-lease, plus Corral's early W
 *                (XFetch with the delta corrald learned)
 *   near-naive   --procs processes, each a near cache over corrald
 *                (corral_near_fetch) whose loader is net-naive's
 *   near-fleet   the same with corral_near_fetch_fleet (one load for the
 *                fleet per key: the server's leases across processes,
 *                corral_fetch within each)
 *
 * Each worker thread (--threads per process) loops: one read of the hot
 * key, timed, then --think-us of sleep, for --duration seconds.  The herd
 * touches a few reads per window among thousands, so beside p99 the
 * table gives p99.99, the maximum and "slow": reads that took at least
 * half the backend's latency (they loaded, or waited for a load).  The
 * backend counts its calls in memory shared across processes.  Windows:
 * --duration / --ttl (the first load of the cold key counts too).
 *
 * Nothing here asserts anything; read the numbers beside each other.
 */
#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <corral.h>
#include <corral_near.h>

#include "hist.h"
#include "spawn.h"

#define ST_MAX_THREADS 64
#define ST_MAX_PROCS 16
#define ST_KEY "stampede:hot"
#define ST_VALUE "the-value-of-the-hot-key"

struct sopts {
    double duration;
    int ttl;
    unsigned loader_ms;
    unsigned threads;
    unsigned procs;
    unsigned think_us;
    double beta;                 /* XFetch's beta: fetch-swr, net-early */
    const char *variants;
    struct spawn_opts so;
};

/* Shared across processes (MAP_SHARED before fork). */
struct shared {
    _Atomic uint64_t calls;
    _Atomic uint64_t errors;
    _Atomic uint64_t ops;
    _Atomic uint64_t slow;       /* reads that took >= loader_ms / 2 */
    pthread_mutex_t hist_lock;   /* process-shared; guards h */
    struct hist h;
};

struct run {
    const struct sopts *o;
    struct shared *sh;
    const char *variant;
    corral_t *cache;
    corral_near_t *near;
    int port;
    uint64_t end_ns;
    pthread_barrier_t start;
};

/* ---------------------------------------------------------------------- */
/* The backend                                                            */

static void
backend_call(struct run *r)
{
    struct timespec ts = {r->o->loader_ms / 1000,
                          (long)(r->o->loader_ms % 1000) * 1000000};

    atomic_fetch_add(&r->sh->calls, 1);
    nanosleep(&ts, NULL);
}

static int
fetch_loader(corral_load_t *load, const void *key, size_t nkey, void *ud)
{
    (void)key;
    (void)nkey;
    backend_call(ud);
    return corral_load_set(load, ST_VALUE, strlen(ST_VALUE), 0);
}

static int
fleet_backend(corral_near_value_t *out, const void *key, size_t nkey,
              void *ud)
{
    (void)key;
    (void)nkey;
    backend_call(ud);
    return corral_near_value_set(out, ST_VALUE, strlen(ST_VALUE), 0) ==
                   CORRAL_OK
               ? 0
               : 1;
}

/* ---------------------------------------------------------------------- */
/* A blocking memcached-protocol connection                               */

struct mconn {
    int fd;
    char buf[4096];
    size_t len;
};

static void
mc_open(struct mconn *c, int port)
{
    c->fd = spawn_connect("127.0.0.1", port);
    c->len = 0;
    if (c->fd < 0) {
        bench_die("connect: %s", strerror(errno));
    }
}

static void
mc_send(struct mconn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            bench_die("send: %s", strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
}

static void
mc_fill(struct mconn *c)
{
    ssize_t r;

    do {
        r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        bench_die("recv: connection lost");
    }
    c->len += (size_t)r;
}

/* One reply line into @line (NUL-terminated, no CRLF). */
static void
mc_line(struct mconn *c, char *line, size_t cap)
{
    char *e;

    while ((e = memchr(c->buf, '\n', c->len)) == NULL) {
        if (c->len == sizeof(c->buf)) {
            bench_die("reply line too long");
        }
        mc_fill(c);
    }
    {
        size_t n = (size_t)(e - c->buf) + 1;
        size_t m = n >= 2 ? n - 2 : 0;
        if (m >= cap) {
            m = cap - 1;
        }
        memcpy(line, c->buf, m);
        line[m] = '\0';
        memmove(c->buf, c->buf + n, c->len - n);
        c->len -= n;
    }
}

static void
mc_skip(struct mconn *c, size_t n)
{
    while (n > 0) {
        size_t k;
        if (c->len == 0) {
            mc_fill(c);
        }
        k = c->len < n ? c->len : n;
        memmove(c->buf, c->buf + k, c->len - k);
        c->len -= k;
        n -= k;
    }
}

/* "mg KEY v <flags>": 1 on a hit with a value (and *out_flags holds the
 * reply's flag letters W Z X), 0 on EN. */
static int
mc_mg(struct mconn *c, const char *flags, char *out_flags, size_t *out_len)
{
    char req[128], line[256];
    int n = snprintf(req, sizeof(req), "mg %s v%s%s\r\n", ST_KEY,
                     flags[0] != '\0' ? " " : "", flags);

    mc_send(c, req, (size_t)n);
    mc_line(c, line, sizeof(line));
    out_flags[0] = '\0';
    if (strcmp(line, "EN") == 0) {
        return 0;
    }
    if (strncmp(line, "VA ", 3) != 0) {
        bench_die("unexpected reply '%s'", line);
    }
    {
        char *end;
        size_t vlen = strtoul(line + 3, &end, 10);
        size_t k = 0;
        for (; *end != '\0'; end++) {
            if ((*end == 'W' || *end == 'Z' || *end == 'X') &&
                end[-1] == ' ' && k < 3) {
                out_flags[k++] = *end;
            }
        }
        out_flags[k] = '\0';
        mc_skip(c, vlen + 2);
        *out_len = vlen;
    }
    return 1;
}

static void
mc_ms(struct mconn *c, int ttl)
{
    char req[256], line[128];
    int n = snprintf(req, sizeof(req), "ms %s %zu T%d\r\n%s\r\n", ST_KEY,
                     strlen(ST_VALUE), ttl, ST_VALUE);

    mc_send(c, req, (size_t)n);
    mc_line(c, line, sizeof(line));
}

/* One read through corrald, by the variant's rules.  0 = got a value. */
static int
net_read(struct run *r, struct mconn *c, bool lease, bool early)
{
    char fl[4], flags[32];
    size_t len = 0;
    unsigned pause_us = 1000;

    snprintf(flags, sizeof(flags), "%s", !lease ? "" : "N30");
    if (early) {
        snprintf(flags, sizeof(flags), "N30 A%.3f", r->o->beta);
    }
    for (;;) {
        int hit = mc_mg(c, flags, fl, &len);

        if (!hit) { /* naive: every client that misses loads */
            backend_call(r);
            mc_ms(c, r->o->ttl);
            return 0;
        }
        if (strchr(fl, 'W') != NULL) {
            backend_call(r);
            mc_ms(c, r->o->ttl);
            return 0;
        }
        if (strchr(fl, 'Z') == NULL || len > 0) {
            return 0; /* a value (fresh, or stale while another loads) */
        }
        usleep(pause_us); /* Z on the empty lease: another loads */
        pause_us = pause_us * 2 > 8000 ? 8000 : pause_us * 2;
    }
}

/* near-naive's loader: the server, else the backend and ms. */
static __thread struct mconn *tl_conn;

static int
near_loader(corral_load_t *load, const void *key, size_t nkey, void *ud)
{
    (void)key;
    (void)nkey;
    net_read(ud, tl_conn, false, false);
    return corral_load_set(load, ST_VALUE, strlen(ST_VALUE), 0);
}

/* ---------------------------------------------------------------------- */
/* Workers                                                                */

static void *
worker(void *arg)
{
    struct run *r = arg;
    const char *v = r->variant;
    struct hist *h = bench_calloc(1, sizeof(*h));
    struct mconn conn = {-1, {0}, 0};
    corral_fetch_opts_t fo;
    corral_near_fleet_opts_t flo;
    struct timespec think = {0, (long)r->o->think_us * 1000};
    uint64_t ops = 0;

    hist_init(h);
    memset(&fo, 0, sizeof(fo));
    fo.ttl = r->o->ttl;
    fo.wait_ms = 30000;
    if (strcmp(v, "fetch") == 0) {
        fo.options = CORRAL_FETCH_NO_EARLY;
    } else if (strcmp(v, "fetch-swr") == 0) {
        fo.stale_ttl = r->o->ttl;
        fo.options = CORRAL_FETCH_BACKGROUND;
        fo.beta = r->o->beta;
    }
    corral_near_fleet_opts_init(&flo);
    flo.wait_ms = 20000;
    if (r->port > 0) {
        mc_open(&conn, r->port);
        tl_conn = &conn;
    }
    pthread_barrier_wait(&r->start);
    while (bench_now_ns() < r->end_ns) {
        uint64_t t0 = bench_now_ns();
        corral_item_t *item = NULL;
        int rc = 0;

        if (strcmp(v, "naive") == 0) {
            if (corral_get(r->cache, ST_KEY, strlen(ST_KEY), &item) !=
                CORRAL_OK) {
                backend_call(r);
                corral_set(r->cache, ST_KEY, strlen(ST_KEY), ST_VALUE,
                           strlen(ST_VALUE), 0, r->o->ttl);
            }
        } else if (strncmp(v, "fetch", 5) == 0) {
            rc = corral_fetch(r->cache, ST_KEY, strlen(ST_KEY), fetch_loader,
                              r, &fo, &item, NULL);
        } else if (strcmp(v, "net-naive") == 0) {
            rc = net_read(r, &conn, false, false);
        } else if (strcmp(v, "net-lease") == 0) {
            rc = net_read(r, &conn, true, false);
        } else if (strcmp(v, "net-early") == 0) {
            rc = net_read(r, &conn, true, true);
        } else if (strcmp(v, "near-naive") == 0) {
            rc = corral_near_fetch(r->near, ST_KEY, strlen(ST_KEY),
                                   near_loader, r, &fo, &item, NULL);
        } else {
            rc = corral_near_fetch_fleet(r->near, ST_KEY, strlen(ST_KEY),
                                         fleet_backend, r, &flo, &fo, &item,
                                         NULL);
        }
        corral_item_release(item);
        {
            uint64_t d = bench_now_ns() - t0;
            hist_add(h, d);
            if (d >= (uint64_t)r->o->loader_ms * 500000u) {
                atomic_fetch_add(&r->sh->slow, 1);
            }
        }
        if (rc != 0) {
            atomic_fetch_add(&r->sh->errors, 1);
        }
        ops++;
        nanosleep(&think, NULL);
    }
    if (conn.fd >= 0) {
        close(conn.fd);
    }
    pthread_mutex_lock(&r->sh->hist_lock);
    hist_merge(&r->sh->h, h);
    pthread_mutex_unlock(&r->sh->hist_lock);
    atomic_fetch_add(&r->sh->ops, ops);
    free(h);
    return NULL;
}

/* One process's threads. */
static void
run_threads(struct run *r)
{
    pthread_t th[ST_MAX_THREADS];
    corral_config_t cfg;

    corral_config_init(&cfg);
    cfg.max_memory = 16u << 20;
    if (corral_create(&cfg, &r->cache) != CORRAL_OK) {
        bench_die("corral_create failed");
    }
    if (strncmp(r->variant, "near", 4) == 0) {
        if (corral_near_create(r->cache, "127.0.0.1", (unsigned)r->port,
                               NULL, &r->near) != CORRAL_OK ||
            corral_near_wait_synced(r->near, 10000) != CORRAL_OK) {
            bench_die("near cache did not sync");
        }
    }
    pthread_barrier_init(&r->start, NULL, r->o->threads);
    for (unsigned i = 0; i < r->o->threads; i++) {
        pthread_create(&th[i], NULL, worker, r);
    }
    for (unsigned i = 0; i < r->o->threads; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&r->start);
    corral_near_destroy(r->near);
    corral_destroy(r->cache);
}

static void
run_variant(const struct sopts *o, const char *variant, struct target *srv)
{
    struct shared *sh;
    pthread_mutexattr_t ma;
    unsigned procs = strncmp(variant, "near", 4) == 0 ? o->procs : 1;
    pid_t pids[ST_MAX_PROCS];
    uint64_t start;
    double windows = o->duration / o->ttl;
    char line[128];

    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        bench_die("mmap: %s", strerror(errno));
    }
    memset(sh, 0, sizeof(*sh));
    hist_init(&sh->h);
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&sh->hist_lock, &ma);
    pthread_mutexattr_destroy(&ma);
    if (srv != NULL) {
        /* a cold key for every variant */
        struct mconn c;
        mc_open(&c, srv->port);
        mc_send(&c, "flush_all\r\n", 11);
        mc_line(&c, line, sizeof(line));
        close(c.fd);
    }
    start = bench_now_ns();
    for (unsigned p = 0; p < procs; p++) {
        struct run r;

        memset(&r, 0, sizeof(r));
        r.o = o;
        r.sh = sh;
        r.variant = variant;
        r.port = srv != NULL ? srv->port : 0;
        /* processes start together; each thread runs to the same end */
        r.end_ns = start + (uint64_t)(o->duration * 1e9) +
                   (procs > 1 ? 300000000u : 0);
        if (procs == 1) {
            run_threads(&r);
            pids[p] = 0;
            continue;
        }
        pids[p] = fork();
        if (pids[p] < 0) {
            bench_die("fork: %s", strerror(errno));
        }
        if (pids[p] == 0) {
            run_threads(&r);
            _exit(0);
        }
    }
    for (unsigned p = 0; p < procs; p++) {
        int status;
        if (pids[p] > 0 && (waitpid(pids[p], &status, 0) < 0 ||
                            !WIFEXITED(status) ||
                            WEXITSTATUS(status) != 0)) {
            bench_die("a worker process failed");
        }
    }
    printf("%-11s %5u %5u %8llu %6llu %7.1f %9.2f %8.3f %8.3f %8.3f %8.3f "
           "%8.3f %6llu %5llu\n",
           variant, procs, o->threads, (unsigned long long)sh->ops,
           (unsigned long long)sh->calls, windows,
           (double)sh->calls / windows, hist_quantile(&sh->h, 0.50) / 1e6,
           hist_quantile(&sh->h, 0.99) / 1e6,
           hist_quantile(&sh->h, 0.999) / 1e6,
           hist_quantile(&sh->h, 0.9999) / 1e6, (double)sh->h.max / 1e6,
           (unsigned long long)sh->slow, (unsigned long long)sh->errors);
    pthread_mutex_destroy(&sh->hist_lock);
    munmap(sh, sizeof(*sh));
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: corral-bench stampede [options]\n"
            "  --variants LIST   naive,fetch,fetch-swr,net-naive,net-lease,\n"
            "                    net-early,near-naive,near-fleet (default: "
            "all)\n"
            "  --duration S      seconds per variant (default 6)\n"
            "  --ttl S           the hot key's TTL (default 1)\n"
            "  --loader-ms MS    the backend's latency (default 10)\n"
            "  --threads N       worker threads per process (default 8)\n"
            "  --procs N         processes for near-* (default 4)\n"
            "  --think-us US     sleep between a thread's reads (default "
            "200)\n"
            "  --beta B          XFetch's beta for fetch-swr and net-early "
            "(A<B>;\n"
            "                    default 1)\n"
            "  --corrald PATH    the server for net-* and near-*\n");
}

int
bench_stampede_main(int argc, char **argv)
{
    static const char *const all[] = {"naive",     "fetch",      "fetch-swr",
                                      "net-naive", "net-lease",  "net-early",
                                      "near-naive", "near-fleet"};
    struct sopts o;
    struct target srv;
    bool need_srv = false;

    memset(&o, 0, sizeof(o));
    o.duration = 6;
    o.ttl = 1;
    o.loader_ms = 10;
    o.threads = 8;
    o.procs = 4;
    o.think_us = 200;
    o.beta = 1.0;
    o.variants = "naive,fetch,fetch-swr,net-naive,net-lease,net-early,"
                 "near-naive,near-fleet";
    o.so.threads = 2;
    o.so.memory_mb = 64;
    o.so.max_conns = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--variants") == 0 && v != NULL) {
            o.variants = v;
        } else if (strcmp(a, "--duration") == 0) {
            o.duration = bench_parse_double(a, v);
        } else if (strcmp(a, "--ttl") == 0) {
            o.ttl = (int)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--loader-ms") == 0) {
            o.loader_ms = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--threads") == 0) {
            o.threads = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--procs") == 0) {
            o.procs = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--think-us") == 0) {
            o.think_us = (unsigned)bench_parse_size(a, v, false);
        } else if (strcmp(a, "--beta") == 0) {
            o.beta = bench_parse_double(a, v);
        } else if (strcmp(a, "--corrald") == 0 && v != NULL) {
            o.so.corrald_bin = v;
        } else {
            bench_usage_error("unknown option '%s'", a);
        }
        i++;
    }
    if (o.duration <= 0 || o.duration > 60 || o.ttl < 1 || o.ttl > 60 ||
        o.threads < 1 || o.threads > ST_MAX_THREADS || o.procs < 1 ||
        o.procs > ST_MAX_PROCS || o.loader_ms > 10000 || o.beta <= 0 ||
        o.beta > 1000) {
        bench_usage_error("option out of range");
    }
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (bench_list_has(o.variants, all[i]) &&
            (strncmp(all[i], "net", 3) == 0 ||
             strncmp(all[i], "near", 4) == 0)) {
            need_srv = true;
        }
    }
    printf("# hot key ttl %d s, backend %u ms, %u threads x think %u us, "
           "beta %.3f, %.1f s per variant\n",
           o.ttl, o.loader_ms, o.threads, o.think_us, o.beta, o.duration);
    if (need_srv) {
        spawn_server(&srv, "corrald", &o.so);
    }
    printf("%-11s %5s %5s %8s %6s %7s %9s %8s %8s %8s %8s %8s %6s %5s\n",
           "variant", "procs", "thr", "reads", "calls", "windows",
           "calls/win", "p50_ms", "p99_ms", "p99.9", "p99.99", "max_ms",
           "slow", "errs");
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (bench_list_has(o.variants, all[i])) {
            run_variant(&o, all[i], (strncmp(all[i], "net", 3) == 0 ||
                                     strncmp(all[i], "near", 4) == 0)
                                        ? &srv
                                        : NULL);
        }
    }
    if (need_srv) {
        uint64_t v;
        if (spawn_stat(&srv, "cmd_get", &v)) {
            printf("# corrald cmd_get %llu\n", (unsigned long long)v);
        }
        spawn_stop(&srv);
    }
    return 0;
}
