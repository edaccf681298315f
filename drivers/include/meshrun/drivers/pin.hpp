// The one pin interface the engine sees. Drivers (simulated, libgpiod) live behind it;
// nothing in the engine knows which one it runs on.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace meshrun::drivers {

enum class Direction { input, output };
enum class Bias { none, pull_up, pull_down };

struct LineConfig {
    std::string chip;        // `gpiochip0` or a chip label
    std::string line;        // an offset (digits) or a line name
    Direction direction = Direction::output;
    bool active_low = false;
    Bias bias = Bias::none;  // inputs
    int initial = 0;         // outputs: the level driven when requested
    std::string consumer;    // who holds the line, e.g. `meshrun/buzzer/horn`
};

// A requested line. Levels are logical (active_low already applied): 0 or 1.
class Line {
public:
    virtual ~Line() = default;
    virtual int read() = 0;
    virtual void write(int level) = 0;  // outputs only
};

// Called with the new logical level of an input whenever it changes. A driver
// may call it from any thread; the engine moves it onto its own executor. Debounce
// is the engine's job (the same on every driver), so drivers report raw changes.
using ChangeHandler = std::function<void(int level)>;

class PinDriver {
public:
    virtual ~PinDriver() = default;
    // Throws std::runtime_error with a message for the user when the line cannot be had.
    virtual std::unique_ptr<Line> request(const LineConfig& config, ChangeHandler on_change) = 0;
};

}  // namespace meshrun::drivers
