/*
 * meta.c - the meta commands mg, ms, md, ma and me, and base64.
 *
 * A meta command is "<cm> <key> [<datalen>] <flag>*": each flag is one
 * letter, optionally followed by a token ("T30", "Oabc").  memcached
 * 1.6.18 reads the flags of every meta command with one routine, so every
 * command accepts every known flag (mg takes ms's F and ignores it); this
 * file does the same, in preparse(), and then applies each command's own
 * checks in memcached's order:
 *
 *   mg  words >= 3 (else ERROR), key <= 250, words <= 20, flags, then the
 *       opaque length (memcached checks it while answering, after the
 *       lookup; the command is fully parsed so exec may run it first).
 *   ms  words >= 3, key, a datalen word, words <= 20, datalen; from here
 *       on every error swallows the data block: flags, opaque, M mode,
 *       then the block itself (too large, bad chunk).
 *   md  words >= 3, key, words <= 20, flags (any flag error reads
 *       "invalid or duplicate flag"), opaque.
 *   ma  as md, then the M mode, then the opaque (after the arithmetic,
 *       in memcached; the command is fully parsed, as for mg).
 *   me  words >= 3 (else a CLIENT_ERROR), key, and "b" as the third word.
 *
 * Within preparse() the first repeated or unknown flag stops the scan with
 * its own message; a bad flag token only records its message and the scan
 * goes on, so the last such message wins (F records none and leaves the
 * default "bad command line format").  That is memcached's behaviour and
 * the tests pin it.
 *
 * The b flag decodes the key (base64) into cmd->key_buf; the key length
 * limit applies to the encoded form, as in memcached.  memcached 1.6.18
 * has no E flag: "mg a E5" is an invalid flag there, and here.
 *
 * Two flags are Corral's own, in letters memcached 1.6.18 refuses with
 * "CLIENT_ERROR invalid flag" (so a request meant for Corral fails
 * cleanly on memcached instead of meaning something else there):
 *   G<tags>  a comma-separated tag list (ext.c); only ms uses it.
 *   A[beta]  refresh Ahead: mg hands out the recache token (W) early with
 *            XFetch's probability; beta is a decimal number in (0, 1000]
 *            with at most three decimals ("A", "A2", "A0.5"), default 1.
 * Every meta command accepts both, as memcached reads every flag on every
 * meta command.
 */
#include "proto.h"

#include <limits.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------ */
/* Base64                                                             */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Value of a base64 character; '=' counts as 0; -1 for anything else. */
static int
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    if (c == '=') {
        return 0;
    }
    return -1;
}

/*
 * Decoding, as memcached does it:
 *   1. count the characters that are in the alphabet or '='; the others
 *      are skipped everywhere.  The count must be a nonzero multiple of 4.
 *   2. decode groups of four into three bytes;
 *   3. after the first group holding '=' (wherever in the group), drop one
 *      byte per '=' (at most two) and stop: anything after is ignored.
 */
size_t
proto_base64_decode(const char *src, size_t n, char *dst, size_t cap)
{
    unsigned char group[4];
    size_t count = 0, out = 0, g = 0;
    unsigned pad = 0;

    for (size_t i = 0; i < n; i++) {
        if (b64_value((unsigned char)src[i]) >= 0) {
            count++;
        }
    }
    if (count == 0 || count % 4 != 0 || count / 4 * 3 > cap) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)src[i]);

        if (v < 0) {
            continue;
        }
        if (src[i] == '=') {
            pad++;
        }
        group[g++] = (unsigned char)v;
        if (g < 4) {
            continue;
        }
        dst[out++] = (char)((group[0] << 2) | (group[1] >> 4));
        dst[out++] = (char)(((group[1] & 0x0f) << 4) | (group[2] >> 2));
        dst[out++] = (char)(((group[2] & 0x03) << 6) | group[3]);
        g = 0;
        if (pad > 0) {
            if (pad > 2) {
                return 0;
            }
            out -= pad;
            break;
        }
    }
    return out;
}

