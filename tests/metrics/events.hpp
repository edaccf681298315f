// Events as a fleet reports them, for the metrics' tests: a run of topologies/arduino.mesh
// (its clock's five ticks, each making iopin write its led and send to buzzer three times),
// and a graph whose names need escaping in a label value.
#pragma once

#include <string>

#include "build_paths.hpp"
#include "meshrun/dsl/frontend.hpp"
#include "meshrun/engine/graph.hpp"
#include "meshrun/engine/observer.hpp"

namespace meshrun::test {

using engine::Graph;
using engine::LinkState;
using engine::Micros;
using engine::Observer;

// The arduino topology (topologies/arduino.mesh), compiled and lowered; empty on errors.
inline Graph arduino_graph() {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto compiled = dsl::compile_file(build_paths::source("topologies/arduino.mesh").string(), sm, diags);
    if (diags.has_errors()) return {};
    return engine::lower(compiled.program);
}

// The buzzer's horn, message by message, as `meshrun test` sees it with --seed 1.
inline constexpr int arduino_levels[15] = {0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1};

// Five ticks of the clock, as the fleet reports them. The clock's acknowledgements take
// 200, 400, 600, 800 and 1000 us; iopin's take 50 us each.
inline void feed_arduino_run(Observer& o, const Graph& g) {
    const int clock = g.find("clock"), iopin = g.find("iopin"), buzzer = g.find("buzzer");
    const engine::Rule& tick = g.nodes[clock].sources[0].rules[0];
    const engine::Rule& datafeed = g.nodes[iopin].sources[0].rules[0];
    const engine::Rule& signal_1 = g.nodes[buzzer].sources[0].rules[0];
    const engine::Rule& signal = g.nodes[buzzer].sources[0].rules[1];
    for (int node : {buzzer, iopin, clock}) o.node_started(node, Micros(0));
    int message = 0;
    for (int t = 0; t < 5; ++t) {
        const Micros at(1'000'000 * (t + 1));
        o.rule_fired(clock, tick);
        if (t == 0) {
            o.link_state(clock, 0, LinkState::connecting, "");
            o.link_state(clock, 0, LinkState::up, "");
            o.connection_opened(iopin);
        }
        o.message_sent(clock, 0);
        o.link_queue(clock, 0, 1, 1000);
        o.message_in(iopin, 0, std::to_string(t));
        o.rule_fired(iopin, datafeed);
        for (int r = 0; r < 3; ++r, ++message) {
            const int level = arduino_levels[message];
            o.pin_written(iopin, 0, level, &datafeed, at);
            if (message == 0) {
                o.link_state(iopin, 0, LinkState::connecting, "");
                o.link_state(iopin, 0, LinkState::up, "");
                o.connection_opened(buzzer);
            }
            o.message_sent(iopin, 0);
            o.link_queue(iopin, 0, 1, 1000);
            o.message_in(buzzer, 0, std::to_string(level));
            o.rule_fired(buzzer, level ? signal_1 : signal);
            o.pin_written(buzzer, 0, level, level ? &signal_1 : &signal, at);
            o.reply_out(buzzer, 0, level ? "buzz buzz buzz" : "...");
            o.acked(iopin, 0, Micros(50));
            o.link_queue(iopin, 0, 0, 1000);
        }
        o.reply_out(iopin, 0, "acknowledged");
        o.acked(clock, 0, Micros(200 * (t + 1)));
        o.link_queue(clock, 0, 0, 1000);
    }
}

// A graph of one node whose names hold a backslash, a double quote and a newline: the node,
// its channel, its pin, its edge's target and its rule's label.
inline Graph escaping_graph() {
    Graph g;
    g.name = "escaping";
    engine::Node n;
    n.name = "a\\b\"c\nd";
    engine::Pin pin;
    pin.name = "p\"in";
    n.pins.push_back(pin);
    engine::Source s;
    s.name = "ch\\an\nnel";
    engine::Rule r;
    r.label = "on ch \"x\\y\"";
    r.index = 0;
    s.rules.push_back(r);
    n.sources.push_back(s);
    engine::Edge edge;
    edge.node = 0;
    edge.channel = "back\nslash\\";
    n.edges.push_back(edge);
    g.nodes.push_back(n);
    return g;
}

}  // namespace meshrun::test
