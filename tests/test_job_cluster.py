"""Jobs in a three-node cluster: a job lives in the partition of its id, owned by one
node; the other nodes forward reads and cancels to the owner; when the owner is killed
mid-job, the next replica replays the partition and the job finishes with no task lost,
by agents connected to every node."""
import json
import struct

import msgpack
import requests
import websocket
import zmq

from harness import SLOW, Client, Node, wait_for

FAST = ["--heartbeat-ms", "100", "--suspect-ms", "500", "--dead-ms", "1000",
        "--write-timeout-ms", "1500", "--anti-entropy-ms", "300"]
MACS = ["00:0c:29:1c:e8:01", "00:0c:29:1c:e8:02", "00:0c:29:1c:e8:03"]


def cluster(node):
    r = requests.get(node.url + "/cluster", timeout=5 * SLOW)
    assert r.status_code == 200, r.text
    return r.json()


def start_cluster(names):
    first = Node(name=names[0], extra=FAST).start()
    join = ["--join", f"tcp://127.0.0.1:{first.peers_port}"]
    nodes = [first] + [Node(name=name, extra=FAST + join).start() for name in names[1:]]

    def every_node_alive():
        return all({m["name"]: m["status"] for m in cluster(node)["members"]} ==
                   {name: "alive" for name in names} for node in nodes)
    wait_for(every_node_alive, 30, "every node alive")
    return nodes


class Agent:
    """One device agent connected to several nodes at once: work comes from whichever
    node owns the job, and the answer goes back through the same connection."""

    def __init__(self, nodes, agent_id, heartbeat=3600000):
        self.id = agent_id
        self.clients = {}
        self.poller = zmq.Poller()
        self.pushes = []
        for node in nodes:
            self.connect(node, heartbeat)

    def connect(self, node, heartbeat=3600000):
        """A new connection to node, and hello on it."""
        client = self.clients[node.name] = Client(node.endpoint)
        self.poller.register(client.sock, zmq.POLLIN)
        reply = self.call(node.name, "agent.hello", id=self.id, heartbeat=heartbeat)
        assert reply["code"] == 200, reply

    def call(self, name, op, **fields):
        client = self.clients[name]
        rid = client.send(op, **fields)
        while True:
            message = client.recv()
            if "op" in message:
                self.pushes.append((name, message))
            elif message.get("rid") == rid:
                return message

    def work(self, timeout=30.0, op="agent.work"):
        """The next message of op (work, or a cancel) pushed by any node: (node name,
        message). Cancels stay aside until asked for."""
        while True:
            for index, (name, message) in enumerate(self.pushes):
                if message.get("op") == op:
                    return self.pushes.pop(index)
            ready = dict(self.poller.poll(int(timeout * 1000 * SLOW)))
            assert ready, f"agent {self.id}: no {op} came"
            for name, client in self.clients.items():
                if client.sock in ready:
                    message = msgpack.unpackb(client.sock.recv(), raw=False)
                    if message.get("op") in ("agent.work", "agent.cancel"):
                        self.pushes.append((name, message))

    def result(self, name, task, data):
        return self.call(name, "agent.result", id=self.id, task=task, code=200, data=data)

    def drop(self, name):
        client = self.clients.pop(name)
        self.poller.unregister(client.sock)
        client.close()

    def close(self):
        for client in self.clients.values():
            client.close()


def get(node, path):
    return requests.get(node.url + path, timeout=10 * SLOW)


