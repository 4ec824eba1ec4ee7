/*  sn_store: the store actor. Owns the node's LMDB environment.

    Layout of the environment, five named databases:

      events   key -> record, a msgpack map {type, ts, p, body} written in that order
      byp      2-byte big-endian p + key -> empty: the events of one partition, in key
               order, for replaying a partition
      bypl     8-byte big-endian n -> 2-byte big-endian p + key: index entries not yet
               in byp, in arrival order (see "The partition index" below)
      digest   2-byte big-endian p + 8-byte big-endian bucket start (ms) -> 16 bytes:
               count (uint64) then XOR of sn_hash (key) (uint64), both in host order
      meta     "partitions" -> uint32 P; "keygen" -> int64 ms + uint32 sequence of the
               last key this node made; "swept" -> uint32 length + the key the
               retention sweep goes on from (only while a retention is set); all in
               host order

    Keys of byp and digest are big-endian so that LMDB's byte order is time order.
    Values are in host order: an LMDB environment is not portable between byte
    orders anyway.

    The actor does everything in batches. When its ROUTER is readable it drains what
    is waiting (up to S_BATCH_MAX requests), runs the batch in one transaction and
    only then sends the replies. A batch with any write runs in one write
    transaction: one commit, one fsync for all of it; a 201 is never sent for
    anything that is not on disk, so when the commit fails every request of the
    batch gets the error instead.
*/
#include "sn_store.h"
#include "sn_actor.h"
#include "sn_routed.h"
#include "sn_key.h"
#include "sn_msg.h"
#include <lmdb.h>
#include <stdarg.h>

//  Most requests run in one batch: enough to amortise the fsync under load, small
//  enough that the first reply of a batch is not held back for long.
#define S_BATCH_MAX 4096

//  Stop draining once a batch holds this many payload bytes, so that a stream of
//  large bulks cannot build one transaction bigger than LMDB's dirty-page limit.
#define S_BATCH_BYTES (64 * 1024 * 1024)

//  Most bytes of events in one range page (see s_op_range)
#define S_RANGE_BYTES (4 * 1024 * 1024)

//  Replies queued to one peer before ZeroMQ drops them. The peers are in-process
//  actors that read their replies; the queue must hold several full batches, and
//  stays bounded so a peer that stops reading cannot exhaust memory.
#define S_REPLY_HWM (8 * S_BATCH_MAX)

#define S_RANGE_LIMIT     100  //  range's default page
#define S_RANGE_LIMIT_MAX 1000 //  and its largest
#define S_TYPE_MAX        64   //  longest event type name
#define S_PKEY_MAX        256  //  longest partition key
#define S_ERROR_MAX       256  //  longest error text built here

//  A pass of the retention sweep is one write transaction between batches: it deletes
//  at most S_SWEEP_DELETES user events of at most S_SWEEP_BYTES together (past the
//  first) and looks at most at S_SWEEP_LOOKS records (internal ones are passed over),
//  so that puts wait for it a few ms at most.
#define S_SWEEP_DELETES 2000
#define S_SWEEP_BYTES   (8 * 1024 * 1024)
#define S_SWEEP_LOOKS   20000
//  Least time between two logs of a failing sweep, in ms
#define S_SWEEP_LOG_EVERY (60 * 1000)
//  Between passes once the sweep has caught up with the horizon, in ms
#define S_SWEEP_EVERY 1000
//  A pass that deletes nothing commits its place only after looking at this many
//  records: a restart walks at most about that many again
#define S_SWEEP_SAVE_LOOKS 5000

//  One request of the batch being run.
typedef struct {
    sn_routed_t routed; //  envelope and payload; the payload becomes the reply
    sn_msg_t *msg;      //  the decoded payload, NULL when it did not decode
    const char *error;  //  why it did not decode (static text)
} s_request_t;

//  What the running batch adds to one digest bucket.
typedef struct {
    uint32_t p;       //  partition
    uint64_t start;   //  bucket start, ms
    uint64_t count;   //  events added
    uint64_t removed; //  events deleted by the retention sweep
    uint64_t xor ;    //  XOR of the key hashes of both
} s_digest_delta_t;

static void
s_digest_delta_free (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

typedef struct {
    zsock_t *pipe;                 //  actor command pipe
    zpoller_t *poller;             //  the pipe, and the ROUTER once started
    zsock_t *router;               //  requests in, replies out; NULL until started
    char *data_dir;                //  directory of the LMDB environment
    char *name;                    //  node name, for keys and health
    char *endpoint;                //  where the ROUTER binds
    uint32_t partitions;           //  P
    size_t map_size;               //  LMDB map size, 0 for LMDB's default
    bool verbose;                  //  log every request
    bool terminated;               //  $TERM received
    MDB_env *env;                  //  the environment, NULL until started
    MDB_dbi events;                //  key -> record
    MDB_dbi byp;                   //  partition index
    MDB_dbi bypl;                  //  its newest entries, in arrival order
    MDB_dbi digest;                //  per partition and time bucket count and XOR
    MDB_dbi meta;                  //  partitions, key generator state
    sn_keygen_t *keygen;           //  makes this node's keys
    bool keygen_dirty;             //  a key was made in the running batch
    zhashx_t *digest_delta;        //  "p/bucket" -> s_digest_delta_t added by the running batch
    s_digest_delta_t **last_delta; //  per partition, the delta its last event went to
    s_request_t *batch;            //  S_BATCH_MAX slots, reused batch after batch
    sn_pack_t *reply;              //  the reply being built
    sn_pack_t *record;             //  the record being stored
    sn_pack_t *items;              //  range and digest items, counted before their array
    byte user_prefix[16];          //  how every user event record starts
    size_t user_prefix_size;       //  bytes in user_prefix
    int code;                      //  code of the reply just built, for the log
    int64_t retention;             //  ms user events are kept, by key time; 0: for ever
    sn_horizon_t horizon;          //  user events with key time before it have expired
    int64_t next_sweep;            //  zclock_mono of the next sweep pass
    char swept[SN_KEY_MAX];        //  the sweep goes on from this key: every user event
    size_t swept_len;              //  below it is deleted; 0 bytes: from the first key
    uint64_t expired;              //  user events the sweep deleted since start
    uint64_t sweeps;               //  sweep passes that ended well since start
    size_t sweep_deletes;          //  most deletions of the next pass: smaller after a
                                   //  full map, so that a commit can free pages
    int64_t sweep_logged;          //  zclock_mono of the last failed pass logged; 0: none
    uint64_t expired_ignored;      //  copies of expired user events acknowledged unstored
} self_t;

static self_t *
s_self_new (zsock_t *pipe, const sn_store_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->poller = zpoller_new (pipe, NULL);
    self->data_dir = strdup (config->data_dir ? config->data_dir : "");
    self->name = strdup (config->name ? config->name : "");
    self->endpoint = strdup (config->endpoint ? config->endpoint : "");
    self->partitions = config->partitions;
    self->map_size = config->map_size;
    self->verbose = config->verbose;
    self->retention = config->event_retention_ms > 0 ? config->event_retention_ms : 0;
    self->sweep_deletes = S_SWEEP_DELETES;
    self->batch = (s_request_t *) zmalloc (S_BATCH_MAX * sizeof (s_request_t));
    self->digest_delta = zhashx_new ();
    zhashx_set_destructor (self->digest_delta, s_digest_delta_free);
    self->last_delta =
        (s_digest_delta_t **) zmalloc ((self->partitions + 1) * sizeof (s_digest_delta_t *));
    self->reply = sn_pack_new ();
    self->record = sn_pack_new ();
    self->items = sn_pack_new ();

    //  Records are always written type first, so a user event is recognised by its
    //  first bytes without decoding it: range scans may pass many internal events.
    sn_pack_t *prefix = sn_pack_new ();
    sn_pack_map (prefix, 4);
    sn_pack_kv_str (prefix, "type", "event");
    assert (sn_pack_size (prefix) <= sizeof self->user_prefix);
    memcpy (self->user_prefix, sn_pack_data (prefix), sn_pack_size (prefix));
    self->user_prefix_size = sn_pack_size (prefix);
    sn_pack_destroy (&prefix);
    return self;
}

static void
s_self_destroy (self_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        self_t *self = *self_p;
        zpoller_destroy (&self->poller);
        zsock_destroy (&self->router);
        if (self->env)
            mdb_env_close (self->env);
        sn_keygen_destroy (&self->keygen);
        sn_pack_destroy (&self->reply);
        sn_pack_destroy (&self->record);
        sn_pack_destroy (&self->items);
        free (self->batch);
        free (self->data_dir);
        free (self->name);
        zhashx_destroy (&self->digest_delta);
        free (self->last_delta);
        free (self->endpoint);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Byte order helpers for database keys

static void
s_put_be16 (byte *out, uint32_t value)
{
    out[0] = (byte) (value >> 8);
    out[1] = (byte) value;
}

static void
s_put_be64 (byte *out, uint64_t value)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (byte) value;
        value >>= 8;
    }
}

static uint64_t
s_get_be64 (const byte *in)
{
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value = (value << 8) | in[i];
    return value;
}

//  --------------------------------------------------------------------------
//  Opening the environment

//  The meta value that keeps the key generator's place.
typedef struct {
    int64_t last_ms;   //  time of the last key made
    uint32_t last_seq; //  its sequence
} s_keygen_state_t;

static int
s_meta_get (MDB_txn *txn, MDB_dbi meta, const char *name, void *value, size_t size, bool *found)
{
    MDB_val key = {strlen (name), (void *) name}, data;
    int rc = mdb_get (txn, meta, &key, &data);
    *found = rc == 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc == 0 && data.mv_size != size)
        return MDB_CORRUPTED;
    if (rc == 0)
        memcpy (value, data.mv_data, size);
    return rc;
}

static int
s_meta_put (MDB_txn *txn, MDB_dbi meta, const char *name, const void *value, size_t size)
{
    MDB_val key = {strlen (name), (void *) name}, data = {size, (void *) value};
    return mdb_put (txn, meta, &key, &data, 0);
}

//  The retention sweep's place in meta: every user event below key is deleted.
typedef struct {
    uint32_t len;         //  bytes of key
    char key[SN_KEY_MAX]; //  where the next pass starts
} s_swept_t;

static int64_t s_horizon (self_t *self);
static int s_key_compare (const MDB_val *a, const MDB_val *b);

//  Resume the sweep where it stopped at the last run rather than walking every
//  internal event below the horizon again; never past the horizon of this start,
//  and that place is saved at once. Keys at or after the horizon are taken while the
//  node runs and must be swept once they expire: were the place ahead of it (a clock
//  that was ahead at the last run, a longer retention now), the sweep would pass
//  them over. Without a retention the place is forgotten: keys of any age may be
//  stored meanwhile, and a retention set later walks from the first key. A place
//  that cannot be read counts as none.
static int
s_swept_load (self_t *self, MDB_txn *txn)
{
    MDB_val name = {5, (void *) "swept"}, data;
    int rc = mdb_get (txn, self->meta, &name, &data);
    if (!self->retention)
        return rc == 0 ? mdb_del (txn, self->meta, &name, NULL) : rc == MDB_NOTFOUND ? 0 : rc;
    if (rc)
        return rc == MDB_NOTFOUND ? 0 : rc;
    s_swept_t swept;
    if (data.mv_size != sizeof swept)
        return 0;
    memcpy (&swept, data.mv_data, sizeof swept);
    if (swept.len == 0 || swept.len > SN_KEY_MAX)
        return 0;
    char floor[SN_KEY_TIME_LEN + 1];
    sn_key_time_prefix (s_horizon (self), floor);
    MDB_val place = {swept.len, swept.key}, horizon = {SN_KEY_TIME_LEN, floor};
    if (s_key_compare (&place, &horizon) > 0) {
        swept.len = SN_KEY_TIME_LEN;
        memcpy (swept.key, floor, SN_KEY_TIME_LEN);
        rc = s_meta_put (txn, self->meta, "swept", &swept, sizeof swept);
    }
    memcpy (self->swept, swept.key, swept.len);
    self->swept_len = swept.len;
    return rc;
}

//  Persist the key generator's place in the batch's own transaction, so that the
//  stored place is never behind a committed key: after a restart the generator
//  resumes strictly after the last key, even if the clock went back meanwhile.
static int
s_keygen_save (self_t *self, MDB_txn *txn)
{
    s_keygen_state_t state = {0};
    state.last_ms = sn_keygen_last_ms (self->keygen);
    state.last_seq = sn_keygen_last_seq (self->keygen);
    return s_meta_put (txn, self->meta, "keygen", &state, sizeof state);
}

//  Open the five databases, check P against the one the store was created with
//  (or record it in a new store) and resume the key generator where it stopped.
//  Returns 0, or -1 with the reason in error.
static int
s_store_prepare (self_t *self, char *error, size_t size)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "events", MDB_CREATE, &self->events);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "byp", MDB_CREATE, &self->byp);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "bypl", MDB_CREATE, &self->bypl);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "digest", MDB_CREATE, &self->digest);
    if (rc == 0)
        rc = mdb_dbi_open (txn, "meta", MDB_CREATE, &self->meta);

    uint32_t partitions = self->partitions;
    bool found = false;
    if (rc == 0)
        rc = s_meta_get (txn, self->meta, "partitions", &partitions, sizeof partitions, &found);
    if (rc == 0 && !found)
        rc = s_meta_put (txn, self->meta, "partitions", &partitions, sizeof partitions);
    s_keygen_state_t state = {0};
    if (rc == 0)
        rc = s_meta_get (txn, self->meta, "keygen", &state, sizeof state, &found);
    if (rc == 0 && found)
        sn_keygen_resume (self->keygen, state.last_ms, state.last_seq);
    if (rc == 0)
        rc = s_swept_load (self, txn);

    if (rc == 0 && partitions != self->partitions) {
        mdb_txn_abort (txn);
        snprintf (error, size, "store was created with P=%u partitions, not %u", partitions,
                  self->partitions);
        return -1;
    }
    if (rc == 0)
        rc = mdb_txn_commit (txn);
    else if (txn)
        mdb_txn_abort (txn);
    if (rc) {
        snprintf (error, size, "cannot open store in %s: %s", self->data_dir, mdb_strerror (rc));
        return -1;
    }
    return 0;
}

//  Create or open the LMDB environment. Returns 0, or -1 with the reason in error.
static int
s_store_open (self_t *self, char *error, size_t size)
{
    if (zsys_dir_create ("%s", self->data_dir)) {
        snprintf (error, size, "cannot open store in %s: %s", self->data_dir, strerror (errno));
        return -1;
    }
    int rc = mdb_env_create (&self->env);
    if (rc == 0 && self->map_size)
        rc = mdb_env_set_mapsize (self->env, self->map_size);
    if (rc == 0)
        rc = mdb_env_set_maxdbs (self->env, 5);
    //  MDB_NOTLS: read transactions belong to this actor, not to an OS thread.
    //  Commits stay synchronous: the group commit is what makes them cheap.
    if (rc == 0)
        rc = mdb_env_open (self->env, self->data_dir, MDB_NOTLS, 0644);
    if (rc == 0) {
        //  Readers left behind by a process that died would pin old pages forever.
        int dead;
        mdb_reader_check (self->env, &dead);
    }
    if (rc)
        snprintf (error, size, "cannot open store in %s: %s", self->data_dir, mdb_strerror (rc));
    if (rc == 0 && s_store_prepare (self, error, size) == 0)
        return 0;
    if (self->env)
        mdb_env_close (self->env);
    self->env = NULL;
    return -1;
}

//  START: open the environment and bind the ROUTER. Returns 0, or -1 with the
//  reason in error.
static int
s_store_start (self_t *self, char *error, size_t size)
{
    if (self->env) {
        snprintf (error, size, "store already started");
        return -1;
    }
    if (self->partitions == 0 || self->partitions > 65536) {
        snprintf (error, size, "partitions must be 1 to 65536, not %u", self->partitions);
        return -1;
    }
    if (!sn_name_valid (self->name)) {
        snprintf (error, size, "'%s' is not a valid node name", self->name);
        return -1;
    }
    if (!self->keygen)
        self->keygen = sn_keygen_new (self->name);
    if (s_store_open (self, error, size))
        return -1;

    self->router = zsock_new (ZMQ_ROUTER);
    assert (self->router);
    zsock_set_sndhwm (self->router, S_REPLY_HWM);
    //  Read only after the poller says so, then drained until empty: a zero
    //  timeout makes the read that finds nothing return at once.
    zsock_set_rcvtimeo (self->router, 0);
    if (zsock_bind (self->router, "%s", self->endpoint) == -1) {
        snprintf (error, size, "cannot bind store to %s: %s", self->endpoint,
                  zmq_strerror (zmq_errno ()));
        zsock_destroy (&self->router);
        mdb_env_close (self->env);
        self->env = NULL;
        return -1;
    }
    zpoller_add (self->poller, self->router);
    if (self->verbose)
        zsys_info ("sn_store: opened %s (P=%u) on %s", self->data_dir, self->partitions,
                   self->endpoint);
    return 0;
}

//  --------------------------------------------------------------------------
//  Replies: built into self->reply, one map per request

