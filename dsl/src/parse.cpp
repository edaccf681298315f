// Phase 1: text -> AST. PEGTL builds a parse tree one top-level item at a time;
// this file turns each tree into AST nodes with their spans, splices includes,
// and turns PEGTL's failures into diagnostics.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>


#include <boost/container/small_vector.hpp>

#include "grammar.hpp"
#include "meshrun/dsl/frontend.hpp"
#include "utf8.hpp"

namespace meshrun::dsl {

namespace pegtl = tao::pegtl;
namespace g = grammar;
namespace fs = std::filesystem;

namespace {

// The rules that make a node of the parse tree; every other rule only matches.
// clang-format off
template<typename... Rules> struct rule_set {
    template<typename Rule> static constexpr bool contains = (std::is_same_v<Rule, Rules> || ...);
};
using selected_rules = rule_set<
    g::name, g::integer, g::number, g::string_lit, g::str_chars, g::escaped_char,
    g::str_interp, g::value_expr, g::tick_expr, g::paren, g::random_call, g::not_expr, g::neg_expr,
    g::add_op, g::cmp_op, g::and_op, g::or_op,
    g::pin_ref, g::assign_target, g::action_ref, g::node_ref, g::channel_ref,
    g::toggle_stmt, g::send_value, g::send_stmt, g::ack_value, g::ack_stmt, g::log_value, g::log_stmt,
    g::after_delay, g::delay_name, g::after_stmt, g::delay_ref, g::cancel_stmt, g::var_name, g::var_value, g::var_decl, g::repeat_count, g::repeat_stmt, g::assign_value, g::assign_stmt,
    g::call_stmt, g::if_stmt, g::if_word, g::else_word, g::if_cond, g::if_block, g::else_block,
    g::pin_name, g::pin_dir, g::chip_word, g::pin_chip, g::pin_line, g::initial_value, g::initial_opt,
    g::debounce_time, g::debounce_opt, g::active_low_opt, g::pull_up_opt, g::pull_down_opt, g::pin_decl,
    g::action_name, g::action_decl, g::every_period, g::times_count, g::every_decl,
    g::on_source, g::on_pattern, g::guard, g::on_decl,
    g::node_name, g::host_v6, g::host_name, g::port, g::address, g::node_decl,
    g::level, g::expect_text, g::t_send, g::t_drive, g::advance_time, g::t_advance, g::pin_cmp,
    g::within_time, g::expect_pin, g::received_count, g::expect_received, g::t_expect,
    g::history_text, g::expect_logged,
    g::test_title, g::test_decl,
    g::mesh_name, g::mesh_decl, g::include_path, g::include_decl, g::env_var, g::secret_decl,
    g::discovery_url, g::discovery_decl,
    g::cert_file, g::key_file, g::ca_file, g::tls_cert, g::tls_key, g::tls_ca, g::tls_decl,
    g::limit_name, g::limit_value, g::limit, g::limits_decl>;
// clang-format on

// The parse tree, flat: nodes in pre-order, each with the size of its subtree.
// A rule that fails truncates what it added, so a parse allocates nothing per
// node (PEGTL's own parse_tree allocates a node for every rule it tries).
// A rule's identity: the address of a variable of its own.
template<typename Rule> inline constexpr char rule_id = 0;

struct FlatNode {
    const char* type = nullptr;  // &rule_id<Rule>
    std::uint32_t begin = 0, end = 0;
    std::uint32_t size = 1;  // this node and all below it
};

struct FlatTree {
    const char* text = nullptr;
    std::vector<FlatNode> nodes;
    std::vector<std::uint32_t> open;  // indices of the selected rules being matched
    int nesting = 0;                  // nesting rules being matched (see max_nesting)
};

// The rules through which the grammar recurses: every cycle of rules passes
// through one of them, so counting them bounds the parser's recursion.
using nesting_rules = rule_set<g::paren, g::random_call, g::str_interp, g::not_expr, g::neg_expr, g::stmt>;

// A syntax error, thrown where the parse cannot go on: a rule with a message
// failed (a `must`), or the text nests too deeply. It carries no more than
// that: PEGTL's parse_error would work out a line and column by reading the
// text again from its start, for every error.
struct Failure {
    enum class What : std::uint8_t {
        expected,  // `message` says what was expected
        too_deep,  // more than max_nesting levels
        name,      // a name was expected (a reserved word is not one)
        escape,    // an unknown escape in a string: `offset` is just after the `\`
        brace,     // a `{` in a string that starts no interpolation
    };
    std::uint32_t offset = 0;
    const char* message = nullptr;  // null: a rule without a message of its own
    What what = What::expected;
};

template<typename Rule>
constexpr Failure::What failure_kind() {
    using W = Failure::What;
    if constexpr (std::is_base_of_v<g::name, Rule>) return W::name;
    if constexpr (std::is_same_v<Rule, g::escaped_char>) return W::escape;
    if constexpr (std::is_same_v<Rule, g::interp_expr> || std::is_same_v<Rule, g::interp_close>) return W::brace;
    return W::expected;
}

template<typename Rule>
struct control : pegtl::normal<Rule> {
    template<typename ParseInput>
    static std::uint32_t offset(const ParseInput& in, const FlatTree& t) {
        return static_cast<std::uint32_t>(in.current() - t.text);
    }
    template<typename ParseInput>
    static void start(const ParseInput& in, FlatTree& t) {
        if constexpr (nesting_rules::contains<Rule>) {
            if (++t.nesting > max_nesting) throw Failure{offset(in, t), nullptr, Failure::What::too_deep};
        }
        if constexpr (selected_rules::contains<Rule>) {
            t.open.push_back(static_cast<std::uint32_t>(t.nodes.size()));
            const auto at = offset(in, t);
            t.nodes.push_back(FlatNode{&rule_id<Rule>, at, at, 1});
        }
    }
    template<typename ParseInput>
    static void success(const ParseInput& in, FlatTree& t) {
        if constexpr (nesting_rules::contains<Rule>) --t.nesting;
        if constexpr (selected_rules::contains<Rule>) {
            FlatNode& n = t.nodes[t.open.back()];
            n.end = offset(in, t);
            n.size = static_cast<std::uint32_t>(t.nodes.size() - t.open.back());
            t.open.pop_back();
        }
    }
    // A rule with a message never fails quietly: its failure is a syntax error
    // (that is what a `must` is), wherever it is used.
    template<typename ParseInput>
    static void failure(const ParseInput& in, FlatTree& t) {
        if constexpr (nesting_rules::contains<Rule>) --t.nesting;
        if constexpr (selected_rules::contains<Rule>) {
            t.nodes.resize(t.open.back());
            t.open.pop_back();
        }
        if constexpr (g::message<Rule> != nullptr) raise(in, t);
    }
    template<typename ParseInput>
    [[noreturn]] static void raise(const ParseInput& in, FlatTree& t) {
        throw Failure{offset(in, t), g::message<Rule>, failure_kind<Rule>()};
    }
};

class Tree;
// Most nodes have a handful of children: keep them off the heap.
using Children = boost::container::small_vector<Tree, 8>;

// A node of a FlatTree, by value.
class Tree {
public:
    Tree(const FlatTree& t, std::uint32_t i) : t_(&t), i_(i) {}
    template<typename Rule> bool is_type() const { return node().type == &rule_id<Rule>; }
    std::uint32_t begin() const { return node().begin; }
    std::uint32_t end() const { return node().end; }
    std::string_view string_view() const { return std::string_view(t_->text + begin(), end() - begin()); }
    std::string string() const { return std::string(string_view()); }
    Children children() const {
        Children out;
        for (std::uint32_t j = i_ + 1; j < i_ + node().size; j += t_->nodes[j].size) out.emplace_back(*t_, j);
        return out;
    }
    Tree child(std::size_t k) const {
        std::uint32_t j = i_ + 1;
        for (; k > 0; --k) j += t_->nodes[j].size;
        if (j >= i_ + node().size) throw std::out_of_range("parse tree child");
        return Tree(*t_, j);
    }

private:
    const FlatNode& node() const { return t_->nodes[i_]; }
    const FlatTree* t_;
    std::uint32_t i_;
};

using Input = pegtl::memory_input<pegtl::tracking_mode::lazy, pegtl::eol::lf_crlf, std::string>;

constexpr std::int64_t max_count = std::numeric_limits<std::int64_t>::max();

// Reads a whole file. A directory opens like a file on Linux and reads as
// nothing: it is refused here (errno EISDIR), not taken for an empty topology.
std::string read_file(const std::string& path, bool& ok) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        errno = EISDIR;
        ok = false;
        return {};
    }
    std::ifstream in(path, std::ios::binary);
    ok = static_cast<bool>(in);
    if (!ok) return {};
    // A .mesh file is text a person writes: past max_source_size (`/dev/zero`, a log file
    // named by mistake) it is refused (errno EFBIG) instead of read until memory runs out.
    std::string text;
    char buffer[65536];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
        text.append(buffer, static_cast<std::size_t>(in.gcount()));
        if (text.size() > max_source_size) {
            errno = EFBIG;
            ok = false;
            return {};
        }
    }
    return text;
}

