"""Jobs in a three-node cluster: a job lives in the partition of its id, owned by one
node; the other nodes forward reads and cancels to the owner; when the owner is killed
mid-job, the next replica replays the partition and the job finishes with no task lost,
by agents connected to every node."""
import msgpack
import requests
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

    def __init__(self, nodes, agent_id):
        self.id = agent_id
        self.clients = {node.name: Client(node.endpoint) for node in nodes}
        self.poller = zmq.Poller()
        for client in self.clients.values():
            self.poller.register(client.sock, zmq.POLLIN)
        self.pushes = []
        for name in self.clients:
            reply = self.call(name, "agent.hello", id=self.id, heartbeat=3600000)
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

    def work(self, timeout=30.0):
        """The next work pushed by any node: (node name, message)."""
        while not self.pushes:
            ready = dict(self.poller.poll(int(timeout * 1000 * SLOW)))
            assert ready, f"agent {self.id}: no work came"
            for name, client in self.clients.items():
                if client.sock in ready:
                    message = msgpack.unpackb(client.sock.recv(), raw=False)
                    if message.get("op") == "agent.work":
                        self.pushes.append((name, message))
        return self.pushes.pop(0)

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