//  Start a reply map of rid, code and extra more entries.
static void
s_reply_start (self_t *self, uint64_t rid, int code, uint32_t extra)
{
    sn_pack_map (self->reply, 2 + extra);
    sn_pack_kv_uint (self->reply, "rid", rid);
    sn_pack_kv_uint (self->reply, "code", (uint64_t) code);
    self->code = code;
}

static void s_reply_error (self_t *self, uint64_t rid, int code, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

static void
s_reply_error (self_t *self, uint64_t rid, int code, const char *format, ...)
{
    char text[S_ERROR_MAX];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    sn_pack_error (self->reply, rid, code, "%s", text);
    self->code = code;
}

//  --------------------------------------------------------------------------
//  Writing events

//  The outcome of storing one event, for put and for each item of bulk.
typedef struct {
    int code;                 //  201, or a 4xx
    char key[SN_KEY_MAX + 1]; //  the event's key, when there is one
    char error[S_ERROR_MAX];  //  why not, when code is not 201
} s_outcome_t;

static int
s_refuse (s_outcome_t *outcome, int code, const char *error)
{
    outcome->code = code;
    snprintf (outcome->error, sizeof outcome->error, "%s", error);
    return 0;
}

//  Count the event in its partition's digest bucket, or with removed take it out.
//  The counts of a batch are gathered in memory and written once per bucket by
//  s_digest_flush, in the same transaction: a batch of a thousand puts touches a
//  handful of buckets.
static void
s_digest_add (self_t *self, uint32_t p, int64_t ts, const char *key, size_t key_len, bool removed)
{
    uint64_t start = (uint64_t) (ts - ts % SN_STORE_BUCKET_MS);
    //  The events of a batch are mostly of the same hour: the partition's last
    //  bucket saves naming and looking up the bucket for each of them
    s_digest_delta_t *delta = p < self->partitions ? self->last_delta[p] : NULL;
    if (!delta || delta->start != start) {
        char name[32];
        snprintf (name, sizeof name, "%u/%" PRIu64, p, start);
        delta = (s_digest_delta_t *) zhashx_lookup (self->digest_delta, name);
        if (!delta) {
            delta = (s_digest_delta_t *) zmalloc (sizeof (s_digest_delta_t));
            delta->p = p;
            delta->start = start;
            zhashx_insert (self->digest_delta, name, delta);
        }
        if (p < self->partitions)
            self->last_delta[p] = delta;
    }
    if (removed)
        delta->removed++;
    else
        delta->count++;
    delta->xor ^= sn_hash (key, key_len);
}

//  Forget the running batch's digest counts: written, or lost with its transaction.
static void
s_digest_reset (self_t *self)
{
    zhashx_purge (self->digest_delta);
    memset (self->last_delta, 0, self->partitions * sizeof (s_digest_delta_t *));
}

//  Add the batch's digest counts to the stored buckets.
static int
s_digest_flush (self_t *self, MDB_txn *txn)
{
    int rc = 0;
    for (s_digest_delta_t *delta = (s_digest_delta_t *) zhashx_first (self->digest_delta);
         delta && rc == 0; delta = (s_digest_delta_t *) zhashx_next (self->digest_delta)) {
        byte name[10];
        s_put_be16 (name, delta->p);
        s_put_be64 (name + 2, delta->start);
        MDB_val dkey = {sizeof name, name}, data;
        uint64_t bucket[2] = {0, 0}; //  count, XOR
        rc = mdb_get (txn, self->digest, &dkey, &data);
        if (rc == 0 && data.mv_size == sizeof bucket)
            memcpy (bucket, data.mv_data, sizeof bucket);
        else if (rc == 0)
            rc = MDB_CORRUPTED;
        else if (rc == MDB_NOTFOUND)
            rc = 0;
        if (rc == 0 && bucket[0] + delta->count < delta->removed) {
            //  Only a damaged bucket can count fewer events than were deleted from it
            zsys_error ("sn_store: digest of partition %u at %" PRIu64 " counted too few", delta->p,
                        delta->start);
            bucket[0] = delta->removed - delta->count;
        }
        if (rc == 0) {
            bucket[0] += delta->count - delta->removed;
            bucket[1] ^= delta->xor ;
            data.mv_size = sizeof bucket;
            data.mv_data = bucket;
            //  An empty bucket is no bucket, as on a replica that never held its events
            if (bucket[0])
                rc = mdb_put (txn, self->digest, &dkey, &data, 0);
            else
                rc = mdb_del (txn, self->digest, &dkey, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        }
    }
    s_digest_reset (self);
    return rc;
}

//  Keys in this node's name further ahead of its clock than this are not taken as
//  ones it made: the generator is not pushed into the future by them.
#define S_KEYGEN_SKEW_MS (24 * 3600 * 1000LL)

//  A key in this node's name that came back from a replica: the generator must never
//  make it again, whatever the clock says after a restart.
static void
s_keygen_observe (self_t *self, const char *key, size_t key_len, int64_t ts)
{
    if (ts > zclock_time () + S_KEYGEN_SKEW_MS)
        return;
    uint32_t seq = 0;
    for (size_t index = SN_KEY_TIME_LEN - 9; index < SN_KEY_TIME_LEN && index < key_len; index++)
        seq = seq * 10 + (uint32_t) (key[index] - '0');
    int64_t last_ms = sn_keygen_last_ms (self->keygen);
    if (ts > last_ms || (ts == last_ms && seq > sn_keygen_last_seq (self->keygen))) {
        sn_keygen_resume (self->keygen, ts, seq);
        self->keygen_dirty = true;
    }
}

//  The retention horizon: user events whose key time is before it have expired; 0
//  without a retention. It never goes back, even when the clock does, so that a key
//  the sweep has passed is never stored again; and it moves no faster than monotonic
//  time, so that a wall clock stepped forward does not delete events early.
static int64_t
s_horizon (self_t *self)
{
    return sn_horizon_now (&self->horizon, self->retention, "sn_store");
}

//  True for the record of a user event: records are written type first.
static bool
s_user_record (self_t *self, const MDB_val *data)
{
    return data->mv_size >= self->user_prefix_size &&
           memcmp (data->mv_data, self->user_prefix, self->user_prefix_size) == 0;
}

//  True for a user event past the horizon: as good as deleted, whether the sweep has
//  reached it yet or not.
static bool
s_expired (self_t *self, const MDB_val *key, const MDB_val *data)
{
    return self->retention && s_user_record (self, data) &&
           sn_key_time ((const char *) key->mv_data, key->mv_size) < s_horizon (self);
}

//  --------------------------------------------------------------------------
//  The partition index: {be16 p, key} -> "" for every event, what the scans and
//  digests of one partition walk (byp). Written there at once, each commit would
//  copy a leaf and its branches in every partition its batch touched, some 130
//  pages a batch with 64 partitions, four times the events' own. So a new
//  entry is first appended to bypl ({be64 n} -> {be16 p, key}, n counting from 0,
//  a page or two a batch), and once S_INDEX_PENDING wait there they move into byp
//  together, sorted, and bypl is emptied. A walk of a partition merges the two;
//  the retention sweep deletes an entry from whichever holds it.

#define S_INDEX_PENDING 4096 //  entries bypl holds before they move into byp

static int
s_index_compare (const void *a, const void *b)
{
    return s_key_compare ((const MDB_val *) a, (const MDB_val *) b);
}

//  Index the event key of key_len bytes under partition p.
static int
s_index_add (self_t *self, MDB_txn *txn, uint32_t p, const char *key, size_t key_len)
{
    MDB_cursor *cursor;
    int rc = mdb_cursor_open (txn, self->bypl, &cursor);
    if (rc)
        return rc;
    MDB_val last, entry;
    rc = mdb_cursor_get (cursor, &last, &entry, MDB_LAST);
    uint64_t next = rc == 0 && last.mv_size == 8 ? s_get_be64 ((const byte *) last.mv_data) + 1 : 0;
    mdb_cursor_close (cursor);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    byte n[8], index[2 + SN_KEY_MAX];
    s_put_be64 (n, next);
    s_put_be16 (index, p);
    memcpy (index + 2, key, key_len);
    MDB_val n_key = {sizeof n, n};
    entry.mv_size = 2 + key_len;
    entry.mv_data = index;
    return mdb_put (txn, self->bypl, &n_key, &entry, MDB_APPEND);
}

//  True when bypl's entry belongs to the list s_index_pending asks for.
static bool
s_index_wanted (const MDB_val *entry, const byte *prefix, size_t prefix_len, const MDB_val *from)
{
    return entry->mv_size >= prefix_len && entry->mv_size <= 2 + SN_KEY_MAX &&
           (prefix_len == 0 || memcmp (entry->mv_data, prefix, prefix_len) == 0) &&
           (from == NULL || s_key_compare (entry, from) >= 0);
}

//  bypl's entries whose first bytes are prefix and that sort at or after from, in
//  order: an array of their keys pointing into *copy (both to free), count in
//  *count. One pass counts them, so both are sized to what is found (a walk of
//  one partition finds a sixty-fourth of what waits); the second copies them.
static int
s_index_pending (self_t *self, MDB_txn *txn, const byte *prefix, size_t prefix_len,
                 const MDB_val *from, MDB_val **list, byte **copy, size_t *count)
{
    *list = NULL;
    *copy = NULL;
    *count = 0;
    MDB_cursor *cursor;
    int rc = mdb_cursor_open (txn, self->bypl, &cursor);
    if (rc)
        return rc;
    size_t wanted = 0, size = 0;
    MDB_val n_key, entry;
    for (rc = mdb_cursor_get (cursor, &n_key, &entry, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get (cursor, &n_key, &entry, MDB_NEXT))
        if (s_index_wanted (&entry, prefix, prefix_len, from)) {
            wanted++;
            size += entry.mv_size;
        }
    if (rc != MDB_NOTFOUND || wanted == 0) {
        mdb_cursor_close (cursor);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    MDB_val *items = (MDB_val *) malloc (wanted * sizeof (MDB_val));
    byte *bytes = (byte *) malloc (size);
    assert (items && bytes);
    size_t found = 0, used = 0;
    for (rc = mdb_cursor_get (cursor, &n_key, &entry, MDB_FIRST); rc == 0 && found < wanted;
         rc = mdb_cursor_get (cursor, &n_key, &entry, MDB_NEXT)) {
        if (!s_index_wanted (&entry, prefix, prefix_len, from))
            continue;
        memcpy (bytes + used, entry.mv_data, entry.mv_size);
        items[found].mv_data = bytes + used;
        items[found++].mv_size = entry.mv_size;
        used += entry.mv_size;
    }
    mdb_cursor_close (cursor);
    if (rc && rc != MDB_NOTFOUND) {
        free (items);
        free (bytes);
        return rc;
    }
    qsort (items, found, sizeof (MDB_val), s_index_compare);
    *list = items;
    *copy = bytes;
    *count = found;
    return 0;
}

//  Move bypl's entries into byp, in order, and empty bypl.
static int
s_index_fold (self_t *self, MDB_txn *txn)
{
    MDB_val *list;
    byte *copy;
    size_t count;
    int rc = s_index_pending (self, txn, NULL, 0, NULL, &list, &copy, &count);
    MDB_val empty = {0, NULL};
    for (size_t index = 0; rc == 0 && index < count; index++)
        rc = mdb_put (txn, self->byp, &list[index], &empty, 0);
    if (rc == 0 && count)
        rc = mdb_drop (txn, self->bypl, 0);
    free (list);
    free (copy);
    return rc;
}

//  Delete from bypl the count entries of list, sorted, that wait there.
static int
s_index_forget (self_t *self, MDB_txn *txn, const MDB_val *list, size_t count)
{
    MDB_cursor *cursor;
    int rc = mdb_cursor_open (txn, self->bypl, &cursor);
    if (rc)
        return rc;
    MDB_val n_key, entry;
    for (rc = mdb_cursor_get (cursor, &n_key, &entry, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get (cursor, &n_key, &entry, MDB_NEXT)) {
        //  The cursor then stands on the next entry, which MDB_NEXT returns
        if (bsearch (&entry, list, count, sizeof (MDB_val), s_index_compare))
            rc = mdb_cursor_del (cursor, 0);
        if (rc)
            break;
    }
    mdb_cursor_close (cursor);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  At a clean stop, move every waiting entry into byp: the store is then whole for
//  a build that does not know bypl.
static void
s_index_settle (self_t *self)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc == 0) {
        rc = s_index_fold (self, txn);
        if (rc == 0)
            rc = mdb_txn_commit (txn);
        else
            mdb_txn_abort (txn);
    }
    if (rc)
        zsys_warning ("sn_store: index entries left waiting at stop: %s", mdb_strerror (rc));
}

//  A walk of one partition's index entries, in key order, byp and bypl merged.
typedef struct {
    byte p[2];          //  the partition, as its entries start
    MDB_cursor *cursor; //  on byp
    MDB_val main;       //  byp's next entry; mv_data NULL past the partition's last
    MDB_val *pending;   //  bypl's entries of the partition from the start, in order
    byte *copy;         //  their bytes
    size_t count;       //  how many
    size_t at;          //  the next one
} s_walk_t;

//  Move the walk's byp cursor by op (MDB_SET_RANGE from walk->main, or MDB_NEXT);
//  past the partition's last entry walk->main.mv_data is NULL.
static int
s_walk_step (s_walk_t *walk, MDB_cursor_op op)
{
    MDB_val empty;
    int rc = mdb_cursor_get (walk->cursor, &walk->main, &empty, op);
    if (rc == 0 && (walk->main.mv_size < 2 || memcmp (walk->main.mv_data, walk->p, 2) != 0))
        rc = MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND) {
        walk->main.mv_data = NULL;
        rc = 0;
    }
    return rc;
}

//  Start a walk at the first entry at or after seek ({be16 p, key prefix}).
static int
s_walk_start (self_t *self, MDB_txn *txn, s_walk_t *walk, const byte *seek, size_t seek_len)
{
    memset (walk, 0, sizeof *walk);
    memcpy (walk->p, seek, 2);
    MDB_val from = {seek_len, (void *) seek};
    int rc = s_index_pending (self, txn, seek, 2, &from, &walk->pending, &walk->copy, &walk->count);
    if (rc == 0)
        rc = mdb_cursor_open (txn, self->byp, &walk->cursor);
    if (rc)
        return rc;
    walk->main = from;
    return s_walk_step (walk, MDB_SET_RANGE);
}

//  The walk's next entry into index; MDB_NOTFOUND after the partition's last.
static int
s_walk_next (s_walk_t *walk, MDB_val *index)
{
    bool main = walk->main.mv_data != NULL, pending = walk->at < walk->count;
    if (!main && !pending)
        return MDB_NOTFOUND;
    int order = !main ? 1 : !pending ? -1 : s_key_compare (&walk->main, &walk->pending[walk->at]);
    if (order > 0) {
        *index = walk->pending[walk->at++];
        return 0;
    }
    if (order == 0)
        walk->at++; //  never in both, were the index ever damaged so: once
    *index = walk->main;
    return s_walk_step (walk, MDB_NEXT);
}

static void
s_walk_end (s_walk_t *walk)
{
    if (walk->cursor)
        mdb_cursor_close (walk->cursor);
    free (walk->pending);
    free (walk->copy);
}

//  Store one event described by item {event, key?, type?, pkey?, p?}. Refusals (4xx)
//  go into outcome and return 0; only an LMDB failure returns non-zero, and then the
//  whole transaction is lost. A replica write (from the mesh, which made or received
//  the key) may carry a key in this node's name.
static int
s_store_event (self_t *self, MDB_txn *txn, const sn_value_t *item, bool replica,
               s_outcome_t *outcome)
{
    outcome->key[0] = 0;
    const sn_value_t *event = sn_value_get (item, "event");
    if (!sn_value_is (event, SN_TYPE_MAP))
        return s_refuse (outcome, 400, "event: must be an object");

    const char *type = "event";
    size_t type_len = strlen (type);
    const sn_value_t *type_value = sn_value_get (item, "type");
    if (type_value) {
        type = sn_value_str (type_value, &type_len);
        if (!type || type_len == 0 || type_len > S_TYPE_MAX)
            return s_refuse (outcome, 400, "type: must be a string of 1 to 64 bytes");
    }

    const char *pkey = NULL;
    size_t pkey_len = 0;
    const sn_value_t *pkey_value = sn_value_get (item, "pkey");
    if (pkey_value) {
        pkey = sn_value_str (pkey_value, &pkey_len);
        if (!pkey || pkey_len == 0 || pkey_len > S_PKEY_MAX)
            return s_refuse (outcome, 400, "pkey: must be a string of 1 to 256 bytes");
    }

    size_t key_len;
    int64_t ts;
    const sn_value_t *key_value = sn_value_get (item, "key");
    if (key_value) {
        const char *given = sn_value_str (key_value, &key_len);
        ts = sn_key_time (given, given ? key_len : 0);
        if (ts < 0)
            return s_refuse (outcome, 400, "key: not a supernode key");
        //  Only this node makes keys in its own name: a client that wrote one ahead
        //  of the generator would make later puts here fail with 409.
        bool own = key_len == SN_KEY_TIME_LEN + 1 + strlen (self->name) &&
                   memcmp (given + SN_KEY_TIME_LEN + 1, self->name, strlen (self->name)) == 0;
        if (own && !replica) {
            snprintf (outcome->error, sizeof outcome->error,
                      "key: keys ending in -%s are made by this node only", self->name);
            outcome->code = 400;
            return 0;
        }
        if (own)
            s_keygen_observe (self, given, key_len, ts);
        memcpy (outcome->key, given, key_len);
        outcome->key[key_len] = 0;
    }
    else {
        sn_keygen_next (self->keygen, zclock_time (), outcome->key);
        self->keygen_dirty = true;
        key_len = strlen (outcome->key);
        ts = sn_key_time (outcome->key, key_len);
        assert (ts >= 0);
    }

    if (!pkey) {
        pkey = outcome->key;
        pkey_len = key_len;
    }
    uint32_t p = sn_partition (pkey, pkey_len, self->partitions);
    //  A replica is told the partition: the record it copies has no partition key.
    uint64_t given_p;
    const sn_value_t *p_value = sn_value_get (item, "p");
    if (p_value) {
        if (!sn_value_uint (p_value, &given_p) || given_p >= self->partitions)
            return s_refuse (outcome, 400, "p: must be a partition of this store");
        p = (uint32_t) given_p;
    }

    //  A user event past the horizon has expired. A copy of one (a replica write, a
    //  hint, an anti-entropy push from a replica that has not swept it yet) is done
    //  with: acknowledged, so that its sender lets it go, and not stored, so that it
    //  does not come back. A client's own write of one is refused.
    if (type_len == 5 && memcmp (type, "event", 5) == 0 && ts < s_horizon (self)) {
        if (!replica) {
            snprintf (outcome->error, sizeof outcome->error,
                      "key: %s is older than the event retention (%" PRId64 " ms)", outcome->key,
                      self->retention);
            outcome->code = 422;
            return 0;
        }
        self->expired_ignored++;
        outcome->code = 201;
        return 0;
    }

    sn_pack_reset (self->record);
    sn_pack_map (self->record, 4);
    sn_pack_str (self->record, "type");
    sn_pack_strn (self->record, type, type_len);
    sn_pack_str (self->record, "ts");
    sn_pack_int (self->record, ts);
    sn_pack_kv_uint (self->record, "p", p);
    sn_pack_kv_value (self->record, "body", event);

    MDB_val key = {key_len, outcome->key};
    MDB_val data = {sn_pack_size (self->record), (void *) sn_pack_data (self->record)};
    //  Keys made here grow, so they usually go at the end: appending skips the
    //  search and fills pages whole. A key given by a client, or one below a
    //  later key from elsewhere, takes the ordinary path.
    int rc = key_value ? MDB_KEYEXIST : mdb_put (txn, self->events, &key, &data, MDB_APPEND);
    if (rc == MDB_KEYEXIST) {
        data.mv_size = sn_pack_size (self->record);
        data.mv_data = (void *) sn_pack_data (self->record);
        rc = mdb_put (txn, self->events, &key, &data, MDB_NOOVERWRITE);
    }
    if (rc == MDB_KEYEXIST) {
        //  Events are immutable: the same event again is a harmless repeat (a retry,
        //  or a replica catching up); different content under its key is a conflict.
        if (data.mv_size == sn_pack_size (self->record) &&
            memcmp (data.mv_data, sn_pack_data (self->record), data.mv_size) == 0) {
            outcome->code = 201;
            return 0;
        }
        outcome->code = 409;
        snprintf (outcome->error, sizeof outcome->error, "key %s already holds a different event",
                  outcome->key);
        return 0;
    }
    if (rc)
        return rc;

    rc = s_index_add (self, txn, p, outcome->key, key_len);
    if (rc == 0) {
        s_digest_add (self, p, ts, outcome->key, key_len, false);
        outcome->code = 201;
    }
    return rc;
}

//  True for a replica write: {replica: true} in the request.
static bool
s_replica (const sn_value_t *request)
{
    bool replica = false;
    return sn_value_bool (sn_value_get (request, "replica"), &replica) && replica;
}

//  put {event, key?, type?, pkey?, p?, replica?} -> 201 {key}
static int
s_op_put (self_t *self, MDB_txn *txn, const sn_value_t *request, uint64_t rid)
{
    s_outcome_t outcome;
    int rc = s_store_event (self, txn, request, s_replica (request), &outcome);
    if (rc)
        return rc;
    if (outcome.code == 201) {
        s_reply_start (self, rid, 201, 1);
        sn_pack_kv_str (self->reply, "key", outcome.key);
    }
    else
        s_reply_error (self, rid, outcome.code, "%s", outcome.error);
    return 0;
}

//  bulk {puts: [{event, key?, type?, pkey?}...]} -> 200 {results: [{code, key | error}]}
//  Each item succeeds or fails on its own; all of them commit with the batch.
static int
s_op_bulk (self_t *self, MDB_txn *txn, const sn_value_t *request, uint64_t rid)
{
    const sn_value_t *puts = sn_value_get (request, "puts");
    if (!sn_value_is (puts, SN_TYPE_ARRAY)) {
        s_reply_error (self, rid, 400, "puts: must be an array");
        return 0;
    }
    size_t count = sn_value_size (puts);
    bool replica = s_replica (request);
    s_reply_start (self, rid, 200, 1);
    sn_pack_str (self->reply, "results");
    sn_pack_array (self->reply, (uint32_t) count);
    for (size_t index = 0; index < count; index++) {
        s_outcome_t outcome;
        int rc = s_store_event (self, txn, sn_value_at (puts, index), replica, &outcome);
        if (rc)
            return rc;
        sn_pack_map (self->reply, 2);
        sn_pack_kv_uint (self->reply, "code", (uint64_t) outcome.code);
        if (outcome.code == 201)
            sn_pack_kv_str (self->reply, "key", outcome.key);
        else
            sn_pack_kv_str (self->reply, "error", outcome.error);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Reading

//  A key given by a client for a lookup: LMDB refuses empty and oversized keys with
//  an error that would fail the whole batch, so they are refused here first.
static bool
s_lookup_key (const sn_value_t *value, MDB_val *key)
{
    size_t len;
    const char *text = sn_value_str (value, &len);
    if (!text || len == 0 || len > SN_KEY_MAX)
        return false;
    key->mv_size = len;
    key->mv_data = (void *) text;
    return true;
}

//  get {key} -> 200 {key, type, ts, p, event} | 404
static int
s_op_get (self_t *self, MDB_txn *txn, const sn_value_t *request, uint64_t rid)
{
    MDB_val key, data;
    if (!s_lookup_key (sn_value_get (request, "key"), &key)) {
        s_reply_error (self, rid, 400, "key: must be a string of 1 to %d bytes", SN_KEY_MAX);
        return 0;
    }
    int rc = mdb_get (txn, self->events, &key, &data);
    if (rc == 0 && s_expired (self, &key, &data))
        rc = MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND) {
        s_reply_error (self, rid, 404, "key %.*s not found", (int) key.mv_size,
                       (char *) key.mv_data);
        return 0;
    }
    if (rc)
        return rc;
    sn_msg_t *record = sn_msg_decode (data.mv_data, data.mv_size, data.mv_size, NULL);
    const sn_value_t *root = record ? sn_msg_root (record) : NULL;
    const sn_value_t *type = sn_value_get (root, "type");
    const sn_value_t *ts = sn_value_get (root, "ts");
    const sn_value_t *p = sn_value_get (root, "p");
    const sn_value_t *body = sn_value_get (root, "body");
    if (sn_value_is (type, SN_TYPE_STRING) && sn_value_is (ts, SN_TYPE_INT) &&
        sn_value_is (p, SN_TYPE_INT) && body) {
        s_reply_start (self, rid, 200, 5);
        sn_pack_str (self->reply, "key");
        sn_pack_strn (self->reply, (char *) key.mv_data, key.mv_size);
        sn_pack_kv_value (self->reply, "type", type);
        sn_pack_kv_value (self->reply, "ts", ts);
        sn_pack_kv_value (self->reply, "p", p);
        sn_pack_kv_value (self->reply, "event", body);
    }
    else
        s_reply_error (self, rid, 500, "key %.*s: stored record is damaged", (int) key.mv_size,
                       (char *) key.mv_data);
    sn_msg_destroy (&record);
    return 0;
}

//  Append {key, event} for one user event record to self->items. False when the
//  record does not decode, which only damage can cause.
static bool
s_range_item (self_t *self, const MDB_val *key, const MDB_val *data)
{
    sn_msg_t *record = sn_msg_decode (data->mv_data, data->mv_size, data->mv_size, NULL);
    const sn_value_t *body = record ? sn_value_get (sn_msg_root (record), "body") : NULL;
    if (body) {
        sn_pack_map (self->items, 2);
        sn_pack_str (self->items, "key");
        sn_pack_strn (self->items, (char *) key->mv_data, key->mv_size);
        sn_pack_kv_value (self->items, "event", body);
    }
    sn_msg_destroy (&record);
    return body != NULL;
}

//  One optional bound of a range; an empty string means no bound.
static bool
s_range_bound (const sn_value_t *request, const char *name, MDB_val *bound)
{
    const sn_value_t *value = sn_value_get (request, name);
    bound->mv_size = 0;
    bound->mv_data = NULL;
    if (!value)
        return true;
    size_t len;
    const char *text = sn_value_str (value, &len);
    if (!text || len > SN_KEY_MAX)
        return false;
    bound->mv_size = len;
    bound->mv_data = (void *) text;
    return true;
}

static int
s_key_compare (const MDB_val *a, const MDB_val *b)
{
    size_t len = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
    int order = memcmp (a->mv_data, b->mv_data, len);
    if (order)
        return order;
    return a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size;
}

//  range {from?, to?, limit?} -> 200 {events: [{key, event}], next}
//  Scans at most 10 * limit + 100 records, so that a stretch of internal events
//  cannot make one request unbounded: the page may then be short, or empty, with
//  next set to where the scan stopped.
static int
s_op_range (self_t *self, MDB_txn *txn, const sn_value_t *request, uint64_t rid)
{
    MDB_val from, to;
    if (!s_range_bound (request, "from", &from) || !s_range_bound (request, "to", &to)) {
        s_reply_error (self, rid, 400, "from, to: must be strings of at most %d bytes", SN_KEY_MAX);
        return 0;
    }
    uint64_t limit = S_RANGE_LIMIT;
    const sn_value_t *limit_value = sn_value_get (request, "limit");
    if (limit_value && (!sn_value_uint (limit_value, &limit) || limit == 0)) {
        s_reply_error (self, rid, 400, "limit: must be a positive integer");
        return 0;
    }
    if (limit > S_RANGE_LIMIT_MAX)
        limit = S_RANGE_LIMIT_MAX;
    uint64_t scan_max = 10 * limit + 100;
    //  Keys are in time order: expired user events all sort before the horizon's key
    char floor[SN_KEY_TIME_LEN + 1];
    MDB_val horizon = {SN_KEY_TIME_LEN, floor};
    if (self->retention) {
        sn_key_time_prefix (s_horizon (self), floor);
        if (!from.mv_size || s_key_compare (&from, &horizon) < 0)
            from = horizon;
    }

    MDB_cursor *cursor;
    int rc = mdb_cursor_open (txn, self->events, &cursor);
    if (rc)
        return rc;
    MDB_val key = from, data, next = {0, NULL};
    rc = mdb_cursor_get (cursor, &key, &data, from.mv_size ? MDB_SET_RANGE : MDB_FIRST);
    sn_pack_reset (self->items);
    uint32_t count = 0;
    uint64_t scanned = 0;
    for (; rc == 0; rc = mdb_cursor_get (cursor, &key, &data, MDB_NEXT)) {
        if (to.mv_size && s_key_compare (&key, &to) >= 0)
            break;
        //  A page also ends at S_RANGE_BYTES, so that one reply stays well under
        //  what clients decode (SN_MSG_MAX_SIZE) and a batch of pipelined ranges
        //  over large events cannot hold gigabytes; a page has at least one event.
        if (count == limit || scanned == scan_max ||
            (count > 0 && sn_pack_size (self->items) + data.mv_size > S_RANGE_BYTES)) {
            next = key;
            break;
        }
        scanned++;
        if (s_user_record (self, &data) && s_range_item (self, &key, &data))
            count++;
    }
    mdb_cursor_close (cursor);
    if (rc && rc != MDB_NOTFOUND)
        return rc;

    s_reply_start (self, rid, 200, 2);
    sn_pack_str (self->reply, "events");
    sn_pack_array (self->reply, count);
    sn_pack_raw (self->reply, sn_pack_data (self->items), sn_pack_size (self->items));
    sn_pack_str (self->reply, "next");
    if (next.mv_size)
        sn_pack_strn (self->reply, (char *) next.mv_data, next.mv_size);
    else
        sn_pack_nil (self->reply);
    return 0;
}

#define S_MINUTES (SN_STORE_BUCKET_MS / SN_STORE_MINUTE_MS)

//  digest {p, within: t}: the hour bucket starting at t, per minute, computed from the
//  partition's index: for narrowing a bucket that differs between replicas down to
//  the minutes to copy. A bucket of more than SN_STORE_WITHIN_MAX events is answered
//  413 and copied whole.
static int
s_op_digest_within (self_t *self, MDB_txn *txn, uint32_t p, const sn_value_t *within, uint64_t rid)
{
    uint64_t t;
    if (!sn_value_uint (within, &t) || t % SN_STORE_BUCKET_MS != 0 ||
        t > (uint64_t) SN_KEY_MS_MAX) {
        s_reply_error (self, rid, 400, "within: must be the start of an hour bucket, in ms");
        return 0;
    }
    byte start[2 + SN_KEY_TIME_LEN + 1];
    s_put_be16 (start, p);
    sn_key_time_prefix ((int64_t) t, (char *) start + 2);
    s_walk_t walk;
    int rc = s_walk_start (self, txn, &walk, start, 2 + SN_KEY_TIME_LEN);
    uint64_t counts[S_MINUTES] = {0}, xors[S_MINUTES] = {0}, total = 0;
    MDB_val index;
    while (rc == 0 && (rc = s_walk_next (&walk, &index)) == 0) {
        const char *key = (const char *) index.mv_data + 2;
        int64_t ts = sn_key_time (key, index.mv_size - 2);
        if (ts < (int64_t) t || (uint64_t) ts >= t + SN_STORE_BUCKET_MS)
            break;
        if (++total > SN_STORE_WITHIN_MAX)
            break;
        size_t minute = (size_t) (((uint64_t) ts - t) / SN_STORE_MINUTE_MS);
        counts[minute]++;
        xors[minute] ^= sn_hash (key, index.mv_size - 2);
    }
    s_walk_end (&walk);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (total > SN_STORE_WITHIN_MAX) {
        s_reply_error (self, rid, 413, "bucket %" PRIu64 " holds over %d events", t,
                       SN_STORE_WITHIN_MAX);
        return 0;
    }
    uint32_t count = 0;
    for (size_t minute = 0; minute < S_MINUTES; minute++)
        count += counts[minute] > 0;
    s_reply_start (self, rid, 200, 3);
    sn_pack_kv_uint (self->reply, "p", p);
    sn_pack_kv_uint (self->reply, "within", t);
    sn_pack_str (self->reply, "buckets");
    sn_pack_array (self->reply, count);
    for (size_t minute = 0; minute < S_MINUTES; minute++) {
        if (!counts[minute])
            continue;
        sn_pack_map (self->reply, 3);
        sn_pack_kv_uint (self->reply, "t", t + minute * SN_STORE_MINUTE_MS);
        sn_pack_kv_uint (self->reply, "count", counts[minute]);
        sn_pack_kv_uint (self->reply, "xor", xors[minute]);
    }
    return 0;
}

//  digest {p} -> 200 {p, buckets: [{t, count, xor}]}, buckets in time order
static int
s_op_digest (self_t *self, MDB_txn *txn, const sn_value_t *request, uint64_t rid)
{
    uint64_t p;
    if (!sn_value_uint (sn_value_get (request, "p"), &p) || p >= self->partitions) {
        s_reply_error (self, rid, 400, "p: must be a partition, 0 to %u", self->partitions - 1);
        return 0;
    }
    const sn_value_t *within = sn_value_get (request, "within");
    if (within)
        return s_op_digest_within (self, txn, (uint32_t) p, within, rid);
    //  Puts earlier in this batch count too
    int rc = s_digest_flush (self, txn);
    if (rc)
        return rc;
    byte start[10] = {0};
    s_put_be16 (start, (uint32_t) p);
    MDB_cursor *cursor;
    rc = mdb_cursor_open (txn, self->digest, &cursor);
    if (rc)
        return rc;
    MDB_val key = {sizeof start, start}, data;
    sn_pack_reset (self->items);
    uint32_t count = 0;
    for (rc = mdb_cursor_get (cursor, &key, &data, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get (cursor, &key, &data, MDB_NEXT)) {
        if (key.mv_size != sizeof start || memcmp (key.mv_data, start, 2) != 0)
            break;
        if (data.mv_size != 2 * sizeof (uint64_t)) {
            rc = MDB_CORRUPTED;
            break;
        }
        uint64_t bucket[2];
        memcpy (bucket, data.mv_data, sizeof bucket);
        sn_pack_map (self->items, 3);
        sn_pack_kv_uint (self->items, "t", s_get_be64 ((byte *) key.mv_data + 2));
        sn_pack_kv_uint (self->items, "count", bucket[0]);
        sn_pack_kv_uint (self->items, "xor", bucket[1]);
        count++;
    }
    mdb_cursor_close (cursor);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    s_reply_start (self, rid, 200, 2);
    sn_pack_kv_uint (self->reply, "p", p);
    sn_pack_str (self->reply, "buckets");
    sn_pack_array (self->reply, count);
    sn_pack_raw (self->reply, sn_pack_data (self->items), sn_pack_size (self->items));
    return 0;
}

//  scan {p, from?, to?, limit?, prefix?} -> 200 {p, events: [{key, type, ts, event}], next}
//  Every event of partition p with from <= key < to, in key order, whose type starts
//  with prefix: for replaying a partition and for copying it to a replica. Bounded
//  like range (limit, scanned records, page bytes); next continues.
static int
s_op_scan (self_t *self, MDB_txn *txn, const sn_value_t *request, uint64_t rid)
{
    uint64_t p;
    if (!sn_value_uint (sn_value_get (request, "p"), &p) || p >= self->partitions) {
        s_reply_error (self, rid, 400, "p: must be a partition, 0 to %u", self->partitions - 1);
        return 0;
    }
    MDB_val from, to;
    if (!s_range_bound (request, "from", &from) || !s_range_bound (request, "to", &to)) {
        s_reply_error (self, rid, 400, "from, to: must be strings of at most %d bytes", SN_KEY_MAX);
        return 0;
    }
    uint64_t limit = S_RANGE_LIMIT;
    const sn_value_t *limit_value = sn_value_get (request, "limit");
    if (limit_value && (!sn_value_uint (limit_value, &limit) || limit == 0)) {
        s_reply_error (self, rid, 400, "limit: must be a positive integer");
        return 0;
    }
    if (limit > S_RANGE_LIMIT_MAX)
        limit = S_RANGE_LIMIT_MAX;
    size_t prefix_len = 0;
    const char *prefix = NULL;
    const sn_value_t *prefix_value = sn_value_get (request, "prefix");
    if (prefix_value) {
        prefix = sn_value_str (prefix_value, &prefix_len);
        if (!prefix || prefix_len > S_TYPE_MAX) {
            s_reply_error (self, rid, 400, "prefix: must be a string of at most %d bytes",
                           S_TYPE_MAX);
            return 0;
        }
    }
    uint64_t scan_max = 10 * limit + 100;

    byte start[2 + SN_KEY_MAX];
    s_put_be16 (start, (uint32_t) p);
    if (from.mv_size)
        memcpy (start + 2, from.mv_data, from.mv_size);
    s_walk_t walk;
    int rc = s_walk_start (self, txn, &walk, start, 2 + from.mv_size);
    MDB_val index, next = {0, NULL};
    char next_key[SN_KEY_MAX];
    sn_pack_reset (self->items);
    uint32_t count = 0;
    uint64_t scanned = 0;
    while (rc == 0 && (rc = s_walk_next (&walk, &index)) == 0) {
        MDB_val key = {index.mv_size - 2, (byte *) index.mv_data + 2}, data;
        if (to.mv_size && s_key_compare (&key, &to) >= 0)
            break;
        rc = mdb_get (txn, self->events, &key, &data);
        if (rc)
            break;
        if (count == limit || scanned == scan_max ||
            (count > 0 && sn_pack_size (self->items) + data.mv_size > S_RANGE_BYTES)) {
            memcpy (next_key, key.mv_data, key.mv_size);
            next.mv_size = key.mv_size;
            next.mv_data = next_key;
            break;
        }
        scanned++;
        if (s_expired (self, &key, &data))
            continue;
        sn_msg_t *record = sn_msg_decode (data.mv_data, data.mv_size, data.mv_size, NULL);
        const sn_value_t *root = record ? sn_msg_root (record) : NULL;
        const sn_value_t *type = sn_value_get (root, "type");
        const sn_value_t *body = sn_value_get (root, "body");
        size_t type_len = 0;
        const char *type_text = sn_value_str (type, &type_len);
        if (!type_text || !body) {
            sn_msg_destroy (&record);
            rc = MDB_CORRUPTED;
            break;
        }
        if (!prefix || (type_len >= prefix_len && memcmp (type_text, prefix, prefix_len) == 0)) {
            sn_pack_map (self->items, 4);
            sn_pack_str (self->items, "key");
            sn_pack_strn (self->items, (char *) key.mv_data, key.mv_size);
            sn_pack_kv_value (self->items, "type", type);
            sn_pack_kv_value (self->items, "ts", sn_value_get (root, "ts"));
            sn_pack_kv_value (self->items, "event", body);
            count++;
        }
        sn_msg_destroy (&record);
    }
    s_walk_end (&walk);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    s_reply_start (self, rid, 200, 3);
    sn_pack_kv_uint (self->reply, "p", p);
    sn_pack_str (self->reply, "events");
    sn_pack_array (self->reply, count);
    sn_pack_raw (self->reply, sn_pack_data (self->items), sn_pack_size (self->items));
    sn_pack_str (self->reply, "next");
    if (next.mv_size)
        sn_pack_strn (self->reply, (char *) next.mv_data, next.mv_size);
    else
        sn_pack_nil (self->reply);
    return 0;
}

//  keygen {} -> 200 {ms, seq}: the last key this node made or stored in its own name,
//  for a generator elsewhere in the node (the mesh) to resume after.
static int
s_op_keygen (self_t *self, MDB_txn *txn, const sn_value_t *request, uint64_t rid)
{
    (void) txn;
    (void) request;
    s_reply_start (self, rid, 200, 2);
    sn_pack_str (self->reply, "ms");
    sn_pack_int (self->reply, sn_keygen_last_ms (self->keygen));
    sn_pack_kv_uint (self->reply, "seq", sn_keygen_last_seq (self->keygen));
    return 0;
}

//  health {} -> 200 {name, events, event_retention_ms, expired, expired_ignored, sweeps}
static int
s_op_health (self_t *self, MDB_txn *txn, const sn_value_t *request, uint64_t rid)
{
    MDB_stat stat;
    int rc = mdb_stat (txn, self->events, &stat);
    if (rc)
        return rc;
    s_reply_start (self, rid, 200, 6);
    sn_pack_kv_str (self->reply, "name", self->name);
    sn_pack_kv_uint (self->reply, "events", stat.ms_entries);
    sn_pack_kv_uint (self->reply, "event_retention_ms", (uint64_t) self->retention);
    sn_pack_kv_uint (self->reply, "expired", self->expired);
    sn_pack_kv_uint (self->reply, "expired_ignored", self->expired_ignored);
    sn_pack_kv_uint (self->reply, "sweeps", self->sweeps);
    return 0;
}

//  --------------------------------------------------------------------------
//  Retention sweep

//  The msgpack unsigned integer at data[*at], or -1 when there is none there.
static int64_t
s_read_uint (const byte *data, size_t size, size_t *at)
{
    if (*at >= size)
        return -1;
    byte head = data[(*at)++];
    size_t width = head < 0x80    ? 0
                   : head == 0xcc ? 1
                   : head == 0xcd ? 2
                   : head == 0xce ? 4
                   : head == 0xcf ? 8
                                  : 9;
    if (width == 9 || size - *at < width)
        return -1;
    uint64_t value = width ? 0 : head;
    for (size_t index = 0; index < width; index++)
        value = value << 8 | data[(*at)++];
    return value > INT64_MAX ? -1 : (int64_t) value;
}

//  The partition of a stored user event record, or -1 when it has none (only damage
//  does that). Read from the record's fixed prefix {type, ts, p, ...} without decoding
//  its body, which may be a megabyte.
static int64_t
s_record_p (self_t *self, const MDB_val *data)
{
    const byte *bytes = (const byte *) data->mv_data;
    size_t size = data->mv_size, at = self->user_prefix_size;
    if (size < at || size - at < 4 || memcmp (bytes + at, "\xa2ts", 3) != 0)
        return -1;
    at += 3;
    //  ts: any msgpack integer
    byte head = bytes[at++];
    size_t width = head < 0x80 || head >= 0xe0    ? 0
                   : head == 0xcc || head == 0xd0 ? 1
                   : head == 0xcd || head == 0xd1 ? 2
                   : head == 0xce || head == 0xd2 ? 4
                   : head == 0xcf || head == 0xd3 ? 8
                                                  : 9;
    if (width == 9 || size - at < width + 2)
        return -1;
    at += width;
    if (memcmp (bytes + at, "\xa1p", 2) != 0)
        return -1;
    at += 2;
    return s_read_uint (bytes, size, &at);
}

//  One pass of the sweep: from where the last one stopped, delete the user events
//  before the horizon, each with its index entry and its share of its digest bucket,
//  in one transaction. Returns true when there is more to delete at once.
static bool
s_sweep (self_t *self)
{
    char floor[SN_KEY_TIME_LEN + 1];
    sn_key_time_prefix (s_horizon (self), floor);
    MDB_val horizon = {SN_KEY_TIME_LEN, floor};
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    int rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_cursor_open (txn, self->events, &cursor);
    MDB_val key = {self->swept_len, self->swept}, data;
    if (rc == 0)
        rc = mdb_cursor_get (cursor, &key, &data, self->swept_len ? MDB_SET_RANGE : MDB_FIRST);
    size_t looked = 0, bytes = 0, waiting_count = 0;
    uint64_t deleted = 0;
    byte *waiting = NULL; //  index entries to delete from bypl: MDB_vals, then bytes
    //  Where the next pass starts: the horizon's key once every key below it is
    //  done, which the horizon never going back keeps true
    MDB_val resume = horizon;
    char resume_key[SN_KEY_MAX];
    for (; rc == 0; rc = mdb_cursor_get (cursor, &key, &data, MDB_NEXT)) {
        if (s_key_compare (&key, &horizon) >= 0)
            break;
        if (looked == S_SWEEP_LOOKS || deleted == self->sweep_deletes || bytes >= S_SWEEP_BYTES) {
            memcpy (resume_key, key.mv_data, key.mv_size);
            resume.mv_size = key.mv_size;
            resume.mv_data = resume_key;
            break;
        }
        looked++;
        if (!s_user_record (self, &data))
            continue;
        int64_t p = s_record_p (self, &data);
        if (p < 0 || p >= self->partitions) {
            zsys_error ("sn_store: %.*s: record is damaged, not expired", (int) key.mv_size,
                        (char *) key.mv_data);
            continue;
        }
        byte index[2 + SN_KEY_MAX];
        s_put_be16 (index, (uint32_t) p);
        memcpy (index + 2, key.mv_data, key.mv_size);
        MDB_val index_key = {2 + key.mv_size, index};
        s_digest_add (self, (uint32_t) p, sn_key_time ((const char *) key.mv_data, key.mv_size),
                      (const char *) key.mv_data, key.mv_size, true);
        rc = mdb_del (txn, self->byp, &index_key, NULL);
        if (rc == MDB_NOTFOUND) {
            //  Its entry waits in bypl, which is walked once after the pass
            if (!waiting)
                waiting = (byte *) malloc (self->sweep_deletes * (2 + SN_KEY_MAX) +
                                           self->sweep_deletes * sizeof (MDB_val));
            assert (waiting);
            MDB_val *list = (MDB_val *) waiting;
            byte *copy =
                waiting + self->sweep_deletes * sizeof (MDB_val) + waiting_count * (2 + SN_KEY_MAX);
            memcpy (copy, index, index_key.mv_size);
            list[waiting_count].mv_data = copy;
            list[waiting_count++].mv_size = index_key.mv_size;
            rc = 0;
        }
        //  The cursor then stands on the next record, which MDB_NEXT returns
        if (rc == 0)
            rc = mdb_cursor_del (cursor, 0);
        //  Not to MDB_NEXT after a failure, which would only report the spoilt txn
        if (rc)
            break;
        deleted++;
        bytes += data.mv_size;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (cursor)
        mdb_cursor_close (cursor);
    if (rc == 0 && waiting_count) {
        qsort (waiting, waiting_count, sizeof (MDB_val), s_index_compare);
        rc = s_index_forget (self, txn, (MDB_val *) waiting, waiting_count);
    }
    free (waiting);
    if (rc == 0 && deleted)
        rc = s_digest_flush (self, txn);
    //  The place is saved but by a pass squeezed into a full map, whose one more
    //  page may be the one there is no room for: a place saved late is only walked
    //  again
    bool save = (deleted || looked >= S_SWEEP_SAVE_LOOKS) && self->sweep_deletes == S_SWEEP_DELETES;
    if (rc == 0 && save) {
        s_swept_t swept = {0};
        swept.len = (uint32_t) resume.mv_size;
        memcpy (swept.key, resume.mv_data, resume.mv_size);
        rc = s_meta_put (txn, self->meta, "swept", &swept, sizeof swept);
    }
    if (rc == 0 && (deleted || save)) {
        rc = mdb_txn_commit (txn);
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort (txn);
    s_digest_reset (self);
    //  Deleting takes pages too, which a full map may not have: smaller passes, one
    //  event at the least, commit and so free pages that later passes reuse
    if (rc == MDB_MAP_FULL && self->sweep_deletes > 1) {
        self->sweep_deletes /= 2;
        return true;
    }
    if (rc) {
        int64_t now = zclock_mono ();
        if (!self->sweep_logged || now - self->sweep_logged >= S_SWEEP_LOG_EVERY) {
            zsys_error ("sn_store: retention sweep failed: %s", mdb_strerror (rc));
            self->sweep_logged = now;
        }
        return false;
    }
    self->sweep_deletes = S_SWEEP_DELETES;
    self->sweeps++;
    memcpy (self->swept, resume.mv_data, resume.mv_size);
    self->swept_len = resume.mv_size;
    self->expired += deleted;
    if (self->verbose && deleted)
        zsys_info ("sn_store: retention sweep deleted %" PRIu64 " events", deleted);
    return resume.mv_data == resume_key;
}

//  --------------------------------------------------------------------------
//  Batches

//  The rid of a request, or 0 when it has none we can read.
static uint64_t
s_request_rid (const s_request_t *request)
{
    uint64_t rid = 0;
    if (request->msg)
        sn_value_uint (sn_value_get (sn_msg_root (request->msg), "rid"), &rid);
    return rid;
}

static bool
s_request_writes (const s_request_t *request)
{
    if (!request->msg)
        return false;
    const sn_value_t *op = sn_value_get (sn_msg_root (request->msg), "op");
    return sn_value_streq (op, "put") || sn_value_streq (op, "bulk");
}

//  Run one request and leave its reply as the payload of request->routed. Returns non-zero only
//  for an LMDB failure, which fails the whole batch.
static int
s_request_run (self_t *self, MDB_txn *txn, s_request_t *request)
{
    sn_pack_reset (self->reply);
    const sn_value_t *root = request->msg ? sn_msg_root (request->msg) : NULL;
    const sn_value_t *op = sn_value_get (root, "op");
    uint64_t rid = 0;
    int rc = 0;
    if (!request->msg)
        s_reply_error (self, 0, 400, "%s", request->error);
    else if (!sn_value_is (root, SN_TYPE_MAP))
        s_reply_error (self, 0, 400, "request must be a map");
    else if (!sn_value_uint (sn_value_get (root, "rid"), &rid))
        s_reply_error (self, 0, 400, "rid: must be a non-negative integer");
    else if (!sn_value_is (op, SN_TYPE_STRING))
        s_reply_error (self, rid, 400, "op: must be a string");
    else if (sn_value_streq (op, "put"))
        rc = s_op_put (self, txn, root, rid);
    else if (sn_value_streq (op, "get"))
        rc = s_op_get (self, txn, root, rid);
    else if (sn_value_streq (op, "range"))
        rc = s_op_range (self, txn, root, rid);
    else if (sn_value_streq (op, "bulk"))
        rc = s_op_bulk (self, txn, root, rid);
    else if (sn_value_streq (op, "digest"))
        rc = s_op_digest (self, txn, root, rid);
    else if (sn_value_streq (op, "scan"))
        rc = s_op_scan (self, txn, root, rid);
    else if (sn_value_streq (op, "keygen"))
        rc = s_op_keygen (self, txn, root, rid);
    else if (sn_value_streq (op, "health"))
        rc = s_op_health (self, txn, root, rid);
    else {
        size_t len;
        const char *name = sn_value_str (op, &len);
        s_reply_error (self, rid, 400, "op: unknown operation '%.*s'", (int) (len > 64 ? 64 : len),
                       name);
    }
    if (rc)
        return rc;
    sn_routed_set_payload (&request->routed, sn_pack_data (self->reply),
                           sn_pack_size (self->reply));
    if (self->verbose) {
        size_t len = 0;
        const char *name = sn_value_str (op, &len);
        zsys_info ("sn_store: %.*s rid=%" PRIu64 " -> %d", (int) (len > 64 ? 64 : len),
                   name ? name : "?", rid, self->code);
    }
    return 0;
}

//  Run the batch in one transaction. Replies are sent only after the commit has
//  succeeded; when any LMDB call or the commit fails nothing of the batch is on
//  disk, so every request gets the error, reads included.
static void
s_batch_run (self_t *self, size_t count, bool writes)
{
    MDB_txn *txn = NULL;
    self->keygen_dirty = false;
    int rc = mdb_txn_begin (self->env, NULL, writes ? 0 : MDB_RDONLY, &txn);
    for (size_t index = 0; rc == 0 && index < count; index++)
        rc = s_request_run (self, txn, &self->batch[index]);
    if (rc == 0 && writes) {
        rc = s_digest_flush (self, txn);
        MDB_stat pending;
        if (rc == 0)
            rc = mdb_stat (txn, self->bypl, &pending);
        if (rc == 0 && pending.ms_entries >= S_INDEX_PENDING) {
            //  In a transaction of its own within the batch's: a move that finds no
            //  room (a nearly full map) is given up and the batch's puts still commit
            MDB_txn *move;
            rc = mdb_txn_begin (self->env, txn, 0, &move);
            if (rc == 0 && s_index_fold (self, move) == 0)
                rc = mdb_txn_commit (move);
            else if (rc == 0)
                mdb_txn_abort (move);
        }
        if (rc == 0 && self->keygen_dirty)
            rc = s_keygen_save (self, txn);
        if (rc == 0) {
            rc = mdb_txn_commit (txn); //  the fsync; frees txn even when it fails
            txn = NULL;
        }
    }
    if (txn)
        mdb_txn_abort (txn);
    s_digest_reset (self); //  counts of an aborted batch

    if (rc) {
        zsys_error ("sn_store: batch of %zu failed: %s", count, mdb_strerror (rc));
        for (size_t index = 0; index < count; index++) {
            s_request_t *request = &self->batch[index];
            if (rc == MDB_MAP_FULL)
                s_reply_error (self, s_request_rid (request), 507, "store is full");
            else
                s_reply_error (self, s_request_rid (request), 500, "store error: %s",
                               mdb_strerror (rc));
            sn_routed_set_payload (&request->routed, sn_pack_data (self->reply),
                                   sn_pack_size (self->reply));
        }
    }
    for (size_t index = 0; index < count; index++) {
        s_request_t *request = &self->batch[index];
        //  A ROUTER drops what it cannot deliver rather than block
        if (sn_routed_send (&request->routed, self->router))
            sn_routed_close (&request->routed);
        sn_msg_destroy (&request->msg);
    }
}

//  Drain what waits on the ROUTER into one batch and run it. Each message is
//  [envelope..., payload]; the envelope is kept to address the reply.
static void
s_router_drain (self_t *self)
{
    size_t count = 0, bytes = 0;
    bool writes = false;
    while (count < S_BATCH_MAX && bytes < S_BATCH_BYTES) {
        s_request_t *request = &self->batch[count];
        if (sn_routed_recv (&request->routed, self->router))
            break; //  nothing more waiting
        count++;
        request->error = NULL;
        //  Only this node's actors reach the store's inproc endpoint, and they have
        //  checked every frame with sn_msg_decode: it need not be scanned again.
        request->msg = sn_msg_decode_trusted (sn_routed_data (&request->routed),
                                              sn_routed_size (&request->routed), &request->error);
        bytes += sn_routed_size (&request->routed);
        writes = writes || s_request_writes (request);
    }
    if (count) {
        if (self->verbose)
            zsys_info ("sn_store: batch of %zu (%s)", count, writes ? "write" : "read");
        s_batch_run (self, count, writes);
    }
}

//  --------------------------------------------------------------------------
//  The actor

static void
s_pipe_command (self_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command)
        self->terminated = true; //  interrupted
    else if (streq (command, "START")) {
        char error[S_ERROR_MAX];
        zstr_send (self->pipe, s_store_start (self, error, sizeof error) ? error : "OK");
    }
    else if (streq (command, "$TERM"))
        self->terminated = true;
    else
        zsys_error ("sn_store: invalid command '%s'", command);
    zstr_free (&command);
}

void
sn_store_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new (pipe, (const sn_store_config_t *) args);
    zsock_signal (pipe, 0);
    //  The one timer is the retention sweep's: without it the store only answers, so
    //  it waits for as long as it takes.
    while (!self->terminated) {
        bool sweeping = self->retention && self->env;
        int64_t wait = self->next_sweep - zclock_mono ();
        zsock_t *which = (zsock_t *) zpoller_wait (self->poller, !sweeping  ? -1
                                                                 : wait > 0 ? (int) wait
                                                                            : 0);
        if (which == self->pipe)
            s_pipe_command (self);
        else if (which && which == self->router)
            s_router_drain (self);
        else if (zpoller_terminated (self->poller))
            break;
        //  Checked after every batch too, so that a stream of puts cannot hold it off
        if (sweeping && self->env && zclock_mono () >= self->next_sweep)
            self->next_sweep = zclock_mono () + (s_sweep (self) ? 0 : S_SWEEP_EVERY);
    }
    if (self->env)
        s_index_settle (self);
    s_self_destroy (&self);
}

zactor_t *
sn_store_new (const sn_store_config_t *config, char *error, size_t size)
{
    assert (config);
    return sn_actor_start (sn_store_actor, (void *) config, "store", error, size);
}

//  --------------------------------------------------------------------------
//  Selftest

//  The selftest checks real behaviour through its asserts in every build.
//  A store under test and a client of it.
typedef struct {
    zactor_t *store;     //  the actor
    zsock_t *dealer;     //  connected to its ROUTER
    sn_pack_t *request;  //  the request being built
    uint64_t rid;        //  last rid used
    zhashx_t *stored;    //  key -> s_test_event_t: everything the store should hold
    char *dir;           //  its data directory
    uint32_t partitions; //  its P
    bool verbose;        //  print the put rate; the store itself stays quiet
} s_test_t;

//  What the test knows about one stored event.
typedef struct {
    int64_t n;  //  the "n" of its body
    uint32_t p; //  its partition
} s_test_event_t;

static void
s_test_event_free (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

static void
s_test_remember (s_test_t *test, const char *key, int64_t n, const char *pkey)
{
    s_test_event_t *event = (s_test_event_t *) zmalloc (sizeof (s_test_event_t));
    event->n = n;
    pkey = pkey ? pkey : key;
    event->p = sn_partition (pkey, strlen (pkey), test->partitions);
    zhashx_update (test->stored, key, event);
}

static zactor_t *
s_test_open (const char *dir, uint32_t partitions, size_t map_size, char *endpoint, char *error,
             bool verbose)
{
    static int instance = 0;
    sprintf (endpoint, "inproc://sn-store-test-%d-%d", getpid (), ++instance);
    sn_store_config_t config = {0};
    config.data_dir = dir;
    config.name = "n1";
    config.partitions = partitions;
    config.map_size = map_size;
    config.endpoint = endpoint;
    config.verbose = verbose;
    return sn_store_new (&config, error, S_ERROR_MAX);
}

//  Start (or restart) the store of test and connect a fresh client.
static void
s_test_start (s_test_t *test)
{
    char endpoint[128], error[S_ERROR_MAX];
    test->store =
        s_test_open (test->dir, test->partitions, 64 * 1024 * 1024, endpoint, error, false);
    assert (test->store);
    test->dealer = zsock_new_dealer (endpoint);
    assert (test->dealer);
    zsock_set_rcvtimeo (test->dealer, 10000); //  the deadline of every wait
}

static void
s_test_stop (s_test_t *test)
{
    zsock_destroy (&test->dealer);
    zactor_destroy (&test->store);
}

//  Start a request {op, rid, ...} that has entries more entries to follow.
static uint64_t
s_test_begin (s_test_t *test, const char *op, uint32_t entries)
{
    sn_pack_reset (test->request);
    sn_pack_map (test->request, 2 + entries);
    sn_pack_kv_str (test->request, "op", op);
    sn_pack_kv_uint (test->request, "rid", ++test->rid);
    return test->rid;
}

//  The test event body {n, text}.
static void
s_test_body (sn_pack_t *pack, int64_t n, const char *text)
{
    sn_pack_map (pack, 2);
    sn_pack_str (pack, "n");
    sn_pack_int (pack, n);
    sn_pack_kv_str (pack, "text", text);
}

static void
s_test_send (s_test_t *test)
{
    zframe_t *frame = sn_pack_frame (test->request);
    int rc = zframe_send (&frame, test->dealer, 0);
    assert (rc == 0);
}

//  The next reply, decoded; asserts it came within the deadline and carries rid.
static sn_msg_t *
s_test_recv (s_test_t *test, uint64_t rid)
{
    zframe_t *frame = zframe_recv (test->dealer);
    assert (frame);
    sn_msg_t *reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    assert (reply);
    zframe_destroy (&frame);
    uint64_t got;
    assert (sn_value_uint (sn_value_get (sn_msg_root (reply), "rid"), &got));
    assert (got == rid);
    return reply;
}

static sn_msg_t *
s_test_call (s_test_t *test, uint64_t rid)
{
    s_test_send (test);
    return s_test_recv (test, rid);
}

static uint64_t
s_test_code (sn_msg_t *reply)
{
    uint64_t code = 0;
    sn_value_uint (sn_value_get (sn_msg_root (reply), "code"), &code);
    return code;
}

//  put {event {n, text}, key?, type?, pkey?}: returns the code; the key goes to key_out.
static uint64_t
s_test_put (s_test_t *test, const char *key, const char *type, const char *pkey, int64_t n,
            const char *text, char *key_out)
{
    uint64_t rid = s_test_begin (test, "put", 1 + !!key + !!type + !!pkey);
    sn_pack_str (test->request, "event");
    s_test_body (test->request, n, text);
    if (key)
        sn_pack_kv_str (test->request, "key", key);
    if (type)
        sn_pack_kv_str (test->request, "type", type);
    if (pkey)
        sn_pack_kv_str (test->request, "pkey", pkey);
    sn_msg_t *reply = s_test_call (test, rid);
    uint64_t code = s_test_code (reply);
    if (code == 201) {
        const sn_value_t *given = sn_value_get (sn_msg_root (reply), "key");
        assert (sn_value_is (given, SN_TYPE_STRING));
        if (key)
            assert (sn_value_streq (given, key));
        if (key_out) {
            char *copy = sn_value_strdup (given);
            strcpy (key_out, copy);
            free (copy);
        }
    }
    else
        assert (sn_value_is (sn_value_get (sn_msg_root (reply), "error"), SN_TYPE_STRING));
    sn_msg_destroy (&reply);
    return code;
}

//  get {key}: the reply, after checking its code.
static sn_msg_t *
s_test_get (s_test_t *test, const char *key, uint64_t expect)
{
    uint64_t rid = s_test_begin (test, "get", 1);
    sn_pack_kv_str (test->request, "key", key);
    sn_msg_t *reply = s_test_call (test, rid);
    assert (s_test_code (reply) == expect);
    return reply;
}

static void
s_test_check_error (sn_msg_t *reply, uint64_t code, const char *fragment)
{
    assert (s_test_code (reply) == code);
    char *error = sn_value_get_strdup (sn_msg_root (reply), "error");
    assert (error);
    assert (strstr (error, fragment));
    free (error);
}

//  The key another node ("t1") makes first at time ms.
static void
s_test_key (int64_t ms, char *key)
{
    sn_keygen_t *keygen = sn_keygen_new ("t1");
    sn_keygen_next (keygen, ms, key);
    sn_keygen_destroy (&keygen);
}

//  scan reads one partition in key order, filtered by type; replica writes carry
//  their partition and may hold keys in this node's name, which the generator then
//  never makes again.
static void
s_test_scan (s_test_t *test)
{
    char keys[5][SN_KEY_MAX + 1];
    for (int index = 0; index < 5; index++) {
        const char *type = index == 2 ? "task.updated" : "job.created";
        assert (s_test_put (test, NULL, type, "J1", 4000 + index, "job", keys[index]) == 201);
        s_test_remember (test, keys[index], 4000 + index, "J1");
    }
    uint32_t p = sn_partition ("J1", 2, test->partitions);
    uint64_t rid = s_test_begin (test, "scan", 3);
    sn_pack_kv_uint (test->request, "p", p);
    sn_pack_kv_str (test->request, "prefix", "job.");
    sn_pack_kv_uint (test->request, "limit", 3);
    //  limit counts the events returned: the task event between them is passed over
    sn_msg_t *reply = s_test_call (test, rid);
    assert (s_test_code (reply) == 200);
    const sn_value_t *events = sn_value_get (sn_msg_root (reply), "events");
    assert (sn_value_size (events) == 3);
    assert (sn_value_streq (sn_value_get (sn_value_at (events, 0), "key"), keys[0]));
    assert (sn_value_streq (sn_value_get (sn_value_at (events, 1), "key"), keys[1]));
    assert (sn_value_streq (sn_value_get (sn_value_at (events, 2), "key"), keys[3]));
    assert (sn_value_streq (sn_value_get (sn_value_at (events, 0), "type"), "job.created"));
    assert (sn_value_streq (sn_value_get (sn_msg_root (reply), "next"), keys[4]));
    sn_msg_destroy (&reply);

    rid = s_test_begin (test, "scan", 3);
    sn_pack_kv_uint (test->request, "p", p);
    sn_pack_kv_str (test->request, "from", keys[2]);
    sn_pack_kv_str (test->request, "to", keys[4]);
    reply = s_test_call (test, rid);
    events = sn_value_get (sn_msg_root (reply), "events");
    assert (sn_value_size (events) == 2);
    assert (sn_value_streq (sn_value_get (sn_value_at (events, 0), "type"), "task.updated"));
    assert (sn_value_is (sn_value_get (sn_msg_root (reply), "next"), SN_TYPE_NIL));
    sn_msg_destroy (&reply);

    rid = s_test_begin (test, "scan", 1);
    sn_pack_kv_uint (test->request, "p", test->partitions);
    reply = s_test_call (test, rid);
    s_test_check_error (reply, 400, "p: must be a partition");
    sn_msg_destroy (&reply);

    //  A replica write of a key in this node's name from ahead of its clock
    char own[SN_KEY_MAX + 1];
    sn_keygen_t *keygen = sn_keygen_new ("n1");
    sn_keygen_next (keygen, zclock_time () + 3600 * 1000, own);
    sn_keygen_destroy (&keygen);
    uint32_t other_p = (p + 1) % test->partitions;
    for (int replica = 0; replica < 2; replica++) {
        rid = s_test_begin (test, "put", 4 + replica);
        sn_pack_str (test->request, "event");
        s_test_body (test->request, 4100, "replicated");
        sn_pack_kv_str (test->request, "key", own);
        sn_pack_kv_str (test->request, "type", "job.created");
        sn_pack_kv_uint (test->request, "p", other_p);
        if (replica) {
            sn_pack_str (test->request, "replica");
            sn_pack_bool (test->request, true);
        }
        reply = s_test_call (test, rid);
        if (replica)
            assert (s_test_code (reply) == 201);
        else
            s_test_check_error (reply, 400, "made by this node only");
        sn_msg_destroy (&reply);
    }
    s_test_event_t *event = (s_test_event_t *) zmalloc (sizeof (s_test_event_t));
    event->n = 4100;
    event->p = other_p;
    zhashx_update (test->stored, own, event);
    reply = s_test_get (test, own, 200);
    uint64_t stored_p;
    assert (sn_value_uint (sn_value_get (sn_msg_root (reply), "p"), &stored_p));
    assert (stored_p == other_p);
    sn_msg_destroy (&reply);
    rid = s_test_begin (test, "keygen", 0);
    reply = s_test_call (test, rid);
    int64_t ms;
    assert (sn_value_int (sn_value_get (sn_msg_root (reply), "ms"), &ms));
    assert (ms == sn_key_time (own, strlen (own)));
    sn_msg_destroy (&reply);
    char key[SN_KEY_MAX + 1];
    assert (s_test_put (test, NULL, NULL, NULL, 4101, "after", key) == 201);
    assert (strcmp (key, own) > 0);
    s_test_remember (test, key, 4101, NULL);
}

static void s_test_check_digests (s_test_t *test);

//  Check that a walk of every partition, page by page, returns the events the test
//  stored there, each once and in key order.
static void
s_test_check_walks (s_test_t *test)
{
    size_t total = 0;
    for (uint32_t p = 0; p < test->partitions; p++) {
        char from[SN_KEY_MAX + 1] = "", last[SN_KEY_MAX + 1] = "";
        size_t found = 0;
        while (true) {
            uint64_t rid = s_test_begin (test, "scan", *from ? 3 : 2);
            sn_pack_kv_uint (test->request, "p", p);
            sn_pack_kv_uint (test->request, "limit", 97);
            if (*from)
                sn_pack_kv_str (test->request, "from", from);
            sn_msg_t *reply = s_test_call (test, rid);
            assert (s_test_code (reply) == 200);
            const sn_value_t *events = sn_value_get (sn_msg_root (reply), "events");
            for (size_t index = 0; index < sn_value_size (events); index++) {
                size_t len = 0;
                const char *key =
                    sn_value_str (sn_value_get (sn_value_at (events, index), "key"), &len);
                assert (key && len <= SN_KEY_MAX);
                char text[SN_KEY_MAX + 1];
                memcpy (text, key, len);
                text[len] = 0;
                assert (strcmp (text, last) > 0);
                strcpy (last, text);
                s_test_event_t *event = (s_test_event_t *) zhashx_lookup (test->stored, text);
                assert (event && event->p == p);
                found++;
            }
            size_t len = 0;
            const char *next = sn_value_str (sn_value_get (sn_msg_root (reply), "next"), &len);
            if (next) {
                assert (len <= SN_KEY_MAX);
                memcpy (from, next, len);
                from[len] = 0;
            }
            sn_msg_destroy (&reply);
            if (!next)
                break;
        }
        size_t expect = 0;
        for (s_test_event_t *event = (s_test_event_t *) zhashx_first (test->stored); event;
             event = (s_test_event_t *) zhashx_next (test->stored))
            expect += event->p == p;
        assert (found == expect);
        total += found;
    }
    assert (total == zhashx_size (test->stored));
}

//  More events than the index keeps waiting: some of a partition's entries have
//  moved into its index, the rest wait, and walks and digests see all of them.
static void
s_test_index (s_test_t *test)
{
    for (int index = 0; index < S_INDEX_PENDING + 700; index++) {
        char key[SN_KEY_MAX + 1];
        assert (s_test_put (test, NULL, NULL, NULL, 5000 + index, "indexed", key) == 201);
        s_test_remember (test, key, 5000 + index, NULL);
    }
    s_test_check_walks (test);
    s_test_check_digests (test);
}

//  Check that the digests of every partition match what the test stored.
static void
s_test_check_digests (s_test_t *test)
{
    size_t total = 0;
    for (uint32_t p = 0; p < test->partitions; p++) {
        uint64_t rid = s_test_begin (test, "digest", 1);
        sn_pack_kv_uint (test->request, "p", p);
        sn_msg_t *reply = s_test_call (test, rid);
        assert (s_test_code (reply) == 200);
        const sn_value_t *buckets = sn_value_get (sn_msg_root (reply), "buckets");
        assert (sn_value_is (buckets, SN_TYPE_ARRAY));
        uint64_t previous = 0;
        for (size_t index = 0; index < sn_value_size (buckets); index++) {
            const sn_value_t *bucket = sn_value_at (buckets, index);
            uint64_t t, count, hashes;
            assert (sn_value_uint (sn_value_get (bucket, "t"), &t));
            assert (sn_value_uint (sn_value_get (bucket, "count"), &count));
            assert (sn_value_uint (sn_value_get (bucket, "xor"), &hashes));
            assert (index == 0 || t > previous);
            assert (t % SN_STORE_BUCKET_MS == 0);
            previous = t;
            uint64_t expect_count = 0, expect_xor = 0;
            for (s_test_event_t *event = (s_test_event_t *) zhashx_first (test->stored); event;
                 event = (s_test_event_t *) zhashx_next (test->stored)) {
                const char *key = (const char *) zhashx_cursor (test->stored);
                int64_t ts = sn_key_time (key, strlen (key));
                if (event->p == p && (uint64_t) (ts - ts % SN_STORE_BUCKET_MS) == t) {
                    expect_count++;
                    expect_xor ^= sn_hash (key, strlen (key));
                }
            }
            assert (count == expect_count);
            assert (hashes == expect_xor);
            total += count;
            //  The same bucket per minute adds up to it
            uint64_t within_rid = s_test_begin (test, "digest", 2);
            sn_pack_kv_uint (test->request, "p", p);
            sn_pack_kv_uint (test->request, "within", t);
            sn_msg_t *minutes_reply = s_test_call (test, within_rid);
            assert (s_test_code (minutes_reply) == 200);
            const sn_value_t *minutes = sn_value_get (sn_msg_root (minutes_reply), "buckets");
            uint64_t minute_count = 0, minute_xor = 0, previous_minute = 0;
            for (size_t at = 0; at < sn_value_size (minutes); at++) {
                uint64_t mt, mc, mx;
                assert (sn_value_uint (sn_value_get (sn_value_at (minutes, at), "t"), &mt));
                assert (sn_value_uint (sn_value_get (sn_value_at (minutes, at), "count"), &mc));
                assert (sn_value_uint (sn_value_get (sn_value_at (minutes, at), "xor"), &mx));
                assert (mt >= t && mt < t + SN_STORE_BUCKET_MS && mt % SN_STORE_MINUTE_MS == 0);
                assert (at == 0 || mt > previous_minute);
                assert (mc > 0);
                previous_minute = mt;
                minute_count += mc;
                minute_xor ^= mx;
            }
            assert (minute_count == count && minute_xor == hashes);
            sn_msg_destroy (&minutes_reply);
        }
        sn_msg_destroy (&reply);
    }
    assert (total == zhashx_size (test->stored));
    uint64_t unaligned = s_test_begin (test, "digest", 2);
    sn_pack_kv_uint (test->request, "p", 0);
    sn_pack_kv_uint (test->request, "within", 1234);
    sn_msg_t *refused = s_test_call (test, unaligned);
    s_test_check_error (refused, 400, "within:");
    sn_msg_destroy (&refused);
    uint64_t beyond = s_test_begin (test, "digest", 2);
    sn_pack_kv_uint (test->request, "p", 0);
    sn_pack_kv_uint (test->request, "within",
                     ((uint64_t) SN_KEY_MS_MAX / SN_STORE_BUCKET_MS + 1) * SN_STORE_BUCKET_MS);
    refused = s_test_call (test, beyond);
    s_test_check_error (refused, 400, "within:");
    sn_msg_destroy (&refused);

    uint64_t rid = s_test_begin (test, "digest", 1);
    sn_pack_kv_uint (test->request, "p", test->partitions);
    sn_msg_t *reply = s_test_call (test, rid);
    s_test_check_error (reply, 400, "p:");
    sn_msg_destroy (&reply);
}

//  Check that every stored event is there with its body, and health counts them.
static void
s_test_check_stored (s_test_t *test)
{
    //  Pipelined: send every get, then read every reply in order
    uint64_t first = test->rid + 1;
    zlistx_t *keys = zhashx_keys (test->stored);
    for (const char *key = (const char *) zlistx_first (keys); key;
         key = (const char *) zlistx_next (keys)) {
        s_test_begin (test, "get", 1);
        sn_pack_kv_str (test->request, "key", key);
        s_test_send (test);
    }
    uint64_t rid = first;
    for (const char *key = (const char *) zlistx_first (keys); key;
         key = (const char *) zlistx_next (keys), rid++) {
        sn_msg_t *reply = s_test_recv (test, rid);
        assert (s_test_code (reply) == 200);
        const sn_value_t *root = sn_msg_root (reply);
        s_test_event_t *event = (s_test_event_t *) zhashx_lookup (test->stored, key);
        int64_t n, ts;
        uint64_t p;
        assert (sn_value_streq (sn_value_get (root, "key"), key));
        assert (sn_value_int (sn_value_get (sn_value_get (root, "event"), "n"), &n));
        assert (n == event->n);
        assert (sn_value_uint (sn_value_get (root, "p"), &p));
        assert (p == event->p);
        assert (sn_value_int (sn_value_get (root, "ts"), &ts));
        assert (ts == sn_key_time (key, strlen (key)));
        sn_msg_destroy (&reply);
    }
    zlistx_destroy (&keys);

    rid = s_test_begin (test, "health", 0);
    sn_msg_t *reply = s_test_call (test, rid);
    uint64_t events;
    assert (s_test_code (reply) == 200);
    assert (sn_value_streq (sn_value_get (sn_msg_root (reply), "name"), "n1"));
    assert (sn_value_uint (sn_value_get (sn_msg_root (reply), "events"), &events));
    assert (events == zhashx_size (test->stored));
    sn_msg_destroy (&reply);
}

//  The largest key this node ("n1") made among those stored.
static void
s_test_last_own_key (s_test_t *test, char *last)
{
    last[0] = 0;
    zlistx_t *keys = zhashx_keys (test->stored);
    for (const char *key = (const char *) zlistx_first (keys); key;
         key = (const char *) zlistx_next (keys)) {
        size_t len = strlen (key);
        if (len > 3 && streq (key + len - 3, "-n1") && strcmp (key, last) > 0)
            strcpy (last, key);
    }
    zlistx_destroy (&keys);
}

//  Index entries waiting in the bypl of the store in dir, which is not running.
static size_t
s_test_waiting (const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi bypl;
    MDB_stat stat;
    int rc = mdb_env_create (&env);
    assert (rc == 0);
    mdb_env_set_maxdbs (env, 5);
    rc = mdb_env_open (env, dir, MDB_NOTLS, 0644);
    assert (rc == 0);
    rc = mdb_txn_begin (env, NULL, MDB_RDONLY, &txn);
    assert (rc == 0);
    rc = mdb_dbi_open (txn, "bypl", 0, &bypl);
    assert (rc == 0);
    rc = mdb_stat (txn, bypl, &stat);
    assert (rc == 0);
    mdb_txn_abort (txn);
    mdb_env_close (env);
    return stat.ms_entries;
}

//  Read (returns whether it is there) or overwrite the meta value name in a store
//  that is not running.
static bool
s_test_meta (const char *dir, const char *name, void *value, size_t size, bool write)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta;
    bool found = true;
    int rc = mdb_env_create (&env);
    assert (rc == 0);
    mdb_env_set_maxdbs (env, 5);
    rc = mdb_env_open (env, dir, MDB_NOTLS, 0644);
    assert (rc == 0);
    rc = mdb_txn_begin (env, NULL, 0, &txn);
    assert (rc == 0);
    rc = mdb_dbi_open (txn, "meta", 0, &meta);
    assert (rc == 0);
    if (write)
        rc = s_meta_put (txn, meta, name, value, size);
    else
        rc = s_meta_get (txn, meta, name, value, size, &found);
    assert (rc == 0);
    rc = mdb_txn_commit (txn);
    assert (rc == 0);
    mdb_env_close (env);
    return found;
}

//  Read or overwrite the key generator's place in a store that is not running.
static void
s_test_keygen_state (const char *dir, s_keygen_state_t *state, bool write)
{
    bool found = s_test_meta (dir, "keygen", state, sizeof *state, write);
    assert (found);
}

static void
s_test_remove_store (const char *dir)
{
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/data.mdb", dir);
    zsys_file_delete (path);
    snprintf (path, sizeof path, "%s/lock.mdb", dir);
    zsys_file_delete (path);
    zsys_dir_delete ("%s", dir);
}

static void
s_test_basics (s_test_t *test)
{
    //  put without key: a new key of this node
    char key[SN_KEY_MAX + 1], given[SN_KEY_MAX + 1];
    assert (s_test_put (test, NULL, NULL, NULL, 1, "first", key) == 201);
    assert (strlen (key) == SN_KEY_TIME_LEN + 3);
    assert (streq (key + SN_KEY_TIME_LEN, "-n1"));
    int64_t ts = sn_key_time (key, strlen (key));
    assert (ts >= 0 && llabs (ts - zclock_time ()) < 60000);
    s_test_remember (test, key, 1, NULL);

    //  get returns the same body, type, time and partition
    sn_msg_t *reply = s_test_get (test, key, 200);
    const sn_value_t *root = sn_msg_root (reply);
    int64_t got_ts;
    uint64_t got_p;
    assert (sn_value_streq (sn_value_get (root, "key"), key));
    assert (sn_value_streq (sn_value_get (root, "type"), "event"));
    assert (sn_value_int (sn_value_get (root, "ts"), &got_ts) && got_ts == ts);
    assert (sn_value_uint (sn_value_get (root, "p"), &got_p));
    assert (got_p == sn_partition (key, strlen (key), test->partitions));
    sn_pack_t *body = sn_pack_new ();
    s_test_body (body, 1, "first");
    sn_msg_t *expect = sn_msg_decode (sn_pack_data (body), sn_pack_size (body), 0, NULL);
    assert (sn_value_equal (sn_value_get (root, "event"), sn_msg_root (expect)));
    sn_msg_destroy (&expect);
    sn_pack_destroy (&body);
    sn_msg_destroy (&reply);

    //  put with key: written once; the same again is fine, different content is not
    s_test_key (1893456000000LL, given); //  2030-01-01
    assert (s_test_put (test, given, NULL, NULL, 2, "given", NULL) == 201);
    assert (s_test_put (test, given, NULL, NULL, 2, "given", NULL) == 201);
    assert (s_test_put (test, given, NULL, NULL, 2, "changed", NULL) == 409);
    assert (s_test_put (test, given, "job.created", NULL, 2, "given", NULL) == 409);
    s_test_remember (test, given, 2, NULL);
    reply = s_test_get (test, given, 200);
    assert (sn_value_streq (sn_value_get (sn_value_get (sn_msg_root (reply), "event"), "text"),
                            "given"));
    sn_msg_destroy (&reply);

    uint64_t rid = s_test_begin (test, "put", 2);
    sn_pack_str (test->request, "event");
    s_test_body (test->request, 3, "conflict");
    sn_pack_kv_str (test->request, "key", given);
    reply = s_test_call (test, rid);
    s_test_check_error (reply, 409, "already holds a different event");
    sn_msg_destroy (&reply);

    //  Keys a client gives must be supernode keys
    const char *bad_keys[] = {"bad", "20300101T000000000000000000-", "20301301T000000000000000000",
                              "20300101T000000000000000000-a b", ""};
    for (size_t index = 0; index < sizeof bad_keys / sizeof *bad_keys; index++) {
        rid = s_test_begin (test, "put", 2);
        sn_pack_str (test->request, "event");
        s_test_body (test->request, 4, "bad key");
        sn_pack_kv_str (test->request, "key", bad_keys[index]);
        reply = s_test_call (test, rid);
        s_test_check_error (reply, 400, "key: not a supernode key");
        sn_msg_destroy (&reply);
    }
    rid = s_test_begin (test, "put", 2);
    sn_pack_str (test->request, "event");
    s_test_body (test->request, 4, "key not a string");
    sn_pack_kv_uint (test->request, "key", 42);
    reply = s_test_call (test, rid);
    s_test_check_error (reply, 400, "key: not a supernode key");
    sn_msg_destroy (&reply);

    //  The event must be an object; type and pkey must be sensible strings
    rid = s_test_begin (test, "put", 1);
    sn_pack_kv_str (test->request, "event", "not an object");
    reply = s_test_call (test, rid);
    s_test_check_error (reply, 400, "event:");
    sn_msg_destroy (&reply);
    assert (s_test_put (test, NULL, "", NULL, 5, "empty type", NULL) == 400);
    assert (s_test_put (test, NULL, NULL, "", 5, "empty pkey", NULL) == 400);

    //  An internal event is partitioned by its pkey and keeps its type
    s_test_key (1893456001000LL, given);
    assert (s_test_put (test, given, "job.created", "job-1", 6, "job", NULL) == 201);
    s_test_remember (test, given, 6, "job-1");
    reply = s_test_get (test, given, 200);
    assert (sn_value_streq (sn_value_get (sn_msg_root (reply), "type"), "job.created"));
    assert (sn_value_uint (sn_value_get (sn_msg_root (reply), "p"), &got_p));
    assert (got_p == sn_partition ("job-1", 5, test->partitions));
    sn_msg_destroy (&reply);

    //  get of what is not there, and of what cannot be a key
    reply = s_test_get (test, "20300101T000000000000000099-n9", 404);
    s_test_check_error (reply, 404, "not found");
    sn_msg_destroy (&reply);
    reply = s_test_get (test, "", 400);
    sn_msg_destroy (&reply);
    rid = s_test_begin (test, "get", 1);
    sn_pack_kv_uint (test->request, "key", 7);
    reply = s_test_call (test, rid);
    s_test_check_error (reply, 400, "key:");
    sn_msg_destroy (&reply);
}

//  One page of range: checks its events against expected keys starting at *index,
//  advances *index and copies next (empty when nil).
static void
s_test_range_page (s_test_t *test, const char *from, const char *to, uint64_t limit,
                   char keys[][SN_KEY_MAX + 1], size_t *index, char *next)
{
    uint64_t rid = s_test_begin (test, "range", 1 + !!from + !!limit);
    sn_pack_kv_str (test->request, "to", to);
    if (from)
        sn_pack_kv_str (test->request, "from", from);
    if (limit)
        sn_pack_kv_uint (test->request, "limit", limit);
    sn_msg_t *reply = s_test_call (test, rid);
    assert (s_test_code (reply) == 200);
    const sn_value_t *events = sn_value_get (sn_msg_root (reply), "events");
    assert (sn_value_is (events, SN_TYPE_ARRAY));
    assert (!limit || sn_value_size (events) <= limit);
    for (size_t item = 0; item < sn_value_size (events); item++) {
        const sn_value_t *event = sn_value_at (events, item);
        assert (sn_value_streq (sn_value_get (event, "key"), keys[*index]));
        int64_t n;
        assert (sn_value_int (sn_value_get (sn_value_get (event, "event"), "n"), &n));
        assert (n == (int64_t) (1000 + *index));
        (*index)++;
    }
    const sn_value_t *next_value = sn_value_get (sn_msg_root (reply), "next");
    next[0] = 0;
    if (!sn_value_is (next_value, SN_TYPE_NIL)) {
        char *copy = sn_value_strdup (next_value);
        assert (copy);
        strcpy (next, copy);
        free (copy);
    }
    sn_msg_destroy (&reply);
}

static void
s_test_range (s_test_t *test)
{
    //  25 user events in 2031, with internal events between them
    char keys[25][SN_KEY_MAX + 1], key[SN_KEY_MAX + 1], from[SN_KEY_MAX + 1], to[SN_KEY_MAX + 1],
        next[SN_KEY_MAX + 1];
    int64_t base = 1924992000000LL; //  2031-01-01
    s_test_key (base - 1, from);
    for (size_t index = 0; index < 25; index++) {
        s_test_key (base + (int64_t) index * 1000, keys[index]);
        assert (s_test_put (test, keys[index], NULL, NULL, (int64_t) (1000 + index), "ranged",
                            NULL) == 201);
        s_test_remember (test, keys[index], (int64_t) (1000 + index), NULL);
        s_test_key (base + (int64_t) index * 1000 + 500, key);
        assert (s_test_put (test, key, "task.updated", "job-2", 0, "internal", NULL) == 201);
        s_test_remember (test, key, 0, "job-2");
    }
    s_test_key (base + 25 * 1000, to);

    //  Pages of 10, 10 and 5; the last one ends at to with next nil
    size_t index = 0, pages = 0;
    strcpy (next, from);
    do {
        char page_from[SN_KEY_MAX + 1];
        strcpy (page_from, next);
        s_test_range_page (test, page_from, to, 10, keys, &index, next);
        pages++;
        assert (pages <= 5);
    } while (*next);
    assert (index == 25);
    assert (pages == 3);

    //  A limit above the largest is capped, not refused
    index = 0;
    s_test_range_page (test, keys[0], to, 5000, keys, &index, next);
    assert (index == 25 && !*next);

    //  An empty window
    index = 0;
    s_test_range_page (test, to, from, 10, keys, &index, next);
    assert (index == 0 && !*next);

    //  Without bounds: from the first key on, in key order
    uint64_t rid = s_test_begin (test, "range", 1);
    sn_pack_kv_uint (test->request, "limit", 2);
    sn_msg_t *reply = s_test_call (test, rid);
    const sn_value_t *events = sn_value_get (sn_msg_root (reply), "events");
    size_t first_len, second_len;
    const char *first = sn_value_str (sn_value_get (sn_value_at (events, 0), "key"), &first_len);
    const char *second = sn_value_str (sn_value_get (sn_value_at (events, 1), "key"), &second_len);
    assert (sn_value_size (events) == 2 && first && second);
    assert (memcmp (first, second, first_len) < 0);
    assert (sn_value_is (sn_value_get (sn_msg_root (reply), "next"), SN_TYPE_STRING));
    sn_msg_destroy (&reply);

    //  Bad limits and bounds
    rid = s_test_begin (test, "range", 1);
    sn_pack_kv_uint (test->request, "limit", 0);
    reply = s_test_call (test, rid);
    s_test_check_error (reply, 400, "limit:");
    sn_msg_destroy (&reply);
    rid = s_test_begin (test, "range", 1);
    sn_pack_kv_str (test->request, "from", "x");
    reply = s_test_call (test, rid);
    assert (s_test_code (reply) == 200); //  any string is a valid bound
    sn_msg_destroy (&reply);
    rid = s_test_begin (test, "range", 1);
    sn_pack_kv_uint (test->request, "to", 3);
    reply = s_test_call (test, rid);
    s_test_check_error (reply, 400, "to:");
    sn_msg_destroy (&reply);

    //  150 internal events, then one user event: a range with limit 1 scans at most
    //  110 records per page, so it pages over them with empty pages and next set
    int64_t later = 1956528000000LL; //  2032-01-01
    char start[SN_KEY_MAX + 1], end[SN_KEY_MAX + 1], last[1][SN_KEY_MAX + 1];
    s_test_key (later - 1, start);
    rid = s_test_begin (test, "bulk", 1);
    sn_pack_str (test->request, "puts");
    sn_pack_array (test->request, 150);
    for (int item = 0; item < 150; item++) {
        s_test_key (later + item, key);
        sn_pack_map (test->request, 4);
        sn_pack_str (test->request, "event");
        s_test_body (test->request, 0, "internal");
        sn_pack_kv_str (test->request, "key", key);
        sn_pack_kv_str (test->request, "type", "invocation.done");
        sn_pack_kv_str (test->request, "pkey", "bucket-1");
        s_test_remember (test, key, 0, "bucket-1");
    }
    reply = s_test_call (test, rid);
    assert (s_test_code (reply) == 200);
    sn_msg_destroy (&reply);
    s_test_key (later + 150, last[0]);
    assert (s_test_put (test, last[0], NULL, NULL, 1000, "after", NULL) == 201);
    s_test_remember (test, last[0], 1000, NULL);
    s_test_key (later + 151, end);

    index = 0;
    s_test_range_page (test, start, end, 1, last, &index, next);
    assert (index == 0 && *next);
    s_test_key (later + 110, key); //  the first record not scanned
    assert (streq (next, key));
    pages = 1;
    while (*next) {
        char page_from[SN_KEY_MAX + 1];
        strcpy (page_from, next);
        s_test_range_page (test, page_from, end, 1, last, &index, next);
        pages++;
        assert (pages <= 3);
    }
    assert (index == 1);
}

static void
s_test_bulk (s_test_t *test)
{
    char fresh[SN_KEY_MAX + 1];
    s_test_key (1893456002000LL, fresh);
    uint64_t rid = s_test_begin (test, "bulk", 1);
    sn_pack_str (test->request, "puts");
    sn_pack_array (test->request, 7);
    //  0: new with key; 1: new without key; 2: conflicts with 0; 3: repeats 0;
    //  4: event not an object; 5: bad key; 6: not even a map
    sn_pack_map (test->request, 2);
    sn_pack_str (test->request, "event");
    s_test_body (test->request, 10, "bulk");
    sn_pack_kv_str (test->request, "key", fresh);
    sn_pack_map (test->request, 1);
    sn_pack_str (test->request, "event");
    s_test_body (test->request, 11, "bulk");
    sn_pack_map (test->request, 2);
    sn_pack_str (test->request, "event");
    s_test_body (test->request, 12, "bulk");
    sn_pack_kv_str (test->request, "key", fresh);
    sn_pack_map (test->request, 2);
    sn_pack_str (test->request, "event");
    s_test_body (test->request, 10, "bulk");
    sn_pack_kv_str (test->request, "key", fresh);
    sn_pack_map (test->request, 1);
    sn_pack_kv_uint (test->request, "event", 13);
    sn_pack_map (test->request, 2);
    sn_pack_str (test->request, "event");
    s_test_body (test->request, 14, "bulk");
    sn_pack_kv_str (test->request, "key", "19991301T000000000000000000");
    sn_pack_uint (test->request, 15);
    sn_msg_t *reply = s_test_call (test, rid);
    assert (s_test_code (reply) == 200);
    const sn_value_t *results = sn_value_get (sn_msg_root (reply), "results");
    assert (sn_value_size (results) == 7);
    const uint64_t codes[] = {201, 201, 409, 201, 400, 400, 400};
    for (size_t index = 0; index < 7; index++) {
        const sn_value_t *result = sn_value_at (results, index);
        uint64_t code;
        assert (sn_value_uint (sn_value_get (result, "code"), &code));
        assert (code == codes[index]);
        if (code == 201)
            assert (sn_value_is (sn_value_get (result, "key"), SN_TYPE_STRING));
        else
            assert (sn_value_is (sn_value_get (result, "error"), SN_TYPE_STRING));
    }
    assert (sn_value_streq (sn_value_get (sn_value_at (results, 0), "key"), fresh));
    char *made = sn_value_get_strdup (sn_value_at (results, 1), "key");
    assert (sn_key_time (made, strlen (made)) >= 0);
    s_test_remember (test, fresh, 10, NULL);
    s_test_remember (test, made, 11, NULL);
    free (made);
    sn_msg_destroy (&reply);

    //  puts must be an array
    rid = s_test_begin (test, "bulk", 1);
    sn_pack_kv_str (test->request, "puts", "many");
    reply = s_test_call (test, rid);
    s_test_check_error (reply, 400, "puts:");
    sn_msg_destroy (&reply);
}

//  Payloads that are not requests get a 400, and the store serves on.
static void
s_test_garbage (s_test_t *test)
{
    struct {
        const char *data;
        size_t size;
        uint64_t rid;
        const char *error;
    } cases[] = {
#define S_CASE(bytes, rid, error) {bytes, sizeof (bytes) - 1, rid, error}
        S_CASE ("\xc1garbage", 0, ""),           //  not msgpack
        S_CASE ("\x92\x01\x02", 0, "map"),       //  an array
        S_CASE ("\x81\xa3rid\x07", 7, "op:"),    //  no op
        S_CASE ("\x81\xa2op\xa3get", 0, "rid:"), //  no rid
        S_CASE ("\x82\xa2op\xa4nope\xa3rid\x08", 8, "unknown operation 'nope'"),
        S_CASE ("\x82\xa2op\x05\xa3rid\x09", 9, "op:"),
        S_CASE ("\x82\xa2op\xa3get\xa3rid\xff", 0, "rid:"), //  a negative rid
        S_CASE ("", 0, ""),                                 //  an empty frame
#undef S_CASE
    };
    for (size_t index = 0; index < sizeof cases / sizeof *cases; index++) {
        zframe_t *frame = zframe_new (cases[index].data, cases[index].size);
        int rc = zframe_send (&frame, test->dealer, 0);
        assert (rc == 0);
        sn_msg_t *reply = s_test_recv (test, cases[index].rid);
        s_test_check_error (reply, 400, cases[index].error);
        sn_msg_destroy (&reply);
    }
    //  A request with an envelope of its own (an empty delimiter, as REQ sends) gets
    //  that envelope back
    uint64_t rid = s_test_begin (test, "health", 0);
    zmsg_t *msg = zmsg_new ();
    zmsg_addmem (msg, NULL, 0);
    zframe_t *payload = sn_pack_frame (test->request);
    zmsg_append (msg, &payload);
    int rc = zmsg_send (&msg, test->dealer);
    assert (rc == 0);
    msg = zmsg_recv (test->dealer);
    assert (msg && zmsg_size (msg) == 2);
    zframe_t *delimiter = zmsg_pop (msg);
    assert (zframe_size (delimiter) == 0);
    zframe_destroy (&delimiter);
    zframe_t *frame = zmsg_pop (msg);
    sn_msg_t *reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    uint64_t got;
    assert (reply && sn_value_uint (sn_value_get (sn_msg_root (reply), "rid"), &got));
    assert (got == rid && s_test_code (reply) == 200);
    sn_msg_destroy (&reply);
    zframe_destroy (&frame);
    zmsg_destroy (&msg);
}

//  1000 puts sent back to back, then 1000 replies: each rid answered exactly once.
static void
s_test_pipelined (s_test_t *test)
{
    const size_t count = 1000;
    uint64_t first = test->rid + 1;
    int64_t started = zclock_usecs ();
    for (size_t index = 0; index < count; index++) {
        s_test_begin (test, "put", 1);
        sn_pack_str (test->request, "event");
        s_test_body (test->request, (int64_t) (2000 + index), "pipelined");
        s_test_send (test);
    }
    byte *answered = (byte *) zmalloc (count);
    char previous[SN_KEY_MAX + 1] = "";
    for (size_t index = 0; index < count; index++) {
        zframe_t *frame = zframe_recv (test->dealer);
        assert (frame);
        sn_msg_t *reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
        assert (reply);
        zframe_destroy (&frame);
        uint64_t rid;
        assert (sn_value_uint (sn_value_get (sn_msg_root (reply), "rid"), &rid));
        assert (rid >= first && rid < first + count);
        assert (!answered[rid - first]);
        answered[rid - first] = 1;
        assert (s_test_code (reply) == 201);
        char *key = sn_value_get_strdup (sn_msg_root (reply), "key");
        assert (key && strcmp (key, previous) > 0); //  made in order
        strcpy (previous, key);
        s_test_remember (test, key, (int64_t) (2000 + rid - first), NULL);
        free (key);
        sn_msg_destroy (&reply);
    }
    int64_t elapsed = zclock_usecs () - started;
    free (answered);
    if (test->verbose)
        zsys_info ("sn_store: %zu pipelined puts in %.1f ms: %.0f puts/s", count, elapsed / 1000.0,
                   count * 1e6 / (elapsed ? elapsed : 1));
}

//  A store too small for what is put into it answers 507 and keeps serving.
static void
s_test_full (const char *base, bool verbose)
{
    s_test_t test = {0};
    test.dir = zsys_sprintf ("%s/full", base);
    test.partitions = 4;
    test.request = sn_pack_new ();
    char endpoint[128], error[S_ERROR_MAX];
    test.store = s_test_open (test.dir, 4, 1024 * 1024, endpoint, error, verbose);
    assert (test.store);
    test.dealer = zsock_new_dealer (endpoint);
    zsock_set_rcvtimeo (test.dealer, 10000);

    char *text = (char *) zmalloc (400 * 1024);
    memset (text, 'x', 400 * 1024 - 1);
    char key[SN_KEY_MAX + 1] = "";
    uint64_t code = 201;
    int puts;
    for (puts = 0; puts < 10 && code == 201; puts++)
        code = s_test_put (&test, NULL, NULL, NULL, puts, text, puts ? NULL : key);
    assert (code == 507);
    assert (puts > 1);
    free (text);

    uint64_t rid = s_test_begin (&test, "put", 1);
    sn_pack_str (test.request, "event");
    sn_pack_map (test.request, 1);
    sn_pack_kv_str (test.request, "big", "not so big");
    sn_msg_t *reply = s_test_call (&test, rid);
    assert (s_test_code (reply) == 201 || s_test_code (reply) == 507);
    sn_msg_destroy (&reply);
    reply = s_test_get (&test, key, 200);
    sn_msg_destroy (&reply);

    zsock_destroy (&test.dealer);
    zactor_destroy (&test.store);
    sn_pack_destroy (&test.request);
    s_test_remove_store (test.dir);
    zstr_free (&test.dir);
}

//  Open the store of test with a retention and connect a fresh client.
static void
s_test_retention_open (s_test_t *test, int64_t retention, size_t map_size)
{
    static int instance = 0;
    char endpoint[128], error[S_ERROR_MAX];
    snprintf (endpoint, sizeof endpoint, "inproc://sn-store-retention-%d-%d", getpid (),
              ++instance);
    sn_store_config_t config = {0};
    config.data_dir = test->dir;
    config.name = "n1";
    config.partitions = test->partitions;
    config.endpoint = endpoint;
    config.map_size = map_size;
    config.event_retention_ms = retention;
    test->store = sn_store_new (&config, error, sizeof error);
    assert (test->store);
    test->dealer = zsock_new_dealer (endpoint);
    assert (test->dealer);
    zsock_set_rcvtimeo (test->dealer, 10000);
}

//  One number of the store's health.
static uint64_t
s_test_health (s_test_t *test, const char *name)
{
    uint64_t rid = s_test_begin (test, "health", 0);
    sn_msg_t *reply = s_test_call (test, rid);
    uint64_t value = UINT64_MAX;
    assert (sn_value_uint (sn_value_get (sn_msg_root (reply), name), &value));
    sn_msg_destroy (&reply);
    return value;
}

//  A write of one event under key, as a replica's copy or a client's.
static uint64_t
s_test_put_as (s_test_t *test, const char *key, const char *type, bool replica)
{
    uint64_t rid = s_test_begin (test, "put", 2 + !!type + replica);
    sn_pack_str (test->request, "event");
    s_test_body (test->request, 7000, "late");
    sn_pack_kv_str (test->request, "key", key);
    if (type)
        sn_pack_kv_str (test->request, "type", type);
    if (replica) {
        sn_pack_str (test->request, "replica");
        sn_pack_bool (test->request, true);
    }
    sn_msg_t *reply = s_test_call (test, rid);
    uint64_t code = s_test_code (reply);
    if (code == 422)
        s_test_check_error (reply, 422, "older than the event retention (3600000 ms)");
    sn_msg_destroy (&reply);
    return code;
}

//  A store restarted with a retention deletes the user events older than it, in
//  passes of at most S_SWEEP_DELETES, keeps its digests equal to what it holds and
//  every internal event, refuses old keys from clients and acknowledges replicas'
//  copies of expired events without storing them.
static void s_test_index_agrees (s_test_t *test, const char *key);

static void
s_test_retention (const char *base, bool verbose)
{
    s_test_t test = {0};
    test.dir = zsys_sprintf ("%s/retention", base);
    test.partitions = 16;
    test.request = sn_pack_new ();
    test.stored = zhashx_new ();
    zhashx_set_destructor (test.stored, s_test_event_free);
    test.verbose = verbose;
    s_test_retention_open (&test, 0, 64 * 1024 * 1024);

    //  Two hours ago: 4,500 user events with 60 internal ones among them (at even and
    //  odd ms: keys of one ms would be the same); a minute
    //  ago: 10 user events
    const int old_count = 4500, internal_count = 60, recent_count = 10;
    int64_t now = zclock_time ();
    int64_t old = now - 2 * 3600 * 1000;
    char key[SN_KEY_MAX + 1], first_old[SN_KEY_MAX + 1] = "", internal_key[SN_KEY_MAX + 1];
    zlistx_t *expired = zlistx_new ();
    zlistx_set_destructor (expired, (zlistx_destructor_fn *) zstr_free);
    uint64_t rid = s_test_begin (&test, "bulk", 1);
    sn_pack_str (test.request, "puts");
    sn_pack_array (test.request, (uint32_t) (old_count + internal_count + recent_count));
    for (int index = 0; index < old_count + internal_count + recent_count; index++) {
        bool internal = index >= old_count && index < old_count + internal_count;
        bool recent = index >= old_count + internal_count;
        int64_t at = recent     ? now - 60000 + index
                     : internal ? old + (index - old_count) * 140 + 1
                                : old + 2 * index;
        s_test_key (at, key);
        sn_pack_map (test.request, internal ? 4 : 2);
        sn_pack_str (test.request, "event");
        s_test_body (test.request, index, "retention");
        sn_pack_kv_str (test.request, "key", key);
        if (internal) {
            sn_pack_kv_str (test.request, "type", "job.created");
            sn_pack_kv_str (test.request, "pkey", "J9");
            strcpy (internal_key, key);
        }
        s_test_remember (&test, key, index, internal ? "J9" : NULL);
        if (!internal && !recent)
            zlistx_add_end (expired, strdup (key));
        if (index == 0)
            strcpy (first_old, key);
    }
    sn_msg_t *reply = s_test_call (&test, rid);
    assert (s_test_code (reply) == 200);
    const sn_value_t *results = sn_value_get (sn_msg_root (reply), "results");
    for (size_t index = 0; index < sn_value_size (results); index++) {
        uint64_t code = 0;
        assert (sn_value_uint (sn_value_get (sn_value_at (results, index), "code"), &code));
        assert (code == 201);
    }
    sn_msg_destroy (&reply);
    assert (s_test_health (&test, "event_retention_ms") == 0);
    s_test_check_digests (&test);
    s_test_stop (&test);

    //  With an hour's retention the sweep deletes the old user events, in passes
    s_test_retention_open (&test, 3600 * 1000, 64 * 1024 * 1024);
    assert (s_test_health (&test, "event_retention_ms") == 3600 * 1000);
    int64_t deadline = zclock_mono () + 10000;
    while (s_test_health (&test, "expired") < (uint64_t) old_count) {
        assert (zclock_mono () < deadline);
        zclock_sleep (10);
    }
    assert (s_test_health (&test, "expired") == (uint64_t) old_count);
    for (const char *gone = (const char *) zlistx_first (expired); gone;
         gone = (const char *) zlistx_next (expired))
        zhashx_delete (test.stored, gone);
    s_test_check_stored (&test);  //  internal and recent ones, and health's count
    s_test_check_digests (&test); //  against what is stored now
    reply = s_test_get (&test, first_old, 404);
    sn_msg_destroy (&reply);

    //  A range from the start holds the recent user events only
    rid = s_test_begin (&test, "range", 1);
    sn_pack_kv_uint (test.request, "limit", 1000);
    reply = s_test_call (&test, rid);
    const sn_value_t *events = sn_value_get (sn_msg_root (reply), "events");
    assert (sn_value_size (events) == (size_t) recent_count);
    sn_msg_destroy (&reply);

    //  An old key from a client is refused; a replica's copy of an expired user event
    //  is acknowledged and not stored; old internal events are stored as ever
    s_test_key (old + 5000, key);
    assert (s_test_put_as (&test, key, NULL, false) == 422);
    assert (s_test_put_as (&test, key, "event", false) == 422);
    assert (s_test_put_as (&test, key, NULL, true) == 201);
    assert (s_test_health (&test, "expired_ignored") == 1);
    reply = s_test_get (&test, key, 404);
    sn_msg_destroy (&reply);
    s_test_key (old + 5001, key);
    assert (s_test_put_as (&test, key, "job.updated", false) == 201);
    s_test_event_t *event = (s_test_event_t *) zmalloc (sizeof (s_test_event_t));
    event->n = 7000;
    event->p = sn_partition (key, strlen (key), test.partitions);
    zhashx_update (test.stored, key, event);
    s_test_key (now - 1000, key);
    assert (s_test_put_as (&test, key, NULL, false) == 201); //  within the retention
    s_test_remember (&test, key, 7000, NULL);
    s_test_check_stored (&test);
    s_test_check_digests (&test);
    reply = s_test_get (&test, internal_key, 200);
    sn_msg_destroy (&reply);

    s_test_stop (&test);

    //  After a restart the sweep finds nothing more to delete; it goes on from the
    //  place it saved, past the old internal events, not from the first key
    s_swept_t swept = {0};
    assert (s_test_meta (test.dir, "swept", &swept, sizeof swept, false));
    assert (swept.len > 0 && swept.len <= SN_KEY_MAX);
    assert (memcmp (swept.key, internal_key, strlen (internal_key)) > 0);
    s_test_retention_open (&test, 3600 * 1000, 64 * 1024 * 1024);
    s_test_check_stored (&test);
    s_test_check_digests (&test);
    assert (s_test_health (&test, "expired") == 0);
    s_test_stop (&test);

    //  A place saved ahead of the horizon (a clock that was ahead, a longer
    //  retention now) is moved back to it at start, and saved there at once: a key
    //  taken within the retention is deleted once it expires, even after a crash
    //  before the sweep saved its place again
    s_test_key (zclock_time () + 24 * 3600 * 1000, key);
    swept.len = (uint32_t) strlen (key);
    memcpy (swept.key, key, swept.len);
    s_test_meta (test.dir, "swept", &swept, sizeof swept, true);
    s_test_retention_open (&test, 3600 * 1000, 64 * 1024 * 1024);
    s_test_stop (&test);
    assert (s_test_meta (test.dir, "swept", &swept, sizeof swept, false));
    s_test_key (zclock_time () - 3600 * 1000 + 1000, key);
    assert (memcmp (swept.key, key, SN_KEY_TIME_LEN) < 0);
    s_test_retention_open (&test, 3600 * 1000, 64 * 1024 * 1024);
    s_test_key (zclock_time () - 3600 * 1000 + 1500, key);
    assert (s_test_put_as (&test, key, NULL, false) == 201);
    deadline = zclock_mono () + 15000;
    while (s_test_health (&test, "expired") < 1) {
        assert (zclock_mono () < deadline);
        zclock_sleep (50);
    }
    reply = s_test_get (&test, key, 404);
    sn_msg_destroy (&reply);
    //  Its index entry, still waiting in bypl, went with it: the hour's index walk
    //  counts what its digest counts
    s_test_index_agrees (&test, key);
    s_test_stop (&test);
    assert (s_test_meta (test.dir, "swept", &swept, sizeof swept, false));
    assert (memcmp (swept.key, key, SN_KEY_TIME_LEN) > 0);

    //  Without a retention the place is forgotten: keys of any age may come then
    s_test_retention_open (&test, 0, 64 * 1024 * 1024);
    s_test_stop (&test);
    assert (!s_test_meta (test.dir, "swept", &swept, sizeof swept, false));

    zlistx_destroy (&expired);
    s_test_remove_store (test.dir);
    zstr_free (&test.dir);
    zhashx_destroy (&test.stored);
    sn_pack_destroy (&test.request);
}

//  After a restart the sweep goes on from the place it saved: user events below it
//  count as deleted already and are not walked again.
static void
s_test_retention_place (const char *base, bool verbose)
{
    s_test_t test = {0};
    test.dir = zsys_sprintf ("%s/retention-place", base);
    test.partitions = 4;
    test.request = sn_pack_new ();
    test.verbose = verbose;
    s_test_retention_open (&test, 0, 64 * 1024 * 1024);
    int64_t old = zclock_time () - 2 * 3600 * 1000;
    char key[SN_KEY_MAX + 1];
    for (int index = 0; index < 3; index++) {
        s_test_key (old + 10 * index, key);
        assert (s_test_put (&test, key, NULL, NULL, index, "old", NULL) == 201);
    }
    s_test_stop (&test);
    s_test_key (old + 10, key);
    s_swept_t swept = {0};
    swept.len = (uint32_t) strlen (key);
    memcpy (swept.key, key, swept.len);
    s_test_meta (test.dir, "swept", &swept, sizeof swept, true);

    s_test_retention_open (&test, 3600 * 1000, 64 * 1024 * 1024);
    int64_t deadline = zclock_mono () + 10000;
    while (s_test_health (&test, "expired") < 2) {
        assert (zclock_mono () < deadline);
        zclock_sleep (10);
    }
    while (s_test_health (&test, "sweeps") < 2) {
        assert (zclock_mono () < deadline);
        zclock_sleep (10);
    }
    assert (s_test_health (&test, "expired") == 2);
    assert (s_test_health (&test, "events") == 1);
    s_test_stop (&test);
    s_test_remove_store (test.dir);
    zstr_free (&test.dir);
    sn_pack_destroy (&test.request);
}

//  The index walk of the hour bucket of key's partition (digest within) counts as
//  many events as the bucket's digest.
static void
s_test_index_agrees (s_test_t *test, const char *key)
{
    uint32_t p = sn_partition (key, strlen (key), test->partitions);
    int64_t ts = sn_key_time (key, strlen (key));
    uint64_t t = (uint64_t) (ts - ts % SN_STORE_BUCKET_MS), digest_count = 0, walk_count = 0;
    uint64_t rid = s_test_begin (test, "digest", 1);
    sn_pack_kv_uint (test->request, "p", p);
    sn_msg_t *reply = s_test_call (test, rid);
    assert (s_test_code (reply) == 200);
    const sn_value_t *buckets = sn_value_get (sn_msg_root (reply), "buckets");
    for (size_t index = 0; index < sn_value_size (buckets); index++) {
        uint64_t bucket_t = 0;
        sn_value_uint (sn_value_get (sn_value_at (buckets, index), "t"), &bucket_t);
        if (bucket_t == t)
            assert (sn_value_uint (sn_value_get (sn_value_at (buckets, index), "count"),
                                   &digest_count));
    }
    sn_msg_destroy (&reply);
    rid = s_test_begin (test, "digest", 2);
    sn_pack_kv_uint (test->request, "p", p);
    sn_pack_kv_uint (test->request, "within", t);
    reply = s_test_call (test, rid);
    assert (s_test_code (reply) == 200);
    const sn_value_t *minutes = sn_value_get (sn_msg_root (reply), "buckets");
    for (size_t index = 0; index < sn_value_size (minutes); index++) {
        uint64_t count = 0;
        assert (sn_value_uint (sn_value_get (sn_value_at (minutes, index), "count"), &count));
        walk_count += count;
    }
    sn_msg_destroy (&reply);
    assert (walk_count == digest_count);
}

//  A store filled with old user events until it is full still sweeps them: a pass
//  that cannot get the pages it needs is retried smaller until commits free some.
static void
s_test_retention_full (const char *base, bool verbose)
{
    s_test_t test = {0};
    test.dir = zsys_sprintf ("%s/retention-full", base);
    test.partitions = 4;
    test.request = sn_pack_new ();
    test.verbose = verbose;
    const size_t map_size = 1024 * 1024;
    s_test_retention_open (&test, 0, map_size);
    //  Records past half a page, each on pages of its own that a deletion frees
    char *text = (char *) zmalloc (3000);
    memset (text, 'x', 2999);
    int64_t old = zclock_time () - 2 * 3600 * 1000;
    char key[SN_KEY_MAX + 1];
    uint64_t code = 201;
    int puts;
    for (puts = 0; code == 201; puts++) {
        assert (puts < 100000);
        s_test_key (old + puts, key);
        code = s_test_put (&test, key, NULL, NULL, puts, text, NULL);
    }
    assert (code == 507);
    free (text);
    s_test_stop (&test);

    s_test_retention_open (&test, 3600 * 1000, map_size);
    int64_t deadline = zclock_mono () + 30000;
    while (s_test_health (&test, "events") > 0) {
        assert (zclock_mono () < deadline);
        zclock_sleep (10);
    }
    assert (s_test_health (&test, "expired") == (uint64_t) puts - 1);
    s_test_key (zclock_time (), key);
    assert (s_test_put (&test, key, NULL, NULL, 1, "room again", NULL) == 201);
    s_test_stop (&test);
    s_test_remove_store (test.dir);
    zstr_free (&test.dir);
    sn_pack_destroy (&test.request);
}

void
sn_store_test (bool verbose)
{
    char base[] = "/tmp/sn-store-test-XXXXXX";
    char *created = mkdtemp (base);
    assert (created);

    s_test_t test = {0};
    test.dir = zsys_sprintf ("%s/nested/store", base); //  made as needed
    test.partitions = 16;
    test.request = sn_pack_new ();
    test.stored = zhashx_new ();
    zhashx_set_destructor (test.stored, s_test_event_free);
    test.verbose = verbose;
    s_test_start (&test);

    s_test_basics (&test);
    s_test_range (&test);
    s_test_bulk (&test);
    s_test_garbage (&test);
    s_test_pipelined (&test);
    s_test_scan (&test);
    s_test_check_digests (&test);
    s_test_check_stored (&test);
    s_test_index (&test);

    //  After a restart everything is still there, and new keys sort after old ones
    char last[SN_KEY_MAX + 1], key[SN_KEY_MAX + 1];
    s_test_last_own_key (&test, last);
    s_test_stop (&test);
    //  A clean stop leaves no index entry waiting
    assert (s_test_waiting (test.dir) == 0);
    s_keygen_state_t state;
    s_test_keygen_state (test.dir, &state, false);
    assert (state.last_ms == sn_key_time (last, strlen (last)));
    assert (state.last_seq == (uint32_t) atoi (last + 18));
    s_test_start (&test);
    s_test_check_stored (&test);
    s_test_check_digests (&test);
    s_test_check_walks (&test);
    assert (s_test_put (&test, NULL, NULL, NULL, 3000, "after restart", key) == 201);
    assert (strcmp (key, last) > 0);
    s_test_remember (&test, key, 3000, NULL);
    s_test_stop (&test);

    //  Keys resume after the last one stored even when the clock is behind it
    state.last_ms = zclock_time () + 24 * 3600 * 1000;
    state.last_seq = 5;
    s_test_keygen_state (test.dir, &state, true);
    s_test_start (&test);
    assert (s_test_put (&test, NULL, NULL, NULL, 3001, "clock behind", key) == 201);
    assert (sn_key_time (key, strlen (key)) == state.last_ms);
    assert (atoi (key + 18) == 6);
    s_test_remember (&test, key, 3001, NULL);
    s_test_check_stored (&test);
    s_test_stop (&test);

    //  A store keeps the P it was created with
    char endpoint[128], error[S_ERROR_MAX];
    zactor_t *refused = s_test_open (test.dir, 64, 0, endpoint, error, verbose);
    assert (refused == NULL);
    assert (streq (error, "store was created with P=16 partitions, not 64"));

    //  Where the store cannot live, or cannot listen
    char *blocked = zsys_sprintf ("%s/file", base);
    FILE *file = fopen (blocked, "w");
    assert (file);
    fclose (file);
    char *impossible = zsys_sprintf ("%s/store", blocked);
    refused = s_test_open (impossible, 16, 0, endpoint, error, verbose);
    assert (refused == NULL);
    assert (strncmp (error, "cannot open store in ", 21) == 0);
    zsys_file_delete (blocked);
    zstr_free (&impossible);
    zstr_free (&blocked);

    sn_store_config_t config = {0};
    config.data_dir = test.dir;
    config.name = "n1";
    config.partitions = 16;
    config.endpoint = "nonsense://nowhere";
    refused = sn_store_new (&config, error, sizeof error);
    assert (refused == NULL);
    assert (strncmp (error, "cannot bind store to nonsense://nowhere", 39) == 0);
    config.endpoint = "inproc://sn-store-test-unused";
    config.partitions = 0;
    assert (sn_store_new (&config, error, sizeof error) == NULL);
    config.partitions = 16;
    config.name = "not a name";
    assert (sn_store_new (&config, error, sizeof error) == NULL);

    s_test_full (base, verbose);
    s_test_retention (base, verbose);
    s_test_retention_place (base, verbose);
    s_test_retention_full (base, verbose);

    s_test_remove_store (test.dir);
    zsys_dir_delete ("%s/nested", base);
    zsys_dir_delete ("%s", base);
    zstr_free (&test.dir);
    zhashx_destroy (&test.stored);
    sn_pack_destroy (&test.request);
}
