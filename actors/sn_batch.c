/*  sn_batch: buckets, the creation handshake, commits and their durable delivery.
 */
#include "sn_batch.h"
#include "sn_actor.h"
#include "sn_json.h"
#include "sn_msg.h"
#include "sn_routed.h"
#include "sn_owners.h"
#include "sn_replay.h"
#include "sn_key.h"
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define S_BATCH_TIMEOUT 5000                     //  default ms between commits
#define S_GIVE_UP       (3 * 24 * 3600 * 1000LL) //  default ms a commit is retried
#define S_COMMIT_ITEMS  500                      //  most results in one commit
#define S_COMMIT_BYTES  (1024 * 1024)            //  about the largest commit body
#define S_RETRY_FIRST   500                      //  ms before the first redelivery
#define S_RETRY_MAX     60000                    //  longest wait between deliveries
#define S_POST_TIMEOUT  10000                    //  ms one POST may take
#define S_HANDSHAKE_WAIT                                                                           \
    5000 //  ms the handshake may take: less
         //  than a client waits for its answer
//  The value in a bucket's seen table of a result already in a commit.
static char s_committed[] = "committed";

//  A committed result's id leaves the seen table once the queue's window (config
//  keep_finished) and a margin (as long as the window, at most S_SEEN_MARGIN) have
//  passed since its commit: a second word of the result comes from the queue right
//  after it is on disk (it does not tell of replayed results), or from a replay,
//  which reads the commit too. At most S_FORGET_STEP ids go at a time.
#define S_KEEP_FINISHED (3600 * 1000)
#define S_SEEN_MARGIN   (600 * 1000)
#define S_FORGET_STEP   1000

//  A committed id in a bucket's forget list.
typedef struct {
    int64_t at; //  unix ms of its commit
    char id[];  //  the invocation id
} s_forget_t;

//  One finished invocation waiting for its commit.
typedef struct {
    char *id;    //  invocation id
    byte *item;  //  msgpack {code, token, metadata, response}
    size_t size; //  its bytes
} s_result_t;

//  One commit, from its event to its delivery.
typedef struct {
    char *key;          //  Idempotency-Key: the same on every POST of it
    char *body;         //  the JSON text posted, signed as it is
    size_t items;       //  results in it
    int64_t created_at; //  unix ms it was made: give_up counts from here
    uint32_t attempts;  //  POSTs tried
    int64_t next_try;   //  unix ms of the next POST
    bool stored;        //  its event is on disk: it may be posted
    bool in_flight;     //  a POST is under way
} s_commit_t;

typedef struct {
    char *id;              //  bucket_id
    char *callback;        //  callback URL, or NULL (primary)
    int64_t batch_timeout; //  ms between commits
    int64_t give_up;       //  ms a commit is retried
    byte *metadata;        //  msgpack map, or NULL
    size_t metadata_size;  //  its bytes
    char *secret;          //  HMAC key of the signatures
    int64_t created_at;    //  unix ms
    bool deleted;          //  no more enqueues
    zlistx_t *results;     //  s_result_t waiting for a commit, owned
    zhashx_t *seen;        //  invocation id -> "": collected once, never twice
    zlistx_t *forget;      //  s_forget_t of committed ids in seen, oldest commit first
    zlistx_t *commits;     //  s_commit_t not yet delivered or abandoned, oldest first
    int64_t next_commit;   //  unix ms of the next commit, when results wait
    uint64_t delivered;    //  results in delivered commits
    uint64_t abandoned;    //  results in abandoned commits
    char *last_key;        //  the last commit finished: its key
    int64_t last_at;       //  when it finished
    size_t last_items;     //  its results
    int64_t last_status;   //  the receiver's last status (0: no HTTP answer)
    char *last_state;      //  "delivered" | "abandoned"
    char *last_error;      //  why its last POST failed, or NULL
} s_bucket_t;

//  What an answer from the log, the queue or the webhook completes.
typedef enum {
    S_CALL_NOTE,      //  nothing waits
    S_CALL_HANDSHAKE, //  webhook: the handshake POST of a creation
    S_CALL_CREATED,   //  log: bucket.created is on disk
    S_CALL_TOLD,      //  queue: it knows the bucket's state; answer the request
    S_CALL_UPDATED,   //  log: bucket.updated is on disk
    S_CALL_DELETED,   //  log: bucket.deleted is on disk
    S_CALL_COMMIT,    //  log: batch.commit is on disk
    S_CALL_DELIVERY   //  webhook: a POST of a commit
} s_call_kind_t;

typedef struct {
    s_call_kind_t kind;   //  what it completes
    sn_routed_t *request; //  the client request to answer, or NULL
    uint64_t rid;         //  its rid
    char *bucket;         //  bucket_id concerned
    char *key;            //  commit key, or the handshake token
    s_bucket_t *fresh;    //  a bucket being created, owned until it is added
    byte *event;          //  S_CALL_UPDATED: the update, applied once on disk
    size_t event_size;    //  its bytes
    int code;             //  the answer's code, for S_CALL_TOLD
} s_call_t;

typedef struct {
    zsock_t *pipe;            //  our end of the actor pipe
    zsock_t *router;          //  requests from the frontend, notes from the queue
    zsock_t *log;             //  DEALER to the log: the store, or the mesh
    zsock_t *scan;            //  DEALER to the store for replays, or the log itself
    sn_owners_t *owners;      //  the partitions this node owns; forwards the others
    zsock_t *queue;           //  DEALER to the queue
    zsock_t *webhook;         //  DEALER to the webhook actor
    zpoller_t *poller;        //  pipe, router, log, queue, webhook
    zhashx_t *buckets;        //  bucket_id -> s_bucket_t, owned
    zhashx_t *creating;       //  bucket_id -> "" while its handshake runs
    zhashx_t *calls;          //  "L|Q|W<rid>" -> s_call_t, owned
    uint64_t rid;             //  last rid sent to any actor
    sn_pack_t *pack;          //  scratch for events and requests
    sn_pack_t *reply;         //  scratch for replies
    sn_batch_config_t config; //  borrowed until START
    bool verbose;             //  log every commit
    bool terminated;          //  $TERM received
    zhashx_t *staging;        //  while a re-read runs: id -> s_bucket_t it read, owned
    sn_replay_t *replay;      //  takeovers, re-reads and the requests waiting for them
} self_t;

//  --------------------------------------------------------------------------
//  Small things

void
sn_batch_sign (const char *secret, const char *body, size_t size, char *out)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC (EVP_sha256 (), secret, (int) strlen (secret), (const unsigned char *) body, size, digest,
          &length);
    strcpy (out, "sha256=");
    for (unsigned int index = 0; index < length && index < 32; index++)
        sprintf (out + 7 + 2 * index, "%02x", digest[index]);
}

//  A random hex string of bytes * 2 digits. Caller frees.
static char *
s_random_hex (size_t bytes)
{
    unsigned char raw[64];
    assert (bytes <= sizeof raw);
    if (RAND_bytes (raw, (int) bytes) != 1) {
        zuuid_t *uuid = zuuid_new ();
        memcpy (raw, zuuid_data (uuid), bytes < 16 ? bytes : 16);
        zuuid_destroy (&uuid);
    }
    char *text = (char *) zmalloc (bytes * 2 + 1);
    for (size_t index = 0; index < bytes; index++)
        sprintf (text + 2 * index, "%02x", raw[index]);
    return text;
}

static byte *
s_copy_value (sn_pack_t *scratch, const sn_value_t *value, size_t *size_p)
{
    sn_pack_reset (scratch);
    sn_pack_value (scratch, value);
    *size_p = sn_pack_size (scratch);
    byte *copy = (byte *) malloc (*size_p);
    memcpy (copy, sn_pack_data (scratch), *size_p);
    return copy;
}

static void
s_result_free (void **item_p)
{
    s_result_t *self = (s_result_t *) *item_p;
    if (self) {
        free (self->id);
        free (self->item);
        free (self);
        *item_p = NULL;
    }
}

static void
s_commit_free (void **item_p)
{
    s_commit_t *self = (s_commit_t *) *item_p;
    if (self) {
        free (self->key);
        free (self->body);
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

static s_bucket_t *
s_bucket_new (const char *id)
{
    s_bucket_t *self = (s_bucket_t *) zmalloc (sizeof (s_bucket_t));
    self->id = strdup (id);
    self->batch_timeout = S_BATCH_TIMEOUT;
    self->give_up = S_GIVE_UP;
    self->results = zlistx_new ();
    zlistx_set_destructor (self->results, s_result_free);
    self->seen = zhashx_new ();
    self->forget = zlistx_new ();
    zlistx_set_destructor (self->forget, s_plain_free);
    self->commits = zlistx_new ();
    zlistx_set_destructor (self->commits, s_commit_free);
    return self;
}

static void
s_bucket_destroy (s_bucket_t **self_p)
{
    s_bucket_t *self = *self_p;
    if (self) {
        free (self->id);
        free (self->callback);
        free (self->metadata);
        free (self->secret);
        zlistx_destroy (&self->results);
        zhashx_destroy (&self->seen);
        zlistx_destroy (&self->forget);
        zlistx_destroy (&self->commits);
        free (self->last_key);
        free (self->last_state);
        free (self->last_error);
        free (self);
        *self_p = NULL;
    }
}

static void
s_bucket_free (void **item_p)
{
    s_bucket_destroy ((s_bucket_t **) item_p);
}

static void
s_call_free (void **item_p)
{
    s_call_t *self = (s_call_t *) *item_p;
    if (self) {
        if (self->request) {
            sn_routed_close (self->request);
            free (self->request);
        }
        free (self->bucket);
        free (self->key);
        free (self->event);
        s_bucket_destroy (&self->fresh);
        free (self);
        *item_p = NULL;
    }
}

//  Apply the settable fields of a create or update (request or event) to bucket.
static void
s_bucket_apply (s_bucket_t *bucket, const sn_value_t *fields, sn_pack_t *scratch)
{
    char *callback = sn_value_get_strdup (fields, "callback_url");
    if (callback) {
        free (bucket->callback);
        bucket->callback = callback;
    }
    int64_t number;
    if (sn_value_int (sn_value_get (fields, "batch_timeout"), &number) && number > 0)
        bucket->batch_timeout = number;
    if (sn_value_int (sn_value_get (fields, "give_up"), &number) && number > 0)
        bucket->give_up = number;
    const sn_value_t *metadata = sn_value_get (fields, "metadata");
    if (sn_value_is (metadata, SN_TYPE_MAP)) {
        free (bucket->metadata);
        bucket->metadata = s_copy_value (scratch, metadata, &bucket->metadata_size);
    }
    char *secret = sn_value_get_strdup (fields, "secret");
    if (secret) {
        free (bucket->secret);
        bucket->secret = secret;
    }
    sn_value_int (sn_value_get (fields, "created_at"), &bucket->created_at);
}

//  --------------------------------------------------------------------------
//  The actor's state

static self_t *
s_self_new (zsock_t *pipe, const sn_batch_config_t *config)
{
    self_t *self = (self_t *) zmalloc (sizeof (self_t));
    self->pipe = pipe;
    self->config = *config;
    if (self->config.keep_finished <= 0)
        self->config.keep_finished = S_KEEP_FINISHED;
    self->verbose = config->verbose;
    self->buckets = zhashx_new ();
    zhashx_set_destructor (self->buckets, s_bucket_free);
    zhashx_insert (self->buckets, "primary", s_bucket_new ("primary"));
    self->creating = zhashx_new ();
    self->calls = zhashx_new ();
    zhashx_set_destructor (self->calls, s_call_free);
    self->pack = sn_pack_new ();
    self->reply = sn_pack_new ();
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
        if (self->router)
            zsock_unbind (self->router, "%s", self->config.endpoint);
        zsock_destroy (&self->router);
        if (self->scan != self->log)
            zsock_destroy (&self->scan);
        zsock_destroy (&self->log);
        sn_replay_destroy (&self->replay);
        sn_owners_destroy (&self->owners);
        //  A re-read under way at $TERM: what it staged is its own
        for (s_bucket_t *bucket = self->staging ? (s_bucket_t *) zhashx_first (self->staging)
                                                : NULL;
             bucket; bucket = (s_bucket_t *) zhashx_next (self->staging))
            s_bucket_destroy (&bucket);
        zhashx_destroy (&self->staging);
        zsock_destroy (&self->queue);
        zsock_destroy (&self->webhook);
        zhashx_destroy (&self->calls);
        zhashx_destroy (&self->creating);
        zhashx_destroy (&self->buckets);
        sn_pack_destroy (&self->pack);
        sn_pack_destroy (&self->reply);
        free (self);
        *self_p = NULL;
    }
}

static s_call_t *
s_call_new (s_call_kind_t kind, const char *bucket)
{
    s_call_t *call = (s_call_t *) zmalloc (sizeof (s_call_t));
    call->kind = kind;
    call->bucket = bucket ? strdup (bucket) : NULL;
    return call;
}

//  Send the request in self->pack (a map whose op and rid the caller packed with
//  self->rid) on socket, remembering call under prefix and rid. Returns 0, or -1
//  (call destroyed) when the actor cannot take it now.
static int
s_send_call (self_t *self, zsock_t *socket, char prefix, s_call_t *call)
{
    zframe_t *frame = sn_pack_frame (self->pack);
    if (zframe_send (&frame, socket, ZFRAME_DONTWAIT)) {
        zframe_destroy (&frame);
        s_call_free ((void **) &call);
        return -1;
    }
    char key[32];
    snprintf (key, sizeof key, "%c%" PRIu64, prefix, self->rid);
    zhashx_insert (self->calls, key, call);
    return 0;
}

//  Write event (packed by the caller into scratch) of type for bucket.
static int
s_log_write (self_t *self, const char *type, const char *bucket, sn_pack_t *event, s_call_t *call)
{
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, 5);
    sn_pack_kv_str (self->pack, "op", "put");
    sn_pack_kv_uint (self->pack, "rid", ++self->rid);
    sn_pack_kv_str (self->pack, "type", type);
    sn_pack_kv_str (self->pack, "pkey", bucket);
    sn_pack_str (self->pack, "event");
    sn_pack_raw (self->pack, sn_pack_data (event), sn_pack_size (event));
    return s_send_call (self, self->log, 'L', call);
}

