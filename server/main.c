/*
 * main.c - corrald's startup and shutdown.
 *
 * Startup, in order (each step can fail with a sysexits code):
 *   1. settings: defaults, environment, flags     (EX_USAGE on bad input)
 *   2. file descriptor limit for -c connections   (EX_OSERR)
 *   3. the engine, from -m and -I                  (EX_USAGE, EX_OSERR)
 *      and, unless --watch-history is 0, the invalidation history and
 *      the server's engine subscription (exec_events_start); before it
 *      the -Y credentials and the -Z TLS context    (EX_CONFIG), read
 *      before root is dropped so that they may be readable by root only
 *   4. the listening sockets, on the main loop     (EX_OSERR)
 *      (per-command statistics, log streams, hot keys and then the
 *      metrics endpoint, --metrics-port, just before the memcached port)
 *   5. dropping root for -u                        (EX_NOUSER, EX_OSERR)
 *   6. the peer links (--peer), timers on the main loop;
 *   7. the worker threads, with the signals main handles blocked in them;
 *   8. the main loop runs the accept loop and the peer links (the signal
 *      watchers were set up before step 4, so a signal that comes early
 *      is not lost).
 *
 * Shutdown (SIGTERM, SIGINT, SIGUSR1, or the "shutdown" command):
 *   1. stop accepting and close the listening sockets (metrics too);
 *   2. every worker executes the requests it has received, writes their
 *      replies and closes its connections (bounded by --shutdown-timeout);
 *   3. join the workers (watchers get a last "shutdown" line), close the
 *      peer links, end the engine subscription, destroy the engine,
 *      exit 0.  Peer links stop applying events at step 1, when the
 *      main loop stops.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include <corral.h>

#include "auth.h"
#include "exec.h"
#include "fault.h"
#include "hotkeys.h"
#include "leases.h"
#include "listener.h"
#include "log.h"
#include "logstream.h"
#include "metrics.h"
#include "peer.h"
#include "server.h"
#include "settings.h"
#include "tls.h"
#include "watch.h"
#include "worker.h"

/* Engine events held for the server's subscription (corral.h). */
#define MAIN_EVENT_RING 16384

/*
 * jemalloc's options for this process (jemalloc reads this variable at
 * its initialisation; MALLOC_CONF in the environment still overrides
 * it).  A cache that evicts constantly frees memory constantly, and by
 * default jemalloc keeps freed pages for 10 s before returning them to
 * the system, so that under a flood of large sets the resident size
 * grows well past the -m limit.  One second keeps it within about 10 %
 * of the limit at no measurable cost in throughput; immediate return
 * (0) halves the rate of large sets.  Muzzy pages (already advised
 * away) are dropped at once.  Builds that allocate with libc malloc
 * (sanitizers) ignore this.
 */
const char *malloc_conf = "dirty_decay_ms:1000,muzzy_decay_ms:0";

/* Descriptors beyond the connections: listeners, loops, stdio. */
#define MAIN_RESERVED_FDS 32

static const int main_signals[] = {SIGTERM, SIGINT, SIGUSR1};
#define MAIN_NSIGNALS (sizeof(main_signals) / sizeof(main_signals[0]))

static void
main_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct server *srv = w->data;

    (void)revents;
    if (atomic_exchange(&srv->stopping, true)) {
        return;
    }
    log_info("signal %d: shutting down", w->signum);
    listener_stop(srv->listener);
    metrics_stop(srv->metrics);
    worker_drain_all(srv);
    ev_break(loop, EVBREAK_ALL);
}

/* Raise the descriptor limit to fit -c connections, as memcached does. */
static int
main_raise_nofile(const struct settings *st)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)st->max_conns + MAIN_RESERVED_FDS +
                  (rlim_t)st->threads * 4;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_error("getrlimit: %s", strerror(errno));
        return EX_OSERR;
    }
    if (rl.rlim_cur >= want) {
        return 0;
    }
    if (rl.rlim_max < want) {
        rl.rlim_max = want; /* only root may raise the hard limit */
    }
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_error("failed to set rlimit for open files; try a smaller "
                  "connection limit (-c %u needs %llu descriptors): %s",
                  st->max_conns, (unsigned long long)want, strerror(errno));
        return EX_OSERR;
    }
    return 0;
}

