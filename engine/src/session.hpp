// The one way a message enters a node: a session, one client connection. HTTP
// first (the status page, health, metrics, errors), then a channel's websocket:
// frames in through the codec, the interpreter's replies out.
//
// Over plain TCP or TLS, the websocket runs on the coalescing stream
// (server_stream.hpp): replies held and written together, messages already received
// read without a trip through the event loop, idle connections found by one sweep a
// node.
#pragma once

#include <cmath>
#include <type_traits>

#include "link.hpp"
#include "received.hpp"
#include "server_stream.hpp"

namespace meshrun::engine {

// The request's path, without its query.
inline std::string_view path_of(const http::request<http::string_body>& req) {
    const std::string_view target(req.target().data(), req.target().size());
    return target.substr(0, target.find('?'));
}

template<class Stream>
task<void> http_reply(Stream& stream, const http::request<http::string_body>& req, http::status status,
                      std::string content_type, std::string body) {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::server, "meshrun");
    res.set(http::field::content_type, content_type);
    res.keep_alive(false);
    if (status == http::status::method_not_allowed)
        res.set(http::field::allow, path_of(req).starts_with("/pins/") ? "POST" : "GET, HEAD");
    res.body() = std::move(body);
    res.prepare_payload();
    if (req.method() == http::verb::head) res.body().clear();  // the length of what GET would send, no body
    beast::error_code ec;
    co_await http::async_write(stream, res, asio::redirect_error(use, ec));
    beast::get_lowest_layer(stream).socket().shutdown(Socket::shutdown_send, ec);
}

// Reads a request, sent whole within `limit`; a request too large is answered 431.
// False when the connection has nothing more to answer.
template<class Stream>
task<bool> read_request(Stream& stream, beast::flat_buffer& buffer, http::request<http::string_body>& req, Micros limit) {
    beast::error_code ec;
    beast::get_lowest_layer(stream).expires_after(limit);
    co_await http::async_read(stream, buffer, req, asio::redirect_error(use, ec));
    if (ec == http::error::body_limit)
        co_await http_reply(stream, req, http::status::payload_too_large, "text/plain", "request body too large\n");
    else if (ec == http::error::header_limit || ec == http::error::buffer_overflow)
        co_await http_reply(stream, req, http::status::request_header_fields_too_large, "text/plain", "request too large\n");
    co_return !ec;
}

// Whether `given` is the fleet's token, and whether a request carries it (`Authorization:
// Bearer TOKEN`; always true without a secret). Compared in constant time: the time taken
// depends on the token's length only, never on how much of a guess is right.
inline bool token_matches(const FleetCore& fleet, std::string_view given) {
    const std::string& token = fleet.token;
    unsigned char diff = given.size() == token.size() ? 0 : 1;
    for (std::size_t i = 0; i < token.size(); ++i)
        diff |= static_cast<unsigned char>((i < given.size() ? given[i] : 0) ^ token[i]);
    return diff == 0;
}
inline bool authorized(const FleetCore& fleet, const http::request<http::string_body>& req) {
    if (fleet.token.empty()) return true;
    const auto field = req.find(http::field::authorization);
    if (field == req.end()) return false;
    std::string_view given(field->value().data(), field->value().size());
    constexpr std::string_view scheme = "bearer ";
    if (given.size() < scheme.size()) return false;
    for (std::size_t i = 0; i < scheme.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(given[i])) != scheme[i]) return false;
    given.remove_prefix(scheme.size());
    return token_matches(fleet, given);
}

// Whether a request comes from a page of another site: its Origin (a browser sends one on every
// websocket and cross-site POST) is not this server's own, the one its Host names. Such requests
// are refused, so that a web page open in a browser on this machine can neither read the dashboard
// nor drive a pin; clients that are no browser send no Origin.
inline bool foreign_origin(const http::request<http::string_body>& req) {
    const auto origin = req.find(http::field::origin), host = req.find(http::field::host);
    if (origin == req.end()) return false;
    if (host == req.end()) return true;
    const std::string_view o(origin->value().data(), origin->value().size()), h(host->value().data(), host->value().size());
    for (std::string_view scheme : {"http://", "https://"})
        if (o.size() == scheme.size() + h.size() && o.starts_with(scheme) && o.substr(scheme.size()) == h) return false;
    return true;
}

