#!/usr/bin/python3
"""The dashboard in a browser: `meshrun up FILE --dashboard 0` and Debian's chromium, headless,
driven through the DevTools protocol (cdp.py beside this file).

    /usr/bin/python3 tests/dashboard/dashboard_test.py MESHRUN CASE ARTIFACTS_DIR

CASE is one of:
  arduino   the arduino fleet: its 3 nodes and 2 sends drawn; datafeed's and signal's counts rise with
            the clock's ticks, to 5 and 15; buzzer.horn takes both levels; rules' counts rise; both
            links go `up`. Screenshot: ARTIFACTS_DIR/arduino.png.
  doorbell  a click on porch.button (pressed: 0) reaches the engine: the chime's ring channel counts
            1, chime.solenoid goes to 1, the porch lamp to 1; an output and a real pin are not
            buttons. Screenshot: ARTIFACTS_DIR/doorbell.png.
  hall      topologies/hall.mesh: the node's variable `visits` shown with its first value, `0`; each
            click on hall.motion that turns it to 1 counts one more, as the rule sets it.
  load      load.mesh, about 1,000 messages a second for 6 s, under `--metrics 0` too: the page's
            counts end equal to the fleet's /metrics; it got at most ~25 updates a second while the
            fleet received ~1,000 messages a second; its main thread kept drawing frames (a
            requestAnimationFrame probe) without long tasks. Screenshot: ARTIFACTS_DIR/load.png.
  secret    secret.mesh (`secret env`): the page asks for the token, a wrong one is denied and said
            so, the right one shows the graph (and drives a pin); a reload keeps it for the tab.
            Screenshot: ARTIFACTS_DIR/secret.png.

Prints one line per check and `N passed, M failed` last; exits 1 on a failure, 77 (skipped, with the
reason) without /usr/bin/chromium. Every wait is bounded; chromium and meshrun are stopped in the
end, whatever happened.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
from cdp import Browser, Unavailable  # noqa: E402
from checks import HOST, STEP, CheckFailed, expect, run_checks, wait_for  # noqa: E402

SKIP = 77
TOPOLOGIES = os.path.join(HERE, "..", "..", "topologies")
TOKEN_VAR = "MESHRUN_DASHBOARD_TEST_TOKEN"

# What the page shows, through its hooks (docs/dashboard.md, dashboard/dashboard.js).
DOM = """(() => {
  const all = (attr, value) => Object.fromEntries([...document.querySelectorAll(`[data-${attr}]`)]
      .map((e) => [e.getAttribute(`data-${attr}`), e.getAttribute(`data-${value}`)]));
  return {nodes: [...document.querySelectorAll("[data-node]")].map((e) => e.dataset.node),
          pins: all("pin", "level"), channels: all("channel", "count"), rules: all("rule", "fired"),
          links: all("link", "state"),
          variables: Object.fromEntries([...document.querySelectorAll("[data-variable]")]
              .map((e) => [e.dataset.variable, e.textContent])),
          clickable: [...document.querySelectorAll("button[data-pin]")].map((e) => e.dataset.pin),
          form: !document.getElementById("token-form").hidden,
          formError: document.getElementById("token-error").textContent,
          status: document.getElementById("status").dataset.status,
          page: window.meshrunDashboard};
})()"""

# Counts the frames the page draws and its long tasks (over 50 ms of main thread), and records every
# level each pin shows (nothing missed between two looks), from before the page's own script runs.
PROBE = """
window.meshrunProbe = {frames: 0, longTasks: 0, longTaskMs: 0, levels: {}};
new MutationObserver((records) => {
  for (const r of records) {
    const levels = (window.meshrunProbe.levels[r.target.dataset.pin] ||= []);
    const level = r.target.dataset.level;
    if (levels[levels.length - 1] !== level) levels.push(level);
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-level"]});
(function frame() { window.meshrunProbe.frames++; requestAnimationFrame(frame); })();
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) { window.meshrunProbe.longTasks++; window.meshrunProbe.longTaskMs += e.duration; }
  }).observe({type: "longtask", buffered: true});
} catch (e) {}
"""


class Fleet:
    """`meshrun up FILE --dashboard 0 [more]`, its log in a file of its own, read as it grows."""

    def __init__(self, meshrun, mesh, *more, env=None):
        fd, self.log_path = tempfile.mkstemp(prefix="meshrun-dashboard-", suffix=".log")
        os.close(fd)
        with open(self.log_path, "a") as out:
            self.proc = subprocess.Popen([meshrun, "up", mesh, "--dashboard", "0", "--color", "never", *more],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=dict(os.environ, **(env or {})))

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def tail(self):
        """The log's last lines, for a failure's message."""
        return "\n".join(self.log()[-3000:].splitlines()[1:])

    def port_of(self, pattern, what):
        """The port the first log line matching `pattern` (its group 1) says."""
        def found():
            expect(self.proc.poll() is None, f"meshrun up ended ({self.proc.returncode}) before {what}:\n{self.tail()}")
            m = re.search(pattern, self.log())
            return m and int(m.group(1))
        try:
            return wait_for(what, found, STEP)
        except CheckFailed as e:
            raise CheckFailed(e if self.proc.poll() is not None else f"{e}:\n{self.tail()}") from None

    def dashboard_url(self):
        port = self.port_of(r"dashboard on http://127\.0\.0\.1:(\d+)/", "the line `dashboard on http://...`")
        return f"http://{HOST}:{port}/"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STEP)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STEP)
        os.unlink(self.log_path)


def metric(port, name, **labels):
    """The value of one sample of a /metrics exposition."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=STEP) as r:
        text = r.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)\{(.*)\} (\S+)", line)
        if m and m.group(1) == name and ",".join(sorted(m.group(2).split(","))) == want:
            return float(m.group(3))
    raise CheckFailed(f"no sample {name}{{{want}}} in /metrics")


