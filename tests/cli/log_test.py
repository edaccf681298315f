#!/usr/bin/python3
"""The logs of `meshrun run` and `meshrun up` as a user reads them.

    /usr/bin/python3 tests/cli/log_test.py path/to/meshrun

1. Log injection: a client sends text with newlines, terminal escapes, DEL, C1 controls; the node
   logs it (`log "got {value}"`). The text log shows every control character escaped (`\\n`,
   `\\x1b`, `\\u0085`) on the one line of the node, forges no line and clears no screen; printable
   text, UTF-8 included, is as sent. The JSON log carries the text exactly.
2. --timestamps: every text line starts with the local time (`2026-11-30 14:03:05.123`), in the
   time zone of TZ, for `run` and `up`, with and without color; JSON lines gain `time`, the same
   instant as `time_us` in local time with its UTC offset. Without the flag, neither.

Prints one line per check and `N passed, M failed` last; exits 1 on any failure. Run it with
Debian's /usr/bin/python3 (apt package python3-websockets).
"""

import asyncio
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import HOST, STEP, CheckFailed, expect, free_port, run_checks, wait_for_port  # noqa: E402

MESH = """\
node echo at 127.0.0.1:{port} {{
    on say -> {{ log "got {{value}}"; ack "ok" }}
}}
node clock {{
    every 20ms 3 times -> send "tick {{tick}}" to echo/say
}}
"""

# What a client sends, and the text log line each must give (after `[ echo ] `).
INJECTIONS = [
    ("a\nb\x1b[2J", r"got a\nb\x1b[2J"),
    ("forged\r\n[ echo ] got nothing", r"got forged\r\n[ echo ] got nothing"),
    ("tab\there, nul\x00, bell\x07, del\x7f", r"got tab\there, nul\x00, bell\x07, del\x7f"),
    ("c1 \u0085 and csi \u009b2J", r"got c1 \u0085 and csi \u009b2J"),
    ("plain text, é ü 日本 🙂 and a \\ backslash", "got plain text, é ü 日本 🙂 and a \\ backslash"),
]

TIMESTAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})"
UTC_PLUS_14 = datetime.timezone(datetime.timedelta(hours=14))


class Session:
    """One meshrun process: started, talked to, stopped with SIGTERM; its output kept as bytes."""

    def __init__(self, binary, mesh, port, args, tz="XYZ-14"):
        self.port = port
        env = dict(os.environ, TZ=tz)
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen([binary] + args(mesh), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        if not wait_for_port(port, self.proc):
            out, err = self.finish()
            raise CheckFailed(f"{args(mesh)}: nothing accepted on port {port} (exit {self.proc.returncode}): "
                              f"{out[-2000:]!r} {err[-2000:]!r}")

    async def say(self, messages):
        async with websockets.connect(f"ws://{HOST}:{self.port}/say", open_timeout=STEP, close_timeout=STEP) as ws:
            for m in messages:
                await asyncio.wait_for(ws.send(m), STEP)
                reply = await asyncio.wait_for(ws.recv(), STEP)
                expect(reply == "ok", f"the reply to {m!r} is {reply!r}, expected 'ok'")

    def finish(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=STEP)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return out, err


def lines_of(out):
    """The lines of an output, split at "\\n" only: str.splitlines() also splits at U+0085 and
    others, which a logged line may hold."""
    return out.decode("utf-8").split("\n")[:-1]


def run_session(binary, mesh, port, args, messages=(), wait=0.0, tz="XYZ-14"):
    s = Session(binary, mesh, port, args, tz)
    try:
        if messages:
            asyncio.run(asyncio.wait_for(s.say(messages), 60))
        time.sleep(wait)
    finally:
        out, err = s.finish()
    return out, err, s.proc.returncode


def check_text_injection(binary, mesh, port):
    out, err, rc = run_session(binary, mesh, port, lambda m: ["run", m, "--node", "echo", "--color", "never"],
                               [m for m, _ in INJECTIONS])
    expect(rc == 0, f"run exited {rc}: {err!r}")
    expect(b"\x1b" not in out, f"an escape character reached the text log: {out!r}")
    for c in list(range(0x20)) + [0x7f]:
        if c != 0x0a:
            expect(bytes([c]) not in out, f"control character {c:#04x} reached the text log: {out!r}")
    text = out.decode("utf-8")
    expect("\u0085" not in text and "\u009b" not in text, f"a C1 control reached the text log: {text!r}")
    lines = lines_of(out)
    for _, logged in INJECTIONS:
        expect(f"[ echo ] {logged}" in lines, f"no line `[ echo ] {logged}` in the log:\n{text}")
    for line in lines:
        expect(line.startswith("[ echo ] "), f"a line of the log without the node's prefix: {line!r}\n{text}")
    expect(len(lines) == 1 + len(INJECTIONS), f"{len(lines)} lines, expected {1 + len(INJECTIONS)}:\n{text}")


def check_colored_injection(binary, mesh, port):
    out, _, _ = run_session(binary, mesh, port, lambda m: ["run", m, "--node", "echo", "--color", "always"],
                            [INJECTIONS[0][0]])
    text = out.decode("utf-8")
    # The only escapes are the logger's own colors around the prefix.
    without_colors = re.sub(r"\x1b\[[0-9]+m", "", text)
    expect("\x1b" not in without_colors, f"an escape beyond the prefix colors: {text!r}")
    expect(f"[ echo ] {INJECTIONS[0][1]}" in without_colors.split("\n"), f"the escaped line is missing: {text!r}")


def check_json_exact(binary, mesh, port):
    out, _, _ = run_session(binary, mesh, port, lambda m: ["run", m, "--node", "echo", "--log", "json"],
                            [m for m, _ in INJECTIONS])
    expect(b"\x1b" not in out, f"an escape character reached the JSON log: {out!r}")
    rows = [json.loads(line) for line in lines_of(out)]
    messages = [r["message"] for r in rows]
    for sent, _ in INJECTIONS:
        expect(f"got {sent}" in messages, f"the JSON log does not carry {sent!r} exactly: {messages!r}")
    expect(all("time" not in r for r in rows), f"`time` without --timestamps: {rows!r}")


def stamped(line, what):
    m = re.match(TIMESTAMP + r" (.*)$", line)
    expect(m is not None, f"{what}: a line without a timestamp: {line!r}")
    when = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC_PLUS_14)
    now = datetime.datetime.now(UTC_PLUS_14)
    expect(abs((now - when).total_seconds()) < 60,
           f"{what}: {m.group(1)} is not the local time in TZ (UTC+14), which is {now:%Y-%m-%d %H:%M:%S}")
    return m.group(2)


