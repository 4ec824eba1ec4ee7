/*  http_const: the HTTP baseline of bench/run.

    http_const HOST:PORT [THREADS]

    civetweb configured as supernode's gateway is (THREADS worker threads, default 32
    as the gateway's default, keep-alive on, the same I/O timeout), answering every
    POST /events (and POST /enqueue, the baseline of http_enqueue) with a constant 201
    JSON body of the size of a real answer. It reads
    the request body, as the gateway must, and does nothing else: what it costs is
    the floor under any civetweb handler. Runs until SIGINT or SIGTERM.
*/
#include <civetweb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The shape of the gateway's answer to POST /events from a node named "bench".
static const char s_answer[] = "{\"key\":\"20260101T000000000000000000-bench\"}";

static int
s_handle_events (struct mg_connection *conn, void *cbdata)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (strcmp (info->request_method, "POST") != 0) {
        mg_send_http_error (conn, 405, "POST only");
        return 405;
    }
    char buffer[4096];
    while (mg_read (conn, buffer, sizeof (buffer)) > 0)
        ;
    char length[32];
    snprintf (length, sizeof (length), "%zu", sizeof (s_answer) - 1);
    mg_response_header_start (conn, 201);
    mg_response_header_add (conn, "Content-Type", "application/json", -1);
    mg_response_header_add (conn, "Content-Length", length, -1);
    mg_response_header_send (conn);
    mg_write (conn, s_answer, sizeof (s_answer) - 1);
    return 201;
}

int
main (int argc, char *argv[])
{
    if (argc < 2 || argc > 3) {
        fprintf (stderr, "usage: http_const HOST:PORT [THREADS]\n");
        return 2;
    }
    const char *threads = argc == 3 ? argv[2] : "32";
    //  Blocked before civetweb starts its threads, so they inherit the mask and only
    //  sigwait below sees the signal
    sigset_t stop;
    sigemptyset (&stop);
    sigaddset (&stop, SIGINT);
    sigaddset (&stop, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &stop, NULL);

    mg_init_library (0);
    const char *options[] = {"listening_ports",
                             argv[1],
                             "num_threads",
                             threads,
                             "request_timeout_ms",
                             "10000",
                             "enable_keep_alive",
                             "yes",
                             "tcp_nodelay",
                             "1",
                             NULL};
    struct mg_callbacks callbacks = {0};
    struct mg_context *ctx = mg_start (&callbacks, NULL, options);
    if (!ctx) {
        fprintf (stderr, "http_const: cannot listen on %s\n", argv[1]);
        return 1;
    }
    mg_set_request_handler (ctx, "/events", s_handle_events, NULL);
    mg_set_request_handler (ctx, "/enqueue", s_handle_events, NULL);
    int signal_number;
    sigwait (&stop, &signal_number);
    mg_stop (ctx);
    mg_exit_library ();
    return 0;
}
