// build_paths.hpp: where this build's meshrun binary and the source tree are, for the tests and the
// benchmarks.
//
// Both are defined in one small source file that CMake generates in the build
// (build_paths.cpp, the top-level CMakeLists.txt), not passed as -D definitions: a path on the
// compiler's command line is part of ccache's key, so every file that used one was compiled again
// in each fresh clone (CI's), the heaviest test files among them.
#pragma once

#include <filesystem>
#include <string_view>

namespace meshrun::build_paths {

extern const char* const meshrun;     // the meshrun binary of this build
extern const char* const source_dir;  // the source tree it was built from

// `relative` under the source tree: source("topologies/arduino.mesh").
inline std::filesystem::path source(std::string_view relative) {
    return std::filesystem::path(source_dir) / relative;
}

}  // namespace meshrun::build_paths
