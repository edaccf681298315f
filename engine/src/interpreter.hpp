// A node's rules at run time: its programs, pins, timers, delays and debounce.
// No network here: messages come in through deliver() and go out through the
// NodeHost (the runtime's links); time is the fleet's Clock, pins the driver's
// Lines. What happens is told to the observers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "meshrun/drivers/pin.hpp"
#include "meshrun/engine/observer.hpp"
#include "meshrun/engine/runtime.hpp"
#include "wire.hpp"

namespace meshrun::engine {

// What became of a message sent over a link: the peer's acknowledgement, or why it
// was dropped (the peer refused it: it is not sent again).
struct Delivery {
    std::string ack;
    std::optional<std::string> refused;
};

// What a node's interpreter needs from the runtime around it.
class NodeHost {
public:
    virtual ~NodeHost() = default;
    // Hands `payload` to the link of `edge`; `done` is called with what became of it
    // (on the fleet's thread, possibly before send() returns).
    virtual void send(int edge, std::string payload, std::function<void(Delivery)> done) = 0;
    // Whether a firing waits for room in a full link: firings not started by a
    // message that could send are skipped meanwhile.
    virtual bool full() const = 0;
    virtual bool stopping() const = 0;
};

// One firing of a rule, a timer or a delayed body: its value and tick, the reply of
// a message's firing, and where it is in its program (so that it can wait for a
// send's acknowledgement and go on from there).
struct Firing {
    const Rule* rule = nullptr;
    std::string value;
    std::int64_t tick = 0;
    bool message = false;
    std::optional<std::string> reply;
    std::function<void(std::string)> on_reply;  // a message's firing that replies after deliver() returned
    std::uint64_t steps = 0;                    // statements run and repeat rounds (bounded)
    struct Frame {
        const std::vector<Op>* body;
        std::size_t next;
        std::int64_t rounds;  // a repeat's rounds left, this one included
    };
    std::vector<Frame> stack;
    bool running = false;                // inside Interpreter::run
    bool waiting = false;                // for a send's delivery
    std::optional<Delivery> delivered;   // what the send came back with
    const Op* sending = nullptr;         // the send it waits on
};

class Interpreter {
public:
    Interpreter(const Graph& graph, int node, Clock& clock, Logger& log, NodeHost& host,
                const std::vector<Observer*>& observers, std::uint64_t seed);

    const Node& spec() const { return spec_; }
    const Graph& graph() const { return graph_; }
    int index() const { return node_; }
    void log(std::string_view text) { log_.line(spec_.name, text); }

    // Requests every line of the node (throws PinError); `post` runs a driver's change
    // callback on the fleet's thread.
    void start_pins(drivers::PinDriver& pins, const std::function<void(std::function<void()>)>& post);
    void start_timers();
    drivers::Line& line(int pin) { return *lines_[static_cast<std::size_t>(pin)]; }

    // A message on one of the node's channels. Its reply (the firing's first `ack`, or
    // `n/a`) is returned when it is known before deliver() returns, the common case;
    // otherwise `later` is called with it.
    using Reply = std::function<void(std::string)>;
    std::optional<std::string> deliver(Message& message, Reply later);

    // An input changed at `when` (the kernel's timestamp of the edge, or the moment the
    // simulated driver said so).
    void on_input(int pin, int level, Micros when);
    // The links have room again: logs what was skipped meanwhile.
    void resumed();

    int read_pin(int pin) const;
    // A variable's value (`var`, index into Node::vars): its literal until a firing sets it.
    const std::string& variable(int var) const { return vars_[static_cast<std::size_t>(var)]; }
    // The wake-ups of named delays on the clock (pending or not): at most a few per name.
    std::size_t named_wakeups() const;
    std::uint64_t received(int source) const { return received_[static_cast<std::size_t>(source)]; }

    // The node's part of its `GET /` page (the runtime adds its links).
    nlohmann::json status() const;

private:
    void fire(const Rule& rule, std::shared_ptr<Firing> f);
    void start(const std::vector<Op>& body, std::shared_ptr<Firing> f, bool waits);
    void run(Firing& f, const std::shared_ptr<Firing>& owner);
    void run_now(const std::vector<Op>& body, Firing& f);
    void step(const Op& op, Firing& f, const std::shared_ptr<Firing>& owner);
    void after_send(Firing& f);
    void reply(Firing& f, std::string text);
    void failed(Firing& f, const std::exception& e);
    const Rule* match(const Source& source, const Firing& f);
    const Branch* choose(const Op& op, const Firing& f);
    std::string eval(const Expr& e, const Firing& f);
    void write_pin(int pin, int level, const Firing& f);
    void set_variable(int var, std::string value, const Firing& f);
    void schedule_named(const Op& op, const Firing& f);
    void wake_by_due(int named);
    void wake_named(int named, Micros at);
    void run_delayed(const std::vector<Op>& body, std::shared_ptr<Firing> later, bool wait);
    void report(int pin);
    void start_timer(const Source& s, std::int64_t tick, Micros origin);
    bool skip(const Rule& rule);
    bool can_wait(const std::vector<Op>& body) const;
    bool action_can_wait(int action) const;
    template<typename F> void tell(F&& event) {
        for (Observer* o : observers_) event(*o);
    }

    struct PinState {
        int reported = 0;  // the last level reported to rules (inputs)
        int pending = 0;   // the raw level waiting out its debounce
        std::uint64_t generation = 0;
    };

    const Graph& graph_;
    const Node& spec_;
    const int node_;
    Clock& clock_;
    Logger& log_;
    NodeHost& host_;
    const std::vector<Observer*>& observers_;
    std::vector<std::unique_ptr<drivers::Line>> lines_;
    std::vector<PinState> pins_;
    std::vector<std::string> vars_;  // per variable (Node::vars), in memory only

    // A named delay (`after D as NAME`): at most one pending per name. Scheduling it again
    // only moves its due time and replaces what it runs; the clock holds wake-ups, not
    // firings: one at the earliest due time asked for, and one more only when a restart
    // brings the due time earlier than every wake-up queued. A wake-up that finds the due
    // time moved later queues one at the new time (unless one is queued at or before it);
    // one that finds the slot cancelled does nothing.
    struct NamedSlot {
        bool pending = false;
        Micros due{0};
        const Op* op = nullptr;       // the `after` that scheduled it last: its body runs
        const Rule* rule = nullptr;   // the firing it captured
        std::string value;
        std::int64_t tick = 0;
        std::vector<Micros> wakeups;  // queued on the clock, pending or not
    };
    std::vector<NamedSlot> named_;    // per Node::delays
    std::vector<std::uint64_t> received_;  // per source (channels come first)
    std::uint64_t replied_ = 0, sent_ = 0;
    std::vector<bool> waits_;  // per rule (Rule::index): whether its body can wait (on a send)
    mutable std::vector<signed char> action_waits_;  // per action: -1 not known yet, else whether it can wait
    std::mt19937_64 rng_;
    std::uint64_t skipped_ = 0;  // firings skipped while a link was full
    std::size_t delays_ = 0;     // `after` bodies pending
};

}  // namespace meshrun::engine
