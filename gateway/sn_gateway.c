/*  sn_gateway: HTTP through civetweb, JSON at the edge.

    Routes (all bodies JSON, all errors {"error": "..."}):

        POST /events          the body is the event       -> 201 {key}
                              commit level by ?commit= or the X-Commit-Level header
        POST /_put            {key, event} (AllData peers) -> 201 {key}; 409 when the key
                                                             holds a different event
        GET  /events/:key     -> 200 the stored event itself | 404
        GET  /events?from=&to=&limit=
                              -> 200 {events: [{key, event}], next: key | null}
        GET  /health          -> 200 {status: "ok", name, events, event_retention_ms,
                                 expired, expired_ignored, sweeps}: the store's health
        GET  /cluster         -> 200 {name, members, partitions, dropped}
        GET  /metrics         -> 200 text/plain, the Prometheus text format (sn_metrics)
        POST /enqueue         {token, invocation, data?, bucket_id?, ...} -> 202 {id}
        GET  /invocations/:id -> 200 the invocation, with code and response once finished
        POST /batch           {callback_url, bucket_id, ...} -> 201 the bucket, with its secret
        GET|PUT|DELETE /batch/:bucket_id -> 200 the bucket, with counts on GET

    An unknown path is 404; a known path with another method is 405 with Allow. A
    body over max_body is 413; invalid JSON is 400 with the parser's reason. When the
    node does not answer within the timeout the answer is 504: the outcome of the
    request is unknown.

    Every civetweb worker thread owns one DEALER to the node, made when the thread
    starts and destroyed when it ends, so handlers share nothing mutable. A handler
    sends one msgpack request with a fresh rid, waits for the reply with that rid
    until its deadline, and drops any other reply: those are late answers to requests
    that already timed out on this thread.
*/
#include "sn_gateway.h"
#include "sn_msg.h"
#include "sn_json.h"
#include "sn_tokens.h"
#include "sn_metrics.h"
#include <civetweb.h>
#include <jansson.h>
#include <pthread.h>
#include <dirent.h>
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

//  civetweb's thread_type for the threads that serve connections.
#define S_WORKER_THREAD 1

//  Most bytes asked of one mg_read: the body deadline is checked between reads.
#define S_READ_PIECE 512

//  Longest value of a query parameter or header we pass on; keys are far shorter.
#define S_PARAM_MAX 256

struct _sn_gateway_t {
    struct mg_context *ctx; //  the civetweb server, NULL when it did not start
    char *node;             //  endpoint every worker thread connects its DEALER to
    size_t max_body;        //  largest request body accepted, in bytes
    int timeout;            //  ms a handler waits for the node's reply
    bool verbose;           //  log every request
    char *jobs;             //  XPUB of job changes for WebSockets, or NULL
    sn_tokens_t *tokens;    //  bearer tokens asked of every request but GET /health, or NULL
    pthread_t starter;      //  thread in mg_start2: its log lines explain a failed start
    char start_error[256];  //  first thing civetweb complained about while starting
};

//  What one worker thread owns.
typedef struct {
    zsock_t *dealer;   //  this thread's own link to the node
    zpoller_t *poller; //  waits on dealer until a request's deadline
    sn_pack_t *pack;   //  request buffer, reused from request to request
    uint64_t rid;      //  last request id used on this thread
} s_thread_t;

//  One HTTP request being answered.
typedef struct {
    sn_gateway_t *gateway;              //  read-only configuration
    s_thread_t *thread;                 //  the calling worker thread's state
    struct mg_connection *conn;         //  civetweb's connection
    const struct mg_request_info *info; //  method, path, query, headers
    char *body;                         //  request body, NUL-terminated, or NULL
    size_t body_size;                   //  bytes in body
    int status;                         //  HTTP status of the answer
    char *answer;                       //  JSON text of the answer
    const char *allow;                  //  methods for a 405's Allow header
    const char *type;                   //  Content-Type of a 200 answer, NULL for JSON
    bool challenge;                     //  a 401: say which scheme is wanted
    bool close;                         //  body not read to its end: close the connection
} s_request_t;

//  --------------------------------------------------------------------------
//  Answers. Every route sets exactly one answer; s_send writes it.

