/*  sn_owners: partitions owned by this node, from the mesh's placement feed.
 */
#include "sn_owners.h"
#include "sn_key.h"

//  Requests held while no placement has arrived yet, and how long each may wait.
#define S_HELD_MAX  10000
#define S_HELD_WAIT 5000

//  Largest placement frame read from the feed.
#define S_PLACEMENT_MAX (16 * 1024 * 1024)

//  Ops whose forwards may wait longer than a write.
#define S_WAITS_MAX 4

//  A takeover whose replay failed is tried again after this long, doubling up to
//  S_RETRY_MAX.
#define S_RETRY_FIRST 1000
#define S_RETRY_MAX   10000

//  Re-reads of a partition are spaced from S_RETRY_FIRST doubling up to this (ms):
//  a replica that is reachable but never merged (it answers scans with errors)
//  costs one re-read every few minutes, not a storm
#define S_REREAD_MAX 300000

//  A request held until the first placement.
typedef struct {
    sn_routed_t *request; //  the request, owned
    int64_t until;        //  unix ms when it is answered 503 instead
} s_held_t;

struct _sn_owners_t {
    uint32_t partitions; //  P
    bool *owned;         //  per partition: this node owns it
    bool ready;          //  a placement has arrived (always, without a feed)
    zsock_t *feed;       //  SUB to the mesh's placement feed, or NULL
    zsock_t *mesh;       //  DEALER to the mesh's ops, for forwards, or NULL
    zlistx_t *held;      //  s_held_t waiting for the first placement, oldest first
    sn_pack_t *pack;     //  scratch for forwards and answers
    char *name;          //  this node's name in the last placement, or NULL
    zlist_t *members;    //  names reachable in the last placement (char *, owned)
    struct {
        char op[32];      //  a request op, or "" for a free slot
        uint32_t ms;      //  how long its forward may wait
    } waits[S_WAITS_MAX]; //  ops slower than a write, for their forwards
    int64_t *retry_at;    //  per partition: unix ms its replay is tried again, or INT64_MAX
    uint32_t *backoff;    //  per partition: ms waited before that try (0: replayed)
    int64_t next_retry;   //  the earliest retry_at
    zhashx_t **read;      //  per partition: replicas the replays of it read whole, or NULL
    zhashx_t **reading;   //  per partition: replicas merged on every page so far, or NULL
    bool *rereading;      //  per partition: a re-read of it is under way
    int64_t *reread_at;   //  per partition: unix ms it is read again, or INT64_MAX
    uint32_t *reread_gap; //  per partition: ms between its re-reads now (0: none lately)
    int64_t *reread_ok;   //  per partition: unix ms before which it is not read again
    uint64_t rereads;     //  re-reads begun
    sn_msg_t *placed;     //  replica lists of the latest placement, or NULL before one
};

static void
s_held_free (void **item_p)
{
    s_held_t *held = (s_held_t *) *item_p;
    if (held) {
        if (held->request) {
            sn_routed_close (held->request);
            free (held->request);
        }
        free (held);
        *item_p = NULL;
    }
}

sn_owners_t *
sn_owners_new (const char *feed, const char *mesh, uint32_t partitions)
{
    assert (partitions > 0);
    sn_owners_t *self = (sn_owners_t *) zmalloc (sizeof (sn_owners_t));
    self->partitions = partitions;
    self->owned = (bool *) zmalloc (partitions * sizeof (bool));
    self->retry_at = (int64_t *) zmalloc (partitions * sizeof (int64_t));
    self->backoff = (uint32_t *) zmalloc (partitions * sizeof (uint32_t));
    self->read = (zhashx_t **) zmalloc (partitions * sizeof (zhashx_t *));
    self->reading = (zhashx_t **) zmalloc (partitions * sizeof (zhashx_t *));
    self->rereading = (bool *) zmalloc (partitions * sizeof (bool));
    self->reread_at = (int64_t *) zmalloc (partitions * sizeof (int64_t));
    self->reread_gap = (uint32_t *) zmalloc (partitions * sizeof (uint32_t));
    self->reread_ok = (int64_t *) zmalloc (partitions * sizeof (int64_t));
    for (uint32_t p = 0; p < partitions; p++) {
        self->retry_at[p] = INT64_MAX;
        self->reread_at[p] = INT64_MAX;
    }
    self->next_retry = INT64_MAX;
    self->held = zlistx_new ();
    zlistx_set_destructor (self->held, s_held_free);
    self->pack = sn_pack_new ();
    self->members = zlist_new ();
    zlist_autofree (self->members);
    if (!feed) {
        for (uint32_t p = 0; p < partitions; p++)
            self->owned[p] = true;
        self->ready = true;
        return self;
    }
    self->feed = zsock_new (ZMQ_SUB);
    zsock_set_rcvhwm (self->feed, 1000);
    zsock_set_subscribe (self->feed, "");
    self->mesh = zsock_new (ZMQ_DEALER);
    zsock_set_sndhwm (self->mesh, 100000);
    zsock_set_rcvhwm (self->mesh, 100000);
    zsock_set_sndtimeo (self->mesh, 0);
    zsock_set_linger (self->mesh, 0);
    if (zsock_connect (self->feed, "%s", feed) == -1 || !mesh ||
        zsock_connect (self->mesh, "%s", mesh) == -1)
        sn_owners_destroy (&self);
    return self;
}

void
sn_owners_destroy (sn_owners_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_owners_t *self = *self_p;
        zlistx_destroy (&self->held);
        zsock_destroy (&self->feed);
        zsock_destroy (&self->mesh);
        sn_pack_destroy (&self->pack);
        zlist_destroy (&self->members);
        free (self->name);
        free (self->owned);
        free (self->retry_at);
        free (self->backoff);
        for (uint32_t p = 0; p < self->partitions; p++) {
            zhashx_destroy (&self->read[p]);
            zhashx_destroy (&self->reading[p]);
        }
        free (self->read);
        free (self->reading);
        free (self->rereading);
        free (self->reread_at);
        free (self->reread_gap);
        free (self->reread_ok);
        sn_msg_destroy (&self->placed);
        free (self);
        *self_p = NULL;
    }
}

zsock_t *
sn_owners_feed (sn_owners_t *self)
{
    return self->feed;
}

zsock_t *
sn_owners_mesh (sn_owners_t *self)
{
    return self->mesh;
}

static void s_reread_forget (sn_owners_t *self, uint32_t p);
static void s_read_keep (sn_owners_t *self, uint32_t p);

//  No try of partition p's replay is due (backoff: whether p is still being taken
//  over).
static void
s_retry_clear (sn_owners_t *self, uint32_t p, uint32_t backoff)
{
    self->backoff[p] = backoff;
    self->retry_at[p] = INT64_MAX;
    self->next_retry = INT64_MAX;
    for (uint32_t other = 0; other < self->partitions; other++)
        if (self->retry_at[other] < self->next_retry)
            self->next_retry = self->retry_at[other];
}

//  Apply one placement frame; returns the changes, or 0 when it is not one.
static size_t
s_apply (sn_owners_t *self, const byte *data, size_t size, bool *gained, bool *lost)
{
    const char *reason = NULL;
    sn_msg_t *msg = sn_msg_decode (data, size, S_PLACEMENT_MAX, &reason);
    const sn_value_t *root = msg ? sn_msg_root (msg) : NULL;
    size_t name_len = 0;
    const char *name = sn_value_str (sn_value_get (root, "self"), &name_len);
    const sn_value_t *owners = sn_value_get (root, "owners");
    size_t changes = 0;
    if (msg && sn_value_streq (sn_value_get (root, "op"), "placement") && name &&
        sn_value_is (owners, SN_TYPE_ARRAY) && sn_value_size (owners) == self->partitions) {
        for (uint32_t p = 0; p < self->partitions; p++) {
            size_t len = 0;
            const char *owner = sn_value_str (sn_value_at (owners, p), &len);
            bool owns = owner && len == name_len && memcmp (owner, name, len) == 0;
            if (owns != self->owned[p]) {
                self->owned[p] = owns;
                gained[p] = owns;
                lost[p] = !owns;
                changes++;
                //  Gone, or come: either way no earlier replay of it is tried again
                if (self->backoff[p])
                    s_retry_clear (self, p, 0);
                s_reread_forget (self, p);
            }
        }
        self->ready = true;
        sn_owners_reread_check (self, root);
        free (self->name);
        self->name = strndup (name, name_len);
        zlist_purge (self->members);
        const sn_value_t *members = sn_value_get (root, "members");
        for (size_t index = 0; index < sn_value_size (members); index++) {
            char *member = sn_value_strdup (sn_value_at (members, index));
            if (member)
                zlist_append (self->members, member);
            free (member);
        }
    }
    sn_msg_destroy (&msg);
    return changes;
}

