/*
 * ext.c - Corral's protocol extensions: tags on stores, the invalidation
 * commands, "watch invalidations" and the stream it answers with.
 *
 * Every extension is built so that a client that does not use it never
 * meets it, and so that a client that does use it against a memcached
 * gets an error rather than a silently different result:
 *
 *   tset/tadd/treplace/tcas  new command names: memcached answers ERROR;
 *                            the classic commands are untouched (a word
 *                            after <bytes> would have been ignored by
 *                            memcached, and "tags=..." after noreply
 *                            refused, so neither form was used).
 *   ms ... G<tags>           a flag letter memcached 1.6 does not know:
 *                            "CLIENT_ERROR invalid flag", block swallowed.
 *   invalidate_tag/_prefix   new command names.
 *   watch invalidations      a new stream name of memcached's own watch
 *                            command (memcached: ERROR).
 *   key tags                 off unless the server is told a separator;
 *                            then the key is still stored and read
 *                            exactly as given, and additionally carries
 *                            the tags it names (proto_key_tags()), which
 *                            is what lets tagged stores pass through
 *                            proxies that know only memcached's commands.
 *
 * Layout: tag lists, URI encoding, command parsing (the new commands and
 * the watch filters), the stream's line composer and parser.  Like the
 * rest of the library: no allocation, outputs point into the input.
 */
#include "proto.h"

#include <limits.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------ */
/* Tag lists                                                          */

/* A byte a tag name may hold: not a control character, space or comma. */
static bool
tag_byte_ok(unsigned char c)
{
    return c > 0x20 && c != 0x7f && c != ',';
}

void
proto_tags_list_begin(struct proto_iter *it, const char *list, size_t len)
{
    it->p = list;
    it->end = list == NULL ? NULL : list + len;
}

void
proto_tags_begin(struct proto_iter *it, const struct proto_cmd *cmd)
{
    proto_tags_list_begin(it, cmd->tags, cmd->tags_len);
}

bool
proto_tag_next(struct proto_iter *it, const char **out_tag, size_t *out_len)
{
    const char *p = it->p, *w;

    if (p == NULL || p >= it->end) {
        return false;
    }
    w = p;
    while (p < it->end && *p != ',') {
        p++;
    }
    *out_tag = w;
    *out_len = (size_t)(p - w);
    it->p = p < it->end ? p + 1 : p;
    return true;
}

bool
proto_tags_valid(const char *list, size_t len, unsigned *out_n)
{
    unsigned n = 0;
    size_t run = 0;

    if (list == NULL || len == 0) {
        return false;
    }
    for (size_t i = 0; i <= len; i++) {
        if (i == len || list[i] == ',') {
            if (run == 0 || run > PROTO_TAG_MAX || ++n > PROTO_TAGS_MAX) {
                return false;
            }
            run = 0;
            continue;
        }
        if (!tag_byte_ok((unsigned char)list[i])) {
            return false;
        }
        run++;
    }
    if (out_n != NULL) {
        *out_n = n;
    }
    return true;
}

