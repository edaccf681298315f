#!/usr/bin/python3
"""Issue 12's first proof: three nodes with no hosts in the file, each its own `meshrun run`
process, find each other through a private etcd (tests/lib/etcd.py) and run the arduino scenario.

The file (written by the test): `discovery etcd "URL"`; iopin and buzzer `at :0` (any free port,
every interface), the clock a client. The clock ticks iopin every 100 ms; each tick makes iopin
send three numbered messages to buzzer (`T.1`, `T.2`, `T.3` for tick T), which logs each one it
fires. The processes start clock first and buzzer last, so each link begins with nothing in etcd.

1. They find each other: iopin and buzzer register the ports they got (the ones their log lines
   show, answering /healthz), the ticks reach iopin and iopin's messages reach buzzer.
2. buzzer stopped (SIGTERM) and started again, its old port held by the test meanwhile so that
   the kernel gives another: etcd holds the new port, iopin's link finds it there, and buzzer's
   second life fires on.
3. etcd down for 3 s and back with its data, then down 3 s and back with nothing stored: every
   node is registered again (its key back within a bound) and buzzer fires throughout, never
   pausing for more than 2.5 s (it fires about 30 messages a second).
4. The clock stopped: every tick it sent reached iopin, and what iopin sent buzzer is what
   buzzer fired over its two lives, each message once, nothing lost.
5. buzzer SIGKILLed: its key is gone within the lease's TTL (10 s) and a little slack; iopin
   stopped with SIGTERM exits 0 and its key goes at once.

Every wait is a bounded poll, so that the test passes whether a link learns of a move from a
lookup at each connect or from a watch. About 30 s; the clock's count (600 ticks, 60 s) is only a
bound: the test stops it after step 3.

    /usr/bin/python3 tests/discovery/fleet_test.py path/to/meshrun

Skipped (exit 77) without the `etcd` binary (Debian's etcd-server).
"""

import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import HOST, STEP, expect, run_checks, wait_for  # noqa: E402
from etcd import Etcd, need_etcd  # noqa: E402
from nodes import Node, write_mesh  # noqa: E402

TTL = 10  # the lease's, in seconds (docs/discovery.md)
DOWN = 3.0  # how long etcd is down at each restart
STALL = 2.5  # the longest buzzer may go without firing while the clock ticks (it fires ~30 a second)


def mesh_text(etcd_url):
    return f"""mesh fleet
discovery etcd "{etcd_url}"

node clock {{
    every 100ms 600 times -> send tick to iopin/datafeed
}}

node iopin at :0 {{
    pin led = out gpiochip0 17
    on datafeed -> {{
        log "tick {{value}}"
        led = random(0.4)
        send "{{value}}.1" to buzzer/signal
        led = random(0.4)
        send "{{value}}.2" to buzzer/signal
        led = random(0.4)
        send "{{value}}.3" to buzzer/signal
        ack "acknowledged"
    }}
}}

node buzzer at :0 {{
    pin horn = out gpiochip0 18
    on signal -> {{
        horn = 1
        log "fired {{value}}"
        ack "buzz buzz buzz"
    }}
}}
"""


FIRED = re.compile(r"^\[ buzzer \] fired (\S+)$", re.M)
SENT = re.compile(r"^\[ iopin \] > sending payload: (\S+) to buzzer/signal$", re.M)
TICKED = re.compile(r"^\[ iopin \] tick (\d+)$", re.M)
TICKS_SENT = re.compile(r"^\[ clock \] > sending payload: (\d+) to iopin/datafeed$", re.M)
LISTENING = re.compile(r"^\[ (\w+) \] listening on ws://0\.0\.0\.0:(\d+)$", re.M)



def healthz(port):
    with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=STEP) as r:
        return json.loads(r.read())


