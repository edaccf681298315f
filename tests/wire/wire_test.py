#!/usr/bin/python3
"""The wire as a stranger sees it: a `meshrun run` node against Python's websockets client and
hand-built frames.

    /usr/bin/python3 tests/wire/wire_test.py path/to/meshrun

Starts one buzzer node on a free port, on simulated pins, and checks:
  1. interop with the `websockets` package: replies, a pipelined burst in order, 404 on an unknown path;
  2. GET / status: counters and pin levels follow what was sent;
  3. bad input (binary frame, oversized message, invalid UTF-8, garbage instead of HTTP, a handshake cut
     short), each followed by a round trip from a fresh client that must still work;
  5. a second node on the same port exits 1 naming the node and the port;
  4. SIGTERM with a client connected, then SIGINT with two: close code 1001 to each, exit 0.
Prints one line per check and `N passed, M failed` last; exits 1 on any failure.

Run it with Debian's /usr/bin/python3 (apt package python3-websockets, version 10.x: the asyncio API).
"""

import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

import websockets
import websockets.exceptions

MAX_MESSAGE = 64 * 1024   # the node's limit on one message
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import HOST, STEP, CheckFailed, expect, free_port, wait_for_port  # noqa: E402

MESH = """\
# written by tests/wire/wire_test.py
mesh wire

node buzzer at 127.0.0.1:{port} {{
    pin horn = out gpiochip0 18
    action buzz {{ horn = 1; ack "buzz buzz buzz" }}
    on signal 1 -> buzz
    on signal   -> {{ horn = 0; ack "..." }}
    on echo -> ack "{{value}}"
}}
"""


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.kill()
    try:
        proc.wait(timeout=STEP)
    except subprocess.TimeoutExpired:
        pass


