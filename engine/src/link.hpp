// The one way a message leaves a node: a link, one outbound websocket per target
// channel. Requests go out in order, one at a time, each waiting for its
// acknowledgement, for at most the acknowledgement deadline; at most the outbox's
// bound are held, and senders past that wait for room. A reader waits on the
// connection the whole time it is open, so a peer that closes is noticed when it
// closes, and pings it, so that a dead peer is noticed within 5 s. Every reconnect
// backs off on the fleet's clock.
//
// With a peer that speaks meshrun.1 (every meshrun node), each message is numbered
// and sent again after a reconnect until it is acknowledged; with --state the outbox
// is kept on disk (docs/delivery.md). A peer that does not gets plain messages.
//
// Generic over the websocket stream: plain TCP, or TLS (TlsWebsocket) when the file
// has `tls`: then it checks that the peer's certificate names the host it connects to.
#pragma once

#include <deque>

#include <nlohmann/json.hpp>

#include "node_runtime.hpp"

namespace meshrun::engine {

template<class Ws>
class BasicLink final : public Link {
public:
    static constexpr bool tls = std::is_same_v<Ws, TlsWebsocket>;

    // `edge` is the owner's edge (-1: the test runner's sender, not observed); `target`
    // the node's index in the graph: its port is looked up when connecting, since a
    // fleet on any free ports knows them only once it listens.
    BasicLink(NodeRt& owner, int edge, int target, std::string channel)
        : owner_(owner),
          fleet_(owner.fleet),
          edge_(edge),
          node_(target),
          host_(fleet_.graph.nodes[static_cast<std::size_t>(target)].host),
          target_(fleet_.graph.nodes[static_cast<std::size_t>(target)].name),
          channel_(std::move(channel)),
          wake_(owner.executor()),
          answered_(owner.executor()),
          failures_(target_ + "/" + channel_),
          full_("the queue to " + target_ + "/" + channel_) {
        if (owner_.state) restore();
    }

    void send(std::string payload, std::function<void(Delivery)> done) override {
        ++fleet_.in_flight;
        if (edge_ >= 0) fleet_.tell([&](Observer& o) { o.message_sent(owner_.index(), edge_); });
        if (payload.size() > fleet_.graph.limits.message) {
            // Every meshrun node of the fleet closes a connection over such a message (1009): refuse it here.
            const auto why = fmt::format("the message is {} bytes, over the limit of {} bytes", payload.size(),
                                         fleet_.graph.limits.message);
            log(fmt::format("error: a message to {} was dropped: {}", name(), why));
            --fleet_.in_flight;
            if (edge_ >= 0) fleet_.tell([&](Observer& o) { o.dropped(owner_.index(), edge_, why); });
            done(Delivery{{}, why});
            return;
        }
        Request r{std::move(payload), std::move(done), Micros{0}, 0, false};
        const std::size_t limit = this->limit();
        if (queue_.size() >= limit) {
            const auto why = fmt::format("the queue to {} is full ({} message{}); sending rules wait for room", name(), limit,
                                         limit == 1 ? "" : "s");
            if (auto line = full_.failed(fleet_.clock->now(), why, why)) log(*line);
            owner_.wait_for_room();
            waiting_.push_back(std::move(r));
        } else {
            admit(std::move(r));
            wake_.notify();
        }
        changed();
        if (!pumping_) {
            pumping_ = true;
            asio::co_spawn(owner_.executor(), pump(), [this](std::exception_ptr e) {
                pumping_ = false;
                or_log(fleet_.log, owner_.spec().name, "the link to " + name())(e);
            });
        }
    }

    void stop() override {
        stopping_ = true;
        if (ws_) beast::get_lowest_layer(*ws_).close();
        wake_.notify();
        answered_.notify();
        if (pausing_) pausing_->notify();
    }

    // The messages it holds: queued (the one in flight included), and waiting for room.
    std::size_t held() const override { return queue_.size() + waiting_.size(); }
    std::size_t limit() const {
        return std::max<std::size_t>(1, fleet_.options.queue_limit ? fleet_.options.queue_limit : fleet_.graph.limits.outbox);
    }
    std::string name() const override { return target_ + "/" + channel_; }
    int target() const override { return node_; }

