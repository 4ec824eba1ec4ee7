/*  sn_node: one running supernode. Wires the actors together in dependency order
    (store, mesh, frontend, gateway) and takes them down in reverse.
*/
#ifndef SN_NODE_H_INCLUDED
#define SN_NODE_H_INCLUDED

#include "sn_config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _sn_node_t sn_node_t;

//  Start a node. Returns NULL with the reason in error when any part fails to start;
//  whatever had started is stopped again.
sn_node_t *sn_node_new (const sn_config_t *config, char *error, size_t size);
void sn_node_destroy (sn_node_t **self_p);

void sn_node_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