size_t
sn_owners_recv (sn_owners_t *self, bool *gained, bool *lost)
{
    memset (gained, 0, self->partitions * sizeof (bool));
    memset (lost, 0, self->partitions * sizeof (bool));
    if (!self->feed)
        return 0;
    size_t changes = 0;
    zframe_t *frame;
    while ((frame = zframe_recv_nowait (self->feed))) {
        changes += s_apply (self, zframe_data (frame), zframe_size (frame), gained, lost);
        zframe_destroy (&frame);
    }
    return changes;
}

bool
sn_owners_owns (sn_owners_t *self, uint32_t p)
{
    return p < self->partitions && self->owned[p];
}

int64_t
sn_owners_id_partition (sn_owners_t *self, const char *id, size_t len)
{
    //  "<hex>-<p>": the partition is in the name
    size_t at = len;
    while (at > 0 && isdigit ((unsigned char) id[at - 1]))
        at--;
    if (at < 2 || at == len || id[at - 1] != '-' || len - at > 9)
        return -1;
    uint64_t p = 0;
    for (size_t index = at; index < len; index++)
        p = p * 10 + (uint64_t) (id[index] - '0');
    return p < self->partitions ? (int64_t) p : -1;
}

int64_t
sn_owners_partition (sn_owners_t *self, const sn_value_t *root)
{
    size_t len = 0;
    const char *id = sn_value_str (sn_value_get (root, "id"), &len);
    if (id)
        return sn_owners_id_partition (self, id, len);
    const sn_value_t *bucket = sn_value_get (root, "bucket_id");
    if (!bucket)
        return sn_partition ("primary", 7, self->partitions);
    const char *name = sn_value_str (bucket, &len);
    return name ? (int64_t) sn_partition (name, len, self->partitions) : -1;
}

//  Answer request with an error and release it.
static void
s_answer (sn_owners_t *self, sn_routed_t *request, uint64_t rid, zsock_t *router, const char *text)
{
    sn_pack_error (self->pack, rid, 503, "%s", text);
    sn_routed_set_payload (request, sn_pack_data (self->pack), sn_pack_size (self->pack));
    if (sn_routed_send (request, router))
        sn_routed_close (request);
    free (request);
}

bool
sn_owners_route (sn_owners_t *self, sn_routed_t *request, const sn_value_t *root, int64_t p,
                 zsock_t *router)
{
    if (p < 0 || p >= self->partitions || (self->owned[p] && !self->backoff[p]))
        return false;
    uint64_t rid = 0, hops = 0;
    sn_value_uint (sn_value_get (root, "rid"), &rid);
    sn_value_uint (sn_value_get (root, "fwd"), &hops);
    char text[128];
    if (self->owned[p]) {
        snprintf (text, sizeof text, "partition %" PRId64 " is being taken over here, try again",
                  p);
        s_answer (self, request, rid, router, text);
    }
    else if (hops >= 1) {
        //  The mesh thought this node the owner; it is not (yet, or any more)
        snprintf (text, sizeof text, "ownership of partition %" PRId64 " is moving, try again", p);
        s_answer (self, request, rid, router, text);
    }
    else if (!self->ready) {
        if (zlistx_size (self->held) < S_HELD_MAX) {
            s_held_t *held = (s_held_t *) zmalloc (sizeof (s_held_t));
            held->request = request;
            held->until = zclock_time () + S_HELD_WAIT;
            zlistx_add_end (self->held, held);
        }
        else
            s_answer (self, request, rid, router, "cluster not ready: no partition table yet");
    }
    else {
        //  Under the caller's envelope and rid: the mesh's answer is the caller's
        uint32_t wait = 0;
        const sn_value_t *op = sn_value_get (root, "op");
        for (size_t index = 0; index < S_WAITS_MAX && !wait; index++)
            if (self->waits[index].op[0] && sn_value_streq (op, self->waits[index].op))
                wait = self->waits[index].ms;
        sn_pack_reset (self->pack);
        sn_pack_map (self->pack, wait ? 5 : 4);
        sn_pack_kv_str (self->pack, "op", "forward");
        sn_pack_kv_uint (self->pack, "rid", rid);
        sn_pack_kv_uint (self->pack, "p", (uint64_t) p);
        if (wait)
            sn_pack_kv_uint (self->pack, "timeout", wait);
        sn_pack_str (self->pack, "request");
        sn_pack_raw (self->pack, sn_routed_data (request), sn_routed_size (request));
        sn_routed_set_payload (request, sn_pack_data (self->pack), sn_pack_size (self->pack));
        if (sn_routed_send (request, self->mesh) == 0)
            free (request);
        else
            s_answer (self, request, rid, router, "node is busy: cannot forward to the owner");
    }
    return true;
}

int
sn_owners_set_wait (sn_owners_t *self, const char *op, uint32_t ms)
{
    for (size_t index = 0; index < S_WAITS_MAX; index++)
        if (!self->waits[index].op[0] && strlen (op) < sizeof self->waits[index].op) {
            snprintf (self->waits[index].op, sizeof self->waits[index].op, "%s", op);
            self->waits[index].ms = ms;
            return 0;
        }
    return -1;
}

void
sn_owners_relay (sn_owners_t *self, zsock_t *router)
{
    if (!self->mesh)
        return;
    sn_routed_t answer;
    memset (&answer, 0, sizeof answer);
    while (sn_routed_recv (&answer, self->mesh) == 0)
        if (sn_routed_send (&answer, router))
            sn_routed_close (&answer);
}

sn_routed_t *
sn_owners_release (sn_owners_t *self, zsock_t *router)
{
    int64_t now = zclock_time ();
    s_held_t *held;
    while ((held = (s_held_t *) zlistx_first (self->held))) {
        if (self->ready) {
            sn_routed_t *request = held->request;
            held->request = NULL;
            zlistx_delete (self->held, zlistx_cursor (self->held));
            return request;
        }
        if (held->until > now)
            break;
        sn_routed_t *request = held->request;
        held->request = NULL;
        zlistx_delete (self->held, zlistx_cursor (self->held));
        const char *reason = NULL;
        sn_msg_t *msg =
            sn_msg_decode_trusted (sn_routed_data (request), sn_routed_size (request), &reason);
        uint64_t rid = 0;
        if (msg)
            sn_value_uint (sn_value_get (sn_msg_root (msg), "rid"), &rid);
        sn_msg_destroy (&msg);
        s_answer (self, request, rid, router, "cluster not ready: no partition table yet");
    }
    return NULL;
}

int64_t
sn_owners_deadline (sn_owners_t *self)
{
    s_held_t *held = (s_held_t *) zlistx_first (self->held);
    if (!held)
        return INT64_MAX;
    return self->ready ? zclock_time () : held->until;
}

int64_t
sn_owners_replay_failed (sn_owners_t *self, uint32_t p)
{
    assert (p < self->partitions);
    zhashx_destroy (&self->reading[p]);
    //  A partition owned elsewhere (a REPLAY asked on the pipe) is its owner's to
    //  replay: tried again here, it would load state served elsewhere
    if (!self->owned[p])
        return INT64_MAX;
    uint32_t backoff = self->backoff[p] ? self->backoff[p] * 2 : S_RETRY_FIRST;
    self->backoff[p] = backoff < S_RETRY_MAX ? backoff : S_RETRY_MAX;
    self->retry_at[p] = zclock_time () + self->backoff[p];
    if (self->retry_at[p] < self->next_retry)
        self->next_retry = self->retry_at[p];
    return self->retry_at[p];
}

