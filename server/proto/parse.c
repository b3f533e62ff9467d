/*
 * parse.c - framing and the classic text commands.
 *
 * proto_parse() works on the unconsumed bytes of a connection and keeps no
 * state, so the same bytes always give the same answer.  It mirrors how
 * memcached 1.6.18 reads a command, step by step, because clients can see
 * every step:
 *
 *   1. Framing.  A command line ends at the first '\n'; a '\r' before it
 *      is dropped (only if the line has another byte), and a NUL byte ends
 *      the line's text early (memcached works on C strings).  Without a
 *      '\n', more than PROTO_LINE_MAX buffered bytes close the connection
 *      unless the line is a get/gets, which may be any length.
 *   2. Tokens.  The text is split on ' ' only (a tab belongs to a word)
 *      into at most 23 words; ntok counts a terminator as memcached's
 *      ntokens does (struct proto_line).
 *   3. Dispatch on the first word (the command table in proto.h), then
 *      each command checks its word count, "noreply", key length and
 *      numbers in memcached's order, since the first failing check picks
 *      the reply.
 *   4. Storage commands then take their data block (proto_take_block()).
 *
 * Layout: tables, number conversion, tokenizer, one function per command
 * family, proto_parse(), iterators.  Meta commands live in meta.c, Corral's
 * extensions (tagged stores, invalidation, watch invalidations) in ext.c.
 */
#include "proto.h"

#include <limits.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------ */
/* Tables                                                             */

struct name {
    const char *s;
    size_t len;
};

static const struct name cmd_names[PROTO_CMD_COUNT] = {
    [PROTO_CMD_NONE] = {"", 0},
#define CMD_NAME_(e, name) [PROTO_CMD_##e] = {name, sizeof(name) - 1},
    PROTO_CMD_TABLE(CMD_NAME_)
#undef CMD_NAME_
};

/* Error lines carry their "\r\n"; proto_err_str() leaves it out. */
static const struct name err_lines[PROTO_ERR_COUNT] = {
#define ERR_LINE_(e, s) [PROTO_ERR_##e] = {s "\r\n", sizeof(s "\r\n") - 1},
    PROTO_ERR_TABLE(ERR_LINE_)
#undef ERR_LINE_
};

static const struct name watch_names[PROTO_WATCH_BIT_COUNT] = {
#define WATCH_NAME_(e, s) [PROTO_WATCH_BIT_##e] = {s, sizeof(s) - 1},
    PROTO_WATCH_TABLE(WATCH_NAME_)
#undef WATCH_NAME_
};

void
proto_limits_init(struct proto_limits *lim)
{
    lim->key_max = PROTO_KEY_MAX;
    lim->line_max = PROTO_LINE_MAX;
    lim->multiget_line_max = PROTO_MULTIGET_LINE_MAX;
    lim->value_max = PROTO_VALUE_MAX;
}

const char *
proto_cmd_name(proto_cmd_type_t type)
{
    if ((unsigned)type >= PROTO_CMD_COUNT) {
        return "";
    }
    return cmd_names[type].s;
}

proto_cmd_type_t
proto_cmd_lookup(const char *name, size_t len)
{
    for (unsigned i = 1; i < PROTO_CMD_COUNT; i++) {
        if (cmd_names[i].len == len && memcmp(cmd_names[i].s, name, len) == 0) {
            return (proto_cmd_type_t)i;
        }
    }
    return PROTO_CMD_NONE;
}

const char *
proto_err_line(proto_err_t err, size_t *out_len)
{
    if ((unsigned)err >= PROTO_ERR_COUNT) {
        err = PROTO_ERR_NONE;
    }
    if (out_len != NULL) {
        *out_len = err_lines[err].len;
    }
    return err_lines[err].s;
}

const char *
proto_err_str(proto_err_t err)
{
    /* the same text without "\r\n", from the same table */
    static const char *const strs[PROTO_ERR_COUNT] = {
#define ERR_STR_(e, s) [PROTO_ERR_##e] = s,
        PROTO_ERR_TABLE(ERR_STR_)
#undef ERR_STR_
    };

    if ((unsigned)err >= PROTO_ERR_COUNT) {
        return "";
    }
    return strs[err];
}

/* ------------------------------------------------------------------ */
/* Numbers, the way memcached's safe_strto* read them                 */

/* isspace() in the C locale, which memcached runs in. */
static bool
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
           c == '\r';
}

