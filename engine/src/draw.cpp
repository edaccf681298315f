// Drawings of the event graph: Graphviz DOT and Mermaid.
//
// Both renderers draw the same picture, built once as a `Picture`: a cluster per
// node (labelled with its name, address and variables) holding one box per source
// (channel: box, input pin: cds / flag, timer: ellipse / stadium), one per rule and
// one per named delay (hexagon), an edge from each source to each of its rules, and
// an edge labelled `send` from a rule to the target channel of every `send` op the
// rule can run — directly, inside `repeat`, `after` and the branches of `if` (the
// label says which), and through the actions it calls. A rule (or timer) that starts
// a named delay has an edge to it labelled `after D`, one that cancels it a dashed
// edge labelled `cancel`, found the same way. Ids are derived from names only, so
// the output is stable from run to run and diffs well.
#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "meshrun/engine/graph.hpp"

namespace meshrun::engine {

namespace {

// ---- the picture, independent of the output format -------------------------

enum class Shape { channel, pin, timer, rule, delay, unhandled };

struct Box {
    std::string id;     // stable, e.g. `buzzer.ch.signal`, `buzzer.rule.1`
    std::string label;  // may hold '\n'
    Shape shape = Shape::rule;
};

struct Link {
    std::string from, to;
    std::string label;    // empty: a source -> rule edge
    bool dashed = false;  // a `cancel`
    bool operator==(const Link&) const = default;
};

struct Cluster {
    std::string id;     // the node's name
    std::string label;  // `buzzer\nlocalhost:8766`
    std::vector<Box> boxes;
    std::vector<Link> links;  // source -> rule, and rule -> named delay, inside the cluster
};

struct Picture {
    std::string name;
    std::vector<Cluster> clusters;
    std::vector<Link> sends;  // across clusters (or within one, for a send to itself)
};

std::string address(const Node& node) {
    if (node.port == 0) return node.host + ":0 (any free port)";  // `at :0`, with discovery
    if (node.port) return node.host + ":" + std::to_string(*node.port);
    return node.host.empty() ? "client" : node.host + " (client)";
}

std::string channel_id(const Node& node, std::string_view channel) {
    return node.name + ".ch." + std::string(channel);
}

std::string delay_name(const Node& node, int named) {
    return named >= 0 && static_cast<std::size_t>(named) < node.delays.size() ? node.delays[named].name : "?";
}

std::string delay_id(const Node& node, int named) { return node.name + ".delay." + delay_name(node, named); }

// ---- expressions, as the language writes them (for rule guards) -------------

// Binding levels, loosest first, as in the grammar: or, and, not, comparison, + -, unary minus.
int level(const Expr& e) {
    if (e.kind == Expr::Kind::not_) return 3;
    if (e.kind == Expr::Kind::neg) return 6;
    if (e.kind != Expr::Kind::binary) return 7;
    switch (e.op) {
        case dsl::BinOp::or_: return 1;
        case dsl::BinOp::and_: return 2;
        case dsl::BinOp::add:
        case dsl::BinOp::sub: return 5;
        default: return 4;
    }
}

const char* op_text(dsl::BinOp op) {
    switch (op) {
        case dsl::BinOp::or_: return "or";
        case dsl::BinOp::and_: return "and";
        case dsl::BinOp::eq: return "==";
        case dsl::BinOp::ne: return "!=";
        case dsl::BinOp::lt: return "<";
        case dsl::BinOp::le: return "<=";
        case dsl::BinOp::gt: return ">";
        case dsl::BinOp::ge: return ">=";
        case dsl::BinOp::add: return "+";
        case dsl::BinOp::sub: return "-";
    }
    return "?";
}

bool is_number(std::string_view s) {
    if (!s.empty() && s[0] == '-') s.remove_prefix(1);  // `-1.5` reads back as the same text
    std::size_t i = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == 0) return false;
    if (i == s.size()) return true;
    if (s[i] != '.' || i + 1 == s.size()) return false;
    for (++i; i < s.size(); ++i)
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    return true;
}

std::string string_piece(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\' || c == '{' || c == '}') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

std::string print(const Expr& e, const Node& node, int min_level);

std::string print_inner(const Expr& e, const Node& node) {
    switch (e.kind) {
        case Expr::Kind::text: return is_number(e.text) ? e.text : "\"" + string_piece(e.text) + "\"";
        case Expr::Kind::interpolation: {
            std::string out = "\"";
            for (const Expr& part : e.args) {
                if (part.kind == Expr::Kind::text) {
                    out += string_piece(part.text);
                } else {  // appended piece by piece: `"{" + ... + "}"` trips GCC 12's -Wrestrict here
                    out += '{';
                    out += print(part, node, 0);
                    out += '}';
                }
            }
            return out + "\"";
        }
        case Expr::Kind::pin:
            return e.pin >= 0 && static_cast<std::size_t>(e.pin) < node.pins.size() ? node.pins[e.pin].name : "?";
        case Expr::Kind::var:
            return e.var >= 0 && static_cast<std::size_t>(e.var) < node.vars.size() ? node.vars[e.var].name : "?";
        case Expr::Kind::value: return "value";
        case Expr::Kind::tick: return "tick";
        case Expr::Kind::random: return "random(" + (e.args.empty() ? "" : print(e.args[0], node, 0)) + ")";
        case Expr::Kind::not_: return "not " + (e.args.empty() ? "" : print(e.args[0], node, 3));
        case Expr::Kind::neg: return "-" + (e.args.empty() ? "" : print(e.args[0], node, 6));
        case Expr::Kind::binary: {
            if (e.args.size() != 2) return "?";
            const int l = level(e);
            // Left-associative chains (or, and, + -); a comparison takes sums on both sides.
            const int left = l == 4 ? 5 : l;
            const int right = l + 1;
            return print(e.args[0], node, left) + " " + op_text(e.op) + " " + print(e.args[1], node, right);
        }
    }
    return "?";
}

std::string print(const Expr& e, const Node& node, int min_level) {
    std::string s = print_inner(e, node);
    return level(e) < min_level ? "(" + s + ")" : s;
}

std::string rule_label(const Rule& rule, const Node& node) {
    constexpr std::string_view elided = " when ...";
    std::string label = rule.label;
    if (rule.guard && label.size() >= elided.size() &&
        label.compare(label.size() - elided.size(), elided.size(), elided) == 0) {
        label.resize(label.size() - elided.size());
        label += " when " + print(*rule.guard, node, 0);
    }
    return label;
}

// ---- sends, and named delays started and cancelled, a rule can run -------------

struct OpWalker {
    const Graph& graph;
    const Node& node;
    const std::string& from;
    std::vector<Link>& out;     // sends, across clusters
    std::vector<Link>& inside;  // to named delays, in the node's cluster
    // Actions already walked from this rule: each is drawn once, however often it is called, so
    // that actions that call the next one twice cannot make the walk exponential (and a recursion,
    // which the checker forbids, could not loop).
    std::vector<bool> walked = std::vector<bool>(node.actions.size());

    void walk(const std::vector<Op>& body, std::vector<std::string>& context) {
        for (const Op& op : body) {
            switch (op.kind) {
                case Op::Kind::send: send(op, context); break;
                case Op::Kind::repeat:
                    context.push_back(op.count == 1 ? "once" : std::to_string(op.count) + " times");
                    walk(op.body, context);
                    context.pop_back();
                    break;
                case Op::Kind::after: {
                    std::string after = "after " + dsl::format_duration(static_cast<std::uint64_t>(op.delay.count()));
                    if (op.named >= 0) {
                        link(delay_id(node, op.named), with(after, context), false);
                        after += " as " + delay_name(node, op.named);
                    }
                    context.push_back(std::move(after));
                    walk(op.body, context);
                    context.pop_back();
                    break;
                }
                case Op::Kind::cancel: link(delay_id(node, op.named), with("cancel", context), true); break;
                case Op::Kind::if_:
                    // A send in a branch is labelled with the branch: `send (if lamp == 1)`, `send (else)`.
                    for (const Branch& b : op.branches) {
                        context.push_back(b.condition ? b.keyword + " " + print(*b.condition, node, 0) : b.keyword);
                        walk(b.body, context);
                        context.pop_back();
                    }
                    break;
                case Op::Kind::call: {
                    if (op.action < 0 || static_cast<std::size_t>(op.action) >= node.actions.size()) break;
                    if (walked[static_cast<std::size_t>(op.action)]) break;
                    walked[static_cast<std::size_t>(op.action)] = true;
                    context.push_back("via " + node.actions[op.action].name);
                    walk(node.actions[op.action].body, context);
                    context.pop_back();
                    break;
                }
                default: break;
            }
        }
    }

    // `send (if lamp == 1, after 5m)`: what the op is, then where it is.
    static std::string with(std::string label, const std::vector<std::string>& context) {
        for (std::size_t i = 0; i < context.size(); ++i) label += (i == 0 ? " (" : ", ") + context[i];
        if (!context.empty()) label += ")";
        return label;
    }

    void send(const Op& op, const std::vector<std::string>& context) {
        if (op.edge < 0 || static_cast<std::size_t>(op.edge) >= node.edges.size()) return;
        const Edge& edge = node.edges[op.edge];
        if (edge.node < 0 || static_cast<std::size_t>(edge.node) >= graph.nodes.size()) return;
        out.push_back(Link{from, channel_id(graph.nodes[edge.node], edge.channel), with("send", context)});
    }

    // An edge to a named delay, once however often the rule starts (or cancels) it alike.
    void link(std::string to, std::string label, bool dashed) {
        Link l{from, std::move(to), std::move(label), dashed};
        if (std::find(inside.begin(), inside.end(), l) == inside.end()) inside.push_back(std::move(l));
    }
};

// A variable's line in its node's label: `var visits = 0`.
std::string var_line(const Var& v, const Node& node) {
    Expr initial;
    initial.text = v.initial;
    return "var " + v.name + " = " + print_inner(initial, node);
}

Picture picture(const Graph& graph) {
    Picture pic;
    pic.name = graph.name;

    // Channels that are sent to but that no rule listens on: drawn dashed in their node,
    // in order of first use, so that every send has somewhere to land.
    std::vector<std::vector<std::string>> unhandled(graph.nodes.size());
    for (const Node& node : graph.nodes) {
        for (const Edge& edge : node.edges) {
            if (edge.node < 0 || static_cast<std::size_t>(edge.node) >= graph.nodes.size()) continue;
            auto& list = unhandled[edge.node];
            if (graph.nodes[edge.node].channel(edge.channel) == nullptr &&
                std::find(list.begin(), list.end(), edge.channel) == list.end())
                list.push_back(edge.channel);
        }
    }

    for (std::size_t n = 0; n < graph.nodes.size(); ++n) {
        const Node& node = graph.nodes[n];
        Cluster cluster;
        cluster.id = node.name;
        cluster.label = node.name + "\n" + address(node);
        for (const Var& v : node.vars) {
            cluster.label += '\n';
            cluster.label += var_line(v, node);
        }
        std::vector<Link> to_delays;  // drawn after every box of the cluster
        int rules = 0, timers = 0;
        for (const Source& source : node.sources) {
            Box box;
            switch (source.kind) {
                case Source::Kind::channel:
                    box = Box{channel_id(node, source.name), source.name, Shape::channel};
                    break;
                case Source::Kind::pin:
                    box = Box{node.name + ".pin." + source.name, source.name, Shape::pin};
                    break;
                case Source::Kind::timer:
                    box = Box{node.name + ".timer." + std::to_string(++timers), source.name, Shape::timer};
                    break;
            }
            cluster.boxes.push_back(box);
            if (source.kind == Source::Kind::timer) {
                // A timer has one body, and no rule of its own in the language: its sends leave the timer.
                std::vector<std::string> context;
                for (const Rule& rule : source.rules)
                    OpWalker{graph, node, box.id, pic.sends, to_delays}.walk(rule.body, context);
                continue;
            }
            for (const Rule& rule : source.rules) {
                Box r{node.name + ".rule." + std::to_string(++rules), rule_label(rule, node), Shape::rule};
                cluster.links.push_back(Link{box.id, r.id, {}});
                std::vector<std::string> context;
                OpWalker{graph, node, r.id, pic.sends, to_delays}.walk(rule.body, context);
                cluster.boxes.push_back(std::move(r));
            }
        }
        for (std::size_t d = 0; d < node.delays.size(); ++d)
            cluster.boxes.push_back(Box{delay_id(node, static_cast<int>(d)), node.delays[d].name + "\n(named delay)", Shape::delay});
        for (const std::string& channel : unhandled[n])
            cluster.boxes.push_back(Box{channel_id(node, channel), channel + "\n(no rule)", Shape::unhandled});
        cluster.links.insert(cluster.links.end(), to_delays.begin(), to_delays.end());
        pic.clusters.push_back(std::move(cluster));
    }
    return pic;
}

// ---- Graphviz DOT ------------------------------------------------------------

std::string dot_quote(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': break;
            default: out += c;
        }
    }
    return out + "\"";
}

