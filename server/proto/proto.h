/*
 * proto.h - the memcached text protocol as a pure library: a parser that
 * turns bytes into commands and composers that turn results into reply
 * bytes.  It knows nothing of sockets, event loops or the engine; the
 * server's exec.c is the one file that joins it to corral.h.
 *
 * Reference.  memcached 1.6.18 is the specification: its protocol.txt, and
 * where that is silent, what the real server answers.  Every error string
 * and every consumption rule below was checked against a running 1.6.18;
 * tests/unit/test_proto.c, test_meta.c and test_compose.c record the
 * observations as tables.
 *
 * Parsing.  proto_parse() looks at the unconsumed bytes of a connection
 * and returns one of:
 *
 *   PROTO_OK      one command parsed into *cmd; *out_consumed is its size,
 *                 including the data block of a storage command and the
 *                 block's "\r\n".
 *   PROTO_AGAIN   the command is not complete: read more bytes and call
 *                 again with the same (longer) buffer.  Nothing consumed.
 *                 cmd->need is the total buffer size that will let the
 *                 call progress, when known (a storage command whose line
 *                 is complete), else 0: the line has no '\n' yet, and a
 *                 caller may wait for one before calling again (to avoid
 *                 rescanning a long multiget), provided it calls again
 *                 when the buffer passes limits.line_max.
 *   PROTO_EINVAL  the bytes are a command memcached rejects.  Reply
 *                 proto_err_line(cmd->err) unless cmd->noreply, drop
 *                 *out_consumed bytes, then drop cmd->swallow further
 *                 bytes of the stream (they may not have arrived yet; a
 *                 100 MB refused value is swallowed as it comes), then
 *                 parse again.
 *   PROTO_ECLOSE  memcached closes the connection here (an unterminated
 *                 line too long to be a command).  Nothing consumed.
 *
 * The parse loop of a connection:
 *
 *     while (rbuf has bytes) {
 *         if (swallow > 0) { drop min(swallow, avail); continue/read; }
 *         st = proto_parse(&cmd, rbuf, avail, &limits, &used);
 *         if (st == PROTO_AGAIN) break;             (read more)
 *         if (st == PROTO_ECLOSE) close;
 *         if (st == PROTO_OK) exec(&cmd); else reply error, swallow =
 *             cmd.swallow;
 *         advance rbuf by used;
 *     }
 *
 * Outputs point into the caller's buffer (zero copy) and stay valid while
 * those bytes do; the only exception is a meta command's base64 key
 * (flag b), decoded into cmd->key_buf.  The parser never allocates and
 * keeps no state between calls: a struct proto_cmd is an output only.
 *
 * Layers.  The parser decides everything the bytes decide.  Execution
 * decides what depends on the cache or the server's settings, using the
 * strings this header provides:
 *   - value size: the parser refuses a data block longer than
 *     limits.value_max (SERVER_ERROR object too large for cache, data
 *     swallowed).  memcached counts its item header too, so a value
 *     slightly under the limit can still be too large: exec applies
 *     memcached's rule after the block was read and replies
 *     PROTO_ERR_TOO_LARGE.  In both cases memcached also deletes the key
 *     for "set" and for every "ms" (not for add/replace/append/prepend/
 *     cas): on PROTO_EINVAL with PROTO_ERR_TOO_LARGE, cmd->type and the
 *     key are valid for that purpose.
 *   - incr/decr/ma on a value that is not a number: exec replies
 *     PROTO_ERR_NON_NUMERIC.
 *   - shutdown (disabled unless -A), stats subcommands, watch limits,
 *     flush_all when disabled: exec.
 *
 * Threads.  Every function is reentrant; nothing is global except
 * constant tables.
 */
#ifndef CORRAL_PROTO_H
#define CORRAL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Limits                                                             */

/* The longest key, in bytes (memcached KEY_MAX_LENGTH). */
#define PROTO_KEY_MAX 250

/*
 * memcached closes a connection whose buffered, unterminated line is
 * longer than this (2048 bytes), unless the line starts with "get " or
 * "gets " after at most 100 spaces: those may be any length.
 */
#define PROTO_LINE_MAX 2048

/* Spaces allowed before "get "/"gets " on such a long line. */
#define PROTO_LINE_LEAD_MAX 100

/* Default for proto_limits.multiget_line_max (memcached has no bound). */
#define PROTO_MULTIGET_LINE_MAX (16u * 1024 * 1024)

/* Default for proto_limits.value_max: memcached's default -I, 1 MiB. */
#define PROTO_VALUE_MAX (1024u * 1024)

/*
 * memcached splits a command line into at most 24 tokens (23 words and a
 * terminator); commands that take a bounded number of arguments fail
 * beyond that.
 */
#define PROTO_TOKENS_MAX 24

/* Meta commands: more than 20 tokens (with terminator) is an error,
 * which leaves room for 17 flags on mg/md/ma and 16 on ms. */
#define PROTO_META_TOKENS_MAX 20
#define PROTO_META_FLAGS_MAX 17

/* The O(paque) token, 'O' included, is at most 32 bytes: 31 of value. */
#define PROTO_OPAQUE_TOKEN_MAX 32
#define PROTO_OPAQUE_MAX (PROTO_OPAQUE_TOKEN_MAX - 1)

/* Buffer sizes that always suffice for the composers below. */
#define PROTO_VALUE_LINE_MAX 320   /* VALUE <key> <flags> <bytes> <cas> */
#define PROTO_META_LINE_MAX 1024   /* any meta header line */
#define PROTO_NUM_LINE_MAX 24      /* a 64-bit number and \r\n */

/*
 * Explicit limits, filled with defaults by proto_limits_init() and then
 * adjusted by the server (value_max from -I, for instance).
 */
