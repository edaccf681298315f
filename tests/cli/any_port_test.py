#!/usr/bin/python3
"""Nodes `at :0` (any free port) in a file with `discovery`, with no etcd to be had.

    /usr/bin/python3 tests/cli/any_port_test.py path/to/meshrun

The discovery URL names a closed loopback port (a free port the test asked the kernel for, and
let go), so every node retries etcd in the background and serves all the same:

1. `run --node` of a node `at :0` (every interface) and of one `at localhost:0`: each listens on a
   port the kernel gave, never 0, and its log line says which; that port answers /healthz (200,
   the node's name), its status page and a websocket message. Two `:0` nodes of one file run side
   by side on two ports.
2. `up` of the file: every `:0` node on a port of its own, the clock's ticks through iopin to
   the buzzer in one process; no line of the log shows a port 0.
3. `meshrun test` runs the file's scenario (free loopback ports, virtual time, no etcd).
4. Without `discovery`, `check` refuses port 0 at its position ([out-of-range], saying why);
   with it, `check` is clean and `graph` draws `:0 (any free port)`.

Prints one line per check and `N passed, M failed` last; exits 1 on any failure. Run it with
Debian's /usr/bin/python3 (apt package python3-websockets).
"""

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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import HOST, STEP, expect, free_port, run_checks  # noqa: E402
from nodes import Node, ask, write_mesh  # noqa: E402

MESH = """\
mesh anyport
discovery etcd "http://127.0.0.1:{etcd}"

node iopin at :0 {{
    pin led = out gpiochip0 17
    on datafeed -> {{
        log "tick {{value}}"
        led = value
        send led to buzzer/signal
        ack "acknowledged"
    }}
}}

node buzzer at localhost:0 {{
    pin horn = out gpiochip0 18
    on signal -> {{ horn = value; ack "buzz" }}
}}

node clock {{
    every 50ms 3 times -> send tick to iopin/datafeed
}}

test "the ticks reach the buzzer" {{
    advance 1s
    expect iopin received 3 on datafeed
    expect buzzer received 3 on signal
}}
"""

LISTENING = re.compile(r"\[ *(\w+) *\] listening on ws://([0-9.]+):(\d+)")


def listening(node, name):
    """The address and port `name`'s log line says it listens on (waited for, bounded)."""
    node.wait_for_line(f"{name} ] listening on ws://", STEP)
    for line in node.log().splitlines():
        m = LISTENING.search(line)
        if m and m.group(1) == name:
            return m.group(2), int(m.group(3))
    raise AssertionError("unreachable: the line was there")


def http_get(port, path):
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=STEP) as r:
        return r.status, r.read().decode()


def no_port_zero(log):
    """The lines of a log that show a port 0 (`HOST:0` followed by no digit)."""
    return [line for line in log.splitlines() if re.search(r"[\w.\]]:0(?!\d)", line)]


