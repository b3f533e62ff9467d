/*
 * settings.c - defaults, CORRAL_* environment variables and command-line
 * flags, in that order of precedence (flags win), then validation of the
 * whole.
 *
 * One X-macro table, SETTINGS_TABLE, names every option once: its short
 * flag (memcached's letter where memcached has the option), its long
 * flag, its environment variable, its argument and its help line.  The
 * table generates the getopt_long() arrays, the environment scan and the
 * --help text, so the three can never disagree.
 *
 * Every value goes through settings_apply(), whether it came from the
 * environment or a flag; errors name their source ("-p" or
 * "CORRAL_PORT") and make settings_load() return SETTINGS_USAGE.
 */
#include "settings.h"

#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <corral.h>

#include "tls.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

#define DEFAULT_PORT 11211
#define DEFAULT_LISTEN "127.0.0.1"
#define DEFAULT_MEMORY_MB 64
#define DEFAULT_CONNS 1024
#define DEFAULT_BACKLOG 1024
#define DEFAULT_ITEM_SIZE_MAX MIB
#define DEFAULT_DRAIN_TIMEOUT 10
#define DEFAULT_HOTKEYS_SAMPLE 64
#define MAX_HOTKEYS_SAMPLE 1000000
#define MIN_ITEM_SIZE_MAX KIB
#define MAX_ITEM_SIZE_MAX (1024 * MIB)
#define MIN_REQUEST_MAX (64 * KIB)
#define REQUEST_SLACK (64 * KIB) /* room for the command line */
#define DEFAULT_REQUEST_MIN (4 * MIB)
#define MAX_THREADS 1024
#define MAX_CONNS (1u << 20)
#define DEFAULT_WATCH_HISTORY 65536
#define MAX_WATCH_HISTORY (1u << 24)

/*
 * X(id, short flag or 0, long flag, environment variable or NULL,
 *   argument name or NULL, help text)
 */
