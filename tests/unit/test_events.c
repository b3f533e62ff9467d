/*
 * test_events.c - invalidation events: which operations produce which
 * events with which fields, sequence numbers without gaps, origins from
 * corral_invalidate, replay with `since`, the gap event when a subscriber
 * falls behind a small ring, unsubscribing from inside a callback, calling
 * the cache from a callback, ordering under concurrent producers, and the
 * eviction stream.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "corral.h"
#include "cu_main.h"

#define LOG_MAX 4096

struct rec {
    uint64_t seq;
    corral_event_type_t type;
    char name[CORRAL_KEY_MAX + 1];
    size_t len;
    uint64_t cas;
    uint64_t origin;
    int64_t flush_time;
};

struct log {
    pthread_mutex_t lock;
    struct rec r[LOG_MAX];
    size_t n;
};

static void
log_init(struct log *l)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
}

static void
on_event(const corral_event_t *ev, void *ud)
{
    struct log *l = ud;
    pthread_mutex_lock(&l->lock);
    if (l->n < LOG_MAX) {
        struct rec *r = &l->r[l->n++];
        r->seq = ev->seq;
        r->type = ev->type;
        r->len = ev->len;
        memcpy(r->name, ev->name, ev->len);
        r->name[ev->len] = '\0';
        r->cas = ev->cas;
        r->origin = ev->origin;
        r->flush_time = ev->flush_time;
    }
    pthread_mutex_unlock(&l->lock);
}

static corral_t *
mk(size_t ring)
{
    corral_config_t cfg;
    corral_t *c = NULL;
    corral_config_init(&cfg);
    cfg.shards = 4;
    if (ring) {
        cfg.event_ring = ring;
    }
    CU_ASSERT_FATAL(corral_create(&cfg, &c) == CORRAL_OK);
    return c;
}

static void
test_event_kinds(void)
{
    static struct log l;
    corral_t *c = mk(0);
    corral_sub_t *sub;
    uint64_t cas1 = 0, cas2 = 0, v;
    corral_delete_opts_t stale = {0};
    const char *tags[] = {"t1"};
    corral_store_opts_t so = {0};

    log_init(&l);
    /* nothing is recorded before anyone subscribes */
    corral_set(c, "k", 1, "v", 1, 0, 0);
    corral_delete(c, "k", 1);
    CU_ASSERT_FATAL(corral_subscribe(c, on_event, &l, 0, &sub) ==
                    CORRAL_OK);
    CU_ASSERT_EQUAL(corral_event_seq(c), 1);

    so.tags = tags;
    so.ntags = 1;
    corral_store(c, "a", 1, "1", 1, &so, &cas1);   /* new key: no event */
    corral_store(c, "a", 1, "2", 1, NULL, &cas2);  /* 1: overwrite */
    corral_incr(c, "a", 1, 1, &v);                 /* 2: overwrite */
    stale.options = CORRAL_DELETE_STALE;
    corral_delete_ex(c, "a", 1, &stale);           /* 3: stale */
    corral_delete(c, "a", 1);                      /* 4: delete */
    corral_delete(c, "a", 1);                      /* absent: none */
    corral_invalidate_tag(c, "t1");                /* 5: tag */
    corral_invalidate_prefix(c, "pre", 3);         /* 6: prefix */
    corral_flush(c, 0);                            /* 7: flush now */
    corral_flush(c, 100);                          /* 8: flush later */

    CU_ASSERT_EQUAL_FATAL(l.n, 8);
    for (size_t i = 0; i < l.n; i++) {
        CU_ASSERT_EQUAL(l.r[i].seq, i + 1);
        CU_ASSERT_EQUAL(l.r[i].origin, 0);
    }
    CU_ASSERT_EQUAL(l.r[0].type, CORRAL_EVENT_OVERWRITE);
    CU_ASSERT_STRING_EQUAL(l.r[0].name, "a");
    CU_ASSERT_EQUAL(l.r[0].cas, cas2);
    CU_ASSERT_EQUAL(l.r[1].type, CORRAL_EVENT_OVERWRITE);
    CU_ASSERT(l.r[1].cas > cas2);
    CU_ASSERT_EQUAL(l.r[2].type, CORRAL_EVENT_STALE);
    CU_ASSERT(l.r[2].cas > l.r[1].cas);
    CU_ASSERT_EQUAL(l.r[3].type, CORRAL_EVENT_DELETE);
    CU_ASSERT_EQUAL(l.r[3].cas, l.r[2].cas); /* the deleted item's CAS */
    CU_ASSERT_EQUAL(l.r[4].type, CORRAL_EVENT_TAG);
    CU_ASSERT_STRING_EQUAL(l.r[4].name, "t1");
    CU_ASSERT_EQUAL(l.r[5].type, CORRAL_EVENT_PREFIX);
    CU_ASSERT_STRING_EQUAL(l.r[5].name, "pre");
    CU_ASSERT_EQUAL(l.r[6].type, CORRAL_EVENT_FLUSH);
    CU_ASSERT_EQUAL(l.r[6].flush_time, 0);
    CU_ASSERT_EQUAL(l.r[7].type, CORRAL_EVENT_FLUSH);
    CU_ASSERT(l.r[7].flush_time > 0);
    CU_ASSERT_EQUAL(corral_event_seq(c), 9);
    corral_unsubscribe(c, sub);
    corral_destroy(c);
}

