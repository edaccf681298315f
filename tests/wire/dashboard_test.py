"""The dashboard's server as any client sees it (docs/dashboard.md), without a browser: the page and
its assets, /live (hello, graph, state, updates, drive), POST /pins/NODE/PIN on the dashboard's port
and a node's, `meshrun drive`, the secret, and bad input. The page itself is tested in a browser by
tests/dashboard/.

    dashboard_test.py MESHRUN
"""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from checks import HOST, STEP, CheckFailed, expect, free_port, run_checks, wait_for  # noqa: E402
from nodes import ask, write_mesh  # noqa: E402
from wsraw import RawClient  # noqa: E402

import websockets  # noqa: E402

MESHRUN = sys.argv[1]
TOPOLOGIES = os.path.join(os.path.dirname(__file__), "..", "..", "topologies")
ARDUINO = os.path.join(TOPOLOGIES, "arduino.mesh")
DOORBELL = os.path.join(TOPOLOGIES, "doorbell.mesh")


class Up:
    """`meshrun up FILE --dashboard 0`; the dashboard's port and the nodes' from its log."""

    def __init__(self, mesh, args=(), env=None):
        self.log_path = tempfile.mktemp(suffix=".log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen([MESHRUN, "up", mesh, "--dashboard", "0", "--color", "never", *args],
                                     stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env=None if env is None else {**os.environ, **env})
        found = {}

        def started():
            m = re.search(r"dashboard on http://127\.0\.0\.1:(\d+)/", self.log())
            if m:
                found["port"] = int(m.group(1))
            return m is not None or self.proc.poll() is not None
        wait_for("the dashboard's log line", started, STEP)
        expect("port" in found, f"no dashboard line; the log:\n{self.log()}")
        self.port = found["port"]

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def node_port(self, node):
        m = re.search(rf"\[ {node} *\] listening on ws://127\.0\.0\.1:(\d+)", self.log())
        expect(m, f"no listening line for {node}:\n{self.log()}")
        return int(m.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.log_file.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        status = self.stop()
        if exc[0] is None:
            expect(status == 0, f"meshrun up exited {status}:\n{self.log()[-2000:]}")


def http(port, path, method="GET", body=None, headers=None):
    """(status, headers, body) of one request."""
    req = urllib.request.Request(f"http://{HOST}:{port}{path}", method=method, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=STEP) as res:
            return res.status, res.headers, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


class Page:
    """A client of /live: its messages, read as they come."""

    def __init__(self, ws):
        self.ws = ws
        self.graph = None
        self.nodes = {}   # the state, merged
        self.updates = 0  # partial states applied
        self.seq = 0

    async def next(self, timeout=STEP):
        m = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if m["type"] == "graph":
            self.graph = m
        elif m["type"] == "state":
            expect(m["seq"] >= self.seq, f"seq went back: {self.seq} then {m['seq']}")
            self.seq = m["seq"]
            if m["full"]:
                self.nodes = m["nodes"]
            else:
                self.updates += 1
                for name, node in m["nodes"].items():
                    for part, items in node.items():
                        self.nodes[name][part].update(items)
        return m

    async def until(self, what, cond, timeout):
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFailed(f"{what}: not within {timeout} s; the state: {json.dumps(self.nodes)[:600]}")
            try:
                await self.next(left)
            except asyncio.TimeoutError:
                pass


async def open_page(port, hello=None):
    ws = await websockets.connect(f"ws://{HOST}:{port}/live", open_timeout=STEP, max_size=None)
    await ws.send(json.dumps(hello if hello is not None else {"type": "hello"}))
    page = Page(ws)
    first = await page.next()
    return page, first


def arduino_live():
    with Up(ARDUINO) as up:
        status, headers, body = http(up.port, "/")
        expect(status == 200 and "text/html" in headers["Content-Type"] and "<html" in body.lower(),
               f"GET /: {status} {headers['Content-Type']}")
        for path in ("/dashboard.js", "/dashboard.css"):
            status, _, body = http(up.port, path)
            expect(status == 200 and body, f"GET {path}: {status}")
        status, _, body = http(up.port, "/nothing")
        expect(status == 404 and "the dashboard is at /" in body, f"GET /nothing: {status} {body!r}")
        status, _, _ = http(up.port, "/live")
        expect(status == 426, f"GET /live without an upgrade: {status}")

        async def live():
            page, first = await open_page(up.port)
            expect(first["type"] == "graph", f"first message: {first}")
            g = page.graph
            expect(g["mesh"] == "arduino" and not g["secret"], f"graph: {g['mesh']} secret {g['secret']}")
            names = [n["name"] for n in g["nodes"]]
            expect(names == ["clock", "iopin", "buzzer"], f"nodes: {names}")
            clock, iopin, buzzer = g["nodes"]
            expect(clock["edges"] == [{"node": "iopin", "channel": "datafeed"}], f"clock's edges: {clock['edges']}")
            expect(iopin["edges"] == [{"node": "buzzer", "channel": "signal"}], f"iopin's edges: {iopin['edges']}")
            expect(all(n["here"] and n["simulated"] for n in g["nodes"]), "every node here, simulated")
            expect(clock["address"] == "" and re.fullmatch(r"127\.0\.0\.1:\d+", buzzer["address"]),
                   f"addresses: {clock['address']!r} {buzzer['address']!r}")
            expect([p["name"] for p in buzzer["pins"]] == ["horn"] and buzzer["pins"][0]["direction"] == "output",
                   f"buzzer's pins: {buzzer['pins']}")
            labels = [r["label"] for s in buzzer["sources"] for r in s["rules"]]
            expect(len(labels) == 2 and all("signal" in label for label in labels), f"buzzer's rules: {labels}")
            state = await page.next()
            expect(state["type"] == "state" and state["full"], f"second message: {state['type']}")
            expect(set(state["nodes"]) == {"clock", "iopin", "buzzer"}, f"state's nodes: {list(state['nodes'])}")
            # The clock ticks 5 times, a second apart; iopin sends 3 to the buzzer each time.
            started = time.monotonic()
            await page.until("5 ticks on iopin/datafeed and 15 on buzzer/signal", lambda: (
                page.nodes["iopin"]["channels"]["datafeed"]["count"] == 5
                and page.nodes["buzzer"]["channels"]["signal"]["count"] == 15), 12)
            took = time.monotonic() - started
            signal_ = page.nodes["buzzer"]["channels"]["signal"]
            expect(len(signal_["last"]) == 5 and set(signal_["last"]) <= {"0", "1"}, f"last messages: {signal_['last']}")
            rules = page.nodes["buzzer"]["rules"]
            expect(rules["0"] + rules["1"] == 15, f"the buzzer's rules fired {rules}, not 15 in all")
            link = page.nodes["iopin"]["links"]["0"]
            expect(link["state"] == "up" and link["sent"] == 15, f"iopin's link: {link}")
            expect(page.nodes["buzzer"]["pins"]["horn"] in (0, 1), "the horn's level")
            # Coalesced: at most one update every 50 ms.
            expect(page.updates <= took / 0.05 + 3, f"{page.updates} updates in {took:.1f} s")
            await page.ws.close()
        asyncio.run(live())


def doorbell_drive():
    with Up(DOORBELL) as up:
        async def live():
            page, _ = await open_page(up.port)
            await page.next()  # the whole state
            expect(page.nodes["porch"]["pins"]["button"] == 1, "the button idles high (pull_up)")
            await page.ws.send(json.dumps({"type": "drive", "id": 7, "node": "porch", "pin": "button", "level": 0}))
            drove = {}

            def answered():
                return bool(drove)
            while not answered():
                m = await page.next()
                if m["type"] == "drove":
                    drove.update(m)
            expect(drove == {"type": "drove", "id": 7, "ok": True}, f"drove: {drove}")
            await page.until("the chime rang", lambda: page.nodes["chime"]["channels"]["ring"]["count"] == 1, 5)
            await page.until("the solenoid struck", lambda: page.nodes["chime"]["pins"]["solenoid"] == 1, 5)
            expect(page.nodes["porch"]["pins"]["lamp"] == 1, "the porch lamp is on")
            for bad, words in (({"type": "drive", "id": 8, "node": "porch", "pin": "lamp", "level": 1}, "is an output"),
                               ({"type": "drive", "id": 9, "node": "attic", "pin": "x", "level": 1}, "no node `attic`"),
                               ({"type": "drive", "id": 10, "node": "chime", "pin": "mute", "level": 2}, "0 or 1"),
                               ({"type": "drive", "id": 11, "node": "chime", "level": "1"}, "expected"),
                               ({"type": "hello", "id": 12}, "expected"),
                               ("not json", "expected")):
                await page.ws.send(bad if isinstance(bad, str) else json.dumps(bad))
                while True:
                    m = await page.next()
                    if m["type"] in ("drove", "error"):
                        break
                expect(not m["ok"] and words in m["error"], f"{bad}: {m}")
                if isinstance(bad, dict):  # the answer names the request, and is `drove` to a drive only
                    want = "drove" if bad["type"] == "drive" else "error"
                    expect(m.get("id") == bad["id"] and m["type"] == want, f"{bad}: {m}")
            await page.ws.close()
        asyncio.run(live())

        # POST /pins on the dashboard's port and on the chime's own.
        status, _, body = http(up.port, "/pins/chime/mute", "POST", b"1")
        expect(status == 200 and body == "chime.mute = 1\n", f"POST mute: {status} {body!r}")
        chime = up.node_port("chime")
        status, _, body = http(chime, "/pins/chime/mute", "POST", b"0\n")
        expect(status == 200 and body == "chime.mute = 0\n", f"POST on the chime's port: {status} {body!r}")
        status, _, body = http(chime, "/pins/porch/button", "POST", b"0")
        expect(status == 404 and "node `chime`'s port" in body, f"porch on the chime's port: {status} {body!r}")
        status, headers, _ = http(chime, "/pins/chime/mute")
        expect(status == 405 and headers["Allow"] == "POST", f"GET a pin: {status} {headers.get('Allow')}")
        status, _, body = http(up.port, "/pins/chime/mute", "POST", b"high")
        expect(status == 400 and "0 or 1" in body, f"a level `high`: {status} {body!r}")
        status, _, body = http(up.port, "/pins/chime/solenoid", "POST", b"1")
        expect(status == 409 and "output" in body, f"an output: {status} {body!r}")
        status, _, body = http(up.port, "/pins/chime", "POST", b"1")
        expect(status == 404 and "/pins/NODE/PIN" in body, f"no pin: {status} {body!r}")

        # meshrun drive, as a user types it.
        def drive(*args, env=None):
            r = subprocess.run([MESHRUN, "drive", DOORBELL, *args], capture_output=True, text=True, timeout=STEP,
                               env=None if env is None else {**os.environ, **env})
            return r.returncode, r.stdout, r.stderr
        code, out, err = drive("chime.mute=1", "--to", f"127.0.0.1:{chime}")
        expect(code == 0 and out == "chime.mute = 1\n", f"drive mute: {code} {out!r} {err!r}")
        wait_for("the chime's log says the night switch is 1", lambda: "night switch is now 1" in up.log(), STEP)
        code, out, err = drive("porch.button=0", "--to", f"http://127.0.0.1:{up.port}")
        expect(code == 0 and out == "porch.button = 0\n", f"drive through the dashboard: {code} {out!r} {err!r}")
        # A server that is not meshrun's is named as such.
        other = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(free_port())],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            other_port = int(other.args[-1])
            wait_for("python's http.server", lambda: http_up(other_port), STEP)
            code, out, err = drive("chime.mute=1", "--to", f"127.0.0.1:{other_port}")
            expect(code == 1 and "is not a meshrun node or dashboard" in err, f"drive to http.server: {code} {err!r}")
        finally:
            other.kill()
            other.wait()
        for args, want_code, words in ((["porch.button=0"], 2, "no port"),
                                       (["chime.mute=1", "--to", "[::1]:1"], 1, "cannot ask http://[::1]:1:"),
                                       (["chime.mute=1", "--to", ":8080"], 2, "--to `:8080`"),
                                       (["chime.mure=1", "--to", f"127.0.0.1:{chime}"], 2, "did you mean `mute`"),
                                       (["chime.solenoid=1", "--to", f"127.0.0.1:{chime}"], 2, "is an output"),
                                       (["chime.mute=on"], 2, "NODE.PIN=LEVEL"),
                                       (["chime.mute=1", "--to", "127.0.0.1:1"], 1, "cannot ask http://127.0.0.1:1"),
                                       (["chime.mute=1", "--to", "ftp://x:1"], 2, "--to `ftp://x:1`")):
            code, out, err = drive(*args)
            expect(code == want_code and words in err, f"drive {args}: {code} {err!r}")


