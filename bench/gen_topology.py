#!/usr/bin/env python3
"""Writes a large, realistic .mesh topology for benchmarking `meshrun check`.

The fleet is made of sites of ten nodes: a hub, three debounced sensors, two
timer-driven probes and four actuators. Sensors and probes report to their
site's hub; the hub switches its site's actuators and forwards notable samples
to the previous site's hub. Messages only flow from sensors towards actuators
and from a site to a lower-numbered one, so there is no cycle of sends. Every
node has its own host, every pin and action is used, and no rule is shadowed,
so the topology checks clean.

    gen_topology.py [--nodes N] [--seed S] [--tests T] OUTPUT

The default, 10,000 nodes, comes to about 100,000 lines.
"""

import argparse
import random
import sys

SITE = 10  # nodes per site: hub, 3 sensors, 2 probes, 4 actuators
SENSORS = 3
PROBES = 2
ACTUATORS = 4

SENSOR_KINDS = [
    # (pin name, what it is, the level an event has, bias)
    ("door", "a reed switch on the door", 1, "pull_down"),
    ("button", "a wall push button", 0, "pull_up"),
    ("motion", "a PIR module", 1, None),
    ("leak", "a water leak probe", 1, "pull_down"),
    ("smoke", "a smoke detector's relay contact", 0, "pull_up"),
]

ACTUATOR_KINDS = [
    # (relay pin, lamp pin, what it drives)
    ("relay", "lamp", "a lighting circuit"),
    ("valve", "indicator", "a solenoid valve"),
    ("fan", "led", "an extractor fan"),
    ("heater", "pilot", "a panel heater"),
    ("lock", "beacon", "a door strike"),
]


class Writer:
    def __init__(self, out):
        self.out = out
        self.lines = 0

    def __call__(self, text=""):
        self.out.write(text)
        self.out.write("\n")
        self.lines += 1


def ipv4(index):
    # 10.0.0.1 onwards; the last octet avoids 0 and 255.
    n = index
    d = n % 254 + 1
    n //= 254
    c = n % 256
    n //= 256
    b = n % 256
    return f"10.{b}.{c}.{d}"


def hub_name(site):
    return f"s{site}-hub"


def write_hub(w, rng, site, node_index):
    hub = hub_name(site)
    a = [f"s{site}-a{k}" for k in range(ACTUATORS)]
    threshold = rng.choice([20, 30, 50, 100])
    w(f"# site {site}: the hub switches the site's actuators and forwards notable samples")
    w(f"node {hub} at {hub}.bench.lan:8700 {{")
    w("    pin status = out gpiochip0 17")
    w(f"    pin alert  = out gpiochip0 27 initial 0")
    w("    action flash { alert = 1; after 2s -> alert = 0 }")
    w("    on events 1 -> {")
    w("        flash")
    w(f"        send 1 to {a[0]}/command")
    w(f"        send 1 to {a[1]}/command")
    w('        ack "switched on"')
    w("    }")
    w(f"    on events 0 -> {{ send 0 to {a[0]}/command; send 0 to {a[1]}/command; ack \"switched off\" }}")
    w('    on events -> ack "ignored {value}"')
    w(f"    on samples when value >= {threshold} and value < {threshold * 10} -> {{")
    w("        toggle status")
    w(f"        send 1 to {a[2]}/command")
    w(f"        send value - {threshold} to {a[3]}/command")
    if site > 0:
        w(f'        send "site {site}: sample {{value}}" to {hub_name(site - 1)}/uplink')
    w('        ack "acted on {value}"')
    w("    }")
    w('    on samples -> { log "sample {value}"; ack "ok" }')
    w('    on uplink -> { log "from downstream: {value}"; ack "noted" }')
    w("}")


