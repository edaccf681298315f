// TLS's pieces (engine/src/tls.hpp) on loopback, with certificates made at start by
// tests/lib/make_certs.sh: the contexts a `tls` item gives, mutual TLS, the host a client
// expects, the errors that name a file. And a TLS websocket accepted and connected the
// way the runtime does it (accept_websocket, connect_websocket: the recipe).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "tls.hpp"
#include "build_paths.hpp"

using namespace meshrun::engine;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// The certificates, made once per process into a fresh directory, removed at exit.
struct Certs {
    fs::path dir;
    Certs() {
        std::string name = (fs::temp_directory_path() / "meshrun-tls-XXXXXX").string();
        if (::mkdtemp(name.data()) == nullptr) throw std::runtime_error("cannot make a temporary directory");
        dir = name;
        const std::string command = fmt::format("timeout 60 bash '{}' '{}' >&2", meshrun::build_paths::source("tests/lib/make_certs.sh").string(), dir.string());
        if (std::system(command.c_str()) != 0) throw std::runtime_error("tests/lib/make_certs.sh failed: " + command);
    }
    ~Certs() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    Certs(const Certs&) = delete;
    Certs& operator=(const Certs&) = delete;
};

std::string cert(const char* name) {
    static const Certs certs;
    return (certs.dir / name).string();
}

Tls item(const char* cert_file, const char* key_file, const char* ca_file = nullptr) {
    Tls tls;
    tls.cert = cert(cert_file);
    tls.key = cert(key_file);
    if (ca_file) tls.ca = cert(ca_file);
    return tls;
}

// A client that trusts `ca` and has no certificate of its own: a browser, curl.
ssl::context anonymous_client(const char* ca) {
    ssl::context ctx(ssl::context::tls_client);
    ctx.set_verify_mode(ssl::verify_peer);
    ctx.load_verify_file(cert(ca));
    return ctx;
}

// What each end of one connection saw.
struct Outcome {
    beast::error_code server, client;  // the TLS handshakes
    std::string server_words, client_words;
    std::string sni;                  // the name the client sent, as the server saw it
    int version = 0;                  // the protocol agreed (TLS1_3_VERSION)
    beast::error_code client_read;    // the client's read of the server's first byte, after its handshake
    std::string client_read_words;
    std::optional<char> byte;
};

task<void> serve_one(Acceptor& acceptor, ssl::context& ctx, Outcome& out) {
    beast::error_code ec;
    Socket socket = co_await acceptor.async_accept(asio::redirect_error(use, ec));
    if (ec) {
        out.server = ec;
        co_return;
    }
    TlsStream stream(TcpStream(std::move(socket)), ctx);
    beast::get_lowest_layer(stream).expires_after(5s);
    co_await stream.async_handshake(ssl::stream_base::server, asio::redirect_error(use, out.server));
    if (out.server) {
        out.server_words = handshake_error(stream, out.server);
        co_return;
    }
    if (const char* sni = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name)) out.sni = sni;
    static constexpr char hello = 'h';
    co_await asio::async_write(stream, asio::buffer(&hello, 1), asio::redirect_error(use, ec));
    co_await stream.async_shutdown(asio::redirect_error(use, ec));
}

task<void> connect_one(Executor ex, tcp::endpoint at, ssl::context& ctx, std::string host, Outcome& out) {
    TlsStream stream(ex, ctx);
    expect_host(stream, host);
    auto& tcp_layer = beast::get_lowest_layer(stream);
    tcp_layer.expires_after(5s);
    co_await tcp_layer.async_connect(at, asio::redirect_error(use, out.client));
    if (out.client) co_return;
    co_await stream.async_handshake(ssl::stream_base::client, asio::redirect_error(use, out.client));
    if (out.client) {
        out.client_words = handshake_error(stream, out.client);
        co_return;
    }
    out.version = SSL_version(stream.native_handle());
    // In TLS 1.3 the client's handshake is over before the server has judged the client's
    // certificate: a refusal comes as an alert on the client's first read.
    char byte = 0;
    co_await asio::async_read(stream, asio::buffer(&byte, 1), asio::redirect_error(use, out.client_read));
    if (out.client_read) {
        out.client_read_words = handshake_error(stream, out.client_read);
    } else {
        out.byte = byte;
    }
}