class Fleet:
    def __init__(self, meshrun):
        self.meshrun = meshrun
        self.etcd = Etcd()
        self.mesh = write_mesh(mesh_text(self.etcd.url))
        self.nodes = {}       # name -> the Node running now
        self.buzzer_logs = []  # the logs of buzzer's lives that ended
        self.lease = {}

    def key(self, name):
        return f"/meshrun/fleet/nodes/{name}"

    def registered(self, name):
        """What etcd holds for `name` (the JSON value and the lease), or None."""
        got = self.etcd.get(self.key(name))
        return (json.loads(got[0]), got[1]) if got else None

    def start(self, name):
        self.nodes[name] = Node(self.meshrun, self.mesh, name, ["--sim"])
        return self.nodes[name]

    def log(self, name):
        return self.nodes[name].log() if name in self.nodes else ""

    def fired(self):
        """What buzzer fired, in order, over every life so far."""
        return [v for text in self.buzzer_logs + [self.log("buzzer")] for v in FIRED.findall(text)]

    def listening_port(self, name):
        node = self.nodes[name]
        node.wait_for_line(f"[ {name} ] listening on ws://0.0.0.0:", STEP)
        return int(LISTENING.search(node.log()).group(2))

    def registered_at(self, name, port):
        """Waits until etcd holds `name` at `port`; its value."""
        def at():
            got = self.registered(name)
            return got if got and got[0].get("port") == port else None
        value, lease = wait_for(f"{name}'s key in etcd with port {port}", at, STEP)
        # Bound to every interface, a node registers its address on its connection to etcd: here,
        # with etcd on loopback, 127.0.0.1 (docs/discovery.md).
        expect(value.get("address") == "127.0.0.1", f"{name} `at :0` registered as {value}, not at 127.0.0.1")
        self.lease[name] = lease
        return value

    # 1 ------------------------------------------------------------------------------------------
    def find_each_other(self):
        for name in ("clock", "iopin", "buzzer"):  # each link starts with nothing in etcd
            self.start(name)
        for name in ("iopin", "buzzer"):
            port = self.listening_port(name)
            expect(port != 0, f"{name}'s log line shows port 0")
            self.registered_at(name, port)
            health = healthz(port)
            expect(health.get("node") == name, f"/healthz on {name}'s port {port}: {health}")
        clock = wait_for("the clock's key", lambda: self.registered("clock"), STEP)[0]
        expect("port" not in clock and clock.get("channels") == [], f"the clock, a client, registered {clock}")
        wait_for("30 messages fired by buzzer", lambda: len(self.fired()) >= 30, STEP)
        expect(TICKED.findall(self.log("iopin")), "no tick logged by iopin")
        for name, node in self.nodes.items():
            expect(node.proc.poll() is None, f"{name} ended:\n{node.log()}")

    # 2 ------------------------------------------------------------------------------------------
    def buzzer_restarts_elsewhere(self):
        old = self.registered("buzzer")[0]["port"]
        buzzer = self.nodes.pop("buzzer")
        expect(buzzer.stop() == 0, "buzzer stops with 0 on SIGTERM:\n" + buzzer.log())
        self.buzzer_logs.append(buzzer.log())
        before = len(self.fired())
        # Held (bound and listening, so that no bind of port 0 can have it) while buzzer starts
        # again: the kernel must give it another port. Nothing connects here: its key is revoked.
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            blocker.bind(("0.0.0.0", old))
            blocker.listen(1)
            self.start("buzzer")
            new = self.listening_port("buzzer")
        finally:
            blocker.close()
        expect(new != old, f"buzzer got its old port {old} again")
        self.registered_at("buzzer", new)
        # iopin's link finds buzzer at its new port: the second life fires what iopin sends.
        wait_for(f"buzzer, restarted on port {new}, firing iopin's messages",
                 lambda: len(FIRED.findall(self.log("buzzer"))) >= 30, STEP + 5)
        expect(len(self.fired()) > before, "buzzer's second life fired nothing")

    # 3 ------------------------------------------------------------------------------------------
    def etcd_restarts(self):
        samples = []  # (time, messages fired so far), every 0.1 s while etcd restarts
        done = threading.Event()

        def sample():
            while not done.is_set():
                samples.append((time.monotonic(), len(self.fired())))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            leases = dict(self.lease)
            before = len(self.fired())
            self.etcd.restart(down_for=DOWN)
            expect(len(self.fired()) > before, "buzzer fired nothing while etcd restarted")
            for name in ("clock", "iopin", "buzzer"):
                got = wait_for(f"{name}'s key after etcd's restart", lambda n=name: self.registered(n), STEP)
                expect(got[1] == leases.get(name, got[1]), f"{name}'s lease after a restart with the data: {got[1]}")

            before = len(self.fired())
            self.etcd.restart(down_for=DOWN, wipe=True)
            expect(len(self.fired()) > before, "buzzer fired nothing while etcd restarted with nothing stored")
            # A keepalive finds the lease gone (every third of the TTL), and each process
            # registers again on a new lease: within the TTL and a little backoff.
            for name in ("clock", "iopin", "buzzer"):
                got = wait_for(f"{name} registered again after etcd lost everything",
                               lambda n=name: self.registered(n), TTL + 3)
                expect(got[1] != leases.get(name), f"{name} is on its old lease {got[1]} in an etcd that lost it")
                self.nodes[name].wait_for_line("registering again", STEP)
            after = len(self.fired())
            wait_for("buzzer firing after every node registered again", lambda: len(self.fired()) >= after + 30, STEP)
        finally:
            done.set()
            sampler.join()
        longest, at, since = 0.0, 0, None
        for t, n in samples:  # the longest stretch without a new firing
            if since is None or n != at:
                since, at = t, n
            longest = max(longest, t - since)
        expect(longest <= STALL,
               f"buzzer fired nothing for {longest:.1f} s while etcd restarted (at most {STALL} s allowed)")
        for name, node in self.nodes.items():
            expect(node.proc.poll() is None, f"{name} ended:\n{node.log()}")

    # 4 ------------------------------------------------------------------------------------------
    def nothing_lost(self):
        clock = self.nodes.pop("clock")
        expect(clock.stop() == 0, "the clock stops with 0 on SIGTERM:\n" + clock.log())
        clock_log = clock.log()
        ticks = TICKS_SENT.findall(clock_log)
        expect(len(ticks) >= 50, f"the clock sent only {len(ticks)} ticks")
        expect("not delivered" not in clock_log, "the clock's ticks not delivered:\n" + clock_log[-2000:])
        expect(clock_log.count("< acknowledged") == len(ticks),
               f"{len(ticks)} ticks sent, {clock_log.count('< acknowledged')} acknowledged:\n" + clock_log[-2000:])

        def settled():
            iopin = self.log("iopin")
            sent = SENT.findall(iopin)
            return len(sent) == 3 * len(ticks) and len(self.fired()) >= len(sent)
        wait_for(f"iopin's messages for {len(ticks)} ticks all fired by buzzer", settled, STEP)
        iopin = self.log("iopin")
        expect(sorted(TICKED.findall(iopin), key=int) == sorted(ticks, key=int),
               "the ticks iopin fired are not the ones the clock sent")
        sent, fired = SENT.findall(iopin), self.fired()
        twice = sorted({v for v in fired if fired.count(v) > 1})
        expect(not twice, f"buzzer fired {len(twice)} messages twice: {twice[:10]}")
        lost = sorted(set(sent) - set(fired))
        expect(not lost, f"{len(lost)} of iopin's {len(sent)} messages never fired by buzzer: {lost[:10]}")
        expect(sorted(fired) == sorted(sent), f"buzzer fired {len(fired)} messages, iopin sent {len(sent)}")

    # 5 ------------------------------------------------------------------------------------------
    def killed_key_gone(self):
        expect(self.registered("buzzer") is not None, "buzzer's key before the kill")
        buzzer = self.nodes.pop("buzzer")
        buzzer.proc.kill()
        killed = time.monotonic()
        buzzer.stop()
        self.buzzer_logs.append(buzzer.log())
        expect(self.registered("buzzer") is not None, "the key outlives a SIGKILL for a while (nobody revoked it)")
        wait_for("buzzer's key gone after a SIGKILL", lambda: self.registered("buzzer") is None, TTL + 3)
        took = time.monotonic() - killed
        expect(took <= TTL + 1.5, f"buzzer's key went {took:.1f} s after the kill, past the TTL of {TTL} s")
        expect(self.registered("iopin") is not None, "iopin's key went with buzzer's")
        # iopin, stopped as a service is, revokes its lease: its key goes at once.
        iopin = self.nodes.pop("iopin")
        expect(iopin.stop() == 0, "iopin stops with 0 on SIGTERM:\n" + iopin.log()[-2000:])
        wait_for("iopin's key gone at its stop", lambda: self.registered("iopin") is None, 3)

    def close(self):
        for node in self.nodes.values():
            node.stop(signal.SIGKILL)
        self.etcd.close()
        os.unlink(self.mesh)


def main():
    if len(sys.argv) != 2:
        print("usage: fleet_test.py MESHRUN", file=sys.stderr)
        return 2
    need_etcd()
    fleet = Fleet(os.path.abspath(sys.argv[1]))
    try:
        failures = run_checks([
            ("three processes at :0 and a client find each other through etcd", fleet.find_each_other),
            ("buzzer restarted on another port: etcd has it, iopin's link finds it", fleet.buzzer_restarts_elsewhere),
            ("etcd restarted, with its data and without: registered again, traffic never stops", fleet.etcd_restarts),
            ("every tick reached iopin, every message of iopin fired by buzzer once", fleet.nothing_lost),
            ("a killed node's key is gone within the TTL, a stopped one's at once", fleet.killed_key_gone),
        ])
    finally:
        fleet.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
