// The event graph: lowering from the checked program, and its drawings.
// tests/engine/data/arduino.dot and arduino.mmd pin the exact drawings of
// topologies/arduino.mesh; MESHRUN_UPDATE_GOLDEN=1 rewrites them (then read the
// diff, and render them, before committing).
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "meshrun/dsl/frontend.hpp"
#include "meshrun/engine/graph.hpp"
#include "build_paths.hpp"

using namespace meshrun::engine;
namespace dsl = meshrun::dsl;
namespace fs = std::filesystem;

namespace {

// Compiles a topology that must check clean and lowers it.
Graph lowered(const fs::path& path) {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto compiled = dsl::compile_file(path.string(), sm, diags);
    INFO(path.string());
    REQUIRE_FALSE(diags.has_errors());
    return lower(compiled.program);
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<fs::path> topologies() {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(meshrun::build_paths::source("topologies")))
        if (e.is_regular_file() && e.path().extension() == ".mesh") out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

std::size_t count(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
    return n;
}

// The sends a rule can run: in its body, in repeat and after bodies, in the branches of ifs, in the
// actions it calls.
std::size_t sends_in(const Node& node, const std::vector<Op>& body, int depth = 0) {
    REQUIRE(depth < 64);  // the checker forbids recursive actions
    std::size_t n = 0;
    for (const Op& op : body) {
        if (op.kind == Op::Kind::send) ++n;
        if (op.kind == Op::Kind::repeat || op.kind == Op::Kind::after) n += sends_in(node, op.body, depth + 1);
        if (op.kind == Op::Kind::call) n += sends_in(node, node.actions.at(op.action).body, depth + 1);
        for (const Branch& b : op.branches) n += sends_in(node, b.body, depth + 1);
    }
    return n;
}

std::size_t sends_in(const Graph& graph) {
    std::size_t n = 0;
    for (const Node& node : graph.nodes)
        for (const Source& source : node.sources)
            for (const Rule& rule : source.rules) n += sends_in(node, rule.body);
    return n;
}

// Every index in a body points at something that exists.
void check_resolved(const Graph& graph, const Node& node, const std::vector<Op>& body);

void check_resolved(const Graph& graph, const Node& node, const Expr& e) {
    if (e.kind == Expr::Kind::pin) {
        CHECK(e.pin >= 0);
        CHECK(static_cast<std::size_t>(e.pin) < node.pins.size());
    }
    if (e.kind == Expr::Kind::var) {
        CHECK(e.var >= 0);
        CHECK(static_cast<std::size_t>(e.var) < node.vars.size());
    }
    for (const Expr& arg : e.args) check_resolved(graph, node, arg);
}

void check_resolved(const Graph& graph, const Node& node, const std::vector<Op>& body) {
    for (const Op& op : body) {
        switch (op.kind) {
            case Op::Kind::write:
            case Op::Kind::toggle:
                REQUIRE(op.pin >= 0);
                REQUIRE(static_cast<std::size_t>(op.pin) < node.pins.size());
                CHECK(node.pins[op.pin].output);
                break;
            case Op::Kind::send: {
                REQUIRE(op.edge >= 0);
                REQUIRE(static_cast<std::size_t>(op.edge) < node.edges.size());
                const Edge& edge = node.edges[op.edge];
                REQUIRE(edge.node >= 0);
                REQUIRE(static_cast<std::size_t>(edge.node) < graph.nodes.size());
                CHECK(graph.nodes[edge.node].channel(edge.channel) != nullptr);
                break;
            }
            case Op::Kind::call:
                REQUIRE(op.action >= 0);
                REQUIRE(static_cast<std::size_t>(op.action) < node.actions.size());
                break;
            case Op::Kind::set:
                REQUIRE(op.var >= 0);
                REQUIRE(static_cast<std::size_t>(op.var) < node.vars.size());
                break;
            case Op::Kind::cancel:
                REQUIRE(op.named >= 0);
                REQUIRE(static_cast<std::size_t>(op.named) < node.delays.size());
                break;
            case Op::Kind::after:
                CHECK(op.named >= -1);
                CHECK(op.named < static_cast<int>(node.delays.size()));
                break;
            default: break;
        }
        if (op.kind != Op::Kind::toggle && op.kind != Op::Kind::call && op.kind != Op::Kind::after &&
            op.kind != Op::Kind::repeat && op.kind != Op::Kind::if_ && op.kind != Op::Kind::cancel)
            check_resolved(graph, node, op.expr);
        check_resolved(graph, node, op.body);
        for (const Branch& b : op.branches) {
            if (b.condition) check_resolved(graph, node, *b.condition);
            check_resolved(graph, node, b.body);
        }
    }
}

void check_resolved(const Graph& graph) {
    for (const Node& node : graph.nodes) {
        INFO("node " << node.name);
        for (const Source& source : node.sources) {
            if (source.kind == Source::Kind::pin) {
                REQUIRE(source.pin >= 0);
                REQUIRE(static_cast<std::size_t>(source.pin) < node.pins.size());
                CHECK(node.pins[source.pin].name == source.name);
            }
            for (const Rule& rule : source.rules) {
                if (rule.guard) check_resolved(graph, node, *rule.guard);
                check_resolved(graph, node, rule.body);
            }
        }
        for (const Action& action : node.actions) check_resolved(graph, node, action.body);
    }
}

}  // namespace

TEST_CASE("arduino.mesh lowers to its three nodes with every name resolved", "[engine]") {
    const Graph graph = lowered(meshrun::build_paths::source("topologies/arduino.mesh"));
    CHECK(graph.name == "arduino");
    REQUIRE(graph.nodes.size() == 3);
    CHECK(graph.find("clock") == 0);
    CHECK(graph.find("iopin") == 1);
    CHECK(graph.find("buzzer") == 2);
    CHECK(graph.find("nobody") == -1);

    SECTION("the clock is a client with one timer, every 1s, 5 times") {
        const Node& clock = graph.nodes[0];
        CHECK_FALSE(clock.port);
        REQUIRE(clock.sources.size() == 1);
        const Source& timer = clock.sources[0];
        CHECK(timer.kind == Source::Kind::timer);
        CHECK(timer.period == std::chrono::seconds(1));
        REQUIRE(timer.times);
        CHECK(*timer.times == 5);
        CHECK(timer.name == "every 1s 5 times");
        REQUIRE(timer.rules.size() == 1);
        REQUIRE(timer.rules[0].body.size() == 1);
        const Op& send = timer.rules[0].body[0];
        CHECK(send.kind == Op::Kind::send);
        CHECK(send.expr.kind == Expr::Kind::tick);
        REQUIRE(send.edge == 0);
        CHECK(clock.edges[0].node == graph.find("iopin"));
        CHECK(clock.edges[0].channel == "datafeed");
    }

    SECTION("iopin's datafeed rule repeats a write and a send to buzzer/signal three times") {
        const Node& iopin = graph.nodes[1];
        CHECK(iopin.host == "localhost");
        REQUIRE(iopin.port);
        CHECK(*iopin.port == 8765);
        const Source* datafeed = iopin.channel("datafeed");
        REQUIRE(datafeed);
        REQUIRE(datafeed->rules.size() == 1);
        const Rule& rule = datafeed->rules[0];
        CHECK_FALSE(rule.pattern);
        CHECK_FALSE(rule.guard);
        CHECK(rule.label == "on datafeed");
        REQUIRE(rule.body.size() == 3);
        CHECK(rule.body[0].kind == Op::Kind::log);
        CHECK(rule.body[0].expr.kind == Expr::Kind::interpolation);
        CHECK(rule.body[2].kind == Op::Kind::ack);
        const Op& repeat = rule.body[1];
        REQUIRE(repeat.kind == Op::Kind::repeat);
        CHECK(repeat.count == 3);
        REQUIRE(repeat.body.size() == 2);
        const Op& write = repeat.body[0];
        CHECK(write.kind == Op::Kind::write);
        REQUIRE(write.pin >= 0);
        CHECK(iopin.pins.at(write.pin).name == "led");
        CHECK(write.expr.kind == Expr::Kind::random);
        const Op& send = repeat.body[1];
        REQUIRE(send.kind == Op::Kind::send);
        CHECK(send.expr.kind == Expr::Kind::pin);
        CHECK(send.expr.pin == write.pin);
        const Edge& edge = iopin.edges.at(send.edge);
        CHECK(graph.nodes.at(edge.node).name == "buzzer");
        CHECK(edge.channel == "signal");
    }

    SECTION("buzzer's signal channel has two rules, the first calling buzz on 1") {
        const Node& buzzer = graph.nodes[2];
        REQUIRE(buzzer.port);
        CHECK(*buzzer.port == 8766);
        REQUIRE(buzzer.sources.size() == 1);
        const Source* signal = buzzer.channel("signal");
        REQUIRE(signal);
        CHECK(signal == &buzzer.sources[0]);
        REQUIRE(signal->rules.size() == 2);
        const Rule& first = signal->rules[0];
        REQUIRE(first.pattern);
        CHECK(*first.pattern == "1");
        CHECK(first.label == "on signal 1");
        REQUIRE(first.body.size() == 1);
        CHECK(first.body[0].kind == Op::Kind::call);
        CHECK(buzzer.actions.at(first.body[0].action).name == "buzz");
        CHECK_FALSE(signal->rules[1].pattern);
        CHECK(signal->rules[1].label == "on signal");
        CHECK(buzzer.edges.empty());
    }

    check_resolved(graph);
}

// Draws `path` and compares with (or, with MESHRUN_UPDATE_GOLDEN set, rewrites) NAME.dot and NAME.mmd.
void check_golden_drawings(const fs::path& path, const std::string& name) {
    const Graph graph = lowered(path);
    const fs::path dir = meshrun::build_paths::source("tests/engine/data");
    const bool update = std::getenv("MESHRUN_UPDATE_GOLDEN") != nullptr;
    const std::string dot = to_dot(graph);
    const std::string mermaid = to_mermaid(graph);
    if (update) {
        std::ofstream(dir / (name + ".dot")) << dot;
        std::ofstream(dir / (name + ".mmd")) << mermaid;
    }
    REQUIRE(fs::exists(dir / (name + ".dot")));
    REQUIRE(fs::exists(dir / (name + ".mmd")));
    CHECK(dot == slurp(dir / (name + ".dot")));
    CHECK(mermaid == slurp(dir / (name + ".mmd")));
}

TEST_CASE("arduino.mesh draws exactly its golden DOT and Mermaid drawings", "[engine][golden]") {
    check_golden_drawings(meshrun::build_paths::source("topologies/arduino.mesh"), "arduino");
}

TEST_CASE("named delays and variables draw exactly their golden DOT and Mermaid drawings", "[engine][golden][state]") {
    check_golden_drawings(meshrun::build_paths::source("tests/engine/data/state.mesh"), "state");
}

TEST_CASE("variables, assignments, named delays and cancel lower to their indices", "[engine][state]") {
    const Graph graph = lowered(meshrun::build_paths::source("tests/engine/data/state.mesh"));
    check_resolved(graph);
    const Node& hall = graph.nodes.at(0);
    REQUIRE(hall.vars.size() == 3);
    CHECK(hall.vars[0].name == "visits");
    CHECK(hall.vars[0].initial == "0");
    CHECK(hall.vars[1].initial == "day");  // the text, without quotes
    CHECK(hall.vars[2].initial == "-1.5");
    REQUIRE(hall.delays.size() == 2);
    CHECK(hall.delays[0].name == "lights_off");  // in the order of first use
    CHECK(hall.delays[1].name == "blink");
    const auto pin_source = std::find_if(hall.sources.begin(), hall.sources.end(),
                                         [](const Source& s) { return s.kind == Source::Kind::pin; });
    REQUIRE(pin_source != hall.sources.end());
    const Rule& motion = pin_source->rules.at(0);
    REQUIRE(motion.label == "on motion 1");
    REQUIRE(motion.body.size() == 3);
    CHECK(motion.body[1].kind == Op::Kind::set);
    CHECK(motion.body[1].var == 0);
    CHECK(motion.body[1].expr.args.at(0).kind == Expr::Kind::var);
    CHECK(motion.body[2].kind == Op::Kind::after);
    CHECK(motion.body[2].named == 0);
    const Rule& door = hall.channel("door")->rules.at(0);
    CHECK(door.body.at(0).kind == Op::Kind::cancel);
    CHECK(door.body.at(0).named == 0);
    CHECK(door.body.at(1).branches.at(1).body.at(0).named == 1);
    CHECK(hall.channel("night")->rules.at(0).body.at(0).kind == Op::Kind::set);
    // An `after` without a name is not a named delay.
    const Graph plain = lowered(meshrun::build_paths::source("topologies/arduino.mesh"));
    for (const Node& n : plain.nodes) CHECK(n.delays.empty());
}

TEST_CASE("every topology lowers and draws with one send edge per send op", "[engine][topologies]") {
    const auto paths = topologies();
    REQUIRE(paths.size() >= 4);
    for (const auto& path : paths) {
        DYNAMIC_SECTION(path.filename().string()) {
            const Graph graph = lowered(path);
            check_resolved(graph);
            std::string dot, mermaid;
            REQUIRE_NOTHROW(dot = to_dot(graph));
            REQUIRE_NOTHROW(mermaid = to_mermaid(graph));
            CHECK(dot.rfind("digraph \"" + graph.name + "\" {\n", 0) == 0);
            CHECK(mermaid.rfind("flowchart LR\n", 0) == 0);
            const std::size_t sends = sends_in(graph);
            CHECK(count(dot, "[label=\"send") == sends);
            CHECK(count(mermaid, "==>|\"send") == sends);
            std::size_t rules = 0;
            for (const Node& node : graph.nodes) {
                CHECK(count(dot, "subgraph \"cluster_" + node.name + "\" {") == 1);
                for (const Source& source : node.sources) rules += source.rules.size();
            }
            CHECK(count(dot, ".rule.") >= rules);
            CHECK(count(mermaid, "\n    end\n") == graph.nodes.size());
            // Mermaid ids hold nothing but [A-Za-z0-9_].
            std::istringstream lines(mermaid);
            for (std::string line; std::getline(lines, line);) {
                const auto first = line.find_first_not_of(' ');
                if (first == std::string::npos || line.compare(first, 8, "classDef") == 0) continue;
                std::string head = line.substr(first, line.find_first_of(" [({>", first) - first);
                if (head == "subgraph") head = line.substr(first + 9, line.find(' ', first + 9) - first - 9);
                INFO(line);
                CHECK(std::all_of(head.begin(), head.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                }));
            }
        }
    }
}