bool is_name_byte(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// The offending token at `offset`, for "found `...`" and for the caret's
// length: a word, or one whole character; empty at the end of a line.
Span token_at(std::uint32_t file, const std::string& text, std::uint32_t offset) {
    std::uint32_t end = offset;
    if (offset < text.size()) {
        if (is_name_byte(text[offset])) {
            while (end < text.size() && (is_name_byte(text[end]) || text[end] == '-')) ++end;
        } else if (text[offset] != '\n' && text.compare(offset, 2, "\r\n") != 0) {
            end = offset + utf8::decode(text, offset).size;
        }
    }
    return Span{file, offset, end};
}

// What was found, for a message: quoted, escaped for a terminal, and cut short.
std::string describe_found(const std::string& text, Span tok) {
    constexpr std::size_t most = 40;
    if (tok.begin >= text.size()) return "end of file";
    if (tok.begin == tok.end) return "end of line";
    const std::string_view found = std::string_view(text).substr(tok.begin, tok.end - tok.begin);
    if (found.size() > most) return "`" + utf8::printable(found.substr(0, most)) + "...`";
    return "`" + utf8::printable(found) + "`";
}

class Parser {
public:
    Parser(SourceManager& sm, Diagnostics& diags, Program& program)
        : sm_(sm), diags_(diags), program_(program) {}

    // `included_at`: the include that reads the file; none for the root file.
    void parse_source(std::uint32_t file_id, std::optional<Span> included_at);
    std::uint32_t load(const std::string& path, Span from, bool& ok);

private:
    // --- tree -> AST ---
    Span span(const Tree& n) const {
        return Span{file_, n.begin(), n.end()};
    }
    Ident ident(const Tree& n) const { return Ident{n.string(), span(n), {}}; }
    Count count(const Tree& n) const;
    Duration duration(const Tree& n) const;
    // An expression: a node whose children are `operand (op operand)*`. Each
    // function that builds one also counts its `height` in levels (max_nesting).
    Expr expr(const Tree& list) {
        int height = 0;
        return expr(list, height);
    }
    Expr expr(const Tree& list, int& height);
    Expr climb(const Children& items, std::size_t& i, int min_precedence, int& height);
    Expr operand(const Tree& n, int& height);
    Expr string_expr(const Tree& n) {
        int height = 0;
        return string_expr(n, height);
    }
    Expr string_expr(const Tree& n, int& height);
    bool deeper(int& height, Span at, bool chain);
    void too_deep(Span at, bool chain);
    std::string plain_string(const Tree& n, const char* what);
    Expr literal_expr(const Tree& n, const char* what);
    void stmts(const Tree& parent, std::size_t from, std::vector<Stmt>& out);
    void stmt(const Tree& n, Stmt& s);
    void if_stmt(const Tree& n, Stmt& s);
    [[gnu::noinline]] void simple_stmt(const Tree& n, Stmt& s);
    void node(const Tree& n);
    void test(const Tree& n);
    void top_item(const Tree& n, bool is_root);
    void tls(const Tree& n);
    void limits(const Tree& n);

    Diagnostic* syntax_error(const std::string& text, std::uint32_t offset, std::string message);
    void syntax_error(const std::string& text, const Failure& f);
    void typo_hint(const std::string& text, const Failure& f, Diagnostic& d);
    void check_utf8(const std::string& text, std::size_t from);
    void escape_error(const std::string& text, const Failure& f);

    SourceManager& sm_;
    Diagnostics& diags_;
    Program& program_;
    std::uint32_t file_ = 0;
    struct Open {
        std::string canonical, path;
        std::optional<Span> included_at;
    };
    std::vector<Open> include_stack_;  // the files being read, for cycles
    bool seen_item_ = false;                  // a `mesh` line must come first
    int stmt_depth_ = 0;     // the level of the statement being built (0 outside statements)
    bool too_deep_ = false;  // the item being built is too deep (reported once): stop building
};

Count Parser::count(const Tree& n) const {
    Count c;
    c.span = span(n);
    for (char ch : n.string_view()) {
        if (c.value > (max_count - 9) / 10) {
            c.value = max_count;
            break;
        }
        c.value = c.value * 10 + (ch - '0');
    }
    return c;
}

Duration Parser::duration(const Tree& n) const {
    Duration d;
    d.span = span(n);
    const std::string_view text = n.string_view();
    std::size_t i = 0;
    std::uint64_t amount = 0;
    const std::uint64_t cap = std::numeric_limits<std::uint64_t>::max() / 4'000'000'000ULL;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        amount = std::min(cap, amount * 10 + static_cast<std::uint64_t>(text[i] - '0'));
    }
    const std::string_view unit = text.substr(i);
    std::uint64_t scale = 1;
    for (const DurationUnit& u : duration_units)
        if (unit == u.name) scale = u.micros;
    d.micros = amount * scale;  // `cap` keeps this from overflowing
    return d;
}

