/*
 * exec.c - the one file that joins the protocol library (proto.h) to the
 * engine (corral.h): parse a connection's buffered requests, run each
 * against the cache, and queue memcached 1.6's reply for it.
 *
 * Per request:
 *
 *   proto_parse() ──OK──► exec_<command>() ──► corral_*() ──► status
 *        │                                                      │
 *        ├─EINVAL──► error line (unless noreply) + swallow      ▼
 *        ├─AGAIN───► stop: wait for more bytes         reply composed into
 *        └─ECLOSE──► stop: close after the replies     the connection's
 *                                                      output (conn_out_*)
 *
 * Replies are composed straight into the connection's output arena
 * (conn_out_reserve/commit); a hit's value goes out by reference to the
 * pinned item (conn_out_value), released once written.
 *
 * Where memcached's answer depends on more than one engine call can say,
 * the emulation is spelled out at the function (meta flag order, C0 on
 * md).  Every reply string comes from proto.h's tables.
 *
 * Threads: runs on the connection's worker thread; the engine is
 * thread-safe, and the server-wide state it reads (settings, counters)
 * is read-only or atomic (server.h).
 */
#include "exec.h"

#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <ev.h>

#include <corral.h>
#include <proto.h>

#include "auth.h"
#include "conn.h"
#include "hotkeys.h"
#include "leases.h"
#include "listener.h"
#include "log.h"
#include "logstream.h"
#include "peer.h"
#include "server.h"
#include "tls.h"
#include "watch.h"
#include "worker.h"

_Static_assert(PROTO_TAGS_MAX == CORRAL_TAGS_MAX &&
                   PROTO_TAG_MAX == CORRAL_TAG_MAX,
               "the protocol's tag limits are the engine's");

/* The version memcached clients see: the protocol level first, so that
 * clients which test the version for meta command support keep working,
 * then what actually answers. */
#define EXEC_VERSION "1.6.18-corral-" PACKAGE_VERSION

/* Descriptors reserved besides connections (stats: reserved_fds). */
#define EXEC_RESERVED_FDS 32

_Static_assert(PROTO_CMD_COUNT <= SERVER_CMD_SLOTS,
               "server_cmdstats has a slot per protocol command");

struct exec_ctx {
    struct conn *c;
    struct server *srv;
    corral_t *cache;
    const struct settings *st;
};

/* ---------------------------------------------------------------------- */
/* Output helpers                                                         */

static void
out_bytes(struct exec_ctx *x, const char *p, size_t n)
{
    conn_out_copy(x->c, p, n);
}

static void
out_reply(struct exec_ctx *x, proto_reply_t r)
{
    size_t n;
    const char *p = proto_reply_line(r, &n);
    out_bytes(x, p, n);
}

static void
out_err(struct exec_ctx *x, proto_err_t e)
{
    size_t n;
    const char *p = proto_err_line(e, &n);
    out_bytes(x, p, n);
}

/* A classic command's reply: skipped under noreply, as memcached's
 * out_string() does for every reply, errors included. */
static void
classic_reply(struct exec_ctx *x, const struct proto_cmd *cmd,
              proto_reply_t r)
{
    if (!cmd->noreply) {
        out_reply(x, r);
    }
}

static void
classic_err(struct exec_ctx *x, const struct proto_cmd *cmd, proto_err_t e)
{
    if (!cmd->noreply) {
        out_err(x, e);
    }
}

/* Out-of-memory errors are always sent (memcached's out_of_memory()). */
static void
nomem_err(struct exec_ctx *x, proto_err_t e)
{
    out_err(x, e);
}

/* Reserve @max bytes, let @n of them be written, commit. */
#define OUT_COMPOSE(x, max, expr_using_buf)                                  \
    do {                                                                      \
        char *buf_ = conn_out_reserve((x)->c, (max));                         \
        if (buf_ != NULL) {                                                   \
            size_t n_ = (expr_using_buf);                                     \
            conn_out_commit((x)->c, n_);                                      \
        }                                                                     \
    } while (0)

static void
out_stat(struct exec_ctx *x, const char *name, const char *value)
{
    size_t max = strlen(name) + strlen(value) + 16;
    OUT_COMPOSE(x, max, proto_compose_stat(buf_, max, name, value));
}

static void
out_stat_u64(struct exec_ctx *x, const char *name, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%" PRIu64, v);
    out_stat(x, name, num);
}

/* A "STAT name value" line from another module (peers_report). */
static void
exec_stat_cb(const char *name, const char *value, void *ud)
{
    out_stat(ud, name, value);
}

/* ---------------------------------------------------------------------- */
/* Log streams ("watch fetchers", "watch mutations") and hot keys         */

static int64_t mc_ttl(const struct exec_ctx *x, int64_t exptime);

/* What the lookup memcached makes before a change found there. */
struct exec_seen {
    bool found;
    size_t size;      /* value bytes */
    int64_t ttl;      /* seconds left; -1 = never expires */
};

static bool
exec_logging(const struct exec_ctx *x, unsigned streams)
{
    return logstream_wants(x->srv->logs, streams);
}

/* A lookup's fetchers line; @item is what it found, or NULL, and @why
 * the engine's CORRAL_RES_MISS_* flag for a miss (0 if not known). */
static void
log_get(struct exec_ctx *x, const void *key, size_t nkey,
        const corral_item_t *item, unsigned why)
{
    enum logstream_fetch st = LOGSTREAM_FETCH_MISS;
    size_t n = 0;

    if (!exec_logging(x, LOGSTREAM_FETCHERS)) {
        return;
    }
    if (item != NULL) {
        corral_item_value(item, &n);
        st = LOGSTREAM_FETCH_FOUND;
    } else if (why & CORRAL_RES_MISS_EXPIRED) {
        st = LOGSTREAM_FETCH_EXPIRED;
    } else if (why & CORRAL_RES_MISS_FLUSHED) {
        st = LOGSTREAM_FETCH_FLUSHED;
    }
    logstream_item_get(x->srv->logs, conn_fd(x->c), key, nkey, st, n);
}

/* Nothing seen: for a line logged without a lookup. */
static void
log_peek_none(struct exec_seen *seen)
{
    memset(seen, 0, sizeof(*seen));
    seen->ttl = -1;
}

/*
 * memcached looks a key up before it stores, deletes, touches or counts,
 * and its fetchers stream shows that lookup.  While fetchers or mutations
 * are watched, peek (not an access), log the lookup, and say what was
 * there (a store's line needs it).
 */
static void
log_peek(struct exec_ctx *x, const char *key, size_t nkey,
         struct exec_seen *seen)
{
    corral_get_opts_t o = {0};
    corral_get_result_t res;
    corral_item_t *item = NULL;

    log_peek_none(seen);
    if (!exec_logging(x, LOGSTREAM_FETCHERS | LOGSTREAM_MUTATIONS)) {
        return;
    }
    o.flags = CORRAL_GET_NOBUMP;
    if (corral_get_ex(x->cache, key, nkey, &o, &item, &res) == CORRAL_OK) {
        seen->found = true;
        corral_item_value(item, &seen->size);
        seen->ttl = corral_item_ttl(x->cache, item);
    }
    log_get(x, key, nkey, item, res.flags);
    corral_item_release(item);
}

/*
 * A store's mutations line, as memcached writes it: the TTL and size of
 * the item it stored (an append or prepend keeps the old expiry and
 * stores the joined value), or of the one it would have stored.
 */
static void
log_store(struct exec_ctx *x, const char *key, size_t nkey,
          corral_mode_t mode, corral_status_t st, int64_t exptime,
          size_t nvalue, const struct exec_seen *seen)
{
    enum logstream_status status;
    enum logstream_cmd lc;
    uint32_t ttl = exptime == 0 ? 0 : (uint32_t)mc_ttl(x, exptime);
    size_t size = nvalue;

    if (!exec_logging(x, LOGSTREAM_MUTATIONS)) {
        return;
    }
    switch (st) {
    case CORRAL_OK:
        status = LOGSTREAM_STORED;
        break;
    case CORRAL_EEXISTS:
        status = LOGSTREAM_EXISTS;
        break;
    case CORRAL_ENOTFOUND:
        status = LOGSTREAM_NOT_FOUND;
        break;
    case CORRAL_ETOOBIG:
        status = LOGSTREAM_TOO_LARGE;
        break;
    case CORRAL_ENOMEM:
        status = LOGSTREAM_NO_MEMORY;
        break;
    case CORRAL_ENOTSTORED:
    default:
        status = LOGSTREAM_NOT_STORED;
        break;
    }
    switch (mode) {
    case CORRAL_ADD:
        lc = LOGSTREAM_CMD_ADD;
        break;
    case CORRAL_REPLACE:
        lc = LOGSTREAM_CMD_REPLACE;
        break;
    case CORRAL_APPEND:
        lc = LOGSTREAM_CMD_APPEND;
        break;
    case CORRAL_PREPEND:
        lc = LOGSTREAM_CMD_PREPEND;
        break;
    case CORRAL_CAS:
        lc = LOGSTREAM_CMD_CAS;
        break;
    case CORRAL_SET:
    default:
        lc = LOGSTREAM_CMD_SET;
        break;
    }
    if (st == CORRAL_OK && (mode == CORRAL_APPEND || mode == CORRAL_PREPEND)) {
        size = seen->size + nvalue;
        ttl = seen->ttl < 0 ? 0 : (uint32_t)seen->ttl;
    }
    if (status == LOGSTREAM_TOO_LARGE || status == LOGSTREAM_NO_MEMORY) {
        /* memcached logs a refused item as it never allocated it. */
        ttl = 0;
        size = 0;
    }
    logstream_item_store(x->srv->logs, conn_fd(x->c), key, nkey, status, lc,
                         ttl, status == LOGSTREAM_TOO_LARGE ? 0 : 1, size);
}

/* A keyed request, for "stats hotkeys" (sampled there). */
static void
exec_hot(struct exec_ctx *x, const char *key, size_t nkey)
{
    if (x->srv->hot != NULL) {
        hotkeys_note(x->srv->hot, conn_worker(x->c)->id, key, nkey);
    }
}

/* ---------------------------------------------------------------------- */
/* Retrieval: get gets gat gats bget                                      */

/* One VALUE reply (the item's pin passes to the connection). */
static void
out_value_item(struct exec_ctx *x, const char *k, size_t nk,
               corral_item_t *item, bool with_cas)
{
    size_t crlf_len;
    const char *crlf = proto_reply_line(PROTO_REPLY_CRLF, &crlf_len);
    const void *val;
    size_t nval;

    val = corral_item_value(item, &nval);
    OUT_COMPOSE(x, PROTO_VALUE_LINE_MAX,
                proto_compose_value(buf_, PROTO_VALUE_LINE_MAX, k, nk,
                                    corral_item_flags(item), nval, with_cas,
                                    corral_item_cas(item)));
    conn_out_value(x->c, item, val, nval);
    out_bytes(x, crlf, crlf_len);
}

/* Keys per corral_get_multi call: the engine overlaps their misses. */
#define EXEC_GET_BATCH 32

