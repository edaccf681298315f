// ws_bench: meshrun's websocket node on loopback, next to raw TCP measured in the same run,
// and `meshrun up` of a generated 1,000-node fleet.
//
//   ws_bench [--quick] [--meshrun PATH] [--nodes N] [--window W] [--pin] [--ports LO-HI]
//
// 1. Reference: a forked raw TCP echo server (16-byte messages, one write per message):
//    round trip p50/p99 and pipelined messages/s, plus its CPU per message.
// 2. `meshrun run FILE --node buzzer --sim` of a generated buzzer file, driven by a client
//    written on raw sockets (its own websocket handshake and masked frames, so that it costs
//    next to nothing): round trip p50/p99 of `1` -> "buzz buzz buzz", pipelined messages/s,
//    the node's CPU per message (utime+stime from /proc/PID/stat) and its idle RSS. Then the
//    same against the same node speaking meshrun.1 (docs/delivery.md): `m SEQ 1` frames, each
//    reply `a SEQ buzz buzz buzz` checked for its number.
// 3. The same buzzer with `tls cert ... key ...` (certificates made by tests/lib/make_certs.sh
//    into the temporary directory), the same client over OpenSSL: it trusts the test authority
//    and checks that the node's certificate names `localhost`.
// 4. `meshrun up` of N buzzers (1,000) on 127.0.0.1: time from spawn to the last
//    `listening` line, and the RSS then.
//
// It is a benchmark, not a test: it exits 0 whether or not the goals are met, and 1 only when
// something could not run (no binary, a child that died, a reply that never came, ...). Every
// wait is bounded, and every child is killed on the way out (also on error and on SIGINT/SIGTERM;
// the children also get SIGKILL if this process dies, through PR_SET_PDEATHSIG).

#include <utility>  // first: Boost 1.74's Asio (pulled in by Beast's headers) uses std::exchange without it

#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/core/detail/sha1.hpp>

#include <fmt/core.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "build_paths.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// The script that makes the TLS node's certificates, in the source tree.
fs::path make_certs_script() { return meshrun::build_paths::source("tests/lib/make_certs.sh"); }

struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& what) { throw Failure(what); }
[[noreturn]] void fail_errno(const std::string& what) { throw Failure(what + ": " + std::strerror(errno)); }

constexpr auto io_timeout = std::chrono::seconds(10);  // any single read or write
constexpr auto phase_timeout = std::chrono::seconds(120);  // any one measured loop

// ---- children: registry for the signal handler, spawn, output reader, stop --------------------

constexpr int max_children = 8;
std::array<std::atomic<pid_t>, max_children> g_children{};
std::array<char, 4096> g_tmp_dir{};  // the temporary directory, emptied by the signal handler too

// What the bench writes into its temporary directory: its node files, and the certificates of
// tests/lib/make_certs.sh in certs/ (every file it makes, and the ones it makes on the way).
// The signal handler removes these by name, then the directories: nothing else it may call
// (async-signal-safe) walks a directory.
constexpr const char* g_tmp_names[] = {
    "buzzer.mesh", "tls.mesh", "fleet.mesh", "make_certs.log", "certs/ca.pem", "certs/ca.key",
    "certs/node.pem", "certs/node.key", "certs/node.csr", "certs/node.ext", "certs/other-ca.pem",
    "certs/other-ca.key", "certs/other.pem", "certs/other.key", "certs/other.csr", "certs/other.ext",
    "certs/wrong-name.pem", "certs/wrong-name.key", "certs/wrong-name.csr", "certs/wrong-name.ext",
    "certs/expired.pem", "certs/expired.key", "certs/expired.csr", "certs/expired.ext", "certs/encrypted.key",
    "certs/ed25519.key", "certs/ca.srl", "certs/other-ca.srl", "certs"};

void register_child(pid_t pid) {
    for (auto& slot : g_children) {
        pid_t empty = 0;
        if (slot.compare_exchange_strong(empty, pid)) return;
    }
}

void unregister_child(pid_t pid) {
    for (auto& slot : g_children) {
        pid_t expected = pid;
        slot.compare_exchange_strong(expected, 0);
    }
}

extern "C" void on_fatal_signal(int sig) {
    for (auto& slot : g_children) {
        const pid_t pid = slot.load();
        if (pid > 0) {
            ::kill(-pid, SIGKILL);  // its process group: whatever it started too
            ::kill(pid, SIGKILL);
        }
    }
    if (g_tmp_dir[0]) {
        for (const char* name : g_tmp_names) {
            char path[4096 + 64];
            std::size_t n = 0;
            for (const char* c = g_tmp_dir.data(); *c && n < 4096; ++c) path[n++] = *c;
            path[n++] = '/';
            for (const char* c = name; *c && n < sizeof path - 1; ++c) path[n++] = *c;
            path[n] = '\0';
            if (::unlink(path) != 0) ::rmdir(path);  // certs/ is last, a directory
        }
        ::rmdir(g_tmp_dir.data());
    }
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

void copy_path(std::array<char, 4096>& into, const std::string& path) {
    const std::size_t n = std::min(path.size(), into.size() - 1);
    std::memcpy(into.data(), path.data(), n);
    into[n] = '\0';
}

// Which CPUs to pin to: the client on the first, the servers on the second (when there are two).
struct Pinning {
    int client = -1;
    int server = -1;
};

void pin_self(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    ::sched_setaffinity(0, sizeof set, &set);  // best effort
}

// Every thread of process `pid` on the CPUs of `set` (best effort: threads come and go).
void set_affinity(pid_t pid, const cpu_set_t& set) {
    std::error_code ec;
    for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
        const pid_t tid = static_cast<pid_t>(std::atol(task.path().filename().c_str()));
        ::sched_setaffinity(tid, sizeof set, &set);
    }
}

// While it lives, this thread and every thread of `server` run on one CPU, the one this thread
// is on: a round trip then takes what its work costs, and a pipelined run goes at the rate the
// two together can work, the same way for every kind of connection. Left to the scheduler,
// client and server land on one CPU or on two from one moment to the next, as other work on
// the machine comes and goes; on two, each message may wait for an idle virtual CPU to wake up,
// 25-50 us on this project's VMs: round trips came out 8 us or 60 us, and pipelined rates
// 0.8 or 2 million messages/s, by chance.
class OneCpu {
public:
    explicit OneCpu(pid_t server) : server_(server) {
        CPU_ZERO(&self_);
        CPU_ZERO(&theirs_);
        ::sched_getaffinity(0, sizeof self_, &self_);
        ::sched_getaffinity(server, sizeof theirs_, &theirs_);
        const int cpu = ::sched_getcpu();
        if (cpu < 0) return;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        ::sched_setaffinity(0, sizeof one, &one);
        set_affinity(server, one);
    }
    OneCpu(const OneCpu&) = delete;
    OneCpu& operator=(const OneCpu&) = delete;
    ~OneCpu() {
        ::sched_setaffinity(0, sizeof self_, &self_);
        set_affinity(server_, theirs_);
    }

private:
    pid_t server_;
    cpu_set_t self_, theirs_;
};

// A child process whose stdout and stderr come back through a pipe, read line by line by a thread.
class Child {
public:
    Child() = default;
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() { stop(); }

