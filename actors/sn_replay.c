/*  sn_replay: asynchronous takeovers and re-reads of partitions, for the queue, the
    batch and the dispatch actors.
 */
#include "sn_replay.h"
#include "sn_actor.h"

//  Events of one scan page.
#define S_SCAN_LIMIT 1000

//  How long START waits for one scan page before giving up.
#define S_SCAN_WAIT 60000

//  How long a takeover or a re-read waits for one. The log answers a page within
//  --write-timeout-ms (2 s by default) when the mesh scans the replicas, at once
//  from the local store; a page silent past this fails the replay, tried again
//  later. The actor serves the other partitions meanwhile (pages are handled in its
//  loop), but the partition taken over answers 503 until its replay is over.
#define S_TAKEOVER_WAIT 4000

//  A client's request for a partition whose takeover is not over waits for it, at
//  most this long (then 503), at most S_PARK_MAX of them: a node that has just
//  started answers its first requests once their partition is loaded, not 503.
#define S_PARK_WAIT 5000
#define S_PARK_MAX  10000

//  A request waiting for the takeover of its partition.
typedef struct {
    sn_routed_t *request; //  the request, owned
    uint64_t rid;         //  its rid, for the 503
    uint32_t p;           //  its partition
    int64_t until;        //  zclock_mono ms it is answered 503 instead
} s_parked_t;

struct _sn_replay_t {
    const char *name;        //  the actor's, for logs
    sn_owners_t *owners;     //  ownership, replay retries, re-read bookkeeping
    zsock_t *scan;           //  DEALER the pages are asked on
    zsock_t *pipe;           //  the actor's pipe, for REPLAY
    uint32_t partitions;     //  how many there are
    sn_replay_hooks_t hooks; //  the actor's part
    void *actor;             //  what the hooks get
    sn_pack_t *pack;         //  scratch for scan requests and answers
    bool *gained;            //  scratch per partition: ownership came
    bool *lost;              //  scratch per partition: ownership went
    bool *taking;            //  per partition: its takeover waits or runs, not over yet
    size_t takings;          //  partitions so marked
    zlistx_t *queue;         //  partitions whose takeover waits its turn (p + 1), in order
    int64_t replay_p;        //  partition whose scan runs (a takeover or a re-read), or -1
    bool reread;             //  that scan re-reads a partition served here
    uint64_t scan_rid;       //  rid of its page asked for and not come, or 0
    int64_t scan_until;      //  zclock_mono ms that page is given up at, or INT64_MAX
    zsock_t *router;         //  the actor's requests are answered on, once it serves
    int64_t told_p;          //  partition whose pipe REPLAY waits for its end, or -1
    char error[256];         //  why the last takeover failed: what START answers
    uint64_t rereads;        //  re-reads ended, adopted or discarded (for tests)
    zlistx_t *parked;        //  s_parked_t, owned, oldest first: requests waiting for a
                             //  takeover
};

static void
s_parked_free (void **item_p)
{
    s_parked_t *self = (s_parked_t *) *item_p;
    if (self) {
        if (self->request) {
            sn_routed_close (self->request);
            free (self->request);
        }
        free (self);
        *item_p = NULL;
    }
}

sn_replay_t *
sn_replay_new (const char *name, sn_owners_t *owners, zsock_t *scan, zsock_t *pipe,
               uint32_t partitions, const sn_replay_hooks_t *hooks, void *actor)
{
    assert (owners && scan && hooks);
    sn_replay_t *self = (sn_replay_t *) zmalloc (sizeof (sn_replay_t));
    self->name = name;
    self->owners = owners;
    self->scan = scan;
    self->pipe = pipe;
    self->partitions = partitions;
    self->hooks = *hooks;
    self->actor = actor;
    self->pack = sn_pack_new ();
    self->gained = (bool *) zmalloc ((partitions ? partitions : 1) * sizeof (bool));
    self->lost = (bool *) zmalloc ((partitions ? partitions : 1) * sizeof (bool));
    self->taking = (bool *) zmalloc ((partitions ? partitions : 1) * sizeof (bool));
    self->queue = zlistx_new ();
    self->parked = zlistx_new ();
    zlistx_set_destructor (self->parked, s_parked_free);
    self->replay_p = -1;
    self->told_p = -1;
    self->scan_until = INT64_MAX;
    return self;
}

