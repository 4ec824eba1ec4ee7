/*  sn_placement: which members hold and which member owns each partition.

    Rendezvous hashing: every member scores every partition, and the replicas of a
    partition are the RF members with the highest scores (fewer when there are fewer
    members). The score of partition p for member name is

        sn_hash (4 bytes of p, big-endian, then the bytes of name, no terminator)

    which depends on nothing but those bytes, so every node and every build computes the
    same table from the same member list, whatever order the list comes in. Equal
    scores go to the smaller name (strcmp). Adding or removing a member only moves the
    partitions where it ranks among the top RF.

    Members that have left hold nothing. Dead members still hold their replicas, as
    their data is still on their disk and they are expected back, but never own.

    The owner of a partition is its first replica that is alive or suspect. A suspect
    keeps ownership because suspicion is often a slow moment, not a failure: handing a
    partition over means replaying it and running its timers twice, so it moves only
    once the failure detector has decided the owner is dead. With no such replica the
    partition has no owner.

    Hinted handoff: a write whose replica is down goes to the next alive members in
    rendezvous order beyond the replicas, which keep it until the replica returns.
*/
#ifndef SN_PLACEMENT_H_INCLUDED
#define SN_PLACEMENT_H_INCLUDED

#include "sn_members.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _sn_placement_t sn_placement_t;

//  A table of partitions partitions with rf replicas each (both at least 1), holding
//  no members until the first update.
sn_placement_t *sn_placement_new (uint32_t partitions, uint32_t rf);
void sn_placement_destroy (sn_placement_t **self_p);

//  Recompute the table from count members in any order, for instance the list of an
//  sn_members table; only name and status are used. Call it when membership changes.
//  Returns 1 when any partition's replicas or owner changed, 0 when none did, -1 (and
//  the table is left as it was) when a name is invalid or repeated.
int sn_placement_update (sn_placement_t *self, const sn_member_t *members, size_t count);

//  Number of partitions.
uint32_t sn_placement_partitions (sn_placement_t *self);

//  Replicas per partition: rf capped by the number of members that have not left.
uint32_t sn_placement_replica_count (sn_placement_t *self);

//  The index-th replica of partition, in rendezvous order; borrowed, NULL when either
//  is out of range.
const char *sn_placement_replica (sn_placement_t *self, uint32_t partition, uint32_t index);

//  True when name is one of the replicas of partition.
bool sn_placement_holds (sn_placement_t *self, uint32_t partition, const char *name);

//  The owner of partition; borrowed, NULL when it has none or is out of range.
const char *sn_placement_owner (sn_placement_t *self, uint32_t partition);

//  Where hints go for a partition with wanted replicas down: up to wanted names
//  (borrowed, into holders) of alive members that are not replicas, in rendezvous
//  order, so the k-th down replica's hints go to holders[k]. Returns how many were
//  found, which is fewer than wanted when not enough members are alive.
size_t sn_placement_handoff (sn_placement_t *self, uint32_t partition, size_t wanted,
                             const char **holders);

void sn_placement_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