#define SETTINGS_TABLE(X)                                                     \
    X(PORT, 'p', "port", "CORRAL_PORT", "<num>",                              \
      "TCP port to listen on (default: 11211)")                               \
    X(UDP, 'U', "udp-port", "CORRAL_UDP_PORT", "<num>",                       \
      "UDP port: only 0, UDP is never served (default: 0)")                   \
    X(LISTEN, 'l', "listen", "CORRAL_LISTEN", "<addr>",                       \
      "interface to listen on (default: 127.0.0.1)")                          \
    X(SHUTDOWN, 'A', "enable-shutdown", "CORRAL_ENABLE_SHUTDOWN", NULL,       \
      "enable the ascii \"shutdown\" command")                                \
    X(USER, 'u', "user", "CORRAL_USER", "<user>",                             \
      "assume the identity of <user> (only when run as root)")                \
    X(MEMORY, 'm', "memory-limit", "CORRAL_MEMORY", "<num>",                  \
      "item memory in megabytes (default: 64)")                               \
    X(CONNS, 'c', "conn-limit", "CORRAL_CONNECTIONS", "<num>",                \
      "max simultaneous connections (default: 1024)")                         \
    X(VERBOSE, 'v', "verbose", "CORRAL_VERBOSE", NULL,                        \
      "verbose; -vv also logs every connection and command")                  \
    X(HELP, 'h', "help", NULL, NULL, "print this help and exit")              \
    X(VERSION, 'V', "version", NULL, NULL, "print version and exit")          \
    X(THREADS, 't', "threads", "CORRAL_THREADS", "<num>",                     \
      "number of worker threads (default: number of cores)")                  \
    X(BACKLOG, 'b', "listen-backlog", "CORRAL_BACKLOG", "<num>",              \
      "set the backlog queue limit (default: 1024)")                          \
    X(ITEM_MAX, 'I', "max-item-size", "CORRAL_ITEM_SIZE_MAX", "<num>",        \
      "max item size, suffix k or m (default: 1m, min: 1k, max: 1024m)")      \
    X(NOFLUSH, 'F', "disable-flush-all", "CORRAL_DISABLE_FLUSH_ALL", NULL,    \
      "disable the flush_all command")                                        \
    X(EXTENDED, 'o', "extended", NULL, "<opts>",                              \
      "comma separated extended options, memcached's names:\n"                \
      "                          idle_timeout, ssl_chain_cert, ssl_key,\n"    \
      "                          ssl_keyformat, ssl_verify_mode,\n"           \
      "                          ssl_ciphers, ssl_ca_cert, ssl_min_version,\n"\
      "                          ssl_wbuf_size, ssl_session_cache")           \
    X(IDLE, 0, "idle-timeout", "CORRAL_IDLE_TIMEOUT", "<secs>",               \
      "close connections without progress this long\n"                       \
      "                          (default: 0, never)")                        \
    X(REQMAX, 0, "max-request-size", "CORRAL_REQUEST_MAX", "<num>",           \
      "largest request, command line plus data, suffix k or m\n"              \
      "                          (default: the larger of 4m and the max "    \
      "item size + 64k)")                                                     \
    X(DRAIN, 0, "shutdown-timeout", "CORRAL_SHUTDOWN_TIMEOUT", "<secs>",      \
      "on SIGTERM, wait this long for replies to drain (default: 10)")        \
    X(METRICS_PORT, 0, "metrics-port", "CORRAL_METRICS_PORT", "<num>",        \
      "serve Prometheus metrics over HTTP on this TCP port\n"                  \
      "                          (default: 0, no metrics endpoint)")          \
    X(METRICS_LISTEN, 0, "metrics-listen", "CORRAL_METRICS_LISTEN", "<addr>", \
      "interface for the metrics port (default: the -l address)")             \
    X(NOWATCH, 'W', "disable-watch", "CORRAL_DISABLE_WATCH", NULL,            \
      "disable the watch command (live log streams)")                         \
    X(HOTKEYS, 0, "hot-keys-sample", "CORRAL_HOTKEYS_SAMPLE", "<num>",         \
      "feed 1 keyed request in <num> to \"stats hotkeys\"\n"                  \
      "                          (default: 64; 0 turns it off)")              \
    X(PEER, 0, "peer", "CORRAL_PEERS", "<host:port>",                         \
      "a peer whose invalidations apply here (repeatable;\n"                 \
      "                          CORRAL_PEERS: a list, commas or spaces)")    \
    X(WATCH_HISTORY, 0, "watch-history", "CORRAL_WATCH_HISTORY", "<num>",     \
      "invalidation events kept for watchers that reconnect\n"               \
      "                          (default: 65536; 0: no watch, no peers)")   \
    X(WATCH_LAG, 0, "watch-lag", "CORRAL_WATCH_LAG", "<num>",                 \
      "drop a watcher this far behind (default: the history)")                \
    X(KEY_TAGS, 0, "key-tags", "CORRAL_KEY_TAGS", "<char>",                   \
      "stores also tag a key with the list after its last <char>\n"          \
      "                          (\"x#user:7,site\" with '#'; default: off)") \
    X(NOVERBOSITY, 0, "disable-verbosity", "CORRAL_DISABLE_VERBOSITY", NULL,  \
      "disable the verbosity command")                                        \
    X(AUTH, 'Y', "auth-file", "CORRAL_AUTH_FILE", "<file>",                   \
      "require text protocol authentication; <file> holds\n"                  \
      "                          user:password lines")                        \
    X(TLS, 'Z', "enable-ssl", "CORRAL_ENABLE_SSL", NULL,                      \
      "serve TLS only (needs --ssl-chain-cert)")                              \
    X(SSL_CHAIN, 0, "ssl-chain-cert", "CORRAL_SSL_CHAIN_CERT", "<file>",      \
      "certificate chain, PEM (-o ssl_chain_cert)")                           \
    X(SSL_KEY, 0, "ssl-key", "CORRAL_SSL_KEY", "<file>",                      \
      "private key, if not in the chain file (-o ssl_key)")                   \
    X(SSL_KEYFORMAT, 0, "ssl-keyformat", "CORRAL_SSL_KEYFORMAT", "<fmt>",     \
      "private key format: PEM (1) or DER (2) (default: PEM)")               \
    X(SSL_VERIFY, 0, "ssl-verify-mode", "CORRAL_SSL_VERIFY_MODE", "<0-3>",    \
      "client certificates: 0 none, 1 request, 2 require,\n"                  \
      "                          3 once (default: 0)")                        \
    X(SSL_CA, 0, "ssl-ca-cert", "CORRAL_SSL_CA_CERT", "<file>",               \
      "CAs that sign acceptable client certificates, PEM")                    \
    X(SSL_CIPHERS, 0, "ssl-ciphers", "CORRAL_SSL_CIPHERS", "<list>",          \
      "OpenSSL cipher list for TLS 1.2 and older")                            \
    X(SSL_MINVER, 0, "ssl-min-version", "CORRAL_SSL_MIN_VERSION", "<0-3>",    \
      "oldest TLS version: 0 1.0, 1 1.1, 2 1.2, 3 1.3\n"                      \
      "                          (default: 2, TLS 1.2)")                      \
    X(SSL_WBUF, 0, "ssl-wbuf-size", "CORRAL_SSL_WBUF_SIZE", "<kb>",           \
      "TLS output staging buffer, kilobytes (default: 16)")                   \
    X(SSL_SESSION, 0, "ssl-session-cache", "CORRAL_SSL_SESSION_CACHE", NULL,  \
      "keep a server-side TLS session cache (resumption)")

