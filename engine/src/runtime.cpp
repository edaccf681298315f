// The node runtime: every Asio and Beast header of the engine is in this one
// translation unit (they are heavy). One thread runs every node of a fleet.
//
// A message enters a node in one place (Session) and leaves it in one place
// (Link): delivery guarantees, authentication, TLS and metrics attach there.
#include <utility>  // before Asio: Boost 1.74's awaitable.hpp needs std::exchange

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>

#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "meshrun/engine/eval.hpp"
#include "meshrun/engine/runtime.hpp"
#include "message_counter.hpp"

namespace meshrun::engine {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
// One concrete executor everywhere: no type-erased executor on the hot path.
using Executor = asio::io_context::executor_type;
template<typename T> using task = asio::awaitable<T, Executor>;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Resolver = asio::ip::basic_resolver<tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock, asio::wait_traits<std::chrono::steady_clock>, Executor>;
using TcpStream = beast::basic_stream<tcp, Executor>;
using WsStream = websocket::stream<TcpStream>;  // a link's, to another node
using EdgeWatch = asio::posix::basic_stream_descriptor<Executor>;  // an input line's edge descriptor

namespace {

constexpr std::size_t max_message = 64 * 1024;
std::string unbracket(std::string_view host);
std::string host_port(const std::string& host, std::uint16_t port);
constexpr asio::use_awaitable_t<Executor> use;

class SteadyClock final : public Clock {
public:
    explicit SteadyClock(asio::io_context& io) : io_(io), origin_(std::chrono::steady_clock::now()) {}
    Micros now() const override {
        return std::chrono::duration_cast<Micros>(std::chrono::steady_clock::now() - origin_);
    }
    // steady_clock is CLOCK_MONOTONIC (libstdc++ on Linux), the clock of libgpiod's edge timestamps.
    Micros from_monotonic(std::chrono::nanoseconds t) const override {
        return std::chrono::duration_cast<Micros>(t - origin_.time_since_epoch());
    }
    void call_at(Micros when, std::function<void()> fn) override {
        auto timer = std::make_shared<asio::steady_timer>(io_, origin_ + when);
        timer->async_wait([timer, fn = std::move(fn)](beast::error_code ec) {
            if (!ec) fn();
        });
    }

private:
    asio::io_context& io_;
    std::chrono::steady_clock::time_point origin_;
};

// A one-shot flag a coroutine can wait for.
class Event {
public:
    explicit Event(Executor ex) : timer_(ex, Timer::time_point::max()) {}
    void notify() {
        set_ = true;
        timer_.cancel();
    }
    task<void> wait() {
        while (!set_) {
            beast::error_code ec;
            co_await timer_.async_wait(asio::redirect_error(use, ec));
        }
    }
    void reset() { set_ = false; }

private:
    Timer timer_;
    bool set_ = false;
};

// Wakes every coroutine waiting on it; each waits again while its own condition holds:
//     while (full()) co_await room.wait();
class Signal {
public:
    explicit Signal(Executor ex) : timer_(ex, Timer::time_point::max()) {}
    void notify() { timer_.cancel(); }
    task<void> wait() {
        beast::error_code ec;
        co_await timer_.async_wait(asio::redirect_error(use, ec));
    }

private:
    Timer timer_;
};

// Retries back off: 50 ms doubling to 2 s, each pause drawn between half and all of it
// (jitter, so that peers that failed together do not retry together).
class Backoff {
public:
    explicit Backoff(std::chrono::milliseconds first = std::chrono::milliseconds(50),
                     std::chrono::milliseconds most = std::chrono::milliseconds(2000))
        : first_(first), most_(most), next_(first), rng_(std::random_device{}()) {}
    std::chrono::milliseconds next() {
        const auto half = next_.count() / 2;
        const auto pause = std::chrono::milliseconds(half + std::uniform_int_distribution<std::int64_t>(0, half)(rng_));
        next_ = std::min(next_ * 2, most_);
        return pause;
    }
    void reset() { next_ = first_; }
    task<void> pause(Executor ex) {
        Timer timer(ex, next());
        beast::error_code ec;
        co_await timer.async_wait(asio::redirect_error(use, ec));
    }

private:
    std::chrono::milliseconds first_, most_, next_;
    std::minstd_rand rng_;
};

// A failure that repeats is logged once, then summarised: each kind of failure the
// first time it happens in a run of failures, then once a minute a count of what
// followed, and once when it works again. Never a line per attempt.
class Repeated {
public:
    explicit Repeated(std::string subject) : subject_(std::move(subject)) {}

    // The line to log for this failure (`line` when `why` is new in this run), if any.
    std::optional<std::string> failed(Micros now, std::string_view line, std::string_view why) {
        last_ = why;
        if (count_++ == 0) since_ = summarised_ = now;
        if (std::find(seen_.begin(), seen_.end(), why) == seen_.end() && seen_.size() < 8) {
            seen_.emplace_back(why);
            return std::string(line);
        }
        ++unlogged_;
        if (now - summarised_ < std::chrono::minutes(1)) return std::nullopt;
        auto summary = fmt::format("{}: {} more failure{} in the last {} s (last: {})", subject_, unlogged_,
                                   unlogged_ == 1 ? "" : "s", (now - summarised_).count() / 1'000'000, last_);
        summarised_ = now;
        unlogged_ = 0;
        return summary;
    }

    // The line to log once it works again, if it had failed.
    std::optional<std::string> recovered(Micros now, std::string_view what) {
        if (count_ == 0) return std::nullopt;
        auto line = fmt::format("{} after {} failure{} in {} s (last: {})", what, count_, count_ == 1 ? "" : "s",
                                (now - since_).count() / 1'000'000, last_);
        count_ = unlogged_ = 0;
        seen_.clear();
        return line;
    }

private:
    std::string subject_;
    std::uint64_t count_ = 0, unlogged_ = 0;
    Micros since_{0}, summarised_{0};
    std::vector<std::string> seen_;  // the kinds of failure of this run already logged (the first 8)
    std::string last_;
};

// A message as a log line shows it: a long one cut (at a character's start), with its size.
std::string shown(std::string_view message) {
    constexpr std::size_t most = 200;
    if (message.size() <= most) return std::string(message);
    std::size_t cut = most;
    while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
    return fmt::format("{}... ({} bytes)", message.substr(0, cut), message.size());
}

// The completion of a detached coroutine: what escapes it is logged, never swallowed.
// `node` is a name of the graph, which outlives every coroutine of the fleet.
auto or_log(Logger& log, std::string_view node, std::string what) {
    return [&log, node, what = std::move(what)](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            log.line(std::string(node), fmt::format("error: {} stopped: {}", what, x.what()));
        } catch (...) {
            log.line(std::string(node), fmt::format("error: {} stopped", what));
        }
    };
}

bool quiet_error(const beast::error_code& ec) {
    return ec == asio::error::operation_aborted || ec == websocket::error::closed || ec == asio::error::eof ||
           ec == beast::error::timeout || ec == asio::error::connection_reset;
}

// The server side of a connection, under Beast's websocket stream.
// - Replies are held until the session next needs input, then go out in one
//   write: a burst of pipelined messages is answered with one write, a lone
//   message at once (its session asks for input right after replying).
// - It counts the whole messages received (MessageCounter), so that the session
//   reads those without a trip through the event loop.
class CoalescingStream {
public:
    using executor_type = Executor;

    explicit CoalescingStream(TcpStream&& next) : next_(std::move(next)) {}
    executor_type get_executor() { return next_.get_executor(); }
    TcpStream& next_layer() { return next_; }
    MessageCounter& received() { return received_; }

    template<typename Buffers, typename Handler>
    auto async_read_some(const Buffers& buffers, Handler&& handler) {
        return asio::async_initiate<Handler, void(beast::error_code, std::size_t)>(
            [this](auto h, const Buffers& b) {
                flush([this, b, h = std::move(h)](beast::error_code ec) mutable {
                    if (ec) return h(ec, 0);
                    reading_ = true;
                    // Straight to the socket: basic_stream's timer bookkeeping is not needed
                    // once the websocket is open (Beast keeps its own handshake timer).
                    next_.socket().async_read_some(b, [this, b, h = std::move(h)](beast::error_code e, std::size_t n) mutable {
                        reading_ = false;
                        count(b, n);
                        h(e, n);
                    });
                });
            },
            handler, buffers);
    }