def test_forwarding_and_takeover_after_kill():
    nodes = start_cluster(["n1", "n2", "n3"])
    by_name = {node.name: node for node in nodes}
    agents = []
    try:
        agents = [Agent(nodes, mac) for mac in MACS]
        # Created through n2, the job's id falls in a partition n2 owns
        r = requests.post(nodes[1].url + "/jobs", timeout=10 * SLOW,
                          json={"destinations": MACS, "options": {"timeout": 600000},
                                "message": {"method": "post", "resource": "/upgrade",
                                            "data": {"v": 2}}})
        assert r.status_code == 200, r.text
        job = r.json()
        partition = cluster(nodes[0])["partitions"][job["p"]]
        assert partition["p"] == job["p"] and partition["owner"] == "n2", partition
        owner = by_name["n2"]

        # Readable from every node: the others forward to the owner
        for node in nodes:
            r = get(node, f"/jobs/{job['id']}")
            assert r.status_code == 200, (node.name, r.text)
            assert r.json()["id"] == job["id"] and r.json()["totalCount"] == 3
            r = get(node, f"/tasks/{job['collection'][0]}")
            assert r.status_code == 200 and r.json()["__job"] == job["id"], r.text
        # A job that does not exist is a 404 from the owner, relayed
        missing = job["id"][:-1] + ("0" if job["id"][-1] != "0" else "1")
        for node in nodes:
            assert get(node, f"/jobs/{missing}").status_code in (404, 503)

        # Every agent gets its task from the owner; only the first answers
        works = {agent.id: agent.work() for agent in agents}
        for name, work in works.values():
            assert name == "n2" and work["data"] == {"v": 2}, work
        first = agents[0]
        name, work = works[first.id]
        assert first.result(name, work["id"], {"done": 1})["code"] == 200

        def one_done():
            return get(nodes[0], f"/jobs/{job['id']}").json()["doneCount"] == 1
        wait_for(one_done, 20, "the first task to be done, seen through n1")

        # kill -9 the owner with two tasks in flight: the next replica takes over
        owner.kill()
        for agent in agents:
            agent.drop("n2")
        successor = next(by_name[name] for name in partition["replicas"] if name != "n2")
        survivors = [node for node in nodes if node is not owner]

        def taken_over():
            view = cluster(survivors[0])["partitions"][job["p"]]
            return view["owner"] == successor.name
        wait_for(taken_over, 30, "a new owner of the job's partition")

        # The tasks in flight come again, from the new owner
        for agent in agents[1:]:
            name, work = agent.work()
            assert name == successor.name and work["id"] == works[agent.id][1]["id"], work
            assert agent.result(name, work["id"], {"done": agent.id})["code"] == 200

        def finished():
            r = get(survivors[0], f"/jobs/{job['id']}?collection=true")
            return r.json() if r.status_code == 200 and r.json()["status"] == "resolved" \
                else None
        done = wait_for(finished, 30, "the job to resolve on the new owner")
        assert done["doneCount"] == 3 and done["errorCount"] == 0 and done["progress"] == 100
        results = {task["__destination"]: task["__task"]["result"] for task in done["collection"]}
        assert results == {MACS[0]: {"done": 1}, MACS[1]: {"done": MACS[1]},
                           MACS[2]: {"done": MACS[2]}}
        # ... and the same through the other survivor
        other = survivors[1]
        assert get(other, f"/jobs/{job['id']}").json()["status"] == "resolved"
        # A cancel of the finished job reaches the owner, which refuses it
        r = requests.delete(f"{other.url}/jobs/{job['id']}", timeout=10 * SLOW)
        assert r.status_code == 409, r.text
        # The job was created on n2; the list of the new owner shows it now
        listed = [j["id"] for j in get(successor, "/jobs").json()["jobs"]]
        assert job["id"] in listed
        for node in survivors:
            node.stop()
    finally:
        for agent in agents:
            agent.close()
        for node in nodes:
            node.cleanup()


