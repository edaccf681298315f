// A libFuzzer target for the front end: arbitrary bytes as a .mesh file go
// through the parser, then (when they parse without errors) through every
// check, and every diagnostic is rendered, as text with and without colour and
// as JSON. Besides the sanitizers' findings, it traps when a diagnostic's span
// lies outside the text it points into (rendering would read out of bounds).
//
// Built and run by tests/fuzz/run_fuzz.sh.
//
// `include` in an input resolves against the current directory; the target
// moves into an empty temporary directory first, so relative includes find
// nothing. An absolute path can still name any file: acceptable in a fuzzer.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "meshrun/dsl/diagnostic.hpp"
#include "meshrun/dsl/frontend.hpp"
#include "meshrun/dsl/source.hpp"

namespace {

std::string g_workdir;

void remove_workdir() {
    if (!g_workdir.empty()) {
        ::rmdir(g_workdir.c_str());  // only succeeds while empty, which it should be
    }
}

void check_span(const meshrun::dsl::Span& span, const meshrun::dsl::SourceManager& sm) {
    if (span.file >= sm.size() || span.begin > span.end ||
        span.end > sm.file(span.file).text.size()) {
        std::fprintf(stderr, "fuzz_check: span out of bounds: file %u, [%u, %u)\n",
                     static_cast<unsigned>(span.file), static_cast<unsigned>(span.begin),
                     static_cast<unsigned>(span.end));
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/meshrun-fuzz.XXXXXX";
    if (char* dir = ::mkdtemp(pattern.data())) {
        if (::chdir(dir) == 0) {
            g_workdir = dir;
            std::atexit(remove_workdir);
        }
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace dsl = meshrun::dsl;

    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    std::string text(reinterpret_cast<const char*>(data), size);
    dsl::Program program = dsl::parse_text("fuzz.mesh", std::move(text), sm, diags);
    if (!diags.has_errors()) {
        dsl::check(program, diags);
    }
    diags.sort_by_position();

    std::size_t rendered = 0;
    for (const dsl::Diagnostic& d : diags.all()) {
        check_span(d.span, sm);
        for (const dsl::Note& note : d.notes) {
            if (note.span) {
                check_span(*note.span, sm);
            }
        }
        rendered += dsl::render_text(d, sm).size();
        rendered += dsl::render_text(d, sm, dsl::RenderOptions{true}).size();
        rendered += dsl::render_json(d, sm).size();
        (void)dsl::kind_name(d.kind);
        (void)dsl::severity_name(d.severity);
    }
    // Keep the rendering from being optimised away.
    volatile std::size_t sink = rendered;
    (void)sink;
    return 0;
}
