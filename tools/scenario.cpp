// The scenario runner behind `meshrun test`. Each test gets a fresh fleet of every
// node on simulated pins and free loopback ports; time is a VirtualClock that
// moves only at `advance` and `within`. Between steps the fleet is run until it
// is quiet: nothing ready to run and no request waiting for its acknowledgement.
// Each test has limits (Limits): timer firings and wall time.
#include <chrono>
#include <random>
#include <utility>

#include <fmt/format.h>

#include "meshrun/drivers/sim.hpp"
#include "meshrun/dsl/diagnostic.hpp"
#include "meshrun/engine/eval.hpp"
#include "meshrun/engine/log.hpp"
#include "scenario.hpp"

namespace meshrun::tools {

using namespace engine;

void VirtualClock::call_at(Micros when, std::function<void()> fn) {
    queue_.push(Due{std::max(when, now_), next_order_++, std::move(fn)});
}

bool VirtualClock::step(Micros limit) {
    if (queue_.empty() || queue_.top().when > limit) return false;
    Due due = queue_.top();
    queue_.pop();
    now_ = due.when;
    due.fn();
    return true;
}

namespace {

// Logs are kept, for `expect NODE logged "TEXT"`, and not printed.
class Capture final : public Logger {
public:
    void line(const std::string& node, std::string_view text) override { lines[node].emplace_back(text); }
    std::map<std::string, std::vector<std::string>> lines;
};

// To the millisecond, or to the microsecond when the time is not a whole millisecond.
std::string seconds(Micros t) {
    const double s = static_cast<double>(t.count()) / 1e6;
    return t.count() % 1000 == 0 ? fmt::format("{:.3f} s", s) : fmt::format("{:.6f} s", s);
}

// What the runner checks that the fleet itself keeps no record of: the levels each
// pin took, each output's last write, each variable's value and last set, and the rules
// that fired.
class History final : public Observer {
public:
    explicit History(const Graph& graph) {
        for (const Node& n : graph.nodes) {
            pins_.emplace_back(n.pins.size());
            auto& vars = vars_.emplace_back();
            for (const engine::Var& v : n.vars) vars.push_back(Var{v.initial, false, Micros(0), nullptr});
        }
    }
    struct Pin {
        std::vector<int> levels;  // writes of an output (even of its level), changes of an input; the first 10,000
        bool written = false;     // the last write of an output:
        Micros at{0};
        const Rule* by = nullptr;
        int level = 0;
    };
    const Pin& pin(int node, int pin) const { return pins_[static_cast<std::size_t>(node)][static_cast<std::size_t>(pin)]; }
    // A variable: its value (every set is told, and a node starts with its literal) and its last set.
    struct Var {
        std::string value;
        bool set = false;
        Micros at{0};
        const Rule* by = nullptr;
    };
    const Var& var(int node, int var) const { return vars_[static_cast<std::size_t>(node)][static_cast<std::size_t>(var)]; }
    void variable_set(int node, int var, std::string_view value, const Rule* by, Micros at) override {
        vars_[static_cast<std::size_t>(node)][static_cast<std::size_t>(var)] = Var{std::string(value), true, at, by};
    }
    const std::map<const Rule*, std::uint64_t>& fired() const { return fired_; }
    const std::set<const Branch*>& branches_ran() const { return branches_ran_; }