void
sn_replay_destroy (sn_replay_t **self_p)
{
    assert (self_p);
    sn_replay_t *self = *self_p;
    if (self) {
        sn_pack_destroy (&self->pack);
        free (self->gained);
        free (self->lost);
        free (self->taking);
        zlistx_destroy (&self->queue);
        zlistx_destroy (&self->parked);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Requests waiting for a takeover

static void
s_answer (sn_replay_t *self, sn_routed_t *request, uint64_t rid, const char *text)
{
    sn_pack_error (self->pack, rid, 503, "%s", text);
    sn_routed_set_payload (request, sn_pack_data (self->pack), sn_pack_size (self->pack));
    //  A ROUTER drops what it cannot deliver rather than block
    if (sn_routed_send (request, self->router))
        sn_routed_close (request);
    free (request);
}

static void
s_refuse (sn_replay_t *self, sn_routed_t *request, uint64_t rid, uint32_t p)
{
    char text[96];
    snprintf (text, sizeof text, "partition %u is being taken over here, try again", p);
    s_answer (self, request, rid, text);
}

//  A request for partition p, whose takeover is not over, waits for its end
//  (s_taking_set), or 503 at once: when too many wait, and when it was forwarded
//  by another node (the mesh gives up on it sooner, and its caller tries again).
bool
sn_replay_park (sn_replay_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid,
                int64_t p)
{
    if (p < 0 || (uint64_t) p >= self->partitions || !self->taking[p])
        return false;
    uint64_t hops = 0;
    sn_value_uint (sn_value_get (root, "fwd"), &hops);
    if (hops || zlistx_size (self->parked) >= S_PARK_MAX) {
        s_refuse (self, request, rid, (uint32_t) p);
        return true;
    }
    s_parked_t *parked = (s_parked_t *) zmalloc (sizeof (s_parked_t));
    parked->request = request;
    parked->rid = rid;
    parked->p = (uint32_t) p;
    parked->until = zclock_mono () + S_PARK_WAIT;
    zlistx_add_end (self->parked, parked);
    return true;
}

//  Requests that waited too long for their partition's takeover (until zclock_mono
//  ms now) hear 503.
static void
s_parked_expire (sn_replay_t *self, int64_t now)
{
    s_parked_t *parked;
    while ((parked = (s_parked_t *) zlistx_first (self->parked)) && parked->until <= now) {
        s_refuse (self, parked->request, parked->rid, parked->p);
        parked->request = NULL;
        zlistx_delete (self->parked, zlistx_cursor (self->parked));
    }
}

void
sn_replay_stop (sn_replay_t *self)
{
    s_parked_t *parked;
    while (self && (parked = (s_parked_t *) zlistx_first (self->parked))) {
        s_answer (self, parked->request, parked->rid, "node is stopping");
        parked->request = NULL;
        zlistx_delete (self->parked, zlistx_cursor (self->parked));
    }
}

//  The takeover of p begins to wait (taking), or is over: succeeded, failed
//  (sn_owners answers 503 now), or p went elsewhere (sn_owners forwards). The
//  requests that waited for it are handled as if they came now.
static void
s_taking_set (sn_replay_t *self, uint32_t p, bool taking)
{
    if (self->taking[p] == taking)
        return;
    self->taking[p] = taking;
    if (taking) {
        self->takings++;
        return;
    }
    self->takings--;
    zlistx_t *ready = zlistx_new ();
    for (s_parked_t *parked = (s_parked_t *) zlistx_first (self->parked); parked;
         parked = (s_parked_t *) zlistx_next (self->parked))
        if (parked->p == p) {
            zlistx_add_end (ready, parked->request);
            parked->request = NULL;
            zlistx_delete (self->parked, zlistx_cursor (self->parked));
        }
    for (sn_routed_t *request = (sn_routed_t *) zlistx_first (ready); request;
         request = (sn_routed_t *) zlistx_next (ready))
        self->hooks.serve (self->actor, request);
    zlistx_destroy (&ready);
}

//  --------------------------------------------------------------------------
//  Scans

//  The takeover of p ended, with why it failed or NULL: a REPLAY of it waiting on
//  the pipe hears so.
static void
s_told (sn_replay_t *self, uint32_t p, const char *why)
{
    if (self->told_p == (int64_t) p) {
        zstr_send (self->pipe, why ? why : "OK");
        self->told_p = -1;
    }
}

//  No page is waited for any more: the answer of one asked for, should it come,
//  is no one's.
static void
s_scan_clear (sn_replay_t *self)
{
    self->replay_p = -1;
    self->scan_rid = 0;
    self->scan_until = INT64_MAX;
}

//  The re-read of p ended: every page came (failed NULL) or not. Only a complete
//  re-read (every page came, and merged every replica the replays of p read and a
//  read quorum of p's replicas: sn_owners_reread_complete) is adopted, by the
//  actor's own rules; anything else is discarded whole.
static void
s_reread_end (sn_replay_t *self, uint32_t p, const char *failed)
{
    char error[256];
    bool adopt = !failed && sn_owners_reread_complete (self->owners, p, error, sizeof error);
    if (failed)
        snprintf (error, sizeof error, "%s", failed);
    self->hooks.reread_end (self->actor, p, adopt);
    if (adopt)
        sn_owners_replayed (self->owners, p);
    else {
        sn_owners_reread_failed (self->owners, p);
        zsys_warning ("%s: reading partition %u again: %s; nothing of it kept, read again later",
                      self->name, p, error);
    }
    self->rereads++;
}

//  The scan under way failed. A takeover that fails is not served half done: what
//  it loaded is dropped, so the next try starts from nothing and loads p from the
//  log alone, and requests for p are answered 503 until a try succeeds
//  (sn_owners). A re-read is discarded.
static void
s_replay_failed (sn_replay_t *self, const char *why)
{
    uint32_t p = (uint32_t) self->replay_p;
    bool reread = self->reread;
    s_scan_clear (self);
    if (reread) {
        s_reread_end (self, p, why);
        return;
    }
    self->hooks.drop (self->actor, p, true);
    snprintf (self->error, sizeof self->error, "%s", why);
    int64_t retry = sn_owners_replay_failed (self->owners, p);
    s_taking_set (self, p, false);
    if (retry == INT64_MAX)
        zsys_error ("%s: replaying partition %u, not owned here: %s", self->name, p, why);
    else
        zsys_error ("%s: taking over partition %u: %s; trying again in %" PRId64 " ms", self->name,
                    p, why, retry - zclock_time ());
    s_told (self, p, why);
}

//  Ask the log for the next page of the scan under way, from (NULL: its first).
static void
s_ask (sn_replay_t *self, const char *from)
{
    sn_pack_t *request = self->pack;
    sn_pack_reset (request);
    //  The mesh counts re-reads
    bool reread = !from && self->reread;
    sn_pack_map (request, 4 + (from != NULL) + reread);
    sn_pack_kv_str (request, "op", "scan");
    if (reread) {
        sn_pack_str (request, "reread");
        sn_pack_bool (request, true);
    }
    uint64_t scan_rid = self->hooks.rid (self->actor);
    sn_pack_kv_uint (request, "rid", scan_rid);
    sn_pack_kv_uint (request, "p", (uint64_t) self->replay_p);
    sn_pack_kv_uint (request, "limit", S_SCAN_LIMIT);
    if (from)
        sn_pack_kv_str (request, "from", from);
    zframe_t *frame = sn_pack_frame (request);
    if (zframe_send (&frame, self->scan, ZFRAME_DONTWAIT)) {
        zframe_destroy (&frame);
        s_replay_failed (self, "log is not taking scans");
        return;
    }
    self->scan_rid = scan_rid;
    //  Before the actor serves (START) nobody waits for it
    self->scan_until = zclock_mono () + (self->router ? S_TAKEOVER_WAIT : S_SCAN_WAIT);
}

//  Partition p is taken over here (a placement, a try again, a REPLAY): its replay
//  waits its turn, and its requests wait until it is over.
static void
s_replay_queue (sn_replay_t *self, uint32_t p)
{
    if (self->taking[p])
        return; //  waits or runs already
    s_taking_set (self, p, true);
    zlistx_add_end (self->queue, (void *) (uintptr_t) (p + 1));
}

//  Begin the takeover whose turn has come, if it is still wanted.
static void
s_replay_begin (sn_replay_t *self)
{
    void *item = zlistx_first (self->queue);
    if (!item)
        return;
    uint32_t p = (uint32_t) ((uintptr_t) item - 1);
    zlistx_delete (self->queue, zlistx_cursor (self->queue));
    //  Lost again before its turn (s_replay_forget)
    if (!self->taking[p])
        return;
    self->hooks.begin (self->actor, p, false);
    self->replay_p = p;
    self->reread = false;
    sn_owners_scan_begin (self->owners, p);
    s_ask (self, NULL);
}

//  Partition p, served here, is read again (sn_owners_reread_due): the actor
//  stages what the scan holds apart, touching nothing held; p is served meanwhile.
static void
s_reread_begin (sn_replay_t *self, uint32_t p)
{
    self->replay_p = p;
    self->reread = true;
    self->hooks.begin (self->actor, p, true);
    s_ask (self, NULL);
}

//  Every page of the scan under way came.
static void
s_replay_done (sn_replay_t *self)
{
    uint32_t p = (uint32_t) self->replay_p;
    self->replay_p = -1;
    if (self->reread) {
        s_reread_end (self, p, NULL);
        return;
    }
    sn_owners_replayed (self->owners, p);
    self->hooks.done (self->actor, p);
    s_taking_set (self, p, false);
    s_told (self, p, NULL);
}

//  One page of the scan under way: {code, events: [{key, type, ts, event}], next}.
static void
s_replay_page (sn_replay_t *self, const sn_value_t *root)
{
    uint32_t p = (uint32_t) self->replay_p;
    self->scan_rid = 0;
    self->scan_until = INT64_MAX;
    uint64_t code = 0;
    sn_value_uint (sn_value_get (root, "code"), &code);
    if (code != 200) {
        char *text = sn_value_get_strdup (root, "error");
        char why[256];
        snprintf (why, sizeof why, "scan of partition %u failed: %s", p, text ? text : "no reply");
        free (text);
        s_replay_failed (self, why);
        return;
    }
    sn_owners_scan_page (self->owners, p, root);
    const sn_value_t *events = sn_value_get (root, "events");
    for (size_t index = 0; index < sn_value_size (events); index++) {
        const sn_value_t *item = sn_value_at (events, index);
        char *type = sn_value_get_strdup (item, "type");
        if (type)
            self->hooks.event (self->actor, type, sn_value_get (item, "event"));
        free (type);
    }
    char *from = sn_value_get_strdup (root, "next");
    if (from)
        s_ask (self, from);
    else
        s_replay_done (self);
    free (from);
}

bool
sn_replay_offer (sn_replay_t *self, const sn_value_t *reply)
{
    uint64_t rid = 0;
    sn_value_uint (sn_value_get (reply, "rid"), &rid);
    if (self->replay_p < 0 || !self->scan_rid || rid != self->scan_rid)
        return false;
    s_replay_page (self, reply);
    return true;
}

//  Partition p went elsewhere (what of it was loaded went with the drop): its
//  takeover, waiting or under way, ends, and so does a re-read of it.
static void
s_replay_forget (sn_replay_t *self, uint32_t p)
{
    s_taking_set (self, p, false);
    s_told (self, p, "REPLAY: the partition went elsewhere");
    if (self->replay_p == (int64_t) p) {
        bool reread = self->reread;
        s_scan_clear (self);
        if (reread)
            s_reread_end (self, p, "the partition went elsewhere");
    }
}

//  Partition p was lost and gained again in one drain of the feed while its
//  takeover scanned it: the owner meanwhile may have written behind the scan's
//  cursor, and the replicas it read so far count for nothing (sn_owners forgot
//  them). The takeover starts over from the first page, from nothing, without a
//  backoff (nothing failed); its requests wait on.
static void
s_replay_restart (sn_replay_t *self, uint32_t p)
{
    s_scan_clear (self);
    self->hooks.drop (self->actor, p, true);
    zlistx_add_start (self->queue, (void *) (uintptr_t) (p + 1));
}

void
sn_replay_placement (sn_replay_t *self)
{
    if (!sn_owners_recv (self->owners, self->gained, self->lost))
        return;
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->lost[p]) {
            self->hooks.drop (self->actor, p, false);
            s_replay_forget (self, p);
        }
    for (uint32_t p = 0; p < self->partitions; p++)
        if (self->gained[p] && self->replay_p == (int64_t) p && !self->reread)
            s_replay_restart (self, p);
        else if (self->gained[p])
            s_replay_queue (self, p);
}

//  --------------------------------------------------------------------------
//  The actor's loop

char *
sn_replay_start (sn_replay_t *self)
{
    for (uint32_t p = 0; p < self->partitions; p++)
        if (sn_owners_owns (self->owners, p))
            s_replay_queue (self, p);
    zpoller_t *poller = zpoller_new (self->scan, NULL);
    self->error[0] = 0;
    while (!self->error[0] && (self->replay_p >= 0 || zlistx_size (self->queue))) {
        if (self->replay_p < 0) {
            s_replay_begin (self);
            continue;
        }
        int64_t wait = self->scan_until - zclock_mono ();
        if (zpoller_wait (poller, wait > 0 ? (int) wait : 0) == self->scan) {
            //  Nothing was written yet: any other answer is no one's
            zframe_t *frame = zframe_recv (self->scan);
            const char *reason = NULL;
            sn_msg_t *reply =
                frame ? sn_msg_decode_trusted (zframe_data (frame), zframe_size (frame), &reason)
                      : NULL;
            //  An interrupted receive brings nothing: the scan's deadline still holds
            if (reply)
                sn_replay_offer (self, sn_msg_root (reply));
            sn_msg_destroy (&reply);
            zframe_destroy (&frame);
        }
        else {
            char why[96];
            snprintf (why, sizeof why, "log did not answer scan of partition %u",
                      (uint32_t) self->replay_p);
            s_replay_failed (self, why);
        }
    }
    zpoller_destroy (&poller);
    return self->error[0] ? strdup (self->error) : NULL;
}

void
sn_replay_serve (sn_replay_t *self, zsock_t *router)
{
    self->router = router;
}

void
sn_replay_release (sn_replay_t *self)
{
    sn_routed_t *request;
    while ((request = sn_owners_release (self->owners, self->router)))
        self->hooks.serve (self->actor, request);
}

bool
sn_replay_step (sn_replay_t *self, int64_t now)
{
    s_parked_t *parked = (s_parked_t *) zlistx_first (self->parked);
    if (parked && parked->until <= zclock_mono ()) {
        s_parked_expire (self, zclock_mono ());
        return true;
    }
    //  A page not come in time fails its replay
    if (self->replay_p >= 0 && self->scan_until <= zclock_mono ()) {
        char why[96];
        snprintf (why, sizeof why, "log did not answer scan of partition %u",
                  (uint32_t) self->replay_p);
        s_replay_failed (self, why);
        return true;
    }
    //  A takeover tried again waits its turn behind those queued
    if (sn_owners_replay_at (self->owners) <= now) {
        int64_t retry = sn_owners_replay_due (self->owners, now);
        if (retry >= 0)
            s_replay_queue (self, (uint32_t) retry);
        return true;
    }
    if (self->replay_p < 0 && zlistx_size (self->queue)) {
        s_replay_begin (self);
        return true;
    }
    //  Takeovers first: a re-read is begun only when none runs or waits, so a
    //  partition gained waits behind one re-read at most
    if (self->replay_p < 0 && sn_owners_reread_at (self->owners) <= now) {
        int64_t again = sn_owners_reread_due (self->owners, now);
        if (again >= 0)
            s_reread_begin (self, (uint32_t) again);
        return true;
    }
    return false;
}

int64_t
sn_replay_next (sn_replay_t *self, int64_t now)
{
    int64_t next = sn_owners_replay_at (self->owners);
    bool idle = self->replay_p < 0;
    if (idle && sn_owners_reread_at (self->owners) < next)
        next = sn_owners_reread_at (self->owners);
    s_parked_t *parked = (s_parked_t *) zlistx_first (self->parked);
    if (parked && now + (parked->until - zclock_mono ()) < next)
        next = now + (parked->until - zclock_mono ());
    if (!idle && self->scan_until != INT64_MAX && now + (self->scan_until - zclock_mono ()) < next)
        next = now + (self->scan_until - zclock_mono ());
    return next;
}

bool
sn_replay_taking (sn_replay_t *self, uint32_t p)
{
    return self->takings && self->taking[p];
}

bool
sn_replay_rereading (sn_replay_t *self, uint32_t p)
{
    return self->replay_p == (int64_t) p && self->reread;
}

size_t
sn_replay_waiting (sn_replay_t *self)
{
    return zlistx_size (self->queue);
}

bool
sn_replay_command (sn_replay_t *self, zsock_t *pipe, const char *command)
{
    if (!self) {
        //  Before START, or after a START that failed early: nothing replayed, but
        //  every command still gets its answer, so no caller waits for ever
        if (streq (command, "REREADS"))
            zstr_send (pipe, "0");
        else if (streq (command, "REPLAY") || streq (command, "REREAD")) {
            char *partition = zstr_recv (pipe);
            zstr_sendf (pipe, "%s: not started", command);
            zstr_free (&partition);
        }
        else
            return false;
        return true;
    }
    if (streq (command, "REREADS")) {
        zstr_sendf (self->pipe, "%" PRIu64, self->rereads);
        return true;
    }
    if (!streq (command, "REPLAY") && !streq (command, "REREAD"))
        return false;
    char *partition = zstr_recv (self->pipe);
    uint32_t p = partition ? (uint32_t) strtoul (partition, NULL, 10) : 0;
    bool exists = partition && p < self->partitions;
    if (streq (command, "REREAD")) {
        //  For tests: p is due to be read again now, as when a replica its replays
        //  did not read becomes reachable
        if (exists && sn_owners_reread_soon (self->owners, p) == 0)
            zstr_send (self->pipe, "OK");
        else
            zstr_sendf (self->pipe, "REREAD: no partition %s", partition ? partition : "");
    }
    //  Taking over p (from the mesh): its events are applied over the state held;
    //  replaying what is known already changes nothing. The answer comes when that
    //  replay is over
    else if (!exists)
        zstr_sendf (self->pipe, "REPLAY: no partition %s", partition ? partition : "");
    else if (!sn_owners_owns (self->owners, p))
        zstr_sendf (self->pipe, "REPLAY: partition %u is not owned here", p);
    else {
        s_replay_queue (self, p);
        self->told_p = p;
    }
    zstr_free (&partition);
    return true;
}

//  --------------------------------------------------------------------------
//  For the actors' selftests

zmsg_t *
sn_replay_scan_next (zsock_t *scans, uint64_t *p, bool *reread)
{
    zpoller_t *poller = zpoller_new (scans, NULL);
    zsock_t *which = (zsock_t *) zpoller_wait (poller, 5000);
    zpoller_destroy (&poller);
    if (which != scans)
        return NULL;
    zmsg_t *scan = zmsg_recv (scans);
    assert (scan && zmsg_size (scan) == 2);
    zframe_t *payload = zmsg_last (scan);
    sn_msg_t *msg = sn_msg_decode (zframe_data (payload), zframe_size (payload), 0, NULL);
    assert (msg && sn_value_streq (sn_value_get (sn_msg_root (msg), "op"), "scan"));
    assert (sn_value_uint (sn_value_get (sn_msg_root (msg), "p"), p));
    *reread = false;
    sn_value_bool (sn_value_get (sn_msg_root (msg), "reread"), reread);
    sn_msg_destroy (&msg);
    return scan;
}

void
sn_replay_scan_pass (zsock_t *scans, zsock_t *store, zmsg_t **scan_p)
{
    zframe_t *sender = zmsg_pop (*scan_p);
    zframe_t *payload = zmsg_pop (*scan_p);
    zmsg_destroy (scan_p);
    assert (zframe_send (&payload, store, 0) == 0);
    zpoller_t *poller = zpoller_new (store, NULL);
    assert (zpoller_wait (poller, 5000) == store);
    zpoller_destroy (&poller);
    zframe_t *answer = zframe_recv (store);
    assert (answer);
    zframe_send (&sender, scans, ZFRAME_MORE);
    zframe_send (&answer, scans, 0);
}

uint64_t
sn_replay_test_rereads (zactor_t *actor)
{
    return sn_actor_count (actor, "REREADS");
}

void
sn_replay_test_rereads_past (zactor_t *actor, uint64_t before, int timeout)
{
    sn_actor_count_past (actor, "REREADS", before, timeout);
}

uint64_t
sn_replay_test_reread_ask (zactor_t *actor, uint32_t p)
{
    uint64_t before = sn_replay_test_rereads (actor);
    char number[16];
    snprintf (number, sizeof number, "%u", p);
    zstr_sendx (actor, "REREAD", number, NULL);
    char *answer = zstr_recv (actor);
    assert (answer && streq (answer, "OK"));
    free (answer);
    return before;
}

void
sn_replay_test_reread (zactor_t *actor, uint32_t p)
{
    sn_replay_test_rereads_past (actor, sn_replay_test_reread_ask (actor, p), 30000);
}

void
sn_replay_test_place (zsock_t *feed, const char *owner, uint32_t partitions, const char *members)
{
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 5);
    sn_pack_kv_str (pack, "op", "placement");
    sn_pack_kv_str (pack, "self", "a");
    sn_pack_kv_uint (pack, "version", 1);
    sn_pack_str (pack, "owners");
    sn_pack_array (pack, partitions);
    for (uint32_t p = 0; p < partitions; p++)
        sn_pack_str (pack, owner);
    sn_pack_str (pack, "members");
    sn_pack_array (pack, (uint32_t) strlen (members));
    for (const char *name = members; *name; name++)
        sn_pack_strn (pack, name, 1);
    zframe_t *frame = sn_pack_frame (pack);
    zframe_send (&frame, feed, 0);
    sn_pack_destroy (&pack);
}

