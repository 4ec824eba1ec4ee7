/*  sn_gateway: HTTP and WebSocket through civetweb, JSON at the edge.

    Handlers are thin: parse the route and the JSON body, translate to one msgpack
    request, send it to the node's frontend through the calling civetweb thread's own
    DEALER socket (made in civetweb's init_thread callback), wait for the reply with a
    deadline, and translate it back to JSON. Every answer leaves through one exit
    point; errors are {"error": "..."} with a 4xx or 5xx status.
*/
#ifndef SN_GATEWAY_H_INCLUDED
#define SN_GATEWAY_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _sn_gateway_t sn_gateway_t;

typedef struct {
    const char *listen; //  HOST:PORT to listen on, e.g. 127.0.0.1:8080
    const char *node;   //  the frontend's inproc endpoint
    size_t max_body;    //  largest request body accepted, in bytes (413 above)
    int timeout;        //  ms to wait for the node (504 after) or for a whole body (408)
    int threads;        //  civetweb worker threads
    bool verbose;
    const char *jobs;   //  the dispatch actor's XPUB of job changes, for WebSockets; or NULL
    const char *tokens; //  file of bearer tokens every request but GET /health must
                        //  carry (see sn_tokens.h); or NULL: no tokens asked for
    const char *cert;   //  PEM file with the certificate (chain) and its key: the
                        //  port speaks HTTPS only; or NULL: plain HTTP
} sn_gateway_config_t;

//  Start listening. Returns NULL with the reason in error (for example, the port is
//  taken, the certificate does not load, or the tokens file holds a token too short).
sn_gateway_t *sn_gateway_new (const sn_gateway_config_t *config, char *error, size_t size);
void sn_gateway_destroy (sn_gateway_t **self_p);

void sn_gateway_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