def variables_live():
    """A node's variables in the graph (names) and the state (values), and each change as it is set."""
    port = free_port()
    mesh = write_mesh(f"""node hall at 127.0.0.1:{port} {{
    pin lamp = out gpiochip0 17
    var visits = 0
    var mode = "day"
    on motion -> {{ lamp = 1; visits = visits + 1; ack "{{visits}}" }}
    on night -> {{ mode = "night {{value}}"; ack "{{mode}}" }}
}}
""")
    try:
        with Up(mesh) as up:
            async def live():
                page, first = await open_page(up.port)
                hall = first["nodes"][0]
                expect(hall["variables"] == ["visits", "mode"], f"the graph's variables: {hall['variables']}")
                await page.next()  # the whole state
                expect(page.nodes["hall"]["variables"] == {"visits": "0", "mode": "day"},
                       f"the first values: {page.nodes['hall']['variables']}")
                for n in (1, 2):
                    expect(await ask(up.node_port("hall"), "motion", "1") == str(n), f"motion {n}")
                expect(await ask(up.node_port("hall"), "night", "x" * 300) == "night " + "x" * 300, "night")
                await page.until("visits 2", lambda: page.nodes["hall"]["variables"]["visits"] == "2", 5)
                await page.until("the mode", lambda: page.nodes["hall"]["variables"]["mode"].startswith("night x"), 5)
                mode = page.nodes["hall"]["variables"]["mode"]
                expect(len(mode) == 200, f"a long value is cut to 200 bytes, as messages are: {len(mode)}")
                await page.ws.close()
            asyncio.run(live())
    finally:
        os.unlink(mesh)