static void
s_reply_send (self_t *self, sn_routed_t *request)
{
    sn_routed_set_payload (request, sn_pack_data (self->reply), sn_pack_size (self->reply));
    if (sn_routed_send (request, self->router))
        sn_routed_close (request);
    free (request);
}

static void s_reply_error (self_t *self, sn_routed_t *request, uint64_t rid, int code,
                           const char *format, ...) __attribute__ ((format (printf, 5, 6)));

static void
s_reply_error (self_t *self, sn_routed_t *request, uint64_t rid, int code, const char *format, ...)
{
    char text[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    sn_pack_error (self->reply, rid, code, "%s", text);
    s_reply_send (self, request);
}

//  Reply {rid, code, bucket: status} (the secret too when with_secret).
static void
s_reply_bucket (self_t *self, sn_routed_t *request, uint64_t rid, int code, s_bucket_t *bucket,
                bool with_secret)
{
    sn_pack_t *out = self->reply;
    sn_pack_reset (out);
    sn_pack_map (out, 3);
    sn_pack_kv_uint (out, "rid", rid);
    sn_pack_kv_uint (out, "code", (uint64_t) code);
    sn_pack_str (out, "bucket");
    sn_pack_map (out, 10 + with_secret);
    sn_pack_kv_str (out, "bucket_id", bucket->id);
    sn_pack_kv_str (out, "state", bucket->deleted ? "deleted" : "active");
    sn_pack_str (out, "callback_url");
    if (bucket->callback)
        sn_pack_str (out, bucket->callback);
    else
        sn_pack_nil (out);
    sn_pack_str (out, "batch_timeout");
    sn_pack_int (out, bucket->batch_timeout);
    sn_pack_str (out, "give_up");
    sn_pack_int (out, bucket->give_up);
    sn_pack_str (out, "metadata");
    if (bucket->metadata)
        sn_pack_raw (out, bucket->metadata, bucket->metadata_size);
    else
        sn_pack_map (out, 0);
    sn_pack_str (out, "created_at");
    sn_pack_int (out, bucket->created_at);
    sn_pack_str (out, "counts");
    sn_pack_map (out, 4);
    sn_pack_kv_uint (out, "waiting", zlistx_size (bucket->results));
    size_t undelivered = 0;
    for (s_commit_t *commit = (s_commit_t *) zlistx_first (bucket->commits); commit;
         commit = (s_commit_t *) zlistx_next (bucket->commits))
        undelivered += commit->items;
    sn_pack_kv_uint (out, "committing", undelivered);
    sn_pack_kv_uint (out, "delivered", bucket->delivered);
    sn_pack_kv_uint (out, "abandoned", bucket->abandoned);
    sn_pack_kv_uint (out, "commits_pending", zlistx_size (bucket->commits));
    sn_pack_str (out, "last_commit");
    if (bucket->last_key) {
        sn_pack_map (out, 6);
        sn_pack_kv_str (out, "key", bucket->last_key);
        sn_pack_kv_str (out, "state", bucket->last_state ? bucket->last_state : "?");
        sn_pack_str (out, "at");
        sn_pack_int (out, bucket->last_at);
        sn_pack_kv_uint (out, "items", bucket->last_items);
        sn_pack_str (out, "status");
        sn_pack_int (out, bucket->last_status);
        sn_pack_str (out, "error");
        if (bucket->last_error)
            sn_pack_str (out, bucket->last_error);
        else
            sn_pack_nil (out);
    }
    else
        sn_pack_nil (out);
    if (with_secret)
        sn_pack_kv_str (out, "secret", bucket->secret ? bucket->secret : "");
    s_reply_send (self, request);
}

//  --------------------------------------------------------------------------
//  Results and commits

//  id is in a commit made at: it is not collected again, until it is forgotten.
static void
s_seen_committed (s_bucket_t *bucket, const char *id, int64_t at)
{
    zhashx_update (bucket->seen, id, s_committed);
    size_t length = strlen (id);
    s_forget_t *forget = (s_forget_t *) malloc (sizeof (s_forget_t) + length + 1);
    forget->at = at;
    memcpy (forget->id, id, length + 1);
    zlistx_add_end (bucket->forget, forget);
}

//  One finished invocation (its invocation.done event) joins its bucket's next
//  commit, once.
static void
s_collect (self_t *self, zhashx_t *buckets, const char *bucket_id, const sn_value_t *event)
{
    s_bucket_t *bucket = (s_bucket_t *) zhashx_lookup (buckets, bucket_id);
    char *id = sn_value_get_strdup (event, "id");
    if (!bucket || !bucket->callback || !id || zhashx_lookup (bucket->seen, id)) {
        free (id);
        return;
    }
    const sn_value_t *data = sn_value_get (event, "data");
    const sn_value_t *response = sn_value_get (event, "response");
    const sn_value_t *error = sn_value_get (event, "error");
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, 5 + (error != NULL));
    sn_pack_kv_str (self->pack, "id", id);
    sn_pack_kv_value (self->pack, "code", sn_value_get (event, "code"));
    sn_pack_kv_value (self->pack, "token", sn_value_get (event, "token"));
    sn_pack_str (self->pack, "metadata");
    if (data)
        sn_pack_value (self->pack, data);
    else
        sn_pack_map (self->pack, 0);
    sn_pack_str (self->pack, "response");
    if (response)
        sn_pack_value (self->pack, response);
    else
        sn_pack_nil (self->pack);
    if (error)
        sn_pack_kv_value (self->pack, "error", error);
    s_result_t *result = (s_result_t *) zmalloc (sizeof (s_result_t));
    result->id = id;
    result->size = sn_pack_size (self->pack);
    result->item = (byte *) malloc (result->size);
    memcpy (result->item, sn_pack_data (self->pack), result->size);
    zhashx_insert (bucket->seen, id, zlistx_add_end (bucket->results, result));
    if (zlistx_size (bucket->results) == 1)
        bucket->next_commit = zclock_time () + bucket->batch_timeout;
}

//  Make one commit of the results waiting, write it, and post it once written.
static void
s_commit (self_t *self, s_bucket_t *bucket)
{
    sn_pack_t *body = sn_pack_new ();
    sn_pack_t *ids = sn_pack_new ();
    size_t count = 0, bytes = 0;
    for (s_result_t *result = (s_result_t *) zlistx_first (bucket->results);
         result && count < S_COMMIT_ITEMS && (count == 0 || bytes + result->size < S_COMMIT_BYTES);
         result = (s_result_t *) zlistx_next (bucket->results)) {
        count++;
        bytes += result->size;
    }
    sn_pack_map (body, 4);
    sn_pack_kv_uint (body, "code", 200);
    sn_pack_kv_str (body, "bucket_id", bucket->id);
    sn_pack_str (body, "metadata");
    if (bucket->metadata)
        sn_pack_raw (body, bucket->metadata, bucket->metadata_size);
    else
        sn_pack_map (body, 0);
    sn_pack_str (body, "data");
    sn_pack_array (body, (uint32_t) count);
    sn_pack_array (ids, (uint32_t) count);
    for (size_t index = 0; index < count; index++) {
        s_result_t *result = (s_result_t *) zlistx_first (bucket->results);
        sn_pack_raw (body, result->item, result->size);
        sn_pack_str (ids, result->id);
        s_seen_committed (bucket, result->id, zclock_time ());
        zlistx_delete (bucket->results, zlistx_cursor (bucket->results));
    }
    //  The item map's "id" is ours, not the receiver's: the (B) format has none
    const char *reason = NULL;
    sn_msg_t *decoded = sn_msg_decode_trusted (sn_pack_data (body), sn_pack_size (body), &reason);
    json_t *json = sn_json_from_value (sn_msg_root (decoded));
    sn_msg_destroy (&decoded);
    json_t *item;
    size_t index;
    json_array_foreach (json_object_get (json, "data"), index, item) json_object_del (item, "id");
    char *text = json_dumps (json, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (json);

    s_commit_t *commit = (s_commit_t *) zmalloc (sizeof (s_commit_t));
    commit->key = s_random_hex (16);
    commit->body = text;
    commit->items = count;
    commit->created_at = zclock_time ();
    commit->next_try = commit->created_at;
    zlistx_add_end (bucket->commits, commit);

    sn_pack_t *event = sn_pack_new ();
    sn_pack_map (event, 6);
    sn_pack_kv_str (event, "key", commit->key);
    sn_pack_kv_str (event, "bucket_id", bucket->id);
    sn_pack_kv_str (event, "body", commit->body);
    sn_pack_str (event, "ids");
    sn_pack_raw (event, sn_pack_data (ids), sn_pack_size (ids));
    sn_pack_kv_uint (event, "items", count);
    sn_pack_str (event, "created_at");
    sn_pack_int (event, commit->created_at);
    s_call_t *call = s_call_new (S_CALL_COMMIT, bucket->id);
    call->key = strdup (commit->key);
    if (s_log_write (self, "batch.commit", bucket->id, event, call))
        zsys_error ("sn_batch: cannot write commit of %s: log is not accepting", bucket->id);
    sn_pack_destroy (&event);
    sn_pack_destroy (&ids);
    sn_pack_destroy (&body);
    if (self->verbose)
        zsys_info ("sn_batch: %s commit %s of %zu results", bucket->id, commit->key, count);
}

static s_commit_t *
s_commit_find (s_bucket_t *bucket, const char *key)
{
    for (s_commit_t *commit = (s_commit_t *) zlistx_first (bucket->commits); commit;
         commit = (s_commit_t *) zlistx_next (bucket->commits))
        if (streq (commit->key, key))
            return commit;
    return NULL;
}

//  POST the oldest commit of bucket when it is due. One at a time per bucket, so
//  that a receiver sees commits in the order they were made.
static void
s_deliver (self_t *self, s_bucket_t *bucket, int64_t now)
{
    s_commit_t *commit = (s_commit_t *) zlistx_first (bucket->commits);
    if (!commit || !commit->stored || commit->in_flight || commit->next_try > now ||
        !bucket->callback)
        return;
    char signature[80], idempotency[64];
    sn_batch_sign (bucket->secret ? bucket->secret : "", commit->body, strlen (commit->body),
                   signature);
    snprintf (idempotency, sizeof idempotency, "Idempotency-Key: %s", commit->key);
    char *signed_header = zsys_sprintf ("X-Supernode-Signature: %s", signature);
    char *bucket_header = zsys_sprintf ("X-Supernode-Bucket: %s", bucket->id);
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, 6);
    sn_pack_kv_str (self->pack, "op", "post");
    sn_pack_kv_uint (self->pack, "rid", ++self->rid);
    sn_pack_kv_str (self->pack, "url", bucket->callback);
    sn_pack_kv_str (self->pack, "body", commit->body);
    sn_pack_str (self->pack, "headers");
    sn_pack_array (self->pack, 3);
    sn_pack_str (self->pack, idempotency);
    sn_pack_str (self->pack, signed_header);
    sn_pack_str (self->pack, bucket_header);
    sn_pack_kv_uint (self->pack, "timeout", S_POST_TIMEOUT);
    free (signed_header);
    free (bucket_header);
    s_call_t *call = s_call_new (S_CALL_DELIVERY, bucket->id);
    call->key = strdup (commit->key);
    commit->attempts++;
    if (s_send_call (self, self->webhook, 'W', call) == 0)
        commit->in_flight = true;
    else
        commit->next_try = now + S_RETRY_FIRST;
}

