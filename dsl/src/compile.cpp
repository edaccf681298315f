// The whole front end in one call: parse, then check unless the text has syntax errors.
#include <algorithm>

#include "meshrun/dsl/frontend.hpp"

namespace meshrun::dsl {

Compiled compile_file(const std::string& path, SourceManager& sm, Diagnostics& diags) {
    Compiled out;
    out.program = parse_file(path, sm, diags);
    const bool syntax_errors = std::any_of(diags.all().begin(), diags.all().end(),
                                           [](const Diagnostic& d) { return stops_checks(d.kind); });
    if (!syntax_errors) out.summary = check(out.program, diags);
    return out;
}

}  // namespace meshrun::dsl