    // Runs argv[0] with argv; the child is pinned to `cpu` (when >= 0) and dies with us.
    void spawn(const std::vector<std::string>& argv, int cpu) {
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) fail_errno("pipe");
        const pid_t parent = ::getpid();
        spawned_at_ = Clock::now();
        const pid_t pid = ::fork();
        if (pid < 0) {
            ::close(fds[0]);
            ::close(fds[1]);
            fail_errno("fork");
        }
        if (pid == 0) {
            // Only async-signal-safe calls from here to exec. A process group of its own, so that
            // stop() also reaches anything it starts (a wrapper script's child, say).
            ::setpgid(0, 0);
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            ::dup2(fds[1], STDOUT_FILENO);
            ::dup2(fds[1], STDERR_FILENO);
            if (cpu >= 0) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(cpu, &set);
                ::sched_setaffinity(0, sizeof set, &set);
            }
            ::execv(args[0], args.data());
            static const char msg[] = "ws_bench: cannot exec the child\n";
            [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
            ::_exit(127);
        }
        ::setpgid(pid, pid);  // also here: whichever of the two runs first
        pid_ = pid;
        register_child(pid);
        ::close(fds[1]);
        out_fd_ = fds[0];
        reader_ = std::thread([this] { read_output(); });
    }

    pid_t pid() const { return pid_; }
    Clock::time_point spawned_at() const { return spawned_at_; }

    // Waits until `count` lines saying `listening on ws://` have come; false on timeout or exit.
    bool wait_listening(int count, Clock::duration timeout) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, timeout, [&] { return listening_ >= count || eof_; }) && listening_ >= count;
    }

    bool output_ended() {
        std::lock_guard lock(mutex_);
        return eof_;
    }

    // Why wait_listening() failed, for an error message.
    std::string why_not_listening(const std::string& what, int seconds) {
        return fmt::format("{} {}; its last output:\n{}", what,
                           output_ended() ? "exited before it was listening" :
                                            fmt::format("was not listening within {} s", seconds),
                           tail());
    }

    Clock::time_point last_listening() {
        std::lock_guard lock(mutex_);
        return last_listening_at_;
    }

    // The last lines the child printed, for an error message.
    std::string tail() {
        std::lock_guard lock(mutex_);
        std::string out;
        for (const auto& l : tail_) out += "    " + l + "\n";
        if (eof_) out += "    (the child's output ended)\n";
        return out;
    }

    // SIGTERM to its process group, a bounded wait, then SIGKILL to what is left of the group;
    // reaps the child and joins the reader (which stops within 100 ms even if the pipe stays open).
    void stop() {
        if (pid_ > 0) {
            ::kill(-pid_, SIGTERM);
            bool reaped = false;
            const auto deadline = Clock::now() + std::chrono::seconds(3);
            while (Clock::now() < deadline) {
                int status = 0;
                const pid_t r = ::waitpid(pid_, &status, WNOHANG);
                if (r == pid_ || (r < 0 && errno != EINTR)) {
                    reaped = true;
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            ::kill(-pid_, SIGKILL);  // what is left of the group
            if (!reaped) {
                ::kill(pid_, SIGKILL);
                int status = 0;
                while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
                }
            }
            unregister_child(pid_);
            pid_ = -1;
        }
        stopping_ = true;
        if (reader_.joinable()) reader_.join();
        if (out_fd_ >= 0) {
            ::close(out_fd_);
            out_fd_ = -1;
        }
    }

private:
    void read_output() {
        std::string pending;
        char buf[16384];
        while (true) {
            pollfd p{out_fd_, POLLIN, 0};
            const int ready = ::poll(&p, 1, 100);
            if (ready < 0 && errno != EINTR) break;
            if (ready <= 0) {
                if (stopping_) break;  // the child is gone, yet something else holds the pipe open
                continue;
            }
            const ssize_t n = ::read(out_fd_, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            const auto now = Clock::now();
            pending.append(buf, static_cast<std::size_t>(n));
            std::size_t start = 0, nl;
            std::lock_guard lock(mutex_);
            while ((nl = pending.find('\n', start)) != std::string::npos) {
                std::string_view line(pending.data() + start, nl - start);
                if (line.find("listening on ws://") != std::string_view::npos ||
                    line.find("listening on wss://") != std::string_view::npos) {
                    ++listening_;
                    last_listening_at_ = now;
                }
                tail_.emplace_back(line);
                if (tail_.size() > 12) tail_.pop_front();
                start = nl + 1;
            }
            pending.erase(0, start);
            cv_.notify_all();
        }
        std::lock_guard lock(mutex_);
        if (!pending.empty()) tail_.push_back(pending);
        eof_ = true;
        cv_.notify_all();
    }

    pid_t pid_ = -1;
    int out_fd_ = -1;
    Clock::time_point spawned_at_{};
    std::thread reader_;
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;
    std::condition_variable cv_;
    int listening_ = 0;
    Clock::time_point last_listening_at_{};
    std::deque<std::string> tail_;
    bool eof_ = false;
};

// ---- /proc -------------------------------------------------------------------------------------

// The CPU time of a process (all its threads), in seconds: the scheduler's own
// count in nanoseconds (/proc/PID/task/TID/schedstat), not utime + stime, which
// come in 10 ms ticks.
double cpu_seconds(pid_t pid) {
    const fs::path tasks = "/proc/" + std::to_string(pid) + "/task";
    std::error_code ec;
    unsigned long long ns = 0;
    bool any = false;
    for (const auto& task : fs::directory_iterator(tasks, ec)) {
        std::ifstream in(task.path() / "schedstat");
        unsigned long long run = 0;
        if (in >> run) {
            ns += run;
            any = true;
        }
    }
    if (!any) fail(fmt::format("cannot read the CPU time of process {} ({}/*/schedstat)", pid, tasks.string()));
    return static_cast<double>(ns) / 1e9;
}

// A numeric field of /proc/PID/status, such as "VmRSS" (in KiB) or "voluntary_ctxt_switches".
long proc_status(pid_t pid, std::string_view field) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.size() > field.size() && line.compare(0, field.size(), field) == 0 && line[field.size()] == ':')
            return std::atol(line.c_str() + field.size() + 1);
    fail(fmt::format("no {} in /proc/{}/status", field, pid));
}

long rss_kib(pid_t pid) { return proc_status(pid, "VmRSS"); }

// How often a process has gone to sleep waiting (for input, mostly).
long wakeups(pid_t pid) { return proc_status(pid, "voluntary_ctxt_switches"); }

// ---- sockets -----------------------------------------------------------------------------------

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    ~Fd() { reset(); }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    int get() const { return fd_; }

private:
    int fd_ = -1;
};

sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

// A listening socket on 127.0.0.1 (port 0: any free one).
Fd listen_on(std::uint16_t port) {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) fail_errno("socket");
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const auto a = loopback(port);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) return Fd{};
    if (::listen(fd.get(), 16) != 0) fail_errno("listen");
    return fd;
}

std::uint16_t local_port(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) fail_errno("getsockname");
    return ntohs(a.sin_port);
}

// The ports the nodes may have (--ports LO-HI); by default a node's port is the kernel's pick
// and a fleet's from 20000 to 32000.
struct PortRange {
    int lo = 20000, hi = 32000;
    bool given = false;
};
PortRange g_ports;

// A port that is free right now, for a child to listen on: the kernel's pick, or with --ports
// the first free one from a random place in the range.
std::uint16_t free_port() {
    if (!g_ports.given) {
        Fd fd = listen_on(0);
        if (fd.get() < 0) fail_errno("bind 127.0.0.1:0");
        return local_port(fd.get());
    }
    const int span = g_ports.hi - g_ports.lo + 1;
    const int start = static_cast<int>(std::random_device{}() % static_cast<unsigned>(span));
    for (int i = 0; i < span; ++i) {
        const auto port = static_cast<std::uint16_t>(g_ports.lo + (start + i) % span);
        if (listen_on(port).get() >= 0) return port;
    }
    fail(fmt::format("no free port between {} and {}", g_ports.lo, g_ports.hi));
}

// The first of `count` consecutive ports in the range that can all be bound now, from its
// start in steps of `count` (1,000 by default).
std::uint16_t free_port_range(int count) {
    const int step = g_ports.given ? count : 1000;
    for (int base = g_ports.lo; base + count - 1 <= g_ports.hi; base += step) {
        bool all = true;
        for (int p = base; p < base + count && all; ++p) all = listen_on(static_cast<std::uint16_t>(p)).get() >= 0;
        if (all) return static_cast<std::uint16_t>(base);
    }
    fail(fmt::format("no {} consecutive free ports between {} and {}", count, g_ports.lo, g_ports.hi));
}

void set_timeouts(int fd) {
    timeval tv{};
    tv.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(io_timeout).count();
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Fd connect_to(std::uint16_t port) {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) fail_errno("socket");
    set_timeouts(fd.get());
    const auto a = loopback(port);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
        fail_errno(fmt::format("connect to 127.0.0.1:{}", port));
    return fd;
}

void fd_write_all(int fd, const char* data, std::size_t len) {
    while (len > 0) {
        const ssize_t n = ::write(fd, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) fail("a write blocked for 10 s");
        if (n < 0) fail_errno("write");
        data += n;
        len -= static_cast<std::size_t>(n);
    }
}

// One blocking read (bounded by SO_RCVTIMEO); returns > 0 bytes or throws.
std::size_t fd_read_some(int fd, char* into, std::size_t cap) {
    while (true) {
        const ssize_t n = ::read(fd, into, cap);
        if (n > 0) return static_cast<std::size_t>(n);
        if (n == 0) fail("the server closed the connection");
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) fail("no reply within 10 s");
        fail_errno("read");
    }
}

// OpenSSL's reason for the last error it queued (its queue is emptied), for an error message.
std::string openssl_error() {
    const unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0) return "no reason given by OpenSSL";
    char text[256];
    ERR_error_string_n(e, text, sizeof text);
    return text;
}

