/*
 * fuzz_engine.c - a fuzz target for libcorral: the input is a program of
 * cache operations, run against the engine and against a simple reference
 * model of memcached's semantics; any difference aborts.
 *
 * Run it (clang-14 with libFuzzer, Debian libfuzzer-14-dev):
 *
 *   ./configure CC=clang-14 --enable-fuzz && make
 *   tests/fuzz/fuzz_engine -max_total_time=1800 \
 *       tests/fuzz/corpus/engine
 *
 * Ordinary builds link replay_main.c instead and replay the checked-in
 * corpus in make check (tests/fuzz/replay_engine).
 *
 * The program.  Each operation is an opcode byte followed by its operand
 * bytes (a missing byte reads as 0): the key (8 keys, "a0".."a3" and
 * "b0".."b3", so that prefix invalidations of "a" and "b" mean something),
 * then per opcode flags, an exptime code, a value (length byte, then bytes
 * from a letters-and-digits alphabet), a tag, a number.  The clock is
 * injected and only moves by the "advance" operation, so expiry is exact.
 * The memory limit is far above what eight small keys need: nothing is
 * evicted, and the model can predict every answer.
 *
 * The model keeps, per key, whether it is present, its value, flags,
 * absolute expiry, tag and the last CAS the engine reported for it (used
 * to issue matching and stale CAS stores).  At the end every expired or
 * invalidated item is swept and curr_items must equal the model's count.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral.h"

#define NKEYS 8
#define VMAX 64
#define NOW0 1700000000u

struct slot {
    bool present;
    char value[VMAX * 4 + 32];
    size_t len;
    uint32_t flags;
    uint32_t exptime;      /* absolute seconds; 0 never */
    int tag;               /* -1: none */
    uint64_t cas;          /* last CAS the engine reported, 0 unknown */
};

struct prog {
    const uint8_t *p;
    size_t n;
    size_t i;
};

static uint64_t now_s;
static struct slot model[NKEYS];

static uint64_t
fake_clock(void *ud)
{
    (void)ud;
    return now_s * 1000000000u;
}

static uint8_t
next(struct prog *g)
{
    return g->i < g->n ? g->p[g->i++] : 0;
}

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_engine: %s:%d: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                   \
            abort();                                                          \
        }                                                                     \
    } while (0)

static const char *const key_names[NKEYS] = {"a0", "a1", "a2", "a3",
                                             "b0", "b1", "b2", "b3"};
static const char *const tag_names[] = {"t0", "t1", "t2"};

/* exptime codes: never, expired, a few seconds, 30 days exactly, an
 * absolute time soon, an absolute time past */
static int64_t
exptime_of(uint8_t code)
{
    switch (code % 8) {
    case 0:
    case 1:
        return 0;
    case 2:
        return -1;
    case 3:
        return 1 + code / 8 % 5;
    case 4:
        return 2592000;
    case 5:
        return (int64_t)now_s + 3;
    case 6:
        return (int64_t)now_s - 10;
    default:
        return 2;
    }
}

static uint32_t
abs_exptime(int64_t e)
{
    if (e == 0) {
        return 0;
    }
    if (e < 0) {
        return 1;
    }
    return (uint32_t)(e <= 2592000 ? (int64_t)now_s + e : e);
}

static bool
live(int k)
{
    struct slot *s = &model[k];
    if (s->present && s->exptime != 0 && s->exptime <= now_s) {
        s->present = false;
    }
    return s->present;
}

static size_t
read_value(struct prog *g, char *buf)
{
    static const char alphabet[] = "abcdefghij0123456789 ";
    size_t len = next(g) % VMAX;
    for (size_t i = 0; i < len; i++) {
        buf[i] = alphabet[next(g) % (sizeof(alphabet) - 1)];
    }
    return len;
}

