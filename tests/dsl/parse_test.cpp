// The parser: grammar soundness, the AST it builds, and what its syntax errors say.
#include <cstdint>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <tao/pegtl/contrib/analyze.hpp>

#include "grammar.hpp"
#include "meshrun/dsl/frontend.hpp"

using namespace meshrun::dsl;

namespace {

struct Parsed {
    SourceManager sm;
    Diagnostics diags;
    Program program;
    std::string text(Span s) const { return std::string(sm.text(s)); }
    std::string errors() const {
        std::string out;
        for (const auto& d : diags.all()) out += render_text(d, sm);
        return out;
    }
};

std::unique_ptr<Parsed> parse(std::string text) {
    auto p = std::make_unique<Parsed>();
    p->program = parse_text("test.mesh", std::move(text), p->sm, p->diags);
    return p;
}

const Expr& guard_of(const Parsed& p) { return *p.program.nodes.at(0).rules.at(0).guard; }

// A compact rendering of an expression tree, to compare shapes.
std::string show(const Expr& e) {
    using K = Expr::Kind;
    static const char* ops[] = {"or", "and", "==", "!=", "<", "<=", ">", ">=", "+", "-"};
    switch (e.kind) {
        case K::number: return e.text;
        case K::name: return e.text;
        case K::value: return "value";
        case K::tick: return "tick";
        case K::text: return "'" + e.text + "'";
        case K::random: return "random(" + show(e.operands[0]) + ")";
        case K::not_: return "(not " + show(e.operands[0]) + ")";
        case K::neg: return "(-" + show(e.operands[0]) + ")";
        case K::binary: {
            std::string out = "(";
            out += show(e.operands[0]);
            out += " ";
            out += ops[static_cast<int>(e.op)];
            out += " ";
            out += show(e.operands[1]);
            return out + ")";
        }
        case K::string: {
            std::string out = "str[";
            for (const auto& part : e.operands) out += show(part) + ";";
            return out + "]";
        }
    }
    return "?";
}

std::string guard(const std::string& expression) {
    auto p = parse("node n at :1 {\n pin a = in gpiochip0 1\n on a when " + expression + " -> toggle a\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    return show(guard_of(*p));
}

}  // namespace

TEST_CASE("the grammar has no rule that can loop without consuming input", "[dsl][grammar]") {
    CHECK(tao::pegtl::analyze<grammar::file>(1) == 0);
}

TEST_CASE("the sketch's arduino fleet parses into the AST it describes", "[dsl][parse]") {
    auto p = parse(R"(# arduino.mesh
mesh arduino

node clock {                                  # no port: a client, it serves nothing
    every 1s 5 times -> send tick to iopin/datafeed
}

node iopin at localhost:8765 {
    pin led = out gpiochip0 17
    on datafeed -> {
        log "new tick triggered on datafeed: {value}"
        repeat 3 {
            led = random(0.4)                 # 1 with probability 0.4
            send led to buzzer/signal
        }
        ack "acknowledged"
    }
}

node buzzer at localhost:8766 {
    pin horn = out gpiochip0 18
    action buzz { horn = 1; ack "buzz buzz buzz" }
    on signal 1 -> buzz
    on signal   -> { horn = 0; ack "..." }
}
)");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    const Program& prog = p->program;
    REQUIRE(prog.mesh_name);
    CHECK(prog.mesh_name->name == "arduino");
    REQUIRE(prog.nodes.size() == 3);

    const Node& clock = prog.nodes[0];
    CHECK(clock.name.name == "clock");
    CHECK_FALSE(clock.address);
    REQUIRE(clock.timers.size() == 1);
    CHECK(clock.timers[0].period.micros == 1'000'000);
    REQUIRE(clock.timers[0].times);
    CHECK(clock.timers[0].times->value == 5);
    REQUIRE(clock.timers[0].body.size() == 1);
    const Stmt& send = clock.timers[0].body[0];
    CHECK(send.kind == Stmt::Kind::send);
    CHECK(send.expr.kind == Expr::Kind::tick);
    CHECK(send.node.name == "iopin");
    CHECK(send.channel.name == "datafeed");
    CHECK(p->text(send.node.span) == "iopin");

    const Node& iopin = prog.nodes[1];
    REQUIRE(iopin.address);
    CHECK(iopin.address->host == "localhost");
    CHECK(iopin.address->port->value == 8765);
    REQUIRE(iopin.pins.size() == 1);
    CHECK(iopin.pins[0].direction == meshrun::drivers::Direction::output);
    CHECK(iopin.pins[0].chip == "gpiochip0");
    CHECK(iopin.pins[0].line == "17");
    const Rule& feed = iopin.rules.at(0);
    CHECK(feed.source.name == "datafeed");
    CHECK_FALSE(feed.pattern);
    REQUIRE(feed.body.size() == 3);
    CHECK(feed.body[0].kind == Stmt::Kind::log);
    CHECK(show(feed.body[0].expr) == "str['new tick triggered on datafeed: ';value;]");
    CHECK(feed.body[1].kind == Stmt::Kind::repeat);
    CHECK(feed.body[1].count.value == 3);
    REQUIRE(feed.body[1].body.size() == 2);
    CHECK(show(feed.body[1].body[0].expr) == "random(0.4)");
    CHECK(feed.body[2].kind == Stmt::Kind::ack);

    const Node& buzzer = prog.nodes[2];
    REQUIRE(buzzer.actions.size() == 1);
    CHECK(buzzer.actions[0].body.size() == 2);
    REQUIRE(buzzer.rules.size() == 2);
    CHECK(buzzer.rules[0].pattern->literal_text() == "1");
    CHECK(buzzer.rules[0].body.at(0).kind == Stmt::Kind::call);
    CHECK(buzzer.rules[0].body.at(0).target.name == "buzz");
    CHECK_FALSE(buzzer.rules[1].pattern);
    CHECK(buzzer.rules[1].body.size() == 2);
}

TEST_CASE("operators bind loosest first: or, and, not, comparisons, + -, unary minus", "[dsl][parse]") {
    CHECK(guard("not a == 1 and a or a") == "(((not (a == 1)) and a) or a)");
    CHECK(guard("a or a and a") == "(a or (a and a))");
    CHECK(guard("-3 + 2 < a - -1") == "(((-3) + 2) < (a - (-1)))");
    CHECK(guard("1 - 2 - 3 >= 0") == "(((1 - 2) - 3) >= 0)");
    CHECK(guard("(a or a) and not not a") == "((a or a) and (not (not a)))");
    CHECK(guard("value != \"x\" and tick <= 0.5") == "((value != str['x';]) and (tick <= 0.5))");
}

TEST_CASE("names may hold dashes but not end in one, so arrows and minus still read", "[dsl][parse]") {
    auto p = parse("node dock-1 at :9 {\n pin a-b = in gpiochip0 3\n on a-b when a-b - 1 > 0 -> toggle a-b\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    CHECK(p->program.nodes[0].name.name == "dock-1");
    CHECK(show(guard_of(*p)) == "((a-b - 1) > 0)");
}

TEST_CASE("strings unescape and interpolate", "[dsl][parse]") {
    auto p = parse("node n at :9 {\n on c -> log \"a\\\"b\\\\c\\nd\\{e\\} {value + 1}!\"\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    const Expr& e = p->program.nodes[0].rules[0].body[0].expr;
    CHECK(show(e) == "str['a\"b\\c\nd{e} ';(value + 1);'!';]");
    CHECK(e.has_interpolation());
}

TEST_CASE("durations read in every unit", "[dsl][parse]") {
    auto p = parse("node n {\n every 250us -> {}\n every 20ms -> {}\n every 1s -> {}\n every 2m -> {}\n every 1h -> {}\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    const auto& t = p->program.nodes[0].timers;
    REQUIRE(t.size() == 5);
    CHECK(t[0].period.micros == 250);
    CHECK(t[1].period.micros == 20'000);
    CHECK(t[2].period.micros == 1'000'000);
    CHECK(t[3].period.micros == 120'000'000);
    CHECK(t[4].period.micros == 3'600'000'000ULL);
}

TEST_CASE("format_duration writes a duration in its largest whole unit, and zero as 0s", "[dsl][duration]") {
    CHECK(format_duration(0) == "0s");
    CHECK(format_duration(1) == "1us");
    CHECK(format_duration(999) == "999us");
    CHECK(format_duration(1'500) == "1500us");
    CHECK(format_duration(1'000) == "1ms");
    CHECK(format_duration(1'001'000) == "1001ms");
    CHECK(format_duration(1'000'000) == "1s");
    CHECK(format_duration(90'000'000) == "90s");
    CHECK(format_duration(60'000'000) == "1m");
    CHECK(format_duration(5'400'000'000ULL) == "90m");
    CHECK(format_duration(3'600'000'000ULL) == "1h");
    CHECK(format_duration(7ULL * 24 * 3'600'000'000ULL) == "168h");
    // What it writes reads back as the same duration.
    auto p = parse("node n {\n every 1500us -> {}\n every 1001ms -> {}\n every 90s -> {}\n every 90m -> {}\n every 2h -> {}\n}\n");
    REQUIRE(p->diags.all().empty());
    for (const Timer& t : p->program.nodes[0].timers) CHECK(format_duration(t.period.micros) == p->text(t.period.span));
}

TEST_CASE("separators: newline, `;`, before `}`, and a newline after `->` or `{`", "[dsl][parse]") {
    auto p = parse("node n at [::1]:9000 { pin p = out \"pinctrl-bcm2835\" \"GPIO17\" active_low initial 1; on c ->\n"
                   "   {\n p = 1; p = 0\n toggle p }\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    const Node& n = p->program.nodes[0];
    CHECK(n.address->host == "::1");
    CHECK(p->text(n.address->host_span) == "[::1]");
    CHECK(n.pins[0].chip == "pinctrl-bcm2835");
    CHECK(n.pins[0].chip_quoted);
    CHECK(n.pins[0].line == "GPIO17");
    CHECK(n.pins[0].active_low);
    CHECK(n.pins[0].initial->value == 1);
    CHECK(n.rules[0].body.size() == 3);
}

TEST_CASE("contextual keywords stay usable as names", "[dsl][parse]") {
    auto p = parse("node n at :1 {\n on in -> ack 1\n on to -> ack 2\n on times -> ack 3\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    CHECK(p->program.nodes[0].rules[0].source.name == "in");
}

TEST_CASE("tls takes its files in any order, as written", "[dsl][parse]") {
    auto p = parse("tls key \"k.key\" ca \"certs/ca.crt\"   # mutual\n"
                   "tls cert \"a b.crt\"; tls cert \"\\\"q\\\".crt\" key \"\"\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    const auto& tls = p->program.tls;
    REQUIRE(tls.size() == 3);  // the checker, not the parser, allows one
    CHECK(p->text(tls[0].span) == "tls key \"k.key\" ca \"certs/ca.crt\"");
    CHECK(p->text(tls[0].keyword) == "tls");
    REQUIRE(tls[0].files.size() == 2);
    CHECK(tls[0].files[0].option == "key");
    CHECK(tls[0].files[0].path == "k.key");
    CHECK(p->text(tls[0].files[0].span) == "key \"k.key\"");
    CHECK(p->text(tls[0].files[0].path_span) == "\"k.key\"");
    CHECK(tls[0].find("ca")->path == "certs/ca.crt");
    CHECK(tls[0].find("cert") == nullptr);
    CHECK(tls[1].find("cert")->path == "a b.crt");
    CHECK(tls[2].find("cert")->path == "\"q\".crt");  // escapes as in any string
    CHECK(tls[2].find("key")->path.empty());            // an error of the checker's
}

TEST_CASE("limits read one a line or several a line, with the value in its unit's base", "[dsl][parse]") {
    auto p = parse("limits {\n    message 64KiB   # a size\n connections 1024; handshake 250ms\n"
                   "  idle 2m; outbox 1MiB\n  x 5h; y 3us; z 64KB\n huge 99999999999999999999999MiB }\n"
                   "limits {}\nlimits {\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    REQUIRE(p->program.limits.size() == 3);
    CHECK(p->program.limits[1].limits.empty());
    const Limits& l = p->program.limits[0];
    CHECK(p->text(l.keyword) == "limits");
    REQUIRE(l.limits.size() == 9);
    using U = Limit::Unit;
    struct Want {
        const char* name;
        U unit;
        std::uint64_t value;
        const char* text;
    };
    const Want want[] = {
        {"message", U::size, 65536, "64KiB"},   {"connections", U::count, 1024, "1024"},
        {"handshake", U::duration, 250'000, "250ms"}, {"idle", U::duration, 120'000'000, "2m"},
        {"outbox", U::size, 1 << 20, "1MiB"},
        {"x", U::duration, 5 * 3'600'000'000ULL, "5h"}, {"y", U::duration, 3, "3us"},
        {"z", U::unknown, 64, "64KB"},          {"huge", U::size, UINT64_MAX, "99999999999999999999999MiB"},
    };
    for (std::size_t i = 0; i < l.limits.size(); ++i) {
        INFO(want[i].name);
        CHECK(l.limits[i].name.name == want[i].name);
        CHECK(l.limits[i].unit == want[i].unit);
        CHECK(l.limits[i].value == want[i].value);
        CHECK(l.limits[i].text == want[i].text);
        CHECK(p->text(l.limits[i].value_span) == want[i].text);
        CHECK(p->text(l.limits[i].span) == std::string(want[i].name) + " " + want[i].text);
    }
}

TEST_CASE("`tls` and `limits` start items only at the top level: elsewhere they are names", "[dsl][parse]") {
    auto p = parse("node tls at :1 {\n on limits -> ack 1\n on cert -> ack 2\n action ca { log \"x\" }\n"
                   " on key -> ca\n}\nnode limits { every 1s -> send 1 to tls/limits }\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    REQUIRE(p->program.nodes.size() == 2);
    CHECK(p->program.nodes[0].name.name == "tls");
    CHECK(p->program.nodes[0].rules[0].source.name == "limits");
    CHECK(p->program.nodes[1].name.name == "limits");
    CHECK(p->program.tls.empty());
    CHECK(p->program.limits.empty());
}

TEST_CASE("test blocks parse every statement", "[dsl][parse]") {
    auto p = parse("test \"t\" {\n send 1 to b/signal expect \"buzz\"\n drive b.button = 1\n advance 5s\n"
                   " expect b.horn == 1 within 100ms\n expect b.horn != 0\n expect b received 15 on signal\n"
                   " expect b.horn history \"1 0 1\"\n expect b logged \"buzz\"\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    const auto& body = p->program.tests.at(0).body;
    REQUIRE(body.size() == 8);
    CHECK(body[0].kind == TestStmt::Kind::send);
    CHECK(body[0].expect->literal_text() == "buzz");
    CHECK(body[1].kind == TestStmt::Kind::drive);
    CHECK(body[1].member.name == "button");
    CHECK(body[2].duration.micros == 5'000'000);
    CHECK(body[3].within->micros == 100'000);
    CHECK(body[4].op == BinOp::ne);
    CHECK(body[5].kind == TestStmt::Kind::expect_received);
    CHECK(body[5].count.value == 15);
    CHECK(body[6].kind == TestStmt::Kind::expect_history);
    CHECK(body[6].member.name == "horn");
    CHECK(body[6].expect->literal_text() == "1 0 1");
    CHECK(body[7].kind == TestStmt::Kind::expect_logged);
    CHECK(body[7].expect->literal_text() == "buzz");
}

TEST_CASE("a syntax error says what was expected where, and what was found", "[dsl][parse]") {
    struct Case {
        const char* text;
        const char* message;
        const char* at;  // line:column
    };
    const Case cases[] = {
        {"node buzzer at localhost:8766\n", "expected `{` after the node name (or `at HOST:PORT`), found end of line", "1:30"},
        {"node n at :1 {\n on c -> send 1 to buzzer\n}\n", "expected `/` between node and channel, as in `buzzer/signal`, found end of line", "2:26"},
        {"node n at :1 {\n on c -> log \"a\\q\"\n}\n", "unknown escape `\\q`; the escapes are `\\\"`, `\\\\`, `\\n`, `\\{` and `\\}`", "2:16"},
        {"node n at :1 {\n on c -> log \"a\\tb\"\n}\n", "unknown escape `\\t`; the escapes are `\\\"`, `\\\\`, `\\n`, `\\{` and `\\}`", "2:16"},
        {"node n at :1 {\n on c -> log \"{}\"\n}\n", "expected an expression after `{` in the string, found `}`", "2:16"},
        {"node n at :1 {\n on c -> log \"abc\n}\n", "expected `\"` to close the string, found end of line", "2:18"},
        {"node n {\n pin p = out gpiochip0 17 pullup\n}\n", "expected a pin option (`active_low`, `initial`, `pull_up`, `pull_down`, `debounce`) or the end of the line, found `pullup`", "2:27"},
        {"node n {\n every 1 -> {}\n}\n", "expected a duration such as `1s` or `250ms` after `every`, found `1`", "2:8"},
        {"node n at :1 {\n on c -> ack 1 +\n}\n", "expected an expression after the operator, found end of line", "2:17"},
        {"nod n {}\n", "expected `node`, `test`, `include`, `mesh`, `secret`, `tls`, `limits` or `discovery`, found `nod`", "1:1"},
        {"node n {\n frobnicate\n}\n", "expected `pin`, `var`, `action`, `every`, `on` or `}`, found `frobnicate`", "2:2"},
        {"node n at :1 {\n on c -> { ack 1 ack 2 }\n}\n", "expected a newline or `;` after the statement, found `ack`", "2:18"},
        {"test \"t\" {\n expect b horn\n}\n", "expected `.PIN == LEVEL`, `.PIN history \"1 0\"`, `received N on CHANNEL` or `logged \"TEXT\"` after the node, found `horn`", "2:11"},
        {"node send {}\n", "expected a node name after `node`, found `send`", "1:6"},
        {"tls cert node.crt\n", "expected the certificate's file in quotes after `cert`, as in `cert \"node.crt\"`, found `node`", "1:10"},
        {"tls\n", "expected `cert \"FILE\"`, `key \"FILE\"` or `ca \"FILE\"` after `tls`, found end of line", "1:4"},
        {"tls key \"k\" ca\n", "expected the authority's certificate file in quotes after `ca`, as in `ca \"fleet-ca.crt\"`, found end of line", "1:15"},
        {"tls cert \"c\" key \"k\" mutual\n", "expected `cert`, `key`, `ca` or the end of the line, found `mutual`", "1:22"},
        {"limits\n", "expected `{` after `limits`, found end of line", "1:7"},
        {"limits { idle }\n", "expected a value after the limit's name, such as `64KiB`, `1024` or `5s`, found `}`", "1:15"},
        {"limits { idle 5s outbox 4 }\n", "expected a newline or `;` after the limit, found `outbox`", "1:18"},
        {"limits {\n 64KiB\n}\n", "expected a limit, such as `message 64KiB`, or `}`, found `64KiB`", "2:2"},
        {"limits { message 1.5MiB }\n", "expected a newline or `;` after the limit, found `.`", "1:19"},
    };
    for (const auto& c : cases) {
        auto p = parse(c.text);
        INFO(c.text);
        REQUIRE(p->diags.all().size() == 1);
        const Diagnostic& d = p->diags.all()[0];
        CHECK(d.kind == Kind::syntax);
        CHECK(d.message == c.message);
        const Location loc = p->sm.file(0).locate(d.span.begin);
        CHECK(std::to_string(loc.line) + ":" + std::to_string(loc.column) == c.at);
    }
}

TEST_CASE("syntax errors in strings and names say what to write instead", "[dsl][parse]") {
    auto note_of = [](const std::string& text) {
        auto p = parse(text);
        INFO(p->errors());
        REQUIRE(p->diags.all().size() == 1);
        REQUIRE(p->diags.all()[0].notes.size() == 1);
        return p->diags.all()[0].notes[0].message;
    };
    const std::string brace = "in a string, `{` starts an interpolation such as `{value}`; to write a brace, escape it: `\\{` or `\\}`";
    CHECK(note_of("node n at :1 {\n on c -> log \"{}\"\n}\n") == brace);
    CHECK(note_of("node n at :1 {\n on c -> ack \"{\\\"ok\\\": true}\"\n}\n") == brace);  // JSON
    CHECK(note_of("node n at :1 {\n on c -> ack \"{value x}\"\n}\n") == brace);
    CHECK(note_of("node n at :1 {\n on c -> log \"a\\tb\"\n}\n") == "a string may hold a tab as it is");
    CHECK(note_of("node test at :1 {}\n") == "`test` is a reserved word, which cannot be a name");
    CHECK(note_of("node n {\n pin on = out gpiochip0 1\n}\n") == "`on` is a reserved word, which cannot be a name");
    CHECK(note_of("node n at :1 {\n on c -> send 1 to n/value\n}\n") ==
          "`value` is a reserved word, which cannot be a name");

    auto p = parse("node n at :1 {\n on c -> log \"a\\");
    REQUIRE(p->diags.all().size() == 1);
    CHECK(p->diags.all()[0].message ==
          "expected an escaped character after `\\`, found end of file; the escapes are `\\\"`, `\\\\`, `\\n`, `\\{` and `\\}`");
}

TEST_CASE("after a syntax error the parser goes on with the next top-level item", "[dsl][parse]") {
    auto p = parse("node a {\n pin = out\n}\nnode b at :1 {\n on c -> ack (1\n}\nnode good at :2 {\n on c -> ack 1\n}\n");
    REQUIRE(p->diags.all().size() == 2);
    CHECK(p->sm.file(0).locate(p->diags.all()[0].span.begin).line == 2);
    CHECK(p->sm.file(0).locate(p->diags.all()[1].span.begin).line == 5);  // the `)` is missing there
    REQUIRE(p->program.nodes.size() == 1);
    CHECK(p->program.nodes[0].name.name == "good");
}

TEST_CASE("includes splice files relative to the includer and report in the right file", "[dsl][parse][include]") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / "meshrun-include-test";
    fs::remove_all(dir);
    fs::create_directories(dir / "sub");
    auto write = [&](const fs::path& path, const std::string& text) { std::ofstream(path) << text; };
    write(dir / "root.mesh", "mesh root\ninclude \"sub/a.mesh\"\nnode r at :1 { on c -> ack 1 }\n");
    write(dir / "sub" / "a.mesh", "mesh ignored\ninclude \"b.mesh\"\nnode a at :2 { on c -> ack 1 }\n");
    write(dir / "sub" / "b.mesh", "node b at :3 { on c -> ack (1 }\n");

    SourceManager sm;
    Diagnostics diags;
    Program prog = parse_file((dir / "root.mesh").string(), sm, diags);
    CHECK(prog.mesh_name->name == "root");
    REQUIRE(diags.all().size() == 1);
    CHECK(sm.file(diags.all()[0].span.file).path == (dir / "sub" / "b.mesh").string());
    REQUIRE(prog.nodes.size() == 2);
    CHECK(prog.nodes[0].name.name == "a");
    CHECK(prog.nodes[1].name.name == "r");

    SECTION("a missing file is an error at the include line") {
        write(dir / "sub" / "b.mesh", "include \"nowhere.mesh\"\n");
        SourceManager sm2;
        Diagnostics d2;
        (void)parse_file((dir / "root.mesh").string(), sm2, d2);
        REQUIRE(d2.all().size() == 1);
        CHECK(d2.all()[0].kind == Kind::include_not_found);
        CHECK(sm2.text(d2.all()[0].span) == "include \"nowhere.mesh\"");
    }
    SECTION("a cycle is an error at the include that closes it, with a note at each include of the cycle") {
        write(dir / "sub" / "b.mesh", "include \"../root.mesh\"\n");
        SourceManager sm2;
        Diagnostics d2;
        (void)parse_file((dir / "root.mesh").string(), sm2, d2);
        REQUIRE(d2.all().size() == 1);
        const Diagnostic& d = d2.all()[0];
        CHECK(d.kind == Kind::include_cycle);
        CHECK(sm2.file(d.span.file).path == (dir / "sub" / "b.mesh").string());
        REQUIRE(d.notes.size() == 2);
        REQUIRE(d.notes[0].span);
        CHECK(sm2.file(d.notes[0].span->file).path == (dir / "root.mesh").string());
        CHECK(sm2.text(*d.notes[0].span) == "include \"sub/a.mesh\"");
        CHECK(d.notes[0].message.ends_with("root.mesh` includes `" + (dir / "sub" / "a.mesh").string() + "` here"));
        REQUIRE(d.notes[1].span);
        CHECK(sm2.file(d.notes[1].span->file).path == (dir / "sub" / "a.mesh").string());
        CHECK(sm2.text(*d.notes[1].span) == "include \"b.mesh\"");
    }
    SECTION("an unreadable include says why") {
        auto message = [&](const std::string& include) {
            write(dir / "sub" / "b.mesh", "include \"" + include + "\"\n");
            SourceManager sm2;
            Diagnostics d2;
            (void)parse_file((dir / "root.mesh").string(), sm2, d2);
            REQUIRE(d2.all().size() == 1);
            CHECK(d2.all()[0].kind == Kind::include_not_found);
            return d2.all()[0].message;
        };
        CHECK(message("nowhere.mesh").ends_with("nowhere.mesh`: No such file or directory"));
        fs::create_directories(dir / "sub" / "adir.mesh");
        CHECK(message("adir.mesh").ends_with("adir.mesh`: Is a directory"));
        write(dir / "sub" / "secret.mesh", "node s {}\n");
        fs::permissions(dir / "sub" / "secret.mesh", fs::perms::none);
        if (std::ifstream(dir / "sub" / "secret.mesh")) {
            WARN("running as root: a file without permissions is still readable, not tested");
        } else {
            CHECK(message("secret.mesh").ends_with("secret.mesh`: Permission denied"));
        }
    }
    fs::remove_all(dir);
}

// ---- `if` / `else if` / `else` --------------------------------------------------

namespace {

// A compact rendering of an `if`: `if(COND){N} elif(COND){N} else{N}` with N the statements of each branch.
std::string show_if(const Stmt& s) {
    std::string out;
    for (std::size_t i = 0; i < s.branches.size(); ++i) {
        const Branch& b = s.branches[i];
        if (i > 0) out += " ";
        // Appended piece by piece: `"if(" + ... + ")"` trips GCC 12's -Wrestrict here.
        if (b.condition) {
            out += i == 0 ? "if(" : "elif(";
            out += show(*b.condition);
            out += ')';
        } else {
            out += "else";
        }
        out += '{';
        out += std::to_string(b.body.size());
        out += '}';
    }
    return out;
}

}  // namespace

TEST_CASE("`if` parses with `else if` chains, with `else` on the line of `}` or the next", "[dsl][parse][if]") {
    struct Case {
        const char* body;
        const char* shape;
    };
    const Case cases[] = {
        {"if lamp == 1 { lamp = 0 }", "if((lamp == 1)){1}"},
        {"if lamp { lamp = 0; log \"x\" } else { log \"y\" }", "if(lamp){2} else{1}"},
        {"if lamp {\n lamp = 0\n} else {\n log \"y\"\n}", "if(lamp){1} else{1}"},
        {"if lamp {\n lamp = 0\n}\nelse {\n log \"y\"\n}", "if(lamp){1} else{1}"},
        {"if lamp { lamp = 0 }\n  # a comment between\n\n else if value == \"a\" { lamp = 1 } else if not lamp {} else { }",
         "if(lamp){1} elif((value == str['a';])){1} elif((not lamp)){0} else{0}"},
        {"if value > 2 and value < 5 {}", "if(((value > 2) and (value < 5))){0}"},
    };
    for (const Case& c : cases) {
        auto p = parse(std::string("node n at :1 {\n pin lamp = out gpiochip0 1\n on c -> ") + c.body + "\n}\n");
        INFO(c.body);
        INFO(p->errors());
        REQUIRE(p->diags.all().empty());
        const auto& body = p->program.nodes.at(0).rules.at(0).body;
        REQUIRE(body.size() == 1);
        REQUIRE(body[0].kind == Stmt::Kind::if_);
        CHECK(show_if(body[0]) == c.shape);
    }
}

TEST_CASE("branches keep their spans: the keyword, and the branch from it to its `}`", "[dsl][parse][if]") {
    auto p = parse("node n at :1 {\n on c -> if value { ack 1 } else if value == 2 { ack 2 }\n else { ack 3 }\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    const Stmt& s = p->program.nodes[0].rules[0].body.at(0);
    REQUIRE(s.branches.size() == 3);
    CHECK(p->text(s.branches[0].keyword) == "if");
    CHECK(p->text(s.branches[1].keyword) == "else if");
    CHECK(p->text(s.branches[2].keyword) == "else");
    CHECK(p->text(s.branches[1].span) == "else if value == 2 { ack 2 }");
    CHECK(p->text(s.span) == "if value { ack 1 } else if value == 2 { ack 2 }\n else { ack 3 }");
}

TEST_CASE("`if` nests in every body: rules, actions, after, repeat, timers and other ifs", "[dsl][parse][if]") {
    auto p = parse("node n at :1 {\n pin a = out gpiochip0 1\n"
                   " action x { if a { if not a { a = 1 } else { repeat 2 { if a {} } } } }\n"
                   " every 1s -> if tick > 1 { after 1s -> if a { x } }\n"
                   " on c -> repeat 2 { if a { a = 0 } }\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    const Node& n = p->program.nodes[0];
    const Stmt& outer = n.actions[0].body.at(0);
    REQUIRE(outer.kind == Stmt::Kind::if_);
    const Stmt& inner = outer.branches.at(0).body.at(0);
    CHECK(show_if(inner) == "if((not a)){1} else{1}");
    CHECK(inner.branches[1].body.at(0).kind == Stmt::Kind::repeat);
    CHECK(inner.branches[1].body[0].body.at(0).kind == Stmt::Kind::if_);
    const Stmt& timer = n.timers[0].body.at(0);
    REQUIRE(timer.kind == Stmt::Kind::if_);
    CHECK(timer.branches[0].body.at(0).kind == Stmt::Kind::after);
    CHECK(timer.branches[0].body[0].body.at(0).kind == Stmt::Kind::if_);
    CHECK(n.rules[0].body.at(0).body.at(0).kind == Stmt::Kind::if_);
}

TEST_CASE("`if` and `else` are keywords only where a statement starts with them", "[dsl][parse][if]") {
    // A pin `if`, an action `else`, a channel `if`: driven, run and listened to as before.
    auto p = parse("node n at :1 {\n pin if = out gpiochip0 1\n action else -> toggle if\n"
                   " on if -> {\n if = 1\n else\n if if == 1 { else }\n else\n if\n }\n"
                   " on else -> log \"{if}\"\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    const Node& n = p->program.nodes[0];
    CHECK(n.pins[0].name.name == "if");
    CHECK(n.actions[0].name.name == "else");
    CHECK(n.rules[0].source.name == "if");
    const auto& body = n.rules[0].body;
    REQUIRE(body.size() == 5);
    CHECK(body[0].kind == Stmt::Kind::assign);
    CHECK(body[1].kind == Stmt::Kind::call);
    CHECK(body[1].target.name == "else");
    REQUIRE(body[2].kind == Stmt::Kind::if_);
    CHECK(show_if(body[2]) == "if((if == 1)){1}");
    CHECK(body[2].branches[0].body.at(0).kind == Stmt::Kind::call);
    CHECK(body[3].kind == Stmt::Kind::call);  // `else` alone on the next line: the action, not an else
    CHECK(body[4].kind == Stmt::Kind::call);  // `if` alone: the action `if` (none here: the checker says so)
    CHECK(body[4].target.name == "if");
    CHECK(n.rules[1].source.name == "else");
}

TEST_CASE("a misplaced or incomplete `if` or `else` is a syntax error that says what to write", "[dsl][parse][if]") {
    struct Case {
        const char* body;
        const char* message;
        const char* at;  // line:column
    };
    const Case cases[] = {
        {"if { a = 1 }", "expected a condition after `if`, as in `if lamp == 1 { ... }`, found `{`", "2:13"},
        {"if a a = 1", "expected `{` after the condition of `if`, found `a`", "2:15"},
        {"if a\n{ a = 1 }", "expected `{` after the condition of `if`, found end of line", "2:14"},
        {"{ a = 1\n else { a = 0 } }", "expected a statement (`else` goes after the `}` of an `if`), found `else`", "3:2"},
        {"{ a = 1; else if a { a = 0 } }", "expected a statement (`else` goes after the `}` of an `if`), found `else`", "2:19"},
        {"if a { a = 1 } else if { a = 0 }", "expected a condition after `if`, as in `if lamp == 1 { ... }`, found `{`", "2:33"},
        {"if a { a = 1 } else a = 0", "expected `{` or `if` after `else`, found `a`", "2:30"},
        {"if a { a = 1 } else", "expected `{` or `if` after `else`, found end of line", "2:29"},
        {"if a { a = 1 } else if a { a = 0 } else if", "expected a condition after `if`, as in `if lamp == 1 { ... }`, found end of line", "2:52"},
    };
    for (const Case& c : cases) {
        auto p = parse(std::string("node n at :1 {\n on c -> ") + c.body + "\n pin a = out gpiochip0 1\n}\n");
        INFO(c.body);
        REQUIRE(p->diags.all().size() == 1);
        const Diagnostic& d = p->diags.all()[0];
        CHECK(d.kind == Kind::syntax);
        CHECK(d.message == c.message);
        const auto pos = p->sm.file(d.span.file).locate(d.span.begin);
        CHECK(std::to_string(pos.line) + ":" + std::to_string(pos.column) == c.at);
    }
}

TEST_CASE("`var`, `after D as NAME` and `cancel NAME` build their AST", "[dsl][parse][state]") {
    auto p = parse("node n at :1 {\n pin lamp = out gpiochip0 1\n var visits = 0\n var mode = \"day\"\n var t = -1.5\n"
                   " on motion -> {\n visits = visits + 1\n after 5m as lights_off -> lamp = 0\n"
                   " after 1s -> lamp = 1\n cancel lights_off\n }\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    const Node& n = p->program.nodes[0];
    REQUIRE(n.vars.size() == 3);
    CHECK(n.vars[0].name.name == "visits");
    CHECK(n.vars[0].initial.literal_text() == "0");
    CHECK(n.vars[1].initial.literal_text() == "day");
    CHECK(n.vars[2].initial.literal_text() == "-1.5");
    CHECK(p->text(n.vars[1].span) == "var mode = \"day\"");
    const auto& body = n.rules[0].body;
    REQUIRE(body.size() == 4);
    CHECK(body[0].kind == Stmt::Kind::assign);
    CHECK(body[0].target.name == "visits");
    REQUIRE(body[1].kind == Stmt::Kind::after);
    CHECK(body[1].target.name == "lights_off");
    CHECK(body[1].delay.micros == 300'000'000);
    CHECK(body[1].body.at(0).kind == Stmt::Kind::assign);
    CHECK(body[2].kind == Stmt::Kind::after);
    CHECK(body[2].target.name.empty());
    CHECK(body[3].kind == Stmt::Kind::cancel);
    CHECK(body[3].target.name == "lights_off");
    CHECK(p->text(body[3].target.span) == "lights_off");
}

TEST_CASE("`var`, `as` and `cancel` are names wherever they are not starting their forms", "[dsl][parse][state]") {
    // A pin `var`, a variable `as`, a delay `as`, an action `cancel` run alone and with `;` after it.
    auto p = parse("node n at :1 {\n pin var = out gpiochip0 1\n var as = 0\n action cancel -> var = 0\n"
                   " on cancel -> {\n cancel\n cancel; as = as + 1\n after 1s as as -> var = 1\n cancel as\n"
                   " cancel = 1\n }\n}\n");
    INFO(p->errors());
    REQUIRE(p->diags.all().empty());
    const Node& n = p->program.nodes[0];
    CHECK(n.pins.at(0).name.name == "var");
    CHECK(n.vars.at(0).name.name == "as");
    CHECK(n.rules.at(0).source.name == "cancel");
    const auto& body = n.rules[0].body;
    REQUIRE(body.size() == 6);
    CHECK(body[0].kind == Stmt::Kind::call);
    CHECK(body[1].kind == Stmt::Kind::call);
    CHECK(body[2].kind == Stmt::Kind::assign);
    CHECK(body[3].kind == Stmt::Kind::after);
    CHECK(body[3].target.name == "as");
    CHECK(body[4].kind == Stmt::Kind::cancel);
    CHECK(body[4].target.name == "as");
    CHECK(body[5].kind == Stmt::Kind::assign);  // `cancel = 1` drives a pin named `cancel` (none here)
    CHECK(body[5].target.name == "cancel");
}

TEST_CASE("the checker resolves variables and named delays", "[dsl][check][state]") {
    SourceManager sm;
    Diagnostics diags;
    Compiled c = compile_text("t.mesh",
                              "node n at :1 {\n pin lamp = out gpiochip0 1\n var count = 0\n"
                              " on reset -> { cancel off; cancel blink }\n"
                              " on motion -> {\n count = count + 1\n lamp = 1\n after 5m as off -> lamp = 0\n"
                              " after 1s as blink -> lamp = 0\n after 2m as off -> lamp = 0\n ack \"{count}\"\n }\n}\n"
                              "test \"t\" { expect n.count == 0 }\n",
                              sm, diags);
    INFO(diags.all().size());
    REQUIRE(!diags.has_errors());
    const Node& n = c.program.nodes[0];
    REQUIRE(n.delays.size() == 2);  // `off` once, though set twice
    CHECK(n.delays[0].name == "off");
    CHECK(n.delays[1].name == "blink");
    const auto& reset = n.rules[0].body;
    CHECK(reset[0].target.ref.kind == Ref::Kind::delay);
    CHECK(reset[0].target.ref.index == 0);
    CHECK(reset[1].target.ref.index == 1);
    const auto& motion = n.rules[1].body;
    CHECK(motion[0].target.ref.kind == Ref::Kind::var);
    CHECK(motion[0].expr.operands.at(0).ref.kind == Ref::Kind::var);
    CHECK(motion[1].target.ref.kind == Ref::Kind::pin);
    CHECK(motion[4].target.ref.index == 0);
    CHECK(c.program.tests.at(0).body.at(0).member.ref.kind == Ref::Kind::var);
}