TEST_CASE("drawings escape labels, name odd ids safely and survive a recursive action", "[engine]") {
    // Built by hand: the checker would reject the recursion and the missing channel.
    Graph graph;
    graph.name = "say \"hi\"";
    Node a;
    a.name = "end";
    a.port = 8700;
    Node b;
    b.name = "dock-1";
    b.host = "back\\slash";
    Source channel;
    channel.kind = Source::Kind::channel;
    channel.name = "cmd";
    Rule rule;
    rule.pattern = "\"x\"";
    rule.label = "on cmd \"x\" <#&>";
    Op send;
    send.kind = Op::Kind::send;
    send.edge = 0;
    Op after;
    after.kind = Op::Kind::after;
    after.delay = std::chrono::milliseconds(1500);
    after.body = {send};
    Op call;
    call.kind = Op::Kind::call;
    call.action = 0;
    rule.body = {after, call};
    channel.rules.push_back(rule);
    b.sources.push_back(channel);
    b.actions.push_back(Action{"loop", {call, send}});  // calls itself
    b.edges.push_back(Edge{0, "nobody-listens"});
    graph.nodes = {a, b};

    const std::string dot = to_dot(graph);
    CHECK(dot.rfind("digraph \"say \\\"hi\\\"\" {\n", 0) == 0);
    CHECK(dot.find("label=\"dock-1\\nback\\\\slash (client)\"") != std::string::npos);
    CHECK(dot.find("label=\"end\\n:8700\"") != std::string::npos);
    CHECK(dot.find("[label=\"on cmd \\\"x\\\" <#&>\"") != std::string::npos);
    CHECK(dot.find("\"end.ch.nobody-listens\" [label=\"nobody-listens\\n(no rule)\"") != std::string::npos);
    CHECK(dot.find("\"dock-1.rule.1\" -> \"end.ch.nobody-listens\" [label=\"send (after 1500ms)\"") !=
          std::string::npos);
    CHECK(dot.find("[label=\"send (via loop)\"") != std::string::npos);
    CHECK(count(dot, "[label=\"send") == 2);

    const std::string mermaid = to_mermaid(graph);
    CHECK(mermaid.find("subgraph end_node [\"end<br/>:8700\"]") != std::string::npos);
    CHECK(mermaid.find("subgraph dock_1 [\"dock-1<br/>back\\slash (client)\"]") != std::string::npos);
    CHECK(mermaid.find("dock_1_rule_1(\"on cmd #quot;x#quot; #lt;#35;#amp;#gt;\"):::rule") != std::string::npos);
    CHECK(mermaid.find("end_ch_nobody_listens[\"nobody-listens<br/>(no rule)\"]:::unhandled") != std::string::npos);
    CHECK(mermaid.find("dock_1_rule_1 ==>|\"send (after 1500ms)\"| end_ch_nobody_listens") != std::string::npos);
    CHECK(count(mermaid, "==>|\"send") == 2);
    CHECK(mermaid.find('"' + std::string("say")) == std::string::npos);  // Mermaid has no title line
}

