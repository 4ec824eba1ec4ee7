"""Workers connected to any node of a real three-node cluster: the only worker for a
class sits on a node that does not own the bucket, work enqueued through the third
node runs on it and its results reach GET /invocations/:id and the bucket's callback;
kill -9 of the worker's node mid-run loses nothing (a worker elsewhere runs the work
again); a worker's node killed and started again at once, never declared dead, gives
its work back at its new start's first word; progress through the worker's node, and a
worker that goes silent there; and bad input on the ops nodes use between themselves
(worker.at, worker.push, the lease on worker.result and worker.progress)."""
import os

import pytest
import requests

from harness import Client, Node, wait_for
from test_batch import Receiver
from test_owners import delivered, enqueue, get, owner_of, retry
from test_queue import SUM, Worker
from test_replication import start_cluster

FAST = ["--anti-entropy-ms", "300"]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def state(node, ident):
    return get(node, "/invocations/" + ident).json()


def roles(nodes, bucket):
    """(owner, worker node, enqueue node): three different nodes, the owner that of
    the bucket's partition."""
    probe = enqueue(nodes[0], bucket, 0)
    p = int(probe.rsplit("-", 1)[1])
    by_name = {node.name: node for node in nodes}
    wait_for(lambda: all(owner_of(node, p) == owner_of(nodes[0], p) for node in nodes), 30,
             "every node to agree on the owner")
    owner = by_name[owner_of(nodes[0], p)]
    others = [node for node in nodes if node is not owner]
    return probe, owner, others[0], others[1]


def test_worker_on_another_node_runs_the_owners_work(receiver):
    nodes = start_cluster(["n1", "n2", "n3"], FAST)
    workers = []
    try:
        r = retry(lambda: requests.post(nodes[0].url + "/batch", timeout=10, json={
            "callback_url": receiver.url, "bucket_id": "far", "batch_timeout": 200}),
            "bucket created")
        assert r.status_code == 201, r.text
        secret = r.json()["secret"]
        probe, owner, at, via = roles(nodes, "far")
        # The only worker of calc.Sum, on a node that does not own the bucket
        workers.append(Worker(at, "calc.Sum", SUM, "remote"))
        ids = {n: enqueue(via, "far", n) for n in range(1, 21)}
        ids[0] = probe
        for n, ident in ids.items():
            done = wait_for(lambda: (lambda inv: inv if inv["state"] == "succeeded" else None)(
                state(via, ident)), 60, "invocation %d to succeed" % n)
            assert done["code"] == 200 and done["response"]["sum"] == n + 1, done
            assert done["attempts"] == 1, done
        wait_for(lambda: len(delivered(receiver, secret)) == 21, 60, "21 results committed")
        for n, item in delivered(receiver, secret).items():
            assert item["code"] == 200 and item["response"]["sum"] == n + 1
        # Status through any node says where it is: nothing queued or running
        for node in nodes:
            counts = get(node, "/batch/far").json()["counts"]
            assert counts["queued"] == 0 and counts["running"] == 0, counts

        # A client cannot speak for a member: worker.at is between nodes only, and
        # work of a class nobody runs fails with 404 after its worker_wait
        client = Client(owner.endpoint)
        reply = client.call("worker.at", node=at.name, classes={"calc.Nobody": 5})
        assert reply["code"] == 403, reply
        body = {"token": "t", "bucket_id": "far", "worker_wait": 2000,
                "invocation": {"class": "calc.Nobody", "method": "m", "params": []}}
        r = retry(lambda: requests.post(via.url + "/enqueue", json=body, timeout=10), "enqueue")
        assert r.status_code == 202, r.text
        nobody = r.json()["id"]
        done = wait_for(lambda: (lambda inv: inv if inv["state"] == "failed" else None)(
            state(via, nobody)), 30, "the 404 of a class nobody runs")
        assert done["code"] == 404 and done["attempts"] == 0, done
        client.close()
        for node in nodes:
            node.stop()
    finally:
        for worker in workers:
            worker.kill()
        for node in nodes:
            node.cleanup()


