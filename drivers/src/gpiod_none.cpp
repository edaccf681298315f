// The gpiod driver's seam (gpiod_backend.hpp) for a build that found no libgpiod: no chip
// can be opened. gpiod_driver.cpp says so before it tries (library_version() is null).
#include <cerrno>
#include <system_error>

#include "gpiod_backend.hpp"

namespace meshrun::drivers::gpio {

const char* library_version() { return nullptr; }

struct Chip::Impl {};

Chip::Chip(const std::string&) { throw std::system_error(ENOSYS, std::generic_category(), "built without libgpiod"); }
Chip::~Chip() = default;
ChipInfo Chip::info() const { return {}; }
std::optional<unsigned> Chip::find_line(const std::string&) { return std::nullopt; }
LineInfo Chip::line_info(unsigned) { return {}; }
std::unique_ptr<Line> Chip::request(unsigned, const LineConfig&, const std::string&) {
    throw std::system_error(ENOSYS, std::generic_category(), "built without libgpiod");
}

}  // namespace meshrun::drivers::gpio
