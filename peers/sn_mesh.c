/*  sn_mesh: the mesh actor, membership layer.

    State lives in three tables. The member table (sn_members) is the truth about the
    cluster; the placement table is recomputed from it whenever its version moves.
    The peers hash holds, per member other than self, the DEALER we talk to it on and
    the ROUTER identities its hellos came from. The routes hash maps those identities
    back to member names: a frame on the inbox whose identity is not in routes has not
    said hello and is dropped unless it is a hello.

    Every DEALER gets an explicit routing id before it connects, so that when its TCP
    connection drops and reconnects the inbox on the other side still knows it: a
    DEALER does not repeat its hello on reconnect. The inbox uses ROUTER_HANDOVER so a
    reconnection takes the identity over from the stale connection.
*/
#include "sn_mesh.h"
#include "sn_actor.h"
#include "sn_routed.h"
#include "sn_key.h"
#include "sn_members.h"
#include "sn_msg.h"
#include "sn_placement.h"
#include "sn_store.h"
#include "sn_zap.h"

//  Messages queued to one peer before ZeroMQ drops them: a few seconds of writes
//  at full speed. A write that cannot be queued counts as not written there.
#define S_PEER_HWM 20000

//  Largest peer frame decoded: a replica write of the largest event, or a repair
//  page of the store's largest scan page.
#define S_PEER_MAX_SIZE (16 * 1024 * 1024)

#define S_CALLS          65536               //  calls in flight, a power of two
#define S_REPLICAS_MAX   64                  //  replicas a write tracks (one bit each)
#define S_HINTS_MAX      100000              //  hints kept for members that are down
#define S_HINT_BYTES_MAX (256 * 1024 * 1024) //  and their size
#define S_HINTS_PER_BEAT 1000                //  hint deliveries started per heartbeat
#define S_AE_BUCKETS_MAX 8                   //  differing buckets repaired per exchange
#define S_AE_MINUTES     (SN_STORE_BUCKET_MS / SN_STORE_MINUTE_MS)
#define S_AE_REFINED_MAX                                                                           \
    64                            //  refined calls of a partition in flight, before a peer's
                                  //  refined digests and minute pulls wait for the next round
#define S_PUSH_PAGE        256    //  events per repair message
#define S_BURST            256    //  messages read from a socket per wakeup
#define S_AE_SEEN_MAX      100000 //  differing buckets remembered between rounds
#define S_FORWARD_HOPS     4      //  most times one request is forwarded
#define S_FORWARD_WAIT_MAX 60000  //  longest ms a forward's try may take
#define S_PROBE_BEATS      10     //  heartbeats between hellos to members gone

//  Anti-entropy leaves alone the hours of key time within this many ms of the
//  retention horizon: replicas delete the user events there at slightly different
//  moments (their sweeps, their clocks), so their digests of those hours differ for
//  a while by events that are expired anyway. Their internal events are compared
//  once the horizon has passed them. The margin is the largest clock skew between
//  nodes the README says is tolerated (4 min) plus the store's sweep period (1 s,
//  rounded up to a minute): with more skew, replicas' digests of the hours just past
//  the margin differ until every node has swept them, and anti-entropy compares and
//  copies them back and forth (copies the receivers then drop) for that while.
#define S_HORIZON_MARGIN (5 * 60 * 1000)

//  Identities remembered per member: its member DEALER, its join DEALER and a couple
//  of predecessors from before a restart. Older ones are forgotten.
#define S_ROUTES_MAX 4

//  Most links to members open at once. Every socket of the process comes out of one
//  ZeroMQ context, which holds 1024 (CZMQ's default), and a socket past that aborts
//  the process; the actors, pipes and HTTP threads (up to 256) hold a few hundred. A
//  member table holds up to SN_MEMBERS_MAX, and one ping can fill it: the members
//  past this stay unlinked (unreachable) until links close.
#define S_LINKS_MAX 512

//  How long the bye may linger in a DEALER's queue at stop.
#define S_BYE_LINGER_MS 100

#define S_ERROR_MAX 256

//  What we keep about one member other than self.
typedef struct {
    char *name;                 //  member name, also its key in peers
    zsock_t *dealer;            //  link to its inbox, NULL when not linked
    char *endpoint;             //  where dealer is connected
    uint64_t incarnation;       //  incarnation dealer was made for
    char *routes[S_ROUTES_MAX]; //  identities (hex) its hellos came from, oldest first
    int64_t probe_until;        //  dead or left: keep a link until then, to say hello
    bool heard;                 //  it sent us something since dealer was made
    size_t route_count;         //  entries used in routes
    sn_pack_t *writes;          //  replica writes for it gathered this wakeup, or NULL
    uint32_t write_count;       //  how many
    uint64_t *write_calls;      //  the call of each
    uint32_t *write_targets;    //  and its replica index
    uint32_t write_room;        //  slots in write_calls and write_targets
    sn_pack_t *acks;            //  acks of its replica writes gathered, or NULL
    uint32_t ack_count;         //  how many
    int64_t scan_skip_until;    //  zclock_mono until which scans leave it out: it let a
                                //  scan page go unanswered or answered a bad one; or 0
} s_peer_t;

//  The outcome of one item of a bulk.
typedef struct {
    int code;                 //  201, or why not
    char key[SN_KEY_MAX + 1]; //  its key, when it got that far
    char *error;              //  the reason, when code is not 201
} s_item_t;

//  What a call is waiting for.
typedef enum {
    S_CALL_WRITE = 1,    //  a caller's put, from the replicas
    S_CALL_REMOTE_WRITE, //  a peer's replica write, from our store
    S_CALL_GET,          //  a caller's get, from our store, then from the replicas
    S_CALL_REMOTE_GET,   //  a peer's read, from our store
    S_CALL_DIGEST,       //  our digest of p, to send to a replica
    S_CALL_COMPARE,      //  our digest of p, to compare with a replica's
    S_CALL_PUSH,         //  a page of a bucket of p, to push to a replica
    S_CALL_HINT,         //  a replica storing a hint we kept for it
    S_CALL_BULK,         //  a caller's bulk: its items are writes of their own
    S_CALL_FORWARD,      //  a caller's request, at a partition's owner
    S_CALL_REMOTE_FWD,   //  a peer's forwarded request, at our frontend
    S_CALL_RANGE,        //  a caller's range from every member, or scan from p's replicas
    S_CALL_BATCH,        //  our store's copies of a burst of puts, as one bulk
} s_call_kind_t;

//  A hello refused, for GET /cluster.
typedef struct {
    char reason[S_ERROR_MAX]; //  printable ASCII, or "" for none
    int64_t at;               //  unix ms it last happened
    int64_t logged;           //  mono ms it was last logged
} s_refusal_t;

//  One member's page of a range read.
typedef struct {
    char name[SN_NAME_MAX + 1]; //  the member asked
    sn_msg_t *msg;              //  the message holding its page, NULL until it answers
    const sn_value_t *page;     //  {events: [{key, event, ...}], next}
} s_page_t;

//  A request out, to the store or to peers, and what to do with the answers.
typedef struct {
    uint64_t id;                //  its rid towards the store and peers
    s_call_kind_t kind;         //  what it waits for
    int64_t deadline;           //  zclock_mono when it is given up
    sn_routed_t routed;         //  WRITE, GET: the caller, to answer
    uint64_t rid;               //  the caller's rid; REMOTE_*: the peer's call id
    char peer[SN_NAME_MAX + 1]; //  REMOTE_*: who asked; others: the replica
    char key[SN_KEY_MAX + 1];   //  WRITE, GET: the key; PUSH: where its scan ends
    uint32_t p;                 //  the partition
    uint32_t wait;              //  FORWARD: ms each try may take, 0 for the write timeout
    int64_t until;              //  a call with a wait of its own: its deadline, kept
                                //  in self->waits, out of the ring's order; or 0
    bool refined;               //  DIGEST, COMPARE: of one bucket per minute, not per hour
    uint64_t within;            //  DIGEST, COMPARE when refined: that bucket's start
    uint32_t replicas;          //  WRITE: replicas of p
    uint32_t need;              //  WRITE: stores the commit level needs;
                                //  REMOTE_WRITE: our index among the replicas
    uint32_t sent;              //  WRITE, GET: requests out
    uint32_t answered;          //  WRITE, GET: answers in
    uint32_t acked;             //  WRITE: replicas that stored it
    uint32_t self_index;        //  WRITE: our index among the replicas
    uint64_t answered_mask;     //  WRITE, GET: which replicas answered
    uint64_t sent_mask;         //  WRITE, GET: which replicas were asked
    uint32_t refusals;          //  WRITE: replicas that refused it (4xx)
    bool conflict;              //  WRITE: a replica holds another event under the key
    const char *level;          //  WRITE: the commit level's name (static)
    int refusal;                //  WRITE: a replica's 4xx, for when the write fails
    char error[S_ERROR_MAX];    //  and its reason
    sn_msg_t *theirs;           //  COMPARE: the replica's digest
    uint64_t hint;              //  HINT: the hint's id
    uint64_t parent;            //  WRITE: the BULK it is an item of, 0 for none
    uint32_t index;             //  WRITE: which item; BULK: how many items
    s_item_t *items;            //  BULK: the outcome of each item
    uint32_t remaining;         //  BULK: items not settled yet
    uint64_t *local;            //  BULK: the items our store takes in one bulk
    uint32_t local_count;       //  BULK: how many
    bool batched;               //  WRITE: our store's copy went with its bulk
    zframe_t *request;          //  FORWARD: the request, packed for the owner
    uint32_t tries;             //  FORWARD: replicas tried so far
    s_page_t *pages;            //  RANGE: the pages in so far, sent slots
    uint64_t limit;             //  RANGE: events the caller wants at most
    bool scan;                  //  RANGE: a scan of partition p, not a range of keys
    bool late;                  //  RANGE, scan: the replicas' time is up, only our
                                //  store's page is waited for
    char *from, *to, *prefix;   //  RANGE: the bounds asked, to check pages; or NULL
    size_t from_len, to_len;    //  RANGE: their lengths
    size_t prefix_len;
} s_call_t;

//  An event kept for a replica that is down: the hint message as it came.
typedef struct {
    uint64_t id;        //  key in hints, as text
    sn_msg_t *msg;      //  {op: "hint", for, key, type?, p, event}
    uint64_t in_flight; //  call delivering it, 0 when none
} s_hint_t;

//  A join endpoint and the DEALER saying hello to it until it answers.
typedef struct {
    char *endpoint;  //  as configured
    zsock_t *dealer; //  NULL once answered
} s_join_t;

typedef struct {
    zsock_t *pipe;               //  actor command pipe
    zpoller_t *poller;           //  pipe, inbox, ops
    zsock_t *inbox;              //  peer ROUTER
    zsock_t *ops;                //  ops ROUTER
    char *name;                  //  this node's name
    char *endpoint;              //  configured peer endpoint, then the bound one
    char *ops_endpoint;          //  configured ops endpoint
    uint32_t partitions;         //  P
    uint32_t rf;                 //  replicas per partition
    s_refusal_t refused;         //  the last hello we refused
    s_refusal_t refused_by;      //  the last refusal of our hello
    int64_t refuse_sent;         //  mono ms we last told a node it was refused
    int64_t links_full_logged;   //  mono ms we last said S_LINKS_MAX left members unlinked
    uint64_t ticket;             //  random, in our hellos: a refusal must echo it
    int64_t heartbeat_ms;        //  ping interval
    int64_t suspect_ms;          //  silence before suspect
    int64_t dead_ms;             //  suspicion before dead
    bool verbose;                //  log membership traffic
    s_join_t *joins;             //  join endpoints
    size_t join_count;           //  entries in joins
    sn_members_t *members;       //  member table, NULL until started
    sn_placement_t *placement;   //  partition table, NULL until started
    uint64_t placed_version;     //  members version the placement was computed from
    int64_t unplaced_until;      //  joining: zclock_mono until which no placement is
                                 //  published unless a join endpoint answers; or 0
    zhashx_t *peers;             //  name -> s_peer_t, every member but self
    zhashx_t *routes;            //  identity (hex) -> name (char *) of hello'd connections
    sn_pack_t *out;              //  message being built
    uint64_t dropped;            //  peer frames dropped as malformed or unauthenticated
    int64_t next_heartbeat;      //  zclock_mono of the next heartbeat
    uint64_t beats;              //  heartbeats so far
    bool silent;                 //  stop without bye (tests)
    bool terminated;             //  $TERM received
    char *store_endpoint;        //  the store actor, or NULL
    zsock_t *store;              //  DEALER to it
    sn_keygen_t *keygen;         //  makes the keys of writes taken here
    int64_t write_timeout_ms;    //  replica writes and reads
    int64_t anti_entropy_ms;     //  between anti-entropy rounds
    int64_t next_anti_entropy;   //  zclock_mono of the next round
    s_call_t **calls;            //  S_CALLS slots, call id & (S_CALLS - 1)
    uint64_t next_call;          //  id of the next call; 0 is never one
    uint64_t oldest_call;        //  every call below it has ended
    zhashx_t *hints;             //  id (text) -> s_hint_t
    uint64_t next_hint;          //  last hint id given
    size_t hint_bytes;           //  size of the hints kept
    uint64_t hints_dropped;      //  hints refused for want of room
    uint64_t writes_failed;      //  writes that missed their commit level
    uint64_t ae_rounds;          //  anti-entropy rounds started
    int64_t ae_last;             //  wall clock ms of the last one, 0 for none
    uint64_t ae_turn;            //  rotates the replica each partition is compared with
    uint64_t ae_pushed;          //  events pushed to replicas by anti-entropy
    uint64_t ae_received;        //  events received from replicas by anti-entropy
    uint32_t *ae_active;         //  per partition: anti-entropy calls in flight
    uint32_t *ae_refined;        //  per partition: those of them about minutes
    zhashx_t *ae_seen;           //  "peer/p/t" -> our [count, xor] of a differing bucket
    zlistx_t *waits;             //  ids of calls with a wait of their own (until)
    sn_pack_t *req;              //  request to the store being built
    sn_pack_t *reply;            //  reply to a caller being built
    sn_pack_t *batch;            //  our store's items of a bulk being built
    sn_pack_t *burst;            //  our store's copies of the puts (or peers' replica
                                 //  writes) read in this burst
    uint64_t burst_ids[S_BURST]; //  their calls
    uint32_t burst_count;        //  how many
    sn_routed_t incoming;        //  the request being handled on ops
    char *frontend_endpoint;     //  where forwarded requests are delivered, or NULL
    zsock_t *frontend;           //  DEALER to it
    char *feed_endpoint;         //  where the placement is published, or NULL
    zsock_t *feed;               //  PUB there
    uint64_t forwarded;          //  requests forwarded to an owner
    uint64_t scan_silent;        //  replicas left out of a scan page: no answer in time
    uint64_t scan_bad;           //  replicas left out of a scan page: a malformed page
    uint64_t scan_skipped;       //  replicas not asked for a scan page: silent or bad lately
    uint64_t scan_rereads;       //  re-reads begun: scans with reread from a first event
    char *curve_public;          //  cluster certificate's public key (Z85), or NULL: open
    char *curve_secret;          //  its secret key
    char *zap_domain;            //  the inbox's ZAP domain
    int64_t retention;           //  ms user events are kept, by key time; 0: for ever
    sn_horizon_t horizon;        //  user events with key time before it have expired
} self_t;

static void
s_peer_destroy (void **item_p)
{
    s_peer_t *peer = (s_peer_t *) *item_p;
    if (!peer)
        return;
    zsock_destroy (&peer->dealer);
    sn_pack_destroy (&peer->writes);
    sn_pack_destroy (&peer->acks);
    free (peer->write_calls);
    free (peer->write_targets);
    free (peer->name);
    free (peer->endpoint);
    for (size_t index = 0; index < peer->route_count; index++)
        free (peer->routes[index]);
    free (peer);
    *item_p = NULL;
}

static void s_call_free (s_call_t *call);

static void
s_hint_destroy (void **item_p)
{
    s_hint_t *hint = (s_hint_t *) *item_p;
    if (hint) {
        sn_msg_destroy (&hint->msg);
        free (hint);
        *item_p = NULL;
    }
}

