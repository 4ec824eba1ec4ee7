/*  sn_queue: invocations, workers, retries and timers; state is a log of events.
 */
#include "sn_queue.h"
#include "sn_actor.h"
#include "sn_key.h"
#include "sn_msg.h"
#include "sn_routed.h"
#include "sn_json.h"
#include "sn_store.h"
#include "sn_owners.h"
#include "sn_replay.h"
#include "sn_idmap.h"

#include <sys/random.h>

//  Defaults of the enqueue options.
#define S_MAX_ATTEMPTS 3
#define S_BACKOFF      1000               //  ms before the first retry
#define S_BACKOFF_MAX  (3600 * 1000)      //  longest wait between retries
#define S_TIMEOUT      (300 * 1000)       //  ms a worker may run one invocation
#define S_WORKER_WAIT  (24 * 3600 * 1000) //  ms to wait for a worker of the class

//  Writes waiting for the log before new requests are refused with 503.
#define S_PENDING_MAX 50000
#define S_BURST_MAX   1000              //  writes gathered into one message to the log
#define S_BURST_BYTES (8 * 1024 * 1024) //  and their bytes: one store transaction

//  Longest invocation id: 32 hex digits, "-", a partition number.
#define S_ID_MAX 48

//  Word of our workers to other nodes: at most this long after a change (changes
//  in between go in one message), and this often anyway; a node's word is stale
//  after S_PRESENCE_TTL, three messages missed.
#define S_PRESENCE_DELAY 50
#define S_PRESENCE_EVERY 1000
#define S_PRESENCE_TTL   3500

//  Workers one node keeps: a worker is known by its envelope, which a client
//  chooses freely, so without a bound one client could say hello as many workers
//  as it likes, each holding up to 64 KiB of classes.
#define S_WORKERS_MAX 10000

//  Longest class name taken from another node's word (the schema of worker.hello).
#define S_CLASS_MAX 256

//  Requests to other nodes waiting for their answer: forgotten after the config's
//  call_ttl (S_CALL_TTL unless given), within which the mesh answers every forward
//  unless the answer is lost at a high-water mark; and at most S_CALLS_MAX of them,
//  the oldest forgotten first. An answer that comes later is lost: a push's 409 (it
//  stays running until its timeout), a result's answer (it is tried again).
#define S_CALL_TTL  30000
#define S_CALLS_MAX 100000

//  A result another node's worker gave that its owner could not take yet is tried
//  again after this many ms, doubling up to S_RESULT_RETRY_MAX.
#define S_RESULT_RETRY     100
#define S_RESULT_RETRY_MAX 5000

//  A finished invocation stays in memory this many ms unless the config says
//  otherwise; at most S_EVICT_STEP of them leave at a time, between messages.
#define S_KEEP_FINISHED (3600 * 1000)
#define S_EVICT_STEP    1000

//  An epoch whose start time is further ahead of our clock than this is not ordered
#define S_EPOCH_AHEAD (3600 * 1000)

//  A push whose outcome is not known (the mesh's 503, or no answer) is sent again,
//  the same, after this many ms: the member takes it at most once per lease
#define S_PUSH_AGAIN 1000

//  Results of other nodes' work kept here for owners that cannot take them yet, at
//  most: at the cap our word offers no room and pushes are refused (409), so that
//  workers coming and going do not add to them without bound
#define S_HELD_MAX       1000
#define S_HELD_BYTES_MAX (64 * 1024 * 1024)

typedef enum { S_QUEUED, S_RUNNING, S_SUCCEEDED, S_FAILED } s_state_t;

static const char *s_state_names[] = {"queued", "running", "succeeded", "failed"};

typedef struct _s_worker_t s_worker_t;

//  One invocation, from enqueue to its result. The queue holds every invocation it
//  owns in memory: the strings and the event live in the same allocation, after the
//  struct (s_inv_new).
typedef struct {
    char id[S_ID_MAX];      //  "<32 hex>-<partition>": where it lives is in its name
    const char *bucket;     //  bucket_id
    uint32_t partition;     //  sn_partition of bucket, computed once
    const char *class_name; //  invocation.class, to match workers
    const byte *enqueued;   //  the invocation.enqueued event (msgpack map)
    size_t enqueued_size;   //  its bytes
    byte *response;         //  msgpack value the worker answered, or NULL
    size_t response_size;   //  its bytes
    char *error;            //  the worker's or our error text, or NULL
    s_state_t state;        //  where it is
    int code;               //  item code once finished
    uint32_t attempts;      //  times handed to a worker
    uint32_t max_attempts;  //  attempts before a retryable failure is final
    int64_t backoff;        //  ms before the first retry
    int64_t timeout;        //  ms one attempt may run
    int64_t worker_wait;    //  ms to wait for a worker of the class
    int64_t created_at;     //  unix ms of enqueue
    int64_t run_at;         //  unix ms before which it is not handed out
    int64_t started_at;     //  unix ms of the current or last attempt
    int64_t finished_at;    //  unix ms of the result, or 0
    double progress;        //  last progress the worker reported (not durable)
    s_worker_t *worker;     //  who runs it, while running here
    char *remote;           //  the node whose worker runs it, while running there
    char lease[17];         //  while running there: what its result must carry
    char epoch[17];         //  while running there: the start of that node that took it, as
                            //  the push's answer said; "" while not known
    bool pushing;           //  while running there: its push waits for the member's answer
    int64_t push_again;     //  while running there: unix ms to send the same push again,
                            //  its outcome not known; or 0
    void *queued_handle;    //  its place in self->queued, while queued
    bool counted;           //  in self->invocations: its state is in its bucket's counts
    void *finished_handle;  //  its place in self->finished, once settled
} s_inv_t;

//  What bucket.counts answers, kept at every change of state. finished counts
//  those no longer in memory too: evicted, or too old to be loaded by a replay.
typedef struct {
    uint64_t queued;   //  invocations queued
    uint64_t running;  //  invocations running
    uint64_t finished; //  invocations finished, in memory
    uint64_t gone;     //  invocations finished, evicted or left out of a replay
} s_counts_t;

//  One connected worker.
struct _s_worker_t {
    char *key;         //  its envelope in hex: the table key
    zmsg_t *envelope;  //  frames that address pushes to it
    char *name;        //  what it calls itself, for logs and status
    zlist_t *classes;  //  class names it runs (char *)
    uint32_t capacity; //  invocations it takes at a time
    uint32_t busy;     //  invocations it runs now
    int64_t last_seen; //  unix ms of its last message
};

//  What another member's workers take of one class.
typedef struct {
    uint32_t free;   //  free slots, as its last word said
    uint32_t pushed; //  invocations of the class pushed to it since
} s_slots_t;

//  Another member, and what its workers can take as it last said.
typedef struct {
    char *name;      //  member name
    zhashx_t *free;  //  class -> s_slots_t, owned
    int64_t expires; //  unix ms its word goes stale; 0 before its first word
    char epoch[17];  //  its start, as its last word said; "" before
} s_node_t;

//  Work another node owns and pushed to one of our workers. Kept after its result
//  until the owner has taken that result, or has taken the work back anyway; once
//  done, kept as a tombstone until its until: a copy of its push still on the way
//  (its owner did not hear our answer) is known and not run again.
typedef struct {
    char id[S_ID_MAX];    //  the invocation
    char lease[17];       //  the owner's lease, carried by its progress and result
    s_worker_t *worker;   //  who runs it, its slot busy until the owner has the result;
                          //  NULL once that worker is gone, or the attempt done
    char *worker_key;     //  that worker's key: its result sent again is known
    int64_t until;        //  unix ms when the owner has taken it back anyway
    byte *result;         //  the worker.result with the lease, until the owner takes it
    size_t result_size;   //  its bytes
    sn_routed_t *waiting; //  a worker's worker.result, answered by the next try's outcome
    uint64_t waiting_rid; //  its rid
    uint64_t sent;        //  rid of the try of result in flight, or 0
    int64_t retry_at;     //  unix ms of the next try while none is in flight
    int64_t backoff;      //  ms from a failed try to the next
    bool done;            //  the attempt is over: no worker, no result, only its lease
} s_hold_t;

//  A request to another node waiting for its answer.
typedef struct {
    uint64_t rid;      //  the rid of its forward through the mesh
    bool result;       //  a held result passed on to its owner; else a push
    char id[S_ID_MAX]; //  the invocation it is about
    char lease[17];    //  the lease it went with
    int64_t expires;   //  zclock_mono ms when its answer is given up on
    void *handle;      //  its place in self->call_order
} s_call_t;

//  What to do when the log has acknowledged a write.
typedef enum { S_AFTER_NOTHING, S_AFTER_ENQUEUE, S_AFTER_REPLY } s_after_t;

typedef struct {
    s_after_t after;    //  what the acknowledgement completes
    s_inv_t *inv;       //  S_AFTER_ENQUEUE: the invocation to add
    sn_routed_t *reply; //  the request to answer, its payload already the reply
    uint64_t rid;       //  the request's rid, for an error reply
    s_inv_t *finished;  //  an invocation whose result the batch actor is told of
    uint64_t burst;     //  rid of the message to the log that carries the write
} s_pending_t;

typedef struct {
    zsock_t *pipe;            //  our end of the actor pipe
    zsock_t *router;          //  requests from the frontend; pushes to workers
    zsock_t *log;             //  DEALER to the log: the store, or the mesh
    zsock_t *scan;            //  DEALER to the store for replays, or the log itself
    sn_owners_t *owners;      //  the partitions this node owns; forwards the others
    zsock_t *batch;           //  DEALER to the batch actor, told of every result; or NULL
    zpoller_t *poller;        //  pipe, router, log
    sn_idmap_t *invocations;  //  id (the invocation's own) -> s_inv_t, owned
    zlistx_t *finished;       //  s_inv_t finished and settled (on disk, the batch actor
                              //  told), in the order they settled: eviction pops the head
    zhashx_t *counts;         //  bucket_id -> s_counts_t, owned
    int64_t evict_at;         //  unix ms the head of finished is due to go, or INT64_MAX
    zlistx_t *queued;         //  s_inv_t waiting, in enqueue order
    zhashx_t *running;        //  id -> s_inv_t being run (not owned)
    zhashx_t *workers;        //  envelope hex -> s_worker_t, owned
    zhashx_t *pending;        //  rid (the key itself) -> s_pending_t: writes not acked
    zhashx_t *buckets;        //  bucket_id -> "" for buckets that accept enqueues
    zhashx_t *staged;         //  while a re-read runs: id -> s_inv_t unknown here, owned
    zhashx_t *staged_buckets; //  while a re-read runs: buckets unknown here, as buckets
    sn_replay_t *replay;      //  takeovers, re-reads and the requests waiting for them
    sn_pack_t *pack;          //  scratch for events and pushes
    sn_pack_t *reply;         //  scratch for replies
    sn_pack_t *put;           //  scratch for messages to the log
    sn_pack_t *burst;         //  writes gathered for the log, as bulk items
    uint32_t burst_count;     //  items in burst
    uint64_t burst_rid;       //  rid of the first of them; the others follow it
    uint64_t log_rid;         //  last rid sent to the log
    int64_t next_deadline;    //  unix ms of the earliest timer, or INT64_MAX
    sn_queue_config_t config; //  endpoints, borrowed until START
    char *bound;              //  the endpoint the router bound, unbound at the end
    bool verbose;             //  log every transition
    bool terminated;          //  $TERM received
    char id_prefix[17];       //  16 random hex digits, drawn once: the first half of ids
    uint64_t id_count;        //  the second half: how many ids this actor has made
    zsock_t *peers;           //  DEALER to the mesh for word and work to other nodes, or NULL
    zhashx_t *nodes;          //  member name -> s_node_t, every member but this node
    zhashx_t *holds;          //  id -> s_hold_t: other nodes' work our workers run
    size_t held;              //  holds with a result kept for its owner
    size_t held_bytes;        //  the bytes of those results
    zhashx_t *calls;          //  rid (the key itself) -> s_call_t in call_order
    zlistx_t *call_order;     //  s_call_t, owned, oldest first: expiry order
    sn_pack_t *out;           //  scratch for messages to other nodes
    uint64_t peer_rid;        //  last rid sent on peers
    int64_t presence_at;      //  unix ms our word goes out next, or INT64_MAX
    char epoch[17];           //  this start of the actor: later starts have greater epochs
} self_t;

//  --------------------------------------------------------------------------
//  Invocations and workers

static void
s_inv_destroy (s_inv_t **self_p)
{
    s_inv_t *self = *self_p;
    if (self) {
        free (self->remote);
        free (self->response);
        free (self->error);
        free (self);
        *self_p = NULL;
    }
}

static void
s_inv_free (void **item_p)
{
    s_inv_destroy ((s_inv_t **) item_p);
}

static void
s_worker_free (void **item_p)
{
    s_worker_t *self = (s_worker_t *) *item_p;
    if (self) {
        free (self->key);
        free (self->name);
        zmsg_destroy (&self->envelope);
        zlist_destroy (&self->classes);
        free (self);
        *item_p = NULL;
    }
}

static void
s_node_free (void **item_p)
{
    s_node_t *self = (s_node_t *) *item_p;
    if (self) {
        free (self->name);
        zhashx_destroy (&self->free);
        free (self);
        *item_p = NULL;
    }
}

static void
s_hold_free (void **item_p)
{
    s_hold_t *self = (s_hold_t *) *item_p;
    if (self) {
        free (self->worker_key);
        free (self->result);
        if (self->waiting) {
            sn_routed_close (self->waiting);
            free (self->waiting);
        }
        free (self);
        *item_p = NULL;
    }
}

static void
s_plain_free (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

//  The pending table is keyed by the rid itself: no key to format, copy or free
//  for every write.
static size_t
s_rid_hash (const void *key)
{
    return (size_t) (uintptr_t) key;
}

static int
s_rid_compare (const void *one, const void *two)
{
    return (uintptr_t) one < (uintptr_t) two ? -1 : (uintptr_t) one > (uintptr_t) two;
}

static void
s_pending_free (void **item_p)
{
    s_pending_t *self = (s_pending_t *) *item_p;
    if (self) {
        s_inv_destroy (&self->inv);
        if (self->reply) {
            sn_routed_close (self->reply);
            free (self->reply);
        }
        free (self);
        *item_p = NULL;
    }
}

static bool
s_worker_offers (s_worker_t *worker, const char *class_name)
{
    for (const char *offered = (const char *) zlist_first (worker->classes); offered;
         offered = (const char *) zlist_next (worker->classes))
        if (streq (offered, class_name))
            return true;
    return false;
}

//  64 bits no other node can guess: from the kernel's generator, or else from a
//  fresh UUID.
static uint64_t
s_random64 (void)
{
    uint64_t value = 0;
    if (getrandom (&value, sizeof value, 0) != (ssize_t) sizeof value) {
        zuuid_t *uuid = zuuid_new ();
        memcpy (&value, zuuid_data (uuid), sizeof value);
        zuuid_destroy (&uuid);
    }
    return value;
}

//  --------------------------------------------------------------------------
//  The actor's state

static self_t *
s_self_new (zsock_t *pipe, const sn_queue_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->config = *config;
    self->verbose = config->verbose;
    zuuid_t *uuid = zuuid_new ();
    snprintf (self->id_prefix, sizeof self->id_prefix, "%.16s", zuuid_str (uuid));
    for (char *c = self->id_prefix; *c; c++)
        *c = (char) tolower ((unsigned char) *c);
    zuuid_destroy (&uuid);
    //  Start time in ms (11 hex digits, enough for 500 years), then 5 random ones for
    //  two starts in one ms: a later start of this node has a greater epoch, so that a
    //  late word of a start that has been replaced is known as such. Assumes the clock
    //  does not go back by more than the time between two starts.
    snprintf (self->epoch, sizeof self->epoch, "%011" PRIx64 "%05" PRIx64,
              (uint64_t) (zclock_time () & 0xfffffffffffLL), s_random64 () & 0xfffff);
    self->nodes = zhashx_new ();
    zhashx_set_destructor (self->nodes, s_node_free);
    self->holds = zhashx_new ();
    zhashx_set_destructor (self->holds, s_hold_free);
    self->calls = zhashx_new ();
    zhashx_set_key_hasher (self->calls, s_rid_hash);
    zhashx_set_key_comparator (self->calls, s_rid_compare);
    zhashx_set_key_duplicator (self->calls, NULL);
    zhashx_set_key_destructor (self->calls, NULL);
    self->call_order = zlistx_new ();
    zlistx_set_destructor (self->call_order, s_plain_free);
    self->out = sn_pack_new ();
    self->presence_at = INT64_MAX;
    //  Keyed by the id inside each invocation, which lives as long as its entry:
    //  no copy of the key per invocation
    self->invocations = sn_idmap_new ();
    sn_idmap_set_destructor (self->invocations, s_inv_free);
    self->queued = zlistx_new ();
    self->finished = zlistx_new ();
    self->counts = zhashx_new ();
    zhashx_set_destructor (self->counts, s_plain_free);
    self->evict_at = INT64_MAX;
    if (self->config.keep_finished <= 0)
        self->config.keep_finished = S_KEEP_FINISHED;
    self->running = zhashx_new ();
    self->workers = zhashx_new ();
    zhashx_set_destructor (self->workers, s_worker_free);
    self->pending = zhashx_new ();
    zhashx_set_destructor (self->pending, s_pending_free);
    zhashx_set_key_hasher (self->pending, s_rid_hash);
    zhashx_set_key_comparator (self->pending, s_rid_compare);
    zhashx_set_key_duplicator (self->pending, NULL);
    zhashx_set_key_destructor (self->pending, NULL);
    self->buckets = zhashx_new ();
    zhashx_insert (self->buckets, "primary", (void *) "");
    self->pack = sn_pack_new ();
    self->reply = sn_pack_new ();
    self->put = sn_pack_new ();
    self->burst = sn_pack_new ();
    self->next_deadline = INT64_MAX;
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (self) {
        zpoller_destroy (&self->poller);
        //  Closing a socket frees its inproc endpoint only later, in libzmq's reaper:
        //  unbinding frees it now, for an actor started again at once on the same one
        if (self->bound)
            zsock_unbind (self->router, "%s", self->bound);
        free (self->bound);
        zsock_destroy (&self->router);
        if (self->scan != self->log)
            zsock_destroy (&self->scan);
        zsock_destroy (&self->log);
        zsock_destroy (&self->batch);
        zsock_destroy (&self->peers);
        sn_replay_destroy (&self->replay);
        sn_owners_destroy (&self->owners);
        zhashx_destroy (&self->nodes);
        zhashx_destroy (&self->holds);
        zhashx_destroy (&self->calls);
        zlistx_destroy (&self->call_order);
        sn_pack_destroy (&self->out);
        //  A re-read under way at $TERM: what it staged is its own
        for (s_inv_t *inv = self->staged ? (s_inv_t *) zhashx_first (self->staged) : NULL; inv;
             inv = (s_inv_t *) zhashx_next (self->staged))
            s_inv_destroy (&inv);
        zhashx_destroy (&self->staged);
        zhashx_destroy (&self->staged_buckets);
        zhashx_destroy (&self->pending);
        zlistx_destroy (&self->queued);
        zlistx_destroy (&self->finished);
        zhashx_destroy (&self->counts);
        zhashx_destroy (&self->running);
        zhashx_destroy (&self->workers);
        sn_idmap_destroy (&self->invocations);
        zhashx_destroy (&self->buckets);
        sn_pack_destroy (&self->pack);
        sn_pack_destroy (&self->reply);
        sn_pack_destroy (&self->put);
        sn_pack_destroy (&self->burst);
        free (self);
        *self_p = NULL;
    }
}

static void
s_deadline (self_t *self, int64_t when)
{
    if (when < self->next_deadline)
        self->next_deadline = when;
}

//  Our workers' free slots changed: the other nodes hear of it soon, with whatever
//  else changes meanwhile. The word has its own deadline: under load it goes out
//  every S_PRESENCE_DELAY ms, which must not walk every timer each time.
static void
s_presence_changed (self_t *self)
{
    if (!self->peers || zhashx_size (self->nodes) == 0)
        return;
    int64_t when = zclock_time () + S_PRESENCE_DELAY;
    if (when < self->presence_at)
        self->presence_at = when;
}

//  --------------------------------------------------------------------------
//  Counts and retention

//  The counts of bucket, made when first needed.
static s_counts_t *
s_counts_of (self_t *self, const char *bucket)
{
    s_counts_t *counts = (s_counts_t *) zhashx_lookup (self->counts, bucket);
    if (!counts) {
        counts = (s_counts_t *) zmalloc (sizeof (s_counts_t));
        zhashx_insert (self->counts, bucket, counts);
    }
    return counts;
}

static uint64_t *
s_counter (s_counts_t *counts, s_state_t state)
{
    return state == S_QUEUED    ? &counts->queued
           : state == S_RUNNING ? &counts->running
                                : &counts->finished;
}

//  Every change of state goes through here, so that the counts follow it.
static void
s_inv_set_state (self_t *self, s_inv_t *inv, s_state_t state)
{
    if (inv->counted) {
        s_counts_t *counts = s_counts_of (self, inv->bucket);
        uint64_t *from = s_counter (counts, inv->state);
        if (*from > 0)
            (*from)--;
        (*s_counter (counts, state))++;
    }
    inv->state = state;
}

//  inv joins self->invocations: it counts from now on.
static void
s_inv_count (self_t *self, s_inv_t *inv)
{
    inv->counted = true;
    (*s_counter (s_counts_of (self, inv->bucket), inv->state))++;
}

//  inv finished and nothing will tell the batch actor of it any more: it may be
//  evicted once it is older than the window.
static void
s_inv_settled (self_t *self, s_inv_t *inv)
{
    if (inv->finished_handle)
        return;
    inv->finished_handle = zlistx_add_end (self->finished, inv);
    if (zlistx_size (self->finished) == 1)
        self->evict_at = inv->finished_at + self->config.keep_finished;
}

//  Take a finished inv out of memory; it stays in its bucket's finished count.
static void
s_inv_evict (self_t *self, s_inv_t *inv)
{
    if (inv->finished_handle) {
        zlistx_delete (self->finished, inv->finished_handle);
        inv->finished_handle = NULL;
    }
    if (inv->counted) {
        s_counts_t *counts = s_counts_of (self, inv->bucket);
        if (counts->finished > 0)
            counts->finished--;
        counts->gone++;
    }
    sn_idmap_delete (self->invocations, inv->id);
}

static uint32_t s_partition_of (self_t *self, s_inv_t *inv);

//  Evict the settled invocations that finished more than the window ago, at most
//  S_EVICT_STEP of them, from the head of self->finished. The list is in the order
//  they settled, which is about the order they finished: one that finished earlier
//  than the head (replayed after it) waits for the head, at most one window more.
//  One of the partition read again waits until that re-read ends (s_hook_reread_end
//  evicts then): its done may be behind the re-read's cursor, and the re-read must
//  still find it here not to adopt it again.
static void
s_evict (self_t *self, int64_t now)
{
    int64_t window = self->config.keep_finished;
    s_inv_t *inv = (s_inv_t *) zlistx_first (self->finished);
    for (int step = 0; inv && inv->finished_at + window <= now && step < S_EVICT_STEP; step++) {
        if (sn_replay_rereading (self->replay, s_partition_of (self, inv))) {
            self->evict_at = INT64_MAX;
            return;
        }
        s_inv_evict (self, inv);
        inv = (s_inv_t *) zlistx_first (self->finished);
    }
    self->evict_at = inv ? inv->finished_at + window : INT64_MAX;
}

//  --------------------------------------------------------------------------
//  Writing to the log

static void s_reply_error (self_t *self, sn_routed_t *request, uint64_t rid, int code,
                           const char *format, ...) __attribute__ ((format (printf, 5, 6)));

//  A write that will not happen: whoever waits for it hears why.
static void
s_log_refused (self_t *self, s_pending_t *pending, const char *why)
{
    if (pending->reply) {
        s_reply_error (self, pending->reply, pending->rid, 503, "not stored: %s", why);
        pending->reply = NULL;
    }
    if (pending->finished)
        s_inv_settled (self, pending->finished);
    s_pending_free ((void **) &pending);
}

static void s_log_settle (self_t *self, uint64_t rid, uint64_t code, const char *error,
                          size_t error_len);

//  The writes gathered are sent as one bulk, whose results come back in the order of
//  the writes, rids burst_rid and up. One message for what a loop of the actor
//  gathered costs the log one decode and one answer, not one per write.
static void
s_log_flush (self_t *self)
{
    if (self->burst_count == 0)
        return;
    sn_pack_t *request = self->put;
    sn_pack_reset (request);
    sn_pack_map (request, 3);
    sn_pack_kv_str (request, "op", "bulk");
    sn_pack_kv_uint (request, "rid", self->burst_rid);
    sn_pack_str (request, "puts");
    sn_pack_array (request, self->burst_count);
    sn_pack_raw (request, sn_pack_data (self->burst), sn_pack_size (self->burst));
    uint64_t first = self->burst_rid;
    uint32_t count = self->burst_count;
    sn_pack_reset (self->burst);
    self->burst_count = 0;
    if (zmq_send (zsock_resolve (self->log), sn_pack_data (request), sn_pack_size (request),
                  ZMQ_DONTWAIT) == -1) {
        const char *why = "log is not accepting writes";
        for (uint64_t rid = first; rid < first + count; rid++)
            s_log_settle (self, rid, 503, why, strlen (why));
    }
}

//  Write the event in self->pack as type, in the bucket's partition. pending says
//  what to do once it is on disk, and is owned here from now on. The write goes with
//  the others of this loop of the actor (s_log_flush). Returns 0, or -1 when the log
//  cannot take it (pending is then destroyed).
static int
s_log_write (self_t *self, const char *type, const char *bucket, s_pending_t *pending)
{
    if (zhashx_size (self->pending) >= S_PENDING_MAX) {
        s_log_refused (self, pending, "too many writes in flight");
        return -1;
    }
    if (self->burst_count == S_BURST_MAX ||
        (self->burst_count &&
         sn_pack_size (self->burst) + sn_pack_size (self->pack) > S_BURST_BYTES))
        s_log_flush (self);
    uint64_t rid = ++self->log_rid;
    if (self->burst_count == 0)
        self->burst_rid = rid;
    pending->burst = self->burst_rid;
    sn_pack_t *item = self->burst;
    sn_pack_map (item, 3);
    sn_pack_kv_str (item, "type", type);
    sn_pack_kv_str (item, "pkey", bucket);
    sn_pack_str (item, "event");
    sn_pack_raw (item, sn_pack_data (self->pack), sn_pack_size (self->pack));
    self->burst_count++;
    zhashx_insert (self->pending, (void *) (uintptr_t) rid, pending);
    return 0;
}

//  Write an event nobody waits for: a transition the next one makes irrelevant if
//  it is lost (started), or that replay derives anyway.
static void
s_log_note (self_t *self, const char *type, s_inv_t *inv)
{
    s_pending_t *pending = (s_pending_t *) zmalloc (sizeof (s_pending_t));
    pending->after = S_AFTER_NOTHING;
    if (streq (type, "invocation.done"))
        pending->finished = inv;
    s_log_write (self, type, inv->bucket, pending);
}

//  --------------------------------------------------------------------------
//  Replies

//  Send self->reply as the answer to request, and release the request.
static void
s_reply_send (self_t *self, sn_routed_t *request)
{
    sn_routed_set_payload (request, sn_pack_data (self->reply), sn_pack_size (self->reply));
    //  A ROUTER drops what it cannot deliver rather than block
    if (sn_routed_send (request, self->router))
        sn_routed_close (request);
    free (request);
}

static void
s_reply_error (self_t *self, sn_routed_t *request, uint64_t rid, int code, const char *format, ...)
{
    char text[512];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    sn_pack_error (self->reply, rid, code, "%s", text);
    s_reply_send (self, request);
}

static void
s_reply_code (self_t *self, sn_routed_t *request, uint64_t rid, int code)
{
    sn_pack_reset (self->reply);
    sn_pack_map (self->reply, 2);
    sn_pack_kv_uint (self->reply, "rid", rid);
    sn_pack_kv_uint (self->reply, "code", (uint64_t) code);
    s_reply_send (self, request);
}

//  Answer once the event in self->pack is on disk: self->reply is the answer.
static void
s_reply_when_written (self_t *self, const char *type, s_inv_t *inv, sn_routed_t *request,
                      uint64_t rid)
{
    const char *bucket = inv->bucket;
    s_pending_t *pending = (s_pending_t *) zmalloc (sizeof (s_pending_t));
    pending->after = S_AFTER_REPLY;
    pending->rid = rid;
    if (streq (type, "invocation.done"))
        pending->finished = inv;
    sn_routed_set_payload (request, sn_pack_data (self->reply), sn_pack_size (self->reply));
    pending->reply = request;
    s_log_write (self, type, bucket, pending);
}

//  --------------------------------------------------------------------------
//  Transitions

//  A queued invocation id of bucket, its class and options read from values: the
//  enqueue request, or its invocation.enqueued event, which use the same names.
//  event and event_size are its invocation.enqueued bytes, copied into the same
//  allocation; the node has partitions partitions. NULL when one is missing.
static s_inv_t *
s_inv_new (const char *id, size_t id_len, const char *bucket, size_t bucket_len,
           const sn_value_t *values, const void *event, size_t event_size, uint32_t partitions)
{
    size_t class_len = 0;
    const char *class_name =
        sn_value_str (sn_value_get (sn_value_get (values, "invocation"), "class"), &class_len);
    if (!id || id_len == 0 || id_len >= S_ID_MAX || !bucket || !class_name)
        return NULL;
    //  One allocation, not four: the struct, the event, the bucket and the class
    s_inv_t *inv =
        (s_inv_t *) malloc (sizeof (s_inv_t) + event_size + bucket_len + 1 + class_len + 1);
    assert (inv);
    memset (inv, 0, sizeof (s_inv_t));
    byte *tail = (byte *) (inv + 1);
    memcpy (tail, event, event_size);
    inv->enqueued = tail;
    inv->enqueued_size = event_size;
    tail += event_size;
    memcpy (tail, bucket, bucket_len);
    tail[bucket_len] = 0;
    inv->bucket = (const char *) tail;
    tail += bucket_len + 1;
    memcpy (tail, class_name, class_len);
    tail[class_len] = 0;
    inv->class_name = (const char *) tail;
    memcpy (inv->id, id, id_len);
    inv->partition = sn_partition (inv->bucket, bucket_len, partitions);
    uint64_t number = 0;
    inv->max_attempts = sn_value_uint (sn_value_get (values, "max_attempts"), &number) && number
                            ? (uint32_t) number
                            : S_MAX_ATTEMPTS;
    inv->backoff =
        sn_value_uint (sn_value_get (values, "backoff"), &number) ? (int64_t) number : S_BACKOFF;
    inv->timeout =
        sn_value_uint (sn_value_get (values, "timeout"), &number) ? (int64_t) number : S_TIMEOUT;
    inv->worker_wait = sn_value_uint (sn_value_get (values, "worker_wait"), &number)
                           ? (int64_t) number
                           : S_WORKER_WAIT;
    inv->state = S_QUEUED;
    return inv;
}

//  Read the invocation.enqueued event back into an invocation; data and size are
//  the event's bytes.
static s_inv_t *
s_inv_from_event (const sn_value_t *event, const void *data, size_t size, uint32_t partitions)
{
    size_t id_len = 0, bucket_len = 0;
    const char *id = sn_value_str (sn_value_get (event, "id"), &id_len);
    const char *bucket = sn_value_str (sn_value_get (event, "bucket_id"), &bucket_len);
    s_inv_t *inv = s_inv_new (id, id_len, bucket, bucket_len, event, data, size, partitions);
    if (inv) {
        sn_value_int (sn_value_get (event, "created_at"), &inv->created_at);
        sn_value_int (sn_value_get (event, "run_at"), &inv->run_at);
    }
    return inv;
}

static void
s_inv_queue (self_t *self, s_inv_t *inv, int64_t run_at)
{
    s_inv_set_state (self, inv, S_QUEUED);
    inv->run_at = run_at;
    inv->worker = NULL;
    if (!inv->queued_handle)
        inv->queued_handle = zlistx_add_end (self->queued, inv);
    //  Work due now goes out in the s_dispatch that follows every change: a timer
    //  for it would walk the whole queue in s_timers after every enqueue
    if (run_at > zclock_time ())
        s_deadline (self, run_at);
    if (inv->attempts == 0)
        s_deadline (self, run_at + inv->worker_wait);
}

static void
s_inv_unqueue (self_t *self, s_inv_t *inv)
{
    if (inv->queued_handle) {
        zlistx_delete (self->queued, inv->queued_handle);
        inv->queued_handle = NULL;
    }
}

//  Pack the finishing event of inv into self->pack.
static void
s_pack_done (self_t *self, s_inv_t *inv)
{
    //  The result is whole in its event: the batch actor commits it from there
    const char *reason = NULL;
    sn_msg_t *event = sn_msg_decode_trusted (inv->enqueued, inv->enqueued_size, &reason);
    const sn_value_t *data = sn_value_get (sn_msg_root (event), "data");
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, 7 + (data != NULL) + (inv->response != NULL) + (inv->error != NULL));
    sn_pack_kv_value (self->pack, "token", sn_value_get (sn_msg_root (event), "token"));
    if (data)
        sn_pack_kv_value (self->pack, "data", data);
    sn_msg_destroy (&event);
    sn_pack_kv_str (self->pack, "id", inv->id);
    sn_pack_kv_str (self->pack, "state", s_state_names[inv->state]);
    sn_pack_kv_uint (self->pack, "code", (uint64_t) inv->code);
    sn_pack_kv_uint (self->pack, "attempts", inv->attempts);
    sn_pack_str (self->pack, "finished_at");
    sn_pack_int (self->pack, inv->finished_at);
    sn_pack_str (self->pack, "bucket_id");
    sn_pack_str (self->pack, inv->bucket);
    if (inv->response) {
        sn_pack_str (self->pack, "response");
        sn_pack_raw (self->pack, inv->response, inv->response_size);
    }
    if (inv->error)
        sn_pack_kv_str (self->pack, "error", inv->error);
}