void
sn_owners_replayed (sn_owners_t *self, uint32_t p)
{
    assert (p < self->partitions);
    if (self->backoff[p])
        s_retry_clear (self, p, 0);
    s_read_keep (self, p);
}

bool
sn_owners_taking_over (sn_owners_t *self, uint32_t p)
{
    return p < self->partitions && self->owned[p] && self->backoff[p];
}

int64_t
sn_owners_replay_due (sn_owners_t *self, int64_t now)
{
    if (self->next_retry > now)
        return -1;
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->retry_at[p] <= now) {
            //  Due once: the replay's outcome sets the next try, or ends them
            s_retry_clear (self, p, self->backoff[p]);
            return p;
        }
    return -1;
}

int64_t
sn_owners_replay_at (sn_owners_t *self)
{
    return self->next_retry;
}

const char *
sn_owners_name (sn_owners_t *self)
{
    return self->name;
}

zlist_t *
sn_owners_members (sn_owners_t *self)
{
    return self->members;
}

//  --------------------------------------------------------------------------
//  Re-reads: what a replay did not read

//  Longest replica list and merged list taken from a placement or a scan reply.
#define S_NAMES_MAX 64

//  Partition p is not read again: not owned, or taken over anew.
static void
s_reread_forget (sn_owners_t *self, uint32_t p)
{
    zhashx_destroy (&self->read[p]);
    zhashx_destroy (&self->reading[p]);
    self->rereading[p] = false;
    self->reread_at[p] = INT64_MAX;
    self->reread_gap[p] = 0;
    self->reread_ok[p] = 0;
}

//  Whether name is one of the entries of the replica list.
static bool
s_listed (const sn_value_t *list, const char *name)
{
    size_t name_len = strlen (name);
    for (size_t index = 0; index < sn_value_size (list) && index < S_NAMES_MAX; index++) {
        size_t len = 0;
        const char *entry = sn_value_str (sn_value_at (list, index), &len);
        if (entry && len == name_len && memcmp (entry, name, len) == 0)
            return true;
    }
    return false;
}

//  The replicas read drop those the replica list no longer holds.
static void
s_read_prune (zhashx_t *read, const sn_value_t *list)
{
    zlistx_t *names = zhashx_keys (read);
    for (const char *name = (const char *) zlistx_first (names); name;
         name = (const char *) zlistx_next (names))
        if (!s_listed (list, name))
            zhashx_delete (read, name);
    zlistx_destroy (&names);
}

void
sn_owners_reread_check (sn_owners_t *self, const sn_value_t *root)
{
    size_t name_len = 0;
    const char *name = sn_value_str (sn_value_get (root, "self"), &name_len);
    const sn_value_t *owners = sn_value_get (root, "owners");
    const sn_value_t *replicas = sn_value_get (root, "replicas");
    const sn_value_t *members = sn_value_get (root, "members");
    if (!name || sn_value_size (owners) != self->partitions)
        return;
    //  Kept whole for sn_owners_reread_complete, which counts the read quorum
    //  against the replicas named now, not at the re-read's start. Copied only
    //  when the lists differ from those kept: every heartbeat repeats them, and
    //  comparing the values is safe whatever the mesh's version numbers do
    if (!self->placed || !sn_value_equal (sn_msg_root (self->placed), replicas)) {
        sn_pack_reset (self->pack);
        sn_pack_value (self->pack, replicas);
        sn_msg_destroy (&self->placed);
        self->placed =
            sn_msg_decode_trusted (sn_pack_data (self->pack), sn_pack_size (self->pack), NULL);
        assert (self->placed);
        sn_pack_reset (self->pack);
    }
    zhashx_t *reachable = zhashx_new ();
    for (size_t index = 0; index < sn_value_size (members); index++) {
        char *member = sn_value_strdup (sn_value_at (members, index));
        if (member && strlen (member) <= SN_NAME_MAX)
            zhashx_update (reachable, member, (void *) "");
        free (member);
    }
    int64_t now = zclock_time ();
    for (uint32_t p = 0; p < self->partitions; p++) {
        size_t len = 0;
        const char *owner = sn_value_str (sn_value_at (owners, p), &len);
        if (!owner || len != name_len || memcmp (owner, name, len)) {
            s_reread_forget (self, p);
            continue;
        }
        //  Not replayed yet (or failed, being taken over): its replay reads them all
        if (!self->read[p])
            continue;
        const sn_value_t *list = sn_value_at (replicas, p);
        //  A replica read that left p's list is no longer asked for: the read
        //  quorum covers the writes made under the list as it is now
        if (sn_value_is (list, SN_TYPE_ARRAY))
            s_read_prune (self->read[p], list);
        if (self->rereading[p])
            continue;
        bool missed = false;
        for (size_t index = 0; index < sn_value_size (list) && index < S_NAMES_MAX && !missed;
             index++) {
            size_t replica_len = 0;
            const char *replica = sn_value_str (sn_value_at (list, index), &replica_len);
            if (!replica || replica_len > SN_NAME_MAX)
                continue;
            char text[SN_NAME_MAX + 1];
            memcpy (text, replica, replica_len);
            text[replica_len] = 0;
            missed = zhashx_lookup (reachable, text) && !zhashx_lookup (self->read[p], text);
        }
        //  Read whole: a replica that leaves and comes back is not read again. The
        //  spacing is kept: only a re-read that reads a replica more resets it, so
        //  one that never merges gets no fresh start each time it flaps
        if (!missed)
            self->reread_at[p] = INT64_MAX;
        else if (self->reread_at[p] == INT64_MAX)
            self->reread_at[p] = self->reread_ok[p] > now ? self->reread_ok[p] : now;
    }
    zhashx_destroy (&reachable);
}

int64_t
sn_owners_reread_due (sn_owners_t *self, int64_t now)
{
    for (uint32_t p = 0; p < self->partitions; p++)
        //  One being taken over is replayed whole by its takeover
        if (self->reread_at[p] <= now && !self->rereading[p] && !self->backoff[p]) {
            //  The next one waits longer, until one reads every replica reachable
            self->reread_gap[p] = self->reread_gap[p] ? self->reread_gap[p] * 2 : S_RETRY_FIRST;
            if (self->reread_gap[p] > S_REREAD_MAX)
                self->reread_gap[p] = S_REREAD_MAX;
            self->reread_ok[p] = now + self->reread_gap[p];
            self->reread_at[p] = INT64_MAX;
            self->rereading[p] = true;
            self->rereads++;
            sn_owners_scan_begin (self, p);
            return p;
        }
    return -1;
}

int64_t
sn_owners_reread_at (sn_owners_t *self)
{
    int64_t at = INT64_MAX;
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->reread_at[p] < at && !self->rereading[p] && !self->backoff[p])
            at = self->reread_at[p];
    return at;
}

bool
sn_owners_rereading (sn_owners_t *self, uint32_t p)
{
    return p < self->partitions && self->rereading[p];
}

void
sn_owners_reread_failed (sn_owners_t *self, uint32_t p)
{
    if (p >= self->partitions)
        return;
    zhashx_destroy (&self->reading[p]);
    self->rereading[p] = false;
}

int
sn_owners_reread_soon (sn_owners_t *self, uint32_t p)
{
    if (p >= self->partitions)
        return -1;
    if (!self->rereading[p])
        self->reread_at[p] = zclock_time ();
    return 0;
}

