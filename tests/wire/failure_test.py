#!/usr/bin/python3
"""The sending side of failures, on real sockets: what a node does when its peers refuse, vanish or
close, when it runs out of descriptors, when a peer is down for long, and when it is told to stop.

    /usr/bin/python3 tests/wire/failure_test.py path/to/meshrun

Each check starts `meshrun run` processes (and, where a check needs a peer that misbehaves on purpose,
a websocket server of its own) on free loopback ports, and bounds every wait. A node that spins is
caught by its CPU time (/proc/PID/stat), a node that floods its log by its line count.
Prints one line per check and `N passed, M failed` last; exits 1 on any failure.

Run it with Debian's /usr/bin/python3 (apt package python3-websockets, version 10.x).
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets
import websockets.exceptions

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import HOST, STEP, expect, free_port, run_checks, wait_for_port  # noqa: E402
from nodes import Node, ask, write_mesh  # noqa: E402
def idle_cpu(node, seconds):
    before = node.cpu_seconds()
    time.sleep(seconds)
    return node.cpu_seconds() - before


# ---- checks ----------------------------------------------------------------------------------------


def check_oversized_forward(meshrun):
    """A forwarded copy over 64 KiB is dropped with a reply that says so; the link carries on."""
    pa, pb = free_port(), free_port()
    mesh = write_mesh(f"""
node a at {HOST}:{pa} {{ on go -> {{ send "fwd: {{value}}" to b/in; ack "sent" }} }}
node b at {HOST}:{pb} {{ on in -> ack "got {{value}}" }}
""")
    b = Node(meshrun, mesh, "b", wait_port=pb)
    a = Node(meshrun, mesh, "a", wait_port=pa)
    try:
        reply = asyncio.run(ask(pa, "go", "x" * 65536))
        expect(reply.startswith("error: the message to b/in was dropped:") and "65536" in reply,
               f"the reply to an oversized forward: {reply[:200]!r}")
        expect(asyncio.run(ask(pa, "go", "small")) == "sent", "the next message is not carried")
        cpu = idle_cpu(a, 1.0)
        expect(cpu < 0.2, f"the sender used {cpu:.2f} s of CPU in 1 s after the refusal")
        log = a.log()
        expect(log.count("dropped") == 1, f"the drop is not logged once:\n{log[-1000:]}")
        expect("< got fwd: small" in log, "the message after the drop did not arrive")
    finally:
        a.stop()
        b.stop()


class RefusingPeer:
    """A websocket server that closes with `code` when a message contains `bad`, else answers `ok N`.
    Counts the connections it accepted."""

    def __init__(self, port):
        self.port = port
        self.connections = 0
        self.received = []

    async def handler(self, ws, path=None):
        self.connections += 1
        try:
            await self.serve(ws)
        except websockets.exceptions.ConnectionClosed:
            pass  # the node under test stopped

    async def serve(self, ws):
        async for message in ws:
            self.received.append(message)
            if message.startswith("bad"):
                code = int(message.split()[1])
                await ws.close(code, "refused by the test peer")
                return
            if message == "big-reply":
                await ws.send("r" * 70_000)  # over the 64 KiB a meshrun link takes
                continue
            if message == "binary-reply":
                await ws.send(b"\x00\x01")
                continue
            if message.startswith("close"):
                await ws.close(1000, "")  # a clean close, before any reply
                return
            await ws.send(f"ok {message}")


def run_with_peer(peer, body):
    async def main():
        async with websockets.serve(peer.handler, HOST, peer.port):
            return await asyncio.get_running_loop().run_in_executor(None, body)
    return asyncio.run(main())


def check_refused_codes(meshrun):
    """A peer's close with 1003, 1007 or 1009 over a message drops that message, once; the next goes."""
    pa, pp = free_port(), free_port()
    mesh = write_mesh(f"""
node a at {HOST}:{pa} {{ on go -> {{ send value to p/in; ack "sent" }} }}
node p at {HOST}:{pp} {{ on in -> ack "unused: a Python peer answers here" }}
""")
    peer = RefusingPeer(pp)

    def body():
        a = Node(meshrun, mesh, "a", wait_port=pa)
        try:
            for code in (1003, 1007, 1009):
                reply = asyncio.run(ask(pa, "go", f"bad {code}"))
                expect(reply.startswith("error: the message to p/in was dropped") and str(code) in reply,
                       f"close {code}: the firing's reply is {reply!r}")
                expect(asyncio.run(ask(pa, "go", f"next-{code}")) == "sent", f"after {code}: not carried")
            cpu = idle_cpu(a, 1.0)
            expect(cpu < 0.2, f"the sender used {cpu:.2f} s of CPU in 1 s")
            log = a.log()
            for code in (1003, 1007, 1009):
                expect(log.count(f"bad {code}") == 1, f"`bad {code}` was sent {log.count(f'bad {code}')} times")
                expect(f"closed the connection: {code} (refused by the test peer)" in log, f"{code} not named")
            return None
        finally:
            a.stop()

    run_with_peer(peer, body)
    for code in (1003, 1007, 1009):
        expect(peer.received.count(f"bad {code}") == 1, f"the peer got `bad {code}` more than once: {peer.received}")
        expect(f"next-{code}" in peer.received, f"the peer never got next-{code}")


