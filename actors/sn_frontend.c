/*  sn_frontend: decode, validate and route every request that enters the node.

    Messages from clients are [identity, (empty delimiter,) payload]. Everything before
    the payload is the envelope: it travels with the request to the actor that serves
    it and comes back in front of the reply, so this actor keeps no per-request state.
    The puts of one burst travel on as one message, each with its envelope inside
    (s_gather_add), and the actor that takes them answers each as if it came alone.
*/
#include "sn_frontend.h"
#include "sn_actor.h"
#include "sn_msg.h"
#include "sn_routed.h"
#include "sn_zap.h"

//  Largest request frame answered with an error rather than a disconnect; above
//  it libzmq drops the connection (ZMQ_MAXMSGSIZE) before we read anything.
#define SN_FRONTEND_HARD_MAX (SN_MSG_MAX_SIZE + 1024 * 1024)

//  Requests queued per client connection before TCP pushes back: with the hard
//  maximum above, this bounds what one connection can make the node buffer.
#define SN_FRONTEND_QUEUE 64

//  Replies queued per client connection; a client that stops reading loses
//  replies beyond this rather than holding the node's memory.
#define SN_FRONTEND_REPLY_QUEUE 100000

//  Most requests read in one go before replies are forwarded again.
#define SN_FRONTEND_BURST 256

//  Requests passed to actors and not yet answered. Below the actors' reply queue
//  limits, so that no actor ever drops a reply; above it the frontend stops
//  reading clients and waits for replies.
#define SN_FRONTEND_WINDOW 10000

//  How many messages may wait for an actor before new requests are refused with 503:
//  a request each, but for gathered puts, up to SN_FRONTEND_BURST in one.
#define SN_FRONTEND_BACKLOG 50000

//  Most bytes of puts, envelopes included, gathered into one message; a put that
//  would pass it starts another.
#define SN_FRONTEND_GATHER_BYTES (4 * 1024 * 1024)

//  Most bytes of envelope a gathered put may have: a client's is a routing id and
//  perhaps an empty delimiter. A put with more goes on alone.
#define SN_FRONTEND_GATHER_ENVELOPE 256

typedef struct {
    zsock_t *pipe;                          //  our end of the actor pipe
    zpoller_t *poller;                      //  pipe, router and the actors
    zpoller_t *poller_full;                 //  pipe and the actors: while the window is full
    size_t in_flight;                       //  requests passed on and not yet answered
    zsock_t *router;                        //  clients: external endpoint and inproc
    zsock_t *internal;                      //  the mesh, for requests from other nodes
    zsock_t *links[SN_FRONTEND_ROUTES_MAX]; //  DEALER to each route's actor
    size_t link_count;                      //  routes in the config
    zsock_t *fallback;                      //  the link of the "*" route
    sn_schema_t *schema;                    //  borrowed, read-only
    sn_pack_t *pack;                        //  scratch buffer for error replies
    zsock_t *put_link;                      //  the link taking put and puts, or NULL
    sn_pack_t *staged;                      //  puts of this burst: [envelope..., put] each
    size_t staged_count;                    //  puts staged
    sn_pack_t *puts;                        //  the message made of them
    sn_frontend_config_t config;            //  endpoints, borrowed from the caller until START
    bool verbose;                           //  log every request
    bool terminated;                        //  $TERM received
} self_t;

static self_t *
s_self_new (zsock_t *pipe, const sn_frontend_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->config = *config;
    self->schema = config->schema;
    self->verbose = config->verbose;
    self->pack = sn_pack_new ();
    self->staged = sn_pack_new ();
    self->puts = sn_pack_new ();
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (self) {
        zpoller_destroy (&self->poller);
        zpoller_destroy (&self->poller_full);
        zsock_destroy (&self->router);
        zsock_destroy (&self->internal);
        for (size_t index = 0; index < self->link_count; index++)
            zsock_destroy (&self->links[index]);
        sn_pack_destroy (&self->pack);
        sn_pack_destroy (&self->staged);
        sn_pack_destroy (&self->puts);
        free (self);
        *self_p = NULL;
    }
}

//  A DEALER to an actor's inproc endpoint, or NULL. Options are set before the
//  connection is made: set afterwards, libzmq applies them to new connections only.
static zsock_t *
s_actor_link (const char *endpoint)
{
    zsock_t *link = zsock_new (ZMQ_DEALER);
    zsock_set_sndhwm (link, SN_FRONTEND_BACKLOG);
    zsock_set_rcvhwm (link, SN_FRONTEND_BACKLOG);
    zsock_set_sndtimeo (link, 0);
    zsock_set_rcvtimeo (link, 0);
    zsock_set_linger (link, 0);
    if (zsock_connect (link, "%s", endpoint) == -1)
        zsock_destroy (&link);
    return link;
}

