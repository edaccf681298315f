// Where a node's log lines go: `[ buzzer ] ...` for people, or one JSON object a line.
#include <chrono>
#include <cstdio>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "meshrun/engine/runtime.hpp"

namespace meshrun::engine {

namespace {

class TextLogger final : public Logger {
public:
    TextLogger(std::vector<std::string> names, bool color) : color_(color) {
        for (const auto& n : names) width_ = std::max(width_, n.size());
        for (std::size_t i = 0; i < names.size(); ++i) colors_[names[i]] = 31 + static_cast<int>(i % 6);
    }
    void line(const std::string& node, std::string_view text) override {
        if (color_) {
            const int c = colors_.count(node) ? colors_[node] : 37;
            fmt::print("\x1b[{}m[ {:<{}} ]\x1b[0m {}\n", c, node, width_, text);
        } else {
            fmt::print("[ {:<{}} ] {}\n", node, width_, text);
        }
        std::fflush(stdout);
    }

private:
    bool color_;
    std::size_t width_ = 0;
    std::map<std::string, int> colors_;
};

class JsonLogger final : public Logger {
public:
    void line(const std::string& node, std::string_view text) override {
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        nlohmann::json j{{"time_us", std::chrono::duration_cast<std::chrono::microseconds>(now).count()},
                         {"node", node},
                         {"message", std::string(text)}};
        fmt::print("{}\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        std::fflush(stdout);
    }
};

}  // namespace

std::unique_ptr<Logger> make_text_logger(std::vector<std::string> node_names, bool color) {
    return std::make_unique<TextLogger>(std::move(node_names), color);
}
std::unique_ptr<Logger> make_json_logger() { return std::make_unique<JsonLogger>(); }

}  // namespace meshrun::engine
