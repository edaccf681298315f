// The page, script and style embedded by dashboard/embed.cmake are the files of dashboard/, byte for
// byte, "/" first, with their content types.
//
//     dashboard_assets_check DASHBOARD_DIR
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include "meshrun/dashboard/assets.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: dashboard_assets_check DASHBOARD_DIR\n");
        return 2;
    }
    struct Want {
        std::string_view path, file, type;
    };
    const Want wants[] = {{"/", "index.html", "text/html; charset=utf-8"},
                          {"/dashboard.js", "dashboard.js", "text/javascript; charset=utf-8"},
                          {"/dashboard.css", "dashboard.css", "text/css; charset=utf-8"}};
    const auto assets = meshrun::dashboard::assets();
    int failed = 0;
    if (assets.size() != std::size(wants)) {
        std::printf("FAIL  %zu assets, not %zu\n", assets.size(), std::size(wants));
        ++failed;
    }
    for (std::size_t i = 0; i < assets.size() && i < std::size(wants); ++i) {
        const auto& a = assets[i];
        const auto& w = wants[i];
        std::ifstream in(std::string(argv[1]) + "/" + std::string(w.file), std::ios::binary);
        const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const bool ok = in.good() || in.eof();
        if (a.path != w.path || a.content_type != w.type || !ok || file.empty() || a.body != file) {
            std::printf("FAIL  asset %zu: %.*s (%.*s), %zu bytes; want %.*s (%.*s), %s: %zu bytes\n", i,
                        int(a.path.size()), a.path.data(), int(a.content_type.size()), a.content_type.data(),
                        a.body.size(), int(w.path.size()), w.path.data(), int(w.type.size()), w.type.data(),
                        w.file.data(), file.size());
            ++failed;
        } else {
            std::printf("ok    %.*s is %.*s, %zu bytes\n", int(a.path.size()), a.path.data(), int(w.file.size()),
                        w.file.data(), file.size());
        }
    }
    std::printf("%d passed, %d failed\n", int(std::size(wants)) - failed, failed);
    return failed ? 1 : 0;
}
