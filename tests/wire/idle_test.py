#!/usr/bin/python3
"""A node's idle sweep (docs/delivery.md, `limits { idle D }`), over plain TCP and over TLS: a
client silent for half of D is pinged; one that answers the pings stays connected for as long as it
likes; one that answers nothing is closed after D (at most a quarter of D later); a client whose
message takes longer than D to fire (its rule waits for a peer that is down) is not idle and is
answered. Clients that never read their replies: given back when they reset, closed by the sweep
when they stay; the node goes on serving.

    /usr/bin/python3 tests/wire/idle_test.py path/to/meshrun

Raw socket clients (tests/lib/wsraw.py) on loopback ports the system picks; the TLS checks are
skipped without the openssl command (tests/lib/make_certs.sh makes the certificates). Prints one
line per check and `N passed, M failed` last; exits 1 on any failure.
"""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from checks import STEP, CheckFailed, expect, free_port, run_checks  # noqa: E402
from nodes import Node, write_mesh  # noqa: E402
from wsraw import Ended, RawClient, frame  # noqa: E402

IDLE = 2.0  # seconds: the node's `limits { idle 2s }`
SLOW = 3.0  # seconds the peer of a `slow` message's rule is down: longer than IDLE

MESH = """\
mesh idle
limits {{ idle 2s }}
{tls}
node idle at 127.0.0.1:{port} {{
    on echo -> ack "{{value}}"
    on slow -> {{ send "hello" to late/hello; ack "late" }}
}}
node late at 127.0.0.1:{late} {{
    on hello -> ack "hi"
}}
"""


def pinged_then_closed(client):
    """Reads the node's frames, answering nothing, until it ends the connection: the seconds from
    the start to its ping and to its end."""
    start, ping = time.monotonic(), None
    try:
        while True:
            _, opcode, _ = client.read_frame()
            if opcode == 0x9 and ping is None:
                ping = time.monotonic() - start
    except (Ended, ConnectionResetError, ssl.SSLError, OSError):
        pass
    return ping, time.monotonic() - start


def check_dead(port, wrap):
    with RawClient(port, wrap=wrap, timeout=3 * IDLE) as c:
        c.round_trip("hello")
        ping, end = pinged_then_closed(c)
    print(f"      silent client: pinged after {ping:.2f} s, closed after {end:.2f} s (idle {IDLE:.0f} s)", flush=True)
    expect(ping is not None and IDLE / 2 - 0.1 <= ping <= IDLE * 3 / 4 + 0.3,
           f"the ping came after {ping} s, expected {IDLE / 2} to {IDLE * 3 / 4} s")
    expect(IDLE - 0.1 <= end <= IDLE * 5 / 4 + 0.5, f"closed after {end:.2f} s, expected {IDLE} to {IDLE * 5 / 4} s")


def check_alive(port, wrap):
    with RawClient(port, wrap=wrap, timeout=IDLE) as c:
        pings, until = 0, time.monotonic() + 3 * IDLE
        while time.monotonic() < until:
            try:
                _, opcode, payload = c.read_frame()
            except CheckFailed:
                continue  # nothing within the read's timeout: silence is what is tested
            expect(opcode == 0x9, f"a frame of opcode {opcode:#x} from the node, expected pings only")
            pings += 1
            c.send_frame(0xA, payload)
        c.round_trip("still here")
    print(f"      a client that answers pings: {pings} pings in {3 * IDLE:.0f} s, still connected", flush=True)
    expect(pings >= 2, f"{pings} pings in {3 * IDLE} s of silence")


def check_slow(meshrun, mesh, port, late, wrap):
    with RawClient(port, path="/slow", wrap=wrap, timeout=STEP) as c:
        start = time.monotonic()
        c.send_frame(0x1, b"take your time")
        time.sleep(SLOW)
        peer = Node(meshrun, mesh, "late", wait_port=late)
        try:
            reply = c.read_text()
        finally:
            peer.stop()
        took = time.monotonic() - start
    print(f"      a firing of {SLOW:.0f} s: answered `{reply.decode()}` after {took:.2f} s", flush=True)
    expect(reply == b"late", f"the slow message was answered {reply!r}")


