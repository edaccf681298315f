// meshrun: the command line. Thin: every subcommand is a few calls into the libraries.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "meshrun/drivers/pin.hpp"
#include "meshrun/drivers/sim.hpp"
#include "meshrun/dsl/frontend.hpp"
#include "meshrun/engine/graph.hpp"
#include "meshrun/engine/log.hpp"
#include "meshrun/engine/runtime.hpp"
#include "probe.hpp"
#include "scenario.hpp"
#include "systemd.hpp"

namespace meshrun::tools {
extern const char git_describe[];  // generated at each build (tools/git_describe.cmake); empty outside a checkout
}

namespace {

using namespace meshrun;

constexpr int exit_ok = 0, exit_errors = 1, exit_usage = 2;

// `auto`: on a terminal, unless NO_COLOR is set; never to the journal.
bool use_color(const std::string& mode, int fd) {
    if (mode == "always") return true;
    if (mode == "never") return false;
    const char* no_color = std::getenv("NO_COLOR");
    return isatty(fd) && !(no_color && *no_color) && !tools::systemd::is_journal(fd);
}

// A diagnostic of `run`, `up`, `graph` or `probe` on stderr: as a compiler prints it, or, when
// stderr is the journal, one line (no source excerpt, the notes after `;`) with its syslog
// priority, `<3>` error or `<4>` warning, so that the journal keeps it as one entry.
void print_diagnostic(const dsl::Diagnostic& d, const dsl::SourceManager& sm) {
    if (!tools::systemd::is_journal(STDERR_FILENO)) {
        fmt::print(stderr, "{}", dsl::render_text(d, sm, {use_color("auto", STDERR_FILENO)}));
        return;
    }
    const auto where = [&sm](dsl::Span span) {
        const dsl::SourceFile& f = sm.file(span.file);
        const dsl::Location at = f.locate(span.begin);
        return fmt::format("{}:{}:{}", engine::escape_controls(f.path), at.line, at.column);
    };
    std::string line = fmt::format("{}{}: {}: {} [{}]", d.severity == dsl::Severity::error ? "<3>" : "<4>", where(d.span),
                                   dsl::severity_name(d.severity), engine::escape_controls(d.message), dsl::kind_name(d.kind));
    for (const dsl::Note& n : d.notes)
        line += fmt::format("; note: {}{}", n.span ? where(*n.span) + ": " : "", engine::escape_controls(n.message));
    fmt::print(stderr, "{}\n", line);
}

// `meshrun: error: ...` on stderr, with the priority `<3>` first when stderr is the journal.
template <typename... Args>
void print_error(fmt::format_string<Args...> format, Args&&... args) {
    fmt::print(stderr, "{}meshrun: error: {}", tools::systemd::is_journal(STDERR_FILENO) ? "<3>" : "",
               fmt::format(format, std::forward<Args>(args)...));
}

std::string plural(std::size_t n, std::string_view word) {
    return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

struct CheckOptions {
    std::vector<std::string> files;
    std::string format = "text";
    std::string color = "auto";
    bool werror = false;
    bool quiet = false;
};

// `-` for a file: standard input, named `<stdin>` in diagnostics and messages.
constexpr std::string_view stdin_path = "-";

std::string_view display_name(const std::string& path) {
    return path == stdin_path ? std::string_view("<stdin>") : std::string_view(path);
}

std::optional<std::string> read_stdin() {
    std::string text;
    char buffer[65536];
    std::size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, stdin)) > 0) {
        text.append(buffer, n);
        if (text.size() > dsl::max_source_size) {
            errno = EFBIG;
            return std::nullopt;
        }
    }
    if (std::ferror(stdin)) return std::nullopt;
    return text;
}

// Compiles a file (`-`: standard input); an unreadable one is reported here and gives nothing.
std::optional<dsl::Compiled> compile(const std::string& path, dsl::SourceManager& sm, dsl::Diagnostics& diags) {
    if (path == stdin_path) {
        auto text = read_stdin();
        if (!text) {
            print_error("cannot read standard input: {}\n", std::strerror(errno));
            return std::nullopt;
        }
        return dsl::compile_text(std::string(display_name(path)), std::move(*text), sm, diags);
    }
    try {
        return dsl::compile_file(path, sm, diags);
    } catch (const std::exception&) {
        print_error("cannot read `{}`: {}\n", path, std::strerror(errno ? errno : ENOENT));
        return std::nullopt;
    }
}

int run_check(const CheckOptions& opt) {
    if (std::count(opt.files.begin(), opt.files.end(), stdin_path) > 1) {
        print_error("standard input (`-`) can be read only once\n");
        return exit_usage;
    }
    int status = exit_ok;
    const bool json = opt.format == "json";
    const dsl::RenderOptions render{use_color(opt.color, STDERR_FILENO)};
    for (const auto& path : opt.files) {
        dsl::SourceManager sm;
        dsl::Diagnostics diags;
        auto compiled = compile(path, sm, diags);
        if (!compiled) {
            status = exit_usage;
            continue;
        }
        // Like compilers, leave the AST to the process's exit: freeing a large
        // topology node by node costs a tenth of the whole check. (Kept reachable,
        // so leak checkers do not count it.)
        static auto* kept = new std::vector<dsl::Program>();
        kept->push_back(std::move(compiled->program));
        diags.sort_by_position();
        for (const auto& d : diags.all()) {
            if (json) {
                fmt::print("{}\n", dsl::render_json(d, sm));
            } else {
                fmt::print(stderr, "{}", dsl::render_text(d, sm, render));
            }
        }
        const std::size_t errors = diags.errors(), warnings = diags.warnings();
        const bool failed = errors > 0 || (opt.werror && warnings > 0);
        if (failed && status == exit_ok) status = exit_errors;
        if (json || opt.quiet) continue;
        const std::string_view name = display_name(path);
        if (failed) {
            fmt::print(stderr, "{}: {}, {}{}\n", name, plural(errors, "error"), plural(warnings, "warning"),
                       opt.werror && warnings > 0 ? " (warnings are errors with --werror)" : "");
        } else {
            const auto& s = compiled->summary;
            // Variables are counted where a file has some (the line of a file without stays as it was).
            fmt::print("{}: ok{}: {}, {}, {}, {}{}, {}, {}, {}\n", name,
                       warnings ? fmt::format(" with {}", plural(warnings, "warning")) : "", plural(s.nodes, "node"),
                       plural(s.channels, "channel"), plural(s.pins, "pin"),
                       s.variables ? plural(s.variables, "variable") + ", " : "", plural(s.rules, "rule"),
                       plural(s.timers, "timer"), plural(s.actions, "action"), plural(s.tests, "test"));
        }
    }
    return status;
}

