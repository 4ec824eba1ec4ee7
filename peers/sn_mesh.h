/*  sn_mesh: the mesh actor. Keeps this node's view of the cluster's membership and
    the partition table derived from it.

    Links, as in Zyre: the actor binds one ROUTER (the inbox) on its peer endpoint and
    keeps one DEALER to every other member that is alive or suspect. A DEALER queues at
    most 1000 messages and never blocks: what cannot be queued is dropped, so a
    slow or vanished peer costs nothing but its own messages. A member's DEALER is
    destroyed when it becomes dead or left and made again when it comes back. Every
    DEALER starts by saying hello; the inbox ignores a connection until it has.

    Wire format: one msgpack map per frame.
      {op: "hello", name, endpoint, incarnation}
      {op: "ping", from, members: [[name, endpoint, incarnation, status], ...]}
          every heartbeat to every linked member, carrying the whole member table
          (status is "alive", "suspect", "dead" or "left")
      {op: "bye", from, incarnation}
          on a clean stop: the member left at that incarnation
    Anything malformed, and anything but hello on a connection that has not said
    hello, is dropped and counted (the "dropped" of the cluster op).

    Joining: the actor says hello to every join endpoint each heartbeat until a ping
    arrives from the member listening there. A member answers a hello at once with a
    ping, which carries every member the joiner needs to link to. A joining node
    publishes no placement until a member's ping arrives, or until dead_ms have
    passed without one: its actors replay what they own once the other replicas are
    known.

    Ops: the actor binds a ROUTER on ops_endpoint (inproc). Each request is
    [envelope frames..., payload], the payload one msgpack map {op, rid}; the reply is
    the same envelope and one map {rid, code, ...}, with "error" when code is not 2xx.
      cluster {}  -> 200 {name, members: [{name, endpoint, incarnation, status}],
                          partitions: [{p, replicas: [names], owner: name | nil}],
                          dropped}
      put {event, key?, type?, pkey?, commit?}  -> 201 {key, written} | 503 {error,
                          written, key}: the write, replicated by commit level
      bulk {puts, commit?}  -> 200 {results: [{code, key?, error?}]}: each item a put
      get {key}   -> the store's answer, from here or from another replica
      scan {p, from?, to?, limit?, prefix?} -> the store's scan page of p ({p, events:
                          [{key, type, ts, event}], next}), merged from our store and
                          every reachable replica of p (peer op rscan); a replica
                          silent past the write timeout (at most 50 s), or whose
                          page does not fit the scan, is left out and not asked for
                          30 s; 504 when our store is silent for 50 s, 503 when it
                          cannot take the request. Owners replay through it.
      forward {p, request: map} -> the answer to request, from the owner of partition p:
                          the request is delivered to the owner's frontend as if a
                          client had sent it, with "fwd" (the hops so far) added; when
                          the owner does not answer in time, the next live replica is
                          tried. Actors that own state by partition use it to hand a
                          request they got on the wrong node to the right one.
      anything else -> 400

    Feed: with feed set, the actor binds a PUB there and publishes the partition table
    whenever it changes, and every heartbeat for late subscribers, as one frame
    {op: "placement", self, version, owners: [name | nil per partition],
     replicas: [[names] per partition]}. Actors that own state by partition subscribe
    and take over (replay) the partitions they come to own.

    Pipe commands: "START" (replies "OK" or the error text); "SILENT" (no reply: the
    actor will stop without saying bye, as if it had crashed; for tests); "$TERM"
    (leaves the cluster, says bye to every linked member, best effort, and stops).
*/
#ifndef SN_MESH_H_INCLUDED
#define SN_MESH_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;         //  this node's name
    const char *endpoint;     //  tcp endpoint to bind the peer ROUTER to; with port "*"
                              //  the bound port is what the node advertises
    zlist_t *join;            //  endpoints (char *) of members to join through, or NULL
    uint32_t partitions;      //  P
    uint32_t rf;              //  replicas per partition
    int heartbeat_ms;         //  ping interval; 0 means 500
    int suspect_ms;           //  silence before a member is suspect; 0 means 2000
    int dead_ms;              //  suspicion before a member is dead; 0 means 4000
    const char *ops_endpoint; //  inproc endpoint to bind the ops ROUTER to
    bool verbose;             //  log membership traffic
    const char *store;        //  the store actor's endpoint; NULL: no data ops (tests)
    int write_timeout_ms;     //  replica writes and reads; 0 means 2000
    int anti_entropy_ms;      //  between anti-entropy exchanges; 0 means 2000
    const char *frontend;     //  the frontend's inproc endpoint, where forwarded requests
                              //  are delivered; NULL: no forwarding (tests)
    const char *feed;         //  inproc endpoint to bind the placement PUB to, or NULL
    const char *curve_public; //  the cluster certificate's keys (Z85): with them every
    const char *curve_secret; //  peer link is CURVE, the inbox a server and every DEALER
                              //  a client of that one key pair; NULL: open links
    const char *zap_domain;   //  the inbox's ZAP domain, which lets in the cluster key only

    //  User events older than this many ms are expired, 0: never. The same on every
    //  member: a hello says it, and one with another value is refused
    int64_t event_retention_ms;
} sn_mesh_config_t;

//  Start a mesh actor. Returns NULL with the reason in error when the configuration is
//  not valid or an endpoint cannot be bound. The config (and join list) is copied.
zactor_t *sn_mesh_new (const sn_mesh_config_t *config, char *error, size_t size);

//  The actor function, for zactor_new; args is an sn_mesh_config_t, copied.
void sn_mesh_actor (zsock_t *pipe, void *args);

void sn_mesh_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