//  Pack the retry event of inv into self->pack.
static void
s_pack_retry (self_t *self, s_inv_t *inv, int code, const char *error)
{
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, 4 + (error != NULL));
    sn_pack_kv_str (self->pack, "id", inv->id);
    sn_pack_kv_uint (self->pack, "code", (uint64_t) code);
    sn_pack_kv_uint (self->pack, "attempts", inv->attempts);
    sn_pack_str (self->pack, "run_at");
    sn_pack_int (self->pack, inv->run_at);
    if (error)
        sn_pack_kv_str (self->pack, "error", error);
}

//  Take inv off its worker, if it has one.
static void
s_inv_release (self_t *self, s_inv_t *inv)
{
    if (inv->worker) {
        if (inv->worker->busy > 0)
            inv->worker->busy--;
        s_presence_changed (self);
    }
    inv->worker = NULL;
    free (inv->remote);
    inv->remote = NULL;
    inv->lease[0] = 0;
    inv->epoch[0] = 0;
    inv->pushing = false;
    inv->push_again = 0;
    zhashx_delete (self->running, inv->id);
}

static void
s_inv_set_error (s_inv_t *inv, const char *error)
{
    free (inv->error);
    inv->error = error ? strdup (error) : NULL;
}

//  An attempt failed with code. Retried after a backoff while retryable and attempts
//  remain (at once when backoff is false), else final. Packs the event to write
//  into self->pack and returns its type.
static const char *
s_inv_fail (self_t *self, s_inv_t *inv, int code, const char *error, bool retryable, bool backoff)
{
    s_inv_release (self, inv);
    int64_t now = zclock_time ();
    if (retryable && inv->attempts < inv->max_attempts) {
        int64_t wait = 0;
        if (backoff) {
            wait = inv->backoff;
            for (uint32_t attempt = 1; attempt < inv->attempts && wait < S_BACKOFF_MAX; attempt++)
                wait *= 2;
            if (wait > S_BACKOFF_MAX)
                wait = S_BACKOFF_MAX;
        }
        s_inv_set_error (inv, error);
        s_inv_queue (self, inv, now + wait);
        s_pack_retry (self, inv, code, error);
        if (self->verbose)
            zsys_info ("sn_queue: %s attempt %u failed with %d, retry in %" PRId64 " ms", inv->id,
                       inv->attempts, code, wait);
        return "invocation.retry";
    }
    s_inv_set_state (self, inv, S_FAILED);
    inv->code = code;
    inv->finished_at = now;
    s_inv_set_error (inv, error);
    s_pack_done (self, inv);
    if (self->verbose)
        zsys_info ("sn_queue: %s failed with %d after %u attempts", inv->id, code, inv->attempts);
    return "invocation.done";
}

//  Pack the work a worker is given, from the values of the invocation.enqueued
//  event: {op, id, bucket_id, invocation, token, data?, attempt, timeout}, and
//  room for extra more entries that the caller packs next.
static void
s_pack_work (sn_pack_t *pack, const char *op, const char *id, const char *bucket,
             const sn_value_t *invocation, const sn_value_t *token, const sn_value_t *data,
             uint64_t attempt, uint64_t timeout, uint32_t extra)
{
    sn_pack_reset (pack);
    sn_pack_map (pack, 7 + (data != NULL) + extra);
    sn_pack_kv_str (pack, "op", op);
    sn_pack_kv_str (pack, "id", id);
    sn_pack_kv_str (pack, "bucket_id", bucket);
    sn_pack_kv_value (pack, "invocation", invocation);
    sn_pack_kv_value (pack, "token", token);
    if (data)
        sn_pack_kv_value (pack, "data", data);
    sn_pack_kv_uint (pack, "attempt", attempt);
    sn_pack_kv_uint (pack, "timeout", timeout);
}

//  Send the work in self->pack to worker. A worker that cannot take it now gets it
//  back through its timeout.
static void
s_send_work (self_t *self, s_worker_t *worker)
{
    zmsg_t *push = zmsg_dup (worker->envelope);
    zframe_t *payload = sn_pack_frame (self->pack);
    zmsg_append (push, &payload);
    if (zmsg_send (&push, self->router))
        zmsg_destroy (&push);
}

//  Note in the log that inv started on the worker so named.
static void
s_note_started (self_t *self, s_inv_t *inv, const char *worker)
{
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, 4);
    sn_pack_kv_str (self->pack, "id", inv->id);
    sn_pack_kv_uint (self->pack, "attempts", inv->attempts);
    sn_pack_kv_str (self->pack, "worker", worker);
    sn_pack_str (self->pack, "started_at");
    sn_pack_int (self->pack, inv->started_at);
    s_log_note (self, "invocation.started", inv);
}

//  Hand inv to worker: mark it running, push the work, note the start.
static void
s_inv_start (self_t *self, s_inv_t *inv, s_worker_t *worker)
{
    s_inv_unqueue (self, inv);
    s_inv_set_state (self, inv, S_RUNNING);
    inv->worker = worker;
    inv->attempts++;
    inv->started_at = zclock_time ();
    inv->progress = 0;
    worker->busy++;
    s_presence_changed (self);
    zhashx_insert (self->running, inv->id, inv);
    s_deadline (self, inv->started_at + inv->timeout);

    //  The work carries what the enqueue carried, so the worker needs nothing else
    const char *reason = NULL;
    sn_msg_t *event = sn_msg_decode_trusted (inv->enqueued, inv->enqueued_size, &reason);
    const sn_value_t *root = sn_msg_root (event);
    s_pack_work (self->pack, "work", inv->id, inv->bucket, sn_value_get (root, "invocation"),
                 sn_value_get (root, "token"), sn_value_get (root, "data"), inv->attempts,
                 (uint64_t) inv->timeout, 0);
    sn_msg_destroy (&event);
    s_send_work (self, worker);
    if (self->verbose)
        zsys_info ("sn_queue: %s attempt %u to worker %s", inv->id, inv->attempts, worker->name);
    s_note_started (self, inv, worker->name);
}

//  The least busy worker with room that offers the class, or NULL.
static s_worker_t *
s_worker_for (self_t *self, const char *class_name)
{
    s_worker_t *best = NULL;
    for (s_worker_t *worker = (s_worker_t *) zhashx_first (self->workers); worker;
         worker = (s_worker_t *) zhashx_next (self->workers))
        if (worker->busy < worker->capacity && s_worker_offers (worker, class_name) &&
            (!best || worker->busy * best->capacity < best->busy * worker->capacity))
            best = worker;
    return best;
}

static bool
s_any_room (self_t *self)
{
    for (s_worker_t *worker = (s_worker_t *) zhashx_first (self->workers); worker;
         worker = (s_worker_t *) zhashx_next (self->workers))
        if (worker->busy < worker->capacity)
            return true;
    return false;
}

//  --------------------------------------------------------------------------
//  Workers connected to other nodes
//
//  Each node tells every other member, through the mesh's forward {node, request},
//  which classes its workers run and how many more invocations they take:
//  worker.at {node, classes: {class: free slots}}, soon after a change and every
//  S_PRESENCE_EVERY ms. An owner with due work of a class no worker here has room
//  for pushes it to a node that said it has room, worker.push {the work, lease,
//  node}, never more than that node's word allows; the node gives it to one of its
//  workers or refuses, and the invocation stays queued here. The invocation's state
//  stays here: the node forwards its worker's progress and result to the owner by
//  the id's partition, with the lease, which says the attempt is still the one
//  pushed.

//  A lease for one push: unguessable, so that only the node the work went to can
//  report on the attempt, and a result for an attempt taken back does not count.
//  Drawn from the kernel per push (a system call of a few hundred nanoseconds): a
//  generator of our own would tell its next leases to anyone who saw one.
static void
s_lease_new (char *lease)
{
    snprintf (lease, 17, "%016" PRIx64, s_random64 ());
}

//  An epoch orders a node's starts when it is 16 lowercase hex digits whose time
//  part is not far ahead of our clock: a start booted with a wrong clock (or any
//  other string) would otherwise outrank every later real start of that node.
static bool
s_epoch_ordered (const char *epoch)
{
    size_t len = strlen (epoch);
    if (len != 16 || strspn (epoch, "0123456789abcdef") != len)
        return false;
    char start[12];
    memcpy (start, epoch, 11);
    start[11] = 0;
    return (int64_t) strtoull (start, NULL, 16) <= zclock_time () + S_EPOCH_AHEAD;
}

//  Epoch one is of an earlier start than epoch two. Only ordered epochs compare;
//  two starts whose epochs do not are not known to be one before the other.
static bool
s_epoch_older (const char *one, const char *two)
{
    return s_epoch_ordered (one) && s_epoch_ordered (two) && strcmp (one, two) < 0;
}

//  Send the request in self->pack through the mesh: to the node named, or to the
//  owner of partition p when node is NULL. Returns the rid of its answer, or 0
//  when the mesh cannot take it now.
static uint64_t
s_peer_send (self_t *self, const char *node, uint32_t p)
{
    sn_pack_reset (self->out);
    sn_pack_map (self->out, 4);
    sn_pack_kv_str (self->out, "op", "forward");
    sn_pack_kv_uint (self->out, "rid", ++self->peer_rid);
    if (node)
        sn_pack_kv_str (self->out, "node", node);
    else
        sn_pack_kv_uint (self->out, "p", p);
    sn_pack_str (self->out, "request");
    sn_pack_raw (self->out, sn_pack_data (self->pack), sn_pack_size (self->pack));
    if (zmq_send (zsock_resolve (self->peers), sn_pack_data (self->out), sn_pack_size (self->out),
                  ZMQ_DONTWAIT) == -1)
        return 0;
    return self->peer_rid;
}

//  The request to another node sent under rid, no longer waited for; or NULL.
static s_call_t *
s_call_take (self_t *self, uint64_t rid)
{
    void *key = (void *) (uintptr_t) rid;
    s_call_t *call = rid ? (s_call_t *) zhashx_lookup (self->calls, key) : NULL;
    if (call) {
        zhashx_delete (self->calls, key);
        zlistx_detach (self->call_order, call->handle);
    }
    return call;
}

static void s_hold_failed (self_t *self, s_hold_t *hold, const char *why);
static void s_inv_push_later (self_t *self, s_inv_t *inv);
static void s_hold_answered (self_t *self, s_hold_t *hold, const sn_value_t *answer, uint64_t code);

//  Answers not come in time: what they were about carries on without them, and the
//  answer, should it come later, is not heard. A push whose answer is lost may be
//  running there: it stays running under its lease and is sent again, the same
//  (the member takes it once), until an answer, its timeout or the word of a newer
//  start of the member. A result whose answer is lost is tried again.
static void
s_calls_expire (self_t *self, int64_t now)
{
    s_call_t *call;
    while ((call = (s_call_t *) zlistx_first (self->call_order)) &&
           (call->expires <= now || zlistx_size (self->call_order) > S_CALLS_MAX)) {
        call = s_call_take (self, call->rid);
        if (self->verbose)
            zsys_info ("sn_queue: no answer about %s from another node", call->id);
        //  A push whose answer is lost may have been taken by any start of the node:
        //  sent again, or taken back by the next new start's word
        s_inv_t *inv =
            call->result ? NULL : (s_inv_t *) sn_idmap_lookup (self->invocations, call->id);
        if (inv && inv->pushing && streq (inv->lease, call->lease))
            s_inv_push_later (self, inv);
        s_hold_t *hold = call->result ? (s_hold_t *) zhashx_lookup (self->holds, call->id) : NULL;
        if (hold && hold->sent == call->rid)
            s_hold_failed (self, hold, "no answer from the owner");
        free (call);
    }
}

//  Ms until the oldest request to another node is given up on, or INT64_MAX.
//  Call deadlines are on the monotonic clock: a step of the wall clock does not
//  give up on every call at once.
static int64_t
s_calls_wait (self_t *self)
{
    s_call_t *call = (s_call_t *) zlistx_first (self->call_order);
    return call ? call->expires - zclock_mono () : INT64_MAX;
}

//  Wait for the answer to the request sent under rid, about invocation id.
static void
s_call_add (self_t *self, uint64_t rid, const char *id, const char *lease, bool result)
{
    s_call_t *call = (s_call_t *) zmalloc (sizeof (s_call_t));
    call->rid = rid;
    call->result = result;
    snprintf (call->id, sizeof call->id, "%s", id);
    snprintf (call->lease, sizeof call->lease, "%s", lease);
    int64_t now = zclock_mono ();
    call->expires = now + (self->config.call_ttl > 0 ? self->config.call_ttl : S_CALL_TTL);
    call->handle = zlistx_add_end (self->call_order, call);
    zhashx_update (self->calls, (void *) (uintptr_t) rid, call);
    s_calls_expire (self, now);
}

//  We keep as many results for their owners as we may: no more work from others.
static bool
s_held_full (self_t *self)
{
    return self->held >= S_HELD_MAX || self->held_bytes >= S_HELD_BYTES_MAX;
}

//  Tell one node, or every other member when to is NULL, what our workers take.
static void
s_presence_send (self_t *self, s_node_t *to)
{
    const char *name = sn_owners_name (self->owners);
    if (!self->peers || !name)
        return;
    zhashx_t *free_slots = zhashx_new ();
    zhashx_set_destructor (free_slots, s_plain_free);
    for (s_worker_t *worker = (s_worker_t *) zhashx_first (self->workers); worker;
         worker = (s_worker_t *) zhashx_next (self->workers)) {
        uint32_t room = worker->busy < worker->capacity && !s_held_full (self)
                            ? worker->capacity - worker->busy
                            : 0;
        for (const char *class_name = (const char *) zlist_first (worker->classes); class_name;
             class_name = (const char *) zlist_next (worker->classes)) {
            uint32_t *slots = (uint32_t *) zhashx_lookup (free_slots, class_name);
            if (!slots) {
                slots = (uint32_t *) zmalloc (sizeof (uint32_t));
                zhashx_insert (free_slots, class_name, slots);
            }
            *slots += room;
        }
    }
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, 5);
    sn_pack_kv_str (self->pack, "op", "worker.at");
    sn_pack_kv_uint (self->pack, "rid", 0);
    sn_pack_kv_str (self->pack, "node", name);
    sn_pack_kv_str (self->pack, "epoch", self->epoch);
    sn_pack_str (self->pack, "classes");
    sn_pack_map (self->pack, (uint32_t) zhashx_size (free_slots));
    for (uint32_t *slots = (uint32_t *) zhashx_first (free_slots); slots;
         slots = (uint32_t *) zhashx_next (free_slots))
        sn_pack_kv_uint (self->pack, (const char *) zhashx_cursor (free_slots), *slots);
    zhashx_destroy (&free_slots);
    if (to)
        s_peer_send (self, to->name, 0);
    else
        for (s_node_t *node = (s_node_t *) zhashx_first (self->nodes); node;
             node = (s_node_t *) zhashx_next (self->nodes))
            s_peer_send (self, node->name, 0);
}

//  How many more invocations of the class node takes, as far as its word goes.
static uint32_t
s_node_room (s_node_t *node, const char *class_name, int64_t now)
{
    if (node->expires <= now)
        return 0;
    s_slots_t *slots = (s_slots_t *) zhashx_lookup (node->free, class_name);
    return slots && slots->free > slots->pushed ? slots->free - slots->pushed : 0;
}

//  The node with the most room for the class, or NULL.
static s_node_t *
s_node_for (self_t *self, const char *class_name, int64_t now)
{
    s_node_t *best = NULL;
    uint32_t best_room = 0;
    for (s_node_t *node = (s_node_t *) zhashx_first (self->nodes); node;
         node = (s_node_t *) zhashx_next (self->nodes)) {
        uint32_t room = s_node_room (node, class_name, now);
        if (room > best_room) {
            best = node;
            best_room = room;
        }
    }
    return best;
}

static bool
s_any_remote_room (self_t *self, int64_t now)
{
    for (s_node_t *node = (s_node_t *) zhashx_first (self->nodes); node;
         node = (s_node_t *) zhashx_next (self->nodes)) {
        if (node->expires <= now)
            continue;
        for (s_slots_t *slots = (s_slots_t *) zhashx_first (node->free); slots;
             slots = (s_slots_t *) zhashx_next (node->free))
            if (slots->free > slots->pushed)
                return true;
    }
    return false;
}

//  Some node said it runs the class (busy or not).
static bool
s_remote_offers (self_t *self, const char *class_name, int64_t now)
{
    for (s_node_t *node = (s_node_t *) zhashx_first (self->nodes); node;
         node = (s_node_t *) zhashx_next (self->nodes))
        if (node->expires > now && zhashx_lookup (node->free, class_name))
            return true;
    return false;
}

//  A push refused or not delivered: inv is queued again, first in line, as if it
//  had not been handed out.
static void
s_inv_unpush (self_t *self, s_inv_t *inv)
{
    s_inv_release (self, inv);
    if (inv->attempts > 0)
        inv->attempts--;
    s_inv_set_state (self, inv, S_QUEUED);
    if (!inv->queued_handle)
        inv->queued_handle = zlistx_add_start (self->queued, inv);
    s_deadline (self, zclock_time ());
}

static bool s_inv_push_send (self_t *self, s_inv_t *inv);

//  Push inv to a worker of node: it runs there from now on, for its timeout, unless
//  the node refuses it.
static void
s_inv_push (self_t *self, s_inv_t *inv, s_node_t *node)
{
    s_inv_unqueue (self, inv);
    s_inv_set_state (self, inv, S_RUNNING);
    inv->worker = NULL;
    inv->remote = strdup (node->name);
    //  Which start of the node takes it is known from the answer only: the word of
    //  a new start may come before the answer of the push that start took
    inv->epoch[0] = 0;
    inv->pushing = true;
    s_lease_new (inv->lease);
    inv->attempts++;
    inv->started_at = zclock_time ();
    inv->progress = 0;
    //  Counted per class: a member running several classes takes its word's slots of
    //  each (a worker offering several may then refuse some, 409, first in line again)
    s_slots_t *slots = (s_slots_t *) zhashx_lookup (node->free, inv->class_name);
    if (slots)
        slots->pushed++;
    zhashx_insert (self->running, inv->id, inv);
    s_deadline (self, inv->started_at + inv->timeout);
    if (!s_inv_push_send (self, inv)) {
        s_inv_unpush (self, inv);
        return;
    }
    if (self->verbose)
        zsys_info ("sn_queue: %s attempt %u pushed to node %s", inv->id, inv->attempts, node->name);
}

//  A push of inv whose outcome is not known: the same push goes again soon. The
//  start that took it confirms it; a new start of the member (the one that took it
//  gone) runs it, once.
static void
s_inv_push_later (self_t *self, s_inv_t *inv)
{
    inv->pushing = false;
    inv->push_again = zclock_time () + S_PUSH_AGAIN;
    s_deadline (self, inv->push_again);
}

//  Send the push of inv, under its lease, to its node. False when the mesh cannot
//  take it now.
static bool
s_inv_push_send (self_t *self, s_inv_t *inv)
{
    const char *reason = NULL;
    sn_msg_t *event = sn_msg_decode_trusted (inv->enqueued, inv->enqueued_size, &reason);
    const sn_value_t *root = sn_msg_root (event);
    s_pack_work (self->pack, "worker.push", inv->id, inv->bucket, sn_value_get (root, "invocation"),
                 sn_value_get (root, "token"), sn_value_get (root, "data"), inv->attempts,
                 (uint64_t) inv->timeout, 3);
    sn_msg_destroy (&event);
    sn_pack_kv_uint (self->pack, "rid", 0);
    sn_pack_kv_str (self->pack, "lease", inv->lease);
    sn_pack_kv_str (self->pack, "node", sn_owners_name (self->owners));
    uint64_t rid = s_peer_send (self, inv->remote, 0);
    if (!rid)
        return false;
    inv->pushing = true;
    inv->push_again = 0;
    s_call_add (self, rid, inv->id, inv->lease, false);
    return true;
}

//  Whether inv belongs to a partition whose takeover is not over: what of it is
//  loaded may lack later events (its end among them), so it is neither handed out
//  nor timed until then.
static bool
s_loading (self_t *self, s_inv_t *inv)
{
    return sn_replay_taking (self->replay, s_partition_of (self, inv));
}

//  Hand out every due invocation a worker has room for, oldest first: to a worker
//  here, or else to another node's.
static void
s_dispatch (self_t *self)
{
    int64_t now = zclock_time ();
    bool local = s_any_room (self), remote = s_any_remote_room (self, now);
    s_inv_t *inv = (s_inv_t *) zlistx_first (self->queued);
    while (inv && (local || remote)) {
        s_inv_t *next = (s_inv_t *) zlistx_next (self->queued);
        if (inv->run_at <= now && !s_loading (self, inv)) {
            s_worker_t *worker = local ? s_worker_for (self, inv->class_name) : NULL;
            s_node_t *node = !worker && remote ? s_node_for (self, inv->class_name, now) : NULL;
            if (worker) {
                s_inv_start (self, inv, worker);
                local = s_any_room (self);
            }
            else if (node) {
                s_inv_push (self, inv, node);
                remote = s_any_remote_room (self, now);
            }
        }
        inv = next;
    }
}

