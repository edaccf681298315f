// The checker's state, shared by check.cpp (names, declarations, ranges, tests)
// and check_flow.cpp (contexts of ack/value/tick, recursion, message storms).
//
// Everything is flat: per-node data lives in program-wide vectors indexed by
// the node's base offsets, and names resolve through one hash map keyed by
// (node, string_view into the AST). A check of 10,000 nodes allocates little.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "meshrun/dsl/frontend.hpp"

namespace meshrun::dsl::check_detail {

inline std::string bt(std::string_view s) { return "`" + std::string(s) + "`"; }

// `a` comes before `b` in the text (spans of one topology).
inline bool before(Span a, Span b) { return a.file != b.file ? a.file < b.file : a.begin < b.begin; }

enum class RuleKind : std::uint8_t { pin, channel, invalid };
enum class Root : std::uint8_t { message, pin, timer };

// What one name of a node is: indices local to the node, -1 when not of that sort.
struct Names {
    int pin = -1, action = -1, channel = -1;
};
struct NameKey {
    int node;
    std::string_view name;
    bool operator==(const NameKey& o) const { return node == o.node && name == o.name; }
};
struct NameKeyHash {
    std::size_t operator()(const NameKey& k) const {
        return std::hash<std::string_view>{}(k.name) * 31u + static_cast<std::size_t>(k.node);
    }
};

struct NodeInfo {
    const Node* node = nullptr;
    int index = 0;
    bool has_port = false;
    int host = 0;  // host id, for lines in use; unique per node without an address
    std::size_t pin_base = 0, action_base = 0, rule_base = 0, channel_base = 0, channel_count = 0;
    std::size_t name_base = 0, name_count = 0;  // the node's range of `local_names_`
    bool hashed = false;                        // many names: found through `names_`
};

// A graph edge: a send (to a channel vertex) or a call (to an action vertex).
struct Edge {
    int from = 0, to = 0;
    Span span;
    bool is_send = false;
};

// A GPIO line on a host: lines in use are found by this key.
struct LineKey {
    int host;
    std::string_view chip, line;
    bool quoted;
    bool operator==(const LineKey& o) const {
        return host == o.host && quoted == o.quoted && chip == o.chip && line == o.line;
    }
};
struct LineKeyHash {
    std::size_t operator()(const LineKey& k) const {
        const std::hash<std::string_view> h;
        return (h(k.line) * 31u + h(k.chip)) * 31u + static_cast<std::size_t>(k.host) * 2u + (k.quoted ? 1u : 0u);
    }
};
using LineMap = std::unordered_map<LineKey, std::pair<int, int>, LineKeyHash>;  // -> (node, pin)

struct DiagKey {
    Kind kind;
    Span span;
    bool operator==(const DiagKey& o) const {
        return kind == o.kind && span.file == o.span.file && span.begin == o.span.begin && span.end == o.span.end;
    }
};
struct DiagKeyHash {
    std::size_t operator()(const DiagKey& k) const {
        std::uint64_t h = (static_cast<std::uint64_t>(k.span.begin) << 32) ^ k.span.end;
        h ^= (static_cast<std::uint64_t>(k.span.file) << 20) ^ (static_cast<std::uint64_t>(k.kind) << 56);
        return std::hash<std::uint64_t>{}(h);
    }
};

class Checker {
public:
    Checker(const Program& p, Diagnostics& d) : program_(p), diags_(d) {}
    Summary run();

private:
    // --- diagnostics, each reported once per (kind, span) ---
    Diagnostic& error(Kind k, Span s, std::string message);
    Diagnostic& warning(Kind k, Span s, std::string message);
    static void suggest(Diagnostic& d, std::string_view word, const std::vector<std::string_view>& candidates);

    // --- names ---
    const Names* find(int node, std::string_view name) const;
    Names& slot(int node, std::string_view name);  // finds or adds; stays valid (storage is reserved)
    const Node& node(int i) const { return *nodes_[i].node; }
    std::vector<std::string_view> pin_names(int node) const;
    std::vector<std::string_view> action_names(int node) const;
    std::vector<std::string_view> channel_names(int node) const;
    const std::vector<std::string_view>& node_names();

