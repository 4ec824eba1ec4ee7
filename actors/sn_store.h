/*  sn_store: the store actor. Owns the node's LMDB environment.

    Every durable thing a node knows is an immutable event in this store. The actor
    binds a ROUTER on an inproc endpoint; each request is [envelope frames..., payload]
    where the payload is one msgpack map {op, rid, ...}; the reply is the same envelope
    and one map {rid, code, ...}, with "error" added when code is not 2xx. Only actors
    of this node can reach the endpoint, and they have decoded every frame with
    sn_msg_decode and validated it against schemas/ before it gets here, so the store
    decodes without the pre-scan (sn_msg_decode_trusted). It still checks every field
    it reads and never asserts on one.

    Writes are group-committed: the actor drains every request waiting on its socket,
    applies them all in one LMDB transaction, commits (one fsync) and only then sends
    every reply. A 201 therefore means the event is on disk.

    Ops:
      put     {event: map, key?, type?: "event", pkey?, p?, replica?}  -> 201 {key}
              Without key, a new time key is made. With key (AllData's _put), the event
              is written once: the same event again is accepted (201), a different one
              under an existing key is refused (409); with a retention, a user event
              (type "event") whose key time is before the horizon is refused (422),
              or with replica acknowledged (201) and not stored. pkey is the partition key
              (defaults to the key); p, when given, is the partition itself (a replica
              copying a record that has no partition key). A key in this node's name
              is refused unless replica is true: only the mesh writes those, and the
              key generator then never makes that key again. The stored record is
              {type, ts, p, body}.
      get     {key}                                   -> 200 {key, type, ts, p, event} | 404
              An expired user event is 404 even before the sweep has deleted it.
      range   {from?, to?, limit?}                    -> 200 {events: [{key, event}], next}
              User events (type "event") with from <= key < to, in key order, at most
              limit (default 100); next is the key to pass as from to continue, or nil.
              Expired ones are left out.
      bulk    {puts: [{event, key?, type?, pkey?, p?}...], replica?}
                                                      -> 200 {results: [{code, key | error}]}
      digest  {p, within?}                            -> 200 {p, buckets: [{t, count, xor}]}
              Per time bucket (SN_STORE_BUCKET_MS) of partition p: how many events and
              the XOR of their sn_hash (key); for anti-entropy between replicas. With
              within (the start of a bucket): that bucket per minute, from the index
              (413 above SN_STORE_WITHIN_MAX events).
      scan    {p, from?, to?, limit?, prefix?}        -> 200 {p, events: [{key, type,
              ts, event}], next}
              Every event of partition p, internal ones included, with from <= key < to
              in key order, whose type starts with prefix; at most limit (default 100,
              at most 1000) and about 4 MB a page; next continues, or nil. For
              replaying a partition and for copying it between replicas. Expired user
              events are left out.
      keygen  {}                                      -> 200 {ms, seq}
              Time and sequence of the last key in this node's name, for the mesh's
              key generator to resume after.
      health  {}                     -> 200 {name, events, event_retention_ms, expired,
                                                expired_ignored}
              expired: user events the sweep deleted since the store started;
              expired_ignored: copies of expired user events acknowledged unstored.

    Retention: with event_retention_ms, the horizon is the wall clock minus it (it
    never goes back, even when the clock does). User events whose key time is before
    it have expired: a sweep deletes them in the background, at most 2,000 per write
    transaction, passes back to back while there is a backlog and every second once
    it has caught up. Each deletion takes the record, its partition index entry and
    its count and hash out of the digest, so that digests always describe what is
    stored. Internal events (every other type) are never deleted.

    Pipe commands: "START" (replies "OK" or the error text), "$TERM".
*/
#ifndef SN_STORE_H_INCLUDED
#define SN_STORE_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Width of the time buckets that digests summarise: one hour of key time.
#define SN_STORE_BUCKET_MS (3600 * 1000)

//  The finer buckets digest {within} splits one in: a minute.
#define SN_STORE_MINUTE_MS 60000

//  Most events of one bucket that digest {within} reads to split it per minute.
#define SN_STORE_WITHIN_MAX 500000

typedef struct {
    const char *data_dir; //  directory of the LMDB environment; created if absent
    const char *name;     //  node name: the suffix of the keys this node makes
    uint32_t partitions;  //  P; fixed when the store is created
    size_t map_size;      //  LMDB map size in bytes (the largest the store may grow)
    const char *endpoint; //  inproc endpoint the actor binds its ROUTER to
    bool verbose;         //  log every request

    //  User events older than this many ms (by key time) are deleted; 0 keeps them
    int64_t event_retention_ms;
} sn_store_config_t;

//  Start a store actor and open its environment. Returns NULL with the reason in
//  error when the environment cannot be opened or the endpoint cannot be bound.
zactor_t *sn_store_new (const sn_store_config_t *config, char *error, size_t size);

//  The actor function, for zactor_new; args is an sn_store_config_t, copied.
void sn_store_actor (zsock_t *pipe, void *args);

void sn_store_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