unsigned
proto_key_tags(const char *key, size_t nkey, char sep, const char **out_list,
               size_t *out_len)
{
    const char *at = NULL;
    unsigned n;

    for (size_t i = nkey; i > 0; i--) {
        if (key[i - 1] == sep) {
            at = key + i - 1;
            break;
        }
    }
    if (at == NULL || at == key) {
        return 0;
    }
    *out_list = at + 1;
    *out_len = (size_t)(key + nkey - (at + 1));
    if (!proto_tags_valid(*out_list, *out_len, &n)) {
        return 0;
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* URI encoding                                                       */

static const char hex_upper[] = "0123456789ABCDEF";

static bool
uri_safe(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

static int
hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

size_t
proto_uri_encode(const char *src, size_t n, char *dst, size_t cap)
{
    size_t out = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];

        if (uri_safe(c)) {
            if (out + 1 > cap) {
                return 0;
            }
            dst[out++] = (char)c;
        } else {
            if (out + 3 > cap) {
                return 0;
            }
            dst[out++] = '%';
            dst[out++] = hex_upper[c >> 4];
            dst[out++] = hex_upper[c & 0x0f];
        }
    }
    return out;
}

long
proto_uri_decode(const char *src, size_t n, char *dst, size_t cap)
{
    size_t out = 0;

    for (size_t i = 0; i < n; i++) {
        char c = src[i];

        if (c == '%') {
            int hi, lo;

            if (n - i < 3) {
                return -1;
            }
            hi = hex_value((unsigned char)src[i + 1]);
            lo = hex_value((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            c = (char)((hi << 4) | lo);
            i += 2;
        }
        if (out >= cap) {
            return -1;
        }
        dst[out++] = c;
    }
    return (long)out;
}

/* ------------------------------------------------------------------ */
/* Commands                                                           */

/*
 * tset/tadd/treplace <key> <flags> <exptime> <bytes> <tags> [noreply]
 * tcas <key> <flags> <exptime> <bytes> <cas unique> <tags> [noreply]
 *
 * Checks in order: the word count (ERROR, nothing swallowed), then
 * <bytes>; from there on every error swallows the data block, so that a
 * refused tagged store never leaves its value to be read as commands.
 */
static proto_status_t
parse_tstore(struct proto_cmd *cmd, const struct proto_line *ln,
             const char *buf, size_t len, const struct proto_limits *lim,
             size_t *out_consumed)
{
    bool is_cas = cmd->type == PROTO_CMD_TCAS;
    size_t words = is_cas ? 7 : 6; /* without noreply */
    size_t tagi = words - 1;
    size_t swallow;
    int32_t vlen;

    if (ln->ntok != words + 1 && ln->ntok != words + 2) {
        return proto_fail(cmd, PROTO_ERR_ERROR, ln->size, 0, out_consumed);
    }
    if (!proto_num_i32(ln->tok[4].p, ln->tok[4].len, &vlen) || vlen < 0 ||
        vlen > INT_MAX - 2) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                          out_consumed);
    }
    swallow = (size_t)vlen + 2;
    if (ln->ntok == words + 2) {
        cmd->noreply = proto_tok_is(&ln->tok[words], "noreply");
        if (!cmd->noreply) {
            return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, swallow,
                              out_consumed);
        }
    }
    if (ln->tok[1].len > lim->key_max ||
        !proto_num_u32(ln->tok[2].p, ln->tok[2].len, &cmd->flags) ||
        !proto_num_i32(ln->tok[3].p, ln->tok[3].len, &cmd->exptime) ||
        (is_cas && !proto_num_u64(ln->tok[5].p, ln->tok[5].len, &cmd->cas))) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, swallow,
                          out_consumed);
    }
    cmd->key = ln->tok[1].p;
    cmd->nkey = ln->tok[1].len;
    if (!proto_tags_valid(ln->tok[tagi].p, ln->tok[tagi].len, &cmd->ntags)) {
        cmd->ntags = 0;
        return proto_fail(cmd, PROTO_ERR_TAGS, ln->size, swallow,
                          out_consumed);
    }
    cmd->tags = ln->tok[tagi].p;
    cmd->tags_len = ln->tok[tagi].len;
    cmd->store_mode = proto_store_mode(cmd->type);
    return proto_take_block(cmd, buf, len, ln->size, (size_t)vlen, lim,
                            out_consumed);
}

