/*  sn_webhook: outbound HTTP POSTs on libcurl's multi interface.
 */
#include "sn_webhook.h"
#include "sn_actor.h"
#include "sn_msg.h"
#include "sn_routed.h"
#include <curl/curl.h>
#include <openssl/crypto.h>

//  Default and largest time one request may take, in ms.
#define S_TIMEOUT     10000
#define S_TIMEOUT_MAX 300000

//  Time to connect, in ms: a receiver that is down is found out quickly.
#define S_CONNECT_TIMEOUT 5000

//  Requests in flight before new ones are refused (the caller retries later).
#define S_IN_FLIGHT_MAX 1000

//  One request being made.
typedef struct {
    CURL *easy;                 //  the transfer
    struct curl_slist *headers; //  its request headers
    sn_routed_t *request;       //  the request, to answer with its envelope
    uint64_t rid;               //  its rid
    char *body;                 //  what the receiver answered, up to the cap
    size_t size;                //  bytes in body
    void *handle;               //  its place in self->transfers
} s_transfer_t;

typedef struct {
    zsock_t *pipe;              //  our end of the actor pipe
    zsock_t *router;            //  requests from other actors
    CURLM *multi;               //  every transfer in flight
    zlistx_t *transfers;        //  the s_transfer_t in multi
    size_t in_flight;           //  transfers in multi
    sn_pack_t *reply;           //  scratch for replies
    char *allow;                //  allowed hosts, or NULL for any
    char *deny;                 //  denied hosts, or NULL
    sn_webhook_config_t config; //  borrowed until START
    bool verbose;               //  log every request
    bool terminated;            //  $TERM received
} self_t;

static size_t
s_write (char *data, size_t size, size_t count, void *user)
{
    s_transfer_t *transfer = (s_transfer_t *) user;
    size_t bytes = size * count;
    size_t room = SN_WEBHOOK_BODY_MAX - transfer->size;
    size_t take = bytes < room ? bytes : room;
    if (take) {
        memcpy (transfer->body + transfer->size, data, take);
        transfer->size += take;
    }
    return bytes; //  the rest is dropped, not an error
}

static void
s_transfer_destroy (s_transfer_t **self_p)
{
    s_transfer_t *self = *self_p;
    if (self) {
        if (self->easy)
            curl_easy_cleanup (self->easy);
        curl_slist_free_all (self->headers);
        if (self->request) {
            sn_routed_close (self->request);
            free (self->request);
        }
        free (self->body);
        free (self);
        *self_p = NULL;
    }
}

static bool
s_host_in (const char *list, const char *host)
{
    if (!list)
        return false;
    size_t host_len = strlen (host);
    const char *entry = list;
    while (*entry) {
        entry += strspn (entry, ", ");
        size_t len = strcspn (entry, ",");
        while (len && entry[len - 1] == ' ')
            len--;
        if (len == 1 && *entry == '*')
            return true;
        if (len && len == host_len && strncasecmp (entry, host, len) == 0)
            return true;
        if (len > 1 && *entry == '.' && host_len > len &&
            strncasecmp (entry, host + host_len - len, len) == 0)
            return true;
        entry += len;
        entry += strcspn (entry, ",");
    }
    return false;
}

bool
sn_webhook_allowed (const char *allow, const char *deny, const char *host)
{
    if (!host || s_host_in (deny, host))
        return false;
    return !allow || !*allow || s_host_in (allow, host);
}

static void
s_send_reply (self_t *self, sn_routed_t *request)
{
    sn_routed_set_payload (request, sn_pack_data (self->reply), sn_pack_size (self->reply));
    if (sn_routed_send (request, self->router))
        sn_routed_close (request);
    free (request);
}

//  Answer a request that was not tried over HTTP.
static void
s_reply_untried (self_t *self, sn_routed_t *request, uint64_t rid, const char *kind,
                 const char *error)
{
    sn_pack_reset (self->reply);
    sn_pack_map (self->reply, 5);
    sn_pack_kv_uint (self->reply, "rid", rid);
    sn_pack_kv_uint (self->reply, "code", 200);
    sn_pack_kv_uint (self->reply, "status", 0);
    sn_pack_kv_str (self->reply, "kind", kind);
    sn_pack_kv_str (self->reply, "error", error);
    s_send_reply (self, request);
}