def connections(port, ctx):
    """meshrun_connections_open of the node (this request's connection included)."""
    url = f"{'https://localhost' if ctx else 'http://127.0.0.1'}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=STEP, context=ctx) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("meshrun_connections_open{"):
                return int(float(line.split()[-1]))
    raise CheckFailed("no meshrun_connections_open in the node's /metrics")


def flood(port, wrap, seconds):
    """A client that sends as fast as it can for `seconds` and reads nothing; how many it sent."""
    c = RawClient(port, wrap=wrap, timeout=0.5)
    sent, message = 0, frame(0x1, b"x" * 1000)
    until = time.monotonic() + seconds
    try:
        while time.monotonic() < until:
            c.send(message)
            sent += 1
    except (socket.timeout, ssl.SSLError, OSError):
        pass  # the node stopped reading it: its replies fill the socket
    return c, sent


def wait_connections(port, ctx, most, seconds):
    """Seconds until the node has at most `most` connections open, or None."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if connections(port, ctx) <= most:
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def check_never_reads(port, wrap, ctx):
    """Clients that send as fast as they can and never read a reply: those that then reset are
    given back at once, though the node's writes to them were still going; one that stays is
    closed by the idle sweep once its writes have stalled for `idle`. The node goes on serving."""
    before = connections(port, ctx)
    for _ in range(4):
        c, sent = flood(port, wrap, 0.5)
        c.reset()
        expect(sent > 0, "not one message went out")
    took = wait_connections(port, ctx, before, 1.0)
    print("      4 clients flooded and reset: their connections " +
          (f"given back after {took:.2f} s" if took is not None else "not given back"), flush=True)
    expect(took is not None, f"{connections(port, ctx) - before} connections still open 1 s after the resets")
    c, sent = flood(port, wrap, 1.0)
    try:
        took = wait_connections(port, ctx, before, IDLE * 5 / 4 + 1.0)
    finally:
        c.reset()
    print(f"      a client that sent {sent} messages and reads nothing: " +
          (f"closed {took:.2f} s later" if took is not None else "still connected"), flush=True)
    expect(took is not None, f"a client that reads nothing still connected {IDLE * 5 / 4 + 1.0} s after it stopped")
    with RawClient(port, wrap=wrap) as other:
        other.round_trip("after them")


def metric(port, ctx, name):
    """The sum of a counter's samples in the node's /metrics."""
    url = f"{'https://localhost' if ctx else 'http://127.0.0.1'}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=STEP, context=ctx) as r:
        return sum(float(l.split()[-1]) for l in r.read().decode().splitlines() if l.startswith(name + "{"))


def check_meshrun1_limit(port, wrap):
    """A meshrun.1 message may not be longer than `limits { message }` (64 KiB here), though its
    frame may be, by the `m SEQ ` header: 1009."""
    numbered = b"Sec-WebSocket-Protocol: meshrun.1\r\nMeshrun-Sender: idle/test\r\nMeshrun-Boot: b1\r\n"
    with RawClient(port, wrap=wrap, headers=numbered) as c:
        c.send_frame(0x1, b"m 1 " + b"x" * 65537)
        how, code, _, _ = c.outcome()
    expect((how, code) == ("close", 1009), f"a 64 KiB + 1 byte meshrun.1 message: {how} {code}")
    with RawClient(port, wrap=wrap, headers=numbered) as c:
        c.send_frame(0x1, b"m 1 " + b"x" * 65536)  # 64 KiB: answered
        expect(c.read_text() == b"a 1 " + b"x" * 65536, "a 64 KiB meshrun.1 message not answered with itself")


def check_probes(port, ctx):
    """Connections to a TLS port that close without a word, or speak no TLS, are nobody refused for
    who they are: meshrun_unauthorized_total stays."""
    before = metric(port, ctx, "meshrun_unauthorized_total")
    for i in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=STEP) as s:
            if i % 2:
                s.sendall(b"\x16\x03\x01\x00\x05hello")  # a record that is no ClientHello
                s.recv(100)
    time.sleep(0.2)
    after = metric(port, ctx, "meshrun_unauthorized_total")
    expect(after == before, f"meshrun_unauthorized_total went from {before} to {after} with 5 probes")


def main():
    meshrun = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="meshrun-idle-")
    nodes, checks = [], []
    try:
        kinds = [("plain", "", None, None)]
        if shutil.which("openssl"):
            certs = os.path.join(tmp, "certs")
            subprocess.run(["bash", os.path.join(HERE, "..", "lib", "make_certs.sh"), certs], check=True, timeout=60)
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.path.join(certs, "ca.pem"))
            ctx.load_cert_chain(os.path.join(certs, "node.pem"), os.path.join(certs, "node.key"))
            # With `ca`: the link of the slow rule trusts the test authority (mutual TLS).
            tls = f'tls cert "{certs}/node.pem" key "{certs}/node.key" ca "{certs}/ca.pem"'
            kinds.append(("TLS", tls, lambda s: ctx.wrap_socket(s, server_hostname="localhost"), ctx))
        else:
            print("SKIPPED over TLS: the openssl command is not installed", flush=True)
        for kind, tls, wrap, ctx in kinds:
            port, late = free_port(), free_port()
            mesh = write_mesh(MESH.format(tls=tls, port=port, late=late))
            node = Node(meshrun, mesh, "idle", wait_port=port)
            nodes.append(node)
            checks += [
                (f"{kind}: a silent client is pinged after idle/2 and closed after idle", lambda p=port, w=wrap: check_dead(p, w)),
                (f"{kind}: a client that answers pings stays", lambda p=port, w=wrap: check_alive(p, w)),
                (f"{kind}: clients that never read: given back on reset, closed when idle",
                 lambda p=port, w=wrap, c=ctx: check_never_reads(p, w, c)),
                (f"{kind}: a meshrun.1 message over the message limit is 1009",
                 lambda p=port, w=wrap: check_meshrun1_limit(p, w)),
                (f"{kind}: a firing longer than idle is answered", lambda m=mesh, p=port, l=late, w=wrap: check_slow(meshrun, m, p, l, w)),
            ]
        if len(kinds) > 1:
            checks.append(("TLS: port probes are not counted as unauthorized", lambda p=port, c=ctx: check_probes(p, c)))

        def still_running():
            for node in nodes:
                expect(node.proc.poll() is None, f"a node ended: {node.log()[-2000:]}")

        failed = run_checks(checks + [("the nodes still run", still_running)])
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
