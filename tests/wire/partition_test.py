#!/usr/bin/python3
"""Delivery across a network partition (docs/delivery.md, "A dead link"): nodes a and b in two
network namespaces joined by a veth pair, a stream of numbered messages through them, and the link
cut for 10 s mid-stream, silently: every packet on the pair vanishes (a `pfifo limit 0` qdisc on both
ends drops all it is given; `ip link set down` where that qdisc cannot be had), no reset, no error.

    /usr/bin/python3 tests/wire/partition_test.py path/to/meshrun [--messages N] [--outage S]

The nodes, the clients and the checks of what b fired are tests/lib/stream.py's; a runs on
10.77.0.1 in its namespace (with --metrics 0 there), b on 10.77.0.2 in its own, each by `ip netns
exec`; this process makes its clients' sockets and its scrapes of a's metrics inside a's namespace
(setns on this thread for the moment a socket is made: a socket stays in the namespace it was made
in). Checked: nothing lost, no message fired twice (no node restarted), each client's order kept;
a's link noticed the dead peer within 6 s (its pings: 5 s, the docs say, plus a scrape's slack) with
`meshrun_link_up` 0 during the outage; after it, `meshrun_link_up` 1 and
`meshrun_link_reconnects_total` grown.

Needs root and `ip` (iproute2): elsewhere it prints why and exits 77 (skipped). The namespaces are
named by this process's id (parallel runs do not collide) and removed at the end, whatever happens;
those of an earlier run that was killed (its process gone) are removed at the start.
"""

import argparse
import asyncio
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import STEP, CheckFailed, expect, run_checks  # noqa: E402
from stream import SENDERS, Client, Firings, stream_mesh  # noqa: E402

SKIPPED = 77
PREFIX = "meshrun-part-"  # the namespaces: meshrun-part-PID-a, meshrun-part-PID-b
A_ADDR, B_ADDR = "10.77.0.1", "10.77.0.2"
PA, PB = 21001, 21002  # in the namespaces: nothing else listens there
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
NOTICED_WITHIN = 6.0  # pings every 2 s, dead after 4 s without an answer: 5 s, and a scrape's slack
RECOVERED_WITHIN = 15.0  # a connect waits at most 5 s, a backoff pause at most 2 s

libc = ctypes.CDLL(None, use_errno=True)


def skip(why):
    print(f"skipped: {why}", flush=True)
    sys.exit(SKIPPED)


def ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=STEP)
    if check and r.returncode != 0:
        raise CheckFailed(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


class Net:
    """Two namespaces joined by a veth pair: a's end on 10.77.0.1, b's on 10.77.0.2."""

    def __init__(self):
        pid = os.getpid()
        self.ns = {"a": f"{PREFIX}{pid}-a", "b": f"{PREFIX}{pid}-b"}
        self.dev = {"a": f"mrp{pid}a", "b": f"mrp{pid}b"}  # at most 15 characters
        self.cut_by = None

    def make(self):
        for name in ("a", "b"):
            ip("netns", "add", self.ns[name])
        ip("link", "add", self.dev["a"], "netns", self.ns["a"], "type", "veth",
           "peer", "name", self.dev["b"], "netns", self.ns["b"])
        for name, addr in (("a", A_ADDR), ("b", B_ADDR)):
            ip("-n", self.ns[name], "addr", "add", f"{addr}/24", "dev", self.dev[name])
            ip("-n", self.ns[name], "link", "set", "lo", "up")
            ip("-n", self.ns[name], "link", "set", self.dev[name], "up")

    def remove(self):
        for name in ("a", "b"):
            ip("netns", "del", self.ns[name], check=False)  # the veth pair goes with them

    def cut(self):
        """Every packet on the pair dropped, both ways, without a word to either end."""
        for name in ("a", "b"):
            r = subprocess.run(["ip", "netns", "exec", self.ns[name], "tc", "qdisc", "add", "dev", self.dev[name],
                                "root", "pfifo", "limit", "0"], capture_output=True, text=True, timeout=STEP)
            if r.returncode != 0:
                break
        else:
            self.cut_by = "a pfifo limit 0 qdisc on both ends: every packet dropped, silently"
            return
        self.heal(quiet=True)
        for name in ("a", "b"):
            ip("-n", self.ns[name], "link", "set", self.dev[name], "down")
        self.cut_by = f"ip link set down on both ends (no qdisc to drop with: {r.stderr.strip()})"

    def heal(self, quiet=False):
        for name in ("a", "b"):
            subprocess.run(["ip", "netns", "exec", self.ns[name], "tc", "qdisc", "del", "dev", self.dev[name], "root"],
                           capture_output=True, timeout=STEP)
            ip("-n", self.ns[name], "link", "set", self.dev[name], "up", check=not quiet)

    def socket(self, name):
        """A TCP socket in `name`'s namespace. setns changes this thread's namespace only, and
        only until it is set back, at once."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open(f"/run/netns/{self.ns[name]}", os.O_RDONLY)
        try:
            if libc.setns(there, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.ns[name]}")
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                if libc.setns(home, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to this process's namespace")
        finally:
            os.close(there)
            os.close(home)

    def connect(self, name, address):
        s = self.socket(name)
        try:
            s.settimeout(STEP)
            s.connect(address)
        except OSError:
            s.close()
            raise
        return s


def remove_stale():
    """The namespaces of earlier runs whose process is gone (killed before its cleanup)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=STEP).stdout
    for name in re.findall(rf"^({re.escape(PREFIX)}(\d+)-[ab])\b", listed, re.M):
        if not os.path.exists(f"/proc/{name[1]}"):
            ip("netns", "del", name[0], check=False)


