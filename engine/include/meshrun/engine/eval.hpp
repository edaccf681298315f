// Expressions at run time. Values are text on the wire: `1` and "1" are equal;
// `< <= > >= + -` read both sides as decimal numbers.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "meshrun/engine/graph.hpp"

namespace meshrun::engine {

struct EvalContext {
    std::string_view value;           // the message or the pin's new level
    std::int64_t tick = 0;            // the timer's firing count
    std::function<int(int pin)> pin;  // a pin's level
    std::mt19937_64* rng = nullptr;   // for random(P)
    const std::vector<std::string>* vars = nullptr;  // the node's variables (Node::vars' order)
};

std::string eval(const Expr& e, const EvalContext& ctx);

// A guard holds, and a pin goes high, for any value but `0`, `` and a number equal to 0.
bool truthy(std::string_view v);
std::optional<double> number(std::string_view v);
std::string format_number(double d);

}  // namespace meshrun::engine
