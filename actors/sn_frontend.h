/*  sn_frontend: the door of the node for every request.

    One ROUTER bound to the client endpoint (tcp, for direct ZeroMQ clients) and to an
    inproc endpoint (for the gateway's civetweb threads), and another bound to an inproc
    endpoint of its own for the mesh, which delivers requests from other nodes there.
    Some ops are between nodes only (a node telling another which executors it has,
    or handing it work for them): those are refused with 403 from anyone but the mesh. Each request
   frame is decoded and validated against its op's schema before any actor sees it; a bad one is
    answered here with a 4xx. Good ones are routed to the actor that owns the op (the
    routes table of the config), and the replies are routed back by envelope. An actor
    may also send a client a message it did not ask for (work for an executor) by
    putting the client's envelope in front of it. Clients may pipeline: replies carry rid.

    Pipe commands: "START" (replies "OK" or the error text), "$TERM".
*/
#ifndef SN_FRONTEND_H_INCLUDED
#define SN_FRONTEND_H_INCLUDED

#include <czmq.h>
#include "sn_schema.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Most actors requests can be routed to.
#define SN_FRONTEND_ROUTES_MAX 8

//  Which actor serves which ops. The route whose ops are "*" takes every op no
//  other route names.
typedef struct {
    const char *ops;      //  op names separated by spaces, e.g. "cluster", or "*"
    const char *endpoint; //  the actor's inproc endpoint
} sn_frontend_route_t;

typedef struct {
    const char *endpoint; //  external endpoint for direct clients, e.g. tcp://127.0.0.1:7500
    const char *inproc;   //  internal endpoint the gateway threads connect to
    sn_frontend_route_t routes[SN_FRONTEND_ROUTES_MAX]; //  ends at the first without ops
    sn_schema_t *schema;                                //  borrowed, read-only
    bool verbose;                                       //  log every request
    const char *internal;     //  inproc endpoint for the mesh alone, or NULL
    const char *internal_ops; //  ops taken only from internal, separated by spaces, or NULL
    const char *curve_secret; //  with it (Z85), endpoint is a CURVE server with this secret
                              //  key; NULL: open. inproc connections are never affected
    const char *zap_domain;   //  the ZAP domain that says which clients are let in
} sn_frontend_config_t;

//  Start the frontend. Returns NULL with the reason in error when an endpoint cannot
//  be bound.
zactor_t *sn_frontend_new (const sn_frontend_config_t *config, char *error, size_t size);
void sn_frontend_actor (zsock_t *pipe, void *args);

void sn_frontend_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