//  How many of p's replicas in the latest placement were merged on every page of
//  p's scan so far, and how many make a read quorum (the minimum that overlaps
//  every write quorum). The mesh acknowledges a QUORUM write once replicas / 2 + 1
//  of p's n replicas hold it (peers/sn_mesh.c s_level_need), so any n - (n / 2 +
//  1) + 1 of them, (n + 1) / 2, include one that holds it: with n = 2 this
//  node's store alone, as every such write is on both. A name merged that the list
//  does not hold counts for nothing; an entry that is no name, or a name listed
//  twice, counts as a replica not read: a malformed list makes the quorum harder
//  to meet, never easier, and an empty one cannot be met. Before any placement (no
//  mesh) this node's store is the only one.
static bool
s_quorum_read (sn_owners_t *self, uint32_t p, size_t *merged_p, size_t *replicas_p)
{
    *merged_p = *replicas_p = 0;
    if (!self->placed)
        return true;
    const sn_value_t *list = sn_value_at (sn_msg_root (self->placed), p);
    size_t replicas = sn_value_is (list, SN_TYPE_ARRAY) ? sn_value_size (list) : 0;
    zhashx_t *counted = zhashx_new ();
    for (size_t index = 0; index < replicas && index < S_NAMES_MAX; index++) {
        size_t len = 0;
        const char *name = sn_value_str (sn_value_at (list, index), &len);
        if (!name || len == 0 || len > SN_NAME_MAX)
            continue;
        char text[SN_NAME_MAX + 1];
        memcpy (text, name, len);
        text[len] = 0;
        if (zhashx_lookup (self->reading[p], text))
            zhashx_update (counted, text, (void *) "");
    }
    *merged_p = zhashx_size (counted);
    *replicas_p = replicas;
    zhashx_destroy (&counted);
    return replicas > 0 && *merged_p >= replicas - (replicas / 2 + 1) + 1;
}

bool
sn_owners_reread_complete (sn_owners_t *self, uint32_t p, char *why, size_t size)
{
    char ignored[1];
    if (!why) {
        why = ignored;
        size = sizeof ignored;
    }
    if (p >= self->partitions || !self->rereading[p] || !self->reading[p]) {
        snprintf (why, size, "no re-read of it has scanned a page");
        return false;
    }
    if (self->read[p])
        for (void *item = zhashx_first (self->read[p]); item; item = zhashx_next (self->read[p]))
            if (!zhashx_lookup (self->reading[p], zhashx_cursor (self->read[p]))) {
                snprintf (why, size, "replica %s read before was not merged on every page",
                          (const char *) zhashx_cursor (self->read[p]));
                return false;
            }
    size_t merged, replicas;
    if (!s_quorum_read (self, p, &merged, &replicas)) {
        snprintf (why, size, "lacks a read quorum (%zu of %zu replicas merged on every page)",
                  merged, replicas);
        return false;
    }
    return true;
}

uint64_t
sn_owners_rereads (sn_owners_t *self)
{
    return self->rereads;
}

void
sn_owners_scan_begin (sn_owners_t *self, uint32_t p)
{
    if (p < self->partitions)
        zhashx_destroy (&self->reading[p]);
}

void
sn_owners_scan_page (sn_owners_t *self, uint32_t p, const sn_value_t *reply)
{
    if (p >= self->partitions)
        return;
    const sn_value_t *merged = sn_value_get (reply, "merged");
    zhashx_t *kept = zhashx_new ();
    for (size_t index = 0; index < sn_value_size (merged) && index < S_NAMES_MAX; index++) {
        size_t len = 0;
        const char *name = sn_value_str (sn_value_at (merged, index), &len);
        if (!name || len == 0 || len > SN_NAME_MAX)
            continue;
        char text[SN_NAME_MAX + 1];
        memcpy (text, name, len);
        text[len] = 0;
        //  A replica counts as read when its page joined every page of the scan
        if (!self->reading[p] || zhashx_lookup (self->reading[p], text))
            zhashx_update (kept, text, (void *) "");
    }
    zhashx_destroy (&self->reading[p]);
    self->reading[p] = kept;
}

//  What the replay of p read joins what earlier ones read: their events are held.
static void
s_read_keep (sn_owners_t *self, uint32_t p)
{
    if (!self->reading[p])
        return;
    if (!self->read[p])
        self->read[p] = zhashx_new ();
    bool more = false;
    for (void *item = zhashx_first (self->reading[p]); item; item = zhashx_next (self->reading[p]))
        if (!zhashx_lookup (self->read[p], zhashx_cursor (self->reading[p]))) {
            zhashx_insert (self->read[p], zhashx_cursor (self->reading[p]), (void *) "");
            more = true;
        }
    if (more) {
        self->reread_gap[p] = 0;
        self->reread_ok[p] = 0;
    }
    zhashx_destroy (&self->reading[p]);
    self->rereading[p] = false;
}

//  --------------------------------------------------------------------------
//  Selftest

static void
s_test_publish (zsock_t *pub, const char *self_name, const char *const *owners, uint32_t count)
{
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 5);
    sn_pack_kv_str (pack, "op", "placement");
    sn_pack_kv_str (pack, "self", self_name);
    sn_pack_str (pack, "members");
    sn_pack_array (pack, 2);
    sn_pack_str (pack, self_name);
    sn_pack_str (pack, "b");
    sn_pack_kv_uint (pack, "version", 1);
    sn_pack_str (pack, "owners");
    sn_pack_array (pack, count);
    for (uint32_t p = 0; p < count; p++)
        if (owners[p])
            sn_pack_str (pack, owners[p]);
        else
            sn_pack_nil (pack);
    zframe_t *frame = sn_pack_frame (pack);
    zframe_send (&frame, pub, 0);
    sn_pack_destroy (&pack);
}

//  A request [link id, payload {op, rid, bucket_id?, fwd?}] as a frontend sends it.
static sn_routed_t *
s_test_request (zsock_t *client, zsock_t *router, const char *bucket, uint64_t rid, uint64_t hops)
{
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 3 + (hops > 0));
    sn_pack_kv_str (pack, "op", "batch.get");
    sn_pack_kv_uint (pack, "rid", rid);
    sn_pack_kv_str (pack, "bucket_id", bucket);
    if (hops)
        sn_pack_kv_uint (pack, "fwd", hops);
    zframe_t *frame = sn_pack_frame (pack);
    zframe_send (&frame, client, 0);
    sn_pack_destroy (&pack);
    zsock_set_rcvtimeo (router, 2000);
    sn_routed_t *request = (sn_routed_t *) zmalloc (sizeof (sn_routed_t));
    zpoller_t *poller = zpoller_new (router, NULL);
    assert (zpoller_wait (poller, 2000) == router);
    zpoller_destroy (&poller);
    assert (sn_routed_recv (request, router) == 0);
    return request;
}

static uint64_t
s_test_code (zsock_t *client, uint64_t rid)
{
    zsock_set_rcvtimeo (client, 2000);
    zframe_t *frame = zframe_recv (client);
    assert (frame);
    sn_msg_t *msg = sn_msg_decode_trusted (zframe_data (frame), zframe_size (frame), NULL);
    uint64_t code = 0, got = 0;
    assert (sn_value_uint (sn_value_get (sn_msg_root (msg), "code"), &code));
    assert (sn_value_uint (sn_value_get (sn_msg_root (msg), "rid"), &got) && got == rid);
    sn_msg_destroy (&msg);
    zframe_destroy (&frame);
    return code;
}

//  A placement for the re-read bookkeeping: "a" owns every partition, each with
//  replicas a, b, c; members reachable.
static sn_msg_t *
s_test_placement (const char *members)
{
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 5);
    sn_pack_kv_str (pack, "op", "placement");
    sn_pack_kv_str (pack, "self", "a");
    sn_pack_str (pack, "owners");
    sn_pack_array (pack, 2);
    sn_pack_str (pack, "a");
    sn_pack_str (pack, "a");
    sn_pack_str (pack, "replicas");
    sn_pack_array (pack, 2);
    for (int p = 0; p < 2; p++) {
        sn_pack_array (pack, 3);
        sn_pack_str (pack, "a");
        sn_pack_str (pack, "b");
        sn_pack_str (pack, "c");
    }
    sn_pack_str (pack, "members");
    sn_pack_array (pack, (uint32_t) strlen (members));
    for (const char *name = members; *name; name++)
        sn_pack_strn (pack, name, 1);
    sn_msg_t *msg = sn_msg_decode_trusted (sn_pack_data (pack), sn_pack_size (pack), NULL);
    sn_pack_destroy (&pack);
    return msg;
}

