"""The supernode command line: run's options and errors, and put / get / range."""
import json
import os
import subprocess
import tempfile

from harness import BIN, SLOW, Node


def cli(*args, node=None):
    argv = [BIN] + list(args)
    if node:
        argv += ["--node", node.endpoint]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60 * SLOW)


def test_put_get_range(node):
    r = cli("put", '{"cli": true}', node=node)
    assert r.returncode == 0, r.stderr
    key = json.loads(r.stdout)["key"]
    r = cli("get", key, node=node)
    assert r.returncode == 0 and json.loads(r.stdout) == {"cli": True}
    r = cli("range", "--limit", "5", node=node)
    assert r.returncode == 0
    assert [e["key"] for e in json.loads(r.stdout)["events"]] == [key]
    r = cli("put", '{"w": 1}', "--key", "20200101T000000000000000001", node=node)
    assert r.returncode == 0
    assert json.loads(r.stdout) == {"key": "20200101T000000000000000001"}


def test_client_errors_exit_non_zero(node):
    r = cli("get", "20200101T000000000000000000-zz", node=node)
    assert r.returncode == 1 and "404" in r.stderr and r.stdout == ""
    r = cli("put", "[1]", node=node)
    assert r.returncode == 1 and "JSON object" in r.stderr
    r = cli("range", "--limit", "0", node=node)
    assert r.returncode == 2
    r = cli("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr
    r = cli("get")
    assert r.returncode == 2


def test_client_without_node_fails_in_time():
    r = subprocess.run([BIN, "get", "k", "--node", "tcp://127.0.0.1:1"],
                       capture_output=True, text=True, timeout=60 * SLOW)
    assert r.returncode == 1
    assert "no reply" in r.stderr


def test_run_rejects_bad_options():
    for args in (["--partitions", "0"], ["--name", "a/b"], ["--colour", "red"],
                 ["--http", "nowhere"], ["stray"]):
        r = subprocess.run([BIN, "run"] + args, capture_output=True, text=True,
                           timeout=60 * SLOW)
        assert r.returncode == 2, args
        assert r.stderr.startswith("supernode: "), r.stderr


def test_run_rejects_a_bad_retention_window():
    for value in ("0", "9", "soon", "-5", "604800001"):
        r = subprocess.run([BIN, "run", "--keep-finished-ms", value], capture_output=True,
                           text=True, timeout=60 * SLOW)
        assert r.returncode == 2, value
        assert "keep-finished-ms" in r.stderr and "604800000" in r.stderr, r.stderr


def test_run_reports_a_taken_port(node):
    other = Node(name="n2")
    other.http_port = node.http_port
    try:
        other.start(wait=False)
        code = other.proc.wait(timeout=60 * SLOW)
        other.log.close()
        assert code == 1
        assert "cannot" in other.logs()
    finally:
        other.cleanup()


def test_config_file_with_flags_on_top():
    node = Node(name="fromflag")
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as f:
        f.write("node\n    name = fromfile\n    partitions = 8\n")
        path = f.name
    node.extra = ["--config", path]
    try:
        node.start()
        r = cli("put", '{"c": 1}', node=node)
        assert json.loads(r.stdout)["key"].endswith("-fromflag")
        node.stop()
    finally:
        node.cleanup()
        os.unlink(path)


def test_cluster_command(node):
    r = cli("cluster", node=node)
    assert r.returncode == 0, r.stderr
    view = json.loads(r.stdout)
    assert view["name"] == "n1"
    assert [m["status"] for m in view["members"]] == ["alive"]
    assert "rid" not in view and "code" not in view
    r = cli("cluster", "extra", node=node)
    assert r.returncode == 2
