"""Bearer tokens on the HTTP gateway (--http-tokens): a real node, real HTTP and real
WebSockets, with and without the token, and every way the tokens file can be wrong."""
import json
import os
import socket
import subprocess
import tempfile

import pytest
import requests
import websocket

from harness import BIN, SLOW, Node

TOKEN = "ops-7f3a9c2e41d84b6b"
OTHER = "ci-0d1e2f3a4b5c6d7e8f"


@pytest.fixture
def tokens_file():
    with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as f:
        f.write(f"# who may call this node\n{TOKEN}\n\n  {OTHER}  \n")
    yield f.name
    os.unlink(f.name)


@pytest.fixture
def node(tokens_file):
    n = Node(extra=["--http-tokens", tokens_file]).start()
    yield n
    n.cleanup()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_requests_without_a_valid_token_are_refused(node):
    for headers, reason in [({}, "send Authorization: Bearer <token>"),
                            (bearer("ops-7f3a9c2e41d84b6c"), "not one this node accepts"),
                            ({"Authorization": f"Basic {TOKEN}"}, "not one this node accepts"),
                            (bearer(TOKEN[:-1]), "not one this node accepts"),
                            (bearer(TOKEN + "x"), "not one this node accepts"),
                            (bearer("x" * 4000), "not one this node accepts")]:
        for method, path in [("POST", "/events"), ("GET", "/events"), ("GET", "/cluster"),
                             ("POST", "/enqueue"), ("GET", "/jobs"), ("GET", "/nope"),
                             ("DELETE", "/health")]:
            r = requests.request(method, node.url + path, headers=headers, data='{"a": 1}',
                                 timeout=10 * SLOW)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="supernode"'
            assert reason in r.json()["error"]
    # Nothing was stored by any of them
    r = requests.get(node.url + "/events", headers=bearer(TOKEN), timeout=10 * SLOW)
    assert r.status_code == 200 and r.json()["events"] == []


def test_a_valid_token_goes_through_and_health_stays_open(node):
    r = requests.get(node.url + "/health", timeout=10 * SLOW)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    for token in (TOKEN, OTHER):
        r = requests.post(node.url + "/events", headers=bearer(token),
                          json={"who": token}, timeout=10 * SLOW)
        assert r.status_code == 201, r.text
        key = r.json()["key"]
        got = requests.get(node.url + f"/events/{key}", headers=bearer(token), timeout=10 * SLOW)
        assert got.status_code == 200 and got.json() == {"who": token}
    # The scheme is case-insensitive, the token is not
    r = requests.get(node.url + "/cluster", headers={"Authorization": f"bearer {TOKEN}"},
                     timeout=10 * SLOW)
    assert r.status_code == 200
    r = requests.get(node.url + "/cluster", headers=bearer(TOKEN.upper()), timeout=10 * SLOW)
    assert r.status_code == 401


def ws_url(node, path):
    return node.url.replace("http://", "ws://") + path


def test_websockets_need_the_token_in_a_header_or_the_query(node):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url(node, "/jobs/ws"), timeout=10 * SLOW)
    assert refused.value.status_code == 401
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url(node, "/jobs/ws?access_token=wrong-token-0123456789"),
                                    timeout=10 * SLOW)
    assert refused.value.status_code == 401
    for ws in [websocket.create_connection(ws_url(node, "/jobs/ws"), timeout=10 * SLOW,
                                           header=[f"Authorization: Bearer {TOKEN}"]),
               websocket.create_connection(ws_url(node, f"/jobs/ws?access_token={OTHER}"),
                                           timeout=10 * SLOW)]:
        first = json.loads(ws.recv())
        assert first["resource"] == "/jobs/ws"
        ws.close()
    # Still serving everyone with a token
    r = requests.get(node.url + "/cluster", headers=bearer(TOKEN), timeout=10 * SLOW)
    assert r.status_code == 200


def raw(node, request):
    """Send request bytes on a new connection; read until the node closes it."""
    answer = b""
    with socket.create_connection(("127.0.0.1", node.http_port), timeout=10 * SLOW) as s:
        s.sendall(request)
        try:
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                answer += piece
        except ConnectionResetError:
            pass
    return answer


def test_no_way_around_the_token(node):
    # A token in the query is taken from WebSocket upgrades only, not from a request
    # that merely carries an Upgrade header
    for request in [
            f"POST /events?access_token={TOKEN} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: close\r\nContent-Length: 8\r\n\r\n{{\"a\": 1}}",
            f"GET /cluster?access_token={TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "OPTIONS /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "GET /%68ealth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "GET /health/../cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]:
        answer = raw(node, request.encode())
        assert answer.startswith(b"HTTP/1.1 401 "), (request, answer[:200])
        assert b'WWW-Authenticate: Bearer realm="supernode"' in answer
    # A refused WebSocket upgrade is a whole 401, and the connection ends
    answer = raw(node, b"GET /jobs/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                       b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ") and b"WWW-Authenticate: Bearer" in head, answer
    assert "asks for a bearer token" in json.loads(body)["error"]
    answer = raw(node, b"GET /jobs/ws?access_token=wrong-token-0123456789 HTTP/1.1\r\n"
                       b"Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                       b"Sec-WebSocket-Version: 13\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ") and b"not one this node accepts" in body, answer
    r = requests.get(node.url + "/events", headers=bearer(TOKEN), timeout=10 * SLOW)
    assert r.status_code == 200 and r.json()["events"] == []


def test_oversized_and_malformed_authorization_headers(node):
    # Headers beyond civetweb's request size: refused by civetweb, the node goes on
    answer = raw(node, b"GET /cluster HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                       + b"a" * 70000 + b"\r\n\r\n")
    assert answer == b"" or answer.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), answer[:200]
    for value in ["Bearer", "Bearer ", "Bearer \x7f" + TOKEN, TOKEN, "Bearer " + TOKEN + " extra"]:
        r = requests.get(node.url + "/cluster", headers={"Authorization": value},
                         timeout=10 * SLOW)
        assert r.status_code in ((400, 401) if "\x7f" in value else (401,)), value
    r = requests.get(node.url + "/cluster", headers=bearer(TOKEN), timeout=10 * SLOW)
    assert r.status_code == 200


@pytest.mark.parametrize("content, message", [
    ("", "holds no token"),
    ("# nothing but comments\n", "holds no token"),
    (f"{TOKEN}\nshort\n", "line 2: token shorter than 16 characters"),
    ("has a space in it 0123\n", "line 1: token holds a character"),
    ("x" * 300 + "\n", "line 1: token longer than 256 characters"),
])
def test_a_bad_tokens_file_is_a_config_error(content, message):
    with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as f:
        f.write(content)
    node = Node(extra=["--http-tokens", f.name])
    try:
        out = subprocess.run(node.args(), capture_output=True, text=True, timeout=60 * SLOW)
        assert out.returncode == 2
        assert message in out.stderr, out.stderr
    finally:
        os.unlink(f.name)
        node.cleanup()


def test_a_missing_tokens_file_is_a_config_error():
    node = Node(extra=["--http-tokens", "/nonexistent/supernode.tokens"])
    try:
        out = subprocess.run(node.args(), capture_output=True, text=True, timeout=60 * SLOW)
        assert out.returncode == 2
        assert "tokens file /nonexistent/supernode.tokens: No such file" in out.stderr
    finally:
        node.cleanup()
