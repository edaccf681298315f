// The one way a message enters a node: a session, one client connection. HTTP
// first (the status page, health, metrics, errors), then a channel's websocket:
// frames in through the codec, the interpreter's replies out.
//
// Generic over the stream under the websocket: over plain TCP it runs on the
// coalescing stream (plain_stream.hpp), the fast path; over any other stream
// (TLS) on Beast's own reads and writes.
#pragma once

#include <cmath>
#include <type_traits>

#include "link.hpp"
#include "plain_stream.hpp"

namespace meshrun::engine {

template<class Stream>
task<void> http_reply(Stream& stream, const http::request<http::string_body>& req, http::status status,
                      std::string content_type, std::string body) {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::server, "meshrun");
    res.set(http::field::content_type, content_type);
    res.keep_alive(false);
    if (status == http::status::method_not_allowed) res.set(http::field::allow, "GET, HEAD");
    res.body() = std::move(body);
    res.prepare_payload();
    if (req.method() == http::verb::head) res.body().clear();  // the length of what GET would send, no body
    beast::error_code ec;
    co_await http::async_write(stream, res, asio::redirect_error(use, ec));
    beast::get_lowest_layer(stream).socket().shutdown(Socket::shutdown_send, ec);
}

// Reads a request, sent whole within `limit`; a request too large is answered 431.
// False when the connection has nothing more to answer.
inline task<bool> read_request(TcpStream& stream, beast::flat_buffer& buffer, http::request<http::string_body>& req,
                               std::chrono::seconds limit) {
    beast::error_code ec;
    stream.expires_after(limit);
    co_await http::async_read(stream, buffer, req, asio::redirect_error(use, ec));
    if (ec == http::error::header_limit || ec == http::error::body_limit || ec == http::error::buffer_overflow)
        co_await http_reply(stream, req, http::status::request_header_fields_too_large, "text/plain", "request too large\n");
    co_return !ec;
}

// The request's path, without its query.
inline std::string_view path_of(const http::request<http::string_body>& req) {
    const std::string_view target(req.target().data(), req.target().size());
    return target.substr(0, target.find('?'));
}

// Health: 200 while serving, with the name (a node's, or the nodes' of the process) and uptime.
inline std::string healthz(const FleetCore& fleet, Micros started, const char* key, nlohmann::json name) {
    const double uptime = static_cast<double>((fleet.clock->now() - started).count()) / 1e6;
    nlohmann::json j;
    j[key] = std::move(name);
    j["status"] = "serving";
    j["uptime_seconds"] = std::round(uptime * 1000) / 1000;
    return j.dump() + "\n";
}

constexpr const char* metrics_type = "text/plain; version=0.0.4; charset=utf-8";

// GET /healthz and /metrics, and what a request for anything else gets, when `node` is
// null (the --metrics port) or is no channel of it. True when the request was answered.
inline task<bool> common_http(FleetCore& fleet, const NodeRt* node, TcpStream& stream, const http::request<http::string_body>& req,
                              std::string_view path) {
    // Named locals around co_await: g++ 12 mishandles temporaries (and ?:) there.
    const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
    std::string body;
    if (get && path == "/healthz") {
        if (node) {
            body = healthz(fleet, node->started, "node", node->spec().name);
        } else {
            nlohmann::json names = nlohmann::json::array();
            for (const auto& n : fleet.nodes) names.push_back(n->spec().name);
            body = healthz(fleet, fleet.started, "nodes", std::move(names));
        }
        co_await http_reply(stream, req, http::status::ok, "application/json", std::move(body));
    } else if (get && path == "/metrics") {
        body = fleet.metrics.render(node ? node->index() : -1);
        co_await http_reply(stream, req, http::status::ok, metrics_type, std::move(body));
    } else if (path == "/healthz" || path == "/metrics" || (node && path == "/")) {
        body = fmt::format("{} answers GET only\n", path);
        co_await http_reply(stream, req, http::status::method_not_allowed, "text/plain", std::move(body));
    } else {
        co_return false;
    }
    co_return true;
}