Expr Parser::string_expr(const Tree& n, int& height) {
    Expr e;
    e.kind = Expr::Kind::string;
    e.span = span(n);
    auto text_part = [&]() -> Expr& {
        if (e.operands.empty() || e.operands.back().kind != Expr::Kind::text) {
            Expr t;
            t.kind = Expr::Kind::text;
            e.operands.push_back(std::move(t));
        }
        return e.operands.back();
    };
    for (const Tree& c : n.children()) {
        if (c.is_type<g::str_chars>()) {
            Expr& t = text_part();
            t.text += c.string_view();
            t.span = Span{file_, t.text.size() == c.string_view().size() ? span(c).begin : t.span.begin, span(c).end};
        } else if (c.is_type<g::escaped_char>()) {
            Expr& t = text_part();
            const char ch = c.string_view()[0];
            if (t.text.empty()) t.span.begin = span(c).begin - 1;
            t.text += ch == 'n' ? '\n' : ch;
            t.span.file = file_;
            t.span.end = span(c).end;
        } else {  // str_interp
            int part = 0;
            e.operands.push_back(expr(c, part));
            height = std::max(height, part);
        }
    }
    if (e.has_interpolation()) deeper(height, Span{file_, n.begin(), n.begin() + 1}, false);
    return e;
}

std::string Parser::plain_string(const Tree& n, const char* what) {
    Expr e = string_expr(n);
    if (e.has_interpolation()) {
        for (const auto& part : e.operands) {
            if (part.kind != Expr::Kind::text) {
                diags_.error(Kind::syntax, part.span,
                             std::string("interpolation is not allowed in ") + what)
                    .notes.push_back({std::nullopt, "write `\\{` for a literal brace"});
                break;
            }
        }
    }
    return e.literal_text();
}

// Expressions come out of the parse tree flat, as `operand (operator operand)*`
// (nodes for the four precedence levels would cost more than the parse itself);
// precedence climbing builds the tree: or, and, comparisons, then + -.
int precedence(const Tree& n) {
    if (n.is_type<g::or_op>()) return 1;
    if (n.is_type<g::and_op>()) return 2;
    if (n.is_type<g::cmp_op>()) return 3;
    if (n.is_type<g::add_op>()) return 4;
    return 0;  // an operand
}

BinOp binop(const Tree& n) {
    if (n.is_type<g::or_op>()) return BinOp::or_;
    if (n.is_type<g::and_op>()) return BinOp::and_;
    const std::string_view o = n.string_view();
    return o == "+"  ? BinOp::add
         : o == "-"  ? BinOp::sub
         : o == "==" ? BinOp::eq
         : o == "!=" ? BinOp::ne
         : o == "<"  ? BinOp::lt
         : o == "<=" ? BinOp::le
         : o == ">"  ? BinOp::gt
                     : BinOp::ge;
}

