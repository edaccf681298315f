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

#ifdef MESHRUN_LIBSYSTEMD_VERSION
#include <systemd/sd-daemon.h>
#endif

namespace meshrun::tools::systemd {

#ifdef MESHRUN_LIBSYSTEMD_VERSION

bool notify(std::string_view state) { return sd_notify(0, std::string(state).c_str()) > 0; }

std::string_view notify_backend() { return "sd_notify from libsystemd " MESHRUN_LIBSYSTEMD_VERSION; }

#else

// sd_notify(3)'s protocol: one datagram on an AF_UNIX socket; `@` starts an abstract address.
bool notify(std::string_view state) {
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

std::string_view notify_backend() {
#ifdef MESHRUN_STATIC
    return "sd_notify built in (static binary)";
#else
    return "sd_notify built in (no libsystemd at build time)";
#endif
}

#endif

bool is_journal(int fd) {
    const char* stream = std::getenv("JOURNAL_STREAM");
    std::uintmax_t device = 0, inode = 0;
    if (!stream || std::sscanf(stream, "%" SCNuMAX ":%" SCNuMAX, &device, &inode) != 2) return false;
    struct stat st {};
    return ::fstat(fd, &st) == 0 && st.st_dev == device && st.st_ino == inode;
}

void StopNotifier::fleet_stopping() { notify("STOPPING=1\nSTATUS=stopping: delivering what the links hold, then closing"); }

}  // namespace meshrun::tools::systemd
