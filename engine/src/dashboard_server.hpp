// --dashboard PORT: the page (embedded, dashboard/), its websocket /live, and POST /pins/NODE/PIN
// (docs/dashboard.md). The page's websocket gets the graph, the whole state, then what changed at
// most every `flush_every`: one message for every client, however many messages the fleet moves.
// A client still writing an update when the next is due skips it and is sent the whole state once
// it has caught up: nothing is queued for a slow reader.
// Included by the runtime's translation unit only.
#pragma once

#include <nlohmann/json.hpp>

#include "meshrun/dashboard/assets.hpp"
#include "session.hpp"

namespace meshrun::engine {

inline constexpr auto flush_every = std::chrono::milliseconds(50);
inline constexpr std::size_t max_dashboard_connections = 64;
inline constexpr std::size_t max_dashboard_replies = 32;  // `drove` answers a client has not read yet

struct DashboardClient {
    explicit DashboardClient(TcpStream stream) : ws(std::move(stream)), wake(ws.get_executor()) {}
    websocket::stream<TcpStream> ws;
    Signal wake;                                 // something to write, or the end
    std::deque<std::string> replies;             // `drove` answers, first
    std::shared_ptr<const std::string> update;   // the update not yet written, shared by every client
    bool behind = false;                         // it skipped an update: the whole state next
    std::optional<websocket::close_reason> close;  // set: close the socket with this and stop

