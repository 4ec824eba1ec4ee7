"""A live hostile-input soak over one real node: every op with a schema in schemas/,
every HTTP route and the peer endpoint, each fed a seeded series of mutations of a
valid request. Every request gets exactly one answer, 2xx or 4xx (or a documented 5xx),
with its rid when it could be read; the node stays healthy after each series."""
import collections
import datetime
import http.server
import json
import math
import os
import random
import re
import socket
import threading
import urllib.parse
import zlib

import msgpack
import pytest
import requests
import zmq

from harness import Client, Node, SLOW, free_port, wait_for

SEED = int(os.environ.get("SN_HOSTILE_SEED", "20261123"))
SCHEMAS = os.path.join(os.path.dirname(__file__), "..", "schemas")
WINDOW = 32
MAC = "00:0c:29:1c:e8:01"


class Raw:
    """Bytes spliced into a packed frame as they are, in place of one value."""

    def __init__(self, data):
        self.data = data


def pack(value):
    """Pack value with every Raw spliced in: each is packed as a unique marker string
    first, then the marker's bytes are replaced."""
    raws = {}

    def walk(v):
        if isinstance(v, Raw):
            marker = "\x01raw%06d\x01" % len(raws)
            raws[marker] = v.data
            return marker
        if isinstance(v, dict):
            return {walk(k): walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    data = msgpack.packb(walk(value), use_bin_type=True)
    for marker, raw in raws.items():
        data = data.replace(msgpack.packb(marker), raw, 1)
    return data


def schema(op):
    with open(os.path.join(SCHEMAS, f"op.{op}.json")) as f:
        return json.load(f)


DEEP_ARRAY = Raw(b"\x91" * 100000 + b"\xc0")
DEEP_MAP = Raw(b"\x81\xa1a" * 100000 + b"\xc0")
BAD_UTF8 = Raw(b"\xa6\xff\xfe\xc0\x80\xed\xa0")
BAD_UTF8_KEY = Raw(b"\x81\xa2\xff\xfe\x01")
LYING_STR = Raw(b"\xdb\xff\xff\xff\xf0abc")
LYING_ARRAY = Raw(b"\xdd\x7f\xff\xff\xff\xc0")
LYING_MAP = Raw(b"\xdf\x7f\xff\xff\xff\xc0")
WRONG_TYPES = [None, True, False, 0, -1, 2 ** 64 - 1, -2 ** 63, 1.5, float("nan"),
               float("inf"), float("-inf"), "", "x", b"bin", [], {}, [None], {"": None},
               BAD_UTF8, BAD_UTF8_KEY, DEEP_ARRAY, DEEP_MAP, LYING_STR, LYING_ARRAY,
               LYING_MAP, Raw(b"\xc1"), Raw(b"\xd4\x01\x02")]


# Strings a schema takes but code may trip on: ids split at "-", numbers past 64
# bits, NUL, format directives, path pieces, multibyte characters
TRICKY = ["\x00", "a\x00b", "-", "--", "-1", "x-", "x-65536", "x-18446744073709551616",
          "x--1", "x-0x10", "1a207b2d683fdf42fae-0", "1a207b2d683fdf42fae-99999999999",
          "ffffffffffffffffffff", "0000000000000000000", "%s%n%x", "/", "../..", ".", " ",
          "\u00e9", "\U0001f600", "\ufeff", "\u202e", "primary", "*", "a,b", "\r\n"]


def edge_values(spec, valid):
    """Values spec takes, at its bounds or just odd: these reach the actors."""
    out = []
    types = spec.get("type", [])
    types = types if isinstance(types, list) else [types]
    if "string" in types:
        low, high = spec.get("minLength", 0), spec.get("maxLength", 64)
        out += [t for t in TRICKY if low <= len(t) <= high]
        out += ["a" * high, "\U0001f600" * high, "z" * max(low, 1)]
    if "integer" in types or "number" in types:
        low, high = spec.get("minimum", -2 ** 63), spec.get("maximum", 2 ** 64 - 1)
        out += [low, high, max(low, min(high, 0))]
    if "number" in types:
        out += [float(spec.get("minimum", 0)), float(spec.get("maximum", 1e300)), 1e-300]
    if "array" in types and isinstance(valid, list) and valid:
        out += [[valid[0]] * min(spec.get("maxItems", 100), 1000)]
    if "enum" in spec:
        out += list(spec["enum"])
    return out


def field_mutations(spec, valid):
    """Values breaking spec, a property's schema, given its valid value, and values
    at its bounds."""
    out = list(WRONG_TYPES) + edge_values(spec, valid)
    types = spec.get("type", [])
    types = types if isinstance(types, list) else [types]
    if "maxLength" in spec:
        n = spec["maxLength"]
        out += ["a" * (n + 1), "\u00e9" * n, "\U0001f600" * (n + 1), "a" * 100000]
    if "minLength" in spec and spec["minLength"] > 1:
        out.append("a" * (spec["minLength"] - 1))
    if "minimum" in spec:
        out.append(spec["minimum"] - 1)
    if "maximum" in spec:
        out += [spec["maximum"] + 1, 2 ** 63]
    if "enum" in spec:
        out += ["NOPE", str(spec["enum"][0]).lower() + "\x00"]
    if "array" in types or "maxItems" in spec:
        item = valid[0] if isinstance(valid, list) and valid else 1
        out += [[item] * (spec.get("maxItems", 1000) + 1), list(range(100000)),
                [DEEP_ARRAY], [BAD_UTF8], [{}], [[item]]]
    if "object" in types or "maxProperties" in spec or "properties" in spec:
        out += [{f"k{i}": i for i in range(spec.get("maxProperties", 1000) + 1)},
                {"a": DEEP_MAP}, {BAD_UTF8: 1}, {1: 2}, {None: None}]
        if isinstance(valid, dict):
            for name, sub in spec.get("properties", {}).items():
                for value in ([None, 7, "", "a" * 70000, BAD_UTF8, [], {}] +
                              (["a" * (sub["maxLength"] + 1)] if "maxLength" in sub else [])):
                    changed = dict(valid)
                    changed[name] = value
                    out.append(changed)
                if name in valid:
                    changed = dict(valid)
                    del changed[name]
                    out.append(changed)
            out.append(dict(valid, zz_unknown=1))
    if "maxDepth" in spec:
        deep = 1
        for _ in range(spec["maxDepth"] + 2):
            deep = {"d": deep}
        out.append(deep)
    return out


def breaks(value):
    """Whether value makes the whole frame undecodable, its rid with it: a lying
    length, a reserved byte, invalid UTF-8, nesting past the decoder's depth, or
    binary and extension types, which no op takes, numbers that are not finite or
    map keys that are not strings."""
    if isinstance(value, (bytes, Raw)):
        return True
    if isinstance(value, float) and not math.isfinite(value):
        return True
    if isinstance(value, dict):
        return any(not isinstance(k, str) or breaks(v) for k, v in value.items())
    if isinstance(value, list):
        return any(breaks(v) for v in value)
    return False


def depth(value):
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def readable(request):
    """Whether the decoder reads request, so that its answer must carry its rid."""
    return not breaks(request) and depth(request) <= 24  # SN_MSG_MAX_DEPTH


def mutations(op, valid, rng):
    """(frame, expected rid or None) for every mutation of the valid request."""
    sch = schema(op)
    props = dict(sch["properties"])
    rid = valid["rid"]
    out = [(pack(valid), rid)]
    for name in sorted(set(props) | set(valid)):
        if name in valid:
            changed = dict(valid)
            del changed[name]
            out.append((pack(changed), rid if name != "rid" else 0))
        for value in field_mutations(props.get(name, {}), valid.get(name)):
            changed = dict(valid)
            changed[name] = value
            if not readable(changed):
                expected = 0  # the frame does not decode: no rid is read
            elif name != "rid":
                expected = rid
            elif type(value) is int and 0 <= value < 2 ** 64:
                expected = value
            else:
                expected = 0  # a rid that is no unsigned integer is not read
            out.append((pack(changed), expected))
    for extra in [{"zz": 1}, {"zz": DEEP_ARRAY}, {"": None}, {"op": "put"}]:
        changed = dict(valid)
        changed.update(extra)
        out.append((pack(changed), rid if "op" not in extra and readable(changed) else None))
    out += [(pack([valid]), None), (pack("just a string"), None), (b"", None),
            (pack(valid) + b"\x00", None), (b"\x82\xa2op\xa6health\xa2op" + pack(op), None),
            (pack(valid) * 2, None)]
    # Byte-level mutations of the packed valid frame
    frame = pack(valid)
    for _ in range(24):
        data = bytearray(frame)
        kind = rng.randrange(5)
        pos = rng.randrange(len(data))
        if kind == 0:
            data[pos] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data = data[:pos]
        elif kind == 2:
            end = min(len(data), pos + rng.randrange(1, 16))
            data[pos:pos] = data[pos:end]
        elif kind == 3:
            data[pos] = rng.choice([0xc1, 0xdb, 0xdd, 0xdf, 0xff, 0x00, 0xc0])
        else:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        out.append((bytes(data), None))
    rng.shuffle(out)
    return out


def decode(payload):
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as error:  # a reply that does not decode is itself the finding
        raise AssertionError(f"undecodable reply {payload[:200]!r}: {error}")


PUSHED = {"work", "agent.work", "agent.cancel"}


# The 5xx answers the README documents, for a cluster in motion or a callback down
DOCUMENTED_5XX = [(503, "ownership of partition "), (503, "is being taken over here"),
                  (503, "cluster not ready"), (503, "commit "),
                  (502, "callback handshake failed")]


def check_answer(op, frame, reply, rid):
    code = reply.get("code")
    error = str(reply.get("error", ""))
    documented = any(code == c and text in error for c, text in DOCUMENTED_5XX)
    assert isinstance(code, int) and (200 <= code < 500 or documented), \
        (op, frame[:300], reply)
    if code >= 300:
        assert isinstance(reply.get("error"), str) and reply["error"], (op, reply)
    if rid is not None:
        assert reply.get("rid") == rid, (op, frame[:300], reply)


class Session:
    """One DEALER; each request travels behind a tag frame, its own envelope, which
    comes back with its one answer whatever the payload was. With connected (the
    worker and agent ops, which know their client by its envelope) every request
    has the same tag and waits for its answer before the next goes."""

    def __init__(self, endpoint, connected=False):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.connected = connected
        self.window = 1 if connected else WINDOW
        self.serial = 0
        self.pending = {}
        self.answered = set()
        self.pushed = []
        self.sent = 0

    def send(self, op, frame, rid):
        self.serial += 1
        key = b"t%d" % self.serial
        assert not (self.connected and self.pending)
        self.pending[key] = (op, frame, rid)
        self.sock.send_multipart([b"connected" if self.connected else key, frame])
        self.sent += 1
        return key

    def recv_one(self):
        if not self.sock.poll(int(20000 * SLOW)):
            raise AssertionError(f"no answer to {len(self.pending)} requests, e.g. " +
                                 repr(list(self.pending.values())[:3])[:600])
        frames = self.sock.recv_multipart()
        reply = decode(frames[-1])
        if reply.get("op") in PUSHED and "code" not in reply:
            self.pushed.append(reply)
            return None, reply
        assert len(frames) == 2, frames
        key = next(iter(self.pending), None) if self.connected else frames[0]
        assert key not in self.answered, ("second answer", key, reply)
        assert key in self.pending, ("answer to nothing asked", frames[0], reply)
        op, frame, rid = self.pending.pop(key)
        self.answered.add(key)
        check_answer(op, frame, reply, rid)
        return key, reply

    def call(self, op, request):
        tag = self.send(op, pack(request), request.get("rid"))
        while True:
            got, reply = self.recv_one()
            if got == tag:
                return reply

    def soak(self, op, frames):
        for frame, rid in frames:
            while len(self.pending) >= self.window:
                self.recv_one()
            self.send(op, frame, rid)
        while self.pending:
            self.recv_one()

    def close(self):
        self.sock.close()


class Callbacks(http.server.BaseHTTPRequestHandler):
    """Answers a bucket's handshake with its token; takes every commit."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            token = json.loads(body).get("token")
        except Exception:
            token = None
        answer = json.dumps({"token": token}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Callbacks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def hostile_node():
    n = Node(extra=["--http-timeout-ms", "2000", "--callback-allow", "127.0.0.1"]).start()
    yield n
    try:
        if n.proc.poll() is None:
            n.stop()
    finally:
        n.cleanup()


def still_healthy(node):
    c = Client(node.endpoint)
    try:
        assert c.call("health")["code"] == 200
        put = c.call("put", event={"after": "hostile"})
        assert put["code"] == 201, put
        got = c.call("get", key=put["key"])
        assert got["code"] == 200 and got["event"] == {"after": "hostile"}, got
    finally:
        c.close()
    assert node.healthy()


def valid_requests(url, ids, member):
    """One valid request per op, and what must be said before it on the same
    connection."""
    rid = 7
    worker_hello = {"op": "worker.hello", "rid": 1, "classes": ["hostile.Worker"],
                    "capacity": 2, "name": "w"}
    agent_hello = {"op": "agent.hello", "rid": 1, "id": MAC, "heartbeat": 60000}
    invocation = {"class": "hostile.Nobody", "method": "m", "params": [1, "a"]}
    return {
        "enqueue": ([], {"token": "t", "invocation": invocation, "data": {"n": 1},
                         "bucket_id": "primary", "delay": 1000, "max_attempts": 2,
                         "backoff": 10, "timeout": 1000, "worker_wait": 600000}),
        "invocation": ([], {"id": ids["invocation"]}),
        "bucket.counts": ([], {"bucket_id": "primary"}),
        "batch.create": ([], {"callback_url": url, "bucket_id": "hb", "batch_timeout": 1000,
                              "give_up": 5000, "metadata": {"m": 1}}),
        "batch.get": ([], {"bucket_id": ids["bucket"]}),
        "batch.update": ([], {"bucket_id": ids["bucket"], "callback_url": url,
                              "batch_timeout": 2000, "give_up": 6000, "metadata": {"m": 2}}),
        "batch.delete": ([], {"bucket_id": "hostile-missing"}),
        "batch.stats": ([], {}),
        "queue.stats": ([], {}),
        "dispatch.stats": ([], {}),
        "worker.hello": ([], dict(worker_hello, rid=rid)),
        "worker.heartbeat": ([worker_hello], {}),
        "worker.progress": ([worker_hello], {"id": ids["invocation"], "lease": "1",
                                             "progress": 50.5, "message": "half"}),
        "worker.result": ([worker_hello], {"id": ids["invocation"], "lease": "1", "code": 200,
                                           "response": {"r": 1}, "error": "e",
                                           "retryable": False}),
        "worker.at": ([], {"node": member, "epoch": "0123456789abcdef",
                           "classes": {"hostile.Worker": 1}}),
        "worker.push": ([], {"id": ids["invocation"], "bucket_id": "primary",
                             "invocation": invocation, "token": "t", "data": {},
                             "attempt": 1, "timeout": 1000, "lease": "1", "node": member}),
        "agent.hello": ([], dict(agent_hello, rid=rid)),
        "agent.heartbeat": ([agent_hello], {"id": MAC, "heartbeat": 60000}),
        "agent.progress": ([agent_hello], {"id": MAC, "task": ids["task"], "progress": 5}),
        "agent.result": ([agent_hello], {"id": MAC, "task": ids["task"], "code": 200,
                                         "data": {"ok": True}}),
        "agent.at": ([], {"node": member, "here": [MAC], "gens": [1], "ages": [0],
                          "gone": []}),
        "agent.push": ([], {"id": MAC, "message": {"op": "agent.work", "id": ids["task"]}}),
        "job.create": ([], {"destinations": ["00:0c:29:1c:e8:02"],
                            "message": {"method": "get", "resource": "/status",
                                        "data": {"a": 1}},
                            "options": {"timeout": 60000, "jobTimeout": 600000,
                                        "concurrency": 1}}),
        "job.get": ([], {"id": ids["job"], "collection": True}),
        "job.list": ([], {"status": "dispatching", "limit": 5, "before": ids["job"]}),
        "job.cancel": ([], {"id": "00000000000000000"}),
        "job.update": ([], {"id": ids["job"], "j": 1, "node": member, "epoch": 1, "r": 1,
                            "snapshot": False, "tick": False, "body": {}}),
        "job.watch": ([], {"node": member, "id": ids["job"], "snapshot": True}),
        "task.get": ([], {"id": ids["task"]}),
        "put": ([], {"event": {"a": 1, "b": [1, 2]}, "commit": "ONE"}),
        "bulk": ([], {"puts": [{"event": {"a": 1}}], "commit": "ONE"}),
        "get": ([], {"key": ids["key"]}),
        "range": ([], {"from": "2000", "to": "9999", "limit": 3}),
        "digest": ([], {"p": 3}),
        "health": ([], {}),
        "cluster": ([], {}),
    }


def soak_ops(through, receiver, setup_node=None, member="n9", nodes=()):
    """Every op's series through the node through; the ids it names are made
    through setup_node; member names the node in between-member ops."""
    ops = sorted(f[3:-5] for f in os.listdir(SCHEMAS) if f.startswith("op."))
    setup = Client((setup_node or through).endpoint)

    def made(op, code, **fields):
        # a cluster still placing its partitions answers 503 for a moment
        reply = wait_for(lambda: (lambda r: r if r["code"] != 503 else None)(
            setup.call(op, **fields)), 30, op)
        assert reply["code"] == code, reply
        return reply

    ids = {"key": made("put", 201, event={"seed": 1})["key"]}
    ids["invocation"] = made("enqueue", 202, token="t", invocation={
        "class": "hostile.Nobody", "method": "m", "args": {}})["id"]
    made("batch.create", 201, callback_url=receiver, bucket_id="hostile-bucket")
    ids["bucket"] = "hostile-bucket"
    ids["job"] = made("job.create", 200, destinations=[MAC],
                      message={"method": "get", "resource": "/r"})["job"]["id"]
    ids["task"] = ids["job"] + "-1"

    def live(op, session, fields):
        """For the ops that answer work, work of their own: this session says hello
        for a class or id nobody else has, is given work, and the series speaks of
        that work, so that mutations reach a task or invocation in flight."""
        if op.startswith("worker."):
            klass = "hostile.Live." + op
            session.call("worker.hello", {"op": "worker.hello", "rid": 1, "classes": [klass],
                                          "capacity": 1})
            made("enqueue", 202, token="t", invocation={"class": klass, "method": "m",
                                                         "params": []})
            push = "work"
        else:
            fields["id"] = "00:0c:29:1c:f0:%02x" % (zlib.crc32(op.encode()) & 0xff)
            session.call("agent.hello", {"op": "agent.hello", "rid": 1, "id": fields["id"],
                                         "heartbeat": 60000})
            made("job.create", 200, destinations=[fields["id"]],
                 message={"method": "get", "resource": "/r"})
            push = "agent.work"

        def given():
            while not any(p["op"] == push for p in session.pushed):
                if not session.sock.poll(100):
                    return False
                session.recv_one()
            return True
        wait_for(given, 30, f"work for {op}")
        work = next(p for p in session.pushed if p["op"] == push)
        if push == "work":
            fields["id"] = work["id"]
            fields.pop("lease", None)
            if "lease" in work:
                fields["lease"] = work["lease"]
        else:
            fields["task"] = work["id"]
        return fields

    valid = valid_requests(receiver, ids, member)
    assert sorted(valid) == ops, "an op without a valid request here: " + \
        repr(set(ops) ^ set(valid))
    total = 0
    for op in ops:
        before, fields = valid[op]
        rng = random.Random(SEED ^ zlib.crc32(op.encode()))
        session = Session(through.endpoint, connected=op.startswith(("worker.", "agent.")))
        try:
            if op in ("worker.progress", "worker.result", "agent.progress", "agent.result"):
                fields = live(op, session, dict(fields))
                before = []
            for hello in before:
                assert session.call(hello["op"], hello)["code"] == 200
            request = {"op": op, "rid": 7, **fields}
            session.call(op, request)
            session.soak(op, mutations(op, request, rng))
            total += session.sent
            # Extra envelope frames: up to what the node carries back, and past it
            for extra in (1, 6, 7, 8, 12):
                session.sock.send_multipart([b"e"] * extra + [pack(request)])
                assert session.sock.poll(int(20000 * SLOW)), (op, extra)
                frames = session.sock.recv_multipart()
                while decode(frames[-1]).get("op") in PUSHED:
                    assert session.sock.poll(int(20000 * SLOW)), (op, extra)
                    frames = session.sock.recv_multipart()
                check_answer(op, b"", decode(frames[-1]), None)
                total += 1
            # Anything still arriving now would be a second answer
            assert session.call("health", {"op": "health", "rid": 99})["code"] == 200
        finally:
            session.close()
        # A client that asks and goes away: its answers have nobody to go to
        gone = zmq.Context.instance().socket(zmq.DEALER)
        gone.setsockopt(zmq.LINGER, 1000)
        gone.connect(through.endpoint)
        for frame, _ in mutations(op, request, random.Random(SEED))[:64]:
            gone.send_multipart([b"gone", frame])
        gone.close()
        for node in nodes or [through]:
            still_healthy(node)
    setup.close()
    print(f"{total} hostile requests over {len(ops)} ops through {through.name}")
    assert total > 2000


def test_every_op_answers_every_mutation(hostile_node, receiver):
    soak_ops(hostile_node, receiver)


def test_every_op_answers_every_mutation_forwarded(receiver):
    """The same through n2 of two nodes: what n1 owns is forwarded to it, and the
    ops between members name a real member."""
    n1 = Node(name="n1", extra=["--callback-allow", "127.0.0.1"]).start()
    n2 = None
    try:
        n2 = Node(name="n2", extra=["--callback-allow", "127.0.0.1", "--join",
                                    f"tcp://127.0.0.1:{n1.peers_port}"]).start()

        def both_alive():
            members = requests.get(n2.url + "/cluster", timeout=5).json()["members"]
            return sorted(m["name"] for m in members if m["status"] == "alive") == \
                ["n1", "n2"]
        wait_for(both_alive, 30, "n1 and n2 to see each other")
        soak_ops(n2, receiver, setup_node=n1, member="n1", nodes=[n1, n2])
        for node in (n2, n1):
            node.stop()
    finally:
        n1.cleanup()
        if n2:
            n2.cleanup()


# --- HTTP ---------------------------------------------------------------------------

def http_raw(node, data):
    """Send data as it is; (status, headers, body) of the answer, or None when the
    connection closed without one."""
    with socket.create_connection(("127.0.0.1", node.http_port), timeout=15 * SLOW) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the node may close before reading everything: the answer counts
        answer = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    if not answer:
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/"), answer[:300]
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode(errors="replace")
    return status, headers, body


def request_bytes(method, path, body=b"", headers=()):
    head = [f"{method} ".encode() + (path if isinstance(path, bytes) else path.encode()) +
            b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += [h if isinstance(h, bytes) else h.encode() for h in headers]
    if body is not None and not any(h.lower().startswith(b"content-length")
                                    for h in head[1:]):
        head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + (body or b"")


def check_http(answer, what, json_error=True, allowed=(503,)):
    assert answer is not None, f"no HTTP answer to {what!r:.300}"
    status, headers, body = answer
    assert status < 500 or status in allowed, (status, body[:300], f"{what!r:.300}")
    if json_error and status >= 400 and status != 408:
        try:
            doc = json.loads(body)
        except ValueError:
            raise AssertionError(f"non-JSON error {status} {body[:200]!r} to {what!r:.300}")
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str), (status, doc)
    if status == 405:
        assert "allow" in headers, (headers, f"{what!r:.300}")


def json_mutations(valid):
    """Bodies breaking a valid JSON object."""
    text = json.dumps(valid).encode()
    out = [b"", b"{", b"[", b"nul", b"{\"a\":}", b"\xff\xfe", b"[1,2]", b"\"s\"", b"1e999",
           b"{\"a\": NaN}", b"{\"a\": Infinity}", b"{\"a\": 1}{", text[:-1], text + b"x",
           text.replace(b"\"", b"'"), b"[" * 100000 + b"]" * 100000,
           b"{\"a\":" * 100000 + b"1" + b"}" * 100000, b"{\"a\": \"\\ud800\"}",
           b"{\"a\": \"\\u00\"}", b"{\"a\": \"\xc0\x80\"}", b"{\"a\": 1, \"a\": 2}",
           b"{\"" + b"k" * 100000 + b"\": 1}", b"{\"a\": [" + b"1," * 200000 + b"1]}",
           b"{\"a\": 123456789012345678901234567890}", b"{\"a\": -9223372036854775809}",
           b"\x00", b"{\"a\": \"\x00\"}"]
    for name in list(valid) + ["zz"]:
        for value in [None, True, 0, -1, 2 ** 64 - 1, -2 ** 63, 2 ** 64, 1.5, 1e308, "",
                      "a" * 3000, "x", [], {}, [None] * 1001, {"a": {"b": {"c": {}}}},
                      "\u00e9\U0001f600"] + TRICKY:
            changed = dict(valid)
            changed[name] = value
            out.append(json.dumps(changed).encode())
        if name in valid:
            changed = dict(valid)
            del changed[name]
            out.append(json.dumps(changed).encode())
    return out


def test_every_http_route_answers_every_mutation(hostile_node, receiver):
    node = hostile_node
    c = Client(node.endpoint)
    key = c.call("put", event={"seed": 1})["key"]
    job = c.call("job.create", destinations=[MAC], message={"method": "get",
                                                               "resource": "/r"})["job"]["id"]
    inv = c.call("enqueue", token="t", invocation={"class": "hostile.Nobody",
                                                   "method": "m", "args": []})["id"]
    c.close()
    bodies = {
        ("POST", "/events"): {"a": 1},
        ("POST", "/_put"): {"key": key, "event": {"seed": 1}},
        ("POST", "/enqueue"): {"token": "t", "invocation": {"class": "hostile.Nobody",
                                                            "method": "m", "params": []}},
        ("POST", "/batch"): {"callback_url": receiver, "bucket_id": "hh"},
        ("PUT", "/batch/hh"): {"batch_timeout": 3000},
        ("POST", "/jobs"): {"destinations": [MAC], "message": {"method": "get",
                                                                "resource": "/r"}},
    }
    reads = [("GET", f"/events/{key}"), ("GET", "/events?from=2000&to=9999&limit=2"),
             ("GET", "/batch/hh"), ("DELETE", "/batch/hostile-missing"),
             ("GET", f"/invocations/{inv}"), ("GET", "/jobs?status=created&limit=2"),
             ("GET", f"/jobs/{job}?collection=true"), ("DELETE", "/jobs/00000000000000000"),
             ("GET", f"/tasks/{job}-1"), ("GET", "/cluster"), ("GET", "/health"),
             ("GET", "/metrics")]
    rng = random.Random(SEED)
    sent = 0

    def ask(data, what, json_error=True, allowed=(503,)):
        nonlocal sent
        sent += 1
        check_http(http_raw(node, data), what, json_error, allowed)

    for (method, path), valid in bodies.items():
        allowed = (503, 502) if path == "/batch" else (503,)
        for body in json_mutations(valid):
            ask(request_bytes(method, path, body), (method, path, body[:100]),
                allowed=allowed)
            if rng.random() < 0.2:
                ask(request_bytes(method, path, body,
                                  ["Content-Type: text/plain; charset=\xff".encode("latin-1")]),
                    (method, path, "ctype"), allowed=allowed)
        still_healthy(node)
    routes = [p for _, p in bodies] + [p for _, p in reads] + ["/jobs/ws", f"/jobs/{job}/ws"]
    for path in routes:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO"):
            # civetweb itself refuses a method it does not know, in plain text
            ask(request_bytes(method, path, b"{}"), (method, path), json_error=method != "FOO")
    for method, path in reads:
        base = path.split("?")[0]
        variants = [base + "%", base + "%z1", base + "%ff", base + "%00", base + "%2F..",
                    base + "/" + "a" * 10000, base + "?" + "q=" + "a" * 100000,
                    base + "?limit=-1&limit=2&from=%ff&to=%&collection=maybe&status=x",
                    base + "?" + "&".join(f"k{i}=v" for i in range(3000)),
                    base + "//", base + "/../../etc/passwd", base + "\x7f",
                    base + "?limit=99999999999999999999999", base + "?before=" + "f" * 500,
                    base + "?access_token=" + "a" * 5000]
        for variant in variants:
            data = request_bytes(method, variant.encode("latin-1"))
            # a request head past civetweb's buffer, or with a control character in
            # the path, is refused by civetweb itself, in plain text
            ask(data, (method, variant[:80]), json_error=len(data) < 16000 and
                "\x7f" not in variant)
    # Ids in paths: every odd string a route's id may be, percent-encoded
    for base in ("/events/", "/batch/", "/invocations/", "/jobs/", "/tasks/"):
        for tricky in TRICKY + ["a" * 300, "\U0001f600" * 100]:
            path = base + urllib.parse.quote(tricky.encode(), safe="")
            for method in ("GET", "DELETE", "PUT"):
                ask(request_bytes(method, path, b"{}"), (method, path))
            if base == "/jobs/":
                ask(request_bytes("GET", path + "/ws"), ("GET", path + "/ws"))
    still_healthy(node)
    # Headers: lying lengths, absurd sizes; civetweb answers these itself, so only
    # a status is asked for, not a JSON body
    header_cases = [
        request_bytes("POST", "/events", b"{\"a\":1}", ["Content-Length: 2"]),
        request_bytes("POST", "/events", b"{\"a\":1}", ["Content-Length: -5"]),
        request_bytes("POST", "/events", b"{\"a\":1}", ["Content-Length: abc"]),
        request_bytes("POST", "/events", b"{\"a\":1}",
                      ["Content-Length: 99999999999999999999999"]),
        request_bytes("POST", "/events", b"{\"a\":1}",
                      ["Content-Length: 7", "Content-Length: 9"]),
        request_bytes("POST", "/events", b"5\r\n{\"a\":\r\nzz\r\n",
                      ["Transfer-Encoding: chunked"]),
        request_bytes("POST", "/events", b"fffffffffffffffff\r\n{}\r\n0\r\n\r\n",
                      ["Transfer-Encoding: chunked"]),
        request_bytes("GET", "/health", None, ["X-Big: " + "a" * 100000]),
        request_bytes("GET", "/health", None, [f"X-{i}: v" for i in range(2000)]),
        request_bytes("GET", "/health", None, ["Authorization: Bearer " + "a" * 60000]),
        request_bytes("POST", "/events", b"{}", ["X-Commit-Level: " + "Q" * 10000]),
        request_bytes("POST", "/events", b"{}", ["X-Commit-Level: \xff".encode("latin-1")]),
        request_bytes("GET", "/health", None, [b"NoColon"]),
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET " + b"/" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    ]
    # WebSocket upgrades without a key or of another version, on our paths and others:
    # civetweb answered these with a bare error page and no status line
    for path in (b"/jobs/ws", b"/jobs/" + job.encode() + b"/ws", b"/events", b"/health",
                 b"/nope"):
        for extra in (b"Sec-WebSocket-Version: 99\r\n", b"Sec-WebSocket-Version: 13\r\n",
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 99\r\n",
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"):
            sent += 1
            answer = http_raw(node, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                              b"Upgrade: websocket\r\nConnection: Upgrade\r\n" + extra +
                              b"\r\n")
            check_http(answer, (path, extra))
            assert answer[0] in (400, 404, 426), (path, extra, answer)
    header_cases += [
        b"GET /jobs/" + b"f" * 5000 + b"/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
    ]
    for data in header_cases:
        sent += 1
        answer = http_raw(node, data)
        if answer is not None:  # closing on a broken request line is an answer too
            # 505 is the status HTTP has for a version the server does not speak
            check_http(answer, data[:120], json_error=False,
                       allowed=(503, 505) if b"HTTP/9.9" in data else (503,))
    # Keep-alive: a Content-Length shorter than the body makes the rest a second
    # request, and each of the two gets its own answer
    answer = http_raw(node, b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"
                      b"{\"a\":1}GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer and answer[0] == 400 and b"HTTP/1.1 400" in answer[2], answer
    sent += 2
    # Every POST route chunked, well and badly; HEAD and Expect on each route
    for (method, path), valid in bodies.items():
        text = json.dumps(valid).encode()
        for chunks in (b"%x\r\n%s\r\n0\r\n\r\n" % (len(text), text),
                       b"zz\r\n{}\r\n0\r\n\r\n",
                       b"ffffffffffffffff\r\n{}\r\n0\r\n\r\n"):
            ask(request_bytes(method, path, None, ["Transfer-Encoding: chunked"]) + chunks,
                (method, path, chunks[:40]), allowed=(503, 502) if path == "/batch" else (503,))
        ask(request_bytes(method, path, text, ["Expect: 100-continue"]), (method, path, "expect"),
            allowed=(503, 502) if path == "/batch" else (503,))
    for path in routes:
        ask(request_bytes("HEAD", path, None), ("HEAD", path), json_error=False)
    # A lying Content-Length that promises more than comes: 408 at the HTTP timeout
    ask(request_bytes("POST", "/events", b"{\"a\":", ["Content-Length: 1000"]), "short body",
        json_error=False)
    # A WebSocket that sends junk after the upgrade is closed, the node unharmed
    for path in (b"/jobs/ws", b"/jobs/" + job.encode() + b"/ws"):
        with socket.create_connection(("127.0.0.1", node.http_port), timeout=15 * SLOW) as s:
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                assert chunk, head
                head += chunk
            assert head.startswith(b"HTTP/1.1 101"), head
            # a masked frame claiming 2^63 bytes, then a text frame over 1 KB
            s.sendall(b"\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff" + b"\x00" * 4 +
                      os.urandom(64))
            while s.recv(65536):
                pass
        sent += 1
    still_healthy(node)
    print(f"{sent} hostile HTTP requests")


# --- peer endpoint --------------------------------------------------------------------

def test_peer_frames_without_hello_are_dropped(hostile_node):
    """test_cluster sends a few; here every peer op a member may send, shaped right or
    wrong, from a connection that never said hello."""
    node = hostile_node
    dropped = requests.get(node.url + "/cluster", timeout=5).json()["dropped"]
    rng = random.Random(SEED)
    frames = [b"", b"\xc1", os.urandom(100), b"\x91" * 100000 + b"\xc0",
              b"\xdf\xff\xff\xff\xff"]
    for op in ("ping", "bye", "rput", "rack", "rputs", "racks", "hint", "rget", "rgot",
               "rrange", "rscan", "digest", "pull", "repair", "fwd", "fwd_reply",
               "placement", "nonsense"):
        for extra in ({}, {"from": "n2"}, {"from": "n2", "rid": 1, "p": 3, "key": "k" * 92,
                                          "event": {"a": 1}, "items": [[1, 2]]},
                      {"from": BAD_UTF8, "p": -1, "events": DEEP_ARRAY}):
            frames.append(pack({"op": op, **extra}))
    # hellos that are not hellos: wrong types, no fields at all
    for value in (None, 1, BAD_UTF8, "a" * 100000, []):
        frames.append(pack({"op": "hello", "from": value, "endpoint": value,
                            "incarnation": value}))
    rng.shuffle(frames)
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(f"tcp://127.0.0.1:{node.peers_port}")
    try:
        for frame in frames:
            raw.send(frame)
        raw.send_multipart([b"two", b"frames"])

        def counted():
            return requests.get(node.url + "/cluster", timeout=5).json()["dropped"] >= \
                dropped + len(frames) + 1
        wait_for(counted, 20, "every hello-less peer frame to be dropped")
    finally:
        raw.close()
    cluster = requests.get(node.url + "/cluster", timeout=5).json()
    assert [m["name"] for m in cluster["members"]] == [node.name], cluster["members"]
    still_healthy(node)


# --- peer endpoint, from a member -----------------------------------------------------

HOUR, MINUTE = 3600 * 1000, 60 * 1000
T0 = 1767225600000  # 2026-01-01T00:00:00Z, an hour's start
KEY_MS_MAX = 253402300799999
SENTINEL_RID, SENTINEL_I = 4242424242, 4141


def is_key(text):
    """Whether the node takes text for a supernode key (sn_key_time)."""
    if not isinstance(text, str) or not 27 <= len(text) <= 92 or not text.isascii():
        return False
    name = text[28:]
    if len(text) > 27 and (text[27] != "-" or not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*",
                                                               name)):
        return False
    if text[8] != "T" or not (text[:8] + text[9:27]).isdigit():
        return False
    try:
        when = datetime.datetime.strptime(text[:8] + text[9:15], "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return when.year >= 1970


def peer_key(ms, seq, name="x9"):
    when = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return when.strftime("%Y%m%dT%H%M%S") + "%03d%09d-%s" % (ms % 1000, seq, name)


# Pseudo-schemas of the peer messages' fields, in the shape field_mutations reads;
# extra lists values of the field's own meaning that are wrong or odd
RID = {"type": "integer", "minimum": 0, "extra": [SENTINEL_RID + 1, 2 ** 40]}
INDEX = {"type": "integer", "minimum": 0, "maximum": 63, "extra": [1, 2, 3, 64, 2 ** 32]}
PART = {"type": "integer", "minimum": 0, "maximum": 63, "extra": [2 ** 32, 2 ** 32 + 5]}
NAME = {"type": "string", "minLength": 1, "maxLength": 64,
        "extra": ["n1", "-x", "a b", "\u00e9", "nobody"]}
TYPE = {"type": "string", "minLength": 1, "maxLength": 64,
        "extra": ["event", "job.created", "bucket.secret", "t" * 65]}
CODE = {"type": "integer", "minimum": 0, "maximum": 599,
        "extra": [200, 201, 404, 409, 413, 500, 503, 2 ** 64 - 1]}
EVENT = {"type": "object", "maxProperties": 1000, "maxDepth": 22, "properties": {}}
TIME = {"type": "integer", "minimum": 0, "maximum": KEY_MS_MAX,
        "extra": [T0 + 1, T0 + MINUTE, T0 - HOUR, KEY_MS_MAX - HOUR + 1,
                  (KEY_MS_MAX // HOUR) * HOUR, 2 ** 63]}
ENDPOINT = {"type": "string", "minLength": 1, "maxLength": 255,
            "extra": ["tcp://127.0.0.1:1", "inproc://x", "ipc:///nonexistent/sock", "tcp://",
                      "://", "tcp://[::1", "tcp://127.0.0.1:99999", "tcp:// a:1",
                      "tcp://" + "a" * 249]}


def key_spec(existing):
    """Keys: wrong in every way a key can be, and keys the node already holds."""
    return {"type": "string", "minLength": 1, "maxLength": 92, "extra": list(existing) + [
        "not a key", "20260101T000000000000000001", "20260101T000000000000000001-",
        "20260101T000000000000000001--x", "20260101T000000000000000001-" + "a" * 65,
        "20260101t000000000000000001-x9", "20261301T000000000000000001-x9",
        "20260230T000000000000000001-x9", "19691231T235959999000000001-x9",
        "99991231T235959999999999999-n1", "20260101T000000000000000001-n1",
        "20260101T000000000\u00e900000001-x9", "20260101T00000000000000000a-x9"]}


def event_item(keys):
    return {"type": "object", "properties": {
        "rid": RID, "i": INDEX, "key": key_spec(keys), "type": TYPE, "p": PART,
        "event": EVENT}}


def peer_specs(keys, endpoint):
    """The fields of every peer op a member sends, as pseudo-schemas."""
    item = event_item(keys)
    ack = {"type": "object", "properties": {"rid": RID, "i": INDEX, "code": CODE,
                                            "error": NAME}}
    bucket = {"type": "array", "tuple": [TIME, RID, RID]}
    entry = {"type": "array", "tuple": [
        NAME, dict(ENDPOINT, extra=ENDPOINT["extra"] + [endpoint]),
        {"type": "integer", "minimum": 0, "extra": [2 ** 64 - 2, 2 ** 64 - 1]},
        {"type": "string", "extra": ["alive", "suspect", "dead", "left", "ALIVE", "gone",
                                     "alive\x00"]}]}
    reply = {"type": "object", "properties": {
        "code": CODE, "key": key_spec(keys), "type": TYPE, "ts": TIME, "p": PART,
        "event": EVENT, "events": {"type": "array", "maxItems": 1000, "items": {
            "type": "object", "properties": {"key": key_spec(keys), "type": TYPE,
                                             "ts": TIME, "event": EVENT}}},
        "next": key_spec(keys)}}
    return {
        "rput": item["properties"],
        "rputs": {"writes": {"type": "array", "maxItems": 2000, "items": item}},
        "hint": dict(item["properties"], **{"for": NAME}),
        "rack": ack["properties"],
        "racks": {"acks": {"type": "array", "maxItems": 2000, "items": ack}},
        "rget": {"rid": RID, "key": key_spec(keys)},
        "rgot": {"rid": RID, "code": CODE, "reply": reply},
        "rrange": {"rid": RID, "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                   "from": key_spec(keys), "to": key_spec(keys)},
        "rscan": {"rid": RID, "p": PART, "limit": {"type": "integer", "minimum": 1,
                                                   "maximum": 1000},
                  "from": key_spec(keys), "prefix": TYPE},
        "digest": {"p": PART, "within": TIME,
                   "buckets": {"type": "array", "maxItems": 2000, "items": bucket}},
        "pull": {"p": PART, "span": dict(TIME, extra=[HOUR, MINUTE, 1, 7]),
                 "buckets": {"type": "array", "maxItems": 60, "items": TIME}},
        "repair": {"p": PART, "events": {"type": "array", "maxItems": 2000, "items": item}},
        "fwd": {"rid": RID, "timeout": dict(RID, extra=[60001, 2 ** 63]),
                "request": {"type": "object", "properties": {
                    "op": {"type": "string", "extra": ["put", "get", "cluster", "worker.at",
                                                       "forward", "scan", "puts", "nope"]},
                    "rid": RID, "fwd": dict(RID, extra=[3, 4, 16, 17, 2 ** 64 - 1]),
                    "key": key_spec(keys), "event": EVENT}}},
        "fwd_reply": {"rid": RID, "reply": {"type": "object", "properties": {
            "rid": RID, "code": CODE, "error": NAME, "event": EVENT}}},
        "ping": {"from": NAME, "members": {"type": "array", "maxItems": 1024,
                                           "items": entry}},
        "bye": {"from": NAME, "incarnation": dict(RID, extra=[0, 2 ** 64 - 2])},
        "refused": {"from": NAME, "ticket": RID, "reason": dict(NAME, maxLength=255)},
        "hello": {"name": NAME, "endpoint": dict(ENDPOINT, extra=ENDPOINT["extra"] +
                                                 [endpoint]),
                  "incarnation": dict(RID, extra=[0, 2, 2 ** 64 - 2]),
                  "partitions": dict(PART, extra=[63, 65, 0]),
                  "rf": dict(PART, extra=[1, 2, 4]), "ticket": RID,
                  "retention": dict(RID, extra=[1000]), "to": NAME},
    }


def value_mutations(spec, valid):
    """Values for one field of a peer message: wrong ones, odd ones, its own."""
    if "tuple" in spec and isinstance(valid, list):
        out = list(WRONG_TYPES) + [[], valid[:-1], valid + [1], [valid]]
        for at, sub in enumerate(spec["tuple"]):
            for value in value_mutations(sub, valid[at]):
                out.append(valid[:at] + [value] + valid[at + 1:])
        return out
    out = field_mutations(spec, valid) + list(spec.get("extra", []))
    if isinstance(valid, dict):
        for name, sub in spec.get("properties", {}).items():
            out += [dict(valid, **{name: value})
                    for value in value_mutations(sub, valid.get(name))]
    if "items" in spec and isinstance(valid, list) and valid:
        # one bad item among good ones, and thousands of good ones
        out += [[valid[0], bad] for bad in value_mutations(spec["items"], valid[0])]
        out += [valid * 3000, [valid[0]] * 1025]
    return out


def peer_mutations(valid, spec, rng, count):
    """count frames: valid, and each field of it removed or replaced by wrong values,
    nested items too, then 64 byte-level mutations of the packed valid frame."""
    out = [valid]
    for name in sorted(set(spec) | set(valid)):
        if name == "op":
            continue
        if name in valid:
            out.append({k: v for k, v in valid.items() if k != name})
        for value in value_mutations(spec.get(name, {}), valid.get(name)):
            out.append(dict(valid, **{name: value}))
    out += [dict(valid, op=valid["op"].upper()), dict(valid, op=valid["op"] + "\x00"),
            dict(valid, zz=DEEP_ARRAY), dict(valid, op=None)]
    rng.shuffle(out)
    frames = [pack(message) for message in out[:count - 64]]
    data = pack(valid)
    for _ in range(64):
        mutated = bytearray(data)
        pos = rng.randrange(len(mutated))
        kind = rng.randrange(4)
        if kind == 0:
            mutated[pos] ^= 1 << rng.randrange(8)
        elif kind == 1:
            mutated = mutated[:pos]
        elif kind == 2:
            mutated[pos] = rng.choice([0xc1, 0xdb, 0xdd, 0xdf, 0xff, 0x00, 0xc0, 0x91])
        else:
            mutated[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        frames.append(bytes(mutated))
    return frames


def must_drop(frame):
    """Whether the node must drop frame whoever sent it: no msgpack map with an op it
    knows. Frames with bytes after the map are left out: the two decoders may differ."""
    try:
        root = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except msgpack.ExtraData:
        return False
    except Exception:
        return True
    return not isinstance(root, dict) or root.get("op") not in PEER_OPS


PEER_OPS = {"hello", "refused", "ping", "bye", "rput", "rack", "rputs", "racks", "hint",
            "rget", "rgot", "rrange", "rscan", "digest", "pull", "repair", "fwd", "fwd_reply"}


class Member:
    """A made-up member: DEALERs to the node's peer endpoint that speak for it, and a
    ROUTER at the endpoint it advertises, where the node's own links to it arrive.
    What the node asks of it is kept by op, so that answers can name calls the node
    has in flight."""

    def __init__(self, node):
        self.ctx = zmq.Context.instance()
        self.node = node
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.RCVHWM, 0)
        port = free_port()
        self.router.bind(f"tcp://127.0.0.1:{port}")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.dealers = []
        self.asked = collections.defaultdict(list)
        self.answered = set()
        self.replies = {}  # rid -> the reply of each fwd_reply the node sent
        self.marker = 10 ** 15

    def dealer(self):
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{self.node.peers_port}")
        self.dealers.append(sock)
        return sock

    def hello(self, sock, name, incarnation=1):
        sock.send(pack({"op": "hello", "name": name, "endpoint": self.endpoint,
                        "incarnation": incarnation, "partitions": 64, "rf": 3,
                        "ticket": 1}))

    def drain(self):
        while self.router.poll(0):
            frames = self.router.recv_multipart()
            msg = msgpack.unpackb(frames[-1], raw=False, strict_map_key=False)
            op = msg.get("op")
            if op == "rgot":
                self.answered.add(msg["rid"])
            if op == "fwd_reply":
                self.replies[msg.get("rid")] = msg.get("reply")
            writes = msg.get("writes", []) if op == "rputs" else [msg] if op == "rput" else []
            for write in writes:
                self.asked["write"].append((write["rid"], write["i"]))
            if op in ("rget", "rrange", "rscan", "fwd"):
                self.asked[op].append((msg["rid"], 0))
        return True

    def sync(self, sock, what):
        """Everything sock sent before is handled once the node answers an rget sent
        after it: one connection's frames are handled in order."""
        self.marker += 1
        rid = self.marker
        sock.send(pack({"op": "rget", "rid": rid, "key": "20260101T000000000000000000-mk"}))

        def answered():
            assert self.node.proc.poll() is None, self.node.logs()
            return self.drain() and rid in self.answered
        wait_for(answered, 30, what)

    def close(self):
        for sock in self.dealers + [self.router]:
            sock.close()


def bind_rids(value, live, rng):
    """The message with each stand-in rid (and its i) made one of a call in flight."""
    if isinstance(value, dict):
        value = {k: bind_rids(v, live, rng) for k, v in value.items()}
        if value.get("rid") == SENTINEL_RID and live:
            rid, index = rng.choice(live)
            value["rid"] = rid
            if value.get("i") == SENTINEL_I:
                value["i"] = index
        return value
    if isinstance(value, list):
        return [bind_rids(v, live, rng) for v in value]
    return value


def cluster_of(node):
    reply = requests.get(node.url + "/cluster", timeout=5 * SLOW)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_peer_frames_after_hello_are_checked():
    """A member in good standing can still send anything. A made-up member says a
    valid hello, then sends every peer op a member may send, each as a seeded series:
    every field missing or of every wrong type, strings and arrays past their bounds,
    nested items wrong one at a time among good ones, keys that are no keys or that
    hold other events, partitions past the last, absurd buckets, answers to calls in
    flight (its writes, reads, ranges and forwards) and to calls never made, then
    bytes flipped and cut. Membership ops come from a member of their own. The node
    drops what is malformed, keeps running and answering, and its store holds what
    it held: every event put before is read back the same, and no stored event has
    an invalid key or partition. Its sanitizers, if built with them, report nothing."""
    node = Node(extra=["--suspect-ms", "60000", "--dead-ms", "60000",
                       "--write-timeout-ms", "3000"]).start()
    client = Client(node.endpoint)
    member = Member(node)
    asker = zmq.Context.instance().socket(zmq.DEALER)
    asker.setsockopt(zmq.LINGER, 0)
    asker.connect(node.endpoint)
    rng = random.Random(SEED)
    try:
        before = {}
        for index in range(40):
            put = client.call("put", event={"before": index, "pad": "b" * index})
            assert put["code"] == 201, put
            before[put["key"]] = {"before": index, "pad": "b" * index}
        keys = list(before)[:3]
        dropped = cluster_of(node)["dropped"]
        specs = peer_specs(keys, member.endpoint)
        own = member.dealer()
        member.hello(own, "x9")
        wait_for(lambda: member.drain() and any(
            m["name"] == "x9" and m["status"] == "alive" for m in cluster_of(node)["members"]),
            10, "x9 to be a member")
        member.sync(own, "the hello")
        owned = [p["p"] for p in cluster_of(node)["partitions"] if p["owner"] == "x9"]
        assert owned, "x9 owns no partition"

        pending = {}  # rid -> op of requests to the node whose answers wait on x9

        def ask_node(op, **fields):
            rid = 1000 + len(pending)
            pending[rid] = op
            asker.send(pack(dict(op=op, rid=rid, **fields)))

        def calls_in_flight(kind):
            """Calls the node makes to x9 that an answer of this op can end."""
            start = len(member.asked[kind])
            for index in range(20):
                if kind == "write":
                    ask_node("put", event={"live": index}, commit="ALL")
                elif kind == "rget":
                    ask_node("get", key=peer_key(T0, 100000 + len(pending), "zz"))
                elif kind == "rrange":
                    ask_node("range", limit=5)
                else:
                    ask_node("invocation", id="%016x-%d" % (index, rng.choice(owned)))
            wait_for(lambda: member.drain() and len(member.asked[kind]) >= start + 20, 20,
                     f"the node to ask x9 ({kind})")
            return member.asked[kind][start:]

        key = peer_key(T0 + 5 * MINUTE, 1)
        event = {"op": "rput", "rid": 11, "i": 1, "key": key, "type": "event", "p": 5,
                 "event": {"peer": 1}}
        write = {k: v for k, v in event.items() if k != "op"}
        series = [
            ("rput", event, None),
            ("rputs", {"op": "rputs", "writes": [write, dict(write, key=peer_key(T0, 2))]},
             None),
            ("hint", dict(event, op="hint", **{"for": "x9"}), None),
            ("rget", {"op": "rget", "rid": 12, "key": keys[0]}, None),
            ("rrange", {"op": "rrange", "rid": 13, "limit": 10, "from": "", "to": keys[-1]},
             None),
            ("rscan", {"op": "rscan", "rid": 14, "p": 5, "limit": 10, "from": "",
                       "prefix": "ev"}, None),
            ("digest", {"op": "digest", "p": 5, "buckets": [[T0, 3, 99], [T0 + HOUR, 1, 7]]},
             None),
            ("digest", {"op": "digest", "p": 6, "within": T0,
                        "buckets": [[T0, 1, 5], [T0 + MINUTE, 2, 6]]}, None),
            ("pull", {"op": "pull", "p": 5, "buckets": [T0, T0 + HOUR]}, None),
            ("pull", {"op": "pull", "p": 6, "span": MINUTE, "buckets": [T0 + MINUTE]}, None),
            ("repair", {"op": "repair", "p": 7, "events": [
                {"key": peer_key(T0 + HOUR, 3), "type": "event", "event": {"r": 1}},
                {"key": keys[1], "type": "event", "event": {"r": 2}}]}, None),
            ("fwd", {"op": "fwd", "rid": 15, "timeout": 1000,
                     "request": {"op": "get", "rid": 3, "key": keys[0]}}, None),
            ("fwd", {"op": "fwd", "rid": 16, "request": {"op": "put", "rid": 4,
                                                         "event": {"fwd": 1}}}, None),
            ("rack", {"op": "rack", "rid": SENTINEL_RID, "i": SENTINEL_I, "code": 201},
             "write"),
            ("racks", {"op": "racks", "acks": [
                {"rid": SENTINEL_RID, "i": SENTINEL_I, "code": 201},
                {"rid": SENTINEL_RID, "i": SENTINEL_I, "code": 409, "error": "no"}]},
             "write"),
            ("rgot", {"op": "rgot", "rid": SENTINEL_RID, "code": 200, "reply": {
                "code": 200, "key": key, "type": "event", "ts": T0, "p": 5,
                "event": {"got": 1}}}, "rget"),
            ("rgot", {"op": "rgot", "rid": SENTINEL_RID, "code": 200, "reply": {
                "code": 200, "events": [{"key": key, "event": {"got": 2}}], "next": None}},
             "rrange"),
            ("fwd_reply", {"op": "fwd_reply", "rid": SENTINEL_RID, "reply": {
                "rid": 1, "code": 200, "event": {"fwd": 2}}}, "fwd"),
            ("refused", {"op": "refused", "from": "x9", "ticket": 1, "reason": "r"}, None),
        ]
        sent = undeliverable = 0
        for op, valid, kind in series:
            live = calls_in_flight(kind) if kind else []
            for frame in peer_mutations(valid, specs[op], rng, 700):
                if live and frame[:1] and 0x80 <= frame[0] <= 0x8f:
                    try:
                        frame = pack(bind_rids(msgpack.unpackb(frame, raw=False), live, rng))
                    except Exception:
                        pass
                own.send(frame)
                sent += 1
                undeliverable += must_drop(frame)
                if sent % 64 == 0:
                    member.drain()
            own.send_multipart([pack(valid), pack(valid)])
            undeliverable += 1
            member.sync(own, f"the {op} series to be handled")
        # Membership, from connections of their own: a ping, a hello and a bye from
        # members that said hello, then a fresh member's hello to sync on
        for op, name in (("ping", "yp"), ("hello", "yh"), ("bye", "yb")):
            sock = member.dealer()
            member.hello(sock, name)
            valid = {"ping": {"op": "ping", "from": name,
                              "members": [[name, member.endpoint, 1, "alive"]]},
                     "hello": {"op": "hello", "name": name, "endpoint": member.endpoint,
                               "incarnation": 1, "partitions": 64, "rf": 3, "ticket": 1},
                     "bye": {"op": "bye", "from": name, "incarnation": 1}}[op]
            for frame in peer_mutations(valid, specs[op], rng, 700):
                sock.send(frame)
                sent += 1
                undeliverable += must_drop(frame)
            if op == "hello":
                # Members at endpoints ZeroMQ cannot use, or that are not a peer's
                odd = ENDPOINT["extra"] + [
                    "tcp://localhost:1", "udp://127.0.0.1:1", "pgm://eth0;239.1.1.1:5555",
                    "ws://127.0.0.1:1", "tipc://{5560,0,0}", "vmci://1:1", "inproc://",
                    "inproc://zeromq.zap.01", "tcp://127.0.0.1:0", "tcp://*:1", "a://b"]
                for index, endpoint in enumerate(odd):
                    sock.send(pack(dict(valid, name=f"ep{index}", endpoint=endpoint)))
                    sent += 1
            member.hello(sock, "mk" + name)
            member.sync(sock, f"the {op} series to be handled")

        # One member's word for a full member table at an endpoint nobody listens at:
        # more members than the node can hold links to
        known = len(client.call("cluster")["members"])
        own.send(pack({"op": "ping", "from": "x9", "members": [
            ["f%04d" % index, "tcp://127.0.0.1:1", 1, "alive"]
            for index in range(1028 - known)]}))
        member.sync(own, "a ping naming a full member table")
        assert len(client.call("cluster")["members"]) == 1024

        # A hop count at the top of its range does not wrap round to a request never
        # forwarded: the node does not hand it back to x9, the owner, but says no
        fwds = len(member.asked["fwd"])
        own.send(pack({"op": "fwd", "rid": 77, "request": {
            "op": "invocation", "rid": 9, "id": "%016x-%d" % (1, owned[0]),
            "fwd": 2 ** 64 - 1}}))
        wait_for(lambda: member.drain() and 77 in member.replies, 20,
                 "the node's answer to a request forwarded 2^64-1 times")
        reply = member.replies[77]
        assert reply["code"] == 503, reply
        assert len(member.asked["fwd"]) == fwds, member.asked["fwd"][fwds:]

        # Every request whose answer waited on x9 is answered once, with its rid
        answers = {}

        def all_answered():
            while asker.poll(0):
                reply = msgpack.unpackb(asker.recv(), raw=False, strict_map_key=False)
                assert isinstance(reply, dict) and reply.get("rid") in pending, reply
                assert reply["rid"] not in answers, ("second answer", reply)
                answers[reply["rid"]] = reply
            member.drain()
            return len(answers) == len(pending)
        wait_for(all_answered, 30, "every request to be answered")
        # A read or a forward that x9 answered carries x9's reply as x9 made it, when
        # that is an answer: one without a code a client could act on is 502. The
        # node's own answers (writes, merged ranges) have a code of the node's
        for rid, reply in answers.items():
            code = reply.get("code")
            assert type(code) is int and (200 <= code < 300 or 400 <= code < 600), \
                (pending[rid], reply)
            if pending[rid] in ("put", "range"):
                assert code in (200, 201, 409, 502, 503, 504), (pending[rid], reply)

        view = cluster_of(node)
        assert view["dropped"] >= dropped + undeliverable, (view["dropped"], dropped,
                                                           undeliverable)
        # Every made-up member leaves: x9 says so of the others, then of itself. The
        # members are read over ZeroMQ: JSON has no exact integers past 2^53
        members = client.call("cluster")["members"]
        gone = [[m["name"], m["endpoint"], m["incarnation"], "left"] for m in members
                if m["name"] not in (node.name, "x9") and m["status"] != "left"]
        own.send(pack({"op": "ping", "from": "x9", "members": gone}))
        x9 = [m for m in members if m["name"] == "x9"][0]
        own.send(pack({"op": "bye", "from": "x9", "incarnation": x9["incarnation"]}))
        wait_for(lambda: all(m["status"] == "left" for m in cluster_of(node)["members"]
                             if m["name"] != node.name), 10, "the made-up members to leave")

        # The store: what was there is there, unchanged; nothing is stored under a key
        # that is no key or in a partition that does not exist, and no such key reads
        for key, body in before.items():
            got = client.call("get", key=key)
            assert got["code"] == 200 and got["event"] == body, (key, got)
        cursor, seen = "", 0
        while cursor is not None:
            page = client.call("range", **{"from": cursor, "limit": 1000})
            assert page["code"] == 200, page
            for item in page["events"]:
                assert is_key(item["key"]), item
                got = client.call("get", key=item["key"])
                assert got["code"] == 200 and 0 <= got["p"] < 64, got
                seen += 1
            cursor = page["next"]
        assert seen >= len(before)
        for bad in key_spec(())["extra"] + ["k" * 92, "a" * 91]:
            if isinstance(bad, str) and not is_key(bad) and 0 < len(bad) <= 92:
                assert client.call("get", key=bad)["code"] in (400, 404), bad
        still_healthy(node)
        print(f"{sent} peer frames from members, {undeliverable} undeliverable")
        node.stop()
    finally:
        client.close()
        asker.close()
        member.close()
        node.cleanup()


def test_members_never_heard_from_are_pinged_seldom():
    """Gossip can name members at endpoints where nothing answers, and a link queues
    what it cannot deliver: each ping is the whole member table. A member the node has
    not heard from since linking it gets the ping that goes with the link, then one
    every tenth heartbeat; one that speaks gets one every heartbeat."""
    node = Node(extra=["--heartbeat-ms", "50", "--suspect-ms", "60000",
                       "--dead-ms", "60000"]).start()
    member, silent = Member(node), Member(node)
    try:
        own = member.dealer()
        member.hello(own, "x9")
        wait_for(lambda: any(m["name"] == "x9" and m["status"] == "alive"
                             for m in cluster_of(node)["members"]), 10 * SLOW, "x9 to be a member")
        # s1 is only a ROUTER at its endpoint: linked, never heard from
        own.send(pack({"op": "ping", "from": "x9", "members": [
            ["s1", silent.endpoint, 1, "alive"]]}))
        pings = {"x9": 0, "s1": 0}

        def count(who, router):
            while router.poll(0):
                frames = router.recv_multipart()
                if msgpack.unpackb(frames[-1], raw=False).get("op") == "ping":
                    pings[who] += 1

        def linked():
            count("s1", silent.router)
            return pings["s1"] >= 1
        wait_for(linked, 10 * SLOW, "the link to s1 and its first ping")
        pings["x9"] = 0
        before = pings["s1"]

        def heartbeats():
            count("x9", member.router)
            count("s1", silent.router)
            return pings["x9"] >= 60
        wait_for(heartbeats, 30 * SLOW, "60 heartbeats' pings to x9")
        # 60 heartbeats: 6 or 7 of them the tenth
        assert pings["s1"] - before <= 8, pings
        assert pings["s1"] - before >= 4, pings
        assert [m["status"] for m in cluster_of(node)["members"]] == ["alive"] * 3
        node.stop()
    finally:
        member.close()
        silent.close()
        node.cleanup()


def test_malformed_upgrades_behind_tokens(tmp_path):
    """With --http-tokens the token is asked for first: a malformed upgrade without
    one is 401, with one 400 or 426, each with a status line."""
    tokens = tmp_path / "tokens"
    tokens.write_text("abcdefghijklmnop-0123\n")
    node = Node(extra=["--http-tokens", str(tokens)]).start()
    try:
        upgrade = (b"GET /jobs/ws%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\n%s\r\n")
        for query, headers, status in [
                (b"", b"", 401), (b"", b"Sec-WebSocket-Version: 13\r\n", 401),
                (b"?access_token=abcdefghijklmnop-0123", b"", 400),
                (b"?access_token=abcdefghijklmnop-0123",
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 12\r\n", 426)]:
            answer = http_raw(node, upgrade % (query, headers))
            check_http(answer, (query, headers))
            assert answer[0] == status, (query, headers, answer)
        node.stop()
    finally:
        node.cleanup()


def test_workers_one_client_can_claim_are_bounded(node):
    """A worker is known by its envelope, which its client chooses: one DEALER can
    say hello as any number of workers. The node keeps 10,000; one more is 429
    until some go silent."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(node.endpoint)
    frame = pack({"op": "worker.hello", "rid": 3, "classes": ["hostile.Many"],
                  "capacity": 1})
    count, codes = 10010, {}
    try:
        for index in range(count):
            sock.send_multipart([b"w%d" % index, frame])
        for _ in range(count):
            assert sock.poll(int(20000 * SLOW)), codes
            reply = decode(sock.recv_multipart()[-1])
            codes[reply["code"]] = codes.get(reply["code"], 0) + 1
        assert codes == {200: 10000, 429: 10}, codes
        # one already known says hello again and is answered
        sock.send_multipart([b"w7", frame])
        assert sock.poll(int(20000 * SLOW))
        assert decode(sock.recv_multipart()[-1])["code"] == 200
    finally:
        sock.close()
    still_healthy(node)


def test_agents_one_client_can_claim_are_bounded(node):
    """An agent's connection is its envelope, which its client chooses: one DEALER
    can speak for any number of connections, 64 destination ids each. The node keeps
    10,000 agents connected; one more is 429, and one already connected is still
    answered."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(node.endpoint)
    count, codes = 10010, {}
    try:
        for index in range(count):
            sock.send_multipart([b"a%d" % index, pack({"op": "agent.hello", "rid": index,
                                                       "id": "cg-%012x" % index})])
        for _ in range(count):
            assert sock.poll(int(20000 * SLOW)), codes
            reply = decode(sock.recv_multipart()[-1])
            codes[reply["code"]] = codes.get(reply["code"], 0) + 1
            if reply["code"] == 429:
                assert "10000 agents connected" in reply["error"], reply
        assert codes == {200: 10000, 429: 10}, codes
        sock.send_multipart([b"a7", pack({"op": "agent.hello", "rid": 1, "id": "cg-%012x" % 7})])
        assert sock.poll(int(20000 * SLOW))
        assert decode(sock.recv_multipart()[-1])["code"] == 200
    finally:
        sock.close()
    still_healthy(node)
