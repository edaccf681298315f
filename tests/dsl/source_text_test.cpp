// Source text: files are UTF-8 (a byte order mark is skipped), columns count
// characters, and what diagnostics show of the source never carries a control
// byte and never a whole megabyte of one line.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "meshrun/dsl/frontend.hpp"
#include "utf8.hpp"

using namespace meshrun::dsl;

namespace {

struct Compiled {
    SourceManager sm;
    Diagnostics diags;
    Program program;
    std::string text() const {
        std::string out;
        for (const auto& d : diags.all()) out += render_text(d, sm);
        return out;
    }
    std::string at(std::size_t i) const {
        const Location loc = sm.file(0).locate(diags.all().at(i).span.begin);
        return std::to_string(loc.line) + ":" + std::to_string(loc.column);
    }
};

std::unique_ptr<Compiled> compile(std::string text) {
    auto c = std::make_unique<Compiled>();
    c->program = parse_text("text.mesh", std::move(text), c->sm, c->diags);
    if (!c->diags.has_errors()) check(c->program, c->diags);
    return c;
}

std::string repeated(std::string_view s, std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n; ++i) out += s;
    return out;
}

}  // namespace

TEST_CASE("UTF-8 is decoded strictly: no overlong forms, surrogates or code points past U+10FFFF", "[dsl][utf8]") {
    CHECK(utf8::decode("\xC3\xBC", 0).code == U'ü');
    CHECK(utf8::decode("\xE2\x82\xAC", 0).size == 3);
    CHECK(utf8::decode("\xF0\x9F\x98\x80", 0).code == 0x1F600);
    for (const char* bad : {"\xFF", "\xC0\x80", "\xC3", "\xC3(", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                            "\x80", "\xE2\x82"}) {
        INFO(bad);
        CHECK_FALSE(utf8::decode(bad, 0).valid);
        CHECK(utf8::decode(bad, 0).size == 1);
    }
    CHECK(utf8::find_invalid("plain ascii, long enough to take the fast path") == std::string_view::npos);
    CHECK(utf8::find_invalid("0123456789abcdef\xFF") == 16);
    CHECK(utf8::length("K\xC3\xBC" "che") == 5);
    CHECK(utf8::printable("a\x1b[31m\tb\r\xFF\xE2\x80\xAE\xC3\xBC") == "a\\x1b[31m\tb\\r\\xff\\u{202e}\xC3\xBC");
    // Eight printable ASCII bytes at once, from space to tilde; anything else is not.
    CHECK(utf8::printable8(" ~azAZ09", 0));
    for (const char* other : {"abc\x7F" "defg", "abcdefg\x1F", "\tbcdefgh", "abcdefg\xC3", "abc"}) {
        INFO(other);
        CHECK_FALSE(utf8::printable8(other, 0));
    }
    CHECK(utf8::width("0123456789\t\xE4\xB8\xAD\x1b\xFF\xCC\x81") == 10 + 1 + 2 + 4 + 4 + 0);
}

TEST_CASE("an invalid byte anywhere is an error at it, one per line", "[dsl][utf8]") {
    auto c = compile("# K\xFC" "che\nnode n at :1 {\n on c -> ack \"ok\xFF\" # \xFF\n}\n");
    INFO(c->text());
    REQUIRE(c->diags.all().size() == 2);
    CHECK(c->diags.all()[0].kind == Kind::invalid_utf8);
    CHECK(c->at(0) == "1:4");
    CHECK(c->diags.all()[0].message == "invalid UTF-8 (byte `\\xfc`): a .mesh file is read as UTF-8");
    CHECK(c->at(1) == "3:17");  // the first of its line
    // A syntax error on an invalid byte is not reported again.
    auto junk = compile("node n at :1 { on c -> ack 1 }\n\xFF\xFE\n");
    REQUIRE(junk->diags.all().size() == 1);
    CHECK(junk->diags.all()[0].kind == Kind::invalid_utf8);
    // Ten lines are reported; a note counts the others.
    auto many = compile(repeated("# \xFF\n", 25) + "node n at :1 { on c -> ack 1 }\n");
    REQUIRE(many->diags.all().size() == 10);
    REQUIRE(many->diags.all()[9].notes.size() == 1);
    CHECK(many->diags.all()[9].notes[0].message == "15 more lines of this file hold invalid UTF-8");
}