//  Sets the answer to json, taking ownership of it.
static void
s_set_json (s_request_t *request, int status, json_t *json)
{
    free (request->answer);
    request->answer = json ? json_dumps (json, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    request->status = request->answer ? status : 500;
    json_decref (json);
}

//  Sets an error answer. Returns -1 so that validators can fail in one line.
static int s_fail (s_request_t *request, int status, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_fail (s_request_t *request, int status, const char *format, ...)
{
    char text[512];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof (text), format, args);
    va_end (args);
    //  Text may quote the request (its path), which need not be UTF-8
    json_t *error = json_string (text);
    if (!error)
        error = json_string ("request is not valid UTF-8");
    json_t *json = json_object ();
    json_object_set_new (json, "error", error);
    s_set_json (request, status, json);
    return -1;
}

static void
s_not_allowed (s_request_t *request, const char *allow)
{
    request->allow = allow;
    s_fail (request, 405, "%s takes %s", request->info->local_uri, allow);
}

//  The one exit point: status, JSON headers, body.
static void
s_send (s_request_t *request)
{
    const char *answer = request->answer ? request->answer : "{\"error\":\"out of memory\"}";
    size_t size = strlen (answer);
    //  Otherwise civetweb would read the rest of the body to keep the connection,
    //  however large the client said it was and however slowly it comes
    if (request->close)
        mg_disable_connection_keep_alive (request->conn);
    if (request->status == 200)
        mg_send_http_ok (request->conn, request->type ? request->type : "application/json",
                         (long long) size);
    else if (mg_response_header_start (request->conn, request->status) == -2) {
        //  civetweb refuses its header functions on a WebSocket upgrade request: the
        //  answers it cannot build for us, the refusal of a client without a token
        //  and of a malformed upgrade
        mg_printf (request->conn,
                   "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: "
                   "%zu\r\n%sConnection: close\r\n\r\n",
                   request->status, mg_get_response_code_text (request->conn, request->status),
                   size,
                   request->challenge ? "WWW-Authenticate: Bearer realm=\"supernode\"\r\n" : "");
    }
    else {
        char length[32];
        snprintf (length, sizeof (length), "%zu", size);
        mg_response_header_add (request->conn, "Content-Type", "application/json", -1);
        mg_response_header_add (request->conn, "Content-Length", length, -1);
        if (request->allow)
            mg_response_header_add (request->conn, "Allow", request->allow, -1);
        if (request->challenge)
            mg_response_header_add (request->conn, "WWW-Authenticate", "Bearer realm=\"supernode\"",
                                    -1);
        mg_response_header_send (request->conn);
    }
    if (!streq (request->info->request_method, "HEAD"))
        mg_write (request->conn, answer, size);
}

//  --------------------------------------------------------------------------
//  Reading the request.

//  Reads the body. A declared length over max_body is refused before reading a
//  byte; a body of unknown length (chunked) is read up to max_body + 1 bytes, just
//  enough to know it is too large. Returns 0, or -1 with the answer set.
static int
s_read_body (s_request_t *request)
{
    size_t max_body = request->gateway->max_body;
    long long declared = request->info->content_length;
    if (declared > (long long) max_body) {
        return s_fail (request, 413, "body larger than %zu bytes", max_body);
    }
    size_t limit = declared >= 0 ? (size_t) declared : max_body + 1;
    size_t capacity = limit < 4096 ? limit : 4096;
    char *body = (char *) malloc (capacity + 1);
    size_t size = 0;
    int bytes = 1;
    //  civetweb's timeout only cuts off a client that sends nothing for that long,
    //  and mg_read returns only once all it was asked for has come, so a client
    //  trickling bytes could hold this thread for ever. The whole body gets one
    //  deadline, checked between reads of at most S_READ_PIECE bytes.
    int64_t deadline = zclock_mono () + request->gateway->timeout;
    bool late = false;
    while (body && size < limit && bytes > 0 && !(late = zclock_mono () > deadline)) {
        if (size == capacity) {
            capacity = capacity * 2 < limit ? capacity * 2 : limit;
            char *grown = (char *) realloc (body, capacity + 1);
            if (!grown)
                free (body);
            body = grown;
        }
        if (body) {
            size_t piece = capacity - size < S_READ_PIECE ? capacity - size : S_READ_PIECE;
            bytes = mg_read (request->conn, body + size, piece);
            if (bytes > 0)
                size += (size_t) bytes;
        }
    }
    if (!body)
        return s_fail (request, 500, "out of memory reading the body");
    if (late) {
        free (body);
        return s_fail (request, 408, "body not received within %d ms", request->gateway->timeout);
    }
    request->body = body;
    request->body[size] = 0;
    request->body_size = size;
    if (size > max_body) {
        return s_fail (request, 413, "body larger than %zu bytes", max_body);
    }
    if (bytes < 0 || (declared >= 0 && size < (size_t) declared))
        return s_fail (request, 400, "body incomplete or badly chunked");
    request->close = false;
    return 0;
}

//  Strings from the URL or a header go into msgpack as they are, and the node refuses
//  a frame that is not UTF-8 without being able to say which request it was.
static bool
s_is_utf8 (const char *text)
{
    json_t *string = json_string (text);
    json_decref (string);
    return string != NULL;
}

//  Copies query parameter name into value. Returns 1 when present and not empty, 0
//  when absent or empty, -1 with the answer set when it is too long.
static int
s_query_param (s_request_t *request, const char *name, char *value, size_t size)
{
    const char *query = request->info->query_string;
    if (!query)
        return 0;
    int length = mg_get_var (query, strlen (query), name, value, size);
    if (length == -2)
        return s_fail (request, 400, "%s: longer than %zu bytes", name, size - 1);
    if (length > 0 && !s_is_utf8 (value))
        return s_fail (request, 400, "%s: not valid UTF-8", name);
    return length > 0 ? 1 : 0;
}

//  The query's limit, an integer from 1 to 1000, into limit. Returns 1 when given,
//  0 when absent, -1 with the answer set when it is not such an integer.
static int
s_query_limit (s_request_t *request, long *limit)
{
    char text[S_PARAM_MAX];
    int given = s_query_param (request, "limit", text, sizeof (text));
    if (given <= 0)
        return given;
    char *end = NULL;
    errno = 0;
    *limit = strtol (text, &end, 10);
    if (!isdigit ((unsigned char) text[0]) || *end || errno || *limit < 1 || *limit > 1000) {
        s_fail (request, 400, "limit: must be an integer from 1 to 1000");
        return -1;
    }
    return 1;
}

//  --------------------------------------------------------------------------
//  Talking to the node.

//  Starts the next request in the thread's buffer: a map of entries members whose
//  first two are op and a fresh rid.
static void
s_begin (s_request_t *request, const char *op, uint32_t entries)
{
    sn_pack_t *pack = request->thread->pack;
    sn_pack_reset (pack);
    sn_pack_map (pack, entries);
    sn_pack_kv_str (pack, "op", op);
    sn_pack_kv_uint (pack, "rid", ++request->thread->rid);
}

//  Sends the request in the thread's buffer and waits for the reply carrying its rid
//  until the deadline. Returns the reply when the node answered 2xx, with the answer's
//  status set to that code; otherwise NULL with the answer set: the node's own error,
//  502 for a reply we cannot read, 504 when the node did not answer in time.
static sn_msg_t *
s_ask_node (s_request_t *request)
{
    s_thread_t *thread = request->thread;
    int timeout = request->gateway->timeout;
    zframe_t *frame = sn_pack_frame (thread->pack);
    if (zframe_send (&frame, thread->dealer, ZFRAME_DONTWAIT)) {
        zframe_destroy (&frame);
        s_fail (request, 503, "node is not accepting requests");
        return NULL;
    }
    int64_t deadline = zclock_mono () + timeout;
    sn_msg_t *reply = NULL;
    while (!reply) {
        int64_t remaining = deadline - zclock_mono ();
        if (remaining <= 0 || !zpoller_wait (thread->poller, (int) remaining)) {
            s_fail (request, 504,
                    "node did not answer within %d ms; the outcome is unknown (a put may "
                    "have been stored: retry through /_put with a key to be sure)",
                    timeout);
            return NULL;
        }
        zmsg_t *msg = zmsg_recv (thread->dealer);
        zframe_t *payload = msg && zmsg_size (msg) == 1 ? zmsg_first (msg) : NULL;
        const char *reason = "empty reply";
        if (payload)
            reply = sn_msg_decode (zframe_data (payload), zframe_size (payload), 0, &reason);
        zmsg_destroy (&msg);
        if (!reply) {
            s_fail (request, 502, "node sent an unreadable reply: %s", reason);
            return NULL;
        }
        uint64_t rid;
        if (!sn_value_uint (sn_value_get (sn_msg_root (reply), "rid"), &rid) || rid != thread->rid)
            sn_msg_destroy (&reply);
    }
    const sn_value_t *root = sn_msg_root (reply);
    uint64_t code;
    if (!sn_reply_code (root, &code)) {
        sn_msg_destroy (&reply);
        s_fail (request, 502, "node sent a reply without a valid code");
        return NULL;
    }
    if (code >= 400) {
        char *error = sn_value_get_strdup (root, "error");
        s_fail (request, (int) code, "%s", error ? error : "node refused the request");
        free (error);
        sn_msg_destroy (&reply);
        return NULL;
    }
    request->status = (int) code;
    return reply;
}

//  What a caller sees of a 2xx reply: every member but rid and code.
static json_t *
s_reply_members (sn_msg_t *reply)
{
    json_t *json = sn_json_from_value (sn_msg_root (reply));
    if (json_is_object (json)) {
        json_object_del (json, "rid");
        json_object_del (json, "code");
        return json;
    }
    json_decref (json);
    return NULL;
}

//  Answers with the reply's members, or 502 when the node sent something odd.
static void
s_answer_reply (s_request_t *request, sn_msg_t *reply)
{
    json_t *json = s_reply_members (reply);
    if (json)
        s_set_json (request, request->status, json);
    else
        s_fail (request, 502, "node sent a reply with no JSON form");
}

//  --------------------------------------------------------------------------
//  Routes.

//  POST /events: the body is the event; the node makes its key.
static void
s_post_event (s_request_t *request)
{
    if (s_read_body (request))
        return;
    char reason[256];
    json_t *event = sn_json_parse (request->body, request->body_size, reason, sizeof (reason));
    if (!event) {
        s_fail (request, 400, "%s", reason);
        return;
    }
    char commit[S_PARAM_MAX] = "";
    int has_commit = s_query_param (request, "commit", commit, sizeof (commit));
    if (has_commit == 0) {
        const char *header = mg_get_header (request->conn, "X-Commit-Level");
        if (header && strlen (header) >= sizeof (commit))
            has_commit =
                s_fail (request, 400, "X-Commit-Level: longer than %zu bytes", sizeof (commit) - 1);
        else if (header && !s_is_utf8 (header))
            has_commit = s_fail (request, 400, "X-Commit-Level: not valid UTF-8");
        else if (header && *header) {
            strcpy (commit, header);
            has_commit = 1;
        }
    }
    if (!json_is_object (event))
        s_fail (request, 400, "event must be a JSON object");
    else if (has_commit >= 0) {
        s_begin (request, "put", has_commit ? 4 : 3);
        sn_pack_str (request->thread->pack, "event");
        if (sn_json_pack (event, request->thread->pack, reason, sizeof (reason)))
            s_fail (request, 400, "event: %s", reason);
        else {
            if (has_commit)
                sn_pack_kv_str (request->thread->pack, "commit", commit);
            sn_msg_t *reply = s_ask_node (request);
            if (reply)
                s_answer_reply (request, reply);
            sn_msg_destroy (&reply);
        }
    }
    json_decref (event);
}

//  POST /_put: AllData's peer interface, {key, event} written under that key.
static void
s_post_keyed (s_request_t *request)
{
    if (s_read_body (request))
        return;
    char reason[256];
    json_t *body = sn_json_parse (request->body, request->body_size, reason, sizeof (reason));
    if (!body) {
        s_fail (request, 400, "%s", reason);
        return;
    }
    json_t *key = json_object_get (body, "key");
    json_t *event = json_object_get (body, "event");
    if (!json_is_object (body))
        s_fail (request, 400, "_put takes a JSON object {key, event}");
    else if (json_object_size (body) != (size_t) (!!key + !!event))
        s_fail (request, 400, "_put takes only key and event");
    else if (!json_is_string (key))
        s_fail (request, 400, "key: must be a string");
    else if (!json_is_object (event))
        s_fail (request, 400, "event must be a JSON object");
    else {
        s_begin (request, "put", 4);
        sn_pack_kv_str (request->thread->pack, "key", json_string_value (key));
        sn_pack_str (request->thread->pack, "event");
        if (sn_json_pack (event, request->thread->pack, reason, sizeof (reason)))
            s_fail (request, 400, "event: %s", reason);
        else {
            sn_msg_t *reply = s_ask_node (request);
            if (reply)
                s_answer_reply (request, reply);
            sn_msg_destroy (&reply);
        }
    }
    json_decref (body);
}

//  GET /events/:key: the stored event itself.
static void
s_get_event (s_request_t *request, const char *encoded)
{
    size_t size = strlen (encoded);
    char *key = (char *) zmalloc (size + 1);
    int length = mg_url_decode (encoded, (int) size, key, (int) size + 1, 0);
    if (length < 0 || strlen (key) != (size_t) length || !s_is_utf8 (key))
        s_fail (request, 400, "key: not a valid URL-encoded UTF-8 string");
    else {
        s_begin (request, "get", 3);
        sn_pack_kv_str (request->thread->pack, "key", key);
        sn_msg_t *reply = s_ask_node (request);
        if (reply) {
            json_t *event = sn_json_from_value (sn_value_get (sn_msg_root (reply), "event"));
            if (event)
                s_set_json (request, request->status, event);
            else
                s_fail (request, 502, "node sent a reply without the event");
        }
        sn_msg_destroy (&reply);
    }
    free (key);
}

//  GET /events?from=&to=&limit=: a page of user events in key order.
static void
s_get_range (s_request_t *request)
{
    char from[S_PARAM_MAX], to[S_PARAM_MAX];
    long limit = 0;
    int has_from = s_query_param (request, "from", from, sizeof (from));
    int has_to = has_from < 0 ? -1 : s_query_param (request, "to", to, sizeof (to));
    int has_limit = has_to < 0 ? -1 : s_query_limit (request, &limit);
    if (has_limit < 0)
        return;
    s_begin (request, "range", 2 + has_from + has_to + has_limit);
    if (has_from)
        sn_pack_kv_str (request->thread->pack, "from", from);
    if (has_to)
        sn_pack_kv_str (request->thread->pack, "to", to);
    if (has_limit)
        sn_pack_kv_uint (request->thread->pack, "limit", (uint64_t) limit);
    sn_msg_t *reply = s_ask_node (request);
    if (reply) {
        json_t *page = s_reply_members (reply);
        if (page && !json_object_get (page, "next"))
            json_object_set_new (page, "next", json_null ());
        if (page && json_is_array (json_object_get (page, "events")))
            s_set_json (request, request->status, page);
        else {
            json_decref (page);
            s_fail (request, 502, "node sent a range reply without events");
        }
    }
    sn_msg_destroy (&reply);
}

//  GET /health: the node answers, so it is up.
static void
s_get_health (s_request_t *request)
{
    s_begin (request, "health", 2);
    sn_msg_t *reply = s_ask_node (request);
    if (reply) {
        json_t *health = json_object ();
        json_object_set_new (health, "status", json_string ("ok"));
        json_t *members = s_reply_members (reply);
        if (members)
            json_object_update_missing (health, members);
        json_decref (members);
        s_set_json (request, request->status, health);
    }
    sn_msg_destroy (&reply);
}

//  GET /cluster: this node's view of the members and the partition table.
static void
s_get_cluster (s_request_t *request)
{
    s_begin (request, "cluster", 2);
    sn_msg_t *reply = s_ask_node (request);
    if (reply)
        s_answer_reply (request, reply);
    sn_msg_destroy (&reply);
}

//  GET /metrics: every source's op asked at once, so a scrape takes one timeout at
//  most however many sources are silent; one that fails or does not answer in time
//  is left out and named in supernode_scrape_errors, the others are still served.
static void
s_get_metrics (s_request_t *request)
{
    s_thread_t *thread = request->thread;
    size_t count = 0;
    while (sn_metrics_source (count))
        count++;
    sn_msg_t **replies = (sn_msg_t **) zmalloc (count * sizeof (sn_msg_t *));
    bool *answered = (bool *) zmalloc (count * sizeof (bool));
    uint64_t first = thread->rid + 1;
    size_t waiting = 0;
    for (size_t index = 0; index < count; index++) {
        s_begin (request, sn_metrics_source_op (index), 2);
        zframe_t *frame = sn_pack_frame (thread->pack);
        if (zframe_send (&frame, thread->dealer, ZFRAME_DONTWAIT))
            zframe_destroy (&frame);
        else
            waiting++;
    }
    int64_t deadline = zclock_mono () + request->gateway->timeout;
    while (waiting > 0) {
        int64_t remaining = deadline - zclock_mono ();
        if (remaining <= 0 || !zpoller_wait (thread->poller, (int) remaining))
            break;
        zmsg_t *msg = zmsg_recv (thread->dealer);
        zframe_t *payload = msg && zmsg_size (msg) == 1 ? zmsg_first (msg) : NULL;
        sn_msg_t *reply =
            payload ? sn_msg_decode (zframe_data (payload), zframe_size (payload), 0, NULL) : NULL;
        zmsg_destroy (&msg);
        uint64_t rid = 0, code = 0;
        const sn_value_t *root = sn_msg_root (reply);
        //  A late answer to an earlier request of this thread is not one of ours
        if (!reply || !sn_value_uint (sn_value_get (root, "rid"), &rid) || rid < first ||
            rid - first >= count || answered[rid - first]) {
            sn_msg_destroy (&reply);
            continue;
        }
        answered[rid - first] = true;
        waiting--;
        if (sn_value_uint (sn_value_get (root, "code"), &code) && code >= 200 && code < 300)
            replies[rid - first] = reply;
        else
            sn_msg_destroy (&reply);
    }
    sn_metrics_t *metrics = sn_metrics_new ();
    for (size_t index = 0; index < count; index++) {
        sn_metrics_set (metrics, sn_metrics_source (index),
                        replies[index] ? s_reply_members (replies[index]) : NULL);
        sn_msg_destroy (&replies[index]);
    }
    free (replies);
    free (answered);
    char *text = sn_metrics_render (metrics);
    sn_metrics_destroy (&metrics);
    if (text) {
        free (request->answer);
        request->answer = text;
        request->status = 200;
        request->type = SN_METRICS_CONTENT_TYPE;
    }
    else
        s_fail (request, 500, "out of memory rendering the metrics");
}

//  --------------------------------------------------------------------------
//  Queue routes (sn_queue): the body's members become the op's, and the node's
//  schema for the op says what is allowed.

//  POST a JSON object as op: {op, rid, ...the object's members}.
static void
s_post_as_op (s_request_t *request, const char *op)
{
    if (s_read_body (request))
        return;
    char reason[256];
    json_t *body = sn_json_parse (request->body, request->body_size, reason, sizeof (reason));
    if (!body) {
        s_fail (request, 400, "%s", reason);
        return;
    }
    json_object_del (body, "op");
    json_object_del (body, "rid");
    if (!json_is_object (body))
        s_fail (request, 400, "%s takes a JSON object", request->info->local_uri);
    else {
        s_begin (request, op, 2 + (uint32_t) json_object_size (body));
        const char *name;
        json_t *value;
        int rc = 0;
        json_object_foreach (body, name, value)
        {
            sn_pack_str (request->thread->pack, name);
            if (rc == 0 && sn_json_pack (value, request->thread->pack, reason, sizeof (reason)))
                rc = s_fail (request, 400, "/%s: %s", name, reason);
        }
        sn_msg_t *reply = rc == 0 ? s_ask_node (request) : NULL;
        if (reply)
            s_answer_reply (request, reply);
        sn_msg_destroy (&reply);
    }
    json_decref (body);
}

//  URL-decode one path segment. Returns a new string, or NULL with the answer set.
static char *
s_path_segment (s_request_t *request, const char *encoded, const char *what)
{
    size_t size = strlen (encoded);
    char *segment = (char *) zmalloc (size + 1);
    int length = mg_url_decode (encoded, (int) size, segment, (int) size + 1, 0);
    if (length < 0 || strlen (segment) != (size_t) length || !s_is_utf8 (segment)) {
        s_fail (request, 400, "%s: not a valid URL-encoded UTF-8 string", what);
        zstr_free (&segment);
    }
    return segment;
}

//  GET /invocations/:id: the invocation and, once finished, its result.
static void
s_get_invocation (s_request_t *request, const char *encoded)
{
    char *id = s_path_segment (request, encoded, "id");
    if (!id)
        return;
    s_begin (request, "invocation", 3);
    sn_pack_kv_str (request->thread->pack, "id", id);
    sn_msg_t *reply = s_ask_node (request);
    if (reply) {
        json_t *invocation = sn_json_from_value (sn_value_get (sn_msg_root (reply), "invocation"));
        if (invocation)
            s_set_json (request, request->status, invocation);
        else
            s_fail (request, 502, "node sent a reply without the invocation");
    }
    sn_msg_destroy (&reply);
    free (id);
}

//  Send op with the body's members (when body) and bucket_id (when id); answer with
//  the reply's bucket, its counts joined by the queue's (when counts).
static void
s_bucket_op (s_request_t *request, const char *op, json_t *body, const char *id, bool counts)
{
    char reason[256];
    if (body) {
        json_object_del (body, "op");
        json_object_del (body, "rid");
        if (id)
            json_object_del (body, "bucket_id");
    }
    s_begin (request, op, 2 + (body ? (uint32_t) json_object_size (body) : 0) + (id != NULL));
    if (id)
        sn_pack_kv_str (request->thread->pack, "bucket_id", id);
    const char *name;
    json_t *value;
    json_object_foreach (body, name, value)
    {
        sn_pack_str (request->thread->pack, name);
        if (sn_json_pack (value, request->thread->pack, reason, sizeof (reason))) {
            s_fail (request, 400, "/%s: %s", name, reason);
            return;
        }
    }
    sn_msg_t *reply = s_ask_node (request);
    if (!reply)
        return;
    int status = request->status;
    json_t *bucket = sn_json_from_value (sn_value_get (sn_msg_root (reply), "bucket"));
    sn_msg_destroy (&reply);
    if (!json_is_object (bucket)) {
        json_decref (bucket);
        s_fail (request, 502, "node sent a reply without the bucket");
        return;
    }
    if (counts) {
        s_begin (request, "bucket.counts", 3);
        sn_pack_kv_str (request->thread->pack, "bucket_id",
                        json_string_value (json_object_get (bucket, "bucket_id")));
        reply = s_ask_node (request);
        if (!reply) {
            json_decref (bucket);
            return;
        }
        json_t *queued = s_reply_members (reply);
        json_t *all = json_object_get (bucket, "counts");
        if (json_is_object (all) && json_is_object (queued))
            json_object_update (all, queued);
        json_decref (queued);
        sn_msg_destroy (&reply);
    }
    s_set_json (request, status, bucket);
}

//  /batch and /batch/:bucket_id
static void
s_route_batch (s_request_t *request, const char *encoded, const char *method)
{
    if (!encoded) {
        if (!streq (method, "POST")) {
            s_not_allowed (request, "POST");
            return;
        }
    }
    else if (!streq (method, "GET") && !streq (method, "PUT") && !streq (method, "DELETE")) {
        s_not_allowed (request, "GET, PUT, DELETE");
        return;
    }
    char *id = encoded ? s_path_segment (request, encoded, "bucket_id") : NULL;
    if (encoded && !id)
        return;
    json_t *body = NULL;
    if (streq (method, "POST") || streq (method, "PUT")) {
        char reason[256];
        if (s_read_body (request)) {
            free (id);
            return;
        }
        body = sn_json_parse (request->body, request->body_size, reason, sizeof (reason));
        if (!body || !json_is_object (body)) {
            s_fail (request, 400, "%s", body ? "the body must be a JSON object" : reason);
            json_decref (body);
            free (id);
            return;
        }
    }
    if (streq (method, "POST"))
        s_bucket_op (request, "batch.create", body, NULL, false);
    else if (streq (method, "PUT"))
        s_bucket_op (request, "batch.update", body, id, false);
    else if (streq (method, "DELETE"))
        s_bucket_op (request, "batch.delete", NULL, id, false);
    else
        s_bucket_op (request, "batch.get", NULL, id, true);
    json_decref (body);
    free (id);
}

//  The queue's paths. Returns true when path is one of them, with the answer set.
static bool
s_route_queue (s_request_t *request, const char *path, const char *method)
{
    const char *id = strncmp (path, "/invocations/", 13) == 0 ? path + 13 : NULL;
    if (streq (path, "/enqueue")) {
        if (streq (method, "POST"))
            s_post_as_op (request, "enqueue");
        else
            s_not_allowed (request, "POST");
    }
    else if (id && *id && !strchr (id, '/')) {
        if (streq (method, "GET"))
            s_get_invocation (request, id);
        else
            s_not_allowed (request, "GET");
    }
    else if (streq (path, "/batch"))
        s_route_batch (request, NULL, method);
    else if (strncmp (path, "/batch/", 7) == 0 && path[7] && !strchr (path + 7, '/'))
        s_route_batch (request, path + 7, method);
    else
        return false;
    return true;
}

//  --------------------------------------------------------------------------
//  Jobs: POST/GET /jobs, GET/DELETE /jobs/:id, GET /tasks/:id.

//  Answers with one member of the reply (the job, the task) as the whole body.
static void
s_answer_member (s_request_t *request, sn_msg_t *reply, const char *name)
{
    json_t *member = sn_json_from_value (sn_value_get (sn_msg_root (reply), name));
    if (json_is_object (member))
        s_set_json (request, request->status, member);
    else {
        json_decref (member);
        s_fail (request, 502, "node sent a reply without the %s", name);
    }
}

//  POST /jobs: the body's members become the members of job.create.
static void
s_post_job (s_request_t *request)
{
    if (s_read_body (request))
        return;
    char reason[256];
    json_t *body = sn_json_parse (request->body, request->body_size, reason, sizeof (reason));
    if (!body) {
        s_fail (request, 400, "%s", reason);
        return;
    }
    if (!json_is_object (body))
        s_fail (request, 400, "a job must be a JSON object");
    else if (json_object_get (body, "op") || json_object_get (body, "rid"))
        s_fail (request, 400, "a job has no op or rid");
    else {
        s_begin (request, "job.create", 2 + (uint32_t) json_object_size (body));
        const char *key;
        json_t *value;
        int rc = 0;
        json_object_foreach (body, key, value)
        {
            sn_pack_str (request->thread->pack, key);
            if (rc == 0 && sn_json_pack (value, request->thread->pack, reason, sizeof (reason)))
                rc = s_fail (request, 400, "%s: %s", key, reason);
        }
        if (rc == 0) {
            sn_msg_t *reply = s_ask_node (request);
            if (reply)
                s_answer_member (request, reply, "job");
            sn_msg_destroy (&reply);
        }
    }
    json_decref (body);
}

//  GET /jobs?status=&limit=&before=: newest first.
static void
s_get_jobs (s_request_t *request)
{
    char status[S_PARAM_MAX], before[S_PARAM_MAX];
    long limit = 0;
    int has_status = s_query_param (request, "status", status, sizeof (status));
    int has_before = has_status < 0 ? -1 : s_query_param (request, "before", before, S_PARAM_MAX);
    int has_limit = has_before < 0 ? -1 : s_query_limit (request, &limit);
    if (has_limit < 0)
        return;
    s_begin (request, "job.list", 2 + has_status + has_before + has_limit);
    if (has_status)
        sn_pack_kv_str (request->thread->pack, "status", status);
    if (has_before)
        sn_pack_kv_str (request->thread->pack, "before", before);
    if (has_limit)
        sn_pack_kv_uint (request->thread->pack, "limit", (uint64_t) limit);
    sn_msg_t *reply = s_ask_node (request);
    if (reply)
        s_answer_reply (request, reply);
    sn_msg_destroy (&reply);
}

//  GET /jobs/:id, DELETE /jobs/:id and GET /tasks/:id: op on one id of the path.
static void
s_job_by_id (s_request_t *request, const char *op, const char *encoded, const char *member)
{
    char id[S_PARAM_MAX];
    int length = mg_url_decode (encoded, (int) strlen (encoded), id, (int) sizeof (id), 0);
    if (length < 0 || strlen (id) != (size_t) length || !s_is_utf8 (id)) {
        s_fail (request, 400, "id: not a valid URL-encoded UTF-8 string of at most %d bytes",
                S_PARAM_MAX - 1);
        return;
    }
    bool embed = false;
    if (streq (op, "job.get")) {
        char collection[S_PARAM_MAX];
        int has = s_query_param (request, "collection", collection, sizeof (collection));
        if (has < 0)
            return;
        if (has && !streq (collection, "true") && !streq (collection, "false")) {
            s_fail (request, 400, "collection: must be true or false");
            return;
        }
        embed = has && streq (collection, "true");
    }
    s_begin (request, op, 3 + embed);
    sn_pack_kv_str (request->thread->pack, "id", id);
    if (embed) {
        sn_pack_str (request->thread->pack, "collection");
        sn_pack_bool (request->thread->pack, true);
    }
    sn_msg_t *reply = s_ask_node (request);
    if (reply)
        s_answer_member (request, reply, member);
    sn_msg_destroy (&reply);
}

//  The job routes. Returns true when path is one of them (the answer is set).
static bool
s_route_jobs (s_request_t *request, const char *path, const char *method)
{
    const char *id = strncmp (path, "/jobs/", 6) == 0 ? path + 6 : NULL;
    const char *task = strncmp (path, "/tasks/", 7) == 0 ? path + 7 : NULL;
    size_t id_len = id ? strcspn (id, "/") : 0;
    if (streq (path, "/jobs")) {
        if (streq (method, "POST"))
            s_post_job (request);
        else if (streq (method, "GET"))
            s_get_jobs (request);
        else
            s_not_allowed (request, "GET, POST");
    }
    else if (streq (path, "/jobs/ws") || (id && id_len > 0 && streq (id + id_len, "/ws")))
        s_fail (request, 400, "%s is a WebSocket: ask with Upgrade: websocket", path);
    else if (id && id_len > 0 && !id[id_len]) {
        if (streq (method, "GET"))
            s_job_by_id (request, "job.get", id, "job");
        else if (streq (method, "DELETE"))
            s_job_by_id (request, "job.cancel", id, "job");
        else
            s_not_allowed (request, "GET, DELETE");
    }
    else if (task && *task && !strchr (task, '/')) {
        if (streq (method, "GET"))
            s_job_by_id (request, "task.get", task, "task");
        else
            s_not_allowed (request, "GET");
    }
    else
        return false;
    return true;
}

//  --------------------------------------------------------------------------
//  Bearer tokens.

//  True when value holds word, in any case.
static bool
s_holds (const char *value, const char *word)
{
    size_t size = strlen (word);
    for (; value && *value; value++)
        if (strncasecmp (value, word, size) == 0)
            return true;
    return false;
}

//  True for a WebSocket upgrade civetweb will serve (the test it makes itself: a
//  GET with Connection naming upgrade and Upgrade naming websocket) on a path of
//  ours: only such a request may carry its token in the query.
static bool
s_websocket (const struct mg_connection *conn)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *connection = mg_get_header (conn, "Connection");
    const char *upgrade = mg_get_header (conn, "Upgrade");
    const char *path = info->local_uri;
    size_t size = strlen (path);
    bool ours = streq (path, "/jobs/ws") ||
                (strncmp (path, "/jobs/", 6) == 0 && size > 9 && streq (path + size - 3, "/ws"));
    return streq (info->request_method, "GET") && s_holds (connection, "upgrade") &&
           s_holds (upgrade, "websocket") && ours;
}