struct proto_limits {
    size_t key_max;           /* PROTO_KEY_MAX; keys longer are refused */
    size_t line_max;          /* PROTO_LINE_MAX: unterminated line limit */
    size_t multiget_line_max; /* get/gets lines: close beyond this;
                               * 0 = unbounded, as in memcached */
    size_t value_max;         /* largest data block accepted */
};

/*
 * proto_limits_init - fill @lim with the defaults above.
 * Ownership: caller memory; nothing retained.
 */
void proto_limits_init(struct proto_limits *lim);

/* ------------------------------------------------------------------ */
/* Commands                                                           */

/*
 * The command table: X(ENUM, "name").  One line per command; the parser
 * matches the first token exactly (commands are case-sensitive).  New
 * commands (Corral's extensions) are appended at the end so that the
 * enum values of existing ones never change.
 */
#define PROTO_CMD_TABLE(X)                                                    \
    X(GET, "get")                                                             \
    X(GETS, "gets")                                                           \
    X(GAT, "gat")                                                             \
    X(GATS, "gats")                                                           \
    X(SET, "set")                                                             \
    X(ADD, "add")                                                             \
    X(REPLACE, "replace")                                                     \
    X(APPEND, "append")                                                       \
    X(PREPEND, "prepend")                                                     \
    X(CAS, "cas")                                                             \
    X(DELETE, "delete")                                                       \
    X(INCR, "incr")                                                           \
    X(DECR, "decr")                                                           \
    X(TOUCH, "touch")                                                         \
    X(FLUSH_ALL, "flush_all")                                                 \
    X(STATS, "stats")                                                         \
    X(VERSION, "version")                                                     \
    X(VERBOSITY, "verbosity")                                                 \
    X(CACHE_MEMLIMIT, "cache_memlimit")                                       \
    X(QUIT, "quit")                                                           \
    X(SHUTDOWN, "shutdown")                                                   \
    X(WATCH, "watch")                                                         \
    X(MG, "mg")                                                               \
    X(MS, "ms")                                                               \
    X(MD, "md")                                                               \
    X(MA, "ma")                                                               \
    X(MN, "mn")                                                               \
    X(ME, "me")                                                               \
    X(BGET, "bget")                                                           \
    /* Corral's extensions (ext.c) */                                         \
    X(TSET, "tset")                                                           \
    X(TADD, "tadd")                                                           \
    X(TREPLACE, "treplace")                                                   \
    X(TCAS, "tcas")                                                           \
    X(INVALIDATE_TAG, "invalidate_tag")                                       \
    X(INVALIDATE_PREFIX, "invalidate_prefix")

typedef enum proto_cmd_type {
    PROTO_CMD_NONE = 0,
#define PROTO_CMD_ENUM_(e, name) PROTO_CMD_##e,
    PROTO_CMD_TABLE(PROTO_CMD_ENUM_)
#undef PROTO_CMD_ENUM_
    PROTO_CMD_COUNT
} proto_cmd_type_t;

/*
 * proto_cmd_name - the wire name of @type ("get"), or "" for NONE or an
 * unknown value.  Ownership: a static string.
 */
const char *proto_cmd_name(proto_cmd_type_t type);

/*
 * proto_cmd_lookup - the command named by the @len bytes at @name, or
 * PROTO_CMD_NONE.  Exact, case-sensitive match.
 */
proto_cmd_type_t proto_cmd_lookup(const char *name, size_t len);

/* ------------------------------------------------------------------ */
/* Status and error replies                                           */

typedef enum proto_status {
    PROTO_OK = 0,      /* a command parsed */
    PROTO_AGAIN = 1,   /* incomplete: need more bytes, nothing consumed */
    PROTO_EINVAL = -1, /* reply cmd->err, consume, then swallow */
    PROTO_ECLOSE = -2  /* close the connection */
} proto_status_t;

/*
 * Error replies: X(ENUM, "line").  The parser sets cmd->err to one of the
 * first group; the second group is for exec, which decides those cases.
 * Each string is exactly what memcached 1.6.18 sends, without "\r\n".
 */