static void
s_string_destroy (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

static self_t *
s_self_new (zsock_t *pipe, const sn_mesh_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->poller = zpoller_new (pipe, NULL);
    assert (self->poller);
    self->name = strdup (config->name ? config->name : "");
    self->endpoint = strdup (config->endpoint ? config->endpoint : "");
    self->ops_endpoint = strdup (config->ops_endpoint ? config->ops_endpoint : "");
    self->partitions = config->partitions;
    self->rf = config->rf;
    self->heartbeat_ms = config->heartbeat_ms > 0 ? config->heartbeat_ms : 500;
    self->suspect_ms = config->suspect_ms > 0 ? config->suspect_ms : 2000;
    self->dead_ms = config->dead_ms > 0 ? config->dead_ms : 4000;
    self->verbose = config->verbose;
    //  The join list is read here, before the actor signals, while the caller still
    //  holds it.
    if (config->join && zlist_size (config->join)) {
        self->joins = (s_join_t *) zmalloc (zlist_size (config->join) * sizeof (s_join_t));
        for (const char *endpoint = (const char *) zlist_first (config->join); endpoint;
             endpoint = (const char *) zlist_next (config->join))
            self->joins[self->join_count++].endpoint = strdup (endpoint);
    }
    self->peers = zhashx_new ();
    zhashx_set_destructor (self->peers, s_peer_destroy);
    self->routes = zhashx_new ();
    zhashx_set_destructor (self->routes, s_string_destroy);
    self->out = sn_pack_new ();
    self->store_endpoint = config->store ? strdup (config->store) : NULL;
    self->write_timeout_ms = config->write_timeout_ms > 0 ? config->write_timeout_ms : 2000;
    self->anti_entropy_ms = config->anti_entropy_ms > 0 ? config->anti_entropy_ms : 2000;
    self->retention = config->event_retention_ms > 0 ? config->event_retention_ms : 0;
    self->calls = (s_call_t **) zmalloc (S_CALLS * sizeof (s_call_t *));
    self->next_call = self->oldest_call = 1;
    self->ae_seen = zhashx_new ();
    //  Not a secret, only unguessable by a stranger who never heard our hello
    zuuid_t *uuid = zuuid_new ();
    memcpy (&self->ticket, zuuid_data (uuid), sizeof self->ticket);
    zuuid_destroy (&uuid);
    self->waits = zlistx_new ();
    zhashx_set_destructor (self->ae_seen, s_string_destroy);
    self->hints = zhashx_new ();
    zhashx_set_destructor (self->hints, s_hint_destroy);
    self->req = sn_pack_new ();
    self->reply = sn_pack_new ();
    self->batch = sn_pack_new ();
    self->burst = sn_pack_new ();
    self->frontend_endpoint = config->frontend ? strdup (config->frontend) : NULL;
    self->feed_endpoint = config->feed ? strdup (config->feed) : NULL;
    if (config->curve_public && config->curve_secret) {
        self->curve_public = strdup (config->curve_public);
        self->curve_secret = strdup (config->curve_secret);
        self->zap_domain = strdup (config->zap_domain ? config->zap_domain : "");
    }
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    for (size_t slot = 0; slot < S_CALLS; slot++)
        if (self->calls[slot])
            s_call_free (self->calls[slot]);
    free (self->calls);
    zhashx_destroy (&self->hints);
    zhashx_destroy (&self->ae_seen);
    zlistx_destroy (&self->waits);
    free (self->ae_active);
    free (self->ae_refined);
    sn_pack_destroy (&self->req);
    sn_pack_destroy (&self->reply);
    sn_pack_destroy (&self->batch);
    sn_pack_destroy (&self->burst);
    sn_keygen_destroy (&self->keygen);
    zsock_destroy (&self->store);
    free (self->store_endpoint);
    zsock_destroy (&self->frontend);
    free (self->frontend_endpoint);
    zsock_destroy (&self->feed);
    free (self->feed_endpoint);
    zhashx_destroy (&self->peers);
    zhashx_destroy (&self->routes);
    for (size_t index = 0; index < self->join_count; index++) {
        zsock_destroy (&self->joins[index].dealer);
        free (self->joins[index].endpoint);
    }
    free (self->joins);
    sn_members_destroy (&self->members);
    sn_placement_destroy (&self->placement);
    sn_pack_destroy (&self->out);
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->inbox);
    zsock_destroy (&self->ops);
    free (self->name);
    free (self->endpoint);
    free (self->ops_endpoint);
    free (self->curve_public);
    if (self->curve_secret)
        explicit_bzero (self->curve_secret, strlen (self->curve_secret));
    free (self->curve_secret);
    free (self->zap_domain);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Outgoing peer messages, built into self->out

//  A hello on a link to a member names it in to: whoever listens at its endpoint
//  now may be another node (the port reused after the member went), which must not
//  take us, and the news in the pings behind, for its own cluster. A hello to a join
//  endpoint names no one.
static void
s_pack_hello (self_t *self, const char *to)
{
    const sn_member_t *me = sn_members_self (self->members);
    sn_pack_reset (self->out);
    sn_pack_map (self->out, to ? 9 : 8);
    if (to)
        sn_pack_kv_str (self->out, "to", to);
    sn_pack_kv_str (self->out, "op", "hello");
    sn_pack_kv_str (self->out, "name", me->name);
    sn_pack_kv_str (self->out, "endpoint", me->endpoint);
    sn_pack_kv_uint (self->out, "incarnation", me->incarnation);
    sn_pack_kv_uint (self->out, "partitions", self->partitions);
    sn_pack_kv_uint (self->out, "rf", self->rf);
    sn_pack_kv_uint (self->out, "ticket", self->ticket);
    sn_pack_kv_uint (self->out, "retention", (uint64_t) self->retention);
}

//  How often a refusal is logged, and a refused node told why, at most: a
//  misconfigured node says hello again on every probe.
#define S_REFUSAL_EVERY 10000

//  Keep a refusal for GET /cluster, in printable ASCII whatever a peer sent, and
//  log it at most every S_REFUSAL_EVERY ms.
static void s_refusal (self_t *self, s_refusal_t *refusal, int64_t now, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

static void
s_refusal (self_t *self, s_refusal_t *refusal, int64_t now, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (refusal->reason, sizeof refusal->reason, format, args);
    va_end (args);
    for (char *c = refusal->reason; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            *c = '?';
    refusal->at = zclock_time ();
    if (refusal->logged == 0 || now - refusal->logged >= S_REFUSAL_EVERY) {
        refusal->logged = now;
        zsys_error ("sn_mesh: %s: %s", self->name, refusal->reason);
    }
}

static void s_send (self_t *self, zsock_t *dealer);

//  With a cluster certificate, a DEALER to a peer is a CURVE client holding it and
//  expecting it of the server: only a member can answer, and only a member is let in.
static void
s_curve_client (self_t *self, zsock_t *dealer)
{
    if (!self->curve_public)
        return;
    zsock_set_curve_serverkey (dealer, self->curve_public);
    zsock_set_curve_publickey (dealer, self->curve_public);
    zsock_set_curve_secretkey (dealer, self->curve_secret);
}

//  A hello refused for a placement that is not ours: tell the node why, echoing its
//  ticket, on a link of its own that lives only for that message (it is not a
//  member here). At most one such link every S_REFUSAL_EVERY ms, and only over tcp:
//  a hello names any endpoint it likes.
static void
s_refuse (self_t *self, int64_t now, const char *endpoint, uint64_t ticket, const char *reason)
{
    if ((self->refuse_sent && now - self->refuse_sent < S_REFUSAL_EVERY) ||
        strncmp (endpoint, "tcp://", 6) != 0)
        return;
    self->refuse_sent = now;
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer)
        return;
    zsock_set_sndhwm (dealer, 1);
    zsock_set_sndtimeo (dealer, 0);
    zsock_set_linger (dealer, 1000);
    s_curve_client (self, dealer);
    if (zsock_connect (dealer, "%s", endpoint) == 0) {
        sn_pack_reset (self->out);
        sn_pack_map (self->out, 4);
        sn_pack_kv_str (self->out, "op", "refused");
        sn_pack_kv_str (self->out, "from", self->name);
        sn_pack_kv_uint (self->out, "ticket", ticket);
        sn_pack_kv_str (self->out, "reason", reason);
        s_send (self, dealer);
    }
    zsock_destroy (&dealer);
}

static void
s_pack_ping (self_t *self)
{
    size_t count;
    const sn_member_t *list = sn_members_list (self->members, &count);
    sn_pack_reset (self->out);
    sn_pack_map (self->out, 3);
    sn_pack_kv_str (self->out, "op", "ping");
    sn_pack_kv_str (self->out, "from", self->name);
    sn_pack_str (self->out, "members");
    sn_pack_array (self->out, (uint32_t) count);
    for (size_t index = 0; index < count; index++) {
        sn_pack_array (self->out, 4);
        sn_pack_str (self->out, list[index].name);
        sn_pack_str (self->out, list[index].endpoint);
        sn_pack_uint (self->out, list[index].incarnation);
        sn_pack_str (self->out, sn_members_status_name (list[index].status));
    }
}

static void
s_pack_bye (self_t *self)
{
    sn_pack_reset (self->out);
    sn_pack_map (self->out, 3);
    sn_pack_kv_str (self->out, "op", "bye");
    sn_pack_kv_str (self->out, "from", self->name);
    sn_pack_kv_uint (self->out, "incarnation", sn_members_self (self->members)->incarnation);
}

//  Queue self->out on a DEALER. A full queue (a slow or vanished peer) drops the
//  message: the next heartbeat carries the same news again.
static void
s_send (self_t *self, zsock_t *dealer)
{
    if (zmq_send (zsock_resolve (dealer), sn_pack_data (self->out), sn_pack_size (self->out),
                  ZMQ_DONTWAIT) == -1 &&
        self->verbose)
        zsys_info ("sn_mesh: %s: send dropped: %s", self->name, zmq_strerror (zmq_errno ()));
}

//  A DEALER to a peer inbox that says hello first, to the member named to (NULL for
//  a join endpoint). Options are set before connecting so that they apply to the
//  connection from the start.
static zsock_t *
s_dealer_new (self_t *self, const char *endpoint, const char *to)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    zsock_set_sndhwm (dealer, S_PEER_HWM);
    zsock_set_sndtimeo (dealer, 0);
    zsock_set_linger (dealer, 0);
    zuuid_t *uuid = zuuid_new ();
    zsock_set_identity (dealer, zuuid_str (uuid));
    zuuid_destroy (&uuid);
    s_curve_client (self, dealer);
    if (zsock_connect (dealer, "%s", endpoint) == -1) {
        //  A member advertised an endpoint ZeroMQ cannot use; it stays unlinked.
        if (self->verbose)
            zsys_info ("sn_mesh: %s: cannot connect to %s", self->name, endpoint);
        zsock_destroy (&dealer);
        return NULL;
    }
    s_pack_hello (self, to);
    s_send (self, dealer);
    return dealer;
}

//  --------------------------------------------------------------------------
//  Links and placement, brought in line with the member table

static s_peer_t *
s_peer_require (self_t *self, const char *name)
{
    s_peer_t *peer = (s_peer_t *) zhashx_lookup (self->peers, name);
    if (!peer) {
        peer = (s_peer_t *) zmalloc (sizeof (s_peer_t));
        peer->name = strdup (name);
        zhashx_insert (self->peers, name, peer);
    }
    return peer;
}

//  Ping every member linked, or (every false) those we have heard from since their
//  link was made: a link whose other end never answers queues what is sent to it,
//  and gossip can name a thousand such members, each ping the whole table. A member
//  that is there says hello when it learns of us, so the heartbeat pings the others
//  every S_PROBE_BEATS beats only (and a new link pings once at once).
static void
s_ping_all (self_t *self, bool every)
{
    s_pack_ping (self);
    for (s_peer_t *peer = (s_peer_t *) zhashx_first (self->peers); peer;
         peer = (s_peer_t *) zhashx_next (self->peers))
        if (peer->dealer && (every || peer->heard))
            s_send (self, peer->dealer);
}

//  Keep a DEALER to every member that is alive or suspect, and to a dead member that
//  we still hear from after declaring it dead: it is alive but does not know it was declared dead,
//  and only our pings can tell it so that it refutes. A new incarnation or endpoint means a new
//  process, which needs a new connection and a new hello. Iterates the member list, never the peers
//  hash, so peers may be added on the way. At most S_LINKS_MAX links are open.
static void
s_links_sync (self_t *self, int64_t now)
{
    size_t count, links = 0, unlinked = 0;
    const sn_member_t *list = sn_members_list (self->members, &count);
    for (s_peer_t *peer = (s_peer_t *) zhashx_first (self->peers); peer;
         peer = (s_peer_t *) zhashx_next (self->peers))
        links += peer->dealer != NULL;
    for (size_t index = 0; index < count; index++) {
        const sn_member_t *member = &list[index];
        if (streq (member->name, self->name))
            continue;
        s_peer_t *peer = s_peer_require (self, member->name);
        bool wanted = member->status == SN_MEMBER_ALIVE || member->status == SN_MEMBER_SUSPECT ||
                      (member->status == SN_MEMBER_DEAD && member->heard_at > member->changed_at &&
                       now - member->heard_at < self->suspect_ms) ||
                      now < peer->probe_until;
        if (peer->dealer && (!wanted || member->incarnation != peer->incarnation ||
                             !streq (member->endpoint, peer->endpoint))) {
            zsock_destroy (&peer->dealer);
            links--;
            if (self->verbose)
                zsys_info ("sn_mesh: %s: unlinked %s", self->name, member->name);
        }
        if (wanted && !peer->dealer && links >= S_LINKS_MAX)
            unlinked++;
        else if (wanted && !peer->dealer) {
            peer->dealer = s_dealer_new (self, member->endpoint, member->name);
            peer->heard = false;
            links += peer->dealer != NULL;
            free (peer->endpoint);
            peer->endpoint = strdup (member->endpoint);
            peer->incarnation = member->incarnation;
            //  A new link is to a new process, or to one back from dead: it may
            //  answer scans again
            peer->scan_skip_until = 0;
            if (peer->dealer) {
                //  The hello went first; a ping right behind it tells the member
                //  everything we know, which is how a joiner learns the cluster.
                s_pack_ping (self);
                s_send (self, peer->dealer);
                if (self->verbose)
                    zsys_info ("sn_mesh: %s: linked %s at %s", self->name, member->name,
                               member->endpoint);
            }
        }
    }
    if (unlinked &&
        (!self->links_full_logged || now - self->links_full_logged >= S_REFUSAL_EVERY)) {
        self->links_full_logged = now;
        zsys_warning ("sn_mesh: %s: %zu members left unlinked: %d links open, the most held",
                      self->name, unlinked, S_LINKS_MAX);
    }
}

//  A member we can send to: linked, and alive or suspect.
static bool
s_reachable (self_t *self, const char *name)
{
    const sn_member_t *member = sn_members_lookup (self->members, name);
    s_peer_t *peer = (s_peer_t *) zhashx_lookup (self->peers, name);
    return member && peer && peer->dealer &&
           (member->status == SN_MEMBER_ALIVE || member->status == SN_MEMBER_SUSPECT);
}

//  The partition table on the feed, for the actors that own state by partition.
static void
s_publish (self_t *self)
{
    if (!self->feed || self->unplaced_until)
        return;
    sn_pack_t *out = self->out;
    uint32_t replicas = sn_placement_replica_count (self->placement);
    sn_pack_reset (out);
    sn_pack_map (out, 6);
    sn_pack_kv_str (out, "op", "placement");
    sn_pack_kv_str (out, "self", self->name);
    sn_pack_kv_uint (out, "version", self->placed_version);
    sn_pack_str (out, "owners");
    sn_pack_array (out, self->partitions);
    for (uint32_t p = 0; p < self->partitions; p++) {
        const char *owner = sn_placement_owner (self->placement, p);
        if (owner)
            sn_pack_str (out, owner);
        else
            sn_pack_nil (out);
    }
    sn_pack_str (out, "replicas");
    sn_pack_array (out, self->partitions);
    for (uint32_t p = 0; p < self->partitions; p++) {
        sn_pack_array (out, replicas);
        for (uint32_t index = 0; index < replicas; index++) {
            const char *name = sn_placement_replica (self->placement, p, index);
            if (name)
                sn_pack_str (out, name);
            else
                sn_pack_nil (out);
        }
    }
    //  The members a forward to a node can reach: for actors that tell every node
    //  something (which agents and workers are connected here)
    size_t count, reachable = 0;
    const sn_member_t *list = sn_members_list (self->members, &count);
    const char **names = (const char **) malloc ((count ? count : 1) * sizeof (char *));
    assert (names);
    for (size_t index = 0; index < count; index++)
        if (streq (list[index].name, self->name) || s_reachable (self, list[index].name))
            names[reachable++] = list[index].name;
    sn_pack_str (out, "members");
    sn_pack_array (out, (uint32_t) reachable);
    for (size_t index = 0; index < reachable; index++)
        sn_pack_str (out, names[index]);
    free (names);
    zmq_send (zsock_resolve (self->feed), sn_pack_data (out), sn_pack_size (out), ZMQ_DONTWAIT);
}

//  Whatever changed in the member table: relink and recompute placement.
static void s_publish (self_t *self);

static void
s_members_changed (self_t *self, int64_t now)
{
    s_links_sync (self, now);
    uint64_t version = sn_members_version (self->members);
    if (version != self->placed_version) {
        size_t count;
        const sn_member_t *list = sn_members_list (self->members, &count);
        if (sn_placement_update (self->placement, list, count) == -1)
            zsys_error ("sn_mesh: %s: placement rejected the member table", self->name);
        self->placed_version = version;
        s_publish (self);
    }
}

static void
s_heartbeat (self_t *self)
{
    int64_t now = zclock_mono ();
    int changed = sn_members_tick (self->members, now, self->suspect_ms, self->dead_ms);
    if (changed && self->verbose) {
        size_t count;
        const sn_member_t *list = sn_members_list (self->members, &count);
        for (size_t index = 0; index < count; index++)
            if (list[index].changed_at == now)
                zsys_info ("sn_mesh: %s: %s is %s", self->name, list[index].name,
                           sn_members_status_name (list[index].status));
    }
    //  A member that died or left may come back at its endpoint knowing no one (a
    //  first node restarted without --join): now and then a fresh link says hello
    //  there, and a member that answers is back in the cluster.
    if (++self->beats % S_PROBE_BEATS == 0) {
        size_t count;
        const sn_member_t *list = sn_members_list (self->members, &count);
        for (size_t index = 0; index < count; index++) {
            if ((list[index].status != SN_MEMBER_DEAD && list[index].status != SN_MEMBER_LEFT) ||
                streq (list[index].name, self->name))
                continue;
            s_peer_t *peer = s_peer_require (self, list[index].name);
            zsock_destroy (&peer->dealer);
            peer->probe_until = now + 2 * self->heartbeat_ms;
        }
    }
    if (self->unplaced_until && now >= self->unplaced_until) {
        self->unplaced_until = 0;
        zsys_warning ("sn_mesh: %s: no join endpoint answered in %" PRId64
                      " ms: placing partitions with the members known",
                      self->name, self->dead_ms);
    }
    s_members_changed (self, now);
    s_publish (self);
    s_ping_all (self, self->beats % S_PROBE_BEATS == 0);
    s_pack_hello (self, NULL);
    for (size_t index = 0; index < self->join_count; index++)
        if (self->joins[index].dealer)
            s_send (self, self->joins[index].dealer);
    self->next_heartbeat = now + self->heartbeat_ms;
}

//  --------------------------------------------------------------------------
//  Data: replicated writes, cluster reads, hinted handoff and anti-entropy.
//
//  Everything here waits on the store or on peers without blocking: each request
//  out is a call, numbered, kept in a ring, and finished by its answer or by its
//  deadline. Deadlines grow with the call number, so the oldest call is always the
//  next to expire; the few calls with a wait of their own (a forward that may take
//  longer than a write) are kept aside, in self->waits, and expire from there.

//  A client write at commit level: how many replicas must store it.
static uint32_t
s_level_need (const char *level, uint32_t replicas)
{
    if (streq (level, "ONE"))
        return 1;
    if (streq (level, "ALL"))
        return replicas;
    return replicas / 2 + 1;
}

static s_call_t *
s_call_new (self_t *self, s_call_kind_t kind)
{
    size_t slot = self->next_call & (S_CALLS - 1);
    if (self->calls[slot])
        return NULL; //  S_CALLS in flight: the caller is told the node is busy
    s_call_t *call = (s_call_t *) zmalloc (sizeof (s_call_t));
    call->id = self->next_call++;
    call->kind = kind;
    call->deadline = zclock_mono () + self->write_timeout_ms;
    self->calls[slot] = call;
    return call;
}

//  Give call a deadline of its own, ms from now, out of the ring's order.
static void
s_call_wait (self_t *self, s_call_t *call, int64_t ms)
{
    call->until = zclock_mono () + ms;
    zlistx_add_end (self->waits, (void *) (uintptr_t) call->id);
}

static s_call_t *
s_call_lookup (self_t *self, uint64_t id)
{
    if (id == 0 || id >= self->next_call)
        return NULL;
    s_call_t *call = self->calls[id & (S_CALLS - 1)];
    return call && call->id == id ? call : NULL;
}

static void
s_call_free (s_call_t *call)
{
    sn_routed_close (&call->routed);
    sn_msg_destroy (&call->theirs);
    zframe_destroy (&call->request);
    free (call->local);
    for (uint32_t index = 0; call->pages && index < call->sent; index++)
        sn_msg_destroy (&call->pages[index].msg);
    free (call->pages);
    free (call->from);
    free (call->to);
    free (call->prefix);
    if (call->items) {
        for (uint32_t index = 0; index < call->index; index++)
            free (call->items[index].error);
        free (call->items);
    }
    free (call);
}

static bool
s_call_is_ae (const s_call_t *call)
{
    return call->kind == S_CALL_DIGEST || call->kind == S_CALL_COMPARE || call->kind == S_CALL_PUSH;
}

//  An anti-entropy call of its partition begins; a refined one (of minutes) counts
//  apart too.
static void
s_ae_count (self_t *self, s_call_t *call, bool refined)
{
    self->ae_active[call->p]++;
    call->refined = refined;
    if (refined)
        self->ae_refined[call->p]++;
}

static void
s_call_end (self_t *self, s_call_t *call)
{
    if (s_call_is_ae (call) && self->ae_active[call->p] > 0)
        self->ae_active[call->p]--;
    if (s_call_is_ae (call) && call->refined && self->ae_refined[call->p] > 0)
        self->ae_refined[call->p]--;
    self->calls[call->id & (S_CALLS - 1)] = NULL;
    s_call_free (call);
}

//  Answer the caller of a call with the map in self->reply, and end the call.
static void
s_call_answer (self_t *self, s_call_t *call)
{
    sn_routed_set_payload (&call->routed, sn_pack_data (self->reply), sn_pack_size (self->reply));
    if (sn_routed_send (&call->routed, self->ops))
        sn_routed_close (&call->routed);
    s_call_end (self, call);
}

//  Send self->req to the store; false when it cannot take it now.
static bool
s_store_send (self_t *self)
{
    return self->store && zmq_send (zsock_resolve (self->store), sn_pack_data (self->req),
                                    sn_pack_size (self->req), ZMQ_DONTWAIT) != -1;
}

//  Start a request to our store for call: {op, rid: the call's id} and entries more
//  members, which the caller packs into self->req.
static void
s_store_begin (self_t *self, s_call_t *call, const char *op, uint32_t entries)
{
    sn_pack_reset (self->req);
    sn_pack_map (self->req, 2 + entries);
    sn_pack_kv_str (self->req, "op", op);
    sn_pack_kv_uint (self->req, "rid", call->id);
}

//  Send the request begun for call; a store that cannot take it now ends the call.
static void
s_store_call (self_t *self, s_call_t *call)
{
    if (!s_store_send (self))
        s_call_end (self, call);
}

//  Send self->out to a member; false when it is not linked or its queue is full.
static bool
s_peer_send (self_t *self, const char *name)
{
    s_peer_t *peer = (s_peer_t *) zhashx_lookup (self->peers, name);
    return peer && peer->dealer &&
           zmq_send (zsock_resolve (peer->dealer), sn_pack_data (self->out),
                     sn_pack_size (self->out), ZMQ_DONTWAIT) != -1;
}

//  The fields every copy of an event carries: {key, type?, p, event}, packed into
//  pack after the caller's own fields; entries counts them.
static uint32_t
s_event_entries (const sn_value_t *type)
{
    return type ? 4 : 3;
}

static void
s_pack_event (sn_pack_t *pack, const char *key, const sn_value_t *type, uint32_t p,
              const sn_value_t *event)
{
    sn_pack_kv_str (pack, "key", key);
    if (type)
        sn_pack_kv_value (pack, "type", type);
    sn_pack_kv_uint (pack, "p", p);
    sn_pack_kv_value (pack, "event", event);
}

//  ---- Outboxes: replica writes and acks for a peer, gathered while one wakeup is
//  handled and sent as one message each, so that a burst of puts costs a peer one
//  message rather than one per put.

#define S_OUTBOX_BYTES (4 * 1024 * 1024) //  a gathered message is sent at this size

static void s_outbox_send_writes (self_t *self, s_peer_t *peer);

//  Add a replica write {rid, i, key, type?, p, event} for peer.
static void
s_outbox_write (self_t *self, s_peer_t *peer, s_call_t *call, uint32_t target, const char *key,
                const sn_value_t *type, uint32_t p, const sn_value_t *event)
{
    if (!peer->writes)
        peer->writes = sn_pack_new ();
    if (peer->write_count == peer->write_room) {
        peer->write_room = peer->write_room ? 2 * peer->write_room : 64;
        peer->write_calls =
            (uint64_t *) realloc (peer->write_calls, peer->write_room * sizeof (uint64_t));
        peer->write_targets =
            (uint32_t *) realloc (peer->write_targets, peer->write_room * sizeof (uint32_t));
        assert (peer->write_calls && peer->write_targets);
    }
    sn_pack_map (peer->writes, 2 + s_event_entries (type));
    sn_pack_kv_uint (peer->writes, "rid", call->id);
    sn_pack_kv_uint (peer->writes, "i", target);
    s_pack_event (peer->writes, key, type, p, event);
    peer->write_calls[peer->write_count] = call->id;
    peer->write_targets[peer->write_count++] = target;
    if (sn_pack_size (peer->writes) >= S_OUTBOX_BYTES)
        s_outbox_send_writes (self, peer);
}

static void s_write_failed (s_call_t *call, uint32_t target);
static void s_write_settle (self_t *self, s_call_t *call);

static void
s_outbox_send_writes (self_t *self, s_peer_t *peer)
{
    if (!peer->write_count)
        return;
    sn_pack_reset (self->out);
    sn_pack_map (self->out, 2);
    sn_pack_kv_str (self->out, "op", "rputs");
    sn_pack_str (self->out, "writes");
    sn_pack_array (self->out, peer->write_count);
    sn_pack_raw (self->out, sn_pack_data (peer->writes), sn_pack_size (peer->writes));
    uint32_t count = peer->write_count;
    peer->write_count = 0;
    sn_pack_reset (peer->writes);
    if (peer->dealer && zmq_send (zsock_resolve (peer->dealer), sn_pack_data (self->out),
                                  sn_pack_size (self->out), ZMQ_DONTWAIT) != -1)
        return;
    //  Not even queued: those replicas did not get the writes
    for (uint32_t index = 0; index < count; index++) {
        s_call_t *call = s_call_lookup (self, peer->write_calls[index]);
        if (call && call->kind == S_CALL_WRITE) {
            s_write_failed (call, peer->write_targets[index]);
            s_write_settle (self, call);
        }
    }
}

//  Add an ack {rid, i, code, error?} for peer.
static void
s_outbox_ack (s_peer_t *peer, uint64_t rid, uint32_t target, uint64_t code, const char *error,
              size_t error_len)
{
    if (!peer->acks)
        peer->acks = sn_pack_new ();
    sn_pack_map (peer->acks, error ? 4 : 3);
    sn_pack_kv_uint (peer->acks, "rid", rid);
    sn_pack_kv_uint (peer->acks, "i", target);
    sn_pack_kv_uint (peer->acks, "code", code);
    if (error) {
        sn_pack_str (peer->acks, "error");
        sn_pack_strn (peer->acks, error, error_len);
    }
    peer->ack_count++;
}

//  Send everything gathered for every peer.
static void
s_outbox_flush (self_t *self)
{
    for (s_peer_t *peer = (s_peer_t *) zhashx_first (self->peers); peer;
         peer = (s_peer_t *) zhashx_next (self->peers)) {
        s_outbox_send_writes (self, peer);
        if (peer->ack_count) {
            sn_pack_reset (self->out);
            sn_pack_map (self->out, 2);
            sn_pack_kv_str (self->out, "op", "racks");
            sn_pack_str (self->out, "acks");
            sn_pack_array (self->out, peer->ack_count);
            sn_pack_raw (self->out, sn_pack_data (peer->acks), sn_pack_size (peer->acks));
            peer->ack_count = 0;
            sn_pack_reset (peer->acks);
            //  An ack that cannot be queued is a write the writer sees time out
            if (peer->dealer)
                zmq_send (zsock_resolve (peer->dealer), sn_pack_data (self->out),
                          sn_pack_size (self->out), ZMQ_DONTWAIT);
        }
    }
}

//  ---- Writes

static void s_bulk_answer (self_t *self, s_call_t *bulk);

//  The outcome of a write, to its caller or into its bulk.
static void
s_write_finish (self_t *self, s_call_t *call, int code, const char *error)
{
    if (call->parent) {
        s_call_t *bulk = s_call_lookup (self, call->parent);
        if (bulk) {
            s_item_t *item = &bulk->items[call->index];
            item->code = code;
            memcpy (item->key, call->key, sizeof item->key);
            item->error = error ? strdup (error) : NULL;
        }
        s_call_end (self, call);
        if (bulk && --bulk->remaining == 0)
            s_bulk_answer (self, bulk);
        return;
    }
    sn_pack_t *reply = self->reply;
    sn_pack_reset (reply);
    sn_pack_map (reply, error ? 5 : 4);
    sn_pack_kv_uint (reply, "rid", call->rid);
    sn_pack_kv_uint (reply, "code", (uint64_t) code);
    sn_pack_kv_str (reply, "key", call->key);
    sn_pack_kv_uint (reply, "written", call->acked);
    if (error)
        sn_pack_kv_str (reply, "error", error);
    s_call_answer (self, call);
}

static void
s_write_settle (self_t *self, s_call_t *call)
{
    if (call->acked >= call->need) {
        s_write_finish (self, call, 201, NULL);
        return;
    }
    if (call->answered < call->sent && zclock_mono () < call->deadline)
        return; //  answers may still make the level
    self->writes_failed++;
    if (call->conflict || (call->refusal && call->refusals == call->sent)) {
        //  Another event under its key on a replica, or every replica refusing it for
        //  a reason the caller can fix: that is the answer.
        s_write_finish (self, call, call->refusal, call->error);
        return;
    }
    char error[S_ERROR_MAX];
    snprintf (error, sizeof error, "commit %s not met: %u of %u replicas written, %u needed%s",
              call->level, call->acked, call->replicas, call->need,
              call->answered < call->sent ? " (others did not answer in time)" : "");
    s_write_finish (self, call, 503, error);
}

//  A replica that could not be sent the write counts as one that answered no.
static void
s_write_failed (s_call_t *call, uint32_t target)
{
    if (call->answered_mask & (1ull << target))
        return;
    call->answered_mask |= 1ull << target;
    call->answered++;
}

//  A replica's answer to a write: target is its index among the replicas.
static void
s_write_answer (self_t *self, s_call_t *call, uint64_t target, uint64_t code, const char *error,
                size_t error_len)
{
    if (target >= S_REPLICAS_MAX || !(call->sent_mask & (1ull << target)) ||
        (call->answered_mask & (1ull << target)))
        return;
    call->answered_mask |= 1ull << target;
    call->answered++;
    if (code == 201)
        call->acked++;
    else if (code >= 400 && code < 500) {
        call->refusals++;
        call->conflict = call->conflict || code == 409;
        if (!call->refusal || code == 409) {
            call->refusal = (int) code;
            snprintf (call->error, sizeof call->error, "%.*s", (int) error_len, error ? error : "");
        }
    }
    s_write_settle (self, call);
}

//  Keep a hint: {for, key, type?, p, event}, decoded; taken over.
static void
s_hint_keep (self_t *self, sn_msg_t **msg_p)
{
    sn_msg_t *msg = *msg_p;
    *msg_p = NULL;
    if (zhashx_size (self->hints) >= S_HINTS_MAX ||
        self->hint_bytes + sn_msg_size (msg) > S_HINT_BYTES_MAX) {
        //  Anti-entropy repairs what a dropped hint would have
        self->hints_dropped++;
        sn_msg_destroy (&msg);
        return;
    }
    s_hint_t *hint = (s_hint_t *) zmalloc (sizeof (s_hint_t));
    hint->id = ++self->next_hint;
    hint->msg = msg;
    self->hint_bytes += sn_msg_size (msg);
    char id[24];
    snprintf (id, sizeof id, "%" PRIu64, hint->id);
    zhashx_insert (self->hints, id, hint);
}

static void
s_hint_drop (self_t *self, uint64_t id)
{
    char text[24];
    snprintf (text, sizeof text, "%" PRIu64, id);
    s_hint_t *hint = (s_hint_t *) zhashx_lookup (self->hints, text);
    if (hint) {
        self->hint_bytes -= sn_msg_size (hint->msg);
        zhashx_delete (self->hints, text);
    }
}

//  Hand hints to the replicas they are for once those are back; each is kept until
//  the replica has stored it.
static void
s_hints_deliver (self_t *self)
{
    size_t started = 0, looked = 0;
    zlist_t *gone = zlist_new ();
    zlist_autofree (gone);
    for (s_hint_t *hint = (s_hint_t *) zhashx_first (self->hints);
         hint && started < S_HINTS_PER_BEAT && looked < 4 * S_HINTS_PER_BEAT;
         hint = (s_hint_t *) zhashx_next (self->hints)) {
        looked++;
        if (hint->in_flight && s_call_lookup (self, hint->in_flight))
            continue;
        const sn_value_t *root = sn_msg_root (hint->msg);
        char target[SN_NAME_MAX + 1];
        size_t len = 0;
        const char *name = sn_value_str (sn_value_get (root, "for"), &len);
        if (!name || len > SN_NAME_MAX)
            continue;
        memcpy (target, name, len);
        target[len] = 0;
        //  A member that left, or that we no longer know, will not take it: its
        //  partitions have other replicas now, which anti-entropy fills
        const sn_member_t *member = sn_members_lookup (self->members, target);
        if (!member || member->status == SN_MEMBER_LEFT) {
            //  The list copies its items: the id is written where it needs no freeing
            char id[24];
            snprintf (id, sizeof id, "%" PRIu64, hint->id);
            zlist_append (gone, id);
            continue;
        }
        if (!s_reachable (self, target))
            continue;
        s_call_t *call = s_call_new (self, S_CALL_HINT);
        if (!call)
            break;
        call->hint = hint->id;
        snprintf (call->peer, sizeof call->peer, "%s", target);
        hint->in_flight = call->id;
        const sn_value_t *type = sn_value_get (root, "type");
        sn_pack_reset (self->out);
        sn_pack_map (self->out, 3 + s_event_entries (type));
        sn_pack_kv_str (self->out, "op", "rput");
        sn_pack_kv_uint (self->out, "rid", call->id);
        sn_pack_kv_uint (self->out, "i", 0);
        sn_pack_kv_value (self->out, "key", sn_value_get (root, "key"));
        if (type)
            sn_pack_kv_value (self->out, "type", type);
        sn_pack_kv_value (self->out, "p", sn_value_get (root, "p"));
        sn_pack_kv_value (self->out, "event", sn_value_get (root, "event"));
        if (!s_peer_send (self, target)) {
            hint->in_flight = 0;
            s_call_end (self, call);
        }
        started++;
    }
    for (char *id = (char *) zlist_first (gone); id; id = (char *) zlist_next (gone))
        s_hint_drop (self, strtoull (id, NULL, 10));
    zlist_destroy (&gone);
}

//  The retention horizon: user events whose key time is before it have expired; 0
//  without a retention. It never goes back, even when the clock does, and moves no
//  faster than monotonic time, as the store's does (sn_horizon_t).
static int64_t
s_horizon (self_t *self)
{
    return sn_horizon_now (&self->horizon, self->retention, "sn_mesh");
}

//  True for a user event (no type, or "event") whose key time is past the horizon.
static bool
s_expired (self_t *self, const sn_value_t *type, int64_t ts)
{
    return self->retention && (!type || sn_value_streq (type, "event")) && ts < s_horizon (self);
}

//  True when anti-entropy leaves the hour of key time holding t alone: within
//  S_HORIZON_MARGIN of the horizon.
static bool
s_ae_skip (self_t *self, uint64_t t)
{
    if (!self->retention)
        return false;
    int64_t start = (int64_t) (t - t % SN_STORE_BUCKET_MS);
    int64_t horizon = s_horizon (self);
    return start + SN_STORE_BUCKET_MS > horizon - S_HORIZON_MARGIN &&
           start <= horizon + S_HORIZON_MARGIN;
}

//  The commit level of a request, QUORUM by default; NULL when it names none.
static const char *
s_level (const sn_value_t *root)
{
    const sn_value_t *commit = sn_value_get (root, "commit");
    if (!commit || sn_value_streq (commit, "QUORUM"))
        return "QUORUM";
    if (sn_value_streq (commit, "ONE"))
        return "ONE";
    if (sn_value_streq (commit, "ALL"))
        return "ALL";
    return NULL;
}

//  Start writing item {event, key?, type?, pkey?} to every replica of its partition.
//  Returns the call, not settled yet, or NULL with the refusal in code and error. With
//  batch, our own store's copy is added to it (as a bulk item) rather than sent.
static s_call_t *
s_write_begin (self_t *self, const sn_value_t *root, const char *level, int *code, char *error,
               sn_pack_t *batch)
{
    const sn_value_t *event = sn_value_get (root, "event");
    const sn_value_t *type = sn_value_get (root, "type");
    const sn_value_t *pkey_value = sn_value_get (root, "pkey");
    const sn_value_t *key_value = sn_value_get (root, "key");
    size_t type_len = 0, pkey_len = 0, key_len = 0;
    const char *pkey = sn_value_str (pkey_value, &pkey_len);
    const char *given = sn_value_str (key_value, &key_len);
    if (!sn_value_is (event, SN_TYPE_MAP)) {
        *code = 400;
        snprintf (error, S_ERROR_MAX, "event: must be an object");
        return NULL;
    }
    if (type && (!sn_value_str (type, &type_len) || type_len == 0 || type_len > 64)) {
        *code = 400;
        snprintf (error, S_ERROR_MAX, "type: must be a string of 1 to 64 bytes");
        return NULL;
    }
    if (pkey_value && (!pkey || pkey_len == 0 || pkey_len > 256)) {
        *code = 400;
        snprintf (error, S_ERROR_MAX, "pkey: must be a string of 1 to 256 bytes");
        return NULL;
    }
    char key[SN_KEY_MAX + 1];
    if (key_value) {
        if (!given || key_len > SN_KEY_MAX || sn_key_time (given, key_len) < 0) {
            *code = 400;
            snprintf (error, S_ERROR_MAX, "key: not a supernode key");
            return NULL;
        }
        //  Keys in a member's name are that member's to make: one written ahead of its
        //  generator would make its own later writes conflict
        char suffix[SN_NAME_MAX + 1] = "";
        if (key_len > SN_KEY_TIME_LEN + 1 && key_len - SN_KEY_TIME_LEN - 1 <= SN_NAME_MAX) {
            memcpy (suffix, given + SN_KEY_TIME_LEN + 1, key_len - SN_KEY_TIME_LEN - 1);
            suffix[key_len - SN_KEY_TIME_LEN - 1] = 0;
        }
        if (*suffix && sn_members_lookup (self->members, suffix)) {
            *code = 400;
            snprintf (error, S_ERROR_MAX, "key: keys ending in -%s are made by node %s only",
                      suffix, suffix);
            return NULL;
        }
        //  It would be deleted as soon as written, and the replicas drop it
        if (s_expired (self, type, sn_key_time (given, key_len))) {
            *code = 422;
            snprintf (error, S_ERROR_MAX,
                      "key: %.*s is older than the event retention (%" PRId64 " ms)", (int) key_len,
                      given, self->retention);
            return NULL;
        }
        memcpy (key, given, key_len);
        key[key_len] = 0;
    }
    else {
        sn_keygen_next (self->keygen, zclock_time (), key);
        key_len = strlen (key);
    }
    uint32_t p = pkey ? sn_partition (pkey, pkey_len, self->partitions)
                      : sn_partition (key, key_len, self->partitions);
    s_call_t *call = s_call_new (self, S_CALL_WRITE);
    if (!call) {
        *code = 503;
        snprintf (error, S_ERROR_MAX, "node is busy: too many writes in flight");
        return NULL;
    }
    call->level = level;
    call->p = p;
    memcpy (call->key, key, key_len + 1);
    uint32_t replicas = sn_placement_replica_count (self->placement);
    if (replicas > S_REPLICAS_MAX)
        replicas = S_REPLICAS_MAX;
    call->replicas = replicas;
    call->need = s_level_need (level, replicas);

    const char *down[S_REPLICAS_MAX];
    size_t down_count = 0;
    for (uint32_t index = 0; index < replicas; index++) {
        const char *replica = sn_placement_replica (self->placement, p, index);
        if (!replica)
            continue;
        if (streq (replica, self->name) && batch) {
            sn_pack_map (batch, s_event_entries (type));
            s_pack_event (batch, key, type, p, event);
            call->self_index = index;
            call->sent++;
            call->sent_mask |= 1ull << index;
            call->batched = true;
        }
        else if (streq (replica, self->name)) {
            s_store_begin (self, call, "put", 1 + s_event_entries (type));
            sn_pack_str (self->req, "replica");
            sn_pack_bool (self->req, true);
            s_pack_event (self->req, key, type, p, event);
            call->self_index = index;
            call->sent++;
            call->sent_mask |= 1ull << index;
            if (!s_store_send (self))
                s_write_failed (call, index);
        }
        else if (s_reachable (self, replica)) {
            call->sent++;
            call->sent_mask |= 1ull << index;
            s_outbox_write (self, (s_peer_t *) zhashx_lookup (self->peers, replica), call, index,
                            key, type, p, event);
        }
        else
            down[down_count++] = replica;
    }
    //  Replicas that are down get the event later, from the next members in
    //  rendezvous order, which keep it as a hint.
    if (down_count) {
        const char *holders[S_REPLICAS_MAX];
        size_t holder_count = sn_placement_handoff (self->placement, p, down_count, holders);
        for (size_t index = 0; index < holder_count; index++) {
            sn_pack_reset (self->out);
            sn_pack_map (self->out, 2 + s_event_entries (type));
            sn_pack_kv_str (self->out, "op", "hint");
            sn_pack_kv_str (self->out, "for", down[index]);
            s_pack_event (self->out, key, type, p, event);
            if (streq (holders[index], self->name)) {
                sn_msg_t *hint = sn_msg_decode_trusted (sn_pack_data (self->out),
                                                        sn_pack_size (self->out), NULL);
                if (hint)
                    s_hint_keep (self, &hint);
            }
            else
                s_peer_send (self, holders[index]);
        }
    }
    return call;
}

static void s_burst_flush (self_t *self);

//  put {event, key?, type?, pkey?, commit?}: answered by the commit level.
static void
s_on_put (self_t *self, sn_routed_t *routed, const sn_value_t *root, uint64_t rid)
{
    const char *level = s_level (root);
    if (!level) {
        sn_pack_error (self->reply, rid, 400, "commit: must be ONE, QUORUM or ALL");
        return;
    }
    int code = 0;
    char error[S_ERROR_MAX];
    if (self->burst_count == S_BURST)
        s_burst_flush (self);
    s_call_t *call = s_write_begin (self, root, level, &code, error, self->burst);
    if (!call) {
        sn_pack_error (self->reply, rid, code, "%s", error);
        return;
    }
    if (call->batched)
        self->burst_ids[self->burst_count++] = call->id;
    sn_routed_move (&call->routed, routed);
    call->rid = rid;
    s_write_settle (self, call);
    sn_pack_reset (self->reply); //  answered through the call, not by the caller
}

//  puts {items: [[envelope frame..., put]...]}: the frontend's puts of one burst,
//  each taken and answered as if it had come alone, to its own envelope. An item
//  without a whole envelope cannot be answered, and the frontend makes none.
static void
s_on_puts (self_t *self, sn_routed_t *routed, const sn_value_t *root)
{
    const sn_value_t *items = sn_value_get (root, "items");
    for (size_t index = 0; index < sn_value_size (items); index++) {
        const sn_value_t *item = sn_value_at (items, index);
        size_t frames = sn_value_size (item);
        const sn_value_t *put = sn_value_at (item, frames ? frames - 1 : 0);
        //  The link's identity, the envelope, the answer
        if (!sn_value_is (item, SN_TYPE_ARRAY) || frames < 2 || frames + 1 > SN_ROUTED_MAX ||
            !sn_value_is (put, SN_TYPE_MAP) || routed->count < 1)
            continue;
        sn_routed_t answer;
        answer.count = 0;
        answer.overflowed = false;
        zmq_msg_init (&answer.frames[answer.count]);
        zmq_msg_copy (&answer.frames[answer.count++], &routed->frames[0]);
        for (size_t frame = 0; frame + 1 < frames; frame++) {
            size_t size = 0;
            const byte *data = sn_value_bin (sn_value_at (item, frame), &size);
            zmq_msg_init_size (&answer.frames[answer.count], data ? size : 0);
            if (data)
                memcpy (zmq_msg_data (&answer.frames[answer.count]), data, size);
            answer.count++;
        }
        zmq_msg_init (&answer.frames[answer.count++]);
        uint64_t rid = 0;
        sn_value_uint (sn_value_get (put, "rid"), &rid);
        sn_pack_reset (self->reply);
        if (self->store)
            s_on_put (self, &answer, put, rid);
        else
            sn_pack_error (self->reply, rid, 503, "this mesh has no store");
        if (answer.count && sn_pack_size (self->reply)) {
            sn_routed_set_payload (&answer, sn_pack_data (self->reply), sn_pack_size (self->reply));
            if (sn_routed_send (&answer, self->ops))
                sn_routed_close (&answer);
        }
        sn_routed_close (&answer);
    }
}

static void
s_bulk_answer (self_t *self, s_call_t *bulk)
{
    sn_pack_t *reply = self->reply;
    sn_pack_reset (reply);
    sn_pack_map (reply, 3);
    sn_pack_kv_uint (reply, "rid", bulk->rid);
    sn_pack_kv_uint (reply, "code", 200);
    sn_pack_str (reply, "results");
    sn_pack_array (reply, bulk->index);
    for (uint32_t index = 0; index < bulk->index; index++) {
        const s_item_t *item = &bulk->items[index];
        sn_pack_map (reply, (item->key[0] ? 2 : 1) + (item->code != 201));
        sn_pack_kv_uint (reply, "code", (uint64_t) item->code);
        if (item->key[0])
            sn_pack_kv_str (reply, "key", item->key);
        if (item->code != 201)
            sn_pack_kv_str (reply, "error", item->error ? item->error : "failed");
    }
    s_call_answer (self, bulk);
}

//  A peer's replica write is stored, or not: tell the peer, and end the call.
static void
s_remote_stored (self_t *self, s_call_t *call, uint64_t code, const char *error, size_t error_len)
{
    s_peer_t *peer = (s_peer_t *) zhashx_lookup (self->peers, call->peer);
    if (peer)
        s_outbox_ack (peer, call->rid, call->need, code, error, error_len);
    s_call_end (self, call);
}

//  Our store's copies of the burst's puts go as one bulk: one message, one decode
//  and one reply for all of them, which is most of what a put costs the store.
static void
s_burst_flush (self_t *self)
{
    if (self->burst_count == 0)
        return;
    s_call_t *batch = s_call_new (self, S_CALL_BATCH);
    if (batch) {
        s_store_begin (self, batch, "bulk", 2);
        sn_pack_str (self->req, "replica");
        sn_pack_bool (self->req, true);
        sn_pack_str (self->req, "puts");
        sn_pack_array (self->req, self->burst_count);
        sn_pack_raw (self->req, sn_pack_data (self->burst), sn_pack_size (self->burst));
        if (s_store_send (self)) {
            batch->local = (uint64_t *) malloc (self->burst_count * sizeof (uint64_t));
            memcpy (batch->local, self->burst_ids, self->burst_count * sizeof (uint64_t));
            batch->local_count = self->burst_count;
            self->burst_count = 0;
            sn_pack_reset (self->burst);
            return;
        }
        s_call_end (self, batch);
    }
    for (uint32_t index = 0; index < self->burst_count; index++) {
        s_call_t *call = s_call_lookup (self, self->burst_ids[index]);
        if (call && call->kind == S_CALL_REMOTE_WRITE)
            s_remote_stored (self, call, 503, "store busy", 10);
        else if (call) {
            s_write_failed (call, call->self_index);
            s_write_settle (self, call);
        }
    }
    self->burst_count = 0;
    sn_pack_reset (self->burst);
}

//  Our store's answer to a bulk's local copies: each result answers its item. The
//  items may settle the bulk, which ends it, so its list is taken first.
static void
s_bulk_stored (self_t *self, s_call_t *bulk, const sn_value_t *results)
{
    uint64_t *local = bulk->local;
    uint32_t count = bulk->local_count;
    bulk->local = NULL;
    bulk->local_count = 0;
    for (uint32_t index = 0; index < count; index++) {
        s_call_t *call = s_call_lookup (self, local[index]);
        if (!call)
            continue;
        const sn_value_t *result = sn_value_at (results, index);
        uint64_t code = 500;
        sn_value_uint (sn_value_get (result, "code"), &code);
        size_t error_len = 0;
        const char *error = sn_value_str (sn_value_get (result, "error"), &error_len);
        if (call->kind == S_CALL_REMOTE_WRITE)
            s_remote_stored (self, call, result ? code : 500, error, error_len);
        else
            s_write_answer (self, call, call->self_index, result ? code : 500, error, error_len);
    }
    free (local);
}

//  bulk {puts: [{event, key?}...], commit?}: every item a write of its own at the
//  same commit level; answered once all have settled, each with its own outcome.
static void
s_on_bulk (self_t *self, sn_routed_t *routed, const sn_value_t *root, uint64_t rid)
{
    const char *level = s_level (root);
    const sn_value_t *puts = sn_value_get (root, "puts");
    size_t count = sn_value_size (puts);
    if (!level || !sn_value_is (puts, SN_TYPE_ARRAY) || count == 0 || count > S_CALLS / 4) {
        sn_pack_error (self->reply, rid, 400,
                       "bulk: puts must hold 1 to %d items, commit name a level", S_CALLS / 4);
        return;
    }
    s_call_t *bulk = s_call_new (self, S_CALL_BULK);
    if (!bulk) {
        sn_pack_error (self->reply, rid, 503, "node is busy: too many writes in flight");
        return;
    }
    sn_routed_move (&bulk->routed, routed);
    bulk->rid = rid;
    bulk->items = (s_item_t *) zmalloc (count * sizeof (s_item_t));
    bulk->local = (uint64_t *) zmalloc (count * sizeof (uint64_t));
    sn_pack_reset (self->batch);
    bulk->index = (uint32_t) count;
    bulk->remaining = (uint32_t) count;
    uint64_t *children = (uint64_t *) zmalloc (count * sizeof (uint64_t));
    for (uint32_t index = 0; index < count; index++) {
        int code = 0;
        char error[S_ERROR_MAX];
        s_call_t *call =
            s_write_begin (self, sn_value_at (puts, index), level, &code, error, self->batch);
        if (call) {
            call->parent = bulk->id;
            call->index = index;
            children[index] = call->id;
            if (call->batched)
                bulk->local[bulk->local_count++] = call->id;
        }
        else {
            bulk->items[index].code = code;
            bulk->items[index].error = strdup (error);
            bulk->remaining--;
        }
    }
    //  Our store's copies go as one bulk: one message and one pass for all of them
    if (bulk->local_count) {
        s_store_begin (self, bulk, "bulk", 2);
        sn_pack_str (self->req, "replica");
        sn_pack_bool (self->req, true);
        sn_pack_str (self->req, "puts");
        sn_pack_array (self->req, bulk->local_count);
        sn_pack_raw (self->req, sn_pack_data (self->batch), sn_pack_size (self->batch));
        if (!s_store_send (self))
            for (uint32_t index = 0; index < bulk->local_count; index++) {
                s_call_t *call = s_call_lookup (self, bulk->local[index]);
                if (call)
                    s_write_failed (call, call->self_index);
            }
    }
    //  Settling an item may answer the bulk, which ends it: look it up each time
    uint64_t bulk_id = bulk->id;
    if (bulk->remaining == 0)
        s_bulk_answer (self, bulk);
    else
        for (uint32_t index = 0; index < count && s_call_lookup (self, bulk_id); index++) {
            s_call_t *call = s_call_lookup (self, children[index]);
            if (call)
                s_write_settle (self, call);
        }
    free (children);
    sn_pack_reset (self->reply);
}

//  ---- Reads

//  Answer a get with a store's reply map, the caller's rid in place of the store's.
static void
s_get_answer (self_t *self, s_call_t *call, const sn_value_t *reply)
{
    //  What a member answers goes to the client as it came, so it must be an answer
    if (!sn_reply_code (reply, NULL)) {
        sn_pack_error (self->reply, call->rid, 502, "a member sent a reply without a valid code");
        s_call_answer (self, call);
        return;
    }
    size_t entries = sn_value_size (reply);
    sn_pack_reset (self->reply);
    uint32_t kept = 1;
    for (size_t index = 0; index < entries; index++) {
        size_t len;
        const char *name = sn_value_key_at (reply, index, &len);
        if (!(len == 3 && memcmp (name, "rid", 3) == 0))
            kept++;
    }
    sn_pack_map (self->reply, kept);
    sn_pack_kv_uint (self->reply, "rid", call->rid);
    for (size_t index = 0; index < entries; index++) {
        size_t len;
        const char *name = sn_value_key_at (reply, index, &len);
        if (len == 3 && memcmp (name, "rid", 3) == 0)
            continue;
        sn_pack_strn (self->reply, name, len);
        sn_pack_value (self->reply, sn_value_value_at (reply, index));
    }
    s_call_answer (self, call);
}

static void
s_get_not_found (self_t *self, s_call_t *call, bool complete)
{
    if (complete)
        sn_pack_error (self->reply, call->rid, 404, "key %s not found", call->key);
    else
        sn_pack_error (self->reply, call->rid, 504,
                       "key %s not found on the replicas that answered; %u did not answer",
                       call->key, call->sent - call->answered + call->refusals);
    s_call_answer (self, call);
}

//  Whether a store's get reply holds a user event: `get` is the AllData read, and
//  internal events (a bucket's secret among them) stay behind their own APIs.
static bool
s_user_event (const sn_value_t *reply)
{
    const sn_value_t *type = sn_value_get (reply, "type");
    return !type || sn_value_streq (type, "event");
}

//  Not here: ask the other replicas of the key's partition.
static void
s_get_elsewhere (self_t *self, s_call_t *call)
{
    uint32_t replicas = sn_placement_replica_count (self->placement);
    call->sent = call->answered = 0;
    call->sent_mask = call->answered_mask = 0;
    call->refusals = 0;
    for (uint32_t index = 0; index < replicas && index < S_REPLICAS_MAX; index++) {
        const char *replica = sn_placement_replica (self->placement, call->p, index);
        if (!replica || streq (replica, self->name) || !s_reachable (self, replica))
            continue;
        sn_pack_reset (self->out);
        sn_pack_map (self->out, 3);
        sn_pack_kv_str (self->out, "op", "rget");
        sn_pack_kv_uint (self->out, "rid", call->id);
        sn_pack_kv_str (self->out, "key", call->key);
        if (s_peer_send (self, replica)) {
            call->sent++;
            call->sent_mask |= 1ull << index;
        }
    }
    if (call->sent == 0)
        s_get_not_found (self, call, true);
}

//  get {key}: here first, then on the other replicas.
static void
s_on_get (self_t *self, sn_routed_t *routed, const sn_value_t *root, uint64_t rid)
{
    size_t len = 0;
    const char *key = sn_value_str (sn_value_get (root, "key"), &len);
    if (!key || len == 0 || len > SN_KEY_MAX) {
        sn_pack_error (self->reply, rid, 400, "key: must be a string of 1 to %d bytes", SN_KEY_MAX);
        return;
    }
    s_call_t *call = s_call_new (self, S_CALL_GET);
    if (!call) {
        sn_pack_error (self->reply, rid, 503, "node is busy: too many requests in flight");
        return;
    }
    sn_routed_move (&call->routed, routed);
    call->rid = rid;
    memcpy (call->key, key, len);
    call->key[len] = 0;
    call->p = sn_partition (key, len, self->partitions);
    s_store_begin (self, call, "get", 1);
    sn_pack_kv_str (self->req, "key", call->key);
    //  Our store counts as asked: if it has not answered by the deadline, that is a
    //  504, not a 404
    call->sent = 1;
    if (!s_store_send (self))
        s_get_elsewhere (self, call);
    sn_pack_reset (self->reply);
}

//  ---- Forwarding to a partition's owner

//  The hop count a request forwarded hops times carries on: it stops at S_FORWARD_HOPS,
//  so that no count, however large, wraps round to a request never forwarded.
static uint64_t
s_hops_next (uint64_t hops)
{
    return hops < S_FORWARD_HOPS ? hops + 1 : S_FORWARD_HOPS;
}

//  Deliver a forwarded request to our frontend, as a client would send it, under call.
static bool
s_deliver_local (self_t *self, s_call_t *call, const sn_value_t *request, uint64_t hops)
{
    if (!self->frontend)
        return false;
    size_t entries = sn_value_size (request);
    uint32_t kept = 2;
    for (size_t index = 0; index < entries; index++) {
        size_t len;
        const char *name = sn_value_key_at (request, index, &len);
        if (!(len == 3 && (memcmp (name, "rid", 3) == 0 || memcmp (name, "fwd", 3) == 0)))
            kept++;
    }
    sn_pack_reset (self->req);
    sn_pack_map (self->req, kept);
    sn_pack_kv_uint (self->req, "rid", call->id);
    sn_pack_kv_uint (self->req, "fwd", hops);
    for (size_t index = 0; index < entries; index++) {
        size_t len;
        const char *name = sn_value_key_at (request, index, &len);
        if (len == 3 && (memcmp (name, "rid", 3) == 0 || memcmp (name, "fwd", 3) == 0))
            continue;
        sn_pack_strn (self->req, name, len);
        sn_pack_value (self->req, sn_value_value_at (request, index));
    }
    return zmq_send (zsock_resolve (self->frontend), sn_pack_data (self->req),
                     sn_pack_size (self->req), ZMQ_DONTWAIT) != -1;
}

static void
s_forward_fail (self_t *self, s_call_t *call)
{
    if (call->peer[0])
        sn_pack_error (self->reply, call->rid, 503,
                       "node %s did not answer the forwarded request: not reachable or too slow",
                       call->peer);
    else
        sn_pack_error (self->reply, call->rid, 503,
                       "no replica of partition %u answered the forwarded request (%u tried)",
                       call->p, call->tries);
    s_call_answer (self, call);
}

//  Send a forward to the next live replica of its partition, owner first, or to the
//  one node it names. Returns false when none is left to try.
static bool
s_forward_try (self_t *self, s_call_t *call)
{
    uint32_t replicas = call->peer[0] ? 1 : sn_placement_replica_count (self->placement);
    while (call->tries < replicas) {
        const char *replica = call->peer[0]
                                  ? call->peer
                                  : sn_placement_replica (self->placement, call->p, call->tries);
        call->tries++;
        if (!replica)
            continue;
        sn_msg_t *msg =
            sn_msg_decode_trusted (zframe_data (call->request), zframe_size (call->request), NULL);
        const sn_value_t *root = sn_msg_root (msg);
        bool sent = false;
        const sn_value_t *request = sn_value_get (root, "request");
        uint64_t hops = 0;
        sn_value_uint (sn_value_get (request, "fwd"), &hops);
        if (streq (replica, self->name))
            sent = s_deliver_local (self, call, request, s_hops_next (hops));
        else if (s_reachable (self, replica)) {
            sn_pack_reset (self->out);
            sn_pack_map (self->out, call->wait ? 4 : 3);
            sn_pack_kv_str (self->out, "op", "fwd");
            sn_pack_kv_uint (self->out, "rid", call->id);
            sn_pack_kv_value (self->out, "request", sn_value_get (root, "request"));
            //  The owner keeps the request as long as we wait for its answer
            if (call->wait)
                sn_pack_kv_uint (self->out, "timeout", call->wait);
            sent = s_peer_send (self, replica);
        }
        sn_msg_destroy (&msg);
        if (sent) {
            self->forwarded++;
            return true;
        }
    }
    return false;
}

//  forward {p, request, timeout?}: to the owner of p, then to the next replicas in
//  turn. forward {node, request, timeout?}: to that node alone, which may be this
//  one. timeout (ms) is how long each try may take, for requests that take longer
//  than a write (a callback handshake); the write timeout otherwise.
static void
s_on_forward (self_t *self, sn_routed_t *routed, const sn_value_t *root, uint64_t rid)
{
    uint64_t p = 0;
    size_t node_len = 0;
    const sn_value_t *node_value = sn_value_get (root, "node");
    const char *node = sn_value_str (node_value, &node_len);
    const sn_value_t *request = sn_value_get (root, "request");
    bool to_node = node_value != NULL;
    if ((to_node && (!node || node_len == 0 || node_len > SN_NAME_MAX)) ||
        (!to_node && (!sn_value_uint (sn_value_get (root, "p"), &p) || p >= self->partitions)) ||
        !sn_value_is (request, SN_TYPE_MAP) ||
        !sn_value_is (sn_value_get (request, "op"), SN_TYPE_STRING)) {
        sn_pack_error (self->reply, rid, 400,
                       "forward: p must be a partition or node a member's name, and request a "
                       "map with an op");
        return;
    }
    //  Nodes that briefly disagree on the owner could hand a request back and forth
    uint64_t hops = 0;
    sn_value_uint (sn_value_get (request, "fwd"), &hops);
    if (hops >= S_FORWARD_HOPS && to_node) {
        sn_pack_error (self->reply, rid, 503,
                       "request forwarded %" PRIu64 " times, not again to %.*s", hops,
                       (int) node_len, node);
        return;
    }
    if (hops >= S_FORWARD_HOPS) {
        sn_pack_error (self->reply, rid, 503,
                       "request forwarded %" PRIu64 " times: the owner of partition %" PRIu64
                       " is changing, try again",
                       hops, p);
        return;
    }
    s_call_t *call = s_call_new (self, S_CALL_FORWARD);
    if (!call) {
        sn_pack_error (self->reply, rid, 503, "node is busy: too many requests in flight");
        return;
    }
    sn_routed_move (&call->routed, routed);
    call->rid = rid;
    call->p = (uint32_t) p;
    //  timeout: how much longer than a write the request may take at the owner
    uint64_t extra = 0;
    if (sn_value_uint (sn_value_get (root, "timeout"), &extra) && extra > 0) {
        uint64_t wait = (uint64_t) self->write_timeout_ms + extra;
        call->wait = (uint32_t) (wait < S_FORWARD_WAIT_MAX ? wait : S_FORWARD_WAIT_MAX);
        s_call_wait (self, call, call->wait);
    }
    if (to_node) {
        memcpy (call->peer, node, node_len);
        call->peer[node_len] = 0;
    }
    sn_pack_reset (self->req);
    sn_pack_map (self->req, 1);
    sn_pack_kv_value (self->req, "request", request);
    call->request = zframe_new (sn_pack_data (self->req), sn_pack_size (self->req));
    if (!s_forward_try (self, call))
        s_forward_fail (self, call);
    sn_pack_reset (self->reply);
}

//  A forward that timed out: the same request, under a new call with a fresh
//  deadline, to the next replica.
static void
s_forward_retry (self_t *self, s_call_t *call)
{
    s_call_t *next = s_call_new (self, S_CALL_FORWARD);
    if (!next) {
        s_forward_fail (self, call);
        return;
    }
    sn_routed_move (&next->routed, &call->routed);
    next->rid = call->rid;
    next->p = call->p;
    next->wait = call->wait;
    if (next->wait)
        s_call_wait (self, next, next->wait);
    memcpy (next->peer, call->peer, sizeof next->peer);
    next->tries = call->tries;
    next->request = call->request;
    call->request = NULL;
    s_call_end (self, call);
    if (!s_forward_try (self, next))
        s_forward_fail (self, next);
}

//  fwd {rid, request, timeout?}: a peer hands us a request for a partition we own.
static int
s_on_fwd (self_t *self, const char *sender, const sn_value_t *root)
{
    uint64_t their_rid, hops = 0, wait = 0;
    const sn_value_t *request = sn_value_get (root, "request");
    if (!sn_value_uint (sn_value_get (root, "rid"), &their_rid) ||
        !sn_value_is (request, SN_TYPE_MAP))
        return -1;
    sn_value_uint (sn_value_get (request, "fwd"), &hops);
    s_call_t *call = s_call_new (self, S_CALL_REMOTE_FWD);
    if (!call)
        return 0;
    if (sn_value_uint (sn_value_get (root, "timeout"), &wait) && wait > 0)
        s_call_wait (self, call, (int64_t) (wait < S_FORWARD_WAIT_MAX ? wait : S_FORWARD_WAIT_MAX));
    call->rid = their_rid;
    snprintf (call->peer, sizeof call->peer, "%s", sender);
    if (!s_deliver_local (self, call, request, s_hops_next (hops)))
        s_call_end (self, call);
    return 0;
}

//  fwd_reply {rid, reply}: the owner's answer to a forward of ours.
static int
s_on_fwd_reply (self_t *self, const sn_value_t *root)
{
    uint64_t rid;
    const sn_value_t *reply = sn_value_get (root, "reply");
    if (!sn_value_uint (sn_value_get (root, "rid"), &rid) || !sn_value_is (reply, SN_TYPE_MAP))
        return -1;
    s_call_t *call = s_call_lookup (self, rid);
    if (call && call->kind == S_CALL_FORWARD)
        s_get_answer (self, call, reply);
    return 0;
}

//  Answers from our frontend to forwarded requests.
static void
s_frontend_recv (self_t *self)
{
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    for (int count = 0; count < S_BURST &&
                        zmq_msg_recv (&frame, zsock_resolve (self->frontend), ZMQ_DONTWAIT) != -1;
         count++) {
        sn_msg_t *msg = sn_msg_decode_trusted (zmq_msg_data (&frame), zmq_msg_size (&frame), NULL);
        const sn_value_t *root = msg ? sn_msg_root (msg) : NULL;
        uint64_t rid = 0;
        sn_value_uint (sn_value_get (root, "rid"), &rid);
        s_call_t *call = s_call_lookup (self, rid);
        if (call && call->kind == S_CALL_FORWARD && sn_value_is (root, SN_TYPE_MAP))
            s_get_answer (self, call, root);
        else if (call && call->kind == S_CALL_REMOTE_FWD && sn_value_is (root, SN_TYPE_MAP)) {
            sn_pack_reset (self->out);
            sn_pack_map (self->out, 3);
            sn_pack_kv_str (self->out, "op", "fwd_reply");
            sn_pack_kv_uint (self->out, "rid", call->rid);
            sn_pack_kv_value (self->out, "reply", root);
            s_peer_send (self, call->peer);
            s_call_end (self, call);
        }
        sn_msg_destroy (&msg);
    }
    zmq_msg_close (&frame);
}

//  ---- Range reads across the cluster

//  Most bytes of events in one merged page, as the store's own pages.
#define S_RANGE_BYTES (4 * 1024 * 1024)
//  Longest event type prefix a scan takes, as the store's longest type.
#define S_PREFIX_MAX 64

typedef struct {
    const char *key;        //  the event's key (not terminated)
    size_t len;             //  its length
    const sn_value_t *item; //  {key, event}
} s_range_item_t;

static int
s_range_compare (const void *a, const void *b)
{
    const s_range_item_t *x = (const s_range_item_t *) a, *y = (const s_range_item_t *) b;
    size_t len = x->len < y->len ? x->len : y->len;
    int order = memcmp (x->key, y->key, len);
    return order ? order : (x->len > y->len) - (x->len < y->len);
}

//  Every member has answered, or a scan's time is up: merge the pages. A member's
//  page stops at its next, so the merged page stops at the smallest next: beyond it,
//  that member's events are not known yet. Events held by several members appear once.
static void
s_range_answer (self_t *self, s_call_t *call)
{
    size_t total = 0;
    const char *cut = NULL;
    size_t cut_len = 0;
    for (uint32_t index = 0; index < call->sent; index++) {
        const sn_value_t *page = call->pages[index].page;
        total += sn_value_size (sn_value_get (page, "events"));
        size_t len = 0;
        const char *next = sn_value_str (sn_value_get (page, "next"), &len);
        if (next && (!cut || s_range_compare (&(s_range_item_t){next, len, NULL},
                                              &(s_range_item_t){cut, cut_len, NULL}) < 0)) {
            cut = next;
            cut_len = len;
        }
    }
    //  Every page was checked to move past from; a next that does not would make the
    //  caller ask for the same page for ever
    if (cut && call->from &&
        s_range_compare (&(s_range_item_t){cut, cut_len, NULL},
                         &(s_range_item_t){call->from, call->from_len, NULL}) <= 0) {
        sn_pack_error (self->reply, call->rid, 502, "the %s did not move past from",
                       call->scan ? "scan" : "range");
        s_call_answer (self, call);
        return;
    }
    s_range_item_t *items = (s_range_item_t *) zmalloc ((total + 1) * sizeof (s_range_item_t));
    size_t count = 0;
    for (uint32_t index = 0; index < call->sent; index++) {
        const sn_value_t *events = sn_value_get (call->pages[index].page, "events");
        for (size_t at = 0; at < sn_value_size (events); at++) {
            const sn_value_t *item = sn_value_at (events, at);
            size_t len = 0;
            const char *key = sn_value_str (sn_value_get (item, "key"), &len);
            if (!key || !sn_value_get (item, "event"))
                continue;
            s_range_item_t candidate = {key, len, item};
            if (cut && s_range_compare (&candidate, &(s_range_item_t){cut, cut_len, NULL}) >= 0)
                continue;
            //  A user event a member has not swept yet is left out, of a range (user
            //  events only) and of a scan (whose items say their type) alike
            const sn_value_t *type = sn_value_get (item, "type");
            if ((!call->scan || type) &&
                s_expired (self, call->scan ? type : NULL, sn_key_time (key, len)))
                continue;
            items[count++] = candidate;
        }
    }
    qsort (items, count, sizeof (s_range_item_t), s_range_compare);
    size_t unique = 0;
    for (size_t index = 0; index < count; index++)
        if (unique == 0 || s_range_compare (&items[unique - 1], &items[index]) != 0)
            items[unique++] = items[index];
    //  The page: at most limit events and S_RANGE_BYTES, at least one
    sn_pack_t *body = self->req;
    sn_pack_reset (body);
    size_t taken = 0;
    while (taken < unique && taken < call->limit &&
           (taken == 0 || sn_pack_size (body) < S_RANGE_BYTES)) {
        sn_pack_value (body, items[taken].item);
        taken++;
    }
    sn_pack_t *reply = self->reply;
    sn_pack_reset (reply);
    sn_pack_map (reply, call->scan ? 6 : 4);
    sn_pack_kv_uint (reply, "rid", call->rid);
    sn_pack_kv_uint (reply, "code", 200);
    if (call->scan) {
        sn_pack_kv_uint (reply, "p", call->p);
        //  The members whose page joined this one: the owner re-reads p when a
        //  replica it did not read on every page of its replay becomes reachable
        uint32_t merged = 0;
        for (uint32_t index = 0; index < call->sent; index++)
            merged += call->pages[index].page != NULL;
        sn_pack_str (reply, "merged");
        sn_pack_array (reply, merged);
        for (uint32_t index = 0; index < call->sent; index++)
            if (call->pages[index].page)
                sn_pack_str (reply, call->pages[index].name);
    }
    sn_pack_str (reply, "events");
    sn_pack_array (reply, (uint32_t) taken);
    sn_pack_raw (reply, sn_pack_data (body), sn_pack_size (body));
    sn_pack_str (reply, "next");
    if (taken < unique)
        sn_pack_strn (reply, items[taken].key, items[taken].len);
    else if (cut)
        sn_pack_strn (reply, cut, cut_len);
    else
        sn_pack_nil (reply);
    free (items);
    s_call_answer (self, call);
}

//  How long a scan leaves out a replica that let a page go unanswered, or answered
//  a malformed one, before it is asked (and waited for) once more. Heartbeats do not
//  clear it: a member may answer pings and still never answer a scan (an older build
//  that drops rscan, a store always slower than the write timeout). Without it, such
//  a replica costs the write timeout on every page of every partition replayed, while
//  the queue and batch actors wait on each page as a whole. A valid page from it, or
//  a new link to it (a new process), clears it sooner.
#define S_SCAN_SKIP_MS 30000
//  Longest our own store's page of a scan is waited for. It is local: a busy store
//  (behind on commits during a write burst) answers late rather than failing the
//  page, which would leave the partition half replayed. Under the 60 s the actors
//  wait for a page, so that they hear the mesh's answer, whatever it is.
#define S_SCAN_WAIT 50000

//  Order of two keys, as the stores order them.
static int
s_key_order (const char *a, size_t a_len, const char *b, size_t b_len)
{
    return s_range_compare (&(s_range_item_t){a, a_len, NULL}, &(s_range_item_t){b, b_len, NULL});
}

//  Whether a peer's page fits the range or scan asked: at most limit events, in
//  [from, next) and below to, each with a key and an event map (and for a scan a
//  type starting with prefix and a ts), and a next that is nil or a key past from.
//  A page that does not could end a replay early or make it loop on the same page.
static bool
s_page_valid (const s_call_t *call, const sn_value_t *page, const char **why)
{
    const sn_value_t *events = sn_value_get (page, "events");
    const sn_value_t *next_value = sn_value_get (page, "next");
    size_t next_len = 0;
    const char *next = sn_value_str (next_value, &next_len);
    *why = "events: not an array";
    if (!sn_value_is (events, SN_TYPE_ARRAY))
        return false;
    *why = "more events than asked";
    if (sn_value_size (events) > call->limit)
        return false;
    *why = "next: not nil or a key past from";
    if (next_value && !sn_value_is (next_value, SN_TYPE_NIL) &&
        (!next || next_len == 0 || next_len > SN_KEY_MAX ||
         (call->from && s_key_order (next, next_len, call->from, call->from_len) <= 0) ||
         (call->to && s_key_order (next, next_len, call->to, call->to_len) >= 0)))
        return false;
    for (size_t index = 0; index < sn_value_size (events); index++) {
        const sn_value_t *item = sn_value_at (events, index);
        size_t len = 0, type_len = 0;
        const char *key = sn_value_str (sn_value_get (item, "key"), &len);
        const char *type = sn_value_str (sn_value_get (item, "type"), &type_len);
        *why = "an event's key is missing or outside the page";
        if (!key || len == 0 || len > SN_KEY_MAX ||
            (call->from && s_key_order (key, len, call->from, call->from_len) < 0) ||
            (next && s_key_order (key, len, next, next_len) >= 0) ||
            (call->to && s_key_order (key, len, call->to, call->to_len) >= 0))
            return false;
        *why = "an event is not a map";
        if (!sn_value_is (sn_value_get (item, "event"), SN_TYPE_MAP))
            return false;
        *why = "an event's type or ts is missing or not of the prefix";
        if (call->scan && (!type || !sn_value_get (item, "ts") ||
                           (call->prefix && (type_len < call->prefix_len ||
                                             memcmp (type, call->prefix, call->prefix_len)))))
            return false;
    }
    return true;
}

//  A replica left out of a scan page (silent or malformed) is not asked again for a
//  while, and says so once, not once per page.
static void
s_scan_skip (self_t *self, const s_call_t *call, const char *member, const char *why)
{
    s_peer_t *peer = (s_peer_t *) zhashx_lookup (self->peers, member);
    int64_t now = zclock_mono ();
    if (peer && peer->scan_skip_until > now)
        return;
    if (peer)
        peer->scan_skip_until = now + S_SCAN_SKIP_MS;
    zsys_warning ("sn_mesh: %s: scan of partition %u without %s: %s; left out of scans for %d s",
                  self->name, call->p, member, why, S_SCAN_SKIP_MS / 1000);
}

//  A member's page (from our store or a peer); msg is taken over.
static void
s_range_add (self_t *self, s_call_t *call, const char *member, sn_msg_t **msg_p,
             const sn_value_t *page)
{
    //  Only a member that was asked answers, once
    s_page_t *slot = NULL;
    for (uint32_t index = 0; index < call->sent && !slot; index++)
        if (!call->pages[index].msg && streq (call->pages[index].name, member))
            slot = &call->pages[index];
    if (!slot)
        return;
    bool ours = streq (member, self->name);
    const char *why = NULL;
    //  Our store is trusted; a peer's page is checked whole before it joins
    bool valid = page && (ours ? sn_value_is (sn_value_get (page, "events"), SN_TYPE_ARRAY)
                               : s_page_valid (call, page, &why));
    //  A replica whose store refuses a scan, or whose page does not fit, holds up a
    //  takeover no more than one that is silent: its page is left out
    if (valid || (call->scan && !ours)) {
        s_peer_t *peer = ours ? NULL : (s_peer_t *) zhashx_lookup (self->peers, member);
        if (!valid && page) {
            char reason[S_ERROR_MAX];
            snprintf (reason, sizeof reason, "it answered a malformed page (%s)", why);
            self->scan_bad++;
            s_scan_skip (self, call, member, reason);
        }
        else if (!valid)
            zsys_warning ("sn_mesh: %s: scan of partition %u without %s: it answered an error",
                          self->name, call->p, member);
        else if (peer)
            peer->scan_skip_until = 0;
        slot->msg = *msg_p;
        slot->page = valid ? page : NULL;
        *msg_p = NULL;
        call->answered++;
        bool ours_in = false;
        for (uint32_t index = 0; index < call->sent; index++)
            if (streq (call->pages[index].name, self->name))
                ours_in = call->pages[index].msg != NULL;
        if (call->answered == call->sent || (call->late && ours_in))
            s_range_answer (self, call);
        return;
    }
    sn_pack_error (self->reply, call->rid, 502, "a member answered the %s with an error",
                   call->scan ? "scan" : "range");
    s_call_answer (self, call);
}

//  A scan's replicas' time is up. A replica that has not answered must not hold up a
//  takeover: once our own store's page is in, the pages that came are the answer.
//  The merged next stays right without the missing pages: a page missing adds no
//  events and no cut, so the answer is the answering members' events up to the
//  smallest of their nexts, and the next page goes on from there. What only the
//  silent replica holds is not in it, as when that replica is down. Our own store's
//  page is waited for longer (S_SCAN_WAIT): without it the answer would be the
//  replicas' pages alone.
static void
s_scan_expire (self_t *self, s_call_t *call)
{
    bool ours = false;
    for (uint32_t index = 0; index < call->sent; index++)
        if (streq (call->pages[index].name, self->name))
            ours = call->pages[index].msg != NULL;
    if (call->late) {
        sn_pack_error (self->reply, call->rid, 504, "the store did not answer the scan in time");
        s_call_answer (self, call);
        return;
    }
    call->late = true;
    for (uint32_t index = 0; index < call->sent; index++)
        if (!call->pages[index].msg && !streq (call->pages[index].name, self->name)) {
            self->scan_silent++;
            s_scan_skip (self, call, call->pages[index].name, "no answer in time");
        }
    if (ours)
        s_range_answer (self, call);
    else {
        int64_t waited =
            self->write_timeout_ms < S_SCAN_WAIT ? self->write_timeout_ms : S_SCAN_WAIT;
        s_call_wait (self, call, S_SCAN_WAIT - waited);
    }
}

//  The fields of a range or scan that travel on to the stores: limit, and from, to,
//  p, prefix when given.
static uint32_t
s_range_entries (const s_call_t *call, const sn_value_t *root)
{
    return 1 + !!sn_value_get (root, "from") + !!sn_value_get (root, "to") +
           (call->scan ? 1 + !!sn_value_get (root, "prefix") : 0);
}

static void
s_range_pack (sn_pack_t *pack, const s_call_t *call, const sn_value_t *root)
{
    sn_pack_kv_uint (pack, "limit", call->limit);
    const char *names[] = {"from", "to", call->scan ? "prefix" : NULL};
    for (size_t index = 0; index < 3 && names[index]; index++)
        if (sn_value_get (root, names[index]))
            sn_pack_kv_value (pack, names[index], sn_value_get (root, names[index]));
    if (call->scan)
        sn_pack_kv_uint (pack, "p", call->p);
}

//  Whether a range or scan request is valid; if not, error says why. Sets limit
//  (100 when absent) and, for a scan, p.
static bool
s_range_valid (self_t *self, const sn_value_t *root, bool scan, uint64_t *limit, uint32_t *p,
               char *error, size_t size)
{
    *limit = 100;
    const sn_value_t *limit_value = sn_value_get (root, "limit");
    if (limit_value && (!sn_value_uint (limit_value, limit) || *limit == 0 || *limit > 1000)) {
        snprintf (error, size, "limit: must be 1 to 1000");
        return false;
    }
    size_t len;
    const char *names[] = {"from", "to"};
    for (size_t index = 0; index < 2; index++) {
        const sn_value_t *bound = sn_value_get (root, names[index]);
        if (bound && (!sn_value_str (bound, &len) || len > SN_KEY_MAX)) {
            snprintf (error, size, "%s: must be a string of at most %d bytes", names[index],
                      SN_KEY_MAX);
            return false;
        }
    }
    if (!scan)
        return true;
    uint64_t partition;
    if (!sn_value_uint (sn_value_get (root, "p"), &partition) || partition >= self->partitions) {
        snprintf (error, size, "p: must be a partition, 0 to %u", self->partitions - 1);
        return false;
    }
    *p = (uint32_t) partition;
    const sn_value_t *prefix = sn_value_get (root, "prefix");
    if (prefix && (!sn_value_str (prefix, &len) || len > S_PREFIX_MAX)) {
        snprintf (error, size, "prefix: must be a string of at most %d bytes", S_PREFIX_MAX);
        return false;
    }
    return true;
}

//  Keep the bounds of a range or scan, which the pages are checked against. An
//  empty from or to is no bound, as at the stores.
static void
s_range_bounds (s_call_t *call, const sn_value_t *root)
{
    size_t len = 0;
    const char *text = sn_value_str (sn_value_get (root, "from"), &len);
    if (text && len) {
        call->from = (char *) zmalloc (len);
        memcpy (call->from, text, len);
        call->from_len = len;
    }
    text = sn_value_str (sn_value_get (root, "to"), &len);
    if (text && len) {
        call->to = (char *) zmalloc (len);
        memcpy (call->to, text, len);
        call->to_len = len;
    }
    text = call->scan ? sn_value_str (sn_value_get (root, "prefix"), &len) : NULL;
    if (text && len) {
        call->prefix = (char *) zmalloc (len);
        memcpy (call->prefix, text, len);
        call->prefix_len = len;
    }
}

//  range {from?, to?, limit?}: the same range from every member, merged. A member that
//  is down is not asked: with RF > 1 its events are on other replicas.
//  scan {p, from?, to?, limit?, prefix?}: the store's scan of p from our store and
//  every reachable replica of p, merged, so that an owner replaying p sees what any
//  replica acknowledged, not only what reached its own store.
static void
s_on_range (self_t *self, sn_routed_t *routed, const sn_value_t *root, uint64_t rid, bool scan)
{
    uint64_t limit;
    uint32_t p = 0;
    char error[S_ERROR_MAX];
    if (!s_range_valid (self, root, scan, &limit, &p, error, sizeof error)) {
        sn_pack_error (self->reply, rid, 400, "%s", error);
        return;
    }
    s_call_t *call = s_call_new (self, S_CALL_RANGE);
    if (!call) {
        sn_pack_error (self->reply, rid, 503, "node is busy: too many requests in flight");
        return;
    }
    sn_routed_move (&call->routed, routed);
    call->rid = rid;
    call->limit = limit;
    call->scan = scan;
    call->p = p;
    s_range_bounds (call, root);
    bool reread = false;
    if (scan && !call->from && sn_value_bool (sn_value_get (root, "reread"), &reread) && reread)
        self->scan_rereads++;
    size_t count;
    const sn_member_t *list = sn_members_list (self->members, &count);
    uint32_t replicas = sn_placement_replica_count (self->placement);
    //  The members asked: every member for a range, p's replicas for a scan
    const char **asked = (const char **) zmalloc ((count + replicas + 1) * sizeof (char *));
    size_t asking = 0;
    for (size_t index = 0; !scan && index < count; index++)
        asked[asking++] = list[index].name;
    for (uint32_t index = 0; scan && index < replicas; index++)
        if (sn_placement_replica (self->placement, p, index))
            asked[asking++] = sn_placement_replica (self->placement, p, index);
    call->pages = (s_page_t *) zmalloc ((asking + 1) * sizeof (s_page_t));
    //  Ours first, then every reachable member's
    s_store_begin (self, call, scan ? "scan" : "range", s_range_entries (call, root));
    s_range_pack (self->req, call, root);
    if (s_store_send (self))
        snprintf (call->pages[call->sent++].name, SN_NAME_MAX + 1, "%s", self->name);
    else if (scan) {
        //  The replicas' pages alone could miss an event only we and a replica that
        //  is down hold: the caller asks again later
        free (asked);
        sn_pack_error (self->reply, rid, 503, "the store cannot take the scan now");
        s_call_answer (self, call);
        sn_pack_reset (self->reply);
        return;
    }
    int64_t now = zclock_mono ();
    for (size_t index = 0; index < asking; index++) {
        if (streq (asked[index], self->name) || !s_reachable (self, asked[index]))
            continue;
        s_peer_t *peer = (s_peer_t *) zhashx_lookup (self->peers, asked[index]);
        if (scan && peer && peer->scan_skip_until > now) {
            self->scan_skipped++;
            continue;
        }
        sn_pack_reset (self->out);
        sn_pack_map (self->out, 2 + s_range_entries (call, root));
        sn_pack_kv_str (self->out, "op", scan ? "rscan" : "rrange");
        sn_pack_kv_uint (self->out, "rid", call->id);
        s_range_pack (self->out, call, root);
        if (s_peer_send (self, asked[index]))
            snprintf (call->pages[call->sent++].name, SN_NAME_MAX + 1, "%s", asked[index]);
    }
    free (asked);
    if (call->sent == 0) {
        sn_pack_error (self->reply, rid, 503, "no member could be asked");
        s_call_answer (self, call);
    }
    else if (scan)
        s_call_wait (self, call,
                     self->write_timeout_ms < S_SCAN_WAIT ? self->write_timeout_ms : S_SCAN_WAIT);
    sn_pack_reset (self->reply);
}

//  rrange {rid, from?, to?, limit} and rscan {rid, p, from?, to?, limit, prefix?}: a
//  peer's range or scan over our store, answered with rgot.
static int
s_on_rrange (self_t *self, const char *sender, const sn_value_t *root, bool scan)
{
    uint64_t their_rid, limit;
    uint32_t p = 0;
    char error[S_ERROR_MAX];
    if (!sn_value_uint (sn_value_get (root, "rid"), &their_rid) || !sn_value_get (root, "limit") ||
        !s_range_valid (self, root, scan, &limit, &p, error, sizeof error))
        return -1;
    s_call_t *call = s_call_new (self, S_CALL_REMOTE_GET);
    if (!call)
        return 0;
    call->rid = their_rid;
    call->limit = limit;
    call->scan = scan;
    call->p = p;
    snprintf (call->peer, sizeof call->peer, "%s", sender);
    s_store_begin (self, call, scan ? "scan" : "range", s_range_entries (call, root));
    s_range_pack (self->req, call, root);
    s_store_call (self, call);
    return 0;
}

//  ---- Anti-entropy

//  Start one exchange per partition this node holds, each with the next of its
//  fellow replicas in turn: our digest goes to the replica, which compares it with
//  its own, and each side pushes what the other may lack.
static void
s_anti_entropy (self_t *self)
{
    self->ae_rounds++;
    self->ae_last = zclock_time ();
    self->ae_turn++;
    uint32_t replicas = sn_placement_replica_count (self->placement);
    for (uint32_t p = 0; p < self->partitions; p++) {
        if (!sn_placement_holds (self->placement, p, self->name))
            continue;
        const char *chosen = NULL;
        for (uint32_t step = 0; step < replicas && !chosen; step++) {
            const char *replica =
                sn_placement_replica (self->placement, p, (self->ae_turn + step) % replicas);
            if (replica && !streq (replica, self->name) && s_reachable (self, replica))
                chosen = replica;
        }
        if (!chosen)
            continue;
        //  One exchange per partition at a time: the next waits for this one's copies
        if (self->ae_active[p])
            continue;
        s_call_t *call = s_call_new (self, S_CALL_DIGEST);
        if (!call)
            return;
        call->p = p;
        s_ae_count (self, call, false);
        snprintf (call->peer, sizeof call->peer, "%s", chosen);
        s_store_begin (self, call, "digest", 1);
        sn_pack_kv_uint (self->req, "p", p);
        s_store_call (self, call);
    }
}

//  Scan one time bucket of partition p, from from, and push it to peer.
static void
s_push_start (self_t *self, const char *peer, uint32_t p, const char *from, const char *to,
              bool refined)
{
    s_call_t *call = s_call_new (self, S_CALL_PUSH);
    if (!call)
        return;
    call->p = p;
    s_ae_count (self, call, refined);
    snprintf (call->peer, sizeof call->peer, "%s", peer);
    snprintf (call->key, sizeof call->key, "%s", to);
    s_store_begin (self, call, "scan", *to ? 4 : 3);
    sn_pack_kv_uint (self->req, "p", p);
    sn_pack_kv_str (self->req, "from", from);
    if (*to)
        sn_pack_kv_str (self->req, "to", to);
    sn_pack_kv_uint (self->req, "limit", S_PUSH_PAGE);
    s_store_call (self, call);
}

//  Push the events of p from t for span ms (an hour bucket or a minute of one).
static void
s_push_bucket (self_t *self, const char *peer, uint32_t p, uint64_t t, uint64_t span)
{
    char from[SN_KEY_MAX + 1], to[SN_KEY_MAX + 1] = "";
    sn_key_time_prefix ((int64_t) t, from);
    //  The last hour a key can hold has no end key: its scan runs to the end
    if (t + span <= (uint64_t) SN_KEY_MS_MAX)
        sn_key_time_prefix ((int64_t) (t + span), to);
    s_push_start (self, peer, p, from, to, span == SN_STORE_MINUTE_MS);
}

//  Copy buckets of span ms both ways: ask the peer to push its side, push ours.
static void
s_exchange_buckets (self_t *self, const char *peer, uint32_t p, const uint64_t *buckets,
                    size_t count, uint64_t span)
{
    sn_pack_reset (self->out);
    sn_pack_map (self->out, 4);
    sn_pack_kv_str (self->out, "op", "pull");
    sn_pack_kv_uint (self->out, "p", p);
    sn_pack_kv_uint (self->out, "span", span);
    sn_pack_str (self->out, "buckets");
    sn_pack_array (self->out, (uint32_t) count);
    for (size_t index = 0; index < count; index++)
        sn_pack_uint (self->out, buckets[index]);
    s_peer_send (self, peer);
    for (size_t index = 0; index < count; index++)
        s_push_bucket (self, peer, p, buckets[index], span);
}

//  Split an hour bucket that differs from the peer's per minute: our store's minute
//  digests of it go to the peer, which copies the minutes that differ both ways.
static void
s_refine_start (self_t *self, const char *peer, uint32_t p, uint64_t t)
{
    s_call_t *call = s_call_new (self, S_CALL_DIGEST);
    if (!call)
        return;
    call->p = p;
    call->within = t;
    s_ae_count (self, call, true);
    snprintf (call->peer, sizeof call->peer, "%s", peer);
    s_store_begin (self, call, "digest", 2);
    sn_pack_kv_uint (self->req, "p", p);
    sn_pack_kv_uint (self->req, "within", t);
    s_store_call (self, call);
}

//  Our digest of a partition against a replica's: push every bucket that differs,
//  and ask the replica to push its side of them.
static void
s_compare (self_t *self, s_call_t *call, const sn_value_t *ours)
{
    const sn_value_t *theirs = sn_value_get (sn_msg_root (call->theirs), "buckets");
    size_t our_count = sn_value_size (ours), their_count = sn_value_size (theirs);
    size_t i = 0, j = 0;
    uint64_t differ[S_AE_MINUTES];
    size_t differ_count = 0, differ_max = call->refined ? S_AE_MINUTES : S_AE_BUCKETS_MAX;
    while ((i < our_count || j < their_count) && differ_count < differ_max) {
        uint64_t t1 = UINT64_MAX, t2 = UINT64_MAX, c1 = 0, c2 = 0, x1 = 0, x2 = 0;
        const sn_value_t *a = i < our_count ? sn_value_at (ours, i) : NULL;
        const sn_value_t *b = j < their_count ? sn_value_at (theirs, j) : NULL;
        if (a) {
            sn_value_uint (sn_value_get (a, "t"), &t1);
            sn_value_uint (sn_value_get (a, "count"), &c1);
            sn_value_uint (sn_value_get (a, "xor"), &x1);
        }
        if (b &&
            !(sn_value_uint (sn_value_at (b, 0), &t2) && sn_value_uint (sn_value_at (b, 1), &c2) &&
              sn_value_uint (sn_value_at (b, 2), &x2)))
            return; //  malformed: checked on arrival, so never here
        uint64_t t = t1 < t2 ? t1 : t2;
        if (t1 == t2 && c1 == c2 && x1 == x2)
            ;
        else if (!s_ae_skip (self, t))
            differ[differ_count++] = t;
        i += t1 == t;
        j += t2 == t;
    }
    //  Minutes of an hour that had settled already: copied at once
    if (call->refined) {
        if (differ_count)
            s_exchange_buckets (self, call->peer, call->p, differ, differ_count,
                                SN_STORE_MINUTE_MS);
        return;
    }
    //  A bucket is copied only once our side of it has held still between two
    //  exchanges: one still being written (the current hour, under load) differs from
    //  every replica by the writes in flight, and copying it each round would send it
    //  again and again. It is repaired once writes to it pause, or the hour ends.
    size_t settled = 0;
    for (size_t index = 0; index < differ_count; index++) {
        uint64_t ours_now[2] = {0, 0};
        for (size_t at = 0; at < our_count; at++) {
            const sn_value_t *a = sn_value_at (ours, at);
            uint64_t t = 0;
            if (sn_value_uint (sn_value_get (a, "t"), &t) && t == differ[index]) {
                sn_value_uint (sn_value_get (a, "count"), &ours_now[0]);
                sn_value_uint (sn_value_get (a, "xor"), &ours_now[1]);
            }
        }
        char name[SN_NAME_MAX + 48];
        snprintf (name, sizeof name, "%s/%u/%" PRIu64, call->peer, call->p, differ[index]);
        uint64_t *before = (uint64_t *) zhashx_lookup (self->ae_seen, name);
        if (before && before[0] == ours_now[0] && before[1] == ours_now[1]) {
            zhashx_delete (self->ae_seen, name);
            differ[settled++] = differ[index];
        }
        else {
            if (zhashx_size (self->ae_seen) >= S_AE_SEEN_MAX)
                zhashx_purge (self->ae_seen);
            uint64_t *now = (uint64_t *) malloc (sizeof ours_now);
            memcpy (now, ours_now, sizeof ours_now);
            zhashx_update (self->ae_seen, name, now);
        }
    }
    //  A settled hour is narrowed to the minutes that differ before anything is
    //  copied: a replica that missed a few writes gets those minutes, not the hour
    for (size_t index = 0; index < settled; index++)
        s_refine_start (self, call->peer, call->p, differ[index]);
}

//  ---- Answers from the store

static void
s_store_recv (self_t *self)
{
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    while (zmq_msg_recv (&frame, zsock_resolve (self->store), ZMQ_DONTWAIT) != -1) {
        sn_msg_t *msg = sn_msg_decode_trusted (zmq_msg_data (&frame), zmq_msg_size (&frame), NULL);
        const sn_value_t *root = msg ? sn_msg_root (msg) : NULL;
        uint64_t rid = 0, code = 0;
        sn_value_uint (sn_value_get (root, "rid"), &rid);
        sn_value_uint (sn_value_get (root, "code"), &code);
        s_call_t *call = s_call_lookup (self, rid);
        size_t error_len = 0;
        const char *error = sn_value_str (sn_value_get (root, "error"), &error_len);
        if (!call)
            ;
        else if (call->kind == S_CALL_WRITE)
            s_write_answer (self, call, call->self_index, code, error, error_len);
        else if (call->kind == S_CALL_REMOTE_WRITE)
            s_remote_stored (self, call, code, error, error_len);
        else if (call->kind == S_CALL_GET) {
            if (code == 200 && s_user_event (root))
                s_get_answer (self, call, root);
            else if (code == 200)
                s_get_not_found (self, call, true); //  the same type on every replica
            else
                s_get_elsewhere (self, call);
        }
        else if (call->kind == S_CALL_RANGE)
            s_range_add (self, call, self->name, &msg, code == 200 ? root : NULL);
        else if (call->kind == S_CALL_BULK)
            s_bulk_stored (self, call, code == 200 ? sn_value_get (root, "results") : NULL);
        else if (call->kind == S_CALL_BATCH) {
            s_bulk_stored (self, call, code == 200 ? sn_value_get (root, "results") : NULL);
            s_call_end (self, call);
        }
        else if (call->kind == S_CALL_REMOTE_GET) {
            sn_pack_reset (self->out);
            sn_pack_map (self->out, 4);
            sn_pack_kv_str (self->out, "op", "rgot");
            sn_pack_kv_uint (self->out, "rid", call->rid);
            sn_pack_kv_uint (self->out, "code", code);
            sn_pack_kv_value (self->out, "reply", root);
            s_peer_send (self, call->peer);
            s_call_end (self, call);
        }
        else if (call->kind == S_CALL_DIGEST && call->refined && code == 413) {
            //  Too many events to split here: the hour is copied whole
            s_exchange_buckets (self, call->peer, call->p, &call->within, 1, SN_STORE_BUCKET_MS);
            s_call_end (self, call);
        }
        else if (call->kind == S_CALL_DIGEST) {
            const sn_value_t *buckets = sn_value_get (root, "buckets");
            sn_pack_reset (self->out);
            sn_pack_map (self->out, call->refined ? 4 : 3);
            sn_pack_kv_str (self->out, "op", "digest");
            sn_pack_kv_uint (self->out, "p", call->p);
            if (call->refined)
                sn_pack_kv_uint (self->out, "within", call->within);
            sn_pack_str (self->out, "buckets");
            size_t count = sn_value_size (buckets);
            sn_pack_array (self->out, (uint32_t) count);
            for (size_t index = 0; index < count; index++) {
                const sn_value_t *bucket = sn_value_at (buckets, index);
                sn_pack_array (self->out, 3);
                sn_pack_value (self->out, sn_value_get (bucket, "t"));
                sn_pack_value (self->out, sn_value_get (bucket, "count"));
                sn_pack_value (self->out, sn_value_get (bucket, "xor"));
            }
            if (code == 200)
                s_peer_send (self, call->peer);
            s_call_end (self, call);
        }
        else if (call->kind == S_CALL_COMPARE) {
            if (code == 200)
                s_compare (self, call, sn_value_get (root, "buckets"));
            else if (code == 413 && call->refined)
                s_exchange_buckets (self, call->peer, call->p, &call->within, 1,
                                    SN_STORE_BUCKET_MS);
            s_call_end (self, call);
        }
        else if (call->kind == S_CALL_PUSH) {
            const sn_value_t *events = sn_value_get (root, "events");
            size_t count = sn_value_size (events);
            if (code == 200 && count) {
                sn_pack_reset (self->out);
                sn_pack_map (self->out, 3);
                sn_pack_kv_str (self->out, "op", "repair");
                sn_pack_kv_uint (self->out, "p", call->p);
                sn_pack_str (self->out, "events");
                sn_pack_array (self->out, (uint32_t) count);
                for (size_t index = 0; index < count; index++) {
                    const sn_value_t *item = sn_value_at (events, index);
                    sn_pack_map (self->out, 3);
                    sn_pack_kv_value (self->out, "key", sn_value_get (item, "key"));
                    sn_pack_kv_value (self->out, "type", sn_value_get (item, "type"));
                    sn_pack_kv_value (self->out, "event", sn_value_get (item, "event"));
                }
                if (s_peer_send (self, call->peer))
                    self->ae_pushed += count;
                else
                    code = 503; //  the peer's queue is full: the next round goes on
            }
            char *next = sn_value_get_strdup (root, "next");
            if (code == 200 && next && strlen (next) <= SN_KEY_MAX)
                s_push_start (self, call->peer, call->p, next, call->key, call->refined);
            free (next);
            s_call_end (self, call);
        }
        sn_msg_destroy (&msg);
    }
    zmq_msg_close (&frame);
}

//  A call whose deadline passed: each kind ends its own way.
static void
s_call_expire (self_t *self, s_call_t *call)
{
    if (call->kind == S_CALL_WRITE) {
        call->deadline = 0;
        s_write_settle (self, call);
    }
    else if (call->kind == S_CALL_GET)
        s_get_not_found (self, call, call->answered == call->sent);
    else if (call->kind == S_CALL_FORWARD)
        s_forward_retry (self, call);
    else if (call->kind == S_CALL_RANGE && call->scan)
        s_scan_expire (self, call);
    else if (call->kind == S_CALL_RANGE) {
        sn_pack_error (self->reply, call->rid, 504,
                       "%u of %u members did not answer the range in time",
                       call->sent - call->answered, call->sent);
        s_call_answer (self, call);
    }
    else {
        if (call->kind == S_CALL_HINT) {
            char text[24];
            snprintf (text, sizeof text, "%" PRIu64, call->hint);
            s_hint_t *hint = (s_hint_t *) zhashx_lookup (self->hints, text);
            if (hint)
                hint->in_flight = 0;
        }
        s_call_end (self, call);
    }
}

//  Give up on calls whose deadline has passed.
static void
s_calls_expire (self_t *self, int64_t now)
{
    while (self->oldest_call < self->next_call) {
        s_call_t *call = self->calls[self->oldest_call & (S_CALLS - 1)];
        if (!call || call->id != self->oldest_call) {
            self->oldest_call++;
            continue;
        }
        //  A bulk ends with its items, which expire on their own; calls with a wait
        //  of their own expire from self->waits
        if (call->kind == S_CALL_BULK || call->until) {
            self->oldest_call++;
            continue;
        }
        if (call->deadline > now)
            break;
        self->oldest_call++;
        s_call_expire (self, call);
    }
    //  One at a time, from the start again: expiring a forward may add its retry
    bool expired = true;
    while (expired) {
        expired = false;
        for (void *item = zlistx_first (self->waits); item && !expired;
             item = zlistx_next (self->waits)) {
            s_call_t *call = s_call_lookup (self, (uint64_t) (uintptr_t) item);
            if (call && call->until > now)
                continue;
            zlistx_delete (self->waits, zlistx_cursor (self->waits));
            if (call)
                s_call_expire (self, call);
            expired = true;
        }
    }
}

//  When the next call expires, or -1 when none is waiting.
static int64_t
s_calls_deadline (self_t *self)
{
    int64_t next = -1;
    while (self->oldest_call < self->next_call) {
        s_call_t *call = self->calls[self->oldest_call & (S_CALLS - 1)];
        if (call && call->id == self->oldest_call && call->kind != S_CALL_BULK && !call->until) {
            next = call->deadline;
            break;
        }
        self->oldest_call++;
    }
    for (void *item = zlistx_first (self->waits); item; item = zlistx_next (self->waits)) {
        s_call_t *call = s_call_lookup (self, (uint64_t) (uintptr_t) item);
        int64_t until = call ? call->until : 0; //  ended: its entry goes at the next expiry
        if (next == -1 || until < next)
            next = until;
    }
    return next;
}

//  ---- Data messages from peers. Each is checked whole; -1 drops it.

//  A string field of at most max bytes, copied into out.
static bool
s_field_str (const sn_value_t *root, const char *name, char *out, size_t max)
{
    size_t len = 0;
    const char *text = sn_value_str (sn_value_get (root, name), &len);
    if (!text || len == 0 || len > max)
        return false;
    memcpy (out, text, len);
    out[len] = 0;
    return true;
}

//  The copy of an event a peer sent: {key, type?, p, event}, well formed.
static bool
s_event_valid (self_t *self, const sn_value_t *root)
{
    char key[SN_KEY_MAX + 1];
    uint64_t p;
    const sn_value_t *type = sn_value_get (root, "type");
    size_t type_len = 0;
    return s_field_str (root, "key", key, SN_KEY_MAX) && sn_key_time (key, strlen (key)) >= 0 &&
           sn_value_uint (sn_value_get (root, "p"), &p) && p < self->partitions &&
           sn_value_is (sn_value_get (root, "event"), SN_TYPE_MAP) &&
           (!type || (sn_value_str (type, &type_len) && type_len > 0 && type_len <= 64));
}

static int
s_on_rput (self_t *self, const char *sender, const sn_value_t *root)
{
    uint64_t their_rid, index;
    if (!sn_value_uint (sn_value_get (root, "rid"), &their_rid) ||
        !sn_value_uint (sn_value_get (root, "i"), &index) || index >= S_REPLICAS_MAX ||
        !s_event_valid (self, root))
        return -1;
    s_call_t *call = s_call_new (self, S_CALL_REMOTE_WRITE);
    if (!call)
        return 0; //  the writer times out on us, and anti-entropy fills the gap
    call->rid = their_rid;
    call->need = (uint32_t) index;
    snprintf (call->peer, sizeof call->peer, "%s", sender);
    //  Stored with the rest of the burst read from the inbox, as one bulk
    if (self->burst_count == S_BURST)
        s_burst_flush (self);
    const sn_value_t *type = sn_value_get (root, "type");
    sn_pack_map (self->burst, s_event_entries (type));
    sn_pack_kv_value (self->burst, "key", sn_value_get (root, "key"));
    if (type)
        sn_pack_kv_value (self->burst, "type", type);
    sn_pack_kv_value (self->burst, "p", sn_value_get (root, "p"));
    sn_pack_kv_value (self->burst, "event", sn_value_get (root, "event"));
    self->burst_ids[self->burst_count++] = call->id;
    return 0;
}

static int
s_on_rack (self_t *self, const char *sender, const sn_value_t *root)
{
    uint64_t rid, index, code;
    if (!sn_value_uint (sn_value_get (root, "rid"), &rid) ||
        !sn_value_uint (sn_value_get (root, "i"), &index) ||
        !sn_value_uint (sn_value_get (root, "code"), &code))
        return -1;
    s_call_t *call = s_call_lookup (self, rid);
    size_t error_len = 0;
    const char *error = sn_value_str (sn_value_get (root, "error"), &error_len);
    //  Only the replica a write went to answers for it
    if (call && call->kind == S_CALL_WRITE && index < S_REPLICAS_MAX) {
        const char *replica = sn_placement_replica (self->placement, call->p, (uint32_t) index);
        if (replica && streq (replica, sender))
            s_write_answer (self, call, index, code, error, error_len);
    }
    else if (call && call->kind == S_CALL_HINT && streq (call->peer, sender)) {
        uint64_t hint = call->hint;
        s_call_end (self, call);
        //  A refusal would be refused again: only a failure to store keeps the hint
        if (code < 500)
            s_hint_drop (self, hint);
        else {
            char text[24];
            snprintf (text, sizeof text, "%" PRIu64, hint);
            s_hint_t *kept = (s_hint_t *) zhashx_lookup (self->hints, text);
            if (kept)
                kept->in_flight = 0;
        }
    }
    return 0;
}

//  rputs {writes: [...]} and racks {acks: [...]}: many of each in one message. An item
//  that is not well formed is dropped alone.
static int
s_on_many (self_t *self, const char *sender, const sn_value_t *root, bool writes)
{
    const sn_value_t *items = sn_value_get (root, writes ? "writes" : "acks");
    if (!sn_value_is (items, SN_TYPE_ARRAY))
        return -1;
    for (size_t index = 0; index < sn_value_size (items); index++) {
        const sn_value_t *item = sn_value_at (items, index);
        int rc = writes ? s_on_rput (self, sender, item) : s_on_rack (self, sender, item);
        if (rc == -1)
            self->dropped++;
    }
    return 0;
}

static int
s_on_hint (self_t *self, const sn_value_t *root, sn_msg_t **msg_p)
{
    char target[SN_NAME_MAX + 1];
    if (!s_field_str (root, "for", target, SN_NAME_MAX) || !s_event_valid (self, root) ||
        streq (target, self->name))
        return -1;
    s_hint_keep (self, msg_p);
    return 0;
}

static int
s_on_rget (self_t *self, const char *sender, const sn_value_t *root)
{
    uint64_t their_rid;
    char key[SN_KEY_MAX + 1];
    if (!sn_value_uint (sn_value_get (root, "rid"), &their_rid) ||
        !s_field_str (root, "key", key, SN_KEY_MAX))
        return -1;
    s_call_t *call = s_call_new (self, S_CALL_REMOTE_GET);
    if (!call)
        return 0;
    call->rid = their_rid;
    snprintf (call->peer, sizeof call->peer, "%s", sender);
    s_store_begin (self, call, "get", 1);
    sn_pack_kv_str (self->req, "key", key);
    s_store_call (self, call);
    return 0;
}

static int
s_on_rgot (self_t *self, const char *sender, const sn_value_t *root, sn_msg_t **msg_p)
{
    uint64_t rid, code;
    const sn_value_t *reply = sn_value_get (root, "reply");
    if (!sn_value_uint (sn_value_get (root, "rid"), &rid) ||
        !sn_value_uint (sn_value_get (root, "code"), &code) || !sn_value_is (reply, SN_TYPE_MAP))
        return -1;
    s_call_t *call = s_call_lookup (self, rid);
    if (call && call->kind == S_CALL_RANGE) {
        s_range_add (self, call, sender, msg_p, code == 200 ? reply : NULL);
        return 0;
    }
    if (!call || call->kind != S_CALL_GET)
        return 0;
    //  Only a replica that was asked answers, once
    uint32_t index = 0, replicas = sn_placement_replica_count (self->placement);
    while (index < replicas && index < S_REPLICAS_MAX &&
           !streq (sn_placement_replica (self->placement, call->p, index) ?: "", sender))
        index++;
    if (index >= replicas || index >= S_REPLICAS_MAX || !(call->sent_mask & (1ull << index)) ||
        (call->answered_mask & (1ull << index)))
        return 0;
    call->answered_mask |= 1ull << index;
    //  A replica that has not swept an expired event yet (its clock behind ours)
    //  answers as if it had
    int64_t ts = 0;
    if (code == 200 && sn_value_int (sn_value_get (reply, "ts"), &ts) &&
        s_expired (self, sn_value_get (reply, "type"), ts))
        code = 404;
    bool found = code == 200 && sn_value_is (sn_value_get (reply, "event"), SN_TYPE_MAP);
    if (found && s_user_event (reply))
        s_get_answer (self, call, reply);
    else {
        //  Only "not here" (or an internal event) counts towards a 404; a replica
        //  that failed is one that did not answer
        if (code != 404 && !found)
            call->refusals++;
        if (++call->answered == call->sent)
            s_get_not_found (self, call, call->refusals == 0);
    }
    return 0;
}

//  digest {p, buckets: [[t, count, xor]...]}: a replica's view of a partition we hold.
static int
s_on_digest (self_t *self, const char *sender, const sn_value_t *root, sn_msg_t **msg_p)
{
    uint64_t p, t, count, hashes, previous = 0, within = 0;
    const sn_value_t *buckets = sn_value_get (root, "buckets");
    if (!sn_value_uint (sn_value_get (root, "p"), &p) || p >= self->partitions ||
        !sn_value_is (buckets, SN_TYPE_ARRAY))
        return -1;
    //  A refined digest: one hour bucket per minute
    bool refined = sn_value_get (root, "within") != NULL;
    if (refined && (!sn_value_uint (sn_value_get (root, "within"), &within) ||
                    within % SN_STORE_BUCKET_MS != 0 || within > (uint64_t) SN_KEY_MS_MAX ||
                    sn_value_size (buckets) > S_AE_MINUTES))
        return -1;
    //  In time order, as the store gives them: the comparison walks both in step
    for (size_t index = 0; index < sn_value_size (buckets); index++) {
        const sn_value_t *bucket = sn_value_at (buckets, index);
        if (!sn_value_is (bucket, SN_TYPE_ARRAY) || sn_value_size (bucket) != 3 ||
            !sn_value_uint (sn_value_at (bucket, 0), &t) || (index && t <= previous) ||
            t > (uint64_t) SN_KEY_MS_MAX || !sn_value_uint (sn_value_at (bucket, 1), &count) ||
            !sn_value_uint (sn_value_at (bucket, 2), &hashes))
            return -1;
        if (refined && (t < within || t >= within + SN_STORE_BUCKET_MS || t % SN_STORE_MINUTE_MS))
            return -1;
        previous = t;
    }
    if (!sn_placement_holds (self->placement, (uint32_t) p, self->name))
        return 0; //  placement moved under the exchange; the next round is right
    if (refined && s_ae_skip (self, within))
        return 0;
    //  An exchange of this partition under way already: the next round asks again.
    //  A refined digest is part of an exchange the peer began, for an hour of its own:
    //  taken while this partition has few refined calls in flight.
    if (refined ? self->ae_refined[p] >= S_AE_REFINED_MAX : self->ae_active[p] > 0)
        return 0;
    s_call_t *call = s_call_new (self, S_CALL_COMPARE);
    if (!call)
        return 0;
    call->p = (uint32_t) p;
    call->within = within;
    s_ae_count (self, call, refined);
    snprintf (call->peer, sizeof call->peer, "%s", sender);
    call->theirs = *msg_p;
    *msg_p = NULL;
    s_store_begin (self, call, "digest", refined ? 2 : 1);
    sn_pack_kv_uint (self->req, "p", p);
    if (refined)
        sn_pack_kv_uint (self->req, "within", within);
    s_store_call (self, call);
    return 0;
}

//  pull {p, buckets: [t...], span?}: a replica found these buckets (of span ms: an
//  hour, the default, or a minute) differ; push ours.
static int
s_on_pull (self_t *self, const char *sender, const sn_value_t *root)
{
    uint64_t p, t, span = SN_STORE_BUCKET_MS;
    const sn_value_t *buckets = sn_value_get (root, "buckets");
    const sn_value_t *span_value = sn_value_get (root, "span");
    if (span_value && (!sn_value_uint (span_value, &span) ||
                       (span != SN_STORE_BUCKET_MS && span != SN_STORE_MINUTE_MS)))
        return -1;
    size_t most = span == SN_STORE_MINUTE_MS ? S_AE_MINUTES : S_AE_BUCKETS_MAX;
    if (!sn_value_uint (sn_value_get (root, "p"), &p) || p >= self->partitions ||
        !sn_value_is (buckets, SN_TYPE_ARRAY) || sn_value_size (buckets) > most)
        return -1;
    for (size_t index = 0; index < sn_value_size (buckets); index++)
        if (!sn_value_uint (sn_value_at (buckets, index), &t) || t > (uint64_t) SN_KEY_MS_MAX ||
            t % span)
            return -1;
    //  We are copying this partition already: the next round asks again. Minutes are
    //  the end of a refined exchange, whose hour we may be splitting too: pushed now.
    if (span == SN_STORE_MINUTE_MS ? self->ae_refined[p] >= S_AE_REFINED_MAX
                                   : self->ae_active[p] > 0)
        return 0;
    for (size_t index = 0; index < sn_value_size (buckets); index++) {
        sn_value_uint (sn_value_at (buckets, index), &t);
        if (!s_ae_skip (self, t))
            s_push_bucket (self, sender, (uint32_t) p, t, span);
    }
    return 0;
}

//  repair {p, events: [{key, type, event}...]}: events a replica holds of a partition
//  we hold. Stored as one bulk; the store checks each one, and ones we have already
//  are harmless repeats.
static int
s_on_repair (self_t *self, const sn_value_t *root)
{
    uint64_t p;
    const sn_value_t *events = sn_value_get (root, "events");
    if (!sn_value_uint (sn_value_get (root, "p"), &p) || p >= self->partitions ||
        !sn_value_is (events, SN_TYPE_ARRAY))
        return -1;
    size_t count = sn_value_size (events);
    for (size_t index = 0; index < count; index++) {
        const sn_value_t *item = sn_value_at (events, index);
        char key[SN_KEY_MAX + 1];
        size_t type_len = 0;
        if (!s_field_str (item, "key", key, SN_KEY_MAX) ||
            !sn_value_str (sn_value_get (item, "type"), &type_len) ||
            !sn_value_is (sn_value_get (item, "event"), SN_TYPE_MAP))
            return -1;
    }
    sn_pack_reset (self->req);
    sn_pack_map (self->req, 4);
    sn_pack_kv_str (self->req, "op", "bulk");
    sn_pack_kv_uint (self->req, "rid", 0); //  no call: nobody waits for it
    sn_pack_str (self->req, "replica");
    sn_pack_bool (self->req, true);
    sn_pack_str (self->req, "puts");
    sn_pack_array (self->req, (uint32_t) count);
    for (size_t index = 0; index < count; index++) {
        const sn_value_t *item = sn_value_at (events, index);
        sn_pack_map (self->req, 4);
        sn_pack_kv_value (self->req, "key", sn_value_get (item, "key"));
        sn_pack_kv_value (self->req, "type", sn_value_get (item, "type"));
        sn_pack_kv_uint (self->req, "p", p);
        sn_pack_kv_value (self->req, "event", sn_value_get (item, "event"));
    }
    if (s_store_send (self))
        self->ae_received += count;
    return 0;
}

//  --------------------------------------------------------------------------
//  Incoming peer messages

//  A member entry of a ping, checked: [name, endpoint, incarnation, status].
static bool
s_entry_valid (const sn_value_t *entry)
{
    if (!sn_value_is (entry, SN_TYPE_ARRAY) || sn_value_size (entry) != 4)
        return false;
    char *name = sn_value_strdup (sn_value_at (entry, 0));
    bool named = name && sn_name_valid (name);
    free (name);
    if (!named)
        return false;
    size_t len;
    const char *endpoint = sn_value_str (sn_value_at (entry, 1), &len);
    if (!endpoint || len == 0 || len > SN_ENDPOINT_MAX)
        return false;
    uint64_t incarnation;
    if (!sn_value_uint (sn_value_at (entry, 2), &incarnation))
        return false;
    char *status = sn_value_strdup (sn_value_at (entry, 3));
    bool valid = sn_members_status_parse (status) != -1;
    free (status);
    return valid;
}

//  Remember that a connection said hello as name, forgetting the oldest identity of
//  that member when it has too many.
static void
s_route_add (self_t *self, const char *identity, const char *name)
{
    const char *known = (const char *) zhashx_lookup (self->routes, identity);
    if (known && streq (known, name))
        return;
    if (known) {
        //  The same connection now speaks for another name: forget the old claim.
        s_peer_t *old = (s_peer_t *) zhashx_lookup (self->peers, known);
        for (size_t index = 0; old && index < old->route_count; index++)
            if (streq (old->routes[index], identity)) {
                free (old->routes[index]);
                memmove (&old->routes[index], &old->routes[index + 1],
                         (old->route_count - index - 1) * sizeof (char *));
                old->route_count--;
                break;
            }
    }
    s_peer_t *peer = s_peer_require (self, name);
    if (peer->route_count == S_ROUTES_MAX) {
        zhashx_delete (self->routes, peer->routes[0]);
        free (peer->routes[0]);
        memmove (&peer->routes[0], &peer->routes[1], (S_ROUTES_MAX - 1) * sizeof (char *));
        peer->route_count--;
    }
    peer->routes[peer->route_count++] = strdup (identity);
    zhashx_update (self->routes, identity, strdup (name));
}

//  hello: the connection speaks for this member from now on. Answered at once by a
//  ping on our own link to it (made now if needed), so a joiner learns the cluster
//  without waiting a heartbeat. Returns -1 when the message is not acceptable.
static int
s_on_hello (self_t *self, const char *identity, const sn_value_t *root, int64_t now)
{
    char *name = sn_value_get_strdup (root, "name");
    char *endpoint = sn_value_get_strdup (root, "endpoint");
    uint64_t incarnation, partitions, rf, ticket, retention = 0;
    int rc = -1;
    bool valid = name && endpoint && sn_name_valid (name) && strlen (endpoint) > 0 &&
                 strlen (endpoint) <= SN_ENDPOINT_MAX &&
                 sn_value_uint (sn_value_get (root, "incarnation"), &incarnation) &&
                 sn_value_uint (sn_value_get (root, "partitions"), &partitions) &&
                 sn_value_uint (sn_value_get (root, "rf"), &rf) &&
                 sn_value_uint (sn_value_get (root, "ticket"), &ticket) &&
                 (!sn_value_get (root, "retention") ||
                  sn_value_uint (sn_value_get (root, "retention"), &retention)) &&
                 !streq (name, self->name);
    //  Meant for a member that used to listen at our endpoint: not for us to take
    const sn_value_t *to = sn_value_get (root, "to");
    if (valid && to && !sn_value_streq (to, self->name)) {
        valid = false;
        if (self->verbose)
            zsys_info ("sn_mesh: %s: dropped a hello from %s meant for another node", self->name,
                       name);
    }
    //  Nodes that place partitions differently would each write where the others
    //  never look: such a node is refused, and both sides say why.
    if (valid && (partitions != self->partitions || rf != self->rf)) {
        char reason[S_ERROR_MAX];
        snprintf (reason, sizeof reason,
                  "%s runs with --partitions %" PRIu64 " --rf %" PRIu64
                  ", %s with --partitions %u --rf %u: every node of a cluster needs the same",
                  name, partitions, rf, self->name, self->partitions, self->rf);
        s_refusal (self, &self->refused, now, "hello from %s refused: %s", name, reason);
        s_refuse (self, now, endpoint, ticket, reason);
        valid = false;
        rc = 0;
    }
    //  A member that keeps user events longer would copy back, round after round,
    //  every event the others have deleted, and answer reads with them. A hello
    //  without the field comes from a build that keeps them for ever.
    if (valid && retention != (uint64_t) self->retention) {
        char reason[S_ERROR_MAX];
        snprintf (reason, sizeof reason,
                  "%s runs with --event-retention-ms %" PRIu64 ", %s with %" PRId64
                  ": every node of a cluster needs the same",
                  name, retention, self->name, self->retention);
        s_refusal (self, &self->refused, now, "hello from %s refused: %s", name, reason);
        s_refuse (self, now, endpoint, ticket, reason);
        valid = false;
        rc = 0;
    }
    if (valid) {
        int outcome =
            sn_members_apply (self->members, name, endpoint, incarnation, SN_MEMBER_ALIVE, now);
        if (outcome != -1) {
            rc = 0;
            s_peer_t *peer = (s_peer_t *) zhashx_lookup (self->peers, name);
            bool linked = peer && peer->dealer;
            sn_members_heard (self->members, name, now);
            s_route_add (self, identity, name);
            if (self->verbose)
                zsys_info ("sn_mesh: %s: hello from %s at %s", self->name, name, endpoint);
            s_members_changed (self, now);
            //  A link made just now has already sent its ping.
            peer = (s_peer_t *) zhashx_lookup (self->peers, name);
            if (linked && peer && peer->dealer) {
                s_pack_ping (self);
                s_send (self, peer->dealer);
            }
        }
    }
    free (name);
    free (endpoint);
    return rc;
}

//  refused {from, ticket, reason}: a node would not have us. It is not a member,
//  so the message counts only when it echoes the ticket of our hellos (a stranger
//  who never heard one cannot make it up), and is only kept and logged, never
//  acted on.
static int
s_on_refused (self_t *self, const sn_value_t *root, int64_t now)
{
    size_t reason_len;
    uint64_t ticket;
    char *from = sn_value_get_strdup (root, "from");
    const char *reason = sn_value_str (sn_value_get (root, "reason"), &reason_len);
    bool valid = from && sn_name_valid (from) && reason && reason_len < S_ERROR_MAX &&
                 sn_value_uint (sn_value_get (root, "ticket"), &ticket) && ticket == self->ticket;
    if (valid)
        s_refusal (self, &self->refused_by, now, "refused by %s: %.*s", from, (int) reason_len,
                   reason);
    free (from);
    return valid ? 0 : -1;
}

//  ping: a heartbeat from a member with its whole table. The whole message is
//  checked before any of it is applied. Returns -1 when it is not acceptable.
static int
s_on_ping (self_t *self, const char *sender, const sn_value_t *root, int64_t now)
{
    const sn_value_t *entries = sn_value_get (root, "members");
    if (!sn_value_streq (sn_value_get (root, "from"), sender) ||
        !sn_value_is (entries, SN_TYPE_ARRAY) || sn_value_size (entries) > SN_MEMBERS_MAX)
        return -1;
    size_t count = sn_value_size (entries);
    for (size_t index = 0; index < count; index++)
        if (!s_entry_valid (sn_value_at (entries, index)))
            return -1;

    sn_members_heard (self->members, sender, now);
    bool refuted = false;
    for (size_t index = 0; index < count; index++) {
        const sn_value_t *entry = sn_value_at (entries, index);
        char *name = sn_value_strdup (sn_value_at (entry, 0));
        char *endpoint = sn_value_strdup (sn_value_at (entry, 1));
        char *status = sn_value_strdup (sn_value_at (entry, 3));
        uint64_t incarnation;
        sn_value_uint (sn_value_at (entry, 2), &incarnation);
        //  An entry the table refuses (incarnation UINT64_MAX, table full) is skipped
        //  alone: the rest of the sender's news is still good.
        int outcome = sn_members_apply (self->members, name, endpoint, incarnation,
                                        sn_members_status_parse (status), now);
        if (outcome == SN_MEMBERS_REFUTED) {
            refuted = true;
            if (self->verbose)
                zsys_info ("sn_mesh: %s: %s says we are %s, refuting", self->name, sender, status);
        }
        free (name);
        free (endpoint);
        free (status);
    }
    //  The member at a join endpoint has answered: joining through it is done.
    const sn_member_t *member = sn_members_lookup (self->members, sender);
    for (size_t index = 0; member && index < self->join_count; index++)
        if (self->joins[index].dealer && streq (self->joins[index].endpoint, member->endpoint)) {
            zsock_destroy (&self->joins[index].dealer);
            if (self->verbose)
                zsys_info ("sn_mesh: %s: joined through %s", self->name, member->endpoint);
        }
    //  Any member's ping carries the whole table: the cluster has answered, though
    //  the join endpoint may name the member otherwise than it advertises itself
    //  (a host name for its address, localhost for 127.0.0.1)
    bool placing = self->unplaced_until != 0;
    self->unplaced_until = 0;
    uint64_t placed = self->placed_version;
    s_members_changed (self, now);
    //  The first placement at once, even when the member table did not change
    if (placing && self->placed_version == placed)
        s_publish (self);
    if (refuted)
        s_ping_all (self, true);
    return 0;
}

//  bye: the member left at that incarnation.
static int
s_on_bye (self_t *self, const char *sender, const sn_value_t *root, int64_t now)
{
    uint64_t incarnation;
    const sn_member_t *member = sn_members_lookup (self->members, sender);
    if (!member || !sn_value_streq (sn_value_get (root, "from"), sender) ||
        !sn_value_uint (sn_value_get (root, "incarnation"), &incarnation))
        return -1;
    char endpoint[SN_ENDPOINT_MAX + 1];
    snprintf (endpoint, sizeof endpoint, "%s", member->endpoint);
    if (sn_members_apply (self->members, sender, endpoint, incarnation, SN_MEMBER_LEFT, now) == -1)
        return -1;
    if (self->verbose)
        zsys_info ("sn_mesh: %s: bye from %s", self->name, sender);
    s_members_changed (self, now);
    return 0;
}

//  One frame from the inbox. Everything here comes from outside: checked, never
//  asserted, and whatever does not pass is counted in dropped.
static void
s_inbox_handle (self_t *self, zmsg_t *msg)
{
    int rc = -1;
    if (zmsg_size (msg) == 2) {
        zframe_t *address = zmsg_first (msg);
        zframe_t *payload = zmsg_next (msg);
        char *identity = zframe_strhex (address);
        const char *error = NULL;
        sn_msg_t *decoded =
            sn_msg_decode (zframe_data (payload), zframe_size (payload), S_PEER_MAX_SIZE, &error);
        const sn_value_t *root = decoded ? sn_msg_root (decoded) : NULL;
        const sn_value_t *op = sn_value_get (root, "op");
        const char *sender = (const char *) zhashx_lookup (self->routes, identity);
        //  The sender's name is copied: handling the message may reroute identities.
        char *from = sender ? strdup (sender) : NULL;
        int64_t now = zclock_mono ();
        if (sn_value_streq (op, "hello"))
            rc = s_on_hello (self, identity, root, now);
        else if (sn_value_streq (op, "refused"))
            rc = s_on_refused (self, root, now);
        else if (from && sn_value_streq (op, "ping"))
            rc = s_on_ping (self, from, root, now);
        else if (from && sn_value_streq (op, "bye"))
            rc = s_on_bye (self, from, root, now);
        else if (from && sn_value_streq (op, "rput"))
            rc = s_on_rput (self, from, root);
        else if (from && sn_value_streq (op, "rack"))
            rc = s_on_rack (self, from, root);
        else if (from && sn_value_streq (op, "rputs"))
            rc = s_on_many (self, from, root, true);
        else if (from && sn_value_streq (op, "racks"))
            rc = s_on_many (self, from, root, false);
        else if (from && sn_value_streq (op, "hint"))
            rc = s_on_hint (self, root, &decoded);
        else if (from && sn_value_streq (op, "rget"))
            rc = s_on_rget (self, from, root);
        else if (from && sn_value_streq (op, "rgot"))
            rc = s_on_rgot (self, from, root, &decoded);
        else if (from && sn_value_streq (op, "rrange"))
            rc = s_on_rrange (self, from, root, false);
        else if (from && sn_value_streq (op, "rscan"))
            rc = s_on_rrange (self, from, root, true);
        else if (from && sn_value_streq (op, "digest"))
            rc = s_on_digest (self, from, root, &decoded);
        else if (from && sn_value_streq (op, "pull"))
            rc = s_on_pull (self, from, root);
        else if (from && sn_value_streq (op, "repair"))
            rc = s_on_repair (self, root);
        else if (from && sn_value_streq (op, "fwd"))
            rc = s_on_fwd (self, from, root);
        else if (from && sn_value_streq (op, "fwd_reply"))
            rc = s_on_fwd_reply (self, root);
        //  Whatever a member that said hello sends tells us it is there
        const char *named = rc == -1 ? NULL : (const char *) zhashx_lookup (self->routes, identity);
        s_peer_t *peer = named ? (s_peer_t *) zhashx_lookup (self->peers, named) : NULL;
        if (peer)
            peer->heard = true;
        free (from);
        sn_msg_destroy (&decoded);
        free (identity);
    }
    if (rc == -1) {
        self->dropped++;
        if (self->verbose)
            zsys_info ("sn_mesh: %s: dropped a peer message", self->name);
    }
    zmsg_destroy (&msg);
}

static void
s_inbox_recv (self_t *self)
{
    self->burst_count = 0;
    sn_pack_reset (self->burst);
    for (int count = 0; count < S_BURST; count++) {
        zmsg_t *msg = zmsg_recv (self->inbox);
        if (!msg)
            break;
        s_inbox_handle (self, msg);
    }
    s_burst_flush (self);
}

//  --------------------------------------------------------------------------
//  Ops

static void
s_pack_refusal (sn_pack_t *out, const char *name, const s_refusal_t *refusal)
{
    sn_pack_str (out, name);
    if (refusal->reason[0]) {
        sn_pack_map (out, 2);
        sn_pack_kv_str (out, "reason", refusal->reason);
        sn_pack_str (out, "at");
        sn_pack_int (out, refusal->at);
    }
    else
        sn_pack_nil (out);
}

static void
s_pack_cluster (self_t *self, uint64_t rid)
{
    sn_pack_t *out = self->out;
    sn_pack_reset (out);
    sn_pack_map (out, 13);
    sn_pack_kv_uint (out, "rid", rid);
    sn_pack_kv_uint (out, "code", 200);
    sn_pack_kv_str (out, "name", self->name);
    s_pack_refusal (out, "refused", &self->refused);
    s_pack_refusal (out, "refused_by", &self->refused_by);
    sn_pack_str (out, "hints");
    sn_pack_map (out, 3);
    sn_pack_kv_uint (out, "pending", zhashx_size (self->hints));
    sn_pack_kv_uint (out, "bytes", self->hint_bytes);
    sn_pack_kv_uint (out, "dropped", self->hints_dropped);
    sn_pack_str (out, "anti_entropy");
    sn_pack_map (out, 5);
    sn_pack_kv_uint (out, "rounds", self->ae_rounds);
    sn_pack_str (out, "last");
    if (self->ae_last)
        sn_pack_int (out, self->ae_last);
    else
        sn_pack_nil (out);
    sn_pack_kv_uint (out, "interval_ms", (uint64_t) self->anti_entropy_ms);
    sn_pack_kv_uint (out, "pushed", self->ae_pushed);
    sn_pack_kv_uint (out, "received", self->ae_received);
    sn_pack_kv_uint (out, "writes_failed", self->writes_failed);
    sn_pack_kv_uint (out, "forwarded", self->forwarded);
    sn_pack_str (out, "scans");
    sn_pack_map (out, 4);
    sn_pack_kv_uint (out, "silent", self->scan_silent);
    sn_pack_kv_uint (out, "malformed", self->scan_bad);
    sn_pack_kv_uint (out, "skipped", self->scan_skipped);
    sn_pack_kv_uint (out, "rereads", self->scan_rereads);

    size_t count;
    const sn_member_t *list = sn_members_list (self->members, &count);
    sn_pack_str (out, "members");
    sn_pack_array (out, (uint32_t) count);
    for (size_t index = 0; index < count; index++) {
        sn_pack_map (out, 4);
        sn_pack_kv_str (out, "name", list[index].name);
        sn_pack_kv_str (out, "endpoint", list[index].endpoint);
        sn_pack_kv_uint (out, "incarnation", list[index].incarnation);
        sn_pack_kv_str (out, "status", sn_members_status_name (list[index].status));
    }

    uint32_t replicas = sn_placement_replica_count (self->placement);
    sn_pack_str (out, "partitions");
    sn_pack_array (out, self->partitions);
    for (uint32_t p = 0; p < self->partitions; p++) {
        sn_pack_map (out, 3);
        sn_pack_kv_uint (out, "p", p);
        sn_pack_str (out, "replicas");
        sn_pack_array (out, replicas);
        for (uint32_t index = 0; index < replicas; index++) {
            const char *replica = sn_placement_replica (self->placement, p, index);
            if (replica)
                sn_pack_str (out, replica);
            else
                sn_pack_nil (out);
        }
        const char *owner = sn_placement_owner (self->placement, p);
        sn_pack_str (out, "owner");
        if (owner)
            sn_pack_str (out, owner);
        else
            sn_pack_nil (out);
    }
    sn_pack_kv_uint (out, "dropped", self->dropped);
}

static size_t
s_ops_handle (self_t *self)
{
    sn_routed_t *routed = &self->incoming;
    //  Requests come from the frontend, which has checked them whole, and from the
    //  node's own actors
    const char *error = NULL;
    sn_msg_t *request =
        sn_msg_decode_trusted (sn_routed_data (routed), sn_routed_size (routed), &error);
    const sn_value_t *root = request ? sn_msg_root (request) : NULL;
    const sn_value_t *op = sn_value_get (root, "op");
    uint64_t rid = 0;
    if (!request)
        sn_pack_error (self->out, 0, 400, "malformed request: %s", error);
    else if (!sn_value_is (root, SN_TYPE_MAP))
        sn_pack_error (self->out, 0, 400, "request must be a map");
    else if (!sn_value_uint (sn_value_get (root, "rid"), &rid))
        sn_pack_error (self->out, 0, 400, "rid: must be a non-negative integer");
    else if (!sn_value_is (op, SN_TYPE_STRING))
        sn_pack_error (self->out, rid, 400, "op: must be a string");
    else if (sn_value_streq (op, "cluster"))
        s_pack_cluster (self, rid);
    else if (sn_value_streq (op, "puts")) {
        size_t count = sn_value_size (sn_value_get (root, "items"));
        s_on_puts (self, routed, root);
        sn_msg_destroy (&request);
        sn_routed_close (routed);
        return count ? count : 1;
    }
    else if (!self->store && (sn_value_streq (op, "put") || sn_value_streq (op, "get") ||
                              sn_value_streq (op, "bulk") || sn_value_streq (op, "range") ||
                              sn_value_streq (op, "scan")))
        sn_pack_error (self->out, rid, 503, "this mesh has no store");
    else if (sn_value_streq (op, "put") || sn_value_streq (op, "get") ||
             sn_value_streq (op, "bulk") || sn_value_streq (op, "forward") ||
             sn_value_streq (op, "range") || sn_value_streq (op, "scan")) {
        sn_pack_reset (self->reply);
        if (sn_value_streq (op, "forward"))
            s_on_forward (self, routed, root, rid);
        else if (sn_value_streq (op, "range"))
            s_on_range (self, routed, root, rid, false);
        else if (sn_value_streq (op, "scan"))
            s_on_range (self, routed, root, rid, true);
        else if (sn_value_streq (op, "put"))
            s_on_put (self, routed, root, rid);
        else if (sn_value_streq (op, "bulk"))
            s_on_bulk (self, routed, root, rid);
        else
            s_on_get (self, routed, root, rid);
        //  Answered now (refused) or later, through the call that took the request
        sn_msg_destroy (&request);
        if (routed->count && sn_pack_size (self->reply)) {
            sn_routed_set_payload (routed, sn_pack_data (self->reply), sn_pack_size (self->reply));
            if (sn_routed_send (routed, self->ops))
                sn_routed_close (routed);
        }
        sn_routed_close (routed);
        return 1;
    }
    else {
        size_t len;
        const char *name = sn_value_str (op, &len);
        sn_pack_error (self->out, rid, 400, "op: unknown operation '%.*s'",
                       (int) (len > 64 ? 64 : len), name);
    }
    sn_msg_destroy (&request);
    sn_routed_set_payload (routed, sn_pack_data (self->out), sn_pack_size (self->out));
    if (sn_routed_send (routed, self->ops))
        sn_routed_close (routed);
    return 1;
}

//  Everything waiting, a burst at a time: the store batches what arrives together,
//  so feeding it one request per wakeup would cost a commit each.
static void
s_ops_recv (self_t *self)
{
    self->burst_count = 0;
    sn_pack_reset (self->burst);
    //  The frontend's puts count one each: the burst bounds the work between two
    //  looks at the peers
    for (size_t count = 0; count < S_BURST;) {
        if (sn_routed_recv (&self->incoming, self->ops))
            break;
        count += s_ops_handle (self);
    }
    s_burst_flush (self);
}

//  --------------------------------------------------------------------------
//  The actor

//  Connect to the store and resume making keys after the last one this node made.
//  The store actor is running already: its answer comes at once.
static int
s_store_link (self_t *self, char *error, size_t size)
{
    self->store = zsock_new (ZMQ_DEALER);
    assert (self->store);
    zsock_set_sndhwm (self->store, S_CALLS);
    zsock_set_rcvhwm (self->store, S_CALLS);
    zsock_set_linger (self->store, 0);
    if (zsock_connect (self->store, "%s", self->store_endpoint) == -1) {
        snprintf (error, size, "cannot connect to the store at %s", self->store_endpoint);
        return -1;
    }
    sn_pack_reset (self->req);
    sn_pack_map (self->req, 2);
    sn_pack_kv_str (self->req, "op", "keygen");
    sn_pack_kv_uint (self->req, "rid", 0);
    zpoller_t *poller = zpoller_new (self->store, NULL);
    int64_t ms = -1;
    uint64_t seq = 0;
    if (s_store_send (self) && zpoller_wait (poller, 10000) == self->store) {
        zframe_t *frame = zframe_recv (self->store);
        sn_msg_t *reply =
            frame ? sn_msg_decode_trusted (zframe_data (frame), zframe_size (frame), NULL) : NULL;
        const sn_value_t *root = reply ? sn_msg_root (reply) : NULL;
        if (!sn_value_int (sn_value_get (root, "ms"), &ms) ||
            !sn_value_uint (sn_value_get (root, "seq"), &seq))
            ms = -1;
        sn_msg_destroy (&reply);
        zframe_destroy (&frame);
    }
    zpoller_destroy (&poller);
    if (ms < 0) {
        snprintf (error, size, "the store at %s did not say where its keys stopped",
                  self->store_endpoint);
        return -1;
    }
    self->keygen = sn_keygen_new (self->name);
    if (ms > 0)
        sn_keygen_resume (self->keygen, ms, (uint32_t) seq);
    zsock_set_rcvtimeo (self->store, 0);
    zpoller_add (self->poller, self->store);
    self->next_anti_entropy = zclock_mono () + self->anti_entropy_ms;
    return 0;
}

//  START: check the configuration, bind both ROUTERs and make the tables. Returns 0,
//  or -1 with the reason in error.
static int
s_mesh_start (self_t *self, char *error, size_t size)
{
    if (self->members) {
        snprintf (error, size, "mesh already started");
        return -1;
    }
    if (!sn_name_valid (self->name)) {
        snprintf (error, size, "'%s' is not a valid node name", self->name);
        return -1;
    }
    if (self->partitions == 0 || self->partitions > 65536 || self->rf == 0 ||
        self->rf > S_REPLICAS_MAX) {
        snprintf (error, size, "partitions must be 1 to 65536 and rf 1 to %d", S_REPLICAS_MAX);
        return -1;
    }
    if (strlen (self->endpoint) == 0 || strlen (self->endpoint) > SN_ENDPOINT_MAX ||
        strlen (self->ops_endpoint) == 0) {
        snprintf (error, size, "the peer and ops endpoints must be set");
        return -1;
    }
    self->inbox = zsock_new (ZMQ_ROUTER);
    assert (self->inbox);
    zsock_set_router_handover (self->inbox, 1);
    zsock_set_rcvtimeo (self->inbox, 0);
    if (self->curve_public && sn_zap_server (self->inbox, self->zap_domain, self->curve_secret)) {
        snprintf (error, size,
                  "cannot make the mesh inbox a CURVE server that refuses unknown peers: %s",
                  zmq_strerror (zmq_errno ()));
        zsock_destroy (&self->inbox);
        return -1;
    }
    if (zsock_bind (self->inbox, "%s", self->endpoint) == -1) {
        snprintf (error, size, "cannot bind mesh to %s: %s", self->endpoint,
                  zmq_strerror (zmq_errno ()));
        zsock_destroy (&self->inbox);
        return -1;
    }
    //  A wildcard port is resolved now: peers must be told the real one.
    free (self->endpoint);
    self->endpoint = zsock_last_endpoint (self->inbox);
    if (!self->endpoint || strlen (self->endpoint) > SN_ENDPOINT_MAX) {
        snprintf (error, size, "mesh endpoint is too long");
        return -1;
    }
    self->ops = zsock_new (ZMQ_ROUTER);
    assert (self->ops);
    zsock_set_rcvtimeo (self->ops, 0);
    if (zsock_bind (self->ops, "%s", self->ops_endpoint) == -1) {
        snprintf (error, size, "cannot bind mesh ops to %s: %s", self->ops_endpoint,
                  zmq_strerror (zmq_errno ()));
        zsock_destroy (&self->ops);
        return -1;
    }
    if (self->store_endpoint && s_store_link (self, error, size))
        return -1;
    if (self->frontend_endpoint) {
        self->frontend = zsock_new (ZMQ_DEALER);
        assert (self->frontend);
        zsock_set_sndhwm (self->frontend, S_CALLS);
        zsock_set_rcvhwm (self->frontend, S_CALLS);
        zsock_set_linger (self->frontend, 0);
        if (zsock_connect (self->frontend, "%s", self->frontend_endpoint) == -1) {
            snprintf (error, size, "cannot connect to the frontend at %s", self->frontend_endpoint);
            return -1;
        }
        zpoller_add (self->poller, self->frontend);
    }
    if (self->feed_endpoint) {
        self->feed = zsock_new (ZMQ_PUB);
        assert (self->feed);
        zsock_set_sndhwm (self->feed, 1000);
        zsock_set_linger (self->feed, 0);
        if (zsock_bind (self->feed, "%s", self->feed_endpoint) == -1) {
            snprintf (error, size, "cannot bind the mesh feed to %s", self->feed_endpoint);
            return -1;
        }
    }
    self->members = sn_members_new (self->name, self->endpoint, (uint64_t) zclock_time ());
    assert (self->members); //  name and endpoint were checked above
    self->placement = sn_placement_new (self->partitions, self->rf);
    self->ae_active = (uint32_t *) zmalloc (self->partitions * sizeof (uint32_t));
    self->ae_refined = (uint32_t *) zmalloc (self->partitions * sizeof (uint32_t));
    assert (self->placement);
    //  A node that joins publishes no placement until it has heard from the cluster:
    //  alone, it would own every partition and its actors would replay them from
    //  its own store only. A node restarted after a crash would then keep owning
    //  its partitions once it heard from the others, and never replay them again
    //  with the events written while it was down. Until a join endpoint answers,
    //  with the member table, the actors hold their requests; after dead_ms with no
    //  answer (the whole cluster restarting) the node goes on alone.
    for (size_t index = 0; index < self->join_count; index++)
        if (!streq (self->joins[index].endpoint, self->endpoint))
            self->unplaced_until = zclock_mono () + self->dead_ms;
    //  No member table has this version: the first placement is always computed,
    //  even for a node alone whose table never changes
    self->placed_version = UINT64_MAX;
    s_members_changed (self, zclock_mono ());
    zpoller_add (self->poller, self->inbox);
    zpoller_add (self->poller, self->ops);

    //  Joining ourselves would never be answered.
    for (size_t index = 0; index < self->join_count; index++)
        if (!streq (self->joins[index].endpoint, self->endpoint))
            self->joins[index].dealer = s_dealer_new (self, self->joins[index].endpoint, NULL);
    self->next_heartbeat = zclock_mono () + self->heartbeat_ms;
    if (self->verbose)
        zsys_info ("sn_mesh: %s: listening on %s", self->name, self->endpoint);
    return 0;
}

//  $TERM after START: leave, and tell every linked member so. The bye waits in each
//  DEALER's queue for at most S_BYE_LINGER_MS; a member that misses it finds out
//  through its failure detector instead.
static void
s_mesh_leave (self_t *self)
{
    if (!self->members || self->silent)
        return;
    sn_members_leave (self->members, zclock_mono ());
    s_pack_bye (self);
    for (s_peer_t *peer = (s_peer_t *) zhashx_first (self->peers); peer;
         peer = (s_peer_t *) zhashx_next (self->peers))
        if (peer->dealer) {
            s_send (self, peer->dealer);
            zsock_set_linger (peer->dealer, S_BYE_LINGER_MS);
        }
}

static void
s_pipe_command (self_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command)
        self->terminated = true; //  interrupted
    else if (streq (command, "START")) {
        char error[S_ERROR_MAX];
        zstr_send (self->pipe, s_mesh_start (self, error, sizeof error) ? error : "OK");
    }
    else if (streq (command, "SILENT"))
        self->silent = true;
    else if (streq (command, "$TERM")) {
        s_mesh_leave (self);
        self->terminated = true;
    }
    else
        zsys_error ("sn_mesh: invalid command '%s'", command);
    zstr_free (&command);
}