//  civetweb answers a WebSocket upgrade without a key, or of a version other than
//  13, with an error page and no status line (its header functions refuse an
//  upgrade request): such an upgrade, on any path, is refused here instead.
static bool
s_bad_upgrade (s_request_t *request)
{
    struct mg_connection *conn = request->conn;
    if (!streq (request->info->request_method, "GET") ||
        !s_holds (mg_get_header (conn, "Connection"), "upgrade") ||
        !s_holds (mg_get_header (conn, "Upgrade"), "websocket"))
        return false;
    const char *key = mg_get_header (conn, "Sec-WebSocket-Key");
    const char *version = mg_get_header (conn, "Sec-WebSocket-Version");
    if (!key || !*key)
        s_fail (request, 400, "a WebSocket upgrade needs Sec-WebSocket-Key");
    else if (!version || !streq (version, "13"))
        s_fail (request, 426, "WebSocket version 13 only");
    else
        return false;
    request->close = true;
    return true;
}

//  The token a request presents: the Authorization header's value, or for a
//  WebSocket (a browser cannot give one a header) the access_token query
//  parameter, URL-decoded into buffer. NULL when it presents none.
static const char *
s_presented (const struct mg_connection *conn, char *buffer, size_t size, bool *header)
{
    const char *authorization = mg_get_header (conn, "Authorization");
    *header = authorization != NULL;
    if (authorization || !s_websocket (conn))
        return authorization;
    const char *query = mg_get_request_info (conn)->query_string;
    //  -1 when absent, -2 when longer than any token
    int length = query ? mg_get_var (query, strlen (query), "access_token", buffer, size) : -1;
    return length >= 0 || length == -2 ? buffer : NULL;
}

