// ws_bench: meshrun's websocket node on loopback, next to raw TCP measured in the same run,
// and `meshrun up` of a generated 1,000-node fleet.
//
//   ws_bench [--quick] [--meshrun PATH] [--nodes N] [--window W] [--pin]
//
// 1. Reference: a forked raw TCP echo server (16-byte messages, one write per message):
//    round trip p50/p99 and pipelined messages/s, plus its CPU per message.
// 2. `meshrun run FILE --node buzzer --sim` of a generated buzzer file, driven by a client
//    written on raw sockets (its own websocket handshake and masked frames, so that it costs
//    next to nothing): round trip p50/p99 of `1` -> "buzz buzz buzz", pipelined messages/s,
//    the node's CPU per message (utime+stime from /proc/PID/stat) and its idle RSS.
// 3. `meshrun up` of N buzzers (1,000) on 127.0.0.1: time from spawn to the last
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

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
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
#include <unistd.h>

#ifndef MESHRUN_BIN
#define MESHRUN_BIN "build/tools/meshrun"
#endif

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

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
std::array<char, 4096> g_tmp_file{};  // the generated files, removed by the signal handler too
std::array<char, 4096> g_tmp_file2{};
std::array<char, 4096> g_tmp_dir{};

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
    if (g_tmp_file[0]) ::unlink(g_tmp_file.data());
    if (g_tmp_file2[0]) ::unlink(g_tmp_file2.data());
    if (g_tmp_dir[0]) ::rmdir(g_tmp_dir.data());
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
                if (line.find("listening on ws://") != std::string_view::npos) {
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

// A port that is free right now (the kernel's pick), for a child to listen on.
std::uint16_t free_port() {
    Fd fd = listen_on(0);
    if (fd.get() < 0) fail_errno("bind 127.0.0.1:0");
    return local_port(fd.get());
}

// The first of `count` consecutive ports from 20000 on that can all be bound now.
std::uint16_t free_port_range(int count) {
    for (int base = 20000; base + count <= 32000; base += 1000) {
        bool all = true;
        for (int p = base; p < base + count && all; ++p) all = listen_on(static_cast<std::uint16_t>(p)).get() >= 0;
        if (all) return static_cast<std::uint16_t>(base);
    }
    fail(fmt::format("no {} consecutive free ports between 20000 and 32000", count));
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

void write_all(int fd, const char* data, std::size_t len) {
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
std::size_t read_some(int fd, char* into, std::size_t cap) {
    while (true) {
        const ssize_t n = ::read(fd, into, cap);
        if (n > 0) return static_cast<std::size_t>(n);
        if (n == 0) fail("the server closed the connection");
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) fail("no reply within 10 s");
        fail_errno("read");
    }
}

// ---- the raw TCP echo server (a forked process) ------------------------------------------------

constexpr std::size_t raw_size = 16;

// Echoes each complete 16-byte message with its own write, like a server that answers each
// message on its own. Serves up to 4 connections one after another, then exits.
[[noreturn]] void echo_server(int listener) {
    static char buf[65536];
    for (int c = 0; c < 4; ++c) {
        const int fd = ::accept(listener, nullptr, nullptr);
        if (fd < 0) ::_exit(1);
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::size_t have = 0;
        while (true) {
            const ssize_t n = ::read(fd, buf + have, sizeof buf - have);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            have += static_cast<std::size_t>(n);
            std::size_t at = 0;
            bool ok = true;
            for (; have - at >= raw_size && ok; at += raw_size) {
                std::size_t done = 0;
                while (done < raw_size) {
                    const ssize_t w = ::write(fd, buf + at + done, raw_size - done);
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
        ::close(fd);
    }
    ::_exit(0);
}

class EchoServer {
public:
    EchoServer(int cpu) {
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
            echo_server(listener.get());
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

// Reads replies and counts them: fixed 16-byte messages, or websocket frames from a server
// (unmasked) whose text payload must equal `expected`.
class ReplyReader {
public:
    ReplyReader(int fd, bool websocket, std::string expected)
        : fd_(fd), websocket_(websocket), expected_(std::move(expected)), buf_(1 << 20) {}

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
        end_ += read_some(fd_, buf_.data() + end_, buf_.size() - end_);
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
        if (!websocket_) {
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
                if (payload != expected_)
                    fail(fmt::format("unexpected reply \"{}\" (expected \"{}\")", payload, expected_));
                ++replies;
            } else if (opcode != 0x9 && opcode != 0xA) {
                fail(fmt::format("unexpected websocket opcode {}", opcode));
            }
            begin_ += header + static_cast<std::size_t>(len);
        }
        return replies;
    }

    int fd_;
    bool websocket_;
    std::string expected_;
    std::vector<char> buf_;
    std::size_t begin_ = 0, end_ = 0;
};

// A client-to-server websocket text frame: FIN, masked (as RFC 6455 requires of a client).
std::string masked_text_frame(std::string_view payload, std::uint32_t mask) {
    std::string f;
    f.push_back(static_cast<char>(0x81));
    if (payload.size() < 126) {
        f.push_back(static_cast<char>(0x80 | payload.size()));
    } else {
        f.push_back(static_cast<char>(0x80 | 126));
        f.push_back(static_cast<char>(payload.size() >> 8));
        f.push_back(static_cast<char>(payload.size() & 0xff));
    }
    const char key[4] = {static_cast<char>(mask >> 24), static_cast<char>(mask >> 16), static_cast<char>(mask >> 8),
                         static_cast<char>(mask)};
    f.append(key, 4);
    for (std::size_t i = 0; i < payload.size(); ++i) f.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
    return f;
}

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

// The opening handshake of ws://127.0.0.1:PORT/PATH; returns the bytes read past the response.
std::string websocket_handshake(int fd, std::uint16_t port, const std::string& path, std::mt19937& rng) {
    unsigned char nonce[16];
    for (auto& b : nonce) b = static_cast<unsigned char>(rng());
    const std::string key = base64(nonce, sizeof nonce);
    const std::string req = fmt::format(
        "GET /{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        path, port, key);
    write_all(fd, req.data(), req.size());
    std::string res;
    char buf[4096];
    std::size_t end;
    while ((end = res.find("\r\n\r\n")) == std::string::npos) {
        if (res.size() > 65536) fail("the handshake response has no end");
        res.append(buf, read_some(fd, buf, sizeof buf));
    }
    const std::string head = res.substr(0, end + 2);
    const std::string status = head.substr(0, head.find("\r\n"));
    if (status.rfind("HTTP/1.1 101", 0) != 0) fail(fmt::format("the websocket handshake was refused: {}", status));
    const std::string lhead = lower(head);
    const auto at = lhead.find("\r\nsec-websocket-accept:");
    if (at == std::string::npos) fail("the handshake response has no Sec-WebSocket-Accept");
    std::size_t v = at + 23;
    while (v < head.size() && head[v] == ' ') ++v;
    const std::string accept = head.substr(v, head.find("\r\n", v) - v);
    if (accept != websocket_accept(key)) fail("the handshake response has a wrong Sec-WebSocket-Accept");
    return res.substr(end + 4);
}

struct RoundTrips {
    double p50_us = 0, p99_us = 0, min_us = 0, mean_us = 0;
};

// Sends one message, waits for its reply; `warmup` untimed, then `count` timed.
RoundTrips round_trips(int fd, ReplyReader& reader, const std::string& msg, int warmup, int count) {
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(count));
    const auto deadline = Clock::now() + phase_timeout;
    for (int i = 0; i < warmup + count; ++i) {
        const auto t0 = Clock::now();
        write_all(fd, msg.data(), msg.size());
        reader.await(1);
        const auto t1 = Clock::now();
        if (i >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        if (t1 > deadline) fail("the round trips took longer than 120 s");
    }
    std::sort(us.begin(), us.end());
    RoundTrips r;
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
    double server_cpu_us = -1;    // per message, when the server's pid is known
    double per_wakeup = -1;       // messages the server handled each time it woke up
};

// Keeps `window` messages in flight: each time replies come, as many new messages go out, in
// one write. Counts `total` replies; reads the server's CPU time around the run.
Pipelined pipelined(int fd, ReplyReader& reader, const std::string& msg, std::size_t total, std::size_t window,
                    pid_t server) {
    std::string batch;
    for (std::size_t i = 0; i < window; ++i) batch += msg;
    const double cpu0 = server > 0 ? cpu_seconds(server) : 0;
    const long wake0 = server > 0 ? wakeups(server) : 0;
    const auto t0 = Clock::now();
    const auto deadline = t0 + phase_timeout;
    std::size_t sent = std::min(window, total), received = 0;
    write_all(fd, batch.data(), sent * msg.size());
    while (received < total) {
        const std::size_t got = reader.read();
        received += got;
        const std::size_t more = std::min(got, total - sent);
        if (more > 0) {
            write_all(fd, batch.data(), more * msg.size());
            sent += more;
        }
        if (Clock::now() > deadline) fail("the pipelined run took longer than 120 s");
    }
    const auto t1 = Clock::now();
    Pipelined p;
    p.msgs_per_s = static_cast<double>(total) / std::chrono::duration<double>(t1 - t0).count();
    if (server > 0) {
        p.server_cpu_us = (cpu_seconds(server) - cpu0) * 1e6 / static_cast<double>(total);
        p.per_wakeup = static_cast<double>(total) / static_cast<double>(std::max(1L, wakeups(server) - wake0));
    }
    return p;
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
        g_tmp_dir[0] = g_tmp_file[0] = g_tmp_file2[0] = '\0';
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
               "goal", w[3], "ratio", "goal met");
    fmt::print("{}\n", std::string(w[0] + w[1] + w[2] + w[3] + 7 + 8 + 10, '-'));
    for (const auto& r : rows)
        fmt::print("{:<{}}  {:>{}}  {:>{}}  {:<{}}  {:>6.2f}x  {}\n", r.figure, w[0], r.meshrun, w[1], r.reference,
                   w[2], r.goal, w[3], r.ratio, r.met ? (*r.met ? "yes" : "NO") : "-");
}

struct Options {
    bool quick = false;
    bool pin = false;
    std::string meshrun = MESHRUN_BIN;
    int nodes = 1000;
    std::size_t window = 64;
    bool nodes_set = false;
    std::string baseline;  // another meshrun binary, measured in the same run
};

void usage(std::FILE* to) {
    fmt::print(to,
               "usage: ws_bench [--quick] [--meshrun PATH] [--baseline PATH] [--nodes N] [--window W] [--pin]\n"
               "\n"
               "  --quick         small counts (a smoke run of a few seconds)\n"
               "  --meshrun PATH  the meshrun binary (default: {})\n"
               "  --baseline PATH another meshrun build (the one a change replaces), measured in the\n"
               "                  same run: rows say whether this one is within 5% of it\n"
               "  --nodes N       nodes for `meshrun up` (default 1000; 50 with --quick)\n"
               "  --window W      messages in flight in the pipelined runs (default 64)\n"
               "  --pin           pin the client to one CPU and the servers to another (default: the\n"
               "                  scheduler places them; pinned runs suffer more from other load)\n"
               "\n"
               "Prints each figure beside its reference measured in the same run (raw TCP on loopback)\n"
               "or its goal. Exits 0 whether or not goals are met, 1 if something could not run.\n",
               MESHRUN_BIN);
}

// One buzzer node under `meshrun run` of `binary`: round trips, pipelined messages, idle memory.
struct RunFigures {
    RoundTrips rt;
    Pipelined pipe;
    long idle_kib = 0;
};

RunFigures measure_run(const std::string& binary, const TempDir& tmp, const Pinning& pins, std::mt19937& rng, int warmup,
                       int rt_count, std::size_t pipe_total, std::size_t window) {
    RunFigures out;
    RoundTrips& ws_rt = out.rt;
    Pipelined& ws_pipe = out.pipe;
    long& idle_kib = out.idle_kib;
    const std::uint16_t port = free_port();
    const fs::path file = tmp.path() / "buzzer.mesh";
    copy_path(g_tmp_file, file.string());
    write_file(file, "# ws_bench: one buzzer\n" + buzzer("buzzer", port, "gpiochip0"));
    Child node;
    node.spawn({binary, "run", file.string(), "--node", "buzzer", "--sim", "--color", "never"}, pins.server);
    if (!node.wait_listening(1, std::chrono::seconds(15)))
        fail(node.why_not_listening("`meshrun run`", 15));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    idle_kib = rss_kib(node.pid());

    const std::string frame = masked_text_frame("1", static_cast<std::uint32_t>(rng()));
    try {
        {
            Fd fd = connect_to(port);
            ReplyReader reader(fd.get(), true, "buzz buzz buzz");
            reader.preload(websocket_handshake(fd.get(), port, "signal", rng));
            ws_rt = round_trips(fd.get(), reader, frame, warmup, rt_count);
        }
        Fd fd = connect_to(port);
        ReplyReader reader(fd.get(), true, "buzz buzz buzz");
        reader.preload(websocket_handshake(fd.get(), port, "signal", rng));
        reader.await(0);
        // Warm this connection up, then the measured run.
        pipelined(fd.get(), reader, frame, std::min<std::size_t>(pipe_total / 10, 20000), window, 0);
        ws_pipe = pipelined(fd.get(), reader, frame, pipe_total, window, node.pid());
    } catch (const Failure& e) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // its last words, if any
        fail(fmt::format("{}\n`meshrun run`'s last output:\n{}", e.what(), node.tail()));
    }
    node.stop();
    return out;
}

int run(const Options& opt) {
    const int warmup = opt.quick ? 200 : 2000;
    const int rt_count = opt.quick ? 2000 : 20000;
    const std::size_t pipe_total = opt.quick ? 20000 : 200000;
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

    fmt::print("ws_bench{}: meshrun {}\n", opt.quick ? " (quick)" : "", opt.meshrun);
    if (pins.server >= 0)
        fmt::print("client pinned to CPU {}, servers to CPU {}\n", pins.client, pins.server);
    else
        fmt::print("not pinned to CPUs{}\n", opt.pin ? " (fewer than 2)" : "");
    {
        std::ifstream in("/proc/loadavg");
        std::string one, five;
        if (in >> one >> five)
            fmt::print("load average {} {} on {} CPUs (other work on the machine makes the figures noisy)\n", one,
                       five, std::thread::hardware_concurrency());
    }
    fmt::print("round trips: {} after {} warm-up; pipelined: {} messages, {} in flight\n", thousands(rt_count),
               thousands(warmup), thousands(static_cast<double>(pipe_total)), opt.window);
    std::fflush(stdout);

    std::mt19937 rng(std::random_device{}());

    // 1. The reference: raw TCP on loopback, a forked echo server. Forked before any thread.
    RoundTrips raw_rt;
    Pipelined raw_pipe;
    {
        EchoServer echo(pins.server);
        pin_self(pins.client);
        const std::string msg(raw_size, 'x');
        {
            Fd fd = connect_to(echo.port());
            ReplyReader reader(fd.get(), false, "");
            raw_rt = round_trips(fd.get(), reader, msg, warmup, rt_count);
        }
        {
            Fd fd = connect_to(echo.port());
            ReplyReader reader(fd.get(), false, "");
            raw_pipe = pipelined(fd.get(), reader, msg, pipe_total, opt.window, echo.pid());
        }
    }
    fmt::print("raw TCP:  round trip p50 {:.1f} us, p99 {:.1f} us (min {:.1f}, mean {:.1f}); "
               "pipelined {} msg/s, server CPU {:.2f} us/msg, {:.1f} msg per wake-up\n",
               raw_rt.p50_us, raw_rt.p99_us, raw_rt.min_us, raw_rt.mean_us, thousands(raw_pipe.msgs_per_s),
               raw_pipe.server_cpu_us, raw_pipe.per_wakeup);
    std::fflush(stdout);

    TempDir tmp;

    // 2. One buzzer node under `meshrun run`.
    RunFigures run_figures = measure_run(opt.meshrun, tmp, pins, rng, warmup, rt_count, pipe_total, opt.window);
    const RoundTrips& ws_rt = run_figures.rt;
    const Pipelined& ws_pipe = run_figures.pipe;
    const long idle_kib = run_figures.idle_kib;
    std::optional<RunFigures> baseline;
    if (!opt.baseline.empty()) {
        if (::access(opt.baseline.c_str(), X_OK) != 0) fail(fmt::format("no executable --baseline at {}", opt.baseline));
        baseline = measure_run(opt.baseline, tmp, pins, rng, warmup, rt_count, pipe_total, opt.window);
        fmt::print("baseline {}: round trip p50 {:.1f} us; pipelined {} msg/s, server CPU {:.2f} us/msg; idle RSS {:.2f} MiB\n",
                   opt.baseline, baseline->rt.p50_us, thousands(baseline->pipe.msgs_per_s), baseline->pipe.server_cpu_us,
                   baseline->idle_kib / 1024.0);
    }
    fmt::print("meshrun run: round trip p50 {:.1f} us, p99 {:.1f} us (min {:.1f}, mean {:.1f}); "
               "pipelined {} msg/s, server CPU {:.2f} us/msg, {:.1f} msg per wake-up; idle RSS {:.2f} MiB\n",
               ws_rt.p50_us, ws_rt.p99_us, ws_rt.min_us, ws_rt.mean_us, thousands(ws_pipe.msgs_per_s),
               ws_pipe.server_cpu_us, ws_pipe.per_wakeup, idle_kib / 1024.0);
    std::fflush(stdout);

    // 3. `meshrun up` of `nodes` buzzers, each on its own port and its own simulated chip.
    double up_s = 0;
    long up_kib = 0;
    {
        const std::uint16_t base = free_port_range(nodes);
        std::string text = fmt::format("# ws_bench: {} buzzers on 127.0.0.1:{}..{}\n", nodes, base, base + nodes - 1);
        for (int i = 0; i < nodes; ++i)
            text += buzzer(fmt::format("buzzer-{}", i), static_cast<std::uint16_t>(base + i),
                           fmt::format("\"bench-{}\"", i));
        const fs::path file = tmp.path() / "fleet.mesh";
        copy_path(g_tmp_file2, file.string());
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
            Fd fd = connect_to(last);
            ReplyReader reader(fd.get(), true, "buzz buzz buzz");
            reader.preload(websocket_handshake(fd.get(), last, "signal", rng));
            round_trips(fd.get(), reader, masked_text_frame("1", static_cast<std::uint32_t>(rng())), 0, 1);
        } catch (const Failure& e) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            fail(fmt::format("{}\n`meshrun up`'s last output:\n{}", e.what(), fleet.tail()));
        }
        fleet.stop();
    }
    fmt::print("meshrun up: {} nodes listening {:.3f} s after spawn, RSS then {:.1f} MiB\n", thousands(nodes), up_s,
               up_kib / 1024.0);

    const std::string n = thousands(nodes);
    std::vector<Row> rows;
    rows.push_back({"round trip p50 (us)", fixed(ws_rt.p50_us, 1), fixed(raw_rt.p50_us, 1) + " raw TCP",
                    "<= 1.3x raw TCP", ws_rt.p50_us / raw_rt.p50_us, ws_rt.p50_us <= 1.3 * raw_rt.p50_us});
    rows.push_back({"round trip p99 (us)", fixed(ws_rt.p99_us, 1), fixed(raw_rt.p99_us, 1) + " raw TCP", "-",
                    ws_rt.p99_us / raw_rt.p99_us, std::nullopt});
    rows.push_back({"pipelined (msg/s)", thousands(ws_pipe.msgs_per_s), thousands(raw_pipe.msgs_per_s) + " raw TCP",
                    ">= raw TCP", ws_pipe.msgs_per_s / raw_pipe.msgs_per_s, ws_pipe.msgs_per_s >= raw_pipe.msgs_per_s});
    rows.push_back({"server CPU per message (us)", fixed(ws_pipe.server_cpu_us, 2),
                    fixed(raw_pipe.server_cpu_us, 2) + " raw TCP", "<= 1 us", ws_pipe.server_cpu_us / 1.0,
                    ws_pipe.server_cpu_us <= 1.0});
    rows.push_back({"idle RSS, meshrun run (MiB)", fixed(idle_kib / 1024.0, 2), "-", "<= 4 MiB",
                    idle_kib / 1024.0 / 4.0, idle_kib <= 4 * 1024});
    rows.push_back({fmt::format("up {} nodes: ready (s)", n), fixed(up_s, 3), "-", "<= 2 s", up_s / 2.0,
                    up_s <= 2.0});
    rows.push_back({fmt::format("up {} nodes: RSS (MiB)", n), fixed(up_kib / 1024.0, 1), "-", "<= 300 MiB",
                    up_kib / 1024.0 / 300.0, up_kib <= 300 * 1024});
    if (baseline) {
        // A change keeps the node as fast as the build it replaces: within 5% on each.
        rows.push_back({"round trip p50 vs baseline", fixed(ws_rt.p50_us, 1), fixed(baseline->rt.p50_us, 1) + " baseline",
                        "<= 1.05x", ws_rt.p50_us / baseline->rt.p50_us, ws_rt.p50_us <= 1.05 * baseline->rt.p50_us});
        rows.push_back({"pipelined vs baseline", thousands(ws_pipe.msgs_per_s),
                        thousands(baseline->pipe.msgs_per_s) + " baseline", ">= 0.95x",
                        ws_pipe.msgs_per_s / baseline->pipe.msgs_per_s, ws_pipe.msgs_per_s >= 0.95 * baseline->pipe.msgs_per_s});
        rows.push_back({"server CPU vs baseline", fixed(ws_pipe.server_cpu_us, 2),
                        fixed(baseline->pipe.server_cpu_us, 2) + " baseline", "<= 1.05x",
                        ws_pipe.server_cpu_us / baseline->pipe.server_cpu_us,
                        ws_pipe.server_cpu_us <= 1.05 * baseline->pipe.server_cpu_us});
    }
    print_table(rows);
    fmt::print("\nratio: meshrun / reference for the first three rows, meshrun / goal for the others.\n");
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
            } else if (a == "-h" || a == "--help") {
                usage(stdout);
                return 0;
            } else {
                fmt::print(stderr, "ws_bench: unknown option {}\n", a);
                usage(stderr);
                return 2;
            }
        } catch (const std::logic_error&) {
            fmt::print(stderr, "ws_bench: bad value for {} (--nodes 1..10000, --window 1..4096)\n", a);
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
