// `meshrun probe`: the declared pins held against the board's real lines, requesting none.
#pragma once

#include <vector>

#include "meshrun/dsl/diagnostic.hpp"
#include "meshrun/dsl/source.hpp"
#include "meshrun/engine/graph.hpp"

namespace meshrun::tools {

// Prints what the board has for every pin of `nodes` (text, or one JSON object a pin) and
// each problem as a diagnostic at the pin's declaration; 0 when there is none, else 1.
int probe(const engine::Graph& graph, const dsl::SourceManager& sources, const std::vector<int>& nodes, bool json,
          bool color);

}  // namespace meshrun::tools
