/*  sn_config: every option of a node, with embedded defaults, a ZPL config file and
    command-line flags on top (flags win).

    Config file (CZMQ's ZPL), every key optional:

        node
            name = n1
            data = ./supernode-data
            http = 127.0.0.1:8080
            clients = tcp://127.0.0.1:7500
            peers = tcp://127.0.0.1:7501
            rf = 3
            partitions = 64
            map_size_mb = 65536
            max_body_kb = 1024
            http_threads = 32
            http_timeout_ms = 10000
            http_tokens = tokens.txt     bearer tokens HTTP clients must send
            http_cert = node.pem         certificate and key: the gateway speaks HTTPS
            write_timeout_ms = 2000     replica writes and reads
            anti_entropy_ms = 2000      between anti-entropy rounds
            heartbeat_ms = 500          failure detector: ping interval,
            suspect_ms = 2000           silence before suspect,
            dead_ms = 4000              suspicion before dead
            keep_finished_ms = 3600000  finished invocations and jobs kept in memory
            event_retention_ms = 0      user events older than this are deleted; 0
                                        keeps them for ever, else at least 3600000
            verbose = 0
            callback_allow = *                 hosts callbacks may go to
            callback_deny = .internal, 10.0.0.1  hosts they may not (checked first)
            curve_cert = /etc/supernode/node       the clients endpoint is CURVE, with this
                                                   certificate (and node_secret)
            curve_clients = /etc/supernode/clients   public certificates of the clients let in
            curve_cluster = /etc/supernode/cluster   the peer links are CURVE: every member
                                                     holds this certificate (and _secret)
*/
#ifndef SN_CONFIG_H_INCLUDED
#define SN_CONFIG_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Bounds of --event-retention-ms other than 0: an hour, and about 100 years.
#define SN_CONFIG_RETENTION_MIN (3600 * 1000LL)
#define SN_CONFIG_RETENTION_MAX (100LL * 366 * 24 * 3600 * 1000)

typedef struct {
    char *name;          //  node name; defaults to the host name
    char *data_dir;      //  data directory
    char *http;          //  HOST:PORT of the gateway
    char *clients;       //  endpoint for direct ZeroMQ clients
    char *peers;         //  endpoint for other nodes
    zlist_t *join;       //  peer endpoints to join through (char *)
    uint32_t rf;         //  replication factor
    uint32_t partitions; //  P
    size_t map_size;     //  LMDB map size in bytes
    size_t max_body;     //  largest HTTP body in bytes
    int http_threads;    //  civetweb worker threads
    int http_timeout;    //  ms the gateway waits for the node, or for a request body
    char *http_tokens;   //  file of the bearer tokens HTTP clients must send, or NULL
    char *http_cert;     //  PEM file with the gateway's certificate and key, or NULL
    int write_timeout;   //  ms a replica write or read may take
    int anti_entropy;    //  ms between anti-entropy rounds
    int heartbeat;       //  ms between pings to every member
    int suspect;         //  ms of silence before a member is suspect
    int dead;            //  ms of suspicion before a member is dead
    int keep_finished;   //  ms a finished invocation or job stays in memory
    char *hooks_allow;   //  hosts bucket callbacks may go to, comma-separated; NULL: any
    char *hooks_deny;    //  hosts they may not go to, checked first; NULL: none
    char *curve_cert;    //  the node's certificate for CURVE on clients, or NULL: open
    char *curve_clients; //  directory of the client certificates allowed in, or NULL
    char *curve_cluster; //  the cluster's certificate for CURVE on peer links, or NULL
    bool verbose;

    //  ms user events are kept, by key time; 0: for ever
    int64_t event_retention;
} sn_config_t;

//  A config holding the embedded defaults.
sn_config_t *sn_config_new (void);
void sn_config_destroy (sn_config_t **self_p);

//  Read a ZPL file over the current values. Returns 0, or -1 with the reason in error.
int sn_config_load (sn_config_t *self, const char *path, char *error, size_t size);

//  Parse the options of "supernode run" (argv after "run") over the current values.
//  --config is read first wherever it stands, so that flags override the file.
//  Returns 0, or -1 with the reason in error.
int sn_config_parse_args (sn_config_t *self, int argc, char **argv, char *error, size_t size);

//  Check the values together. Returns 0, or -1 with the reason in error.
int sn_config_check (sn_config_t *self, char *error, size_t size);

void sn_config_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
