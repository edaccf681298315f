#!/usr/bin/python3
"""The dashboard under load (docs/dashboard.md): what a page open on /live costs a fleet that moves
about a thousand messages a second, against the same fleet with the dashboard closed.

    bench/dashboard_bench.py [--rate N] [--seconds S] [--pages P] [--smoke] [build/tools/meshrun]

Two senders, N/2 messages a second each (`every` timers), into one sink, under `meshrun up`:

- the reference: `up --dashboard 0` with no page open (the observer gathers, nothing is sent);
- the same with P pages (websocket clients of /live, as the browser's page) reading every update.

For each: the messages the sink received a second (its /metrics), the CPU the process took a
second of the run, and for the pages the updates a second each got and their bytes a second (the
goal: at most 20 updates a second whatever the rate, and the pages' share of the CPU small).
A benchmark, not a test: it exits 1 only when something could not run.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")


def mesh(rate, seconds):
    # The sink's port: `up` moves it to a free one when 8790 is taken.
    period_us = max(1, round(2_000_000 / rate))  # each sender does half
    count = round(rate * seconds / 2)
    return (f"mesh bench\n"
            f"node left {{\n    every {period_us}us {count} times -> send tick to sink/data\n}}\n"
            f"node right {{\n    every {period_us}us {count} times -> send tick to sink/more\n}}\n"
            f"node sink at localhost:8790 {{\n    pin led = out gpiochip0 17\n"
            f"    on data -> {{ toggle led; ack \"ok\" }}\n    on more -> ack \"ok\"\n}}\n")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def received(metrics_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(m) for m in re.findall(r'^meshrun_messages_received_total\{[^}]*node="sink"[^}]*\} (\S+)', text, re.M))


async def page(port, stop, stats):
    async with websockets.connect(f"ws://127.0.0.1:{port}/live", max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello"}))
        while not stop.is_set():
            try:
                m = await asyncio.wait_for(ws.recv(), 0.2)
            except asyncio.TimeoutError:
                continue
            stats["bytes"] += len(m)
            if '"type":"state"' in m and '"full":false' in m:
                stats["updates"] += 1


def run(meshrun, path, seconds, pages):
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([meshrun, "up", path, "--dashboard", "0", "--metrics", "0", "--color", "never"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        ports = {}
        while time.monotonic() < deadline and len(ports) < 2:
            log.seek(0)
            text = log.read().decode(errors="replace")
            for what in ("dashboard", "metrics"):
                m = re.search(rf"{what} (?:of every node here )?on http://127\.0\.0\.1:(\d+)/", text)
                if m:
                    ports[what] = int(m.group(1))
            time.sleep(0.02)
        if len(ports) < 2:
            raise RuntimeError(f"meshrun up did not start:\n{text[-1500:]}")
        stats = [{"bytes": 0, "updates": 0} for _ in range(pages)]

        async def measure():
            stop = asyncio.Event()
            tasks = [asyncio.create_task(page(ports["dashboard"], stop, s)) for s in stats]
            await asyncio.sleep(0.5)  # the pages connected, the senders going
            cpu0, got0, t0 = cpu_seconds(proc.pid), received(ports["metrics"]), time.monotonic()
            for s in stats:
                s["bytes"] = s["updates"] = 0
            await asyncio.sleep(seconds)
            cpu1, got1, t1 = cpu_seconds(proc.pid), received(ports["metrics"]), time.monotonic()
            counted = [dict(s) for s in stats]
            stop.set()
            await asyncio.gather(*tasks)
            return (got1 - got0) / (t1 - t0), (cpu1 - cpu0) / (t1 - t0), counted, t1 - t0
        return asyncio.run(measure())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("meshrun", nargs="?", default=os.path.join(HERE, "..", "build", "tools", "meshrun"))
    ap.add_argument("--rate", type=int, default=1000, help="messages a second into the sink (default 1000)")
    ap.add_argument("--seconds", type=float, default=5, help="measured seconds of each run (default 5)")
    ap.add_argument("--pages", type=int, default=1, help="pages open (default 1)")
    ap.add_argument("--smoke", action="store_true", help="1 s runs: the ctest smoke run")
    opt = ap.parse_args()
    seconds = 1 if opt.smoke else opt.seconds
    fd, path = tempfile.mkstemp(suffix=".mesh")
    with os.fdopen(fd, "w") as f:
        f.write(mesh(opt.rate, seconds + 3))
    try:
        ref_rate, ref_cpu, _, _ = run(opt.meshrun, path, seconds, 0)
        rate, cpu, pages, took = run(opt.meshrun, path, seconds, opt.pages)
    except Exception as e:  # noqa: BLE001 - a benchmark that cannot run says why
        print(f"dashboard_bench: could not run: {e}")
        return 1
    finally:
        os.unlink(path)
    updates = max(p["updates"] for p in pages) / took
    kib = sum(p["bytes"] for p in pages) / took / 1024
    print(f"dashboard under load: {opt.rate} messages/s asked, {seconds:g} s measured a run")
    print(f"  reference, no page open:  {ref_rate:7.0f} messages/s received, CPU {ref_cpu * 100:5.1f}%")
    print(f"  {opt.pages} page{'s' if opt.pages != 1 else ''} open:             {rate:7.0f} messages/s received, "
          f"CPU {cpu * 100:5.1f}%  ({(cpu - ref_cpu) * 100:+.1f} points)")
    print(f"  each page: {updates:.1f} updates/s (goal <= 20: {'PASS' if updates <= 20.5 else 'MISS'}), "
          f"{kib / max(1, opt.pages):.1f} KiB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