size_t
proto_base64_encode(const char *src, size_t n, char *dst, size_t cap)
{
    const unsigned char *in = (const unsigned char *)src;
    size_t need = (n + 2) / 3 * 4, out = 0, i = 0;

    if (need > cap) {
        return 0;
    }
    for (; n - i >= 3; i += 3) {
        dst[out++] = b64_alphabet[in[i] >> 2];
        dst[out++] = b64_alphabet[((in[i] & 0x03) << 4) | (in[i + 1] >> 4)];
        dst[out++] =
            b64_alphabet[((in[i + 1] & 0x0f) << 2) | (in[i + 2] >> 6)];
        dst[out++] = b64_alphabet[in[i + 2] & 0x3f];
    }
    if (n - i == 1) {
        dst[out++] = b64_alphabet[in[i] >> 2];
        dst[out++] = b64_alphabet[(in[i] & 0x03) << 4];
        dst[out++] = '=';
        dst[out++] = '=';
    } else if (n - i == 2) {
        dst[out++] = b64_alphabet[in[i] >> 2];
        dst[out++] = b64_alphabet[((in[i] & 0x03) << 4) | (in[i + 1] >> 4)];
        dst[out++] = b64_alphabet[(in[i + 1] & 0x0f) << 2];
        dst[out++] = '=';
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* Flags                                                              */

/*
 * A's token: "" (beta 1) or <digits>[.<digits>], at most three decimals,
 * as thousandths in (0, 1000000].  Not strtod: the parser stays
 * locale-free and exact.
 */
static bool
early_beta(const char *p, size_t n, uint32_t *out)
{
    uint64_t v = 0;
    size_t i = 0, ndig = 0, nfrac = 0;

    if (n == 0) {
        *out = 1000;
        return true;
    }
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, ndig++) {
        v = v * 10 + (uint64_t)(p[i] - '0');
        if (v > 1000) {
            return false;
        }
    }
    if (i < n && p[i] == '.') {
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++, nfrac++) {
            if (nfrac == 3) {
                return false;
            }
            v = v * 10 + (uint64_t)(p[i] - '0');
        }
        if (nfrac == 0) {
            return false;
        }
    }
    if (i != n || ndig == 0) {
        return false;
    }
    for (; nfrac < 3; nfrac++) {
        v *= 10;
    }
    if (v == 0 || v > 1000000) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

/* Decode the key in place of the request's (flag b). */
static bool
decode_key(struct proto_cmd *cmd)
{
    size_t n = proto_base64_decode(cmd->key, cmd->nkey, cmd->key_buf,
                                   sizeof(cmd->key_buf));

    cmd->key = cmd->key_buf;
    cmd->nkey = n;
    cmd->meta.base64 = true;
    return n > 0;
}

/*
 * Read the flag words ln->tok[first..]: record each in cmd->meta and
 * convert its token.  Returns PROTO_ERR_NONE or the error memcached
 * reports (before any command-specific rewording).
 */
static proto_err_t
preparse(struct proto_cmd *cmd, const struct proto_line *ln, size_t first)
{
    struct proto_meta *m = &cmd->meta;
    proto_err_t err = PROTO_ERR_BAD_FORMAT;
    bool failed = false;

    for (size_t i = first; i < ln->ntok - 1; i++) {
        const struct proto_tok *t = &ln->tok[i];
        unsigned char f = (unsigned char)t->p[0];
        const char *arg = t->p + 1;
        size_t narg = t->len - 1;

        /* bytes past 126 are reported as duplicates, as memcached does */
        if (f >= 127 || (m->flags & PROTO_MF(f)) != 0) {
            return PROTO_ERR_META_DUPLICATE;
        }
        switch (f) {
        case 'b':
            if (!decode_key(cmd)) {
                err = PROTO_ERR_META_DECODE_KEY;
                failed = true;
            }
            break;
        case 'N':
            if (!proto_num_i32(arg, narg, &m->vivify_ttl)) {
                err = PROTO_ERR_META_BAD_TOKEN;
                failed = true;
            }
            break;
        case 'T':
            if (!proto_num_i32(arg, narg, &m->ttl)) {
                err = PROTO_ERR_META_BAD_TOKEN;
                failed = true;
            }
            break;
        case 'R':
            if (!proto_num_i32(arg, narg, &m->recache_ttl)) {
                err = PROTO_ERR_META_BAD_TOKEN;
                failed = true;
            }
            break;
        case 'O':
            m->opaque = arg;
            m->nopaque = narg;
            break;
        case 'q':
            m->quiet = true;
            break;
        case 'I':
            m->invalidate = true;
            break;
        case 'P': /* proxy hints, ignored */
        case 'L':
        case 'k':
        case 's':
        case 't':
        case 'c':
        case 'f':
        case 'v':
        case 'h':
        case 'l':
        case 'u':
            break;
        case 'F':
            if (!proto_num_u32(arg, narg, &m->client_flags)) {
                failed = true; /* keeps the message so far */
            }
            break;
        case 'C':
            if (!proto_num_u64(arg, narg, &m->cas)) {
                err = PROTO_ERR_META_BAD_TOKEN;
                failed = true;
            } else {
                m->has_cas = true;
            }
            break;
        case 'M':
            if (t->len != 2) {
                err = PROTO_ERR_META_M_LENGTH;
                failed = true;
            } else {
                m->mode = t->p[1];
            }
            break;
        case 'J':
            if (!proto_num_u64(arg, narg, &m->initial)) {
                err = PROTO_ERR_META_INITIAL;
                failed = true;
            }
            break;
        case 'D':
            if (!proto_num_u64(arg, narg, &m->delta)) {
                err = PROTO_ERR_META_DELTA;
                failed = true;
            }
            break;
        case 'A':
            /* Corral: early refresh; memcached 1.6 has no A flag */
            if (!early_beta(arg, narg, &m->early_beta)) {
                err = PROTO_ERR_META_BAD_TOKEN;
                failed = true;
            }
            break;
        case 'G':
            /* Corral: tags (ext.c); memcached 1.6 has no G flag */
            if (!proto_tags_valid(arg, narg, &cmd->ntags)) {
                cmd->ntags = 0;
                err = PROTO_ERR_TAGS;
                failed = true;
            } else {
                cmd->tags = arg;
                cmd->tags_len = narg;
            }
            break;
        default:
            return PROTO_ERR_META_INVALID;
        }
        /* known flags are letters, so PROTO_MF(f) is their bit */
        m->flags |= PROTO_MF(f);
        m->order[m->nflags++] = (char)f;
    }
    return failed ? err : PROTO_ERR_NONE;
}

static bool
opaque_too_long(const struct proto_cmd *cmd)
{
    return proto_meta_has(cmd, 'O') &&
           cmd->meta.nopaque + 1 > PROTO_OPAQUE_TOKEN_MAX;
}

/* ------------------------------------------------------------------ */
/* Commands                                                           */

static proto_status_t
parse_ms(struct proto_cmd *cmd, const struct proto_line *ln, const char *buf,
         size_t len, const struct proto_limits *lim, size_t *out_consumed)
{
    struct proto_meta *m = &cmd->meta;
    int32_t vlen;
    size_t swallow;
    proto_err_t err;
    proto_status_t st;

    if (ln->ntok == 3) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                          out_consumed);
    }
    if (ln->ntok > PROTO_META_TOKENS_MAX) {
        return proto_fail(cmd, PROTO_ERR_META_TOO_MANY, ln->size, 0,
                          out_consumed);
    }
    if (!proto_num_i32(ln->tok[2].p, ln->tok[2].len, &vlen) || vlen < 0 ||
        vlen > INT_MAX - 2) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                          out_consumed);
    }
    /* from here on, memcached swallows the data block on error */
    swallow = (size_t)vlen + 2;
    err = preparse(cmd, ln, 3);
    if (err != PROTO_ERR_NONE) {
        return proto_fail(cmd, err, ln->size, swallow, out_consumed);
    }
    switch (m->mode) {
    case 0:
    case 'S':
        m->store_mode = PROTO_STORE_SET;
        break;
    case 'E':
        m->store_mode = PROTO_STORE_ADD;
        break;
    case 'A':
        m->store_mode = PROTO_STORE_APPEND;
        break;
    case 'P':
        m->store_mode = PROTO_STORE_PREPEND;
        break;
    case 'R':
        m->store_mode = PROTO_STORE_REPLACE;
        break;
    default:
        /* reported before a too-long opaque, as memcached does */
        return proto_fail(cmd, PROTO_ERR_MS_MODE, ln->size, swallow,
                          out_consumed);
    }
    cmd->store_mode = m->store_mode;
    cmd->flags = m->client_flags;
    cmd->exptime = m->ttl;
    cmd->cas = m->cas;
    if (opaque_too_long(cmd)) {
        return proto_fail(cmd, PROTO_ERR_META_OPAQUE, ln->size, swallow,
                          out_consumed);
    }
    /* errors of the block itself are always reported for ms */
    st = proto_take_block(cmd, buf, len, ln->size, (size_t)vlen, lim,
                          out_consumed);
    if (st == PROTO_OK) {
        cmd->noreply = m->quiet;
    }
    return st;
}

