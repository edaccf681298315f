#!/usr/bin/python3
"""A stand-in for `meshrun up FILE --dashboard PORT`, for working on the page without the engine:
it serves dashboard/ (the files themselves, not the embedded copies) and speaks the protocol of
docs/dashboard.md on /live, with a made-up fleet.

    /usr/bin/python3 tests/dashboard/fake_dashboard.py [--port 8080 (0: any)] [--fleet arduino|doorbell|many]
                                                       [--secret TOKEN] [--rate N]

`arduino`: the clock ticks every second, iopin sends 3 random levels to buzzer, horn follows.
`doorbell`: clicking porch.button (to 0) rings the chime. `many`: 20 nodes, still. --rate N adds N messages a second to
buzzer.signal (a load for the page). Not a test: the tests run against the real binary.
"""

import argparse
import asyncio
import copy
import http
import json
import os
import random
import time

import websockets

DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "dashboard")
FILES = {"/": ("index.html", "text/html"), "/dashboard.js": ("dashboard.js", "text/javascript"),
         "/dashboard.css": ("dashboard.css", "text/css")}


def pin(name, direction, line):
    return {"name": name, "direction": direction, "chip": "gpiochip0", "line": str(line)}


def source(kind, name, *labels, first=0):
    return {"kind": kind, "name": name,
            "rules": [{"index": first + i, "label": label, "line": 10 + first + i} for i, label in enumerate(labels)]}


def node(name, address, pins=(), sources=(), edges=()):
    return {"name": name, "here": True, "address": address, "simulated": True, "pins": list(pins),
            "sources": list(sources), "edges": [{"node": n, "channel": c} for n, c in edges]}


FLEETS = {
    "arduino": [
        node("clock", "", sources=[source("timer", "every 1s", "every 1s 5 times")], edges=[("iopin", "datafeed")]),
        node("iopin", "localhost:8765", [pin("led", "output", 17)], [source("channel", "datafeed", "on datafeed")],
             [("buzzer", "signal")]),
        node("buzzer", "localhost:8766", [pin("horn", "output", 18)],
             [source("channel", "signal", "on signal 1", "on signal")]),
    ],
    "doorbell": [
        node("porch", "pi-porch.local", [pin("button", "input", 4), pin("lamp", "output", 17)],
             [source("pin", "button", "on button 0")], [("chime", "ring")]),
        node("chime", "pi-hall.local:8700", [pin("solenoid", "output", 18), pin("mute", "input", 23)],
             [source("channel", "ring", "on ring when mute == 1", "on ring"),
              source("pin", "mute", "on mute", first=2)]),
    ],
}
# 20 nodes: 4 sensors report to 4 hubs, the hubs to 2 controllers and to each other, the
# controllers to 10 actuators (and one back to a sensor): a layout to look at.
FLEETS["many"] = (
    [node(f"sensor{i}", "", [pin("probe", "input", i)], [source("pin", "probe", "on probe")],
          [(f"hub{i}", "reading")] + ([("hub0", "reading")] if i else [])) for i in range(4)]
    + [node(f"hub{i}", f"localhost:{8800 + i}", [], [source("channel", "reading", "on reading")],
            [(f"ctl{i % 2}", "report")] + ([(f"hub{i + 1}", "reading")] if i < 3 else [])) for i in range(4)]
    + [node(f"ctl{i}", f"localhost:{8810 + i}", [pin("alarm", "output", 5)],
            [source("channel", "report", "on report when value > 20", "on report")],
            [(f"act{j}", "set") for j in range(i * 5, i * 5 + 5)] + ([("sensor0", "calibrate")] if i else []))
       for i in range(2)]
    + [node(f"act{i}", f"localhost:{8820 + i}", [pin("relay", "output", 6)], [source("channel", "set", "on set")])
       for i in range(10)])
FLEETS["many"][0]["sources"].insert(0, source("channel", "calibrate", "on calibrate"))