// A request without the token: 401, logged with the peer's address (once, then summarised).
template<class Stream>
task<void> refuse_unauthorized(FleetCore& fleet, const NodeRt* node, Stream& stream, const http::request<http::string_body>& req,
                               const std::string& peer) {
    const bool had = req.find(http::field::authorization) != req.end();
    const std::string why = had ? "a wrong token" : "no token";
    const std::string method(req.method_string().data(), req.method_string().size());
    const std::string line = fmt::format("refused {} {} from {}: {} (HTTP 401; secret env {})", method, path_of(req),
                                         peer, why, fleet.graph.secrets.front().env);
    if (auto text = fleet.unauthorized.failed(fleet.clock->now(), line, why)) {
        if (node) {
            fleet.log.line(node->spec().name, *text);
        } else {
            fleet.log.line("meshrun", *text);
        }
    }
    if (node) fleet.tell([&](Observer& o) { o.unauthorized(node->index()); });
    http::response<http::string_body> res{http::status::unauthorized, req.version()};
    res.set(http::field::server, "meshrun");
    res.set(http::field::www_authenticate, "Bearer realm=\"meshrun\"");
    res.set(http::field::content_type, "text/plain");
    res.keep_alive(false);
    res.body() = "this node needs the fleet's token: Authorization: Bearer TOKEN\n";
    res.prepare_payload();
    beast::error_code ec;
    co_await http::async_write(stream, res, asio::redirect_error(use, ec));
    beast::get_lowest_layer(stream).socket().shutdown(Socket::shutdown_send, ec);
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
template<class Stream>
task<bool> common_http(FleetCore& fleet, const NodeRt* node, Stream& stream, const http::request<http::string_body>& req,
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

// The sender of a meshrun.1 session, from its upgrade request (docs/delivery.md).
struct Numbering {
    std::string sender, boot;
};

// The reply of a firing that waited: one pointer in the callback, so that making it
// allocates nothing (std::function keeps two pointers' worth in itself).
struct Later {
    std::string reply;
    bool replied = false;
    Event event;
};

// Fires a message and gives its reply, at once or when the firing has replied.
inline task<std::string> fire(NodeRt& node, Message& message, Later& later) {
    std::optional<std::string> now = node.interp.deliver(message, [&later](std::string text) {
        later.reply = std::move(text);
        later.replied = true;
        later.event.notify();
    });
    if (now) co_return std::move(*now);
    while (!later.replied) co_await later.event.wait();
    later.replied = false;
    later.event.reset();
    co_return std::move(later.reply);
}

// A meshrun.1 message: fired once, whatever the times it is sent (docs/delivery.md).
// Returns its reply: the firing's, or the one it gave the first time.
inline task<std::string> fire_once(NodeRt& node, const Source& channel, const Numbering& from, Message& message,
                                   Later& later) {
    const std::uint64_t seq = message.sequence;
    Received::Check seen = node.received.check(from.sender, channel.name, from.boot, seq, message.resent);
    while (seen.verdict == Received::Verdict::wait && !node.fleet.closing) {
        co_await node.fired.wait();  // the same message, on a connection before this one
        seen = node.received.check(from.sender, channel.name, from.boot, seq, message.resent);
    }
    const int source = message.channel;
    switch (seen.verdict) {
    case Received::Verdict::answer:
        node.fleet.tell([&](Observer& o) { o.repeat(node.index(), source, false); });
        co_return std::move(seen.reply);
    case Received::Verdict::forgotten:
        node.fleet.tell([&](Observer& o) { o.repeat(node.index(), source, false); });
        co_return fmt::format("error: message {} of {} was fired already; its reply is no longer kept", seq, from.sender);
    case Received::Verdict::wait:
        co_return std::string();  // the node closes: no reply goes out
    case Received::Verdict::fire:
        break;
    }
    if (seen.refire) {
        const std::string why = node.state ? "it stopped while firing it" : "it restarted, without --state";
        const std::string line = fmt::format("warning: firing message {} of {} on /{} again: it was sent again and this node "
                                             "has no record of its reply ({}); counted in meshrun_delivery_refired_total",
                                             seq, from.sender, channel.name, why);
        // The first 8 of a run each a line, then a count a minute: a client cannot flood the log.
        const std::string which = fmt::format("{} {}", from.sender, seq);
        if (auto text = node.refires.failed(node.fleet.clock->now(), line, which)) node.log(*text);
        node.fleet.tell([&](Observer& o) { o.repeat(node.index(), source, true); });
    }
    node.received.begin(from.sender, channel.name, from.boot, seq);
    if (node.state) node.state->firing(from.sender, channel.name, from.boot, seq);  // synced before it fires
    std::string reply = co_await fire(node, message, later);
    if (node.state) {
        node.state->replied(from.sender, channel.name, from.boot, seq, reply);
        node.state->sync();  // recorded before the sender hears of it
    }
    node.received.done(from.sender, channel.name, seq, reply);
    node.fired.notify();
    co_return reply;
}

// A channel's websocket, open: reads messages, hands them to the interpreter, sends
// its replies, until the client closes or the node stops. `numbering`: meshrun.1.
template<class Ws>
task<void> serve(NodeRt& node, Ws& ws, const Source& channel, const Peer& peer, const Numbering* numbering,
                 beast::error_code& ec) {
    const int index = static_cast<int>(&channel - node.spec().sources.data());
    beast::flat_buffer buffer;
    std::string reply;
    Later later{{}, false, Event(node.executor())};
    while (!node.fleet.closing) {
        if (node.waiting > 0) {
            // A firing waits for room in a full link: read nothing more until it has room.
            ws.next_layer().flush([](beast::error_code) {});
            while (node.waiting > 0 && !node.fleet.closing) co_await node.room.wait();
            if (node.fleet.closing) break;
        }
        buffer.clear();
        if (ws.next_layer().received().whole() > 0) {
            ws.read(buffer, ec);  // every byte of it is in Beast's buffer already: this does not block
        } else {
            co_await ws.async_read(buffer, asio::redirect_error(use, ec));
        }
        if (ec) break;  // Beast has already closed with 1009 (too big) or 1007 (bad UTF-8) where that applies
        ws.next_layer().received().take();
        Message message;
        message.channel = index;
        message.from = &peer;
        std::optional<Refusal> bad = wire::decode(ws.got_text(), beast::buffers_to_string(buffer.data()), message, numbering);
        // meshrun.1's frame may be longer than `limits { message }` by its header; its message may not.
        if (!bad && message.payload.size() > node.fleet.graph.limits.message) bad = Refusal{1009, "message too big"};
        if (bad) {
            const websocket::close_reason why(static_cast<websocket::close_code>(bad->code),
                                              beast::string_view(bad->reason.data(), bad->reason.size()));
            co_await ws.async_close(why, asio::redirect_error(use, ec));
            break;
        }
        if (numbering) {
            const std::uint64_t seq = message.sequence;
            std::string answer = co_await fire_once(node, channel, *numbering, message, later);
            reply = wire::numbered('a', seq, answer);
        } else {
            reply = co_await fire(node, message, later);
        }
        if (node.fleet.closing || !ws.is_open()) break;  // a close frame is on its way
        ws.next_layer().send_text(wire::encode(reply));  // held: it goes out when the session next reads
    }
}

// Whether an upgrade asks for meshrun.1 (`numbering` then says who sends), or why it
// cannot have it.
inline std::optional<std::string> numbered(const http::request<http::string_body>& req, std::optional<Numbering>& numbering) {
    const auto asked = req.find(http::field::sec_websocket_protocol);
    if (asked == req.end()) return std::nullopt;
    bool meshrun1 = false;
    const std::string_view list(asked->value().data(), asked->value().size());
    for (std::size_t at = 0; at <= list.size();) {
        std::size_t comma = list.find(',', at);
        if (comma == std::string_view::npos) comma = list.size();
        std::string_view item = list.substr(at, comma - at);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        if (item == wire::protocol) meshrun1 = true;
        at = comma + 1;
    }
    if (!meshrun1) return std::nullopt;  // another subprotocol: the plain one is all this node speaks besides
    const auto field = [&](std::string_view name) {
        const auto it = req.find(beast::string_view(name.data(), name.size()));
        return it == req.end() ? std::string() : std::string(it->value().data(), it->value().size());
    };
    Numbering n{field("Meshrun-Sender"), field("Meshrun-Boot")};
    if (n.sender.empty() || n.sender.size() > 256)
        return std::string("meshrun.1 needs a Meshrun-Sender header: who sends (1 to 256 characters)");
    const bool boot_ok = !n.boot.empty() && n.boot.size() <= 64 &&
                         n.boot.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") ==
                             std::string::npos;
    if (!boot_ok) return std::string("meshrun.1 needs a Meshrun-Boot header: 1 to 64 letters, digits, - or _");
    numbering = std::move(n);
    return std::nullopt;
}

// A channel's websocket on an accepted upgrade request, until it ends.
template<class Ws>
task<void> open_channel(NodeRt& node, Ws& ws, const http::request<http::string_body>& req, const Source& channel,
                        const Peer& peer, const std::optional<Numbering>& numbering) {
    const Limits& limits = node.fleet.graph.limits;
    // Closing handshakes must finish within `handshake`. An open channel may stay quiet
    // for as long as its peer likes, as long as it answers pings: the node's idle sweep
    // (sweep_idle) keeps that time.
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = limits.handshake;
    timeouts.idle_timeout = websocket::stream_base::none();
    timeouts.keep_alive_pings = false;
    ws.set_option(timeouts);
    const bool meshrun1 = numbering.has_value();
    ws.set_option(websocket::stream_base::decorator([meshrun1](websocket::response_type& res) {
        res.set(http::field::server, "meshrun");
        if (meshrun1) res.set(http::field::sec_websocket_protocol, beast::string_view(wire::protocol.data(), wire::protocol.size()));
    }));
    ws.read_message_max(limits.message + (meshrun1 ? wire::numbered_overhead : 0));
    beast::error_code ec;
    co_await ws.async_accept(req, asio::redirect_error(use, ec));
    if (ec) co_return;
    const std::uint64_t id = node.next_session++;
    node.sessions.emplace(id, OpenSession{[&ws] {
                                              ws.async_close(websocket::close_reason(websocket::close_code::going_away,
                                                                                     "node stopping"),
                                                             [](beast::error_code) {});
                                          },
                                          [&ws, silent = 0]() mutable {
                                              if (!ws.next_layer().idle()) {
                                                  silent = 0;
                                              } else if (++silent == OpenSession::ping_after) {
                                                  ws.async_ping({}, [](beast::error_code) {});
                                              } else if (silent == OpenSession::dead_after) {
                                                  ws.next_layer().time_out();
                                              }
                                          }});
    const Numbering* from = numbering ? &*numbering : nullptr;
    co_await serve(node, ws, channel, peer, from, ec);
    node.sessions.erase(id);
    co_await ws.next_layer().drain();  // after a close: until the client's end
    if (ec && !quiet_error(ec) && ec != websocket::error::message_too_big && ec != beast::websocket::error::bad_frame_payload) {
        const auto why = fmt::format("connection on /{} ended: {}", channel.name, ec.message());
        if (auto line = node.session_failures.failed(node.fleet.clock->now(), why, why)) node.log(*line);
    }
}

// A client's HTTP request (over TCP or TLS), then, for a channel, its websocket.
// POST /pins/NODE/PIN with the level ("0" or "1") as the body, on the dashboard's port or on a
// node's own (`only`: that node's name; the pins of the others are theirs to drive).
template<class Stream>
task<void> drive_http(FleetCore& fleet, std::string_view only, Stream& stream, const http::request<http::string_body>& req,
                      std::string_view path) {
    std::string_view rest = path.substr(std::string_view("/pins/").size());
    const auto slash = rest.find('/');
    const std::string node(rest.substr(0, slash)), pin(slash == std::string_view::npos ? "" : rest.substr(slash + 1));
    std::string body = req.body();
    body.erase(0, body.find_first_not_of(" \t\r\n"));
    body.erase(body.find_last_not_of(" \t\r\n") + 1);
    http::status status = http::status::ok;
    std::string answer;
    if (foreign_origin(req)) {
        status = http::status::forbidden;
        answer = "a page of another site cannot drive a pin\n";
    } else if (req.method() != http::verb::post) {
        status = http::status::method_not_allowed;
        answer = "a pin is driven with POST, its level (0 or 1) as the body\n";
    } else if (node.empty() || pin.empty() || pin.find('/') != std::string::npos) {
        status = http::status::not_found;
        answer = "drive a pin at /pins/NODE/PIN\n";
    } else if (!only.empty() && node != only) {
        status = http::status::not_found;
        answer = fmt::format("this is node `{}`'s port: drive `{}`'s pins at its own, or on the dashboard's\n", only, node);
    } else if (body != "0" && body != "1") {
        status = http::status::bad_request;
        answer = fmt::format("the body is the level, 0 or 1, not `{}`\n", body.substr(0, 40));
    } else if (auto refused = fleet.drive(node, pin, body == "1" ? 1 : 0)) {
        status = refused->status;
        answer = refused->why + "\n";
    } else {
        answer = fmt::format("{}.{} = {}\n", node, pin, body);
    }
    co_await http_reply(stream, req, status, "text/plain", std::move(answer));
}

template<class Stream>
task<void> serve_http(NodeRt& node, Stream& stream, const Peer& peer) {
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    const bool read = co_await read_request(stream, buffer, req, node.fleet.graph.limits.handshake);
    if (!read) co_return;
    const std::string_view path = path_of(req);
    if (path != "/healthz" && !authorized(node.fleet, req)) {
        co_await refuse_unauthorized(node.fleet, &node, stream, req, peer.address);
        co_return;
    }
    if (path.starts_with("/pins/")) {
        co_await drive_http(node.fleet, node.spec().name, stream, req, path);
        co_return;
    }
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
    std::optional<Numbering> numbering;
    if (const auto why = numbered(req, numbering)) {
        co_await http_reply(stream, req, http::status::bad_request, "text/plain", *why + "\n");
        co_return;
    }
    beast::get_lowest_layer(stream).expires_never();
    if constexpr (std::is_same_v<Stream, TcpStream>) {
        PlainServerStream ws(CoalescingStream(std::move(stream)));
        co_await open_channel(node, ws, req, *channel, peer, numbering);
    } else {
        TlsServerStream ws(CoalescingStream(std::move(stream)));
        co_await open_channel(node, ws, req, *channel, peer, numbering);
    }
}

// One client connection: over TLS when the file has `tls`, its TLS handshake first.
inline task<void> session(NodeRt& node, Socket socket) {
    TcpStream stream(std::move(socket));
    stream.socket().set_option(tcp::no_delay(true));
    Peer peer;
    {
        beast::error_code ec;
        const auto remote = stream.socket().remote_endpoint(ec);
        if (!ec) peer.address = host_port(remote.address().to_string(), remote.port());
    }
    if (!node.fleet.tls_server) {
        co_await serve_http(node, stream, peer);
        co_return;
    }
    TlsStream tls(std::move(stream), *node.fleet.tls_server);
    beast::get_lowest_layer(tls).expires_after(node.fleet.graph.limits.handshake);
    beast::error_code ec;
    co_await tls.async_handshake(asio::ssl::stream_base::server, asio::redirect_error(use, ec));
    if (ec) {
        const std::string why = handshake_error(tls, ec);
        FleetCore& fleet = node.fleet;
        // Said nothing in time, or hung up without a word (a port probe): dropped, as on a plain port.
        if (ec == beast::error::timeout || ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ||
            ec == asio::error::connection_reset || ec == asio::error::broken_pipe)
            co_return;
        if (why.find("http request") != std::string::npos) {
            // Plain HTTP to a TLS port: say so in plain HTTP, as nginx does.
            static constexpr std::string_view plain =
                "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 45\r\n\r\n"
                "this node speaks TLS: use https:// or wss://\n";
            beast::get_lowest_layer(tls).socket().write_some(asio::buffer(plain), ec);
            co_return;
        }
        if (why.find("alert") != std::string::npos) {
            // The client ended the handshake: it refused this node's certificate.
            const std::string line = fmt::format("a client at {} refused this node's certificate: {}", peer.address, why);
            if (auto text = fleet.tls_refused.failed(fleet.clock->now(), line, why)) node.log(*text);
            co_return;
        }
        if (why.find("certificate") == std::string::npos) {
            // Not TLS, or TLS this node does not speak: no one was refused for who they are.
            const std::string line = fmt::format("a TLS handshake from {} failed: {}", peer.address, why);
            if (auto text = fleet.tls_failed.failed(fleet.clock->now(), line, why)) node.log(*text);
            co_return;
        }
        // A client without a certificate the fleet's authority signed.
        const std::string line = fmt::format("refused a connection from {}: TLS handshake: {}", peer.address, why);
        if (auto text = fleet.untrusted.failed(fleet.clock->now(), line, why)) node.log(*text);
        fleet.tell([&](Observer& o) { o.unauthorized(node.index()); });
        co_return;
    }
    co_await serve_http(node, tls, peer);
}

// Every quarter of `limits { idle }`, each open websocket session is looked at: one idle
// (nothing received while it waited for input, or a write to it that never ends) for half
// of it is pinged, one idle for all of it is closed (a dead peer, or one that reads none of
// its replies). One timer a node, instead of one re-armed on every read of every session.
inline task<void> sweep_idle(NodeRt& node) {
    const auto tick = node.fleet.graph.limits.idle / OpenSession::dead_after;
    while (!node.fleet.closing) {
        node.sweeper.expires_after(tick);
        beast::error_code ec;
        co_await node.sweeper.async_wait(asio::redirect_error(use, ec));
        if (node.fleet.closing) break;
        for (auto& [id, open] : node.sessions) open.sweep();
    }
}

// A connection past its bound: 503, then closed. On a TLS port, only closed: a plain
// 503 would be garbage to a TLS client, and a TLS handshake to refuse it costs what the
// bound is there to save.
inline void refuse_busy(Socket& socket, bool tls) {
    static constexpr std::string_view busy =
        "HTTP/1.1 503 Service Unavailable\r\nServer: meshrun\r\nConnection: close\r\nContent-Type: text/plain\r\n"
        "Content-Length: 31\r\n\r\n"
        "busy: too many connections open";
    beast::error_code ec;
    if (!tls) socket.write_some(asio::buffer(busy), ec);  // a fresh socket takes it whole
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
        const std::size_t most = fleet.graph.limits.connections;
        if (fleet.connections >= fleet.max_connections || node.open >= most) {
            refuse_busy(socket, fleet.tls_server.has_value());
            const auto why =
                node.open >= most
                    ? fmt::format("{} connections are open, the node's limit (limits {{ connections {} }})", node.open, most)
                    : fmt::format("{} connections are open, the most this process's descriptor limit leaves room for",
                                  fleet.max_connections);
            if (auto line = refused.failed(fleet.clock->now(), fmt::format("refusing new connections ({}): {}", fleet.tls_server ? "closed" : "HTTP 503", why), why)) node.log(*line);
            continue;
        }
        if (auto line = refused.recovered(fleet.clock->now(), "taking new connections again")) node.log(*line);
        ++fleet.connections;
        ++node.open;
        const int index = node.index();
        fleet.tell([&](Observer& o) { o.connection_opened(index); });
        asio::co_spawn(node.executor(), session(node, std::move(socket)), [&node, index](std::exception_ptr e) {
            --node.fleet.connections;
            --node.open;
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
    const bool read = co_await read_request(stream, buffer, req, fleet.graph.limits.handshake);
    if (!read) co_return;
    const std::string_view path = path_of(req);
    if (path != "/healthz" && !authorized(fleet, req)) {
        beast::error_code ec;
        const auto remote = stream.socket().remote_endpoint(ec);
        const std::string peer = ec ? std::string("?") : host_port(remote.address().to_string(), remote.port());
        co_await refuse_unauthorized(fleet, nullptr, stream, req, peer);
        co_return;
    }
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
            refuse_busy(socket, false);
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