def test_forwarded_requests_bad_input():
    nodes = start_cluster(["n1", "n2", "n3"])
    clients = [Client(node.endpoint) for node in nodes]
    try:
        job = requests.post(nodes[0].url + "/jobs", timeout=10 * SLOW,
                            json={"destinations": MACS[0],
                                  "message": {"method": "get", "resource": "/x"}}).json()
        owners = [p["owner"] for p in cluster(nodes[0])["partitions"]]
        assert owners[job["p"]] == "n1"
        # fwd is bounded by the schema
        for fwd in (-1, 17, "1"):
            reply = clients[1].call("job.get", id=job["id"], fwd=fwd)
            assert reply["code"] == 400, reply
        # A request said to be forwarded already, at a node that does not own the
        # partition, is not forwarded again
        reply = clients[1].call("job.get", id=job["id"], fwd=1)
        assert reply["code"] == 503 and "ownership of partition" in reply["error"], reply
        reply = clients[2].call("task.get", id=job["id"] + "-1", fwd=2)
        assert reply["code"] == 503, reply
        # ... while the owner answers it
        reply = clients[0].call("job.get", id=job["id"], fwd=1)
        assert reply["code"] == 200 and reply["job"]["id"] == job["id"], reply
        # A forward answered under the caller's own rid, with the owner's answer
        reply = clients[2].call("job.cancel", id=job["id"])
        assert reply["code"] == 200 and reply["job"]["status"] == "cancelled", reply
        reply = clients[1].call("task.get", id="not-a-task")
        assert reply["code"] in (404, 503), reply
        reply = clients[1].call("task.get", id=job["id"] + "-9")
        assert reply["code"] == 404, reply
        for node in nodes:
            node.stop()
    finally:
        for client in clients:
            client.close()
        for node in nodes:
            node.cleanup()


def owner_of(node, job):
    return cluster(node)["partitions"][job["p"]]


def test_agents_on_other_nodes():
    """The job lives on n2; its agents are connected to n1 and n3 only: the owner
    pushes their work through the node each is connected to, and their progress and
    results reach it the same way."""
    nodes = start_cluster(["n1", "n2", "n3"])
    by_name = {node.name: node for node in nodes}
    agents = []
    try:
        at = {MACS[0]: "n1", MACS[1]: "n3", MACS[2]: "n1"}
        agents = [Agent([by_name[at[mac]]], mac) for mac in MACS]
        r = requests.post(by_name["n2"].url + "/jobs", timeout=10 * SLOW,
                          json={"destinations": MACS, "options": {"timeout": 600000},
                                "message": {"method": "put", "resource": "/config",
                                            "data": {"level": 3}}})
        assert r.status_code == 200, r.text
        job = r.json()
        assert owner_of(nodes[0], job)["owner"] == "n2"
        tasks = dict(zip(MACS, job["collection"]))
        for agent in agents:
            name, work = agent.work()
            assert name == at[agent.id], (agent.id, name)
            assert work["id"] == tasks[agent.id] and work["data"] == {"level": 3}, work
            assert work["method"] == "put" and work["timeout"] > 0, work
            reply = agent.call(name, "agent.progress", id=agent.id, task=work["id"], progress=50)
            assert reply["code"] == 200, reply
            reply = agent.result(name, work["id"], {"applied": agent.id})
            assert reply["code"] == 200, reply
            # A second answer reaches the owner too, which refuses it
            reply = agent.result(name, work["id"], {"applied": agent.id})
            assert reply["code"] == 409, reply
            # One for a task of another destination is not this agent's
            other = tasks[MACS[(MACS.index(agent.id) + 1) % 3]]
            reply = agent.result(name, other, {})
            assert reply["code"] == 404, reply

        def resolved():
            r = get(by_name["n3"], f"/jobs/{job['id']}?collection=true")
            return r.json() if r.status_code == 200 and r.json()["status"] == "resolved" \
                else None
        done = wait_for(resolved, 20, "the job to resolve")
        assert done["doneCount"] == 3 and done["finishCount"] == 3
        assert done["errorCount"] == 0 and done["progress"] == 100
        results = {t["__destination"]: t["__task"]["result"] for t in done["collection"]}
        assert results == {mac: {"applied": mac} for mac in MACS}
        # Nothing more was pushed to any agent
        for agent in agents:
            assert not agent.pushes and not any(
                agent.poller.poll(0)), (agent.id, agent.pushes)
        for node in nodes:
            node.stop()
    finally:
        for agent in agents:
            agent.close()
        for node in nodes:
            node.cleanup()


