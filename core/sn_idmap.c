/*  sn_idmap: a table from string keys to items, for tables with very many entries.

    Linear probing over a power-of-two array of slots. A deleted entry leaves a
    tombstone, so that a walk in progress and the probe sequences of the other entries
    stay valid; tombstones go when the array is rebuilt.
*/
#include "sn_idmap.h"
#include "sn_key.h"

//  Smallest array, in slots.
#define S_MIN_SLOTS 64

//  What a deleted entry leaves in its slot's item.
static char s_tombstone;

typedef struct {
    uint64_t hash;   //  of key
    const char *key; //  borrowed from item
    void *item;      //  NULL for a free slot, &s_tombstone for a deleted entry
} s_slot_t;

struct _sn_idmap_t {
    s_slot_t *slots;             //  the array
    size_t mask;                 //  slots - 1
    size_t size;                 //  entries
    size_t used;                 //  slots not free: entries and tombstones
    size_t cursor;               //  next slot of a walk
    czmq_destructor *destructor; //  for items, or NULL
};

static uint64_t
s_hash (const char *key)
{
    return sn_hash (key, strlen (key));
}

static bool
s_live (const s_slot_t *slot)
{
    return slot->item && slot->item != &s_tombstone;
}

//  Rebuild the array with room for twice the entries, dropping the tombstones. Slots
//  move by their stored hash: no key is read.
static void
s_rebuild (sn_idmap_t *self)
{
    size_t count = S_MIN_SLOTS;
    while (count < 2 * (self->size + 1))
        count *= 2;
    s_slot_t *slots = (s_slot_t *) zmalloc (count * sizeof (s_slot_t));
    for (size_t index = 0; self->slots && index <= self->mask; index++) {
        s_slot_t *slot = &self->slots[index];
        if (!s_live (slot))
            continue;
        size_t at = slot->hash & (count - 1);
        while (slots[at].item)
            at = (at + 1) & (count - 1);
        slots[at] = *slot;
    }
    free (self->slots);
    self->slots = slots;
    self->mask = count - 1;
    self->used = self->size;
}

//  The slot holding key, or NULL.
static s_slot_t *
s_find (sn_idmap_t *self, const char *key, uint64_t hash)
{
    for (size_t at = hash & self->mask;; at = (at + 1) & self->mask) {
        s_slot_t *slot = &self->slots[at];
        if (!slot->item)
            return NULL;
        if (slot->hash == hash && slot->item != &s_tombstone && streq (slot->key, key))
            return slot;
    }
}

sn_idmap_t *
sn_idmap_new (void)
{
    sn_idmap_t *self = (sn_idmap_t *) zmalloc (sizeof (sn_idmap_t));
    s_rebuild (self);
    return self;
}

void
sn_idmap_destroy (sn_idmap_t **self_p)
{
    assert (self_p);
    sn_idmap_t *self = *self_p;
    if (self) {
        for (size_t index = 0; self->destructor && index <= self->mask; index++)
            if (s_live (&self->slots[index]))
                self->destructor (&self->slots[index].item);
        free (self->slots);
        free (self);
        *self_p = NULL;
    }
}

void
sn_idmap_set_destructor (sn_idmap_t *self, czmq_destructor *destructor)
{
    assert (self);
    self->destructor = destructor;
}

int
sn_idmap_insert (sn_idmap_t *self, const char *key, void *item)
{
    assert (self);
    assert (key);
    assert (item);
    uint64_t hash = s_hash (key);
    if (s_find (self, key, hash))
        return -1;
    //  At most three quarters of the slots in use keeps probe sequences short
    if (4 * (self->used + 1) > 3 * (self->mask + 1))
        s_rebuild (self);
    size_t at = hash & self->mask;
    while (s_live (&self->slots[at]))
        at = (at + 1) & self->mask;
    s_slot_t *slot = &self->slots[at];
    if (!slot->item)
        self->used++;
    slot->hash = hash;
    slot->key = key;
    slot->item = item;
    self->size++;
    return 0;
}

void *
sn_idmap_lookup (sn_idmap_t *self, const char *key)
{
    assert (self);
    assert (key);
    s_slot_t *slot = s_find (self, key, s_hash (key));
    return slot ? slot->item : NULL;
}