//  What a worker of another node ran for us is queued again at once: its result
//  will not come.
static void
s_inv_take_back (self_t *self, s_inv_t *inv, const char *why)
{
    const char *type = s_inv_fail (self, inv, 504, why, true, false);
    s_log_note (self, type, inv);
}

//  Answers from the mesh to what we sent other nodes: a push taken is noted as
//  started; one refused (no room there now) or not delivered is queued again, and
//  that node gets no more of the class until it speaks again.
static void
s_peers_drain (self_t *self)
{
    zframe_t *frame;
    while ((frame = zframe_recv_nowait (self->peers))) {
        const char *reason = NULL;
        sn_msg_t *answer =
            sn_msg_decode_trusted (zframe_data (frame), zframe_size (frame), &reason);
        zframe_destroy (&frame);
        const sn_value_t *root = sn_msg_root (answer);
        uint64_t rid = 0, code = 0;
        sn_value_uint (sn_value_get (root, "rid"), &rid);
        sn_value_uint (sn_value_get (root, "code"), &code);
        s_call_t *call = s_call_take (self, rid);
        if (call && call->result) {
            s_hold_t *hold = (s_hold_t *) zhashx_lookup (self->holds, call->id);
            if (hold && hold->sent == rid)
                s_hold_answered (self, hold, root, code);
            free (call);
            sn_msg_destroy (&answer);
            continue;
        }
        s_inv_t *inv = call ? (s_inv_t *) sn_idmap_lookup (self->invocations, call->id) : NULL;
        if (inv && inv->state == S_RUNNING && inv->remote && streq (inv->lease, call->lease)) {
            inv->pushing = false;
            s_node_t *node = (s_node_t *) zhashx_lookup (self->nodes, inv->remote);
            if (code == 200) {
                //  The start of the node that took it
                size_t len = 0;
                const char *epoch = sn_value_str (sn_value_get (root, "epoch"), &len);
                if (epoch && len > 0 && len < sizeof inv->epoch) {
                    memcpy (inv->epoch, epoch, len);
                    inv->epoch[len] = 0;
                }
                else
                    epoch = NULL; //  not known: the next new start's word takes it back
                char *worker = sn_value_get_strdup (root, "worker");
                char *name = zsys_sprintf ("%s@%s", worker ? worker : "?", inv->remote);
                s_note_started (self, inv, name);
                free (name);
                free (worker);
                //  Taken by a start that a newer one has replaced since: lost with it
                if (epoch && node && s_epoch_older (inv->epoch, node->epoch) &&
                    node->expires > zclock_time ())
                    s_inv_take_back (self, inv, "the node of its worker started again");
            }
            else {
                char *error = sn_value_get_strdup (root, "error");
                if (self->verbose)
                    zsys_info ("sn_queue: %s not taken by node %s: %" PRIu64 " %s", inv->id,
                               inv->remote, code, error ? error : "?");
                free (error);
                s_slots_t *slots =
                    node ? (s_slots_t *) zhashx_lookup (node->free, inv->class_name) : NULL;
                if (slots)
                    slots->free = 0;
                //  A 4xx is the member's answer: it handed nothing out. Any other (the
                //  mesh's 503 when the member was slow to answer) may hide a worker
                //  running it: it stays running under its lease, and the same push
                //  goes again, which that member takes at most once.
                if (code >= 400 && code < 500)
                    s_inv_unpush (self, inv);
                else
                    s_inv_push_later (self, inv);
            }
        }
        free (call);
        sn_msg_destroy (&answer);
    }
    s_dispatch (self);
}

//  What workers of the node so named ran for us is queued again at once: its
//  results will not come. With epoch, only what a start of it other than epoch
//  took (or one not known), but with keep_newer not what a start newer than epoch
//  took (its answer came before its word): a push still waiting for its answer is
//  judged by that answer.
static void
s_node_take_back (self_t *self, const char *name, const char *epoch, bool keep_newer,
                  const char *why)
{
    zlistx_t *held = zlistx_new ();
    for (s_inv_t *inv = (s_inv_t *) zhashx_first (self->running); inv;
         inv = (s_inv_t *) zhashx_next (self->running))
        if (inv->remote && streq (inv->remote, name) &&
            (!epoch || (!inv->pushing && !streq (inv->epoch, epoch) &&
                        !(keep_newer && s_epoch_older (epoch, inv->epoch)))))
            zlistx_add_end (held, inv);
    for (s_inv_t *inv = (s_inv_t *) zlistx_first (held); inv; inv = (s_inv_t *) zlistx_next (held))
        s_inv_take_back (self, inv, why);
    if (zlistx_size (held))
        zsys_warning ("sn_queue: %s, %zu invocations it ran queued again", why, zlistx_size (held));
    zlistx_destroy (&held);
}

//  The members changed, or not: a new one hears from us at once; one gone takes
//  its word with it, and what its workers ran here is queued again at once (the
//  node may be gone, or cut off: either way its results would not reach us).
static void
s_nodes_update (self_t *self)
{
    const char *name = sn_owners_name (self->owners);
    zlist_t *members = sn_owners_members (self->owners);
    if (!self->peers || !name)
        return;
    zlistx_t *gone = zlistx_new ();
    for (s_node_t *node = (s_node_t *) zhashx_first (self->nodes); node;
         node = (s_node_t *) zhashx_next (self->nodes)) {
        bool member = false;
        for (const char *each = (const char *) zlist_first (members); each && !member;
             each = (const char *) zlist_next (members))
            member = streq (each, node->name);
        if (!member)
            zlistx_add_end (gone, node);
    }
    for (s_node_t *node = (s_node_t *) zlistx_first (gone); node;
         node = (s_node_t *) zlistx_next (gone)) {
        s_node_take_back (self, node->name, NULL, false, "the node of its worker left");
        zhashx_delete (self->nodes, node->name);
    }
    if (zlistx_size (gone))
        s_dispatch (self);
    zlistx_destroy (&gone);
    for (const char *each = (const char *) zlist_first (members); each;
         each = (const char *) zlist_next (members)) {
        if (streq (each, name) || zhashx_lookup (self->nodes, each))
            continue;
        s_node_t *node = (s_node_t *) zmalloc (sizeof (s_node_t));
        node->name = strdup (each);
        node->free = zhashx_new ();
        zhashx_set_destructor (node->free, s_plain_free);
        zhashx_insert (self->nodes, each, node);
        s_presence_send (self, node);
        if (self->presence_at == INT64_MAX)
            self->presence_at = zclock_time () + S_PRESENCE_EVERY;
    }
}

//  Pack the entries of map root, but the one named skip and any whose key is not a
//  string, into pack as a map with room for extra more entries that the caller
//  packs next.
static void
s_pack_map_but (sn_pack_t *pack, const sn_value_t *root, const char *skip, uint32_t extra)
{
    size_t entries = sn_value_size (root), skipped = 0, skip_len = skip ? strlen (skip) : 0;
    for (size_t index = 0; index < entries; index++) {
        size_t len = 0;
        const char *name = sn_value_key_at (root, index, &len);
        skipped += !name || (skip && len == skip_len && memcmp (name, skip, len) == 0);
    }
    sn_pack_reset (pack);
    sn_pack_map (pack, (uint32_t) (entries - skipped) + extra);
    for (size_t index = 0; index < entries; index++) {
        size_t len = 0;
        const char *name = sn_value_key_at (root, index, &len);
        if (!name || (skip && len == skip_len && memcmp (name, skip, len) == 0))
            continue;
        sn_pack_strn (pack, name, len);
        sn_pack_value (pack, sn_value_value_at (root, index));
    }
}

//  Answer a worker's result that this node has and passes on to its owner.
static void
s_reply_accepted (self_t *self, sn_routed_t *request, uint64_t rid, const char *why)
{
    sn_pack_reset (self->reply);
    sn_pack_map (self->reply, 3);
    sn_pack_kv_uint (self->reply, "rid", rid);
    sn_pack_kv_uint (self->reply, "code", 202);
    char message[256];
    snprintf (message, sizeof message,
              "accepted: the owner has not taken it yet (%s); this node passes it on", why);
    sn_pack_kv_str (self->reply, "message", message);
    s_reply_send (self, request);
}

//  Keep the result in self->pack for the owner of hold's invocation.
static void
s_hold_keep (self_t *self, s_hold_t *hold)
{
    hold->result_size = sn_pack_size (self->pack);
    hold->result = (byte *) malloc (hold->result_size);
    memcpy (hold->result, sn_pack_data (self->pack), hold->result_size);
    self->held++;
    self->held_bytes += hold->result_size;
}

//  The attempt of hold is over: its worker's slot is free again and its result
//  gone, and only its id and lease stay, until its until.
static void
s_hold_done (self_t *self, s_hold_t *hold)
{
    if (hold->result) {
        self->held--;
        self->held_bytes -= hold->result_size;
        free (hold->result);
        hold->result = NULL;
        hold->result_size = 0;
        s_presence_changed (self);
    }
    if (hold->worker) {
        if (hold->worker->busy > 0)
            hold->worker->busy--;
        hold->worker = NULL;
        s_presence_changed (self);
    }
    if (hold->waiting) {
        s_reply_error (self, hold->waiting, hold->waiting_rid, 409,
                       "invocation %s is not held by this worker any more", hold->id);
        hold->waiting = NULL;
    }
    hold->sent = 0;
    hold->done = true;
}

//  Forget work another node pushed to us, its tombstone too: a push of it under
//  any lease runs again.
static void
s_hold_drop (self_t *self, s_hold_t *hold)
{
    s_hold_done (self, hold);
    zhashx_delete (self->holds, hold->id);
}

//  Pass the result of hold on to the owner of its invocation, by the id's
//  partition. The attempt is over if ownership came here since: the replay queued
//  the invocation again.
static void
s_hold_try (self_t *self, s_hold_t *hold)
{
    int64_t p =
        self->peers ? sn_owners_id_partition (self->owners, hold->id, strlen (hold->id)) : -1;
    if (p < 0 || sn_owners_owns (self->owners, (uint32_t) p)) {
        s_hold_done (self, hold);
        return;
    }
    sn_pack_reset (self->pack);
    sn_pack_raw (self->pack, hold->result, hold->result_size);
    uint64_t rid = s_peer_send (self, NULL, (uint32_t) p);
    if (rid) {
        hold->sent = rid;
        s_call_add (self, rid, hold->id, hold->lease, true);
    }
    else
        s_hold_failed (self, hold, "the mesh is not taking requests now");
}

//  A try of the result of hold did not reach its owner, or the owner could not
//  take it now: the worker waiting hears that this node has it, and it is tried
//  again after a backoff while the owner may still take it (the hold's until).
static void
s_hold_failed (self_t *self, s_hold_t *hold, const char *why)
{
    hold->sent = 0;
    if (hold->waiting) {
        s_reply_accepted (self, hold->waiting, hold->waiting_rid, why);
        hold->waiting = NULL;
    }
    hold->retry_at = zclock_time () + hold->backoff;
    hold->backoff = hold->backoff * 2 < S_RESULT_RETRY_MAX ? hold->backoff * 2 : S_RESULT_RETRY_MAX;
    s_deadline (self, hold->retry_at);
    if (self->verbose)
        zsys_info ("sn_queue: result of %s not taken by its owner (%s), again in %" PRId64 " ms",
                   hold->id, why, hold->retry_at - zclock_time ());
}

//  The owner answered a try of the result of hold. A 2xx took it; a 4xx is final
//  (the attempt is no longer the running one): either way the worker waiting hears
//  the owner's answer and the hold is done. Anything else (the mesh's 503 when the
//  owner is not reachable or its partition is moving) is tried again.
static void
s_hold_answered (self_t *self, s_hold_t *hold, const sn_value_t *answer, uint64_t code)
{
    hold->sent = 0;
    if (code >= 200 && code < 500) {
        if (hold->waiting) {
            s_pack_map_but (self->reply, answer, "rid", 1);
            sn_pack_kv_uint (self->reply, "rid", hold->waiting_rid);
            s_reply_send (self, hold->waiting);
            hold->waiting = NULL;
        }
        //  A copy of its push still on the way must not run it again
        s_hold_done (self, hold);
        return;
    }
    char *error = sn_value_get_strdup (answer, "error");
    char why[160];
    snprintf (why, sizeof why, "%" PRIu64 " %s", code, error ? error : "from the mesh");
    free (error);
    s_hold_failed (self, hold, why);
}

//  The worker of hold is gone before its result: the owner hears of a retryable 504
//  instead of waiting for the invocation's timeout, passed on as a worker's result
//  is, tried again until the owner has it.
static void
s_hold_lost (self_t *self, s_hold_t *hold, const char *why)
{
    hold->worker = NULL;
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, 7);
    sn_pack_kv_str (self->pack, "op", "worker.result");
    sn_pack_kv_uint (self->pack, "rid", 0);
    sn_pack_kv_str (self->pack, "id", hold->id);
    sn_pack_kv_uint (self->pack, "code", 504);
    sn_pack_kv_str (self->pack, "error", why);
    sn_pack_str (self->pack, "retryable");
    sn_pack_bool (self->pack, true);
    sn_pack_kv_str (self->pack, "lease", hold->lease);
    s_hold_keep (self, hold);
    hold->backoff = S_RESULT_RETRY;
    s_hold_try (self, hold);
}

//  A worker went silent: what it runs goes back to the queue at once.
static void
s_worker_lost (self_t *self, s_worker_t *worker)
{
    zsys_warning ("sn_queue: worker %s silent for %d ms, taking its work back", worker->name,
                  self->config.worker_timeout);
    zlistx_t *held = zlistx_new ();
    for (s_inv_t *inv = (s_inv_t *) zhashx_first (self->running); inv;
         inv = (s_inv_t *) zhashx_next (self->running))
        if (inv->worker == worker)
            zlistx_add_end (held, inv);
    for (s_inv_t *inv = (s_inv_t *) zlistx_first (held); inv;
         inv = (s_inv_t *) zlistx_next (held)) {
        const char *type = s_inv_fail (self, inv, 504, "worker went silent", true, false);
        s_log_note (self, type, inv);
    }
    zlistx_purge (held);
    //  A result it gave is passed on still
    for (s_hold_t *hold = (s_hold_t *) zhashx_first (self->holds); hold;
         hold = (s_hold_t *) zhashx_next (self->holds))
        if (hold->worker == worker && hold->result)
            hold->worker = NULL;
        else if (hold->worker == worker)
            zlistx_add_end (held, hold);
    for (s_hold_t *hold = (s_hold_t *) zlistx_first (held); hold;
         hold = (s_hold_t *) zlistx_next (held))
        s_hold_lost (self, hold, "worker went silent");
    zlistx_destroy (&held);
    zhashx_delete (self->workers, worker->key);
    s_presence_changed (self);
}

//  Everything whose time has come: silent workers, runs past their timeout,
//  invocations nobody offers to run. Recomputes the next deadline.
static void
s_timers (self_t *self)
{
    int64_t now = zclock_time ();
    self->next_deadline = INT64_MAX;
    zlistx_t *due = zlistx_new ();
    for (s_worker_t *worker = (s_worker_t *) zhashx_first (self->workers); worker;
         worker = (s_worker_t *) zhashx_next (self->workers)) {
        if (worker->last_seen + self->config.worker_timeout <= now)
            zlistx_add_end (due, worker);
        else
            s_deadline (self, worker->last_seen + self->config.worker_timeout);
    }
    for (s_worker_t *worker = (s_worker_t *) zlistx_first (due); worker;
         worker = (s_worker_t *) zlistx_next (due))
        s_worker_lost (self, worker);
    zlistx_purge (due);

    for (s_inv_t *inv = (s_inv_t *) zhashx_first (self->running); inv;
         inv = (s_inv_t *) zhashx_next (self->running)) {
        if (inv->started_at + inv->timeout <= now)
            zlistx_add_end (due, inv);
        else
            s_deadline (self, inv->started_at + inv->timeout);
    }
    for (s_inv_t *inv = (s_inv_t *) zlistx_first (due); inv; inv = (s_inv_t *) zlistx_next (due)) {
        char error[64];
        snprintf (error, sizeof error, "timed out after %" PRId64 " ms", inv->timeout);
        const char *type = s_inv_fail (self, inv, 504, error, true, true);
        s_log_note (self, type, inv);
    }
    zlistx_purge (due);

    //  Pushes whose outcome is not known, sent again
    for (s_inv_t *inv = (s_inv_t *) zhashx_first (self->running); inv;
         inv = (s_inv_t *) zhashx_next (self->running)) {
        if (inv->push_again && inv->push_again <= now)
            zlistx_add_end (due, inv);
        else if (inv->push_again)
            s_deadline (self, inv->push_again);
    }
    for (s_inv_t *inv = (s_inv_t *) zlistx_first (due); inv; inv = (s_inv_t *) zlistx_next (due))
        if (!s_inv_push_send (self, inv))
            s_inv_push_later (self, inv);
    zlistx_purge (due);

    for (s_inv_t *inv = (s_inv_t *) zlistx_first (self->queued); inv;
         inv = (s_inv_t *) zlistx_next (self->queued)) {
        if (s_loading (self, inv))
            continue; //  its replay's end makes every timer due
        if (inv->run_at > now)
            s_deadline (self, inv->run_at);
        else if (inv->attempts == 0) {
            if (inv->run_at + inv->worker_wait <= now)
                zlistx_add_end (due, inv);
            else
                s_deadline (self, inv->run_at + inv->worker_wait);
        }
    }
    for (s_inv_t *inv = (s_inv_t *) zlistx_first (due); inv; inv = (s_inv_t *) zlistx_next (due)) {
        bool offered = s_remote_offers (self, inv->class_name, now);
        for (s_worker_t *worker = (s_worker_t *) zhashx_first (self->workers); worker && !offered;
             worker = (s_worker_t *) zhashx_next (self->workers))
            offered = s_worker_offers (worker, inv->class_name);
        if (offered)
            continue; //  a worker runs the class; it is only busy
        s_inv_unqueue (self, inv);
        char error[320];
        snprintf (error, sizeof error, "no worker offered class %s within %" PRId64 " ms",
                  inv->class_name, inv->worker_wait);
        const char *type = s_inv_fail (self, inv, 404, error, false, false);
        s_log_note (self, type, inv);
    }
    zlistx_purge (due);

    //  Work pushed to us that its owner has taken back by now
    for (s_hold_t *hold = (s_hold_t *) zhashx_first (self->holds); hold;
         hold = (s_hold_t *) zhashx_next (self->holds)) {
        if (hold->until <= now)
            zlistx_add_end (due, hold);
        else
            s_deadline (self, hold->until);
    }
    for (s_hold_t *hold = (s_hold_t *) zlistx_first (due); hold;
         hold = (s_hold_t *) zlistx_next (due))
        s_hold_drop (self, hold);
    zlistx_purge (due);

    //  Results the owner could not take yet, tried again
    for (s_hold_t *hold = (s_hold_t *) zhashx_first (self->holds); hold;
         hold = (s_hold_t *) zhashx_next (self->holds)) {
        if (!hold->result || hold->sent)
            continue;
        if (hold->retry_at <= now)
            zlistx_add_end (due, hold);
        else
            s_deadline (self, hold->retry_at);
    }
    for (s_hold_t *hold = (s_hold_t *) zlistx_first (due); hold;
         hold = (s_hold_t *) zlistx_next (due))
        s_hold_try (self, hold);
    zlistx_destroy (&due);

    //  Other nodes' word goes stale
    for (s_node_t *node = (s_node_t *) zhashx_first (self->nodes); node;
         node = (s_node_t *) zhashx_next (self->nodes)) {
        if (node->expires > now)
            s_deadline (self, node->expires);
        else
            zhashx_purge (node->free);
    }
}

//  --------------------------------------------------------------------------
//  Ops

//  An id for a new invocation: unique (64 random bits drawn once per start, then a
//  count), and naming its bucket's partition so that any node can tell where it
//  lives. A UUID per id cost five system calls.
static void
s_new_id (self_t *self, const char *bucket, char *id)
{
    uint32_t p = sn_partition (bucket, strlen (bucket), self->config.partitions);
    snprintf (id, S_ID_MAX, "%s%016" PRIx64 "-%u", self->id_prefix, ++self->id_count, p);
}

static void
s_op_enqueue (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    const sn_value_t *call = sn_value_get (root, "invocation");
    const sn_value_t *bucket_value = sn_value_get (root, "bucket_id");
    char *bucket = bucket_value ? sn_value_strdup (bucket_value) : strdup ("primary");
    const char *state = bucket ? (const char *) zhashx_lookup (self->buckets, bucket) : NULL;
    if (!bucket || !state) {
        s_reply_error (self, request, rid, 404, "bucket_id: no bucket %s", bucket ? bucket : "?");
        free (bucket);
        return;
    }
    if (*state) {
        s_reply_error (self, request, rid, 410, "bucket_id: bucket %s is %s", bucket, state);
        free (bucket);
        return;
    }
    if (!sn_value_get (call, "params") == !sn_value_get (call, "args")) {
        s_reply_error (self, request, rid, 400, "/invocation: give exactly one of params and args");
        free (bucket);
        return;
    }
    if (sn_value_get (root, "run_at") && sn_value_get (root, "delay")) {
        s_reply_error (self, request, rid, 400, "give at most one of run_at and delay");
        free (bucket);
        return;
    }
    int64_t now = zclock_time (), run_at = now, number = 0;
    if (sn_value_int (sn_value_get (root, "run_at"), &number))
        run_at = number;
    if (sn_value_int (sn_value_get (root, "delay"), &number))
        run_at = now + number;

    char id[S_ID_MAX];
    s_new_id (self, bucket, id);
    static const char *options[] = {"max_attempts", "backoff", "timeout", "worker_wait", NULL};
    uint32_t entries = 6 + (sn_value_get (root, "data") != NULL);
    for (const char **option = options; *option; option++)
        entries += sn_value_get (root, *option) != NULL;
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, entries);
    sn_pack_kv_str (self->pack, "id", id);
    sn_pack_kv_str (self->pack, "bucket_id", bucket);
    sn_pack_kv_value (self->pack, "token", sn_value_get (root, "token"));
    sn_pack_kv_value (self->pack, "invocation", call);
    if (sn_value_get (root, "data"))
        sn_pack_kv_value (self->pack, "data", sn_value_get (root, "data"));
    for (const char **option = options; *option; option++)
        if (sn_value_get (root, *option))
            sn_pack_kv_value (self->pack, *option, sn_value_get (root, *option));
    sn_pack_str (self->pack, "created_at");
    sn_pack_int (self->pack, now);
    sn_pack_str (self->pack, "run_at");
    sn_pack_int (self->pack, run_at);

    //  The options are the request's, as stored
    s_inv_t *inv =
        s_inv_new (id, strlen (id), bucket, strlen (bucket), root, sn_pack_data (self->pack),
                   sn_pack_size (self->pack), self->config.partitions);
    if (!inv) {
        s_reply_error (self, request, rid, 400, "/invocation/class: a string is required");
        free (bucket);
        return;
    }
    inv->created_at = now;
    inv->run_at = run_at;

    sn_pack_reset (self->reply);
    sn_pack_map (self->reply, 3);
    sn_pack_kv_uint (self->reply, "rid", rid);
    sn_pack_kv_uint (self->reply, "code", 202);
    sn_pack_kv_str (self->reply, "id", id);
    sn_routed_set_payload (request, sn_pack_data (self->reply), sn_pack_size (self->reply));
    s_pending_t *pending = (s_pending_t *) zmalloc (sizeof (s_pending_t));
    pending->after = S_AFTER_ENQUEUE;
    pending->inv = inv;
    pending->reply = request;
    pending->rid = rid;
    s_log_write (self, "invocation.enqueued", bucket, pending);
    free (bucket);
}

//  The log has the enqueue: the invocation exists now.
static void
s_enqueued (self_t *self, s_inv_t *inv)
{
    //  A REPLAY may have read the event back before its acknowledgement came; and
    //  if the partition moved meanwhile, its new owner has it from the log. While
    //  its takeover failed, the next replay loads it instead; while that replay
    //  runs, it is kept (the scan may have passed its key), dropped if it fails
    uint32_t p = s_partition_of (self, inv);
    if (!sn_owners_owns (self->owners, p) ||
        (sn_owners_taking_over (self->owners, p) && !sn_replay_taking (self->replay, p)) ||
        sn_idmap_insert (self->invocations, inv->id, inv)) {
        s_inv_destroy (&inv);
        return;
    }
    s_inv_count (self, inv);
    s_inv_queue (self, inv, inv->run_at);
    if (self->verbose)
        zsys_info ("sn_queue: %s queued in %s for %s", inv->id, inv->bucket, inv->class_name);
}

static void
s_op_invocation (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    char *id = sn_value_get_strdup (root, "id");
    s_inv_t *inv = id ? (s_inv_t *) sn_idmap_lookup (self->invocations, id) : NULL;
    if (!inv) {
        s_reply_error (self, request, rid, 404,
                       "no invocation %s: unknown here, or finished more than %d"
                       " ms ago (--keep-finished-ms)",
                       id ? id : "?", self->config.keep_finished);
        free (id);
        return;
    }
    free (id);
    const char *reason = NULL;
    sn_msg_t *event = sn_msg_decode_trusted (inv->enqueued, inv->enqueued_size, &reason);
    const sn_value_t *enqueued = sn_msg_root (event);
    const sn_value_t *data = sn_value_get (enqueued, "data");
    bool finished = inv->state == S_SUCCEEDED || inv->state == S_FAILED;
    sn_pack_reset (self->reply);
    sn_pack_map (self->reply, 3);
    sn_pack_kv_uint (self->reply, "rid", rid);
    sn_pack_kv_uint (self->reply, "code", 200);
    sn_pack_str (self->reply, "invocation");
    sn_pack_map (self->reply, 11 + (data != NULL) + 2 * finished + (inv->response != NULL) +
                                  (inv->error != NULL) + (inv->state == S_RUNNING));
    sn_pack_kv_str (self->reply, "id", inv->id);
    sn_pack_kv_str (self->reply, "bucket_id", inv->bucket);
    sn_pack_kv_str (self->reply, "state", s_state_names[inv->state]);
    sn_pack_kv_value (self->reply, "token", sn_value_get (enqueued, "token"));
    sn_pack_kv_value (self->reply, "invocation", sn_value_get (enqueued, "invocation"));
    if (data)
        sn_pack_kv_value (self->reply, "data", data);
    sn_pack_kv_uint (self->reply, "attempts", inv->attempts);
    sn_pack_kv_uint (self->reply, "max_attempts", inv->max_attempts);
    sn_pack_str (self->reply, "created_at");
    sn_pack_int (self->reply, inv->created_at);
    sn_pack_str (self->reply, "run_at");
    sn_pack_int (self->reply, inv->run_at);
    sn_pack_str (self->reply, "started_at");
    if (inv->attempts)
        sn_pack_int (self->reply, inv->started_at);
    else
        sn_pack_nil (self->reply);
    sn_pack_str (self->reply, "timeout");
    sn_pack_int (self->reply, inv->timeout);
    if (finished) {
        sn_pack_kv_uint (self->reply, "code", (uint64_t) inv->code);
        sn_pack_str (self->reply, "finished_at");
        sn_pack_int (self->reply, inv->finished_at);
    }
    if (inv->state == S_RUNNING) {
        sn_pack_str (self->reply, "progress");
        sn_pack_double (self->reply, inv->progress);
    }
    if (inv->response) {
        sn_pack_str (self->reply, "response");
        sn_pack_raw (self->reply, inv->response, inv->response_size);
    }
    if (inv->error)
        sn_pack_kv_str (self->reply, "error", inv->error);
    sn_msg_destroy (&event);
    s_reply_send (self, request);
}