    // Beast's own frames (close, pong) when it writes them asynchronously: held like
    // replies, unless a read is already waiting on the socket (a close frame sent while
    // the session waits for input): then nothing else would send them.
    template<typename Buffers, typename Handler>
    auto async_write_some(const Buffers& buffers, Handler&& handler) {
        return asio::async_initiate<Handler, void(beast::error_code, std::size_t)>(
            [this](auto h, const Buffers& b) {
                const std::size_t n = hold(b);
                if (pending_.size() < flush_at && !reading_) {
                    asio::post(get_executor(), beast::bind_front_handler(std::move(h), beast::error_code{}, n));
                } else {
                    flush([h = std::move(h), n](beast::error_code ec) mutable { h(ec, ec ? 0 : n); });
                }
            },
            handler, buffers);
    }

    // Beast's frames when it writes them synchronously (a pong, or a close frame
    // while it reads synchronously): held, as replies are.
    template<typename Buffers>
    std::size_t write_some(const Buffers& buffers, beast::error_code& ec) {
        ec = {};
        return hold(buffers);
    }
    template<typename Buffers>
    std::size_t write_some(const Buffers& buffers) {
        return hold(buffers);
    }

    // Beast reads synchronously only messages already received whole, so it never
    // asks for more here. Were it to (a bug), waiting would stall every node of the
    // thread: the connection fails instead.
    template<typename Buffers>
    std::size_t read_some(const Buffers&, beast::error_code& ec) {
        ec = asio::error::would_block;
        return 0;
    }
    template<typename Buffers>
    std::size_t read_some(const Buffers& buffers) {
        beast::error_code ec;
        read_some(buffers, ec);
        throw beast::system_error(ec);
    }

    // A reply, as one unfragmented text frame (a server's frames are not masked).
    // Framed here: Beast's write costs more than all the rest of a message's
    // handling. The session checks that the stream is still open first.
    void send_text(std::string_view payload) {
        const std::uint64_t n = payload.size();
        char head[10];
        std::size_t size = 2;
        head[0] = '\x81';  // FIN, text
        if (n < 126) {
            head[1] = static_cast<char>(n);
        } else if (n < 65536) {
            head[1] = 126;
            size = 4;
        } else {
            head[1] = 127;
            size = 10;
        }
        for (std::size_t i = 2; i < size; ++i) head[i] = static_cast<char>(n >> (8 * (size - 1 - i)));
        pending_.append(head, size).append(payload);
    }

    // Writes what is held, then calls `done`: at once when the socket takes it all
    // (the usual case), else once the rest has gone out. One write at a time: a
    // flush asked for meanwhile waits for it.
    template<typename Done>
    void flush(Done&& done) {
        if (writing_) {
            auto shared = std::make_shared<std::decay_t<Done>>(std::forward<Done>(done));
            after_write_.push_back([shared](beast::error_code ec) { (*shared)(ec); });
            return;
        }
        if (pending_.empty()) return done(beast::error_code{});
        beast::error_code ec;
        const std::size_t n = next_.socket().write_some(asio::buffer(pending_), ec);
        if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
            pending_.clear();
            return done(ec);
        }
        pending_.erase(0, ec ? 0 : n);
        if (pending_.empty()) return done(beast::error_code{});
        writing_ = true;
        auto data = std::make_shared<std::string>(std::move(pending_));
        pending_.clear();
        asio::async_write(next_.socket(), asio::buffer(*data),
                          [this, data, done = std::forward<Done>(done)](beast::error_code e, std::size_t) mutable {
                              writing_ = false;
                              auto waiting = std::move(after_write_);
                              after_write_.clear();
                              for (auto& w : waiting) flush(std::move(w));
                              done(e);
                          });
    }

    // Sends what is held and the end of the stream (teardown below); the rest,
    // waiting for the client's end, is drain()'s.
    void shut_down(beast::error_code& ec) {
        shut_ = true;
        if (!pending_.empty() && !writing_) {
            next_.socket().write_some(asio::buffer(pending_), ec);  // a close frame: it fits
            pending_.clear();
        }
        next_.socket().shutdown(Socket::shutdown_send, ec);
    }

    // After shut_down(): waits (5 s at most) for the client to end its side, then
    // closes the socket.
    task<void> drain() {
        if (!shut_ || !next_.socket().is_open()) co_return;
        next_.expires_after(std::chrono::seconds(5));
        char scratch[512];
        beast::error_code ec;
        while (!ec) co_await next_.async_read_some(asio::buffer(scratch), asio::redirect_error(use, ec));
        next_.socket().close(ec);
    }

private:
    template<typename Buffers>
    std::size_t hold(const Buffers& buffers) {
        const std::size_t n = asio::buffer_size(buffers);
        const std::size_t at = pending_.size();
        pending_.resize(at + n);
        asio::buffer_copy(asio::buffer(pending_.data() + at, n), buffers);
        return n;
    }

    // Shows the counter the first `n` bytes that a read put in `buffers`.
    template<typename Buffers>
    void count(const Buffers& buffers, std::size_t n) {
        for (auto it = asio::buffer_sequence_begin(buffers); n > 0 && it != asio::buffer_sequence_end(buffers); ++it) {
            const asio::mutable_buffer part = *it;
            const std::size_t size = std::min(n, part.size());
            received_.scan(static_cast<const unsigned char*>(part.data()), size);
            n -= size;
        }
    }

    static constexpr std::size_t flush_at = 64 * 1024;
    TcpStream next_;
    MessageCounter received_;
    std::string pending_;
    std::vector<std::function<void(beast::error_code)>> after_write_;
    bool reading_ = false, writing_ = false, shut_ = false;
};

// The end of a connection after the closing handshake, or after Beast closed it over
// a bad frame: what is held and the end of the stream go out; the session's drain()
// then waits for the client's end. (Beast 1.74's own teardown can close the socket
// with input still unread, and the client then sees a reset instead of an end.)
void teardown(beast::role_type, CoalescingStream& s, beast::error_code& ec) { s.shut_down(ec); }

template<typename Handler>
void async_teardown(beast::role_type, CoalescingStream& s, Handler&& handler) {
    s.flush([&s, handler = std::forward<Handler>(handler)](beast::error_code) mutable {
        beast::error_code ec;
        s.shut_down(ec);
        asio::post(s.get_executor(), beast::bind_front_handler(std::move(handler), ec));
    });
}

using ServerStream = websocket::stream<CoalescingStream>;

// What one firing of a rule knows: the value and tick it runs with, and the
// reply of a message rule (its first `ack`).
struct Firing {
    const Rule* rule = nullptr;  // what fired, for pin histories and coverage
    std::string value;
    std::int64_t tick = 0;
    bool message = false;
    std::optional<std::string> reply;
    std::shared_ptr<Event> replied;  // message rules that may reply before they end
    std::uint64_t steps = 0;         // statements run, and repeat rounds: bounded (max_steps)
};

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

struct NodeRt;

// What became of a message sent over a link: the peer's acknowledgement, or why
// the peer refused it (the message is then dropped, not sent again).
struct Delivery {
    std::string ack;
    std::optional<std::string> refused;
};

// One outbound connection per target channel. Requests go out in order, one at a
// time, each waiting for its acknowledgement; at most `queue_limit` are held, and a
// sender waits for room. A reader waits on the connection the whole time it is open,
// so a peer that closes is noticed when it closes. Every reconnect backs off.
class Link {
public:
    // `target` is the node's index in the graph: its port is looked up when connecting,
    // since a fleet on any free ports knows them only once it listens.
    Link(NodeRt& owner, int target, std::string channel);

    task<Delivery> request(std::string payload);
    void stop();
    // The messages it holds: queued, and waiting for room in the queue.
    std::size_t held() const { return queue_.size() + waiting_; }
    std::string name() const { return target_ + "/" + channel_; }

private:
    struct Request {
        std::string payload;
        Delivery result;
        Event done;
    };
    task<void> pump();
    task<std::string> connect();  // the reason it failed, or empty
    task<void> read(std::shared_ptr<WsStream> ws);
    void finish(Delivery result);
    void log(std::string_view text);