void
sn_mesh_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new (pipe, (const sn_mesh_config_t *) args);
    zsock_signal (pipe, 0);
    while (!self->terminated) {
        int timeout = -1;
        if (self->members) {
            int64_t next = self->next_heartbeat;
            if (self->store && self->next_anti_entropy < next)
                next = self->next_anti_entropy;
            int64_t deadline = s_calls_deadline (self);
            if (deadline >= 0 && deadline < next)
                next = deadline;
            int64_t wait = next - zclock_mono ();
            timeout = wait > 0 ? (int) wait : 0;
        }
        zsock_t *which = (zsock_t *) zpoller_wait (self->poller, timeout);
        if (which == self->pipe)
            s_pipe_command (self);
        else if (which && which == self->inbox)
            s_inbox_recv (self);
        else if (which && which == self->ops)
            s_ops_recv (self);
        else if (which && which == self->store)
            s_store_recv (self);
        else if (which && which == self->frontend)
            s_frontend_recv (self);
        else if (zpoller_terminated (self->poller))
            break;
        if (!self->members || self->terminated)
            continue;
        int64_t now = zclock_mono ();
        s_calls_expire (self, now);
        s_outbox_flush (self);
        if (now >= self->next_heartbeat) {
            s_heartbeat (self);
            s_hints_deliver (self);
        }
        if (self->store && now >= self->next_anti_entropy) {
            s_anti_entropy (self);
            self->next_anti_entropy = now + self->anti_entropy_ms;
        }
    }
    s_self_destroy (&self);
}