#define PROTO_ERR_TABLE(X)                                                    \
    X(NONE, "")                                                               \
    /* parse-time */                                                          \
    X(ERROR, "ERROR")                                                         \
    X(BAD_FORMAT, "CLIENT_ERROR bad command line format")                     \
    X(BAD_CHUNK, "CLIENT_ERROR bad data chunk")                               \
    X(TOO_LARGE, "SERVER_ERROR object too large for cache")                   \
    X(BAD_EXPTIME, "CLIENT_ERROR invalid exptime argument")                   \
    X(BAD_DELTA, "CLIENT_ERROR invalid numeric delta argument")               \
    X(DELETE_USAGE, "CLIENT_ERROR bad command line format.  "                 \
                    "Usage: delete <key> [noreply]")                          \
    X(META_DUPLICATE, "CLIENT_ERROR duplicate flag")                          \
    X(META_INVALID, "CLIENT_ERROR invalid flag")                              \
    X(META_BAD_TOKEN, "CLIENT_ERROR bad token in command line format")        \
    X(META_DECODE_KEY, "CLIENT_ERROR error decoding key")                     \
    X(META_OPAQUE, "CLIENT_ERROR opaque token too long")                      \
    X(META_M_LENGTH, "CLIENT_ERROR incorrect length for M token")             \
    X(META_INITIAL, "CLIENT_ERROR invalid numeric initial value")             \
    X(META_DELTA, "CLIENT_ERROR invalid numeric delta value")                 \
    X(META_MG_TOO_MANY, "CLIENT_ERROR options flags are too long")            \
    X(META_TOO_MANY, "CLIENT_ERROR options flags too long")                   \
    X(META_INVALID_OR_DUP, "CLIENT_ERROR invalid or duplicate flag")          \
    X(MS_MODE, "CLIENT_ERROR invalid mode for ms M token")                    \
    X(MA_MODE, "CLIENT_ERROR invalid mode for ma M token")                    \
    /* execution-time, decided by exec */                                     \
    X(NON_NUMERIC, "CLIENT_ERROR cannot increment or decrement "              \
                   "non-numeric value")                                       \
    X(STORE_NOMEM, "SERVER_ERROR out of memory storing object")               \
    X(NOMEM, "SERVER_ERROR out of memory")                                    \
    X(GET_NOMEM, "SERVER_ERROR out of memory writing get response")           \
    X(STATS_NOMEM, "SERVER_ERROR out of memory writing stats")                \
    X(SHUTDOWN_DISABLED, "ERROR: shutdown not enabled")                       \
    X(SHUTDOWN_MODE, "CLIENT_ERROR invalid shutdown mode")                    \
    X(FLUSH_DISABLED, "CLIENT_ERROR flush_all not allowed")                   \
    X(WATCH_DISABLED, "CLIENT_ERROR watch commands not allowed")              \
    X(WATCH_PIPELINED, "ERROR cannot pipeline other commands before watch")   \
    X(WATCH_TOO_MANY, "WATCHER_TOO_MANY log watcher limit reached")           \
    X(STATS_BAD_LINE, "CLIENT_ERROR bad command line")                        \
    X(STATS_DETAIL_USAGE, "CLIENT_ERROR usage: stats detail on|off|dump")     \
    X(STATS_CACHEDUMP_DISABLED, "CLIENT_ERROR stats cachedump not allowed")   \
    X(WATCH_FAILED, "WATCHER_FAILED failed to add log watcher")               \
    /* Corral's extensions: parse-time, then exec-time */                     \
    X(TAGS, "CLIENT_ERROR bad tags")                                          \
    X(WATCH_FILTER, "CLIENT_ERROR bad watch filter")                          \
    X(WATCH_MIXED, "CLIENT_ERROR invalidations cannot be watched with "      \
                   "other streams")                                           \
    X(INVALIDATE_FAILED, "SERVER_ERROR invalidation failed")                  \
    /* cache_memlimit, memcached's replies */                                 \
    X(MEMLIMIT_TOO_SMALL,                                                     \
      "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m")               \
    X(MEMLIMIT_NOT_BYTES,                                                     \
      "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes")            \
    X(MEMLIMIT_FAILED,                                                        \
      "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust")             \
    /* corrald's own refusal, in memcached's "-F" wording */                  \
    X(VERBOSITY_DISABLED, "CLIENT_ERROR verbosity not allowed")               \
    /* authentication (-Y), memcached's replies */                            \
    X(AUTH_REQUIRED, "CLIENT_ERROR unauthenticated")                          \
    X(AUTH_FAILURE, "CLIENT_ERROR authentication failure")                    \
    X(AUTH_FORMAT, "CLIENT_ERROR bad authentication token format")            \
    X(AUTH_TERMINATION, "CLIENT_ERROR bad command line termination")

typedef enum proto_err {
#define PROTO_ERR_ENUM_(e, s) PROTO_ERR_##e,
    PROTO_ERR_TABLE(PROTO_ERR_ENUM_)
#undef PROTO_ERR_ENUM_
    PROTO_ERR_COUNT
} proto_err_t;

/*
 * proto_err_str - the reply text of @err without "\r\n" ("" for NONE or
 * an unknown value).  Ownership: a static string.
 */
const char *proto_err_str(proto_err_t err);

/*
 * proto_err_line - the reply line of @err with its "\r\n", ready for an
 * iovec; *out_len (if not NULL) gets its length.  Ownership: static.
 */
const char *proto_err_line(proto_err_t err, size_t *out_len);

/* ------------------------------------------------------------------ */
/* Parsed commands                                                    */

/* Storage mode, shared by the classic storage commands and ms's M flag. */
typedef enum proto_store_mode {
    PROTO_STORE_SET = 0, /* set; ms default or MS */
    PROTO_STORE_ADD,     /* add; ms ME */
    PROTO_STORE_REPLACE, /* replace; ms MR */
    PROTO_STORE_APPEND,  /* append; ms MA */
    PROTO_STORE_PREPEND, /* prepend; ms MP */
    PROTO_STORE_CAS      /* cas (ms uses has_cas with its mode instead) */
} proto_store_mode_t;

/* shutdown's argument: none, "graceful", or anything else. */
typedef enum proto_shutdown {
    PROTO_SHUTDOWN_NORMAL = 0, /* "shutdown": memcached raises SIGINT */
    PROTO_SHUTDOWN_GRACEFUL,   /* "shutdown graceful": SIGUSR1 */
    PROTO_SHUTDOWN_INVALID     /* reply PROTO_ERR_SHUTDOWN_MODE if enabled */
} proto_shutdown_t;

/*
 * watch streams: X(ENUM, "name").  "watch" alone means fetchers.  An
 * unknown name makes the whole command PROTO_EINVAL / ERROR.
 */
#define PROTO_WATCH_TABLE(X)                                                  \
    X(RAWCMDS, "rawcmds")                                                     \
    X(EVICTIONS, "evictions")                                                 \
    X(FETCHERS, "fetchers")                                                   \
    X(MUTATIONS, "mutations")                                                 \
    X(SYSEVENTS, "sysevents")                                                 \
    X(CONNEVENTS, "connevents")                                               \
    X(PROXYREQS, "proxyreqs")                                                 \
    X(PROXYEVENTS, "proxyevents")                                             \
    X(PROXYUSER, "proxyuser")                                                 \
    X(INVALIDATIONS, "invalidations") /* Corral: see ext.c */

