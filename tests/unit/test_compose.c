/*
 * test_compose.c - reply composers, and compose -> parse round trips.
 *
 * The expected lines are replies of a real memcached 1.6.18 to the request
 * in the comment beside each, with the values (CAS, TTL, ...) it gave.
 * The round trips go both ways: structured requests are written as text,
 * parsed (whole, split, and back to back) and must come back field for
 * field; composed replies are read back (numbers, base64 keys).
 */
#include "proto.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"
#include "test_proto_harness.h"

#define K10 "kkkkkkkkkk"
#define K50 K10 K10 K10 K10 K10
#define K250 K50 K50 K50 K50 K50

static void
expect(const char *buf, size_t n, const char *want)
{
    size_t wn = strlen(want);

    if (n != wn || memcmp(buf, want, wn) != 0) {
        printf("\n    want: %s    got:  %.*s\n", want, (int)n, buf);
    }
    CU_ASSERT_EQUAL(n, wn);
    CU_ASSERT(n == wn && memcmp(buf, want, wn) == 0);
}

/* A meta reply to request c into buf. */
#define META(code, vlen, item)                                                \
    proto_compose_meta(buf, sizeof(buf), PROTO_META_##code, vlen, &c, item)

/* Parse a request so its flags can drive a meta reply. */
static void
request(struct proto_cmd *cmd, const char *line)
{
    proto_status_t st = parse1(cmd, line, NULL);

    CU_ASSERT_EQUAL_FATAL(st, PROTO_OK);
}

/* ------------------------------------------------------------------ */
/* Classic                                                            */

static void
test_value_line(void)
{
    char buf[PROTO_VALUE_LINE_MAX];
    size_t n;

    /* get a -> VALUE a 0 1 */
    n = proto_compose_value(buf, sizeof(buf), "a", 1, 0, 1, false, 0);
    expect(buf, n, "VALUE a 0 1\r\n");
    /* gats 10 a -> VALUE a 0 1 14 */
    n = proto_compose_value(buf, sizeof(buf), "a", 1, 0, 1, true, 14);
    expect(buf, n, "VALUE a 0 1 14\r\n");
    /* set fl 4294967295 0 1 / gets fl -> VALUE fl 4294967295 1 85 */
    n = proto_compose_value(buf, sizeof(buf), "fl", 2, 4294967295u, 1, true,
                            85);
    expect(buf, n, "VALUE fl 4294967295 1 85\r\n");
    /* the longest line fits PROTO_VALUE_LINE_MAX */
    n = proto_compose_value(buf, sizeof(buf), K250, 250, UINT32_MAX,
                            (size_t)UINT32_MAX, true, UINT64_MAX);
    expect(buf, n,
           "VALUE " K250 " 4294967295 4294967295 18446744073709551615\r\n");
    /* too small: 0, whatever the shortfall */
    CU_ASSERT_EQUAL(
        proto_compose_value(buf, 12, "a", 1, 0, 1, false, 0), 0);
    CU_ASSERT_EQUAL(
        proto_compose_value(buf, 13, "a", 1, 0, 1, false, 0), 13);
    CU_ASSERT_EQUAL(proto_compose_value(buf, 0, "a", 1, 0, 1, false, 0), 0);
}

static void
test_fixed_lines(void)
{
    static const struct {
        proto_reply_t r;
        const char *line;
    } rows[] = {
        {PROTO_REPLY_END, "END\r\n"},
        {PROTO_REPLY_STORED, "STORED\r\n"},
        {PROTO_REPLY_NOT_STORED, "NOT_STORED\r\n"},
        {PROTO_REPLY_EXISTS, "EXISTS\r\n"},
        {PROTO_REPLY_NOT_FOUND, "NOT_FOUND\r\n"},
        {PROTO_REPLY_DELETED, "DELETED\r\n"},
        {PROTO_REPLY_TOUCHED, "TOUCHED\r\n"},
        {PROTO_REPLY_OK, "OK\r\n"},
        {PROTO_REPLY_RESET, "RESET\r\n"},
        {PROTO_REPLY_CRLF, "\r\n"},
    };
    size_t n;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *l = proto_reply_line(rows[i].r, &n);
        expect(l, n, rows[i].line);
    }
    CU_ASSERT_STRING_EQUAL(proto_reply_line(PROTO_REPLY_COUNT, NULL), "\r\n");
    /* every error line ends in \r\n and has no other line break */
    for (int e = 1; e < PROTO_ERR_COUNT; e++) {
        const char *l = proto_err_line((proto_err_t)e, &n);
        CU_ASSERT(n > 2 && l[n - 2] == '\r' && l[n - 1] == '\n');
        CU_ASSERT(memchr(l, '\n', n - 1) == NULL);
        CU_ASSERT_EQUAL(strlen(proto_err_str((proto_err_t)e)), n - 2);
    }
}

