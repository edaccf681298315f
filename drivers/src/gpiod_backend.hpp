// The seam between the gpiod driver (gpiod_driver.cpp: which chip, which line, which error) and
// the one libgpiod API it was built against. Exactly one of these files defines it:
//   gpiod_v1.cpp    libgpiod 1.6 (Debian 12, Raspberry Pi OS bookworm)
//   gpiod_v2.cpp    libgpiod 2.x (Debian 13, Raspberry Pi OS trixie)
//   gpiod_none.cpp  no libgpiod found at build time
// drivers/CMakeLists.txt picks it. Everything here throws std::system_error with the errno of
// the failure and no words of its own: the driver chooses the words (gpio_text.hpp).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "gpio_text.hpp"
#include "meshrun/drivers/pin.hpp"

namespace meshrun::drivers::gpio {

// The library's own version ("1.6.3", "2.2.1"), or nullptr when built without libgpiod.
const char* library_version();

// An open chip, for looking at it and requesting one line at a time.
class Chip {
public:
    explicit Chip(const std::string& path);  // throws std::system_error (ENOENT, EACCES, ENODEV...)
    ~Chip();
    Chip(const Chip&) = delete;
    Chip& operator=(const Chip&) = delete;

    ChipInfo info() const;
    std::optional<unsigned> find_line(const std::string& name);  // the library's lookup by name
    LineInfo line_info(unsigned offset);

    // Requests the line as `config` says (the offset resolved already). The Line holds its own
    // handles and may outlive this Chip. `describe` names the line in the messages of its later
    // failures (`line 17 (`GPIO17`) of gpiochip0`).
    std::unique_ptr<Line> request(unsigned offset, const LineConfig& config, const std::string& describe);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// For the Line implementations: a LineError(other) for a failed read, write or edge read.
[[noreturn]] void throw_line_failure(const std::string& what, const std::string& describe, int error);

// Makes the descriptor non-blocking (throws std::system_error).
void set_nonblocking(int fd);

}  // namespace meshrun::drivers::gpio
