// The fleet on virtual time: real websockets on loopback, simulated pins, and a
// clock only the test moves. What the observers are told; links backing off and
// giving up on an acknowledgement, each on the fleet's clock.
#include <map>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "manual_clock.hpp"
#include "build_paths.hpp"
#include "meshrun/drivers/sim.hpp"
#include "meshrun/dsl/frontend.hpp"
#include "meshrun/engine/runtime.hpp"

using namespace meshrun;
using engine::Micros;
using test::ManualClock;

namespace {

engine::Graph compile(const std::string& file, const std::string& text) {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto compiled = text.empty() ? dsl::compile_file(file, sm, diags) : dsl::compile_text(file, text, sm, diags);
    REQUIRE_FALSE(diags.has_errors());
    return engine::lower(compiled.program);
}

struct Quiet final : engine::Logger {
    std::vector<std::string> lines;
    void line(const std::string& node, std::string_view text) override { lines.push_back(node + ": " + std::string(text)); }
    std::string all() const {
        std::string out;
        for (const auto& l : lines) out += l + "\n";
        return out;
    }
};

// Every event, as a line, with the virtual time it came at.
struct Record final : engine::Observer {
    const ManualClock& clock;
    std::vector<std::string> events;
    std::map<std::string, int> counts;  // per event kind and subject
    explicit Record(const ManualClock& c) : clock(c) {}
    void add(std::string key, std::string detail = {}) {
        ++counts[key];
        events.push_back(fmt::format("{} {}{}", clock.t.count(), key, detail.empty() ? "" : " " + detail));
    }
    void node_started(int node, Micros) override { add(fmt::format("started {}", node)); }
    void message_in(int node, int source, std::string_view) override { add(fmt::format("in {}.{}", node, source)); }
    void reply_out(int node, int source, std::string_view) override { add(fmt::format("out {}.{}", node, source)); }
    void rule_fired(int node, const engine::Rule& r) override { add(fmt::format("fired {} {}", node, r.label)); }
    void pin_written(int node, int pin, int, const engine::Rule*, Micros) override { add(fmt::format("write {}.{}", node, pin)); }
    void message_sent(int node, int edge) override { add(fmt::format("sent {}.{}", node, edge)); }
    void acked(int node, int edge, Micros) override { add(fmt::format("acked {}.{}", node, edge)); }
    void link_state(int node, int edge, engine::LinkState s, std::string_view why) override {
        add(fmt::format("link {}.{} {}", node, edge, engine::to_string(s)), std::string(why));
    }
    void connection_opened(int node) override { add(fmt::format("opened {}", node)); }
    // The virtual times at which a link entered `state`.
    std::vector<Micros> times(const std::string& link, engine::LinkState state) const {
        std::vector<Micros> out;
        const std::string key = fmt::format(" link {} {}", link, engine::to_string(state));
        for (const auto& e : events) {
            const auto at = e.find(key);
            if (at != std::string::npos && (e.size() == at + key.size() || e[at + key.size()] == ' '))
                out.emplace_back(std::stoll(e.substr(0, at)));
        }
        return out;
    }
};

// Runs what is ready (real I/O on loopback) until nothing has happened for 30 ms of real time.
void drain(engine::Fleet& fleet) {
    auto quiet_since = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - quiet_since < std::chrono::milliseconds(30))
        if (fleet.poll() > 0 || fleet.run_one_for(std::chrono::milliseconds(2)) > 0) quiet_since = std::chrono::steady_clock::now();
}

// Moves the clock to `to`, one callback at a time, running what each makes ready.
void advance(engine::Fleet& fleet, ManualClock& clock, Micros to) {
    drain(fleet);
    while (!clock.due.empty() && clock.due.begin()->first <= to) {
        clock.step();
        drain(fleet);
    }
    clock.t = std::max(clock.t, to);
}

// A port nothing listens on (tcpmux, unused on loopback): a connection is refused at once.
constexpr std::uint16_t closed_port = 1;

}  // namespace