//  A commit is finished, one way or the other: note it and drop it.
static void
s_commit_finish (self_t *self, s_bucket_t *bucket, s_commit_t *commit, const char *state,
                 int64_t status, const char *error)
{
    sn_pack_t *event = sn_pack_new ();
    sn_pack_map (event, 3 + (error != NULL));
    sn_pack_kv_str (event, "key", commit->key);
    sn_pack_str (event, "status");
    sn_pack_int (event, status);
    sn_pack_kv_uint (event, "items", commit->items);
    if (error)
        sn_pack_kv_str (event, "error", error);
    s_log_write (self, streq (state, "delivered") ? "batch.delivered" : "batch.abandoned",
                 bucket->id, event, s_call_new (S_CALL_NOTE, NULL));
    sn_pack_destroy (&event);
    if (streq (state, "delivered"))
        bucket->delivered += commit->items;
    else {
        bucket->abandoned += commit->items;
        zsys_warning ("sn_batch: %s gave up commit %s after %u attempts: %s", bucket->id,
                      commit->key, commit->attempts, error ? error : "?");
    }
    free (bucket->last_key);
    bucket->last_key = strdup (commit->key);
    free (bucket->last_state);
    bucket->last_state = strdup (state);
    free (bucket->last_error);
    bucket->last_error = error ? strdup (error) : NULL;
    bucket->last_at = zclock_time ();
    bucket->last_items = commit->items;
    bucket->last_status = status;
    zlistx_delete (bucket->commits, zlistx_find (bucket->commits, commit));
}

//  The webhook's answer to a POST of a commit.
static void
s_delivered (self_t *self, s_call_t *call, const sn_value_t *root)
{
    s_bucket_t *bucket = (s_bucket_t *) zhashx_lookup (self->buckets, call->bucket);
    s_commit_t *commit = bucket ? s_commit_find (bucket, call->key) : NULL;
    if (!commit)
        return;
    commit->in_flight = false;
    uint64_t status = 0;
    sn_value_uint (sn_value_get (root, "status"), &status);
    if (status >= 200 && status < 300) {
        if (self->verbose)
            zsys_info ("sn_batch: %s commit %s delivered (%" PRIu64 ")", bucket->id, commit->key,
                       status);
        s_commit_finish (self, bucket, commit, "delivered", (int64_t) status, NULL);
        return;
    }
    char error[300];
    char *text = sn_value_get_strdup (root, "error");
    if (text)
        snprintf (error, sizeof error, "%s", text);
    else
        snprintf (error, sizeof error, "callback answered %" PRIu64, status);
    free (text);
    int64_t now = zclock_time ();
    bucket->last_status = (int64_t) status;
    free (bucket->last_error);
    bucket->last_error = strdup (error);
    if (now >= commit->created_at + bucket->give_up) {
        s_commit_finish (self, bucket, commit, "abandoned", (int64_t) status, error);
        return;
    }
    int64_t wait = S_RETRY_FIRST;
    for (uint32_t attempt = 1; attempt < commit->attempts && wait < S_RETRY_MAX; attempt++)
        wait *= 2;
    commit->next_try = now + (wait < S_RETRY_MAX ? wait : S_RETRY_MAX);
}

//  --------------------------------------------------------------------------
//  Ops

static void
s_op_create (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    char *id = sn_value_get_strdup (root, "bucket_id");
    s_bucket_t *existing = id ? (s_bucket_t *) zhashx_lookup (self->buckets, id) : NULL;
    if (!id) {
        s_reply_error (self, request, rid, 400, "/bucket_id: expected string");
        return;
    }
    if ((existing && !existing->deleted) || zhashx_lookup (self->creating, id)) {
        s_reply_error (self, request, rid, 409, "bucket %s exists", id);
        free (id);
        return;
    }
    //  A deleted bucket keeps its id, its counts and the delivery of the commits it
    //  made: a new bucket under the same id would mix two callbacks and secrets
    if (existing) {
        s_reply_error (self, request, rid, 410, "bucket %s was deleted; ids are not reused", id);
        free (id);
        return;
    }
    s_bucket_t *fresh = s_bucket_new (id);
    s_bucket_apply (fresh, root, self->pack);
    fresh->secret = s_random_hex (32);
    fresh->created_at = zclock_time ();

    char token[40], created[32];
    char *random = s_random_hex (16);
    snprintf (token, sizeof token, "%s", random);
    free (random);
    time_t seconds = (time_t) (fresh->created_at / 1000);
    struct tm utc;
    gmtime_r (&seconds, &utc);
    strftime (created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &utc);
    json_t *hello =
        json_pack ("{s:s, s:s, s:s}", "token", token, "bucket_id", id, "created_at", created);
    char *body = json_dumps (hello, JSON_COMPACT);
    json_decref (hello);

    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, 5);
    sn_pack_kv_str (self->pack, "op", "post");
    sn_pack_kv_uint (self->pack, "rid", ++self->rid);
    sn_pack_kv_str (self->pack, "url", fresh->callback);
    sn_pack_kv_str (self->pack, "body", body ? body : "{}");
    sn_pack_kv_uint (self->pack, "timeout", S_HANDSHAKE_WAIT);
    free (body);
    s_call_t *call = s_call_new (S_CALL_HANDSHAKE, id);
    call->request = request;
    call->rid = rid;
    call->key = strdup (token);
    call->fresh = fresh;
    if (s_send_call (self, self->webhook, 'W', call) == 0)
        zhashx_insert (self->creating, id, (void *) "");
    free (id);
}

//  The handshake's answer: 200 with our token in a JSON body, or the creator hears
//  which check failed.
static void
s_handshake_done (self_t *self, s_call_t *call, const sn_value_t *root)
{
    uint64_t status = 0;
    sn_value_uint (sn_value_get (root, "status"), &status);
    char *body = sn_value_get_strdup (root, "body");
    char *kind = sn_value_get_strdup (root, "kind");
    char *error = sn_value_get_strdup (root, "error");
    char failure[512] = "";
    if (status == 0)
        snprintf (failure, sizeof failure, "%s: %s", kind ? kind : "error", error ? error : "?");
    else if (status != 200)
        snprintf (failure, sizeof failure, "status: callback answered %" PRIu64 ", not 200",
                  status);
    else {
        json_t *answer = body ? json_loads (body, 0, NULL) : NULL;
        const char *token = json_string_value (json_object_get (answer, "token"));
        if (!json_is_object (answer))
            snprintf (failure, sizeof failure, "json: callback answer is not a JSON object");
        else if (!token || !streq (token, call->key))
            snprintf (failure, sizeof failure, "token: callback did not answer the token sent");
        json_decref (answer);
    }
    free (body);
    free (kind);
    free (error);
    if (*failure) {
        zhashx_delete (self->creating, call->bucket);
        s_reply_error (self, call->request, call->rid, 502,
                       "callback handshake failed, bucket %s not created: %s", call->bucket,
                       failure);
        call->request = NULL;
        return;
    }
    //  It answered: the bucket exists once its event is on disk
    s_bucket_t *fresh = call->fresh;
    sn_pack_t *event = sn_pack_new ();
    sn_pack_map (event, 6 + (fresh->metadata != NULL));
    sn_pack_kv_str (event, "bucket_id", fresh->id);
    sn_pack_kv_str (event, "callback_url", fresh->callback);
    sn_pack_str (event, "batch_timeout");
    sn_pack_int (event, fresh->batch_timeout);
    sn_pack_str (event, "give_up");
    sn_pack_int (event, fresh->give_up);
    sn_pack_kv_str (event, "secret", fresh->secret);
    sn_pack_str (event, "created_at");
    sn_pack_int (event, fresh->created_at);
    if (fresh->metadata) {
        sn_pack_str (event, "metadata");
        sn_pack_raw (event, fresh->metadata, fresh->metadata_size);
    }
    s_call_t *created = s_call_new (S_CALL_CREATED, call->bucket);
    created->request = call->request;
    created->rid = call->rid;
    created->fresh = fresh;
    call->request = NULL;
    call->fresh = NULL;
    if (s_log_write (self, "bucket.created", created->bucket, event, created))
        zhashx_delete (self->creating, call->bucket);
    sn_pack_destroy (&event);
}

//  Tell the queue whether bucket takes enqueues; answer request with code then.
static uint32_t
s_partition_of (self_t *self, const char *bucket)
{
    return sn_partition (bucket, strlen (bucket), self->config.partitions);
}

//  kept: a bucket created but not added (its partition is being taken over), owned,
//  answered from when the queue has it; or NULL.
static void
s_tell_queue (self_t *self, s_bucket_t *bucket, sn_routed_t *request, uint64_t rid, int code,
              s_bucket_t *kept)
{
    sn_pack_reset (self->pack);
    sn_pack_map (self->pack, 4);
    sn_pack_kv_str (self->pack, "op", "bucket.state");
    sn_pack_kv_uint (self->pack, "rid", ++self->rid);
    sn_pack_kv_str (self->pack, "bucket_id", bucket->id);
    sn_pack_kv_str (self->pack, "state", bucket->deleted ? "deleted" : "active");
    s_call_t *call = s_call_new (S_CALL_TOLD, bucket->id);
    call->request = request;
    call->rid = rid;
    call->code = code;
    call->fresh = kept;
    s_send_call (self, self->queue, 'Q', call);
}

