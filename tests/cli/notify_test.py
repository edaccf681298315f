#!/usr/bin/python3
"""Readiness told to systemd (sd_notify(3)'s protocol), as a service manager sees it.

    /usr/bin/python3 tests/cli/notify_test.py path/to/meshrun

The test is the service manager: it binds a unix datagram socket (SO_PASSCRED, as systemd does)
and runs meshrun with NOTIFY_SOCKET naming it.

1. `run --node buzzer --sim`: the first datagram is READY=1 with STATUS=serving buzzer on
   127.0.0.1:PORT, sent by meshrun's own pid (what NotifyAccess=main checks); the port takes a
   connection and answers a websocket message as soon as READY came. SIGTERM: STOPPING=1, exit 0.
2. No READY before the node serves: a node whose port is taken, and a node whose pin's chip does
   not exist (real GPIO, no --sim), exit 1 and send nothing.
3. NOTIFY_SOCKET=@NAME, an abstract socket: READY and STOPPING all the same.
4. `up` of two nodes: READY once both listen, the STATUS names both.
5. Without NOTIFY_SOCKET, or with one nobody listens on, the node serves as ever.
6. A manager whose socket is full (it reads nothing): the node serves all the same, READY=1
   comes once the manager reads, SIGTERM stops it.

The binary the build makes (static by default) sends the datagram itself; the packages' dynamic
binary goes through libsystemd (its `--version` says which): tests/deb runs this test on it.
Prints one line per check and `N passed, M failed` last; exits 1 on any failure.
"""

import array
import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import HOST, STEP, expect, free_port, run_checks  # noqa: E402
from nodes import ask, write_mesh  # noqa: E402

MESHRUN = sys.argv[1]

MESH = """\
mesh notify

node buzzer at 127.0.0.1:{buzzer} {{
    pin horn = out gpiochip0 18
    on signal -> {{ horn = value; ack "buzz" }}
}}

node bell at 127.0.0.1:{bell} {{
    on ring -> ack "ding"
}}
"""

# A chip no machine has: its pin cannot be had.
NO_CHIP = """\
mesh nochip

node porch at 127.0.0.1:{port} {{
    pin led = out gpiochip-meshrun-none 17
    on signal -> {{ led = value; ack "ok" }}
}}
"""


