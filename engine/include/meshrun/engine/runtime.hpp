// Running nodes of an event graph: a websocket endpoint per node with a port,
// its timers, its pins through the driver interface, its sends through links.
// Asio and Beast stay inside the engine's sources; this header is light.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "meshrun/drivers/pin.hpp"
#include "meshrun/engine/graph.hpp"
#include "meshrun/engine/observer.hpp"

namespace meshrun::engine {

// Time, injectable: the engine never reads a system clock itself.
class Clock {
public:
    virtual ~Clock() = default;
    virtual Micros now() const = 0;
    // Calls `fn` on the fleet's thread once `now() >= when`.
    virtual void call_at(Micros when, std::function<void()> fn) = 0;
    // A CLOCK_MONOTONIC time (the kernel's timestamp of a GPIO edge) on this clock. A clock
    // that is not the system's (virtual time) has no such times: it says now().
    virtual Micros from_monotonic(std::chrono::nanoseconds) const { return now(); }
};

// Where a node's log lines go: `[ buzzer ] ...` on a terminal, or JSON lines.
class Logger {
public:
    virtual ~Logger() = default;
    virtual void line(const std::string& node, std::string_view text) = 0;
};
std::unique_ptr<Logger> make_text_logger(std::vector<std::string> node_names, bool color);
std::unique_ptr<Logger> make_json_logger();

// An option the fleet cannot use as given (a --bind address that does not parse
// or resolve): bad usage, not a fault of the file.
struct BadOption : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A pin whose line cannot be had at start: its declaration, why, and what to do.
struct PinError : std::runtime_error {
    PinError(dsl::Span at, const std::string& what, std::vector<std::string> notes = {})
        : std::runtime_error(what), span(at), help(std::move(notes)) {}
    dsl::Span span;
    std::vector<std::string> help;  // one line each
};

struct FleetOptions {
    std::vector<int> nodes;             // the nodes of the graph that run here
    // Listen on this address instead of the node's host: an IPv4 or IPv6 address (with
    // or without brackets) or a host name, resolved; never a wider bind than asked.
    std::optional<std::string> bind;
    std::vector<std::uint16_t> ports;   // per node of the graph; 0 or absent: as declared
    std::uint64_t seed = 0;             // random(P); 0: a random seed
    Clock* clock = nullptr;             // null: the steady clock
    bool any_port = false;              // listen on free loopback ports instead (test runs)
    // `up`: every node here listens on loopback, whatever host the file names, on its
    // declared port where that is free and not taken by another node here, otherwise
    // on a free one; links to nodes here go there, links to the others where declared.
    bool local = false;
    // Per node of the graph, the driver of its pins (nodes of one process may stand
    // for different boards, each with its own gpiochip0); absent: the fleet's driver.
    std::vector<drivers::PinDriver*> node_pins;
    bool handle_signals = false;        // SIGINT/SIGTERM stop the fleet
    // Messages a link to one channel holds (the one in flight included); a sending
    // rule waits while its link is full.
    std::size_t queue_limit = 1000;
    // On stop(): how long links may go on delivering what they hold.
    std::chrono::milliseconds grace{0};
    // How long a link waits for a message's acknowledgement before it takes the
    // connection for dead and sends the message again on a new one (0: for ever).
    std::chrono::milliseconds ack_timeout{30'000};
    // Also serve the whole process's /metrics and /healthz here: PORT (on 127.0.0.1) or
    // ADDR:PORT ([ADDR]:PORT for IPv6); port 0: a free one.
    std::optional<std::string> metrics;
    // Serve the dashboard (docs/dashboard.md) here: PORT (on 127.0.0.1) or ADDR:PORT as --metrics.
    std::optional<std::string> dashboard;
    // Keep each node's outbox and what it fired in DIR/NODE.state, so that a restart
    // loses nothing and fires nothing twice (docs/delivery.md); none: in memory only.
    std::optional<std::string> state_dir;
    // Plain websockets whatever the file's `tls` says (the test runner: one process on loopback).
    bool plain = false;
    // The fleet's token when the file has `secret env VAR`; none: read from VAR at start.
    std::optional<std::string> token;
    // With `discovery etcd "URL"` in the file, register the nodes here in etcd (docs/discovery.md);
    // the test runner does not (free loopback ports, virtual time).
    bool discovery = true;
    // Told of everything the fleet does, in order, on its thread (observer.hpp).
    std::vector<Observer*> observers;
};

// `meshrun ls`: what etcd holds under /meshrun/MESH/nodes/ for a graph with `discovery`,
// asked of its endpoints in turn (docs/discovery.md). Throws when an endpoint is not a URL
// the client can use (https: not supported yet).
struct RegistryListing {
    struct Entry {
        std::string key;           // /meshrun/MESH/nodes/NODE
        std::string value;         // as stored: the node's JSON object (what it bound, its channels...)
        std::string lease;         // etcd's lease ID, decimal as the gateway writes it; "0": none
        std::int64_t ttl = -1;     // seconds left of the lease (-1: none, or gone)
        std::int64_t granted = 0;  // the TTL the lease was granted with
    };
    bool reached = false;    // an endpoint answered (with `error` set: an error of etcd's own)
    std::string endpoint;    // the one that answered
    std::string error;       // none answered: each endpoint and why; or etcd's error
    std::vector<Entry> entries;  // in key order
};
RegistryListing list_registry(const Graph& graph);

// `meshrun drive`: POST /pins/NODE/PIN with the level to HOST:PORT (a node's port, or a
// --dashboard's), over TLS with the file's `tls` when `tls`, with `token` when not empty. What it
// answered; throws std::runtime_error with the reason when nothing did.
struct HttpAnswer {
    int status = 0;
    std::string body;
    std::string server;  // its Server header: "meshrun" from a node or a dashboard
};
HttpAnswer drive_pin_at(const Graph& graph, const std::string& host, std::uint16_t port, bool tls, const std::string& node,
                        const std::string& pin, int level, const std::string& token);

class Fleet {
public:
    Fleet(const Graph& graph, drivers::PinDriver& pins, Logger& log, FleetOptions options);
    ~Fleet();
    Fleet(const Fleet&) = delete;
    Fleet& operator=(const Fleet&) = delete;

