/*
 * spawn.c - starting, probing and stopping the servers the benchmarks
 * measure (see spawn.h).
 *
 * Every spawned pid is kept in a small table; an atexit handler and
 * SIGINT/SIGTERM handlers send each one SIGTERM, and each child also asks
 * the kernel for SIGTERM when the benchmark dies (PR_SET_PDEATHSIG).
 */
#include "spawn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_SPAWNED 16

static pid_t spawned[MAX_SPAWNED];
static unsigned nspawned;
static bool handlers_set;

static void
stop_all(void)
{
    for (unsigned i = 0; i < nspawned; i++) {
        if (spawned[i] > 0) {
            kill(spawned[i], SIGTERM);
            waitpid(spawned[i], NULL, 0);
            spawned[i] = 0;
        }
    }
}

static void
on_signal(int sig)
{
    for (unsigned i = 0; i < nspawned; i++) {
        if (spawned[i] > 0) {
            kill(spawned[i], SIGTERM);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A loopback port nobody listens on right now. */
static int
free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        bench_die("cannot find a free port: %s", strerror(errno));
    }
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int
spawn_connect(const char *host, int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, saved;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        bench_die("bad address %s", host);
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* Wait until the server answers "version"; false after `secs` or when the
 * process has exited. */
static bool
wait_ready(const struct target *t, double secs)
{
    uint64_t deadline = bench_now_ns() + (uint64_t)(secs * 1e9);
    char buf[256];

    while (bench_now_ns() < deadline) {
        int fd = spawn_connect(t->host, t->port);
        if (fd >= 0) {
            ssize_t n;
            bool ok = write(fd, "version\r\n", 9) == 9 &&
                      (n = read(fd, buf, sizeof(buf) - 1)) > 0 &&
                      strncmp(buf, "VERSION ", 8) == 0;
            close(fd);
            if (ok) {
                return true;
            }
        }
        if (t->pid > 0 && waitpid(t->pid, NULL, WNOHANG) == t->pid) {
            return false;
        }
        nanosleep(&(struct timespec){0, 20000000}, NULL);
    }
    return false;
}

const char *
spawn_default_corrald(void)
{
    static char path[PATH_MAX];
    char exe[PATH_MAX];
    ssize_t n;
    char *dir;

    if (access("server/corrald", X_OK) == 0) {
        return "server/corrald";
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        return "corrald";
    }
    exe[n] = '\0';
    dir = dirname(exe); /* .../bench or, under libtool, .../bench/.libs */
    if (strcmp(basename(dir), ".libs") == 0) {
        dir = dirname(dir);
    }
    dir = dirname(dir); /* the build directory */
    snprintf(path, sizeof(path), "%s/server/corrald", dir);
    return path;
}

void
spawn_server(struct target *t, const char *kind, const struct spawn_opts *o)
{
    char threads[16], port[16], mem[16], conns[16];
    const char *argv[40];
    int argc = 0;
    pid_t pid;

    /* slots of stopped servers are used again (a mode may start one
     * server per run, many runs in all) */
    while (nspawned > 0 && spawned[nspawned - 1] == 0) {
        nspawned--;
    }
    if (nspawned == MAX_SPAWNED) {
        bench_die("too many servers running");
    }
    if (!handlers_set) {
        atexit(stop_all);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        handlers_set = true;
    }
    t->port = free_port();
    t->pid = 0;
    snprintf(t->host, sizeof(t->host), "127.0.0.1");
    snprintf(threads, sizeof(threads), "%u", o->threads);
    snprintf(port, sizeof(port), "%d", t->port);
    snprintf(mem, sizeof(mem), "%u", o->memory_mb);
    snprintf(conns, sizeof(conns), "%u", o->max_conns);
    if (strcmp(kind, "memcached") == 0) {
        argv[argc++] = o->memcached_bin ? o->memcached_bin : "memcached";
        argv[argc++] = "-U";
        argv[argc++] = "0";
        if (geteuid() == 0) {
            argv[argc++] = "-u"; /* memcached refuses root without */
            argv[argc++] = "root";
        }
    } else if (strcmp(kind, "corrald") == 0) {
        argv[argc++] =
            o->corrald_bin ? o->corrald_bin : spawn_default_corrald();
        argv[argc++] = "-U";
        argv[argc++] = "0";
    } else {
        bench_usage_error("servers are memcached or corrald, not '%s'", kind);
    }
    argv[argc++] = "-t";
    argv[argc++] = threads;
    argv[argc++] = "-l";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "-p";
    argv[argc++] = port;
    argv[argc++] = "-m";
    argv[argc++] = mem;
    argv[argc++] = "-c";
    argv[argc++] = conns;
    for (size_t i = 0; o->extra_args != NULL && o->extra_args[i] != NULL &&
                       argc < 39;
         i++) {
        argv[argc++] = o->extra_args[i];
    }
    argv[argc] = NULL;

    printf("spawn:");
    for (int i = 0; i < argc; i++) {
        printf(" %s", argv[i]);
    }
    printf("\n");
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        bench_die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        /* Die with the benchmark, whatever kills it. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
        }
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "corral-bench: cannot run %s: %s\n", argv[0],
                strerror(errno));
        _exit(127);
    }
    t->pid = pid;
    t->spawned = true;
    spawned[nspawned++] = pid;
    if (!wait_ready(t, 10.0)) {
        bench_die("%s (pid %ld) did not answer on port %d", argv[0], (long)pid,
                  t->port);
    }
}

void
spawn_stop(struct target *t)
{
    if (!t->spawned || t->pid <= 0) {
        return;
    }
    for (unsigned i = 0; i < nspawned; i++) {
        if (spawned[i] == t->pid) {
            spawned[i] = 0;
        }
    }
    kill(t->pid, SIGTERM);
    waitpid(t->pid, NULL, 0);
    t->pid = 0;
    t->spawned = false;
}

bool
spawn_stat(const struct target *t, const char *name, uint64_t *out)
{
    return spawn_stat_group(t, NULL, name, out);
}

bool
spawn_stat_group(const struct target *t, const char *group,
                 const char *name, uint64_t *out)
{
    char buf[16384];
    char cmd[64];
    size_t len = 0, nlen = strlen(name);
    int fd = spawn_connect(t->host, t->port);
    bool found = false;
    const char *p;
    int ncmd;

    if (fd < 0) {
        return false;
    }
    ncmd = group != NULL ? snprintf(cmd, sizeof(cmd), "stats %s\r\n", group)
                         : snprintf(cmd, sizeof(cmd), "stats\r\n");
    if (ncmd < 0 || (size_t)ncmd >= sizeof(cmd) ||
        write(fd, cmd, (size_t)ncmd) != ncmd) {
        close(fd);
        return false;
    }
    /* Read up to the final END line. */
    while (len < sizeof(buf) - 1) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (len >= 5 && strcmp(buf + len - 5, "END\r\n") == 0) {
            break;
        }
    }
    close(fd);
    buf[len] = '\0';
    for (p = buf; (p = strstr(p, "STAT ")) != NULL; p += 5) {
        if (strncmp(p + 5, name, nlen) == 0 && p[5 + nlen] == ' ') {
            *out = strtoull(p + 6 + nlen, NULL, 10);
            found = true;
            break;
        }
    }
    return found;
}
