"""What the hostile and flood wire tests share: a `meshrun run` node on a port of 47000-47999, and a
websocket client built by hand on a plain socket, that sends any frame, well formed or not.

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from wsraw import RawClient, RunningNode, frame

Standard library only.
"""

import base64
import hashlib
import os
import random
import socket
import struct
import subprocess
import time
import urllib.request

from checks import HOST, STEP, CheckFailed, expect, sanitized

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PORTS = range(47000, 48000)  # the ports these tests take; a busy one is skipped

# A node with one channel that answers each message with the message itself.
ECHO_MESH = """\
# written by {writer}
mesh hostile

node hostile at {host}:{port} {{
    on echo -> ack "{{value}}"
}}
"""


def frame(opcode, payload, fin=True, rsv=0, mask=True, length=None):
    """A client's frame. `rsv` is the three reserved bits (0 to 7, RSV1 the highest); `mask=False`
    sends it unmasked, as no client may; `length` claims another payload length than the real one."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + masked(payload, key)


def masked(payload, key):
    """`payload` XOR the repeated 4-byte `key` (RFC 6455 5.3), done on one big integer."""
    if not payload:
        return b""
    keys = (key * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(len(payload), "big")


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def handshake_request(port, path, key, headers=b""):
    """The upgrade request; `headers`: more header lines, each ending with CRLF."""
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + f"{HOST}:{port}".encode() + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n" + headers +
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")


class Ended(Exception):
    """The node ended the connection: `how` is `eof` (a FIN) or `reset`."""

    def __init__(self, how, wanted):
        super().__init__(f"the connection ended ({how}) while reading {wanted}")
        self.how = how


class RawClient:
    """A blocking websocket client on a plain socket: the handshake, frames of any shape, and the
    node's frames read one by one. Every read waits at most `timeout` seconds. `wrap`: a function
    of the connected socket that gives the one to speak on (an ssl.SSLContext's wrap_socket);
    `headers`: more header lines for the upgrade request."""

    def __init__(self, port, path="/echo", timeout=STEP, wrap=None, headers=b""):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        if wrap:
            self.sock = wrap(self.sock)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(handshake_request(port, path, key, headers))
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status = head.split("\r\n", 1)[0]
        expect(status.startswith("HTTP/1.1 101"), f"handshake on {path}: status line `{status}`, expected 101")
        want = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        expect(want in head, f"handshake on {path}: no Sec-WebSocket-Accept: {want} in\n{head}")

    def _recv(self, wanted):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            raise Ended("reset", wanted)
        except socket.timeout:
            raise CheckFailed(f"nothing from the node within {self.sock.gettimeout():.0f} s while reading {wanted}")
        if not chunk:
            raise Ended("eof", wanted)
        self.buf += chunk

    def _read_until(self, marker):
        while marker not in self.buf:
            self._recv(repr(marker))
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._recv(f"{n} bytes of a frame")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload, **kw):
        self.sock.sendall(frame(opcode, payload, **kw))

    def read_frame(self):
        """(fin, opcode, payload) of the node's next frame; checks what a server's frame must be."""
        b0, b1 = self._read_exact(2)
        expect(not b1 & 0x80, f"the node masked a frame it sent (opcode {b0 & 15:#x}); RFC 6455 5.1 forbids it")
        expect(not b0 & 0x70, f"the node sent a frame with reserved bits set: {b0:#04x}")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._read_exact(n)

    def read_text(self):
        fin, opcode, payload = self.read_frame()
        expect(fin and opcode == 0x1, f"expected a text frame, got opcode {opcode:#x} fin={fin} {payload[:80]!r}")
        return payload

    def outcome(self, answer_close=True):
        """How the node ends the connection after something bad was sent: reads its frames up to a
        close frame and returns ("close", code or None, reason, frames before it), or ("dropped",
        eof|reset, None, frames) when the connection ended without one. After a close frame it
        answers with its own (when `answer_close`) and waits, bounded, for the node's end of the
        stream: a node that keeps the connection open fails the check."""
        frames = []
        try:
            while True:
                fin, opcode, payload = self.read_frame()
                if opcode == 0x8:
                    break
                frames.append((opcode, payload))
        except Ended as e:
            return "dropped", e.how, None, frames
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        reason = payload[2:]
        try:
            if answer_close:
                self.send_frame(0x8, payload[:2])
            while True:
                self._recv("the end of the stream after the close frame")
                expect(len(self.buf) < 1 << 16, f"after its close frame the node sent {len(self.buf)} more bytes")
        except (Ended, BrokenPipeError, ConnectionResetError):
            pass  # the node closed its end: the closing handshake is over
        return "close", code, reason, frames

    def round_trip(self, text):
        payload = text.encode()
        self.send_frame(0x1, payload)
        reply = self.read_text()
        expect(reply == payload, f"the reply to {payload[:60]!r} is {reply[:60]!r}")

    def reset(self):
        """Ends the connection with a TCP reset (SO_LINGER 0), not a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def vm_kib(pid, field="VmRSS"):
    """A /proc/PID/status figure in KiB (VmRSS, VmHWM), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RunningNode:
    """`meshrun run` of the echo node on a port of PORTS, its log in a file under `tmp`. Tries
    another port when the one it picked turns out to be taken."""

    def __init__(self, meshrun, tmp, writer, attempts=8):
        self.log_path = os.path.join(tmp, "node.log")
        self.proc = None
        tried = []
        for _ in range(attempts):
            port = random.choice(PORTS)
            with socket.socket() as s:
                try:
                    s.bind((HOST, port))
                except OSError:
                    continue
            tried.append(port)
            mesh = os.path.join(tmp, "hostile.mesh")
            with open(mesh, "w") as f:
                f.write(ECHO_MESH.format(writer=writer, host=HOST, port=port))
            with open(self.log_path, "w") as log:
                self.proc = subprocess.Popen([meshrun, "run", mesh, "--node", "hostile", "--sim", "--color", "never"],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            if self._wait_listening(port):
                self.port = port
                return
            self.stop()
        raise CheckFailed(f"the node did not listen on any of ports {tried}; its last log:\n{self.log()[-2000:]}")

    def _wait_listening(self, port):
        deadline = time.monotonic() + STEP
        while time.monotonic() < deadline and self.proc.poll() is None:
            if f"listening on ws://{HOST}:{port}" in self.log():
                return True
            time.sleep(0.02)
        return False

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        return vm_kib(self.proc.pid)

    def sanitized(self):
        return sanitized(self.proc.pid)

    def connections_open(self):
        """meshrun_connections_open of the node, this request's connection included."""
        with urllib.request.urlopen(f"http://{HOST}:{self.port}/metrics", timeout=STEP) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("meshrun_connections_open{"):
                    return int(float(line.split()[-1]))
        raise CheckFailed("no meshrun_connections_open in the node's /metrics")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STEP)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
