"""The queue of one real node: POST /enqueue, real workers (the CLI worker running a
command per invocation), retries, a worker killed mid-invocation, kill -9 of the node,
and bad input on every queue route and op."""
import json
import os
import signal
import subprocess
import sys
import tempfile

import msgpack
import pytest
import requests

from harness import BIN, SLOW, Client, Node, wait_for

PYTHON = "/usr/bin/python3"

# A command that answers the sum of the params, as the CLI worker runs it.
SUM = (f"{PYTHON} -c 'import json,sys; w=json.load(sys.stdin); "
       "print(json.dumps({\"sum\": sum(w[\"invocation\"][\"params\"]), "
       "\"token\": w[\"token\"], \"attempt\": w[\"attempt\"]}))'")


class Worker:
    """supernode worker, as a process in its own session so that kill takes its
    command too."""

    def __init__(self, node, klass, command=None, name="w"):
        args = [BIN, "worker", "--node", node.endpoint, "--class", klass, "--name", name]
        if command:
            args += ["--exec", command]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@pytest.fixture
def workers():
    started = []
    yield started
    for worker in started:
        worker.kill()


def enqueue(node, params, klass="calc.Sum", **fields):
    body = {"token": "tok-%d" % params[0] if params else "tok",
            "invocation": {"class": klass, "method": "add", "params": params}}
    body.update(fields)
    r = requests.post(node.url + "/enqueue", json=body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def invocation(node, ident):
    r = requests.get(node.url + "/invocations/" + ident)
    assert r.status_code == 200, r.text
    return r.json()


def finished(node, ident):
    inv = invocation(node, ident)
    return inv if inv["state"] in ("succeeded", "failed") else None


def test_enqueue_run_by_cli_worker(node, workers):
    ident = enqueue(node, [1, 2, 3], data={"account": 7})
    inv = invocation(node, ident)
    assert inv["state"] == "queued" and inv["token"] == "tok-1"
    assert inv["data"] == {"account": 7} and inv["bucket_id"] == "primary"
    workers.append(Worker(node, "calc.Sum", SUM))
    done = wait_for(lambda: finished(node, ident), 20, "the invocation to finish")
    assert done["state"] == "succeeded" and done["code"] == 200, done
    assert done["response"] == {"sum": 6, "token": "tok-1", "attempt": 1}
    assert done["attempts"] == 1


def test_many_invocations_all_run_once(node, workers):
    ids = [enqueue(node, [i, 1]) for i in range(50)]
    workers.append(Worker(node, "calc.Sum", SUM, "a"))
    workers.append(Worker(node, "calc.Sum", SUM, "b"))
    for i, ident in enumerate(ids):
        done = wait_for(lambda: finished(node, ident), 60, "every invocation")
        assert done["code"] == 200 and done["response"]["sum"] == i + 1


def test_exit_status_is_the_outcome(node, workers):
    retry = enqueue(node, [1], klass="calc.Flaky", backoff=0, max_attempts=3)
    fail = enqueue(node, [2], klass="calc.Broken")
    # Exit 75 asks for a retry: it runs max_attempts times, then fails with 503
    workers.append(Worker(node, "calc.Flaky", "cat >/dev/null; echo '\"later\"'; exit 75"))
    workers.append(Worker(node, "calc.Broken", "cat >/dev/null; exit 3"))
    done = wait_for(lambda: finished(node, retry), 30, "the retries")
    assert done["state"] == "failed" and done["code"] == 503 and done["attempts"] == 3
    assert done["response"] == "later"
    done = wait_for(lambda: finished(node, fail), 30, "the failure")
    assert done["state"] == "failed" and done["code"] == 500 and done["attempts"] == 1
    assert "status 3" in done["error"]


def test_no_worker_for_the_class_is_404(node):
    ident = enqueue(node, [1], klass="nobody.Runs", worker_wait=1)
    done = wait_for(lambda: finished(node, ident), 20, "the 404")
    assert done["code"] == 404 and "nobody.Runs" in done["error"]


def test_delayed_work_waits(node, workers):
    later = enqueue(node, [1], delay=3600 * 1000)
    now = enqueue(node, [2])
    workers.append(Worker(node, "calc.Sum", SUM))
    wait_for(lambda: finished(node, now), 20, "the undelayed one")
    assert invocation(node, later)["state"] == "queued"


def test_worker_killed_mid_invocation_runs_elsewhere(node, workers):
    marker = os.path.join(node.data, "started")
    ident = enqueue(node, [5, 5])
    # The first worker's command never ends: it is killed while it runs.
    stuck = Worker(node, "calc.Sum", f"cat >/dev/null; touch {marker}; exec tail -f /dev/null")
    workers.append(stuck)
    wait_for(lambda: os.path.exists(marker), 20, "the first worker to start")
    assert invocation(node, ident)["state"] == "running"
    stuck.kill()
    workers.append(Worker(node, "calc.Sum", SUM, "rescuer"))
    done = wait_for(lambda: finished(node, ident), 60, "the rescue")
    assert done["code"] == 200 and done["response"]["sum"] == 10
    assert done["attempts"] == 2 and done["response"]["attempt"] == 2


def test_sigkill_of_the_node_loses_nothing_acknowledged(workers):
    node = Node().start()
    try:
        done_before = enqueue(node, [1, 1])
        worker = Worker(node, "calc.Sum", SUM)
        workers.append(worker)
        wait_for(lambda: finished(node, done_before), 20, "the first result")
        worker.kill()
        queued = [enqueue(node, [i, 100]) for i in range(20)]
        node.kill()
        node.start()
        assert finished(node, done_before)["response"]["sum"] == 2
        for ident in queued:
            assert invocation(node, ident)["state"] == "queued"
        # A worker started before the restart would say hello again; a new one runs all
        workers.append(Worker(node, "calc.Sum", SUM))
        for i, ident in enumerate(queued):
            done = wait_for(lambda: finished(node, ident), 60, "the queued work")
            assert done["response"]["sum"] == i + 100
        node.stop()
    finally:
        node.cleanup()


def test_worker_says_hello_again_after_a_node_restart(workers):
    node = Node().start()
    try:
        workers.append(Worker(node, "calc.Sum", SUM))
        first = enqueue(node, [1])
        wait_for(lambda: finished(node, first), 20, "the first result")
        node.kill()
        node.start()
        second = enqueue(node, [2])
        done = wait_for(lambda: finished(node, second), 60, "the same worker after the restart")
        assert done["response"]["sum"] == 2
        node.stop()
    finally:
        node.cleanup()


def test_finished_invocations_leave_memory_but_stay_counted(workers):
    node = Node(extra=["--keep-finished-ms", "300"]).start()
    try:
        workers.append(Worker(node, "calc.Sum", SUM))
        ids = [enqueue(node, [i, 1]) for i in range(3)]

        def counts():
            return requests.get(node.url + "/batch/primary").json()["counts"]

        wait_for(lambda: counts()["finished"] == 3, 60, "three results")

        def evicted(ident):
            r = requests.get(node.url + "/invocations/" + ident)
            assert r.status_code in (200, 404), r.text
            return r.json() if r.status_code == 404 else None

        for ident in ids:
            answer = wait_for(lambda: evicted(ident), 60, "the window to pass")
            assert "finished more than 300 ms ago" in answer["error"], answer
        assert counts()["finished"] == 3
        assert counts()["queued"] == 0 and counts()["running"] == 0
        # A restart does not load them, and still counts them
        node.stop()
        node.start()
        assert counts()["finished"] == 3
        for ident in ids:
            assert requests.get(node.url + "/invocations/" + ident).status_code == 404
        node.stop()
    finally:
        node.cleanup()


def test_cli_enqueue_and_invocation(node):
    out = subprocess.run([BIN, "enqueue", json.dumps(
        {"token": "t", "invocation": {"class": "c", "method": "m", "params": [1]}}),
        "--node", node.endpoint], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    ident = json.loads(out.stdout)["id"]
    out = subprocess.run([BIN, "invocation", ident, "--node", node.endpoint],
                         capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["state"] == "queued"
    out = subprocess.run([BIN, "enqueue", "{}", "--bucket", "nope", "--node", node.endpoint],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "/token" in out.stderr
    out = subprocess.run([BIN, "enqueue", json.dumps(
        {"token": "t", "invocation": {"class": "c", "method": "m", "params": []}}),
        "--bucket", "nope", "--node", node.endpoint], capture_output=True, text=True)
    assert out.returncode == 1 and "404" in out.stderr
    out = subprocess.run([BIN, "worker", "--node", node.endpoint], capture_output=True, text=True)
    assert out.returncode == 2


def _nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


def test_bad_input_on_http_routes(node):
    url = node.url
    call = {"class": "c", "method": "m", "params": []}
    cases = [
        ({"invocation": call}, 400, "/token"),
        ({"token": "t"}, 400, "/invocation"),
        ({"token": 5, "invocation": call}, 400, "/token"),
        ({"token": "t", "invocation": "x"}, 400, "/invocation"),
        ({"token": "t", "invocation": {"class": "c"}}, 400, "/invocation/method"),
        ({"token": "t", "invocation": {"class": 1, "method": "m", "params": []}}, 400,
         "/invocation/class"),
        ({"token": "t", "invocation": dict(call, args=[])}, 400, "params and args"),
        ({"token": "t", "invocation": dict(call, params=_nested(20))}, 400, "/invocation/params"),
        ({"token": "t", "invocation": call, "data": [1]}, 400, "/data"),
        ({"token": "t", "invocation": call, "delay": -1}, 400, "/delay"),
        ({"token": "t", "invocation": call, "run_at": 1, "delay": 1}, 400, "run_at"),
        ({"token": "t", "invocation": call, "max_attempts": 0}, 400, "/max_attempts"),
        ({"token": "t", "invocation": call, "extra": 1}, 400, "/extra"),
        ({"token": "t", "invocation": call, "bucket_id": "missing"}, 404, "missing"),
        ({"token": "x" * 2000, "invocation": call}, 400, "/token"),
    ]
    for body, status, text in cases:
        r = requests.post(url + "/enqueue", json=body)
        assert r.status_code == status, (body, r.text)
        assert text in r.json()["error"], (body, r.text)
    # Not JSON, not an object, too deep for the parser, too large
    assert requests.post(url + "/enqueue", data="{nope").status_code == 400
    assert requests.post(url + "/enqueue", json=[1]).status_code == 400
    assert requests.post(url + "/enqueue", data="[" * 5000).status_code == 400
    big = {"token": "t", "invocation": dict(call, params=["x" * 1000] * 400)}
    assert requests.post(url + "/enqueue", json=big).status_code == 413
    huge = requests.post(url + "/enqueue", data=b"{" + b" " * (4 << 20) + b"}")
    assert huge.status_code == 413
    # Methods and paths
    r = requests.get(url + "/enqueue")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    r = requests.delete(url + "/invocations/abc")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    assert requests.get(url + "/invocations/nope").status_code == 404
    assert requests.get(url + "/invocations/" + "a" * 100).status_code == 400
    assert requests.get(url + "/invocations/%ff").status_code == 400
    assert requests.get(url + "/invocations/a/b").status_code == 404
    # Nothing of all that was queued, and the node is fine
    assert requests.get(url + "/health").status_code == 200


def test_bad_input_on_worker_ops(node):
    client = Client(node.endpoint)
    try:
        # Worker ops before hello
        assert client.call("worker.heartbeat")["code"] == 404
        assert client.call("worker.result", id="x", code=200)["code"] == 404
        assert client.call("worker.progress", id="x")["code"] == 404
        cases = [
            dict(op="worker.hello"),
            dict(op="worker.hello", classes=[], capacity=1),
            dict(op="worker.hello", classes="c", capacity=1),
            dict(op="worker.hello", classes=[1], capacity=1),
            dict(op="worker.hello", classes=["c"], capacity=0),
            dict(op="worker.hello", classes=["c"] * 101, capacity=1),
            dict(op="worker.hello", classes=["c"], capacity=1, extra=True),
            dict(op="worker.result", id="x"),
            dict(op="worker.result", id="x", code="200"),
            dict(op="worker.result", id="x", code=700),
            dict(op="worker.result", id="x", code=200, response=_nested(20)),
            dict(op="worker.result", id="x", code=200, retryable="yes"),
            dict(op="worker.progress", id="x", progress=101),
            dict(op="worker.progress", id=5),
            dict(op="invocation"),
            dict(op="invocation", id=["x"]),
            dict(op="enqueue", token="t", invocation={"class": "c", "method": "m"}, bucket_id=1),
        ]
        for fields in cases:
            reply = client.call(**fields)
            assert reply["code"] == 400, (fields, reply)
            assert reply["error"], fields
        reply = client.call("worker.result", id="x", code=200, response="y" * (2 << 20))
        assert reply["code"] == 413
        # A worker may not report on an invocation it does not hold
        assert client.call("worker.hello", classes=["calc.Idle"], capacity=1)["code"] == 200
        ident = enqueue(node, [1], klass="calc.Other")
        reply = client.call("worker.result", id=ident, code=200)
        assert reply["code"] == 409, reply
        assert client.call("worker.result", id="nope", code=200)["code"] == 404
        assert invocation(node, ident)["state"] == "queued"
    finally:
        client.close()
