// The AST of a .mesh topology. Every element carries the span it was read from.
// Built by the parser (parse.cpp); read by the checker and the engine's lowering.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meshrun/drivers/line_mode.hpp"
#include "meshrun/dsl/source.hpp"

namespace meshrun::dsl {

// How deep a program may nest, in levels. A level is a statement (one inside another's body is
// one level deeper; a call runs the action's body one level below it) and, inside an expression,
// a parenthesis, `not`, unary `-`, `random(...)`, a string with `{...}` in it, and each binary
// operator (`a + b + c` is `(a + b) + c`: two levels). Anything deeper is a `too-deep` error,
// found by the parser (its grammar and its tree-to-AST walk) and, for actions run from actions,
// by the checker. So in a program without errors, statements are at most `max_nesting` levels
// deep through every chain of calls, and every expression at most `max_nesting` high: each walk
// that recurses over the AST or the event graph lowered from it (the parser's, the checker's,
// engine/src/lower.cpp, eval.cpp, draw.cpp and the runtime's bodies and calls) recurses at most
// about 2 x max_nesting times, whatever the file says.
inline constexpr int max_nesting = 256;

// Includes from included files: at most this many files deep (the parser reads them recursively).
inline constexpr int max_include_depth = 64;

// What a name refers to, as the checker resolved it (check.cpp): an index into the program's
// nodes, or into the pins, channels or actions of a node (the name's own node; for the channel of
// a `send`, the target node). Lowering (engine/src/lower.cpp) reads it and looks no name up again.
// `none` before the check, and where the check reported an error about the name.
struct Ref {
    // var: a variable of the node (Node::vars); delay: a named delay (Node::delays).
    enum class Kind : std::uint8_t { none, node, pin, channel, action, var, delay };
    Kind kind = Kind::none;
    int index = -1;
};

struct Ident {
    std::string name;
    Span span;
    Ref ref;  // filled by the checker where the name is a use (not a declaration)
};

struct Duration {
    std::uint64_t micros = 0;
    Span span;
};

// The units a duration is written in, largest first.
struct DurationUnit {
    std::string_view name;
    std::uint64_t micros;
};
inline constexpr DurationUnit duration_units[] = {
    {"h", 3'600'000'000ULL}, {"m", 60'000'000}, {"s", 1'000'000}, {"ms", 1'000}, {"us", 1}};

// A duration as the language writes it, in the largest unit it is a whole number of: `2h`, `90s`,
// `1500us`. Zero is `0s`. The one formatter of durations: diagnostics, labels and drawings use it.
std::string format_duration(std::uint64_t micros);

// A whole number as written (`5 times`, `repeat 3`, a port, a line offset).
struct Count {
    std::int64_t value = 0;  // saturates at INT64_MAX when written larger
    Span span;
};

enum class BinOp { or_, and_, eq, ne, lt, le, gt, ge, add, sub };

struct Expr {
    enum class Kind {
        number,  // text: the number as written, e.g. `0.4`
        string,  // parts: Kind::text pieces and interpolated expressions, in order
        text,    // a literal piece of a string, unescaped (only inside Kind::string)
        name,    // text: a pin's name (its level) or a variable's (its value): `ref` says which
        value,   // the message or the pin's new level
        tick,    // the timer's firing count
        random,  // operands[0]: the probability
        not_,    // operands[0]
        neg,     // operands[0]
        binary,  // op, operands[0] and operands[1]
    };
    Kind kind = Kind::number;
    Span span;
    std::string text;
    BinOp op = BinOp::or_;
    std::vector<Expr> operands;  // children; for strings, the parts
    Ref ref;                     // name: the pin or the variable, filled by the checker

