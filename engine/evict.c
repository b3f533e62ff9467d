/*
 * evict.c - S3-FIFO queues, sweep and ghost; see evict.h.
 */
#include "evict.h"

#include <string.h>

#include "hash.h"
#include "tag.h"

#define GHOST_WAYS 8u
#define GHOST_EPOCHS 16u   /* an entry is live for this many epochs */
#define GHOST_EPOCH_BITS 5 /* so that 16 more epochs read as dead */
#define GHOST_EPOCH_MASK ((1u << GHOST_EPOCH_BITS) - 1)
#define GHOST_FP_MAX 0x7ffu /* 16 - GHOST_EPOCH_BITS bits of fingerprint */
#define GHOST_MIN_CAPACITY 64u

/* Hits an item needs while in the small queue to move to main, and the
 * credit a key returning through the ghost starts with in main (one
 * reinsertion).  Chosen by the miss ratios of the traces in
 * shared/traces (bench/README.md, "Hit ratio"). */
#define SMALL_PROMOTE_HITS 2u
#define GHOST_RETURN_FREQ 1u

/* ---------------------------------------------------------------------- */
/* FIFO queues of segments                                                */

/* Shared segments: SEG_ALIGN bytes, or less for a small budget, so that a
 * shard holds at least SEG_PER_BUDGET of them; none below SEG_MIN. */
#define SEG_MIN ((size_t)16 * 1024)
#define SEG_PER_BUDGET 64u
/* A record of at least an eighth of a segment goes solo. */
#define SEG_SOLO_SHARE 8u

static item_t *
seg_rec(const struct seg *g, uint32_t off)
{
    return (item_t *)(void *)((char *)g + off);
}

/* The segment after g in q's sequence, or NULL after the open one. */
static struct seg *
fifo_after(const struct fifo *q, const struct seg *g)
{
    if (g == q->open) {
        return NULL;
    }
    return g->next != NULL ? g->next : q->open;
}

static struct seg *
fifo_first(const struct fifo *q)
{
    return q->tail != NULL ? q->tail : q->open;
}

/* The offset after the record at off in g. */
static uint32_t
rec_end(const struct seg *g, uint32_t off)
{
    const item_t *it = seg_rec(g, off);
    return it->solo ? g->used : off + (uint32_t)item_real_size(it);
}

/* Append g to the list (before the open segment). */
static void
fifo_link(struct fifo *q, struct seg *g)
{
    g->next = NULL;
    g->prev = q->head;
    if (q->head != NULL) {
        q->head->next = g;
    } else {
        q->tail = g;
    }
    q->head = g;
}

/* Take g out of q's sequence (the walk and the sweep go on after it). */
static void
fifo_unlink_seg(struct fifo *q, struct seg *g)
{
    if (q->cseg == g) {
        q->cseg = fifo_after(q, g);
        q->cpos = SEG_HEADER_SIZE;
        if (q->cseg == NULL) {
            q->passes++;
        }
    }
    if (g == fifo_first(q)) {
        q->pos = SEG_HEADER_SIZE;
    }
    if (g == q->open) {
        q->open = NULL;
    } else {
        if (g->prev != NULL) {
            g->prev->next = g->next;
        } else {
            q->tail = g->next;
        }
        if (g->next != NULL) {
            g->next->prev = g->prev;
        } else {
            q->head = g->prev;
        }
    }
    q->mem -= g->size;
}

/* Whether g holds small records (not one item of its own). */
static bool
seg_shared(const struct seg *g)
{
    return g->used > SEG_HEADER_SIZE && !seg_rec(g, SEG_HEADER_SIZE)->solo;
}

/* Take g out of q and drop the queue's reference on it.  Nothing in it is
 * linked any more (the walk has passed it, or its last item left). */
static void
fifo_remove(struct fifo *q, struct seg *g, const struct policy_ops *ops)
{
    if (seg_shared(g)) {
        CR_ASSERT(q->dead >= g->used - SEG_HEADER_SIZE);
        q->dead -= g->used - SEG_HEADER_SIZE;
    }
    fifo_unlink_seg(q, g);
    ops->seg_done(g, g->size, ops->ud);
}

/* The open segment joins the list (or goes, if nothing in it is linked);
 * the next small item opens another. */
static void
fifo_close_open(struct fifo *q, const struct policy_ops *ops)
{
    struct seg *g = q->open;

    if (g == NULL) {
        return;
    }
    if (g->linked == 0) {
        fifo_remove(q, g, ops);
        return;
    }
    q->open = NULL;
    fifo_link(q, g);
}