//  A scan page's reply {code, merged: [names]}; merged NULL packs a malformed one.
static sn_msg_t *
s_test_page (const char *merged)
{
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 2);
    sn_pack_kv_uint (pack, "code", 200);
    sn_pack_str (pack, "merged");
    if (merged) {
        sn_pack_array (pack, (uint32_t) strlen (merged));
        for (const char *name = merged; *name; name++)
            sn_pack_strn (pack, name, 1);
    }
    else {
        //  Not names: a number, an empty name, a name too long
        sn_pack_array (pack, 3);
        sn_pack_uint (pack, 7);
        sn_pack_str (pack, "");
        char longer[SN_NAME_MAX + 2];
        memset (longer, 'x', sizeof longer - 1);
        longer[sizeof longer - 1] = 0;
        sn_pack_str (pack, longer);
    }
    sn_msg_t *msg = sn_msg_decode_trusted (sn_pack_data (pack), sn_pack_size (pack), NULL);
    sn_pack_destroy (&pack);
    return msg;
}

//  Replay p with pages whose merged lists are given.
static void
s_test_replay (sn_owners_t *owners, uint32_t p, const char *const *pages)
{
    sn_owners_scan_begin (owners, p);
    for (int index = 0; pages[index]; index++) {
        sn_msg_t *page = s_test_page (streq (pages[index], "?") ? NULL : pages[index]);
        sn_owners_scan_page (owners, p, sn_msg_root (page));
        sn_msg_destroy (&page);
    }
    sn_owners_replayed (owners, p);
}

static void
s_test_placed (sn_owners_t *owners, const char *members)
{
    sn_msg_t *msg = s_test_placement (members);
    sn_owners_reread_check (owners, sn_msg_root (msg));
    sn_msg_destroy (&msg);
}

static void
s_test_rereads (void)
{
    sn_owners_t *owners = sn_owners_new (NULL, NULL, 2);
    //  Placed alone, replayed alone: nothing to read again while b and c are away
    s_test_placed (owners, "a");
    assert (sn_owners_reread_at (owners) == INT64_MAX);
    s_test_replay (owners, 0, (const char *[]){"a", "a", NULL});
    s_test_replay (owners, 1, (const char *[]){"ab", "ab", NULL});
    s_test_placed (owners, "a");
    assert (sn_owners_reread_at (owners) == INT64_MAX && sn_owners_rereads (owners) == 0);
    //  b comes: partition 0 did not read it, 1 did
    s_test_placed (owners, "ab");
    int64_t now = zclock_time ();
    assert (sn_owners_reread_at (owners) <= now);
    assert (sn_owners_reread_due (owners, now) == 0);
    assert (sn_owners_rereading (owners, 0) && !sn_owners_rereading (owners, 1));
    assert (sn_owners_reread_due (owners, now) == -1 && sn_owners_rereads (owners) == 1);
    //  A re-read that missed b on one page did not read it: read again, 1 s later.
    //  It read a, every replica read before: complete. One that left a out is not
    assert (!sn_owners_reread_complete (owners, 0, NULL, 0));
    sn_owners_scan_begin (owners, 0);
    sn_msg_t *first = s_test_page ("b");
    sn_owners_scan_page (owners, 0, sn_msg_root (first));
    assert (!sn_owners_reread_complete (owners, 0, NULL, 0));
    sn_msg_destroy (&first);
    first = s_test_page ("ab");
    sn_owners_scan_begin (owners, 0);
    sn_owners_scan_page (owners, 0, sn_msg_root (first));
    assert (sn_owners_reread_complete (owners, 0, NULL, 0) &&
            !sn_owners_reread_complete (owners, 1, NULL, 0));
    sn_msg_destroy (&first);
    s_test_replay (owners, 0, (const char *[]){"ab", "a", "ab", NULL});
    assert (!sn_owners_rereading (owners, 0));
    s_test_placed (owners, "ab");
    int64_t at = sn_owners_reread_at (owners);
    assert (at >= now + 1000 && at <= zclock_time () + 1000);
    assert (sn_owners_reread_due (owners, at - 1) == -1);
    assert (sn_owners_reread_due (owners, at) == 0);
    //  One that fails keeps nothing, and waits longer; a malformed merged list
    //  reads nothing
    sn_owners_reread_failed (owners, 0);
    s_test_placed (owners, "ab");
    int64_t later = sn_owners_reread_at (owners);
    assert (later >= at + 2000);
    assert (sn_owners_reread_due (owners, later) == 0);
    s_test_replay (owners, 0, (const char *[]){"?", NULL});
    s_test_placed (owners, "ab");
    assert (sn_owners_reread_at (owners) >= later + 4000);
    //  The gap stops doubling at 5 min; a replica that flaps meanwhile does not
    //  shorten it
    for (int round = 0; round < 8; round++) {
        int64_t due = sn_owners_reread_at (owners);
        assert (sn_owners_reread_due (owners, due) == 0);
        sn_owners_reread_failed (owners, 0);
        s_test_placed (owners, "a");
        s_test_placed (owners, "ab");
        assert (sn_owners_reread_at (owners) <= due + 300000);
        assert (sn_owners_reread_at (owners) >= due + (round < 6 ? 8000 << round : 300000));
    }
    //  Read whole: b and c leaving and coming back cause no re-read
    int64_t due = sn_owners_reread_at (owners);
    assert (sn_owners_reread_due (owners, due) == 0);
    s_test_replay (owners, 0, (const char *[]){"ab", "ab", NULL});
    uint64_t rereads = sn_owners_rereads (owners);
    for (int round = 0; round < 5; round++) {
        s_test_placed (owners, "a");
        s_test_placed (owners, "ab");
        assert (sn_owners_reread_at (owners) == INT64_MAX);
    }
    assert (sn_owners_rereads (owners) == rereads);
    //  c comes: both partitions missed it; the gap was reset by the whole read
    s_test_placed (owners, "abc");
    now = zclock_time ();
    assert (sn_owners_reread_at (owners) <= now);
    assert (sn_owners_reread_due (owners, now) == 0);
    assert (sn_owners_reread_due (owners, now) == 1);
    s_test_replay (owners, 0, (const char *[]){"abc", NULL});
    s_test_replay (owners, 1, (const char *[]){"ac", NULL});
    s_test_placed (owners, "abc");
    assert (sn_owners_reread_at (owners) == INT64_MAX);
    //  A partition owned elsewhere forgets what was read: owned again, its takeover
    //  replay reads anew
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 4);
    sn_pack_kv_str (pack, "op", "placement");
    sn_pack_kv_str (pack, "self", "a");
    sn_pack_str (pack, "owners");
    sn_pack_array (pack, 2);
    sn_pack_str (pack, "b");
    sn_pack_nil (pack);
    sn_pack_str (pack, "members");
    sn_pack_array (pack, 1);
    sn_pack_str (pack, "a");
    sn_msg_t *msg = sn_msg_decode_trusted (sn_pack_data (pack), sn_pack_size (pack), NULL);
    sn_owners_reread_check (owners, sn_msg_root (msg));
    sn_msg_destroy (&msg);
    sn_pack_destroy (&pack);
    s_test_placed (owners, "abc");
    assert (sn_owners_reread_at (owners) == INT64_MAX);
    //  A placement without replicas or members, or not for these partitions, is
    //  ignored
    pack = sn_pack_new ();
    sn_pack_map (pack, 2);
    sn_pack_kv_str (pack, "self", "a");
    sn_pack_kv_str (pack, "owners", "a");
    msg = sn_msg_decode_trusted (sn_pack_data (pack), sn_pack_size (pack), NULL);
    sn_owners_reread_check (owners, sn_msg_root (msg));
    sn_owners_reread_check (owners, NULL);
    sn_msg_destroy (&msg);
    sn_pack_destroy (&pack);
    sn_owners_destroy (&owners);
}

//  A placement where "a" owns both partitions, each with the replicas list names
//  (a letter each, '-' for an entry that is no name), members reachable.
static void
s_test_listed (sn_owners_t *owners, const char *list, const char *members)
{
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 5);
    sn_pack_kv_str (pack, "op", "placement");
    sn_pack_kv_str (pack, "self", "a");
    sn_pack_str (pack, "owners");
    sn_pack_array (pack, 2);
    sn_pack_str (pack, "a");
    sn_pack_str (pack, "a");
    sn_pack_str (pack, "replicas");
    sn_pack_array (pack, 2);
    for (int p = 0; p < 2; p++) {
        sn_pack_array (pack, (uint32_t) strlen (list));
        for (const char *name = list; *name; name++)
            if (*name == '-')
                sn_pack_nil (pack);
            else
                sn_pack_strn (pack, name, 1);
    }
    sn_pack_str (pack, "members");
    sn_pack_array (pack, (uint32_t) strlen (members));
    for (const char *name = members; *name; name++)
        sn_pack_strn (pack, name, 1);
    sn_msg_t *msg = sn_msg_decode_trusted (sn_pack_data (pack), sn_pack_size (pack), NULL);
    sn_owners_reread_check (owners, sn_msg_root (msg));
    sn_msg_destroy (&msg);
    sn_pack_destroy (&pack);
}