static zsock_t *s_named (self_t *self, const char *name, size_t size);

//  Bind and connect everything. Returns NULL, or the reason it failed.
static char *
s_self_start (self_t *self)
{
    self->router = zsock_new (ZMQ_ROUTER);
    zsock_set_maxmsgsize (self->router, SN_FRONTEND_HARD_MAX);
    zsock_set_rcvhwm (self->router, SN_FRONTEND_QUEUE);
    zsock_set_sndhwm (self->router, SN_FRONTEND_REPLY_QUEUE);
    zsock_set_linger (self->router, 0);
    //  Sockets are read after the poller says so and then drained: with a zero
    //  timeout the read that finds nothing returns at once, and one poll serves
    //  many messages.
    zsock_set_rcvtimeo (self->router, 0);
    //  Set before binding: libzmq takes the mechanism of a listener when it binds
    if (self->config.curve_secret &&
        sn_zap_server (self->router, self->config.zap_domain, self->config.curve_secret))
        return zsys_sprintf ("cannot make clients endpoint %s a CURVE server that refuses "
                             "unknown clients: %s",
                             self->config.endpoint, zmq_strerror (zmq_errno ()));
    if (zsock_bind (self->router, "%s", self->config.endpoint) == -1)
        return zsys_sprintf ("cannot bind clients endpoint %s: %s", self->config.endpoint,
                             zmq_strerror (zmq_errno ()));
    if (zsock_bind (self->router, "%s", self->config.inproc) == -1)
        return zsys_sprintf ("cannot bind %s: %s", self->config.inproc,
                             zmq_strerror (zmq_errno ()));
    self->poller = zpoller_new (self->pipe, self->router, NULL);
    if (self->config.internal) {
        self->internal = zsock_new (ZMQ_ROUTER);
        zsock_set_sndhwm (self->internal, SN_FRONTEND_REPLY_QUEUE);
        zsock_set_linger (self->internal, 0);
        zsock_set_rcvtimeo (self->internal, 0);
        if (zsock_bind (self->internal, "%s", self->config.internal) == -1)
            return zsys_sprintf ("cannot bind %s: %s", self->config.internal,
                                 zmq_strerror (zmq_errno ()));
        zpoller_add (self->poller, self->internal);
    }
    self->poller_full = zpoller_new (self->pipe, NULL);
    const sn_frontend_route_t *routes = self->config.routes;
    while (self->link_count < SN_FRONTEND_ROUTES_MAX && routes[self->link_count].ops) {
        const sn_frontend_route_t *route = &routes[self->link_count];
        zsock_t *link = s_actor_link (route->endpoint);
        if (!link)
            return zsys_sprintf ("cannot connect to %s", route->endpoint);
        self->links[self->link_count++] = link;
        if (streq (route->ops, "*"))
            self->fallback = link;
        zpoller_add (self->poller, link);
        zpoller_add (self->poller_full, link);
    }
    if (!self->fallback)
        return zsys_sprintf ("no route takes the ops no other route names");
    //  Puts are gathered only for an actor that names both
    zsock_t *put_link = s_named (self, "put", 3);
    if (put_link && put_link == s_named (self, "puts", 4))
        self->put_link = put_link;
    return NULL;
}

//  The link to the actor whose route names the op of that name, or NULL.
static zsock_t *
s_named (self_t *self, const char *name, size_t size)
{
    for (size_t index = 0; name && index < self->link_count; index++) {
        const char *ops = self->config.routes[index].ops;
        while (*ops) {
            size_t length = strcspn (ops, " ");
            if (length == size && memcmp (ops, name, size) == 0)
                return self->links[index];
            ops += length;
            ops += strspn (ops, " ");
        }
    }
    return NULL;
}

//  The link to the actor that serves the op of that name.
static zsock_t *
s_route (self_t *self, const char *name, size_t size)
{
    zsock_t *link = s_named (self, name, size);
    return link ? link : self->fallback;
}

//  True when name is one of the space-separated words of list.
static bool
s_listed (const char *list, const char *name, size_t size)
{
    while (list && *list) {
        size_t length = strcspn (list, " ");
        if (length == size && memcmp (list, name, size) == 0)
            return true;
        list += length;
        list += strspn (list, " ");
    }
    return false;
}

