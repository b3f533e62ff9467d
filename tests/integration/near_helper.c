/*
 * near_helper.c - a process with a near cache over one corrald, driven
 * line by line by tests/integration/test_near.py.
 *
 *   near_helper PORT
 *
 * Reads one command per line on stdin, answers one line on stdout:
 *
 *   wait                  "synced" once the stream is live (10 s at most)
 *                         or "timeout"
 *   synced                "1" or "0"
 *   get KEY               the near cache only: "hit VALUE" or "miss"
 *   fetch KEY [TAGS]      read through: the local cache, else the server
 *                         (stored locally with TAGS, comma-separated):
 *                         "hit VALUE", "absent" or "error"
 *   set KEY VALUE         store on the server: "stored" or "error"
 *   send LINE...          any request to the server, its first reply line
 *   stats                 "connects=N applied=N flushes=N"
 *   fleet KEY LOG MS T [fail]
 *                         T threads fetch KEY at once through
 *                         corral_near_fetch_fleet(); the backend appends
 *                         a line to the file LOG, sleeps MS ms and
 *                         returns "v<pid>" (with "fail": an error).  "hit
 *                         VALUE" when every thread got the same value,
 *                         "mixed" or "error" otherwise
 *   fleetstats            "loads=N server_hits=N waits=N timeouts=N
 *                         stale=N rejected=N fallbacks=N"
 *   quit                  exit 0
 *
 * The helper talks to the server with a plain blocking socket of its own,
 * as an application would with its memcached client; the near cache only
 * follows the invalidation stream.
 */
#include <corral.h>
#include <corral_near.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOAD_ABSENT 404
#define LOAD_ERROR 500

static unsigned server_port;
static int server_fd = -1;
static char rbuf[1 << 16];
static size_t rlen;