class NsNode:
    """`meshrun run` in a namespace, its log in a file. `ip netns exec` execs meshrun in its own
    process, which is killed if this one dies first (SIGKILLed by ctest's timeout, say)."""

    def __init__(self, meshrun, net, mesh, node, args=()):
        self.log_path = os.path.join(tempfile.gettempdir(), f"{node}.log")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(["ip", "netns", "exec", net.ns[node], meshrun, "run", mesh, "--node", node,
                                          "--sim", "--color", "never", *args], stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL))

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_for(self, pattern, timeout=STEP):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise CheckFailed(f"no log line matching {pattern!r} within {timeout} s; the log:\n{self.log()[-2000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STEP)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def scrape(net, port):
    """a's link to b/data from its /metrics, scraped in a's namespace: (up, reconnects)."""
    with net.connect("a", ("127.0.0.1", port)) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: meshrun\r\n\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode(errors="replace")
    series = '{node="a",target="b/data"}'
    figures = {}
    for metric in ("meshrun_link_up", "meshrun_link_reconnects_total"):
        m = re.search(rf"^{metric}{re.escape(series)} (\S+)$", text, re.M)
        expect(m, f"no {metric}{series} in a's metrics:\n{text[:3000]}")
        figures[metric] = float(m.group(1))
    return int(figures["meshrun_link_up"]), int(figures["meshrun_link_reconnects_total"])


def check_partition(meshrun, net, messages, outage):
    mesh = os.path.join(tempfile.gettempdir(), "partition.mesh")
    with open(mesh, "w") as f:
        f.write(stream_mesh(A_ADDR, PA, B_ADDR, PB))
    b = NsNode(meshrun, net, mesh, "b")
    a = NsNode(meshrun, net, mesh, "a", ["--metrics", "0"])
    try:
        b.wait_for(rf":{PB}\b")
        a.wait_for(rf":{PA}\b")
        metrics_port = int(a.wait_for(r"metrics of every node here on http://127\.0\.0\.1:(\d+)/").group(1))
        progress = [0]
        boot = f"part{os.getpid()}"
        clients = [Client(k, A_ADDR, PA, boot, messages, progress,
                          make_socket=lambda: net.connect("a", (A_ADDR, PA))) for k in range(SENDERS)]
        seen = {}

        async def partition():
            while progress[0] < messages // 3:
                await asyncio.sleep(0.005)
            up, seen["reconnects before"] = scrape(net, metrics_port)
            expect(up == 1, f"meshrun_link_up is {up} before the cut")
            net.cut()
            cut_at = time.monotonic()
            seen["replies at the cut"] = progress[0]
            # Scraped through the outage: when the link is first seen down, and that it stays down.
            while time.monotonic() < cut_at + outage:
                up, _ = scrape(net, metrics_port)
                if up == 0 and "noticed" not in seen:
                    seen["noticed"] = time.monotonic() - cut_at
                if up == 1 and "noticed" in seen:
                    seen["up during the outage"] = time.monotonic() - cut_at
                await asyncio.sleep(0.2)
            seen["replies in the outage"] = progress[0] - seen["replies at the cut"]
            at_heal = progress[0]
            healed_at = time.monotonic()
            net.heal()
            while progress[0] == at_heal and progress[0] < messages and time.monotonic() < healed_at + 2 * RECOVERED_WITHIN:
                await asyncio.sleep(0.01)
            seen["recovered"] = time.monotonic() - healed_at

        async def stream():
            cutting = asyncio.create_task(partition())
            await asyncio.gather(*(c.run() for c in clients))
            await cutting

        started = time.monotonic()
        try:
            asyncio.run(stream())
        except CheckFailed as e:
            raise CheckFailed(f"{e}\na's last lines:\n{a.log()[-1500:]}b's last lines:\n{b.log()[-600:]}") from None
        took = time.monotonic() - started
        up, reconnects = scrape(net, metrics_port)
        firings = Firings(a.log(), b.log())
        print(f"      {messages} messages, cut by {net.cut_by} for {outage:.0f} s: the link seen down after "
              f"{seen.get('noticed', float('nan')):.1f} s, messages flowing again {seen['recovered']:.1f} s after; "
              f"reconnects {seen['reconnects before']} before, {reconnects} after; {firings.duplicates} duplicates, "
              f"{firings.refires} refires; {took:.1f} s", flush=True)
        expect("noticed" in seen, f"meshrun_link_up never went 0 in {outage:.0f} s of outage; a's log:\n{a.log()[-1500:]}")
        expect(seen["noticed"] <= NOTICED_WITHIN,
               f"the dead link was noticed after {seen['noticed']:.1f} s, not within {NOTICED_WITHIN:.0f} s")
        expect("up during the outage" not in seen,
               f"meshrun_link_up was 1 again {seen.get('up during the outage', 0):.1f} s into the outage")
        expect(seen["replies in the outage"] <= SENDERS,
               f"{seen['replies in the outage']} replies came during the outage: the cut did not cut")
        expect("answered nothing, not even a ping, for 4 s" in a.log(),
               f"a's log does not say the link went dead for want of pongs:\n{a.log()[-1500:]}")
        expect(seen["recovered"] <= RECOVERED_WITHIN,
               f"messages flowed again only {seen['recovered']:.1f} s after the network came back")
        expect(up == 1, f"meshrun_link_up is {up} after the stream")
        expect(reconnects > seen["reconnects before"],
               f"meshrun_link_reconnects_total did not grow: {seen['reconnects before']} before, {reconnects} after")
        firings.check(messages)
        expect(firings.duplicates == 0 and firings.refires == 0,
               f"no node restarted, yet {firings.duplicates} messages fired twice and {firings.refires} refires")
    finally:
        a.stop()
        b.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("meshrun")
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--outage", type=float, default=10.0)
    opts = parser.parse_args()
    if os.geteuid() != 0:
        skip("network namespaces need root")
    if not shutil.which("ip"):
        skip("no `ip` command (iproute2) to make network namespaces with")
    # The namespaces go whatever ends this run: a failure, Ctrl-C, ctest's SIGTERM.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    remove_stale()
    net = Net()
    failed = None
    try:
        try:
            net.make()
        except CheckFailed as e:
            skip(f"cannot make two network namespaces joined by a veth pair here: {e}")
        tempfile.tempdir = tempfile.mkdtemp(prefix="meshrun-partition-")
        failed = run_checks([(f"a silent partition of {opts.outage:g} s mid-stream",
                              lambda: check_partition(opts.meshrun, net, opts.messages, opts.outage))])
    finally:
        net.remove()  # the veth pair goes with the namespaces
        if failed == 0:
            shutil.rmtree(tempfile.tempdir, ignore_errors=True)
        elif tempfile.tempdir:  # a failure or an interruption: kept to be read
            print(f"the nodes' logs are kept in {tempfile.tempdir}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
