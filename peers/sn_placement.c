/*  sn_placement: which members hold and which member owns each partition.
 */
#include "sn_placement.h"

//  What placement needs to know of a member.
typedef struct {
    char name[SN_NAME_MAX + 1]; //  member name
    sn_member_status_t status;  //  its status when the table was computed
} s_member_t;

//  One member's claim on one partition.
typedef struct {
    uint64_t score;   //  rendezvous score
    const char *name; //  the tie-breaker
    uint32_t index;   //  into the members array
} s_rank_t;

struct _sn_placement_t {
    uint32_t partitions; //  P
    uint32_t rf;         //  replicas wanted per partition
    s_member_t *members; //  members that have not left, sorted by name
    uint32_t count;      //  how many
    uint32_t replicas;   //  replicas per partition: rf capped by count
    uint32_t *replica;   //  partitions x rf member indices, in rendezvous order
    int32_t *owner;      //  per partition, a member index or -1
};

static uint64_t
s_score (uint32_t partition, const char *name)
{
    byte bytes[4 + SN_NAME_MAX];
    size_t len = strlen (name);
    bytes[0] = (byte) (partition >> 24);
    bytes[1] = (byte) (partition >> 16);
    bytes[2] = (byte) (partition >> 8);
    bytes[3] = (byte) partition;
    memcpy (bytes + 4, name, len);
    return sn_hash (bytes, 4 + len);
}

//  Rendezvous order: highest score first, then the smaller name.
static int
s_rank_compare (const void *a, const void *b)
{
    const s_rank_t *left = (const s_rank_t *) a, *right = (const s_rank_t *) b;
    if (left->score != right->score)
        return left->score > right->score ? -1 : 1;
    return strcmp (left->name, right->name);
}

static int
s_member_compare (const void *a, const void *b)
{
    return strcmp (((const s_member_t *) a)->name, ((const s_member_t *) b)->name);
}

//  Fill ranks with every member's claim on partition, best first.
static void
s_rank (const s_member_t *members, uint32_t count, uint32_t partition, s_rank_t *ranks)
{
    for (uint32_t index = 0; index < count; index++) {
        ranks[index].score = s_score (partition, members[index].name);
        ranks[index].name = members[index].name;
        ranks[index].index = index;
    }
    qsort (ranks, count, sizeof (s_rank_t), s_rank_compare);
}

sn_placement_t *
sn_placement_new (uint32_t partitions, uint32_t rf)
{
    assert (partitions > 0);
    assert (rf > 0);
    sn_placement_t *self = (sn_placement_t *) zmalloc (sizeof (sn_placement_t));
    self->partitions = partitions;
    self->rf = rf;
    self->owner = (int32_t *) malloc (partitions * sizeof (int32_t));
    assert (self->owner);
    for (uint32_t partition = 0; partition < partitions; partition++)
        self->owner[partition] = -1;
    return self;
}

void
sn_placement_destroy (sn_placement_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_placement_t *self = *self_p;
        free (self->members);
        free (self->replica);
        free (self->owner);
        free (self);
        *self_p = NULL;
    }
}

//  A copy of the *kept members that hold replicas, sorted by name; NULL when there are
//  none, and with *valid false when a name is invalid or repeated.
static s_member_t *
s_members_copy (const sn_member_t *members, size_t count, uint32_t *kept, bool *valid)
{
    *kept = 0;
    *valid = true;
    if (count == 0)
        return NULL;
    s_member_t *copy = (s_member_t *) malloc (count * sizeof (s_member_t));
    assert (copy);
    for (size_t index = 0; index < count && *valid; index++) {
        *valid = sn_name_valid (members[index].name);
        snprintf (copy[index].name, sizeof copy[index].name, "%s", members[index].name);
        copy[index].status = members[index].status;
    }
    if (*valid) {
        qsort (copy, count, sizeof (s_member_t), s_member_compare);
        for (size_t index = 1; index < count && *valid; index++)
            *valid = !streq (copy[index - 1].name, copy[index].name);
    }
    if (*valid)
        for (size_t index = 0; index < count; index++)
            if (copy[index].status != SN_MEMBER_LEFT)
                copy[(*kept)++] = copy[index];
    if (!*valid || *kept == 0) {
        free (copy);
        return NULL;
    }
    return copy;
}