TEST_CASE("a node at any free port (`at :0`) is drawn as such", "[engine]") {
    Graph graph;
    graph.name = "anyport";
    Node any;
    any.name = "buzzer";
    any.port = 0;
    Node local = any;
    local.name = "iopin";
    local.host = "localhost";
    graph.nodes = {any, local};
    const std::string dot = to_dot(graph);
    CHECK(dot.find("label=\"buzzer\\n:0 (any free port)\"") != std::string::npos);
    CHECK(dot.find("label=\"iopin\\nlocalhost:0 (any free port)\"") != std::string::npos);
    const std::string mermaid = to_mermaid(graph);
    CHECK(mermaid.find("subgraph buzzer [\"buzzer<br/>:0 (any free port)\"]") != std::string::npos);
}

TEST_CASE("rule guards are drawn as written", "[engine]") {
    const Graph graph = lowered(meshrun::build_paths::source("topologies/greenhouse.mesh"));
    const std::string dot = to_dot(graph);
    CHECK(dot.find("label=\"on temperature when value < 18\"") != std::string::npos);
    CHECK(dot.find("label=\"on temperature when value <= 21 and fan == 1\"") != std::string::npos);
    CHECK(dot.find("when ...") == std::string::npos);
    const std::string mermaid = to_mermaid(graph);
    CHECK(mermaid.find("(\"on temperature when value #lt;= 21 and fan == 1\"):::rule") != std::string::npos);
}

