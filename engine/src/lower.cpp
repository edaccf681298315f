// Lowering: checked AST -> event graph. Every name becomes the index the checker
// resolved it to (dsl::Ref), so neither this nor the runtime looks a name up, and
// the runtime never walks the AST.
#include <stdexcept>

#include <fmt/format.h>

#include "meshrun/engine/graph.hpp"

namespace meshrun::engine {

namespace {

using dsl::BinOp;

// A text as a string literal of the language would write it.
std::string quoted(std::string_view text) {
    std::string out = "\"";
    for (char c : text) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '{': out += "\\{"; break;
            case '}': out += "\\}"; break;
            default: out += c;
        }
    }
    return out + '"';
}

// The index a use of a name refers to, as the checker resolved it (dsl::Ref).
int resolved(const dsl::Ref& ref, dsl::Ref::Kind kind, std::string_view name) {
    if (ref.kind != kind)
        throw std::logic_error(fmt::format("lowering a program that did not check clean: `{}` is not resolved", name));
    return ref.index;
}

class Lowering {
public:
    // An expression without names, outside any node (a test's value).
    static Expr alone(const dsl::Expr& e) { return Lowering{}.expr(e); }

    void node(const dsl::Node& in, Node& out) {
        out_ = &out;
        out.name = in.name.name;
        if (in.address) {
            out.host = in.address->host;
            if (in.address->port) out.port = static_cast<std::uint16_t>(in.address->port->value);
        }
        // Pins and actions keep the checker's numbering: their place in the node.
        for (const dsl::Pin& p : in.pins) {
            Pin pin;
            pin.name = p.name.name;
            pin.span = p.span;
            pin.chip = p.chip;
            pin.line = p.line;
            pin.output = p.direction == drivers::Direction::output;
            pin.active_low = p.active_low;
            pin.bias = p.bias;
            if (p.debounce) pin.debounce = Micros(p.debounce->micros);
            if (p.initial) pin.initial = static_cast<int>(p.initial->value);
            out.pins.push_back(std::move(pin));
        }
        // Variables keep the checker's numbering too; named delays the order the checker gave them.
        for (const dsl::Var& v : in.vars) out.vars.push_back(Var{v.name.name, v.initial.literal_text(), v.span});
        for (const dsl::Ident& d : in.delays) out.delays.push_back(NamedDelay{d.name, d.span});
        // Actions first: bodies may call actions declared later.
        for (const dsl::Action& a : in.actions) out.actions.push_back(Action{a.name.name, {}});
        for (std::size_t i = 0; i < in.actions.size(); ++i) out.actions[i].body = ops(in.actions[i].body);

        // Sources: channels, then pins, each in the order of its first rule; then timers. Rules of
        // one source in file order.
        std::vector<int> source_of[2];  // [0] by channel, [1] by pin: the index in out.sources, or -1
        for (int pass = 0; pass < 2; ++pass) {
            const auto kind = pass == 0 ? dsl::Ref::Kind::channel : dsl::Ref::Kind::pin;
            for (const dsl::Rule& r : in.rules) {
                if (r.source.ref.kind != kind) continue;
                const auto at = static_cast<std::size_t>(resolved(r.source.ref, kind, r.source.name));
                std::vector<int>& slots = source_of[pass];
                if (slots.size() <= at) slots.resize(at + 1, -1);
                if (slots[at] < 0) {
                    slots[at] = static_cast<int>(out.sources.size());
                    Source s;
                    s.kind = pass == 0 ? Source::Kind::channel : Source::Kind::pin;
                    s.name = r.source.name;
                    if (pass == 1) s.pin = static_cast<int>(at);
                    out.sources.push_back(std::move(s));
                }
                out.sources[static_cast<std::size_t>(slots[at])].rules.push_back(rule(r));
            }
        }
        for (const dsl::Timer& t : in.timers) {
            Source s;
            s.kind = Source::Kind::timer;
            s.period = Micros(t.period.micros);
            if (t.times) s.times = t.times->value;
            const std::string period = dsl::format_duration(t.period.micros);
            s.name = s.times ? fmt::format("every {} {} times", period, *s.times) : fmt::format("every {}", period);
            Rule r;
            r.body = ops(t.body);
            r.span = t.span;
            r.label = s.name;
            s.rules.push_back(std::move(r));
            out.sources.push_back(std::move(s));
        }
    }

private:
    Rule rule(const dsl::Rule& r) {
        Rule out;
        out.span = r.span;
        out.label = "on " + r.source.name;
        if (r.pattern) {
            out.pattern = r.pattern->literal_text();
            // As written: a string pattern keeps its quotes (`on mode "auto"`), a number is bare.
            out.label += ' ';
            out.label += r.pattern->kind == dsl::Expr::Kind::string ? quoted(*out.pattern) : *out.pattern;
        }
        if (r.guard) {
            out.guard = expr(*r.guard);
            out.label += " when ...";
        }
        out.body = ops(r.body);
        return out;
    }

