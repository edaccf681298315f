// meshrun: the command line. Thin: every subcommand is a few calls into the libraries.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "meshrun/drivers/sim.hpp"
#include "meshrun/dsl/frontend.hpp"
#include "meshrun/engine/graph.hpp"
#include "meshrun/engine/runtime.hpp"
#include "scenario.hpp"

namespace {

using namespace meshrun;

constexpr int exit_ok = 0, exit_errors = 1, exit_usage = 2;

bool use_color(const std::string& mode, int fd) {
    if (mode == "always") return true;
    if (mode == "never") return false;
    const char* no_color = std::getenv("NO_COLOR");
    return isatty(fd) && !(no_color && *no_color);
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

// Compiles a file; an unreadable one is reported here and gives nothing.
std::optional<dsl::Compiled> compile(const std::string& path, dsl::SourceManager& sm, dsl::Diagnostics& diags) {
    try {
        return dsl::compile_file(path, sm, diags);
    } catch (const std::exception&) {
        fmt::print(stderr, "meshrun: error: cannot read `{}`: {}\n", path, std::strerror(errno ? errno : ENOENT));
        return std::nullopt;
    }
}

int run_check(const CheckOptions& opt) {
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
        if (failed) {
            fmt::print(stderr, "{}: {}, {}{}\n", path, plural(errors, "error"), plural(warnings, "warning"),
                       opt.werror && warnings > 0 ? " (warnings are errors with --werror)" : "");
        } else {
            const auto& s = compiled->summary;
            fmt::print("{}: ok{}: {}, {}, {}, {}, {}, {}, {}\n", path,
                       warnings ? fmt::format(" with {}", plural(warnings, "warning")) : "", plural(s.nodes, "node"),
                       plural(s.channels, "channel"), plural(s.pins, "pin"), plural(s.rules, "rule"),
                       plural(s.timers, "timer"), plural(s.actions, "action"), plural(s.tests, "test"));
        }
    }
    return status;
}

// Compiles a file for the commands that run or draw it: diagnostics go to stderr,
// and a file with errors is refused.
std::optional<engine::Graph> load(const std::string& path) {
    dsl::SourceManager sm;
    dsl::Diagnostics diags;
    auto compiled = compile(path, sm, diags);
    if (!compiled) return std::nullopt;
    diags.sort_by_position();
    const dsl::RenderOptions render{use_color("auto", STDERR_FILENO)};
    for (const auto& d : diags.all()) fmt::print(stderr, "{}", dsl::render_text(d, sm, render));
    if (diags.has_errors()) {
        fmt::print(stderr, "{}: {}; not started\n", path, plural(diags.errors(), "error"));
        return std::nullopt;
    }
    return engine::lower(compiled->program);
}

struct RunOptions {
    std::string file;
    std::string node;
    std::vector<std::string> only;
    bool sim = false;
    std::string bind;
    std::uint64_t seed = 0;
    std::string log = "text";
    std::string color = "auto";
    std::size_t queue_limit = 1000;
    double grace = 5;
};

int find_node(const engine::Graph& graph, const std::string& name) {
    const int index = graph.find(name);
    if (index >= 0) return index;
    std::vector<std::string_view> names;
    for (const auto& n : graph.nodes) names.push_back(n.name);
    const auto guess = dsl::closest(name, names);
    fmt::print(stderr, "meshrun: error: no node `{}` in the file{}\n", name,
               guess ? fmt::format("; did you mean `{}`?", *guess) : "");
    return -1;
}

int run_fleet(const RunOptions& opt, bool one_node) {
    const auto graph = load(opt.file);
    if (!graph) return exit_errors;
    engine::FleetOptions fleet_options;
    if (one_node) {
        const int index = find_node(*graph, opt.node);
        if (index < 0) return exit_usage;
        const auto& node = graph->nodes[static_cast<std::size_t>(index)];
        if (!opt.sim && !node.pins.empty()) {
            fmt::print(stderr,
                       "meshrun: error: node `{}` has pins, and this build drives real GPIO lines only in a later "
                       "version; run it on simulated lines with --sim\n",
                       node.name);
            return exit_usage;
        }
        fleet_options.nodes.push_back(index);
    } else if (!opt.only.empty()) {
        for (const auto& name : opt.only) {
            const int index = find_node(*graph, name);
            if (index < 0) return exit_usage;
            fleet_options.nodes.push_back(index);
        }
    } else {
        for (std::size_t i = 0; i < graph->nodes.size(); ++i) fleet_options.nodes.push_back(static_cast<int>(i));
    }
    if (!opt.bind.empty()) fleet_options.bind = opt.bind;
    fleet_options.local = !one_node;  // `up`: the whole fleet (or --only's part) on this machine
    fleet_options.queue_limit = opt.queue_limit;
    fleet_options.grace = std::chrono::milliseconds(static_cast<std::int64_t>(opt.grace * 1000));
    fleet_options.seed = opt.seed;
    fleet_options.handle_signals = true;

    std::vector<std::string> names;
    for (int i : fleet_options.nodes) names.push_back(graph->nodes[static_cast<std::size_t>(i)].name);
    auto logger = opt.log == "json" ? engine::make_json_logger() : engine::make_text_logger(names, use_color(opt.color, STDOUT_FILENO));
    // Each node is a board of its own, with its own simulated chips.
    std::vector<drivers::SimDriver> pins(graph->nodes.size());
    for (auto& p : pins) fleet_options.node_pins.push_back(&p);
    engine::Fleet fleet(*graph, pins.front(), *logger, fleet_options);
    try {
        fleet.start();
    } catch (const engine::BadOption& e) {
        fmt::print(stderr, "meshrun: error: {}\n", e.what());
        return exit_usage;
    } catch (const std::exception& e) {
        fmt::print(stderr, "meshrun: error: {}\n", e.what());
        return exit_errors;
    }
    fleet.run();
    return exit_ok;
}

struct TestOptions {
    std::vector<std::string> files;
    std::string filter;
    std::string junit;
    std::uint64_t seed = 1;
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
    std::size_t passed = 0, failed = 0, skipped = 0;
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
            fmt::print(stderr, "{}: {}; no test run\n", path, plural(diags.errors(), "error"));
            ++failed;
            continue;
        }
        const engine::Graph graph = engine::lower(compiled->program);
        tools::ScenarioRunner runner(compiled->program, graph, sm, opt.seed);
        fmt::print("{}\n", path);
        std::size_t file_failed = 0, file_tests = 0;
        double file_ms = 0;
        std::string cases;
        for (const dsl::Test& test : compiled->program.tests) {
            if (!opt.filter.empty() && test.title.find(opt.filter) == std::string::npos) {
                ++skipped;
                continue;
            }
            const tools::TestOutcome out = runner.run(test);
            ++file_tests;
            file_ms += out.wall_ms;
            fmt::print("  {}  {} ({:.0f} ms)\n", out.passed ? "ok  " : "FAIL", out.title, out.wall_ms);
            cases += fmt::format("    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3f}\"", xml_escape(path),
                                 xml_escape(out.title), out.wall_ms / 1000);
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
                             xml_escape(path), file_tests, file_failed, file_ms / 1000, cases);
        if (file_tests > 0) {
            const auto unfired = runner.unfired_rules();
            if (unfired.empty()) {
                fmt::print("  rule coverage: every rule fired in some test\n");
            } else {
                fmt::print("  rule coverage: {} never fired in any test:\n", plural(unfired.size(), "rule"));
                for (const auto& rule : unfired) fmt::print("    {}\n", rule);
            }
        }
    }
    junit += "</testsuites>\n";
    if (!opt.junit.empty()) {
        std::FILE* out = std::fopen(opt.junit.c_str(), "w");
        if (!out) {
            fmt::print(stderr, "meshrun: error: cannot write `{}`: {}\n", opt.junit, std::strerror(errno));
            return exit_usage;
        }
        std::fputs(junit.c_str(), out);
        std::fclose(out);
    }
    fmt::print("{} passed, {} failed{}\n", passed, failed, skipped ? fmt::format(", {} skipped", skipped) : "");
    if (usage_error) return exit_usage;
    return failed ? exit_errors : exit_ok;
}