enum proto_watch_bit {
#define PROTO_WATCH_BIT_(e, s) PROTO_WATCH_BIT_##e,
    PROTO_WATCH_TABLE(PROTO_WATCH_BIT_)
#undef PROTO_WATCH_BIT_
    PROTO_WATCH_BIT_COUNT
};
#define PROTO_WATCH(e) (1u << PROTO_WATCH_BIT_##e)

/*
 * Meta flags are letters; PROTO_MF('v') is the bit of flag v in
 * proto_meta.flags (and in proto_meta_item.have).  Letters only: 'A'..'Z'
 * are bits 0..25, 'a'..'z' bits 26..51; anything else is 0.
 */
#define PROTO_MF(c)                                                           \
    ((c) >= 'A' && (c) <= 'Z'   ? (UINT64_C(1) << ((c) - 'A'))                \
     : (c) >= 'a' && (c) <= 'z' ? (UINT64_C(1) << ((c) - 'a' + 26))           \
                                : UINT64_C(0))

/*
 * The flags of a meta command.  Every flag memcached 1.6.18 accepts is
 * parsed on every meta command, as memcached does (mg accepts ms's F, for
 * instance, and ignores it); which ones matter is exec's business.
 * Numbers are converted the way memcached converts them (see each field).
 */
struct proto_meta {
    uint64_t flags;                    /* PROTO_MF() of each flag given */
    char order[PROTO_META_FLAGS_MAX];  /* the flag letters, request order */
    uint8_t nflags;                    /* entries in order[] */
    bool base64;                       /* b: key was base64, now decoded */
    bool quiet;                        /* q: see proto_meta_quiet() */
    const char *opaque;                /* O: the token after 'O' */
    size_t nopaque;                    /* 0..PROTO_OPAQUE_MAX */
    int32_t ttl;                       /* T: exptime, int32 as memcached */
    int32_t vivify_ttl;                /* N: exptime for autovivify */
    int32_t recache_ttl;               /* R: win if remaining TTL < this */
    uint32_t client_flags;             /* F: low 32 bits, as memcached */
    uint64_t cas;                      /* C: compare CAS; has_cas says so */
    bool has_cas;                      /* C given (even C0) */
    uint64_t delta;                    /* D: ma delta, default 1 */
    uint64_t initial;                  /* J: ma initial, default 0 */
    char mode;                         /* M: the raw mode byte, 0 if none */
    proto_store_mode_t store_mode;     /* ms: from M (SET by default) */
    bool decr;                         /* ma: M 'D' or '-' */
    bool invalidate;                   /* I */
    uint32_t early_beta;               /* A (Corral): XFetch's beta in
                                        * thousandths; 1000 for a bare A */
};

/* Does the meta command carry flag @c?  (proto_meta_has(cmd, 'v')) */
#define proto_meta_has(cmd, c) (((cmd)->meta.flags & PROTO_MF(c)) != 0)

/*
 * A parsed command.  Fields not used by cmd->type are zero.  Pointers
 * point into the buffer given to proto_parse() (or into key_buf); they
 * are borrowed until the caller consumes or moves those bytes.
 */
struct proto_cmd {
    proto_cmd_type_t type;
    proto_err_t err;        /* with PROTO_EINVAL: the reply */
    bool noreply;           /* classic "noreply" (also on errors: then
                             * the error line is not sent); meta q */
    size_t swallow;         /* with PROTO_EINVAL: bytes to drop after
                             * the consumed ones */
    size_t need;            /* with PROTO_AGAIN: bytes needed, or 0 */

    /* the key, for single-key commands (decoded when meta.base64) */
    const char *key;
    size_t nkey;

    /*
     * get/gets/gat/gats/bget: the keys, ' '-separated; proto_keys_begin().
     * On PROTO_EINVAL for a key longer than key_max, they span the keys
     * before it: memcached looked those up (gat/gats: touched them),
     * then dropped its pending replies, and replied the error.
     */
    const char *keys;
    size_t keys_len;
    size_t nkeys;

    /* stats (and watch): the words after the command; proto_args_*() */
    const char *args;
    size_t args_len;
    size_t nargs;

    /* storage: set add replace append prepend cas, ms */
    proto_store_mode_t store_mode;
    uint32_t flags;         /* client flags: low 32 bits, as memcached */
    int32_t exptime;        /* also gat/gats/touch, flush_all's delay,
                             * and meta T (= meta.ttl) */
    uint64_t cas;           /* cas's <cas unique>; meta C (= meta.cas) */
    const char *value;      /* the data block, without its \r\n */
    size_t nvalue;

    uint64_t delta;         /* incr/decr; ma's D (= meta.delta) */
    uint32_t level;         /* verbosity; cache_memlimit's megabytes */
    proto_shutdown_t shutdown;
    uint32_t watch;         /* PROTO_WATCH() bits */

    struct proto_meta meta; /* mg ms md ma mn me */

    /*
     * Corral's extensions (ext.c).  tags: the comma-separated tag list of
     * tset/tadd/treplace/tcas and of ms's G flag, validated (1..
     * PROTO_TAGS_MAX names of 1..PROTO_TAG_MAX bytes); proto_tags_begin().
     * watch invalidations: the filters stay in args (proto_watch_filter_
     * next()); since and node are converted here.
     */
    const char *tags;
    size_t tags_len;
    unsigned ntags;
    uint64_t since;         /* watch invalidations since=<seq>; 0: none */
    uint64_t node;          /* watch invalidations node=<hex>; 0: none */
    uint32_t heartbeat;     /* watch invalidations heartbeat=<s>; 0: none */

