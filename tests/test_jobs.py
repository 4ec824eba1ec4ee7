"""Jobs on one real node: tasks fanned out to real agents (Python agents speaking the
agent protocol, and the CLI's agent), live progress over a real WebSocket, kill -9
mid-job, and bad input on every route, op and WebSocket."""
import json
import socket
import struct
import subprocess

import pytest
import requests
import websocket

from harness import BIN, SLOW, Client, Node, wait_for

MACS = ["00:0c:29:1c:e8:01", "00:0c:29:1c:e8:02", "00:0c:29:1c:e8:03"]


class Agent:
    """A device agent over the client endpoint: pushed messages (work, cancel) are
    kept apart from replies."""

    def __init__(self, node, agent_id, hello=True):
        self.client = Client(node.endpoint)
        self.id = agent_id
        self.pushes = []
        if hello:
            reply = self.hello()
            assert reply["code"] == 200, reply

    def hello(self):
        # A long heartbeat: these agents stay connected without sending any
        return self.call("agent.hello", id=self.id, heartbeat=3600000)

    def call(self, op, **fields):
        rid = self.client.send(op, **fields)
        while True:
            message = self.client.recv()
            if "op" in message:
                self.pushes.append(message)
            elif message.get("rid") == rid:
                return message

    def next(self):
        if not self.pushes:
            message = self.client.recv(timeout=30)
            assert "op" in message, message
            return message
        return self.pushes.pop(0)

    def work(self):
        message = self.next()
        assert message["op"] == "agent.work", message
        return message

    def result(self, task, code=200, data=None):
        fields = dict(id=self.id, task=task, code=code)
        if data is not None:
            fields["data"] = data
        return self.call("agent.result", **fields)

    def progress(self, task, percent):
        return self.call("agent.progress", id=self.id, task=task, progress=percent)

    def close(self):
        self.client.close()


def post_job(node, body):
    r = requests.post(node.url + "/jobs", json=body, timeout=10 * SLOW)
    assert r.status_code == 200, r.text
    return r.json()


def get_job(node, job_id, collection=False):
    query = "?collection=true" if collection else ""
    r = requests.get(f"{node.url}/jobs/{job_id}{query}", timeout=10 * SLOW)
    assert r.status_code == 200, r.text
    return r.json()


def job_finished(node, job_id):
    job = get_job(node, job_id, collection=True)
    return job if job["status"] in ("resolved", "cancelled", "timeout") else None


def test_three_destinations_resolve(node):
    agents = [Agent(node, mac) for mac in MACS]
    job = post_job(node, {"batch": [{"method": "post", "resource": "/system/reboot",
                                     "data": {"delay": 5}, "__destination": MACS}]})
    assert job["totalCount"] == 3 and job["timeout"] == 36000
    assert job["finishCount"] == 0 and job["errorCount"] == 0 and job["progress"] == 0
    assert len(job["collection"]) == 3
    for index, agent in enumerate(agents):
        work = agent.work()
        assert work["method"] == "post" and work["resource"] == "/system/reboot"
        assert work["data"] == {"delay": 5} and work["id"] in job["collection"]
        if index == 2:
            assert agent.progress(work["id"], 50)["code"] == 200
            assert agent.result(work["id"], 500, {"why": "busy"})["code"] == 200
        else:
            assert agent.result(work["id"], 200, {"rebooted": index})["code"] == 200
    done = wait_for(lambda: job_finished(node, job["id"]), what="the job to resolve")
    assert done["status"] == "resolved" and done["finishAt"]
    assert done["totalCount"] == 3 and done["doneCount"] == 3 and done["finishCount"] == 3
    assert done["errorCount"] == 1 and done["progress"] == 100
    tasks = {t["__destination"]: t for t in done["collection"]}
    assert tasks[MACS[0]]["__task"]["status"] == "resolved"
    assert tasks[MACS[0]]["__task"]["result"] == {"rebooted": 0}
    assert tasks[MACS[0]]["__task"]["progress"] == 100
    assert tasks[MACS[1]]["__task"]["result"] == {"rebooted": 1}
    failed = tasks[MACS[2]]["__task"]
    assert failed["status"] == "error"
    assert failed["result"] == {"code": 500, "resource": "/system/reboot", "data": {"why": "busy"}}
    for task in done["collection"]:
        assert task["method"] == "post" and task["__job"] == job["id"]
        assert task["__task"]["finishAt"] and task["__task"]["createdAt"] == job["createdAt"]
        r = requests.get(f"{node.url}/tasks/{task['id']}", timeout=10)
        assert r.status_code == 200 and r.json() == task
    # A late second answer changes nothing
    assert agents[0].result(done["collection"][0]["id"], 200, {})["code"] == 409
    for agent in agents:
        agent.close()


