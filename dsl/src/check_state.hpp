// The checker's state, shared by check.cpp (names, declarations, ranges, tests)
// and check_flow.cpp (contexts of ack/value/tick, recursion, message storms).
//
// Everything is flat: per-node data lives in program-wide vectors indexed by
// the node's base offsets, and names resolve through one hash map keyed by
// (node, string_view into the AST). A check of 10,000 nodes allocates little.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "meshrun/dsl/frontend.hpp"

namespace meshrun::dsl::check_detail {

// `s` in backticks, as code is quoted in messages.
inline std::string bt(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '`';
    out += s;
    out += '`';
    return out;
}

// `a` comes before `b` in the text (spans of one topology).
inline bool before(Span a, Span b) { return a.file != b.file ? a.file < b.file : a.begin < b.begin; }

enum class RuleKind : std::uint8_t { pin, channel, invalid };
enum class Root : std::uint8_t { message, pin, timer };

// Hashing for the checker's tables: FNV-1a over bytes, then a finalizer so that
// the low bits (the table index) depend on every bit.
inline std::uint64_t mix(std::uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}
inline std::uint64_t fnv1a(std::string_view s, std::uint64_t h = 1469598103934665603ULL) {
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}
struct StringHash {
    std::size_t operator()(std::string_view s) const { return mix(fnv1a(s)); }
};
struct U64Hash {
    std::size_t operator()(std::uint64_t x) const { return mix(x); }
};

// An open-addressing hash map with linear probing, for the checker's large
// tables: one allocation for the whole table, none per entry.
template<typename Key, typename Value, typename Hash, typename Eq = std::equal_to<Key>>
class FlatMap {
public:
    void reserve(std::size_t n) {
        std::size_t cap = 16;
        while (cap < 2 * n) cap <<= 1;
        if (cap > slots_.size()) rehash(cap);
    }
    // The value of `key`, with `value` inserted when it was absent; `second`: whether it was.
    // The pointer is valid until the next insertion.
    std::pair<Value*, bool> emplace(const Key& key, const Value& value) {
        if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.empty() ? 16 : slots_.size() * 2);
        std::size_t i = Hash{}(key) & mask_;
        for (; used_[i]; i = (i + 1) & mask_)
            if (Eq{}(slots_[i].first, key)) return {&slots_[i].second, false};
        used_[i] = 1;
        slots_[i] = {key, value};
        ++size_;
        return {&slots_[i].second, true};
    }
    const Value* find(const Key& key) const {
        if (slots_.empty()) return nullptr;
        for (std::size_t i = Hash{}(key) & mask_; used_[i]; i = (i + 1) & mask_)
            if (Eq{}(slots_[i].first, key)) return &slots_[i].second;
        return nullptr;
    }
    std::size_t size() const { return size_; }

private:
    void rehash(std::size_t cap) {
        std::vector<std::pair<Key, Value>> old(cap);
        std::vector<std::uint8_t> old_used(cap, 0);
        old.swap(slots_);
        old_used.swap(used_);
        mask_ = cap - 1;
        size_ = 0;
        for (std::size_t i = 0; i < old.size(); ++i)
            if (old_used[i]) emplace(old[i].first, old[i].second);
    }
    std::vector<std::pair<Key, Value>> slots_;
    std::vector<std::uint8_t> used_;
    std::size_t mask_ = 0, size_ = 0;
};

// What one name of a node is: indices local to the node, -1 when not of that sort.
struct Names {
    int pin = -1, action = -1, channel = -1, var = -1;
};
struct NameKey {
    int node = 0;
    std::string_view name;
    bool operator==(const NameKey& o) const { return node == o.node && name == o.name; }
};
struct NameKeyHash {
    std::size_t operator()(const NameKey& k) const {
        return mix(fnv1a(k.name) ^ (static_cast<std::uint64_t>(static_cast<std::uint32_t>(k.node)) << 1));
    }
};

struct NodeInfo {
    Node* node = nullptr;
    int index = 0;
    bool has_port = false;
    int host = 0;  // host id, for lines in use; unique per node without an address
    std::size_t pin_base = 0, action_base = 0, rule_base = 0, channel_base = 0, channel_count = 0, var_base = 0;
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
    int host = 0;
    std::string_view chip, line;
    bool quoted = false;
    bool operator==(const LineKey& o) const {
        return host == o.host && quoted == o.quoted && chip == o.chip && line == o.line;
    }
};
struct LineKeyHash {
    std::size_t operator()(const LineKey& k) const {
        const std::uint64_t h = fnv1a(k.line, fnv1a(k.chip) ^ (k.quoted ? 0x9e3779b97f4a7c15ULL : 0));
        return mix(h ^ (static_cast<std::uint64_t>(static_cast<std::uint32_t>(k.host)) << 7));
    }
};
using LineMap = FlatMap<LineKey, std::pair<int, int>, LineKeyHash>;  // -> (node, pin)
using PortMap = FlatMap<std::uint64_t, int, U64Hash>;                 // host id << 32 | port -> node

