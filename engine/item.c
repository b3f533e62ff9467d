/*
 * item.c - item allocation, reference counting and copies.  The layout is
 * drawn in item.h.
 */
#include "item.h"

#include <string.h>

#include "tag.h"

item_t *
item_create(struct mem *m, const void *key, size_t nkey, size_t nvalue,
            uint32_t flags, size_t ntags, size_t *out_real)
{
    return item_create_ext(m, key, nkey, nvalue, flags, ntags, 0, out_real);
}

item_t *
item_create_ext(struct mem *m, const void *key, size_t nkey, size_t nvalue,
                uint32_t flags, size_t ntags, unsigned extras,
                size_t *out_real)
{
    size_t esize = ext_size(flags, ntags, extras);
    size_t req = ITEM_HEADER_SIZE + nkey + nvalue + esize;
    size_t real;
    /* the whole record: an overwrite in place may fill it */
    struct seg *g = mem_alloc(m, SEG_HEADER_SIZE + rec_size(req), &real);
    item_t *it;
    char *ext;

    if (g == NULL) {
        return NULL;
    }
    g->next = g->prev = NULL;
    g->size = (uint32_t)real; /* items are at most ITEM_VALUE_MAX and a bit */
    g->used = (uint32_t)(SEG_HEADER_SIZE + rec_size(req));
    atomic_init(&g->live, 1);
    g->linked = 0;
    if (out_real != NULL) {
        *out_real = real;
    }
    it = (item_t *)(g + 1);
    atomic_init(&it->cas, 0);
    atomic_init(&it->exptime, 0);
    atomic_init(&it->atime, 0);
    it->nvalue = (uint32_t)nvalue;
    it->solo = 1;
    atomic_init(&it->refs, 1);
    it->nkey = (uint8_t)nkey;
    atomic_init(&it->bits, esize != 0 ? ITEM_EXT : 0);
    memcpy(it->data, key, nkey);
    if (esize == 0) {
        return it;
    }
    ext = it->data + nkey + nvalue;
    memset(ext, 0, esize);
    ext[0] = (char)((flags != 0 ? EXT_FLAGS : 0) |
                    (ntags != 0 ? EXT_TAGS : 0) |
                    (extras & (EXT_FETCH | EXT_MARKS)));
    if (flags != 0) {
        memcpy(ext + 1, &flags, sizeof(flags));
    }
    if (ntags != 0) {
        item_tag_block(it)[0] = (char)ntags;
    }
    return it;
}

void
item_copy_tags(item_t *to, const item_t *from)
{
    size_t n = item_ntags(from);
    CR_ASSERT(item_ntags(to) == n);
    for (size_t i = 0; i < n; i++) {
        struct tag_rec *r = item_tag(from, i);
        tag_ref(r);
        item_set_tag(to, i, r);
    }
    if (n > 0) {
        item_set_tag_epoch(to, item_tag_epoch(from));
    }
}

void
item_unref(item_t *it)
{
    uint16_t old = atomic_fetch_sub_explicit(&it->refs, 1,
                                             memory_order_acq_rel);
    CR_ASSERT(old > 0);
    if (old == 1) {
        item_free(it);
    }
}

static void
release_tags(const item_t *it)
{
    size_t n = item_ntags(it);
    for (size_t i = 0; i < n; i++) {
        struct tag_rec *r = item_tag(it, i);
        if (r != NULL) {
            tag_release(r);
        }
    }
}

void
item_free(item_t *it)
{
    CR_ASSERT(it->solo);
    release_tags(it);
    mem_free(item_seg(it));
}

void
seg_free(struct seg *g)
{
    item_t *it = (item_t *)(g + 1);

    CR_ASSERT(atomic_load(&g->live) == 0);
    if (it->solo) {
        release_tags(it);
    } else {
        for (size_t off = SEG_HEADER_SIZE; off < g->used;
             off += item_real_size(it)) {
            it = (item_t *)(void *)((char *)g + off);
            if (item_has(it, ITEM_EXT)) {
                release_tags(it);
            }
        }
    }
    mem_free(g);
}

item_t *
item_clone(struct mem *m, const item_t *it)
{
    unsigned extras = item_ext_mask(it) & (EXT_FETCH | EXT_MARKS);
    item_t *copy = item_create_ext(m, item_key(it), it->nkey, it->nvalue,
                                   item_flags(it), item_ntags(it), extras,
                                   NULL);
    if (copy == NULL) {
        return NULL;
    }
    memcpy(item_value(copy), it->data + it->nkey, it->nvalue);
    item_copy_tags(copy, it);
    if (extras & EXT_FETCH) {
        memcpy(item_fetch_block(copy), item_fetch_block(it), 8);
    }
    atomic_init(&copy->cas, item_cas(it));
    atomic_init(&copy->exptime, item_exptime(it));
    atomic_init(&copy->atime, item_atime(it));
    atomic_init(&copy->bits, (uint8_t)(item_bits(it) &
                                       (ITEM_EXT | ITEM_STALE | ITEM_FETCHED)));
    return copy;
}
