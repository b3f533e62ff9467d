/*
 * shard.c - one shard's state changes: linking and unlinking items, making
 * room by eviction, the incremental sweep, and memory accounting.
 *
 * Memory accounting.  s->mem_used counts the real size of the queues'
 * segments (linked items, dead ones the eviction walk has not passed yet,
 * the open segments' free space) plus the table and ghost arrays.  It
 * changes only under the exclusive lock; the gauges in s->stats mirror it
 * for lock-free reading.  A segment still held by readers after its queue
 * released it is no longer counted: its memory goes back when the last
 * reader releases it.
 *
 * Retired segments.  A segment whose items are all retired and that its
 * queue released may still be pointed into by a reader's pin slot
 * (pin.h).  It waits in s->retired; once RETIRE_BATCH more have gathered
 * (or RETIRE_BYTES_MAX of them), one scan of every slot tells which can be
 * freed.  The scan costs a cache line per pin block, so batching keeps it
 * off the cost of each eviction.
 */
#include "cache.h"

#include <string.h>

/* Records each write examines in the sweep while prefix rules wait. */
#define SWEEP_PER_WRITE 2u

/* Segments a store's make_room may release while compacting (each copy
 * of at most one segment's live records) before it evicts instead. */
#define COMPACT_SEGS_PER_STORE 8u

/* Retired segments scanned for at once, and the bytes that start a scan
 * sooner (this, or a 256th of the shard's budget if less), so that large
 * items do not wait for a batch beyond the memory limit. */
#define RETIRE_BATCH 8u
#define RETIRE_BYTES_MAX (256u * 1024u)


/* What the policy's callbacks see. */
struct shard_ctx {
    struct corral *c;
    struct shard *s;
    uint32_t now;
    size_t freed;
};

/* Refresh the gauges that depend on table and ghost sizes. */
static void
shard_sync_meta(struct shard *s)
{
    stat_set(&s->stats, ST_hash_bytes, s->table.bytes);
    stat_set(&s->stats, ST_hash_is_expanding, s->table.old != NULL);
    stat_set(&s->stats, ST_mem_used, s->mem_used);
}

/* Recount s->mem_used after the table, the ghost or the queues'
 * segments changed. */
static void
shard_recount(struct shard *s)
{
    s->mem_used = s->table.bytes + policy_bytes(&s->policy) +
                  policy_seg_bytes(&s->policy);
    shard_sync_meta(s);
}

/* Slots to start a shard's table with: room for its share of max_items
 * (without growing), but no more than an eighth of its memory budget, so
 * that a max_items far beyond what the memory holds does not fill the
 * budget with an empty table; past that the table grows with its count. */
static size_t
presized_slots(size_t item_budget, size_t budget)
{
    size_t want = item_budget ? item_budget * 5 / 4 + 1 : 0;
    size_t most = budget / 8 / sizeof(uint64_t);
    return want < most ? want : most;
}

bool
shard_init(struct corral *c, struct shard *s, unsigned index)
{
    memset(s, 0, sizeof(*s));
    s->index = index;
    s->cache = c;
    s->reap_at = RETIRE_BATCH;
    s->budget = c->cfg.max_memory / c->nshards;
    /* an exact split: the shards' budgets add up to max_items */
    s->item_budget = c->cfg.max_items / c->nshards +
                     (index < c->cfg.max_items % c->nshards);
    stats_init(&s->stats);
    rw_init(&s->lock);
    atomic_init(&s->early, NULL);
    if (!table_init(&s->table, &c->mem,
                    presized_slots(s->item_budget, s->budget), c->shard_bits,
                    c->seed)) {
        return false;
    }
    policy_init(&s->policy, c->shard_bits, s->budget, s->item_budget);
    shard_recount(s);
    return true;
}

void
shard_reap(struct shard *s)
{
    s->nretired = (unsigned)pin_free_unheld(&s->retired);
    s->reap_at = s->nretired + RETIRE_BATCH;
    s->retired_bytes = 0; /* since this scan: what is still held waits
                           * for the next batch */
    if (ld_relaxed(&pin_orphans_waiting)) {
        pin_collect();
    }
}

/* Drop a reference on a segment (an item's, or its queue's); the last one
 * retires it.  It is freed no sooner than the end of the write (so that
 * the operation may still read the items it unlinked). */
