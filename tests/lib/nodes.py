"""`meshrun run` processes for the Python wire tests: started on a file, their log read from a
file (never a full pipe), their CPU time and memory read from /proc.

    from nodes import Node, ask, write_mesh
"""

import asyncio
import os
import resource
import signal
import subprocess
import tempfile
import time

import websockets

from checks import HOST, STEP, CheckFailed, sanitized

TICK = os.sysconf("SC_CLK_TCK")


class Node:
    """A `meshrun run` process; its log is read from a file, so it never blocks on a full pipe."""

    def __init__(self, meshrun, mesh, node, args=(), limit_files=None, wait_port=None, env=None):
        self.log_path = tempfile.mktemp(suffix=".log")
        self.log_file = open(self.log_path, "w")

        def limits():
            if limit_files:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit_files, limit_files))

        self.proc = subprocess.Popen([meshrun, "run", mesh, "--node", node, "--color", "never", *args],
                                     stdout=self.log_file, stderr=subprocess.STDOUT, preexec_fn=limits,
                                     env=None if env is None else {**os.environ, **env})
        if wait_port:
            self.wait_for_line(f":{wait_port}", STEP)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_for_line(self, text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise CheckFailed(f"no log line with {text!r} within {timeout} s; the log:\n{self.log()[-2000:]}")

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0

    def sanitized(self):
        return sanitized(self.proc.pid)

    def stop(self, sig=signal.SIGTERM, timeout=STEP):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode


def write_mesh(text):
    fd, path = tempfile.mkstemp(suffix=".mesh")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


async def ask(port, channel, message, timeout=STEP):
    async with websockets.connect(f"ws://{HOST}:{port}/{channel}", max_size=None, open_timeout=timeout) as ws:
        await ws.send(message)
        return await asyncio.wait_for(ws.recv(), timeout)


