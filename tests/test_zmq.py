"""The direct ZeroMQ client endpoint of one real node: the same ops in msgpack,
pipelining, bulk, and hostile frames answered without harm."""
import msgpack
import pytest

from harness import Client


@pytest.fixture
def client(node):
    c = Client(node.endpoint)
    yield c
    c.close()


def test_put_get_range(client):
    reply = client.call("put", event={"hello": "world"})
    assert reply["code"] == 201
    key = reply["key"]
    reply = client.call("get", key=key)
    assert reply["code"] == 200 and reply["event"] == {"hello": "world"}
    reply = client.call("range", limit=10)
    assert reply["code"] == 200
    assert [e["key"] for e in reply["events"]] == [key]
    assert reply["next"] is None


def test_pipelined_puts_all_answered_once(client):
    rids = [client.send("put", event={"i": i}) for i in range(2000)]
    replies = [client.recv() for _ in rids]
    assert sorted(r["rid"] for r in replies) == rids
    assert all(r["code"] == 201 for r in replies)
    assert len({r["key"] for r in replies}) == 2000


def test_bulk(client):
    good_key = "20200101T000000000000000007"
    client.call("put", key=good_key, event={"v": 1})
    puts = [{"event": {"i": i}} for i in range(100)]
    puts.append({"key": good_key, "event": {"v": 1}})
    puts.append({"key": good_key, "event": {"v": 2}})
    reply = client.call("bulk", puts=puts)
    assert reply["code"] == 200
    codes = [r["code"] for r in reply["results"]]
    assert codes[:101] == [201] * 101
    assert codes[101] == 409
    for r in reply["results"][:100]:
        assert client.call("get", key=r["key"])["code"] == 200


def test_bulk_limits(client):
    reply = client.call("bulk", puts=[{"event": {}}] * 1001)
    assert reply["code"] == 400 and "/puts" in reply["error"]
    reply = client.call("bulk", puts=[])
    assert reply["code"] == 400


def test_schema_errors_name_the_field(client):
    cases = [
        (dict(op="put"), "/event"),
        (dict(op="put", event=[1]), "/event"),
        (dict(op="put", event={}, extra=1), "/extra"),
        (dict(op="put", event={}, key=5), "/key"),
        (dict(op="get"), "/key"),
        (dict(op="range", limit=0), "/limit"),
        (dict(op="fly"), "/op"),
    ]
    for fields, pointer in cases:
        reply = client.call(**fields)
        assert reply["code"] == 400, fields
        assert pointer in reply["error"], (fields, reply)


def _nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


def _expect_400(client, frame):
    client.send_raw(frame)
    reply = client.recv()
    assert reply["code"] in (400, 413), reply
    assert reply["error"]
    return reply


def test_hostile_frames(client):
    frames = [
        b"",
        b"garbage",
        msgpack.packb([1, 2, 3]),
        msgpack.packb("just a string"),
        msgpack.packb({"op": "put", "rid": 1, "event": {}}) + b"\x00",  # trailing
        msgpack.packb({"op": "put", "rid": 1, "event": {}})[:-3],       # truncated
        b"\xdd\xff\xff\xff\xff",                          # array claims 4G elements
        b"\xdf\xff\xff\xff\xff",                          # map claims 4G entries
        b"\xdb\xff\xff\xff\xff" + b"x" * 10,              # string claims 4 GB
        b"\x91" * 100000 + b"\xc0",                       # nesting 100000 deep
        msgpack.packb({"op": "put", "rid": 1, "event": {"b": b"\x00bin"}},
                      use_bin_type=True),
        msgpack.packb({1: 2}),
        b"\x81\xa2op\xa3p\xffz",                           # invalid UTF-8
        msgpack.packb({"op": "put", "rid": 1, "event": {"x": float("nan")}}),
        msgpack.packb({"op": "put", "rid": -1, "event": {}}),
        msgpack.packb({"op": "put", "rid": 1, "event": {"d": _nested(23)}}),
    ]
    for frame in frames:
        if frame == b"":
            client.send_raw(frame)
            reply = client.recv()
            assert reply["code"] == 400
            continue
        _expect_400(client, frame)
    assert client.call("put", event={"after": "garbage"})["code"] == 201


def test_oversized_frame(client):
    reply = _expect_400(client, b"\x81" + b"\xc0" * ((9 << 20) - 1))
    assert reply["code"] == 413
    big_event = msgpack.packb({"op": "put", "rid": 3, "event": {"x": "y" * (2 << 20)}})
    reply = _expect_400(client, big_event)
    assert reply["code"] == 413 and reply["rid"] == 3
    assert client.call("put", event={"after": "big"})["code"] == 201


def test_multipart_and_envelopes(client):
    # Extra frames before the payload are an envelope: echoed back, not parsed.
    client.send_raw(b"", msgpack.packb({"op": "health", "rid": 9}))
    client.sock.poll(10000)
    frames = client.sock.recv_multipart()
    assert frames[0] == b""
    assert msgpack.unpackb(frames[-1])["code"] == 200
    client.send_raw(*([b"x"] * 20 + [msgpack.packb({"op": "health", "rid": 10})]))
    client.sock.poll(10000)
    frames = client.sock.recv_multipart()
    assert msgpack.unpackb(frames[-1])["code"] == 400


def test_health(client):
    reply = client.call("health")
    assert reply["code"] == 200 and reply["name"] == "n1"
    assert isinstance(reply["events"], int)


def test_digest_counts_what_was_put(client):
    for i in range(40):
        assert client.call("put", event={"i": i})["code"] == 201
    total = 0
    for p in range(64):
        reply = client.call("digest", p=p)
        assert reply["code"] == 200
        total += sum(b["count"] for b in reply["buckets"])
    assert total == 40
    assert client.call("digest", p=70000)["code"] == 400


def test_flood_from_many_clients_gets_every_reply(node):
    # Several clients pipelining far more than the node's window: every put must
    # be answered, none dropped after it was committed.
    clients = [Client(node.endpoint) for _ in range(3)]
    per_client = 15000
    try:
        for c in clients:
            for i in range(per_client):
                c.send("put", event={"i": i})
        keys = set()
        for c in clients:
            rids = set()
            for _ in range(per_client):
                reply = c.recv(timeout=60)
                assert reply["code"] == 201, reply
                rids.add(reply["rid"])
                keys.add(reply["key"])
            assert rids == set(range(1, per_client + 1))
        assert len(keys) == 3 * per_client
    finally:
        for c in clients:
            c.close()


def test_keys_in_the_nodes_own_name_are_refused(client):
    reply = client.call("put", key="20991231T235959999000000000-n1", event={"squat": 1})
    assert reply["code"] == 400 and "-n1" in reply["error"]
    reply = client.call("bulk", puts=[{"key": "20991231T235959999000000001-n1", "event": {}}])
    assert reply["results"][0]["code"] == 400
    assert client.call("put", key="20991231T235959999000000000-n2", event={})["code"] == 201


def test_range_pages_are_bounded_in_bytes(client):
    blob = "x" * 900000
    keys = [client.call("put", event={"blob": blob, "i": i})["key"] for i in range(12)]
    seen, start = [], None
    while True:
        fields = {"limit": 100}
        if start:
            fields["from"] = start
        reply = client.call("range", **fields)
        assert reply["code"] == 200
        assert 1 <= len(reply["events"]) < 12
        seen += [e["key"] for e in reply["events"]]
        start = reply["next"]
        if start is None:
            break
    assert seen == keys
