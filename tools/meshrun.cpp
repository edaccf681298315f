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

#include "meshrun/dsl/frontend.hpp"

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

int run_check(const CheckOptions& opt) {
    int status = exit_ok;
    const bool json = opt.format == "json";
    const dsl::RenderOptions render{use_color(opt.color, STDERR_FILENO)};
    for (const auto& path : opt.files) {
        dsl::SourceManager sm;
        dsl::Diagnostics diags;
        dsl::Compiled compiled;
        try {
            compiled = dsl::compile_file(path, sm, diags);
        } catch (const std::exception&) {
            fmt::print(stderr, "meshrun: error: cannot read `{}`: {}\n", path, std::strerror(errno ? errno : ENOENT));
            status = exit_usage;
            continue;
        }
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
            const auto& s = compiled.summary;
            fmt::print("{}: ok{}: {}, {}, {}, {}, {}, {}, {}\n", path,
                       warnings ? fmt::format(" with {}", plural(warnings, "warning")) : "", plural(s.nodes, "node"),
                       plural(s.channels, "channel"), plural(s.pins, "pin"), plural(s.rules, "rule"),
                       plural(s.timers, "timer"), plural(s.actions, "action"), plural(s.tests, "test"));
        }
    }
    return status;
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
    return exit_usage;
}
