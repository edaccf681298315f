// TLS for a node's port and its links (`tls cert "FILE" key "FILE" [ca "FILE"]`,
// docs/delivery.md): the contexts made from the file's item when a node starts, the
// name checks of a client connection, and the stream types. Included by the runtime's
// translation unit only, after asio_support.hpp.
#pragma once

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>

#include "asio_support.hpp"
#include "meshrun/engine/graph.hpp"

namespace meshrun::engine {

namespace ssl = asio::ssl;

// TLS over the engine's TCP stream: the TCP layer keeps basic_stream's timer, so that
// `beast::get_lowest_layer(s).expires_after(...)` bounds the TLS handshake and the
// HTTP reads over it too.
using TlsStream = beast::ssl_stream<TcpStream>;
using TlsWebsocket = websocket::stream<TlsStream>;

namespace tls_detail {

// OpenSSL's reason for an error, in its own words ("no start line"), without the
// library's name that asio's message adds.
inline std::string reason(const beast::error_code& ec) {
    if (ec.category() == asio::error::get_ssl_category()) {
        if (const char* why = ERR_reason_error_string(static_cast<unsigned long>(ec.value()))) return why;
    }
    return ec.message();
}

// Why a PEM file did not give the certificate or key (`label`: "CERTIFICATE", "PRIVATE
// KEY") asked of it. OpenSSL's words for the common mistakes are obscure ("PEM lib",
// "unsupported"), so those are told from the text itself; what is left is OpenSSL's reason:
// the first error it queued, else asio's.
inline std::string pem_trouble(const std::string& text, std::string_view label, const beast::error_code& ec) {
    const unsigned long queued = ERR_peek_error();
    ERR_clear_error();
    if (text.find("-----BEGIN ") == std::string::npos) return "not a PEM file";
    if (text.find(fmt::format("{}-----", label)) == std::string::npos)
        return label == "CERTIFICATE" ? "no certificate in it" : "no private key in it";
    if (queued != 0) return reason(beast::error_code(static_cast<int>(queued), asio::error::get_ssl_category()));
    return reason(ec);
}

// The first error OpenSSL queued, in words; the queue is emptied.
inline std::string openssl_reason() {
    const unsigned long e = ERR_peek_error();
    ERR_clear_error();
    if (e == 0) return "unknown error";
    return reason(beast::error_code(static_cast<int>(e), asio::error::get_ssl_category()));
}

// A whole file, or an error that names it: `what` says which file of the item it is.
// Read here rather than by OpenSSL, for the system's words ("No such file or directory",
// "Is a directory") and a bound: a certificate or key is a few KiB, never /dev/zero.
inline std::string read_file(std::string_view what, const std::string& path) {
    constexpr std::size_t bound = 1 << 20;
    const auto fail = [&](const std::string& why) {
        // A relative path is read from the current directory: say which, a service's is often /.
        std::error_code ec;
        const auto cwd = std::filesystem::current_path(ec);
        const std::string from = ec || std::filesystem::path(path).is_absolute() ? std::string()
                                                                                 : fmt::format(" (from {})", cwd.string());
        return std::runtime_error(fmt::format("tls: cannot read the {} `{}`{}: {}", what, path, from, why));
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw fail(std::strerror(errno));
    std::string text;
    char chunk[16384];
    for (;;) {
        const ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int e = errno;
            ::close(fd);
            throw fail(std::strerror(e));
        }
        if (n == 0) break;
        text.append(chunk, static_cast<std::size_t>(n));
        if (text.size() > bound) {
            ::close(fd);
            throw fail("larger than 1 MiB: not a PEM file");
        }
    }
    ::close(fd);
    return text;
}

// The node's certificate chain and key, the key checked against the certificate.
inline void use_identity(ssl::context& ctx, const Tls& tls) {
    const std::string chain = read_file("certificate", tls.cert);
    const std::string key = read_file("key", tls.key);
    beast::error_code ec;
    ctx.use_certificate_chain(asio::buffer(chain), ec);
    if (ec)
        throw std::runtime_error(
            fmt::format("tls: cannot read the certificate `{}`: {}", tls.cert, pem_trouble(chain, "CERTIFICATE", ec)));

    // A key under a passphrase would make OpenSSL ask for it on the terminal: a node
    // started by a supervisor would hang there. No passphrase is given; it is refused.
    auto asked = std::make_shared<bool>(false);
    ctx.set_password_callback([asked](std::size_t, ssl::context::password_purpose) {
        *asked = true;
        return std::string();
    });
    ctx.use_private_key(asio::buffer(key), ssl::context::pem, ec);
    if (ec && *asked) {
        ERR_clear_error();
        throw std::runtime_error(fmt::format("tls: the key `{}` is encrypted: meshrun needs it without a passphrase", tls.key));
    }
    const bool mismatch = ec && ERR_GET_LIB(static_cast<unsigned long>(ec.value())) == ERR_LIB_X509 &&
                          ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH;
    // Not the same key type as the certificate's (an RSA key for an EC certificate):
    // OpenSSL takes it into another slot, and only this check tells.
    if (mismatch || (!ec && SSL_CTX_check_private_key(ctx.native_handle()) != 1)) {
        ERR_clear_error();
        throw std::runtime_error(
            fmt::format("tls: the key `{}` does not match the certificate `{}`", tls.key, tls.cert));
    }
    if (ec) throw std::runtime_error(fmt::format("tls: cannot read the key `{}`: {}", tls.key, pem_trouble(key, "PRIVATE KEY", ec)));
}

// The item's authority as the only trust anchor: the system's are not loaded.
inline void trust_only(ssl::context& ctx, const Tls& tls) {
    const std::string ca = read_file("CA certificate", tls.ca);
    beast::error_code ec;
    ctx.add_certificate_authority(asio::buffer(ca), ec);
    if (ec)
        throw std::runtime_error(
            fmt::format("tls: cannot read the CA certificate `{}`: {}", tls.ca, pem_trouble(ca, "CERTIFICATE", ec)));
}

// TLS 1.2 at least; OpenSSL's default ceiling, 1.3, is what both ends of meshrun agree on.
inline ssl::context base_context(ssl::context::method method) {
    ssl::context ctx(method);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    if (SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION) != 1)
        throw std::runtime_error("tls: cannot require TLS 1.2: " + openssl_reason());
    return ctx;
}

}  // namespace tls_detail

