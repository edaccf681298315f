// The event graph: what a checked program lowers to, and all the runtime executes.
// Immutable once built and shared by every node runtime. Per node: its sources
// (channels, input pins, timers) -> rules (pattern, guard) -> compiled programs,
// and every `send` an explicit edge to another node's channel. Data, not code:
// `meshrun graph` draws it, the dashboard will show it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "meshrun/drivers/line_mode.hpp"
#include "meshrun/dsl/ast.hpp"

namespace meshrun::engine {

using Micros = std::chrono::microseconds;

// An expression with every name resolved.
struct Expr {
    enum class Kind { text, interpolation, pin, var, value, tick, random, not_, neg, binary };
    Kind kind = Kind::text;
    std::string text;       // text: the literal
    int pin = -1;           // pin: index into Node::pins
    int var = -1;           // var: index into Node::vars
    dsl::BinOp op = dsl::BinOp::eq;
    std::vector<Expr> args; // interpolation: the parts in order; random, not_, neg: one; binary: two
};

struct Op;

// A branch of an `if`: it runs when its condition holds (truthy, as a guard) and no branch
// before it ran; the `else` has no condition.
struct Branch {
    std::optional<Expr> condition;
    std::vector<Op> body;
    std::string keyword;  // `if`, `else if` or `else`
    dsl::Span span;       // its keyword, for coverage and errors
};

struct Op {
    // set: a variable to the expression's value; after with `named` >= 0: a named delay (restarts
    // it when pending); cancel: drops the pending named delay, if any.
    enum class Kind { write, toggle, set, send, ack, log, after, cancel, repeat, call, if_ };
    Kind kind = Kind::call;
    int pin = -1;         // write, toggle
    int var = -1;         // set: index into Node::vars
    int named = -1;       // after (named), cancel: index into Node::delays
    Expr expr;            // write, set, send, ack, log
    int edge = -1;        // send: index into Node::edges
    Micros delay{0};      // after
    std::int64_t count = 0;  // repeat
    int action = -1;      // call: index into Node::actions
    std::vector<Op> body; // after, repeat
    std::vector<Branch> branches;  // if_: tried in order, the first whose condition holds runs
    dsl::Span span;       // where it was written, for logs and errors
};

struct Rule {
    std::optional<std::string> pattern;  // the value must equal this text
    std::optional<Expr> guard;
    std::vector<Op> body;
    dsl::Span span;
    std::string label;  // `on signal 1`, `on samples when ...`, for logs and drawings
    int index = -1;     // among its node's rules, sources in order: for per-rule tables
};

struct Source {
    enum class Kind { channel, pin, timer };
    Kind kind = Kind::channel;
    std::string name;   // the channel or pin name; for timers `every 1s`
    int pin = -1;       // pin sources
    Micros period{0};   // timers
    std::optional<std::int64_t> times;  // timers: fire at most this often
    std::vector<Rule> rules;  // tried in order; the first that matches fires (a timer has one)
};

struct Pin {
    std::string name;
    std::string chip;
    std::string line;
    bool output = true;
    bool active_low = false;
    drivers::Bias bias = drivers::Bias::none;  // inputs
    Micros debounce{0};
    int initial = 0;
    dsl::Span span;  // its declaration, for errors about the line
};

// A `send` target: another node's channel, by node index.
struct Edge {
    int node = -1;
    std::string channel;
};

struct Action {
    std::string name;
    std::vector<Op> body;
};

// `var NAME = LITERAL`: its value is `initial` when the node starts.
struct Var {
    std::string name;
    std::string initial;
    dsl::Span span;
};

// A name `after D as NAME` gives: at most one pending delay of it per node.
struct NamedDelay {
    std::string name;
    dsl::Span span;  // its first use
};

struct Node {
    std::string name;
    std::string host;             // as written; empty for `at :PORT` or no address
    std::optional<std::uint16_t> port;  // none: a client, it serves nothing
    std::vector<Pin> pins;
    std::vector<Var> vars;
    std::vector<NamedDelay> delays;
    std::vector<Source> sources;  // channels first, then pins, then timers, each in file order
    std::vector<Action> actions;
    std::vector<Edge> edges;      // distinct targets, in order of first use

    const Source* channel(std::string_view name) const;
};

// The top-level items other than nodes, as written, so that no item of the file is lost on the
// way to the graph. `meshrun test` runs the tests from the checked program.
struct Secret {
    std::string env;  // `secret env VAR`: the environment variable that holds the fleet's token
    dsl::Span span;   // the variable's name
};

// `tls cert "FILE" key "FILE" [ca "FILE"]`: every node serves wss:// with this certificate,
// and links connect over TLS. With `ca`, both ends must present a certificate it signed
// (mutual TLS). Paths as written, relative to the current directory when run.
struct Tls {
    std::string cert, key, ca;  // ca empty: peers are not asked for a certificate
    dsl::Span span;             // the whole item
};

// `limits { ... }`: each a safe default unless the file says otherwise.
struct Limits {
    std::size_t message = 64 * 1024;            // `message SIZE`: the largest message or reply (1009 past it)
    std::size_t connections = 1024;             // `connections N`: open connections per node (503 past it)
    Micros handshake = std::chrono::seconds(5);  // `handshake D`: an HTTP request or websocket handshake, whole
    Micros idle = std::chrono::seconds(60);      // `idle D`: a connection silent this long (a ping unanswered) is closed
    std::size_t outbox = 1000;                  // `outbox N`: messages a link holds until acknowledged
};

// `discovery etcd "URL"`: an etcd endpoint where the nodes register (docs/discovery.md); several
// lines, several endpoints, tried in turn.
struct Discovery {
    std::string url;  // as written: http://HOST[:PORT]
    dsl::Span span;   // the URL
};

struct Include {
    std::string path;  // the file read; its nodes are among the graph's nodes
    dsl::Span span;
};

struct Test {
    std::string title;
    dsl::Span span;  // the whole `test "..." { ... }`
};

struct Graph {
    std::string name;  // the `mesh NAME` line's, else "mesh"
    std::vector<Secret> secrets;
    std::vector<Discovery> discovery;
    std::optional<Tls> tls;
    Limits limits;
    std::vector<Node> nodes;
    std::vector<Test> tests;
    std::vector<Include> includes;  // every include read, in the order read

    int find(std::string_view node) const;  // -1 if absent
};

// Lowers a program that checked clean (no errors) into its event graph.
Graph lower(const dsl::Program& program);
// Lowers one checked expression without names (a test's value: `-3`, `"a{1 + 1}"`).
Expr lower_expr(const dsl::Expr& e);

// Drawings of the graph: a cluster per node, its sources and rules, edges across nodes.
std::string to_dot(const Graph& graph);
std::string to_mermaid(const Graph& graph);

}  // namespace meshrun::engine