TEST_CASE("string patterns keep their quotes and timers send from the timer itself", "[engine]") {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto program = dsl::parse_text("patterns.mesh", R"(
node panel at localhost:8800 {
    on mode "auto" -> ack "a"
    on mode "say \"hi\" \{x\}" -> ack "b"
    on mode 1 -> ack "c"
}
node clock { every 1s -> send "auto" to panel/mode }
)", sm, diags);
    dsl::check(program, diags);
    REQUIRE_FALSE(diags.has_errors());
    const Graph graph = lower(program);
    const auto& rules = graph.nodes[0].sources[0].rules;
    REQUIRE(rules.size() == 3);
    CHECK(rules[0].label == "on mode \"auto\"");
    CHECK(rules[1].label == "on mode \"say \\\"hi\\\" \\{x\\}\"");
    CHECK(rules[2].label == "on mode 1");
    const std::string dot = to_dot(graph);
    CHECK(dot.find("on tick") == std::string::npos);
    CHECK(dot.find("\"clock.timer.1\" -> \"panel.ch.mode\" [label=\"send\"") != std::string::npos);
}

TEST_CASE("actions that each call the next one twice are drawn once each, not 2^N times", "[engine]") {
    // a0 calls a1 twice, a1 calls a2 twice, ...: 2^60 paths to the send at the end.
    std::string text = "node hub at localhost:8800 {\n    action a60 { send \"x\" to sink/in }\n";
    for (int i = 59; i >= 0; --i) {
        std::string next = "a";
        next += std::to_string(i + 1);
        text.append("    action a").append(std::to_string(i)).append(" { ").append(next).append("; ").append(next).append(" }\n");
    }
    text += "    on go -> { a0; ack \"ok\" }\n}\nnode sink at localhost:8801 { on in -> ack \"got\" }\n";
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto program = dsl::parse_text("chain.mesh", text, sm, diags);
    dsl::check(program, diags);
    REQUIRE_FALSE(diags.has_errors());
    const Graph graph = lower(program);
    const std::string dot = to_dot(graph);
    CHECK(count(dot, "[label=\"send") == 1);
}

