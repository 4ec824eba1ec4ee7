/*  sn_owners: which partitions this node owns, for the actors that keep state by
    partition (queue, batch, dispatch), and the forwarding of requests for the others.

    The mesh publishes the partition table on its feed (a PUB) whenever it changes and
    every heartbeat: {op: "placement", self, version, owners: [name | nil per
    partition], replicas: [[names]...]}. An owners object subscribes to it and tells
    its actor, after each frame, which partitions it came to own and which it lost.
    Until the first placement arrives the node owns nothing: requests for a partition
    are held (at most S_HELD_MAX, for S_HELD_WAIT ms) and then served, or answered
    503 "cluster not ready".

    A request for a partition owned elsewhere is sent to the mesh as {op: "forward",
    rid, p, request} under the caller's envelope and rid, so the mesh's answer is the
    caller's answer as it comes (sn_owners_relay). A request that was forwarded
    already (its "fwd" is 1 or more) and still lands on a node that does not own its
    partition is answered 503: the owner is changing.

    A partition taken over here is served once its actor has replayed its events
    (sn_replay.h runs those replays for the queue, batch and dispatch actors).
    A replay that fails is reported here (sn_owners_replay_failed): until a later
    one succeeds the partition is being taken over, and its requests are answered
    503 "partition p is being taken over here, try again". The actor tries again
    when sn_owners_replay_due names the partition: 1 s after the first failure,
    doubling up to 10 s, until it succeeds or the partition goes elsewhere.

    Without a feed (selftests, a node without a mesh) the object owns every partition
    from the start and forwards nothing.
*/
#ifndef SN_OWNERS_H_INCLUDED
#define SN_OWNERS_H_INCLUDED

#include <czmq.h>
#include "sn_msg.h"
#include "sn_routed.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _sn_owners_t sn_owners_t;

//  Subscribe to feed and forward through mesh (both inproc endpoints), or own every
//  partition when feed is NULL. Returns NULL when an endpoint cannot be reached.
sn_owners_t *sn_owners_new (const char *feed, const char *mesh, uint32_t partitions);
void sn_owners_destroy (sn_owners_t **self_p);

//  The sockets to poll: the feed (NULL without one) and the mesh link (answers to
//  forwards; NULL without one).
zsock_t *sn_owners_feed (sn_owners_t *self);
zsock_t *sn_owners_mesh (sn_owners_t *self);

//  Read every placement waiting on the feed. Sets gained[p] / lost[p] (arrays of
//  partitions bools, cleared here) for the partitions whose ownership changed.
//  Returns the number of changes; a malformed frame is ignored.
size_t sn_owners_recv (sn_owners_t *self, bool *gained, bool *lost);

bool sn_owners_owns (sn_owners_t *self, uint32_t p);

//  Requests with this op may take up to ms longer than a write at the owner: their
//  forwards wait that much longer before the next replica is tried. At most four
//  ops; returns -1 when there is no room.
int sn_owners_set_wait (sn_owners_t *self, const char *op, uint32_t ms);

//  The partition a bucket request concerns: that of bucket_id ("primary" when
//  absent), or the "-<p>" that ends an invocation id; -1 when it names none.
int64_t sn_owners_partition (sn_owners_t *self, const sn_value_t *root);

//  The partition an invocation id of len bytes names ("<hex>-<p>"), or -1.
int64_t sn_owners_id_partition (sn_owners_t *self, const char *id, size_t len);

//  Take request (for partition p, its decoded payload root) when this node does not
//  own p: forwarded to the owner, held until the first placement, or answered.
//  Returns true when the request was taken (it is no longer the caller's), false
//  when this node owns p and the caller serves it. router answers the caller.
bool sn_owners_route (sn_owners_t *self, sn_routed_t *request, const sn_value_t *root, int64_t p,
                      zsock_t *router);

//  Pass every answer from the mesh to its caller on router.
void sn_owners_relay (sn_owners_t *self, zsock_t *router);

//  A held request that can be served now (the first placement came), or NULL; the
//  caller owns it and handles it as if it had just arrived. Held requests past
//  their wait are answered 503 on router here.
sn_routed_t *sn_owners_release (sn_owners_t *self, zsock_t *router);

//  When held requests expire (unix ms), or INT64_MAX.
int64_t sn_owners_deadline (sn_owners_t *self);

//  The replay of partition p, owned here, failed: its requests are answered 503
//  until sn_owners_replayed. Returns when (unix ms) to try again; INT64_MAX, and
//  nothing changes, when p is not owned here.
int64_t sn_owners_replay_failed (sn_owners_t *self, uint32_t p);