void
sn_idmap_delete (sn_idmap_t *self, const char *key)
{
    assert (self);
    assert (key);
    s_slot_t *slot = s_find (self, key, s_hash (key));
    if (!slot)
        return;
    void *item = slot->item;
    slot->item = &s_tombstone;
    slot->key = NULL;
    self->size--;
    if (self->destructor)
        self->destructor (&item);
}

size_t
sn_idmap_size (sn_idmap_t *self)
{
    assert (self);
    return self->size;
}

void *
sn_idmap_first (sn_idmap_t *self)
{
    assert (self);
    self->cursor = 0;
    return sn_idmap_next (self);
}

void *
sn_idmap_next (sn_idmap_t *self)
{
    assert (self);
    while (self->cursor <= self->mask) {
        s_slot_t *slot = &self->slots[self->cursor++];
        if (s_live (slot))
            return slot->item;
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  Selftest

static void
s_test_free (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

void
sn_idmap_test (bool verbose)
{
    if (verbose)
        printf (" * sn_idmap: ");
    sn_idmap_t *map = sn_idmap_new ();
    sn_idmap_set_destructor (map, s_test_free);
    //  Enough entries to rebuild the array many times; each item is its own key
    const size_t count = 5000;
    for (size_t index = 0; index < count; index++) {
        char *id = zsys_sprintf ("inv-%zu", index);
        assert (sn_idmap_insert (map, id, id) == 0);
    }
    assert (sn_idmap_size (map) == count);
    char *again = strdup ("inv-42");
    assert (sn_idmap_insert (map, again, again) == -1);
    assert (sn_idmap_lookup (map, "inv-42") != again);
    assert (streq ((char *) sn_idmap_lookup (map, "inv-42"), "inv-42"));
    free (again);
    assert (sn_idmap_lookup (map, "inv-5000") == NULL);
    assert (sn_idmap_lookup (map, "") == NULL);

    //  Deleting the even ones, half of them during a walk: the walk sees every
    //  entry once
    for (size_t index = 0; index < count; index += 4) {
        char key[32];
        snprintf (key, sizeof key, "inv-%zu", index);
        sn_idmap_delete (map, key);
    }
    sn_idmap_delete (map, "inv-0");
    sn_idmap_delete (map, "no such id");
    bool *seen = (bool *) zmalloc (count * sizeof (bool));
    for (char *id = (char *) sn_idmap_first (map); id; id = (char *) sn_idmap_next (map)) {
        size_t index = (size_t) atol (id + 4);
        assert (index < count && index % 4 != 0 && !seen[index]);
        seen[index] = true;
        if (index % 2 == 0)
            sn_idmap_delete (map, id);
    }
    for (size_t index = 0; index < count; index++)
        assert (seen[index] == (index % 4 != 0));
    free (seen);
    assert (sn_idmap_size (map) == count / 2);
    for (size_t index = 0; index < count; index++) {
        char key[32];
        snprintf (key, sizeof key, "inv-%zu", index);
        char *id = (char *) sn_idmap_lookup (map, key);
        assert (index % 2 ? id && streq (id, key) : id == NULL);
    }

    //  Churn past the tombstones: entries come and go with the array not growing
    //  without bound, and a deleted key can come back
    for (size_t round = 0; round < 20; round++)
        for (size_t index = 0; index < count; index += 2) {
            char *id = zsys_sprintf ("inv-%zu", index);
            assert (sn_idmap_insert (map, id, id) == 0);
            sn_idmap_delete (map, id);
        }
    assert (sn_idmap_size (map) == count / 2);
    assert (map->mask + 1 <= 4 * count);
    char *back = strdup ("inv-2");
    assert (sn_idmap_insert (map, back, back) == 0);
    assert (sn_idmap_lookup (map, "inv-2") == back);
    sn_idmap_destroy (&map);
    sn_idmap_destroy (&map);

    //  Without a destructor the items stay the caller's
    sn_idmap_t *borrowed = sn_idmap_new ();
    char id[] = "only";
    assert (sn_idmap_insert (borrowed, id, id) == 0);
    sn_idmap_delete (borrowed, "only");
    assert (sn_idmap_size (borrowed) == 0);
    assert (sn_idmap_first (borrowed) == NULL);
    sn_idmap_destroy (&borrowed);
    if (verbose)
        printf ("OK\n");
}
