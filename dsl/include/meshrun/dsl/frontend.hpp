// The front end's entry points: text -> AST (parse) -> checked model (check).
#pragma once

#include <string>

#include "meshrun/dsl/ast.hpp"
#include "meshrun/dsl/diagnostic.hpp"
#include "meshrun/dsl/source.hpp"

namespace meshrun::dsl {

// The largest source file read (16 MiB): a larger one is refused as too large (EFBIG).
constexpr std::size_t max_source_size = 16 << 20;

// Parses one file and every file it includes, spliced in order. Syntax errors,
// missing includes and include cycles are reported in `diags`. The file's own
// `mesh` line names the program; a `mesh` line in an included file is ignored.
Program parse_file(const std::string& path, SourceManager& sm, Diagnostics& diags);

// Parses text already in memory (tests, the fuzzer); includes resolve against
// the current directory.
Program parse_text(std::string name, std::string text, SourceManager& sm, Diagnostics& diags);

// Counts of what a checked program declares, for the summary line.
struct Summary {
    std::size_t nodes = 0, channels = 0, pins = 0, variables = 0, rules = 0, timers = 0, actions = 0, tests = 0;
};

// Resolves names and runs every check; appends to `diags`. Reads nothing but the program, and
// records in it what each name refers to (the `ref` of each Ident and name Expr): the one
// resolution of names, which lowering reads.
Summary check(Program& program, Diagnostics& diags);

// parse + check, the whole front end. Semantic checks are skipped when the text
// has syntax errors (they would only repeat the syntax errors in other words).
struct Compiled {
    Program program;
    Summary summary;
};
Compiled compile_file(const std::string& path, SourceManager& sm, Diagnostics& diags);
// The same for text already in memory, such as standard input (`check -`): `name` stands for
// the file in diagnostics, and includes resolve against the current directory.
Compiled compile_text(std::string name, std::string text, SourceManager& sm, Diagnostics& diags);

}  // namespace meshrun::dsl