//  The envelope of a request, as the key of its worker.
static char *
s_envelope_key (sn_routed_t *request)
{
    size_t size = 0;
    for (size_t index = 0; index + 1 < request->count; index++)
        size += zmq_msg_size (&request->frames[index]) * 2 + 1;
    char *key = (char *) zmalloc (size + 1), *at = key;
    for (size_t index = 0; index + 1 < request->count; index++) {
        const byte *data = (const byte *) zmq_msg_data (&request->frames[index]);
        for (size_t at_byte = 0; at_byte < zmq_msg_size (&request->frames[index]); at_byte++)
            at += sprintf (at, "%02x", data[at_byte]);
        *at++ = '.';
    }
    return key;
}

static void
s_op_worker_hello (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    char *key = s_envelope_key (request);
    s_worker_t *worker = (s_worker_t *) zhashx_lookup (self->workers, key);
    if (!worker && zhashx_size (self->workers) >= S_WORKERS_MAX) {
        free (key);
        s_reply_error (self, request, rid, 429,
                       "this node has %d workers already: try another node, or later",
                       S_WORKERS_MAX);
        return;
    }
    if (!worker) {
        worker = (s_worker_t *) zmalloc (sizeof (s_worker_t));
        worker->key = strdup (key);
        worker->envelope = zmsg_new ();
        for (size_t index = 0; index + 1 < request->count; index++)
            zmsg_addmem (worker->envelope, zmq_msg_data (&request->frames[index]),
                         zmq_msg_size (&request->frames[index]));
        zhashx_insert (self->workers, key, worker);
    }
    free (key);
    free (worker->name);
    worker->name = sn_value_get_strdup (root, "name");
    if (!worker->name)
        worker->name = strdup (worker->key);
    zlist_destroy (&worker->classes);
    worker->classes = zlist_new ();
    zlist_autofree (worker->classes);
    const sn_value_t *classes = sn_value_get (root, "classes");
    for (size_t index = 0; index < sn_value_size (classes); index++) {
        char *name = sn_value_strdup (sn_value_at (classes, index));
        if (name)
            zlist_append (worker->classes, name);
        free (name);
    }
    uint64_t capacity = 1;
    sn_value_uint (sn_value_get (root, "capacity"), &capacity);
    worker->capacity = (uint32_t) capacity;
    worker->last_seen = zclock_time ();
    s_deadline (self, worker->last_seen + self->config.worker_timeout);
    if (self->verbose)
        zsys_info ("sn_queue: worker %s hello, capacity %u", worker->name, worker->capacity);

    sn_pack_reset (self->reply);
    sn_pack_map (self->reply, 3);
    sn_pack_kv_uint (self->reply, "rid", rid);
    sn_pack_kv_uint (self->reply, "code", 200);
    //  A third of the silence allowed: two heartbeats may be lost
    sn_pack_kv_uint (self->reply, "heartbeat", (uint64_t) self->config.worker_timeout / 3);
    s_reply_send (self, request);
    s_presence_changed (self);
    s_dispatch (self);
}

//  The worker that sent request, with its last_seen refreshed; or NULL, answered 404.
static s_worker_t *
s_known_worker (self_t *self, sn_routed_t *request, uint64_t rid)
{
    char *key = s_envelope_key (request);
    s_worker_t *worker = (s_worker_t *) zhashx_lookup (self->workers, key);
    free (key);
    if (!worker) {
        s_reply_error (self, request, rid, 404, "unknown worker: send worker.hello first");
        return NULL;
    }
    worker->last_seen = zclock_time ();
    return worker;
}

static void
s_op_worker_heartbeat (self_t *self, sn_routed_t *request, uint64_t rid)
{
    if (s_known_worker (self, request, rid))
        s_reply_code (self, request, rid, 200);
}

//  The invocation of request, if it runs on worker here, or on another node's
//  worker under lease (its word comes forwarded by that node); else NULL, answered.
static s_inv_t *
s_running_invocation (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid,
                      s_worker_t *worker, const char *lease)
{
    char *id = sn_value_get_strdup (root, "id");
    s_inv_t *inv = id ? (s_inv_t *) sn_idmap_lookup (self->invocations, id) : NULL;
    if (!inv)
        s_reply_error (self, request, rid, 404, "no invocation %s", id ? id : "?");
    else if (inv->state != S_RUNNING ||
             (lease ? !inv->remote || !streq (inv->lease, lease) : inv->worker != worker)) {
        s_reply_error (self, request, rid, 409, "invocation %s is not held %s (it is %s)", id,
                       lease ? "under this lease" : "by this worker", s_state_names[inv->state]);
        inv = NULL;
    }
    free (id);
    return inv;
}

//  Pass the progress or result of request to the owner of its invocation, which
//  another node pushed to worker: with the lease, so the owner knows the attempt.
//  Progress goes as it is, its answer straight back to the worker. A result stays
//  here until the owner takes it: the worker hears the owner's answer, or 202 when
//  the owner cannot take it now and this node tries again. The worker's slot stays
//  busy until then: while owners cannot take results, our word offers no room (and
//  none at S_HELD_MAX, as workers that leave free their slots). Returns true when
//  request was taken.
static bool
s_held_elsewhere (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid,
                  s_worker_t *worker, bool result)
{
    char *id = sn_value_get_strdup (root, "id");
    s_hold_t *hold = id ? (s_hold_t *) zhashx_lookup (self->holds, id) : NULL;
    bool owned_here = id && sn_idmap_lookup (self->invocations, id);
    free (id);
    if (!hold || hold->done || !streq (hold->worker_key, worker->key))
        return false;
    //  Ownership came here since: the replay queued it again, this attempt is over
    if (owned_here) {
        if (result)
            s_hold_done (self, hold);
        return false;
    }
    if (!result) {
        s_pack_map_but (self->pack, root, NULL, 1);
        sn_pack_kv_str (self->pack, "lease", hold->lease);
        sn_routed_set_payload (request, sn_pack_data (self->pack), sn_pack_size (self->pack));
        if (!sn_owners_route (self->owners, request, root, sn_owners_partition (self->owners, root),
                              self->router))
            s_reply_error (self, request, rid, 409,
                           "invocation is not held by this worker any more");
        return true;
    }
    if (hold->result) {
        //  The worker sends its result again: it hears how the next try goes
        if (!hold->sent)
            s_reply_accepted (self, request, rid, "waiting to try again");
        else {
            if (hold->waiting)
                s_reply_accepted (self, hold->waiting, hold->waiting_rid, "sent again");
            hold->waiting = request;
            hold->waiting_rid = rid;
        }
        return true;
    }
    s_pack_map_but (self->pack, root, NULL, 1);
    sn_pack_kv_str (self->pack, "lease", hold->lease);
    s_hold_keep (self, hold);
    hold->waiting = request;
    hold->waiting_rid = rid;
    hold->backoff = S_RESULT_RETRY;
    s_hold_try (self, hold);
    return true;
}

//  What progress and result share: the invocation request reports on, when it is
//  this node's and runs on the worker that sent request, or under the lease it
//  carries; else NULL, with request answered or passed on to the invocation's owner.
static s_inv_t *
s_reported_invocation (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid,
                       bool result)
{
    char *lease = sn_value_get_strdup (root, "lease");
    s_inv_t *inv = NULL;
    if (lease)
        inv = s_running_invocation (self, request, root, rid, NULL, lease);
    else {
        s_worker_t *worker = s_known_worker (self, request, rid);
        if (worker && !s_held_elsewhere (self, request, root, rid, worker, result))
            inv = s_running_invocation (self, request, root, rid, worker, NULL);
    }
    free (lease);
    return inv;
}

static void
s_op_worker_progress (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    s_inv_t *inv = s_reported_invocation (self, request, root, rid, false);
    if (!inv)
        return;
    sn_value_number (sn_value_get (root, "progress"), &inv->progress);
    s_reply_code (self, request, rid, 200);
}

static void
s_op_worker_result (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    s_inv_t *inv = s_reported_invocation (self, request, root, rid, true);
    if (!inv)
        return;
    int64_t code = 500;
    sn_value_int (sn_value_get (root, "code"), &code);
    bool retryable = false;
    sn_value_bool (sn_value_get (root, "retryable"), &retryable);
    char *error = sn_value_get_strdup (root, "error");
    free (inv->response);
    inv->response = NULL;
    const sn_value_t *response = sn_value_get (root, "response");
    if (response) {
        sn_pack_reset (self->pack);
        sn_pack_value (self->pack, response);
        inv->response_size = sn_pack_size (self->pack);
        inv->response = (byte *) malloc (inv->response_size);
        memcpy (inv->response, sn_pack_data (self->pack), inv->response_size);
    }
    const char *type;
    if (code >= 200 && code < 300) {
        s_inv_release (self, inv);
        s_inv_set_state (self, inv, S_SUCCEEDED);
        inv->code = (int) code;
        inv->finished_at = zclock_time ();
        s_inv_set_error (inv, NULL);
        s_pack_done (self, inv);
        type = "invocation.done";
        if (self->verbose)
            zsys_info ("sn_queue: %s succeeded with %d", inv->id, inv->code);
    }
    else
        type = s_inv_fail (self, inv, (int) code, error ? error : "worker reported a failure",
                           retryable, true);
    free (error);
    sn_pack_reset (self->reply);
    sn_pack_map (self->reply, 2);
    sn_pack_kv_uint (self->reply, "rid", rid);
    sn_pack_kv_uint (self->reply, "code", 200);
    s_reply_when_written (self, type, inv, request, rid);
    s_dispatch (self);
}

//  worker.at {node, epoch?, classes: {class: free slots}}: another member's word of
//  its workers. Only a member's word counts; it replaces the last one. Another
//  epoch is a new start of that node, which lost what the starts before took; a
//  word of an older epoch than the newest heard, while that start's word is fresh,
//  is a late one of a start that is gone (its dying connection in the mesh may
//  deliver it late): it is ignored. Once that word is stale, the older epoch is a
//  new start too (of a node whose clock went back), or the node would get no work
//  until it left the members.
static void
s_op_worker_at (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    size_t epoch_len = 0;
    const sn_value_t *epoch_value = sn_value_get (root, "epoch");
    const char *epoch = sn_value_str (epoch_value, &epoch_len);
    if (epoch_value && (!epoch || epoch_len == 0 || epoch_len > 16)) {
        s_reply_error (self, request, rid, 400, "epoch: a string of 1 to 16 characters");
        return;
    }
    char *name = sn_value_get_strdup (root, "node");
    s_node_t *node = name ? (s_node_t *) zhashx_lookup (self->nodes, name) : NULL;
    if (!node) {
        s_reply_error (self, request, rid, 404, "node: %s is not another member of the cluster",
                       name ? name : "?");
        free (name);
        return;
    }
    free (name);
    char heard[17] = "";
    if (epoch)
        memcpy (heard, epoch, epoch_len);
    int64_t now = zclock_time ();
    bool older = epoch && s_epoch_older (heard, node->epoch);
    if (older && node->expires > now) {
        if (self->verbose)
            zsys_info ("sn_queue: late word of node %s from its start %s ignored", node->name,
                       heard);
        s_reply_code (self, request, rid, 200);
        return;
    }
    if (epoch && !streq (heard, node->epoch)) {
        memcpy (node->epoch, heard, sizeof node->epoch);
        char why[128];
        snprintf (why, sizeof why, "node %s of its worker started again", node->name);
        s_node_take_back (self, node->name, node->epoch, !older, why);
    }
    zhashx_purge (node->free);
    const sn_value_t *classes = sn_value_get (root, "classes");
    for (size_t index = 0; index < sn_value_size (classes); index++) {
        size_t len = 0;
        const char *class_name = sn_value_key_at (classes, index, &len);
        uint64_t slots = 0;
        if (!class_name || len == 0 || len > S_CLASS_MAX ||
            !sn_value_uint (sn_value_value_at (classes, index), &slots))
            continue;
        char key[S_CLASS_MAX + 1];
        memcpy (key, class_name, len);
        key[len] = 0;
        s_slots_t *value = (s_slots_t *) zmalloc (sizeof (s_slots_t));
        value->free = slots > UINT32_MAX ? UINT32_MAX : (uint32_t) slots;
        zhashx_update (node->free, key, value);
    }
    node->expires = now + S_PRESENCE_TTL;
    s_deadline (self, node->expires);
    s_reply_code (self, request, rid, 200);
    s_dispatch (self);
}

//  Answer a push taken by our worker so named, with this start's epoch.
static void
s_reply_pushed (self_t *self, sn_routed_t *request, uint64_t rid, const char *worker)
{
    sn_pack_reset (self->reply);
    sn_pack_map (self->reply, 4);
    sn_pack_kv_uint (self->reply, "rid", rid);
    sn_pack_kv_uint (self->reply, "code", 200);
    sn_pack_kv_str (self->reply, "worker", worker);
    sn_pack_kv_str (self->reply, "epoch", self->epoch);
    s_reply_send (self, request);
}

//  worker.push {id, bucket_id, invocation, token, data?, attempt, timeout, lease,
//  node}: the owner of an invocation asks us to run it on one of our workers. 409
//  when none has room for its class now, or an older attempt at it runs here
//  still. The same push again (same id and lease:
//  its owner did not hear our answer) is answered as taken, and not run again.
static void
s_op_worker_push (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    size_t id_len = 0, lease_len = 0;
    const char *id = sn_value_str (sn_value_get (root, "id"), &id_len);
    const char *lease = sn_value_str (sn_value_get (root, "lease"), &lease_len);
    char *class_name = sn_value_get_strdup (sn_value_get (root, "invocation"), "class");
    char *bucket = sn_value_get_strdup (root, "bucket_id");
    uint64_t attempt = 1, timeout = S_TIMEOUT;
    sn_value_uint (sn_value_get (root, "attempt"), &attempt);
    sn_value_uint (sn_value_get (root, "timeout"), &timeout);
    s_worker_t *worker = class_name ? s_worker_for (self, class_name) : NULL;
    char key[S_ID_MAX] = "";
    if (id && id_len < S_ID_MAX)
        memcpy (key, id, id_len);
    s_hold_t *hold = (s_hold_t *) zhashx_lookup (self->holds, key);
    if (!id || id_len == 0 || id_len >= S_ID_MAX || !lease || lease_len == 0 || lease_len > 16 ||
        !bucket || !class_name)
        s_reply_error (self, request, rid, 400,
                       "worker.push: id, lease, bucket_id and "
                       "invocation.class are required");
    else if (hold && strlen (hold->lease) == lease_len &&
             memcmp (hold->lease, lease, lease_len) == 0)
        s_reply_pushed (self, request, rid, hold->worker ? hold->worker->name : hold->worker_key);
    else if (hold && !hold->done && hold->worker && !hold->result)
        //  The owner took the older attempt back, but its worker still runs it: a
        //  new one now would run beside it, beyond the worker's capacity, and the
        //  old one's result would pass for the new one's (results carry no attempt)
        s_reply_error (self, request, rid, 409, "an older attempt at invocation %s still runs here",
                       key);
    else if (s_held_full (self))
        s_reply_error (self, request, rid, 409,
                       "this node keeps as many results for other nodes as it may");
    else if (!worker)
        s_reply_error (self, request, rid, 409, "no worker here has room for class %s now",
                       class_name);
    else {
        //  A new attempt at work we hold still, or held: the owner took the old one back
        if (hold)
            s_hold_drop (self, hold);
        hold = (s_hold_t *) zmalloc (sizeof (s_hold_t));
        memcpy (hold->id, key, sizeof hold->id);
        memcpy (hold->lease, lease, lease_len);
        hold->worker = worker;
        hold->worker_key = strdup (worker->key);
        hold->until = zclock_time () + (int64_t) timeout + self->config.worker_timeout;
        zhashx_insert (self->holds, key, hold);
        worker->busy++;
        s_presence_changed (self);
        s_deadline (self, hold->until);
        s_pack_work (self->pack, "work", key, bucket, sn_value_get (root, "invocation"),
                     sn_value_get (root, "token"), sn_value_get (root, "data"), attempt, timeout,
                     0);
        s_send_work (self, worker);
        if (self->verbose)
            zsys_info ("sn_queue: %s attempt %" PRIu64 " from another node to worker %s", key,
                       attempt, worker->name);
        s_reply_pushed (self, request, rid, worker->name);
    }
    free (class_name);
    free (bucket);
}

//  bucket.counts {bucket_id} -> {queued, running, finished}: for the bucket's status.
static void
s_op_bucket_counts (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    char *bucket = sn_value_get_strdup (root, "bucket_id");
    s_counts_t none = {0, 0, 0, 0};
    s_counts_t *counts = bucket ? (s_counts_t *) zhashx_lookup (self->counts, bucket) : NULL;
    if (!counts)
        counts = &none;
    free (bucket);
    sn_pack_reset (self->reply);
    sn_pack_map (self->reply, 5);
    sn_pack_kv_uint (self->reply, "rid", rid);
    sn_pack_kv_uint (self->reply, "code", 200);
    sn_pack_kv_uint (self->reply, "queued", counts->queued);
    sn_pack_kv_uint (self->reply, "running", counts->running);
    sn_pack_kv_uint (self->reply, "finished", counts->finished + counts->gone);
    s_reply_send (self, request);
}

//  bucket.state {bucket_id, state: "active" | "deleted"}: from the batch actor only
//  (no schema lets a client send it), once the bucket's event is on disk.
static void
s_op_bucket_state (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    char *bucket = sn_value_get_strdup (root, "bucket_id");
    if (bucket) {
        bool deleted = sn_value_streq (sn_value_get (root, "state"), "deleted");
        zhashx_update (self->buckets, bucket, (void *) (deleted ? "deleted" : ""));
    }
    free (bucket);
    s_reply_code (self, request, rid, 200);
}

//  queue.stats: invocations by state summed over the buckets of the partitions this
//  node owns, workers connected here, invocations in memory, from memory only
//  (GET /metrics).
static void
s_op_queue_stats (self_t *self, sn_routed_t *request, uint64_t rid)
{
    s_counts_t sum = {0, 0, 0, 0};
    for (s_counts_t *counts = (s_counts_t *) zhashx_first (self->counts); counts;
         counts = (s_counts_t *) zhashx_next (self->counts)) {
        sum.queued += counts->queued;
        sum.running += counts->running;
        sum.finished += counts->finished + counts->gone;
    }
    sn_pack_t *out = self->reply;
    sn_pack_reset (out);
    sn_pack_map (out, 6);
    sn_pack_kv_uint (out, "rid", rid);
    sn_pack_kv_uint (out, "code", 200);
    sn_pack_str (out, "invocations");
    sn_pack_map (out, 3);
    sn_pack_kv_uint (out, "queued", sum.queued);
    sn_pack_kv_uint (out, "running", sum.running);
    sn_pack_kv_uint (out, "finished", sum.finished);
    sn_pack_kv_uint (out, "in_memory", sn_idmap_size (self->invocations));
    sn_pack_kv_uint (out, "workers", zhashx_size (self->workers));
    sn_pack_kv_uint (out, "results_held", self->held);
    s_reply_send (self, request);
}

//  One request from the frontend. The request is owned here from now on.
static void
s_handle_request (void *actor, sn_routed_t *request)
{
    self_t *self = (self_t *) actor;
    const char *reason = NULL;
    sn_msg_t *msg =
        sn_msg_decode_trusted (sn_routed_data (request), sn_routed_size (request), &reason);
    const sn_value_t *root = sn_msg_root (msg);
    uint64_t rid = 0;
    sn_value_uint (sn_value_get (root, "rid"), &rid);
    const sn_value_t *op = sn_value_get (root, "op");
    //  Requests about one partition's state
    bool routed =
        msg && (sn_value_streq (op, "enqueue") || sn_value_streq (op, "invocation") ||
                sn_value_streq (op, "bucket.counts") ||
                //  A result or progress passed on by another node: only the owner
                //  knows the lease; a node that is not (any more) says it is
                //  moving, 503
                (sn_value_get (root, "lease") &&
                 (sn_value_streq (op, "worker.result") || sn_value_streq (op, "worker.progress"))));
    int64_t p = routed ? sn_owners_partition (self->owners, root) : -1;
    if (!msg)
        s_reply_error (self, request, 0, 400, "invalid msgpack: %s", reason);
    else if (sn_value_streq (op, "queue.stats"))
        s_op_queue_stats (self, request, rid);
    else if (routed && sn_owners_route (self->owners, request, root, p, self->router)) {
        //  forwarded to the owner, held, or answered
    }
    else if (sn_replay_park (self->replay, request, root, rid, p)) {
        //  Its replay has not loaded all of it yet: an answer from what it holds could
        //  be wrong (an invocation not found, a count short, a result for one finished)
    }
    else if (zhashx_size (self->pending) >= S_PENDING_MAX)
        s_reply_error (self, request, rid, 503, "queue is busy: too many writes in flight");
    else if (sn_value_streq (op, "enqueue"))
        s_op_enqueue (self, request, root, rid);
    else if (sn_value_streq (op, "invocation"))
        s_op_invocation (self, request, root, rid);
    else if (sn_value_streq (op, "worker.hello"))
        s_op_worker_hello (self, request, root, rid);
    else if (sn_value_streq (op, "worker.heartbeat"))
        s_op_worker_heartbeat (self, request, rid);
    else if (sn_value_streq (op, "worker.progress"))
        s_op_worker_progress (self, request, root, rid);
    else if (sn_value_streq (op, "worker.result"))
        s_op_worker_result (self, request, root, rid);
    else if (sn_value_streq (op, "bucket.counts"))
        s_op_bucket_counts (self, request, root, rid);
    else if (sn_value_streq (op, "bucket.state"))
        s_op_bucket_state (self, request, root, rid);
    else if (sn_value_streq (op, "worker.at"))
        s_op_worker_at (self, request, root, rid);
    else if (sn_value_streq (op, "worker.push"))
        s_op_worker_push (self, request, root, rid);
    else
        s_reply_error (self, request, rid, 400, "/op: the queue does not serve this op");
    sn_msg_destroy (&msg);
}

static void
s_router_drain (self_t *self)
{
    while (true) {
        sn_routed_t *request = (sn_routed_t *) zmalloc (sizeof (sn_routed_t));
        if (sn_routed_recv (request, self->router)) {
            free (request);
            break;
        }
        s_handle_request (self, request);
    }
}

//  A result is on disk: the batch actor commits it to the bucket's callback. Lost
//  if the batch actor cannot take it now; it finds it again in the log at start.
static void
s_notify_finished (self_t *self, s_inv_t *inv)
{
    if (!self->batch)
        return;
    s_pack_done (self, inv);
    sn_pack_t *note = sn_pack_new ();
    sn_pack_map (note, 4);
    sn_pack_kv_str (note, "op", "finished");
    sn_pack_kv_uint (note, "rid", 0);
    sn_pack_kv_str (note, "bucket_id", inv->bucket);
    sn_pack_str (note, "event");
    sn_pack_raw (note, sn_pack_data (self->pack), sn_pack_size (self->pack));
    zframe_t *frame = sn_pack_frame (note);
    sn_pack_destroy (&note);
    if (zframe_send (&frame, self->batch, ZFRAME_DONTWAIT))
        zframe_destroy (&frame);
}

//  The log's answer to the write with rid: finish what waited for it.
static void
s_log_settle (self_t *self, uint64_t rid, uint64_t code, const char *error, size_t error_len)
{
    void *key = (void *) (uintptr_t) rid;
    s_pending_t *pending = (s_pending_t *) zhashx_lookup (self->pending, key);
    if (!pending)
        return;
    if (pending->finished) {
        //  Told, or never to be: its result is not stored if the log refused it
        if (code == 201)
            s_notify_finished (self, pending->finished);
        s_inv_settled (self, pending->finished);
        pending->finished = NULL;
    }
    if (code == 201) {
        if (pending->after == S_AFTER_ENQUEUE) {
            s_enqueued (self, pending->inv);
            pending->inv = NULL;
        }
        if (pending->reply) {
            if (sn_routed_send (pending->reply, self->router))
                sn_routed_close (pending->reply);
            free (pending->reply);
            pending->reply = NULL;
        }
    }
    else {
        if (!error) {
            error = "log refused the write";
            error_len = strlen (error);
        }
        zsys_error ("sn_queue: log refused a write with %" PRIu64 ": %.*s", code, (int) error_len,
                    error);
        if (pending->reply) {
            s_reply_error (self, pending->reply, pending->rid, 503, "not stored: %.*s",
                           (int) error_len, error);
            pending->reply = NULL;
        }
    }
    zhashx_delete (self->pending, key);
}

//  The log's answer to a bulk of writes: each write's result in their order, or one
//  error for all of them.
static void
s_log_answer (self_t *self, const sn_value_t *root)
{
    uint64_t rid = 0, code = 0;
    sn_value_uint (sn_value_get (root, "rid"), &rid);
    sn_value_uint (sn_value_get (root, "code"), &code);
    const sn_value_t *results = sn_value_get (root, "results");
    size_t count =
        code == 200 && sn_value_is (results, SN_TYPE_ARRAY) ? sn_value_size (results) : 0;
    for (uint64_t index = 0; rid; index++) {
        s_pending_t *pending =
            (s_pending_t *) zhashx_lookup (self->pending, (void *) (uintptr_t) (rid + index));
        if (!pending || pending->burst != rid)
            break;
        const sn_value_t *result = index < count ? sn_value_at (results, index) : root;
        uint64_t item_code = 0;
        sn_value_uint (sn_value_get (result, "code"), &item_code);
        if (index >= count && item_code == 200)
            item_code = 500; //  an answer with fewer results than writes
        size_t error_len = 0;
        const char *error = sn_value_str (sn_value_get (result, "error"), &error_len);
        s_log_settle (self, rid + index, item_code, error, error_len);
    }
}

//  One answer from the log or the store: the page the replay under way waits for,
//  or acknowledgements of writes (they come interleaved with pages when the log
//  scans too). A page no replay waits for any more is dropped.
static void
s_log_reply (self_t *self, zframe_t **frame_p)
{
    const char *reason = NULL;
    sn_msg_t *reply =
        sn_msg_decode_trusted (zframe_data (*frame_p), zframe_size (*frame_p), &reason);
    zframe_destroy (frame_p);
    if (!sn_replay_offer (self->replay, sn_msg_root (reply)))
        s_log_answer (self, sn_msg_root (reply));
    sn_msg_destroy (&reply);
}

static void
s_log_drain (self_t *self, zsock_t *socket)
{
    zframe_t *frame;
    while ((frame = zframe_recv_nowait (socket)))
        s_log_reply (self, &frame);
    s_dispatch (self);
}

//  --------------------------------------------------------------------------
//  Replay