TEST_CASE("the arduino run tells its observers every message, firing, write and acknowledgement", "[engine][observer]") {
    const engine::Graph graph = compile(build_paths::source("topologies/arduino.mesh").string(), "");
    ManualClock clock;
    Record record(clock);
    Quiet log;
    std::vector<drivers::SimDriver> boards(3);
    engine::FleetOptions options;
    options.nodes = {0, 1, 2};
    options.any_port = true;
    options.clock = &clock;
    options.seed = 1;
    options.node_pins = {&boards[0], &boards[1], &boards[2]};
    options.observers = {&record};
    engine::Fleet fleet(graph, boards[0], log, options);
    fleet.start();
    advance(fleet, clock, Micros(5'000'000));
    INFO(log.all());
    const auto c = [&record](const std::string& key) {
        const auto it = record.counts.find(key);
        return it == record.counts.end() ? 0 : it->second;
    };
    // clock (0) -> iopin (1) datafeed, 5 ticks; iopin -> buzzer (2) signal, 3 bits a tick.
    CHECK(c("started 0") == 1);
    CHECK(c("started 1") == 1);
    CHECK(c("started 2") == 1);
    CHECK(c("fired 0 every 1s 5 times") == 5);
    CHECK(c("sent 0.0") == 5);
    CHECK(c("in 1.0") == 5);
    CHECK(c("fired 1 on datafeed") == 5);
    CHECK(c("write 1.0") == 15);
    CHECK(c("sent 1.0") == 15);
    CHECK(c("in 2.0") == 15);
    CHECK(c("fired 2 on signal 1") + c("fired 2 on signal") == 15);
    CHECK(c("write 2.0") == 15);
    CHECK(c("out 2.0") == 15);
    CHECK(c("acked 1.0") == 15);
    CHECK(c("out 1.0") == 5);
    CHECK(c("acked 0.0") == 5);
    CHECK(c("link 0.0 connecting") == 1);  // each link connects once and stays up
    CHECK(c("link 0.0 up") == 1);
    CHECK(c("link 1.0 up") == 1);
    CHECK(c("opened 1") == 1);
    CHECK(c("opened 2") == 1);
    // In order: a tick's message comes in before its firing, its bits' acks before its reply.
    const auto first = [&](const std::string& key) {
        for (std::size_t i = 0; i < record.events.size(); ++i)
            if (record.events[i].find(" " + key) != std::string::npos) return i;
        return record.events.size();
    };
    CHECK(first("in 1.0") < first("fired 1 on datafeed"));
    CHECK(first("acked 1.0") < first("out 1.0"));
    CHECK(first("out 1.0") < first("acked 0.0"));
}

TEST_CASE("a link to a node that is down backs off on the fleet's clock: 50 ms doubling to 2 s, with jitter", "[engine][link]") {
    const engine::Graph graph = compile("backoff.mesh", R"(
mesh backoff
node a at localhost:9000 { on go -> { send "x" to b/in; ack "sent" } }
node b at localhost:9001 { on in -> ack "ok" }
)");
    ManualClock clock;
    Record record(clock);
    Quiet log;
    drivers::SimDriver pins;
    engine::FleetOptions options;
    options.nodes = {0};
    options.any_port = true;
    options.ports = {0, closed_port};
    options.clock = &clock;
    options.observers = {&record};
    engine::Fleet fleet(graph, pins, log, options);
    fleet.start();
    std::optional<std::string> reply;
    fleet.inject(0, "go", "1", [&reply](std::string r) { reply = std::move(r); });
    const auto real_start = std::chrono::steady_clock::now();
    advance(fleet, clock, Micros(20'000'000));
    const auto real = std::chrono::steady_clock::now() - real_start;
    INFO(log.all());
    const auto tries = record.times("0.0", engine::LinkState::connecting);
    const auto pauses = record.times("0.0", engine::LinkState::retrying);
    REQUIRE(tries.size() >= 10);
    REQUIRE(pauses.size() >= tries.size() - 1);
    std::int64_t nominal = 50'000;
    for (std::size_t i = 0; i + 1 < tries.size(); ++i) {
        const auto gap = (tries[i + 1] - pauses[i]).count();  // the pause between a failure and the next try
        INFO("pause " << i << ": " << gap << " us, nominal " << nominal);
        CHECK(gap >= nominal / 2);
        CHECK(gap <= nominal);
        nominal = std::min<std::int64_t>(nominal * 2, 2'000'000);
    }
    // 20 s of retries on virtual time take well under 20 s of real time, and are logged once.
    CHECK(real < std::chrono::seconds(10));
    CHECK_FALSE(reply);
    int waiting_lines = 0;
    for (const auto& l : log.lines) waiting_lines += l.find("waiting for b/in") != std::string::npos;
    CHECK(waiting_lines == 1);
}

TEST_CASE("a request unacknowledged past its deadline ends the connection; it is sent again on the next", "[engine][link]") {
    // b's rule waits on c, which is down: b never acknowledges a's message.
    const engine::Graph graph = compile("deadline.mesh", R"(
mesh deadline
node a at localhost:9000 { on go -> { send "x" to b/in; ack "sent" } }
node b at localhost:9001 { on in -> { send "y" to c/in; ack "ok" } }
node c at localhost:9002 { on in -> ack "ok" }
)");
    ManualClock clock;
    Record record(clock);
    Quiet log;
    std::vector<drivers::SimDriver> boards(2);
    engine::FleetOptions options;
    options.nodes = {0, 1};
    options.any_port = true;
    options.ports = {0, 0, closed_port};
    options.clock = &clock;
    options.node_pins = {&boards[0], &boards[1]};
    options.observers = {&record};
    options.ack_timeout = std::chrono::seconds(10);
    engine::Fleet fleet(graph, boards[0], log, options);
    fleet.start();
    fleet.inject(0, "go", "1", [](std::string) {});
    advance(fleet, clock, Micros(25'000'000));
    INFO(log.all());
    const auto ups = record.times("0.0", engine::LinkState::up);
    const auto downs = record.times("0.0", engine::LinkState::down);
    REQUIRE(ups.size() >= 2);
    REQUIRE_FALSE(downs.empty());
    CHECK(downs[0] - ups[0] == std::chrono::seconds(10));
    CHECK(record.counts["in 1.0"] >= 2);  // sent again on the new connection
    CHECK(log.all().find("a: no acknowledgement from b/in within 10 s; reconnecting") != std::string::npos);
}
