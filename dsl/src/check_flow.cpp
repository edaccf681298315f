// Phase 2, continued: what depends on where code runs. `ack`, `value` and
// `tick` are checked where each action is run from (walking from every rule
// and timer through the calls); actions that run themselves and cycles of
// messages between channels are found by depth-first search.
#include <algorithm>
#include <string>
#include <vector>

#include "check_state.hpp"

namespace meshrun::dsl::check_detail {

namespace {

// Edges grouped by their source, for depth-first search: out[first[v] .. first[v + 1]).
struct Adjacency {
    std::vector<std::size_t> first;
    std::vector<const Edge*> out;

    Adjacency(std::size_t vertices, const std::vector<Edge>& edges) : first(vertices + 1, 0), out(edges.size()) {
        for (const Edge& e : edges) ++first[static_cast<std::size_t>(e.from) + 1];
        for (std::size_t v = 0; v < vertices; ++v) first[v + 1] += first[v];
        std::vector<std::size_t> next(first.begin(), first.end() - 1);
        for (const Edge& e : edges) out[next[static_cast<std::size_t>(e.from)]++] = &e;  // keeps source order
    }
    std::size_t begin(int v) const { return first[static_cast<std::size_t>(v)]; }
    std::size_t end(int v) const { return first[static_cast<std::size_t>(v) + 1]; }
};

enum : std::uint8_t { white, on_stack, done };

// Depth-first search along `edges` from each of the vertices [0, starts) in turn, without
// recursion (a path may be as long as the file). At each edge back to a vertex on the path,
// calls `on_cycle` with the cycle's edges in order: from that vertex along the path, then the
// edge back.
template<typename OnCycle>
void find_cycles(std::size_t vertices, std::size_t starts, const std::vector<Edge>& edges, OnCycle on_cycle) {
    if (edges.empty()) return;
    const Adjacency graph(vertices, edges);
    std::vector<std::uint8_t> color(vertices, white);
    struct Step {
        int vertex;
        std::size_t next;
        const Edge* via;  // the edge into this vertex
    };
    std::vector<Step> stack;
    for (std::size_t start = 0; start < starts; ++start) {
        if (color[start] != white) continue;
        stack.push_back({static_cast<int>(start), graph.begin(static_cast<int>(start)), nullptr});
        color[start] = on_stack;
        while (!stack.empty()) {
            Step& top = stack.back();
            if (top.next == graph.end(top.vertex)) {
                color[static_cast<std::size_t>(top.vertex)] = done;
                stack.pop_back();
                continue;
            }
            const Edge& e = *graph.out[top.next++];
            if (color[static_cast<std::size_t>(e.to)] == white) {
                color[static_cast<std::size_t>(e.to)] = on_stack;
                stack.push_back({e.to, graph.begin(e.to), &e});
                continue;
            }
            if (color[static_cast<std::size_t>(e.to)] != on_stack) continue;
            std::size_t from = 0;
            while (stack[from].vertex != e.to) ++from;
            std::vector<const Edge*> cycle;
            for (std::size_t k = from + 1; k < stack.size(); ++k) cycle.push_back(stack[k].via);
            cycle.push_back(&e);
            on_cycle(std::move(cycle));
        }
    }
}

}  // namespace

// ---------------------------------------------------------------------------
// contexts: `ack` belongs to message rules, `value` to rules, `tick` to timers

std::string Checker::root_text(const Context& ctx) {
    switch (ctx.root) {
        case Root::timer: return "a timer";
        case Root::pin: return "a rule for pin " + bt(ctx.source);
        case Root::message: return "a rule for channel " + bt(ctx.source);
    }
    return {};
}

std::string Checker::where_text(const Where& w, const Context& ctx) {
    switch (w.kind) {
        case Where::Kind::root: return root_text(ctx);
        case Where::Kind::after: return "an `after` body";
        case Where::Kind::action: return "action " + bt(w.action);
    }
    return {};
}

void Checker::context_error(Kind k, Span s, const Context& ctx) {
    const std::string verb = chain_.empty() ? " in " : " run from ";
    std::string message;
    if (k == Kind::misplaced_ack) {
        if (ctx.root == Root::message && ctx.in_after)
            message = "`ack`" + verb + "an `after` body, which runs after the reply has gone out";
        else
            message = "`ack`" + verb + root_text(ctx) + ", which has no message to acknowledge";
    } else if (k == Kind::misplaced_value) {
        message = "`value`" + verb + root_text(ctx) + ", which has no message or pin level";
    } else {
        message = "`tick`" + verb + root_text(ctx) + ", outside any timer";
    }
    auto& d = error(k, s, std::move(message));
    for (const Frame& f : chain_)
        d.notes.push_back({f.call, "action " + bt(f.action) + " is run from " + where_text(f.caller, ctx) + " here"});
    if (k == Kind::misplaced_ack && ctx.root == Root::message && ctx.in_after)
        d.notes.push_back({std::nullopt, "the reply goes out at the first `ack`, or as `n/a` when the rule's body ends"});
}

void Checker::context_expr(const Expr& e, const Context& ctx) {
    switch (e.kind) {
        case Expr::Kind::value:
            if (ctx.root == Root::timer) context_error(Kind::misplaced_value, e.span, ctx);
            return;
        case Expr::Kind::tick:
            if (ctx.root != Root::timer) context_error(Kind::misplaced_tick, e.span, ctx);
            return;
        case Expr::Kind::text:
        case Expr::Kind::number:
        case Expr::Kind::name:
            return;
        default:
            for (const Expr& o : e.operands) context_expr(o, ctx);
    }
}

// Walks action `a` (a global index) as run by the call at `call`, in `ctx`.
void Checker::run_action(int index, int a, Span call, const Context& ctx, Where here) {
    const auto g = static_cast<std::size_t>(a);
    // Contexts that lead to the same diagnostics are walked once per action:
    // 0 may ack, 1 may not ack (pin rules, `after` bodies), 2 timers.
    const bool ack_ok = ctx.root == Root::message && !ctx.in_after;
    const unsigned cls = ack_ok ? 0 : ctx.root == Root::timer ? 2 : 1;
    if (action_ctx_seen_[g] & (1u << cls)) return;
    if (action_on_chain_[g]) return;  // recursion, reported on its own
    const Action& action = *actions_[g];
    action_ctx_seen_[g] |= static_cast<std::uint8_t>(1u << cls);
    action_on_chain_[g] = 1;
    chain_.push_back({call, here, action.name.name});
    context_stmts(index, action.body, ctx, Where{Where::Kind::action, action.name.name});
    chain_.pop_back();
    action_on_chain_[g] = 0;
}

void Checker::context_stmts(int index, const std::vector<Stmt>& body, const Context& ctx, Where here) {
    // Bodies nest at most max_nesting deep through every chain of calls, or that is
    // reported (check_depth); a walk that would go deeper stops here.
    if (context_depth_ >= max_nesting) return;
    ++context_depth_;
    for (const Stmt& s : body) {
        switch (s.kind) {
            case Stmt::Kind::assign:
            case Stmt::Kind::send:
            case Stmt::Kind::log:
                context_expr(s.expr, ctx);
                break;
            case Stmt::Kind::ack:
                if (ctx.root != Root::message || ctx.in_after) context_error(Kind::misplaced_ack, s.span, ctx);
                context_expr(s.expr, ctx);
                break;
            case Stmt::Kind::toggle:
            case Stmt::Kind::cancel:
                break;
            case Stmt::Kind::after: {
                Context inner = ctx;
                inner.in_after = true;
                context_stmts(index, s.body, inner, Where{Where::Kind::after, {}});
                break;
            }
            case Stmt::Kind::repeat:
                context_stmts(index, s.body, ctx, here);
                break;
            case Stmt::Kind::if_:
                for (const Branch& b : s.branches) {
                    if (b.condition) context_expr(*b.condition, ctx);
                    context_stmts(index, b.body, ctx, here);
                }
                break;
            case Stmt::Kind::call:
                if (const Names* names = find(index, s.target.name); names && names->action >= 0)
                    run_action(index, static_cast<int>(nodes_[static_cast<std::size_t>(index)].action_base) + names->action,
                               s.target.span, ctx, here);
                break;
        }
    }
    --context_depth_;
}

// ---------------------------------------------------------------------------
// how deep bodies run: a statement is one level, the body of a block or of an
// action it runs one level below it (see max_nesting)

// The levels `s` runs, capped at max_nesting + 1 (all that matters is whether it is more).
int Checker::stmt_depth(int index, const Stmt& s) const {
    int below = 0;
    if (s.kind == Stmt::Kind::after || s.kind == Stmt::Kind::repeat) {
        below = body_depth(index, s.body);
    } else if (s.kind == Stmt::Kind::if_) {
        for (const Branch& b : s.branches) below = std::max(below, body_depth(index, b.body));
    } else if (s.kind == Stmt::Kind::call) {
        if (const Names* names = find(index, s.target.name); names && names->action >= 0)
            below = action_depth_[nodes_[static_cast<std::size_t>(index)].action_base + static_cast<std::size_t>(names->action)];
    }
    return std::min(1 + below, max_nesting + 1);
}

// Recurses once per nested block: the parser keeps that within max_nesting.
int Checker::body_depth(int index, const std::vector<Stmt>& body) const {
    int depth = 0;
    for (const Stmt& s : body) depth = std::max(depth, stmt_depth(index, s));
    return depth;
}

// action_depth_ and action_acks_ of every action, each worked out after the actions it runs
// (depth-first, without recursion: a chain of calls may be as long as the file).
// An action on a cycle of calls counts the call that closes it as 0 (it is
// reported as recursive).
void Checker::measure_actions() {
    const std::size_t count = actions_.size();
    action_depth_.assign(count, 0);
    action_acks_.assign(count, 0);
    if (count == 0) return;
    // Each action's callees: first[a] .. first[a + 1] in `callees`.
    std::vector<std::size_t> first(count + 1, 0);
    std::vector<int> callees;
    for (std::size_t a = 0; a < count; ++a) {
        const int index = action_node_[a];
        const std::size_t base = nodes_[static_cast<std::size_t>(index)].action_base;
        auto collect = [&](auto& self, const std::vector<Stmt>& body) -> void {
            for (const Stmt& s : body) {
                if (s.kind == Stmt::Kind::after || s.kind == Stmt::Kind::repeat) self(self, s.body);
                for (const Branch& b : s.branches) self(self, b.body);
                if (s.kind != Stmt::Kind::call) continue;
                if (const Names* names = find(index, s.target.name); names && names->action >= 0)
                    callees.push_back(static_cast<int>(base) + names->action);
            }
        };
        collect(collect, actions_[a]->body);
        first[a + 1] = callees.size();
    }
    std::vector<std::uint8_t> color(count, white);
    std::vector<std::pair<std::size_t, std::size_t>> stack;  // (action, next callee)
    for (std::size_t start = 0; start < count; ++start) {
        if (color[start] != white) continue;
        stack.push_back({start, first[start]});
        color[start] = on_stack;
        while (!stack.empty()) {
            auto& [a, next] = stack.back();
            if (next < first[a + 1]) {
                const auto callee = static_cast<std::size_t>(callees[next++]);
                if (color[callee] == white) {
                    color[callee] = on_stack;
                    stack.push_back({callee, first[callee]});
                }
                continue;
            }
            action_depth_[a] = body_depth(action_node_[a], actions_[a]->body);
            action_acks_[a] = static_cast<std::uint8_t>(body_acks(action_node_[a], actions_[a]->body));
            color[a] = done;
            stack.pop_back();
        }
    }
}

// Reports where running `body`, the body of the rule or timer at `root`, goes
// deeper than max_nesting: the first statement past it on the deepest path.
void Checker::check_depth(int index, const std::vector<Stmt>& body, Span root, const char* what) {
    if (body_depth(index, body) <= max_nesting) return;
    const std::vector<Stmt>* at = &body;
    for (int level = 1;; ++level) {
        const Stmt* deepest = nullptr;
        int most = 0;
        for (const Stmt& s : *at) {
            if (const int d = stmt_depth(index, s); d > most) {
                most = d;
                deepest = &s;
            }
        }
        if (!deepest) return;
        if (level > max_nesting) {
            // The statement's first word: a block's span runs to its end.
            Span span = deepest->kind == Stmt::Kind::call ? deepest->target.span : deepest->span;
            if (deepest->kind == Stmt::Kind::repeat || deepest->kind == Stmt::Kind::after)
                span.end = span.begin + (deepest->kind == Stmt::Kind::repeat ? 6 : 5);
            if (deepest->kind == Stmt::Kind::if_) span.end = span.begin + 2;
            error(Kind::too_deep, span,
                  "nested too deeply: more than " + std::to_string(max_nesting) +
                      " levels of statements, counting the bodies of the actions run")
                .notes.push_back({root, std::string("counting from this ") + what + ", through the actions it runs"});
            return;
        }
        if (deepest->kind == Stmt::Kind::call) {
            const Names* names = find(index, deepest->target.name);
            if (!names || names->action < 0) return;  // not so: only a run action is deeper than 1
            at = &actions_[nodes_[static_cast<std::size_t>(index)].action_base + static_cast<std::size_t>(names->action)]->body;
        } else if (deepest->kind == Stmt::Kind::if_) {
            int branch_most = -1;  // the deepest branch
            for (const Branch& b : deepest->branches) {
                if (const int d = body_depth(index, b.body); d > branch_most) {
                    branch_most = d;
                    at = &b.body;
                }
            }
        } else {
            at = &deepest->body;
        }
    }
}

// ---------------------------------------------------------------------------
// `ack`s of one firing: the first one replies, any other is ignored. Two `ack`s on
// one way through a body (an action run counting with its own, an `ack` in `repeat N`
// with N over 1, an `ack` after an `if` one of whose branches acks) are one too many.
// An `if` whose branches each ack once acks once: each way through it replies once.

// How many times running `body` acks on its way that acks most: 0, 1, or 2 for more
// than once. An `after` body does not count: it runs after the reply (an `ack` there
// is misplaced).
int Checker::body_acks(int index, const std::vector<Stmt>& body) const {
    int acks = 0;
    for (const Stmt& s : body) {
        if (s.kind == Stmt::Kind::ack) {
            ++acks;
        } else if (s.kind == Stmt::Kind::repeat) {
            const int inner = body_acks(index, s.body);
            acks += s.count.value > 1 ? 2 * inner : inner;
        } else if (s.kind == Stmt::Kind::if_) {
            int most = 0;
            for (const Branch& b : s.branches) most = std::max(most, body_acks(index, b.body));
            acks += most;
        } else if (s.kind == Stmt::Kind::call) {
            if (const Names* names = find(index, s.target.name); names && names->action >= 0)
                acks += action_acks_[nodes_[static_cast<std::size_t>(index)].action_base + static_cast<std::size_t>(names->action)];
        }
        if (acks >= 2) return 2;
    }
    return acks;
}

void Checker::ignored_ack(Span at, std::string message, const AckSite& first) {
    auto& d = warning(Kind::ignored_ack, at, std::move(message));
    if (first.span.begin == at.begin && first.span.file == at.file) return;
    d.notes.push_back({first.span, first.action.empty() ? "the reply goes out at this `ack`"
                                                        : "the reply goes out at the first `ack` of action " +
                                                              bt(first.action) + ", run here"});
}

// Walks a body of a message rule, or of an action run from one, in the order it
// runs; `first` is the firing's first `ack` so far.
void Checker::check_acks(int index, const std::vector<Stmt>& body, std::optional<AckSite>& first) {
    for (const Stmt& s : body) {
        switch (s.kind) {
            case Stmt::Kind::ack:
                if (first && first->in_branch)
                    ignored_ack(s.span, "this `ack` is ignored where a branch of the `if` before it has replied", *first);
                else if (first)
                    ignored_ack(s.span, "this `ack` is ignored: the firing has already replied", *first);
                else
                    first = AckSite{s.span, {}};
                break;
            case Stmt::Kind::call: {
                const Names* names = find(index, s.target.name);
                if (!names || names->action < 0) break;
                const std::size_t g = nodes_[static_cast<std::size_t>(index)].action_base + static_cast<std::size_t>(names->action);
                if (action_acks_[g] == 0) break;
                if (first)
                    ignored_ack(s.target.span,
                                "action " + bt(s.target.name) + " acknowledges, but the firing has already replied" +
                                    (first->in_branch ? " (in a branch of the `if` before it)" : "") +
                                    ": its `ack` is ignored",
                                *first);
                else
                    first = AckSite{s.target.span, s.target.name};
                break;
            }
            case Stmt::Kind::repeat: {
                const bool replied = first.has_value();
                check_acks(index, s.body, first);
                if (replied || !first || s.count.value < 2) break;
                // The first `ack` is in this body: every round after the first runs it again.
                const std::string what = first->action.empty() ? "this `ack` runs" : "action " + bt(first->action) + " acknowledges";
                ignored_ack(first->span,
                            what + " in each of the " + std::to_string(s.count.value) +
                                " rounds of `repeat`: only the first round replies, the others' `ack` is ignored",
                            *first);
                break;
            }
            case Stmt::Kind::if_:
                check_branch_acks(index, s, first);
                break;
            default:
                break;
        }
    }
}

// Each branch is walked from what replied before the `if`. After it, the first `ack` of
// the branches (if none replied before) is the reply on that branch's way: an `ack` later
// is ignored there.
void Checker::check_branch_acks(int index, const Stmt& s, std::optional<AckSite>& first) {
    std::optional<AckSite> after = first;
    for (const Branch& b : s.branches) {
        std::optional<AckSite> way = first;
        check_acks(index, b.body, way);
        if (!after && way) {
            after = way;
            after->in_branch = true;
        }
    }
    first = after;
}

// ---------------------------------------------------------------------------
// actions that run themselves

void Checker::check_recursion() {
    auto name = [&](int action) { return std::string_view(actions_[static_cast<std::size_t>(action)]->name.name); };
    find_cycles(actions_.size(), actions_.size(), calls_, [&](const std::vector<const Edge*>& cycle) {
        // The cycle runs from `self` through the actions it calls back to `self`.
        const std::string_view self = name(cycle.front()->from);
        std::string message = "action " + bt(self) + " runs itself";
        if (cycle.size() > 1) {
            std::string path(self);
            for (const Edge* call : cycle) path += " -> " + std::string(name(call->to));
            message += ": " + bt(path);
        }
        auto& d = error(Kind::recursive_action, cycle.back()->span, std::move(message));
        for (std::size_t k = 0; k + 1 < cycle.size(); ++k)
            d.notes.push_back({cycle[k]->span, "action " + bt(name(cycle[k]->from)) + " runs " + bt(name(cycle[k]->to)) + " here"});
        d.notes.push_back({std::nullopt, "an action cannot run itself, directly or through others; "
                                         "for something that repeats, use `every`"});
    });
}

// ---------------------------------------------------------------------------
// messages that never stop

std::string Checker::vertex_name(int v) const {
    const auto c = static_cast<std::size_t>(v);
    return node(channel_node_[c]).name.name + "/" + std::string(channel_names_[c]);
}

// A cycle of sends outside `after`, through rules and the actions they run, sends
// messages without end. One warning per cycle found, at the cycle's last send.
void Checker::check_storms() {
    find_cycles(action_vertex_base_ + actions_.size(), action_vertex_base_, edges_, [&](std::vector<const Edge*> cycle) {
        // Report at the last send; rotate the cycle so that it comes last.
        std::size_t last = cycle.size();
        for (std::size_t k = cycle.size(); k-- > 0;) {
            if (cycle[k]->is_send) {
                last = k;
                break;
            }
        }
        if (last == cycle.size()) return;  // calls only: a recursive action, reported on its own
        std::rotate(cycle.begin(), cycle.begin() + static_cast<std::ptrdiff_t>(last + 1), cycle.end());
        const Edge& reported = *cycle.back();
        std::string path = vertex_name(reported.to);
        std::vector<Note> notes;
        int channel = reported.to;  // the channel whose message leads to the current edge
        for (const Edge* edge : cycle) {
            if (!edge->is_send) continue;
            path += " -> " + vertex_name(edge->to);
            if (edge != &reported)
                notes.push_back({edge->span, "a message on " + bt(vertex_name(channel)) + " sends to " +
                                                 bt(vertex_name(edge->to)) + " here"});
            channel = edge->to;
        }
        auto& d = warning(Kind::message_storm, reported.span, "messages go round without end: " + bt(path));
        for (auto& note : notes) d.notes.push_back(std::move(note));
        d.notes.push_back({std::nullopt, "each message makes the next, with no delay; a send inside "
                                         "`after DURATION -> ...` would pace them"});
    });
}

}  // namespace meshrun::dsl::check_detail