class Case:
    """One fleet, one browser page on its dashboard, and the checks of a case."""

    def __init__(self, meshrun, artifacts, browser):
        self.meshrun, self.artifacts, self.browser = meshrun, artifacts, browser
        self.fleet = None
        self.page = None

    def start(self, mesh, *more, env=None):
        self.fleet = Fleet(self.meshrun, mesh, *more, env=env)
        self.url = self.fleet.dashboard_url()
        self.page = self.browser.new_page()
        self.page.add_script(PROBE)
        self.page.navigate(self.url)

    def levels(self, pin):
        """Every level the page showed for `pin`, in order ("" before the first state)."""
        return self.page.evaluate(f"window.meshrunProbe.levels[{pin!r}] || []")

    def dom(self):
        return self.page.evaluate(DOM)

    def wait_dom(self, what, cond, timeout=STEP):
        """The first view of the page for which cond(view) holds; a failure shows the last one."""
        seen = {}
        def check():
            seen["dom"] = self.dom()
            return cond(seen["dom"]) and seen["dom"]
        try:
            return wait_for(what, check, timeout)
        except CheckFailed as e:
            raise CheckFailed(f"{e}; the page: {seen.get('dom')}") from None

    def no_errors(self):
        errors = self.page.errors()
        expect(not errors, f"the page's script failed: {errors}")

    def screenshot(self, name):
        path = os.path.join(self.artifacts, name)
        self.page.screenshot(path)
        expect(os.path.getsize(path) > 10_000, f"{path}: {os.path.getsize(path)} bytes")
        print(f"screenshot: {path}", flush=True)

    def stop(self):
        if self.fleet:
            self.fleet.stop()


def connected(dom):
    return dom["page"]["connected"] and dom["status"] == "connected"


