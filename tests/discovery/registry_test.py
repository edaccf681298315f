#!/usr/bin/python3
"""Nodes registering in etcd (docs/discovery.md), against a private etcd (tests/lib/etcd.py) read
through etcd's own JSON gateway, never through meshrun:

- a node with `discovery etcd` registers under /meshrun/MESH/nodes/NODE what it bound (address,
  port, channels, tls, version), on a lease granted with a TTL of 10 s, kept alive past the TTL;
  the first endpoint of the file is dead: the next one is tried;
- `up` registers every node of the process, on one lease;
- a node stopped by a signal revokes its lease (its key goes at once); one killed (SIGKILL) leaves
  a key that is gone within the TTL;
- etcd stopped for 3 s and started again with nothing stored (every lease lost): the node says so
  and registers again, on a new lease; etcd restarted with its data: the key stays, kept alive;
- an https endpoint is refused (by the checker) with the reason;
- a link goes where etcd says its target listens: a moved to another port than the file's (`up
  --only a` with its declared port taken), b's link follows it there, and again after a restart of a
  on yet another port.

    /usr/bin/python3 tests/discovery/registry_test.py path/to/meshrun

Skipped (exit 77) without the `etcd` binary (Debian's etcd-server).
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import STEP, expect, free_port, run_checks, wait_for  # noqa: E402
from etcd import Etcd, need_etcd  # noqa: E402
from nodes import Node, ask, write_mesh  # noqa: E402

TTL = 10


def mesh_text(etcd_url, pa, pb, dead_url):
    return f"""mesh disc
discovery etcd "{dead_url}"
discovery etcd "{etcd_url}"