//  Apply one stored event to the state being rebuilt.
static void
s_replay_event (void *actor, const char *type, const sn_value_t *event)
{
    self_t *self = (self_t *) actor;
    if (streq (type, "bucket.created") || streq (type, "bucket.deleted")) {
        char *bucket = sn_value_get_strdup (event, "bucket_id");
        //  A re-read never changes a bucket known here: one whose delete the batch
        //  actor reported may not be in the log yet
        zhashx_t *into = self->staged_buckets ? self->staged_buckets : self->buckets;
        if (bucket && (!self->staged_buckets || !zhashx_lookup (self->buckets, bucket)))
            zhashx_update (into, bucket,
                           (void *) (streq (type, "bucket.deleted") ? "deleted" : ""));
        free (bucket);
        return;
    }
    if (strncmp (type, "invocation.", 11))
        return;
    if (streq (type, "invocation.enqueued")) {
        sn_pack_reset (self->pack);
        sn_pack_value (self->pack, event);
        s_inv_t *inv = s_inv_from_event (event, sn_pack_data (self->pack),
                                         sn_pack_size (self->pack), self->config.partitions);
        if (!inv || sn_idmap_lookup (self->invocations, inv->id) ||
            (self->staged && zhashx_lookup (self->staged, inv->id))) {
            s_inv_destroy (&inv);
            return;
        }
        if (self->staged) {
            //  Not counted nor queued: s_hook_reread_end adopts it or not at the end
            zhashx_insert (self->staged, inv->id, inv);
            return;
        }
        sn_idmap_insert (self->invocations, inv->id, inv);
        s_inv_count (self, inv);
        inv->queued_handle = zlistx_add_end (self->queued, inv);
        return;
    }
    //  A re-read applies events to the invocations it staged only: one known here
    //  is newer here than anything the log adds
    char *id = sn_value_get_strdup (event, "id");
    s_inv_t *inv = !id            ? NULL
                   : self->staged ? (s_inv_t *) zhashx_lookup (self->staged, id)
                                  : (s_inv_t *) sn_idmap_lookup (self->invocations, id);
    free (id);
    if (!inv)
        return;
    if (self->staged && streq (type, "invocation.done")) {
        //  Finished in the log: never adopted (see s_hook_reread_end), and dropped now, so
        //  that a re-read holds only what is unfinished, as a takeover does, not a
        //  partition's whole history
        zhashx_delete (self->staged, inv->id);
        s_inv_destroy (&inv);
        return;
    }
    uint64_t attempts = 0;
    if (sn_value_uint (sn_value_get (event, "attempts"), &attempts))
        inv->attempts = (uint32_t) attempts;
    if (streq (type, "invocation.started"))
        sn_value_int (sn_value_get (event, "started_at"), &inv->started_at);
    else if (streq (type, "invocation.retry")) {
        sn_value_int (sn_value_get (event, "run_at"), &inv->run_at);
        free (inv->error);
        inv->error = sn_value_get_strdup (event, "error");
    }
    else if (streq (type, "invocation.done")) {
        //  Known finished already (a replay over the state held): nothing changes
        if (inv->state == S_SUCCEEDED || inv->state == S_FAILED)
            return;
        s_inv_unqueue (self, inv);
        if (inv->state == S_RUNNING)
            s_inv_release (self, inv);
        s_inv_set_state (self, inv,
                         sn_value_streq (sn_value_get (event, "state"), "succeeded") ? S_SUCCEEDED
                                                                                     : S_FAILED);
        int64_t code = 500;
        sn_value_int (sn_value_get (event, "code"), &code);
        inv->code = (int) code;
        sn_value_int (sn_value_get (event, "finished_at"), &inv->finished_at);
        free (inv->error);
        inv->error = sn_value_get_strdup (event, "error");
        const sn_value_t *response = sn_value_get (event, "response");
        free (inv->response);
        inv->response = NULL;
        if (response) {
            sn_pack_reset (self->pack);
            sn_pack_value (self->pack, response);
            inv->response_size = sn_pack_size (self->pack);
            inv->response = (byte *) malloc (inv->response_size);
            memcpy (inv->response, sn_pack_data (self->pack), inv->response_size);
        }
        //  The batch actor finds its result in the log itself; one older than the
        //  window is only counted
        if (inv->finished_at + self->config.keep_finished <= zclock_time ())
            s_inv_evict (self, inv);
        else
            s_inv_settled (self, inv);
    }
}

//  After replay: what was running has no worker any more, and every timer is due
//  to be looked at.
static void
s_replay_finish (self_t *self)
{
    int64_t now = zclock_time ();
    size_t queued = 0, finished = 0;
    for (s_inv_t *inv = (s_inv_t *) sn_idmap_first (self->invocations); inv;
         inv = (s_inv_t *) sn_idmap_next (self->invocations)) {
        if (inv->state == S_QUEUED)
            queued++;
        else
            finished++;
    }
    s_deadline (self, now);
    if (queued || finished)
        zsys_info ("sn_queue: replayed %zu queued and %zu finished invocations", queued, finished);
}

//  --------------------------------------------------------------------------
//  Ownership

static uint32_t
s_partition_of (self_t *self, s_inv_t *inv)
{
    assert (inv->partition < self->config.partitions);
    return inv->partition;
}

//  Partition p is owned elsewhere now, or its replay failed or starts over (anew,
//  all the same here): forget its invocations and buckets. Their events stay in
//  the log for the new owner; writes in flight still complete.
static void
s_drop_partition (void *actor, uint32_t p, bool anew)
{
    self_t *self = (self_t *) actor;
    (void) anew;
    zlistx_t *gone = zlistx_new ();
    for (s_inv_t *inv = (s_inv_t *) sn_idmap_first (self->invocations); inv;
         inv = (s_inv_t *) sn_idmap_next (self->invocations))
        if (s_partition_of (self, inv) == p)
            zlistx_add_end (gone, inv);
    for (s_pending_t *pending = (s_pending_t *) zhashx_first (self->pending); pending;
         pending = (s_pending_t *) zhashx_next (self->pending))
        if (pending->finished && s_partition_of (self, pending->finished) == p)
            pending->finished = NULL;
    for (s_inv_t *inv = (s_inv_t *) zlistx_first (gone); inv;
         inv = (s_inv_t *) zlistx_next (gone)) {
        s_inv_unqueue (self, inv);
        s_inv_release (self, inv);
        if (inv->finished_handle)
            zlistx_delete (self->finished, inv->finished_handle);
        sn_idmap_delete (self->invocations, inv->id);
    }
    if (zlistx_size (gone))
        zsys_info ("sn_queue: partition %u: %zu invocations dropped from memory", p,
                   zlistx_size (gone));
    zlistx_purge (gone);
    for (const char *state = (const char *) zhashx_first (self->buckets); state;
         state = (const char *) zhashx_next (self->buckets)) {
        const char *bucket = (const char *) zhashx_cursor (self->buckets);
        if (!streq (bucket, "primary") &&
            sn_partition (bucket, strlen (bucket), self->config.partitions) == p)
            zlistx_add_end (gone, (void *) bucket);
    }
    for (const char *bucket = (const char *) zlistx_first (gone); bucket;
         bucket = (const char *) zlistx_next (gone))
        zhashx_delete (self->buckets, bucket);
    zlistx_purge (gone);
    //  Their counts go with them: the new owner counts them from the log
    for (s_counts_t *counts = (s_counts_t *) zhashx_first (self->counts); counts;
         counts = (s_counts_t *) zhashx_next (self->counts)) {
        const char *bucket = (const char *) zhashx_cursor (self->counts);
        if (sn_partition (bucket, strlen (bucket), self->config.partitions) == p)
            zlistx_add_end (gone, (void *) bucket);
    }
    for (const char *bucket = (const char *) zlistx_first (gone); bucket;
         bucket = (const char *) zlistx_next (gone))
        zhashx_delete (self->counts, bucket);
    zlistx_destroy (&gone);
}

//  Takeovers and re-reads (sn_replay) read the log one scan at a time, a page at
//  a time, each page handled when it comes in the actor's loop (s_log_reply): the
//  actor serves the other partitions meanwhile. A partition taken over answers
//  503 until its replay is over; one read again is served from what it holds.
//  What follows is the queue's part of them.

//  A takeover counts again the finished invocations not in memory: those it
//  leaves out, and those evicted since it loaded them (they are older still). A
//  re-read never touches a count: it only adds, staging the invocations unknown
//  here with their history as the scan shows it, and the buckets unknown here,
//  touching nothing held; p is served from what it holds meanwhile.
static void
s_hook_begin (void *actor, uint32_t p, bool reread)
{
    self_t *self = (self_t *) actor;
    if (reread) {
        self->staged = zhashx_new ();
        self->staged_buckets = zhashx_new ();
        return;
    }
    for (s_counts_t *counts = (s_counts_t *) zhashx_first (self->counts); counts;
         counts = (s_counts_t *) zhashx_next (self->counts)) {
        const char *bucket = (const char *) zhashx_cursor (self->counts);
        if (sn_partition (bucket, strlen (bucket), self->config.partitions) == p)
            counts->gone = 0;
    }
}

static void
s_hook_done (void *actor, uint32_t p)
{
    self_t *self = (self_t *) actor;
    (void) p;
    if (sn_replay_waiting (self->replay) == 0)
        s_replay_finish (self);
    else
        s_deadline (self, zclock_time ());
}

//  The re-read of p ended. Only a complete one (adopt) is adopted, and of it only
//  the invocations not finished in it and not known here. That is safe: a
//  complete scan holds every event this node wrote (acknowledged at QUORUM) or
//  read before it began, so an invocation finished here before (evicted or not)
//  shows finished in it and is never adopted; one finished while it ran may not
//  (its done may be behind the cursor), but none of p is evicted meanwhile
//  (s_evict), so it is still known here and not touched. What is adopted was
//  enqueued and is finished on no replica read, which is what a takeover would
//  queue. Anything else is discarded whole. The evictions of p held back are due
//  now.
static void
s_hook_reread_end (void *actor, uint32_t p, bool adopt)
{
    self_t *self = (self_t *) actor;
    size_t added = 0;
    if (adopt) {
        for (const char *state = (const char *) zhashx_first (self->staged_buckets); state;
             state = (const char *) zhashx_next (self->staged_buckets))
            zhashx_update (self->buckets, zhashx_cursor (self->staged_buckets), (void *) state);
        for (s_inv_t *inv = (s_inv_t *) zhashx_first (self->staged); inv;
             inv = (s_inv_t *) zhashx_next (self->staged)) {
            if (inv->state != S_QUEUED || sn_idmap_insert (self->invocations, inv->id, inv))
                continue;
            s_inv_count (self, inv);
            inv->queued_handle = zlistx_add_end (self->queued, inv);
            added++;
        }
        if (added)
            zsys_info ("sn_queue: read partition %u again: %zu queued invocations added", p, added);
    }
    for (s_inv_t *inv = (s_inv_t *) zhashx_first (self->staged); inv;
         inv = (s_inv_t *) zhashx_next (self->staged))
        if (sn_idmap_lookup (self->invocations, inv->id) != inv)
            s_inv_destroy (&inv);
    zhashx_destroy (&self->staged);
    zhashx_destroy (&self->staged_buckets);
    s_inv_t *head = (s_inv_t *) zlistx_first (self->finished);
    self->evict_at = head ? head->finished_at + self->config.keep_finished : INT64_MAX;
    s_deadline (self, zclock_time ());
}

//  What was gathered for the log goes before the page is asked: the scan then
//  holds it.
static uint64_t
s_hook_rid (void *actor)
{
    self_t *self = (self_t *) actor;
    uint64_t rid = ++self->log_rid;
    s_log_flush (self);
    return rid;
}

static const sn_replay_hooks_t s_replay_hooks = {
    s_replay_event,   s_hook_begin,     s_hook_done, s_hook_reread_end,
    s_drop_partition, s_handle_request, s_hook_rid};

//  The partition table changed: drop what went, replay what came (in turn, from
//  the actor's loop).
static void
s_placement (self_t *self)
{
    sn_replay_placement (self->replay);
    s_nodes_update (self);
    sn_replay_release (self->replay);
}

//  --------------------------------------------------------------------------
//  The actor

static char *
s_self_start (self_t *self)
{
    self->log = zsock_new (ZMQ_DEALER);
    zsock_set_sndhwm (self->log, S_PENDING_MAX * 2);
    zsock_set_rcvhwm (self->log, S_PENDING_MAX * 2);
    zsock_set_sndtimeo (self->log, 0);
    zsock_set_linger (self->log, 0);
    if (zsock_connect (self->log, "%s", self->config.log) == -1)
        return zsys_sprintf ("cannot connect to log %s", self->config.log);
    if (self->config.batch) {
        self->batch = zsock_new (ZMQ_DEALER);
        zsock_set_sndhwm (self->batch, S_PENDING_MAX * 2);
        zsock_set_sndtimeo (self->batch, 0);
        zsock_set_linger (self->batch, 0);
        if (zsock_connect (self->batch, "%s", self->config.batch) == -1)
            return zsys_sprintf ("cannot connect to batch %s", self->config.batch);
    }
    self->scan = self->log;
    if (self->config.store) {
        self->scan = zsock_new (ZMQ_DEALER);
        zsock_set_sndtimeo (self->scan, 0);
        zsock_set_linger (self->scan, 0);
        if (zsock_connect (self->scan, "%s", self->config.store) == -1)
            return zsys_sprintf ("cannot connect to store %s", self->config.store);
    }
    self->owners = sn_owners_new (self->config.feed, self->config.mesh, self->config.partitions);
    if (!self->owners)
        return zsys_sprintf ("cannot connect to the mesh %s", self->config.mesh);
    if (self->config.feed) {
        //  Word of our workers to the other nodes, and work to theirs
        self->peers = zsock_new (ZMQ_DEALER);
        zsock_set_sndhwm (self->peers, 100000);
        zsock_set_rcvhwm (self->peers, 100000);
        zsock_set_sndtimeo (self->peers, 0);
        zsock_set_linger (self->peers, 0);
        if (zsock_connect (self->peers, "%s", self->config.mesh) == -1)
            return zsys_sprintf ("cannot connect to the mesh %s", self->config.mesh);
    }
    self->replay = sn_replay_new ("sn_queue", self->owners, self->scan, self->pipe,
                                  self->config.partitions, &s_replay_hooks, self);
    //  With a feed, partitions are replayed as the mesh hands them to this node.
    //  Without one every partition is replayed here, before the router is bound:
    //  the node answers nothing before its state is loaded, and a replay that
    //  fails fails START
    char *error = sn_replay_start (self->replay);
    if (error)
        return error;
    self->router = zsock_new (ZMQ_ROUTER);
    zsock_set_sndhwm (self->router, 100000);
    zsock_set_rcvhwm (self->router, 100000);
    zsock_set_linger (self->router, 0);
    sn_replay_serve (self->replay, self->router);
    if (zsock_bind (self->router, "%s", self->config.endpoint) == -1)
        return zsys_sprintf ("cannot bind %s: %s", self->config.endpoint,
                             zmq_strerror (zmq_errno ()));
    self->bound = strdup (self->config.endpoint);
    self->poller = zpoller_new (self->pipe, self->router, self->log, NULL);
    if (self->scan != self->log)
        zpoller_add (self->poller, self->scan);
    if (sn_owners_feed (self->owners)) {
        zpoller_add (self->poller, sn_owners_feed (self->owners));
        zpoller_add (self->poller, sn_owners_mesh (self->owners));
        zpoller_add (self->poller, self->peers);
    }
    self->config.endpoint = NULL;
    self->config.log = NULL;
    self->config.batch = NULL;
    self->config.store = NULL;
    self->config.feed = NULL;
    self->config.mesh = NULL;
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
    else if (sn_replay_command (self->replay, self->pipe, command)) {
        //  REPLAY, REREAD, REREADS
    }
    else if (streq (command, "SIZE"))
        zstr_sendf (self->pipe, "%zu", sn_idmap_size (self->invocations));
    else if (streq (command, "$TERM"))
        self->terminated = true;
    else
        zsys_error ("sn_queue: invalid command '%s'", command);
    free (command);
}

static void
s_handle_socket (self_t *self, zsock_t *which)
{
    if (which == self->pipe)
        s_handle_pipe (self);
    else if (which == self->router)
        s_router_drain (self);
    else if (which == self->log || which == self->scan)
        s_log_drain (self, which);
    else if (which == sn_owners_feed (self->owners))
        s_placement (self);
    else if (which == sn_owners_mesh (self->owners))
        sn_owners_relay (self->owners, self->router);
    else if (which == self->peers)
        s_peers_drain (self);
}

void
sn_queue_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new (pipe, (const sn_queue_config_t *) args);
    zsock_signal (pipe, 0);
    while (!self->terminated) {
        //  The writes the last step gathered go now, as one message
        s_log_flush (self);
        if (!self->poller) {
            s_handle_pipe (self);
            continue;
        }
        int64_t now = zclock_time ();
        if (self->presence_at <= now) {
            s_presence_send (self, NULL);
            self->presence_at = zhashx_size (self->nodes) ? now + S_PRESENCE_EVERY : INT64_MAX;
            continue;
        }
        int64_t calls_wait = s_calls_wait (self);
        if (calls_wait <= 0) {
            s_calls_expire (self, zclock_mono ());
            continue;
        }
        if (self->next_deadline <= now) {
            s_timers (self);
            s_dispatch (self);
            continue;
        }
        if (sn_owners_deadline (self->owners) <= now) {
            sn_replay_release (self->replay);
            continue;
        }
        if (sn_replay_step (self->replay, now))
            continue;
        //  One step, then a look at the sockets (wait 0 while more are due)
        if (self->evict_at <= now)
            s_evict (self, now);
        int64_t wait = self->next_deadline - now;
        if (calls_wait < wait)
            wait = calls_wait;
        if (self->presence_at - now < wait)
            wait = self->presence_at - now;
        if (sn_owners_deadline (self->owners) - now < wait)
            wait = sn_owners_deadline (self->owners) - now;
        int64_t replay_next = sn_replay_next (self->replay, now);
        if (replay_next - now < wait)
            wait = replay_next - now > 0 ? replay_next - now : 0;
        if (self->evict_at - now < wait)
            wait = self->evict_at - now > 0 ? self->evict_at - now : 0;
        zsock_t *which = (zsock_t *) zpoller_wait (self->poller, wait > 60000 ? 60000 : (int) wait);
        if (which)
            s_handle_socket (self, which);
        else if (zpoller_terminated (self->poller))
            break;
    }
    sn_replay_stop (self->replay);
    //  What the last step gathered still goes: a result not sent would run again
    s_log_flush (self);
    s_self_destroy (&self);
}

zactor_t *
sn_queue_new (const sn_queue_config_t *config, char *error, size_t size)
{
    assert (config);
    return sn_actor_start (sn_queue_actor, (void *) config, "queue", error, size);
}

//  --------------------------------------------------------------------------
//  Selftest: a real store, the queue, and DEALERs standing in for the frontend's
//  producers and workers (the queue sees only envelopes, so a DEALER of its own
//  is a client like any other).

typedef struct {
    zsock_t *dealer;   //  one client of the queue
    zpoller_t *poller; //  on dealer
    sn_pack_t *pack;   //  request being built
    uint64_t rid;      //  last rid used
    zlist_t *pushed;   //  work that came while waiting for a reply (sn_msg_t)
} s_test_client_t;

static s_test_client_t *
s_test_client_new (const char *endpoint)
{
    s_test_client_t *self = (s_test_client_t *) zmalloc (sizeof (s_test_client_t));
    self->dealer = zsock_new (ZMQ_DEALER);
    zsock_set_sndtimeo (self->dealer, 5000);
    assert (zsock_connect (self->dealer, "%s", endpoint) == 0);
    self->poller = zpoller_new (self->dealer, NULL);
    self->pack = sn_pack_new ();
    self->pushed = zlist_new ();
    return self;
}

static void
s_test_client_destroy (s_test_client_t **self_p)
{
    s_test_client_t *self = *self_p;
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->dealer);
    sn_pack_destroy (&self->pack);
    while (zlist_size (self->pushed)) {
        sn_msg_t *msg = (sn_msg_t *) zlist_pop (self->pushed);
        sn_msg_destroy (&msg);
    }
    zlist_destroy (&self->pushed);
    free (self);
    *self_p = NULL;
}

//  The next message for this client, within 5 s, or NULL.
static sn_msg_t *
s_test_recv (s_test_client_t *self, int timeout)
{
    if (zpoller_wait (self->poller, timeout) != self->dealer)
        return NULL;
    zframe_t *frame = zframe_recv (self->dealer);
    sn_msg_t *msg = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    zframe_destroy (&frame);
    assert (msg);
    return msg;
}

//  Send the request of json text (with op, without rid); returns its rid.
static uint64_t
s_test_send (s_test_client_t *self, const char *json)
{
    sn_pack_reset (self->pack);
    //  {"rid": n, ...json's members}: splice the rid in front of the members
    char *text = zsys_sprintf ("{\"rid\": %" PRIu64 ", %s", ++self->rid, json + 1);
    char error[256];
    int rc = sn_json_to_pack (text, strlen (text), self->pack, error, sizeof error);
    if (rc)
        zsys_error ("sn_queue test: %s: %s", text, error);
    assert (rc == 0);
    free (text);
    zframe_t *frame = sn_pack_frame (self->pack);
    assert (zframe_send (&frame, self->dealer, 0) == 0);
    return self->rid;
}

//  The reply to the request sent under rid; work pushed meanwhile is kept.
static sn_msg_t *
s_test_reply (s_test_client_t *self, uint64_t wanted)
{
    while (true) {
        sn_msg_t *reply = s_test_recv (self, 5000);
        assert (reply);
        uint64_t rid = 0;
        if (sn_value_uint (sn_value_get (sn_msg_root (reply), "rid"), &rid) && rid == wanted)
            return reply;
        if (sn_value_get (sn_msg_root (reply), "op"))
            zlist_append (self->pushed, reply);
        else
            sn_msg_destroy (&reply);
    }
}

//  Send the request of json text (with op, without rid) and return the reply.
static sn_msg_t *
s_test_call (s_test_client_t *self, const char *json)
{
    return s_test_reply (self, s_test_send (self, json));
}

static int64_t
s_test_code (sn_msg_t *msg)
{
    int64_t code = -1;
    sn_value_int (sn_value_get (sn_msg_root (msg), "code"), &code);
    return code;
}

//  Call and return only the code.
static int64_t
s_test_status (s_test_client_t *self, const char *json)
{
    sn_msg_t *reply = s_test_call (self, json);
    int64_t code = s_test_code (reply);
    sn_msg_destroy (&reply);
    return code;
}

//  Enqueue json; returns the new id (caller frees).
static char *
s_test_enqueue (s_test_client_t *self, const char *json)
{
    sn_msg_t *reply = s_test_call (self, json);
    assert (s_test_code (reply) == 202);
    char *id = sn_value_get_strdup (sn_msg_root (reply), "id");
    sn_msg_destroy (&reply);
    assert (id);
    return id;
}

//  The state of invocation id, as "state/code" (caller frees).
static char *
s_test_state (s_test_client_t *self, const char *id)
{
    char *request = zsys_sprintf ("{\"op\": \"invocation\", \"id\": \"%s\"}", id);
    sn_msg_t *reply = s_test_call (self, request);
    free (request);
    assert (s_test_code (reply) == 200);
    const sn_value_t *inv = sn_value_get (sn_msg_root (reply), "invocation");
    char *state = sn_value_get_strdup (inv, "state");
    int64_t code = 0;
    sn_value_int (sn_value_get (inv, "code"), &code);
    char *text = zsys_sprintf ("%s/%" PRId64, state, code);
    free (state);
    sn_msg_destroy (&reply);
    return text;
}

//  Invocation id reaches the state wanted ("state/code") within 5 s: what it waits
//  for comes to the queue on another socket than the question.
static bool
s_test_state_comes (s_test_client_t *self, const char *id, const char *wanted)
{
    int64_t deadline = zclock_mono () + 5000;
    while (true) {
        char *state = s_test_state (self, id);
        bool reached = streq (state, wanted);
        free (state);
        if (reached || zclock_mono () > deadline)
            return reached;
        zclock_sleep (10); //  poll interval of the wait, not synchronisation
    }
}

//  Wait for work pushed to a worker; returns its id (caller frees) or NULL.
static char *
s_test_work (s_test_client_t *worker, int timeout)
{
    sn_msg_t *work = (sn_msg_t *) zlist_pop (worker->pushed);
    if (!work)
        work = s_test_recv (worker, timeout);
    if (!work)
        return NULL;
    assert (sn_value_streq (sn_value_get (sn_msg_root (work), "op"), "work"));
    char *id = sn_value_get_strdup (sn_msg_root (work), "id");
    sn_msg_destroy (&work);
    return id;
}

//  A queue of 8 partitions on log that keeps finished invocations keep ms (0: the
//  default).
static zactor_t *
s_test_queue_keeping (const char *endpoint, const char *log, int keep, bool verbose)
{
    sn_queue_config_t config = {endpoint, log, NULL, 8, 2000, verbose, NULL, NULL, NULL, 0, keep};
    char error[256];
    zactor_t *queue = sn_queue_new (&config, error, sizeof error);
    if (!queue)
        zsys_error ("sn_queue test: %s", error);
    assert (queue);
    return queue;
}

static zactor_t *
s_test_queue (const char *endpoint, const char *log, bool verbose)
{
    return s_test_queue_keeping (endpoint, log, 0, verbose);
}

//  A placement as the mesh publishes it: this node is "a", the other members "b"
//  and, with c, "c"; owner owns every one of the 8 partitions.
static void
s_test_placement (zsock_t *feed, const char *owner, bool c)
{
    sn_replay_test_place (feed, owner, 8, c ? "abc" : "ab");
}

//  The next forward the queue asks of the mesh whose request is op, skipping the
//  others; its sender in *from, to answer it. NULL when none comes within 5 s.
static sn_msg_t *
s_test_forward (zsock_t *mesh, const char *op, zframe_t **from)
{
    zpoller_t *poller = zpoller_new (mesh, NULL);
    sn_msg_t *found = NULL;
    int64_t deadline = zclock_mono () + 5000;
    while (!found && zclock_mono () < deadline) {
        if (zpoller_wait (poller, 100) != mesh)
            continue;
        zmsg_t *msg = zmsg_recv (mesh);
        zframe_t *sender = zmsg_pop (msg);
        zframe_t *payload = zmsg_pop (msg);
        sn_msg_t *forward = sn_msg_decode (zframe_data (payload), zframe_size (payload), 0, NULL);
        assert (forward); //  what the queue sends the mesh is whole msgpack
        const sn_value_t *request = sn_value_get (sn_msg_root (forward), "request");
        if (forward && sn_value_streq (sn_value_get (request, "op"), op)) {
            found = forward;
            forward = NULL;
            *from = sender;
            sender = NULL;
        }
        sn_msg_destroy (&forward);
        zframe_destroy (&sender);
        zframe_destroy (&payload);
        zmsg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    return found;
}

//  Answer forward, from *from, as the mesh does: {rid, code, error?, epoch?}.
static void
s_test_answer (zsock_t *mesh, zframe_t **from, sn_msg_t **forward, int code, const char *epoch)
{
    uint64_t rid = 0;
    assert (sn_value_uint (sn_value_get (sn_msg_root (*forward), "rid"), &rid));
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 3 + (epoch != NULL));
    sn_pack_kv_uint (pack, "rid", rid);
    sn_pack_kv_uint (pack, "code", (uint64_t) code);
    if (code == 200)
        sn_pack_kv_str (pack, "worker", "w9");
    else
        sn_pack_kv_str (pack, "error", "no replica of partition 1 answered");
    if (epoch)
        sn_pack_kv_str (pack, "epoch", epoch);
    zframe_send (from, mesh, ZFRAME_MORE);
    zframe_t *frame = sn_pack_frame (pack);
    zframe_send (&frame, mesh, 0);
    sn_pack_destroy (&pack);
    sn_msg_destroy (forward);
}

