/*
 * test_writer.c - write-through and write-behind: the writer runs before
 * the cache changes and a failure leaves the cache untouched; write-behind
 * coalesces, retries a writer that fails 30 % of its calls, keeps per-key
 * order, and after a clean destroy every key's last write has reached
 * the writer; a full queue refuses or blocks; flush waits; registering
 * refuses a second writer and fails cleanly without memory; writers and
 * subscribers may put and remove other keys; a value too large for the
 * cache never reaches the backend.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "corral.h"
#include "cu_main.h"
#include "mem.h"

static corral_t *
mk(void)
{
    corral_config_t cfg;
    corral_t *c = NULL;
    corral_config_init(&cfg);
    cfg.shards = 4;
    CU_ASSERT_FATAL(corral_create(&cfg, &c) == CORRAL_OK);
    return c;
}

static bool
cached(corral_t *c, const char *key, const char *want)
{
    corral_item_t *it = NULL;
    bool ok = false;
    if (corral_get(c, key, strlen(key), &it) == CORRAL_OK) {
        size_t len;
        const char *v = corral_item_value(it, &len);
        ok = want != NULL && len == strlen(want) && memcmp(v, want, len) == 0;
        corral_item_release(it);
    } else {
        ok = want == NULL;
    }
    return ok;
}

/* ---------------------------------------------------------------------- */
/* Write-through                                                          */

struct backend {
    pthread_mutex_t lock;
    int fail_with;             /* nonzero: the next call fails */
    int calls;
    corral_t *c;
    bool cache_had_it_first;   /* the cache changed before the writer ran */
    char last_key[64];
    char last_value[64];
    corral_write_op_t last_op;
    int64_t last_expires;
};

static int
through(const corral_write_t *w, void *ud)
{
    struct backend *b = ud;
    int err;
    pthread_mutex_lock(&b->lock);
    b->calls++;
    snprintf(b->last_key, sizeof(b->last_key), "%.*s", (int)w->nkey,
             (const char *)w->key);
    snprintf(b->last_value, sizeof(b->last_value), "%.*s", (int)w->nvalue,
             (const char *)w->value);
    b->last_op = w->op;
    b->last_expires = w->expires;
    if (w->op == CORRAL_WRITE_SET && cached(b->c, b->last_key, b->last_value)) {
        b->cache_had_it_first = true;
    }
    err = b->fail_with;
    b->fail_with = 0;
    pthread_mutex_unlock(&b->lock);
    return err;
}