    NodeRt& owner_;
    int node_;
    std::string host_;
    std::string target_, channel_;
    std::deque<std::shared_ptr<Request>> queue_;
    Signal wake_, room_, answered_;
    std::shared_ptr<WsStream> ws_;
    std::optional<std::string> reply_;  // the answer to the request in flight, from read()
    std::string where_;                  // HOST:PORT it connects to
    std::string down_;                   // why the connection ended, from read()
    bool refused_ = false;  // the peer closed over the message in flight (1003, 1007, 1009)
    Backoff backoff_;
    Repeated failures_;  // named for the link in the constructor
    Repeated full_;      // the queue full: logged once, then once a minute
    bool pumping_ = false, stopping_ = false, awaiting_ = false;
    std::uint64_t unsolicited_ = 0;
    std::size_t waiting_ = 0;  // senders waiting for room
};

struct PinState {
    int reported = 0;  // the last level reported to rules (inputs)
    int pending = 0;   // the raw level waiting out its debounce
    std::uint64_t generation = 0;
};

struct FleetCore {
    FleetCore(const Graph& g, drivers::PinDriver& p, Logger& l, FleetOptions o)
        : graph(g), pins(p), log(l), options(std::move(o)) {}
    const Graph& graph;
    drivers::PinDriver& pins;
    Logger& log;
    FleetOptions options;
    asio::io_context io{1};  // one thread runs every node of the fleet
    std::unique_ptr<SteadyClock> steady;
    Clock* clock = nullptr;
    std::vector<std::unique_ptr<NodeRt>> nodes;
    std::vector<std::uint16_t> ports;  // per graph node
    std::vector<bool> here;            // per graph node: whether it runs in this fleet
    std::vector<std::string> bound;    // per graph node here: the address it listens on
    bool stopping = false;
    // Connections open, and the most there may be: the descriptor limit less what links,
    // pins and the process itself need, so that a crowd of clients can never take the
    // descriptor a link needs to deliver what it holds.
    std::size_t connections = 0, max_connections = 0;
    std::uint64_t in_flight = 0;       // requests sent and not yet acknowledged
    Node tester_spec;                  // the test runner, as a node that only sends
    std::unique_ptr<NodeRt> tester;
    std::map<std::pair<int, std::string>, std::unique_ptr<Link>> test_links;

    // Where to reach a node on this machine: the address it listens on (loopback in
    // place of every interface), or IPv4's loopback.
    std::string loopback_of(int node) const {
        const std::string& a = bound[static_cast<std::size_t>(node)];
        if (a.empty() || a == "0.0.0.0") return "127.0.0.1";
        return a == "::" ? "::1" : a;
    }
};

struct NodeRt {
    FleetCore& fleet;
    const Node& spec;
    std::vector<std::unique_ptr<drivers::Line>> lines;
    std::vector<std::shared_ptr<EdgeWatch>> edge_watches;  // after `lines`: closed before the lines go
    std::vector<PinState> pin_state;
    std::vector<std::unique_ptr<Link>> links;  // per edge
    std::optional<Acceptor> acceptor;
    std::set<ServerStream*> sessions;
    std::vector<std::uint64_t> received;  // per source (channels come first)
    std::uint64_t replied = 0, sent = 0;
    struct RuleRt {
        bool waits = false;       // can_wait of its body, worked out once
        std::uint64_t fires = 0;  // for coverage
    };
    std::unordered_map<const Rule*, RuleRt> rules;
    mutable std::vector<signed char> action_waits;  // per action: -1 not known yet, else whether it can wait
    struct PinWrite {
        bool written = false;
        Micros at{0};
        const Rule* rule = nullptr;  // whose firing wrote it
        int level = 0;
    };
    std::vector<PinWrite> last_write;            // per pin
    std::vector<std::vector<int>> history;       // per pin: the levels it took, in order (bounded)
    std::mt19937_64 rng;
    // Firings waiting for room in a full link. While there are any, sessions read no
    // more messages (the clients' TCP windows fill: back pressure), and timers and
    // input edges do not start firings that could send (they are counted instead).
    std::uint64_t waiting = 0;
    Signal room;
    std::uint64_t skipped = 0;
    std::size_t delays = 0;  // `after` bodies pending (max_delays)
    Repeated session_failures{"connections"};  // ended in an error: a client's fault, not the node's

    NodeRt(FleetCore& f, const Node& s, std::uint64_t seed)
        : fleet(f), spec(s), received(s.sources.size()), action_waits(s.actions.size(), -1), rng(seed), room(f.io.get_executor()) {
        for (const Source& src : spec.sources)
            for (const Rule& r : src.rules) rules[&r].waits = can_wait(r.body);
    }

    void log(std::string_view text) { fleet.log.line(spec.name, text); }

    void done_waiting() {
        if (--waiting > 0) return;
        room.notify();
        if (skipped == 0) return;
        log(fmt::format("sending again: {} firing{} of timers, inputs and delays {} skipped while a queue was full", skipped,
                        skipped == 1 ? "" : "s", skipped == 1 ? "was" : "were"));
        skipped = 0;
    }

    // A firing not started by a message may not pile up behind a full link.
    bool skip(const Rule& rule) {
        if (waiting == 0 || !rules.at(&rule).waits) return false;
        if (skipped++ == 0) log(fmt::format("skipping firings of `{}` while a queue is full", rule.label));
        return true;
    }
    std::size_t source_index(const Source& s) const { return static_cast<std::size_t>(&s - spec.sources.data()); }
    Executor executor() { return fleet.io.get_executor(); }

    int read_pin(int pin) const {
        const Pin& p = spec.pins[static_cast<std::size_t>(pin)];
        return p.output ? lines[static_cast<std::size_t>(pin)]->read() : pin_state[static_cast<std::size_t>(pin)].reported;
    }

    std::string eval(const Expr& e, const Firing& f) {
        EvalContext ctx{f.value, f.tick, [this](int pin) { return read_pin(pin); }, &rng};
        return engine::eval(e, ctx);
    }

    const Rule* match(const Source& source, const Firing& f) {
        for (const Rule& r : source.rules) {
            if (r.pattern && *r.pattern != f.value) continue;
            if (r.guard && !truthy(eval(*r.guard, f))) continue;
            return &r;
        }
        return nullptr;
    }

    task<void> exec(const std::vector<Op>& body, std::shared_ptr<Firing> f);
    void run_now(const std::vector<Op>& body, Firing& f);
    void write_pin(int pin, int level, const Firing& f);
    void remember(int pin, int level);
    static constexpr std::size_t max_history = 10'000;
    void step(const Op& op, Firing& f);

    // Whether running `body` can wait (on a send's acknowledgement). Rules that
    // cannot are run at once, without a coroutine: the common case, and the fast one.
    bool can_wait(const std::vector<Op>& body) const {
        for (const Op& op : body) {
            if (op.kind == Op::Kind::send) return true;
            if (op.kind == Op::Kind::repeat && can_wait(op.body)) return true;
            if (op.kind == Op::Kind::call && action_can_wait(op.action)) return true;
        }
        return false;
    }

    // Worked out once an action: actions that call the next one twice would make it exponential.
    bool action_can_wait(int action) const {
        signed char& known = action_waits[static_cast<std::size_t>(action)];
        if (known < 0) known = can_wait(spec.actions[static_cast<std::size_t>(action)].body) ? 1 : 0;
        return known == 1;
    }

    // The reply to a message, when its rule runs to the end without waiting;
    // otherwise nothing, and `rule` is the rule to hand to deliver().
    std::optional<std::string> deliver_now(const Source& channel, std::string& value, const Rule*& rule) {
        Firing f;
        f.value.swap(value);  // handed back below when the rule has to wait
        f.message = true;
        rule = match(channel, f);
        RuleRt* rt = rule ? &rules.at(rule) : nullptr;
        if (rt && rt->waits) {
            value.swap(f.value);
            return std::nullopt;
        }
        ++received[source_index(channel)];
        if (rule) {
            ++rt->fires;
            f.rule = rule;
            try {
                run_now(rule->body, f);
            } catch (const std::exception& e) {
                failed(f, e);
            }
        }
        ++replied;
        return f.reply ? std::move(*f.reply) : std::string("n/a");
    }

    // A message arrives on a channel: the reply is the firing's first `ack`, or `n/a`.
    task<std::string> deliver(const Source& channel, const Rule* rule, std::string value) {
        ++received[source_index(channel)];
        auto f = std::make_shared<Firing>();
        f->rule = rule;
        f->value = std::move(value);
        f->message = true;
        ++rules.at(rule).fires;
        f->replied = std::make_shared<Event>(executor());
        asio::co_spawn(
            executor(),
            [this, rule, f]() -> task<void> {
                co_await run_guarded(rule->body, f);
                if (!f->reply) f->reply = "n/a";
                f->replied->notify();
            },
            or_log(fleet.log, spec.name, "a firing"));
        co_await f->replied->wait();
        ++replied;
        co_return *f->reply;
    }