TEST_CASE("a byte order mark is skipped, and columns and offsets stay right", "[dsl][utf8]") {
    auto c = compile("\xEF\xBB\xBFnode n at :1 { on c -> ack x }\n");
    INFO(c->text());
    REQUIRE(c->diags.all().size() == 1);
    CHECK(c->diags.all()[0].kind == Kind::unknown_pin);
    CHECK(c->at(0) == "1:28");
    CHECK(c->sm.text(c->diags.all()[0].span) == "x");
    CHECK(c->text().find("    1 | node n at :1 { on c -> ack x }\n"
                         "      |                            ^\n") != std::string::npos);
    // Only at the start: anywhere else it is a character, shown escaped.
    auto later = compile("node n at :1 { on c -> ack 1 }\n\xEF\xBB\xBFnode m at :2 { on c -> ack 1 }\n");
    REQUIRE(later->diags.all().size() == 1);
    CHECK(later->diags.all()[0].message.find("found `\\u{feff}`") != std::string::npos);
}

TEST_CASE("columns count characters, and carets stand under them", "[dsl][utf8]") {
    auto c = compile("node n at :1 {\n on c -> ack \"K\xC3\xBC" "che \xE4\xB8\xAD\" + x\n}\n");
    INFO(c->text());
    REQUIRE(c->diags.all().size() == 1);
    CHECK(c->at(0) == "2:26");
    // `中` takes two cells on a terminal: 25 characters, 26 cells before the caret.
    CHECK(c->text().find("    2 |  on c -> ack \"K\xC3\xBC" "che \xE4\xB8\xAD\" + x\n" +
                         std::string("      | ") + std::string(26, ' ') + "^\n") != std::string::npos);
    const auto j = nlohmann::json::parse(render_json(c->diags.all()[0], c->sm));
    CHECK(j["column"] == 26);
    CHECK(j["end"]["column"] == 27);

    // A tab is one column; the caret line repeats it.
    auto tab = compile("node n at :1 {\n\ton c -> ack x\n}\n");
    CHECK(tab->at(0) == "2:14");
    CHECK(tab->text().find("      | \t            ^\n") != std::string::npos);
}

TEST_CASE("a character that is found is quoted whole", "[dsl][utf8]") {
    auto c = compile("node k\xC3\xBC" "che at :1 {\n}\n");
    REQUIRE(c->diags.all().size() == 1);
    CHECK(c->diags.all()[0].message == "expected `{` after the node name (or `at HOST:PORT`), found `\xC3\xBC`");
    CHECK(c->sm.text(c->diags.all()[0].span) == "\xC3\xBC");
    REQUIRE(c->diags.all()[0].notes.size() == 1);
    CHECK(c->diags.all()[0].notes[0].message.find("ASCII") != std::string::npos);
}

TEST_CASE("control bytes are never echoed to the terminal", "[dsl][utf8]") {
    auto c = compile("\x1b]0;pwned\x07\x01\x02\n");
    INFO(c->text());
    REQUIRE(c->diags.all().size() == 1);
    CHECK(c->diags.all()[0].message == "expected `node`, `test`, `include`, `mesh`, `secret`, `tls`, `limits` or `discovery`, found `\\x1b`");
    CHECK(c->text().find("    1 | \\x1b]0;pwned\\x07\\x01\\x02\n      | ^~~~\n") != std::string::npos);
    // Nor through a message that quotes the source, such as a URL or a test title.
    auto url = compile("discovery etcd \"\x1b[2Jhttp://x\"\n");
    INFO(url->text());
    REQUIRE(url->diags.all().size() == 1);
    for (const std::string& out : {url->text(), c->text()}) {
        for (char ch : out) CHECK((ch == '\n' || ch == '\t' || static_cast<unsigned char>(ch) >= 0x20));
    }
}

TEST_CASE("a long line is shown cut around the error", "[dsl][utf8]") {
    const std::string filler = repeated("\xC3\xBC", 500'000);
    auto c = compile("node n at :1 {\n on c -> ack \"" + filler + "\" + x + \"" + repeated("a", 500'000) + "\"\n}\n");
    REQUIRE(c->diags.all().size() == 1);
    CHECK(c->at(0) == "2:" + std::to_string(15 + 500'000 + 4));
    const std::string out = c->text();
    INFO(out.substr(0, 600));
    CHECK(out.size() < 1000);
    // 40 cells before the error, 100 in all, `...` where cut.
    CHECK(out.find("    2 | ..." + repeated("\xC3\xBC", 36) + "\" + x + \"" + repeated("a", 55) + "...\n" +
                   "      | " + std::string(3 + 40, ' ') + "^\n") != std::string::npos);
}