def check_clean_close_backs_off(meshrun):
    """A peer that closes cleanly over every message is retried with backoff, logged once."""
    pa, pp = free_port(), free_port()
    mesh = write_mesh(f"""
node a at {HOST}:{pa} {{ on go -> {{ ack "taken"; send value to p/in }} }}
node p at {HOST}:{pp} {{ on in -> ack "unused" }}
""")
    peer = RefusingPeer(pp)

    def body():
        a = Node(meshrun, mesh, "a", args=["--grace", "0"], wait_port=pa)
        try:
            expect(asyncio.run(ask(pa, "go", "close")) == "taken", "no reply")
            cpu = idle_cpu(a, 3.0)
            expect(cpu < 0.3, f"the sender used {cpu:.2f} s of CPU in 3 s of retries")
            # The status page says why the link is not up.
            with urllib.request.urlopen(f"http://{HOST}:{pa}/", timeout=STEP) as r:
                link = json.loads(r.read())["links"][0]
            expect(link["state"] != "up" and "closed the connection" in link.get("why", ""),
                   f"the link's status while the peer refuses: {link}")
            return a.log()
        finally:
            a.stop(timeout=STEP)

    log = run_with_peer(peer, body)
    # 50 ms doubling to 2 s (each pause between half and all of it): at most ~12 tries in 3 s.
    expect(2 <= peer.connections <= 15, f"{peer.connections} connections in 3 s")
    expect(log.count("closed the connection") <= 2, f"a line per attempt:\n{log[-1500:]}")


def check_no_such_channel_and_going_away(meshrun):
    """A 404 from the peer says it has no such channel; a peer that stops (1001) is noticed then."""
    pa, pb = free_port(), free_port()
    mesh_a = write_mesh(f"""
node a at {HOST}:{pa} {{ on go -> {{ ack "taken"; send value to b/in }} }}
node b at {HOST}:{pb} {{ on in -> ack "ok" }}
""")
    mesh_b = write_mesh(f"""
node a at {HOST}:{pa} {{ on go -> ack "unused" }}
node b at {HOST}:{pb} {{ on other -> ack "ok" }}
""")
    wrong_b = Node(meshrun, mesh_b, "b", wait_port=pb)
    a = Node(meshrun, mesh_a, "a", wait_port=pa)
    try:
        asyncio.run(ask(pa, "go", "1"))
        a.wait_for_line("b has no channel `in`", STEP)
        wrong_b.stop()
        b = Node(meshrun, mesh_a, "b", wait_port=pb)
        a.wait_for_line("connected to b/in again", STEP)
        b.stop()
        a.wait_for_line("b/in closed the connection: 1001 (node stopping)", 2.0)
        # A new kind of failure in this outage is logged too, not only counted.
        wrong_b = Node(meshrun, mesh_b, "b", wait_port=pb)
        asyncio.run(ask(pa, "go", "2"))
        deadline = time.monotonic() + STEP
        while a.log().count("b has no channel `in`") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        expect(a.log().count("b has no channel `in`") == 2, f"the second 404 is not logged:\n{a.log()[-1500:]}")
        wrong_b.stop()
    finally:
        a.stop()