static void
shard_seg_put(struct shard *s, struct seg *g)
{
    if (atomic_fetch_sub_explicit(&g->live, 1, memory_order_acq_rel) != 1) {
        return;
    }
    g->next = s->retired;
    s->retired = g;
    s->retired_bytes += g->size;
    s->nretired++;
}

/* Scan for the retired segments that can go, once a batch has gathered. */
static void
shard_reap_due(struct shard *s)
{
    if (s->nretired >= s->reap_at ||
        s->retired_bytes >= CR_MIN(RETIRE_BYTES_MAX, s->budget / 256)) {
        shard_reap(s);
    }
}

void
shard_unref(struct shard *s, item_t *it)
{
    if (atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) ==
        1) {
        shard_seg_put(s, item_seg(it));
    }
}

static void
drop_ref(item_t *it, void *ud)
{
    struct shard_ctx *x = ud;
    shard_unref(x->s, it);
}

/* policy_ops.seg_done: the queue released g. */
static void
ctx_seg_done(struct seg *g, size_t bytes, void *ud)
{
    struct shard_ctx *x = ud;
    struct shard *s = x->s;

    shard_seg_put(s, g);
    /* Memory freed goes back to the system in steps of a 128th of the
     * budget (cache_deliver purges), so that the pages of evicted values
     * are not kept beside those of the values that replaced them: at most
     * a 128th of the limit waits in freed pages, over all shards.  (A
     * 32nd left mixed sizes at 1.09-1.10 x the limit in resident memory,
     * a 128th at 1.08, at no measurable cost in time.) */
    s->evicted_bytes += bytes;
    if (s->evicted_bytes >= s->budget / 128) {
        s->evicted_bytes = 0;
        atomic_store_explicit(&x->c->purge_due, true, memory_order_relaxed);
    }
}

static uint64_t
ctx_hash(const item_t *it, void *ud)
{
    const struct shard_ctx *x = ud;
    return hash_key(x->c->seed, item_key(it), it->nkey);
}

/* The policy's "dead" test for a linked item: expired or flushed. */
static bool
ctx_dead(item_t *it, void *ud)
{
    const struct shard_ctx *x = ud;
    return item_state_dead(item_state(x->c, x->s, it, x->now));
}

/* policy_ops.moved: `to` replaces `from` in the table. */
static void
ctx_moved(item_t *from, item_t *to, void *ud)
{
    struct shard_ctx *x = ud;
    table_replace(&x->s->table, ctx_hash(from, x), from, to);
    item_set(to, ITEM_LINKED);
    item_clear(from, ITEM_LINKED);
    shard_unref(x->s, from);
}

#define SHARD_OPS(x) {ctx_dead, ctx_hash, ctx_moved, ctx_seg_done, (x)}

void
shard_deinit(struct shard *s)
{
    struct shard_ctx x = {s->cache, s, 0, 0};
    const struct policy_ops ops = SHARD_OPS(&x);

    /* Every linked item is queued: releasing the queues frees all but
     * the segments that readers still hold. */
    policy_foreach(&s->policy, drop_ref, &ops);
    shard_reap(s);
    pin_orphan(s->retired); /* still held by their readers */
    s->retired = NULL;
    policy_deinit(&s->policy);
    mem_free(s->rules);
    mem_free(atomic_load(&s->early));
    keyrecs_deinit(&s->keyrecs);
    table_deinit(&s->table);
}

uint64_t
shard_next_cas(struct corral *c, struct shard *s)
{
    return (++s->cas_seq << c->shard_bits) | s->index;
}

/* The item left the table: counts, its queue's and the cache's
 * reference. */
static void
shard_forget(struct shard *s, item_t *it)
{
    struct shard_ctx x = {s->cache, s, 0, 0};
    const struct policy_ops ops = SHARD_OPS(&x);

    item_clear(it, ITEM_LINKED);
    policy_removed(&s->policy, it, &ops);
    stat_sub(&s->stats, ST_bytes, item_real_size(it));
    stat_sub(&s->stats, ST_curr_items, 1);
    shard_unref(s, it);
}