enum opt_id {
#define OPT_ENUM(id, sf, lf, env, arg, help) OPT_##id,
    SETTINGS_TABLE(OPT_ENUM)
#undef OPT_ENUM
    OPT_COUNT
};

struct opt_def {
    int short_flag;
    const char *long_flag;
    const char *env;
    const char *arg;
    const char *help;
};

static const struct opt_def opt_defs[OPT_COUNT] = {
#define OPT_DEF(id, sf, lf, env, arg, help) {sf, lf, env, arg, help},
    SETTINGS_TABLE(OPT_DEF)
#undef OPT_DEF
};

/* getopt_long() value of a long-only option. */
#define LONG_ONLY_BASE 256

/* Where a value came from, for error messages. */
struct origin {
    const char *env;  /* the variable, or NULL for a flag */
    int id;
};

static void
origin_name(const struct origin *o, char *buf, size_t len)
{
    const struct opt_def *d = &opt_defs[o->id];

    if (o->env != NULL) {
        snprintf(buf, len, "%s", o->env);
    } else if (d->short_flag != 0) {
        snprintf(buf, len, "-%c", d->short_flag);
    } else {
        snprintf(buf, len, "--%s", d->long_flag);
    }
}

static enum settings_result
bad_value(const struct origin *o, const char *value, const char *why)
{
    char name[64];

    origin_name(o, name, sizeof(name));
    fprintf(stderr, "corrald: invalid value for %s: \"%s\": %s\n", name,
            value, why);
    fprintf(stderr, "Try 'corrald --help' for more information.\n");
    return SETTINGS_USAGE;
}

