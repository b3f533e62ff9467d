/*
 * corral-bench.c - the benchmark program's entry point: mode dispatch and
 * the helpers every mode shares (clocks, /proc readers, option parsing).
 *
 *   corral-bench engine  [options]   engine throughput, latency, memory
 *   corral-bench net     [options]   two memcached-protocol servers, A B A B
 *   corral-bench trace   FILE.zst --capacity N [--policy P]
 *   corral-bench trace-table [DIR]   every trace, 1 % and 10 %, all policies
 *   corral-bench memory  [options]   resident memory / limit, bytes per item
 *   corral-bench watch   [options]   invalidation stream latency and cost,
 *                                    tag invalidation time
 *   corral-bench stampede [options]  a hot key expiring under load: backend
 *                                    calls per TTL window, latency
 *
 * Each mode prints its own usage with --help.  See bench/README.md for the
 * commands and the figures they printed.
 */
#include "bench.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <corral.h>

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: corral-bench MODE [options]   (libcorral %s)\n"
            "\n"
            "modes:\n"
            "  engine       engine throughput and latency through corral.h,\n"
            "               against a bare hash table, and bytes per item\n"
            "  net          memcached-protocol load on two servers, "
            "alternately\n"
            "  trace        replay a cache trace (.zst), print the miss "
            "ratio\n"
            "  trace-table  every trace at 1 %% and 10 %%: default, lru, "
            "opt\n"
            "  memory       fill past a byte limit: resident memory / limit "
            "and\n"
            "               bytes per item, beside memcached and corrald\n"
            "  watch        invalidation stream: delivery latency, server\n"
            "               throughput with watchers, tag invalidation "
            "time\n"
            "  stampede     a hot key expiring under load, slow backend:\n"
            "               backend calls per TTL window and latency, with\n"
            "               and without protection, in-process and "
            "through\n"
            "               corrald\n"
            "\n"
            "corral-bench MODE --help describes a mode's options.\n",
            corral_version());
}

int
main(int argc, char **argv)
{
    const char *mode;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    mode = argv[1];
    if (strcmp(mode, "-h") == 0 || strcmp(mode, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    /* Line-buffered even into a pipe or file, so that long runs show
     * progress and interleave sanely with stderr. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(mode, "engine") == 0) {
        return bench_engine_main(argc - 1, argv + 1);
    }
    if (strcmp(mode, "net") == 0) {
        return bench_net_main(argc - 1, argv + 1);
    }
    if (strcmp(mode, "trace") == 0) {
        return bench_trace_main(argc - 1, argv + 1);
    }
    if (strcmp(mode, "trace-table") == 0) {
        return bench_trace_table_main(argc - 1, argv + 1);
    }
    if (strcmp(mode, "memory") == 0) {
        return bench_memory_main(argc - 1, argv + 1);
    }
    if (strcmp(mode, "watch") == 0) {
        return bench_watch_main(argc - 1, argv + 1);
    }
    if (strcmp(mode, "stampede") == 0) {
        return bench_stampede_main(argc - 1, argv + 1);
    }
    fprintf(stderr, "corral-bench: unknown mode '%s'\n\n", mode);
    usage(stderr);
    return 2;
}

uint64_t
bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
bench_self_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) *
               1000000000u +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) *
               1000u;
}

static size_t
rss_from(const char *path)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        return 0;
    }
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) {
        resident = 0;
    }
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

size_t
bench_rss_bytes(void)
{
    return rss_from("/proc/self/statm");
}

size_t
bench_proc_rss(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/statm", (long)pid);
    return rss_from(path);
}

bool
bench_proc_cpu_ns(pid_t pid, uint64_t *out_ns)
{
    char path[64], buf[1024];
    unsigned long long utime, stime;
    const char *p;
    size_t n;
    FILE *f;
    long hz = sysconf(_SC_CLK_TCK);

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: count
     * fields from the last ')'.  utime and stime are fields 14 and 15, so
     * the 12th and 13th after it. */
    p = strrchr(buf, ')');
    if (p == NULL || hz <= 0) {
        return false;
    }
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &utime, &stime) != 2) {
        return false;
    }
    *out_ns = (uint64_t)(utime + stime) * (1000000000u / (uint64_t)hz);
    return true;
}

void
bench_die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "corral-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void
bench_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "corral-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try --help)\n");
    exit(2);
}

uint64_t
bench_parse_size(const char *opt, const char *s, bool binary)
{
    char *end;
    unsigned long long v;
    uint64_t mult = 1, k = binary ? 1024 : 1000;

    if (s == NULL || *s == '\0' || *s == '-') {
        bench_usage_error("%s needs a number", opt);
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s) {
        bench_usage_error("%s: bad number '%s'", opt, s);
    }
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mult = k;
        end++;
        break;
    case 'm':
    case 'M':
        mult = k * k;
        end++;
        break;
    case 'g':
    case 'G':
        mult = k * k * k;
        end++;
        break;
    default:
        bench_usage_error("%s: bad number '%s'", opt, s);
    }
    if (*end != '\0' || (mult > 1 && v > UINT64_MAX / mult)) {
        bench_usage_error("%s: bad number '%s'", opt, s);
    }
    return (uint64_t)v * mult;
}

double
bench_parse_double(const char *opt, const char *s)
{
    char *end;
    double v;

    if (s == NULL || *s == '\0') {
        bench_usage_error("%s needs a number", opt);
    }
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0') {
        bench_usage_error("%s: bad number '%s'", opt, s);
    }
    return v;
}

size_t
bench_parse_list(const char *opt, const char *s, unsigned *out, size_t max)
{
    size_t n = 0;
    const char *p = s;

    if (s == NULL || *s == '\0') {
        bench_usage_error("%s needs a list", opt);
    }
    while (*p != '\0') {
        char *end;
        unsigned long v;
        errno = 0;
        v = strtoul(p, &end, 10);
        if (errno != 0 || end == p || (*end != ',' && *end != '\0') || v == 0 ||
            v > 1u << 20 || n == max) {
            bench_usage_error("%s: bad list '%s'", opt, s);
        }
        out[n++] = (unsigned)v;
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

bool
bench_list_has(const char *list, const char *s)
{
    size_t n = strlen(s);
    const char *p = list;

    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (len == n && memcmp(p, s, n) == 0) {
            return true;
        }
        p = comma != NULL ? comma + 1 : NULL;
    }
    return false;
}

void *
bench_calloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL) {
        bench_die("out of memory (%zu x %zu bytes)", n, size);
    }
    return p;
}