/* -u: assume another identity when started as root. */
static int
main_drop_root(const struct settings *st)
{
    struct passwd *pw;

    if (getuid() != 0 && geteuid() != 0) {
        if (st->user[0] != '\0') {
            log_info("not root: ignoring -u %s", st->user);
        }
        return 0;
    }
    if (st->user[0] == '\0') {
        return 0; /* unlike memcached, running as root is allowed */
    }
    pw = getpwnam(st->user);
    if (pw == NULL) {
        log_error("can't find the user %s to switch to", st->user);
        return EX_NOUSER;
    }
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        log_error("failed to assume the identity of %s: %s", st->user,
                  strerror(errno));
        return EX_OSERR;
    }
    return 0;
}

/*
 * What the workers record besides the engine: per-command statistics,
 * log streams, hot keys.  Returns 0, or EX_OSERR with a message logged.
 */
static int
main_create_observers(struct server *srv)
{
    size_t n = srv->nworkers * sizeof(*srv->cmdstats);

    if (posix_memalign((void **)&srv->cmdstats, 64, n) != 0) {
        srv->cmdstats = NULL;
        log_error("out of memory for per-command statistics");
        return EX_OSERR;
    }
    memset(srv->cmdstats, 0, n);
    srv->logs = logstream_create(srv->cache);
    if (srv->logs == NULL) {
        log_error("out of memory for log streams");
        return EX_OSERR;
    }
    srv->leases = leases_create();
    if (srv->leases == NULL) {
        log_error("out of memory for the lease table");
        return EX_OSERR;
    }
    if (srv->settings->hotkeys_sample > 0) {
        srv->hot = hotkeys_create(srv->nworkers,
                                  srv->settings->hotkeys_sample);
        if (srv->hot == NULL) {
            log_error("out of memory for hot key sampling");
            return EX_OSERR;
        }
    }
    return 0;
}

static void
main_destroy_observers(struct server *srv)
{
    metrics_destroy(srv->metrics);
    hotkeys_destroy(srv->hot);
    leases_destroy(srv->leases);
    logstream_destroy(srv->logs);
    free(srv->cmdstats);
}

static int
main_create_cache(const struct settings *st, corral_t **out)
{
    corral_config_t cfg;
    corral_status_t rc;

    corral_config_init(&cfg);
    cfg.max_memory = st->max_memory;
    cfg.max_item_size = st->item_size_max;
    if (st->watch_history > 0) {
        /* The engine's event ring absorbs the moments when the thread
         * delivering events to the server is not running (a preempted
         * worker): past it, watchers are told "gap".  About 4.5 MB. */
        cfg.event_ring = MAIN_EVENT_RING;
    }
    rc = corral_create(&cfg, out);
    if (rc == CORRAL_EINVAL) {
        log_error("the engine refused -m %zu MB with -I %zu: %s",
                  st->max_memory >> 20, st->item_size_max,
                  corral_strerror(rc));
        return EX_USAGE;
    }
    if (rc != CORRAL_OK) {
        log_error("cannot create the cache: %s", corral_strerror(rc));
        return EX_OSERR;
    }
    return 0;
}

/*
 * A random, nonzero id for this process on the invalidation stream: a
 * restarted node gets a new one, which is how its peers and watchers
 * learn that its sequence numbers started over.
 */
static uint64_t
main_node_id(void)
{
    uint64_t id = 0;

    if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^
             ((uint64_t)getpid() << 16);
    }
    return id != 0 ? id : 1;
}

/* Undo what main_start_events did. */
static void
main_stop_events(struct server *srv)
{
    peers_destroy(srv->peers);
    srv->peers = NULL;
    if (srv->watch != NULL) {
        exec_events_stop(srv);
        watch_hub_destroy(srv->watch);
        srv->watch = NULL;
    }
}

/* -Y and -Z: what must be loaded before anything is served. */
static int
main_load_security(const struct settings *st, struct server *srv)
{
    char err[512];

    if (st->auth_file[0] != '\0') {
        srv->auth = auth_load(st->auth_file, err, sizeof(err));
        if (srv->auth == NULL) {
            log_error("%s", err);
            return EX_CONFIG;
        }
        log_info("authentication required: %zu users in %s",
                 auth_count(srv->auth), st->auth_file);
    }
    if (st->tls.enabled) {
        srv->tls = tls_ctx_create(st);
        if (srv->tls == NULL) {
            return EX_CONFIG;
        }
        log_info("TLS enabled (%s)", tls_library());
    }
    return 0;
}

