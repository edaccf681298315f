// Durations written back as text, the way the language writes them.
#include "meshrun/dsl/ast.hpp"

namespace meshrun::dsl {

std::string format_duration(std::uint64_t micros) {
    if (micros == 0) return "0s";
    for (const DurationUnit& u : duration_units)
        if (micros % u.micros == 0) return std::to_string(micros / u.micros) + std::string(u.name);
    return {};  // not reached: every duration is a whole number of `us`
}

}  // namespace meshrun::dsl