// The loop builds a chain of one precedence (`a + b + c`, left-associative)
// without recursion; it recurses once per tighter precedence level only.
Expr Parser::climb(const Children& items, std::size_t& i, int min_precedence, int& height) {
    Expr lhs = operand(items.at(i++), height);
    while (i < items.size() && !too_deep_) {
        const Tree& op = items[i];
        const int p = precedence(op);
        if (p < min_precedence) break;
        ++i;
        int rhs_height = 0;
        Expr rhs = climb(items, i, p + 1, rhs_height);
        height = std::max(height, rhs_height);
        if (!deeper(height, span(op), true)) break;
        Expr b;
        b.kind = Expr::Kind::binary;
        b.op = binop(op);
        b.span = Span{file_, lhs.span.begin, rhs.span.end};
        b.operands.push_back(std::move(lhs));
        b.operands.push_back(std::move(rhs));
        lhs = std::move(b);
    }
    return lhs;
}

Expr Parser::expr(const Tree& list, int& height) {
    const Children items = list.children();
    if (items.size() == 1) return operand(items[0], height);  // no operator: the common case
    std::size_t i = 0;
    return climb(items, i, 1, height);
}

// One level more for the expression being built, `height` levels high so far.
// False (reported once) when that makes the item deeper than max_nesting: the
// caller stops building, so that no AST deeper than that is ever made.
bool Parser::deeper(int& height, Span at, bool chain) {
    ++height;
    if (too_deep_) return false;
    if (stmt_depth_ + height <= max_nesting) return true;
    too_deep(at, chain);
    return false;
}

void Parser::too_deep(Span at, bool chain) {
    too_deep_ = true;
    auto& d = diags_.error(Kind::too_deep, at,
                           "nested too deeply: more than " + std::to_string(max_nesting) +
                               " levels of statements, parentheses and operators");
    if (chain)
        d.notes.push_back({std::nullopt, "a chain of operators nests one level per operator: "
                                         "`a + b + c` is `(a + b) + c`"});
}

Expr Parser::operand(const Tree& n, int& height) {
    Expr e;
    e.span = span(n);
    using K = Expr::Kind;
    if (n.is_type<g::number>()) {
        e.kind = K::number;
        e.text = n.string();
    } else if (n.is_type<g::string_lit>()) {
        return string_expr(n, height);
    } else if (n.is_type<g::name>()) {
        e.kind = K::name;
        e.text = n.string();
    } else if (n.is_type<g::value_expr>()) {
        e.kind = K::value;
    } else if (n.is_type<g::tick_expr>()) {
        e.kind = K::tick;
    } else if (n.is_type<g::paren>()) {
        Expr inner = expr(n, height);
        deeper(height, Span{file_, n.begin(), n.begin() + 1}, false);
        inner.span = e.span;  // the parentheses belong to it
        return inner;
    } else if (n.is_type<g::random_call>() || n.is_type<g::not_expr>()) {
        e.kind = n.is_type<g::random_call>() ? K::random : K::not_;
        e.operands.push_back(expr(n, height));
        deeper(height, Span{file_, n.begin(), n.begin() + (e.kind == K::random ? 6u : 3u)}, false);
    } else if (n.is_type<g::neg_expr>()) {
        e.kind = K::neg;
        e.operands.push_back(operand(n.child(0), height));
        deeper(height, Span{file_, n.begin(), n.begin() + 1}, false);
    }
    return e;
}

void Parser::stmts(const Tree& parent, std::size_t from, std::vector<Stmt>& out) {
    const Children c = parent.children();
    out.reserve(out.size() + c.size() - std::min(from, c.size()));
    for (std::size_t i = from; i < c.size(); ++i) stmt(c[i], out.emplace_back());
}

// Blocks (`after`, `repeat`) recurse, every other statement is built out of
// line: the frame of a nest of blocks then holds no temporaries of the others.
void Parser::stmt(const Tree& n, Stmt& s) {
    ++stmt_depth_;  // the grammar keeps this within max_nesting
    s.span = span(n);
    if (n.is_type<g::after_stmt>()) {
        s.kind = Stmt::Kind::after;
        s.delay = duration(n.child(0));
        const bool named = n.children().size() > 1 && n.child(1).is_type<g::delay_name>();
        if (named) s.target = ident(n.child(1));
        stmts(n, named ? 2 : 1, s.body);
    } else if (n.is_type<g::repeat_stmt>()) {
        s.kind = Stmt::Kind::repeat;
        s.count = count(n.child(0));
        stmts(n, 1, s.body);
    } else if (n.is_type<g::if_stmt>()) {
        if_stmt(n, s);
    } else {
        simple_stmt(n, s);
    }
    --stmt_depth_;
}

// The children come in order: `if` COND BLOCK, then per `else if`: `else` `if` COND BLOCK, and
// for the `else`: `else` BLOCK.
void Parser::if_stmt(const Tree& n, Stmt& s) {
    s.kind = Stmt::Kind::if_;
    const Children c = n.children();
    std::optional<Span> else_at;
    for (std::size_t i = 0; i < c.size(); ++i) {
        if (c[i].is_type<g::else_word>()) {
            else_at = span(c[i]);
            continue;
        }
        Branch& b = s.branches.emplace_back();
        if (c[i].is_type<g::if_word>()) {  // `if` or `else if`
            b.keyword = span(c[i]);
            if (else_at) b.keyword.begin = else_at->begin;
            b.condition = expr(c.at(i + 1));
            i += 2;
        } else {  // the block of the `else`
            b.keyword = else_at.value_or(span(c[i]));
        }
        stmts(c.at(i), 0, b.body);
        b.span = Span{file_, b.keyword.begin, c[i].end()};
        else_at.reset();
    }
}