/* Free what main_load_security() loaded. */
static void
main_unload_security(struct server *srv)
{
    tls_ctx_destroy(srv->tls);
    srv->tls = NULL;
    auth_destroy(srv->auth);
    srv->auth = NULL;
}

/* Undo whatever main() has set up so far, in reverse order (the workers
 * have stopped).  Each step allows for what was never created. */
static void
main_teardown(struct server *srv)
{
    listener_destroy(srv->listener);
    srv->listener = NULL;
    main_stop_events(srv);
    main_destroy_observers(srv);
    corral_destroy(srv->cache);
    srv->cache = NULL;
    main_unload_security(srv);
    pthread_mutex_destroy(&srv->reset_lock);
}

int
main(int argc, char **argv)
{
    struct settings st;
    struct server srv;
    ev_signal sigw[MAIN_NSIGNALS];
    sigset_t block, old;
    int rc;

    switch (settings_load(&st, argc, argv)) {
    case SETTINGS_OK:
        break;
    case SETTINGS_EXIT:
        return 0;
    case SETTINGS_USAGE:
    default:
        return EX_USAGE;
    }
    log_init();
    log_set_level(st.verbose);
    if (fault_init() != 0) {
        return EX_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    memset(&srv, 0, sizeof(srv));
    srv.settings = &st;
    srv.nworkers = st.threads;
    srv.pid = getpid();
    srv.started = time(NULL);
    srv.node_id = main_node_id();
    pthread_mutex_init(&srv.reset_lock, NULL);

    if ((rc = main_raise_nofile(&st)) != 0) {
        return rc;
    }
    if ((rc = main_load_security(&st, &srv)) != 0 ||
        (rc = main_create_cache(&st, &srv.cache)) != 0 ||
        (rc = main_create_observers(&srv)) != 0) {
        main_teardown(&srv);
        return rc;
    }
    if (st.watch_history > 0 && exec_events_start(&srv) != 0) {
        main_teardown(&srv);
        return EX_OSERR;
    }
    srv.main_loop = ev_default_loop(EVFLAG_AUTO);
    if (srv.main_loop == NULL) {
        log_error("cannot create the main event loop");
        main_teardown(&srv);
        return EX_OSERR;
    }
    /* Watch the signals before the port opens: a client (or a test) may
     * signal as soon as it can connect.  The watchers only run inside
     * ev_run(), once everything below is in place. */
    for (size_t i = 0; i < MAIN_NSIGNALS; i++) {
        ev_signal_init(&sigw[i], main_on_signal, main_signals[i]);
        sigw[i].data = &srv;
        ev_signal_start(srv.main_loop, &sigw[i]);
    }
    /* The metrics port opens first: once the memcached port accepts,
     * everything is served. */
    if ((st.metrics_port != 0 &&
         (srv.metrics = metrics_create(&srv)) == NULL) ||
        (srv.listener = listener_create(&srv)) == NULL) {
        main_teardown(&srv);
        return EX_OSERR;
    }
    if ((rc = main_drop_root(&st)) != 0) {
        main_teardown(&srv);
        return rc;
    }

    /* Peer links: timers on the main loop, which runs them once it runs.
     * Created before the workers, which read srv.peers for "stats". */
    if (st.npeers > 0) {
        srv.peers = peers_create(&srv, srv.main_loop);
        if (srv.peers == NULL) {
            main_teardown(&srv);
            return EX_OSERR;
        }
    }

    /* Workers inherit a mask blocking the signals main handles. */
    sigemptyset(&block);
    for (size_t i = 0; i < MAIN_NSIGNALS; i++) {
        sigaddset(&block, main_signals[i]);
    }
    pthread_sigmask(SIG_BLOCK, &block, &old);
    rc = worker_start_all(&srv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        listener_stop(srv.listener);
        metrics_stop(srv.metrics);
        worker_drain_all(&srv);
        worker_join_all(&srv);
        main_teardown(&srv);
        return EX_OSERR;
    }

    log_info("corrald %s: %u threads, %zu MB, max item %zu bytes, "
             "max %u connections, port %u", PACKAGE_VERSION,
             st.threads, st.max_memory >> 20, st.item_size_max,
             st.max_conns, listener_port(srv.listener));

    ev_run(srv.main_loop, 0);

    for (size_t i = 0; i < MAIN_NSIGNALS; i++) {
        ev_signal_stop(srv.main_loop, &sigw[i]);
    }
    worker_join_all(&srv);
    main_teardown(&srv);
    log_info("corrald: stopped");
    return 0;
}
