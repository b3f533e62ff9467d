/*
 * near_internal.h - the near cache's state, shared by near.c (the stream
 * thread and the local API) and fleet.c (the fleet-wide fetch).  Not
 * installed.
 */
#ifndef CORRAL_NEAR_INTERNAL_H
#define CORRAL_NEAR_INTERNAL_H

#include "corral_near.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define NEAR_RBUF (64 * 1024)
#define NEAR_FILTERS_MAX 1000
#define NEAR_HOST_MAX 256

/* A request connection of fleet.c (idle ones wait in the pool). */
struct fleet_conn;

struct corral_near {
    corral_t *cache;
    char host[NEAR_HOST_MAX];
    unsigned port;
    corral_near_opts_t opts;
    char filters[NEAR_FILTERS_MAX + 1];

    pthread_t thread;
    int stop_pipe[2];          /* destroy writes; the thread polls [0] */
    int fd;                    /* the stream; thread only */
    char *rbuf;                /* thread only */
    size_t rlen;
    unsigned seed;

    atomic_int synced;
    _Atomic uint64_t node;
    atomic_uint_fast64_t connects;
    atomic_uint_fast64_t applied;
    atomic_uint_fast64_t flushes;
    _Atomic uint64_t last_seq;

    pthread_mutex_t lock;      /* for cond only */
    pthread_cond_t cond;       /* signalled when synced changes */

    /* fleet.c: idle request connections; pool_lock guards pool[] and
     * npool only (a leaf lock, never held across I/O). */
    pthread_mutex_t pool_lock;
    struct fleet_conn *pool[CORRAL_NEAR_FLEET_POOL];
    unsigned npool;
    atomic_uint_fast64_t fleet_server_hits;
    atomic_uint_fast64_t fleet_loads;
    atomic_uint_fast64_t fleet_load_errors;
    atomic_uint_fast64_t fleet_waits;
    atomic_uint_fast64_t fleet_wait_timeouts;
    atomic_uint_fast64_t fleet_stale_served;
    atomic_uint_fast64_t fleet_store_rejected;
    atomic_uint_fast64_t fleet_fallbacks;
};

/* near.c: a non-blocking TCP connection to the server (keepalive on),
 * within connect_timeout_ms; -1 on failure or when destroy is asked. */
int near_connect(struct corral_near *n);

/* fleet.c: close every pooled connection (destroy). */
void fleet_pool_drain(struct corral_near *n);

#endif /* CORRAL_NEAR_INTERNAL_H */