def check_out_of_descriptors(meshrun):
    """Near the open-file limit new connections are refused with 503 (logged once) instead of taking the
    descriptors links need; no spinning; connections are taken again once clients leave."""
    pb = free_port()
    mesh = write_mesh(f"""
node b at {HOST}:{pb} {{ on in -> ack "ok" }}
""")
    b = Node(meshrun, mesh, "b", limit_files=40, wait_port=pb)
    sockets = []
    try:
        for _ in range(45):
            sockets.append(socket.create_connection((HOST, pb), timeout=STEP))
        b.wait_for_line("refusing new connections (HTTP 503)", STEP)
        sockets[-1].settimeout(STEP)
        expect(sockets[-1].recv(100).startswith(b"HTTP/1.1 503"), "the last connection is not answered 503")
        cpu = idle_cpu(b, 2.0)
        expect(cpu < 0.3, f"the node used {cpu:.2f} s of CPU in 2 s at the descriptor limit")
        for s in sockets:
            s.close()
        sockets = []
        expect(asyncio.run(ask(pb, "in", "1")) == "ok", "no answer after descriptors were freed")
        b.wait_for_line("taking new connections again", STEP)
        log = b.log()
        expect(log.count("refusing new connections") == 1, f"logged more than once:\n{log[-1000:]}")
    finally:
        for s in sockets:
            s.close()
        b.stop()


