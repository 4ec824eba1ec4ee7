/*  sn_members: the member table of the mesh and its failure detector.
 */
#include "sn_members.h"

struct _sn_members_t {
    sn_member_t *members; //  records sorted by name, so lookups bisect and lists are stable
    size_t count;         //  records in use
    size_t capacity;      //  records allocated
    char self_name[SN_NAME_MAX + 1]; //  which record is this node
    uint64_t version;                //  changes so far, see sn_members_version
};

static const char *s_status_names[] = {"alive", "suspect", "dead", "left"};

//  An endpoint is a ZeroMQ address: printable, no spaces, with a transport.
static bool
s_endpoint_valid (const char *endpoint)
{
    if (!endpoint)
        return false;
    size_t len = strlen (endpoint);
    if (len == 0 || len > SN_ENDPOINT_MAX || !strstr (endpoint, "://"))
        return false;
    for (size_t i = 0; i < len; i++)
        if (endpoint[i] <= ' ' || endpoint[i] > '~')
            return false;
    return true;
}

//  The index of name, or of where it would go (with *found false).
static size_t
s_find (sn_members_t *self, const char *name, bool *found)
{
    *found = false;
    if (!name)
        return self->count;
    size_t low = 0, high = self->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int order = strcmp (self->members[middle].name, name);
        if (order == 0) {
            *found = true;
            return middle;
        }
        if (order < 0)
            low = middle + 1;
        else
            high = middle;
    }
    *found = false;
    return low;
}

static sn_member_t *
s_lookup (sn_members_t *self, const char *name)
{
    bool found;
    size_t index = s_find (self, name, &found);
    return found ? &self->members[index] : NULL;
}

//  Insert a fresh record at its sorted place; NULL when the table is full.
static sn_member_t *
s_insert (sn_members_t *self, const char *name)
{
    bool found;
    size_t index = s_find (self, name, &found);
    assert (!found);
    if (self->count == SN_MEMBERS_MAX)
        return NULL;
    if (self->count == self->capacity) {
        size_t capacity = self->capacity ? self->capacity * 2 : 8;
        if (capacity > SN_MEMBERS_MAX)
            capacity = SN_MEMBERS_MAX;
        sn_member_t *members =
            (sn_member_t *) realloc (self->members, capacity * sizeof (sn_member_t));
        assert (members);
        self->members = members;
        self->capacity = capacity;
    }
    memmove (&self->members[index + 1], &self->members[index],
             (self->count - index) * sizeof (sn_member_t));
    self->count++;
    sn_member_t *member = &self->members[index];
    memset (member, 0, sizeof (sn_member_t));
    snprintf (member->name, sizeof member->name, "%s", name);
    return member;
}

//  True when (incarnation, status) is news over what the record holds.
static bool
s_supersedes (const sn_member_t *member, uint64_t incarnation, int status)
{
    if (incarnation != member->incarnation)
        return incarnation > member->incarnation;
    return status > (int) member->status;
}

sn_members_t *
sn_members_new (const char *self_name, const char *self_endpoint, uint64_t incarnation)
{
    if (!sn_name_valid (self_name) || !s_endpoint_valid (self_endpoint) ||
        incarnation == UINT64_MAX)
        return NULL;
    sn_members_t *self = (sn_members_t *) zmalloc (sizeof (sn_members_t));
    snprintf (self->self_name, sizeof self->self_name, "%s", self_name);
    sn_member_t *member = s_insert (self, self_name);
    snprintf (member->endpoint, sizeof member->endpoint, "%s", self_endpoint);
    member->incarnation = incarnation;
    member->status = SN_MEMBER_ALIVE;
    return self;
}

void
sn_members_destroy (sn_members_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_members_t *self = *self_p;
        free (self->members);
        free (self);
        *self_p = NULL;
    }
}

