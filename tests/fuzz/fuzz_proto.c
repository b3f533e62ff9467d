/*
 * fuzz_proto.c - libFuzzer target for the protocol parser (and, on what
 * it parses, the reply composers).
 *
 * Run it (clang-14 and libfuzzer-14-dev; a separate build directory):
 *
 *   ./configure CC=clang-14 --enable-fuzz && make -j2 tests/fuzz/fuzz_proto
 *   mkdir -p /tmp/proto-corpus
 *   tests/fuzz/fuzz_proto -max_total_time=1800 \
 *       -dict=$srcdir/tests/fuzz/proto.dict \
 *       /tmp/proto-corpus $srcdir/tests/fuzz/corpus/proto
 *
 * New inputs go to the first directory; copy the interesting ones (and any
 * crash-* file, once fixed) into tests/fuzz/corpus/proto, which make check
 * replays through replay_main.c in ordinary builds.
 *
 * The input is a byte stream as a connection would deliver it.  A hash of
 * it picks the limits (small value_max, line_max and multiget_line_max
 * reach the refusal paths with small inputs) and the places where the
 * stream is cut.  The target runs the connection's parse loop:
 *
 *   1. over the whole input at once: the reference sequence of events;
 *   2. again, with the bytes arriving in parts (at the chosen cuts; at
 *      every byte when replaying small inputs), each part a fresh heap
 *      block of exactly its size, so reading past it trips ASan;
 *
 * and checks, aborting on a violation:
 *   - every call: consumed <= len; AGAIN and ECLOSE consume nothing and
 *     AGAIN's need, if any, exceeds len; OK and EINVAL consume something;
 *     every pointer returned lies inside the buffer (or cmd->key_buf);
 *     keys are at most key_max; a data block ends in "\r\n" right at the
 *     consumed boundary; only EINVAL swallows;
 *   - parsing the same bytes twice gives the same result;
 *   - the parts give the same events as the whole (parse(a+b) equals
 *     parse(a) then parse(rest)), except that a part may be closed for an
 *     unterminated line over line_max, as memcached does;
 *   - the composers, fed what was parsed, never need more than the
 *     documented maximum buffer sizes; every key, tag and watch filter
 *     parsed makes a stream line that parses back to the same event;
 *   - the stream line parser, fed the raw input, consumes whole lines
 *     and decodes names within its buffer.
 */
#include "proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Set by replay_main.c: replay small inputs split at every byte. */
extern int fuzz_replay_mode __attribute__((weak));

#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_proto: invariant failed: %s (%s:%d)\n",     \
                    #cond, __FILE__, __LINE__);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* What one parse call did, as comparable values. */
struct event {
    int status;
    size_t used;
    int type;
    int err;
    size_t swallow;
    int noreply;
    size_t nkey;
    uint64_t key_hash;
    size_t nvalue;
    uint64_t value_hash;
    size_t nkeys;
    uint64_t fields;  /* a hash of the typed fields */
    int partial;      /* happened before all bytes had arrived */
};

static uint64_t
hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;

    for (size_t i = 0; i < n; i++) {
        h = (h ^ s[i]) * 0x100000001b3u;
    }
    return h;
}

static uint64_t
hash_u64(uint64_t h, uint64_t v)
{
    return hash_bytes(h, &v, sizeof(v));
}

static int
inside(const void *p, size_t n, const char *buf, size_t len,
       const struct proto_cmd *cmd)
{
    const char *c = p;

    if (c == NULL) {
        return n == 0;
    }
    if (c >= buf && n <= len && c <= buf + len - n) {
        return 1;
    }
    return c >= cmd->key_buf && n <= sizeof(cmd->key_buf) &&
           c <= cmd->key_buf + sizeof(cmd->key_buf) - n;
}

/*
 * A stream line for a name the parser produced: it must fit
 * PROTO_WATCH_LINE_MAX and parse back to the same event.
 */
