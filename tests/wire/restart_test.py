#!/usr/bin/python3
"""Delivery across restarts (docs/delivery.md, issue 11): a stream of numbered messages through two
`meshrun run` nodes while one of them is SIGKILLed and restarted, with and without --state.

    /usr/bin/python3 tests/wire/restart_test.py path/to/meshrun [--messages N] [--kills K] [--seed S]
                                                                [--only 1,2,3,4]

The nodes, the clients and the checks are tests/lib/stream.py's: a (on `in`, sends the value to
b/data, replies once b acknowledged) and b (logs "got VALUE"); clients that speak meshrun.1 to a
themselves (each its own Meshrun-Sender, one boot for the whole run, `r SEQ` for a message sent
again after a reconnect), so that their own resends to a restarted `a` are answered once too.

Four scenarios: b killed and restarted KILLS times with --state, then without; a the same. After
each, from b's log (all its runs) and the clients' replies: every number was fired at b, each
client's numbers first fired in order, and every second firing is accounted for by a refire that a
node logged ("counted in meshrun_delivery_refired_total", at a or b: a refire at a sends the
message on to b again). The kill moments are drawn from a seeded generator; the seed is printed.

Prints one line per scenario (messages, kills, duplicates, counted refires, time) and per check,
`N passed, M failed` last; exits 1 on any failure.
"""

import argparse
import asyncio
import os
import random
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import HOST, CheckFailed, expect, run_checks  # noqa: E402
from nodes import Node, write_mesh  # noqa: E402
from stream import REFIRED, SENDERS, Client, Firings, loopback_port, stream_mesh  # noqa: E402


class Restartable:
    """A node that is killed and started again; its logs, every run's, in order."""

    def __init__(self, meshrun, mesh, name, args):
        self.meshrun, self.mesh, self.name, self.args = meshrun, mesh, name, args
        self.runs = []
        self.start()

    def start(self):
        self.runs.append(Node(self.meshrun, self.mesh, self.name, args=self.args))

    def kill(self):
        """SIGKILL, and waits for the process to end (its port and state lock are free then)."""
        node = self.runs[-1]
        expect(node.proc.poll() is None,
               f"{self.name} ended before it was killed (exit {node.proc.returncode}); its log:\n{node.log()[-2000:]}")
        node.stop(signal.SIGKILL)

    def log(self):
        return "".join(node.log() for node in self.runs)

    def tail(self, lines=12):
        """The last lines of its last run's log, for a failure's message."""
        last = self.runs[-1].log().splitlines()[-lines:]
        return f"the last lines of {self.name}'s log (run {len(self.runs)}):\n" + "".join(f"  {l}\n" for l in last)

    def stop(self):
        for node in self.runs:
            node.stop()


def other_refires(node):
    return "".join(f"  {line}\n" for line in node.log().splitlines() if REFIRED in line)[:3000]


def check_stream(meshrun, victim, state, messages, kills, seed):
    """The stream through a and b while `victim` is SIGKILLed and restarted `kills` times."""
    rng = random.Random(seed)
    pa = loopback_port(rng)
    pb = loopback_port(rng, taken=(pa,))
    mesh = write_mesh(stream_mesh(HOST, pa, HOST, pb))
    args = ["--sim", *(["--state", tempfile.mkdtemp(prefix="state-")] if state else [])]
    b = Restartable(meshrun, mesh, "b", args)
    a = Restartable(meshrun, mesh, "a", args)
    nodes = {"a": a, "b": b}
    started = time.monotonic()
    progress = [0]  # the replies the clients had, all together
    try:
        a.runs[-1].wait_for_line(f":{pa}", 10)
        b.runs[-1].wait_for_line(f":{pb}", 10)
        boot = f"run{os.getpid()}x{seed}"  # the clients' one boot: their numbers hold across a's restarts
        clients = [Client(k, HOST, pa, boot, messages, progress) for k in range(SENDERS)]
        # The kills: at drawn points of the stream (replies had), each a drawn moment after it,
        # and the restart a drawn moment later.
        margin = max(1, messages // 50)
        marks = sorted(rng.sample(range(margin, messages - margin), kills))
        streaming = [True]

        async def killer():
            for mark in marks:
                while progress[0] < mark:
                    if not streaming[0]:
                        return
                    await asyncio.sleep(0.002)
                await asyncio.sleep(rng.uniform(0, 0.02))
                nodes[victim].kill()
                await asyncio.sleep(rng.uniform(0, 0.2))
                nodes[victim].start()

        async def stream():
            kills_done = asyncio.create_task(killer())
            try:
                await asyncio.gather(*(c.run() for c in clients))
            finally:
                streaming[0] = False
                await kills_done

        try:
            asyncio.run(stream())
        except CheckFailed as e:
            raise CheckFailed(f"{e}\n{a.tail()}{b.tail()}") from None
        took = time.monotonic() - started
        killed = len(nodes[victim].runs) - 1
        firings = Firings(a.log(), b.log())
        print(f"      {victim} killed {killed} times, {'with' if state else 'without'} --state: {messages} messages, "
              f"{firings.duplicates} duplicates, {firings.refires} counted refires (a {firings.refires_at['a']}, "
              f"b {firings.refires_at['b']}), {took:.1f} s, seed {seed}",
              flush=True)
        expect(killed == kills, f"{victim} was killed {killed} times, not {kills}: the stream ended first")
        firings.check(messages)
        # Only the restarted node may refire, and only what was in flight to it when it was
        # killed: one message of a's link to b (one in flight a link), one of each client to a.
        other = "a" if victim == "b" else "b"
        expect(firings.refires_at[other] == 0,
               f"{other}, never restarted, refired {firings.refires_at[other]} messages:\n{other_refires(nodes[other])}")
        in_flight = 1 if victim == "b" else SENDERS
        expect(firings.refires_at[victim] <= kills * in_flight,
               f"{victim} refired {firings.refires_at[victim]} messages in {kills} restarts, more than the "
               f"{in_flight} it can have had in flight each time")
    finally:
        a.stop()
        b.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("meshrun")
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--only", default="1,2,3,4", help="the scenarios to run, by number (1,2,3,4)")
    opts = parser.parse_args()
    seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"seed {seed} (again with --seed {seed})", flush=True)
    checks = [
        ("b killed and restarted, with --state",
         lambda: check_stream(opts.meshrun, "b", True, opts.messages, opts.kills, seed)),
        ("b killed and restarted, without --state",
         lambda: check_stream(opts.meshrun, "b", False, opts.messages, opts.kills, seed + 1)),
        ("a killed and restarted, with --state",
         lambda: check_stream(opts.meshrun, "a", True, opts.messages, opts.kills, seed + 2)),
        ("a killed and restarted, without --state",
         lambda: check_stream(opts.meshrun, "a", False, opts.messages, opts.kills, seed + 3)),
    ]
    chosen = {int(n) for n in opts.only.split(",")}
    # Every log, mesh file and state directory of the run in one directory: removed when all
    # passed, kept (and named) when a check failed.
    tempfile.tempdir = tempfile.mkdtemp(prefix="meshrun-restart-")
    failed = run_checks([c for i, c in enumerate(checks, 1) if i in chosen])
    if failed:
        print(f"the nodes' logs are kept in {tempfile.tempdir}")
    else:
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
