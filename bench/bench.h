/*
 * bench.h - what the modes of corral-bench share: the mode entry points,
 * clocks, option parsing and process statistics.
 *
 * corral-bench is a program that prints numbers, never a test: nothing in
 * it asserts a timing.  Every speed figure it prints is meant to be read as
 * a ratio against a reference measured in the same run (a bare hash table,
 * or memcached), because the machines it runs on are shared and noisy.
 */
#ifndef CORRAL_BENCH_H
#define CORRAL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Modes.  Each parses its own options (argv[0] is the mode's name) and
 * returns the process exit status. */
int bench_engine_main(int argc, char **argv);
int bench_net_main(int argc, char **argv);
int bench_trace_main(int argc, char **argv);
int bench_trace_table_main(int argc, char **argv);
int bench_memory_main(int argc, char **argv);
int bench_watch_main(int argc, char **argv);
int bench_stampede_main(int argc, char **argv);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* Process CPU time (user + system) of this process, nanoseconds. */
uint64_t bench_self_cpu_ns(void);

/* Resident set size of this process in bytes (from /proc/self/statm). */
size_t bench_rss_bytes(void);

/* Resident set size of any process in bytes (/proc/<pid>/statm); 0 if it
 * cannot be read. */
size_t bench_proc_rss(pid_t pid);

/* User + system CPU time of any process from /proc/<pid>/stat, in
 * nanoseconds (clock-tick resolution).  False if it cannot be read. */
bool bench_proc_cpu_ns(pid_t pid, uint64_t *out_ns);

/* Print a message to stderr and exit with status 2 (usage) or 1. */
void bench_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void bench_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/*
 * Option values.  Each parses the whole string or calls
 * bench_usage_error() naming the option.
 *
 * bench_parse_size: an unsigned count with an optional k, M, G suffix
 * (powers of 1000 for counts unless binary is true: then 1024).
 */
uint64_t bench_parse_size(const char *opt, const char *s, bool binary);
double bench_parse_double(const char *opt, const char *s);

/* A comma-separated list of unsigned numbers; returns how many (at most
 * max) were stored in out. */
size_t bench_parse_list(const char *opt, const char *s, unsigned *out,
                        size_t max);

/* Whether s is in the comma-separated list (exact item match). */
bool bench_list_has(const char *list, const char *s);

/* Allocate or die.  The memory is zeroed. */
void *bench_calloc(size_t n, size_t size);

#endif /* CORRAL_BENCH_H */
