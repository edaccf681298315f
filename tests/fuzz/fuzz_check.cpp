// A libFuzzer target for the front end: arbitrary bytes as a .mesh file go
// through the parser, then (when they parse without a syntax error, as
// compile_file does) through every check. Every diagnostic's span is checked
// to lie within the text it points into (rendering would read out of bounds
// otherwise), and the first diagnostics are rendered: three as text (the
// second in colour) and the first as JSON.
//
// Rendering is what an input costs most (fmt and nlohmann, under the
// sanitizers), and each diagnostic renders through the same code: rendering
// every one of them three ways (text, text in colour, JSON) took two thirds of
// the time. Parse and check, the code under test, run in full.
//
// Built and run by tests/fuzz/run_fuzz.sh.
//
// `include` in an input resolves against the current directory; the target
// moves into an empty temporary directory first, so relative includes find
// nothing. An absolute path can still name any file: acceptable in a fuzzer.

#include <unistd.h>

#include <algorithm>
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
    constexpr std::size_t rendered_as_text = 3, rendered_as_json = 1;  // the first diagnostics

    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    std::string text(reinterpret_cast<const char*>(data), size);
    dsl::Program program = dsl::parse_text("fuzz.mesh", std::move(text), sm, diags);
    if (std::none_of(diags.all().begin(), diags.all().end(),
                     [](const dsl::Diagnostic& d) { return dsl::stops_checks(d.kind); })) {
        dsl::check(program, diags);
    }
    diags.sort_by_position();

    std::size_t rendered = 0;
    for (std::size_t i = 0; i < diags.all().size(); ++i) {
        const dsl::Diagnostic& d = diags.all()[i];
        check_span(d.span, sm);
        for (const dsl::Note& note : d.notes) {
            if (note.span) {
                check_span(*note.span, sm);
            }
        }
        if (i < rendered_as_text) {
            rendered += dsl::render_text(d, sm, dsl::RenderOptions{i % 2 == 1}).size();
        }
        if (i < rendered_as_json) {
            rendered += dsl::render_json(d, sm).size();
        }
    }
    // Keep the rendering from being optimised away.
    volatile std::size_t sink = rendered;
    (void)sink;
    return 0;
}
