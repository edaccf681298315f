// Virtual time for engine tests: callbacks run only when the test moves the clock.
#pragma once

#include <functional>
#include <map>

#include "meshrun/engine/runtime.hpp"

namespace meshrun::test {

struct ManualClock final : engine::Clock {
    engine::Micros t{0};
    std::multimap<engine::Micros, std::function<void()>> due;
    engine::Micros now() const override { return t; }
    void call_at(engine::Micros when, std::function<void()> fn) override { due.emplace(std::max(when, t), std::move(fn)); }
    // Runs the earliest callback, moving the clock to it; false when none is set.
    bool step() {
        if (due.empty()) return false;
        auto it = due.begin();
        t = it->first;
        auto fn = std::move(it->second);
        due.erase(it);
        fn();
        return true;
    }
    void advance_to(engine::Micros to) {
        while (!due.empty() && due.begin()->first <= to) step();
        t = std::max(t, to);
    }
};

}  // namespace meshrun::test