    bool is_literal() const { return kind == Kind::number || (kind == Kind::string && !has_interpolation()); }
    bool has_interpolation() const;
    // For a number or a string without interpolation: its text value (`1` and `"1"` are both "1").
    std::string literal_text() const;
};

struct Stmt;

// One branch of an `if`: `if COND { ... }`, `else if COND { ... }` or `else { ... }` (no condition).
struct Branch {
    std::optional<Expr> condition;  // none: the `else`
    std::vector<Stmt> body;
    Span span;     // from its keyword (`if` or `else`) to its `}`
    Span keyword;  // `if`, `else if` or `else`, for messages and coverage
};

struct Stmt {
    enum class Kind {
        assign,  // target = expr (a pin or a variable: its ref says which)
        toggle,  // toggle target
        send,    // send expr to node/channel
        ack,     // ack expr
        log,     // log expr (a string)
        after,   // after duration [as target] -> body (target empty: a delay without a name)
        cancel,  // cancel target (a named delay)
        repeat,  // repeat count { body }
        call,    // target (an action)
        if_,     // if COND { ... } [else if COND { ... }]... [else { ... }]: branches
    };
    Kind kind = Kind::call;
    Span span;
    Ident target;     // assign, toggle: the pin or variable; call: the action; after, cancel: the delay's name
    Expr expr;        // assign, send, ack, log
    Ident node;       // send: the target node
    Ident channel;    // send: a channel of the target node
    Duration delay;   // after
    Count count;      // repeat
    std::vector<Stmt> body;  // after, repeat
    std::vector<Branch> branches;  // if_: in order; only the last may be the `else`
};

struct Pin {
    Ident name;
    Span span;  // the whole declaration
    drivers::Direction direction = drivers::Direction::output;  // `in` or `out`
    std::string chip;  // `gpiochip0` or a label
    bool chip_quoted = false;
    Span chip_span;
    std::string line;  // an offset (digits) or a line name
    bool line_quoted = false;
    Span line_span;
    bool active_low = false;
    std::optional<Count> initial;   // out only
    drivers::Bias bias = drivers::Bias::none;  // in only
    Span bias_span;
    std::optional<Duration> debounce;  // in only
    // Each option as written, for option checks (kind of option and its span).
    struct Option { std::string name; Span span; };
    std::vector<Option> options;
};

// `var NAME = LITERAL`: a variable of the node, text like every value, set to the literal when
// the node starts.
struct Var {
    Ident name;
    Span span;     // the whole declaration
    Expr initial;  // a literal (number or string without interpolation)
};

struct Action {
    Ident name;
    Span span;
    std::vector<Stmt> body;
};

struct Timer {
    Span span;
    Duration period;
    std::optional<Count> times;
    std::vector<Stmt> body;
};

struct Rule {
    Span span;
    Ident source;                  // a channel or an input pin of this node (its ref says which)
    std::optional<Expr> pattern;   // a literal
    std::optional<Expr> guard;     // `when EXPR`
    std::vector<Stmt> body;
};

struct Address {
    std::string host;  // empty for `at :PORT`; IPv6 without brackets
    Span host_span;
    std::optional<Count> port;
    Span span;
};

struct Node {
    Ident name;
    Span span;
    std::optional<Address> address;
    std::vector<Pin> pins;
    std::vector<Var> vars;
    std::vector<Action> actions;
    std::vector<Timer> timers;
    std::vector<Rule> rules;  // in file order: rules of one source are tried in this order
    // Filled by the checker: the names `after ... as NAME` gives, each once, in the order of first
    // use (the span is that use's name). A Ref::Kind::delay indexes this.
    std::vector<Ident> delays;
};

struct TestStmt {
    enum class Kind {
        send,      // send expr to node/channel [expect text]
        drive,     // drive node.pin = value
        advance,   // advance duration
        expect_pin,       // expect node.pin (== | !=) value [within duration]; also node.var (member.ref says)
        expect_received,  // expect node received count on channel
        expect_logged,    // expect node logged TEXT: a line of its log contains TEXT
        expect_history,   // expect node.pin history "1 0 1": the levels it took, in order
    };
    Kind kind = Kind::send;
    Span span;
    Ident node;
    Ident member;  // the channel, the pin or the variable (expect_pin: its ref, filled by the checker)
    Expr value;    // send: the payload; drive / expect_pin: the level
    std::optional<Expr> expect;  // send ... expect TEXT; logged TEXT; history "LEVELS"
    BinOp op = BinOp::eq;        // expect_pin: eq or ne
    Duration duration;           // advance
    std::optional<Duration> within;
    Count count;                 // expect_received
};

struct Test {
    std::string title;
    Span title_span;
    Span span;
    std::vector<TestStmt> body;
};

struct Include {
    std::string path;
    Span span;
};

// `tls cert "FILE" key "FILE" [ca "FILE"]`, the options in any order. The files are named, not
// read: they may exist only on the device that runs the node (the runtime reads them at start).
struct Tls {
    Span span;     // the whole item
    Span keyword;  // `tls`
    struct File {
        std::string option;  // `cert`, `key` or `ca`
        std::string path;    // as written, unescaped
        Span span;           // the option with its file: `cert "node.crt"`
        Span path_span;      // the file in quotes
    };
    std::vector<File> files;  // as written, in order: the checker finds a missing or repeated one
    const File* find(std::string_view option) const {
        for (const File& f : files)
            if (f.option == option) return &f;
        return nullptr;
    }
};

// One line of `limits { ... }`: `NAME VALUE`, such as `message 64KiB` or `idle 60s`.
struct Limit {
    enum class Unit : std::uint8_t {
        count,     // a bare whole number: `1024`
        size,      // `B`, `KiB` or `MiB`: value in bytes
        duration,  // a unit of a duration (`us ms s m h`): value in microseconds
        unknown,   // any other letters after the number (`64KB`)
    };
    Ident name;
    Span span;        // `NAME VALUE`
    std::string text; // the value as written, for messages
    Span value_span;
    Unit unit = Unit::count;
    std::uint64_t value = 0;  // in the unit's base (a count, bytes, microseconds); saturates
};

struct Limits {
    Span span;     // the whole item
    Span keyword;  // `limits`
    std::vector<Limit> limits;  // as written, in order
};

// A whole topology: the root file with its includes spliced in, in order.
struct Program {
    std::optional<Ident> mesh_name;
    std::vector<Ident> secrets;    // `secret env VAR`: the variable names (the checker allows one)
    std::vector<Tls> tls;          // `tls ...` items (the checker allows one)
    std::vector<Limits> limits;    // `limits { ... }` items (the checker allows one)
    struct Discovery { std::string url; Span span; };
    std::vector<Discovery> discovery;
    std::vector<Node> nodes;
    std::vector<Test> tests;
    std::vector<Include> includes;  // every include that was read, for tools
};

}  // namespace meshrun::dsl
