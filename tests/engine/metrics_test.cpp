// The fleet's figures for Prometheus: the exact lines Metrics renders for events of
// topologies/arduino.mesh (tests/metrics/events.hpp), every series at 0 from the start,
// label escaping, the histogram's cumulative buckets, links' states, one node's exposition,
// the process's figures; and the real fleet on virtual time with the metrics as its observer.
// promtool checks the same renders (tests/metrics/promtool_check.sh).
#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "events.hpp"
#include "manual_clock.hpp"
#include "meshrun/drivers/sim.hpp"
#include "meshrun/engine/metrics.hpp"
#include "meshrun/engine/runtime.hpp"

using namespace meshrun::engine;
using meshrun::test::arduino_graph;
using meshrun::test::feed_arduino_run;

namespace {

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

// The lines of a render that start with `prefix`, in order.
std::vector<std::string> lines(const std::string& text, const std::string& prefix) {
    std::vector<std::string> out;
    for (auto& line : lines(text))
        if (line.rfind(prefix, 0) == 0) out.push_back(line);
    return out;
}

bool has_line(const std::string& text, const std::string& line) {
    for (const auto& l : lines(text))
        if (l == line) return true;
    return false;
}

Graph checked_arduino() {
    Graph g = arduino_graph();
    REQUIRE(g.nodes.size() == 3);
    return g;
}

}  // namespace

TEST_CASE("metrics: every series of a node exists at 0 from the start", "[metrics]") {
    const Graph g = checked_arduino();
    const Metrics m(g, {0, 1, 2});
    const std::string text = m.render();
    CHECK(lines(text, "meshrun_messages_received_total") ==
          std::vector<std::string>{R"(meshrun_messages_received_total{node="iopin",channel="datafeed"} 0)",
                                   R"(meshrun_messages_received_total{node="buzzer",channel="signal"} 0)"});
    CHECK(lines(text, "meshrun_rule_firings_total") ==
          std::vector<std::string>{R"(meshrun_rule_firings_total{node="clock",rule="every 1s 5 times"} 0)",
                                   R"(meshrun_rule_firings_total{node="iopin",rule="on datafeed"} 0)",
                                   R"(meshrun_rule_firings_total{node="buzzer",rule="on signal 1"} 0)",
                                   R"(meshrun_rule_firings_total{node="buzzer",rule="on signal"} 0)"});
    CHECK(lines(text, "meshrun_pin_level") ==
          std::vector<std::string>{R"(meshrun_pin_level{node="iopin",pin="led"} -1)",
                                   R"(meshrun_pin_level{node="buzzer",pin="horn"} -1)"});
    CHECK(lines(text, "meshrun_link_state{node=\"clock\"") ==
          std::vector<std::string>{
              R"(meshrun_link_state{node="clock",target="iopin/datafeed",state="connecting"} 0)",
              R"(meshrun_link_state{node="clock",target="iopin/datafeed",state="up"} 0)",
              R"(meshrun_link_state{node="clock",target="iopin/datafeed",state="down"} 0)",
              R"(meshrun_link_state{node="clock",target="iopin/datafeed",state="retrying"} 0)"});
    CHECK(lines(text, "meshrun_ack_latency_seconds_bucket{node=\"iopin\"").size() == 17);
    CHECK(has_line(text, R"(meshrun_ack_latency_seconds_count{node="iopin",target="buzzer/signal"} 0)"));
    CHECK(has_line(text, R"(meshrun_ack_latency_seconds_sum{node="iopin",target="buzzer/signal"} 0)"));
    CHECK(has_line(text, R"(meshrun_node_start_time_seconds{node="buzzer"} 0)"));
    CHECK(has_line(text, R"(meshrun_connections_open{node="clock"} 0)"));
    // No input pins in this graph: no input edges at all, and the family is left out.
    CHECK(text.find("meshrun_input_edges_total") == std::string::npos);
    // Each family once, with its HELP and TYPE before its samples.
    CHECK(lines(text, "# TYPE meshrun_messages_received_total counter").size() == 1);
    CHECK(lines(text, "# TYPE meshrun_ack_latency_seconds histogram").size() == 1);
    CHECK(text.find("# HELP meshrun_link_up ") < text.find("# TYPE meshrun_link_up gauge"));
    CHECK(text.find("# TYPE meshrun_link_up gauge") < text.find("meshrun_link_up{"));
}