/* A decimal number with nothing after it. */
static bool
parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || !isdigit((unsigned char)s[0])) {
        return false;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

/*
 * A size: a decimal number optionally followed by k, m or g (either
 * case), in units of @unit when no suffix is given.
 */
static bool
parse_size(const char *s, size_t unit, size_t *out)
{
    char num[32];
    size_t n = strlen(s), mult = unit;
    uint64_t v;

    if (n == 0 || n >= sizeof(num)) {
        return false;
    }
    memcpy(num, s, n + 1);
    switch (tolower((unsigned char)num[n - 1])) {
    case 'k':
        mult = KIB;
        num[--n] = '\0';
        break;
    case 'm':
        mult = MIB;
        num[--n] = '\0';
        break;
    case 'g':
        mult = 1024 * MIB;
        num[--n] = '\0';
        break;
    default:
        break;
    }
    if (!parse_u64(num, &v) || v > SIZE_MAX / mult) {
        return false;
    }
    *out = (size_t)v * mult;
    return true;
}

static bool
parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off", ""};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static enum settings_result
apply_uint(const struct origin *o, const char *v, uint64_t min, uint64_t max,
           unsigned *out)
{
    uint64_t n;
    char why[96];

    if (!parse_u64(v, &n)) {
        return bad_value(o, v, "not a decimal number");
    }
    if (n < min || n > max) {
        snprintf(why, sizeof(why), "must be between %llu and %llu",
                 (unsigned long long)min, (unsigned long long)max);
        return bad_value(o, v, why);
    }
    *out = (unsigned)n;
    return SETTINGS_OK;
}

static enum settings_result apply(struct settings *s, const struct origin *o,
                                  const char *v);

/* One "host:port" (an IPv6 address in brackets: "[::1]:11211"). */
static enum settings_result
apply_peer(struct settings *s, const struct origin *o, const char *v,
           size_t n)
{
    char item[SETTINGS_LISTEN_MAX + 8], host[SETTINGS_LISTEN_MAX];
    const char *colon;
    size_t hn;
    uint64_t port;

    if (n == 0 || n >= sizeof(item)) {
        return bad_value(o, v, "expected host:port");
    }
    memcpy(item, v, n);
    item[n] = '\0';
    colon = strrchr(item, ':');
    if (colon == NULL || colon == item || !parse_u64(colon + 1, &port) ||
        port == 0 || port > 65535) {
        return bad_value(o, item, "expected host:port");
    }
    hn = (size_t)(colon - item);
    if (item[0] == '[' && hn >= 2 && item[hn - 1] == ']') {
        memcpy(host, item + 1, hn - 2);
        host[hn - 2] = '\0';
    } else {
        memcpy(host, item, hn);
        host[hn] = '\0';
    }
    if (host[0] == '\0') {
        return bad_value(o, item, "expected host:port");
    }
    if (s->npeers == SETTINGS_PEERS_MAX) {
        return bad_value(o, item, "too many peers (at most 32)");
    }
    memcpy(s->peers[s->npeers].host, host, strlen(host) + 1);
    s->peers[s->npeers].port = (unsigned)port;
    s->npeers++;
    return SETTINGS_OK;
}

/* --peer (one or a list) or CORRAL_PEERS (a list). */
static enum settings_result
apply_peers(struct settings *s, const struct origin *o, const char *v)
{
    const char *p = v;

    if (o->env == NULL && !s->peers_from_flags) {
        s->npeers = 0;
        s->peers_from_flags = true;
    }
    while (*p != '\0') {
        size_t n = strcspn(p, ", \t");

        if (n > 0 && apply_peer(s, o, p, n) != SETTINGS_OK) {
            return SETTINGS_USAGE;
        }
        p += n;
        p += strspn(p, ", \t");
    }
    return SETTINGS_OK;
}

/* memcached's -o names, each the alias of an option above. */
static const struct {
    const char *name;
    int id;
} extended_names[] = {
    {"idle_timeout", OPT_IDLE},
    {"ssl_chain_cert", OPT_SSL_CHAIN},
    {"ssl_key", OPT_SSL_KEY},
    {"ssl_keyformat", OPT_SSL_KEYFORMAT},
    {"ssl_verify_mode", OPT_SSL_VERIFY},
    {"ssl_ca_cert", OPT_SSL_CA},
    {"ssl_ciphers", OPT_SSL_CIPHERS},
    {"ssl_min_version", OPT_SSL_MINVER},
    {"ssl_wbuf_size", OPT_SSL_WBUF},
    {"ssl_session_cache", OPT_SSL_SESSION},
};

/*
 * memcached's -o: a comma separated list of name=value pairs (a flag
 * such as ssl_session_cache stands alone).  Values cannot contain
 * commas; the long options take any value.
 */
static enum settings_result
apply_extended(struct settings *s, const struct origin *o, const char *v)
{
    char buf[4096];
    char *save = NULL, *tok;

    if (strlen(v) >= sizeof(buf)) {
        return bad_value(o, v, "too long");
    }
    memcpy(buf, v, strlen(v) + 1);
    for (tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        size_t n = eq != NULL ? (size_t)(eq - tok) : strlen(tok);
        int id = -1;

        for (size_t i = 0;
             i < sizeof(extended_names) / sizeof(extended_names[0]); i++) {
            if (strlen(extended_names[i].name) == n &&
                strncmp(tok, extended_names[i].name, n) == 0) {
                id = extended_names[i].id;
                break;
            }
        }
        if (id < 0) {
            return bad_value(o, tok, "unknown extended option (see "
                                     "corrald --help)");
        }
        if ((opt_defs[id].arg == NULL) != (eq == NULL)) {
            return bad_value(o, tok, opt_defs[id].arg == NULL
                                         ? "takes no value"
                                         : "needs a value (name=value)");
        }
        {
            struct origin sub = {o->env, id};
            if (apply(s, &sub, eq != NULL ? eq + 1 : NULL) != SETTINGS_OK) {
                return SETTINGS_USAGE;
            }
        }
    }
    return SETTINGS_OK;
}

/* Copy a path or string value into a fixed buffer. */
static enum settings_result
apply_string(const struct origin *o, const char *v, char *dst, size_t cap)
{
    size_t n = strlen(v);

    if (n == 0 || n >= cap) {
        return bad_value(o, v, "empty or too long");
    }
    memcpy(dst, v, n + 1);
    return SETTINGS_OK;
}

/* A number from 0 to @max, or one of @names (index = value). */
static enum settings_result
apply_choice(const struct origin *o, const char *v, const char *const *names,
             unsigned max, const char *why, int *out)
{
    uint64_t n;

    for (unsigned i = 0; names != NULL && i <= max; i++) {
        if (names[i] != NULL && strcasecmp(v, names[i]) == 0) {
            *out = (int)i;
            return SETTINGS_OK;
        }
    }
    if (!parse_u64(v, &n) || n > max) {
        return bad_value(o, v, why);
    }
    *out = (int)n;
    return SETTINGS_OK;
}

/* Apply one value (NULL for a flag without argument). */
static enum settings_result
apply(struct settings *s, const struct origin *o, const char *v)
{
    uint64_t n;
    size_t z;
    unsigned u;
    bool b;

    switch ((enum opt_id)o->id) {
    case OPT_PORT:
        return apply_uint(o, v, 0, 65535, &s->port);
    case OPT_UDP:
        if (!parse_u64(v, &n)) {
            return bad_value(o, v, "not a decimal number");
        }
        if (n != 0) {
            return bad_value(o, v, "UDP is not supported; only 0 (off) "
                                   "is accepted");
        }
        return SETTINGS_OK;
    case OPT_LISTEN:
        if (v[0] == '\0' || strlen(v) >= sizeof(s->listen)) {
            return bad_value(o, v, "empty or too long");
        }
        memcpy(s->listen, v, strlen(v) + 1);
        return SETTINGS_OK;
    case OPT_USER:
        if (v[0] == '\0' || strlen(v) >= sizeof(s->user)) {
            return bad_value(o, v, "empty or too long");
        }
        memcpy(s->user, v, strlen(v) + 1);
        return SETTINGS_OK;
    case OPT_SHUTDOWN:
    case OPT_NOFLUSH:
    case OPT_NOWATCH:
    case OPT_NOVERBOSITY:
    case OPT_TLS:
    case OPT_SSL_SESSION:
        b = true;
        if (v != NULL && !parse_bool(v, &b)) {
            return bad_value(o, v, "expected 1/yes/true/on or "
                                   "0/no/false/off");
        }
        if (o->id == OPT_SHUTDOWN) {
            s->enable_shutdown = b;
        } else if (o->id == OPT_NOFLUSH) {
            s->disable_flush = b;
        } else if (o->id == OPT_NOVERBOSITY) {
            s->disable_verbosity = b;
        } else if (o->id == OPT_TLS) {
            s->tls.enabled = b;
        } else if (o->id == OPT_SSL_SESSION) {
            s->tls.session_cache = b;
        } else {
            s->disable_watch = b;
        }
        return SETTINGS_OK;
    case OPT_AUTH:
        return apply_string(o, v, s->auth_file, sizeof(s->auth_file));
    case OPT_SSL_CHAIN:
        return apply_string(o, v, s->tls.chain_cert,
                            sizeof(s->tls.chain_cert));
    case OPT_SSL_KEY:
        return apply_string(o, v, s->tls.key, sizeof(s->tls.key));
    case OPT_SSL_CA:
        return apply_string(o, v, s->tls.ca_cert, sizeof(s->tls.ca_cert));
    case OPT_SSL_CIPHERS:
        return apply_string(o, v, s->tls.ciphers, sizeof(s->tls.ciphers));
    case OPT_SSL_KEYFORMAT: {
        static const char *const formats[] = {NULL, "PEM", "DER"};
        int f;
        if (apply_choice(o, v, formats, 2, "expected PEM (1) or DER (2)",
                         &f) != SETTINGS_OK) {
            return SETTINGS_USAGE;
        }
        if (f == 0) {
            return bad_value(o, v, "expected PEM (1) or DER (2)");
        }
        s->tls.key_format = f;
        return SETTINGS_OK;
    }
    case OPT_SSL_VERIFY: {
        static const char *const modes[] = {"none", "request", "require",
                                            "once"};
        return apply_choice(o, v, modes, 3, "expected 0 (none), 1 "
                            "(request), 2 (require) or 3 (once)",
                            &s->tls.verify_mode);
    }
    case OPT_SSL_MINVER: {
        static const char *const versions[] = {"tlsv1.0", "tlsv1.1",
                                               "tlsv1.2", "tlsv1.3"};
        return apply_choice(o, v, versions, 3, "expected 0 (tlsv1.0), 1 "
                            "(tlsv1.1), 2 (tlsv1.2) or 3 (tlsv1.3)",
                            &s->tls.min_version);
    }
    case OPT_SSL_WBUF:
        return apply_uint(o, v, 1, 1024, &s->tls.wbuf_kb);
    case OPT_MEMORY:
        if (!parse_size(v, MIB, &z)) {
            return bad_value(o, v, "expected megabytes, or a number "
                                   "with suffix k, m or g");
        }
        if (z < MIB) {
            return bad_value(o, v, "the minimum is 1 megabyte");
        }
        s->max_memory = z;
        return SETTINGS_OK;
    case OPT_CONNS:
        return apply_uint(o, v, 1, MAX_CONNS, &s->max_conns);
    case OPT_VERBOSE:
        if (v == NULL) {
            s->verbose++;
            return SETTINGS_OK;
        }
        if (apply_uint(o, v, 0, 3, &u) != SETTINGS_OK) {
            return SETTINGS_USAGE;
        }
        s->verbose = (int)u;
        return SETTINGS_OK;
    case OPT_THREADS:
        return apply_uint(o, v, 1, MAX_THREADS, &s->threads);
    case OPT_BACKLOG:
        return apply_uint(o, v, 1, 65535, &s->backlog);
    case OPT_ITEM_MAX:
        if (!parse_size(v, 1, &z)) {
            return bad_value(o, v, "expected bytes, or a number with "
                                   "suffix k or m");
        }
        if (z < MIN_ITEM_SIZE_MAX) {
            return bad_value(o, v, "item max size cannot be less than "
                                   "1024 bytes");
        }
        if (z > MAX_ITEM_SIZE_MAX) {
            return bad_value(o, v, "cannot set item size limit higher "
                                   "than 1024 mb");
        }
        s->item_size_max = z;
        return SETTINGS_OK;
    case OPT_EXTENDED:
        return apply_extended(s, o, v);
    case OPT_IDLE:
        return apply_uint(o, v, 0, 86400 * 365, &s->idle_timeout);
    case OPT_REQMAX:
        if (!parse_size(v, 1, &z)) {
            return bad_value(o, v, "expected bytes, or a number with "
                                   "suffix k or m");
        }
        if (z < MIN_REQUEST_MAX) {
            return bad_value(o, v, "the minimum is 64k");
        }
        s->request_max = z;
        return SETTINGS_OK;
    case OPT_DRAIN:
        return apply_uint(o, v, 0, 3600, &s->drain_timeout);
    case OPT_METRICS_PORT:
        return apply_uint(o, v, 0, 65535, &s->metrics_port);
    case OPT_METRICS_LISTEN:
        if (v[0] == '\0' || strlen(v) >= sizeof(s->metrics_listen)) {
            return bad_value(o, v, "empty or too long");
        }
        memcpy(s->metrics_listen, v, strlen(v) + 1);
        return SETTINGS_OK;
    case OPT_HOTKEYS:
        return apply_uint(o, v, 0, MAX_HOTKEYS_SAMPLE, &s->hotkeys_sample);
    case OPT_PEER:
        return apply_peers(s, o, v);
    case OPT_WATCH_HISTORY:
        if (apply_uint(o, v, 0, MAX_WATCH_HISTORY, &u) != SETTINGS_OK) {
            return SETTINGS_USAGE;
        }
        s->watch_history = u;
        return SETTINGS_OK;
    case OPT_WATCH_LAG:
        if (apply_uint(o, v, 0, MAX_WATCH_HISTORY, &u) != SETTINGS_OK) {
            return SETTINGS_USAGE;
        }
        s->watch_lag = u;
        return SETTINGS_OK;
    case OPT_KEY_TAGS:
        if (strlen(v) != 1 || v[0] <= ' ' || v[0] == 0x7f) {
            return bad_value(o, v, "expected one printable character");
        }
        s->key_tags = v[0];
        return SETTINGS_OK;
    case OPT_HELP:
    case OPT_VERSION:
    case OPT_COUNT:
        break;
    }
    return SETTINGS_OK;
}

static void
defaults(struct settings *s)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    memset(s, 0, sizeof(*s));
    s->port = DEFAULT_PORT;
    memcpy(s->listen, DEFAULT_LISTEN, sizeof(DEFAULT_LISTEN));
    s->max_memory = (size_t)DEFAULT_MEMORY_MB * MIB;
    s->max_conns = DEFAULT_CONNS;
    s->threads = ncpu < 1 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS
                                                   : (unsigned)ncpu;
    s->item_size_max = DEFAULT_ITEM_SIZE_MAX;
    s->backlog = DEFAULT_BACKLOG;
    s->drain_timeout = DEFAULT_DRAIN_TIMEOUT;
    s->hotkeys_sample = DEFAULT_HOTKEYS_SAMPLE;
    s->watch_history = DEFAULT_WATCH_HISTORY;
    s->tls.key_format = 1;     /* PEM */
    s->tls.min_version = 2;    /* TLS 1.2, as memcached */
    s->tls.wbuf_kb = 16;
}