static void
exec_get(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    bool touch = cmd->type == PROTO_CMD_GAT || cmd->type == PROTO_CMD_GATS;
    bool with_cas = cmd->type == PROTO_CMD_GETS ||
                    cmd->type == PROTO_CMD_GATS;
    struct proto_iter it;
    const char *k;
    size_t nk;

    proto_keys_begin(&it, cmd);
    if (touch) {
        struct conn_mark start;

        conn_out_mark(x->c, &start);
        while (proto_iter_next(&it, &k, &nk)) {
            corral_item_t *item = NULL;
            corral_status_t st;

            exec_hot(x, k, nk);
            st = corral_gat(x->cache, k, nk, cmd->exptime, &item);
            log_get(x, k, nk, st == CORRAL_OK ? item : NULL, 0);
            if (st == CORRAL_ENOMEM) {
                /* memcached drops what it had queued for this command
                 * (the touches stay done, as there) */
                conn_out_rewind(x->c, &start);
                nomem_err(x, PROTO_ERR_GET_NOMEM);
                return;
            }
            if (st == CORRAL_OK) {
                out_value_item(x, k, nk, item, with_cas);
            }
        }
        out_reply(x, PROTO_REPLY_END);
        return;
    }
    for (;;) {
        const void *keys[EXEC_GET_BATCH];
        size_t nkeys[EXEC_GET_BATCH];
        corral_item_t *items[EXEC_GET_BATCH];
        unsigned why[EXEC_GET_BATCH];
        bool logging;
        size_t n = 0;

        while (n < EXEC_GET_BATCH && proto_iter_next(&it, &k, &nk)) {
            exec_hot(x, k, nk);
            keys[n] = k;
            nkeys[n++] = nk;
        }
        if (n == 0) {
            break;
        }
        /* a lookup refused for memory (pins saturated and no copy) is
         * answered as a miss here; why a key missed is asked for only
         * while fetchers are watched */
        logging = exec_logging(x, LOGSTREAM_FETCHERS);
        corral_get_multi_ex(x->cache, n, keys, nkeys, items,
                            logging ? why : NULL);
        for (size_t i = 0; i < n; i++) {
            if (logging) {
                log_get(x, keys[i], nkeys[i], items[i], why[i]);
            }
            if (items[i] != NULL) {
                out_value_item(x, keys[i], nkeys[i], items[i], with_cas);
            }
        }
    }
    out_reply(x, PROTO_REPLY_END);
}

/*
 * A get-family line with a key over 250 bytes: memcached has already
 * looked up (gat: touched) the keys before it when it finds out, then
 * drops the replies it queued and sends the error.  The lookups leave
 * their marks (fetched bits, access times, TTLs), so they happen here too.
 */