static void
test_invalidate_with_origin(void)
{
    static struct log l;
    corral_t *c = mk(0);
    corral_sub_t *sub;
    corral_invalidation_t inv = {0};
    corral_item_t *it;

    log_init(&l);
    CU_ASSERT_FATAL(corral_subscribe(c, on_event, &l, 0, &sub) ==
                    CORRAL_OK);
    corral_set(c, "k", 1, "v", 1, 0, 0);
    inv.type = CORRAL_EVENT_DELETE;
    inv.name = "k";
    inv.len = 1;
    inv.origin = 42;
    CU_ASSERT(corral_invalidate(c, &inv) == CORRAL_OK);
    CU_ASSERT(corral_get(c, "k", 1, &it) == CORRAL_ENOTFOUND);
    inv.name = "absent"; /* still heard by subscribers */
    inv.len = 6;
    CU_ASSERT(corral_invalidate(c, &inv) == CORRAL_OK);
    inv.type = CORRAL_EVENT_TAG;
    inv.name = "tag";
    inv.len = 3;
    CU_ASSERT(corral_invalidate(c, &inv) == CORRAL_OK);
    inv.type = CORRAL_EVENT_PREFIX;
    CU_ASSERT(corral_invalidate(c, &inv) == CORRAL_OK);
    inv.type = CORRAL_EVENT_FLUSH;
    CU_ASSERT(corral_invalidate(c, &inv) == CORRAL_OK);
    inv.type = CORRAL_EVENT_GAP;
    CU_ASSERT(corral_invalidate(c, &inv) == CORRAL_OK);
    inv.type = CORRAL_EVENT_EVICT;
    CU_ASSERT(corral_invalidate(c, &inv) == CORRAL_EINVAL);
    inv.type = CORRAL_EVENT_DELETE;
    inv.len = 0;
    CU_ASSERT(corral_invalidate(c, &inv) == CORRAL_EINVAL);

    CU_ASSERT_EQUAL_FATAL(l.n, 6);
    for (size_t i = 0; i < 6; i++) {
        CU_ASSERT_EQUAL(l.r[i].origin, 42);
    }
    CU_ASSERT_STRING_EQUAL(l.r[1].name, "absent");
    CU_ASSERT_EQUAL(l.r[1].cas, 0);
    CU_ASSERT_EQUAL(l.r[4].type, CORRAL_EVENT_FLUSH);
    CU_ASSERT_EQUAL(l.r[5].type, CORRAL_EVENT_FLUSH); /* the gap's */
    CU_ASSERT_EQUAL(l.r[5].flush_time, 0);
    corral_unsubscribe(c, sub);
    corral_destroy(c);
}

/* A second subscriber replays from a past sequence number while the ring
 * holds it, and gets a gap event first when it does not. */
static void
test_replay_and_gap(void)
{
    static struct log keep, late, later;
    corral_t *c = mk(16);
    corral_sub_t *s1, *s2, *s3;
    char key[16];

    log_init(&keep);
    log_init(&late);
    log_init(&later);
    CU_ASSERT_FATAL(corral_subscribe(c, on_event, &keep, 0, &s1) ==
                    CORRAL_OK);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        corral_invalidate_tag(c, key);
    }
    CU_ASSERT_EQUAL(keep.n, 40);

    /* seq 30..40 are still in the 16-slot ring */
    CU_ASSERT_FATAL(corral_subscribe(c, on_event, &late, 30, &s2) ==
                    CORRAL_OK);
    /* seq 5 is long gone */
    CU_ASSERT_FATAL(corral_subscribe(c, on_event, &later, 5, &s3) ==
                    CORRAL_OK);
    corral_invalidate_tag(c, "next"); /* seq 41 triggers delivery */
    CU_ASSERT_EQUAL_FATAL(late.n, 12);
    CU_ASSERT_EQUAL(late.r[0].seq, 30);
    CU_ASSERT_STRING_EQUAL(late.r[0].name, "k29");
    CU_ASSERT_EQUAL(late.r[11].seq, 41);
    CU_ASSERT_FATAL(later.n >= 2);
    CU_ASSERT_EQUAL(later.r[0].type, CORRAL_EVENT_GAP);
    CU_ASSERT_EQUAL(later.r[0].seq, 5);
    CU_ASSERT(later.r[1].seq > 5);
    CU_ASSERT_EQUAL(later.r[later.n - 1].seq, 41);
    for (size_t i = 2; i < later.n; i++) {
        CU_ASSERT_EQUAL(later.r[i].seq, later.r[i - 1].seq + 1);
    }
    corral_unsubscribe(c, s1);
    corral_unsubscribe(c, s2);
    corral_unsubscribe(c, s3);
    corral_unsubscribe(c, NULL);
    corral_destroy(c);
}