    std::vector<Op> ops(const std::vector<dsl::Stmt>& body) {
        std::vector<Op> out;
        out.reserve(body.size());
        for (const dsl::Stmt& s : body) out.push_back(op(s));
        return out;
    }

    Op op(const dsl::Stmt& s) {
        Op o;
        o.span = s.span;
        using K = dsl::Stmt::Kind;
        switch (s.kind) {
            case K::assign:
                if (s.target.ref.kind == dsl::Ref::Kind::var) {
                    o.kind = Op::Kind::set;
                    o.var = s.target.ref.index;
                } else {
                    o.kind = Op::Kind::write;
                    o.pin = resolved(s.target.ref, dsl::Ref::Kind::pin, s.target.name);
                }
                o.expr = expr(s.expr);
                break;
            case K::toggle:
                o.kind = Op::Kind::toggle;
                o.pin = resolved(s.target.ref, dsl::Ref::Kind::pin, s.target.name);
                break;
            case K::send:
                o.kind = Op::Kind::send;
                o.expr = expr(s.expr);
                o.edge = edge(resolved(s.node.ref, dsl::Ref::Kind::node, s.node.name), s.channel.name);
                break;
            case K::ack:
                o.kind = Op::Kind::ack;
                o.expr = expr(s.expr);
                break;
            case K::log:
                o.kind = Op::Kind::log;
                o.expr = expr(s.expr);
                break;
            case K::after:
                o.kind = Op::Kind::after;
                o.delay = Micros(s.delay.micros);
                if (!s.target.name.empty()) o.named = resolved(s.target.ref, dsl::Ref::Kind::delay, s.target.name);
                o.body = ops(s.body);
                break;
            case K::cancel:
                o.kind = Op::Kind::cancel;
                o.named = resolved(s.target.ref, dsl::Ref::Kind::delay, s.target.name);
                break;
            case K::repeat:
                o.kind = Op::Kind::repeat;
                o.count = s.count.value;
                o.body = ops(s.body);
                break;
            case K::call:
                o.kind = Op::Kind::call;
                o.action = resolved(s.target.ref, dsl::Ref::Kind::action, s.target.name);
                break;
            case K::if_:
                o.kind = Op::Kind::if_;
                o.branches.reserve(s.branches.size());
                for (const dsl::Branch& b : s.branches) {
                    Branch& out = o.branches.emplace_back();
                    if (b.condition) out.condition = expr(*b.condition);
                    out.body = ops(b.body);
                    out.keyword = !b.condition ? "else" : o.branches.size() == 1 ? "if" : "else if";
                    out.span = b.keyword;
                }
                break;
        }
        return o;
    }

    int edge(int target, const std::string& channel) {
        auto& edges = out_->edges;
        for (std::size_t i = 0; i < edges.size(); ++i)
            if (edges[i].node == target && edges[i].channel == channel) return static_cast<int>(i);
        edges.push_back(Edge{target, channel});
        return static_cast<int>(edges.size() - 1);
    }