static void
test_write_through(void)
{
    static struct backend b;
    corral_t *c = mk();
    int err = 0;

    memset(&b, 0, sizeof(b));
    pthread_mutex_init(&b.lock, NULL);
    b.c = c;
    /* no writer yet */
    CU_ASSERT(corral_put(c, "k", 1, "v", 1, 0, 0, &err) == CORRAL_EINVAL);
    CU_ASSERT(corral_use_write_through(c, through, &b) == CORRAL_OK);
    CU_ASSERT(corral_use_write_through(c, through, &b) == CORRAL_EINVAL);

    CU_ASSERT(corral_put(c, "k", 1, "v1", 2, 0, 0, &err) == CORRAL_OK);
    CU_ASSERT(cached(c, "k", "v1"));
    CU_ASSERT_STRING_EQUAL(b.last_value, "v1");
    CU_ASSERT(!b.cache_had_it_first);
    CU_ASSERT_EQUAL(b.last_expires, 0);
    /* the expiry reaches the writer resolved to a Unix time */
    {
        int64_t before = (int64_t)time(NULL);
        CU_ASSERT(corral_put(c, "t", 1, "v", 1, 0, 100, &err) == CORRAL_OK);
        CU_ASSERT(b.last_expires >= before + 99 &&
                  b.last_expires <= (int64_t)time(NULL) + 101);
        CU_ASSERT(corral_put(c, "t", 1, "v", 1, 0, 2000000000, &err) ==
                  CORRAL_OK);
        CU_ASSERT_EQUAL(b.last_expires, 2000000000);
        CU_ASSERT(corral_put(c, "t", 1, "v", 1, 0, -1, &err) == CORRAL_OK);
        CU_ASSERT_EQUAL(b.last_expires, 1);
        CU_ASSERT(corral_remove(c, "t", 1, &err) == CORRAL_OK);
        CU_ASSERT_EQUAL(b.last_expires, 0);
        b.calls -= 4;
    }

    /* a failing writer: the error comes back, the cache is untouched */
    b.fail_with = 9;
    CU_ASSERT(corral_put(c, "k", 1, "v2", 2, 0, 0, &err) == CORRAL_ELOAD);
    CU_ASSERT_EQUAL(err, 9);
    CU_ASSERT(cached(c, "k", "v1"));
    b.fail_with = 3;
    CU_ASSERT(corral_remove(c, "k", 1, &err) == CORRAL_ELOAD);
    CU_ASSERT_EQUAL(err, 3);
    CU_ASSERT(cached(c, "k", "v1"));

    CU_ASSERT(corral_remove(c, "k", 1, &err) == CORRAL_OK);
    CU_ASSERT_EQUAL(b.last_op, CORRAL_WRITE_DELETE);
    CU_ASSERT(cached(c, "k", NULL));
    CU_ASSERT(corral_remove(c, "absent", 6, &err) == CORRAL_OK);
    CU_ASSERT_EQUAL(b.calls, 5);
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Write-behind with a flaky writer                                       */

#define WB_KEYS 50
#define WB_PUTS 20000

struct sink {
    pthread_mutex_t lock;
    unsigned rng;
    uint64_t last_seq[WB_KEYS];
    char last_value[WB_KEYS][32];
    bool deleted[WB_KEYS];
    bool order_ok;
    long calls;
    long failures;
    long written;
};

static int
flaky_batch(const corral_write_t *w, size_t n, int *results, void *ud)
{
    struct sink *s = ud;
    pthread_mutex_lock(&s->lock);
    s->calls++;
    for (size_t i = 0; i < n; i++) {
        int k = atoi((const char *)w[i].key + 1);
        s->rng = s->rng * 1103515245u + 12345u;
        if ((s->rng >> 16) % 100 < 30) {
            results[i] = 1; /* 30 % of writes fail, to be retried */
            s->failures++;
            continue;
        }
        results[i] = 0;
        s->written++;
        if (w[i].seq <= s->last_seq[k]) {
            s->order_ok = false;
        }
        s->last_seq[k] = w[i].seq;
        s->deleted[k] = w[i].op == CORRAL_WRITE_DELETE;
        snprintf(s->last_value[k], sizeof(s->last_value[k]), "%.*s",
                 (int)w[i].nvalue, (const char *)w[i].value);
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

struct wb_run {
    corral_t *c;
    int first, step;
    char final[WB_KEYS][32];
    bool final_deleted[WB_KEYS];
};

static void *
wb_producer(void *arg)
{
    struct wb_run *r = arg;
    char key[16], val[32];
    unsigned rng = (unsigned)r->first * 7919u + 1;
    for (int i = 0; i < WB_PUTS / 2; i++) {
        int k;
        if (i % 50 == 0) {
            /* let batches go out between bursts, so that writes are
             * not all coalesced into one batch */
            struct timespec pause = {0, 200000};
            nanosleep(&pause, NULL);
        }
        rng = rng * 1103515245u + 12345u;
        k = r->first + r->step * (int)((rng >> 16) % (WB_KEYS / 2));
        snprintf(key, sizeof(key), "k%d", k);
        if ((rng >> 8) % 10 == 0) {
            CU_ASSERT(corral_remove(r->c, key, strlen(key), NULL) ==
                      CORRAL_OK);
            r->final_deleted[k] = true;
        } else {
            snprintf(val, sizeof(val), "v%d.%d", k, i);
            CU_ASSERT(corral_put(r->c, key, strlen(key), val, strlen(val), 0,
                                 0, NULL) == CORRAL_OK);
            snprintf(r->final[k], sizeof(r->final[k]), "%s", val);
            r->final_deleted[k] = false;
        }
    }
    return NULL;
}

static void
test_write_behind_flaky(void)
{
    static struct sink s;
    static struct wb_run even, odd;
    corral_wb_opts_t o = {0};
    corral_t *c = mk();
    pthread_t th[2];
    corral_stats_t st;

    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.lock, NULL);
    s.rng = 12345;
    s.order_ok = true;
    o.delay_ms = 1;
    o.retry_min_ms = 1;
    o.retry_max_ms = 20;
    o.batch_max = 64;
    CU_ASSERT_FATAL(corral_use_write_behind(c, flaky_batch, &s, &o) ==
                    CORRAL_OK);
    memset(&even, 0, sizeof(even));
    memset(&odd, 0, sizeof(odd));
    even.c = odd.c = c;
    even.first = 0;
    odd.first = 1;
    even.step = odd.step = 2; /* each thread owns half of the keys */
    pthread_create(&th[0], NULL, wb_producer, &even);
    pthread_create(&th[1], NULL, wb_producer, &odd);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    corral_stats(c, &st, sizeof(st));
    CU_ASSERT_EQUAL(st.writes, WB_PUTS);
    corral_destroy(c); /* flushes everything, retrying */

    CU_ASSERT(s.order_ok);
    CU_ASSERT(s.failures > 0);
    for (int k = 0; k < WB_KEYS; k++) {
        struct wb_run *r = k % 2 == 0 ? &even : &odd;
        if (r->final[k][0] == '\0' && !r->final_deleted[k]) {
            continue; /* never written */
        }
        CU_ASSERT_EQUAL(s.deleted[k], r->final_deleted[k]);
        if (!r->final_deleted[k]) {
            CU_ASSERT_STRING_EQUAL(s.last_value[k], r->final[k]);
        }
    }
    printf("\n  write-behind: %ld batches, %ld written, %ld failed+retried\n",
           s.calls, s.written, s.failures);
}

/* ---------------------------------------------------------------------- */
/* Queue bounds and flush                                                 */

struct blocked {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    long written;
};

static int
blocked_batch(const corral_write_t *w, size_t n, int *results, void *ud)
{
    struct blocked *b = ud;
    (void)w;
    pthread_mutex_lock(&b->lock);
    while (!b->open) {
        pthread_cond_wait(&b->cond, &b->lock);
    }
    b->written += (long)n;
    pthread_mutex_unlock(&b->lock);
    memset(results, 0, n * sizeof(*results));
    return 0;
}

static void
test_write_behind_full_and_flush(void)
{
    static struct blocked b;
    corral_wb_opts_t o = {0};
    corral_t *c = mk();
    char key[16];
    size_t pending = 0;
    int refused = 0;

    memset(&b, 0, sizeof(b));
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    o.queue_max = 8;
    o.batch_max = 4;
    o.delay_ms = 1;
    o.refuse_when_full = 1;
    CU_ASSERT_FATAL(corral_use_write_behind(c, blocked_batch, &b, &o) ==
                    CORRAL_OK);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        if (corral_put(c, key, strlen(key), "v", 1, 0, 0, NULL) ==
            CORRAL_EBUSY) {
            refused++;
        }
    }
    /* at most 8 queued: the rest were refused, and not cached */
    CU_ASSERT(refused >= 40 - 8);
    CU_ASSERT(!cached(c, "k39", "v"));
    /* coalescing with a queued write needs no room (k7 is queued: the
     * flusher is stuck in its first batch, at most k0..k3) */
    CU_ASSERT(corral_put(c, "k7", 2, "v2", 2, 0, 0, NULL) == CORRAL_OK);
    CU_ASSERT(corral_write_flush(c, 50, &pending) == CORRAL_ETIMEDOUT);
    CU_ASSERT(pending > 0);
    pthread_mutex_lock(&b.lock);
    b.open = true;
    pthread_cond_broadcast(&b.cond);
    pthread_mutex_unlock(&b.lock);
    CU_ASSERT(corral_write_flush(c, -1, &pending) == CORRAL_OK);
    CU_ASSERT_EQUAL(pending, 0);
    CU_ASSERT_EQUAL(b.written, 40 - refused);
    corral_destroy(c);
}

/* A batch writer that stores every write as written. */
struct counted {
    pthread_mutex_t lock;
    long written;
    int64_t last_expires;
};

static int
counted_batch(const corral_write_t *w, size_t n, int *results, void *ud)
{
    struct counted *s = ud;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        results[i] = 0;
        s->written++;
        s->last_expires = w[i].expires;
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Registering a writer: no function, or a second writer, is refused;
 * each allocation a registration makes, failing in turn, is a clean
 * CORRAL_ENOMEM (ASan: no leak) after which registering works; with no
 * options, write-behind takes its defaults. */
static void
test_register_errors(void)
{
    static struct backend b;
    static struct counted s;
    corral_status_t st = CORRAL_ENOMEM;
    corral_t *c = mk();
    size_t pending = 1;
    long n;

    memset(&b, 0, sizeof(b));
    pthread_mutex_init(&b.lock, NULL);
    b.c = c;
    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.lock, NULL);
    CU_ASSERT(corral_use_write_through(c, NULL, NULL) == CORRAL_EINVAL);
    CU_ASSERT(corral_use_write_behind(c, NULL, NULL, NULL) == CORRAL_EINVAL);
    for (n = 1; n < 100; n++) {
        mem_fail_any_after(n);
        st = corral_use_write_behind(c, counted_batch, &s, NULL);
        mem_fail_any_after(0);
        if (st == CORRAL_OK) {
            break;
        }
        CU_ASSERT_EQUAL(st, CORRAL_ENOMEM);
    }
    CU_ASSERT_EQUAL_FATAL(st, CORRAL_OK);
    CU_ASSERT(n >= 6); /* the writer, its table, its three batch arrays */
    CU_ASSERT(corral_use_write_behind(c, counted_batch, &s, NULL) ==
              CORRAL_EINVAL);
    CU_ASSERT(corral_use_write_through(c, through, &b) == CORRAL_EINVAL);
    CU_ASSERT(corral_put(c, "k", 1, "v", 1, 0, 0, NULL) == CORRAL_OK);
    CU_ASSERT(corral_write_flush(c, -1, &pending) == CORRAL_OK);
    CU_ASSERT_EQUAL(pending, 0);
    CU_ASSERT_EQUAL(s.written, 1);
    corral_destroy(c);

    c = mk();
    b.c = c;
    mem_fail_any_after(1);
    st = corral_use_write_through(c, through, &b);
    mem_fail_any_after(0);
    CU_ASSERT_EQUAL(st, CORRAL_ENOMEM);
    CU_ASSERT(corral_use_write_through(c, through, &b) == CORRAL_OK);
    CU_ASSERT(corral_use_write_behind(c, counted_batch, &s, NULL) ==
              CORRAL_EINVAL);
    CU_ASSERT(corral_put(c, "k", 1, "v1", 2, 0, 0, NULL) == CORRAL_OK);
    CU_ASSERT_STRING_EQUAL(b.last_value, "v1");
    corral_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* Writers and subscribers that write                                     */

/* Keys written from inside a writer or a subscriber: enough that some
 * share a lock stripe with the key being written (1 in 64 each), where
 * the writes used to wait for the caller's own stripe for ever.  A
 * deadlock ends the program by its alarm. */
#define NESTED 1000

struct nesting {
    corral_t *c;
    atomic_int calls;
    atomic_int nested_ok;
    atomic_int self_busy;
    atomic_int echoes_ok;
};

/* The writer of "outer" puts NESTED other keys, and its own key once. */
static int
nesting_writer(const corral_write_t *w, void *ud)
{
    struct nesting *n = ud;
    char key[32];

    atomic_fetch_add(&n->calls, 1);
    if (w->nkey != 5 || memcmp(w->key, "outer", 5) != 0) {
        return 0;
    }
    for (int i = 0; i < NESTED; i++) {
        snprintf(key, sizeof(key), "inner%d", i);
        if (corral_put(n->c, key, strlen(key), "x", 1, 0, 0, NULL) ==
            CORRAL_OK) {
            atomic_fetch_add(&n->nested_ok, 1);
        }
    }
    if (corral_put(n->c, "outer", 5, "y", 1, 0, 0, NULL) == CORRAL_EBUSY) {
        atomic_fetch_add(&n->self_busy, 1);
    }
    return 0;
}

static void
test_writer_writes(void)
{
    static struct nesting n;
    corral_t *c = mk();
    char key[32];
    bool all = true;

    alarm(120);
    memset(&n, 0, sizeof(n));
    n.c = c;
    CU_ASSERT(corral_use_write_through(c, nesting_writer, &n) == CORRAL_OK);
    CU_ASSERT(corral_put(c, "outer", 5, "v", 1, 0, 0, NULL) == CORRAL_OK);
    CU_ASSERT_EQUAL(atomic_load(&n.nested_ok), NESTED);
    CU_ASSERT_EQUAL(atomic_load(&n.self_busy), 1);
    CU_ASSERT_EQUAL(atomic_load(&n.calls), 1 + NESTED);
    CU_ASSERT(cached(c, "outer", "v"));
    for (int i = 0; i < NESTED; i++) {
        snprintf(key, sizeof(key), "inner%d", i);
        all = all && cached(c, key, "x");
    }
    CU_ASSERT(all);
    corral_destroy(c);
    alarm(0);
}

/* A subscriber that answers each event (an overwrite) of "trigger<i>"
 * with a put of "echo<i>" and a remove of "gone<i>". */
static void
echo_events(const corral_event_t *ev, void *ud)
{
    struct nesting *n = ud;
    char key[32];
    int i;

    if (ev->type != CORRAL_EVENT_OVERWRITE || ev->len < 8 ||
        memcmp(ev->name, "trigger", 7) != 0) {
        return;
    }
    i = atoi((const char *)ev->name + 7);
    snprintf(key, sizeof(key), "echo%d", i);
    if (corral_put(n->c, key, strlen(key), "e", 1, 0, 0, NULL) !=
        CORRAL_OK) {
        return;
    }
    snprintf(key, sizeof(key), "gone%d", i);
    if (corral_remove(n->c, key, strlen(key), NULL) == CORRAL_OK) {
        atomic_fetch_add(&n->echoes_ok, 1);
    }
}

static int
accept_all(const corral_write_t *w, size_t count, int *results, void *ud)
{
    (void)w;
    (void)ud;
    memset(results, 0, count * sizeof(*results));
    return 0;
}

static void
subscriber_writes(bool behind)
{
    static struct nesting n;
    corral_t *c = mk();
    corral_sub_t *sub = NULL;
    char key[32];
    bool all = true;

    alarm(120);
    memset(&n, 0, sizeof(n));
    n.c = c;
    if (behind) {
        CU_ASSERT(corral_use_write_behind(c, accept_all, NULL, NULL) ==
                  CORRAL_OK);
    } else {
        CU_ASSERT(corral_use_write_through(c, nesting_writer, &n) ==
                  CORRAL_OK);
    }
    CU_ASSERT(corral_subscribe(c, echo_events, &n, 0, &sub) == CORRAL_OK);
    for (int i = 0; i < NESTED; i++) {
        snprintf(key, sizeof(key), "gone%d", i);
        CU_ASSERT(corral_set(c, key, strlen(key), "g", 1, 0, 0) ==
                  CORRAL_OK);
        snprintf(key, sizeof(key), "trigger%d", i);
        CU_ASSERT(corral_set(c, key, strlen(key), "t", 1, 0, 0) ==
                  CORRAL_OK);
        /* the overwrite is the event */
        CU_ASSERT(corral_put(c, key, strlen(key), "u", 1, 0, 0, NULL) ==
                  CORRAL_OK);
    }
    CU_ASSERT_EQUAL(atomic_load(&n.echoes_ok), NESTED);
    for (int i = 0; i < NESTED; i++) {
        snprintf(key, sizeof(key), "echo%d", i);
        all = all && cached(c, key, "e");
        snprintf(key, sizeof(key), "gone%d", i);
        all = all && cached(c, key, NULL);
    }
    CU_ASSERT(all);
    corral_unsubscribe(c, sub);
    corral_destroy(c);
    alarm(0);
}

static void
test_subscriber_writes_through(void)
{
    subscriber_writes(false);
}

static void
test_subscriber_writes_behind(void)
{
    subscriber_writes(true);
}

/* A value the cache would refuse never reaches the backend, and the
 * cached value stays. */
static void
test_put_too_large(void)
{
    static struct backend b;
    static struct counted s;
    corral_config_t cfg;
    corral_t *c = NULL;
    size_t big = 4096;
    char *v = calloc(1, big);

    corral_config_init(&cfg);
    cfg.max_item_size = 2048;
    CU_ASSERT_FATAL(v != NULL);
    for (int behind = 0; behind < 2; behind++) {
        CU_ASSERT_FATAL(corral_create(&cfg, &c) == CORRAL_OK);
        memset(&b, 0, sizeof(b));
        pthread_mutex_init(&b.lock, NULL);
        b.c = c;
        memset(&s, 0, sizeof(s));
        pthread_mutex_init(&s.lock, NULL);
        if (behind) {
            CU_ASSERT(corral_use_write_behind(c, counted_batch, &s, NULL) ==
                      CORRAL_OK);
        } else {
            CU_ASSERT(corral_use_write_through(c, through, &b) == CORRAL_OK);
        }
        CU_ASSERT(corral_put(c, "k", 1, "old", 3, 0, 0, NULL) == CORRAL_OK);
        CU_ASSERT(corral_put(c, "k", 1, v, big, 0, 0, NULL) ==
                  CORRAL_ETOOBIG);
        CU_ASSERT(cached(c, "k", "old"));
        CU_ASSERT(corral_write_flush(c, -1, NULL) == CORRAL_OK);
        CU_ASSERT_EQUAL(behind ? s.written : b.calls, 1);
        /* a queued write keeps its expiry */
        CU_ASSERT(corral_put(c, "e", 1, "x", 1, 0, 2000000000, NULL) ==
                  CORRAL_OK);
        CU_ASSERT(corral_write_flush(c, -1, NULL) == CORRAL_OK);
        CU_ASSERT_EQUAL(behind ? s.last_expires : b.last_expires,
                        2000000000);
        corral_destroy(c);
    }
    free(v);
}

static const struct cu_test writer_tests[] = {
    CU_TEST(test_write_through),
    CU_TEST(test_write_behind_flaky),
    CU_TEST(test_write_behind_full_and_flush),
    CU_TEST(test_register_errors),
    CU_TEST(test_writer_writes),
    CU_TEST(test_subscriber_writes_through),
    CU_TEST(test_subscriber_writes_behind),
    CU_TEST(test_put_too_large),
    CU_END,
};

CU_MAIN({"writers", writer_tests, NULL, NULL})
