// The simulated pin driver (sim.hpp): a map of lines behind one mutex.
#include "meshrun/drivers/sim.hpp"

#include <map>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace meshrun::drivers {

namespace detail {

using Key = std::pair<std::string, std::string>;  // (chip, line), as written

struct SimEntry {
    bool requested = false;  // false: only driven from outside so far
    LineConfig config;
    std::shared_ptr<ChangeHandler> on_change;  // shared, so that every call reaches the same handler
    int physical = 0;
    long writes = 0;

    int logical() const { return physical ^ (config.active_low ? 1 : 0); }
};

struct SimState {
    std::mutex mutex;
    std::map<Key, SimEntry> lines;
};

}  // namespace detail

namespace {

using detail::Key;
using detail::SimEntry;
using detail::SimState;

std::string describe(const Key& key) { return "line " + key.first + " " + key.second; }

int checked(int level) {
    if (level != 0 && level != 1)
        throw std::invalid_argument("level " + std::to_string(level) + " is neither 0 nor 1");
    return level;
}

// The entry of a requested line; the caller holds the mutex.
SimEntry& requested(SimState& state, const Key& key) {
    auto it = state.lines.find(key);
    if (it == state.lines.end() || !it->second.requested)
        throw std::out_of_range(describe(key) + " is not requested");
    return it->second;
}

// A requested line. Its entry stays put while it lives (a map's entries do not
// move), so it is kept at hand rather than looked up on every read and write.
class SimLine final : public Line {
public:
    SimLine(std::shared_ptr<SimState> state, Key key, SimEntry& entry)
        : state_(std::move(state)), key_(std::move(key)), entry_(entry) {}
    SimLine(const SimLine&) = delete;
    SimLine& operator=(const SimLine&) = delete;

    // Forgets the line, and with it any level driven from outside: it rests at its pull again.
    ~SimLine() override {
        std::lock_guard lock(state_->mutex);
        state_->lines.erase(key_);
    }

    int read() override {
        std::lock_guard lock(state_->mutex);
        return entry_.logical();
    }

    void write(int level) override {
        checked(level);
        if (entry_.config.direction != Direction::output)  // set once, when requested
            throw std::logic_error(describe(key_) + " is an input and cannot be written");
        std::lock_guard lock(state_->mutex);
        entry_.physical = level ^ (entry_.config.active_low ? 1 : 0);
        ++entry_.writes;
    }

private:
    std::shared_ptr<SimState> state_;
    Key key_;
    SimEntry& entry_;
};

}  // namespace

SimDriver::SimDriver() : state_(std::make_shared<SimState>()) {}

std::unique_ptr<Line> SimDriver::request(const LineConfig& config, ChangeHandler on_change) {
    const bool output = config.direction == Direction::output;
    if (output) checked(config.initial);
    Key key{config.chip, config.line};
    std::lock_guard lock(state_->mutex);
    auto [it, fresh] = state_->lines.try_emplace(key);
    SimEntry& entry = it->second;
    if (entry.requested)
        throw LineError(LineError::Kind::busy, describe(key) + " is already requested by " +
                                                   (entry.config.consumer.empty() ? "another consumer" : entry.config.consumer));
    const int pull = config.bias == Bias::pull_up ? 1 : 0;
    const int physical = output ? config.initial ^ (config.active_low ? 1 : 0) : fresh ? pull : entry.physical;
    auto handler = on_change ? std::make_shared<ChangeHandler>(std::move(on_change)) : nullptr;
    entry = SimEntry{true, config, std::move(handler), physical, 0};
    return std::make_unique<SimLine>(state_, std::move(key), entry);
}

void SimDriver::drive(const std::string& chip, const std::string& line, int level) {
    checked(level);
    std::shared_ptr<ChangeHandler> handler;
    int logical = 0;
    {
        std::lock_guard lock(state_->mutex);
        SimEntry& entry = state_->lines[Key{chip, line}];
        if (entry.requested && entry.config.direction == Direction::output)
            throw std::logic_error(describe(Key{chip, line}) + " is an output and cannot be driven from outside");
        if (entry.physical == level) return;
        entry.physical = level;
        if (!entry.requested) return;
        handler = entry.on_change;
        logical = entry.logical();
    }
    if (handler) (*handler)(logical);  // outside the lock: the handler may call back into the driver
}

int SimDriver::level(const std::string& chip, const std::string& line) const {
    std::lock_guard lock(state_->mutex);
    return requested(*state_, Key{chip, line}).logical();
}

long SimDriver::writes(const std::string& chip, const std::string& line) const {
    std::lock_guard lock(state_->mutex);
    return requested(*state_, Key{chip, line}).writes;
}

std::vector<LineState> SimDriver::lines() const {
    std::lock_guard lock(state_->mutex);
    std::vector<LineState> out;
    for (const auto& [key, entry] : state_->lines)
        if (entry.requested)
            out.push_back({key.first, key.second, entry.config.direction, entry.logical(), entry.config.consumer});
    return out;
}

}  // namespace meshrun::drivers
