/*
 * settings.h - corrald's configuration: defaults, CORRAL_* environment
 * variables, then command-line flags (flags win), validated as a whole.
 *
 * The struct is filled once by main() and then passed as a const pointer
 * to whoever needs it; nothing writes to it afterwards, so every thread
 * may read it without a lock.
 */
#ifndef CORRALD_SETTINGS_H
#define CORRALD_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define SETTINGS_LISTEN_MAX 256
#define SETTINGS_PEERS_MAX 32

/* A peer node: --peer HOST:PORT. */
struct settings_peer {
    char host[SETTINGS_LISTEN_MAX];
    unsigned port;
};

#define SETTINGS_PATH_MAX 1024
#define SETTINGS_CIPHERS_MAX 1024

/* -o ssl_verify_mode: memcached's numbering. */
enum settings_ssl_verify {
    SETTINGS_SSL_VERIFY_NONE = 0,
    SETTINGS_SSL_VERIFY_REQUEST = 1, /* ask for a client certificate */
    SETTINGS_SSL_VERIFY_REQUIRE = 2, /* refuse clients without one */
    SETTINGS_SSL_VERIFY_ONCE = 3     /* ask at the first handshake only */
};

/* TLS settings (-Z and memcached's -o ssl_* names). */
struct settings_tls {
    bool enabled;                         /* -Z */
    char chain_cert[SETTINGS_PATH_MAX];   /* ssl_chain_cert, PEM */
    char key[SETTINGS_PATH_MAX];          /* ssl_key; empty: in chain */
    int key_format;                       /* ssl_keyformat: 1 PEM, 2 DER */
    int verify_mode;                      /* ssl_verify_mode */
    char ca_cert[SETTINGS_PATH_MAX];      /* ssl_ca_cert, PEM */
    char ciphers[SETTINGS_CIPHERS_MAX];   /* ssl_ciphers; empty: default */
    int min_version;                      /* ssl_min_version: 0..3 */
    unsigned wbuf_kb;                     /* ssl_wbuf_size, kilobytes */
    bool session_cache;                   /* ssl_session_cache */
};

struct settings {
    unsigned port;           /* -p: TCP port; 0 lets the kernel choose */
    char listen[SETTINGS_LISTEN_MAX]; /* -l: address or host name */
    size_t max_memory;       /* -m: engine memory limit, bytes */
    unsigned max_conns;      /* -c: simultaneous client connections */
    unsigned threads;        /* -t: worker threads */
    size_t item_size_max;    /* -I: largest item, bytes */
    size_t request_max;      /* largest request (line + data), bytes */
    int verbose;             /* -v count */
    bool enable_shutdown;    /* -A: the "shutdown" command works */
    bool disable_flush;      /* -F: "flush_all" is refused */
    bool disable_watch;      /* -W: "watch" is refused */
    unsigned backlog;        /* -b: listen(2) backlog */
    unsigned idle_timeout;   /* seconds; 0 = connections never time out */
    unsigned drain_timeout;  /* seconds SIGTERM waits for replies */
    char user[64];           /* -u: identity to assume when root */
    unsigned metrics_port;   /* HTTP metrics port; 0 = no endpoint */
    char metrics_listen[SETTINGS_LISTEN_MAX]; /* its address; -l's if unset */
    unsigned hotkeys_sample; /* 1 keyed request in N feeds "stats hotkeys";
                              * 0 = off */
    /* invalidations: watch invalidations, peers, key tags */
    size_t watch_history;    /* events kept for since=; 0 = no watch, no
                              * peers, no engine subscription */
    size_t watch_lag;        /* a watcher further behind is dropped;
                              * 0 = watch_history */
    char key_tags;           /* separator of tags in keys; 0 = off */
    unsigned npeers;
    struct settings_peer peers[SETTINGS_PEERS_MAX];
    bool peers_from_flags;   /* --peer seen: the environment's list is
                              * replaced, as flags override variables */
    bool disable_verbosity;  /* "verbosity" is refused */
    char auth_file[SETTINGS_PATH_MAX]; /* -Y: "user:password" lines */
    struct settings_tls tls; /* -Z and its -o ssl_* options */
};

enum settings_result {
    SETTINGS_OK = 0,     /* run the server */
    SETTINGS_EXIT = 1,   /* --help or --version printed; exit 0 */
    SETTINGS_USAGE = 2   /* a message is on stderr; exit EX_USAGE */
};

/*
 * settings_load - fill @s from defaults, then the environment, then
 * argv.  Prints --help / --version output on stdout and errors on
 * stderr.  @argv is only read.
 */
enum settings_result settings_load(struct settings *s, int argc,
                                   char *const argv[]);

/* settings_usage - the --help text. */
void settings_usage(FILE *out);

#endif /* CORRALD_SETTINGS_H */
