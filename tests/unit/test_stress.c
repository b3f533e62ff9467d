/*
 * test_stress.c - several threads run random operations at once, and
 * every result is checked in a way that stays sound under concurrency.
 *
 * Three kinds of keys:
 *
 *   own keys    "o<t>:<i>": touched only by thread t, which keeps an exact
 *               model (value, flags, CAS, TTL) and checks every result
 *               against it: status, value, CAS, TTL, incr/decr arithmetic
 *               with memcached's in-place padding.
 *   shared keys "s:<i>": every thread sets, adds, replaces, appends,
 *               prepends, cas-stores, deletes, touches, marks stale, reads
 *               and pins them.  Values are sequences of self-describing
 *               records ({key,writer,seq,len,payload,crc}), so a torn or
 *               mixed value, or one under the wrong key, fails to parse.
 *               Each thread checks that the CAS it sees for a key never
 *               goes down, and that a value it pinned never changes.
 *   counters    "c:<i>": every thread increments and decrements them; the
 *               sum of the deltas that succeeded must be exactly what the
 *               counter holds at the end, and every value read must be a
 *               well-formed (possibly space-padded) number.
 *
 * Flushes: now and then a thread flushes the cache.  A test-level rwlock
 * makes each flush atomic with respect to own-key and counter operations
 * (which hold it shared), so their models can be reset at the flush; the
 * shared keys do not take it, and race with flushes freely.
 *
 * At the end, after the threads are joined: every model matches the
 * cache, every CAS returned by a successful change is unique across the
 * whole run, nothing was evicted (the models rely on it), the accounting
 * is exact, and once the sweep has passed curr_items equals the number of
 * live keys and no segment is left that holds none of them.
 *
 * The run lasts about CORRAL_STRESS_MS milliseconds (default 2000); the
 * seed is printed and can be set with CORRAL_STRESS_SEED.  Worker threads
 * never call CUnit (it is not thread-safe): they count and print their
 * own errors, and the main thread asserts on the totals.
 */
#include "cache.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accounting.h"
#include "cu_main.h"

#define NS 1000000000ull
#define T0 1700000000ull

#define NTHREADS 4
#define OWN_KEYS 128
#define SHARED_KEYS 48
#define NCOUNTERS 6
#define MAXPINS 8
#define OWN_MAX 400           /* longest own value */
#define SHARED_MAX 2000       /* appends stop past about this length */
#define SNAP_MAX 16384        /* longest shared value a pin can hold */
#define COUNTER_BASE UINT64_C(1000000000000)
#define CAS_LOG_MAX 400000    /* CAS values kept per thread */
#define FLUSH_ODDS 5000       /* one operation in this many flushes */

/* ---------------------------------------------------------------------- */
/* Shared state                                                           */

static corral_t *cache;
static pthread_rwlock_t flush_lock;
static _Atomic uint64_t flush_epoch;
static _Atomic int64_t counter_sum[NCOUNTERS];
static _Atomic bool stop;
static _Atomic unsigned long total_flushes;

static uint64_t
fake_clock(void *ud)
{
    (void)ud;
    return T0 * NS; /* nothing expires during the run */
}

/* ---------------------------------------------------------------------- */
/* Per-thread state                                                       */

struct model {
    bool present;
    char value[OWN_MAX + 1];
    size_t len;
    uint32_t flags;
    uint64_t cas;
    int64_t ttl;               /* -1 = never expires */
};

struct pin {
    corral_item_t *it;
    unsigned key;
    char value[SNAP_MAX];
    size_t len;
    uint32_t flags;
    uint64_t cas;
};

struct worker {
    unsigned id;
    uint64_t rng;
    pthread_t thread;
    struct model own[OWN_KEYS];
    uint64_t epoch;
    uint64_t last_cas[SHARED_KEYS];
    size_t shared_len[SHARED_KEYS];  /* last length seen, for appends */
    uint64_t seq;
    struct pin pins[MAXPINS];
    unsigned npins;
    uint64_t *cas_log;
    size_t ncas;
    unsigned long ops, errors, flushes;
};

static struct worker workers[NTHREADS];

static uint64_t
rnd(struct worker *w)
{
    /* xorshift64* */
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 0x2545f4914f6cdd1dull;
}

static unsigned
rnd_below(struct worker *w, unsigned n)
{
    return (unsigned)(rnd(w) % n);
}

static void
fail(struct worker *w, const char *fmt, ...)
{
    va_list ap;

    if (w->errors++ < 10) {
        char buf[512];
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        fprintf(stderr, "  thread %u, op %lu: %s\n", w->id, w->ops, buf);
    }
}

static void
log_cas(struct worker *w, uint64_t cas)
{
    if (cas == 0) {
        fail(w, "a successful change returned CAS 0");
    }
    if (w->ncas < CAS_LOG_MAX) {
        w->cas_log[w->ncas++] = cas;
    }
}

/* ---------------------------------------------------------------------- */
/* memcached's number rule, for the models                                */

/* Leading white space, an optional '+', digits without overflow, then the
 * end, white space or NUL.  (The values here never hold '-'.) */