bool
shard_link(struct corral *c, struct shard *s, uint64_t h, item_t **itp,
           item_t *old_it)
{
    struct shard_ctx x = {c, s, 0, 0};
    const struct policy_ops ops = SHARD_OPS(&x);
    item_t *it = *itp;
    bool in_main, returning = false;

    if (old_it != NULL) {
        /* A new version keeps the standing its key had earned. */
        in_main = item_has(old_it, ITEM_MAIN);
        item_freq_set(it, item_freq(old_it));
    } else {
        if (!table_reserve(&s->table, &c->mem)) {
            shard_recount(s);
            return false;
        }
        in_main = returning = policy_ghost_take(&s->policy, h);
    }
    it = policy_insert(&s->policy, &c->mem, it, in_main, returning, &ops);
    if (it == NULL) {
        shard_recount(s);
        return false;
    }
    if (old_it != NULL) {
        table_replace(&s->table, h, old_it, it);
        shard_forget(s, old_it);
    } else {
        table_insert(&s->table, &c->mem, h, it); /* reserved: cannot fail */
    }
    item_set(it, ITEM_LINKED);
    stat_add(&s->stats, ST_bytes, item_real_size(it));
    stat_add(&s->stats, ST_curr_items, 1);
    COUNT(s, total_items);
    shard_recount(s);
    *itp = it;
    return true;
}

void
shard_unlink(struct corral *c, struct shard *s, uint64_t h, item_t *it)
{
    (void)c;
    CR_ASSERT(item_has(it, ITEM_LINKED));
    table_remove(&s->table, h, it);
    shard_forget(s, it);
    shard_recount(s);
}

/* Report a live item evicted, to corral_subscribe_evictions()
 * subscribers (shard lock held: the lock order allows events). */
static void
report_eviction(struct shard_ctx *x, const item_t *it, bool fetched)
{
    struct ev_evict info;
    uint32_t atime = item_atime(it);

    info.ttl = exptime_ttl(item_exptime(it), x->now);
    info.last_access = x->now > atime ? (int64_t)(x->now - atime) : 0;
    info.nvalue = it->nvalue;
    info.flags = item_flags(it);
    info.fetched = fetched;
    events_push_evict(&x->c->evictions, item_key(it), it->nkey,
                      item_cas(it), &info);
}

/* Take a linked item that eviction or the sweep chose out of the cache,
 * counting why. */
static void
ctx_release(struct shard_ctx *x, item_t *it, bool evicting)
{
    struct shard *s = x->s;
    enum item_state st = item_state(x->c, s, it, x->now);
    bool fetched = item_has(it, ITEM_FETCHED);

    if (!item_state_dead(st)) {
        CR_ASSERT(evicting);
        COUNT(s, evictions);
        if (!fetched) {
            COUNT(s, evicted_unfetched);
        }
        if (events_wanted(&x->c->evictions)) {
            report_eviction(x, it, fetched);
        }
    } else {
        COUNT(s, reclaimed);
        if (st == ITEM_EXPIRED && !fetched) {
            COUNT(s, expired_unfetched);
        }
    }
    (void)evicting;
    x->freed++;
    shard_unlink(x->c, s, ctx_hash(it, x), it);
}

static void
ctx_drop(item_t *it, void *ud)
{
    ctx_release(ud, it, false);
}

/* How many entries the shard's table should expect to hold: near the
 * byte budget, the count it levels off at if items keep their present
 * size in the segments, each with its share of a table at 75 % load
 * (32/3 bytes) and of the ghost (2.5 bytes); the item budget, if lower;
 * 0 (unknown) while under half full. */
static size_t
shard_expect(const struct shard *s)
{
    size_t n = table_count(&s->table);
    size_t segs = policy_seg_bytes(&s->policy);
    size_t expect = 0;

    if (n != 0 && s->mem_used >= s->budget / 2) {
        /* in sixths of a byte per item: 6 x segs/n + 64 + 15 */
        unsigned __int128 per6 = (unsigned __int128)6 * segs / n + 79;
        expect = (size_t)((unsigned __int128)6 * s->budget / per6);
    }
    if (s->item_budget != 0 && (expect == 0 || s->item_budget < expect)) {
        expect = s->item_budget;
    }
    return expect;
}