// The context a node serves wss:// and https:// with. With `ca`, a client must present
// a certificate the authority signed, or the TLS handshake fails. Throws
// std::runtime_error naming the file that cannot be used.
inline ssl::context server_context(const Tls& tls) {
    ssl::context ctx = tls_detail::base_context(ssl::context::tls_server);
    SSL_CTX_set_options(ctx.native_handle(), SSL_OP_NO_RENEGOTIATION);  // a client's renegotiations cost the server
    tls_detail::use_identity(ctx, tls);
    if (!tls.ca.empty()) {
        tls_detail::trust_only(ctx, tls);
        ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
        // With client certificates, a client resuming a session (a TLS 1.3 ticket) fails
        // its handshake ("session id context uninitialized") unless sessions have an id.
        static constexpr unsigned char id[] = "meshrun";
        SSL_CTX_set_session_id_context(ctx.native_handle(), id, sizeof id - 1);
    }
    return ctx;
}

// The context a node's links connect with. The server's certificate is always checked:
// against `ca` alone when the item has one (and the node's own certificate is presented:
// mutual TLS), else against the system's trusted authorities. Throws as server_context.
inline ssl::context client_context(const Tls& tls) {
    ssl::context ctx = tls_detail::base_context(ssl::context::tls_client);
    ctx.set_verify_mode(ssl::verify_peer);
    if (!tls.ca.empty()) {
        tls_detail::trust_only(ctx, tls);
        tls_detail::use_identity(ctx, tls);
    } else {
        beast::error_code ec;
        ctx.set_default_verify_paths(ec);
        if (ec) throw std::runtime_error("tls: cannot load the system's trusted authorities: " + tls_detail::reason(ec));
    }
    return ctx;
}

// Readies a client stream, before its handshake, for a connection to `host` as the file
// writes it (a name, or an address, brackets allowed): a name is sent as SNI, and the
// handshake fails unless the server's certificate names `host` (a DNS name of its
// subjectAltName, or for an address one of its IP addresses). OpenSSL's own check rather
// than asio's host_name_verification callback: a mismatch is then a verify error
// ("hostname mismatch") that handshake_error() can name, where the callback's refusal
// leaves only "unspecified certificate verification error".
inline void expect_host(TlsStream& stream, std::string_view host) {
    const std::string name = unbracket(host);
    SSL* ssl = stream.native_handle();
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    beast::error_code ec;
    const std::string address = name.substr(0, name.find('%'));  // fe80::1%eth0: the zone is not in certificates
    (void)asio::ip::make_address(address, ec);
    if (!ec) {
        // No SNI for an address (RFC 6066): the certificate must list the address itself.
        if (X509_VERIFY_PARAM_set1_ip_asc(param, address.c_str()) != 1)
            throw std::runtime_error(fmt::format("tls: cannot check the address `{}`: {}", address, tls_detail::openssl_reason()));
        return;
    }
    if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1 || X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size()) != 1)
        throw std::runtime_error(fmt::format("tls: cannot check the host name `{}`: {}", name, tls_detail::openssl_reason()));
}

// Words for a failed TLS handshake or read, for the logs: OpenSSL's reason and, when a
// certificate was refused, why ("certificate verify failed: hostname mismatch").
inline std::string handshake_error(TlsStream& stream, const beast::error_code& ec) {
    std::string words = tls_detail::reason(ec);
    const long verify = SSL_get_verify_result(stream.native_handle());
    if (ec.category() == asio::error::get_ssl_category() && verify != X509_V_OK)
        words += fmt::format(": {}", X509_verify_cert_error_string(verify));
    return words;
}

}  // namespace meshrun::engine
