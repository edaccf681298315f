// A fleet's shared state and one node's runtime around its interpreter: the port
// it listens on, its sessions, its links, the watches on its input lines.
// Included by the runtime's translation unit only.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <vector>

#include "asio_support.hpp"
#include "dashboard.hpp"
#include "tls.hpp"
#include "failures.hpp"
#include "interpreter.hpp"
#include "meshrun/engine/metrics.hpp"
#include "received.hpp"
#include "state_store.hpp"

namespace meshrun::engine {

struct NodeRt;
class Registry;  // registry.hpp
struct FleetCore;
struct DashboardClient;  // dashboard_server.hpp

// Why a pin was not driven (FleetCore::drive): an HTTP status that says what kind of no, and words.
struct DriveRefusal {
    http::status status;
    std::string why;
};

// Where the registry (etcd) says a node listens.
struct Registered {
    std::string address;
    std::uint16_t port = 0;
};
// With `discovery`: what etcd holds for `node` now, else what it held last; none when it never
// held anything (a link then goes where the file says). registry.hpp.
task<std::optional<Registered>> registry_lookup(FleetCore& fleet, int node);
// Whether the process's view of etcd is current (its watch open). registry.hpp.
bool registry_current(const FleetCore& fleet);

// A link (link.hpp), over plain TCP or TLS: BasicLink of one websocket stream or the other.
class Link {
public:
    virtual ~Link() = default;
    // Hands a message to the link; `done` is called with what became of it.
    virtual void send(std::string payload, std::function<void(Delivery)> done) = 0;
    virtual void stop() = 0;
    // The messages it holds: queued (the one in flight included), and waiting for room.
    virtual std::size_t held() const = 0;
    virtual std::string name() const = 0;  // TARGET/CHANNEL
    virtual nlohmann::json status() const = 0;
    virtual int target() const = 0;  // the node it sends to: its graph index
    // With discovery: etcd says the target listens at ADDRESS:PORT now.
    virtual void moved(const std::string& address, std::uint16_t port) = 0;
};

// An open websocket session, as its node sees it.
struct OpenSession {
    std::function<void()> close;  // the node stops: 1001
    std::function<void()> sweep;  // each quarter of `limits { idle }`: a ping, or the end, when silent
    static constexpr int ping_after = 2, dead_after = 4;  // sweeps that found it silent
};

struct FleetCore {
    FleetCore(const Graph& g, drivers::PinDriver& p, Logger& l, FleetOptions o);
    const Graph& graph;
    drivers::PinDriver& pins;
    Logger& log;
    FleetOptions options;
    asio::io_context io{1};  // one thread runs every node of the fleet
    std::unique_ptr<SteadyClock> steady;
    Clock* clock = nullptr;
    Metrics metrics;                   // what /metrics shows
    std::vector<Observer*> observers;  // the options' and the metrics
    std::vector<std::unique_ptr<NodeRt>> nodes;
    std::vector<std::uint16_t> ports;  // per graph node
    std::vector<bool> here;            // per graph node: whether it runs in this fleet
    std::vector<std::string> bound;    // per graph node here: the address it listens on
    bool stopping = false;  // stop(): timers, delays and inputs no more
    bool closing = false;   // then: no more listening or serving
    // Connections open, and the most there may be: the descriptor limit less what links,
    // pins and the process itself need, so that a crowd of clients can never take the
    // descriptor a link needs to deliver what it holds.
    std::size_t connections = 0, max_connections = 0;
    std::uint64_t in_flight = 0;       // requests sent and not yet acknowledged
    std::unique_ptr<NodeRt> tester;    // the test runner, as a node that only sends
    std::map<std::pair<int, std::string>, std::unique_ptr<Link>> test_links;
    // tls: the contexts every session and link of the fleet uses, made once at start.
    std::optional<asio::ssl::context> tls_server, tls_client;
    std::optional<Acceptor> metrics_acceptor;  // --metrics: the whole fleet's on one port
    std::size_t metrics_connections = 0, max_metrics_connections = 0;  // open on it, and the most
    // --dashboard: what the page shows (an observer), its port, the pages' websockets open on it.
    std::unique_ptr<DashboardHub> dashboard;
    std::optional<Acceptor> dashboard_acceptor;
    std::vector<std::shared_ptr<DashboardClient>> dashboard_clients;
    std::size_t dashboard_connections = 0;
    Micros started{0};
    std::unique_ptr<Registry> registry;  // `discovery etcd`: the nodes here registered in etcd; null without
    std::string token;  // secret env VAR: what every request but /healthz must carry; empty: no secret
    Repeated unauthorized{"requests without the fleet's token"};
    Repeated untrusted{"clients refused in the TLS handshake"};
    Repeated tls_refused{"clients that refused this node's certificate"};
    Repeated tls_failed{"TLS handshakes that failed"};

