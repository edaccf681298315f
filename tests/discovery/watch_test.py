#!/usr/bin/python3
"""The process's view of etcd (docs/discovery.md, "Where a link connects"): one range over the
mesh's prefix, then one watch from the next revision.

Against a private etcd (tests/lib/etcd.py), with b running (it sends to a) and a not yet:
- b's view: itself known, no peer, the watch open at etcd's revision; a key put for a by hand is
  in b's view (peers_known 1, the revision etcd's) with no message sent, so through the watch, and
  its deletion too; b's own key deleted by hand is put back; values that are not meshrun's (not
  JSON, port 0, an address that is not a string) are said once and taken as no key;
- a running: a message through b reaches it; a's key then rewritten by hand to a port where
  nothing listens: b's open link to a ends at once, saying that a moved; a's own key put back: the
  next message reaches a again;
- etcd stopped: b's watch closes (watching 0) and b keeps what it knew; etcd back: watching again.

Against a stand-in for etcd's gateway (this file's FakeGateway): a watch cancelled for a
compaction is followed by a new range at once (no failure logged), which replaces the view (a,
in the first, is gone from the second), and the new watch starts at the revision after that
range's, not the old one's; the fleet's token (`secret env`) is not in
the value put.

    /usr/bin/python3 tests/discovery/watch_test.py path/to/meshrun

Skipped (exit 77) without the `etcd` binary (Debian's etcd-server).
"""

import asyncio
import base64
import http.server
import json
import os
import re
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import STEP, expect, free_port, run_checks, wait_for  # noqa: E402
from etcd import Etcd, b64, need_etcd  # noqa: E402
from nodes import Node, ask, write_mesh  # noqa: E402


def mesh_text(etcd_url, pa, pb):
    return f"""mesh watch
discovery etcd "{etcd_url}"

node a at 127.0.0.1:{pa} {{
    on ping -> {{
        log "pinged {{value}}"
        ack "pong"
    }}
}}
node b at 127.0.0.1:{pb} {{
    on signal -> {{
        send value to a/ping
        ack "sent"
    }}
}}
"""



def registry_metrics(port, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers),
                                timeout=STEP) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^meshrun_registry_(\w+)(?:\{[^}]*\})? (\S+)$", text, re.M)}


def status(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=STEP) as r:
        return json.loads(r.read())


