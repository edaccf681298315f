#!/usr/bin/python3
"""A flood on a node's websocket port: 1,000,000 messages from 4 clients as fast as they go, each
client keeping up to 256 messages in flight; every message answered, each reply the right one, in
order, and the node's VmRSS, sampled during the run, under 64 MiB. Then clients that send as fast as
they can and never read: the node must stop reading them (back pressure), not buffer for them.

    /usr/bin/python3 tests/wire/flood_test.py path/to/meshrun

Starts `meshrun run --sim` of an echo node (`on echo -> ack "{value}"`) on a port of 47000-47999.
The clients are plain non-blocking sockets in one thread, with the frames made beforehand (masked,
each with its own key): the test spends its time on the node, not on making frames (with Python's
websockets package the same clients make some 24,000 round trips a second; these, over a million).
Each client's replies are compared byte for byte with the frames the node must send back: that
counts them and checks each one.
Prints one line per check and `N passed, M failed` last; exits 1 on any failure.

Standard library only.
"""

import json
import os
import selectors
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import HOST, STEP, CheckFailed, expect, run_checks  # noqa: E402
from wsraw import RawClient, RunningNode, frame, vm_kib  # noqa: E402

MESSAGES = 1_000_000
CLIENTS = 4
WINDOW = 256          # messages a client has in flight at most
RSS_LIMIT_MIB = 64    # the node's VmRSS during the flood
RUN_LIMIT = 90        # seconds for the whole flood
PAYLOAD = 9           # bytes of every message: "C-NNNNNNN"
NO_READER_SECONDS = 3  # how long the clients that read nothing send
NO_READER_LIMIT_MIB = 48  # what such a client may get taken: socket buffers, not the node's memory (8.5 today)


class Client:
    """One connection's stream of frames to send and of replies to expect, and how far each got."""

    def __init__(self, port, index, count):
        self.index, self.count = index, count
        payloads = [b"%d-%07d" % (index, i) for i in range(count)]
        assert all(len(p) == PAYLOAD for p in payloads)
        # Masked frames: FIN+text, MASK+length, a key of its own, the payload XOR the key; the
        # XOR done at once on the whole stream, as one big integer.
        keys = os.urandom(4 * count)
        plain = b"".join(b"\x81\x89" + keys[4 * i:4 * i + 4] + p for i, p in enumerate(payloads))
        pattern = b"".join(b"\0" * 6 + (keys[4 * i:4 * i + 4] * 3)[:PAYLOAD] for i in range(count))
        self.frame_size = 6 + PAYLOAD
        self.out = (int.from_bytes(plain, "big") ^ int.from_bytes(pattern, "big")).to_bytes(len(plain), "big")
        self.reply_size = 2 + PAYLOAD
        self.want = b"".join(b"\x81\x09" + p for p in payloads)
        self.sent = 0      # bytes of self.out written
        self.received = 0  # bytes of self.want read, each one checked
        c = RawClient(port)  # the handshake; then the socket goes non-blocking
        expect(not c.buf, "the node sent something right after the handshake")
        self.sock = c.sock
        self.sock.setblocking(False)

    def replies(self):
        return self.received // self.reply_size

    def to_send(self):
        """The frames the window lets go now."""
        allowed = min(self.count, self.replies() + WINDOW) * self.frame_size
        return self.out[self.sent:allowed] if allowed > self.sent else b""

    def take(self, chunk):
        end = self.received + len(chunk)
        if chunk != self.want[self.received:end]:
            at = next(i for i in range(len(chunk)) if self.received + i >= len(self.want)
                      or chunk[i] != self.want[self.received + i])
            n = (self.received + at) // self.reply_size
            start = n * self.reply_size
            offset = start - self.received  # negative: the reply began in an earlier chunk (checked, so as wanted)
            if offset >= 0:
                got = chunk[offset:offset + self.reply_size]
            else:
                got = self.want[start:self.received] + chunk[:self.reply_size + offset]
            raise CheckFailed(f"client {self.index}: reply {n} is wrong: {got!r}, expected "
                              f"{self.want[start:start + self.reply_size]!r}")
        self.received = end


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples, self.running = pid, 0, 0, True

    def run(self):
        while self.running:
            rss = vm_kib(self.pid)
            if rss is None:
                return
            self.peak = max(self.peak, rss)
            self.samples += 1
            time.sleep(0.02)


