#include "systemd.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cinttypes>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#ifdef MESHRUN_LIBSYSTEMD_VERSION
#include <systemd/sd-daemon.h>
#endif

namespace meshrun::tools::systemd {

namespace {

#ifdef MESHRUN_LIBSYSTEMD_VERSION

bool send(const std::string& state) { return sd_notify(0, state.c_str()) > 0; }

#else

// sd_notify(3)'s protocol: one datagram on an AF_UNIX socket; `@` starts an abstract address.
bool send(const std::string& state) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (!path || (path[0] != '/' && path[0] != '@')) return false;
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::size_t length = std::strlen(path);
    if (length < 2 || length >= sizeof address.sun_path) return false;
    std::memcpy(address.sun_path, path, length);
    if (path[0] == '@') address.sun_path[0] = '\0';
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    const auto size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
    const ssize_t sent =
        ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address), size);
    ::close(fd);
    return sent == static_cast<ssize_t>(state.size());
}

#endif

// A send waits while the manager's socket is full (a manager that reads nothing): the datagrams
// go out from a thread of their own, in order, so that the node never waits on one. Never
// destroyed: at exit its thread may still wait in a send, which the exit ends.
class Sender {
public:
    void post(std::string state) {
        std::lock_guard lock(mutex_);
        if (pending_.size() >= max_pending) return;  // the manager has not read the last ones either
        pending_.push_back(std::move(state));
        if (!started_) {
            started_ = true;
            std::thread([this] { run(); }).detach();
        }
        changed_.notify_all();
    }

    void flush(std::chrono::milliseconds within) {
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, within, [this] { return pending_.empty() && !sending_; });
    }

private:
    static constexpr std::size_t max_pending = 16;

    void run() {
        std::unique_lock lock(mutex_);
        for (;;) {
            changed_.wait(lock, [this] { return !pending_.empty(); });
            const std::string state = std::move(pending_.front());
            pending_.pop_front();
            sending_ = true;
            lock.unlock();
            send(state);
            lock.lock();
            sending_ = false;
            changed_.notify_all();
        }
    }

    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::string> pending_;
    bool started_ = false, sending_ = false;
};

Sender& sender() {
    static Sender* const instance = new Sender;
    return *instance;
}

}  // namespace

void notify(std::string_view state) {
    if (std::getenv("NOTIFY_SOCKET")) sender().post(std::string(state));
}

void flush_notifications(std::chrono::milliseconds within) {
    if (std::getenv("NOTIFY_SOCKET")) sender().flush(within);
}

std::string_view notify_backend() {
#if defined(MESHRUN_LIBSYSTEMD_VERSION)
    return "sd_notify from libsystemd " MESHRUN_LIBSYSTEMD_VERSION;
#elif defined(MESHRUN_STATIC)
    return "sd_notify built in (static binary)";
#else
    return "sd_notify built in (no libsystemd at build time)";
#endif
}

bool is_journal(int fd) {
    const char* stream = std::getenv("JOURNAL_STREAM");
    std::uintmax_t device = 0, inode = 0;
    int end = 0;
    if (!stream || std::sscanf(stream, "%" SCNuMAX ":%" SCNuMAX "%n", &device, &inode, &end) != 2 || stream[end] != '\0')
        return false;
    struct stat st {};
    return ::fstat(fd, &st) == 0 && st.st_dev == device && st.st_ino == inode;
}

void StopNotifier::fleet_stopping() { notify("STOPPING=1\nSTATUS=stopping: delivering what the links hold, then closing"); }

}  // namespace meshrun::tools::systemd
