"""CURVE on the ZeroMQ endpoints: only clients whose certificate is in --curve-clients
get in, only nodes holding the cluster certificate join, and bad certificate options
stop `supernode run` with the reason."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import msgpack
import pytest
import requests
import zmq

from harness import BIN, SLOW, Node, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "clients", "python")
sys.path.insert(0, PACKAGE)

import supernode  # noqa: E402

# How long a reply that must not come is waited for. A refused handshake never
# answers, so this bounds the check, not a synchronisation.
NO_ANSWER = 2.0 * SLOW


@pytest.fixture
def keys():
    """A directory of certificates made by `supernode keygen`: the node's, alice's
    (allowed: a copy of her public file is in clients/), mallory's (not allowed), and
    two cluster certificates."""
    directory = tempfile.mkdtemp(prefix="sn-curve-")
    os.mkdir(os.path.join(directory, "clients"))
    public = {}
    for name in ("node", "alice", "mallory", "cluster", "other-cluster"):
        out = subprocess.run([BIN, "keygen", os.path.join(directory, name)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        public[name] = out.stdout.strip()
        assert len(public[name]) == 40
    shutil.copy(os.path.join(directory, "alice"), os.path.join(directory, "clients"))
    yield directory, public
    shutil.rmtree(directory, ignore_errors=True)


def path(keys, name):
    return os.path.join(keys[0], name)


def client(node, keys, cert="alice", server="node"):
    return supernode.Client(node.endpoint, timeout=10.0 * SLOW,
                            server_key=path(keys, server), cert=path(keys, cert))


def cli(node, *args, keys=None, cert="alice"):
    curve = ["--server-key", path(keys, "node"), "--curve-cert", path(keys, cert)] if keys else []
    return subprocess.run([BIN, *args, "--node", node.endpoint, *curve],
                          capture_output=True, text=True)


def stored_events(node):
    r = requests.get(node.url + "/events?limit=1000", timeout=10)
    assert r.status_code == 200, r.text
    return [item["event"] for item in r.json()["events"]]


def no_answer(c, marker):
    """Send a put that must not get in; True when no reply came in the window.
    A DEALER whose only link was already refused has no pipe left and would block
    on send for ever: the client's send then fails at once (its send timeout, set to
    0 here), which counts as no answer."""
    c.socket.sndtimeo = 0
    try:
        c.send("put", event={"marker": marker})
    except supernode.Error:
        return True
    return c.receive(NO_ANSWER) is None


def test_keygen_writes_a_pair_and_never_overwrites(keys):
    node_path = path(keys, "node")
    assert os.path.exists(node_path) and os.path.exists(node_path + "_secret")
    assert os.stat(node_path + "_secret").st_mode & 0o077 == 0
    out = subprocess.run([BIN, "keygen", node_path], capture_output=True, text=True)
    assert out.returncode == 1 and "not overwritten" in out.stderr
    out = subprocess.run([BIN, "keygen"], capture_output=True, text=True)
    assert out.returncode == 2

    # The secret file is read-write for its owner only (0600)
    assert os.stat(node_path + "_secret").st_mode & 0o777 == 0o600

    # An existing secret alone, or a dangling symlink where either file would go, is
    # never written through, and no half pair is left behind
    lone = path(keys, "lone")
    with open(lone + "_secret", "w") as f:
        f.write("mine")
    out = subprocess.run([BIN, "keygen", lone], capture_output=True, text=True)
    assert out.returncode == 1 and "not overwritten" in out.stderr, out.stderr
    assert not os.path.lexists(lone)
    with open(lone + "_secret") as f:
        assert f.read() == "mine"
    target = path(keys, "target")
    for link in ("dangling", "dangling2_secret"):
        os.symlink(target, path(keys, link))
    for name in ("dangling", "dangling2"):
        out = subprocess.run([BIN, "keygen", path(keys, name)], capture_output=True, text=True)
        assert out.returncode == 1 and "not overwritten" in out.stderr, out.stderr
        assert not os.path.lexists(target)
    assert not os.path.lexists(path(keys, "dangling_secret"))
    assert not os.path.lexists(path(keys, "dangling2"))


def test_only_allowed_clients_get_in(keys):
    # The CURVE options from the config file, as ZPL keys
    config = path(keys, "node.cfg")
    with open(config, "w") as f:
        f.write("node\n    curve_cert = %s\n    curve_clients = %s\n"
                % (path(keys, "node"), path(keys, "clients")))
    node = Node(extra=["--config", config]).start()
    allowed = client(node, keys)
    strangers = []
    try:
        key = allowed.call("put", event={"who": "alice"})["key"]
        assert allowed.call("get", key=key)["event"] == {"who": "alice"}

        # A certificate not in the list, a client without CURVE, and a client
        # expecting another server key: none gets an answer
        strangers = [client(node, keys, cert="mallory"),
                     supernode.Client(node.endpoint),
                     client(node, keys, server="mallory")]
        for index, stranger in enumerate(strangers):
            assert no_answer(stranger, "stranger-%d" % index), index

        # ... and the node still serves alice, with nothing of theirs stored
        assert allowed.call("get", key=key)["event"] == {"who": "alice"}
        events = stored_events(node)
        assert {"who": "alice"} in events
        assert not [e for e in events if "marker" in e]

        # The CLI with the right flags works, the server key as a file or as text;
        # with a certificate not allowed it gets no answer and exits 1
        out = cli(node, "put", '{"who": "cli"}', keys=keys)
        assert out.returncode == 0, out.stderr
        cli_key = out.stdout.strip().split('"key":"')[1].split('"')[0]
        out = cli(node, "get", cli_key, keys=keys)
        assert out.returncode == 0 and '"who":"cli"' in out.stdout, out.stderr
        out = subprocess.run([BIN, "range", "--node", node.endpoint, "--server-key",
                              keys[1]["node"], "--curve-cert", path(keys, "alice")],
                             capture_output=True, text=True)
        assert out.returncode == 0 and cli_key in out.stdout, out.stderr
        assert not [e for e in stored_events(node) if e == {"who": "mallory"}]

        # The CLI with a certificate not allowed gets no answer, exits 1, stores nothing
        out = cli(node, "put", '{"who": "mallory-cli"}', keys=keys, cert="mallory")
        assert out.returncode == 1, (out.stdout, out.stderr)
        assert not [e for e in stored_events(node) if e == {"who": "mallory-cli"}]

        # Wrong CLI flags are named
        out = subprocess.run([BIN, "get", cli_key, "--server-key", keys[1]["node"]],
                             capture_output=True, text=True)
        assert out.returncode == 2 and "go together" in out.stderr
        out = subprocess.run([BIN, "get", cli_key, "--node", node.endpoint, "--server-key",
                              "not-a-key", "--curve-cert", path(keys, "alice")],
                             capture_output=True, text=True)
        assert out.returncode == 2 and "not-a-key" in out.stderr
        out = subprocess.run([BIN, "get", cli_key, "--node", node.endpoint, "--server-key",
                              keys[1]["node"], "--curve-cert", path(keys, "clients")],
                             capture_output=True, text=True)
        assert out.returncode == 2 and "client certificate" in out.stderr

        # A certificate copied into the directory is let in once the node has read
        # it again (about a second); a client refused before that stays refused
        # (libzmq does not retry a refused handshake), so each try is a new client
        shutil.copy(path(keys, "mallory"), path(keys, "clients"))
        wait_for(lambda: answers(node, keys, "mallory", 0.5 * SLOW, "late"), 20,
                 "the added key to be let in")
        node.stop()
    finally:
        allowed.close()
        for stranger in strangers:
            stranger.close()
        node.cleanup()


def answers(node, keys, cert, window, tag):
    """True when a new client with cert gets its put of {"rotation": tag} answered
    within window seconds."""
    c = client(node, keys, cert=cert)
    c.socket.sndtimeo = 0  # see no_answer
    try:
        c.send("put", event={"rotation": tag})
        reply = c.receive(window)
    except supernode.Error:
        return False
    finally:
        c.close()
    return reply is not None and reply["code"] == 201


def test_rotated_and_removed_keys_are_refused(keys):
    clients = path(keys, "clients")
    node = Node(extra=["--curve-cert", path(keys, "node"), "--curve-clients", clients]).start()
    try:
        assert answers(node, keys, "alice", 10.0 * SLOW, "alice-before")

        # Rotation as a deploy tool does it: mallory's public file renamed over
        # alice's, the same size and an older mtime. The new key gets in, the old
        # one no longer does.
        staged = os.path.join(clients, ".staged")
        shutil.copy(path(keys, "mallory"), staged)
        os.utime(staged, (1000000000, 1000000000))
        os.rename(staged, os.path.join(clients, "alice"))
        wait_for(lambda: answers(node, keys, "mallory", 0.5 * SLOW, "mallory-in"), 20,
                 "the rotated-in key to be let in")
        assert not answers(node, keys, "alice", NO_ANSWER, "refused")

        # Removal: the file goes, and a key added with it shows the directory was
        # read again; the removed key gets no answer
        os.remove(os.path.join(clients, "alice"))
        shutil.copy(path(keys, "cluster"), clients)
        wait_for(lambda: answers(node, keys, "cluster", 0.5 * SLOW, "cluster-in"), 20,
                 "the added key to be let in")
        assert not answers(node, keys, "mallory", NO_ANSWER, "refused")
        assert not [e for e in stored_events(node) if e.get("rotation") == "refused"]
        node.stop()
    finally:
        node.cleanup()


WORKER_CLASS = textwrap.dedent('''
    class Adder:
        @staticmethod
        def add(a, b):
            return a + b
''')


def test_python_client_and_worker_over_curve(keys):
    node = Node(extra=["--curve-cert", path(keys, "node"),
                       "--curve-clients", path(keys, "clients")]).start()
    directory = tempfile.mkdtemp(prefix="sn-adder-")
    with open(os.path.join(directory, "adder.py"), "w") as f:
        f.write(WORKER_CLASS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PACKAGE, directory]))
    log = tempfile.TemporaryFile()
    worker = subprocess.Popen(["/usr/bin/python3", "-m", "supernode.worker", "--node",
                               node.endpoint, "--class", "adder.Adder",
                               "--server-key", keys[1]["node"],
                               "--curve-cert", path(keys, "alice")],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    sys.path.insert(0, directory)
    c = client(node, keys)
    try:
        import adder
        Adder = supernode.asyncify(adder.Adder, node=node.endpoint,
                                   server_key=path(keys, "node"), cert=path(keys, "alice"))
        ident = Adder.async_add(2, 3)

        def finished():
            inv = c.invocation(ident)
            return inv if inv["state"] in ("succeeded", "failed") else None
        try:
            done = wait_for(finished, 30, "the worker over CURVE")
        except AssertionError:
            log.seek(0)
            raise AssertionError("worker log:\n" + log.read().decode(errors="replace")
                                 + "\nnode log:\n" + node.logs())
        assert done["response"] == 5, done
        with pytest.raises(ValueError):
            supernode.Client(node.endpoint, server_key=keys[1]["node"])
        # A client the node refuses gets an Error on every call, never a send that
        # blocks for ever once the refused link is gone
        refused = supernode.Client(node.endpoint, timeout=2 * SLOW,
                                   server_key=path(keys, "node"), cert=path(keys, "mallory"))
        for _ in range(3):
            with pytest.raises(supernode.Error):
                refused.call("health")
        refused.close()
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        c.close()
        sys.path.remove(directory)
        sys.modules.pop("adder", None)
        shutil.rmtree(directory, ignore_errors=True)
        node.stop()
        node.cleanup()


def cluster(node):
    r = requests.get(node.url + "/cluster", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def test_only_cluster_members_join(keys):
    curve = ["--curve-cluster", path(keys, "cluster")]
    n1 = Node(name="n1", extra=curve).start()
    join = ["--join", f"tcp://127.0.0.1:{n1.peers_port}"]
    n2 = Node(name="n2", extra=curve + join).start()
    n3 = Node(name="n3", extra=curve + join).start()
    members = [n1, n2, n3]
    outsiders = [Node(name="n4", extra=["--curve-cluster", path(keys, "other-cluster")] + join),
                 Node(name="n5", extra=join)]
    try:
        def all_alive(node):
            view = {m["name"]: m["status"] for m in cluster(node)["members"]}
            return view == {"n1": "alive", "n2": "alive", "n3": "alive"}
        for node in members:
            wait_for(lambda: all_alive(node), 30, f"{node.name} to see the three alive")

        # Replicated: written on all three at ALL, read from another
        r = requests.post(n1.url + "/events?commit=ALL", json={"member": "write"}, timeout=10)
        assert r.status_code == 201 and r.json()["written"] == 3, r.text
        key = r.json()["key"]
        assert requests.get(n3.url + "/events/" + key, timeout=10).json() == {"member": "write"}

        # A peer that knows the cluster's public key (anyone may) but holds a key
        # pair of its own passes libzmq's checks and is refused by n1's ZAP handler;
        # its hello (the members' default --partitions and --rf) is never seen
        public, secret = zmq.curve_keypair()
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.linger = 0
        raw.curve_serverkey = keys[1]["cluster"].encode()
        raw.curve_publickey = public
        raw.curve_secretkey = secret
        raw.connect(f"tcp://127.0.0.1:{n1.peers_port}")
        # The refusal is of the handshake, hello or not: a hello that finds no pipe
        # (the refused session may be gone already) is not waited on
        try:
            raw.send(msgpack.packb({"op": "hello", "name": "n9", "endpoint": "tcp://127.0.0.1:9",
                                    "incarnation": 1, "partitions": 64,
                                    "rf": 3, "ticket": 1}, use_bin_type=False), zmq.NOBLOCK)
        except zmq.Again:
            pass
        wait_for(lambda: "sn_zap: refused CURVE key " + public.decode() in n1.logs(), 20,
                 "n1 to log the refusal of the raw peer")
        raw.close()

        # One with another cluster certificate and one without CURVE try to join,
        # and take a write each
        for outsider in outsiders:
            outsider.start()
        keys_out = []
        for outsider in outsiders:
            r = requests.post(outsider.url + "/events?commit=ONE", json={"outsider": 1},
                              timeout=10)
            assert r.status_code == 201, r.text
            keys_out.append(r.json()["key"])

        # Over several heartbeats, no member ever lists them, their writes do not
        # reach the members, and the members go on seeing each other
        deadline = time.monotonic() + 3.0 * SLOW
        while time.monotonic() < deadline:
            for node in members:
                names = {m["name"] for m in cluster(node)["members"]}
                assert names == {"n1", "n2", "n3"}, (node.name, names)
            time.sleep(0.2)  # a bounded "must not happen" watch, not synchronisation
        for node in members:
            for outsider_key in keys_out:
                assert requests.get(node.url + "/events/" + outsider_key,
                                    timeout=10).status_code == 404
            assert not [e for e in stored_events(node) if "outsider" in e]
            assert all_alive(node)
        for outsider in outsiders:
            names = {m["name"] for m in cluster(outsider)["members"]}
            assert names == {outsider.name}
        for node in outsiders + members:
            node.stop()
    finally:
        for node in members + outsiders:
            node.cleanup()


def run_fails(extra, data):
    """supernode run with extra options; returns (exit status, stderr + stdout)."""
    node = Node(data=data, extra=extra)
    out = subprocess.run(node.args(), capture_output=True, text=True)
    return out.returncode, out.stderr + out.stdout


def test_bad_curve_options_stop_the_node(keys):
    data = tempfile.mkdtemp(prefix="sn-curve-bad-")
    clients = path(keys, "clients")
    node_cert = path(keys, "node")
    try:
        public_only = path(keys, "public-only")
        shutil.copy(node_cert, public_only)
        garbage = path(keys, "garbage")
        with open(garbage, "wb") as f:
            f.write(b"\x00\xffcurve = = =\n\tnot a certificate")
        shutil.copy(garbage, garbage + "_secret")
        bad_dir = path(keys, "bad-clients")
        os.mkdir(bad_dir)
        shutil.copy(garbage, bad_dir)
        cases = [
            (["--curve-cert", node_cert], "go together"),
            (["--curve-clients", clients], "go together"),
            (["--curve-cert", path(keys, "missing"), "--curve-clients", clients],
             "no such file"),
            (["--curve-cert", public_only, "--curve-clients", clients],
             "public-only_secret: no such file"),
            (["--curve-cert", garbage, "--curve-clients", clients], "garbage_secret"),
            (["--curve-cert", node_cert, "--curve-clients", path(keys, "none")],
             "cannot read the directory"),
            (["--curve-cert", node_cert, "--curve-clients", node_cert],
             "cannot read the directory"),
            (["--curve-cert", node_cert, "--curve-clients", bad_dir], "garbage"),
            (["--curve-cluster", public_only], "public-only_secret: no such file"),
            (["--curve-cluster", garbage], "garbage_secret"),
        ]
        if os.geteuid() != 0:  # root reads a directory whatever its mode
            locked = path(keys, "locked")
            os.mkdir(locked, 0)
            cases.append((["--curve-cert", node_cert, "--curve-clients", locked],
                          "cannot read the directory"))
        for extra, reason in cases:
            code, output = run_fails(extra, data)
            assert code != 0 and reason in output, (extra, code, output)
            assert "listening" not in output
    finally:
        shutil.rmtree(data, ignore_errors=True)