//  --------------------------------------------------------------------------
//  Selftest: a pretend actor whose hooks note what they are told, a ROUTER
//  standing in for the log, and a DEALER client whose requests wait.

#include "sn_json.h"

typedef struct {
    char notes[512]; //  what the hooks were told, "; " after each
    uint64_t rid;    //  last rid handed out
} s_test_actor_t;

static void
s_note (void *actor, const char *format, ...)
{
    s_test_actor_t *self = (s_test_actor_t *) actor;
    size_t used = strlen (self->notes);
    va_list args;
    va_start (args, format);
    vsnprintf (self->notes + used, sizeof self->notes - used, format, args);
    va_end (args);
    strncat (self->notes, "; ", sizeof self->notes - strlen (self->notes) - 1);
}

//  The hooks noted wanted since the last look.
static void
s_test_noted (s_test_actor_t *actor, const char *wanted)
{
    if (!streq (actor->notes, wanted))
        zsys_error ("sn_replay test: noted '%s', not '%s'", actor->notes, wanted);
    assert (streq (actor->notes, wanted));
    actor->notes[0] = 0;
}

static void
s_test_event (void *actor, const char *type, const sn_value_t *event)
{
    s_note (actor, "%s %s", type, sn_value_get (event, "id") ? "id" : "");
}

