/*  supernode: run a node, or talk to one.

    supernode run [--name NAME] [--data DIR] [--http HOST:PORT] [--clients ENDPOINT]
                  [--peers ENDPOINT] [--join ENDPOINT]... [--rf N] [--partitions P]
                  [--config FILE] [-v]
    supernode put JSON [--key KEY] [--node ENDPOINT]
    supernode get KEY [--node ENDPOINT]
    supernode range [--from KEY] [--to KEY] [--limit N] [--node ENDPOINT]
    supernode cluster [--node ENDPOINT]
    supernode enqueue JSON [--bucket BUCKET] [--node ENDPOINT]
    supernode invocation ID [--node ENDPOINT]
    supernode worker --class NAME... [--exec COMMAND] [--name NAME] [--node ENDPOINT]
    supernode batch create JSON | get BUCKET | delete BUCKET [--node ENDPOINT]

    Client commands print JSON on stdout and errors on stderr, and exit 1 when the
    node refuses or does not answer, 2 when the command line is wrong.
*/
#include "sn_client.h"
#include "sn_config.h"
#include "sn_node.h"
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

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
             "  supernode enqueue JSON [--bucket BUCKET] [--node ENDPOINT]\n"
             "  supernode invocation ID [--node ENDPOINT]\n"
             "  supernode worker --class NAME... [--exec COMMAND] [--name NAME]\n"
             "                   [--node ENDPOINT]\n"
             "  supernode batch create JSON | get BUCKET | delete BUCKET [--node ENDPOINT]\n"
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
    const char *bucket;
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
        else if (streq (argv[arg], "--bucket"))
            target = &args->bucket;
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

//  --------------------------------------------------------------------------
//  Queue commands

//  enqueue: the JSON is the request body, {token, invocation, ...}.
static int
s_enqueue (sn_client_t *client, const char *body, const char *bucket)
{
    json_t *request = json_loads (body, 0, NULL);
    if (!json_is_object (request)) {
        fprintf (stderr, "supernode: enqueue takes a JSON object {token, invocation, ...}\n");
        json_decref (request);
        sn_client_destroy (&client);
        return 2;
    }
    json_object_set_new (request, "op", json_string ("enqueue"));
    if (bucket)
        json_object_set_new (request, "bucket_id", json_string (bucket));
    char *text = json_dumps (request, JSON_COMPACT);
    json_decref (request);
    char *reply = NULL, *output = NULL;
    int code = sn_client_request (client, text, &reply);
    free (text);
    if (code == 202) {
        json_t *view = json_loads (reply, 0, NULL);
        json_t *answer = json_pack ("{s:O}", "id", json_object_get (view, "id"));
        output = json_dumps (answer, JSON_COMPACT);
        json_decref (answer);
        json_decref (view);
    }
    free (reply);
    return s_finish (client, code, 202, output);
}

//  batch create JSON | get BUCKET | delete BUCKET: prints the bucket.
static int
s_batch (sn_client_t *client, const char *verb, const char *argument)
{
    json_t *request = NULL;
    int expected = 200;
    if (streq (verb, "create")) {
        request = json_loads (argument, 0, NULL);
        if (!json_is_object (request)) {
            fprintf (stderr, "supernode: batch create takes a JSON object {callback_url, "
                             "bucket_id, ...}\n");
            json_decref (request);
            sn_client_destroy (&client);
            return 2;
        }
        json_object_set_new (request, "op", json_string ("batch.create"));
        expected = 201;
    }
    else if (streq (verb, "get") || streq (verb, "delete"))
        request = json_pack ("{s:s, s:s}", "op", streq (verb, "get") ? "batch.get" : "batch.delete",
                             "bucket_id", argument);
    else {
        fprintf (stderr, "supernode: batch takes create, get or delete\n");
        sn_client_destroy (&client);
        return 2;
    }
    char *text = json_dumps (request, JSON_COMPACT);
    json_decref (request);
    char *reply = NULL, *output = NULL;
    int code = sn_client_request (client, text, &reply);
    free (text);
    if (code == expected) {
        json_t *view = json_loads (reply, 0, NULL);
        output = json_dumps (json_object_get (view, "bucket"), JSON_COMPACT);
        json_decref (view);
    }
    free (reply);
    return s_finish (client, code, expected, output);
}