static void
watch_roundtrip(proto_wev_t type, const char *name, size_t len, uint64_t h)
{
    char line[PROTO_WATCH_LINE_MAX], nb[PROTO_KEY_MAX];
    struct proto_watch_event ev, back;
    size_t n, used;

    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.ts_us = h % 4000000000000000u;
    ev.seq = h;
    ev.cas = ~h;
    ev.origin = h * 31;
    ev.name = name;
    ev.len = len;
    n = proto_compose_watch(line, sizeof(line), &ev);
    FUZZ_CHECK(n > 0 && line[n - 1] == '\n');
    FUZZ_CHECK(proto_parse_watch_line(line, n, &back, nb, sizeof(nb),
                                      &used) == PROTO_OK);
    FUZZ_CHECK(used == n && back.type == type && back.seq == ev.seq &&
               back.ts_us == ev.ts_us && back.origin == ev.origin);
    FUZZ_CHECK(back.len == len && memcmp(back.name, name, len) == 0);
    if (type != PROTO_WEV_TAG && type != PROTO_WEV_PREFIX) {
        FUZZ_CHECK(back.cas == ev.cas);
    }
}

/* The stream line parser on raw bytes: its own invariants. */
static void
watch_line_checks(const uint8_t *data, size_t size)
{
    char *buf = malloc(size > 0 ? size : 1);
    char nb[PROTO_KEY_MAX];
    struct proto_watch_event ev;
    size_t off = 0, used;

    FUZZ_CHECK(buf != NULL);
    if (size > 0) {
        memcpy(buf, data, size);
    }
    while (off < size) {
        proto_status_t st = proto_parse_watch_line(buf + off, size - off,
                                                   &ev, nb, sizeof(nb),
                                                   &used);
        if (st == PROTO_AGAIN || st == PROTO_ECLOSE) {
            FUZZ_CHECK(used == 0);
            break;
        }
        FUZZ_CHECK(used > 0 && used <= size - off);
        FUZZ_CHECK(buf[off + used - 1] == '\n');
        if (st == PROTO_OK) {
            FUZZ_CHECK(ev.type < PROTO_WEV_COUNT);
            FUZZ_CHECK(ev.len <= sizeof(nb));
            FUZZ_CHECK(ev.name == NULL || ev.name == nb);
        }
        off += used;
    }
    free(buf);
}

