// The whole front end for text already in memory (`meshrun check -` reads standard input).
#include <algorithm>

#include "meshrun/dsl/frontend.hpp"

namespace meshrun::dsl {

Compiled compile_text(std::string name, std::string text, SourceManager& sm, Diagnostics& diags) {
    Compiled out;
    out.program = parse_text(std::move(name), std::move(text), sm, diags);
    // As compile_file: the semantic checks would only repeat syntax errors in other words.
    const bool syntax_errors = std::any_of(diags.all().begin(), diags.all().end(), [](const Diagnostic& d) {
        return d.kind == Kind::syntax || d.kind == Kind::include_not_found || d.kind == Kind::include_cycle;
    });
    if (!syntax_errors) out.summary = check(out.program, diags);
    return out;
}

}  // namespace meshrun::dsl
