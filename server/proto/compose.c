/*
 * compose.c - reply lines, written into caller buffers.
 *
 * Replies are built as iovecs by the server: a header line composed here
 * into a small buffer, then the item's value pointed to where the engine
 * keeps it (zero copy), then PROTO_REPLY_CRLF.  So every composer writes
 * one line only, never a value.  Fixed lines are static strings.
 *
 * Every composer uses a struct out: a cursor that stops writing and
 * remembers the overflow when the buffer is too small, so the callers
 * check once at the end and return 0.
 */
#include "proto.h"

#include <string.h>

/* ------------------------------------------------------------------ */
/* Fixed lines                                                        */

static const struct {
    const char *s;
    size_t len;
} reply_lines[PROTO_REPLY_COUNT] = {
#define REPLY_LINE_(e, s) [PROTO_REPLY_##e] = {s "\r\n", sizeof(s "\r\n") - 1},
    PROTO_REPLY_TABLE(REPLY_LINE_)
#undef REPLY_LINE_
};

static const char *const meta_codes[PROTO_META_CODE_COUNT] = {
#define META_CODE_(e, s) [PROTO_META_##e] = s,
    PROTO_META_CODE_TABLE(META_CODE_)
#undef META_CODE_
};

const char *
proto_reply_line(proto_reply_t r, size_t *out_len)
{
    if ((unsigned)r >= PROTO_REPLY_COUNT) {
        r = PROTO_REPLY_CRLF;
    }
    if (out_len != NULL) {
        *out_len = reply_lines[r].len;
    }
    return reply_lines[r].s;
}

/* ------------------------------------------------------------------ */
/* The write cursor                                                   */

struct out {
    char *p;
    char *end;
    bool overflow;
};