bool ipv6_loopback() {
    asio::io_context io;
    beast::error_code ec;
    Acceptor acceptor(io.get_executor());
    acceptor.open(tcp::v6(), ec);
    if (!ec) acceptor.bind(tcp::endpoint(asio::ip::make_address("::1"), 0), ec);
    return !ec;
}

// One connection on loopback (`address`) from a client expecting `host`.
Outcome connect(ssl::context& server_ctx, ssl::context& client_ctx, const std::string& host,
                const std::string& address = "127.0.0.1") {
    asio::io_context io;
    Acceptor acceptor(io.get_executor(), tcp::endpoint(asio::ip::make_address(address), 0));
    Outcome out;
    asio::co_spawn(io.get_executor(), serve_one(acceptor, server_ctx, out), asio::detached);
    asio::co_spawn(io.get_executor(), connect_one(io.get_executor(), acceptor.local_endpoint(), client_ctx, host, out),
                   asio::detached);
    io.run_for(10s);
    REQUIRE(io.stopped());
    return out;
}

// The message of what `make` throws.
template<typename F> std::string error_of(F make) {
    try {
        make();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "(nothing thrown)";
}

}  // namespace

TEST_CASE("mutual TLS: a node's link with a certificate the authority signed is taken", "[tls]") {
    auto server = server_context(item("node.pem", "node.key", "ca.pem"));
    auto client = client_context(item("node.pem", "node.key", "ca.pem"));
    CHECK(SSL_CTX_get_verify_mode(server.native_handle()) == (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT));
    const Outcome out = connect(server, client, "localhost");
    INFO(out.server_words << " / " << out.client_words << " / " << out.client_read_words);
    CHECK_FALSE(out.server);
    CHECK_FALSE(out.client);
    CHECK_FALSE(out.client_read);
    CHECK(out.byte == 'h');
    CHECK(out.version == TLS1_3_VERSION);
    CHECK(out.sni == "localhost");
}

TEST_CASE("mutual TLS: a client without a certificate is refused in the handshake", "[tls]") {
    auto server = server_context(item("node.pem", "node.key", "ca.pem"));
    auto client = anonymous_client("ca.pem");
    const Outcome out = connect(server, client, "localhost");
    CHECK(out.server);
    CHECK_THAT(out.server_words, Contains("peer did not return a certificate"));
    // The client learns it from the server's alert: nothing of the server's reaches it.
    CHECK((out.client || out.client_read));
    CHECK_THAT(out.client_words + out.client_read_words, Contains("certificate required"));
    CHECK_FALSE(out.byte);
}

TEST_CASE("mutual TLS: a stranger's certificate is refused, either end", "[tls]") {
    SECTION("a client whose certificate another authority signed") {
        auto server = server_context(item("node.pem", "node.key", "ca.pem"));
        auto client = client_context(item("other.pem", "other.key", "ca.pem"));
        const Outcome out = connect(server, client, "localhost");
        CHECK(out.server);
        CHECK_THAT(out.server_words, Contains("certificate verify failed: unable to get local issuer certificate"));
        CHECK((out.client || out.client_read));
        CHECK_FALSE(out.byte);
    }
    SECTION("a server whose certificate another authority signed") {
        auto server = server_context(item("other.pem", "other.key", "other-ca.pem"));
        auto client = client_context(item("node.pem", "node.key", "ca.pem"));
        const Outcome out = connect(server, client, "localhost");
        CHECK(out.client);
        // The server sends its authority with its certificate (OpenSSL builds the chain from
        // the trust store): the chain ends in an authority the client does not trust.
        CHECK_THAT(out.client_words, Contains("certificate verify failed: self-signed certificate in certificate chain"));
        CHECK(out.server);
    }
}