static bool
parse_number(const char *p, size_t n, uint64_t *out)
{
    size_t i = 0, digits = 0;
    uint64_t v = 0;

    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' ||
                     p[i] == '\n' || p[i] == '\v' || p[i] == '\f')) {
        i++;
    }
    if (i < n && p[i] == '+') {
        i++;
    }
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    if (digits == 0 || (i < n && p[i] != ' ' && p[i] != '\0' &&
                        !(p[i] >= '\t' && p[i] <= '\r'))) {
        return false;
    }
    *out = v;
    return true;
}

/* A counter's value: digits, then only spaces (in-place padding). */
static bool
well_formed_number(const char *p, size_t n, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;

    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (i == 0 || i > 20) {
        return false;
    }
    for (; i < n; i++) {
        if (p[i] != ' ') {
            return false;
        }
    }
    *out = v;
    return true;
}

/* ---------------------------------------------------------------------- */
/* Self-describing records for shared keys                                */

static uint32_t
fnv1a(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}

static char
payload_byte(unsigned writer, uint64_t seq, size_t i)
{
    return (char)('a' + (seq + i * 7 + writer) % 26);
}

/* {key,writer,seq16,len4,payload,crc8} */
static size_t
make_record(char *dst, size_t cap, const char *key, unsigned writer,
            uint64_t seq, unsigned plen)
{
    int n = snprintf(dst, cap, "{%s,%u,%016" PRIx64 ",%04x,", key, writer,
                     seq, plen);
    size_t pos = (size_t)n;

    for (unsigned i = 0; i < plen; i++) {
        dst[pos++] = payload_byte(writer, seq, i);
    }
    pos += (size_t)snprintf(dst + pos, cap - pos, ",%08x}",
                            fnv1a(dst, pos));
    return pos;
}