def test_agents_anywhere_owner_killed():
    """Agents on every node, the job on n2: kill -9 n2 mid-job. The next replica takes
    the job over and finishes it, through the agents' own nodes; the agent that was
    connected to n2 says hello to another node and gets its task there."""
    nodes = start_cluster(["n1", "n2", "n3"])
    by_name = {node.name: node for node in nodes}
    agents = []
    try:
        at = {MACS[0]: "n1", MACS[1]: "n3", MACS[2]: "n2"}
        agents = {mac: Agent([by_name[at[mac]]], mac) for mac in MACS}
        r = requests.post(by_name["n2"].url + "/jobs", timeout=10 * SLOW,
                          json={"destinations": MACS, "options": {"timeout": 600000},
                                "message": {"method": "post", "resource": "/upgrade"}})
        assert r.status_code == 200, r.text
        job = r.json()
        partition = owner_of(nodes[0], job)
        assert partition["owner"] == "n2", partition
        tasks = dict(zip(MACS, job["collection"]))
        sent = {mac: [] for mac in MACS}
        for mac, agent in agents.items():
            name, work = agent.work()
            assert name == at[mac] and work["id"] == tasks[mac], (mac, name, work)
            sent[mac].append(work["id"])
        first = agents[MACS[0]]
        assert first.result("n1", tasks[MACS[0]], {"done": 1})["code"] == 200

        def one_done():
            return get(by_name["n3"], f"/jobs/{job['id']}").json()["doneCount"] == 1
        wait_for(one_done, 20, "the first task to be done")

        by_name["n2"].kill()
        survivors = [by_name["n1"], by_name["n3"]]
        successor = next(name for name in partition["replicas"] if name != "n2")
        # The agent of the dead node comes back on n3
        moved = agents[MACS[2]]
        moved.drop("n2")
        moved.connect(by_name["n3"])

        def taken_over():
            return owner_of(survivors[0], job)["owner"] == successor
        wait_for(taken_over, 30, "a new owner of the job's partition")

        # The tasks in flight come again, each through its agent's node
        for mac in MACS[1:]:
            agent = agents[mac]
            name, work = agent.work()
            assert name == "n3" and work["id"] == tasks[mac], (mac, name, work)
            sent[mac].append(work["id"])
            reply = agent.result(name, work["id"], {"done": mac})
            assert reply["code"] == 200, reply

        def finished():
            r = get(survivors[0], f"/jobs/{job['id']}?collection=true")
            return r.json() if r.status_code == 200 and r.json()["status"] == "resolved" \
                else None
        done = wait_for(finished, 30, "the job to resolve on the new owner")
        assert done["doneCount"] == 3 and done["errorCount"] == 0 and done["progress"] == 100
        results = {t["__destination"]: t["__task"]["result"] for t in done["collection"]}
        assert results == {MACS[0]: {"done": 1}, MACS[1]: {"done": MACS[1]},
                           MACS[2]: {"done": MACS[2]}}
        assert all(t["__task"]["status"] == "resolved" for t in done["collection"])
        # Each agent ran only its own task: once, and again after the takeover
        assert sent == {MACS[0]: [tasks[MACS[0]]], MACS[1]: [tasks[MACS[1]]] * 2,
                        MACS[2]: [tasks[MACS[2]]] * 2}, sent
        for node in survivors:
            node.stop()
    finally:
        for agent in agents.values() if isinstance(agents, dict) else agents:
            agent.close()
        for node in nodes:
            node.cleanup()