static void
s_test_begin (void *actor, uint32_t p, bool reread)
{
    s_note (actor, "%s %u", reread ? "reread" : "begin", p);
}

static void
s_test_done (void *actor, uint32_t p)
{
    s_note (actor, "done %u", p);
}

static void
s_test_reread_end (void *actor, uint32_t p, bool adopt)
{
    s_note (actor, "%s %u", adopt ? "adopt" : "discard", p);
}

static void
s_test_drop (void *actor, uint32_t p, bool anew)
{
    s_note (actor, "drop %u%s", p, anew ? " anew" : "");
}

static void
s_test_serve (void *actor, sn_routed_t *request)
{
    s_note (actor, "serve");
    sn_routed_close (request);
    free (request);
}

static uint64_t
s_test_rid (void *actor)
{
    return ++((s_test_actor_t *) actor)->rid;
}

//  msgpack of json text, decoded; with %u in it, number there.
static sn_msg_t *
s_test_msg (const char *json, uint64_t number)
{
    char *text = zsys_sprintf (json, (unsigned) number);
    sn_pack_t *pack = sn_pack_new ();
    char error[128];
    assert (sn_json_to_pack (text, strlen (text), pack, error, sizeof error) == 0);
    sn_msg_t *msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
    assert (msg);
    sn_pack_destroy (&pack);
    free (text);
    return msg;
}