zactor_t *
sn_mesh_new (const sn_mesh_config_t *config, char *error, size_t size)
{
    assert (config);
    return sn_actor_start (sn_mesh_actor, (void *) config, "mesh", error, size);
}

//  --------------------------------------------------------------------------
//  Selftest

//  One mesh under test and a client of its ops endpoint.
typedef struct {
    zactor_t *mesh;    //  the actor
    zsock_t *client;   //  DEALER connected to its ops ROUTER
    zpoller_t *poller; //  on client, to wait for replies
    char name[16];     //  its node name
    char endpoint[64]; //  its bound peer endpoint, from the cluster op
    uint64_t rid;      //  last rid used
    zactor_t *front;   //  stand-in for its frontend, answering forwarded requests
} s_test_node_t;

//  A stand-in frontend: answers every request {rid, code: 200, who, fwd} until told
//  "MUTE", after which it reads and drops them.
static void
s_test_front (zsock_t *pipe, void *args)
{
    const char *name = (const char *) args;
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://sn-mesh-test-front-%s", name);
    zsock_t *router = zsock_new_router (endpoint);
    assert (router);
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    sn_pack_t *pack = sn_pack_new ();
    bool mute = false;
    while (true) {
        zsock_t *which = (zsock_t *) zpoller_wait (poller, -1);
        if (which == pipe) {
            char *command = zstr_recv (pipe);
            bool stop = !command || streq (command, "$TERM");
            mute = mute || (command && streq (command, "MUTE"));
            zstr_free (&command);
            if (stop)
                break;
            continue;
        }
        if (which != router)
            break;
        zmsg_t *msg = zmsg_recv (router);
        zframe_t *payload = zmsg_last (msg);
        sn_msg_t *request = sn_msg_decode (zframe_data (payload), zframe_size (payload), 0, NULL);
        uint64_t rid = 0, hops = 0;
        sn_value_uint (sn_value_get (sn_msg_root (request), "rid"), &rid);
        sn_value_uint (sn_value_get (sn_msg_root (request), "fwd"), &hops);
        sn_msg_destroy (&request);
        zmsg_remove (msg, payload);
        zframe_destroy (&payload);
        sn_pack_reset (pack);
        sn_pack_map (pack, 4);
        sn_pack_kv_uint (pack, "rid", rid);
        sn_pack_kv_uint (pack, "code", 200);
        sn_pack_kv_str (pack, "who", name);
        sn_pack_kv_uint (pack, "fwd", hops);
        zframe_t *answer = sn_pack_frame (pack);
        zmsg_append (msg, &answer);
        if (mute)
            zmsg_destroy (&msg);
        else
            zmsg_send (&msg, router);
    }
    sn_pack_destroy (&pack);
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

static sn_msg_t *s_test_cluster (s_test_node_t *node);
static const sn_value_t *s_test_record (sn_msg_t *msg, const char *name);

static void
s_test_start (s_test_node_t *node, const char *name, const char *join, bool verbose)
{
    memset (node, 0, sizeof *node);
    snprintf (node->name, sizeof node->name, "%s", name);
    char ops[64];
    snprintf (ops, sizeof ops, "inproc://sn-mesh-test-%s", name);
    zlist_t *joins = zlist_new ();
    if (join)
        zlist_append (joins, (void *) join);
    char front[64], feed[64];
    snprintf (front, sizeof front, "inproc://sn-mesh-test-front-%s", name);
    snprintf (feed, sizeof feed, "inproc://sn-mesh-test-feed-%s", name);
    node->front = zactor_new (s_test_front, node->name);
    //  A forward's try at one replica lasts the write timeout: the steps that name who
    //  answers need the owner's answer within it, on a loaded machine too
    sn_mesh_config_t config = {.frontend = front,
                               .feed = feed,
                               .write_timeout_ms = 1000,
                               .name = name,
                               .endpoint = "tcp://127.0.0.1:*",
                               .join = joins,
                               .partitions = 16,
                               .rf = 2,
                               .heartbeat_ms = 50,
                               .suspect_ms = 300,
                               .dead_ms = 600,
                               .ops_endpoint = ops,
                               .verbose = verbose};
    char error[256];
    node->mesh = sn_mesh_new (&config, error, sizeof error);
    zlist_destroy (&joins);
    assert (node->mesh);
    node->client = zsock_new_dealer (ops);
    assert (node->client);
    node->poller = zpoller_new (node->client, NULL);
    //  The bound port is only known from the node's own record
    sn_msg_t *msg = s_test_cluster (node);
    const sn_value_t *record = s_test_record (msg, name);
    char *endpoint = sn_value_get_strdup (record, "endpoint");
    assert (endpoint && strncmp (endpoint, "tcp://127.0.0.1:", 16) == 0);
    snprintf (node->endpoint, sizeof node->endpoint, "%s", endpoint);
    free (endpoint);
    sn_msg_destroy (&msg);
}

static void
s_test_stop (s_test_node_t *node)
{
    zactor_destroy (&node->mesh);
    zactor_destroy (&node->front);
    zpoller_destroy (&node->poller);
    zsock_destroy (&node->client);
}

//  Send a request built in pack and return the decoded reply.
static sn_msg_t *
s_test_call (s_test_node_t *node, sn_pack_t *pack)
{
    zframe_t *frame = sn_pack_frame (pack);
    int rc = zframe_send (&frame, node->client, 0);
    assert (rc == 0);
    void *which = zpoller_wait (node->poller, 5000);
    assert (which == node->client);
    zframe_t *reply = zframe_recv (node->client);
    assert (reply);
    const char *error = NULL;
    sn_msg_t *msg = sn_msg_decode (zframe_data (reply), zframe_size (reply), 0, &error);
    zframe_destroy (&reply);
    assert (msg);
    return msg;
}

static sn_msg_t *
s_test_cluster (s_test_node_t *node)
{
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 2);
    sn_pack_kv_str (pack, "op", "cluster");
    sn_pack_kv_uint (pack, "rid", ++node->rid);
    sn_msg_t *msg = s_test_call (node, pack);
    sn_pack_destroy (&pack);
    uint64_t value;
    assert (sn_value_uint (sn_value_get (sn_msg_root (msg), "code"), &value) && value == 200);
    assert (sn_value_uint (sn_value_get (sn_msg_root (msg), "rid"), &value) && value == node->rid);
    return msg;
}