static void
test_numbers_and_lines(void)
{
    char buf[PROTO_NUM_LINE_MAX];
    char big[128];
    size_t n;
    uint64_t v;

    /* incr n 5 -> 15; incr wraps: 18446744073709551615 + 2 -> 1 */
    expect(buf, proto_compose_u64(buf, sizeof(buf), 15), "15\r\n");
    expect(buf, proto_compose_u64(buf, sizeof(buf), 0), "0\r\n");
    n = proto_compose_u64(buf, sizeof(buf), UINT64_MAX);
    expect(buf, n, "18446744073709551615\r\n");
    CU_ASSERT_EQUAL(proto_compose_u64(buf, 21, UINT64_MAX), 0);
    /* compose -> parse: every composed number reads back */
    for (uint64_t x = 1; x != 0; x = x * 3 + 1) {
        struct proto_cmd c;
        char line[64];
        size_t used;

        n = proto_compose_u64(buf, sizeof(buf), x);
        CU_ASSERT_FATAL(n > 2);
        snprintf(line, sizeof(line), "incr k %.*s\r\n", (int)(n - 2), buf);
        CU_ASSERT_EQUAL(parse1(&c, line, &used), PROTO_OK);
        v = c.delta;
        CU_ASSERT_EQUAL(v, x);
        if (x > UINT64_MAX / 3) {
            break;
        }
    }
    expect(big, proto_compose_line(big, sizeof(big), "VERSION", "1.6.18"),
           "VERSION 1.6.18\r\n");
    expect(big, proto_compose_line(big, sizeof(big), "END", NULL), "END\r\n");
    expect(big, proto_compose_line(big, sizeof(big), "MN", ""), "MN\r\n");
    expect(big,
           proto_compose_line(big, sizeof(big), "SERVER_ERROR",
                              "out of memory"),
           "SERVER_ERROR out of memory\r\n");
    CU_ASSERT_EQUAL(proto_compose_line(big, 15, "VERSION", "1.6.18"), 0);
    CU_ASSERT_EQUAL(proto_compose_line(big, 16, "VERSION", "1.6.18"), 16);
    expect(big, proto_compose_stat(big, sizeof(big), "pid", "15915"),
           "STAT pid 15915\r\n");
    CU_ASSERT_EQUAL(proto_compose_stat(big, 10, "pid", "15915"), 0);
}

/* ------------------------------------------------------------------ */
/* Meta                                                               */