    // A new update: taken if the last one went out, else skipped for the whole state later.
    void offer(const std::shared_ptr<const std::string>& next) {
        if (update) {
            behind = true;
            update.reset();
        } else if (!behind) {
            update = next;
        }
        wake.notify();
    }
    void end(websocket::close_reason why) {
        if (!close) close = std::move(why);
        wake.notify();
    }
};

// Writes what a client is due, in order: `drove` answers, then the whole state or the last update.
inline task<void> write_dashboard(FleetCore& fleet, std::shared_ptr<DashboardClient> c) {
    beast::error_code ec;
    while (!ec) {
        std::string message;
        if (c->close) {
            co_await c->ws.async_close(*c->close, asio::redirect_error(use, ec));
            break;
        } else if (!c->replies.empty()) {
            message = std::move(c->replies.front());
            c->replies.pop_front();
        } else if (c->behind) {
            message = fleet.dashboard->full_state();
            c->behind = false;
        } else if (c->update) {
            message = *c->update;
            c->update.reset();
        } else {
            co_await c->wake.wait();
            continue;
        }
        co_await c->ws.async_write(asio::buffer(message), asio::redirect_error(use, ec));
    }
}

// The answer to one message of the page: `drove` to a drive (with its id), `error` to anything else.
inline std::string dashboard_answer(FleetCore& fleet, std::string_view text) {
    const auto message = nlohmann::json::parse(text, nullptr, false);
    const bool drive = message.is_object() && message.value("type", "") == "drive";
    nlohmann::json answer = {{"type", drive ? "drove" : "error"}};
    if (message.is_object() && message.contains("id")) answer["id"] = message["id"];
    if (!drive || !message.contains("node") || !message["node"].is_string() || !message.contains("pin") ||
        !message["pin"].is_string() || !message.contains("level") || !message["level"].is_number_integer()) {
        answer["ok"] = false;
        answer["error"] = R"(expected {"type": "drive", "node": NAME, "pin": NAME, "level": 0 or 1})";
        return answer.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    const auto refused = fleet.drive(message["node"].get<std::string>(), message["pin"].get<std::string>(),
                                     message["level"].get<int>());
    answer["ok"] = !refused;
    if (refused) answer["error"] = refused->why;
    return answer.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Whether the page's hello carries the fleet's token (any hello without a secret).
inline bool hello_authorized(const FleetCore& fleet, std::string_view text) {
    const auto hello = nlohmann::json::parse(text, nullptr, false);
    if (!hello.is_object() || hello.value("type", "") != "hello") return false;
    if (fleet.token.empty()) return true;
    return hello.contains("token") && hello["token"].is_string() && token_matches(fleet, hello["token"].get<std::string>());
}

// The page's websocket: its hello (with the token) within `limits { handshake }`, then the graph
// and the state; then its `drive`s are read here while write_dashboard() writes.
inline task<void> open_dashboard(FleetCore& fleet, TcpStream stream, const http::request<http::string_body>& req,
                                 const std::string& peer) {
    auto c = std::make_shared<DashboardClient>(std::move(stream));
    c->ws.read_message_max(fleet.graph.limits.message);
    beast::error_code ec;
    beast::get_lowest_layer(c->ws).expires_after(fleet.graph.limits.handshake);
    co_await c->ws.async_accept(req, asio::redirect_error(use, ec));
    if (ec) co_return;
    beast::flat_buffer buffer;
    co_await c->ws.async_read(buffer, asio::redirect_error(use, ec));
    if (ec) co_return;
    if (!hello_authorized(fleet, beast::buffers_to_string(buffer.data()))) {
        // Denied, and gone within a second whether or not the client answers the close: a crowd
        // of them cannot hold the dashboard's connections.
        beast::get_lowest_layer(c->ws).expires_after(std::chrono::seconds(1));
        const bool secret = !fleet.token.empty();
        const std::string why = secret ? "no token, or a wrong one" : "the first message was not a hello";
        if (secret) {
            const std::string line = fmt::format("refused the dashboard to {}: {} (secret env {})", peer, why,
                                                 fleet.graph.secrets.front().env);
            if (auto text = fleet.unauthorized.failed(fleet.clock->now(), line, why)) fleet.log.line("meshrun", *text);
        }
        const std::string denied = nlohmann::json{{"type", "denied"}, {"error", why}}.dump();
        co_await c->ws.async_write(asio::buffer(denied), asio::redirect_error(use, ec));
        if (!ec) co_await c->ws.async_close(websocket::close_code::policy_error, asio::redirect_error(use, ec));
        co_return;
    }
    beast::get_lowest_layer(c->ws).expires_never();
    auto timeouts = websocket::stream_base::timeout::suggested(beast::role_type::server);
    timeouts.idle_timeout = std::chrono::duration_cast<std::chrono::seconds>(fleet.graph.limits.idle);
    c->ws.set_option(timeouts);
    std::vector<std::string> addresses(fleet.graph.nodes.size());
    std::vector<bool> simulated(fleet.graph.nodes.size());
    for (std::size_t n = 0; n < fleet.graph.nodes.size(); ++n) {
        const auto& bound = fleet.bound[n];
        if (!bound.empty()) addresses[n] = host_port(bound, fleet.ports[n]);
        simulated[n] = fleet.here[n] && fleet.simulated(static_cast<int>(n));
    }
    c->replies.push_back(fleet.dashboard->graph_message(addresses, simulated, !fleet.token.empty()));
    c->behind = true;  // then the whole state
    fleet.dashboard_clients.push_back(c);
    asio::co_spawn(c->ws.get_executor(), write_dashboard(fleet, c), asio::detached);
    while (!c->close) {
        buffer.clear();
        co_await c->ws.async_read(buffer, asio::redirect_error(use, ec));
        if (ec) break;
        if (c->replies.size() >= max_dashboard_replies) {
            c->end({websocket::close_code::policy_error, "drives sent faster than their answers are read"});
            break;
        }
        c->replies.push_back(dashboard_answer(fleet, beast::buffers_to_string(buffer.data())));
        c->wake.notify();
    }
    if (!c->close) c->end(websocket::close_code::normal);
    std::erase(fleet.dashboard_clients, c);
    // A close the client began is answered by the read; one of ours needs a read to end.
    while (!ec) {
        buffer.clear();
        co_await c->ws.async_read(buffer, asio::redirect_error(use, ec));
    }
}

// Why the dashboard does not answer a request that may come from a page of another site: one
// with a foreign Origin, or one for a Host that is no name of this machine (a name of the
// attacker's, made to resolve to this machine: DNS rebinding). An IP address, `localhost`, this
// machine's host name (and NAME.local) and the --dashboard address as written are this machine's.
inline std::optional<std::string> foreign_request(const FleetCore& fleet, const http::request<http::string_body>& req) {
    const auto lower = [](std::string text) {
        std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
        return text;
    };
    if (foreign_origin(req)) return std::string("a page of another site cannot use the dashboard");
    const auto field = req.find(http::field::host);
    if (field == req.end()) return std::nullopt;  // HTTP/1.0, curl --http1.0: not a browser
    std::string host(field->value().data(), field->value().size());
    if (!host.empty() && host.front() == '[') {
        host = host.substr(1, host.find(']') - 1);
    } else if (const auto colon = host.rfind(':'); colon != std::string::npos) {
        host.resize(colon);
    }
    host = lower(std::move(host));
    beast::error_code ec;
    (void)asio::ip::make_address(host, ec);
    if (!ec || host == "localhost") return std::nullopt;
    char name[256] = {};
    ::gethostname(name, sizeof name - 1);
    const std::string own = lower(name);
    // --dashboard NAME:PORT: NAME, as written (only a port: no name).
    const std::string spec = fleet.options.dashboard.value_or("");
    const auto colon = spec.rfind(':');
    const std::string written = colon == std::string::npos ? std::string() : lower(spec.substr(0, colon));
    if (host == own || host == own + ".local" || (!written.empty() && host == written)) return std::nullopt;
    return fmt::format("the dashboard answers for this machine's addresses and names (localhost, {}), not for `{}`",
                       own, host);
}

inline task<void> serve_dashboard(FleetCore& fleet, Socket socket) {
    TcpStream stream(std::move(socket));
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    const bool read = co_await read_request(stream, buffer, req, fleet.graph.limits.handshake);
    if (!read) co_return;
    beast::error_code ec;
    const auto remote = stream.socket().remote_endpoint(ec);
    const std::string peer = ec ? std::string("?") : host_port(remote.address().to_string(), remote.port());
    const std::string_view path = path_of(req);
    if (const auto refused = foreign_request(fleet, req)) {
        co_await http_reply(stream, req, http::status::forbidden, "text/plain", *refused + "\n");
        co_return;
    }
    if (path == "/live" && websocket::is_upgrade(req)) {
        co_await open_dashboard(fleet, std::move(stream), req, peer);
        co_return;
    }
    if (path.starts_with("/pins/")) {
        if (!authorized(fleet, req)) {
            co_await refuse_unauthorized(fleet, nullptr, stream, req, peer);
            co_return;
        }
        co_await drive_http(fleet, "", stream, req, path);
        co_return;
    }
    const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
    for (const dashboard::Asset& asset : dashboard::assets()) {
        if (path != asset.path) continue;
        if (get) {
            co_await http_reply(stream, req, http::status::ok, std::string(asset.content_type), std::string(asset.body));
        } else {
            co_await http_reply(stream, req, http::status::method_not_allowed, "text/plain", "the page answers GET only\n");
        }
        co_return;
    }
    const std::string body = path == "/live" ? std::string("/live is the page's websocket\n")
                                             : fmt::format("no `{}` here: the dashboard is at /\n", path);
    co_await http_reply(stream, req, path == "/live" ? http::status::upgrade_required : http::status::not_found, "text/plain",
                        body);
}

// Every `flush_every`, what changed goes to every page open.
inline task<void> flush_dashboard(FleetCore& fleet) {
    Timer tick(fleet.io.get_executor());
    while (!fleet.closing) {
        tick.expires_after(flush_every);
        beast::error_code ec;
        co_await tick.async_wait(asio::redirect_error(use, ec));
        if (fleet.closing) break;
        if (fleet.dashboard_clients.empty()) continue;  // the changes wait for a page
        if (auto changes = fleet.dashboard->take_changes()) {
            const auto update = std::make_shared<const std::string>(std::move(*changes));
            for (auto& c : fleet.dashboard_clients) c->offer(update);
        }
    }
}

// Accepts as listen_metrics() does, with a bound of its own.
inline task<void> listen_dashboard(FleetCore& fleet) {
    Backoff backoff(std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
    while (true) {
        beast::error_code ec;
        Socket socket = co_await fleet.dashboard_acceptor->async_accept(asio::redirect_error(use, ec));
        if (ec == asio::error::operation_aborted || !fleet.dashboard_acceptor->is_open()) co_return;
        if (ec) {
            Timer pause(fleet.io.get_executor(), backoff.next());  // out of descriptors: as listen() does
            co_await pause.async_wait(asio::redirect_error(use, ec));
            continue;
        }
        backoff.reset();
        if (fleet.dashboard_connections >= max_dashboard_connections) {
            refuse_busy(socket, false);
            continue;
        }
        ++fleet.dashboard_connections;
        asio::co_spawn(fleet.io.get_executor(), serve_dashboard(fleet, std::move(socket)), [&fleet](std::exception_ptr e) {
            --fleet.dashboard_connections;
            or_log(fleet.log, "meshrun", "a dashboard connection")(e);
        });
    }
}

}  // namespace meshrun::engine