//  The record of a member in a cluster reply, or NULL.
static const sn_value_t *
s_test_record (sn_msg_t *msg, const char *name)
{
    const sn_value_t *members = sn_value_get (sn_msg_root (msg), "members");
    for (size_t index = 0; index < sn_value_size (members); index++)
        if (sn_value_streq (sn_value_get (sn_value_at (members, index), "name"), name))
            return sn_value_at (members, index);
    return NULL;
}

//  The status of a member in a cluster reply (NULL when absent), and its incarnation.
static const sn_value_t *
s_test_member (sn_msg_t *msg, const char *name, uint64_t *incarnation)
{
    const sn_value_t *record = s_test_record (msg, name);
    if (record && incarnation)
        assert (sn_value_uint (sn_value_get (record, "incarnation"), incarnation));
    return sn_value_get (record, "status");
}

static uint64_t
s_test_dropped (s_test_node_t *node)
{
    sn_msg_t *msg = s_test_cluster (node);
    uint64_t dropped;
    assert (sn_value_uint (sn_value_get (sn_msg_root (msg), "dropped"), &dropped));
    sn_msg_destroy (&msg);
    return dropped;
}

//  Whether a member's status is one of statuses, words apart; any status when NULL.
static bool
s_test_status_in (const sn_value_t *status, const char *statuses)
{
    if (!sn_value_is (status, SN_TYPE_STRING))
        return false;
    if (!statuses)
        return true;
    char copy[64];
    snprintf (copy, sizeof copy, "%s", statuses);
    char *state = NULL;
    for (char *word = strtok_r (copy, " ", &state); word; word = strtok_r (NULL, " ", &state))
        if (sn_value_streq (status, word))
            return true;
    return false;
}