/* Exercise the composers on a parsed command. */
static void
compose_checks(const struct proto_cmd *cmd, uint64_t h)
{
    char line[PROTO_META_LINE_MAX];
    struct proto_meta_item it;
    struct proto_iter iter;
    const char *k;
    size_t nk, n = 0;

    switch (cmd->type) {
    case PROTO_CMD_GET:
    case PROTO_CMD_GETS:
    case PROTO_CMD_GAT:
    case PROTO_CMD_GATS:
    case PROTO_CMD_BGET:
        proto_keys_begin(&iter, cmd);
        while (proto_iter_next(&iter, &k, &nk)) {
            FUZZ_CHECK(nk > 0 && nk <= PROTO_KEY_MAX);
            FUZZ_CHECK(memchr(k, ' ', nk) == NULL);
            FUZZ_CHECK(proto_compose_value(line, PROTO_VALUE_LINE_MAX, k, nk,
                                           (uint32_t)h, (size_t)h, true,
                                           h) > 0);
            n++;
        }
        FUZZ_CHECK(n == cmd->nkeys);
        break;
    case PROTO_CMD_MG:
    case PROTO_CMD_MS:
    case PROTO_CMD_MD:
    case PROTO_CMD_MA:
    case PROTO_CMD_MN:
        memset(&it, 0, sizeof(it));
        it.have = h;
        it.cas = UINT64_MAX;
        it.flags = UINT32_MAX;
        it.last_access = UINT64_MAX;
        it.size = UINT64_MAX;
        it.ttl = INT64_MIN;
        it.fetched = (h & 1) != 0;
        it.stale = it.token_sent = it.won = true;
        it.key = cmd->key;
        it.nkey = cmd->nkey;
        it.key_binary = (h & 2) != 0;
        for (int code = 0; code < PROTO_META_CODE_COUNT; code++) {
            FUZZ_CHECK(proto_compose_meta(line, sizeof(line),
                                          (proto_meta_code_t)code, SIZE_MAX,
                                          cmd, &it) > 0);
            FUZZ_CHECK(proto_compose_meta(line, sizeof(line),
                                          (proto_meta_code_t)code, 0, cmd,
                                          NULL) > 0);
            (void)proto_meta_quiet(cmd, (proto_meta_code_t)code);
        }
        break;
    case PROTO_CMD_ME: {
        struct proto_me_info info = {INT64_MIN, UINT64_MAX, UINT64_MAX, true,
                                     ~0u, UINT64_MAX};
        FUZZ_CHECK(proto_compose_me(line, sizeof(line), cmd->key, cmd->nkey,
                                    true, &info) > 0);
        break;
    }
    case PROTO_CMD_STATS:
    case PROTO_CMD_WATCH:
        proto_args_begin(&iter, cmd);
        while (proto_iter_next(&iter, &k, &nk)) {
            n++;
        }
        FUZZ_CHECK(n == cmd->nargs);
        if (cmd->watch & PROTO_WATCH(INVALIDATIONS)) {
            char fbuf[PROTO_KEY_MAX];
            proto_watch_filter_t kind;

            FUZZ_CHECK(cmd->watch == PROTO_WATCH(INVALIDATIONS));
            proto_args_begin(&iter, cmd);
            while (proto_watch_filter_next(&iter, &kind, fbuf, sizeof(fbuf),
                                           &nk)) {
                FUZZ_CHECK(kind == PROTO_WF_LOCAL ||
                           (nk > 0 && nk <= PROTO_KEY_MAX));
                if (kind != PROTO_WF_LOCAL) {
                    watch_roundtrip(kind == PROTO_WF_TAG ? PROTO_WEV_TAG
                                                         : PROTO_WEV_PREFIX,
                                    fbuf, nk, h);
                }
            }
        }
        break;
    default:
        break;
    }
    if (cmd->ntags > 0) {
        unsigned nt = 0;

        FUZZ_CHECK(proto_tags_valid(cmd->tags, cmd->tags_len, NULL));
        proto_tags_begin(&iter, cmd);
        while (proto_tag_next(&iter, &k, &nk)) {
            FUZZ_CHECK(nk > 0 && nk <= PROTO_TAG_MAX);
            FUZZ_CHECK(memchr(k, ',', nk) == NULL);
            watch_roundtrip(PROTO_WEV_TAG, k, nk, h);
            nt++;
        }
        FUZZ_CHECK(nt == cmd->ntags && nt <= PROTO_TAGS_MAX);
    }
    if (cmd->nkey > 0) {
        watch_roundtrip((proto_wev_t)(PROTO_WEV_DELETE + h % 3), cmd->key,
                        cmd->nkey, h);
    }
}