    char key_buf[PROTO_KEY_MAX]; /* storage for a base64-decoded key */
};

/*
 * proto_parse - parse the command at the start of @buf.
 *
 * @cmd           OUT: the command (always overwritten; see statuses).
 * @buf, @len     the unconsumed bytes of the connection.
 * @lim           limits (proto_limits_init() defaults, adjusted).
 * @out_consumed  OUT: bytes the command used (0 with AGAIN / ECLOSE).
 *
 * Returns PROTO_OK, PROTO_AGAIN, PROTO_EINVAL or PROTO_ECLOSE as
 * described at the top of this file.  The result depends only on the
 * bytes: parsing a buffer at once or as successive prefixes yields the
 * same command, except that an unterminated prefix longer than
 * lim->line_max is PROTO_ECLOSE, as in memcached.
 *
 * Ownership: pointers in @cmd borrow @buf (or @cmd->key_buf).
 * Complexity: O(line length), plus O(1) for a data block.  No allocation.
 */
proto_status_t proto_parse(struct proto_cmd *cmd, const char *buf,
                           size_t len, const struct proto_limits *lim,
                           size_t *out_consumed);

/*
 * Token iteration over the keys of a get-family command or the arguments
 * of stats/watch: ' '-separated words (memcached splits on spaces only;
 * a tab is part of a key).
 *
 *     struct proto_iter it;
 *     const char *k; size_t nk;
 *     proto_keys_begin(&it, cmd);
 *     while (proto_iter_next(&it, &k, &nk)) { ... }
 *
 * Ownership: the words borrow the parse buffer.  No allocation; each step
 * is O(word length).
 */
struct proto_iter {
    const char *p;
    const char *end;
};

void proto_keys_begin(struct proto_iter *it, const struct proto_cmd *cmd);
void proto_args_begin(struct proto_iter *it, const struct proto_cmd *cmd);
bool proto_iter_next(struct proto_iter *it, const char **out_word,
                     size_t *out_len);

/* ------------------------------------------------------------------ */
/* Composing replies                                                  */

/*
 * What memcached 1.6.18 answers, per command, for exec (errors: see
 * PROTO_ERR_TABLE; "quiet" is proto_meta_quiet()):
 *
 *   get gets gat gats bget  a VALUE line (proto_compose_value, with CAS
 *            for gets/gats), the value and CRLF per hit, then END.  gat
 *            and gats also set each hit's exptime.  On PROTO_EINVAL for a
 *            key too long, memcached had looked up (gat: touched) the
 *            keys before it, then sent only the error; it also dropped the
 *            not yet written replies of earlier commands in the same read.
 *   set add replace append prepend cas  STORED, NOT_STORED, EXISTS (cas:
 *            CAS differs) or NOT_FOUND (cas: no item).  noreply silences
 *            every reply, errors included once noreply was recognised
 *            (cmd->noreply says so on PROTO_EINVAL too).
 *   incr decr  the new value (proto_compose_u64), NOT_FOUND, or
 *            PROTO_ERR_NON_NUMERIC.  incr wraps at 2^64, decr stops at 0.
 *   touch    TOUCHED or NOT_FOUND.   delete  DELETED or NOT_FOUND.
 *   flush_all  OK; exptime > 0 delays the flush, <= 0 flushes now.
 *   verbosity  OK.   version  "VERSION <v>".   quit  close after writing.
 *   stats    STAT lines then END; "reset" -> RESET; an unknown subcommand
 *            (including "noreply") -> ERROR; see PROTO_ERR_STATS_*.
 *   shutdown  PROTO_ERR_SHUTDOWN_DISABLED unless enabled; then close and
 *            stop (GRACEFUL: drain), or PROTO_ERR_SHUTDOWN_MODE.
 *   watch    OK, then the connection only receives log lines.
 *   mg       hit: HD, or VA <size> + value with flag v; return flags in
 *            request order: s t c f l h (item values), O k; then Z, X, W.
 *            miss: EN with O and k only (quiet hides it).  T sets the TTL
 *            on a hit; N<ttl> creates an empty item on a miss and wins
 *            (W); R<ttl> wins when the remaining TTL is below it;
 *            A[beta] (Corral) wins early with XFetch's probability.
 *   ms       HD (quiet hides it), NS, EX or NF; return flags O k c (c: the
 *            new CAS, 0 when not stored).  C with mode set/replace is a
 *            CAS store; I with C marks a lower-CAS store stale.  An item
 *            stored with b keeps its key binary: k later returns it base64
 *            (proto_meta_item.key_binary).
 *   md       HD (quiet hides it), NF or EX; return flags O k.  I marks the
 *            item stale and bumps its CAS instead of deleting (T: new TTL).
 *   ma       HD, or VA <len> + the number with v (quiet hides both), NF,
 *            NS or EX; return flags t c (item values) O k.  N<ttl> creates
 *            the item from J (default 0) on a miss.
 *   me       proto_compose_me(), or EN.   mn  MN.
 *
 * For mg and ma, memcached finds a too-long opaque only while writing the
 * reply, after the lookup (mg) or the arithmetic (ma) took effect; those
 * commands come back PROTO_EINVAL / PROTO_ERR_META_OPAQUE fully parsed,
 * so exec may run them before replying the error.
 */

/*
 * Fixed reply lines: X(ENUM, "line") without "\r\n".
 */