/* memcached's reading of a number: spaces, digits, then end or space. */
static bool
numeric(const struct slot *s, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;
    size_t digits = 0;
    while (i < s->len && s->value[i] == ' ') {
        i++;
    }
    for (; i < s->len && s->value[i] >= '0' && s->value[i] <= '9'; i++) {
        unsigned d = (unsigned)(s->value[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
        digits++;
    }
    if (digits == 0 || (i < s->len && s->value[i] != ' ')) {
        return false;
    }
    *out = v;
    return true;
}

static void
check_item(corral_t *c, int k, corral_item_t *it)
{
    struct slot *s = &model[k];
    size_t len;
    const char *v = corral_item_value(it, &len);
    CHECK(len == s->len);
    CHECK(len == 0 || memcmp(v, s->value, len) == 0);
    CHECK(corral_item_flags(it) == s->flags);
    CHECK(corral_item_ttl(c, it) ==
          (s->exptime == 0 ? -1 : (int64_t)s->exptime - (int64_t)now_s));
    s->cas = corral_item_cas(it);
}

static void
op_get(corral_t *c, int k)
{
    corral_item_t *it = NULL;
    corral_status_t st = corral_get(c, key_names[k], 2, &it);
    if (live(k)) {
        CHECK(st == CORRAL_OK);
        check_item(c, k, it);
    } else {
        CHECK(st == CORRAL_ENOTFOUND && it == NULL);
    }
    corral_item_release(it);
}

static void
op_store(corral_t *c, struct prog *g, int k, corral_mode_t mode)
{
    struct slot *s = &model[k];
    char buf[VMAX];
    corral_store_opts_t o = {0};
    const char *tags[1];
    uint64_t cas = 0;
    int tag = next(g) % 4;
    bool was = live(k);
    corral_status_t st, want;

    o.mode = mode;
    o.flags = next(g) % 3 == 0 ? 0 : (uint32_t)next(g) * 16777619u;
    o.exptime = exptime_of(next(g));
    if (tag < 3 && mode != CORRAL_APPEND && mode != CORRAL_PREPEND) {
        tags[0] = tag_names[tag];
        o.tags = tags;
        o.ntags = 1;
    } else {
        tag = -1;
    }
    if (mode == CORRAL_CAS) {
        /* the CAS last seen, or one no item can have (CAS values count
         * up from small numbers) */
        o.cas = next(g) % 2 == 0 ? s->cas : UINT64_MAX - next(g);
    }
    size_t len = read_value(g, buf);
    if ((mode == CORRAL_APPEND || mode == CORRAL_PREPEND) &&
        s->len + len > sizeof(s->value)) {
        len = sizeof(s->value) - s->len; /* the model's room */
    }
    st = corral_store(c, key_names[k], 2, buf, len, &o, &cas);

    switch (mode) {
    case CORRAL_ADD:
        want = was ? CORRAL_ENOTSTORED : CORRAL_OK;
        break;
    case CORRAL_REPLACE:
    case CORRAL_APPEND:
    case CORRAL_PREPEND:
        want = was ? CORRAL_OK : CORRAL_ENOTSTORED;
        break;
    case CORRAL_CAS:
        want = !was ? CORRAL_ENOTFOUND
                    : (o.cas == s->cas && s->cas != 0 ? CORRAL_OK
                                                      : CORRAL_EEXISTS);
        break;
    default:
        want = CORRAL_OK;
        break;
    }
    CHECK(st == want);
    if (st != CORRAL_OK) {
        return;
    }
    CHECK(cas != 0 && cas != s->cas);
    if (mode == CORRAL_APPEND || mode == CORRAL_PREPEND) {
        char tmp[sizeof(s->value)];
        if (mode == CORRAL_APPEND) {
            memcpy(s->value + s->len, buf, len);
        } else {
            memcpy(tmp, s->value, s->len);
            memcpy(s->value, buf, len);
            memcpy(s->value + len, tmp, s->len);
        }
        s->len += len;
    } else {
        memcpy(s->value, buf, len);
        s->len = len;
        s->flags = o.flags;
        s->exptime = abs_exptime(o.exptime);
        s->tag = tag;
    }
    s->present = true;
    s->cas = cas;
}

static void
op_arith(corral_t *c, struct prog *g, int k, bool decr)
{
    struct slot *s = &model[k];
    uint64_t delta = next(g) * 97u + (next(g) == 255 ? UINT64_MAX - 50 : 0);
    uint64_t v = 0, got = 0;
    corral_status_t st = decr ? corral_decr(c, key_names[k], 2, delta, &got)
                              : corral_incr(c, key_names[k], 2, delta, &got);
    char digits[32];
    int n;

    if (!live(k)) {
        CHECK(st == CORRAL_ENOTFOUND);
        return;
    }
    if (!numeric(s, &v)) {
        CHECK(st == CORRAL_ENONNUMERIC);
        return;
    }
    CHECK(st == CORRAL_OK);
    v = decr ? (v < delta ? 0 : v - delta) : v + delta;
    CHECK(got == v);
    n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v);
    if ((size_t)n <= s->len) {
        /* rewritten in place, padded with spaces (nobody holds it) */
        memcpy(s->value, digits, (size_t)n);
        memset(s->value + n, ' ', s->len - (size_t)n);
    } else {
        memcpy(s->value, digits, (size_t)n);
        s->len = (size_t)n;
    }
    s->cas = 0;
}

static void
op_setnum(corral_t *c, struct prog *g, int k)
{
    struct slot *s = &model[k];
    char digits[32];
    uint64_t v = (uint64_t)next(g) << (next(g) % 57);
    int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v);
    CHECK(corral_set(c, key_names[k], 2, digits, (size_t)n, 0, 0) ==
          CORRAL_OK);
    memcpy(s->value, digits, (size_t)n);
    s->len = (size_t)n;
    s->flags = 0;
    s->exptime = 0;
    s->tag = -1;
    s->present = true;
    s->cas = 0;
}

