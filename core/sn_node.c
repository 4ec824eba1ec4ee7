/*  sn_node: one running supernode, its actors wired together.
 */
#include "sn_node.h"
#include "sn_frontend.h"
#include "sn_gateway.h"
#include "sn_mesh.h"
#include "sn_queue.h"
#include "sn_batch.h"
#include "sn_webhook.h"
#include "sn_schema.h"
#include "sn_store.h"
#include "sn_client.h"
#include "sn_dispatch.h"
#include "sn_key.h"
#include "sn_zap.h"

//  ms of silence after which a worker's invocations go back to the queue.
#define SN_NODE_WORKER_TIMEOUT 6000

struct _sn_node_t {
    sn_schema_t *schema;   //  every op's schema, shared read-only
    zactor_t *store;       //  the LMDB store
    zactor_t *mesh;        //  membership and the partition table
    zactor_t *queue;       //  invocations and workers
    zactor_t *webhook;     //  every outbound HTTP request
    zactor_t *batch;       //  buckets and their commits
    zactor_t *dispatch;    //  jobs, tasks and device agents
    zactor_t *frontend;    //  decodes, validates and routes every request
    sn_gateway_t *gateway; //  HTTP and WebSocket
    sn_zap_t *zap;         //  CURVE: who is let in on the clients and peers endpoints
    char curve_public[41]; //  CURVE on clients: the node's keys (Z85), or "": open
    char curve_secret[41];
    char cluster_public[41]; //  CURVE on peer links: the cluster's keys, or "": open
    char cluster_secret[41];
    char clients_domain[64]; //  ZAP domains, named after the node: two nodes may share a
    char peers_domain[64];   //  process, and so the ZAP handler
};

//  Load the certificates of the CURVE options and start answering the handshakes
//  on both endpoints. Returns 0, or -1 with the reason in error.
static int
s_curve_start (sn_node_t *self, const sn_config_t *config, char *error, size_t size)
{
    if (!config->curve_cert && !config->curve_cluster)
        return 0;
    char reason[512];
    snprintf (self->clients_domain, sizeof self->clients_domain, "sn-clients-%p", (void *) self);
    snprintf (self->peers_domain, sizeof self->peers_domain, "sn-peers-%p", (void *) self);
    self->zap = sn_zap_new (error, size);
    if (!self->zap)
        return -1;
    if (config->curve_cert && (sn_zap_cert_load (config->curve_cert, true, self->curve_public,
                                                 self->curve_secret, reason, sizeof reason) ||
                               sn_zap_allow_dir (self->zap, self->clients_domain,
                                                 config->curve_clients, reason, sizeof reason))) {
        snprintf (error, size, "curve: %s", reason);
        return -1;
    }
    if (config->curve_cluster &&
        (sn_zap_cert_load (config->curve_cluster, true, self->cluster_public, self->cluster_secret,
                           reason, sizeof reason) ||
         sn_zap_allow_key (self->zap, self->peers_domain, self->cluster_public))) {
        snprintf (error, size, "curve-cluster: %s", reason);
        return -1;
    }
    return 0;
}