static void
test_meta_hit(void)
{
    struct proto_cmd c;
    struct proto_meta_item it;
    char buf[PROTO_META_LINE_MAX];
    size_t n;

    /* mg a s v f t c k O123 h l -> VA 1 s1 f0 t-1 c27 ka O123 h1 l0 */
    request(&c, "mg a s v f t c k O123 h l\r\n");
    memset(&it, 0, sizeof(it));
    it.have = PROTO_MF('s') | PROTO_MF('f') | PROTO_MF('t') | PROTO_MF('c') |
              PROTO_MF('h') | PROTO_MF('l');
    it.size = 1;
    it.ttl = -1;
    it.cas = 27;
    it.fetched = true;
    n = META(VA, 1, &it);
    expect(buf, n, "VA 1 s1 f0 t-1 c27 ka O123 h1 l0\r\n");
    /* mg a (no flags) -> HD */
    request(&c, "mg a\r\n");
    expect(buf, META(HD, 0, &it), "HD\r\n");
    /* after md a I T30: mg a v c -> VA 1 c64 X W */
    request(&c, "mg a v c\r\n");
    memset(&it, 0, sizeof(it));
    it.have = PROTO_MF('c');
    it.cas = 64;
    it.stale = true;
    it.won = true;
    expect(buf, META(VA, 1, &it), "VA 1 c64 X W\r\n");
    /* and again: mg a v -> VA 1 Z X */
    request(&c, "mg a v\r\n");
    it.won = false;
    it.token_sent = true;
    expect(buf, META(VA, 1, &it), "VA 1 Z X\r\n");
    /* ms abc.. with b, then mg abc k v -> VA 1 kYWJj b: the item's key is
     * binary, so k comes back encoded even without b in the request */
    request(&c, "mg abc k v\r\n");
    memset(&it, 0, sizeof(it));
    it.key = "abc";
    it.nkey = 3;
    it.key_binary = true;
    expect(buf, META(VA, 1, &it), "VA 1 kYWJj b\r\n");
    /* ma zz MD D3 v t c k O1 -> VA 2 t-1 c68 kzz O1 */
    request(&c, "ma zz MD D3 v t c k O1\r\n");
    memset(&it, 0, sizeof(it));
    it.have = PROTO_MF('t') | PROTO_MF('c');
    it.ttl = -1;
    it.cas = 68;
    expect(buf, META(VA, 2, &it), "VA 2 t-1 c68 kzz O1\r\n");
    /* ms a 1 c k O9 -> HD c29 ka O9 */
    request(&c, "ms a 1 c k O9\r\nx\r\n");
    memset(&it, 0, sizeof(it));
    it.have = PROTO_MF('c');
    it.cas = 29;
    expect(buf, META(HD, 0, &it), "HD c29 ka O9\r\n");
    /* ms zz2 1 C1 c k O7 -> NF c0 kzz2 O7 */
    request(&c, "ms zz2 1 C1 c k O7\r\nx\r\n");
    it.cas = 0;
    expect(buf, META(NF, 0, &it), "NF c0 kzz2 O7\r\n");
    /* negative and large TTLs */
    request(&c, "mg a t\r\n");
    memset(&it, 0, sizeof(it));
    it.have = PROTO_MF('t');
    it.ttl = INT64_MIN;
    expect(buf, META(HD, 0, &it), "HD t-9223372036854775808\r\n");
}

static void
test_meta_miss(void)
{
    struct proto_cmd c;
    char buf[PROTO_META_LINE_MAX];

    /* on a miss only O and k come back, in request order */
    request(&c, "mg zz O1 k\r\n");
    expect(buf, META(EN, 0, NULL), "EN O1 kzz\r\n");
    request(&c, "mg zz k O1 s v t\r\n");
    expect(buf, META(EN, 0, NULL), "EN kzz O1\r\n");
    /* mg YWJj b k O1 v -> EN kYWJj b O1 */
    request(&c, "mg YWJj b k O1 v\r\n");
    expect(buf, META(EN, 0, NULL), "EN kYWJj b O1\r\n");
    /* mg eHl6 b O1 k -> EN O1 keHl6 b */
    request(&c, "mg eHl6 b O1 k\r\n");
    expect(buf, META(EN, 0, NULL), "EN O1 keHl6 b\r\n");
    /* "YW=j" decodes to "a`", which encodes back as "YWA=" */
    request(&c, "md YW=j b k\r\n");
    expect(buf, META(NF, 0, NULL), "NF kYWA= b\r\n");
    /* md zz k O5 q -> NF kzz O5; md eHl6 b k O2 -> HD keHl6 b O2 */
    request(&c, "md zz k O5 q\r\n");
    expect(buf, META(NF, 0, NULL), "NF kzz O5\r\n");
    request(&c, "md eHl6 b k O2\r\n");
    expect(buf, META(HD, 0, NULL), "HD keHl6 b O2\r\n");
    /* an empty opaque echoes as a bare O: mg zz O -> EN O */
    request(&c, "mg zz O\r\n");
    expect(buf, META(EN, 0, NULL), "EN O\r\n");
    request(&c, "mn\r\n");
    expect(buf, META(MN, 0, NULL), "MN\r\n");
    request(&c, "ms a 1 q\r\nx\r\n");
    expect(buf, META(NS, 0, NULL), "NS\r\n");
    expect(buf, META(EX, 0, NULL), "EX\r\n");
    CU_ASSERT_EQUAL(proto_compose_meta(buf, sizeof(buf), PROTO_META_CODE_COUNT,
                                       0, &c, NULL),
                    0);
}