TEST_CASE("every top-level item of a file reaches the graph", "[engine]") {
    // The items a file may have, as the parser gives them. A new one stops this from compiling:
    // carry it into engine::Graph (lower.cpp), then check it below.
    [[maybe_unused]] const auto& [mesh_name, secrets, tls, limits, discovery, nodes, tests, includes] = dsl::Program{};

    const fs::path dir = fs::temp_directory_path() / "meshrun-graph-items-test";
    fs::create_directories(dir);
    std::ofstream(dir / "root.mesh") << R"(mesh plant
secret env PLANT_TOKEN
tls key "certs/pump.key" cert "certs/pump.crt" ca "certs/plant-ca.crt"
limits { message 1MiB; idle 90s }
discovery etcd "http://127.0.0.1:2379"
include "more.mesh"
node pump at localhost:8800 { on go -> ack 1 }
test "the pump acks" { send 1 to pump/go expect "1" }
)";
    std::ofstream(dir / "more.mesh") << "node clock { every 1s -> send 1 to pump/go }\n";
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto compiled = dsl::compile_file((dir / "root.mesh").string(), sm, diags);
    REQUIRE_FALSE(diags.has_errors());
    const Graph graph = lower(compiled.program);
    fs::remove_all(dir);

    CHECK(graph.name == "plant");
    REQUIRE(graph.secrets.size() == 1);
    CHECK(graph.secrets[0].env == "PLANT_TOKEN");
    CHECK(sm.text(graph.secrets[0].span) == "PLANT_TOKEN");
    REQUIRE(graph.tls);
    CHECK(graph.tls->cert == "certs/pump.crt");
    CHECK(graph.tls->key == "certs/pump.key");
    CHECK(graph.tls->ca == "certs/plant-ca.crt");
    CHECK(sm.text(graph.tls->span) == "tls key \"certs/pump.key\" cert \"certs/pump.crt\" ca \"certs/plant-ca.crt\"");
    CHECK(graph.limits.message == 1024 * 1024);
    CHECK(graph.limits.idle == std::chrono::seconds(90));
    CHECK(graph.limits.connections == Limits{}.connections);  // the others keep their defaults
    REQUIRE(graph.discovery.size() == 1);
    CHECK(graph.discovery[0].url == "http://127.0.0.1:2379");
    CHECK(sm.text(graph.discovery[0].span) == "\"http://127.0.0.1:2379\"");
    REQUIRE(graph.includes.size() == 1);
    CHECK(graph.includes[0].path == (dir / "more.mesh").string());
    REQUIRE(graph.nodes.size() == 2);  // the included file's, spliced in where it is included
    CHECK(graph.nodes[0].name == "clock");
    CHECK(graph.nodes[1].name == "pump");
    REQUIRE(graph.tests.size() == 1);
    CHECK(graph.tests[0].title == "the pump acks");
    CHECK(sm.text(graph.tests[0].span).starts_with("test \"the pump acks\""));
}

