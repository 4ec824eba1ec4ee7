"""supernode: a Python client for supernode's queue (Debian's python3-zmq and
python3-msgpack only).

    import supernode
    from mailer import User

    User = supernode.asyncify(User, node="tcp://127.0.0.1:7500")
    invocation_id = User.async_send_email("ann@example.com", "hello")

async_<method>(*args) enqueues {class: "mailer.User", method: "<method>", params: [args]}
and returns the invocation's id once the node has it on disk. A worker started with
`python3 -m supernode.worker --node ENDPOINT --class mailer.User` runs it.

A node whose client endpoint is CURVE (supernode run --curve-cert) needs
server_key (its public key, Z85 text or its public certificate file) and cert
(this client's certificate file, with FILE_secret beside it, as
`supernode keygen FILE` writes them) on Client, asyncify and the worker
(--server-key, --curve-cert).
"""
import os

import msgpack
import zmq
import zmq.auth

__all__ = ["Client", "Error", "Retry", "asyncify"]

DEFAULT_NODE = "tcp://127.0.0.1:7500"


class Error(Exception):
    """The node refused a request, or did not answer in time."""

    def __init__(self, code, message):
        super().__init__("%s %s" % (code, message))
        self.code = code
        self.message = message


class Retry(Exception):
    """Raise in a method run by a worker to have it retried later (with backoff)."""


def _curve_key(text_or_path):
    """A CURVE public key given as 40 characters of Z85 or as a certificate file."""
    if len(text_or_path) == 40 and not os.path.exists(text_or_path):
        return text_or_path.encode()
    public, _ = zmq.auth.load_certificate(text_or_path)
    return public


def curve_setup(socket, server_key, cert):
    """Make socket a CURVE client of server_key with the certificate cert (FILE,
    with FILE_secret beside it), before it connects."""
    if (server_key is None) != (cert is None):
        raise ValueError("server_key and cert go together")
    if server_key is None:
        return
    public, secret = zmq.auth.load_certificate(cert + "_secret")
    if not secret:
        raise ValueError("%s_secret holds no secret key" % cert)
    socket.curve_serverkey = _curve_key(server_key)
    socket.curve_publickey = public
    socket.curve_secretkey = secret


class Client:
    """One DEALER to a node's client endpoint, speaking msgpack {op, rid, ...}.
    With server_key and cert, over CURVE (see the module's doc)."""

    def __init__(self, node=DEFAULT_NODE, timeout=10.0, server_key=None, cert=None):
        self.node = node
        self.timeout = timeout
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        # A send waits at most the timeout: a connection the node refused (a CURVE key
        # it does not allow) leaves no link, and a send would block for ever
        self.socket.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        curve_setup(self.socket, server_key, cert)
        self.socket.connect(node)
        self.rid = 0
        self.pushed = []  # work that arrived while waiting for a reply

    def send(self, op, **fields):
        self.rid += 1
        try:
            self.socket.send(msgpack.packb(dict(fields, op=op, rid=self.rid), use_bin_type=False))
        except zmq.Again:
            raise Error(None, "cannot send to %s within %s s: no link to the node (refused, "
                              "or not up)" % (self.node, self.timeout))
        return self.rid

    def receive(self, timeout):
        """The next message, or None when none came within timeout seconds."""
        if not self.socket.poll(int(timeout * 1000)):
            return None
        return msgpack.unpackb(self.socket.recv(), raw=False)

    def call(self, op, **fields):
        """Send one request and return its reply; raises Error unless it is 2xx."""
        rid = self.send(op, **fields)
        while True:
            reply = self.receive(self.timeout)
            if reply is None:
                raise Error(None, "no reply from %s within %s s" % (self.node, self.timeout))
            if reply.get("op") == "work":
                self.pushed.append(reply)
            elif reply.get("rid") in (rid, 0):
                if not 200 <= reply.get("code", 0) < 300:
                    raise Error(reply.get("code"), reply.get("error", ""))
                return reply

    def enqueue(self, class_path, method, params, bucket_id=None, data=None, token=None,
                **options):
        """Queue one invocation; returns its id."""
        fields = dict(options, token=token or os.urandom(16).hex(),
                      invocation={"class": class_path, "method": method, "params": list(params)})
        if bucket_id is not None:
            fields["bucket_id"] = bucket_id
        if data is not None:
            fields["data"] = data
        return self.call("enqueue", **fields)["id"]

    def invocation(self, ident):
        """The state of an invocation, with its code and response once finished."""
        return self.call("invocation", id=ident)["invocation"]

    def close(self):
        self.socket.close()


def class_path(cls):
    """The import path a worker finds cls by: "module.Class"."""
    return "%s.%s" % (cls.__module__, cls.__qualname__)


def asyncify(cls, node=DEFAULT_NODE, bucket_id=None, client=None, server_key=None, cert=None):
    """A subclass of cls whose async_<method>(*args) enqueues <method>(*args) for a
    worker and returns the invocation id, for every public method of cls. server_key
    and cert: for a node whose client endpoint is CURVE."""
    path = class_path(cls)
    shared = {"client": client}

    def connection():
        if shared["client"] is None:
            shared["client"] = Client(node, server_key=server_key, cert=cert)
        return shared["client"]

    def make(name):
        def enqueue(*args):
            return connection().enqueue(path, name, args, bucket_id=bucket_id)
        enqueue.__name__ = "async_" + name
        enqueue.__doc__ = "Enqueue %s.%s(*args); returns the invocation id." % (path, name)
        return staticmethod(enqueue)

    members = {"async_" + name: make(name) for name in dir(cls)
               if not name.startswith("_") and callable(getattr(cls, name))}
    members["__module__"] = cls.__module__
    members["__qualname__"] = cls.__qualname__
    return type(cls.__name__, (cls,), members)
