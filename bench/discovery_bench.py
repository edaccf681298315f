#!/usr/bin/python3
"""Discovery at scale (docs/discovery.md): N nodes (1,000) registering in one private etcd and
resolving each other, against what etcd itself takes for the same keys.

    bench/discovery_bench.py [--nodes N] [--smoke] [build/tools/meshrun]

Each node n<i> sends to n<i+1> (the last to n0). Three runs against one etcd (tests/lib/etcd.py:
Debian's etcd-server on free loopback ports, a temporary data directory):

- the reference: a plain client (this script) puts the N keys through etcd's gateway in
  transactions of 64, as meshrun does: etcd's own floor for the registration;
- one `meshrun up` of the N nodes: the time until etcd holds every key, and until the process's
  view (its range, then its watch) holds every node: what each link reads where its peer listens;
- two `meshrun up --only` of N/2 nodes each (the even, the odd): every node sends to a node of
  the other process, so every link's peer is resolved through etcd: the time until each process
  knows every peer of the other (meshrun_registry_peers_known), then one message across.

For each: etcd's watch streams and watchers (its own /metrics: the goal is one stream a
process, not one a node) and etcd's resident memory. A benchmark, not a test: it exits 1 only
when something could not run, 77 (skipped) without etcd.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
from checks import free_port  # noqa: E402
from etcd import Etcd, b64, etcd_binary  # noqa: E402
from nodes import ask  # noqa: E402

WITHIN = 60.0  # a run that has not resolved in this long is reported as such
TXN = 64


def mesh_text(url, n, first_port):
    lines = [f'mesh bench\ndiscovery etcd "{url}"\n']
    for i in range(n):
        lines.append(f'node n{i} at 127.0.0.1:{first_port + i} {{\n'
                     f'    on ping -> ack "pong"\n'
                     f'    on go -> {{ send value to n{(i + 1) % n}/ping; ack "sent" }}\n}}\n')
    return "".join(lines)


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+)(?:\{[^}]*\})? (\S+)$", text, re.M)}


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def keys(etcd, prefix):
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    r = etcd.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "count_only": True})
    return int(r.get("count", "0"))


def watches(etcd):
    m = scrape(etcd.client_port)
    return int(m.get("etcd_debugging_mvcc_watch_stream_total", -1)), int(m.get("etcd_debugging_mvcc_watcher_total", -1))


def until(cond, since):
    """Seconds from `since` until cond() holds, polling every 10 ms; None past WITHIN."""
    while time.monotonic() - since < WITHIN:
        if cond():
            return time.monotonic() - since
        time.sleep(0.01)
    return None


def figure(seconds):
    return "not within %d s" % WITHIN if seconds is None else f"{seconds:.3f} s"


class Up:
    def __init__(self, meshrun, mesh, only=None):
        self.metrics = free_port()
        self.log = tempfile.TemporaryFile()
        args = [meshrun, "up", mesh, "--color", "never", "--metrics", str(self.metrics)]
        if only:
            args += ["--only", ",".join(only)]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def view(self):
        try:
            return scrape(self.metrics)
        except OSError:
            return {}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def reference(etcd, n):
    """A plain client's puts of N keys through the gateway, TXN a transaction, on one lease."""
    lease = etcd.call("/v3/lease/grant", {"TTL": "10"})["ID"]
    started = time.monotonic()
    for first in range(0, n, TXN):
        ops = [{"request_put": {"key": b64(f"/meshrun/ref/nodes/n{i}"), "value": b64(json.dumps({"port": i})),
                                "lease": lease}} for i in range(first, min(n, first + TXN))]
        etcd.call("/v3/kv/txn", {"success": ops})
    took = time.monotonic() - started
    etcd.call("/v3/lease/revoke", {"ID": lease})
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("meshrun", nargs="?", default=os.path.join(HERE, "..", "build", "tools", "meshrun"))
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="50 nodes: the ctest smoke run")
    opt = ap.parse_args()
    n = 50 if opt.smoke else opt.nodes
    if n < 2 or n % 2:
        sys.exit("discovery_bench: --nodes must be even and at least 2")
    if not etcd_binary():
        print("skipped: no `etcd` binary (Debian's etcd-server; tools/dev.sh setup installs it)")
        sys.exit(77)
    version = subprocess.run([etcd_binary(), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"discovery bench: {n} nodes, each sending to the next; {version}", flush=True)

    failed = False
    with Etcd() as etcd:
        ref = reference(etcd, n)
        first_port = free_port()
        fd, mesh = tempfile.mkstemp(suffix=".mesh")
        with os.fdopen(fd, "w") as f:
            f.write(mesh_text(etcd.url, n, 20000 if first_port + n > 65000 else first_port))
        rows = []
        try:
            # One process.
            up = Up(opt.meshrun, mesh)
            put = until(lambda: keys(etcd, "/meshrun/bench/nodes/") == n, up.started)
            viewed = until(lambda: up.view().get("meshrun_registry_nodes_known") == n, up.started)
            streams_one = watches(etcd)
            rss_one = rss_mib(etcd.proc.pid)
            up_rss = rss_mib(up.proc.pid)
            log = up.stop()
            if put is None or viewed is None:
                failed = True
                print(log[-2000:])
            until(lambda: keys(etcd, "/meshrun/bench/nodes/") == 0, time.monotonic())  # revoked at the stop
            rows.append(("one process: every key in etcd", figure(put), f"etcd alone, the same puts: {ref:.3f} s"))
            rows.append(("one process: every node in its view", figure(viewed), "what its links read"))
            rows.append(("  watch streams / watchers in etcd", "%d / %d" % streams_one, "goal: 1 / 1 (one a process)"))
            rows.append(("  meshrun up's RSS", f"{up_rss:.1f} MiB", ""))

            # Two processes, each sending to the other's nodes only.
            even = [f"n{i}" for i in range(0, n, 2)]
            odd = [f"n{i}" for i in range(1, n, 2)]
            a, b = Up(opt.meshrun, mesh, even), Up(opt.meshrun, mesh, odd)
            started = min(a.started, b.started)
            resolved = until(lambda: a.view().get("meshrun_registry_peers_known") == n // 2 and
                             b.view().get("meshrun_registry_peers_known") == n // 2, started)
            streams_two = watches(etcd)
            rss_two = rss_mib(etcd.proc.pid)
            # One message across: into n0 (the even process), sent on to n1 (the odd one).
            port0 = json.loads(etcd.get("/meshrun/bench/nodes/n0")[0])["port"]
            crossed = asyncio.run(ask(port0, "go", "hello")) == "sent"
            logs = a.stop() + b.stop()
            if resolved is None or not crossed:
                failed = True
                print(logs[-2000:])
            rows.append(("two processes: every peer resolved", figure(resolved), f"{n // 2} peers each, through etcd"))
            rows.append(("  a message across", "delivered" if crossed else "NOT delivered", ""))
            rows.append(("  watch streams / watchers in etcd", "%d / %d" % streams_two, "goal: 2 / 2"))
            rows.append(("etcd's RSS (one process, two)", f"{rss_one:.1f} MiB, {rss_two:.1f} MiB", ""))
        finally:
            os.unlink(mesh)
    width = max(len(r[0]) for r in rows) + 2
    for name, value, ref_text in rows:
        print(f"{name:<{width}}{value:<22}{ref_text}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
