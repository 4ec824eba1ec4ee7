"""Replication across real supernode processes: commit levels, kill -9 and restart,
hinted handoff, anti-entropy filling a new member, and peer frames that must not be
trusted."""
import msgpack
import requests
import zmq

from harness import Client, Node, wait_for

FAST = ["--heartbeat-ms", "100", "--suspect-ms", "500", "--dead-ms", "1000",
        "--write-timeout-ms", "1500"]


def cluster(node):
    r = requests.get(node.url + "/cluster", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def all_see(nodes, expected):
    def check():
        for node in nodes:
            view = {m["name"]: m["status"] for m in cluster(node)["members"]}
            if any(view.get(name) != status for name, status in expected.items()):
                return False
        return True
    return check


def start_cluster(names, extra=()):
    first = Node(name=names[0], extra=FAST + list(extra)).start()
    join = ["--join", f"tcp://127.0.0.1:{first.peers_port}"]
    nodes = [first] + [Node(name=name, extra=FAST + list(extra) + join).start()
                       for name in names[1:]]
    wait_for(all_see(nodes, {name: "alive" for name in names}), 30, "every node alive")
    return nodes


def digests(client, partitions=64):
    table = {}
    for p in range(partitions):
        reply = client.call("digest", p=p)
        assert reply["code"] == 200, reply
        table[p] = [(b["t"], b["count"], b["xor"]) for b in reply["buckets"]]
    return table


def replicas_of(node):
    return {entry["p"]: entry["replicas"] for entry in cluster(node)["partitions"]}


def test_quorum_writes_survive_kill_and_restart():
    nodes = start_cluster(["n1", "n2", "n3"], ["--anti-entropy-ms", "300"])
    n1, n2, n3 = nodes
    clients = {node.name: Client(node.endpoint) for node in nodes}
    written = {}
    try:
        def write(count, through):
            for i in range(count):
                client = clients[through[i % len(through)].name]
                event = {"n": len(written), "via": client.rid}
                reply = client.call("put", event=event, commit="QUORUM")
                assert reply["code"] == 201, reply
                assert reply["written"] >= 2
                written[reply["key"]] = event

        write(60, nodes)
        n3.kill()
        clients.pop("n3").close()
        # While n3 is down and still thought alive, and after it is declared dead
        write(60, [n1, n2])
        wait_for(all_see([n1, n2], {"n3": "dead"}), 30, "n3 declared dead")
        write(60, [n1, n2])
        n3.start()
        clients["n3"] = Client(n3.endpoint)
        wait_for(all_see(nodes, {"n1": "alive", "n2": "alive", "n3": "alive"}), 30,
                 "n3 back")
        write(30, nodes)
        # A bulk is replicated item by item, at its commit level
        events = [{"bulk": i} for i in range(50)]
        reply = clients["n2"].call("bulk", puts=[{"event": e} for e in events], commit="ALL")
        assert reply["code"] == 200, reply
        for result, event in zip(reply["results"], events):
            assert result["code"] == 201, result
            written[result["key"]] = event

        # Every acknowledged event can be read from every node
        for name, client in clients.items():
            for key, event in written.items():
                reply = client.call("get", key=key)
                assert reply["code"] == 200, (name, reply)
                assert reply["event"] == event

        # ... and the restarted node's store converges to the others' by itself
        def converged():
            tables = [digests(client) for client in clients.values()]
            return all(table == tables[0] for table in tables)
        wait_for(converged, 60, "n3 to converge")
        assert cluster(n1)["anti_entropy"]["rounds"] > 0
        n1.stop()  # clean exit, no sanitizer report, with calls and links in use
    finally:
        for client in clients.values():
            client.close()
        for node in nodes:
            node.cleanup()


def test_commit_all_fails_clearly_and_hints_are_handed_over():
    # No anti-entropy during the test: only hints can bring n4 its writes
    nodes = start_cluster(["n1", "n2", "n3", "n4"], ["--anti-entropy-ms", "3600000"])
    n1, n2, n3, n4 = nodes
    client = Client(n1.endpoint)
    try:
        n4.kill()
        wait_for(all_see([n1, n2, n3], {"n4": "dead"}), 30, "n4 declared dead")
        placement = replicas_of(n1)

        failed = succeeded = 0
        keys = []
        for i in range(40):
            reply = client.call("put", event={"all": i}, commit="ALL")
            key = reply["key"]
            keys.append(key)
            p = client.call("get", key=key)["p"]
            if "n4" in placement[p]:
                assert reply["code"] == 503, reply
                assert "commit ALL not met: 2 of 3 replicas written" in reply["error"]
                assert reply["written"] == 2
                failed += 1
            else:
                assert reply["code"] == 201, reply
                succeeded += 1
        assert failed and succeeded

        for i in range(40):
            reply = client.call("put", event={"quorum": i})
            assert reply["code"] == 201, reply
            keys.append(reply["key"])

        def pending():
            return sum(cluster(node)["hints"]["pending"] for node in (n1, n2, n3))
        assert pending() > 0

        n4.start()
        wait_for(lambda: pending() == 0, 60, "hints to be handed over")
        back = Client(n4.endpoint)
        theirs = digests(back)
        ours = digests(client)
        back.close()
        for p, replicas in placement.items():
            if "n4" in replicas and "n1" in replicas:
                assert theirs[p] == ours[p], p
        n1.stop()
    finally:
        client.close()
        for node in nodes:
            node.cleanup()


def test_new_member_is_filled_by_anti_entropy():
    nodes = start_cluster(["n1", "n2", "n3"], ["--anti-entropy-ms", "200"])
    client = Client(nodes[0].endpoint)
    n4 = None
    try:
        for i in range(100):
            assert client.call("put", event={"before": i}, commit="ALL")["code"] == 201
        n4 = Node(name="n4", extra=FAST + ["--anti-entropy-ms", "200", "--join",
                                           f"tcp://127.0.0.1:{nodes[0].peers_port}"]).start()
        everyone = {name: "alive" for name in ("n1", "n2", "n3", "n4")}
        wait_for(all_see(nodes + [n4], everyone), 30, "n4 to join")
        placement = replicas_of(n4)
        mine = [p for p, replicas in placement.items() if "n4" in replicas]
        assert mine
        reference = digests(client)
        joined = Client(n4.endpoint)
        try:
            def filled():
                theirs = digests(joined)
                return all(theirs[p] == reference[p] for p in mine)
            wait_for(filled, 60, "n4's partitions to be filled")
        finally:
            joined.close()
    finally:
        client.close()
        for node in nodes + ([n4] if n4 else []):
            node.cleanup()


def test_peer_data_frames_need_a_hello():
    node = Node(name="n1", extra=FAST).start()
    client = Client(node.endpoint)
    try:
        dropped = cluster(node)["dropped"]
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(f"tcp://127.0.0.1:{node.peers_port}")
        key = "20260101T000000000000000001-x1"
        frames = [
            {"op": "rput", "rid": 1, "i": 0, "key": key, "p": 1, "event": {"forged": True}},
            {"op": "repair", "p": 1, "events": [{"key": key, "type": "event", "event": {}}]},
            {"op": "hint", "for": "n1", "key": key, "p": 1, "event": {}},
            {"op": "digest", "p": 1, "buckets": [[1, 2, 3]]},
        ]
        for frame in frames:
            raw.send(msgpack.packb(frame))
        wait_for(lambda: cluster(node)["dropped"] >= dropped + len(frames), 10,
                 "the frames to be dropped")
        raw.close()
        assert client.call("get", key=key)["code"] == 404
        assert cluster(node)["hints"]["pending"] == 0
        # The node still works
        assert client.call("put", event={"after": 1})["code"] == 201
        node.stop()
    finally:
        client.close()
        node.cleanup()


def test_range_reads_cover_the_cluster():
    # RF 2 of 3: no node holds every event, yet a range on any node sees them all
    nodes = start_cluster(["n1", "n2", "n3"], ["--rf", "2"])
    clients = [Client(node.endpoint) for node in nodes]
    try:
        keys = []
        for i in range(120):
            reply = clients[i % 3].call("put", event={"i": i}, commit="ALL")
            assert reply["code"] == 201, reply
            keys.append(reply["key"])
        held = [requests.get(node.url + "/health", timeout=5).json()["events"] for node in nodes]
        assert all(count < len(keys) for count in held), held
        for client, node in zip(clients, nodes):
            seen, start = [], None
            while True:
                fields = {"limit": 50}
                if start:
                    fields["from"] = start
                reply = client.call("range", **fields)
                assert reply["code"] == 200, reply
                seen += [e["key"] for e in reply["events"]]
                start = reply["next"]
                if start is None:
                    break
            assert seen == sorted(keys), node.name
        # ... and over HTTP, bounded by to
        middle = sorted(keys)[60]
        r = requests.get(nodes[1].url + "/events", params={"to": middle, "limit": 1000},
                         timeout=10)
        assert r.status_code == 200, r.text
        assert [e["key"] for e in r.json()["events"]] == sorted(keys)[:60]
    finally:
        for client in clients:
            client.close()
        for node in nodes:
            node.cleanup()


def test_keys_at_the_end_of_time_and_in_members_names():
    nodes = start_cluster(["n1", "n2"], ["--rf", "2", "--anti-entropy-ms", "100"])
    clients = [Client(node.endpoint) for node in nodes]
    try:
        # A key in the last hour a key can hold: anti-entropy copies it without
        # stepping past year 9999
        key = "99991231T235959999000000000-zz"
        assert clients[0].call("put", key=key, event={"late": 1}, commit="ONE")["code"] == 201
        rounds = cluster(nodes[0])["anti_entropy"]["rounds"]
        wait_for(lambda: cluster(nodes[0])["anti_entropy"]["rounds"] >= rounds + 5, 30,
                 "five anti-entropy rounds")
        for client in clients:
            assert client.call("get", key=key)["event"] == {"late": 1}
        # A key in a member's name is that member's to make, through any node
        reply = clients[1].call("put", key="20260101T000000000000000000-n1", event={})
        assert reply["code"] == 400 and "made by node n1 only" in reply["error"], reply
        # ... and the nodes still make keys of their own time
        made = clients[0].call("put", event={"after": 1})["key"]
        assert made.startswith("20") and made < "3000"
        for node in nodes:
            node.stop()
    finally:
        for client in clients:
            client.close()
        for node in nodes:
            node.cleanup()


def test_pipelined_writes_to_a_cluster_are_all_acknowledged():
    # Thousands in flight: replica writes and acks travel many to a message, and the
    # replicas store them many to a transaction
    nodes = start_cluster(["n1", "n2", "n3"])
    client = Client(nodes[0].endpoint)
    try:
        total, window, sent, acked = 3000, 600, 0, {}
        while len(acked) < total:
            while sent < total and sent - len(acked) < window:
                client.send("put", event={"flood": sent})
                sent += 1
            reply = client.recv()
            assert reply["code"] == 201 and reply["written"] >= 2, reply
            acked[reply["rid"]] = reply["key"]
        assert len(set(acked.values())) == total
        others = [Client(node.endpoint) for node in nodes[1:]]
        for other in others:
            for rid in list(acked)[::97]:
                reply = other.call("get", key=acked[rid])
                assert reply["code"] == 200 and reply["event"] == {"flood": rid - 1}, reply
            other.close()
        for node in nodes:
            node.stop()
    finally:
        client.close()
        for node in nodes:
            node.cleanup()


def test_malformed_data_frames_from_a_member_are_dropped():
    node = Node(name="n1", extra=FAST).start()
    client = Client(node.endpoint)
    raw = zmq.Context.instance().socket(zmq.DEALER)
    try:
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(f"tcp://127.0.0.1:{node.peers_port}")
        # A member in good standing: it said hello
        raw.send(msgpack.packb({"op": "hello", "name": "x9", "endpoint": "tcp://127.0.0.1:1",
                                "incarnation": 1, "partitions": 64, "rf": 3, "ticket": 1}))
        wait_for(lambda: any(m["name"] == "x9" for m in cluster(node)["members"]), 10,
                 "x9 to be a member")
        dropped = cluster(node)["dropped"]
        key = "20260101T000000000000000001-x1"
        deep = {"e": 1}
        for _ in range(30):
            deep = {"e": deep}
        frames = [
            {"op": "rput", "rid": 1, "i": 0, "key": "not a key", "p": 1, "event": {}},
            {"op": "rput", "rid": 1, "i": 99, "key": key, "p": 1, "event": {}},
            {"op": "rput", "rid": 1, "i": 0, "key": key, "p": 64, "event": {}},
            {"op": "rputs", "writes": "nope"},
            {"op": "racks", "acks": {"not": "an array"}},
            {"op": "rack", "rid": "x", "i": 0, "code": 201},
            {"op": "hint", "for": "n1", "key": key, "p": 1, "event": {}},
            {"op": "digest", "p": 1, "buckets": [[5, 1, 1], [4, 1, 1]]},
            {"op": "pull", "p": 1, "buckets": list(range(50))},
            {"op": "repair", "p": 1, "events": [{"key": key, "type": 7, "event": {}}]},
            {"op": "rrange", "rid": 1, "limit": 0},
            {"op": "rscan", "rid": 1, "limit": 10},
            {"op": "rscan", "rid": 1, "p": 64, "limit": 10},
            {"op": "rscan", "rid": 1, "p": "1", "limit": 10},
            {"op": "rscan", "rid": 1, "p": 1},
            {"op": "rscan", "rid": 1, "p": 1, "limit": 1001},
            {"op": "rscan", "rid": "x", "p": 1, "limit": 10},
            {"op": "rscan", "rid": 1, "p": 1, "limit": 10, "from": "k" * 200},
            {"op": "rscan", "rid": 1, "p": 1, "limit": 10, "to": 7},
            {"op": "rscan", "rid": 1, "p": 1, "limit": 10, "prefix": "t" * 65},
            {"op": "rscan", "rid": 1, "p": 1, "limit": 10, "prefix": ["x"]},
            {"op": "fwd", "rid": 1, "request": "x"},
            {"op": "rput", "rid": 1, "i": 0, "key": key, "p": 1, "event": deep},
            {"op": "digest", "p": 1, "within": 5, "buckets": []},
            {"op": "digest", "p": 1, "within": 3600000, "buckets": [[0, 1, 1]]},
            {"op": "digest", "p": 1, "within": 3600000, "buckets": [[3600001, 1, 1]]},
            {"op": "digest", "p": 1, "within": 0,
             "buckets": [[t * 60000, 1, 1] for t in range(61)]},
            {"op": "pull", "p": 1, "span": 7, "buckets": [0]},
            {"op": "pull", "p": 1, "span": 60000, "buckets": [30]},
            {"op": "pull", "p": 1, "span": 60000, "buckets": [t * 60000 for t in range(61)]},
            {"op": "pull", "p": 1, "span": "x", "buckets": [0]},
            {"op": "digest", "p": 1, "within": "x", "buckets": []},
            {"op": "digest", "p": 1, "within": 10 ** 15 * 36, "buckets": []},
            {"op": "fwd", "rid": 1, "timeout": "x", "request": "x"},
            {"op": "hello", "name": "x8", "endpoint": "tcp://127.0.0.1:1", "incarnation": 1,
             "partitions": "x", "rf": 3, "ticket": 1},
            {"op": "hello", "name": "x8", "endpoint": "tcp://127.0.0.1:1", "incarnation": 1,
             "partitions": 64, "ticket": 1},
            {"op": "refused", "from": 7, "ticket": 1, "reason": "r"},
            {"op": "refused", "from": "-bad", "ticket": 1, "reason": "r"},
            {"op": "refused", "from": "x", "ticket": 1, "reason": "not our ticket"},
        ]
        for frame in frames:
            raw.send(msgpack.packb(frame))
        # one item dropped alone inside a batch of writes; the good one is stored
        raw.send(msgpack.packb({"op": "rputs", "writes": [
            {"rid": 2, "i": 0, "key": "bad", "p": 1, "event": {}},
            {"rid": 3, "i": 0, "key": key, "p": 1, "event": {"good": 1}}]}))
        raw.send(b"\xdf" + b"\xff" * 8)  # a map declaring 4 billion entries
        wait_for(lambda: cluster(node)["dropped"] >= dropped + len(frames) + 2, 10,
                 "the malformed frames to be dropped")
        assert cluster(node)["hints"]["pending"] == 0
        assert cluster(node)["refused_by"] is None
        assert "x8" not in [m["name"] for m in cluster(node)["members"]]
        wait_for(lambda: client.call("get", key=key)["code"] == 200, 10, "the good item")
        assert client.call("put", event={"after": 1}, commit="ONE")["code"] == 201
        node.stop()
    finally:
        raw.close()
        client.close()
        node.cleanup()


def test_anti_entropy_copies_the_minutes_that_differ_not_the_hour():
    # n3 holds 3,000 events of one hour, all in its 10th minute; it leaves, and 20
    # events of the 20th minute are written without it (no hints for a member that
    # left). Back, it is brought the 20 by anti-entropy, which narrows the hours that
    # differ to their minutes: not the 3,000 around them.
    nodes = start_cluster(["n1", "n2", "n3"], ["--anti-entropy-ms", "200"])
    n1, n3 = nodes[0], nodes[2]
    client = Client(n1.endpoint)
    try:
        def key(minute, i):
            return "20250101T10%02d00000%09d-x1" % (minute, i)
        for start in range(0, 3000, 500):
            reply = client.call("bulk", commit="ALL", puts=[
                {"key": key(10, i), "event": {"i": i}} for i in range(start, start + 500)])
            assert [r["code"] for r in reply["results"]] == [201] * 500, reply
        n3.stop()
        wait_for(all_see(nodes[:2], {"n3": "left"}), 30, "n3 to have left")
        reply = client.call("bulk", puts=[{"key": key(20, i), "event": {"late": i}}
                                          for i in range(20)])
        assert [r["code"] for r in reply["results"]] == [201] * 20, reply
        n3.start()
        wait_for(all_see(nodes, {"n1": "alive", "n2": "alive", "n3": "alive"}), 30,
                 "n3 back")
        reference = digests(client)
        back = Client(n3.endpoint)
        try:
            wait_for(lambda: digests(back) == reference, 60, "n3 to converge")
        finally:
            back.close()
        received = cluster(n3)["anti_entropy"]["received"]
        # The 20, from each of the two others at most, and a margin for rounds that
        # overlapped; the hours whole would be thousands
        assert 20 <= received <= 200, received
        for node in nodes:
            node.stop()
    finally:
        client.close()
        for node in nodes:
            node.cleanup()
