// Rendering and suggestions: the parts of a diagnostic that are not about any one check.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "meshrun/dsl/diagnostic.hpp"

using namespace meshrun::dsl;

namespace {

struct Fixture {
    SourceManager sm;
    std::uint32_t file = sm.add("arduino.mesh", "", "node iopin at localhost:8765 {\n\tsend led to buzer/signal\n}\n");
    Diagnostic unknown() const {
        Diagnostic d{Severity::error, Kind::unknown_node, Span{file, 44, 49}, "unknown node `buzer`", {}};
        d.notes.push_back({std::nullopt, "did you mean `buzzer`?"});
        d.notes.push_back({Span{file, 5, 10}, "sent from here"});
        return d;
    }
};

}  // namespace

TEST_CASE("a diagnostic prints like a compiler: location, line, caret under the span, notes", "[dsl][diagnostic]") {
    Fixture f;
    CHECK(render_text(f.unknown(), f.sm) ==
          "arduino.mesh:2:14: error: unknown node `buzer` [unknown-node]\n"
          "    2 | \tsend led to buzer/signal\n"
          "      | \t            ^~~~~\n"
          "arduino.mesh:2:14: note: did you mean `buzzer`?\n"
          "arduino.mesh:1:6: note: sent from here\n"
          "    1 | node iopin at localhost:8765 {\n"
          "      |      ^~~~~\n");
}

TEST_CASE("color is only in the output when asked for", "[dsl][diagnostic]") {
    Fixture f;
    CHECK(render_text(f.unknown(), f.sm).find('\x1b') == std::string::npos);
    const std::string colored = render_text(f.unknown(), f.sm, RenderOptions{true});
    CHECK(colored.find("\x1b[1;31merror") != std::string::npos);
}

TEST_CASE("a diagnostic as JSON has its file, positions, kind and notes", "[dsl][diagnostic]") {
    Fixture f;
    const auto j = nlohmann::json::parse(render_json(f.unknown(), f.sm));
    CHECK(j["file"] == "arduino.mesh");
    CHECK(j["line"] == 2);
    CHECK(j["column"] == 14);
    CHECK(j["end"]["column"] == 19);
    CHECK(j["severity"] == "error");
    CHECK(j["kind"] == "unknown-node");
    CHECK(j["message"] == "unknown node `buzer`");
    REQUIRE(j["notes"].size() == 2);
    CHECK(j["notes"][0]["message"] == "did you mean `buzzer`?");
    CHECK(j["notes"][1]["line"] == 1);
}

TEST_CASE("suggestions are the closest candidate within a third of the word's length", "[dsl][diagnostic]") {
    CHECK(closest("buzer", {"clock", "iopin", "buzzer"}) == "buzzer");
    CHECK(closest("datafed", {"datafeed", "signal"}) == "datafeed");
    CHECK_FALSE(closest("xyz", {"buzzer", "clock"}));
    CHECK_FALSE(closest("led", {"led"}));
    CHECK(closest("hron", {"horn", "hornet"}) == "horn");
}

TEST_CASE("every kind has a distinct, stable name", "[dsl][diagnostic]") {
    CHECK(kind_name(Kind::syntax) == "syntax");
    CHECK(kind_name(Kind::unknown_node) == "unknown-node");
    CHECK(kind_name(Kind::message_storm) == "message-storm");
}
