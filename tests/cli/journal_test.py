#!/usr/bin/python3
"""The log under systemd: JOURNAL_STREAM names the journal's stream (device:inode), as systemd
sets it for a service whose output goes to the journal.

    /usr/bin/python3 tests/cli/journal_test.py path/to/meshrun

The journal is played by a pseudo-terminal, so that `--color auto` would color it were it not
the journal:

1. `run` with stdout on the terminal and JOURNAL_STREAM naming it: no escape codes with
   `--color auto`; without JOURNAL_STREAM the same run colors (the check can fail); JOURNAL_STREAM
   naming another file colors too; `--color always` colors even under the journal (asked for).
2. Every line of the log is one event, `[ node ] ...` or with a syslog priority `<N>[ node ] ...`;
   a warning at the stop (messages not delivered) is `<4>[ clock ] warning: ...`.
3. Diagnostics on stderr under the journal: one line each, `<4>FILE:L:C: warning: ... [kind]`,
   no source excerpt; an error at start (a pin whose chip does not exist) `<3>...: error: ...
   [gpio-line]; note: ...`, one line. Without the journal: the compiler's lines and excerpts.

Prints one line per check and `N passed, M failed` last; exits 1 on any failure.
"""

import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import STEP, expect, free_port, run_checks  # noqa: E402
from nodes import write_mesh  # noqa: E402

MESHRUN = sys.argv[1]

# An unused pin (a warning at start), and a clock that sends to a port nobody listens on: its
# messages are left held at the stop, which the log warns of.
MESH = """\
mesh journal

node clock {{
    pin spare = in gpiochip0 5
    every 50ms -> send 1 to buzzer/signal
}}

node buzzer at 127.0.0.1:{port} {{
    on signal -> ack "buzz"
}}
"""

NO_CHIP = """\
mesh nochip

node porch at 127.0.0.1:{port} {{
    pin led = out gpiochip-meshrun-none 17
    on signal -> {{ led = value; ack "ok" }}
}}
"""

ESC = "\x1b["


