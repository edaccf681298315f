#!/usr/bin/python3
"""Delivery between nodes and who may talk to them (docs/delivery.md), on real sockets: the
meshrun.1 subprotocol and its repeats, the fleet's token, the per-node connection limit, and a dead
link noticed by its pings.

    /usr/bin/python3 tests/wire/delivery_test.py path/to/meshrun

Prints one line per check and `N passed, M failed` last; exits 1 on any failure.
"""

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import websockets
import websockets.exceptions

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import HOST, STEP, expect, free_port, run_checks  # noqa: E402
from nodes import Node, ask, write_mesh  # noqa: E402

NUMBERED = {"Meshrun-Sender": "test/client", "Meshrun-Boot": "boot1"}


async def numbered(port, channel, frames, headers=NUMBERED, timeout=STEP):
    """Sends each meshrun.1 frame and returns the replies, in order."""
    async with websockets.connect(f"ws://{HOST}:{port}/{channel}", subprotocols=["meshrun.1"],
                                  extra_headers=headers, open_timeout=timeout) as ws:
        expect(ws.subprotocol == "meshrun.1", f"the node chose subprotocol {ws.subprotocol!r}")
        replies = []
        for frame in frames:
            await ws.send(frame)
            replies.append(await asyncio.wait_for(ws.recv(), timeout))
        return replies


