// The simulated pin driver: levels, pulls, active_low, change handlers, requests, threads.
#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "meshrun/drivers/sim.hpp"

using namespace meshrun::drivers;

namespace {

LineConfig output(std::string line, int initial = 0, bool active_low = false, std::string chip = "gpiochip0") {
    return {std::move(chip), std::move(line), Direction::output, active_low, Bias::none, initial, "meshrun/test/out"};
}

LineConfig input(std::string line, Bias bias = Bias::none, bool active_low = false) {
    return {"gpiochip0", std::move(line), Direction::input, active_low, bias, 0, "meshrun/test/in"};
}

}  // namespace

TEST_CASE("an output starts at its initial level and counts its writes", "[drivers]") {
    SimDriver sim;
    auto low = sim.request(output("17", 0), {});
    auto high = sim.request(output("18", 1), {});
    CHECK(sim.level("gpiochip0", "17") == 0);
    CHECK(sim.level("gpiochip0", "18") == 1);
    CHECK(sim.writes("gpiochip0", "17") == 0);

    low->write(1);
    low->write(1);
    CHECK(low->read() == 1);
    CHECK(sim.level("gpiochip0", "17") == 1);
    CHECK(sim.writes("gpiochip0", "17") == 2);
    CHECK(sim.writes("gpiochip0", "18") == 0);
}

TEST_CASE("an input starts at its pull level unless it was driven before the request", "[drivers]") {
    SimDriver sim;
    CHECK(sim.request(input("1", Bias::pull_up), {})->read() == 1);
    CHECK(sim.request(input("2", Bias::pull_down), {})->read() == 0);
    CHECK(sim.request(input("3", Bias::none), {})->read() == 0);

    sim.drive("gpiochip0", "4", 1);
    CHECK(sim.request(input("4", Bias::pull_down), {})->read() == 1);
    sim.drive("gpiochip0", "5", 0);
    CHECK(sim.request(input("5", Bias::pull_up), {})->read() == 0);
}

TEST_CASE("active_low inverts the level of outputs and inputs", "[drivers]") {
    SimDriver sim;
    auto out = sim.request(output("17", 1, true), {});
    CHECK(out->read() == 1);
    CHECK(sim.level("gpiochip0", "17") == 1);
    out->write(0);
    CHECK(sim.level("gpiochip0", "17") == 0);

    std::vector<int> seen;
    auto in = sim.request(input("18", Bias::pull_up, true), [&](int level) { seen.push_back(level); });
    CHECK(in->read() == 0);  // pulled up: physically 1
    sim.drive("gpiochip0", "18", 0);
    CHECK(in->read() == 1);
    CHECK(sim.level("gpiochip0", "18") == 1);
    CHECK(seen == std::vector<int>{1});
}

TEST_CASE("the change handler is called once per change and not when the level stays", "[drivers]") {
    SimDriver sim;
    std::vector<int> seen;
    auto in = sim.request(input("17"), [&](int level) { seen.push_back(level); });
    sim.drive("gpiochip0", "17", 0);  // already 0
    sim.drive("gpiochip0", "17", 1);
    sim.drive("gpiochip0", "17", 1);
    sim.drive("gpiochip0", "17", 0);
    sim.drive("gpiochip0", "17", 1);
    CHECK(seen == std::vector<int>{1, 0, 1});
    CHECK(in->read() == 1);
}

TEST_CASE("a handler may call back into the driver", "[drivers]") {
    SimDriver sim;
    int level_seen = -1;
    auto in = sim.request(input("17"), [&](int) { level_seen = sim.level("gpiochip0", "17"); });
    sim.drive("gpiochip0", "17", 1);
    CHECK(level_seen == 1);
}

TEST_CASE("requesting a line twice names its holder", "[drivers]") {
    SimDriver sim;
    LineConfig config = output("17");
    config.consumer = "meshrun/buzzer/horn";
    auto held = sim.request(config, {});
    config.consumer = "meshrun/other/pin";
    CHECK_THROWS_MATCHES(sim.request(config, {}), std::runtime_error,
                         Catch::Message("line gpiochip0 17 is already requested by meshrun/buzzer/horn"));
    CHECK_THROWS_AS(sim.request(input("17"), {}), std::runtime_error);
    CHECK_NOTHROW(sim.request(output("17", 0, false, "gpiochip1"), {}));  // another chip, another line
}