    void pin_written(int node, int pin, int level, const Rule* by, Micros at) override {
        Pin& p = at_(node, pin);
        remember(p, level);
        p.written = true;
        p.at = at;
        p.by = by;
        p.level = level;
    }
    void input_edge(int node, int pin, int level, Micros) override { remember(at_(node, pin), level); }
    void rule_fired(int, const Rule& rule) override { ++fired_[&rule]; }
    void branch_ran(int, const Branch& branch) override { branches_ran_.insert(&branch); }

private:
    Pin& at_(int node, int pin) { return pins_[static_cast<std::size_t>(node)][static_cast<std::size_t>(pin)]; }
    static void remember(Pin& p, int level) {
        if (p.levels.size() < 10'000) p.levels.push_back(level);
    }
    std::vector<std::vector<Pin>> pins_;
    std::vector<std::vector<Var>> vars_;
    std::map<const Rule*, std::uint64_t> fired_;
    std::set<const Branch*> branches_ran_;
};

int pin_index(const Node& node, const std::string& name) {
    for (std::size_t i = 0; i < node.pins.size(); ++i)
        if (node.pins[i].name == name) return static_cast<int>(i);
    return -1;
}

class Scenario {
public:
    Scenario(const Graph& graph, const dsl::SourceManager& sources, std::uint64_t seed, Limits limits)
        : graph_(graph), sources_(sources), limits_(limits), rng_(seed), pins_(graph.nodes.size()), history_(graph),
          fleet_(graph, pins_.front(), log_, options(graph, seed, clock_, pins_, history_)) {}

    static FleetOptions options(const Graph& graph, std::uint64_t seed, Clock& clock,
                                std::vector<drivers::SimDriver>& pins, History& history) {
        FleetOptions o;
        o.clock = &clock;
        o.observers.push_back(&history);
        for (auto& p : pins) o.node_pins.push_back(&p);  // every node its own board
        for (std::size_t i = 0; i < graph.nodes.size(); ++i) o.nodes.push_back(static_cast<int>(i));
        o.any_port = true;
        o.seed = seed;
        // `secret env VAR`: the whole fleet is in this process, and the runner's sender with
        // it: a token of the run's own, whatever VAR holds (a test needs no secret set).
        if (!graph.secrets.empty()) o.token = fmt::format("test-{:x}", std::random_device{}());
        o.plain = true;  // and no TLS: its files may be on the boards only
        o.discovery = false;  // nor etcd: the fleet is this process's alone
        return o;
    }

    // Runs the test; returns the first failure, rendered, or nothing.
    std::optional<std::string> run(const dsl::Test& test) {
        try {
            fleet_.start();
        } catch (const std::exception& e) {
            return fail(test.span, fmt::format("the fleet did not start: {}", e.what()));
        }
        if (auto f = settle(test.span)) return f;
        for (const dsl::TestStmt& s : test.body)
            if (auto f = step(s)) return f;
        return std::nullopt;
    }

    const History& history() const { return history_; }

private:
    std::string fail(dsl::Span at, std::string message, std::vector<dsl::Note> notes = {}) {
        dsl::Diagnostic d{dsl::Severity::error, dsl::Kind::test_failed, at, std::move(message), std::move(notes)};
        return dsl::render_text(d, sources_);
    }

    bool out_of_time() const {
        return limits_.timeout_seconds > 0 &&
               std::chrono::steady_clock::now() - started_ > std::chrono::duration<double>(limits_.timeout_seconds);
    }

    // The failure at a limit: which one, where the scenario was (`at`, the virtual time and the
    // time it was moving to), and how to raise it.
    std::string limit_reached(bool steps, dsl::Span at, std::optional<Micros> until) {
        const std::string limit = steps ? fmt::format("{} timer firings", limits_.max_steps)
                                        : fmt::format("{} s of wall time", limits_.timeout_seconds);
        const std::string how = steps ? "raise the limit with --max-steps N (0: no limit), or make the timers slower"
                                      : "raise the limit with --timeout SECONDS (0: no limit)";
        return fail(at,
                    fmt::format("the test stopped at its limit of {}, at {} of virtual time{}", limit,
                                seconds(clock_.now()), until ? fmt::format(" (of {} to reach)", seconds(*until)) : ""),
                    {{std::nullopt, how}});
    }