static proto_status_t
parse_me(struct proto_cmd *cmd, const struct proto_line *ln,
         const struct proto_limits *lim, size_t *out_consumed)
{
    if (ln->ntok < 3 || ln->tok[1].len > lim->key_max) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                          out_consumed);
    }
    cmd->key = ln->tok[1].p;
    cmd->nkey = ln->tok[1].len;
    if (ln->ntok >= 4 && proto_tok_is(&ln->tok[2], "b") && !decode_key(cmd)) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                          out_consumed);
    }
    *out_consumed = ln->size;
    return PROTO_OK;
}

proto_status_t
proto_parse_meta(struct proto_cmd *cmd, const struct proto_line *ln,
                 const char *buf, size_t len, const struct proto_limits *lim,
                 size_t *out_consumed)
{
    proto_err_t err;

    if (cmd->type == PROTO_CMD_ME) {
        return parse_me(cmd, ln, lim, out_consumed);
    }
    cmd->meta.delta = 1;
    if (ln->ntok < 3) {
        return proto_fail(cmd, PROTO_ERR_ERROR, ln->size, 0, out_consumed);
    }
    if (ln->tok[1].len > lim->key_max) {
        return proto_fail(cmd, PROTO_ERR_BAD_FORMAT, ln->size, 0,
                          out_consumed);
    }
    cmd->key = ln->tok[1].p;
    cmd->nkey = ln->tok[1].len;
    if (cmd->type == PROTO_CMD_MS) {
        return parse_ms(cmd, ln, buf, len, lim, out_consumed);
    }
    if (ln->ntok > PROTO_META_TOKENS_MAX) {
        return proto_fail(cmd,
                          cmd->type == PROTO_CMD_MG ? PROTO_ERR_META_MG_TOO_MANY
                                                    : PROTO_ERR_META_TOO_MANY,
                          ln->size, 0, out_consumed);
    }
    err = preparse(cmd, ln, 2);
    if (err != PROTO_ERR_NONE) {
        /* md and ma word every flag error the same way */
        if (cmd->type != PROTO_CMD_MG) {
            err = PROTO_ERR_META_INVALID_OR_DUP;
        }
        return proto_fail(cmd, err, ln->size, 0, out_consumed);
    }
    cmd->exptime = cmd->meta.ttl;
    cmd->cas = cmd->meta.cas;
    if (cmd->type == PROTO_CMD_MA) {
        switch (cmd->meta.mode) {
        case 0:
        case 'I':
        case '+':
            break;
        case 'D':
        case '-':
            cmd->meta.decr = true;
            break;
        default:
            return proto_fail(cmd, PROTO_ERR_MA_MODE, ln->size, 0,
                              out_consumed);
        }
        cmd->delta = cmd->meta.delta;
    }
    if (opaque_too_long(cmd)) {
        return proto_fail(cmd, PROTO_ERR_META_OPAQUE, ln->size, 0,
                          out_consumed);
    }
    cmd->noreply = cmd->meta.quiet;
    *out_consumed = ln->size;
    return PROTO_OK;
}
