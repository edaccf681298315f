// The one pin interface the engine sees. Drivers (simulated, libgpiod) live behind it;
// nothing in the engine knows which one it runs on, nor which libgpiod API the gpiod
// driver was built against (1.6 or 2.x: chosen by the build, see docs/gpio.md).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "meshrun/drivers/line_mode.hpp"

namespace meshrun::drivers {

struct LineConfig {
    // The chip: its name (`gpiochip0`), its number (`0`, the same as `gpiochip0`), a path
    // (`/dev/gpiochip4`: anything that starts with `/`) or its label (`pinctrl-rp1`). A label names
    // the same chip on every kernel; numbers can change between kernels.
    std::string chip;
    // The line on that chip: an offset (digits only, `17`) or a line name (`GPIO17`), which is
    // looked up among the chip's line names (the first line of that name when there are several).
    std::string line;
    Direction direction = Direction::output;
    bool active_low = false;
    Bias bias = Bias::none;  // inputs
    int initial = 0;         // outputs: the logical level driven from the moment of the request
    std::string consumer;    // who holds the line, as the kernel shows it: `meshrun:<fleet>:<node>:<pin>` (no `/`: Linux names the edge interrupt after it)
};

// One edge of an input, as the gpiod driver reads it from the kernel.
struct EdgeEvent {
    int level = 0;                      // the logical level after the edge (active_low applied)
    std::chrono::nanoseconds when{0};   // CLOCK_MONOTONIC: the kernel's timestamp of the edge
};

// A requested line. Levels are logical (active_low already applied): 0 or 1. A line is used
// from one thread at a time (the engine's); destroying it releases the line.
class Line {
public:
    virtual ~Line() = default;
    virtual int read() = 0;             // the logical level; outputs read back what they drive
    virtual void write(int level) = 0;  // outputs only; throws LineError(other) when the kernel refuses

    // Inputs of the gpiod driver: a descriptor that is readable while edges are pending, for the
    // engine to wait on in its own event loop (no thread per line, no polling). It stays owned by
    // the line: the engine must not close it. Wrap a dup() of it (and close that together with the
    // line: while a dup is open the kernel keeps the line requested), or release() the wrapper
    // before the line goes. -1 for outputs, and for drivers that report changes through the
    // ChangeHandler instead (the simulated driver).
    virtual int edge_fd() const { return -1; }

    // Every pending edge, oldest first, without blocking (the descriptor is non-blocking): call it
    // when edge_fd() is readable. May return none (an edge already read). Throws LineError(other)
    // when the read fails.
    virtual std::vector<EdgeEvent> read_edges() { return {}; }
};

// Called with the new logical level of an input whenever it changes, by drivers that have no
// edge_fd() (the simulated one). A driver may call it from any thread; the engine moves it onto
// its own executor. Debounce is the engine's job (the same on every driver), so drivers report raw
// changes. The gpiod driver never calls it: it reports edges through edge_fd() and read_edges().
using ChangeHandler = std::function<void(int level)>;

// Why a line could not be had (or a write failed). The engine renders it at the pin's declaration
// (file:line:col): `summary` as the error, each line of `help` as a note under it.
struct LineError : std::runtime_error {
    enum class Kind {
        no_chip,     // no such chip: help lists the chips there are ("none: this machine has no GPIO chip")
        no_line,     // no such line on the chip: help says which names come close, or the offset range
        busy,        // another consumer holds the line: the summary names it
        permission,  // the chip's device cannot be opened: help says which device and the commands to fix it
        other,       // anything else, with the system's text for the error
    };

    LineError(Kind kind, std::string summary, std::vector<std::string> help = {});

    Kind kind;
    std::string summary;            // one line, no final period
    std::vector<std::string> help;  // what to do, one line each; a line that starts with `$ ` is a command
    std::string message() const;    // summary, then each help line indented by two spaces; what() is the same
};

std::string_view kind_name(LineError::Kind kind);  // "no-chip", "no-line", "busy", "permission", "other"

class PinDriver {
public:
    virtual ~PinDriver() = default;
    // Throws LineError when the line cannot be had (the simulated driver: only `busy`), and
    // std::invalid_argument for an initial level other than 0 or 1. on_change may be empty; the
    // gpiod driver does not call it (see ChangeHandler).
    virtual std::unique_ptr<Line> request(const LineConfig& config, ChangeHandler on_change) = 0;
};

// The real driver, on the kernel's GPIO character devices through libgpiod. Each request opens the
// chip anew, so lines are independent of each other and of the driver, which may go first.
std::unique_ptr<PinDriver> make_gpiod_driver();

// What this binary was built against, as the library says it: "libgpiod 1.6.3", "libgpiod 2.2.1";
// "none" when the build found no libgpiod (make_gpiod_driver()'s requests then throw LineError(other)).
const char* gpiod_api();

// A chip as `meshrun probe` lists it.
struct ChipReport {
    std::string name;   // `gpiochip0`
    std::string label;  // `pinctrl-bcm2711`
    std::string path;   // `/dev/gpiochip0`
    unsigned lines = 0;
    std::string error;  // empty, or why it could not be opened ("Permission denied")
};

// Every GPIO chip of this machine (the /dev/gpiochip* devices), in the order of their numbers.
std::vector<ChipReport> gpio_chips();

// `meshrun probe`: what the board has for one declared line, without requesting anything.
struct LineReport {
    bool chip_found = false;
    std::string chip_how;  // how the chip was found: "name", "path" or "label"
    std::string chip_name, chip_label, chip_path;
    unsigned chip_lines = 0;
    unsigned offset = 0;
    std::string line_name;  // the kernel's name for the line (may be empty)
    bool line_found = false;
    bool used = false;      // held by someone (the kernel, another program, this node already running)
    std::string consumer;   // who holds it; empty: free (or held without a name)
    bool output = false, active_low = false;
    std::string bias;       // as the kernel reports it: "pull-up", "pull-down", "disabled", "unknown"
    std::string edges;      // "none", "rising", "falling", "both"; "unknown" with libgpiod 1.6
    // What would stop the line or surprise its user, one sentence each: a missing chip or line (the
    // LineError's message), a line held by another consumer, a line name whose number is not its
    // offset (`GPIO17` at offset 12), an offset whose line is named for another number.
    std::vector<std::string> problems;
};

LineReport probe_line(const LineConfig& config);

}  // namespace meshrun::drivers
