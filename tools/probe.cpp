// `meshrun probe`: every declared pin held against the board's real lines, without
// requesting any. What the kernel reports for each, and each problem as a diagnostic
// at the pin's declaration.
#include "probe.hpp"

#include <map>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "meshrun/drivers/pin.hpp"

namespace meshrun::tools {

namespace {

drivers::LineConfig line_config(const engine::Graph& graph, const engine::Node& node, const engine::Pin& pin) {
    drivers::LineConfig cfg;
    cfg.chip = pin.chip;
    cfg.line = pin.line;
    cfg.direction = pin.output ? drivers::Direction::output : drivers::Direction::input;
    cfg.active_low = pin.active_low;
    cfg.consumer = fmt::format("meshrun:{}:{}:{}", graph.name, node.name, pin.name);  // as `run` names it
    return cfg;
}

// One host, however it is written: what two nodes must not share a line on.
std::string host_key(const std::string& host) {
    if (host.empty() || host == "localhost" || host == "[::1]" || host == "::1" || host.rfind("127.", 0) == 0) return "";
    std::string lower;
    for (char c : host) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    return lower;
}

// A problem's text: its first line is the error, the lines under it (indented) are notes.
dsl::Diagnostic diagnostic(dsl::Span at, std::string_view problem) {
    dsl::Diagnostic d{dsl::Severity::error, dsl::Kind::gpio_line, at, {}, {}};
    std::size_t start = 0;
    while (start <= problem.size()) {
        const std::size_t end = std::min(problem.find('\n', start), problem.size());
        std::string_view line = problem.substr(start, end - start);
        while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
        if (d.message.empty()) {
            d.message = std::string(line);
        } else if (!line.empty()) {
            d.notes.push_back({std::nullopt, std::string(line)});
        }
        start = end + 1;
    }
    return d;
}

std::string describe(const drivers::LineReport& r) {
    if (!r.chip_found) return "no chip";
    std::string text = fmt::format("{} `{}` (found by {})", r.chip_name, r.chip_label, r.chip_how);
    if (!r.line_found) return text + ", no line";
    text += fmt::format(", line {}", r.offset);
    if (!r.line_name.empty()) text += fmt::format(" `{}`", r.line_name);
    text += r.used ? fmt::format(": held by `{}`", r.consumer.empty() ? "a consumer that gave no name" : r.consumer) : ": free";
    text += fmt::format("; {}{}, bias {}", r.output ? "output" : "input", r.active_low ? ", active-low" : "", r.bias);
    if (r.edges != "unknown" && r.edges != "none") text += ", edges " + r.edges;
    return text;
}

}  // namespace

int probe(const engine::Graph& graph, const dsl::SourceManager& sources, const std::vector<int>& nodes, bool json,
          bool color) {
    std::vector<dsl::Diagnostic> problems;
    // Lines claimed so far, per host: (host, chip path, offset) -> the pin that claimed it.
    std::map<std::tuple<std::string, std::string, unsigned>, const engine::Pin*> claimed;
    if (!json) {
        const auto chips = drivers::gpio_chips();
        fmt::print("{}; ", drivers::gpiod_api());
        if (chips.empty()) fmt::print("no GPIO chip on this machine (nothing at /dev/gpiochip*)\n");
        for (std::size_t i = 0; i < chips.size(); ++i) {
            const auto& c = chips[i];
            fmt::print("{}{} `{}` ({} lines{}){}", i == 0 ? "chips: " : "", c.name, c.label, c.lines,
                       c.error.empty() ? "" : ", " + c.error, i + 1 == chips.size() ? "\n" : ", ");
        }
    }
    for (int index : nodes) {
        const engine::Node& node = graph.nodes[static_cast<std::size_t>(index)];
        for (const engine::Pin& pin : node.pins) {
            const drivers::LineReport r = drivers::probe_line(line_config(graph, node, pin));
            std::vector<dsl::Diagnostic> found;
            for (const std::string& p : r.problems) found.push_back(diagnostic(pin.span, p));
            if (r.line_found) {
                auto [at, fresh] = claimed.emplace(std::make_tuple(host_key(node.host), r.chip_path, r.offset), &pin);
                if (!fresh) {
                    auto d = diagnostic(pin.span, fmt::format("line {} of {} is declared twice on one host: pin `{}` here, and "
                                                              "pin `{}` of another node",
                                                              r.offset, r.chip_name, pin.name, at->second->name));
                    d.notes.push_back({at->second->span, "declared first here"});
                    found.push_back(std::move(d));
                }
            }
            if (json) {
                const auto where = sources.file(pin.span.file).locate(pin.span.begin);
                nlohmann::json j{{"node", node.name},       {"pin", pin.name},
                                 {"file", sources.file(pin.span.file).path},
                                 {"line", where.line},      {"column", where.column},
                                 {"chip_found", r.chip_found}, {"chip_how", r.chip_how},
                                 {"chip", r.chip_name},     {"label", r.chip_label},
                                 {"path", r.chip_path},     {"line_found", r.line_found},
                                 {"offset", r.offset},      {"line_name", r.line_name},
                                 {"used", r.used},          {"consumer", r.consumer},
                                 {"direction", r.output ? "output" : "input"},
                                 {"active_low", r.active_low}, {"bias", r.bias},
                                 {"edges", r.edges},        {"problems", nlohmann::json::array()}};
                for (const auto& d : found) j["problems"].push_back(d.message);
                fmt::print("{}\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
            } else {
                fmt::print("{}.{}: {}\n", node.name, pin.name, describe(r));
            }
            for (auto& d : found) problems.push_back(std::move(d));
        }
    }
    for (const auto& d : problems) fmt::print(stderr, "{}", dsl::render_text(d, sources, {color}));
    if (!json) fmt::print(stderr, "{}\n", problems.empty() ? "probe: every pin is there and free"
                                                           : fmt::format("probe: {} problem{}", problems.size(),
                                                                         problems.size() == 1 ? "" : "s"));
    return problems.empty() ? 0 : 1;
}

}  // namespace meshrun::tools