void Parser::simple_stmt(const Tree& n, Stmt& s) {
    using K = Stmt::Kind;
    const Children c = n.children();
    if (n.is_type<g::toggle_stmt>()) {
        s.kind = K::toggle;
        s.target = ident(c.at(0));
    } else if (n.is_type<g::send_stmt>()) {
        s.kind = K::send;
        s.expr = expr(c.at(0));
        s.node = ident(c.at(1));
        s.channel = ident(c.at(2));
    } else if (n.is_type<g::ack_stmt>()) {
        s.kind = K::ack;
        s.expr = expr(c.at(0));
    } else if (n.is_type<g::log_stmt>()) {
        s.kind = K::log;
        s.expr = expr(c.at(0));
    } else if (n.is_type<g::assign_stmt>()) {
        s.kind = K::assign;
        s.target = ident(c.at(0));
        s.expr = expr(c.at(1));
    } else if (n.is_type<g::cancel_stmt>()) {
        s.kind = K::cancel;
        s.target = ident(c.at(0));
    } else {  // call_stmt
        s.kind = K::call;
        s.target = ident(n);
    }
}

void Parser::node(const Tree& n) {
    Node node;
    node.span = span(n);
    const Children items = n.children();
    std::size_t pins = 0, actions = 0, timers = 0, rules = 0;
    for (const Tree& item : items) {
        pins += item.is_type<g::pin_decl>();
        actions += item.is_type<g::action_decl>();
        timers += item.is_type<g::every_decl>();
        rules += item.is_type<g::on_decl>();
    }
    node.pins.reserve(pins);
    node.actions.reserve(actions);
    node.timers.reserve(timers);
    node.rules.reserve(rules);
    node.name = ident(items.at(0));
    for (std::size_t i = 1; i < items.size(); ++i) {
        const Tree& item = items[i];
        const Children c = item.children();
        if (item.is_type<g::address>()) {
            Address a;
            a.span = span(item);
            for (const Tree& part : c) {
                if (part.is_type<g::port>()) {
                    a.port = count(part);
                } else {
                    a.host = part.string();
                    a.host_span = span(part);
                    if (part.is_type<g::host_v6>()) a.host_span = Span{file_, a.host_span.begin - 1, a.host_span.end + 1};
                }
            }
            node.address = std::move(a);
        } else if (item.is_type<g::pin_decl>()) {
            Pin p;
            p.span = span(item);
            p.name = ident(c.at(0));
            p.direction = c.at(1).string_view() == "in" ? drivers::Direction::input : drivers::Direction::output;
            const Tree chip = c.at(2).child(0);
            p.chip_quoted = chip.is_type<g::string_lit>();
            p.chip = p.chip_quoted ? plain_string(chip, "a chip label") : chip.string();
            p.chip_span = span(chip);
            const Tree line = c.at(3).child(0);
            p.line_quoted = line.is_type<g::string_lit>();
            p.line = p.line_quoted ? plain_string(line, "a line name") : line.string();
            p.line_span = span(line);
            for (std::size_t k = 4; k < c.size(); ++k) {
                const Tree& o = c[k];
                const Span os = span(o);
                std::string option_name = o.string();
                if (o.is_type<g::initial_opt>()) {
                    option_name = "initial";
                    p.initial = count(o.child(0));
                } else if (o.is_type<g::debounce_opt>()) {
                    option_name = "debounce";
                    p.debounce = duration(o.child(0));
                } else if (o.is_type<g::active_low_opt>()) {
                    p.active_low = true;
                } else {
                    p.bias = o.is_type<g::pull_up_opt>() ? drivers::Bias::pull_up : drivers::Bias::pull_down;
                    p.bias_span = os;
                }
                p.options.push_back({std::move(option_name), os});
            }
            node.pins.push_back(std::move(p));
        } else if (item.is_type<g::var_decl>()) {
            Var v;
            v.span = span(item);
            v.name = ident(c.at(0));
            v.initial = literal_expr(c.at(1), "a variable's first value");
            node.vars.push_back(std::move(v));
        } else if (item.is_type<g::action_decl>()) {
            Action a;
            a.span = span(item);
            a.name = ident(c.at(0));
            stmts(item, 1, a.body);
            node.actions.push_back(std::move(a));
        } else if (item.is_type<g::every_decl>()) {
            Timer t;
            t.span = span(item);
            t.period = duration(c.at(0));
            std::size_t next = 1;
            if (c.size() > 1 && c[1].is_type<g::times_count>()) t.times = count(c[next++]);
            stmts(item, next, t.body);
            node.timers.push_back(std::move(t));
        } else if (item.is_type<g::on_decl>()) {
            Rule r;
            r.span = span(item);
            r.source = ident(c.at(0));
            std::size_t next = 1;
            if (next < c.size() && c[next].is_type<g::on_pattern>()) r.pattern = literal_expr(c[next++], "a pattern");
            if (next < c.size() && c[next].is_type<g::guard>()) r.guard = expr(c[next++]);
            stmts(item, next, r.body);
            node.rules.push_back(std::move(r));
        }
    }
    program_.nodes.push_back(std::move(node));
}