bool
shard_make_room(struct corral *c, struct shard *s, size_t bytes,
                size_t items)
{
    struct shard_ctx x = {c, s, cache_now(c), 0};
    const struct policy_ops ops = SHARD_OPS(&x);
    unsigned released = 0;

    /* fixed for this store: the growth counted here is the one made */
    s->table.expect = shard_expect(s);
    for (;;) {
        /* a new key may make the table grow: that memory counts too */
        size_t grow = items != 0 ? table_insert_growth(&s->table) : 0;
        size_t need = bytes != 0 ? policy_insert_cost(&s->policy, bytes) : 0;
        bool count_ok = s->item_budget == 0 ||
                        table_count(&s->table) + items <= s->item_budget;
        item_t *victim;
        bool more;

        if (s->mem_used + need + grow <= s->budget && count_ok) {
            return true;
        }
        /* Compacting a queue (policy_evict's spare) frees bytes, never a
         * slot under max_items, and copies at most a few segments' worth
         * per store, so that no store pauses long: past that, it evicts. */
        more = policy_evict(&s->policy, &c->mem, &ops,
                            count_ok && released < COMPACT_SEGS_PER_STORE,
                            &victim);
        if (victim != NULL) {
            ctx_release(&x, victim, true); /* recounts as it unlinks */
        } else {
            shard_recount(s);
            released++;
        }
        if (!more) {
            return false;
        }
    }
}

void
shard_trim(struct corral *c, struct shard *s)
{
    struct shard_ctx x = {c, s, 0, 0};
    const struct policy_ops ops = SHARD_OPS(&x);

    policy_trim(&s->policy, &ops);
    shard_recount(s);
}

/* Drop the n oldest prefix rules. */
static void
drop_oldest_rules(struct shard *s, unsigned n)
{
    if (n == 0) {
        return;
    }
    s->retired_seq = s->rules[n - 1].seq;
    memmove(s->rules, s->rules + n, (s->nrules - n) * sizeof(*s->rules));
    s->nrules -= n;
    stat_sub(&s->stats, ST_prefix_rules, n);
}

/* Retire the oldest prefix rules once the sweep has made a full pass over
 * both queues since they were added: every item they could match has
 * been unlinked by then. */
static void
retire_prefix_rules(struct shard *s)
{
    unsigned n = 0;
    while (n < s->nrules &&
           s->policy.small.passes >= s->rules[n].sweep_gen[0] + 2 &&
           s->policy.main.passes >= s->rules[n].sweep_gen[1] + 2) {
        n++;
    }
    drop_oldest_rules(s, n);
}

void
shard_migrate(struct shard *s, size_t n)
{
    table_migrate(&s->table, n);
    if (s->table.old == NULL) {
        shard_recount(s); /* the old table was freed */
    }
}

void
shard_set_budget(struct shard *s, size_t budget)
{
    s->budget = budget;
    s->policy.small_bytes = budget / 10;
    shard_make_room(s->cache, s, 0, 0);
}

size_t
shard_sweep(struct corral *c, struct shard *s, size_t n)
{
    struct shard_ctx x = {c, s, cache_now(c), 0};
    const struct policy_ops ops = SHARD_OPS(&x);

    if (s->table.old != NULL) {
        shard_migrate(s, n * 4);
    }
    policy_sweep(&s->policy, n, &ops, ctx_drop);
    shard_recount(s);
    if (s->nrules != 0) {
        retire_prefix_rules(s);
    }
    return x.freed;
}

struct rule_apply {
    struct shard_ctx *x;
    const struct prefix_rule *rule;
};

static void
apply_rule_to(item_t *it, void *ud)
{
    struct rule_apply *a = ud;
    const struct prefix_rule *r = a->rule;
    if (item_has(it, ITEM_LINKED) && item_cas(it) <= r->cas &&
        it->nkey >= r->len && memcmp(it->data, r->prefix, r->len) == 0) {
        shard_unlink(a->x->c, a->x->s, ctx_hash(it, a->x), it);
        COUNT(a->x->s, reclaimed);
    }
}

