// The engine's Asio and Beast vocabulary: types on one concrete executor, the
// steady clock, and the small waits its coroutines share. Included by the
// runtime's translation unit only (these headers are heavy).
#pragma once

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp needs std::exchange

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <fmt/format.h>

#include "meshrun/engine/runtime.hpp"

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
using EdgeWatch = asio::posix::basic_stream_descriptor<Executor>;  // an input line's edge descriptor

inline constexpr asio::use_awaitable_t<Executor> use;

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

// Waits `pause` on the fleet's clock (virtual time in tests), or until `cut` is notified.
inline task<void> sleep_on(Clock& clock, Executor ex, Micros pause, std::shared_ptr<Event>& cut) {
    auto done = std::make_shared<Event>(ex);
    cut = done;
    // The clock holds a weak reference only: a clock may outlive the fleet (a test's, the
    // scenario runner's), and an Event kept past it would outlive its io_context.
    clock.call_at(clock.now() + pause, [weak = std::weak_ptr<Event>(done)] {
        if (const auto event = weak.lock()) event->notify();
    });
    co_await done->wait();
    if (cut == done) cut.reset();
}

// The completion of a detached coroutine: what escapes it is logged, never swallowed.
// `node` is a name of the graph, which outlives every coroutine of the fleet.
inline auto or_log(Logger& log, std::string_view node, std::string what) {
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

inline bool quiet_error(const beast::error_code& ec) {
    return ec == asio::error::operation_aborted || ec == websocket::error::closed || ec == asio::error::eof ||
           ec == beast::error::timeout || ec == asio::error::connection_reset;
}

// `[::1]` -> `::1`: the brackets belong to URLs, not to addresses.
inline std::string unbracket(std::string_view host) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return std::string(host);
}

// HOST:PORT as in a URL: an IPv6 address in brackets.
inline std::string host_port(const std::string& host, std::uint16_t port) {
    return host.find(':') == std::string::npos ? fmt::format("{}:{}", host, port) : fmt::format("[{}]:{}", host, port);
}

}  // namespace meshrun::engine