//  True when partition's replicas or owner differ between two tables, by name: the
//  member indices of the two tables do not correspond.
static bool
s_partition_differs (sn_placement_t *self, sn_placement_t *other, uint32_t partition)
{
    if (self->replicas != other->replicas)
        return true;
    for (uint32_t index = 0; index < self->replicas; index++)
        if (!streq (sn_placement_replica (self, partition, index),
                    sn_placement_replica (other, partition, index)))
            return true;
    const char *owner = sn_placement_owner (self, partition);
    const char *other_owner = sn_placement_owner (other, partition);
    if (!owner || !other_owner)
        return owner != other_owner;
    return !streq (owner, other_owner);
}

int
sn_placement_update (sn_placement_t *self, const sn_member_t *members, size_t count)
{
    assert (self);
    assert (members || count == 0);
    if (count > SN_MEMBERS_MAX)
        return -1;
    sn_placement_t next = {self->partitions, self->rf, NULL, 0, 0, NULL, NULL};
    bool valid;
    next.members = s_members_copy (members, count, &next.count, &valid);
    if (!valid) {
        zsys_warning ("sn_placement: member list with an invalid or repeated name");
        return -1;
    }
    next.replicas = next.count < self->rf ? next.count : self->rf;
    next.owner = (int32_t *) malloc (self->partitions * sizeof (int32_t));
    assert (next.owner);
    if (next.replicas) {
        next.replica =
            (uint32_t *) malloc ((size_t) self->partitions * self->rf * sizeof (uint32_t));
        assert (next.replica);
    }
    s_rank_t *ranks = next.count ? (s_rank_t *) malloc (next.count * sizeof (s_rank_t)) : NULL;
    for (uint32_t partition = 0; partition < self->partitions; partition++) {
        next.owner[partition] = -1;
        if (next.replicas == 0)
            continue;
        s_rank (next.members, next.count, partition, ranks);
        uint32_t *replica = next.replica + (size_t) partition * self->rf;
        for (uint32_t index = 0; index < next.replicas; index++) {
            replica[index] = ranks[index].index;
            if (next.owner[partition] == -1 &&
                next.members[replica[index]].status != SN_MEMBER_DEAD)
                next.owner[partition] = (int32_t) replica[index];
        }
    }
    free (ranks);

    int changed = 0;
    for (uint32_t partition = 0; partition < self->partitions && !changed; partition++)
        changed = s_partition_differs (self, &next, partition);
    free (self->members);
    free (self->replica);
    free (self->owner);
    self->members = next.members;
    self->count = next.count;
    self->replicas = next.replicas;
    self->replica = next.replica;
    self->owner = next.owner;
    return changed;
}

uint32_t
sn_placement_partitions (sn_placement_t *self)
{
    assert (self);
    return self->partitions;
}

uint32_t
sn_placement_replica_count (sn_placement_t *self)
{
    assert (self);
    return self->replicas;
}

const char *
sn_placement_replica (sn_placement_t *self, uint32_t partition, uint32_t index)
{
    assert (self);
    if (partition >= self->partitions || index >= self->replicas)
        return NULL;
    return self->members[self->replica[(size_t) partition * self->rf + index]].name;
}

bool
sn_placement_holds (sn_placement_t *self, uint32_t partition, const char *name)
{
    assert (self);
    if (!name)
        return false;
    for (uint32_t index = 0; index < self->replicas; index++) {
        const char *replica = sn_placement_replica (self, partition, index);
        if (replica && streq (replica, name))
            return true;
    }
    return false;
}