    void fire(const Rule& rule, std::shared_ptr<Firing> f) {
        if (skip(rule)) return;
        RuleRt& rt = rules.at(&rule);
        ++rt.fires;
        f->rule = &rule;
        start(rule.body, std::move(f), rt.waits);
    }

    // Runs a body: at once when it cannot wait, else as a coroutine of its own.
    void start(const std::vector<Op>& body, std::shared_ptr<Firing> f, bool waits) {
        if (waits) return asio::co_spawn(executor(), run_guarded(body, std::move(f)), or_log(fleet.log, spec.name, "a firing"));
        try {
            run_now(body, *f);
        } catch (const std::exception& e) {
            failed(*f, e);
        }
    }

    task<void> run_guarded(const std::vector<Op>& body, std::shared_ptr<Firing> f) {
        try {
            co_await exec(body, f);
        } catch (const std::exception& e) {
            failed(*f, e);
        }
    }

    // A firing that fails (a pin write refused, a chip gone) is logged with its node and
    // rule; a message's firing still answers, with the error, and the node goes on.
    void failed(Firing& f, const std::exception& e) {
        log(fmt::format("error: `{}` failed: {}", f.rule ? f.rule->label : std::string("a firing"), e.what()));
        if (f.message && !f.reply) {
            f.reply = fmt::format("error: {}", e.what());
            if (f.replied) f.replied->notify();
        }
    }

    // An input changed at `when` (the kernel's timestamp of the edge, or the moment the
    // simulated driver said so): it is reported once it has held for the whole debounce
    // time from then; a change back before that cancels it. The same for every driver.
    void on_input(int pin, int level, Micros when) {
        PinState& st = pin_state[static_cast<std::size_t>(pin)];
        st.pending = level;
        const std::uint64_t generation = ++st.generation;
        const Micros debounce = spec.pins[static_cast<std::size_t>(pin)].debounce;
        if (debounce.count() == 0) {
            report(pin);
            return;
        }
        fleet.clock->call_at(std::max(fleet.clock->now(), when + debounce), [this, pin, generation] {
            if (pin_state[static_cast<std::size_t>(pin)].generation == generation) report(pin);
        });
    }

    void report(int pin) {
        PinState& st = pin_state[static_cast<std::size_t>(pin)];
        if (st.pending == st.reported) return;
        st.reported = st.pending;
        remember(pin, st.reported);
        for (const Source& s : spec.sources) {
            if (s.kind != Source::Kind::pin || s.pin != pin) continue;
            auto f = std::make_shared<Firing>();
            f->value = std::to_string(st.reported);
            if (const Rule* r = match(s, *f)) fire(*r, std::move(f));
        }
    }

    void start_timer(const Source& s, std::int64_t tick, Micros origin) {
        if (s.times && tick >= *s.times) return;
        const Micros due = origin + s.period * (tick + 1);
        fleet.clock->call_at(due, [this, &s, tick, origin] {
            if (fleet.stopping) return;
            auto f = std::make_shared<Firing>();
            f->tick = tick;
            fire(s.rules.front(), std::move(f));
            start_timer(s, tick + 1, origin);
        });
    }

    drivers::PinDriver& pin_driver() {
        const auto index = static_cast<std::size_t>(&spec - fleet.graph.nodes.data());
        const auto& per_node = fleet.options.node_pins;
        return index < per_node.size() && per_node[index] ? *per_node[index] : fleet.pins;
    }

    void start_pins() {
        for (std::size_t i = 0; i < spec.pins.size(); ++i) {
            const Pin& p = spec.pins[i];
            drivers::LineConfig cfg;
            cfg.chip = p.chip;
            cfg.line = p.line;
            cfg.direction = p.output ? drivers::Direction::output : drivers::Direction::input;
            cfg.active_low = p.active_low;
            cfg.bias = p.bias == Pin::Bias::pull_up     ? drivers::Bias::pull_up
                       : p.bias == Pin::Bias::pull_down ? drivers::Bias::pull_down
                                                        : drivers::Bias::none;
            cfg.initial = p.initial;
            cfg.consumer = fmt::format("meshrun:{}:{}:{}", fleet.graph.name, spec.name, p.name);
            drivers::ChangeHandler on_change;
            if (!p.output) {
                const int pin = static_cast<int>(i);
                on_change = [this, pin](int level) {
                    asio::post(fleet.io, [this, pin, level] { on_input(pin, level, fleet.clock->now()); });
                };
            }
            try {
                lines.push_back(pin_driver().request(cfg, std::move(on_change)));
            } catch (const drivers::LineError& e) {
                throw PinError(p.span, fmt::format("node `{}` cannot have pin `{}`: {}", spec.name, p.name, e.summary), e.help);
            } catch (const std::exception& e) {
                throw PinError(p.span, fmt::format("node `{}` cannot have pin `{}`: {}", spec.name, p.name, e.what()));
            }
            pin_state.push_back({});
            last_write.push_back({});
            history.emplace_back();
            if (!p.output) pin_state.back().reported = pin_state.back().pending = lines.back()->read();
            if (const int fd = lines.back()->edge_fd(); fd >= 0) {
                // Waited on in the loop: no thread per line, no polling. The descriptor is the line's:
                // watch a duplicate of it.
                auto watch = std::make_shared<EdgeWatch>(executor(), ::dup(fd));
                edge_watches.push_back(watch);
                asio::co_spawn(executor(), watch_edges(static_cast<int>(i), std::move(watch)),
                               or_log(fleet.log, spec.name, fmt::format("pin `{}`", p.name)));
            }
        }
    }

    // Reads an input's edges as the kernel reports them, until the node stops or the line fails.
    task<void> watch_edges(int pin, std::shared_ptr<EdgeWatch> watch) {
        const std::string& name = spec.pins[static_cast<std::size_t>(pin)].name;
        while (!fleet.stopping) {
            beast::error_code ec;
            co_await watch->async_wait(EdgeWatch::wait_read, asio::redirect_error(use, ec));
            if (ec) co_return;  // closed: the node stops
            std::vector<drivers::EdgeEvent> edges;
            try {
                edges = lines[static_cast<std::size_t>(pin)]->read_edges();
            } catch (const std::exception& e) {
                log(fmt::format("error: pin `{}` reports no more edges: {}", name, e.what()));
                co_return;
            }
            for (const drivers::EdgeEvent& edge : edges) on_input(pin, edge.level, fleet.clock->from_monotonic(edge.when));
        }
    }

    std::string status() const {
        nlohmann::json j;
        j["node"] = spec.name;
        j["channels"] = nlohmann::json::array();
        for (const Source& s : spec.sources)
            if (s.kind == Source::Kind::channel) j["channels"].push_back(s.name);
        j["pins"] = nlohmann::json::object();
        for (std::size_t i = 0; i < spec.pins.size(); ++i) j["pins"][spec.pins[i].name] = read_pin(static_cast<int>(i));
        nlohmann::json per_channel = nlohmann::json::object();
        for (const Source& s : spec.sources)
            if (s.kind == Source::Kind::channel) per_channel[s.name] = received[source_index(s)];
        j["counters"] = {{"received", per_channel}, {"replied", replied}, {"sent", sent}};
        return j.dump();
    }
};

void NodeRt::write_pin(int pin, int level, const Firing& f) {
    lines[static_cast<std::size_t>(pin)]->write(level);
    last_write[static_cast<std::size_t>(pin)] = PinWrite{true, fleet.clock->now(), f.rule, level};
    remember(pin, level);
}

void NodeRt::remember(int pin, int level) {
    auto& h = history[static_cast<std::size_t>(pin)];
    if (h.size() < max_history) h.push_back(level);
}