//  Offer replay a request from client for partition p, forwarded hops times, as
//  the actor's front has it; returns whether replay took it.
static bool
s_test_park (sn_replay_t *replay, zsock_t *client, zsock_t *front, uint64_t hops, int64_t p)
{
    zstr_send (client, "request");
    sn_routed_t *request = (sn_routed_t *) zmalloc (sizeof (sn_routed_t));
    zpoller_t *poller = zpoller_new (front, NULL);
    assert (zpoller_wait (poller, 5000) == front);
    zpoller_destroy (&poller);
    assert (sn_routed_recv (request, front) == 0);
    sn_msg_t *msg = s_test_msg ("{\"rid\": 7, \"fwd\": %u}", hops);
    bool taken = sn_replay_park (replay, request, sn_msg_root (msg), 7, p);
    sn_msg_destroy (&msg);
    if (!taken) {
        sn_routed_close (request);
        free (request);
    }
    return taken;
}

//  The scan the log gets next: of p, beginning a re-read or not, from (or NULL).
//  Returns its rid.
static uint64_t
s_test_asked (zsock_t *log, uint32_t p, bool reread, const char *from)
{
    zmsg_t *msg = zmsg_recv (log);
    assert (msg && zmsg_size (msg) == 2);
    zframe_t *frame = zmsg_last (msg);
    sn_msg_t *asked = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    zmsg_destroy (&msg);
    const sn_value_t *root = sn_msg_root (asked);
    uint64_t rid = 0, partition = 0;
    assert (sn_value_streq (sn_value_get (root, "op"), "scan"));
    assert (sn_value_uint (sn_value_get (root, "p"), &partition) && partition == p);
    assert ((sn_value_get (root, "reread") != NULL) == reread);
    assert (from ? sn_value_streq (sn_value_get (root, "from"), from)
                 : !sn_value_get (root, "from"));
    assert (sn_value_uint (sn_value_get (root, "rid"), &rid));
    sn_msg_destroy (&asked);
    return rid;
}

