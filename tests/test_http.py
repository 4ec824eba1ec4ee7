"""The HTTP gateway of one real node: AllData events, _put, reads, and every kind of
bad request answered with a clear error while the node keeps serving."""
import json
import re
import socket

import requests

KEY = re.compile(r"^\d{8}T\d{18}-n1$")


def put(node, event, **params):
    return requests.post(node.url + "/events", json=event, params=params, timeout=10)


def test_health(node):
    r = requests.get(node.url + "/health", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "ok" and body["name"] == "n1"


def test_post_then_get_event(node):
    event = {"user": "ann", "n": 1, "tags": ["a", "b"], "nested": {"x": None, "f": 2.5},
             "text": "ünïcødé ✓"}
    r = put(node, event)
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert KEY.match(key), key
    r = requests.get(node.url + "/events/" + key, timeout=5)
    assert r.status_code == 200
    assert r.json() == event


def test_keys_are_time_ordered_and_unique(node):
    keys = [put(node, {"i": i}).json()["key"] for i in range(50)]
    assert keys == sorted(keys)
    assert len(set(keys)) == 50


def test_commit_level_is_accepted_and_checked(node):
    for level in ("ONE", "QUORUM", "ALL"):
        assert put(node, {"c": level}, commit=level).status_code == 201
    r = put(node, {"c": "x"}, commit="MOST")
    assert r.status_code == 400
    assert "commit" in r.json()["error"]


def test_missing_event_is_404(node):
    r = requests.get(node.url + "/events/20200101T000000000000000000-n1", timeout=5)
    assert r.status_code == 404
    assert "error" in r.json()


def test_range_pages_through_everything(node):
    keys = [put(node, {"i": i}).json()["key"] for i in range(25)]
    seen, start, pages = [], None, 0
    while True:
        params = {"limit": 10}
        if start:
            params["from"] = start
        r = requests.get(node.url + "/events", params=params, timeout=5)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["events"]) <= 10
        seen += [e["key"] for e in body["events"]]
        pages += 1
        if body["next"] is None:
            break
        start = body["next"]
    assert seen == keys
    assert pages >= 3
    r = requests.get(node.url + "/events", params={"from": keys[5], "to": keys[8]}, timeout=5)
    assert [e["key"] for e in r.json()["events"]] == keys[5:8]
    assert r.json()["events"][0]["event"] == {"i": 5}


def test_range_limit_is_checked(node):
    for bad in ("0", "1001", "ten", "-1"):
        r = requests.get(node.url + "/events", params={"limit": bad}, timeout=5)
        assert r.status_code == 400, bad
        assert "limit" in r.json()["error"]


def test_put_is_write_once_and_idempotent(node):
    key = "20131016T101010123000000001"
    body = {"key": key, "event": {"a": 1}}
    assert requests.post(node.url + "/_put", json=body, timeout=5).status_code == 201
    assert requests.post(node.url + "/_put", json=body, timeout=5).status_code == 201
    other = {"key": key, "event": {"a": 2}}
    r = requests.post(node.url + "/_put", json=other, timeout=5)
    assert r.status_code == 409
    assert key in r.json()["error"]
    assert requests.get(node.url + "/events/" + key, timeout=5).json() == {"a": 1}


def test_put_errors_follow_alldata(node):
    r = requests.get(node.url + "/_put", timeout=5)
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST"
    r = requests.post(node.url + "/_put", data="{not json", timeout=5)
    assert r.status_code == 400
    assert "invalid JSON" in r.json()["error"]
    r = requests.post(node.url + "/_put", json={"key": "nonsense", "event": {}}, timeout=5)
    assert r.status_code == 400
    r = requests.post(node.url + "/_put", json={"key": "20131016T101010123000000001"},
                      timeout=5)
    assert r.status_code == 400
    assert "event" in r.json()["error"]


def test_unknown_routes_and_methods(node):
    assert requests.get(node.url + "/nothing", timeout=5).status_code == 404
    r = requests.delete(node.url + "/events", timeout=5)
    assert r.status_code == 405
    assert "POST" in r.headers["Allow"] and "GET" in r.headers["Allow"]
    r = requests.post(node.url + "/health", timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"


def test_malformed_bodies(node):
    cases = [
        b"",
        b"{",
        b"[1, 2, 3]",
        b"\"text\"",
        b"{\"a\": 1} trailing",
        b"{\"a\": 1, \"a\": 2}",
        b"\xff\xfe\x00garbage",
        b"{\"n\": 1e400}",
        b"{\"n\": 18446744073709551616}",
    ]
    for body in cases:
        r = requests.post(node.url + "/events", data=body, timeout=5)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.json()["error"], body
    assert node.healthy()


def test_deep_nesting_is_refused(node):
    for depth in (25, 100, 100000):
        body = "{\"a\":" * depth + "1" + "}" * depth
        r = requests.post(node.url + "/events", data=body, timeout=10)
        assert r.status_code == 400, depth
        assert "nest" in r.json()["error"], r.text
    ok = "{\"a\":" * 19 + "1" + "}" * 19
    assert requests.post(node.url + "/events", data=ok, timeout=5).status_code == 201


def test_oversized_body_is_413(node):
    big = json.dumps({"blob": "x" * (2 << 20)})
    r = requests.post(node.url + "/events", data=big, timeout=10)
    assert r.status_code == 413
    assert node.healthy()


def test_lying_content_length_does_not_hang_the_node(node):
    # Declares more than it sends, then goes away: the node must drop it and go on.
    with socket.create_connection(("127.0.0.1", node.http_port), timeout=5) as s:
        s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\":")
    with socket.create_connection(("127.0.0.1", node.http_port), timeout=5) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        s.recv(1024)
    assert put(node, {"still": "here"}).status_code == 201


def test_a_body_that_trickles_in_is_cut_off_with_408():
    from harness import Node
    import time
    node = Node(extra=["--http-timeout-ms", "1000"]).start()
    try:
        with socket.create_connection(("127.0.0.1", node.http_port), timeout=30) as s:
            s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n{")
            s.setblocking(False)
            answer = b""
            for _ in range(4000):
                # The slow client is what is being tested: a byte every 5 ms, so
                # that the node's first 512-byte read alone takes 2.5 s, past the
                # 1 s deadline. The node must answer 408 at that read's end.
                try:
                    s.send(b" ")
                except OSError:
                    pass
                try:
                    answer += s.recv(4096)
                except BlockingIOError:
                    pass
                if b"\r\n\r\n" in answer:
                    break
                time.sleep(0.005)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert put(node, {"after": "trickle"}).status_code == 201
        node.stop()
    finally:
        node.cleanup()
