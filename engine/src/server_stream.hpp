// The server side of a connection under Beast's websocket stream, over plain TCP
// or TLS: the node's fast path. It counts whole messages in the bytes as they
// arrive (decrypted, over TLS) and frames replies itself.
#pragma once

#include <type_traits>

#include "asio_support.hpp"
#include "message_counter.hpp"
#include "tls.hpp"

namespace meshrun::engine {

// The server side of a connection, under Beast's websocket stream. `Next` is the
// TCP stream or the TLS stream over it.
// - Replies are held until the session next needs input, then go out in one
//   write: a burst of pipelined messages is answered with one write (one TLS
//   record), a lone message at once (its session asks for input right after
//   replying).
// - It counts the whole messages received (MessageCounter), so that the session
//   reads those without a trip through the event loop.
// - It tells the node's idle sweep (session.hpp) whether the connection has made
//   progress (bytes in while the session waits for input, writes that end): Beast's
//   own idle timer would be re-armed on every read, which costs more than the rest
//   of a round trip's reads.
// - A write that fails ends the connection: every later read and write fails.
template<class Next>
class CoalescingStream {
public:
    using executor_type = Executor;
    static constexpr bool tls = !std::is_same_v<Next, TcpStream>;

    // The socket takes its writes without blocking: a write the socket cannot take at
    // once goes on asynchronously (flush), never stalling the thread's other nodes.
    explicit CoalescingStream(Next&& next) : next_(std::move(next)) {
        beast::error_code ec;
        socket().non_blocking(true, ec);
    }
    executor_type get_executor() { return next_.get_executor(); }
    Next& next_layer() { return next_; }
    Socket& socket() { return beast::get_lowest_layer(next_).socket(); }
    MessageCounter& received() { return received_; }

    // The idle sweep's view: whether the connection made no progress since the sweep
    // last looked: nothing came while the session waited for input, or a write went on
    // without ending (a client that reads no replies). A session busy firing is not
    // idle. And the end of a connection found dead (the session's read fails).
    bool idle() {
        const bool was = (reading_ && !heard_) || (writing_ && !wrote_);
        heard_ = wrote_ = false;
        return was;
    }
    void time_out() {
        beast::error_code ec;
        socket().close(ec);
    }