struct Loaded {
    std::optional<engine::Graph> graph;
    std::shared_ptr<dsl::SourceManager> sources;  // what the graph's spans point into
    int status = exit_ok;  // without a graph: exit_usage (unreadable) or exit_errors
};

// Compiles a file for the commands that run or draw it: diagnostics go to stderr,
// and a file with errors is refused (`refused`: what the message says is not done).
Loaded load(const std::string& path, std::string_view refused = "not started") {
    auto sources = std::make_shared<dsl::SourceManager>();
    dsl::SourceManager& sm = *sources;
    dsl::Diagnostics diags;
    auto compiled = compile(path, sm, diags);
    if (!compiled) return {std::nullopt, nullptr, exit_usage};
    diags.sort_by_position();
    for (const auto& d : diags.all()) print_diagnostic(d, sm);
    if (diags.has_errors()) {
        fmt::print(stderr, "{}: {}; {}\n", display_name(path), plural(diags.errors(), "error"), refused);
        return {std::nullopt, nullptr, exit_errors};
    }
    return {engine::lower(compiled->program), std::move(sources), exit_ok};
}

struct RunOptions {
    std::string file;
    std::string node;
    std::string only;  // A,B,...: one argument, so that the file may follow it
    bool sim = false;
    std::optional<std::string> bind;  // given, even empty: refused by the fleet, never ignored
    std::uint64_t seed = 0;
    std::string log = "text";
    std::string color = "auto";
    std::size_t queue_limit = 0;  // 0: the file's `limits { outbox N }` (1000 unless it says)
    std::optional<std::string> state;
    double grace = 5;
    double ack_timeout = 30;
    std::optional<std::string> metrics;
    std::optional<std::string> dashboard;
    bool timestamps = false;
};

int find_node(const engine::Graph& graph, const std::string& name) {
    const int index = graph.find(name);
    if (index >= 0) return index;
    std::vector<std::string_view> names;
    for (const auto& n : graph.nodes) names.push_back(n.name);
    const auto guess = dsl::closest(name, names);
    print_error("no node `{}` in the file{}\n", name,
               guess ? fmt::format("; did you mean `{}`?", *guess) : "");
    return -1;
}

// Says so, and returns true, when none of `nodes` would do anything: `up` of a file without a
// node, `run` of a node with no port, no timer and no rule (on a pin or a channel).
bool nothing_to_run(const engine::Graph& graph, const std::vector<int>& nodes, const std::string& file) {
    if (graph.nodes.empty()) {
        print_error("`{}` declares no node: nothing to run\n", display_name(file));
        return true;
    }
    for (int i : nodes) {
        const engine::Node& node = graph.nodes[static_cast<std::size_t>(i)];
        if (node.port || !node.sources.empty()) return false;
    }
    if (nodes.size() == 1) {
        print_error("node `{}` would do nothing: it has no port, no timer and no rule; "
                           "nothing to run\n", graph.nodes[static_cast<std::size_t>(nodes.front())].name);
    } else {
        print_error("no node would do anything: none has a port, a timer or a rule; "
                           "nothing to run\n");
    }
    return true;
}

std::vector<std::string> split(std::string_view text, char sep) {
    std::vector<std::string> parts;
    for (std::size_t at = 0; at <= text.size();) {
        const std::size_t end = std::min(text.find(sep, at), text.size());
        parts.emplace_back(text.substr(at, end - at));
        at = end + 1;
    }
    return parts;
}

// What the fleet serves, for systemd's STATUS: `serving buzzer on 127.0.0.1:9001`, or
// `serving 3 nodes: a on 127.0.0.1:9001, b on 127.0.0.1:9002, c (no port)`.
std::string serving(const engine::Graph& graph, const engine::Fleet& fleet, const std::vector<int>& nodes) {
    std::vector<std::string> each;
    for (int i : nodes) {
        const std::string address = fleet.address(i);
        const std::string& name = graph.nodes[static_cast<std::size_t>(i)].name;
        each.push_back(address.empty() ? name + " (no port)" : fmt::format("{} on {}", name, address));
    }
    std::string status = nodes.size() == 1 ? "serving " + each.front()
                                           : fmt::format("serving {}: {}", plural(nodes.size(), "node"), fmt::join(each, ", "));
    if (fleet.metrics_port()) status += fmt::format("; metrics on port {}", fleet.metrics_port());
    if (fleet.dashboard_port()) status += fmt::format("; dashboard on port {}", fleet.dashboard_port());
    return status;
}