static enum settings_result
load_env(struct settings *s)
{
    for (int id = 0; id < OPT_COUNT; id++) {
        const char *v;
        struct origin o = {opt_defs[id].env, id};

        if (o.env == NULL || (v = getenv(o.env)) == NULL) {
            continue;
        }
        /* Flags without argument take a boolean from the environment;
         * CORRAL_VERBOSE takes the level. */
        if (apply(s, &o, v) != SETTINGS_OK) {
            return SETTINGS_USAGE;
        }
    }
    return SETTINGS_OK;
}

static enum settings_result
validate(struct settings *s, bool request_set)
{
    if (s->metrics_port != 0 && s->metrics_port == s->port) {
        fprintf(stderr, "corrald: the metrics port (%u) must differ from "
                        "the memcached port\n", s->metrics_port);
        return SETTINGS_USAGE;
    }
    if (s->metrics_listen[0] == '\0') {
        memcpy(s->metrics_listen, s->listen, sizeof(s->metrics_listen));
    }
    if (s->npeers > 0 && s->watch_history == 0) {
        fprintf(stderr, "corrald: peers need the invalidation history "
                        "(--watch-history is 0)\n");
        return SETTINGS_USAGE;
    }
    if (s->watch_lag > s->watch_history) {
        fprintf(stderr, "corrald: --watch-lag (%zu) cannot exceed "
                        "--watch-history (%zu)\n",
                s->watch_lag, s->watch_history);
        return SETTINGS_USAGE;
    }
    if (s->item_size_max > s->max_memory / 2) {
        fprintf(stderr, "corrald: cannot set item size limit higher than "
                        "1/2 of memory max (-I %zu, -m %zu bytes)\n",
                s->item_size_max, s->max_memory);
        return SETTINGS_USAGE;
    }
    if (!request_set) {
        s->request_max = s->item_size_max + REQUEST_SLACK;
        if (s->request_max < DEFAULT_REQUEST_MIN) {
            s->request_max = DEFAULT_REQUEST_MIN;
        }
    } else if (s->request_max < s->item_size_max + REQUEST_SLACK) {
        fprintf(stderr, "corrald: the request size limit (%zu) must be at "
                        "least the max item size + 64k (%zu)\n",
                s->request_max, s->item_size_max + REQUEST_SLACK);
        return SETTINGS_USAGE;
    }
    if (s->tls.enabled) {
#ifndef CORRAL_HAVE_OPENSSL
        fprintf(stderr, "corrald: -Z: this corrald was built without TLS "
                        "(install libssl-dev, then configure and build "
                        "again)\n");
        return SETTINGS_USAGE;
#else
        if (s->tls.chain_cert[0] == '\0') {
            fprintf(stderr, "corrald: -Z needs a certificate: "
                            "--ssl-chain-cert or -o ssl_chain_cert=<file>\n");
            return SETTINGS_USAGE;
        }
        if (s->tls.verify_mode != SETTINGS_SSL_VERIFY_NONE &&
            s->tls.ca_cert[0] == '\0') {
            fprintf(stderr, "corrald: ssl_verify_mode %d needs the CAs "
                            "that sign client certificates: "
                            "--ssl-ca-cert or -o ssl_ca_cert=<file>\n",
                    s->tls.verify_mode);
            return SETTINGS_USAGE;
        }
#endif
    }
    return SETTINGS_OK;
}