class Test:
    def __init__(self, meshrun):
        self.meshrun = meshrun
        self.etcd = free_port()  # asked of the kernel and let go: nothing listens there
        self.mesh = write_mesh(MESH.format(etcd=self.etcd))

    def run_any_port(self):
        buzzer = Node(self.meshrun, self.mesh, "buzzer", ["--sim"])
        iopin = Node(self.meshrun, self.mesh, "iopin", ["--sim"])
        try:
            address, port = listening(buzzer, "buzzer")
            expect(address == "127.0.0.1", f"buzzer `at localhost:0` listens on {address}, not 127.0.0.1")
            expect(port != 0, "buzzer's log line says port 0")
            status, body = http_get(port, "/healthz")
            health = json.loads(body)
            expect(status == 200 and health.get("node") == "buzzer" and health.get("status") == "serving",
                   f"/healthz on buzzer's port {port}: {status} {body}")
            status, body = http_get(port, "/")
            expect(json.loads(body).get("node") == "buzzer", f"buzzer's status page: {body}")
            reply = asyncio.run(ask(port, "signal", "1"))
            expect(reply == "buzz", f"buzzer answered {reply!r} to 1 on /signal, not 'buzz'")

            address, iport = listening(iopin, "iopin")
            expect(address == "0.0.0.0", f"iopin `at :0` listens on {address}, not every interface (0.0.0.0)")
            expect(iport not in (0, port), f"iopin listens on port {iport}, buzzer on {port}")
            status, body = http_get(iport, "/healthz")
            expect(status == 200 and json.loads(body).get("node") == "iopin", f"/healthz on iopin's port: {body}")

            # etcd is unreachable: each says so once and serves all the same.
            for node in (buzzer, iopin):
                node.wait_for_line(f"cannot have a lease from etcd (http://127.0.0.1:{self.etcd}", STEP)
                expect(node.proc.poll() is None, f"the node ended: {node.log()}")
        finally:
            logs = buzzer.log() + iopin.log()
            codes = (buzzer.stop(), iopin.stop())
        expect(codes == (0, 0), f"exit statuses {codes} after SIGTERM, not 0; the logs:\n{logs}")
        expect(not no_port_zero(logs), f"lines that show a port 0: {no_port_zero(logs)}")

    def up_any_port(self):
        # The log is read through a file of its own: a seek on the one the child writes to would
        # move the child's offset too (they share it), and its next line would overwrite the log.
        with tempfile.NamedTemporaryFile("w", suffix=".log") as log:
            fleet = subprocess.Popen([self.meshrun, "up", self.mesh, "--color", "never", "--seed", "1"],
                                     stdout=log, stderr=subprocess.STDOUT)

            def output():
                with open(log.name, errors="replace") as f:
                    return f.read()
            try:
                deadline = time.monotonic() + STEP
                while time.monotonic() < deadline and fleet.poll() is None:
                    if output().count("< acknowledged") >= 3:
                        break
                    time.sleep(0.05)
                expect(fleet.poll() is None, f"`up` ended by itself ({fleet.returncode})")
                fleet.send_signal(signal.SIGINT)  # as Ctrl-C
                fleet.wait(STEP)
            finally:
                if fleet.poll() is None:
                    fleet.kill()
                    fleet.wait()
                out = output()
        expect(fleet.returncode == 0, f"`up` exited {fleet.returncode} after SIGINT:\n{out}")
        ports = {}
        for line in out.splitlines():
            m = LISTENING.search(line)
            if m:
                ports[m.group(1)] = int(m.group(3))
        expect(set(ports) == {"iopin", "buzzer"}, f"listening lines for {sorted(ports)}, not iopin and buzzer:\n{out}")
        expect(0 not in ports.values() and len(set(ports.values())) == 2, f"the ports: {ports}")
        expect(out.count("< buzz") == 3 and out.count("< acknowledged") == 3,
               f"not 3 ticks through iopin to the buzzer, each acknowledged:\n{out}")
        expect(not no_port_zero(out), f"lines that show a port 0: {no_port_zero(out)}")

    def test_runs(self):
        r = subprocess.run([self.meshrun, "test", self.mesh], capture_output=True, text=True, timeout=60)
        expect(r.returncode == 0 and "1 passed, 0 failed" in r.stdout,
               f"`meshrun test` exited {r.returncode}:\n{r.stdout}{r.stderr}")

    def check_and_graph(self):
        r = subprocess.run([self.meshrun, "check", self.mesh], capture_output=True, text=True, timeout=STEP)
        expect(r.returncode == 0 and r.stderr == "", f"check with discovery: exit {r.returncode}\n{r.stdout}{r.stderr}")
        r = subprocess.run([self.meshrun, "graph", self.mesh], capture_output=True, text=True, timeout=STEP)
        expect(r.returncode == 0 and 'label="iopin\\n:0 (any free port)"' in r.stdout
               and 'label="buzzer\\nlocalhost:0 (any free port)"' in r.stdout, f"graph:\n{r.stdout}{r.stderr}")

        plain = write_mesh("".join(line + "\n" for line in MESH.format(etcd=self.etcd).splitlines()
                                   if not line.startswith("discovery")))
        try:
            r = subprocess.run([self.meshrun, "check", plain, "--format", "json"], capture_output=True, text=True,
                               timeout=STEP)
            run = subprocess.run([self.meshrun, "run", plain, "--node", "buzzer", "--sim"], capture_output=True,
                                 text=True, timeout=STEP)
        finally:
            os.unlink(plain)
        expect(r.returncode == 1, f"check without discovery: exit {r.returncode}, not 1\n{r.stdout}{r.stderr}")
        found = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        where = sorted((d["line"], d["column"], d["kind"]) for d in found)
        expect(where == [(3, 16, "out-of-range"), (13, 26, "out-of-range")],
               f"diagnostics at {where}, not at both port 0s:\n{r.stdout}")
        expect(all("any free port" in d["message"] and "discovery etcd" in d["message"] for d in found),
               f"the messages do not say why: {[d['message'] for d in found]}")
        expect(run.returncode == 1 and "listening" not in run.stdout and "[out-of-range]" in run.stderr,
               f"run without discovery: exit {run.returncode}\n{run.stdout}{run.stderr}")

    def close(self):
        os.unlink(self.mesh)


def main():
    if len(sys.argv) != 2:
        print("usage: any_port_test.py MESHRUN", file=sys.stderr)
        return 2
    test = Test(os.path.abspath(sys.argv[1]))
    try:
        failed = run_checks([
            ("run: a node at :0 serves on the port the kernel gave, etcd unreachable", test.run_any_port),
            ("up: every :0 node on a port of its own, the ticks delivered", test.up_any_port),
            ("test: the scenario of a file with :0 nodes", test.test_runs),
            ("check and graph: :0 with discovery, refused without", test.check_and_graph),
        ])
    finally:
        test.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