static void
s_handle_post (self_t *self, sn_routed_t *request)
{
    const char *reason = NULL;
    sn_msg_t *msg =
        sn_msg_decode_trusted (sn_routed_data (request), sn_routed_size (request), &reason);
    const sn_value_t *root = sn_msg_root (msg);
    uint64_t rid = 0, timeout = S_TIMEOUT;
    sn_value_uint (sn_value_get (root, "rid"), &rid);
    sn_value_uint (sn_value_get (root, "timeout"), &timeout);
    if (timeout == 0 || timeout > S_TIMEOUT_MAX)
        timeout = S_TIMEOUT;
    char *url = sn_value_get_strdup (root, "url");
    size_t body_len = 0;
    const char *body = sn_value_str (sn_value_get (root, "body"), &body_len);
    if (!msg || !url || !body) {
        sn_pack_error (self->reply, rid, 400, "post takes {url, body}");
        s_send_reply (self, request);
        free (url);
        sn_msg_destroy (&msg);
        return;
    }
    if (self->in_flight >= S_IN_FLIGHT_MAX) {
        s_reply_untried (self, request, rid, "error", "too many requests in flight");
        free (url);
        sn_msg_destroy (&msg);
        return;
    }
    //  Check the destination before anything connects
    CURLU *parsed = curl_url ();
    char *host = NULL, *scheme = NULL;
    bool valid = curl_url_set (parsed, CURLUPART_URL, url, 0) == CURLUE_OK &&
                 curl_url_get (parsed, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
                 curl_url_get (parsed, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                 (streq (scheme, "http") || streq (scheme, "https"));
    bool allowed = valid && sn_webhook_allowed (self->allow, self->deny, host);
    curl_free (host);
    curl_free (scheme);
    curl_url_cleanup (parsed);
    if (!valid || !allowed) {
        s_reply_untried (self, request, rid, "denied",
                         valid ? "destination is not allowed by the node's callback lists"
                               : "url must be an http or https URL");
        free (url);
        sn_msg_destroy (&msg);
        return;
    }

    s_transfer_t *transfer = (s_transfer_t *) zmalloc (sizeof (s_transfer_t));
    transfer->easy = curl_easy_init ();
    transfer->rid = rid;
    transfer->body = (char *) malloc (SN_WEBHOOK_BODY_MAX);
    transfer->headers = curl_slist_append (NULL, "Content-Type: application/json");
    transfer->headers = curl_slist_append (transfer->headers, "Expect:");
    const sn_value_t *headers = sn_value_get (root, "headers");
    for (size_t index = 0; index < sn_value_size (headers); index++) {
        char *header = sn_value_strdup (sn_value_at (headers, index));
        if (header && !strpbrk (header, "\r\n"))
            transfer->headers = curl_slist_append (transfer->headers, header);
        free (header);
    }
    CURL *easy = transfer->easy;
    curl_easy_setopt (easy, CURLOPT_URL, url);
    curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE, (long) body_len);
    curl_easy_setopt (easy, CURLOPT_COPYPOSTFIELDS, body);
    curl_easy_setopt (easy, CURLOPT_HTTPHEADER, transfer->headers);
    curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, (long) timeout);
    curl_easy_setopt (easy, CURLOPT_CONNECTTIMEOUT_MS,
                      (long) (timeout < S_CONNECT_TIMEOUT ? timeout : S_CONNECT_TIMEOUT));
    curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt (easy, CURLOPT_SSL_VERIFYPEER, self->config.insecure ? 0L : 1L);
    curl_easy_setopt (easy, CURLOPT_SSL_VERIFYHOST, self->config.insecure ? 0L : 2L);
    curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_write);
    curl_easy_setopt (easy, CURLOPT_WRITEDATA, transfer);
    curl_easy_setopt (easy, CURLOPT_PRIVATE, transfer);
    transfer->request = request;
    transfer->handle = zlistx_add_end (self->transfers, transfer);
    curl_multi_add_handle (self->multi, easy);
    self->in_flight++;
    if (self->verbose)
        zsys_info ("sn_webhook: POST %s (%zu bytes)", url, body_len);
    free (url);
    sn_msg_destroy (&msg);
}