TEST_CASE("tls and every limit reach the graph; without them, no TLS and the defaults", "[engine]") {
    auto lowered = [](const std::string& text) {
        dsl::SourceManager sm;
        dsl::Diagnostics diags;
        auto program = dsl::parse_text("limits.mesh", text, sm, diags);
        dsl::check(program, diags);
        std::string shown;
        for (const auto& d : diags.all()) shown += dsl::render_text(d, sm);
        INFO(shown);
        REQUIRE(diags.all().empty());
        return lower(program);
    };
    const std::string node = "node pump at localhost:8800 { on go -> ack 1 }\n";

    const Graph plain = lowered(node);
    CHECK_FALSE(plain.tls);
    const Limits defaults;
    CHECK(defaults.message == 64 * 1024);  // docs/delivery.md's table
    CHECK(defaults.connections == 1024);
    CHECK(defaults.handshake == std::chrono::seconds(5));
    CHECK(defaults.idle == std::chrono::seconds(60));
    CHECK(defaults.outbox == 1000);
    CHECK(plain.limits.message == defaults.message);
    CHECK(plain.limits.connections == defaults.connections);
    CHECK(plain.limits.handshake == defaults.handshake);
    CHECK(plain.limits.idle == defaults.idle);
    CHECK(plain.limits.outbox == defaults.outbox);

    const Graph set = lowered("tls cert \"n.crt\" key \"n.key\"\n"
                              "limits {\n  outbox 1000000\n  idle 24h\n  handshake 100ms\n"
                              "  connections 1\n  message 16B\n}\n" + node);
    REQUIRE(set.tls);
    CHECK(set.tls->cert == "n.crt");
    CHECK(set.tls->key == "n.key");
    CHECK(set.tls->ca.empty());  // peers are not asked for a certificate
    CHECK(set.limits.message == 16);
    CHECK(set.limits.connections == 1);
    CHECK(set.limits.handshake == std::chrono::milliseconds(100));
    CHECK(set.limits.idle == std::chrono::hours(24));
    CHECK(set.limits.outbox == 1'000'000);

    const Graph sizes = lowered("limits { message 16MiB; connections 1000000; handshake 1h; idle 1s }\n" + node);
    CHECK(sizes.limits.message == 16 * 1024 * 1024);
    CHECK(sizes.limits.connections == 1'000'000);
    CHECK(sizes.limits.handshake == std::chrono::hours(1));
    CHECK(sizes.limits.idle == std::chrono::seconds(1));
    CHECK(sizes.limits.outbox == defaults.outbox);
}

