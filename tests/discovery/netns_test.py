#!/usr/bin/python3
"""Two machines (issue 12's proof): nodes that find each other through etcd only, across a link
between two network namespaces that this test makes, joined by a veth pair (10.78.0.1/24 in the
first, 10.78.0.2/24 in the second, loopback up in each).

A private etcd (tests/lib/etcd.py, by `ip netns exec`) listens on 10.78.0.1 in the first namespace,
its data in a temporary directory. The file names it and no host at all:

    node a at :PA { on ping -> { log "pinged {value}"; ack "pong" }   on kick -> { send value to b/pong; ... } }
    node b at :PB { on signal -> { send value to a/ping; ack "sent" } on pong -> { log "ponged {value}"; ... } }

a runs in the first namespace, b in the second, each its own `meshrun run --node X`. Without
discovery a link to a node with no host goes to loopback, where nothing listens in the other
namespace: only etcd can tell b where a is, and a where b is. Checked, each wait bounded:

- each node, bound to every interface, registered the address of its connection to etcd (read
  through etcd's own gateway from the first namespace): a 10.78.0.1, b 10.78.0.2, with their ports;
- a message into b (a websocket client made inside the second namespace) reaches a across the link:
  b's reply `sent` comes once a acknowledged, and a's log says `pinged ...`; and the other way, a
  message into a (a client inside the first namespace) reaches b's `pong`;
- `meshrun ls FILE`, run in the second namespace, lists both nodes with those addresses and ports
  and none missing, in text and in JSON.

    /usr/bin/python3 tests/discovery/netns_test.py path/to/meshrun

Needs root and `ip` (iproute2), and the `etcd` binary (Debian's etcd-server): elsewhere it prints
why and exits 77 (skipped). The namespaces are named by this process's id (parallel runs do not
collide) and removed at the end whatever happens, after the processes in them are stopped (killed
with this process if it dies first), with the temporary directory (the file, the logs, etcd's data);
those of an earlier run that was killed are removed at the start.
"""

import asyncio
import ctypes
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import CheckFailed, STEP, expect, run_checks, wait_for  # noqa: E402
from etcd import PR_SET_PDEATHSIG, Etcd, in_netns, need_etcd  # noqa: E402

SKIPPED = 77
PREFIX = "meshrun-nsd-"  # the namespaces: meshrun-nsd-PID-1 (etcd and a), meshrun-nsd-PID-2 (b)
ADDR = {1: "10.78.0.1", 2: "10.78.0.2"}
PA, PB = 21001, 21002  # in the namespaces: nothing else listens there
MESH = "twomachines"
REGISTERED_WITHIN = STEP  # a node registers once it listens; etcd answers within a request's 3 s

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
    """Two namespaces joined by a veth pair: the first's end on 10.78.0.1, the second's on 10.78.0.2."""

    def __init__(self):
        pid = os.getpid()
        self.ns = {k: f"{PREFIX}{pid}-{k}" for k in (1, 2)}
        self.dev = {k: f"mrd{pid}n{k}" for k in (1, 2)}  # at most 15 characters

    def make(self):
        for k in (1, 2):
            ip("netns", "add", self.ns[k])
        ip("link", "add", self.dev[1], "netns", self.ns[1], "type", "veth",
           "peer", "name", self.dev[2], "netns", self.ns[2])
        for k in (1, 2):
            ip("-n", self.ns[k], "addr", "add", f"{ADDR[k]}/24", "dev", self.dev[k])
            ip("-n", self.ns[k], "link", "set", "lo", "up")
            ip("-n", self.ns[k], "link", "set", self.dev[k], "up")

    def remove(self):
        for k in (1, 2):
            ip("netns", "del", self.ns[k], check=False)  # the veth pair goes with them