const char *
sn_placement_owner (sn_placement_t *self, uint32_t partition)
{
    assert (self);
    if (partition >= self->partitions || self->owner[partition] < 0)
        return NULL;
    return self->members[self->owner[partition]].name;
}

//  Ranked on demand: hints are the rare path, and keeping every partition's full order
//  would cost partitions x members of memory.
size_t
sn_placement_handoff (sn_placement_t *self, uint32_t partition, size_t wanted, const char **holders)
{
    assert (self);
    assert (holders || wanted == 0);
    if (partition >= self->partitions || self->count <= self->replicas || wanted == 0)
        return 0;
    s_rank_t *ranks = (s_rank_t *) malloc (self->count * sizeof (s_rank_t));
    assert (ranks);
    s_rank (self->members, self->count, partition, ranks);
    size_t found = 0;
    for (uint32_t rank = self->replicas; rank < self->count && found < wanted; rank++)
        if (self->members[ranks[rank].index].status == SN_MEMBER_ALIVE)
            holders[found++] = self->members[ranks[rank].index].name;
    free (ranks);
    return found;
}

//  A member list for tests: names "n<first>".."n<first + count - 1>", all alive.
static sn_member_t *
s_test_members (size_t count, size_t first)
{
    sn_member_t *members = (sn_member_t *) zmalloc (count * sizeof (sn_member_t));
    for (size_t index = 0; index < count; index++) {
        snprintf (members[index].name, sizeof members[index].name, "n%zu", first + index);
        snprintf (members[index].endpoint, sizeof members[index].endpoint, "tcp://10.0.0.%zu:7501",
                  first + index);
        members[index].status = SN_MEMBER_ALIVE;
    }
    return members;
}

//  How many of a's replicas of partition are not b's.
static uint32_t
s_test_moved (sn_placement_t *a, sn_placement_t *b, uint32_t partition)
{
    uint32_t moved = 0;
    for (uint32_t index = 0; index < sn_placement_replica_count (a); index++)
        if (!sn_placement_holds (b, partition, sn_placement_replica (a, partition, index)))
            moved++;
    return moved;
}