static s_bucket_t *
s_bucket_for (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid, bool live)
{
    char *id = sn_value_get_strdup (root, "bucket_id");
    s_bucket_t *bucket = id ? (s_bucket_t *) zhashx_lookup (self->buckets, id) : NULL;
    if (!bucket)
        s_reply_error (self, request, rid, 404, "no bucket %s", id ? id : "?");
    else if (live && bucket->deleted) {
        s_reply_error (self, request, rid, 410, "bucket %s is deleted", id);
        bucket = NULL;
    }
    else if (live && !bucket->callback) {
        s_reply_error (self, request, rid, 409, "bucket %s always exists and has no callback", id);
        bucket = NULL;
    }
    free (id);
    return bucket;
}

static void
s_op_update (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    s_bucket_t *bucket = s_bucket_for (self, request, root, rid, true);
    if (!bucket)
        return;
    sn_pack_t *event = sn_pack_new ();
    size_t count = sn_value_size (root);
    //  Everything but op, rid and fwd (hops of a forward) is the update
    sn_pack_map (event, (uint32_t) count - 2 - (sn_value_get (root, "fwd") != NULL));
    for (size_t index = 0; index < count; index++) {
        size_t len = 0;
        const char *key = sn_value_key_at (root, index, &len);
        if ((len == 2 && memcmp (key, "op", 2) == 0) ||
            (len == 3 && (memcmp (key, "rid", 3) == 0 || memcmp (key, "fwd", 3) == 0)))
            continue;
        sn_pack_strn (event, key, len);
        sn_pack_value (event, sn_value_value_at (root, index));
    }
    s_call_t *call = s_call_new (S_CALL_UPDATED, bucket->id);
    call->request = request;
    call->rid = rid;
    //  Applied once on disk, as the log will replay it
    call->event_size = sn_pack_size (event);
    call->event = (byte *) malloc (call->event_size);
    memcpy (call->event, sn_pack_data (event), call->event_size);
    s_log_write (self, "bucket.updated", bucket->id, event, call);
    sn_pack_destroy (&event);
}

static void
s_op_delete (self_t *self, sn_routed_t *request, const sn_value_t *root, uint64_t rid)
{
    s_bucket_t *bucket = s_bucket_for (self, request, root, rid, true);
    if (!bucket)
        return;
    sn_pack_t *event = sn_pack_new ();
    sn_pack_map (event, 1);
    sn_pack_kv_str (event, "bucket_id", bucket->id);
    s_call_t *call = s_call_new (S_CALL_DELETED, bucket->id);
    call->request = request;
    call->rid = rid;
    s_log_write (self, "bucket.deleted", bucket->id, event, call);
    sn_pack_destroy (&event);
}

//  batch.stats: the buckets this node holds (those of the partitions it owns) and
//  their results by commit state, summed, from memory only (GET /metrics).
static void
s_op_stats (self_t *self, sn_routed_t *request, uint64_t rid)
{
    uint64_t waiting = 0, committing = 0, delivered = 0, abandoned = 0, commits = 0;
    for (s_bucket_t *bucket = (s_bucket_t *) zhashx_first (self->buckets); bucket;
         bucket = (s_bucket_t *) zhashx_next (self->buckets)) {
        waiting += zlistx_size (bucket->results);
        for (s_commit_t *commit = (s_commit_t *) zlistx_first (bucket->commits); commit;
             commit = (s_commit_t *) zlistx_next (bucket->commits))
            committing += commit->items;
        commits += zlistx_size (bucket->commits);
        delivered += bucket->delivered;
        abandoned += bucket->abandoned;
    }
    sn_pack_t *out = self->reply;
    sn_pack_reset (out);
    sn_pack_map (out, 5);
    sn_pack_kv_uint (out, "rid", rid);
    sn_pack_kv_uint (out, "code", 200);
    sn_pack_kv_uint (out, "buckets", zhashx_size (self->buckets));
    sn_pack_kv_uint (out, "commits_pending", commits);
    sn_pack_str (out, "counts");
    sn_pack_map (out, 4);
    sn_pack_kv_uint (out, "waiting", waiting);
    sn_pack_kv_uint (out, "committing", committing);
    sn_pack_kv_uint (out, "delivered", delivered);
    sn_pack_kv_uint (out, "abandoned", abandoned);
    s_reply_send (self, request);
}

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
    if (sn_value_streq (op, "finished")) {
        char *bucket = sn_value_get_strdup (root, "bucket_id");
        if (bucket)
            s_collect (self, self->buckets, bucket, sn_value_get (root, "event"));
        free (bucket);
        sn_routed_close (request);
        free (request);
    }
    else if (!msg)
        s_reply_error (self, request, 0, 400, "invalid msgpack: %s", reason);
    else if (sn_value_streq (op, "batch.stats"))
        s_op_stats (self, request, rid);
    else if (!sn_value_streq (op, "batch.create") && !sn_value_streq (op, "batch.get") &&
             !sn_value_streq (op, "batch.update") && !sn_value_streq (op, "batch.delete"))
        s_reply_error (self, request, rid, 400, "/op: the batch actor does not serve this op");
    else if (sn_owners_route (self->owners, request, root, sn_owners_partition (self->owners, root),
                              self->router)) {
        //  forwarded to the owner, held, or answered
    }
    else if (sn_replay_park (self->replay, request, root, rid,
                             sn_owners_partition (self->owners, root))) {
        //  Its replay has not loaded all of it yet: an answer from what it holds could
        //  be wrong (a bucket not found, or created twice)
    }
    else if (sn_value_streq (op, "batch.create"))
        s_op_create (self, request, root, rid);
    else if (sn_value_streq (op, "batch.get")) {
        s_bucket_t *bucket = s_bucket_for (self, request, root, rid, false);
        if (bucket)
            s_reply_bucket (self, request, rid, 200, bucket, false);
    }
    else if (sn_value_streq (op, "batch.update"))
        s_op_update (self, request, root, rid);
    else
        s_op_delete (self, request, root, rid);
    sn_msg_destroy (&msg);
}

//  An answer from the log ('L'), the queue ('Q') or the webhook ('W').
static void
s_handle_answer (self_t *self, char prefix, zframe_t *frame)
{
    const char *reason = NULL;
    sn_msg_t *msg = sn_msg_decode_trusted (zframe_data (frame), zframe_size (frame), &reason);
    const sn_value_t *root = sn_msg_root (msg);
    uint64_t rid = 0, code = 0;
    sn_value_uint (sn_value_get (root, "rid"), &rid);
    sn_value_uint (sn_value_get (root, "code"), &code);
    char key[32];
    snprintf (key, sizeof key, "%c%" PRIu64, prefix, rid);
    s_call_t *call = (s_call_t *) zhashx_lookup (self->calls, key);
    if (!call) {
        sn_msg_destroy (&msg);
        return;
    }
    bool ok = prefix == 'L' ? code == 201 : code == 200;
    if (!ok && call->request) {
        char *error = sn_value_get_strdup (root, "error");
        s_reply_error (self, call->request, call->rid, 503, "not stored: %s",
                       error ? error : "no answer");
        call->request = NULL;
        free (error);
        if (call->kind == S_CALL_CREATED)
            zhashx_delete (self->creating, call->bucket);
    }
    else if (!ok)
        zsys_error ("sn_batch: %c request %" PRIu64 " failed with %" PRIu64, prefix, rid, code);
    else {
        s_bucket_t *bucket =
            call->bucket ? (s_bucket_t *) zhashx_lookup (self->buckets, call->bucket) : NULL;
        switch (call->kind) {
            case S_CALL_HANDSHAKE:
                s_handshake_done (self, call, root);
                break;
            case S_CALL_CREATED: {
                zhashx_delete (self->creating, call->bucket);
                bucket = call->fresh;
                call->fresh = NULL;
                //  The bucket exists, but while its partition is being taken over
                //  (or is owned elsewhere) the replay loads it from the log: nothing
                //  of it is committed or posted from memory meanwhile
                uint32_t p = s_partition_of (self, bucket->id);
                bool served =
                    sn_owners_owns (self->owners, p) && !sn_owners_taking_over (self->owners, p);
                if (served)
                    zhashx_update (self->buckets, call->bucket, bucket);
                s_tell_queue (self, bucket, call->request, call->rid, 201, served ? NULL : bucket);
                call->request = NULL;
                break;
            }
            case S_CALL_TOLD:
                if (!bucket)
                    bucket = call->fresh;
                if (bucket && call->request) {
                    s_reply_bucket (self, call->request, call->rid, call->code, bucket,
                                    call->code == 201);
                    call->request = NULL;
                }
                break;
            case S_CALL_UPDATED:
                if (bucket) {
                    sn_msg_t *update =
                        sn_msg_decode_trusted (call->event, call->event_size, &reason);
                    s_bucket_apply (bucket, sn_msg_root (update), self->pack);
                    sn_msg_destroy (&update);
                    s_reply_bucket (self, call->request, call->rid, 200, bucket, false);
                    call->request = NULL;
                }
                break;
            case S_CALL_DELETED:
                if (bucket) {
                    bucket->deleted = true;
                    s_tell_queue (self, bucket, call->request, call->rid, 200, NULL);
                    call->request = NULL;
                }
                break;
            case S_CALL_COMMIT: {
                s_commit_t *commit = bucket ? s_commit_find (bucket, call->key) : NULL;
                if (commit)
                    commit->stored = true;
                break;
            }
            case S_CALL_DELIVERY:
                s_delivered (self, call, root);
                break;
            case S_CALL_NOTE:
                break;
        }
    }
    zhashx_delete (self->calls, key);
    sn_msg_destroy (&msg);
}

//  --------------------------------------------------------------------------
//  Replay

static void
s_replay_event (void *actor, const char *type, const sn_value_t *event)
{
    self_t *self = (self_t *) actor;
    //  A re-read builds the buckets of p apart (s_hook_begin)
    zhashx_t *buckets = self->staging ? self->staging : self->buckets;
    char *id = sn_value_get_strdup (event, "bucket_id");
    s_bucket_t *bucket = id ? (s_bucket_t *) zhashx_lookup (buckets, id) : NULL;
    if (streq (type, "bucket.created") && id) {
        if (self->staging)
            s_bucket_destroy (&bucket);
        bucket = s_bucket_new (id);
        s_bucket_apply (bucket, event, self->pack);
        zhashx_update (buckets, id, bucket);
    }
    else if (streq (type, "bucket.updated") && bucket)
        s_bucket_apply (bucket, event, self->pack);
    else if (streq (type, "bucket.deleted") && bucket)
        bucket->deleted = true;
    else if (streq (type, "invocation.done") && id)
        s_collect (self, buckets, id, event);
    else if (streq (type, "batch.commit") && bucket) {
        const sn_value_t *ids = sn_value_get (event, "ids");
        int64_t committed_at = zclock_time ();
        sn_value_int (sn_value_get (event, "created_at"), &committed_at);
        for (size_t index = 0; index < sn_value_size (ids); index++) {
            char *done = sn_value_strdup (sn_value_at (ids, index));
            void *handle = done ? zhashx_lookup (bucket->seen, done) : NULL;
            if (handle && handle != s_committed)
                zlistx_delete (bucket->results, handle);
            if (done)
                s_seen_committed (bucket, done, committed_at);
            free (done);
        }
        s_commit_t *commit = (s_commit_t *) zmalloc (sizeof (s_commit_t));
        commit->key = sn_value_get_strdup (event, "key");
        commit->body = sn_value_get_strdup (event, "body");
        uint64_t items = 0;
        sn_value_uint (sn_value_get (event, "items"), &items);
        commit->items = items;
        sn_value_int (sn_value_get (event, "created_at"), &commit->created_at);
        commit->stored = true;
        if (commit->key && commit->body)
            zlistx_add_end (bucket->commits, commit);
        else
            s_commit_free ((void **) &commit);
    }
    free (id);
    if (streq (type, "batch.delivered") || streq (type, "batch.abandoned")) {
        //  These carry the key only: find the commit in any bucket of the partition
        char *key = sn_value_get_strdup (event, "key");
        for (s_bucket_t *owner = (s_bucket_t *) zhashx_first (buckets); owner && key;
             owner = (s_bucket_t *) zhashx_next (buckets)) {
            s_commit_t *commit = s_commit_find (owner, key);
            if (!commit)
                continue;
            bool delivered = streq (type, "batch.delivered");
            if (delivered)
                owner->delivered += commit->items;
            else
                owner->abandoned += commit->items;
            free (owner->last_key);
            owner->last_key = strdup (key);
            free (owner->last_state);
            owner->last_state = strdup (delivered ? "delivered" : "abandoned");
            free (owner->last_error);
            owner->last_error = sn_value_get_strdup (event, "error");
            owner->last_items = commit->items;
            sn_value_int (sn_value_get (event, "status"), &owner->last_status);
            zlistx_delete (owner->commits, zlistx_find (owner->commits, commit));
            break;
        }
        free (key);
    }
}