#define PROTO_REPLY_TABLE(X)                                                  \
    X(END, "END")                                                             \
    X(STORED, "STORED")                                                       \
    X(NOT_STORED, "NOT_STORED")                                               \
    X(EXISTS, "EXISTS")                                                       \
    X(NOT_FOUND, "NOT_FOUND")                                                 \
    X(DELETED, "DELETED")                                                     \
    X(TOUCHED, "TOUCHED")                                                     \
    X(OK, "OK")                                                               \
    X(RESET, "RESET")                                                         \
    X(CRLF, "")

typedef enum proto_reply {
#define PROTO_REPLY_ENUM_(e, s) PROTO_REPLY_##e,
    PROTO_REPLY_TABLE(PROTO_REPLY_ENUM_)
#undef PROTO_REPLY_ENUM_
    PROTO_REPLY_COUNT
} proto_reply_t;

/*
 * proto_reply_line - the fixed line @r with its "\r\n" ("\r\n" alone for
 * PROTO_REPLY_CRLF, the terminator after a value block).  *out_len (if
 * not NULL) gets its length.  Ownership: static, ready for an iovec.
 */
const char *proto_reply_line(proto_reply_t r, size_t *out_len);

/*
 * Every composer below writes into @buf (capacity @cap) and returns the
 * number of bytes written, or 0 if @cap is too small (nothing useful is
 * written then).  No allocation; no NUL terminator is added.
 */

/*
 * proto_compose_value - "VALUE <key> <flags> <bytes>[ <cas>]\r\n", the
 * header of one get hit; the value itself and PROTO_REPLY_CRLF follow as
 * separate iovecs.  @with_cas for gets/gats.  PROTO_VALUE_LINE_MAX
 * always suffices for keys up to PROTO_KEY_MAX.
 */
size_t proto_compose_value(char *buf, size_t cap, const char *key,
                           size_t nkey, uint32_t flags, size_t nbytes,
                           bool with_cas, uint64_t cas);

/* proto_compose_u64 - "<n>\r\n" (incr/decr results). */
size_t proto_compose_u64(char *buf, size_t cap, uint64_t n);

/*
 * proto_compose_line - "<prefix> <msg>\r\n", or "<prefix>\r\n" when @msg
 * is NULL or empty: for "VERSION 1.6.18", "SERVER_ERROR <text>",
 * "CLIENT_ERROR <text>" and the like.  Both strings are NUL-terminated.
 */
size_t proto_compose_line(char *buf, size_t cap, const char *prefix,
                          const char *msg);

/* proto_compose_stat - "STAT <name> <value>\r\n". */
size_t proto_compose_stat(char *buf, size_t cap, const char *name,
                          const char *value);

/* Meta return codes: X(ENUM, "CD"). */
#define PROTO_META_CODE_TABLE(X)                                              \
    X(HD, "HD")                                                               \
    X(VA, "VA")                                                               \
    X(EN, "EN")                                                               \
    X(NF, "NF")                                                               \
    X(NS, "NS")                                                               \
    X(EX, "EX")                                                               \
    X(MN, "MN")

typedef enum proto_meta_code {
#define PROTO_META_CODE_ENUM_(e, s) PROTO_META_##e,
    PROTO_META_CODE_TABLE(PROTO_META_CODE_ENUM_)
#undef PROTO_META_CODE_ENUM_
    PROTO_META_CODE_COUNT
} proto_meta_code_t;

/*
 * proto_meta_quiet - true when meta flag q suppresses a reply with @code
 * to @cmd, as memcached does: mg hides EN; ms, md and ma hide HD (and ma
 * its VA).  Other codes and all errors are always sent.
 */
bool proto_meta_quiet(const struct proto_cmd *cmd, proto_meta_code_t code);

/*
 * What exec knows about the item, for the return flags.  @have holds
 * PROTO_MF() bits of the values that are valid: a return flag requested
 * but absent from @have is left out, which is how memcached answers a
 * miss (only O and k come back).
 */
struct proto_meta_item {
    uint64_t have;       /* PROTO_MF('c') | PROTO_MF('f') | ... */
    uint64_t cas;        /* c */
    uint32_t flags;      /* f */
    bool fetched;        /* h: fetched before this request */
    uint64_t last_access; /* l: seconds since last access */
    uint64_t size;       /* s: value length */
    int64_t ttl;         /* t: remaining seconds, -1 for none */
    const char *key;     /* k: the item's key; NULL = the request's */
    size_t nkey;
    bool key_binary;     /* k: the item's key was stored with b */
    bool stale;          /* X: the item is stale */
    bool token_sent;     /* Z: a win was already handed out */
    bool won;            /* W: this client won the recache */
};

/*
 * proto_compose_meta - a meta header line: "<CD>[ <vlen>]<flags>\r\n".
 *
 * @code   HD, VA (then @vlen is the value length), EN, NF, NS, EX, MN.
 * @cmd    the request: its flags are echoed in request order.  For each:
 *         O -> " O<opaque>" always; k -> " k<key>" always (base64 and
 *         followed by " b" when the key is binary: @item->key_binary,
 *         or the request's b when @item is NULL or @item->key is NULL);
 *         c f h l s t -> their value when @item->have has the bit.
 *         Then " Z", " X", " W" as @item says, in that order.
 * @item   may be NULL (nothing but O and k).
 *
 * PROTO_META_LINE_MAX always suffices.  The value block of a VA reply and
 * PROTO_REPLY_CRLF follow as separate iovecs.
 */
size_t proto_compose_meta(char *buf, size_t cap, proto_meta_code_t code,
                          size_t vlen, const struct proto_cmd *cmd,
                          const struct proto_meta_item *item);