/* One parse call, checked; fills @ev. */
static proto_status_t
parse_checked(struct proto_cmd *cmd, const char *buf, size_t len,
              const struct proto_limits *lim, struct event *ev)
{
    struct proto_cmd again;
    size_t used = (size_t)-1, used2 = (size_t)-1;
    proto_status_t st = proto_parse(cmd, buf, len, lim, &used);
    proto_status_t st2 = proto_parse(&again, buf, len, lim, &used2);
    uint64_t f = 0;

    FUZZ_CHECK(st == st2 && used == used2 && cmd->type == again.type &&
               cmd->err == again.err && cmd->swallow == again.swallow);
    FUZZ_CHECK(used <= len);
    switch (st) {
    case PROTO_AGAIN:
        FUZZ_CHECK(used == 0);
        FUZZ_CHECK(cmd->need == 0 || cmd->need > len);
        break;
    case PROTO_ECLOSE:
        FUZZ_CHECK(used == 0);
        FUZZ_CHECK(len > lim->line_max);
        FUZZ_CHECK(memchr(buf, '\n', len) == NULL);
        break;
    case PROTO_OK:
    case PROTO_EINVAL:
        FUZZ_CHECK(used > 0);
        FUZZ_CHECK(inside(cmd->key, cmd->nkey, buf, len, cmd));
        FUZZ_CHECK(inside(cmd->keys, cmd->keys_len, buf, len, cmd));
        FUZZ_CHECK(inside(cmd->args, cmd->args_len, buf, len, cmd));
        FUZZ_CHECK(inside(cmd->value, cmd->nvalue, buf, len, cmd));
        FUZZ_CHECK(
            inside(cmd->meta.opaque, cmd->meta.nopaque, buf, len, cmd));
        FUZZ_CHECK(inside(cmd->tags, cmd->tags_len, buf, len, cmd));
        FUZZ_CHECK(cmd->nkey <= lim->key_max);
        FUZZ_CHECK(cmd->meta.nflags <= PROTO_META_FLAGS_MAX);
        if (st == PROTO_OK) {
            FUZZ_CHECK(cmd->type > PROTO_CMD_NONE &&
                       cmd->type < PROTO_CMD_COUNT);
            FUZZ_CHECK(cmd->err == PROTO_ERR_NONE && cmd->swallow == 0);
            if (cmd->value != NULL) {
                FUZZ_CHECK(cmd->value + cmd->nvalue + 2 == buf + used);
                FUZZ_CHECK(buf[used - 2] == '\r' && buf[used - 1] == '\n');
                FUZZ_CHECK(cmd->nvalue <= lim->value_max);
            }
            if (cmd->meta.nopaque > 0 || cmd->meta.opaque != NULL) {
                FUZZ_CHECK(cmd->meta.nopaque <= PROTO_OPAQUE_MAX);
            }
        } else {
            FUZZ_CHECK(cmd->err > PROTO_ERR_NONE &&
                       cmd->err < PROTO_ERR_COUNT);
            FUZZ_CHECK(cmd->swallow == 0 ||
                       cmd->err == PROTO_ERR_TOO_LARGE ||
                       cmd->type == PROTO_CMD_MS ||
                       (cmd->type >= PROTO_CMD_TSET &&
                        cmd->type <= PROTO_CMD_TCAS));
        }
        FUZZ_CHECK(proto_err_line(cmd->err, NULL) != NULL);
        break;
    default:
        FUZZ_CHECK(!"unknown status");
    }

    memset(ev, 0, sizeof(*ev));
    ev->status = (int)st;
    ev->used = used;
    if (st == PROTO_OK || st == PROTO_EINVAL) {
        ev->type = (int)cmd->type;
        ev->err = (int)cmd->err;
        ev->swallow = cmd->swallow;
        ev->noreply = cmd->noreply;
        ev->nkey = cmd->nkey;
        ev->key_hash = hash_bytes(0xcbf29ce484222325u, cmd->key, cmd->nkey);
        ev->nvalue = cmd->nvalue;
        ev->value_hash =
            hash_bytes(0xcbf29ce484222325u, cmd->value, cmd->nvalue);
        ev->nkeys = cmd->nkeys;
        f = hash_u64(f, cmd->flags);
        f = hash_u64(f, (uint64_t)(int64_t)cmd->exptime);
        f = hash_u64(f, cmd->cas);
        f = hash_u64(f, cmd->delta);
        f = hash_u64(f, cmd->level);
        f = hash_u64(f, cmd->watch);
        f = hash_u64(f, (uint64_t)cmd->shutdown);
        f = hash_u64(f, (uint64_t)cmd->store_mode);
        f = hash_u64(f, cmd->meta.flags);
        f = hash_bytes(f, cmd->meta.order, cmd->meta.nflags);
        f = hash_bytes(f, cmd->meta.opaque, cmd->meta.nopaque);
        f = hash_u64(f, cmd->meta.delta);
        f = hash_u64(f, cmd->meta.initial);
        f = hash_u64(f, (uint64_t)(int64_t)cmd->meta.vivify_ttl);
        f = hash_u64(f, (uint64_t)(int64_t)cmd->meta.recache_ttl);
        f = hash_u64(f, (uint64_t)cmd->meta.decr);
        f = hash_bytes(f, cmd->tags, cmd->tags_len);
        f = hash_u64(f, cmd->ntags);
        f = hash_u64(f, cmd->since);
        f = hash_u64(f, cmd->node);
        ev->fields = f;
        if (st == PROTO_OK) {
            compose_checks(cmd, f);
        }
    }
    return st;
}

static char *
copy_block(const uint8_t *data, size_t n)
{
    char *b = malloc(n > 0 ? n : 1);

    FUZZ_CHECK(b != NULL);
    if (n > 0) {
        memcpy(b, data, n);
    }
    return b;
}