// A client's TLS context: TLS 1.2 or later; the server's certificate must be signed by the
// authority in `ca_file` (the only one trusted). Read ahead: OpenSSL then takes what the socket
// holds in one read, not a record at a time (the node sends each reply as a record of its own).
class TlsClient {
public:
    explicit TlsClient(const std::string& ca_file) : ctx_(SSL_CTX_new(TLS_client_method())) {
        if (!ctx_) fail("TLS: cannot make a client context: " + openssl_error());
        SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
        if (SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr) != 1)
            fail(fmt::format("TLS: cannot load the authority {}: {}", ca_file, openssl_error()));
        SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
        SSL_CTX_set_read_ahead(ctx_, 1);
    }
    TlsClient(const TlsClient&) = delete;
    TlsClient& operator=(const TlsClient&) = delete;
    ~TlsClient() { SSL_CTX_free(ctx_); }
    SSL_CTX* get() const { return ctx_; }

private:
    SSL_CTX* ctx_;
};

// A client connection: plain TCP, or TLS over it (OpenSSL straight on the blocking socket,
// its reads and writes bounded by the socket's 10 s timeouts as the plain ones are).
class Conn {
public:
    explicit Conn(Fd fd) : fd_(std::move(fd)) {}

    // TLS: the handshake, the server's certificate checked against the context's authority
    // and for the name `host` (also sent as SNI).
    Conn(Fd fd, const TlsClient& tls, const std::string& host) : fd_(std::move(fd)), ssl_(SSL_new(tls.get()), SSL_free) {
        SSL* ssl = ssl_.get();
        if (!ssl) fail("TLS: cannot make a connection: " + openssl_error());
        if (SSL_set_fd(ssl, fd_.get()) != 1 || SSL_set_tlsext_host_name(ssl, host.c_str()) != 1 ||
            SSL_set1_host(ssl, host.c_str()) != 1)
            fail("TLS: cannot set up the connection: " + openssl_error());
        if (const int r = SSL_connect(ssl); r != 1) {
            std::string why = tls_error(r, "the TLS handshake");
            const long verify = SSL_get_verify_result(ssl);
            if (verify != X509_V_OK)
                why += fmt::format(" (the server's certificate: {})", X509_verify_cert_error_string(verify));
            fail(why);
        }
    }

    void write_all(const char* data, std::size_t len) {
        if (!ssl_) return fd_write_all(fd_.get(), data, len);
        while (len > 0) {
            const int chunk = static_cast<int>(std::min<std::size_t>(len, 1 << 20));
            const int n = SSL_write(ssl_.get(), data, chunk);
            if (n <= 0) fail(tls_error(n, "a TLS write"));
            data += n;
            len -= static_cast<std::size_t>(n);
        }
    }

    // One read of what has come (> 0 bytes), or throws. Over TLS, every record already read
    // from the socket is taken too, so that a burst of replies is one call, as on plain TCP.
    std::size_t read_some(char* into, std::size_t cap) {
        if (!ssl_) return fd_read_some(fd_.get(), into, cap);
        std::size_t got = 0;
        do {
            const int n = SSL_read(ssl_.get(), into + got, static_cast<int>(std::min<std::size_t>(cap - got, 1 << 30)));
            if (n <= 0) fail(tls_error(n, "a TLS read"));
            got += static_cast<std::size_t>(n);
        } while (got < cap && SSL_has_pending(ssl_.get()));
        return got;
    }

private:
    // Why an SSL_* call on this connection returned `ret`; OpenSSL's queue is emptied.
    std::string tls_error(int ret, const char* what) {
        const int saved = errno;
        const int err = SSL_get_error(ssl_.get(), ret);
        switch (err) {
        case SSL_ERROR_ZERO_RETURN:
            return fmt::format("{}: the server closed the connection", what);
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:  // a blocking socket: its timeout passed
            return fmt::format("{}: nothing within 10 s", what);
        case SSL_ERROR_SYSCALL:
            ERR_clear_error();
            if (saved == 0) return fmt::format("{}: the server closed the connection", what);
            return fmt::format("{}: {}", what, std::strerror(saved));
        default:
            return fmt::format("{}: {}", what, openssl_error());
        }
    }

    Fd fd_;
    std::unique_ptr<SSL, void (*)(SSL*)> ssl_{nullptr, SSL_free};
};

// ---- the raw TCP echo server (a forked process) ------------------------------------------------

constexpr std::size_t raw_size = 16;

// The certificate and key of a TLS echo server (OpenSSL straight on the blocking socket).
struct EchoTls {
    std::string cert, key;
};

// Echoes each complete 16-byte message with its own write, like a server that answers each
// message on its own; with `tls`, over TLS (each message its own record): OpenSSL's own cost,
// the floor of any TLS server's. Serves up to 4 connections one after another, then exits.
[[noreturn]] void echo_server(int listener, const EchoTls* tls) {
    static char buf[65536];
    SSL_CTX* ctx = nullptr;
    if (tls) {
        ctx = SSL_CTX_new(TLS_server_method());
        if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, tls->cert.c_str()) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, tls->key.c_str(), SSL_FILETYPE_PEM) != 1)
            ::_exit(1);
        SSL_CTX_set_read_ahead(ctx, 1);
    }
    for (int c = 0; c < 4; ++c) {
        const int fd = ::accept(listener, nullptr, nullptr);
        if (fd < 0) ::_exit(1);
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        SSL* ssl = nullptr;
        if (ctx) {
            ssl = SSL_new(ctx);
            if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1) ::_exit(1);
        }
        const auto in = [&](char* p, std::size_t n) -> ssize_t {
            return ssl ? SSL_read(ssl, p, static_cast<int>(n)) : ::read(fd, p, n);
        };
        const auto out = [&](const char* p, std::size_t n) -> ssize_t {
            return ssl ? SSL_write(ssl, p, static_cast<int>(n)) : ::write(fd, p, n);
        };
        std::size_t have = 0;
        while (true) {
            const ssize_t n = in(buf + have, sizeof buf - have);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            have += static_cast<std::size_t>(n);
            std::size_t at = 0;
            bool ok = true;
            for (; have - at >= raw_size && ok; at += raw_size) {
                std::size_t done = 0;
                while (done < raw_size) {
                    const ssize_t w = out(buf + at + done, raw_size - done);
                    if (w < 0 && errno == EINTR) continue;
                    if (w <= 0) {
                        ok = false;
                        break;
                    }
                    done += static_cast<std::size_t>(w);
                }
            }
            if (!ok) break;
            std::memmove(buf, buf + at, have - at);
            have -= at;
        }
        if (ssl) SSL_free(ssl);
        ::close(fd);
    }
    ::_exit(0);
}

class EchoServer {
public:
    EchoServer(int cpu, const EchoTls* tls = nullptr) {
        Fd listener = listen_on(0);
        if (listener.get() < 0) fail_errno("bind 127.0.0.1:0");
        port_ = local_port(listener.get());
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0) fail_errno("fork");
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(1);
            pin_self(cpu);
            echo_server(listener.get(), tls);
        }
        register_child(pid_);
    }
    EchoServer(const EchoServer&) = delete;
    EchoServer& operator=(const EchoServer&) = delete;
    ~EchoServer() {
        ::kill(pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        unregister_child(pid_);
    }
    std::uint16_t port() const { return port_; }
    pid_t pid() const { return pid_; }

private:
    std::uint16_t port_ = 0;
    pid_t pid_ = -1;
};

// ---- clients: raw TCP and websocket, the same loops -----------------------------------------

// What a connection speaks: 16-byte messages echoed (the raw TCP reference), plain websocket
// messages with one reply each, or meshrun.1's numbered ones (docs/delivery.md).
enum class Speech { raw, websocket, meshrun1 };

// A client-to-server websocket text frame: FIN, masked (as RFC 6455 requires of a client),
// appended to `out`.
void append_masked_text_frame(std::string& out, std::string_view payload, std::uint32_t mask) {
    out.push_back(static_cast<char>(0x81));
    if (payload.size() < 126) {
        out.push_back(static_cast<char>(0x80 | payload.size()));
    } else {
        out.push_back(static_cast<char>(0x80 | 126));
        out.push_back(static_cast<char>(payload.size() >> 8));
        out.push_back(static_cast<char>(payload.size() & 0xff));
    }
    const char key[4] = {static_cast<char>(mask >> 24), static_cast<char>(mask >> 16), static_cast<char>(mask >> 8),
                         static_cast<char>(mask)};
    out.append(key, 4);
    for (std::size_t i = 0; i < payload.size(); ++i) out.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
}

