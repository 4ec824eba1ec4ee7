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

//  Messages queued to one peer before ZeroMQ drops them: a few seconds of pings.
#define S_PEER_HWM 1000

//  Largest peer frame decoded: a ping carrying a full table of SN_MEMBERS_MAX members
//  stays well below it.
#define S_PEER_MAX_SIZE (1024 * 1024)

//  Identities remembered per member: its member DEALER, its join DEALER and a couple
//  of predecessors from before a restart. Older ones are forgotten.
#define S_ROUTES_MAX 4

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
    size_t route_count;         //  entries used in routes
} s_peer_t;

//  A join endpoint and the DEALER saying hello to it until it answers.
typedef struct {
    char *endpoint;  //  as configured
    zsock_t *dealer; //  NULL once answered
} s_join_t;

typedef struct {
    zsock_t *pipe;             //  actor command pipe
    zpoller_t *poller;         //  pipe, inbox, ops
    zsock_t *inbox;            //  peer ROUTER
    zsock_t *ops;              //  ops ROUTER
    char *name;                //  this node's name
    char *endpoint;            //  configured peer endpoint, then the bound one
    char *ops_endpoint;        //  configured ops endpoint
    uint32_t partitions;       //  P
    uint32_t rf;               //  replicas per partition
    int64_t heartbeat_ms;      //  ping interval
    int64_t suspect_ms;        //  silence before suspect
    int64_t dead_ms;           //  suspicion before dead
    bool verbose;              //  log membership traffic
    s_join_t *joins;           //  join endpoints
    size_t join_count;         //  entries in joins
    sn_members_t *members;     //  member table, NULL until started
    sn_placement_t *placement; //  partition table, NULL until started
    uint64_t placed_version;   //  members version the placement was computed from
    zhashx_t *peers;           //  name -> s_peer_t, every member but self
    zhashx_t *routes;          //  identity (hex) -> name (char *) of hello'd connections
    sn_pack_t *out;            //  message being built
    uint64_t dropped;          //  peer frames dropped as malformed or unauthenticated
    int64_t next_heartbeat;    //  zclock_mono of the next heartbeat
    bool silent;               //  stop without bye (tests)
    bool terminated;           //  $TERM received
} self_t;