def write_sensor(w, rng, site, k, node_index):
    name = f"s{site}-s{k}"
    pin, what, active, bias = rng.choice(SENSOR_KINDS)
    line = rng.choice([4, 5, 6, 12, 13, 16, 19, 20, 21, 26])
    debounce = rng.choice(["10ms", "20ms", "50ms", "200ms"])
    options = f"{bias} debounce {debounce}" if bias else f"debounce {debounce}"
    w(f"node {name} at {ipv4(node_index)} {{              # {what}")
    w(f"    pin {pin} = in gpiochip0 {line} {options}")
    w(f"    pin led = out gpiochip0 {18 if line != 18 else 24}")
    w(f"    on {pin} {active} -> {{ led = 1; send 1 to {hub_name(site)}/events }}")
    w(f"    on {pin} {1 - active} -> {{ led = 0; send 0 to {hub_name(site)}/events }}")
    w("}")


def write_probe(w, rng, site, k, node_index):
    name = f"s{site}-p{k}"
    period = rng.choice(["500ms", "1s", "5s", "30s", "1m", "5m"])
    times = rng.choice(["", "", "", f" {rng.randint(1, 1000)} times"])
    w(f"node {name} at {ipv4(node_index)} {{")
    w('    pin beat = out "pinctrl-bcm2711" "GPIO17" active_low')
    w(f"    every {period}{times} -> {{")
    w("        toggle beat")
    w(f"        send tick + {rng.randint(0, 50)} to {hub_name(site)}/samples")
    w("    }")
    w("}")


def write_actuator(w, rng, site, k, node_index):
    name = f"s{site}-a{k}"
    relay, lamp, what = rng.choice(ACTUATOR_KINDS)
    w(f"node {name} at {name}.bench.lan:8700 {{       # {what}")
    w(f"    pin {relay} = out gpiochip0 22 initial 0")
    w(f"    pin {lamp} = out gpiochip0 23")
    w(f"    action engage {{ {relay} = 1; {lamp} = 1 }}")
    w("    on command 1 -> { engage; ack \"on\" }")
    w(f"    on command 0 -> {{ {relay} = 0; {lamp} = 0; ack \"off\" }}")
    w(f"    on command when value > 0 -> {{ engage; after {rng.choice(['10s', '1m', '5m'])} -> {relay} = 0; ack \"on for a while\" }}")
    w('    on command -> ack "unknown command {value}"')
    w("}")


def write_tests(w, sites, count):
    for site in range(min(sites, count)):
        hub = hub_name(site)
        w(f'test "site {site} switches its lights from the hub" {{')
        w(f'    send 1 to {hub}/events expect "switched on"')
        w(f"    expect s{site}-a0 received 1 on command")
        w(f'    send 0 to {hub}/events expect "switched off"')
        w(f'    send 5 to s{site}-a3/command expect "on for a while"')
        w("}")


def generate(out, nodes, seed, tests):
    rng = random.Random(seed)
    w = Writer(out)
    sites = max(1, (nodes + SITE - 1) // SITE)
    w(f"# A generated topology of {sites * SITE} nodes in {sites} sites (gen_topology.py, seed {seed}).")
    w("mesh bench")
    w()
    index = 0
    for site in range(sites):
        write_hub(w, rng, site, index)
        index += 1
        w()
        for k in range(SENSORS):
            write_sensor(w, rng, site, k, index)
            index += 1
        w()
        for k in range(PROBES):
            write_probe(w, rng, site, k, index)
            index += 1
        w()
        for k in range(ACTUATORS):
            write_actuator(w, rng, site, k, index)
            index += 1
        w()
    write_tests(w, sites, tests)
    return sites * SITE, w.lines


def main(argv):
    parser = argparse.ArgumentParser(description="Write a large .mesh topology for benchmarks.")
    parser.add_argument("output", help="the .mesh file to write ('-' for stdout)")
    parser.add_argument("--nodes", type=int, default=10_000, help="number of nodes, rounded up to a multiple of 10")
    parser.add_argument("--seed", type=int, default=1, help="random seed (the output is deterministic)")
    parser.add_argument("--tests", type=int, default=3, help="number of test blocks")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.output == "-":
        nodes, lines = generate(sys.stdout, args.nodes, args.seed, args.tests)
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            nodes, lines = generate(out, args.nodes, args.seed, args.tests)
    print(f"gen_topology: {nodes} nodes, {lines} lines -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
