// Items of the language that parse and check but that this version does not build: `discovery
// etcd "URL"` (nodes finding each other in etcd). A file that has it must not run as if it were there.
#include "meshrun/dsl/frontend.hpp"

namespace meshrun::dsl {

void report_not_available(const Program& program, Diagnostics& diags, Severity severity) {
    auto report = [&](Span at, std::string message) {
        if (severity == Severity::error) {
            diags.error(Kind::not_available, at, std::move(message));
        } else {
            diags.warning(Kind::not_available, at, std::move(message));
        }
    };
    for (const Program::Discovery& d : program.discovery)
        report(d.span, "`discovery etcd` is not available in this version of meshrun: nodes would not register "
                       "or look each other up in etcd");
}

}  // namespace meshrun::dsl