def test_remote_agent_lost_and_back():
    """The owner n2 pushes work to agents connected to n3. One goes silent (n3 tells the
    owner it left), the other connects again to n3, moves to n1, to the owner and back
    to n3 without any node noticing its old connections go, then loses n3 itself
    (kill -9): each time its task comes again on its new connection. A cancel sent to a
    connection that is gone reaches the agent where it says hello next."""
    nodes = start_cluster(["n1", "n2", "n3"])
    by_name = {node.name: node for node in nodes}
    agents = []
    try:
        silent = Agent([by_name["n3"]], MACS[0], heartbeat=200)
        stranded = Agent([by_name["n3"]], MACS[1])
        agents = [silent, stranded]
        r = requests.post(by_name["n2"].url + "/jobs", timeout=10 * SLOW,
                          json={"destinations": MACS[:2], "options": {"timeout": 600000},
                                "message": {"method": "get", "resource": "/state"}})
        assert r.status_code == 200, r.text
        job = r.json()
        assert owner_of(nodes[0], job)["owner"] == "n2"
        tasks = dict(zip(MACS, job["collection"]))
        for agent in agents:
            name, work = agent.work()
            assert name == "n3" and work["id"] == tasks[agent.id], work

        # A new connection to the same node gets the task in flight again
        stranded.drop("n3")
        stranded.connect(by_name["n3"])
        name, work = stranded.work()
        assert name == "n3" and work["id"] == tasks[MACS[1]], work
        # Its old connections stay open for the nodes (an hour's heartbeat, and the
        # task an hour's time): the task comes on each new one at once all the same
        at = "n3"
        for name in ("n1", "n2", "n3"):
            stranded.drop(at)
            stranded.connect(by_name[name])
            at, work = stranded.work()
            assert at == name and work["id"] == tasks[MACS[1]], (name, at, work)

        # Silent past three heartbeats: n3 takes it for gone, and says so
        silent.drop("n3")
        silent.connect(by_name["n1"])
        name, work = silent.work()
        assert name == "n1" and work["id"] == tasks[MACS[0]], work
        assert silent.result(name, work["id"], {"state": "ok"})["code"] == 200

        # The same moves for a job with a concurrency limit, whose released task
        # also frees a slot of the job: the task goes to the new connection, not
        # to the member the agent just left
        mover = Agent([by_name["n3"]], MACS[2])
        agents.append(mover)
        r = requests.post(by_name["n2"].url + "/jobs", timeout=10 * SLOW,
                          json={"destinations": MACS[2], "message": {"method": "get",
                                                                      "resource": "/limited"},
                                "options": {"timeout": 600000, "concurrency": 1}})
        assert r.status_code == 200, r.text
        limited = r.json()
        assert owner_of(nodes[0], limited)["owner"] == "n2"
        at, work = mover.work()
        assert at == "n3" and work["id"] == limited["collection"][0], work
        for name in ("n2", "n1"):
            mover.drop(at)
            mover.connect(by_name[name])
            at, work = mover.work()
            assert at == name and work["id"] == limited["collection"][0], (name, at, work)
        assert mover.result(at, work["id"], {"state": "ok"})["code"] == 200

        # Its node dies: the member leaves, the agent is away
        by_name["n3"].kill()
        stranded.drop("n3")
        stranded.connect(by_name["n1"])
        name, work = stranded.work()
        assert name == "n1" and work["id"] == tasks[MACS[1]], work
        assert stranded.result(name, work["id"], {"state": "ok"})["code"] == 200

        def resolved():
            r = get(by_name["n1"], f"/jobs/{job['id']}")
            return r.json() if r.status_code == 200 and r.json()["status"] == "resolved" \
                else None
        done = wait_for(resolved, 20, "the job to resolve")
        assert done["doneCount"] == 2 and done["errorCount"] == 0

        # A job cancelled while its work went to a connection that is gone: the
        # cancel comes where the agent says hello next
        r = requests.post(by_name["n2"].url + "/jobs", timeout=10 * SLOW,
                          json={"destinations": MACS[1], "options": {"timeout": 600000},
                                "message": {"method": "get", "resource": "/long"}})
        assert r.status_code == 200, r.text
        second = r.json()
        assert owner_of(nodes[0], second)["owner"] == "n2"
        name, work = stranded.work()
        assert name == "n1" and work["id"] == second["collection"][0], work
        stranded.drop("n1")
        r = requests.delete(f"{by_name['n2'].url}/jobs/{second['id']}", timeout=10 * SLOW)
        assert r.status_code == 200, r.text
        stranded.connect(by_name["n2"])
        name, cancel = stranded.work(op="agent.cancel")
        assert name == "n2" and cancel["id"] == second["collection"][0], cancel
        for name in ("n1", "n2"):
            by_name[name].stop()
    finally:
        for agent in agents:
            agent.close()
        for node in nodes:
            node.cleanup()