//  Offer replay the page of json (rid is put for %u); returns whether it took it.
static bool
s_test_page (sn_replay_t *replay, const char *json, uint64_t rid)
{
    sn_msg_t *page = s_test_msg (json, rid);
    bool taken = sn_replay_offer (replay, sn_msg_root (page));
    sn_msg_destroy (&page);
    return taken;
}

//  The answer client has: 503 with text.
static void
s_test_refused (zsock_t *client, const char *text)
{
    zframe_t *frame = zframe_recv (client);
    assert (frame);
    sn_msg_t *answer = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    zframe_destroy (&frame);
    uint64_t code = 0;
    assert (sn_value_uint (sn_value_get (sn_msg_root (answer), "code"), &code) && code == 503);
    char *said = sn_value_get_strdup (sn_msg_root (answer), "error");
    assert (said && streq (said, text));
    free (said);
    sn_msg_destroy (&answer);
}

//  Send the pipe command (when not NULL) with partition p (when not NULL); then the
//  answer on the pipe is wanted (when not NULL).
static void
s_test_command (sn_replay_t *replay, zsock_t *peer, const char *command, const char *p,
                const char *wanted)
{
    if (p)
        zstr_send (peer, p);
    if (command)
        assert (sn_replay_command (replay, NULL, command));
    if (wanted) {
        char *answer = zstr_recv (peer);
        assert (answer && streq (answer, wanted));
        free (answer);
    }
}