TEST_CASE("metrics: a run of the arduino fleet line by line", "[metrics]") {
    const Graph g = checked_arduino();
    Metrics m(g, {0, 1, 2});
    feed_arduino_run(m, g);
    const std::string text = m.render();
    for (const char* line : {
             R"(meshrun_messages_received_total{node="iopin",channel="datafeed"} 5)",
             R"(meshrun_messages_received_total{node="buzzer",channel="signal"} 15)",
             R"(meshrun_replies_sent_total{node="iopin",channel="datafeed"} 5)",
             R"(meshrun_replies_sent_total{node="buzzer",channel="signal"} 15)",
             R"(meshrun_messages_sent_total{node="clock",target="iopin/datafeed"} 5)",
             R"(meshrun_messages_sent_total{node="iopin",target="buzzer/signal"} 15)",
             R"(meshrun_messages_dropped_total{node="iopin",target="buzzer/signal"} 0)",
             R"(meshrun_ack_latency_seconds_count{node="clock",target="iopin/datafeed"} 5)",
             R"(meshrun_ack_latency_seconds_sum{node="clock",target="iopin/datafeed"} 0.003)",
             R"(meshrun_ack_latency_seconds_sum{node="iopin",target="buzzer/signal"} 0.00075)",
             R"(meshrun_link_reconnects_total{node="iopin",target="buzzer/signal"} 0)",
             R"(meshrun_link_up{node="clock",target="iopin/datafeed"} 1)",
             R"(meshrun_link_state{node="iopin",target="buzzer/signal",state="up"} 1)",
             R"(meshrun_link_state{node="iopin",target="buzzer/signal",state="connecting"} 0)",
             R"(meshrun_link_queue_messages{node="clock",target="iopin/datafeed"} 0)",
             R"(meshrun_link_queue_limit{node="clock",target="iopin/datafeed"} 1000)",
             R"(meshrun_pin_writes_total{node="iopin",pin="led"} 15)",
             R"(meshrun_pin_writes_total{node="buzzer",pin="horn"} 15)",
             R"(meshrun_pin_level{node="buzzer",pin="horn"} 1)",
             R"(meshrun_rule_firings_total{node="clock",rule="every 1s 5 times"} 5)",
             R"(meshrun_rule_firings_total{node="iopin",rule="on datafeed"} 5)",
             R"(meshrun_rule_firings_total{node="buzzer",rule="on signal 1"} 7)",
             R"(meshrun_rule_firings_total{node="buzzer",rule="on signal"} 8)",
             R"(meshrun_connections_open{node="buzzer"} 1)",
             R"(meshrun_connections_total{node="iopin"} 1)",
         }) {
        INFO(text);
        CHECK(has_line(text, line));
    }
    // The node's start, in Unix time as the wall clock said when the event came (after 2020).
    const auto started = lines(text, R"(meshrun_node_start_time_seconds{node="iopin"} )");
    REQUIRE(started.size() == 1);
    CHECK(std::stod(started[0].substr(started[0].rfind(' ') + 1)) > 1.6e9);
    // A connection that closes leaves the total as it was.
    m.connection_closed(g.find("buzzer"));
    CHECK(has_line(m.render(), R"(meshrun_connections_open{node="buzzer"} 0)"));
    CHECK(has_line(m.render(), R"(meshrun_connections_total{node="buzzer"} 1)"));
}

TEST_CASE("metrics: the latency histogram's buckets are cumulative and their bounds inclusive", "[metrics]") {
    const Graph g = checked_arduino();
    Metrics m(g, {0});
    for (long us : {0L, 100L, 101L, 250L, 999L, 1'000'000L, 10'000'000L, 10'000'001L, 60'000'000L})
        m.acked(0, 0, Micros(us));
    const std::string prefix = R"(meshrun_ack_latency_seconds_bucket{node="clock",target="iopin/datafeed",le=)";
    CHECK(lines(m.render(), prefix) == std::vector<std::string>{
                                           prefix + R"("0.0001"} 2)",  prefix + R"("0.00025"} 4)",
                                           prefix + R"("0.0005"} 4)",  prefix + R"("0.001"} 5)",
                                           prefix + R"("0.0025"} 5)",  prefix + R"("0.005"} 5)",
                                           prefix + R"("0.01"} 5)",    prefix + R"("0.025"} 5)",
                                           prefix + R"("0.05"} 5)",    prefix + R"("0.1"} 5)",
                                           prefix + R"("0.25"} 5)",    prefix + R"("0.5"} 5)",
                                           prefix + R"("1"} 6)",       prefix + R"("2.5"} 6)",
                                           prefix + R"("5"} 6)",       prefix + R"("10"} 7)",
                                           prefix + R"("+Inf"} 9)",
                                       });
    CHECK(has_line(m.render(), R"(meshrun_ack_latency_seconds_count{node="clock",target="iopin/datafeed"} 9)"));
    CHECK(has_line(m.render(), R"(meshrun_ack_latency_seconds_sum{node="clock",target="iopin/datafeed"} 81.001451)"));
}

