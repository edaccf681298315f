// The registry: with `discovery etcd "URL"`, every node of the process registers in etcd
// under /meshrun/MESH/nodes/NODE with what it actually bound, on one lease of the process
// (TTL 10 s, kept alive every third of it): a process that dies leaves no key behind it for
// longer than the TTL. A lost lease (a keepalive answered without a TTL: etcd forgot it, or it
// ran out while etcd was unreachable) is granted again and the keys put again. A link reads
// its target's key each time it connects (lookup()). docs/discovery.md.
//
// etcd's v3 API through its JSON gateway: HTTP POSTs with Beast, one connection a request.
// Keys and values are base64 (OpenSSL's), 64-bit numbers JSON strings. The endpoints are
// tried in turn, starting with the last that answered; every retry backs off on the fleet's
// clock, and a failure that repeats is logged once, then summarised (failures.hpp).
// Included by the runtime's translation unit only.
#pragma once

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "node_runtime.hpp"

namespace meshrun::engine {

// Base64 as etcd's gateway writes it (standard alphabet, padded): OpenSSL's, never by hand.
inline std::string base64(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3), '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

// None when `text` is not base64. EVP_DecodeBlock counts the padding as zero bytes: taken off.
inline std::optional<std::string> unbase64(std::string_view text) {
    if (text.size() % 4 != 0) return std::nullopt;
    std::string out(3 * text.size() / 4, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
    if (n < 0) return std::nullopt;
    std::size_t size = static_cast<std::size_t>(n);
    for (std::size_t i = text.size(); i > 0 && text[i - 1] == '=' && size > 0; --i) --size;
    out.resize(size);
    return out;
}

// One etcd client URL, `http://HOST[:PORT][/]` (the checker's form; no port: etcd's 2379).
struct EtcdEndpoint {
    std::string url, host, port;
};

// Throws with the reason when `url` is not a URL this client can use (https: not yet).
inline EtcdEndpoint etcd_endpoint(const std::string& url) {
    constexpr std::string_view scheme = "http://";
    if (url.rfind("https://", 0) == 0)
        throw std::runtime_error(fmt::format("discovery `{}`: etcd over https is not built yet; give its http:// URL", url));
    if (url.rfind(scheme, 0) != 0) throw std::runtime_error(fmt::format("discovery `{}`: not an http:// URL", url));
    std::string rest = url.substr(scheme.size());
    if (!rest.empty() && rest.back() == '/') rest.pop_back();
    EtcdEndpoint e{url, rest, "2379"};
    const auto close = rest.find(']');
    const auto colon = rest.rfind(':');
    if (colon != std::string::npos && (close == std::string::npos || colon > close)) {
        e.host = rest.substr(0, colon);
        e.port = rest.substr(colon + 1);
    }
    e.host = unbracket(e.host);
    return e;
}

// etcd's v3 JSON gateway.
class Etcd {
public:
    // What a call came to: etcd's answer, or why there is none. `reached`: etcd answered,
    // with an error of its own if `error` is set (a lease not found), so that trying another
    // endpoint would not help.
    struct Answer {
        nlohmann::json json;
        std::string error;
        bool reached = false;
        bool ok() const { return error.empty(); }
    };

    Etcd(Executor ex, Logger& log, Clock& clock, const std::vector<Discovery>& discovery) : ex_(ex), log_(log), clock_(clock) {
        for (const auto& d : discovery) {
            endpoints_.push_back(etcd_endpoint(d.url));
            failures_.emplace_back("etcd at " + d.url);
        }
    }

    // POSTs `body` to `path` (/v3/kv/put ...) at each endpoint in turn, from the last that
    // answered, until one answers.
    task<Answer> call(std::string path, nlohmann::json body) {
        const std::string text = body.dump();
        std::string why;
        for (std::size_t i = 0; i < endpoints_.size(); ++i) {
            const std::size_t at = (current_ + i) % endpoints_.size();
            const EtcdEndpoint& endpoint = endpoints_[at];
            Answer answer = co_await post(endpoint, path, text);
            if (answer.reached) {
                current_ = at;
                if (auto line = failures_[at].recovered(clock_.now(), "etcd at " + endpoint.url + " answers again"))
                    log_.line("meshrun", *line);
                co_return answer;
            }
            why += fmt::format("{}{}: {}", why.empty() ? "" : "; ", endpoint.url, answer.error);
            // Only when another endpoint is tried next: with none left, the caller says why.
            if (i + 1 < endpoints_.size()) {
                const std::string& next = endpoints_[(at + 1) % endpoints_.size()].url;
                if (auto line = failures_[at].failed(clock_.now(), fmt::format("etcd at {} does not answer ({}); trying {}",
                                                                               endpoint.url, answer.error, next), answer.error))
                    log_.line("meshrun", *line);
            }
        }
        co_return Answer{{}, why, false};
    }

    const std::string& url() const { return endpoints_[current_].url; }

private:
    static constexpr std::chrono::seconds request_limit{3};

    task<Answer> post(const EtcdEndpoint& at, const std::string& path, const std::string& body) {
        beast::error_code ec;
        Resolver resolver(ex_);
        const auto found = co_await resolver.async_resolve(at.host, at.port, asio::redirect_error(use, ec));
        if (ec) co_return Answer{{}, fmt::format("cannot resolve `{}`: {}", at.host, ec.message()), false};
        TcpStream stream(ex_);
        stream.expires_after(request_limit);  // the whole request: connect, write, read
        co_await stream.async_connect(found, asio::redirect_error(use, ec));
        if (ec) co_return Answer{{}, ec.message(), false};
        http::request<http::string_body> req{http::verb::post, path, 11};
        req.set(http::field::host, host_port(at.host, static_cast<std::uint16_t>(std::stoi(at.port))));
        req.set(http::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        co_await http::async_write(stream, req, asio::redirect_error(use, ec));
        if (ec) co_return Answer{{}, ec.message(), false};
        beast::flat_buffer buffer;
        http::response<http::string_body> res;
        co_await http::async_read(stream, buffer, res, asio::redirect_error(use, ec));
        if (ec == beast::error::timeout)
            co_return Answer{{}, fmt::format("no answer within {} s", request_limit.count()), false};
        if (ec) co_return Answer{{}, ec.message(), false};
        stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        Answer answer;
        answer.json = nlohmann::json::parse(res.body(), nullptr, false);
        if (answer.json.is_discarded() || !answer.json.is_object()) {
            answer.error = fmt::format("HTTP {} with a body that is not a JSON object: {}", res.result_int(), shown(res.body()));
            co_return answer;  // not etcd, or not its gateway: another endpoint may be
        }
        answer.reached = true;
        // An error of etcd's: {"error": "...", "code": 5, "message": "..."}, or in a stream's result.
        const nlohmann::json* error = &answer.json;
        if (answer.json.contains("error") && answer.json["error"].is_object()) error = &answer.json["error"];
        if (res.result() != http::status::ok || error->contains("message")) {
            const std::string message = error->value("message", std::string());
            answer.error = fmt::format("HTTP {}: {}", res.result_int(), message.empty() ? shown(res.body()) : message);
        }
        co_return answer;
    }

    Executor ex_;
    Logger& log_;
    Clock& clock_;
    std::vector<EtcdEndpoint> endpoints_;
    std::vector<Repeated> failures_;  // per endpoint: its failures while another was tried
    std::size_t current_ = 0;
};

// Registers the nodes of the process and keeps their lease alive, until stop().
class Registry {
public:
    static constexpr std::int64_t ttl = 10;  // seconds

    explicit Registry(FleetCore& f) : fleet_(f), etcd_(f.io.get_executor(), f.log, *f.clock, f.graph.discovery) {}

    // After every node here listens: its port is known.
    void start() {
        // Every node's series from the start, at 0 (metrics.hpp).
        fleet_.tell([](Observer& o) { o.registry_lease(0); });
        for (auto& node : fleet_.nodes) told(*node, false);
        asio::co_spawn(fleet_.io.get_executor(), run(), or_log(fleet_.log, "meshrun", "the registration in etcd"));
    }

    // The fleet stops: the lease is revoked, so that the keys go now, not in 10 s.
    void stop() {
        stopping_ = true;
        if (pausing_) pausing_->notify();
        if (lease_.empty()) return;
        asio::co_spawn(fleet_.io.get_executor(), revoke(lease_), asio::detached);
    }

    nlohmann::json status() const {
        return {{"etcd", etcd_.url()}, {"registered", registered_}, {"lease", lease_}};
    }

    // Where the nodes register: /meshrun/MESH/nodes/NODE.
    std::string key(const Node& n) const { return fmt::format("/meshrun/{}/nodes/{}", fleet_.graph.name, n.name); }

    // What a node registers: where it listens (as bound, and the port it got), its channels,
    // TLS or not, and meshrun's version. Never the fleet's token.
    nlohmann::json value(const NodeRt& node) const {
        const auto index = static_cast<std::size_t>(node.index());
        nlohmann::json v = {{"mesh", fleet_.graph.name}, {"node", node.spec().name}};
        if (node.acceptor) {
            v["address"] = fleet_.bound[index];
            v["port"] = fleet_.ports[index];
        }
        v["channels"] = nlohmann::json::array();
        for (const Source& s : node.spec().sources)
            if (s.kind == Source::Kind::channel) v["channels"].push_back(s.name);
        v["tls"] = fleet_.tls_server.has_value();
        v["version"] = MESHRUN_VERSION;
        return v;
    }

    // What etcd holds for node `name` now; when etcd does not answer, what it held last.
    task<std::optional<Registered>> lookup(std::string name) {
        const std::string path = "/v3/kv/range";
        nlohmann::json body = {{"key", base64(fmt::format("/meshrun/{}/nodes/{}", fleet_.graph.name, name))}};
        Etcd::Answer answer = co_await etcd_.call(path, std::move(body));
        const auto last = known_.find(name);
        if (!answer.ok()) {
            fleet_.tell([&answer](Observer& o) { o.registry_error(answer.error); });
            std::optional<Registered> kept;
            if (last != known_.end()) kept = last->second;
            co_return kept;
        }
        const nlohmann::json kvs = answer.json.value("kvs", nlohmann::json::array());
        std::optional<Registered> found;
        if (kvs.is_array() && !kvs.empty() && kvs[0].contains("value")) {
            const auto text = unbase64(kvs[0]["value"].get<std::string>());
            const auto value = nlohmann::json::parse(text.value_or(""), nullptr, false);
            if (value.is_object() && value.contains("address") && value.contains("port") && value["address"].is_string() &&
                value["port"].is_number_unsigned() && value["port"].get<std::uint64_t>() <= 65535)
                found = Registered{value["address"].get<std::string>(), value["port"].get<std::uint16_t>()};
        }
        if (found) {
            known_[name] = *found;
        } else if (last != known_.end()) {
            known_.erase(last);  // gone from etcd (stopped, or its lease ran out): the file's address again
        }
        fleet_.tell([this](Observer& o) { o.registry_peers(known_.size()); });
        co_return found;
    }

private:
    task<void> run() {
        while (!stopping_) {
            if (lease_.empty()) {
                // Named locals around co_await: g++ 12 mishandles temporaries there.
                const std::string path = "/v3/lease/grant";
                nlohmann::json body = {{"TTL", std::to_string(ttl)}};
                Etcd::Answer granted = co_await etcd_.call(path, std::move(body));
                if (granted.ok() && !granted.json.contains("ID")) granted.error = "an answer without a lease ID";
                if (!granted.ok()) {
                    std::string what = "cannot have a lease from etcd";
                    co_await failed(std::move(what), granted);
                    continue;
                }
                lease_ = granted.json["ID"].get<std::string>();
                const std::int64_t given = etcd_seconds(granted.json, ttl);
                fleet_.tell([given](Observer& o) { o.registry_lease(given); });
            }
            if (!registered_) {
                std::string why;
                bool lost = false;
                for (auto& node : fleet_.nodes) {
                    nlohmann::json put = {{"key", base64(key(node->spec()))}, {"value", base64(value(*node).dump())},
                                          {"lease", lease_}};
                    const std::string path = "/v3/kv/put";
                    Etcd::Answer answer = co_await etcd_.call(path, std::move(put));
                    if (answer.ok()) {
                        told(*node, true);
                        continue;
                    }
                    lost = answer.reached;  // etcd refused the put: the lease is gone (expired, or forgotten)
                    why = answer.error;
                    std::string what = fmt::format("cannot register `{}` in etcd", node->spec().name);
                    co_await failed(std::move(what), answer);
                    break;
                }
                if (lost) forget_lease();
                if (!why.empty()) continue;
                registered_ = true;
                const Micros now = fleet_.clock->now();
                if (auto line = failures_.recovered(now, "registered in etcd again")) fleet_.log.line("meshrun", *line);
                if (!said_) {
                    said_ = true;
                    std::vector<std::string> names;
                    for (auto& node : fleet_.nodes) names.push_back(node->spec().name);
                    fleet_.log.line("meshrun", fmt::format("registered {} in etcd at {} under /meshrun/{}/nodes/ (lease {:x}, TTL {} s)",
                                                           fmt::join(names, ", "), etcd_.url(), fleet_.graph.name,
                                                           std::stoull(lease_), ttl));
                }
                backoff_.reset();
            }
            // Kept alive every third of the TTL; a keepalive answered without a TTL: lost.
            const Micros third = std::chrono::duration_cast<Micros>(std::chrono::seconds(ttl)) / 3;
            co_await sleep_on(*fleet_.clock, fleet_.io.get_executor(), third, pausing_);
            while (!stopping_) {
                const std::string path = "/v3/lease/keepalive";
                nlohmann::json body = {{"ID", lease_}};
                Etcd::Answer alive = co_await etcd_.call(path, std::move(body));
                if (alive.ok() && alive.json.contains("result")) {
                    const nlohmann::json& result = alive.json["result"];
                    if (!result.contains("TTL") || result["TTL"] == "0") {
                        fleet_.log.line("meshrun", fmt::format("the lease {:x} in etcd at {} is lost (a keepalive answered "
                                                               "without a TTL); registering again", std::stoull(lease_), etcd_.url()));
                        forget_lease();
                    } else {
                        const std::int64_t left = etcd_seconds(result, ttl);
                        fleet_.tell([left](Observer& o) { o.registry_lease(left); });
                        if (auto line = failures_.recovered(fleet_.clock->now(), "etcd answered again"))
                            fleet_.log.line("meshrun", *line);
                    }
                    backoff_.reset();
                    break;
                }
                // etcd unreachable: the keys stay while the lease runs; tried again, backing off.
                std::string what = "cannot keep the lease in etcd alive";
                co_await failed(std::move(what), alive);
            }
        }
    }

    // Logged once, then summarised; then a pause, backing off.
    task<void> failed(std::string what, const Etcd::Answer& answer) {
        if (stopping_) co_return;
        fleet_.tell([&answer](Observer& o) { o.registry_error(answer.error); });
        if (auto line = failures_.failed(fleet_.clock->now(), fmt::format("{} ({}); retrying", what, answer.error), answer.error))
            fleet_.log.line("meshrun", *line);
        const Micros pause = backoff_.next();  // a named local, as above
        co_await sleep_on(*fleet_.clock, fleet_.io.get_executor(), pause, pausing_);
    }

    // The lease is gone: no key of this process is in etcd any more.
    void forget_lease() {
        lease_.clear();
        registered_ = false;
        fleet_.tell([](Observer& o) { o.registry_lease(0); });
        for (auto& node : fleet_.nodes) told(*node, false);
    }

    void told(const NodeRt& node, bool registered) {
        const int index = node.index();
        fleet_.tell([index, registered](Observer& o) { o.registry_registered(index, registered); });
    }

    // A TTL in etcd's answer (a JSON string of a 64-bit number); `absent` when it has none.
    static std::int64_t etcd_seconds(const nlohmann::json& j, std::int64_t absent) {
        if (!j.contains("TTL") || !j["TTL"].is_string()) return absent;
        try {
            return std::stoll(j["TTL"].get<std::string>());
        } catch (const std::exception&) {
            return absent;
        }
    }

    task<void> revoke(std::string lease) {
        const std::string path = "/v3/lease/revoke";
        nlohmann::json body = {{"ID", lease}};
        co_await etcd_.call(path, std::move(body));
    }

    FleetCore& fleet_;
    Etcd etcd_;
    std::string lease_;  // etcd's lease ID, a decimal string as the gateway writes it; empty: none
    bool registered_ = false, said_ = false, stopping_ = false;
    Backoff backoff_;
    Repeated failures_{"etcd"};
    std::shared_ptr<Event> pausing_;  // the pause waited out now, cut short by stop()
    std::map<std::string, Registered> known_;  // what etcd held at the last lookup of each node
};

inline task<std::optional<Registered>> registry_lookup(FleetCore& fleet, int node) {
    std::string name = fleet.graph.nodes[static_cast<std::size_t>(node)].name;
    co_return co_await fleet.registry->lookup(std::move(name));
}

}  // namespace meshrun::engine
