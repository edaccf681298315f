#include "meshrun/engine/metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <limits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

#include "meshrun/engine/eval.hpp"

namespace meshrun::engine {

namespace {

// `le` as the Go client writes it (shortest form: 0.00025, 1, 2.5).
constexpr std::string_view latency_le[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                           "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                                           "1",      "2.5",     "5",      "10",    "+Inf"};
static_assert(std::size(latency_le) == Metrics::latency_buckets);

constexpr LinkState link_states[] = {LinkState::connecting, LinkState::up, LinkState::down, LinkState::retrying};

// name="value", escaped; after a comma if it follows another label.
std::string label(std::string_view name, std::string_view value, bool comma = true) {
    std::string out = comma ? "," : "";
    out += name;
    out += "=\"";
    out += escape_label_value(value);
    out += '"';
    return out;
}

// A variable's gauge: its value as a number, NaN when its text is not one (stored as the
// double's bits in a Figure).
std::int64_t variable_bits(std::string_view value) {
    return std::bit_cast<std::int64_t>(number(value).value_or(std::numeric_limits<double>::quiet_NaN()));
}

// A sample value as the text format writes it: NaN, or the shortest decimal form.
std::string gauge_value(std::int64_t bits) {
    const double d = std::bit_cast<double>(bits);
    return std::isnan(d) ? "NaN" : fmt::format("{}", d);
}

// Seconds from microseconds, exactly: 1.5 -> "1.5", 2 -> "2".
std::string seconds(std::int64_t micros) {
    std::string s = fmt::format("{}{}.{:06}", micros < 0 ? "-" : "", std::abs(micros / 1'000'000),
                                std::abs(micros % 1'000'000));
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
    return s;
}

// One metric family: its HELP and TYPE lines, written only if it has a sample.
class Family {
public:
    Family(std::string& out, std::string_view name, std::string_view type, std::string_view help)
        : out_(out), name_(name), type_(type), help_(help) {}

    // `labels` without braces, e.g. node="a",pin="b"; `suffix` for _bucket, _sum, _count.
    template <typename V>
    void sample(std::string_view labels, const V& value, std::string_view suffix = {}) {
        if (!headed_) {
            fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name_, help_, name_, type_);
            headed_ = true;
        }
        if (labels.empty()) {
            fmt::format_to(std::back_inserter(out_), "{}{} {}\n", name_, suffix, value);  // a figure of the process
        } else {
            fmt::format_to(std::back_inserter(out_), "{}{}{{{}}} {}\n", name_, suffix, labels, value);
        }
    }

private:
    std::string& out_;
    std::string_view name_, type_, help_;
    bool headed_ = false;
};

std::string slurp(const char* path) {
    std::ifstream in(path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

std::string escape_label_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

Metrics::Metrics(const Graph& graph, std::vector<int> nodes)
    : graph_(graph), slot_(graph.nodes.size(), -1) {
    std::erase_if(nodes, [&](int n) { return n < 0 || static_cast<std::size_t>(n) >= graph.nodes.size(); });
    std::sort(nodes.begin(), nodes.end());
    nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
    figures_ = std::vector<Figures>(nodes.size());
    labels_.resize(nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        const Node& node = graph.nodes[nodes[i]];
        slot_[nodes[i]] = static_cast<int>(i);
        Figures& f = figures_[i];
        Labels& l = labels_[i];
        f.node = nodes[i];
        f.received = std::vector<Figure>(node.sources.size());
        f.replied = std::vector<Figure>(node.sources.size());
        f.repeats = std::vector<Figure>(node.sources.size());
        f.refired = std::vector<Figure>(node.sources.size());
        f.links = std::vector<Link>(node.edges.size());
        f.writes = std::vector<Figure>(node.pins.size());
        f.edges = std::vector<Figure>(node.pins.size());
        f.level = std::vector<Figure>(node.pins.size());
        for (Figure& level : f.level) level.set(-1);
        f.vars = std::vector<Figure>(node.vars.size());
        for (std::size_t v = 0; v < node.vars.size(); ++v) f.vars[v].set(variable_bits(node.vars[v].initial));

        l.node = label("node", node.name, false);
        for (const Source& s : node.sources) l.source.push_back(s.kind == Source::Kind::channel ? label("channel", s.name) : "");
        for (const Edge& e : node.edges) {
            const std::string& target = e.node >= 0 && static_cast<std::size_t>(e.node) < graph.nodes.size()
                                            ? graph.nodes[e.node].name
                                            : std::string("?");
            l.target.push_back(label("target", fmt::format("{}/{}", target, e.channel)));
        }
        for (const Pin& p : node.pins) l.pin.push_back(label("pin", p.name));
        for (const Var& v : node.vars) l.var.push_back(label("var", v.name));

        std::unordered_map<std::string_view, int> seen;  // a label's rules so far, for #2, #3
        for (const Source& s : node.sources) {
            for (const Rule& r : s.rules) {
                f.rules.push_back(&r);
                const int n = ++seen[r.label];
                l.rule.push_back(label("rule", n == 1 ? r.label : fmt::format("{} #{}", r.label, n)));
            }
        }
        f.fired = std::vector<Figure>(f.rules.size());
    }
}

Metrics::~Metrics() = default;

void Metrics::node_started(int node, Micros) {
    if (Figures* f = at(node)) {
        const auto unix = std::chrono::duration_cast<Micros>(std::chrono::system_clock::now().time_since_epoch());
        f->started_micros.set(unix.count());
    }
}

void Metrics::message_in(int node, int source, std::string_view) {
    if (Figures* f = at(node); f && static_cast<std::size_t>(source) < f->received.size()) f->received[source].add();
}

void Metrics::reply_out(int node, int source, std::string_view) {
    if (Figures* f = at(node); f && static_cast<std::size_t>(source) < f->replied.size()) f->replied[source].add();
}

void Metrics::repeat(int node, int source, bool refired) {
    Figures* f = at(node);
    if (!f || static_cast<std::size_t>(source) >= f->repeats.size()) return;
    (refired ? f->refired : f->repeats)[source].add();
}

void Metrics::unauthorized(int node) {
    if (Figures* f = at(node)) f->unauthorized.add();
}

void Metrics::rule_fired(int node, const Rule& rule) {
    Figures* f = at(node);
    if (!f) return;
    const auto index = static_cast<std::size_t>(rule.index);
    if (index >= f->rules.size() || f->rules[index] != &rule) return;  // not a rule of this graph's node
    f->fired[index].add();
}

void Metrics::pin_written(int node, int pin, int level, const Rule*, Micros) {
    if (Figures* f = at(node); f && static_cast<std::size_t>(pin) < f->writes.size()) {
        f->writes[pin].add();
        f->level[pin].set(level);
    }
}

void Metrics::input_edge(int node, int pin, int level, Micros) {
    if (Figures* f = at(node); f && static_cast<std::size_t>(pin) < f->edges.size()) {
        f->edges[pin].add();
        f->level[pin].set(level);
    }
}

void Metrics::variable_set(int node, int var, std::string_view value, const Rule*, Micros) {
    if (Figures* f = at(node); f && static_cast<std::size_t>(var) < f->vars.size()) f->vars[var].set(variable_bits(value));
}

void Metrics::message_sent(int node, int edge) {
    if (Figures* f = at(node); f && static_cast<std::size_t>(edge) < f->links.size()) f->links[edge].sent.add();
}

void Metrics::acked(int node, int edge, Micros latency) {
    Figures* f = at(node);
    if (!f || static_cast<std::size_t>(edge) >= f->links.size()) return;
    Link& link = f->links[edge];
    const std::int64_t us = std::max<std::int64_t>(latency.count(), 0);
    // The first bucket whose upper bound is at least the latency (bounds are inclusive).
    const auto bucket = std::lower_bound(std::begin(latency_bounds), std::end(latency_bounds), us) - std::begin(latency_bounds);
    link.buckets[bucket].add();
    link.sum_micros.add(us);
}

void Metrics::dropped(int node, int edge, std::string_view) {
    if (Figures* f = at(node); f && static_cast<std::size_t>(edge) < f->links.size()) f->links[edge].dropped.add();
}

void Metrics::link_state(int node, int edge, LinkState state, std::string_view) {
    Figures* f = at(node);
    if (!f || static_cast<std::size_t>(edge) >= f->links.size()) return;
    Link& link = f->links[edge];
    if (state == LinkState::connecting) {
        if (link.connecting_seen.get() != 0 && link.state.get() != static_cast<int>(LinkState::connecting) + 1)
            link.reconnects.add();
        link.connecting_seen.set(1);
    }
    link.state.set(static_cast<int>(state) + 1);
    link.up.set(state == LinkState::up ? 1 : 0);
}

void Metrics::link_queue(int node, int edge, std::size_t held, std::size_t limit) {
    if (Figures* f = at(node); f && static_cast<std::size_t>(edge) < f->links.size()) {
        f->links[edge].queued.set(static_cast<std::int64_t>(held));
        f->links[edge].limit.set(static_cast<std::int64_t>(limit));
    }
}

void Metrics::connection_opened(int node) {
    if (Figures* f = at(node)) {
        f->open.add();
        f->connections.add();
    }
}

void Metrics::connection_closed(int node) {
    if (Figures* f = at(node)) f->open.add(-1);
}

static std::int64_t unix_micros() {
    return std::chrono::duration_cast<Micros>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void Metrics::registry_registered(int node, bool registered) {
    registry_.on.set(1);
    if (Figures* f = at(node)) f->registered.set(registered ? 1 : 0);
}

void Metrics::registry_lease(std::int64_t ttl_seconds) {
    registry_.on.set(1);
    registry_.lease_until_micros.set(ttl_seconds > 0 ? unix_micros() + ttl_seconds * 1'000'000 : 0);
}

void Metrics::registry_error(std::string_view) {
    registry_.on.set(1);
    registry_.errors.add();
}

void Metrics::registry_view(std::size_t nodes, std::size_t peers, std::int64_t revision, bool watching) {
    registry_.on.set(1);
    registry_.nodes.set(static_cast<std::int64_t>(nodes));
    registry_.peers.set(static_cast<std::int64_t>(peers));
    registry_.revision.set(revision);
    registry_.watching.set(watching ? 1 : 0);
}

std::string Metrics::render(int node) const {
    std::vector<std::size_t> shown;  // indices into figures_
    if (node < 0) {
        for (std::size_t i = 0; i < figures_.size(); ++i) shown.push_back(i);
    } else if (static_cast<std::size_t>(node) < slot_.size() && slot_[node] >= 0) {
        shown.push_back(static_cast<std::size_t>(slot_[node]));
    }

    std::string out;
    out.reserve(4096);
    // Each family's samples for every node shown, then the next family: a family is one group.
    const auto per_source = [&](std::string_view name, std::string_view help, std::vector<Figure> Figures::*figure) {
        Family family(out, name, "counter", help);
        for (std::size_t i : shown)
            for (std::size_t s = 0; s < labels_[i].source.size(); ++s)
                if (!labels_[i].source[s].empty())
                    family.sample(labels_[i].node + labels_[i].source[s], (figures_[i].*figure)[s].get());
    };
    const auto per_link = [&](std::string_view name, std::string_view type, std::string_view help, Figure Link::*figure) {
        Family family(out, name, type, help);
        for (std::size_t i : shown)
            for (std::size_t e = 0; e < labels_[i].target.size(); ++e)
                family.sample(labels_[i].node + labels_[i].target[e], (figures_[i].links[e].*figure).get());
    };
    // Pins: every pin, or only outputs (writes) or inputs (edges); a figure that is not 0 is shown anyway.
    enum class Pins { all, outputs, inputs };
    const auto per_pin = [&](std::string_view name, std::string_view type, std::string_view help,
                             std::vector<Figure> Figures::*figure, Pins which) {
        Family family(out, name, type, help);
        for (std::size_t i : shown) {
            const Node& n = graph_.nodes[figures_[i].node];
            for (std::size_t p = 0; p < labels_[i].pin.size(); ++p) {
                const std::int64_t value = (figures_[i].*figure)[p].get();
                const bool applies = which == Pins::all || n.pins[p].output == (which == Pins::outputs);
                if (applies || value != 0) family.sample(labels_[i].node + labels_[i].pin[p], value);
            }
        }
    };
    const auto per_node = [&](std::string_view name, std::string_view type, std::string_view help, Figure Figures::*figure) {
        Family family(out, name, type, help);
        for (std::size_t i : shown) family.sample(labels_[i].node, (figures_[i].*figure).get());
    };

    per_source("meshrun_messages_received_total", "Messages received on a channel.", &Figures::received);
    per_source("meshrun_replies_sent_total", "Replies a channel sent to the messages it received.", &Figures::replied);
    per_source("meshrun_delivery_repeats_total",
               "meshrun.1 messages sent again that were answered with their first reply, not fired again.",
               &Figures::repeats);
    per_source("meshrun_delivery_refired_total",
               "meshrun.1 messages sent again that were fired again, possibly a second time: the node had no record of "
               "their reply (it stopped while firing them, or restarted without --state).",
               &Figures::refired);
    per_link("meshrun_messages_sent_total", "counter", "Messages handed by send to the link of a target NODE/CHANNEL.",
             &Link::sent);
    per_link("meshrun_messages_dropped_total", "counter", "Messages to a target that were dropped (the peer refused them).",
             &Link::dropped);
    {
        Family family(out, "meshrun_ack_latency_seconds", "histogram",
                      "Time from sending a message to a target to the target's acknowledgement.");
        for (std::size_t i : shown) {
            for (std::size_t e = 0; e < labels_[i].target.size(); ++e) {
                const Link& link = figures_[i].links[e];
                const std::string labels = labels_[i].node + labels_[i].target[e];
                std::int64_t cumulative = 0;
                for (std::size_t b = 0; b < latency_buckets; ++b) {
                    cumulative += link.buckets[b].get();
                    family.sample(fmt::format("{},le=\"{}\"", labels, latency_le[b]), cumulative, "_bucket");
                }
                family.sample(labels, seconds(link.sum_micros.get()), "_sum");
                family.sample(labels, cumulative, "_count");
            }
        }
    }
    per_link("meshrun_link_reconnects_total", "counter",
             "Times the link to a target went back to connecting after its first attempt.", &Link::reconnects);
    per_link("meshrun_link_up", "gauge", "Whether the link to a target is connected (1) or not (0).", &Link::up);
    {
        Family family(out, "meshrun_link_state", "gauge",
                      "The state of the link to a target: 1 for its current state, 0 for the others (all 0 before "
                      "its first attempt).");
        for (std::size_t i : shown)
            for (std::size_t e = 0; e < labels_[i].target.size(); ++e) {
                const std::int64_t current = figures_[i].links[e].state.get();
                for (LinkState s : link_states)
                    family.sample(fmt::format("{}{},state=\"{}\"", labels_[i].node, labels_[i].target[e], to_string(s)),
                                  current == static_cast<int>(s) + 1 ? 1 : 0);
            }
    }
    per_link("meshrun_link_queue_messages", "gauge",
             "Messages the link to a target has queued, the one in flight included (senders waiting for room are not).", &Link::queued);
    per_link("meshrun_link_queue_limit", "gauge", "Messages the link to a target may queue (0 before it reports).",
             &Link::limit);
    per_pin("meshrun_pin_writes_total", "counter", "Writes of an output pin (even to the level it had).",
            &Figures::writes, Pins::outputs);
    per_pin("meshrun_input_edges_total", "counter", "Changes of an input pin as its rules see them (after debounce).",
            &Figures::edges, Pins::inputs);
    per_pin("meshrun_pin_level", "gauge",
            "A pin's level: the last written (outputs) or seen (inputs); -1 until one is written or seen.",
            &Figures::level, Pins::all);
    {
        Family family(out, "meshrun_variable", "gauge",
                      "A node variable's value as a number (its literal until a rule sets it); NaN when its text is not "
                      "a decimal number.");
        for (std::size_t i : shown)
            for (std::size_t v = 0; v < labels_[i].var.size(); ++v)
                family.sample(labels_[i].node + labels_[i].var[v], gauge_value(figures_[i].vars[v].get()));
    }
    {
        Family family(out, "meshrun_rule_firings_total", "counter",
                      "Firings of a rule (a label repeated in its node is told apart by #2, #3 in file order).");
        for (std::size_t i : shown)
            for (std::size_t r = 0; r < labels_[i].rule.size(); ++r)
                family.sample(labels_[i].node + labels_[i].rule[r], figures_[i].fired[r].get());
    }
    per_node("meshrun_connections_open", "gauge", "Clients' connections (websocket or HTTP) to a node open now.",
             &Figures::open);
    per_node("meshrun_connections_total", "counter", "Clients' connections (websocket or HTTP) to a node opened.",
             &Figures::connections);
    per_node("meshrun_unauthorized_total", "counter",
             "Requests to a node refused with 401 (without the fleet's token, or with another), and clients refused in "
             "the TLS handshake (no certificate, or one the fleet's CA did not sign).",
             &Figures::unauthorized);
    {
        Family family(out, "meshrun_node_start_time_seconds", "gauge",
                      "When a node started serving, in Unix time (0 before it starts).");
        for (std::size_t i : shown) family.sample(labels_[i].node, seconds(figures_[i].started_micros.get()));
    }
    if (registry_.on.get()) {
        per_node("meshrun_registry_registered", "gauge",
                 "Whether a node's key is in etcd under /meshrun/MESH/nodes/NODE (1) or not yet, or no more (0).",
                 &Figures::registered);
        // The figures of the process: one lease, one client, for every node of it.
        const std::int64_t until = registry_.lease_until_micros.get();
        Family(out, "meshrun_registry_lease_ttl_seconds", "gauge",
               "Seconds left of the process's lease in etcd, counted from etcd's last grant or keepalive (0: no lease).")
            .sample("", seconds(until > 0 ? std::max<std::int64_t>(until - unix_micros(), 0) / 1000 * 1000 : 0));
        Family(out, "meshrun_registry_errors_total", "counter",
               "Requests to etcd that failed: no endpoint answered, or etcd refused them.")
            .sample("", registry_.errors.get());
        Family(out, "meshrun_registry_peers_known", "gauge",
               "Nodes of other processes whose address etcd gave (kept while etcd does not answer).")
            .sample("", registry_.peers.get());
        Family(out, "meshrun_registry_nodes_known", "gauge",
               "Nodes of the mesh whose key the process's view of etcd holds, its own included.")
            .sample("", registry_.nodes.get());
        Family(out, "meshrun_registry_watch_revision", "gauge",
               "The etcd revision the process's view is at: its last range, or its watch's last response (0: none yet).")
            .sample("", registry_.revision.get());
        Family(out, "meshrun_registry_watching", "gauge",
               "Whether the process's watch on the mesh's keys in etcd is open (1) or being made again (0).")
            .sample("", registry_.watching.get());
    }
    return out + render_process_metrics();
}

std::string render_process_metrics() {
    std::string out;
    const auto gauge = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
        fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
    };
    const long page = sysconf(_SC_PAGESIZE);
    const long ticks = sysconf(_SC_CLK_TCK);

    // statm: size resident ... in pages.
    {
        std::istringstream statm(slurp("/proc/self/statm"));
        unsigned long long size = 0, resident = 0;
        if (statm >> size >> resident) {
            gauge("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", size * page);
            gauge("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", resident * page);
        }
    }
    // stat: the fields after the command's closing parenthesis, from field 3 (state) on.
    const std::string stat = slurp("/proc/self/stat");
    if (const auto close = stat.rfind(')'); close != std::string::npos && ticks > 0) {
        std::istringstream fields(stat.substr(close + 1));
        std::vector<std::string> f{std::istream_iterator<std::string>(fields), std::istream_iterator<std::string>()};
        if (f.size() > 19) {
            const double cpu = static_cast<double>(std::stoull(f[11]) + std::stoull(f[12])) / static_cast<double>(ticks);
            gauge("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu);
            // starttime (field 22) is in ticks since boot; boot is btime in /proc/stat.
            std::istringstream proc_stat(slurp("/proc/stat"));
            for (std::string line; std::getline(proc_stat, line);) {
                if (line.rfind("btime ", 0) == 0) {
                    const double start = static_cast<double>(std::stoull(line.substr(6))) +
                                         static_cast<double>(std::stoull(f[19])) / static_cast<double>(ticks);
                    gauge("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
                          start);
                    break;
                }
            }
        }
    }
    std::error_code ec;
    std::size_t fds = 0;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++fds;
    if (!ec) gauge("process_open_fds", "gauge", "Number of open file descriptors.", fds);
    if (rlimit limit{}; getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
        gauge("process_max_fds", "gauge", "Maximum number of open file descriptors.", limit.rlim_cur);
    return out;
}

}  // namespace meshrun::engine