//  --------------------------------------------------------------------------
//  The actor

static zsock_t *
s_link (const char *endpoint)
{
    zsock_t *link = zsock_new (ZMQ_DEALER);
    zsock_set_sndhwm (link, 100000);
    zsock_set_rcvhwm (link, 100000);
    zsock_set_sndtimeo (link, 0);
    zsock_set_linger (link, 0);
    if (zsock_connect (link, "%s", endpoint) == -1)
        zsock_destroy (&link);
    return link;
}

//  A bucket replayed: its commits are due, its delivery is tried at once.
static void
s_settle_bucket (s_bucket_t *bucket, int64_t now)
{
    if (zlistx_size (bucket->results))
        bucket->next_commit = now + bucket->batch_timeout;
    for (s_commit_t *commit = (s_commit_t *) zlistx_first (bucket->commits); commit;
         commit = (s_commit_t *) zlistx_next (bucket->commits))
        if (!commit->in_flight)
            commit->next_try = now;
}

//  After a replay of partition p (all of them when p is -1), every bucket of it.
static void
s_settle (self_t *self, int64_t p)
{
    int64_t now = zclock_time ();
    for (s_bucket_t *bucket = (s_bucket_t *) zhashx_first (self->buckets); bucket;
         bucket = (s_bucket_t *) zhashx_next (self->buckets))
        if (p < 0 || s_partition_of (self, bucket->id) == (uint32_t) p)
            s_settle_bucket (bucket, now);
}

//  Partition p is owned elsewhere now, or its replay failed: forget its buckets
//  (primary always exists). Their events stay in the log for the new owner; answers
//  still on their way for them find no bucket and are dropped.
static void
s_drop_partition (self_t *self, uint32_t p)
{
    zlistx_t *gone = zlistx_new ();
    for (s_bucket_t *bucket = (s_bucket_t *) zhashx_first (self->buckets); bucket;
         bucket = (s_bucket_t *) zhashx_next (self->buckets))
        if (!streq (bucket->id, "primary") && s_partition_of (self, bucket->id) == p)
            zlistx_add_end (gone, bucket->id);
    for (const char *id = (const char *) zlistx_first (gone); id;
         id = (const char *) zlistx_next (gone))
        zhashx_delete (self->buckets, id);
    if (zlistx_size (gone))
        zsys_info ("sn_batch: partition %u: %zu buckets dropped from memory", p,
                   zlistx_size (gone));
    zlistx_destroy (&gone);
}

//  Takeovers and re-reads (sn_replay) read the log one scan at a time, a page at
//  a time, each page handled when it comes in the actor's loop (s_log_reply): the
//  actor serves the other partitions meanwhile. Requests for a partition taken
//  over wait until its replay is over, and nothing of it is committed or posted
//  until then; one read again is served from what it holds. What follows is the
//  batch actor's part of them.

//  A re-read of p replays p apart, into self->staging, touching nothing held; p is
//  served meanwhile.
static void
s_hook_begin (void *actor, uint32_t p, bool reread)
{
    self_t *self = (self_t *) actor;
    if (!reread)
        return;
    self->staging = zhashx_new ();
    if (s_partition_of (self, "primary") == p)
        zhashx_insert (self->staging, "primary", s_bucket_new ("primary"));
}

//  A takeover is over: its commits are due.
static void
s_hook_done (void *actor, uint32_t p)
{
    s_settle ((self_t *) actor, p);
}

//  The re-read of p ended. Only a complete one (adopt) is adopted: a bucket not
//  held here is loaded whole, as a takeover loads it; a bucket held here keeps its
//  settings, commits and timers and gains only the results the replay left
//  waiting (in no batch.commit of the scan) that it has not seen. That is safe: a
//  complete scan holds every event this node wrote (acknowledged at QUORUM) or
//  read before it began, every commit made here before included, so a result
//  committed here then (even one whose id was forgotten since) is in a commit of
//  the scan and is not collected again; one committed while it ran may not be (the
//  commit may be behind the cursor), but no id of p leaves seen meanwhile
//  (s_timers), so it is seen here and not collected again. Anything else is
//  discarded whole.
static void
s_hook_reread_end (void *actor, uint32_t p, bool adopt)
{
    self_t *self = (self_t *) actor;
    int64_t now = zclock_time ();
    size_t loaded = 0, results = 0;
    for (s_bucket_t *bucket = (s_bucket_t *) zhashx_first (self->staging); bucket;
         bucket = (s_bucket_t *) zhashx_next (self->staging)) {
        s_bucket_t *held = (s_bucket_t *) zhashx_lookup (self->buckets, bucket->id);
        if (adopt && !held) {
            zhashx_insert (self->buckets, bucket->id, bucket);
            s_settle_bucket (bucket, now);
            loaded++;
            continue;
        }
        if (adopt && held->callback) {
            bool waiting = zlistx_size (held->results) > 0;
            s_result_t *result;
            while ((result = (s_result_t *) zlistx_first (bucket->results))) {
                zlistx_detach_cur (bucket->results);
                if (zhashx_lookup (held->seen, result->id)) {
                    s_result_free ((void **) &result);
                    continue;
                }
                zhashx_insert (held->seen, result->id, zlistx_add_end (held->results, result));
                results++;
            }
            if (!waiting && zlistx_size (held->results))
                held->next_commit = now + held->batch_timeout;
        }
        s_bucket_destroy (&bucket);
    }
    zhashx_destroy (&self->staging);
    if (adopt && (loaded || results))
        zsys_info ("sn_batch: read partition %u again: %zu buckets loaded, %zu results added", p,
                   loaded, results);
}

//  A takeover that fails is not served half done: its buckets are dropped and
//  primary starts afresh (anew), so nothing of it is committed or posted, and the
//  next try rebuilds buckets, seen results and commits from the log alone rather
//  than over what one try loaded.
static void
s_hook_drop (void *actor, uint32_t p, bool anew)
{
    self_t *self = (self_t *) actor;
    s_drop_partition (self, p);
    if (anew && s_partition_of (self, "primary") == p)
        zhashx_update (self->buckets, "primary", s_bucket_new ("primary"));
}

static uint64_t
s_hook_rid (void *actor)
{
    return ++((self_t *) actor)->rid;
}

static const sn_replay_hooks_t s_replay_hooks = {s_replay_event,    s_hook_begin, s_hook_done,
                                                 s_hook_reread_end, s_hook_drop,  s_handle_request,
                                                 s_hook_rid};

//  One answer on the log or the scan socket: the page the replay under way waits
//  for, or an answer to a write (they come interleaved with pages when the log
//  scans too). A page no replay waits for any more is dropped.
static void
s_log_reply (self_t *self, zframe_t *frame)
{
    const char *reason = NULL;
    sn_msg_t *msg = sn_msg_decode_trusted (zframe_data (frame), zframe_size (frame), &reason);
    if (!sn_replay_offer (self->replay, sn_msg_root (msg)))
        s_handle_answer (self, 'L', frame);
    sn_msg_destroy (&msg);
}

//  The partition table changed: drop what went, replay what came (in turn, from
//  the actor's loop).
static void
s_placement (self_t *self)
{
    sn_replay_placement (self->replay);
    sn_replay_release (self->replay);
}

static char *
s_self_start (self_t *self)
{
    self->log = s_link (self->config.log);
    self->queue = s_link (self->config.queue);
    self->webhook = s_link (self->config.webhook);
    if (!self->log || !self->queue || !self->webhook)
        return strdup ("batch: cannot connect to the log, queue or webhook");
    self->scan = self->config.store ? s_link (self->config.store) : self->log;
    if (!self->scan)
        return strdup ("batch: cannot connect to the store");
    self->owners = sn_owners_new (self->config.feed, self->config.mesh, self->config.partitions);
    if (!self->owners)
        return strdup ("batch: cannot connect to the mesh");
    //  A forwarded creation waits for the owner's handshake (and then its write, which
    //  the mesh allows for)
    sn_owners_set_wait (self->owners, "batch.create", S_HANDSHAKE_WAIT);
    self->replay = sn_replay_new ("sn_batch", self->owners, self->scan, self->pipe,
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
        return zsys_sprintf ("cannot bind %s", self->config.endpoint);
    self->poller =
        zpoller_new (self->pipe, self->router, self->log, self->queue, self->webhook, NULL);
    if (self->scan != self->log)
        zpoller_add (self->poller, self->scan);
    if (sn_owners_feed (self->owners)) {
        zpoller_add (self->poller, sn_owners_feed (self->owners));
        zpoller_add (self->poller, sn_owners_mesh (self->owners));
    }
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
    else if (streq (command, "SEEN")) {
        //  For tests: the size of bucket B's seen table, or "none" without B
        char *id = zstr_recv (self->pipe);
        s_bucket_t *bucket = id ? (s_bucket_t *) zhashx_lookup (self->buckets, id) : NULL;
        if (bucket)
            zstr_sendf (self->pipe, "%zu", zhashx_size (bucket->seen));
        else
            zstr_send (self->pipe, "none");
        zstr_free (&id);
    }
    else if (streq (command, "$TERM"))
        self->terminated = true;
    else
        zsys_error ("sn_batch: invalid command '%s'", command);
    free (command);
}

//  Commit and deliver what is due; returns the next time anything is.
static int64_t
s_timers (self_t *self)
{
    int64_t now = zclock_time (), next = now + 60000;
    int64_t keep =
        (int64_t) self->config.keep_finished +
        (self->config.keep_finished < S_SEEN_MARGIN ? self->config.keep_finished : S_SEEN_MARGIN);
    size_t forgotten = 0;
    for (s_bucket_t *bucket = (s_bucket_t *) zhashx_first (self->buckets); bucket;
         bucket = (s_bucket_t *) zhashx_next (self->buckets)) {
        //  Its partition's replay has not loaded all of it: a commit of its later
        //  pages may hold what waits here (s_settle makes it due at the end)
        if (sn_replay_taking (self->replay, s_partition_of (self, bucket->id)))
            continue;
        //  A committed id of the partition read again does not leave seen before the
        //  re-read ends: the re-read may have staged that result from a page read
        //  before its commit (s_hook_reread_end)
        bool rereading = sn_replay_rereading (self->replay, s_partition_of (self, bucket->id));
        s_forget_t *oldest = rereading ? NULL : (s_forget_t *) zlistx_first (bucket->forget);
        while (oldest && oldest->at + keep <= now && forgotten < S_FORGET_STEP) {
            if (zhashx_lookup (bucket->seen, oldest->id) == s_committed)
                zhashx_delete (bucket->seen, oldest->id);
            zlistx_delete (bucket->forget, zlistx_cursor (bucket->forget));
            forgotten++;
            oldest = (s_forget_t *) zlistx_first (bucket->forget);
        }
        if (oldest && oldest->at + keep < next)
            next = oldest->at + keep > now ? oldest->at + keep : now;
        while (zlistx_size (bucket->results) && bucket->next_commit <= now) {
            s_commit (self, bucket);
            if (zlistx_size (bucket->results) == 0)
                bucket->next_commit = now + bucket->batch_timeout;
        }
        if (zlistx_size (bucket->results) && bucket->next_commit < next)
            next = bucket->next_commit;
        s_deliver (self, bucket, now);
        s_commit_t *head = (s_commit_t *) zlistx_first (bucket->commits);
        if (head && head->stored && !head->in_flight && head->next_try < next)
            next = head->next_try;
    }
    return next;
}

static void
s_handle_socket (self_t *self, zsock_t *which)
{
    if (which == self->pipe)
        s_handle_pipe (self);
    else if (which == self->router) {
        sn_routed_t *request = (sn_routed_t *) zmalloc (sizeof (sn_routed_t));
        if (sn_routed_recv (request, self->router) == 0)
            s_handle_request (self, request);
        else
            free (request);
    }
    else if (which == self->log || which == self->scan) {
        zframe_t *frame = zframe_recv (which);
        if (frame)
            s_log_reply (self, frame);
        zframe_destroy (&frame);
    }
    else if (which == self->queue || which == self->webhook) {
        zframe_t *frame = zframe_recv (which);
        if (frame)
            s_handle_answer (self,
                             which == self->log     ? 'L'
                             : which == self->queue ? 'Q'
                                                    : 'W',
                             frame);
        zframe_destroy (&frame);
    }
    else if (which == sn_owners_feed (self->owners))
        s_placement (self);
    else if (which == sn_owners_mesh (self->owners))
        sn_owners_relay (self->owners, self->router);
}

void
sn_batch_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new (pipe, (const sn_batch_config_t *) args);
    zsock_signal (pipe, 0);
    while (!self->terminated) {
        if (!self->poller) {
            s_handle_pipe (self);
            continue;
        }
        int64_t next = s_timers (self), now = zclock_time ();
        if (sn_owners_deadline (self->owners) <= now) {
            sn_replay_release (self->replay);
            continue;
        }
        if (sn_replay_step (self->replay, now))
            continue;
        if (sn_owners_deadline (self->owners) < next)
            next = sn_owners_deadline (self->owners);
        int64_t replay_next = sn_replay_next (self->replay, now);
        if (replay_next < next)
            next = replay_next;
        zsock_t *which =
            (zsock_t *) zpoller_wait (self->poller, next > now ? (int) (next - now) : 0);
        if (which)
            s_handle_socket (self, which);
        else if (zpoller_terminated (self->poller))
            break;
    }
    sn_replay_stop (self->replay);
    s_self_destroy (&self);
    //  RAND_bytes keeps state per thread, freed when the thread ends, which may be
    //  after the process has checked its memory: freed here, before the pipe says
    //  this actor is gone
    OPENSSL_thread_stop ();
}