// A channel's websocket, open: reads messages, hands them to the interpreter, sends
// its replies, until the client closes or the node stops.
template<class Ws>
task<void> serve(NodeRt& node, Ws& ws, const Source& channel, const Peer& peer, beast::error_code& ec) {
    constexpr bool plain = std::is_same_v<Ws, PlainServerStream>;
    const int index = static_cast<int>(&channel - node.spec().sources.data());
    beast::flat_buffer buffer;
    std::string reply;
    // The reply of a firing that waited: one pointer in the callback, so that making it
    // allocates nothing (std::function keeps two pointers' worth in itself).
    struct Later {
        std::string reply;
        bool replied = false;
        Event event;
    } later{{}, false, Event(node.executor())};
    while (!node.fleet.closing) {
        if (node.waiting > 0) {
            // A firing waits for room in a full link: read nothing more until it has room.
            if constexpr (plain) ws.next_layer().flush([](beast::error_code) {});
            while (node.waiting > 0 && !node.fleet.closing) co_await node.room.wait();
            if (node.fleet.closing) break;
        }
        buffer.clear();
        if constexpr (plain) {
            if (ws.next_layer().received().whole() > 0) {
                ws.read(buffer, ec);  // every byte of it is in Beast's buffer already: this does not block
            } else {
                co_await ws.async_read(buffer, asio::redirect_error(use, ec));
            }
        } else {
            co_await ws.async_read(buffer, asio::redirect_error(use, ec));
        }
        if (ec) break;  // Beast has already closed with 1009 (too big) or 1007 (bad UTF-8) where that applies
        if constexpr (plain) ws.next_layer().received().take();
        Message message;
        message.channel = index;
        message.from = &peer;
        if (const auto bad = wire::decode(ws.got_text(), beast::buffers_to_string(buffer.data()), message)) {
            const websocket::close_reason why(static_cast<websocket::close_code>(bad->code),
                                              beast::string_view(bad->reason.data(), bad->reason.size()));
            co_await ws.async_close(why, asio::redirect_error(use, ec));
            break;
        }
        std::optional<std::string> now = node.interp.deliver(message, [&later](std::string text) {
            later.reply = std::move(text);
            later.replied = true;
            later.event.notify();
        });
        if (now) {
            reply = std::move(*now);
        } else {
            while (!later.replied) co_await later.event.wait();
            reply = std::move(later.reply);
            later.replied = false;
            later.event.reset();
        }
        if (node.fleet.closing || !ws.is_open()) break;  // a close frame is on its way
        if constexpr (plain) {
            ws.next_layer().send_text(wire::encode(reply));  // held: it goes out when the session next reads
        } else {
            co_await ws.async_write(asio::buffer(wire::encode(reply)), asio::redirect_error(use, ec));
            if (ec) break;
        }
    }
}

// One client connection: its HTTP request, then, for a channel, its websocket.
inline task<void> session(NodeRt& node, Socket socket) {
    TcpStream stream(std::move(socket));
    stream.socket().set_option(tcp::no_delay(true));
    Peer peer;
    {
        beast::error_code ec;
        const auto remote = stream.socket().remote_endpoint(ec);
        if (!ec) peer.address = host_port(remote.address().to_string(), remote.port());
    }
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    const bool read = co_await read_request(stream, buffer, req, std::chrono::seconds(30));
    if (!read) co_return;
    const std::string_view path = path_of(req);
    beast::error_code ec;
    const Source* channel = path.size() > 1 ? node.spec().channel(path.substr(1)) : nullptr;

    if (!websocket::is_upgrade(req)) {
        const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
        if (get && path == "/") {
            co_await http_reply(stream, req, http::status::ok, "application/json", node.status() + "\n");
            co_return;
        }
        const bool answered = co_await common_http(node.fleet, &node, stream, req, path);
        if (answered) co_return;
        if (channel) {
            co_await http_reply(stream, req, http::status::upgrade_required, "text/plain",
                                fmt::format("/{} is a websocket channel: connect with a websocket client\n", channel->name));
        } else {
            co_await http_reply(stream, req, http::status::not_found, "text/plain",
                                fmt::format("no channel `{}` on node `{}`\n", path, node.spec().name));
        }
        co_return;
    }
    if (!channel) {
        co_await http_reply(stream, req, http::status::not_found, "text/plain",
                            fmt::format("no channel `{}` on node `{}`\n", path, node.spec().name));
        co_return;
    }
    stream.expires_never();
    PlainServerStream ws(CoalescingStream(std::move(stream)));
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
    const std::uint64_t id = node.next_session++;
    node.sessions.emplace(id, [&ws] {
        ws.async_close(websocket::close_reason(websocket::close_code::going_away, "node stopping"), [](beast::error_code) {});
    });
    co_await serve(node, ws, *channel, peer, ec);
    node.sessions.erase(id);
    co_await ws.next_layer().drain();  // after a close: until the client's end
    if (ec && !quiet_error(ec) && ec != websocket::error::message_too_big && ec != beast::websocket::error::bad_frame_payload) {
        const auto why = fmt::format("connection on /{} ended: {}", channel->name, ec.message());
        if (auto line = node.session_failures.failed(node.fleet.clock->now(), why, why)) node.log(*line);
    }
}