TEST_CASE("without ca: clients are not asked for a certificate, servers are checked against the system's authorities",
          "[tls]") {
    auto server = server_context(item("node.pem", "node.key"));
    CHECK(SSL_CTX_get_verify_mode(server.native_handle()) == SSL_VERIFY_NONE);
    SECTION("a client without a certificate is served") {
        auto client = anonymous_client("ca.pem");
        const Outcome out = connect(server, client, "localhost");
        CHECK_FALSE(out.server);
        CHECK_FALSE(out.client);
        CHECK(out.byte == 'h');
    }
    SECTION("the test authority is not among the system's: a node's link refuses the server") {
        auto client = client_context(item("node.pem", "node.key"));
        const Outcome out = connect(server, client, "localhost");
        CHECK(out.client);
        CHECK_THAT(out.client_words, Contains("certificate verify failed: unable to get local issuer certificate"));
    }
}

TEST_CASE("the client checks that the server's certificate names the host it connects to", "[tls]") {
    auto node = server_context(item("node.pem", "node.key", "ca.pem"));
    auto client = client_context(item("node.pem", "node.key", "ca.pem"));
    SECTION("a name: localhost, sent as SNI") {
        const Outcome out = connect(node, client, "localhost");
        CHECK_FALSE(out.client);
        CHECK(out.byte == 'h');
        CHECK(out.sni == "localhost");
    }
    SECTION("an IPv4 address: in the certificate's IP addresses, and no SNI") {
        const Outcome out = connect(node, client, "127.0.0.1");
        CHECK_FALSE(out.client);
        CHECK(out.byte == 'h');
        CHECK(out.sni.empty());
    }
    SECTION("an IPv6 address, bare or in brackets") {
        if (!ipv6_loopback()) {
            WARN("no IPv6 loopback here: the IPv6 address is not checked");
            return;
        }
        for (const char* host : {"::1", "[::1]"}) {
            const Outcome out = connect(node, client, host, "::1");
            INFO(host << ": " << out.client_words);
            CHECK_FALSE(out.client);
            CHECK(out.byte == 'h');
            CHECK(out.sni.empty());
        }
    }
    SECTION("a certificate for another name is refused with a verify error") {
        auto wrong = server_context(item("wrong-name.pem", "wrong-name.key", "ca.pem"));
        const Outcome out = connect(wrong, client, "localhost");
        CHECK(out.client.category() == asio::error::get_ssl_category());
        CHECK(out.client_words == "certificate verify failed: hostname mismatch");
        CHECK_FALSE(out.byte);
    }
    SECTION("a certificate without the address is refused") {
        auto wrong = server_context(item("wrong-name.pem", "wrong-name.key", "ca.pem"));
        const Outcome out = connect(wrong, client, "127.0.0.1");
        CHECK(out.client_words == "certificate verify failed: IP address mismatch");
    }
    SECTION("a name the certificate does not list") {
        const Outcome out = connect(node, client, "example.org");
        CHECK(out.client_words == "certificate verify failed: hostname mismatch");
    }
    SECTION("an expired certificate is refused") {
        auto expired = server_context(item("expired.pem", "expired.key", "ca.pem"));
        const Outcome out = connect(expired, client, "localhost");
        CHECK(out.client_words == "certificate verify failed: certificate has expired");
    }
}

