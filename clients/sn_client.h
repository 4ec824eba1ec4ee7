/*  sn_client: the supernode client library for producers and tools.

    A client holds one DEALER connected to a node's client endpoint. Requests and
    replies are msgpack maps ({op, rid, ...} -> {rid, code, ...}); this API takes and
    gives JSON text so callers need no msgpack of their own.

    Simple calls send one request and wait for its reply. They return the reply's
    HTTP-like code (201, 200, 404, 409, ...), or -1 when no reply came in time or the
    request could not be sent; sn_client_error () then says why.

        sn_client_t *client = sn_client_new ("tcp://127.0.0.1:7500");
        char *key;
        if (sn_client_put (client, "{\"hello\": \"world\"}", &key) == 201) {
            char *event;
            sn_client_get (client, key, &event);
            ...
        }
        sn_client_destroy (&client);

    For throughput, pipeline: sn_client_send () many requests, then sn_client_recv ()
    their replies, which carry the rid that sn_client_send () returned.
*/
#ifndef SN_CLIENT_H_INCLUDED
#define SN_CLIENT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _sn_client_t sn_client_t;

//  Connect to a node's client endpoint. Returns NULL if the endpoint is malformed.
sn_client_t *sn_client_new (const char *endpoint);

//  Connect to a node whose client endpoint is CURVE (supernode run --curve-cert).
//  server_key is the node's public key: 40 characters of Z85, or the path of its
//  public certificate file. cert is the path of this client's certificate, as
//  `supernode keygen FILE` writes it (FILE and FILE_secret; the path names FILE);
//  the node lets it in when FILE is in its --curve-clients directory. Returns NULL
//  with the reason in error when a key or a file is not usable or the endpoint is
//  malformed. A node that does not let the client in never answers: calls then fail
//  with -1 after the timeout, as with a node that is down.
sn_client_t *sn_client_new_curve (const char *endpoint, const char *server_key, const char *cert,
                                  char *error, size_t size);
void sn_client_destroy (sn_client_t **self_p);

//  How long simple calls and sn_client_recv wait for a reply, in ms (default 10000).
void sn_client_set_timeout (sn_client_t *self, int msecs);

//  Why the last call failed: the node's "error" text or a local reason. Borrowed.
const char *sn_client_error (sn_client_t *self);

//  Store an event (a JSON object). On 201, *key_p is the new key (caller frees).
int sn_client_put (sn_client_t *self, const char *event_json, char **key_p);

//  Store an event under a given key (AllData's _put): write-once, idempotent.
int sn_client_put_key (sn_client_t *self, const char *key, const char *event_json);

//  Read an event. On 200, *event_json_p is the event (caller frees).
int sn_client_get (sn_client_t *self, const char *key, char **event_json_p);

//  Read events with from <= key < to (either may be NULL), at most limit (0 for the
//  node's default). On 200, *result_json_p is {"events": [...], "next": ...}.
int sn_client_range (sn_client_t *self, const char *from, const char *to, uint32_t limit,
                     char **result_json_p);

//  Send any request, given as a JSON object without rid, and wait for its reply.
//  On a reply, *reply_json_p holds the whole reply as JSON (caller frees).
int sn_client_request (sn_client_t *self, const char *request_json, char **reply_json_p);

//  Pipelining: send a request (JSON object without rid) and return its rid, or 0 when
//  it could not be sent.
uint64_t sn_client_send (sn_client_t *self, const char *request_json);

//  Pipelining: send a request already encoded as msgpack whose rid the caller set.
int sn_client_send_raw (sn_client_t *self, const void *data, size_t size);

//  Pipelining: wait for the next reply. Returns its code and sets *rid_p, and
//  *reply_json_p when not NULL (caller frees); -1 on timeout.
int sn_client_recv (sn_client_t *self, uint64_t *rid_p, char **reply_json_p);