def test_later_format_and_list(node):
    first = post_job(node, {"destinations": "cg-000c291ce801",
                            "message": {"method": "GET", "resource": "/network/cellulars"},
                            "options": {"timeout": 60000}})
    second = post_job(node, {"destinations": ["AA-BB-CC-DD-11-22"],
                             "message": {"method": "put", "resource": "/x", "data": [1, 2]}})
    assert first["timeout"] == 60000 and first["totalCount"] == 1
    task = requests.get(f"{node.url}/tasks/{second['collection'][0]}", timeout=10).json()
    assert task["__destination"] == "aa:bb:cc:dd:11:22" and task["data"] == [1, 2]
    assert task["method"] == "put"
    r = requests.get(node.url + "/jobs", timeout=10)
    assert [j["id"] for j in r.json()["jobs"]] == [second["id"], first["id"]]
    r = requests.get(node.url + "/jobs?limit=1", timeout=10).json()
    assert [j["id"] for j in r["jobs"]] == [second["id"]] and r["next"] == second["id"]
    r = requests.get(node.url + "/jobs?limit=1&before=" + r["next"], timeout=10).json()
    assert [j["id"] for j in r["jobs"]] == [first["id"]] and r["next"] is None
    requests.delete(f"{node.url}/jobs/{first['id']}", timeout=10)
    r = requests.get(node.url + "/jobs?status=cancelled", timeout=10).json()
    assert [j["id"] for j in r["jobs"]] == [first["id"]]
    r = requests.get(node.url + "/jobs?status=created", timeout=10).json()
    assert [j["id"] for j in r["jobs"]] == [second["id"]]


def test_task_timeout_and_job_timeout(node):
    job = post_job(node, {"timeout": 300, "batch": [{"method": "get", "resource": "/a",
                                                     "__destination": MACS[0]}]})
    done = wait_for(lambda: job_finished(node, job["id"]), what="the task to time out")
    assert done["status"] == "resolved" and done["errorCount"] == 1
    assert done["collection"][0]["__task"]["status"] == "timeout"
    assert done["collection"][0]["__task"]["result"] is None
    # The job's own timeout ends it as a whole, an agent's work in flight included
    agent = Agent(node, MACS[1])
    job = post_job(node, {"destinations": [MACS[1], MACS[2]],
                          "message": {"method": "get", "resource": "/b"},
                          "options": {"jobTimeout": 300, "timeout": 3600000}})
    work = agent.work()
    done = wait_for(lambda: job_finished(node, job["id"]), what="the job to time out")
    assert done["status"] == "timeout" and done["errorCount"] == 2
    assert [t["__task"]["status"] for t in done["collection"]] == ["timeout", "timeout"]
    cancel = agent.next()
    assert cancel == {"op": "agent.cancel", "id": work["id"]}
    assert agent.result(work["id"], 200, {})["code"] == 409
    agent.close()