int run_graph(const std::string& file, const std::string& format) {
    const auto graph = load(file);
    if (!graph) return exit_errors;
    fmt::print("{}", format == "mermaid" ? engine::to_mermaid(*graph) : engine::to_dot(*graph));
    return exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"meshrun: wire GPIO devices into a fleet with one text file.\n\n"
                 "A .mesh file declares the nodes of a fleet, their hosts and ports, the GPIO lines\n"
                 "each node drives or watches, timers, and rules such as `on signal 1 -> buzz`.",
                 "meshrun"};
    app.set_version_flag("--version", std::string("meshrun ") + "0.1.0");
    app.require_subcommand(1);
    app.footer("Run `meshrun COMMAND --help` for the options of a command.\n"
               "Documentation: README.md and docs/ in the meshrun sources.");

    CheckOptions check;
    auto* cmd = app.add_subcommand("check", "Check .mesh files and print compiler-style diagnostics");
    cmd->add_option("files", check.files, "The .mesh files to check")->required()->type_name("FILE...");
    cmd->add_option("--format", check.format, "Diagnostics as `text` (for people) or `json` (one object a line)")
        ->check(CLI::IsMember({"text", "json"}))
        ->default_str("text");
    cmd->add_option("--color", check.color, "Color the text: `auto` (on a terminal, unless NO_COLOR is set), "
                                            "`always` or `never`")
        ->check(CLI::IsMember({"auto", "always", "never"}))
        ->default_str("auto");
    cmd->add_flag("--werror", check.werror, "Treat warnings as errors");
    cmd->add_flag("-q,--quiet", check.quiet, "Print diagnostics only, not the summary line");
    cmd->footer("Exit status: 0 when no file has errors (warnings allowed), 1 when one has,\n"
                "2 on bad usage or an unreadable file.\n\n"
                "Examples:\n"
                "  meshrun check topologies/arduino.mesh\n"
                "  meshrun check --werror topologies/*.mesh\n"
                "  meshrun check --format json fleet.mesh | jq .message");

    RunOptions run;
    auto add_run_options = [&run](CLI::App* sub) {
        sub->add_option("--seed", run.seed, "Seed random(P) so that a run can be repeated (0: a new seed each run)");
        sub->add_option("--log", run.log, "Log lines as `text` (`[ node ] ...`) or `json` (one object a line)")
            ->check(CLI::IsMember({"text", "json"}))
            ->default_str("text");
        sub->add_option("--color", run.color, "Color the node prefixes: `auto`, `always` or `never`")
            ->check(CLI::IsMember({"auto", "always", "never"}))
            ->default_str("auto");
        sub->add_option("--queue-limit", run.queue_limit,
                        "Messages held per target channel while its node is down or slow; a sending rule waits "
                        "while its queue is full")
            ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}))
            ->default_str("1000");
        sub->add_option("--grace", run.grace,
                        "Seconds to go on delivering held messages after SIGINT or SIGTERM; then what is left "
                        "is named in a warning (a second signal stops at once)")
            ->check(CLI::Range(0.0, 3600.0))
            ->default_str("5");
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
                    "SIGINT or SIGTERM closes every connection with a close frame, delivers what links hold (--grace)\n"
                    "and exits 0.\n"
                    "Exit status: 0 after a signal, 1 when the file has errors or the node cannot listen or hold its\n"
                    "pins, 2 on bad usage (an unusable --bind included).\n\n"
                    "Example:\n  meshrun run topologies/arduino.mesh --node buzzer --sim");

    auto* up_cmd = app.add_subcommand("up", "Run every node of a .mesh file in one process, on simulated pins");
    up_cmd->add_option("file", run.file, "The .mesh file")->required()->type_name("FILE");
    up_cmd->add_option("--only", run.only, "Run only these nodes")->delimiter(',')->type_name("A,B,...");
    add_run_options(up_cmd);
    up_cmd->footer("Every node runs on this machine, whatever host the file names: each listens on loopback, on\n"
                   "its declared port where that is free and not taken by another node, otherwise on a free port\n"
                   "(the log line says which). Links between them go where they really listen; with --only, links\n"
                   "to the other nodes go to their declared addresses. Logs are interleaved, prefixed with the node.\n\n"
                   "Example:\n  meshrun up topologies/arduino.mesh --seed 7");

    std::string graph_file, graph_format = "dot";
    auto* graph_cmd = app.add_subcommand("graph", "Draw the event graph of a .mesh file (Graphviz or Mermaid)");
    graph_cmd->add_option("file", graph_file, "The .mesh file")->required()->type_name("FILE");
    graph_cmd->add_option("--format", graph_format, "`dot` (Graphviz) or `mermaid`")
        ->check(CLI::IsMember({"dot", "mermaid"}))
        ->default_str("dot");
    graph_cmd->footer("Example:\n  meshrun graph topologies/arduino.mesh | dot -Tsvg > arduino.svg");

    TestOptions tests;
    auto* test_cmd = app.add_subcommand("test", "Run the `test` scenarios of .mesh files on simulated pins and virtual time");
    test_cmd->add_option("files", tests.files, "The .mesh files")->required()->type_name("FILE...");
    test_cmd->add_option("--filter", tests.filter, "Run only the tests whose title contains TEXT")->type_name("TEXT");
    test_cmd->add_option("--junit", tests.junit, "Also write the results as JUnit XML, for CI systems")
        ->type_name("OUT.xml");
    test_cmd->add_option("--seed", tests.seed, "Seed random(P); the same file and seed give the same result (default 1)");
    test_cmd->footer("Each test runs on a fresh fleet of every node of its file, on real websockets on free\n"
                     "loopback ports, with simulated pins; time is virtual: `advance 1h` takes no wall time.\n"
                     "Exit status: 0 when every test passes, 1 when one fails, 2 on bad usage.\n\n"
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
        app.exit(e);
        return exit_usage;
    }
    if (app.got_subcommand("check")) return run_check(check);
    if (app.got_subcommand("run")) return run_fleet(run, true);
    if (app.got_subcommand("up")) return run_fleet(run, false);
    if (app.got_subcommand("graph")) return run_graph(graph_file, graph_format);
    if (app.got_subcommand("test")) return run_tests(tests);
    return exit_usage;
}
