/*  sn_members: the member table of the mesh and its failure detector.

    Every node keeps one record per member it has heard of: name, peer endpoint,
    incarnation and status (alive, suspect, dead, left). Records change three ways:
    gossip from peers (sn_members_apply), the local failure detector (sn_members_tick,
    fed by sn_members_heard) and this node's own goodbye (sn_members_leave).

    Gossip is ordered as in SWIM. An update (incarnation i, status s) replaces a record
    (j, t) when i > j, or when i == j and s outranks t in alive < suspect < dead < left.
    So alive(i) clears a suspicion or a death only with a higher incarnation, suspect(i)
    beats alive(i), dead(i) beats both, and left is final for its incarnation: a node
    that comes back after leaving does so with a higher incarnation. Only the member
    itself raises its incarnation: when gossip says it is suspect, dead or gone at or
    above its own incarnation, it refutes by taking that incarnation plus one, staying
    alive, and gossiping itself at once.

    Records are never removed: a dead or left record is the tombstone that stops stale
    gossip from bringing the old incarnation back to life.

    The table has no clock and no sockets. Every method that needs the time takes now
    in ms, from any monotonic clock, as long as the caller always uses the same one.
*/
#ifndef SN_MEMBERS_H_INCLUDED
#define SN_MEMBERS_H_INCLUDED

#include "sn_key.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SN_ENDPOINT_MAX 255  //  longest peer endpoint we accept
#define SN_MEMBERS_MAX  1024 //  most members a table holds

//  Member statuses, ordered by precedence at equal incarnation.
typedef enum {
    SN_MEMBER_ALIVE = 0,
    SN_MEMBER_SUSPECT = 1,
    SN_MEMBER_DEAD = 2,
    SN_MEMBER_LEFT = 3
} sn_member_status_t;

//  One member as the table knows it.
typedef struct {
    char name[SN_NAME_MAX + 1];         //  unique node name
    char endpoint[SN_ENDPOINT_MAX + 1]; //  where its peer ROUTER listens
    uint64_t incarnation;               //  raised only by the member itself
    sn_member_status_t status;          //  what we believe of it
    int64_t changed_at;                 //  now of the last status or incarnation change
    int64_t heard_at;                   //  now of the last message heard from it
} sn_member_t;

//  What sn_members_apply did.
#define SN_MEMBERS_UNCHANGED 0 //  stale or known news: nothing to gossip
#define SN_MEMBERS_CHANGED   1 //  a member was added or changed: gossip it on
#define SN_MEMBERS_REFUTED   2 //  it doubted this node: self was raised, gossip self now

typedef struct _sn_members_t sn_members_t;

//  A table holding only self, alive at the given incarnation. A restarted node should
//  start above any incarnation it used before (the wall clock in ms does), so that what
//  peers remember of its previous life does not need refuting. Returns NULL when the
//  name or endpoint is not valid.
sn_members_t *sn_members_new (const char *self_name, const char *self_endpoint,
                              uint64_t incarnation);
void sn_members_destroy (sn_members_t **self_p);

//  Apply gossip about one member, with now the time it arrived. Unknown members are
//  added (heard_at = now, so the failure detector gives them a full period). A member
//  that becomes alive again also gets heard_at = now. Returns SN_MEMBERS_UNCHANGED,
//  SN_MEMBERS_CHANGED or SN_MEMBERS_REFUTED, or -1 for an invalid name or endpoint, a
//  status out of range, incarnation UINT64_MAX (it could never be refuted), or a new
//  member when the table is full. Gossip about self is never taken as is: it is
//  refuted (see above), or ignored once self has left.
int sn_members_apply (sn_members_t *self, const char *name, const char *endpoint,
                      uint64_t incarnation, int status, int64_t now);

//  A message arrived from a member: refreshes its heard_at, nothing else. A suspect
//  stays suspect however often it is heard, as in SWIM: only its own alive update at a
//  higher incarnation clears the suspicion, so every node reaches the same verdict
//  from the same gossip, whatever each one happens to hear. Returns 0, or -1 when the
//  name is not a member.
int sn_members_heard (sn_members_t *self, const char *name, int64_t now);

//  Run the failure detector. An alive member not heard from for suspect_after ms
//  becomes suspect at its incarnation; a suspect that has not refuted within
//  dead_after ms of becoming suspect becomes dead. Self never changes here. Returns
//  how many members changed; they are those whose changed_at is now.
int sn_members_tick (sn_members_t *self, int64_t now, int64_t suspect_after, int64_t dead_after);

//  Self says goodbye: it becomes left at its current incarnation, final for that
//  incarnation on every node that hears it. Gossip self after this.
void sn_members_leave (sn_members_t *self, int64_t now);

//  Self's record, borrowed.
const sn_member_t *sn_members_self (sn_members_t *self);

//  The record of a member, borrowed, or NULL when unknown.
const sn_member_t *sn_members_lookup (sn_members_t *self, const char *name);

//  All records sorted by name, self included: a borrowed array of *count members, for
//  gossip, placement and /cluster. It stays valid until the next call that changes the
//  table (apply, heard, tick, leave).
const sn_member_t *sn_members_list (sn_members_t *self, size_t *count);

//  Counts every change of a name, endpoint, incarnation or status (not of heard_at):
//  the caller recomputes what it derives from the table when this moves.
uint64_t sn_members_version (sn_members_t *self);

//  "alive", "suspect", "dead", "left"; "unknown" for anything else.
const char *sn_members_status_name (int status);

//  The status of one of those names, or -1 for anything else (NULL included).
int sn_members_status_parse (const char *name);

void sn_members_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