const char* dot_style(Shape shape) {
    switch (shape) {
        case Shape::channel: return "shape=box, style=filled, fillcolor=\"#e3f2fd\", color=\"#1565c0\"";
        case Shape::pin: return "shape=cds, style=filled, fillcolor=\"#fff3e0\", color=\"#ef6c00\"";
        case Shape::timer: return "shape=ellipse, style=filled, fillcolor=\"#e8f5e9\", color=\"#2e7d32\"";
        case Shape::rule: return "shape=box, style=rounded, color=\"#616161\"";
        case Shape::delay: return "shape=hexagon, style=filled, fillcolor=\"#f3e5f5\", color=\"#6a1b9a\"";
        case Shape::unhandled: return "shape=box, style=dashed, color=\"#1565c0\"";
    }
    return "";
}

// ---- Mermaid -----------------------------------------------------------------

// Inside a quoted Mermaid label: entity codes for what Mermaid or HTML would read.
std::string mermaid_quote(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        switch (c) {
            case '"': out += "#quot;"; break;
            case '#': out += "#35;"; break;
            case '&': out += "#amp;"; break;
            case '<': out += "#lt;"; break;
            case '>': out += "#gt;"; break;
            case '`': out += "#96;"; break;
            case '\n': out += "<br/>"; break;
            case '\r': break;
            default: out += c;
        }
    }
    return out + "\"";
}