/* invalidate_tag <tag> [noreply] / invalidate_prefix <prefix> [noreply] */
static proto_status_t
parse_invalidate(struct proto_cmd *cmd, const struct proto_line *ln,
                 const struct proto_limits *lim, size_t *out_consumed)
{
    const struct proto_tok *arg = &ln->tok[1];

    if (ln->ntok != 3 && ln->ntok != 4) {
        return proto_fail(cmd, PROTO_ERR_ERROR, ln->size, 0, out_consumed);
    }
    if (ln->ntok == 4) {
        cmd->noreply = proto_tok_is(&ln->tok[2], "noreply");
        if (!cmd->noreply) {
            return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                              out_consumed);
        }
    }
    if (cmd->type == PROTO_CMD_INVALIDATE_TAG) {
        unsigned n;
        if (!proto_tags_valid(arg->p, arg->len, &n) || n != 1) {
            return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                              out_consumed);
        }
        cmd->tags = arg->p;
        cmd->tags_len = arg->len;
        cmd->ntags = 1;
    } else {
        if (arg->len > lim->key_max) {
            return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                              out_consumed);
        }
        cmd->key = arg->p;
        cmd->nkey = arg->len;
    }
    *out_consumed = ln->size;
    return PROTO_OK;
}

proto_status_t
proto_parse_ext(struct proto_cmd *cmd, const struct proto_line *ln,
                const char *buf, size_t len, const struct proto_limits *lim,
                size_t *out_consumed)
{
    if (cmd->type == PROTO_CMD_INVALIDATE_TAG ||
        cmd->type == PROTO_CMD_INVALIDATE_PREFIX) {
        return parse_invalidate(cmd, ln, lim, out_consumed);
    }
    return parse_tstore(cmd, ln, buf, len, lim, out_consumed);
}

/* Does word @t start with "@name="?  Then *out_val/out_len is the rest. */
static bool
word_kv(const char *w, size_t n, const char *name, const char **out_val,
        size_t *out_len)
{
    size_t k = strlen(name);

    if (n <= k || memcmp(w, name, k) != 0 || w[k] != '=') {
        return false;
    }
    *out_val = w + k + 1;
    *out_len = n - k - 1;
    return true;
}

/* A node id: 1..16 hex digits. */
static bool
parse_hex64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 16) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        int d = hex_value((unsigned char)p[i]);
        if (d < 0) {
            return false;
        }
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return true;
}