//  A request from the mesh carries this frame in front of its envelope while an
//  actor has it, so that its reply goes back to the mesh's ROUTER. No client's
//  identity can look like it: libzmq keeps identities starting with a zero byte
//  for the ones it makes, which are five bytes long.
static const byte s_internal_mark[2] = {0, 'M'};

static void
s_mark (sn_routed_t *request)
{
    if (request->count == SN_ROUTED_MAX)
        return; //  never for the mesh's requests: identity and payload
    for (size_t index = request->count; index > 0; index--) {
        zmq_msg_init (&request->frames[index]);
        zmq_msg_move (&request->frames[index], &request->frames[index - 1]);
    }
    zmq_msg_init_size (&request->frames[0], sizeof s_internal_mark);
    memcpy (zmq_msg_data (&request->frames[0]), s_internal_mark, sizeof s_internal_mark);
    request->count++;
}

//  Remove the mark if the reply has one; true when it did.
static bool
s_unmark (sn_routed_t *reply)
{
    if (reply->count < 2 || zmq_msg_size (&reply->frames[0]) != sizeof s_internal_mark ||
        memcmp (zmq_msg_data (&reply->frames[0]), s_internal_mark, sizeof s_internal_mark) != 0)
        return false;
    zmq_msg_close (&reply->frames[0]);
    for (size_t index = 0; index + 1 < reply->count; index++) {
        zmq_msg_init (&reply->frames[index]);
        zmq_msg_move (&reply->frames[index], &reply->frames[index + 1]);
    }
    zmq_msg_close (&reply->frames[reply->count - 1]);
    reply->count--;
    return true;
}

//  Answer a request here, with its envelope, without passing it on.
static void
s_answer (self_t *self, sn_routed_t *request, uint64_t rid, int code, const char *error,
          bool internal)
{
    sn_pack_error (self->pack, rid, code, "%s", error);
    sn_routed_set_payload (request, sn_pack_data (self->pack), sn_pack_size (self->pack));
    if (sn_routed_send (request, internal ? self->internal : self->router))
        sn_routed_close (request);
}

//  ---- Puts gathered
//  A put costs the actor that takes it a message and a decode of its own. The puts
//  of one burst go to it as one message instead, {op: "puts", rid: 0, items:
//  [[envelope frame..., put]...]}, the frames as bin and the put as the client sent
//  it: each put keeps its envelope, so that actor answers it as if it had come
//  alone, as soon as its own outcome is known, and this actor still keeps nothing
//  per request. No client can send a "puts": it has no schema.

//  The actor cannot take the puts now: each is answered 503, as it would have been
//  alone, to the envelope inside.
static void
s_gather_refuse (self_t *self, sn_pack_t *puts)
{
    sn_msg_t *msg = sn_msg_decode_trusted (sn_pack_data (puts), sn_pack_size (puts), NULL);
    const sn_value_t *items = sn_value_get (sn_msg_root (msg), "items");
    for (size_t index = 0; index < sn_value_size (items); index++) {
        const sn_value_t *item = sn_value_at (items, index);
        size_t frames = sn_value_size (item);
        sn_routed_t request = {.count = 0};
        for (size_t frame = 0; frame < frames; frame++) {
            size_t size = 0;
            const byte *data = sn_value_bin (sn_value_at (item, frame), &size);
            if (frame + 1 == frames)
                data = NULL, size = 0; //  the put itself: its answer goes there
            zmq_msg_init_size (&request.frames[request.count], data ? size : 0);
            if (data)
                memcpy (zmq_msg_data (&request.frames[request.count]), data, size);
            request.count++;
        }
        uint64_t rid = 0;
        sn_value_uint (sn_value_get (sn_value_at (item, frames - 1), "rid"), &rid);
        if (request.count)
            s_answer (self, &request, rid, 503, "node is busy: too many requests in flight", false);
    }
    sn_msg_destroy (&msg);
}

//  Pass the staged puts on as one message.
static void
s_gather_flush (self_t *self)
{
    if (self->staged_count == 0)
        return;
    sn_pack_t *puts = self->puts;
    sn_pack_reset (puts);
    sn_pack_map (puts, 3);
    sn_pack_kv_str (puts, "op", "puts");
    sn_pack_kv_uint (puts, "rid", 0);
    sn_pack_str (puts, "items");
    sn_pack_array (puts, (uint32_t) self->staged_count);
    sn_pack_raw (puts, sn_pack_data (self->staged), sn_pack_size (self->staged));
    size_t count = self->staged_count;
    self->staged_count = 0;
    sn_pack_reset (self->staged);
    if (zmq_send (zsock_resolve (self->put_link), sn_pack_data (puts), sn_pack_size (puts),
                  ZMQ_DONTWAIT) != -1)
        self->in_flight += count;
    else
        s_gather_refuse (self, puts);
}

