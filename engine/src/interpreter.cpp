#include "interpreter.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "failures.hpp"
#include "meshrun/engine/eval.hpp"

namespace meshrun::engine {

namespace {

// Bounds on what one message can make a node do. A firing is stopped (an error, its
// reply says so) past max_steps statements, so that no rule holds its node (and its
// signals) for long; an `after` past max_delays pending on its node is refused.
constexpr std::uint64_t max_steps = 10'000'000;
constexpr std::size_t max_delays = 10'000;

void count_step(Firing& f) {
    if (++f.steps > max_steps)
        throw std::runtime_error(fmt::format("stopped after {} statements and repeat rounds, the most one firing may run",
                                             max_steps));
}

}  // namespace

Interpreter::Interpreter(const Graph& graph, int node, Clock& clock, Logger& log, NodeHost& host,
                         const std::vector<Observer*>& observers, std::uint64_t seed)
    : graph_(graph),
      spec_(graph.nodes[static_cast<std::size_t>(node)]),
      node_(node),
      clock_(clock),
      log_(log),
      host_(host),
      observers_(observers),
      named_(spec_.delays.size()),
      received_(spec_.sources.size()),
      action_waits_(spec_.actions.size(), -1),
      rng_(seed) {
    for (const Var& v : spec_.vars) vars_.push_back(v.initial);  // the node starts: each variable at its literal
    for (const Source& src : spec_.sources)
        for (const Rule& r : src.rules) waits_.push_back(can_wait(r.body));  // in Rule::index's order
}

// ---- pins and timers ----------------------------------------------------------

void Interpreter::start_pins(drivers::PinDriver& driver, const std::function<void(std::function<void()>)>& post) {
    for (std::size_t i = 0; i < spec_.pins.size(); ++i) {
        const Pin& p = spec_.pins[i];
        drivers::LineConfig cfg;
        cfg.chip = p.chip;
        cfg.line = p.line;
        cfg.direction = p.output ? drivers::Direction::output : drivers::Direction::input;
        cfg.active_low = p.active_low;
        cfg.bias = p.bias;
        cfg.initial = p.initial;
        cfg.consumer = fmt::format("meshrun:{}:{}:{}", graph_.name, spec_.name, p.name);
        drivers::ChangeHandler on_change;
        if (!p.output) {
            const int pin = static_cast<int>(i);
            on_change = [this, pin, post](int level) { post([this, pin, level] { on_input(pin, level, clock_.now()); }); };
        }
        try {
            lines_.push_back(driver.request(cfg, std::move(on_change)));
        } catch (const drivers::LineError& e) {
            throw PinError(p.span, fmt::format("node `{}` cannot have pin `{}`: {}", spec_.name, p.name, e.summary), e.help);
        } catch (const std::exception& e) {
            throw PinError(p.span, fmt::format("node `{}` cannot have pin `{}`: {}", spec_.name, p.name, e.what()));
        }
        pins_.push_back({});
        if (!p.output) pins_.back().reported = pins_.back().pending = lines_.back()->read();
    }
}

int Interpreter::read_pin(int pin) const {
    const Pin& p = spec_.pins[static_cast<std::size_t>(pin)];
    return p.output ? lines_[static_cast<std::size_t>(pin)]->read() : pins_[static_cast<std::size_t>(pin)].reported;
}

void Interpreter::write_pin(int pin, int level, const Firing& f) {
    lines_[static_cast<std::size_t>(pin)]->write(level);
    const Micros at = clock_.now();
    tell([&](Observer& o) { o.pin_written(node_, pin, level, f.rule, at); });
}

// A change is reported once it has held for the whole debounce time from when it
// happened; a change back before that cancels it. The same for every driver.
void Interpreter::on_input(int pin, int level, Micros when) {
    PinState& st = pins_[static_cast<std::size_t>(pin)];
    st.pending = level;
    const std::uint64_t generation = ++st.generation;
    const Micros debounce = spec_.pins[static_cast<std::size_t>(pin)].debounce;
    if (debounce.count() == 0) {
        report(pin);
        return;
    }
    clock_.call_at(std::max(clock_.now(), when + debounce), [this, pin, generation] {
        if (pins_[static_cast<std::size_t>(pin)].generation == generation) report(pin);
    });
}

void Interpreter::report(int pin) {
    PinState& st = pins_[static_cast<std::size_t>(pin)];
    if (st.pending == st.reported) return;
    st.reported = st.pending;
    const Micros at = clock_.now();
    tell([&](Observer& o) { o.input_edge(node_, pin, st.reported, at); });
    for (const Source& s : spec_.sources) {
        if (s.kind != Source::Kind::pin || s.pin != pin) continue;
        auto f = std::make_shared<Firing>();
        f->value = std::to_string(st.reported);
        if (const Rule* r = match(s, *f)) fire(*r, std::move(f));
    }
}

void Interpreter::start_timers() {
    const Micros origin = clock_.now();
    for (const Source& s : spec_.sources)
        if (s.kind == Source::Kind::timer) start_timer(s, 0, origin);
}

void Interpreter::start_timer(const Source& s, std::int64_t tick, Micros origin) {
    if (s.times && tick >= *s.times) return;
    const Micros due = origin + s.period * (tick + 1);
    clock_.call_at(due, [this, &s, tick, origin] {
        if (host_.stopping()) return;
        auto f = std::make_shared<Firing>();
        f->tick = tick;
        fire(s.rules.front(), std::move(f));
        start_timer(s, tick + 1, origin);
    });
}

// ---- firings ----------------------------------------------------------------

std::optional<std::string> Interpreter::deliver(Message& message, Reply later) {
    const auto source = static_cast<std::size_t>(message.channel);
    ++received_[source];
    tell([&](Observer& o) { o.message_in(node_, message.channel, message.payload); });
    Firing f;
    f.value = std::move(message.payload);
    f.message = true;
    f.rule = match(spec_.sources[source], f);
    if (f.rule) tell([&](Observer& o) { o.rule_fired(node_, *f.rule); });
    if (f.rule && waits_[static_cast<std::size_t>(f.rule->index)]) {
        auto shared = std::make_shared<Firing>(std::move(f));
        shared->stack.push_back({&shared->rule->body, 0, 1});
        run(*shared, shared);
        if (!shared->reply) {
            // It waits on a send before its `ack` (or its end): the reply comes later.
            shared->on_reply = [this, channel = message.channel, later = std::move(later)](std::string text) {
                ++replied_;
                tell([&](Observer& o) { o.reply_out(node_, channel, text); });
                later(std::move(text));
            };
            return std::nullopt;
        }
        f.reply = std::move(shared->reply);  // it may go on; the reply it gave is not given twice
        shared->reply.emplace();
    } else if (f.rule) {
        // It cannot wait: it runs to its end now, and its reply is known. The common case, and the fast one.
        try {
            run_now(f.rule->body, f);
        } catch (const std::exception& e) {
            failed(f, e);
        }
    }
    if (!f.reply) f.reply = "n/a";
    ++replied_;
    tell([&](Observer& o) { o.reply_out(node_, message.channel, *f.reply); });
    return std::move(f.reply);
}

void Interpreter::fire(const Rule& rule, std::shared_ptr<Firing> f) {
    if (skip(rule)) return;
    tell([&](Observer& o) { o.rule_fired(node_, rule); });
    f->rule = &rule;
    start(rule.body, std::move(f), waits_[static_cast<std::size_t>(rule.index)]);
}

// Runs a body: at once when it cannot wait, else as a program that can.
void Interpreter::start(const std::vector<Op>& body, std::shared_ptr<Firing> f, bool waits) {
    if (waits) {
        f->stack.push_back({&body, 0, 1});
        return run(*f, f);
    }
    try {
        run_now(body, *f);
    } catch (const std::exception& e) {
        failed(*f, e);
    }
}

// A body that cannot wait (no send), run to its end.
void Interpreter::run_now(const std::vector<Op>& body, Firing& f) {
    for (const Op& op : body) {
        count_step(f);
        if (op.kind == Op::Kind::repeat) {
            for (std::int64_t i = 0; i < op.count; ++i) {
                count_step(f);
                run_now(op.body, f);
            }
        } else if (op.kind == Op::Kind::call) {
            run_now(spec_.actions[static_cast<std::size_t>(op.action)].body, f);
        } else if (op.kind == Op::Kind::if_) {
            if (const Branch* b = choose(op, f)) run_now(b->body, f);
        } else {
            step(op, f, nullptr);
        }
    }
}

// Runs a firing that can wait until its program ends or it waits for a send's
// delivery; the delivery runs it on from there. `owner` is the firing's own pointer.
void Interpreter::run(Firing& f, const std::shared_ptr<Firing>& owner) {
    f.running = true;
    try {
        while (!f.stack.empty()) {
            if (f.sending) {
                if (f.waiting) {
                    f.running = false;
                    return;
                }
                after_send(f);
            }
            Firing::Frame& frame = f.stack.back();
            if (frame.next == frame.body->size()) {
                if (--frame.rounds > 0) {
                    count_step(f);
                    frame.next = 0;
                } else {
                    f.stack.pop_back();
                }
                continue;
            }
            const Op& op = (*frame.body)[frame.next++];
            count_step(f);
            if (op.kind == Op::Kind::repeat) {
                if (op.count <= 0) continue;
                count_step(f);
                f.stack.push_back({&op.body, 0, op.count});
            } else if (op.kind == Op::Kind::call) {
                f.stack.push_back({&spec_.actions[static_cast<std::size_t>(op.action)].body, 0, 1});
            } else if (op.kind == Op::Kind::if_) {
                if (const Branch* b = choose(op, f)) f.stack.push_back({&b->body, 0, 1});
            } else {
                step(op, f, owner);
            }
        }
    } catch (const std::exception& e) {
        f.stack.clear();
        f.sending = nullptr;
        failed(f, e);
    }
    f.running = false;
    if (f.message && !f.reply) reply(f, "n/a");
}

void Interpreter::step(const Op& op, Firing& f, const std::shared_ptr<Firing>& owner) {
    switch (op.kind) {
        case Op::Kind::write: write_pin(op.pin, truthy(eval(op.expr, f)) ? 1 : 0, f); break;
        case Op::Kind::toggle: write_pin(op.pin, lines_[static_cast<std::size_t>(op.pin)]->read() ? 0 : 1, f); break;
        case Op::Kind::ack:
            if (f.message && !f.reply) reply(f, eval(op.expr, f));
            break;
        case Op::Kind::log: log(eval(op.expr, f)); break;
        case Op::Kind::set: set_variable(op.var, eval(op.expr, f), f); break;
        case Op::Kind::cancel: {
            NamedSlot& slot = named_[static_cast<std::size_t>(op.named)];
            slot.pending = false;  // its wake-ups find nothing to do
            slot.op = nullptr;
            break;
        }
        case Op::Kind::after: {
            if (op.named >= 0) {
                schedule_named(op, f);
                break;
            }
            // The body runs later with the value and tick it was scheduled with.
            if (delays_ >= max_delays)
                throw std::runtime_error(fmt::format("{} delays (`after`) are pending on this node already, the most it holds",
                                                     max_delays));
            ++delays_;
            auto later = std::make_shared<Firing>();
            later->rule = f.rule;
            later->value = f.value;
            later->tick = f.tick;
            const std::vector<Op>* then = &op.body;
            const bool wait = can_wait(op.body);
            clock_.call_at(clock_.now() + op.delay, [this, then, later, wait] {
                --delays_;
                run_delayed(*then, later, wait);
            });
            break;
        }
        case Op::Kind::send: {
            std::string payload = eval(op.expr, f);
            const Edge& e = spec_.edges[static_cast<std::size_t>(op.edge)];
            log(fmt::format("> sending payload: {} to {}/{}", shown(payload),
                            graph_.nodes[static_cast<std::size_t>(e.node)].name, e.channel));
            ++sent_;
            f.sending = &op;
            f.waiting = true;
            std::shared_ptr<Firing> self = owner;  // a body that can send always runs with its owner
            host_.send(op.edge, std::move(payload), [this, self](Delivery d) {
                self->delivered = std::move(d);
                self->waiting = false;
                if (!self->running) run(*self, self);
            });
            break;
        }
        case Op::Kind::repeat:
        case Op::Kind::call:
        case Op::Kind::if_: break;  // run() and run_now() step into these
    }
}

// A delayed body is due: it runs, unless the fleet stops or it could send while a link is full.
void Interpreter::run_delayed(const std::vector<Op>& body, std::shared_ptr<Firing> later, bool wait) {
    if (host_.stopping()) return;
    if (wait && host_.full()) {
        if (skipped_++ == 0) log("skipping a delayed body that sends while a queue is full");
        return;
    }
    start(body, std::move(later), wait);
}

// `after D as NAME`: (re)starts the named delay from now, with this `after`'s body and the
// firing's value and tick. Queues a wake-up only when none is queued at or before the new due
// time, so that restarting it often queues nothing (see NamedSlot).
void Interpreter::schedule_named(const Op& op, const Firing& f) {
    const int named = op.named;
    NamedSlot& slot = named_[static_cast<std::size_t>(named)];
    slot.pending = true;
    slot.due = clock_.now() + op.delay;
    slot.op = &op;
    slot.rule = f.rule;
    slot.value = f.value;
    slot.tick = f.tick;
    wake_by_due(named);
}

// Queues a wake-up at the slot's due time, unless one is queued at or before it.
void Interpreter::wake_by_due(int named) {
    NamedSlot& slot = named_[static_cast<std::size_t>(named)];
    for (Micros w : slot.wakeups)
        if (w <= slot.due) return;
    const Micros due = slot.due;
    slot.wakeups.push_back(due);
    clock_.call_at(due, [this, named, due] { wake_named(named, due); });
}

void Interpreter::wake_named(int named, Micros at) {
    NamedSlot& slot = named_[static_cast<std::size_t>(named)];
    const auto it = std::find(slot.wakeups.begin(), slot.wakeups.end(), at);
    if (it != slot.wakeups.end()) slot.wakeups.erase(it);
    if (!slot.pending) return;  // cancelled, or fired by an earlier wake-up
    if (slot.due > clock_.now()) return wake_by_due(named);  // restarted since: it waits on
    slot.pending = false;
    const Op& op = *slot.op;
    slot.op = nullptr;
    auto later = std::make_shared<Firing>();
    later->rule = slot.rule;
    later->value = std::move(slot.value);
    later->tick = slot.tick;
    run_delayed(op.body, std::move(later), can_wait(op.body));
}

std::size_t Interpreter::named_wakeups() const {
    std::size_t n = 0;
    for (const NamedSlot& slot : named_) n += slot.wakeups.size();
    return n;
}

// A variable holds at most what a message may (`limits { message }`, 64 KiB unless written): a
// firing that would set more fails, with its reason, and the variable keeps what it held.
void Interpreter::set_variable(int var, std::string value, const Firing& f) {
    if (value.size() > graph_.limits.message)
        throw std::runtime_error(fmt::format("variable `{}` would hold {} bytes, more than the {} a value may hold "
                                             "(`limits {{ message ... }}`)",
                                             spec_.vars[static_cast<std::size_t>(var)].name, value.size(),
                                             graph_.limits.message));
    std::string& v = vars_[static_cast<std::size_t>(var)];
    v = std::move(value);
    if (observers_.empty()) return;
    const Micros at = clock_.now();
    tell([&](Observer& o) { o.variable_set(node_, var, v, f.rule, at); });
}

// A send came back: its acknowledgement is logged; a refusal is the firing's reply,
// unless it replied already.
void Interpreter::after_send(Firing& f) {
    const Edge& e = spec_.edges[static_cast<std::size_t>(f.sending->edge)];
    f.sending = nullptr;
    Delivery d = std::move(*f.delivered);
    f.delivered.reset();
    if (!d.refused) {
        log(fmt::format("< {}", shown(d.ack)));
    } else if (f.message && !f.reply) {
        reply(f, fmt::format("error: the message to {}/{} was dropped: {}", graph_.nodes[static_cast<std::size_t>(e.node)].name,
                             e.channel, *d.refused));
    }
}

void Interpreter::reply(Firing& f, std::string text) {
    f.reply = std::move(text);
    if (!f.on_reply) return;
    auto to = std::move(f.on_reply);
    f.on_reply = nullptr;
    to(*f.reply);
}

// A firing that fails (a pin write refused, a chip gone) is logged with its node and
// rule; a message's firing still answers, with the error, and the node goes on.
void Interpreter::failed(Firing& f, const std::exception& e) {
    log(fmt::format("error: `{}` failed: {}", f.rule ? f.rule->label : std::string("a firing"), e.what()));
    if (f.message && !f.reply) reply(f, fmt::format("error: {}", e.what()));
}

std::string Interpreter::eval(const Expr& e, const Firing& f) {
    EvalContext ctx{f.value, f.tick, [this](int pin) { return read_pin(pin); }, &rng_, &vars_};
    return engine::eval(e, ctx);
}

const Rule* Interpreter::match(const Source& source, const Firing& f) {
    for (const Rule& r : source.rules) {
        if (r.pattern && *r.pattern != f.value) continue;
        if (r.guard && !truthy(eval(*r.guard, f))) continue;
        return &r;
    }
    return nullptr;
}

// The branch of an `if` that runs: the first whose condition holds (as a guard's
// does), else the `else`; none when there is no `else`.
const Branch* Interpreter::choose(const Op& op, const Firing& f) {
    for (const Branch& b : op.branches) {
        if (b.condition && !truthy(eval(*b.condition, f))) continue;
        tell([&](Observer& o) { o.branch_ran(node_, b); });
        return &b;
    }
    return nullptr;
}

// ---- back pressure ------------------------------------------------------------

// While a firing waits for room in a full link, firings not started by a message
// that could send are skipped (counted, logged once), not piled up behind it.
bool Interpreter::skip(const Rule& rule) {
    if (!host_.full() || !waits_[static_cast<std::size_t>(rule.index)]) return false;
    if (skipped_++ == 0) log(fmt::format("skipping firings of `{}` while a queue is full", rule.label));
    return true;
}

void Interpreter::resumed() {
    if (skipped_ == 0) return;
    log(fmt::format("sending again: {} firing{} of timers, inputs and delays {} skipped while a queue was full", skipped_,
                    skipped_ == 1 ? "" : "s", skipped_ == 1 ? "was" : "were"));
    skipped_ = 0;
}

// Whether running `body` can wait (on a send's acknowledgement). Rules that cannot
// are run at once in the reused firing.
bool Interpreter::can_wait(const std::vector<Op>& body) const {
    for (const Op& op : body) {
        if (op.kind == Op::Kind::send) return true;
        if (op.kind == Op::Kind::repeat && can_wait(op.body)) return true;
        if (op.kind == Op::Kind::call && action_can_wait(op.action)) return true;
        if (op.kind == Op::Kind::if_)
            for (const Branch& b : op.branches)
                if (can_wait(b.body)) return true;
    }
    return false;
}

// Worked out once an action: actions that call the next one twice would make it exponential.
bool Interpreter::action_can_wait(int action) const {
    signed char& known = action_waits_[static_cast<std::size_t>(action)];
    if (known < 0) known = can_wait(spec_.actions[static_cast<std::size_t>(action)].body) ? 1 : 0;
    return known == 1;
}

nlohmann::json Interpreter::status() const {
    nlohmann::json j;
    j["node"] = spec_.name;
    j["channels"] = nlohmann::json::array();
    nlohmann::json per_channel = nlohmann::json::object();
    for (std::size_t i = 0; i < spec_.sources.size(); ++i) {
        const Source& s = spec_.sources[i];
        if (s.kind != Source::Kind::channel) continue;
        j["channels"].push_back(s.name);
        per_channel[s.name] = received_[i];
    }
    j["pins"] = nlohmann::json::object();
    for (std::size_t i = 0; i < spec_.pins.size(); ++i) j["pins"][spec_.pins[i].name] = read_pin(static_cast<int>(i));
    j["variables"] = nlohmann::json::object();
    for (std::size_t i = 0; i < spec_.vars.size(); ++i) j["variables"][spec_.vars[i].name] = vars_[i];
    // The named delays pending, each with the milliseconds until it is due (rounded up).
    j["delays"] = nlohmann::json::object();
    const Micros now = clock_.now();
    for (std::size_t i = 0; i < spec_.delays.size(); ++i) {
        const NamedSlot& slot = named_[i];
        if (slot.pending) j["delays"][spec_.delays[i].name] = (std::max(slot.due - now, Micros(0)).count() + 999) / 1000;
    }
    j["counters"] = {{"received", per_channel}, {"replied", replied_}, {"sent", sent_}};
    return j;
}

}  // namespace meshrun::engine