static void
s_peer_destroy (void **item_p)
{
    s_peer_t *peer = (s_peer_t *) *item_p;
    if (!peer)
        return;
    zsock_destroy (&peer->dealer);
    free (peer->name);
    free (peer->endpoint);
    for (size_t index = 0; index < peer->route_count; index++)
        free (peer->routes[index]);
    free (peer);
    *item_p = NULL;
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
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
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
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Outgoing peer messages, built into self->out

static void
s_pack_hello (self_t *self)
{
    const sn_member_t *me = sn_members_self (self->members);
    sn_pack_reset (self->out);
    sn_pack_map (self->out, 4);
    sn_pack_kv_str (self->out, "op", "hello");
    sn_pack_kv_str (self->out, "name", me->name);
    sn_pack_kv_str (self->out, "endpoint", me->endpoint);
    sn_pack_kv_uint (self->out, "incarnation", me->incarnation);
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

//  A DEALER to a peer inbox that says hello first. Options are set before connecting
//  so that they apply to the connection from the start.
static zsock_t *
s_dealer_new (self_t *self, const char *endpoint)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    zsock_set_sndhwm (dealer, S_PEER_HWM);
    zsock_set_sndtimeo (dealer, 0);
    zsock_set_linger (dealer, 0);
    zuuid_t *uuid = zuuid_new ();
    zsock_set_identity (dealer, zuuid_str (uuid));
    zuuid_destroy (&uuid);
    if (zsock_connect (dealer, "%s", endpoint) == -1) {
        //  A member advertised an endpoint ZeroMQ cannot use; it stays unlinked.
        if (self->verbose)
            zsys_info ("sn_mesh: %s: cannot connect to %s", self->name, endpoint);
        zsock_destroy (&dealer);
        return NULL;
    }
    s_pack_hello (self);
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

static void
s_ping_all (self_t *self)
{
    s_pack_ping (self);
    for (s_peer_t *peer = (s_peer_t *) zhashx_first (self->peers); peer;
         peer = (s_peer_t *) zhashx_next (self->peers))
        if (peer->dealer)
            s_send (self, peer->dealer);
}

//  Keep a DEALER to every member that is alive or suspect, and to a dead member that
//  we still hear from after declaring it dead: it is alive but does not know it was declared dead,
//  and only our pings can tell it so that it refutes. A new incarnation or endpoint means a new
//  process, which needs a new connection and a new hello. Iterates the member list, never the peers
//  hash, so peers may be added on the way.
static void
s_links_sync (self_t *self, int64_t now)
{
    size_t count;
    const sn_member_t *list = sn_members_list (self->members, &count);
    for (size_t index = 0; index < count; index++) {
        const sn_member_t *member = &list[index];
        if (streq (member->name, self->name))
            continue;
        bool wanted = member->status == SN_MEMBER_ALIVE || member->status == SN_MEMBER_SUSPECT ||
                      (member->status == SN_MEMBER_DEAD && member->heard_at > member->changed_at &&
                       now - member->heard_at < self->suspect_ms);
        s_peer_t *peer = s_peer_require (self, member->name);
        if (peer->dealer && (!wanted || member->incarnation != peer->incarnation ||
                             !streq (member->endpoint, peer->endpoint))) {
            zsock_destroy (&peer->dealer);
            if (self->verbose)
                zsys_info ("sn_mesh: %s: unlinked %s", self->name, member->name);
        }
        if (wanted && !peer->dealer) {
            peer->dealer = s_dealer_new (self, member->endpoint);
            free (peer->endpoint);
            peer->endpoint = strdup (member->endpoint);
            peer->incarnation = member->incarnation;
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
}

//  Whatever changed in the member table: relink and recompute placement.
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
    s_members_changed (self, now);
    s_ping_all (self);
    s_pack_hello (self);
    for (size_t index = 0; index < self->join_count; index++)
        if (self->joins[index].dealer)
            s_send (self, self->joins[index].dealer);
    self->next_heartbeat = now + self->heartbeat_ms;
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
    uint64_t incarnation;
    int rc = -1;
    if (name && endpoint && sn_name_valid (name) && strlen (endpoint) > 0 &&
        strlen (endpoint) <= SN_ENDPOINT_MAX &&
        sn_value_uint (sn_value_get (root, "incarnation"), &incarnation) &&
        !streq (name, self->name)) {
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
    s_members_changed (self, now);
    if (refuted)
        s_ping_all (self);
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
s_inbox_recv (self_t *self)
{
    zmsg_t *msg = zmsg_recv (self->inbox);
    if (!msg)
        return;
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
        else if (from && sn_value_streq (op, "ping"))
            rc = s_on_ping (self, from, root, now);
        else if (from && sn_value_streq (op, "bye"))
            rc = s_on_bye (self, from, root, now);
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

//  --------------------------------------------------------------------------
//  Ops

static void
s_pack_cluster (self_t *self, uint64_t rid)
{
    sn_pack_t *out = self->out;
    sn_pack_reset (out);
    sn_pack_map (out, 6);
    sn_pack_kv_uint (out, "rid", rid);
    sn_pack_kv_uint (out, "code", 200);
    sn_pack_kv_str (out, "name", self->name);

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

static void
s_ops_recv (self_t *self)
{
    sn_routed_t routed;
    if (sn_routed_recv (&routed, self->ops))
        return;
    const char *error = NULL;
    sn_msg_t *request =
        sn_msg_decode (sn_routed_data (&routed), sn_routed_size (&routed), 0, &error);
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
    else {
        size_t len;
        const char *name = sn_value_str (op, &len);
        sn_pack_error (self->out, rid, 400, "op: unknown operation '%.*s'",
                       (int) (len > 64 ? 64 : len), name);
    }
    sn_msg_destroy (&request);
    sn_routed_set_payload (&routed, sn_pack_data (self->out), sn_pack_size (self->out));
    if (sn_routed_send (&routed, self->ops))
        sn_routed_close (&routed);
}

//  --------------------------------------------------------------------------
//  The actor

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
    if (self->partitions == 0 || self->partitions > 65536 || self->rf == 0) {
        snprintf (error, size, "partitions must be 1 to 65536 and rf at least 1");
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
    if (zsock_bind (self->ops, "%s", self->ops_endpoint) == -1) {
        snprintf (error, size, "cannot bind mesh ops to %s: %s", self->ops_endpoint,
                  zmq_strerror (zmq_errno ()));
        zsock_destroy (&self->ops);
        return -1;
    }
    self->members = sn_members_new (self->name, self->endpoint, (uint64_t) zclock_time ());
    assert (self->members); //  name and endpoint were checked above
    self->placement = sn_placement_new (self->partitions, self->rf);
    assert (self->placement);
    //  No member table has this version: the first placement is always computed,
    //  even for a node alone whose table never changes
    self->placed_version = UINT64_MAX;
    s_members_changed (self, zclock_mono ());
    zpoller_add (self->poller, self->inbox);
    zpoller_add (self->poller, self->ops);

    //  Joining ourselves would never be answered.
    for (size_t index = 0; index < self->join_count; index++)
        if (!streq (self->joins[index].endpoint, self->endpoint))
            self->joins[index].dealer = s_dealer_new (self, self->joins[index].endpoint);
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
            int64_t wait = self->next_heartbeat - zclock_mono ();
            timeout = wait > 0 ? (int) wait : 0;
        }
        zsock_t *which = (zsock_t *) zpoller_wait (self->poller, timeout);
        if (which == self->pipe)
            s_pipe_command (self);
        else if (which && which == self->inbox)
            s_inbox_recv (self);
        else if (which && which == self->ops)
            s_ops_recv (self);
        else if (zpoller_terminated (self->poller))
            break;
        if (self->members && !self->terminated && zclock_mono () >= self->next_heartbeat)
            s_heartbeat (self);
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
} s_test_node_t;

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
    sn_mesh_config_t config = {.name = name,
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

//  Wait until node sees member name with status at an incarnation above above.
//  Between looks the client's poller paces the loop; nothing arrives on it.
static bool
s_test_wait_member (s_test_node_t *node, const char *name, const char *status, uint64_t above,
                    int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        sn_msg_t *msg = s_test_cluster (node);
        uint64_t incarnation = 0;
        bool seen =
            sn_value_streq (s_test_member (msg, name, &incarnation), status) && incarnation > above;
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
    sn_pack_map (pack, 4);
    sn_pack_kv_str (pack, "op", "hello");
    sn_pack_kv_str (pack, "name", name);
    sn_pack_kv_str (pack, "endpoint", "tcp://127.0.0.1:1");
    sn_pack_kv_uint (pack, "incarnation", 1);
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

void
sn_mesh_test (bool verbose)
{
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

    //  Refutation: X says hello, then claims B is suspect. B hears it from A and
    //  comes back alive at a higher incarnation.
    s_test_hello (raw, pack, "X");
    s_test_ping (raw, pack, "X", "B", b.endpoint, b_incarnation, "suspect");
    assert (s_test_wait_member (&a, "X", "alive", 0, 5000));
    assert (s_test_wait_member (&a, "B", "alive", b_incarnation, 5000));
    assert (s_test_wait_member (&c, "B", "alive", b_incarnation, 5000));
    zsock_destroy (&raw);
    //  X never answers: it is declared dead
    assert (s_test_wait_member (&a, "X", "dead", 0, 5000));

    //  A clean stop is a bye: C has left
    s_test_stop (&c);
    assert (s_test_wait_member (&a, "C", "left", 0, 5000));
    assert (s_test_wait_member (&b, "C", "left", 0, 5000));

    //  A crash is found by the failure detector: D turns suspect, then dead
    s_test_start (&d, "D", a.endpoint, verbose);
    assert (s_test_wait_member (&a, "D", "alive", 0, 5000));
    assert (s_test_wait_member (&b, "D", "alive", 0, 5000));
    zstr_send (d.mesh, "SILENT");
    s_test_stop (&d);
    assert (s_test_wait_member (&a, "D", "suspect", 0, 5000));
    assert (s_test_wait_member (&a, "D", "dead", 0, 5000));
    assert (s_test_wait_member (&b, "D", "dead", 0, 5000));
    msg = s_test_cluster (&a);
    assert (sn_value_streq (s_test_member (msg, "A", NULL), "alive"));
    assert (sn_value_streq (s_test_member (msg, "B", NULL), "alive"));
    sn_msg_destroy (&msg);

    sn_pack_destroy (&pack);
    s_test_stop (&b);
    s_test_stop (&a);
}