def http_get(port, path, token=None):
    """(status, body) of GET path."""
    request = urllib.request.Request(f"http://{HOST}:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=STEP) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def check_repeats_answered_once(meshrun):
    """A message sent again is answered with its first reply and fired once; a new boot starts afresh."""
    port = free_port()
    mesh = write_mesh(f'node n at {HOST}:{port} {{ on data -> {{ log "fired {{value}}"; ack "reply to {{value}}" }} }}\n')
    n = Node(meshrun, mesh, "n", args=["--sim", "--metrics", "0"], wait_port=port)
    try:
        replies = asyncio.run(numbered(port, "data", ["m 1 one", "r 1 one", "m 2 two", "m 1 one"]))
        expect(replies == ["a 1 reply to one", "a 1 reply to one", "a 2 reply to two", "a 1 reply to one"],
               f"replies: {replies}")
        # The same sender on a new connection: still remembered.
        replies = asyncio.run(numbered(port, "data", ["r 2 two", "m 3 three"]))
        expect(replies == ["a 2 reply to two", "a 3 reply to three"], f"replies on a second connection: {replies}")
        # A new boot of the sender numbers afresh.
        replies = asyncio.run(numbered(port, "data", ["m 1 again", "m 2 anew", "m 3 thrice"],
                                       headers={**NUMBERED, "Meshrun-Boot": "boot2"}))
        expect(replies == ["a 1 reply to again", "a 2 reply to anew", "a 3 reply to thrice"],
               f"replies to a new boot: {replies}")
        n.wait_for_line("fired again", STEP)
        log = n.log()
        for value, times in (("one", 1), ("two", 1), ("three", 1), ("again", 1), ("anew", 1), ("thrice", 1)):
            expect(log.count(f"fired {value}\n") == times, f"`{value}` fired {log.count(f'fired {value}')} times:\n{log}")
        # Plain clients keep one reply per message, unnumbered.
        expect(asyncio.run(ask(port, "data", "plain")) == "reply to plain", "a plain client's reply")
        metrics = http_get(port, "/metrics")[1]
        expect('meshrun_delivery_repeats_total{node="n",channel="data"} 3' in metrics,
               "meshrun_delivery_repeats_total: " + "".join(
                   line for line in metrics.splitlines(True) if "repeats" in line))
    finally:
        n.stop()


def check_protocol_errors(meshrun):
    """meshrun.1 without its headers is refused (400); a frame that does not parse closes with 1002."""
    port = free_port()
    mesh = write_mesh(f'node n at {HOST}:{port} {{ on data -> ack "ok" }}\n')
    n = Node(meshrun, mesh, "n", args=["--sim"], wait_port=port)
    try:
        for headers in ({}, {"Meshrun-Sender": "x"}, {"Meshrun-Sender": "x", "Meshrun-Boot": "bad boot!"}):
            try:
                asyncio.run(numbered(port, "data", [], headers=headers))
                raise AssertionError(f"meshrun.1 with headers {headers} was accepted")
            except websockets.exceptions.InvalidStatusCode as e:
                expect(e.status_code == 400, f"headers {headers}: HTTP {e.status_code}")
        for frame in ("hello", "m 0 zero", "m 01 x", "m 1", "a 1 x", "m -1 x", "m 99999999999999999999 x"):
            async def bad():
                async with websockets.connect(f"ws://{HOST}:{port}/data", subprotocols=["meshrun.1"],
                                              extra_headers=NUMBERED) as ws:
                    await ws.send(frame)
                    try:
                        await asyncio.wait_for(ws.recv(), STEP)
                    except websockets.exceptions.ConnectionClosed as e:
                        return e.code
                    return None
            code = asyncio.run(bad())
            expect(code == 1002, f"frame {frame!r}: closed with {code}")
        expect(asyncio.run(ask(port, "data", "x")) == "ok", "the node stopped serving")
    finally:
        n.stop()


def check_secret(meshrun):
    """With `secret env VAR`: 401 without the token or with another, /healthz open, the node's
    own links carry it, and a missing or empty variable is an error that names it."""
    pa, pb = free_port(), free_port()
    mesh = write_mesh(f"""secret env DELIVERY_TOKEN
node a at {HOST}:{pa} {{ on go -> {{ send value to b/in; ack "sent" }} }}
node b at {HOST}:{pb} {{ on in -> {{ log "b got {{value}}"; ack "got {{value}}" }} }}
""")
    for env, says in (({}, "is not set"), ({"DELIVERY_TOKEN": ""}, "is empty")):
        environment = {k: v for k, v in os.environ.items() if k != "DELIVERY_TOKEN"}
        environment.update(env)
        r = subprocess.run([meshrun, "run", mesh, "--node", "b", "--sim"], env=environment, capture_output=True,
                           text=True, timeout=STEP)
        expect(r.returncode == 1 and "DELIVERY_TOKEN" in r.stderr and says in r.stderr,
               f"without the variable ({says}): exit {r.returncode}, stderr {r.stderr!r}")
    token = "s3cret-token"
    b = Node(meshrun, mesh, "b", args=["--sim", "--metrics", "0"], wait_port=pb, env={"DELIVERY_TOKEN": token})
    a = Node(meshrun, mesh, "a", args=["--sim"], wait_port=pa, env={"DELIVERY_TOKEN": token})
    try:
        for path in ("/", "/metrics", "/in"):
            expect(http_get(pb, path)[0] == 401, f"GET {path} without the token is not 401")
            expect(http_get(pb, path, "wrong")[0] == 401, f"GET {path} with a wrong token is not 401")
            expect(http_get(pb, path, token + "x")[0] == 401, f"GET {path} with a longer token is not 401")
        expect(http_get(pb, "/healthz")[0] == 200, "/healthz is not open")
        expect(http_get(pb, "/", token)[0] == 200, "GET / with the token is not 200")
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            try:
                asyncio.run(numbered(pb, "in", [], headers={**NUMBERED, **headers}))
                raise AssertionError("a websocket without the token was accepted")
            except websockets.exceptions.InvalidStatusCode as e:
                expect(e.status_code == 401, f"a websocket upgrade with {headers}: HTTP {e.status_code}")
        # The node's own link carries the token: a's message reaches b.
        async def go():
            async with websockets.connect(f"ws://{HOST}:{pa}/go",
                                          extra_headers={"Authorization": f"Bearer {token}"}) as ws:
                await ws.send("hello")
                return await asyncio.wait_for(ws.recv(), STEP)
        expect(asyncio.run(go()) == "sent", "a's reply")
        b.wait_for_line("b got hello", STEP)
        log = b.log()
        expect("refused GET / from 127.0.0.1:" in log and "no token" in log and "DELIVERY_TOKEN" in log,
               f"the first refusal is not logged with the peer's address:\n{log}")
        expect(log.count("HTTP 401") <= 2, f"every refusal is logged, not once then summarised:\n{log}")
        metrics = http_get(pb, "/metrics", token)[1]
        # 3 paths, each without a token, with a wrong one and with a longer one; 2 websockets.
        expect('meshrun_unauthorized_total{node="b"} 11\n' in metrics,
               "meshrun_unauthorized_total: " + "".join(l for l in metrics.splitlines(True) if "unauthorized" in l))
    finally:
        a.stop()
        b.stop()


def check_connection_limit(meshrun):
    """`limits { connections N }`: the N+1th connection to a node is answered 503, the node serves on."""
    port = free_port()
    mesh = write_mesh(f'limits {{ connections 3 }}\nnode n at {HOST}:{port} {{ on data -> ack "ok" }}\n')
    n = Node(meshrun, mesh, "n", args=["--sim"], wait_port=port)
    held = []
    try:
        for _ in range(3):
            s = socket.create_connection((HOST, port), timeout=STEP)
            held.append(s)
        time.sleep(0.2)
        extra = socket.create_connection((HOST, port), timeout=STEP)
        extra.settimeout(STEP)
        answer = extra.recv(200).decode(errors="replace")
        extra.close()
        expect(answer.startswith("HTTP/1.1 503"), f"the 4th connection got {answer!r}")
        n.wait_for_line("limits { connections 3 }", STEP)
        for s in held:
            s.close()
        time.sleep(0.2)
        expect(asyncio.run(ask(port, "data", "x")) == "ok", "the node does not serve after its crowd left")
    finally:
        for s in held:
            s.close()
        n.stop()


def check_dead_link_noticed(meshrun):
    """A peer that takes the connection and the message, then answers nothing (not even a ping),
    is taken for dead within 5 s, and the message goes again on a new connection, marked `r`."""
    pa, pb = free_port(), free_port()
    mesh = write_mesh(f"""node a at {HOST}:{pa} {{ on go -> {{ send value to b/in; ack "sent" }} }}
node b at {HOST}:{pb} {{ on in -> ack "b" }}
""")
    frames = []

    async def peer():
        # A websocket server that answers the handshake, reads the first frame, then goes silent:
        # it stops reading, so no pong goes back.
        accepted = asyncio.Event()

        async def handler(ws, _path):
            frames.append((time.monotonic(), await ws.recv()))
            accepted.set()
            if len(frames) == 1:
                ws.transport.pause_reading()
                await asyncio.sleep(7)
            else:
                await ws.send(frames[-1][1].replace("r ", "a ", 1).split(" ", 2)[0] + " " +
                              frames[-1][1].split(" ", 2)[1] + " b")
                await asyncio.sleep(1)

        async with websockets.serve(handler, HOST, pb, subprotocols=["meshrun.1"], ping_interval=None,
                                    close_timeout=1):
            a = Node(meshrun, mesh, "a", args=["--sim"], wait_port=pa)
            try:
                sent = time.monotonic()
                async with websockets.connect(f"ws://{HOST}:{pa}/go") as ws:
                    await ws.send("x")
                    reply = await asyncio.wait_for(ws.recv(), 15)
                expect(reply == "sent", f"a's reply: {reply!r}")
                log = a.log()
                expect("answered nothing, not even a ping, for 4 s" in log, f"a's log:\n{log}")
                expect(len(frames) == 2 and frames[0][1] == "m 1 x" and frames[1][1] == "r 1 x",
                       f"frames the peer saw: {frames}")
                took = frames[1][0] - sent
                expect(took < 5 + 1.0, f"the message went again after {took:.1f} s")
            finally:
                a.stop()

    asyncio.run(peer())


def main():
    meshrun = sys.argv[1]
    checks = [
        ("repeats_answered_once", lambda: check_repeats_answered_once(meshrun)),
        ("protocol_errors", lambda: check_protocol_errors(meshrun)),
        ("secret", lambda: check_secret(meshrun)),
        ("connection_limit", lambda: check_connection_limit(meshrun)),
        ("dead_link_noticed", lambda: check_dead_link_noticed(meshrun)),
    ]
    return 1 if run_checks(checks) else 0


if __name__ == "__main__":
    sys.exit(main())