//  Whether the re-read of p under way, scanned anew with pages whose merged lists
//  are given, is complete.
static bool
s_test_complete (sn_owners_t *owners, uint32_t p, const char *const *pages)
{
    assert (sn_owners_rereading (owners, p));
    sn_owners_scan_begin (owners, p);
    for (int index = 0; pages[index]; index++) {
        sn_msg_t *page = s_test_page (pages[index]);
        sn_owners_scan_page (owners, p, sn_msg_root (page));
        sn_msg_destroy (&page);
    }
    return sn_owners_reread_complete (owners, p, NULL, 0);
}

//  A re-read is complete only when the replicas merged on every page are a read
//  quorum of the replicas the latest placement names.
static void
s_test_quorum (void)
{
    sn_owners_t *owners = sn_owners_new (NULL, NULL, 2);
    //  No placement (no mesh): this node's store alone, as ever
    assert (sn_owners_reread_soon (owners, 0) == 0);
    assert (sn_owners_reread_due (owners, zclock_time ()) == 0);
    assert (s_test_complete (owners, 0, (const char *[]){"a", NULL}));
    assert (s_test_complete (owners, 0, (const char *[]){"", NULL}));
    sn_owners_reread_failed (owners, 0);

    //  RF 1: its own store is the quorum
    s_test_listed (owners, "a", "ab");
    s_test_replay (owners, 0, (const char *[]){"a", NULL});
    assert (sn_owners_reread_soon (owners, 0) == 0);
    assert (sn_owners_reread_due (owners, zclock_time ()) == 0);
    assert (s_test_complete (owners, 0, (const char *[]){"a", "a", NULL}));
    assert (s_test_complete (owners, 0, (const char *[]){"ab", NULL}));
    assert (!s_test_complete (owners, 0, (const char *[]){"b", NULL}));
    sn_owners_reread_failed (owners, 0);
    sn_owners_destroy (&owners);

    //  RF 3, replayed alone: b comes, the partition is read again
    owners = sn_owners_new (NULL, NULL, 2);
    s_test_listed (owners, "a", "a");
    s_test_replay (owners, 0, (const char *[]){"a", "a", NULL});
    s_test_listed (owners, "abc", "ab");
    int64_t now = zclock_time ();
    assert (sn_owners_reread_due (owners, now) == 0);
    //  Its own store alone read everything read before, but is one of three
    assert (!s_test_complete (owners, 0, (const char *[]){"a", "a", NULL}));
    //  With one other replica on every page: two of three
    assert (s_test_complete (owners, 0, (const char *[]){"ab", "ab", NULL}));
    assert (s_test_complete (owners, 0, (const char *[]){"ac", NULL}));
    assert (s_test_complete (owners, 0, (const char *[]){"abc", "abc", NULL}));
    //  Without its own store, b and c are a quorum, but a was read before
    assert (!s_test_complete (owners, 0, (const char *[]){"bc", NULL}));
    //  Names that are no replica of p count for nothing
    assert (!s_test_complete (owners, 0, (const char *[]){"ax", NULL}));
    assert (!s_test_complete (owners, 0, (const char *[]){"axyz", "axyz", NULL}));
    //  A replica counts only when merged on every page: each page below holds two
    //  of three, but only a is on all of them
    assert (!s_test_complete (owners, 0, (const char *[]){"abc", "ab", "ac", NULL}));
    assert (!s_test_complete (owners, 0, (const char *[]){"ab", "a", "ab", NULL}));
    assert (s_test_complete (owners, 0, (const char *[]){"abc", "abc", "ab", NULL}));
    //  The placement at the time of asking counts: b pushed out of p's list makes
    //  the same pages short of a quorum, b back makes them one again
    s_test_listed (owners, "acd", "abcd");
    assert (!s_test_complete (owners, 0, (const char *[]){"ab", NULL}));
    assert (s_test_complete (owners, 0, (const char *[]){"abd", NULL}));
    s_test_listed (owners, "abc", "ab");
    assert (s_test_complete (owners, 0, (const char *[]){"ab", NULL}));
    //  Fewer replicas than RF (two members): either is a quorum, as every QUORUM
    //  write is on both; b alone still lacks a, read before
    s_test_listed (owners, "ab", "ab");
    assert (s_test_complete (owners, 0, (const char *[]){"a", NULL}));
    assert (!s_test_complete (owners, 0, (const char *[]){"b", NULL}));
    assert (s_test_complete (owners, 0, (const char *[]){"ab", NULL}));
    //  The fewest that overlap a write quorum of n / 2 + 1: 2 of 4, 3 of 5
    s_test_listed (owners, "abcd", "abcd");
    assert (s_test_complete (owners, 0, (const char *[]){"ad", NULL}));
    assert (!s_test_complete (owners, 0, (const char *[]){"a", NULL}));
    s_test_listed (owners, "abcde", "abcde");
    assert (!s_test_complete (owners, 0, (const char *[]){"abx", NULL}));
    assert (s_test_complete (owners, 0, (const char *[]){"abe", NULL}));
    //  An entry that is no name, or a name listed twice, is a replica not read
    s_test_listed (owners, "a-c", "abc");
    assert (!s_test_complete (owners, 0, (const char *[]){"ab", NULL}));
    assert (s_test_complete (owners, 0, (const char *[]){"ac", NULL}));
    s_test_listed (owners, "aab", "ab");
    assert (!s_test_complete (owners, 0, (const char *[]){"a", NULL}));
    assert (s_test_complete (owners, 0, (const char *[]){"ab", NULL}));
    //  An empty list: no quorum can be shown
    s_test_listed (owners, "", "ab");
    assert (!s_test_complete (owners, 0, (const char *[]){"ab", NULL}));

    //  One short of a quorum is discarded and read again no sooner than the
    //  spacing says: 1 s, then 2 s; the partition stays served meanwhile
    s_test_listed (owners, "abc", "ab");
    assert (!s_test_complete (owners, 0, (const char *[]){"a", NULL}));
    sn_owners_reread_failed (owners, 0);
    assert (sn_owners_owns (owners, 0) && !sn_owners_taking_over (owners, 0));
    s_test_listed (owners, "abc", "ab");
    int64_t at = sn_owners_reread_at (owners);
    assert (at >= now + 1000);
    assert (sn_owners_reread_due (owners, at - 1) == -1);
    assert (sn_owners_reread_due (owners, at) == 0);
    assert (!s_test_complete (owners, 0, (const char *[]){"a", NULL}));
    sn_owners_reread_failed (owners, 0);
    s_test_listed (owners, "abc", "ab");
    assert (sn_owners_reread_at (owners) >= at + 2000);
    //  Complete once b is merged: adopted, and b is not read again
    assert (sn_owners_reread_due (owners, sn_owners_reread_at (owners)) == 0);
    assert (s_test_complete (owners, 0, (const char *[]){"ab", NULL}));
    sn_owners_replayed (owners, 0);
    s_test_listed (owners, "abc", "ab");
    assert (sn_owners_reread_at (owners) == INT64_MAX);
    sn_owners_destroy (&owners);

    //  Read a, b and c; c leaves p's list for d. A replica read that left the list
    //  is no longer asked for: a re-read of a, b and d is complete, and so is one
    //  of a quorum of the list without c
    owners = sn_owners_new (NULL, NULL, 2);
    s_test_listed (owners, "abc", "abc");
    s_test_replay (owners, 0, (const char *[]){"abc", "abc", NULL});
    s_test_listed (owners, "abd", "abd");
    assert (sn_owners_reread_due (owners, zclock_time ()) == 0);
    assert (s_test_complete (owners, 0, (const char *[]){"abd", "abd", NULL}));
    assert (s_test_complete (owners, 0, (const char *[]){"ab", NULL}));
    //  b, read before and still listed, is asked for
    assert (!s_test_complete (owners, 0, (const char *[]){"ad", NULL}));
    char why[128];
    assert (!sn_owners_reread_complete (owners, 0, why, sizeof why));
    assert (streq (why, "replica b read before was not merged on every page"));
    assert (!s_test_complete (owners, 0, (const char *[]){"a", "ab", NULL}));
    assert (!sn_owners_reread_complete (owners, 0, why, sizeof why));
    assert (streq (why, "replica b read before was not merged on every page"));
    sn_owners_reread_failed (owners, 0);
    assert (!sn_owners_reread_complete (owners, 0, why, sizeof why));
    assert (streq (why, "no re-read of it has scanned a page"));
    //  The quorum's reason counts the replicas merged on every page; a short
    //  buffer is cut, not overrun
    sn_owners_destroy (&owners);
    owners = sn_owners_new (NULL, NULL, 2);
    s_test_listed (owners, "a", "a");
    s_test_replay (owners, 0, (const char *[]){"a", NULL});
    s_test_listed (owners, "abc", "abc");
    assert (sn_owners_reread_due (owners, zclock_time ()) == 0);
    assert (!s_test_complete (owners, 0, (const char *[]){"ab", "ac", NULL}));
    assert (!sn_owners_reread_complete (owners, 0, why, sizeof why));
    assert (streq (why, "lacks a read quorum (1 of 3 replicas merged on every page)"));
    assert (!sn_owners_reread_complete (owners, 0, why, 8));
    assert (streq (why, "lacks a"));
    sn_owners_destroy (&owners);
}

