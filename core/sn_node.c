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
};

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

    self->schema = sn_schema_new ();
    if (!self->schema) {
        snprintf (error, size, "embedded schemas do not parse");
        goto failed;
    }
    sn_store_config_t store = {config->data_dir, config->name,   config->partitions,
                               config->map_size, store_endpoint, config->verbose};
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
                             .feed = feed_endpoint};
    self->mesh = sn_mesh_new (&mesh, error, size);
    if (!self->mesh)
        goto failed;
    //  Queue and buckets: writes replicated through the mesh, replays from the local
    //  store, and the partitions this node owns from the mesh's placement feed
    sn_webhook_config_t webhook = {webhook_endpoint, config->hooks_allow, config->hooks_deny, false,
                                   config->verbose};
    self->webhook = sn_webhook_new (&webhook, error, size);
    if (!self->webhook)
        goto failed;
    sn_batch_config_t batch = {
        batch_endpoint,  mesh_endpoint,  queue_endpoint, webhook_endpoint, config->partitions,
        config->verbose, store_endpoint, feed_endpoint,  mesh_endpoint,    config->keep_finished};
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
        store_endpoint,         feed_endpoint,
        mesh_endpoint,          call_ttl < INT_MAX ? (int) call_ttl : INT_MAX,
        config->keep_finished};
    self->queue = sn_queue_new (&queue, error, size);
    if (!self->queue)
        goto failed;
    //  Jobs: events replicated through the mesh, replayed from the local store, for
    //  the partitions the mesh's placement makes this node the owner of
    sn_dispatch_config_t dispatch = {dispatch_endpoint,  mesh_endpoint,        jobs_endpoint,
                                     config->partitions, config->verbose,      store_endpoint,
                                     feed_endpoint,      config->keep_finished};
    self->dispatch = sn_dispatch_new (&dispatch, error, size);
    if (!self->dispatch)
        goto failed;
    sn_frontend_config_t frontend = {
        config->clients,
        front_endpoint,
        {{"cluster put get bulk range", mesh_endpoint},
         {"enqueue invocation worker.hello worker.heartbeat "
          "worker.progress worker.result bucket.counts "
          "worker.at worker.push",
          queue_endpoint},
         {"batch.create batch.get batch.update batch.delete", batch_endpoint},
         {"job.create job.get job.list job.cancel task.get agent.hello "
          "agent.heartbeat agent.progress agent.result agent.at agent.push job.watch "
          "job.update",
          dispatch_endpoint},
         {"*", store_endpoint}},
        self->schema,
        config->verbose,
        internal_endpoint,
        "worker.at worker.push agent.at agent.push job.watch job.update"};
    self->frontend = sn_frontend_new (&frontend, error, size);
    if (!self->frontend)
        goto failed;
    sn_gateway_config_t gateway = {config->http,         front_endpoint,       config->max_body,
                                   config->http_timeout, config->http_threads, config->verbose,
                                   jobs_endpoint};
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
        free (self);
        *self_p = NULL;
    }
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
    //  Free ports for the client and peer endpoints: bind any two, note them, let
    //  them go together, so that neither is handed out again for the other
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
    free (config->http);
    config->http = strdup ("127.0.0.1:0");
    config->map_size = 64 << 20;
    config->verbose = verbose;

    sn_node_t *node = sn_node_new (config, error, sizeof error);
    if (!node)
        zsys_error ("sn_node: %s", error);
    assert (node);
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
    char *command = zsys_sprintf ("rm -rf '%s' '%s'", dir, other);
    assert (system (command) == 0);
    free (command);
}