/* Copy `from` into q's open segment (opening one if needed): a record
 * with refs 1, its own tag references, the given frequency and queue bit,
 * not yet linked in the table.  NULL without memory. */
static item_t *
fifo_append_copy(struct policy *p, struct fifo *q, struct mem *m,
                 const item_t *from, unsigned freq, bool in_main,
                 const struct policy_ops *ops)
{
    size_t bytes = item_real_size(from);
    struct seg *g = q->open;
    item_t *it;
    unsigned bits;

    if (g == NULL || g->used + bytes > g->size) {
        struct seg *n = mem_alloc_aligned(m, p->seg_size, SEG_ALIGN);
        if (n == NULL) {
            return NULL;
        }
        n->next = n->prev = NULL;
        n->size = (uint32_t)p->seg_size;
        n->used = SEG_HEADER_SIZE;
        atomic_init(&n->live, 1); /* the queue's */
        n->linked = 0;
        fifo_close_open(q, ops);
        q->open = g = n;
        q->mem += n->size;
    }
    it = seg_rec(g, g->used);
    g->used += (uint32_t)bytes;
    g->linked++;
    atomic_fetch_add_explicit(&g->live, 1, memory_order_relaxed);
    atomic_init(&it->cas, item_cas(from));
    atomic_init(&it->exptime, item_exptime(from));
    atomic_init(&it->atime, item_atime(from));
    it->nvalue = from->nvalue;
    it->solo = 0;
    atomic_init(&it->refs, 1);
    it->nkey = from->nkey;
    bits = item_bits(from) & ~(ITEM_FREQ_MASK | ITEM_MAIN | ITEM_LINKED);
    atomic_init(&it->bits, (uint8_t)(bits | freq | (in_main ? ITEM_MAIN : 0)));
    memcpy(it->data, from->data,
           (size_t)from->nkey + from->nvalue + item_ext_bytes(from));
    for (size_t i = 0, n = item_ntags(it); i < n; i++) {
        tag_ref(item_tag(it, i));
    }
    q->count++;
    q->bytes += bytes;
    return it;
}

/* Put the solo segment of `it` at the newer end of q. */
static void
fifo_push_solo(struct fifo *q, item_t *it, const struct policy_ops *ops)
{
    struct seg *g = item_seg(it);

    if (q->tail == NULL && q->open != NULL && q->pos > SEG_HEADER_SIZE) {
        /* the walk is inside the open segment: keep the order */
        fifo_close_open(q, ops);
    }
    fifo_link(q, g);
    g->linked = 1;
    atomic_fetch_add_explicit(&g->live, 1, memory_order_relaxed);
    q->count++;
    q->bytes += item_real_size(it);
    q->mem += g->size;
}

/* ---------------------------------------------------------------------- */
/* Ghost                                                                  */

static unsigned
ghost_epoch(const struct ghost *g)
{
    return g->epoch & GHOST_EPOCH_MASK;
}

/* 1 .. GHOST_FP_MAX (an entry is never 0, empty), from hash bits 16-39:
 * not the table's tag (0-15), nor the shard and bucket index (the top
 * bits). */
static unsigned
ghost_fp(uint64_t h)
{
    return (unsigned)(((h >> 16) & 0xffffff) % GHOST_FP_MAX) + 1;
}

static unsigned
entry_fp(uint16_t e)
{
    return e >> GHOST_EPOCH_BITS;
}

static uint16_t *
ghost_bucket(const struct ghost *g, uint64_t h, unsigned shard_bits)
{
    return g->slots + hash_range(h, shard_bits, g->nbuckets) * GHOST_WAYS;
}

/* Age of an entry in epochs (0 = current), modulo 2^GHOST_EPOCH_BITS. */
static unsigned
ghost_age(const struct ghost *g, uint16_t e)
{
    return (ghost_epoch(g) - e) & GHOST_EPOCH_MASK;
}

/* Reallocate the table for `room` entries; forgets everything.  Keeps the
 * old table when memory is short. */
static void
ghost_free(struct ghost *g)
{
    mem_array_free(g->slots, g->bytes, true);
    g->slots = NULL;
    g->bytes = 0;
}