def test_list_of_the_whole_cluster():
    """GET /jobs on any node lists the jobs of every owner, newest first, in pages."""
    nodes = start_cluster(["n1", "n2", "n3"])
    try:
        made = []
        for node in nodes + nodes:
            r = requests.post(node.url + "/jobs", timeout=10 * SLOW,
                              json={"destinations": MACS[0],
                                    "message": {"method": "get", "resource": "/x"}})
            assert r.status_code == 200, r.text
            made.append(r.json()["id"])
        owners = [p["owner"] for p in cluster(nodes[0])["partitions"]]
        newest = sorted(made, reverse=True)
        requests.delete(f"{nodes[2].url}/jobs/{made[1]}", timeout=10 * SLOW)
        for node in nodes:
            r = get(node, "/jobs")
            assert r.status_code == 200, r.text
            listed = r.json()
            assert [j["id"] for j in listed["jobs"]] == newest, (node.name, listed)
            assert listed["next"] is None and "missing" not in listed
            assert {owners[j["p"]] for j in listed["jobs"]} == {"n1", "n2", "n3"}
            # Page by page
            seen, before = [], None
            while True:
                r = get(node, "/jobs?limit=2" + (f"&before={before}" if before else ""))
                page = r.json()
                assert len(page["jobs"]) <= 2, page
                seen += [j["id"] for j in page["jobs"]]
                before = page["next"]
                if not before:
                    break
            assert seen == newest, (node.name, seen)
            r = get(node, "/jobs?status=cancelled")
            assert [j["id"] for j in r.json()["jobs"]] == [made[1]], r.text
        # Any job id is a cursor, on every node
        r = get(nodes[1], f"/jobs?before={newest[2]}&limit=100")
        assert [j["id"] for j in r.json()["jobs"]] == newest[3:]
        assert get(nodes[1], "/jobs?before=nope").status_code == 400
        # Asked with fwd, a node lists its own jobs only
        partition = {j["id"]: j["p"] for j in listed["jobs"]}
        client = Client(nodes[0].endpoint)
        reply = client.call("job.list", fwd=1)
        assert [j["id"] for j in reply["jobs"]] == \
            [i for i in newest if owners[partition[i]] == "n1"], reply
        client.close()
        for node in nodes:
            node.stop()
    finally:
        for node in nodes:
            node.cleanup()


def ws_url(node, path):
    return f"ws://127.0.0.1:{node.http_port}{path}"


def ws_until_resolved(ws):
    """Every message up to the job's own update to resolved."""
    got = []
    while True:
        message = json.loads(ws.recv())
        got.append(message)
        if message["resource"] == "/jobs" and message["data"]["status"] == "resolved":
            return got