int run_fleet(const RunOptions& opt, bool one_node) {
    const auto loaded = load(opt.file);
    if (!loaded.graph) return loaded.status;
    const auto& graph = loaded.graph;
    engine::FleetOptions fleet_options;
    if (one_node) {
        const int index = find_node(*graph, opt.node);
        if (index < 0) return exit_usage;
        fleet_options.nodes.push_back(index);
    } else if (!opt.only.empty()) {
        for (const auto& name : split(opt.only, ',')) {
            if (name.empty()) {
                print_error("--only `{}`: an empty node name\n", opt.only);
                return exit_usage;
            }
            const int index = find_node(*graph, name);
            if (index < 0) return exit_usage;
            fleet_options.nodes.push_back(index);
        }
    } else {
        for (std::size_t i = 0; i < graph->nodes.size(); ++i) fleet_options.nodes.push_back(static_cast<int>(i));
    }
    if (nothing_to_run(*graph, fleet_options.nodes, opt.file)) return exit_errors;
    fleet_options.bind = opt.bind;
    fleet_options.local = !one_node;  // `up`: the whole fleet (or --only's part) on this machine
    fleet_options.queue_limit = opt.queue_limit;
    fleet_options.grace = std::chrono::milliseconds(static_cast<std::int64_t>(opt.grace * 1000));
    fleet_options.ack_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(opt.ack_timeout * 1000));
    fleet_options.metrics = opt.metrics;
    fleet_options.dashboard = opt.dashboard;
    fleet_options.state_dir = opt.state;
    fleet_options.seed = opt.seed;
    fleet_options.handle_signals = true;

    std::vector<std::string> names;
    for (int i : fleet_options.nodes) names.push_back(graph->nodes[static_cast<std::size_t>(i)].name);
    if (opt.metrics || opt.dashboard) names.push_back("meshrun");  // its lines: where the metrics and dashboard are
    const engine::LogOptions log_options{use_color(opt.color, STDOUT_FILENO), opt.timestamps, stdout,
                                         tools::systemd::is_journal(STDOUT_FILENO)};
    tools::systemd::StopNotifier stop_notifier;  // STOPPING=1 to systemd, under Type=notify
    fleet_options.observers.push_back(&stop_notifier);
    auto logger = opt.log == "json" ? engine::make_json_logger(log_options) : engine::make_text_logger(names, log_options);
    // `run` drives the board's real lines unless --sim; `up` runs every node on simulated
    // pins, each a board of its own with its own simulated chips.
    const bool real = one_node && !opt.sim;
    std::unique_ptr<drivers::PinDriver> gpiod = real ? drivers::make_gpiod_driver() : nullptr;
    std::vector<drivers::SimDriver> simulated(real ? 0 : graph->nodes.size());
    for (auto& p : simulated) fleet_options.node_pins.push_back(&p);
    drivers::PinDriver& pins = real ? *gpiod : static_cast<drivers::PinDriver&>(simulated.front());
    std::optional<engine::Fleet> fleet;
    try {
        fleet.emplace(*graph, pins, *logger, fleet_options);  // throws: the secret is not set, --state cannot be had
        fleet->start();
    } catch (const engine::PinError& e) {
        dsl::Diagnostic d{dsl::Severity::error, dsl::Kind::gpio_line, e.span, e.what(), {}};
        for (const auto& line : e.help) d.notes.push_back({std::nullopt, line});
        print_diagnostic(d, *loaded.sources);
        return exit_errors;
    } catch (const engine::BadOption& e) {
        print_error("{}\n", e.what());
        return exit_usage;
    } catch (const std::exception& e) {
        print_error("{}\n", e.what());
        return exit_errors;
    }
    // Every port listens and every pin is held: ready, under systemd's Type=notify.
    tools::systemd::notify(fmt::format("READY=1\nSTATUS={}", serving(*graph, *fleet, fleet_options.nodes)));
    fleet->run();
    tools::systemd::flush_notifications(std::chrono::seconds(1));  // STOPPING=1 out before the exit
    return exit_ok;
}

struct TestOptions {
    std::vector<std::string> files;
    std::string filter;
    std::string junit;
    std::uint64_t seed = 1;
    tools::Limits limits;
};

std::string xml_escape(std::string_view text) {
    std::string out;
    for (char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\x1b': break;
            default: out += c;
        }
    }
    return out;
}