enum settings_result
settings_load(struct settings *s, int argc, char *const argv[])
{
    struct option longopts[OPT_COUNT + 1];
    char shortopts[OPT_COUNT * 2 + 2];
    size_t ns = 0, nl = 0;
    bool request_set;
    int c;

    defaults(s);
    if (load_env(s) != SETTINGS_OK) {
        return SETTINGS_USAGE;
    }
    request_set = getenv("CORRAL_REQUEST_MAX") != NULL;

    /* A leading ':' makes getopt report a missing argument as ':'. */
    shortopts[ns++] = ':';
    for (int id = 0; id < OPT_COUNT; id++) {
        const struct opt_def *d = &opt_defs[id];
        int val = d->short_flag != 0 ? d->short_flag : LONG_ONLY_BASE + id;

        if (d->short_flag != 0) {
            shortopts[ns++] = (char)d->short_flag;
            if (d->arg != NULL) {
                shortopts[ns++] = ':';
            }
        }
        longopts[nl].name = d->long_flag;
        longopts[nl].has_arg = d->arg != NULL ? required_argument
                                              : no_argument;
        longopts[nl].flag = NULL;
        longopts[nl].val = val;
        nl++;
    }
    shortopts[ns] = '\0';
    memset(&longopts[nl], 0, sizeof(longopts[nl]));

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        int id = -1;

        if (c == '?' || c == ':') {
            const char *what = optind > 0 && optind <= argc
                                   ? argv[optind - 1] : "?";
            if (c == ':') {
                fprintf(stderr, "corrald: option %s requires an argument\n",
                        what);
            } else if (optopt != 0) {
                fprintf(stderr, "corrald: unknown option -%c\n", optopt);
            } else {
                fprintf(stderr, "corrald: unknown option %s\n", what);
            }
            fprintf(stderr, "Try 'corrald --help' for more information.\n");
            return SETTINGS_USAGE;
        }
        if (c >= LONG_ONLY_BASE) {
            id = c - LONG_ONLY_BASE;
        } else {
            for (int i = 0; i < OPT_COUNT; i++) {
                if (opt_defs[i].short_flag == c) {
                    id = i;
                    break;
                }
            }
        }
        if (id == OPT_HELP) {
            settings_usage(stdout);
            return SETTINGS_EXIT;
        }
        if (id == OPT_VERSION) {
            printf("corrald %s (libcorral %s)\n", PACKAGE_VERSION,
                   corral_version());
#ifdef CORRAL_HAVE_OPENSSL
            printf("TLS: %s\n", tls_library());
#else
            printf("TLS: not built in\n");
#endif
            return SETTINGS_EXIT;
        }
        if (id == OPT_REQMAX) {
            request_set = true;
        }
        if (id >= 0) {
            struct origin o = {NULL, id};
            if (apply(s, &o, optarg) != SETTINGS_OK) {
                return SETTINGS_USAGE;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "corrald: unexpected argument \"%s\"\n",
                argv[optind]);
        fprintf(stderr, "Try 'corrald --help' for more information.\n");
        return SETTINGS_USAGE;
    }
    return validate(s, request_set);
}