    // Requests every pin and listens on every port. Throws std::runtime_error that
    // names the node and the port or line when one cannot be had.
    void start();
    // Runs until stop() (or a signal, with handle_signals); then returns.
    void run();
    // For test runners on virtual time: run what is ready now without waiting; wait
    // (real time) for at most `limit` for one more thing to run; whether any
    // request is still waiting for its acknowledgement.
    std::size_t poll();
    std::size_t run_one_for(std::chrono::milliseconds limit);
    bool idle() const;

    // Sends `value` to a node's channel over a websocket, as any client would, and
    // calls `done` with the reply (on the fleet's thread).
    void inject(int node, const std::string& channel, std::string value, std::function<void(std::string)> done);

    // What a node has seen, for tests and status pages (the rest is the observers').
    std::uint64_t received(int node, std::string_view channel) const;
    int pin_level(int node, int pin) const;
    // Stops listening and timers, closes every connection with a close frame, gives
    // links the grace period to deliver what they hold (a warning names what was
    // not delivered), then run() returns.
    void stop();

    std::uint16_t port(int node) const;       // the port a node listens on (0: none)
    std::string address(int node) const;      // where it listens: `127.0.0.1:9001`, `[::1]:9001` ("": nowhere)
    std::uint16_t metrics_port() const;       // the --metrics port (0: none)
    std::uint16_t dashboard_port() const;     // the --dashboard port (0: none)
    std::string status_json(int node) const;  // the node's `GET /` page
    // Runs `fn` on the fleet's thread.
    void post(std::function<void()> fn);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace meshrun::engine
