// The registry: with `discovery etcd "URL"`, every node of the process registers in etcd
// under /meshrun/MESH/nodes/NODE with what it actually bound, on one lease of the process
// (TTL 10 s, kept alive every third of it): a process that dies leaves no key behind it for
// longer than the TTL. A lost lease (a keepalive answered without a TTL: etcd forgot it, or it
// ran out while etcd was unreachable) is granted again and the keys put again. The process
// follows the mesh's keys with one range over the prefix, then one watch stream from the next
// revision (listed again when it ends, or when etcd compacted past it): a link reads where its
// target listens from that view, and is told at once when the target moves. docs/discovery.md.
//
// etcd's v3 API through its JSON gateway: HTTP POSTs with Beast, one connection a request.
// Keys and values are base64 (OpenSSL's), 64-bit numbers JSON strings. The endpoints are
// tried in turn, starting with the last that answered; every retry backs off on the fleet's
// clock, and a failure that repeats is logged once, then summarised (failures.hpp).
// Included by the runtime's translation unit only.
#pragma once

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "meshrun/engine/log.hpp"
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

// etcd's 64-bit numbers: JSON strings through the gateway; a number taken as well.
inline std::int64_t etcd_int(const nlohmann::json& j, const char* name, std::int64_t absent) {
    if (!j.is_object() || !j.contains(name)) return absent;
    const nlohmann::json& v = j[name];
    if (v.is_number_integer()) return v.get<std::int64_t>();
    if (!v.is_string()) return absent;
    try {
        return std::stoll(v.get<std::string>());
    } catch (const std::exception&) {
        return absent;
    }
}

// The keys under `prefix`, as etcd ranges them: [prefix, prefix with its last byte one more).
inline nlohmann::json prefix_range(const std::string& prefix) {
    std::string end = prefix;
    end.back() = static_cast<char>(end.back() + 1);  // [/meshrun/M/nodes/, /meshrun/M/nodes0)
    return {{"key", base64(prefix)}, {"range_end", base64(end)}};
}

// One etcd client URL, `http://HOST[:PORT][/]` (the checker's form; no port: etcd's 2379).
struct EtcdEndpoint {
    std::string url, host, port;
};