    // Where the target listens changed in etcd: a link waiting out a backoff connects now; one
    // open ends its connection, and sends what it held again on the next, where etcd says.
    void moved(const std::string& address, std::uint16_t port) override {
        if (pausing_) {
            pausing_->notify();
            return;
        }
        if (!ws_ || stopping_) return;
        // Open to that place already (the file's address was right, or the key came back as it was)?
        beast::error_code ec;
        const auto peer = beast::get_lowest_layer(*ws_).socket().remote_endpoint(ec);
        const auto named = asio::ip::make_address(address, ec);
        const bool anywhere = !ec && named.is_unspecified();  // every interface: the file's host is taken
        if (!ec && peer.port() == port && (anywhere || peer.address() == named)) return;
        moved_ = true;
        beast::get_lowest_layer(*ws_).close();  // read() sees the end and says why
    }

    LinkState state() const { return state_; }
    nlohmann::json status() const override {
        nlohmann::json j = {{"target", name()},
                            {"state", std::string(to_string(state_))},
                            {"queued", queue_.size()},
                            {"limit", limit()},
                            {"waiting", waiting_.size()}};
        if (state_ != LinkState::up && !down_.empty()) j["why"] = down_;  // the last reason it went down
        return j;
    }

private:
    struct Request {
        std::string payload;
        std::function<void(Delivery)> done;
        Micros since;             // when it went out
        std::uint64_t seq;        // its number among this link's messages (meshrun.1)
        bool sent;                // it went out before: it may have been fired already
    };

    // Into the outbox: numbered, and with --state written down.
    void admit(Request r) {
        r.seq = ++last_seq_;
        if (owner_.state) owner_.state->queued(name(), r.seq, r.payload);
        queue_.push_back(std::move(r));
    }

    // --state: what the outbox held when the node last stopped goes out first, again.
    void restore() {
        last_seq_ = owner_.state->last_seq(name());
        for (auto& held : owner_.state->outbox(name())) {
            ++fleet_.in_flight;
            queue_.push_back(Request{std::move(held.payload), [](Delivery) {}, Micros{0}, held.seq, true});
        }
        if (queue_.empty()) return;
        log(fmt::format("sending again {} message{} to {} held from before the restart (--state)", queue_.size(),
                        queue_.size() == 1 ? "" : "s", name()));
        pumping_ = true;
        asio::co_spawn(owner_.executor(), pump(), [this](std::exception_ptr e) {
            pumping_ = false;
            or_log(fleet_.log, owner_.spec().name, "the link to " + name())(e);
        });
    }

    void log(std::string_view text) { owner_.log(text); }

    void changed() {
        if (edge_ >= 0) fleet_.tell([&](Observer& o) { o.link_queue(owner_.index(), edge_, queue_.size(), limit()); });
    }

    void set_state(LinkState s, std::string_view why = {}) {
        state_ = s;
        if (edge_ >= 0) fleet_.tell([&](Observer& o) { o.link_state(owner_.index(), edge_, s, why); });
    }

    // The front request is answered (or refused): the next one may go.
    void finish(Delivery result) {
        Request r = std::move(queue_.front());
        queue_.pop_front();
        if (!result.refused && owner_.state) owner_.state->acked(name(), r.seq);
        if (!waiting_.empty()) {
            admit(std::move(waiting_.front()));
            waiting_.pop_front();
            owner_.done_waiting();
        }
        if (queue_.empty()) queue_.shrink_to_fit();  // memory comes back after a burst
        --fleet_.in_flight;
        changed();
        if (edge_ >= 0) {
            const Micros latency = fleet_.clock->now() - r.since;
            if (result.refused) {
                fleet_.tell([&](Observer& o) { o.dropped(owner_.index(), edge_, *result.refused); });
            } else {
                fleet_.tell([&](Observer& o) { o.acked(owner_.index(), edge_, latency); });
            }
        }
        r.done(std::move(result));
    }