TEST_CASE("a file of the tls item that cannot be used is an error that names it", "[tls]") {
    const std::string missing = cert("missing.pem");
    SECTION("a missing file") {
        Tls tls = item("node.pem", "node.key", "ca.pem");
        tls.cert = missing;
        CHECK(error_of([&] { server_context(tls); }) ==
              fmt::format("tls: cannot read the certificate `{}`: No such file or directory", missing));
        CHECK(error_of([&] { client_context(tls); }) ==
              fmt::format("tls: cannot read the certificate `{}`: No such file or directory", missing));
        tls = item("node.pem", "node.key", "ca.pem");
        tls.key = missing;
        CHECK(error_of([&] { server_context(tls); }) ==
              fmt::format("tls: cannot read the key `{}`: No such file or directory", missing));
        tls = item("node.pem", "node.key", "ca.pem");
        tls.ca = missing;
        CHECK(error_of([&] { server_context(tls); }) ==
              fmt::format("tls: cannot read the CA certificate `{}`: No such file or directory", missing));
        CHECK(error_of([&] { client_context(tls); }) ==
              fmt::format("tls: cannot read the CA certificate `{}`: No such file or directory", missing));
    }
    SECTION("a directory") {
        Tls tls = item("node.pem", "node.key");
        tls.cert = fs::path(tls.cert).parent_path().string();
        CHECK(error_of([&] { server_context(tls); }) ==
              fmt::format("tls: cannot read the certificate `{}`: Is a directory", tls.cert));
    }
    SECTION("a file that cannot be read") {
        if (::geteuid() == 0) {
            WARN("running as root, who reads any file: an unreadable file is not checked");
            return;
        }
        const std::string locked = cert("locked.key");
        fs::copy_file(cert("node.key"), locked, fs::copy_options::overwrite_existing);
        ::chmod(locked.c_str(), 0);
        Tls tls = item("node.pem", "node.key");
        tls.key = locked;
        CHECK(error_of([&] { server_context(tls); }) ==
              fmt::format("tls: cannot read the key `{}`: Permission denied", locked));
    }
    SECTION("files that are not what they are said to be") {
        Tls tls = item("node.key", "node.key");  // a key where the certificate should be
        CHECK(error_of([&] { server_context(tls); }) ==
              fmt::format("tls: cannot read the certificate `{}`: no certificate in it", tls.cert));
        tls = item("node.pem", "node.pem");  // a certificate where the key should be
        CHECK(error_of([&] { server_context(tls); }) ==
              fmt::format("tls: cannot read the key `{}`: no private key in it", tls.key));
        tls = item("node.pem", "node.key", "node.key");
        CHECK(error_of([&] { server_context(tls); }) ==
              fmt::format("tls: cannot read the CA certificate `{}`: no certificate in it", tls.ca));
        const std::string garbage = cert("garbage.pem");
        std::ofstream(garbage) << "not a certificate\n";
        tls = item("node.pem", "node.key", "ca.pem");
        tls.cert = garbage;
        CHECK(error_of([&] { server_context(tls); }) ==
              fmt::format("tls: cannot read the certificate `{}`: not a PEM file", garbage));
        // The right kind of PEM block, its inside broken: OpenSSL's reason.
        const std::string broken = cert("broken.pem");
        std::ofstream(broken) << "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        tls.cert = broken;
        const std::string message = error_of([&] { server_context(tls); });
        CHECK_THAT(message, Catch::Matchers::StartsWith(fmt::format("tls: cannot read the certificate `{}`: ", broken)));
        INFO(message);
        CHECK(message.size() > fmt::format("tls: cannot read the certificate `{}`: ", broken).size());
        CHECK(ERR_peek_error() == 0);  // nothing left in OpenSSL's queue for the next one to trip on
    }
    SECTION("a key that does not match the certificate") {
        Tls tls = item("node.pem", "other.key");
        CHECK(error_of([&] { server_context(tls); }) ==
              fmt::format("tls: the key `{}` does not match the certificate `{}`", tls.key, tls.cert));
        tls = item("node.pem", "ed25519.key", "ca.pem");  // another type of key: another slot of OpenSSL's
        CHECK(error_of([&] { client_context(tls); }) ==
              fmt::format("tls: the key `{}` does not match the certificate `{}`", tls.key, tls.cert));
    }
    SECTION("a key under a passphrase is refused, never asked for") {
        Tls tls = item("node.pem", "encrypted.key");
        CHECK(error_of([&] { server_context(tls); }) ==
              fmt::format("tls: the key `{}` is encrypted: meshrun needs it without a passphrase", tls.key));
    }
}

// ---- The recipe: a TLS websocket, both ends, with the timeouts set (Beast 1.74). ----