// Throws with the reason when `url` is not a URL this client can use (https: not yet).
inline EtcdEndpoint etcd_endpoint(const std::string& url) {
    constexpr std::string_view scheme = "http://";
    if (url.rfind("https://", 0) == 0)
        throw std::runtime_error(fmt::format("discovery `{}`: etcd over https is not supported yet; give its http:// URL", url));
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

    // A watch (/v3/watch) made of `create` (a WatchCreateRequest) at the endpoint that answered
    // last: each of its responses (one JSON object a line, as long as the stream lasts) goes to
    // `seen`, which returns why to end it (empty: go on). Returns why the stream ended.
    task<std::string> watch(nlohmann::json create, std::function<std::string(const nlohmann::json&)> seen) {
        const EtcdEndpoint& at = endpoints_[current_];
        auto stream = std::make_shared<TcpStream>(ex_);
        watching_ = stream;
        std::string failure = co_await open(at, *stream);
        if (!failure.empty()) co_return failure;
        nlohmann::json body = {{"create_request", std::move(create)}};
        const auto req = request(at, "/v3/watch", body.dump());
        beast::error_code ec;
        co_await http::async_write(*stream, req, asio::redirect_error(use, ec));
        if (ec) co_return ec.message();
        beast::flat_buffer buffer;
        http::response_parser<http::empty_body> parser;
        parser.body_limit(boost::none);  // a stream without end; each line is bounded below
        co_await http::async_read_header(*stream, buffer, parser, asio::redirect_error(use, ec));
        if (ec) co_return ec == beast::error::timeout ? fmt::format("no answer within {} s", request_limit.count()) : ec.message();
        if (parser.get().result() != http::status::ok) co_return fmt::format("HTTP {} to a watch", parser.get().result_int());
        if (!parser.chunked()) co_return std::string("not etcd's gateway: an answer to a watch that is not a stream");
        stream->expires_never();  // open as long as etcd keeps it: the lease's keepalives notice a dead etcd
        std::string pending, ended;
        auto chunk = [&](std::uint64_t, beast::string_view data, beast::error_code& error) -> std::size_t {
            const std::size_t scanned = pending.size();  // no newline before it: looked at already
            pending.append(data.data(), data.size());
            std::size_t start = 0;
            for (auto end = pending.find('\n', scanned); end != std::string::npos && ended.empty(); end = pending.find('\n', start)) {
                const auto line = nlohmann::json::parse(pending.begin() + static_cast<std::ptrdiff_t>(start),
                                                        pending.begin() + static_cast<std::ptrdiff_t>(end), nullptr, false);
                start = end + 1;
                ended = line.is_object() ? seen(line) : "a line of the watch that is not a JSON object";
            }
            pending.erase(0, start);
            if (ended.empty() && pending.size() > watch_line_limit)
                ended = fmt::format("a line of the watch over {} MiB", watch_line_limit >> 20);
            if (!ended.empty()) error = asio::error::operation_aborted;
            return data.size();
        };
        parser.on_chunk_body(chunk);
        while (!parser.is_done() && !ec) co_await http::async_read_some(*stream, buffer, parser, asio::redirect_error(use, ec));
        if (watching_ == stream) watching_.reset();
        if (!ended.empty()) co_return ended;
        if (!why_ended_.empty()) co_return std::exchange(why_ended_, std::string());
        if (!ec || ec == http::error::partial_message || ec == asio::error::eof || ec == asio::error::connection_reset)
            co_return std::string("etcd closed the watch's connection");
        co_return ec.message();
    }

    // Ends the watch open now, if any, saying why: its caller lists again.
    void end_watch(std::string why) {
        if (!watching_) return;
        why_ended_ = std::move(why);
        watching_->close();
    }

    const std::string& url() const { return endpoints_[current_].url; }
    // This machine's address on its last connection to etcd: where a node listening on every
    // interface is reached from etcd's side of the network.
    const std::string& local() const { return local_; }

private:
    static constexpr std::chrono::seconds request_limit{3};
    static constexpr std::size_t answer_limit = 32u << 20;      // an answer read whole: at most this
    static constexpr std::size_t watch_line_limit = 16u << 20;  // a line held until its end: at most this

    // Resolves and connects, within the request's time limit; why not, or empty.
    task<std::string> open(const EtcdEndpoint& at, TcpStream& stream) {
        beast::error_code ec;
        Resolver resolver(ex_);
        const auto found = co_await resolver.async_resolve(at.host, at.port, asio::redirect_error(use, ec));
        if (ec) co_return fmt::format("cannot resolve `{}`: {}", at.host, ec.message());
        stream.expires_after(request_limit);  // the whole request: connect, write, read
        co_await stream.async_connect(found, asio::redirect_error(use, ec));
        if (ec) co_return ec.message();
        const auto local = stream.socket().local_endpoint(ec);
        if (!ec) local_ = local.address().to_string();
        co_return std::string();
    }

    static http::request<http::string_body> request(const EtcdEndpoint& at, const std::string& path, std::string body) {
        http::request<http::string_body> req{http::verb::post, path, 11};
        req.set(http::field::host, host_port(at.host, static_cast<std::uint16_t>(std::stoi(at.port))));
        req.set(http::field::content_type, "application/json");
        req.body() = std::move(body);
        req.prepare_payload();
        return req;
    }

    task<Answer> post(const EtcdEndpoint& at, const std::string& path, const std::string& body) {
        TcpStream stream(ex_);
        std::string failure = co_await open(at, stream);
        if (!failure.empty()) co_return Answer{{}, failure, false};
        const auto req = request(at, path, body);
        beast::error_code ec;
        co_await http::async_write(stream, req, asio::redirect_error(use, ec));
        if (ec) co_return Answer{{}, ec.message(), false};
        beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(answer_limit);
        co_await http::async_read(stream, buffer, parser, asio::redirect_error(use, ec));
        if (ec == beast::error::timeout)
            co_return Answer{{}, fmt::format("no answer within {} s", request_limit.count()), false};
        if (ec == http::error::body_limit)
            co_return Answer{{}, fmt::format("an answer over {} MiB: are there huge keys under /meshrun/?", answer_limit >> 20), true};
        if (ec) co_return Answer{{}, ec.message(), false};
        stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        const auto& res = parser.get();
        Answer answer;
        answer.json = nlohmann::json::parse(res.body(), nullptr, false);
        // Every answer of etcd's has a header (cluster, revision), or is an error of its own.
        if (answer.json.is_discarded() || !answer.json.is_object() ||
            !(answer.json.contains("header") || answer.json.contains("result") || answer.json.contains("error"))) {
            answer.error = fmt::format("not etcd's gateway: HTTP {} with {}", res.result_int(), shown(escape_controls(res.body())));
            co_return answer;  // another endpoint may be etcd
        }
        answer.reached = true;
        // An error of etcd's: {"error": "...", "code": 5, "message": "..."}, or in a stream's result.
        const nlohmann::json* error = &answer.json;
        if (answer.json.contains("error") && answer.json["error"].is_object()) error = &answer.json["error"];
        if (res.result() != http::status::ok || error->contains("message")) {
            const std::string message = error->value("message", std::string());
            answer.error = fmt::format("HTTP {}: {}", res.result_int(), message.empty() ? shown(escape_controls(res.body())) : shown(message));
        }
        co_return answer;
    }

    Executor ex_;
    Logger& log_;
    Clock& clock_;
    std::vector<EtcdEndpoint> endpoints_;
    std::vector<Repeated> failures_;  // per endpoint: its failures while another was tried
    std::size_t current_ = 0;
    std::string local_;
    std::shared_ptr<TcpStream> watching_;  // the watch's connection while it is open
    std::string why_ended_;                // end_watch()'s reason
};