void
settings_usage(FILE *out)
{
    fprintf(out, "corrald %s - a memcached-compatible cache server\n",
            PACKAGE_VERSION);
    fprintf(out, "usage: corrald [options]\n\n");
    for (int id = 0; id < OPT_COUNT; id++) {
        const struct opt_def *d = &opt_defs[id];
        char flag[64];

        if (d->short_flag != 0) {
            snprintf(flag, sizeof(flag), "-%c, --%s%s%s", d->short_flag,
                     d->long_flag, d->arg ? "=" : "", d->arg ? d->arg : "");
        } else {
            snprintf(flag, sizeof(flag), "    --%s%s%s", d->long_flag,
                     d->arg ? "=" : "", d->arg ? d->arg : "");
        }
        if (strlen(flag) >= 26) {
            fprintf(out, "%s\n%-26s%s\n", flag, "", d->help);
        } else {
            fprintf(out, "%-26s%s\n", flag, d->help);
        }
    }
    fprintf(out, "\nEvery option can also be set in the environment "
                 "(flags win):\n");
    for (int id = 0; id < OPT_COUNT; id++) {
        const struct opt_def *d = &opt_defs[id];
        if (d->env != NULL) {
            char flag[32];
            if (d->short_flag != 0) {
                snprintf(flag, sizeof(flag), "-%c", d->short_flag);
            } else {
                snprintf(flag, sizeof(flag), "--%s", d->long_flag);
            }
            fprintf(out, "  %-26s%s%s\n", d->env, flag,
                    d->arg == NULL
                        ? (id == OPT_VERBOSE ? " (a level, 0-3)"
                                             : " (1/yes or 0/no)")
                        : "");
        }
    }
    fprintf(out, "\nSignals: SIGTERM and SIGINT stop accepting, finish the "
                 "requests in flight\nand exit 0.  Exit status 64 means a bad "
                 "option.\n");
}