sn_node_t *
sn_node_new (const sn_config_t *config, char *error, size_t size)
{
    sn_node_t *self = (sn_node_t *) zmalloc (sizeof (sn_node_t));
    //  inproc names are per process: the node's address keeps two nodes in one
    //  process (the selftests) apart.
    char store_endpoint[64], mesh_endpoint[64], front_endpoint[64], feed_endpoint[64];
    char queue_endpoint[64], batch_endpoint[64], webhook_endpoint[64];
    char dispatch_endpoint[64], jobs_endpoint[64];
    snprintf (dispatch_endpoint, sizeof dispatch_endpoint, "inproc://sn-dispatch-%p",
              (void *) self);
    snprintf (jobs_endpoint, sizeof jobs_endpoint, "inproc://sn-jobs-%p", (void *) self);
    snprintf (store_endpoint, sizeof store_endpoint, "inproc://sn-store-%p", (void *) self);
    snprintf (mesh_endpoint, sizeof mesh_endpoint, "inproc://sn-mesh-%p", (void *) self);
    snprintf (front_endpoint, sizeof front_endpoint, "inproc://sn-front-%p", (void *) self);
    char internal_endpoint[64];
    snprintf (internal_endpoint, sizeof internal_endpoint, "inproc://sn-front-internal-%p",
              (void *) self);
    //  The mesh publishes the partition table here for actors that own partitions
    snprintf (feed_endpoint, sizeof feed_endpoint, "inproc://sn-feed-%p", (void *) self);
    snprintf (queue_endpoint, sizeof queue_endpoint, "inproc://sn-queue-%p", (void *) self);
    snprintf (batch_endpoint, sizeof batch_endpoint, "inproc://sn-batch-%p", (void *) self);
    snprintf (webhook_endpoint, sizeof webhook_endpoint, "inproc://sn-webhook-%p", (void *) self);

    if (s_curve_start (self, config, error, size))
        goto failed;
    self->schema = sn_schema_new ();
    if (!self->schema) {
        snprintf (error, size, "embedded schemas do not parse");
        goto failed;
    }
    sn_store_config_t store = {config->data_dir,       config->name,   config->partitions,
                               config->map_size,       store_endpoint, config->verbose,
                               config->event_retention};
    self->store = sn_store_new (&store, error, size);
    if (!self->store)
        goto failed;
    sn_mesh_config_t mesh = {.name = config->name,
                             .endpoint = config->peers,
                             .join = config->join,
                             .partitions = config->partitions,
                             .rf = config->rf,
                             .heartbeat_ms = config->heartbeat,
                             .suspect_ms = config->suspect,
                             .dead_ms = config->dead,
                             .ops_endpoint = mesh_endpoint,
                             .verbose = config->verbose,
                             .store = store_endpoint,
                             .write_timeout_ms = config->write_timeout,
                             .anti_entropy_ms = config->anti_entropy,
                             .frontend = internal_endpoint,
                             .feed = feed_endpoint,
                             .curve_public = *self->cluster_public ? self->cluster_public : NULL,
                             .curve_secret = *self->cluster_secret ? self->cluster_secret : NULL,
                             .zap_domain = self->peers_domain,
                             .event_retention_ms = config->event_retention};
    self->mesh = sn_mesh_new (&mesh, error, size);
    if (!self->mesh)
        goto failed;
    //  Queue and buckets: writes replicated through the mesh, replays through the
    //  mesh's scan (every reachable replica's events, not only this node's store: a
    //  write acknowledged at QUORUM may have missed it), and the partitions this node
    //  owns from the mesh's placement feed
    sn_webhook_config_t webhook = {webhook_endpoint, config->hooks_allow, config->hooks_deny, false,
                                   config->verbose};
    self->webhook = sn_webhook_new (&webhook, error, size);
    if (!self->webhook)
        goto failed;
    sn_batch_config_t batch = {
        batch_endpoint,  mesh_endpoint, queue_endpoint, webhook_endpoint, config->partitions,
        config->verbose, mesh_endpoint, feed_endpoint,  mesh_endpoint,    config->keep_finished};
    self->batch = sn_batch_new (&batch, error, size);
    if (!self->batch)
        goto failed;
    //  The mesh tries a forward on each replica in turn (rf at most), each try as long
    //  as a replica write: its answer comes within that. Twice that, so that an answer
    //  the mesh's loop gives late while busy with other requests is still heard: a
    //  call given up on too early sends its push again or tries its result again.
    int64_t call_ttl = 2 * (int64_t) config->rf * config->write_timeout;
    sn_queue_config_t queue = {
        queue_endpoint,         mesh_endpoint,
        batch_endpoint,         config->partitions,
        SN_NODE_WORKER_TIMEOUT, config->verbose,
        mesh_endpoint,          feed_endpoint,
        mesh_endpoint,          call_ttl < INT_MAX ? (int) call_ttl : INT_MAX,
        config->keep_finished};
    self->queue = sn_queue_new (&queue, error, size);
    if (!self->queue)
        goto failed;
    //  Jobs: events replicated through the mesh, replayed through its scan, for the
    //  partitions the mesh's placement makes this node the owner of
    sn_dispatch_config_t dispatch = {dispatch_endpoint,  mesh_endpoint,        jobs_endpoint,
                                     config->partitions, config->verbose,      mesh_endpoint,
                                     feed_endpoint,      config->keep_finished};
    self->dispatch = sn_dispatch_new (&dispatch, error, size);
    if (!self->dispatch)
        goto failed;
    sn_frontend_config_t frontend = {
        config->clients,
        front_endpoint,
        {{"cluster put puts get bulk range", mesh_endpoint},
         {"enqueue invocation worker.hello worker.heartbeat "
          "worker.progress worker.result bucket.counts "
          "worker.at worker.push "
          "queue.stats",
          queue_endpoint},
         {"batch.create batch.get batch.update batch.delete "
          "batch.stats",
          batch_endpoint},
         {"job.create job.get job.list job.cancel task.get agent.hello "
          "agent.heartbeat agent.progress agent.result agent.at agent.push job.watch "
          "job.update "
          "dispatch.stats",
          dispatch_endpoint},
         {"*", store_endpoint}},
        self->schema,
        config->verbose,
        internal_endpoint,
        "worker.at worker.push agent.at agent.push job.watch job.update",
        *self->curve_secret ? self->curve_secret : NULL,
        self->clients_domain};
    self->frontend = sn_frontend_new (&frontend, error, size);
    if (!self->frontend)
        goto failed;
    sn_gateway_config_t gateway = {config->http,         front_endpoint,       config->max_body,
                                   config->http_timeout, config->http_threads, config->verbose,
                                   jobs_endpoint,        config->http_tokens,  config->http_cert};
    self->gateway = sn_gateway_new (&gateway, error, size);
    if (!self->gateway)
        goto failed;
    return self;
failed:
    sn_node_destroy (&self);
    return NULL;
}

