/*  sn_worker_bench: a worker for bench/run's invocations_e2e, on the client library's
    worker API.

    sn_worker_bench ENDPOINT CLASS CAPACITY NAME

    Says hello for CLASS with CAPACITY, prints "ready" once the node has answered 200,
    then reports every invocation pushed to it as succeeded at once, so the bench
    measures the queue and not the work. On SIGTERM it prints "worked=N" and exits 0,
    or 1 when any result was not accepted (each told on stderr).
*/
#include "sn_client.h"
#include <czmq.h>
#include <jansson.h>

int
main (int argc, char *argv[])
{
    if (argc != 5 || atoi (argv[3]) < 1) {
        fprintf (stderr, "usage: sn_worker_bench ENDPOINT CLASS CAPACITY NAME\n");
        return 2;
    }
    sn_client_t *client = sn_client_new (argv[1]);
    if (!client) {
        fprintf (stderr, "sn_worker_bench: bad endpoint %s\n", argv[1]);
        return 1;
    }
    const char *classes[] = {argv[2]};
    int code = sn_client_worker_hello (client, classes, 1, (uint32_t) atoi (argv[3]), argv[4]);
    if (code != 200) {
        fprintf (stderr, "sn_worker_bench: hello: %d %s\n", code, sn_client_error (client));
        sn_client_destroy (&client);
        return 1;
    }
    printf ("ready\n");
    fflush (stdout);

    uint64_t worked = 0, errors = 0;
    char *work;
    while (!zsys_interrupted && sn_client_worker_next (client, 100, &work) >= 0) {
        if (!work)
            continue;
        char *id = NULL;
        json_error_t error;
        json_t *root = json_loads (work, 0, &error);
        const char *text = json_string_value (json_object_get (root, "id"));
        if (text)
            id = strdup (text);
        json_decref (root);
        code = id ? sn_client_worker_result (client, id, 200, "{\"ok\":true}", NULL, false) : -1;
        //  202: the node keeps the result for another node that owns the invocation
        if (code == 200 || code == 202)
            worked++;
        else if (errors++ < 5)
            fprintf (stderr, "sn_worker_bench: result for %s: %d %s\n", id ? id : work, code,
                     sn_client_error (client));
        free (id);
        free (work);
    }
    printf ("worked=%" PRIu64 " errors=%" PRIu64 "\n", worked, errors);
    sn_client_destroy (&client);
    return errors ? 1 : 0;
}