void
shard_add_prefix_rule(struct corral *c, struct shard *s, const void *prefix,
                      size_t len)
{
    struct prefix_rule *r;

    if (s->rules == NULL) {
        s->rules = mem_alloc(&c->mem,
                             TAG_PREFIX_RULES_MAX * sizeof(*s->rules), NULL);
    }
    if (s->rules == NULL || s->nrules == TAG_PREFIX_RULES_MAX) {
        /* No room to defer: apply the oldest rule (or this one, without
         * memory for rules at all) by walking the shard's items now. */
        struct prefix_rule now;
        struct shard_ctx x = {c, s, cache_now(c), 0};
        struct rule_apply a = {&x, s->rules != NULL ? &s->rules[0] : &now};
        if (s->rules == NULL) {
            s->retired_seq = ++s->inval_seq;
            now.cas = (s->cas_seq << c->shard_bits) | s->index;
            now.len = (uint8_t)len;
            memcpy(now.prefix, prefix, len);
            policy_walk(&s->policy, apply_rule_to, &a);
            return;
        }
        policy_walk(&s->policy, apply_rule_to, &a);
        drop_oldest_rules(s, 1);
    }
    r = &s->rules[s->nrules++];
    r->seq = ++s->inval_seq;
    r->cas = (s->cas_seq << c->shard_bits) | s->index;
    r->sweep_gen[0] = s->policy.small.passes;
    r->sweep_gen[1] = s->policy.main.passes;
    r->len = (uint8_t)len;
    memcpy(r->prefix, prefix, len);
    stat_add(&s->stats, ST_prefix_rules, 1);
}

void
shard_prune_prefix_rules(struct shard *s)
{
    unsigned n = 0;
    while (n < s->nrules && s->rules[n].cas <= s->flush_cas) {
        n++;
    }
    drop_oldest_rules(s, n);
}

item_t *
shard_find_live(struct corral *c, struct shard *s, uint64_t h,
                const void *key, size_t nkey, uint32_t now,
                enum item_state *out_dead_state)
{
    item_t *it = table_find(&s->table, h, key, nkey);
    enum item_state st;

    if (out_dead_state != NULL) {
        *out_dead_state = ITEM_LIVE;
    }
    if (it == NULL) {
        return NULL;
    }
    st = item_state(c, s, it, now);
    if (st == ITEM_LIVE) {
        return it;
    }
    if (out_dead_state != NULL) {
        *out_dead_state = st;
    }
    shard_unlink(c, s, h, it);
    if (item_state_dead(st)) {
        COUNT(s, reclaimed);
    }
    if (st == ITEM_EXPIRED && !item_has(it, ITEM_FETCHED)) {
        COUNT(s, expired_unfetched);
    }
    return NULL;
}

void
shard_write_done(struct corral *c, struct shard *s)
{
    size_t steps;

    shard_reap_due(s);
    if (s->table.old != NULL) {
        shard_migrate(s, SHARD_MIGRATE_PER_WRITE);
    }
    /* Each step reads a record (often a cache miss): sweep steadily while
     * prefix rules wait, and otherwise just enough to find expired items
     * in time: one record every fourth write. */
    if (s->nrules > 0) {
        steps = SWEEP_PER_WRITE;
    } else {
        steps = (++s->writes & 3) == 0;
    }
    if (steps > 0) {
        shard_sweep(c, s, steps);
    }
}

void
shard_overwrite(struct shard *s, item_t *old, const item_t *it, uint64_t cas)
{
    size_t n = item_ntags(old);
    unsigned keep = item_bits(old) & (ITEM_FREQ_MASK | ITEM_MAIN |
                                      ITEM_LINKED);

    CR_ASSERT(old->nkey == it->nkey);
    for (size_t i = 0; i < n; i++) {
        tag_release(item_tag(old, i));
    }
    n = item_ntags(it);
    for (size_t i = 0; i < n; i++) {
        tag_ref(item_tag(it, i)); /* for old's copy; it keeps its own */
    }
    old->nvalue = it->nvalue;
    memcpy(old->data, it->data,
           (size_t)it->nkey + it->nvalue + item_ext_bytes(it));
    atomic_store_explicit(&old->exptime, item_exptime(it),
                          memory_order_relaxed);
    atomic_store_explicit(&old->atime, item_atime(it), memory_order_relaxed);
    atomic_store_explicit(&old->cas, cas, memory_order_relaxed);
    atomic_store_explicit(&old->bits,
                          (uint8_t)(keep | (item_bits(it) &
                                            (ITEM_EXT | ITEM_STALE |
                                             ITEM_TOKEN))),
                          memory_order_relaxed);
    COUNT(s, total_items);
}
