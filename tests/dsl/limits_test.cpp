// How deep a file may nest (max_nesting, max_include_depth): every shape of
// deep text is a `too-deep` error at the place the limit is passed, never a
// crash, and text right at the limit still checks. The inputs are generated
// here; the last test runs them through the meshrun binary as a user would.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

#include "meshrun/dsl/frontend.hpp"
#include "build_paths.hpp"

using namespace meshrun::dsl;
namespace fs = std::filesystem;

namespace {

std::string times(std::string_view s, int n) {
    std::string out;
    out.reserve(s.size() * static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) out += s;
    return out;
}

struct Compiled {
    SourceManager sm;
    Diagnostics diags;
    Program program;
    std::string rendered() const {
        std::string out;
        for (const auto& d : diags.all()) out += render_text(d, sm).substr(0, 300) + "\n";
        return out;
    }
};

// parse, then check when there is no error, as compile_file does.
std::unique_ptr<Compiled> compile(std::string text) {
    auto c = std::make_unique<Compiled>();
    c->program = parse_text("deep.mesh", std::move(text), c->sm, c->diags);
    if (!c->diags.has_errors()) check(c->program, c->diags);
    return c;
}

// `line:column` of the one diagnostic, which must be a too-deep error.
std::string too_deep_at(const Compiled& c) {
    INFO(c.rendered());
    REQUIRE(c.diags.all().size() == 1);
    const Diagnostic& d = c.diags.all()[0];
    CHECK(d.kind == Kind::too_deep);
    CHECK(d.severity == Severity::error);
    const Location at = c.sm.file(d.span.file).locate(d.span.begin);
    return std::to_string(at.line) + ":" + std::to_string(at.column);
}

void checks_clean(const Compiled& c) {
    INFO(c.rendered());
    CHECK(c.diags.all().empty());
}

// A rule whose `ack` (one level: a statement) sends `expression`, which starts at column 14.
std::string ack(const std::string& expression) { return "node n at :1 {\n on c -> ack " + expression + "\n}\n"; }

std::string parens(int n) { return times("(", n) + "1" + times(")", n); }
std::string nots(int n) { return times("not ", n) + "1"; }
std::string minuses(int n) { return times("- ", n) + "1"; }
std::string randoms(int n) { return times("random(", n) + "1" + times(")", n); }
std::string interpolations(int n) { return times("\"{", n) + "1" + times("}\"", n); }
std::string chain(int terms) { return "1" + times(" + 1", terms - 1); }
// `repeat` blocks inside each other, the first at column 10; `n` statements deep with the `ack`.
std::string repeats(int n) {
    return "node n at :1 {\n on c -> " + times("repeat 1 { ", n - 1) + "ack 1" + times(" }", n - 1) + "\n}\n";
}
std::string afters(int n) {
    return "node n at :1 {\n pin p = out gpiochip0 1\n on c -> " + times("after 1s -> ", n - 1) + "toggle p\n}\n";
}
// A rule runs a0, a0 runs a1, ... a<n-1> acks: the `ack` runs n + 1 levels deep.
std::string calls(int n) {
    std::string out = "node n at :1 {\n on c -> a0\n";
    for (int i = 0; i + 1 < n; ++i) out += " action a" + std::to_string(i) + " { a" + std::to_string(i + 1) + " }\n";
    return out + " action a" + std::to_string(n - 1) + " { ack 1 }\n}\n";
}

}  // namespace