//  Answers a request without a valid token: 401, with the scheme wanted. Returns
//  true when the request may go on.
static bool
s_authorized (s_request_t *request)
{
    sn_tokens_t *tokens = request->gateway->tokens;
    char buffer[SN_TOKEN_MAX + 1] = "";
    bool header = false;
    const char *token = s_presented (request->conn, buffer, sizeof buffer, &header);
    bool allowed = header ? sn_tokens_allow_header (tokens, token)
                          : token && sn_tokens_allow (tokens, token, strlen (token));
    explicit_bzero (buffer, sizeof buffer);
    if (allowed)
        return true;
    request->challenge = true;
    if (token)
        s_fail (request, 401, "the bearer token is not one this node accepts");
    else
        s_fail (request, 401,
                "this node asks for a bearer token: send Authorization: "
                "Bearer <token>");
    return false;
}

//  --------------------------------------------------------------------------
//  Jobs over WebSocket: GET /jobs/:id/ws and GET /jobs/ws.
//
//  Each connection gets a writer thread with a SUB to the dispatch actor's XPUB.
//  The dispatch answers the subscription with a snapshot, then publishes every
//  change; the writer checks the sequence numbers and, at the first gap (the XPUB
//  dropped updates because this client is slow), closes the connection: a slow
//  client loses its connection, never slows the node. Frames from clients carry
//  nothing we need and are bounded.

//  Updates queued in one writer's SUB before the XPUB drops them.
#define S_WS_QUEUE 1000

//  Largest frame a client may send.
#define S_WS_FRAME_MAX 1024

//  WebSocket close codes (RFC 6455).
#define S_WS_POLICY   1008
#define S_WS_TOO_BIG  1009
#define S_WS_NOT_HERE 4404

typedef struct {
    sn_gateway_t *gateway;      //  read-only configuration
    struct mg_connection *conn; //  the WebSocket
    int handle;                 //  its socket, or -1 when it was not found
    char topic[40];             //  the job id, or "" for every job
    zactor_t *writer;           //  sends updates to the client; NULL until ready
} s_ws_t;

//  The socket of a connection: civetweb does not give it, and the writer needs it
//  to cut off a client whose stream it can no longer write whole (a write that
//  timed out may have sent half a frame). Found by its two ends among our sockets.
static int
s_ws_socket (const struct mg_connection *conn)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    DIR *fds = opendir ("/proc/self/fd");
    int found = -1;
    struct dirent *entry;
    while (fds && found < 0 && (entry = readdir (fds))) {
        int handle = atoi (entry->d_name);
        struct sockaddr_storage local, remote;
        socklen_t local_size = sizeof (local), remote_size = sizeof (remote);
        if (!isdigit ((unsigned char) entry->d_name[0]) || handle == dirfd (fds) ||
            getsockname (handle, (struct sockaddr *) &local, &local_size) ||
            getpeername (handle, (struct sockaddr *) &remote, &remote_size))
            continue;
        char host[64], port[16], local_port[16];
        if (getnameinfo ((struct sockaddr *) &remote, remote_size, host, sizeof (host), port,
                         sizeof (port), NI_NUMERICHOST | NI_NUMERICSERV) ||
            getnameinfo ((struct sockaddr *) &local, local_size, NULL, 0, local_port,
                         sizeof (local_port), NI_NUMERICSERV))
            continue;
        if (streq (host, info->remote_addr) && atoi (port) == info->remote_port &&
            atoi (local_port) == info->server_port)
            found = handle;
    }
    if (fds)
        closedir (fds);
    return found;
}

//  Ends the connection from the writer: civetweb's reading thread sees it closed,
//  and calls s_ws_closed.
static void
s_ws_cut (s_ws_t *ws)
{
    if (ws->handle >= 0)
        shutdown (ws->handle, SHUT_RDWR);
}

//  Sends a close frame with code and reason.
static void
s_ws_close (struct mg_connection *conn, int code, const char *reason)
{
    char payload[125];
    payload[0] = (char) (code >> 8);
    payload[1] = (char) (code & 0xff);
    size_t size = strlen (reason);
    size = size > sizeof (payload) - 2 ? sizeof (payload) - 2 : size;
    memcpy (payload + 2, reason, size);
    mg_websocket_write (conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, payload, size + 2);
}

//  Checks one published message against what the writer has seen. Returns 1 to
//  send the body, 0 to skip it, -1 on a gap.
static int
s_ws_accept (s_ws_t *ws, zframe_t *topic, zframe_t *meta, bool *started, uint64_t *last)
{
    sn_msg_t *decoded = sn_msg_decode_trusted (zframe_data (meta), zframe_size (meta), NULL);
    const sn_value_t *root = decoded ? sn_msg_root (decoded) : NULL;
    uint64_t seq = 0;
    bool snapshot = false, tick = false;
    sn_value_uint (sn_value_get (root, *ws->topic ? "j" : "g"), &seq);
    sn_value_bool (sn_value_get (root, "snapshot"), &snapshot);
    sn_value_bool (sn_value_get (root, "tick"), &tick);
    sn_msg_destroy (&decoded);
    int verdict = 0;
    if (tick)
        verdict = *started && seq != *last ? -1 : 0;
    else if (snapshot) {
        //  Snapshots for other subscribers come on their topics, and the job's
        //  subscribers see each other's: only the first one on our topic is ours
        if (!*started && zframe_streq (topic, ws->topic)) {
            *started = true;
            *last = seq;
            verdict = 1;
        }
    }
    else if (*started) {
        verdict = seq == *last + 1 ? 1 : -1;
        *last = seq;
    }
    return verdict;
}