static void
test_meta_sizes(void)
{
    struct proto_cmd c;
    struct proto_meta_item it;
    char line[1024], buf[PROTO_META_LINE_MAX];
    char key[250];
    size_t n, need;

    /* the largest header: a 186-byte binary key re-encoded, the longest
     * opaque and every numeric flag at its widest */
    for (size_t i = 0; i < sizeof(key); i++) {
        key[i] = (char)(i * 7);
    }
    n = (size_t)snprintf(line, sizeof(line), "mg ");
    n += proto_base64_encode(key, 186, line + n, sizeof(line) - n);
    n += (size_t)snprintf(line + n, sizeof(line) - n,
                          " b k v s f t c h l O%s\r\n",
                          "0123456789012345678901234567890");
    request(&c, line);
    CU_ASSERT_EQUAL(c.nkey, 186);
    memset(&it, 0, sizeof(it));
    it.have = PROTO_MF('s') | PROTO_MF('f') | PROTO_MF('t') | PROTO_MF('c') |
              PROTO_MF('h') | PROTO_MF('l');
    it.key = key;
    it.nkey = 250; /* an item key can be 250 binary bytes */
    it.key_binary = true;
    it.size = UINT64_MAX;
    it.flags = UINT32_MAX;
    it.ttl = INT64_MIN;
    it.cas = UINT64_MAX;
    it.last_access = UINT64_MAX;
    it.stale = it.token_sent = it.won = true;
    need = proto_compose_meta(buf, sizeof(buf), PROTO_META_VA, SIZE_MAX, &c,
                              &it);
    CU_ASSERT(need > 400 && need <= PROTO_META_LINE_MAX);
    /* one byte short fails, exact fits */
    CU_ASSERT_EQUAL(
        proto_compose_meta(buf, need - 1, PROTO_META_VA, SIZE_MAX, &c, &it),
        0);
    CU_ASSERT_EQUAL(
        proto_compose_meta(buf, need, PROTO_META_VA, SIZE_MAX, &c, &it),
        need);
    /* the k token decodes back to the key */
    {
        const char *k = strstr(buf, " k"), *e;
        char dec[256];

        CU_ASSERT_PTR_NOT_NULL_FATAL(k);
        k += 2;
        e = strchr(k, ' ');
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        CU_ASSERT_EQUAL(proto_base64_decode(k, (size_t)(e - k), dec,
                                            sizeof(dec)),
                        250);
        CU_ASSERT_EQUAL(memcmp(dec, key, 250), 0);
        CU_ASSERT_EQUAL(strncmp(e, " b ", 3), 0);
    }
}

static void
test_me_line(void)
{
    struct proto_me_info info = {-1, 1, 75, false, 1, 63};
    char buf[PROTO_META_LINE_MAX];
    size_t n;

    /* me zz -> ME zz exp=-1 la=1 cas=75 fetch=no cls=1 size=63 */
    n = proto_compose_me(buf, sizeof(buf), "zz", 2, false, &info);
    expect(buf, n, "ME zz exp=-1 la=1 cas=75 fetch=no cls=1 size=63\r\n");
    /* ms eHl6 1 b / me eHl6 b -> ME eHl6 exp=-1 la=0 cas=79 ... */
    info.la = 0;
    info.cas = 79;
    info.fetched = true;
    n = proto_compose_me(buf, sizeof(buf), "xyz", 3, true, &info);
    expect(buf, n, "ME eHl6 exp=-1 la=0 cas=79 fetch=yes cls=1 size=63\r\n");
    CU_ASSERT_EQUAL(proto_compose_me(buf, 20, "xyz", 3, true, &info), 0);
}