std::string masked_text_frame(std::string_view payload, std::uint32_t mask) {
    std::string f;
    append_masked_text_frame(f, payload, mask);
    return f;
}

// The bytes the client sends, message by message: the same bytes every time (raw TCP, or a
// plain websocket frame built once), or meshrun.1's `m SEQ PAYLOAD` frames, built as they go (a
// few tens of nanoseconds each), numbered on from `seq`: the sender's last number, which the
// connections of a run share as a meshrun link's do.
class Messages {
public:
    static Messages fixed(std::string bytes) {
        Messages m;
        m.fixed_ = std::move(bytes);
        return m;
    }
    static Messages numbered(std::string payload, std::uint32_t mask, std::uint64_t& seq) {
        Messages m;
        m.payload_ = std::move(payload);
        m.mask_ = mask;
        m.seq_ = &seq;
        return m;
    }

    // The next `n` messages, back to back (valid until the next call).
    std::string_view next(std::size_t n) {
        if (!seq_) {
            while (batch_.size() < n * fixed_.size()) batch_ += fixed_;
            return std::string_view(batch_.data(), n * fixed_.size());
        }
        batch_.clear();
        for (std::size_t i = 0; i < n; ++i) {
            char text[128] = {'m', ' '};
            char* end = std::to_chars(text + 2, text + 24, ++*seq_).ptr;
            *end++ = ' ';
            end = std::copy_n(payload_.data(), std::min<std::size_t>(payload_.size(), 100), end);
            append_masked_text_frame(batch_, std::string_view(text, static_cast<std::size_t>(end - text)), mask_);
        }
        return batch_;
    }

private:
    Messages() = default;
    std::string fixed_, payload_, batch_;
    std::uint32_t mask_ = 0;
    std::uint64_t* seq_ = nullptr;  // meshrun.1
};

// Reads replies and counts them: fixed 16-byte messages, or websocket frames from a server
// (unmasked) whose text payload must be `expected`, with meshrun.1 `a SEQ expected`, SEQ
// counting from `first`: each reply must answer the next message sent.
class ReplyReader {
public:
    ReplyReader(Conn& conn, Speech speech, std::string expected, std::uint64_t first = 1)
        : conn_(conn), speech_(speech), expected_(std::move(expected)), buf_(1 << 20), seq_(first - 1) {}

    // Bytes already read past the handshake.
    void preload(std::string_view bytes) {
        std::memcpy(buf_.data() + end_, bytes.data(), bytes.size());
        end_ += bytes.size();
    }

    // One read; returns how many complete replies it finished (may be 0).
    std::size_t read() {
        if (begin_ > 0 && (begin_ == end_ || end_ > buf_.size() / 2)) {
            std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
            end_ -= begin_;
            begin_ = 0;
        }
        end_ += conn_.read_some(buf_.data() + end_, buf_.size() - end_);
        return parse();
    }

    // Reads until `count` replies have come.
    void await(std::size_t count) {
        std::size_t got = parse();
        while (got < count) got += read();
    }

private:
    std::size_t parse() {
        std::size_t replies = 0;
        if (speech_ == Speech::raw) {
            const std::size_t n = (end_ - begin_) / raw_size;
            begin_ += n * raw_size;
            return n;
        }
        while (end_ - begin_ >= 2) {
            const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + begin_);
            const std::size_t avail = end_ - begin_;
            const bool fin = p[0] & 0x80;
            const int opcode = p[0] & 0x0f;
            const bool masked = p[1] & 0x80;
            std::uint64_t len = p[1] & 0x7f;
            std::size_t header = 2;
            if (len == 126) {
                if (avail < 4) break;
                len = (std::uint64_t{p[2]} << 8) | p[3];
                header = 4;
            } else if (len == 127) {
                if (avail < 10) break;
                len = 0;
                for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
                header = 10;
            }
            if (masked) fail("the server sent a masked frame");
            if (len > buf_.size() / 4) fail("the server sent a frame too big for this client");
            if (avail < header + len) break;
            const std::string_view payload(buf_.data() + begin_ + header, static_cast<std::size_t>(len));
            if (opcode == 0x8) {
                const unsigned code = payload.size() >= 2 ? (static_cast<unsigned char>(payload[0]) << 8) |
                                                                static_cast<unsigned char>(payload[1])
                                                          : 0;
                fail(fmt::format("the server closed the websocket (code {}{}{})", code,
                                 payload.size() > 2 ? ": " : "", payload.size() > 2 ? payload.substr(2) : ""));
            }
            if (opcode == 0x1 || opcode == 0x0) {
                if (!fin || opcode == 0x0) fail("the server fragmented a reply");
                check(payload);
                ++replies;
            } else if (opcode != 0x9 && opcode != 0xA) {
                fail(fmt::format("unexpected websocket opcode {}", opcode));
            }
            begin_ += header + static_cast<std::size_t>(len);
        }
        return replies;
    }

    void check(std::string_view payload) {
        if (speech_ == Speech::websocket) {
            if (payload != expected_) fail(fmt::format("unexpected reply \"{}\" (expected \"{}\")", payload, expected_));
            return;
        }
        // meshrun.1: `a SEQ REPLY`, SEQ the next message's number.
        ++seq_;
        std::uint64_t seq = 0;
        std::size_t i = 2;
        const bool framed = payload.size() > 2 && payload[0] == 'a' && payload[1] == ' ';
        for (; framed && i < payload.size() && i < 22 && payload[i] >= '0' && payload[i] <= '9'; ++i)
            seq = seq * 10 + static_cast<std::uint64_t>(payload[i] - '0');
        if (!framed || i == 2 || i == payload.size() || payload[i] != ' ')
            fail(fmt::format("a meshrun.1 reply that is not `a SEQ REPLY`: \"{}\"", payload));
        if (seq != seq_) fail(fmt::format("the reply to message {} came as reply number {} (\"{}\")", seq, seq_, payload));
        if (payload.substr(i + 1) != expected_)
            fail(fmt::format("unexpected reply \"{}\" to message {} (expected \"a {} {}\")", payload, seq, seq, expected_));
    }

    Conn& conn_;
    Speech speech_;
    std::string expected_;
    std::vector<char> buf_;
    std::size_t begin_ = 0, end_ = 0;
    std::uint64_t seq_;  // meshrun.1: the number of the last reply checked
};

std::string base64(const void* data, std::size_t len) {
    std::string out(boost::beast::detail::base64::encoded_size(len), '\0');
    out.resize(boost::beast::detail::base64::encode(out.data(), data, len));
    return out;
}