int run_tests(const TestOptions& opt) {
    if (std::count(opt.files.begin(), opt.files.end(), stdin_path) > 1) {
        print_error("standard input (`-`) can be read only once\n");
        return exit_usage;
    }
    // Opened first: a path that cannot be written fails before any test runs.
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> junit_out(nullptr, std::fclose);
    if (!opt.junit.empty()) {
        junit_out.reset(std::fopen(opt.junit.c_str(), "w"));
        if (!junit_out) {
            print_error("cannot write `{}`: {}\n", opt.junit, std::strerror(errno));
            return exit_usage;
        }
    }
    std::size_t passed = 0, failed = 0, skipped = 0, ran = 0, checked_files = 0;
    std::string junit = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n";
    bool usage_error = false;
    for (const auto& path : opt.files) {
        dsl::SourceManager sm;
        dsl::Diagnostics diags;
        auto compiled = compile(path, sm, diags);
        if (!compiled) {
            usage_error = true;
            continue;
        }
        if (diags.has_errors()) {
            diags.sort_by_position();
            for (const auto& d : diags.all()) fmt::print(stderr, "{}", dsl::render_text(d, sm));
            fmt::print(stderr, "{}: {}; no test run\n", display_name(path), plural(diags.errors(), "error"));
            ++failed;
            continue;
        }
        ++checked_files;
        const engine::Graph graph = engine::lower(compiled->program);
        tools::ScenarioRunner runner(compiled->program, graph, sm, opt.seed, opt.limits);
        fmt::print("{}\n", display_name(path));
        std::size_t file_failed = 0, file_tests = 0;
        double file_ms = 0;
        std::string cases;
        for (const dsl::Test& test : compiled->program.tests) {
            if (!opt.filter.empty() && test.title.find(opt.filter) == std::string::npos) {
                ++skipped;
                continue;
            }
            const tools::TestOutcome out = runner.run(test);
            ++ran;
            ++file_tests;
            file_ms += out.wall_ms;
            fmt::print("  {}  {} ({:.0f} ms)\n", out.passed ? "ok  " : "FAIL", out.title, out.wall_ms);
            cases += fmt::format("    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3f}\"",
                                 xml_escape(display_name(path)), xml_escape(out.title), out.wall_ms / 1000);
            if (out.passed) {
                ++passed;
                cases += "/>\n";
            } else {
                ++failed;
                ++file_failed;
                fmt::print("{}", out.failure);
                cases += fmt::format(">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                                     xml_escape(out.failure.substr(0, out.failure.find('\n'))), xml_escape(out.failure));
            }
        }
        junit += fmt::format("  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" time=\"{:.3f}\">\n{}  </testsuite>\n",
                             xml_escape(display_name(path)), file_tests, file_failed, file_ms / 1000, cases);
        if (file_tests > 0) {
            const auto unfired = runner.unfired_rules();
            if (unfired.empty()) {
                fmt::print("  rule coverage: every rule fired in some test\n");
            } else {
                fmt::print("  rule coverage: {} never fired in any test:\n", plural(unfired.size(), "rule"));
                for (const auto& rule : unfired) fmt::print("    {}\n", rule);
            }
            if (runner.has_branches()) {
                const auto unrun = runner.unrun_branches();
                if (unrun.empty()) {
                    fmt::print("  branch coverage: every branch of `if` ran in some test\n");
                } else {
                    fmt::print("  branch coverage: {} {} of `if` never ran in any test:\n", unrun.size(),
                               unrun.size() == 1 ? "branch" : "branches");
                    for (const auto& branch : unrun) fmt::print("    {}\n", branch);
                }
            }
        }
    }
    junit += "</testsuites>\n";
    if (junit_out && (std::fputs(junit.c_str(), junit_out.get()) < 0 || std::fflush(junit_out.get()) != 0)) {
        print_error("cannot write `{}`: {}\n", opt.junit, std::strerror(errno));
        return exit_usage;
    }
    fmt::print("{} passed, {} failed{}\n", passed, failed, skipped ? fmt::format(", {} skipped", skipped) : "");
    if (usage_error) return exit_usage;
    // A filter that selects nothing is most likely a typo: a run of no test is no pass.
    if (!opt.filter.empty() && ran == 0) {
        print_error("no test title contains `{}` ({} in {})\n", opt.filter,
                   plural(skipped, "test"), plural(checked_files, "file"));
        return exit_errors;
    }
    return failed ? exit_errors : exit_ok;
}

int run_graph(const std::string& file, const std::string& format) {
    const auto loaded = load(file);
    if (!loaded.graph) return loaded.status;
    fmt::print("{}", format == "mermaid" ? engine::to_mermaid(*loaded.graph) : engine::to_dot(*loaded.graph));
    return exit_ok;
}

int run_probe(const std::string& file, const std::string& node, const std::string& format) {
    const auto loaded = load(file);
    if (!loaded.graph) return loaded.status;
    std::vector<int> nodes;
    if (!node.empty()) {
        const int index = find_node(*loaded.graph, node);
        if (index < 0) return exit_usage;
        nodes.push_back(index);
    } else {
        for (std::size_t i = 0; i < loaded.graph->nodes.size(); ++i) nodes.push_back(static_cast<int>(i));
    }
    return tools::probe(*loaded.graph, *loaded.sources, nodes, format == "json", use_color("auto", STDERR_FILENO));
}

// `meshrun drive FILE NODE.PIN=LEVEL`: asks the node (or the dashboard named by --to) to drive a
// simulated input.
int run_drive(const std::string& file, const std::string& assignment, const std::string& to) {
    const auto eq = assignment.find('='), dot = assignment.find('.');
    const std::string level_text = eq == std::string::npos ? "" : assignment.substr(eq + 1);
    if (eq == std::string::npos || dot == std::string::npos || dot > eq || dot == 0 || dot + 1 == eq ||
        (level_text != "0" && level_text != "1")) {
        print_error("`{}`: write NODE.PIN=LEVEL, the level 0 or 1 (as in porch.button=0)\n", assignment);
        return exit_usage;
    }
    const std::string node_name = assignment.substr(0, dot), pin_name = assignment.substr(dot + 1, eq - dot - 1);
    const auto loaded = load(file, "not driven");
    if (!loaded.graph) return exit_usage;
    const engine::Graph& graph = *loaded.graph;
    const int index = find_node(graph, node_name);
    if (index < 0) return exit_usage;
    const engine::Node& node = graph.nodes[static_cast<std::size_t>(index)];
    std::vector<std::string_view> inputs;
    for (const auto& p : node.pins)
        if (!p.output) inputs.push_back(p.name);
    const auto pin = std::find_if(node.pins.begin(), node.pins.end(), [&](const auto& p) { return p.name == pin_name; });
    if (pin == node.pins.end() || pin->output) {
        const auto guess = dsl::closest(pin_name, inputs);
        print_error("{}; {}\n",
                    pin == node.pins.end() ? fmt::format("node `{}` has no pin `{}`", node_name, pin_name)
                                           : fmt::format("`{}.{}` is an output: the node's rules drive it", node_name, pin_name),
                    guess ? fmt::format("did you mean `{}`?", *guess)
                          : inputs.empty() ? std::string("it has no input to drive")
                                           : fmt::format("its inputs: {}", fmt::join(inputs, ", ")));
        return exit_usage;
    }
    // Where to ask: --to ([http://|https://]HOST:PORT), else the node's own port.
    std::string host, port_text, scheme;
    std::string where = to;
    if (const auto colon = where.find("://"); colon != std::string::npos) {
        scheme = where.substr(0, colon);
        where = where.substr(colon + 3);
    }
    if (!where.empty()) {
        const auto colon = where.rfind(':');
        host = colon == std::string::npos ? "" : where.substr(0, colon);
        port_text = colon == std::string::npos ? where : where.substr(colon + 1);
    } else if (node.port) {
        host = node.host.empty() ? "127.0.0.1" : node.host;
        port_text = std::to_string(*node.port);
    } else {
        print_error("node `{}` has no port (it is a client): give the address of the dashboard of the process that "
                    "runs it, --to ADDR:PORT of its --dashboard\n", node_name);
        return exit_usage;
    }
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    char* end = nullptr;
    const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
    if ((scheme != "" && scheme != "http" && scheme != "https") || host.empty() || port_text.empty() || *end != '\0' ||
        port == 0 || port > 65535) {
        print_error("--to `{}`: write HOST:PORT, http://HOST:PORT or https://HOST:PORT\n", to);
        return exit_usage;
    }
    // A node of a file with `tls` serves HTTPS; a dashboard serves plain HTTP (--to http://...).
    const bool tls = scheme.empty() ? graph.tls.has_value() && to.empty() : scheme == "https";
    if (tls && !graph.tls) {
        print_error("--to `{}`: https needs the file's `tls` item (its `ca` to check the node)\n", to);
        return exit_usage;
    }
    std::string token;
    if (!graph.secrets.empty()) {
        const std::string& var = graph.secrets.front().env;
        const char* value = std::getenv(var.c_str());
        if (!value || !*value) {
            print_error("the file says `secret env {}`, and {} is {}: set it to the fleet's token\n", var, var,
                        value ? "empty" : "not set");
            return exit_errors;
        }
        token = value;
    }
    engine::HttpAnswer answer;
    try {
        answer = engine::drive_pin_at(graph, host, static_cast<std::uint16_t>(port), tls, node_name, pin_name,
                                      level_text == "1" ? 1 : 0, token);
    } catch (const std::exception& e) {
        print_error("{}\n", e.what());
        return exit_errors;
    }
    std::string body = answer.body;
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    const bool v6 = host.find(':') != std::string::npos;
    const std::string address = fmt::format("{}{}{}:{}", v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (answer.server != "meshrun") {
        print_error("{} is not a meshrun node or dashboard: it answered HTTP {} without meshrun's Server header\n",
                    address, answer.status);
        return exit_errors;
    }
    if (answer.status != 200) {
        print_error("{} refused: {} (HTTP {})\n", address, engine::escape_controls(body), answer.status);
        return exit_errors;
    }
    fmt::print("{}\n", engine::escape_controls(body));
    return exit_ok;
}

// `meshrun ls`: what etcd holds for the file's mesh, and which declared nodes it lacks.
int run_ls(const std::string& file, const std::string& format) {
    const auto loaded = load(file, "not listed");
    if (!loaded.graph) return exit_usage;  // unreadable, or with errors
    const engine::Graph& graph = *loaded.graph;
    if (graph.discovery.empty()) {
        print_error("`{}` has no `discovery etcd \"URL\"` line: no registry to list\n",
                   display_name(file));
        return exit_usage;
    }
    engine::RegistryListing listing;
    try {
        listing = engine::list_registry(graph);
    } catch (const std::exception& e) {
        print_error("{}\n", e.what());
        return exit_errors;
    }
    if (!listing.error.empty()) {
        if (listing.reached) {
            print_error("etcd at {} refused to list /meshrun/{}/nodes/: {}\n", listing.endpoint,
                       graph.name, engine::escape_controls(listing.error));
        } else {
            print_error("no etcd endpoint answered ({})\n", engine::escape_controls(listing.error));
        }
        return exit_errors;
    }

    // One row a key, in key order: its node, and what it registered, each field of the type
    // meshrun writes or left out; a value that is not meshrun's is marked `"valid": false`.
    const std::string prefix = fmt::format("/meshrun/{}/nodes/", graph.name);
    nlohmann::json nodes = nlohmann::json::array();
    std::vector<bool> registered(graph.nodes.size());
    for (const auto& e : listing.entries) {
        const std::string name = e.key.substr(std::min(prefix.size(), e.key.size()));
        nlohmann::json value = nlohmann::json::parse(e.value, nullptr, false);
        bool valid = value.is_object();
        if (!valid) value = nlohmann::json::object();
        nlohmann::json row = {{"node", name}};
        // A field of the type meshrun writes is taken; one of another type makes the value invalid.
        const auto take = [&](const char* field, auto typed) {
            if (!value.contains(field)) return;
            const nlohmann::json& v = value[field];
            if (typed(v)) {
                row[field] = v;
            } else {
                valid = false;
            }
        };
        take("address", [](const nlohmann::json& v) { return v.is_string() && !v.get<std::string>().empty(); });
        take("port", [](const nlohmann::json& v) {
            return v.is_number_unsigned() && v.get<std::uint64_t>() >= 1 && v.get<std::uint64_t>() <= 65535;
        });
        take("channels", [](const nlohmann::json& v) {
            return v.is_array() && std::all_of(v.begin(), v.end(), [](const nlohmann::json& c) { return c.is_string(); });
        });
        take("tls", [](const nlohmann::json& v) { return v.is_boolean(); });
        take("version", [](const nlohmann::json& v) { return v.is_string(); });
        if (row.contains("address") != row.contains("port")) valid = false;  // one without the other
        row["valid"] = valid;
        row["lease"] = e.lease;
        row["ttl"] = e.ttl;
        row["granted_ttl"] = e.granted;
        const int index = graph.find(name);
        row["declared"] = index >= 0;
        if (index >= 0) registered[static_cast<std::size_t>(index)] = true;
        nodes.push_back(std::move(row));
    }
    std::vector<std::string> missing;
    for (std::size_t i = 0; i < graph.nodes.size(); ++i)
        if (!registered[i]) missing.push_back(graph.nodes[i].name);

    if (format == "json") {
        const nlohmann::json out = {{"mesh", graph.name}, {"etcd", listing.endpoint}, {"nodes", nodes}, {"missing", missing}};
        fmt::print("{}\n", out.dump());
        return exit_ok;
    }
    fmt::print("mesh {} in etcd at {}: {} of {} declared registered\n", graph.name, listing.endpoint,
               graph.nodes.size() - missing.size(), plural(graph.nodes.size(), "node"));
    std::vector<std::vector<std::string>> table = {{"NODE", "ADDRESS", "PORT", "CHANNELS", "TLS", "LEASE"}};
    for (const auto& row : nodes) {
        std::vector<std::string> channels;
        if (row.contains("channels") && row["channels"].is_array())
            for (const auto& c : row["channels"])
                if (c.is_string()) channels.push_back(c.get<std::string>());
        const auto text = [&row](const char* field) {
            if (!row.contains(field)) return std::string("-");
            return row[field].is_string() ? row[field].get<std::string>() : row[field].dump();
        };
        const std::int64_t ttl = row["ttl"].get<std::int64_t>(), granted = row["granted_ttl"].get<std::int64_t>();
        const std::string lease = row["lease"] == "0" ? "none"
                                  : ttl < 0           ? "gone"
                                                      : fmt::format("{} s left of {}", ttl, granted);
        std::string name = row["node"].get<std::string>();
        if (!row["declared"].get<bool>()) name += " (not in the file)";
        if (!row["valid"].get<bool>()) name += " (a value not meshrun's)";
        table.push_back({name, text("address"), text("port"), channels.empty() ? "-" : fmt::format("{}", fmt::join(channels, ",")),
                         row.contains("tls") ? (row["tls"] == true ? "yes" : "no") : "-", lease});
    }
    // What etcd holds is anybody's: control characters made visible, long cells cut.
    for (auto& r : table)
        for (auto& cell : r) {
            cell = engine::escape_controls(cell);
            if (cell.size() <= 48) continue;
            std::size_t cut = 45;
            while (cut > 0 && (static_cast<unsigned char>(cell[cut]) & 0xC0) == 0x80) --cut;  // not inside a character
            cell = cell.substr(0, cut) + "...";
        }
    std::vector<std::size_t> width(table.front().size());
    for (const auto& r : table)
        for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
    for (const auto& r : table) {
        std::string line;
        for (std::size_t c = 0; c < r.size(); ++c)
            line += c + 1 < r.size() ? fmt::format("{:<{}}  ", r[c], width[c]) : r[c];
        fmt::print("{}\n", line);
    }
    if (!missing.empty())
        fmt::print("missing: {} (declared in the file, not registered)\n", fmt::join(missing, ", "));
    return exit_ok;
}

// `meshrun --version`: the version (and `git describe` in a checkout), what it was built with.
std::string version_text() {
    const std::string_view describe = tools::git_describe;
    const std::string_view gpiod = drivers::gpiod_api();  // `libgpiod 1.6.3`, or `none`
    return fmt::format("meshrun {}{}\nlibgpiod: {}\nsystemd: {}\nbuild: {}, {}", MESHRUN_VERSION,
                       describe.empty() ? "" : fmt::format(" ({})", describe),
                       gpiod == "none" ? std::string("none (built without libgpiod: no real GPIO lines)")
                                       : fmt::format("API {} ({})", MESHRUN_LIBGPIOD_API, gpiod),
                       tools::systemd::notify_backend(), MESHRUN_BUILD_TYPE, MESHRUN_LINKAGE);
}

const std::vector<std::string_view> command_names = {"check", "run", "up", "graph", "test", "probe", "ls"};

// A parse error of the command line, said the way meshrun says errors; exit 2. Arguments that
// were not expected are named: an unknown command (with a likely one), an unknown option.
int usage_error(const CLI::App& app, const CLI::ParseError& e) {
    std::string message = e.what();
    const auto left = app.remaining(true);
    if (!left.empty() && left.front().rfind('-', 0) == 0 && left.front() != "-") {
        message = fmt::format("unknown option {}", left.front().substr(0, left.front().find('=')));
    } else if (!left.empty() && app.get_subcommands().empty()) {
        const auto guess = dsl::closest(left.front(), command_names);
        message = fmt::format("unknown command `{}`{}", left.front(),
                              guess ? fmt::format("; did you mean `{}`?", *guess) : "");
    } else if (app.get_subcommands().empty()) {
        message = fmt::format("a command is required: {}", fmt::join(command_names, ", "));
    }
    const std::string help = app.get_subcommands().empty()
                                 ? "meshrun --help"
                                 : fmt::format("meshrun {} --help", app.get_subcommands().front()->get_name());
    print_error("{}\nRun `{}` for more information.\n", message, help);
    return exit_usage;
}

// `--seed`, `--max-steps`: digits only (CLI11 alone would read -1 as 2^64 - 1), and no more
// than 64 bits hold (CLI11 would take 2^64 as 2^64 - 1 without a word).
const CLI::Validator whole_number(
    [](std::string& text) {
        const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
        errno = 0;
        if (digits) std::strtoull(text.c_str(), nullptr, 10);
        return digits && errno != ERANGE ? std::string()
                                         : fmt::format("`{}` is not a whole number from 0 to 18446744073709551615", text);
    },
    "");

// `--timeout`: a number of seconds, 0 or more.
const CLI::Validator seconds_value(
    [](std::string& text) {
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        return !text.empty() && *end == '\0' && std::isfinite(value) && value >= 0
                   ? std::string()
                   : fmt::format("`{}` is not a number of seconds from 0 up", text);
    },
    "");

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"meshrun: wire GPIO devices into a fleet with one text file.\n\n"
                 "A .mesh file declares the nodes of a fleet, their hosts and ports, the GPIO lines\n"
                 "each node drives or watches, timers, and rules such as `on signal 1 -> buzz`.",
                 "meshrun"};
    app.set_version_flag("--version", version_text);
    app.require_subcommand(1);
    app.footer("Run `meshrun COMMAND --help` for the options of a command.\n"
               "Exit status: 0 on success, 1 when a file has errors or a test fails, 2 on bad usage\n"
               "(an unknown command or option, an unreadable file).\n"
               "Documentation: README.md and docs/ in the meshrun sources, installed in\n"
               "/usr/share/doc/meshrun; `meshrun(1)`, made from this help.");

    CheckOptions check;
    auto* cmd = app.add_subcommand("check", "Check .mesh files and print compiler-style diagnostics");
    cmd->add_option("files", check.files, "The .mesh files to check (`-`: standard input)")
        ->required()
        ->type_name("FILE...");
    cmd->add_option("--format", check.format, "Diagnostics as `text` (for people) or `json` (one object a line)")
        ->check(CLI::IsMember({"text", "json"}))
        ->default_str("text");
    cmd->add_option("--color", check.color, "Color the text: `auto` (on a terminal, unless NO_COLOR is set), "
                                            "`always` or `never`")
        ->check(CLI::IsMember({"auto", "always", "never"}))
        ->default_str("auto");
    cmd->add_flag("--werror", check.werror, "Treat warnings as errors");
    cmd->add_flag("-q,--quiet", check.quiet, "Print diagnostics only, not the summary line");
    cmd->footer("`-` reads a file from standard input; diagnostics name it <stdin>, and its includes\n"
                "are found from the current directory.\n"
                "Exit status: 0 when no file has errors (warnings allowed), 1 when one has,\n"
                "2 on bad usage or an unreadable file.\n\n"
                "Examples:\n"
                "  meshrun check topologies/arduino.mesh\n"
                "  meshrun check --werror topologies/*.mesh\n"
                "  meshrun check --format json fleet.mesh | jq .message\n"
                "  bench/gen_topology.py --nodes 100 - | meshrun check -");

    RunOptions run;
    const std::string log_notes =
        "The text log shows control characters and invalid UTF-8 escaped (`\\n`, `\\x1b`); the JSON\n"
        "log has the exact text. --timestamps is the local time (TZ); JSON's `time` has the offset.\n"
        "Under systemd (Type=notify), READY=1 goes to NOTIFY_SOCKET once every port listens and every\n"
        "pin is held, STOPPING=1 at SIGINT or SIGTERM; when JOURNAL_STREAM names the output, `--color\n"
        "auto` does not color it and diagnostics are one line each (docs/runtime.md).\n";
    auto add_run_options = [&run](CLI::App* sub) {
        sub->add_option("--seed", run.seed, "Seed random(P) so that a run can be repeated (0, the default: a new "
                                            "seed each run)")
            ->check(whole_number)
            ->type_name("N");
        sub->add_option("--log", run.log, "Log lines as `text` (`[ node ] ...`) or `json` (one object a line)")
            ->check(CLI::IsMember({"text", "json"}))
            ->default_str("text");
        sub->add_option("--color", run.color, "Color the node prefixes: `auto`, `always` or `never`")
            ->check(CLI::IsMember({"auto", "always", "never"}))
            ->default_str("auto");
        sub->add_option("--queue-limit", run.queue_limit,
                        "Messages held per target channel until acknowledged (its outbox) while its node is down "
                        "or slow; a sending rule waits while it is full (default: the file's `limits { outbox N }`, "
                        "else 1000)")
            ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
        sub->add_option("--state", run.state,
                        "Keep each node's outbox and what it fired in DIR/NODE.state (appended and synced): "
                        "killed and restarted, it loses no message and fires none twice (docs/delivery.md)")
            ->type_name("DIR");
        // CLI::Range lets `nan` through: a number of seconds is checked by hand.
        // Times are kept to the millisecond: a value between 0 and 1 ms would silently be 0.
        const auto seconds = [](double most) {
            return CLI::Validator(
                [most](const std::string& text) {
                    char* end = nullptr;
                    const double v = std::strtod(text.c_str(), &end);
                    const bool ok = !text.empty() && *end == '\0' && (v == 0 || (v >= 0.001 && v <= most));
                    return ok ? std::string() : fmt::format("0, or a number of seconds from 0.001 to {}", most);
                },
                "SECONDS");
        };
        sub->add_option("--grace", run.grace,
                        "Seconds to go on delivering held messages after SIGINT or SIGTERM; then what is left "
                        "is named in a warning (a second signal stops at once)")
            ->check(seconds(3600))
            ->default_str("5");
        sub->add_option("--ack-timeout", run.ack_timeout,
                        "Seconds a link waits for a message's acknowledgement; then it takes the connection for "
                        "dead and sends the message again on a new one (0: wait for ever; at most 86400)")
            ->check(seconds(86400))
            ->default_str("30");
        sub->add_option("--metrics", run.metrics,
                        "Also serve /metrics (Prometheus) and /healthz of every node here on this port of "
                        "127.0.0.1, or on ADDR:PORT; each node with a port serves its own there too")
            ->type_name("[ADDR:]PORT");
        sub->add_option("--dashboard", run.dashboard,
                        "Also serve the dashboard, the fleet live in a browser, on this port of 127.0.0.1, or on "
                        "ADDR:PORT (docs/dashboard.md); a click drives a simulated input")
            ->type_name("[ADDR:]PORT");
        sub->add_flag("--timestamps", run.timestamps,
                      "Start each log line with the local time, 2026-11-30 14:03:05.123 (JSON: add `time`)");
    };
    auto* run_cmd = app.add_subcommand("run", "Run one node of a .mesh file: a websocket endpoint on its port");
    run_cmd->add_option("file", run.file, "The .mesh file")->required()->type_name("FILE");
    run_cmd->add_option("--node", run.node, "The node to run")->required()->type_name("NAME");
    run_cmd->add_flag("--sim", run.sim, "Simulated pins instead of real GPIO lines");
    run_cmd->add_option("--bind", run.bind,
                        "Listen on this address instead of the node's host: IPv4, IPv6 (with or without brackets) "
                        "or a host name; 0.0.0.0 for every interface")
        ->type_name("ADDR");
    add_run_options(run_cmd);
    run_cmd->footer("The node serves ws://HOST:PORT/CHANNEL for each of its channels and GET / with its status.\n"
                    "SIGINT or SIGTERM closes every connection with a close frame, delivers what links hold\n"
                    "(--grace) and exits 0.\n"
                    + log_notes +
                    "With `secret env VAR` the token is read from VAR at start (missing or empty: an error);\n"
                    "with `tls`, the certificate and key files are read at start.\n"
                    "With `discovery etcd \"URL\"`, the node registers in etcd (docs/discovery.md).\n"
                    "Exit status: 0 after a signal; 1 when the file has errors, the secret is not set, the state\n"
                    "directory or the TLS files cannot be read, the\n"
                    "node cannot listen or hold its pins, or it would do nothing (no port, no timer, no rule);\n"
                    "2 on bad usage, an unreadable file or an unusable --bind.\n\n"
                    "Example:\n  meshrun run topologies/arduino.mesh --node buzzer --sim");

    auto* up_cmd = app.add_subcommand("up", "Run every node of a .mesh file in one process, on simulated pins");
    up_cmd->add_option("file", run.file, "The .mesh file")->required()->type_name("FILE");
    up_cmd->add_option("--only", run.only, "Run only these nodes (the others are reached where the file says)")
        ->type_name("A,B,...");
    add_run_options(up_cmd);
    up_cmd->footer("Every node runs on this machine, whatever host the file names: each listens on loopback, on\n"
                   "its declared port where that is free and not taken by another node, otherwise on a free port\n"
                   "(the log line says which). Links between them go where they really listen; with --only, links\n"
                   "to the other nodes go to their declared addresses. Logs are interleaved, prefixed with the node.\n"
                   "SIGINT or SIGTERM stops every node, delivers what links hold (--grace) and exits 0.\n" + log_notes +
                   "With `discovery etcd \"URL\"`, every node registers in etcd (docs/discovery.md).\n"
                   "Exit status: 0 after a signal; 1 when the file has errors, the secret is not set, the state\n"
                   "directory or the TLS files cannot be read, a node cannot listen, or there is nothing to run\n"
                   "(no node, or none with a port, a timer or a rule); 2 on bad usage or an unreadable file.\n\n"
                   "Example:\n  meshrun up topologies/arduino.mesh --seed 7 --timestamps");

    std::string probe_file, probe_node, probe_format = "text";
    auto* probe_cmd = app.add_subcommand("probe", "Hold every declared pin against this board's GPIO lines, requesting none");
    probe_cmd->add_option("file", probe_file, "The .mesh file")->required()->type_name("FILE");
    probe_cmd->add_option("--node", probe_node, "Only this node's pins (default: every node's)")->type_name("NAME");
    probe_cmd->add_option("--format", probe_format, "`text` (a line a pin) or `json` (one object a pin and line)")
        ->check(CLI::IsMember({"text", "json"}))
        ->default_str("text");
    probe_cmd->footer("For each pin: the chip found (by name, path or label), the line (offset and name), who holds it,\n"
                      "its direction, bias and edges as the kernel reports them. Problems are errors at the pin's\n"
                      "declaration: a missing chip or line, a line held by another consumer (or by the node itself,\n"
                      "running already), a line name whose number is not its offset, two nodes of one host on one line.\n"
                      "Nothing is requested: probing never disturbs a running fleet.\n"
                      "Exit status: 0 when every pin is there and free, 1 when one has a problem (or the file has\n"
                      "errors), 2 on bad usage or an unreadable file.\n\n"
                      "Example:\n  meshrun probe /etc/meshrun/fleet.mesh --node porch");

    std::string graph_file, graph_format = "dot";
    auto* graph_cmd = app.add_subcommand("graph", "Draw the event graph of a .mesh file (Graphviz or Mermaid)");
    graph_cmd->add_option("file", graph_file, "The .mesh file")->required()->type_name("FILE");
    graph_cmd->add_option("--format", graph_format, "`dot` (Graphviz) or `mermaid`")
        ->check(CLI::IsMember({"dot", "mermaid"}))
        ->default_str("dot");
    graph_cmd->footer("Exit status: 0 when drawn, 1 when the file has errors, 2 on bad usage or an unreadable file.\n\n"
                      "Example:\n  meshrun graph topologies/arduino.mesh | dot -Tsvg > arduino.svg");

    std::string ls_file, ls_format = "text";
    auto* ls_cmd = app.add_subcommand("ls", "List what etcd holds for the nodes of a .mesh file with `discovery`");
    ls_cmd->add_option("file", ls_file, "The .mesh file")->required()->type_name("FILE");
    ls_cmd->add_option("--format", ls_format, "`text` (a table, a line a node) or `json` (one object)")
        ->check(CLI::IsMember({"text", "json"}))
        ->default_str("text");
    ls_cmd->footer("Asks the file's etcd endpoints in turn (`discovery etcd \"URL\"` lines) for the keys under\n"
                   "/meshrun/MESH/nodes/, and the time to live of their leases. A line a key: the node, the address\n"
                   "and port it bound, its channels, TLS or not, and the seconds left of its lease out of the TTL it\n"
                   "was granted (a key of a node the file does not declare says so). Then the declared nodes that\n"
                   "are not registered: never started, stopped, or gone with their lease.\n"
                   "JSON: {\"mesh\", \"etcd\" (the endpoint that answered), \"nodes\": [{\"node\", \"address\", \"port\",\n"
                   "\"channels\", \"tls\", \"version\", \"lease\" (etcd's ID, a decimal string), \"ttl\" (-1: gone),\n"
                   "\"granted_ttl\", \"declared\", \"valid\" (false: a value that is not meshrun's)}],\n"
                   "\"missing\": [NODE...]}.\n"
                   "Exit status: 0 when etcd answered (whatever it holds); 1 when no endpoint answered (each is\n"
                   "named with why) or etcd refused the request; 2 on bad usage, an unreadable file, a file\n"
                   "with errors (an https endpoint among them: not supported yet) or without `discovery`.\n\n"
                   "Examples:\n  meshrun ls fleet.mesh\n  meshrun ls fleet.mesh --format json | jq -r '.missing[]'");

    std::string drive_file, drive_assignment, drive_to;
    auto* drive_cmd = app.add_subcommand("drive", "Drive a simulated input pin of a running fleet");
    drive_cmd->add_option("file", drive_file, "The .mesh file")->required()->type_name("FILE");
    drive_cmd->add_option("pin", drive_assignment, "The pin and its level, as the rules see it: NODE.PIN=0 or =1")
        ->required()
        ->type_name("NODE.PIN=LEVEL");
    drive_cmd->add_option("--to", drive_to,
                          "Ask there instead of at the node's declared address: the node's port where `up` moved "
                          "it, or the --dashboard of the process that runs it (plain HTTP)")
        ->type_name("[http[s]://]HOST:PORT");
    drive_cmd->footer("Sends POST /pins/NODE/PIN with the level to the node's HTTP port (HTTPS with `tls`), which\n"
                      "drives the line as a level on the wire would: its debounce, then its rules. Only simulated\n"
                      "inputs are driven (`meshrun up`, `run --sim`); an output, a real line or an unknown pin is\n"
                      "refused with the reason. With `secret env VAR`, the token is read from VAR. A node without a\n"
                      "port (a client) is driven through its process's dashboard: --to ADDR:PORT.\n"
                      "Exit status: 0 when driven; 1 when the node refused or could not be reached, or the secret\n"
                      "is not set; 2 on bad usage, an unreadable file, a file with errors, an unknown node or pin.\n\n"
                      "Examples:\n  meshrun drive topologies/doorbell.mesh chime.mute=1 --to 127.0.0.1:8700\n"
                      "  meshrun drive topologies/doorbell.mesh porch.button=0 --to 127.0.0.1:8080");

    TestOptions tests;
    auto* test_cmd = app.add_subcommand("test", "Run the `test` scenarios of .mesh files on simulated pins and virtual time");
    test_cmd->add_option("files", tests.files, "The .mesh files")->required()->type_name("FILE...");
    test_cmd->add_option("--filter", tests.filter, "Run only the tests whose title contains TEXT")->type_name("TEXT");
    test_cmd->add_option("--junit", tests.junit, "Also write the results as JUnit XML, for CI systems")
        ->type_name("OUT.xml");
    test_cmd->add_option("--seed", tests.seed, "Seed random(P); the same file and seed give the same result (default 1)")
        ->check(whole_number)
        ->type_name("N");
    test_cmd->add_option("--timeout", tests.limits.timeout_seconds,
                         fmt::format("Fail a test after SECONDS of wall time (default {:g}; 0: no limit)",
                                     tools::Limits{}.timeout_seconds))
        ->check(seconds_value)
        ->type_name("SECONDS");
    test_cmd->add_option("--max-steps", tests.limits.max_steps,
                         fmt::format("Fail a test that fires timers more than N times (default {}; 0: no limit)",
                                     tools::Limits{}.max_steps))
        ->check(whole_number)
        ->type_name("N");
    test_cmd->footer("Each test runs on a fresh fleet of every node of its file, on real websockets on free\n"
                     "loopback ports, with simulated pins; time is virtual: `advance 1h` takes no wall time.\n"
                     "A test that reaches --timeout or --max-steps fails at the statement it was running.\n"
                     "Timer firings count `every`, `after` and debounce: an hour of a 1 s timer is 3,600,\n"
                     "well under the default; an hour of `every 1us` is 3.6e9 and fails in a second.\n"
                     "`discovery` lines are ignored: the nodes of a test do not register in etcd; with `secret`,\n"
                     "the fleet of a test uses a token of its own.\n"
                     "Exit status: 0 when every test passes; 1 when one fails, a file has errors or --filter\n"
                     "matches no test; 2 on bad usage: an unreadable file, or a --junit path that cannot be\n"
                     "written (found before any test runs).\n\n"
                     "Example:\n  meshrun test topologies/*.mesh --junit results.xml");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        return usage_error(app, e);
    }
    if (app.got_subcommand("check")) return run_check(check);
    if (app.got_subcommand("run")) return run_fleet(run, true);
    if (app.got_subcommand("up")) return run_fleet(run, false);
    if (app.got_subcommand("graph")) return run_graph(graph_file, graph_format);
    if (app.got_subcommand("probe")) return run_probe(probe_file, probe_node, probe_format);
    if (app.got_subcommand("test")) return run_tests(tests);
    if (app.got_subcommand("ls")) return run_ls(ls_file, ls_format);
    if (app.got_subcommand("drive")) return run_drive(drive_file, drive_assignment, drive_to);
    return exit_usage;
}
