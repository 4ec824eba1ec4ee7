/*  supernode: run a node, or talk to one.

    supernode run [--name NAME] [--data DIR] [--http HOST:PORT] [--clients ENDPOINT]
                  [--peers ENDPOINT] [--join ENDPOINT]... [--rf N] [--partitions P]
                  [--config FILE] [-v]
    supernode put JSON [--key KEY] [--node ENDPOINT]
    supernode get KEY [--node ENDPOINT]
    supernode range [--from KEY] [--to KEY] [--limit N] [--node ENDPOINT]
    supernode cluster [--node ENDPOINT]

    Client commands print JSON on stdout and errors on stderr, and exit 1 when the
    node refuses or does not answer, 2 when the command line is wrong.
*/
#include "sn_client.h"
#include "sn_config.h"
#include "sn_node.h"
#include <jansson.h>
#include <signal.h>

#define SN_DEFAULT_NODE "tcp://127.0.0.1:7500"

static void
s_usage (FILE *stream)
{
    fprintf (stream,
             "usage:\n"
             "  supernode run [--name NAME] [--data DIR] [--http HOST:PORT]\n"
             "                [--clients ENDPOINT] [--peers ENDPOINT] [--join ENDPOINT]...\n"
             "                [--rf N] [--partitions P] [--config FILE] [-v]\n"
             "  supernode put JSON [--key KEY] [--node ENDPOINT]\n"
             "  supernode get KEY [--node ENDPOINT]\n"
             "  supernode range [--from KEY] [--to KEY] [--limit N] [--node ENDPOINT]\n"
             "  supernode cluster [--node ENDPOINT]\n"
             "client commands talk to --node (default " SN_DEFAULT_NODE ")\n");
}

//  Run a node until SIGINT or SIGTERM.
static int
s_run (int argc, char **argv)
{
    char error[512];
    sn_config_t *config = sn_config_new ();
    if (sn_config_parse_args (config, argc, argv, error, sizeof error) ||
        sn_config_check (config, error, sizeof error)) {
        fprintf (stderr, "supernode: %s\n", error);
        sn_config_destroy (&config);
        return 2;
    }
    //  Signals are taken by sigwait below, in this thread only: every thread the
    //  node starts inherits the mask, so none of them is interrupted.
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);
    zsys_handler_set (NULL);
    zsys_init ();

    sn_node_t *node = sn_node_new (config, error, sizeof error);
    if (!node) {
        zsys_error ("supernode: cannot start: %s", error);
        sn_config_destroy (&config);
        return 1;
    }
    zsys_info ("supernode: %s listening on http://%s and %s, data in %s", config->name,
               config->http, config->clients, config->data_dir);
    int signal_number = 0;
    sigwait (&signals, &signal_number);
    zsys_info ("supernode: %s stopping on %s", config->name, strsignal (signal_number));
    sn_node_destroy (&node);
    sn_config_destroy (&config);
    return 0;
}

//  The options common to client commands, and the positional arguments left over.
typedef struct {
    const char *node;
    const char *key;
    const char *from;
    const char *to;
    const char *limit;
    const char *positional[2];
    int positionals;
} s_args_t;

static int
s_parse_client_args (int argc, char **argv, s_args_t *args)
{
    memset (args, 0, sizeof *args);
    args->node = SN_DEFAULT_NODE;
    for (int arg = 0; arg < argc; arg++) {
        const char **target = NULL;
        if (streq (argv[arg], "--node"))
            target = &args->node;
        else if (streq (argv[arg], "--key"))
            target = &args->key;
        else if (streq (argv[arg], "--from"))
            target = &args->from;
        else if (streq (argv[arg], "--to"))
            target = &args->to;
        else if (streq (argv[arg], "--limit"))
            target = &args->limit;
        if (target) {
            if (arg + 1 >= argc) {
                fprintf (stderr, "supernode: %s needs a value\n", argv[arg]);
                return -1;
            }
            *target = argv[++arg];
        }
        else if (strncmp (argv[arg], "--", 2) == 0 || args->positionals == 2) {
            fprintf (stderr, "supernode: unexpected argument '%s'\n", argv[arg]);
            return -1;
        }
        else
            args->positional[args->positionals++] = argv[arg];
    }
    return 0;
}

//  Print a result, or the error; returns the exit status.
static int
s_finish (sn_client_t *client, int code, int expected, char *output)
{
    int status = 0;
    if (code == expected)
        printf ("%s\n", output ? output : "{}");
    else {
        if (code > 0)
            fprintf (stderr, "supernode: %d %s\n", code, sn_client_error (client));
        else
            fprintf (stderr, "supernode: %s\n", sn_client_error (client));
        status = 1;
    }
    free (output);
    sn_client_destroy (&client);
    return status;
}

static int
s_client_command (const char *command, int argc, char **argv)
{
    s_args_t args;
    if (s_parse_client_args (argc, argv, &args))
        return 2;
    zsys_handler_set (NULL);
    sn_client_t *client = sn_client_new (args.node);
    if (!client) {
        fprintf (stderr, "supernode: cannot use node endpoint '%s'\n", args.node);
        return 2;
    }
    char *output = NULL;
    if (streq (command, "put") && args.positionals == 1) {
        if (args.key) {
            int code = sn_client_put_key (client, args.key, args.positional[0]);
            if (code == 201)
                output = zsys_sprintf ("{\"key\":\"%s\"}", args.key);
            return s_finish (client, code, 201, output);
        }
        char *key = NULL;
        int code = sn_client_put (client, args.positional[0], &key);
        if (key)
            output = zsys_sprintf ("{\"key\":\"%s\"}", key);
        free (key);
        return s_finish (client, code, 201, output);
    }
    if (streq (command, "get") && args.positionals == 1) {
        int code = sn_client_get (client, args.positional[0], &output);
        return s_finish (client, code, 200, output);
    }
    if (streq (command, "range") && args.positionals == 0) {
        char *end = NULL;
        unsigned long limit = args.limit ? strtoul (args.limit, &end, 10) : 0;
        if (args.limit && (*end || limit < 1 || limit > 1000)) {
            fprintf (stderr, "supernode: --limit must be a number from 1 to 1000\n");
            sn_client_destroy (&client);
            return 2;
        }
        int code = sn_client_range (client, args.from, args.to, (uint32_t) limit, &output);
        return s_finish (client, code, 200, output);
    }
    if (streq (command, "cluster") && args.positionals == 0) {
        char *reply = NULL;
        int code = sn_client_request (client, "{\"op\": \"cluster\"}", &reply);
        if (code == 200) {
            //  The node's view, without the request's bookkeeping
            json_t *view = json_loads (reply, 0, NULL);
            json_object_del (view, "rid");
            json_object_del (view, "code");
            output = json_dumps (view, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
            json_decref (view);
        }
        free (reply);
        return s_finish (client, code, 200, output);
    }
    sn_client_destroy (&client);
    s_usage (stderr);
    return 2;
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        s_usage (stderr);
        return 2;
    }
    const char *command = argv[1];
    if (streq (command, "run"))
        return s_run (argc - 2, argv + 2);
    if (streq (command, "put") || streq (command, "get") || streq (command, "range") ||
        streq (command, "cluster"))
        return s_client_command (command, argc - 2, argv + 2);
    if (streq (command, "help") || streq (command, "--help") || streq (command, "-h")) {
        s_usage (stdout);
        return 0;
    }
    fprintf (stderr, "supernode: unknown command '%s'\n", command);
    s_usage (stderr);
    return 2;
}