TEST_CASE("metrics: label values escape backslash and double quote and newline", "[metrics]") {
    CHECK(escape_label_value("plain") == "plain");
    CHECK(escape_label_value("a\\b\"c\nd") == R"(a\\b\"c\nd)");
    CHECK(escape_label_value("tab\tstays") == "tab\tstays");

    const Graph g = meshrun::test::escaping_graph();
    Metrics m(g, {0});
    m.message_in(0, 0, "x");
    m.rule_fired(0, g.nodes[0].sources[0].rules[0]);
    m.pin_written(0, 0, 1, nullptr, Micros(0));
    const std::string text = m.render();
    INFO(text);
    CHECK(has_line(text, R"(meshrun_messages_received_total{node="a\\b\"c\nd",channel="ch\\an\nnel"} 1)"));
    CHECK(has_line(text, R"(meshrun_messages_sent_total{node="a\\b\"c\nd",target="a\\b\"c\nd/back\nslash\\"} 0)"));
    CHECK(has_line(text, R"(meshrun_rule_firings_total{node="a\\b\"c\nd",rule="on ch \"x\\y\""} 1)"));
    CHECK(has_line(text, R"(meshrun_pin_level{node="a\\b\"c\nd",pin="p\"in"} 1)"));
}

TEST_CASE("metrics: one node's exposition and nodes that do not run here", "[metrics]") {
    const Graph g = checked_arduino();
    const int buzzer = g.find("buzzer");
    Metrics m(g, {g.find("iopin"), buzzer});
    feed_arduino_run(m, g);  // the clock's events are not this process's: ignored
    const std::string text = m.render(buzzer);
    INFO(text);
    for (const auto& line : lines(text))
        if (line.rfind("meshrun_", 0) == 0) CHECK(line.find(R"({node="buzzer")") != std::string::npos);
    CHECK(has_line(text, R"(meshrun_messages_received_total{node="buzzer",channel="signal"} 15)"));
    // buzzer sends nothing: no link families at all.
    CHECK(text.find("meshrun_messages_sent_total") == std::string::npos);
    CHECK(text.find("meshrun_ack_latency_seconds") == std::string::npos);
    // Both the node's render and the process's figures follow.
    CHECK(lines(text, "process_resident_memory_bytes ").size() == 1);

    const std::string all = m.render(-1);
    CHECK(all.find(R"(node="clock")") == std::string::npos);
    CHECK(has_line(all, R"(meshrun_messages_received_total{node="iopin",channel="datafeed"} 5)"));
    // A node of the graph that does not run here, or no node: only the process's figures.
    for (int node : {g.find("clock"), 7}) {
        const std::string none = m.render(node);
        CHECK(none.find("meshrun_") == std::string::npos);
        CHECK(none.find("process_cpu_seconds_total") != std::string::npos);
    }
}

TEST_CASE("metrics: links' states and reconnects and queues", "[metrics]") {
    const Graph g = checked_arduino();
    Metrics m(g, {0});
    const auto line = [](const std::string& name, const std::string& value, const std::string& more = "") {
        return name + R"({node="clock",target="iopin/datafeed")" + more + "} " + value;
    };
    for (LinkState s : {LinkState::connecting, LinkState::connecting, LinkState::down, LinkState::retrying,
                        LinkState::connecting, LinkState::up, LinkState::down, LinkState::connecting})
        m.link_state(0, 0, s, "why");
    // Into connecting after the first attempt, twice (connecting again while connecting is no transition).
    CHECK(has_line(m.render(), line("meshrun_link_reconnects_total", "2")));
    CHECK(has_line(m.render(), line("meshrun_link_up", "0")));
    CHECK(lines(m.render(), "meshrun_link_state{") ==
          std::vector<std::string>{line("meshrun_link_state", "1", R"(,state="connecting")"),
                                   line("meshrun_link_state", "0", R"(,state="up")"),
                                   line("meshrun_link_state", "0", R"(,state="down")"),
                                   line("meshrun_link_state", "0", R"(,state="retrying")")});
    m.link_state(0, 0, LinkState::up, "");
    CHECK(has_line(m.render(), line("meshrun_link_up", "1")));
    CHECK(has_line(m.render(), line("meshrun_link_state", "1", R"(,state="up")")));
    CHECK(has_line(m.render(), line("meshrun_link_state", "0", R"(,state="connecting")")));
    m.link_queue(0, 0, 12, 50);
    m.dropped(0, 0, "refused");
    CHECK(has_line(m.render(), line("meshrun_link_queue_messages", "12")));
    CHECK(has_line(m.render(), line("meshrun_link_queue_limit", "50")));
    CHECK(has_line(m.render(), line("meshrun_messages_dropped_total", "1")));
}

