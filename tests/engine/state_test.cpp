// Node variables and named delays in the interpreter alone, on a clock the test moves
// (no network). The graphs are built by hand on a compiled skeleton: what the checker
// resolves (dsl::Ref) is what lowering turns into these ops.
#include <algorithm>
#include <map>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "interpreter.hpp"
#include "manual_clock.hpp"
#include "meshrun/drivers/sim.hpp"
#include "meshrun/dsl/frontend.hpp"
#include "wire.hpp"

using namespace meshrun;
using engine::Expr;
using engine::Micros;
using engine::Op;

namespace {

constexpr Micros second{1'000'000};

Expr text(std::string t) {
    Expr e;
    e.text = std::move(t);
    return e;
}

Expr var(int index) {
    Expr e;
    e.kind = Expr::Kind::var;
    e.var = index;
    return e;
}

Expr value() {
    Expr e;
    e.kind = Expr::Kind::value;
    return e;
}

Expr plus(Expr a, Expr b) {
    Expr e;
    e.kind = Expr::Kind::binary;
    e.op = dsl::BinOp::add;
    e.args = {std::move(a), std::move(b)};
    return e;
}

Expr interpolation(std::vector<Expr> parts) {
    Expr e;
    e.kind = Expr::Kind::interpolation;
    e.args = std::move(parts);
    return e;
}

Op write(int pin, int level) {
    Op o;
    o.kind = Op::Kind::write;
    o.pin = pin;
    o.expr = text(std::to_string(level));
    return o;
}

Op set(int v, Expr e) {
    Op o;
    o.kind = Op::Kind::set;
    o.var = v;
    o.expr = std::move(e);
    return o;
}

Op log(Expr e) {
    Op o;
    o.kind = Op::Kind::log;
    o.expr = std::move(e);
    return o;
}

Op ack(Expr e) {
    Op o;
    o.kind = Op::Kind::ack;
    o.expr = std::move(e);
    return o;
}

Op after(Micros delay, int named, std::vector<Op> body) {
    Op o;
    o.kind = Op::Kind::after;
    o.delay = delay;
    o.named = named;
    o.body = std::move(body);
    return o;
}

Op cancel(int named) {
    Op o;
    o.kind = Op::Kind::cancel;
    o.named = named;
    return o;
}

// The motion light: `var visits = 0`, `var mode = "auto"`, and
//     on motion -> { lamp = 1; visits = visits + 1; after 1s as lights_off -> { lamp = 0; log "off {value}" } }
//     on long   -> after 10s as lights_off -> log "long {value}"
//     on stop   -> { cancel lights_off; ack "stopped" }
//     on count  -> ack "{visits}"
engine::Graph motion_light() {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto compiled = dsl::compile_text("state.mesh", R"(
mesh t
node hall at localhost:9000 {
    pin lamp = out gpiochip0 17
    on motion -> ack "m"
    on long -> ack "l"
    on stop -> ack "s"
    on count -> ack "c"
}
)", sm, diags);
    REQUIRE_FALSE(diags.has_errors());
    engine::Graph g = engine::lower(compiled.program);
    engine::Node& hall = g.nodes.at(0);
    hall.vars = {{"visits", "0", {}}, {"mode", "auto", {}}};
    hall.delays = {{"lights_off", {}}};
    auto body = [&](std::string_view channel) -> std::vector<Op>& {
        return const_cast<engine::Source*>(hall.channel(channel))->rules.at(0).body;
    };
    body("motion") = {write(0, 1), set(0, plus(var(0), text("1"))),
                      after(second, 0, {write(0, 0), log(interpolation({text("off "), value()}))})};
    body("long") = {after(10 * second, 0, {log(interpolation({text("long "), value()}))})};
    body("stop") = {cancel(0), ack(text("stopped"))};
    body("count") = {ack(interpolation({var(0)}))};
    return g;
}

struct Lines final : engine::Logger {
    std::vector<std::string> lines;
    void line(const std::string&, std::string_view text) override { lines.emplace_back(text); }
    std::size_t count(std::string_view prefix) const {
        return static_cast<std::size_t>(
            std::count_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.rfind(prefix, 0) == 0; }));
    }
};

struct Host final : engine::NodeHost {
    void send(int, std::string, std::function<void(engine::Delivery)> done) override { done({"ok", std::nullopt}); }
    bool full() const override { return false; }
    bool stopping() const override { return false; }
};

struct Events final : engine::Observer {
    std::vector<std::string> writes, sets;
    void pin_written(int, int pin, int level, const engine::Rule*, Micros at) override {
        writes.push_back(fmt::format("{}={} at {}", pin, level, at.count()));
    }
    void variable_set(int node, int v, std::string_view val, const engine::Rule* by, Micros at) override {
        sets.push_back(fmt::format("{}.{}={} by {} at {}", node, v, val, by ? by->label : "-", at.count()));
    }
};

struct Setup {
    engine::Graph graph = motion_light();
    test::ManualClock clock;
    Lines log;
    Host host;
    Events events;
    std::vector<engine::Observer*> observers{&events};
    drivers::SimDriver pins;
    engine::Interpreter hall{graph, 0, clock, log, host, observers, 1};
    Setup() { hall.start_pins(pins, [](std::function<void()> fn) { fn(); }); }
    std::optional<std::string> deliver(std::string_view channel, std::string payload) {
        engine::Message m;
        m.channel = static_cast<int>(graph.nodes[0].channel(channel) - graph.nodes[0].sources.data());
        m.payload = std::move(payload);
        return hall.deliver(m, [](std::string) { FAIL("a reply came later"); });
    }
    int lamp() const { return pins.level("gpiochip0", "17"); }
};

}  // namespace