zactor_t *
sn_batch_new (const sn_batch_config_t *config, char *error, size_t size)
{
    assert (config);
    return sn_actor_start (sn_batch_actor, (void *) config, "batch", error, size);
}

//  --------------------------------------------------------------------------
//  Selftest: the real store, queue, webhook and batch actors, and a callback
//  receiver made of a ZMQ_STREAM socket speaking just enough HTTP.

#include "sn_queue.h"
#include "sn_store.h"
#include "sn_webhook.h"

//  Read one whole HTTP request from stream; returns it (caller frees) and the
//  connection's identity in *peer_p. Empty messages tell of a connection opened or
//  closed, and the close of the previous request's connection may come after the
//  next one's data: the peer is the connection a whole request's bytes come on.
//  Another process's stray connection to this port (a reconnecting socket of a
//  test run alongside) can send bytes too: each connection has its own buffer, and
//  one whose bytes do not start a POST is closed and forgotten.
#define S_TEST_PEERS 8
static char *
s_test_http_read (zsock_t *stream, zframe_t **peer_p)
{
    zframe_t *peers[S_TEST_PEERS] = {NULL};
    char *buffers[S_TEST_PEERS] = {NULL};
    size_t sizes[S_TEST_PEERS] = {0};
    char *request = NULL;
    *peer_p = NULL;
    while (!request) {
        zmsg_t *msg = zmsg_recv (stream);
        assert (msg && zmsg_size (msg) == 2);
        zframe_t *content = zmsg_last (msg);
        size_t slot = 0;
        while (slot < S_TEST_PEERS && peers[slot] && !zframe_eq (peers[slot], zmsg_first (msg)))
            slot++;
        assert (slot < S_TEST_PEERS);
        if (zframe_size (content) == 0) {
            zmsg_destroy (&msg);
            continue;
        }
        if (!peers[slot]) {
            peers[slot] = zframe_dup (zmsg_first (msg));
            buffers[slot] = (char *) zmalloc (1 << 16);
        }
        size_t take = zframe_size (content);
        assert (sizes[slot] + take < (1 << 16));
        memcpy (buffers[slot] + sizes[slot], zframe_data (content), take);
        sizes[slot] += take;
        zmsg_destroy (&msg);
        char *text = buffers[slot];
        if (strncmp (text, "POST ", sizes[slot] < 5 ? sizes[slot] : 5) != 0) {
            //  Not the webhook: closed, and its slot taken back
            zframe_send (&peers[slot], stream, ZFRAME_MORE);
            zmq_send (zsock_resolve (stream), "", 0, 0);
            free (buffers[slot]);
            buffers[slot] = NULL;
            sizes[slot] = 0;
            for (size_t last = slot; last + 1 < S_TEST_PEERS; last++) {
                peers[last] = peers[last + 1];
                buffers[last] = buffers[last + 1];
                sizes[last] = sizes[last + 1];
            }
            peers[S_TEST_PEERS - 1] = NULL;
            buffers[S_TEST_PEERS - 1] = NULL;
            sizes[S_TEST_PEERS - 1] = 0;
            continue;
        }
        char *end = strstr (text, "\r\n\r\n");
        char *length = strstr (text, "Content-Length: ");
        if (end && length &&
            (size_t) (end + 4 - text) + (size_t) atoi (length + 16) <= sizes[slot]) {
            request = text;
            *peer_p = peers[slot];
            buffers[slot] = NULL;
            peers[slot] = NULL;
        }
    }
    for (size_t slot = 0; slot < S_TEST_PEERS; slot++) {
        zframe_destroy (&peers[slot]);
        free (buffers[slot]);
    }
    return request;
}

static void
s_test_http_answer (zsock_t *stream, zframe_t **peer_p, int status, const char *body)
{
    char *answer = zsys_sprintf ("HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: "
                                 "close\r\n\r\n%s",
                                 status, strlen (body), body);
    zframe_send (peer_p, stream, ZFRAME_MORE | ZFRAME_REUSE);
    zstr_send (stream, answer);
    zframe_send (peer_p, stream, ZFRAME_MORE);
    zmq_send (zsock_resolve (stream), "", 0, 0);
    free (answer);
}

//  Send json (a map, without rid) with rid 1, not waiting for the answer.
static void
s_test_send (zsock_t *client, const char *json)
{
    sn_pack_t *pack = sn_pack_new ();
    char error[256];
    char *text = zsys_sprintf ("{\"rid\": 1, %s", json + 1);
    assert (sn_json_to_pack (text, strlen (text), pack, error, sizeof error) == 0);
    free (text);
    zframe_t *frame = sn_pack_frame (pack);
    zframe_send (&frame, client, 0);
    sn_pack_destroy (&pack);
}

//  Send request (JSON, with op, without rid) to the batch actor; returns the reply.
static sn_msg_t *
s_test_ask (zsock_t *client, const char *json)
{
    s_test_send (client, json);
    //  Every request is answered: a reply that never comes fails the test, not hangs it
    zpoller_t *poller = zpoller_new (client, NULL);
    bool answered = zpoller_wait (poller, 30000) == client;
    zpoller_destroy (&poller);
    assert (answered);
    zframe_t *frame = zframe_recv (client);
    sn_msg_t *reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    zframe_destroy (&frame);
    assert (reply);
    return reply;
}
//  b's counts as "delivered/waiting/commits_pending" (caller frees).
static char *
s_test_counts (zsock_t *client)
{
    sn_msg_t *reply = s_test_ask (client, "{\"op\": \"batch.get\", \"bucket_id\": \"b\"}");
    const sn_value_t *bucket = sn_value_get (sn_msg_root (reply), "bucket");
    uint64_t delivered = 9, waiting = 9, pending = 9;
    sn_value_uint (sn_value_get (sn_value_get (bucket, "counts"), "delivered"), &delivered);
    sn_value_uint (sn_value_get (sn_value_get (bucket, "counts"), "waiting"), &waiting);
    sn_value_uint (sn_value_get (bucket, "commits_pending"), &pending);
    sn_msg_destroy (&reply);
    return zsys_sprintf ("%" PRIu64 "/%" PRIu64 "/%" PRIu64, delivered, waiting, pending);
}

static int64_t
s_test_code (sn_msg_t *reply)
{
    int64_t code = 0;
    sn_value_int (sn_value_get (sn_msg_root (reply), "code"), &code);
    return code;
}

//  The code of the answer client has, or gets within 5 s; -1 without one.
static int64_t
s_test_answer_code (zsock_t *client)
{
    zpoller_t *poller = zpoller_new (client, NULL);
    zsock_t *which = (zsock_t *) zpoller_wait (poller, 5000);
    zpoller_destroy (&poller);
    if (which != client)
        return -1;
    zframe_t *frame = zframe_recv (client);
    sn_msg_t *reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    zframe_destroy (&frame);
    int64_t code = reply ? s_test_code (reply) : -1;
    sn_msg_destroy (&reply);
    return code;
}

//  Ask json until its code is not 503, for 10 s; returns that code.
static int64_t
s_test_ask_until (zsock_t *client, const char *json)
{
    int64_t deadline = zclock_mono () + 10000;
    while (true) {
        sn_msg_t *reply = s_test_ask (client, json);
        int64_t code = s_test_code (reply);
        sn_msg_destroy (&reply);
        if (code != 503)
            return code;
        assert (zclock_mono () < deadline);
        zclock_sleep (10); //  poll interval of the wait, not synchronisation
    }
}

