"""An owner reads a partition again when its replica list gains a reachable member
its replay did not read: a node restarted alone (no --join) places every partition
on itself and replays from its own store; the events the others acknowledged while
it was down join its running state once they come back, with no restart."""
import requests

from harness import wait_for
from test_owners import owner_of, partition, retry
from test_replication import all_see, cluster, start_cluster
from test_takeover import NO_AE, ForgingMember, enqueue_primary, states


def strip_join(node):
    if "--join" in node.extra:
        at = node.extra.index("--join")
        del node.extra[at:at + 2]


def rereads(node):
    return cluster(node)["scans"]["rereads"]


def make_jobs(nodes, partitions, count):
    """Jobs made through nodes in turn until count fell in partitions."""
    jobs = []
    for n in range(300):
        node = nodes[n % len(nodes)]
        r = retry(lambda: requests.post(node.url + "/jobs", timeout=10, json={
            "destinations": ["00:0c:29:1c:e8:0%d" % (n % 9)],
            "options": {"timeout": 600000},
            "message": {"method": "post", "resource": "/x", "data": {"n": n}}}),
            "job %d" % n)
        assert r.status_code == 200, r.text
        if r.json()["p"] in partitions:
            jobs.append(r.json())
        if len(jobs) == count:
            break
    assert jobs, "no job fell in a partition of the node that was down"
    return jobs


def test_node_restarted_alone_learns_what_was_acknowledged_while_it_was_down():
    nodes = start_cluster(["n1", "n2", "n3"], NO_AE)
    try:
        p = partition("primary")
        wait_for(lambda: len({owner_of(node, p) for node in nodes} - {None}) == 1, 30,
                 "one owner of the primary bucket's partition")
        first = next(node for node in nodes if node.name == owner_of(nodes[0], p))
        others = [node for node in nodes if node is not first]
        table = cluster(first)["partitions"]
        its = {entry["p"] for entry in table if entry["owner"] == first.name}

        # The primary bucket's owner goes down; the others acknowledge invocations
        # and jobs of its partitions, which its store never gets (no anti-entropy)
        first.kill()
        wait_for(lambda: all(owner_of(node, q) not in (None, first.name)
                             for node in others for q in its), 30,
                 "other owners while it is down")
        ids = enqueue_primary(others, 10)
        jobs = make_jobs(others, its, 3)
        for node in others:
            node.kill()

        # Back alone, without --join: it places every partition on itself at once
        # and replays its own store, which lacks them
        strip_join(first)
        first.start()
        wait_for(lambda: owner_of(first, p) == first.name, 30, "it owns the partition")
        assert states(first, ids) == [404] * len(ids)

        # The others come back joining it: it keeps owning its partitions and reads
        # them again, so what it missed is known there, with no restart
        for node in others:
            strip_join(node)
            node.extra += ["--join", f"tcp://127.0.0.1:{first.peers_port}"]
            node.start()
        wait_for(all_see(nodes, {node.name: "alive" for node in nodes}), 30, "every node alive")
        wait_for(lambda: all(owner_of(node, p) == first.name for node in nodes), 30,
                 "it owns the primary bucket's partition for all")
        owned = [job for job in jobs if owner_of(first, job["p"]) == first.name]
        assert owned, "no job left in a partition it owns"

        def found():
            return [requests.get(f"{first.url}/jobs/{job['id']}", timeout=10).status_code
                    for job in owned]
        try:
            wait_for(lambda: found() == [200] * len(owned), 30,
                     "every job made while it was down known there")
        except AssertionError:
            raise AssertionError(f"GET /jobs at it: {found()}") from None
        try:
            wait_for(lambda: states(first, ids) == ["queued"] * len(ids), 30,
                     "every invocation acknowledged while it was down known there")
        except AssertionError:
            raise AssertionError(f"GET /invocations at it: {states(first, ids)}") from None
        wait_for(lambda: requests.get(first.url + "/batch/primary", timeout=10)
                 .json()["counts"]["queued"] == len(ids), 30, "counted as queued")

        assert rereads(first) > 0

        # A replica read once is not read again when it goes and comes back: a
        # member that flaps costs no re-reads of what was read
        settled = rereads(first)
        back = others[0]
        for _ in range(2):
            back.kill()
            wait_for(lambda: {m["name"]: m["status"] for m in cluster(first)["members"]}
                     .get(back.name) in ("dead", "left"), 30, "the flapping member dead")
            back.start()
            wait_for(all_see(nodes, {node.name: "alive" for node in nodes}), 30,
                     "every node alive")
            wait_for(lambda: states(back, ids) == ["queued"] * len(ids), 30,
                     "the cluster serving again")
        assert rereads(first) - settled <= 3 * len(its), cluster(first)["scans"]
        for node in nodes:
            node.stop()
    finally:
        for node in nodes:
            node.cleanup()


def test_a_reread_of_its_own_store_alone_is_not_adopted():
    # n1 joins x2 and x3, which acknowledge every write and answer every scan with
    # a malformed page: with RF 3 each partition's replicas are n1, x2 and x3, so
    # every write is acknowledged at QUORUM, yet x2 and x3 are left out of every
    # page. n1's replays read its own store only; x2 and x3 being reachable and not
    # read, n1 reads its partitions again, and each re-read merges its own store
    # alone: one replica of three, no read quorum, so none is adopted (a write its
    # store refused and x2 and x3 acknowledged would be missing from it), while n1
    # serves its partitions as before.
    from harness import Node
    malformed = [lambda frm, limit: {"events": [], "next": "k" * 200}]
    members = [ForgingMember(malformed, name) for name in ("x2", "x3")]
    node = Node(name="n1", extra=["--heartbeat-ms", "100", "--suspect-ms", "60000",
                                  "--dead-ms", "60000", "--write-timeout-ms", "1500",
                                  "--join", members[0].endpoint])
    for member in members:
        member.peers_port = node.peers_port
        member.start()
    try:
        node.start()
        # (with these three names, n1 ranks first for the primary bucket's partition)
        p = partition("primary")
        wait_for(lambda: owner_of(node, p) == "n1" and {
            m["name"] for m in cluster(node)["members"]} >= {"n1", "x2", "x3"}, 30,
            "n1 owns the primary bucket's partition, x2 and x3 members")
        wait_for(lambda: "lacks a read quorum (1 of 3 replicas merged on every page)"
                 in node.logs(), 30,
                 "a re-read discarded for want of a read quorum")
        assert rereads(node) > 0
        # Served meanwhile: enqueued (x2 and x3 acknowledge), queued, listed
        ids = enqueue_primary([node], 3)
        assert states(node, ids) == ["queued"] * 3
        scans = cluster(node)["scans"]
        assert scans["malformed"] >= 1, scans
        node.stop()
    finally:
        for member in members:
            member.done.set()
            member.join()
        node.cleanup()


def test_scan_and_its_reread_flag_are_not_client_ops():
    from harness import Client, Node
    node = Node(name="n1").start()
    client = Client(node.endpoint)
    try:
        for fields in ({"p": 0, "reread": True}, {"p": 0, "reread": "x" * 100000},
                       {"p": 99999, "reread": [1, [2, [3]]]}):
            reply = client.call("scan", **fields)
            assert reply["code"] == 400, reply
            assert "unknown op" in reply["error"], reply
        assert requests.get(node.url + "/health", timeout=5).status_code == 200
        assert cluster(node)["scans"]["rereads"] == 0
        client.close()
        node.stop()
    finally:
        node.cleanup()
