#include "dashboard.hpp"

#include <nlohmann/json.hpp>

namespace meshrun::engine {

using nlohmann::json;

namespace {

std::string dump(const json& j) {
    // Payloads are a client's bytes: what is not UTF-8 is shown as U+FFFD rather than thrown on.
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string_view source_kind(Source::Kind kind) {
    switch (kind) {
        case Source::Kind::channel: return "channel";
        case Source::Kind::pin: return "pin";
        case Source::Kind::timer: return "timer";
    }
    return "?";
}

}  // namespace

DashboardHub::DashboardHub(const Graph& graph, std::vector<bool> here)
    : graph_(graph), here_(std::move(here)), nodes_(graph.nodes.size()) {
    for (std::size_t n = 0; n < graph.nodes.size(); ++n) {
        if (!here_[n]) continue;
        const Node& spec = graph.nodes[n];
        NodeView& view = nodes_[n];
        view.pins.resize(spec.pins.size());
        view.channels.resize(spec.sources.size());
        std::size_t rules = 0;
        for (const Source& s : spec.sources) rules += s.rules.size();
        view.rules.resize(rules);
        view.links.resize(spec.edges.size());
        for (const Var& v : spec.vars) view.vars.push_back({v.initial.substr(0, last_bytes), false});
    }
}

std::string DashboardHub::graph_message(const std::vector<std::string>& addresses, const std::vector<bool>& simulated,
                                        bool secret) const {
    json nodes = json::array();
    for (std::size_t n = 0; n < graph_.nodes.size(); ++n) {
        const Node& spec = graph_.nodes[n];
        json pins = json::array(), vars = json::array(), sources = json::array(), edges = json::array();
        for (const Pin& p : spec.pins)
            pins.push_back({{"name", p.name}, {"direction", p.output ? "output" : "input"}, {"chip", p.chip}, {"line", p.line}});
        for (const Var& v : spec.vars) vars.push_back(v.name);
        for (const Source& s : spec.sources) {
            json rules = json::array();
            for (const Rule& r : s.rules) rules.push_back({{"index", r.index}, {"label", r.label}});
            sources.push_back({{"kind", source_kind(s.kind)}, {"name", s.name}, {"rules", std::move(rules)}});
        }
        for (const Edge& e : spec.edges)
            edges.push_back({{"node", graph_.nodes[static_cast<std::size_t>(e.node)].name}, {"channel", e.channel}});
        nodes.push_back({{"name", spec.name},
                         {"here", static_cast<bool>(here_[n])},
                         {"address", addresses[n]},
                         {"simulated", static_cast<bool>(simulated[n])},
                         {"pins", std::move(pins)},
                         {"variables", std::move(vars)},
                         {"sources", std::move(sources)},
                         {"edges", std::move(edges)}});
    }
    return dump({{"type", "graph"}, {"mesh", graph_.name}, {"secret", secret}, {"nodes", std::move(nodes)}});
}

template<typename T>
T& DashboardHub::touch(int node, std::vector<Tracked<T>> NodeView::*items, int index) {
    NodeView& view = nodes_[static_cast<std::size_t>(node)];
    Tracked<T>& item = (view.*items)[static_cast<std::size_t>(index)];
    item.changed = view.changed = changed_ = true;
    return item.value;
}

void DashboardHub::set_pin(int node, int pin, int level) { touch(node, &NodeView::pins, pin) = level; }

void DashboardHub::variable_set(int node, int var, std::string_view value, const Rule*, Micros) {
    touch(node, &NodeView::vars, var) = value.substr(0, last_bytes);
}

void DashboardHub::message_in(int node, int source, std::string_view payload) {
    Channel& c = touch(node, &NodeView::channels, source);
    ++c.count;
    c.last.emplace_back(payload.substr(0, last_bytes));
    if (c.last.size() > last_kept) c.last.pop_front();
}

void DashboardHub::rule_fired(int node, const Rule& rule) { ++touch(node, &NodeView::rules, rule.index); }

void DashboardHub::pin_written(int node, int pin, int level, const Rule*, Micros) { set_pin(node, pin, level); }

void DashboardHub::input_edge(int node, int pin, int level, Micros) { set_pin(node, pin, level); }

void DashboardHub::message_sent(int node, int edge) { ++touch(node, &NodeView::links, edge).sent; }

void DashboardHub::acked(int node, int edge, Micros) { ++touch(node, &NodeView::links, edge).acked; }

void DashboardHub::dropped(int node, int edge, std::string_view) { ++touch(node, &NodeView::links, edge).dropped; }

void DashboardHub::link_state(int node, int edge, LinkState state, std::string_view why) {
    LinkView& l = touch(node, &NodeView::links, edge);
    l.state = state;
    l.why = why;
}

void DashboardHub::link_queue(int node, int edge, std::size_t queued, std::size_t) {
    touch(node, &NodeView::links, edge).queued = queued;
}

std::string DashboardHub::state_message(bool full) const {
    json nodes = json::object();
    for (std::size_t n = 0; n < graph_.nodes.size(); ++n) {
        const NodeView& view = nodes_[n];
        if (!here_[n] || !(full || view.changed)) continue;
        const Node& spec = graph_.nodes[n];
        json pins = json::object(), vars = json::object(), channels = json::object(), rules = json::object(),
             links = json::object();
        for (std::size_t p = 0; p < view.pins.size(); ++p)
            if (full || view.pins[p].changed) pins[spec.pins[p].name] = view.pins[p].value;
        for (std::size_t v = 0; v < view.vars.size(); ++v)
            if (full || view.vars[v].changed) vars[spec.vars[v].name] = view.vars[v].value;
        for (std::size_t s = 0; s < view.channels.size(); ++s) {
            if (spec.sources[s].kind != Source::Kind::channel || !(full || view.channels[s].changed)) continue;
            const Channel& c = view.channels[s].value;
            channels[spec.sources[s].name] = {{"count", c.count}, {"last", c.last}};
        }
        for (std::size_t r = 0; r < view.rules.size(); ++r)
            if (full || view.rules[r].changed) rules[std::to_string(r)] = view.rules[r].value;
        for (std::size_t e = 0; e < view.links.size(); ++e) {
            if (!(full || view.links[e].changed)) continue;
            const LinkView& l = view.links[e].value;
            links[std::to_string(e)] = {{"state", to_string(l.state)}, {"why", l.why},   {"queued", l.queued},
                                        {"sent", l.sent},              {"acked", l.acked}, {"dropped", l.dropped}};
        }
        nodes[spec.name] = {{"pins", std::move(pins)},   {"variables", std::move(vars)}, {"channels", std::move(channels)},
                            {"rules", std::move(rules)}, {"links", std::move(links)}};
    }
    return dump({{"type", "state"}, {"seq", seq_}, {"full", full}, {"nodes", std::move(nodes)}});
}

std::string DashboardHub::full_state() const { return state_message(true); }

std::optional<std::string> DashboardHub::take_changes() {
    if (!changed_) return std::nullopt;
    ++seq_;
    std::string message = state_message(false);
    for (NodeView& view : nodes_) {
        if (!view.changed) continue;
        for (auto& p : view.pins) p.changed = false;
        for (auto& v : view.vars) v.changed = false;
        for (auto& c : view.channels) c.changed = false;
        for (auto& r : view.rules) r.changed = false;
        for (auto& l : view.links) l.changed = false;
        view.changed = false;
    }
    changed_ = false;
    return message;
}

}  // namespace meshrun::engine
