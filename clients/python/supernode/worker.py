"""Run what is enqueued for a class:

    python3 -m supernode.worker --node tcp://127.0.0.1:7500 --class mailer.User

imports mailer.User, says hello to the node as a worker of "mailer.User" and runs each
invocation it is sent: a static or class method is called on the class, any other
method on a new instance. The return value is the response (code 200); an exception
is a failure (code 500), retried later when it is supernode.Retry.
"""
import argparse
import concurrent.futures
import importlib
import inspect
import os
import sys
import threading
import time
import traceback

import msgpack
import zmq

from . import DEFAULT_NODE, Client, Error, Retry


def load(path):
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise SystemExit("supernode.worker: --class must be module.Class, not %r" % path)
    cls = importlib.import_module(module_name)
    for part in class_name.split("."):
        cls = getattr(cls, part)
    return cls


def run(cls, work):
    """Run one piece of work; returns the result fields."""
    call = work["invocation"]
    method = call["method"]
    try:
        if method.startswith("_"):
            raise AttributeError("%s is not a public method" % method)
        static = inspect.getattr_static(cls, method)
        target = getattr(cls, method)
        if not isinstance(static, (staticmethod, classmethod)):
            target = getattr(cls(), method)
        args = call.get("params", call.get("args", []))
        if isinstance(args, dict):
            response = target(**args)
        else:
            response = target(*args)
        try:
            msgpack.packb(response, use_bin_type=False)
        except (TypeError, ValueError):
            response = repr(response)
        return {"code": 200, "response": response}
    except Retry as error:
        return {"code": 503, "error": str(error) or "retry", "retryable": True}
    except Exception as error:  # the method's failure is the invocation's outcome
        return {"code": 500, "error": "".join(
            traceback.format_exception_only(type(error), error)).strip()}


class Worker:
    def __init__(self, node, classes, capacity, server_key=None, cert=None):
        self.client = Client(node, server_key=server_key, cert=cert)
        self.classes = classes
        self.capacity = capacity
        self.pool = concurrent.futures.ThreadPoolExecutor(capacity)
        # Finished work comes back through an inproc socket, so that the main thread
        # alone touches the DEALER
        self.done_endpoint = "inproc://supernode-worker-%d-%d" % (os.getpid(), id(self))
        self.done = zmq.Context.instance().socket(zmq.PULL)
        self.done.bind(self.done_endpoint)
        self.local = threading.local()
        self.heartbeat = 1.0
        self.beat_rid = None

    def hello(self):
        # A node that is not up yet, or slow to answer (or, over CURVE, one that does
        # not let this worker in), is asked again until it answers, as the CLI's worker does
        while True:
            try:
                reply = self.client.call("worker.hello", classes=list(self.classes),
                                         capacity=self.capacity, name="python-%d" % os.getpid())
                break
            except Error as error:
                if error.code is not None:
                    raise
                print("supernode.worker: %s; saying hello again" % error, file=sys.stderr,
                      flush=True)
        self.heartbeat = reply.get("heartbeat", 1000) / 1000.0
        self.next_beat = time.monotonic() + self.heartbeat

    def finish(self, ident, result):
        if not hasattr(self.local, "push"):
            self.local.push = zmq.Context.instance().socket(zmq.PUSH)
            self.local.push.connect(self.done_endpoint)
        self.local.push.send(msgpack.packb({"id": ident, "result": result}, use_bin_type=False))

    def start(self, work):
        cls = self.classes[work["invocation"]["class"]]
        self.pool.submit(lambda: self.finish(work["id"], run(cls, work)))

    def loop(self):
        self.hello()
        poller = zmq.Poller()
        poller.register(self.client.socket, zmq.POLLIN)
        poller.register(self.done, zmq.POLLIN)
        while True:
            while self.client.pushed:
                self.start(self.client.pushed.pop(0))
            wait = max(0.0, self.next_beat - time.monotonic())
            events = dict(poller.poll(int(wait * 1000) + 1))
            if self.client.socket in events:
                message = msgpack.unpackb(self.client.socket.recv(), raw=False)
                if message.get("op") == "work":
                    self.start(message)
                elif message.get("rid") == self.beat_rid and message.get("code") == 404:
                    self.hello()  # the node restarted and forgot us
            if self.done in events:
                done = msgpack.unpackb(self.done.recv(), raw=False)
                try:
                    self.client.call("worker.result", id=done["id"], **done["result"])
                except Exception as error:  # the node took it back already
                    print("supernode.worker: result of %s: %s" % (done["id"], error),
                          file=sys.stderr)
            # Whatever else goes on, the node hears from us every interval
            if time.monotonic() >= self.next_beat:
                self.beat_rid = self.client.send("worker.heartbeat")
                self.next_beat = time.monotonic() + self.heartbeat


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m supernode.worker")
    parser.add_argument("--node", default=DEFAULT_NODE)
    parser.add_argument("--class", dest="classes", action="append", required=True,
                        help="module.Class to run (repeatable)")
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--server-key", help="the node's CURVE public key, or its certificate file")
    parser.add_argument("--curve-cert", help="this worker's certificate file (and FILE_secret)")
    args = parser.parse_args(argv)
    if (args.server_key is None) != (args.curve_cert is None):
        parser.error("--server-key and --curve-cert go together")
    sys.path.insert(0, os.getcwd())
    classes = {path: load(path) for path in args.classes}
    print("supernode.worker: running %s for %s" % (", ".join(classes), args.node),
          file=sys.stderr, flush=True)
    try:
        Worker(args.node, classes, args.capacity, args.server_key, args.curve_cert).loop()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