// The ops that never wait, shared by both ways of running a body.
void NodeRt::step(const Op& op, Firing& f) {
    switch (op.kind) {
        case Op::Kind::write: write_pin(op.pin, truthy(eval(op.expr, f)) ? 1 : 0, f); break;
        case Op::Kind::toggle: write_pin(op.pin, lines[static_cast<std::size_t>(op.pin)]->read() ? 0 : 1, f); break;
        case Op::Kind::ack:
            if (f.message && !f.reply) {
                f.reply = eval(op.expr, f);
                if (f.replied) f.replied->notify();
            }
            break;
        case Op::Kind::log: log(eval(op.expr, f)); break;
        case Op::Kind::after: {
            // The body runs later with the value and tick it was scheduled with.
            if (delays >= max_delays)
                throw std::runtime_error(fmt::format("{} delays (`after`) are pending on this node already, the most it holds",
                                                     max_delays));
            ++delays;
            auto later = std::make_shared<Firing>();
            later->rule = f.rule;
            later->value = f.value;
            later->tick = f.tick;
            const std::vector<Op>* then = &op.body;
            const bool wait = can_wait(op.body);
            fleet.clock->call_at(fleet.clock->now() + op.delay, [this, then, later, wait] {
                --delays;
                if (fleet.stopping) return;
                if (wait && waiting > 0) {
                    if (skipped++ == 0) log("skipping a delayed body that sends while a queue is full");
                    return;
                }
                start(*then, later, wait);
            });
            break;
        }
        case Op::Kind::send:
        case Op::Kind::repeat:
        case Op::Kind::call: break;  // run_now and exec handle these
    }
}

void NodeRt::run_now(const std::vector<Op>& body, Firing& f) {
    for (const Op& op : body) {
        count_step(f);
        if (op.kind == Op::Kind::repeat) {
            for (std::int64_t i = 0; i < op.count; ++i) {
                count_step(f);
                run_now(op.body, f);
            }
        } else if (op.kind == Op::Kind::call) {
            run_now(spec.actions[static_cast<std::size_t>(op.action)].body, f);
        } else {
            step(op, f);
        }
    }
}

task<void> NodeRt::exec(const std::vector<Op>& body, std::shared_ptr<Firing> f) {
    for (const Op& op : body) {
        count_step(*f);
        switch (op.kind) {
            case Op::Kind::send: {
                const std::string payload = eval(op.expr, *f);
                const Edge& e = spec.edges[static_cast<std::size_t>(op.edge)];
                log(fmt::format("> sending payload: {} to {}/{}", shown(payload),
                                fleet.graph.nodes[static_cast<std::size_t>(e.node)].name, e.channel));
                ++sent;
                Delivery d = co_await links[static_cast<std::size_t>(op.edge)]->request(payload);
                if (d.refused) {
                    // The link has logged it; the firing's reply says so, unless it went already.
                    if (f->message && !f->reply) {
                        f->reply = fmt::format("error: the message to {}/{} was dropped: {}",
                                               fleet.graph.nodes[static_cast<std::size_t>(e.node)].name, e.channel, *d.refused);
                        if (f->replied) f->replied->notify();
                    }
                    break;
                }
                log(fmt::format("< {}", shown(d.ack)));
                break;
            }
            case Op::Kind::repeat:
                for (std::int64_t i = 0; i < op.count; ++i) {
                    count_step(*f);
                    co_await exec(op.body, f);
                }
                break;
            case Op::Kind::call: co_await exec(spec.actions[static_cast<std::size_t>(op.action)].body, f); break;
            default: step(op, *f); break;
        }
    }
}

// ---- outbound ---------------------------------------------------------------

Link::Link(NodeRt& owner, int target, std::string channel)
    : owner_(owner),
      node_(target),
      host_(owner.fleet.graph.nodes[static_cast<std::size_t>(target)].host),
      target_(owner.fleet.graph.nodes[static_cast<std::size_t>(target)].name),
      channel_(std::move(channel)),
      wake_(owner.executor()),
      room_(owner.executor()),
      answered_(owner.executor()),
      failures_(target_ + "/" + channel_),
      full_("the queue to " + target_ + "/" + channel_) {}

void Link::log(std::string_view text) { owner_.log(text); }

task<Delivery> Link::request(std::string payload) {
    ++owner_.fleet.in_flight;
    if (payload.size() > max_message) {
        // Every meshrun node closes a connection over such a message (1009): refuse it here.
        --owner_.fleet.in_flight;
        const auto why = fmt::format("the message is {} bytes, over the limit of {} bytes", payload.size(), max_message);
        log(fmt::format("error: a message to {} was dropped: {}", name(), why));
        co_return Delivery{{}, why};
    }
    const std::size_t limit = std::max<std::size_t>(1, owner_.fleet.options.queue_limit);
    if (queue_.size() >= limit) {
        const auto why = fmt::format("the queue to {} is full ({} message{}); sending rules wait for room", name(), limit,
                                     limit == 1 ? "" : "s");
        if (auto line = full_.failed(owner_.fleet.clock->now(), why, why)) log(*line);
        ++owner_.waiting;
        ++waiting_;
        while (queue_.size() >= limit && !stopping_) co_await room_.wait();
        --waiting_;
        owner_.done_waiting();
    }
    auto r = std::make_shared<Request>(Request{std::move(payload), {}, Event(owner_.executor())});
    queue_.push_back(r);
    wake_.notify();
    if (!pumping_) {
        pumping_ = true;
        asio::co_spawn(owner_.executor(), pump(), [this](std::exception_ptr e) {
            pumping_ = false;
            or_log(owner_.fleet.log, owner_.spec.name, "the link to " + name())(e);
        });
    }
    co_await r->done.wait();
    --owner_.fleet.in_flight;
    co_return std::move(r->result);
}

void Link::stop() {
    stopping_ = true;
    if (ws_) beast::get_lowest_layer(*ws_).close();
    wake_.notify();
    room_.notify();
    answered_.notify();
}

// The front request is answered (or refused): the next one may go.
void Link::finish(Delivery result) {
    auto r = queue_.front();
    queue_.pop_front();
    if (queue_.empty()) queue_.shrink_to_fit();  // memory comes back after a burst
    r->result = std::move(result);
    r->done.notify();
    room_.notify();
}

task<std::string> Link::connect() {
    // A node of this fleet listens on loopback; others where the file says.
    const auto& fleet = owner_.fleet;
    const bool here = fleet.here[static_cast<std::size_t>(node_)];
    const bool loopback = here || host_.empty() || host_ == "localhost";
    const std::string host = loopback ? fleet.loopback_of(node_) : unbracket(host_);
    // Named locals, not temporaries, around co_await: g++ 12 mishandles temporaries there.
    const std::string service = std::to_string(fleet.ports[static_cast<std::size_t>(node_)]);
    where_ = host_port(host, fleet.ports[static_cast<std::size_t>(node_)]);
    const std::string handshake_host = host_.empty() || here ? std::string("localhost") : host_;
    const std::string target = "/" + channel_;
    beast::error_code ec;
    Resolver resolver(owner_.executor());
    const auto endpoints = co_await resolver.async_resolve(host, service, asio::redirect_error(use, ec));
    if (ec) co_return fmt::format("cannot resolve `{}`: {}", host, ec.message());
    auto ws = std::make_shared<WsStream>(owner_.executor());
    beast::get_lowest_layer(*ws).expires_after(std::chrono::seconds(5));
    co_await beast::get_lowest_layer(*ws).async_connect(endpoints, asio::redirect_error(use, ec));
    if (ec) co_return ec.message();
    beast::get_lowest_layer(*ws).expires_never();
    ws->set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    ws->read_message_max(max_message);
    websocket::response_type res;
    co_await ws->async_handshake(res, handshake_host, target, asio::redirect_error(use, ec));
    if (ec == websocket::error::upgrade_declined && res.result() == http::status::not_found)
        co_return fmt::format("{} has no channel `{}` (HTTP 404: is it running the same file?)", target_, channel_);
    if (ec == websocket::error::upgrade_declined)
        co_return fmt::format("the peer declined the websocket upgrade (HTTP {})", res.result_int());
    if (ec) co_return ec.message();
    beast::get_lowest_layer(*ws).socket().set_option(tcp::no_delay(true), ec);
    ws->text(true);
    ws_ = ws;
    down_.clear();
    refused_ = false;
    asio::co_spawn(owner_.executor(), read(std::move(ws)), or_log(owner_.fleet.log, owner_.spec.name, "the link to " + name()));
    co_return std::string();
}