/* What "me" shows of an item. */
struct proto_me_info {
    int64_t exp;        /* memcached prints -1 for none, else
                         * now - exptime (negative while alive) */
    uint64_t la;        /* seconds since last access */
    uint64_t cas;
    bool fetched;
    unsigned cls;       /* slab class (Corral: a size class or 1) */
    uint64_t size;      /* total item size */
};

/*
 * proto_compose_me - "ME <key> exp=.. la=.. cas=.. fetch=yes|no cls=..
 * size=..\r\n".  @key is base64-encoded when @key_binary.  A miss is
 * proto_compose_meta(EN).  PROTO_META_LINE_MAX always suffices.
 */
size_t proto_compose_me(char *buf, size_t cap, const char *key,
                        size_t nkey, bool key_binary,
                        const struct proto_me_info *info);

/* ------------------------------------------------------------------ */
/* Base64 (meta flag b)                                               */

/*
 * proto_base64_decode - decode @n bytes at @src into @dst (capacity
 * @cap) the way memcached does: characters outside the alphabet are
 * skipped, the rest must come in groups of four, and decoding stops
 * after the first group with '=' padding.  Returns the decoded length, or
 * 0 on error (nothing valid, a partial group, bad padding, or @cap below
 * 3 bytes per group of four, padding included: a key of n <= 250 bytes
 * always fits PROTO_KEY_MAX).
 */
size_t proto_base64_decode(const char *src, size_t n, char *dst, size_t cap);

/*
 * proto_base64_encode - standard base64 with padding, no line breaks.
 * Returns the encoded length ((n + 2) / 3 * 4), or 0 if @cap is short.
 */
size_t proto_base64_encode(const char *src, size_t n, char *dst, size_t cap);

/* ------------------------------------------------------------------ */
/* Corral's extensions (ext.c)                                        */

/*
 * Tags on stores.  Every extension leaves memcached's commands as they
 * are: tags travel in commands memcached does not have (tset, tadd,
 * treplace, tcas), in a meta flag memcached 1.6 does not use (ms's G), or
 * in the key itself when the server is told to read them there
 * (proto_key_tags()).
 *
 *   tset <key> <flags> <exptime> <bytes> <tags> [noreply]
 *   tadd / treplace: the same.
 *   tcas <key> <flags> <exptime> <bytes> <cas unique> <tags> [noreply]
 *   ms <key> <datalen> G<tags> <flags>*
 *
 * <tags> is a comma-separated list of 1..PROTO_TAGS_MAX names, each
 * 1..PROTO_TAG_MAX bytes, none of them a control character, a space or
 * a comma.  The replies are those of set, add, replace, cas and ms.
 * Errors: a bad list is PROTO_ERR_TAGS; with a valid <bytes> the data
 * block is swallowed (unlike memcached's classic commands, whose bad
 * lines leave it to be read as commands).
 *
 * Invalidation commands, both answered "INVALIDATED" (noreply: nothing):
 *   invalidate_tag <tag> [noreply]
 *   invalidate_prefix <prefix> [noreply]     (1..PROTO_KEY_MAX bytes)
 * A malformed line is PROTO_ERR_ERROR (word count) or PROTO_ERR_BAD_FORMAT.
 *
 * watch invalidations [prefix=P]... [tag=T]... [origin=local]
 *       [since=SEQ [node=ID]] [heartbeat=S]
 * P and T are percent-encoded as on the stream (proto_uri_encode()); SEQ
 * is decimal, ID 1..16 hex digits, S seconds (1..3600) between ping lines
 * on a stream that has nothing else to send.  Any other word, or 22 words or more
 * after "watch" (memcached's tokenizer would drop the rest), is
 * PROTO_ERR_WATCH_FILTER; "invalidations" with another stream name is
 * PROTO_ERR_WATCH_MIXED.  The stream itself: proto_compose_watch().
 */
#define PROTO_TAGS_MAX 8
#define PROTO_TAG_MAX 250

/* The reply to invalidate_tag and invalidate_prefix, with its "\r\n". */
#define PROTO_INVALIDATED_LINE "INVALIDATED\r\n"

/*
 * proto_tags_begin - iterate over cmd->tags with proto_tag_next().
 * proto_tags_list_begin - over any comma-separated list.
 */
void proto_tags_begin(struct proto_iter *it, const struct proto_cmd *cmd);
void proto_tags_list_begin(struct proto_iter *it, const char *list,
                           size_t len);
bool proto_tag_next(struct proto_iter *it, const char **out_tag,
                    size_t *out_len);

/*
 * proto_tags_valid - is @list (@len bytes) a valid tag list?  @out_n
 * (may be NULL) gets the number of tags.
 */
bool proto_tags_valid(const char *list, size_t len, unsigned *out_n);

/*
 * proto_key_tags - the tags a key names when the server reads tags from
 * keys: the bytes after the last @sep of @key, when they form a valid tag
 * list and the name before them is not empty ("page:1#user:7,site" with
 * '#' names user:7 and site).  The key itself is unchanged.  Returns the
 * number of tags (0: none), with *out_list / *out_len pointing into
 * @key.
 */
unsigned proto_key_tags(const char *key, size_t nkey, char sep,
                        const char **out_list, size_t *out_len);

/* Filters of "watch invalidations", as proto_watch_filter_next() reads
 * them from cmd->args. */
typedef enum proto_watch_filter {
    PROTO_WF_PREFIX = 1, /* prefix=P: value percent-decoded */
    PROTO_WF_TAG,        /* tag=T: value percent-decoded */
    PROTO_WF_LOCAL       /* origin=local: events of this node only */
} proto_watch_filter_t;

/*
 * proto_watch_filter_next - the next prefix, tag or origin filter of a
 * parsed "watch invalidations" (start with proto_args_begin()).  The
 * value is decoded into @buf (capacity @cap, PROTO_KEY_MAX suffices).
 * Words that are not filters (the stream name, since, node) are skipped.
 * Returns false at the end.
 */