def check_timestamps_run(binary, mesh, port):
    out, _, _ = run_session(binary, mesh, port,
                            lambda m: ["run", m, "--node", "echo", "--timestamps", "--color", "never"],
                            [INJECTIONS[0][0], "two"])
    lines = lines_of(out)
    expect(len(lines) == 3, f"{len(lines)} lines, expected 3: {lines!r}")
    rest = [stamped(line, "run --timestamps") for line in lines]
    expect(rest[0].startswith("[ echo ] listening on ws://"), f"the first line: {lines[0]!r}")
    expect(rest[1] == f"[ echo ] {INJECTIONS[0][1]}", f"the second line: {lines[1]!r}")
    expect(rest[2] == "[ echo ] got two", f"the third line: {lines[2]!r}")


def check_timestamps_up_color(binary, mesh, port):
    out, _, _ = run_session(binary, mesh, port, lambda m: ["up", m, "--timestamps", "--color", "always"], wait=1.0)
    lines = lines_of(out)
    expect(len(lines) >= 1 + 3 * 3, f"{len(lines)} lines, expected 10 or more: {lines!r}")
    nodes = set()
    for line in lines:
        rest = stamped(line, "up --timestamps --color always")
        m = re.match(r"\x1b\[3[1-6]m\[ (echo |clock) \]\x1b\[0m ", rest)
        expect(m is not None, f"after the timestamp, not a colored node prefix: {line!r}")
        nodes.add(m.group(1).strip())
    expect(nodes == {"echo", "clock"}, f"the nodes that logged: {nodes}")


def check_no_timestamps(binary, mesh, port):
    out, _, _ = run_session(binary, mesh, port, lambda m: ["up", m, "--color", "never"], wait=0.3)
    lines = lines_of(out)
    expect(lines, "nothing logged")
    for line in lines:
        expect(line.startswith("[ "), f"a line without --timestamps that does not start with the prefix: {line!r}")


def check_timestamps_json(binary, mesh, port):
    out, _, _ = run_session(binary, mesh, port, lambda m: ["up", m, "--timestamps", "--log", "json"], wait=0.3)
    rows = [json.loads(line) for line in lines_of(out)]
    expect(len(rows) >= 4, f"{len(rows)} rows: {rows!r}")
    for r in rows:
        expect(set(r) == {"time", "time_us", "node", "message"}, f"the fields of a row: {sorted(r)}")
        expect(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+14:00", r["time"]),
               f"`time` is not local ISO 8601 with the offset of TZ (UTC+14): {r['time']!r}")
        when = datetime.datetime.fromisoformat(r["time"])
        from_us = datetime.datetime.fromtimestamp(r["time_us"] / 1e6, datetime.timezone.utc)
        expect(abs((when - from_us).total_seconds()) < 0.002,
               f"`time` {r['time']} and `time_us` {r['time_us']} are not the same instant")


def check_help(binary, _mesh, _port):
    for cmd in ("run", "up"):
        out = subprocess.run([binary, cmd, "--help"], capture_output=True, text=True, timeout=STEP).stdout
        expect("--timestamps" in out, f"`meshrun {cmd} --help` does not describe --timestamps:\n{out}")


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} PATH/TO/meshrun", file=sys.stderr)
        return 2
    binary = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="meshrun-log-") as tmp:
        port = free_port()
        mesh = os.path.join(tmp, "log.mesh")
        with open(mesh, "w") as f:
            f.write(MESH.format(port=port))
        checks = [
            ("1. text log: control characters escaped, one line per log line", check_text_injection),
            ("1. text log with colors: no escape beyond the prefix colors", check_colored_injection),
            ("1. JSON log: the text exactly", check_json_exact),
            ("2. run --timestamps: local time first on every line", check_timestamps_run),
            ("2. up --timestamps --color always: local time, then the colored prefix", check_timestamps_up_color),
            ("2. without --timestamps: no timestamp", check_no_timestamps),
            ("2. --timestamps --log json: `time` in local ISO 8601 beside time_us", check_timestamps_json),
            ("2. --help describes --timestamps", check_help),
        ]
        failed = run_checks([(name, lambda fn=fn: fn(binary, mesh, port)) for name, fn in checks])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
