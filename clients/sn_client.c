/*  sn_client: the supernode client library for producers and tools.
 */
#include "sn_client.h"
#include "sn_json.h"
#include "sn_msg.h"

struct _sn_client_t {
    zsock_t *dealer;   //  connected to the node's client endpoint
    zpoller_t *poller; //  on dealer, for replies with a deadline
    sn_pack_t *pack;   //  request being built
    uint64_t next_rid; //  rid of the next request
    int timeout;       //  ms to wait for a reply
    char error[512];   //  why the last call failed
    zlist_t *work;     //  work pushed by the node, not yet taken (JSON text)
    zlist_t *classes;  //  worker: classes offered, for saying hello again
    uint32_t capacity; //  worker: invocations taken at a time
    char *name;        //  worker: its name, or NULL
    int heartbeat;     //  worker: ms between heartbeats, 0 before hello
    int64_t next_beat; //  worker: zclock_mono of the next heartbeat
    uint64_t beat_rid; //  worker: rid of the last heartbeat sent
    zlist_t *pushes;   //  agent: JSON of messages the node pushed while we waited
    char *agent_id;    //  agent: destination id of its hello, or NULL
    int agent_beat;    //  agent: its heartbeat, ms
};

//  A client on a DEALER to endpoint; with cert, a CURVE client of server_key (Z85).
static sn_client_t *
s_client_new (const char *endpoint, zcert_t *cert, const char *server_key)
{
    if (!endpoint)
        return NULL;
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_linger (dealer, 0);
    zsock_set_sndhwm (dealer, 100000);
    zsock_set_rcvhwm (dealer, 100000);
    if (cert) {
        //  Before connecting: libzmq takes the mechanism when the connection is made
        zcert_apply (cert, dealer);
        zsock_set_curve_serverkey (dealer, server_key);
    }
    if (zsock_connect (dealer, "%s", endpoint) == -1) {
        zsock_destroy (&dealer);
        return NULL;
    }
    sn_client_t *self = (sn_client_t *) zmalloc (sizeof (sn_client_t));
    self->dealer = dealer;
    self->poller = zpoller_new (dealer, NULL);
    self->pack = sn_pack_new ();
    self->next_rid = 1;
    self->timeout = 10000;
    //  A send waits at most the timeout too: a connection the node refused (a CURVE
    //  key it does not allow) leaves the DEALER no link, and a send would block for ever
    zsock_set_sndtimeo (dealer, self->timeout);
    self->work = zlist_new ();
    self->pushes = zlist_new ();
    zlist_autofree (self->pushes);
    return self;
}

sn_client_t *
sn_client_new (const char *endpoint)
{
    return s_client_new (endpoint, NULL, NULL);
}

//  A CURVE key given as text: 40 characters of Z85 that decode.
static bool
s_z85_key (const char *text)
{
    byte key[32];
    return text && strlen (text) == 40 && zmq_z85_decode (key, text);
}

sn_client_t *
sn_client_new_curve (const char *endpoint, const char *server_key, const char *cert_path,
                     char *error, size_t size)
{
    if (!server_key || !cert_path) {
        snprintf (error, size, "CURVE needs the node's public key and a client certificate");
        return NULL;
    }
    if (!zsys_has_curve ()) {
        snprintf (error, size, "this libzmq was built without CURVE (libsodium)");
        return NULL;
    }
    //  The node's key, given or read from its public certificate
    char key[41];
    if (s_z85_key (server_key))
        snprintf (key, sizeof key, "%s", server_key);
    else {
        zcert_t *server = zsys_file_exists (server_key) ? zcert_load (server_key) : NULL;
        if (!server || !s_z85_key (zcert_public_txt (server))) {
            snprintf (error, size,
                      "server key '%s' is neither 40 characters of Z85 nor a certificate file",
                      server_key);
            zcert_destroy (&server);
            return NULL;
        }
        snprintf (key, sizeof key, "%s", zcert_public_txt (server));
        zcert_destroy (&server);
    }
    //  zcert_load takes FILE_secret when it is there, FILE alone otherwise: a
    //  client needs its secret key
    char secret_path[4096];
    snprintf (secret_path, sizeof secret_path, "%s_secret", cert_path);
    zcert_t *cert = zsys_file_exists (secret_path) ? zcert_load (cert_path) : NULL;
    if (!cert || !s_z85_key (zcert_public_txt (cert)) || !s_z85_key (zcert_secret_txt (cert)) ||
        streq (zcert_secret_txt (cert), "0000000000000000000000000000000000000000")) {
        snprintf (error, size,
                  "%s is not a client certificate with its secret (FILE and FILE_secret, as "
                  "supernode keygen FILE writes them)",
                  cert_path);
        zcert_destroy (&cert);
        return NULL;
    }
    sn_client_t *self = s_client_new (endpoint, cert, key);
    zcert_destroy (&cert);
    if (!self)
        snprintf (error, size, "cannot use endpoint '%s'", endpoint ? endpoint : "");
    return self;
}