//  Wait until node sees member name with one of statuses (any when NULL) at an
//  incarnation above above. Between looks the client's poller paces the loop;
//  nothing arrives on it.
static bool
s_test_wait_member (s_test_node_t *node, const char *name, const char *statuses, uint64_t above,
                    int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        sn_msg_t *msg = s_test_cluster (node);
        uint64_t incarnation = 0;
        bool seen = s_test_status_in (s_test_member (msg, name, &incarnation), statuses) &&
                    incarnation > above;
        sn_msg_destroy (&msg);
        if (seen)
            return true;
        if (zclock_mono () > deadline)
            return false;
        zpoller_wait (node->poller, 10);
    }
}

//  Wait until every node lists exactly the count nodes, all alive, with the same
//  partition table.
static bool
s_test_wait_converged (s_test_node_t **nodes, size_t count, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        sn_msg_t *msgs[8];
        bool converged = true;
        for (size_t index = 0; index < count; index++) {
            msgs[index] = s_test_cluster (nodes[index]);
            const sn_value_t *root = sn_msg_root (msgs[index]);
            if (sn_value_size (sn_value_get (root, "members")) != count)
                converged = false;
            for (size_t other = 0; other < count; other++)
                if (!sn_value_streq (s_test_member (msgs[index], nodes[other]->name, NULL),
                                     "alive"))
                    converged = false;
            if (!sn_value_equal (sn_value_get (root, "partitions"),
                                 sn_value_get (sn_msg_root (msgs[0]), "partitions")))
                converged = false;
        }
        for (size_t index = 0; index < count; index++)
            sn_msg_destroy (&msgs[index]);
        if (converged)
            return true;
        if (zclock_mono () > deadline)
            return false;
        zpoller_wait (nodes[0]->poller, 10);
    }
}