    task<std::string> connect() {
        // A node of this fleet listens on loopback; others where the file says.
        const bool here = fleet_.here[static_cast<std::size_t>(node_)];
        const bool loopback = here || host_.empty() || host_ == "localhost";
        std::string host = loopback ? fleet_.loopback_of(node_) : unbracket(host_);
        // Named locals, not temporaries, around co_await: g++ 12 mishandles temporaries there.
        std::uint16_t port = fleet_.ports[static_cast<std::size_t>(node_)];
        if (fleet_.registry && !here) {
            // With discovery: where etcd says the node listens (docs/discovery.md); an address of
            // every interface says nothing of where: the file's host then.
            const std::optional<Registered> found = co_await registry_lookup(fleet_, node_);
            if (found) {
                if (found->address != "0.0.0.0" && found->address != "::") host = found->address;
                port = found->port;
            }
            if (stopping_) co_return std::string("stopped");
            if (port == 0) {
                where_.clear();
                co_return fmt::format("{} listens on any free port (`:0`), and {}", target_,
                                      registry_current(fleet_) ? "etcd holds no key for it yet"
                                                               : "etcd, which does not answer now, gave no address for it");
            }
        }
        const std::string service = std::to_string(port);
        where_ = host_port(host, port);
        const std::string handshake_host = host_.empty() || here ? std::string("localhost") : host_;
        const std::string target = "/" + channel_;
        beast::error_code ec;
        Resolver resolver(owner_.executor());
        const auto endpoints = co_await resolver.async_resolve(host, service, asio::redirect_error(use, ec));
        if (ec) co_return fmt::format("cannot resolve `{}`: {}", host, ec.message());
        std::shared_ptr<Ws> ws;
        if constexpr (tls) {
            ws = std::make_shared<Ws>(owner_.executor(), *fleet_.tls_client);
            // The name the file gives the node, not the loopback address a node here is reached on.
            const std::string named = host_.empty() ? std::string("localhost") : host_;
            expect_host(ws->next_layer(), named);
        } else {
            ws = std::make_shared<Ws>(owner_.executor());
        }
        auto& tcp_layer = beast::get_lowest_layer(*ws);
        tcp_layer.expires_after(handshake_limit());
        co_await tcp_layer.async_connect(endpoints, asio::redirect_error(use, ec));
        if (ec) co_return ec.message();
        if constexpr (tls) {
            co_await ws->next_layer().async_handshake(asio::ssl::stream_base::client, asio::redirect_error(use, ec));
            if (ec) co_return "TLS handshake: " + handshake_error(ws->next_layer(), ec);
        }
        tcp_layer.expires_never();
        // A peer that takes the connection but never answers the handshake is given 5 s; an
        // open link may stay quiet for as long as its node has nothing to send.
        websocket::stream_base::timeout limits{};
        limits.handshake_timeout = handshake_limit();
        limits.idle_timeout = websocket::stream_base::none();
        limits.keep_alive_pings = false;
        ws->set_option(limits);
        ws->read_message_max(fleet_.graph.limits.message + wire::numbered_overhead);
        // meshrun.1, who sends, and the fleet's token.
        ws->set_option(websocket::stream_base::decorator([this](websocket::request_type& req) {
            req.set(http::field::sec_websocket_protocol, beast::string_view(wire::protocol.data(), wire::protocol.size()));
            req.set("Meshrun-Sender", owner_.sender());
            req.set("Meshrun-Boot", owner_.boot);
            if (!fleet_.token.empty()) req.set(http::field::authorization, "Bearer " + fleet_.token);
        }));
        websocket::response_type res;
        co_await ws->async_handshake(res, handshake_host, target, asio::redirect_error(use, ec));
        if (ec == beast::error::timeout)
            co_return fmt::format("no answer to the websocket handshake within {}", dsl::format_duration(static_cast<std::uint64_t>(handshake_limit().count())));
        if (ec == websocket::error::upgrade_declined && res.result() == http::status::not_found)
            co_return fmt::format("{} has no channel `{}` (HTTP 404: is it running the same file?)", target_, channel_);
        if (ec == websocket::error::upgrade_declined && res.result() == http::status::unauthorized)
            co_return fmt::format("{} refused the fleet's token (HTTP 401: is its secret the same?)", target_);
        if (ec == websocket::error::upgrade_declined)
            co_return fmt::format("the peer declined the websocket upgrade (HTTP {})", res.result_int());
        if constexpr (tls) {
            if (ec) co_return "TLS: " + handshake_error(ws->next_layer(), ec);  // a refused certificate shows here
        }
        if (ec) co_return ec.message();
        const auto protocol = res.find(http::field::sec_websocket_protocol);
        numbered_ = protocol != res.end() &&
                    std::string_view(protocol->value().data(), protocol->value().size()) == wire::protocol;
        // Open: a ping every 2 s, and the connection taken for dead when nothing has come
        // back for 4 (Beast pings at half the idle timeout and ends the connection at the
        // next half with nothing read).
        limits.idle_timeout = dead_after;
        limits.keep_alive_pings = true;
        ws->set_option(limits);
        tcp_layer.socket().set_option(tcp::no_delay(true), ec);
        ws->text(true);
        ws_ = ws;
        down_.clear();
        refused_ = false;
        asio::co_spawn(owner_.executor(), read(std::move(ws)), or_log(fleet_.log, owner_.spec().name, "the link to " + name()));
        co_return std::string();
    }

