/*  sn_dispatch: the dispatch actor. Owns jobs, their tasks and the agent table.

    A job fans one message out as tasks, one per destination device. Device agents
    connect to the client endpoint, say hello with their destination id, and get
    each task as a Sanji message {id, method, resource, data} pushed to them; they
    answer with progress and one result. One task is in flight per destination at a
    time (devices that cannot take two), and a job may bound how many of its tasks
    are in flight at once (concurrency).

    The actor binds a ROUTER on an inproc endpoint; the frontend routes the job,
    task and agent ops to it as [envelope..., payload] and it answers with the same
    envelope. Work and cancels for agents leave the same way, with the envelope of
    the agent's hello in front.

    State is a log of immutable events in the store (config "log"), partition key
    the job id, so everything about one job is one partition:
      job.created    {id, createdAt, timeout, jobTimeout?, concurrency?, tasks: [{method,
                     resource, data?, tunnel?, destination}]}
      task.sent      {task}            the task left for its agent (index, 1-based)
      task.progress  {progress: [[task, percent]...]}   coalesced, at most one per job a
                     second
      task.done      {task, status, result?, finishAt}  resolved or error
      task.timeout   {at}              every unfinished task of the job timed out
      job.cancelled  {at}              every unfinished task cancelled, job cancelled
      job.timeout    {at}              the job's own timeout passed
    Without a feed the actor owns every partition: at START it replays every
    partition with the store's scan op before it answers anything; the pipe command
    "REPLAY p" replays one more partition.

    In a cluster (config "feed": the mesh's placement PUB, and "log": the mesh's ops
    endpoint, which answers put after replicating) the actor owns the partitions
    the placement names this node the owner of, and answers nothing until the first
    placement has been replayed. A partition it comes to own is replayed through
    config "scan" (the mesh's scan, which merges every reachable replica's events) and
    its jobs' dispatch and timers resume; a partition it stops owning has its jobs
    dropped from memory (their events stay in the log). job.create makes a job id
    whose partition is owned here; job.get, job.cancel and task.get for a job of a
    partition owned elsewhere go to the owner through the mesh's forward op and the
    answer comes back under the caller's rid. A forwarded request carries "fwd"
    (hops); one that reaches a node that does not own its partition either is
    answered 503. job.list asked straight asks every other member for its page
    (job.list with fwd: the jobs that member owns) and merges them, newest first.
    A subscription to a job owned elsewhere asks its owner (job.watch, forwarded by
    partition) to send the job's snapshot and updates here (job.update), which are
    published as the owner numbered them; a subscription to "" asks every member
    for all its jobs, and its marker comes once they all answered. Followers ask
    again every S_PRESENCE_MS and are forgotten after S_PRESENCE_TTL.

    Agents may be connected to any member. Each node tells every other member on the
    placement's members list which agents are connected to it, with agent.at through
    the mesh's forward {node, request}: what changed, after each turn of the loop,
    and every agent every S_PRESENCE_MS (at once to a member that appears), at most
    S_PRESENCE_BATCH ids a message; what a member said is forgotten after
    S_PRESENCE_TTL unless it says it again. An owner sends work to an agent
    connected here through its connection, else through the member it is connected
    to, as agent.push {id, message}, which that member pushes to its connection
    (404 when the agent is not there). An agent that leaves that member (it says
    so), a member that leaves the members list, a push refused or a word not
    repeated: the task in flight there waits for the agent again, as when an agent
    connected here goes silent. agent.progress and agent.result for a job owned
    elsewhere are forwarded to the owner by the job's partition, with "fwd"; the
    owner takes a forwarded one as from the agent without touching its connection.

    Every change of a job or task is published on an XPUB (config "publish"):
    frames [job id, meta, body], meta a msgpack map {g, j, snapshot} (g numbers
    every update of any job, j every update of that job), body {resource, data}.
    A subscription to a job id is answered with a snapshot of the job on that topic
    (body {resource: "/jobs", data: job with its tasks}, or {error} when there is no
    such job); a subscription to "" (every job) with a snapshot marker on topic "".
    A subscriber starts at its snapshot and checks that g (all jobs) or j (one job)
    goes up by one: a gap means the XPUB dropped updates for it (too slow).

    A job that is over leaves memory with its tasks once it ended longer ago than
    config "keep_finished" (ms); job.get, task.get and a subscription answer it as
    unknown, saying it may have finished before the window, and job.list leaves it
    out. A replay drops the jobs of the partition that ended before the window.

    Ops (schemas/op.<op>.json):
      job.create {timeout?, batch | destinations + message, ...} -> 200 {job}
      job.get {id, collection?}        -> 200 {job} | 404
      job.list {status?, limit?, before?} -> 200 {jobs, next}
      job.cancel {id}                  -> 200 {job} | 404 | 409 when already finished
      task.get {id}                    -> 200 {task} | 404
      agent.hello {id, heartbeat?}     -> 200 {id}  (the destination id, canonical)
      agent.heartbeat {id}             -> 200
      agent.progress {id, task, progress} -> 200 | 404 | 409
      agent.result {id, task, code, data?} -> 200 once durable | 404 | 409
      agent.at {node, here?, gone?}    -> 200 | 404 when node is not another member
      agent.push {id, message}         -> 200 | 404 when the agent is not connected here
      job.watch {node, id, snapshot?}  -> 200 | 404 (id "" for every job owned here)
      job.update {id, j, snapshot?, body} -> 200 | 404 when nobody here follows the job
    Pushed to agents: {op: "agent.work", id, method, resource, data, tunnel?, timeout}
    and {op: "agent.cancel", id}.

    Pipe commands: "START" (replies "OK" or the error text), "REPLAY" p, "REREAD" p
    and "REREADS" (see sn_replay_command), "AGENTS", "EVICTED" and "CURRENT" id (for
    the selftest), "$TERM".
*/
#ifndef SN_DISPATCH_H_INCLUDED
#define SN_DISPATCH_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Most tasks in one job.
#define SN_DISPATCH_TASKS_MAX 10000

//  Largest update of a job sent to another member that follows it (job.update).
#define SN_DISPATCH_RELAY_MAX (7 * 1024 * 1024)

//  Task timeout when a job does not give one, in ms.
#define SN_DISPATCH_TIMEOUT 36000

typedef struct {
    const char *endpoint; //  inproc endpoint the ROUTER binds to
    const char *log;      //  where events are put (the store, or the mesh), and
                          //  forwards are sent (the mesh, with feed)
    const char *publish;  //  inproc endpoint the XPUB of job changes binds to
    uint32_t partitions;  //  P, to replay every partition at start
    bool verbose;         //  log every request
    const char *scan;     //  answers scan for replay (the store, or the mesh); NULL: log
    const char *feed;     //  the mesh's placement PUB; NULL: own every partition
    int keep_finished;    //  ms a finished job stays in memory; 0: one hour
} sn_dispatch_config_t;

//  Start the actor and replay the jobs of every partition. Returns NULL with the
//  reason in error when an endpoint cannot be bound.
zactor_t *sn_dispatch_new (const sn_dispatch_config_t *config, char *error, size_t size);
void sn_dispatch_actor (zsock_t *pipe, void *args);

//  Canonical form of a destination id into out (at least 65 bytes): a MAC address
//  (six hex pairs split by ':' or '-', written lowercase with ':') or a gateway id
//  (a lowercase prefix of letters and digits, '-', twelve hex digits, lowercased).
//  Returns 0, or -1 when id is neither.
int sn_dispatch_destination (const char *id, size_t len, char *out);

void sn_dispatch_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
