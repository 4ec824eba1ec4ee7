"""Buckets of one real node and a real HTTP callback receiver: the creation handshake
and each way it fails, commits with their signature and idempotency key, a receiver
that is down for a while, kill -9 of the node with commits undelivered, and bad input
on every bucket route."""
import hashlib
import hmac
import http.server
import json
import os
import socket
import subprocess
import tempfile
import threading

import pytest
import requests

from harness import BIN, Node, free_port, wait_for
from test_queue import SUM, Worker, finished, invocation


class Receiver:
    """A callback URL: answers handshakes as told, records every commit POST."""

    def __init__(self):
        self.handshake = "echo"   # echo | wrong-token | not-json | status | hang | slow
        self.delay = 0.0          # seconds a "slow" handshake takes: a slow site
        self.status = 200         # status for commits
        self.commits = []         # (headers, raw body, status answered)
        self.lock = threading.Lock()
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                if "token" in body and "data" not in body:
                    return receiver.answer_handshake(self, body)
                with receiver.lock:
                    status = receiver.status
                    receiver.commits.append((dict(self.headers), raw, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer_handshake(self, handler, body):
        mode = self.handshake
        if mode == "hang":
            self.release.wait()
            return
        if mode == "slow":
            self.release.wait(self.delay)  # the site's latency, not a synchronisation
        status = 500 if mode == "status" else 200
        if mode == "not-json":
            payload = b"hello"
        else:
            token = body["token"] if mode in ("echo", "slow") else "other"
            payload = json.dumps({"token": token}).encode()
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def accepted(self):
        with self.lock:
            return [(h, b) for h, b, s in self.commits if 200 <= s < 300]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def workers():
    started = []
    yield started
    for worker in started:
        worker.kill()


def create(node, receiver, bucket, **fields):
    body = {"callback_url": receiver.url, "bucket_id": bucket}
    body.update(fields)
    return requests.post(node.url + "/batch", json=body)


def enqueue(node, bucket, params, **fields):
    body = {"token": "tok-%d" % params[0], "bucket_id": bucket,
            "invocation": {"class": "calc.Sum", "method": "add", "params": params}}
    body.update(fields)
    r = requests.post(node.url + "/enqueue", json=body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def check_signature(headers, raw, secret):
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Supernode-Signature"] == expected


def delivered_items(receiver):
    items = []
    for headers, raw in receiver.accepted():
        items.extend(json.loads(raw)["data"])
    return items


def test_handshake_and_commit(node, receiver, workers):
    r = create(node, receiver, "b1", batch_timeout=200, metadata={"account": 7})
    assert r.status_code == 201, r.text
    bucket = r.json()
    secret = bucket["secret"]
    assert len(secret) == 64 and bucket["callback_url"] == receiver.url
    ids = [enqueue(node, "b1", [i, 1], data={"n": i}) for i in range(5)]
    workers.append(Worker(node, "calc.Sum", SUM))
    wait_for(lambda: len(delivered_items(receiver)) == 5, 30, "five results committed")
    keys = set()
    for headers, raw in receiver.accepted():
        check_signature(headers, raw, secret)
        keys.add(headers["Idempotency-Key"])
        body = json.loads(raw)
        assert body["code"] == 200 and body["bucket_id"] == "b1"
        assert body["metadata"] == {"account": 7}
    assert len(keys) == len(receiver.accepted())
    items = sorted(delivered_items(receiver), key=lambda item: item["metadata"]["n"])
    for i, item in enumerate(items):
        assert item["code"] == 200 and item["token"] == "tok-%d" % i
        assert item["metadata"] == {"n": i} and item["response"]["sum"] == i + 1
    status = requests.get(node.url + "/batch/b1").json()
    assert status["counts"]["delivered"] == 5 and status["counts"]["queued"] == 0
    assert status["last_commit"]["state"] == "delivered" and "secret" not in status
    for ident in ids:
        assert invocation(node, ident)["state"] == "succeeded"
    # Later results make a later commit, with exactly the new invocations
    enqueue(node, "b1", [100, 1], data={"n": 100})
    wait_for(lambda: len(delivered_items(receiver)) == 6, 30, "the sixth result")
    headers, raw = receiver.accepted()[-1]
    assert [item["metadata"]["n"] for item in json.loads(raw)["data"]] == [100]


@pytest.mark.parametrize("mode,text", [("status", "status:"), ("wrong-token", "token:"),
                                       ("not-json", "json:")])
def test_handshake_failures(node, receiver, mode, text):
    receiver.handshake = mode
    r = create(node, receiver, "bad")
    assert r.status_code == 502 and text in r.json()["error"], r.text
    assert requests.get(node.url + "/batch/bad").status_code == 404
    r = requests.post(node.url + "/enqueue", json={
        "token": "t", "bucket_id": "bad", "invocation": {"class": "c", "method": "m",
                                                          "params": []}})
    assert r.status_code == 404
    # The same id can be created once the receiver behaves
    receiver.handshake = "echo"
    assert create(node, receiver, "bad").status_code == 201


def test_handshake_refused_and_timeout(node, receiver):
    closed = "http://127.0.0.1:%d/hook" % free_port()
    r = requests.post(node.url + "/batch", json={"callback_url": closed, "bucket_id": "x"})
    assert r.status_code == 502 and "refused:" in r.json()["error"], r.text
    receiver.handshake = "hang"
    r = create(node, receiver, "slow")
    assert r.status_code == 502 and "timeout:" in r.json()["error"], r.text
    assert requests.get(node.url + "/batch/slow").status_code == 404


def test_denied_destination(receiver):
    node = Node(extra=["--callback-allow", "hooks.example.com"]).start()
    try:
        r = create(node, receiver, "nope")
        assert r.status_code == 502 and "denied:" in r.json()["error"], r.text
        node.stop()
    finally:
        node.cleanup()


def test_receiver_down_then_up_gets_every_commit_once(node, receiver, workers):
    secret = create(node, receiver, "b2", batch_timeout=100).json()["secret"]
    receiver.status = 503
    workers.append(Worker(node, "calc.Sum", SUM))
    ids = [enqueue(node, "b2", [i, 0], data={"n": i}) for i in range(20)]
    for ident in ids:
        wait_for(lambda: finished(node, ident), 30, "every result")
    # Every commit has been refused at least once: retries carry the same key and body
    wait_for(lambda: len(receiver.commits) >= 3, 30, "refused deliveries")
    receiver.status = 200
    wait_for(lambda: len(delivered_items(receiver)) == 20, 60, "every commit after the outage")
    accepted = receiver.accepted()
    keys = [headers["Idempotency-Key"] for headers, raw in accepted]
    assert len(keys) == len(set(keys)), "a commit was accepted twice"
    bodies = {}
    for headers, raw, status in receiver.commits:
        bodies.setdefault(headers["Idempotency-Key"], set()).add(raw)
        check_signature(headers, raw, secret)
    assert all(len(b) == 1 for b in bodies.values()), "a retry changed its body"
    assert sorted(i["metadata"]["n"] for i in delivered_items(receiver)) == list(range(20))
    status = requests.get(node.url + "/batch/b2").json()
    assert status["counts"]["delivered"] == 20 and status["commits_pending"] == 0


def test_sigkill_with_commits_undelivered(receiver, workers):
    node = Node().start()
    try:
        secret = create(node, receiver, "b3", batch_timeout=100).json()["secret"]
        receiver.status = 503
        worker = Worker(node, "calc.Sum", SUM)
        workers.append(worker)
        ids = [enqueue(node, "b3", [i, 0], data={"n": i}) for i in range(10)]
        for ident in ids:
            wait_for(lambda: finished(node, ident), 30, "every result")
        wait_for(lambda: requests.get(node.url + "/batch/b3").json()["counts"]["waiting"] == 0,
                 30, "every result in a commit")
        worker.kill()
        queued = [enqueue(node, "b3", [i, 0], data={"n": i}) for i in range(10, 15)]
        refused_keys = {h["Idempotency-Key"] for h, raw, s in receiver.commits}
        node.kill()
        receiver.status = 200
        node.start()
        for ident in queued:
            assert invocation(node, ident)["state"] == "queued"
        workers.append(Worker(node, "calc.Sum", SUM))
        wait_for(lambda: len(delivered_items(receiver)) == 15, 60, "everything after the restart")
        accepted = receiver.accepted()
        keys = [h["Idempotency-Key"] for h, raw in accepted]
        assert len(keys) == len(set(keys))
        assert refused_keys <= set(keys), "a commit made before the kill changed its key"
        for headers, raw in accepted:
            check_signature(headers, raw, secret)
        assert sorted(i["metadata"]["n"] for i in delivered_items(receiver)) == list(range(15))
        node.stop()
    finally:
        node.cleanup()


def test_update_delete_and_enqueue_refused(node, receiver):
    assert create(node, receiver, "b4").status_code == 201
    assert create(node, receiver, "b4").status_code == 409
    r = requests.put(node.url + "/batch/b4", json={"batch_timeout": 1234, "metadata": {"a": 1}})
    assert r.status_code == 200 and r.json()["batch_timeout"] == 1234
    assert r.json()["metadata"] == {"a": 1} and r.json()["callback_url"] == receiver.url
    r = requests.delete(node.url + "/batch/b4")
    assert r.status_code == 200 and r.json()["state"] == "deleted"
    r = requests.post(node.url + "/enqueue", json={
        "token": "t", "bucket_id": "b4", "invocation": {"class": "c", "method": "m",
                                                         "params": []}})
    assert r.status_code == 410, r.text
    assert requests.delete(node.url + "/batch/b4").status_code == 410
    assert requests.put(node.url + "/batch/b4", json={}).status_code == 410
    assert requests.get(node.url + "/batch/b4").json()["state"] == "deleted"
    assert create(node, receiver, "b4").status_code == 410
    # primary always exists and cannot be deleted
    assert requests.get(node.url + "/batch/primary").status_code == 200
    assert requests.delete(node.url + "/batch/primary").status_code == 409


def test_cli_batch(node, receiver):
    def run(*args):
        return subprocess.run([BIN, "batch", *args, "--node", node.endpoint],
                              capture_output=True, text=True)
    out = run("create", json.dumps({"callback_url": receiver.url, "bucket_id": "cli"}))
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["secret"]) == 64
    out = run("get", "cli")
    assert out.returncode == 0 and json.loads(out.stdout)["bucket_id"] == "cli"
    out = run("delete", "cli")
    assert out.returncode == 0 and json.loads(out.stdout)["state"] == "deleted"
    out = run("get", "nope")
    assert out.returncode == 1 and "404" in out.stderr
    assert run("create", "[1]").returncode == 2
    assert run("fly", "x").returncode == 2


def _nested(depth):
    value = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_bad_input_on_batch_routes(node, receiver):
    url = node.url
    cases = [
        ({"bucket_id": "x"}, "/callback_url"),
        ({"callback_url": receiver.url}, "/bucket_id"),
        ({"callback_url": 5, "bucket_id": "x"}, "/callback_url"),
        ({"callback_url": receiver.url, "bucket_id": ""}, "/bucket_id"),
        ({"callback_url": receiver.url, "bucket_id": "x" * 300}, "/bucket_id"),
        ({"callback_url": receiver.url, "bucket_id": "x", "batch_timeout": "1"},
         "/batch_timeout"),
        ({"callback_url": receiver.url, "bucket_id": "x", "batch_timeout": 0}, "/batch_timeout"),
        ({"callback_url": receiver.url, "bucket_id": "x", "metadata": [1]}, "/metadata"),
        ({"callback_url": receiver.url, "bucket_id": "x", "metadata": _nested(20)}, "/metadata"),
        ({"callback_url": receiver.url, "bucket_id": "x", "extra": 1}, "/extra"),
    ]
    for body, text in cases:
        r = requests.post(url + "/batch", json=body)
        assert r.status_code == 400, (body, r.text)
        assert text in r.json()["error"], (body, r.text)
    for body in ["{nope", "[1]", "[" * 5000]:
        assert requests.post(url + "/batch", data=body).status_code == 400
    r = requests.post(url + "/batch", json={"callback_url": "ftp://x/y", "bucket_id": "f"})
    assert r.status_code == 502 and "denied:" in r.json()["error"]
    big = {"callback_url": receiver.url, "bucket_id": "x", "metadata": {"k": "v" * 200000}}
    assert requests.post(url + "/batch", json=big).status_code == 413
    assert requests.put(url + "/batch/nope", json={}).status_code == 404
    assert requests.put(url + "/batch/primary", data="[1]").status_code == 400
    assert requests.put(url + "/batch/primary", json={"batch_timeout": -1}).status_code == 400
    r = requests.get(url + "/batch")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    r = requests.post(url + "/batch/x")
    assert r.status_code == 405 and "DELETE" in r.headers["Allow"]
    assert requests.get(url + "/batch/%ff").status_code == 400
    assert requests.get(url + "/batch/a/b").status_code == 404
    assert requests.get(url + "/health").status_code == 200


def test_bad_input_on_batch_ops(node):
    from harness import Client
    client = Client(node.endpoint)
    try:
        cases = [
            dict(op="batch.create"),
            dict(op="batch.create", callback_url="http://x/y", bucket_id=5),
            dict(op="batch.get"),
            dict(op="batch.get", bucket_id=["x"]),
            dict(op="batch.update", bucket_id="x", give_up=1),
            dict(op="batch.update", bucket_id="x", secret="mine"),
            dict(op="batch.delete", bucket_id=""),
            dict(op="bucket.counts"),
            # Internal ops are not open to clients
            dict(op="bucket.state", bucket_id="x", state="active"),
            dict(op="finished", bucket_id="x", event={}),
        ]
        for fields in cases:
            reply = client.call(**fields)
            assert reply["code"] == 400, (fields, reply)
        assert client.call("batch.get", bucket_id="nope")["code"] == 404
        reply = client.call("bucket.counts", bucket_id="primary")
        assert reply["code"] == 200 and reply["queued"] == 0
    finally:
        client.close()