void
sn_node_destroy (sn_node_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_node_t *self = *self_p;
        sn_gateway_destroy (&self->gateway);
        zactor_destroy (&self->frontend);
        zactor_destroy (&self->queue);
        zactor_destroy (&self->batch);
        zactor_destroy (&self->webhook);
        zactor_destroy (&self->dispatch);
        zactor_destroy (&self->mesh);
        zactor_destroy (&self->store);
        sn_schema_destroy (&self->schema);
        //  Last: no CURVE socket may outlive the handler, or libzmq lets anyone in
        sn_zap_destroy (&self->zap);
        explicit_bzero (self->curve_secret, sizeof self->curve_secret);
        explicit_bzero (self->cluster_secret, sizeof self->cluster_secret);
        free (self);
        *self_p = NULL;
    }
}

//  Send the request in pack on sock and return the decoded answer.
static sn_msg_t *
s_test_ask (zsock_t *sock, sn_pack_t *pack)
{
    zframe_t *frame = sn_pack_frame (pack);
    assert (zframe_send (&frame, sock, 0) == 0);
    zpoller_t *poller = zpoller_new (sock, NULL);
    assert (zpoller_wait (poller, 5000) == sock);
    zpoller_destroy (&poller);
    frame = zframe_recv (sock);
    sn_msg_t *msg = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
    zframe_destroy (&frame);
    assert (msg);
    return msg;
}

//  A scan of p (limit, from and prefix when given) asked of sock.
static sn_msg_t *
s_test_scan (zsock_t *sock, sn_pack_t *pack, uint32_t p, const char *from)
{
    sn_pack_reset (pack);
    sn_pack_map (pack, 5 + !!from);
    sn_pack_kv_str (pack, "op", "scan");
    sn_pack_kv_uint (pack, "rid", 1);
    sn_pack_kv_uint (pack, "p", p);
    sn_pack_kv_uint (pack, "limit", 3);
    sn_pack_kv_str (pack, "prefix", "test.");
    if (from)
        sn_pack_kv_str (pack, "from", from);
    return s_test_ask (sock, pack);
}

//  Whether the mesh on sock lists count members, all alive.
static bool
s_test_all_alive (zsock_t *sock, sn_pack_t *pack, size_t count)
{
    sn_pack_reset (pack);
    sn_pack_map (pack, 2);
    sn_pack_kv_str (pack, "op", "cluster");
    sn_pack_kv_uint (pack, "rid", 1);
    sn_msg_t *msg = s_test_ask (sock, pack);
    const sn_value_t *members = sn_value_get (sn_msg_root (msg), "members");
    bool alive = sn_value_size (members) == count;
    for (size_t index = 0; index < sn_value_size (members); index++)
        alive = alive &&
                sn_value_streq (sn_value_get (sn_value_at (members, index), "status"), "alive");
    sn_msg_destroy (&msg);
    return alive;
}

//  Put an event of type into the store on sock directly, under key when given.
static void
s_test_store_put (zsock_t *sock, sn_pack_t *pack, const char *key, const char *type, int index)
{
    sn_pack_reset (pack);
    sn_pack_map (pack, 5 + !!key);
    sn_pack_kv_str (pack, "op", "put");
    sn_pack_kv_uint (pack, "rid", 1);
    sn_pack_kv_str (pack, "type", type);
    sn_pack_kv_str (pack, "pkey", "merged");
    if (key)
        sn_pack_kv_str (pack, "key", key);
    sn_pack_str (pack, "event");
    sn_pack_map (pack, 1);
    sn_pack_kv_uint (pack, "index", (uint64_t) index);
    sn_msg_t *put = s_test_ask (sock, pack);
    uint64_t code = 0;
    assert (sn_value_uint (sn_value_get (sn_msg_root (put), "code"), &code) && code == 201);
    sn_msg_destroy (&put);
}

