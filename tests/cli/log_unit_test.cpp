// The loggers of `meshrun run` and `up`: what reaches a terminal is escaped; timestamps are
// local time. (tests/cli/log_test.py drives the same through the binary and a websocket client.)
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <regex>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "meshrun/engine/log.hpp"

using meshrun::engine::escape_controls;
using meshrun::engine::LogOptions;

namespace {

// What a logger wrote to `out`, from its start.
std::string written(std::FILE* out) {
    std::rewind(out);
    std::string text;
    for (int c; (c = std::fgetc(out)) != EOF;) text += static_cast<char>(c);
    return text;
}

// Runs `fn` with TZ set to `zone`, then puts the old TZ back.
template <typename Fn>
void with_tz(const char* zone, Fn fn) {
    const char* old = std::getenv("TZ");
    const std::string saved = old ? old : "";
    setenv("TZ", zone, 1);
    tzset();
    fn();
    if (old) setenv("TZ", saved.c_str(), 1); else unsetenv("TZ");
    tzset();
}

}  // namespace

TEST_CASE("printable text is logged as it is", "[log]") {
    CHECK(escape_controls("") == "");
    CHECK(escape_controls("listening on ws://127.0.0.1:8766") == "listening on ws://127.0.0.1:8766");
    CHECK(escape_controls("a \\ backslash, \"quotes\" and ~") == "a \\ backslash, \"quotes\" and ~");
    CHECK(escape_controls("é ü ß 日本 🙂 \u00a0 \u07ff \uffff \U0010ffff") ==
          "é ü ß 日本 🙂 \u00a0 \u07ff \uffff \U0010ffff");
}

TEST_CASE("C0 controls and DEL are escaped", "[log]") {
    CHECK(escape_controls("a\nb") == "a\\nb");
    CHECK(escape_controls("a\r\nb") == "a\\r\\nb");
    CHECK(escape_controls("a\tb") == "a\\tb");
    CHECK(escape_controls("\x1b[2J") == "\\x1b[2J");
    CHECK(escape_controls(std::string("nul\0.", 5)) == "nul\\x00.");
    CHECK(escape_controls("\x01\x07\x08\x0b\x0c\x1f") == "\\x01\\x07\\x08\\x0b\\x0c\\x1f");
    CHECK(escape_controls("del\x7f") == "del\\x7f");
}

TEST_CASE("C1 controls are escaped as code points", "[log]") {
    CHECK(escape_controls("\u0080") == "\\u0080");
    CHECK(escape_controls("next line\u0085") == "next line\\u0085");
    CHECK(escape_controls("\u009b2J") == "\\u009b2J");  // CSI
    CHECK(escape_controls("\u009f\u00a0") == "\\u009f\u00a0");  // the last C1, then NBSP (printable)
}

