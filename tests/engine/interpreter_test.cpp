// The interpreter alone: no network, no Asio. Sends go to a host the test answers
// by hand, time is a clock the test moves, pins are the simulated driver's.
#include <map>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "interpreter.hpp"
#include "manual_clock.hpp"
#include "meshrun/drivers/sim.hpp"
#include "meshrun/dsl/frontend.hpp"
#include "wire.hpp"

using namespace meshrun;
using engine::Micros;

namespace {

engine::Graph compile(const std::string& text) {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto compiled = dsl::compile_text("test.mesh", text, sm, diags);
    REQUIRE_FALSE(diags.has_errors());
    return engine::lower(compiled.program);
}

const char* const node_a = R"(
mesh t
node a at localhost:9000 {
    pin horn = out gpiochip0 18
    pin button = in gpiochip0 4 debounce 50ms
    on quick -> { horn = 1; ack "quick {value}" }
    on sends -> { send "x{value}" to b/in; ack "sent {value}" }
    on early -> { ack "early"; send "y" to b/in; horn = 1 }
    on rounds -> { repeat 3 { send "r" to b/in }; ack "done" }
    on later -> { after 2s -> horn = 0; ack "scheduled" }
    on button 1 -> send "pressed" to b/in
    every 1s -> send "tick" to b/in
}
node b at localhost:9001 { on in -> ack "ok" }
)";

using test::ManualClock;

struct Lines final : engine::Logger {
    std::vector<std::string> lines;
    void line(const std::string& node, std::string_view text) override { lines.push_back(node + ": " + std::string(text)); }
    bool has(std::string_view text) const {
        for (const auto& l : lines)
            if (l.find(text) != std::string::npos) return true;
        return false;
    }
};

// The sends, kept for the test to answer; or answered at once with `now`.
struct Host final : engine::NodeHost {
    struct Sent {
        int edge;
        std::string payload;
        std::function<void(engine::Delivery)> done;
    };
    std::vector<Sent> sent;
    std::optional<engine::Delivery> now;
    bool is_full = false;
    void send(int edge, std::string payload, std::function<void(engine::Delivery)> done) override {
        if (now) return done(*now);
        sent.push_back({edge, std::move(payload), std::move(done)});
    }
    bool full() const override { return is_full; }
    bool stopping() const override { return false; }
    void answer(std::size_t i, std::string ack) {
        auto done = std::move(sent.at(i).done);
        done(engine::Delivery{std::move(ack), std::nullopt});
    }
};

struct Events final : engine::Observer {
    std::vector<std::string> seen;
    void message_in(int node, int source, std::string_view payload) override {
        seen.push_back(fmt::format("in {} {} {}", node, source, payload));
    }
    void reply_out(int node, int source, std::string_view reply) override {
        seen.push_back(fmt::format("out {} {} {}", node, source, reply));
    }
    void rule_fired(int, const engine::Rule& rule) override { seen.push_back("fired " + rule.label); }
    void pin_written(int, int pin, int level, const engine::Rule*, Micros at) override {
        seen.push_back(fmt::format("write {} {} at {}", pin, level, at.count()));
    }
    void input_edge(int, int pin, int level, Micros at) override {
        seen.push_back(fmt::format("edge {} {} at {}", pin, level, at.count()));
    }
};

struct Setup {
    engine::Graph graph = compile(node_a);
    ManualClock clock;
    Lines log;
    Host host;
    Events events;
    std::vector<engine::Observer*> observers{&events};
    drivers::SimDriver pins;
    engine::Interpreter a{graph, 0, clock, log, host, observers, 1};
    Setup() {
        a.start_pins(pins, [](std::function<void()> fn) { fn(); });
    }
    int channel(std::string_view name) const {
        return static_cast<int>(graph.nodes[0].channel(name) - graph.nodes[0].sources.data());
    }
    // Delivers `value` on `name`: the reply at once, or the one that comes later into `later`.
    std::optional<std::string> deliver(std::string_view name, std::string value, std::optional<std::string>* later = nullptr) {
        engine::Message m;
        m.channel = channel(name);
        m.payload = std::move(value);
        return a.deliver(m, [later](std::string reply) {
            REQUIRE(later);
            *later = std::move(reply);
        });
    }
};

}  // namespace

TEST_CASE("interpreter: a rule that cannot wait replies before deliver returns", "[engine][interpreter]") {
    Setup s;
    CHECK(s.deliver("quick", "7") == "quick 7");
    CHECK(s.pins.level("gpiochip0", "18") == 1);
    CHECK(s.deliver("quick", "8") == "quick 8");  // the reused firing starts clean
    CHECK(s.a.received(s.channel("quick")) == 2);
    CHECK(s.events.seen == std::vector<std::string>{"in 0 0 7", "fired on quick", "write 0 1 at 0", "out 0 0 quick 7",
                                                    "in 0 0 8", "fired on quick", "write 0 1 at 0", "out 0 0 quick 8"});
}