    // Runs the fleet until nothing is ready and no request is waiting for its
    // acknowledgement (messages cross real sockets: that takes real time).
    std::optional<std::string> settle(dsl::Span at, std::optional<Micros> until = std::nullopt) {
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (true) {
            if (fleet_.poll() == 0) {
                if (fleet_.idle()) return std::nullopt;
                fleet_.run_one_for(std::chrono::milliseconds(5));
            }
            // Checked when busy too: a fleet that never rests must not hold the test for ever.
            if (out_of_time()) return limit_reached(false, at, until);
            if (std::chrono::steady_clock::now() > give_up)
                return fail(at, "the fleet did not settle within 10 s of real time (a request is still unanswered)");
        }
    }

    // Runs the timers due up to `until` one at a time, in order, settling after each, while
    // `more()` holds; fails at a limit of the test.
    template <typename More>
    std::optional<std::string> run_timers(Micros until, dsl::Span at, More more) {
        while (more() && clock_.due(until)) {
            if (limits_.max_steps > 0 && steps_ == limits_.max_steps) return limit_reached(true, at, until);
            if (out_of_time()) return limit_reached(false, at, until);
            ++steps_;
            clock_.step(until);
            if (auto f = settle(at, until)) return f;
        }
        return std::nullopt;
    }

    // Runs every timer due up to `until`, in order, settling after each.
    std::optional<std::string> advance_to(Micros until, dsl::Span at) {
        if (auto f = run_timers(until, at, [] { return true; })) return f;
        clock_.advance_to(until);
        return settle(at, until);
    }

    // A test's value as a node would see it: `-3`, `"{1 + 1}"` and `random(1)` evaluated (the
    // checker allows no names in tests).
    std::string literal(const dsl::Expr& e) {
        const engine::EvalContext ctx{{}, 0, {}, &rng_, nullptr};
        return engine::eval(engine::lower_expr(e), ctx);
    }

    std::optional<std::string> step(const dsl::TestStmt& s) {
        using K = dsl::TestStmt::Kind;
        const int node = s.kind == K::advance ? -1 : graph_.find(s.node.name);
        switch (s.kind) {
            case K::send: {
                std::optional<std::string> reply;
                fleet_.inject(node, s.member.name, literal(s.value), [&reply](std::string r) { reply = std::move(r); });
                if (auto f = settle(s.span)) return f;
                if (s.expect && reply != literal(*s.expect))
                    return fail(s.span, fmt::format("expected the reply `{}`, got `{}`", shown(literal(*s.expect)),
                                                    shown(reply.value_or("(none)"))));
                return std::nullopt;
            }
            case K::drive: {
                const Node& n = graph_.nodes[static_cast<std::size_t>(node)];
                const Pin& p = n.pins[static_cast<std::size_t>(pin_index(n, s.member.name))];
                const int level = literal(s.value) == "0" ? 0 : 1;
                // The driver takes the physical level.
                pins_[static_cast<std::size_t>(node)].drive(p.chip, p.line, level ^ (p.active_low ? 1 : 0));
                return settle(s.span);
            }
            case K::advance: return advance_to(clock_.now() + Micros(s.duration.micros), s.span);
            case K::expect_pin: {
                const Node& n = graph_.nodes[static_cast<std::size_t>(node)];
                const std::string want = literal(s.value);
                if (s.member.ref.kind == dsl::Ref::Kind::var) {
                    const int var = s.member.ref.index;
                    return expect_value(s, as_written(want), [&] { return history_.var(node, var).value == want; }, [&] {
                        const History::Var& v = history_.var(node, var);
                        const std::string why =
                            v.set ? fmt::format("last set to {} at {} by `{}`", as_written(v.value), seconds(v.at),
                                                v.by ? v.by->label : "")
                                  : fmt::format("never set: it is still its literal {}", as_written(v.value));
                        return std::pair{as_written(v.value), why};
                    });
                }
                const int pin = pin_index(n, s.member.name);
                return expect_value(s, want, [&] { return std::to_string(fleet_.pin_level(node, pin)) == want; }, [&] {
                    const History::Pin& w = history_.pin(node, pin);
                    std::string why;
                    if (w.written) {
                        why = fmt::format("last written {} at {} by `{}`", w.level, seconds(w.at), w.by ? w.by->label : "");
                    } else if (n.pins[static_cast<std::size_t>(pin)].output) {
                        why = fmt::format("never written: it is still at its initial level {}",
                                          n.pins[static_cast<std::size_t>(pin)].initial);
                    } else {
                        why = "an input: its level is the last one driven that outlasted its debounce";
                    }
                    return std::pair{std::to_string(fleet_.pin_level(node, pin)), why};
                });
            }
            case K::expect_logged: {
                const std::string want = literal(*s.expect);
                const auto& lines = log_.lines[s.node.name];
                for (const auto& line : lines)
                    if (line.find(want) != std::string::npos) return std::nullopt;
                std::vector<dsl::Note> notes;
                notes.push_back({std::nullopt, lines.empty() ? fmt::format("`{}` logged nothing", s.node.name)
                                                             : fmt::format("its last line: `{}`", shown(lines.back()))});
                return fail(s.span, fmt::format("expected `{}` to have logged a line with `{}` (at {})", s.node.name,
                                                shown(want), seconds(clock_.now())),
                            std::move(notes));
            }
            case K::expect_history: {
                const Node& n = graph_.nodes[static_cast<std::size_t>(node)];
                std::string got;
                for (int level : history_.pin(node, pin_index(n, s.member.name)).levels)
                    got += (got.empty() ? "" : " ") + std::to_string(level);
                std::string want;
                for (char c : literal(*s.expect))
                    if (c == '0' || c == '1') want += (want.empty() ? "" : " ") + std::string(1, c);
                if (got == want) return std::nullopt;
                return fail(s.span, fmt::format("expected `{}.{}` to have taken the levels `{}`, but it took `{}` (at {})",
                                                s.node.name, s.member.name, want, got, seconds(clock_.now())));
            }
            case K::expect_received: {
                const std::uint64_t got = fleet_.received(node, s.member.name);
                if (got == static_cast<std::uint64_t>(s.count.value)) return std::nullopt;
                return fail(s.span, fmt::format("expected `{}` to have received {} on `{}`, but it received {} (at {})",
                                                s.node.name, s.count.value, s.member.name, got, seconds(clock_.now())));
            }
        }
        return std::nullopt;
    }

