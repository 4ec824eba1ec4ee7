/*  sn_queue: the queue actor. Invocations wait here until a worker runs them.

    An invocation is {class, method, params | args} plus the caller's token and data,
    queued in a bucket (default "primary"). Workers are clients of the node that said
    worker.hello with the classes they run and how many invocations they take at a
    time (capacity); the actor pushes them work and they answer with one result.

    States: queued -> running -> succeeded | failed. A failure the worker marks
    retryable goes back to queued after a backoff (backoff ms, doubled per attempt)
    while attempts remain. A running invocation whose worker goes silent (no message
    for worker_timeout ms) or that runs past its timeout is taken back: it is queued
    again at once, or fails with 504 when its attempts are spent. An invocation
    still waiting when worker_wait has passed and no connected worker offers its
    class fails with 404. The item code of a result is the worker's 2xx code (200
    by default), the worker's error code, 504 for a timeout, 404 for no worker.

    Durable state: every transition is an immutable event written through the log
    endpoint (store op put, type "invocation.<what>", pkey = bucket_id) before it is
    acknowledged: enqueue answers 202 and worker.result answers 200 only after the
    event is on disk. At START the actor replays its partitions' events one
    partition at a time (store op scan), so a restart loses nothing acknowledged;
    invocations that were running are queued again (at least once execution).

    Ops (through the frontend, already checked against schemas/op.<op>.json):
      enqueue           {token, invocation, data?, bucket_id?, run_at?, delay?,
                         max_attempts?, backoff?, timeout?, worker_wait?} -> 202 {id}
                        404 unknown bucket, 410 deleted bucket
      invocation        {id}                        -> 200 {invocation: {...}} | 404
      worker.hello      {classes, capacity, name?}  -> 200 {heartbeat}
      worker.heartbeat  {}                          -> 200 | 404 (say hello again)
      worker.progress   {id, progress?, message?, lease?} -> 200 | 404 | 409
      worker.result     {id, code, response?, error?, retryable?, lease?}
                                                    -> 200 | 202 (kept, passed on) | 404 | 409
      worker.at         {node, epoch?, classes: {class: free slots}}
                                                    -> 200 | 404 (not a member)
      worker.push       {id, bucket_id, invocation, token, data?, attempt, timeout,
                         lease, node}               -> 200 {worker, epoch} | 409 (no room)
      bucket.counts     {bucket_id}                 -> 200 {queued, running, finished}
      bucket.state      {bucket_id, state}          -> 200   (from the batch actor only)
    Sent to the batch actor once a result is on disk: {op: "finished", bucket_id,
    event: the invocation.done event}. Events bucket.created and bucket.deleted
    (written by the batch actor) say which buckets accept enqueues at start.
    Pushed to a worker, unasked: {op: "work", id, bucket_id, invocation, token, data?,
    attempt, timeout}.

    Ownership (see sn_owners.h, and sn_replay.h for the replays, the re-reads and
    the requests that wait for a takeover): with a placement feed the actor holds
    the state of the partitions this node owns only. Gaining one replays it from the
    local store (which holds it: the owner is one of its replicas) and starts its
    timers; losing one drops its invocations from memory (their events stay in the
    log, and a worker still running one hears 404 for its result). enqueue,
    invocation and bucket.counts for a partition owned elsewhere are forwarded to
    its owner.

    Workers anywhere: the actor tells every other member (the placement's members,
    through the mesh's forward {node, request}) which classes its workers run and
    how many more they take, worker.at, soon after a change and every second; a
    member's word is stale after 3.5 s. An owner with due work that no worker here
    has room for pushes it to a member that said it has room (worker.push with a
    fresh lease), at most that room until the member speaks again. The member gives
    it to a worker or refuses (409: the invocation is queued again, first); the
    invocation's state stays with the owner, its timeout runs there. The member
    forwards its worker's worker.progress and worker.result to the owner by the
    id's partition, adding the lease: the owner takes them only while that attempt
    is the running one; the member keeps a result until the owner has taken it,
    trying again while the owner cannot. A member that leaves the placement's
    members, or whose word carries a newer epoch (it started again), has what its
    workers ran queued again at once (504, retryable): with a newer epoch, what an
    older start took, as the push's answer says (a push still waiting for its
    answer is judged by it); a word of an older epoch than the newest heard is a
    late one and is ignored. A worker that goes silent on the member has its pushed
    work reported to the owner the same way.

    Retention: a finished invocation stays in memory (for op invocation) until it
    finished more than keep_finished ms ago and its result is settled: on disk and
    told to the batch actor. Then it is evicted, a bounded number at a time between
    messages; op invocation answers 404 for it. A replay does not load invocations
    that finished more than keep_finished ms ago. bucket.counts is kept at every
    change of state: finished counts the evicted and the ones left out too.

    Pipe commands: "START" (replies "OK" or the error text), "REPLAY" P (replays
    partition P over the state held, for a take-over, in turn from the actor's loop;
    replies "OK" or the error text when that replay ends), "SIZE" (replies the number of
    invocations in memory, for tests), "$TERM".
*/
#ifndef SN_QUEUE_H_INCLUDED
#define SN_QUEUE_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *endpoint; //  inproc endpoint the actor binds its ROUTER to
    const char *log;      //  endpoint answering put: the store, or the mesh (replicated)
    const char *batch;    //  the batch actor's endpoint, told of every result; or NULL
    uint32_t partitions;  //  P: partitions replayed at start
    int worker_timeout;   //  ms of silence after which a worker is taken for dead
    bool verbose;         //  log every transition
    const char *store;    //  endpoint answering scan (replay), or NULL: the log does
    const char *feed;     //  the mesh's placement feed, or NULL: own every partition
    const char *mesh;     //  the mesh's ops, where requests for others' partitions go
    int call_ttl;         //  ms within which the mesh answers every forward (all its
                          //  tries of every replica), however slow the other node;
                          //  0: 30000
    int keep_finished;    //  ms a finished invocation stays in memory once the batch
                          //  actor has its result; 0: one hour
} sn_queue_config_t;

//  Start a queue actor and replay its state. Returns NULL with the reason in error.
zactor_t *sn_queue_new (const sn_queue_config_t *config, char *error, size_t size);

//  The actor function, for zactor_new; args is an sn_queue_config_t, borrowed until
//  START has been answered.
void sn_queue_actor (zsock_t *pipe, void *args);

void sn_queue_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