TEST_CASE("state: a named delay restarted 1,000 times fires once, at the last restart + D, on few wake-ups",
          "[engine][state]") {
    Setup s;
    std::size_t most_queued = 0;
    // A restart every 10 ms for 10 s: the delay (1 s) comes due many times over, always restarted first.
    for (int i = 0; i < 1000; ++i) {
        s.clock.advance_to(Micros(i * 10'000));
        CHECK(s.deliver("motion", std::to_string(i)) == "n/a");
        most_queued = std::max({most_queued, s.clock.due.size(), s.hall.named_wakeups()});
    }
    CHECK(most_queued <= 2);
    const Micros last = Micros(999 * 10'000);
    s.clock.advance_to(last + second - Micros(1));
    CHECK(s.lamp() == 1);
    CHECK(s.log.count("off") == 0);
    s.clock.advance_to(last + 10 * second);
    CHECK(s.lamp() == 0);
    CHECK(s.log.count("off") == 1);
    CHECK(s.log.lines.back() == "off 999");  // the last restart's value
    CHECK(s.events.writes.back() == fmt::format("0=0 at {}", (last + second).count()));
    CHECK(std::count_if(s.events.writes.begin(), s.events.writes.end(),
                        [](const std::string& w) { return w.rfind("0=0", 0) == 0; }) == 1);
    CHECK(s.clock.due.empty());
    CHECK(s.hall.named_wakeups() == 0);
}

TEST_CASE("state: a restart runs the new body with the new value and tick; an earlier due time is kept",
          "[engine][state]") {
    Setup s;
    s.deliver("long", "a");  // lights_off due at 10 s, running `log "long a"`
    s.clock.advance_to(2 * second);
    s.deliver("motion", "b");  // restarted: due at 3 s, running the motion's body
    CHECK(s.hall.named_wakeups() == 2);  // the one at 10 s, and one at 3 s
    s.clock.advance_to(3 * second);
    CHECK(s.log.lines == std::vector<std::string>{"off b"});
    s.clock.advance_to(20 * second);  // the wake-up at 10 s finds nothing pending
    CHECK(s.log.lines == std::vector<std::string>{"off b"});
    CHECK(s.hall.named_wakeups() == 0);

    s.deliver("motion", "c");  // due at 21 s
    s.clock.advance_to(20 * second + second / 2);
    s.deliver("long", "d");  // restarted later: 30.5 s; the wake-up at 21 s moves on to it
    s.clock.advance_to(29 * second);
    CHECK(s.log.lines == std::vector<std::string>{"off b"});
    CHECK(s.hall.named_wakeups() == 1);
    s.clock.advance_to(31 * second);
    CHECK(s.log.lines == std::vector<std::string>{"off b", "long d"});
}

TEST_CASE("state: a cancelled delay never fires; cancel of a delay not pending does nothing", "[engine][state]") {
    Setup s;
    CHECK(s.deliver("stop", "x") == "stopped");  // nothing pending: nothing happens, and the rule goes on
    s.deliver("motion", "1");
    s.clock.advance_to(second / 2);
    CHECK(s.deliver("stop", "x") == "stopped");
    s.clock.advance_to(60 * second);
    CHECK(s.lamp() == 1);
    CHECK(s.log.count("off") == 0);
    CHECK(s.clock.due.empty());  // its wake-up came, and did nothing
    CHECK(s.deliver("stop", "x") == "stopped");

    // Scheduled again after a cancel: it fires, once, from the new start.
    s.deliver("motion", "2");
    s.clock.advance_to(61 * second);
    CHECK(s.lamp() == 0);
    CHECK(s.log.lines == std::vector<std::string>{"off 2"});
    s.clock.advance_to(120 * second);
    CHECK(s.log.count("off") == 1);
}

TEST_CASE("state: variables start at their literal and keep their value across firings", "[engine][state]") {
    Setup s;
    CHECK(s.deliver("count", "") == "0");
    CHECK(s.hall.variable(1) == "auto");
    for (int i = 0; i < 3; ++i) s.deliver("motion", "1");
    CHECK(s.deliver("count", "") == "3");
    CHECK(s.hall.variable(0) == "3");
    CHECK(s.events.sets == std::vector<std::string>{"0.0=1 by on motion at 0", "0.0=2 by on motion at 0",
                                                    "0.0=3 by on motion at 0"});

    // Another interpreter of the same graph (the node started again) starts at the literals.
    Setup again;
    CHECK(again.deliver("count", "") == "0");
}

TEST_CASE("state: the status page shows variables and the pending named delays", "[engine][state]") {
    Setup s;
    auto status = s.hall.status();
    CHECK(status["variables"] == nlohmann::json{{"visits", "0"}, {"mode", "auto"}});
    CHECK(status["delays"] == nlohmann::json::object());
    s.deliver("motion", "1");
    s.clock.advance_to(Micros(250'000));
    status = s.hall.status();
    CHECK(status["variables"]["visits"] == "1");
    CHECK(status["delays"] == nlohmann::json{{"lights_off", 750}});
    s.clock.advance_to(2 * second);
    CHECK(s.hall.status()["delays"] == nlohmann::json::object());
}

TEST_CASE("state: named delays do not count against the node's unnamed delays", "[engine][state]") {
    Setup s;
    for (int i = 0; i < 20'000; ++i) s.deliver("motion", "1");  // past max_delays (10,000) were they counted
    CHECK(s.log.count("error") == 0);
    CHECK(s.hall.named_wakeups() == 1);
    s.clock.advance_to(2 * second);
    CHECK(s.log.lines == std::vector<std::string>{"off 1"});
}
