"""The Python client package: asyncify's async_<method> round trip through the Python
worker (python3 -m supernode.worker), into a bucket whose commit a real receiver gets."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest
import requests

from harness import wait_for
from test_batch import Receiver, check_signature, delivered_items

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "clients", "python")
sys.path.insert(0, PACKAGE)

import supernode  # noqa: E402

MAILER = textwrap.dedent('''
    import supernode

    class User:
        def __init__(self):
            self.greeting = "hello"

        def send_email(self, to, subject):
            return {"to": to, "subject": subject, "greeting": self.greeting}

        @staticmethod
        def total(*numbers):
            return sum(numbers)

        def broken(self):
            raise ValueError("no such mailbox")

        def later(self):
            raise supernode.Retry("mail server busy")
''')


@pytest.fixture
def mailer(node):
    """A module mailer.User on disk, and a Python worker running it."""
    directory = tempfile.mkdtemp(prefix="sn-mailer-")
    with open(os.path.join(directory, "mailer.py"), "w") as f:
        f.write(MAILER)
    sys.path.insert(0, directory)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PACKAGE, directory]))
    log = tempfile.TemporaryFile()
    worker = subprocess.Popen(["/usr/bin/python3", "-m", "supernode.worker", "--node",
                               node.endpoint, "--class", "mailer.User"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    import mailer as module
    yield module
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    sys.path.remove(directory)
    sys.modules.pop("mailer", None)
    shutil.rmtree(directory)


def result(client, ident):
    inv = client.invocation(ident)
    return inv if inv["state"] in ("succeeded", "failed") else None


def test_async_round_trip_through_the_python_worker(node, mailer):
    User = supernode.asyncify(mailer.User, node=node.endpoint)
    client = supernode.Client(node.endpoint)
    try:
        ident = User.async_send_email("ann@example.com", "hi")
        inv = client.invocation(ident)
        assert inv["invocation"] == {"class": "mailer.User", "method": "send_email",
                                     "params": ["ann@example.com", "hi"]}
        done = wait_for(lambda: result(client, ident), 30, "the python worker")
        assert done["code"] == 200
        assert done["response"] == {"to": "ann@example.com", "subject": "hi",
                                    "greeting": "hello"}
        total = User.async_total(1, 2, 3)
        assert wait_for(lambda: result(client, total), 30, "total")["response"] == 6
        broken = User.async_broken()
        done = wait_for(lambda: result(client, broken), 30, "broken")
        assert done["code"] == 500 and "no such mailbox" in done["error"]
        # supernode.Retry is a retryable failure: it runs max_attempts times
        later = client.enqueue("mailer.User", "later", [], max_attempts=2, backoff=0)
        done = wait_for(lambda: result(client, later), 30, "the retries")
        assert done["code"] == 503 and done["attempts"] == 2 and "busy" in done["error"]
        # The wrapped class is still the class
        assert User().send_email("a", "b")["to"] == "a"
    finally:
        client.close()


def test_async_into_a_bucket_reaches_the_callback(node, mailer):
    receiver = Receiver()
    try:
        r = requests.post(node.url + "/batch", json={"callback_url": receiver.url,
                                                     "bucket_id": "mail", "batch_timeout": 100})
        assert r.status_code == 201, r.text
        User = supernode.asyncify(mailer.User, node=node.endpoint, bucket_id="mail")
        User.async_send_email("bob@example.com", "yo")
        wait_for(lambda: delivered_items(receiver), 30, "the commit")
        headers, raw = receiver.accepted()[0]
        check_signature(headers, raw, r.json()["secret"])
        item = json.loads(raw)["data"][0]
        assert item["code"] == 200 and item["response"]["to"] == "bob@example.com"
    finally:
        receiver.close()


def test_client_errors(node):
    client = supernode.Client(node.endpoint)
    try:
        with pytest.raises(supernode.Error) as error:
            client.enqueue("c.C", "m", [], bucket_id="missing")
        assert error.value.code == 404
        with pytest.raises(supernode.Error) as error:
            client.invocation("nope")
        assert error.value.code == 404
    finally:
        client.close()
