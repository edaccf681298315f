#!/usr/bin/python3
"""A fleet's metrics as Prometheus sees them: `meshrun up topologies/arduino.mesh --metrics PORT`,
checked with promtool and scraped by a real Prometheus server.

    /usr/bin/python3 tests/metrics/prometheus_test.py path/to/meshrun path/to/topologies

The fleet serves every node's figures on 127.0.0.1:PORT (/metrics, /healthz); each node with a port
serves its own on it (the port of its `listening on ws://127.0.0.1:PORT` line). The checks: /healthz
says the node and its uptime; every /metrics passes `promtool check metrics`; once the clock's five
ticks are done, the counters are what the log shows happened; a node's own /metrics agrees with the
fleet's; then Prometheus (scrape interval 1 s) scrapes the fleet and its query API gives the values
the fleet's /metrics gives. Every wait is bounded; both processes are stopped in the end, whatever
happened. Prints one line per check and `N passed, M failed` last; exits 1 on a failure, 77
(skipped, with the reason) when prometheus or promtool is not installed (Debian: apt package
prometheus, 2.42).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import HOST, STEP, CheckFailed, expect, free_port, run_checks, wait_for_port  # noqa: E402

SKIP = 77
TICKS = 5  # arduino.mesh: `every 1s 5 times`
LOG_LINE = re.compile(r"^\[ (\S+)\s*\] (.*)$")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def http_get(port, path, timeout=STEP):
    """(status, content type, body) of GET http://127.0.0.1:PORT/PATH."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")


