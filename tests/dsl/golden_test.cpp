// Golden files pin the exact text a user reads. tests/dsl/data/fail_*.mesh has its
// expected diagnostics beside it in fail_*.expected; ok_*.mesh and every topology
// in topologies/ must check clean, warnings included. MESHRUN_UPDATE_GOLDEN=1
// rewrites the .expected files (then read the diff before committing).
#include <algorithm>
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

std::vector<std::string> files(const fs::path& dir, const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (name.rfind(prefix, 0) == 0 && e.path().extension() == ".mesh") out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// Compiles `name` with `dir` as the working directory, so paths print as the user typed them.
std::string diagnostics_of(const fs::path& dir, const std::string& name) {
    const fs::path saved = fs::current_path();
    fs::current_path(dir);
    SourceManager sm;
    Diagnostics diags;
    compile_file(name, sm, diags);
    diags.sort_by_position();
    std::string out;
    for (const auto& d : diags.all()) out += render_text(d, sm);
    fs::current_path(saved);
    return out;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

TEST_CASE("every fail_*.mesh prints exactly its golden diagnostics", "[dsl][golden]") {
    const fs::path dir = meshrun::build_paths::source("tests/dsl/data");
    const bool update = std::getenv("MESHRUN_UPDATE_GOLDEN") != nullptr;
    const auto names = files(dir, "fail_");
    REQUIRE(!names.empty());
    for (const auto& name : names) {
        DYNAMIC_SECTION(name) {
            const std::string actual = diagnostics_of(dir, name);
            const fs::path expected_path = dir / (fs::path(name).stem().string() + ".expected");
            if (update) std::ofstream(expected_path) << actual;
            REQUIRE(fs::exists(expected_path));
            CHECK((actual.find("error") != std::string::npos || actual.find("warning") != std::string::npos));
            CHECK(actual == slurp(expected_path));
        }
    }
}

TEST_CASE("every ok_*.mesh checks clean", "[dsl][golden]") {
    const fs::path dir = meshrun::build_paths::source("tests/dsl/data");
    const auto names = files(dir, "ok_");
    REQUIRE(!names.empty());
    for (const auto& name : names) {
        DYNAMIC_SECTION(name) { CHECK(diagnostics_of(dir, name) == ""); }
    }
}

TEST_CASE("every topology in topologies/ checks clean", "[dsl][golden][topologies]") {
    const fs::path dir = meshrun::build_paths::source("topologies");
    const auto names = files(dir, "");
    REQUIRE(names.size() >= 4);
    CHECK(std::find(names.begin(), names.end(), "arduino.mesh") != names.end());
    for (const auto& name : names) {
        DYNAMIC_SECTION(name) { CHECK(diagnostics_of(dir, name) == ""); }
    }
}