static bool
hex_field(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        unsigned d;
        if (ch >= '0' && ch <= '9') {
            d = (unsigned)(ch - '0');
        } else if (ch >= 'a' && ch <= 'f') {
            d = (unsigned)(ch - 'a' + 10);
        } else {
            return false;
        }
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

/* True if v is one or more whole, intact records, all for this key. */
static bool
valid_shared(const char *v, size_t n, const char *key)
{
    size_t nkey = strlen(key), pos = 0;

    if (n == 0) {
        return false;
    }
    while (pos < n) {
        size_t start = pos;
        uint64_t seq, plen, crc;
        unsigned writer;

        /* "{" key "," digit "," 16 hex "," 4 hex "," */
        if (n - pos < 1 + nkey + 1 + 2 + 17 + 5 || v[pos] != '{' ||
            memcmp(v + pos + 1, key, nkey) != 0 || v[pos + 1 + nkey] != ',') {
            return false;
        }
        pos += 1 + nkey + 1;
        if (v[pos] < '0' || v[pos] > '9' || v[pos + 1] != ',') {
            return false;
        }
        writer = (unsigned)(v[pos] - '0');
        pos += 2;
        if (!hex_field(v + pos, 16, &seq) || v[pos + 16] != ',') {
            return false;
        }
        pos += 17;
        if (!hex_field(v + pos, 4, &plen) || v[pos + 4] != ',') {
            return false;
        }
        pos += 5;
        if (n - pos < plen + 10) {
            return false;
        }
        for (size_t i = 0; i < plen; i++) {
            if (v[pos + i] != payload_byte(writer, seq, i)) {
                return false;
            }
        }
        pos += plen;
        if (v[pos] != ',' || !hex_field(v + pos + 1, 8, &crc) ||
            v[pos + 9] != '}' || crc != fnv1a(v + start, pos - start)) {
            return false;
        }
        pos += 10;
    }
    return true;
}

/* ---------------------------------------------------------------------- */
/* Own keys                                                               */

static void
own_key(char *buf, size_t cap, unsigned t, unsigned k)
{
    snprintf(buf, cap, "o%u:%u", t, k);
}

static int64_t
random_exptime(struct worker *w)
{
    switch (rnd_below(w, 4)) {
    case 0:
        return 1000 + rnd_below(w, 100000);
    case 1:
        return (int64_t)T0 + 5000 + rnd_below(w, 1000); /* absolute */
    default:
        return 0;
    }
}

static int64_t
ttl_for(int64_t exptime)
{
    if (exptime == 0) {
        return -1;
    }
    return exptime > CORRAL_RELTIME_MAX ? exptime - (int64_t)T0 : exptime;
}

/* A random value: a decimal number (for arithmetic), letters, or empty. */
static size_t
random_value(struct worker *w, char *buf, size_t max)
{
    size_t n;

    switch (rnd_below(w, 5)) {
    case 0:
    case 1: {
        uint64_t v = rnd(w) >> rnd_below(w, 64);
        n = (size_t)snprintf(buf, max + 1, "%" PRIu64, v);
        break;
    }
    case 2:
        n = 0;
        break;
    default:
        n = 1 + rnd_below(w, (unsigned)(max < 200 ? max : 200));
        for (size_t i = 0; i < n; i++) {
            buf[i] = (char)('a' + rnd_below(w, 26));
        }
        break;
    }
    return n;
}

/* Check key k against the model with a lookup. */
static void
own_verify(struct worker *w, unsigned k)
{
    struct model *m = &w->own[k];
    char key[32], buf[OWN_MAX + 1];
    size_t len = 0;
    uint32_t flags = 0;
    uint64_t cas = 0;
    corral_status_t st;

    own_key(key, sizeof(key), w->id, k);
    st = corral_get_copy(cache, key, strlen(key), buf, sizeof(buf), &len,
                         &flags, &cas);
    if (!m->present) {
        if (st != CORRAL_ENOTFOUND) {
            fail(w, "%s: expected absent, got %d", key, (int)st);
        }
        return;
    }
    if (st != CORRAL_OK) {
        fail(w, "%s: expected present, got %d", key, (int)st);
        return;
    }
    if (len != m->len || memcmp(buf, m->value, len) != 0) {
        fail(w, "%s: value '%.*s', expected '%.*s'", key, (int)len, buf,
             (int)m->len, m->value);
    }
    if (flags != m->flags) {
        fail(w, "%s: flags %u, expected %u", key, flags, m->flags);
    }
    if (cas != m->cas) {
        fail(w, "%s: CAS %" PRIu64 ", expected %" PRIu64, key, cas, m->cas);
    }
}

static void
own_verify_ttl(struct worker *w, unsigned k)
{
    struct model *m = &w->own[k];
    corral_get_opts_t o = {0};
    corral_item_t *it;
    char key[32];

    own_key(key, sizeof(key), w->id, k);
    o.flags = CORRAL_GET_NOBUMP;
    if (corral_get_ex(cache, key, strlen(key), &o, &it, NULL) !=
        (m->present ? CORRAL_OK : CORRAL_ENOTFOUND)) {
        fail(w, "%s: presence differs", key);
        return;
    }
    if (m->present) {
        if (corral_item_ttl(cache, it) != m->ttl) {
            fail(w, "%s: ttl %" PRId64 ", expected %" PRId64, key,
                 corral_item_ttl(cache, it), m->ttl);
        }
        corral_item_release(it);
    }
}

static void
expect_status(struct worker *w, const char *what, const char *key,
              corral_status_t got, corral_status_t want)
{
    if (got != want) {
        fail(w, "%s %s: status %d, expected %d", what, key, (int)got,
             (int)want);
    }
}

/* The model's value after incr/decr to v: in place (space-padded) when
 * the digits fit in the old length, else exactly the digits. */
static void
model_number(struct model *m, uint64_t v, bool in_place)
{
    char digits[24];
    size_t n = (size_t)snprintf(digits, sizeof(digits), "%" PRIu64, v);

    if (in_place && n <= m->len) {
        memcpy(m->value, digits, n);
        memset(m->value + n, ' ', m->len - n);
    } else {
        memcpy(m->value, digits, n);
        m->len = n;
    }
}

static void
own_op(struct worker *w)
{
    unsigned k = rnd_below(w, OWN_KEYS);
    struct model *m = &w->own[k];
    corral_store_opts_t so = {0};
    char key[32], value[OWN_MAX + 1];
    corral_status_t st;
    uint64_t cas = 0;
    size_t n;

    own_key(key, sizeof(key), w->id, k);
    switch (rnd_below(w, 14)) {
    case 0: /* set */
    case 1:
    case 2: /* add */
    case 3: /* replace */
        so.mode = (corral_mode_t[]){CORRAL_SET, CORRAL_SET, CORRAL_ADD,
                                    CORRAL_REPLACE}[rnd_below(w, 4)];
        n = random_value(w, value, OWN_MAX);
        so.flags = rnd_below(w, 3) == 0 ? 0 : (uint32_t)rnd(w);
        so.exptime = random_exptime(w);
        st = corral_store(cache, key, strlen(key), value, n, &so, &cas);
        if ((so.mode == CORRAL_ADD && m->present) ||
            (so.mode == CORRAL_REPLACE && !m->present)) {
            expect_status(w, "store", key, st, CORRAL_ENOTSTORED);
            break;
        }
        expect_status(w, "store", key, st, CORRAL_OK);
        if (st == CORRAL_OK) {
            log_cas(w, cas);
            m->present = true;
            memcpy(m->value, value, n);
            m->len = n;
            m->flags = so.flags;
            m->cas = cas;
            m->ttl = ttl_for(so.exptime);
        }
        break;
    case 4: /* append or prepend */
        n = random_value(w, value, 40);
        so.mode = rnd_below(w, 2) ? CORRAL_APPEND : CORRAL_PREPEND;
        if (m->present && m->len + n > OWN_MAX) {
            break;
        }
        st = corral_store(cache, key, strlen(key), value, n, &so, &cas);
        if (!m->present) {
            expect_status(w, "append", key, st, CORRAL_ENOTSTORED);
            break;
        }
        expect_status(w, "append", key, st, CORRAL_OK);
        if (st == CORRAL_OK) {
            log_cas(w, cas);
            if (so.mode == CORRAL_APPEND) {
                memcpy(m->value + m->len, value, n);
            } else {
                memmove(m->value + n, m->value, m->len);
                memcpy(m->value, value, n);
            }
            m->len += n;
            m->cas = cas;
        }
        break;
    case 5: /* cas, right or wrong */
        n = random_value(w, value, OWN_MAX);
        so.mode = CORRAL_CAS;
        so.cas = rnd_below(w, 3) == 0 ? m->cas + 1 + rnd_below(w, 3) : m->cas;
        so.flags = (uint32_t)rnd(w);
        st = corral_store(cache, key, strlen(key), value, n, &so, &cas);
        if (!m->present) {
            expect_status(w, "cas", key, st, CORRAL_ENOTFOUND);
        } else if (so.cas != m->cas) {
            expect_status(w, "cas", key, st, CORRAL_EEXISTS);
        } else {
            expect_status(w, "cas", key, st, CORRAL_OK);
            if (st == CORRAL_OK) {
                log_cas(w, cas);
                memcpy(m->value, value, n);
                m->len = n;
                m->flags = so.flags;
                m->cas = cas;
                m->ttl = -1;
            }
        }
        break;
    case 6: /* delete */
        st = corral_delete(cache, key, strlen(key));
        expect_status(w, "delete", key, st,
                      m->present ? CORRAL_OK : CORRAL_ENOTFOUND);
        m->present = false;
        break;
    case 7: { /* touch or gat */
        int64_t e = random_exptime(w);
        if (rnd_below(w, 2)) {
            st = corral_touch(cache, key, strlen(key), e);
        } else {
            corral_item_t *it = NULL;
            st = corral_gat(cache, key, strlen(key), e, &it);
            if (it != NULL) {
                size_t len;
                const void *v = corral_item_value(it, &len);
                if (len != m->len || memcmp(v, m->value, len) != 0 ||
                    corral_item_cas(it) != m->cas) {
                    fail(w, "gat %s: wrong item", key);
                }
                corral_item_release(it);
            }
        }
        expect_status(w, "touch", key, st,
                      m->present ? CORRAL_OK : CORRAL_ENOTFOUND);
        if (m->present) {
            m->ttl = ttl_for(e);
        }
        break;
    }
    case 8: /* incr or decr */
    case 9: {
        corral_arith_opts_t a = {0};
        corral_arith_result_t r;
        uint64_t v = 0, want;
        bool numeric = m->present && parse_number(m->value, m->len, &v);

        a.delta = rnd_below(w, 4) == 0 ? rnd(w) : rnd_below(w, 1000);
        a.options = rnd_below(w, 2) ? CORRAL_ARITH_DECR : 0;
        if (rnd_below(w, 4) == 0) {
            a.options |= CORRAL_ARITH_TOUCH;
            a.touch_exptime = random_exptime(w);
        }
        if (!m->present && rnd_below(w, 2)) {
            a.options |= CORRAL_ARITH_VIVIFY;
            a.initial = rnd(w) >> rnd_below(w, 64);
            a.vivify_exptime = random_exptime(w);
        } else if (m->present && rnd_below(w, 5) == 0) {
            a.cas = rnd_below(w, 2) ? m->cas : m->cas + 1;
        }
        st = corral_arith(cache, key, strlen(key), &a, &r);
        if (!m->present && (a.options & CORRAL_ARITH_VIVIFY)) {
            expect_status(w, "vivify", key, st, CORRAL_OK);
            if (st == CORRAL_OK) {
                log_cas(w, r.cas);
                m->present = true;
                m->len = 0;
                model_number(m, a.initial, false);
                m->flags = 0;
                m->cas = r.cas;
                m->ttl = (a.options & CORRAL_ARITH_TOUCH)
                             ? r.ttl /* either expiry is allowed */
                             : ttl_for(a.vivify_exptime);
                if (r.value != a.initial) {
                    fail(w, "vivify %s: %" PRIu64, key, r.value);
                }
            }
            break;
        }
        if (!m->present) {
            expect_status(w, "arith", key, st, CORRAL_ENOTFOUND);
            break;
        }
        if (a.cas != 0 && a.cas != m->cas) {
            expect_status(w, "arith", key, st, CORRAL_EEXISTS);
            break;
        }
        if (!numeric) {
            expect_status(w, "arith", key, st, CORRAL_ENONNUMERIC);
            break;
        }
        expect_status(w, "arith", key, st, CORRAL_OK);
        if (st != CORRAL_OK) {
            break;
        }
        want = (a.options & CORRAL_ARITH_DECR)
                   ? (v < a.delta ? 0 : v - a.delta)
                   : v + a.delta;
        if (r.value != want) {
            fail(w, "arith %s: %" PRIu64 ", expected %" PRIu64, key,
                 r.value, want);
        }
        log_cas(w, r.cas);
        model_number(m, want, true); /* nobody else pins own keys */
        m->cas = r.cas;
        if (a.options & CORRAL_ARITH_TOUCH) {
            m->ttl = ttl_for(a.touch_exptime);
        }
        if (r.ttl != m->ttl) {
            fail(w, "arith %s: ttl %" PRId64 ", expected %" PRId64, key,
                 r.ttl, m->ttl);
        }
        break;
    }
    case 10: { /* vivifying lookup */
        corral_get_opts_t o = {0};
        corral_get_result_t r;
        corral_item_t *it = NULL;

        o.flags = CORRAL_GET_VIVIFY;
        o.vivify_exptime = random_exptime(w);
        st = corral_get_ex(cache, key, strlen(key), &o, &it, &r);
        expect_status(w, "vivify", key, st, CORRAL_OK);
        if (it == NULL) {
            break;
        }
        if (!m->present) {
            if ((r.flags & CORRAL_RES_VIVIFIED) == 0) {
                fail(w, "vivify %s: not vivified", key);
            }
            log_cas(w, corral_item_cas(it));
            m->present = true;
            m->len = 0;
            m->flags = 0;
            m->cas = corral_item_cas(it);
            m->ttl = ttl_for(o.vivify_exptime);
        } else if (r.flags & CORRAL_RES_VIVIFIED) {
            fail(w, "vivify %s: replaced a live item", key);
        }
        corral_item_release(it);
        break;
    }
    case 11: { /* mark stale */
        corral_delete_opts_t d = {0};
        uint64_t old = m->cas;

        d.options = CORRAL_DELETE_STALE;
        st = corral_delete_ex(cache, key, strlen(key), &d);
        expect_status(w, "stale", key, st,
                      m->present ? CORRAL_OK : CORRAL_ENOTFOUND);
        if (st == CORRAL_OK) {
            char buf[OWN_MAX + 1];
            corral_get_copy(cache, key, strlen(key), buf, sizeof(buf), NULL,
                            NULL, &m->cas);
            if (m->cas <= old) {
                fail(w, "stale %s: CAS did not grow", key);
            }
            log_cas(w, m->cas);
        }
        break;
    }
    case 12:
        own_verify_ttl(w, k);
        break;
    default:
        own_verify(w, k);
        break;
    }
    if (rnd_below(w, 4) == 0) {
        own_verify(w, k);
    }
}

/* ---------------------------------------------------------------------- */
/* Shared keys                                                            */

static void
shared_key(char *buf, size_t cap, unsigned i)
{
    snprintf(buf, cap, "s:%u", i);
}

/* A value seen for shared key i: valid, and its CAS not going back. */
static void
shared_seen(struct worker *w, unsigned i, const void *v, size_t len,
            uint64_t cas)
{
    char key[16];

    shared_key(key, sizeof(key), i);
    if (!valid_shared(v, len, key)) {
        fail(w, "%s: invalid value of %zu bytes: '%.60s'", key, len,
             (const char *)v);
    }
    if (cas < w->last_cas[i]) {
        fail(w, "%s: CAS went back from %" PRIu64 " to %" PRIu64, key,
             w->last_cas[i], cas);
    }
    w->last_cas[i] = cas > w->last_cas[i] ? cas : w->last_cas[i];
    w->shared_len[i] = len;
}

static void
pin_check(struct worker *w, const struct pin *p)
{
    size_t len;
    const void *v = corral_item_value(p->it, &len);

    if (len != p->len || memcmp(v, p->value, len) != 0 ||
        corral_item_flags(p->it) != p->flags ||
        corral_item_cas(p->it) != p->cas) {
        fail(w, "pinned s:%u changed while pinned", p->key);
    }
}

static void
pin_drop_oldest(struct worker *w)
{
    pin_check(w, &w->pins[0]);
    corral_item_release(w->pins[0].it);
    memmove(&w->pins[0], &w->pins[1], (w->npins - 1) * sizeof(w->pins[0]));
    w->npins--;
}

static void
shared_store(struct worker *w, unsigned i, corral_mode_t mode, bool use_cas)
{
    char key[16], rec[600];
    corral_store_opts_t so = {0};
    corral_status_t st;
    uint64_t cas = 0;
    size_t n;

    shared_key(key, sizeof(key), i);
    n = make_record(rec, sizeof(rec), key, w->id, ++w->seq,
                    rnd_below(w, 300));
    so.mode = mode;
    so.flags = (uint32_t)rnd(w);
    so.exptime = rnd_below(w, 4) == 0 ? 100000 : 0;
    if (use_cas) {
        corral_item_t *it;
        so.mode = CORRAL_CAS;
        if (corral_get(cache, key, strlen(key), &it) == CORRAL_OK) {
            size_t len;
            const void *v = corral_item_value(it, &len);
            so.cas = corral_item_cas(it);
            shared_seen(w, i, v, len, so.cas);
            corral_item_release(it);
        } else {
            so.cas = w->last_cas[i];
        }
    }
    st = corral_store(cache, key, strlen(key), rec, n, &so, &cas);
    switch (st) {
    case CORRAL_OK:
        log_cas(w, cas);
        if (mode == CORRAL_APPEND || mode == CORRAL_PREPEND) {
            w->shared_len[i] += n; /* bounds this thread's appends */
        }
        if (cas < w->last_cas[i]) {
            fail(w, "%s: stored with an older CAS", key);
        }
        w->last_cas[i] = cas > w->last_cas[i] ? cas : w->last_cas[i];
        break;
    case CORRAL_ENOTSTORED:
        if (mode == CORRAL_SET || use_cas) {
            fail(w, "store %s: not stored", key);
        }
        break;
    case CORRAL_EEXISTS:
    case CORRAL_ENOTFOUND:
        if (!use_cas) {
            fail(w, "store %s: status %d", key, (int)st);
        }
        break;
    default:
        fail(w, "store %s: status %d", key, (int)st);
        break;
    }
}

static void
shared_op(struct worker *w)
{
    unsigned i = rnd_below(w, SHARED_KEYS);
    char key[16];
    corral_status_t st;

    shared_key(key, sizeof(key), i);
    switch (rnd_below(w, 16)) {
    case 0:
    case 1: {
        corral_item_t *it;
        st = corral_get(cache, key, strlen(key), &it);
        if (st == CORRAL_OK) {
            size_t len;
            const void *v = corral_item_value(it, &len);
            shared_seen(w, i, v, len, corral_item_cas(it));
            corral_item_release(it);
        } else if (st != CORRAL_ENOTFOUND) {
            fail(w, "get %s: %d", key, (int)st);
        }
        break;
    }
    case 2: {
        const void *keys[4];
        size_t nkeys[4];
        unsigned idx[4];
        char names[4][16];
        corral_item_t *items[4];

        for (int j = 0; j < 4; j++) {
            idx[j] = rnd_below(w, SHARED_KEYS);
            shared_key(names[j], sizeof(names[j]), idx[j]);
            keys[j] = names[j];
            nkeys[j] = strlen(names[j]);
        }
        corral_get_multi(cache, 4, keys, nkeys, items);
        for (int j = 0; j < 4; j++) {
            if (items[j] != NULL) {
                size_t len;
                const void *v = corral_item_value(items[j], &len);
                shared_seen(w, idx[j], v, len, corral_item_cas(items[j]));
                corral_item_release(items[j]);
            }
        }
        break;
    }
    case 3:
    case 4:
        shared_store(w, i, CORRAL_SET, false);
        break;
    case 5:
        shared_store(w, i, CORRAL_ADD, false);
        break;
    case 6:
        shared_store(w, i, CORRAL_REPLACE, false);
        break;
    case 7:
        if (w->shared_len[i] < SHARED_MAX) {
            shared_store(w, i,
                         rnd_below(w, 2) ? CORRAL_APPEND : CORRAL_PREPEND,
                         false);
        }
        break;
    case 8:
        shared_store(w, i, CORRAL_SET, true);
        break;
    case 9:
        st = corral_delete(cache, key, strlen(key));
        if (st != CORRAL_OK && st != CORRAL_ENOTFOUND) {
            fail(w, "delete %s: %d", key, (int)st);
        }
        break;
    case 10:
        st = corral_touch(cache, key, strlen(key),
                          rnd_below(w, 2) ? 0 : 100000);
        if (st != CORRAL_OK && st != CORRAL_ENOTFOUND) {
            fail(w, "touch %s: %d", key, (int)st);
        }
        break;
    case 11:
        st = corral_incr(cache, key, strlen(key), 1, NULL);
        if (st != CORRAL_ENONNUMERIC && st != CORRAL_ENOTFOUND) {
            fail(w, "incr %s: %d", key, (int)st);
        }
        break;
    case 12: {
        corral_delete_opts_t d = {0};
        d.options = CORRAL_DELETE_STALE;
        st = corral_delete_ex(cache, key, strlen(key), &d);
        if (st != CORRAL_OK && st != CORRAL_ENOTFOUND) {
            fail(w, "stale %s: %d", key, (int)st);
        }
        break;
    }
    default: { /* pin it for a while */
        struct pin *p;
        corral_item_t *it;
        const void *v;

        if (corral_get(cache, key, strlen(key), &it) != CORRAL_OK) {
            break;
        }
        if (w->npins == MAXPINS) {
            pin_drop_oldest(w);
        }
        p = &w->pins[w->npins++];
        p->it = it;
        p->key = i;
        v = corral_item_value(it, &p->len);
        shared_seen(w, i, v, p->len, corral_item_cas(it));
        if (p->len > SNAP_MAX) {
            fail(w, "%s: %zu bytes, longer than expected", key, p->len);
            p->len = SNAP_MAX;
        }
        memcpy(p->value, v, p->len);
        p->flags = corral_item_flags(it);
        p->cas = corral_item_cas(it);
        break;
    }
    }
    if (w->npins > 0 && rnd_below(w, 8) == 0) {
        pin_check(w, &w->pins[rnd_below(w, w->npins)]);
    }
}

/* ---------------------------------------------------------------------- */
/* Counters                                                               */

static void
counter_op(struct worker *w)
{
    unsigned i = rnd_below(w, NCOUNTERS);
    char key[16], base[24], buf[64];
    uint64_t delta = 1 + rnd_below(w, 5), v = 0;
    bool decr = rnd_below(w, 2) == 0;
    corral_status_t st;
    size_t len = 0;

    snprintf(key, sizeof(key), "c:%u", i);
    if (rnd_below(w, 3) == 0) {
        st = corral_get_copy(cache, key, strlen(key), buf, sizeof(buf), &len,
                             NULL, NULL);
        if (st == CORRAL_OK && !well_formed_number(buf, len, &v)) {
            fail(w, "%s: malformed counter '%.*s'", key, (int)len, buf);
        } else if (st != CORRAL_OK && st != CORRAL_ENOTFOUND) {
            fail(w, "get %s: %d", key, (int)st);
        }
        return;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        corral_arith_opts_t a = {0};
        corral_arith_result_t r;

        a.delta = delta;
        a.options = decr ? CORRAL_ARITH_DECR : 0;
        st = corral_arith(cache, key, strlen(key), &a, &r);
        if (st == CORRAL_OK) {
            log_cas(w, r.cas);
            atomic_fetch_add(&counter_sum[i],
                             decr ? -(int64_t)delta : (int64_t)delta);
            return;
        }
        if (st != CORRAL_ENOTFOUND || attempt == 1) {
            fail(w, "arith %s: %d", key, (int)st);
            return;
        }
        /* flushed away: put the base back (or someone else just did) */
        snprintf(base, sizeof(base), "%" PRIu64, COUNTER_BASE);
        st = corral_add(cache, key, strlen(key), base, strlen(base), 0, 0);
        if (st != CORRAL_OK && st != CORRAL_ENOTSTORED) {
            fail(w, "add %s: %d", key, (int)st);
            return;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* The threads                                                            */

static void
do_flush(struct worker *w)
{
    pthread_rwlock_wrlock(&flush_lock);
    if (corral_flush(cache, 0) != CORRAL_OK) {
        fail(w, "flush failed");
    }
    for (int i = 0; i < NCOUNTERS; i++) {
        atomic_store(&counter_sum[i], 0);
    }
    atomic_fetch_add(&flush_epoch, 1);
    pthread_rwlock_unlock(&flush_lock);
    w->flushes++;
    atomic_fetch_add(&total_flushes, 1);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;

    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        unsigned what = rnd_below(w, 100);

        w->ops++;
        if (rnd_below(w, FLUSH_ODDS) == 0) {
            do_flush(w);
        } else if (what < 45) {
            pthread_rwlock_rdlock(&flush_lock);
            if (atomic_load(&flush_epoch) != w->epoch) {
                /* a flush happened since our last own-key operation */
                for (int k = 0; k < OWN_KEYS; k++) {
                    w->own[k].present = false;
                }
                w->epoch = atomic_load(&flush_epoch);
            }
            own_op(w);
            pthread_rwlock_unlock(&flush_lock);
        } else if (what < 85) {
            shared_op(w);
        } else if (what < 97) {
            pthread_rwlock_rdlock(&flush_lock);
            counter_op(w);
            pthread_rwlock_unlock(&flush_lock);
        } else if (what < 98) {
            corral_stats_t s;
            corral_stats(cache, &s, sizeof(s));
        } else {
            corral_sweep(cache, 20);
        }
    }
    while (w->npins > 0) {
        pin_drop_oldest(w);
    }
    return NULL;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------------------- */
/* The test                                                               */

static void
test_concurrent_model(void)
{
    const char *env_seed = getenv("CORRAL_STRESS_SEED");
    const char *env_ms = getenv("CORRAL_STRESS_MS");
    uint64_t seed = env_seed ? strtoull(env_seed, NULL, 0) : 0x5eed2026u;
    long ms = env_ms ? strtol(env_ms, NULL, 10) : 2000;
    pthread_rwlockattr_t attr;
    corral_config_t cfg;
    struct timespec ts;
    unsigned long errors = 0, ops = 0;
    uint64_t *all;
    size_t nall = 0, live = 0, dups = 0;
    corral_stats_t st;
    char key[32], buf[SNAP_MAX];

    printf("\n  seed %#" PRIx64 ", %ld ms, %d threads (set "
           "CORRAL_STRESS_SEED / CORRAL_STRESS_MS to change)\n",
           seed, ms, NTHREADS);
    corral_config_init(&cfg);
    cfg.clock = fake_clock;
    cfg.shards = 8;
    CU_ASSERT_EQUAL_FATAL(corral_create(&cfg, &cache), CORRAL_OK);
    pthread_rwlockattr_init(&attr);
#ifdef __GLIBC__
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    pthread_rwlock_init(&flush_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    atomic_store(&stop, false);
    for (int i = 0; i < NCOUNTERS; i++) {
        char base[24];
        snprintf(key, sizeof(key), "c:%d", i);
        snprintf(base, sizeof(base), "%" PRIu64, COUNTER_BASE);
        CU_ASSERT_EQUAL(corral_set(cache, key, strlen(key), base,
                                   strlen(base), 0, 0),
                        CORRAL_OK);
        atomic_store(&counter_sum[i], 0);
    }

    for (unsigned t = 0; t < NTHREADS; t++) {
        struct worker *w = &workers[t];
        memset(w, 0, sizeof(*w));
        w->id = t;
        w->rng = seed * 0x9e3779b97f4a7c15ull + t * 0x632be59bd9b4e019ull + 1;
        w->cas_log = malloc(CAS_LOG_MAX * sizeof(uint64_t));
        CU_ASSERT_PTR_NOT_NULL_FATAL(w->cas_log);
        CU_ASSERT_EQUAL_FATAL(pthread_create(&w->thread, NULL, worker_main,
                                             w),
                              0);
    }
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000;
    nanosleep(&ts, NULL);
    atomic_store(&stop, true);
    for (unsigned t = 0; t < NTHREADS; t++) {
        pthread_join(workers[t].thread, NULL);
        errors += workers[t].errors;
        ops += workers[t].ops;
        nall += workers[t].ncas;
    }
    printf("  %lu operations, %lu flushes\n", ops,
           atomic_load(&total_flushes));
    CU_ASSERT_EQUAL(errors, 0);
    CU_ASSERT(ops > 1000);

    /* own keys: exactly as modelled (after the last flush each model
     * was reset by the next operation of its thread; a thread that ran
     * none since has a stale model, so reset it here the same way) */
    for (unsigned t = 0; t < NTHREADS; t++) {
        struct worker *w = &workers[t];
        if (w->epoch != atomic_load(&flush_epoch)) {
            for (int k = 0; k < OWN_KEYS; k++) {
                w->own[k].present = false;
            }
        }
        for (unsigned k = 0; k < OWN_KEYS; k++) {
            own_verify(w, k);
            own_verify_ttl(w, k);
            live += w->own[k].present;
        }
        CU_ASSERT_EQUAL(w->errors, 0);
    }
    /* shared keys: intact */
    for (unsigned i = 0; i < SHARED_KEYS; i++) {
        size_t len;
        shared_key(key, sizeof(key), i);
        if (corral_get_copy(cache, key, strlen(key), buf, sizeof(buf), &len,
                            NULL, NULL) == CORRAL_OK) {
            CU_ASSERT(valid_shared(buf, len, key));
            live++;
        }
    }
    /* counters: every delta that succeeded, and nothing else */
    for (int i = 0; i < NCOUNTERS; i++) {
        size_t len;
        uint64_t v;
        snprintf(key, sizeof(key), "c:%d", i);
        if (corral_get_copy(cache, key, strlen(key), buf, sizeof(buf), &len,
                            NULL, NULL) == CORRAL_OK) {
            CU_ASSERT_FATAL(well_formed_number(buf, len, &v));
            CU_ASSERT_EQUAL(v, COUNTER_BASE + atomic_load(&counter_sum[i]));
            live++;
        } else {
            CU_ASSERT_EQUAL(atomic_load(&counter_sum[i]), 0);
        }
    }
    /* CAS values of successful changes: all different */
    all = malloc((nall + 1) * sizeof(uint64_t));
    CU_ASSERT_PTR_NOT_NULL_FATAL(all);
    nall = 0;
    for (unsigned t = 0; t < NTHREADS; t++) {
        memcpy(all + nall, workers[t].cas_log,
               workers[t].ncas * sizeof(uint64_t));
        nall += workers[t].ncas;
        free(workers[t].cas_log);
    }
    qsort(all, nall, sizeof(uint64_t), cmp_u64);
    for (size_t j = 1; j < nall; j++) {
        dups += all[j] == all[j - 1];
    }
    CU_ASSERT_EQUAL(dups, 0);
    free(all);

    /* no evictions (the models rely on it); books balanced; once the sweep
     * has been everywhere, curr_items is the live keys */
    corral_stats(cache, &st, sizeof(st));
    CU_ASSERT_EQUAL(st.evictions, 0);
    CU_ASSERT_EQUAL(st.cmd_get, st.get_hits + st.get_misses);
    CU_ASSERT(shards_accounting_ok(cache, false));
    for (int pass = 0; pass < 4; pass++) {
        corral_sweep(cache, 1000000);
    }
    corral_stats(cache, &st, sizeof(st));
    CU_ASSERT_EQUAL(st.curr_items, live);
    /* no segment left that holds nothing live */
    CU_ASSERT(shards_accounting_ok(cache, true));
    corral_destroy(cache);
    pthread_rwlock_destroy(&flush_lock);
}

/* The checkers themselves: they accept what they should and nothing else
 * (a checker that accepts everything would make the stress test pass). */
static void
test_checkers(void)
{
    char a[700], b[700], both[1400];
    size_t na = make_record(a, sizeof(a), "s:1", 2, 77, 100);
    size_t nb = make_record(b, sizeof(b), "s:1", 3, 78, 0);
    uint64_t v;

    memcpy(both, a, na);
    memcpy(both + na, b, nb);
    CU_ASSERT(valid_shared(a, na, "s:1"));
    CU_ASSERT(valid_shared(b, nb, "s:1"));
    CU_ASSERT(valid_shared(both, na + nb, "s:1"));
    CU_ASSERT(!valid_shared(a, na, "s:2"));       /* another key's */
    CU_ASSERT(!valid_shared(a, na, "s:"));
    CU_ASSERT(!valid_shared(a, 0, "s:1"));        /* empty */
    CU_ASSERT(!valid_shared(a, na - 1, "s:1"));   /* torn */
    CU_ASSERT(!valid_shared(both, na + 5, "s:1"));
    CU_ASSERT(!valid_shared(both + 1, na + nb - 1, "s:1"));
    for (size_t i = 0; i < na; i += 7) {
        a[i] ^= 1; /* any one byte changed */
        CU_ASSERT(!valid_shared(a, na, "s:1"));
        a[i] ^= 1;
    }
    /* a record from one writer with another's payload */
    memcpy(both, a, na);
    memcpy(both + 40, b + 30, 10);
    CU_ASSERT(!valid_shared(both, na, "s:1"));

    CU_ASSERT(well_formed_number("123  ", 5, &v) && v == 123);
    CU_ASSERT(well_formed_number("0", 1, &v) && v == 0);
    CU_ASSERT(!well_formed_number("12 3", 4, &v));
    CU_ASSERT(!well_formed_number(" 12", 3, &v));
    CU_ASSERT(!well_formed_number("", 0, &v));
    CU_ASSERT(parse_number("99 5", 4, &v) && v == 99);
    CU_ASSERT(parse_number(" 7", 2, &v) && v == 7);
    CU_ASSERT(parse_number("18446744073709551615", 20, &v) &&
              v == UINT64_MAX);
    CU_ASSERT(!parse_number("18446744073709551616", 20, &v));
    CU_ASSERT(!parse_number("12a", 3, &v));
    CU_ASSERT(!parse_number("", 0, &v));
    CU_ASSERT(!parse_number("abc", 3, &v));
}

static const struct cu_test stress_tests[] = {
    CU_TEST(test_checkers),
    CU_TEST(test_concurrent_model),
    CU_END,
};

CU_MAIN({"stress", stress_tests, NULL, NULL})