def read_all(fd, proc, until=None, timeout=STEP):
    """What the terminal's master end receives until `until` appears or the process ends."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the process ended and closed the other end
                break
            if not chunk:
                break
            out += chunk
            if until and until in out.decode(errors="replace"):
                break
        elif proc.poll() is not None:
            break
    return out.decode(errors="replace").replace("\r\n", "\n")


class Ready:
    """A notify socket (sd_notify(3)) to learn when meshrun serves, and handles SIGTERM."""

    def __init__(self):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(STEP)

    def wait(self):
        expect(b"READY=1" in self.sock.recv(4096), "no READY=1")

    def close(self):
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


def run_with(args, stdout, stderr, env, master, stop):
    """Runs meshrun, reading the terminal `master`; with `stop`, SIGTERM once it is ready.
    Returns what the terminal received and the exit status."""
    ready = Ready()
    env = {**env, "NOTIFY_SOCKET": ready.path}
    proc = subprocess.Popen([MESHRUN, *args], stdout=stdout, stderr=stderr, env=env)
    try:
        out = ""
        if stop:
            ready.wait()
            out += read_all(master, proc, timeout=0.2)
            proc.send_signal(signal.SIGTERM)
        out += read_all(master, proc)
        proc.wait(STEP)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ready.close()
    return out, proc.returncode


def clean_env():
    return {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NO_COLOR", "NOTIFY_SOCKET")}


def run_on_terminal(args, journal, stop=True):
    """Runs meshrun with stdout on a new pseudo-terminal, stderr to a file; `journal`: None (no
    JOURNAL_STREAM), "stdout" (naming the terminal) or "other" (naming another file); with
    `stop`, SIGTERM once it serves. Returns its output, its stderr's text and exit status."""
    master, slave = pty.openpty()
    env = clean_env()
    with tempfile.NamedTemporaryFile() as other, tempfile.TemporaryFile(mode="w+") as err:
        if journal:
            st = os.fstat(slave if journal == "stdout" else other.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        try:
            out, code = run_with(args, slave, err, env, master, stop)
        finally:
            os.close(slave)
            os.close(master)
        err.seek(0)
        return out, err.read(), code


def journal_args(mesh, color):
    return ["run", mesh, "--node", "clock", "--sim", "--grace", "0.2", "--color", color]


def colors(mesh, color, journal, colored):
    out, err, code = run_on_terminal(journal_args(mesh, color), journal)
    expect(code == 0, f"exit {code}; stderr:\n{err}")
    expect("[ clock ] started" in out.replace(ESC + "31m", "").replace(ESC + "0m", ""), f"the log:\n{out!r}")
    expect((ESC in out) == colored, f"{'no' if colored else ''} escape codes in the log:\n{out!r}")


def one_line_per_event(mesh, port):
    out, err, code = run_on_terminal(journal_args(mesh, "auto"), "stdout")
    expect(code == 0, f"exit {code}; stderr:\n{err}")
    lines = out.splitlines()
    event = re.compile(r"^(<[0-7]>)?\[ clock \] \S")
    expect(lines and all(event.match(line) for line in lines), f"a line that is not one event:\n{out}")
    warning = [line for line in lines if "not delivered" in line]
    expect(len(warning) == 1 and warning[0].startswith("<4>[ clock ] warning: "),
           f"the warning of what was not delivered:\n{out}")
    expect(all(line.startswith("[ clock ] ") for line in lines if "warning" not in line),
           f"a priority on a line that is no warning:\n{out}")
    # stderr (not the journal here: JOURNAL_STREAM names stdout) keeps the compiler's form.
    expect(" | " in err and "warning:" in err and len(err.splitlines()) > 1, f"stderr:\n{err}")


def diagnostics_one_line(mesh):
    """stderr is the journal (stdout and stderr the same stream, as systemd makes them)."""
    master, slave = pty.openpty()
    env = clean_env()
    st = os.fstat(slave)
    env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    try:
        out, code = run_with(journal_args(mesh, "auto"), slave, slave, env, master, True)
    finally:
        os.close(slave)
        os.close(master)
    expect(code == 0, f"exit {code}:\n{out}")
    expect(ESC not in out, f"escape codes:\n{out!r}")
    warnings = [line for line in out.splitlines() if "[unused-pin]" in line]
    expect(len(warnings) == 1 and re.match(r"^<4>\S+\.mesh:4:9: warning: .*\[unused-pin\]", warnings[0]),
           f"the unused pin's warning, one line with <4>:\n{out}")
    expect(" | " not in out and "^" not in out, f"a source excerpt:\n{out}")


def pin_error_one_line():
    mesh = write_mesh(NO_CHIP.format(port=free_port()))
    try:
        out, err, code = run_on_terminal(["run", mesh, "--node", "porch"], None, stop=False)
        expect(code == 1, f"exit {code}; stderr:\n{err}")
        expect(len(err.splitlines()) > 1, f"without the journal: the compiler's form, on lines of its own:\n{err}")
        # stderr is a file here: JOURNAL_STREAM names it.
        with tempfile.TemporaryFile(mode="w+") as f:
            st = os.fstat(f.fileno())
            env = clean_env()
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            code = subprocess.call([MESHRUN, "run", mesh, "--node", "porch"], stdout=f, stderr=f, env=env)
            f.seek(0)
            err = f.read()
        expect(code == 1, f"exit {code}: {err}")
        lines = err.splitlines()
        expect(len(lines) == 1, f"not one line:\n{err}")
        expect(re.match(r"^<3>\S+\.mesh:4:5: error: .*gpiochip-meshrun-none.*\[gpio-line\]; note: ", lines[0]),
               f"the pin's error:\n{err}")
    finally:
        os.unlink(mesh)


def meshrun_errors_with_priority(mesh):
    """`meshrun: error:` lines (a node the file has not, as a mistyped instance gives) get <3>;
    JOURNAL_STREAM with junk after the inode names no stream."""
    with tempfile.TemporaryFile(mode="w+") as f:
        st = os.fstat(f.fileno())
        for stream, prefix in ((f"{st.st_dev}:{st.st_ino}", "<3>"), (f"{st.st_dev}:{st.st_ino}x", "")):
            f.seek(0)
            f.truncate()
            env = {**clean_env(), "JOURNAL_STREAM": stream}
            code = subprocess.call([MESHRUN, "run", mesh, "--node", "nope"], stdout=f, stderr=f, env=env)
            f.seek(0)
            err = f.read()
            expect(code == 2, f"exit {code}: {err}")
            expect(f"\n{prefix}meshrun: error: no node `nope` in the file" in "\n" + err,
                   f"JOURNAL_STREAM={stream}: {err!r}")


port = free_port()
MESH_FILE = write_mesh(MESH.format(port=port))
checks = [
    ("--color auto: colors on a terminal (the control)", lambda: colors(MESH_FILE, "auto", None, True)),
    ("--color auto: no colors when the terminal is the journal", lambda: colors(MESH_FILE, "auto", "stdout", False)),
    ("--color auto: colors when JOURNAL_STREAM names another file", lambda: colors(MESH_FILE, "auto", "other", True)),
    ("--color always: colors even to the journal", lambda: colors(MESH_FILE, "always", "stdout", True)),
    ("one line per event, a warning with <4>", lambda: one_line_per_event(MESH_FILE, port)),
    ("diagnostics at start: one line each, with <4>", lambda: diagnostics_one_line(MESH_FILE)),
    ("a pin that cannot be had: one line with <3>", pin_error_one_line),
    ("meshrun's own errors with <3>; JOURNAL_STREAM with junk is no journal",
     lambda: meshrun_errors_with_priority(MESH_FILE)),
]
failed = run_checks(checks)
os.unlink(MESH_FILE)
sys.exit(1 if failed else 0)
