/*  sn_batch: the batch actor. Buckets, and the commits of their results.

    A bucket collects the results of the invocations enqueued in it and commits
    them every batch_timeout ms to its callback URL in one POST:
        {code: 200, bucket_id, metadata, data: [{code, token, metadata, response}]}
    where each item's metadata is the data given at enqueue. A commit holds at most
    S_COMMIT_ITEMS items and about S_COMMIT_BYTES of JSON; more makes more commits.
    Every POST of a commit carries the same Idempotency-Key header (the commit key)
    and X-Supernode-Signature: sha256=<hex HMAC-SHA256 of the body with the bucket's
    secret>. A commit is written to the log before its first POST and retried with
    backoff until the receiver answers 2xx, across restarts, or until give_up ms
    after it was made, when it is abandoned (and shown so in the bucket's status).
    The bucket "primary" always exists and has no callback: its results are kept
    for GET /invocations/:id.

    Creating a bucket first POSTs {token, bucket_id, created_at} to the callback and
    requires 200 with the same token in a JSON body; otherwise nothing is created
    and the creator is told which check failed.

    Ops (through the frontend):
      batch.create {callback_url, bucket_id, batch_timeout?, give_up?, metadata?}
                   -> 201 {bucket}  (with its secret) | 409 exists | 410 deleted before
                      | 502 handshake failed
      batch.get    {bucket_id}    -> 200 {bucket} | 404
      batch.update {bucket_id, callback_url?, batch_timeout?, give_up?, metadata?}
                   -> 200 {bucket} | 404 | 410
      batch.delete {bucket_id}    -> 200 {bucket} | 404 | 410; enqueues are refused
    From the queue: {op: "finished", bucket_id, event} (not answered).

    Events (pkey = bucket_id): bucket.created, bucket.updated, bucket.deleted,
    batch.commit {key, bucket_id, body, ids, items, created_at}, batch.delivered
    {key, status}, batch.abandoned {key, error}; and it reads invocation.done.

    Ownership (see sn_owners.h, and sn_replay.h for the replays, the re-reads and
    the requests that wait for a takeover): with a placement feed the actor holds
    the buckets of the partitions this node owns only. Gaining one replays it from the local
    store and starts its commits and deliveries (undelivered commits are posted again
    under their key); losing one drops its buckets from memory. batch.create, get,
    update and delete for a partition owned elsewhere are forwarded to its owner.

    A result is collected once: the ids of a bucket's results are remembered, and
    a committed one is forgotten once keep_finished and as long again (at most 10
    minutes) have passed since its commit; the queue tells of a result only right
    after it is on disk, and a replay reads the commit with the result.

    Pipe commands: "START" (replies "OK" or the error text), "REPLAY" P (replays
    partition P over the state held, for a take-over, in turn from the actor's loop;
    replies "OK" or the error text when that replay ends), "SEEN" B (replies how many
    result ids bucket B remembers, for tests), "$TERM".
*/
#ifndef SN_BATCH_H_INCLUDED
#define SN_BATCH_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *endpoint; //  inproc endpoint the actor binds its ROUTER to
    const char *log;      //  endpoint answering put: the store, or the mesh (replicated)
    const char *queue;    //  the queue actor, told which buckets accept enqueues
    const char *webhook;  //  the webhook actor that makes every POST
    uint32_t partitions;  //  P: partitions replayed at start
    bool verbose;         //  log every commit
    const char *store;    //  endpoint answering scan (replay), or NULL: the log does
    const char *feed;     //  the mesh's placement feed, or NULL: own every partition
    const char *mesh;     //  the mesh's ops, where requests for others' partitions go
    int keep_finished;    //  ms the queue keeps a finished invocation; 0: one hour
} sn_batch_config_t;

zactor_t *sn_batch_new (const sn_batch_config_t *config, char *error, size_t size);
void sn_batch_actor (zsock_t *pipe, void *args);

//  The signature header's value for body: "sha256=" and 64 hex digits, into out
//  (at least 72 bytes).
void sn_batch_sign (const char *secret, const char *body, size_t size, char *out);

void sn_batch_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