void
sn_client_destroy (sn_client_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_client_t *self = *self_p;
        zpoller_destroy (&self->poller);
        zsock_destroy (&self->dealer);
        sn_pack_destroy (&self->pack);
        while (zlist_size (self->work)) {
            char *work = (char *) zlist_pop (self->work);
            free (work);
        }
        zlist_destroy (&self->work);
        zlist_destroy (&self->classes);
        free (self->name);
        zlist_destroy (&self->pushes);
        free (self->agent_id);
        free (self);
        *self_p = NULL;
    }
}

void
sn_client_set_timeout (sn_client_t *self, int msecs)
{
    assert (self);
    self->timeout = msecs;
    zsock_set_sndtimeo (self->dealer, msecs);
}

const char *
sn_client_error (sn_client_t *self)
{
    assert (self);
    return self->error;
}

//  Send what is in self->pack as one frame. Returns 0, or -1 with the reason.
static int
s_send_pack (sn_client_t *self)
{
    zframe_t *frame = sn_pack_frame (self->pack);
    if (zframe_send (&frame, self->dealer, 0) == -1) {
        zframe_destroy (&frame);
        snprintf (self->error, sizeof self->error, "cannot send: %s",
                  zmq_errno () == EAGAIN ? "no link to the node (refused, or not up)"
                                         : zmq_strerror (zmq_errno ()));
        return -1;
    }
    return 0;
}

//  Receive one reply within the timeout. Returns the decoded reply, or NULL with
//  the reason in self->error.
static sn_msg_t *
s_recv_reply (sn_client_t *self, int timeout)
{
    if (zpoller_wait (self->poller, timeout) != self->dealer) {
        snprintf (self->error, sizeof self->error, "no reply from the node within %d ms", timeout);
        return NULL;
    }
    zframe_t *frame = zframe_recv (self->dealer);
    if (!frame) {
        snprintf (self->error, sizeof self->error, "interrupted");
        return NULL;
    }
    const char *reason = NULL;
    sn_msg_t *reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, &reason);
    zframe_destroy (&frame);
    if (!reply)
        snprintf (self->error, sizeof self->error, "invalid reply: %s", reason);
    return reply;
}

//  The reply's code; sets self->error from the reply when it is not 2xx.
static int
s_reply_code (sn_client_t *self, sn_msg_t *reply)
{
    const sn_value_t *root = sn_msg_root (reply);
    int64_t code = -1;
    if (!sn_value_int (sn_value_get (root, "code"), &code) || code < 0 || code > 999) {
        snprintf (self->error, sizeof self->error, "invalid reply: no code");
        return -1;
    }
    size_t len = 0;
    const char *error = sn_value_str (sn_value_get (root, "error"), &len);
    if (code >= 300)
        snprintf (self->error, sizeof self->error, "%.*s", error ? (int) len : 0,
                  error ? error : "");
    else
        self->error[0] = 0;
    return (int) code;
}

static void s_worker_reply (sn_client_t *self, sn_msg_t *reply);