static void
put(struct out *o, const void *s, size_t n)
{
    if (n == 0) {
        return;
    }
    if (o->overflow || (size_t)(o->end - o->p) < n) {
        o->overflow = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void
put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void
put_char(struct out *o, char c)
{
    put(o, &c, 1);
}

static void
put_u64(struct out *o, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(o, tmp + i, sizeof(tmp) - i);
}

static void
put_i64(struct out *o, int64_t v)
{
    if (v < 0) {
        put_char(o, '-');
        /* negate in unsigned arithmetic: INT64_MIN has no positive */
        put_u64(o, 0 - (uint64_t)v);
    } else {
        put_u64(o, (uint64_t)v);
    }
}

/* A key, base64-encoded when @binary. */
static void
put_key(struct out *o, const char *key, size_t nkey, bool binary)
{
    size_t n;

    if (!binary) {
        put(o, key, nkey);
        return;
    }
    if (o->overflow) {
        return;
    }
    n = proto_base64_encode(key, nkey, o->p, (size_t)(o->end - o->p));
    if (n == 0 && nkey > 0) {
        o->overflow = true;
        return;
    }
    o->p += n;
}

static size_t
finish(struct out *o, char *buf)
{
    return o->overflow ? 0 : (size_t)(o->p - buf);
}

/* ------------------------------------------------------------------ */
/* Classic                                                            */

size_t
proto_compose_value(char *buf, size_t cap, const char *key, size_t nkey,
                    uint32_t flags, size_t nbytes, bool with_cas,
                    uint64_t cas)
{
    struct out o = {buf, buf + cap, false};

    put(&o, "VALUE ", 6);
    put(&o, key, nkey);
    put_char(&o, ' ');
    put_u64(&o, flags);
    put_char(&o, ' ');
    put_u64(&o, nbytes);
    if (with_cas) {
        put_char(&o, ' ');
        put_u64(&o, cas);
    }
    put(&o, "\r\n", 2);
    return finish(&o, buf);
}

size_t
proto_compose_u64(char *buf, size_t cap, uint64_t n)
{
    struct out o = {buf, buf + cap, false};

    put_u64(&o, n);
    put(&o, "\r\n", 2);
    return finish(&o, buf);
}

size_t
proto_compose_line(char *buf, size_t cap, const char *prefix,
                   const char *msg)
{
    struct out o = {buf, buf + cap, false};

    put_str(&o, prefix);
    if (msg != NULL && msg[0] != '\0') {
        put_char(&o, ' ');
        put_str(&o, msg);
    }
    put(&o, "\r\n", 2);
    return finish(&o, buf);
}

size_t
proto_compose_stat(char *buf, size_t cap, const char *name,
                   const char *value)
{
    struct out o = {buf, buf + cap, false};

    put(&o, "STAT ", 5);
    put_str(&o, name);
    put_char(&o, ' ');
    put_str(&o, value);
    put(&o, "\r\n", 2);
    return finish(&o, buf);
}

/* ------------------------------------------------------------------ */
/* Meta                                                               */

bool
proto_meta_quiet(const struct proto_cmd *cmd, proto_meta_code_t code)
{
    if (!cmd->meta.quiet) {
        return false;
    }
    switch (cmd->type) {
    case PROTO_CMD_MG:
        return code == PROTO_META_EN;
    case PROTO_CMD_MS:
    case PROTO_CMD_MD:
        return code == PROTO_META_HD;
    case PROTO_CMD_MA:
        return code == PROTO_META_HD || code == PROTO_META_VA;
    default:
        return false;
    }
}

size_t
proto_compose_meta(char *buf, size_t cap, proto_meta_code_t code,
                   size_t vlen, const struct proto_cmd *cmd,
                   const struct proto_meta_item *item)
{
    struct out o = {buf, buf + cap, false};
    uint64_t have = item != NULL ? item->have : 0;
    const struct proto_meta *m = &cmd->meta;

    if ((unsigned)code >= PROTO_META_CODE_COUNT) {
        return 0;
    }
    put(&o, meta_codes[code], 2);
    if (code == PROTO_META_VA) {
        put_char(&o, ' ');
        put_u64(&o, vlen);
    }
    for (size_t i = 0; i < m->nflags; i++) {
        char f = m->order[i];

        if (f != 'O' && f != 'k' && (have & PROTO_MF(f)) == 0) {
            continue;
        }
        switch (f) {
        case 'O':
            put(&o, " O", 2);
            put(&o, m->opaque, m->nopaque);
            break;
        case 'k':
            put(&o, " k", 2);
            if (item != NULL && item->key != NULL) {
                put_key(&o, item->key, item->nkey, item->key_binary);
                if (item->key_binary) {
                    put(&o, " b", 2);
                }
            } else {
                put_key(&o, cmd->key, cmd->nkey, m->base64);
                if (m->base64) {
                    put(&o, " b", 2);
                }
            }
            break;
        case 'c':
            put(&o, " c", 2);
            put_u64(&o, item->cas);
            break;
        case 'f':
            put(&o, " f", 2);
            put_u64(&o, item->flags);
            break;
        case 'h':
            put(&o, item->fetched ? " h1" : " h0", 3);
            break;
        case 'l':
            put(&o, " l", 2);
            put_u64(&o, item->last_access);
            break;
        case 's':
            put(&o, " s", 2);
            put_u64(&o, item->size);
            break;
        case 't':
            put(&o, " t", 2);
            put_i64(&o, item->ttl);
            break;
        default:
            break;
        }
    }
    if (item != NULL) {
        /* memcached's order: Z, then X, then W */
        if (item->token_sent) {
            put(&o, " Z", 2);
        }
        if (item->stale) {
            put(&o, " X", 2);
        }
        if (item->won) {
            put(&o, " W", 2);
        }
    }
    put(&o, "\r\n", 2);
    return finish(&o, buf);
}

size_t
proto_compose_me(char *buf, size_t cap, const char *key, size_t nkey,
                 bool key_binary, const struct proto_me_info *info)
{
    struct out o = {buf, buf + cap, false};

    put(&o, "ME ", 3);
    put_key(&o, key, nkey, key_binary);
    put(&o, " exp=", 5);
    put_i64(&o, info->exp);
    put(&o, " la=", 4);
    put_u64(&o, info->la);
    put(&o, " cas=", 5);
    put_u64(&o, info->cas);
    put_str(&o, info->fetched ? " fetch=yes" : " fetch=no");
    put(&o, " cls=", 5);
    put_u64(&o, info->cls);
    put(&o, " size=", 6);
    put_u64(&o, info->size);
    put(&o, "\r\n", 2);
    return finish(&o, buf);
}