// Maps the picture's ids to Mermaid ids: [A-Za-z0-9_] only, never a keyword, never twice.
class MermaidIds {
public:
    const std::string& operator()(const std::string& id) {
        auto it = ids_.find(id);
        if (it != ids_.end()) return it->second;
        std::string base;
        for (char c : id) base += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
        if (base.empty() || std::isdigit(static_cast<unsigned char>(base[0]))) base = "n_" + base;
        std::string lower = base;
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        static const std::set<std::string> keywords = {
            "end", "graph", "flowchart", "subgraph", "style", "linkstyle", "classdef", "class", "click",
            "call", "href", "direction", "default", "interpolate", "tb", "td", "bt", "rl", "lr"};
        if (keywords.count(lower)) base += "_node";
        std::string candidate = base;
        for (int i = 2; used_.count(candidate); ++i) candidate = base + "_" + std::to_string(i);
        used_.insert(candidate);
        return ids_.emplace(id, candidate).first->second;
    }

private:
    std::map<std::string, std::string> ids_;
    std::set<std::string> used_;
};

std::string mermaid_box(Shape shape, const std::string& label) {
    const std::string q = mermaid_quote(label);
    switch (shape) {
        case Shape::channel: return "[" + q + "]:::channel";
        case Shape::pin: return ">" + q + "]:::pin";
        case Shape::timer: return "([" + q + "]):::timer";
        case Shape::rule: return "(" + q + "):::rule";
        case Shape::delay: return "{{" + q + "}}:::delay";
        case Shape::unhandled: return "[" + q + "]:::unhandled";
    }
    return "[" + q + "]";
}

}  // namespace