/* A decimal sequence number, digits only. */
static bool
parse_dec64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 20) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)p[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* A percent-encoded filter value that decodes to 1..max bytes. */
static bool
filter_value_ok(const char *p, size_t n, size_t max)
{
    char tmp[PROTO_KEY_MAX];
    long d;

    if (n == 0 || max > sizeof(tmp)) {
        return false;
    }
    d = proto_uri_decode(p, n, tmp, max);
    return d > 0;
}

proto_status_t
proto_parse_watch_invalidations(struct proto_cmd *cmd,
                                const struct proto_line *ln,
                                size_t *out_consumed)
{
    bool node_given = false;

    if (ln->ntok >= PROTO_TOKENS_MAX) {
        /* 23 words or more: memcached's tokenizer would have dropped
         * some, and a dropped since= would lose events. */
        return proto_fail(cmd, PROTO_ERR_WATCH_FILTER, ln->size, 0,
                          out_consumed);
    }
    for (size_t i = 1; i < ln->ntok - 1; i++) {
        const char *w = ln->tok[i].p, *v;
        size_t n = ln->tok[i].len, vn;
        int bit = proto_watch_lookup(w, n);

        if (bit == PROTO_WATCH_BIT_INVALIDATIONS) {
            continue;
        }
        if (bit >= 0) {
            return proto_fail(cmd, PROTO_ERR_WATCH_MIXED, ln->size, 0,
                              out_consumed);
        }
        if (word_kv(w, n, "prefix", &v, &vn) ||
            word_kv(w, n, "tag", &v, &vn)) {
            if (!filter_value_ok(v, vn, PROTO_KEY_MAX)) {
                return proto_fail(cmd, PROTO_ERR_WATCH_FILTER, ln->size, 0,
                                  out_consumed);
            }
        } else if (word_kv(w, n, "origin", &v, &vn)) {
            if (!(vn == 5 && memcmp(v, "local", 5) == 0)) {
                return proto_fail(cmd, PROTO_ERR_WATCH_FILTER, ln->size, 0,
                                  out_consumed);
            }
        } else if (word_kv(w, n, "since", &v, &vn)) {
            if (!parse_dec64(v, vn, &cmd->since) || cmd->since == 0) {
                return proto_fail(cmd, PROTO_ERR_WATCH_FILTER, ln->size, 0,
                                  out_consumed);
            }
        } else if (word_kv(w, n, "node", &v, &vn)) {
            if (!parse_hex64(v, vn, &cmd->node)) {
                return proto_fail(cmd, PROTO_ERR_WATCH_FILTER, ln->size, 0,
                                  out_consumed);
            }
            node_given = true;
        } else if (word_kv(w, n, "heartbeat", &v, &vn)) {
            uint64_t hb;
            if (!parse_dec64(v, vn, &hb) || hb == 0 || hb > 3600) {
                return proto_fail(cmd, PROTO_ERR_WATCH_FILTER, ln->size, 0,
                                  out_consumed);
            }
            cmd->heartbeat = (uint32_t)hb;
        } else {
            return proto_fail(cmd, PROTO_ERR_WATCH_FILTER, ln->size, 0,
                              out_consumed);
        }
    }
    if (node_given && cmd->since == 0) {
        /* node= qualifies since=; alone it means nothing */
        return proto_fail(cmd, PROTO_ERR_WATCH_FILTER, ln->size, 0,
                          out_consumed);
    }
    cmd->watch = PROTO_WATCH(INVALIDATIONS);
    cmd->noreply = false;
    *out_consumed = ln->size;
    return PROTO_OK;
}

bool
proto_watch_filter_next(struct proto_iter *it, proto_watch_filter_t *out_kind,
                        char *buf, size_t cap, size_t *out_len)
{
    const char *w, *v;
    size_t n, vn;

    while (proto_iter_next(it, &w, &n)) {
        proto_watch_filter_t kind;
        long d;

        if (word_kv(w, n, "prefix", &v, &vn)) {
            kind = PROTO_WF_PREFIX;
        } else if (word_kv(w, n, "tag", &v, &vn)) {
            kind = PROTO_WF_TAG;
        } else if (word_kv(w, n, "origin", &v, &vn)) {
            *out_kind = PROTO_WF_LOCAL;
            *out_len = 0;
            return true;
        } else {
            continue;
        }
        d = proto_uri_decode(v, vn, buf, cap);
        if (d <= 0) {
            continue; /* the parser refused these already */
        }
        *out_kind = kind;
        *out_len = (size_t)d;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* The stream                                                         */

static const char *const wev_names[PROTO_WEV_COUNT] = {
    [PROTO_WEV_NONE] = "",
#define WEV_NAME_(e, s) [PROTO_WEV_##e] = s,
    PROTO_WATCH_EVENT_TABLE(WEV_NAME_)
#undef WEV_NAME_
};

const char *
proto_wev_name(proto_wev_t type)
{
    if ((unsigned)type >= PROTO_WEV_COUNT) {
        return "";
    }
    return wev_names[type];
}

/* A write cursor that remembers running out of room. */
struct cur {
    char *p;
    char *end;
    bool overflow;
};

static void
cur_put(struct cur *o, const char *s, size_t n)
{
    if (o->overflow || (size_t)(o->end - o->p) < n) {
        o->overflow = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void
cur_str(struct cur *o, const char *s)
{
    cur_put(o, s, strlen(s));
}

static void
cur_u64(struct cur *o, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[sizeof(tmp) - 1 - n] = (char)('0' + v % 10);
        v /= 10;
        n++;
    } while (v != 0);
    cur_put(o, tmp + sizeof(tmp) - n, n);
}

static void
cur_i64(struct cur *o, int64_t v)
{
    if (v < 0) {
        cur_put(o, "-", 1);
        cur_u64(o, (uint64_t)0 - (uint64_t)v);
    } else {
        cur_u64(o, (uint64_t)v);
    }
}

static void
cur_hex16(struct cur *o, uint64_t v)
{
    char tmp[16];

    for (int i = 15; i >= 0; i--) {
        tmp[i] = hex_upper[v & 0x0f];
        v >>= 4;
    }
    /* lower case reads better in ids; both parse */
    for (int i = 0; i < 16; i++) {
        if (tmp[i] >= 'A' && tmp[i] <= 'F') {
            tmp[i] = (char)(tmp[i] - 'A' + 'a');
        }
    }
    cur_put(o, tmp, sizeof(tmp));
}

/* " <field>=<value>" helpers */
static void
cur_field_u64(struct cur *o, const char *field, uint64_t v)
{
    cur_str(o, " ");
    cur_str(o, field);
    cur_str(o, "=");
    cur_u64(o, v);
}

static void
cur_field_name(struct cur *o, const char *field, const char *name,
               size_t len)
{
    char enc[3 * PROTO_KEY_MAX];
    size_t n;

    if (len > PROTO_KEY_MAX) {
        o->overflow = true;
        return;
    }
    n = proto_uri_encode(name, len, enc, sizeof(enc));
    cur_str(o, " ");
    cur_str(o, field);
    cur_str(o, "=");
    cur_put(o, enc, n);
}

size_t
proto_compose_watch(char *buf, size_t cap, const struct proto_watch_event *ev)
{
    struct cur o = {buf, buf + cap, false};
    char frac[7];
    uint64_t us = ev->ts_us % 1000000;

    if ((unsigned)ev->type >= PROTO_WEV_COUNT || ev->type == PROTO_WEV_NONE) {
        return 0;
    }
    cur_str(&o, "ts=");
    cur_u64(&o, ev->ts_us / 1000000);
    for (int i = 5; i >= 0; i--) {
        frac[i] = (char)('0' + us % 10);
        us /= 10;
    }
    frac[6] = '\0';
    cur_str(&o, ".");
    cur_str(&o, frac);
    switch (ev->type) {
    case PROTO_WEV_DELETE:
    case PROTO_WEV_OVERWRITE:
    case PROTO_WEV_STALE:
    case PROTO_WEV_TAG:
    case PROTO_WEV_PREFIX:
    case PROTO_WEV_FLUSH:
        cur_field_u64(&o, "seq", ev->seq);
        cur_str(&o, " type=");
        cur_str(&o, wev_names[ev->type]);
        if (ev->type == PROTO_WEV_TAG) {
            cur_field_name(&o, "tag", ev->name, ev->len);
        } else if (ev->type == PROTO_WEV_PREFIX) {
            cur_field_name(&o, "prefix", ev->name, ev->len);
        } else if (ev->type == PROTO_WEV_FLUSH) {
            cur_str(&o, " at=");
            cur_i64(&o, ev->at);
        } else {
            cur_field_name(&o, "key", ev->name, ev->len);
            cur_field_u64(&o, "cas", ev->cas);
        }
        cur_str(&o, " origin=");
        cur_hex16(&o, ev->origin);
        break;
    case PROTO_WEV_SYNC:
        cur_str(&o, " type=sync node=");
        cur_hex16(&o, ev->node);
        cur_field_u64(&o, "next", ev->next);
        if (ev->at != 0) {
            cur_str(&o, " at=");
            cur_i64(&o, ev->at);
        }
        break;
    case PROTO_WEV_GAP:
        cur_str(&o, " type=gap");
        cur_field_u64(&o, "missed", ev->seq);
        cur_field_u64(&o, "next", ev->next);
        break;
    case PROTO_WEV_LAGGED:
    case PROTO_WEV_SHUTDOWN:
    case PROTO_WEV_PING:
        cur_str(&o, " type=");
        cur_str(&o, wev_names[ev->type]);
        cur_field_u64(&o, "next", ev->next);
        break;
    case PROTO_WEV_NONE:
    case PROTO_WEV_COUNT:
        return 0;
    }
    cur_str(&o, "\n");
    return o.overflow ? 0 : (size_t)(o.p - buf);
}

/* "<sec>.<usec>" into microseconds. */
static bool
parse_ts(const char *p, size_t n, uint64_t *out)
{
    const char *dot = memchr(p, '.', n);
    uint64_t sec, frac = 0;
    size_t fn;

    if (dot == NULL) {
        return parse_dec64(p, n, &sec) && (*out = sec * 1000000, true);
    }
    fn = (size_t)(p + n - (dot + 1));
    if (!parse_dec64(p, (size_t)(dot - p), &sec) || fn == 0 || fn > 6 ||
        !parse_dec64(dot + 1, fn, &frac)) {
        return false;
    }
    for (size_t i = fn; i < 6; i++) {
        frac *= 10;
    }
    *out = sec * 1000000 + frac;
    return true;
}

static bool
parse_dec_i64(const char *p, size_t n, int64_t *out)
{
    uint64_t v;
    bool neg = n > 0 && p[0] == '-';

    if (!parse_dec64(p + neg, n - neg, &v) || v > (uint64_t)INT64_MAX) {
        return false;
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

proto_status_t
proto_parse_watch_line(const char *buf, size_t len,
                       struct proto_watch_event *ev, char *namebuf,
                       size_t namecap, size_t *out_consumed)
{
    const char *nl = len > 0 ? memchr(buf, '\n', len) : NULL;
    const char *p, *end;
    bool ok = true, have_ts = false;

    memset(ev, 0, sizeof(*ev));
    *out_consumed = 0;
    if (nl == NULL) {
        return len > PROTO_WATCH_LINE_MAX ? PROTO_ECLOSE : PROTO_AGAIN;
    }
    *out_consumed = (size_t)(nl - buf) + 1;
    end = nl;
    if (end > buf && end[-1] == '\r') {
        end--;
    }
    p = buf;
    while (p < end) {
        const char *w = p, *eq;
        size_t n, kn, vn;
        const char *v;

        while (p < end && *p != ' ') {
            p++;
        }
        n = (size_t)(p - w);
        while (p < end && *p == ' ') {
            p++;
        }
        if (n == 0) {
            continue;
        }
        eq = memchr(w, '=', n);
        if (eq == NULL) {
            ok = false;
            break;
        }
        kn = (size_t)(eq - w);
        v = eq + 1;
        vn = n - kn - 1;
#define KEY_IS(s) (kn == sizeof(s) - 1 && memcmp(w, s, kn) == 0)
        if (KEY_IS("ts")) {
            ok = parse_ts(v, vn, &ev->ts_us);
            have_ts = true;
        } else if (KEY_IS("seq") || KEY_IS("missed")) {
            ok = parse_dec64(v, vn, &ev->seq);
        } else if (KEY_IS("next")) {
            ok = parse_dec64(v, vn, &ev->next);
        } else if (KEY_IS("cas")) {
            ok = parse_dec64(v, vn, &ev->cas);
        } else if (KEY_IS("origin")) {
            ok = parse_hex64(v, vn, &ev->origin);
        } else if (KEY_IS("node")) {
            ok = parse_hex64(v, vn, &ev->node);
        } else if (KEY_IS("at")) {
            ok = parse_dec_i64(v, vn, &ev->at);
        } else if (KEY_IS("key") || KEY_IS("tag") || KEY_IS("prefix")) {
            long d = proto_uri_decode(v, vn, namebuf, namecap);
            ok = d >= 0;
            ev->name = namebuf;
            ev->len = d >= 0 ? (size_t)d : 0;
        } else if (KEY_IS("type")) {
            ev->type = PROTO_WEV_NONE;
            for (unsigned t = 1; t < PROTO_WEV_COUNT; t++) {
                if (strlen(wev_names[t]) == vn &&
                    memcmp(wev_names[t], v, vn) == 0) {
                    ev->type = (proto_wev_t)t;
                    break;
                }
            }
        }
#undef KEY_IS
        if (!ok) {
            break;
        }
    }
    if (!ok || !have_ts) {
        memset(ev, 0, sizeof(*ev));
        return PROTO_EINVAL;
    }
    return PROTO_OK;
}