def test_kill_of_the_workers_node_mid_run_loses_nothing():
    nodes = start_cluster(["n1", "n2", "n3"], FAST)
    workers = []
    try:
        probe, owner, at, via = roles(nodes, "primary")
        marker = os.path.join(at.data, "started")
        # Its command never ends: the node is killed while it runs
        stuck = Worker(at, "calc.Sum", f"cat >/dev/null; touch {marker}; exec tail -f /dev/null",
                       "stuck")
        workers.append(stuck)
        ids = {n: enqueue(via, "primary", n) for n in range(1, 6)}
        ids[0] = probe
        wait_for(lambda: os.path.exists(marker), 30, "the remote worker to start")
        # One at a time (the worker's capacity): a push beyond it is refused
        running = wait_for(lambda: (lambda r: r if len(r) == 1 else None)(
            [ident for ident in ids.values() if state(via, ident)["state"] == "running"]),
            30, "one invocation running")

        at.kill()
        stuck.kill()
        # A worker on the enqueueing node: not the owner's either
        workers.append(Worker(via, "calc.Sum", SUM, "rescuer"))
        for n, ident in ids.items():
            done = wait_for(lambda: (lambda inv: inv if inv["state"] == "succeeded" else None)(
                state(via, ident)), 60, "invocation %d to succeed" % n)
            assert done["code"] == 200 and done["response"]["sum"] == n + 1, done
        again = state(owner, running[0])
        assert again["attempts"] == 2 and again["response"]["attempt"] == 2, again
        for node in (owner, via):
            node.stop()
    finally:
        for worker in workers:
            worker.kill()
        for node in nodes:
            node.cleanup()


def test_restart_of_the_workers_node_within_dead_ms_runs_its_work_again():
    # Never suspected long enough to be dead: the owner hears of the restart only
    # from the new epoch in the node's word of its workers
    nodes = start_cluster(["n1", "n2", "n3"],
                          FAST + ["--suspect-ms", "30000", "--dead-ms", "60000"])
    workers = []
    try:
        probe, owner, at, via = roles(nodes, "primary")
        if at is nodes[0]:
            at, via = via, at  # the one restarted joins again with --join
        marker = os.path.join(at.data, "started")
        # A class of its own: the probe (calc.Sum) does not take the stuck worker
        stuck = Worker(at, "calc.Slow", f"cat >/dev/null; touch {marker}; exec tail -f /dev/null",
                       "stuck")
        workers.append(stuck)
        # Its timeout is far beyond the wait below: only the restart gives it back
        body = {"token": "tok-5", "timeout": 3600000, "data": {"n": 5},
                "invocation": {"class": "calc.Slow", "method": "add", "params": [5, 1]}}
        r = retry(lambda: requests.post(via.url + "/enqueue", json=body, timeout=10), "enqueue")
        assert r.status_code == 202, r.text
        ident = r.json()["id"]
        wait_for(lambda: os.path.exists(marker), 30, "the remote worker to start")
        inv = state(via, ident)
        assert inv["state"] == "running" and inv["attempts"] == 1, inv

        at.kill()
        stuck.kill()
        at.start()
        workers.append(Worker(at, "calc.Slow", SUM, "again"))
        done = wait_for(lambda: (lambda inv: inv if inv["state"] == "succeeded" else None)(
            state(via, ident)), 60, "the invocation to run again and succeed")
        assert done["attempts"] == 2 and done["response"]["attempt"] == 2, done
        assert done["response"]["sum"] == 6, done
        assert "of its worker started again" in owner.logs()
        for node in nodes:
            node.stop()
    finally:
        for worker in workers:
            worker.kill()
        for node in nodes:
            node.cleanup()


def test_progress_and_silence_of_a_worker_on_another_node():
    nodes = start_cluster(["n1", "n2", "n3"], FAST)
    try:
        probe, owner, at, via = roles(nodes, "primary")
        worker = Client(at.endpoint)
        reply = worker.call("worker.hello", classes=["calc.Raw"], capacity=1, name="raw")
        assert reply["code"] == 200, reply
        body = {"token": "t", "backoff": 0,
                "invocation": {"class": "calc.Raw", "method": "m", "params": [1]}}
        r = retry(lambda: requests.post(via.url + "/enqueue", json=body, timeout=10), "enqueue")
        assert r.status_code == 202, r.text
        ident = r.json()["id"]
        work = worker.recv(30)
        assert work["op"] == "work" and work["id"] == ident and work["attempt"] == 1, work
        # Progress reaches the owner through the worker's node
        reply = worker.call("worker.progress", id=ident, progress=40)
        assert reply["code"] == 200, reply
        inv = state(via, ident)
        assert inv["state"] == "running" and inv["progress"] == 40, inv

        # Silent past the worker timeout: its node tells the owner, which queues the
        # invocation again without waiting for its timeout
        wait_for(lambda: state(via, ident)["state"] == "queued", 30, "the work taken back")
        inv = state(via, ident)
        assert inv["attempts"] == 1 and "silent" in inv["error"], inv
        assert worker.call("worker.heartbeat")["code"] == 404
        reply = worker.call("worker.hello", classes=["calc.Raw"], capacity=1, name="raw")
        assert reply["code"] == 200, reply
        work = worker.recv(30)
        assert work["id"] == ident and work["attempt"] == 2, work
        reply = worker.call("worker.result", id=ident, code=200, response={"ok": 2})
        assert reply["code"] == 200, reply
        inv = state(via, ident)
        assert inv["state"] == "succeeded" and inv["response"] == {"ok": 2}, inv
        assert inv["attempts"] == 2, inv
        for node in nodes:
            node.stop()
    finally:
        for node in nodes:
            node.cleanup()