// Reads the connection while it is open: the answer to the request in flight, and
// the end of the connection whenever the peer ends it.
task<void> Link::read(std::shared_ptr<WsStream> ws) {
    beast::flat_buffer buffer;
    beast::error_code ec;
    std::string refusal;  // a reply this link refuses for what it is
    while (true) {
        buffer.clear();
        co_await ws->async_read(buffer, asio::redirect_error(use, ec));
        if (ec) break;
        if (!ws->got_text()) {
            refusal = fmt::format("{} replied with a binary message (replies are text)", name());
            co_await ws->async_close(websocket::close_reason(websocket::close_code::unknown_data, "text replies only"),
                                     asio::redirect_error(use, ec));
            break;
        }
        if (awaiting_ && !reply_) {
            reply_ = beast::buffers_to_string(buffer.data());
            answered_.notify();
        } else if (unsolicited_++ == 0) {
            log(fmt::format("{} sent a message that answers no request; ignored", name()));
        }
    }
    if (ws_ != ws) co_return;  // stopped, or already replaced
    ws_.reset();
    const auto reason = ws->reason();
    if (ec == websocket::error::message_too_big) {
        refusal = fmt::format("the reply of {} is over the limit of {} bytes", name(), max_message);
    } else if (ec == websocket::error::bad_frame_payload) {
        refusal = fmt::format("the reply of {} is not valid UTF-8", name());
    }
    if (!refusal.empty()) {
        down_ = refusal;
        refused_ = awaiting_;
    } else if (ec == websocket::error::closed) {
        // 1005: the close frame had no code (RFC 6455, 7.1.5).
        const int code = reason.code == websocket::close_code::none ? 1005 : static_cast<int>(reason.code);
        down_ = fmt::format("{} closed the connection: {}{}", name(), code,
                            reason.reason.empty() ? "" : fmt::format(" ({})", std::string_view(reason.reason.data(), reason.reason.size())));
        if (reason.code == websocket::close_code::unknown_data || reason.code == websocket::close_code::bad_payload ||
            reason.code == websocket::close_code::too_big)
            refused_ = true;
    } else {
        down_ = fmt::format("lost {}: {}", name(), ec.message());
    }
    if (!awaiting_ && !stopping_ && !owner_.fleet.stopping) {
        if (auto line = failures_.failed(owner_.fleet.clock->now(), down_ + "; reconnecting at the next message", down_)) log(*line);
    }
    answered_.notify();
}

task<void> Link::pump() {
    while (!stopping_) {
        if (queue_.empty()) {
            co_await wake_.wait();
            continue;
        }
        if (!ws_) {
            const std::string failure = co_await connect();
            if (stopping_) break;
            if (!failure.empty()) {
                if (auto line = failures_.failed(owner_.fleet.clock->now(),
                                                 fmt::format("waiting for {} at {} ({}); retrying", name(), where_, failure), failure))
                    log(*line);
                co_await backoff_.pause(owner_.executor());
                continue;
            }
        }
        auto ws = ws_;
        reply_.reset();
        awaiting_ = true;
        beast::error_code ec;
        co_await ws->async_write(asio::buffer(queue_.front()->payload), asio::redirect_error(use, ec));
        if (ec && ws_ == ws) beast::get_lowest_layer(*ws).close();  // read() sees the end and says why
        while (!reply_ && ws_ == ws && !stopping_) co_await answered_.wait();
        awaiting_ = false;
        if (stopping_) break;
        if (reply_) {
            if (auto line = failures_.recovered(owner_.fleet.clock->now(), fmt::format("connected to {} again", name()))) log(*line);
            backoff_.reset();
            finish({std::move(*reply_), std::nullopt});
            continue;
        }
        if (refused_) {
            // The peer refuses the message for what it is: sending it again would fail again.
            const std::string why = down_;
            log(fmt::format("error: a message to {} was dropped: {}", name(), why));
            refused_ = false;
            finish({{}, why});
        } else if (auto line = failures_.failed(owner_.fleet.clock->now(), down_ + "; reconnecting", down_)) {
            log(*line);
        }
        co_await backoff_.pause(owner_.executor());  // every reconnect backs off, whatever the cause
    }
    pumping_ = false;
}

// ---- inbound ----------------------------------------------------------------

task<void> http_reply(TcpStream& stream, const http::request<http::string_body>& req, http::status status,
                      std::string content_type, std::string body) {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::server, "meshrun");
    res.set(http::field::content_type, content_type);
    res.keep_alive(false);
    res.body() = std::move(body);
    res.prepare_payload();
    if (req.method() == http::verb::head) res.body().clear();  // the length of what GET would send, no body
    beast::error_code ec;
    co_await http::async_write(stream, res, asio::redirect_error(use, ec));
    stream.socket().shutdown(Socket::shutdown_send, ec);
}

task<void> session(NodeRt& node, Socket socket) {
    TcpStream stream(std::move(socket));
    stream.socket().set_option(tcp::no_delay(true));
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    beast::error_code ec;
    stream.expires_after(std::chrono::seconds(30));
    co_await http::async_read(stream, buffer, req, asio::redirect_error(use, ec));
    if (ec == http::error::header_limit || ec == http::error::body_limit || ec == http::error::buffer_overflow) {
        co_await http_reply(stream, req, http::status::request_header_fields_too_large, "text/plain", "request too large\n");
        co_return;
    }
    if (ec) co_return;
    std::string_view path(req.target().data(), req.target().size());
    path = path.substr(0, path.find('?'));
    const Source* channel = path.size() > 1 ? node.spec.channel(path.substr(1)) : nullptr;

    if (!websocket::is_upgrade(req)) {
        const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
        if (path == "/" && get) {
            co_await http_reply(stream, req, http::status::ok, "application/json", node.status() + "\n");
        } else if (path == "/") {
            co_await http_reply(stream, req, http::status::method_not_allowed, "text/plain", "GET / is the node's status\n");
        } else if (channel) {
            co_await http_reply(stream, req, http::status::upgrade_required, "text/plain",
                                fmt::format("/{} is a websocket channel: connect with a websocket client\n", channel->name));
        } else {
            co_await http_reply(stream, req, http::status::not_found, "text/plain",
                                fmt::format("no channel `{}` on node `{}`\n", path, node.spec.name));
        }
        co_return;
    }
    if (!channel) {
        co_await http_reply(stream, req, http::status::not_found, "text/plain",
                            fmt::format("no channel `{}` on node `{}`\n", path, node.spec.name));
        co_return;
    }
    stream.expires_never();
    ServerStream ws(CoalescingStream(std::move(stream)));
    // A handshake must finish in 30 s; an open channel may stay quiet for as long
    // as its peer likes (links are kept open), so no idle timer to re-arm per message.
    websocket::stream_base::timeout limits{};
    limits.handshake_timeout = std::chrono::seconds(30);
    limits.idle_timeout = websocket::stream_base::none();
    limits.keep_alive_pings = false;
    ws.set_option(limits);
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "meshrun"); }));
    ws.read_message_max(max_message);
    co_await ws.async_accept(req, asio::redirect_error(use, ec));
    if (ec) co_return;
    node.sessions.insert(&ws);
    MessageCounter& incoming = ws.next_layer().received();
    while (!node.fleet.stopping) {
        if (node.waiting > 0) {
            // A firing waits for room in a full link: read nothing more until it has room.
            ws.next_layer().flush([](beast::error_code) {});
            while (node.waiting > 0 && !node.fleet.stopping) co_await node.room.wait();
            if (node.fleet.stopping) break;
        }
        buffer.clear();
        if (incoming.whole() > 0) {
            ws.read(buffer, ec);  // every byte of it is in Beast's buffer already: this does not block
        } else {
            co_await ws.async_read(buffer, asio::redirect_error(use, ec));
        }
        if (ec) break;  // Beast has already closed with 1009 (too big) or 1007 (bad UTF-8) where that applies
        incoming.take();
        if (!ws.got_text()) {
            co_await ws.async_close(websocket::close_reason(websocket::close_code::unknown_data, "text frames only"),
                                    asio::redirect_error(use, ec));
            break;
        }
        std::string message = beast::buffers_to_string(buffer.data());
        const Rule* rule = nullptr;
        std::optional<std::string> now = node.deliver_now(*channel, message, rule);
        std::string reply;  // no co_await inside ?: (g++ 12 miscompiles it)
        if (now) {
            reply = std::move(*now);
        } else {
            reply = co_await node.deliver(*channel, rule, std::move(message));
        }
        if (node.fleet.stopping || !ws.is_open()) break;  // a close frame is on its way
        ws.next_layer().send_text(reply);  // held: it goes out when the session next reads
    }
    node.sessions.erase(&ws);
    co_await ws.next_layer().drain();  // after a close: until the client's end
    if (ec && !quiet_error(ec) && ec != websocket::error::message_too_big && ec != beast::websocket::error::bad_frame_payload) {
        const auto why = fmt::format("connection on /{} ended: {}", channel->name, ec.message());
        if (auto line = node.session_failures.failed(node.fleet.clock->now(), why, why)) node.log(*line);
    }
}