    // --- declarations (check.cpp) ---
    void check_discovery();
    void declare_nodes();
    void declare_names(int node);
    void declare_rules(int node);
    void check_address(int node, std::unordered_map<std::uint64_t, int>& ports);
    void check_lines(int node, LineMap& lines);
    void check_pin(const Pin& p);

    // --- bodies: names, ranges, graph edges (check.cpp) ---
    struct Context;
    void check_node_bodies(int node);
    // `ctx`: the context of a rule's or timer's own body (checked on the way); null in actions,
    // whose contexts are checked from where they are run.
    void check_stmts(int node, int vertex, const std::vector<Stmt>& body, int after_depth, int action,
                     const Context* ctx);
    void check_expr(int node, const Expr& e, const Context* ctx);
    int resolve_pin(int node, std::string_view name, Span at, bool assign);
    int resolve_action(int node, const Ident& id);
    int resolve_node(const Ident& id);
    int resolve_channel(const Ident& node, const Ident& channel);
    void check_level(const Expr& e);
    void check_duration(const Duration& d, const char* what);
    void check_count(const Count& c, const char* what);
    void check_random(const Expr& e);
    void check_rule_order(int node);

    // --- tests, unused names (check.cpp) ---
    void check_tests();
    void check_test_expr(const Expr& e);
    int test_pin(const TestStmt& s, int node);
    void check_unused();

    // --- contexts of ack, value, tick (check_flow.cpp) ---
    struct Context {
        Root root = Root::message;
        std::string_view source;  // the rule's channel or pin
        bool in_after = false;
    };
    // Where a call stands: the rule or timer itself, an `after` body, or an action.
    struct Where {
        enum class Kind : std::uint8_t { root, after, action } kind = Kind::root;
        std::string_view action;
    };
    struct Frame {
        Span call;
        Where caller;
        std::string_view action;
    };
    void run_action(int node, int action, Span call, const Context& ctx, Where here);
    void context_stmts(int node, const std::vector<Stmt>& body, const Context& ctx, Where here);
    void context_expr(const Expr& e, const Context& ctx);
    void context_error(Kind k, Span s, const Context& ctx);
    static std::string root_text(const Context& ctx);
    static std::string where_text(const Where& w, const Context& ctx);

    // --- cycles (check_flow.cpp) ---
    void check_recursion();
    void check_storms();
    std::string vertex_name(int v) const;

    const Program& program_;
    Diagnostics& diags_;
    Diagnostic scratch_;  // what a repeated diagnostic is written to
    std::unordered_set<DiagKey, DiagKeyHash> reported_;

    std::vector<NodeInfo> nodes_;
    std::unordered_map<std::string_view, int> node_index_;
    std::vector<std::string_view> node_names_;  // for suggestions, filled on first use
    // Each node's names, contiguous; a node with many names also indexes them in `names_`.
    std::vector<std::pair<std::string_view, Names>> local_names_;
    std::unordered_map<NameKey, std::size_t, NameKeyHash> names_;

    // Flat per-node data, indexed by the node's bases.
    std::vector<char> pin_used_;
    std::vector<char> action_called_, action_dup_;
    std::vector<std::uint8_t> action_ctx_seen_;  // context classes already walked
    std::vector<const Action*> actions_;          // by global action index
    std::vector<char> action_on_chain_;           // actions on `chain_`, the call path being walked
    std::vector<int> action_node_;
    std::vector<RuleKind> rule_kind_;
    std::vector<int> rule_ref_;  // the pin or channel (local index) of each rule
    std::vector<std::string_view> channel_names_;
    std::vector<int> channel_node_;

    // Vertices of the message graph: channels [0, channels), then actions.
    std::size_t action_vertex_base_ = 0;
    std::vector<Edge> edges_;  // sends and calls outside `after`, from channel and action vertices
    std::vector<Edge> calls_;  // every call between actions (global action indices), for recursion

    std::vector<Frame> chain_;  // action calls from the root being walked
};

}  // namespace meshrun::dsl::check_detail