bool proto_watch_filter_next(struct proto_iter *it,
                             proto_watch_filter_t *out_kind, char *buf,
                             size_t cap, size_t *out_len);

/*
 * URI encoding, as memcached's watchers print keys: letters, digits and
 * "-._~" stand for themselves, every other byte is "%XX" (upper case).
 * proto_uri_encode returns the encoded length, or 0 if @cap is short
 * (3 * n always suffices).  proto_uri_decode accepts either case, returns
 * the decoded length, or -1 for a malformed escape or a short @cap.
 */
size_t proto_uri_encode(const char *src, size_t n, char *dst, size_t cap);
long proto_uri_decode(const char *src, size_t n, char *dst, size_t cap);

/*
 * The invalidation stream.  After "watch invalidations" is answered OK,
 * the connection receives one line per event, memcached-style key=value
 * pairs ending in "\n" as memcached's watch lines do:
 *
 *   ts=<sec.usec> type=sync node=<id> next=<seq> [at=<unix time>]  first
 *   ts=<sec.usec> seq=<n> type=delete key=<k> cas=<c> origin=<id>
 *   ts=<sec.usec> seq=<n> type=overwrite key=<k> cas=<c> origin=<id>
 *   ts=<sec.usec> seq=<n> type=stale key=<k> cas=<c> origin=<id>
 *   ts=<sec.usec> seq=<n> type=tag tag=<t> origin=<id>
 *   ts=<sec.usec> seq=<n> type=prefix prefix=<p> origin=<id>
 *   ts=<sec.usec> seq=<n> type=flush at=<unix time, 0 now> origin=<id>
 *   ts=<sec.usec> type=gap missed=<seq> next=<seq>     flush everything
 *   ts=<sec.usec> type=lagged next=<seq>               last line: closed
 *   ts=<sec.usec> type=shutdown next=<seq>             last line: closed
 *   ts=<sec.usec> type=ping next=<seq>                 heartbeat=S only
 *
 * Keys, tags and prefixes are URI-encoded; ids are 16 hex digits; seq
 * numbers grow by one per event of the server (filters and origin=local
 * skip some).  "next" is the seq of the first event not yet sent: a
 * watcher that reconnects with since=<next> node=<id> misses nothing, or
 * is told "gap".
 */
#define PROTO_WATCH_EVENT_TABLE(X)                                            \
    X(DELETE, "delete")                                                       \
    X(OVERWRITE, "overwrite")                                                 \
    X(STALE, "stale")                                                         \
    X(TAG, "tag")                                                             \
    X(PREFIX, "prefix")                                                       \
    X(FLUSH, "flush")                                                         \
    X(SYNC, "sync")                                                           \
    X(GAP, "gap")                                                             \
    X(LAGGED, "lagged")                                                       \
    X(SHUTDOWN, "shutdown")                                                   \
    X(PING, "ping")

typedef enum proto_wev {
    PROTO_WEV_NONE = 0, /* a line of a type this library does not know */
#define PROTO_WEV_ENUM_(e, s) PROTO_WEV_##e,
    PROTO_WATCH_EVENT_TABLE(PROTO_WEV_ENUM_)
#undef PROTO_WEV_ENUM_
    PROTO_WEV_COUNT
} proto_wev_t;

/* A line of the stream, composed or parsed. */
struct proto_watch_event {
    proto_wev_t type;
    uint64_t ts_us;     /* microseconds since the Unix epoch */
    uint64_t seq;       /* events: the event; gap: the first missed */
    uint64_t next;      /* sync, gap, lagged, shutdown */
    uint64_t cas;       /* delete, overwrite, stale */
    uint64_t origin;    /* events: the node that caused it */
    uint64_t node;      /* sync: the server's node id */
    int64_t at;         /* flush: Unix time it takes effect; 0 now */
    const char *name;   /* key, tag or prefix (raw bytes, not encoded) */
    size_t len;
};

/* The longest line proto_compose_watch() writes (a 250-byte key encoded
 * three bytes per byte, and every number at its widest). */
#define PROTO_WATCH_LINE_MAX 1024

/* proto_wev_name - "delete", ...; "" for NONE or unknown. */
const char *proto_wev_name(proto_wev_t type);

/*
 * proto_compose_watch - one stream line for @ev, "\n" included.
 * Returns its length, or 0 if @cap is short (PROTO_WATCH_LINE_MAX
 * always suffices).
 */
size_t proto_compose_watch(char *buf, size_t cap,
                           const struct proto_watch_event *ev);

/*
 * proto_parse_watch_line - read one stream line from @buf (@len bytes).
 *
 * Returns PROTO_OK with *out_consumed the line's size ("\n" included),
 * PROTO_AGAIN without a whole line (nothing consumed; a line longer than
 * PROTO_WATCH_LINE_MAX is PROTO_ECLOSE), or PROTO_EINVAL for a line that
 * is not a stream line (consumed all the same).  A line of unknown type
 * is PROTO_OK with type PROTO_WEV_NONE; unknown fields are ignored.  The
 * name is decoded into @namebuf (capacity @namecap; PROTO_KEY_MAX
 * suffices) and ev->name points there.  "OK\r\n" (the answer to watch)
 * parses as PROTO_EINVAL: callers read it first.
 */
proto_status_t proto_parse_watch_line(const char *buf, size_t len,
                                      struct proto_watch_event *ev,
                                      char *namebuf, size_t namecap,
                                      size_t *out_consumed);

#ifdef __cplusplus
}
#endif

#endif /* CORRAL_PROTO_H */
