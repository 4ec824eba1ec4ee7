"""A network partition made with network namespaces: one node is cut off from the other
two, both sides take writes, the cut heals, and the three stores converge."""
import os
import subprocess

import pytest
import requests

from harness import BIN, Client, Node, wait_for

FAST = ["--heartbeat-ms", "100", "--suspect-ms", "500", "--dead-ms", "1000",
        "--write-timeout-ms", "1000", "--anti-entropy-ms", "300"]


def sh(*args):
    return subprocess.run(list(args), check=True, capture_output=True, text=True)


class Net:
    """Three namespaces on a bridge in the test's own namespace, which reaches all three
    while the nodes' routes to each other are cut and healed."""

    def __init__(self):
        tag = os.getpid() % 100000
        self.subnet = f"10.213.{os.getpid() % 250}"
        self.bridge = f"snb{tag}"
        self.spaces = [f"sn{tag}n{i}" for i in (1, 2, 3)]
        self.links = [f"snv{tag}n{i}" for i in (1, 2, 3)]
        self.made = []

    def ip(self, index):
        return f"{self.subnet}.{index + 1}"

    def up(self):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        sh("ip", "addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for index, (space, link) in enumerate(zip(self.spaces, self.links)):
            sh("ip", "netns", "add", space)
            self.made.append(("netns", space))
            sh("ip", "link", "add", link, "type", "veth", "peer", "name", link + "p")
            self.made.append(("link", link))
            sh("ip", "link", "set", link, "master", self.bridge, "up")
            sh("ip", "link", "set", link + "p", "netns", space)
            inside = ["ip", "netns", "exec", space]
            sh(*inside, "ip", "link", "set", "lo", "up")
            sh(*inside, "ip", "addr", "add", f"{self.ip(index)}/24", "dev", link + "p")
            sh(*inside, "ip", "link", "set", link + "p", "up")

    def cut(self, lone, blackhole=True):
        """Cut (or heal) the routes between node lone and the others, both ways."""
        verb = "add" if blackhole else "del"
        for index in range(3):
            if index == lone:
                continue
            sh("ip", "netns", "exec", self.spaces[lone], "ip", "route", verb, "blackhole",
               f"{self.ip(index)}/32")
            sh("ip", "netns", "exec", self.spaces[index], "ip", "route", verb, "blackhole",
               f"{self.ip(lone)}/32")

    def down(self):
        for kind, name in reversed(self.made):
            if kind == "link":
                subprocess.run(["ip", "link", "del", name], capture_output=True)
            else:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)


class SpacedNode(Node):
    """A node inside a namespace, listening on that namespace's address."""

    def __init__(self, name, space, host, extra=()):
        super().__init__(name=name, extra=extra)
        self.space, self.host = space, host

    @property
    def url(self):
        return f"http://{self.host}:{self.http_port}"

    @property
    def endpoint(self):
        return f"tcp://{self.host}:{self.clients_port}"

    def args(self):
        return ["ip", "netns", "exec", self.space, BIN, "run", "--name", self.name,
                "--data", self.data, "--http", f"{self.host}:{self.http_port}",
                "--clients", self.endpoint, "--peers", f"tcp://{self.host}:{self.peers_port}",
                "--map-size-mb", "256"] + self.extra


def statuses(node):
    r = requests.get(node.url + "/cluster", timeout=5)
    return {m["name"]: m["status"] for m in r.json()["members"]}


def digests(client):
    return {p: client.call("digest", p=p)["buckets"] for p in range(64)}


@pytest.fixture
def net():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    probe = subprocess.run(["ip", "netns", "add", f"snprobe{os.getpid()}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make network namespaces here: {probe.stderr.decode().strip()}")
    subprocess.run(["ip", "netns", "del", f"snprobe{os.getpid()}"], capture_output=True)
    made = Net()
    try:
        made.up()
    except subprocess.CalledProcessError as error:
        made.down()
        pytest.skip(f"cannot wire network namespaces here: {error.stderr.strip()}")
    yield made
    made.down()


def test_partition_heals_and_converges(net):
    first = SpacedNode("n1", net.spaces[0], net.ip(0), FAST)
    join = ["--join", f"tcp://{net.ip(0)}:{first.peers_port}"]
    nodes = [first] + [SpacedNode(f"n{i + 1}", net.spaces[i], net.ip(i), FAST + join)
                       for i in (1, 2)]
    clients = []
    try:
        for node in nodes:
            node.start()
        everyone = {"n1": "alive", "n2": "alive", "n3": "alive"}
        for node in nodes:
            wait_for(lambda n=node: statuses(n) == everyone, 30, f"{node.name} to see all")
        clients = [Client(node.endpoint) for node in nodes]
        written = {}

        net.cut(2)
        wait_for(lambda: statuses(nodes[0])["n3"] == "dead", 30, "n1 to see n3 dead")
        wait_for(lambda: statuses(nodes[2])["n1"] == "dead", 30, "n3 to see n1 dead")
        # The majority side takes QUORUM writes; the lone node only ONE
        for i in range(40):
            reply = clients[i % 2].call("put", event={"majority": i})
            assert reply["code"] == 201, reply
            written[reply["key"]] = {"majority": i}
        for i in range(20):
            reply = clients[2].call("put", event={"alone": i}, commit="ONE")
            assert reply["code"] == 201, reply
            written[reply["key"]] = {"alone": i}
        assert clients[2].call("put", event={"quorum": 1})["code"] == 503

        net.cut(2, blackhole=False)
        for node in nodes:
            wait_for(lambda n=node: statuses(n) == everyone, 30, f"{node.name} to heal")
        def converged():
            tables = [digests(c) for c in clients]
            return tables[0] == tables[1] == tables[2]
        wait_for(converged, 60, "the stores to converge")
        for client in clients:
            for key, event in written.items():
                reply = client.call("get", key=key)
                assert reply["code"] == 200 and reply["event"] == event, reply
    finally:
        for client in clients:
            client.close()
        for node in nodes:
            node.cleanup()
