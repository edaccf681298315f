// What a line is asked to be: its direction and, for an input, its pull resistor. The one
// definition of both: the language's AST (meshrun/dsl/ast.hpp), the event graph and the drivers
// all use these. Header only and on its own, so that the front end needs nothing else of the drivers.
#pragma once

namespace meshrun::drivers {

enum class Direction { input, output };
enum class Bias { none, pull_up, pull_down };  // none: left as the chip has it

}  // namespace meshrun::drivers
