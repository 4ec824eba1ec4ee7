"""--event-retention-ms on real nodes: user events written with keys from two hours
ago (through /_put, before the node had a retention) are deleted once it is restarted
with an hour's retention, while recent user events and internal ones stay; old keys
are then refused; two replicas with the same retention converge without bringing
expired events back; a peer's replica write and repair push of expired user events
are acknowledged and not stored; a node with another retention is refused; bad
values stop the node with status 2."""
import datetime
import subprocess

import msgpack
import requests
import zmq

from harness import BIN, SLOW, Client, Node, wait_for

HOUR = 3600 * 1000
RETENTION = ["--event-retention-ms", str(HOUR)]
FAST = ["--heartbeat-ms", "100", "--suspect-ms", "500", "--dead-ms", "1000",
        "--write-timeout-ms", "1500", "--anti-entropy-ms", "300"]


def key_at(ms, seq, name="alldata"):
    """A supernode key of time ms in a name no member has (as an AllData peer's)."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return f"{moment:%Y%m%dT%H%M%S}{ms % 1000:03d}{seq:09d}-{name}"


def now_ms():
    return int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)


def put(node, key, event):
    return requests.post(node.url + "/_put", json={"key": key, "event": event},
                         timeout=10 * SLOW)


def health(node):
    r = requests.get(node.url + "/health", timeout=10 * SLOW)
    assert r.status_code == 200, r.text
    return r.json()


def page(node, **params):
    r = requests.get(node.url + "/events", params=dict(limit=1000, **params), timeout=10 * SLOW)
    assert r.status_code == 200, r.text
    return r.json()


def all_keys(node, start):
    """Every user event key from start on, through every page."""
    keys, after = [], start
    while True:
        body = page(node, **{"from": after})
        keys += [event["key"] for event in body["events"]]
        if body["next"] is None:
            return keys
        after = body["next"]


def write_history(node, old_count=30, recent_count=5):
    """Old and recent user events under given keys, fresh ones, and an invocation."""
    old_at, recent_at = now_ms() - 2 * HOUR, now_ms() - 60000
    old = [key_at(old_at + i, i) for i in range(old_count)]
    recent = [key_at(recent_at + i, i) for i in range(recent_count)]
    for index, key in enumerate(old + recent):
        r = put(node, key, {"n": index})
        assert r.status_code == 201, r.text
    fresh = []
    for n in range(3):
        r = requests.post(node.url + "/events", json={"fresh": n}, timeout=10 * SLOW)
        assert r.status_code == 201, r.text
        fresh.append(r.json()["key"])
    r = requests.post(node.url + "/enqueue", json={
        "token": "kept", "invocation": {"class": "retention.Nobody", "method": "run",
                                        "params": [1]}}, timeout=10 * SLOW)
    assert r.status_code == 202, r.text
    return old, recent + fresh, old_at


def test_old_user_events_expire_and_the_rest_stays():
    node = Node().start()
    try:
        old, kept, old_at = write_history(node)
        before = health(node)
        assert before["event_retention_ms"] == 0 and before["expired"] == 0
        assert sorted(all_keys(node, key_at(old_at - 1, 0))) == sorted(old + kept)
        node.stop()

        node.extra = RETENTION
        node.start()
        wait_for(lambda: health(node)["expired"] == len(old), 30, "the sweep")
        after = health(node)
        assert after["event_retention_ms"] == HOUR
        # Only the expired user events left the store: the rest (the invocation's
        # internal events included) is there
        assert after["events"] == before["events"] - len(old)
        for key in old:
            assert requests.get(node.url + "/events/" + key, timeout=10 * SLOW).status_code == 404
        for key in kept:
            r = requests.get(node.url + "/events/" + key, timeout=10 * SLOW)
            assert r.status_code == 200, r.text
        assert sorted(all_keys(node, key_at(old_at - 1, 0))) == sorted(kept)
        assert sorted(all_keys(node, "")) == sorted(kept)
        stats = Client(node.endpoint)
        try:
            # The invocation's internal events were replayed: it is queued again
            wait_for(lambda: stats.call("queue.stats")["invocations"]["queued"] == 1, 30,
                     "the invocation to be replayed")

            # An old key is refused wherever a client gives one, already stored or not
            for key in (old[0], key_at(old_at + 5000, 0)):
                r = put(node, key, {"n": 0})
                assert r.status_code == 422, r.text
                assert "older than the event retention (3600000 ms)" in r.json()["error"]
                reply = stats.call("put", key=key, event={"n": 0})
                assert reply["code"] == 422, reply
            reply = stats.call("bulk", puts=[{"key": old[1], "event": {"n": 1}},
                                             {"event": {"n": 2}}])
            assert reply["code"] == 200, reply
            assert [item["code"] for item in reply["results"]] == [422, 201]
            # A key within the retention is taken as ever
            r = put(node, key_at(now_ms() - HOUR // 2, 0), {"n": 3})
            assert r.status_code == 201, r.text
        finally:
            stats.close()
        r = requests.get(node.url + "/metrics", timeout=30 * SLOW)
        assert f"\nsupernode_events_expired_total {len(old)}\n" in r.text

        # After a restart nothing more is deleted and nothing came back: once a sweep
        # pass has run, it has deleted nothing
        node.stop()
        node.start()
        wait_for(lambda: health(node)["sweeps"] >= 2, 30, "sweep passes after the restart")
        assert health(node)["expired"] == 0
        assert not set(all_keys(node, "")) & set(old)
        node.stop()
    finally:
        node.cleanup()


def digests(client):
    table = {}
    for p in range(64):
        reply = client.call("digest", p=p)
        assert reply["code"] == 200, reply
        table[p] = [(b["t"], b["count"], b["xor"]) for b in reply["buckets"]]
    return table


def test_replicas_converge_without_bringing_expired_events_back():
    first = Node("n1", extra=FAST + ["--rf", "2"]).start()
    join = ["--join", f"tcp://127.0.0.1:{first.peers_port}"]
    second = Node("n2", extra=FAST + ["--rf", "2"] + join).start()
    nodes = [first, second]
    try:
        def members(node):
            r = requests.get(node.url + "/cluster", timeout=10 * SLOW)
            return {m["name"]: m["status"] for m in r.json()["members"]}
        wait_for(lambda: all(members(n) == {"n1": "alive", "n2": "alive"} for n in nodes), 30,
                 "both nodes alive")
        old, kept, old_at = write_history(first)
        for node in nodes:
            node.stop()

        # Both come back with the retention; each deletes its copies, and anti-entropy
        # rounds between them copy nothing expired back
        for node in nodes:
            node.extra = node.extra + RETENTION
            node.start()
        wait_for(lambda: all(members(n) == {"n1": "alive", "n2": "alive"} for n in nodes), 30,
                 "both nodes alive again")
        wait_for(lambda: all(health(n)["expired"] == len(old) for n in nodes), 30, "the sweeps")
        clients = [Client(node.endpoint) for node in nodes]
        try:
            def rounds(node):
                r = requests.get(node.url + "/cluster", timeout=10 * SLOW)
                return r.json()["anti_entropy"]["rounds"]
            start = [rounds(node) for node in nodes]
            wait_for(lambda: all(rounds(n) >= s + 5 for n, s in zip(nodes, start)), 30,
                     "five anti-entropy rounds on each node")
            wait_for(lambda: digests(clients[0]) == digests(clients[1]), 30, "equal digests")
            for node in nodes:
                assert health(node)["expired_ignored"] == 0
                assert sorted(all_keys(node, "")) == sorted(kept)
                for key in old[:5]:
                    r = requests.get(node.url + "/events/" + key, timeout=10 * SLOW)
                    assert r.status_code == 404, r.text
        finally:
            for client in clients:
                client.close()
        for node in nodes:
            node.stop()
    finally:
        for node in nodes:
            node.cleanup()


def test_copies_of_expired_events_are_acknowledged_and_not_stored():
    node = Node("n1", extra=FAST + RETENTION).start()
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    try:
        raw.connect(f"tcp://127.0.0.1:{node.peers_port}")
        raw.send(msgpack.packb({"op": "hello", "name": "x9", "endpoint": "tcp://127.0.0.1:1",
                                "incarnation": 1, "partitions": 64, "rf": 3, "ticket": 1,
                                "retention": HOUR}))
        wait_for(lambda: any(m["name"] == "x9" for m in requests.get(
            node.url + "/cluster", timeout=10 * SLOW).json()["members"]), 10 * SLOW,
            "x9 to be a member")
        old_at = now_ms() - 2 * HOUR
        copied, pushed, internal = key_at(old_at, 1), key_at(old_at, 2), key_at(old_at, 3)
        # A replica write and an anti-entropy push of expired user events, and a push of
        # an old internal event, which is kept
        stored = health(node)["events"]
        raw.send(msgpack.packb({"op": "rput", "rid": 1, "i": 0, "key": copied, "p": 1,
                                "event": {"n": 1}}))
        raw.send(msgpack.packb({"op": "repair", "p": 2, "events": [
            {"key": pushed, "type": "event", "event": {"n": 2}},
            {"key": internal, "type": "job.created", "event": {"n": 3}}]}))
        wait_for(lambda: health(node)["expired_ignored"] == 2, 10, "the copies to be dropped")
        # (an internal event is not read through /events: the store's count shows it)
        wait_for(lambda: health(node)["events"] == stored + 1, 10,
                 "the internal event to be stored")
        # x9 leaves, so that reads do not wait for it
        raw.send(msgpack.packb({"op": "bye", "from": "x9", "incarnation": 1}))
        wait_for(lambda: any(m["name"] == "x9" and m["status"] == "left" for m in requests.get(
            node.url + "/cluster", timeout=10 * SLOW).json()["members"]), 10, "x9 to leave")
        for key in (copied, pushed):
            assert requests.get(node.url + "/events/" + key, timeout=10 * SLOW).status_code == 404
        assert not set(all_keys(node, "")) & {copied, pushed}
        assert health(node)["expired"] == 0
        node.stop()
    finally:
        raw.close()
        node.cleanup()


def test_a_node_with_another_retention_is_refused():
    first = Node("n1", extra=FAST + RETENTION).start()
    other = Node("n2", extra=FAST + ["--join", f"tcp://127.0.0.1:{first.peers_port}"]).start()
    try:
        def refused():
            r = requests.get(first.url + "/cluster", timeout=10 * SLOW)
            return r.json()["refused"]
        reason = wait_for(refused, 30, "n1 to refuse n2")["reason"]
        assert "n2 runs with --event-retention-ms 0, n1 with 3600000" in reason
        r = requests.get(first.url + "/cluster", timeout=10 * SLOW)
        assert [m["name"] for m in r.json()["members"]] == ["n1"]
        # The refused node is a cluster of its own: it owns every partition and takes
        # writes (what the README warns of)
        r = requests.get(other.url + "/cluster", timeout=10 * SLOW)
        assert [m["name"] for m in r.json()["members"]] == ["n2"]
        assert {p["owner"] for p in r.json()["partitions"]} == {"n2"}
        r = requests.post(other.url + "/events", json={"alone": 1}, timeout=10 * SLOW)
        assert r.status_code == 201, r.text
    finally:
        first.cleanup()
        other.cleanup()


def test_bad_retention_values_stop_the_node_with_status_2():
    for value in ("5", "3599999", "-1", "1h", "", "1e7", "99999999999999999999"):
        done = subprocess.run([BIN, "run", "--event-retention-ms", value],
                              capture_output=True, text=True, timeout=30 * SLOW)
        assert done.returncode == 2, (value, done.stderr)
        assert "event-retention-ms" in done.stderr, done.stderr
