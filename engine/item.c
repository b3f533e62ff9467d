/*
 * item.c - item allocation, reference counting and copies.  The layout is
 * drawn in item.h.
 */
#include "item.h"

#include <string.h>

item_t *
item_create(struct mem *m, const void *key, size_t nkey, size_t nvalue,
            uint32_t flags, size_t *out_real)
{
    item_t *it = mem_alloc(m, item_size(nkey, nvalue, flags), out_real);
    if (it == NULL) {
        return NULL;
    }
    it->next = NULL;
    atomic_init(&it->cas, 0);
    atomic_init(&it->exptime, 0);
    atomic_init(&it->atime, 0);
    it->nvalue = (uint32_t)nvalue;
    atomic_init(&it->refs, 1);
    it->nkey = (uint8_t)nkey;
    atomic_init(&it->bits, flags != 0 ? ITEM_EXT : 0);
    memcpy(it->data, key, nkey);
    if (flags != 0) {
        char *ext = it->data + nkey + nvalue;
        ext[0] = (char)EXT_FLAGS;
        memcpy(ext + 1, &flags, sizeof(flags));
    }
    return it;
}

size_t
item_real_size(const item_t *it)
{
    return mem_real_size(item_size(it->nkey, it->nvalue, item_flags(it)));
}

void
item_unref(item_t *it)
{
    uint16_t old = atomic_fetch_sub_explicit(&it->refs, 1,
                                             memory_order_acq_rel);
    CR_ASSERT(old > 0);
    if (old == 1) {
        mem_free(it);
    }
}

item_t *
item_clone(struct mem *m, const item_t *it)
{
    item_t *copy = item_create(m, item_key(it), it->nkey, it->nvalue,
                               item_flags(it), NULL);
    if (copy == NULL) {
        return NULL;
    }
    memcpy(item_value(copy), it->data + it->nkey, it->nvalue);
    atomic_init(&copy->cas, item_cas(it));
    atomic_init(&copy->exptime, item_exptime(it));
    atomic_init(&copy->atime, item_atime(it));
    atomic_init(&copy->bits, (uint8_t)(item_bits(it) &
                                       (ITEM_EXT | ITEM_STALE | ITEM_FETCHED)));
    return copy;
}