static int
server_connect(void)
{
    struct sockaddr_in a;
    int one = 1;

    if (server_fd >= 0) {
        return 0;
    }
    server_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (server_fd < 0) {
        return -1;
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)server_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(server_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(server_fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(server_fd);
        server_fd = -1;
        return -1;
    }
    rlen = 0;
    return 0;
}

static void
server_drop(void)
{
    if (server_fd >= 0) {
        close(server_fd);
    }
    server_fd = -1;
    rlen = 0;
}

static int
server_send(const char *p, size_t n)
{
    if (server_connect() != 0) {
        return -1;
    }
    while (n > 0) {
        ssize_t w = send(server_fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            server_drop();
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read until @want bytes are buffered (or a line, when @want is 0).
 * Returns the line length (with "\r\n") or @want, or -1. */
static long
server_fill(size_t want)
{
    for (;;) {
        if (want == 0) {
            char *nl = memchr(rbuf, '\n', rlen);
            if (nl != NULL) {
                return (long)(nl - rbuf + 1);
            }
        } else if (rlen >= want) {
            return (long)want;
        }
        if (rlen == sizeof(rbuf)) {
            return -1;
        }
        ssize_t r = recv(server_fd, rbuf + rlen, sizeof(rbuf) - rlen, 0);
        if (r <= 0) {
            server_drop();
            return -1;
        }
        rlen += (size_t)r;
    }
}

static void
server_consume(size_t n)
{
    memmove(rbuf, rbuf + n, rlen - n);
    rlen -= n;
}

/* "get KEY": the value into @out (NUL-terminated).  1 hit, 0 miss, -1. */
static int
server_get(const char *key, char *out, size_t cap)
{
    char cmd[600];
    long n;
    unsigned flags;
    size_t len;
    int k = snprintf(cmd, sizeof(cmd), "get %s\r\n", key);

    if (server_send(cmd, (size_t)k) != 0 || (n = server_fill(0)) < 0) {
        return -1;
    }
    if (strncmp(rbuf, "END\r\n", 5) == 0) {
        server_consume((size_t)n);
        return 0;
    }
    if (sscanf(rbuf, "VALUE %*s %u %zu", &flags, &len) != 2 ||
        len + 1 > cap) {
        server_drop();
        return -1;
    }
    server_consume((size_t)n);
    if (server_fill(len + 2) < 0) {
        return -1;
    }
    memcpy(out, rbuf, len);
    out[len] = '\0';
    server_consume(len + 2);
    if ((n = server_fill(0)) < 0) {
        return -1;
    }
    server_consume((size_t)n); /* END */
    return 1;
}

/* One request line; its first reply line into @out.  A connection that
 * turns out dead (the server restarted) is replaced once, as a client
 * library would. */
static int
server_request(const char *req, char *out, size_t cap)
{
    long n;

    if (server_send(req, strlen(req)) != 0 || (n = server_fill(0)) < 0) {
        if (server_send(req, strlen(req)) != 0 ||
            (n = server_fill(0)) < 0) {
            return -1;
        }
    }
    snprintf(out, cap, "%.*s", (int)(n > 2 ? n - 2 : 0), rbuf);
    server_consume((size_t)n);
    return 0;
}

struct load_ctx {
    const char *tags;
};

static int
loader(corral_load_t *load, const void *key, size_t nkey, void *ud)
{
    struct load_ctx *lc = ud;
    char k[CORRAL_KEY_MAX + 1], v[4096];
    int r;

    memcpy(k, key, nkey);
    k[nkey] = '\0';
    r = server_get(k, v, sizeof(v));
    if (r < 0) {
        return LOAD_ERROR;
    }
    if (r == 0) {
        return LOAD_ABSENT; /* not cached: nothing tells of a later set */
    }
    if (lc->tags != NULL) {
        const char *tags[CORRAL_TAGS_MAX];
        char buf[1024];
        size_t nt = 0;
        char *save = NULL;

        snprintf(buf, sizeof(buf), "%s", lc->tags);
        for (char *t = strtok_r(buf, ",", &save);
             t != NULL && nt < CORRAL_TAGS_MAX;
             t = strtok_r(NULL, ",", &save)) {
            tags[nt++] = t;
        }
        corral_load_tags(load, tags, nt);
    }
    return corral_load_set(load, v, strlen(v), 0) == CORRAL_OK ? 0
                                                               : LOAD_ERROR;
}

/* ---- fleet: one backend call across processes ---- */

#define FLEET_THREADS_MAX 16

struct fleet_ctx {
    corral_near_t *near;
    const char *key;
    const char *log;
    long delay_ms;
    bool fail;
    pthread_barrier_t start;
    char got[FLEET_THREADS_MAX][64];
};

static int
fleet_backend(corral_near_value_t *out, const void *key, size_t nkey,
              void *ud)
{
    struct fleet_ctx *f = ud;
    char line[64], v[32];
    struct timespec ts = {f->delay_ms / 1000, (f->delay_ms % 1000) * 1000000};
    int fd = open(f->log, O_WRONLY | O_APPEND | O_CREAT, 0644);
    int n;

    (void)key;
    (void)nkey;
    if (fd < 0) {
        return LOAD_ERROR;
    }
    n = snprintf(line, sizeof(line), "load %ld\n", (long)getpid());
    if (write(fd, line, (size_t)n) != n) {
        close(fd);
        return LOAD_ERROR;
    }
    close(fd);
    nanosleep(&ts, NULL);
    if (f->fail) {
        return LOAD_ERROR;
    }
    n = snprintf(v, sizeof(v), "v%ld", (long)getpid());
    return corral_near_value_set(out, v, (size_t)n, 0) == CORRAL_OK
               ? 0
               : LOAD_ERROR;
}

struct fleet_arg {
    struct fleet_ctx *f;
    int i;
};

static void *
fleet_thread(void *arg)
{
    struct fleet_arg *a = arg;
    struct fleet_ctx *f = a->f;
    corral_near_fleet_opts_t fo;
    corral_fetch_opts_t o;
    corral_item_t *item = NULL;
    int err = 0;

    corral_near_fleet_opts_init(&fo);
    fo.wait_ms = 20000;
    memset(&o, 0, sizeof(o));
    o.ttl = 60;
    o.wait_ms = 30000;
    pthread_barrier_wait(&f->start);
    if (corral_near_fetch_fleet(f->near, f->key, strlen(f->key),
                                fleet_backend, f, &fo, &o, &item,
                                &err) == CORRAL_OK) {
        size_t n;
        const char *v = corral_item_value(item, &n);
        snprintf(f->got[a->i], sizeof(f->got[a->i]), "%.*s", (int)n, v);
        corral_item_release(item);
    } else {
        snprintf(f->got[a->i], sizeof(f->got[a->i]), "!error");
    }
    return NULL;
}

static void
fleet_run(corral_near_t *near, const char *key, const char *log,
          const char *delay, const char *threads, const char *mode)
{
    struct fleet_ctx f;
    struct fleet_arg args[FLEET_THREADS_MAX];
    pthread_t th[FLEET_THREADS_MAX];
    int nt = threads != NULL ? atoi(threads) : 1;
    bool same = true;

    if (nt < 1 || nt > FLEET_THREADS_MAX || delay == NULL) {
        printf("error\n");
        return;
    }
    memset(&f, 0, sizeof(f));
    f.near = near;
    f.key = key;
    f.log = log;
    f.delay_ms = atol(delay);
    f.fail = mode != NULL && strcmp(mode, "fail") == 0;
    pthread_barrier_init(&f.start, NULL, (unsigned)nt);
    for (int i = 0; i < nt; i++) {
        args[i].f = &f;
        args[i].i = i;
        pthread_create(&th[i], NULL, fleet_thread, &args[i]);
    }
    for (int i = 0; i < nt; i++) {
        pthread_join(th[i], NULL);
        same = same && strcmp(f.got[i], f.got[0]) == 0;
    }
    pthread_barrier_destroy(&f.start);
    if (f.got[0][0] == '!') {
        printf("error\n");
    } else if (!same) {
        printf("mixed\n");
    } else {
        printf("hit %s\n", f.got[0]);
    }
}

static void
answer_item(corral_item_t *item)
{
    size_t n;
    const char *v = corral_item_value(item, &n);

    printf("hit %.*s\n", (int)n, v);
    corral_item_release(item);
}

int
main(int argc, char **argv)
{
    corral_config_t cfg;
    corral_t *cache;
    corral_near_t *near;
    corral_near_opts_t no;
    char line[2048];

    if (argc != 2) {
        fprintf(stderr, "usage: near_helper PORT\n");
        return 2;
    }
    server_port = (unsigned)atoi(argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    corral_config_init(&cfg);
    cfg.max_memory = 8u << 20;
    cfg.breaker_failures = 0;
    cfg.backoff_min_ms = 1;
    cfg.backoff_max_ms = 1;
    if (corral_create(&cfg, &cache) != CORRAL_OK) {
        return 1;
    }
    corral_near_opts_init(&no);
    no.backoff_min_ms = 20;
    no.backoff_max_ms = 200;
    if (corral_near_create(cache, "127.0.0.1", server_port, &no, &near) !=
        CORRAL_OK) {
        return 1;
    }
    while (fgets(line, sizeof(line), stdin) != NULL) {
        char *save = NULL, *cmd, *a1, *a2, *a3, *a4, *a5;

        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, "send ", 5) == 0) {
            char req[2100], out[2048];
            snprintf(req, sizeof(req), "%s\r\n", line + 5);
            if (server_request(req, out, sizeof(out)) != 0) {
                printf("error\n");
            } else {
                printf("%s\n", out);
            }
            continue;
        }
        cmd = strtok_r(line, " ", &save);
        a1 = strtok_r(NULL, " ", &save);
        a2 = strtok_r(NULL, " ", &save);
        a3 = strtok_r(NULL, " ", &save);
        a4 = strtok_r(NULL, " ", &save);
        a5 = strtok_r(NULL, " ", &save);
        if (cmd == NULL) {
            printf("error\n");
        } else if (strcmp(cmd, "quit") == 0) {
            break;
        } else if (strcmp(cmd, "wait") == 0) {
            printf("%s\n", corral_near_wait_synced(near, 10000) == CORRAL_OK
                               ? "synced"
                               : "timeout");
        } else if (strcmp(cmd, "synced") == 0) {
            printf("%d\n", corral_near_synced(near));
        } else if (strcmp(cmd, "get") == 0 && a1 != NULL) {
            corral_item_t *item;
            if (corral_near_get(near, a1, strlen(a1), &item) == CORRAL_OK) {
                answer_item(item);
            } else {
                printf("miss\n");
            }
        } else if (strcmp(cmd, "fetch") == 0 && a1 != NULL) {
            corral_fetch_opts_t fo;
            struct load_ctx lc = {a2};
            corral_item_t *item;
            int err = 0;
            corral_status_t st;

            memset(&fo, 0, sizeof(fo));
            fo.error_ms = 1;
            st = corral_near_fetch(near, a1, strlen(a1), loader, &lc, &fo,
                                   &item, &err);
            if (st == CORRAL_OK) {
                answer_item(item);
            } else if (st == CORRAL_ELOAD && err == LOAD_ABSENT) {
                printf("absent\n");
            } else {
                printf("error\n");
            }
        } else if (strcmp(cmd, "set") == 0 && a1 != NULL && a2 != NULL) {
            char req[2100], out[64];
            snprintf(req, sizeof(req), "set %s 0 0 %zu\r\n%s\r\n", a1,
                     strlen(a2), a2);
            printf("%s\n", server_request(req, out, sizeof(out)) == 0 &&
                                   strcmp(out, "STORED") == 0
                               ? "stored"
                               : "error");
        } else if (strcmp(cmd, "fleet") == 0 && a1 != NULL && a2 != NULL) {
            fleet_run(near, a1, a2, a3, a4, a5);
        } else if (strcmp(cmd, "fleetstats") == 0) {
            corral_near_fleet_stats_t s;
            corral_near_fleet_stats(near, &s, sizeof(s));
            printf("loads=%llu server_hits=%llu waits=%llu timeouts=%llu "
                   "stale=%llu rejected=%llu fallbacks=%llu\n",
                   (unsigned long long)s.loads,
                   (unsigned long long)s.server_hits,
                   (unsigned long long)s.waits,
                   (unsigned long long)s.wait_timeouts,
                   (unsigned long long)s.stale_served,
                   (unsigned long long)s.store_rejected,
                   (unsigned long long)s.fallbacks);
        } else if (strcmp(cmd, "stats") == 0) {
            corral_near_stats_t s;
            corral_near_stats(near, &s);
            printf("connects=%llu applied=%llu flushes=%llu\n",
                   (unsigned long long)s.connects,
                   (unsigned long long)s.applied,
                   (unsigned long long)s.flushes);
        } else {
            printf("error\n");
        }
    }
    corral_near_destroy(near);
    corral_destroy(cache);
    server_drop();
    return 0;
}