//  Gossip about self is the rest of the cluster's opinion of this node. Anything above
//  our incarnation, or at it but saying other than "alive here", would spread and
//  override us, so we answer it with a higher incarnation. After leaving we let it be.
static int
s_apply_self (sn_members_t *self, const char *endpoint, uint64_t incarnation, int status,
              int64_t now)
{
    sn_member_t *member = s_lookup (self, self->self_name);
    if (member->status == SN_MEMBER_LEFT)
        return SN_MEMBERS_UNCHANGED;
    if (incarnation < member->incarnation ||
        (incarnation == member->incarnation && status == SN_MEMBER_ALIVE &&
         streq (endpoint, member->endpoint)))
        return SN_MEMBERS_UNCHANGED;
    member->incarnation = incarnation + 1;
    member->changed_at = now;
    self->version++;
    return SN_MEMBERS_REFUTED;
}

int
sn_members_apply (sn_members_t *self, const char *name, const char *endpoint, uint64_t incarnation,
                  int status, int64_t now)
{
    assert (self);
    if (!sn_name_valid (name) || !s_endpoint_valid (endpoint) || status < SN_MEMBER_ALIVE ||
        status > SN_MEMBER_LEFT || incarnation == UINT64_MAX)
        return -1;
    if (streq (name, self->self_name))
        return s_apply_self (self, endpoint, incarnation, status, now);

    sn_member_t *member = s_lookup (self, name);
    if (member) {
        if (!s_supersedes (member, incarnation, status))
            return SN_MEMBERS_UNCHANGED;
    }
    else {
        member = s_insert (self, name);
        if (!member) {
            zsys_warning ("sn_members: table full, ignoring member '%s'", name);
            return -1;
        }
        member->heard_at = now;
    }
    //  Back from suspicion or the dead: a full period before the detector judges it
    if (status == SN_MEMBER_ALIVE && member->status != SN_MEMBER_ALIVE)
        member->heard_at = now;
    snprintf (member->endpoint, sizeof member->endpoint, "%s", endpoint);
    member->incarnation = incarnation;
    member->status = (sn_member_status_t) status;
    member->changed_at = now;
    self->version++;
    return SN_MEMBERS_CHANGED;
}

int
sn_members_heard (sn_members_t *self, const char *name, int64_t now)
{
    assert (self);
    if (!sn_name_valid (name))
        return -1;
    sn_member_t *member = s_lookup (self, name);
    if (!member)
        return -1;
    if (now > member->heard_at)
        member->heard_at = now;
    return 0;
}

int
sn_members_tick (sn_members_t *self, int64_t now, int64_t suspect_after, int64_t dead_after)
{
    assert (self);
    int changes = 0;
    for (size_t index = 0; index < self->count; index++) {
        sn_member_t *member = &self->members[index];
        if (streq (member->name, self->self_name))
            continue;
        if (member->status == SN_MEMBER_ALIVE && now - member->heard_at >= suspect_after)
            member->status = SN_MEMBER_SUSPECT;
        else if (member->status == SN_MEMBER_SUSPECT && now - member->changed_at >= dead_after)
            member->status = SN_MEMBER_DEAD;
        else
            continue;
        member->changed_at = now;
        self->version++;
        changes++;
    }
    return changes;
}

void
sn_members_leave (sn_members_t *self, int64_t now)
{
    assert (self);
    sn_member_t *member = s_lookup (self, self->self_name);
    if (member->status != SN_MEMBER_LEFT) {
        member->status = SN_MEMBER_LEFT;
        member->changed_at = now;
        self->version++;
    }
}

const sn_member_t *
sn_members_self (sn_members_t *self)
{
    assert (self);
    return s_lookup (self, self->self_name);
}

const sn_member_t *
sn_members_lookup (sn_members_t *self, const char *name)
{
    assert (self);
    return sn_name_valid (name) ? s_lookup (self, name) : NULL;
}

const sn_member_t *
sn_members_list (sn_members_t *self, size_t *count)
{
    assert (self);
    assert (count);
    *count = self->count;
    return self->members;
}

uint64_t
sn_members_version (sn_members_t *self)
{
    assert (self);
    return self->version;
}

const char *
sn_members_status_name (int status)
{
    if (status < SN_MEMBER_ALIVE || status > SN_MEMBER_LEFT)
        return "unknown";
    return s_status_names[status];
}

int
sn_members_status_parse (const char *name)
{
    if (name)
        for (int status = SN_MEMBER_ALIVE; status <= SN_MEMBER_LEFT; status++)
            if (streq (name, s_status_names[status]))
                return status;
    return -1;
}