static void
s_test_send (zsock_t *dealer, sn_pack_t *pack)
{
    int rc = zmq_send (zsock_resolve (dealer), sn_pack_data (pack), sn_pack_size (pack), 0);
    assert (rc >= 0);
}

//  Send a hello as name from a raw peer.
static void
s_test_hello (zsock_t *dealer, sn_pack_t *pack, const char *name)
{
    sn_pack_reset (pack);
    sn_pack_map (pack, 7);
    sn_pack_kv_str (pack, "op", "hello");
    sn_pack_kv_str (pack, "name", name);
    sn_pack_kv_str (pack, "endpoint", "tcp://127.0.0.1:1");
    sn_pack_kv_uint (pack, "incarnation", 1);
    sn_pack_kv_uint (pack, "partitions", 16);
    sn_pack_kv_uint (pack, "rf", 2);
    sn_pack_kv_uint (pack, "ticket", 1);
    s_test_send (dealer, pack);
}

//  Send a ping from a raw peer that gossips one member's state.
static void
s_test_ping (zsock_t *dealer, sn_pack_t *pack, const char *from, const char *member,
             const char *endpoint, uint64_t incarnation, const char *status)
{
    sn_pack_reset (pack);
    sn_pack_map (pack, 3);
    sn_pack_kv_str (pack, "op", "ping");
    sn_pack_kv_str (pack, "from", from);
    sn_pack_str (pack, "members");
    sn_pack_array (pack, 1);
    sn_pack_array (pack, 4);
    sn_pack_str (pack, member);
    sn_pack_str (pack, endpoint);
    sn_pack_uint (pack, incarnation);
    sn_pack_str (pack, status);
    s_test_send (dealer, pack);
}