// Server side, from an accepted socket. The TLS handshake comes first, then the HTTP
// request is read over TLS, then the websocket is accepted with that request. basic_stream's
// timer (the lowest layer) bounds the TLS handshake and the request together; the websocket's
// own timeout option takes over from there.
task<std::shared_ptr<TlsWebsocket>> accept_websocket(Socket socket, ssl::context& ctx, std::chrono::seconds handshake,
                                                      std::string& error) {
    auto ws = std::make_shared<TlsWebsocket>(TcpStream(std::move(socket)), ctx);
    auto& tcp_layer = beast::get_lowest_layer(*ws);
    tcp_layer.socket().set_option(tcp::no_delay(true));
    beast::error_code ec;
    tcp_layer.expires_after(handshake);
    co_await ws->next_layer().async_handshake(ssl::stream_base::server, asio::redirect_error(use, ec));
    if (ec) {
        error = "TLS handshake: " + handshake_error(ws->next_layer(), ec);
        co_return nullptr;
    }
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    co_await http::async_read(ws->next_layer(), buffer, req, asio::redirect_error(use, ec));
    if (ec) {
        error = "request: " + ec.message();
        co_return nullptr;
    }
    // Here the runtime answers a plain GET (status page, /healthz) instead: http::async_write
    // on ws->next_layer(), then ws->next_layer().async_shutdown() to end the TLS session.
    if (!websocket::is_upgrade(req)) {
        error = "not a websocket upgrade";
        co_return nullptr;
    }
    tcp_layer.expires_never();
    websocket::stream_base::timeout limits{};
    limits.handshake_timeout = handshake;
    limits.idle_timeout = websocket::stream_base::none();
    limits.keep_alive_pings = false;
    ws->set_option(limits);
    co_await ws->async_accept(req, asio::redirect_error(use, ec));
    if (ec) {
        error = "websocket accept: " + ec.message();
        co_return nullptr;
    }
    co_return ws;
}

// Client side: `host` as the file writes it (what the certificate must name, and the Host
// header), connecting to `endpoints` (loopback for a node of this process).
task<std::shared_ptr<TlsWebsocket>> connect_websocket(Executor ex, ssl::context& ctx, const std::string& host,
                                                       std::uint16_t port, const tcp::endpoint& endpoint,
                                                       std::string target, std::chrono::seconds handshake,
                                                       std::string& error) {
    auto ws = std::make_shared<TlsWebsocket>(ex, ctx);
    expect_host(ws->next_layer(), host);  // before the handshake: SNI and the name to check
    auto& tcp_layer = beast::get_lowest_layer(*ws);
    beast::error_code ec;
    tcp_layer.expires_after(std::chrono::seconds(5));
    co_await tcp_layer.async_connect(endpoint, asio::redirect_error(use, ec));
    if (ec) {
        error = "connect: " + ec.message();
        co_return nullptr;
    }
    tcp_layer.socket().set_option(tcp::no_delay(true), ec);
    tcp_layer.expires_after(handshake);
    co_await ws->next_layer().async_handshake(ssl::stream_base::client, asio::redirect_error(use, ec));
    if (ec) {
        error = "TLS handshake: " + handshake_error(ws->next_layer(), ec);
        co_return nullptr;
    }
    tcp_layer.expires_never();
    websocket::stream_base::timeout limits{};
    limits.handshake_timeout = handshake;
    limits.idle_timeout = websocket::stream_base::none();
    limits.keep_alive_pings = false;
    ws->set_option(limits);
    const std::string host_header = host_port(host, port);
    websocket::response_type res;
    co_await ws->async_handshake(res, host_header, target, asio::redirect_error(use, ec));
    if (ec) {
        // With mutual TLS, a refused client certificate shows here (TLS 1.3): handshake_error
        // says so ("tlsv13 alert certificate required").
        error = "websocket handshake: " + handshake_error(ws->next_layer(), ec);
        co_return nullptr;
    }
    ws->text(true);
    co_return ws;
}