//  When message is work pushed by the node (it has an op), keep it as JSON and
//  destroy it; a reply to a worker's own heartbeat is handled here too. Returns
//  true when the message was taken.
static bool
s_keep_work (sn_client_t *self, sn_msg_t *message)
{
    const sn_value_t *root = sn_msg_root (message);
    if (sn_value_streq (sn_value_get (root, "op"), "work")) {
        json_t *work = sn_json_from_value (root);
        json_object_del (work, "op");
        char *text = work ? json_dumps (work, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref (work);
        if (text)
            zlist_append (self->work, text);
        sn_msg_destroy (&message);
        return true;
    }
    uint64_t rid = 0;
    sn_value_uint (sn_value_get (root, "rid"), &rid);
    if (self->heartbeat && rid == self->beat_rid) {
        s_worker_reply (self, message);
        return true;
    }
    return false;
}

//  Wait for the reply to rid, dropping stale replies to earlier requests.
static sn_msg_t *
s_wait_for (sn_client_t *self, uint64_t rid)
{
    int64_t deadline = zclock_mono () + self->timeout;
    while (true) {
        int64_t left = deadline - zclock_mono ();
        sn_msg_t *reply = s_recv_reply (self, left > 0 ? (int) left : 0);
        if (!reply)
            return NULL;
        uint64_t reply_rid = 0;
        sn_value_uint (sn_value_get (sn_msg_root (reply), "rid"), &reply_rid);
        //  Work pushed while we wait is kept for sn_client_worker_next
        if (s_keep_work (self, reply))
            continue;
        //  ... and what is pushed to an agent, for sn_client_agent_next
        if (sn_value_get (sn_msg_root (reply), "op")) {
            char *text = sn_json_text (sn_msg_root (reply));
            if (text)
                zlist_append (self->pushes, text);
            free (text);
            sn_msg_destroy (&reply);
            continue;
        }
        //  Rid 0 answers a request the node could not read at all: ours, since
        //  this connection sends one request at a time in the simple calls.
        if (reply_rid == rid || reply_rid == 0)
            return reply;
        sn_msg_destroy (&reply);
    }
}

//  Pack a JSON object as a request map with rid added. Returns 0, or -1.
static int
s_pack_request (sn_client_t *self, const char *request_json, uint64_t rid)
{
    char error[256];
    json_t *request = sn_json_parse (request_json, strlen (request_json), error, sizeof error);
    if (!request || !json_is_object (request)) {
        snprintf (self->error, sizeof self->error, "request: %s",
                  request ? "must be a JSON object" : error);
        json_decref (request);
        return -1;
    }
    json_object_del (request, "rid");
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, (uint32_t) json_object_size (request) + 1);
    sn_pack_kv_uint (self->pack, "rid", rid);
    const char *key;
    json_t *value;
    int rc = 0;
    json_object_foreach (request, key, value)
    {
        sn_pack_str (self->pack, key);
        if (sn_json_pack (value, self->pack, error, sizeof error)) {
            snprintf (self->error, sizeof self->error, "request: %s", error);
            rc = -1;
            break;
        }
    }
    json_decref (request);
    return rc;
}

//  Send the request in self->pack, which carries rid, and wait for its reply.
static sn_msg_t *
s_call (sn_client_t *self, uint64_t rid, int *code_p)
{
    *code_p = -1;
    if (s_send_pack (self))
        return NULL;
    sn_msg_t *reply = s_wait_for (self, rid);
    if (reply)
        *code_p = s_reply_code (self, reply);
    return reply;
}

//  Start a request map of entries + 2 (op, rid) and return its rid.
static uint64_t
s_begin (sn_client_t *self, const char *op, uint32_t entries)
{
    uint64_t rid = self->next_rid++;
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, entries + 2);
    sn_pack_kv_str (self->pack, "op", op);
    sn_pack_kv_uint (self->pack, "rid", rid);
    return rid;
}

//  Append the value of a JSON object text. Returns 0, or -1 with the reason.
static int
s_pack_event (sn_client_t *self, const char *event_json)
{
    char error[256];
    json_t *event = sn_json_parse (event_json, strlen (event_json), error, sizeof error);
    if (!event || !json_is_object (event)) {
        snprintf (self->error, sizeof self->error, "event: %s",
                  event ? "must be a JSON object" : error);
        json_decref (event);
        return -1;
    }
    int rc = sn_json_pack (event, self->pack, error, sizeof error);
    if (rc)
        snprintf (self->error, sizeof self->error, "event: %s", error);
    json_decref (event);
    return rc;
}

int
sn_client_put (sn_client_t *self, const char *event_json, char **key_p)
{
    assert (self);
    if (key_p)
        *key_p = NULL;
    uint64_t rid = s_begin (self, "put", 1);
    sn_pack_str (self->pack, "event");
    if (!event_json || s_pack_event (self, event_json))
        return -1;
    int code;
    sn_msg_t *reply = s_call (self, rid, &code);
    if (key_p)
        *key_p = code == 201 ? sn_value_get_strdup (sn_msg_root (reply), "key") : NULL;
    sn_msg_destroy (&reply);
    return code;
}

