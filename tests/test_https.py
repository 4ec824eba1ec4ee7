"""HTTPS on the gateway (--http-cert): a real node with a certificate made by openssl,
real TLS clients (requests, a WebSocket over TLS), plain HTTP and garbage on the TLS
port, and certificate files that are wrong."""
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile

import pytest
import requests
import websocket

from harness import SLOW, Node, wait_for

TOKEN = "tls-0123456789abcdef"


@pytest.fixture(scope="module")
def certificate():
    """A self-signed certificate for 127.0.0.1: (PEM with certificate and key, the
    certificate alone for clients to trust)."""
    folder = tempfile.mkdtemp(prefix="sn-tls-")
    key, crt = os.path.join(folder, "node.key"), os.path.join(folder, "node.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", key, "-out", crt, "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    pem = os.path.join(folder, "node.pem")
    with open(pem, "w") as out, open(crt) as c, open(key) as k:
        out.write(c.read() + k.read())
    yield pem, crt
    shutil.rmtree(folder, ignore_errors=True)


class HttpsNode(Node):
    """A node whose gateway speaks HTTPS, trusted through the test's certificate."""

    def __init__(self, pem, crt, extra=()):
        super().__init__(extra=["--http-cert", pem] + list(extra))
        self.crt = crt

    @property
    def url(self):
        return f"https://127.0.0.1:{self.http_port}"

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return requests.get(self.url + "/health", verify=self.crt, timeout=1).status_code == 200
        except requests.RequestException:
            return False


@pytest.fixture
def node(certificate, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    n = HttpsNode(*certificate, extra=["--http-tokens", str(tokens)]).start()
    yield n
    n.cleanup()


def test_https_serves_the_api_with_a_verified_certificate(node):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = requests.post(node.url + "/events", json={"over": "tls"}, headers=auth,
                      verify=node.crt, timeout=10 * SLOW)
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    r = requests.get(node.url + f"/events/{key}", headers=auth, verify=node.crt,
                     timeout=10 * SLOW)
    assert r.status_code == 200 and r.json() == {"over": "tls"}
    # Tokens are still asked for over TLS
    r = requests.get(node.url + "/cluster", verify=node.crt, timeout=10 * SLOW)
    assert r.status_code == 401
    # The node's log says where it listens, with the scheme
    assert f"listening on https://127.0.0.1:{node.http_port}" in node.logs()


def test_websocket_over_tls(node):
    ws = websocket.create_connection(
        f"wss://127.0.0.1:{node.http_port}/jobs/ws?access_token={TOKEN}",
        timeout=10 * SLOW, sslopt={"ca_certs": node.crt})
    assert json.loads(ws.recv())["resource"] == "/jobs/ws"
    ws.close()


def test_plain_http_and_garbage_on_the_tls_port_get_nothing(node):
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{node.http_port}/health", timeout=10 * SLOW)
    for junk in [b"\x16\x03\x01\x00\x05hello", b"\x00" * 4096, os.urandom(20000),
                 b"GET / HTTP/1.1\r\n\r\n"]:
        with socket.create_connection(("127.0.0.1", node.http_port), timeout=10 * SLOW) as s:
            s.sendall(junk)
            try:
                answer = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                answer = b""
            assert not answer.startswith(b"HTTP"), answer
    # A client that does not trust the certificate is refused by its own check
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(node.url + "/health", timeout=10 * SLOW)
    # And the node still serves
    wait_for(node.healthy, 10, "the node to answer over TLS")


def test_tls_before_1_2_is_refused(node):
    # OpenSSL 3's own defaults refuse TLS 1.1 too; civetweb's ssl_protocol_version 4
    # keeps it so under a system configuration that would allow it. This checks the
    # outcome, whichever refuses.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(node.crt)
    try:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as error:
        pytest.skip(f"this Python's OpenSSL cannot offer TLS 1.1 at all: {error}")
    with socket.create_connection(("127.0.0.1", node.http_port), timeout=10 * SLOW) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="127.0.0.1")
    wait_for(node.healthy, 10, "the node to answer over TLS")


def test_a_bad_certificate_stops_the_node_with_the_reason(certificate, tmp_path):
    pem, crt = certificate
    # The certificate without its key, then a file that is no certificate at all
    for path, content in [(tmp_path / "nokey.pem", open(crt).read()),
                          (tmp_path / "junk.pem", "not a certificate\n")]:
        path.write_text(content)
        node = Node(extra=["--http-cert", str(path)])
        try:
            out = subprocess.run(node.args(), capture_output=True, text=True, timeout=60 * SLOW)
            said = out.stdout + out.stderr
            assert out.returncode == 1 and "cannot listen on" in said, said
        finally:
            node.cleanup()
    # A list of addresses would leave all but the last on plain HTTP: refused
    node = Node(extra=["--http-cert", pem])
    args = node.args()
    at = args.index("--http") + 1
    args[at] = f"{args[at]},127.0.0.1:{node.clients_port}"
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=60 * SLOW)
        assert out.returncode == 2 and "must be one HOST:PORT" in out.stderr, out.stderr
    finally:
        node.cleanup()
    node = Node(extra=["--http-cert", str(tmp_path / "missing.pem")])
    try:
        out = subprocess.run(node.args(), capture_output=True, text=True, timeout=60 * SLOW)
        assert out.returncode == 2 and "missing.pem: No such file" in out.stderr, out.stderr
    finally:
        node.cleanup()