// The Sec-WebSocket-Accept a server must answer to `key` (RFC 6455, 4.2.2).
std::string websocket_accept(const std::string& key) {
    const std::string text = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    boost::beast::detail::sha1_context ctx;
    boost::beast::detail::init(ctx);
    boost::beast::detail::update(ctx, text.data(), text.size());
    unsigned char digest[boost::beast::detail::sha1_context::digest_size];
    boost::beast::detail::finish(ctx, digest);
    return base64(digest, sizeof digest);
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// A header's value in a response head (its lines, lowercase field names), or nothing.
std::optional<std::string> header_value(const std::string& head, std::string_view name) {
    const std::string lhead = lower(head);
    const auto at = lhead.find(fmt::format("\r\n{}:", name));
    if (at == std::string::npos) return std::nullopt;
    std::size_t v = at + 3 + name.size();
    while (v < head.size() && head[v] == ' ') ++v;
    std::string value = head.substr(v, head.find("\r\n", v) - v);
    while (!value.empty() && value.back() == ' ') value.pop_back();
    return value;
}

// The opening handshake of ws://HOST:PORT/PATH (or wss:// over a TLS connection); with
// `meshrun1`, asking for meshrun.1 as sender `bench/client` with boot `boot`, and checking
// that the server chose it. Returns the bytes read past the response.
std::string websocket_handshake(Conn& conn, const std::string& host, std::uint16_t port, const std::string& path,
                                std::mt19937& rng, bool meshrun1 = false, const std::string& boot = "") {
    unsigned char nonce[16];
    for (auto& b : nonce) b = static_cast<unsigned char>(rng());
    const std::string key = base64(nonce, sizeof nonce);
    const std::string numbering =
        meshrun1 ? fmt::format("Sec-WebSocket-Protocol: meshrun.1\r\nMeshrun-Sender: bench/client\r\n"
                               "Meshrun-Boot: {}\r\n",
                               boot)
                 : std::string();
    const std::string req = fmt::format(
        "GET /{} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
        path, host, port, key, numbering);
    conn.write_all(req.data(), req.size());
    std::string res;
    char buf[4096];
    std::size_t end;
    while ((end = res.find("\r\n\r\n")) == std::string::npos) {
        if (res.size() > 65536) fail("the handshake response has no end");
        res.append(buf, conn.read_some(buf, sizeof buf));
    }
    const std::string head = res.substr(0, end + 2);
    const std::string status = head.substr(0, head.find("\r\n"));
    if (status.rfind("HTTP/1.1 101", 0) != 0) {
        const std::string body = res.substr(end + 4, 200);
        fail(fmt::format("the websocket handshake was refused: {}{}{}", status, body.empty() ? "" : ": ", body));
    }
    const auto accept = header_value(head, "sec-websocket-accept");
    if (!accept) fail("the handshake response has no Sec-WebSocket-Accept");
    if (*accept != websocket_accept(key)) fail("the handshake response has a wrong Sec-WebSocket-Accept");
    const auto protocol = header_value(head, "sec-websocket-protocol");
    if (meshrun1 && protocol != "meshrun.1")
        fail(fmt::format("the server did not choose meshrun.1 (Sec-WebSocket-Protocol: {})", protocol.value_or("none")));
    if (!meshrun1 && protocol) fail(fmt::format("the server chose a subprotocol that was not asked for: {}", *protocol));
    return res.substr(end + 4);
}

// One open connection and what goes over it; meshrun.1's replies numbered from `first`.
struct Session {
    Session(Conn&& c, Speech speech, std::string expected, Messages m, std::uint64_t first = 1)
        : conn(std::move(c)), reader(conn, speech, std::move(expected), first), messages(std::move(m)) {}
    Conn conn;
    ReplyReader reader;
    Messages messages;
};

struct RoundTrips {
    double p50_us = 0, p99_us = 0, min_us = 0, mean_us = 0;
    // The CPU time of a timed round trip, on average: the client's (this thread's), and the
    // server's when its pid is known. On one CPU, these two make up nearly all of a round trip.
    double client_cpu_us = -1, server_cpu_us = -1;
};

double thread_cpu_seconds() {
    timespec t{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// Sends one message, waits for its reply; `warmup` untimed, then `count` timed.
RoundTrips round_trips(Session& s, int warmup, int count, pid_t server = 0) {
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(count));
    const auto deadline = Clock::now() + phase_timeout;
    double client0 = 0, server0 = 0;
    for (int i = 0; i < warmup + count; ++i) {
        if (i == warmup) {
            client0 = thread_cpu_seconds();
            server0 = server > 0 ? cpu_seconds(server) : 0;
        }
        const auto t0 = Clock::now();
        const std::string_view msg = s.messages.next(1);
        s.conn.write_all(msg.data(), msg.size());
        s.reader.await(1);
        const auto t1 = Clock::now();
        if (i >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        if (t1 > deadline) fail("the round trips took longer than 120 s");
    }
    RoundTrips r;
    if (count > 0) {
        r.client_cpu_us = (thread_cpu_seconds() - client0) * 1e6 / count;
        if (server > 0) r.server_cpu_us = (cpu_seconds(server) - server0) * 1e6 / count;
    }
    std::sort(us.begin(), us.end());
    r.p50_us = us[us.size() / 2];
    r.p99_us = us[std::min(us.size() - 1, us.size() * 99 / 100)];
    r.min_us = us.front();
    double sum = 0;
    for (double x : us) sum += x;
    r.mean_us = sum / static_cast<double>(us.size());
    return r;
}

struct Pipelined {
    double msgs_per_s = 0;
    double client_cpu_us = 0;     // per message: this thread's CPU time
    double server_cpu_us = -1;    // per message, when the server's pid is known
    double per_wakeup = -1;       // messages the server handled each time it woke up
};

// Keeps `window` messages in flight: each time replies come, as many new messages go out, in
// one write. Counts `total` replies; reads the server's CPU time around the run.
Pipelined pipelined(Session& s, std::size_t total, std::size_t window, pid_t server) {
    const double cpu0 = server > 0 ? cpu_seconds(server) : 0;
    const long wake0 = server > 0 ? wakeups(server) : 0;
    const double client0 = thread_cpu_seconds();
    const auto t0 = Clock::now();
    const auto deadline = t0 + phase_timeout;
    std::size_t sent = std::min(window, total), received = 0;
    std::string_view batch = s.messages.next(sent);
    s.conn.write_all(batch.data(), batch.size());
    while (received < total) {
        const std::size_t got = s.reader.read();
        received += got;
        const std::size_t more = std::min(got, total - sent);
        if (more > 0) {
            batch = s.messages.next(more);
            s.conn.write_all(batch.data(), batch.size());
            sent += more;
        }
        if (Clock::now() > deadline) fail("the pipelined run took longer than 120 s");
    }
    const auto t1 = Clock::now();
    Pipelined p;
    p.msgs_per_s = static_cast<double>(total) / std::chrono::duration<double>(t1 - t0).count();
    p.client_cpu_us = (thread_cpu_seconds() - client0) * 1e6 / static_cast<double>(total);
    if (server > 0) {
        p.server_cpu_us = (cpu_seconds(server) - cpu0) * 1e6 / static_cast<double>(total);
        p.per_wakeup = static_cast<double>(total) / static_cast<double>(std::max(1L, wakeups(server) - wake0));
    }
    return p;
}

// A websocket to a buzzer node's /signal, on 127.0.0.1:PORT: plain, meshrun.1, or over TLS.
struct Target {
    std::uint16_t port = 0;
    bool meshrun1 = false;
    const TlsClient* tls = nullptr;  // wss://, the name `localhost` checked
};

// meshrun.1's sender, as a meshrun link is one: `bench/client`, one boot for the whole run (new
// each run), its messages numbered on across its connections. Each connection's messages have
// all been answered before the next opens.
struct Sender {
    std::string boot;
    std::uint64_t last = 0;  // the number of the last message sent
};

std::unique_ptr<Session> open_session(const Target& t, std::mt19937& rng) {
    static Sender sender{fmt::format("bench-{}-{:08x}", ::getpid(), static_cast<std::uint32_t>(rng())), 0};
    const std::uint32_t mask = static_cast<std::uint32_t>(rng());
    Fd fd = connect_to(t.port);
    std::optional<Conn> conn;
    if (t.tls) {
        conn.emplace(std::move(fd), *t.tls, "localhost");
    } else {
        conn.emplace(std::move(fd));
    }
    const std::string host = t.tls ? "localhost" : "127.0.0.1";
    const std::string rest = websocket_handshake(*conn, host, t.port, "signal", rng, t.meshrun1, sender.boot);
    auto s = t.meshrun1 ? std::make_unique<Session>(std::move(*conn), Speech::meshrun1, "buzz buzz buzz",
                                                    Messages::numbered("1", mask, sender.last), sender.last + 1)
                        : std::make_unique<Session>(std::move(*conn), Speech::websocket, "buzz buzz buzz",
                                                    Messages::fixed(masked_text_frame("1", mask)));
    s->reader.preload(rest);
    return s;
}

// Round trips on one connection, then the pipelined run on another (warmed up first).
struct Figures {
    RoundTrips rt;
    Pipelined pipe;
    long idle_kib = -1;  // the node's RSS before any load, when measured
};

// How much to measure, and where.
struct Counts {
    int warmup = 0, round_trips = 0;
    std::size_t pipelined = 0, window = 0;
    bool one_cpu = true;  // client and server on one CPU while measured (not with --pin)
};

Figures measure(const Target& t, pid_t server, std::mt19937& rng, const Counts& n) {
    Figures out;
    std::optional<OneCpu> here;
    if (n.one_cpu) here.emplace(server);
    {
        auto s = open_session(t, rng);
        out.rt = round_trips(*s, n.warmup, n.round_trips, server);
    }
    auto s = open_session(t, rng);
    s->reader.await(0);
    pipelined(*s, std::min<std::size_t>(n.pipelined / 10, 20000), n.window, 0);
    out.pipe = pipelined(*s, n.pipelined, n.window, server);
    return out;
}

// ---- generated .mesh files ---------------------------------------------------------------------

std::string buzzer(const std::string& name, std::uint16_t port, const std::string& chip) {
    return fmt::format(
        "node {} at 127.0.0.1:{} {{\n"
        "    pin horn = out {} 18\n"
        "    action buzz {{ horn = 1; ack \"buzz buzz buzz\" }}\n"
        "    on signal 1 -> buzz\n"
        "    on signal   -> {{ horn = 0; ack \"...\" }}\n"
        "}}\n",
        name, port, chip);
}

void write_file(const fs::path& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
    if (!out.flush()) fail(fmt::format("cannot write {}", path.string()));
}

class TempDir {
public:
    TempDir() {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ws_bench.XXXXXX";
        if (!::mkdtemp(tmpl.data())) fail_errno("mkdtemp");
        path_ = tmpl;
        copy_path(g_tmp_dir, tmpl);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
        g_tmp_dir[0] = '\0';
    }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

// ---- the report --------------------------------------------------------------------------------

struct Row {
    std::string figure, meshrun, reference, goal;
    double ratio = 0;  // meshrun / what the goal is measured against
    std::optional<bool> met;
};

std::string fixed(double v, int decimals) { return fmt::format("{:.{}f}", v, decimals); }

std::string thousands(double v) {
    const auto n = static_cast<long long>(v + 0.5);
    std::string s = std::to_string(n), out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (i > 0 && (s.size() - i) % 3 == 0) out.push_back(',');
        out.push_back(s[i]);
    }
    return out;
}

void print_table(const std::vector<Row>& rows) {
    std::size_t w[4] = {6, 7, 9, 4};
    for (const auto& r : rows) {
        w[0] = std::max(w[0], r.figure.size());
        w[1] = std::max(w[1], r.meshrun.size());
        w[2] = std::max(w[2], r.reference.size());
        w[3] = std::max(w[3], r.goal.size());
    }
    fmt::print("\n{:<{}}  {:>{}}  {:>{}}  {:<{}}  {:>7}  {}\n", "figure", w[0], "meshrun", w[1], "reference", w[2],
               "goal", w[3], "ratio", "result");
    fmt::print("{}\n", std::string(w[0] + w[1] + w[2] + w[3] + 7 + 8 + 10, '-'));
    for (const auto& r : rows)
        fmt::print("{:<{}}  {:>{}}  {:>{}}  {:<{}}  {:>6.2f}x  {}\n", r.figure, w[0], r.meshrun, w[1], r.reference,
                   w[2], r.goal, w[3], r.ratio, r.met ? (*r.met ? "PASS" : "MISS") : "-");
}

struct Options {
    bool quick = false;
    bool pin = false;
    std::string meshrun = meshrun::build_paths::meshrun;
    int nodes = 1000;
    std::size_t window = 64;
    bool nodes_set = false;
    std::string baseline;  // another meshrun binary, measured in the same run
    // The parts besides the references (raw TCP and plain websocket, always measured): --only.
    bool meshrun1 = true, tls = true, up = true;
};

void usage(std::FILE* to) {
    fmt::print(to,
               "usage: ws_bench [--quick] [--meshrun PATH] [--baseline PATH] [--nodes N] [--window W] [--pin]\n"
               "                [--ports LO-HI] [--only meshrun1,tls,up]\n"
               "\n"
               "  --quick         small counts (a smoke run of a few seconds)\n"
               "  --meshrun PATH  the meshrun binary (default: {})\n"
               "  --baseline PATH another meshrun build (the one a change replaces), measured in the\n"
               "                  same run: rows say whether this one is within 5% of it\n"
               "  --nodes N       nodes for `meshrun up` (default 1000; 50 with --quick)\n"
               "  --window W      messages in flight in the pipelined runs (default 64)\n"
               "  --pin           pin the client to one CPU and the servers to another (default: the\n"
               "                  client and the server it measures on one CPU, the client's)\n"
               "  --ports LO-HI   the nodes' ports from this range only (default: a node's port is the\n"
               "                  kernel's pick, the fleet's from 20000 to 32000)\n"
               "  --only LIST     of the parts meshrun1 (the node speaking meshrun.1), tls (a node with\n"
               "                  `tls`) and up (`meshrun up` of many nodes), only these (raw TCP and\n"
               "                  plain websocket, the references, are always measured)\n"
               "\n"
               "Prints each figure beside its reference measured in the same run (raw TCP on loopback,\n"
               "plain websocket) or its goal, and PASS or MISS. Exits 0 whether or not goals are met,\n"
               "1 if something could not run. The TLS node's certificates are made by {}.\n",
               meshrun::build_paths::meshrun, make_certs_script().string());
}

// One buzzer node under `meshrun run` of `binary`: plain websocket and, with `numbered`,
// meshrun.1 against the same node; its idle memory.
struct RunFigures {
    Figures plain, meshrun1;
    long idle_kib = 0;
};

RunFigures measure_run(const std::string& binary, const TempDir& tmp, const Pinning& pins, std::mt19937& rng,
                       const Counts& n, bool numbered) {
    RunFigures out;
    const std::uint16_t port = free_port();
    const fs::path file = tmp.path() / "buzzer.mesh";
    write_file(file, "# ws_bench: one buzzer\n" + buzzer("buzzer", port, "gpiochip0"));
    Child node;
    node.spawn({binary, "run", file.string(), "--node", "buzzer", "--sim", "--color", "never"}, pins.server);
    if (!node.wait_listening(1, std::chrono::seconds(15)))
        fail(node.why_not_listening("`meshrun run`", 15));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    out.idle_kib = rss_kib(node.pid());
    try {
        out.plain = measure(Target{port, false, nullptr}, node.pid(), rng, n);
        if (numbered) out.meshrun1 = measure(Target{port, true, nullptr}, node.pid(), rng, n);
    } catch (const Failure& e) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // its last words, if any
        fail(fmt::format("{}\n`meshrun run`'s last output:\n{}", e.what(), node.tail()));
    }
    node.stop();
    return out;
}

// The certificates of tests/lib/make_certs.sh, made into TMP/certs (in a few seconds at most:
// 60 s is its bound). Its output goes to a log file, shown when it fails. Run as a child of its
// own rather than by std::system(), which ignores SIGINT meanwhile: a Ctrl-C then still stops
// it and cleans up.
fs::path make_certs(const TempDir& tmp) {
    const fs::path dir = tmp.path() / "certs";
    const fs::path log = tmp.path() / "make_certs.log";
    const std::string script = make_certs_script().string(), dir_arg = dir.string();
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) fail_errno("cannot write " + log.string());
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(out);
        fail_errno("fork");
    }
    if (pid == 0) {
        ::setpgid(0, 0);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        ::dup2(out, STDOUT_FILENO);
        ::dup2(out, STDERR_FILENO);
        const char* argv[] = {"bash", script.c_str(), dir_arg.c_str(), nullptr};
        ::execvp("bash", const_cast<char* const*>(argv));
        ::_exit(127);
    }
    ::setpgid(pid, pid);
    register_child(pid);
    ::close(out);
    int status = 0;
    bool done = false;
    for (const auto deadline = Clock::now() + std::chrono::seconds(60); !done && Clock::now() < deadline;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) done = true;
        else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!done) {
        ::kill(-pid, SIGKILL);
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    unregister_child(pid);
    if (!done || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::ifstream in(log);
        std::stringstream text;
        text << in.rdbuf();
        const std::string why = !done ? "did not finish within 60 s" :
                                WIFEXITED(status) ? fmt::format("exited with status {}", WEXITSTATUS(status)) :
                                                    fmt::format("was killed by signal {}", WTERMSIG(status));
        fail(fmt::format("cannot make the TLS certificates: bash {} {} {}; its output:\n{}", script, dir_arg, why,
                         text.str()));
    }
    return dir;
}