// Registers the nodes of the process and keeps their lease alive, and follows the mesh's keys
// in etcd, until stop().
class Registry {
public:
    static constexpr std::int64_t ttl = 10;  // seconds
    static constexpr std::size_t puts_per_txn = 64;  // etcd takes at most 128 operations a transaction

    explicit Registry(FleetCore& f)
        : fleet_(f), etcd_(f.io.get_executor(), f.log, *f.clock, f.graph.discovery),
          prefix_(fmt::format("/meshrun/{}/nodes/", f.graph.name)) {}

    // After every node here listens: its port is known.
    void start() {
        // Every node's series from the start, at 0 (metrics.hpp).
        fleet_.tell([](Observer& o) { o.registry_lease(0); });
        for (auto& node : fleet_.nodes) told(*node, false);
        told_view();
        asio::co_spawn(fleet_.io.get_executor(), run(), or_log(fleet_.log, "meshrun", "the registration in etcd"));
        asio::co_spawn(fleet_.io.get_executor(), follow(), or_log(fleet_.log, "meshrun", "the watch on etcd"));
    }

    // The fleet stops: the lease is revoked, so that the keys go now, not in 10 s.
    void stop() {
        stopping_ = true;
        if (pausing_) pausing_->notify();
        if (relisting_) relisting_->notify();
        etcd_.end_watch("the fleet stops");
        if (lease_.empty()) return;
        asio::co_spawn(fleet_.io.get_executor(), revoke(lease_), asio::detached);
    }

    nlohmann::json status() const {
        return {{"etcd", etcd_.url()},    {"registered", registered_}, {"lease", lease_},
                {"watching", watching_},  {"revision", revision_},     {"nodes_known", known_.size()},
                {"peers_known", peers_}};
    }

    bool current() const { return watching_; }

    // Where the nodes register: /meshrun/MESH/nodes/NODE.
    std::string key(const Node& n) const { return prefix_ + n.name; }

    // What a node registers: where it listens, its channels, TLS or not, and meshrun's version;
    // never the fleet's token. The address is the one it is bound to, or, bound to every
    // interface, this machine's address on its connection to etcd: what a peer can reach.
    nlohmann::json value(const NodeRt& node) const {
        const auto index = static_cast<std::size_t>(node.index());
        nlohmann::json v = {{"mesh", fleet_.graph.name}, {"node", node.spec().name}};
        if (node.acceptor) {
            const std::string& bound = fleet_.bound[index];
            const bool everywhere = bound == "0.0.0.0" || bound == "::";
            v["address"] = everywhere && !etcd_.local().empty() ? etcd_.local() : bound;
            v["port"] = fleet_.ports[index];
        }
        v["channels"] = nlohmann::json::array();
        for (const Source& s : node.spec().sources)
            if (s.kind == Source::Kind::channel) v["channels"].push_back(s.name);
        v["tls"] = fleet_.tls_server.has_value();
        v["version"] = MESHRUN_VERSION;
        return v;
    }

