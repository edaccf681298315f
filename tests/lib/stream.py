"""A stream of numbered messages through two nodes, for the delivery proofs (tests/wire/restart_test.py,
tests/wire/partition_test.py): clients that speak meshrun.1 to a's channel `in`, and the checks of
what b fired.

    node a at HOST:PA { on in -> { send value to b/data; ack "a {value}" } }
    node b at HOST:PB { on data -> { log "got {value}"; ack "b {value}" } }

a replies to a client only once b acknowledged, so a client has one message in flight: SENDERS
clients interleave the numbers 1..N (client k sends k+1, k+1+SENDERS, ...), each its own
Meshrun-Sender, and sends a message again marked `r` on a new connection after its connection
dropped, so that a restarted `a` answers a resend once too (docs/delivery.md).

    from stream import Client, Firings, loopback_port, stream_mesh
"""

import asyncio
import re
import socket
import time

import websockets
import websockets.exceptions

from checks import HOST, CheckFailed, expect

SENDERS = 4
REPLY_TIMEOUT = 30.0  # a reply slower than this is a hang: a restart or a reconnect takes seconds
RECONNECT_FOR = 30.0  # how long a client tries to reach a restarted `a`
REFIRED = "counted in meshrun_delivery_refired_total"  # the log line of each refire (docs/delivery.md)
GOT = re.compile(r"\bgot (\d+)$")


def stream_mesh(host_a, pa, host_b, pb):
    return f"""node a at {host_a}:{pa} {{ on in -> {{ send value to b/data; ack "a {{value}}" }} }}
node b at {host_b}:{pb} {{ on data -> {{ log "got {{value}}"; ack "b {{value}}" }} }}
"""


def loopback_port(rng, taken=()):
    """A free port in 20000-24999: below the ephemeral range, where outgoing connections take theirs."""
    for _ in range(200):
        port = rng.randrange(20000, 25000)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
                return port
            except OSError:
                continue
    raise CheckFailed("no free port in 20000-24999")


class Client:
    """One meshrun.1 sender into a's channel `in`: its numbers in order, each until its reply came.
    `progress[0]` counts the replies of every client; `make_socket()`, when given, makes the
    connected socket to a (in another network namespace, say)."""

    def __init__(self, index, host, port, boot, messages, progress, make_socket=None):
        self.index, self.host, self.port, self.progress = index, host, port, progress
        self.numbers = list(range(index + 1, messages + 1, SENDERS))
        self.headers = {"Meshrun-Sender": f"proof/client{index}", "Meshrun-Boot": boot}
        self.make_socket = make_socket
        self.reconnects = 0

    async def connect(self):
        deadline = time.monotonic() + RECONNECT_FOR
        while True:
            try:
                sock = self.make_socket() if self.make_socket else None
                ws = await websockets.connect(f"ws://{self.host}:{self.port}/in", sock=sock,
                                              subprotocols=["meshrun.1"], extra_headers=self.headers,
                                              open_timeout=5, ping_interval=None, close_timeout=1)
                expect(ws.subprotocol == "meshrun.1", f"a chose subprotocol {ws.subprotocol!r}")
                return ws
            except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake) as e:
                if time.monotonic() > deadline:
                    raise CheckFailed(f"client {self.index} could not reach a for {RECONNECT_FOR:.0f} s: {e}")
                await asyncio.sleep(0.05)

    async def run(self):
        seq = 0
        sent = False  # the current message went out at least once: send it again marked `r`
        while seq < len(self.numbers):
            ws = await self.connect()
            try:
                while seq < len(self.numbers):
                    value = self.numbers[seq]
                    await ws.send(f"{'r' if sent else 'm'} {seq + 1} {value}")
                    sent = True
                    try:
                        frame = await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT)
                    except asyncio.TimeoutError:
                        raise CheckFailed(f"client {self.index}: no reply to message {seq + 1} ({value}) "
                                          f"within {REPLY_TIMEOUT:.0f} s") from None
                    expect(frame == f"a {seq + 1} a {value}",
                           f"client {self.index}: reply {frame!r} to message {seq + 1} ({value})")
                    seq += 1
                    sent = False
                    self.progress[0] += 1
            except websockets.exceptions.ConnectionClosed:
                self.reconnects += 1  # a was killed: a new connection, the message again
            finally:
                await ws.close()


class Firings:
    """What b fired (its log, every run's in order) and the refires a and b logged."""

    def __init__(self, a_log, b_log):
        self.a_log, self.b_log = a_log, b_log
        self.fired = {}  # number: times fired
        self.firsts = []  # the numbers in the order of their first firing
        for line in b_log.splitlines():
            m = GOT.search(line)
            if m:
                n = int(m.group(1))
                if n not in self.fired:
                    self.firsts.append(n)
                self.fired[n] = self.fired.get(n, 0) + 1
        self.duplicates = sum(count - 1 for count in self.fired.values())
        self.refires_at = {"a": a_log.count(REFIRED), "b": b_log.count(REFIRED)}
        self.refires = self.refires_at["a"] + self.refires_at["b"]

    def check(self, messages):
        """Every number 1..messages fired, each client's numbers first fired in order, and no more
        second firings than refires logged (a refire at a sends the message on to b again)."""
        missing = [n for n in range(1, messages + 1) if n not in self.fired]
        refused = [line for line in self.a_log.splitlines() if "< error:" in line]
        expect(not missing, f"{len(missing)} of {messages} messages never fired at b, the first {missing[:10]}" +
               (f"; b answered a {len(refused)} times with an error, the first:\n" + "\n".join(refused[:5])
                if refused else ""))
        strangers = sorted(set(self.fired) - set(range(1, messages + 1)))
        expect(not strangers, f"b fired numbers nobody sent: {strangers[:10]}")
        for k in range(SENDERS):
            mine = [n for n in self.firsts if n % SENDERS == (k + 1) % SENDERS]
            disorder = [(x, y) for x, y in zip(mine, mine[1:]) if y < x]
            expect(not disorder, f"client {k}'s messages first fired out of order at b: {disorder[:5]}")
        twice = sorted(n for n, count in self.fired.items() if count > 1)
        expect(self.duplicates <= self.refires,
               f"{self.duplicates} second firings at b ({twice[:20]}) but {self.refires} refires logged at a and b:\n" +
               "".join(line + "\n" for line in (self.a_log + self.b_log).splitlines() if REFIRED in line))