    // Reads the connection while it is open: the answer to the request in flight, and
    // the end of the connection whenever the peer ends it.
    task<void> read(std::shared_ptr<Ws> ws) {
        beast::flat_buffer buffer;
        beast::error_code ec;
        std::string refusal;  // a reply this link refuses for what it is
        std::string broken;   // a frame that breaks meshrun.1: the connection is closed and made again
        while (true) {
            buffer.clear();
            co_await ws->async_read(buffer, asio::redirect_error(use, ec));
            if (ec) break;
            if (const auto bad = wire::decode_reply(ws->got_text())) {
                refusal = fmt::format("{} replied with a binary message (replies are text)", name());
                const websocket::close_reason reason(static_cast<websocket::close_code>(bad->code),
                                                     beast::string_view(bad->reason.data(), bad->reason.size()));
                co_await ws->async_close(reason, asio::redirect_error(use, ec));
                break;
            }
            std::string frame = beast::buffers_to_string(buffer.data());
            if (numbered_) {
                const auto reply = wire::parse_numbered(frame, "a");
                const bool in_flight = awaiting_ && !reply_ && reply && reply->seq == queue_.front().seq;
                if (!in_flight) {
                    broken = reply ? fmt::format("{} answered message {}, not the one in flight", name(), reply->seq)
                                   : fmt::format("{} sent a frame that is not a meshrun.1 reply", name());
                    co_await ws->async_close(websocket::close_reason(websocket::close_code::protocol_error),
                                             asio::redirect_error(use, ec));
                    break;
                }
                frame.erase(0, frame.size() - reply->body.size());
            }
            if (awaiting_ && !reply_) {
                reply_ = std::move(frame);
                answered_.notify();
            } else if (unsolicited_++ == 0) {
                log(fmt::format("{} sent a message that answers no request; ignored", name()));
            }
        }
        if (ws_ != ws) co_return;  // stopped, or already replaced
        ws_.reset();
        const bool moved = std::exchange(moved_, false);
        const auto reason = ws->reason();
        if (ec == websocket::error::message_too_big) {
            refusal = fmt::format("the reply of {} is over the limit of {} bytes", name(), fleet_.graph.limits.message);
        } else if (ec == websocket::error::bad_frame_payload) {
            refusal = fmt::format("the reply of {} is not valid UTF-8", name());
        }
        if (moved) {
            down_ = fmt::format("{} moved (etcd gives another address)", name());
        } else if (timed_out_) {
            down_ = fmt::format("no acknowledgement from {} within {} s", name(), static_cast<double>(deadline().count()) / 1e6);
        } else if (ec == beast::error::timeout) {
            down_ = fmt::format("{} answered nothing, not even a ping, for {} s", name(), dead_after.count());
        } else if (!broken.empty()) {
            down_ = broken;
        } else if (!refusal.empty()) {
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
        set_state(LinkState::down, down_);
        if (!awaiting_ && !stopping_ && !fleet_.stopping) {
            if (auto line = failures_.failed(fleet_.clock->now(), down_ + "; reconnecting at the next message", down_)) log(*line);
        }
        answered_.notify();
    }

    Micros handshake_limit() const { return fleet_.graph.limits.handshake; }
    static constexpr std::chrono::seconds dead_after{4};

    Micros deadline() const { return std::chrono::duration_cast<Micros>(fleet_.options.ack_timeout); }

    // The acknowledgement deadline of the request in flight: one check on the clock at a
    // time, not a timer per request. A request unanswered past it ends the connection;
    // it is sent again on the next.
    void watch_deadline() {
        if (watching_ || deadline().count() <= 0) return;
        watching_ = true;
        fleet_.clock->call_at(queue_.front().since + deadline(), [this] {
            watching_ = false;
            if (!awaiting_ || !ws_ || stopping_) return;
            if (fleet_.clock->now() - queue_.front().since < deadline()) return watch_deadline();
            timed_out_ = true;
            beast::get_lowest_layer(*ws_).close();  // read() sees the end and says why
        });
    }

    task<void> pause() {
        set_state(LinkState::retrying, down_);
        co_await sleep_on(*fleet_.clock, owner_.executor(), backoff_.next(), pausing_);
    }

    task<void> pump() {
        while (!stopping_) {
            if (queue_.empty()) {
                co_await wake_.wait();
                continue;
            }
            if (!ws_) {
                set_state(LinkState::connecting);
                const std::string failure = co_await connect();
                if (stopping_) break;
                if (!failure.empty()) {
                    if (auto line = failures_.failed(fleet_.clock->now(),
                                                     fmt::format("waiting for {}{} ({}); retrying", name(),
                                                                 where_.empty() ? "" : " at " + where_, failure),
                                                     failure))
                        log(*line);
                    down_ = failure;
                    co_await pause();
                    continue;
                }
                set_state(LinkState::up);
            }
            auto ws = ws_;
            reply_.reset();
            awaiting_ = true;
            timed_out_ = false;
            queue_.front().since = fleet_.clock->now();
            watch_deadline();
            beast::error_code ec;
            Request& r = queue_.front();
            const std::string frame = numbered_ ? wire::numbered(r.sent ? 'r' : 'm', r.seq, r.payload) : std::string();
            const std::string_view out = numbered_ ? std::string_view(frame) : wire::encode(r.payload);
            r.sent = true;
            co_await ws->async_write(asio::buffer(out), asio::redirect_error(use, ec));
            if (ec && ws_ == ws) beast::get_lowest_layer(*ws).close();  // read() sees the end and says why
            while (!reply_ && ws_ == ws && !stopping_) co_await answered_.wait();
            awaiting_ = false;
            if (stopping_) break;
            if (reply_) {
                if (auto line = failures_.recovered(fleet_.clock->now(), fmt::format("connected to {} again", name()))) log(*line);
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
            } else if (auto line = failures_.failed(fleet_.clock->now(), down_ + "; reconnecting", down_)) {
                log(*line);
            }
            co_await pause();  // every reconnect backs off, whatever the cause
        }
        pumping_ = false;
    }

    NodeRt& owner_;
    FleetCore& fleet_;
    int edge_;
    int node_;
    std::string host_;
    std::string target_, channel_;
    std::deque<Request> queue_;    // at most limit(); the front is in flight
    std::deque<Request> waiting_;  // senders waiting for room (each counted in the owner's `waiting`)
    Signal wake_, answered_;
    std::shared_ptr<Ws> ws_;
    std::shared_ptr<Event> pausing_;     // the backoff waited out now, cut short by stop()
    std::optional<std::string> reply_;  // the answer to the request in flight, from read()
    std::string where_;                  // HOST:PORT it connects to
    std::string down_;                   // why the connection ended, from read()
    bool refused_ = false;  // the peer closed over the message in flight (1003, 1007, 1009)
    bool numbered_ = false;  // the connection speaks meshrun.1
    bool moved_ = false;     // the connection was ended for a move in etcd (moved())
    std::uint64_t last_seq_ = 0;  // the number of the last message admitted to the outbox
    Backoff backoff_;
    Repeated failures_;  // named for the link in the constructor
    Repeated full_;      // the queue full: logged once, then once a minute
    LinkState state_ = LinkState::down;
    bool pumping_ = false, stopping_ = false, awaiting_ = false, watching_ = false, timed_out_ = false;
    std::uint64_t unsolicited_ = 0;
};

}  // namespace meshrun::engine