static void
drop_where(bool (*pred)(int k, int arg), int arg)
{
    for (int k = 0; k < NKEYS; k++) {
        if (model[k].present && pred(k, arg)) {
            model[k].present = false;
        }
    }
}

static bool
has_tag(int k, int tag)
{
    return model[k].tag == tag;
}

static bool
has_prefix(int k, int letter)
{
    return key_names[k][0] == letter;
}

static bool
always(int k, int arg)
{
    (void)k;
    (void)arg;
    return true;
}

static void
run(corral_t *c, struct prog *g)
{
    while (g->i < g->n) {
        uint8_t op = next(g);
        int k = next(g) % NKEYS;
        switch (op % 20) {
        case 0:
        case 1:
            op_get(c, k);
            break;
        case 2:
            op_store(c, g, k, CORRAL_SET);
            break;
        case 3:
            op_store(c, g, k, CORRAL_ADD);
            break;
        case 4:
            op_store(c, g, k, CORRAL_REPLACE);
            break;
        case 5:
            op_store(c, g, k, CORRAL_APPEND);
            break;
        case 6:
            op_store(c, g, k, CORRAL_PREPEND);
            break;
        case 7:
            op_store(c, g, k, CORRAL_CAS);
            break;
        case 8: {
            corral_status_t st = corral_delete(c, key_names[k], 2);
            CHECK(st == (live(k) ? CORRAL_OK : CORRAL_ENOTFOUND));
            model[k].present = false;
            break;
        }
        case 9:
            op_arith(c, g, k, false);
            break;
        case 10:
            op_arith(c, g, k, true);
            break;
        case 11: {
            int64_t e = exptime_of(next(g));
            corral_status_t st = corral_touch(c, key_names[k], 2, e);
            CHECK(st == (live(k) ? CORRAL_OK : CORRAL_ENOTFOUND));
            if (st == CORRAL_OK) {
                model[k].exptime = abs_exptime(e);
            }
            break;
        }
        case 12: {
            int64_t e = exptime_of(next(g));
            corral_item_t *it = NULL;
            corral_status_t st = corral_gat(c, key_names[k], 2, e, &it);
            if (live(k)) {
                CHECK(st == CORRAL_OK);
                model[k].exptime = abs_exptime(e);
                if (live(k)) {
                    check_item(c, k, it);
                }
            } else {
                CHECK(st == CORRAL_ENOTFOUND);
            }
            corral_item_release(it);
            break;
        }
        case 13:
            now_s += next(g) % 4;
            break;
        case 14:
            if (next(g) % 8 == 0) {
                CHECK(corral_flush(c, 0) == CORRAL_OK);
                drop_where(always, 0);
            }
            break;
        case 15: {
            int tag = next(g) % 3;
            CHECK(corral_invalidate_tag(c, tag_names[tag]) == CORRAL_OK);
            drop_where(has_tag, tag);
            break;
        }
        case 16: {
            int letter = next(g) % 2 ? 'a' : 'b';
            char p[1] = {(char)letter};
            CHECK(corral_invalidate_prefix(c, p, 1) == CORRAL_OK);
            drop_where(has_prefix, letter);
            break;
        }
        case 17:
            op_setnum(c, g, k);
            break;
        case 18: {
            char buf[8];
            size_t len = 0;
            corral_status_t st = corral_get_copy(c, key_names[k], 2, buf,
                                                 sizeof(buf), &len, NULL,
                                                 NULL);
            if (!live(k)) {
                CHECK(st == CORRAL_ENOTFOUND);
            } else if (model[k].len > sizeof(buf)) {
                CHECK(st == CORRAL_ERANGE && len == model[k].len);
            } else {
                CHECK(st == CORRAL_OK && len == model[k].len);
                CHECK(len == 0 || memcmp(buf, model[k].value, len) == 0);
            }
            break;
        }
        default:
            corral_sweep(c, next(g));
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    corral_config_t cfg;
    corral_t *c;
    struct prog g = {data, size, 0};
    corral_stats_t st;
    size_t present = 0;

    now_s = NOW0;
    for (int k = 0; k < NKEYS; k++) {
        memset(&model[k], 0, sizeof(model[k]));
        model[k].tag = -1;
    }
    corral_config_init(&cfg);
    cfg.shards = data != NULL && size > 0 && (data[0] & 1) ? 4 : 1;
    cfg.clock = fake_clock;
    CHECK(corral_create(&cfg, &c) == CORRAL_OK);
    run(c, &g);

    /* every key once more, then a full sweep: what remains linked is
     * exactly what the model holds */
    for (int k = 0; k < NKEYS; k++) {
        op_get(c, k);
        present += live(k);
    }
    for (int i = 0; i < 8; i++) {
        corral_sweep(c, 1000);
    }
    corral_stats(c, &st, sizeof(st));
    CHECK(st.curr_items == present);
    CHECK(st.evictions == 0);
    CHECK(st.bytes <= st.mem_used);
    corral_destroy(c);
    return 0;
}