/*
 * The parse loop over @data with the bytes arriving in parts ending at
 * cuts[0] < cuts[1] < ... (then @size).  Records events; returns how many.
 */
static size_t
run(const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts,
    const struct proto_limits *lim, struct event *evs, size_t cap)
{
    struct proto_cmd cmd;
    size_t stage = 0, avail, off = 0, swallow = 0, nev = 0;
    char *buf;

    avail = ncuts > 0 ? cuts[0] : size;
    buf = copy_block(data, avail);
    for (;;) {
        if (swallow > 0) {
            size_t d = avail - off < swallow ? avail - off : swallow;
            off += d;
            swallow -= d;
        }
        if (swallow == 0 && off < avail && nev < cap) {
            struct event *ev = &evs[nev];
            proto_status_t st =
                parse_checked(&cmd, buf + off, avail - off, lim, ev);

            if (st != PROTO_AGAIN) {
                ev->partial = avail < size;
                nev++;
                if (st == PROTO_ECLOSE) {
                    break;
                }
                off += ev->used;
                if (st == PROTO_EINVAL) {
                    swallow = cmd.swallow;
                }
                continue;
            }
        }
        if (avail == size) {
            break;
        }
        free(buf);
        stage++;
        avail = stage < ncuts ? cuts[stage] : size;
        buf = copy_block(data, avail);
    }
    free(buf);
    return nev;
}

static int
same_event(const struct event *a, const struct event *b)
{
    return a->status == b->status && a->used == b->used &&
           a->type == b->type && a->err == b->err &&
           a->swallow == b->swallow && a->noreply == b->noreply &&
           a->nkey == b->nkey && a->key_hash == b->key_hash &&
           a->nvalue == b->nvalue && a->value_hash == b->value_hash &&
           a->nkeys == b->nkeys && a->fields == b->fields;
}

static void
compare(const struct event *ref, size_t nref, const struct event *evs,
        size_t nev)
{
    for (size_t i = 0; i < nev; i++) {
        if (evs[i].status == PROTO_ECLOSE && evs[i].partial &&
            (i >= nref || ref[i].status != PROTO_ECLOSE)) {
            return; /* closed on an unterminated prefix: memcached too */
        }
        FUZZ_CHECK(i < nref);
        FUZZ_CHECK(same_event(&ref[i], &evs[i]));
    }
    FUZZ_CHECK(nev == nref);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_limits lim;
    struct event *ref, *evs;
    uint64_t h = hash_bytes(0xcbf29ce484222325u, data, size);
    size_t cap = size + 1, nref, nev, cuts[3];

    proto_limits_init(&lim);
    switch (h & 3) {
    case 1:
        lim.value_max = 8;
        break;
    case 2:
        lim.value_max = 0;
        break;
    default:
        break;
    }
    if (((h >> 2) & 3) == 1) {
        lim.line_max = 64;
        lim.multiget_line_max = 256;
    } else if (((h >> 2) & 3) == 2) {
        lim.multiget_line_max = 0;
    }

    ref = calloc(cap, sizeof(*ref));
    evs = calloc(cap, sizeof(*evs));
    FUZZ_CHECK(ref != NULL && evs != NULL);
    nref = run(data, size, NULL, 0, &lim, ref, cap);
    watch_line_checks(data, size);

    if (size > 1) {
        /* three cuts from the hash, in increasing order */
        cuts[0] = 1 + (size_t)((h >> 8) % (size - 1));
        cuts[1] = cuts[0] + (size_t)((h >> 24) % (size - cuts[0] + 1));
        cuts[2] = cuts[1] + (size_t)((h >> 40) % (size - cuts[1] + 1));
        nev = run(data, size, cuts, 3, &lim, evs, cap);
        compare(ref, nref, evs, nev);
    }
    if (&fuzz_replay_mode != NULL && fuzz_replay_mode && size <= 4096) {
        for (size_t k = 1; k < size; k++) {
            nev = run(data, size, &k, 1, &lim, evs, cap);
            compare(ref, nref, evs, nev);
        }
    }
    free(ref);
    free(evs);
    return 0;
}