    // Where node `name` listens: from the process's view of etcd once it has one (what etcd
    // held last while it does not answer), else from a request of its own. None: etcd holds
    // nothing for it.
    task<std::optional<Registered>> lookup(std::string name) {
        // Once a lookup has failed, no more until the view comes: a link would wait out an
        // etcd that does not answer at every connect.
        if (listed_ || lookup_failed_) co_return known(name);
        const std::string path = "/v3/kv/range";
        nlohmann::json body = {{"key", base64(prefix_ + name)}};
        Etcd::Answer answer = co_await etcd_.call(path, std::move(body));
        if (listed_) co_return known(name);  // the view came while this request was out
        if (!answer.ok()) {
            lookup_failed_ = true;
            fleet_.tell([&answer](Observer& o) { o.registry_error(answer.error); });
            co_return known(name);
        }
        const nlohmann::json kvs = answer.json.value("kvs", nlohmann::json::array());
        std::optional<Registered> found;
        if (kvs.is_array() && !kvs.empty()) found = registered(kvs[0], name);
        set(name, found);
        told_view();
        co_return found;
    }

private:
    // ---- the view: a range over the prefix, then a watch from the revision after it ----

    task<void> follow() {
        while (!stopping_) {
            const std::string path = "/v3/kv/range";
            nlohmann::json body = prefix_range(prefix_);
            Etcd::Answer listed = co_await etcd_.call(path, std::move(body));
            if (stopping_) break;
            if (!listed.ok()) {
                std::string what = "cannot list the mesh's nodes in etcd";
                co_await failed(watch_failures_, watch_backoff_, std::move(what), listed);
                continue;
            }
            std::map<std::string, Registered> now;
            std::set<std::string> keys;  // every node with a key, with an address or not
            for (const nlohmann::json& kv : listed.json.value("kvs", nlohmann::json::array())) {
                const auto name = node_of(kv);
                if (!name) continue;
                keys.insert(*name);
                const std::optional<Registered> found = registered(kv, *name);
                if (found) now.emplace(*name, *found);
                if (auto mine = here(*name)) own(*mine, found, true);
            }
            std::vector<std::string> gone;  // set() erases from known_: not while it is walked
            for (const auto& [name, where] : known_)
                if (!now.count(name)) gone.push_back(name);
            for (const std::string& name : gone) set(name, std::nullopt);
            for (const auto& [name, where] : now) set(name, where);
            for (auto& node : fleet_.nodes)
                if (!keys.count(node->spec().name)) own(*node, std::nullopt, false);
            revision_ = etcd_int(listed.json.value("header", nlohmann::json::object()), "revision", revision_);
            listed_ = true;
            told_view();
            nlohmann::json create = prefix_range(prefix_);
            create["start_revision"] = std::to_string(revision_ + 1);
            compacted_ = false;
            confirmed_ = false;
            std::function<std::string(const nlohmann::json&)> seen = [this](const nlohmann::json& j) { return watched(j); };
            const std::string ended = co_await etcd_.watch(std::move(create), std::move(seen));
            watching_ = false;
            told_view();
            if (stopping_) break;
            // etcd compacted past the watch: listed again at once; again and again, backing off.
            if (compacted_ && !compacted_again_) {
                compacted_again_ = true;
                continue;
            }
            std::string what = "the watch on etcd ended";
            Etcd::Answer why{{}, ended, false};
            co_await failed(watch_failures_, watch_backoff_, std::move(what), why);
        }
    }

    // One response of the watch: created, cancelled, or events. Returns why to end it.
    std::string watched(const nlohmann::json& line) {
        if (!line.contains("result") || !line["result"].is_object()) {
            const nlohmann::json error = line.value("error", nlohmann::json::object());
            return fmt::format("etcd: {}", error.is_object() ? error.value("message", line.dump()) : line.dump());
        }
        const nlohmann::json& result = line["result"];
        if (result.value("canceled", false)) {
            if (etcd_int(result, "compact_revision", 0) > 0) {
                compacted_ = true;
                return fmt::format("etcd compacted its history past revision {}", revision_ + 1);
            }
            return fmt::format("etcd cancelled the watch ({})", result.value("cancel_reason", std::string("no reason given")));
        }
        if (result.value("created", false)) {
            // Open; taken for healthy once it has stayed open a while (confirm_watch()).
            watching_ = true;
            opened_ = fleet_.clock->now();
        }
        for (const nlohmann::json& event : result.value("events", nlohmann::json::array())) {
            const nlohmann::json kv = event.value("kv", nlohmann::json::object());
            const auto name = node_of(kv);
            if (!name) continue;
            const bool deleted = event.value("type", std::string("PUT")) == "DELETE";
            const std::optional<Registered> found = deleted ? std::nullopt : registered(kv, *name);
            set(*name, found);
            if (auto mine = here(*name)) own(*mine, found, !deleted);
        }
        revision_ = etcd_int(result.value("header", nlohmann::json::object()), "revision", revision_);
        told_view();
        return {};
    }