//  --------------------------------------------------------------------------
//  Selftest support

//  The proxy's handling of one scan page asked (request, without the asker's
//  envelope): passed on as a page of one event, failed, left unanswered, or held
//  for RELEASE, as mode says.
typedef struct {
    zsock_t *front;  //  the askers
    zsock_t *back;   //  the store
    zframe_t *asker; //  the envelope of the last page asked
    sn_pack_t *pack;
    char mode;      //  'P'ass, 'F'ail, 'S'ilent or 'H'old pages after the first
    bool once;      //  the next refusal is the last
    size_t refused; //  pages failed, left unanswered or held
    zmsg_t *held;   //  the page held, if any
} s_proxy_t;

static void
s_proxy_page (s_proxy_t *self, zmsg_t **request_p)
{
    zframe_t *payload = zmsg_last (*request_p);
    sn_msg_t *msg = sn_msg_decode_trusted (zframe_data (payload), zframe_size (payload), NULL);
    const sn_value_t *root = sn_msg_root (msg);
    uint64_t rid = 0, p = 0;
    sn_value_uint (sn_value_get (root, "rid"), &rid);
    sn_value_uint (sn_value_get (root, "p"), &p);
    char *from = sn_value_get_strdup (root, "from");
    char *prefix = sn_value_get_strdup (root, "prefix");
    if (from && self->mode != 'P') {
        self->refused++;
        if (self->mode == 'F') {
            sn_pack_error (self->pack, rid, 503, "store is busy");
            zframe_t *frame = zframe_dup (self->asker);
            zframe_send (&frame, self->front, ZFRAME_MORE);
            frame = sn_pack_frame (self->pack);
            zframe_send (&frame, self->front, 0);
        }
        else if (self->mode == 'H' && !self->held) {
            self->held = *request_p;
            *request_p = NULL;
        }
        if (self->once)
            self->mode = 'P';
    }
    else {
        //  A page of one event: a replay of a few events has pages after its first
        sn_pack_reset (self->pack);
        sn_pack_map (self->pack, 4 + (from != NULL) + (prefix != NULL));
        sn_pack_kv_str (self->pack, "op", "scan");
        sn_pack_kv_uint (self->pack, "rid", rid);
        sn_pack_kv_uint (self->pack, "p", p);
        sn_pack_kv_uint (self->pack, "limit", 1);
        if (from)
            sn_pack_kv_str (self->pack, "from", from);
        if (prefix)
            sn_pack_kv_str (self->pack, "prefix", prefix);
        zframe_t *frame = sn_pack_frame (self->pack);
        zframe_send (&frame, self->back, 0);
    }
    free (from);
    free (prefix);
    sn_msg_destroy (&msg);
    zmsg_destroy (request_p);
}

void
sn_owners_scan_proxy (zsock_t *pipe, void *args)
{
    const char *store = (const char *) args;
    s_proxy_t self = {0};
    self.front = zsock_new (ZMQ_ROUTER);
    self.back = zsock_new_dealer (store);
    assert (self.front && self.back && zsock_bind (self.front, "%s-scans", store) == 0);
    self.pack = sn_pack_new ();
    self.mode = 'P';
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, self.front, self.back, NULL);
    while (true) {
        zsock_t *which = (zsock_t *) zpoller_wait (poller, -1);
        if (which == pipe) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM")) {
                zstr_free (&command);
                break;
            }
            if (streq (command, "REFUSED"))
                zstr_sendf (pipe, "%zu", self.refused);
            else if (streq (command, "PASS") || streq (command, "FAIL") ||
                     streq (command, "FAIL1") || streq (command, "SILENT") ||
                     streq (command, "HOLD")) {
                self.mode = command[0];
                self.once = streq (command, "FAIL1");
                zstr_send (pipe, "OK");
            }
            else if (streq (command, "RELEASE")) {
                self.mode = 'P';
                if (self.held)
                    s_proxy_page (&self, &self.held);
                zstr_send (pipe, "OK");
            }
            else
                zstr_sendf (pipe, "no command %s", command);
            zstr_free (&command);
        }
        else if (which == self.front) {
            zmsg_t *request = zmsg_recv (self.front);
            zframe_destroy (&self.asker);
            self.asker = zmsg_pop (request);
            s_proxy_page (&self, &request);
        }
        else if (which == self.back) {
            zframe_t *answer = zframe_recv (self.back);
            zframe_t *frame = zframe_dup (self.asker);
            zframe_send (&frame, self.front, ZFRAME_MORE);
            zframe_send (&answer, self.front, 0);
        }
        else
            break;
    }
    zmsg_destroy (&self.held);
    zframe_destroy (&self.asker);
    sn_pack_destroy (&self.pack);
    zpoller_destroy (&poller);
    zsock_destroy (&self.front);
    zsock_destroy (&self.back);
}