int
sn_client_put_key (sn_client_t *self, const char *key, const char *event_json)
{
    assert (self);
    if (!key || !event_json) {
        snprintf (self->error, sizeof self->error, "key and event are required");
        return -1;
    }
    uint64_t rid = s_begin (self, "put", 2);
    sn_pack_kv_str (self->pack, "key", key);
    sn_pack_str (self->pack, "event");
    if (s_pack_event (self, event_json))
        return -1;
    int code;
    sn_msg_t *reply = s_call (self, rid, &code);
    sn_msg_destroy (&reply);
    return code;
}

int
sn_client_get (sn_client_t *self, const char *key, char **event_json_p)
{
    assert (self);
    if (event_json_p)
        *event_json_p = NULL;
    if (!key) {
        snprintf (self->error, sizeof self->error, "key is required");
        return -1;
    }
    uint64_t rid = s_begin (self, "get", 1);
    sn_pack_kv_str (self->pack, "key", key);
    int code;
    sn_msg_t *reply = s_call (self, rid, &code);
    if (code == 200 && event_json_p)
        *event_json_p = sn_json_text (sn_value_get (sn_msg_root (reply), "event"));
    sn_msg_destroy (&reply);
    return code;
}

//  The reply without its rid and code, as JSON text. Caller frees.
static char *
s_reply_body (sn_msg_t *reply)
{
    json_t *body = sn_json_from_value (sn_msg_root (reply));
    if (!body)
        return NULL;
    json_object_del (body, "rid");
    json_object_del (body, "code");
    char *text = json_dumps (body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (body);
    return text;
}

int
sn_client_range (sn_client_t *self, const char *from, const char *to, uint32_t limit,
                 char **result_json_p)
{
    assert (self);
    if (result_json_p)
        *result_json_p = NULL;
    uint64_t rid = s_begin (self, "range", (from != NULL) + (to != NULL) + (limit > 0));
    if (from)
        sn_pack_kv_str (self->pack, "from", from);
    if (to)
        sn_pack_kv_str (self->pack, "to", to);
    if (limit)
        sn_pack_kv_uint (self->pack, "limit", limit);
    int code;
    sn_msg_t *reply = s_call (self, rid, &code);
    if (code == 200 && result_json_p)
        *result_json_p = s_reply_body (reply);
    sn_msg_destroy (&reply);
    return code;
}

int
sn_client_request (sn_client_t *self, const char *request_json, char **reply_json_p)
{
    assert (self);
    if (reply_json_p)
        *reply_json_p = NULL;
    uint64_t rid = self->next_rid++;
    if (!request_json || s_pack_request (self, request_json, rid))
        return -1;
    int code;
    sn_msg_t *reply = s_call (self, rid, &code);
    if (reply && reply_json_p)
        *reply_json_p = sn_json_text (sn_msg_root (reply));
    sn_msg_destroy (&reply);
    return code;
}

uint64_t
sn_client_send (sn_client_t *self, const char *request_json)
{
    assert (self);
    uint64_t rid = self->next_rid++;
    if (!request_json || s_pack_request (self, request_json, rid) || s_send_pack (self))
        return 0;
    return rid;
}

int
sn_client_send_raw (sn_client_t *self, const void *data, size_t size)
{
    assert (self);
    zframe_t *frame = zframe_new (data, size);
    if (zframe_send (&frame, self->dealer, 0) == -1) {
        zframe_destroy (&frame);
        snprintf (self->error, sizeof self->error, "cannot send");
        return -1;
    }
    return 0;
}

int
sn_client_recv (sn_client_t *self, uint64_t *rid_p, char **reply_json_p)
{
    assert (self);
    if (reply_json_p)
        *reply_json_p = NULL;
    sn_msg_t *reply = s_recv_reply (self, self->timeout);
    if (!reply)
        return -1;
    if (rid_p) {
        *rid_p = 0;
        sn_value_uint (sn_value_get (sn_msg_root (reply), "rid"), rid_p);
    }
    int code = s_reply_code (self, reply);
    if (reply_json_p)
        *reply_json_p = sn_json_text (sn_msg_root (reply));
    sn_msg_destroy (&reply);
    return code;
}

//  --------------------------------------------------------------------------
//  Worker API

//  Send hello from what the worker remembers, pipelined. Returns its rid, or 0.
static uint64_t
s_worker_send_hello (sn_client_t *self)
{
    uint64_t rid = s_begin (self, "worker.hello", 2 + (self->name != NULL));
    sn_pack_str (self->pack, "classes");
    sn_pack_array (self->pack, (uint32_t) zlist_size (self->classes));
    for (const char *name = (const char *) zlist_first (self->classes); name;
         name = (const char *) zlist_next (self->classes))
        sn_pack_str (self->pack, name);
    sn_pack_kv_uint (self->pack, "capacity", self->capacity);
    if (self->name)
        sn_pack_kv_str (self->pack, "name", self->name);
    return s_send_pack (self) ? 0 : rid;
}

//  A reply to a heartbeat: 404 means the node forgot us (it restarted).
static void
s_worker_reply (sn_client_t *self, sn_msg_t *reply)
{
    int64_t code = 0;
    sn_value_int (sn_value_get (sn_msg_root (reply), "code"), &code);
    sn_msg_destroy (&reply);
    if (code == 404)
        s_worker_send_hello (self);
}

int
sn_client_worker_hello (sn_client_t *self, const char **classes, size_t count, uint32_t capacity,
                        const char *name)
{
    assert (self);
    zlist_destroy (&self->classes);
    self->classes = zlist_new ();
    zlist_autofree (self->classes);
    for (size_t index = 0; index < count; index++)
        zlist_append (self->classes, (void *) classes[index]);
    self->capacity = capacity;
    free (self->name);
    self->name = name ? strdup (name) : NULL;
    uint64_t rid = s_worker_send_hello (self);
    if (!rid)
        return -1;
    sn_msg_t *reply = s_wait_for (self, rid);
    int code = reply ? s_reply_code (self, reply) : -1;
    uint64_t heartbeat = 0;
    if (code == 200 && sn_value_uint (sn_value_get (sn_msg_root (reply), "heartbeat"), &heartbeat))
        self->heartbeat = heartbeat > 0 && heartbeat < 3600000 ? (int) heartbeat : 1000;
    self->next_beat = zclock_mono () + self->heartbeat;
    sn_msg_destroy (&reply);
    return code;
}

int
sn_client_worker_heartbeat (sn_client_t *self)
{
    assert (self);
    if (!self->heartbeat || zclock_mono () < self->next_beat)
        return 0;
    self->beat_rid = s_begin (self, "worker.heartbeat", 0);
    self->next_beat = zclock_mono () + self->heartbeat;
    return s_send_pack (self);
}

int
sn_client_worker_next (sn_client_t *self, int msecs, char **work_json_p)
{
    assert (self && work_json_p);
    *work_json_p = NULL;
    int64_t deadline = zclock_mono () + msecs;
    while (zlist_size (self->work) == 0) {
        if (sn_client_worker_heartbeat (self))
            return -1;
        int64_t now = zclock_mono (), until = deadline;
        if (self->heartbeat && self->next_beat < until)
            until = self->next_beat;
        if (now >= deadline)
            return 0;
        if (zpoller_wait (self->poller, (int) (until > now ? until - now : 0)) != self->dealer) {
            if (zpoller_terminated (self->poller)) {
                snprintf (self->error, sizeof self->error, "interrupted");
                return -1;
            }
            continue;
        }
        sn_msg_t *message = s_recv_reply (self, 0);
        if (message && !s_keep_work (self, message))
            sn_msg_destroy (&message); //  a late reply nobody waits for
    }
    *work_json_p = (char *) zlist_pop (self->work);
    return 1;
}

int
sn_client_worker_progress (sn_client_t *self, const char *id, double progress)
{
    assert (self);
    if (!id) {
        snprintf (self->error, sizeof self->error, "id is required");
        return -1;
    }
    uint64_t rid = s_begin (self, "worker.progress", 2);
    sn_pack_kv_str (self->pack, "id", id);
    sn_pack_str (self->pack, "progress");
    sn_pack_double (self->pack, progress);
    int code;
    sn_msg_t *reply = s_call (self, rid, &code);
    sn_msg_destroy (&reply);
    return code;
}

int
sn_client_worker_result (sn_client_t *self, const char *id, int code, const char *response_json,
                         const char *error, bool retryable)
{
    assert (self);
    if (!id) {
        snprintf (self->error, sizeof self->error, "id is required");
        return -1;
    }
    uint64_t rid = s_begin (self, "worker.result", 3 + (response_json != NULL) + (error != NULL));
    sn_pack_kv_str (self->pack, "id", id);
    sn_pack_kv_uint (self->pack, "code", (uint64_t) code);
    sn_pack_str (self->pack, "retryable");
    sn_pack_bool (self->pack, retryable);
    if (error)
        sn_pack_kv_str (self->pack, "error", error);
    if (response_json) {
        sn_pack_str (self->pack, "response");
        char reason[256];
        if (sn_json_to_pack (response_json, strlen (response_json), self->pack, reason,
                             sizeof reason)) {
            snprintf (self->error, sizeof self->error, "response: %s", reason);
            return -1;
        }
    }
    int reply_code;
    sn_msg_t *reply = s_call (self, rid, &reply_code);
    sn_msg_destroy (&reply);
    return reply_code;
}

//  --------------------------------------------------------------------------
//  Agents

//  Starts an agent op, with the agent's id, of entries more members.
static uint64_t
s_begin_agent (sn_client_t *self, const char *op, uint32_t entries)
{
    //  hello and heartbeat say how often the agent will be heard from: a heartbeat
    //  may be the first the node hears of it after a restart
    bool says_heartbeat =
        self->agent_beat > 0 && (streq (op, "agent.hello") || streq (op, "agent.heartbeat"));
    uint64_t rid = s_begin (self, op, entries + 1 + says_heartbeat);
    sn_pack_kv_str (self->pack, "id", self->agent_id ? self->agent_id : "");
    if (says_heartbeat)
        sn_pack_kv_uint (self->pack, "heartbeat", (uint64_t) self->agent_beat);
    return rid;
}

static int
s_call_simple (sn_client_t *self, uint64_t rid)
{
    int code;
    sn_msg_t *reply = s_call (self, rid, &code);
    sn_msg_destroy (&reply);
    return code;
}

int
sn_client_agent_hello (sn_client_t *self, const char *id, int heartbeat)
{
    assert (self);
    if (!id) {
        snprintf (self->error, sizeof self->error, "id is required");
        return -1;
    }
    free (self->agent_id);
    self->agent_id = strdup (id);
    self->agent_beat = heartbeat;
    return s_call_simple (self, s_begin_agent (self, "agent.hello", 0));
}

int
sn_client_agent_next (sn_client_t *self, int timeout, char **message_json_p)
{
    assert (self && message_json_p);
    *message_json_p = (char *) zlist_pop (self->pushes);
    int64_t deadline = zclock_mono () + timeout;
    while (!*message_json_p) {
        int64_t left = deadline - zclock_mono ();
        if (left < 0 || zpoller_wait (self->poller, (int) left) != self->dealer)
            return 0;
        zframe_t *frame = zframe_recv (self->dealer);
        sn_msg_t *msg =
            frame ? sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL) : NULL;
        zframe_destroy (&frame);
        //  Replies that come now answer calls that gave up waiting: dropped
        if (msg && sn_value_get (sn_msg_root (msg), "op"))
            *message_json_p = sn_json_text (sn_msg_root (msg));
        sn_msg_destroy (&msg);
    }
    return 1;
}

