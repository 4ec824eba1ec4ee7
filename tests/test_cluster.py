"""Membership across real supernode processes: joining, failure detection, refuting by
coming back, leaving, and garbage on the peer endpoint."""
import msgpack
import requests
import zmq

from harness import Node, wait_for


def cluster(node):
    r = requests.get(node.url + "/cluster", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def statuses(node):
    return {m["name"]: m["status"] for m in cluster(node)["members"]}


def sees(observer, expected):
    """True when observer's member table has exactly these statuses for these names."""
    def check():
        view = statuses(observer)
        return all(view.get(name) == status for name, status in expected.items())
    return check


def test_three_nodes_join_fail_return_and_leave():
    n1 = Node(name="n1").start()
    join = ["--join", f"tcp://127.0.0.1:{n1.peers_port}"]
    n2 = Node(name="n2", extra=join).start()
    n3 = Node(name="n3", extra=join).start()
    nodes = [n1, n2, n3]
    try:
        everyone = {"n1": "alive", "n2": "alive", "n3": "alive"}
        for node in nodes:
            wait_for(sees(node, everyone), 30, f"{node.name} to see all three alive")

        # Every node computes the same partition table from the member list alone;
        # with RF 3 and three members, every partition is on all three.
        tables = [cluster(node)["partitions"] for node in nodes]
        assert tables[0] == tables[1] == tables[2]
        assert len(tables[0]) == 64
        for partition in tables[0]:
            assert sorted(partition["replicas"]) == ["n1", "n2", "n3"]
            assert partition["owner"] in ("n1", "n2", "n3")

        # Garbage and hello-less messages on a peer endpoint are dropped and counted
        dropped = cluster(n1)["dropped"]
        ctx = zmq.Context.instance()
        raw = ctx.socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(f"tcp://127.0.0.1:{n1.peers_port}")
        raw.send(b"garbage")
        raw.send(msgpack.packb({"op": "ping", "from": "n2",
                                "members": [["n3", "tcp://x:1", 2 ** 63, "dead"]]}))
        raw.send(b"\xdd\xff\xff\xff\xff")
        raw.send_multipart([b"two", b"frames"])
        wait_for(lambda: cluster(n1)["dropped"] >= dropped + 4, 10, "n1 to drop garbage")
        raw.close()
        for node in nodes:
            assert statuses(node) == everyone

        # kill -9: the others find out through the failure detector
        n3.kill()
        for node in (n1, n2):
            wait_for(sees(node, {"n3": "dead"}), 30, f"{node.name} to see n3 dead")
        for partition in cluster(n1)["partitions"]:
            assert partition["owner"] != "n3"

        # Back with a higher incarnation, through its join endpoint
        n3.start()
        for node in nodes:
            wait_for(sees(node, everyone), 30, f"{node.name} to see n3 back")

        # A clean stop says goodbye
        n2.stop()
        for node in (n1, n3):
            wait_for(sees(node, {"n2": "left"}), 30, f"{node.name} to see n2 leave")
        for partition in cluster(n1)["partitions"]:
            assert "n2" not in partition["replicas"]

        # The first node, which has no --join, stops and comes back knowing no one:
        # the others' hellos to members that left find it again
        n1.stop()
        wait_for(sees(n3, {"n1": "left"}), 30, "n3 to see n1 leave")
        n1.start()
        wait_for(sees(n3, {"n1": "alive"}), 60, "n3 to find n1 again")
        wait_for(sees(n1, {"n3": "alive"}), 30, "n1 to see n3")
        n1.stop()
        n3.stop()
    finally:
        for node in nodes:
            node.cleanup()


def test_a_node_placing_partitions_otherwise_is_refused_and_told_why():
    n1 = Node(name="n1").start()
    n2 = Node(name="n2", extra=["--partitions", "32",
                                "--join", f"tcp://127.0.0.1:{n1.peers_port}"]).start()
    try:
        wait_for(lambda: cluster(n1)["refused"], 30, "n1 to refuse n2's hello")
        wait_for(lambda: cluster(n2)["refused_by"], 30, "n2 to hear it was refused")
        assert "--partitions 32" in cluster(n1)["refused"]["reason"]
        assert cluster(n2)["refused_by"]["reason"].startswith(
            "refused by n1: n2 runs with --partitions 32")
        assert cluster(n1)["refused_by"] is None and cluster(n2)["refused"] is None
        assert [m["name"] for m in cluster(n1)["members"]] == ["n1"]
        assert [m["name"] for m in cluster(n2)["members"]] == ["n2"]
        # Both still serve on their own
        assert requests.post(n2.url + "/events", json={"a": 1}, timeout=5).status_code == 201
        # A refusal from a stranger, who never heard n1's hello and so cannot echo its
        # ticket, is dropped: oversized, binary or plain
        dropped = cluster(n1)["dropped"]
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(f"tcp://127.0.0.1:{n1.peers_port}")
        for reason in ["r" * 100000, b"\xff\xfe\n", "go away"]:
            raw.send(msgpack.packb({"op": "refused", "from": "x", "ticket": 12345,
                                    "reason": reason}))
        wait_for(lambda: cluster(n1)["dropped"] >= dropped + 3, 10,
                 "n1 to drop the stranger's refusals")
        assert cluster(n1)["refused_by"] is None
        assert [m["name"] for m in cluster(n1)["members"]] == ["n1"]
        raw.close()
        n1.stop()
        n2.stop()
    finally:
        n1.cleanup()
        n2.cleanup()


def test_cluster_route_errors(node):
    assert requests.post(node.url + "/cluster", timeout=5).status_code == 405
    view = cluster(node)
    assert [m["name"] for m in view["members"]] == ["n1"]
    assert all(p["owner"] == "n1" for p in view["partitions"])