node a at 127.0.0.1:{pa} {{
    on ping -> {{
        log "pinged {{value}}"
        ack "pong"
    }}
    on hello -> ack "hi"
}}
node b at 127.0.0.1:{pb} {{
    on signal -> {{
        send value to a/ping
        ack "sent"
    }}
}}
"""



def main():
    meshrun = sys.argv[1]
    need_etcd()
    etcd = Etcd()
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    pa, pb = free_port(), free_port()
    mesh = write_mesh(mesh_text(etcd.url, pa, pb, dead_url))
    key_a, key_b = "/meshrun/disc/nodes/a", "/meshrun/disc/nodes/b"
    state = {}

    def registers():
        node = state["a"] = Node(meshrun, mesh, "a", wait_port=pa)
        got = wait_for("a's key in etcd", lambda: etcd.get(key_a), STEP)
        value = json.loads(got[0])
        expect(value == {"mesh": "disc", "node": "a", "address": "127.0.0.1", "port": pa, "channels": ["ping", "hello"],
                         "tls": False, "version": value.get("version")}, f"the value registered: {value}")
        expect(isinstance(value["version"], str) and value["version"].count(".") == 2, f"the version: {value}")
        left, granted = etcd.ttl(got[1])
        expect(granted == TTL and 0 < left <= TTL, f"the lease: granted {granted} s, {left} s left")
        node.wait_for_line("registered a in etcd at " + etcd.url, STEP)
        expect(dead_url in node.log(), "the dead endpoint is named in the log:\n" + node.log())
        state["lease"] = got[1]

    def kept_alive():
        time.sleep(TTL + 2)  # past the TTL: only keepalives keep the key
        got = etcd.get(key_a)
        expect(got is not None and got[1] == state["lease"], f"a's key after {TTL + 2} s: {got}")
        left, _ = etcd.ttl(state["lease"])
        expect(left >= TTL - 4, f"the lease kept alive every third of the TTL: {left} s left")

    def etcd_restarted_with_its_data():
        etcd.restart()
        time.sleep(TTL / 3 + 1)
        got = etcd.get(key_a)
        expect(got is not None and got[1] == state["lease"], f"a's key after etcd's restart: {got}")

    def etcd_lost_everything():
        node = state["a"]
        etcd.restart(down_for=3, wipe=True)
        got = wait_for("a registered again", lambda: etcd.get(key_a), TTL)
        expect(got[1] != state["lease"], "a new lease")
        _, granted = etcd.ttl(got[1])
        expect(granted == TTL, f"the new lease's TTL: {granted}")
        node.wait_for_line("without a TTL); registering again", STEP)
        node.wait_for_line("registered in etcd again", STEP)
        state["lease"] = got[1]

    def stopped_revokes():
        node = state.pop("a")
        started = time.monotonic()
        expect(node.stop() == 0, "a stops with 0 on SIGTERM:\n" + node.log())
        wait_for("a's key gone after a stop", lambda: etcd.get(key_a) is None, 3)
        expect(etcd.ttl(state["lease"])[0] == -1, "the lease revoked")
        expect(time.monotonic() - started < 5, "the key went at the stop, not at the TTL")

    def up_registers_every_node():
        up = subprocess.Popen([meshrun, "up", mesh, "--color", "never"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            got_a = wait_for("a's key from up", lambda: etcd.get(key_a), STEP)
            got_b = wait_for("b's key from up", lambda: etcd.get(key_b), STEP)
            expect(got_a[1] == got_b[1], f"one lease for the process: {got_a[1]} and {got_b[1]}")
            expect(json.loads(got_b[0])["channels"] == ["signal"], f"b's channels: {got_b[0]}")
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(STEP)

    def killed_node_gone_within_ttl():
        node = Node(meshrun, mesh, "a", wait_port=pa)
        wait_for("a's key", lambda: etcd.get(key_a), STEP)
        node.proc.kill()
        killed = time.monotonic()
        node.stop()
        expect(etcd.get(key_a) is not None, "the key outlives a SIGKILL for a while (nobody revoked it)")
        wait_for("a's key gone after SIGKILL", lambda: etcd.get(key_a) is None, TTL + 2)
        expect(time.monotonic() - killed <= TTL + 1.5, f"gone within the TTL: {time.monotonic() - killed:.1f} s")

    def https_refused():
        tls_mesh = write_mesh(mesh_text("https://127.0.0.1:2379", pa, pb, etcd.url))
        r = subprocess.run([meshrun, "run", tls_mesh, "--node", "a", "--color", "never"], capture_output=True, text=True,
                           timeout=STEP)
        os.unlink(tls_mesh)
        expect(r.returncode == 1, f"exit {r.returncode}: {r.stderr}")
        expect("etcd over https is not supported yet [bad-url]" in r.stderr, f"the reason: {r.stderr}")
        expect(etcd.get(key_a) is None, "nothing registered")

    def links_follow_the_registry():
        blocker = socket.socket()  # a's declared port taken (bound, not listening: refused there)
        blocker.bind(("127.0.0.1", pa))
        ups = []
        try:
            def start_a():
                log = open(f"{mesh}.up{len(ups)}.log", "w+")
                ups.append((subprocess.Popen([meshrun, "up", mesh, "--only", "a", "--color", "never"], stdout=log,
                                             stderr=subprocess.STDOUT), log))
                got = wait_for("a's key from up --only a", lambda: etcd.get(key_a), STEP)
                port = json.loads(got[0])["port"]
                expect(port != pa, f"a moved off its declared port {pa}: {port}")
                return port

            def pinged(text):
                # A file of its own: a seek on the one the child writes to would move the child's offset.
                with open(ups[-1][1].name) as log:
                    return text in log.read()

            first = start_a()
            b = state["b"] = Node(meshrun, mesh, "b", wait_port=pb)
            reply = asyncio.run(ask(pb, "signal", "one"))
            expect(reply == "sent", f"b's reply: {reply!r}")
            wait_for(f"a, on port {first}, pinged by b", lambda: pinged("pinged one"), STEP)
            up, _ = ups[-1]
            up.send_signal(signal.SIGTERM)
            up.wait(STEP)
            second = start_a()  # a free port again: perhaps the same one, and b must find it all the same
            reply = asyncio.run(ask(pb, "signal", "two"))
            expect(reply == "sent", f"b's reply: {reply!r}")
            wait_for(f"a, restarted on port {second}, pinged by b", lambda: pinged("pinged two"), STEP + 5)
            expect(f":{pa}" not in b.log(), "b never went to the file's port:\n" + b.log())
        finally:
            blocker.close()
            for up, log in ups:
                if up.poll() is None:
                    up.kill()
                    up.wait()
                log.close()
                os.unlink(log.name)
            if "b" in state:
                state.pop("b").stop()

    try:
        failures = run_checks([
            ("a node registers what it bound, on a lease of 10 s, past a dead endpoint", registers),
            ("its lease is kept alive past the TTL", kept_alive),
            ("etcd restarted with its data: the key stays", etcd_restarted_with_its_data),
            ("etcd down 3 s and back with nothing: the node registers again", etcd_lost_everything),
            ("a stopped node revokes its lease: its key goes at once", stopped_revokes),
            ("up registers every node, on one lease", up_registers_every_node),
            ("a killed node's key is gone within the TTL", killed_node_gone_within_ttl),
            ("an https endpoint is refused at start", https_refused),
            ("a link goes where etcd says its target listens", links_follow_the_registry),
        ])
    finally:
        for name in ("a", "b"):
            if name in state:
                state[name].stop(signal.SIGKILL)
        etcd.close()
        os.unlink(mesh)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
