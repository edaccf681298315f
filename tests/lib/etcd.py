"""A private etcd for the tests (Debian's etcd-server, 3.4): on free loopback ports (client and
peer), in a temporary data directory, stopped and removed afterwards. Read through etcd's own JSON
gateway (urllib and base64), so that a test never trusts meshrun's client to check meshrun's client.

    from etcd import Etcd, need_etcd
    need_etcd()                      # exits 77 (skipped) with the reason when there is no etcd
    with Etcd() as etcd:
        etcd.get("/meshrun/m/nodes/a")   # -> (value as bytes, lease id) or None
        etcd.restart()               # the same ports and data: what was stored stays
        etcd.restart(wipe=True)      # the same ports, nothing stored: every lease lost

In a network namespace (made by `ip netns add`, root needed): `Etcd(host="10.78.0.1", netns="NAME")`
runs etcd by `ip netns exec NAME`, listening on that address, its free ports and the gateway's
requests taken inside the namespace (`in_netns`, which the tests can use for their own sockets).
"""

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"
SKIPPED = 77
STARTED_WITHIN = 15.0  # a first start writes its data directory and elects itself
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1


def etcd_binary():
    return shutil.which("etcd") or next((p for p in ("/usr/bin/etcd", "/usr/sbin/etcd") if os.access(p, os.X_OK)), None)


def need_etcd():
    """Exits 77 (ctest's skip) saying why, when this machine has no etcd binary."""
    if not etcd_binary():
        print("skipped: no `etcd` binary (Debian's etcd-server package; tools/dev.sh setup installs it)", flush=True)
        sys.exit(SKIPPED)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def in_netns(name):
    """This thread in network namespace `name` (one of `ip netns list`) for the block, and back
    after it; nothing changes when `name` is None. A socket made in the block stays in that
    namespace for good. setns moves the calling thread only: the others stay where they are."""
    if name is None:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        there = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(there, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into network namespace {name}: {os.strerror(err)}")
        finally:
            os.close(there)
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back from network namespace {name}: {os.strerror(err)}")
    finally:
        os.close(home)


def _free_port_at(host, netns):
    """A free port on `host` inside `netns` (the host's namespace when None)."""
    with in_netns(netns), socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


class Etcd:
    def __init__(self, host=HOST, netns=None):
        self.host, self.netns = host, netns
        self.dir = tempfile.mkdtemp(prefix="meshrun-etcd-")
        if netns is None and host == HOST:
            self.client_port, self.peer_port = _free_port(), _free_port()
        else:
            self.client_port, self.peer_port = _free_port_at(host, netns), _free_port_at(host, netns)
        self.url = f"http://{host}:{self.client_port}"
        self.proc = None
        self.log_path = os.path.join(self.dir, "etcd.log")
        self.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        peer = f"http://{self.host}:{self.peer_port}"
        self.log = open(self.log_path, "a")
        # In a namespace: `ip netns exec` execs etcd (one process), killed if the test dies first, so
        # that no etcd is left holding a namespace that the test's cleanup removed.
        netns = ["ip", "netns", "exec", self.netns] if self.netns else []
        orphaned = (lambda: ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)) if self.netns else None
        self.proc = subprocess.Popen(
            [*netns, etcd_binary(), "--name", "meshrun-test", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"meshrun-test={peer}", "--logger", "zap", "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=orphaned)
        deadline = time.monotonic() + STARTED_WITHIN
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.call("/v3/kv/range", {"key": b64("/")}, timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        tail = open(self.log_path, errors="replace").read()[-2000:]
        self.stop()
        raise RuntimeError(f"etcd did not answer on {self.url} within {STARTED_WITHIN} s; its log:\n{tail}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if not self.log.closed:
            self.log.close()

    def restart(self, down_for=0.0, wipe=False):
        """Stopped, and started again on the same ports after `down_for` s; with `wipe`, as a new
        etcd that has lost everything (keys and leases), else with what it stored."""
        self.stop()
        if wipe:
            shutil.rmtree(os.path.join(self.dir, "data"), ignore_errors=True)
        time.sleep(down_for)
        self.start()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def call(self, path, body, timeout=5):
        """POSTs `body` (JSON) to the gateway; the answer as JSON."""
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with in_netns(self.netns), urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def get(self, key):
        """(value, lease id) of `key`, or None when it is absent."""
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        if not kvs:
            return None
        return base64.b64decode(kvs[0].get("value", "")), int(kvs[0].get("lease", "0"))

    def revision(self):
        """etcd's current revision."""
        return int(self.call("/v3/kv/range", {"key": b64("/")})["header"]["revision"])

    def ttl(self, lease):
        """The seconds left of a lease, and the TTL it was granted with (-1: no such lease)."""
        r = self.call("/v3/lease/timetolive", {"ID": str(lease)})
        return int(r.get("TTL", "-1")), int(r.get("grantedTTL", "0"))