static void
s_ws_writer (zsock_t *pipe, void *args)
{
    s_ws_t *ws = (s_ws_t *) args;
    zsock_t *sub = zsock_new (ZMQ_SUB);
    zsock_set_rcvhwm (sub, S_WS_QUEUE);
    zsock_set_linger (sub, 0);
    zsock_set_subscribe (sub, ws->topic);
    zsock_connect (sub, "%s", ws->gateway->jobs);
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, sub, NULL);
    bool started = false, open = true;
    uint64_t last = 0;
    while (true) {
        zsock_t *which = (zsock_t *) zpoller_wait (poller, -1);
        if (which != sub)
            break;
        zmsg_t *msg = zmsg_recv (sub);
        if (!msg || zmsg_size (msg) != 3 || !open) {
            zmsg_destroy (&msg);
            continue;
        }
        zframe_t *topic = zmsg_first (msg);
        zframe_t *meta = zmsg_next (msg);
        zframe_t *body = zmsg_next (msg);
        //  A subscription to "" takes every topic; one to a job id takes ids that
        //  begin with it, and every job id has the same length
        bool ours = !*ws->topic || zframe_streq (topic, ws->topic);
        int verdict = ours ? s_ws_accept (ws, topic, meta, &started, &last) : 0;
        if (verdict < 0) {
            if (ws->gateway->verbose)
                zsys_info ("sn_gateway: WebSocket for '%s' fell behind: closing", ws->topic);
            s_ws_close (ws->conn, S_WS_POLICY, "too slow: updates were dropped");
            s_ws_cut (ws);
            open = false;
        }
        else if (verdict > 0) {
            sn_msg_t *decoded =
                sn_msg_decode_trusted (zframe_data (body), zframe_size (body), NULL);
            const sn_value_t *root = decoded ? sn_msg_root (decoded) : NULL;
            char *text = sn_json_text (root);
            //  An error ends the stream of one job (unknown, or gone from memory);
            //  the subscribers of every job are not shown a job gone
            bool error = sn_value_get (root, "error") != NULL;
            if (error && *ws->topic) {
                mg_websocket_write (ws->conn, MG_WEBSOCKET_OPCODE_TEXT, text, strlen (text));
                s_ws_close (ws->conn, S_WS_NOT_HERE, "no such job");
                open = false;
            }
            else if (!error && text &&
                     mg_websocket_write (ws->conn, MG_WEBSOCKET_OPCODE_TEXT, text, strlen (text)) <=
                         0) {
                //  The client read nothing for the whole timeout
                if (ws->gateway->verbose)
                    zsys_info ("sn_gateway: WebSocket for '%s' stopped reading", ws->topic);
                s_ws_cut (ws);
                open = false;
            }
            free (text);
            sn_msg_destroy (&decoded);
        }
        zmsg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&sub);
}

//  Before the handshake: /jobs/ws or /jobs/:id/ws, else refused.
static int
s_ws_connect (const struct mg_connection *conn, void *cbdata)
{
    sn_gateway_t *self = (sn_gateway_t *) cbdata;
    const char *path = mg_get_request_info (conn)->local_uri;
    const char *id = strncmp (path, "/jobs/", 6) == 0 ? path + 6 : "";
    size_t id_len = strspn (id, "0123456789abcdefghijklmnopqrstuvwxyz");
    bool all = streq (path, "/jobs/ws");
    if (!self->jobs || (!all && (id_len == 0 || id_len >= 40 || !streq (id + id_len, "/ws"))))
        return 1;
    s_ws_t *ws = (s_ws_t *) zmalloc (sizeof (s_ws_t));
    ws->gateway = self;
    if (!all)
        memcpy (ws->topic, id, id_len);
    mg_set_user_connection_data (conn, ws);
    return 0;
}

static void
s_ws_ready (struct mg_connection *conn, void *cbdata)
{
    s_ws_t *ws = (s_ws_t *) mg_get_user_connection_data (conn);
    if (ws) {
        ws->conn = conn;
        ws->handle = s_ws_socket (conn);
        if (ws->gateway->verbose)
            zsys_info ("sn_gateway: WebSocket for '%s' on socket %d", ws->topic, ws->handle);
        ws->writer = zactor_new (s_ws_writer, ws);
    }
}

static int
s_ws_data (struct mg_connection *conn, int bits, char *data, size_t size, void *cbdata)
{
    int opcode = bits & 0x0f;
    if (opcode == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE)
        return 0;
    if (size > S_WS_FRAME_MAX) {
        s_ws_close (conn, S_WS_TOO_BIG, "frames from clients are at most 1024 bytes");
        return 0;
    }
    if (opcode == MG_WEBSOCKET_OPCODE_PING)
        mg_websocket_write (conn, MG_WEBSOCKET_OPCODE_PONG, data, size);
    return 1;
}

static void
s_ws_closed (const struct mg_connection *conn, void *cbdata)
{
    s_ws_t *ws = (s_ws_t *) mg_get_user_connection_data (conn);
    if (ws) {
        zactor_destroy (&ws->writer);
        free (ws);
        mg_set_user_connection_data (conn, NULL);
    }
}

//  Splits the path and dispatches on the method. Sets the answer, always.
static void
s_route (s_request_t *request)
{
    const char *path = request->info->local_uri;
    const char *method = request->info->request_method;
    const char *key = strncmp (path, "/events/", 8) == 0 ? path + 8 : NULL;
    if (streq (path, "/events")) {
        if (streq (method, "POST"))
            s_post_event (request);
        else if (streq (method, "GET"))
            s_get_range (request);
        else
            s_not_allowed (request, "GET, POST");
    }
    else if (key && *key && !strchr (key, '/')) {
        if (streq (method, "GET"))
            s_get_event (request, key);
        else
            s_not_allowed (request, "GET");
    }
    else if (streq (path, "/_put")) {
        if (streq (method, "POST"))
            s_post_keyed (request);
        else
            s_not_allowed (request, "POST");
    }
    else if (streq (path, "/health")) {
        if (streq (method, "GET"))
            s_get_health (request);
        else
            s_not_allowed (request, "GET");
    }
    else if (streq (path, "/cluster")) {
        if (streq (method, "GET"))
            s_get_cluster (request);
        else
            s_not_allowed (request, "GET");
    }
    else if (streq (path, "/metrics")) {
        if (streq (method, "GET"))
            s_get_metrics (request);
        else
            s_not_allowed (request, "GET");
    }
    else if (!s_route_queue (request, path, method) && !s_route_jobs (request, path, method))
        s_fail (request, 404, "no route for %s", path);
}

//  The one request handler, on "/": civetweb hands it every path.
static int
s_handle_request (struct mg_connection *conn, void *cbdata)
{
    s_request_t request = {.gateway = (sn_gateway_t *) cbdata,
                           .thread = (s_thread_t *) mg_get_thread_pointer (conn),
                           .conn = conn,
                           .info = mg_get_request_info (conn)};
    //  Until s_read_body has read all of it
    request.close =
        request.info->content_length > 0 || mg_get_header (conn, "Transfer-Encoding") != NULL;
    if (!request.thread)
        s_fail (&request, 503, "this gateway thread has no link to the node");
    else
        s_route (&request);
    s_send (&request);
    if (request.gateway->verbose)
        zsys_debug ("sn_gateway: %s %s -> %d", request.info->request_method,
                    request.info->local_uri, request.status);
    free (request.body);
    free (request.answer);
    return request.status;
}

//  --------------------------------------------------------------------------
//  civetweb callbacks.

//  Runs before civetweb routes any request, WebSocket upgrades included, so that a
//  request without a valid token reaches no handler, and a malformed upgrade gets
//  a status line. Returns 0 to let it through, or the status of the answer sent
//  here.
static int
s_begin_request (struct mg_connection *conn)
{
    sn_gateway_t *self = (sn_gateway_t *) mg_get_user_data (mg_get_context (conn));
    const struct mg_request_info *info = mg_get_request_info (conn);
    s_request_t request = {.gateway = self, .conn = conn, .info = info, .close = true};
    //  GET /health stays open for load balancers' probes: it tells only that the
    //  node is up, its name and how many events it holds
    bool open = !self->tokens ||
                (streq (info->local_uri, "/health") && streq (info->request_method, "GET"));
    if ((open || s_authorized (&request)) && !s_bad_upgrade (&request))
        return 0;
    s_send (&request);
    free (request.answer);
    return request.status;
}

//  Runs on each new civetweb thread: a worker gets its own DEALER to the node. When
//  that fails the thread still runs, and answers 503.
static void *
s_init_thread (const struct mg_context *ctx, int thread_type)
{
    if (thread_type != S_WORKER_THREAD)
        return NULL;
    sn_gateway_t *self = (sn_gateway_t *) mg_get_user_data (ctx);
    s_thread_t *thread = (s_thread_t *) zmalloc (sizeof (s_thread_t));
    thread->dealer = zsock_new (ZMQ_DEALER);
    if (thread->dealer) {
        zsock_set_linger (thread->dealer, 0);
        if (zsock_connect (thread->dealer, "%s", self->node)) {
            zsys_error ("sn_gateway: cannot connect to %s", self->node);
            zsock_destroy (&thread->dealer);
        }
    }
    if (!thread->dealer) {
        free (thread);
        return NULL;
    }
    thread->poller = zpoller_new (thread->dealer, NULL);
    thread->pack = sn_pack_new ();
    return thread;
}

static void
s_exit_thread (const struct mg_context *ctx, int thread_type, void *pointer)
{
    s_thread_t *thread = (s_thread_t *) pointer;
    if (thread) {
        zpoller_destroy (&thread->poller);
        zsock_destroy (&thread->dealer);
        sn_pack_destroy (&thread->pack);
        free (thread);
    }
}

//  Runs inside mg_start2 once the listening sockets are bound and before any
//  thread serves a connection: handlers set after mg_start2 returned would leave a
//  moment in which an early request gets civetweb's own 404 page.
static void
s_init_context (const struct mg_context *ctx)
{
    sn_gateway_t *self = (sn_gateway_t *) mg_get_user_data (ctx);
    struct mg_context *context = (struct mg_context *) ctx;
    mg_set_request_handler (context, "/", s_handle_request, self);
    mg_set_websocket_handler (context, "/jobs", s_ws_connect, s_ws_ready, s_ws_data, s_ws_closed,
                              self);
}

//  While mg_start2 runs, civetweb's complaints say why it cannot start (it reports
//  only "Failed to setup server ports" itself); afterwards they are logged.
static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    sn_gateway_t *self = (sn_gateway_t *) mg_get_user_data (mg_get_context (conn));
    if (self && pthread_equal (self->starter, pthread_self ())) {
        if (!self->start_error[0])
            snprintf (self->start_error, sizeof (self->start_error), "%s", message);
    }
    else if (self && self->verbose)
        zsys_warning ("sn_gateway: %s", message);
    return 1;
}