// Accepts connections. A failure to accept (out of descriptors: EMFILE, ENFILE) pauses
// accepting with backoff, as nginx does, instead of spinning: it is logged once, then
// summarised, and accepting resumes when descriptors are free again.
task<void> listen(NodeRt& node) {
    Backoff backoff(std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
    Repeated failures("accepting connections"), refused("connections refused");
    while (true) {
        beast::error_code ec;
        Socket socket = co_await node.acceptor->async_accept(asio::redirect_error(use, ec));
        if (ec == asio::error::operation_aborted || !node.acceptor->is_open()) co_return;
        if (ec) {
            if (auto line = failures.failed(node.fleet.clock->now(),
                                            fmt::format("cannot accept connections: {}; pausing new connections", ec.message()),
                                            ec.message()))
                node.log(*line);
            co_await backoff.pause(node.executor());
            continue;
        }
        if (auto line = failures.recovered(node.fleet.clock->now(), "accepting connections again")) node.log(*line);
        backoff.reset();
        FleetCore& fleet = node.fleet;
        if (fleet.connections >= fleet.max_connections) {
            static constexpr std::string_view busy = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
            socket.write_some(asio::buffer(busy), ec);  // a fresh socket takes it whole
            socket.close(ec);
            const auto why = fmt::format("{} connections are open, the most this process's descriptor limit leaves room for",
                                         fleet.max_connections);
            if (auto line = refused.failed(fleet.clock->now(), "refusing new connections (HTTP 503): " + why, why)) node.log(*line);
            continue;
        }
        if (auto line = refused.recovered(fleet.clock->now(), "taking new connections again")) node.log(*line);
        ++fleet.connections;
        asio::co_spawn(node.executor(), session(node, std::move(socket)), [&node](std::exception_ptr e) {
            --node.fleet.connections;
            or_log(node.fleet.log, node.spec.name, "a connection")(e);
        });
    }
}

// `[::1]` -> `::1`: the brackets belong to URLs, not to addresses.
std::string unbracket(std::string_view host) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return std::string(host);
}

// HOST:PORT as in a URL: an IPv6 address in brackets.
std::string host_port(const std::string& host, std::uint16_t port) {
    return host.find(':') == std::string::npos ? fmt::format("{}:{}", host, port) : fmt::format("[{}]:{}", host, port);
}

// The address to listen on for `host`: an IPv4 or IPv6 address (with or without
// brackets), `localhost` (IPv4's loopback), no host (every interface), or a name,
// resolved. Throws with the reason when it is none of these: never a wider bind.
asio::ip::address listen_address(asio::io_context& io, const std::string& host) {
    if (host.empty()) return asio::ip::address_v4::any();
    if (host == "localhost") return asio::ip::address_v4::loopback();
    const std::string plain = unbracket(host);
    beast::error_code ec;
    const auto a = asio::ip::make_address(plain, ec);
    if (!ec) return a;
    // The resolver would take `0` or `127.1` (inet_aton's shorthands): digits and dots are an
    // IPv4 address written in full, or nothing.
    if (plain.find_first_not_of("0123456789.") == std::string::npos)
        throw std::runtime_error(fmt::format("`{}` is not an IPv4 address (four numbers, as in 127.0.0.1)", host));
    tcp::resolver resolver(io);
    const auto found = resolver.resolve(plain, "", ec);
    if (ec || found.empty())
        throw std::runtime_error(fmt::format("`{}` is not an IP address, and no host of that name was found ({})", host,
                                             ec ? ec.message() : "no address"));
    return found.begin()->endpoint().address();
}

}  // namespace

// ---- the fleet ----------------------------------------------------------------

struct Fleet::Impl : FleetCore {
    Impl(const Graph& g, drivers::PinDriver& p, Logger& l, FleetOptions o) : FleetCore(g, p, l, std::move(o)) {}
    std::optional<asio::signal_set> signals;
};

Fleet::Fleet(const Graph& graph, drivers::PinDriver& pins, Logger& log, FleetOptions options)
    : impl_(std::make_unique<Impl>(graph, pins, log, std::move(options))) {
    Impl& f = *impl_;
    if (!f.options.clock) f.steady = std::make_unique<SteadyClock>(f.io);
    f.clock = f.options.clock ? f.options.clock : f.steady.get();
    std::uint64_t seed = f.options.seed ? f.options.seed : std::random_device{}();
    f.ports.resize(graph.nodes.size());
    for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
        const std::uint16_t declared = graph.nodes[i].port.value_or(0);
        f.ports[i] = i < f.options.ports.size() && f.options.ports[i] ? f.options.ports[i] : declared;
    }
    f.here.resize(graph.nodes.size());
    f.bound.resize(graph.nodes.size());
    for (int n : f.options.nodes) {
        if (f.here[static_cast<std::size_t>(n)]) continue;  // named twice: one node all the same
        f.here[static_cast<std::size_t>(n)] = true;
        auto rt = std::make_unique<NodeRt>(f, graph.nodes[static_cast<std::size_t>(n)], seed + static_cast<std::uint64_t>(n));
        for (const Edge& e : rt->spec.edges) rt->links.push_back(std::make_unique<Link>(*rt, e.node, e.channel));
        f.nodes.push_back(std::move(rt));
    }
}

Fleet::~Fleet() = default;

namespace {

Acceptor open_acceptor(asio::io_context& io, const tcp::endpoint& endpoint, beast::error_code& ec) {
    Acceptor acceptor(io.get_executor());
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    return acceptor;
}

}  // namespace

