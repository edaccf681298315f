// What a running fleet tells those who watch it: the test runner's pin histories,
// the metrics, and later the dashboard are observers; none of them is built into
// the runtime. Every event comes on the fleet's thread, in the order it happened.
//
// Indices are the graph's: `node` into Graph::nodes, `source` into Node::sources
// (channels come first), `pin` into Node::pins, `var` into Node::vars, `edge` into
// Node::edges. Times are on the fleet's clock. An observer must not call back into the fleet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "meshrun/engine/graph.hpp"

namespace meshrun::engine {

enum class LinkState {
    connecting,  // opening a connection to the target
    up,          // connected: requests go out
    down,        // the connection ended (why says how)
    retrying,    // waiting out its backoff before the next attempt
};
std::string_view to_string(LinkState state);

class Observer {
public:
    virtual ~Observer() = default;

    // A node is serving (its port listens, its pins are held, its timers run).
    virtual void node_started(int /*node*/, Micros /*at*/) {}
    // The fleet begins to stop (Fleet::stop(), or SIGINT/SIGTERM): links deliver what they
    // hold for the grace period, then every connection closes and run() returns.
    virtual void fleet_stopping() {}

    // A message arrived on a channel; the reply the channel gave it.
    virtual void message_in(int /*node*/, int /*source*/, std::string_view /*payload*/) {}
    virtual void reply_out(int /*node*/, int /*source*/, std::string_view /*reply*/) {}

    // A rule's firing started.
    virtual void rule_fired(int /*node*/, const Rule& /*rule*/) {}
    // A branch of an `if` was taken (its condition held, or it is the `else` and none did).
    virtual void branch_ran(int /*node*/, const Branch& /*branch*/) {}

    // An output was written (even to the level it had); `by` is the rule whose firing
    // wrote it (null: none).
    virtual void pin_written(int /*node*/, int /*pin*/, int /*level*/, const Rule* /*by*/, Micros /*at*/) {}
    // An input changed as its rules see it (after its debounce).
    virtual void input_edge(int /*node*/, int /*pin*/, int /*level*/, Micros /*at*/) {}
    // A variable (`var`, index into Node::vars) was set, even to the value it had; `by` is the
    // rule whose firing set it (a delayed body's: the rule that scheduled it; null: none).
    virtual void variable_set(int /*node*/, int /*var*/, std::string_view /*value*/, const Rule* /*by*/, Micros /*at*/) {}

    // A `send` handed a message to the link of an edge; the link's acknowledgement
    // came after `latency`, or the message was dropped (the peer refused it).
    virtual void message_sent(int /*node*/, int /*edge*/) {}
    virtual void acked(int /*node*/, int /*edge*/, Micros /*latency*/) {}
    virtual void dropped(int /*node*/, int /*edge*/, std::string_view /*why*/) {}
    // The link of an edge changed state; `why` says why it went down or retries.
    virtual void link_state(int /*node*/, int /*edge*/, LinkState /*state*/, std::string_view /*why*/) {}
    // The messages a link has queued (the one in flight included), of at most `limit`.
    virtual void link_queue(int /*node*/, int /*edge*/, std::size_t /*queued*/, std::size_t /*limit*/) {}

    // meshrun.1: a message sent again was answered with its first reply, without firing
    // (`refired` false); or it was fired again, possibly for the second time, since the
    // node has no record of its reply (it restarted while firing it, or without --state).
    virtual void repeat(int /*node*/, int /*source*/, bool /*refired*/) {}
    // A request without the fleet's token (secret env VAR) was refused with 401.
    virtual void unauthorized(int /*node*/) {}

    // A client's connection to a node (websocket or HTTP) opened, or closed.
    virtual void connection_opened(int /*node*/) {}
    virtual void connection_closed(int /*node*/) {}

    // With `discovery etcd`, the registry of this process (docs/discovery.md). A node's key is in
    // etcd (put on the process's lease), or not (not yet, or the lease was lost).
    virtual void registry_registered(int /*node*/, bool /*registered*/) {}
    // The process's lease: the seconds etcd said it has left, at a grant or a keepalive (0: no lease).
    virtual void registry_lease(std::int64_t /*ttl_seconds*/) {}
    // A request to etcd failed: no endpoint answered, or etcd refused it.
    virtual void registry_error(std::string_view /*why*/) {}
    // The process's view of the mesh's keys in etcd changed: the nodes it knows the address of
    // (its own and others'), of them the nodes of other processes (kept while etcd does not
    // answer), the etcd revision it is at, and whether its watch is open.
    virtual void registry_view(std::size_t /*nodes*/, std::size_t /*peers*/, std::int64_t /*revision*/, bool /*watching*/) {}
};

}  // namespace meshrun::engine
