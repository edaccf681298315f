// `meshrun test`: the scenarios written in a file, each on a fresh fleet of every
// node, on simulated pins, real websockets on free loopback ports, and virtual time.
// A tool over the engine, not part of it: only here is the simulated driver named.
#pragma once

#include <cstdint>
#include <map>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include "meshrun/dsl/ast.hpp"
#include "meshrun/dsl/source.hpp"
#include "meshrun/engine/graph.hpp"
#include "meshrun/engine/runtime.hpp"

namespace meshrun::tools {

using engine::Clock;
using engine::Graph;
using engine::Micros;
using engine::Branch;
using engine::Rule;

// Time that moves only when told to: `advance 5s` runs every timer due in those
// 5 s at once, in order, without sleeping.
class VirtualClock final : public Clock {
public:
    Micros now() const override { return now_; }
    void call_at(Micros when, std::function<void()> fn) override;
    // Whether a timer is due at or before `limit`.
    bool due(Micros limit) const { return !queue_.empty() && queue_.top().when <= limit; }
    // The earliest timer, if it is due at or before `limit`: moves the clock to it and runs it.
    bool step(Micros limit);
    void advance_to(Micros t) { now_ = std::max(now_, t); }

private:
    struct Due {
        Micros when;
        std::uint64_t order;  // timers due at one instant run in the order they were set
        std::function<void()> fn;
        bool operator>(const Due& o) const { return when != o.when ? when > o.when : order > o.order; }
    };
    Micros now_{0};
    std::uint64_t next_order_ = 0;
    std::priority_queue<Due, std::vector<Due>, std::greater<>> queue_;
};

// What one test may take before it fails, so that a scenario that would run for hours fails
// fast instead (`every 1us` and `advance 1h` is 3.6e9 timer firings).
struct Limits {
    double timeout_seconds = 60;          // wall time, from the fleet's start; 0: no limit
    std::uint64_t max_steps = 1'000'000;  // timer firings: timers, `after`, debounce; 0: no limit
};

struct TestOutcome {
    std::string title;
    bool passed = true;
    std::string failure;   // rendered like a compiler diagnostic, with the line and a caret
    double wall_ms = 0;
};

class ScenarioRunner {
public:
    ScenarioRunner(const dsl::Program& program, const Graph& graph, const dsl::SourceManager& sources,
                   std::uint64_t seed, Limits limits = {});
    TestOutcome run(const dsl::Test& test);
    // Rules no test made fire, as `node: label (file:line)`.
    std::vector<std::string> unfired_rules() const;
    // Branches of `if` no test ran, as `node: branch `else` (file:line) of `on door "locked"``:
    // in the rules that fired (a rule that never fired is listed as such) and in every action.
    // None when the file has no `if`: `has_branches` says whether it has.
    std::vector<std::string> unrun_branches() const;
    bool has_branches() const;

private:
    const dsl::Program& program_;
    const Graph& graph_;
    const dsl::SourceManager& sources_;
    std::uint64_t seed_;
    Limits limits_;
    std::map<const Rule*, std::uint64_t> fired_;
    std::set<const Branch*> branches_ran_;
};

}  // namespace meshrun::tools