//  The queue of node "a", with the test standing in for its mesh: it publishes the
//  placement on feed and sees, and answers, every forward on mesh.
//  Starts of node "b" in the tests, in order
#define S_TEST_E1 "0000000000100001"
#define S_TEST_E2 "0000000000200001"
#define S_TEST_E3 "0000000000300001"

static void
s_test_cluster (const char *store_endpoint, bool verbose)
{
    char endpoint[64], feed_endpoint[64], mesh_endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://sn-queue-test-a-%d", getpid ());
    snprintf (feed_endpoint, sizeof feed_endpoint, "inproc://sn-queue-test-feed-%d", getpid ());
    snprintf (mesh_endpoint, sizeof mesh_endpoint, "inproc://sn-queue-test-mesh-%d", getpid ());
    zsock_t *feed = zsock_new_pub (feed_endpoint);
    zsock_t *mesh = zsock_new_router (mesh_endpoint);
    assert (feed && mesh);
    //  An answer through the mesh comes within 2 s, or never
    sn_queue_config_t config = {endpoint, store_endpoint, NULL,          8,    2000, verbose,
                                NULL,     feed_endpoint,  mesh_endpoint, 2000, 0};
    char error[256];
    zactor_t *queue = sn_queue_new (&config, error, sizeof error);
    assert (queue);
    //  "b" owns everything; the queue says hello to it once it sees the placement
    zframe_t *from = NULL;
    sn_msg_t *forward = NULL;
    while (!forward) {
        s_test_placement (feed, "b", false);
        forward = s_test_forward (mesh, "worker.at", &from);
    }
    sn_msg_destroy (&forward);
    zframe_destroy (&from);
    s_test_client_t *producer = s_test_client_new (endpoint);
    s_test_client_t *worker = s_test_client_new (endpoint);
    assert (s_test_status (worker, "{\"op\": \"worker.hello\", \"classes\": [\"far.C\"], "
                                   "\"capacity\": 1, \"name\": \"w1\"}") == 200);

    //  The owner "b" pushes work; the result goes to it through the mesh. While the
    //  owner cannot take it (503), this node keeps it and tries again; the worker
    //  hears 202, its result sent again is the same one, and its slot stays busy
    //  until the owner has the result: no more work comes whose result would wait.
    const char *push = "{\"op\": \"worker.push\", \"id\": \"%s\", \"bucket_id\": "
                       "\"primary\", \"token\": \"t\", \"attempt\": 1, \"timeout\": 60000, "
                       "\"lease\": \"0b\", \"node\": \"b\", \"invocation\": {\"class\": "
                       "\"far.C\", \"method\": \"m\", \"params\": []}}";
    char *request = zsys_sprintf (push, "cd-1");
    assert (s_test_status (producer, request) == 200);
    free (request);
    char *work = s_test_work (worker, 5000);
    assert (work && streq (work, "cd-1"));
    free (work);
    //  The same push again (its owner did not hear the answer) is taken once: 200,
    //  and no second work (the next work the worker sees is cd-2)
    request = zsys_sprintf (push, "cd-1");
    assert (s_test_status (producer, request) == 200);
    free (request);
    const char *result = "{\"op\": \"worker.result\", \"id\": \"cd-1\", \"code\": 200, "
                         "\"response\": {\"n\": 7}}";
    //  The first has a key that is not a string: left out, the map passed on is whole
    sn_pack_reset (worker->pack);
    sn_pack_map (worker->pack, 6);
    sn_pack_kv_uint (worker->pack, "rid", ++worker->rid);
    sn_pack_kv_str (worker->pack, "op", "worker.result");
    sn_pack_kv_str (worker->pack, "id", "cd-1");
    sn_pack_kv_uint (worker->pack, "code", 200);
    sn_pack_str (worker->pack, "response");
    sn_pack_map (worker->pack, 1);
    sn_pack_kv_uint (worker->pack, "n", 7);
    sn_pack_uint (worker->pack, 1);
    sn_pack_str (worker->pack, "x");
    zframe_t *frame = sn_pack_frame (worker->pack);
    assert (zframe_send (&frame, worker->dealer, 0) == 0);
    uint64_t first = worker->rid;
    forward = s_test_forward (mesh, "worker.result", &from);
    assert (forward);
    const sn_value_t *passed = sn_value_get (sn_msg_root (forward), "request");
    assert (sn_value_streq (sn_value_get (passed, "lease"), "0b"));
    assert (sn_value_size (passed) == 6);
    uint64_t p = 99;
    assert (sn_value_uint (sn_value_get (sn_msg_root (forward), "p"), &p) && p == 1);
    uint64_t again = s_test_send (worker, result);
    s_test_answer (mesh, &from, &forward, 503, NULL);
    sn_msg_t *reply = s_test_reply (worker, first);
    assert (s_test_code (reply) == 202);
    sn_msg_destroy (&reply);
    reply = s_test_reply (worker, again);
    assert (s_test_code (reply) == 202);
    sn_msg_destroy (&reply);
    request = zsys_sprintf (push, "cd-2");
    assert (s_test_status (producer, request) == 409);
    //  The next try, after a backoff, is the same result under the same lease
    forward = s_test_forward (mesh, "worker.result", &from);
    assert (forward);
    passed = sn_value_get (sn_msg_root (forward), "request");
    assert (sn_value_streq (sn_value_get (passed, "id"), "cd-1"));
    assert (sn_value_streq (sn_value_get (passed, "lease"), "0b"));
    s_test_answer (mesh, &from, &forward, 200, NULL);
    //  Taken: the hold is gone, and the slot is free
    while (s_test_status (worker, result) != 404)
        zclock_sleep (10); //  poll interval of the wait, not synchronisation
    assert (s_test_status (producer, request) == 200);
    free (request);
    work = s_test_work (worker, 5000);
    assert (work && streq (work, "cd-2"));
    free (work);
    //  The worker goes silent: the owner hears a retryable 504 for its attempt, tried
    //  again while the owner cannot take it, as a worker's own result
    for (int round = 0; round < 2; round++) {
        forward = s_test_forward (mesh, "worker.result", &from);
        assert (forward);
        passed = sn_value_get (sn_msg_root (forward), "request");
        assert (sn_value_streq (sn_value_get (passed, "id"), "cd-2"));
        assert (sn_value_streq (sn_value_get (passed, "lease"), "0b"));
        int64_t code = 0;
        assert (sn_value_int (sn_value_get (passed, "code"), &code) && code == 504);
        s_test_answer (mesh, &from, &forward, round ? 200 : 503, NULL);
    }

    //  A push whose answer was lost is sent again by its owner, and the copy may come
    //  after the owner has taken the result: it is taken as before (200), not run
    //  again. A push under a new lease runs.
    s_test_client_t *once = s_test_client_new (endpoint);
    assert (s_test_status (once, "{\"op\": \"worker.hello\", \"classes\": [\"far.T\"], "
                                 "\"capacity\": 1, \"name\": \"wt\"}") == 200);
    const char *push_t = "{\"op\": \"worker.push\", \"id\": \"t-1\", \"bucket_id\": "
                         "\"primary\", \"token\": \"t\", \"attempt\": %d, \"timeout\": "
                         "60000, \"lease\": \"%s\", \"node\": \"b\", \"invocation\": "
                         "{\"class\": \"far.T\", \"method\": \"m\", \"params\": []}}";
    for (int attempt = 1; attempt <= 2; attempt++) {
        request = zsys_sprintf (push_t, attempt, attempt == 1 ? "0e" : "0f");
        assert (s_test_status (producer, request) == 200);
        free (request);
        //  The next work the worker sees is this attempt: the copy of the first
        //  push did not run it again
        sn_msg_t *got = (sn_msg_t *) zlist_pop (once->pushed);
        if (!got)
            got = s_test_recv (once, 5000);
        assert (got);
        assert (sn_value_streq (sn_value_get (sn_msg_root (got), "id"), "t-1"));
        uint64_t got_attempt = 0;
        assert (sn_value_uint (sn_value_get (sn_msg_root (got), "attempt"), &got_attempt) &&
                got_attempt == (uint64_t) attempt);
        sn_msg_destroy (&got);
        uint64_t sent =
            s_test_send (once, "{\"op\": \"worker.result\", \"id\": \"t-1\", \"code\": 200}");
        forward = s_test_forward (mesh, "worker.result", &from);
        assert (forward);
        passed = sn_value_get (sn_msg_root (forward), "request");
        assert (sn_value_streq (sn_value_get (passed, "id"), "t-1"));
        assert (sn_value_streq (sn_value_get (passed, "lease"), attempt == 1 ? "0e" : "0f"));
        s_test_answer (mesh, &from, &forward, 200, NULL);
        reply = s_test_reply (once, sent);
        assert (s_test_code (reply) == 200);
        sn_msg_destroy (&reply);
        if (attempt == 1) {
            request = zsys_sprintf (push_t, 1, "0e");
            assert (s_test_status (producer, request) == 200);
            free (request);
        }
    }
    s_test_client_destroy (&once);

    //  Results kept for owners that cannot take them are capped node-wide, however
    //  many workers come with fresh slots: at the cap a push is refused (409)
    s_test_client_t *many = s_test_client_new (endpoint);
    assert (s_test_status (many, "{\"op\": \"worker.hello\", \"classes\": [\"far.R\"], "
                                 "\"capacity\": 2000, \"name\": \"wm\"}") == 200);
    const char *push_r = "{\"op\": \"worker.push\", \"id\": \"r%d-1\", \"bucket_id\": "
                         "\"primary\", \"token\": \"t\", \"attempt\": 1, \"timeout\": "
                         "60000, \"lease\": \"0d\", \"node\": \"b\", \"invocation\": "
                         "{\"class\": \"far.R\", \"method\": \"m\", \"params\": []}}";
    for (int index = 0; index < S_HELD_MAX; index++) {
        request = zsys_sprintf (push_r, index);
        assert (s_test_status (producer, request) == 200);
        free (request);
        request = zsys_sprintf ("{\"op\": \"worker.result\", \"id\": \"r%d-1\", \"code\": "
                                "200}",
                                index);
        s_test_send (many, request);
        free (request);
    }
    bool full = false;
    int64_t until = zclock_mono () + 10000;
    for (int index = S_HELD_MAX; !full && zclock_mono () < until; index++) {
        request = zsys_sprintf (push_r, index);
        reply = s_test_call (producer, request);
        free (request);
        char *why = sn_value_get_strdup (sn_msg_root (reply), "error");
        full = s_test_code (reply) == 409 && why && strstr (why, "keeps as many results");
        free (why);
        sn_msg_destroy (&reply);
    }
    assert (full);
    s_test_client_destroy (&many);

    //  This node owns everything now (and "c" joined: it hears our word, so the
    //  placement has been seen). Its work goes to "b", whose workers take it; "b"
    //  starts again (a new epoch in its word) before it is ever declared dead: the
    //  work pushed to its last start is pushed again at once, not at its timeout.
    s_test_placement (feed, "a", true);
    while (true) {
        forward = s_test_forward (mesh, "worker.at", &from);
        assert (forward);
        bool to_c = sn_value_streq (sn_value_get (sn_msg_root (forward), "node"), "c");
        sn_msg_destroy (&forward);
        zframe_destroy (&from);
        if (to_c)
            break;
    }
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"" S_TEST_E1 "\", \"classes\": {\"far.D\": 1}}") == 200);
    char *far = s_test_enqueue (producer, "{\"op\": \"enqueue\", \"token\": \"t\", "
                                          "\"timeout\": 600000, \"invocation\": {\"class\": "
                                          "\"far.D\", \"method\": \"m\", \"params\": []}}");
    forward = s_test_forward (mesh, "worker.push", &from);
    assert (forward);
    passed = sn_value_get (sn_msg_root (forward), "request");
    assert (sn_value_streq (sn_value_get (passed, "id"), far));
    uint64_t attempt = 0;
    assert (sn_value_uint (sn_value_get (passed, "attempt"), &attempt) && attempt == 1);
    char *lease = sn_value_get_strdup (passed, "lease");
    s_test_answer (mesh, &from, &forward, 200, S_TEST_E1);
    char *state = s_test_state (producer, far);
    assert (streq (state, "running/0"));
    free (state);
    //  The same start says it again: nothing changes
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"" S_TEST_E1 "\", \"classes\": {\"far.D\": 0}}") == 200);
    //  A word without an epoch (a node of an older version) changes no epoch
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", "
                                     "\"classes\": {\"far.D\": 0}}") == 200);
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"" S_TEST_E2 "\", \"classes\": {\"far.D\": 1}}") == 200);
    forward = s_test_forward (mesh, "worker.push", &from);
    assert (forward);
    passed = sn_value_get (sn_msg_root (forward), "request");
    assert (sn_value_streq (sn_value_get (passed, "id"), far));
    assert (sn_value_uint (sn_value_get (passed, "attempt"), &attempt) && attempt == 2);
    assert (!sn_value_streq (sn_value_get (passed, "lease"), lease));
    s_test_answer (mesh, &from, &forward, 200, S_TEST_E2);
    free (lease);
    free (far);

    //  Room is counted per class: one of each of two classes goes to "b"
    assert (s_test_status (producer,
                           "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                           "\"" S_TEST_E2 "\", \"classes\": {\"far.D\": 1, \"far.E\": 1}}") == 200);
    char *d2 = s_test_enqueue (producer, "{\"op\": \"enqueue\", \"token\": \"t\", "
                                         "\"invocation\": {\"class\": \"far.D\", \"method\": "
                                         "\"m\", \"params\": []}}");
    char *e1 = s_test_enqueue (producer, "{\"op\": \"enqueue\", \"token\": \"t\", "
                                         "\"invocation\": {\"class\": \"far.E\", \"method\": "
                                         "\"m\", \"params\": []}}");
    bool pushed_d2 = false, pushed_e1 = false;
    for (int count = 0; count < 2; count++) {
        forward = s_test_forward (mesh, "worker.push", &from);
        assert (forward);
        passed = sn_value_get (sn_msg_root (forward), "request");
        pushed_d2 |= sn_value_streq (sn_value_get (passed, "id"), d2);
        pushed_e1 |= sn_value_streq (sn_value_get (passed, "id"), e1);
        s_test_answer (mesh, &from, &forward, 200, S_TEST_E2);
    }
    assert (pushed_d2 && pushed_e1);
    free (d2);
    free (e1);

    //  "b" starts again (e3) while a push to it waits for its answer: the new start's
    //  word, first, does not take it back; the answer says e3 took it. (What "e2"
    //  took is taken back, class far.F has no room there, so it stays queued.)
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"" S_TEST_E2 "\", \"classes\": {\"far.F\": 1}}") == 200);
    const char *enqueue_f = "{\"op\": \"enqueue\", \"token\": \"t\", \"timeout\": 600000, "
                            "\"invocation\": {\"class\": \"far.F\", \"method\": \"m\", "
                            "\"params\": []}}";
    char *f1 = s_test_enqueue (producer, enqueue_f);
    forward = s_test_forward (mesh, "worker.push", &from);
    assert (forward);
    passed = sn_value_get (sn_msg_root (forward), "request");
    assert (sn_value_streq (sn_value_get (passed, "id"), f1));
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"" S_TEST_E3 "\", \"classes\": {\"far.F\": 0}}") == 200);
    state = s_test_state (producer, f1);
    assert (streq (state, "running/0"));
    free (state);
    s_test_answer (mesh, &from, &forward, 200, S_TEST_E3);
    state = s_test_state (producer, f1);
    assert (streq (state, "running/0"));
    free (state);
    //  A late word of the start e2 changes nothing: nothing e3 took is taken back,
    //  and its free slots are not "b"'s (f2 is not pushed on it)
    char *f2 = s_test_enqueue (producer, enqueue_f);
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"" S_TEST_E2 "\", \"classes\": {\"far.F\": 1}}") == 200);
    state = s_test_state (producer, f1);
    assert (streq (state, "running/0"));
    free (state);
    state = s_test_state (producer, f2);
    assert (streq (state, "queued/0"));
    free (state);
    //  A push answered by a start older than the newest heard is taken back at once
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"" S_TEST_E3 "\", \"classes\": {\"far.F\": 1}}") == 200);
    forward = s_test_forward (mesh, "worker.push", &from);
    assert (forward);
    passed = sn_value_get (sn_msg_root (forward), "request");
    assert (sn_value_streq (sn_value_get (passed, "id"), f2));
    s_test_answer (mesh, &from, &forward, 200, S_TEST_E2);
    assert (s_test_state_comes (producer, f2, "queued/0"));
    state = s_test_state (producer, f1);
    assert (streq (state, "running/0"));
    free (state);
    free (f1);
    free (f2);

    //  A push whose answer does not come within the call's ttl was taken by some
    //  start: the next newer word takes it back (a word does not while it waits)
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"" S_TEST_E3 "\", \"classes\": {\"far.G\": 1}}") == 200);
    char *g = s_test_enqueue (producer, "{\"op\": \"enqueue\", \"token\": \"t\", "
                                        "\"invocation\": {\"class\": \"far.G\", \"method\": "
                                        "\"m\", \"params\": []}}");
    forward = s_test_forward (mesh, "worker.push", &from);
    assert (forward);
    passed = sn_value_get (sn_msg_root (forward), "request");
    assert (sn_value_streq (sn_value_get (passed, "id"), g));
    sn_msg_destroy (&forward);
    zframe_destroy (&from);
    int64_t deadline = zclock_mono () + 5000;
    bool back = false;
    for (int start = 100; !back && zclock_mono () < deadline; start++) {
        char *word = zsys_sprintf ("{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                   "\"%016x\", \"classes\": {\"far.G\": 0}}",
                                   0x400000 + start);
        assert (s_test_status (producer, word) == 200);
        free (word);
        state = s_test_state (producer, g);
        back = streq (state, "queued/0");
        free (state);
        zclock_sleep (50); //  poll interval of the wait, not synchronisation
    }
    assert (back);
    free (g);

    //  A start whose epoch is far ahead of our clock (or not 16 lowercase hex digits)
    //  is not ordered: the next start of the node is a new start, not a late word
    const char *enqueue_k = "{\"op\": \"enqueue\", \"token\": \"t\", \"invocation\": "
                            "{\"class\": \"far.K\", \"method\": \"m\", \"params\": []}}";
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"fffffffffff00001\", \"classes\": {}}") == 200);
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"0000000000500001\", \"classes\": {\"far.K\": 1}}") == 200);
    char *k = s_test_enqueue (producer, enqueue_k);
    forward = s_test_forward (mesh, "worker.push", &from);
    assert (forward);
    passed = sn_value_get (sn_msg_root (forward), "request");
    assert (sn_value_streq (sn_value_get (passed, "id"), k));
    //  An answer whose epoch is not one says nothing of which start took it: the
    //  work stays running
    s_test_answer (mesh, &from, &forward, 200, "0000000000500001a");
    assert (!s_test_state_comes (producer, k, "queued/0"));
    free (k);
    //  An older start's word while the newest start's word is fresh is late; once
    //  that word is stale, it is a start of a node whose clock went back
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"0000000000500001\", \"classes\": {}}") == 200);
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"0000000000400001\", \"classes\": {\"far.K\": 1}}") == 200);
    k = s_test_enqueue (producer, enqueue_k);
    state = s_test_state (producer, k);
    assert (streq (state, "queued/0"));
    free (state);
    deadline = zclock_mono () + 15000;
    forward = NULL;
    while (!forward && zclock_mono () < deadline) {
        assert (s_test_status (producer,
                               "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                               "\"0000000000400001\", \"classes\": {\"far.K\": 1}}") == 200);
        forward = s_test_forward (mesh, "worker.push", &from);
    }
    assert (forward);
    passed = sn_value_get (sn_msg_root (forward), "request");
    assert (sn_value_streq (sn_value_get (passed, "id"), k));
    s_test_answer (mesh, &from, &forward, 200, "0000000000400001");
    free (k);

    //  A push whose outcome is not known (the mesh's 503, after the word of a new
    //  start came while it waited) is sent again, the same: the start there now
    //  runs it, once; it is not left running until its timeout
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"0000000000800001\", \"classes\": {\"far.H\": 1}}") == 200);
    char *h = s_test_enqueue (producer, "{\"op\": \"enqueue\", \"token\": \"t\", "
                                        "\"timeout\": 600000, \"invocation\": {\"class\": "
                                        "\"far.H\", \"method\": \"m\", \"params\": []}}");
    forward = s_test_forward (mesh, "worker.push", &from);
    assert (forward);
    passed = sn_value_get (sn_msg_root (forward), "request");
    assert (sn_value_streq (sn_value_get (passed, "id"), h));
    lease = sn_value_get_strdup (passed, "lease");
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"b\", \"epoch\": "
                                     "\"0000000000900001\", \"classes\": {\"far.H\": 0}}") == 200);
    s_test_answer (mesh, &from, &forward, 503, NULL);
    forward = s_test_forward (mesh, "worker.push", &from);
    assert (forward);
    passed = sn_value_get (sn_msg_root (forward), "request");
    assert (sn_value_streq (sn_value_get (passed, "id"), h));
    assert (sn_value_streq (sn_value_get (passed, "lease"), lease));
    assert (sn_value_uint (sn_value_get (passed, "attempt"), &attempt) && attempt == 1);
    s_test_answer (mesh, &from, &forward, 200, "0000000000900001");
    state = s_test_state (producer, h);
    assert (streq (state, "running/0"));
    free (state);
    free (lease);
    free (h);

    //  A new attempt at work whose older attempt runs here still is refused until
    //  that one's result is in: never two attempts at once, nor the old result
    //  passed on as the new one's
    s_test_client_t *second = s_test_client_new (endpoint);
    assert (s_test_status (second, "{\"op\": \"worker.hello\", \"classes\": [\"far.Q\"], "
                                   "\"capacity\": 2, \"name\": \"w2\"}") == 200);
    const char *push_q = "{\"op\": \"worker.push\", \"id\": \"q-1\", \"bucket_id\": "
                         "\"primary\", \"token\": \"t\", \"attempt\": %d, \"timeout\": "
                         "60000, \"lease\": \"%s\", \"node\": \"b\", \"invocation\": "
                         "{\"class\": \"far.Q\", \"method\": \"m\", \"params\": []}}";
    request = zsys_sprintf (push_q, 1, "01");
    assert (s_test_status (producer, request) == 200);
    free (request);
    work = s_test_work (second, 5000);
    assert (work && streq (work, "q-1"));
    free (work);
    request = zsys_sprintf (push_q, 2, "02");
    assert (s_test_status (producer, request) == 409);
    //  Its result ends it (here the owner of the partition: the hold is over)
    assert (s_test_status (second, "{\"op\": \"worker.result\", \"id\": \"q-1\", "
                                   "\"code\": 200}") == 409);
    assert (s_test_status (producer, request) == 200);
    free (request);
    work = s_test_work (second, 5000);
    assert (work && streq (work, "q-1"));
    free (work);
    s_test_client_destroy (&second);

    s_test_client_destroy (&producer);
    s_test_client_destroy (&worker);
    zactor_destroy (&queue);
    zsock_destroy (&feed);
    zsock_destroy (&mesh);
}

//  The number of invocations queue holds in memory.
static size_t
s_test_size (zactor_t *queue)
{
    zstr_send (queue, "SIZE");
    char *answer = zstr_recv (queue);
    assert (answer);
    size_t size = (size_t) strtoull (answer, NULL, 10);
    free (answer);
    return size;
}

//  bucket.counts of primary as "queued/running/finished" (caller frees).
static char *
s_test_counts (s_test_client_t *client)
{
    sn_msg_t *reply =
        s_test_call (client, "{\"op\": \"bucket.counts\", \"bucket_id\": \"primary\"}");
    assert (s_test_code (reply) == 200);
    uint64_t queued = 0, running = 0, finished = 0;
    const sn_value_t *root = sn_msg_root (reply);
    sn_value_uint (sn_value_get (root, "queued"), &queued);
    sn_value_uint (sn_value_get (root, "running"), &running);
    sn_value_uint (sn_value_get (root, "finished"), &finished);
    sn_msg_destroy (&reply);
    return zsys_sprintf ("%" PRIu64 "/%" PRIu64 "/%" PRIu64, queued, running, finished);
}

static void
s_test_counts_are (s_test_client_t *client, uint64_t queued, uint64_t running, uint64_t finished)
{
    char *counts = s_test_counts (client);
    char *wanted = zsys_sprintf ("%" PRIu64 "/%" PRIu64 "/%" PRIu64, queued, running, finished);
    if (!streq (counts, wanted))
        zsys_error ("sn_queue test: counts %s, wanted %s", counts, wanted);
    assert (streq (counts, wanted));
    free (counts);
    free (wanted);
}

//  The next bulk of writes the queue sends to a log the test stands in for: their
//  types must be types (space-separated, in order). Returns the frames to answer it
//  with (the sender, then "rid count").
static zmsg_t *
s_test_log_next (zsock_t *log, const char *types)
{
    zpoller_t *poller = zpoller_new (log, NULL);
    assert (zpoller_wait (poller, 5000) == log);
    zpoller_destroy (&poller);
    zmsg_t *msg = zmsg_recv (log);
    zframe_t *payload = zmsg_last (msg);
    sn_msg_t *bulk = sn_msg_decode (zframe_data (payload), zframe_size (payload), 0, NULL);
    assert (bulk);
    const sn_value_t *root = sn_msg_root (bulk);
    assert (sn_value_streq (sn_value_get (root, "op"), "bulk"));
    const sn_value_t *puts = sn_value_get (root, "puts");
    size_t count = sn_value_size (puts);
    const char *type = types;
    for (size_t index = 0; index < count; index++) {
        size_t len = strcspn (type, " "), got_len = 0;
        const char *got = sn_value_str (sn_value_get (sn_value_at (puts, index), "type"), &got_len);
        if (!got || got_len != len || memcmp (got, type, len))
            zsys_error ("sn_queue test: write %zu of %zu is %.*s, wanted %s", index, count,
                        (int) got_len, got ? got : "?", types);
        assert (got && got_len == len && memcmp (got, type, len) == 0);
        type += len + (type[len] == ' ');
    }
    assert (count > 0 && *type == 0);
    uint64_t rid = 0;
    assert (sn_value_uint (sn_value_get (root, "rid"), &rid));
    sn_msg_destroy (&bulk);
    zmsg_remove (msg, payload);
    zframe_destroy (&payload);
    zmsg_addstrf (msg, "%" PRIu64 " %zu", rid, count);
    return msg;
}

//  The log says the write is on disk.
static void
s_test_log_ack (zsock_t *log, zmsg_t **write)
{
    zframe_t *last = zmsg_last (*write);
    char *rid = zframe_strdup (last);
    zmsg_remove (*write, last);
    zframe_destroy (&last);
    char *count = NULL;
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 3);
    sn_pack_kv_uint (pack, "rid", strtoull (rid, &count, 10));
    sn_pack_kv_uint (pack, "code", 200);
    sn_pack_str (pack, "results");
    uint32_t writes = (uint32_t) strtoul (count, NULL, 10);
    sn_pack_array (pack, writes);
    for (uint32_t index = 0; index < writes; index++) {
        sn_pack_map (pack, 2);
        sn_pack_kv_uint (pack, "code", 201);
        sn_pack_kv_str (pack, "key", "k");
    }
    zframe_t *frame = sn_pack_frame (pack);
    zmsg_append (*write, &frame);
    assert (zmsg_send (write, log) == 0);
    sn_pack_destroy (&pack);
    free (rid);
}