TEST_CASE("interpreter: a firing waits for its send's delivery and goes on from there", "[engine][interpreter]") {
    Setup s;
    std::optional<std::string> later;
    CHECK_FALSE(s.deliver("sends", "1", &later));
    REQUIRE(s.host.sent.size() == 1);
    CHECK(s.host.sent[0].payload == "x1");
    CHECK_FALSE(later);
    s.host.answer(0, "ok");
    CHECK(later == "sent 1");
    CHECK(s.log.has("a: > sending payload: x1 to b/in"));
    CHECK(s.log.has("a: < ok"));
}

TEST_CASE("interpreter: an ack before a send replies at once, and the firing goes on", "[engine][interpreter]") {
    Setup s;
    CHECK(s.deliver("early", "1") == "early");
    REQUIRE(s.host.sent.size() == 1);
    CHECK(s.pins.level("gpiochip0", "18") == 0);
    s.host.answer(0, "ok");  // no second reply: `later` would fail the test
    CHECK(s.pins.level("gpiochip0", "18") == 1);
}

TEST_CASE("interpreter: repeated sends go one at a time, each after the last one's delivery", "[engine][interpreter]") {
    Setup s;
    std::optional<std::string> later;
    CHECK_FALSE(s.deliver("rounds", "1", &later));
    for (std::size_t i = 0; i < 3; ++i) {
        REQUIRE(s.host.sent.size() == i + 1);
        CHECK_FALSE(later);
        s.host.answer(i, "ok");
    }
    CHECK(s.host.sent.size() == 3);
    CHECK(later == "done");
}

TEST_CASE("interpreter: a refused send is the firing's reply", "[engine][interpreter]") {
    Setup s;
    std::optional<std::string> later;
    CHECK_FALSE(s.deliver("sends", "1", &later));
    auto done = std::move(s.host.sent.at(0).done);
    done(engine::Delivery{{}, std::string("the peer refused it")});
    CHECK(later == "error: the message to b/in was dropped: the peer refused it");
}

TEST_CASE("interpreter: deliveries that come back at once run on in a loop, not deeper on the stack", "[engine][interpreter]") {
    engine::Graph graph = compile(R"(
mesh t
node a at localhost:9000 { on go -> { repeat 100000 { send "r" to b/in }; ack "done" } }
node b at localhost:9001 { on in -> ack "ok" }
)");
    ManualClock clock;
    Lines log;
    Host host;
    host.now = engine::Delivery{"ok", std::nullopt};
    std::vector<engine::Observer*> none;
    engine::Interpreter a(graph, 0, clock, log, host, none, 1);
    engine::Message m;
    m.channel = 0;
    m.payload = "1";
    CHECK(a.deliver(m, [](std::string) { FAIL("the reply came later"); }) == "done");
    CHECK(log.lines.size() == 200'000);  // a sending line and an ack line each
}

TEST_CASE("interpreter: `after` and debounce run on the clock", "[engine][interpreter]") {
    Setup s;
    CHECK(s.deliver("later", "1") == "scheduled");
    s.deliver("quick", "1");
    s.clock.advance_to(Micros(1'999'999));
    CHECK(s.pins.level("gpiochip0", "18") == 1);
    s.clock.advance_to(Micros(2'000'000));
    CHECK(s.pins.level("gpiochip0", "18") == 0);

    // A bounce shorter than the debounce is not reported; a level that holds is, once, at its end.
    s.events.seen.clear();
    s.a.on_input(1, 1, Micros(2'100'000));
    s.a.on_input(1, 0, Micros(2'110'000));
    s.a.on_input(1, 1, Micros(2'120'000));
    s.clock.advance_to(Micros(2'169'999));
    CHECK(s.events.seen.empty());
    s.clock.advance_to(Micros(2'170'000));
    CHECK(s.events.seen == std::vector<std::string>{"edge 1 1 at 2170000", "fired on button 1"});
    REQUIRE(s.host.sent.size() == 1);  // the press (the timer was not started)
    CHECK(s.host.sent[0].payload == "pressed");
}

TEST_CASE("interpreter: while a link is full, firings that could send are skipped, counted and summed up", "[engine][interpreter]") {
    Setup s;
    s.a.start_timers();
    s.host.is_full = true;
    s.clock.advance_to(Micros(3'000'000));
    CHECK(s.host.sent.empty());
    CHECK(s.log.has("a: skipping firings of `every 1s` while a queue is full"));
    CHECK(s.deliver("quick", "1") == "quick 1");  // a rule that cannot send still runs
    s.host.is_full = false;
    s.a.resumed();
    CHECK(s.log.has("a: sending again: 3 firings of timers, inputs and delays were skipped while a queue was full"));
    s.clock.advance_to(Micros(4'000'000));
    CHECK(s.host.sent.size() == 1);
}

TEST_CASE("wire: a text frame is its channel's message; anything else is refused with its close code", "[engine][wire]") {
    engine::Message m;
    CHECK_FALSE(engine::wire::decode(true, "hello", m));
    CHECK(m.payload == "hello");
    const auto binary = engine::wire::decode(false, "\x01\x02", m);
    REQUIRE(binary);
    CHECK(binary->code == 1003);
    CHECK(binary->reason == "text frames only");
    CHECK_FALSE(engine::wire::decode_reply(true));
    REQUIRE(engine::wire::decode_reply(false));
    CHECK(engine::wire::decode_reply(false)->code == 1003);
    CHECK(engine::wire::encode("buzz") == "buzz");
}