class FakeGateway(http.server.ThreadingHTTPServer):
    """Answers as etcd's gateway does, enough for one process: a lease, puts, keepalives, a range
    at revision 5 (holding a) then 9 (empty), and watches: the first created then cancelled for a compaction, the
    next created and held open until close()."""

    daemon_threads = True

    def __init__(self, prefix, node_value):
        self.prefix, self.node_value = prefix, node_value
        self.ranges, self.watches = [], []  # the revision each range gave; each watch's start_revision
        self.puts = []  # the values put, decoded
        self.closing = threading.Event()
        super().__init__(("127.0.0.1", 0), FakeHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.closing.set()
        self.shutdown()
        self.server_close()


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, body):
        data = (json.dumps(body) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self):
        gw = self.server
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        header = {"cluster_id": "1", "member_id": "1", "raft_term": "1"}
        if self.path == "/v3/lease/grant":
            self.answer({"header": header, "ID": "7", "TTL": "10"})
        elif self.path == "/v3/lease/keepalive":
            self.answer({"result": {"header": header, "ID": "7", "TTL": "10"}})
        elif self.path in ("/v3/kv/txn", "/v3/kv/put", "/v3/lease/revoke"):
            for op in body.get("success", []):
                gw.puts.append(base64.b64decode(op["request_put"]["value"]).decode())
            self.answer({"header": header, "succeeded": True})
        elif self.path == "/v3/kv/range":
            revision = 5 if not gw.ranges else 9
            if "range_end" in body:
                if not gw.ranges:
                    # The first listing after b registered (it says a key of its own gone only once
                    # registered, which a slow start, as under the sanitizers, could finish later).
                    deadline = time.monotonic() + STEP
                    while not gw.puts and time.monotonic() < deadline:
                        time.sleep(0.02)
                    time.sleep(0.5)
                gw.ranges.append(revision)
            # a at revision 5; gone from the second range (its key deleted, then compacted away).
            kvs = [{"key": b64(gw.prefix + "a"), "value": b64(json.dumps(gw.node_value)), "mod_revision": "3"}]
            if revision == 9:
                kvs = []
            self.answer({"header": {**header, "revision": str(revision)}, "kvs": kvs, "count": str(len(kvs))})
        elif self.path == "/v3/watch":
            create = body.get("create_request", {})
            gw.watches.append(int(create.get("start_revision", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.chunk({"result": {"header": {**header, "revision": "9"}, "created": True}})
            if len(gw.watches) == 1:
                self.chunk({"result": {"header": header, "canceled": True, "compact_revision": "8"}})
                self.wfile.write(b"0\r\n\r\n")
                return
            gw.closing.wait(60)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


def main():
    meshrun = sys.argv[1]
    need_etcd()
    etcd = Etcd()
    pa, pb, metrics_b = free_port(), free_port(), free_port()
    mesh = write_mesh(mesh_text(etcd.url, pa, pb))
    key_a = "/meshrun/watch/nodes/a"
    state = {}

    def view():
        return registry_metrics(metrics_b)

    def b_watches():
        b = state["b"] = Node(meshrun, mesh, "b", args=("--metrics", str(metrics_b)), wait_port=pb)
        b.wait_for_line("registered b in etcd", STEP)
        revision = etcd.revision()
        wait_for(f"b's view at etcd's revision {revision}", lambda: view().get("watch_revision") == revision, STEP)
        f = view()
        expect(f.get("watching") == 1 and f.get("nodes_known") == 1 and f.get("peers_known") == 0, f"b's view: {f}")
        registry = status(pb)["registry"]
        expect(registry["watching"] is True and registry["revision"] == revision and registry["peers_known"] == 0,
               f"b's status page: {registry}")

    def put_and_delete_seen():
        value = {"mesh": "watch", "node": "a", "address": "127.0.0.1", "port": pa, "channels": ["ping"]}
        etcd.call("/v3/kv/put", {"key": b64(key_a), "value": b64(json.dumps(value))})
        wait_for("a's key in b's view", lambda: view().get("peers_known") == 1, STEP)
        expect(view().get("watch_revision") == etcd.revision(), f"b's view at etcd's revision: {view()}")
        etcd.call("/v3/kv/deleterange", {"key": b64(key_a)})
        wait_for("a's key gone from b's view", lambda: view().get("peers_known") == 0, STEP)
        expect(view().get("nodes_known") == 1, f"b alone known: {view()}")

    def own_key_put_back():
        key_b = "/meshrun/watch/nodes/b"
        etcd.call("/v3/kv/deleterange", {"key": b64(key_b)})
        wait_for("b's key put back", lambda: etcd.get(key_b), STEP)
        state["b"].wait_for_line("the key of `b` went from etcd; putting it again", STEP)
        # A value that is not meshrun's: said once, taken as no key.
        for junk in ("garbage", json.dumps({"address": "127.0.0.1", "port": 0}), json.dumps({"address": ["x"], "port": 1})):
            etcd.call("/v3/kv/put", {"key": b64(key_a), "value": b64(junk)})
        wait_for("the revision seen", lambda: view().get("watch_revision") == etcd.revision(), STEP)
        expect(view().get("peers_known") == 0, f"no address known for a: {view()}")
        log = state["b"].log()
        expect(log.count("holds no address and port meshrun can use") == 1, "the bad values said once:\n" + log)
        etcd.call("/v3/kv/deleterange", {"key": b64(key_a)})

    def moved_ends_the_open_link():
        a = state["a"] = Node(meshrun, mesh, "a", wait_port=pa)
        wait_for("a in b's view", lambda: view().get("peers_known") == 1, STEP)
        expect(asyncio.run(ask(pb, "signal", "one")) == "sent", "b takes the message")
        a.wait_for_line("pinged one", STEP)
        own = etcd.get(key_a)
        nowhere = free_port()
        moved = {"mesh": "watch", "node": "a", "address": "127.0.0.1", "port": nowhere, "channels": ["ping"]}
        etcd.call("/v3/kv/put", {"key": b64(key_a), "value": b64(json.dumps(moved))})

        def link_moved():
            link = status(pb)["links"][0]
            return link if link["state"] != "up" and "moved" in link.get("why", "") else None
        link = wait_for("b's link to a ended for the move", link_moved, STEP)
        expect(link["why"] == "a/ping moved (etcd gives another address)", f"why: {link}")
        # a's own value back (on its lease): the next message goes there again.
        etcd.call("/v3/kv/put", {"key": b64(key_a), "value": b64(own[0]), "lease": str(own[1])})
        expect(asyncio.run(ask(pb, "signal", "two")) == "sent", "b takes the next message")
        a.wait_for_line("pinged two", STEP)

    def etcd_down_keeps_the_view():
        etcd.stop()
        wait_for("b's watch closed", lambda: view().get("watching") == 0, STEP)
        expect(view().get("peers_known") == 1, f"a still known with etcd down: {view()}")
        expect(asyncio.run(ask(pb, "signal", "three")) == "sent", "b takes a message with etcd down")
        state["a"].wait_for_line("pinged three", STEP)
        etcd.start()
        wait_for("b watching again", lambda: view().get("watching") == 1, 15)
        state["b"].wait_for_line("watching etcd again", STEP)

    def compaction_lists_again():
        gateway = FakeGateway("/meshrun/watch/nodes/", {"address": "127.0.0.1", "port": pa})
        # With a secret, which the value put never carries.
        token = "s3cr3t-" + os.urandom(8).hex()
        fake = write_mesh(mesh_text(gateway.url, pa, pb).replace("\n", "\nsecret env WATCH_TOKEN\n", 1))
        b = None

        def view():
            return registry_metrics(metrics_b, token)
        try:
            b = Node(meshrun, fake, "b", args=("--metrics", str(metrics_b)), wait_port=pb, env={"WATCH_TOKEN": token})
            wait_for("a second watch", lambda: len(gateway.watches) >= 2, STEP)
            expect(gateway.ranges[:2] == [5, 9], f"the ranges: {gateway.ranges}")
            expect(gateway.watches[:2] == [6, 10], f"each watch from the revision after its range: {gateway.watches}")
            wait_for("b watching", lambda: view().get("watching") == 1, STEP)
            expect(view().get("watch_revision") == 9, f"b's view at revision 9: {view()}")
            expect(view().get("peers_known") == 0 and view().get("nodes_known") == 0, f"a gone from b's view: {view()}")
            expect("watch on etcd ended" not in b.log(), "a compaction is no failure (listed again at once):\n" + b.log())
            # b's own key is in neither range: put again after each (a key of its own gone).
            expect(gateway.puts and all(json.loads(p)["node"] == "b" for p in gateway.puts), f"b's values put: {gateway.puts}")
            expect(all(token not in p for p in gateway.puts), f"the token is not in the values put: {gateway.puts}")
            b.wait_for_line("the key of `b` went from etcd; putting it again", STEP)
        finally:
            if b:
                b.stop()
            gateway.close()
            os.unlink(fake)

    try:
        failures = run_checks([
            ("b's view of etcd: itself, watched at etcd's revision", b_watches),
            ("a key put and deleted is seen through the watch", put_and_delete_seen),
            ("b's own key deleted is put back; bad values said once", own_key_put_back),
            ("a key that moves ends b's open link to a", moved_ends_the_open_link),
            ("etcd down: the view kept, the watch made again", etcd_down_keeps_the_view),
        ])
        for name in ("a", "b"):
            if name in state:
                state.pop(name).stop()
        failures += run_checks([("a watch cancelled for a compaction: listed again", compaction_lists_again)])
    finally:
        for node in state.values():
            node.stop()
        etcd.close()
        os.unlink(mesh)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