def test_cancel_with_a_task_in_flight(node):
    agent = Agent(node, MACS[0])
    job = post_job(node, {"destinations": [MACS[0], MACS[1]],
                          "message": {"method": "post", "resource": "/upgrade"}})
    work = agent.work()
    r = requests.delete(f"{node.url}/jobs/{job['id']}", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert agent.next() == {"op": "agent.cancel", "id": work["id"]}
    done = get_job(node, job["id"], collection=True)
    assert done["status"] == "cancelled" and done["finishAt"]
    assert [t["__task"]["status"] for t in done["collection"]] == ["cancelled", "cancelled"]
    assert agent.result(work["id"], 200, {})["code"] == 409
    r = requests.delete(f"{node.url}/jobs/{job['id']}", timeout=10)
    assert r.status_code == 409 and "already cancelled" in r.json()["error"]
    r = requests.delete(f"{node.url}/jobs/0000", timeout=10)
    assert r.status_code == 404
    agent.close()


def test_agent_that_connects_late(node):
    job = post_job(node, {"destinations": [MACS[0]],
                          "message": {"method": "get", "resource": "/late"}})
    assert get_job(node, job["id"])["status"] == "created"
    agent = Agent(node, MACS[0])
    work = agent.work()
    assert work["resource"] == "/late" and 0 < work["timeout"] <= 36000
    assert get_job(node, job["id"])["status"] == "dispatching"
    agent.result(work["id"], 200, "done")
    done = wait_for(lambda: job_finished(node, job["id"]), what="the job to resolve")
    assert done["collection"][0]["__task"]["result"] == "done"
    agent.close()


def test_agent_that_drops_and_returns(node):
    agent = Agent(node, MACS[0])
    job = post_job(node, {"destinations": [MACS[0]],
                          "message": {"method": "get", "resource": "/again"}})
    work = agent.work()
    agent.close()
    # A new connection with the same id gets the task it had in flight again
    back = Agent(node, MACS[0])
    again = back.work()
    assert again["id"] == work["id"] and again["resource"] == "/again"
    assert back.result(again["id"], 200, {"second": True})["code"] == 200
    done = wait_for(lambda: job_finished(node, job["id"]), what="the job to resolve")
    assert done["status"] == "resolved" and done["errorCount"] == 0
    back.close()


def test_one_task_in_flight_per_destination_and_concurrency(node):
    agent = Agent(node, MACS[0])
    job = post_job(node, {"batch": [
        {"method": "get", "resource": "/one", "__destination": MACS[0]},
        {"method": "get", "resource": "/two", "__destination": MACS[0]}]})
    first = agent.work()
    assert first["resource"] == "/one"
    # Nothing more until the device answers
    assert agent.call("agent.heartbeat", id=MACS[0])["code"] == 200 and not agent.pushes
    agent.result(first["id"], 200, {})
    second = agent.work()
    assert second["resource"] == "/two"
    agent.result(second["id"], 200, {})
    wait_for(lambda: job_finished(node, job["id"]), what="the job to resolve")

    # concurrency 1: one task of the job in flight across all its destinations
    other = Agent(node, MACS[1])
    job = post_job(node, {"destinations": [MACS[0], MACS[1]],
                          "message": {"method": "get", "resource": "/roll"},
                          "options": {"concurrency": 1}})
    assert job["concurrency"] == 1
    first = agent.work()
    assert other.call("agent.heartbeat", id=MACS[1])["code"] == 200 and not other.pushes
    agent.result(first["id"], 200, {})
    second = other.work()
    other.result(second["id"], 200, {})
    done = wait_for(lambda: job_finished(node, job["id"]), what="the rollout to resolve")
    assert done["doneCount"] == 2
    agent.close()
    other.close()


def ws_url(node, path):
    return f"ws://127.0.0.1:{node.http_port}{path}"


def ws_messages(ws, count):
    return [json.loads(ws.recv()) for _ in range(count)]


def ws_close_code(ws):
    """Read until the server's close frame; return its code."""
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None


def test_websocket_snapshot_then_every_update_in_order(node):
    job = post_job(node, {"destinations": [MACS[0], MACS[1]],
                          "message": {"method": "post", "resource": "/w"}})
    ws = websocket.create_connection(ws_url(node, f"/jobs/{job['id']}/ws"), timeout=30 * SLOW)
    every = websocket.create_connection(ws_url(node, "/jobs/ws"), timeout=30 * SLOW)
    snapshot = json.loads(ws.recv())
    assert snapshot["resource"] == "/jobs" and snapshot["data"]["id"] == job["id"]
    assert [t["__task"]["status"] for t in snapshot["data"]["collection"]] == ["created"] * 2
    wait_subscribed(every)

    a, b = Agent(node, MACS[0]), Agent(node, MACS[1])
    work_a, work_b = a.work(), b.work()
    a.progress(work_a["id"], 30)
    a.result(work_a["id"], 200, {"a": 1})
    b.result(work_b["id"], 500, {"b": 2})
    wait_for(lambda: job_finished(node, job["id"]), what="the job to resolve")
    expected = [
        ("/jobs/update", work_a["id"], "sent"),
        ("/jobs", job["id"], "dispatching"),
        ("/jobs/update", work_b["id"], "sent"),
        ("/jobs/update", work_a["id"], "sent"),      # progress 30
        ("/jobs/update", work_a["id"], "resolved"),
        ("/jobs/update", work_b["id"], "error"),
        ("/jobs", job["id"], "resolved"),
    ]
    for watcher in (ws, every):
        got = ws_messages(watcher, len(expected))
        shape = [(m["resource"], m["data"]["id"],
                  m["data"]["__task"]["status"] if m["resource"] == "/jobs/update"
                  else m["data"]["status"]) for m in got]
        assert shape == expected
        assert got[3]["data"]["__task"]["progress"] == 30
        assert got[4]["data"]["__task"]["result"] == {"a": 1}
        assert got[6]["data"]["doneCount"] == 2 and got[6]["data"]["errorCount"] == 1
    ws.close()
    every.close()
    a.close()
    b.close()


def wait_subscribed(every):
    """/jobs/ws says when it is subscribed: every change after that follows."""
    assert json.loads(every.recv()) == {"resource": "/jobs/ws", "data": {}}


def test_slow_websocket_client_is_closed_and_never_slows_the_node(node):
    # A small receive buffer, fixed before connecting: the kernel would otherwise
    # grow it to hold everything (tcp_rmem), and this client would never be behind
    every = websocket.create_connection(ws_url(node, "/jobs/ws"), timeout=60 * SLOW,
                                        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 8192),))
    wait_subscribed(every)
    # The client stops reading while far more updates come than any queue holds
    macs = [f"00:0c:29:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
            for i in range(10000)]
    for _ in range(8):
        job = post_job(node, {"destinations": macs, "message": {"method": "get",
                                                                "resource": "/flood"}})
        r = requests.delete(f"{node.url}/jobs/{job['id']}", timeout=30 * SLOW)
        assert r.status_code == 200
    assert requests.get(node.url + "/health", timeout=10).status_code == 200
    # What was queued arrives, then the connection ends: with a close that says why,
    # or cut off when even that could not be written whole (the client then sees the
    # stream end, or a reset when the node's shutdown found its data unread)
    try:
        assert ws_close_code(every) == 1008
    except (websocket.WebSocketConnectionClosedException, ConnectionResetError):
        pass
    every.close()
    # A new watcher is served as usual
    again = websocket.create_connection(ws_url(node, "/jobs/ws"), timeout=60 * SLOW)
    wait_subscribed(again)
    again.close()