//  Loads the two libraries of gateway/tls/, whose sonames are libssl.so and
//  libcrypto.so, the names civetweb dlopens: it then finds them already loaded,
//  and through them OpenSSL 3 with the one function it lacks there (see
//  gateway/tls/sn_sslcompat.c). Installed, they are in lib/supernode beside the
//  binary's bin; in the build tree, in its sslcompat directory. Only a node that
//  serves HTTPS loads them, and they stay loaded. Returns 0, or -1 with the reason.
static int
s_load_openssl (char *error, size_t size)
{
    char self[PATH_MAX];
    ssize_t length = readlink ("/proc/self/exe", self, sizeof self - 1);
    self[length > 0 ? length : 0] = 0;
    char *installed = zsys_sprintf ("%s/%s", dirname (self), SN_SSLCOMPAT_FROM_BIN);
    const char *places[] = {installed, SN_SSLCOMPAT_BUILD_DIR};
    bool loaded = false;
    for (size_t index = 0; index < 2 && !loaded; index++) {
        char *crypto = zsys_sprintf ("%s/libcrypto.so", places[index]);
        char *ssl = zsys_sprintf ("%s/libssl.so", places[index]);
        loaded = dlopen (crypto, RTLD_NOW | RTLD_GLOBAL) && dlopen (ssl, RTLD_NOW | RTLD_GLOBAL);
        zstr_free (&crypto);
        zstr_free (&ssl);
    }
    if (!loaded)
        snprintf (error, size,
                  "cannot serve HTTPS: libssl.so and libcrypto.so of supernode "
                  "are not in %s: %s",
                  installed, dlerror ());
    zstr_free (&installed);
    return loaded ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  Public API.

sn_gateway_t *
sn_gateway_new (const sn_gateway_config_t *config, char *error, size_t size)
{
    assert (config && config->listen && config->node);
    if (config->threads < 1 || config->timeout < 1 || config->max_body < 1) {
        snprintf (error, size, "threads, timeout and max_body must be positive");
        return NULL;
    }
    zsys_init ();
    if (config->cert) {
        if (s_load_openssl (error, size))
            return NULL;
        if (!(mg_init_library (MG_FEATURES_TLS) & MG_FEATURES_TLS)) {
            mg_exit_library ();
            snprintf (error, size,
                      "cannot serve HTTPS: civetweb could not set up OpenSSL 3 (libssl.so.3)");
            return NULL;
        }
    }
    else
        mg_init_library (0);
    sn_gateway_t *self = (sn_gateway_t *) zmalloc (sizeof (sn_gateway_t));
    self->node = strdup (config->node);
    self->max_body = config->max_body;
    self->timeout = config->timeout;
    self->verbose = config->verbose;
    self->jobs = config->jobs ? strdup (config->jobs) : NULL;
    self->starter = pthread_self ();
    if (config->tokens) {
        self->tokens = sn_tokens_load (config->tokens, error, size);
        if (!self->tokens) {
            sn_gateway_destroy (&self);
            return NULL;
        }
    }

    char threads[16], timeout[16];
    snprintf (threads, sizeof (threads), "%d", config->threads);
    //  A client that sends nothing for the timeout is given up on, as is one whose
    //  whole body takes longer (s_read_body): no client keeps a thread for ever.
    snprintf (timeout, sizeof (timeout), "%d", config->timeout);
    //  Keys travel percent-encoded in the path: it is decoded after splitting, so
    //  that an encoded '/' stays inside the key
    //  With a certificate the port speaks HTTPS only (civetweb's "s" suffix)
    char *listen = zsys_sprintf ("%s%s", config->listen, config->cert ? "s" : "");
    const char *options[] = {
        "listening_ports", listen, "num_threads", threads, "request_timeout_ms", timeout,
        "enable_keep_alive", "yes", "decode_url", "no",
        //  Headers and body go out in separate writes: without
        //  this every answer waits for the client's delayed ACK
        "tcp_nodelay", "1",
        //  A WebSocket waiting for updates is idle, not dead
        "enable_websocket_ping_pong", "yes",
        //  Without a certificate the list ends here; with one,
        //  TLS 1.2 and later only (civetweb's 4)
        config->cert ? "ssl_certificate" : NULL, config->cert, "ssl_protocol_version", "4", NULL};
    struct mg_callbacks callbacks = {0};
    callbacks.init_thread = s_init_thread;
    callbacks.exit_thread = s_exit_thread;
    callbacks.log_message = s_log_message;
    callbacks.init_context = s_init_context;
    callbacks.begin_request = s_begin_request;
    struct mg_init_data init = {
        .callbacks = &callbacks, .user_data = self, .configuration_options = options};
    char reason[256] = "";
    unsigned code = 0;
    struct mg_error_data failure = {
        .code = &code, .text = reason, .text_buffer_size = sizeof (reason)};
    self->ctx = mg_start2 (&init, &failure);
    zstr_free (&listen);
    if (!self->ctx) {
        snprintf (error, size, "cannot listen on %s: %s", config->listen,
                  self->start_error[0] ? self->start_error : reason);
        sn_gateway_destroy (&self);
        return NULL;
    }
    if (self->verbose)
        zsys_info ("sn_gateway: listening on %s%s, %d threads, %zu bearer tokens", config->listen,
                   config->cert ? " (HTTPS)" : "", config->threads,
                   self->tokens ? sn_tokens_size (self->tokens) : 0);
    return self;
}

//  civetweb's listening thread sees the stop flag only between its polls, which
//  last up to a second. While mg_stop waits for that thread, a connection of our
//  own to each listening port wakes it at once, and the node stops in
//  milliseconds. A listener bound to an address other than loopback or any is not
//  reached this way and stops at its next poll, as it would anyway.
typedef struct {
    struct mg_server_port ports[8]; //  what civetweb listens on
    int count;                      //  entries in ports
    int stopped;                    //  set, atomically, once mg_stop has returned
} s_waker_t;

static void
s_knock (const struct mg_server_port *port)
{
    struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons ((uint16_t) port->port)};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons ((uint16_t) port->port)};
    in4.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    in6.sin6_addr = in6addr_loopback;
    bool v4 = port->protocol & 1;
    int fd = socket (v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    //  Refused or not, the attempt is all that is needed
    if (v4)
        (void) !connect (fd, (struct sockaddr *) &in4, sizeof in4);
    else
        (void) !connect (fd, (struct sockaddr *) &in6, sizeof in6);
    close (fd);
}

static void *
s_waker (void *args)
{
    s_waker_t *waker = (s_waker_t *) args;
    //  Bounded: a listener out of reach costs a second of polls at most
    for (int round = 0; round < 100 && !__atomic_load_n (&waker->stopped, __ATOMIC_ACQUIRE);
         round++) {
        for (int index = 0; index < waker->count; index++)
            s_knock (&waker->ports[index]);
        usleep (10 * 1000);
    }
    return NULL;
}

//  mg_stop, woken.
static void
s_stop (struct mg_context *ctx)
{
    s_waker_t waker = {.count = 0};
    waker.count = mg_get_server_ports (ctx, 8, waker.ports);
    pthread_t thread;
    bool started = waker.count > 0 && pthread_create (&thread, NULL, s_waker, &waker) == 0;
    mg_stop (ctx);
    if (started) {
        __atomic_store_n (&waker.stopped, 1, __ATOMIC_RELEASE);
        pthread_join (thread, NULL);
    }
}

