/*
 * test_proto_harness.h - the driver the protocol tests share: it runs the
 * parse loop a connection runs (parse, act, consume, swallow) over an
 * input and writes what happened as a transcript, one event per command:
 *
 *   OK           the command and its key(s):   "get a b", "set a =x",
 *                "mg a kv" (meta: key, then the flag letters in order;
 *                " A=<beta in thousandths>" when Corral's A is given),
 *                "stats items"; " nr" is appended when noreply / q is set.
 *   PROTO_EINVAL the error line memcached sends, "~" in front when the
 *                command's noreply silences it, and " +N" when N bytes
 *                are to be swallowed.
 *   PROTO_ECLOSE "CLOSE" (and the run stops).
 *   leftovers    "AGAIN" if bytes remain unparsed at the end, "SWALLOW"
 *                if a swallow is still unfinished.
 *
 * Events are separated by " | ".  So memcached's reply to
 * "set a 0 0 1\r\nxyz\r\nmn\r\n", which is "CLIENT_ERROR bad data chunk",
 * "ERROR", "MN", reads "CLIENT_ERROR bad data chunk | ERROR | mn".
 *
 * check_input() runs an input whole, compares the transcript, then runs
 * it again split at every byte (the first part, then the whole) and
 * requires the same transcript: the parser's answer must not depend on
 * how the bytes arrived.  Every parse call is checked for the invariants:
 * AGAIN consumes nothing, OK and EINVAL consume something and no more
 * than given, returned pointers lie inside the buffer (or the command's
 * key_buf).  Each stage's bytes live in their own heap block of exactly
 * that size, so a read past the end is caught by AddressSanitizer.
 *
 * Functions are static inline so that each test program may use any
 * subset of them without unused-function warnings.
 */
#ifndef TEST_PROTO_HARNESS_H
#define TEST_PROTO_HARNESS_H

#include "proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"

#define TRANSCRIPT_MAX 8192

struct transcript {
    char s[TRANSCRIPT_MAX];
    size_t len;
};

static struct proto_limits harness_limits;

static inline void
harness_limits_default(void)
{
    proto_limits_init(&harness_limits);
}