def flood(node):
    per_client = MESSAGES // CLIENTS
    started = time.monotonic()
    clients = [Client(node.port, i, per_client) for i in range(CLIENTS)]
    print(f"      frames made in {time.monotonic() - started:.1f} s; the node's VmRSS {node.rss_kib() / 1024:.1f} MiB",
          flush=True)
    sampler = RssSampler(node.proc.pid)
    sampler.start()
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    started = time.monotonic()
    deadline = started + RUN_LIMIT
    try:
        while any(c.received < len(c.want) for c in clients):
            if time.monotonic() > deadline:
                raise CheckFailed(f"after {RUN_LIMIT} s only {sum(c.replies() for c in clients)} of {MESSAGES} replies; "
                                  + ", ".join(f"client {c.index}: {c.sent // c.frame_size} sent, {c.replies()} answered"
                                              for c in clients))
            events = sel.select(timeout=1.0)
            expect(events or node.alive(), f"the node exited with {node.proc.returncode} during the flood")
            for key, mask in events:
                c = key.data
                if mask & selectors.EVENT_READ:
                    chunk = c.sock.recv(1 << 20)
                    expect(chunk, f"client {c.index}: the node closed the connection after {c.replies()} replies")
                    c.take(chunk)
                if mask & selectors.EVENT_WRITE:
                    data = c.to_send()
                    if data:
                        try:
                            c.sent += c.sock.send(data)
                        except BlockingIOError:
                            pass
                # Ask to hear of room to write only while the window has frames to let go.
                want = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.to_send() else 0)
                if want != key.events:
                    sel.modify(c.sock, want, c)
    finally:
        elapsed = time.monotonic() - started
        sampler.running = False
        sampler.join()
        sel.close()
        for c in clients:
            c.sock.close()
    replies = sum(c.replies() for c in clients)
    print(f"      {replies} replies in {elapsed:.1f} s ({replies / elapsed:,.0f} a second); the node's VmRSS: "
          f"peak {sampler.peak / 1024:.1f} MiB in {sampler.samples} samples, {node.rss_kib() / 1024:.1f} MiB now",
          flush=True)
    expect(replies == MESSAGES, f"{replies} replies to {MESSAGES} messages")
    expect(sampler.peak < RSS_LIMIT_MIB * 1024 or node.sanitized(), f"the node's VmRSS reached {sampler.peak / 1024:.1f} MiB during the "
                                                f"flood, over {RSS_LIMIT_MIB} MiB")
    # The node counted each of them once.
    with urllib.request.urlopen(f"http://{HOST}:{node.port}/", timeout=STEP) as r:
        counters = json.loads(r.read())["counters"]
    expect(counters["received"]["echo"] == MESSAGES and counters["replied"] == MESSAGES,
           f"the node's counters after the flood: {counters}, expected {MESSAGES} received and replied")


def no_readers(node):
    """Clients that send as fast as they can and never read: pings, small messages, 64 KiB ones.
    The node must stop reading them once their replies back up (its memory stays small, what they
    manage to send stays bounded) and go on serving others."""
    kinds = {"125-byte pings": frame(0x9, b"p" * 125), "100-byte messages": frame(0x1, b"m" * 100),
             "64 KiB messages": frame(0x1, b"b" * 65536)}
    clients = []
    try:
        for what, unit in kinds.items():
            c = RawClient(node.port)
            c.sock.setblocking(False)
            clients.append((what, c, unit * max(1, (1 << 20) // len(unit)), [0, 0]))  # [bytes sent, offset]
        sampler = RssSampler(node.proc.pid)
        sampler.start()
        deadline = time.monotonic() + NO_READER_SECONDS
        while time.monotonic() < deadline:
            stuck = True
            for what, c, chunk, state in clients:
                try:
                    n = c.sock.send(chunk[state[1]:])
                except BlockingIOError:
                    continue
                stuck = False
                state[0] += n
                state[1] = (state[1] + n) % len(chunk)  # the stream stays whole frames
            if stuck:
                time.sleep(0.01)
        # Stuck as they are, they keep no one else waiting.
        with RawClient(node.port) as other:
            other.round_trip("while three clients read nothing")
        sampler.running = False
        sampler.join()
        sent = {what: state[0] for what, _, _, state in clients}
        print("      sent before the node stopped reading: " + ", ".join(f"{what} {n / 2**20:.1f} MiB" for what, n in
              sent.items()) + f"; the node's VmRSS peak {sampler.peak / 1024:.1f} MiB", flush=True)
        expect(sampler.peak < RSS_LIMIT_MIB * 1024 or node.sanitized(), f"the node's VmRSS reached {sampler.peak / 1024:.1f} MiB, over "
                                                    f"{RSS_LIMIT_MIB} MiB")
        for what, n in sent.items():
            expect(n < NO_READER_LIMIT_MIB * 2**20, f"a client sending {what} and reading nothing got {n / 2**20:.1f} MiB "
                                                    f"taken in {NO_READER_SECONDS} s: the node does not stop reading it")
    finally:
        for _, c, _, _ in clients:
            c.reset()


def still_serving(node):
    expect(node.alive(), f"the node exited with {node.proc.returncode}")
    with RawClient(node.port) as c:
        c.round_trip("after the flood")


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} PATH/TO/meshrun", file=sys.stderr)
        return 2
    meshrun = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="meshrun-flood-") as tmp:
        node = RunningNode(meshrun, tmp, "tests/wire/flood_test.py")
        failed = 1
        try:
            print(f"node on port {node.port}, pid {node.proc.pid}", flush=True)
            failed = run_checks([
                (f"{MESSAGES:,} messages from {CLIENTS} clients, {WINDOW} in flight each: every reply right, "
                 f"VmRSS under {RSS_LIMIT_MIB} MiB", lambda: flood(node)),
                ("the node still answers a new client after the flood", lambda: still_serving(node)),
                ("clients that send and never read: the node stops reading them, VmRSS bounded, others served",
                 lambda: no_readers(node)),
                ("the node still answers a new client after them", lambda: still_serving(node)),
            ])
        finally:
            node.stop()
            if failed:
                print("---- node log (last 3000 characters) ----\n" + node.log()[-3000:] + "---- end of node log ----")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