//  Answer every transfer that has finished.
static void
s_collect (self_t *self)
{
    int left = 0;
    CURLMsg *info;
    while ((info = curl_multi_info_read (self->multi, &left))) {
        if (info->msg != CURLMSG_DONE)
            continue;
        s_transfer_t *transfer = NULL;
        curl_easy_getinfo (info->easy_handle, CURLINFO_PRIVATE, (char **) &transfer);
        CURLcode result = info->data.result;
        curl_multi_remove_handle (self->multi, info->easy_handle);
        zlistx_delete (self->transfers, transfer->handle);
        self->in_flight--;
        sn_routed_t *request = transfer->request;
        transfer->request = NULL;
        if (result == CURLE_OK) {
            long status = 0;
            curl_easy_getinfo (transfer->easy, CURLINFO_RESPONSE_CODE, &status);
            sn_pack_reset (self->reply);
            sn_pack_map (self->reply, 4);
            sn_pack_kv_uint (self->reply, "rid", transfer->rid);
            sn_pack_kv_uint (self->reply, "code", 200);
            sn_pack_kv_uint (self->reply, "status", (uint64_t) status);
            sn_pack_str (self->reply, "body");
            sn_pack_strn (self->reply, transfer->body, transfer->size);
            //  A body that is not UTF-8 would make the reply unreadable
            const char *reason = NULL;
            sn_msg_t *check =
                sn_msg_decode (sn_pack_data (self->reply), sn_pack_size (self->reply), 0, &reason);
            if (!check) {
                sn_pack_reset (self->reply);
                sn_pack_map (self->reply, 4);
                sn_pack_kv_uint (self->reply, "rid", transfer->rid);
                sn_pack_kv_uint (self->reply, "code", 200);
                sn_pack_kv_uint (self->reply, "status", (uint64_t) status);
                sn_pack_kv_str (self->reply, "body", "");
            }
            sn_msg_destroy (&check);
            s_send_reply (self, request);
            if (self->verbose)
                zsys_info ("sn_webhook: answered %ld", status);
        }
        else {
            const char *kind = result == CURLE_OPERATION_TIMEDOUT ? "timeout"
                               : result == CURLE_COULDNT_CONNECT  ? "refused"
                                                                  : "error";
            s_reply_untried (self, request, transfer->rid, kind, curl_easy_strerror (result));
            if (self->verbose)
                zsys_info ("sn_webhook: failed: %s", curl_easy_strerror (result));
        }
        s_transfer_destroy (&transfer);
    }
}

static char *
s_self_start (self_t *self)
{
    self->router = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (self->router, 0);
    zsock_set_rcvtimeo (self->router, 0);
    zsock_set_sndhwm (self->router, 100000);
    if (zsock_bind (self->router, "%s", self->config.endpoint) == -1)
        return zsys_sprintf ("cannot bind %s", self->config.endpoint);
    self->multi = curl_multi_init ();
    if (!self->multi)
        return strdup ("cannot start libcurl");
    self->allow = self->config.allow ? strdup (self->config.allow) : NULL;
    self->deny = self->config.deny ? strdup (self->config.deny) : NULL;
    return NULL;
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
        zsys_error ("sn_webhook: invalid command '%s'", command);
    free (command);
}