void Fleet::start() {
    Impl& f = *impl_;
    std::optional<asio::ip::address> bind;
    if (f.options.bind) {
        try {
            if (f.options.bind->empty()) throw std::runtime_error("an empty address (0.0.0.0 is every interface)");
            bind = listen_address(f.io, *f.options.bind);
        } catch (const std::exception& e) {
            throw BadOption(fmt::format("--bind: {}", e.what()));
        }
    }
    {
        rlimit files{};
        ::getrlimit(RLIMIT_NOFILE, &files);
        std::size_t reserve = 32;  // the process: standard streams, the loop, resolving, signals
        for (auto& node : f.nodes) reserve += 2 * (node->links.size() + node->spec.pins.size() + 1);
        const std::size_t limit = files.rlim_cur == RLIM_INFINITY ? std::size_t{1} << 20 : files.rlim_cur;
        f.max_connections = limit > reserve + 8 ? limit - reserve : 8;
    }
    std::map<std::uint16_t, std::string> taken;  // `up`: the ports of the nodes already listening
    if (f.options.local) {
        // With --only, the nodes that do not run here are reached where declared: one declared on
        // this machine keeps its port, or a node here would answer in its place.
        for (std::size_t i = 0; i < f.graph.nodes.size(); ++i) {
            const Node& n = f.graph.nodes[i];
            const std::string host = unbracket(n.host);
            const bool on_loopback = host.empty() || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
            if (!f.here[i] && n.port && on_loopback) taken.emplace(*n.port, n.name);
        }
    }
    std::vector<std::string> moved(f.graph.nodes.size());
    for (auto& node : f.nodes) {
        node->start_pins();  // throws PinError
        const auto index = static_cast<std::size_t>(f.graph.find(node->spec.name));
        if (!f.ports[index]) continue;
        const std::uint16_t declared = f.ports[index];
        const std::string& host = node->spec.host;
        std::uint16_t port = declared;
        asio::ip::address address;
        if (f.options.any_port || f.options.local) {
            address = unbracket(host) == "::1" ? asio::ip::address(asio::ip::address_v6::loopback())
                                               : asio::ip::address(asio::ip::address_v4::loopback());
            if (f.options.any_port) port = 0;
        } else if (bind) {
            address = *bind;
        } else {
            try {
                address = listen_address(f.io, host);
            } catch (const std::exception& e) {
                throw std::runtime_error(fmt::format("node `{}` cannot listen: {}; run it on that host, or give --bind ADDR",
                                                     node->spec.name, e.what()));
            }
        }
        beast::error_code ec;
        if (f.options.local && taken.count(port)) {
            moved[index] = fmt::format("port {} is taken by `{}`", port, taken[port]);
            port = 0;
        }
        Acceptor acceptor = open_acceptor(f.io, tcp::endpoint(address, port), ec);
        if (ec == asio::error::address_in_use && f.options.local) {
            moved[index] = fmt::format("port {} is in use", port);
            acceptor = open_acceptor(f.io, tcp::endpoint(address, 0), ec);
        }
        if (ec) {
            std::string hint;
            if (ec == boost::system::errc::address_not_available && bind)
                hint = fmt::format("; `{}` (--bind) is not an address of this machine", *f.options.bind);
            else if (ec == boost::system::errc::address_not_available)
                hint = fmt::format("; `{}` is not an address of this machine: run the node there, give --bind ADDR, "
                                   "or run the whole fleet here with `meshrun up`", host);
            throw std::runtime_error(fmt::format("node `{}` cannot listen on {}: {}{}", node->spec.name,
                                                 host_port(address.to_string(), port), ec.message(), hint));
        }
        f.ports[index] = acceptor.local_endpoint().port();
        f.bound[index] = address.to_string();
        taken.emplace(f.ports[index], node->spec.name);
        node->acceptor.emplace(std::move(acceptor));
    }
    for (auto& node : f.nodes) {
        const auto index = static_cast<std::size_t>(f.graph.find(node->spec.name));
        if (node->acceptor) {
            asio::co_spawn(f.io.get_executor(), listen(*node), or_log(f.log, node->spec.name, "listening"));
            const auto at = node->acceptor->local_endpoint();
            std::string note;
            if (!moved[index].empty())
                note = fmt::format(" (declared {}: {})", host_port(node->spec.host.empty() ? "" : node->spec.host, *node->spec.port),
                                   moved[index]);
            node->log(fmt::format("listening on ws://{}{}", host_port(at.address().to_string(), at.port()), note));
        } else {
            std::vector<std::string> targets;
            for (const Edge& e : node->spec.edges)
                targets.push_back(fmt::format("{}/{}", f.graph.nodes[static_cast<std::size_t>(e.node)].name, e.channel));
            node->log(targets.empty() ? std::string("started (no port: it serves nothing)")
                                      : fmt::format("started (no port: a client of {})", fmt::join(targets, ", ")));
        }
        const Micros origin = f.clock->now();
        for (const Source& s : node->spec.sources)
            if (s.kind == Source::Kind::timer) node->start_timer(s, 0, origin);
    }
    if (f.options.handle_signals) {
        f.signals.emplace(f.io, SIGINT, SIGTERM);
        f.signals->async_wait([this](beast::error_code ec, int) {
            if (!ec) stop();
        });
    }
}

void Fleet::run() { impl_->io.run(); }

std::size_t Fleet::poll() { return impl_->io.poll(); }

void Fleet::stop() {
    Impl& f = *impl_;
    if (f.stopping) return;
    f.stopping = true;
    for (auto& [key, link] : f.test_links) link->stop();
    std::size_t held = 0;
    for (auto& node : f.nodes) {
        if (node->acceptor) node->acceptor->close();
        for (auto& watch : node->edge_watches) watch->close();
        node->room.notify();
        for (ServerStream* ws : node->sessions)
            ws->async_close(websocket::close_reason(websocket::close_code::going_away, "node stopping"),
                            [](beast::error_code) {});
        for (auto& link : node->links) {
            if (link->held() == 0) continue;
            held += link->held();
            node->log(fmt::format("delivering {} held message{} to {} before stopping (at most {} ms)", link->held(),
                                  link->held() == 1 ? "" : "s", link->name(), f.options.grace.count()));
        }
    }
    // Links deliver what they hold for the grace period (a second signal ends it at
    // once); then what is left is named, and the loop ends after a moment for the
    // close frames.
    asio::co_spawn(
        f.io,
        [&f, held]() -> task<void> {
            bool again = false;
            if (f.signals && held > 0) {
                f.signals->async_wait([&again](beast::error_code ec, int) { again = !ec; });
            }
            Timer tick(f.io.get_executor());
            const auto deadline = std::chrono::steady_clock::now() + f.options.grace;
            auto holding = [&f] {
                for (auto& node : f.nodes)
                    for (auto& link : node->links)
                        if (link->held() > 0) return true;
                return false;
            };
            while (holding() && !again && std::chrono::steady_clock::now() < deadline) {
                tick.expires_after(std::chrono::milliseconds(20));
                beast::error_code ec;
                co_await tick.async_wait(asio::redirect_error(use, ec));
            }
            if (f.signals) f.signals->cancel();
            for (auto& node : f.nodes) {
                for (auto& link : node->links) {
                    if (link->held() > 0)
                        node->log(fmt::format("warning: {} message{} to {} {} not delivered", link->held(),
                                              link->held() == 1 ? "" : "s", link->name(), link->held() == 1 ? "was" : "were"));
                    link->stop();
                }
            }
            tick.expires_after(std::chrono::milliseconds(300));
            beast::error_code ec;
            co_await tick.async_wait(asio::redirect_error(use, ec));
            f.io.stop();
        },
        or_log(f.log, "meshrun", "the fleet"));
}

std::uint16_t Fleet::port(int node) const { return impl_->ports[static_cast<std::size_t>(node)]; }

std::string Fleet::status_json(int node) const {
    for (const auto& n : impl_->nodes)
        if (n->spec.name == impl_->graph.nodes[static_cast<std::size_t>(node)].name) return n->status();
    return "{}";
}

void Fleet::post(std::function<void()> fn) { asio::post(impl_->io, std::move(fn)); }

std::size_t Fleet::run_one_for(std::chrono::milliseconds limit) { return impl_->io.run_one_for(limit); }

bool Fleet::idle() const { return impl_->in_flight == 0; }

namespace {
NodeRt* runtime_of(FleetCore& f, int node) {
    for (auto& n : f.nodes)
        if (&n->spec == &f.graph.nodes[static_cast<std::size_t>(node)]) return n.get();
    return nullptr;
}
}  // namespace

void Fleet::inject(int node, const std::string& channel, std::string value, std::function<void(std::string)> done) {
    Impl& f = *impl_;
    if (!f.tester) {
        f.tester_spec.name = "test";
        f.tester = std::make_unique<NodeRt>(f, f.tester_spec, 1);
    }
    auto& link = f.test_links[{node, channel}];
    if (!link) link = std::make_unique<Link>(*f.tester, node, channel);
    ++f.in_flight;  // from now until `done` has run
    asio::co_spawn(
        f.io.get_executor(),
        [&f, l = link.get(), value = std::move(value), done = std::move(done)]() mutable -> task<void> {
            Delivery d = co_await l->request(std::move(value));
            done(d.refused ? "error: the message was dropped: " + *d.refused : std::move(d.ack));
            --f.in_flight;
        },
        or_log(f.log, "meshrun", "the fleet"));
}

std::uint64_t Fleet::received(int node, std::string_view channel) const {
    const NodeRt* n = runtime_of(*impl_, node);
    if (!n) return 0;
    for (const Source& s : n->spec.sources)
        if (s.kind == Source::Kind::channel && s.name == channel) return n->received[n->source_index(s)];
    return 0;
}

int Fleet::pin_level(int node, int pin) const {
    const NodeRt* n = runtime_of(*impl_, node);
    return n ? n->read_pin(pin) : 0;
}

Fleet::PinWrite Fleet::last_write(int node, int pin) const {
    const NodeRt* n = runtime_of(*impl_, node);
    if (!n) return {};
    const NodeRt::PinWrite& w = n->last_write[static_cast<std::size_t>(pin)];
    return {w.written, w.at, w.rule ? w.rule->label : std::string(), w.level};
}

std::vector<int> Fleet::pin_history(int node, int pin) const {
    const NodeRt* n = runtime_of(*impl_, node);
    return n ? n->history[static_cast<std::size_t>(pin)] : std::vector<int>{};
}

std::uint64_t Fleet::fired(int node, const Rule& rule) const {
    const NodeRt* n = runtime_of(*impl_, node);
    if (!n) return 0;
    const auto it = n->rules.find(&rule);
    return it == n->rules.end() ? 0 : it->second.fires;
}

}  // namespace meshrun::engine