//  The keys of scanning p on sock from the start, page by page (at most 3 a page),
//  appended to keys ("key\n" each).
static void
s_test_scan_all (zsock_t *sock, sn_pack_t *pack, uint32_t p, zchunk_t *keys)
{
    char *from = NULL;
    do {
        sn_msg_t *page = s_test_scan (sock, pack, p, from);
        uint64_t code = 0;
        assert (sn_value_uint (sn_value_get (sn_msg_root (page), "code"), &code) && code == 200);
        const sn_value_t *events = sn_value_get (sn_msg_root (page), "events");
        assert (sn_value_size (events) <= 3);
        for (size_t index = 0; index < sn_value_size (events); index++) {
            char *key = sn_value_get_strdup (sn_value_at (events, index), "key");
            assert (key);
            zchunk_extend (keys, key, strlen (key));
            zchunk_extend (keys, "\n", 1);
            free (key);
        }
        free (from);
        from = sn_value_get_strdup (sn_msg_root (page), "next");
        sn_msg_destroy (&page);
    } while (from);
}

//  Start a node of config on free client and peer ports: bind any two, note them,
//  let them go together, so that neither is handed out again for the other. Another
//  process may take one before the node binds it: then other ports are tried.
static sn_node_t *
s_test_node_new (sn_config_t *config)
{
    sn_node_t *node = NULL;
    char error[256];
    for (int attempt = 0; !node && attempt < 10; attempt++) {
        zsock_t *probe = zsock_new (ZMQ_ROUTER), *probe_peers = zsock_new (ZMQ_ROUTER);
        int port = zsock_bind (probe, "tcp://127.0.0.1:*");
        int peers_port = zsock_bind (probe_peers, "tcp://127.0.0.1:*");
        assert (port > 0 && peers_port > 0);
        zsock_destroy (&probe);
        zsock_destroy (&probe_peers);
        free (config->clients);
        config->clients = zsys_sprintf ("tcp://127.0.0.1:%d", port);
        free (config->peers);
        config->peers = zsys_sprintf ("tcp://127.0.0.1:%d", peers_port);
        node = sn_node_new (config, error, sizeof error);
        if (!node)
            zsys_error ("sn_node: %s", error);
        assert (node || strstr (error, "cannot bind"));
    }
    assert (node);
    return node;
}

