#!/usr/bin/python3
"""`meshrun ls` (docs/discovery.md), against a private etcd (tests/lib/etcd.py), what it says
checked against etcd's own gateway:

- two nodes of a file of three up (each its own `run`): ls lists both, with the address and
  port each bound, its channels, and its lease's TTL, and names the third as missing; the same
  in --format json, parsed; a key under the prefix of no declared node is listed as such;
- no endpoint answers: exit 1, each endpoint named; a file without `discovery`, or with errors:
  exit 2, nothing asked;
- the registry in b's /metrics (passing `promtool check metrics`): registered, the lease's TTL
  left, no error, the watch open at etcd's revision, the nodes known (a and b; the key of no
  declared node held no address) with a the one peer, and a message through b's link to a; etcd stopped: the
  watch closed, errors counted, b still registered (its lease runs), a still known.

    /usr/bin/python3 tests/discovery/ls_test.py path/to/meshrun

Skipped (exit 77) without the `etcd` binary (Debian's etcd-server).
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import STEP, expect, free_port, run_checks, wait_for  # noqa: E402
from etcd import Etcd, b64, need_etcd  # noqa: E402
from nodes import Node, ask, write_mesh  # noqa: E402

TTL = 10


def mesh_text(urls, pa, pb, pc):
    lines = "".join(f'discovery etcd "{u}"\n' for u in urls)
    return f"""mesh lsm
{lines}
node a at 127.0.0.1:{pa} {{
    on ping -> ack "pong"
    on hello -> ack "hi"
}}
node b at 127.0.0.1:{pb} {{
    on signal -> {{
        send value to a/ping
        ack "sent"
    }}
}}
node c at 127.0.0.1:{pc} {{
    on mode -> ack "ok"
}}
"""



def main():
    meshrun = sys.argv[1]
    need_etcd()
    etcd = Etcd()
    pa, pb, pc = free_port(), free_port(), free_port()
    mesh = write_mesh(mesh_text([etcd.url], pa, pb, pc))
    state = {"metrics": free_port()}

    def ls(*args, file=None):
        return subprocess.run([meshrun, "ls", file or mesh, *args], capture_output=True, text=True, timeout=STEP + 10)

    def two_up():
        state["a"] = Node(meshrun, mesh, "a", wait_port=pa)
        state["b"] = Node(meshrun, mesh, "b", args=("--metrics", str(state["metrics"])), wait_port=pb)
        for n in ("a", "b"):
            wait_for(f"{n}'s key in etcd", lambda: etcd.get(f"/meshrun/lsm/nodes/{n}"), STEP)

    def lists_text():
        r = ls()
        expect(r.returncode == 0, f"ls exits {r.returncode}: {r.stdout}{r.stderr}")
        lines = r.stdout.splitlines()
        expect(lines[0] == f"mesh lsm in etcd at {etcd.url}: 2 of 3 nodes declared registered", f"the first line: {r.stdout}")
        expect(lines[1].split() == ["NODE", "ADDRESS", "PORT", "CHANNELS", "TLS", "LEASE"], f"the header: {r.stdout}")
        rows = {line.split()[0]: line.split() for line in lines[2:] if not line.startswith("missing")}
        expect(sorted(rows) == ["a", "b"], f"the nodes listed: {r.stdout}")
        expect(rows["a"][1:5] == ["127.0.0.1", str(pa), "ping,hello", "no"], f"a's row: {rows['a']}")
        expect(rows["b"][1:5] == ["127.0.0.1", str(pb), "signal", "no"], f"b's row: {rows['b']}")
        left = int(rows["a"][5])
        expect(0 < left <= TTL and rows["a"][6:] == ["s", "left", "of", str(TTL)], f"a's lease: {rows['a']}")
        expect(lines[-1] == "missing: c (declared in the file, not registered)", f"the missing line: {r.stdout}")

    def lists_json():
        r = ls("--format", "json")
        expect(r.returncode == 0, f"ls --format json exits {r.returncode}: {r.stdout}{r.stderr}")
        out = json.loads(r.stdout)
        expect(out["mesh"] == "lsm" and out["etcd"] == etcd.url and out["missing"] == ["c"], f"ls's JSON: {out}")
        nodes = {n["node"]: n for n in out["nodes"]}
        expect(sorted(nodes) == ["a", "b"], f"the nodes: {out}")
        a = nodes["a"]
        expect(a["address"] == "127.0.0.1" and a["port"] == pa and a["channels"] == ["ping", "hello"] and a["tls"] is False
               and a["declared"] is True, f"a: {a}")
        lease = etcd.get("/meshrun/lsm/nodes/a")[1]
        expect(a["lease"] == str(lease), f"a's lease {a['lease']}, etcd says {lease}")
        expect(a["granted_ttl"] == TTL and 0 < a["ttl"] <= TTL, f"a's TTL: {a}")
        expect(nodes["b"]["lease"] != a["lease"], "two processes, two leases")
        expect(isinstance(a["version"], str), f"a's version: {a}")

    def undeclared_key():
        etcd.call("/v3/kv/put", {"key": b64("/meshrun/lsm/nodes/zed"), "value": b64("not json")})
        try:
            r = ls()
            expect(r.returncode == 0, f"ls exits {r.returncode}: {r.stderr}")
            row = [line for line in r.stdout.splitlines() if line.startswith("zed")]
            expect(len(row) == 1 and "(not in the file)" in row[0] and row[0].rstrip().endswith("none"),
                   f"zed's row: {r.stdout}")
            out = json.loads(ls("--format", "json").stdout)
            zed = [n for n in out["nodes"] if n["node"] == "zed"]
            expect(zed == [{"node": "zed", "lease": "0", "ttl": -1, "granted_ttl": 0, "declared": False, "valid": False}],
                   f"zed: {zed}")
            expect("(a value not meshrun's)" in row[0], f"zed's row marks its value: {row[0]}")
            # Hostile values: fields of the wrong type left out of the JSON, control characters
            # made visible and long cells cut in the table.
            hostile = {"address": "\x1b]0;pwned\x07" + "x" * 100, "port": 70000, "channels": "in", "tls": 1}
            etcd.call("/v3/kv/put", {"key": b64("/meshrun/lsm/nodes/zed"), "value": b64(json.dumps(hostile))})
            r = ls()
            expect("\x1b" not in r.stdout and "\x07" not in r.stdout, f"no raw control character: {r.stdout!r}")
            row = [line for line in r.stdout.splitlines() if line.startswith("zed")]
            expect(len(row) == 1 and "\\x1b]0;pwned\\x07" in row[0] and "..." in row[0] and len(row[0]) < 160,
                   f"zed's row: {row}")
            zed = [n for n in json.loads(ls("--format", "json").stdout)["nodes"] if n["node"] == "zed"][0]
            expect(zed["valid"] is False and "port" not in zed and "channels" not in zed and "tls" not in zed,
                   f"zed's fields of the wrong type left out: {zed}")
            expect(all(n["valid"] for n in json.loads(ls("--format", "json").stdout)["nodes"] if n["node"] != "zed"),
                   "meshrun's own values valid")
        finally:
            etcd.call("/v3/kv/deleterange", {"key": b64("/meshrun/lsm/nodes/zed")})

    def none_answers():
        dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
        dead_mesh = write_mesh(mesh_text(dead, pa, pb, pc))
        try:
            r = ls(file=dead_mesh)
        finally:
            os.unlink(dead_mesh)
        expect(r.returncode == 1, f"exit {r.returncode}: {r.stdout}{r.stderr}")
        expect(r.stdout == "", f"nothing on stdout: {r.stdout}")
        expect("no etcd endpoint answered" in r.stderr and all(f"{u}: Connection refused" in r.stderr for u in dead),
               f"each endpoint named: {r.stderr}")

    def usage():
        plain = write_mesh("mesh p\nnode a at 127.0.0.1:1 {\n    on x -> ack \"y\"\n}\n")
        broken = write_mesh(f'mesh p\ndiscovery etcd "{etcd.url}"\nnode a at 127.0.0.1:1 {{\n    on x -> ack nope(\n}}\n')
        try:
            r = ls(file=plain)
            expect(r.returncode == 2 and "has no `discovery etcd" in r.stderr, f"without discovery: {r.returncode} {r.stderr}")
            r = ls(file=broken)
            expect(r.returncode == 2 and "not listed" in r.stderr, f"with errors: {r.returncode} {r.stderr}")
            r = ls("--format", "yaml")
            expect(r.returncode == 2, f"--format yaml: {r.returncode} {r.stderr}")
        finally:
            os.unlink(plain)
            os.unlink(broken)

    def metrics():
        with urllib.request.urlopen(f"http://127.0.0.1:{state['metrics']}/metrics", timeout=STEP) as r:
            text = r.read().decode()
        if shutil.which("promtool"):
            p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=STEP)
            expect(p.returncode == 0, f"promtool check metrics: {p.stdout}{p.stderr}\n{text}")
        figures = {}
        for line in text.splitlines():
            m = re.match(r"(meshrun_registry_\w+(?:\{[^}]*\})?) (\S+)$", line)
            if m:
                figures[m.group(1)] = float(m.group(2))
        return figures

    def registry_metrics():
        f = metrics()
        expect(f.get('meshrun_registry_registered{node="b"}') == 1, f"b registered: {f}")
        expect(0 < f.get("meshrun_registry_lease_ttl_seconds", 0) <= TTL, f"the lease's TTL left: {f}")
        expect(f.get("meshrun_registry_errors_total") == 0, f"no error: {f}")
        expect(f.get("meshrun_registry_watching") == 1, f"the watch open: {f}")
        revision = etcd.revision()
        wait_for(f"the view at etcd's revision {revision}",
                 lambda: metrics().get("meshrun_registry_watch_revision") == revision, STEP)
        f = metrics()
        expect(f.get("meshrun_registry_peers_known") == 1, f"a known, from the watch: {f}")
        expect(f.get("meshrun_registry_nodes_known") == 2, f"a and b known: {f}")
        reply = asyncio.run(ask(pb, "signal", "one"))
        expect(reply == "sent", f"b's reply: {reply!r}")

    def errors_counted():
        etcd.stop()
        wait_for("an error counted (a keepalive with etcd down)",
                 lambda: metrics().get("meshrun_registry_errors_total", 0) >= 1, TTL / 3 + 5)
        f = metrics()
        expect(f.get('meshrun_registry_registered{node="b"}') == 1, f"b still registered, its lease running: {f}")
        expect(f.get("meshrun_registry_watching") == 0, f"the watch closed: {f}")
        expect(f.get("meshrun_registry_peers_known") == 1, f"a still known: {f}")

    try:
        failures = run_checks([
            ("two of three nodes up, each registered", two_up),
            ("ls lists both with their lease and names the missing one", lists_text),
            ("ls --format json says the same", lists_json),
            ("a key of no declared node is listed as such", undeclared_key),
            ("no endpoint answers: exit 1, each named", none_answers),
            ("no discovery, or errors in the file: exit 2", usage),
            ("the registry in /metrics", registry_metrics),
            ("etcd stopped: errors counted in /metrics", errors_counted),
        ])
    finally:
        for name in ("a", "b"):
            if name in state:
                state[name].stop()
        etcd.close()
        os.unlink(mesh)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