void
sn_webhook_actor (zsock_t *pipe, void *args)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->config = *(const sn_webhook_config_t *) args;
    self->verbose = self->config.verbose;
    self->reply = sn_pack_new ();
    self->transfers = zlistx_new ();
    zsock_signal (pipe, 0);
    while (!self->terminated && !self->multi) {
        s_handle_pipe (self);
        if (!self->multi)
            break;
    }
    //  One wait serves both worlds: curl's sockets and, as extra descriptors, the
    //  pipe's and the router's. ZeroMQ's descriptors signal edges, so both sockets
    //  are drained until they report nothing more before every wait.
    while (!self->terminated && self->multi) {
        while (!self->terminated && (zsock_events (self->pipe) & ZMQ_POLLIN))
            s_handle_pipe (self);
        while (zsock_events (self->router) & ZMQ_POLLIN) {
            sn_routed_t *request = (sn_routed_t *) zmalloc (sizeof (sn_routed_t));
            if (sn_routed_recv (request, self->router)) {
                free (request);
                break;
            }
            s_handle_post (self, request);
        }
        int running = 0;
        curl_multi_perform (self->multi, &running);
        s_collect (self);
        if (self->terminated || (zsock_events (self->router) & ZMQ_POLLIN) ||
            (zsock_events (self->pipe) & ZMQ_POLLIN))
            continue;
        long timeout = -1;
        curl_multi_timeout (self->multi, &timeout);
        if (timeout < 0 || timeout > 1000)
            timeout = 1000;
        struct curl_waitfd extra[2] = {{zsock_fd (self->pipe), CURL_WAIT_POLLIN, 0},
                                       {zsock_fd (self->router), CURL_WAIT_POLLIN, 0}};
        curl_multi_wait (self->multi, extra, 2, (int) timeout, NULL);
    }
    if (self->multi) {
        s_transfer_t *transfer;
        while ((transfer = (s_transfer_t *) zlistx_detach (self->transfers, NULL))) {
            curl_multi_remove_handle (self->multi, transfer->easy);
            s_transfer_destroy (&transfer);
        }
        curl_multi_cleanup (self->multi);
    }
    zsock_destroy (&self->router);
    zlistx_destroy (&self->transfers);
    sn_pack_destroy (&self->reply);
    free (self->allow);
    free (self->deny);
    free (self);
    //  libcurl's TLS leaves OpenSSL state in this thread, freed when the thread ends,
    //  which may be after the process has checked its memory: freed here, before the
    //  pipe says this actor is gone
    OPENSSL_thread_stop ();
}

zactor_t *
sn_webhook_new (const sn_webhook_config_t *config, char *error, size_t size)
{
    assert (config);
    return sn_actor_start (sn_webhook_actor, (void *) config, "webhook", error, size);
}