/*
 * strtoull-style scan: white space, a sign, decimal digits, then the end
 * or white space.  *out_mag is the magnitude; *out_range says it did not
 * fit in 64 bits (strto* would set ERANGE).
 */
static bool
scan_number(const char *p, size_t n, bool *out_neg, uint64_t *out_mag,
            bool *out_range)
{
    size_t i = 0, first;
    uint64_t v = 0;
    bool range = false;

    while (i < n && is_space(p[i])) {
        i++;
    }
    *out_neg = false;
    if (i < n && (p[i] == '+' || p[i] == '-')) {
        *out_neg = p[i] == '-';
        i++;
    }
    first = i;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            range = true;
        } else {
            v = v * 10 + d;
        }
        i++;
    }
    if (i == first) {
        return false; /* no digits: strto* consumed nothing */
    }
    if (i < n && !is_space(p[i])) {
        return false; /* trailing garbage */
    }
    *out_mag = v;
    *out_range = range;
    return true;
}

/* The low 32 bits of @v as a two's complement int32, without relying on
 * implementation-defined conversions. */
static int32_t
low32_signed(uint64_t v)
{
    uint32_t u = (uint32_t)v;

    if (u <= (uint32_t)INT32_MAX) {
        return (int32_t)u;
    }
    return -(int32_t)(UINT32_MAX - u) - 1;
}

bool
proto_num_i32(const char *p, size_t n, int32_t *out)
{
    bool neg, range;
    uint64_t mag;

    if (!scan_number(p, n, &neg, &mag, &range) || range) {
        return false;
    }
    /* strtol's range is that of a 64-bit long */
    if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > (uint64_t)INT64_MAX) {
        return false;
    }
    *out = low32_signed(neg ? 0 - mag : mag);
    return true;
}

bool
proto_num_u64(const char *p, size_t n, uint64_t *out)
{
    bool neg, range;
    uint64_t mag, v;

    if (!scan_number(p, n, &neg, &mag, &range) || range) {
        return false;
    }
    v = neg ? 0 - mag : mag;
    /* memcached refuses a '-' only when the result looks negative */
    if ((v >> 63) != 0 && memchr(p, '-', n) != NULL) {
        return false;
    }
    *out = v;
    return true;
}