//  Stage a valid put from a client for the next "puts", and use the request up; or
//  false, and it goes on alone.
static bool
s_gather_add (self_t *self, sn_routed_t *request)
{
    size_t size = sn_routed_size (request), envelope = 0;
    for (size_t index = 0; index + 1 < request->count; index++)
        envelope += zmq_msg_size (&request->frames[index]);
    if (envelope > SN_FRONTEND_GATHER_ENVELOPE)
        return false;
    if (self->staged_count &&
        (self->staged_count == SN_FRONTEND_BURST ||
         sn_pack_size (self->staged) + envelope + size > SN_FRONTEND_GATHER_BYTES))
        s_gather_flush (self);
    sn_pack_array (self->staged, (uint32_t) request->count);
    for (size_t index = 0; index + 1 < request->count; index++)
        sn_pack_bin (self->staged, zmq_msg_data (&request->frames[index]),
                     zmq_msg_size (&request->frames[index]));
    sn_pack_raw (self->staged, sn_routed_data (request), size);
    self->staged_count++;
    sn_routed_close (request);
    return true;
}

//  One request from a client, or from another node through the mesh (internal):
//  check it completely, then hand it to its actor.
static void
s_handle_request (self_t *self, sn_routed_t *request, bool internal)
{
    //  The actor's ROUTER puts the link's identity in front, and the mesh's ROUTER
    //  another when the actor forwards it to its partition's owner: a request must
    //  leave room for both, or its answer could not find its way back
    if (request->overflowed || (!internal && request->count + 2 > SN_ROUTED_MAX)) {
        s_answer (self, request, 0, 400, "expected one frame holding one msgpack map", internal);
        return;
    }
    const byte *payload = sn_routed_data (request);
    size_t size = sn_routed_size (request);
    //  Every request is a map: anything else is refused before the decoder spends
    //  time and memory on it.
    byte first = size ? payload[0] : 0;
    if ((first & 0xf0) != 0x80 && first != 0xde && first != 0xdf) {
        s_answer (self, request, 0, 400, "invalid msgpack: a request must be a map", internal);
        return;
    }
    char error[256];
    if (size > SN_MSG_MAX_SIZE) {
        snprintf (error, sizeof error, "request of %zu bytes is larger than %d", size,
                  SN_MSG_MAX_SIZE);
        s_answer (self, request, 0, 413, error, internal);
        return;
    }
    const char *reason = NULL;
    sn_msg_t *msg = sn_msg_decode (payload, size, 0, &reason);
    if (!msg) {
        snprintf (error, sizeof error, "invalid msgpack: %s", reason);
        s_answer (self, request, 0, 400, error, internal);
        return;
    }
    const sn_value_t *root = sn_msg_root (msg);
    uint64_t rid = 0;
    sn_value_uint (sn_value_get (root, "rid"), &rid);
    int code = sn_schema_check_request (self->schema, root, size, error, sizeof error);
    size_t op_size = 0;
    const char *op_name = sn_value_str (sn_value_get (root, "op"), &op_size);
    zsock_t *actor = s_route (self, op_name, op_size);
    if (!code && !internal && op_name && s_listed (self->config.internal_ops, op_name, op_size)) {
        snprintf (error, sizeof error, "op %.*s is for the nodes of the cluster only",
                  (int) op_size, op_name);
        code = 403;
    }
    if (self->verbose) {
        size_t op_len = 0;
        const char *op = sn_value_str (sn_value_get (root, "op"), &op_len);
        zsys_info ("frontend: %.*s rid=%" PRIu64 " %s", op ? (int) op_len : 1, op ? op : "?", rid,
                   code ? error : "valid");
    }
    bool put = !code && !internal && actor == self->put_link && op_size == 3 &&
               memcmp (op_name, "put", 3) == 0;
    sn_msg_destroy (&msg);
    if (code) {
        s_answer (self, request, rid, code, error, internal);
        return;
    }
    if (put && s_gather_add (self, request))
        return;
    //  What a client sends after its puts reaches the actor after them
    if (actor == self->put_link)
        s_gather_flush (self);
    if (internal)
        s_mark (request);
    //  The routing decision lives here, so that new actors take their ops without
    //  the edges changing.
    if (sn_routed_send (request, actor) == 0)
        self->in_flight++;
    else {
        if (internal)
            s_unmark (request);
        s_answer (self, request, rid, 503, "node is busy: too many requests in flight", internal);
    }
}