void
sn_gateway_destroy (sn_gateway_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_gateway_t *self = *self_p;
        if (self->ctx)
            s_stop (self->ctx);
        mg_exit_library ();
        free (self->node);
        free (self->jobs);
        sn_tokens_destroy (&self->tokens);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Selftest: a fake node behind a ROUTER, and real HTTP over TCP.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

//  The fake node answers like the store would, from canned data:
//    put      key "conflict" -> 409, "broken" -> 500, else 201 {key}; without a key
//             the key made is "evt-<commit level or none>"
//    get      key "missing" -> 404; "silent" is answered only when the next request
//             comes, too late, with event {key: "late"}; else 200 with event {key}
//    range    one event {from, to}; next is "k2" when limit is 1, else nil
//    health   200 {name: "fake", events: 1}
//    batch.stats   answered only once dispatch.stats comes: 200 {buckets: 7}
//    queue.stats   never answered
static void
s_fake_answer (const sn_value_t *request, sn_pack_t *reply, bool *silent)
{
    uint64_t rid = 0;
    sn_value_uint (sn_value_get (request, "rid"), &rid);
    const sn_value_t *op = sn_value_get (request, "op");
    char *key = sn_value_get_strdup (request, "key");
    sn_pack_reset (reply);
    if (sn_value_streq (op, "put") && sn_value_is (sn_value_get (request, "event"), SN_TYPE_MAP)) {
        char *commit = sn_value_get_strdup (request, "commit");
        if (key && streq (key, "conflict"))
            sn_pack_error (reply, rid, 409, "key %s holds a different event", key);
        else if (key && streq (key, "broken"))
            sn_pack_error (reply, rid, 500, "storage failed");
        else {
            char *made = key ? strdup (key) : zsys_sprintf ("evt-%s", commit ? commit : "none");
            sn_pack_map (reply, 3);
            sn_pack_kv_uint (reply, "rid", rid);
            sn_pack_kv_uint (reply, "code", 201);
            sn_pack_kv_str (reply, "key", made);
            free (made);
        }
        free (commit);
    }
    else if (sn_value_streq (op, "get") && key) {
        if (streq (key, "missing"))
            sn_pack_error (reply, rid, 404, "no event with key %s", key);
        else if (streq (key, "silent"))
            *silent = true;
        else {
            sn_pack_map (reply, 4);
            sn_pack_kv_uint (reply, "rid", rid);
            sn_pack_kv_uint (reply, "code", 200);
            sn_pack_kv_str (reply, "key", key);
            sn_pack_str (reply, "event");
            sn_pack_map (reply, 1);
            sn_pack_kv_str (reply, "key", key);
        }
    }
    else if (sn_value_streq (op, "range")) {
        uint64_t limit = 100;
        sn_value_uint (sn_value_get (request, "limit"), &limit);
        char *from = sn_value_get_strdup (request, "from");
        char *to = sn_value_get_strdup (request, "to");
        sn_pack_map (reply, 4);
        sn_pack_kv_uint (reply, "rid", rid);
        sn_pack_kv_uint (reply, "code", 200);
        sn_pack_str (reply, "events");
        sn_pack_array (reply, 1);
        sn_pack_map (reply, 2);
        sn_pack_kv_str (reply, "key", "k1");
        sn_pack_str (reply, "event");
        sn_pack_map (reply, 2);
        sn_pack_kv_str (reply, "from", from ? from : "");
        sn_pack_kv_str (reply, "to", to ? to : "");
        sn_pack_str (reply, "next");
        if (limit == 1)
            sn_pack_str (reply, "k2");
        else
            sn_pack_nil (reply);
        free (from);
        free (to);
    }
    else if (sn_value_streq (op, "health")) {
        sn_pack_map (reply, 4);
        sn_pack_kv_uint (reply, "rid", rid);
        sn_pack_kv_uint (reply, "code", 200);
        sn_pack_kv_str (reply, "name", "fake");
        sn_pack_kv_uint (reply, "events", 1);
    }
    else if (sn_value_streq (op, "cluster")) {
        sn_pack_map (reply, 4);
        sn_pack_kv_uint (reply, "rid", rid);
        sn_pack_kv_uint (reply, "code", 200);
        sn_pack_kv_str (reply, "name", "fake");
        sn_pack_str (reply, "members");
        sn_pack_array (reply, 0);
    }
    else
        sn_pack_error (reply, rid, 500, "fake node: unexpected request");
    free (key);
}

static void
s_fake_node (zsock_t *pipe, void *args)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    int rc = zsock_bind (router, "%s", (const char *) args);
    assert (rc == 0);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    sn_pack_t *reply = sn_pack_new ();
    uint64_t late_rid = 0;          //  rid of the request left unanswered, or 0
    zframe_t *late_identity = NULL; //  who sent it
    uint64_t held_rid = 0;          //  rid of a batch.stats waiting for dispatch.stats
    zframe_t *held_identity = NULL; //  who sent it
    zsock_signal (pipe, 0);
    while (true) {
        zsock_t *which = (zsock_t *) zpoller_wait (poller, -1);
        if (which == router) {
            zmsg_t *msg = zmsg_recv (router);
            zframe_t *identity = zmsg_pop (msg);
            zframe_t *payload = zmsg_pop (msg);
            if (late_identity) {
                sn_pack_reset (reply);
                sn_pack_map (reply, 3);
                sn_pack_kv_uint (reply, "rid", late_rid);
                sn_pack_kv_uint (reply, "code", 200);
                sn_pack_str (reply, "event");
                sn_pack_map (reply, 1);
                sn_pack_kv_str (reply, "key", "late");
                zframe_t *late = sn_pack_frame (reply);
                zframe_send (&late_identity, router, ZFRAME_MORE);
                zframe_send (&late, router, 0);
            }
            const char *reason = NULL;
            sn_msg_t *request =
                sn_msg_decode (zframe_data (payload), zframe_size (payload), 0, &reason);
            assert (request);
            bool silent = false;
            const sn_value_t *op = sn_value_get (sn_msg_root (request), "op");
            if (sn_value_streq (op, "dispatch.stats") && held_identity) {
                sn_pack_reset (reply);
                sn_pack_map (reply, 3);
                sn_pack_kv_uint (reply, "rid", held_rid);
                sn_pack_kv_uint (reply, "code", 200);
                sn_pack_kv_uint (reply, "buckets", 7);
                zframe_t *held = sn_pack_frame (reply);
                zframe_send (&held_identity, router, ZFRAME_MORE);
                zframe_send (&held, router, 0);
            }
            if (sn_value_streq (op, "batch.stats")) {
                sn_value_uint (sn_value_get (sn_msg_root (request), "rid"), &held_rid);
                zframe_destroy (&held_identity);
                held_identity = zframe_dup (identity);
            }
            else if (sn_value_streq (op, "queue.stats"))
                ; //  never answered
            else
                s_fake_answer (sn_msg_root (request), reply, &silent);
            if (sn_value_streq (op, "batch.stats") || sn_value_streq (op, "queue.stats"))
                ;
            else if (silent) {
                sn_value_uint (sn_value_get (sn_msg_root (request), "rid"), &late_rid);
                late_identity = zframe_dup (identity);
            }
            else {
                zframe_t *frame = sn_pack_frame (reply);
                zframe_send (&identity, router, ZFRAME_MORE + ZFRAME_REUSE);
                zframe_send (&frame, router, 0);
            }
            sn_msg_destroy (&request);
            zframe_destroy (&identity);
            zframe_destroy (&payload);
            zmsg_destroy (&msg);
        }
        else {
            char *command = which ? zstr_recv (pipe) : NULL;
            bool stop = !command || streq (command, "$TERM");
            free (command);
            if (stop)
                break;
        }
    }
    zframe_destroy (&late_identity);
    zframe_destroy (&held_identity);
    sn_pack_destroy (&reply);
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

//  A port on the loopback interface nobody listens on right now.
static int
s_free_port (void)
{
    int handle = socket (AF_INET, SOCK_STREAM, 0);
    assert (handle >= 0);
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t length = sizeof (address);
    int rc = bind (handle, (struct sockaddr *) &address, length);
    assert (rc == 0);
    rc = getsockname (handle, (struct sockaddr *) &address, &length);
    assert (rc == 0);
    close (handle);
    return ntohs (address.sin_port);
}

typedef struct {
    int status;       //  from the status line, or -1 when nothing came back
    char *text;       //  the whole response, NUL-terminated
    const char *body; //  inside text, after the headers
    json_t *json;     //  the body parsed, or NULL
} s_response_t;

//  Sends one raw request on a new connection and reads the answer until the server
//  closes it.
static void
s_http_raw (int port, const char *request, s_response_t *response)
{
    int handle = socket (AF_INET, SOCK_STREAM, 0);
    assert (handle >= 0);
    struct timeval timeout = {.tv_sec = 10};
    setsockopt (handle, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof (timeout));
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons ((uint16_t) port)};
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    int rc = connect (handle, (struct sockaddr *) &address, sizeof (address));
    assert (rc == 0);
    size_t size = strlen (request);
    for (size_t sent = 0; sent < size;) {
        ssize_t bytes = send (handle, request + sent, size - sent, MSG_NOSIGNAL);
        if (bytes <= 0)
            break;
        sent += (size_t) bytes;
    }
    size_t capacity = 4096, received = 0;
    char *text = (char *) zmalloc (capacity + 1);
    while (true) {
        if (received == capacity) {
            capacity *= 2;
            text = (char *) realloc (text, capacity + 1);
            assert (text);
        }
        ssize_t bytes = recv (handle, text + received, capacity - received, 0);
        if (bytes <= 0)
            break;
        received += (size_t) bytes;
    }
    close (handle);
    text[received] = 0;
    response->text = text;
    response->status = -1;
    sscanf (text, "HTTP/1.1 %d", &response->status);
    const char *end = strstr (text, "\r\n\r\n");
    response->body = end ? end + 4 : "";
    response->json = json_loads (response->body, JSON_DECODE_ANY, NULL);
}

//  One request with Connection: close; body gets a Content-Length unless headers
//  already describe it.
static void
s_http (int port, const char *method, const char *path, const char *headers, const char *body,
        s_response_t *response)
{
    char length[64] = "";
    if (body && !(headers && strstr (headers, "Content-Length")) &&
        !(headers && strstr (headers, "Transfer-Encoding")))
        snprintf (length, sizeof (length), "Content-Length: %zu\r\n", strlen (body));
    char *request =
        zsys_sprintf ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s\r\n%s",
                      method, path, headers ? headers : "", length, body ? body : "");
    s_http_raw (port, request, response);
    free (request);
}

static bool
s_has_header (s_response_t *response, const char *line)
{
    char *wanted = zsys_sprintf ("\r\n%s\r\n", line);
    const char *found = strstr (response->text, wanted);
    free (wanted);
    return found && found < response->body;
}

static const char *
s_member (s_response_t *response, const char *name)
{
    return json_string_value (json_object_get (response->json, name));
}

static void
s_response_reset (s_response_t *response)
{
    free (response->text);
    json_decref (response->json);
    memset (response, 0, sizeof (*response));
}

//  A gateway on a free port, for a config whose listen points at listen (32 bytes).
//  The kernel picked the port: another process may take it before us, so this retries.
static sn_gateway_t *
s_test_gateway (const sn_gateway_config_t *config, char *listen, int *port)
{
    char error[256] = "";
    sn_gateway_t *gateway = NULL;
    for (int attempt = 0; attempt < 5 && !gateway; attempt++) {
        *port = s_free_port ();
        snprintf (listen, 32, "127.0.0.1:%d", *port);
        gateway = sn_gateway_new (config, error, sizeof (error));
    }
    assert (gateway);
    return gateway;
}