TEST_CASE("lowering refuses a program whose names the checker did not resolve", "[engine]") {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    const auto program = dsl::parse_text("unchecked.mesh", "node a { pin led = out gpiochip0 17\n every 1s -> led = 1 }\n", sm, diags);
    REQUIRE_FALSE(diags.has_errors());
    CHECK_THROWS_WITH(lower(program), Catch::Contains("`led` is not resolved"));
}

TEST_CASE("durations are drawn as the language writes them, zero as 0s", "[engine]") {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto program = dsl::parse_text("durations.mesh", R"(
node hub at localhost:8800 {
    on go -> { after 0ms -> send "a" to hub/out; after 90m -> send "b" to hub/out; ack 1 }
    on out -> ack 1
    every 1500us 3 times -> log "t"
}
)", sm, diags);
    dsl::check(program, diags);
    REQUIRE_FALSE(diags.has_errors());
    const Graph graph = lower(program);
    CHECK(graph.nodes[0].sources.back().name == "every 1500us 3 times");
    const std::string dot = to_dot(graph);
    CHECK(dot.find("send (after 0s)") != std::string::npos);
    CHECK(dot.find("send (after 90m)") != std::string::npos);
}

TEST_CASE("`if` lowers to its branches in order, and a send in a branch is drawn with it", "[engine][if]") {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto program = dsl::parse_text("if.mesh", R"(
node hall at localhost:8801 {
    pin lamp = out gpiochip0 17
    on door -> {
        if lamp == 1 and value != "x" { send "on" to panel/show } else if value == "y" {
            repeat 2 { send "y" to panel/show }
        }
        else { lamp = 1 }
    }
}
node panel at localhost:8802 { on show -> ack "shown" }
)", sm, diags);
    dsl::check(program, diags);
    REQUIRE_FALSE(diags.has_errors());
    const Graph graph = lower(program);
    check_resolved(graph);
    const Op& op = graph.nodes[0].sources[0].rules.at(0).body.at(0);
    REQUIRE(op.kind == Op::Kind::if_);
    REQUIRE(op.branches.size() == 3);
    CHECK(op.branches[0].keyword == "if");
    CHECK(op.branches[1].keyword == "else if");
    CHECK(op.branches[2].keyword == "else");
    CHECK(op.branches[0].condition.has_value());
    CHECK_FALSE(op.branches[2].condition.has_value());
    CHECK(op.branches[1].body.at(0).kind == Op::Kind::repeat);
    CHECK(op.branches[2].body.at(0).kind == Op::Kind::write);
    CHECK(sm.text(op.branches[1].span) == "else if");
    CHECK(sends_in(graph) == 2);
    const std::string dot = to_dot(graph);
    CHECK(dot.find("[label=\"send (if lamp == 1 and value != \\\"x\\\")\"") != std::string::npos);
    CHECK(dot.find("[label=\"send (else if value == \\\"y\\\", 2 times)\"") != std::string::npos);
    const std::string mermaid = to_mermaid(graph);
    CHECK(mermaid.find("send (else if value == #quot;y#quot;, 2 times)") != std::string::npos);
}