int
sn_client_agent_heartbeat (sn_client_t *self)
{
    assert (self);
    return s_call_simple (self, s_begin_agent (self, "agent.heartbeat", 0));
}

int
sn_client_agent_progress (sn_client_t *self, const char *task_id, int percent)
{
    assert (self);
    if (!task_id || percent < 0 || percent > 100) {
        snprintf (self->error, sizeof self->error, "a task id and a percent from 0 to 100");
        return -1;
    }
    uint64_t rid = s_begin_agent (self, "agent.progress", 2);
    sn_pack_kv_str (self->pack, "task", task_id);
    sn_pack_kv_uint (self->pack, "progress", (uint64_t) percent);
    return s_call_simple (self, rid);
}

int
sn_client_agent_result (sn_client_t *self, const char *task_id, int code, const char *data_json)
{
    assert (self);
    if (!task_id || code < 100 || code > 599) {
        snprintf (self->error, sizeof self->error, "a task id and a code from 100 to 599");
        return -1;
    }
    uint64_t rid = s_begin_agent (self, "agent.result", 2 + (data_json != NULL));
    sn_pack_kv_str (self->pack, "task", task_id);
    sn_pack_kv_uint (self->pack, "code", (uint64_t) code);
    if (data_json) {
        char error[256];
        sn_pack_str (self->pack, "data");
        if (sn_json_to_pack (data_json, strlen (data_json), self->pack, error, sizeof error)) {
            snprintf (self->error, sizeof self->error, "data: %s", error);
            return -1;
        }
    }
    return s_call_simple (self, rid);
}