def check_bounded_queue_and_grace(meshrun):
    """A dead peer: the queue stops at its bound and the client is slowed, memory stays small; the
    peer's return delivers everything; SIGTERM names what could not be delivered."""
    pa, pb = free_port(), free_port()
    mesh = write_mesh(f"""
node a at {HOST}:{pa} {{ on go -> {{ ack "taken"; send value to b/in }} }}
node b at {HOST}:{pb} {{ on in -> {{ log "got {{value}}"; ack "ok" }} }}
""")
    a = Node(meshrun, mesh, "a", args=["--queue-limit", "100", "--grace", "0.5"], wait_port=pa)
    b = None
    try:
        async def flood(count, seconds):
            """Sends up to `count` messages, pipelined, for at most `seconds`; returns the replies read."""
            replies = 0
            async with websockets.connect(f"ws://{HOST}:{pa}/go", close_timeout=0.2) as ws:
                async def reader():
                    nonlocal replies
                    async for _ in ws:
                        replies += 1
                read = asyncio.ensure_future(reader())
                deadline = time.monotonic() + seconds
                for i in range(count):
                    if time.monotonic() > deadline:
                        break
                    try:
                        await asyncio.wait_for(ws.send(str(i)), max(0.01, deadline - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
                await asyncio.sleep(0.3)
                read.cancel()
            return replies

        replies = asyncio.run(flood(10_000, 2.0))
        # A session answers one message past the bound before it stops reading.
        expect(100 <= replies <= 102, f"{replies} messages taken while the queue holds 100")
        if not a.sanitized():
            expect(a.rss_mib() < 20, f"the sender holds {a.rss_mib():.1f} MiB")
        log = a.log()
        expect(log.count("the queue to b/in is full (100 messages)") == 1, f"the full queue:\n{log[-1000:]}")
        b = Node(meshrun, mesh, "b", wait_port=pb)
        a.wait_for_line("connected to b/in again", STEP)
        # Every message taken arrives, once and in order: those answered, and those the client had
        # sent before it hung up (still in the socket when the queue had room again).
        deadline, seen = time.monotonic() + STEP, -1
        while time.monotonic() < deadline:
            got = [int(line.split("got ")[1]) for line in b.log().splitlines() if "] got " in line]
            if len(got) == seen and seen >= replies:
                break
            seen = len(got)
            time.sleep(0.3)
        expect(got == list(range(len(got))) and len(got) >= replies,
               f"b got {len(got)} messages, {replies} answered; first out of order: "
               f"{next((i for i, v in enumerate(got) if v != i), None)}")
        expect(a.log().count("< ok") == len(got), f"{a.log().count('< ok')} acknowledged, {len(got)} received")
        b.stop()
        b = None
        for i in range(7):
            asyncio.run(ask(pa, "go", f"late-{i}"))
        started = time.monotonic()
        expect(a.stop() == 0, "exit status after SIGTERM")
        took = time.monotonic() - started
        log = a.log()
        expect("warning: 7 messages to b/in were not delivered" in log, f"no warning:\n{log[-1000:]}")
        expect(took < 2.5, f"stopping took {took:.1f} s with a grace of 0.5 s")
    finally:
        a.stop()
        if b:
            b.stop()


def check_bind(meshrun):
    """--bind is parsed and used, or refused (exit 2): never a wider bind than asked."""
    pb = free_port()
    mesh = write_mesh(f"""
node b at {HOST}:{pb} {{ on in -> ack "ok" }}
""")
    b = Node(meshrun, mesh, "b", args=["--bind", "[::1]"])
    try:
        b.wait_for_line(f"listening on ws://[::1]:{pb}", STEP)
    finally:
        b.stop()
    b = Node(meshrun, mesh, "b", args=["--bind", "::1"])
    try:
        b.wait_for_line(f"listening on ws://[::1]:{pb}", STEP)
    finally:
        b.stop()
    for bad, why in (("bogus.host.invalid", "is not an IP address"), ("1.2.3.4.5", "is not an IPv4 address"),
                     ("0", "is not an IPv4 address"), ("127.1", "is not an IPv4 address"), ("", "an empty address")):
        run = subprocess.run([meshrun, "run", mesh, "--node", "b", "--bind", bad], capture_output=True,
                             text=True, timeout=STEP)
        expect(run.returncode == 2, f"--bind {bad!r}: exit {run.returncode}: {run.stdout}{run.stderr}")
        expect(why in run.stderr, f"--bind {bad!r}: {run.stderr}")
        expect("listening" not in run.stdout, f"--bind {bad!r} listened: {run.stdout}")


def check_declared_host_not_here(meshrun):
    """A node whose host is not this machine is refused with the way out, not bound elsewhere."""
    mesh = write_mesh("node b at 10.20.0.31:9803 { on in -> ack \"ok\" }\n")
    run = subprocess.run([meshrun, "run", mesh, "--node", "b"], capture_output=True, text=True, timeout=STEP)
    expect(run.returncode == 1, f"exit {run.returncode}")
    expect("not an address of this machine" in run.stderr and "--bind" in run.stderr, run.stderr)


def check_up_runs_any_fleet(meshrun):
    """`up` runs a fleet whose hosts are elsewhere and share a port, links pointed where nodes listen."""
    port = free_port()
    mesh = write_mesh(f"""
node src {{ every 100ms 3 times -> send tick to one/in }}
node one at pi-a.invalid:{port} {{ on in -> {{ send "{{value}}" to two/in; ack "one" }} }}
node two at 10.20.0.31:{port} {{ on in -> ack "two" }}
""")
    log_path = tempfile.mktemp(suffix=".log")
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([meshrun, "up", mesh, "--color", "never", "--only", "src,one,two,two"],
                                stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + STEP
            while time.monotonic() < deadline and open(log_path).read().count("< one") < 3:
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(STEP)
    log = open(log_path).read()
    expect(proc.returncode == 0, f"exit {proc.returncode}:\n{log}")
    expect(f"[ one ] listening on ws://127.0.0.1:{port}" in log, log)
    expect(f"(declared 10.20.0.31:{port}: port {port} is taken by `one`)" in log, log)
    expect(log.count("< one") == 3 and log.count("< two") == 3, log)


def check_refused_replies(meshrun):
    """A reply the link refuses (over 64 KiB, binary) drops that message once; it is not sent again."""
    pa, pp = free_port(), free_port()
    mesh = write_mesh(f"""
node a at {HOST}:{pa} {{ on go -> {{ send value to p/in; ack "sent" }} }}
node p at {HOST}:{pp} {{ on in -> ack "unused: a Python peer answers here" }}
""")
    peer = RefusingPeer(pp)

    def body():
        a = Node(meshrun, mesh, "a", args=["--grace", "0"], wait_port=pa)
        try:
            for message, why in (("big-reply", "the reply of p/in is over the limit"),
                                 ("binary-reply", "p/in replied with a binary message")):
                reply = asyncio.run(ask(pa, "go", message))
                expect(reply.startswith("error: the message to p/in was dropped") and why in reply, f"{message}: {reply!r}")
                expect(asyncio.run(ask(pa, "go", f"after-{message}")) == "sent", f"after {message}: not carried")
            expect(idle_cpu(a, 1.0) < 0.2, "the sender spins")
        finally:
            a.stop()

    run_with_peer(peer, body)
    for message in ("big-reply", "binary-reply"):
        expect(peer.received.count(message) == 1, f"`{message}` was sent {peer.received.count(message)} times")
        expect(f"after-{message}" in peer.received, f"the message after {message} never arrived")


def check_firing_bounds(meshrun):
    """A firing that would run for ever is stopped with an error reply, the node answers meanwhile and
    stops on SIGTERM; `after` cannot pile up without bound."""
    pa = free_port()
    mesh = write_mesh(f"""
node a at {HOST}:{pa} {{
    pin p = out gpiochip0 1
    on spin -> {{ repeat 1000000 {{ repeat 1000000 {{ toggle p }} }}; ack "done" }}
    on later -> {{ repeat 20000 {{ after 1h -> toggle p }}; ack "scheduled" }}
    on ping -> ack "pong"
}}
""")
    a = Node(meshrun, mesh, "a", args=["--sim", "--grace", "0"], wait_port=pa)
    try:
        reply = asyncio.run(ask(pa, "spin", "1"))
        expect(reply.startswith("error: stopped after 10000000 statements"), f"spin: {reply!r}")
        expect(asyncio.run(ask(pa, "ping", "1")) == "pong", "no answer after the stopped firing")
        reply = asyncio.run(ask(pa, "later", "1"))
        expect("10000 delays (`after`) are pending on this node already" in reply, f"later: {reply!r}")
        rss = a.rss_mib()
        reply = asyncio.run(ask(pa, "later", "1"))
        expect("delays (`after`) are pending" in reply, f"later, again: {reply!r}")
        expect(a.rss_mib() - rss < 2, f"memory grew {a.rss_mib() - rss:.1f} MiB for refused delays")
        log = a.log()
        expect("error: `on spin` failed: stopped after" in log, log[-1000:])
        expect(a.stop() == 0, "exit status after SIGTERM")
    finally:
        a.stop()


def check_held_counts_waiting_senders(meshrun):
    """The shutdown warning counts the messages waiting for room in a full queue too."""
    pa, pb = free_port(), free_port()
    mesh = write_mesh(f"""
node a at {HOST}:{pa} {{ on go -> {{ send value to b/in; ack "sent" }} }}
node b at {HOST}:{pb} {{ on in -> ack "ok" }}
""")
    a = Node(meshrun, mesh, "a", args=["--queue-limit", "1", "--grace", "0.2"], wait_port=pa)
    try:
        async def five():
            clients = [await websockets.connect(f"ws://{HOST}:{pa}/go", close_timeout=0.1) for _ in range(5)]
            for i, ws in enumerate(clients):
                await ws.send(str(i))
            await asyncio.sleep(0.5)
            return clients
        asyncio.run(five())
        expect(a.stop() == 0, "exit status")
        log = a.log()
        expect("warning: 5 messages to b/in were not delivered" in log, log[-1500:])
    finally:
        a.stop()


def check_only_keeps_remote_ports(meshrun):
    """`up --only` never binds a port that a node running elsewhere on this machine declares."""
    port = free_port()
    mesh = write_mesh(f"""
node a at pi-a.invalid:{port} {{ on go -> {{ send value to b/in; ack "sent" }} }}
node b at localhost:{port} {{ on in -> ack "from b" }}
""")
    log_path = tempfile.mktemp(suffix=".log")
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([meshrun, "up", mesh, "--color", "never", "--only", "a", "--grace", "0"],
                                stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + STEP
            while time.monotonic() < deadline and "listening" not in open(log_path).read():
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(STEP)
    log = open(log_path).read()
    expect(f"(declared pi-a.invalid:{port}: port {port} is taken by `b`)" in log, log)


def check_http(meshrun):
    """Plain HTTP is answered as it should be: HEAD and GET / (status), 405, 426 for a channel, 404, 431."""
    pb = free_port()
    mesh = write_mesh(f"node b at {HOST}:{pb} {{ on in -> ack \"ok\" }}\n")
    b = Node(meshrun, mesh, "b", wait_port=pb)

    def status(request):
        with socket.create_connection((HOST, pb), timeout=STEP) as s:
            s.sendall(request)
            return s.recv(200).split(b"\r\n", 1)[0].decode()

    try:
        expect(status(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 200 OK", "GET /")
        expect(status(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 200 OK", "HEAD /")
        expect(status(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n") == "HTTP/1.1 405 Method Not Allowed", "POST /")
        expect(status(b"GET /in HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 426 Upgrade Required", "GET /in")
        expect(status(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 404 Not Found", "GET /nope")
        big = b"GET / HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"
        expect(status(big) == "HTTP/1.1 431 Request Header Fields Too Large", "a 20 KB header")
    finally:
        b.stop()


def check_silent_handshake(meshrun):
    """A peer that takes the connection but never answers the handshake is given up after 5 s, said once."""
    pa, pb = free_port(), free_port()
    mesh = write_mesh(f"""
node a at {HOST}:{pa} {{ every 100ms 1 times -> send "x" to b/in }}
node b at {HOST}:{pb} {{ on in -> ack "ok" }}
""")
    with socket.socket() as silent:
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind((HOST, pb))
        silent.listen(16)  # the kernel accepts; nobody ever answers
        a = Node(meshrun, mesh, "a", args=["--grace", "0"], wait_port=pa)
        try:
            line = f"waiting for b/in at {HOST}:{pb} (no answer to the websocket handshake within 5s); retrying"
            a.wait_for_line(line, 8)
            time.sleep(1)
            expect(a.log().count(line) == 1, f"expected {line!r} once:\n{a.log()}")
        finally:
            a.stop()


def check_up_grace_serves_its_own(meshrun):
    """On SIGINT, `up` goes on serving while links deliver to nodes of the same process."""
    pa = free_port()
    mesh = write_mesh(f"""
node a at {HOST}:{pa} {{ on go -> {{ repeat 5000 {{ send "{{value}}" to b/in }}; ack "done" }} }}
node b {{ on in -> {{ log "got {{value}}"; ack "ok" }} }}
""".replace("node b {", f"node b at {HOST}:{free_port()} {{"))
    log_path = tempfile.mktemp(suffix=".log")
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([meshrun, "up", mesh, "--color", "never"], stdout=log_file, stderr=subprocess.STDOUT)
        try:
            expect(wait_for_port(pa, proc), "a does not listen")

            async def go():
                ws = await websockets.connect(f"ws://{HOST}:{pa}/go", open_timeout=STEP)
                await ws.send("1")
                await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGINT)  # mid-burst
                await asyncio.sleep(0.5)
                ws.transport.abort()
            asyncio.run(go())
            proc.wait(STEP)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = open(log_path).read()
    expect(proc.returncode == 0, f"exit {proc.returncode}:\n{log[-2000:]}")
    expect("not delivered" not in log, f"messages were lost:\n{log[-2000:]}")
    got = log.count("[ b ] got 1")
    expect(got == 5000, f"b got {got} of 5000:\n{log[-2000:]}")


def check_metrics_port(meshrun):
    """--metrics: checked before anything listens; 405 with Allow, 431, a share of connections of its own."""
    pb = free_port()
    mesh = write_mesh(f"node b at {HOST}:{pb} {{ on in -> ack \"ok\" }}\n")
    for bad, says in [("abc", "`abc` is not a port"), (str(pb), f"port {pb} is node `b`'s"), ("[::1]", "give a port"),
                      ("::1", "written [ADDR]:PORT")]:
        out = subprocess.run([meshrun, "run", mesh, "--node", "b", "--sim", "--metrics", bad], capture_output=True,
                             text=True, timeout=STEP)
        expect(out.returncode == 2 and says in out.stderr and "listening" not in out.stdout,
               f"--metrics {bad}: exit {out.returncode}: {out.stdout}{out.stderr}")
    pm = free_port()
    b = Node(meshrun, mesh, "b", args=["--sim", "--metrics", str(pm)], limit_files=64, wait_port=pb)

    def status(port, request):
        with socket.create_connection((HOST, port), timeout=STEP) as s:
            s.sendall(request)
            return s.recv(400).decode(errors="replace")

    stalled = []
    try:
        expect(status(pm, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith("HTTP/1.1 200 OK"), "GET /metrics")
        reply = status(pm, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        expect(reply.startswith("HTTP/1.1 405") and "Allow: GET, HEAD" in reply, f"POST /metrics: {reply}")
        big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"
        expect(status(pm, big).startswith("HTTP/1.1 431"), "a 20 KB header on the metrics port")
        # Scrapers that stall take at most a quarter of the connections: the node still serves.
        for _ in range(40):
            s = socket.create_connection((HOST, pm), timeout=STEP)
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            stalled.append(s)
        time.sleep(0.3)
        expect(status(pb, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith("HTTP/1.1 200 OK"),
               "the node's /healthz while scrapers stall")
        expect("refusing new connections" not in b.log(), b.log())
        for s in stalled:
            s.close()
        stalled.clear()
        # Nor do clients that crowd the node keep the scraper out.
        for _ in range(40):
            stalled.append(socket.create_connection((HOST, pb), timeout=STEP))
        time.sleep(0.3)
        expect("refusing new connections" in b.log(), "the node's crowd did not reach its bound:\n" + b.log())
        expect(status(pm, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith("HTTP/1.1 200 OK"),
               "/metrics while clients crowd the node")
    finally:
        for s in stalled:
            s.close()
        b.stop()


CHECKS = [
    check_refused_replies,
    check_firing_bounds,
    check_held_counts_waiting_senders,
    check_only_keeps_remote_ports,
    check_http,
    check_oversized_forward,
    check_refused_codes,
    check_clean_close_backs_off,
    check_no_such_channel_and_going_away,
    check_out_of_descriptors,
    check_bounded_queue_and_grace,
    check_bind,
    check_declared_host_not_here,
    check_up_runs_any_fleet,
    check_silent_handshake,
    check_up_grace_serves_its_own,
    check_metrics_port,
]


def main():
    meshrun = os.path.abspath(sys.argv[1])
    sys.exit(1 if run_checks([(check.__name__, lambda check=check: check(meshrun)) for check in CHECKS]) else 0)


if __name__ == "__main__":
    main()
