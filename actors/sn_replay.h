/*  sn_replay: the replays of the partitions an actor keeps state for (queue, batch,
    dispatch), read from the log one scan at a time, a page at a time, each page
    handled in the actor's loop so that it serves the other partitions meanwhile.

    A partition taken over (a placement, a try again after a failure, a REPLAY on the
    pipe) waits its turn in order and is replayed from its first page; until that is
    over its requests wait (sn_replay_park: at most S_PARK_MAX of them, S_PARK_WAIT
    ms, then 503; one forwarded by another node hears 503 at once). A takeover that
    fails drops what it loaded (sn_owners answers 503 and names when to try again).
    A partition lost and gained again while its takeover scanned it starts over from
    the first page. A partition served here is read again when sn_owners names it
    (a re-read: the actor stages what it reads apart and adopts it or not at the
    end); re-reads are begun only when no takeover runs or waits. Without a feed
    every partition is replayed at START, synchronously, before the actor serves.

    The actor gives what is its own as hooks: apply one event, the begin and end of
    a scan, dropping what it holds of a partition, serving or refusing a request.
*/
#ifndef SN_REPLAY_H_INCLUDED
#define SN_REPLAY_H_INCLUDED

#include <czmq.h>
#include "sn_msg.h"
#include "sn_owners.h"
#include "sn_routed.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _sn_replay_t sn_replay_t;

typedef struct {
    //  Apply one stored event of the scan under way (a takeover's or a re-read's).
    void (*event) (void *actor, const char *type, const sn_value_t *event);
    //  A scan of p begins: a takeover, or a re-read (reread) that stages apart.
    void (*begin) (void *actor, uint32_t p, bool reread);
    //  The takeover of p succeeded; its waiting requests are served after this.
    void (*done) (void *actor, uint32_t p);
    //  The re-read of p ended: adopt what it staged (adopt), or discard it.
    void (*reread_end) (void *actor, uint32_t p, bool adopt);
    //  Forget what is held of p: it went elsewhere, or its takeover failed or starts
    //  over (anew: the next one loads p from nothing).
    void (*drop) (void *actor, uint32_t p, bool anew);
    //  Handle request (owned by the actor now) as if it had just come.
    void (*serve) (void *actor, sn_routed_t *request);
    //  The rid of the next page asked for, unique among the actor's rids on the log;
    //  what the actor gathered for the log goes now, before the page is asked.
    uint64_t (*rid) (void *actor);
} sn_replay_hooks_t;

//  Replays for actor (name for its logs, e.g. "sn_queue") of the partitions owners
//  gives, asking pages on scan; a REPLAY's end is told on pipe. All borrowed.
sn_replay_t *sn_replay_new (const char *name, sn_owners_t *owners, zsock_t *scan, zsock_t *pipe,
                            uint32_t partitions, const sn_replay_hooks_t *hooks, void *actor);
void sn_replay_destroy (sn_replay_t **self_p);

//  Replay every partition owned now, waiting for each page (START): NULL, or why
//  a takeover failed (freed by the caller). Pages are waited for longer then.
char *sn_replay_start (sn_replay_t *self);

//  The actor serves now, answering its requests on router (a ROUTER, borrowed).
void sn_replay_serve (sn_replay_t *self, zsock_t *router);

//  Requests held by owners until the first placement, served now; or answered
//  when their wait is over.
void sn_replay_release (sn_replay_t *self);

//  Read the placements waiting on the owners' feed: drop what went, queue what came.
void sn_replay_placement (sn_replay_t *self);

//  A reply on the scan socket: true when it was the page the scan under way waits
//  for, handled here; false when it is the actor's.
bool sn_replay_offer (sn_replay_t *self, const sn_value_t *reply);

//  Take request (for partition p, its root and rid) when p's takeover is not over:
//  it waits for its end, or is answered 503. False when the actor serves it.
bool sn_replay_park (sn_replay_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid,
                     int64_t p);

//  Do the next thing due at now (unix ms): parked requests expire, a page not come
//  in time fails its scan, a takeover is queued again or begun, a re-read begun.
//  Returns false when nothing was due.
bool sn_replay_step (sn_replay_t *self, int64_t now);

//  When (unix ms) the next thing is due, or INT64_MAX.
int64_t sn_replay_next (sn_replay_t *self, int64_t now);

//  Whether p's takeover waits or runs; whether p is being read again.
bool sn_replay_taking (sn_replay_t *self, uint32_t p);
bool sn_replay_rereading (sn_replay_t *self, uint32_t p);

//  Takeovers waiting their turn.
size_t sn_replay_waiting (sn_replay_t *self);

//  A pipe command of the replays, its arguments read from the pipe here: "REPLAY"
//  p (answered when that takeover ends: "OK" or why it failed), "REREAD" p (for
//  tests: p is due to be read again now), "REREADS" (re-reads ended). Before START
//  (self NULL) they are answered on pipe, the actor's, as not started; pipe is not
//  used otherwise. Returns false for any other command.
bool sn_replay_command (sn_replay_t *self, zsock_t *pipe, const char *command);

//  At $TERM: the requests still waiting hear that no takeover will end here.
void sn_replay_stop (sn_replay_t *self);

//  For the selftests of the actors that replay, where the test stands in for their
//  store on scans (a ROUTER): the next scan asked within 5 s, [sender, payload],
//  or NULL; its partition in *p, whether it begins a re-read in *reread. Then pass
//  it on to the store (a DEALER) and the store's answer back.
zmsg_t *sn_replay_scan_next (zsock_t *scans, uint64_t *p, bool *reread);
void sn_replay_scan_pass (zsock_t *scans, zsock_t *store, zmsg_t **scan_p);

//  For those selftests too: how many re-reads actor (a queue or a batch actor)
//  ended (its REREADS); wait until more than before did, within timeout ms; ask
//  it to read p again (REREAD), returning how many had ended before; ask and wait
//  for that re-read's end.
uint64_t sn_replay_test_rereads (zactor_t *actor);
void sn_replay_test_rereads_past (zactor_t *actor, uint64_t before, int timeout);
uint64_t sn_replay_test_reread_ask (zactor_t *actor, uint32_t p);
void sn_replay_test_reread (zactor_t *actor, uint32_t p);

//  For those selftests too: publish on feed a placement from "a" (version 1) of
//  partitions, each owned by owner, the members reachable each a letter of members.
void sn_replay_test_place (zsock_t *feed, const char *owner, uint32_t partitions,
                           const char *members);

void sn_replay_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
