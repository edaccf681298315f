#!/usr/bin/python3
"""Hostile input on a node's websocket port: one check per family of the Autobahn testsuite, each
case answered with the close code RFC 6455 asks for, then a second client's round trip; a reset in
the middle of a frame; handshakes that never finish (slowloris); 10,000 idle connections.

    /usr/bin/python3 tests/wire/hostile_test.py path/to/meshrun

Starts `meshrun run --sim` of an echo node (`on echo -> ack "{value}"`) on a port of 47000-47999.
Every frame is built by hand (tests/lib/wsraw.py): no client library would send these. A case that
fails the connection must get a close frame with the expected code (Beast sends one; a bare drop
counts as a failure), and the node must then end the TCP stream. After each case a SECOND client,
connected since the start, and a fresh one each make a round trip. The slowloris runs beside the
other checks, since the node's handshake deadline is long.
Prints one line per check and `N passed, M failed` last; exits 1 on any failure.

Standard library only.
"""

import os
import resource
import selectors
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import HOST, STEP, CheckFailed, expect, run_checks  # noqa: E402
from wsraw import Ended, RawClient, RunningNode, close_payload, frame, handshake_request, vm_kib  # noqa: E402

# The node's deadline for an HTTP request or websocket handshake to arrive whole, in seconds: 30
# today (engine/src/session.hpp); docs/delivery.md's `handshake` limit makes it 5 by default.
CONNECTION_LIMIT = 1024  # limits { connections } by default
HANDSHAKE_DEADLINE = 5  # limits { handshake } by default
DROP_MARGIN = 3             # the slowloris must be dropped within HANDSHAKE_DEADLINE + this
MAX_MESSAGE = 64 * 1024     # the node's limit on a message
IDLE_CONNECTIONS = 10_000   # fewer when RLIMIT_NOFILE's hard limit does not allow them
FD_MARGIN = 200             # descriptors kept for the rest of the test (and of the node)
IDLE_KIB_EACH = 16          # the node's VmRSS may grow by this much per idle connection (about 9 today)
CASE_WAIT = 3.0             # a case's wait for the node's answer: loopback answers in milliseconds

GOOD = frame(0x1, b"good")  # a message the node answers with "good", sent before a bad frame
NOT_UTF8_REASON = "κόσμε".encode() + b"\xed\xa0\x80edited"  # Autobahn 7.5.1's: a surrogate inside


def no_problems(problems):
    expect(not problems, f"{len(problems)} wrong:\n    " + "\n    ".join(problems))