    // `expect NODE.PIN == V [within D]` (or `!=`), on a pin or a variable: `equal()` says whether
    // it is V now. Runs the timers due within D until the expectation holds; if it does not by
    // then, fails with what `seen()` says: what it is, and why (`was last written ...`).
    template <typename Equal, typename Seen>
    std::optional<std::string> expect_value(const dsl::TestStmt& s, const std::string& want_shown, Equal equal, Seen seen) {
        const auto holds = [&] { return equal() == (s.op == dsl::BinOp::eq); };
        const Micros deadline = clock_.now() + (s.within ? Micros(s.within->micros) : Micros(0));
        if (auto f = run_timers(deadline, s.span, [&] { return !holds(); })) return f;
        if (holds()) return std::nullopt;
        clock_.advance_to(deadline);
        const auto [got, why] = seen();
        const char* op = s.op == dsl::BinOp::eq ? "==" : "!=";
        return fail(s.span,
                    fmt::format("expected `{}.{} {} {}`{}, but it is {} at {}", s.node.name, s.member.name, op, want_shown,
                                s.within ? fmt::format(" within {}", seconds(Micros(s.within->micros))) : "", got,
                                seconds(clock_.now())),
                    {{std::nullopt, fmt::format("`{}.{}` was {}", s.node.name, s.member.name, why)}});
    }

    // A value in a message as the language writes it: a number bare, any other text quoted; past
    // 200 bytes cut, with its size after the quotes (engine::shown).
    static std::string as_written(const std::string& value) {
        const bool number = !value.empty() && value.find_first_not_of("0123456789.-") == std::string::npos &&
                            engine::number(value).has_value();
        if (number) return value;
        const std::string_view head = engine::shown_head(value);
        std::string out = "\"";
        for (char c : head) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        return out + '"' + engine::shown(value).substr(head.size());
    }

