"""GET /metrics on real nodes: the Prometheus text format parsed line by line, its
values checked against what the node was made to do (invocations queued, a job
created, a worker connected), a three-node cluster's members and partition owners,
bearer tokens, and bad input on the route and on the three stats ops."""
import os
import re
import tempfile

import msgpack
import requests

from harness import SLOW, Client, Node, wait_for

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FAST = ["--heartbeat-ms", "100", "--suspect-ms", "500", "--dead-ms", "1000",
        "--write-timeout-ms", "1500", "--anti-entropy-ms", "300"]
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-z_]+="[^"\\\n]*"(,[a-z_]+="[^"\\\n]*")*)?\})? (\S+)$')


def parse(text):
    """{(name, ((label, value), ...)): float}, asserting the exposition format: every
    line a comment or a sample, HELP and TYPE before each family's samples, names
    supernode_*, counters ending in _total, values numbers, no sample twice."""
    assert text.endswith("\n")
    helped, typed, samples = set(), {}, {}
    for line in text.splitlines():
        assert line, "blank line in the exposition"
        if line.startswith("#"):
            kind, name, rest = line[2:].split(" ", 2)
            assert kind in ("HELP", "TYPE"), line
            assert name.startswith("supernode_"), line
            if kind == "HELP":
                assert rest.strip(), line
                helped.add(name)
            else:
                assert rest in ("gauge", "counter"), line
                assert (rest == "counter") == name.endswith("_total"), line
                typed[name] = rest
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample: {line!r}"
        name, labels, value = match.group(1), match.group(3), match.group(5)
        assert name in helped and name in typed, f"{name} has no HELP or TYPE before it"
        pairs = tuple(tuple(pair.split("=", 1)) for pair in labels.split(",")) if labels else ()
        key = (name, tuple((label, value.strip('"')) for label, value in pairs))
        assert key not in samples, f"sample twice: {line}"
        samples[key] = float(value)
    assert helped == set(typed), "a HELP without a TYPE or the other way round"
    return samples


def scrape(node, headers=None):
    r = requests.get(node.url + "/metrics", headers=headers, timeout=30 * SLOW)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == CONTENT_TYPE
    return parse(r.text)


def value(samples, metric, **labels):
    return samples.get((metric, tuple(labels.items())))


def enqueue(node, n):
    r = requests.post(node.url + "/enqueue", json={
        "token": f"t{n}", "invocation": {"class": "metrics.Nobody", "method": "run",
                                         "params": [n]}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_values_match_what_the_node_did(node):
    before = scrape(node)
    for source in ("cluster", "health", "queue", "batch", "dispatch"):
        assert value(before, "supernode_scrape_errors", source=source) == 0
    assert value(before, "supernode_members", status="alive") == 1
    assert value(before, "supernode_members", status="dead") == 0
    assert value(before, "supernode_partitions") == 64
    assert value(before, "supernode_partitions_owned") == 64
    assert value(before, "supernode_node_info", name="n1") == 1
    assert value(before, "supernode_invocations", state="queued") == 0
    assert value(before, "supernode_jobs", status="created") == 0
    assert value(before, "supernode_buckets") >= 1  # primary

    # Three invocations of a class no worker runs stay queued; a job for an agent
    # that never connects stays created
    for n in range(3):
        enqueue(node, n)
    r = requests.post(node.url + "/jobs", json={
        "destinations": ["00:0c:29:1c:e8:01", "00:0c:29:1c:e8:02"],
        "message": {"method": "get", "resource": "/status"}}, timeout=10 * SLOW)
    assert r.status_code == 200, r.text
    worker = Client(node.endpoint)
    try:
        assert worker.call("worker.hello", classes=["metrics.Other"], capacity=1)["code"] == 200
        after = scrape(node)
        assert value(after, "supernode_invocations", state="queued") == 3
        assert value(after, "supernode_invocations", state="running") == 0
        assert value(after, "supernode_invocations", state="finished") == 0
        assert value(after, "supernode_invocations_in_memory") == 3
        assert value(after, "supernode_workers") == 1
        assert value(after, "supernode_jobs", status="created") == 1
        assert value(after, "supernode_jobs", status="dispatching") == 0
        assert value(after, "supernode_tasks_in_flight") == 0
        assert value(after, "supernode_agents") == 0
        assert value(after, "supernode_bucket_results", state="waiting") == 0
        # three enqueues and a job, on disk (the store counts its own events too)
        assert value(after, "supernode_events") >= value(before, "supernode_events") + 4
        assert value(after, "supernode_forwarded_total") == 0
    finally:
        worker.close()


def test_wrong_methods_and_bad_ops(node):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = requests.request(method, node.url + "/metrics", data="{}", timeout=10 * SLOW)
        assert r.status_code == 405, (method, r.text)
        assert r.headers["Allow"] == "GET"
        assert "error" in r.json()
    r = requests.get(node.url + "/metrics/x", timeout=10 * SLOW)
    assert r.status_code == 404

    client = Client(node.endpoint)
    try:
        for op in ("queue.stats", "batch.stats", "dispatch.stats"):
            assert client.call(op)["code"] == 200
            for fields in ({"bucket_id": "b1"}, {"junk": 1}, {"fwd": 1}, {"op2": [1]}):
                reply = client.call(op, **fields)
                assert reply["code"] == 400, (op, fields, reply)
                assert reply["error"], reply
            # over the schema's maxBytes
            reply = client.call(op, pad="x" * 1000)
            assert reply["code"] == 413, reply
            client.rid += 1
            client.send_raw(msgpack.packb({"op": op, "rid": "one"}))
            reply = client.recv()
            assert reply["code"] == 400, reply
    finally:
        client.close()
    # The node is still well
    assert value(scrape(node), "supernode_scrape_errors", source="queue") == 0


def test_metrics_ask_for_a_token():
    token = "prometheus-4c1e9a7b2d"
    with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as f:
        f.write(token + "\n")
    node = Node(extra=["--http-tokens", f.name]).start()
    try:
        r = requests.get(node.url + "/metrics", timeout=10 * SLOW)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="supernode"'
        samples = scrape(node, headers={"Authorization": f"Bearer {token}"})
        assert value(samples, "supernode_members", status="alive") == 1
    finally:
        node.cleanup()
        os.unlink(f.name)


def test_three_nodes_alive_and_partitions_owned_once():
    first = Node(name="n1", extra=FAST).start()
    join = ["--join", f"tcp://127.0.0.1:{first.peers_port}"]
    nodes = [first]
    try:
        nodes += [Node(name=name, extra=FAST + join).start() for name in ("n2", "n3")]

        def settled():
            views = [scrape(n) for n in nodes]
            if any(value(v, "supernode_members", status="alive") != 3 for v in views):
                return None
            owned = [value(v, "supernode_partitions_owned") for v in views]
            return views if sum(owned) == 64 else None

        views = wait_for(settled, 30, "three alive members owning 64 partitions between them")
        for view in views:
            assert value(view, "supernode_partitions") == 64
            assert value(view, "supernode_members", status="suspect") == 0
            for source in ("cluster", "health", "queue", "batch", "dispatch"):
                assert value(view, "supernode_scrape_errors", source=source) == 0
        assert {name for v in views for (metric, labels) in v
                if metric == "supernode_node_info" for (_, name) in labels} == {"n1", "n2", "n3"}
        for n in nodes:
            n.stop()
    finally:
        for n in nodes:
            n.cleanup()