TEST_CASE("misuse is refused: writing an input, driving an output, levels other than 0 and 1", "[drivers]") {
    SimDriver sim;
    auto in = sim.request(input("17"), {});
    auto out = sim.request(output("18"), {});
    CHECK_THROWS_AS(in->write(1), std::logic_error);
    CHECK_THROWS_AS(sim.drive("gpiochip0", "18", 1), std::logic_error);
    CHECK_THROWS_AS(out->write(2), std::invalid_argument);
    CHECK_THROWS_AS(sim.request(output("19", 5), {}), std::invalid_argument);
    CHECK_THROWS_AS(sim.level("gpiochip0", "19"), std::out_of_range);
    CHECK(sim.writes("gpiochip0", "18") == 0);
}

TEST_CASE("releasing a line frees it and puts it back to its pull level", "[drivers]") {
    SimDriver sim;
    auto in = sim.request(input("17", Bias::pull_down), {});
    sim.drive("gpiochip0", "17", 1);
    CHECK(in->read() == 1);
    in.reset();
    CHECK(sim.lines().empty());
    CHECK_THROWS_AS(sim.level("gpiochip0", "17"), std::out_of_range);

    auto again = sim.request(input("17", Bias::pull_down), {});
    CHECK(again->read() == 0);
    again.reset();

    auto out = sim.request(output("17", 1), {});
    out->write(0);
    out.reset();
    CHECK(sim.request(input("17", Bias::pull_up), {})->read() == 1);
}

TEST_CASE("lines lists every requested line with its logical level and consumer", "[drivers]") {
    SimDriver sim;
    sim.drive("gpiochip0", "9", 1);  // driven but not requested: not listed
    auto out = sim.request(output("17", 1, true), {});
    auto in = sim.request(input("18", Bias::pull_up), {});
    const auto lines = sim.lines();
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].chip == "gpiochip0");
    CHECK(lines[0].line == "17");
    CHECK(lines[0].direction == Direction::output);
    CHECK(lines[0].level == 1);
    CHECK(lines[0].consumer == "meshrun/test/out");
    CHECK(lines[1].line == "18");
    CHECK(lines[1].direction == Direction::input);
    CHECK(lines[1].level == 1);
    CHECK(lines[1].consumer == "meshrun/test/in");
}

TEST_CASE("a line outlives its driver", "[drivers]") {
    std::unique_ptr<Line> out;
    {
        SimDriver sim;
        out = sim.request(output("17"), {});
    }
    out->write(1);
    CHECK(out->read() == 1);
}

TEST_CASE("two threads driving one line see every change reported once", "[drivers]") {
    SimDriver sim;
    std::atomic<int> ups{0}, downs{0};
    auto in = sim.request(input("17"), [&](int level) { ++(level == 1 ? ups : downs); });
    constexpr int times = 10'000;
    std::thread up([&] { for (int i = 0; i < times; ++i) sim.drive("gpiochip0", "17", 1); });
    std::thread down([&] { for (int i = 0; i < times; ++i) sim.drive("gpiochip0", "17", 0); });
    up.join();
    down.join();
    // The level alternates from 0, so rises and falls differ by the final level.
    CHECK(ups >= 1);
    CHECK(ups - downs == in->read());
    CHECK(ups <= times);
}

TEST_CASE("two threads driving their own lines lose no change", "[drivers]") {
    SimDriver sim;
    std::atomic<int> changes{0};
    auto a = sim.request(input("1"), [&](int) { ++changes; });
    auto b = sim.request(input("2"), [&](int) { ++changes; });
    constexpr int times = 10'000;
    auto toggle = [&](const char* line) {
        for (int i = 0; i < times; ++i) sim.drive("gpiochip0", line, (i + 1) % 2);
    };
    std::thread first(toggle, "1");
    std::thread second(toggle, "2");
    first.join();
    second.join();
    CHECK(changes == 2 * times);
    CHECK(a->read() == 0);
    CHECK(b->read() == 0);
}
