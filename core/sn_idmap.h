/*  sn_idmap: a table from string keys to items, for tables with very many entries.

    The key of an entry is borrowed from its item (an id inside it): nothing is copied
    per entry. Entries sit in one open-addressed array with the hash of their key, so
    an insert or lookup touches one slot and, on a hash match, one key; growing moves
    slots without reading keys. zhashx chains an allocated item per entry and reads
    every key again when it grows, which costs the queue about a microsecond per
    invocation at a few hundred thousand of them.
*/
#ifndef SN_IDMAP_H_INCLUDED
#define SN_IDMAP_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _sn_idmap_t sn_idmap_t;

//  Create an empty table.
sn_idmap_t *sn_idmap_new (void);

//  Destroy the table, and each item with the destructor if one is set.
void sn_idmap_destroy (sn_idmap_t **self_p);

//  Called on an item when its entry is deleted or the table destroyed.
void sn_idmap_set_destructor (sn_idmap_t *self, czmq_destructor *destructor);

//  Add item under key, which must stay valid and unchanged while the entry lives.
//  Returns 0, or -1 when the key is there already (nothing changes).
int sn_idmap_insert (sn_idmap_t *self, const char *key, void *item);

//  The item under key, or NULL.
void *sn_idmap_lookup (sn_idmap_t *self, const char *key);

//  Remove the entry under key, if any, destroying its item.
void sn_idmap_delete (sn_idmap_t *self, const char *key);

//  The number of entries.
size_t sn_idmap_size (sn_idmap_t *self);

//  Walk the items in no particular order. Entries may be deleted during a walk, not
//  added.
void *sn_idmap_first (sn_idmap_t *self);
void *sn_idmap_next (sn_idmap_t *self);

void sn_idmap_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