// A pattern or a variable's first value: a number (`-1.5`) or a string without interpolation.
Expr Parser::literal_expr(const Tree& n, const char* what) {
    Expr e;
    e.span = span(n);
    if (n.child(0).is_type<g::string_lit>()) {
        e.kind = Expr::Kind::string;
        Expr t;
        t.kind = Expr::Kind::text;
        t.text = plain_string(n.child(0), what);
        t.span = e.span;
        e.operands.push_back(std::move(t));
    } else {
        e.kind = Expr::Kind::number;
        e.text = n.string();
    }
    return e;
}

void Parser::test(const Tree& n) {
    Test t;
    t.span = span(n);
    const Children items = n.children();
    t.title = plain_string(items.at(0), "a test title");
    t.title_span = span(items.at(0));
    using K = TestStmt::Kind;
    for (std::size_t i = 1; i < items.size(); ++i) {
        const Tree& item = items[i];
        const Children c = item.children();
        TestStmt s;
        s.span = span(item);
        if (item.is_type<g::t_send>()) {
            s.kind = K::send;
            s.value = expr(c.at(0));
            s.node = ident(c.at(1));
            s.member = ident(c.at(2));
            if (c.size() > 3) s.expect = expr(c[3]);
        } else if (item.is_type<g::t_drive>()) {
            s.kind = K::drive;
            s.node = ident(c.at(0));
            s.member = ident(c.at(1));
            s.value = expr(c.at(2));
        } else if (item.is_type<g::t_advance>()) {
            s.kind = K::advance;
            s.duration = duration(c.at(0));
        } else {  // t_expect
            s.node = ident(c.at(0));
            const Tree what = c.at(1);
            const Children w = what.children();
            if (what.is_type<g::expect_pin>()) {
                s.member = ident(w.at(0));
                if (w.at(1).is_type<g::history_text>()) {
                    s.kind = K::expect_history;
                    s.expect = string_expr(w.at(1));
                } else {
                    s.kind = K::expect_pin;
                    s.op = w.at(1).string_view() == "==" ? BinOp::eq : BinOp::ne;
                    s.value = expr(w.at(2));
                    if (w.size() > 3) s.within = duration(w[3]);
                }
            } else if (what.is_type<g::expect_logged>()) {
                s.kind = K::expect_logged;
                s.expect = expr(w.at(0));
            } else {
                s.kind = K::expect_received;
                s.count = count(w.at(0));
                s.member = ident(w.at(1));
            }
        }
        t.body.push_back(std::move(s));
    }
    program_.tests.push_back(std::move(t));
}

void Parser::top_item(const Tree& n, bool is_root) {
    const Children c = n.children();
    if (n.is_type<g::mesh_decl>()) {
        if (!is_root) return;  // a `mesh` line in an included file is ignored
        if (seen_item_ || program_.mesh_name) {
            diags_.error(Kind::misplaced_mesh, span(n), "`mesh` must be the first item of the file")
                .notes.push_back({std::nullopt, "the topology's name comes before everything it declares"});
            return;
        }
        program_.mesh_name = ident(c.at(0));
        return;
    }
    seen_item_ = true;
    if (n.is_type<g::include_decl>()) {
        const std::string rel = plain_string(c.at(0), "a file path");
        const fs::path base = fs::path(sm_.file(file_).path).parent_path();
        const std::string path = (base / rel).lexically_normal().string();
        const Span at = span(n);
        if (include_stack_.size() > static_cast<std::size_t>(max_include_depth)) {
            diags_.error(Kind::too_deep, at,
                         "includes nested too deeply: more than " + std::to_string(max_include_depth) + " files deep");
            return;
        }
        program_.includes.push_back({path, at});
        bool ok = false;
        const std::uint32_t id = load(path, at, ok);
        if (!ok) return;
        const std::uint32_t saved = file_;
        parse_source(id, at);
        file_ = saved;
    } else if (n.is_type<g::secret_decl>()) {
        program_.secrets.push_back(ident(c.at(0)));
    } else if (n.is_type<g::discovery_decl>()) {
        program_.discovery.push_back({plain_string(c.at(0), "a URL"), span(c.at(0))});
    } else if (n.is_type<g::tls_decl>()) {
        tls(n);
    } else if (n.is_type<g::limits_decl>()) {
        limits(n);
    } else if (n.is_type<g::node_decl>()) {
        node(n);
    } else if (n.is_type<g::test_decl>()) {
        test(n);
    }
}

void Parser::tls(const Tree& n) {
    Tls t;
    t.span = span(n);
    t.keyword = Span{file_, n.begin(), n.begin() + 3};
    for (const Tree& o : n.children()) {
        Tls::File f;
        f.option = o.is_type<g::tls_cert>() ? "cert" : o.is_type<g::tls_key>() ? "key" : "ca";
        const Tree path = o.child(0);
        f.path = plain_string(path, "a file name");
        f.span = span(o);
        f.path_span = span(path);
        t.files.push_back(std::move(f));
    }
    program_.tls.push_back(std::move(t));
}