def arduino(case):
    history = []  # every view of the page, 10 a second

    def graph():
        case.start(os.path.join(TOPOLOGIES, "arduino.mesh"), "--seed", "1")
        dom = case.wait_dom("the graph drawn", lambda d: connected(d) and d["nodes"])
        expect(sorted(dom["nodes"]) == ["buzzer", "clock", "iopin"], f"nodes drawn: {dom['nodes']}")
        expect(sorted(dom["links"]) == ["clock.0", "iopin.0"], f"sends drawn: {dom['links']}")
        expect(sorted(dom["channels"]) == ["buzzer.signal", "iopin.datafeed"], f"channels: {dom['channels']}")
        expect(sorted(dom["pins"]) == ["buzzer.horn", "iopin.led"], f"pins: {dom['pins']}")
        expect(sorted(dom["rules"]) == ["buzzer.0", "buzzer.1", "clock.0", "iopin.0"], f"rules: {dom['rules']}")
        expect(dom["clickable"] == [], f"output pins are buttons: {dom['clickable']}")
        # The arrows end on the target's channel, from the sending node's box.
        ends = case.page.evaluate("""[...document.querySelectorAll("[data-link]")].map((g) => {
            const d = g.querySelector("path").getAttribute("d").match(/-?[\\d.]+/g).map(Number);
            const board = document.getElementById("columns").getBoundingClientRect();
            const c = document.querySelector('[data-channel="iopin.datafeed"]').getBoundingClientRect();
            return {link: g.dataset.link, x2: d[d.length - 2] + board.left, y2: d[d.length - 1] + board.top,
                    left: c.left, top: c.top, bottom: c.bottom};
        })""")
        to_datafeed = next(e for e in ends if e["link"] == "clock.0")
        expect(abs(to_datafeed["x2"] - to_datafeed["left"]) < 4 and
               to_datafeed["top"] <= to_datafeed["y2"] <= to_datafeed["bottom"],
               f"clock's arrow does not end on iopin's datafeed: {to_datafeed}")

    def live():
        # The clock ticks 5 times, a second apart; each tick is 3 levels sent to buzzer.
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            dom = case.dom()
            history.append(dom)
            if dom["channels"]["buzzer.signal"] == "15" and dom["links"].get("iopin.0") == "up":
                break
            time.sleep(0.1)
        last = history[-1]
        datafeed = sorted({int(d["channels"]["iopin.datafeed"]) for d in history})
        signal_counts = sorted({int(d["channels"]["buzzer.signal"]) for d in history})
        expect(last["channels"] == {"iopin.datafeed": "5", "buzzer.signal": "15"},
               f"counts at the end: {last['channels']}; datafeed took {datafeed}, signal {signal_counts}")
        expect(len(datafeed) >= 2 and len(signal_counts) >= 2,
               f"the counts did not rise while the page looked: datafeed took {datafeed}, signal {signal_counts}")
        expect(last["links"] == {"clock.0": "up", "iopin.0": "up"}, f"links: {last['links']}")
        fired = sorted({int(d["rules"]["iopin.0"]) for d in history})
        expect(last["rules"]["iopin.0"] == "5" and len(fired) >= 2, f"iopin's rule fired {fired}")
        expect(int(last["rules"]["buzzer.0"]) + int(last["rules"]["buzzer.1"]) == 15, f"buzzer's rules: {last['rules']}")
        # With --seed 1 the last of each tick's 3 levels is 0 1 1 0 1: the page shows both.
        horn, led = case.levels("buzzer.horn"), case.levels("iopin.led")
        expect({"0", "1"} <= set(horn), f"buzzer.horn showed {horn}")
        expect({"0", "1"} <= set(led), f"iopin.led showed {led}")
        page = last["page"]
        # Updates are sent only while a page is open: a tick before the page connected is in its first state.
        expect(page["totals"]["messages"] == 20 and page["seq"] >= 2, f"window.meshrunDashboard: {page}")
        case.no_errors()

    def shot():
        case.screenshot("arduino.png")

    return [("the graph: 3 nodes, 2 sends, their pins, channels and rules", graph),
            ("live: counts rise with the clock, pins change, rules fire, links go up", live),
            ("a screenshot", shot)]