std::string to_dot(const Graph& graph) {
    const Picture pic = picture(graph);
    std::string out = "digraph " + dot_quote(pic.name) + " {\n";
    out += "    rankdir=LR\n";
    out += "    fontname=\"Helvetica\"\n";
    out += "    node [fontname=\"Helvetica\", fontsize=11]\n";
    out += "    edge [fontname=\"Helvetica\", fontsize=10, color=\"#616161\"]\n";
    for (const Cluster& c : pic.clusters) {
        out += "\n    subgraph " + dot_quote("cluster_" + c.id) + " {\n";
        out += "        label=" + dot_quote(c.label) + "\n";
        out += "        style=rounded\n";
        out += "        color=\"#9e9e9e\"\n";
        for (const Box& b : c.boxes)
            out += "        " + dot_quote(b.id) + " [label=" + dot_quote(b.label) + ", " + dot_style(b.shape) + "]\n";
        for (const Link& l : c.links) {
            out += "        " + dot_quote(l.from) + " -> " + dot_quote(l.to);
            if (!l.label.empty())
                out += " [label=" + dot_quote(l.label) + ", color=\"#6a1b9a\", fontcolor=\"#6a1b9a\"" +
                       (l.dashed ? ", style=dashed" : "") + "]";
            out += "\n";
        }
        out += "    }\n";
    }
    if (!pic.sends.empty()) out += "\n";
    for (const Link& l : pic.sends)
        out += "    " + dot_quote(l.from) + " -> " + dot_quote(l.to) + " [label=" + dot_quote(l.label) +
               ", color=\"#1565c0\", fontcolor=\"#1565c0\", penwidth=1.5]\n";
    out += "}\n";
    return out;
}