void
sn_placement_test (bool verbose)
{
    //  Empty: no replicas, no owners
    sn_placement_t *placement = sn_placement_new (64, 3);
    assert (sn_placement_partitions (placement) == 64);
    assert (sn_placement_replica_count (placement) == 0);
    assert (sn_placement_owner (placement, 0) == NULL);
    assert (sn_placement_replica (placement, 0, 0) == NULL);
    assert (sn_placement_update (placement, NULL, 0) == 0);

    //  The score encoding is fixed: this value must never change between builds
    byte encoded[] = {0, 0, 0, 17, 'n', '1'};
    assert (s_score (17, "n1") == sn_hash (encoded, sizeof encoded));

    //  RF is capped by the member count, and every member holds every partition
    sn_member_t *members = s_test_members (2, 1);
    assert (sn_placement_update (placement, members, 2) == 1);
    assert (sn_placement_replica_count (placement) == 2);
    for (uint32_t partition = 0; partition < 64; partition++) {
        assert (sn_placement_holds (placement, partition, "n1"));
        assert (sn_placement_holds (placement, partition, "n2"));
        assert (sn_placement_replica (placement, partition, 2) == NULL);
        assert (streq (sn_placement_owner (placement, partition),
                       sn_placement_replica (placement, partition, 0)));
    }
    assert (sn_placement_update (placement, members, 2) == 0);
    assert (sn_placement_replica (placement, 64, 0) == NULL);
    assert (sn_placement_owner (placement, 64) == NULL);
    assert (!sn_placement_holds (placement, 0, NULL));
    free (members);

    //  Determinism: the same members in another order give the same table, as does a
    //  table computed on another node
    members = s_test_members (5, 1);
    assert (sn_placement_update (placement, members, 5) == 1);
    sn_member_t reversed[5];
    for (size_t index = 0; index < 5; index++)
        reversed[index] = members[4 - index];
    sn_placement_t *other = sn_placement_new (64, 3);
    assert (sn_placement_update (other, reversed, 5) == 1);
    for (uint32_t partition = 0; partition < 64; partition++) {
        for (uint32_t index = 0; index < 3; index++)
            assert (streq (sn_placement_replica (placement, partition, index),
                           sn_placement_replica (other, partition, index)));
        assert (streq (sn_placement_owner (placement, partition),
                       sn_placement_owner (other, partition)));
    }
    assert (sn_placement_update (placement, reversed, 5) == 0);

    //  Balance: 192 replicas over 5 members, and ownership spread too
    int held[5] = {0}, owned[5] = {0};
    for (uint32_t partition = 0; partition < 64; partition++) {
        for (uint32_t index = 0; index < 3; index++)
            held[atoi (sn_placement_replica (placement, partition, index) + 1) - 1]++;
        owned[atoi (sn_placement_owner (placement, partition) + 1) - 1]++;
    }
    for (int member = 0; member < 5; member++) {
        if (verbose)
            zsys_info ("sn_placement: n%d holds %d, owns %d", member + 1, held[member],
                       owned[member]);
        assert (held[member] >= 25 && held[member] <= 50);
        assert (owned[member] >= 4 && owned[member] <= 24);
    }

    //  Owner failover: a dead or left first replica hands ownership to the next live
    //  one; a dead one keeps its replicas, a left one does not; a suspect keeps owning
    uint32_t partition = 7;
    const char *first = sn_placement_replica (placement, partition, 0);
    char first_name[SN_NAME_MAX + 1], second_name[SN_NAME_MAX + 1], third_name[SN_NAME_MAX + 1];
    snprintf (first_name, sizeof first_name, "%s", first);
    snprintf (second_name, sizeof second_name, "%s",
              sn_placement_replica (placement, partition, 1));
    snprintf (third_name, sizeof third_name, "%s", sn_placement_replica (placement, partition, 2));
    sn_member_t *first_member = &members[atoi (first_name + 1) - 1];
    sn_member_t *second_member = &members[atoi (second_name + 1) - 1];
    sn_member_t *third_member = &members[atoi (third_name + 1) - 1];

    first_member->status = SN_MEMBER_SUSPECT;
    assert (sn_placement_update (placement, members, 5) == 0);
    assert (streq (sn_placement_owner (placement, partition), first_name));

    first_member->status = SN_MEMBER_DEAD;
    assert (sn_placement_update (placement, members, 5) == 1);
    assert (streq (sn_placement_replica (placement, partition, 0), first_name));
    assert (streq (sn_placement_owner (placement, partition), second_name));
    for (uint32_t each = 0; each < 64; each++)
        assert (!streq (sn_placement_owner (placement, each), first_name));

    second_member->status = SN_MEMBER_DEAD;
    third_member->status = SN_MEMBER_DEAD;
    assert (sn_placement_update (placement, members, 5) == 1);
    assert (sn_placement_owner (placement, partition) == NULL);

    //  Hinted handoff: with all three replicas down, hints go to the two alive
    //  members beyond them, in rendezvous order
    const char *holders[4];
    assert (sn_placement_handoff (placement, partition, 4, holders) == 2);
    assert (!sn_placement_holds (placement, partition, holders[0]));
    assert (!sn_placement_holds (placement, partition, holders[1]));
    assert (!streq (holders[0], holders[1]));
    //  ...ranked: the better-scored holder comes first
    assert (s_score (partition, holders[0]) > s_score (partition, holders[1]) ||
            (s_score (partition, holders[0]) == s_score (partition, holders[1]) &&
             strcmp (holders[0], holders[1]) < 0));
    assert (sn_placement_handoff (placement, partition, 1, holders) == 1);
    assert (sn_placement_handoff (placement, partition, 0, NULL) == 0);
    assert (sn_placement_handoff (placement, 64, 1, holders) == 0);
    //  Dead and suspect members do not take hints
    char holder_name[SN_NAME_MAX + 1];
    snprintf (holder_name, sizeof holder_name, "%s", holders[0]);
    members[atoi (holder_name + 1) - 1].status = SN_MEMBER_SUSPECT;
    assert (sn_placement_update (placement, members, 5) == 0);
    assert (sn_placement_handoff (placement, partition, 4, holders) == 1);
    assert (!streq (holders[0], holder_name));

    //  A member that left holds nothing: the next member in rendezvous order moves up
    for (size_t index = 0; index < 5; index++)
        members[index].status = SN_MEMBER_ALIVE;
    assert (sn_placement_update (placement, members, 5) == 1);
    first_member->status = SN_MEMBER_LEFT;
    assert (sn_placement_update (placement, members, 5) == 1);
    assert (streq (sn_placement_replica (placement, partition, 0), second_name));
    assert (streq (sn_placement_replica (placement, partition, 1), third_name));
    for (uint32_t each = 0; each < 64; each++)
        assert (!sn_placement_holds (placement, each, first_name));
    free (members);

    //  Minimal movement: a 4th member joining 3 moves, per partition, at most the one
    //  replica it takes over
    members = s_test_members (4, 1);
    assert (sn_placement_update (placement, members, 3) == 1);
    assert (sn_placement_update (other, members, 4) == 1);
    int taken = 0;
    for (partition = 0; partition < 64; partition++) {
        uint32_t moved = s_test_moved (placement, other, partition);
        assert (moved <= 1);
        assert (moved == (sn_placement_holds (other, partition, "n4") ? 1 : 0));
        taken += moved;
    }
    if (verbose)
        zsys_info ("sn_placement: a 4th member took %d of 192 replicas", taken);
    assert (taken >= 32 && taken <= 64);
    free (members);

    //  ...and in a larger cluster, only the partitions the newcomer enters move
    members = s_test_members (9, 1);
    assert (sn_placement_update (placement, members, 8) == 1);
    assert (sn_placement_update (other, members, 9) == 1);
    for (partition = 0; partition < 64; partition++) {
        uint32_t moved = s_test_moved (placement, other, partition);
        assert (moved <= 1);
        assert (moved == (sn_placement_holds (other, partition, "n9") ? 1 : 0));
    }

    //  Invalid or repeated names are refused and leave the table as it was
    snprintf (members[3].name, sizeof members[3].name, "n1");
    assert (sn_placement_update (other, members, 9) == -1);
    snprintf (members[3].name, sizeof members[3].name, "bad name");
    assert (sn_placement_update (other, members, 9) == -1);
    assert (sn_placement_update (other, members, SN_MEMBERS_MAX + 1) == -1);
    assert (sn_placement_replica_count (other) == 3);
    for (partition = 0; partition < 64; partition++)
        assert (s_test_moved (placement, other, partition) ==
                (sn_placement_holds (other, partition, "n9") ? 1 : 0));
    free (members);

    //  Everyone gone: an empty table again
    members = s_test_members (3, 1);
    for (size_t index = 0; index < 3; index++)
        members[index].status = SN_MEMBER_LEFT;
    assert (sn_placement_update (other, members, 3) == 1);
    assert (sn_placement_replica_count (other) == 0);
    assert (sn_placement_owner (other, 0) == NULL);
    free (members);

    //  Works with a sn_members table as input
    sn_members_t *table = sn_members_new ("n1", "tcp://127.0.0.1:7501", 0);
    sn_members_apply (table, "n2", "tcp://127.0.0.1:7502", 0, SN_MEMBER_ALIVE, 0);
    size_t count;
    const sn_member_t *list = sn_members_list (table, &count);
    sn_placement_t *small = sn_placement_new (1, 1);
    assert (sn_placement_update (small, list, count) == 1);
    assert (sn_placement_replica_count (small) == 1);
    assert (sn_placement_owner (small, 0));
    sn_placement_destroy (&small);
    sn_members_destroy (&table);

    sn_placement_destroy (&other);
    sn_placement_destroy (&placement);
    sn_placement_destroy (&placement);
}