def doorbell(case):
    def graph():
        case.start(os.path.join(TOPOLOGIES, "doorbell.mesh"))
        dom = case.wait_dom("the graph and the first state",
                            lambda d: connected(d) and d["pins"].get("porch.button") in ("0", "1"))
        expect(sorted(dom["nodes"]) == ["chime", "porch"], f"nodes: {dom['nodes']}")
        expect(sorted(dom["clickable"]) == ["chime.mute", "porch.button"],
               f"the pins that are buttons: {dom['clickable']} (the simulated inputs only)")
        expect(dom["pins"]["porch.button"] == "1", f"porch.button (pull_up) is {dom['pins']['porch.button']}")
        expect(dom["channels"] == {"chime.ring": "0"} and dom["pins"]["chime.solenoid"] == "0",
               f"before the click: {dom}")
        cursor = case.page.evaluate("""[getComputedStyle(document.querySelector('[data-pin="porch.lamp"]')).cursor,
                                        document.querySelector('[data-pin="porch.lamp"]').title]""")
        expect(cursor[0] == "not-allowed" and "output" in cursor[1], f"the lamp's cursor and title: {cursor}")

    def click():
        case.page.click("[data-pin='porch.button']")
        def rang(d):
            return (d["channels"]["chime.ring"] == "1" and "1" in case.levels("chime.solenoid")
                    and d["pins"]["porch.lamp"] == "1")
        dom = case.wait_dom("the chime rung: ring counts 1, solenoid 1, the porch lamp 1", rang)
        # The strike: 1, 0 after 150 ms, 1 at 600 ms, 0 at 750 ms.
        wait_for("the solenoid's two strikes", lambda: case.levels("chime.solenoid")[-4:] == ["1", "0", "1", "0"], STEP)
        expect(dom["pins"]["porch.button"] == "0", f"porch.button: {dom['pins']['porch.button']}")
        expect(dom["rules"]["porch.0"] == "1", f"porch's rule fired {dom['rules']['porch.0']} times")
        expect(dom["links"]["porch.0"] == "up", f"porch's link: {dom['links']}")
        log = case.fleet.log()
        expect("bell pushed" in log and "ring: ding-dong" in log, f"the fleet's log:\n{log}")
        case.no_errors()

    def shot():
        case.screenshot("doorbell.png")

    return [("the graph: the simulated inputs are the only buttons", graph),
            ("a click on porch.button rings the chime", click),
            ("a screenshot", shot)]


def hall(case):
    def graph():
        case.start(os.path.join(TOPOLOGIES, "hall.mesh"))
        dom = case.wait_dom("the graph and the first state", lambda d: connected(d) and d["variables"].get("hall.visits"))
        expect(dom["variables"] == {"hall.visits": "0"}, f"the variables: {dom['variables']}")

    def motion():
        for n in (1, 2):  # each motion counted: the button goes 1 (a visit), then back to 0
            case.page.click("[data-pin='hall.motion']")
            case.wait_dom(f"visit {n}", lambda d: d["variables"]["hall.visits"] == str(n) and d["pins"]["hall.lamp"] == "1")
            case.page.click("[data-pin='hall.motion']")
            case.wait_dom("the motion over", lambda d: d["pins"]["hall.motion"] == "0")
        case.no_errors()

    return [("the graph: a node's variables with their first values", graph),
            ("clicks on hall.motion: the variable counts them, as the rule sets it", motion)]


def load(case):
    samples = []

    def run():
        case.start(os.path.join(HERE, "load.mesh"), "--metrics", "0")
        metrics = case.fleet.port_of(r"metrics of every node here on http://127\.0\.0\.1:(\d+)/metrics",
                                     "the line `metrics of every node here on http://...`")
        case.wait_dom("the graph", connected)
        # Every 200 ms until the counts stop: the page's figures and its frames.
        last_change, last_total = time.monotonic(), -1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = case.page.evaluate("({page: window.meshrunDashboard, probe: window.meshrunProbe, now: performance.now()})")
            samples.append(s)
            total = s["page"]["totals"]["messages"]
            if total != last_total:
                last_change, last_total = time.monotonic(), total
            elif total > 0 and time.monotonic() - last_change > 2:
                break
            time.sleep(0.2)
        received = {c: metric(metrics, "meshrun_messages_received_total", node="sink", channel=c)
                    for c in ("data", "more")}
        expect(sum(received.values()) == 6000, f"the fleet received {received} (load.mesh sends 2 x 3000)")
        dom = case.dom()
        expect(dom["channels"] == {"sink.data": str(int(received["data"])), "sink.more": str(int(received["more"]))},
               f"the page's counts {dom['channels']}, the fleet's {received}")
        expect(dom["page"]["totals"]["messages"] == 6000, f"window.meshrunDashboard: {dom['page']}")
        fired = metric(metrics, "meshrun_rule_firings_total", node="sink", rule="on data")
        expect(dom["rules"]["sink.0"] == str(int(fired)), f"the page's sink.0 fired {dom['rules']['sink.0']}, the fleet's {fired}")

    def coalesced():
        busy = [s for s in samples if s["page"]["rates"]["messages"] >= 600]
        expect(len(busy) >= 10, "fewer than 2 s at 600 messages/s or more: messages/s seen "
               f"{[s['page']['rates']['messages'] for s in samples]}")
        peak = max(s["page"]["rates"]["messages"] for s in samples)
        updates = max(s["page"]["rates"]["updates"] for s in samples)
        expect(updates <= 25, f"{updates} updates/s (messages/s up to {peak})")
        print(f"      messages/s up to {peak}, updates/s up to {updates}", flush=True)

    def smooth():
        busy = [s for s in samples if s["page"]["rates"]["messages"] >= 600]
        expect(len(busy) >= 2, "no time under load to measure")
        first, last = busy[0], busy[-1]
        seconds = (last["now"] - first["now"]) / 1000
        fps = (last["probe"]["frames"] - first["probe"]["frames"]) / seconds
        renders = (last["page"]["frames"] - first["page"]["frames"]) / seconds
        long_tasks = last["probe"]["longTasks"] - first["probe"]["longTasks"]
        long_ms = last["probe"]["longTaskMs"] - first["probe"]["longTaskMs"]
        print(f"      under load ({seconds:.1f} s): {fps:.0f} frames/s, the page rendered {renders:.0f} times/s, "
              f"{long_tasks} long tasks ({long_ms:.0f} ms)", flush=True)
        expect(fps >= 30, f"{fps:.0f} frames/s under load: the main thread was starved")
        expect(renders <= 26, f"the page rendered {renders:.0f} times/s: more often than it had states")
        expect(long_ms < 0.1 * seconds * 1000, f"{long_tasks} long tasks under load, {long_ms:.0f} ms in {seconds:.1f} s")
        case.no_errors()
        case.screenshot("load.png")

    return [("the page's counts end equal to the fleet's /metrics", run),
            ("updates coalesced: at most ~25 a second at ~1,000 messages a second", coalesced),
            ("the main thread kept drawing frames", smooth)]