    // Where to reach a node on this machine: the address it listens on (loopback in
    // place of every interface), or IPv4's loopback.
    std::string loopback_of(int node) const {
        const std::string& a = bound[static_cast<std::size_t>(node)];
        if (a.empty() || a == "0.0.0.0") return "127.0.0.1";
        return a == "::" ? "::1" : a;
    }
    // Whether a node's pins are simulated ones (the dashboard and `meshrun drive` may drive its inputs).
    bool simulated(int node) const;
    // Drives a simulated input of a node here to `level` (as its rules see it): for a click on the
    // dashboard and `meshrun drive`. None when done, else why not.
    std::optional<DriveRefusal> drive(std::string_view node, std::string_view pin, int level);

    template<typename F> void tell(F&& event) {
        for (Observer* o : observers) event(*o);
    }
};

struct NodeRt final : NodeHost {
    // `node` is the graph's index; the test runner's sender is a node of its own graph.
    NodeRt(FleetCore& f, const Graph& graph, int node, std::uint64_t seed);
    ~NodeRt() override;

    void send(int edge, std::string payload, std::function<void(Delivery)> done) override;
    bool full() const override { return waiting > 0; }
    bool stopping() const override { return fleet.stopping; }

    void log(std::string_view text) { interp.log(text); }
    Executor executor() { return fleet.io.get_executor(); }
    const Node& spec() const { return interp.spec(); }
    int index() const { return interp.index(); }
    // A sender waits for room in a full link; it has room again.
    void wait_for_room() { ++waiting; }
    void done_waiting();
    void start_pins();
    task<void> watch_edges(int pin, std::shared_ptr<EdgeWatch> watch);
    std::string status() const;
    // Who sends, to meshrun.1 peers: MESH/NODE.
    std::string sender() const { return interp.graph().name + "/" + spec().name; }

    FleetCore& fleet;
    Interpreter interp;
    std::vector<std::shared_ptr<EdgeWatch>> edge_watches;
    std::vector<std::unique_ptr<Link>> links;  // per edge
    std::optional<Acceptor> acceptor;
    Micros started{0};
    // Open websocket sessions, by id.
    std::map<std::uint64_t, OpenSession> sessions;
    Timer sweeper;  // sweep_idle's: ticks while the node serves
    std::uint64_t next_session = 0;
    std::size_t open = 0;  // connections open to it now, at most limits { connections N }
    // Firings waiting for room in a full link. While there are any, sessions read no
    // more messages (the clients' TCP windows fill: back pressure), and timers and
    // input edges do not start firings that could send (they are counted instead).
    std::uint64_t waiting = 0;
    Signal room;
    Repeated session_failures{"connections"};  // ended in an error: a client's fault, not the node's
    Repeated refires{"messages fired again"};    // meshrun.1 messages fired again (warned once, then summarised)
    Received received;                    // meshrun.1: what was fired, per sender and channel
    Signal fired;                         // a meshrun.1 firing replied: repeats waiting on it ask again
    std::unique_ptr<StateStore> state;    // --state DIR: null without
    std::string boot;                     // this node's boot, to meshrun.1 peers: kept in --state, else new
};

}  // namespace meshrun::engine