class Manager:
    """The service manager's end: a datagram socket at a temporary path or an abstract name."""

    def __init__(self, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            name = f"meshrun-notify-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.dir = tempfile.mkdtemp()
            self.address = os.path.join(self.dir, "notify")
            self.sock.bind(self.address)

    def receive(self, timeout=STEP):
        """The next datagram's fields (KEY=VALUE lines as a dict) and the sender's pid; None: nothing."""
        self.sock.settimeout(timeout)
        try:
            data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except socket.timeout:
            return None, None
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = array.array("i", payload[:struct.calcsize("3i")])[0]
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        return fields, pid

    def close(self):
        self.sock.close()
        if not self.address.startswith("@"):
            os.unlink(self.address)
            os.rmdir(self.dir)


def start(args, notify):
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify
    return subprocess.Popen([MESHRUN, *args, "--color", "never"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=STEP)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out


def end(proc):
    """Kills `proc` if it still runs (after a check that failed midway)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def ready_then_stopping(abstract):
    manager = Manager(abstract)
    port, bell = free_port(), free_port()
    mesh = write_mesh(MESH.format(buzzer=port, bell=bell))
    proc = start(["run", mesh, "--node", "buzzer", "--sim"], manager.address)
    try:
        fields, pid = manager.receive()
        expect(fields is not None, "no datagram within the bound")
        expect(fields.get("READY") == "1", f"the first datagram is not READY=1: {fields}")
        expect(fields.get("STATUS") == f"serving buzzer on 127.0.0.1:{port}", f"STATUS: {fields}")
        expect(pid == proc.pid, f"sent by pid {pid}, not meshrun's {proc.pid}")
        # Ready means serving: a connection and a message work at once, no retry.
        with socket.create_connection((HOST, port), timeout=1):
            pass
        reply = asyncio.run(ask(port, "signal", "1"))
        expect(reply == "buzz", f"the reply: {reply!r}")
        code, out = stop(proc)
        fields, _ = manager.receive()
        expect(fields is not None and fields.get("STOPPING") == "1", f"after SIGTERM: {fields}; the log:\n{out}")
        expect(code == 0, f"exit {code}; the log:\n{out}")
    finally:
        end(proc)
        manager.close()
        os.unlink(mesh)


def no_ready(args_of, text, why):
    """A node that cannot start: exit 1, `text` in its output, and no datagram at all."""
    manager = Manager()
    port = free_port()
    mesh = write_mesh(text.format(buzzer=port, bell=free_port(), port=port))
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if why == "in use":
            holder.bind((HOST, port))
            holder.listen()
        proc = start(args_of(mesh), manager.address)
        out, _ = proc.communicate(timeout=STEP)
        expect(proc.returncode == 1, f"exit {proc.returncode}; the output:\n{out}")
        expect(why in out, f"the output does not say {why!r}:\n{out}")
        fields, _ = manager.receive(timeout=0.5)
        expect(fields is None, f"a datagram from a node that never served: {fields}")
    finally:
        holder.close()
        manager.close()
        os.unlink(mesh)


def up_ready():
    manager = Manager()
    buzzer, bell = free_port(), free_port()
    mesh = write_mesh(MESH.format(buzzer=buzzer, bell=bell))
    proc = start(["up", mesh], manager.address)
    try:
        fields, _ = manager.receive()
        expect(fields is not None and fields.get("READY") == "1", f"no READY=1: {fields}")
        expect(fields.get("STATUS") == f"serving 2 nodes: buzzer on 127.0.0.1:{buzzer}, bell on 127.0.0.1:{bell}",
               f"STATUS: {fields}")
        for port in (buzzer, bell):
            with socket.create_connection((HOST, port), timeout=1):
                pass
        code, out = stop(proc)
        fields, _ = manager.receive()
        expect(fields is not None and fields.get("STOPPING") == "1", f"after SIGTERM: {fields}")
        expect(code == 0, f"exit {code}; the log:\n{out}")
    finally:
        end(proc)
        manager.close()
        os.unlink(mesh)


def answers(port, proc):
    reply = None
    deadline = time.monotonic() + STEP
    while reply is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            reply = asyncio.run(ask(port, "signal", "0", timeout=1))
        except OSError:
            time.sleep(0.05)
    expect(reply == "buzz", f"no reply (exit {proc.poll()})")


def serves_without(notify):
    port = free_port()
    mesh = write_mesh(MESH.format(buzzer=port, bell=free_port()))
    proc = start(["run", mesh, "--node", "buzzer", "--sim"], notify)
    try:
        answers(port, proc)
        code, out = stop(proc)
        expect(code == 0, f"exit {code}; the log:\n{out}")
    finally:
        end(proc)
        os.unlink(mesh)


def manager_reads_nothing():
    """A manager whose socket is full (it reads nothing): the node serves all the same, READY=1
    arrives once the manager reads, and SIGTERM still stops it."""
    manager = Manager()
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler.setblocking(False)
    queued = 0
    try:
        while queued < 10000:
            filler.sendto(b"FILLER=1", manager.address)
            queued += 1
    except BlockingIOError:
        pass
    filler.close()
    port = free_port()
    mesh = write_mesh(MESH.format(buzzer=port, bell=free_port()))
    proc = start(["run", mesh, "--node", "buzzer", "--sim"], manager.address)
    try:
        answers(port, proc)
        for _ in range(queued):
            fields, _ = manager.receive()
            expect(fields == {"FILLER": "1"}, f"the socket's own datagrams first: {fields}")
        fields, _ = manager.receive()
        expect(fields is not None and fields.get("READY") == "1", f"no READY=1 once the manager reads: {fields}")
        code, out = stop(proc)
        expect(code == 0, f"exit {code}; the log:\n{out}")
        fields, _ = manager.receive()
        expect(fields is not None and fields.get("STOPPING") == "1", f"after SIGTERM: {fields}")
    finally:
        end(proc)
        manager.close()
        os.unlink(mesh)


checks = [
    ("READY=1 once the port serves, then STOPPING=1 at SIGTERM (a socket path)", lambda: ready_then_stopping(False)),
    ("no READY from a node whose port is taken",
     lambda: no_ready(lambda m: ["run", m, "--node", "buzzer", "--sim"], MESH, "in use")),
    ("no READY from a node whose pin cannot be had",
     lambda: no_ready(lambda m: ["run", m, "--node", "porch"], NO_CHIP, "gpiochip-meshrun-none")),
    ("READY=1 and STOPPING=1 to an abstract socket (@NAME)", lambda: ready_then_stopping(True)),
    ("up: READY=1 once both nodes listen", up_ready),
    ("without NOTIFY_SOCKET the node serves", lambda: serves_without(None)),
    ("with a NOTIFY_SOCKET nobody listens on the node serves",
     lambda: serves_without(os.path.join(tempfile.gettempdir(), f"meshrun-nobody-{os.getpid()}"))),
    ("a manager that reads nothing does not stop the node", manager_reads_nothing),
]
sys.exit(1 if run_checks(checks) else 0)