    template<typename Buffers, typename Handler>
    auto async_read_some(const Buffers& buffers, Handler&& handler) {
        return asio::async_initiate<Handler, void(beast::error_code, std::size_t)>(
            [this](auto h, const Buffers& b) {
                if (broken_) {
                    // A write failed: the connection is over, whatever a TLS layer still holds.
                    return asio::post(get_executor(), beast::bind_front_handler(std::move(h), broken_, std::size_t{0}));
                }
                if constexpr (tls) {
                    // Over TLS the held replies' write (encrypting, then the socket) goes on
                    // while the next read waits; one write at most is in flight.
                    if (!writing_) {
                        flush([](beast::error_code) {});  // a failure fails the read too
                        return read(b, std::move(h));
                    }
                }
                flush([this, b, h = std::move(h)](beast::error_code ec) mutable {
                    if (ec) return h(ec, 0);
                    read(b, std::move(h));
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

    // Writes what is held, then calls `done`: over TCP at once when the socket takes it
    // all (the usual case), else once the rest has gone out. One write at a time: a
    // flush asked for meanwhile waits for it.
    template<typename Done>
    void flush(Done&& done) {
        if (writing_) {
            auto shared = std::make_shared<std::decay_t<Done>>(std::forward<Done>(done));
            after_write_.push_back([shared](beast::error_code ec) { (*shared)(ec); });
            return;
        }
        if (broken_) {
            pending_.clear();
            return done(broken_);
        }
        if (pending_.empty()) return done(beast::error_code{});
        if constexpr (!tls) {
            beast::error_code ec;
            const std::size_t n = socket().write_some(asio::buffer(pending_), ec);
            if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
                pending_.clear();
                broke(ec);
                return done(ec);
            }
            pending_.erase(0, ec ? 0 : n);
            if (pending_.empty()) return done(beast::error_code{});
        }
        writing_ = true;
        auto data = std::make_shared<std::string>(std::move(pending_));
        pending_.clear();
        auto written = [this, data, done = std::forward<Done>(done)](beast::error_code e, std::size_t) mutable {
            writing_ = false;
            wrote_ = true;
            if (e) broke(e);
            auto waiting = std::move(after_write_);
            after_write_.clear();
            for (auto& w : waiting) flush(std::move(w));
            done(e);
        };
        if constexpr (tls) {
            asio::async_write(next_, asio::buffer(*data), std::move(written));
        } else {
            asio::async_write(socket(), asio::buffer(*data), std::move(written));
        }
    }

    // After the closing handshake: over TCP, sends what is held and the end of the
    // stream; the rest, waiting for the client's end, is drain()'s. Over TLS all of it
    // is drain()'s (the TLS shutdown cannot be done without waiting).
    void shut_down(beast::error_code& ec) {
        shut_ = true;
        if constexpr (!tls) {
            if (!pending_.empty() && !writing_) {
                socket().write_some(asio::buffer(pending_), ec);  // a close frame: it fits
                pending_.clear();
            }
            socket().shutdown(Socket::shutdown_send, ec);
        }
    }

    // The end of a session. After a closing handshake (shut_down()): waits, 5 s at most,
    // for the client to end its side (over TLS, sends what is held and the TLS shutdown
    // first). After a failure: closes the socket. Either way it returns once no write is
    // left going: the write's handler refers to this stream, which the session then drops.
    task<void> drain() {
        beast::error_code ec;
        auto& lowest = beast::get_lowest_layer(next_);
        if (shut_ && socket().is_open()) {
            lowest.expires_after(std::chrono::seconds(5));
            if constexpr (tls) {
                co_await written(ec);
                if (!ec) co_await next_.async_shutdown(asio::redirect_error(use, ec));
            } else {
                char scratch[512];
                while (!ec) co_await lowest.async_read_some(asio::buffer(scratch), asio::redirect_error(use, ec));
            }
        }
        socket().close(ec);
        co_await written(ec);  // a write still going fails at once on the closed socket
    }

private:
    // A write failed: the connection is closed (a read waiting on it ends), and every
    // later read and write fails at once.
    void broke(const beast::error_code& ec) {
        if (broken_) return;
        broken_ = ec;
        beast::error_code ignored;
        socket().close(ignored);
    }

    // Until what is held and what is being written have gone out (or failed).
    task<void> written(beast::error_code& ec) {
        // Named locals around co_await: g++ 12 mishandles temporaries and lambdas there.
        auto flushed = [this](auto h) {
            flush([this, h = std::move(h)](beast::error_code e) mutable {
                asio::post(get_executor(), beast::bind_front_handler(std::move(h), e));
            });
        };
        auto token = asio::redirect_error(use, ec);
        co_await asio::async_initiate<decltype(token), void(beast::error_code)>(flushed, token);
    }

    // Straight to the socket over TCP: basic_stream's timer bookkeeping is not needed
    // once the websocket is open (the node's idle sweep keeps time instead).
    template<typename Buffers, typename Handler>
    void read(const Buffers& b, Handler&& h) {
        reading_ = true;
        auto got = [this, b, h = std::forward<Handler>(h)](beast::error_code e, std::size_t n) mutable {
            reading_ = false;
            count(b, n);
            h(e, n);
        };
        if constexpr (tls) {
            next_.async_read_some(b, std::move(got));
        } else {
            socket().async_read_some(b, std::move(got));
        }
    }

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
        if (n > 0) heard_ = true;
        for (auto it = asio::buffer_sequence_begin(buffers); n > 0 && it != asio::buffer_sequence_end(buffers); ++it) {
            const asio::mutable_buffer part = *it;
            const std::size_t size = std::min(n, part.size());
            received_.scan(static_cast<const unsigned char*>(part.data()), size);
            n -= size;
        }
    }

    static constexpr std::size_t flush_at = 64 * 1024;
    Next next_;
    MessageCounter received_;
    std::string pending_;
    std::vector<std::function<void(beast::error_code)>> after_write_;
    beast::error_code broken_;  // the first write that failed
    // heard_, wrote_: progress since the idle sweep last looked (a new connection counts).
    bool reading_ = false, writing_ = false, shut_ = false, heard_ = true, wrote_ = false;
};

// The end of a connection after the closing handshake, or after Beast closed it over
// a bad frame: what is held and the end of the stream go out; the session's drain()
// then waits for the client's end. (Beast 1.74's own teardown can close the socket
// with input still unread, and the client then sees a reset instead of an end.)
template<class Next>
void teardown(beast::role_type, CoalescingStream<Next>& s, beast::error_code& ec) {
    s.shut_down(ec);
}

template<class Next, typename Handler>
void async_teardown(beast::role_type, CoalescingStream<Next>& s, Handler&& handler) {
    s.flush([&s, handler = std::forward<Handler>(handler)](beast::error_code) mutable {
        beast::error_code ec;
        s.shut_down(ec);
        asio::post(s.get_executor(), beast::bind_front_handler(std::move(handler), ec));
    });
}

using PlainServerStream = websocket::stream<CoalescingStream<TcpStream>>;
using TlsServerStream = websocket::stream<CoalescingStream<TlsStream>>;

}  // namespace meshrun::engine