def test_websockets_on_nodes_that_do_not_own_the_job():
    """/jobs/:id/ws and /jobs/ws on nodes other than the owner see what the owner's
    own WebSocket sees: the snapshot, then every update in the same order."""
    nodes = start_cluster(["n1", "n2", "n3"])
    by_name = {node.name: node for node in nodes}
    sockets, agents = [], []
    try:
        r = requests.post(by_name["n2"].url + "/jobs", timeout=10 * SLOW,
                          json={"destinations": MACS[:2], "options": {"timeout": 600000},
                                "message": {"method": "post", "resource": "/w"}})
        job = r.json()
        assert owner_of(nodes[0], job)["owner"] == "n2"
        path = f"/jobs/{job['id']}/ws"
        own, far = (websocket.create_connection(ws_url(by_name[name], path), timeout=30 * SLOW)
                    for name in ("n2", "n3"))
        every = websocket.create_connection(ws_url(by_name["n1"], "/jobs/ws"), timeout=30 * SLOW)
        sockets = [own, far, every]
        for ws in (own, far):
            snapshot = json.loads(ws.recv())
            assert snapshot.get("resource") == "/jobs", snapshot
            assert snapshot["data"]["id"] == job["id"]
            assert [t["__task"]["status"] for t in snapshot["data"]["collection"]] == \
                ["created"] * 2
        assert json.loads(every.recv()) == {"resource": "/jobs/ws", "data": {}}

        agents = [Agent([by_name["n1"]], mac) for mac in MACS[:2]]
        for agent in agents:
            name, work = agent.work()
            agent.call(name, "agent.progress", id=agent.id, task=work["id"], progress=30)
            assert agent.result(name, work["id"], {"by": agent.id})["code"] == 200
        expected = ws_until_resolved(own)
        assert len(expected) == 8, expected
        assert ws_until_resolved(far) == expected
        assert ws_until_resolved(every) == expected
        assert expected[-1]["data"]["doneCount"] == 2

        # A job that does not exist, asked on a node that does not own its partition
        missing = job["id"][:-1] + ("0" if job["id"][-1] != "0" else "1")
        owners = [p["owner"] for p in cluster(nodes[0])["partitions"]]
        ws = websocket.create_connection(ws_url(by_name["n3"], f"/jobs/{missing}/ws"),
                                         timeout=30 * SLOW)
        sockets.append(ws)
        assert "error" in json.loads(ws.recv())
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                assert struct.unpack("!H", data[:2])[0] == 4404
                break
        assert owners  # the cluster answered throughout
        for node in nodes:
            node.stop()
    finally:
        for ws in sockets:
            ws.close()
        for agent in agents:
            agent.close()
        for node in nodes:
            node.cleanup()


