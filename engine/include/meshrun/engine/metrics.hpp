// A fleet's figures for Prometheus: an observer that counts what the nodes of this
// process do, and renders them in the text exposition format (version 0.0.4).
//
// Every series of a node exists from the start, at 0 (a rate is right from the first
// scrape): per channel, edge, pin and rule of the node in the graph. The event path
// touches only plain vectors indexed as the graph is (no maps, no strings): a few ns
// an event. Events come on the fleet's thread; every figure is a single-writer relaxed
// atomic, so render() may run on any thread (a histogram read while it is observed may
// be one observation apart between its buckets and its sum).
#pragma once

#include <atomic>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "meshrun/engine/graph.hpp"
#include "meshrun/engine/observer.hpp"

namespace meshrun::engine {

class Metrics final : public Observer {
public:
    // `nodes`: the graph's indices of the nodes that run in this process. The graph
    // must outlive the metrics, and be the one whose rules the fleet reports.
    Metrics(const Graph& graph, std::vector<int> nodes);
    ~Metrics() override;
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    // The exposition of one node of this process (`node`: its graph index; a node that
    // does not run here has no series), or of all of them (-1); then the process's
    // figures (memory, CPU, descriptors, start time).
    std::string render(int node = -1) const;

    // The upper bounds of meshrun_ack_latency_seconds's buckets, in microseconds.
    static constexpr std::int64_t latency_bounds[] = {100,    250,    500,     1'000,   2'500,     5'000,
                                                      10'000, 25'000, 50'000,  100'000, 250'000,   500'000,
                                                      1'000'000, 2'500'000, 5'000'000, 10'000'000};

    void node_started(int node, Micros at) override;
    void message_in(int node, int source, std::string_view payload) override;
    void reply_out(int node, int source, std::string_view reply) override;
    void rule_fired(int node, const Rule& rule) override;
    void pin_written(int node, int pin, int level, const Rule* by, Micros at) override;
    void input_edge(int node, int pin, int level, Micros at) override;
    void variable_set(int node, int var, std::string_view value, const Rule* by, Micros at) override;
    void message_sent(int node, int edge) override;
    void acked(int node, int edge, Micros latency) override;
    void dropped(int node, int edge, std::string_view why) override;
    void link_state(int node, int edge, LinkState state, std::string_view why) override;
    void link_queue(int node, int edge, std::size_t held, std::size_t limit) override;
    void repeat(int node, int source, bool refired) override;
    void unauthorized(int node) override;
    void connection_opened(int node) override;
    void connection_closed(int node) override;
    void registry_registered(int node, bool registered) override;
    void registry_lease(std::int64_t ttl_seconds) override;
    void registry_error(std::string_view why) override;
    void registry_view(std::size_t nodes, std::size_t peers, std::int64_t revision, bool watching) override;

    // A figure written by the fleet's thread only: a plain load and store (no locked
    // instruction), readable from any thread.
    struct Figure {
        std::atomic<std::int64_t> value{0};
        void add(std::int64_t n = 1) { value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
        void set(std::int64_t v) { value.store(v, std::memory_order_relaxed); }
        std::int64_t get() const { return value.load(std::memory_order_relaxed); }
    };
    static constexpr std::size_t latency_buckets = std::size(latency_bounds) + 1;  // the last: +Inf

private:
    struct Link {
        Figure sent, dropped, reconnects, up, connecting_seen, queued, limit;
        Figure state;  // LinkState + 1; 0: no state yet
        Figure buckets[latency_buckets];  // each bucket's own count (not cumulative)
        Figure sum_micros;
    };
    struct Figures {
        int node = -1;  // graph index
        std::vector<Figure> received, replied;  // per source (channels only are shown)
        std::vector<Figure> repeats, refired;   // per source: meshrun.1 messages sent again
        std::vector<Link> links;                // per edge
        std::vector<Figure> writes, edges, level;  // per pin; level -1: not known yet
        std::vector<Figure> vars;               // per variable: its number's bits (a double; NaN: not a number)
        std::vector<Figure> fired;              // per rule of the node, sources in order
        std::vector<const Rule*> rules;         // per rule of the node (Rule::index): which it is

        Figure open, connections, unauthorized, started_micros;  // started: Unix time, 0 before start
        Figure registered;  // 1: its key is in etcd
    };
    // The process's registry (discovery etcd); none of it is shown before it reports.
    struct Registry {
        Figure on, errors, nodes, peers, revision, watching;
        Figure lease_until_micros;  // Unix time when the lease runs out, as etcd last said; 0: no lease
    };
    Registry registry_;

    Figures* at(int node) {
        return node >= 0 && static_cast<std::size_t>(node) < slot_.size() && slot_[node] >= 0 ? &figures_[slot_[node]]
                                                                                           : nullptr;
    }
    const Graph& graph_;
    std::vector<int> slot_;         // per graph node: its index in figures_, -1 if not here
    std::vector<Figures> figures_;  // per node of this process
    // Label sets as rendered, escaped once: per node of this process.
    struct Labels {
        std::string node;                 // node="NAME"
        std::vector<std::string> source;  // ,channel="NAME" (channels; others empty)
        std::vector<std::string> target;  // ,target="NODE/CHANNEL"
        std::vector<std::string> pin;     // ,pin="NAME"
        std::vector<std::string> var;     // ,var="NAME"
        std::vector<std::string> rule;    // ,rule="LABEL" (a label repeated in its node: #2, #3...)
    };
    std::vector<Labels> labels_;
};

// A label value escaped for the text format: backslash, double quote and newline.
std::string escape_label_value(std::string_view value);

// The process's own figures, as the standard client libraries name them
// (process_resident_memory_bytes...), from /proc/self and getrlimit.
std::string render_process_metrics();

}  // namespace meshrun::engine
