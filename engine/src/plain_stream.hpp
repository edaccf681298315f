// The server side of a plain TCP connection under Beast's websocket stream: the
// node's fast path. It counts whole messages in the bytes as they arrive and frames
// replies itself, which only plain TCP allows; a session over any other stream
// (TLS) takes Beast's own reads and writes instead (session.hpp).
#pragma once

#include "asio_support.hpp"
#include "message_counter.hpp"

namespace meshrun::engine {

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
inline void teardown(beast::role_type, CoalescingStream& s, beast::error_code& ec) { s.shut_down(ec); }

template<typename Handler>
void async_teardown(beast::role_type, CoalescingStream& s, Handler&& handler) {
    s.flush([&s, handler = std::forward<Handler>(handler)](beast::error_code) mutable {
        beast::error_code ec;
        s.shut_down(ec);
        asio::post(s.get_executor(), beast::bind_front_handler(std::move(handler), ec));
    });
}

using PlainServerStream = websocket::stream<CoalescingStream>;

}  // namespace meshrun::engine