TEST_CASE("each byte of invalid UTF-8 is escaped", "[log]") {
    CHECK(escape_controls("\xff") == "\\xff");
    CHECK(escape_controls("a\x80z") == "a\\x80z");                     // a stray continuation byte
    CHECK(escape_controls("\xc0\xaf") == "\\xc0\\xaf");                // overlong `/`
    CHECK(escape_controls("\xe0\x80\xaf") == "\\xe0\\x80\\xaf");       // overlong, three bytes
    CHECK(escape_controls("\xed\xa0\x80") == "\\xed\\xa0\\x80");       // a surrogate
    CHECK(escape_controls("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // past U+10FFFF
    CHECK(escape_controls("\xe6\x97") == "\\xe6\\x97");                // cut short at the end
    CHECK(escape_controls("\xe6\x97z") == "\\xe6\\x97z");              // cut short by ASCII
    CHECK(escape_controls("\xc3\x1b[2J") == "\\xc3\\x1b[2J");          // cut short by an escape
    CHECK(escape_controls("\xe6\x97\xa5\xff") == "日\\xff");
}

TEST_CASE("the text logger writes one line per log line, prefixed", "[log]") {
    std::FILE* out = std::tmpfile();
    REQUIRE(out);
    auto log = meshrun::engine::make_text_logger({"iopin", "buzzer"}, LogOptions{false, false, out});
    log->line("buzzer", "got a\nb\x1b[2J");
    log->line("iopin", "ok");
    CHECK(written(out) == "[ buzzer ] got a\\nb\\x1b[2J\n[ iopin  ] ok\n");
    std::fclose(out);
}

TEST_CASE("to the journal, errors and warnings carry their syslog priority", "[log]") {
    std::FILE* out = std::tmpfile();
    REQUIRE(out);
    auto log = meshrun::engine::make_text_logger({"iopin", "buzzer"}, LogOptions{false, false, out, true});
    log->line("buzzer", "error: listening stopped: x");
    log->line("iopin", "warning: 2 messages to buzzer/signal were not delivered");
    log->line("iopin", "an error: not at the start\nwarning: nor here");
    CHECK(written(out) == "<3>[ buzzer ] error: listening stopped: x\n"
                         "<4>[ iopin  ] warning: 2 messages to buzzer/signal were not delivered\n"
                         "[ iopin  ] an error: not at the start\\nwarning: nor here\n");
    std::fclose(out);

    // Not to the journal: no prefix.
    out = std::tmpfile();
    REQUIRE(out);
    log = meshrun::engine::make_text_logger({"buzzer"}, LogOptions{false, false, out});
    log->line("buzzer", "error: x");
    CHECK(written(out) == "[ buzzer ] error: x\n");
    std::fclose(out);
}

TEST_CASE("timestamps are local time to the millisecond", "[log]") {
    with_tz("XYZ-14", [] {  // UTC+14: a clock that read UTC would be 14 hours off
        const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'796'047'385'123));
        CHECK(meshrun::engine::local_timestamp(t) == "2026-12-01 04:03:05.123");  // 14:03:05.123 UTC
        CHECK(meshrun::engine::local_timestamp(t + std::chrono::microseconds(999)) == "2026-12-01 04:03:05.123");

        std::FILE* out = std::tmpfile();
        REQUIRE(out);
        auto log = meshrun::engine::make_text_logger({"buzzer"}, LogOptions{true, true, out});
        log->line("buzzer", "x\ty");
        const std::string line = written(out);
        const std::regex stamped(R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \x1b\[31m\[ buzzer \]\x1b\[0m x\\ty\n)");
        CHECK(std::regex_match(line, stamped));
        std::fclose(out);
    });
}

TEST_CASE("the JSON logger keeps the text exact, and with timestamps adds the local time", "[log]") {
    with_tz("XYZ+3:30", [] {  // UTC-03:30
        std::FILE* out = std::tmpfile();
        REQUIRE(out);
        auto plain = meshrun::engine::make_json_logger(LogOptions{false, false, out});
        plain->line("buzzer", "a\nb\x1b");
        auto stamped = meshrun::engine::make_json_logger(LogOptions{false, true, out});
        stamped->line("buzzer", "c");
        const std::string text = written(out);
        const auto second = text.find('\n') + 1;
        const auto first = nlohmann::json::parse(text.substr(0, second));
        CHECK(first["message"] == "a\nb\x1b");
        CHECK(!first.contains("time"));
        const auto row = nlohmann::json::parse(text.substr(second));
        const std::string time = row["time"];
        CHECK(std::regex_match(time, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}-03:30)")));
        std::fclose(out);
    });
}

TEST_CASE("line separators and bidirectional controls are escaped, other characters are not", "[log]") {
    CHECK(escape_controls("bidi\u202egnp.exe") == "bidi\\u202egnp.exe");
    CHECK(escape_controls("a\u2028b\u2029c") == "a\\u2028b\\u2029c");
    CHECK(escape_controls("\u2066x\u2069\u200e\u200f\u061c") == "\\u2066x\\u2069\\u200e\\u200f\\u061c");
    CHECK(escape_controls("K\u00fcche \u20ac \U0001F600") == "K\u00fcche \u20ac \U0001F600");
}