//  Retention with a window of 200 ms: a finished invocation leaves memory after the
//  window, once the log has its result and the batch actor was told; the counts
//  keep it; a restart does not load it; its id answers 404.
static void
s_test_retention (const char *store_endpoint, bool verbose)
{
    char endpoint[64], log_endpoint[64], batch_endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://sn-queue-test-keep-%d", getpid ());
    snprintf (log_endpoint, sizeof log_endpoint, "inproc://sn-queue-test-keep-log-%d", getpid ());
    snprintf (batch_endpoint, sizeof batch_endpoint, "inproc://sn-queue-test-keep-batch-%d",
              getpid ());
    zsock_t *log = zsock_new_router (log_endpoint);
    zsock_t *batch = zsock_new_router (batch_endpoint);
    assert (log && batch);
    //  Writes go to the test, replays come from the store
    sn_queue_config_t config = {endpoint,       log_endpoint, batch_endpoint, 8, 2000, verbose,
                                store_endpoint, NULL,         NULL,           0, 200};
    char error[256];
    zactor_t *queue = sn_queue_new (&config, error, sizeof error);
    assert (queue);
    s_test_client_t *producer = s_test_client_new (endpoint);
    s_test_client_t *worker = s_test_client_new (endpoint);
    size_t baseline = s_test_size (queue);
    char *counts = s_test_counts (producer);
    uint64_t queued = 0, running = 0, finished = 0;
    assert (sscanf (counts, "%" SCNu64 "/%" SCNu64 "/%" SCNu64, &queued, &running, &finished) == 3);
    free (counts);
    assert (s_test_status (worker, "{\"op\": \"worker.hello\", \"classes\": [\"keep.C\"], "
                                   "\"capacity\": 1}") == 200);

    //  Enqueued, started, failed once (retried), then succeeded: counted at each step
    uint64_t rid = s_test_send (producer, "{\"op\": \"enqueue\", \"token\": \"k\", \"backoff\": "
                                          "0, \"invocation\": {\"class\": \"keep.C\", "
                                          "\"method\": \"m\", \"params\": []}}");
    zmsg_t *write = s_test_log_next (log, "invocation.enqueued");
    s_test_log_ack (log, &write);
    sn_msg_t *reply = s_test_reply (producer, rid);
    assert (s_test_code (reply) == 202);
    char *id = sn_value_get_strdup (sn_msg_root (reply), "id");
    sn_msg_destroy (&reply);
    char *work = s_test_work (worker, 5000);
    assert (work && streq (work, id));
    free (work);
    write = s_test_log_next (log, "invocation.started");
    s_test_log_ack (log, &write);
    s_test_counts_are (producer, queued, running + 1, finished);
    char *result = zsys_sprintf ("{\"op\": \"worker.result\", \"id\": \"%s\", \"code\": 503, "
                                 "\"retryable\": true}",
                                 id);
    rid = s_test_send (worker, result);
    free (result);
    //  Its retry is due at once (backoff 0): it runs again in the same step
    write = s_test_log_next (log, "invocation.retry invocation.started");
    s_test_log_ack (log, &write);
    reply = s_test_reply (worker, rid);
    assert (s_test_code (reply) == 200);
    sn_msg_destroy (&reply);
    work = s_test_work (worker, 5000);
    assert (work && streq (work, id));
    free (work);
    s_test_counts_are (producer, queued, running + 1, finished);
    result = zsys_sprintf ("{\"op\": \"worker.result\", \"id\": \"%s\", \"code\": 200}", id);
    rid = s_test_send (worker, result);
    free (result);
    //  The result is not on disk yet: it stays however old it gets
    zmsg_t *done = s_test_log_next (log, "invocation.done");
    s_test_counts_are (producer, queued, running, finished + 1);
    int64_t until = zclock_time () + 3 * 200;
    while (zclock_time () < until) {
        char *state = s_test_state (producer, id);
        assert (streq (state, "succeeded/200"));
        free (state);
        zclock_sleep (20); //  poll interval of the check, not synchronisation
    }
    assert (s_test_size (queue) == baseline + 1);
    //  On disk now: the batch actor hears of it, then it goes
    s_test_log_ack (log, &done);
    reply = s_test_reply (worker, rid);
    assert (s_test_code (reply) == 200);
    sn_msg_destroy (&reply);
    int64_t deadline = zclock_mono () + 5000;
    while (s_test_size (queue) != baseline && zclock_mono () < deadline)
        zclock_sleep (10); //  poll interval of the wait, not synchronisation
    assert (s_test_size (queue) == baseline);
    zpoller_t *poller = zpoller_new (batch, NULL);
    assert (zpoller_wait (poller, 5000) == batch);
    zpoller_destroy (&poller);
    zmsg_t *note = zmsg_recv (batch);
    zframe_t *frame = zmsg_last (note);
    sn_msg_t *finished_note = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    assert (sn_value_streq (sn_value_get (sn_msg_root (finished_note), "op"), "finished"));
    assert (sn_value_streq (
        sn_value_get (sn_value_get (sn_msg_root (finished_note), "event"), "id"), id));
    sn_msg_destroy (&finished_note);
    zmsg_destroy (&note);
    char *request = zsys_sprintf ("{\"op\": \"invocation\", \"id\": \"%s\"}", id);
    reply = s_test_call (producer, request);
    free (request);
    assert (s_test_code (reply) == 404);
    char *text = sn_value_get_strdup (sn_msg_root (reply), "error");
    assert (text && strstr (text, "finished more than 200 ms ago"));
    free (text);
    sn_msg_destroy (&reply);
    s_test_counts_are (producer, queued, running, finished + 1);
    free (id);
    s_test_client_destroy (&producer);
    s_test_client_destroy (&worker);
    zactor_destroy (&queue);
    zsock_destroy (&log);
    zsock_destroy (&batch);

    //  With the store as the log: results come back at a restart within the window,
    //  and are counted but not loaded after it; a replay over that changes nothing
    queue = s_test_queue_keeping (endpoint, store_endpoint, 60000, verbose);
    producer = s_test_client_new (endpoint);
    worker = s_test_client_new (endpoint);
    baseline = s_test_size (queue);
    counts = s_test_counts (producer);
    assert (sscanf (counts, "%" SCNu64 "/%" SCNu64 "/%" SCNu64, &queued, &running, &finished) == 3);
    free (counts);
    assert (s_test_status (worker, "{\"op\": \"worker.hello\", \"classes\": [\"keep.C\"], "
                                   "\"capacity\": 3}") == 200);
    char *ids[3];
    for (int index = 0; index < 3; index++)
        ids[index] = s_test_enqueue (producer, "{\"op\": \"enqueue\", \"token\": \"k\", "
                                               "\"invocation\": {\"class\": \"keep.C\", "
                                               "\"method\": \"m\", \"params\": []}}");
    for (int index = 0; index < 3; index++) {
        work = s_test_work (worker, 5000);
        assert (work);
        result = zsys_sprintf ("{\"op\": \"worker.result\", \"id\": \"%s\", \"code\": 200}", work);
        assert (s_test_status (worker, result) == 200);
        free (result);
        free (work);
    }
    int64_t last_finish = zclock_time ();
    s_test_counts_are (producer, queued, running, finished + 3);
    assert (s_test_size (queue) == baseline + 3);
    s_test_client_destroy (&producer);
    s_test_client_destroy (&worker);
    zactor_destroy (&queue);
    queue = s_test_queue_keeping (endpoint, store_endpoint, 60000, verbose);
    producer = s_test_client_new (endpoint);
    assert (s_test_size (queue) == baseline + 3);
    s_test_counts_are (producer, queued, running, finished + 3);
    s_test_client_destroy (&producer);
    zactor_destroy (&queue);
    //  The window of the next start is over for them once 50 ms have passed
    while (zclock_time () <= last_finish + 50)
        zclock_sleep (10); //  the time the test is about, not synchronisation
    queue = s_test_queue_keeping (endpoint, store_endpoint, 50, verbose);
    producer = s_test_client_new (endpoint);
    size_t loaded = s_test_size (queue);
    assert (loaded <= baseline);
    s_test_counts_are (producer, queued, running, finished + 3);
    for (uint32_t p = 0; p < 8; p++) {
        char number[16];
        snprintf (number, sizeof number, "%u", p);
        zstr_sendx (queue, "REPLAY", number, NULL);
        char *answer = zstr_recv (queue);
        assert (streq (answer, "OK"));
        free (answer);
    }
    assert (s_test_size (queue) == loaded);
    s_test_counts_are (producer, queued, running, finished + 3);
    for (int index = 0; index < 3; index++) {
        request = zsys_sprintf ("{\"op\": \"invocation\", \"id\": \"%s\"}", ids[index]);
        assert (s_test_status (producer, request) == 404);
        free (request);
        free (ids[index]);
    }
    s_test_client_destroy (&producer);
    zactor_destroy (&queue);
}

//  The next message of writes on log, within 5 s, as [sender, payload]; its rid and
//  how many writes it holds are set.
static zmsg_t *
s_test_log_bulk (zsock_t *log, uint64_t *rid, size_t *count)
{
    zpoller_t *poller = zpoller_new (log, NULL);
    assert (zpoller_wait (poller, 5000) == log);
    zpoller_destroy (&poller);
    zmsg_t *msg = zmsg_recv (log);
    assert (msg && zmsg_size (msg) == 2);
    zframe_t *payload = zmsg_last (msg);
    sn_msg_t *bulk = sn_msg_decode (zframe_data (payload), zframe_size (payload), 0, NULL);
    assert (bulk);
    assert (sn_value_streq (sn_value_get (sn_msg_root (bulk), "op"), "bulk"));
    assert (sn_value_uint (sn_value_get (sn_msg_root (bulk), "rid"), rid));
    *count = sn_value_size (sn_value_get (sn_msg_root (bulk), "puts"));
    sn_msg_destroy (&bulk);
    return msg;
}

//  Answer the next message of writes on log: write number at (counting from 0 over
//  the messages answered so far) is refused with 507 "no room", the others stored;
//  the answer holds short results fewer than the writes. Returns how many writes the
//  message held.
static size_t
s_test_log_answer (zsock_t *log, size_t at, size_t written, size_t short_by)
{
    uint64_t rid = 0;
    size_t count = 0;
    zmsg_t *msg = s_test_log_bulk (log, &rid, &count);
    zframe_t *payload = zmsg_last (msg);
    zmsg_remove (msg, payload);
    zframe_destroy (&payload);
    size_t results = count > short_by ? count - short_by : 0;
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 3);
    sn_pack_kv_uint (pack, "rid", rid);
    sn_pack_kv_uint (pack, "code", 200);
    sn_pack_str (pack, "results");
    sn_pack_array (pack, (uint32_t) results);
    for (size_t index = 0; index < results; index++) {
        sn_pack_map (pack, 2);
        bool refused = written + index == at;
        sn_pack_kv_uint (pack, "code", refused ? 507 : 201);
        sn_pack_kv_str (pack, refused ? "error" : "key", refused ? "no room" : "k");
    }
    zframe_t *frame = sn_pack_frame (pack);
    zmsg_append (msg, &frame);
    assert (zmsg_send (&msg, log) == 0);
    sn_pack_destroy (&pack);
    return count;
}

//  Answer the next message of writes on log with one error for all of them.
static size_t
s_test_log_refuse (zsock_t *log, const char *error)
{
    uint64_t rid = 0;
    size_t count = 0;
    zmsg_t *msg = s_test_log_bulk (log, &rid, &count);
    zframe_t *payload = zmsg_last (msg);
    zmsg_remove (msg, payload);
    zframe_destroy (&payload);
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_error (pack, rid, 503, "%s", error);
    zframe_t *frame = sn_pack_frame (pack);
    sn_pack_destroy (&pack);
    zmsg_append (msg, &frame);
    assert (zmsg_send (&msg, log) == 0);
    return count;
}

//  Each of producer's requests rids[count] is answered code, and a 503 with error.
static void
s_test_replies_are (s_test_client_t *producer, uint64_t *rids, size_t count, const int *codes,
                    const char *error)
{
    for (size_t index = 0; index < count; index++) {
        sn_msg_t *reply = s_test_reply (producer, rids[index]);
        assert (s_test_code (reply) == codes[index]);
        char *text = sn_value_get_strdup (sn_msg_root (reply), "error");
        assert (codes[index] == 503 ? text && strstr (text, error) : !text);
        free (text);
        sn_msg_destroy (&reply);
    }
}

//  The log refuses writes, a whole bulk, one write of it, or answers fewer results
//  than writes: each enqueue hears its own write's fate, and only those stored are
//  queued.
static void
s_test_log_refusals (const char *store_endpoint, bool verbose)
{
    char endpoint[64], log_endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://sn-queue-test-refusals-%d", getpid ());
    snprintf (log_endpoint, sizeof log_endpoint, "inproc://sn-queue-test-refusals-log-%d",
              getpid ());
    zsock_t *log = zsock_new_router (log_endpoint);
    assert (log);
    sn_queue_config_t config = {endpoint,       log_endpoint, NULL, 8, 2000, verbose,
                                store_endpoint, NULL,         NULL, 0, 0};
    char error[256];
    zactor_t *queue = sn_queue_new (&config, error, sizeof error);
    assert (queue);
    s_test_client_t *producer = s_test_client_new (endpoint);
    char *counts = s_test_counts (producer);
    uint64_t queued = 0, running = 0, finished = 0;
    assert (sscanf (counts, "%" SCNu64 "/%" SCNu64 "/%" SCNu64, &queued, &running, &finished) == 3);
    free (counts);
    const char *enqueue = "{\"op\": \"enqueue\", \"token\": \"k\", \"invocation\": "
                          "{\"class\": \"refused.C\", \"method\": \"m\", \"params\": []}}";
    uint64_t rids[3];

    //  Whole bulks refused: every enqueue in them hears the log's error
    for (int index = 0; index < 3; index++)
        rids[index] = s_test_send (producer, enqueue);
    for (size_t written = 0; written < 3;)
        written += s_test_log_refuse (log, "disk full");
    s_test_replies_are (producer, rids, 3, (int[]){503, 503, 503}, "not stored: disk full");

    //  Three enqueues, in one bulk or more: the second write is refused alone
    for (int index = 0; index < 3; index++)
        rids[index] = s_test_send (producer, enqueue);
    for (size_t written = 0; written < 3;)
        written += s_test_log_answer (log, 1, written, 0);
    s_test_replies_are (producer, rids, 3, (int[]){202, 503, 202}, "not stored: no room");

    //  An answer short of one result: the write it lacks is not stored
    rids[0] = s_test_send (producer, enqueue);
    assert (s_test_log_answer (log, SIZE_MAX, 0, 1) == 1);
    s_test_replies_are (producer, rids, 1, (int[]){503}, "not stored: ");

    s_test_counts_are (producer, queued + 2, running, finished);
    s_test_client_destroy (&producer);
    zactor_destroy (&queue);
    zsock_destroy (&log);
}

//  A takeover whose scans fail partway is not served: its partition answers 503,
//  nothing of it runs, and the replay is tried again until it completes.
static void
s_test_takeover_retry (bool verbose)
{
    char dir[] = "/tmp/sn_queue_test_retry_XXXXXX";
    assert (mkdtemp (dir));
    char store_endpoint[64], endpoint[64], error[256];
    snprintf (store_endpoint, sizeof store_endpoint, "inproc://sn-queue-test-retry-store-%d",
              getpid ());
    snprintf (endpoint, sizeof endpoint, "inproc://sn-queue-test-retry-%d", getpid ());
    sn_store_config_t store_config = {dir, "t1", 8, 64 << 20, store_endpoint, false, 0};
    zactor_t *store = sn_store_new (&store_config, error, sizeof error);
    assert (store);
    //  Three invocations in primary: one finished, two queued
    zactor_t *queue = s_test_queue (endpoint, store_endpoint, verbose);
    s_test_client_t *producer = s_test_client_new (endpoint);
    s_test_client_t *worker = s_test_client_new (endpoint);
    const char *enqueue = "{\"op\": \"enqueue\", \"token\": \"k\", \"invocation\": {\"class\": "
                          "\"retry.C\", \"method\": \"m\", \"params\": []}}";
    char *ids[3];
    ids[0] = s_test_enqueue (producer, enqueue);
    assert (s_test_status (worker, "{\"op\": \"worker.hello\", \"classes\": [\"retry.C\"], "
                                   "\"capacity\": 1}") == 200);
    char *work = s_test_work (worker, 5000);
    assert (work && streq (work, ids[0]));
    char *result =
        zsys_sprintf ("{\"op\": \"worker.result\", \"id\": \"%s\", \"code\": 200}", work);
    assert (s_test_status (worker, result) == 200);
    free (result);
    free (work);
    //  Of a class no worker here takes
    const char *later = "{\"op\": \"enqueue\", \"token\": \"k\", \"invocation\": {\"class\": "
                        "\"retry.D\", \"method\": \"m\", \"params\": []}}";
    for (int index = 1; index < 3; index++)
        ids[index] = s_test_enqueue (producer, later);
    s_test_counts_are (producer, 2, 0, 1);
    s_test_client_destroy (&producer);
    s_test_client_destroy (&worker);
    zactor_destroy (&queue);

    //  Replays through a proxy that serves one event a page
    zactor_t *proxy = zactor_new (sn_owners_scan_proxy, store_endpoint);
    char *scans = zsys_sprintf ("%s-scans", store_endpoint);
    sn_queue_config_t config = {endpoint, store_endpoint, NULL, 8, 2000, verbose,
                                scans,    NULL,           NULL, 0, 0};
    queue = sn_queue_new (&config, error, sizeof error);
    assert (queue && s_test_size (queue) == 3);
    producer = s_test_client_new (endpoint);
    s_test_counts_are (producer, 2, 0, 1);

    //  The second page of the takeover fails: nothing of the partition is served
    uint32_t p = sn_partition ("primary", 7, 8);
    char number[16];
    snprintf (number, sizeof number, "%u", p);
    zstr_send (proxy, "FAIL");
    char *answer = zstr_recv (proxy);
    free (answer);
    zstr_sendx (queue, "REPLAY", number, NULL);
    answer = zstr_recv (queue);
    assert (strstr (answer, "store is busy"));
    free (answer);
    char *taking = zsys_sprintf ("partition %u is being taken over here, try again", p);
    const char *requests[] = {
        enqueue, "{\"op\": \"bucket.counts\", \"bucket_id\": \"primary\"}", NULL, NULL, NULL, NULL};
    for (int index = 0; index < 3; index++)
        requests[2 + index] = zsys_sprintf ("{\"op\": \"invocation\", \"id\": \"%s\"}", ids[index]);
    for (int index = 0; requests[index]; index++) {
        sn_msg_t *reply = s_test_call (producer, requests[index]);
        assert (s_test_code (reply) == 503);
        char *text = sn_value_get_strdup (sn_msg_root (reply), "error");
        assert (text && streq (text, taking));
        free (text);
        sn_msg_destroy (&reply);
    }
    worker = s_test_client_new (endpoint);
    assert (s_test_status (worker, "{\"op\": \"worker.hello\", \"classes\": [\"retry.D\"], "
                                   "\"capacity\": 5}") == 200);
    assert (s_test_status (worker, "{\"op\": \"worker.heartbeat\"}") == 200);
    assert (zlist_size (worker->pushed) == 0 && s_test_size (queue) == 0);

    //  The next try finds the log silent: it gives up on it, and tries again
    zstr_send (proxy, "SILENT");
    answer = zstr_recv (proxy);
    free (answer);
    sn_actor_count_past (proxy, "REFUSED", 1, 20000);
    zstr_send (proxy, "PASS");
    answer = zstr_recv (proxy);
    free (answer);
    //  Asked on the pipe, which waits as long as the actor does
    int64_t deadline = zclock_mono () + 30000;
    while (s_test_size (queue) != 3) {
        assert (zclock_mono () < deadline);
        zclock_sleep (10); //  poll interval of the wait, not synchronisation
    }
    char *state = s_test_state (producer, ids[0]);
    assert (streq (state, "succeeded/200"));
    free (state);
    s_test_counts_are (producer, 2, 0, 1);
    //  The queued ones run now, once each (the worker that came meanwhile was silent)
    s_test_client_destroy (&worker);
    worker = s_test_client_new (endpoint);
    assert (s_test_status (worker, "{\"op\": \"worker.hello\", \"classes\": [\"retry.D\"], "
                                   "\"capacity\": 5}") == 200);
    for (int index = 0; index < 2; index++) {
        work = s_test_work (worker, 5000);
        assert (work && (streq (work, ids[1]) || streq (work, ids[2])));
        free (work);
    }
    s_test_counts_are (producer, 0, 2, 1);

    for (int index = 0; index < 3; index++) {
        free ((char *) requests[2 + index]);
        free (ids[index]);
    }
    free (taking);
    free (scans);
    s_test_client_destroy (&producer);
    s_test_client_destroy (&worker);
    zactor_destroy (&queue);
    zactor_destroy (&proxy);
    zactor_destroy (&store);
    char *command = zsys_sprintf ("rm -rf '%s'", dir);
    assert (system (command) == 0);
    free (command);
}

//  A re-read never brings back an invocation finished and evicted here: not when
//  it fails after its first page (which holds the enqueue), nor when it completes
//  (the end is in it). Counts never drop, nothing is handed to a worker again.
static void
s_test_reread_finished (bool verbose)
{
    char dir[] = "/tmp/sn_queue_test_reread_XXXXXX";
    assert (mkdtemp (dir));
    char store_endpoint[64], endpoint[64], error[256];
    snprintf (store_endpoint, sizeof store_endpoint, "inproc://sn-queue-test-reread-store-%d",
              getpid ());
    snprintf (endpoint, sizeof endpoint, "inproc://sn-queue-test-reread-%d", getpid ());
    sn_store_config_t store_config = {dir, "t1", 8, 64 << 20, store_endpoint, false, 0};
    zactor_t *store = sn_store_new (&store_config, error, sizeof error);
    assert (store);
    zactor_t *proxy = zactor_new (sn_owners_scan_proxy, store_endpoint);
    char *scans = zsys_sprintf ("%s-scans", store_endpoint);
    sn_queue_config_t config = {endpoint, store_endpoint, NULL, 8, 2000, verbose,
                                scans,    NULL,           NULL, 0, 1};
    zactor_t *queue = sn_queue_new (&config, error, sizeof error);
    assert (queue);
    s_test_client_t *producer = s_test_client_new (endpoint);
    s_test_client_t *worker = s_test_client_new (endpoint);
    char *id = s_test_enqueue (producer, "{\"op\": \"enqueue\", \"token\": \"k\", \"invocation\": "
                                         "{\"class\": \"reread.C\", \"method\": \"m\", "
                                         "\"params\": []}}");
    assert (s_test_status (worker, "{\"op\": \"worker.hello\", \"classes\": [\"reread.C\"], "
                                   "\"capacity\": 1}") == 200);
    char *work = s_test_work (worker, 5000);
    assert (work && streq (work, id));
    free (work);
    char *result = zsys_sprintf ("{\"op\": \"worker.result\", \"id\": \"%s\", \"code\": 200}", id);
    assert (s_test_status (worker, result) == 200);
    free (result);
    //  Finished and evicted (a window of 1 ms)
    int64_t deadline = zclock_mono () + 20000;
    while (s_test_size (queue) != 0) {
        assert (zclock_mono () < deadline);
        zclock_sleep (10); //  poll interval of the wait, not synchronisation
    }
    s_test_counts_are (producer, 0, 0, 1);
    char *get = zsys_sprintf ("{\"op\": \"invocation\", \"id\": \"%s\"}", id);
    uint32_t p = sn_partition ("primary", 7, 8);
    //  Its pages after the first fail: the enqueue was read, the end was not
    zstr_send (proxy, "FAIL");
    char *answer = zstr_recv (proxy);
    free (answer);
    sn_replay_test_reread (queue, p);
    assert (sn_actor_count (proxy, "REFUSED") >= 1);
    assert (s_test_size (queue) == 0);
    s_test_counts_are (producer, 0, 0, 1);
    assert (s_test_status (producer, get) == 404);
    assert (s_test_status (worker, "{\"op\": \"worker.heartbeat\"}") == 200);
    assert (zlist_size (worker->pushed) == 0);
    //  Read whole: the end is read too, and nothing changes either
    zstr_send (proxy, "PASS");
    answer = zstr_recv (proxy);
    free (answer);
    sn_replay_test_reread (queue, p);
    assert (s_test_size (queue) == 0);
    s_test_counts_are (producer, 0, 0, 1);
    assert (s_test_status (producer, get) == 404);
    assert (s_test_status (worker, "{\"op\": \"worker.heartbeat\"}") == 200);
    assert (zlist_size (worker->pushed) == 0);
    zstr_sendx (queue, "REREAD", "99", NULL);
    answer = zstr_recv (queue);
    assert (strstr (answer, "no partition"));
    free (answer);

    free (get);
    free (id);
    free (scans);
    s_test_client_destroy (&producer);
    s_test_client_destroy (&worker);
    zactor_destroy (&queue);
    zactor_destroy (&proxy);
    zactor_destroy (&store);
    char *command = zsys_sprintf ("rm -rf '%s'", dir);
    assert (system (command) == 0);
    free (command);
}

//  An enqueue acknowledged after its partition's takeover failed is not queued: the
//  partition answers 503, and the next replay loads the invocation from the log.
static void
s_test_takeover_late_ack (bool verbose)
{
    char dir[] = "/tmp/sn_queue_test_ack_XXXXXX";
    assert (mkdtemp (dir));
    char store_endpoint[64], endpoint[64], log_endpoint[64], error[256];
    snprintf (store_endpoint, sizeof store_endpoint, "inproc://sn-queue-test-ack-store-%d",
              getpid ());
    snprintf (endpoint, sizeof endpoint, "inproc://sn-queue-test-ack-%d", getpid ());
    snprintf (log_endpoint, sizeof log_endpoint, "inproc://sn-queue-test-ack-log-%d", getpid ());
    sn_store_config_t store_config = {dir, "t1", 8, 64 << 20, store_endpoint, false, 0};
    zactor_t *store = sn_store_new (&store_config, error, sizeof error);
    assert (store);
    //  Two events in primary, so that a replay has a second page
    zactor_t *queue = s_test_queue (endpoint, store_endpoint, verbose);
    s_test_client_t *producer = s_test_client_new (endpoint);
    const char *enqueue = "{\"op\": \"enqueue\", \"token\": \"k\", \"invocation\": {\"class\": "
                          "\"ack.C\", \"method\": \"m\", \"params\": []}}";
    for (int index = 0; index < 2; index++) {
        char *id = s_test_enqueue (producer, enqueue);
        free (id);
    }
    s_test_client_destroy (&producer);
    zactor_destroy (&queue);

    zactor_t *proxy = zactor_new (sn_owners_scan_proxy, store_endpoint);
    char *scans = zsys_sprintf ("%s-scans", store_endpoint);
    zsock_t *log = zsock_new_router (log_endpoint);
    sn_queue_config_t config = {endpoint, log_endpoint, NULL, 8, 2000, verbose,
                                scans,    NULL,         NULL, 0, 0};
    queue = sn_queue_new (&config, error, sizeof error);
    assert (queue && s_test_size (queue) == 2);
    producer = s_test_client_new (endpoint);
    //  An enqueue whose write is in flight while the takeover fails
    uint64_t rid = s_test_send (producer, enqueue);
    zmsg_t *write = s_test_log_next (log, "invocation.enqueued");
    zstr_send (proxy, "FAIL");
    char *answer = zstr_recv (proxy);
    free (answer);
    uint32_t p = sn_partition ("primary", 7, 8);
    char number[16];
    snprintf (number, sizeof number, "%u", p);
    zstr_sendx (queue, "REPLAY", number, NULL);
    answer = zstr_recv (queue);
    assert (strstr (answer, "store is busy"));
    free (answer);
    //  The write lands: the producer hears 202, nothing is queued
    s_test_log_ack (log, &write);
    sn_msg_t *reply = s_test_reply (producer, rid);
    assert (s_test_code (reply) == 202);
    sn_msg_destroy (&reply);
    assert (s_test_size (queue) == 0);
    reply = s_test_call (producer, "{\"op\": \"bucket.counts\", \"bucket_id\": \"primary\"}");
    assert (s_test_code (reply) == 503);
    sn_msg_destroy (&reply);

    s_test_client_destroy (&producer);
    zactor_destroy (&queue);
    zsock_destroy (&log);
    zactor_destroy (&proxy);
    free (scans);
    zactor_destroy (&store);
    char *command = zsys_sprintf ("rm -rf '%s'", dir);
    assert (system (command) == 0);
    free (command);
}