void
sn_webhook_test (bool verbose)
{
    //  The lists: deny first, then allow; "." entries match a domain's hosts
    assert (sn_webhook_allowed (NULL, NULL, "example.com"));
    assert (sn_webhook_allowed ("*", NULL, "example.com"));
    assert (!sn_webhook_allowed ("*", "example.com", "example.com"));
    assert (sn_webhook_allowed ("a.com, .example.com", NULL, "hooks.example.com"));
    assert (!sn_webhook_allowed ("a.com, .example.com", NULL, "example.org"));
    assert (!sn_webhook_allowed ("*", ".internal", "db.internal"));
    assert (sn_webhook_allowed ("127.0.0.1", NULL, "127.0.0.1"));
    assert (!sn_webhook_allowed ("127.0.0.1", NULL, "127.0.0.10"));

    char endpoint[64], error[256];
    snprintf (endpoint, sizeof endpoint, "inproc://sn-webhook-test-%d", getpid ());
    sn_webhook_config_t config = {endpoint, NULL, "denied.example", false, verbose};
    zactor_t *webhook = sn_webhook_new (&config, error, sizeof error);
    assert (webhook);
    zsock_t *client = zsock_new_dealer (endpoint);
    sn_pack_t *pack = sn_pack_new ();

    //  A receiver that accepts one connection and answers 201
    zsock_t *receiver = zsock_new (ZMQ_STREAM);
    int port = zsock_bind (receiver, "tcp://127.0.0.1:*");
    assert (port > 0);
    char *url = zsys_sprintf ("http://127.0.0.1:%d/hook", port);

    struct {
        const char *url;
        const char *kind;
    } cases[] = {{"http://denied.example/x", "denied"},
                 {"ftp://127.0.0.1/x", "denied"},
                 {"not a url", "denied"},
                 {url, NULL}};
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        sn_pack_reset (pack);
        sn_pack_map (pack, 5);
        sn_pack_kv_str (pack, "op", "post");
        sn_pack_kv_uint (pack, "rid", index + 1);
        sn_pack_kv_str (pack, "url", cases[index].url);
        sn_pack_kv_str (pack, "body", "{\"a\": 1}");
        sn_pack_str (pack, "headers");
        sn_pack_array (pack, 1);
        sn_pack_str (pack, "X-Test: yes");
        zframe_t *frame = sn_pack_frame (pack);
        zframe_send (&frame, client, 0);
        if (!cases[index].kind) {
            //  Serve the request: read until the body has come, answer 201. The
            //  peer is the connection whose bytes start the POST: a stray
            //  connection from another process to this port is passed over
            zframe_t *peer = NULL;
            char request[4096] = "";
            while (!strstr (request, "{\"a\": 1}")) {
                zmsg_t *data = zmsg_recv (receiver);
                zframe_t *content = zmsg_last (data);
                if (!peer && zframe_size (content) >= 5 &&
                    memcmp (zframe_data (content), "POST ", 5) == 0)
                    peer = zframe_dup (zmsg_first (data));
                if (peer && zframe_eq (peer, zmsg_first (data)))
                    strncat (request, (const char *) zframe_data (content),
                             zframe_size (content) < sizeof request - strlen (request) - 1
                                 ? zframe_size (content)
                                 : sizeof request - strlen (request) - 1);
                zmsg_destroy (&data);
            }
            assert (strstr (request, "POST /hook HTTP/1.1"));
            assert (strstr (request, "X-Test: yes"));
            assert (strstr (request, "Content-Type: application/json"));
            const char *answer =
                "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
            zframe_send (&peer, receiver, ZFRAME_MORE | ZFRAME_REUSE);
            zstr_send (receiver, answer);
            zframe_send (&peer, receiver, ZFRAME_MORE);
            zmq_send (zsock_resolve (receiver), "", 0, 0);
        }
        zframe_t *answer = zframe_recv (client);
        sn_msg_t *reply = sn_msg_decode (zframe_data (answer), zframe_size (answer), 0, NULL);
        zframe_destroy (&answer);
        const sn_value_t *root = sn_msg_root (reply);
        uint64_t status = 99;
        sn_value_uint (sn_value_get (root, "status"), &status);
        if (cases[index].kind) {
            assert (status == 0);
            assert (sn_value_streq (sn_value_get (root, "kind"), cases[index].kind));
        }
        else {
            assert (status == 201);
            assert (sn_value_streq (sn_value_get (root, "body"), "ok"));
        }
        sn_msg_destroy (&reply);
    }

    //  Nobody listening: refused, quickly. The port is one the system just handed
    //  out and took back, closed at once (a ZeroMQ listener closes later, in its
    //  I/O thread).
    zsock_destroy (&receiver);
    int probe = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0};
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    assert (bind (probe, (struct sockaddr *) &address, sizeof address) == 0);
    assert (getsockname (probe, (struct sockaddr *) &address, &length) == 0);
    close (probe);
    char *closed = zsys_sprintf ("http://127.0.0.1:%d/hook", ntohs (address.sin_port));
    sn_pack_reset (pack);
    sn_pack_map (pack, 4);
    sn_pack_kv_str (pack, "op", "post");
    sn_pack_kv_uint (pack, "rid", 9);
    sn_pack_kv_str (pack, "url", closed);
    free (closed);
    sn_pack_kv_str (pack, "body", "{}");
    zframe_t *frame = sn_pack_frame (pack);
    zframe_send (&frame, client, 0);
    frame = zframe_recv (client);
    sn_msg_t *reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    zframe_destroy (&frame);
    assert (sn_value_streq (sn_value_get (sn_msg_root (reply), "kind"), "refused"));
    sn_msg_destroy (&reply);

    free (url);
    sn_pack_destroy (&pack);
    zsock_destroy (&client);
    zactor_destroy (&webhook);
}