bool
proto_num_u32(const char *p, size_t n, uint32_t *out)
{
    uint64_t v;

    if (!proto_num_u64(p, n, &v)) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

bool
proto_tok_is(const struct proto_tok *t, const char *s)
{
    size_t n = strlen(s);

    return t->len == n && memcmp(t->p, s, n) == 0;
}

/* ------------------------------------------------------------------ */
/* Shared steps                                                       */

proto_status_t
proto_fail(struct proto_cmd *cmd, proto_err_t err, size_t consumed,
           size_t swallow, size_t *out_consumed)
{
    cmd->err = err;
    cmd->swallow = swallow;
    *out_consumed = consumed;
    return PROTO_EINVAL;
}

proto_status_t
proto_take_block(struct proto_cmd *cmd, const char *buf, size_t len,
                 size_t line_size, size_t vlen,
                 const struct proto_limits *lim, size_t *out_consumed)
{
    size_t total = line_size + vlen + 2;
    const char *data = buf + line_size;

    if (vlen > lim->value_max) {
        return proto_fail(cmd, PROTO_ERR_TOO_LARGE, line_size, vlen + 2,
                          out_consumed);
    }
    if (len < total) {
        cmd->need = total;
        return PROTO_AGAIN;
    }
    if (data[vlen] != '\r' || data[vlen + 1] != '\n') {
        /* memcached read the block and its two bytes all the same */
        return proto_fail(cmd, PROTO_ERR_BAD_CHUNK, total, 0, out_consumed);
    }
    cmd->value = data;
    cmd->nvalue = vlen;
    *out_consumed = total;
    return PROTO_OK;
}

/*
 * memcached's tokenize_command(): words split on ' ', at most 23 of them;
 * the 23rd word ends the split even if more text follows.
 */
static void
tokenize(struct proto_line *ln)
{
    const char *t = ln->text;
    size_t n = ln->len, s = 0, e = 0, nt = 0;

    for (; e < n; e++) {
        if (t[e] != ' ') {
            continue;
        }
        if (s != e) {
            ln->tok[nt].p = t + s;
            ln->tok[nt].len = e - s;
            nt++;
            if (nt == PROTO_TOKENS_MAX - 1) {
                s = e + 1;
                e = s;
                break;
            }
        }
        s = e + 1;
    }
    if (s < e) {
        ln->tok[nt].p = t + s;
        ln->tok[nt].len = e - s;
        nt++;
    }
    ln->ntok = nt + 1;
}

/* Is the last word before the terminator "noreply"? (set_noreply_maybe) */
static bool
noreply_maybe(const struct proto_line *ln)
{
    return ln->ntok >= 2 && proto_tok_is(&ln->tok[ln->ntok - 2], "noreply");
}

static bool
key_too_long(const struct proto_tok *t, const struct proto_limits *lim)
{
    return t->len > lim->key_max;
}

/* ------------------------------------------------------------------ */
/* Commands                                                           */

static proto_status_t
parse_get(struct proto_cmd *cmd, const struct proto_line *ln,
          const struct proto_limits *lim, size_t *out_consumed)
{
    size_t first = 1, n = 0;
    const char *end = ln->text + ln->len, *start;
    struct proto_iter it;
    const char *w;
    size_t wlen;

    if (ln->ntok < 3) {
        return proto_fail(cmd, PROTO_ERR_ERROR, ln->size, 0, out_consumed);
    }
    if (cmd->type == PROTO_CMD_GAT || cmd->type == PROTO_CMD_GATS) {
        if (!proto_num_i32(ln->tok[1].p, ln->tok[1].len, &cmd->exptime)) {
            return proto_fail(cmd, PROTO_ERR_BAD_EXPTIME, ln->size, 0,
                              out_consumed);
        }
        first = 2;
    }
    start = first < ln->ntok - 1 ? ln->tok[first].p : end;
    cmd->keys = start;
    it.p = start;
    it.end = end;
    while (proto_iter_next(&it, &w, &wlen)) {
        if (wlen > lim->key_max) {
            /* the keys before this one, which memcached processed */
            cmd->keys_len = (size_t)(w - start);
            cmd->nkeys = n;
            return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                              out_consumed);
        }
        n++;
    }
    cmd->keys_len = (size_t)(end - start);
    cmd->nkeys = n;
    *out_consumed = ln->size;
    return PROTO_OK;
}

static proto_status_t
parse_store(struct proto_cmd *cmd, const struct proto_line *ln,
            const char *buf, size_t len, const struct proto_limits *lim,
            size_t *out_consumed)
{
    bool is_cas = cmd->type == PROTO_CMD_CAS;
    size_t words = is_cas ? 7 : 6;
    int32_t vlen;

    if (ln->ntok != words && ln->ntok != words + 1) {
        return proto_fail(cmd, PROTO_ERR_ERROR, ln->size, 0, out_consumed);
    }
    cmd->noreply = noreply_maybe(ln);
    if (key_too_long(&ln->tok[1], lim)) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                          out_consumed);
    }
    cmd->key = ln->tok[1].p;
    cmd->nkey = ln->tok[1].len;
    if (!proto_num_u32(ln->tok[2].p, ln->tok[2].len, &cmd->flags) ||
        !proto_num_i32(ln->tok[3].p, ln->tok[3].len, &cmd->exptime) ||
        !proto_num_i32(ln->tok[4].p, ln->tok[4].len, &vlen) ||
        (is_cas && !proto_num_u64(ln->tok[5].p, ln->tok[5].len, &cmd->cas))) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                          out_consumed);
    }
    if (vlen < 0 || vlen > INT_MAX - 2) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                          out_consumed);
    }
    cmd->store_mode = proto_store_mode(cmd->type);
    return proto_take_block(cmd, buf, len, ln->size, (size_t)vlen, lim,
                            out_consumed);
}

proto_store_mode_t
proto_store_mode(proto_cmd_type_t type)
{
    switch (type) {
    case PROTO_CMD_ADD:
    case PROTO_CMD_TADD:
        return PROTO_STORE_ADD;
    case PROTO_CMD_REPLACE:
    case PROTO_CMD_TREPLACE:
        return PROTO_STORE_REPLACE;
    case PROTO_CMD_APPEND:
        return PROTO_STORE_APPEND;
    case PROTO_CMD_PREPEND:
        return PROTO_STORE_PREPEND;
    case PROTO_CMD_CAS:
    case PROTO_CMD_TCAS:
        return PROTO_STORE_CAS;
    default:
        return PROTO_STORE_SET;
    }
}