//  Replays do not hold the actor: while one waits for a page, the other partitions
//  are served and a client's request for the partition taken over waits for its
//  end (one forwarded is answered 503 at once); a page that never comes fails the
//  takeover (503 until a try succeeds); a re-read leaves its partition served.
static void
s_test_replay_async (sn_batch_config_t *base, const char *store_ep)
{
    char feed_ep[64], mesh_ep[64], scans_ep[64];
    snprintf (feed_ep, sizeof feed_ep, "inproc://sn-batch-test-feed-%d", getpid ());
    snprintf (mesh_ep, sizeof mesh_ep, "inproc://sn-batch-test-mesh-%d", getpid ());
    snprintf (scans_ep, sizeof scans_ep, "inproc://sn-batch-test-scans-%d", getpid ());
    zsock_t *feed = zsock_new_pub (feed_ep);
    zsock_t *mesh = zsock_new_router (mesh_ep);
    zsock_t *scans = zsock_new_router (scans_ep);
    zsock_t *back = zsock_new_dealer (store_ep);
    assert (feed && mesh && scans && back);
    sn_batch_config_t config = *base;
    config.store = scans_ep;
    config.feed = feed_ep;
    config.mesh = mesh_ep;
    char error[256];
    zactor_t *batch = sn_batch_new (&config, error, sizeof error);
    assert (batch);
    uint32_t pb = sn_partition ("b", 1, 8), pp = sn_partition ("primary", 7, 8);
    assert (pb != pp);
    //  "a" owns every partition
    zmsg_t *scan = NULL;
    uint64_t p = 0;
    bool reread = false;
    while (!scan) {
        sn_replay_test_place (feed, "a", 8, "a");
        scan = sn_replay_scan_next (scans, &p, &reread);
    }
    //  One page a partition, one partition at a time
    for (int index = 0; index < 8; index++) {
        if (!scan)
            scan = sn_replay_scan_next (scans, &p, &reread);
        assert (scan && !reread);
        sn_replay_scan_pass (scans, back, &scan);
    }
    zsock_t *client = zsock_new_dealer (base->endpoint);
    zsock_t *waiting = zsock_new_dealer (base->endpoint);
    const char *get_b = "{\"op\": \"batch.get\", \"bucket_id\": \"b\"}";
    const char *get_primary = "{\"op\": \"batch.get\", \"bucket_id\": \"primary\"}";
    const char *forwarded = "{\"op\": \"batch.get\", \"bucket_id\": \"b\", \"fwd\": 1}";
    assert (s_test_ask_until (client, get_b) == 200);

    //  b's partition is taken over again; its page waits
    char number[16];
    snprintf (number, sizeof number, "%u", pb);
    zstr_sendx (batch, "REPLAY", number, NULL);
    scan = sn_replay_scan_next (scans, &p, &reread);
    assert (scan && p == pb && !reread);
    s_test_send (waiting, get_b);
    sn_msg_t *reply = s_test_ask (client, get_primary);
    assert (s_test_code (reply) == 200);
    sn_msg_destroy (&reply);
    char *taking = zsys_sprintf ("partition %u is being taken over here, try again", pb);
    reply = s_test_ask (client, forwarded);
    assert (s_test_code (reply) == 503);
    char *said = sn_value_get_strdup (sn_msg_root (reply), "error");
    assert (said && streq (said, taking));
    free (said);
    sn_msg_destroy (&reply);
    zpoller_t *poller = zpoller_new (waiting, NULL);
    assert (zpoller_wait (poller, 0) == NULL);
    zpoller_destroy (&poller);
    //  The page comes: the REPLAY is answered, and so is the request that waited
    sn_replay_scan_pass (scans, back, &scan);
    char *answer = zstr_recv (batch);
    assert (streq (answer, "OK"));
    free (answer);
    assert (s_test_answer_code (waiting) == 200);

    //  b's partition lost and gained again while its page waits: the takeover starts
    //  over from the first page (the page held back is no one's), whether the two
    //  placements came in one drain of the feed or not
    zstr_sendx (batch, "REPLAY", number, NULL);
    scan = sn_replay_scan_next (scans, &p, &reread);
    assert (scan && p == pb && !reread);
    for (int round = 0; round < 2; round++)
        sn_replay_test_place (feed, round ? "a" : "z", 8, "a");
    sn_replay_scan_pass (scans, back, &scan);
    //  Every partition was lost and gained: one scan of each, b's among them
    bool again = false;
    for (int index = 0; index < 8; index++) {
        scan = sn_replay_scan_next (scans, &p, &reread);
        assert (scan && !reread);
        again = again || p == pb;
        sn_replay_scan_pass (scans, back, &scan);
    }
    assert (again);
    answer = zstr_recv (batch);
    assert (streq (answer, "OK") || streq (answer, "REPLAY: the partition went elsewhere"));
    free (answer);
    assert (s_test_ask_until (client, get_b) == 200);

    //  A page that never comes fails the takeover: what waited hears 503, and b
    //  answers 503 until the next try, whose page comes
    zstr_sendx (batch, "REPLAY", number, NULL);
    scan = sn_replay_scan_next (scans, &p, &reread);
    assert (scan && p == pb);
    zmsg_destroy (&scan);
    s_test_send (waiting, get_b);
    reply = s_test_ask (client, get_primary);
    assert (s_test_code (reply) == 200);
    sn_msg_destroy (&reply);
    answer = zstr_recv (batch);
    char *silent = zsys_sprintf ("log did not answer scan of partition %u", pb);
    assert (streq (answer, silent));
    free (silent);
    free (answer);
    assert (s_test_answer_code (waiting) == 503);
    reply = s_test_ask (client, get_b);
    assert (s_test_code (reply) == 503);
    sn_msg_destroy (&reply);
    scan = sn_replay_scan_next (scans, &p, &reread);
    assert (scan && p == pb && !reread);
    sn_replay_scan_pass (scans, back, &scan);
    assert (s_test_ask_until (client, get_b) == 200);

    //  A re-read of b's partition leaves it served while its page waits
    uint64_t before = sn_replay_test_reread_ask (batch, pb);
    scan = sn_replay_scan_next (scans, &p, &reread);
    assert (scan && p == pb && reread);
    reply = s_test_ask (client, get_b);
    assert (s_test_code (reply) == 200);
    sn_msg_destroy (&reply);
    sn_replay_scan_pass (scans, back, &scan);
    sn_replay_test_rereads_past (batch, before, 5000);

    free (taking);
    zsock_destroy (&waiting);
    zsock_destroy (&client);
    zactor_destroy (&batch);
    zsock_destroy (&back);
    zsock_destroy (&scans);
    zsock_destroy (&mesh);
    zsock_destroy (&feed);
}