//  Read the requests waiting on router, a burst at a time, while the window has room.
static void
s_handle_requests (self_t *self, zsock_t *router)
{
    sn_routed_t request;
    for (int count = 0; count < SN_FRONTEND_BURST && self->in_flight < SN_FRONTEND_WINDOW;
         count++) {
        if (sn_routed_recv (&request, router))
            break;
        s_handle_request (self, &request, router == self->internal);
    }
    s_gather_flush (self);
}

//  Pass on every reply waiting from an actor; the envelope says which client each
//  is for. Runs before any new request is read, so that a stream of requests can
//  never leave replies waiting (an actor's reply queue is finite). Messages an
//  actor sends on its own (work for an executor) pass the same way; they make the
//  count in flight undercount, never overcount, so the window can only open.
static void
s_forward_replies (self_t *self, zsock_t *from)
{
    sn_routed_t reply;
    while (sn_routed_recv (&reply, from) == 0) {
        if (self->in_flight > 0)
            self->in_flight--;
        //  A ROUTER drops what it cannot deliver rather than block
        zsock_t *router = s_unmark (&reply) ? self->internal : self->router;
        if (!router || sn_routed_send (&reply, router))
            sn_routed_close (&reply);
    }
}

static void
s_handle_pipe (self_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command) {
        self->terminated = true;
        return;
    }
    if (streq (command, "START")) {
        char *error = s_self_start (self);
        zstr_send (self->pipe, error ? error : "OK");
        free (error);
    }
    else if (streq (command, "$TERM"))
        self->terminated = true;
    else
        zsys_error ("frontend: invalid command '%s'", command);
    free (command);
}

void
sn_frontend_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new (pipe, (const sn_frontend_config_t *) args);
    zsock_signal (pipe, 0);
    while (!self->terminated) {
        if (!self->poller) {
            s_handle_pipe (self);
            continue;
        }
        bool window_open = self->in_flight < SN_FRONTEND_WINDOW;
        zpoller_t *poller = window_open ? self->poller : self->poller_full;
        zsock_t *which = (zsock_t *) zpoller_wait (poller, -1);
        if (which == self->pipe) {
            s_handle_pipe (self);
            continue;
        }
        if (!which && zpoller_terminated (poller))
            break;
        for (size_t index = 0; index < self->link_count; index++)
            s_forward_replies (self, self->links[index]);
        if (which == self->router || (which && which == self->internal))
            s_handle_requests (self, which);
    }
    s_self_destroy (&self);
}

zactor_t *
sn_frontend_new (const sn_frontend_config_t *config, char *error, size_t size)
{
    return sn_actor_start (sn_frontend_actor, (void *) config, "frontend", error, size);
}

//  Selftest: a frontend in front of stand-in actors that answer {rid, code}, each
//  with its own code so that the test sees where a request went.
typedef struct {
    const char *endpoint; //  where the stand-in binds
    int code;             //  what it answers
} s_echo_t;

//  A stand-in's answer to the frontend's puts, as the mesh's: each put to its own
//  envelope, 201 with a key made of its event's "n", or 503 when its event holds
//  "fail".
static void
s_echo_puts (zsock_t *router, zframe_t *link, const sn_value_t *root)
{
    const sn_value_t *items = sn_value_get (root, "items");
    sn_pack_t *pack = sn_pack_new ();
    for (size_t index = 0; index < sn_value_size (items); index++) {
        const sn_value_t *item = sn_value_at (items, index);
        size_t frames = sn_value_size (item);
        const sn_value_t *put = sn_value_at (item, frames - 1);
        zmsg_t *answer = zmsg_new ();
        zmsg_append (answer, &(zframe_t *){zframe_dup (link)});
        for (size_t frame = 0; frame + 1 < frames; frame++) {
            size_t size = 0;
            const byte *data = sn_value_bin (sn_value_at (item, frame), &size);
            assert (data);
            zmsg_addmem (answer, data, size);
        }
        uint64_t rid = 0, n = 0;
        sn_value_uint (sn_value_get (put, "rid"), &rid);
        const sn_value_t *event = sn_value_get (put, "event");
        sn_value_uint (sn_value_get (event, "n"), &n);
        sn_pack_reset (pack);
        if (sn_value_get (event, "fail"))
            sn_pack_error (pack, rid, 503, "commit ALL not met");
        else {
            char key[32];
            snprintf (key, sizeof key, "k%" PRIu64, n);
            sn_pack_map (pack, 3);
            sn_pack_kv_uint (pack, "rid", rid);
            sn_pack_kv_uint (pack, "code", 201);
            sn_pack_kv_str (pack, "key", key);
        }
        zmsg_addmem (answer, sn_pack_data (pack), sn_pack_size (pack));
        zmsg_send (&answer, router);
    }
    sn_pack_destroy (&pack);
}

