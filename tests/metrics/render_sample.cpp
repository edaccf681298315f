// Writes what the metrics render for a run of topologies/arduino.mesh (tests/metrics/events.hpp)
// into DIR, for promtool to check (promtool_check.sh):
//   fleet.prom    every node of the process
//   node.prom     one node (iopin)
//   fresh.prom    every node before any event
//   escaping.prom a node whose names need escaping
#include <fstream>
#include <iostream>
#include <string>

#include "events.hpp"
#include "meshrun/engine/metrics.hpp"

int main(int argc, char** argv) {
    using meshrun::engine::Metrics;
    if (argc != 2) {
        std::cerr << "usage: render_sample DIR\n";
        return 2;
    }
    const std::string dir = argv[1];
    const auto write = [&](const std::string& name, const std::string& text) {
        std::ofstream(dir + "/" + name) << text;
    };
    const auto graph = meshrun::test::arduino_graph();
    if (graph.nodes.size() != 3) {
        std::cerr << "render_sample: arduino.mesh did not compile\n";
        return 1;
    }
    Metrics fresh(graph, {0, 1, 2});
    write("fresh.prom", fresh.render());
    Metrics metrics(graph, {0, 1, 2});
    meshrun::test::feed_arduino_run(metrics, graph);
    write("fleet.prom", metrics.render());
    write("node.prom", metrics.render(graph.find("iopin")));

    const auto escaping = meshrun::test::escaping_graph();
    Metrics escaped(escaping, {0});
    escaped.message_in(0, 0, "x");
    escaped.rule_fired(0, escaping.nodes[0].sources[0].rules[0]);
    write("escaping.prom", escaped.render());
    return 0;
}