// The same buzzer with `tls cert ... key ...` (no `ca`: the client trusts the test authority
// and checks the name `localhost`), plain websocket over TLS.
// The TLS node's figures, and OpenSSL's own beside them: the raw echo server over TLS.
struct TlsFigures {
    Figures node, openssl;
};

TlsFigures measure_tls(const std::string& binary, const TempDir& tmp, const Pinning& pins, std::mt19937& rng,
                       const Counts& n) {
    const fs::path certs = make_certs(tmp);
    const TlsClient client((certs / "ca.pem").string());
    TlsFigures both;
    {
        const EchoTls tls{(certs / "node.pem").string(), (certs / "node.key").string()};
        EchoServer echo(pins.server, &tls);
        const std::string msg(raw_size, 'x');
        std::optional<OneCpu> here;
        if (n.one_cpu) here.emplace(echo.pid());
        Session s(Conn(connect_to(echo.port()), client, "localhost"), Speech::raw, "", Messages::fixed(msg));
        both.openssl.rt = round_trips(s, n.warmup, n.round_trips, echo.pid());
    }
    const std::uint16_t port = free_port();
    const fs::path file = tmp.path() / "tls.mesh";
    const std::string tls_item =
        fmt::format("tls cert \"{}\" key \"{}\"\n", (certs / "node.pem").string(), (certs / "node.key").string());
    write_file(file, "# ws_bench: one buzzer over TLS\n" + tls_item + buzzer("buzzer", port, "gpiochip0"));
    Child node;
    node.spawn({binary, "run", file.string(), "--node", "buzzer", "--sim", "--color", "never"}, pins.server);
    if (!node.wait_listening(1, std::chrono::seconds(15)))
        fail(node.why_not_listening("`meshrun run` with tls", 15));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const long idle_kib = rss_kib(node.pid());
    try {
        both.node = measure(Target{port, false, &client}, node.pid(), rng, n);
        both.node.idle_kib = idle_kib;
    } catch (const Failure& e) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        fail(fmt::format("{}\n`meshrun run` (tls)'s last output:\n{}", e.what(), node.tail()));
    }
    node.stop();
    return both;
}

