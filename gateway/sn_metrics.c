/*  sn_metrics: the node's numbers in the Prometheus text exposition format (0.0.4).

    Each metric family is written only when its reply has it, so that a node of an
    older version that lacks a field leaves that metric out rather than showing 0.
*/
#include "sn_metrics.h"
#include <stdio.h>

//  Where each number comes from: a source's name and the op that asks it.
static const char *s_sources[][2] = {{"cluster", "cluster"},
                                     {"health", "health"},
                                     {"queue", "queue.stats"},
                                     {"batch", "batch.stats"},
                                     {"dispatch", "dispatch.stats"}};

#define S_SOURCES (sizeof s_sources / sizeof s_sources[0])

struct _sn_metrics_t {
    json_t *replies[S_SOURCES]; //  each source's reply, or NULL: it failed
};

sn_metrics_t *
sn_metrics_new (void)
{
    return (sn_metrics_t *) zmalloc (sizeof (sn_metrics_t));
}

void
sn_metrics_destroy (sn_metrics_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_metrics_t *self = *self_p;
        for (size_t index = 0; index < S_SOURCES; index++)
            json_decref (self->replies[index]);
        free (self);
        *self_p = NULL;
    }
}

const char *
sn_metrics_source (size_t index)
{
    return index < S_SOURCES ? s_sources[index][0] : NULL;
}

const char *
sn_metrics_source_op (size_t index)
{
    return index < S_SOURCES ? s_sources[index][1] : NULL;
}

int
sn_metrics_set (sn_metrics_t *self, const char *source, json_t *reply)
{
    assert (self);
    for (size_t index = 0; index < S_SOURCES; index++)
        if (streq (source, s_sources[index][0])) {
            json_decref (self->replies[index]);
            self->replies[index] = json_is_object (reply) ? json_incref (reply) : NULL;
            json_decref (reply);
            return 0;
        }
    json_decref (reply);
    return -1;
}

static json_t *
s_reply (sn_metrics_t *self, const char *source)
{
    for (size_t index = 0; index < S_SOURCES; index++)
        if (streq (source, s_sources[index][0]))
            return self->replies[index];
    return NULL;
}

//  The value at a path of member names ("hints.pending"), or NULL.
static json_t *
s_at (json_t *json, const char *path)
{
    char name[64];
    while (json && *path) {
        size_t length = strcspn (path, ".");
        if (length >= sizeof name)
            return NULL;
        memcpy (name, path, length);
        name[length] = 0;
        json = json_object_get (json, name);
        path += length + (path[length] == '.');
    }
    return json_is_number (json) || json_is_object (json) || json_is_array (json) ? json : NULL;
}