TEST_CASE("metrics: rules are told by address and repeated labels get #2 and other graphs' rules are ignored",
          "[metrics]") {
    Graph g = checked_arduino();
    // A third rule on buzzer's channel with the label of the second, and a second timer on the clock.
    Source& signal = g.nodes[g.find("buzzer")].sources[0];
    signal.rules.push_back(signal.rules[1]);
    signal.rules.back().index = 2;  // lowering numbers a node's rules in order
    Node& clock = g.nodes[g.find("clock")];
    clock.sources.push_back(clock.sources[0]);
    clock.sources.back().rules[0].index = 1;
    Metrics m(g, {0, 1, 2});
    m.rule_fired(g.find("buzzer"), signal.rules[2]);
    m.rule_fired(g.find("buzzer"), signal.rules[2]);
    m.rule_fired(0, clock.sources[1].rules[0]);
    const Graph copy = g;  // the same rules at other addresses
    m.rule_fired(g.find("buzzer"), copy.nodes[g.find("buzzer")].sources[0].rules[0]);
    m.rule_fired(g.find("buzzer"), g.nodes[0].sources[0].rules[0]);  // another node's rule
    const std::string text = m.render();
    INFO(text);
    CHECK(lines(text, R"(meshrun_rule_firings_total{node="buzzer")") ==
          std::vector<std::string>{R"(meshrun_rule_firings_total{node="buzzer",rule="on signal 1"} 0)",
                                   R"(meshrun_rule_firings_total{node="buzzer",rule="on signal"} 0)",
                                   R"(meshrun_rule_firings_total{node="buzzer",rule="on signal #2"} 2)"});
    CHECK(lines(text, R"(meshrun_rule_firings_total{node="clock")") ==
          std::vector<std::string>{R"(meshrun_rule_firings_total{node="clock",rule="every 1s 5 times"} 0)",
                                   R"(meshrun_rule_firings_total{node="clock",rule="every 1s 5 times #2"} 1)"});
}

TEST_CASE("metrics: the process's figures as the client libraries name them", "[metrics]") {
    const std::string text = render_process_metrics();
    INFO(text);
    const auto value = [&](const std::string& name) {
        const auto found = lines(text, name + " ");
        REQUIRE(found.size() == 1);
        return std::stod(found[0].substr(name.size() + 1));
    };
    CHECK(value("process_resident_memory_bytes") > 0);
    CHECK(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    CHECK(value("process_cpu_seconds_total") >= 0);
    CHECK(value("process_open_fds") >= 3);
    CHECK(value("process_max_fds") >= value("process_open_fds"));
    CHECK(value("process_start_time_seconds") > 1.6e9);
    CHECK(has_line(text, "# TYPE process_cpu_seconds_total counter"));
    CHECK(has_line(text, "# TYPE process_open_fds gauge"));
}

// The real fleet on virtual time (real websockets on loopback, simulated pins) with the metrics
// among its observers: what they render is what the fleet itself counted.
namespace {

struct NoLog final : Logger {
    void line(const std::string&, std::string_view) override {}
};

// Runs the fleet's ready work and the virtual clock's callbacks up to `to`, each until 30 ms of real
// time pass with nothing to do.
void run_until(Fleet& fleet, meshrun::test::ManualClock& clock, Micros to) {
    for (bool more = true; more;) {
        for (auto idle_since = std::chrono::steady_clock::now();
             std::chrono::steady_clock::now() - idle_since < std::chrono::milliseconds(30);)
            if (fleet.poll() + fleet.run_one_for(std::chrono::milliseconds(2)) > 0) idle_since = std::chrono::steady_clock::now();
        more = !clock.due.empty() && clock.due.begin()->first <= to && clock.step();
    }
}

}  // namespace

TEST_CASE("metrics: the arduino fleet on virtual time renders what the fleet counted", "[metrics]") {
    const Graph g = checked_arduino();
    meshrun::test::ManualClock clock;
    NoLog log;
    // Every node here, each on a board of its own, on free ports; random(P) as `meshrun test` seeds it.
    std::vector<meshrun::drivers::SimDriver> boards(g.nodes.size());
    FleetOptions options;
    options.seed = 1;
    options.clock = &clock;
    options.any_port = true;
    for (std::size_t i = 0; i < g.nodes.size(); ++i) {
        options.nodes.push_back(static_cast<int>(i));
        options.node_pins.push_back(&boards[i]);
    }
    Metrics metrics(g, options.nodes);
    options.observers = {&metrics};
    Fleet fleet(g, boards[0], log, options);
    fleet.start();
    run_until(fleet, clock, Micros(5'000'000));
    const std::string text = metrics.render();
    INFO(text);
    const int iopin = g.find("iopin"), buzzer = g.find("buzzer");
    REQUIRE(fleet.received(iopin, "datafeed") == 5);
    CHECK(has_line(text, R"(meshrun_messages_received_total{node="iopin",channel="datafeed"} 5)"));
    CHECK(has_line(text, fmt::format(R"(meshrun_messages_received_total{{node="buzzer",channel="signal"}} {})",
                                     fleet.received(buzzer, "signal"))));
    // With --seed 1 the horn goes 0 0 0 0 1 1 1 1 1 0 0 0 0 1 1 (the file's own test says so).
    CHECK(lines(text, "meshrun_rule_firings_total{") ==
          std::vector<std::string>{R"(meshrun_rule_firings_total{node="clock",rule="every 1s 5 times"} 5)",
                                   R"(meshrun_rule_firings_total{node="iopin",rule="on datafeed"} 5)",
                                   R"(meshrun_rule_firings_total{node="buzzer",rule="on signal 1"} 7)",
                                   R"(meshrun_rule_firings_total{node="buzzer",rule="on signal"} 8)"});
    CHECK(has_line(text, fmt::format(R"(meshrun_pin_level{{node="buzzer",pin="horn"}} {})", fleet.pin_level(buzzer, 0))));
    CHECK(has_line(text, R"(meshrun_pin_writes_total{node="iopin",pin="led"} 15)"));
    CHECK(has_line(text, R"(meshrun_replies_sent_total{node="iopin",channel="datafeed"} 5)"));
    CHECK(has_line(text, R"(meshrun_ack_latency_seconds_count{node="clock",target="iopin/datafeed"} 5)"));
    CHECK(has_line(text, R"(meshrun_ack_latency_seconds_count{node="iopin",target="buzzer/signal"} 15)"));
    CHECK(has_line(text, R"(meshrun_messages_sent_total{node="iopin",target="buzzer/signal"} 15)"));
    CHECK(has_line(text, R"(meshrun_link_up{node="iopin",target="buzzer/signal"} 1)"));
    CHECK(has_line(text, R"(meshrun_link_reconnects_total{node="clock",target="iopin/datafeed"} 0)"));
    CHECK(has_line(text, R"(meshrun_connections_open{node="buzzer"} 1)"));
    CHECK(lines(text, R"(meshrun_node_start_time_seconds{node="clock"} 0)").empty());
    fleet.stop();
    run_until(fleet, clock, Micros(6'000'000));
}

TEST_CASE("metrics: each variable is a gauge of its number, NaN when its text is not one", "[metrics][state]") {
    Graph g;
    g.name = "t";
    Node hall;
    hall.name = "hall";
    hall.vars = {{"visits", "0", {}}, {"mode", "auto", {}}, {"say \"hi\"", "-1.5", {}}};
    g.nodes.push_back(hall);
    Metrics m(g, {0});
    std::string text = m.render();
    CHECK(has_line(text, "# TYPE meshrun_variable gauge"));
    CHECK(lines(text, "meshrun_variable") ==
          std::vector<std::string>{R"(meshrun_variable{node="hall",var="visits"} 0)",
                                   R"(meshrun_variable{node="hall",var="mode"} NaN)",
                                   R"(meshrun_variable{node="hall",var="say \"hi\""} -1.5)"});
    m.variable_set(0, 0, "2", nullptr, Micros(0));
    m.variable_set(0, 1, "12.25", nullptr, Micros(0));
    m.variable_set(0, 2, "on", nullptr, Micros(0));
    m.variable_set(0, 3, "9", nullptr, Micros(0));  // no such variable: ignored
    m.variable_set(1, 0, "9", nullptr, Micros(0));  // no such node
    text = m.render();
    CHECK(lines(text, "meshrun_variable") ==
          std::vector<std::string>{R"(meshrun_variable{node="hall",var="visits"} 2)",
                                   R"(meshrun_variable{node="hall",var="mode"} 12.25)",
                                   R"(meshrun_variable{node="hall",var="say \"hi\""} NaN)"});
    // A node without variables has no such family.
    Graph plain = checked_arduino();
    CHECK(Metrics(plain, {0, 1, 2}).render().find("meshrun_variable") == std::string::npos);
}
