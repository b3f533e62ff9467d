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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
        char *save = NULL, *cmd, *a1, *a2;

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