def parse_metrics(text):
    """{(name, frozenset of (label, value)): float} of the exposition's samples."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        expect(m, f"not a sample line: {line!r}")
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    expect(key in samples, f"no sample {name}{labels}")
    return samples[key]


def promtool_check(text, what):
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=STEP)
    expect(r.returncode == 0, f"promtool check metrics on {what} exits {r.returncode}: {r.stdout}{r.stderr}")


class Fleet:
    """`meshrun up FILE --metrics PORT`; its log goes to a file of its own (appended to), read as it
    grows through another open file, so that reading never moves where it writes."""

    def __init__(self, meshrun, mesh):
        self.metrics_port = free_port()
        fd, self.log_path = tempfile.mkstemp(prefix="meshrun-up-", suffix=".log")
        os.close(fd)
        self.started = time.time()
        with open(self.log_path, "a") as out:
            self.proc = subprocess.Popen(
                [meshrun, "up", mesh, "--metrics", str(self.metrics_port), "--color", "never"],
                stdout=out, stderr=subprocess.STDOUT)
        self.ports = {}  # node: the port of its `listening on` line

    def raw_log(self):
        with open(self.log_path) as f:
            return f.read()

    def log(self):
        """(node, text) of every line so far."""
        return [(m.group(1), m.group(2)) for m in map(LOG_LINE.match, self.raw_log().splitlines()) if m]

    def lines(self, node, pattern):
        return [text for n, text in self.log() if n == node and re.fullmatch(pattern, text)]

    def wait_for(self, what, predicate, timeout=STEP):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            expect(self.proc.poll() is None, f"meshrun up ended ({self.proc.returncode}) before {what}:\n{self.raw_log()}")
            time.sleep(0.1)
        raise CheckFailed(f"no {what} within {timeout:.0f} s:\n{self.raw_log()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STEP)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STEP)
        os.unlink(self.log_path)


class Prometheus:
    """A Prometheus server that scrapes the fleet's --metrics port every second."""

    def __init__(self, metrics_port):
        self.dir = tempfile.mkdtemp(prefix="meshrun-prometheus-")
        self.port = free_port()
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: meshrun\n    static_configs:\n"
                    f"      - targets: ['{HOST}:{metrics_port}']\n")
        self.log_path = os.path.join(self.dir, "prometheus.log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
             f"--web.listen-address={HOST}:{self.port}"],
            stdout=self.log_file, stderr=subprocess.STDOUT)

    def log(self):
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def query(self, promql):
        status, _, body = http_get(self.port, "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        expect(status == 200, f"query {promql} answers {status}: {body}")
        reply = json.loads(body)
        expect(reply.get("status") == "success", f"query {promql}: {body}")
        return reply["data"]["result"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STEP)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STEP)
        self.log_file.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    meshrun, topologies = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    for tool in ("prometheus", "promtool"):
        if not shutil.which(tool):
            print(f"SKIPPED: {tool} is not installed (Debian: apt-get install prometheus)")
            return SKIP
    mesh = os.path.join(topologies, "arduino.mesh")
    fleet = Fleet(meshrun, mesh)
    prometheus = None
    state = {}

    def check_ports():
        fleet.wait_for("listening lines of iopin and buzzer",
                       lambda: len([t for n, t in fleet.log() if t.startswith("listening on ws://")]) == 2)
        for node, text in fleet.log():
            # `listening on ws://127.0.0.1:41449 (declared localhost:8766: port 8766 is in use)`
            if m := re.fullmatch(r"listening on ws://127\.0\.0\.1:(\d+)(?: \(.*\))?", text):
                fleet.ports[node] = int(m.group(1))
        expect(set(fleet.ports) == {"iopin", "buzzer"}, f"nodes that listen: {fleet.ports}")
        expect(wait_for_port(fleet.metrics_port, fleet.proc), f"nothing listens on --metrics {fleet.metrics_port}:\n"
               + fleet.raw_log())

    def check_healthz():
        expect(fleet.ports, "no node's port")
        def health(what, port):
            status, kind, body = http_get(port, "/healthz")
            expect(status == 200, f"{what}'s /healthz answers {status}: {body}")
            expect(kind.startswith("application/json"), f"{what}'s /healthz is {kind}")
            reply = json.loads(body)
            uptime = reply.get("uptime_seconds")
            expect(isinstance(uptime, (int, float)) and 0 <= uptime <= time.time() - fleet.started + 1,
                   f"{what}'s uptime_seconds: {body}")
            return reply

        for node, port in fleet.ports.items():
            first = health(node, port)
            expect(first.get("node") == node, f"{node}'s /healthz names {first.get('node')!r}: {first}")
            time.sleep(0.2)
            expect(health(node, port)["uptime_seconds"] > first["uptime_seconds"], f"{node}'s uptime does not grow")
        # The --metrics port's: the nodes of the process.
        fleet_health = health("the fleet", fleet.metrics_port)
        expect(sorted(fleet_health.get("nodes", [])) == ["buzzer", "clock", "iopin"], f"the fleet's /healthz: {fleet_health}")

    def check_promtool():
        expect(fleet.ports, "no node's port")
        for what, port in [("the fleet", fleet.metrics_port)] + list(fleet.ports.items()):
            status, kind, body = http_get(port, "/metrics")
            expect(status == 200, f"{what}'s /metrics answers {status}: {body}")
            expect(kind.startswith("text/plain") and "0.0.4" in kind, f"{what}'s /metrics is {kind!r}")
            promtool_check(body, f"{what}'s /metrics")
            if what != "the fleet":
                nodes = {dict(labels).get("node") for name, labels in parse_metrics(body) if name.startswith("meshrun_")}
                expect(nodes == {what}, f"{what}'s /metrics has the series of {nodes}")

    def check_counters_match_log():
        # The clock's ticks are done when it has its fifth acknowledgement; then the fleet is quiet.
        fleet.wait_for(f"{TICKS} acknowledgements to the clock",
                       lambda: len(fleet.lines("clock", r"< acknowledged")) == TICKS, timeout=TICKS + STEP)
        time.sleep(0.5)
        status, _, body = http_get(fleet.metrics_port, "/metrics")
        expect(status == 200, f"the fleet's /metrics answers {status}")
        promtool_check(body, "the fleet's /metrics after the run")
        s = state["fleet"] = parse_metrics(body)
        ticks = len(fleet.lines("clock", r"> sending payload: .* to iopin/datafeed"))
        fed = len(fleet.lines("iopin", r"new tick triggered on datafeed: .*"))
        sent = len(fleet.lines("iopin", r"> sending payload: .* to buzzer/signal"))
        buzzed = len(fleet.lines("iopin", r"< buzz buzz buzz"))
        quiet = len(fleet.lines("iopin", r"< \.\.\."))
        expect((ticks, fed, sent, buzzed + quiet) == (TICKS, TICKS, 3 * TICKS, 3 * TICKS),
               f"the log: {ticks} ticks, {fed} fed, {sent} sent, {buzzed}+{quiet} replies:\n{fleet.raw_log()}")
        wanted = [
            (("meshrun_rule_firings_total", {"node": "clock", "rule": "every 1s 5 times"}), ticks),
            (("meshrun_messages_sent_total", {"node": "clock", "target": "iopin/datafeed"}), ticks),
            (("meshrun_ack_latency_seconds_count", {"node": "clock", "target": "iopin/datafeed"}), ticks),
            (("meshrun_messages_received_total", {"node": "iopin", "channel": "datafeed"}), fed),
            (("meshrun_replies_sent_total", {"node": "iopin", "channel": "datafeed"}), fed),
            (("meshrun_rule_firings_total", {"node": "iopin", "rule": "on datafeed"}), fed),
            (("meshrun_pin_writes_total", {"node": "iopin", "pin": "led"}), sent),
            (("meshrun_messages_sent_total", {"node": "iopin", "target": "buzzer/signal"}), sent),
            (("meshrun_ack_latency_seconds_count", {"node": "iopin", "target": "buzzer/signal"}), sent),
            (("meshrun_messages_received_total", {"node": "buzzer", "channel": "signal"}), sent),
            (("meshrun_replies_sent_total", {"node": "buzzer", "channel": "signal"}), sent),
            (("meshrun_rule_firings_total", {"node": "buzzer", "rule": "on signal 1"}), buzzed),
            (("meshrun_rule_firings_total", {"node": "buzzer", "rule": "on signal"}), quiet),
            (("meshrun_pin_writes_total", {"node": "buzzer", "pin": "horn"}), sent),
            (("meshrun_pin_level", {"node": "buzzer", "pin": "horn"}),
             1 if fleet.lines("iopin", r"< .*")[-1] == "< buzz buzz buzz" else 0),
        ]
        for node, target in [("clock", "iopin/datafeed"), ("iopin", "buzzer/signal")]:
            wanted += [(("meshrun_messages_dropped_total", {"node": node, "target": target}), 0),
                       (("meshrun_link_reconnects_total", {"node": node, "target": target}), 0),
                       (("meshrun_link_up", {"node": node, "target": target}), 1),
                       (("meshrun_link_state", {"node": node, "target": target, "state": "up"}), 1),
                       (("meshrun_link_state", {"node": node, "target": target, "state": "connecting"}), 0),
                       (("meshrun_link_queue_messages", {"node": node, "target": target}), 0)]
        wrong = [f"{name}{labels} = {value(s, name, **labels):g}, the log says {want}"
                 for (name, labels), want in wanted if value(s, name, **labels) != want]
        expect(not wrong, "\n  ".join(["counters that disagree with the log:"] + wrong))
        # Histograms: +Inf is the count, and the buckets only grow.
        for node, target in [("clock", "iopin/datafeed"), ("iopin", "buzzer/signal")]:
            buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in s.items()
                             if n == "meshrun_ack_latency_seconds_bucket" and dict(l)["node"] == node)
            expect(len(buckets) == 17 and buckets[-1][1] == value(s, "meshrun_ack_latency_seconds_count", node=node,
                                                                  target=target), f"{node}'s buckets: {buckets}")
            expect(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), f"{node}'s buckets: {buckets}")
        # The iopin node has the clock's connection open at least; the nodes started in this run.
        expect(value(s, "meshrun_connections_open", node="iopin") >= 1, "iopin has no connection open")
        for node in ("clock", "iopin", "buzzer"):
            started = value(s, "meshrun_node_start_time_seconds", node=node)
            expect(fleet.started - 1 <= started <= time.time(), f"{node} started at {started}, the run at {fleet.started}")
        expect(value(s, "process_resident_memory_bytes") > 0 and value(s, "process_open_fds") > 0, "process figures")
        expect(abs(value(s, "process_start_time_seconds") - fleet.started) < 5,
               f"process_start_time_seconds {value(s, 'process_start_time_seconds')}, started {fleet.started}")

    def check_node_agrees_with_fleet():
        expect("fleet" in state and fleet.ports, "no figures of the fleet, or no node's port")
        for node, port in fleet.ports.items():
            status, _, body = http_get(port, "/metrics")
            expect(status == 200, f"{node}'s /metrics answers {status}")
            mine = parse_metrics(body)
            # Connections change as we ask (HTTP ones count); the rest is still since the run ended.
            wrong = [f"{name}{dict(labels)}: {v:g} here, {state['fleet'].get((name, labels))} in the fleet's"
                     for (name, labels), v in mine.items()
                     if name.startswith("meshrun_") and not name.startswith("meshrun_connections_")
                     and state["fleet"].get((name, labels)) != v]
            expect(not wrong, "\n  ".join([f"{node}'s /metrics disagrees:"] + wrong))

    def check_prometheus():
        nonlocal prometheus
        expect("fleet" in state, "no figures of the fleet")
        prometheus = Prometheus(fleet.metrics_port)
        expect(wait_for_port(prometheus.port, prometheus.proc), f"prometheus does not listen:\n{prometheus.log()}")
        # It listens before it is ready (its storage opened): queries are answered 503 until then.
        deadline = time.monotonic() + 3 * STEP
        while http_get(prometheus.port, "/-/ready")[0] != 200 and time.monotonic() < deadline:
            expect(prometheus.proc.poll() is None, f"prometheus ended ({prometheus.proc.returncode}):\n{prometheus.log()}")
            time.sleep(0.2)
        # A scrape of the fleet has landed when `up` is 1 and the fleet's series are there.
        deadline = time.monotonic() + 3 * STEP
        result = []
        while time.monotonic() < deadline:
            expect(prometheus.proc.poll() is None, f"prometheus ended ({prometheus.proc.returncode}):\n{prometheus.log()}")
            up = prometheus.query('up{job="meshrun"}')
            result = prometheus.query("meshrun_messages_received_total")
            if up and up[0]["value"][1] == "1" and len(result) == 2:
                break
            time.sleep(0.5)
        expect(len(result) == 2, f"no scrape of the fleet within {3 * STEP:.0f} s: {result}\n{prometheus.log()}")
        got = {(r["metric"]["node"], r["metric"]["channel"]): float(r["value"][1]) for r in result}
        want = {(dict(l)["node"], dict(l)["channel"]): v for (n, l), v in state["fleet"].items()
                if n == "meshrun_messages_received_total"}
        expect(got == want, f"Prometheus has {got}, the fleet's /metrics {want}")
        for r in result:
            expect(r["metric"].get("job") == "meshrun" and r["metric"].get("instance") == f"{HOST}:{fleet.metrics_port}",
                   f"labels: {r['metric']}")
        # A histogram as PromQL reads it, and a process figure.
        q = prometheus.query('histogram_quantile(1, meshrun_ack_latency_seconds_bucket{node="iopin"})')
        expect(len(q) == 1 and 0 < float(q[0]["value"][1]) <= 10, f"the latency's quantile: {q}")
        q = prometheus.query('process_resident_memory_bytes{job="meshrun"}')
        expect(len(q) == 1 and float(q[0]["value"][1]) > 0, f"process_resident_memory_bytes: {q}")

    try:
        failed = run_checks([
            ("the fleet listens: every node with a port, and --metrics", check_ports),
            ("/healthz says the node and its uptime", check_healthz),
            ("every /metrics passes promtool check metrics", check_promtool),
            ("after the clock's ticks, the counters are what the log shows", check_counters_match_log),
            ("a node's /metrics agrees with the fleet's", check_node_agrees_with_fleet),
            ("Prometheus scrapes the fleet and queries give its values", check_prometheus),
        ])
    finally:
        if prometheus:
            prometheus.stop()
        fleet.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