static void
ghost_resize(struct ghost *g, struct mem *m, size_t room)
{
    size_t bytes = mem_array_size(((room + GHOST_WAYS - 1) / GHOST_WAYS) *
                                      GHOST_WAYS * sizeof(uint16_t),
                                  true);
    uint16_t *slots = mem_array_alloc(m, bytes, true);

    if (slots == NULL) {
        return;
    }
    ghost_free(g);
    g->slots = slots;
    g->bytes = bytes;
    g->nbuckets = bytes / (GHOST_WAYS * sizeof(uint16_t)); /* every one */
    g->room = g->nbuckets * GHOST_WAYS;
}

static void
ghost_put(struct ghost *g, uint64_t h, unsigned shard_bits)
{
    unsigned fp = ghost_fp(h);
    uint16_t *b;
    unsigned victim = 0;
    unsigned oldest = 0;

    if (g->slots == NULL) {
        return;
    }
    b = ghost_bucket(g, h, shard_bits);
    for (unsigned i = 0; i < GHOST_WAYS; i++) {
        unsigned age;
        if (b[i] == 0 || entry_fp(b[i]) == fp) {
            victim = i;
            break;
        }
        age = ghost_age(g, b[i]);
        if (age >= oldest) {
            oldest = age;
            victim = i;
        }
    }
    b[victim] = (uint16_t)(fp << GHOST_EPOCH_BITS | ghost_epoch(g));
    /* an epoch is a sixteenth of the window: entries live 16 epochs */
    if (++g->inserts >= g->capacity / GHOST_EPOCHS) {
        g->inserts = 0;
        g->epoch++;
    }
}

