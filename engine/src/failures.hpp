// How the node runtime meets failure: retries back off, a failure that repeats is
// logged once and then summarised, and a message in a log line is cut to a size.
// No Asio here: a pause is waited out on the fleet's clock by whoever retries.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "meshrun/engine/graph.hpp"
#include "meshrun/engine/log.hpp"  // shown()

namespace meshrun::engine {

// Retries back off: 50 ms doubling to 2 s, each pause drawn between half and all of it
// (jitter, so that peers that failed together do not retry together).
class Backoff {
public:
    explicit Backoff(std::chrono::milliseconds first = std::chrono::milliseconds(50),
                     std::chrono::milliseconds most = std::chrono::milliseconds(2000))
        : first_(first), most_(most), next_(first), rng_(std::random_device{}()) {}
    Micros next() {
        const auto half = next_.count() / 2;
        const auto pause = std::chrono::milliseconds(half + std::uniform_int_distribution<std::int64_t>(0, half)(rng_));
        next_ = std::min(next_ * 2, most_);
        return pause;
    }
    void reset() { next_ = first_; }

private:
    std::chrono::milliseconds first_, most_, next_;
    std::minstd_rand rng_;
};

// A failure that repeats is logged once, then summarised: each kind of failure the
// first time it happens in a run of failures, then once a minute a count of what
// followed, and once when it works again. Never a line per attempt.
class Repeated {
public:
    explicit Repeated(std::string subject) : subject_(std::move(subject)) {}

    // The line to log for this failure (`line` when `why` is new in this run), if any.
    std::optional<std::string> failed(Micros now, std::string_view line, std::string_view why) {
        last_ = why;
        if (count_++ == 0) since_ = summarised_ = now;
        if (std::find(seen_.begin(), seen_.end(), why) == seen_.end() && seen_.size() < 8) {
            seen_.emplace_back(why);
            return std::string(line);
        }
        ++unlogged_;
        if (now - summarised_ < std::chrono::minutes(1)) return std::nullopt;
        auto summary = fmt::format("{}: {} more failure{} in the last {} s (last: {})", subject_, unlogged_,
                                   unlogged_ == 1 ? "" : "s", (now - summarised_).count() / 1'000'000, last_);
        summarised_ = now;
        unlogged_ = 0;
        return summary;
    }

    // The line to log once it works again, if it had failed.
    std::optional<std::string> recovered(Micros now, std::string_view what) {
        if (count_ == 0) return std::nullopt;
        auto line = fmt::format("{} after {} failure{} in {} s (last: {})", what, count_, count_ == 1 ? "" : "s",
                                (now - since_).count() / 1'000'000, last_);
        count_ = unlogged_ = 0;
        seen_.clear();
        return line;
    }

private:
    std::string subject_;
    std::uint64_t count_ = 0, unlogged_ = 0;
    Micros since_{0}, summarised_{0};
    std::vector<std::string> seen_;  // the kinds of failure of this run already logged (the first 8)
    std::string last_;
};

}  // namespace meshrun::engine