def remove_stale():
    """The namespaces and temporary directories of earlier runs whose process is gone (killed
    before its cleanup: the processes in them died with it)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=STEP).stdout
    for name, pid in re.findall(rf"^({re.escape(PREFIX)}(\d+)-[12])\b", listed, re.M):
        if not os.path.exists(f"/proc/{pid}"):
            ip("netns", "del", name, check=False)
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}*-*")):
        m = re.fullmatch(rf"{re.escape(PREFIX)}(\d+)-\w+", os.path.basename(path))
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            shutil.rmtree(path, ignore_errors=True)


def in_ns(netns, argv):
    """`argv` run inside `netns`: `ip netns exec` execs it (one process), killed if this one dies first."""
    return dict(args=["ip", "netns", "exec", netns, *argv],
                preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL))


class NsNode:
    """`meshrun run --node NAME` in a namespace, its log in a file of the test's temporary directory."""

    def __init__(self, meshrun, netns, mesh, node):
        self.name = node
        self.log_path = os.path.join(tempfile.gettempdir(), f"{node}.log")
        with open(self.log_path, "w") as log:
            argv = [meshrun, "run", mesh, "--node", node, "--sim", "--color", "never"]
            self.proc = subprocess.Popen(**in_ns(netns, argv), stdout=log, stderr=subprocess.STDOUT)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_for(self, pattern, timeout=STEP):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log(), re.M)
            if m:
                return m
            if self.proc.poll() is not None:
                raise CheckFailed(f"{self.name} exited ({self.proc.returncode}) before a log line matching "
                                  f"{pattern!r}; its log:\n{self.log()[-2000:]}")
            time.sleep(0.02)
        raise CheckFailed(f"no line of {self.name}'s log matches {pattern!r} within {timeout} s; "
                          f"the log:\n{self.log()[-2000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STEP)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def mesh_text(etcd_url):
    return f"""mesh {MESH}
discovery etcd "{etcd_url}"

# No host: each node listens on every interface, and only etcd says where.
node a at :{PA} {{
    on ping -> {{ log "pinged {{value}}"; ack "pong" }}
    on kick -> {{ send value to b/pong; ack "kicked" }}
}}
node b at :{PB} {{
    on signal -> {{ send value to a/ping; ack "sent" }}
    on pong -> {{ log "ponged {{value}}"; ack "ok" }}
}}
"""



async def ask_in(netns, host, port, channel, message, timeout=STEP):
    """One message to ws://HOST:PORT/CHANNEL from a client whose socket is made in `netns`; the
    reply, or None when none came within `timeout`."""
    with in_netns(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    async with websockets.connect(f"ws://{host}:{port}/{channel}", sock=sock, open_timeout=timeout,
                                  close_timeout=1) as ws:
        await ws.send(message)
        try:
            return await asyncio.wait_for(ws.recv(), timeout)
        except asyncio.TimeoutError:
            return None


def checks(meshrun, net, etcd, nodes):
    """Starts a and b (into `nodes`, for the caller to stop whatever happens); the checks, in order."""
    mesh = os.path.join(tempfile.gettempdir(), f"{MESH}.mesh")
    with open(mesh, "w") as f:
        f.write(mesh_text(etcd.url))

    def logs():
        return "".join(f"\n{n.name}'s log:\n{n.log()[-1500:]}" for n in nodes.values())

    nodes["a"] = NsNode(meshrun, net.ns[1], mesh, "a")
    nodes["b"] = NsNode(meshrun, net.ns[2], mesh, "b")

    def both_listen():
        nodes["a"].wait_for(rf"^\[ a \] listening on ws://0\.0\.0\.0:{PA}$")
        nodes["b"].wait_for(rf"^\[ b \] listening on ws://0\.0\.0\.0:{PB}$")

    def registered():
        # Read through etcd's gateway in the first namespace: the address of each node's side of
        # its connection to etcd, not the 0.0.0.0 it bound.
        for name, k, port in (("a", 1, PA), ("b", 2, PB)):
            key = f"/meshrun/{MESH}/nodes/{name}"
            got = wait_for(f"{name}'s key {key} in etcd", lambda: etcd.get(key), REGISTERED_WITHIN)
            value = json.loads(got[0])
            expect(value.get("address") == ADDR[k] and value.get("port") == port,
                   f"{name}, in namespace {k}, registered {value}: expected address {ADDR[k]} (its side of the "
                   f"link to etcd) and port {port}" + logs())

    def b_to_a():
        # b answers once a acknowledged what b's link sent it (docs/delivery.md).
        reply = asyncio.run(ask_in(net.ns[2], ADDR[2], PB, "signal", "from-b-side"))
        expect(reply is not None, f"no reply from b within {STEP:.0f} s: its link did not deliver to a" + logs())
        expect(reply == "sent", f"b's reply to a signal: {reply!r}" + logs())
        nodes["a"].wait_for(r"pinged from-b-side$")

    def a_to_b():
        reply = asyncio.run(ask_in(net.ns[1], ADDR[1], PA, "kick", "from-a-side"))
        expect(reply is not None, f"no reply from a within {STEP:.0f} s: its link did not deliver to b" + logs())
        expect(reply == "kicked", f"a's reply to a kick: {reply!r}" + logs())
        nodes["b"].wait_for(r"ponged from-a-side$")

    def ls(*args):
        r = subprocess.run(**in_ns(net.ns[2], [meshrun, "ls", mesh, *args]), capture_output=True, text=True,
                           timeout=STEP + 10)
        expect(r.returncode == 0,
               f"ls {' '.join(args)} in the second namespace exits {r.returncode}: {r.stdout}{r.stderr}")
        return r.stdout

    def ls_in_second():
        text = ls()
        lines = text.splitlines()
        expect(lines and lines[0] == f"mesh {MESH} in etcd at {etcd.url}: 2 of 2 nodes declared registered",
               f"ls's first line:\n{text}")
        rows = {line.split()[0]: line.split() for line in lines[2:]}
        expect(sorted(rows) == ["a", "b"], f"ls lists {sorted(rows)}, not a and b:\n{text}")
        expect(rows["a"][1:3] == [ADDR[1], str(PA)] and rows["b"][1:3] == [ADDR[2], str(PB)],
               f"ls's addresses and ports:\n{text}")
        out = json.loads(ls("--format", "json"))
        found = {n["node"]: (n.get("address"), n.get("port")) for n in out["nodes"]}
        expect(found == {"a": (ADDR[1], PA), "b": (ADDR[2], PB)} and out["missing"] == [], f"ls --format json: {out}")

    return [
        ("a in the first namespace and b in the second listen on every interface", both_listen),
        ("each registered the address of its side of the link", registered),
        ("a message into b reaches a across the link", b_to_a),
        ("a message into a reaches b across the link", a_to_b),
        ("meshrun ls in the second namespace lists both", ls_in_second),
    ]


def main():
    meshrun = sys.argv[1]
    if os.geteuid() != 0:
        skip("network namespaces need root")
    if not shutil.which("ip"):
        skip("no `ip` command (iproute2) to make network namespaces with")
    need_etcd()
    # Everything goes whatever ends this run: a failure, Ctrl-C, ctest's SIGTERM.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    remove_stale()
    net = Net()
    etcd = None
    nodes = {}
    failed = 1
    # The nodes' logs, the file and etcd's data directory (tempfile's, so Etcd's too) all in one.
    tempfile.tempdir = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
    try:
        try:
            net.make()
        except CheckFailed as e:
            skip(f"cannot make two network namespaces joined by a veth pair here: {e}")
        started = time.monotonic()
        try:
            etcd = Etcd(host=ADDR[1], netns=net.ns[1])
        except RuntimeError as e:
            print(f"FAIL  etcd in {net.ns[1]}: {e}", flush=True)
            return 1
        print(f"      etcd on {etcd.url} in {net.ns[1]}, up in {time.monotonic() - started:.1f} s", flush=True)
        failed = run_checks(checks(meshrun, net, etcd, nodes))
    finally:
        # A second signal must not cut the cleanup short (each of its waits is bounded).
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for node in nodes.values():
            node.stop()
        if etcd:
            etcd.close()
        net.remove()  # once nothing runs in them; the veth pair goes with them
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