void
sn_batch_test (bool verbose)
{
    //  The signature is HMAC-SHA256 of the body in hex (RFC 4231, test case 2)
    char signature[80];
    const char *text = "what do ya want for nothing?";
    sn_batch_sign ("Jefe", text, strlen (text), signature);
    assert (streq (signature,
                   "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
    char *random = s_random_hex (32);
    assert (strlen (random) == 64);
    free (random);

    char dir[] = "/tmp/sn_batch_test_XXXXXX";
    assert (mkdtemp (dir));
    char store_ep[64], queue_ep[64], webhook_ep[64], batch_ep[64], error[256];
    snprintf (store_ep, sizeof store_ep, "inproc://sn-batch-test-store-%d", getpid ());
    snprintf (queue_ep, sizeof queue_ep, "inproc://sn-batch-test-queue-%d", getpid ());
    snprintf (webhook_ep, sizeof webhook_ep, "inproc://sn-batch-test-webhook-%d", getpid ());
    snprintf (batch_ep, sizeof batch_ep, "inproc://sn-batch-test-%d", getpid ());
    sn_store_config_t store_config = {dir, "t1", 8, 64 << 20, store_ep, false, 0};
    zactor_t *store = sn_store_new (&store_config, error, sizeof error);
    sn_webhook_config_t webhook_config = {webhook_ep, NULL, NULL, false, verbose};
    zactor_t *webhook = sn_webhook_new (&webhook_config, error, sizeof error);
    sn_queue_config_t queue_config = {queue_ep, store_ep, batch_ep, 8, 5000, verbose,
                                      NULL,     NULL,     NULL,     0, 0};
    zactor_t *queue = sn_queue_new (&queue_config, error, sizeof error);
    sn_batch_config_t config = {batch_ep, store_ep, queue_ep, webhook_ep, 8,
                                verbose,  NULL,     NULL,     NULL,       0};
    zactor_t *batch = sn_batch_new (&config, error, sizeof error);
    assert (store && webhook && queue && batch);
    zsock_t *client = zsock_new_dealer (batch_ep);
    zsock_t *receiver = zsock_new (ZMQ_STREAM);
    int port = zsock_bind (receiver, "tcp://127.0.0.1:*");
    assert (port > 0);

    //  primary always exists and cannot be deleted; others must be created
    sn_msg_t *reply = s_test_ask (client, "{\"op\": \"batch.get\", \"bucket_id\": \"primary\"}");
    assert (s_test_code (reply) == 200);
    sn_msg_destroy (&reply);
    reply = s_test_ask (client, "{\"op\": \"batch.delete\", \"bucket_id\": \"primary\"}");
    assert (s_test_code (reply) == 409);
    sn_msg_destroy (&reply);
    reply = s_test_ask (client, "{\"op\": \"batch.get\", \"bucket_id\": \"b\"}");
    assert (s_test_code (reply) == 404);
    sn_msg_destroy (&reply);

    //  A handshake answered with another token creates nothing
    char *create = zsys_sprintf ("{\"op\": \"batch.create\", \"bucket_id\": \"b\", "
                                 "\"batch_timeout\": 10, \"callback_url\": "
                                 "\"http://127.0.0.1:%d/hook\"}",
                                 port);
    sn_pack_t *pack = sn_pack_new ();
    char *json = zsys_sprintf ("{\"rid\": 1, %s", create + 1);
    assert (sn_json_to_pack (json, strlen (json), pack, error, sizeof error) == 0);
    free (json);
    for (int round = 0; round < 2; round++) {
        zframe_t *frame = sn_pack_frame (pack);
        zframe_send (&frame, client, 0);
        zframe_t *peer;
        char *request = s_test_http_read (receiver, &peer);
        char *token = strstr (request, "\"token\":\"");
        assert (token && strstr (request, "\"bucket_id\":\"b\""));
        token += 9;
        *strchr (token, '"') = 0;
        char *answer = zsys_sprintf ("{\"token\": \"%s\"}", round == 0 ? "wrong" : token);
        s_test_http_answer (receiver, &peer, 200, answer);
        free (answer);
        free (request);
        frame = zframe_recv (client);
        reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
        zframe_destroy (&frame);
        if (round == 0) {
            assert (s_test_code (reply) == 502);
            char *failure = sn_value_get_strdup (sn_msg_root (reply), "error");
            assert (failure && strstr (failure, "token:"));
            free (failure);
        }
        else
            assert (s_test_code (reply) == 201);
        sn_msg_destroy (&reply);
    }
    sn_pack_destroy (&pack);
    reply = s_test_ask (client, create);
    assert (s_test_code (reply) == 409);
    sn_msg_destroy (&reply);
    free (create);
    reply = s_test_ask (client, "{\"op\": \"batch.get\", \"bucket_id\": \"b\"}");
    assert (s_test_code (reply) == 200);
    sn_msg_destroy (&reply);

    //  A finished invocation is committed; the receiver refuses the first POST and
    //  gets the same key and body again
    const char *note = "{\"op\": \"finished\", \"rid\": 0, \"bucket_id\": \"b\", \"event\": "
                       "{\"id\": \"i1\", \"code\": 200, \"token\": \"t\", \"data\": {\"n\": 1}, "
                       "\"response\": [1]}}";
    pack = sn_pack_new ();
    assert (sn_json_to_pack (note, strlen (note), pack, error, sizeof error) == 0);
    for (int copy = 0; copy < 2; copy++) {
        zframe_t *frame = sn_pack_frame (pack);
        zframe_send (&frame, client, 0);
    }
    sn_pack_destroy (&pack);
    char *first = NULL;
    for (int round = 0; round < 2; round++) {
        zframe_t *peer;
        char *request = s_test_http_read (receiver, &peer);
        assert (strstr (request, "X-Supernode-Signature: sha256="));
        char *body = strstr (request, "\r\n\r\n") + 4;
        assert (streq (body, "{\"code\":200,\"bucket_id\":\"b\",\"metadata\":{},\"data\":[{"
                             "\"code\":200,\"token\":\"t\",\"metadata\":{\"n\":1},"
                             "\"response\":[1]}]}"));
        char *key = strstr (request, "Idempotency-Key: ");
        assert (key);
        key[17 + 32] = 0;
        if (round == 0)
            first = strdup (key);
        else
            assert (streq (first, key));
        s_test_http_answer (receiver, &peer, round == 0 ? 503 : 204, "");
        free (request);
    }
    free (first);
    while (true) {
        reply = s_test_ask (client, "{\"op\": \"batch.get\", \"bucket_id\": \"b\"}");
        uint64_t delivered = 0;
        sn_value_uint (
            sn_value_get (sn_value_get (sn_value_get (sn_msg_root (reply), "bucket"), "counts"),
                          "delivered"),
            &delivered);
        sn_msg_destroy (&reply);
        if (delivered == 1)
            break;
        zclock_sleep (5); //  poll interval, not synchronisation
    }

    //  The same result again is not committed twice; a restart keeps it all
    zsock_destroy (&client);
    zactor_destroy (&batch);
    batch = sn_batch_new (&config, error, sizeof error);
    assert (batch);
    client = zsock_new_dealer (batch_ep);
    reply = s_test_ask (client, "{\"op\": \"batch.get\", \"bucket_id\": \"b\"}");
    const sn_value_t *bucket = sn_value_get (sn_msg_root (reply), "bucket");
    uint64_t delivered = 0, waiting = 9;
    sn_value_uint (sn_value_get (sn_value_get (bucket, "counts"), "delivered"), &delivered);
    sn_value_uint (sn_value_get (sn_value_get (bucket, "counts"), "waiting"), &waiting);
    uint64_t pending = 9;
    sn_value_uint (sn_value_get (bucket, "commits_pending"), &pending);
    assert (delivered == 1 && waiting == 0 && pending == 0);
    zstr_sendx (batch, "REPLAY", "0", NULL);
    char *answer = zstr_recv (batch);
    assert (streq (answer, "OK"));
    free (answer);
    assert (
        sn_value_streq (sn_value_get (sn_value_get (bucket, "last_commit"), "state"), "delivered"));
    sn_msg_destroy (&reply);
    zstr_sendx (batch, "SEEN", "b", NULL);
    answer = zstr_recv (batch);
    assert (streq (answer, "1"));
    free (answer);

    //  With a window of 50 ms the committed id is forgotten (50 ms of margin later);
    //  what was delivered stays so
    zsock_destroy (&client);
    zactor_destroy (&batch);
    config.keep_finished = 50;
    batch = sn_batch_new (&config, error, sizeof error);
    assert (batch);
    client = zsock_new_dealer (batch_ep);
    int64_t deadline = zclock_mono () + 5000;
    while (true) {
        zstr_sendx (batch, "SEEN", "b", NULL);
        answer = zstr_recv (batch);
        bool forgotten = streq (answer, "0");
        free (answer);
        if (forgotten)
            break;
        assert (zclock_mono () < deadline);
        zclock_sleep (10); //  poll interval, not synchronisation
    }
    reply = s_test_ask (client, "{\"op\": \"batch.get\", \"bucket_id\": \"b\"}");
    bucket = sn_value_get (sn_msg_root (reply), "bucket");
    sn_value_uint (sn_value_get (sn_value_get (bucket, "counts"), "delivered"), &delivered);
    sn_value_uint (sn_value_get (sn_value_get (bucket, "counts"), "waiting"), &waiting);
    assert (delivered == 1 && waiting == 0);
    sn_msg_destroy (&reply);
    //  A re-read over the bucket held changes nothing it knows: the result whose id
    //  was forgotten is found committed again (and forgotten again), not collected
    //  for a second commit, and the delivered commit is neither posted again nor
    //  counted twice
    sn_replay_test_reread (batch, sn_partition ("b", 1, 8));
    reply = s_test_ask (client, "{\"op\": \"batch.get\", \"bucket_id\": \"b\"}");
    bucket = sn_value_get (sn_msg_root (reply), "bucket");
    pending = 9;
    sn_value_uint (sn_value_get (sn_value_get (bucket, "counts"), "delivered"), &delivered);
    sn_value_uint (sn_value_get (sn_value_get (bucket, "counts"), "waiting"), &waiting);
    sn_value_uint (sn_value_get (bucket, "commits_pending"), &pending);
    assert (delivered == 1 && waiting == 0 && pending == 0);
    assert (
        sn_value_streq (sn_value_get (sn_value_get (bucket, "last_commit"), "state"), "delivered"));
    sn_msg_destroy (&reply);
    zstr_sendx (batch, "REREAD", "99", NULL);
    answer = zstr_recv (batch);
    assert (strstr (answer, "no partition"));
    free (answer);

    //  A takeover whose scans fail partway is not served: b answers 503 and nothing
    //  of it is held, until a later try replays it whole
    zsock_destroy (&client);
    zactor_destroy (&batch);
    zactor_t *proxy = zactor_new (sn_owners_scan_proxy, store_ep);
    char *scans = zsys_sprintf ("%s-scans", store_ep);
    sn_batch_config_t through = config;
    through.keep_finished = 0;
    through.store = scans;
    batch = sn_batch_new (&through, error, sizeof error);
    assert (batch);
    client = zsock_new_dealer (batch_ep);
    //  One page refused: the retry 1 s later passes, however late the test looks
    zstr_send (proxy, "FAIL1");
    answer = zstr_recv (proxy);
    assert (streq (answer, "OK"));
    free (answer);
    char number[16];
    uint32_t p = sn_partition ("b", 1, 8);
    snprintf (number, sizeof number, "%u", p);
    zstr_sendx (batch, "REPLAY", number, NULL);
    answer = zstr_recv (batch);
    assert (strstr (answer, "store is busy"));
    free (answer);
    reply = s_test_ask (client, "{\"op\": \"batch.get\", \"bucket_id\": \"b\"}");
    assert (s_test_code (reply) == 503);
    char *taking = zsys_sprintf ("partition %u is being taken over here, try again", p);
    char *said = sn_value_get_strdup (sn_msg_root (reply), "error");
    assert (said && streq (said, taking));
    free (said);
    free (taking);
    sn_msg_destroy (&reply);
    zstr_sendx (batch, "SEEN", "b", NULL);
    answer = zstr_recv (batch);
    assert (streq (answer, "none"));
    free (answer);
    deadline = zclock_mono () + 20000;
    while (true) {
        reply = s_test_ask (client, "{\"op\": \"batch.get\", \"bucket_id\": \"b\"}");
        if (s_test_code (reply) == 200)
            break;
        assert (s_test_code (reply) == 503 && zclock_mono () < deadline);
        sn_msg_destroy (&reply);
        zclock_sleep (10); //  poll interval, not synchronisation
    }
    bucket = sn_value_get (sn_msg_root (reply), "bucket");
    delivered = 0;
    waiting = pending = 9;
    sn_value_uint (sn_value_get (sn_value_get (bucket, "counts"), "delivered"), &delivered);
    sn_value_uint (sn_value_get (sn_value_get (bucket, "counts"), "waiting"), &waiting);
    sn_value_uint (sn_value_get (bucket, "commits_pending"), &pending);
    assert (delivered == 1 && waiting == 0 && pending == 0);
    assert (
        sn_value_streq (sn_value_get (sn_value_get (bucket, "last_commit"), "state"), "delivered"));
    sn_msg_destroy (&reply);
    zstr_sendx (batch, "SEEN", "b", NULL);
    answer = zstr_recv (batch);
    assert (streq (answer, "1"));
    free (answer);
    assert (sn_actor_count (proxy, "REFUSED") == 1);

    //  A creation that completes while its partition's takeover keeps failing is
    //  answered 201 but not held (nothing of it is committed or posted): the replay
    //  that succeeds loads it from the log
    char name[16];
    for (int index = 0;; index++) {
        snprintf (name, sizeof name, "c%d", index);
        if (sn_partition (name, strlen (name), 8) == p)
            break;
    }
    char *creation = zsys_sprintf ("{\"rid\": 2, \"op\": \"batch.create\", \"bucket_id\": "
                                   "\"%s\", \"batch_timeout\": 10, \"callback_url\": "
                                   "\"http://127.0.0.1:%d/hook\"}",
                                   name, port);
    sn_pack_t *creating = sn_pack_new ();
    assert (sn_json_to_pack (creation, strlen (creation), creating, error, sizeof error) == 0);
    free (creation);
    zframe_t *frame = sn_pack_frame (creating);
    zframe_send (&frame, client, 0);
    sn_pack_destroy (&creating);
    zframe_t *peer;
    char *request = s_test_http_read (receiver, &peer);
    char *token = strstr (request, "\"token\":\"");
    assert (token);
    token += 9;
    *strchr (token, '"') = 0;
    zstr_send (proxy, "FAIL");
    answer = zstr_recv (proxy);
    assert (streq (answer, "OK"));
    free (answer);
    zstr_sendx (batch, "REPLAY", number, NULL);
    answer = zstr_recv (batch);
    assert (strstr (answer, "store is busy"));
    free (answer);
    char *handshake = zsys_sprintf ("{\"token\": \"%s\"}", token);
    s_test_http_answer (receiver, &peer, 200, handshake);
    free (handshake);
    free (request);
    frame = zframe_recv (client);
    reply = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    zframe_destroy (&frame);
    assert (s_test_code (reply) == 201);
    sn_msg_destroy (&reply);
    zstr_sendx (batch, "SEEN", name, NULL);
    answer = zstr_recv (batch);
    assert (streq (answer, "none"));
    free (answer);
    zstr_send (proxy, "PASS");
    answer = zstr_recv (proxy);
    free (answer);
    char *get = zsys_sprintf ("{\"op\": \"batch.get\", \"bucket_id\": \"%s\"}", name);
    deadline = zclock_mono () + 20000;
    while (true) {
        reply = s_test_ask (client, get);
        if (s_test_code (reply) == 200)
            break;
        assert (s_test_code (reply) == 503 && zclock_mono () < deadline);
        sn_msg_destroy (&reply);
        zclock_sleep (10); //  poll interval, not synchronisation
    }
    sn_msg_destroy (&reply);
    free (get);

    //  A result only the log holds (as if written on a replica not read): a
    //  re-read that fails after its first page keeps nothing of it; one that
    //  completes adds it alone (i1, committed, is not), posted once
    zsock_t *log = zsock_new_dealer (store_ep);
    reply = s_test_ask (log, "{\"op\": \"put\", \"type\": \"invocation.done\", \"pkey\": "
                             "\"b\", \"event\": {\"bucket_id\": \"b\", \"id\": \"i2\", "
                             "\"code\": 200, \"token\": \"t2\", \"response\": [2]}}");
    assert (s_test_code (reply) == 201);
    sn_msg_destroy (&reply);
    zsock_destroy (&log);
    zstr_send (proxy, "FAIL");
    answer = zstr_recv (proxy);
    free (answer);
    uint64_t refused = sn_actor_count (proxy, "REFUSED");
    sn_replay_test_reread (batch, p);
    assert (sn_actor_count (proxy, "REFUSED") == refused + 1);
    char *counts = s_test_counts (client);
    assert (streq (counts, "1/0/0"));
    free (counts);
    zstr_send (proxy, "PASS");
    answer = zstr_recv (proxy);
    free (answer);
    sn_replay_test_reread (batch, p);
    request = s_test_http_read (receiver, &peer);
    assert (strstr (request, "\"token\":\"t2\"") && !strstr (request, "\"token\":\"t\""));
    s_test_http_answer (receiver, &peer, 204, "");
    free (request);
    deadline = zclock_mono () + 20000;
    while (true) {
        counts = s_test_counts (client);
        bool done = streq (counts, "2/0/0");
        free (counts);
        if (done)
            break;
        assert (zclock_mono () < deadline);
        zclock_sleep (10); //  poll interval, not synchronisation
    }
    //  Read again, whole: nothing more to commit or post
    sn_replay_test_reread (batch, p);
    counts = s_test_counts (client);
    assert (streq (counts, "2/0/0"));
    free (counts);
    zactor_destroy (&proxy);
    free (scans);
    zsock_destroy (&client);
    zactor_destroy (&batch);
    s_test_replay_async (&config, store_ep);

    zsock_destroy (&receiver);
    zactor_destroy (&queue);
    zactor_destroy (&webhook);
    zactor_destroy (&store);
    char *command = zsys_sprintf ("rm -rf '%s'", dir);
    assert (system (command) == 0);
    free (command);
}
