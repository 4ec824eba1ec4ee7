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
    supernode job create JSON [--watch] | get ID [--collection] | cancel ID
    supernode job list [--status S] [--limit N] [--before ID]
    supernode agent --id ID [--exec COMMAND] [--node ENDPOINT]
    supernode keygen FILE

    Every client command also takes --server-key KEY|FILE and --curve-cert FILE to
    talk to a node whose client endpoint is CURVE (run --curve-cert).

    Client commands print JSON on stdout and errors on stderr, and exit 1 when the
    node refuses or does not answer, 2 when the command line is wrong.
*/
#include "sn_client.h"
#include "sn_config.h"
#include "sn_node.h"
#include <fcntl.h>
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
             "  supernode job create JSON [--watch] | get ID [--collection] | cancel ID\n"
             "  supernode job list [--status S] [--limit N] [--before ID]\n"
             "  supernode agent --id ID [--exec COMMAND]\n"
             "  supernode keygen FILE\n"
             "client commands talk to --node (default " SN_DEFAULT_NODE ");\n"
             "with --server-key KEY|FILE --curve-cert FILE over CURVE\n");
}

//  CURVE for client commands: the node's public key (Z85 or its certificate file)
//  and this client's certificate, from --server-key and --curve-cert, or NULL.
static const char *s_server_key;
static const char *s_curve_cert;

//  Take --server-key and --curve-cert out of argv wherever they stand, so that
//  every client command has them. Returns the arguments left, or -1.
static int
s_curve_args (int argc, char **argv)
{
    int left = 0;
    for (int arg = 0; arg < argc; arg++) {
        const char **target = streq (argv[arg], "--server-key")   ? &s_server_key
                              : streq (argv[arg], "--curve-cert") ? &s_curve_cert
                                                                  : NULL;
        if (!target)
            argv[left++] = argv[arg];
        else if (arg + 1 < argc)
            *target = argv[++arg];
        else {
            fprintf (stderr, "supernode: %s needs a value\n", argv[arg]);
            return -1;
        }
    }
    if (!!s_server_key != !!s_curve_cert) {
        fprintf (stderr, "supernode: --server-key and --curve-cert go together\n");
        return -1;
    }
    return left;
}

//  A client of node, over CURVE when --server-key was given; NULL with the reason
//  on stderr.
static sn_client_t *
s_client_new (const char *node)
{
    if (!s_server_key)
        return sn_client_new (node);
    char error[512];
    sn_client_t *client =
        sn_client_new_curve (node, s_server_key, s_curve_cert, error, sizeof error);
    if (!client)
        fprintf (stderr, "supernode: %s\n", error);
    return client;
}

//  Write text to path, a file this call creates with mode: an existing file or a
//  symlink (even a dangling one) is never written through. Returns 0, or -1 with
//  errno set and nothing left behind.
static int
s_write_new (const char *path, const char *text, mode_t mode)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd == -1)
        return -1;
    size_t length = strlen (text), done = 0;
    while (done < length) {
        ssize_t wrote = write (fd, text + done, length - done);
        if (wrote > 0)
            done += (size_t) wrote;
        else if (wrote == -1 && errno != EINTR)
            break;
    }
    int rc = done == length && fsync (fd) == 0 ? 0 : -1;
    int saved = errno;
    if (close (fd) && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc) {
        unlink (path);
        errno = saved;
    }
    return rc;
}