// Host names compare case-insensitively.
struct HostHash {
    std::size_t operator()(std::string_view s) const {
        std::uint64_t h = 1469598103934665603ULL;
        for (unsigned char c : s) {
            h ^= static_cast<unsigned char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
            h *= 1099511628211ULL;
        }
        return mix(h);
    }
};
struct HostEq {
    bool operator()(std::string_view a, std::string_view b) const {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i) {
            const auto x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
            if ((x >= 'A' && x <= 'Z' ? x + 32 : x) != (y >= 'A' && y <= 'Z' ? y + 32 : y)) return false;
        }
        return true;
    }
};
using HostMap = FlatMap<std::string_view, int, HostHash, HostEq>;

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
    Checker(Program& p, Diagnostics& d) : program_(p), diags_(d) {}
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
    Node& node(int i) { return *nodes_[i].node; }
    std::vector<std::string_view> pin_names(int node) const;
    std::vector<std::string_view> action_names(int node) const;
    std::vector<std::string_view> channel_names(int node) const;
    std::vector<std::string_view> var_names(int node) const;
    const std::vector<std::string_view>& node_names();

    // --- declarations (check.cpp) ---
    void check_discovery();
    void check_settings();  // `secret`, `tls` and `limits`
    void check_tls(const Tls& tls);
    void check_limits(const Limits& limits);
    void declare_nodes();
    void declare_names(int node);
    void declare_vars(int node);
    void declare_rules(int node);
    void check_address(int node, PortMap& ports);
    void check_lines(int node, LineMap& lines);
    void check_pin(const Pin& p);

    // --- bodies: names, ranges, graph edges (check.cpp) ---
    void check_node_bodies(int node);
    void check_stmts(int node, int vertex, std::vector<Stmt>& body, int after_depth, int action);
    void check_expr(int node, Expr& e);
    // Each resolves a use of a name, records what it refers to in its `ref`, and returns the index
    // (or -1 after reporting why it is none).
    // resolve_pin also takes a variable where `var` (its ref says so; it returns -1 then).
    int resolve_pin(int node, std::string_view name, Span at, bool assign, Ref& ref, bool var = false);
    void unknown_value(int node, std::string_view name, Span at, bool assign);
    int resolve_action(int node, Ident& id);
    int resolve_node(Ident& id);
    int resolve_channel(Ident& node, Ident& channel);
    void declare_delay(int node, Ident& name);
    void resolve_cancels();
    void check_level(const Expr& e);
    void check_duration(const Duration& d, const char* what);
    void check_count(const Count& c, const char* what);
    void check_random(const Expr& e);
    void check_rule_order(int node);

    // --- tests, unused names (check.cpp) ---
    void check_tests();
    void check_test_expr(const Expr& e);
    int test_pin(TestStmt& s, int node);
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

    // --- how deep bodies run, through the actions they run (check_flow.cpp) ---
    void measure_actions();
    int stmt_depth(int node, const Stmt& s) const;
    int body_depth(int node, const std::vector<Stmt>& body) const;
    void check_depth(int node, const std::vector<Stmt>& body, Span root, const char* what);

    // --- `ack`s of one firing (check_flow.cpp) ---
    int body_acks(int node, const std::vector<Stmt>& body) const;
    // The first `ack` of a firing: an `ack`, or the run of an action that acks (`action` names it).
    struct AckSite {
        Span span;
        std::string_view action;
        bool in_branch = false;  // in a branch of an `if`: it replies on that branch's way only
    };
    void check_acks(int node, const std::vector<Stmt>& body, std::optional<AckSite>& first);
    void check_branch_acks(int node, const Stmt& s, std::optional<AckSite>& first);
    void ignored_ack(Span at, std::string message, const AckSite& first);

    // --- cycles (check_flow.cpp) ---
    void check_recursion();
    void check_storms();
    std::string vertex_name(int v) const;

    Program& program_;  // read, and each use of a name given its `ref`
    Diagnostics& diags_;
    Diagnostic scratch_;  // what a repeated diagnostic is written to
    std::unordered_set<DiagKey, DiagKeyHash> reported_;

    std::vector<NodeInfo> nodes_;
    FlatMap<std::string_view, int, StringHash> node_index_;
    std::vector<std::string_view> node_names_;  // for suggestions, filled on first use
    // Each node's names, contiguous; a node with many names also indexes them in `names_`.
    std::vector<std::pair<std::string_view, Names>> local_names_;
    FlatMap<NameKey, std::size_t, NameKeyHash> names_;

    // Flat per-node data, indexed by the node's bases.
    std::vector<char> pin_used_;
    std::vector<char> var_read_, var_set_;  // by global variable index
    FlatMap<NameKey, int, NameKeyHash> delay_index_;  // (node, name) -> index into the node's `delays`
    std::vector<std::pair<int, Stmt*>> cancels_;      // `cancel NAME` of each node, resolved once all delays are known
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
    int context_depth_ = 0;     // bodies being walked by context_stmts (bounded by max_nesting)
    std::vector<int> action_depth_;  // by global action index: levels its body runs, through calls
    std::vector<std::uint8_t> action_acks_;  // by global action index: `ack`s its body runs, 2 for more than one
};

}  // namespace meshrun::dsl::check_detail