static void
s_family (FILE *out, const char *name, const char *type, const char *help)
{
    fprintf (out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
s_value (FILE *out, json_t *number)
{
    if (json_is_integer (number))
        fprintf (out, "%" JSON_INTEGER_FORMAT "\n", json_integer_value (number));
    else
        fprintf (out, "%.17g\n", json_real_value (number));
}

//  One metric without labels, from path in json, when it is there.
static void
s_scalar (FILE *out, json_t *json, const char *path, const char *name, const char *type,
          const char *help)
{
    json_t *number = s_at (json, path);
    if (!json_is_number (number))
        return;
    s_family (out, name, type, help);
    fprintf (out, "%s ", name);
    s_value (out, number);
}

//  One metric with one label, a sample per member of the map at path that is a
//  number, labelled with its name: the members come from the node's own code, a
//  small fixed set. keys, when not NULL, orders them and leaves out the others.
static void
s_labelled (FILE *out, json_t *json, const char *path, const char *name, const char *type,
            const char *help, const char *label, const char *const *keys)
{
    json_t *map = s_at (json, path);
    if (!json_is_object (map))
        return;
    bool any = false;
    const char *key;
    json_t *number;
    if (keys) {
        for (size_t index = 0; keys[index]; index++)
            any |= json_is_number (json_object_get (map, keys[index]));
    }
    else
        json_object_foreach (map, key, number) any |= json_is_number (number);
    if (!any)
        return;
    s_family (out, name, type, help);
    if (keys) {
        for (size_t index = 0; keys[index]; index++) {
            number = json_object_get (map, keys[index]);
            if (json_is_number (number)) {
                fprintf (out, "%s{%s=\"%s\"} ", name, label, keys[index]);
                s_value (out, number);
            }
        }
    }
    else {
        //  Sorted, so that the text is the same from scrape to scrape
        const char *names[64];
        size_t count = 0;
        json_object_foreach (map, key, number)
        {
            if (json_is_number (number) && count < 64 &&
                strspn (key, "abcdefghijklmnopqrstuvwxyz_") == strlen (key))
                names[count++] = key;
        }
        for (size_t index = 1; index < count; index++)
            for (size_t back = index; back > 0 && strcmp (names[back - 1], names[back]) > 0;
                 back--) {
                const char *swap = names[back];
                names[back] = names[back - 1];
                names[back - 1] = swap;
            }
        for (size_t index = 0; index < count; index++) {
            fprintf (out, "%s{%s=\"%s\"} ", name, label, names[index]);
            s_value (out, json_object_get (map, names[index]));
        }
    }
}

static void
s_render_cluster (FILE *out, json_t *cluster)
{
    json_t *members = json_object_get (cluster, "members");
    if (json_is_array (members)) {
        const char *statuses[] = {"alive", "suspect", "dead", "left"};
        size_t counts[4] = {0};
        size_t index;
        json_t *member;
        json_array_foreach (members, index, member)
        {
            const char *status = json_string_value (json_object_get (member, "status"));
            for (size_t which = 0; status && which < 4; which++)
                if (streq (status, statuses[which]))
                    counts[which]++;
        }
        s_family (out, "supernode_members", "gauge",
                  "Members of the cluster in this node's view, by status.");
        for (size_t which = 0; which < 4; which++)
            fprintf (out, "supernode_members{status=\"%s\"} %zu\n", statuses[which], counts[which]);
    }
    json_t *partitions = json_object_get (cluster, "partitions");
    const char *name = json_string_value (json_object_get (cluster, "name"));
    if (json_is_array (partitions)) {
        size_t owned = 0, index;
        json_t *partition;
        json_array_foreach (partitions, index, partition)
        {
            const char *owner = json_string_value (json_object_get (partition, "owner"));
            if (owner && name && streq (owner, name))
                owned++;
        }
        s_family (out, "supernode_partitions", "gauge", "Partitions of the cluster (P).");
        fprintf (out, "supernode_partitions %zu\n", json_array_size (partitions));
        s_family (out, "supernode_partitions_owned", "gauge",
                  "Partitions this node owns (is the first live replica of).");
        fprintf (out, "supernode_partitions_owned %zu\n", owned);
    }
    s_scalar (out, cluster, "hints.pending", "supernode_hints_pending", "gauge",
              "Hints (writes kept for a replica that missed them) not yet handed off.");
    s_scalar (out, cluster, "hints.bytes", "supernode_hints_bytes", "gauge",
              "Bytes of those hints.");
    s_scalar (out, cluster, "hints.dropped", "supernode_hints_dropped_total", "counter",
              "Hints refused for want of room.");
    s_scalar (out, cluster, "anti_entropy.rounds", "supernode_anti_entropy_rounds_total", "counter",
              "Anti-entropy rounds run.");
    s_scalar (out, cluster, "anti_entropy.pushed", "supernode_anti_entropy_pushed_total", "counter",
              "Events anti-entropy sent to other replicas.");
    s_scalar (out, cluster, "anti_entropy.received", "supernode_anti_entropy_received_total",
              "counter", "Events anti-entropy received from other replicas.");
    s_scalar (out, cluster, "writes_failed", "supernode_writes_failed_total", "counter",
              "Writes that missed their commit level.");
    s_scalar (out, cluster, "forwarded", "supernode_forwarded_total", "counter",
              "Requests forwarded to the owner of their partition.");
    s_labelled (out, cluster, "scans", "supernode_scan_replicas_total", "counter",
                "Replicas left out of takeover scan pages, by reason (silent: no answer in time; "
                "malformed: a bad page; skipped: not asked, silent or bad lately).",
                "reason", NULL);
    s_scalar (out, cluster, "dropped", "supernode_peer_messages_dropped_total", "counter",
              "Peer messages dropped: malformed or unauthenticated.");
}

char *
sn_metrics_render (sn_metrics_t *self)
{
    assert (self);
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    if (!out)
        return NULL;
    json_t *cluster = s_reply (self, "cluster");
    if (cluster)
        s_render_cluster (out, cluster);

    json_t *health = s_reply (self, "health");
    const char *name = json_string_value (json_object_get (health, "name"));
    if (name && !strpbrk (name, "\"\\\n")) {
        s_family (out, "supernode_node_info", "gauge", "The node's name, as a label; always 1.");
        fprintf (out, "supernode_node_info{name=\"%s\"} 1\n", name);
    }
    s_scalar (out, health, "events", "supernode_events", "gauge",
              "Events in this node's store, internal ones included.");
    s_scalar (out, health, "expired", "supernode_events_expired_total", "counter",
              "User events past --event-retention-ms this node's store deleted since it started.");

    json_t *queue = s_reply (self, "queue");
    const char *states[] = {"queued", "running", "finished", NULL};
    s_labelled (out, queue, "invocations", "supernode_invocations", "gauge",
                "Invocations of the buckets this node owns, by state (finished: ever).", "state",
                states);
    s_scalar (out, queue, "in_memory", "supernode_invocations_in_memory", "gauge",
              "Invocations held in memory here.");
    s_scalar (out, queue, "workers", "supernode_workers", "gauge",
              "Workers connected to this node.");
    s_scalar (out, queue, "results_held", "supernode_worker_results_held", "gauge",
              "Results of other nodes' invocations kept here until their owner takes them.");

    json_t *batch = s_reply (self, "batch");
    s_scalar (out, batch, "buckets", "supernode_buckets", "gauge",
              "Buckets of the partitions this node owns.");
    const char *commit_states[] = {"waiting", "committing", "delivered", "abandoned", NULL};
    s_labelled (out, batch, "counts", "supernode_bucket_results", "gauge",
                "Results of those buckets by commit state, summed.", "state", commit_states);
    s_scalar (out, batch, "commits_pending", "supernode_commits_pending", "gauge",
              "Commits made and not yet delivered or abandoned.");

    json_t *dispatch = s_reply (self, "dispatch");
    const char *job_statuses[] = {"created",   "dispatching", "resolved",
                                  "cancelled", "timeout",     NULL};
    s_labelled (out, dispatch, "jobs", "supernode_jobs", "gauge",
                "Jobs of the partitions this node owns, in memory, by status.", "status",
                job_statuses);
    s_scalar (out, dispatch, "tasks_in_flight", "supernode_tasks_in_flight", "gauge",
              "Tasks of those jobs sent and not yet answered.");
    s_scalar (out, dispatch, "agents", "supernode_agents", "gauge",
              "Device agents connected to this node.");
    s_scalar (out, dispatch, "evicted", "supernode_jobs_evicted_total", "counter",
              "Finished jobs that left memory since the node started.");

    s_family (out, "supernode_scrape_errors", "gauge",
              "1 when a source did not answer this scrape (its metrics are left out), else 0.");
    for (size_t index = 0; index < S_SOURCES; index++)
        fprintf (out, "supernode_scrape_errors{source=\"%s\"} %d\n", s_sources[index][0],
                 self->replies[index] ? 0 : 1);
    if (fclose (out)) {
        free (text);
        return NULL;
    }
    return text;
}

//  --------------------------------------------------------------------------
//  Selftest

static void
s_expect_lines (const char *text, const char *const *lines, bool present)
{
    for (size_t index = 0; lines[index]; index++) {
        char *line = zsys_sprintf ("\n%s\n", lines[index]);
        char *framed = zsys_sprintf ("\n%s", text);
        bool found = strstr (framed, line) != NULL;
        if (found != present)
            zsys_error ("sn_metrics: %s: %s", present ? "missing" : "unexpected", lines[index]);
        assert (found == present);
        zstr_free (&line);
        zstr_free (&framed);
    }
}

void
sn_metrics_test (bool verbose)
{
    printf (" * sn_metrics: ");
    //  Sources
    assert (streq (sn_metrics_source (0), "cluster"));
    assert (streq (sn_metrics_source_op (2), "queue.stats"));
    assert (sn_metrics_source (S_SOURCES) == NULL);

    //  Every source answered
    sn_metrics_t *metrics = sn_metrics_new ();
    assert (sn_metrics_set (metrics, "nonsense", json_object ()) == -1);
    assert (sn_metrics_set (
                metrics, "cluster",
                json_loads ("{\"name\": \"n1\", \"members\": [{\"name\": \"n1\", \"status\": "
                            "\"alive\"}, {\"name\": \"n2\", \"status\": \"alive\"}, {\"name\": "
                            "\"n3\", \"status\": \"dead\"}], \"partitions\": [{\"p\": 0, "
                            "\"owner\": \"n1\"}, {\"p\": 1, \"owner\": \"n2\"}, {\"p\": 2, "
                            "\"owner\": \"n1\"}, {\"p\": 3, \"owner\": null}], \"hints\": "
                            "{\"pending\": 2, \"bytes\": 300, \"dropped\": 1}, \"anti_entropy\": "
                            "{\"rounds\": 7, \"last\": null, \"pushed\": 4, \"received\": 5}, "
                            "\"writes_failed\": 3, \"forwarded\": 9, \"scans\": {\"silent\": 1, "
                            "\"skipped\": 3, \"malformed\": 2}, \"dropped\": 6}",
                            0, NULL)) == 0);
    sn_metrics_set (metrics, "health", json_loads ("{\"name\": \"n1\", \"events\": 42}", 0, NULL));
    sn_metrics_set (metrics, "queue",
                    json_loads ("{\"invocations\": {\"queued\": 3, \"running\": 1, \"finished\": "
                                "8}, \"in_memory\": 12, \"workers\": 2, \"results_held\": 0}",
                                0, NULL));
    sn_metrics_set (metrics, "batch",
                    json_loads ("{\"buckets\": 2, \"commits_pending\": 1, \"counts\": "
                                "{\"waiting\": 4, \"committing\": 5, \"delivered\": 6, "
                                "\"abandoned\": 0}}",
                                0, NULL));
    sn_metrics_set (metrics, "dispatch",
                    json_loads ("{\"jobs\": {\"created\": 1, \"dispatching\": 2, \"resolved\": 3, "
                                "\"cancelled\": 0, \"timeout\": 4}, \"tasks_in_flight\": 5, "
                                "\"agents\": 6, \"evicted\": 7}",
                                0, NULL));
    char *text = sn_metrics_render (metrics);
    assert (text);
    if (verbose)
        printf ("\n%s", text);
    const char *all[] = {"# HELP supernode_members Members of the cluster in this node's view, "
                         "by status.",
                         "# TYPE supernode_members gauge",
                         "supernode_members{status=\"alive\"} 2",
                         "supernode_members{status=\"suspect\"} 0",
                         "supernode_members{status=\"dead\"} 1",
                         "supernode_members{status=\"left\"} 0",
                         "supernode_partitions 4",
                         "supernode_partitions_owned 2",
                         "supernode_hints_pending 2",
                         "supernode_hints_bytes 300",
                         "# TYPE supernode_hints_dropped_total counter",
                         "supernode_hints_dropped_total 1",
                         "supernode_anti_entropy_rounds_total 7",
                         "supernode_anti_entropy_pushed_total 4",
                         "supernode_anti_entropy_received_total 5",
                         "supernode_writes_failed_total 3",
                         "supernode_forwarded_total 9",
                         "# TYPE supernode_scan_replicas_total counter",
                         "supernode_scan_replicas_total{reason=\"malformed\"} 2\n"
                         "supernode_scan_replicas_total{reason=\"silent\"} 1\n"
                         "supernode_scan_replicas_total{reason=\"skipped\"} 3",
                         "supernode_peer_messages_dropped_total 6",
                         "supernode_node_info{name=\"n1\"} 1",
                         "supernode_events 42",
                         "supernode_invocations{state=\"queued\"} 3",
                         "supernode_invocations{state=\"running\"} 1",
                         "supernode_invocations{state=\"finished\"} 8",
                         "supernode_invocations_in_memory 12",
                         "supernode_workers 2",
                         "supernode_worker_results_held 0",
                         "supernode_buckets 2",
                         "supernode_bucket_results{state=\"waiting\"} 4",
                         "supernode_bucket_results{state=\"committing\"} 5",
                         "supernode_bucket_results{state=\"delivered\"} 6",
                         "supernode_bucket_results{state=\"abandoned\"} 0",
                         "supernode_commits_pending 1",
                         "supernode_jobs{status=\"created\"} 1",
                         "supernode_jobs{status=\"dispatching\"} 2",
                         "supernode_jobs{status=\"resolved\"} 3",
                         "supernode_jobs{status=\"cancelled\"} 0",
                         "supernode_jobs{status=\"timeout\"} 4",
                         "supernode_tasks_in_flight 5",
                         "supernode_agents 6",
                         "supernode_jobs_evicted_total 7",
                         "supernode_scrape_errors{source=\"cluster\"} 0",
                         "supernode_scrape_errors{source=\"dispatch\"} 0",
                         NULL};
    s_expect_lines (text, all, true);
    //  Every line is a comment or a sample, and every sample's family was announced
    size_t samples = 0;
    char *copy = strdup (text);
    for (char *line = strtok (copy, "\n"); line; line = strtok (NULL, "\n")) {
        if (line[0] == '#') {
            assert (strncmp (line, "# HELP supernode_", 17) == 0 ||
                    strncmp (line, "# TYPE supernode_", 17) == 0);
            continue;
        }
        assert (strncmp (line, "supernode_", 10) == 0);
        char family[128];
        size_t length = strcspn (line, "{ ");
        assert (length < sizeof family);
        memcpy (family, line, length);
        family[length] = 0;
        char *type = zsys_sprintf ("# TYPE %s ", family);
        assert (strstr (text, type));
        zstr_free (&type);
        samples++;
    }
    free (copy);
    assert (samples == 45);
    zstr_free (&text);

    //  A source that failed is left out and named; the rest is still there
    sn_metrics_set (metrics, "queue", NULL);
    sn_metrics_set (metrics, "cluster", json_string ("not a map"));
    text = sn_metrics_render (metrics);
    const char *failed[] = {"supernode_scrape_errors{source=\"cluster\"} 1",
                            "supernode_scrape_errors{source=\"health\"} 0",
                            "supernode_scrape_errors{source=\"queue\"} 1",
                            "supernode_events 42",
                            "supernode_jobs_evicted_total 7",
                            NULL};
    s_expect_lines (text, failed, true);
    const char *gone[] = {"# TYPE supernode_members gauge", "supernode_workers 2",
                          "supernode_invocations{state=\"queued\"} 3", NULL};
    s_expect_lines (text, gone, false);
    zstr_free (&text);

    //  A reply without some fields leaves those metrics out, HELP and TYPE too
    sn_metrics_set (metrics, "dispatch", json_loads ("{\"agents\": 1, \"jobs\": {}}", 0, NULL));
    sn_metrics_set (metrics, "health",
                    json_loads ("{\"name\": \"a\\\"b\", \"events\": 1.5}", 0, NULL));
    text = sn_metrics_render (metrics);
    const char *partial[] = {"supernode_agents 1", "supernode_events 1.5", NULL};
    s_expect_lines (text, partial, true);
    const char *absent[] = {"# TYPE supernode_jobs gauge", "# TYPE supernode_tasks_in_flight gauge",
                            "# TYPE supernode_node_info gauge", NULL};
    s_expect_lines (text, absent, false);
    zstr_free (&text);
    sn_metrics_destroy (&metrics);
    sn_metrics_destroy (&metrics);
    printf ("OK\n");
}