def test_bad_input_on_the_ops_between_nodes():
    node = Node().start()
    try:
        client = Client(node.endpoint)
        ok = {"id": "abc-3", "bucket_id": "primary", "token": "t", "attempt": 1,
              "timeout": 1000, "lease": "00ff", "node": "n9",
              "invocation": {"class": "calc.Sum", "method": "add", "params": [1]}}
        bad_pushes = [
            {k: v for k, v in ok.items() if k != "lease"},
            {k: v for k, v in ok.items() if k != "invocation"},
            dict(ok, attempt=0), dict(ok, timeout=0), dict(ok, lease=""),
            dict(ok, lease="x" * 17), dict(ok, id="x" * 48), dict(ok, node=""),
            dict(ok, invocation={"method": "add"}), dict(ok, invocation="calc.Sum"),
            dict(ok, extra=1), dict(ok, fwd=17), dict(ok, data=[1]),
            dict(ok, token="t" * 2000), dict(ok, bucket_id=7),
        ]
        for push in bad_pushes:
            reply = client.call("worker.push", **push)
            assert reply["code"] == 400, (push, reply)
        # Well formed: still refused to a client, the op is between nodes only (the
        # queue's selftest and the cluster tests above drive it as the mesh does)
        reply = client.call("worker.push", **ok)
        assert reply["code"] == 403 and "nodes of the cluster only" in reply["error"], reply

        bad_words = [
            {"classes": {"c": 1}}, {"node": "n2"}, {"node": "n2", "classes": [1]},
            {"node": "n2", "classes": {"c": -1}}, {"node": "n2", "classes": {"c": "1"}},
            {"node": "n2", "classes": {"c": 2 ** 32}}, {"node": "x" * 65, "classes": {}},
            {"node": "n2", "classes": {"c%d" % i: 1 for i in range(1001)}},
            {"node": "n2", "classes": {}, "extra": True},
            {"node": "n2", "classes": {}, "epoch": ""},
            {"node": "n2", "classes": {}, "epoch": "e" * 17},
            {"node": "n2", "classes": {}, "epoch": 7},
        ]
        for word in bad_words:
            reply = client.call("worker.at", **word)
            assert reply["code"] == 400, (word, reply)
        reply = client.call("worker.at", node="n2", classes={"calc.Sum": 3})
        assert reply["code"] == 403, reply
        reply = client.call("worker.at", node="n2", epoch="0123456789abcdef", classes={})
        assert reply["code"] == 403, reply

        # A lease that is not the invocation's counts for nothing
        r = requests.post(node.url + "/enqueue", json={
            "token": "t", "invocation": {"class": "calc.Other", "method": "m", "params": []}})
        assert r.status_code == 202, r.text
        ident = r.json()["id"]
        for op, fields in (("worker.result", {"code": 200}), ("worker.progress", {})):
            reply = client.call(op, id=ident, lease="0123456789abcdef", **fields)
            assert reply["code"] == 409, reply
            reply = client.call(op, id="nope-1", lease="0123", **fields)
            assert reply["code"] == 404, reply
            reply = client.call(op, id=ident, lease="", **fields)
            assert reply["code"] == 400, reply
            reply = client.call(op, id=ident, lease="0" * 17, **fields)
            assert reply["code"] == 400, reply
        assert requests.get(node.url + "/invocations/" + ident).json()["state"] == "queued"
        client.close()
        node.stop()
    finally:
        node.cleanup()