//  --------------------------------------------------------------------------
//  Worker API: a client that says hello as a worker is pushed work by the node.
//
//      const char *classes[] = {"mailer.User"};
//      sn_client_worker_hello (client, classes, 1, 1, "w1");
//      char *work;
//      while (sn_client_worker_next (client, 1000, &work) >= 0) {
//          if (!work) continue;                 //  nothing in that second
//          ... run it: work is {id, bucket_id, invocation, token, data?, attempt, timeout}
//          sn_client_worker_result (client, id, 200, "{\"sent\": true}", NULL, false);
//          free (work);
//      }
//
//  While it runs a long invocation, a worker calls sn_client_worker_heartbeat at
//  least every heartbeat interval, or the node takes its work back.

//  Become a worker of count classes, taking at most capacity invocations at a time.
//  name (may be NULL) shows in logs. Returns 200, or the node's code, or -1.
int sn_client_worker_hello (sn_client_t *self, const char **classes, size_t count,
                            uint32_t capacity, const char *name);

//  Wait up to msecs for the next work, sending heartbeats when due and saying hello
//  again when the node no longer knows this worker (it restarted). Returns 1 with
//  *work_json_p set (caller frees), 0 when nothing came in time, -1 on error.
int sn_client_worker_next (sn_client_t *self, int msecs, char **work_json_p);

//  Send a heartbeat if one is due, without waiting for anything. Returns 0 or -1.
int sn_client_worker_heartbeat (sn_client_t *self);

//  Report progress (0 to 100) of invocation id. Returns 200, the node's code, or -1.
int sn_client_worker_progress (sn_client_t *self, const char *id, double progress);

//  Report the outcome of invocation id: code 2xx is success; otherwise a failure,
//  retried with backoff when retryable. response_json (may be NULL) is any JSON
//  value; error (may be NULL) a text. Returns 200 once the node has it on disk,
//  202 when the invocation is another node's that cannot take the result now (this
//  node keeps it and passes it on: nothing more to do), 409 when the invocation is
//  no longer this worker's (it timed out), or -1.
int sn_client_worker_result (sn_client_t *self, const char *id, int code, const char *response_json,
                             const char *error, bool retryable);

//  -------------------------------------------------------------------------
//  Device agents (jobs). An agent says hello with its destination id (a MAC
//  address or a gateway id); the node then pushes it one task at a time as
//  {"op": "agent.work", "id", "method", "resource", "data", "timeout"} and, when the
//  task is cancelled or times out, {"op": "agent.cancel", "id"}. The agent reports
//  progress and one result per task, and sends something at least every heartbeat
//  ms: an agent silent for three heartbeats is taken for gone, and its task waits
//  for it to say hello again.
//
//      sn_client_agent_hello (client, "00:0c:29:1c:e8:01", 1000);
//      char *message;
//      if (sn_client_agent_next (client, 1000, &message) == 1) ... work or cancel
//      sn_client_agent_result (client, task_id, 200, "{\"ok\": true}");

//  Say hello as destination id, promising a message at least every heartbeat ms
//  (0: the node's default, 5000). Returns the code (200).
int sn_client_agent_hello (sn_client_t *self, const char *id, int heartbeat);

//  Wait up to timeout ms for the next message the node pushes. Returns 1 with
//  *message_json_p set (caller frees), 0 when none came in time.
int sn_client_agent_next (sn_client_t *self, int timeout, char **message_json_p);

//  Tell the node the agent is alive (and, after a node restart, who it is).
int sn_client_agent_heartbeat (sn_client_t *self);

//  How far the task is, in percent (0 to 100).
int sn_client_agent_progress (sn_client_t *self, const char *task_id, int percent);

//  The task's result: code 2xx resolves it, any other is an error; data_json is any
//  JSON value or NULL. Returns 200 once the node has stored it, 409 when the task
//  was already finished (cancelled, timed out), 404 when it is not this agent's.
int sn_client_agent_result (sn_client_t *self, const char *task_id, int code,
                            const char *data_json);

void sn_client_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