static proto_status_t
parse_delete(struct proto_cmd *cmd, const struct proto_line *ln,
             const struct proto_limits *lim, size_t *out_consumed)
{
    if (ln->ntok < 3 || ln->ntok > 5) {
        return proto_fail(cmd, PROTO_ERR_ERROR, ln->size, 0, out_consumed);
    }
    if (ln->ntok > 3) {
        /* "delete <key> 0" is a relic memcached still accepts */
        bool zero = proto_tok_is(&ln->tok[2], "0");
        bool valid;

        cmd->noreply = noreply_maybe(ln);
        valid = (ln->ntok == 4 && (zero || cmd->noreply)) ||
                (ln->ntok == 5 && zero && cmd->noreply);
        if (!valid) {
            return proto_fail(cmd, PROTO_ERR_DELETE_USAGE, ln->size, 0,
                              out_consumed);
        }
    }
    if (key_too_long(&ln->tok[1], lim)) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                          out_consumed);
    }
    cmd->key = ln->tok[1].p;
    cmd->nkey = ln->tok[1].len;
    *out_consumed = ln->size;
    return PROTO_OK;
}

/* incr, decr and touch: <key> <number> [noreply] */
static proto_status_t
parse_key_num(struct proto_cmd *cmd, const struct proto_line *ln,
              const struct proto_limits *lim, size_t *out_consumed)
{
    const struct proto_tok *num = &ln->tok[2];
    bool ok;

    if (ln->ntok != 4 && ln->ntok != 5) {
        return proto_fail(cmd, PROTO_ERR_ERROR, ln->size, 0, out_consumed);
    }
    cmd->noreply = noreply_maybe(ln);
    if (key_too_long(&ln->tok[1], lim)) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                          out_consumed);
    }
    cmd->key = ln->tok[1].p;
    cmd->nkey = ln->tok[1].len;
    if (cmd->type == PROTO_CMD_TOUCH) {
        ok = proto_num_i32(num->p, num->len, &cmd->exptime);
    } else {
        ok = proto_num_u64(num->p, num->len, &cmd->delta);
    }
    if (!ok) {
        return proto_fail(cmd,
                          cmd->type == PROTO_CMD_TOUCH ? PROTO_ERR_BAD_EXPTIME
                                                       : PROTO_ERR_BAD_DELTA,
                          ln->size, 0, out_consumed);
    }
    *out_consumed = ln->size;
    return PROTO_OK;
}

static proto_status_t
parse_flush_all(struct proto_cmd *cmd, const struct proto_line *ln,
                size_t *out_consumed)
{
    if (ln->ntok < 2 || ln->ntok > 4) {
        return proto_fail(cmd, PROTO_ERR_ERROR, ln->size, 0, out_consumed);
    }
    cmd->noreply = noreply_maybe(ln);
    /* a delay is read whenever the words are not just [noreply] */
    if (ln->ntok != (cmd->noreply ? 3u : 2u) &&
        !proto_num_i32(ln->tok[1].p, ln->tok[1].len, &cmd->exptime)) {
        return proto_fail(cmd, PROTO_ERR_BAD_EXPTIME, ln->size, 0,
                          out_consumed);
    }
    *out_consumed = ln->size;
    return PROTO_OK;
}

/* verbosity <level> and cache_memlimit <megabytes>, [noreply] */
static proto_status_t
parse_verbosity(struct proto_cmd *cmd, const struct proto_line *ln,
                size_t *out_consumed)
{
    if (ln->ntok != 3 && ln->ntok != 4) {
        return proto_fail(cmd, PROTO_ERR_ERROR, ln->size, 0, out_consumed);
    }
    cmd->noreply = noreply_maybe(ln);
    if (!proto_num_u32(ln->tok[1].p, ln->tok[1].len, &cmd->level)) {
        /* memcached: "CLIENT_ERROR bad command line format" for the one,
         * "ERROR" for the other */
        return proto_fail(cmd,
                          cmd->type == PROTO_CMD_VERBOSITY
                              ? PROTO_ERR_BAD_FORMAT
                              : PROTO_ERR_ERROR,
                          ln->size, 0, out_consumed);
    }
    *out_consumed = ln->size;
    return PROTO_OK;
}

