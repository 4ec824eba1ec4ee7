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
        reference = digests(clients["n1"])
        wait_for(lambda: digests(clients["n3"]) == reference and
                 digests(clients["n2"]) == reference, 60, "n3 to converge")
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
