// One diagnostic type for every phase: severity, a stable kind, a span, a message and notes.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meshrun/dsl/source.hpp"

namespace meshrun::dsl {

// The registry of diagnostic kinds. The names are stable: users grep for them,
// editors key on them, and docs/diagnostics.md explains each one.
#define MESHRUN_DIAGNOSTIC_KINDS(X)                         \
    X(syntax, "syntax")                                     \
    X(invalid_utf8, "invalid-utf8")                         \
    X(include_not_found, "include-not-found")               \
    X(include_cycle, "include-cycle")                       \
    X(too_deep, "too-deep")                                 \
    X(unknown_node, "unknown-node")                         \
    X(unknown_channel, "unknown-channel")                   \
    X(unknown_pin, "unknown-pin")                           \
    X(unknown_action, "unknown-action")                     \
    X(unknown_variable, "unknown-variable")                 \
    X(unknown_delay, "unknown-delay")                       \
    X(duplicate_name, "duplicate-name")                     \
    X(wrong_kind, "wrong-kind")                             \
    X(send_to_client, "send-to-client")                     \
    X(channel_without_port, "channel-without-port")         \
    X(port_in_use, "port-in-use")                           \
    X(line_in_use, "line-in-use")                           \
    X(assign_to_input, "assign-to-input")                   \
    X(rule_on_output, "rule-on-output")                     \
    X(pin_option, "pin-option")                             \
    X(misplaced_ack, "misplaced-ack")                       \
    X(misplaced_value, "misplaced-value")                   \
    X(misplaced_tick, "misplaced-tick")                     \
    X(out_of_range, "out-of-range")                         \
    X(recursive_action, "recursive-action")                 \
    X(misplaced_mesh, "misplaced-mesh")                     \
    X(bad_url, "bad-url")                                   \
    X(duplicate_item, "duplicate-item")                     \
    X(tls_option, "tls-option")                             \
    X(unknown_limit, "unknown-limit")                       \
    X(limit_unit, "limit-unit")                             \
    X(not_available, "not-available")                       \
    X(unreachable_rule, "unreachable-rule")                 \
    X(message_storm, "message-storm")                       \
    X(ignored_ack, "ignored-ack")                           \
    X(unused_pin, "unused-pin")                             \
    X(unused_action, "unused-action")                       \
    X(unread_variable, "unread-variable")                   \
    X(unassigned_variable, "unassigned-variable")           \
    X(drive_output, "drive-output")                         \
    X(gpio_line, "gpio-line")                               \
    X(test_failed, "test-failed")

enum class Kind {
#define MESHRUN_X(id, name) id,
    MESHRUN_DIAGNOSTIC_KINDS(MESHRUN_X)
#undef MESHRUN_X
};

std::string_view kind_name(Kind k);

// Errors that leave the program incomplete (syntax, too deep, includes): after
// one of them compile_file skips the checks, which would only repeat it.
bool stops_checks(Kind k);

enum class Severity { error, warning, note };

std::string_view severity_name(Severity s);

struct Note {
    std::optional<Span> span;  // a note without a span is printed without a source line
    std::string message;
};

struct Diagnostic {
    Severity severity = Severity::error;
    Kind kind = Kind::syntax;
    Span span;
    std::string message;
    std::vector<Note> notes;
};

// Collects the diagnostics of one compilation, in the order found.
class Diagnostics {
public:
    Diagnostic& error(Kind k, Span s, std::string message);
    Diagnostic& warning(Kind k, Span s, std::string message);

    const std::vector<Diagnostic>& all() const { return list_; }
    std::size_t errors() const;
    std::size_t warnings() const;
    bool has_errors() const { return errors() != 0; }
    void sort_by_position();

private:
    std::vector<Diagnostic> list_;
};

// Printing, like a compiler: `file:line:col: error: message [kind]`, the line, a caret.
struct RenderOptions {
    bool color = false;
};
std::string render_text(const Diagnostic& d, const SourceManager& sm, RenderOptions opt = {});
// One JSON object (a single line) per diagnostic, for editors.
std::string render_json(const Diagnostic& d, const SourceManager& sm);

// Closest candidate by edit distance, if one is close enough to be a likely typo.
std::optional<std::string> closest(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace meshrun::dsl