    Expr expr(const dsl::Expr& e) {
        Expr out;
        using K = dsl::Expr::Kind;
        switch (e.kind) {
            case K::number:
            case K::text:
                out.kind = Expr::Kind::text;
                out.text = e.text;
                break;
            case K::string:
                if (!e.has_interpolation()) {
                    out.kind = Expr::Kind::text;
                    out.text = e.literal_text();
                } else {
                    out.kind = Expr::Kind::interpolation;
                    for (const auto& part : e.operands) out.args.push_back(expr(part));
                }
                break;
            case K::name:
                if (e.ref.kind == dsl::Ref::Kind::var) {
                    out.kind = Expr::Kind::var;
                    out.var = e.ref.index;
                } else {
                    out.kind = Expr::Kind::pin;
                    out.pin = resolved(e.ref, dsl::Ref::Kind::pin, e.text);
                }
                break;
            case K::value: out.kind = Expr::Kind::value; break;
            case K::tick: out.kind = Expr::Kind::tick; break;
            case K::random:
            case K::not_:
            case K::neg:
                out.kind = e.kind == K::random ? Expr::Kind::random : e.kind == K::not_ ? Expr::Kind::not_ : Expr::Kind::neg;
                out.args.push_back(expr(e.operands.at(0)));
                break;
            case K::binary:
                out.kind = Expr::Kind::binary;
                out.op = e.op;
                out.args.push_back(expr(e.operands.at(0)));
                out.args.push_back(expr(e.operands.at(1)));
                break;
        }
        return out;
    }

    Node* out_ = nullptr;
};

}  // namespace

const Source* Node::channel(std::string_view channel_name) const {
    for (const auto& s : sources)
        if (s.kind == Source::Kind::channel && s.name == channel_name) return &s;
    return nullptr;
}

int Graph::find(std::string_view node) const {
    for (std::size_t i = 0; i < nodes.size(); ++i)
        if (nodes[i].name == node) return static_cast<int>(i);
    return -1;
}

Expr lower_expr(const dsl::Expr& e) { return Lowering::alone(e); }

Graph lower(const dsl::Program& program) {
    Graph graph;
    graph.name = program.mesh_name ? program.mesh_name->name : "mesh";
    for (const dsl::Ident& secret : program.secrets) graph.secrets.push_back({secret.name, secret.span});
    for (const auto& d : program.discovery) graph.discovery.push_back({d.url, d.span});
    // The checker allows one `tls` and one `limits` item, each limit once, in its unit and range.
    if (!program.tls.empty()) {
        const dsl::Tls& in = program.tls.front();
        Tls tls;
        tls.span = in.span;
        for (const dsl::Tls::File& f : in.files) {
            std::string& path = f.option == "cert" ? tls.cert : f.option == "key" ? tls.key : tls.ca;
            path = f.path;
        }
        graph.tls = std::move(tls);
    }
    if (!program.limits.empty()) {
        for (const dsl::Limit& l : program.limits.front().limits) {
            const std::string& name = l.name.name;
            const auto n = static_cast<std::size_t>(l.value);
            if (name == "message") {
                graph.limits.message = n;
            } else if (name == "connections") {
                graph.limits.connections = n;
            } else if (name == "handshake") {
                graph.limits.handshake = Micros(l.value);
            } else if (name == "idle") {
                graph.limits.idle = Micros(l.value);
            } else if (name == "outbox") {
                graph.limits.outbox = n;
            } else {
                throw std::logic_error(fmt::format("lowering a program that did not check clean: unknown limit `{}`", name));
            }
        }
    }
    for (const dsl::Test& t : program.tests) graph.tests.push_back({t.title, t.span});
    for (const dsl::Include& i : program.includes) graph.includes.push_back({i.path, i.span});
    graph.nodes.resize(program.nodes.size());
    Lowering lowering;
    for (std::size_t i = 0; i < program.nodes.size(); ++i) lowering.node(program.nodes[i], graph.nodes[i]);
    for (Node& node : graph.nodes) {
        int index = 0;
        for (Source& s : node.sources)
            for (Rule& r : s.rules) r.index = index++;
    }
    return graph;
}

}  // namespace meshrun::engine