def test_websocket_bad_input(node):
    # Unknown job: an error, then the connection is closed
    ws = websocket.create_connection(ws_url(node, "/jobs/0123abc/ws"), timeout=30 * SLOW)
    error = json.loads(ws.recv())["error"]
    assert error.startswith("no job 0123abc: unknown here, or finished more than")
    assert ws_close_code(ws) == 4404
    ws.close()
    # A frame larger than clients may send closes the connection with 1009
    job = post_job(node, {"destinations": MACS[0], "message": {"method": "get",
                                                               "resource": "/x"}})
    ws = websocket.create_connection(ws_url(node, f"/jobs/{job['id']}/ws"), timeout=30 * SLOW)
    assert json.loads(ws.recv())["data"]["id"] == job["id"]
    ws.send("x" * 100000)
    assert ws_close_code(ws) == 1009
    ws.close()
    # Small frames are ignored, and the stream goes on
    ws = websocket.create_connection(ws_url(node, f"/jobs/{job['id']}/ws"), timeout=30 * SLOW)
    json.loads(ws.recv())
    ws.send('{"deep": ' + "[" * 100 + "]" * 100 + "}")
    ws.send_binary(b"\xff\x00")
    requests.delete(f"{node.url}/jobs/{job['id']}", timeout=10)
    assert json.loads(ws.recv())["resource"] == "/jobs/update"
    ws.close()
    # Paths that are no job's WebSocket are refused at the handshake
    for path in ("/jobs/a/b/ws", "/jobs/ws/x", "/jobs/A%2F/ws", "/jobs/" + "a" * 50 + "/ws"):
        with pytest.raises(websocket.WebSocketException):
            websocket.create_connection(ws_url(node, path), timeout=30 * SLOW)
    # And the node still serves
    assert requests.get(node.url + "/health", timeout=10).status_code == 200