void
sn_node_test (bool verbose)
{
    char dir[] = "/tmp/sn_node_test_XXXXXX";
    assert (mkdtemp (dir));
    char error[256];
    sn_config_t *config = sn_config_new ();
    free (config->data_dir);
    config->data_dir = strdup (dir);
    free (config->http);
    config->http = strdup ("127.0.0.1:0");
    config->map_size = 64 << 20;
    config->verbose = verbose;
    //  The two-node merge below needs stores that differ: no repair meanwhile
    config->anti_entropy = 3600000;

    sn_node_t *node = s_test_node_new (config);
    sn_client_t *client = sn_client_new (config->clients);
    char *key = NULL, *event = NULL;
    assert (sn_client_put (client, "{\"node\": \"test\"}", &key) == 201);
    assert (sn_client_get (client, key, &event) == 200);
    assert (streq (event, "{\"node\":\"test\"}"));
    free (event);
    free (key);

    //  The mesh answers for the cluster: one member, this node, alive
    char *cluster = NULL;
    assert (sn_client_request (client, "{\"op\": \"cluster\"}", &cluster) == 200);
    assert (strstr (cluster, "\"status\":\"alive\""));
    //  ... and a node alone holds and owns every partition
    assert (!strstr (cluster, "\"replicas\":[]"));
    assert (!strstr (cluster, "\"owner\":null"));
    free (cluster);

    //  The mesh's scan of a node alone is its store's scan, page for page and item
    //  for item; a malformed scan is refused and the mesh goes on serving
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://sn-mesh-%p", (void *) node);
    zsock_t *mesh = zsock_new_dealer (endpoint);
    snprintf (endpoint, sizeof endpoint, "inproc://sn-store-%p", (void *) node);
    zsock_t *store = zsock_new_dealer (endpoint);
    assert (mesh && store);
    sn_pack_t *pack = sn_pack_new ();
    for (int index = 0; index < 7; index++) {
        sn_pack_reset (pack);
        sn_pack_map (pack, 5);
        sn_pack_kv_str (pack, "op", "put");
        sn_pack_kv_uint (pack, "rid", 1);
        sn_pack_kv_str (pack, "type", index % 3 ? "test.scan" : "other.scan");
        sn_pack_kv_str (pack, "pkey", "scanned");
        sn_pack_str (pack, "event");
        sn_pack_map (pack, 1);
        sn_pack_kv_uint (pack, "index", (uint64_t) index);
        sn_msg_t *put = s_test_ask (mesh, pack);
        uint64_t code = 0;
        assert (sn_value_uint (sn_value_get (sn_msg_root (put), "code"), &code) && code == 201);
        sn_msg_destroy (&put);
    }
    uint32_t p = sn_partition ("scanned", 7, config->partitions);
    char *from = NULL;
    size_t pages = 0, events = 0;
    do {
        sn_msg_t *ours = s_test_scan (mesh, pack, p, from);
        sn_msg_t *theirs = s_test_scan (store, pack, p, from);
        //  The same page, and the mesh names the one member it merged: this node
        const char *fields[] = {"code", "p", "events", "next"};
        for (size_t field = 0; field < 4; field++)
            assert (sn_value_equal (sn_value_get (sn_msg_root (ours), fields[field]),
                                    sn_value_get (sn_msg_root (theirs), fields[field])));
        assert (sn_value_size (sn_value_get (sn_msg_root (ours), "merged")) == 1);
        events += sn_value_size (sn_value_get (sn_msg_root (ours), "events"));
        pages++;
        free (from);
        from = sn_value_get_strdup (sn_msg_root (ours), "next");
        sn_msg_destroy (&ours);
        sn_msg_destroy (&theirs);
    } while (from);
    assert (pages == 2 && events == 4);
    const char *bad[] = {"p",     "p=P",  "limit=0",  "limit=1001", "from=long",
                         "p=str", "to=7", "prefix=7", "prefix=long"};
    char text[300];
    memset (text, 'x', sizeof text - 1);
    text[sizeof text - 1] = 0;
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        sn_pack_reset (pack);
        //  op, rid, and p unless that is what is wrong, and the field that is
        bool no_p = streq (bad[index], "p") || strncmp (bad[index], "p=", 2) == 0;
        sn_pack_map (pack, streq (bad[index], "p") ? 2 : no_p ? 3 : 4);
        sn_pack_kv_str (pack, "op", "scan");
        sn_pack_kv_uint (pack, "rid", 2);
        if (!no_p)
            sn_pack_kv_uint (pack, "p", p);
        if (streq (bad[index], "p=P"))
            sn_pack_kv_uint (pack, "p", config->partitions);
        else if (streq (bad[index], "p=str"))
            sn_pack_kv_str (pack, "p", "one");
        else if (streq (bad[index], "limit=0") || streq (bad[index], "limit=1001"))
            sn_pack_kv_uint (pack, "limit", streq (bad[index], "limit=0") ? 0 : 1001);
        else if (streq (bad[index], "from=long"))
            sn_pack_kv_str (pack, "from", text);
        else if (streq (bad[index], "to=7"))
            sn_pack_kv_uint (pack, "to", 7);
        else if (streq (bad[index], "prefix=7"))
            sn_pack_kv_uint (pack, "prefix", 7);
        else if (streq (bad[index], "prefix=long"))
            sn_pack_kv_str (pack, "prefix", text);
        sn_msg_t *refused = s_test_ask (mesh, pack);
        uint64_t code = 0;
        assert (sn_value_uint (sn_value_get (sn_msg_root (refused), "code"), &code));
        assert (code == 400);
        assert (sn_value_get (sn_msg_root (refused), "error"));
        sn_msg_destroy (&refused);
    }
    sn_msg_t *again = s_test_scan (mesh, pack, p, NULL);
    uint64_t again_code = 0;
    assert (sn_value_uint (sn_value_get (sn_msg_root (again), "code"), &again_code));
    assert (again_code == 200);
    sn_msg_destroy (&again);

    //  Two nodes whose stores each hold events of p the other lacks: the mesh's
    //  scan, three events a page, gives every event of the prefix once, in key
    //  order, through pages cut at the smaller of the two stores' nexts
    char second_dir[] = "/tmp/sn_node_test_XXXXXX";
    assert (mkdtemp (second_dir));
    sn_config_t *second = sn_config_new ();
    free (second->data_dir);
    second->data_dir = strdup (second_dir);
    free (second->name);
    second->name = strdup ("sntwo");
    free (second->http);
    second->http = strdup ("127.0.0.1:0");
    second->map_size = 64 << 20;
    second->verbose = verbose;
    second->anti_entropy = 3600000;
    zlist_append (second->join, config->peers);
    sn_node_t *two = s_test_node_new (second);
    snprintf (endpoint, sizeof endpoint, "inproc://sn-mesh-%p", (void *) two);
    zsock_t *mesh_two = zsock_new_dealer (endpoint);
    snprintf (endpoint, sizeof endpoint, "inproc://sn-store-%p", (void *) two);
    zsock_t *store_two = zsock_new_dealer (endpoint);
    assert (mesh_two && store_two);
    int64_t deadline = zclock_mono () + 20000;
    while (!(s_test_all_alive (mesh, pack, 2) && s_test_all_alive (mesh_two, pack, 2))) {
        assert (zclock_mono () < deadline);
        zclock_sleep (20);
    }
    uint32_t merged = sn_partition ("merged", 6, config->partitions);
    const char *shared[] = {"20200101T000000000000000001-zz", "20991231T000000000000000001-zz"};
    for (int index = 0; index < 2; index++) {
        s_test_store_put (store, pack, shared[index], "test.shared", index);
        s_test_store_put (store_two, pack, shared[index], "test.shared", index);
    }
    for (int index = 0; index < 14; index++)
        s_test_store_put (index % 2 ? store : store_two, pack, NULL,
                          index % 4 == 3 ? "other.merged" : "test.merged", index);
    //  What each store holds of the prefix, sorted and without the duplicates
    zchunk_t *expected = zchunk_new (NULL, 0);
    s_test_scan_all (store, pack, merged, expected);
    s_test_scan_all (store_two, pack, merged, expected);
    zlistx_t *sorted = zlistx_new ();
    zlistx_set_comparator (sorted, (zlistx_comparator_fn *) strcmp);
    zlistx_set_destructor (sorted, (zlistx_destructor_fn *) zstr_free);
    char *lines = zchunk_strdup (expected);
    for (char *line = strtok (lines, "\n"); line; line = strtok (NULL, "\n"))
        if (!zlistx_find (sorted, line))
            zlistx_add_end (sorted, strdup (line));
    free (lines);
    zlistx_sort (sorted);
    assert (zlistx_size (sorted) == 2 + 11); //  of 14, the 3 of other.merged are left out
    zchunk_t *wanted = zchunk_new (NULL, 0);
    for (char *item = (char *) zlistx_first (sorted); item; item = (char *) zlistx_next (sorted)) {
        zchunk_extend (wanted, item, strlen (item));
        zchunk_extend (wanted, "\n", 1);
    }
    zsock_t *meshes[] = {mesh, mesh_two};
    for (int index = 0; index < 2; index++) {
        zchunk_t *got = zchunk_new (NULL, 0);
        s_test_scan_all (meshes[index], pack, merged, got);
        assert (zchunk_size (got) == zchunk_size (wanted));
        assert (memcmp (zchunk_data (got), zchunk_data (wanted), zchunk_size (got)) == 0);
        zchunk_destroy (&got);
    }
    zchunk_destroy (&wanted);
    zchunk_destroy (&expected);
    zlistx_destroy (&sorted);
    zsock_destroy (&mesh_two);
    zsock_destroy (&store_two);
    sn_node_destroy (&two);
    sn_config_destroy (&second);

    sn_pack_destroy (&pack);
    zsock_destroy (&mesh);
    zsock_destroy (&store);

    //  A second node on the same endpoints fails to start, cleanly
    char other[] = "/tmp/sn_node_test_XXXXXX";
    assert (mkdtemp (other));
    free (config->data_dir);
    config->data_dir = strdup (other);
    sn_node_t *clash = sn_node_new (config, error, sizeof error);
    assert (clash == NULL);
    assert (strstr (error, "cannot bind"));

    sn_client_destroy (&client);
    sn_node_destroy (&node);
    sn_node_destroy (&node);
    sn_config_destroy (&config);
    char *command = zsys_sprintf ("rm -rf '%s' '%s' '%s'", dir, other, second_dir);
    assert (system (command) == 0);
    free (command);
}
