"""Start real supernode processes on free loopback ports and talk to them.

Every wait here polls a condition against a deadline; nothing sleeps to synchronise.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import msgpack
import requests
import zmq

BIN = os.environ.get("SUPERNODE_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "build", "supernode")
SANITIZED = os.environ.get("SN_SANITIZE", "0") in ("1", "ON", "TRUE", "true")
# Sanitizer builds run several times slower; deadlines stretch, assertions do not.
SLOW = 5 if SANITIZED else 1


# Ports come from below the kernel's ephemeral range (32768 and up on Linux): a port the
# kernel hands out for bind(0) can be taken a moment later by any outgoing connection,
# the nodes' own links to each other among them, before the node under test binds it.
_PORT_LOW, _PORT_HIGH = 20000, 32000
_handed_out = set()


def free_port():
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(1000):
        port = rng.randrange(_PORT_LOW, _PORT_HIGH)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise AssertionError("no free port below the ephemeral range")


def wait_for(condition, timeout=10.0, what="condition"):
    """Poll condition() until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout * SLOW
    delay = 0.005
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)  # poll interval, not synchronisation
        delay = min(delay * 2, 0.1)


class Node:
    """One supernode process with its own data directory and ports."""

    def __init__(self, name="n1", data=None, extra=()):
        self.name = name
        self.owns_data = data is None
        self.data = data or tempfile.mkdtemp(prefix="sn-test-")
        self.http_port = free_port()
        self.clients_port = free_port()
        self.peers_port = free_port()
        self.extra = list(extra)
        self.proc = None
        self.log_path = os.path.join(self.data, f"{name}.log")
        self.log = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def endpoint(self):
        return f"tcp://127.0.0.1:{self.clients_port}"

    def args(self):
        return [BIN, "run", "--name", self.name, "--data", self.data,
                "--http", f"127.0.0.1:{self.http_port}",
                "--clients", self.endpoint,
                "--peers", f"tcp://127.0.0.1:{self.peers_port}",
                "--map-size-mb", "256"] + self.extra

    def start(self, wait=True):
        for attempt in range(5):
            offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            self.log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.args(), stdout=self.log, stderr=subprocess.STDOUT)
            if not wait:
                return self
            try:
                self.wait_ready()
                self.started = True
                return self
            except AssertionError:
                # Another process took a port between free_port() and the bind: on the
                # node's first start nothing knows its ports yet, so take others
                if getattr(self, "started", False) or not self._port_taken(offset):
                    raise
                self.proc.wait()
                self.log.close()
                self.http_port = free_port()
                self.clients_port = free_port()
                self.peers_port = free_port()
        raise AssertionError(f"node {self.name} found no free ports")

    def _port_taken(self, offset):
        if self.proc.poll() is None:
            return False
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return b"Address already in use" in f.read()

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return requests.get(self.url + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self):
        wait_for(self.healthy, 20, f"node {self.name} to answer /health")

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def kill(self):
        """SIGKILL: the node gets no chance to flush or close anything."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self):
        """SIGTERM, and insist on a clean exit with no sanitizer report."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30 * SLOW)
        self.log.close()
        logs = self.logs()
        assert code == 0, f"node exited with {code}:\n{logs}"
        assert "Sanitizer" not in logs and "runtime error" not in logs, logs
        return code

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.log and not self.log.closed:
            self.log.close()
        if self.owns_data:
            shutil.rmtree(self.data, ignore_errors=True)


class Client:
    """A direct ZeroMQ client speaking msgpack {op, rid, ...} over a DEALER."""

    def __init__(self, endpoint):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.rid = 0

    def send(self, op, **fields):
        self.rid += 1
        self.sock.send(msgpack.packb(dict(op=op, rid=self.rid, **fields)))
        return self.rid

    def send_raw(self, *frames):
        self.sock.send_multipart(list(frames))

    def recv(self, timeout=10.0):
        if not self.sock.poll(int(timeout * 1000 * SLOW)):
            raise AssertionError("no reply from the node")
        return msgpack.unpackb(self.sock.recv(), raw=False)

    def call(self, op, **fields):
        rid = self.send(op, **fields)
        reply = self.recv()
        assert reply["rid"] == rid, reply
        return reply

    def close(self):
        self.sock.close()