//  The replay of partition p succeeded: it is served.
void sn_owners_replayed (sn_owners_t *self, uint32_t p);

//  Whether partition p is owned here and its replay has not succeeded since it
//  failed.
bool sn_owners_taking_over (sn_owners_t *self, uint32_t p);

//  A partition whose replay is to be tried again at now (unix ms), or -1. Each
//  try is named once.
int64_t sn_owners_replay_due (sn_owners_t *self, int64_t now);

//  When the next replay is due (unix ms), or INT64_MAX.
int64_t sn_owners_replay_at (sn_owners_t *self);

//  Re-reads. A replay (sn_owners_scan_begin, then sn_owners_scan_page with each
//  page's reply, then sn_owners_replayed) notes which replicas its scan merged on
//  every page (the mesh's "merged"). When a placement shows a replica of a
//  partition owned here that is reachable now and was not read so, the partition
//  is read again: sn_owners_reread_due names it, and the actor stages what the
//  scan holds that it lacks, without touching the state held; when every page
//  came and sn_owners_reread_complete it adopts that and calls
//  sn_owners_replayed, else it discards it and calls sn_owners_reread_failed (p
//  stays served and is read again at a later placement). Re-reads of a partition are at least 1 s
//  apart, doubling up to 5 min, reset when one reads a replica not read before.
void sn_owners_scan_begin (sn_owners_t *self, uint32_t p);
void sn_owners_scan_page (sn_owners_t *self, uint32_t p, const sn_value_t *reply);

//  Apply a placement to the re-read bookkeeping (sn_owners_recv does it; for an
//  actor that follows ownership itself).
void sn_owners_reread_check (sn_owners_t *self, const sn_value_t *root);

//  A partition to read again at now (unix ms), or -1; each named once. When the
//  next one is due (unix ms), or INT64_MAX.
int64_t sn_owners_reread_due (sn_owners_t *self, int64_t now);
int64_t sn_owners_reread_at (sn_owners_t *self);

//  Whether a re-read of p is under way, and its end when it failed.
bool sn_owners_rereading (sn_owners_t *self, uint32_t p);
void sn_owners_reread_failed (sn_owners_t *self, uint32_t p);

//  Whether the re-read of p under way read, on every page, every replica the
//  replays of p read before that p's replica list still holds, and a read quorum
//  of p's replicas: (n + 1) / 2 of the n names p's replica list holds in the
//  latest placement applied, the fewest that overlap every write quorum (at this
//  call, so a placement that changed during the re-read counts as it is now; n is
//  the list's length, RF unless the cluster has fewer members: a member that left
//  no longer counts, a dead one still does; this node counts when it is one of
//  them, a name that is not counts for nothing). Ask before sn_owners_replayed.
//  Only such a re-read holds every event those replays read and every event
//  acknowledged at QUORUM under that list, this node's own writes included (the
//  log is append-only), so only its effect may be adopted: an entity finished and
//  dropped here has its end in it. Any other re-read is discarded whole
//  (sn_owners_reread_failed); why (when not NULL, size bytes) then says which
//  rule it broke. Before any placement (no mesh) the quorum is this node's store
//  alone.
bool sn_owners_reread_complete (sn_owners_t *self, uint32_t p, char *why, size_t size);

//  Re-reads begun.
uint64_t sn_owners_rereads (sn_owners_t *self);

//  For tests: p is due to be read again now (as a placement would make it).
//  Returns 0, or -1 when there is no partition p.
int sn_owners_reread_soon (sn_owners_t *self, uint32_t p);

//  This node's name and the members reachable now (self included), as the last
//  placement said: for actors that tell every node what is connected here. NULL and
//  an empty list before the first placement and without a feed.
const char *sn_owners_name (sn_owners_t *self);
zlist_t *sn_owners_members (sn_owners_t *self);

//  For the selftests of the actors that replay: an actor (zactor_new with args the
//  store's endpoint) that binds "<store>-scans" and passes scans on to the store,
//  one event a page. Commands: "PASS", "FAIL" (pages after the first are answered
//  503), "FAIL1" (the next such page only), "SILENT" (they are not answered),
//  "HOLD" (the next such page waits, later ones are not answered), "RELEASE" (the
//  page held is passed on, and so are later pages), each answered "OK"; "REFUSED"
//  answers how many pages were failed, left unanswered or held (sn_actor_count and
//  sn_actor_count_past ask it).
void sn_owners_scan_proxy (zsock_t *pipe, void *args);

void sn_owners_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