TEST_CASE("named delays are drawn in their node, with an edge from each rule that starts or cancels one",
          "[engine][state]") {
    // By hand, as lowering makes it of:
    //   var visits = 0 / var mode = "auto"
    //   on motion -> { visits = visits + 1; after 5m as lights_off -> { lamp = 0; send "off" to hall/motion } }
    //   on door -> { if lamp == 1 { cancel lights_off }; cancel lights_off }
    //   every 1m -> after 2s as lights_off -> lamp = 0
    Graph graph;
    graph.name = "state";
    Node hall;
    hall.name = "hall";
    hall.port = 8801;
    Pin lamp_pin;
    lamp_pin.name = "lamp";
    lamp_pin.chip = "gpiochip0";
    lamp_pin.line = "17";
    hall.pins.push_back(lamp_pin);
    hall.vars = {{"visits", "0", {}}, {"mode", "auto", {}}};
    hall.delays = {{"lights_off", {}}};
    hall.edges.push_back(Edge{0, "motion"});
    Op write;
    write.kind = Op::Kind::write;
    write.pin = 0;
    Op send;
    send.kind = Op::Kind::send;
    send.edge = 0;
    Op set;
    set.kind = Op::Kind::set;
    set.var = 0;
    Op after;
    after.kind = Op::Kind::after;
    after.delay = std::chrono::minutes(5);
    after.named = 0;
    after.body = {write, send};
    Op cancel;
    cancel.kind = Op::Kind::cancel;
    cancel.named = 0;
    Op branch;
    branch.kind = Op::Kind::if_;
    Expr lamp;
    lamp.kind = Expr::Kind::pin;
    lamp.pin = 0;
    Expr visits;
    visits.kind = Expr::Kind::var;
    visits.var = 0;
    Expr cond;
    cond.kind = Expr::Kind::binary;
    cond.op = dsl::BinOp::lt;
    cond.args = {lamp, visits};
    branch.branches.push_back(Branch{cond, {cancel}, "if", {}});

    Source motion;
    motion.kind = Source::Kind::channel;
    motion.name = "motion";
    Rule on_motion;
    on_motion.label = "on motion";
    on_motion.body = {set, after, after};  // started twice: drawn once
    motion.rules.push_back(on_motion);
    Source door;
    door.kind = Source::Kind::channel;
    door.name = "door";
    Rule on_door;
    on_door.label = "on door";
    on_door.body = {branch, cancel};
    door.rules.push_back(on_door);
    Source timer;
    timer.kind = Source::Kind::timer;
    timer.name = "every 1m";
    Op soon = after;
    soon.delay = std::chrono::seconds(2);
    soon.body = {write};
    timer.rules.push_back(Rule{std::nullopt, std::nullopt, {soon}, {}, "every 1m", 2});
    hall.sources = {motion, door, timer};
    graph.nodes = {hall};

    const std::string dot = to_dot(graph);
    INFO(dot);
    CHECK(dot.find("label=\"hall\\n:8801\\nvar visits = 0\\nvar mode = \\\"auto\\\"\"") != std::string::npos);
    CHECK(dot.find("\"hall.delay.lights_off\" [label=\"lights_off\\n(named delay)\", shape=hexagon") != std::string::npos);
    CHECK(count(dot, "\"hall.rule.1\" -> \"hall.delay.lights_off\" [label=\"after 5m\"") == 1);
    CHECK(dot.find("\"hall.rule.2\" -> \"hall.delay.lights_off\" [label=\"cancel (if lamp < visits)\", color=\"#6a1b9a\", "
                   "fontcolor=\"#6a1b9a\", style=dashed]") != std::string::npos);
    CHECK(dot.find("\"hall.rule.2\" -> \"hall.delay.lights_off\" [label=\"cancel\", color=\"#6a1b9a\", "
                   "fontcolor=\"#6a1b9a\", style=dashed]") != std::string::npos);
    CHECK(dot.find("\"hall.timer.1\" -> \"hall.delay.lights_off\" [label=\"after 2s\"") != std::string::npos);
    CHECK(count(dot, "[label=\"send (after 5m as lights_off)\"") == 2);  // each send op the rule runs
    CHECK(count(dot, "-> \"hall.delay.lights_off\"") == 4);

    const std::string mermaid = to_mermaid(graph);
    INFO(mermaid);
    CHECK(mermaid.find("classDef delay fill:#f3e5f5,stroke:#6a1b9a") != std::string::npos);
    CHECK(mermaid.find("hall_delay_lights_off{{\"lights_off<br/>(named delay)\"}}:::delay") != std::string::npos);
    CHECK(mermaid.find("hall_rule_1 -->|\"after 5m\"| hall_delay_lights_off") != std::string::npos);
    CHECK(mermaid.find("hall_rule_2 -.->|\"cancel\"| hall_delay_lights_off") != std::string::npos);
    CHECK(mermaid.find("hall_timer_1 -->|\"after 2s\"| hall_delay_lights_off") != std::string::npos);
    CHECK(mermaid.find("subgraph hall [\"hall<br/>:8801<br/>var visits = 0<br/>var mode = #quot;auto#quot;\"]") !=
          std::string::npos);
}
