// What every driver shares (pin.hpp): LineError.
#include "meshrun/drivers/pin.hpp"

namespace meshrun::drivers {

namespace {

std::string join(const std::string& summary, const std::vector<std::string>& help) {
    std::string out = summary;
    for (const auto& line : help) out += "\n  " + line;
    return out;
}

}  // namespace

LineError::LineError(Kind k, std::string s, std::vector<std::string> h)
    : std::runtime_error(join(s, h)), kind(k), summary(std::move(s)), help(std::move(h)) {}

std::string LineError::message() const { return what(); }

std::string_view kind_name(LineError::Kind kind) {
    switch (kind) {
        case LineError::Kind::no_chip: return "no-chip";
        case LineError::Kind::no_line: return "no-line";
        case LineError::Kind::busy: return "busy";
        case LineError::Kind::permission: return "permission";
        case LineError::Kind::other: return "other";
    }
    return "other";
}

}  // namespace meshrun::drivers
