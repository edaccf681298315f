// The arduino fleet end to end, in process: real websockets on loopback,
// simulated pins, the steady clock. What the original asyncio fleet did.
#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "meshrun/drivers/sim.hpp"
#include "meshrun/dsl/frontend.hpp"
#include "meshrun/engine/runtime.hpp"
#include "build_paths.hpp"

using namespace meshrun;

namespace {

std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

engine::Graph arduino() {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto compiled = dsl::compile_file(build_paths::source("topologies/arduino.mesh").string(), sm, diags);
    REQUIRE_FALSE(diags.has_errors());
    return engine::lower(compiled.program);
}

// Watches the fleet's log: every ack iopin receives must match the bit it sent,
// and the buzzer's horn must follow the bit.
struct Observer : engine::Logger {
    drivers::SimDriver& buzzer_pins;
    std::function<void()> on_done;
    std::mutex mutex;
    std::vector<std::string> lines;
    std::string last_bit;
    int bits = 0, matched = 0, ticks_acked = 0;

    explicit Observer(drivers::SimDriver& pins) : buzzer_pins(pins) {}

    void line(const std::string& node, std::string_view text) override {
        std::lock_guard lock(mutex);
        lines.push_back(node + ": " + std::string(text));
        const std::string t(text);
        if (node == "iopin" && t.rfind("> sending payload: ", 0) == 0) {
            last_bit = t.substr(19, 1);
            ++bits;
        } else if (node == "iopin" && t.rfind("< ", 0) == 0) {
            const std::string expected = last_bit == "1" ? "< buzz buzz buzz" : "< ...";
            if (t == expected && buzzer_pins.level("gpiochip0", "18") == std::stoi(last_bit)) ++matched;
        } else if (node == "clock" && t == "< acknowledged") {
            if (++ticks_acked == 5 && on_done) on_done();
        }
    }
};

void run_with_watchdog(engine::Fleet& fleet, std::chrono::seconds limit, std::atomic<bool>& finished) {
    std::thread watchdog([&] {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (!finished && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        fleet.post([&fleet] { fleet.stop(); });
    });
    fleet.run();
    finished = true;
    watchdog.join();
}

}  // namespace

TEST_CASE("the arduino fleet runs: 5 ticks, 15 bits, every ack right, the horn following the bits", "[engine][e2e]") {
    const engine::Graph graph = arduino();
    drivers::SimDriver pins;
    Observer observer(pins);
    engine::FleetOptions options;
    options.nodes = {0, 1, 2};
    options.ports = {0, free_port(), free_port()};
    options.seed = 42;
    engine::Fleet fleet(graph, pins, observer, options);
    std::atomic<bool> finished{false};
    observer.on_done = [&] { fleet.stop(); };
    fleet.start();
    run_with_watchdog(fleet, std::chrono::seconds(20), finished);

    std::lock_guard lock(observer.mutex);
    std::string log;
    for (const auto& l : observer.lines) log += l + "\n";
    INFO(log);
    CHECK(observer.ticks_acked == 5);
    CHECK(observer.bits == 15);
    CHECK(observer.matched == 15);
}

TEST_CASE("a peer that is not up yet is retried, and nothing is lost when it comes up", "[engine][e2e]") {
    const engine::Graph graph = arduino();
    drivers::SimDriver pins_a, pins_b;
    Observer observer(pins_b);
    const std::vector<std::uint16_t> ports = {0, free_port(), free_port()};

    engine::FleetOptions a;
    a.nodes = {0, 1};  // clock and iopin; the buzzer comes later
    a.ports = ports;
    a.seed = 7;
    engine::Fleet first(graph, pins_a, observer, a);
    std::atomic<bool> finished{false};
    observer.on_done = [&] { first.stop(); };
    first.start();

    engine::FleetOptions b;
    b.nodes = {2};
    b.ports = ports;
    auto buzzer_log = engine::make_text_logger({"buzzer"}, false);
    engine::Fleet second(graph, pins_b, *buzzer_log, b);
    std::atomic<bool> second_done{false};
    std::thread late([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(2500));
        second.start();
        second.run();
        second_done = true;
    });
    run_with_watchdog(first, std::chrono::seconds(25), finished);
    second.post([&second] { second.stop(); });
    late.join();

    std::lock_guard lock(observer.mutex);
    std::string log;
    for (const auto& l : observer.lines) log += l + "\n";
    INFO(log);
    CHECK(log.find("retrying") != std::string::npos);
    CHECK(observer.ticks_acked == 5);
    CHECK(observer.bits == 15);
    CHECK(observer.matched == 15);
}

namespace {

// A board whose output lines refuse every write: a chip gone while running.
struct BrokenLine : drivers::Line {
    int read() override { return 0; }
    void write(int) override { throw std::runtime_error("write to gpiochip0 line 18 failed: No such device"); }
};
struct BrokenBoard : drivers::PinDriver {
    std::unique_ptr<drivers::Line> request(const drivers::LineConfig&, drivers::ChangeHandler) override {
        return std::make_unique<BrokenLine>();
    }
};

struct Lines : engine::Logger {
    std::vector<std::string> lines;
    void line(const std::string& node, std::string_view text) override { lines.push_back(node + ": " + std::string(text)); }
};

}  // namespace

TEST_CASE("a pin write that fails answers the firing with the error, logs it, and the node goes on", "[engine][e2e]") {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto program = dsl::parse_text("broken.mesh", R"(
node board at localhost:8000 {
    pin horn = out gpiochip0 18
    on now -> { horn = 1; ack "written" }
    on later -> { ack "taken"; horn = 1 }
    on sends -> { send "x" to board/echo; horn = 1; ack "sent" }
    on echo -> ack "echo"
}
)", sm, diags);
    dsl::check(program, diags);
    REQUIRE_FALSE(diags.has_errors());
    const engine::Graph graph = engine::lower(program);
    BrokenBoard board;
    Lines log;
    engine::FleetOptions options;
    options.nodes = {0};
    options.any_port = true;
    engine::Fleet fleet(graph, board, log, options);
    fleet.start();
    std::map<std::string, std::string> replies;  // per channel
    for (const char* channel : {"now", "later", "sends", "echo"})
        fleet.inject(0, channel, "1", [&replies, channel](std::string reply) { replies[channel] = std::move(reply); });
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (replies.size() < 4 && std::chrono::steady_clock::now() < give_up) fleet.run_one_for(std::chrono::milliseconds(10));
    fleet.poll();

    std::string all;
    for (const auto& l : log.lines) all += l + "\n";
    INFO(all);
    REQUIRE(replies.size() == 4);
    CHECK(replies["now"] == "error: write to gpiochip0 line 18 failed: No such device");
    CHECK(replies["later"] == "taken");
    CHECK(replies["sends"] == "error: write to gpiochip0 line 18 failed: No such device");
    CHECK(replies["echo"] == "echo");
    CHECK(all.find("board: error: `on now` failed: write to gpiochip0 line 18 failed") != std::string::npos);
    CHECK(all.find("board: error: `on later` failed") != std::string::npos);
    CHECK(all.find("board: error: `on sends` failed") != std::string::npos);
}
