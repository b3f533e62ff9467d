/*
 * accounting.h - the engine's memory accounting, checked against what its
 * queues really hold (for the tests that look inside the engine).
 */
#ifndef CORRAL_TEST_ACCOUNTING_H
#define CORRAL_TEST_ACCOUNTING_H

#include <stdbool.h>
#include <stdio.h>

#include "cache.h"

static inline corral_stats_t
accounting_stats(corral_t *c)
{
    corral_stats_t s;
    corral_stats(c, &s, sizeof(s));
    return s;
}

/* Whether a queue's counters match its segments: real bytes of every
 * segment, the count and record bytes of the linked items in them, and
 * the record bytes no longer linked in shared segments. */
static bool
fifo_counts_ok(const struct fifo *q, bool main, bool all_live,
               size_t *mem)
{
    size_t count = 0, bytes = 0, dead = 0;

    *mem = 0;
    for (struct seg *g = q->tail != NULL ? q->tail : q->open; g != NULL;
         g = g == q->open ? NULL : (g->next != NULL ? g->next : q->open)) {
        uint32_t off = SEG_HEADER_SIZE;
        size_t linked = 0;
        *mem += g->size;
        while (off < g->used) {
            item_t *it = (item_t *)(void *)((char *)g + off);
            if (item_has(it, ITEM_LINKED)) {
                linked++;
                count++;
                bytes += item_real_size(it);
                if (item_has(it, ITEM_MAIN) != main) {
                    printf("\n  an item of the %s queue says otherwise\n",
                           main ? "main" : "small");
                    return false;
                }
            } else if (!it->solo) {
                dead += item_real_size(it);
            }
            off = it->solo ? g->used : off + (uint32_t)item_real_size(it);
        }
        if (linked != g->linked) {
            printf("\n  a segment counts %u linked items, holds %zu\n",
                   g->linked, linked);
            return false;
        }
        if (all_live && linked == 0) {
            printf("\n  a segment of the %s queue holds no linked item\n",
                   main ? "main" : "small");
            return false;
        }
    }
    if (count != q->count || bytes != q->bytes || *mem != q->mem ||
        dead != q->dead) {
        printf("\n  queue: %zu items, %zu bytes, %zu in segments, %zu dead; "
               "counted %zu, %zu, %zu, %zu\n",
               count, bytes, *mem, dead, q->count, q->bytes, q->mem,
               q->dead);
        return false;
    }
    return true;
}

/*
 * The accounting invariants, shard by shard: mem_used is exactly the
 * table, the ghost and the queues' segments, and within the shard's
 * budget; each queue's counts match what its segments hold (and, with
 * all_live, every segment holds a linked item); the gauges agree.
 * Returns false (and says why) on the first breach.
 */
static bool
shards_accounting_ok(corral_t *c, bool all_live)
{
    corral_stats_t st = accounting_stats(c);
    size_t total = 0, items = 0;

    for (unsigned i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];
        size_t small, main;
        size_t parts;
        if (!fifo_counts_ok(&s->policy.small, false, all_live, &small) ||
            !fifo_counts_ok(&s->policy.main, true, all_live, &main)) {
            printf("  in shard %u\n", i);
            return false;
        }
        parts = s->table.bytes + policy_bytes(&s->policy) + small + main;
        if (s->mem_used != parts) {
            printf("\n  shard %u: mem_used %zu, parts %zu\n", i, s->mem_used,
                   parts);
            return false;
        }
        if (s->mem_used > s->budget) {
            printf("\n  shard %u: mem_used %zu over budget %zu\n", i,
                   s->mem_used, s->budget);
            return false;
        }
        if (s->item_budget != 0 && table_count(&s->table) > s->item_budget) {
            printf("\n  shard %u: %zu items over %zu\n", i,
                   table_count(&s->table), s->item_budget);
            return false;
        }
        total += s->mem_used;
        items += table_count(&s->table);
    }
    if (st.mem_used != total || total > c->cfg.max_memory ||
        st.curr_items != items) {
        printf("\n  mem_used %llu (shards %zu, limit %zu), curr_items %llu "
               "(tables %zu)\n",
               (unsigned long long)st.mem_used, total, c->cfg.max_memory,
               (unsigned long long)st.curr_items, items);
        return false;
    }
    return true;
}

#endif /* CORRAL_TEST_ACCOUNTING_H */
