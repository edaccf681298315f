// The dashboard's page, script and style, embedded in the binary at build time
// (dashboard/CMakeLists.txt): the page needs nothing from the network.
#pragma once

#include <span>
#include <string_view>

namespace meshrun::dashboard {

struct Asset {
    std::string_view path;          // as requested: "/", "/dashboard.js", ...
    std::string_view content_type;  // "text/html; charset=utf-8", ...
    std::string_view body;
};

// Every asset, "/" (the page) first.
std::span<const Asset> assets();

}  // namespace meshrun::dashboard