void
sn_owners_test (bool verbose)
{
    if (verbose)
        zsys_info ("sn_owners: selftest");
    //  Without a feed: every partition, at once
    sn_owners_t *alone = sn_owners_new (NULL, NULL, 4);
    assert (alone && sn_owners_owns (alone, 0) && sn_owners_owns (alone, 3));
    assert (!sn_owners_owns (alone, 4));
    assert (sn_owners_feed (alone) == NULL);
    assert (!sn_owners_name (alone) && zlist_size (sn_owners_members (alone)) == 0);
    //  A failed replay is tried again later and later, each try named once
    assert (!sn_owners_taking_over (alone, 1) && sn_owners_replay_at (alone) == INT64_MAX);
    int64_t now = zclock_time ();
    int64_t first = sn_owners_replay_failed (alone, 1);
    assert (first >= now + 1000 && first <= zclock_time () + 1000);
    assert (sn_owners_taking_over (alone, 1) && !sn_owners_taking_over (alone, 2));
    assert (sn_owners_replay_at (alone) == first);
    assert (sn_owners_replay_due (alone, first - 1) == -1);
    assert (sn_owners_replay_due (alone, first) == 1);
    assert (sn_owners_replay_due (alone, first) == -1 && sn_owners_taking_over (alone, 1));
    int64_t second = sn_owners_replay_failed (alone, 1);
    assert (second >= first + 1000);
    for (int round = 0; round < 5; round++)
        sn_owners_replay_failed (alone, 1);
    assert (sn_owners_replay_at (alone) <= zclock_time () + 10000);
    sn_owners_replayed (alone, 1);
    assert (!sn_owners_taking_over (alone, 1) && sn_owners_replay_at (alone) == INT64_MAX);
    sn_owners_destroy (&alone);
    sn_owners_destroy (&alone);
    s_test_rereads ();
    s_test_quorum ();

    //  Partitions of requests
    sn_owners_t *owners =
        sn_owners_new ("inproc://sn-owners-test-feed", "inproc://sn-owners-test-mesh", 4);
    assert (owners);
    sn_pack_t *pack = sn_pack_new ();
    const char *ids[] = {"abc-2", "abc-4", "abc", "-3", "abc-", "abc-9999999999", NULL};
    int64_t expected[] = {2, -1, -1, -1, -1, -1};
    for (int index = 0; ids[index]; index++) {
        sn_pack_reset (pack);
        sn_pack_map (pack, 1);
        sn_pack_kv_str (pack, "id", ids[index]);
        sn_msg_t *msg = sn_msg_decode_trusted (sn_pack_data (pack), sn_pack_size (pack), NULL);
        assert (sn_owners_partition (owners, sn_msg_root (msg)) == expected[index]);
        assert (sn_owners_id_partition (owners, ids[index], strlen (ids[index])) ==
                expected[index]);
        sn_msg_destroy (&msg);
    }
    sn_pack_reset (pack);
    sn_pack_map (pack, 1);
    sn_pack_kv_str (pack, "bucket_id", "b1");
    sn_msg_t *msg = sn_msg_decode_trusted (sn_pack_data (pack), sn_pack_size (pack), NULL);
    assert (sn_owners_partition (owners, sn_msg_root (msg)) == sn_partition ("b1", 2, 4));
    sn_msg_destroy (&msg);
    sn_pack_destroy (&pack);
    sn_owners_destroy (&owners);

    //  With a feed: nothing is owned until the first placement; requests wait
    zsock_t *pub = zsock_new_pub ("inproc://sn-owners-test-feed");
    zsock_t *mesh = zsock_new_router ("inproc://sn-owners-test-mesh");
    zsock_t *router = zsock_new_router ("inproc://sn-owners-test-actor");
    zsock_t *client = zsock_new_dealer ("inproc://sn-owners-test-actor");
    assert (pub && mesh && router && client);
    owners = sn_owners_new ("inproc://sn-owners-test-feed", "inproc://sn-owners-test-mesh", 4);
    assert (owners && sn_owners_feed (owners) && sn_owners_mesh (owners));
    uint32_t mine = (uint32_t) sn_partition ("b1", 2, 4);
    assert (!sn_owners_owns (owners, mine));
    assert (sn_owners_deadline (owners) == INT64_MAX);
    sn_routed_t *request = s_test_request (client, router, "b1", 1, 0);
    assert (sn_owners_route (owners, request, NULL, mine, router));
    assert (sn_owners_deadline (owners) < INT64_MAX);
    assert (sn_owners_release (owners, router) == NULL);

    //  The first placement: this node ("a") owns mine, "b" the others
    const char *table[4] = {"b", "b", "b", "b"};
    table[mine] = "a";
    bool gained[4], lost[4];
    size_t changes = 0;
    for (int tries = 0; tries < 200 && !sn_owners_owns (owners, mine); tries++) {
        s_test_publish (pub, "a", table, 4);
        zclock_sleep (10);
        changes += sn_owners_recv (owners, gained, lost);
    }
    assert (sn_owners_owns (owners, mine) && changes == 1 && gained[mine] && !lost[mine]);
    //  A failed replay of a partition owned elsewhere is not tried again
    assert (sn_owners_replay_failed (owners, (mine + 1) % 4) == INT64_MAX);
    assert (!sn_owners_taking_over (owners, (mine + 1) % 4));
    assert (sn_owners_replay_at (owners) == INT64_MAX);
    assert (streq (sn_owners_name (owners), "a"));
    assert (zlist_size (sn_owners_members (owners)) == 2);
    assert (streq ((const char *) zlist_last (sn_owners_members (owners)), "b"));
    //  The held request is served now, by the caller
    request = sn_owners_release (owners, router);
    assert (request);
    assert (sn_owners_route (owners, request, NULL, mine, router) == false);
    sn_routed_close (request);
    free (request);
    assert (sn_owners_release (owners, router) == NULL);

    //  A request for b's partition goes to the mesh under the caller's envelope
    uint32_t theirs = (mine + 1) % 4;
    request = s_test_request (client, router, "other", 7, 0);
    pack = sn_pack_new ();
    sn_pack_map (pack, 3);
    sn_pack_kv_str (pack, "op", "batch.get");
    sn_pack_kv_uint (pack, "rid", 7);
    sn_pack_kv_uint (pack, "fwd", 0);
    msg = sn_msg_decode_trusted (sn_pack_data (pack), sn_pack_size (pack), NULL);
    //  An op slower than a write has its forward wait longer; four such ops at most
    assert (sn_owners_set_wait (owners, "batch.get", 9000) == 0);
    assert (sn_owners_set_wait (owners, "b", 1) == 0);
    assert (sn_owners_set_wait (owners, "c", 1) == 0);
    assert (sn_owners_set_wait (owners, "d", 1) == 0);
    assert (sn_owners_set_wait (owners, "e", 1) == -1);
    assert (sn_owners_route (owners, request, sn_msg_root (msg), theirs, router));
    zmsg_t *forward = zmsg_recv (mesh);
    assert (forward && zmsg_size (forward) == 3);
    zframe_t *payload = zmsg_last (forward);
    sn_msg_t *sent = sn_msg_decode_trusted (zframe_data (payload), zframe_size (payload), NULL);
    uint64_t value = 0;
    assert (sn_value_streq (sn_value_get (sn_msg_root (sent), "op"), "forward"));
    assert (sn_value_uint (sn_value_get (sn_msg_root (sent), "p"), &value) && value == theirs);
    assert (sn_value_uint (sn_value_get (sn_msg_root (sent), "timeout"), &value) && value == 9000);
    assert (sn_value_streq (sn_value_get (sn_value_get (sn_msg_root (sent), "request"), "op"),
                            "batch.get"));
    sn_msg_destroy (&sent);
    //  ... and the mesh's answer reaches the caller
    sn_pack_reset (pack);
    sn_pack_map (pack, 2);
    sn_pack_kv_uint (pack, "rid", 7);
    sn_pack_kv_uint (pack, "code", 200);
    zframe_t *answer = sn_pack_frame (pack);
    zmsg_remove (forward, payload);
    zframe_destroy (&payload);
    zmsg_append (forward, &answer);
    zmsg_send (&forward, mesh);
    zpoller_t *poller = zpoller_new (sn_owners_mesh (owners), NULL);
    assert (zpoller_wait (poller, 2000));
    zpoller_destroy (&poller);
    sn_owners_relay (owners, router);
    assert (s_test_code (client, 7) == 200);
    sn_msg_destroy (&msg);

    //  A request forwarded already is not forwarded again
    request = s_test_request (client, router, "other", 8, 1);
    sn_pack_reset (pack);
    sn_pack_map (pack, 2);
    sn_pack_kv_uint (pack, "rid", 8);
    sn_pack_kv_uint (pack, "fwd", 1);
    msg = sn_msg_decode_trusted (sn_pack_data (pack), sn_pack_size (pack), NULL);
    assert (sn_owners_route (owners, request, sn_msg_root (msg), theirs, router));
    assert (s_test_code (client, 8) == 503);
    sn_msg_destroy (&msg);

    //  Ownership moves: mine is lost, theirs gained; a malformed frame changes nothing
    zframe_t *junk = zframe_new ("\x93\x01", 2);
    zframe_send (&junk, pub, 0);
    table[mine] = "b";
    table[theirs] = "a";
    changes = 0;
    for (int tries = 0; tries < 200 && !sn_owners_owns (owners, theirs); tries++) {
        s_test_publish (pub, "a", table, 4);
        zclock_sleep (10);
        changes += sn_owners_recv (owners, gained, lost);
    }
    assert (changes == 2 && gained[theirs] && lost[mine]);
    assert (!sn_owners_owns (owners, mine));

    sn_pack_destroy (&pack);
    sn_owners_destroy (&owners);
    zsock_destroy (&client);
    zsock_destroy (&router);
    zsock_destroy (&mesh);
    zsock_destroy (&pub);
}