    const Graph& graph_;
    const dsl::SourceManager& sources_;
    const Limits limits_;
    const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    std::uint64_t steps_ = 0;  // timer firings so far
    std::mt19937_64 rng_;      // for a test's random(P)
    std::vector<drivers::SimDriver> pins_;  // per node
    Capture log_;
    VirtualClock clock_;
    History history_;
    Fleet fleet_;
};

}  // namespace

ScenarioRunner::ScenarioRunner(const dsl::Program& program, const Graph& graph, const dsl::SourceManager& sources,
                               std::uint64_t seed, Limits limits)
    : program_(program), graph_(graph), sources_(sources), seed_(seed), limits_(limits) {}

TestOutcome ScenarioRunner::run(const dsl::Test& test) {
    const auto start = std::chrono::steady_clock::now();
    TestOutcome out;
    out.title = test.title;
    {
        Scenario scenario(graph_, sources_, seed_, limits_);
        if (auto failure = scenario.run(test)) {
            out.passed = false;
            out.failure = std::move(*failure);
        }
        for (const auto& [rule, times] : scenario.history().fired()) fired_[rule] += times;
        branches_ran_.insert(scenario.history().branches_ran().begin(), scenario.history().branches_ran().end());
    }
    out.wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    return out;
}

std::vector<std::string> ScenarioRunner::unfired_rules() const {
    std::vector<std::string> out;
    for (const Node& n : graph_.nodes)
        for (const Source& s : n.sources)
            for (const Rule& r : s.rules) {
                const auto it = fired_.find(&r);
                if (it != fired_.end() && it->second > 0) continue;
                const auto& file = sources_.file(r.span.file);
                out.push_back(fmt::format("{}: {} ({}:{})", n.name, r.label, file.path, file.locate(r.span.begin).line));
            }
    return out;
}

namespace {

// Calls `visit(branch)` for each branch of an `if` in `body`, in the order written (nested ones
// after their own), not looking into a branch that `descend` refuses.
template<typename Visit, typename Descend>
void each_branch(const std::vector<Op>& body, const Visit& visit, const Descend& descend) {
    for (const Op& op : body) {
        each_branch(op.body, visit, descend);
        for (const Branch& b : op.branches) {
            visit(b);
            if (descend(b)) each_branch(b.body, visit, descend);
        }
    }
}

}  // namespace

bool ScenarioRunner::has_branches() const {
    bool any = false;
    const auto visit = [&](const Branch&) { any = true; };
    const auto descend = [](const Branch&) { return false; };
    for (const Node& n : graph_.nodes) {
        for (const Source& s : n.sources)
            for (const Rule& r : s.rules) each_branch(r.body, visit, descend);
        for (const Action& a : n.actions) each_branch(a.body, visit, descend);
    }
    return any;
}

std::vector<std::string> ScenarioRunner::unrun_branches() const {
    std::vector<std::string> out;
    const auto ran = [&](const Branch& b) { return branches_ran_.count(&b) > 0; };
    for (const Node& n : graph_.nodes) {
        const auto list = [&](const std::vector<Op>& body, const std::string& of) {
            each_branch(body, [&](const Branch& b) {
                if (ran(b)) return;
                const auto& file = sources_.file(b.span.file);
                out.push_back(fmt::format("{}: branch `{}` ({}:{}) of {} never ran", n.name, b.keyword, file.path,
                                          file.locate(b.span.begin).line, of));
            }, ran);
        };
        for (const Source& s : n.sources)
            for (const Rule& r : s.rules) {
                const auto it = fired_.find(&r);
                if (it != fired_.end() && it->second > 0) list(r.body, "`" + r.label + "`");
            }
        for (const Action& a : n.actions) list(a.body, "action `" + a.name + "`");
    }
    return out;
}

}  // namespace meshrun::tools
