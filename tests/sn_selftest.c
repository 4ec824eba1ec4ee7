/*  sn_selftest: runs the selftest of one class, or of all of them.

        sn_selftest [-v] [CLASS...]
*/
#include "sn_actor.h"
#include "sn_routed.h"
#include "sn_msg.h"
#include "sn_json.h"
#include "sn_schema.h"
#include "sn_key.h"
#include "sn_config.h"
#include "sn_store.h"
#include "sn_frontend.h"
#include "sn_gateway.h"
#include "sn_tokens.h"
#include "sn_metrics.h"
#include "sn_client.h"
#include "sn_node.h"
#include "sn_members.h"
#include "sn_placement.h"
#include "sn_mesh.h"
#include "sn_queue.h"
#include "sn_webhook.h"
#include "sn_batch.h"
#include "sn_dispatch.h"
#include "sn_owners.h"
#include "sn_replay.h"
#include "sn_zap.h"
#include "sn_idmap.h"

typedef struct {
    const char *name;
    void (*test) (bool verbose);
} sn_test_t;

//  One class a line: classes added on other branches merge cleanly
// clang-format off
static const sn_test_t s_tests[] = {{"sn_actor", sn_actor_test},
                                    {"sn_routed", sn_routed_test},
                                    {"sn_msg", sn_msg_test},
                                    {"sn_json", sn_json_test},
                                    {"sn_schema", sn_schema_test},
                                    {"sn_key", sn_key_test},
                                    {"sn_config", sn_config_test},
                                    {"sn_store", sn_store_test},
                                    {"sn_frontend", sn_frontend_test},
                                    {"sn_gateway", sn_gateway_test},
                                    {"sn_tokens", sn_tokens_test},
                                    {"sn_metrics", sn_metrics_test},
                                    {"sn_client", sn_client_test},
                                    {"sn_node", sn_node_test},
                                    {"sn_members", sn_members_test},
                                    {"sn_placement", sn_placement_test},
                                    {"sn_mesh", sn_mesh_test},
                                    {"sn_queue", sn_queue_test},
                                    {"sn_webhook", sn_webhook_test},
                                    {"sn_batch", sn_batch_test},
                                    {"sn_dispatch", sn_dispatch_test},
                                    {"sn_owners", sn_owners_test},
                                    {"sn_replay", sn_replay_test},
                                    {"sn_zap", sn_zap_test},
                                    {"sn_idmap", sn_idmap_test},
                                    {NULL, NULL}};
// clang-format on

static int
s_run (const char *name, bool verbose)
{
    for (const sn_test_t *test = s_tests; test->name; test++)
        if (streq (test->name, name)) {
            printf ("%s: ", test->name);
            fflush (stdout);
            test->test (verbose);
            printf ("OK\n");
            return 0;
        }
    fprintf (stderr, "sn_selftest: no class '%s'\n", name);
    return 1;
}

int
main (int argc, char **argv)
{
    bool verbose = false;
    int first = 1;
    if (argc > 1 && streq (argv[1], "-v")) {
        verbose = true;
        first = 2;
    }
    zsys_init ();
    int failed = 0;
    if (first >= argc)
        for (const sn_test_t *test = s_tests; test->name; test++)
            failed |= s_run (test->name, verbose);
    else
        for (int arg = first; arg < argc; arg++)
            failed |= s_run (argv[arg], verbose);
    zsys_shutdown ();
    return failed;
}
