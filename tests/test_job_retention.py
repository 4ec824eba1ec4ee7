"""Retention of finished jobs on a real node with a short --keep-finished-ms: a finished
job leaves memory after the window (404 with the reason over HTTP and WebSocket), a
watched one cleanly, a running one never, and a restart does not bring one back."""
import json

import requests
import websocket

from harness import SLOW, Node, wait_for
from test_jobs import MACS, Agent, post_job, ws_close_code, ws_url

KEEP_MS = 300


def status(node, path):
    r = requests.get(node.url + path, timeout=10 * SLOW)
    return r.status_code, r.json()


def test_finished_jobs_leave_memory_after_the_window_and_stay_gone():
    node = Node(extra=["--keep-finished-ms", str(KEEP_MS)]).start()
    try:
        # A job whose agent never comes: it runs until its timeout
        running = post_job(node, {"destinations": [MACS[2]],
                                  "message": {"method": "get", "resource": "/r"},
                                  "options": {"timeout": 600000}})
        agent = Agent(node, MACS[0])
        done = post_job(node, {"destinations": [MACS[0]],
                               "message": {"method": "post", "resource": "/d"},
                               "options": {"timeout": 600000}})
        ws = websocket.create_connection(ws_url(node, f"/jobs/{done['id']}/ws"),
                                         timeout=30 * SLOW)
        assert json.loads(ws.recv())["resource"] == "/jobs"
        every = websocket.create_connection(ws_url(node, "/jobs/ws"), timeout=30 * SLOW)
        assert json.loads(every.recv())["resource"] == "/jobs/ws"
        work = agent.work()
        assert agent.result(work["id"], 200, {"ok": 1})["code"] == 200
        # The watcher sees it finish
        while True:
            message = json.loads(ws.recv())
            if message["resource"] == "/jobs" and message["data"]["status"] == "resolved":
                break
        # Then it is evicted, with its task
        code, body = wait_for(
            lambda: (lambda r: r if r[0] == 404 else None)(status(node, f"/jobs/{done['id']}")),
            timeout=30, what="the finished job to be evicted")
        reason = f"finished more than {KEEP_MS} ms ago (--keep-finished-ms)"
        assert reason in body["error"], body
        code, body = status(node, f"/tasks/{work['id']}")
        assert code == 404 and reason in body["error"], body
        # A late result for its task is answered as for a task unknown
        late = agent.result(work["id"], 200, {})
        assert late["code"] == 404 and "no task" in late["error"], late
        # The WebSocket open on it was told as it left, and closed with 4404
        while True:
            message = json.loads(ws.recv())
            if "error" in message:
                break
            assert message["resource"] in ("/jobs", "/jobs/update"), message
        assert f"left memory: it finished more than {KEEP_MS} ms ago" in message["error"]
        assert ws_close_code(ws) == 4404
        # One on every job stays open, is not shown the job gone, and goes on
        later = post_job(node, {"destinations": [MACS[1]],
                                "message": {"method": "get", "resource": "/later"},
                                "options": {"timeout": 600000}})
        while True:
            message = json.loads(every.recv())
            assert "error" not in message, message
            if message["resource"] == "/jobs" and message["data"]["id"] == later["id"]:
                break
        every.close()
        # A new WebSocket on it gets the reason and 4404
        again = websocket.create_connection(ws_url(node, f"/jobs/{done['id']}/ws"),
                                            timeout=30 * SLOW)
        assert reason in json.loads(again.recv())["error"]
        assert ws_close_code(again) == 4404
        again.close()
        ws.close()
        # The running job, older than the window by now, stays and is listed alone
        code, body = status(node, f"/jobs/{running['id']}")
        assert code == 200 and body["status"] == "created", body
        listed = [job["id"] for job in status(node, "/jobs")[1]["jobs"]]
        assert listed == [later["id"], running["id"]]
        agent.close()
        node.stop()

        # A restart does not bring the finished job back; the running one is there
        node.start()
        assert status(node, f"/jobs/{done['id']}")[0] == 404
        assert status(node, f"/jobs/{running['id']}")[0] == 200
        node.stop()
        # The job is in the log all along: a window that covers it loads it again
        node.extra = []
        node.start()
        code, body = status(node, f"/jobs/{done['id']}")
        assert code == 200 and body["status"] == "resolved", body
        node.stop()
    finally:
        node.cleanup()
