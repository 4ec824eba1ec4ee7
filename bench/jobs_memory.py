#!/usr/bin/python3
"""Memory of a node that ran many small jobs, with a given --keep-finished-ms.

    bench/jobs_memory.py JOBS KEEP_MS

Starts build/supernode, makes JOBS jobs of one task each over 200 simulated agents
(4 connections of 50 ids) that answer every task at once, waits for every job to
finish, then for the window to pass (a finished job read answers 404), and prints
VmRSS and RssAnon of the node from /proc/PID/status after the jobs finished and at
the end, and the CPU time the node spent from then on, over the jobs evicted: with
the node otherwise idle, that is what eviction costs.
"""
import os
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from harness import Client, Node, wait_for  # noqa: E402

AGENTS_PER_CONNECTION, CONNECTIONS = 50, 4


def memory(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: fields[k].strip() for k in ("VmRSS", "RssAnon")}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime, fields 14 and 15 of the line
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    jobs, keep = int(sys.argv[1]), int(sys.argv[2])
    node = Node(extra=["--keep-finished-ms", str(keep)]).start()
    try:
        agents = []
        ids = []
        for c in range(CONNECTIONS):
            agent = Client(node.endpoint)
            for a in range(AGENTS_PER_CONNECTION):
                mac = "02:00:00:00:%02x:%02x" % (c, a)
                assert agent.call("agent.hello", id=mac, heartbeat=60000)["code"] == 200
                ids.append(mac)
            agents.append(agent)
        producer = Client(node.endpoint)
        poller = zmq.Poller()
        poller.register(producer.sock, zmq.POLLIN)
        for agent in agents:
            poller.register(agent.sock, zmq.POLLIN)
        sent = created = results = 0
        first = None
        start = time.monotonic()
        while results < jobs:
            while sent < jobs and sent - created < 500:
                producer.send("job.create", destinations=[ids[sent % len(ids)]],
                              message={"method": "post",
                                       "resource": f"/bench/{sent % len(ids)}"},
                              options={"timeout": 600000})
                sent += 1
            events = dict(poller.poll(60000))
            assert events, "no progress for 60 s"
            while producer.sock.poll(0):
                reply = msgpack.unpackb(producer.sock.recv(), raw=False)
                assert reply["code"] == 200, reply
                first = first or reply["job"]["id"]
                created += 1
            for agent in agents:
                while agent.sock.poll(0):
                    message = msgpack.unpackb(agent.sock.recv(), raw=False)
                    if message.get("op") == "agent.work":
                        # The resource names the destination: /bench/<index>
                        index = int(message["resource"].rsplit("/", 1)[1])
                        agent.send("agent.result", id=ids[index], task=message["id"], code=200)
                    else:
                        assert message["code"] == 200, message
                        results += 1
        took = time.monotonic() - start
        after = memory(node.proc.pid)
        cpu = cpu_seconds(node.proc.pid)
        if keep < 3600000:
            wait_for(lambda: producer.call("job.get", id=first)["code"] == 404, 120,
                     "the first job to be evicted")
            wait_for(lambda: producer.call("job.list", limit=1)["jobs"] == [], 120,
                     "every job to be evicted")
        end = memory(node.proc.pid)
        cpu = cpu_seconds(node.proc.pid) - cpu
        print(f"jobs={jobs} keep_ms={keep} seconds={took:.1f} after_jobs={after} end={end}"
              f" evict_cpu_s={cpu:.2f} per_job_us={cpu * 1e6 / jobs:.1f}")
        node.stop()
    finally:
        node.cleanup()


if __name__ == "__main__":
    main()