/* stats and watch: everything after the command word */
static void
set_args(struct proto_cmd *cmd, const struct proto_line *ln)
{
    const char *end = ln->text + ln->len;
    struct proto_iter it;
    const char *w;
    size_t wlen, n = 0;

    cmd->args = ln->tok[0].p + ln->tok[0].len;
    cmd->args_len = (size_t)(end - cmd->args);
    proto_args_begin(&it, cmd);
    while (proto_iter_next(&it, &w, &wlen)) {
        n++;
    }
    cmd->nargs = n;
}

int
proto_watch_lookup(const char *p, size_t n)
{
    for (unsigned b = 0; b < PROTO_WATCH_BIT_COUNT; b++) {
        if (n == watch_names[b].len && memcmp(p, watch_names[b].s, n) == 0) {
            return (int)b;
        }
    }
    return -1;
}

static proto_status_t
parse_watch(struct proto_cmd *cmd, const struct proto_line *ln,
            size_t *out_consumed)
{
    set_args(cmd, ln);
    for (size_t i = 1; i < ln->ntok - 1; i++) {
        if (proto_watch_lookup(ln->tok[i].p, ln->tok[i].len) ==
            PROTO_WATCH_BIT_INVALIDATIONS) {
            return proto_parse_watch_invalidations(cmd, ln, out_consumed);
        }
    }
    cmd->noreply = noreply_maybe(ln);
    if (ln->ntok <= 2) {
        cmd->watch = PROTO_WATCH(FETCHERS);
        *out_consumed = ln->size;
        return PROTO_OK;
    }
    /* memcached looks at the words its tokenizer kept, no further */
    for (size_t i = 1; i < ln->ntok - 1; i++) {
        unsigned b;

        for (b = 0; b < PROTO_WATCH_BIT_COUNT; b++) {
            if (ln->tok[i].len == watch_names[b].len &&
                memcmp(ln->tok[i].p, watch_names[b].s, watch_names[b].len) ==
                    0) {
                break;
            }
        }
        if (b == PROTO_WATCH_BIT_COUNT) {
            cmd->watch = 0;
            return proto_fail(cmd, PROTO_ERR_ERROR, ln->size, 0,
                              out_consumed);
        }
        cmd->watch |= 1u << b;
    }
    *out_consumed = ln->size;
    return PROTO_OK;
}

static proto_status_t
parse_shutdown(struct proto_cmd *cmd, const struct proto_line *ln,
               size_t *out_consumed)
{
    if (ln->ntok == 2) {
        cmd->shutdown = PROTO_SHUTDOWN_NORMAL;
    } else if (ln->ntok == 3 && proto_tok_is(&ln->tok[1], "graceful")) {
        cmd->shutdown = PROTO_SHUTDOWN_GRACEFUL;
    } else {
        cmd->shutdown = PROTO_SHUTDOWN_INVALID;
    }
    *out_consumed = ln->size;
    return PROTO_OK;
}

/*
 * No '\n' yet.  memcached waits, except that once more than line_max bytes
 * are buffered only a get/gets (after at most 100 spaces) may go on.
 */
static proto_status_t
unterminated(const char *buf, size_t len, const struct proto_limits *lim)
{
    size_t lead = 0;

    if (len <= lim->line_max) {
        return PROTO_AGAIN;
    }
    while (lead < len && buf[lead] == ' ') {
        lead++;
    }
    if (lead > PROTO_LINE_LEAD_MAX) {
        return PROTO_ECLOSE;
    }
    if (!(len - lead >= 4 && memcmp(buf + lead, "get ", 4) == 0) &&
        !(len - lead >= 5 && memcmp(buf + lead, "gets ", 5) == 0)) {
        return PROTO_ECLOSE;
    }
    if (lim->multiget_line_max != 0 && len > lim->multiget_line_max) {
        return PROTO_ECLOSE;
    }
    return PROTO_AGAIN;
}