// A connection past its bound: 503, then closed.
inline void refuse_busy(Socket& socket) {
    static constexpr std::string_view busy = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    beast::error_code ec;
    socket.write_some(asio::buffer(busy), ec);  // a fresh socket takes it whole
    socket.close(ec);
}

// Accepts connections. A failure to accept (out of descriptors: EMFILE, ENFILE) pauses
// accepting with backoff, as nginx does, instead of spinning: it is logged once, then
// summarised, and accepting resumes when descriptors are free again.
inline task<void> listen(NodeRt& node) {
    Backoff backoff(std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
    Repeated failures("accepting connections"), refused("connections refused");
    FleetCore& fleet = node.fleet;
    while (true) {
        beast::error_code ec;
        Socket socket = co_await node.acceptor->async_accept(asio::redirect_error(use, ec));
        if (ec == asio::error::operation_aborted || !node.acceptor->is_open()) co_return;
        if (ec) {
            if (auto line = failures.failed(fleet.clock->now(),
                                            fmt::format("cannot accept connections: {}; pausing new connections", ec.message()),
                                            ec.message()))
                node.log(*line);
            // Real time, not the fleet's clock: descriptors come back in real time, also in tests.
            Timer pause(node.executor(), backoff.next());
            co_await pause.async_wait(asio::redirect_error(use, ec));
            continue;
        }
        if (auto line = failures.recovered(fleet.clock->now(), "accepting connections again")) node.log(*line);
        backoff.reset();
        if (fleet.connections >= fleet.max_connections) {
            refuse_busy(socket);
            const auto why = fmt::format("{} connections are open, the most this process's descriptor limit leaves room for",
                                         fleet.max_connections);
            if (auto line = refused.failed(fleet.clock->now(), "refusing new connections (HTTP 503): " + why, why)) node.log(*line);
            continue;
        }
        if (auto line = refused.recovered(fleet.clock->now(), "taking new connections again")) node.log(*line);
        ++fleet.connections;
        const int index = node.index();
        fleet.tell([&](Observer& o) { o.connection_opened(index); });
        asio::co_spawn(node.executor(), session(node, std::move(socket)), [&node, index](std::exception_ptr e) {
            --node.fleet.connections;
            node.fleet.tell([&](Observer& o) { o.connection_closed(index); });
            or_log(node.fleet.log, node.spec().name, "a connection")(e);
        });
    }
}

// --metrics: the whole process's /metrics and /healthz on a port of its own (a
// client-only node has no port; Prometheus scrapes one target per process).
inline task<void> serve_metrics(FleetCore& fleet, Socket socket) {
    TcpStream stream(std::move(socket));
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    const bool read = co_await read_request(stream, buffer, req, std::chrono::seconds(10));
    if (!read) co_return;
    const std::string_view path = path_of(req);
    const bool answered = co_await common_http(fleet, nullptr, stream, req, path);
    if (!answered)
        co_await http_reply(stream, req, http::status::not_found, "text/plain", "this port serves /metrics and /healthz\n");
}

// Its connections have a share of the descriptors of their own (max_metrics_connections):
// scrapers that stall cannot keep clients from the nodes, nor clients scrapers.
inline task<void> listen_metrics(FleetCore& fleet) {
    Backoff backoff(std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
    std::size_t& open = fleet.metrics_connections;
    while (true) {
        beast::error_code ec;
        Socket socket = co_await fleet.metrics_acceptor->async_accept(asio::redirect_error(use, ec));
        if (ec == asio::error::operation_aborted || !fleet.metrics_acceptor->is_open()) co_return;
        if (ec) {
            Timer pause(fleet.io.get_executor(), backoff.next());  // out of descriptors: as listen() does
            co_await pause.async_wait(asio::redirect_error(use, ec));
            continue;
        }
        backoff.reset();
        if (open >= fleet.max_metrics_connections) {
            refuse_busy(socket);
            continue;
        }
        ++open;
        asio::co_spawn(fleet.io.get_executor(), serve_metrics(fleet, std::move(socket)), [&fleet](std::exception_ptr e) {
            --fleet.metrics_connections;
            or_log(fleet.log, "meshrun", "a metrics connection")(e);
        });
    }
}

}  // namespace meshrun::engine