static void
exec_get_refused(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    bool touch = cmd->type == PROTO_CMD_GAT || cmd->type == PROTO_CMD_GATS;
    struct proto_iter it;
    const char *k;
    size_t nk;

    proto_keys_begin(&it, cmd);
    while (proto_iter_next(&it, &k, &nk)) {
        corral_item_t *item = NULL;
        if ((touch ? corral_gat(x->cache, k, nk, cmd->exptime, &item)
                   : corral_get(x->cache, k, nk, &item)) == CORRAL_OK) {
            corral_item_release(item);
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Storage                                                                */

static corral_mode_t
exec_mode(proto_store_mode_t m)
{
    switch (m) {
    case PROTO_STORE_ADD:
        return CORRAL_ADD;
    case PROTO_STORE_REPLACE:
        return CORRAL_REPLACE;
    case PROTO_STORE_APPEND:
        return CORRAL_APPEND;
    case PROTO_STORE_PREPEND:
        return CORRAL_PREPEND;
    case PROTO_STORE_CAS:
        return CORRAL_CAS;
    case PROTO_STORE_SET:
    default:
        return CORRAL_SET;
    }
}

/*
 * The tags of a store: those of the request (tset & co, ms G) and, when
 * the server reads tags from keys (--key-tags), those the key names;
 * duplicates once.  NUL-terminated copies in @t, pointers in @out.
 * Returns the count, or -1 when there are more than CORRAL_TAGS_MAX.
 */
struct exec_tags {
    char name[CORRAL_TAGS_MAX][CORRAL_TAG_MAX + 1];
    const char *ptr[CORRAL_TAGS_MAX];
};

static int
exec_tags_add(struct exec_tags *t, int n, const char *list, size_t len)
{
    struct proto_iter it;
    const char *tag;
    size_t tn;

    proto_tags_list_begin(&it, list, len);
    while (proto_tag_next(&it, &tag, &tn)) {
        bool dup = false;

        for (int i = 0; i < n && !dup; i++) {
            dup = strlen(t->ptr[i]) == tn && memcmp(t->ptr[i], tag, tn) == 0;
        }
        if (dup) {
            continue;
        }
        if (n == CORRAL_TAGS_MAX) {
            return -1;
        }
        memcpy(t->name[n], tag, tn);
        t->name[n][tn] = '\0';
        t->ptr[n] = t->name[n];
        n++;
    }
    return n;
}

static int
exec_tags(struct exec_ctx *x, const struct proto_cmd *cmd,
          struct exec_tags *t)
{
    int n = 0;
    const char *list;
    size_t len;

    if (cmd->ntags > 0) {
        n = exec_tags_add(t, n, cmd->tags, cmd->tags_len);
    }
    if (n >= 0 && x->st->key_tags != 0 &&
        proto_key_tags(cmd->key, cmd->nkey, x->st->key_tags, &list,
                       &len) > 0) {
        n = exec_tags_add(t, n, list, len);
    }
    if (n > 0) {
        srv_counter_add(&conn_worker(x->c)->counters.cmd_tagged_store, 1);
    }
    return n;
}

/*
 * memcached's limit on an item's size: its header (56 bytes with the CAS),
 * the key and a terminator, the value and its "\r\n", and 4 bytes of
 * client flags unless they are 0, against -I.  The engine's own header is
 * smaller, so without this a value up to 35 bytes over memcached's limit
 * would be stored.
 */
#define MC_ITEM_HEADER 59u

/*
 * Store cmd's value as memcached would: refused by memcached's item size
 * rule (a set without a CAS also drops the old value, as the engine does
 * for a value it refuses), and an append or prepend whose data fits but
 * whose result would not is NOT_STORED, the old value kept.
 */
static corral_status_t
exec_store_value(struct exec_ctx *x, const struct proto_cmd *cmd,
                 const corral_store_opts_t *o, uint64_t *out_cas)
{
    corral_status_t st;

    if (cmd->nvalue + cmd->nkey + MC_ITEM_HEADER +
            (o->flags != 0 ? 4u : 0u) >
        x->st->item_size_max) {
        if (o->mode == CORRAL_SET && o->cas == 0) {
            corral_delete(x->cache, cmd->key, cmd->nkey);
        }
        return CORRAL_ETOOBIG;
    }
    st = corral_store(x->cache, cmd->key, cmd->nkey, cmd->value,
                      cmd->nvalue, o, out_cas);
    if (st == CORRAL_ETOOBIG &&
        (o->mode == CORRAL_APPEND || o->mode == CORRAL_PREPEND)) {
        st = CORRAL_ENOTSTORED;
    }
    return st;
}

static void
exec_store(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    corral_store_opts_t o = {0};
    struct exec_seen seen;
    corral_status_t st;
    struct exec_tags tags;
    int ntags = exec_tags(x, cmd, &tags);

    if (ntags < 0) {
        classic_err(x, cmd, PROTO_ERR_TAGS);
        return;
    }
    o.mode = exec_mode(cmd->store_mode);
    o.flags = cmd->flags;
    o.exptime = cmd->exptime;
    o.cas = cmd->store_mode == PROTO_STORE_CAS ? cmd->cas : 0;
    log_peek(x, cmd->key, cmd->nkey, &seen);
    o.tags = ntags > 0 ? tags.ptr : NULL;
    o.ntags = (size_t)ntags;
    st = exec_store_value(x, cmd, &o, NULL);
    log_store(x, cmd->key, cmd->nkey, o.mode, st, o.exptime, cmd->nvalue,
              &seen);
    switch (st) {
    case CORRAL_OK:
        leases_done(x->srv->leases, cmd->key, cmd->nkey);
        classic_reply(x, cmd, PROTO_REPLY_STORED);
        break;
    case CORRAL_ENOTSTORED:
        classic_reply(x, cmd, PROTO_REPLY_NOT_STORED);
        break;
    case CORRAL_EEXISTS:
        classic_reply(x, cmd, PROTO_REPLY_EXISTS);
        break;
    case CORRAL_ENOTFOUND:
        classic_reply(x, cmd, PROTO_REPLY_NOT_FOUND);
        break;
    case CORRAL_ETOOBIG:
        /* The engine has dropped the old value of a set already. */
        classic_err(x, cmd, PROTO_ERR_TOO_LARGE);
        break;
    case CORRAL_ENOMEM:
        nomem_err(x, PROTO_ERR_STORE_NOMEM);
        break;
    default:
        classic_err(x, cmd, PROTO_ERR_BAD_FORMAT);
        break;
    }
}

/* ---------------------------------------------------------------------- */
/* delete incr decr touch                                                 */

static void
exec_delete(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    struct exec_seen seen;
    corral_status_t st;

    log_peek(x, cmd->key, cmd->nkey, &seen);
    st = corral_delete(x->cache, cmd->key, cmd->nkey);
    if (st == CORRAL_OK) {
        leases_done(x->srv->leases, cmd->key, cmd->nkey);
    }

    classic_reply(x, cmd, st == CORRAL_OK ? PROTO_REPLY_DELETED
                                          : PROTO_REPLY_NOT_FOUND);
}

static void
exec_arith(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    corral_arith_opts_t o = {0};
    corral_arith_result_t r;
    struct exec_seen seen;
    corral_status_t st;

    o.options = cmd->type == PROTO_CMD_DECR ? CORRAL_ARITH_DECR : 0;
    o.delta = cmd->delta;
    log_peek(x, cmd->key, cmd->nkey, &seen);
    st = corral_arith(x->cache, cmd->key, cmd->nkey, &o, &r);
    switch (st) {
    case CORRAL_OK:
        if (!cmd->noreply) {
            OUT_COMPOSE(x, PROTO_NUM_LINE_MAX,
                        proto_compose_u64(buf_, PROTO_NUM_LINE_MAX,
                                          r.value));
        }
        break;
    case CORRAL_ENOTFOUND:
        classic_reply(x, cmd, PROTO_REPLY_NOT_FOUND);
        break;
    case CORRAL_ENONNUMERIC:
        classic_err(x, cmd, PROTO_ERR_NON_NUMERIC);
        break;
    case CORRAL_ENOMEM:
        nomem_err(x, PROTO_ERR_NOMEM);
        break;
    default:
        classic_err(x, cmd, PROTO_ERR_BAD_FORMAT);
        break;
    }
}

static void
exec_touch(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    struct exec_seen seen;
    corral_status_t st;

    log_peek(x, cmd->key, cmd->nkey, &seen);
    st = corral_touch(x->cache, cmd->key, cmd->nkey, cmd->exptime);

    classic_reply(x, cmd, st == CORRAL_OK ? PROTO_REPLY_TOUCHED
                                          : PROTO_REPLY_NOT_FOUND);
}

/* ---------------------------------------------------------------------- */
/* Meta commands                                                          */

/* Position of flag @f in the request's flag order, or -1. */
static int
meta_pos(const struct proto_cmd *cmd, char f)
{
    for (int i = 0; i < cmd->meta.nflags; i++) {
        if (cmd->meta.order[i] == f) {
            return i;
        }
    }
    return -1;
}

/* Flag @a comes before flag @b (both given). */
static bool
meta_before(const struct proto_cmd *cmd, char a, char b)
{
    int pa = meta_pos(cmd, a), pb = meta_pos(cmd, b);
    return pa >= 0 && pb >= 0 && pa < pb;
}

/* Queue a meta reply line. */
static void
meta_reply_always(struct exec_ctx *x, const struct proto_cmd *cmd,
                  proto_meta_code_t code, size_t vlen,
                  const struct proto_meta_item *mi)
{
    OUT_COMPOSE(x, PROTO_META_LINE_MAX,
                proto_compose_meta(buf_, PROTO_META_LINE_MAX, code, vlen, cmd,
                                   mi));
}

/* Queue a meta reply line unless q hides it. */
static void
meta_reply(struct exec_ctx *x, const struct proto_cmd *cmd,
           proto_meta_code_t code, size_t vlen,
           const struct proto_meta_item *mi)
{
    if (!proto_meta_quiet(cmd, code)) {
        meta_reply_always(x, cmd, code, vlen, mi);
    }
}

/*
 * The TTL memcached reports right after a command set @exptime: -1 for
 * none, the seconds left otherwise.  An exptime already in the past
 * leaves memcached with a negative count printed as unsigned 32-bit, and
 * memcached dates such items to just after its own start (its clock
 * starts 62 seconds before the process does): both are reproduced from
 * this server's start time.
 */
static int64_t
mc_ttl(const struct exec_ctx *x, int64_t exptime)
{
    int64_t now = (int64_t)time(NULL);
    int64_t born = (int64_t)x->srv->started - 62;
    int64_t left;

    if (exptime == 0) {
        return -1;
    }
    if (exptime > 0 && exptime <= CORRAL_RELTIME_MAX) {
        return exptime;
    }
    if (exptime < 0 || exptime <= born) {
        left = born + 1 - now;
    } else {
        left = exptime - now;
    }
    return left >= 0 ? left : (int64_t)(uint32_t)left;
}

/*
 * The TTL a 't' flag reports: memcached applies T (and N, on an item it
 * creates) as it meets them in the request, so 't' shows the expiry in
 * force at its own position.  @before is the TTL before any of them.
 */
static int64_t
meta_ttl_at_t(const struct exec_ctx *x, const struct proto_cmd *cmd,
              bool created, int64_t before)
{
    const struct proto_meta *m = &cmd->meta;
    int64_t cur = created ? -1 : before;

    for (int i = 0; i < m->nflags && m->order[i] != 't'; i++) {
        if (m->order[i] == 'T') {
            cur = mc_ttl(x, m->ttl);
        } else if (m->order[i] == 'N' && created) {
            cur = mc_ttl(x, m->vivify_ttl);
        }
    }
    return cur;
}

/*
 * The expiry an item created by N ends with: memcached creates it
 * without one, then applies N and T as it meets them, up to flag
 * position @limit (where a reply error stops it; nflags otherwise).
 */
static int64_t
meta_vivify_exptime(const struct proto_cmd *cmd, int limit)
{
    const struct proto_meta *m = &cmd->meta;
    int64_t e = 0;

    for (int i = 0; i < m->nflags && i < limit; i++) {
        if (m->order[i] == 'N') {
            e = m->vivify_ttl;
        } else if (m->order[i] == 'T') {
            e = m->ttl;
        }
    }
    return e;
}

/* Flag @f is given before position @limit. */
static bool
meta_met(const struct proto_cmd *cmd, char f, int limit)
{
    int p = meta_pos(cmd, f);
    return p >= 0 && p < limit;
}

/*
 * R's threshold as remaining seconds.  memcached converts R like an
 * exptime and wins when the item expires before that moment: R0 and
 * negative R never win, and a large R is an absolute time.  0 = never.
 */
static int64_t
recache_ttl(const struct proto_cmd *cmd)
{
    int64_t r = cmd->meta.recache_ttl;

    if (r <= 0) {
        return 0;
    }
    if (r <= CORRAL_RELTIME_MAX) {
        return r;
    }
    r -= (int64_t)time(NULL);
    return r > 0 ? r : 0;
}

/* Set a live item's expiry without counting an access. */
static bool
exec_retouch(struct exec_ctx *x, const struct proto_cmd *cmd,
             int64_t exptime, bool recache, corral_get_result_t *out_res)
{
    corral_get_opts_t o = {0};
    corral_item_t *item = NULL;

    o.flags = CORRAL_GET_TOUCH | CORRAL_GET_NOBUMP;
    o.touch_exptime = exptime;
    if (recache) {
        o.recache_ttl = recache_ttl(cmd);
        o.flags |= o.recache_ttl > 0 ? CORRAL_GET_RECACHE : 0;
    }
    if (corral_get_ex(x->cache, cmd->key, cmd->nkey, &o, &item, out_res) !=
        CORRAL_OK) {
        return false;
    }
    corral_item_release(item);
    return true;
}

/* The stampede outcomes of an mg the engine does not count (it counts
 * wins and losses of the recache token: recache_wins, recache_lost,
 * early_wins): stale items seen, stubs created, and W handed out while
 * the key's previous W never saw its store (leases.h). */
static void
exec_count_meta(struct exec_ctx *x, const struct proto_cmd *cmd,
                const struct proto_meta_item *mi, bool created)
{
    struct worker_counters *wc = &conn_worker(x->c)->counters;

    if (mi->won && leases_won(x->srv->leases, cmd->key, cmd->nkey)) {
        srv_counter_add(&wc->meta_lease_timeouts, 1);
    }

    if (mi->stale) {
        srv_counter_add(&wc->meta_stale, 1);
    }
    if (created) {
        srv_counter_add(&wc->meta_vivified, 1);
    }
}

/*
 * mg.  memcached walks the request's flags in order, and T, N and R act
 * as they are met: "t T30" reports the TTL before the touch and "T30 t"
 * after it; R judges the TTL in force at its position; on an item N
 * creates, the later of N and T sets the expiry.  The engine does a
 * lookup in one step, so:
 *   - usually one corral_get_ex() does it all: NOBUMP (u), VIVIFY (N,
 *     with the expiry the item ends with), RECACHE (R) and TOUCH (T);
 *   - when a 't' or an 'R' comes before 'T', the lookup runs without
 *     TOUCH, and a second call applies T without counting an access
 *     (judging an R that comes after T).
 * Corral's A asks the first lookup for an early win (CORRAL_GET_EARLY),
 * wherever A stands among the flags: it judges the TTL that lookup ends
 * with (after T when T is applied in the same call).
 */
static void
exec_mg(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    const struct proto_meta *m = &cmd->meta;
    bool has_t = proto_meta_has(cmd, 'T');
    bool has_r = proto_meta_has(cmd, 'R');
    bool split = has_t && (meta_before(cmd, 't', 'T') ||
                           meta_before(cmd, 'R', 'T'));
    corral_get_opts_t o = {0};
    corral_get_result_t res;
    corral_item_t *item = NULL;
    struct proto_meta_item mi;
    corral_status_t st;
    bool created, won, lost;
    int64_t before;
    const void *val;
    size_t nval;

    if (proto_meta_has(cmd, 'u')) {
        o.flags |= CORRAL_GET_NOBUMP;
    }
    if (proto_meta_has(cmd, 'N')) {
        o.flags |= CORRAL_GET_VIVIFY;
        o.vivify_exptime = meta_vivify_exptime(cmd, m->nflags);
    }
    if (has_r && !(split && meta_before(cmd, 'T', 'R'))) {
        o.recache_ttl = recache_ttl(cmd);
        o.flags |= o.recache_ttl > 0 ? CORRAL_GET_RECACHE : 0;
    }
    if (has_t && !split) {
        o.flags |= CORRAL_GET_TOUCH;
        o.touch_exptime = m->ttl;
    }
    if (proto_meta_has(cmd, 'A')) {
        /* Corral: XFetch on the server (the engine learns each key's
         * delta as the time from a W to the store that follows it) */
        o.flags |= CORRAL_GET_EARLY;
        o.beta = (double)m->early_beta / 1000.0;
    }
    st = corral_get_ex(x->cache, cmd->key, cmd->nkey, &o, &item, &res);
    if (st != CORRAL_OK) {
        log_get(x, cmd->key, cmd->nkey, NULL, res.flags);
        meta_reply(x, cmd, PROTO_META_EN, 0, NULL);
        return;
    }
    created = (res.flags & CORRAL_RES_VIVIFIED) != 0;
    /* memcached's lookup missed an item N then created. */
    log_get(x, cmd->key, cmd->nkey, created ? NULL : item, res.flags);
    won = (res.flags & CORRAL_RES_WIN) != 0;
    lost = (res.flags & CORRAL_RES_LOST) != 0;
    before = corral_item_ttl(x->cache, item);
    if (created && !(o.flags & CORRAL_GET_NOBUMP)) {
        /* memcached counts the access to the item it just created (the
         * fetched bit a later h reports); the engine creates it unread. */
        corral_item_t *again = NULL;
        if (corral_get(x->cache, cmd->key, cmd->nkey, &again) == CORRAL_OK) {
            corral_item_release(again);
        }
    }
    if (split && !created) {
        corral_get_result_t res2;
        bool recache = has_r && meta_before(cmd, 'T', 'R');
        if (exec_retouch(x, cmd, m->ttl, recache, &res2) && !lost &&
            (res2.flags & CORRAL_RES_WIN)) {
            won = true;
        }
    }

    val = corral_item_value(item, &nval);
    memset(&mi, 0, sizeof(mi));
    mi.have = PROTO_MF('c') | PROTO_MF('f') | PROTO_MF('h') | PROTO_MF('l') |
              PROTO_MF('s') | PROTO_MF('t');
    mi.ttl = meta_ttl_at_t(x, cmd, created, before);
    mi.cas = corral_item_cas(item);
    mi.flags = corral_item_flags(item);
    mi.fetched = (res.flags & CORRAL_RES_HIT_BEFORE) != 0;
    mi.last_access = res.last_access > 0 ? (uint64_t)res.last_access : 0;
    mi.size = nval;
    /* memcached prints a hit's key in base64 when the item was stored
     * with b (ms), whatever this request said. */
    mi.key = cmd->key;
    mi.nkey = cmd->nkey;
    mi.key_binary = corral_item_key_binary(item) != 0;
    mi.stale = (res.flags & CORRAL_RES_STALE) != 0;
    mi.token_sent = lost;
    mi.won = won && !lost;
    exec_count_meta(x, cmd, &mi, created);

    if (proto_meta_has(cmd, 'v')) {
        size_t crlf_len;
        const char *crlf = proto_reply_line(PROTO_REPLY_CRLF, &crlf_len);

        meta_reply(x, cmd, PROTO_META_VA, nval, &mi);
        conn_out_value(x->c, item, val, nval);
        out_bytes(x, crlf, crlf_len);
    } else {
        meta_reply(x, cmd, PROTO_META_HD, 0, &mi);
        conn_out_hold(x->c, item);
    }
}

/*
 * mg with an O token too long: memcached finds out while writing the
 * reply, after the lookup (and N's creation of a missing item); the flags
 * before O have acted, those after it have not, no recache token is
 * marked, and the access is not counted when a flag made it defer that.
 */
static void
exec_mg_refused(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    const struct proto_meta *m = &cmd->meta;
    int lim = meta_pos(cmd, 'O');
    corral_get_opts_t o = {0};
    corral_item_t *item = NULL;

    if (proto_meta_has(cmd, 'u') || proto_meta_has(cmd, 'N') ||
        proto_meta_has(cmd, 'T') || proto_meta_has(cmd, 'R') ||
        proto_meta_has(cmd, 'l') || proto_meta_has(cmd, 'h')) {
        o.flags |= CORRAL_GET_NOBUMP;
    }
    if (proto_meta_has(cmd, 'N')) {
        o.flags |= CORRAL_GET_VIVIFY;
        o.vivify_exptime = meta_vivify_exptime(cmd, lim);
    }
    if (meta_met(cmd, 'T', lim)) {
        o.flags |= CORRAL_GET_TOUCH;
        o.touch_exptime = m->ttl;
    }
    if (corral_get_ex(x->cache, cmd->key, cmd->nkey, &o, &item, NULL) ==
        CORRAL_OK) {
        corral_item_release(item);
    }
    out_err(x, PROTO_ERR_META_OPAQUE);
}

/*
 * ms.  A CAS (C) turns set and replace into a CAS store, as in
 * memcached; I with a CAS lets an older CAS store the value as stale.
 * A refused store of any mode drops the key, as memcached does for ms.
 */
static void
exec_ms(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    const struct proto_meta *m = &cmd->meta;
    corral_store_opts_t o = {0};
    struct proto_meta_item mi;
    struct exec_seen seen;
    uint64_t cas = 0;
    corral_status_t st;
    proto_meta_code_t code;
    struct exec_tags tags;
    int ntags = exec_tags(x, cmd, &tags);

    if (ntags < 0) {
        out_err(x, PROTO_ERR_TAGS);
        return;
    }
    o.tags = ntags > 0 ? tags.ptr : NULL;
    o.ntags = (size_t)ntags;
    o.mode = exec_mode(m->store_mode);
    if (m->has_cas) {
        o.cas = m->cas;
        if (o.mode == CORRAL_SET || o.mode == CORRAL_REPLACE) {
            o.mode = CORRAL_CAS;
        }
        if (o.mode == CORRAL_CAS && m->invalidate) {
            o.options |= CORRAL_STORE_INVALIDATE;
        }
    }
    if (m->base64) {
        o.options |= CORRAL_STORE_BINARY_KEY;
    }
    o.flags = m->client_flags;
    o.exptime = proto_meta_has(cmd, 'T') ? m->ttl : 0;
    log_peek(x, cmd->key, cmd->nkey, &seen);
    st = exec_store_value(x, cmd, &o, &cas);
    log_store(x, cmd->key, cmd->nkey, o.mode, st, o.exptime, cmd->nvalue,
              &seen);
    switch (st) {
    case CORRAL_OK:
        leases_done(x->srv->leases, cmd->key, cmd->nkey);
        code = PROTO_META_HD;
        break;
    case CORRAL_ENOTSTORED:
        code = PROTO_META_NS;
        break;
    case CORRAL_EEXISTS:
        code = PROTO_META_EX;
        break;
    case CORRAL_ENOTFOUND:
        code = PROTO_META_NF;
        break;
    case CORRAL_ETOOBIG:
    case CORRAL_ENOMEM:
        if (o.mode != CORRAL_SET) {
            corral_delete(x->cache, cmd->key, cmd->nkey);
        }
        out_err(x, st == CORRAL_ETOOBIG ? PROTO_ERR_TOO_LARGE
                                        : PROTO_ERR_STORE_NOMEM);
        return;
    default:
        out_err(x, PROTO_ERR_BAD_FORMAT);
        return;
    }
    memset(&mi, 0, sizeof(mi));
    mi.have = PROTO_MF('c');
    mi.cas = cas;
    mi.key_binary = m->base64;
    meta_reply(x, cmd, code, 0, &mi);
}

/*
 * md.  memcached compares C even when it is 0 (no item has CAS 0, so C0
 * always mismatches); the engine reads 0 as "no condition", so C0 asks
 * for a CAS no item can have.
 */
static void
exec_md(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    const struct proto_meta *m = &cmd->meta;
    corral_delete_opts_t o = {0};
    struct exec_seen seen;
    corral_status_t st;
    proto_meta_code_t code;

    if (m->has_cas) {
        o.cas = m->cas != 0 ? m->cas : UINT64_MAX;
    }
    if (m->invalidate) {
        o.options |= CORRAL_DELETE_STALE;
        if (proto_meta_has(cmd, 'T')) {
            o.options |= CORRAL_DELETE_TOUCH;
            o.exptime = m->ttl;
        }
    }
    log_peek(x, cmd->key, cmd->nkey, &seen);
    st = corral_delete_ex(x->cache, cmd->key, cmd->nkey, &o);
    switch (st) {
    case CORRAL_OK:
        leases_done(x->srv->leases, cmd->key, cmd->nkey);
        code = PROTO_META_HD;
        break;
    case CORRAL_EEXISTS:
        code = PROTO_META_EX;
        break;
    case CORRAL_ENOTFOUND:
    default:
        code = PROTO_META_NF;
        break;
    }
    meta_reply(x, cmd, code, 0, NULL);
}

/*
 * memcached refuses to count on an empty value before it compares the
 * CAS (the CAS, then the digits, for the rest).  The engine compares the
 * CAS first, so a mismatch looks at the value's length, without counting
 * an access.
 */
static corral_status_t
exec_cas_or_empty(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    corral_get_opts_t o = {0};
    corral_item_t *item = NULL;
    corral_status_t st = CORRAL_EEXISTS;
    size_t nval = 1;

    o.flags = CORRAL_GET_NOBUMP;
    if (corral_get_ex(x->cache, cmd->key, cmd->nkey, &o, &item, NULL) ==
        CORRAL_OK) {
        corral_item_value(item, &nval);
        corral_item_release(item);
    }
    return nval == 0 ? CORRAL_ENONNUMERIC : st;
}

/*
 * ma.  As with mg, memcached applies T and N in flag order: a 't' before
 * 'T' reports the TTL before the touch, and on an item created by N the
 * later of N and T sets the expiry.  The engine does not say whether it
 * created the item, so a miss with N is retried with VIVIFY (two calls,
 * on misses only).
 */
static void
exec_ma(struct exec_ctx *x, const struct proto_cmd *cmd, bool opaque_err)
{
    const struct proto_meta *m = &cmd->meta;
    /* With a reply error at O, the flags after it never act. */
    int lim = opaque_err ? meta_pos(cmd, 'O') : m->nflags;
    bool has_t = meta_met(cmd, 'T', lim);
    bool t_first = !opaque_err && meta_before(cmd, 't', 'T');
    corral_arith_opts_t o = {0};
    corral_arith_result_t r;
    struct proto_meta_item mi;
    struct exec_seen seen;
    corral_status_t st;
    bool created = false;
    char digits[24];
    size_t nd;

    o.options = m->decr ? CORRAL_ARITH_DECR : 0;
    o.delta = m->delta;
    o.cas = m->has_cas ? m->cas : 0;
    if (has_t && !t_first) {
        o.options |= CORRAL_ARITH_TOUCH;
        o.touch_exptime = m->ttl;
    }
    log_peek(x, cmd->key, cmd->nkey, &seen);
    st = corral_arith(x->cache, cmd->key, cmd->nkey, &o, &r);
    if (st == CORRAL_ENOTFOUND && proto_meta_has(cmd, 'N')) {
        o.options = (o.options & CORRAL_ARITH_DECR) | CORRAL_ARITH_VIVIFY;
        o.initial = m->initial;
        o.vivify_exptime = meta_vivify_exptime(cmd, lim);
        st = corral_arith(x->cache, cmd->key, cmd->nkey, &o, &r);
        created = st == CORRAL_OK;
        if (created && exec_logging(x, LOGSTREAM_FETCHERS |
                                           LOGSTREAM_MUTATIONS)) {
            /* memcached adds the new number as an item of its own:
             * another lookup, then an add. */
            nd = (size_t)snprintf(digits, sizeof(digits), "%" PRIu64,
                                  r.value);
            log_get(x, cmd->key, cmd->nkey, NULL, 0);
            log_store(x, cmd->key, cmd->nkey, CORRAL_ADD, st,
                      o.vivify_exptime, nd, &seen);
        }
    }
    if (st == CORRAL_EEXISTS) {
        st = exec_cas_or_empty(x, cmd);
    }
    if (opaque_err && (st == CORRAL_OK || st == CORRAL_ENOTFOUND ||
                       st == CORRAL_EEXISTS)) {
        /* memcached applies the change, then finds the token too long
         * while writing the reply. */
        out_err(x, PROTO_ERR_META_OPAQUE);
        return;
    }
    switch (st) {
    case CORRAL_OK:
        break;
    case CORRAL_ENOTFOUND:
        meta_reply(x, cmd, PROTO_META_NF, 0, NULL);
        return;
    case CORRAL_EEXISTS:
        meta_reply(x, cmd, PROTO_META_EX, 0, NULL);
        return;
    case CORRAL_ENONNUMERIC:
        out_err(x, PROTO_ERR_NON_NUMERIC);
        return;
    case CORRAL_ENOMEM:
        out_err(x, PROTO_ERR_NOMEM);
        return;
    default:
        out_err(x, PROTO_ERR_BAD_FORMAT);
        return;
    }
    if (!created && has_t && t_first) {
        exec_retouch(x, cmd, m->ttl, false, NULL);
    }

    memset(&mi, 0, sizeof(mi));
    mi.have = PROTO_MF('c') | PROTO_MF('t');
    mi.ttl = meta_ttl_at_t(x, cmd, created, r.ttl);
    mi.cas = r.cas;
    mi.key_binary = m->base64;
    nd = (size_t)snprintf(digits, sizeof(digits), "%" PRIu64, r.value);
    /* q hides the reply to a change of an existing item only: memcached
     * answers a creation by N all the same. */
    if (proto_meta_has(cmd, 'v')) {
        if (!created && proto_meta_quiet(cmd, PROTO_META_VA)) {
            return;
        }
        meta_reply_always(x, cmd, PROTO_META_VA, nd, &mi);
        out_bytes(x, digits, nd);
        out_reply(x, PROTO_REPLY_CRLF);
    } else if (created || !proto_meta_quiet(cmd, PROTO_META_HD)) {
        meta_reply_always(x, cmd, PROTO_META_HD, 0, &mi);
    }
}

/* me: a look at an item that changes nothing about it. */
static void
exec_me(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    corral_get_opts_t o = {0};
    corral_item_t *item = NULL;
    corral_item_info_t info;
    struct proto_me_info me;

    o.flags = CORRAL_GET_NOBUMP;
    if (corral_get_ex(x->cache, cmd->key, cmd->nkey, &o, &item, NULL) !=
        CORRAL_OK) {
        log_get(x, cmd->key, cmd->nkey, NULL, 0);
        meta_reply(x, cmd, PROTO_META_EN, 0, NULL);
        return;
    }
    log_get(x, cmd->key, cmd->nkey, item, 0);
    corral_item_info(x->cache, item, &info);
    corral_item_release(item);
    memset(&me, 0, sizeof(me));
    me.exp = info.ttl < 0 ? -1 : -info.ttl;
    me.la = info.last_access > 0 ? (uint64_t)info.last_access : 0;
    me.cas = info.cas;
    me.fetched = info.fetched != 0;
    me.cls = 1;
    me.size = info.alloc_size;
    OUT_COMPOSE(x, PROTO_META_LINE_MAX,
                proto_compose_me(buf_, PROTO_META_LINE_MAX, cmd->key,
                                 cmd->nkey, info.binary_key != 0, &me));
}

/* ---------------------------------------------------------------------- */
/* stats                                                                  */

static void
stats_rusage(struct exec_ctx *x)
{
    struct rusage ru;
    char v[48];

    getrusage(RUSAGE_SELF, &ru);
    snprintf(v, sizeof(v), "%ld.%06ld", (long)ru.ru_utime.tv_sec,
             (long)ru.ru_utime.tv_usec);
    out_stat(x, "rusage_user", v);
    snprintf(v, sizeof(v), "%ld.%06ld", (long)ru.ru_stime.tv_sec,
             (long)ru.ru_stime.tv_usec);
    out_stat(x, "rusage_system", v);
}

static unsigned
hash_power(uint64_t hash_bytes)
{
    unsigned p = 0;
    uint64_t slots = hash_bytes / 8;

    while (p < 63 && (UINT64_C(1) << (p + 1)) <= slots) {
        p++;
    }
    return p;
}

/* The ssl_* lines of "stats settings", with memcached's defaults (a
 * memcached built with TLS but run without -Z prints the same). */
static void
exec_stats_settings_tls(struct exec_ctx *x)
{
    static const char *const versions[] = {"tlsv1.0", "tlsv1.1", "tlsv1.2",
                                           "tlsv1.3"};
    const struct settings_tls *t = &x->st->tls;
    bool on = x->srv->tls != NULL;

    out_stat(x, "ssl_enabled", on ? "yes" : "no");
    out_stat(x, "ssl_chain_cert", t->chain_cert[0] ? t->chain_cert
                                                   : "(null)");
    out_stat(x, "ssl_key", t->key[0] ? t->key : "(null)");
    out_stat_u64(x, "ssl_verify_mode", (uint64_t)t->verify_mode);
    out_stat_u64(x, "ssl_keyformat", on ? (uint64_t)t->key_format : 0);
    out_stat(x, "ssl_ciphers", t->ciphers[0] ? t->ciphers : "NULL");
    out_stat(x, "ssl_ca_cert", t->ca_cert[0] ? t->ca_cert : "NULL");
    out_stat_u64(x, "ssl_wbuf_size", on ? (uint64_t)t->wbuf_kb * 1024 : 0);
    out_stat(x, "ssl_session_cache", t->session_cache ? "yes" : "no");
    out_stat(x, "ssl_kernel_tls", "no");
    out_stat(x, "ssl_min_version", on ? versions[t->min_version] : "none");
}

/*
 * The general "stats", in memcached 1.6.18's order and names.  Lines that
 * describe memcached's slab allocator, LRU maintainer and other internals
 * Corral does not have read 0.
 */
static void
exec_stats_general(struct exec_ctx *x)
{
    corral_stats_t cs;
    struct server_snapshot ss;
    struct logstream_stats ls;
    char v[64];
    time_t now = time(NULL);

    server_engine_stats(x->srv, &cs);
    server_snapshot(x->srv, &ss);

    out_stat_u64(x, "pid", (uint64_t)x->srv->pid);
    out_stat_u64(x, "uptime", (uint64_t)(now - x->srv->started));
    out_stat_u64(x, "time", (uint64_t)now);
    out_stat(x, "version", EXEC_VERSION);
    snprintf(v, sizeof(v), "libev-%d.%d", ev_version_major(),
             ev_version_minor());
    out_stat(x, "libevent", v);
    out_stat_u64(x, "pointer_size", 8 * sizeof(void *));
    stats_rusage(x);
    out_stat_u64(x, "max_connections", x->st->max_conns);
    out_stat_u64(x, "curr_connections", ss.curr_conns);
    out_stat_u64(x, "total_connections", ss.total_conns);
    out_stat_u64(x, "rejected_connections", ss.rejected_conns);
    out_stat_u64(x, "connection_structures", ss.conn_structures);
#define ZERO_STATS_1(X)                                                       \
    X(response_obj_oom) X(response_obj_count) X(response_obj_bytes)           \
    X(read_buf_count) X(read_buf_bytes) X(read_buf_bytes_free)                \
    X(read_buf_oom)
#define OUT_ZERO(name) out_stat_u64(x, #name, 0);
    ZERO_STATS_1(OUT_ZERO)
    out_stat_u64(x, "reserved_fds", EXEC_RESERVED_FDS);
    out_stat_u64(x, "cmd_get", cs.cmd_get);
    out_stat_u64(x, "cmd_set", cs.cmd_set);
    out_stat_u64(x, "cmd_flush", cs.cmd_flush);
    out_stat_u64(x, "cmd_touch", cs.cmd_touch);
    out_stat_u64(x, "cmd_meta", ss.cmd_meta);
#define ENGINE_STATS_1(X)                                                     \
    X(get_hits) X(get_misses) X(get_expired) X(get_flushed)                   \
    X(delete_misses) X(delete_hits) X(incr_misses) X(incr_hits)               \
    X(decr_misses) X(decr_hits) X(cas_misses) X(cas_hits) X(cas_badval)       \
    X(touch_hits) X(touch_misses) X(store_too_large) X(store_no_memory)
#define OUT_ENGINE(name) out_stat_u64(x, #name, cs.name);
    ENGINE_STATS_1(OUT_ENGINE)
    out_stat_u64(x, "auth_cmds", ss.auth_cmds);
    out_stat_u64(x, "auth_errors", ss.auth_errors);
    out_stat_u64(x, "bytes_read", ss.bytes_read);
    out_stat_u64(x, "bytes_written", ss.bytes_written);
    out_stat_u64(x, "limit_maxbytes", cs.limit_maxbytes);
    out_stat_u64(x, "accepting_conns", ss.accepting ? 1 : 0);
    out_stat_u64(x, "listen_disabled_num", ss.listen_disabled_num);
    out_stat_u64(x, "time_in_listen_disabled_us", 0);
    out_stat_u64(x, "threads", x->srv->nworkers);
    out_stat_u64(x, "conn_yields", ss.conn_yields);
    out_stat_u64(x, "hash_power_level", hash_power(cs.hash_bytes));
    out_stat_u64(x, "hash_bytes", cs.hash_bytes);
    out_stat_u64(x, "hash_is_expanding", cs.hash_is_expanding ? 1 : 0);
#define ZERO_STATS_2(X)                                                       \
    X(slab_reassign_rescues) X(slab_reassign_chunk_rescues)                   \
    X(slab_reassign_evictions_nomem) X(slab_reassign_inline_reclaim)          \
    X(slab_reassign_busy_items) X(slab_reassign_busy_deletes)                 \
    X(slab_reassign_running) X(slabs_moved) X(lru_crawler_running)            \
    X(lru_crawler_starts) X(lru_maintainer_juggles) X(malloc_fails)
    ZERO_STATS_2(OUT_ZERO)
    logstream_stats(x->srv->logs, &ls);
    out_stat_u64(x, "log_worker_dropped", 0);
    out_stat_u64(x, "log_worker_written", ls.written);
    out_stat_u64(x, "log_watcher_skipped", ls.skipped);
    out_stat_u64(x, "log_watcher_sent", ls.sent);
    out_stat_u64(x, "log_watchers", ls.watchers);
    out_stat_u64(x, "unexpected_napi_ids", 0);
    out_stat_u64(x, "round_robin_fallback", 0);
    out_stat_u64(x, "bytes", cs.bytes);
    out_stat_u64(x, "curr_items", cs.curr_items);
    out_stat_u64(x, "total_items", cs.total_items);
    out_stat_u64(x, "slab_global_page_pool", 0);
    out_stat_u64(x, "expired_unfetched", cs.expired_unfetched);
    out_stat_u64(x, "evicted_unfetched", cs.evicted_unfetched);
    out_stat_u64(x, "evicted_active", 0);
    out_stat_u64(x, "evictions", cs.evictions);
    out_stat_u64(x, "reclaimed", cs.reclaimed);
#define ZERO_STATS_3(X)                                                       \
    X(crawler_reclaimed) X(crawler_items_checked) X(lrutail_reflocked)        \
    X(moves_to_cold) X(moves_to_warm) X(moves_within_lru)                     \
    X(direct_reclaims) X(lru_bumps_dropped)
    ZERO_STATS_3(OUT_ZERO)
    if (x->srv->tls != NULL) {
        /* memcached's TLS lines, printed only with -Z; certificates are
         * loaded once, at startup. */
        out_stat_u64(x, "ssl_handshake_errors",
                     tls_handshake_errors(x->srv->tls));
        out_stat_u64(x, "time_since_server_cert_refresh",
                     (uint64_t)(now - x->srv->started));
    }
    out_reply(x, PROTO_REPLY_END);
}

/* "stats settings": memcached's names, Corral's values. */
static void
exec_stats_settings(struct exec_ctx *x)
{
    const struct settings *st = x->st;
    corral_config_t cfg;

    corral_config_get(x->cache, &cfg); /* cache_memlimit may change it */
    out_stat_u64(x, "maxbytes", cfg.max_memory);
    out_stat_u64(x, "maxconns", st->max_conns);
    out_stat_u64(x, "tcpport", listener_port(x->srv->listener));
    out_stat_u64(x, "udpport", 0);
    out_stat(x, "inter", st->listen);
    out_stat_u64(x, "verbosity", (uint64_t)log_get_level());
    out_stat_u64(x, "oldest", 0);
    out_stat(x, "evictions", "on");
    out_stat(x, "domain_socket", "NULL");
    out_stat(x, "umask", "700");
    out_stat(x, "shutdown_command", st->enable_shutdown ? "yes" : "no");
    out_stat(x, "growth_factor", "1.25");
    out_stat_u64(x, "chunk_size", 48);
    out_stat_u64(x, "num_threads", x->srv->nworkers);
    out_stat_u64(x, "num_threads_per_udp", x->srv->nworkers);
    out_stat(x, "stat_key_prefix", ":");
    out_stat(x, "detail_enabled", "no");
    out_stat_u64(x, "reqs_per_event", 20);
    out_stat(x, "cas_enabled", "yes");
    out_stat_u64(x, "tcp_backlog", st->backlog);
    out_stat(x, "binding_protocol", "ascii");
    out_stat(x, "auth_enabled_sasl", "no");
    out_stat(x, "auth_enabled_ascii", x->srv->auth != NULL ? "yes" : "no");
    out_stat_u64(x, "item_size_max", st->item_size_max);
    out_stat(x, "maxconns_fast", "yes");
    out_stat_u64(x, "hashpower_init", 0);
    out_stat(x, "slab_reassign", "no");
    out_stat_u64(x, "slab_automove", 0);
    out_stat(x, "slab_automove_ratio", "0.80");
    out_stat_u64(x, "slab_automove_window", 30);
    out_stat_u64(x, "slab_chunk_max", st->item_size_max / 2);
    out_stat(x, "lru_crawler", "no");
    out_stat_u64(x, "lru_crawler_sleep", 0);
    out_stat_u64(x, "lru_crawler_tocrawl", 0);
    out_stat_u64(x, "tail_repair_time", 0);
    out_stat(x, "flush_enabled", st->disable_flush ? "no" : "yes");
    out_stat(x, "dump_enabled", "no");
    out_stat(x, "hash_algorithm", "xxh3");
    out_stat(x, "lru_maintainer_thread", "no");
    out_stat(x, "lru_segmented", "no");
    out_stat_u64(x, "hot_lru_pct", 0);
    out_stat_u64(x, "warm_lru_pct", 0);
    out_stat(x, "hot_max_factor", "0.00");
    out_stat(x, "warm_max_factor", "0.00");
    out_stat(x, "temp_lru", "no");
    out_stat_u64(x, "temporary_ttl", 0);
    out_stat_u64(x, "idle_timeout", st->idle_timeout);
    out_stat_u64(x, "watcher_logbuf_size", LOGSTREAM_BUFFER);
    out_stat_u64(x, "worker_logbuf_size", 0);
    out_stat_u64(x, "read_buf_mem_limit", 0);
    out_stat(x, "track_sizes", "no");
    out_stat(x, "inline_ascii_response", "no");
    out_stat_u64(x, "ext_item_size", 0);
    out_stat_u64(x, "ext_item_age", 0);
    out_stat_u64(x, "ext_low_ttl", 0);
    out_stat_u64(x, "ext_recache_rate", 0);
    out_stat_u64(x, "ext_wbuf_size", 0);
    out_stat_u64(x, "ext_compact_under", 0);
    out_stat_u64(x, "ext_drop_under", 0);
    out_stat_u64(x, "ext_max_sleep", 0);
    out_stat(x, "ext_max_frag", "0.00");
    out_stat(x, "slab_automove_freeratio", "0.000");
    out_stat(x, "ext_drop_unread", "no");
    exec_stats_settings_tls(x);
    out_stat(x, "num_napi_ids", "(null)");
    out_stat(x, "memory_file", "(null)");
    out_reply(x, PROTO_REPLY_END);
}

/* "stats items": the whole cache as one class, when it holds items. */
static void
exec_stats_items(struct exec_ctx *x)
{
    corral_stats_t cs;

    server_engine_stats(x->srv, &cs);
    if (cs.curr_items > 0) {
#define ITEM_STAT(name, value) out_stat_u64(x, "items:1:" #name, (value));
        ITEM_STAT(number, cs.curr_items)
        ITEM_STAT(number_hot, 0)
        ITEM_STAT(number_warm, 0)
        ITEM_STAT(number_cold, cs.curr_items)
        ITEM_STAT(age_hot, 0)
        ITEM_STAT(age_warm, 0)
        ITEM_STAT(age, cs.oldest_item_age)
        ITEM_STAT(mem_requested, cs.bytes)
        ITEM_STAT(evicted, cs.evictions)
        ITEM_STAT(evicted_nonzero, 0)
        ITEM_STAT(evicted_time, 0)
        ITEM_STAT(outofmemory, cs.store_no_memory)
        ITEM_STAT(tailrepairs, 0)
        ITEM_STAT(reclaimed, cs.reclaimed)
        ITEM_STAT(expired_unfetched, cs.expired_unfetched)
        ITEM_STAT(evicted_unfetched, cs.evicted_unfetched)
        ITEM_STAT(evicted_active, 0)
        ITEM_STAT(crawler_reclaimed, 0)
        ITEM_STAT(crawler_items_checked, 0)
        ITEM_STAT(lrutail_reflocked, 0)
        ITEM_STAT(moves_to_cold, 0)
        ITEM_STAT(moves_to_warm, 0)
        ITEM_STAT(moves_within_lru, 0)
        ITEM_STAT(direct_reclaims, 0)
        ITEM_STAT(hits_to_hot, 0)
        ITEM_STAT(hits_to_warm, 0)
        ITEM_STAT(hits_to_cold, cs.get_hits)
        ITEM_STAT(hits_to_temp, 0)
#undef ITEM_STAT
    }
    out_reply(x, PROTO_REPLY_END);
}

/*
 * "stats slabs": the cache as one class, as "stats items" shows it, when
 * it holds items (memcached lists the classes that have pages), then the
 * totals.  There are no slabs, so the class lines translate: the chunk
 * size is the mean allocation size of an item, a page is a MiB of item
 * memory, used chunks are the items, and free chunks are the items of
 * that mean size that the memory limit still has room for (memcached-tool
 * prints "Full?  yes" when there are none).
 */
static void
exec_stats_slabs(struct exec_ctx *x)
{
    corral_stats_t cs;
    const uint64_t page = UINT64_C(1) << 20;

    server_engine_stats(x->srv, &cs);
    if (cs.curr_items > 0) {
        uint64_t chunk = cs.bytes / cs.curr_items;
        uint64_t room = cs.limit_maxbytes > cs.mem_used
                            ? cs.limit_maxbytes - cs.mem_used : 0;
        uint64_t free_chunks;

        chunk = chunk > 0 ? chunk : 1;
        free_chunks = room / chunk;
#define SLAB_STAT(name, value) out_stat_u64(x, "1:" #name, (value));
        SLAB_STAT(chunk_size, chunk)
        SLAB_STAT(chunks_per_page, page / chunk)
        SLAB_STAT(total_pages, (cs.bytes + page - 1) / page)
        SLAB_STAT(total_chunks, cs.curr_items + free_chunks)
        SLAB_STAT(used_chunks, cs.curr_items)
        SLAB_STAT(free_chunks, free_chunks)
        SLAB_STAT(free_chunks_end, 0)
        SLAB_STAT(get_hits, cs.get_hits)
        SLAB_STAT(cmd_set, cs.cmd_set)
        SLAB_STAT(delete_hits, cs.delete_hits)
        SLAB_STAT(incr_hits, cs.incr_hits)
        SLAB_STAT(decr_hits, cs.decr_hits)
        SLAB_STAT(cas_hits, cs.cas_hits)
        SLAB_STAT(cas_badval, cs.cas_badval)
        SLAB_STAT(touch_hits, cs.touch_hits)
#undef SLAB_STAT
    }
    out_stat_u64(x, "active_slabs", cs.curr_items > 0 ? 1 : 0);
    out_stat_u64(x, "total_malloced", cs.mem_used);
    out_reply(x, PROTO_REPLY_END);
}

/*
 * "stats corral": every engine statistic under its corral.h name (the
 * memcached ones and Corral's own: loads, stale serves, invalidations,
 * recache tokens, write-behind...), then the server's other stampede
 * outcomes for mg.
 */
static void
exec_stats_corral(struct exec_ctx *x)
{
    corral_stats_t cs;
    struct server_snapshot ss;

    server_engine_stats(x->srv, &cs);
    server_snapshot(x->srv, &ss);
#define CORRAL_STAT_LINE(name, kind, text) out_stat_u64(x, #name, cs.name);
    CORRAL_STATS_TABLE(CORRAL_STAT_LINE)
#undef CORRAL_STAT_LINE
    out_stat_u64(x, "meta_stale", ss.meta_stale);
    out_stat_u64(x, "meta_vivified", ss.meta_vivified);
    out_stat_u64(x, "meta_lease_timeouts", ss.meta_lease_timeouts);
    out_reply(x, PROTO_REPLY_END);
}

/*
 * "stats hotkeys [n]": the n (default 10, at most HOTKEYS_TOP_MAX) keys
 * requested most over the last 10 to 20 seconds, estimated from samples
 * (hotkeys.h).  Keys are percent-encoded as in the log streams.
 */
static void
exec_stats_hotkeys(struct exec_ctx *x, const char *arg, size_t narg)
{
    struct hotkeys_report *r;
    size_t limit = 10;
    char name[48], v[64];

    if (arg != NULL) {
        char num[8];
        unsigned long l;
        char *end;

        if (narg == 0 || narg >= sizeof(num)) {
            out_err(x, PROTO_ERR_STATS_BAD_LINE);
            return;
        }
        memcpy(num, arg, narg);
        num[narg] = '\0';
        l = strtoul(num, &end, 10);
        if (*end != '\0' || l == 0 || l > HOTKEYS_TOP_MAX) {
            out_err(x, PROTO_ERR_STATS_BAD_LINE);
            return;
        }
        limit = l;
    }
    if (x->srv->hot == NULL) {
        out_stat_u64(x, "hotkeys_sample", 0);
        out_reply(x, PROTO_REPLY_END);
        return;
    }
    r = malloc(sizeof(*r));
    if (r == NULL || hotkeys_top(x->srv->hot, limit, r) != 0) {
        free(r);
        out_err(x, PROTO_ERR_STATS_NOMEM);
        return;
    }
    out_stat_u64(x, "hotkeys_sample", r->sample);
    snprintf(v, sizeof(v), "%.1f", r->span);
    out_stat(x, "hotkeys_span", v);
    out_stat_u64(x, "hotkeys_samples", r->sampled);
    for (size_t i = 0; i < r->n; i++) {
        const struct hotkeys_entry *e = &r->top[i];
        char key[3 * 250 + 1];

        logstream_uriencode(e->key, e->nkey, key, sizeof(key));
        snprintf(name, sizeof(name), "hotkey:%zu:key", i + 1);
        out_stat(x, name, key);
        snprintf(name, sizeof(name), "hotkey:%zu:requests", i + 1);
        out_stat_u64(x, name, e->requests);
        snprintf(name, sizeof(name), "hotkey:%zu:error", i + 1);
        out_stat_u64(x, name, e->error);
        snprintf(name, sizeof(name), "hotkey:%zu:rate", i + 1);
        snprintf(v, sizeof(v), "%.1f",
                 r->span > 0 ? (double)e->requests / r->span : 0.0);
        out_stat(x, name, v);
    }
    free(r);
    out_reply(x, PROTO_REPLY_END);
}

struct conns_walk {
    struct exec_ctx *x;
    double now;
    const char *listen_addr;
};

static void
stats_conn_listener(int fd, const char *addr, void *ud)
{
    struct conns_walk *cw = ud;
    char name[48];

    snprintf(name, sizeof(name), "%d:addr", fd);
    out_stat(cw->x, name, addr);
    snprintf(name, sizeof(name), "%d:state", fd);
    out_stat(cw->x, name, "conn_listening");
    snprintf(name, sizeof(name), "%d:secs_since_last_cmd", fd);
    out_stat_u64(cw->x, name,
                 (uint64_t)(cw->now - (double)cw->x->srv->started));
}

/* Runs under the connection's worker lock: output only, no engine. */
static void
stats_conn_one(const struct conn *c, void *ud)
{
    struct conns_walk *cw = ud;
    int fd = conn_report_fd(c);
    char name[48];

    snprintf(name, sizeof(name), "%d:addr", fd);
    out_stat(cw->x, name, conn_report_peer(c));
    snprintf(name, sizeof(name), "%d:listen_addr", fd);
    out_stat(cw->x, name, cw->listen_addr);
    snprintf(name, sizeof(name), "%d:state", fd);
    out_stat(cw->x, name, conn_report_state(c));
    snprintf(name, sizeof(name), "%d:secs_since_last_cmd", fd);
    out_stat_u64(cw->x, name, (uint64_t)conn_report_idle(c, cw->now));
}

static void
exec_stats_conns(struct exec_ctx *x)
{
    struct conns_walk cw;

    cw.x = x;
    cw.now = (double)time(NULL);
    cw.listen_addr = listener_addr(x->srv->listener);
    listener_foreach(x->srv->listener, stats_conn_listener, &cw);
    for (unsigned i = 0; i < x->srv->nworkers; i++) {
        worker_conns_foreach(&x->srv->workers[i], stats_conn_one, &cw);
    }
    out_reply(x, PROTO_REPLY_END);
}

static bool
word_is(const char *w, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(w, s, n) == 0;
}

static void exec_stats_invalidations(struct exec_ctx *x);

static void
exec_stats(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    struct proto_iter it;
    const char *w = NULL, *w2 = NULL;
    size_t n = 0, n2 = 0;

    proto_args_begin(&it, cmd);
    if (!proto_iter_next(&it, &w, &n)) {
        exec_stats_general(x);
        return;
    }
    proto_iter_next(&it, &w2, &n2);
    if (word_is(w, n, "reset")) {
        server_stats_reset(x->srv);
        out_reply(x, PROTO_REPLY_RESET);
    } else if (word_is(w, n, "settings")) {
        exec_stats_settings(x);
    } else if (word_is(w, n, "items")) {
        exec_stats_items(x);
    } else if (word_is(w, n, "slabs")) {
        exec_stats_slabs(x);
    } else if (word_is(w, n, "conns")) {
        exec_stats_conns(x);
    } else if (word_is(w, n, "corral")) {
        exec_stats_corral(x);
    } else if (word_is(w, n, "hotkeys")) {
        exec_stats_hotkeys(x, w2, n2);
    } else if (word_is(w, n, "sizes")) {
        out_stat(x, "sizes_status", "disabled");
        out_reply(x, PROTO_REPLY_END);
    } else if (word_is(w, n, "sizes_enable") ||
               word_is(w, n, "sizes_disable")) {
        /* memcached's reply shape for a failure, without END. */
        out_stat(x, "sizes_status", "error");
        out_stat(x, "sizes_error", "size histograms are not supported");
    } else if (word_is(w, n, "detail")) {
        /* Per-prefix statistics are not collected: on and off are
         * accepted, and the dump is empty. */
        if (w2 != NULL && word_is(w2, n2, "on")) {
            out_reply(x, PROTO_REPLY_OK);
        } else if (w2 != NULL && word_is(w2, n2, "off")) {
            out_reply(x, PROTO_REPLY_OK);
        } else if (w2 != NULL && word_is(w2, n2, "dump")) {
            out_reply(x, PROTO_REPLY_END);
        } else {
            out_err(x, PROTO_ERR_STATS_DETAIL_USAGE);
        }
    } else if (word_is(w, n, "cachedump")) {
        out_err(x, PROTO_ERR_STATS_CACHEDUMP_DISABLED);
    } else if (word_is(w, n, "invalidations")) {
        exec_stats_invalidations(x);
    } else {
        out_err(x, PROTO_ERR_ERROR);
    }
}

/* ---------------------------------------------------------------------- */
/* Invalidation: invalidate_tag, invalidate_prefix, watch invalidations   */

static void
exec_invalidate(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    struct worker_counters *wc = &conn_worker(x->c)->counters;
    corral_status_t st;

    if (cmd->type == PROTO_CMD_INVALIDATE_TAG) {
        char tag[CORRAL_TAG_MAX + 1];

        memcpy(tag, cmd->tags, cmd->tags_len);
        tag[cmd->tags_len] = '\0';
        srv_counter_add(&wc->cmd_invalidate_tag, 1);
        st = corral_invalidate_tag(x->cache, tag);
    } else {
        srv_counter_add(&wc->cmd_invalidate_prefix, 1);
        st = corral_invalidate_prefix(x->cache, cmd->key, cmd->nkey);
    }
    if (st != CORRAL_OK) {
        classic_err(x, cmd, PROTO_ERR_INVALIDATE_FAILED);
    } else if (!cmd->noreply) {
        out_bytes(x, PROTO_INVALIDATED_LINE,
                  sizeof(PROTO_INVALIDATED_LINE) - 1);
    }
}

/*
 * "stats invalidations": Corral's own counters for tags, invalidations,
 * watchers and peers (a subcommand, so that the general "stats" keeps
 * memcached's list of names).
 */
static void
exec_stats_invalidations(struct exec_ctx *x)
{
    corral_stats_t cs;
    struct server_snapshot ss;
    char v[32];

    memset(&cs, 0, sizeof(cs));
    corral_stats(x->cache, &cs, sizeof(cs));
    server_snapshot(x->srv, &ss);
    snprintf(v, sizeof(v), "%016" PRIx64, x->srv->node_id);
    out_stat(x, "node_id", v);
    out_stat_u64(x, "cmd_invalidate_tag", ss.cmd_invalidate_tag);
    out_stat_u64(x, "cmd_invalidate_prefix", ss.cmd_invalidate_prefix);
    out_stat_u64(x, "cmd_tagged_store", ss.cmd_tagged_store);
    out_stat_u64(x, "tag_invalidations", cs.tag_invalidations);
    out_stat_u64(x, "prefix_invalidations", cs.prefix_invalidations);
    out_stat_u64(x, "prefix_rules", cs.prefix_rules);
    out_stat_u64(x, "tags_live", cs.tags_live);
    out_stat_u64(x, "get_invalidated", cs.get_invalidated);
    out_stat_u64(x, "events", cs.events);
    if (x->srv->watch != NULL) {
        struct watch_stats ws;

        watch_stats_get(x->srv->watch, &ws);
        out_stat_u64(x, "watch_history", ws.history);
        out_stat_u64(x, "watch_history_used", ws.history_used);
        out_stat_u64(x, "watch_next_seq", ws.next_seq);
        out_stat_u64(x, "watch_events", ws.events);
        out_stat_u64(x, "watchers", ws.watchers);
        out_stat_u64(x, "watchers_total", ws.watchers_total);
        out_stat_u64(x, "watch_lines_sent", ws.lines_sent);
        out_stat_u64(x, "watchers_lagged", ws.watchers_lagged);
        out_stat_u64(x, "watch_gaps", ws.gaps);
        out_stat_u64(x, "watch_replays", ws.replays);
    }
    if (x->srv->peers != NULL) {
        peers_report(x->srv->peers, exec_stat_cb, x);
    }
    out_reply(x, PROTO_REPLY_END);
}

/* ---------------------------------------------------------------------- */
/* Engine events, and invalidations received from peers                   */

static proto_wev_t
exec_wev(corral_event_type_t t)
{
    switch (t) {
    case CORRAL_EVENT_DELETE:
        return PROTO_WEV_DELETE;
    case CORRAL_EVENT_OVERWRITE:
        return PROTO_WEV_OVERWRITE;
    case CORRAL_EVENT_STALE:
        return PROTO_WEV_STALE;
    case CORRAL_EVENT_TAG:
        return PROTO_WEV_TAG;
    case CORRAL_EVENT_PREFIX:
        return PROTO_WEV_PREFIX;
    case CORRAL_EVENT_FLUSH:
        return PROTO_WEV_FLUSH;
    case CORRAL_EVENT_GAP:
    default:
        return PROTO_WEV_GAP;
    }
}

/*
 * The server's one engine subscription: runs on the thread that made the
 * change, with no engine lock held, one event at a time.  It only hands
 * the event to watch_record(), which appends it and signals the workers.
 * Local changes carry origin 0 in the engine and this node's id on the
 * stream; relayed ones keep the id of the node they came from.
 */
static void
exec_on_event(const corral_event_t *e, void *ud)
{
    struct server *srv = ud;
    struct proto_watch_event ev;
    struct timespec ts;

    memset(&ev, 0, sizeof(ev));
    clock_gettime(CLOCK_REALTIME, &ts);
    ev.type = exec_wev(e->type);
    ev.ts_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    ev.seq = e->seq;
    ev.cas = e->cas;
    ev.origin = e->origin != 0 ? e->origin : srv->node_id;
    ev.at = e->flush_time;
    ev.name = e->name;
    ev.len = e->type == CORRAL_EVENT_FLUSH || e->type == CORRAL_EVENT_GAP
                 ? 0
                 : e->len;
    if (ev.type == PROTO_WEV_GAP) {
        log_warn("the invalidation history missed engine events from %llu: "
                 "watchers are told to flush",
                 (unsigned long long)e->seq);
    }
    watch_record(srv->watch, &ev);
}

int
exec_events_start(struct server *srv)
{
    corral_status_t st;

    srv->watch = watch_hub_create(srv, srv->settings->watch_history,
                                  srv->settings->watch_lag,
                                  corral_event_seq(srv->cache));
    if (srv->watch == NULL) {
        log_error("out of memory for the invalidation history");
        return -1;
    }
    st = corral_subscribe(srv->cache, exec_on_event, srv, 0,
                          &srv->events_sub);
    if (st != CORRAL_OK) {
        log_error("cannot subscribe to the cache's events: %s",
                  corral_strerror(st));
        watch_hub_destroy(srv->watch);
        srv->watch = NULL;
        return -1;
    }
    return 0;
}

void
exec_events_stop(struct server *srv)
{
    corral_unsubscribe(srv->cache, srv->events_sub);
    srv->events_sub = NULL;
}

int
exec_apply_remote(struct server *srv, const struct proto_watch_event *ev,
                  uint64_t origin)
{
    corral_invalidation_t inv;
    char tag[CORRAL_TAG_MAX + 1];

    memset(&inv, 0, sizeof(inv));
    inv.origin = origin;
    switch (ev->type) {
    case PROTO_WEV_DELETE:
    case PROTO_WEV_OVERWRITE:
    case PROTO_WEV_STALE:
        /* the key changed there: the copy here is out of date */
        inv.type = CORRAL_EVENT_DELETE;
        inv.name = ev->name;
        inv.len = ev->len;
        break;
    case PROTO_WEV_TAG:
        if (ev->len == 0 || ev->len > CORRAL_TAG_MAX) {
            return -1;
        }
        memcpy(tag, ev->name, ev->len);
        tag[ev->len] = '\0';
        inv.type = CORRAL_EVENT_TAG;
        inv.name = tag;
        inv.len = ev->len;
        break;
    case PROTO_WEV_PREFIX:
        inv.type = CORRAL_EVENT_PREFIX;
        inv.name = ev->name;
        inv.len = ev->len;
        break;
    case PROTO_WEV_FLUSH:
        inv.type = CORRAL_EVENT_FLUSH;
        inv.flush_time = ev->at;
        break;
    case PROTO_WEV_GAP:
        /* missed events: everything may be stale (a delayed flush still
         * to come stays pending) */
        inv.type = CORRAL_EVENT_GAP;
        break;
    default:
        return 0;
    }
    return corral_invalidate(srv->cache, &inv) == CORRAL_OK ? 0 : -1;
}

/* ---------------------------------------------------------------------- */
/* The rest                                                               */

static void
exec_flush_all(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    if (x->st->disable_flush) {
        classic_err(x, cmd, PROTO_ERR_FLUSH_DISABLED);
        return;
    }
    corral_flush(x->cache, cmd->exptime);
    leases_forget(x->srv->leases);
    classic_reply(x, cmd, PROTO_REPLY_OK);
}

static void
exec_version(struct exec_ctx *x)
{
    size_t max = sizeof(EXEC_VERSION) + 16;
    OUT_COMPOSE(x, max, proto_compose_line(buf_, max, "VERSION",
                                           EXEC_VERSION));
}

static void
exec_verbosity(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    if (x->st->disable_verbosity) {
        classic_err(x, cmd, PROTO_ERR_VERBOSITY_DISABLED);
        return;
    }
    log_set_level(cmd->level > LOG_LEVEL_MAX ? LOG_LEVEL_MAX
                                             : (int)cmd->level);
    classic_reply(x, cmd, PROTO_REPLY_OK);
}

/* cache_memlimit <megabytes>: memcached's limits and replies.  The
 * engine also refuses a limit that leaves a shard less than two items of
 * -I (its shard count is fixed at startup). */
static void
exec_memlimit(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    if (cmd->level < 8) {
        classic_err(x, cmd, PROTO_ERR_MEMLIMIT_TOO_SMALL);
    } else if (cmd->level > 1000000000u) {
        classic_err(x, cmd, PROTO_ERR_MEMLIMIT_NOT_BYTES);
    } else if (corral_set_max_memory(x->cache, (size_t)cmd->level << 20) !=
               CORRAL_OK) {
        classic_err(x, cmd, PROTO_ERR_MEMLIMIT_FAILED);
    } else {
        classic_reply(x, cmd, PROTO_REPLY_OK);
    }
}

static void
exec_shutdown(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    if (!x->st->enable_shutdown) {
        out_err(x, PROTO_ERR_SHUTDOWN_DISABLED);
        return;
    }
    if (cmd->shutdown == PROTO_SHUTDOWN_INVALID) {
        out_err(x, PROTO_ERR_SHUTDOWN_MODE);
        return;
    }
    log_info("shutdown requested by a client");
    /* memcached closes the asking connection without a reply. */
    conn_kill(x->c);
    server_request_shutdown(x->srv);
}

/*
 * watch, unless -W: memcached's log streams (logstream.c) or Corral's
 * "watch invalidations" (watch.c).  Of memcached's streams, fetchers,
 * mutations and evictions are produced; the other names memcached knows
 * are accepted and send nothing.  As in memcached, a watch behind
 * pipelined requests whose replies are still queued is refused, and once
 * it succeeds the connection only receives the stream (requests after it
 * are discarded).
 */
static void
exec_watch(struct exec_ctx *x, const struct proto_cmd *cmd)
{
    unsigned streams = 0;

    if (x->st->disable_watch) {
        out_err(x, PROTO_ERR_WATCH_DISABLED);
        return;
    }
    if (conn_out_pending(x->c) > 0) {
        out_err(x, PROTO_ERR_WATCH_PIPELINED);
        return;
    }
    if (cmd->watch & PROTO_WATCH(INVALIDATIONS)) {
        /* Corral's stream, alone (the parser refuses a mix) */
        if (x->srv->watch == NULL) {
            out_err(x, PROTO_ERR_WATCH_DISABLED);
            return;
        }
        out_reply(x, PROTO_REPLY_OK);
        if (watch_add(x->srv->watch, x->c, cmd, x->srv->node_id) != 0) {
            nomem_err(x, PROTO_ERR_NOMEM);
            conn_quit(x->c);
        }
        return;
    }
    if (cmd->watch & PROTO_WATCH(FETCHERS)) {
        streams |= LOGSTREAM_FETCHERS;
    }
    if (cmd->watch & PROTO_WATCH(MUTATIONS)) {
        streams |= LOGSTREAM_MUTATIONS;
    }
    if (cmd->watch & PROTO_WATCH(EVICTIONS)) {
        streams |= LOGSTREAM_EVICTIONS;
    }
    switch (logstream_watch(x->srv->logs, x->c, streams)) {
    case LOGSTREAM_WATCH_OK:
        log_info("<%d watching log streams", conn_fd(x->c));
        out_reply(x, PROTO_REPLY_OK);
        break;
    case LOGSTREAM_WATCH_TOO_MANY:
        out_err(x, PROTO_ERR_WATCH_TOO_MANY);
        break;
    case LOGSTREAM_WATCH_FAILED:
    default:
        out_err(x, PROTO_ERR_WATCH_FAILED);
        break;
    }
}

static void
exec_one(struct exec_ctx *x, struct proto_cmd *cmd)
{
    switch (cmd->type) {
    case PROTO_CMD_GET:
    case PROTO_CMD_GETS:
    case PROTO_CMD_GAT:
    case PROTO_CMD_GATS:
    case PROTO_CMD_BGET:
        exec_get(x, cmd);
        break;
    case PROTO_CMD_SET:
    case PROTO_CMD_ADD:
    case PROTO_CMD_REPLACE:
    case PROTO_CMD_APPEND:
    case PROTO_CMD_PREPEND:
    case PROTO_CMD_CAS:
        exec_store(x, cmd);
        break;
    case PROTO_CMD_DELETE:
        exec_delete(x, cmd);
        break;
    case PROTO_CMD_INCR:
    case PROTO_CMD_DECR:
        exec_arith(x, cmd);
        break;
    case PROTO_CMD_TOUCH:
        exec_touch(x, cmd);
        break;
    case PROTO_CMD_FLUSH_ALL:
        exec_flush_all(x, cmd);
        break;
    case PROTO_CMD_STATS:
        exec_stats(x, cmd);
        break;
    case PROTO_CMD_VERSION:
        exec_version(x);
        break;
    case PROTO_CMD_VERBOSITY:
        exec_verbosity(x, cmd);
        break;
    case PROTO_CMD_CACHE_MEMLIMIT:
        exec_memlimit(x, cmd);
        break;
    case PROTO_CMD_QUIT:
        conn_quit(x->c);
        break;
    case PROTO_CMD_SHUTDOWN:
        exec_shutdown(x, cmd);
        break;
    case PROTO_CMD_WATCH:
        exec_watch(x, cmd);
        break;
    case PROTO_CMD_TSET:
    case PROTO_CMD_TADD:
    case PROTO_CMD_TREPLACE:
    case PROTO_CMD_TCAS:
        exec_store(x, cmd);
        break;
    case PROTO_CMD_INVALIDATE_TAG:
    case PROTO_CMD_INVALIDATE_PREFIX:
        exec_invalidate(x, cmd);
        break;
    case PROTO_CMD_MG:
        exec_mg(x, cmd);
        break;
    case PROTO_CMD_MS:
        exec_ms(x, cmd);
        break;
    case PROTO_CMD_MD:
        exec_md(x, cmd);
        break;
    case PROTO_CMD_MA:
        exec_ma(x, cmd, false);
        break;
    case PROTO_CMD_MN:
        out_bytes(x, "MN\r\n", 4);
        break;
    case PROTO_CMD_ME:
        exec_me(x, cmd);
        break;
    case PROTO_CMD_NONE:
    case PROTO_CMD_COUNT:
    default:
        out_err(x, PROTO_ERR_ERROR);
        break;
    }
}

/* A refused request: its error line and what it leaves to swallow. */
static void
exec_refused(struct exec_ctx *x, struct proto_cmd *cmd)
{
    if (cmd->err == PROTO_ERR_META_OPAQUE && cmd->type == PROTO_CMD_MG) {
        exec_mg_refused(x, cmd);
        return;
    }
    if (cmd->err == PROTO_ERR_META_OPAQUE && cmd->type == PROTO_CMD_MA) {
        exec_ma(x, cmd, true);
        return;
    }
    if (cmd->err == PROTO_ERR_TOO_LARGE && cmd->nkey > 0) {
        struct exec_seen seen;

        log_peek_none(&seen);
        log_store(x, cmd->key, cmd->nkey,
                  exec_mode(cmd->type == PROTO_CMD_MS ? cmd->meta.store_mode
                                                      : cmd->store_mode),
                  CORRAL_ETOOBIG, 0, 0, &seen);
        if (cmd->type == PROTO_CMD_SET || cmd->type == PROTO_CMD_MS) {
            /* memcached drops the old value rather than keep a stale
             * one (and logs the lookup that finds it). */
            log_peek(x, cmd->key, cmd->nkey, &seen);
            corral_delete(x->cache, cmd->key, cmd->nkey);
        }
    }
    if (cmd->err == PROTO_ERR_BAD_FORMAT && cmd->nkeys > 0) {
        exec_get_refused(x, cmd);
    }
    if (!cmd->noreply) {
        out_err(x, cmd->err);
    }
    if (cmd->swallow > 0) {
        conn_swallow(x->c, cmd->swallow);
    }
}

/* A monotonic clock in nanoseconds, for command latencies (vDSO: no
 * system call). */
static uint64_t
exec_clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Before a connection has authenticated (-Y): memcached's framing
 * (auth.c), one reply per line.  Returns false when exec_process must
 * stop: more bytes are needed, the connection closes, or data is to be
 * swallowed.  *used gets the bytes consumed.
 */
static bool
exec_unauthenticated(struct exec_ctx *x, const char *buf, size_t len,
                     size_t *used, size_t *need)
{
    struct worker_counters *wc = &conn_worker(x->c)->counters;
    struct auth_frame f;
    enum auth_step step = auth_parse(buf, len, used, need, &f);

    switch (step) {
    case AUTH_AGAIN:
        return false;
    case AUTH_CLOSE:
        log_verbose("<%d unauthenticated line too long: closing",
                    conn_fd(x->c));
        conn_quit(x->c);
        return false;
    case AUTH_REFUSED:
        out_err(x, PROTO_ERR_AUTH_REQUIRED);
        return true;
    case AUTH_BAD_FORMAT:
        out_err(x, PROTO_ERR_AUTH_FORMAT);
        return true;
    case AUTH_BAD_TERMINATION:
        out_err(x, PROTO_ERR_AUTH_TERMINATION);
        return true;
    case AUTH_TOO_LONG:
        srv_counter_add(&wc->auth_cmds, 1);
        srv_counter_add(&wc->auth_errors, 1);
        out_err(x, PROTO_ERR_AUTH_FAILURE);
        conn_swallow(x->c, f.swallow);
        return false;
    case AUTH_TOKEN:
    default:
        break;
    }
    srv_counter_add(&wc->auth_cmds, 1);
    if (auth_check(x->srv->auth, f.user, f.nuser, f.pass, f.npass)) {
        log_verbose("<%d authenticated as %.*s", conn_fd(x->c),
                    (int)f.nuser, f.user);
        conn_set_authenticated(x->c);
        out_reply(x, PROTO_REPLY_STORED);
    } else {
        log_verbose("<%d authentication failed", conn_fd(x->c));
        srv_counter_add(&wc->auth_errors, 1);
        out_err(x, PROTO_ERR_AUTH_FAILURE);
    }
    return true;
}

static void
exec_limits(const struct settings *st, struct proto_limits *lim)
{
    proto_limits_init(lim);
    lim->value_max = st->item_size_max;
    lim->multiget_line_max = st->request_max;
}

static void
exec_log(struct exec_ctx *x, const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    size_t len = nl != NULL ? (size_t)(nl - p) : n;

    if (len > 0 && p[len - 1] == '\r') {
        len--;
    }
    log_verbose("<%d %.*s", conn_fd(x->c), (int)(len > 200 ? 200 : len), p);
}

size_t
exec_process(struct conn *c, const char *buf, size_t len, size_t *need)
{
    struct exec_ctx x;
    struct proto_limits lim;
    struct proto_cmd cmd;
    struct server_cmdstats *cst;
    uint64_t t_prev;
    size_t pos = 0;
    bool verbose = log_enabled(LOG_VERBOSE);

    x.c = c;
    x.srv = conn_server(c);
    cst = &x.srv->cmdstats[conn_worker(c)->id];
    x.cache = x.srv->cache;
    x.st = x.srv->settings;
    exec_limits(x.st, &lim);
    *need = 0;

    /* One clock read per request: each request's time runs from the end
     * of the one before it (or the start of the batch), so it covers
     * parsing, execution and composing the reply. */
    t_prev = exec_clock_ns();
    while (pos < len && !conn_closing(c) && !conn_out_full(c)) {
        uint64_t now;
        size_t used = 0;
        proto_status_t ps;

        if (!conn_authenticated(c)) {
            bool go_on = exec_unauthenticated(&x, buf + pos, len - pos,
                                              &used, need);
            pos += used;
            if (!go_on) {
                break;
            }
            continue;
        }
        ps = proto_parse(&cmd, buf + pos, len - pos, &lim, &used);

        if (ps == PROTO_AGAIN) {
            *need = cmd.need;
            break;
        }
        if (ps == PROTO_ECLOSE) {
            log_verbose("<%d unterminated line too long: closing",
                        conn_fd(c));
            conn_quit(c);
            break;
        }
        if (verbose) {
            exec_log(&x, buf + pos, len - pos);
        }
        if (cmd.type >= PROTO_CMD_MG && cmd.type <= PROTO_CMD_ME) {
            srv_counter_add(&conn_worker(c)->counters.cmd_meta, 1);
        }
        if (ps == PROTO_EINVAL) {
            srv_counter_add(&cst->errors[cmd.type], 1);
            exec_refused(&x, &cmd);
            pos += used;
            if (cmd.swallow > 0) {
                break;
            }
            t_prev = exec_clock_ns();
            continue;
        }
        if (cmd.nkey > 0) {
            exec_hot(&x, cmd.key, cmd.nkey);
        }
        exec_one(&x, &cmd);
        now = exec_clock_ns();
        histogram_record(&cst->latency[cmd.type], now - t_prev);
        t_prev = now;
        pos += used;
        if (conn_streaming(c)) {
            break; /* "watch": nothing after it is a request */
        }
    }
    return pos;
}

const char *
exec_command_name(size_t slot)
{
    if (slot == PROTO_CMD_NONE) {
        return "unknown";
    }
    return slot < PROTO_CMD_COUNT ? proto_cmd_name((proto_cmd_type_t)slot)
                                  : NULL;
}

void
exec_reply_too_large(struct conn *c)
{
    static const char msg[] = "SERVER_ERROR request too large\r\n";

    conn_out_copy(c, msg, sizeof(msg) - 1);
}

void
exec_reply_nomem(struct conn *c)
{
    size_t n;
    const char *p = proto_err_line(PROTO_ERR_STORE_NOMEM, &n);

    conn_out_copy(c, p, n);
}
