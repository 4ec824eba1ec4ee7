/*  sn_jobs_bench: one job fanned out over many simulated agents, and its raw baseline.

    sn_jobs_bench jobs ENDPOINT TASKS AGENTS    a supernode: AGENTS agents say hello,
                                                one job of TASKS tasks over them, each
                                                agent answers every task at once
    sn_jobs_bench rtt ENDPOINT TASKS AGENTS     an echo server: AGENTS DEALERs make
                                                TASKS round trips in all, one at a time
                                                each, of frames shaped like the work

    Both keep one message in flight per agent, as the node keeps one task in flight
    per destination, and print one line "<rate> tasks/s seconds=.. tasks=..
    agents=.." (jobs adds resolved_ms, the time from the job's creation to its last
    result acknowledged). They exit 1 when something failed or did not finish in 120 s.
*/
#include "sn_msg.h"

#define S_DEADLINE_MS (120 * 1000)

static void
s_mac (uint32_t index, char *out, size_t size)
{
    snprintf (out, size, "02:00:00:%02x:%02x:%02x", (index >> 16) & 255, (index >> 8) & 255,
              index & 255);
}

static zsock_t *
s_dealer (const char *endpoint)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_linger (dealer, 0);
    zsock_set_sndhwm (dealer, 0);
    zsock_set_rcvhwm (dealer, 0);
    if (zsock_connect (dealer, "%s", endpoint))
        zsock_destroy (&dealer);
    return dealer;
}

static void
s_send (zsock_t *socket, sn_pack_t *pack)
{
    zframe_t *frame = sn_pack_frame (pack);
    zframe_send (&frame, socket, 0);
}

//  A work-shaped frame for the baseline: what the node pushes to an agent.
static void
s_pack_work (sn_pack_t *pack, uint32_t task)
{
    char id[48];
    snprintf (id, sizeof id, "1a2039c18b19ecbf0b7-%u", task);
    sn_pack_reset (pack);
    sn_pack_map (pack, 6);
    sn_pack_kv_str (pack, "op", "agent.work");
    sn_pack_kv_str (pack, "id", id);
    sn_pack_kv_str (pack, "method", "post");
    sn_pack_kv_str (pack, "resource", "/bench");
    sn_pack_str (pack, "data");
    sn_pack_map (pack, 0);
    sn_pack_kv_uint (pack, "timeout", 600000);
}

//  Waits for a message on any of count sockets until the deadline; returns its
//  index, or -1.
static int
s_wait (zmq_pollitem_t *items, int count, int64_t deadline)
{
    int64_t left = deadline - zclock_mono ();
    if (left <= 0 || zmq_poll (items, count, (long) left) <= 0)
        return -1;
    for (int index = 0; index < count; index++)
        if (items[index].revents & ZMQ_POLLIN)
            return index;
    return -1;
}

static int
s_rtt (const char *endpoint, uint32_t tasks, uint32_t agents)
{
    zsock_t **dealers = (zsock_t **) zmalloc (agents * sizeof (zsock_t *));
    zmq_pollitem_t *items = (zmq_pollitem_t *) zmalloc (agents * sizeof (zmq_pollitem_t));
    uint32_t *left = (uint32_t *) zmalloc (agents * sizeof (uint32_t));
    sn_pack_t *pack = sn_pack_new ();
    for (uint32_t index = 0; index < agents; index++) {
        dealers[index] = s_dealer (endpoint);
        assert (dealers[index]);
        items[index] = (zmq_pollitem_t){zsock_resolve (dealers[index]), 0, ZMQ_POLLIN, 0};
        left[index] = tasks / agents + (index < tasks % agents);
    }
    int64_t start = zclock_usecs (), deadline = zclock_mono () + S_DEADLINE_MS;
    uint32_t done = 0;
    for (uint32_t index = 0; index < agents; index++)
        if (left[index]) {
            s_pack_work (pack, index);
            s_send (dealers[index], pack);
        }
    while (done < tasks) {
        if (s_wait (items, (int) agents, deadline) < 0)
            break;
        for (uint32_t index = 0; index < agents; index++) {
            if (!(items[index].revents & ZMQ_POLLIN))
                continue;
            zframe_t *frame = zframe_recv (dealers[index]);
            sn_msg_t *msg = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
            assert (msg);
            sn_msg_destroy (&msg);
            zframe_destroy (&frame);
            done++;
            if (--left[index]) {
                s_pack_work (pack, done);
                s_send (dealers[index], pack);
            }
        }
    }
    double seconds = (double) (zclock_usecs () - start) / 1e6;
    printf ("%.0f tasks/s seconds=%.3f tasks=%u agents=%u\n", done / seconds, seconds, done,
            agents);
    for (uint32_t index = 0; index < agents; index++)
        zsock_destroy (&dealers[index]);
    free (dealers);
    free (items);
    free (left);
    sn_pack_destroy (&pack);
    return done == tasks ? 0 : 1;
}

