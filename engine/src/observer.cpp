#include "meshrun/engine/observer.hpp"

namespace meshrun::engine {

std::string_view to_string(LinkState state) {
    switch (state) {
        case LinkState::connecting: return "connecting";
        case LinkState::up: return "up";
        case LinkState::down: return "down";
        case LinkState::retrying: return "retrying";
    }
    return "unknown";
}

}  // namespace meshrun::engine