void
sn_replay_test (bool verbose)
{
    printf (" * sn_replay: ");
    zsock_t *log = zsock_new_router ("inproc://sn_replay_test-log");
    zsock_t *scan = zsock_new_dealer (">inproc://sn_replay_test-log");
    zsock_t *front = zsock_new_router ("inproc://sn_replay_test-front");
    zsock_t *client = zsock_new_dealer (">inproc://sn_replay_test-front");
    zsock_t *pipe = zsock_new_pair ("@inproc://sn_replay_test-pipe");
    zsock_t *peer = zsock_new_pair (">inproc://sn_replay_test-pipe");
    assert (log && scan && front && client && pipe && peer);
    zsock_set_rcvtimeo (log, 5000);
    zsock_set_rcvtimeo (peer, 5000);
    zsock_set_rcvtimeo (client, 5000);

    //  Commands before START are answered all the same
    assert (sn_replay_command (NULL, pipe, "REREADS"));
    char *answer = zstr_recv (peer);
    assert (answer && streq (answer, "0"));
    zstr_free (&answer);
    zstr_send (peer, "3");
    assert (sn_replay_command (NULL, pipe, "REPLAY"));
    answer = zstr_recv (peer);
    assert (answer && streq (answer, "REPLAY: not started"));
    zstr_free (&answer);
    assert (!sn_replay_command (NULL, pipe, "OTHER"));
    sn_owners_t *owners = sn_owners_new (NULL, NULL, 2);
    s_test_actor_t actor = {"", 0};
    sn_replay_hooks_t hooks = {s_test_event, s_test_begin, s_test_done, s_test_reread_end,
                               s_test_drop,  s_test_serve, s_test_rid};
    sn_replay_t *replay = sn_replay_new ("sn_replay test", owners, scan, pipe, 2, &hooks, &actor);
    int64_t now = zclock_time ();
    assert (!sn_replay_step (replay, now) && sn_replay_next (replay, now) == INT64_MAX);
    assert (!sn_replay_command (replay, pipe, "SIZE"));
    sn_replay_serve (replay, front);
    //  A partition served here: its requests are the actor's
    assert (!s_test_park (replay, client, front, 0, 1));
    assert (!s_test_park (replay, client, front, 0, -1));

    //  While 1 is taken over its client's request waits, a forwarded one hears 503
    s_test_command (replay, peer, "REPLAY", "1", NULL);
    assert (sn_replay_taking (replay, 1) && !sn_replay_taking (replay, 0));
    assert (sn_replay_waiting (replay) == 1);
    assert (s_test_park (replay, client, front, 0, 1));
    assert (s_test_park (replay, client, front, 1, 1));
    s_test_refused (client, "partition 1 is being taken over here, try again");
    //  Its turn: the first page, the next, and it is over; REPLAY hears so
    assert (sn_replay_step (replay, zclock_time ()));
    s_test_noted (&actor, "begin 1; ");
    uint64_t rid = s_test_asked (log, 1, false, NULL);
    assert (rid == actor.rid && sn_replay_waiting (replay) == 0);
    now = zclock_time ();
    assert (sn_replay_next (replay, now) <= now + 60000);
    assert (!s_test_page (replay, "{\"rid\": %u, \"code\": 200}", rid + 1));
    assert (s_test_page (replay,
                         "{\"rid\": %u, \"code\": 200, \"events\": [{\"key\": \"k1\", \"type\": "
                         "\"thing.done\", \"event\": {\"id\": \"a\"}}], \"next\": \"k1\"}",
                         rid));
    rid = s_test_asked (log, 1, false, "k1");
    assert (s_test_page (replay, "{\"rid\": %u, \"code\": 200, \"events\": []}", rid));
    s_test_noted (&actor, "thing.done id; done 1; serve; ");
    assert (!sn_replay_taking (replay, 1));
    s_test_command (replay, peer, NULL, NULL, "OK");
    s_test_command (replay, peer, "REREADS", NULL, "0");
    //  A page come late is no one's
    assert (!s_test_page (replay, "{\"rid\": %u, \"code\": 200}", rid));

    //  A re-read that fails is discarded, one whose every page came adopted
    s_test_command (replay, peer, "REREAD", "0", "OK");
    s_test_command (replay, peer, "REREAD", "2", "REREAD: no partition 2");
    assert (sn_replay_step (replay, zclock_time ()));
    assert (sn_replay_rereading (replay, 0) && !sn_replay_taking (replay, 0));
    rid = s_test_asked (log, 0, true, NULL);
    assert (s_test_page (replay, "{\"rid\": %u, \"code\": 503, \"error\": \"busy\"}", rid));
    s_test_noted (&actor, "reread 0; discard 0; ");
    assert (!sn_replay_rereading (replay, 0));
    s_test_command (replay, peer, "REREAD", "0", "OK");
    now = zclock_time ();
    while (!sn_replay_step (replay, now)) {
        int64_t next = sn_replay_next (replay, now);
        assert (next < now + 10000);
        zclock_sleep ((int) (next > now ? next - now : 1));
        now = zclock_time ();
    }
    rid = s_test_asked (log, 0, true, NULL);
    assert (s_test_page (replay, "{\"rid\": %u, \"code\": 200, \"events\": []}", rid));
    s_test_noted (&actor, "reread 0; adopt 0; ");
    s_test_command (replay, peer, "REREADS", NULL, "2");

    //  A takeover that fails drops what it loaded, anew, and REPLAY hears why
    s_test_command (replay, peer, "REPLAY", "0", NULL);
    assert (sn_replay_step (replay, zclock_time ()));
    rid = s_test_asked (log, 0, false, NULL);
    assert (s_test_page (replay, "{\"rid\": %u, \"code\": 503, \"error\": \"busy\"}", rid));
    s_test_noted (&actor, "begin 0; drop 0 anew; ");
    assert (!sn_replay_taking (replay, 0) && sn_owners_taking_over (owners, 0));
    s_test_command (replay, peer, NULL, NULL, "scan of partition 0 failed: busy");
    s_test_command (replay, peer, "REPLAY", "9", "REPLAY: no partition 9");

    //  At $TERM the requests still waiting hear that none will end here
    s_test_command (replay, peer, "REPLAY", "1", NULL);
    assert (s_test_park (replay, client, front, 0, 1));
    sn_replay_stop (replay);
    s_test_refused (client, "node is stopping");
    if (verbose)
        zsys_info ("sn_replay test: %" PRIu64 " pages asked", actor.rid);

    sn_replay_destroy (&replay);
    sn_replay_destroy (&replay);
    sn_owners_destroy (&owners);
    zsock_destroy (&peer);
    zsock_destroy (&pipe);
    zsock_destroy (&client);
    zsock_destroy (&front);
    zsock_destroy (&scan);
    zsock_destroy (&log);
    printf ("OK\n");
}