static int
s_jobs (const char *endpoint, uint32_t tasks, uint32_t agents)
{
    //  The agents, then the producer, in one poll set
    zsock_t **sockets = (zsock_t **) zmalloc ((agents + 1) * sizeof (zsock_t *));
    zmq_pollitem_t *items = (zmq_pollitem_t *) zmalloc ((agents + 1) * sizeof (zmq_pollitem_t));
    sn_pack_t *pack = sn_pack_new ();
    char mac[32];
    for (uint32_t index = 0; index <= agents; index++) {
        sockets[index] = s_dealer (endpoint);
        assert (sockets[index]);
        items[index] = (zmq_pollitem_t){zsock_resolve (sockets[index]), 0, ZMQ_POLLIN, 0};
    }
    int64_t deadline = zclock_mono () + S_DEADLINE_MS;
    for (uint32_t index = 0; index < agents; index++) {
        s_mac (index, mac, sizeof mac);
        sn_pack_reset (pack);
        sn_pack_map (pack, 4);
        sn_pack_kv_str (pack, "op", "agent.hello");
        sn_pack_kv_uint (pack, "rid", 1);
        sn_pack_kv_str (pack, "id", mac);
        sn_pack_kv_uint (pack, "heartbeat", 3600000);
        s_send (sockets[index], pack);
    }
    uint32_t ready = 0;
    int failed = 0;
    while (ready < agents && !failed) {
        if (s_wait (items, (int) agents, deadline) < 0) {
            fprintf (stderr, "sn_jobs_bench: %u of %u agents said hello\n", ready, agents);
            failed = 1;
        }
        for (uint32_t index = 0; index < agents && !failed; index++)
            if (items[index].revents & ZMQ_POLLIN) {
                zframe_t *frame = zframe_recv (sockets[index]);
                zframe_destroy (&frame);
                ready++;
            }
    }
    sn_pack_reset (pack);
    sn_pack_map (pack, 5);
    sn_pack_kv_str (pack, "op", "job.create");
    sn_pack_kv_uint (pack, "rid", 1);
    sn_pack_str (pack, "destinations");
    sn_pack_array (pack, tasks);
    for (uint32_t index = 0; index < tasks; index++) {
        s_mac (index % agents, mac, sizeof mac);
        sn_pack_str (pack, mac);
    }
    sn_pack_str (pack, "message");
    sn_pack_map (pack, 3);
    sn_pack_kv_str (pack, "method", "post");
    sn_pack_kv_str (pack, "resource", "/bench");
    sn_pack_str (pack, "data");
    sn_pack_map (pack, 0);
    sn_pack_str (pack, "options");
    sn_pack_map (pack, 1);
    sn_pack_kv_uint (pack, "timeout", 600000);
    int64_t start = zclock_usecs ();
    s_send (sockets[agents], pack);
    uint32_t acked = 0;
    char *job_id = NULL;
    while (acked < tasks && !failed) {
        if (s_wait (items, (int) agents + 1, deadline) < 0) {
            fprintf (stderr, "sn_jobs_bench: %u of %u results acknowledged\n", acked, tasks);
            failed = 1;
        }
        for (uint32_t index = 0; index <= agents && !failed; index++) {
            if (!(items[index].revents & ZMQ_POLLIN))
                continue;
            zframe_t *frame;
            while ((frame = zframe_recv_nowait (sockets[index]))) {
                sn_msg_t *msg = sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL);
                zframe_destroy (&frame);
                const sn_value_t *root = msg ? sn_msg_root (msg) : NULL;
                int64_t code = 0;
                sn_value_int (sn_value_get (root, "code"), &code);
                if (index == agents) {
                    job_id = sn_value_get_strdup (sn_value_get (root, "job"), "id");
                    if (code != 200 || !job_id) {
                        fprintf (stderr, "sn_jobs_bench: job.create answered %d\n", (int) code);
                        failed = 1;
                    }
                }
                else if (sn_value_streq (sn_value_get (root, "op"), "agent.work")) {
                    char *task = sn_value_get_strdup (root, "id");
                    s_mac (index, mac, sizeof mac);
                    sn_pack_reset (pack);
                    sn_pack_map (pack, 6);
                    sn_pack_kv_str (pack, "op", "agent.result");
                    sn_pack_kv_uint (pack, "rid", 2);
                    sn_pack_kv_str (pack, "id", mac);
                    sn_pack_kv_str (pack, "task", task ? task : "");
                    sn_pack_kv_uint (pack, "code", 200);
                    sn_pack_str (pack, "data");
                    sn_pack_map (pack, 0);
                    s_send (sockets[index], pack);
                    free (task);
                }
                else if (code == 200)
                    acked++;
                else {
                    fprintf (stderr, "sn_jobs_bench: a result was answered %d\n", (int) code);
                    failed = 1;
                }
                sn_msg_destroy (&msg);
            }
        }
    }
    double seconds = (double) (zclock_usecs () - start) / 1e6;
    if (!failed) {
        //  Every result is acknowledged: the job must say so
        sn_pack_reset (pack);
        sn_pack_map (pack, 3);
        sn_pack_kv_str (pack, "op", "job.get");
        sn_pack_kv_uint (pack, "rid", 3);
        sn_pack_kv_str (pack, "id", job_id ? job_id : "");
        s_send (sockets[agents], pack);
        zmq_pollitem_t producer = items[agents];
        zframe_t *frame = zmq_poll (&producer, 1, 10000) > 0 ? zframe_recv (sockets[agents]) : NULL;
        sn_msg_t *msg =
            frame ? sn_msg_decode (zframe_data (frame), zframe_size (frame), 0, NULL) : NULL;
        const sn_value_t *job = sn_value_get (msg ? sn_msg_root (msg) : NULL, "job");
        uint64_t done = 0;
        sn_value_uint (sn_value_get (job, "doneCount"), &done);
        if (!sn_value_streq (sn_value_get (job, "status"), "resolved") || done != tasks) {
            fprintf (stderr, "sn_jobs_bench: the job is not resolved with %u tasks done\n", tasks);
            failed = 1;
        }
        sn_msg_destroy (&msg);
        zframe_destroy (&frame);
    }
    printf ("%.0f tasks/s seconds=%.3f tasks=%u agents=%u resolved_ms=%.0f\n", acked / seconds,
            seconds, acked, agents, seconds * 1000);
    for (uint32_t index = 0; index <= agents; index++)
        zsock_destroy (&sockets[index]);
    free (sockets);
    free (items);
    free (job_id);
    sn_pack_destroy (&pack);
    return failed;
}

int
main (int argc, char *argv[])
{
    if (argc != 5) {
        fprintf (stderr, "usage: sn_jobs_bench jobs|rtt ENDPOINT TASKS AGENTS\n");
        return 2;
    }
    uint32_t tasks = (uint32_t) atoi (argv[3]), agents = (uint32_t) atoi (argv[4]);
    if (tasks < 1 || tasks > 10000 || agents < 1 || agents > tasks) {
        fprintf (stderr, "sn_jobs_bench: 1 <= AGENTS <= TASKS <= 10000\n");
        return 2;
    }
    //  One socket per agent: more than ZeroMQ's default of 1023
    zsys_set_max_sockets (agents + 64);
    zsys_init ();
    zsys_handler_set (NULL);
    if (streq (argv[1], "jobs"))
        return s_jobs (argv[2], tasks, agents);
    if (streq (argv[1], "rtt"))
        return s_rtt (argv[2], tasks, agents);
    fprintf (stderr, "usage: sn_jobs_bench jobs|rtt ENDPOINT TASKS AGENTS\n");
    return 2;
}
