"""What a node acknowledged survives kill -9; a clean stop is clean."""
import requests

from harness import Client, Node


def test_acknowledged_puts_survive_sigkill():
    node = Node().start()
    try:
        client = Client(node.endpoint)
        # Pipeline a stream of puts, and kill the node the moment the last ack is in:
        # every event it acknowledged must be on disk.
        rids = [client.send("put", event={"i": i, "pad": "x" * 100}) for i in range(3000)]
        acked = {}
        for _ in rids:
            reply = client.recv()
            assert reply["code"] == 201
            acked[reply["key"]] = reply["rid"]
        more = [client.send("put", event={"late": i}) for i in range(500)]
        late = client.recv()
        if late["code"] == 201:
            acked[late["key"]] = late["rid"]
        node.kill()
        client.close()
        assert more

        node.start()
        client = Client(node.endpoint)
        for key in acked:
            reply = client.call("get", key=key)
            assert reply["code"] == 200, key
        # New keys still sort after everything made before the crash.
        new_key = client.call("put", event={"after": "restart"})["key"]
        assert new_key > max(acked)
        client.close()
        node.stop()
    finally:
        node.cleanup()


def test_http_acks_survive_sigkill():
    node = Node().start()
    try:
        keys = []
        for i in range(200):
            r = requests.post(node.url + "/events", json={"i": i}, timeout=10)
            assert r.status_code == 201
            keys.append(r.json()["key"])
        node.kill()
        node.start()
        for i, key in enumerate(keys):
            r = requests.get(node.url + "/events/" + key, timeout=10)
            assert r.status_code == 200 and r.json() == {"i": i}
        node.stop()
    finally:
        node.cleanup()


def test_restart_with_other_partition_count_is_refused():
    node = Node().start()
    try:
        node.stop()
        other = Node(data=node.data, extra=["--partitions", "16"])
        other.start(wait=False)
        code = other.proc.wait(timeout=60)
        other.log.close()
        assert code != 0
        assert "partitions" in other.logs()
    finally:
        node.cleanup()