def secret(case):
    token = "s3cret-token"

    def ask():
        case.start(os.path.join(HERE, "secret.mesh"), env={TOKEN_VAR: token})
        dom = case.wait_dom("the token form", lambda d: d["form"] and d["status"] == "denied")
        expect(dom["nodes"] == [] and not dom["page"]["connected"], f"the page shows the fleet without a token: {dom}")
        expect(dom["formError"] == "", f"an error before any token: {dom['formError']!r}")

    def enter(value):
        case.page.click("#token")
        case.page.call("Input.insertText", {"text": value})
        case.page.click("#token-form button")

    def wrong():
        enter("not-" + token)
        dom = case.wait_dom("denied again, and said so", lambda d: d["form"] and d["formError"])
        expect(dom["nodes"] == [], f"the graph with a wrong token: {dom['nodes']}")
        expect(case.page.evaluate("sessionStorage.getItem('meshrun.token')") is None, "a wrong token kept")

    def right():
        enter(token)
        dom = case.wait_dom("the graph", lambda d: connected(d) and d["nodes"] and d["pins"].get("keypad.key"))
        expect(not dom["form"] and sorted(dom["nodes"]) == ["gate", "keypad"], f"the page: {dom}")
        case.page.click("[data-pin='keypad.key']")
        case.wait_dom("the gate opened by a click", lambda d: d["pins"]["gate.latch"] == "1"
                      and d["channels"]["gate.open"] == "1")
        case.page.navigate(case.url)
        case.wait_dom("the graph again after a reload, without the form",
                      lambda d: connected(d) and not d["form"] and d["nodes"])
        case.no_errors()
        case.screenshot("secret.png")

    return [("without a token: the form, no fleet", ask),
            ("a wrong token is denied", wrong),
            ("the right token shows the fleet", right)]


CASES = {"arduino": arduino, "doorbell": doorbell, "hall": hall, "load": load, "secret": secret}


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in CASES:
        print(f"usage: {sys.argv[0]} MESHRUN {{{'|'.join(CASES)}}} ARTIFACTS_DIR", file=sys.stderr)
        return 2
    meshrun, name, artifacts = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
    os.makedirs(artifacts, exist_ok=True)
    try:
        browser = Browser()
    except Unavailable as e:
        print(f"SKIPPED: {e}")
        return SKIP
    case = Case(meshrun, artifacts, browser)

    def after_start(check):  # a check after the one that starts the fleet and loads the page
        def run():
            expect(case.page is not None, "no page to check (the first check failed)")
            check()
        return run

    checks = CASES[name](case)
    checks = checks[:1] + [(title, after_start(check)) for title, check in checks[1:]]
    try:
        failed = run_checks(checks)
    finally:
        case.stop()
        browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