# ---- a websocket client built by hand, for what `websockets` refuses to send ---------------------

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode, payload, fin=True):
    """A client's frame: masked, with the shortest length encoding."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A blocking websocket client over a plain socket: handshake, masked frames, frame reads."""

    def __init__(self, port, path="/signal"):
        self.sock = socket.create_connection((HOST, port), timeout=STEP)
        self.sock.settimeout(STEP)
        self.buf = b""
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\n"
                          b"Host: " + f"{HOST}:{port}".encode() + b"\r\n"
                          b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status = head.split("\r\n", 1)[0]
        expect(" 101 " in status + " ", f"raw handshake on {path}: expected `101 Switching Protocols`, got `{status}`")
        want = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in head.split("\r\n")[1:] if line)}
        expect(headers.get("sec-websocket-accept") == want,
               f"raw handshake: Sec-WebSocket-Accept is {headers.get('sec-websocket-accept')!r}, expected {want!r}")

    def _read_until(self, marker):
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise CheckFailed(f"connection closed before {marker!r}; got {self.buf[:200]!r}")
            self.buf += chunk
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise CheckFailed(f"connection closed mid-frame (wanted {n} bytes, had {len(self.buf)})")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_frame(self, opcode, payload, fin=True):
        self.sock.sendall(frame(opcode, payload, fin))

    def send_in_pieces(self, frames, small=5, pause=0.001):
        """Sends each frame in pieces of 1 to `small` bytes, pausing between them so that the node
        reads them apart; payloads over 1,000 bytes go after their first 14 bytes (the longest
        header) in pieces of 1,000, without pauses."""
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        k = 0
        for f in frames:
            head, tail = (f, b"") if len(f) <= 1000 else (f[:14], f[14:])
            i = 0
            while i < len(head):
                n = 1 + k % small
                k += 1
                time.sleep(pause)
                self.sock.sendall(head[i:i + n])
                i += n
            for i in range(0, len(tail), 1000):
                self.sock.sendall(tail[i:i + 1000])

    def read_frame(self):
        """Returns (opcode, payload) of the next frame from the server."""
        b0, b1 = self._read_exact(2)
        expect(not b1 & 0x80, "the server masked a frame it sent (RFC 6455 5.1 forbids it)")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8))[0]
        return b0 & 0x0F, self._read_exact(n)

    def read_close_code(self):
        """Reads frames up to the server's close frame and returns its code (None when it carries none)."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            expect(opcode in (0x1, 0x2, 0x9, 0xA), f"unexpected opcode {opcode:#x} before the close frame")

    def read_end(self, reply_close):
        """After the server's close frame (answered with one of ours when the server began the
        closing handshake): how the stream ends, `eof` (a clean FIN) or `reset`."""
        try:
            if reply_close:
                self.send_frame(0x8, struct.pack("!H", 1000))
            rest = self.buf + self.sock.recv(65536)
            while rest and len(rest) < 1 << 20:
                more = self.sock.recv(65536)
                if not more:
                    break
                rest += more
            return "eof" if not rest else f"{len(rest)} more bytes"
        except (ConnectionResetError, BrokenPipeError):
            return "reset"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- the checks ----------------------------------------------------------------------------------

class Wire:
    def __init__(self, binary, port, mesh):
        self.binary, self.port, self.mesh = binary, port, mesh
        self.url = f"ws://{HOST}:{port}"
        self.sent = []      # every message the node has received on /signal so far, in order
        self.echoed = 0     # and how many on /echo

    async def round_trip(self, message, path="/signal"):
        async with websockets.connect(self.url + path, open_timeout=STEP, close_timeout=STEP, max_size=None) as ws:
            await asyncio.wait_for(ws.send(message), STEP)
            reply = await asyncio.wait_for(ws.recv(), STEP)
        self.sent.append(message)
        return reply

    async def still_serving(self, after):
        try:
            reply = await self.round_trip("1")
        except Exception as e:  # noqa: BLE001 - any failure here is the finding
            raise CheckFailed(f"after {after}, a fresh client's round trip failed: {type(e).__name__}: {e}")
        expect(reply == "buzz buzz buzz", f"after {after}, a fresh client got {reply!r}, expected 'buzz buzz buzz'")

    def status(self):
        with urllib.request.urlopen(f"http://{HOST}:{self.port}/", timeout=STEP) as r:
            expect(r.status == 200, f"GET / answered {r.status}")
            ctype = r.headers.get("Content-Type", "")
            body = r.read().decode()
        expect(ctype.startswith("application/json"), f"GET / Content-Type is {ctype!r}, expected application/json")
        try:
            return json.loads(body)
        except ValueError as e:
            raise CheckFailed(f"GET / is not JSON ({e}): {body[:300]!r}")

    async def expect_close(self, ws, code, what):
        """Awaits the server's close of `ws` and checks its code."""
        try:
            while True:
                got = await asyncio.wait_for(ws.recv(), STEP)
                raise CheckFailed(f"{what}: expected close code {code}, got a message {got[:80]!r}")
        except websockets.exceptions.ConnectionClosed as e:
            rcvd = e.rcvd.code if e.rcvd is not None else None
            expect(rcvd == code, f"{what}: expected close code {code} from the server, got "
                                 f"{rcvd if rcvd is not None else 'no close frame'} ({e})")
        except asyncio.TimeoutError:
            raise CheckFailed(f"{what}: no close frame within {STEP:.0f} s")

    # 1. interop

    async def check_replies(self):
        r1 = await self.round_trip("1")
        expect(r1 == "buzz buzz buzz", f"`1` on /signal answered {r1!r}, expected 'buzz buzz buzz'")
        r0 = await self.round_trip("0")
        expect(r0 == "...", f"`0` on /signal answered {r0!r}, expected '...'")

    async def check_burst(self):
        n = 1000
        messages = ["1" if i % 2 == 0 else "0" for i in range(n)]
        async with websockets.connect(self.url + "/signal", open_timeout=STEP, close_timeout=STEP) as ws:
            for m in messages:
                await asyncio.wait_for(ws.send(m), STEP)
            self.sent.extend(messages)
            replies = []
            try:
                for _ in range(n):
                    replies.append(await asyncio.wait_for(ws.recv(), STEP))
            except asyncio.TimeoutError:
                raise CheckFailed(f"pipelined burst: only {len(replies)} of {n} replies within the wait")
        want = ["buzz buzz buzz" if m == "1" else "..." for m in messages]
        for i, (got, exp) in enumerate(zip(replies, want)):
            expect(got == exp, f"pipelined burst: reply {i} is {got!r}, expected {exp!r} (out of order or lost)")

    async def check_unknown_path(self):
        try:
            async with websockets.connect(self.url + "/nope", open_timeout=STEP, close_timeout=STEP):
                raise CheckFailed("/nope: the websocket upgrade succeeded; expected HTTP 404")
        except websockets.exceptions.InvalidStatusCode as e:
            expect(e.status_code == 404, f"/nope: refused with HTTP {e.status_code}, expected 404 ({e})")
            expect("404" in str(e), f"/nope: the exception does not show 404: {e}")
        # And on the wire: a 404 status line, no 101, and the connection ends.
        with socket.create_connection((HOST, self.port), timeout=STEP) as s:
            s.settimeout(STEP)
            key = base64.b64encode(os.urandom(16))
            s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        status = data.split(b"\r\n", 1)[0].decode("latin-1")
        expect(status.startswith("HTTP/1.1 404"), f"/nope (raw): status line {status!r}, expected HTTP/1.1 404")
        expect(b"101" not in status.encode() and b"sec-websocket-accept" not in data.lower(),
               "/nope (raw): the response carries an upgrade")

    async def check_reply_sizes(self):
        """Replies framed by the node in each length encoding, read by a client that checks frames."""
        sizes = [0, 1, 125, 126, 65535, MAX_MESSAGE]
        async with websockets.connect(self.url + "/echo", open_timeout=STEP, close_timeout=STEP, max_size=None) as ws:
            for n in sizes:
                await asyncio.wait_for(ws.send("e" * n), STEP)
            self.echoed += len(sizes)
            for n in sizes:
                reply = await asyncio.wait_for(ws.recv(), STEP)
                expect(reply == "e" * n, f"/echo of {n} bytes: the reply has {len(reply)} bytes")

    def check_framing(self):
        """Frames as a client may send them: fragments, pings between fragments, all three length
        encodings, in one write and then in pieces of a few bytes. The node reads messages received
        whole without waiting; it must agree with Beast on where each one ends."""
        big, largest = b"x" * 300, b"y" * MAX_MESSAGE
        frames = [frame(0x1, b"1"), frame(0x9, b"p1"),
                  frame(0x1, b"1", fin=False), frame(0x9, b"p2"), frame(0x0, b"", fin=False), frame(0x0, b""),
                  frame(0x1, big), frame(0x1, largest), frame(0x1, b"0"), frame(0x1, b"")]
        messages = ["1", "1", big.decode(), largest.decode(), "0", ""]
        # Replies and pongs in the order their frames came: a pong answers each ping.
        want = [(0x1, b"buzz buzz buzz"), (0xA, b"p1"), (0xA, b"p2"), (0x1, b"buzz buzz buzz")] + [(0x1, b"...")] * 4
        for how in ("one write", "pieces"):
            with RawClient(self.port) as c:
                if how == "one write":
                    c.sock.sendall(b"".join(frames))
                else:
                    c.send_in_pieces(frames)
                got = [c.read_frame() for _ in want]
            self.sent.extend(messages)
            for i, (g, w) in enumerate(zip(got, want)):
                expect(g == w, f"frames sent in {how}: frame {i} from the node is opcode {g[0]:#x} "
                               f"{g[1][:40]!r}, expected opcode {w[0]:#x} {w[1]!r}")

    def check_pipelined_faults(self):
        """A bad frame right behind good ones, all in one write: each good one answered, then the
        close code; the node reads these without waiting, so this is its fast path failing."""
        cases = [
            ("invalid UTF-8", frame(0x1, b"\xc3\x28"), 1007),
            ("a binary frame", frame(0x2, b"1"), 1003),
            ("an oversized message", frame(0x1, b"z" * (MAX_MESSAGE + 1)), 1009),
            ("a close frame", frame(0x8, struct.pack("!H", 1000)), 1000),
        ]
        for what, bad, code in cases:
            with RawClient(self.port) as c:
                c.sock.sendall(frame(0x1, b"1") + frame(0x1, b"0") + bad + frame(0x1, b"1"))
                replies = [c.read_frame(), c.read_frame()]
                got = c.read_close_code()
                end = c.read_end(reply_close=code != 1000)
            self.sent.extend(["1", "0"])
            expect(replies == [(0x1, b"buzz buzz buzz"), (0x1, b"...")],
                   f"two messages then {what}: the replies are {replies}")
            expect(got == code, f"two messages then {what}: close code {got}, expected {code}")
            expect(end == "eof", f"two messages then {what}: after the close frame the stream ended with {end}, "
                                 "expected a clean end (the node must not drop unread input with a reset)")
        return self.still_serving("bad frames right behind good ones")

    # 2. status

    async def check_status(self):
        def compare(st, horn, when):
            expect(st.get("node") == "buzzer", f"{when}: node is {st.get('node')!r}, expected 'buzzer'")
            expect(st.get("channels") == ["signal", "echo"],
                   f"{when}: channels are {st.get('channels')!r}, expected ['signal', 'echo']")
            pins = st.get("pins", {})
            expect(pins.get("horn") == horn, f"{when}: pins.horn is {pins.get('horn')!r}, expected {horn}")
            c = st.get("counters", {})
            received = c.get("received", {}).get("signal")
            expect(received == len(self.sent),
                   f"{when}: counters.received.signal is {received!r}, expected {len(self.sent)}")
            echoed = c.get("received", {}).get("echo")
            expect(echoed == self.echoed, f"{when}: counters.received.echo is {echoed!r}, expected {self.echoed}")
            expect(c.get("replied") == len(self.sent) + self.echoed,
                   f"{when}: counters.replied is {c.get('replied')!r}, expected {len(self.sent) + self.echoed}")
            expect(c.get("sent") == 0, f"{when}: counters.sent is {c.get('sent')!r}, expected 0 (buzzer sends nothing)")

        horn = 1 if self.sent[-1] == "1" else 0
        compare(self.status(), horn, f"GET / after {len(self.sent)} messages (last {self.sent[-1]!r})")
        await self.round_trip("1")
        compare(self.status(), 1, "GET / after one more `1`")
        await self.round_trip("0")
        compare(self.status(), 0, "GET / after one more `0`")

    # 3. bad input

    async def check_binary(self):
        async with websockets.connect(self.url + "/signal", open_timeout=STEP, close_timeout=STEP) as ws:
            await ws.send(b"1")
            await self.expect_close(ws, 1003, "binary frame")
        await self.still_serving("a binary frame")

    async def check_sizes(self):
        exact = "x" * MAX_MESSAGE
        async with websockets.connect(self.url + "/signal", open_timeout=STEP, close_timeout=STEP) as ws:
            await ws.send(exact)
            try:
                reply = await asyncio.wait_for(ws.recv(), STEP)
            except websockets.exceptions.ConnectionClosed as e:
                raise CheckFailed(f"a message of exactly {MAX_MESSAGE} bytes closed the connection: {e}")
            expect(reply == "...", f"a message of exactly {MAX_MESSAGE} bytes answered {reply!r}, expected '...'")
            self.sent.append(exact)
            # Same connection: still usable after the largest allowed message.
            await ws.send("1")
            reply = await asyncio.wait_for(ws.recv(), STEP)
            expect(reply == "buzz buzz buzz", f"after a {MAX_MESSAGE}-byte message, `1` answered {reply!r}")
            self.sent.append("1")
        async with websockets.connect(self.url + "/signal", open_timeout=STEP, close_timeout=STEP) as ws:
            await ws.send("x" * (MAX_MESSAGE + 1))
            await self.expect_close(ws, 1009, f"a text message of {MAX_MESSAGE + 1} bytes")
        await self.still_serving("an oversized message")

    async def check_invalid_utf8(self):
        def raw():
            with RawClient(self.port) as c:
                # The hand-built client first proves itself with a valid round trip.
                c.send_frame(0x1, b"1")
                opcode, payload = c.read_frame()
                expect((opcode, payload) == (0x1, b"buzz buzz buzz"),
                       f"raw client: `1` answered opcode {opcode:#x} {payload[:80]!r}")
                c.send_frame(0x1, b"\xc3\x28 not utf-8 \xff")
                return c.read_close_code()
        code = await asyncio.get_running_loop().run_in_executor(None, raw)
        self.sent.append("1")
        expect(code == 1007, f"a text frame with invalid UTF-8: close code {code}, expected 1007")
        await self.still_serving("invalid UTF-8")

    async def check_raw_binary(self):
        def raw():
            with RawClient(self.port) as c:
                c.send_frame(0x2, b"\x00\x01\x02")
                return c.read_close_code()
        code = await asyncio.get_running_loop().run_in_executor(None, raw)
        expect(code == 1003, f"a raw binary frame: close code {code}, expected 1003")
        await self.still_serving("a raw binary frame")

    async def check_garbage(self):
        def raw():
            with socket.create_connection((HOST, self.port), timeout=STEP) as s:
                s.settimeout(STEP)
                s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 this is not HTTP\r\n\r\n" + os.urandom(512))
                data = b""
                try:
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            return True, data
                        data += chunk
                except socket.timeout:
                    return False, data
                except ConnectionResetError:
                    return True, data
        closed, data = await asyncio.get_running_loop().run_in_executor(None, raw)
        expect(closed, f"garbage instead of HTTP: the node kept the connection open for {STEP:.0f} s")
        expect(b"101" not in data[:20], f"garbage instead of HTTP: the node answered {data[:80]!r}")
        await self.still_serving("garbage instead of an HTTP request")

    async def check_cut_handshake(self):
        def raw():
            s = socket.create_connection((HOST, self.port), timeout=STEP)
            s.sendall(b"GET /signal HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webso")
            s.close()
            # And a full request whose client vanishes before reading the 101.
            s = socket.create_connection((HOST, self.port), timeout=STEP)
            s.sendall(b"GET /signal HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) +
                      b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
            s.close()
        await asyncio.get_running_loop().run_in_executor(None, raw)
        await self.still_serving("two clients that disconnected mid-handshake")

    # 5. port in use

    def check_port_in_use(self):
        try:
            r = subprocess.run([self.binary, "run", self.mesh, "--node", "buzzer", "--sim"],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=STEP)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"a second node on port {self.port} did not exit within {STEP:.0f} s")
        expect(r.returncode == 1, f"a second node on port {self.port}: exit {r.returncode}, expected 1; "
                                  f"stderr: {r.stderr.strip()!r}")
        expect("buzzer" in r.stderr and str(self.port) in r.stderr,
               f"a second node on port {self.port}: stderr does not name `buzzer` and {self.port}: {r.stderr.strip()!r}")

    # 4. shutdown

    async def check_signal(self, proc, signum, clients=1):
        name = signal.Signals(signum).name
        conns = []
        try:
            for _ in range(clients):
                ws = await websockets.connect(self.url + "/signal", open_timeout=STEP, close_timeout=STEP)
                conns.append(ws)
                await ws.send("1")
                reply = await asyncio.wait_for(ws.recv(), STEP)
                expect(reply == "buzz buzz buzz", f"before {name}: `1` answered {reply!r}")
            proc.send_signal(signum)
            for i, ws in enumerate(conns):
                await self.expect_close(ws, 1001, f"{name} with {clients} client(s) connected, client {i + 1}")
        finally:
            for ws in conns:
                await ws.close()
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        rc = proc.poll()
        expect(rc is not None, f"after {name} the node was still running 5 s later")
        expect(rc == 0, f"after {name} the node exited {rc}, expected 0")


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} PATH/TO/meshrun", file=sys.stderr)
        return 2
    binary = os.path.abspath(sys.argv[1])
    print(f"websockets {websockets.__version__}, python {sys.version.split()[0]}, {binary}")
    passed, failed = 0, 0
    proc = None
    loop = asyncio.new_event_loop()

    def check(name, fn):
        nonlocal passed, failed
        try:
            result = fn()
            if asyncio.iscoroutine(result):
                loop.run_until_complete(asyncio.wait_for(result, 60))
            print(f"ok   {name}", flush=True)
            passed += 1
        except CheckFailed as e:
            print(f"FAIL {name}: {e}", flush=True)
            failed += 1
        except Exception as e:  # noqa: BLE001 - an unexpected error is a failed check, with its trace
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
            failed += 1

    with tempfile.TemporaryDirectory(prefix="meshrun-wire-") as tmp:
        port = free_port()
        mesh = os.path.join(tmp, "wire.mesh")
        with open(mesh, "w") as f:
            f.write(MESH.format(port=port))
        log = open(os.path.join(tmp, "node.log"), "w+")
        try:
            try:
                proc = subprocess.Popen([binary, "run", mesh, "--node", "buzzer", "--sim"],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            except OSError as e:
                print(f"FAIL start: cannot run {binary}: {e}")
                print("0 passed, 1 failed")
                return 1
            if not wait_for_port(port, proc):
                stop(proc)
                log.seek(0)
                print(f"FAIL start: the node did not accept on {HOST}:{port} within {STEP:.0f} s "
                      f"(exit {proc.poll()}); its output:\n{log.read()}")
                print("0 passed, 1 failed")
                return 1
            w = Wire(binary, port, mesh)
            check("1. interop: `1` -> buzz buzz buzz, `0` -> ...", w.check_replies)
            check("1. interop: 1,000 pipelined messages, 1,000 replies in order", w.check_burst)
            check("1. interop: /nope refused with HTTP 404, no upgrade", w.check_unknown_path)
            check("1. interop: replies of 0 to 65,536 bytes, in every length encoding", w.check_reply_sizes)
            check("1. framing: fragments, pings, every length encoding, in one write and in pieces",
                  w.check_framing)
            check("2. GET / status: counters and pins follow the messages", w.check_status)
            check("3. bad input: binary frame -> 1003, node keeps serving", w.check_binary)
            check("3. bad input: raw binary frame -> 1003, node keeps serving", w.check_raw_binary)
            check(f"3. bad input: {MAX_MESSAGE} bytes answered, {MAX_MESSAGE + 1} -> 1009, node keeps serving",
                  w.check_sizes)
            check("3. bad input: invalid UTF-8 text frame -> 1007, node keeps serving", w.check_invalid_utf8)
            check("3. bad input: bad frames right behind good ones in one write -> replies, then "
                  "1007, 1003, 1009, 1000", w.check_pipelined_faults)
            check("3. bad input: garbage instead of HTTP, node keeps serving", w.check_garbage)
            check("3. bad input: disconnect mid-handshake, node keeps serving", w.check_cut_handshake)
            check("5. port in use: second node exits 1 naming buzzer and the port", w.check_port_in_use)
            if proc.poll() is not None:
                print(f"FAIL the node exited early with {proc.returncode}")
                failed += 1
            check("4. shutdown: SIGTERM -> close 1001 to the client, exit 0",
                  lambda: w.check_signal(proc, signal.SIGTERM))
            # The same with SIGINT and two clients: every connection gets its close frame.
            proc = subprocess.Popen([binary, "run", mesh, "--node", "buzzer", "--sim"],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            if wait_for_port(port, proc):
                check("4. shutdown: SIGINT -> close 1001 to both of two clients, exit 0",
                      lambda: w.check_signal(proc, signal.SIGINT, clients=2))
            else:
                print(f"FAIL 4. shutdown: SIGINT: the restarted node did not accept on port {port} "
                      f"(exit {proc.poll()})")
                failed += 1
        finally:
            stop(proc)
            loop.close()
            if failed:
                log.seek(0)
                print("---- node output ----\n" + log.read()[-4000:] + "---- end of node output ----")
            log.close()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