//  Largest stdout of an --exec command taken as a response.
#define S_EXEC_OUTPUT_MAX (1024 * 1024)

//  Exit status of an --exec command that asks for a retry (sysexits' EX_TEMPFAIL).
#define S_EXEC_RETRY 75

//  Run command with input on its stdin; collect its stdout into *output_p (caller
//  frees). Heartbeats go out while it runs, so a long command keeps its work.
//  Returns the exit status, or -1 with the reason on stderr.
static int
s_exec (sn_client_t *client, const char *command, const char *input, char **output_p)
{
    *output_p = NULL;
    int in[2], out[2];
    if (pipe (in) || pipe (out)) {
        perror ("supernode worker: pipe");
        return -1;
    }
    pid_t pid = fork ();
    if (pid == -1) {
        perror ("supernode worker: fork");
        return -1;
    }
    if (pid == 0) {
        dup2 (in[0], STDIN_FILENO);
        dup2 (out[1], STDOUT_FILENO);
        close (in[0]);
        close (in[1]);
        close (out[0]);
        close (out[1]);
        execl ("/bin/sh", "sh", "-c", command, (char *) NULL);
        _exit (127);
    }
    close (in[0]);
    close (out[1]);
    size_t input_left = strlen (input), size = 0;
    char *output = (char *) zmalloc (S_EXEC_OUTPUT_MAX + 1);
    int to_child = in[1];
    bool open_out = true, too_long = false;
    signal (SIGPIPE, SIG_IGN);
    while (open_out) {
        struct pollfd fds[2] = {{out[0], POLLIN, 0}, {to_child, POLLOUT, 0}};
        int ready = poll (fds, to_child >= 0 ? 2 : 1, 500);
        sn_client_worker_heartbeat (client);
        if (ready <= 0)
            continue;
        if (to_child >= 0 && fds[1].revents) {
            ssize_t written = write (to_child, input, input_left);
            if (written > 0) {
                input += written;
                input_left -= (size_t) written;
            }
            if (written < 0 || input_left == 0) {
                close (to_child);
                to_child = -1;
            }
        }
        if (fds[0].revents) {
            char scratch[4096];
            bool room = size < S_EXEC_OUTPUT_MAX;
            ssize_t got = room ? read (out[0], output + size, S_EXEC_OUTPUT_MAX - size)
                               : read (out[0], scratch, sizeof scratch);
            if (got <= 0)
                open_out = false;
            else if (room)
                size += (size_t) got;
            else
                too_long = true;
        }
    }
    if (to_child >= 0)
        close (to_child);
    close (out[0]);
    int status = 0;
    while (waitpid (pid, &status, 0) == -1 && errno == EINTR)
        sn_client_worker_heartbeat (client);
    output[size] = 0;
    *output_p = output;
    if (too_long)
        return -2;
    return WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status);
}