//  Whether a peer's scan page, given as {events: [[key, type, ts]...], next}, with
//  items made maps with an event, passes the checks of a scan of limit 3 from "k2"
//  with prefix "test.".
static bool
s_test_page (const char *keys[], const char *types[], size_t count, const char *next, bool ts)
{
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 2);
    sn_pack_str (pack, "events");
    sn_pack_array (pack, (uint32_t) count);
    for (size_t index = 0; index < count; index++) {
        sn_pack_map (pack, 3 + ts);
        sn_pack_kv_str (pack, "key", keys[index]);
        if (types[index])
            sn_pack_kv_str (pack, "type", types[index]);
        else
            sn_pack_kv_uint (pack, "type", 7);
        if (ts)
            sn_pack_kv_uint (pack, "ts", 1);
        sn_pack_str (pack, "event");
        if (streq (keys[index], "k2-scalar"))
            sn_pack_uint (pack, 1);
        else
            sn_pack_map (pack, 0);
    }
    sn_pack_str (pack, "next");
    if (next)
        sn_pack_str (pack, next);
    else
        sn_pack_nil (pack);
    sn_msg_t *msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
    assert (msg);
    s_call_t call = {.limit = 3, .scan = true};
    call.from = (char *) "k2";
    call.from_len = 2;
    call.prefix = (char *) "test.";
    call.prefix_len = 5;
    const char *why = NULL;
    bool valid = s_page_valid (&call, sn_msg_root (msg), &why);
    assert (valid || why);
    sn_msg_destroy (&msg);
    sn_pack_destroy (&pack);
    return valid;
}

void
sn_mesh_test (bool verbose)
{
    //  A peer's scan page is taken only when it fits what was asked: a next that
    //  does not move past from would make a replay ask for the same page for ever
    const char *keys[] = {"k2", "k3", "k4", "k5"},
               *types[] = {"test.a", "test.b", "test.c", "test.d"};
    assert (s_test_page (keys, types, 3, "k5", true));
    assert (s_test_page (keys, types, 3, NULL, true));
    assert (s_test_page (keys, types, 0, "k9", true));
    assert (!s_test_page (keys, types, 0, "k2", true)); //  next == from
    assert (!s_test_page (keys, types, 0, "k1", true)); //  next before from
    assert (!s_test_page (keys, types, 0, "", true));
    char long_key[SN_KEY_MAX + 2];
    memset (long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = 0;
    assert (!s_test_page (keys, types, 0, long_key, true));
    assert (!s_test_page (keys, types, 4, NULL, true)); //  more than the limit
    assert (!s_test_page (keys, types, 3, "k4", true)); //  an event at or past next
    const char *before[] = {"k1"}, *beyond[] = {long_key}, *scalar[] = {"k2-scalar"};
    assert (!s_test_page (before, types, 1, NULL, true));
    assert (!s_test_page (beyond, types, 1, NULL, true));
    assert (!s_test_page (scalar, types, 1, NULL, true));
    const char *other[] = {"test.a", "other.b"}, *untyped[] = {NULL};
    assert (!s_test_page (keys, other, 2, NULL, true));
    assert (!s_test_page (keys, untyped, 1, NULL, true));
    assert (!s_test_page (keys, types, 1, NULL, false)); //  no ts

    //  A configuration that cannot work is refused with a reason
    char error[256] = "";
    sn_mesh_config_t bad = {.name = "-bad",
                            .endpoint = "tcp://127.0.0.1:*",
                            .partitions = 16,
                            .rf = 2,
                            .ops_endpoint = "inproc://sn-mesh-test-bad"};
    assert (sn_mesh_new (&bad, error, sizeof error) == NULL);
    assert (strstr (error, "not a valid node name"));
    bad.name = "bad";
    bad.endpoint = "nonsense://";
    assert (sn_mesh_new (&bad, error, sizeof error) == NULL);
    assert (strstr (error, "cannot bind"));

    //  Three nodes, B and C joining through A, converge on one view
    s_test_node_t a, b, c, d;
    s_test_start (&a, "A", NULL, verbose);
    s_test_start (&b, "B", a.endpoint, verbose);
    s_test_start (&c, "C", a.endpoint, verbose);
    s_test_node_t *nodes[] = {&a, &b, &c};
    assert (s_test_wait_converged (nodes, 3, 5000));

    //  Every partition has two replicas and a live owner
    sn_msg_t *msg = s_test_cluster (&b);
    const sn_value_t *partitions = sn_value_get (sn_msg_root (msg), "partitions");
    assert (sn_value_size (partitions) == 16);
    for (size_t p = 0; p < 16; p++) {
        const sn_value_t *partition = sn_value_at (partitions, p);
        assert (sn_value_size (sn_value_get (partition, "replicas")) == 2);
        assert (sn_value_is (sn_value_get (partition, "owner"), SN_TYPE_STRING));
    }
    uint64_t b_incarnation = 0;
    assert (sn_value_streq (s_test_member (msg, "B", &b_incarnation), "alive"));
    sn_msg_destroy (&msg);

    //  The frontend's puts: each put answered to its own envelope, here refused
    //  (these test meshes have no store); an item without an envelope is not
    //  answered at all
    sn_pack_t *puts = sn_pack_new ();
    sn_pack_map (puts, 3);
    sn_pack_kv_str (puts, "op", "puts");
    sn_pack_kv_uint (puts, "rid", 0);
    sn_pack_str (puts, "items");
    sn_pack_array (puts, 4);
    for (uint64_t rid = 5; rid <= 6; rid++) {
        sn_pack_array (puts, 2);
        sn_pack_bin (puts, rid == 5 ? "E5" : "E6", 2);
        sn_pack_map (puts, 2);
        sn_pack_kv_uint (puts, "rid", rid);
        sn_pack_str (puts, "event");
        sn_pack_map (puts, 0);
    }
    sn_pack_str (puts, "junk");
    sn_pack_array (puts, 1);
    sn_pack_map (puts, 0);
    zframe_t *puts_frame = sn_pack_frame (puts);
    zframe_send (&puts_frame, b.client, 0);
    for (uint64_t rid = 5; rid <= 6; rid++) {
        assert (zpoller_wait (b.poller, 5000) == b.client);
        zmsg_t *answer = zmsg_recv (b.client);
        assert (zmsg_size (answer) == 2);
        assert (zframe_streq (zmsg_first (answer), rid == 5 ? "E5" : "E6"));
        zframe_t *body = zmsg_next (answer);
        sn_msg_t *reply = sn_msg_decode (zframe_data (body), zframe_size (body), 0, NULL);
        uint64_t value = 0, code = 0;
        assert (sn_value_uint (sn_value_get (sn_msg_root (reply), "rid"), &value) && value == rid);
        assert (sn_value_uint (sn_value_get (sn_msg_root (reply), "code"), &code) && code == 503);
        sn_msg_destroy (&reply);
        zmsg_destroy (&answer);
    }
    sn_pack_destroy (&puts);
    msg = s_test_cluster (&b);
    assert (sn_value_get (sn_msg_root (msg), "members"));
    sn_msg_destroy (&msg);

    //  The partition table is published on the feed
    zsock_t *feed = zsock_new_sub ("inproc://sn-mesh-test-feed-A", "");
    assert (feed);
    zpoller_t *feed_poller = zpoller_new (feed, NULL);
    assert (zpoller_wait (feed_poller, 5000) == feed);
    zframe_t *frame = zframe_recv (feed);
    sn_msg_t *table = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    zframe_destroy (&frame);
    assert (sn_value_streq (sn_value_get (sn_msg_root (table), "op"), "placement"));
    assert (sn_value_streq (sn_value_get (sn_msg_root (table), "self"), "A"));
    const sn_value_t *owners = sn_value_get (sn_msg_root (table), "owners");
    assert (sn_value_size (owners) == 16);

    //  A forward reaches the owner's frontend, one hop, and comes back with our rid;
    //  an owner that does not answer is passed over for the next replica
    uint32_t owned_by_b = 16, owned_by_a = 16;
    for (uint32_t p = 0; p < 16; p++) {
        if (sn_value_streq (sn_value_at (owners, p), "B") && owned_by_b == 16)
            owned_by_b = p;
        if (sn_value_streq (sn_value_at (owners, p), "A") && owned_by_a == 16)
            owned_by_a = p;
    }
    assert (owned_by_a < 16 && owned_by_b < 16);
    sn_pack_t *forward = sn_pack_new ();
    for (int round = 0; round < 3; round++) {
        uint32_t p = round == 1 ? owned_by_a : owned_by_b;
        if (round == 2)
            zstr_send (b.front, "MUTE");
        sn_pack_reset (forward);
        sn_pack_map (forward, 4);
        sn_pack_kv_str (forward, "op", "forward");
        sn_pack_kv_uint (forward, "rid", 70 + round);
        sn_pack_kv_uint (forward, "p", p);
        sn_pack_str (forward, "request");
        sn_pack_map (forward, 3);
        sn_pack_kv_str (forward, "op", "anything");
        sn_pack_kv_uint (forward, "rid", 5);
        sn_pack_kv_uint (forward, "fwd", 2);
        sn_msg_t *answer = s_test_call (&a, forward);
        const sn_value_t *root = sn_msg_root (answer);
        uint64_t value;
        assert (sn_value_uint (sn_value_get (root, "rid"), &value) && value == 70u + round);
        assert (sn_value_uint (sn_value_get (root, "code"), &value) && value == 200);
        //  The hops so far, one more than the request said
        assert (sn_value_uint (sn_value_get (root, "fwd"), &value) && value == 3);
        const sn_value_t *who = sn_value_get (root, "who");
        if (round == 0)
            assert (sn_value_streq (who, "B"));
        else if (round == 1)
            assert (sn_value_streq (who, "A"));
        else {
            const sn_value_t *replicas =
                sn_value_at (sn_value_get (sn_msg_root (table), "replicas"), owned_by_b);
            assert (sn_value_equal (who, sn_value_at (replicas, 1)));
        }
        sn_msg_destroy (&answer);
    }
    //  A forward to a node by name reaches that node alone; one not reachable is 503
    const sn_value_t *members = sn_value_get (sn_msg_root (table), "members");
    bool has_a = false, has_b = false;
    for (size_t index = 0; index < sn_value_size (members); index++) {
        has_a = has_a || sn_value_streq (sn_value_at (members, index), "A");
        has_b = has_b || sn_value_streq (sn_value_at (members, index), "B");
    }
    assert (has_a && has_b);
    for (int round = 0; round < 2; round++) {
        sn_pack_reset (forward);
        sn_pack_map (forward, 4);
        sn_pack_kv_str (forward, "op", "forward");
        sn_pack_kv_uint (forward, "rid", 75);
        sn_pack_kv_str (forward, "node", round == 0 ? "A" : "nobody");
        sn_pack_str (forward, "request");
        sn_pack_map (forward, 1);
        sn_pack_kv_str (forward, "op", "anything");
        sn_msg_t *answer = s_test_call (&a, forward);
        uint64_t value;
        assert (sn_value_uint (sn_value_get (sn_msg_root (answer), "code"), &value));
        assert (value == (round == 0 ? 200u : 503u));
        if (round == 0)
            assert (sn_value_streq (sn_value_get (sn_msg_root (answer), "who"), "A"));
        sn_msg_destroy (&answer);
    }
    //  B is mute now. A forward to it by name that may take longer than a write
    //  (timeout) does not hold up the calls after it: a forward of B's partition,
    //  sent later, fails over to the next replica and is answered first
    sn_pack_reset (forward);
    sn_pack_map (forward, 5);
    sn_pack_kv_str (forward, "op", "forward");
    sn_pack_kv_uint (forward, "rid", 76);
    sn_pack_kv_str (forward, "node", "B");
    sn_pack_kv_uint (forward, "timeout", 3000);
    sn_pack_str (forward, "request");
    sn_pack_map (forward, 1);
    sn_pack_kv_str (forward, "op", "anything");
    zframe_t *slow = sn_pack_frame (forward);
    assert (zframe_send (&slow, a.client, 0) == 0);
    sn_pack_reset (forward);
    sn_pack_map (forward, 4);
    sn_pack_kv_str (forward, "op", "forward");
    sn_pack_kv_uint (forward, "rid", 77);
    sn_pack_kv_uint (forward, "p", owned_by_b);
    sn_pack_str (forward, "request");
    sn_pack_map (forward, 1);
    sn_pack_kv_str (forward, "op", "anything");
    for (uint64_t expected = 77; expected >= 76; expected--) {
        sn_msg_t *answer = expected == 77 ? s_test_call (&a, forward) : NULL;
        if (!answer) {
            assert (zpoller_wait (a.poller, 10000) == a.client);
            zframe_t *late = zframe_recv (a.client);
            answer = sn_msg_decode (zframe_data (late), zframe_size (late), 0, NULL);
            zframe_destroy (&late);
        }
        uint64_t rid = 0, code = 0;
        assert (sn_value_uint (sn_value_get (sn_msg_root (answer), "rid"), &rid));
        assert (sn_value_uint (sn_value_get (sn_msg_root (answer), "code"), &code));
        assert (rid == expected);
        assert (code == (expected == 77 ? 200u : 503u));
        if (expected == 76) {
            char *text = sn_value_get_strdup (sn_msg_root (answer), "error");
            assert (text && strstr (text, "node B did not answer"));
            free (text);
        }
        sn_msg_destroy (&answer);
    }
    //  A node that is not a name is refused
    sn_pack_reset (forward);
    sn_pack_map (forward, 4);
    sn_pack_kv_str (forward, "op", "forward");
    sn_pack_kv_uint (forward, "rid", 78);
    sn_pack_kv_uint (forward, "node", 7);
    sn_pack_str (forward, "request");
    sn_pack_map (forward, 1);
    sn_pack_kv_str (forward, "op", "anything");
    sn_msg_t *bad_node = s_test_call (&a, forward);
    uint64_t bad_code = 0;
    assert (sn_value_uint (sn_value_get (sn_msg_root (bad_node), "code"), &bad_code));
    assert (bad_code == 400);
    sn_msg_destroy (&bad_node);

    sn_pack_reset (forward);
    sn_pack_map (forward, 3);
    sn_pack_kv_str (forward, "op", "forward");
    sn_pack_kv_uint (forward, "rid", 80);
    sn_pack_kv_uint (forward, "p", 16);
    sn_msg_t *refused = s_test_call (&a, forward);
    uint64_t refused_code;
    assert (sn_value_uint (sn_value_get (sn_msg_root (refused), "code"), &refused_code));
    assert (refused_code == 400);
    sn_msg_destroy (&refused);
    //  A request forwarded too many times is not forwarded again
    sn_pack_reset (forward);
    sn_pack_map (forward, 4);
    sn_pack_kv_str (forward, "op", "forward");
    sn_pack_kv_uint (forward, "rid", 81);
    sn_pack_kv_uint (forward, "p", owned_by_a);
    sn_pack_str (forward, "request");
    sn_pack_map (forward, 2);
    sn_pack_kv_str (forward, "op", "anything");
    sn_pack_kv_uint (forward, "fwd", 4);
    refused = s_test_call (&a, forward);
    assert (sn_value_uint (sn_value_get (sn_msg_root (refused), "code"), &refused_code));
    assert (refused_code == 503);
    sn_msg_destroy (&refused);
    sn_pack_destroy (&forward);
    sn_msg_destroy (&table);
    zpoller_destroy (&feed_poller);
    zsock_destroy (&feed);

    //  Unknown and malformed ops are answered with 400
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 2);
    sn_pack_kv_str (pack, "op", "nonsense");
    sn_pack_kv_uint (pack, "rid", 7);
    msg = s_test_call (&a, pack);
    uint64_t code;
    assert (sn_value_uint (sn_value_get (sn_msg_root (msg), "code"), &code) && code == 400);
    sn_msg_destroy (&msg);
    sn_pack_reset (pack);
    sn_pack_str (pack, "not a map");
    msg = s_test_call (&a, pack);
    assert (sn_value_uint (sn_value_get (sn_msg_root (msg), "code"), &code) && code == 400);
    sn_msg_destroy (&msg);

    //  Garbage, a ping without hello and a multipart message are dropped and counted
    uint64_t dropped = s_test_dropped (&a);
    zsock_t *raw = zsock_new_dealer (a.endpoint);
    assert (raw);
    zstr_send (raw, "garbage");
    s_test_ping (raw, pack, "B", "B", "tcp://127.0.0.1:1", b_incarnation, "dead");
    zstr_sendm (raw, "two");
    zstr_send (raw, "frames");
    int64_t deadline = zclock_mono () + 5000;
    while (s_test_dropped (&a) < dropped + 3 && zclock_mono () < deadline)
        zpoller_wait (a.poller, 10);
    assert (s_test_dropped (&a) >= dropped + 3);
    assert (s_test_wait_converged (nodes, 3, 5000));

    //  A malformed hello is dropped too, and does not make a member
    dropped = s_test_dropped (&a);
    s_test_hello (raw, pack, "no spaces allowed");
    deadline = zclock_mono () + 5000;
    while (s_test_dropped (&a) < dropped + 1 && zclock_mono () < deadline)
        zpoller_wait (a.poller, 10);
    assert (s_test_dropped (&a) >= dropped + 1);

    //  A hello meant for another node, one that listened at A's endpoint before, is
    //  dropped, and W is no member: A does not take W's cluster for its own
    sn_pack_reset (pack);
    sn_pack_map (pack, 8);
    sn_pack_kv_str (pack, "op", "hello");
    sn_pack_kv_str (pack, "to", "D");
    sn_pack_kv_str (pack, "name", "W");
    sn_pack_kv_str (pack, "endpoint", "tcp://127.0.0.1:1");
    sn_pack_kv_uint (pack, "incarnation", 1);
    sn_pack_kv_uint (pack, "partitions", 16);
    sn_pack_kv_uint (pack, "rf", 2);
    sn_pack_kv_uint (pack, "ticket", 1);
    dropped = s_test_dropped (&a);
    s_test_send (raw, pack);
    deadline = zclock_mono () + 5000;
    while (s_test_dropped (&a) < dropped + 1 && zclock_mono () < deadline)
        zpoller_wait (a.poller, 10);
    assert (s_test_dropped (&a) >= dropped + 1);
    msg = s_test_cluster (&a);
    assert (!s_test_member (msg, "W", NULL));
    sn_msg_destroy (&msg);

    //  Refutation: X says hello, then claims B is suspect. B hears it from A and
    //  comes back alive at a higher incarnation.
    //  X is alive only until suspect_ms after its hello, as it never answers: a test
    //  slowed down by a loaded machine may first look later, so the hello is seen in
    //  X being a member at all.
    s_test_hello (raw, pack, "X");
    s_test_ping (raw, pack, "X", "B", b.endpoint, b_incarnation, "suspect");
    assert (s_test_wait_member (&a, "X", NULL, 0, 5000));
    assert (s_test_wait_member (&a, "B", "alive", b_incarnation, 5000));
    assert (s_test_wait_member (&c, "B", "alive", b_incarnation, 5000));

    //  A hello keeping user events for another time is refused, and says why
    sn_pack_reset (pack);
    sn_pack_map (pack, 8);
    sn_pack_kv_str (pack, "op", "hello");
    sn_pack_kv_str (pack, "name", "Y");
    sn_pack_kv_str (pack, "endpoint", "tcp://127.0.0.1:1");
    sn_pack_kv_uint (pack, "incarnation", 1);
    sn_pack_kv_uint (pack, "partitions", 16);
    sn_pack_kv_uint (pack, "rf", 2);
    sn_pack_kv_uint (pack, "ticket", 1);
    sn_pack_kv_uint (pack, "retention", 7200000);
    s_test_send (raw, pack);
    bool other_retention = false;
    deadline = zclock_mono () + 5000;
    while (!other_retention && zclock_mono () < deadline) {
        sn_msg_t *view = s_test_cluster (&a);
        char *reason = sn_value_get_strdup (sn_value_get (sn_msg_root (view), "refused"), "reason");
        other_retention =
            reason && strstr (reason, "Y runs with --event-retention-ms 7200000, A with 0");
        assert (!s_test_member (view, "Y", NULL));
        free (reason);
        sn_msg_destroy (&view);
        if (!other_retention)
            zpoller_wait (a.poller, 10);
    }
    assert (other_retention);
    //  One whose retention is not a number is dropped, and Z is no member
    sn_pack_reset (pack);
    sn_pack_map (pack, 8);
    sn_pack_kv_str (pack, "op", "hello");
    sn_pack_kv_str (pack, "name", "Z");
    sn_pack_kv_str (pack, "endpoint", "tcp://127.0.0.1:1");
    sn_pack_kv_uint (pack, "incarnation", 1);
    sn_pack_kv_uint (pack, "partitions", 16);
    sn_pack_kv_uint (pack, "rf", 2);
    sn_pack_kv_uint (pack, "ticket", 1);
    sn_pack_kv_str (pack, "retention", "for ever");
    dropped = s_test_dropped (&a);
    s_test_send (raw, pack);
    deadline = zclock_mono () + 5000;
    while (s_test_dropped (&a) < dropped + 1 && zclock_mono () < deadline)
        zpoller_wait (a.poller, 10);
    assert (s_test_dropped (&a) >= dropped + 1);
    sn_msg_t *view = s_test_cluster (&a);
    assert (!s_test_member (view, "Z", NULL));
    sn_msg_destroy (&view);
    zsock_destroy (&raw);
    //  X never answers: it is declared dead
    assert (s_test_wait_member (&a, "X", "dead", 0, 5000));

    //  A clean stop is a bye: C has left
    s_test_stop (&c);
    assert (s_test_wait_member (&a, "C", "left", 0, 5000));
    assert (s_test_wait_member (&b, "C", "left", 0, 5000));

    //  A crash is found by the failure detector: D turns suspect, then dead. D is
    //  suspect for dead_ms only, which a loaded machine can keep the test from looking
    //  in (stopping D alone may take that long), so suspect or dead is the first sign;
    //  sn_members_test holds that suspicion comes before death.
    s_test_start (&d, "D", a.endpoint, verbose);
    assert (s_test_wait_member (&a, "D", "alive", 0, 5000));
    assert (s_test_wait_member (&b, "D", "alive", 0, 5000));
    zstr_send (d.mesh, "SILENT");
    s_test_stop (&d);
    assert (s_test_wait_member (&a, "D", "suspect dead", 0, 5000));
    assert (s_test_wait_member (&a, "D", "dead", 0, 5000));
    assert (s_test_wait_member (&b, "D", "dead", 0, 5000));
    //  The living stay: a loaded machine may have made one suspect for a moment, and
    //  it refutes
    assert (s_test_wait_member (&a, "A", "alive", 0, 5000));
    assert (s_test_wait_member (&a, "B", "alive", 0, 5000));

    sn_pack_destroy (&pack);
    s_test_stop (&b);
    s_test_stop (&a);
}