def test_agent_ops_between_members_bad_input():
    nodes = start_cluster(["n1", "n2", "n3"])
    clients = [Client(node.endpoint) for node in nodes]
    try:
        c = clients[0]
        # Malformed, oversized and out of bounds: refused by the schemas
        bad = [dict(),                                   # no node
               dict(node=""),
               dict(node="n" * 65),
               dict(node=7),
               dict(node="n2", here="00:0c:29:1c:e8:01"),
               dict(node="n2", here=[7]),
               dict(node="n2", here=["x" * 65]),
               dict(node="n2", here=[MACS[0]] * 501),
               dict(node="n2", gone=[{}]),
               dict(node="n2", here=[MACS[0]], gens=[1], ages=[-1]),
               dict(node="n2", here=[MACS[0]], gens=[1], ages=[0] * 501),
               dict(node="n2", other=1),
               dict(node="n2", fwd=17)]
        for fields in bad:
            reply = c.call("agent.at", **fields)
            assert reply["code"] == 400, (fields, reply)
        reply = c.call("agent.at", node="n2", here=["a" * 60] * 1000)
        assert reply["code"] in (400, 413), reply
        # Well formed, it is still between nodes only: a client cannot speak for a
        # member (the dispatch selftest and the tests above drive it as the mesh does)
        for fields in (dict(node="n2", here=[MACS[0], "nope"]), dict(node="n9", here=[MACS[0]]),
                       dict(node="n2", here=[], gone=[MACS[1]])):
            reply = c.call("agent.at", **fields)
            assert reply["code"] == 403 and "nodes of the cluster only" in reply["error"], reply

        bad = [dict(id=MACS[0]),                         # no message
               dict(id=MACS[0], message={"op": "agent.work"}),
               dict(id=MACS[0], message={"op": "agent.fly", "id": "x"}),
               dict(id=MACS[0], message={"op": "agent.work", "id": "x" * 81}),
               dict(id=MACS[0], message="work"),
               dict(id="x" * 65, message={"op": "agent.cancel", "id": "x"}),
               dict(message={"op": "agent.cancel", "id": "x"})]
        for fields in bad:
            reply = c.call("agent.push", **fields)
            assert reply["code"] == 400, (fields, reply)
        # Deeper than a task's data may be (20 levels) in a message of 22
        nested = {"op": "agent.work", "id": "x", "data": []}
        inner = nested["data"]
        for _ in range(20):
            inner.append([])
            inner = inner[0]
        reply = c.call("agent.push", id=MACS[0], message=nested)
        assert reply["code"] == 400, reply
        # Well formed: a client cannot put work on an agent's connection
        agent = Agent([nodes[0]], MACS[0])
        for fields in (dict(id="nope", message={"op": "agent.cancel", "id": "x"}),
                       dict(id=MACS[0], message={"op": "agent.work", "id": "j-1"})):
            reply = c.call("agent.push", **fields)
            assert reply["code"] == 403, reply
        assert not agent.poller.poll(0), "the agent was sent something"
        agent.close()

        # Following jobs between members
        bad = [("job.watch", dict(id="")),                # no node
               ("job.watch", dict(node="n2")),            # no id
               ("job.watch", dict(node="n2", id="a" * 32)),
               ("job.watch", dict(node="n2", id="", snapshot="yes")),
               ("job.watch", dict(node="n2", id="", extra=1)),
               ("job.update", dict(id="abc", j=1)),       # no body
               ("job.update", dict(id="abc", j=-1, body={})),
               ("job.update", dict(id="not-hex", j=1, body={})),
               ("job.update", dict(id="abc", j=1, body=[])),
               ("job.update", dict(id="abc", j=1, body={}, snapshot=1)),
               ("job.update", dict(id="abc", j=1, node="n2", body={})),     # no r
               ("job.update", dict(id="abc", j=1, node="n2", r=0, body={})),
               ("job.update", dict(id="abc", j=1, node="", r=1, body={})),
               ("job.update", dict(id="abc", j=1, node="n2", r=1, tick="no", body={})),
               ("job.update", dict(id="abc", j=1, node="n2", r=1, body={})),  # no epoch
               ("job.update", dict(id="abc", j=1, node="n2", epoch=-1, r=1, body={}))]
        # refused by their schema (400) or, well formed, as ops between nodes (403)
        for op, fields in bad:
            reply = c.call(op, **fields)
            assert reply["code"] in (400, 403), (op, fields, reply)
        # Well formed: between nodes only
        reply = c.call("job.watch", node="n2", id="0123456789abcdef012")
        assert reply["code"] == 403, reply
        reply = c.call("job.update", id="0123456789abcdef012", j=1, node="n2", epoch=1,
                       r=1, body={"resource": "/jobs"})
        assert reply["code"] == 403, reply

        # Forwarded agent ops for tasks nobody has
        reply = c.call("agent.result", id=MACS[0], task="0123456789abcdef012-1", code=200)
        assert reply["code"] in (404, 503), reply
        reply = c.call("agent.result", id=MACS[0], task="0123456789abcdef012-1", code=200,
                       fwd=1)
        assert reply["code"] in (404, 503), reply
        reply = c.call("agent.progress", id="nope", task="x-1", progress=5, fwd=1)
        assert reply["code"] == 400, reply
        reply = c.call("agent.progress", id=MACS[0], task="x-1", progress=5, fwd=17)
        assert reply["code"] == 400, reply
        # Every node is still well
        for node in nodes:
            assert cluster(node)["members"]
        for node in nodes:
            node.stop()
    finally:
        for client in clients:
            client.close()
        for node in nodes:
            node.cleanup()