static void
s_echo_store (zsock_t *pipe, void *args)
{
    const s_echo_t *echo = (const s_echo_t *) args;
    zsock_t *router = zsock_new_router (echo->endpoint);
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    sn_pack_t *pack = sn_pack_new ();
    while (true) {
        zsock_t *which = (zsock_t *) zpoller_wait (poller, -1);
        if (which != router)
            break;
        zmsg_t *msg = zmsg_recv (router);
        zframe_t *payload = zmsg_last (msg);
        sn_msg_t *request =
            sn_msg_decode_trusted (zframe_data (payload), zframe_size (payload), NULL);
        uint64_t rid = 0;
        sn_value_uint (sn_value_get (sn_msg_root (request), "rid"), &rid);
        if (sn_value_streq (sn_value_get (sn_msg_root (request), "op"), "puts")) {
            s_echo_puts (router, zmsg_first (msg), sn_msg_root (request));
            sn_msg_destroy (&request);
            zmsg_destroy (&msg);
            continue;
        }
        sn_msg_destroy (&request);
        zmsg_remove (msg, payload);
        zframe_destroy (&payload);
        sn_pack_reset (pack);
        sn_pack_map (pack, 2);
        sn_pack_kv_uint (pack, "rid", rid);
        sn_pack_kv_uint (pack, "code", (uint64_t) echo->code);
        zframe_t *answer = sn_pack_frame (pack);
        zmsg_append (msg, &answer);
        zmsg_send (&msg, router);
    }
    sn_pack_destroy (&pack);
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

//  Send one frame and return the reply's code and rid.
static int
s_roundtrip (zsock_t *client, const void *data, size_t size, uint64_t *rid_p)
{
    zframe_t *frame = zframe_new (data, size);
    zframe_send (&frame, client, 0);
    zpoller_t *poller = zpoller_new (client, NULL);
    int code = -1;
    if (zpoller_wait (poller, 5000) == client) {
        frame = zframe_recv (client);
        sn_msg_t *reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
        assert (reply);
        int64_t value;
        if (sn_value_int (sn_value_get (sn_msg_root (reply), "code"), &value))
            code = (int) value;
        if (rid_p)
            sn_value_uint (sn_value_get (sn_msg_root (reply), "rid"), rid_p);
        sn_msg_destroy (&reply);
        zframe_destroy (&frame);
    }
    zpoller_destroy (&poller);
    return code;
}

void
sn_frontend_test (bool verbose)
{
    char store_endpoint[64], mesh_endpoint[64], inproc[64], error[256];
    snprintf (store_endpoint, sizeof store_endpoint, "inproc://sn-frontend-test-store-%d",
              getpid ());
    snprintf (mesh_endpoint, sizeof mesh_endpoint, "inproc://sn-frontend-test-mesh-%d", getpid ());
    snprintf (inproc, sizeof inproc, "inproc://sn-frontend-test-%d", getpid ());
    s_echo_t store_echo = {store_endpoint, 200}, mesh_echo = {mesh_endpoint, 299};
    zactor_t *store = zactor_new (s_echo_store, &store_echo);
    zactor_t *mesh = zactor_new (s_echo_store, &mesh_echo);
    sn_schema_t *schema = sn_schema_new ();
    assert (schema);
    char internal[80];
    snprintf (internal, sizeof internal, "inproc://sn-frontend-test-internal-%d", getpid ());
    sn_frontend_config_t config = {"tcp://127.0.0.1:*",
                                   inproc,
                                   {{"health-not cluster", mesh_endpoint},
                                    {"put puts health", store_endpoint},
                                    {"*", store_endpoint}},
                                   schema,
                                   verbose,
                                   internal,
                                   "cluster",
                                   NULL,
                                   NULL};
    zactor_t *frontend = sn_frontend_new (&config, error, sizeof error);
    assert (frontend);

    //  An endpoint that cannot be bound is reported, not fatal
    sn_frontend_config_t clash = {"tcp://256.0.0.1:1",
                                  "inproc://sn-frontend-test-clash",
                                  {{"*", store_endpoint}},
                                  schema,
                                  verbose,
                                  NULL,
                                  NULL,
                                  NULL,
                                  NULL};
    assert (sn_frontend_new (&clash, error, sizeof error) == NULL);
    assert (strstr (error, "cannot bind clients endpoint"));

    zsock_t *client = zsock_new_dealer (inproc);
    sn_pack_t *pack = sn_pack_new ();

    //  A valid request reaches the store and its reply comes back
    sn_pack_map (pack, 2);
    sn_pack_kv_str (pack, "op", "health");
    sn_pack_kv_uint (pack, "rid", 7);
    uint64_t rid = 0;
    assert (s_roundtrip (client, sn_pack_data (pack), sn_pack_size (pack), &rid) == 200);
    assert (rid == 7);

    //  cluster is the mesh's, and here an op between nodes only: refused to clients,
    //  served from the internal endpoint, whose answers go back there
    sn_pack_reset (pack);
    sn_pack_map (pack, 2);
    sn_pack_kv_str (pack, "op", "cluster");
    sn_pack_kv_uint (pack, "rid", 9);
    assert (s_roundtrip (client, sn_pack_data (pack), sn_pack_size (pack), &rid) == 403);
    assert (rid == 9);
    zsock_t *node = zsock_new_dealer (internal);
    assert (s_roundtrip (node, sn_pack_data (pack), sn_pack_size (pack), &rid) == 299);
    assert (rid == 9);
    assert (s_roundtrip (node, "not msgpack", 11, &rid) == 400);
    sn_pack_reset (pack);
    sn_pack_map (pack, 2);
    sn_pack_kv_str (pack, "op", "health");
    sn_pack_kv_uint (pack, "rid", 10);
    assert (s_roundtrip (node, sn_pack_data (pack), sn_pack_size (pack), &rid) == 200);
    assert (rid == 10);
    zsock_destroy (&node);

    //  Invalid ones are answered here, with the rid when there is one
    sn_pack_reset (pack);
    sn_pack_map (pack, 2);
    sn_pack_kv_str (pack, "op", "launch");
    sn_pack_kv_uint (pack, "rid", 8);
    assert (s_roundtrip (client, sn_pack_data (pack), sn_pack_size (pack), &rid) == 400);
    assert (rid == 8);
    assert (s_roundtrip (client, "not msgpack", 11, &rid) == 400);
    assert (s_roundtrip (client, "\x93\x01\x02\x03", 4, NULL) == 400);
    assert (s_roundtrip (client, "\xdd\xff\xff\xff\xff", 5, NULL) == 400);

    //  Oversized frames are refused before decoding
    size_t big = SN_MSG_MAX_SIZE + 1;
    byte *huge = (byte *) zmalloc (big);
    huge[0] = 0x81;
    assert (s_roundtrip (client, huge, big, NULL) == 413);
    free (huge);

    //  Pipelined requests are all answered
    for (uint64_t i = 1; i <= 500; i++) {
        sn_pack_reset (pack);
        sn_pack_map (pack, 2);
        sn_pack_kv_str (pack, "op", "health");
        sn_pack_kv_uint (pack, "rid", i);
        zframe_t *frame = sn_pack_frame (pack);
        zframe_send (&frame, client, 0);
    }
    zpoller_t *poller = zpoller_new (client, NULL);
    uint64_t sum = 0;
    for (int i = 0; i < 500; i++) {
        assert (zpoller_wait (poller, 5000) == client);
        zframe_t *frame = zframe_recv (client);
        sn_msg_t *reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
        uint64_t value;
        assert (sn_value_uint (sn_value_get (sn_msg_root (reply), "rid"), &value));
        sum += value;
        sn_msg_destroy (&reply);
        zframe_destroy (&frame);
    }
    assert (sum == 500 * 501 / 2);

    //  Puts from two clients go on gathered, and each is answered to its own
    //  client; what a client sends after its puts is answered after them
    zsock_t *other = zsock_new_dealer (inproc);
    for (uint64_t n = 0; n < 6; n++) {
        sn_pack_reset (pack);
        sn_pack_map (pack, 3);
        sn_pack_kv_str (pack, "op", "put");
        sn_pack_kv_uint (pack, "rid", 1000 + n);
        sn_pack_str (pack, "event");
        sn_pack_map (pack, 1 + (n == 3));
        sn_pack_kv_uint (pack, "n", n);
        if (n == 3) {
            sn_pack_str (pack, "fail");
            sn_pack_bool (pack, true);
        }
        zframe_t *frame = sn_pack_frame (pack);
        zframe_send (&frame, n % 2 ? other : client, 0);
    }
    sn_pack_reset (pack);
    sn_pack_map (pack, 2);
    sn_pack_kv_str (pack, "op", "health");
    sn_pack_kv_uint (pack, "rid", 1006);
    zframe_t *after = sn_pack_frame (pack);
    zframe_send (&after, client, 0);
    zpoller_t *other_poller = zpoller_new (other, NULL);
    for (uint64_t n = 0; n < 7; n++) {
        zsock_t *which = n % 2 && n < 6 ? other : client;
        assert (zpoller_wait (which == other ? other_poller : poller, 5000) == which);
        zframe_t *frame = zframe_recv (which);
        sn_msg_t *reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
        const sn_value_t *root = sn_msg_root (reply);
        uint64_t value = 0, code = 0;
        assert (sn_value_uint (sn_value_get (root, "rid"), &value) && value == 1000 + n);
        assert (sn_value_uint (sn_value_get (root, "code"), &code));
        char key[32];
        snprintf (key, sizeof key, "k%" PRIu64, n);
        if (n == 6)
            assert (code == 200);
        else if (n == 3)
            assert (code == 503 &&
                    sn_value_streq (sn_value_get (root, "error"), "commit ALL not met"));
        else
            assert (code == 201 && sn_value_streq (sn_value_get (root, "key"), key));
        sn_msg_destroy (&reply);
        zframe_destroy (&frame);
    }
    zpoller_destroy (&other_poller);
    zsock_destroy (&other);

    //  A REQ client's envelope (an empty delimiter after its identity) comes back
    //  whole
    zsock_t *req = zsock_new_req (inproc);
    sn_pack_reset (pack);
    sn_pack_map (pack, 3);
    sn_pack_kv_str (pack, "op", "put");
    sn_pack_kv_uint (pack, "rid", 12);
    sn_pack_str (pack, "event");
    sn_pack_map (pack, 1);
    sn_pack_kv_uint (pack, "n", 12);
    zframe_t *req_frame = sn_pack_frame (pack);
    zframe_send (&req_frame, req, 0);
    zpoller_t *req_poller = zpoller_new (req, NULL);
    assert (zpoller_wait (req_poller, 5000) == req);
    req_frame = zframe_recv (req);
    sn_msg_t *req_reply = sn_msg_decode (zframe_data (req_frame), zframe_size (req_frame), 0, NULL);
    assert (sn_value_streq (sn_value_get (sn_msg_root (req_reply), "key"), "k12"));
    sn_msg_destroy (&req_reply);
    zframe_destroy (&req_frame);
    zpoller_destroy (&req_poller);
    zsock_destroy (&req);

    //  A request with more envelope frames than an actor's answer can carry back is
    //  refused here, gathered put or not
    for (size_t extra = 6; extra <= 9; extra++) {
        zmsg_t *framed = zmsg_new ();
        for (size_t index = 0; index < extra; index++)
            zmsg_addstr (framed, "junk");
        sn_pack_reset (pack);
        sn_pack_map (pack, 3);
        sn_pack_kv_str (pack, "op", "put");
        sn_pack_kv_uint (pack, "rid", 13);
        sn_pack_str (pack, "event");
        sn_pack_map (pack, 0);
        zmsg_addmem (framed, sn_pack_data (pack), sn_pack_size (pack));
        zmsg_send (&framed, client);
        assert (zpoller_wait (poller, 5000) == client);
        framed = zmsg_recv (client);
        //  Past what the frontend holds, only the identity is kept
        assert (zmsg_size (framed) == (extra < 9 ? extra + 1 : 1));
        zframe_t *last = zmsg_last (framed);
        sn_msg_t *answer = sn_msg_decode (zframe_data (last), zframe_size (last), 0, NULL);
        uint64_t code = 0;
        assert (sn_value_uint (sn_value_get (sn_msg_root (answer), "code"), &code));
        //  The frontend's ROUTER identity, the link's and the mesh's for a forward:
        //  seven frames of its own leave no room
        assert (code == (extra < 7 ? 201 : 400));
        sn_msg_destroy (&answer);
        zmsg_destroy (&framed);
    }

    //  puts is the node's own: no client can send one
    sn_pack_reset (pack);
    sn_pack_map (pack, 3);
    sn_pack_kv_str (pack, "op", "puts");
    sn_pack_kv_uint (pack, "rid", 11);
    sn_pack_str (pack, "items");
    sn_pack_array (pack, 0);
    assert (s_roundtrip (client, sn_pack_data (pack), sn_pack_size (pack), &rid) == 400);
    assert (rid == 11);
    zpoller_destroy (&poller);

    sn_pack_destroy (&pack);
    zsock_destroy (&client);
    zactor_destroy (&frontend);
    zactor_destroy (&store);
    zactor_destroy (&mesh);
    sn_schema_destroy (&schema);
}
