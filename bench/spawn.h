/*
 * spawn.h - memcached-protocol servers for the benchmarks: start one on a
 * free loopback port, wait until it answers, read its "stats", stop it.
 *
 * A spawned server gets SIGTERM when the benchmark exits, is interrupted,
 * or dies (PR_SET_PDEATHSIG), so no run leaves one behind.  Servers are
 * only ever bound to 127.0.0.1.
 */
#ifndef CORRAL_BENCH_SPAWN_H
#define CORRAL_BENCH_SPAWN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct target {
    char name[64];
    char host[64];
    int port;
    pid_t pid; /* for CPU and memory figures; 0 = unknown */
    bool spawned;
};

/* Settings every spawned server gets, whatever its kind. */
struct spawn_opts {
    const char *memcached_bin; /* default "memcached" */
    const char *corrald_bin;   /* default spawn_default_corrald() */
    unsigned threads;          /* -t */
    unsigned memory_mb;        /* -m */
    unsigned max_conns;        /* -c */
    const char *const *extra_args; /* more arguments, NULL-terminated, or
                                    * NULL */
};

/*
 * Start `kind` ("memcached" or "corrald") as
 *   memcached -U 0 [-u root] -t T -l 127.0.0.1 -p P -m M -c C
 *   corrald   -U 0           -t T -l 127.0.0.1 -p P -m M -c C
 * on a free port, print the command line, and wait (10 s at most) until it
 * answers "version".  Fills t (its name is left to the caller).  Dies on
 * failure.
 */
void spawn_server(struct target *t, const char *kind,
                  const struct spawn_opts *o);

/* Stop a spawned server (SIGTERM, then wait for it).  Others: no-op. */
void spawn_stop(struct target *t);

/* server/corrald under the current directory if it is there, else the one
 * in this program's build directory. */
const char *spawn_default_corrald(void);

/* A blocking TCP connection with TCP_NODELAY, or -1 (errno set). */
int spawn_connect(const char *host, int port);

/* Read one "STAT name value" of the server's "stats"; false if absent. */
bool spawn_stat(const struct target *t, const char *name, uint64_t *out);

/* The same from "stats <group>" (e.g. "invalidations"). */
bool spawn_stat_group(const struct target *t, const char *group,
                      const char *name, uint64_t *out);

#endif /* CORRAL_BENCH_SPAWN_H */
