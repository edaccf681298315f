// meshrun as a systemd service: readiness and stopping told to the service manager (sd_notify(3)),
// and whether a stream is the journal's. The engine knows nothing of systemd: the command line
// tells the manager once Fleet::start() returns, and an observer tells it when the fleet stops.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "meshrun/engine/observer.hpp"

namespace meshrun::tools::systemd {

// Sends `state` ("READY=1\nSTATUS=...", newline-separated assignments) to the service manager
// at $NOTIFY_SOCKET (a path, or `@name` in the abstract namespace); without NOTIFY_SOCKET, nothing.
// Built either on libsystemd's sd_notify (a dynamic binary) or on a datagram of its own (a static
// one: Debian has no static libsystemd), by the same protocol. It never waits: the datagrams go
// out in order from a thread of their own, so that a manager that reads nothing cannot stop the
// node (16 at most wait; later ones are dropped).
void notify(std::string_view state);
// Waits until what notify() was given is sent, or `within` passes: before the process exits.
void flush_notifications(std::chrono::milliseconds within);

// Which of the two notify() is: `sd_notify from libsystemd 252`, or `sd_notify built in (...)`.
std::string_view notify_backend();

// Whether `fd` is a stream to the journal: $JOURNAL_STREAM names its device:inode (systemd.exec(5)).
bool is_journal(int fd);

// Tells the service manager STOPPING=1 as the fleet begins to stop.
class StopNotifier final : public engine::Observer {
public:
    void fleet_stopping() override;
};

}  // namespace meshrun::tools::systemd