class Fleet:
    def __init__(self, name, rate):
        self.graph = {"type": "graph", "mesh": name, "secret": False, "nodes": FLEETS[name]}
        self.rate = rate
        self.state = {}
        for n in self.graph["nodes"]:
            rules = [r["index"] for s in n["sources"] for r in s["rules"]]
            self.state[n["name"]] = {
                "pins": {p["name"]: 1 if p["name"] == "button" else 0 for p in n["pins"]},
                "channels": {s["name"]: {"count": 0, "last": []} for s in n["sources"] if s["kind"] == "channel"},
                "rules": {str(r): 0 for r in rules},
                "links": {str(e): {"state": "connecting", "why": "", "queued": 0, "sent": 0, "acked": 0, "dropped": 0}
                          for e in range(len(n["edges"]))}}

    def receive(self, node, channel, payload):
        c = self.state[node]["channels"][channel]
        c["count"] += 1
        c["last"] = (c["last"] + [payload])[-5:]

    def fire(self, node, index):
        self.state[node]["rules"][str(index)] += 1

    def sent(self, node, edge):
        link = self.state[node]["links"][str(edge)]
        link.update(state="up", sent=link["sent"] + 1, acked=link["acked"] + 1)

    async def run(self):
        name = self.graph["mesh"]
        ticks = 0
        while True:
            if name == "arduino":
                await asyncio.sleep(1)
                ticks += 1
                self.fire("clock", 0)
                self.sent("clock", 0)
                self.receive("iopin", "datafeed", f"tick {ticks}")
                self.fire("iopin", 0)
                for _ in range(3):
                    level = int(random.random() < 0.4)
                    self.state["iopin"]["pins"]["led"] = level
                    self.sent("iopin", 0)
                    self.receive("buzzer", "signal", str(level))
                    self.fire("buzzer", 0 if level else 1)
                    self.state["buzzer"]["pins"]["horn"] = level
            elif self.rate:
                started = time.monotonic()
                while time.monotonic() - started < 1:
                    await asyncio.sleep(0.01)
                    for _ in range(self.rate // 100):
                        self.receive("chime", "ring", "load")
                        self.fire("chime", 1)
            else:
                await asyncio.sleep(1)

    async def drive(self, node, pin_name, level):
        pins = self.state[node]["pins"]
        pins[pin_name] = level
        if (node, pin_name, level) == ("porch", "button", 0):
            self.fire("porch", 0)
            pins["lamp"] = 1
            self.sent("porch", 0)
            self.receive("chime", "ring", "ding-dong")
            self.fire("chime", 1)
            for level in (1, 0, 1, 0):
                self.state["chime"]["pins"]["solenoid"] = level
                await asyncio.sleep(0.2)


def diff(old, new):
    """What changed from `old` to `new`, as a partial state's nodes."""
    out = {}
    for name, node in new.items():
        changes = {}
        for part, items in node.items():
            changed = {k: v for k, v in items.items() if old.get(name, {}).get(part, {}).get(k) != v}
            if changed:
                changes[part] = changed
        if changes:
            out[name] = changes
    return out


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--fleet", choices=sorted(FLEETS), default="arduino")
    parser.add_argument("--secret")
    parser.add_argument("--rate", type=int, default=0)
    args = parser.parse_args()
    fleet = Fleet(args.fleet, args.rate)
    fleet.graph["secret"] = args.secret is not None

    async def process_request(path, _headers):
        if path == "/live":
            return None
        if path not in FILES:
            return http.HTTPStatus.NOT_FOUND, [("Content-Type", "text/plain")], b"not found\n"
        name, kind = FILES[path]
        with open(os.path.join(DASHBOARD, name), "rb") as f:
            return http.HTTPStatus.OK, [("Content-Type", f"{kind}; charset=utf-8")], f.read()

    async def live(ws, _path):
        hello = json.loads(await ws.recv())
        if args.secret is not None and hello.get("token") != args.secret:
            await ws.send(json.dumps({"type": "denied", "error": "wrong token" if "token" in hello else "a token is needed"}))
            await ws.close(1008, "denied")
            return
        await ws.send(json.dumps(fleet.graph))
        seq = 1
        sent = copy.deepcopy(fleet.state)
        await ws.send(json.dumps({"type": "state", "seq": seq, "full": True, "nodes": sent}))

        async def updates():
            nonlocal seq, sent
            while True:
                await asyncio.sleep(0.05)
                changes = diff(sent, fleet.state)
                if changes:
                    seq += 1
                    sent = copy.deepcopy(fleet.state)
                    await ws.send(json.dumps({"type": "state", "seq": seq, "full": False, "nodes": changes}))

        task = asyncio.create_task(updates())
        try:
            async for raw in ws:
                m = json.loads(raw)
                if m.get("type") == "drive":
                    asyncio.create_task(fleet.drive(m["node"], m["pin"], m["level"]))
                    await ws.send(json.dumps({"type": "drove", "id": m["id"], "ok": True}))
        finally:
            task.cancel()

    async with websockets.serve(live, "127.0.0.1", args.port, process_request=process_request) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"[ meshrun ] dashboard on http://127.0.0.1:{port}/", flush=True)
        await fleet.run()


if __name__ == "__main__":
    asyncio.run(main())