//  Takeovers that keep failing on a silent log leave the actor answering its pipe
//  between their tries.
static void
s_test_takeover_silent (bool verbose)
{
    char dir[] = "/tmp/sn_queue_test_silent_XXXXXX";
    assert (mkdtemp (dir));
    char store_endpoint[64], endpoint[64], error[256];
    snprintf (store_endpoint, sizeof store_endpoint, "inproc://sn-queue-test-silent-store-%d",
              getpid ());
    snprintf (endpoint, sizeof endpoint, "inproc://sn-queue-test-silent-%d", getpid ());
    sn_store_config_t store_config = {dir, "t1", 8, 64 << 20, store_endpoint, false, 0};
    zactor_t *store = sn_store_new (&store_config, error, sizeof error);
    assert (store);
    zactor_t *queue = s_test_queue (endpoint, store_endpoint, verbose);
    s_test_client_t *producer = s_test_client_new (endpoint);
    //  Buckets in three partitions, two invocations each (a replay with a second page)
    uint32_t parts[3];
    int found = 0;
    for (int index = 0; found < 3; index++) {
        char name[16];
        snprintf (name, sizeof name, "sb%d", index);
        uint32_t p = sn_partition (name, strlen (name), 8);
        bool fresh = true;
        for (int other = 0; other < found; other++)
            fresh = fresh && parts[other] != p;
        if (!fresh)
            continue;
        parts[found++] = p;
        char *state = zsys_sprintf ("{\"op\": \"bucket.state\", \"bucket_id\": \"%s\", "
                                    "\"state\": \"active\"}",
                                    name);
        assert (s_test_status (producer, state) == 200);
        free (state);
        char *enqueue = zsys_sprintf ("{\"op\": \"enqueue\", \"bucket_id\": \"%s\", \"token\": "
                                      "\"k\", \"invocation\": {\"class\": \"silent.C\", "
                                      "\"method\": \"m\", \"params\": []}}",
                                      name);
        for (int count = 0; count < 2; count++) {
            char *id = s_test_enqueue (producer, enqueue);
            free (id);
        }
        free (enqueue);
    }
    s_test_client_destroy (&producer);
    zactor_destroy (&queue);

    zactor_t *proxy = zactor_new (sn_owners_scan_proxy, store_endpoint);
    char *scans = zsys_sprintf ("%s-scans", store_endpoint);
    sn_queue_config_t config = {endpoint, store_endpoint, NULL, 8, 2000, verbose,
                                scans,    NULL,           NULL, 0, 0};
    queue = sn_queue_new (&config, error, sizeof error);
    assert (queue && s_test_size (queue) == 6);
    zstr_send (proxy, "SILENT");
    char *answer = zstr_recv (proxy);
    free (answer);
    for (int index = 0; index < 3; index++) {
        char number[16];
        snprintf (number, sizeof number, "%u", parts[index]);
        zstr_sendx (queue, "REPLAY", number, NULL);
        answer = zstr_recv (queue);
        assert (!streq (answer, "OK"));
        free (answer);
    }
    //  Retries of the three keep failing; the pipe is answered between two, and
    //  while one scans. Nothing a failed try loaded stays (each partition held two);
    //  the retry under way, if any, holds its first page, one invocation (the proxy
    //  passes first pages only, of one event each), not handed out until it is over
    assert (s_test_size (queue) <= 1);
    zstr_send (proxy, "PASS");
    answer = zstr_recv (proxy);
    free (answer);
    int64_t deadline = zclock_mono () + 60000;
    while (s_test_size (queue) != 6) {
        assert (zclock_mono () < deadline);
        zclock_sleep (10); //  poll interval of the wait, not synchronisation
    }
    zactor_destroy (&queue);
    zactor_destroy (&proxy);
    free (scans);
    zactor_destroy (&store);
    char *command = zsys_sprintf ("rm -rf '%s'", dir);
    assert (system (command) == 0);
    free (command);
}

//  The reply to json is code, with the error text wanted (when not NULL).
static void
s_test_answered (s_test_client_t *client, const char *json, int64_t code, const char *wanted)
{
    sn_msg_t *reply = s_test_call (client, json);
    if (s_test_code (reply) != code)
        zsys_error ("sn_queue test: %s answered %" PRId64 ", not %" PRId64, json,
                    s_test_code (reply), code);
    assert (s_test_code (reply) == code);
    if (wanted) {
        char *text = sn_value_get_strdup (sn_msg_root (reply), "error");
        assert (text && streq (text, wanted));
        free (text);
    }
    sn_msg_destroy (&reply);
}

//  Replays do not hold the actor: while one waits for a page, the other partitions
//  are served; the partition taken over answers 503 (its invocations are not handed
//  out) until its last page came, and is served then; a page that never comes fails
//  the takeover (503 until a try succeeds); a re-read leaves its partition served.
static void
s_test_replay_async (bool verbose)
{
    char dir[] = "/tmp/sn_queue_test_async_XXXXXX";
    assert (mkdtemp (dir));
    char store_endpoint[64], endpoint[64], scans_endpoint[64], feed_endpoint[64], mesh_endpoint[64],
        error[256];
    snprintf (store_endpoint, sizeof store_endpoint, "inproc://sn-queue-test-async-store-%d",
              getpid ());
    snprintf (endpoint, sizeof endpoint, "inproc://sn-queue-test-async-%d", getpid ());
    snprintf (scans_endpoint, sizeof scans_endpoint, "inproc://sn-queue-test-async-scans-%d",
              getpid ());
    snprintf (feed_endpoint, sizeof feed_endpoint, "inproc://sn-queue-test-async-feed-%d",
              getpid ());
    snprintf (mesh_endpoint, sizeof mesh_endpoint, "inproc://sn-queue-test-async-mesh-%d",
              getpid ());
    sn_store_config_t store_config = {dir, "t1", 8, 64 << 20, store_endpoint, false, 0};
    zactor_t *store = sn_store_new (&store_config, error, sizeof error);
    assert (store);

    //  One invocation in primary (partition pp), one in a bucket of another (po)
    zactor_t *queue = s_test_queue (endpoint, store_endpoint, verbose);
    s_test_client_t *producer = s_test_client_new (endpoint);
    uint32_t pp = sn_partition ("primary", 7, 8), po = pp;
    char other[16] = "";
    for (int index = 0; po == pp; index++) {
        snprintf (other, sizeof other, "ab%d", index);
        po = sn_partition (other, strlen (other), 8);
    }
    char *request = zsys_sprintf ("{\"op\": \"bucket.state\", \"bucket_id\": \"%s\", \"state\": "
                                  "\"active\"}",
                                  other);
    assert (s_test_status (producer, request) == 200);
    const char *enqueue_pp = "{\"op\": \"enqueue\", \"token\": \"k\", \"invocation\": {\"class\": "
                             "\"async.C\", \"method\": \"m\", \"params\": []}}";
    char *enqueue_po = zsys_sprintf ("{\"op\": \"enqueue\", \"bucket_id\": \"%s\", \"token\": "
                                     "\"k\", \"invocation\": {\"class\": \"other.C\", "
                                     "\"method\": \"m\", \"params\": []}}",
                                     other);
    char *x = s_test_enqueue (producer, enqueue_pp);
    char *y = s_test_enqueue (producer, enqueue_po);
    s_test_client_destroy (&producer);
    //  The batch actor tells the queue of its buckets at every start
    zactor_destroy (&queue);

    //  Node "a", owning every partition; the test answers its scans
    zsock_t *feed = zsock_new_pub (feed_endpoint);
    zsock_t *mesh = zsock_new_router (mesh_endpoint);
    zsock_t *scans = zsock_new_router (scans_endpoint);
    zsock_t *back = zsock_new_dealer (store_endpoint);
    assert (feed && mesh && scans && back);
    sn_queue_config_t config = {endpoint,       store_endpoint, NULL,          8,    2000, verbose,
                                scans_endpoint, feed_endpoint,  mesh_endpoint, 2000, 0};
    queue = sn_queue_new (&config, error, sizeof error);
    assert (queue);
    producer = s_test_client_new (endpoint);
    zmsg_t *scan = NULL;
    uint64_t p = 0;
    bool reread = false;
    while (!scan) {
        s_test_placement (feed, "a", false);
        scan = sn_replay_scan_next (scans, &p, &reread);
    }
    //  One page a partition, one partition at a time
    for (int index = 0; index < 8; index++) {
        if (!scan)
            scan = sn_replay_scan_next (scans, &p, &reread);
        assert (scan && !reread);
        sn_replay_scan_pass (scans, back, &scan);
    }
    char *get_x = zsys_sprintf ("{\"op\": \"invocation\", \"id\": \"%s\"}", x);
    char *get_y = zsys_sprintf ("{\"op\": \"invocation\", \"id\": \"%s\"}", y);
    const char *counts_pp = "{\"op\": \"bucket.counts\", \"bucket_id\": \"primary\"}";
    char *counts_po = zsys_sprintf ("{\"op\": \"bucket.counts\", \"bucket_id\": \"%s\"}", other);
    s_test_answered (producer, get_x, 200, NULL);
    s_test_answered (producer, get_y, 200, NULL);
    assert (s_test_status (producer, request) == 200);
    free (request);

    //  pp is taken over again; its page waits
    char number[16];
    snprintf (number, sizeof number, "%u", pp);
    zstr_sendx (queue, "REPLAY", number, NULL);
    scan = sn_replay_scan_next (scans, &p, &reread);
    assert (scan && p == pp && !reread);
    //  Requests for pp wait: what it holds may lack events
    s_test_client_t *waiting = s_test_client_new (endpoint);
    uint64_t rid_get = s_test_send (waiting, get_x);
    uint64_t rid_enqueue = s_test_send (waiting, enqueue_pp);
    uint64_t rid_counts = s_test_send (waiting, counts_pp);
    //  The other partition is served meanwhile
    s_test_answered (producer, get_y, 200, NULL);
    s_test_answered (producer, counts_po, 200, NULL);
    char *z = s_test_enqueue (producer, enqueue_po);
    free (z);
    //  One another node forwarded is answered 503 at once: its caller tries again
    char *taking = zsys_sprintf ("partition %u is being taken over here, try again", pp);
    char *forwarded = zsys_sprintf ("{\"op\": \"invocation\", \"id\": \"%s\", \"fwd\": 1}", x);
    s_test_answered (producer, forwarded, 503, taking);
    //  Its work is not handed out
    s_test_client_t *worker = s_test_client_new (endpoint);
    assert (s_test_status (worker, "{\"op\": \"worker.hello\", \"classes\": [\"async.C\"], "
                                   "\"capacity\": 1}") == 200);
    assert (s_test_status (worker, "{\"op\": \"worker.heartbeat\"}") == 200);
    assert (zlist_size (worker->pushed) == 0);
    assert (zpoller_wait (waiting->poller, 0) == NULL);
    //  The page comes: the REPLAY is answered, pp is served, its work handed out
    sn_replay_scan_pass (scans, back, &scan);
    char *answer = zstr_recv (queue);
    assert (streq (answer, "OK"));
    free (answer);
    sn_msg_t *reply = s_test_reply (waiting, rid_get);
    assert (s_test_code (reply) == 200);
    sn_msg_destroy (&reply);
    //  The count at once, the enqueue once the log has it
    reply = s_test_reply (waiting, rid_counts);
    assert (s_test_code (reply) == 200);
    sn_msg_destroy (&reply);
    reply = s_test_reply (waiting, rid_enqueue);
    assert (s_test_code (reply) == 202);
    sn_msg_destroy (&reply);
    s_test_answered (producer, get_x, 200, NULL);
    char *work = s_test_work (worker, 5000);
    assert (work && (streq (work, x) || strstr (work, number)));
    free (work);
    s_test_client_destroy (&worker);

    //  pp lost and gained again while its page waits: the takeover starts over from
    //  the first page (the page held back is no one's), whether the two placements
    //  came in one drain of the feed or not (requests keep the actor busy while they
    //  come, so they mostly come in one)
    zstr_sendx (queue, "REPLAY", number, NULL);
    scan = sn_replay_scan_next (scans, &p, &reread);
    assert (scan && p == pp && !reread);
    uint64_t busy = 0;
    for (int index = 0; index < 1000; index++)
        busy = s_test_send (producer, "{\"op\": \"queue.stats\"}");
    s_test_placement (feed, "b", false);
    s_test_placement (feed, "a", false);
    reply = s_test_reply (producer, busy);
    assert (s_test_code (reply) == 200);
    sn_msg_destroy (&reply);
    sn_replay_scan_pass (scans, back, &scan);
    //  Every partition was lost and gained: one scan of each, pp's among them
    bool again = false;
    for (int index = 0; index < 8; index++) {
        scan = sn_replay_scan_next (scans, &p, &reread);
        assert (scan && !reread);
        again = again || p == pp;
        sn_replay_scan_pass (scans, back, &scan);
    }
    assert (again);
    answer = zstr_recv (queue);
    assert (streq (answer, "OK") || streq (answer, "REPLAY: the partition went elsewhere"));
    free (answer);
    s_test_answered (producer, get_x, 200, NULL);

    //  answers 503 until the next try, whose page comes
    zstr_sendx (queue, "REPLAY", number, NULL);
    scan = sn_replay_scan_next (scans, &p, &reread);
    assert (scan && p == pp);
    zmsg_destroy (&scan);
    rid_get = s_test_send (waiting, get_x);
    s_test_answered (producer, get_y, 200, NULL);
    answer = zstr_recv (queue);
    char *silent = zsys_sprintf ("log did not answer scan of partition %u", pp);
    assert (streq (answer, silent));
    free (silent);
    free (answer);
    reply = s_test_reply (waiting, rid_get);
    assert (s_test_code (reply) == 503);
    char *text = sn_value_get_strdup (sn_msg_root (reply), "error");
    assert (text && streq (text, taking));
    free (text);
    sn_msg_destroy (&reply);
    s_test_answered (producer, get_x, 503, taking);
    s_test_answered (producer, get_y, 200, NULL);
    scan = sn_replay_scan_next (scans, &p, &reread);
    assert (scan && p == pp && !reread);
    s_test_answered (producer, forwarded, 503, taking);
    sn_replay_scan_pass (scans, back, &scan);
    //  A try again is the failed state's: 503 at once until it succeeds
    int64_t deadline = zclock_mono () + 5000;
    while (true) {
        reply = s_test_call (producer, get_x);
        int64_t code = s_test_code (reply);
        sn_msg_destroy (&reply);
        if (code == 200)
            break;
        assert (code == 503 && zclock_mono () < deadline);
        zclock_sleep (10); //  poll interval of the wait, not synchronisation
    }
    s_test_client_destroy (&waiting);
    free (forwarded);

    //  A re-read of pp leaves it served while its page waits
    uint64_t before = sn_replay_test_reread_ask (queue, pp);
    scan = sn_replay_scan_next (scans, &p, &reread);
    assert (scan && p == pp && reread);
    s_test_answered (producer, get_x, 200, NULL);
    s_test_answered (producer, counts_pp, 200, NULL);
    z = s_test_enqueue (producer, enqueue_pp);
    free (z);
    sn_replay_scan_pass (scans, back, &scan);
    sn_replay_test_rereads_past (queue, before, 5000);
    s_test_answered (producer, get_x, 200, NULL);

    free (taking);
    free (get_x);
    free (get_y);
    free (counts_po);
    free (enqueue_po);
    free (x);
    free (y);
    s_test_client_destroy (&producer);
    zactor_destroy (&queue);
    zsock_destroy (&back);
    zsock_destroy (&scans);
    zsock_destroy (&mesh);
    zsock_destroy (&feed);
    zactor_destroy (&store);
    char *command = zsys_sprintf ("rm -rf '%s'", dir);
    assert (system (command) == 0);
    free (command);
}

void
sn_queue_test (bool verbose)
{
    char dir[] = "/tmp/sn_queue_test_XXXXXX";
    assert (mkdtemp (dir));
    char store_endpoint[64], queue_endpoint[64], error[256];
    snprintf (store_endpoint, sizeof store_endpoint, "inproc://sn-queue-test-store-%d", getpid ());
    snprintf (queue_endpoint, sizeof queue_endpoint, "inproc://sn-queue-test-%d", getpid ());
    sn_store_config_t store_config = {dir, "t1", 8, 64 << 20, store_endpoint, false, 0};
    zactor_t *store = sn_store_new (&store_config, error, sizeof error);
    assert (store);
    zactor_t *queue = s_test_queue (queue_endpoint, store_endpoint, verbose);
    s_test_client_t *producer = s_test_client_new (queue_endpoint);
    s_test_client_t *worker = s_test_client_new (queue_endpoint);

    //  Refused, and nothing queued: unknown bucket, params and args together,
    //  run_at and delay together
    const char *call = "\"invocation\": {\"class\": \"mailer.User\", \"method\": \"send\", "
                       "\"params\": [1, \"a\"]}";
    char *request = zsys_sprintf ("{\"op\": \"enqueue\", \"token\": \"t\", \"bucket_id\": "
                                  "\"nope\", %s}",
                                  call);
    assert (s_test_status (producer, request) == 404);
    free (request);
    assert (s_test_status (producer, "{\"op\": \"enqueue\", \"token\": \"t\", \"invocation\": "
                                     "{\"class\": \"c\", \"method\": \"m\", \"params\": [], "
                                     "\"args\": []}}") == 400);
    request = zsys_sprintf ("{\"op\": \"enqueue\", \"token\": \"t\", \"run_at\": 1, \"delay\": "
                            "1, %s}",
                            call);
    assert (s_test_status (producer, request) == 400);
    free (request);
    assert (s_test_status (producer, "{\"op\": \"invocation\", \"id\": \"none\"}") == 404);

    //  Worker ops before hello are refused
    assert (s_test_status (worker, "{\"op\": \"worker.heartbeat\"}") == 404);

    //  Enqueue, then a worker takes it and succeeds
    request =
        zsys_sprintf ("{\"op\": \"enqueue\", \"token\": \"t1\", \"data\": {\"n\": 1}, %s}", call);
    char *first = s_test_enqueue (producer, request);
    free (request);
    char *state = s_test_state (producer, first);
    assert (streq (state, "queued/0"));
    free (state);
    assert (s_test_status (worker, "{\"op\": \"worker.hello\", \"classes\": [\"mailer.User\"], "
                                   "\"capacity\": 1, \"name\": \"w1\"}") == 200);
    char *work = s_test_work (worker, 5000);
    assert (work && streq (work, first));
    state = s_test_state (producer, first);
    assert (streq (state, "running/0"));
    free (state);
    char *progress = zsys_sprintf ("{\"op\": \"worker.progress\", \"id\": \"%s\", \"progress\": "
                                   "50}",
                                   first);
    assert (s_test_status (worker, progress) == 200);
    free (progress);
    //  Another client cannot report on it
    char *result = zsys_sprintf ("{\"op\": \"worker.result\", \"id\": \"%s\", \"code\": 200, "
                                 "\"response\": {\"ok\": true}}",
                                 first);
    assert (s_test_status (producer, result) == 404);
    assert (s_test_status (worker, result) == 200);
    assert (s_test_status (worker, result) == 409); //  no longer held
    free (result);
    state = s_test_state (producer, first);
    assert (streq (state, "succeeded/200"));
    free (state);
    free (work);

    //  A retryable failure runs again; a final one fails with the worker's code
    char *second = s_test_enqueue (producer, "{\"op\": \"enqueue\", \"token\": \"t2\", "
                                             "\"backoff\": 0, \"max_attempts\": 2, \"invocation\": "
                                             "{\"class\": \"mailer.User\", \"method\": \"m\", "
                                             "\"args\": {}}}");
    for (int attempt = 1; attempt <= 2; attempt++) {
        work = s_test_work (worker, 5000);
        assert (work && streq (work, second));
        result = zsys_sprintf ("{\"op\": \"worker.result\", \"id\": \"%s\", \"code\": 503, "
                               "\"error\": \"busy\", \"retryable\": true}",
                               second);
        assert (s_test_status (worker, result) == 200);
        free (result);
        free (work);
    }
    state = s_test_state (producer, second);
    assert (streq (state, "failed/503"));
    free (state);

    //  Delayed work waits; a class nobody offers fails with 404 after worker_wait
    char *later = s_test_enqueue (producer, "{\"op\": \"enqueue\", \"token\": \"t3\", \"delay\": "
                                            "3600000, \"invocation\": {\"class\": \"mailer.User\", "
                                            "\"method\": \"m\", \"params\": []}}");
    char *orphan = s_test_enqueue (producer, "{\"op\": \"enqueue\", \"token\": \"t4\", "
                                             "\"worker_wait\": 1, \"invocation\": {\"class\": "
                                             "\"nobody\", \"method\": \"m\", \"params\": []}}");
    while (true) {
        state = s_test_state (producer, orphan);
        bool done = streq (state, "failed/404");
        free (state);
        if (done)
            break;
        zclock_sleep (10); //  poll interval of the wait, not synchronisation
    }

    //  A worker that goes silent loses its work to another worker
    char *third = s_test_enqueue (producer, "{\"op\": \"enqueue\", \"token\": \"t5\", "
                                            "\"invocation\": {\"class\": \"mailer.User\", "
                                            "\"method\": \"m\", \"params\": []}}");
    work = s_test_work (worker, 5000);
    assert (work && streq (work, third));
    free (work);
    s_test_client_t *rescuer = s_test_client_new (queue_endpoint);
    assert (s_test_status (rescuer, "{\"op\": \"worker.hello\", \"classes\": [\"mailer.User\"], "
                                    "\"capacity\": 4}") == 200);
    //  The rescuer keeps itself alive while it waits for the silent one's work
    work = NULL;
    while (!work) {
        assert (s_test_status (rescuer, "{\"op\": \"worker.heartbeat\"}") == 200);
        work = s_test_work (rescuer, 200);
    }
    assert (streq (work, third));
    free (work);
    state = s_test_state (producer, third);
    assert (streq (state, "running/0"));
    free (state);
    //  The silent one is forgotten and must say hello again
    assert (s_test_status (worker, "{\"op\": \"worker.heartbeat\"}") == 404);

    //  Work another node pushes runs on a worker here, within the worker's capacity;
    //  its result goes to the owner, here (no mesh): the lease is unknown, 409
    s_test_client_t *far = s_test_client_new (queue_endpoint);
    assert (s_test_status (far, "{\"op\": \"worker.hello\", \"classes\": [\"far.C\"], "
                                "\"capacity\": 1}") == 200);
    const char *push = "{\"op\": \"worker.push\", \"id\": \"%s\", \"bucket_id\": "
                       "\"primary\", \"token\": \"t\", \"attempt\": 1, \"timeout\": 60000, "
                       "\"lease\": \"0a\", \"node\": \"n2\", \"invocation\": {\"class\": "
                       "\"far.C\", \"method\": \"m\", \"params\": []}}";
    request = zsys_sprintf (push, "ab-1");
    assert (s_test_status (producer, request) == 200);
    free (request);
    work = s_test_work (far, 5000);
    assert (work && streq (work, "ab-1"));
    free (work);
    request = zsys_sprintf (push, "ab-2");
    assert (s_test_status (producer, request) == 409);
    assert (s_test_status (far, "{\"op\": \"worker.result\", \"id\": \"ab-1\", \"code\": "
                                "200}") == 409);
    assert (s_test_status (producer, request) == 200);
    free (request);
    work = s_test_work (far, 5000);
    assert (work && streq (work, "ab-2"));
    free (work);
    //  Word from a node that is not another member is not kept
    assert (s_test_status (producer, "{\"op\": \"worker.at\", \"node\": \"n2\", "
                                     "\"classes\": {\"far.C\": 1}}") == 404);
    s_test_client_destroy (&far);

    //  Restart: finished results, queued and running work all come back from the log
    s_test_client_destroy (&rescuer);
    s_test_client_destroy (&producer);
    s_test_client_destroy (&worker);
    zactor_destroy (&queue);
    queue = s_test_queue (queue_endpoint, store_endpoint, verbose);
    producer = s_test_client_new (queue_endpoint);
    worker = s_test_client_new (queue_endpoint);
    state = s_test_state (producer, first);
    assert (streq (state, "succeeded/200"));
    free (state);
    state = s_test_state (producer, second);
    assert (streq (state, "failed/503"));
    free (state);
    state = s_test_state (producer, orphan);
    assert (streq (state, "failed/404"));
    free (state);
    state = s_test_state (producer, later);
    assert (streq (state, "queued/0"));
    free (state);
    state = s_test_state (producer, third);
    assert (streq (state, "queued/0"));
    free (state);
    assert (s_test_status (worker, "{\"op\": \"worker.hello\", \"classes\": [\"mailer.User\"], "
                                   "\"capacity\": 1}") == 200);
    work = s_test_work (worker, 5000);
    assert (work && streq (work, third));
    free (work);

    //  Replaying partitions again (a take-over) changes nothing known
    for (uint32_t p = 0; p < 8; p++) {
        char number[16];
        snprintf (number, sizeof number, "%u", p);
        zstr_sendx (queue, "REPLAY", number, NULL);
        char *answer = zstr_recv (queue);
        assert (streq (answer, "OK"));
        free (answer);
    }
    zstr_sendx (queue, "REPLAY", "8", NULL);
    char *answer = zstr_recv (queue);
    assert (strstr (answer, "no partition"));
    free (answer);
    state = s_test_state (producer, first);
    assert (streq (state, "succeeded/200"));
    free (state);
    state = s_test_state (producer, later);
    assert (streq (state, "queued/0"));
    free (state);

    free (first);
    free (second);
    free (third);
    free (later);
    free (orphan);
    s_test_client_destroy (&producer);
    s_test_client_destroy (&worker);
    zactor_destroy (&queue);
    s_test_retention (store_endpoint, verbose);
    s_test_log_refusals (store_endpoint, verbose);
    s_test_cluster (store_endpoint, verbose);
    s_test_takeover_retry (verbose);
    s_test_takeover_late_ack (verbose);
    s_test_reread_finished (verbose);
    s_test_takeover_silent (verbose);
    s_test_replay_async (verbose);
    zactor_destroy (&store);
    char *command = zsys_sprintf ("rm -rf '%s'", dir);
    assert (system (command) == 0);
    free (command);
}