//  Selftest: against a stand-in node that answers every op from a small script.
static void
s_fake_node (zsock_t *pipe, void *args)
{
    zsock_t *router = zsock_new_router ((const char *) args);
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    sn_pack_t *pack = sn_pack_new ();
    while (zpoller_wait (poller, -1) == router) {
        zmsg_t *msg = zmsg_recv (router);
        zframe_t *payload = zmsg_last (msg);
        sn_msg_t *request = sn_msg_decode (zframe_data (payload), zframe_size (payload), 0, NULL);
        const sn_value_t *root = sn_msg_root (request);
        uint64_t rid = 0;
        sn_value_uint (sn_value_get (root, "rid"), &rid);
        sn_pack_reset (pack);
        if (sn_value_streq (sn_value_get (root, "op"), "put")) {
            sn_pack_map (pack, 3);
            sn_pack_kv_uint (pack, "rid", rid);
            sn_pack_kv_uint (pack, "code", 201);
            sn_pack_kv_str (pack, "key", "20261122T121314123000000042-n1");
        }
        else if (sn_value_streq (sn_value_get (root, "op"), "get") &&
                 sn_value_streq (sn_value_get (root, "key"), "k1")) {
            sn_pack_map (pack, 3);
            sn_pack_kv_uint (pack, "rid", rid);
            sn_pack_kv_uint (pack, "code", 200);
            sn_pack_str (pack, "event");
            sn_pack_map (pack, 1);
            sn_pack_kv_str (pack, "a", "b");
        }
        else if (sn_value_streq (sn_value_get (root, "op"), "range")) {
            sn_pack_map (pack, 4);
            sn_pack_kv_uint (pack, "rid", rid);
            sn_pack_kv_uint (pack, "code", 200);
            sn_pack_str (pack, "events");
            sn_pack_array (pack, 0);
            sn_pack_str (pack, "next");
            sn_pack_nil (pack);
        }
        else if (sn_value_streq (sn_value_get (root, "op"), "silent"))
            sn_pack_reset (pack);
        else if (sn_value_streq (sn_value_get (root, "op"), "agent.hello")) {
            //  Work is pushed before the reply: the client keeps it for later
            zmsg_t *push = zmsg_dup (msg);
            zframe_t *last = zmsg_last (push);
            zmsg_remove (push, last);
            zframe_destroy (&last);
            sn_pack_map (pack, 2);
            sn_pack_kv_str (pack, "op", "agent.work");
            sn_pack_kv_str (pack, "id", "j-1");
            zmsg_addmem (push, sn_pack_data (pack), sn_pack_size (pack));
            zmsg_send (&push, router);
            sn_pack_reset (pack);
            sn_pack_map (pack, 2);
            sn_pack_kv_uint (pack, "rid", rid);
            sn_pack_kv_uint (pack, "code", 200);
        }
        else if (sn_value_streq (sn_value_get (root, "op"), "agent.result") &&
                 sn_value_streq (sn_value_get (root, "id"), "00:0c:29:1c:e8:01") &&
                 sn_value_streq (sn_value_get (root, "task"), "j-1")) {
            sn_pack_map (pack, 2);
            sn_pack_kv_uint (pack, "rid", rid);
            sn_pack_kv_uint (pack, "code", 200);
        }
        else
            sn_pack_error (pack, rid, 404, "no such thing");
        if (sn_pack_size (pack)) {
            zmsg_remove (msg, payload);
            zframe_destroy (&payload);
            zframe_t *answer = sn_pack_frame (pack);
            zmsg_append (msg, &answer);
            zmsg_send (&msg, router);
        }
        zmsg_destroy (&msg);
        sn_msg_destroy (&request);
    }
    sn_pack_destroy (&pack);
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

void
sn_client_test (bool verbose)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://sn-client-test-%d", getpid ());
    zactor_t *node = zactor_new (s_fake_node, endpoint);
    assert (sn_client_new ("nonsense") == NULL);
    sn_client_t *client = sn_client_new (endpoint);
    assert (client);

    char *key = NULL;
    assert (sn_client_put (client, "{\"hello\": \"world\"}", &key) == 201);
    assert (streq (key, "20261122T121314123000000042-n1"));
    free (key);
    assert (sn_client_put (client, "[1, 2]", &key) == -1);
    assert (key == NULL);
    assert (strstr (sn_client_error (client), "must be a JSON object"));
    assert (sn_client_put (client, "{bad", NULL) == -1);
    assert (strstr (sn_client_error (client), "invalid JSON"));
    assert (sn_client_put_key (client, "k1", "{}") == 201);

    char *event = NULL;
    assert (sn_client_get (client, "k1", &event) == 200);
    assert (streq (event, "{\"a\":\"b\"}"));
    free (event);
    assert (sn_client_get (client, "k2", &event) == 404);
    assert (event == NULL);
    assert (streq (sn_client_error (client), "no such thing"));

    char *result = NULL;
    assert (sn_client_range (client, "a", NULL, 10, &result) == 200);
    assert (streq (result, "{\"events\":[],\"next\":null}"));
    free (result);

    char *reply = NULL;
    assert (sn_client_request (client, "{\"op\": \"get\", \"key\": \"k1\"}", &reply) == 200);
    assert (strstr (reply, "\"code\":200"));
    free (reply);

    //  A node that does not answer makes a call fail in time, not hang
    sn_client_set_timeout (client, 200);
    assert (sn_client_request (client, "{\"op\": \"silent\"}", NULL) == -1);
    assert (strstr (sn_client_error (client), "no reply"));

    //  Pipelining: send many, then collect every rid once
    sn_client_set_timeout (client, 5000);
    uint64_t first = 0, last = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t rid = sn_client_send (client, "{\"op\": \"put\", \"event\": {}}");
        assert (rid);
        first = first ? first : rid;
        last = rid;
    }
    uint64_t sum = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t rid;
        assert (sn_client_recv (client, &rid, NULL) == 201);
        sum += rid;
    }
    assert (sum == (first + last) * 100 / 2);
    if (verbose)
        zsys_info ("sn_client: pipelined rids %" PRIu64 "..%" PRIu64, first, last);

    //  An agent: work pushed while it waited for its hello's reply is not lost
    char *message = NULL;
    assert (sn_client_agent_hello (client, "00:0c:29:1c:e8:01", 1000) == 200);
    assert (sn_client_agent_next (client, 1000, &message) == 1);
    assert (streq (message, "{\"op\":\"agent.work\",\"id\":\"j-1\"}"));
    free (message);
    assert (sn_client_agent_next (client, 0, &message) == 0 && message == NULL);
    assert (sn_client_agent_result (client, "j-1", 200, "{\"ok\": 1}") == 200);
    assert (sn_client_agent_result (client, "j-1", 200, "{bad") == -1);
    assert (sn_client_agent_progress (client, "j-1", 101) == -1);
    sn_client_destroy (&client);
    sn_client_destroy (&client);
    zactor_destroy (&node);

    //  CURVE: the keys and certificate are checked before anything connects
    if (zsys_has_curve ()) {
        char error[512], path[] = "/tmp/sn_client_test_XXXXXX";
        int fd = mkstemp (path);
        assert (fd >= 0);
        close (fd);
        zcert_t *cert = zcert_new ();
        assert (zcert_save (cert, path) == 0);
        const char *server = zcert_public_txt (cert);
        assert (!sn_client_new_curve ("tcp://127.0.0.1:1", server, NULL, error, sizeof error));
        assert (!sn_client_new_curve ("tcp://127.0.0.1:1", "short", path, error, sizeof error));
        assert (strstr (error, "neither"));
        assert (!sn_client_new_curve ("tcp://127.0.0.1:1", server, "/nonexistent", error,
                                      sizeof error));
        assert (strstr (error, "not a client certificate"));
        assert (!sn_client_new_curve ("nonsense", server, path, error, sizeof error));
        client = sn_client_new_curve ("tcp://127.0.0.1:1", path, path, error, sizeof error);
        assert (client);
        sn_client_destroy (&client);
        char *secret = zsys_sprintf ("%s_secret", path);
        unlink (secret);
        free (secret);
        unlink (path);
        zcert_destroy (&cert);
    }
}
