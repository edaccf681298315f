// The simulated pin driver: lines in memory, keyed by their (chip, line) text, that
// tests and tools drive and observe from outside. It behaves like the kernel's
// gpio-sim: an input rests at its pull level, a released line goes back to it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "meshrun/drivers/pin.hpp"

namespace meshrun::drivers {

namespace detail {
struct SimState;  // the lines and their mutex, shared by the driver and its lines
}

// One requested line, as a status page shows it.
struct LineState {
    std::string chip;
    std::string line;
    Direction direction = Direction::input;
    int level = 0;  // logical
    std::string consumer;
};

// Thread-safe. Change handlers run outside the driver's lock, on the thread that
// called drive(); they may call back into the driver. Two threads driving the same
// line at once may see its handler called in either order; read() has the last word.
// Lines may outlive their driver.
class SimDriver : public PinDriver {
public:
    SimDriver();

    // Throws LineError(busy) when (chip, line) is already requested on this driver.
    std::unique_ptr<Line> request(const LineConfig& config, ChangeHandler on_change) override;

    // Sets the physical level of an input, requested or not yet (a level driven
    // before the request replaces the pull). Calls the handler when the logical
    // level changes. Throws std::logic_error on a requested output.
    void drive(const std::string& chip, const std::string& line, int level);

    // The logical level of a requested line, and how many times Line::write wrote it.
    // Throw std::out_of_range when the line is not requested.
    int level(const std::string& chip, const std::string& line) const;
    long writes(const std::string& chip, const std::string& line) const;

    std::vector<LineState> lines() const;  // every requested line, ordered by (chip, line)

private:
    std::shared_ptr<detail::SimState> state_;
};

}  // namespace meshrun::drivers
