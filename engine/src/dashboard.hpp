// What the dashboard shows (docs/dashboard.md): an observer that keeps each pin's level, each
// variable's value, each channel's count and last messages, each rule's firings and each link's state, and says what
// changed since it was last asked, as the page's JSON messages. Light: no Asio here; the server
// that sends these messages is dashboard_server.hpp.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "meshrun/engine/graph.hpp"
#include "meshrun/engine/observer.hpp"

namespace meshrun::engine {

class DashboardHub final : public Observer {
public:
    static constexpr std::size_t last_kept = 5;     // a channel's last messages
    static constexpr std::size_t last_bytes = 200;  // each cut to this

    // `here`: per graph node, whether it runs in this process (the others have no state).
    DashboardHub(const Graph& graph, std::vector<bool> here);

    // The `graph` message: per graph node, where it listens ("" for none) and whether its pins are
    // simulated (a click may drive them).
    std::string graph_message(const std::vector<std::string>& addresses, const std::vector<bool>& simulated,
                              bool secret) const;
    // A pin's level as it was when the node started (later ones come as events).
    void set_pin(int node, int pin, int level);
    // The whole state, as a `state` message with "full": true.
    std::string full_state() const;
    // What changed since the last call, as a `state` message with the next seq; none when nothing did.
    std::optional<std::string> take_changes();

    void message_in(int node, int source, std::string_view payload) override;
    void rule_fired(int node, const Rule& rule) override;
    void pin_written(int node, int pin, int level, const Rule* by, Micros at) override;
    void input_edge(int node, int pin, int level, Micros at) override;
    void message_sent(int node, int edge) override;
    void acked(int node, int edge, Micros latency) override;
    void dropped(int node, int edge, std::string_view why) override;
    void link_state(int node, int edge, LinkState state, std::string_view why) override;
    void link_queue(int node, int edge, std::size_t queued, std::size_t limit) override;
    void variable_set(int node, int var, std::string_view value, const Rule* by, Micros at) override;

private:
    struct Channel {
        std::uint64_t count = 0;
        std::deque<std::string> last;
    };
    struct LinkView {
        LinkState state = LinkState::connecting;
        std::string why;
        std::size_t queued = 0;
        std::uint64_t sent = 0, acked = 0, dropped = 0;
    };
    // Per item, its value and whether it changed since take_changes() last ran.
    template<typename T> struct Tracked {
        T value{};
        bool changed = false;
    };
    struct NodeView {
        std::vector<Tracked<int>> pins;
        std::vector<Tracked<Channel>> channels;  // by source index; only channel sources are sent
        std::vector<Tracked<std::uint64_t>> rules;
        std::vector<Tracked<LinkView>> links;
        std::vector<Tracked<std::string>> vars;  // each cut to last_bytes
        bool changed = false;
    };

    template<typename T> T& touch(int node, std::vector<Tracked<T>> NodeView::*items, int index);
    std::string state_message(bool full) const;

    const Graph& graph_;
    std::vector<bool> here_;
    std::vector<NodeView> nodes_;  // per graph node (empty for those not here)
    std::uint64_t seq_ = 0;
    bool changed_ = false;
};

}  // namespace meshrun::engine