bool
policy_ghost_take(struct policy *p, uint64_t h)
{
    struct ghost *g = &p->ghost;
    unsigned fp = ghost_fp(h);
    uint16_t *b;

    if (g->slots == NULL) {
        return false;
    }
    b = ghost_bucket(g, h, p->shard_bits);
    for (unsigned i = 0; i < GHOST_WAYS; i++) {
        if (b[i] != 0 && entry_fp(b[i]) == fp) {
            bool live = ghost_age(g, b[i]) < GHOST_EPOCHS;
            b[i] = 0;
            return live;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------- */
/* Policy                                                                 */

static void
fifo_init(struct fifo *q)
{
    memset(q, 0, sizeof(*q));
    q->pos = SEG_HEADER_SIZE;
}

void
policy_init(struct policy *p, unsigned shard_bits, size_t budget_bytes,
            size_t budget_items)
{
    memset(p, 0, sizeof(*p));
    fifo_init(&p->small);
    fifo_init(&p->main);
    p->shard_bits = shard_bits;
    p->small_bytes = budget_bytes / 10;
    p->small_items = budget_items / 10;
    p->seg_size = SEG_ALIGN;
    while (p->seg_size > SEG_MIN &&
           p->seg_size * SEG_PER_BUDGET > budget_bytes) {
        p->seg_size /= 2;
    }
    if (p->seg_size * SEG_PER_BUDGET > budget_bytes) {
        p->seg_size = 0;
    }
    p->solo_min = p->seg_size / SEG_SOLO_SHARE;
}

void
policy_deinit(struct policy *p)
{
    ghost_free(&p->ghost);
    memset(&p->ghost, 0, sizeof(p->ghost));
}

static bool
goes_solo(const struct policy *p, size_t bytes)
{
    return bytes >= p->solo_min;
}

size_t
policy_insert_cost(const struct policy *p, size_t bytes)
{
    const struct seg *a = p->small.open, *b = p->main.open;

    if (goes_solo(p, bytes)) {
        return mem_real_size(SEG_HEADER_SIZE + bytes);
    }
    if (a != NULL && b != NULL && a->used + bytes <= a->size &&
        b->used + bytes <= b->size) {
        return 0;
    }
    return p->seg_size;
}

item_t *
policy_insert(struct policy *p, struct mem *m, item_t *it, bool in_main,
              bool returning, const struct policy_ops *ops)
{
    struct fifo *q = in_main ? &p->main : &p->small;
    unsigned freq = returning ? GHOST_RETURN_FREQ : item_freq(it);

    CR_ASSERT(it->solo);
    if (!goes_solo(p, item_real_size(it))) {
        return fifo_append_copy(p, q, m, it, freq, in_main, ops);
    }
    item_freq_set(it, freq);
    if (in_main) {
        item_set(it, ITEM_MAIN);
    } else {
        item_clear(it, ITEM_MAIN);
    }
    fifo_push_solo(q, it, ops);
    return it;
}

/* Forget it in its queue's counts; a closed segment left with nothing
 * linked leaves the queue. */
static void
fifo_removed(struct fifo *q, item_t *it, const struct policy_ops *ops)
{
    struct seg *g = item_seg(it);

    q->count--;
    q->bytes -= item_real_size(it);
    if (!it->solo) {
        q->dead += item_real_size(it);
    }
    if (--g->linked == 0 && g != q->open) {
        fifo_remove(q, g, ops);
    }
}

void
policy_removed(struct policy *p, item_t *it, const struct policy_ops *ops)
{
    fifo_removed(item_has(it, ITEM_MAIN) ? &p->main : &p->small, it, ops);
}

/* Whether small holds more than its share: of the memory (its segments,
 * dead records included, so that walking it is what frees them), or of
 * the item budget. */
static bool
small_over(const struct policy *p)
{
    return p->small.mem > p->small_bytes ||
           (p->small_items != 0 && p->small.count > p->small_items);
}

/* Keep the ghost's window as many keys as the cache holds items (the
 * table is reallocated, forgetting, only when it outgrows its room). */
static void
ghost_fit(struct policy *p, struct mem *m)
{
    size_t want = p->main.count + p->small.count;
    if (want < GHOST_MIN_CAPACITY) {
        want = GHOST_MIN_CAPACITY;
    }
    if (p->ghost.slots == NULL || want > p->ghost.room) {
        ghost_resize(&p->ghost, m, want + want / 4);
    }
    p->ghost.capacity = want;
}

/* Move the linked item `it`, just passed by q's walk, to the newer end of
 * `to` (main, or q itself) with this frequency.  False without memory for
 * a copy. */
static bool
move_item(struct policy *p, struct fifo *q, struct fifo *to, struct mem *m,
          item_t *it, unsigned freq, const struct policy_ops *ops)
{
    bool in_main = to == &p->main;
    item_t *copy;

    if (it->solo) {
        /* its segment moves whole, with the queue's reference */
        struct seg *g = item_seg(it);
        fifo_unlink_seg(q, g);
        q->count--;
        q->bytes -= item_real_size(it);
        atomic_fetch_sub_explicit(&g->live, 1, memory_order_relaxed);
        item_freq_set(it, freq);
        if (in_main) {
            item_set(it, ITEM_MAIN);
        } else {
            item_clear(it, ITEM_MAIN);
        }
        fifo_push_solo(to, it, ops);
        return true;
    }
    copy = fifo_append_copy(p, to, m, it, freq, in_main, ops);
    if (copy == NULL) {
        return false;
    }
    fifo_removed(q, it, ops);
    ops->moved(it, copy, ops->ud);
    return true;
}

/* Whether dead records hold more than a quarter of q's segment bytes
 * (and at least a segment's worth): then its walk spares live items. */
static bool
fifo_wasteful(const struct policy *p, const struct fifo *q)
{
    return q->dead > q->mem / 4 && q->dead >= p->seg_size;
}

/* One step of q's walk: false at the end of q (nothing to do); else
 * *out is the record passed, or NULL when a segment was released. */
static bool
fifo_step(struct fifo *q, const struct policy_ops *ops, item_t **out)
{
    struct seg *g = fifo_first(q);

    *out = NULL;
    if (g == NULL) {
        return false;
    }
    if (q->pos < g->used) {
        *out = seg_rec(g, q->pos);
        q->pos = rec_end(g, q->pos);
        return true;
    }
    fifo_remove(q, g, ops);
    return true;
}

static bool
fifo_empty(const struct fifo *q)
{
    return q->tail == NULL && q->open == NULL;
}

bool
policy_evict(struct policy *p, struct mem *m, const struct policy_ops *ops,
             bool spare, item_t **victim)
{
    for (;;) {
        item_t *it;

        if (!fifo_empty(&p->small) &&
            (small_over(p) || fifo_empty(&p->main))) {
            fifo_step(&p->small, ops, &it);
            if (it == NULL) {
                *victim = NULL;
                return true;
            }
            if (!item_has(it, ITEM_LINKED)) {
                continue;
            }
            if (!ops->dead(it, ops->ud)) {
                if (item_freq(it) >= SMALL_PROMOTE_HITS &&
                    move_item(p, &p->small, &p->main, m, it, 0, ops)) {
                    continue;
                }
                if (spare && fifo_wasteful(p, &p->small) &&
                    move_item(p, &p->small, &p->small, m, it, item_freq(it),
                              ops)) {
                    continue;
                }
                ghost_fit(p, m);
                ghost_put(&p->ghost, ops->hash(it, ops->ud), p->shard_bits);
            }
            *victim = it;
            return true;
        }
        if (!fifo_step(&p->main, ops, &it)) {
            *victim = NULL;
            return false;
        }
        if (it == NULL) {
            *victim = NULL;
            return true;
        }
        if (!item_has(it, ITEM_LINKED)) {
            continue;
        }
        if (!ops->dead(it, ops->ud)) {
            if (item_freq(it) > 0 &&
                move_item(p, &p->main, &p->main, m, it, item_freq(it) - 1,
                          ops)) {
                continue;
            }
            if (spare && fifo_wasteful(p, &p->main) &&
                move_item(p, &p->main, &p->main, m, it, 0, ops)) {
                continue;
            }
        }
        *victim = it;
        return true;
    }
}

/* One sweep step on a queue. */
static void
fifo_sweep_step(struct fifo *q, const struct policy_ops *ops,
                void (*drop)(item_t *it, void *ud))
{
    item_t *it;

    if (q->cseg == NULL) {
        q->cseg = fifo_first(q);
        q->cpos = q->pos;
        if (q->cseg == NULL) {
            q->passes++; /* nothing to visit: a complete pass */
            return;
        }
    }
    if (q->cpos >= q->cseg->used) {
        /* on to the next segment; after the newer end, start over (the
         * open segment's later records are for the next pass) */
        q->cseg = fifo_after(q, q->cseg);
        q->cpos = SEG_HEADER_SIZE;
        if (q->cseg == NULL) {
            q->passes++;
        }
        return;
    }
    it = seg_rec(q->cseg, q->cpos);
    q->cpos = rec_end(q->cseg, q->cpos);
    if (item_has(it, ITEM_LINKED) && ops->dead(it, ops->ud)) {
        drop(it, ops->ud);
    }
}

void
policy_sweep(struct policy *p, size_t n, const struct policy_ops *ops,
             void (*drop)(item_t *it, void *ud))
{
    for (size_t i = 0; i < n; i++) {
        fifo_sweep_step(&p->small, ops, drop);
        fifo_sweep_step(&p->main, ops, drop);
    }
}

void
policy_trim(struct policy *p, const struct policy_ops *ops)
{
    struct fifo *qs[2] = {&p->small, &p->main};

    for (int i = 0; i < 2; i++) {
        if (qs[i]->open != NULL && qs[i]->open->linked == 0) {
            fifo_remove(qs[i], qs[i]->open, ops);
        }
    }
}

#define OLDEST_LOOK 64u

const item_t *
policy_oldest(const struct policy *p, bool main)
{
    const struct fifo *q = main ? &p->main : &p->small;
    unsigned looked = 0;

    for (const struct seg *g = fifo_first(q); g != NULL;
         g = fifo_after(q, g)) {
        uint32_t off = g == fifo_first(q) ? q->pos : SEG_HEADER_SIZE;
        while (off < g->used) {
            const item_t *it = seg_rec(g, off);
            if (item_has(it, ITEM_LINKED)) {
                return it;
            }
            if (++looked == OLDEST_LOOK) {
                return NULL;
            }
            off = rec_end(g, off);
        }
    }
    return NULL;
}

static void
fifo_walk(struct fifo *q, void (*fn)(item_t *it, void *ud), void *ud)
{
    struct seg *next;

    for (struct seg *g = fifo_first(q); g != NULL; g = next) {
        uint32_t off = g == fifo_first(q) ? q->pos : SEG_HEADER_SIZE;
        /* fn may unlink g's last item, and g leave the queue */
        next = fifo_after(q, g);
        while (off < g->used) {
            item_t *it = seg_rec(g, off);
            off = rec_end(g, off);
            if (item_has(it, ITEM_LINKED)) {
                fn(it, ud);
            }
        }
    }
}

void
policy_walk(struct policy *p, void (*fn)(item_t *it, void *ud), void *ud)
{
    fifo_walk(&p->small, fn, ud);
    fifo_walk(&p->main, fn, ud);
}

void
policy_foreach(struct policy *p, void (*fn)(item_t *it, void *ud),
               const struct policy_ops *ops)
{
    struct fifo *qs[2] = {&p->small, &p->main};

    for (int i = 0; i < 2; i++) {
        fifo_walk(qs[i], fn, ops->ud);
    }
    for (int i = 0; i < 2; i++) {
        /* the items went without fifo_removed: no dead count to keep */
        while (!fifo_empty(qs[i])) {
            struct seg *g = fifo_first(qs[i]);
            fifo_unlink_seg(qs[i], g);
            ops->seg_done(g, g->size, ops->ud);
        }
        qs[i]->dead = 0;
    }
}