TEST_CASE("expressions nest up to the limit, and deeper is too-deep where it is passed", "[dsl][limits]") {
    // The `ack` statement is one level: its expression may be 255 more.
    const int room = max_nesting - 1;
    checks_clean(*compile(ack(parens(room))));
    CHECK(too_deep_at(*compile(ack(parens(room + 1)))) == "2:269");  // the 256th `(`
    CHECK(too_deep_at(*compile(ack(parens(20'000)))) == "2:269");
    CHECK(too_deep_at(*compile(ack(times("(", 20'000)))) == "2:269");  // never closed

    checks_clean(*compile(ack(nots(room))));
    CHECK(too_deep_at(*compile(ack(nots(20'000)))) == "2:1034");

    checks_clean(*compile(ack(minuses(room))));
    CHECK(too_deep_at(*compile(ack(minuses(200'000)))) == "2:524");

    checks_clean(*compile(ack(randoms(room))));
    CHECK(too_deep_at(*compile(ack(randoms(20'000)))) == "2:" + std::to_string(14 + 7 * room));

    checks_clean(*compile(ack(interpolations(room))));
    CHECK(too_deep_at(*compile(ack(interpolations(20'000)))) == "2:525");  // the `{` of the 256th
}

TEST_CASE("a long chain of operators is built without recursion and stops at the limit", "[dsl][limits]") {
    checks_clean(*compile(ack(chain(max_nesting))));  // 255 operators
    auto c = compile(ack(chain(200'000)));
    CHECK(too_deep_at(*c) == "2:1036");  // the 256th `+`
    REQUIRE(c->diags.all()[0].notes.size() == 1);
    CHECK(c->diags.all()[0].notes[0].message.find("one level per operator") != std::string::npos);
    // `and` and `or` chain the same way.
    CHECK(too_deep_at(*compile(ack("1" + times(" or 1", 100'000)))) == "2:" + std::to_string(16 + 5 * 255));
}

TEST_CASE("statements nest up to the limit, counting the expressions inside them", "[dsl][limits]") {
    checks_clean(*compile(repeats(max_nesting)));
    CHECK(too_deep_at(*compile(repeats(max_nesting + 1))) == "2:" + std::to_string(10 + 11 * max_nesting));
    CHECK(too_deep_at(*compile(repeats(20'000))) == "2:" + std::to_string(10 + 11 * max_nesting));
    checks_clean(*compile(afters(max_nesting)));
    CHECK(too_deep_at(*compile(afters(20'000))) == "3:" + std::to_string(10 + 12 * max_nesting));

    // 200 blocks and the `ack` are 201 levels: 55 parentheses more fit, 56 do not.
    auto in_blocks = [](int open) {
        return "node n at :1 {\n on c -> " + times("repeat 1 { ", 200) + "ack " + parens(open) + times(" }", 200) +
               "\n}\n";
    };
    checks_clean(*compile(in_blocks(55)));
    CHECK(too_deep_at(*compile(in_blocks(56))) == "2:" + std::to_string(10 + 11 * 200 + 4 + 55));
}

TEST_CASE("actions run from actions count as nested in the statement that runs them", "[dsl][limits]") {
    // The `ack` of the last action runs n + 1 levels deep.
    checks_clean(*compile(calls(max_nesting - 1)));
    auto c = compile(calls(100'000));
    CHECK(too_deep_at(*c) == "258:16");  // `a256` in `action a255 { a256 }`: level 257
    REQUIRE(c->diags.all()[0].notes.size() == 1);
    CHECK(c->sm.text(*c->diags.all()[0].notes[0].span) == "c");  // counted from the rule
    CHECK(too_deep_at(*compile(calls(max_nesting))) == std::to_string(max_nesting + 2) + ":" +
                                                          std::to_string(13 + std::to_string(max_nesting - 1).size()));

    // Blocks inside actions count too: three actions of 90 levels each, run from a timer.
    std::string text = "node n {\n pin p = out gpiochip0 1\n every 1s -> a1\n";
    for (int a = 1; a <= 3; ++a)
        text += " action a" + std::to_string(a) + " { " + times("repeat 2 { ", 89) +
                (a < 3 ? "a" + std::to_string(a + 1) : std::string("toggle p")) + times(" }", 89) + " }\n";
    text += "}\n";
    // a1's call of a2 runs at level 91, a2's of a3 at 181; a3's 76th `repeat` is the 257th level.
    CHECK(too_deep_at(*compile(text)) == "6:" + std::to_string(14 + 11 * 75));
}

TEST_CASE("includes nest up to max_include_depth files", "[dsl][limits][include]") {
    const fs::path dir = fs::temp_directory_path() / "meshrun-include-depth-test";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const int files = max_include_depth + 10;
    auto file = [](int i) { return std::string("f").append(std::to_string(i)).append(".mesh"); };
    for (int i = 0; i < files; ++i) {
        std::ofstream out(dir / file(i));
        if (i + 1 < files) out << "include \"" << file(i + 1) << "\"\n";
        out << "node n" << i << " at :" << 1000 + i << " { on c -> ack 1 }\n";
    }
    SourceManager sm;
    Diagnostics diags;
    const Program program = parse_file((dir / "f0.mesh").string(), sm, diags);
    REQUIRE(diags.all().size() == 1);
    CHECK(diags.all()[0].kind == Kind::too_deep);
    // f0 includes f1 (1 deep), ..., f63 includes f64 (64 deep): f64's include is one too many.
    CHECK(sm.file(diags.all()[0].span.file).path == (dir / file(max_include_depth)).string());
    CHECK(program.nodes.size() == static_cast<std::size_t>(max_include_depth) + 1);
    fs::remove_all(dir);
}

TEST_CASE("meshrun check reports deep files with exit status 1, not a crash", "[dsl][limits][cli]") {
    const fs::path dir = fs::temp_directory_path() / "meshrun-deep-cli-test";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::pair<const char*, std::string> files[] = {
        {"parens.mesh", ack(parens(20'000))},
        {"nots.mesh", ack(nots(20'000))},
        {"chain.mesh", ack(chain(200'000))},
        {"repeats.mesh", repeats(20'000)},
        {"calls.mesh", calls(100'000)},
    };
    for (const auto& [name, text] : files) {
        DYNAMIC_SECTION(name) {
            std::ofstream(dir / name) << text;
            const fs::path err = dir / (std::string(name) + ".err");
            const std::string command =
                std::string(meshrun::build_paths::meshrun) + " check " + (dir / name).string() + " >/dev/null 2>" + err.string();
            const int status = std::system(command.c_str());
            REQUIRE(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 1);
            std::ifstream in(err);
            std::stringstream ss;
            ss << in.rdbuf();
            CHECK(ss.str().find("error: nested too deeply") != std::string::npos);
            CHECK(ss.str().find("[too-deep]") != std::string::npos);
        }
    }
    fs::remove_all(dir);
}
