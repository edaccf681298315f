#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "meshrun/engine/eval.hpp"

namespace meshrun::engine {

std::optional<double> number(std::string_view v) {
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
    if (v.empty()) return std::nullopt;
    double d = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
    if (ec != std::errc() || end != v.data() + v.size() || !std::isfinite(d)) return std::nullopt;
    return d;
}

std::string format_number(double d) {
    if (d == std::floor(d) && std::fabs(d) < 1e15) return fmt::format("{}", static_cast<long long>(d));
    return fmt::format("{}", d);
}

bool truthy(std::string_view v) {
    if (v.size() == 1) return v[0] != '0';  // the common case: a level
    if (v.empty()) return false;
    const auto n = number(v);
    return !(n && *n == 0);
}

namespace {

std::string bit(bool b) { return b ? "1" : "0"; }

std::string binary(dsl::BinOp op, const std::string& a, const std::string& b) {
    using dsl::BinOp;
    switch (op) {
        case BinOp::or_: return bit(truthy(a) || truthy(b));
        case BinOp::and_: return bit(truthy(a) && truthy(b));
        case BinOp::eq: return bit(a == b);  // text: `1` equals "1", not `1.0`
        case BinOp::ne: return bit(a != b);
        default: break;
    }
    const auto x = number(a), y = number(b);
    if (!x || !y) return op == BinOp::add || op == BinOp::sub ? "" : "0";
    switch (op) {
        case BinOp::lt: return bit(*x < *y);
        case BinOp::le: return bit(*x <= *y);
        case BinOp::gt: return bit(*x > *y);
        case BinOp::ge: return bit(*x >= *y);
        case BinOp::add: return format_number(*x + *y);
        case BinOp::sub: return format_number(*x - *y);
        default: return "0";
    }
}

}  // namespace

std::string eval(const Expr& e, const EvalContext& ctx) {
    using K = Expr::Kind;
    switch (e.kind) {
        case K::text: return e.text;
        case K::interpolation: {
            std::string out;
            for (const auto& part : e.args) out += eval(part, ctx);
            return out;
        }
        case K::pin: return bit(ctx.pin(e.pin) != 0);
        case K::var: return (*ctx.vars)[static_cast<std::size_t>(e.var)];
        case K::value: return std::string(ctx.value);
        case K::tick: return std::to_string(ctx.tick);
        case K::random: {
            const double p = number(eval(e.args[0], ctx)).value_or(0);
            std::uniform_real_distribution<double> u(0.0, 1.0);
            return bit(ctx.rng && u(*ctx.rng) < p);
        }
        case K::not_: return bit(!truthy(eval(e.args[0], ctx)));
        case K::neg: {
            const auto n = number(eval(e.args[0], ctx));
            return n ? format_number(-*n) : "";
        }
        case K::binary: return binary(e.op, eval(e.args[0], ctx), eval(e.args[1], ctx));
    }
    return "";
}

}  // namespace meshrun::engine