static void
test_meta_quiet(void)
{
    static const struct {
        const char *req;
        proto_meta_code_t code;
        bool quiet;
    } rows[] = {
        /* mg q hides EN only: mg a q -> HD, mg zz q -> (nothing) */
        {"mg a q\r\n", PROTO_META_EN, true},
        {"mg a q\r\n", PROTO_META_HD, false},
        {"mg a q\r\n", PROTO_META_VA, false},
        {"mg a\r\n", PROTO_META_EN, false},
        /* ms q hides HD: NS, EX, NF still come */
        {"ms a 1 q\r\nx\r\n", PROTO_META_HD, true},
        {"ms a 1 q\r\nx\r\n", PROTO_META_NS, false},
        {"ms a 1 q\r\nx\r\n", PROTO_META_NF, false},
        {"ms a 1 q\r\nx\r\n", PROTO_META_EX, false},
        {"ms a 1\r\nx\r\n", PROTO_META_HD, false},
        /* md q hides HD: md zz q -> NF */
        {"md a q\r\n", PROTO_META_HD, true},
        {"md a q\r\n", PROTO_META_NF, false},
        {"md a q\r\n", PROTO_META_EX, false},
        /* ma q hides HD and VA: ma n v q -> (nothing); ma zz q -> NF */
        {"ma a q\r\n", PROTO_META_HD, true},
        {"ma a v q\r\n", PROTO_META_VA, true},
        {"ma a q\r\n", PROTO_META_NF, false},
        {"ma a q\r\n", PROTO_META_NS, false},
        {"ma a q\r\n", PROTO_META_EX, false},
        {"mn\r\n", PROTO_META_MN, false},
    };
    struct proto_cmd c;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        request(&c, rows[i].req);
        CU_ASSERT_EQUAL(proto_meta_quiet(&c, rows[i].code), rows[i].quiet);
    }
}

/* ------------------------------------------------------------------ */
/* Requests: structured -> text -> parse                              */

struct rng {
    uint64_t s;
};