def test_http_bad_input(node):
    url = node.url + "/jobs"
    cases = [
        ("not json", 400, "invalid JSON"),
        ("[1]", 400, "a job must be a JSON object"),
        ("{}", 400, "either batch or destinations"),
        ('{"op": "job.create", "batch": []}', 400, "no op or rid"),
        ('{"batch": []}', 400, "/batch"),
        ('{"batch": 5}', 400, "/batch"),
        ('{"batch": [{"method": "get", "resource": "/a"}]}', 400, "__destination"),
        ('{"batch": [{"method": "get", "resource": "/a", "__destination": 5}]}', 400,
         "/batch/0/__destination"),
        ('{"batch": [{"method": "get", "resource": "/a", "__destination": "00:0c"}]}', 400,
         "batch/0/__destination: '00:0c' is not a MAC address"),
        ('{"batch": [{"method": "get", "resource": "/a", "__destination": ["00:0c:29:1c:e8:01",'
         ' "zz:zz:zz:zz:zz:zz"]}]}', 400, "batch/0/__destination/1: 'zz:zz:zz:zz:zz:zz'"),
        ('{"batch": [{"method": "fly", "resource": "/a", "__destination": "cg-000c291ce801"}]}',
         400, "batch/0/method"),
        ('{"batch": [{"method": "get", "resource": "a", "__destination": "cg-000c291ce801"}]}',
         400, "batch/0/resource"),
        ('{"batch": [{"method": "get", "resource": "/a", "__destination": "cg-000c291ce801",'
         ' "extra": 1}]}', 400, "extra"),
        ('{"destinations": "cg-000c291ce801"}', 400, "message"),
        ('{"destinations": "cg-000c291ce801", "message": {"method": "get"}}', 400, "resource"),
        ('{"destinations": [], "message": {"method": "get", "resource": "/a"}}', 400,
         "/destinations"),
        ('{"destinations": "cg-000c291ce801", "message": {"method": "get", "resource": "/a"},'
         ' "options": {"timeout": "soon"}}', 400, "/options/timeout"),
        ('{"destinations": "cg-000c291ce801", "message": {"method": "get", "resource": "/a"},'
         ' "options": {"timeout": 0}}', 400, "/options/timeout"),
        ('{"destinations": "cg-000c291ce801", "message": {"method": "get", "resource": "/a"},'
         ' "batch": [{"method": "get", "resource": "/a", "__destination": "cg-000c291ce801"}]}',
         400, "not both"),
        ('{"destinations": "cg-000c291ce801", "message": {"method": "get", "resource": "/a",'
         ' "data": ' + "[" * 30 + "]" * 30 + "}}", 400, "nest"),
    ]
    for body, status, text in cases:
        r = requests.post(url, data=body, timeout=10)
        assert r.status_code == status, (body, r.text)
        assert text in r.json()["error"], (body, r.text)
    # Too many tasks
    many = [f"00:0c:29:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}" for i in range(10001)]
    r = requests.post(url, json={"destinations": many,
                                 "message": {"method": "get", "resource": "/a"}}, timeout=10)
    assert r.status_code == 400 and "10000" in r.json()["error"]
    # Over the body limit
    r = requests.post(url, data="{" + " " * (2 << 20) + "}", timeout=30)
    assert r.status_code == 413
    # Queries and paths
    for query, text in (("limit=0", "limit"), ("limit=x", "limit"), ("status=done", "status"),
                        ("before=nope", "before")):
        r = requests.get(url + "?" + query, timeout=10)
        assert r.status_code == 400 and text in r.json()["error"], (query, r.text)
    job = post_job(node, {"destinations": MACS[0], "message": {"method": "get", "resource": "/a"}})
    r = requests.get(f"{url}/{job['id']}?collection=maybe", timeout=10)
    assert r.status_code == 400
    assert requests.get(url + "/nope", timeout=10).status_code == 404
    assert requests.get(url + "/" + "a" * 300, timeout=10).status_code == 400
    assert requests.get(url + "/%ff", timeout=10).status_code == 400
    assert requests.get(node.url + "/tasks/nope", timeout=10).status_code == 404
    assert requests.get(node.url + f"/tasks/{job['id']}-2", timeout=10).status_code == 404
    assert requests.get(node.url + f"/tasks/{job['id']}-0", timeout=10).status_code == 404
    r = requests.put(url, json={}, timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"
    r = requests.put(f"{url}/{job['id']}", json={}, timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, DELETE"
    r = requests.post(node.url + f"/tasks/{job['id']}-1", timeout=10)
    assert r.status_code == 405
    r = requests.get(f"{url}/{job['id']}/ws", timeout=10)
    assert r.status_code == 400 and "WebSocket" in r.json()["error"]
    assert requests.get(node.url + "/health", timeout=10).status_code == 200


def deep(levels):
    value = 1
    for _ in range(levels):
        value = [value]
    return value


def test_zmq_bad_input(node):
    client = Client(node.endpoint)
    cases = [
        (dict(op="agent.hello"), 400, "/id"),
        (dict(op="agent.hello", id="not-a-device"), 400, "is not a MAC address"),
        (dict(op="agent.hello", id=5), 400, "/id"),
        (dict(op="agent.hello", id=MACS[0], heartbeat=1), 400, "/heartbeat"),
        (dict(op="agent.hello", id=MACS[0], extra=1), 400, "extra"),
        (dict(op="agent.heartbeat", id="x" * 100), 400, "/id"),
        (dict(op="agent.progress", id=MACS[0], task="t-1", progress=101), 400, "/progress"),
        (dict(op="agent.progress", id=MACS[0], task="t-1", progress=5), 404, "no task"),
        (dict(op="agent.result", id=MACS[0], task="t-1", code=99), 400, "/code"),
        (dict(op="agent.result", id=MACS[0], task="t-1", code=200), 404, "no task"),
        (dict(op="agent.result", id=MACS[0], task="t-1", code=200,
              data={"d": deep(21)}), 400, "/data"),
        (dict(op="agent.result", id=MACS[0], task=["t"], code=200), 400, "/task"),
        (dict(op="job.get"), 400, "/id"),
        (dict(op="job.get", id="nope"), 404, "no job"),
        (dict(op="job.get", id="x", collection="yes"), 400, "/collection"),
        (dict(op="job.list", limit=0), 400, "/limit"),
        (dict(op="job.list", status="sent"), 400, "/status"),
        (dict(op="job.cancel", id=""), 400, "/id"),
        (dict(op="task.get", id="a" * 81), 400, "/id"),
        (dict(op="job.create", batch=[{"method": "get", "resource": "/a",
                                       "__destination": [5]}]), 400, "__destination/0"),
        (dict(op="job.create", destinations=MACS[0], message="go"), 400, "/message"),
        (dict(op="job.create", destinations=MACS[0], message={"method": "get", "resource": "/a"},
              concurrency=0), 400, "/concurrency"),
    ]
    for request, code, text in cases:
        reply = client.call(request.pop("op"), **request)
        assert reply["code"] == code, (request, reply)
        assert text in reply["error"], (request, reply)
    # A task of another destination is not this agent's to answer
    job = post_job(node, {"destinations": MACS[1], "message": {"method": "get", "resource": "/a"}})
    reply = client.call("agent.result", id=MACS[0], task=job["collection"][0], code=200)
    assert reply["code"] == 404
    client.close()
    assert requests.get(node.url + "/health", timeout=10).status_code == 200


def test_kill9_mid_job_loses_no_task():
    node = Node().start()
    try:
        a, b = Agent(node, MACS[0]), Agent(node, MACS[1])
        job = post_job(node, {"destinations": MACS, "message": {"method": "post",
                                                               "resource": "/k"}})
        work_a, work_b = a.work(), b.work()
        b.progress(work_b["id"], 10)
        assert a.result(work_a["id"], 200, {"a": "kept"})["code"] == 200
        node.kill()
        a.close()
        node.start()
        kept = get_job(node, job["id"], collection=True)
        assert kept["status"] == "dispatching" and kept["doneCount"] == 1
        statuses = [t["__task"]["status"] for t in kept["collection"]]
        assert statuses == ["resolved", "sent", "created"]
        assert kept["collection"][0]["__task"]["result"] == {"a": "kept"}
        # The agents come back (b on its old connection, which says hello again
        # through its heartbeat); each gets its unfinished task
        assert b.call("agent.heartbeat", id=MACS[1], heartbeat=3600000)["code"] == 200
        again = b.work()
        assert again["id"] == work_b["id"]
        c = Agent(node, MACS[2])
        work_c = c.work()
        b.result(again["id"], 200, {})
        c.result(work_c["id"], 200, {})
        done = wait_for(lambda: job_finished(node, job["id"]), what="the job to resolve")
        assert done["status"] == "resolved" and done["doneCount"] == 3
        assert requests.get(node.url + "/jobs", timeout=10).json()["jobs"][0]["id"] == job["id"]
        b.close()
        c.close()
        node.stop()
    finally:
        node.cleanup()


def cli(node, *args):
    return subprocess.run([BIN] + list(args) + ["--node", node.endpoint], capture_output=True,
                          text=True, timeout=120 * SLOW)


def start_cli_agent(node, agent_id, command):
    return subprocess.Popen([BIN, "agent", "--id", agent_id, "--node", node.endpoint,
                             "--exec", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_cli_agent_and_job_commands(node):
    # The command's stdout is the result: JSON when it parses, else a string
    agent = start_cli_agent(node, MACS[0], 'echo "{\\"resource\\": \\"$SN_TASK_RESOURCE\\"}"')
    texter = start_cli_agent(node, "cg-000c291ce801", "echo plain text; exit 3")
    try:
        body = json.dumps({"batch": [{"method": "get", "resource": "/cli",
                                      "__destination": [MACS[0], "cg-000c291ce801"]}]})
        r = cli(node, "job", "create", body, "--watch")
        assert r.returncode == 0, r.stderr
        job = json.loads(r.stdout)
        assert job["status"] == "resolved" and job["doneCount"] == 2 and job["errorCount"] == 1
        # Not a terminal: one plain line per change, the last one final
        assert r.stderr.strip().splitlines()[-1] == "100% 2/2 done, 1 errors, resolved"
        r = cli(node, "job", "get", job["id"], "--collection")
        assert r.returncode == 0
        tasks = json.loads(r.stdout)["collection"]
        assert tasks[0]["__task"]["result"] == {"resource": "/cli"}
        assert tasks[1]["__task"]["result"] == {"code": 500, "resource": "/cli",
                                                "data": "plain text"}
        r = cli(node, "job", "list", "--status", "resolved")
        assert r.returncode == 0 and json.loads(r.stdout)["jobs"][0]["id"] == job["id"]
        r = cli(node, "job", "get", "nope")
        assert r.returncode == 1 and "404" in r.stderr
        r = cli(node, "job", "create", "[1]")
        assert r.returncode == 2
    finally:
        for process in (agent, texter):
            process.terminate()
            assert process.wait(timeout=60 * SLOW) == 0


def test_cli_agent_sees_the_cancel(node):
    # The command waits on the agent's stdin, which never ends: only a cancel stops it
    agent = start_cli_agent(node, MACS[1], "read line")
    try:
        r = cli(node, "job", "create", json.dumps({"destinations": MACS[1], "message": {
            "method": "post", "resource": "/forever"}}))
        job = json.loads(r.stdout)
        work = json.loads(agent.stdout.readline())
        assert work["op"] == "agent.work" and work["resource"] == "/forever"
        r = cli(node, "job", "cancel", job["id"])
        assert r.returncode == 0 and json.loads(r.stdout)["status"] == "cancelled"
        assert json.loads(agent.stdout.readline()) == {"op": "agent.cancel", "id": work["id"]}
        r = cli(node, "job", "cancel", job["id"])
        assert r.returncode == 1 and "409" in r.stderr
    finally:
        agent.terminate()
        assert agent.wait(timeout=60 * SLOW) == 0