void
sn_gateway_test (bool verbose)
{
    char *endpoint = zsys_sprintf ("inproc://sn-gateway-test-%d", randof (1000000));
    zactor_t *node = zactor_new (s_fake_node, endpoint);
    assert (node);

    char error[256] = "";
    char listen[32];
    sn_gateway_config_t config = {.listen = listen,
                                  .node = endpoint,
                                  .max_body = 4096,
                                  .timeout = 1000,
                                  //  One thread, so the late reply below reaches the
                                  //  thread that serves the next request
                                  .threads = 1,
                                  .verbose = verbose};
    int port = 0;
    sn_gateway_t *gateway = s_test_gateway (&config, listen, &port);

    //  A taken port is refused with the reason
    sn_gateway_t *second = sn_gateway_new (&config, error, sizeof (error));
    assert (second == NULL);
    char *expected = zsys_sprintf ("cannot listen on %s", listen);
    assert (strncmp (error, expected, strlen (expected)) == 0);
    free (expected);
    if (verbose)
        zsys_info ("sn_gateway: second gateway: %s", error);

    s_response_t response = {0};

    //  POST /events, with the commit level from the query or the header
    s_http (port, "POST", "/events", NULL, "{\"a\": 1}", &response);
    assert (response.status == 201);
    assert (s_has_header (&response, "Content-Type: application/json"));
    assert (streq (s_member (&response, "key"), "evt-none"));
    assert (json_object_size (response.json) == 1);
    s_response_reset (&response);
    s_http (port, "POST", "/events?commit=ALL", NULL, "{\"a\": 1}", &response);
    assert (response.status == 201);
    assert (streq (s_member (&response, "key"), "evt-ALL"));
    s_response_reset (&response);
    s_http (port, "POST", "/events", "X-Commit-Level: ONE\r\n", "{\"a\": 1}", &response);
    assert (response.status == 201);
    assert (streq (s_member (&response, "key"), "evt-ONE"));
    s_response_reset (&response);
    s_http (port, "POST", "/events?commit=%ff", NULL, "{\"a\": 1}", &response);
    assert (response.status == 400);
    assert (streq (s_member (&response, "error"), "commit: not valid UTF-8"));
    s_response_reset (&response);

    //  Bodies that are not an event
    s_http (port, "POST", "/events", NULL, "[1, 2]", &response);
    assert (response.status == 400);
    assert (streq (s_member (&response, "error"), "event must be a JSON object"));
    s_response_reset (&response);
    s_http (port, "POST", "/events", NULL, "{\"a\": ", &response);
    assert (response.status == 400);
    assert (strncmp (s_member (&response, "error"), "invalid JSON", 12) == 0);
    s_response_reset (&response);
    s_http (port, "POST", "/events", NULL, "", &response);
    assert (response.status == 400);
    s_response_reset (&response);
    char nested[256] = "";
    for (int level = 0; level < 100; level++)
        strcat (nested, "[");
    for (int level = 0; level < 100; level++)
        strcat (nested, "]");
    char *deep = zsys_sprintf ("{\"a\": %s}", nested);
    s_http (port, "POST", "/events", NULL, deep, &response);
    assert (response.status == 400);
    assert (strstr (s_member (&response, "error"), "nesting deeper than"));
    free (deep);
    s_response_reset (&response);

    //  Bodies over max_body: declared, and chunked without a declared length
    s_http (port, "POST", "/events", "Content-Length: 100000\r\n", NULL, &response);
    assert (response.status == 413);
    assert (s_member (&response, "error"));
    s_response_reset (&response);
    char *chunk = (char *) zmalloc (3001);
    memset (chunk, ' ', 3000);
    chunk[0] = '{';
    chunk[2999] = '}';
    char *chunked = zsys_sprintf ("bb8\r\n%s\r\nbb8\r\n%s\r\n0\r\n\r\n", chunk, chunk);
    s_http (port, "POST", "/events", "Transfer-Encoding: chunked\r\n", chunked, &response);
    assert (response.status == 413);
    s_response_reset (&response);
    //  A chunked body within the limit is fine
    const char *small = "8\r\n{\"b\": 2}\r\n0\r\n\r\n";
    s_http (port, "POST", "/events", "Transfer-Encoding: chunked\r\n", small, &response);
    assert (response.status == 201);
    s_response_reset (&response);
    free (chunked);
    free (chunk);

    //  POST /_put: AllData's status codes
    s_http (port, "POST", "/_put", NULL,
            "{\"key\": \"20261122T121314123000000042-n1\", \"event\": {}}", &response);
    assert (response.status == 201);
    assert (streq (s_member (&response, "key"), "20261122T121314123000000042-n1"));
    s_response_reset (&response);
    s_http (port, "POST", "/_put", NULL, "{\"key\": \"conflict\", \"event\": {\"a\": 1}}",
            &response);
    assert (response.status == 409);
    assert (streq (s_member (&response, "error"), "key conflict holds a different event"));
    s_response_reset (&response);
    s_http (port, "POST", "/_put", NULL, "{\"key\": \"broken\", \"event\": {}}", &response);
    assert (response.status == 500);
    s_response_reset (&response);
    s_http (port, "POST", "/_put", NULL, "{\"key\": ", &response);
    assert (response.status == 400);
    s_response_reset (&response);
    s_http (port, "POST", "/_put", NULL, "{\"key\": 5, \"event\": {}}", &response);
    assert (response.status == 400);
    s_response_reset (&response);
    s_http (port, "POST", "/_put", NULL, "{\"key\": \"k\", \"event\": 5}", &response);
    assert (response.status == 400);
    s_response_reset (&response);
    s_http (port, "GET", "/_put", NULL, NULL, &response);
    assert (response.status == 405);
    assert (s_has_header (&response, "Allow: POST"));
    s_response_reset (&response);

    //  GET /events/:key: the key is URL-decoded, the answer is the event itself
    s_http (port, "GET", "/events/abc%2Fdef%20g", NULL, NULL, &response);
    assert (response.status == 200);
    assert (streq (s_member (&response, "key"), "abc/def g"));
    assert (json_object_size (response.json) == 1);
    s_response_reset (&response);
    s_http (port, "GET", "/events/%ff", NULL, NULL, &response);
    assert (response.status == 400);
    s_response_reset (&response);
    s_http (port, "GET", "/events/a%00b", NULL, NULL, &response);
    assert (response.status == 400);
    s_response_reset (&response);
    s_http (port, "GET", "/events/missing", NULL, NULL, &response);
    assert (response.status == 404);
    assert (streq (s_member (&response, "error"), "no event with key missing"));
    s_response_reset (&response);
    s_http (port, "DELETE", "/events/abc", NULL, NULL, &response);
    assert (response.status == 405);
    assert (s_has_header (&response, "Allow: GET"));
    s_response_reset (&response);

    //  GET /events: a range
    s_http (port, "GET", "/events?from=a%20b&to=z&limit=1", NULL, NULL, &response);
    assert (response.status == 200);
    json_t *events = json_object_get (response.json, "events");
    assert (json_array_size (events) == 1);
    json_t *first = json_array_get (events, 0);
    assert (streq (json_string_value (json_object_get (first, "key")), "k1"));
    json_t *event = json_object_get (first, "event");
    assert (streq (json_string_value (json_object_get (event, "from")), "a b"));
    assert (streq (json_string_value (json_object_get (event, "to")), "z"));
    assert (streq (s_member (&response, "next"), "k2"));
    s_response_reset (&response);
    s_http (port, "GET", "/events", NULL, NULL, &response);
    assert (response.status == 200);
    assert (json_is_null (json_object_get (response.json, "next")));
    s_response_reset (&response);
    const char *bad_limits[] = {"0", "1001", "abc", "-1", "5x", ""};
    for (size_t index = 0; index < sizeof (bad_limits) / sizeof (bad_limits[0]); index++) {
        char *path = zsys_sprintf ("/events?limit=%s", bad_limits[index]);
        s_http (port, "GET", path, NULL, NULL, &response);
        //  An empty limit is absent, so the default applies
        assert (response.status == (*bad_limits[index] ? 400 : 200));
        free (path);
        s_response_reset (&response);
    }
    s_http (port, "PUT", "/events", NULL, "{}", &response);
    assert (response.status == 405);
    assert (s_has_header (&response, "Allow: GET, POST"));
    s_response_reset (&response);

    //  GET /cluster
    s_http (port, "GET", "/cluster", NULL, NULL, &response);
    assert (response.status == 200);
    assert (streq (s_member (&response, "name"), "fake"));
    assert (json_is_array (json_object_get (response.json, "members")));
    assert (!json_object_get (response.json, "rid"));
    s_response_reset (&response);
    s_http (port, "DELETE", "/cluster", NULL, NULL, &response);
    assert (response.status == 405);
    assert (s_has_header (&response, "Allow: GET"));
    s_response_reset (&response);

    //  GET /metrics: the fake node answers cluster and health, never answers
    //  queue.stats and refuses dispatch.stats, whose metrics are left out and named as
    //  scrape errors; it answers batch.stats only once dispatch.stats has come, which
    //  only a gateway asking every source at once gets
    s_http (port, "GET", "/metrics", NULL, NULL, &response);
    assert (response.status == 200);
    assert (s_has_header (&response, "Content-Type: " SN_METRICS_CONTENT_TYPE));
    assert (strstr (response.body, "\nsupernode_events 1\n"));
    assert (strstr (response.body, "\nsupernode_members{status=\"alive\"} 0\n"));
    assert (strstr (response.body, "\nsupernode_scrape_errors{source=\"health\"} 0\n"));
    assert (strstr (response.body, "\nsupernode_scrape_errors{source=\"queue\"} 1\n"));
    assert (strstr (response.body, "\nsupernode_scrape_errors{source=\"dispatch\"} 1\n"));
    assert (strstr (response.body, "\nsupernode_scrape_errors{source=\"batch\"} 0\n"));
    assert (strstr (response.body, "\nsupernode_buckets 7\n"));
    assert (!strstr (response.body, "supernode_workers"));
    s_response_reset (&response);
    s_http (port, "PUT", "/metrics", NULL, "{}", &response);
    assert (response.status == 405);
    assert (s_has_header (&response, "Allow: GET"));
    s_response_reset (&response);

    //  GET /health
    s_http (port, "GET", "/health", NULL, NULL, &response);
    assert (response.status == 200);
    assert (streq (s_member (&response, "status"), "ok"));
    assert (streq (s_member (&response, "name"), "fake"));
    assert (json_integer_value (json_object_get (response.json, "events")) == 1);
    s_response_reset (&response);
    s_http (port, "POST", "/health", NULL, "{}", &response);
    assert (response.status == 405);
    assert (s_has_header (&response, "Allow: GET"));
    s_response_reset (&response);

    //  Unknown routes
    s_http (port, "GET", "/nope", NULL, NULL, &response);
    assert (response.status == 404);
    assert (s_has_header (&response, "Content-Type: application/json"));
    char *length = zsys_sprintf ("Content-Length: %zu", strlen (response.body));
    assert (s_has_header (&response, length));
    free (length);
    assert (streq (s_member (&response, "error"), "no route for /nope"));
    s_response_reset (&response);
    s_http (port, "GET", "/events/a/b", NULL, NULL, &response);
    assert (response.status == 404);
    s_response_reset (&response);

    //  A silent node is 504 after the timeout; its late reply is dropped afterwards
    s_http (port, "GET", "/events/silent", NULL, NULL, &response);
    assert (response.status == 504);
    assert (strstr (s_member (&response, "error"), "node did not answer within 1000 ms"));
    s_response_reset (&response);
    s_http (port, "GET", "/events/after", NULL, NULL, &response);
    assert (response.status == 200);
    assert (streq (s_member (&response, "key"), "after"));
    s_response_reset (&response);

    //  Still serving after all that
    s_http (port, "GET", "/health", NULL, NULL, &response);
    assert (response.status == 200);
    s_response_reset (&response);

    sn_gateway_destroy (&gateway);
    sn_gateway_destroy (&gateway);

    //  With tokens asked for, only GET /health goes without one
    char tokens_path[] = "/tmp/sn_gateway_tokens_XXXXXX";
    int fd = mkstemp (tokens_path);
    assert (fd >= 0);
    const char *tokens = "# test\nabcdefghijklmnop-0123\n";
    assert (write (fd, tokens, strlen (tokens)) == (ssize_t) strlen (tokens));
    close (fd);
    config.tokens = tokens_path;
    gateway = s_test_gateway (&config, listen, &port);
    s_http (port, "POST", "/events", NULL, "{\"a\": 1}", &response);
    assert (response.status == 401);
    assert (s_has_header (&response, "WWW-Authenticate: Bearer realm=\"supernode\""));
    assert (strstr (s_member (&response, "error"), "send Authorization: Bearer <token>"));
    s_response_reset (&response);
    s_http (port, "POST", "/events", "Authorization: Bearer abcdefghijklmnop-0124\r\n",
            "{\"a\": 1}", &response);
    assert (response.status == 401);
    assert (streq (s_member (&response, "error"), "the bearer token is not one this node accepts"));
    s_response_reset (&response);
    //  Only a WebSocket may carry it in the query
    s_http (port, "GET", "/events/k?access_token=abcdefghijklmnop-0123", NULL, NULL, &response);
    assert (response.status == 401);
    s_response_reset (&response);
    s_http (port, "POST", "/events", "Authorization: Bearer abcdefghijklmnop-0123\r\n",
            "{\"a\": 1}", &response);
    assert (response.status == 201);
    s_response_reset (&response);
    s_http (port, "GET", "/nope", NULL, NULL, &response);
    assert (response.status == 401); //  no route is told to a stranger
    s_response_reset (&response);
    s_http (port, "GET", "/health", NULL, NULL, &response);
    assert (response.status == 200);
    s_response_reset (&response);
    sn_gateway_destroy (&gateway);

    //  A bad tokens file stops the start, with the reason
    config.tokens = "/nonexistent/tokens";
    assert (sn_gateway_new (&config, error, sizeof (error)) == NULL);
    assert (strstr (error, "tokens file /nonexistent/tokens"));
    unlink (tokens_path);

    zactor_destroy (&node);
    free (endpoint);
}