// `NAME VALUE` lines. A value is a whole number and the letters after it (the grammar reads
// them whole); the letters say what it is, and the checker whether that fits the limit.
void Parser::limits(const Tree& n) {
    Limits l;
    l.span = span(n);
    l.keyword = Span{file_, n.begin(), n.begin() + 6};
    constexpr std::uint64_t most = std::numeric_limits<std::uint64_t>::max();
    for (const Tree& item : n.children()) {
        const Tree value = item.child(1);
        Limit lim;
        lim.name = ident(item.child(0));
        lim.span = span(item);
        lim.text = value.string();
        lim.value_span = span(value);
        const std::string_view text = value.string_view();
        std::size_t i = 0;
        std::uint64_t amount = 0;
        for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i)
            amount = amount > (most - 9) / 10 ? most : amount * 10 + static_cast<std::uint64_t>(text[i] - '0');
        const std::string_view unit = text.substr(i);
        std::uint64_t scale = 1;
        lim.unit = Limit::Unit::unknown;
        if (unit.empty()) {
            lim.unit = Limit::Unit::count;
        } else if (unit == "B" || unit == "KiB" || unit == "MiB") {
            lim.unit = Limit::Unit::size;
            scale = unit == "B" ? 1 : unit == "KiB" ? 1024 : 1024 * 1024;
        } else {
            for (const DurationUnit& u : duration_units) {
                if (unit != u.name) continue;
                lim.unit = Limit::Unit::duration;
                scale = u.micros;
            }
        }
        lim.value = amount > most / scale ? most : amount * scale;
        l.limits.push_back(std::move(lim));
    }
    program_.limits.push_back(std::move(l));
}

Diagnostic* Parser::syntax_error(const std::string& text, std::uint32_t offset, std::string message) {
    const Span tok = token_at(file_, text, offset);
    const utf8::Char found = tok.begin < tok.end ? utf8::decode(text, tok.begin) : utf8::Char{};
    if (!found.valid) return nullptr;  // an invalid byte, reported as such (check_utf8)
    auto& d = diags_.error(Kind::syntax, tok, message + ", found " + describe_found(text, tok));
    if (found.code >= 0x80 && !utf8::hidden(found.code))
        d.notes.push_back({std::nullopt, "names and keywords are ASCII letters, digits, `_` and `-`; "
                                         "other text belongs in a string"});
    return &d;
}

// Source files are UTF-8. Each line with an invalid byte is an error at the
// first one (for the first ten such lines of a file; a note counts the rest).
void Parser::check_utf8(const std::string& text, std::size_t from) {
    constexpr int most = 10;
    int reported = 0, more = 0;
    Diagnostic* last = nullptr;
    for (std::size_t at = utf8::find_invalid(text, from); at != std::string::npos;) {
        if (reported < most) {
            ++reported;
            const Span byte{file_, static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(at + 1)};
            last = &diags_.error(Kind::invalid_utf8, byte,
                                 "invalid UTF-8 (byte " + describe_found(text, byte) + "): a .mesh file is read as UTF-8");
        } else {
            ++more;
        }
        const std::size_t eol = text.find('\n', at);
        if (eol == std::string::npos) break;
        at = utf8::find_invalid(text, eol + 1);
    }
    if (more > 0)
        last->notes.push_back({std::nullopt, std::to_string(more) + " more line" + (more == 1 ? "" : "s") +
                                                 " of this file hold invalid UTF-8"});
}

void Parser::syntax_error(const std::string& text, const Failure& f) {
    if (f.what == Failure::What::too_deep) {
        too_deep(token_at(file_, text, f.offset), false);
        return;
    }
    if (f.what == Failure::What::escape) {
        escape_error(text, f);
        return;
    }
    // Rules without a message of their own (never expected) say no more than this.
    Diagnostic* d = syntax_error(text, f.offset, f.message ? f.message : "unexpected input");
    if (!d) return;
    if (f.what == Failure::What::brace) {
        d->notes.push_back({std::nullopt, "in a string, `{` starts an interpolation such as `{value}`; "
                                          "to write a brace, escape it: `\\{` or `\\}`"});
    } else if (f.what == Failure::What::name) {
        const std::string_view word = sm_.text(d->span);
        if (g::name::scan(word.data(), word.data() + word.size()) == word.size() && g::name::is_reserved(word))
            d->notes.push_back({std::nullopt, "`" + std::string(word) + "` is a reserved word, which cannot be a name"});
    } else {
        typo_hint(text, f, *d);
    }
}

// A keyword written wrong is read as a name, and the error comes a word later: `cancle d`
// (the call of an action `cancle`, then `d`), `vra x = 0`, `after 5m sa off`. Where the word
// is close to a keyword that could stand there, a note says which; a `=` where a condition
// ends is said to compare with `==`.
void Parser::typo_hint(const std::string& text, const Failure& f, Diagnostic& d) {
    const std::string_view found = sm_.text(d.span);
    if (found == "=" && (f.message == g::message<g::if_block> || f.message == g::message<g::arrow_req>)) {
        d.notes.push_back({std::nullopt, "to compare, write `==` (`=` sets a pin or a variable)"});
        return;
    }
    if (found == "elif") {
        d.notes.push_back({std::nullopt, "write `else if`"});
        return;
    }
    std::string_view word = found;
    std::vector<std::string_view> keywords;
    if (f.message == g::message<g::node_close>) {
        keywords = {"pin", "var", "action", "every", "on"};
    } else if (f.message == g::message<g::test_close>) {
        keywords = {"send", "drive", "advance", "expect"};
    } else if (f.message == g::message<g::arrow_req>) {
        keywords = {"as", "when"};
    } else if (f.message == g::message<g::stmt_end> || f.message == g::message<g::item_end>) {
        // The statement's own first word: the name just before the error, where a statement starts.
        std::size_t end = d.span.begin;
        while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\t')) --end;
        std::size_t begin = end;
        while (begin > 0 && (g::name::is_name_char(text[begin - 1]) || text[begin - 1] == '-')) --begin;
        std::size_t before = begin;
        while (before > 0 && (text[before - 1] == ' ' || text[before - 1] == '\t')) --before;
        if (before > 0 && text[before - 1] != '\n' && text[before - 1] != '{' && text[before - 1] != ';' &&
            text[before - 1] != '>')
            return;
        word = std::string_view(text).substr(begin, end - begin);
        keywords = {"toggle", "send", "ack", "log", "after", "repeat", "cancel", "if"};
    }
    if (auto best = closest(word, keywords)) d.notes.push_back({std::nullopt, "did you mean `" + *best + "`?"});
}