    // The node a key of the mesh names: /meshrun/MESH/nodes/NODE.
    std::optional<std::string> node_of(const nlohmann::json& kv) const {
        if (!kv.is_object() || !kv.contains("key") || !kv["key"].is_string()) return std::nullopt;
        const auto key = unbase64(kv["key"].get<std::string>());
        if (!key || key->rfind(prefix_, 0) != 0 || key->size() == prefix_.size()) return std::nullopt;
        return key->substr(prefix_.size());
    }

    // Where a key's value says its node listens; none for a client node (a value without an
    // address and port) or for a value that is not meshrun's, which is said once (then summarised).
    std::optional<Registered> registered(const nlohmann::json& kv, const std::string& name) {
        if (!kv.is_object() || !kv.contains("value") || !kv["value"].is_string()) return std::nullopt;
        const auto text = unbase64(kv["value"].get<std::string>()).value_or("");
        const auto value = nlohmann::json::parse(text, nullptr, false);
        if (value.is_object() && !value.contains("address") && !value.contains("port")) return std::nullopt;  // a client
        if (value.is_object() && value["address"].is_string() && !value["address"].get<std::string>().empty() &&
            value["address"].get<std::string>().size() <= 255 && value["port"].is_number_unsigned() &&
            value["port"].get<std::uint64_t>() >= 1 && value["port"].get<std::uint64_t>() <= 65535)
            return Registered{value["address"].get<std::string>(), value["port"].get<std::uint16_t>()};
        const std::string why = fmt::format("the key {}{} in etcd holds no address and port meshrun can use: {}; taken as "
                                            "no key", prefix_, name, shown(escape_controls(text)));
        if (auto line = bad_values_.failed(fleet_.clock->now(), why, "a value that is not meshrun's"))
            fleet_.log.line("meshrun", *line);
        return std::nullopt;
    }

    NodeRt* here(const std::string& name) {
        for (auto& node : fleet_.nodes)
            if (node->spec().name == name) return node.get();
        return nullptr;
    }

    // What etcd holds for a node of this process (`present`: a key, with `where` its address if
    // it has one), once registered: a key gone (deleted by hand, or by another process that ran
    // the same node and stopped) is put again; one that names another address (another process
    // runs the node) is said once, and the node counted unregistered. Never put back over
    // another's: two processes would overwrite each other for ever.
    void own(NodeRt& node, const std::optional<Registered>& where, bool present) {
        if (stopping_ || !registered_) return;
        const std::string& name = node.spec().name;
        if (!present) {
            if (auto line = own_lost_.failed(fleet_.clock->now(), fmt::format("the key of `{}` went from etcd; putting it again",
                                                                               name), "a key went"))
                fleet_.log.line("meshrun", *line);
            registered_ = false;
            if (pausing_) pausing_->notify();  // the registration loop puts every key again now
            return;
        }
        if (!where || !node.acceptor) return;
        const nlohmann::json mine = value(node);
        if (where->port == mine["port"].get<std::uint16_t>() && where->address == mine["address"].get<std::string>()) return;
        const std::string at = host_port(where->address, where->port);
        if (auto line = own_taken_.failed(fleet_.clock->now(),
                                          fmt::format("warning: etcd says `{}` listens at {}, not here: another process runs "
                                                      "it too; its peers go there", name, at), at))
            fleet_.log.line("meshrun", *line);
        told(node, false);
    }

    // The watch has stayed open a while: healthy. A watch that opens and fails at once goes on
    // backing off, its failures summarised, not said each time.
    void confirm_watch() {
        if (!watching_ || confirmed_ || fleet_.clock->now() - opened_ < std::chrono::seconds(3)) return;
        confirmed_ = true;
        compacted_again_ = false;
        watch_backoff_.reset();
        if (auto said = watch_failures_.recovered(fleet_.clock->now(), "watching etcd again")) fleet_.log.line("meshrun", *said);
    }