//  Run one piece of work and report its outcome.
static void
s_work (sn_client_t *client, const char *command, const char *work)
{
    json_t *parsed = json_loads (work, 0, NULL);
    const char *id = json_string_value (json_object_get (parsed, "id"));
    if (!id) {
        json_decref (parsed);
        return;
    }
    if (!command) {
        //  Without a command the work is shown and taken as done
        printf ("%s\n", work);
        fflush (stdout);
        sn_client_worker_result (client, id, 200, NULL, NULL, false);
        json_decref (parsed);
        return;
    }
    char *output = NULL;
    int status = s_exec (client, command, work, &output);
    json_t *response = NULL;
    if (output && *output) {
        response = json_loads (output, JSON_DECODE_ANY, NULL);
        if (!response)
            response = json_string (output);
        if (!response)
            response = json_string ("(output is not UTF-8)");
    }
    char *response_text = response ? json_dumps (response, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref (response);
    char error[64];
    int code = 200;
    bool retryable = false;
    if (status == S_EXEC_RETRY) {
        code = 503;
        retryable = true;
    }
    else if (status != 0)
        code = 500;
    if (status == -2)
        snprintf (error, sizeof error, "output longer than %d bytes", S_EXEC_OUTPUT_MAX);
    else if (status < 0)
        snprintf (error, sizeof error, "command could not be started");
    else
        snprintf (error, sizeof error, "command exited with status %d", status);
    int reply = sn_client_worker_result (client, id, code, response_text,
                                         code == 200 ? NULL : error, retryable);
    if (reply != 200)
        fprintf (stderr, "supernode worker: result of %s: %d %s\n", id, reply,
                 sn_client_error (client));
    free (response_text);
    free (output);
    json_decref (parsed);
}

//  worker: take work for the classes until killed.
static int
s_worker (int argc, char **argv)
{
    const char *node = SN_DEFAULT_NODE, *command = NULL, *name = NULL;
    const char *classes[100];
    size_t count = 0;
    for (int arg = 0; arg < argc; arg++) {
        const char *value = arg + 1 < argc ? argv[arg + 1] : NULL;
        if (!value || strncmp (argv[arg], "--", 2)) {
            fprintf (stderr, "supernode: unexpected argument '%s'\n", argv[arg]);
            return 2;
        }
        if (streq (argv[arg], "--node"))
            node = value;
        else if (streq (argv[arg], "--exec"))
            command = value;
        else if (streq (argv[arg], "--name"))
            name = value;
        else if (streq (argv[arg], "--class") && count < 100)
            classes[count++] = value;
        else {
            fprintf (stderr, "supernode: unexpected argument '%s'\n", argv[arg]);
            return 2;
        }
        arg++;
    }
    if (count == 0) {
        fprintf (stderr, "supernode: worker needs at least one --class\n");
        return 2;
    }
    zsys_handler_set (NULL);
    sn_client_t *client = sn_client_new (node);
    if (!client) {
        fprintf (stderr, "supernode: cannot use node endpoint '%s'\n", node);
        return 2;
    }
    //  The node may not be up yet: keep saying hello until it answers
    int code;
    while ((code = sn_client_worker_hello (client, classes, count, 1, name)) == -1)
        ;
    if (code != 200) {
        fprintf (stderr, "supernode worker: hello refused: %d %s\n", code,
                 sn_client_error (client));
        sn_client_destroy (&client);
        return 1;
    }
    fprintf (stderr, "supernode worker: running %s for %s\n", classes[0], node);
    while (true) {
        char *work = NULL;
        if (sn_client_worker_next (client, 1000, &work) < 0)
            break;
        if (work)
            s_work (client, command, work);
        free (work);
    }
    fprintf (stderr, "supernode worker: %s\n", sn_client_error (client));
    sn_client_destroy (&client);
    return 1;
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
    if (streq (command, "enqueue") && args.positionals == 1)
        return s_enqueue (client, args.positional[0], args.bucket);
    if (streq (command, "batch") && args.positionals == 2)
        return s_batch (client, args.positional[0], args.positional[1]);
    if (streq (command, "invocation") && args.positionals == 1) {
        json_t *request = json_pack ("{s:s, s:s}", "op", "invocation", "id", args.positional[0]);
        char *text = json_dumps (request, JSON_COMPACT);
        json_decref (request);
        char *reply = NULL;
        int code = sn_client_request (client, text, &reply);
        free (text);
        if (code == 200) {
            json_t *view = json_loads (reply, 0, NULL);
            output = json_dumps (json_object_get (view, "invocation"), JSON_COMPACT);
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
    if (streq (command, "worker"))
        return s_worker (argc - 2, argv + 2);
    if (streq (command, "put") || streq (command, "get") || streq (command, "range") ||
        streq (command, "cluster") || streq (command, "enqueue") || streq (command, "invocation") ||
        streq (command, "batch"))
        return s_client_command (command, argc - 2, argv + 2);
    if (streq (command, "help") || streq (command, "--help") || streq (command, "-h")) {
        s_usage (stdout);
        return 0;
    }
    fprintf (stderr, "supernode: unknown command '%s'\n", command);
    s_usage (stderr);
    return 2;
}