/* A subscriber whose callback is slow while others produce falls behind
 * the ring: it is told with a gap, never silently skipped. */
static corral_t *slow_cache;
static _Atomic int slow_go;
static struct log slow_log;

static void
slow_event(const corral_event_t *ev, void *ud)
{
    if (ev->seq == 1) {
        /* while this first callback runs, the producer thread fills the
         * ring several times over */
        atomic_store(&slow_go, 1);
        while (atomic_load(&slow_go) != 2) {
            sched_yield();
        }
    }
    on_event(ev, ud);
}

static void *
slow_producer(void *arg)
{
    char key[16];
    (void)arg;
    while (atomic_load(&slow_go) != 1) {
        sched_yield();
    }
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "p%d", i);
        corral_invalidate_tag(slow_cache, key);
    }
    atomic_store(&slow_go, 2);
    return NULL;
}

static void
test_slow_subscriber_gap(void)
{
    corral_sub_t *sub;
    pthread_t th;
    bool gap = false;

    slow_cache = mk(16);
    log_init(&slow_log);
    atomic_store(&slow_go, 0);
    CU_ASSERT_FATAL(corral_subscribe(slow_cache, slow_event, &slow_log, 0,
                                     &sub) == CORRAL_OK);
    pthread_create(&th, NULL, slow_producer, NULL);
    corral_invalidate_tag(slow_cache, "first"); /* this thread dispatches */
    pthread_join(th, NULL);
    CU_ASSERT_FATAL(slow_log.n >= 2);
    for (size_t i = 1; i < slow_log.n; i++) {
        if (slow_log.r[i].type == CORRAL_EVENT_GAP) {
            gap = true;
            CU_ASSERT_EQUAL(slow_log.r[i].seq, slow_log.r[i - 1].seq + 1);
        } else if (slow_log.r[i - 1].type != CORRAL_EVENT_GAP) {
            CU_ASSERT_EQUAL(slow_log.r[i].seq, slow_log.r[i - 1].seq + 1);
        }
    }
    CU_ASSERT(gap);
    CU_ASSERT_EQUAL(slow_log.r[slow_log.n - 1].seq, 101);
    CU_ASSERT(slow_log.n <= 16 + 3); /* memory stayed bounded */
    corral_unsubscribe(slow_cache, sub);
    corral_destroy(slow_cache);
}

/* A callback may unsubscribe itself and may call into the cache. */
struct self_sub {
    corral_t *c;
    corral_sub_t *sub;
    int calls;
};

static void
self_unsub(const corral_event_t *ev, void *ud)
{
    struct self_sub *s = ud;
    corral_item_t *it;
    (void)ev;
    s->calls++;
    if (corral_get(s->c, "k", 1, &it) == CORRAL_OK) {
        corral_item_release(it);
    }
    corral_set(s->c, "other", 5, "v", 1, 0, 0); /* an event-free change */
    corral_unsubscribe(s->c, s->sub);
}

static void
test_unsubscribe_in_callback(void)
{
    struct self_sub s = {0};
    s.c = mk(0);
    CU_ASSERT_FATAL(corral_subscribe(s.c, self_unsub, &s, 0, &s.sub) ==
                    CORRAL_OK);
    corral_invalidate_tag(s.c, "a");
    corral_invalidate_tag(s.c, "b");
    CU_ASSERT_EQUAL(s.calls, 1);
    corral_destroy(s.c);
}

/* Two producers, one subscriber: gapless, increasing sequence numbers. */
static corral_t *mt_cache;

static void *
mt_producer(void *arg)
{
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "t%d:%d", (int)(intptr_t)arg, i % 10);
        corral_set(mt_cache, key, strlen(key), "v", 1, 0, 0);
        corral_delete(mt_cache, key, strlen(key));
    }
    return NULL;
}