    std::optional<Registered> known(const std::string& name) const {
        const auto at = known_.find(name);
        if (at == known_.end()) return std::nullopt;
        return at->second;
    }

    // What etcd holds for `name` now (none: no key). A new address is told to the links to it:
    // one waiting to connect again connects now, one open to where the node was ends.
    void set(const std::string& name, const std::optional<Registered>& where) {
        const auto at = known_.find(name);
        const bool same = where ? at != known_.end() && at->second.address == where->address && at->second.port == where->port
                                : at == known_.end();
        if (same) return;
        const int target = fleet_.graph.find(name);
        if (target < 0) return;  // a node the file does not declare: nothing to reach
        const bool peer = !fleet_.here[static_cast<std::size_t>(target)];
        if (where) {
            if (at == known_.end() && peer) ++peers_;
            known_[name] = *where;
        } else {
            known_.erase(at);
            if (peer) --peers_;
        }
        // A key gone ends nothing: the node may be there still (its lease lost while etcd was
        // away, registered again in a moment); links keep the connections they have.
        if (!peer || !where) return;
        for (auto& node : fleet_.nodes)
            for (auto& link : node->links)
                if (link->target() == target) link->moved(where->address, where->port);
    }

    void told_view() {
        const std::size_t nodes = known_.size();
        fleet_.tell([&](Observer& o) { o.registry_view(nodes, peers_, revision_, watching_); });
    }