//  Write a new certificate: FILE (public, 0644) and FILE_secret (0600), both created
//  by this call; when the secret cannot be written the public file goes too.
static int
s_keygen (int argc, char **argv)
{
    if (argc != 1 || strncmp (argv[0], "-", 1) == 0) {
        fprintf (stderr, "supernode: keygen takes one FILE\n");
        return 2;
    }
    char secret_path[4096];
    snprintf (secret_path, sizeof secret_path, "%s_secret", argv[0]);
    char public_key[41], secret_key[41];
    if (zmq_curve_keypair (public_key, secret_key)) {
        fprintf (stderr, "supernode: cannot make a key pair: %s\n", zmq_strerror (zmq_errno ()));
        return 1;
    }
    //  The zcert format, so that sn_zap and CZMQ tools read it
    char public_text[256], secret_text[320];
    snprintf (public_text, sizeof public_text,
              "#   supernode CURVE certificate: the public key, to give to the nodes\n"
              "curve\n    public-key = \"%s\"\n",
              public_key);
    snprintf (secret_text, sizeof secret_text,
              "#   supernode CURVE certificate: the SECRET key, never to be shared\n"
              "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n",
              public_key, secret_key);
    const char *failed = NULL;
    if (s_write_new (argv[0], public_text, 0644))
        failed = argv[0];
    else if (s_write_new (secret_path, secret_text, 0600)) {
        int saved = errno;
        unlink (argv[0]);
        errno = saved;
        failed = secret_path;
    }
    explicit_bzero (secret_key, sizeof secret_key);
    explicit_bzero (secret_text, sizeof secret_text);
    if (failed) {
        if (errno == EEXIST || errno == ELOOP)
            fprintf (stderr, "supernode: %s exists already (or is a symlink): not overwritten\n",
                     failed);
        else
            fprintf (stderr, "supernode: cannot write %s: %s\n", failed, strerror (errno));
        return 1;
    }
    printf ("%s\n", public_key);
    return 0;
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
    zsys_info ("supernode: %s listening on %s://%s and %s, data in %s", config->name,
               config->http_cert ? "https" : "http", config->http, config->clients,
               config->data_dir);
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
    //  202: the node keeps the result and passes it on to the invocation's owner
    if (reply < 200 || reply >= 300)
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
    sn_client_t *client = s_client_new (node);
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
    sn_client_t *client = s_client_new (args.node);
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

//  --------------------------------------------------------------------------
//  Jobs and agents: supernode job create|get|list|cancel, supernode agent.

//  Options of the job and agent commands; positional arguments left over.
typedef struct {
    const char *node;
    const char *id;
    const char *exec;
    const char *status;
    const char *limit;
    const char *before;
    bool watch;
    bool collection;
    const char *positional[3];
    int positionals;
} s_job_args_t;

static int
s_parse_job_args (int argc, char **argv, s_job_args_t *args)
{
    memset (args, 0, sizeof *args);
    args->node = SN_DEFAULT_NODE;
    for (int arg = 0; arg < argc; arg++) {
        const char **target = NULL;
        if (streq (argv[arg], "--node"))
            target = &args->node;
        else if (streq (argv[arg], "--id"))
            target = &args->id;
        else if (streq (argv[arg], "--exec"))
            target = &args->exec;
        else if (streq (argv[arg], "--status"))
            target = &args->status;
        else if (streq (argv[arg], "--limit"))
            target = &args->limit;
        else if (streq (argv[arg], "--before"))
            target = &args->before;
        else if (streq (argv[arg], "--watch"))
            args->watch = true;
        else if (streq (argv[arg], "--collection"))
            args->collection = true;
        else if (strncmp (argv[arg], "--", 2) == 0 || args->positionals == 3) {
            fprintf (stderr, "supernode: unexpected argument '%s'\n", argv[arg]);
            return -1;
        }
        else
            args->positional[args->positionals++] = argv[arg];
        if (target) {
            if (arg + 1 >= argc) {
                fprintf (stderr, "supernode: %s needs a value\n", argv[arg]);
                return -1;
            }
            *target = argv[++arg];
        }
    }
    return 0;
}

//  The reply's member name as indented JSON, or NULL. Caller frees.
static char *
s_reply_member (const char *reply, const char *name)
{
    json_t *json = json_loads (reply, 0, NULL);
    json_t *member = json_object_get (json, name);
    char *text = member ? json_dumps (member, JSON_INDENT (2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref (json);
    return text;
}

//  Shows a job's counters: a bar redrawn in place on a terminal, a line per change
//  otherwise. Returns true once the job is finished.
static bool
s_show_progress (const char *reply, bool tty, char *last, size_t size)
{
    json_t *json = json_loads (reply, 0, NULL);
    json_t *job = json_object_get (json, "job");
    const char *status = json_string_value (json_object_get (job, "status"));
    json_int_t progress = json_integer_value (json_object_get (job, "progress"));
    json_int_t done = json_integer_value (json_object_get (job, "doneCount"));
    json_int_t total = json_integer_value (json_object_get (job, "totalCount"));
    json_int_t errors = json_integer_value (json_object_get (job, "errorCount"));
    char line[160];
    snprintf (line, sizeof line,
              "%3d%% %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT " done, %" JSON_INTEGER_FORMAT
              " errors, %s",
              (int) progress, done, total, errors, status ? status : "?");
    bool finished = status && (streq (status, "resolved") || streq (status, "cancelled") ||
                               streq (status, "timeout"));
    if (tty) {
        char bar[41];
        int filled = (int) (progress * 40 / 100);
        for (int at = 0; at < 40; at++)
            bar[at] = at < filled ? '#' : '.';
        bar[40] = 0;
        fprintf (stderr, "\r[%s] %s\033[K%s", bar, line, finished ? "\n" : "");
    }
    else if (!streq (line, last))
        fprintf (stderr, "%s\n", line);
    snprintf (last, size, "%s", line);
    json_decref (json);
    return finished;
}

//  Polls the job until it is finished, drawing its progress.
static int
s_watch_job (sn_client_t *client, const char *id, char **reply_p)
{
    bool tty = isatty (STDERR_FILENO);
    char last[160] = "";
    char *request = zsys_sprintf ("{\"op\": \"job.get\", \"id\": \"%s\"}", id);
    int code = -1;
    while (!zsys_interrupted) {
        free (*reply_p);
        *reply_p = NULL;
        code = sn_client_request (client, request, reply_p);
        if (code != 200 || s_show_progress (*reply_p, tty, last, sizeof last))
            break;
        zclock_sleep (200);
    }
    free (request);
    return code;
}

static int
s_job_command (int argc, char **argv)
{
    s_job_args_t args;
    if (s_parse_job_args (argc, argv, &args) || args.positionals < 1)
        return 2;
    zsys_handler_set (NULL);
    sn_client_t *client = s_client_new (args.node);
    if (!client) {
        fprintf (stderr, "supernode: cannot use node endpoint '%s'\n", args.node);
        return 2;
    }
    const char *verb = args.positional[0];
    char *request = NULL, *reply = NULL, *output = NULL;
    const char *member = "job";
    if (streq (verb, "create") && args.positionals == 2) {
        json_t *body = json_loads (args.positional[1], 0, NULL);
        if (!json_is_object (body)) {
            fprintf (stderr, "supernode: job create takes a JSON object\n");
            json_decref (body);
            sn_client_destroy (&client);
            return 2;
        }
        json_object_set_new (body, "op", json_string ("job.create"));
        request = json_dumps (body, JSON_COMPACT);
        json_decref (body);
    }
    else if ((streq (verb, "get") || streq (verb, "cancel")) && args.positionals == 2) {
        json_t *body = json_object ();
        json_object_set_new (body, "op",
                             json_string (streq (verb, "get") ? "job.get" : "job.cancel"));
        json_object_set_new (body, "id", json_string (args.positional[1]));
        if (args.collection)
            json_object_set_new (body, "collection", json_true ());
        request = json_dumps (body, JSON_COMPACT);
        json_decref (body);
    }
    else if (streq (verb, "list") && args.positionals == 1) {
        json_t *body = json_object ();
        json_object_set_new (body, "op", json_string ("job.list"));
        if (args.status)
            json_object_set_new (body, "status", json_string (args.status));
        if (args.before)
            json_object_set_new (body, "before", json_string (args.before));
        if (args.limit)
            json_object_set_new (body, "limit", json_integer (atoi (args.limit)));
        request = json_dumps (body, JSON_COMPACT);
        json_decref (body);
        member = NULL;
    }
    if (!request) {
        sn_client_destroy (&client);
        s_usage (stderr);
        return 2;
    }
    int code = sn_client_request (client, request, &reply);
    free (request);
    if (code == 200 && args.watch && streq (verb, "create")) {
        json_t *json = json_loads (reply, 0, NULL);
        char *id =
            strdup (json_string_value (json_object_get (json_object_get (json, "job"), "id")));
        json_decref (json);
        code = s_watch_job (client, id, &reply);
        free (id);
    }
    if (code == 200) {
        if (member)
            output = s_reply_member (reply, member);
        else {
            json_t *json = json_loads (reply, 0, NULL);
            json_object_del (json, "rid");
            json_object_del (json, "code");
            output = json_dumps (json, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
            json_decref (json);
        }
    }
    free (reply);
    return s_finish (client, code, 200, output);
}

//  Runs command for one task; its stdout becomes the result's data (JSON when it
//  parses, else a string) and its exit status the code (0: 200, else 500). A
//  cancel for the task stops it. Returns the code, or 0 when it was cancelled.
static int
s_agent_exec (sn_client_t *client, const char *command, const char *message, const char *task,
              char **output_p)
{
    //  The child may not allocate: other threads (ZeroMQ's) may have held the
    //  allocator's lock when it was forked. Its environment is made here.
    json_t *parsed = json_loads (message, 0, NULL);
    const char *resource = json_string_value (json_object_get (parsed, "resource"));
    const char *method = json_string_value (json_object_get (parsed, "method"));
    extern char **environ;
    size_t inherited = 0;
    while (environ[inherited])
        inherited++;
    char **env = (char **) zmalloc ((inherited + 5) * sizeof (char *));
    size_t count = 0;
    for (size_t index = 0; index < inherited; index++)
        if (strncmp (environ[index], "SN_TASK", 7) != 0)
            env[count++] = environ[index];
    char *own[4] = {zsys_sprintf ("SN_TASK=%s", message), zsys_sprintf ("SN_TASK_ID=%s", task),
                    zsys_sprintf ("SN_TASK_RESOURCE=%s", resource ? resource : ""),
                    zsys_sprintf ("SN_TASK_METHOD=%s", method ? method : "")};
    for (int index = 0; index < 4; index++)
        env[count++] = own[index];
    json_decref (parsed);
    int out[2] = {-1, -1};
    pid_t child = -1;
    if (pipe (out) == 0) {
        child = fork ();
        if (child == 0) {
            setpgid (0, 0);
            dup2 (out[1], STDOUT_FILENO);
            close (out[0]);
            close (out[1]);
            execle ("/bin/sh", "sh", "-c", command, (char *) NULL, env);
            _exit (127);
        }
    }
    for (int index = 0; index < 4; index++)
        free (own[index]);
    free (env);
    if (child < 0) {
        if (out[0] >= 0) {
            close (out[0]);
            close (out[1]);
        }
        return 500;
    }
    close (out[1]);
    size_t size = 0, capacity = 4096;
    char *output = (char *) malloc (capacity + 1);
    bool cancelled = false, open = true;
    int64_t next_heartbeat = zclock_mono () + 1000;
    while (open) {
        struct pollfd item = {out[0], POLLIN, 0};
        if (poll (&item, 1, 100) > 0) {
            if (size == capacity && capacity < 1024 * 1024) {
                capacity *= 2;
                output = (char *) realloc (output, capacity + 1);
            }
            char sink[4096];
            ssize_t bytes = size < capacity ? read (out[0], output + size, capacity - size)
                                            : read (out[0], sink, sizeof sink);
            if (bytes <= 0)
                open = false;
            else if (size < capacity)
                size += (size_t) bytes;
        }
        char *pushed = NULL;
        while (sn_client_agent_next (client, 0, &pushed) == 1) {
            json_t *json = json_loads (pushed, 0, NULL);
            const char *op = json_string_value (json_object_get (json, "op"));
            const char *id = json_string_value (json_object_get (json, "id"));
            printf ("%s\n", pushed);
            fflush (stdout);
            if (op && id && streq (op, "agent.cancel") && streq (id, task) && !cancelled) {
                cancelled = true;
                kill (-child, SIGTERM);
            }
            json_decref (json);
            free (pushed);
        }
        if (zclock_mono () >= next_heartbeat) {
            sn_client_agent_heartbeat (client);
            next_heartbeat = zclock_mono () + 1000;
        }
    }
    close (out[0]);
    int status = 0;
    waitpid (child, &status, 0);
    output[size] = 0;
    *output_p = output;
    if (cancelled)
        return 0;
    return WIFEXITED (status) && WEXITSTATUS (status) == 0 ? 200 : 500;
}

//  The result data for output: the JSON it holds, else the text as a string.
static char *
s_result_data (const char *output)
{
    json_t *json = json_loads (output, JSON_DECODE_ANY, NULL);
    if (!json) {
        size_t len = strlen (output);
        while (len > 0 && (output[len - 1] == '\n' || output[len - 1] == '\r'))
            len--;
        json = json_stringn (output, len);
    }
    if (!json)
        json = json_string ("(output is not UTF-8)");
    char *text = json_dumps (json, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref (json);
    return text;
}

//  supernode agent --id ID [--exec COMMAND]: a device agent. Every message the node
//  pushes is printed on stdout as a JSON line. Without --exec a task is resolved at
//  once with {} as its data.
static int
s_agent_command (int argc, char **argv)
{
    s_job_args_t args;
    if (s_parse_job_args (argc, argv, &args) || !args.id || args.positionals) {
        s_usage (stderr);
        return 2;
    }
    zsys_init ();
    sn_client_t *client = s_client_new (args.node);
    if (!client) {
        fprintf (stderr, "supernode: cannot use node endpoint '%s'\n", args.node);
        return 2;
    }
    int code = sn_client_agent_hello (client, args.id, 1000);
    if (code != 200) {
        fprintf (stderr, "supernode: %d %s\n", code, sn_client_error (client));
        sn_client_destroy (&client);
        return 1;
    }
    fprintf (stderr, "supernode: agent %s ready\n", args.id);
    int64_t next_heartbeat = zclock_mono () + 1000;
    while (!zsys_interrupted) {
        char *message = NULL;
        if (sn_client_agent_next (client, 500, &message) == 1) {
            printf ("%s\n", message);
            fflush (stdout);
            json_t *json = json_loads (message, 0, NULL);
            const char *op = json_string_value (json_object_get (json, "op"));
            const char *task = json_string_value (json_object_get (json, "id"));
            if (op && task && streq (op, "agent.work")) {
                char *output = NULL;
                int result =
                    args.exec ? s_agent_exec (client, args.exec, message, task, &output) : 200;
                char *data = args.exec ? s_result_data (output ? output : "") : strdup ("{}");
                if (result && sn_client_agent_result (client, task, result, data) != 200)
                    fprintf (stderr, "supernode: result of %s: %s\n", task,
                             sn_client_error (client));
                free (data);
                free (output);
            }
            json_decref (json);
            free (message);
        }
        if (zclock_mono () >= next_heartbeat) {
            //  A node that restarted does not know us: the heartbeat says who we are
            sn_client_agent_heartbeat (client);
            next_heartbeat = zclock_mono () + 1000;
        }
    }
    sn_client_destroy (&client);
    return 0;
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
    if (streq (command, "keygen"))
        return s_keygen (argc - 2, argv + 2);
    argc = s_curve_args (argc, argv);
    if (argc < 0)
        return 2;
    if (streq (command, "worker"))
        return s_worker (argc - 2, argv + 2);
    if (streq (command, "put") || streq (command, "get") || streq (command, "range") ||
        streq (command, "cluster") || streq (command, "enqueue") || streq (command, "invocation") ||
        streq (command, "batch"))
        return s_client_command (command, argc - 2, argv + 2);
    if (streq (command, "job"))
        return s_job_command (argc - 2, argv + 2);
    if (streq (command, "agent"))
        return s_agent_command (argc - 2, argv + 2);
    if (streq (command, "help") || streq (command, "--help") || streq (command, "-h")) {
        s_usage (stdout);
        return 0;
    }
    fprintf (stderr, "supernode: unknown command '%s'\n", command);
    s_usage (stderr);
    return 2;
}