proto_status_t
proto_parse(struct proto_cmd *cmd, const char *buf, size_t len,
            const struct proto_limits *lim, size_t *out_consumed)
{
    struct proto_line ln;
    const char *nl, *nul;

    /* key_buf is scratch space: clearing it would cost for nothing */
    memset(cmd, 0, offsetof(struct proto_cmd, key_buf));
    *out_consumed = 0;
    nl = len > 0 ? memchr(buf, '\n', len) : NULL;
    if (nl == NULL) {
        return unterminated(buf, len, lim);
    }
    ln.text = buf;
    ln.len = (size_t)(nl - buf);
    ln.size = ln.len + 1;
    if (ln.len > 1 && buf[ln.len - 1] == '\r') {
        ln.len--;
    }
    nul = memchr(buf, '\0', ln.len);
    if (nul != NULL) {
        ln.len = (size_t)(nul - buf);
    }
    tokenize(&ln);
    if (ln.ntok < 2 || ln.tok[0].len < 2) {
        return proto_fail(cmd, PROTO_ERR_ERROR, ln.size, 0, out_consumed);
    }
    cmd->type = proto_cmd_lookup(ln.tok[0].p, ln.tok[0].len);
    switch (cmd->type) {
    case PROTO_CMD_GET:
    case PROTO_CMD_GETS:
    case PROTO_CMD_GAT:
    case PROTO_CMD_GATS:
    case PROTO_CMD_BGET:
        return parse_get(cmd, &ln, lim, out_consumed);
    case PROTO_CMD_SET:
    case PROTO_CMD_ADD:
    case PROTO_CMD_REPLACE:
    case PROTO_CMD_APPEND:
    case PROTO_CMD_PREPEND:
    case PROTO_CMD_CAS:
        return parse_store(cmd, &ln, buf, len, lim, out_consumed);
    case PROTO_CMD_DELETE:
        return parse_delete(cmd, &ln, lim, out_consumed);
    case PROTO_CMD_INCR:
    case PROTO_CMD_DECR:
    case PROTO_CMD_TOUCH:
        return parse_key_num(cmd, &ln, lim, out_consumed);
    case PROTO_CMD_FLUSH_ALL:
        return parse_flush_all(cmd, &ln, out_consumed);
    case PROTO_CMD_VERBOSITY:
    case PROTO_CMD_CACHE_MEMLIMIT:
        return parse_verbosity(cmd, &ln, out_consumed);
    case PROTO_CMD_STATS:
        set_args(cmd, &ln);
        *out_consumed = ln.size;
        return PROTO_OK;
    case PROTO_CMD_WATCH:
        return parse_watch(cmd, &ln, out_consumed);
    case PROTO_CMD_SHUTDOWN:
        return parse_shutdown(cmd, &ln, out_consumed);
    case PROTO_CMD_VERSION:
    case PROTO_CMD_QUIT:
    case PROTO_CMD_MN:
        /* extra words are ignored */
        *out_consumed = ln.size;
        return PROTO_OK;
    case PROTO_CMD_MG:
    case PROTO_CMD_MS:
    case PROTO_CMD_MD:
    case PROTO_CMD_MA:
    case PROTO_CMD_ME:
        return proto_parse_meta(cmd, &ln, buf, len, lim, out_consumed);
    case PROTO_CMD_TSET:
    case PROTO_CMD_TADD:
    case PROTO_CMD_TREPLACE:
    case PROTO_CMD_TCAS:
    case PROTO_CMD_INVALIDATE_TAG:
    case PROTO_CMD_INVALIDATE_PREFIX:
        return proto_parse_ext(cmd, &ln, buf, len, lim, out_consumed);
    case PROTO_CMD_NONE:
    case PROTO_CMD_COUNT:
        break;
    }
    return proto_fail(cmd, PROTO_ERR_ERROR, ln.size, 0, out_consumed);
}

/* ------------------------------------------------------------------ */
/* Iteration                                                          */

void
proto_keys_begin(struct proto_iter *it, const struct proto_cmd *cmd)
{
    it->p = cmd->keys;
    it->end = cmd->keys == NULL ? NULL : cmd->keys + cmd->keys_len;
}

void
proto_args_begin(struct proto_iter *it, const struct proto_cmd *cmd)
{
    it->p = cmd->args;
    it->end = cmd->args == NULL ? NULL : cmd->args + cmd->args_len;
}

bool
proto_iter_next(struct proto_iter *it, const char **out_word,
                size_t *out_len)
{
    const char *p = it->p, *w;

    if (p == NULL) {
        return false;
    }
    while (p < it->end && *p == ' ') {
        p++;
    }
    if (p == it->end) {
        it->p = p;
        return false;
    }
    w = p;
    while (p < it->end && *p != ' ') {
        p++;
    }
    it->p = p;
    *out_word = w;
    *out_len = (size_t)(p - w);
    return true;
}