    // ---- the registration: a lease, the keys on it, kept alive ----

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
                    co_await failed(failures_, backoff_, std::move(what), granted);
                    continue;
                }
                lease_ = granted.json["ID"].get<std::string>();
                const std::int64_t given = etcd_int(granted.json, "TTL", ttl);
                lease_ends_ = fleet_.clock->now() + std::chrono::seconds(given);
                fleet_.tell([given](Observer& o) { o.registry_lease(given); });
            }
            if (!registered_) {
                // The keys in transactions of puts_per_txn: 1,000 nodes in 16 requests, not 1,000.
                bool put = true;
                for (std::size_t first = 0; put && first < fleet_.nodes.size(); first += puts_per_txn) {
                    const std::size_t end = std::min(fleet_.nodes.size(), first + puts_per_txn);
                    nlohmann::json ops = nlohmann::json::array();
                    for (std::size_t i = first; i < end; ++i) {
                        const NodeRt& node = *fleet_.nodes[i];
                        ops.push_back({{"request_put", {{"key", base64(key(node.spec()))},
                                                        {"value", base64(value(node).dump())},
                                                        {"lease", lease_}}}});
                    }
                    const std::string path = "/v3/kv/txn";
                    nlohmann::json txn = {{"success", std::move(ops)}};
                    Etcd::Answer answer = co_await etcd_.call(path, std::move(txn));
                    if (answer.ok()) {
                        for (std::size_t i = first; i < end; ++i) told(*fleet_.nodes[i], true);
                        continue;
                    }
                    put = false;
                    if (answer.reached) forget_lease();  // etcd refused the puts: the lease is gone (expired, or forgotten)
                    const std::string& name = fleet_.nodes[first]->spec().name;
                    std::string what = end - first == 1 ? fmt::format("cannot register `{}` in etcd", name)
                                                        : fmt::format("cannot register `{}` and {} more in etcd", name, end - first - 1);
                    co_await failed(failures_, backoff_, std::move(what), answer);
                }
                if (!put) continue;
                registered_ = true;
                const Micros now = fleet_.clock->now();
                if (auto line = failures_.recovered(now, "registered in etcd again")) fleet_.log.line("meshrun", *line);
                if (!said_) {
                    said_ = true;
                    std::vector<std::string> names;
                    for (std::size_t i = 0; i < fleet_.nodes.size() && i < 8; ++i) names.push_back(fleet_.nodes[i]->spec().name);
                    if (fleet_.nodes.size() > names.size()) names.push_back(fmt::format("and {} more", fleet_.nodes.size() - names.size()));
                    fleet_.log.line("meshrun", fmt::format("registered {} in etcd at {} under {} (lease {}, TTL {} s)",
                                                           fmt::join(names, ", "), etcd_.url(), prefix_, lease_, ttl));
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
                        fleet_.log.line("meshrun", fmt::format("the lease {} in etcd at {} is lost (a keepalive answered "
                                                               "without a TTL); registering again", lease_, etcd_.url()));
                        forget_lease();
                    } else {
                        const std::int64_t left = etcd_int(result, "TTL", ttl);
                        lease_ends_ = fleet_.clock->now() + std::chrono::seconds(left);
                        fleet_.tell([left](Observer& o) { o.registry_lease(left); });
                        if (registered_) {
                            for (auto& node : fleet_.nodes) told(*node, true);
                        }
                        confirm_watch();
                        if (auto line = failures_.recovered(fleet_.clock->now(), "etcd answered again"))
                            fleet_.log.line("meshrun", *line);
                    }
                    backoff_.reset();
                    break;
                }
                // etcd unreachable: the keys stay while the lease runs; tried again, backing off.
                // The watch cannot be trusted either (a dead host ends no connection): listed
                // again once etcd answers.
                etcd_.end_watch("a keepalive of the lease failed");
                // Past the lease's end as last counted, etcd has dropped the keys: not registered,
                // until a keepalive says so or the keys are put again.
                if (fleet_.clock->now() >= lease_ends_) {
                    for (auto& node : fleet_.nodes) told(*node, false);
                }
                std::string what = "cannot keep the lease in etcd alive";
                co_await failed(failures_, backoff_, std::move(what), alive);
            }
        }
    }

    // Logged once, then summarised; then a pause, backing off.
    task<void> failed(Repeated& failures, Backoff& backoff, std::string what, const Etcd::Answer& answer) {
        if (stopping_) co_return;
        fleet_.tell([&answer](Observer& o) { o.registry_error(answer.error); });
        if (auto line = failures.failed(fleet_.clock->now(), fmt::format("{} ({}); retrying", what, answer.error), answer.error))
            fleet_.log.line("meshrun", *line);
        const Micros pause = backoff.next();  // a named local, as above
        co_await sleep_on(*fleet_.clock, fleet_.io.get_executor(), pause, &failures == &failures_ ? pausing_ : relisting_);
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

    task<void> revoke(std::string lease) {
        const std::string path = "/v3/lease/revoke";
        nlohmann::json body = {{"ID", lease}};
        co_await etcd_.call(path, std::move(body));
    }

    FleetCore& fleet_;
    Etcd etcd_;
    std::string prefix_;  // /meshrun/MESH/nodes/
    std::string lease_;   // etcd's lease ID, a decimal string as the gateway writes it; empty: none
    bool registered_ = false, said_ = false, stopping_ = false;
    Backoff backoff_, watch_backoff_;
    Repeated failures_{"etcd"}, watch_failures_{"the watch on etcd"};
    Repeated bad_values_{"values in etcd that are not meshrun's"};
    Repeated own_lost_{"keys of this process gone from etcd"}, own_taken_{"nodes of this process registered by another"};
    Micros lease_ends_{0};  // when the lease runs out, counted from etcd's last grant or keepalive
    std::shared_ptr<Event> pausing_, relisting_;  // the pauses waited out now, cut short by stop()
    // The view: where each node of the mesh listens, as etcd said last, at `revision_`.
    std::map<std::string, Registered> known_;
    std::size_t peers_ = 0;  // of them, nodes of other processes
    std::int64_t revision_ = 0;
    bool listed_ = false;     // known_ came from a range over the prefix: lookups read it
    bool watching_ = false;   // the watch is open: known_ is etcd's now
    bool compacted_ = false;  // the watch ended for a compaction
    bool compacted_again_ = false;  // and the one before it, with no healthy watch between
    bool confirmed_ = false;  // the watch has stayed open a while (confirm_watch())
    Micros opened_{0};        // when the watch opened
    bool lookup_failed_ = false;  // a lookup before the view failed: none more until the view comes
};

inline bool registry_current(const FleetCore& fleet) { return fleet.registry && fleet.registry->current(); }

inline task<std::optional<Registered>> registry_lookup(FleetCore& fleet, int node) {
    std::string name = fleet.graph.nodes[static_cast<std::size_t>(node)].name;
    co_return co_await fleet.registry->lookup(std::move(name));
}

}  // namespace meshrun::engine