void print_figures(std::string_view what, const Figures& f, long idle_kib) {
    fmt::print("{}: round trip p50 {:.1f} us, p99 {:.1f} us (min {:.1f}, mean {:.1f}; CPU: client {:.1f} us, "
               "server {:.1f} us); pipelined {} msg/s, CPU per message: client {:.2f} us, server {:.2f} us, "
               "{:.1f} msg per wake-up{}\n",
               what, f.rt.p50_us, f.rt.p99_us, f.rt.min_us, f.rt.mean_us, f.rt.client_cpu_us, f.rt.server_cpu_us,
               thousands(f.pipe.msgs_per_s), f.pipe.client_cpu_us,
               f.pipe.server_cpu_us, f.pipe.per_wakeup,
               idle_kib >= 0 ? fmt::format("; idle RSS {:.2f} MiB", idle_kib / 1024.0) : std::string());
    std::fflush(stdout);
}

int run(const Options& opt) {
    Counts counts;
    counts.warmup = opt.quick ? 200 : 2000;
    counts.round_trips = opt.quick ? 2000 : 20000;
    counts.pipelined = opt.quick ? 20000 : 200000;
    counts.window = opt.window;
    const int nodes = opt.nodes_set ? opt.nodes : (opt.quick ? 50 : 1000);

    if (::access(opt.meshrun.c_str(), X_OK) != 0)
        fail(fmt::format("no executable meshrun at {} (build it, or pass --meshrun PATH)", opt.meshrun));

    // `meshrun up` of many nodes needs a descriptor per node: raise our soft limit (inherited).
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 1 << 16);
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }

    Pinning pins;
    if (opt.pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 2) {
            for (int c = 0; c < CPU_SETSIZE && pins.server < 0; ++c) {
                if (!CPU_ISSET(c, &set)) continue;
                (pins.client < 0 ? pins.client : pins.server) = c;
            }
        }
    }

    counts.one_cpu = pins.server < 0;

    fmt::print("ws_bench{}: meshrun {}\n", opt.quick ? " (quick)" : "", opt.meshrun);
    if (pins.server >= 0)
        fmt::print("client pinned to CPU {}, servers to CPU {}\n", pins.client, pins.server);
    else
        fmt::print("client and server on one CPU while measured{}\n", opt.pin ? " (--pin: fewer than 2 CPUs)" : "");
    {
        std::ifstream in("/proc/loadavg");
        std::string one, five;
        if (in >> one >> five)
            fmt::print("load average {} {} on {} CPUs (other work on the machine makes the figures noisy)\n", one,
                       five, std::thread::hardware_concurrency());
    }
    fmt::print("round trips: {} after {} warm-up; pipelined: {} messages, {} in flight\n", thousands(counts.round_trips),
               thousands(counts.warmup), thousands(static_cast<double>(counts.pipelined)), opt.window);
    std::fflush(stdout);

    std::mt19937 rng(std::random_device{}());

    // 1. The reference: raw TCP on loopback, a forked echo server. Forked before any thread.
    Figures raw;
    {
        EchoServer echo(pins.server);
        pin_self(pins.client);
        const std::string msg(raw_size, 'x');
        std::optional<OneCpu> here;
        if (counts.one_cpu) here.emplace(echo.pid());
        {
            Session s(Conn(connect_to(echo.port())), Speech::raw, "", Messages::fixed(msg));
            raw.rt = round_trips(s, counts.warmup, counts.round_trips, echo.pid());
        }
        {
            Session s(Conn(connect_to(echo.port())), Speech::raw, "", Messages::fixed(msg));
            raw.pipe = pipelined(s, counts.pipelined, opt.window, echo.pid());
        }
    }
    print_figures("raw TCP", raw, -1);

    TempDir tmp;

    // 2. One buzzer node under `meshrun run`: plain websocket, then meshrun.1.
    const RunFigures run_figures = measure_run(opt.meshrun, tmp, pins, rng, counts, opt.meshrun1);
    const Figures& ws = run_figures.plain;
    const Figures& m1 = run_figures.meshrun1;
    const long idle_kib = run_figures.idle_kib;
    print_figures("meshrun run, plain ws", ws, idle_kib);
    if (opt.meshrun1) print_figures("meshrun run, meshrun.1", m1, -1);

    // 3. The same over TLS.
    TlsFigures tls_both;
    const Figures& tls = tls_both.node;
    if (opt.tls) {
        tls_both = measure_tls(opt.meshrun, tmp, pins, rng, counts);
        const RoundTrips& o = tls_both.openssl.rt;
        fmt::print("raw TLS echo (OpenSSL on a blocking socket): round trip p50 {:.1f} us, p99 {:.1f} us (min {:.1f}, "
                   "mean {:.1f}; CPU: client {:.1f} us, server {:.1f} us)\n",
                   o.p50_us, o.p99_us, o.min_us, o.mean_us, o.client_cpu_us, o.server_cpu_us);
        print_figures("meshrun run, TLS (wss)", tls, tls.idle_kib);
    }

    std::optional<RunFigures> baseline;
    if (!opt.baseline.empty()) {
        if (::access(opt.baseline.c_str(), X_OK) != 0) fail(fmt::format("no executable --baseline at {}", opt.baseline));
        baseline = measure_run(opt.baseline, tmp, pins, rng, counts, false);
        print_figures(fmt::format("baseline {}, plain ws", opt.baseline), baseline->plain, baseline->idle_kib);
    }

    // 4. `meshrun up` of `nodes` buzzers, each on its own port and its own simulated chip.
    double up_s = 0;
    long up_kib = 0;
    if (opt.up) {
        const std::uint16_t base = free_port_range(nodes);
        std::string text = fmt::format("# ws_bench: {} buzzers on 127.0.0.1:{}..{}\n", nodes, base, base + nodes - 1);
        for (int i = 0; i < nodes; ++i)
            text += buzzer(fmt::format("buzzer-{}", i), static_cast<std::uint16_t>(base + i),
                           fmt::format("\"bench-{}\"", i));
        const fs::path file = tmp.path() / "fleet.mesh";
        write_file(file, text);
        Child fleet;
        fleet.spawn({opt.meshrun, "up", file.string(), "--color", "never"}, pins.server);
        if (!fleet.wait_listening(nodes, std::chrono::seconds(60)))
            fail(fleet.why_not_listening(fmt::format("`meshrun up` of {} nodes", nodes), 60));
        up_kib = rss_kib(fleet.pid());
        up_s = std::chrono::duration<double>(fleet.last_listening() - fleet.spawned_at()).count();
        // It serves: one round trip with the last node.
        try {
            const auto last = static_cast<std::uint16_t>(base + nodes - 1);
            auto s = open_session(Target{last, false, nullptr}, rng);
            round_trips(*s, 0, 1);
        } catch (const Failure& e) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            fail(fmt::format("{}\n`meshrun up`'s last output:\n{}", e.what(), fleet.tail()));
        }
        fleet.stop();
        fmt::print("meshrun up: {} nodes listening {:.3f} s after spawn, RSS then {:.1f} MiB\n", thousands(nodes),
                   up_s, up_kib / 1024.0);
    }

    const std::string n = thousands(nodes);
    std::vector<Row> rows;
    rows.push_back({"round trip p50 (us)", fixed(ws.rt.p50_us, 1), fixed(raw.rt.p50_us, 1) + " raw TCP",
                    "<= 1.3x raw TCP", ws.rt.p50_us / raw.rt.p50_us, ws.rt.p50_us <= 1.3 * raw.rt.p50_us});
    rows.push_back({"round trip p99 (us)", fixed(ws.rt.p99_us, 1), fixed(raw.rt.p99_us, 1) + " raw TCP", "-",
                    ws.rt.p99_us / raw.rt.p99_us, std::nullopt});
    rows.push_back({"pipelined (msg/s)", thousands(ws.pipe.msgs_per_s), thousands(raw.pipe.msgs_per_s) + " raw TCP",
                    ">= raw TCP", ws.pipe.msgs_per_s / raw.pipe.msgs_per_s, ws.pipe.msgs_per_s >= raw.pipe.msgs_per_s});
    rows.push_back({"server CPU per message (us)", fixed(ws.pipe.server_cpu_us, 2),
                    fixed(raw.pipe.server_cpu_us, 2) + " raw TCP", "<= 1 us", ws.pipe.server_cpu_us / 1.0,
                    ws.pipe.server_cpu_us <= 1.0});
    // meshrun.1 and TLS against plain websocket, measured just before them.
    if (opt.meshrun1) {
        rows.push_back({"meshrun.1: round trip p50 (us)", fixed(m1.rt.p50_us, 1), fixed(ws.rt.p50_us, 1) + " plain ws",
                        "<= 1.2x plain ws", m1.rt.p50_us / ws.rt.p50_us, m1.rt.p50_us <= 1.2 * ws.rt.p50_us});
        rows.push_back({"meshrun.1: pipelined (msg/s)", thousands(m1.pipe.msgs_per_s),
                        thousands(ws.pipe.msgs_per_s) + " plain ws", ">= 0.5x plain ws",
                        m1.pipe.msgs_per_s / ws.pipe.msgs_per_s,
                        m1.pipe.msgs_per_s >= 0.5 * ws.pipe.msgs_per_s});
        rows.push_back({"meshrun.1: server CPU (us/msg)", fixed(m1.pipe.server_cpu_us, 2),
                        fixed(ws.pipe.server_cpu_us, 2) + " plain ws", "-", m1.pipe.server_cpu_us / ws.pipe.server_cpu_us,
                        std::nullopt});
    }
    if (opt.tls) {
        rows.push_back({"TLS: round trip p50 (us)", fixed(tls.rt.p50_us, 1), fixed(ws.rt.p50_us, 1) + " plain ws",
                        "<= 1.3x plain ws", tls.rt.p50_us / ws.rt.p50_us, tls.rt.p50_us <= 1.3 * ws.rt.p50_us});
        // What TLS costs by itself: the raw echo's round trip over TLS less over TCP, added to
        // plain websocket's. No TLS server on this machine's OpenSSL goes below it.
        const double floor_us = ws.rt.p50_us + tls_both.openssl.rt.p50_us - raw.rt.p50_us;
        rows.push_back({"TLS: OpenSSL's floor, RT p50 (us)", fixed(floor_us, 1), fixed(ws.rt.p50_us, 1) + " plain ws",
                        "-", floor_us / ws.rt.p50_us, std::nullopt});
        rows.push_back({"TLS: pipelined (msg/s)", thousands(tls.pipe.msgs_per_s),
                        thousands(ws.pipe.msgs_per_s) + " plain ws",
                        ">= 0.25x plain ws", tls.pipe.msgs_per_s / ws.pipe.msgs_per_s,
                        tls.pipe.msgs_per_s >= 0.25 * ws.pipe.msgs_per_s});
        rows.push_back({"TLS: server CPU (us/msg)", fixed(tls.pipe.server_cpu_us, 2),
                        fixed(ws.pipe.server_cpu_us, 2) + " plain ws", "-", tls.pipe.server_cpu_us / ws.pipe.server_cpu_us,
                        std::nullopt});
    }
    rows.push_back({"idle RSS, meshrun run (MiB)", fixed(idle_kib / 1024.0, 2), "-", "<= 4 MiB",
                    idle_kib / 1024.0 / 4.0, idle_kib <= 4 * 1024});
    if (opt.up) {
        rows.push_back({fmt::format("up {} nodes: ready (s)", n), fixed(up_s, 3), "-", "<= 2 s", up_s / 2.0,
                        up_s <= 2.0});
        rows.push_back({fmt::format("up {} nodes: RSS (MiB)", n), fixed(up_kib / 1024.0, 1), "-", "<= 300 MiB",
                        up_kib / 1024.0 / 300.0, up_kib <= 300 * 1024});
    }
    if (baseline) {
        // A change keeps the node as fast as the build it replaces: within 5% on each.
        const Figures& b = baseline->plain;
        rows.push_back({"round trip p50 vs baseline", fixed(ws.rt.p50_us, 1), fixed(b.rt.p50_us, 1) + " baseline",
                        "<= 1.05x", ws.rt.p50_us / b.rt.p50_us, ws.rt.p50_us <= 1.05 * b.rt.p50_us});
        rows.push_back({"pipelined vs baseline", thousands(ws.pipe.msgs_per_s), thousands(b.pipe.msgs_per_s) + " baseline",
                        ">= 0.95x", ws.pipe.msgs_per_s / b.pipe.msgs_per_s, ws.pipe.msgs_per_s >= 0.95 * b.pipe.msgs_per_s});
        rows.push_back({"server CPU vs baseline", fixed(ws.pipe.server_cpu_us, 2),
                        fixed(b.pipe.server_cpu_us, 2) + " baseline",
                        "<= 1.05x", ws.pipe.server_cpu_us / b.pipe.server_cpu_us,
                        ws.pipe.server_cpu_us <= 1.05 * b.pipe.server_cpu_us});
    }
    print_table(rows);
    fmt::print("\nratio: the figure / its reference where there is one (raw TCP, plain ws, baseline), else the figure / "
               "the goal.\n");
    if (opt.quick) fmt::print("(--quick: small counts, a smoke run; the figures are rough)\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&](std::string_view name) -> std::string {
            if (i + 1 >= argc) {
                fmt::print(stderr, "ws_bench: {} needs a value\n", name);
                std::exit(2);
            }
            return argv[++i];
        };
        try {
            if (a == "--quick") opt.quick = true;
            else if (a == "--pin") opt.pin = true;
            else if (a == "--meshrun") opt.meshrun = value(a);
            else if (a == "--baseline") opt.baseline = value(a);
            else if (a == "--nodes") {
                opt.nodes = std::stoi(value(a));
                opt.nodes_set = true;
                if (opt.nodes < 1 || opt.nodes > 10000) throw std::out_of_range("nodes");
            } else if (a == "--window") {
                opt.window = static_cast<std::size_t>(std::stoul(value(a)));
                if (opt.window < 1 || opt.window > 4096) throw std::out_of_range("window");
            } else if (a == "--only") {
                const std::string list = value(a);
                opt.meshrun1 = opt.tls = opt.up = false;
                std::size_t at = 0;
                while (at <= list.size()) {
                    const std::size_t comma = std::min(list.find(',', at), list.size());
                    const std::string part = list.substr(at, comma - at);
                    if (part == "meshrun1") opt.meshrun1 = true;
                    else if (part == "tls") opt.tls = true;
                    else if (part == "up") opt.up = true;
                    else {
                        fmt::print(stderr, "ws_bench: unknown part `{}` in --only (meshrun1, tls, up)\n", part);
                        return 2;
                    }
                    at = comma + 1;
                }
            } else if (a == "--ports") {
                const std::string v = value(a);
                const auto dash = v.find('-');
                if (dash == std::string::npos) throw std::invalid_argument("ports");
                std::size_t used = 0;
                g_ports.lo = std::stoi(v.substr(0, dash), &used);
                if (used != dash) throw std::invalid_argument("ports");
                g_ports.hi = std::stoi(v.substr(dash + 1), &used);
                if (used != v.size() - dash - 1 || g_ports.lo < 1024 || g_ports.hi > 65535 || g_ports.lo > g_ports.hi)
                    throw std::out_of_range("ports");
                g_ports.given = true;
            } else if (a == "-h" || a == "--help") {
                usage(stdout);
                return 0;
            } else {
                fmt::print(stderr, "ws_bench: unknown option {}\n", a);
                usage(stderr);
                return 2;
            }
        } catch (const std::logic_error&) {
            fmt::print(stderr,
                       "ws_bench: bad value for {} (--nodes 1..10000, --window 1..4096, --ports LO-HI within "
                       "1024-65535)\n",
                       a);
            return 2;
        }
    }

    std::signal(SIGPIPE, SIG_IGN);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, on_fatal_signal);

    try {
        return run(opt);
    } catch (const std::exception& e) {  // the children are stopped by the destructors on the way here
        std::fflush(stdout);
        fmt::print(stderr, "ws_bench: error: {}\n", e.what());
        return 1;
    }
}