static void
test_concurrent_producers(void)
{
    static struct log l;
    corral_sub_t *sub;
    pthread_t th[2];

    mt_cache = mk(8192);
    log_init(&l);
    CU_ASSERT_FATAL(corral_subscribe(mt_cache, on_event, &l, 0, &sub) ==
                    CORRAL_OK);
    pthread_create(&th[0], NULL, mt_producer, (void *)1);
    pthread_create(&th[1], NULL, mt_producer, (void *)2);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    CU_ASSERT_EQUAL(l.n, 2000);
    for (size_t i = 0; i < l.n; i++) {
        CU_ASSERT_EQUAL(l.r[i].seq, i + 1);
        CU_ASSERT_EQUAL(l.r[i].type, CORRAL_EVENT_DELETE);
    }
    corral_unsubscribe(mt_cache, sub);
    corral_destroy(mt_cache);
}

struct evict_log {
    size_t n;
    size_t bad;          /* events whose fields were wrong */
    size_t fetched;
    uint64_t last_seq;
    bool gap;
};

static void
on_evict(const corral_event_t *ev, void *ud)
{
    struct evict_log *l = ud;
    const char *name = ev->name;
    unsigned long i = 0;

    if (ev->type == CORRAL_EVENT_GAP) {
        l->gap = true;
        return;
    }
    /* key "e<i>", value 1000 bytes, flags i, no expiry */
    if (ev->type != CORRAL_EVENT_EVICT || ev->len < 2 || name[0] != 'e' ||
        sscanf(name + 1, "%lu", &i) != 1 || ev->flags != i ||
        ev->nvalue != 1000 || ev->ttl != -1 || ev->cas == 0 ||
        ev->seq != l->last_seq + 1) {
        l->bad++;
    }
    if (ev->fetched) {
        l->fetched++;
    }
    l->last_seq = ev->seq;
    l->n++;
}

/*
 * corral_subscribe_evictions: one event per live item evicted, with its
 * fields, in a stream of its own (invalidation subscribers hear none of
 * it), and nothing once unsubscribed.
 */
static void
test_eviction_events(void)
{
    static struct log inval;
    struct evict_log l = {0};
    corral_config_t cfg;
    corral_t *c = NULL;
    corral_sub_t *esub, *isub;
    corral_stats_t st;
    corral_item_t *it;
    char key[32], val[1000];
    uint64_t evicted;

    corral_config_init(&cfg);
    cfg.shards = 1;
    cfg.max_memory = 2u << 20;
    cfg.max_item_size = 64u << 10;
    CU_ASSERT_FATAL(corral_create(&cfg, &c) == CORRAL_OK);
    memset(val, 'v', sizeof(val));
    log_init(&inval);
    CU_ASSERT_FATAL(corral_subscribe(c, on_event, &inval, 0, &isub) ==
                    CORRAL_OK);
    CU_ASSERT_FATAL(corral_subscribe_evictions(c, on_evict, &l, &esub) ==
                    CORRAL_OK);
    for (unsigned i = 0; i < 6000; i++) {
        int n = snprintf(key, sizeof(key), "e%u", i);
        CU_ASSERT_EQUAL(corral_set(c, key, (size_t)n, val, sizeof(val), i, 0),
                        CORRAL_OK);
        if (i % 10 == 0 && corral_get(c, key, (size_t)n, &it) == CORRAL_OK) {
            corral_item_release(it);
        }
    }
    corral_stats(c, &st, sizeof(st));
    evicted = st.evictions;
    CU_ASSERT(evicted > 1000);
    /* delivered on the storing thread, so all of them by now */
    CU_ASSERT_EQUAL(l.n, evicted);
    CU_ASSERT_EQUAL(l.bad, 0);
    CU_ASSERT_FALSE(l.gap);
    CU_ASSERT(l.fetched > 0 && l.fetched < l.n);
    CU_ASSERT_EQUAL(inval.n, 0);

    corral_unsubscribe(c, esub);
    for (unsigned i = 6000; i < 7000; i++) {
        int n = snprintf(key, sizeof(key), "e%u", i);
        corral_set(c, key, (size_t)n, val, sizeof(val), i, 0);
    }
    corral_stats(c, &st, sizeof(st));
    CU_ASSERT(st.evictions > evicted);
    CU_ASSERT_EQUAL(l.n, evicted);
    CU_ASSERT_EQUAL(inval.n, 0);
    corral_unsubscribe(c, isub);
    corral_destroy(c);
}

static const struct cu_test event_tests[] = {
    CU_TEST(test_event_kinds),
    CU_TEST(test_invalidate_with_origin),
    CU_TEST(test_replay_and_gap),
    CU_TEST(test_slow_subscriber_gap),
    CU_TEST(test_unsubscribe_in_callback),
    CU_TEST(test_concurrent_producers),
    CU_TEST(test_eviction_events),
    CU_END,
};

CU_MAIN({"events", event_tests, NULL, NULL})