// `\t` in a string: the escape named whole, and the escapes there are.
void Parser::escape_error(const std::string& text, const Failure& f) {
    const Span after = token_at(file_, text, f.offset);
    if (after.begin == after.end) {  // the `\` ends the line or the file
        diags_.error(Kind::syntax, Span{file_, f.offset - 1, f.offset},
                     "expected an escaped character after `\\`, found " + describe_found(text, after) + "; " + f.message);
        return;
    }
    const std::uint32_t end = f.offset + utf8::decode(text, f.offset).size;
    const std::string escape = "\\" + utf8::printable(std::string_view(text).substr(f.offset, end - f.offset));
    auto& d = diags_.error(Kind::syntax, Span{file_, f.offset - 1, end}, "unknown escape `" + escape + "`; " + f.message);
    if (text[f.offset] == 't') d.notes.push_back({std::nullopt, "a string may hold a tab as it is"});
}

// Reads a file for an include; reports a missing file or a cycle at `from`.
std::uint32_t Parser::load(const std::string& path, Span from, bool& ok) {
    ok = false;
    std::error_code ec;
    const fs::path canonical = fs::weakly_canonical(path, ec);
    const std::string key = ec ? path : canonical.string();
    for (std::size_t k = 0; k < include_stack_.size(); ++k) {
        if (include_stack_[k].canonical != key) continue;
        // The cycle: each file from the one read again includes the next, at its own include line.
        auto& d = diags_.error(Kind::include_cycle, from, "include cycle: `" + path + "` is already being read");
        for (std::size_t j = k + 1; j < include_stack_.size(); ++j)
            d.notes.push_back({include_stack_[j].included_at,
                               "`" + include_stack_[j - 1].path + "` includes `" + include_stack_[j].path + "` here"});
        return 0;
    }
    bool readable = false;
    std::string text = read_file(path, readable);
    if (!readable) {
        diags_.error(Kind::include_not_found, from,
                     "cannot read included file `" + path + "`: " + std::strerror(errno ? errno : ENOENT));
        return 0;
    }
    ok = true;
    return sm_.add(path, key, std::move(text));
}

void Parser::parse_source(std::uint32_t file_id, std::optional<Span> included_at) {
    const bool is_root = !included_at;
    file_ = file_id;
    const SourceFile& src = sm_.file(file_id);
    include_stack_.push_back({src.canonical.empty() ? src.path : src.canonical, src.path, included_at});
    const std::string& text = src.text;
    const std::size_t start = src.line_starts[0];  // after a byte order mark
    check_utf8(text, start);
    Input in(text.data() + start, text.data() + text.size(), src.path);
    FlatTree tree;
    tree.text = text.data();
    while (true) {
        pegtl::parse<g::__>(in);
        if (in.empty()) break;
        const auto offset = static_cast<std::uint32_t>(in.current() - text.data());
        try {
            tree.nodes.clear();
            tree.open.clear();
            tree.nesting = 0;
            if (pegtl::parse<g::top_entry, pegtl::nothing, control>(in, tree)) {
                too_deep_ = false;
                top_item(Tree(tree, 0), is_root);
                file_ = file_id;
                continue;
            }
            syntax_error(text, offset,
                         "expected `node`, `test`, `include`, `mesh`, `secret`, `tls`, `limits` or `discovery`");
        } catch (const Failure& f) {
            syntax_error(text, f);
        }
        // Recover at the next line that starts a top-level item, so that one
        // mistake costs one item, not the rest of the file.
        std::size_t at = offset;
        while (true) {
            at = text.find('\n', at);
            if (at == std::string::npos) {
                at = text.size();
                break;
            }
            ++at;
            pegtl::memory_input<> probe(text.data() + at, text.data() + text.size(), "");
            if (pegtl::parse<pegtl::sor<g::kw_node, g::kw_test, g::kw_include, g::kw_mesh, g::kw_secret,
                                        g::kw_discovery, g::kw_tls, g::kw_limits>>(probe)) {
                break;
            }
        }
        in.bump(at - static_cast<std::size_t>(in.current() - text.data()));
    }
    include_stack_.pop_back();
}

}  // namespace

bool Expr::has_interpolation() const {
    if (kind != Kind::string) return false;
    for (const auto& p : operands)
        if (p.kind != Kind::text) return true;
    return false;
}

std::string Expr::literal_text() const {
    if (kind == Kind::number) return text;
    std::string out;
    for (const auto& p : operands)
        if (p.kind == Kind::text) out += p.text;
    return out;
}

Program parse_text(std::string name, std::string text, SourceManager& sm, Diagnostics& diags) {
    Program program;
    Parser parser(sm, diags, program);
    std::error_code ec;
    const std::string canonical = fs::weakly_canonical(name, ec).string();
    const std::uint32_t id = sm.add(name, ec ? name : canonical, std::move(text));
    parser.parse_source(id, std::nullopt);
    return program;
}

Program parse_file(const std::string& path, SourceManager& sm, Diagnostics& diags) {
    bool ok = false;
    std::string text = read_file(path, ok);
    if (!ok) throw std::runtime_error("cannot read `" + path + "`");
    return parse_text(path, std::move(text), sm, diags);
}

}  // namespace meshrun::dsl