class Hostile:
    def __init__(self, node):
        self.node = node
        self.port = node.port
        self.second = RawClient(self.port)  # the second client, connected throughout
        self.trips = 0

    def still_serving(self, after, fresh=True):
        """The second client's round trip, and a fresh client's (unless the node is at its
        connection limit): both must work after `after`."""
        expect(self.node.alive(), f"after {after}: the node exited with {self.node.proc.returncode}")
        self.trips += 1
        try:
            self.second.round_trip(f"second client, round trip {self.trips}")
        except (Ended, OSError) as e:
            raise CheckFailed(f"after {after}: the second client's connection failed: {e}")
        if not fresh:
            return
        try:
            with RawClient(self.port) as c:
                c.round_trip(f"fresh client, round trip {self.trips}")
        except (Ended, OSError) as e:
            raise CheckFailed(f"after {after}: a fresh client's round trip failed: {e}")

    def case(self, what, data, code, replies=(), answer_close=True):
        """Sends `data` on a new connection and returns what is wrong, if anything: the node must
        answer `replies` (text payloads) then close with `code`; then a round trip must work."""
        problems = []
        try:
            with RawClient(self.port, timeout=CASE_WAIT) as c:
                c.send(data)
                kind, got, reason, frames = c.outcome(answer_close)
            want = [(0x1, r) for r in replies]
            if kind == "dropped":
                problems.append(f"{what}: the connection was dropped ({got}) without a close frame, expected {code}")
            elif got != code:
                problems.append(f"{what}: close code {got} {bytes(reason)[:60]!r}, expected {code}")
            if frames != want:
                problems.append(f"{what}: the node sent {frames[:4]} before closing, expected {want}")
        except (CheckFailed, Ended, OSError) as e:
            problems.append(f"{what}: {e}")
        try:
            self.still_serving(what)
        except CheckFailed as e:
            problems.append(str(e))
        return problems

    def good_case(self, what, body):
        """Runs `body`, something the node must take, then the round trips; returns what is wrong."""
        problems = []
        try:
            body()
        except (CheckFailed, Ended, OSError) as e:
            problems.append(f"{what}: {e}")
        try:
            self.still_serving(what)
        except CheckFailed as e:
            problems.append(str(e))
        return problems

    def cases(self, cases, behind_good=1):
        """Runs each (what, data, code) case; the first `behind_good` again right behind a good
        message in the same write, which the node reads without waiting (its fast path). Returns
        what is wrong."""
        problems = []
        for i, (what, data, code) in enumerate(cases):
            problems += self.case(what, data, code)
            if i < behind_good:
                problems += self.case(f"{what}, behind a good message", GOOD + data, code, replies=[b"good"])
        return problems

    # ---- the families ----------------------------------------------------------------------------

    def check_reserved_bits(self):
        """Autobahn 3: a reserved bit set, no extension agreed: 1002."""
        rsv = [(f"RSV{bit} on a text frame", frame(0x1, b"x", rsv=1 << (3 - bit)), 1002) for bit in (1, 2, 3)]
        no_problems(self.cases(rsv + [
            ("RSV1+2+3 on a ping", frame(0x9, b"x", rsv=7), 1002),
            ("RSV2 on a close", frame(0x8, close_payload(1000), rsv=2), 1002),
            ("RSV3 on a continuation", frame(0x1, b"a", fin=False) + frame(0x0, b"b", rsv=1), 1002),
        ], behind_good=2))

    def check_reserved_opcodes(self):
        """Autobahn 4: opcodes 3-7 (data) and 0xB-0xF (control) are reserved: 1002."""
        no_problems(self.cases([(f"opcode {op:#x}", frame(op, b"x"), 1002) for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)] +
                   [("opcode 0xB between fragments", frame(0x1, b"a", fin=False) + frame(0xB, b"") + frame(0x0, b"b"), 1002)],
                               behind_good=2))

    def check_unmasked(self):
        """RFC 6455 5.1: a client's frame that is not masked: 1002."""
        no_problems(self.cases([
            ("an unmasked text frame", frame(0x1, b"x", mask=False), 1002),
            ("an unmasked ping", frame(0x9, b"x", mask=False), 1002),
            ("an unmasked continuation", frame(0x1, b"a", fin=False) + frame(0x0, b"b", mask=False), 1002),
        ]))

    def check_control_frames(self):
        """Autobahn 2 and 5: fragmented or oversized control frames fail; pings are answered with
        their payload, in order, also between the fragments of a message; a pong is ignored."""
        problems = self.cases([
            ("a ping with FIN=0", frame(0x9, b"x", fin=False), 1002),
            ("a ping of 126 bytes", frame(0x9, b"p" * 126), 1002),
            ("a pong of 126 bytes", frame(0xA, b"p" * 126), 1002),
            ("a close with a 1-byte payload", frame(0x8, b"\x03"), 1002),
        ], behind_good=2)
        problems += self.good_case("pings and pongs", self.pings)
        no_problems(problems)

    def pings(self):
        with RawClient(self.port, timeout=CASE_WAIT) as c:
            for p in [b"", b"hello", bytes(range(125)), b"\xff\xfe not UTF-8, allowed in a ping"]:
                c.send_frame(0x9, p)
                got = c.read_frame()
                expect(got == (True, 0xA, p), f"a ping of {len(p)} bytes answered with {got[:2]} {got[2][:40]!r}, "
                                              "expected its pong")
            c.send(b"".join(frame(0x9, b"ping %d" % i) for i in range(10)))
            got = [c.read_frame() for _ in range(10)]
            expect(got == [(True, 0xA, b"ping %d" % i) for i in range(10)],
                   f"10 pings in one write answered with {[g[2] for g in got]}")
            c.send(frame(0xA, b"unsolicited") + frame(0x1, b"after a pong"))
            got = c.read_frame()
            expect(got == (True, 0x1, b"after a pong"), f"an unsolicited pong then a message: the node sent {got}")
            c.send(frame(0x1, b"frag", fin=False) + frame(0x9, b"in between") + frame(0xA, b"pong too") +
                   frame(0x0, b"mented"))
            got = [c.read_frame(), c.read_frame()]
            expect(got == [(True, 0xA, b"in between"), (True, 0x1, b"fragmented")],
                   f"a ping and a pong between fragments: the node sent {got}, expected the pong, then the reply")

    def check_close_frames(self):
        """Autobahn 7: codes that must not be sent fail with 1002; valid ones are echoed; a reason
        that is not UTF-8 fails the connection (Beast says 1002, which Autobahn's 7.5.1 accepts: the
        RFC names no code for it); nothing after a close is answered. Codes from 5000 up are not
        checked: RFC 6455 leaves them undefined, and Autobahn scores them informational (7.13)."""
        bad = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999]
        good = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
        cases = [(f"a close with code {code}", frame(0x8, close_payload(code)), 1002) for code in bad]
        cases += [(f"a close with code {code}", frame(0x8, close_payload(code)), code) for code in good]
        cases += [("a close with code 1000 and a reason", frame(0x8, close_payload(1000, b"bye \xc3\xa9")), 1000),
                  ("a close with a reason that is not UTF-8", frame(0x8, close_payload(1000, NOT_UTF8_REASON)), 1002),
                  ("a close, then a message", frame(0x8, close_payload(1000)) + frame(0x1, b"after the close"), 1000)]
        problems = []
        for what, data, code in cases:
            # Our close is sent already: the node's close ends the closing handshake.
            problems += self.case(what, data, code, answer_close=False)
        problems += self.case("a close with code 1016, behind a good message", GOOD + frame(0x8, close_payload(1016)), 1002,
                              replies=[b"good"], answer_close=False)
        problems += self.good_case("an empty close", self.empty_close)
        no_problems(problems)

    def empty_close(self):
        """An empty close is answered with a close; its code is the node's to choose."""
        with RawClient(self.port, timeout=CASE_WAIT) as c:
            c.send_frame(0x8, b"")
            kind, got, _, frames = c.outcome(answer_close=False)
            expect(kind == "close" and not frames, f"{kind} {got} after {frames}, expected a close frame")

    def check_continuations(self):
        """Autobahn 5: a continuation with nothing to continue, or a new message inside a fragmented
        one, fails with 1002; a message in many fragments gets one reply, itself."""
        problems = self.cases([
            ("a continuation with nothing to continue", frame(0x0, b"x"), 1002),
            ("a non-final continuation with nothing to continue", frame(0x0, b"x", fin=False) + frame(0x0, b"y"), 1002),
            ("a text frame while a fragmented message is open", frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),
            ("a non-final text frame while one is open",
             frame(0x1, b"a", fin=False) + frame(0x1, b"b", fin=False) + frame(0x0, b"c"), 1002),
            ("a binary frame while a text message is open", frame(0x1, b"a", fin=False) + frame(0x2, b"b"), 1002),
        ], behind_good=3)
        problems += self.good_case("fragmented messages", self.fragmented)
        no_problems(problems)

    def fragmented(self):
        with RawClient(self.port, timeout=CASE_WAIT) as c:
            data = "fragmented message: κόσμε".encode()
            c.send(frame(0x1, data[:1], fin=False) + b"".join(frame(0x0, data[i:i + 1], fin=False)
                                                             for i in range(1, len(data) - 1)) + frame(0x0, data[-1:]))
            c.send(frame(0x1, b"", fin=False) + frame(0x0, b"", fin=False) + frame(0x0, b""))  # empty, in 3 frames
            c.send(GOOD)
            got = [c.read_frame() for _ in range(3)]
            want = [(True, 0x1, data), (True, 0x1, b""), (True, 0x1, b"good")]
            expect(got == want, f"a message in {len(data)} one-byte fragments, an empty one in 3, then `good`: "
                                f"the node sent {got}, expected {want}")

    def check_utf8(self):
        """Autobahn 6: text that is not UTF-8 fails with 1007, also split across fragments, also
        when the message's end never comes (fail fast); a valid sequence split in two is fine."""
        problems = self.cases([
            ("invalid UTF-8 (0xc3 0x28)", frame(0x1, b"\xc3\x28"), 1007),
            ("a lone continuation byte", frame(0x1, b"a\x80b"), 1007),
            ("an overlong encoding of /", frame(0x1, b"\xc0\xaf"), 1007),
            ("an overlong 3-byte encoding", frame(0x1, b"\xe0\x80\xaf"), 1007),
            ("a surrogate (U+D800)", frame(0x1, b"\xed\xa0\x80"), 1007),
            ("past U+10FFFF", frame(0x1, b"\xf4\x90\x80\x80"), 1007),
            ("a truncated sequence at the end", frame(0x1, b"abc\xe2\x82"), 1007),
            ("past U+10FFFF split across two fragments", frame(0x1, b"\xf4\x90", fin=False) + frame(0x0, b"\x80\x80"), 1007),
            ("a surrogate split across two fragments", frame(0x1, b"\xed", fin=False) + frame(0x0, b"\xa0\x80"), 1007),
            ("a truncated sequence at the end of the last fragment",
             frame(0x1, b"ok", fin=False) + frame(0x0, b"\xe2\x82"), 1007),
            ("invalid UTF-8 in a first fragment whose end never comes", frame(0x1, b"\xc0\xaf and more", fin=False), 1007),
        ], behind_good=2)
        problems += self.good_case("valid UTF-8 split inside its sequences", self.split_utf8)
        no_problems(problems)

    def split_utf8(self):
        with RawClient(self.port, timeout=CASE_WAIT) as c:
            data = "κόσμε €𝄞".encode()
            c.send(frame(0x1, data[:1], fin=False) + frame(0x0, data[1:10], fin=False) + frame(0x0, data[10:]))
            got = c.read_frame()
            expect(got == (True, 0x1, data), f"the node sent {got}")

    def check_limits_and_binary(self):
        """Autobahn 9 and 1.2: a message over 64 KiB is 1009, in one frame, in fragments, or only
        announced; a binary message is 1003 (meshrun takes text only)."""
        half = b"z" * (MAX_MESSAGE // 2 + 1)
        problems = self.cases([
            (f"a message of {MAX_MESSAGE + 1} bytes", frame(0x1, b"z" * (MAX_MESSAGE + 1)), 1009),
            (f"a message of {2 * len(half)} bytes in two fragments", frame(0x1, half, fin=False) + frame(0x0, half), 1009),
            ("a frame announcing 2^40 bytes, never sent", frame(0x1, b"", length=1 << 40), 1009),
            ("a binary frame", frame(0x2, b"\x00\x01\x02"), 1003),
            ("a binary message in two fragments", frame(0x2, b"\x00", fin=False) + frame(0x0, b"\x01"), 1003),
            ("an empty binary frame", frame(0x2, b""), 1003),
        ], behind_good=4)
        problems += self.good_case(f"a message of exactly {MAX_MESSAGE} bytes", self.largest)
        no_problems(problems)

    def largest(self):
        with RawClient(self.port, timeout=CASE_WAIT) as c:
            c.round_trip("y" * MAX_MESSAGE)

    def check_resets(self):
        """A client that resets its connection (SO_LINGER 0) in the middle of a frame, of a header,
        or with replies not yet read: the node keeps serving, and ends that session."""
        before = self.node.connections_open()
        cuts = [
            ("half a frame's payload", frame(0x1, b"r" * 1000)[:500]),
            ("half a frame's header", frame(0x1, b"r" * 70_000)[:5]),
            ("a fragmented message's first fragment", frame(0x1, b"part", fin=False)),
            ("1,000 messages whose replies are unread", b"".join(frame(0x1, b"unread %d" % i) for i in range(1000))),
            ("a close frame's half", frame(0x8, close_payload(1000))[:4]),
        ]
        for what, data in cuts:
            c = RawClient(self.port, timeout=CASE_WAIT)
            c.send(data)
            time.sleep(0.05)  # let the node read it and be inside the frame
            c.reset()
            self.still_serving(f"a reset after {what}")
        # Every reset session ends: the count of open connections comes back to where it was.
        deadline = time.monotonic() + STEP
        while self.node.connections_open() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        now = self.node.connections_open()
        expect(now <= before, f"{now} connections open {STEP:.0f} s after the resets, {before} before them")

    def check_idle_connections(self, count):
        """`count` idle websocket connections: each upgraded (101) or refused with 503; the second
        client's round trip works while they are open; the node's VmRSS stays bounded; they all end
        when closed."""
        rss_before = self.node.rss_kib()
        print(f"      opening {count} idle connections; the node's VmRSS before: {rss_before / 1024:.1f} MiB", flush=True)
        before = self.node.connections_open()
        idle = IdleCrowd(self.port, count)
        try:
            started = time.monotonic()
            idle.open(deadline=started + 60)
            opened = time.monotonic() - started
            rss = self.node.rss_kib()
            each = (rss - rss_before) / max(1, len(idle.accepted))
            print(f"      {len(idle.accepted)} accepted, {idle.refused} refused with 503, in {opened:.1f} s; "
                  f"the node's VmRSS: {rss / 1024:.1f} MiB ({each:.1f} KiB a connection)", flush=True)
            expect(not idle.wrong, f"{len(idle.wrong)} of {count} connections neither upgraded nor refused with 503, "
                                   f"e.g. {idle.wrong[:3]}")
            expect(len(idle.accepted) + idle.refused == count,
                   f"only {len(idle.accepted) + idle.refused} of {count} connections answered within 60 s")
            if idle.refused:
                # The node's limit (limits { connections }, 1024 by default), the second client included.
                # (other checks' connections may still be closing: a few fewer is fine, never more)
                expect(CONNECTION_LIMIT - 8 <= len(idle.accepted) + 1 <= CONNECTION_LIMIT,
                       f"{len(idle.accepted)} idle connections accepted besides the second client, "
                       f"the limit is {CONNECTION_LIMIT}")
            t0 = time.monotonic()
            # At its limit the node answers a fresh client 503: the second client, connected
            # before the crowd, is the one whose round trip must work.
            self.still_serving(f"{len(idle.accepted)} idle connections open", fresh=not idle.refused)
            print(f"      round trips with them open: {(time.monotonic() - t0) * 1000:.1f} ms", flush=True)
            # The idle ones are really served: a message on a few of them is answered.
            for s in idle.accepted[:: max(1, len(idle.accepted) // 5)]:
                s.settimeout(STEP)
                s.sendall(frame(0x1, b"idle no more"))
                got = s.recv(64)
                expect(got == b"\x81\x0cidle no more", f"an idle connection's message answered {got!r}")
            limit = rss_before + 1024 + IDLE_KIB_EACH * len(idle.accepted)
            expect(rss <= limit or self.node.sanitized(), f"the node's VmRSS is {rss / 1024:.1f} MiB with {len(idle.accepted)} idle connections "
                                 f"open, over {limit / 1024:.1f} MiB ({IDLE_KIB_EACH} KiB each, from "
                                 f"{rss_before / 1024:.1f} MiB)")
        finally:
            idle.close()
        deadline = time.monotonic() + STEP
        while self.node.connections_open() > before and time.monotonic() < deadline:
            time.sleep(0.1)
        now = self.node.connections_open()
        print(f"      after closing them: {now} open, the node's VmRSS {self.node.rss_kib() / 1024:.1f} MiB", flush=True)
        expect(now <= before, f"{now} connections still open {STEP:.0f} s after the idle ones closed, {before} before")
        self.still_serving("the idle connections closed")

    def check_at_the_end(self):
        self.still_serving("every check")
        now = self.node.connections_open()
        expect(now <= 2, f"{now - 1} connections open besides this request; only the second client's should be")


class IdleCrowd:
    """Many connections opened without blocking, in batches: each sends the websocket upgrade and
    reads its answer, then stays open and silent."""

    BATCH = 500

    def __init__(self, port, count):
        self.port, self.count = port, count
        self.accepted, self.refused, self.wrong = [], 0, []

    def open(self, deadline):
        request = handshake_request(self.port, "/echo", b"dGhlIHNhbXBsZSBub25jZQ==")
        for first in range(0, self.count, self.BATCH):
            sel = selectors.DefaultSelector()
            answers = {}
            for _ in range(min(self.BATCH, self.count - first)):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex((HOST, self.port))
                sel.register(s, selectors.EVENT_WRITE)
                answers[s] = b""
            while answers and time.monotonic() < deadline:
                for key, events in sel.select(timeout=1.0):
                    s = key.fileobj
                    if events & selectors.EVENT_WRITE:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            self._done(sel, answers, s, f"connect: {os.strerror(err)}")
                            continue
                        s.send(request)  # a fresh socket takes these few bytes whole
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    try:
                        chunk = s.recv(4096)
                    except OSError as e:
                        chunk, answers[s] = b"", answers[s] + f"[{e}]".encode()
                    answers[s] += chunk
                    if b"\r\n\r\n" in answers[s] or not chunk:
                        self._done(sel, answers, s, answers[s])
            for s in list(answers):  # no answer before the deadline
                self._done(sel, answers, s, b"no answer")
            sel.close()

    def _done(self, sel, answers, s, answer):
        sel.unregister(s)
        del answers[s]
        if isinstance(answer, bytes) and answer.startswith(b"HTTP/1.1 101 "):
            self.accepted.append(s)
            return
        if isinstance(answer, bytes) and answer.startswith(b"HTTP/1.1 503 "):
            self.refused += 1
        else:
            self.wrong.append(answer[:80])
        s.close()

    def close(self):
        for s in self.accepted:
            s.close()
        self.accepted = []


class Slowloris(threading.Thread):
    """A client that never finishes its request: the request line, then one byte every second
    (`trickle`), or nothing at all. Records how long the node took to drop it."""

    def __init__(self, port, trickle):
        super().__init__(daemon=True)
        self.port, self.trickle = port, trickle
        self.dropped_after = None
        self.answer = b""
        self.error = None

    def run(self):
        give_up = HANDSHAKE_DEADLINE + DROP_MARGIN + 2
        try:
            with socket.create_connection((HOST, self.port), timeout=STEP) as s:
                started = time.monotonic()
                if self.trickle:
                    s.sendall(b"GET /echo HTTP/1.1\r\n")
                header = b"X-Slow: " + b"s" * 200
                i = 0
                while time.monotonic() - started < give_up:
                    if self.trickle:
                        try:
                            s.sendall(header[i % len(header):i % len(header) + 1])
                        except (BrokenPipeError, ConnectionResetError):
                            self.dropped_after = time.monotonic() - started
                            return
                        i += 1
                    s.settimeout(1.0)
                    try:
                        chunk = s.recv(4096)
                    except socket.timeout:
                        continue
                    except ConnectionResetError:
                        chunk = b""
                    self.answer += chunk
                    if not chunk:
                        self.dropped_after = time.monotonic() - started
                        return
        except OSError as e:
            self.error = e

    def verdict(self, what):
        self.join(HANDSHAKE_DEADLINE + DROP_MARGIN + STEP)
        expect(self.error is None, f"{what}: {self.error}")
        limit = HANDSHAKE_DEADLINE + DROP_MARGIN
        expect(self.dropped_after is not None, f"{what}: still connected after {limit + 2} s; the deadline is "
                                               f"{HANDSHAKE_DEADLINE} s")
        print(f"      {what}: dropped after {self.dropped_after:.1f} s (deadline {HANDSHAKE_DEADLINE} s), "
              f"answer {self.answer[:40]!r}", flush=True)
        expect(self.dropped_after <= limit, f"{what}: dropped after {self.dropped_after:.1f} s, over the deadline "
                                            f"of {HANDSHAKE_DEADLINE} s + {DROP_MARGIN} s")
        expect(b"101" not in self.answer[:12], f"{what}: the node answered {self.answer[:60]!r}")


def raise_file_limit():
    """Raises RLIMIT_NOFILE as far as the hard limit allows (the node, started after, inherits it) and
    returns how many idle connections fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE_CONNECTIONS + FD_MARGIN
    target = want if hard == resource.RLIM_INFINITY else min(hard, want)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    count = min(IDLE_CONNECTIONS, max(0, target - FD_MARGIN))
    if count < IDLE_CONNECTIONS:
        print(f"note: RLIMIT_NOFILE's hard limit is {hard}: {count} idle connections instead of {IDLE_CONNECTIONS}")
    return count


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} PATH/TO/meshrun", file=sys.stderr)
        return 2
    meshrun = os.path.abspath(sys.argv[1])
    idle = raise_file_limit()
    with tempfile.TemporaryDirectory(prefix="meshrun-hostile-") as tmp:
        node = RunningNode(meshrun, tmp, "tests/wire/hostile_test.py")
        failed = 1
        try:
            print(f"node on port {node.port}, pid {node.proc.pid}, VmRSS {node.rss_kib() / 1024:.1f} MiB", flush=True)
            h = Hostile(node)
            # The handshake deadline is long: the slowloris clients run beside the other checks.
            slow = [Slowloris(node.port, trickle=True), Slowloris(node.port, trickle=False)]
            for s in slow:
                s.start()
            failed = run_checks([
                ("reserved bits (RSV1/2/3) -> 1002", h.check_reserved_bits),
                ("reserved opcodes -> 1002", h.check_reserved_opcodes),
                ("unmasked client frames -> 1002", h.check_unmasked),
                ("control frames: fragmented or over 125 bytes -> 1002, pings answered, pongs ignored",
                 h.check_control_frames),
                ("close frames: forbidden codes -> 1002, valid ones echoed, a reason not UTF-8 -> 1002",
                 h.check_close_frames),
                ("continuations: nothing to continue or a message inside a message -> 1002, fragments reassembled",
                 h.check_continuations),
                ("text not UTF-8 -> 1007, whole, split, or in a fragment never finished", h.check_utf8),
                (f"over {MAX_MESSAGE} bytes -> 1009, binary -> 1003", h.check_limits_and_binary),
                ("resets in the middle of a frame: the node keeps serving", h.check_resets),
                (f"{idle} idle connections: each upgraded or 503, round trips meanwhile, VmRSS bounded",
                 lambda: h.check_idle_connections(idle)),
                ("slowloris: a request trickled a byte a second is dropped by the handshake deadline",
                 lambda: slow[0].verdict("the trickled request")),
                ("a connection that sends nothing is dropped by the handshake deadline",
                 lambda: slow[1].verdict("the silent connection")),
                ("the node is still serving, with only the second client connected", h.check_at_the_end),
            ])
            print(f"the node's VmRSS at the end: {node.rss_kib() / 1024:.1f} MiB, peak (VmHWM) "
                  f"{vm_kib(node.proc.pid, 'VmHWM') / 1024:.1f} MiB")
        finally:
            node.stop()
            if failed:
                print("---- node log (last 3000 characters) ----\n" + node.log()[-3000:] + "---- end of node log ----")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