def http_up(port):
    try:
        http(port, "/")
        return True
    except OSError:
        return False


def cross_site():
    with Up(DOORBELL) as up:
        evil = {"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}
        status, _, body = http(up.port, "/pins/chime/mute", "POST", b"1", evil)
        expect(status == 403 and "another site" in body, f"a POST from another site: {status} {body!r}")
        chime = up.node_port("chime")
        status, _, body = http(chime, "/pins/chime/mute", "POST", b"1", evil)
        expect(status == 403 and "another site" in body, f"a POST from another site to the node: {status} {body!r}")
        status, _, body = http(up.port, "/pins/chime/mute", "POST", b"1", {"Host": "evil.example"})
        expect(status == 403 and "not for `evil.example`" in body, f"DNS rebinding: {status} {body!r}")
        same = {"Origin": f"http://127.0.0.1:{up.port}"}
        status, _, body = http(up.port, "/pins/chime/mute", "POST", b"1", same)
        expect(status == 200, f"a POST from the dashboard's own page: {status} {body!r}")
        for headers in (b"Origin: http://evil.example\r\n", b"Origin: null\r\n"):
            try:
                RawClient(up.port, "/live", headers=headers)
                raise CheckFailed(f"/live opened with {headers!r}")
            except CheckFailed as e:
                expect("HTTP/1.1 403" in str(e), f"/live with {headers!r}: {e}")
        with socket.create_connection((HOST, up.port), timeout=STEP) as sock:
            sock.sendall(b"POST /pins/chime/mute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000000\r\n\r\n1")
            status_line = sock.recv(4096).split(b"\r\n", 1)[0]
        expect(status_line == b"HTTP/1.1 413 Payload Too Large", f"a 2 MB body: {status_line!r}")


def denied_go_quickly():
    mesh = write_mesh(f'mesh locked\nsecret env DASH_TOKEN\nnode door at localhost:{free_port()} {{\n'
                      '  on knock -> ack "who"\n}\n')
    with Up(mesh, env={"DASH_TOKEN": "s3cret"}) as up:
        # Clients denied that never answer the close: each is gone within about a second. (60: the
        # dashboard takes 64 connections at most.)
        clients = [RawClient(up.port, "/live") for _ in range(60)]
        for c in clients:
            c.send_frame(0x1, b'{"type": "hello", "token": "bad"}')
        started = time.monotonic()
        for c in clients:
            fin, opcode, payload = c.read_frame()
            expect(opcode == 0x1 and b"denied" in payload, f"first frame: {opcode} {payload[:80]!r}")
        for c in clients:
            c.sock.settimeout(5)
            try:
                while c.sock.recv(65536):
                    pass
            except OSError:
                pass
        took = time.monotonic() - started
        expect(took < 4, f"60 denied clients held their connections {took:.1f} s")
        status, _, body = http(up.port, "/")
        expect(status == 200, f"the page after 60 denied clients: {status}")
        for c in clients:
            c.sock.close()
    os.unlink(mesh)


def secret():
    mesh = write_mesh('mesh locked\nsecret env DASH_TOKEN\n'
                      f'node door at localhost:{free_port()} {{\n  pin bell = in gpiochip0 4\n'
                      '  on bell 1 -> log "ding"\n  on knock -> ack "who"\n}\n')
    env = {"DASH_TOKEN": "s3cret"}
    with Up(mesh, env=env) as up:
        async def live():
            page, first = await open_page(up.port)
            expect(first == {"type": "denied", "error": "no token, or a wrong one"}, f"no token: {first}")
            try:
                await asyncio.wait_for(page.ws.recv(), STEP)
                raise CheckFailed("the socket stayed open after denied")
            except websockets.ConnectionClosed as e:
                expect(e.rcvd and e.rcvd.code == 1008, f"closed with {e.rcvd}")
            page, first = await open_page(up.port, {"type": "hello", "token": "wrong"})
            expect(first["type"] == "denied", f"a wrong token: {first}")
            await page.ws.close()
            page, first = await open_page(up.port, {"type": "hello", "token": "s3cret"})
            expect(first["type"] == "graph" and first["secret"], f"the right token: {first['type']}")
            await page.ws.close()
        asyncio.run(live())
        status, _, _ = http(up.port, "/pins/door/bell", "POST", b"1")
        expect(status == 401, f"POST without the token: {status}")
        status, _, _ = http(up.port, "/pins/door/bell", "POST", b"1", {"Authorization": "Bearer s3cret"})
        expect(status == 200, f"POST with the token: {status}")
        wait_for("the rule fired", lambda: "ding" in up.log(), STEP)
        port = up.node_port("door")
        r = subprocess.run([MESHRUN, "drive", mesh, "door.bell=0", "--to", f"127.0.0.1:{port}"], capture_output=True,
                           text=True, timeout=STEP, env={**os.environ, **env})
        expect(r.returncode == 0, f"drive with the token: {r.returncode} {r.stderr!r}")
        r = subprocess.run([MESHRUN, "drive", mesh, "door.bell=0", "--to", f"127.0.0.1:{port}"], capture_output=True,
                           text=True, timeout=STEP, env={**os.environ, "DASH_TOKEN": "nope"})
        expect(r.returncode == 1 and "HTTP 401" in r.stderr, f"drive with a wrong token: {r.returncode} {r.stderr!r}")
    os.unlink(mesh)


def bad_input():
    with Up(ARDUINO) as up:
        async def live():
            # A message past limits { message } (64 KiB): closed with 1009, and the dashboard serves on.
            page, _ = await open_page(up.port)
            await page.next()
            await page.ws.send("x" * (65 * 1024))
            try:
                while True:
                    await page.next()
            except websockets.ConnectionClosed as e:
                expect(e.rcvd and e.rcvd.code == 1009, f"a message too big: closed with {e.rcvd}")
            # A hello that is not one: denied.
            page, first = await open_page(up.port, "hi")
            expect(first["type"] == "denied", f"a bad hello: {first}")
            # A client that never reads is never queued for: its socket's buffers fill, the others go on.
            stalled = await websockets.connect(f"ws://{HOST}:{up.port}/live", max_size=None, read_limit=1024)
            await stalled.send(json.dumps({"type": "hello"}))
            page, _ = await open_page(up.port)
            await page.until("a tick", lambda: page.nodes and page.nodes["iopin"]["channels"]["datafeed"]["count"] >= 2, 5)
            await stalled.close()
            await page.ws.close()
        asyncio.run(live())
        status, _, _ = http(up.port, "/")
        expect(status == 200, f"the page after bad input: {status}")
    # The port: a node's is refused; a port that is not one is bad usage.
    r = subprocess.run([MESHRUN, "up", ARDUINO, "--dashboard", "8766"], capture_output=True, text=True, timeout=STEP)
    expect(r.returncode == 2 and "port 8766 is node `buzzer`'s" in r.stderr, f"--dashboard 8766: {r.returncode} {r.stderr!r}")
    r = subprocess.run([MESHRUN, "up", ARDUINO, "--dashboard", "80x"], capture_output=True, text=True, timeout=STEP)
    expect(r.returncode == 2 and "`80x` is not a port" in r.stderr, f"--dashboard 80x: {r.returncode} {r.stderr!r}")


sys.exit(1 if run_checks([
    ("the arduino fleet live: the graph, the state, updates coalesced", arduino_live),
    ("the doorbell driven: /live, POST /pins, meshrun drive", doorbell_drive),
    ("a node's variables: their names, their values, each change", variables_live),
    ("with a secret: denied without the token, served with it", secret),
    ("pages of other sites refused: Origin, Host (DNS rebinding); a body too large", cross_site),
    ("clients denied are gone within a second, answering the close or not", denied_go_quickly),
    ("bad input: a message too big, a bad hello, a client that never reads, bad ports", bad_input),
]) else 0)