std::string to_mermaid(const Graph& graph) {
    const Picture pic = picture(graph);
    MermaidIds id;
    std::string out = "flowchart LR\n";
    out += "    classDef channel fill:#e3f2fd,stroke:#1565c0\n";
    out += "    classDef pin fill:#fff3e0,stroke:#ef6c00\n";
    out += "    classDef timer fill:#e8f5e9,stroke:#2e7d32\n";
    out += "    classDef rule fill:#ffffff,stroke:#616161\n";
    out += "    classDef delay fill:#f3e5f5,stroke:#6a1b9a\n";
    out += "    classDef unhandled fill:#ffffff,stroke:#1565c0,stroke-dasharray:4 3\n";
    for (const Cluster& c : pic.clusters) {
        out += "\n    subgraph " + id(c.id) + " [" + mermaid_quote(c.label) + "]\n";
        for (const Box& b : c.boxes) out += "        " + id(b.id) + mermaid_box(b.shape, b.label) + "\n";
        for (const Link& l : c.links) {
            out += "        " + id(l.from) + (l.dashed ? " -.->" : " -->");
            if (!l.label.empty()) {  // appended piece by piece: GCC 12's -Wrestrict again
                out += '|';
                out += mermaid_quote(l.label);
                out += '|';
            }
            out += " " + id(l.to) + "\n";
        }
        out += "    end\n";
    }
    if (!pic.sends.empty()) out += "\n";
    for (const Link& l : pic.sends)
        out += "    " + id(l.from) + " ==>|" + mermaid_quote(l.label) + "| " + id(l.to) + "\n";
    return out;
}

}  // namespace meshrun::engine