namespace {

struct Exchange {
    std::string server_error, client_error, echoed, reply;
    beast::error_code server_end;
};

task<void> echo_server(Acceptor& acceptor, ssl::context& ctx, Exchange& out) {
    Socket socket = co_await acceptor.async_accept(use);
    auto ws = co_await accept_websocket(std::move(socket), ctx, std::chrono::seconds(5), out.server_error);
    if (!ws) co_return;
    beast::flat_buffer buffer;
    beast::error_code ec;
    co_await ws->async_read(buffer, asio::redirect_error(use, ec));
    if (ec) co_return;
    out.echoed = beast::buffers_to_string(buffer.data());
    ws->text(true);
    const std::string reply = "ack " + out.echoed;
    co_await ws->async_write(asio::buffer(reply), asio::redirect_error(use, ec));
    buffer.clear();
    co_await ws->async_read(buffer, asio::redirect_error(use, out.server_end));  // the client's close
}

task<void> echo_client(Executor ex, tcp::endpoint at, ssl::context& ctx, Exchange& out) {
    auto ws = co_await connect_websocket(ex, ctx, "localhost", at.port(), at, "/signal", std::chrono::seconds(5),
                                         out.client_error);
    if (!ws) co_return;
    beast::error_code ec;
    const std::string message = "1";
    co_await ws->async_write(asio::buffer(message), asio::redirect_error(use, ec));
    beast::flat_buffer buffer;
    co_await ws->async_read(buffer, asio::redirect_error(use, ec));
    if (!ec) out.reply = beast::buffers_to_string(buffer.data());
    const websocket::close_reason normal(websocket::close_code::normal);
    co_await ws->async_close(normal, asio::redirect_error(use, ec));
}

Exchange exchange(ssl::context& server_ctx, ssl::context& client_ctx) {
    asio::io_context io;
    Acceptor acceptor(io.get_executor(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    Exchange out;
    asio::co_spawn(io.get_executor(), echo_server(acceptor, server_ctx, out), asio::detached);
    asio::co_spawn(io.get_executor(), echo_client(io.get_executor(), acceptor.local_endpoint(), client_ctx, out),
                   asio::detached);
    io.run_for(10s);
    REQUIRE(io.stopped());
    return out;
}

}  // namespace

TEST_CASE("a TLS websocket: accepted after the TLS handshake and the request read over TLS, and connected", "[tls]") {
    auto server = server_context(item("node.pem", "node.key", "ca.pem"));
    SECTION("mutual TLS: a message and its reply, then a clean close") {
        auto client = client_context(item("node.pem", "node.key", "ca.pem"));
        const Exchange out = exchange(server, client);
        CHECK(out.server_error.empty());
        CHECK(out.client_error.empty());
        CHECK(out.echoed == "1");
        CHECK(out.reply == "ack 1");
        CHECK(out.server_end == websocket::error::closed);
    }
    SECTION("a client without a certificate: the server refuses it, the client hears why") {
        auto client = anonymous_client("ca.pem");
        const Exchange out = exchange(server, client);
        CHECK_THAT(out.server_error, Contains("TLS handshake: peer did not return a certificate"));
        CHECK_THAT(out.client_error, Contains("certificate required"));
        CHECK(out.echoed.empty());
    }
}

TEST_CASE("a client that never finishes its TLS handshake is dropped when the lowest layer's timer ends", "[tls]") {
    auto server = server_context(item("node.pem", "node.key", "ca.pem"));
    asio::io_context io;
    Acceptor acceptor(io.get_executor(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    Socket silent(io.get_executor());
    silent.connect(acceptor.local_endpoint());
    Socket socket = acceptor.accept();
    TlsStream stream(TcpStream(std::move(socket)), server);
    beast::get_lowest_layer(stream).expires_after(200ms);
    beast::error_code ec;
    bool done = false;
    const auto start = std::chrono::steady_clock::now();
    stream.async_handshake(ssl::stream_base::server, [&](beast::error_code e) {
        ec = e;
        done = true;
    });
    io.run_for(5s);
    REQUIRE(done);
    CHECK(ec == beast::error::timeout);
    CHECK(std::chrono::steady_clock::now() - start < 3s);
}