static inline void
ts_put(struct transcript *t, const char *s, size_t n)
{
    if (t->len + n >= sizeof(t->s)) {
        n = sizeof(t->s) - 1 - t->len;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static inline void
ts_str(struct transcript *t, const char *s)
{
    ts_put(t, s, strlen(s));
}

static inline void
ts_sep(struct transcript *t)
{
    if (t->len > 0) {
        ts_str(t, " | ");
    }
}

static inline int
in_range(const char *p, size_t n, const char *buf, size_t len,
         const struct proto_cmd *cmd)
{
    const char *kb = cmd->key_buf;

    if (p == NULL) {
        return n == 0;
    }
    if (p >= buf && p + n <= buf + len) {
        return 1;
    }
    return p >= kb && p + n <= kb + sizeof(cmd->key_buf);
}

/* Check one parse call's invariants; returns 0 (and records a CUnit
 * failure) if one is broken. */
static inline int
check_call(proto_status_t st, const struct proto_cmd *cmd, const char *buf,
           size_t len, size_t used)
{
    int ok = 1;

    switch (st) {
    case PROTO_AGAIN:
    case PROTO_ECLOSE:
        ok &= used == 0;
        if (st == PROTO_AGAIN && cmd->need != 0) {
            ok &= cmd->need > len;
        }
        break;
    case PROTO_OK:
    case PROTO_EINVAL:
        ok &= used > 0 && used <= len;
        ok &= in_range(cmd->key, cmd->nkey, buf, len, cmd);
        ok &= in_range(cmd->keys, cmd->keys_len, buf, len, cmd);
        ok &= in_range(cmd->args, cmd->args_len, buf, len, cmd);
        ok &= in_range(cmd->value, cmd->nvalue, buf, len, cmd);
        ok &= in_range(cmd->meta.opaque, cmd->meta.nopaque, buf, len, cmd);
        ok &= in_range(cmd->tags, cmd->tags_len, buf, len, cmd);
        ok &= cmd->nkey <= PROTO_KEY_MAX;
        if (st == PROTO_OK) {
            ok &= cmd->err == PROTO_ERR_NONE && cmd->swallow == 0;
            ok &= cmd->type != PROTO_CMD_NONE;
        } else {
            ok &= cmd->err != PROTO_ERR_NONE;
        }
        break;
    default:
        ok = 0;
    }
    CU_ASSERT(ok);
    return ok;
}

static inline void
render_ok(struct transcript *t, const struct proto_cmd *cmd)
{
    struct proto_iter it;
    const char *w;
    size_t n;

    ts_str(t, proto_cmd_name(cmd->type));
    switch (cmd->type) {
    case PROTO_CMD_GET:
    case PROTO_CMD_GETS:
    case PROTO_CMD_GAT:
    case PROTO_CMD_GATS:
    case PROTO_CMD_BGET:
        proto_keys_begin(&it, cmd);
        while (proto_iter_next(&it, &w, &n)) {
            ts_str(t, " ");
            ts_put(t, w, n);
        }
        break;
    case PROTO_CMD_STATS:
    case PROTO_CMD_WATCH:
        proto_args_begin(&it, cmd);
        while (proto_iter_next(&it, &w, &n)) {
            ts_str(t, " ");
            ts_put(t, w, n);
        }
        break;
    default:
        if (cmd->key != NULL) {
            ts_str(t, " ");
            ts_put(t, cmd->key, cmd->nkey);
        }
        if (cmd->meta.nflags > 0) {
            ts_str(t, " ");
            ts_put(t, cmd->meta.order, cmd->meta.nflags);
        }
        if ((cmd->meta.flags & PROTO_MF('A')) != 0) {
            char beta[24];
            snprintf(beta, sizeof(beta), " A=%u",
                     (unsigned)cmd->meta.early_beta);
            ts_str(t, beta);
        }
        if (cmd->ntags > 0) {
            ts_str(t, " [");
            ts_put(t, cmd->tags, cmd->tags_len);
            ts_str(t, "]");
        }
        if (cmd->value != NULL) {
            ts_str(t, " =");
            ts_put(t, cmd->value, cmd->nvalue);
        }
        break;
    }
    if (cmd->noreply) {
        ts_str(t, " nr");
    }
}

static inline void
render_err(struct transcript *t, const struct proto_cmd *cmd)
{
    char num[32];

    if (cmd->noreply) {
        ts_str(t, "~");
    }
    ts_str(t, proto_err_str(cmd->err));
    if (cmd->swallow > 0) {
        snprintf(num, sizeof(num), " +%zu", cmd->swallow);
        ts_str(t, num);
    }
}

static inline char *
dup_bytes(const char *in, size_t n)
{
    /* exactly n bytes (1 for n == 0, never read), so overreads trip ASan */
    char *b = malloc(n > 0 ? n : 1);

    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    if (n > 0) {
        memcpy(b, in, n);
    }
    return b;
}

/*
 * Run the parse loop over @in, first with only @split bytes available
 * (@split == 0 or >= n: all at once), then with all of them.  Each stage
 * gets a fresh heap copy; offsets carry over.
 */
static inline void
drive(const char *in, size_t n, size_t split, struct transcript *t,
      size_t *out_calls)
{
    struct proto_cmd cmd;
    size_t avail = (split == 0 || split >= n) ? n : split;
    size_t off = 0, swallow = 0, used, calls = 0;
    char *b = dup_bytes(in, avail);
    proto_status_t st;

    t->len = 0;
    t->s[0] = '\0';
    for (;;) {
        if (swallow > 0) {
            size_t d = avail - off < swallow ? avail - off : swallow;
            off += d;
            swallow -= d;
        }
        if (swallow == 0 && off < avail) {
            st = proto_parse(&cmd, b + off, avail - off, &harness_limits,
                             &used);
            calls++;
            if (!check_call(st, &cmd, b + off, avail - off, used)) {
                break;
            }
            if (st == PROTO_ECLOSE) {
                ts_sep(t);
                ts_str(t, "CLOSE");
                free(b);
                *out_calls = calls;
                return;
            }
            if (st != PROTO_AGAIN) {
                ts_sep(t);
                if (st == PROTO_OK) {
                    render_ok(t, &cmd);
                } else {
                    render_err(t, &cmd);
                    swallow = cmd.swallow;
                }
                off += used;
                continue;
            }
        }
        if (avail == n) {
            break;
        }
        free(b);
        avail = n;
        b = dup_bytes(in, avail);
    }
    if (off < n && swallow == 0) {
        ts_sep(t);
        ts_str(t, "AGAIN");
    }
    if (swallow > 0) {
        ts_sep(t);
        ts_str(t, "SWALLOW");
    }
    free(b);
    *out_calls = calls;
}

/*
 * Whole, then split at every byte: the transcript must equal @want each
 * time.  @nosplit for inputs whose line is longer than line_max, where
 * memcached itself answers differently when the line arrives in parts.
 */
static inline int
check_input_n(const char *name, const char *in, size_t n, const char *want,
              int nosplit)
{
    struct transcript t;
    size_t calls;
    int ok = 1;

    drive(in, n, 0, &t, &calls);
    if (strcmp(t.s, want) != 0) {
        printf("\n  [%s]\n    want: %s\n    got:  %s\n", name, want, t.s);
        ok = 0;
    }
    CU_ASSERT_STRING_EQUAL(t.s, want);
    if (nosplit) {
        return ok;
    }
    for (size_t k = 1; k < n && ok; k++) {
        struct transcript ts;

        drive(in, n, k, &ts, &calls);
        if (strcmp(ts.s, t.s) != 0) {
            printf("\n  [%s] split at %zu\n    whole: %s\n    split: %s\n",
                   name, k, t.s, ts.s);
            ok = 0;
        }
        CU_ASSERT_STRING_EQUAL(ts.s, t.s);
    }
    return ok;
}

static inline int
check_input(const char *name, const char *in, const char *want)
{
    return check_input_n(name, in, strlen(in), want, 0);
}

/* A table row: a NUL-terminated input and its transcript. */
struct tcase {
    const char *in;
    const char *want;
};

/* Check every row, with value_max = @value_max (0: the default). */
static inline void
run_table(const char *table, const struct tcase *cases, size_t n,
          size_t value_max)
{
    char name[64];

    for (size_t i = 0; i < n; i++) {
        harness_limits_default();
        if (value_max != 0) {
            harness_limits.value_max = value_max;
        }
        snprintf(name, sizeof(name), "%s #%zu", table, i);
        check_input(name, cases[i].in, cases[i].want);
    }
    harness_limits_default();
}

/* Parse exactly one command from a NUL-terminated string. */
static inline proto_status_t
parse1(struct proto_cmd *cmd, const char *in, size_t *used)
{
    size_t dummy;

    harness_limits_default();
    return proto_parse(cmd, in, strlen(in), &harness_limits,
                       used != NULL ? used : &dummy);
}

#define TABLE(name, arr)                                                      \
    run_table(name, arr, sizeof(arr) / sizeof(arr[0]), 0)
#define TABLE_LIMIT(name, arr, value_max)                                     \
    run_table(name, arr, sizeof(arr) / sizeof(arr[0]), value_max)

#endif /* TEST_PROTO_HARNESS_H */