void
sn_members_test (bool verbose)
{
    const char *ep = "tcp://127.0.0.1:7501";
    sn_members_t *members = sn_members_new ("n1", "tcp://127.0.0.1:7601", 10);
    assert (members);
    const sn_member_t *me = sn_members_self (members);
    assert (streq (me->name, "n1") && me->incarnation == 10 && me->status == SN_MEMBER_ALIVE);
    assert (streq (me->endpoint, "tcp://127.0.0.1:7601"));
    size_t count;
    sn_members_list (members, &count);
    assert (count == 1);

    //  Invalid self is refused, not asserted
    assert (!sn_members_new ("bad name", ep, 0));
    assert (!sn_members_new (NULL, ep, 0));
    assert (!sn_members_new ("n1", NULL, 0));
    assert (!sn_members_new ("n1", "no-transport", 0));
    assert (!sn_members_new ("n1", ep, UINT64_MAX));

    //  Unknown members are added; the same news twice is no news
    uint64_t version = sn_members_version (members);
    assert (sn_members_apply (members, "n3", ep, 1, SN_MEMBER_ALIVE, 100) == SN_MEMBERS_CHANGED);
    assert (sn_members_apply (members, "n2", ep, 1, SN_MEMBER_ALIVE, 100) == SN_MEMBERS_CHANGED);
    assert (sn_members_apply (members, "n2", ep, 1, SN_MEMBER_ALIVE, 150) == SN_MEMBERS_UNCHANGED);
    assert (sn_members_version (members) == version + 2);
    const sn_member_t *list = sn_members_list (members, &count);
    assert (count == 3);
    assert (streq (list[0].name, "n1") && streq (list[1].name, "n2") && streq (list[2].name, "n3"));
    assert (list[1].heard_at == 100 && list[1].changed_at == 100);

    //  alive(i) overrides alive and suspect only at a higher incarnation
    assert (sn_members_apply (members, "n2", ep, 2, SN_MEMBER_ALIVE, 200) == SN_MEMBERS_CHANGED);
    assert (sn_members_apply (members, "n2", ep, 1, SN_MEMBER_ALIVE, 200) == SN_MEMBERS_UNCHANGED);
    assert (sn_members_apply (members, "n2", ep, 2, SN_MEMBER_SUSPECT, 210) == SN_MEMBERS_CHANGED);
    assert (sn_members_lookup (members, "n2")->status == SN_MEMBER_SUSPECT);
    assert (sn_members_apply (members, "n2", ep, 2, SN_MEMBER_ALIVE, 220) == SN_MEMBERS_UNCHANGED);
    assert (sn_members_lookup (members, "n2")->status == SN_MEMBER_SUSPECT);
    assert (sn_members_apply (members, "n2", ep, 3, SN_MEMBER_ALIVE, 230) == SN_MEMBERS_CHANGED);
    assert (sn_members_lookup (members, "n2")->status == SN_MEMBER_ALIVE);
    assert (sn_members_lookup (members, "n2")->heard_at == 230);

    //  suspect(i) overrides alive(j <= i) and suspect(j < i), nothing else
    assert (sn_members_apply (members, "n2", ep, 2, SN_MEMBER_SUSPECT, 240) ==
            SN_MEMBERS_UNCHANGED);
    assert (sn_members_apply (members, "n2", ep, 4, SN_MEMBER_SUSPECT, 240) == SN_MEMBERS_CHANGED);
    assert (sn_members_lookup (members, "n2")->incarnation == 4);
    assert (sn_members_apply (members, "n2", ep, 4, SN_MEMBER_SUSPECT, 250) ==
            SN_MEMBERS_UNCHANGED);
    assert (sn_members_apply (members, "n2", ep, 5, SN_MEMBER_SUSPECT, 250) == SN_MEMBERS_CHANGED);
    assert (sn_members_lookup (members, "n2")->changed_at == 250);

    //  dead(i) overrides alive and suspect at any incarnation <= i
    assert (sn_members_apply (members, "n2", ep, 4, SN_MEMBER_DEAD, 260) == SN_MEMBERS_UNCHANGED);
    assert (sn_members_apply (members, "n2", ep, 5, SN_MEMBER_DEAD, 260) == SN_MEMBERS_CHANGED);
    assert (sn_members_apply (members, "n2", ep, 5, SN_MEMBER_SUSPECT, 270) ==
            SN_MEMBERS_UNCHANGED);
    assert (sn_members_apply (members, "n2", ep, 5, SN_MEMBER_ALIVE, 270) == SN_MEMBERS_UNCHANGED);
    assert (sn_members_apply (members, "n3", ep, 7, SN_MEMBER_DEAD, 270) == SN_MEMBERS_CHANGED);
    assert (sn_members_lookup (members, "n3")->status == SN_MEMBER_DEAD);
    //  A dead member comes back only with a higher incarnation, at a new endpoint if it
    //  restarted elsewhere
    assert (sn_members_apply (members, "n2", "tcp://10.0.0.2:7501", 6, SN_MEMBER_ALIVE, 280) ==
            SN_MEMBERS_CHANGED);
    const sn_member_t *n2 = sn_members_lookup (members, "n2");
    assert (n2->status == SN_MEMBER_ALIVE && n2->incarnation == 6);
    assert (streq (n2->endpoint, "tcp://10.0.0.2:7501"));
    //  Stale news does not move the endpoint back
    assert (sn_members_apply (members, "n2", ep, 5, SN_MEMBER_ALIVE, 290) == SN_MEMBERS_UNCHANGED);
    assert (streq (sn_members_lookup (members, "n2")->endpoint, "tcp://10.0.0.2:7501"));

    //  left is final for its incarnation; a rejoin comes with a higher one
    assert (sn_members_apply (members, "n2", ep, 6, SN_MEMBER_LEFT, 300) == SN_MEMBERS_CHANGED);
    assert (sn_members_apply (members, "n2", ep, 6, SN_MEMBER_ALIVE, 310) == SN_MEMBERS_UNCHANGED);
    assert (sn_members_apply (members, "n2", ep, 6, SN_MEMBER_DEAD, 310) == SN_MEMBERS_UNCHANGED);
    assert (sn_members_apply (members, "n2", ep, 6, SN_MEMBER_SUSPECT, 310) ==
            SN_MEMBERS_UNCHANGED);
    assert (sn_members_lookup (members, "n2")->status == SN_MEMBER_LEFT);
    assert (sn_members_apply (members, "n2", ep, 7, SN_MEMBER_ALIVE, 320) == SN_MEMBERS_CHANGED);
    assert (sn_members_lookup (members, "n2")->status == SN_MEMBER_ALIVE);
    //  Members first heard of as dead or left are kept as tombstones
    assert (sn_members_apply (members, "n4", ep, 2, SN_MEMBER_LEFT, 330) == SN_MEMBERS_CHANGED);
    assert (sn_members_apply (members, "n4", ep, 1, SN_MEMBER_ALIVE, 330) == SN_MEMBERS_UNCHANGED);
    assert (sn_members_lookup (members, "n4")->status == SN_MEMBER_LEFT);

    //  Doubt about self is refuted with a higher incarnation; self stays alive
    assert (sn_members_apply (members, "n1", ep, 9, SN_MEMBER_DEAD, 400) == SN_MEMBERS_UNCHANGED);
    assert (sn_members_apply (members, "n1", "tcp://127.0.0.1:7601", 10, SN_MEMBER_ALIVE, 400) ==
            SN_MEMBERS_UNCHANGED);
    version = sn_members_version (members);
    assert (sn_members_apply (members, "n1", ep, 10, SN_MEMBER_SUSPECT, 400) == SN_MEMBERS_REFUTED);
    me = sn_members_self (members);
    assert (me->incarnation == 11 && me->status == SN_MEMBER_ALIVE);
    assert (streq (me->endpoint, "tcp://127.0.0.1:7601"));
    assert (sn_members_version (members) == version + 1);
    assert (sn_members_apply (members, "n1", ep, 20, SN_MEMBER_DEAD, 410) == SN_MEMBERS_REFUTED);
    assert (sn_members_self (members)->incarnation == 21);
    assert (sn_members_apply (members, "n1", ep, 21, SN_MEMBER_LEFT, 420) == SN_MEMBERS_REFUTED);
    assert (sn_members_self (members)->incarnation == 22);
    //  Someone else claiming our name at our incarnation is answered too
    assert (sn_members_apply (members, "n1", ep, 22, SN_MEMBER_ALIVE, 430) == SN_MEMBERS_REFUTED);
    assert (sn_members_self (members)->incarnation == 23);
    assert (sn_members_self (members)->status == SN_MEMBER_ALIVE);

    //  Heartbeats refresh heard_at and nothing else
    assert (sn_members_heard (members, "n9", 500) == -1);
    assert (sn_members_heard (members, "bad name", 500) == -1);
    assert (sn_members_heard (members, NULL, 500) == -1);
    version = sn_members_version (members);
    assert (sn_members_heard (members, "n2", 1000) == 0);
    assert (sn_members_lookup (members, "n2")->heard_at == 1000);
    assert (sn_members_version (members) == version);

    //  Failure detector: n2 heard at 1000, n3 dead, n4 left, self never judged
    assert (sn_members_tick (members, 1999, 1000, 3000) == 0);
    assert (sn_members_tick (members, 2000, 1000, 3000) == 1);
    n2 = sn_members_lookup (members, "n2");
    assert (n2->status == SN_MEMBER_SUSPECT && n2->incarnation == 7 && n2->changed_at == 2000);
    //  A suspect that keeps talking but does not refute still dies
    assert (sn_members_heard (members, "n2", 3000) == 0);
    assert (sn_members_tick (members, 4999, 1000, 3000) == 0);
    assert (sn_members_lookup (members, "n2")->status == SN_MEMBER_SUSPECT);
    assert (sn_members_tick (members, 5000, 1000, 3000) == 1);
    assert (sn_members_lookup (members, "n2")->status == SN_MEMBER_DEAD);
    assert (sn_members_tick (members, 90000, 1000, 3000) == 0);
    assert (sn_members_lookup (members, "n3")->status == SN_MEMBER_DEAD);
    assert (sn_members_lookup (members, "n4")->status == SN_MEMBER_LEFT);
    assert (sn_members_self (members)->status == SN_MEMBER_ALIVE);

    //  Its refutation brings it back with a fresh period of grace
    assert (sn_members_apply (members, "n2", ep, 8, SN_MEMBER_ALIVE, 90000) == SN_MEMBERS_CHANGED);
    assert (sn_members_tick (members, 90999, 1000, 3000) == 0);
    assert (sn_members_tick (members, 91000, 1000, 3000) == 1);
    assert (sn_members_lookup (members, "n2")->status == SN_MEMBER_SUSPECT);
    assert (sn_members_apply (members, "n2", ep, 9, SN_MEMBER_ALIVE, 91500) == SN_MEMBERS_CHANGED);
    assert (sn_members_lookup (members, "n2")->status == SN_MEMBER_ALIVE);

    //  Garbage from peers is refused and changes nothing
    version = sn_members_version (members);
    sn_members_list (members, &count);
    assert (sn_members_apply (members, NULL, ep, 1, SN_MEMBER_ALIVE, 0) == -1);
    assert (sn_members_apply (members, "", ep, 1, SN_MEMBER_ALIVE, 0) == -1);
    assert (sn_members_apply (members, "a b", ep, 1, SN_MEMBER_ALIVE, 0) == -1);
    assert (sn_members_apply (members, "-x", ep, 1, SN_MEMBER_ALIVE, 0) == -1);
    assert (sn_members_apply (members, "n5", NULL, 1, SN_MEMBER_ALIVE, 0) == -1);
    assert (sn_members_apply (members, "n5", "", 1, SN_MEMBER_ALIVE, 0) == -1);
    assert (sn_members_apply (members, "n5", "tcp://a b:1", 1, SN_MEMBER_ALIVE, 0) == -1);
    assert (sn_members_apply (members, "n5", ep, 1, 4, 0) == -1);
    assert (sn_members_apply (members, "n5", ep, 1, -1, 0) == -1);
    assert (sn_members_apply (members, "n5", ep, UINT64_MAX, SN_MEMBER_ALIVE, 0) == -1);
    assert (sn_members_apply (members, "n1", ep, UINT64_MAX, SN_MEMBER_DEAD, 0) == -1);
    char longname[SN_NAME_MAX + 2];
    memset (longname, 'a', sizeof longname - 1);
    longname[SN_NAME_MAX + 1] = 0;
    assert (sn_members_apply (members, longname, ep, 1, SN_MEMBER_ALIVE, 0) == -1);
    char longendpoint[SN_ENDPOINT_MAX + 2];
    memset (longendpoint, 'a', sizeof longendpoint - 1);
    memcpy (longendpoint, "tcp://", 6);
    longendpoint[SN_ENDPOINT_MAX + 1] = 0;
    assert (sn_members_apply (members, "n5", longendpoint, 1, SN_MEMBER_ALIVE, 0) == -1);
    longendpoint[SN_ENDPOINT_MAX] = 0;
    assert (sn_members_apply (members, "n5", longendpoint, 1, SN_MEMBER_ALIVE, 0) ==
            SN_MEMBERS_CHANGED);
    assert (sn_members_lookup (members, NULL) == NULL);
    assert (sn_members_lookup (members, "nobody") == NULL);
    assert (sn_members_version (members) == version + 1);

    //  The table is bounded: a flood of names cannot grow it without end
    char name[SN_NAME_MAX + 1];
    sn_members_list (members, &count);
    for (size_t index = count; index < SN_MEMBERS_MAX; index++) {
        snprintf (name, sizeof name, "m%04zu", index);
        assert (sn_members_apply (members, name, ep, 0, SN_MEMBER_ALIVE, 0) == SN_MEMBERS_CHANGED);
    }
    assert (sn_members_apply (members, "overflow", ep, 0, SN_MEMBER_ALIVE, 0) == -1);
    assert (sn_members_apply (members, "n2", ep, 10, SN_MEMBER_ALIVE, 0) == SN_MEMBERS_CHANGED);
    list = sn_members_list (members, &count);
    assert (count == SN_MEMBERS_MAX);
    for (size_t index = 1; index < count; index++)
        assert (strcmp (list[index - 1].name, list[index].name) < 0);

    //  Goodbye: self is left and stays so, whatever peers say
    sn_members_leave (members, 100000);
    me = sn_members_self (members);
    assert (me->status == SN_MEMBER_LEFT && me->incarnation == 23 && me->changed_at == 100000);
    assert (sn_members_apply (members, "n1", ep, 30, SN_MEMBER_DEAD, 100001) ==
            SN_MEMBERS_UNCHANGED);
    assert (sn_members_tick (members, 200000, 1000, 3000) > 0);
    me = sn_members_self (members);
    assert (me->status == SN_MEMBER_LEFT);
    //  Its peers take the goodbye as final for that incarnation
    sn_members_t *peer = sn_members_new ("n2", ep, 0);
    assert (sn_members_apply (peer, me->name, me->endpoint, me->incarnation, me->status, 5) ==
            SN_MEMBERS_CHANGED);
    assert (sn_members_apply (peer, "n1", me->endpoint, 23, SN_MEMBER_ALIVE, 6) ==
            SN_MEMBERS_UNCHANGED);
    assert (sn_members_lookup (peer, "n1")->status == SN_MEMBER_LEFT);
    sn_members_destroy (&peer);

    assert (streq (sn_members_status_name (SN_MEMBER_SUSPECT), "suspect"));
    assert (streq (sn_members_status_name (9), "unknown"));
    assert (sn_members_status_parse ("left") == SN_MEMBER_LEFT);
    assert (sn_members_status_parse ("alive") == SN_MEMBER_ALIVE);
    assert (sn_members_status_parse ("zombie") == -1);
    assert (sn_members_status_parse (NULL) == -1);

    if (verbose)
        zsys_info ("sn_members: %zu members, version %" PRIu64, count,
                   sn_members_version (members));
    sn_members_destroy (&members);
    sn_members_destroy (&members);
}