static uint64_t
rnd(struct rng *r)
{
    /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static size_t
rnd_below(struct rng *r, size_t n)
{
    return (size_t)(rnd(r) % n);
}

/* A key: 1..250 bytes that are neither space, '\n', '\r' nor NUL. */
static size_t
rnd_key(struct rng *r, char *k)
{
    size_t n = rnd_below(r, 8) == 0 ? 1 + rnd_below(r, 250)
                                    : 1 + rnd_below(r, 12);

    for (size_t i = 0; i < n; i++) {
        char ch;
        do {
            ch = (char)(rnd(r) & 0xff);
        } while (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\0');
        k[i] = ch;
    }
    return n;
}

struct req {
    proto_cmd_type_t type;
    char key[PROTO_KEY_MAX];
    size_t nkey;
    uint32_t flags;
    int32_t exptime;
    uint64_t cas;
    uint64_t delta;
    char value[64];
    size_t nvalue;
    bool noreply;
    size_t nkeys;
};

/* Write @q as request text; returns its length. */
static size_t
compose_request(const struct req *q, char *out)
{
    size_t n = 0;
    const char *name = proto_cmd_name(q->type);

#define PUTS(s) (memcpy(out + n, s, strlen(s)), n += strlen(s))
#define PUTK() (memcpy(out + n, q->key, q->nkey), n += q->nkey)
    PUTS(name);
    switch (q->type) {
    case PROTO_CMD_SET:
    case PROTO_CMD_ADD:
    case PROTO_CMD_REPLACE:
    case PROTO_CMD_APPEND:
    case PROTO_CMD_PREPEND:
    case PROTO_CMD_CAS:
        PUTS(" ");
        PUTK();
        n += (size_t)sprintf(out + n, " %" PRIu32 " %" PRId32 " %zu",
                             q->flags, q->exptime, q->nvalue);
        if (q->type == PROTO_CMD_CAS) {
            n += (size_t)sprintf(out + n, " %" PRIu64, q->cas);
        }
        if (q->noreply) {
            PUTS(" noreply");
        }
        PUTS("\r\n");
        memcpy(out + n, q->value, q->nvalue);
        n += q->nvalue;
        PUTS("\r\n");
        break;
    case PROTO_CMD_MS:
        PUTS(" ");
        PUTK();
        n += (size_t)sprintf(out + n,
                             " %zu F%" PRIu32 " T%" PRId32 " C%" PRIu64
                             "%s\r\n",
                             q->nvalue, q->flags, q->exptime, q->cas,
                             q->noreply ? " q" : "");
        memcpy(out + n, q->value, q->nvalue);
        n += q->nvalue;
        PUTS("\r\n");
        break;
    case PROTO_CMD_GET:
    case PROTO_CMD_GETS:
        for (size_t i = 0; i < q->nkeys; i++) {
            PUTS(" ");
            PUTK();
        }
        PUTS("\r\n");
        break;
    case PROTO_CMD_GAT:
        n += (size_t)sprintf(out + n, " %" PRId32, q->exptime);
        for (size_t i = 0; i < q->nkeys; i++) {
            PUTS(" ");
            PUTK();
        }
        PUTS("\r\n");
        break;
    case PROTO_CMD_DELETE:
        PUTS(" ");
        PUTK();
        PUTS(q->noreply ? " noreply\r\n" : "\r\n");
        break;
    case PROTO_CMD_INCR:
        PUTS(" ");
        PUTK();
        n += (size_t)sprintf(out + n, " %" PRIu64 "%s\r\n", q->delta,
                             q->noreply ? " noreply" : "");
        break;
    case PROTO_CMD_TOUCH:
        PUTS(" ");
        PUTK();
        n += (size_t)sprintf(out + n, " %" PRId32 "%s\r\n", q->exptime,
                             q->noreply ? " noreply" : "");
        break;
    case PROTO_CMD_MA:
        PUTS(" ");
        PUTK();
        n += (size_t)sprintf(out + n, " D%" PRIu64 " N%" PRId32 "%s\r\n",
                             q->delta, q->exptime, q->noreply ? " q" : "");
        break;
    default:
        PUTS("\r\n");
        break;
    }
#undef PUTS
#undef PUTK
    return n;
}

static void
rnd_req(struct rng *r, struct req *q)
{
    static const proto_cmd_type_t types[] = {
        PROTO_CMD_SET,    PROTO_CMD_ADD,   PROTO_CMD_REPLACE,
        PROTO_CMD_APPEND, PROTO_CMD_PREPEND, PROTO_CMD_CAS,
        PROTO_CMD_MS,     PROTO_CMD_GET,   PROTO_CMD_GETS,
        PROTO_CMD_GAT,    PROTO_CMD_DELETE, PROTO_CMD_INCR,
        PROTO_CMD_TOUCH,  PROTO_CMD_MA,    PROTO_CMD_VERSION,
        PROTO_CMD_MN};

    memset(q, 0, sizeof(*q));
    q->type = types[rnd_below(r, sizeof(types) / sizeof(types[0]))];
    q->nkey = rnd_key(r, q->key);
    q->flags = (uint32_t)rnd(r);
    q->exptime = (int32_t)(uint32_t)rnd(r);
    q->cas = rnd(r);
    q->delta = rnd(r) >> rnd_below(r, 64);
    q->nvalue = rnd_below(r, sizeof(q->value));
    for (size_t i = 0; i < q->nvalue; i++) {
        /* values are any bytes, \r\n included */
        q->value[i] = rnd_below(r, 4) == 0 ? "\r\n\0 "[rnd_below(r, 4)]
                                           : (char)rnd(r);
    }
    q->noreply = rnd_below(r, 2) == 0;
    q->nkeys = 1 + rnd_below(r, 5);
}

/* The parsed command must say what was written. */
static int
same(const struct req *q, const struct proto_cmd *c)
{
    int ok = c->type == q->type;

    switch (q->type) {
    case PROTO_CMD_SET:
    case PROTO_CMD_ADD:
    case PROTO_CMD_REPLACE:
    case PROTO_CMD_APPEND:
    case PROTO_CMD_PREPEND:
    case PROTO_CMD_CAS:
    case PROTO_CMD_MS:
        ok &= c->flags == q->flags && c->exptime == q->exptime;
        ok &= c->nvalue == q->nvalue &&
              memcmp(c->value, q->value, q->nvalue) == 0;
        ok &= c->noreply == q->noreply;
        if (q->type == PROTO_CMD_CAS || q->type == PROTO_CMD_MS) {
            ok &= c->cas == q->cas;
        }
        break;
    case PROTO_CMD_GET:
    case PROTO_CMD_GETS:
    case PROTO_CMD_GAT: {
        struct proto_iter it;
        const char *k;
        size_t nk, i = 0;

        ok &= c->nkeys == q->nkeys;
        proto_keys_begin(&it, c);
        while (proto_iter_next(&it, &k, &nk)) {
            ok &= nk == q->nkey && memcmp(k, q->key, nk) == 0;
            i++;
        }
        ok &= i == q->nkeys;
        if (q->type == PROTO_CMD_GAT) {
            ok &= c->exptime == q->exptime;
        }
        return ok;
    }
    case PROTO_CMD_DELETE:
        ok &= c->noreply == q->noreply;
        break;
    case PROTO_CMD_INCR:
        ok &= c->delta == q->delta && c->noreply == q->noreply;
        break;
    case PROTO_CMD_TOUCH:
        ok &= c->exptime == q->exptime && c->noreply == q->noreply;
        break;
    case PROTO_CMD_MA:
        ok &= c->meta.delta == q->delta &&
              c->meta.vivify_ttl == q->exptime && c->noreply == q->noreply;
        break;
    default:
        return ok;
    }
    ok &= c->nkey == q->nkey && memcmp(c->key, q->key, q->nkey) == 0;
    return ok;
}

/*
 * 300 random requests: each parsed whole and at a random split, then all
 * of them back to back from one buffer, consumed in sequence.
 */
static void
test_request_round_trip(void)
{
    enum { N = 300 };
    struct rng r = {42};
    struct req *qs = calloc(N, sizeof(*qs));
    char *all = malloc((size_t)N * 1600);
    size_t *lens = calloc(N, sizeof(*lens));
    size_t total = 0, off, used;
    struct proto_cmd c;

    CU_ASSERT_FATAL(qs != NULL && all != NULL && lens != NULL);
    harness_limits_default();
    for (size_t i = 0; i < N; i++) {
        char *text = all + total;
        size_t n, k;

        rnd_req(&r, &qs[i]);
        n = compose_request(&qs[i], text);
        lens[i] = n;
        total += n;
        CU_ASSERT_EQUAL(proto_parse(&c, text, n, &harness_limits, &used),
                        PROTO_OK);
        CU_ASSERT_EQUAL(used, n);
        CU_ASSERT(same(&qs[i], &c));
        /* a prefix is AGAIN, consuming nothing */
        k = 1 + rnd_below(&r, n - 1);
        CU_ASSERT_EQUAL(proto_parse(&c, text, k, &harness_limits, &used),
                        PROTO_AGAIN);
        CU_ASSERT_EQUAL(used, 0);
    }
    off = 0;
    for (size_t i = 0; i < N; i++) {
        CU_ASSERT_EQUAL_FATAL(proto_parse(&c, all + off, total - off,
                                          &harness_limits, &used),
                              PROTO_OK);
        CU_ASSERT_EQUAL(used, lens[i]);
        CU_ASSERT(same(&qs[i], &c));
        off += used;
    }
    CU_ASSERT_EQUAL(off, total);
    free(qs);
    free(all);
    free(lens);
}

static const struct cu_test compose_tests[] = {
    CU_TEST(test_value_line),   CU_TEST(test_fixed_lines),
    CU_TEST(test_numbers_and_lines), CU_TEST(test_meta_hit),
    CU_TEST(test_meta_miss),    CU_TEST(test_meta_sizes),
    CU_TEST(test_me_line),      CU_TEST(test_meta_quiet),
    CU_TEST(test_request_round_trip), CU_END};

CU_MAIN({"compose", compose_tests, NULL, NULL})
