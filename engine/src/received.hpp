// The receiver's half of meshrun.1 (docs/delivery.md): per sender and channel, what
// was fired and what it replied, so that a message sent again after a reconnect is
// answered with its first reply instead of firing twice. No Asio: the session asks,
// and waits itself when the answer is "being fired now".
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace meshrun::engine {

class Received {
public:
    static constexpr std::size_t kept_replies = 64;  // per sender and channel
    static constexpr std::size_t kept_senders = 4096;  // per node: the one unheard from longest goes first

    enum class Verdict {
        fire,       // not seen: fire it (refire: it may have been fired before a crash)
        answer,     // fired already: answer with `reply`
        wait,       // being fired now: wait for its reply, then ask again
        forgotten,  // fired already, its reply no longer kept
    };
    struct Check {
        Verdict verdict;
        std::string reply;    // answer
        bool refire = false;  // fire: possibly a second firing (counted)
    };

    // What was fired before this process started (--state): the last begun, its reply if
    // it was recorded (none: the node stopped while firing it), and the replies kept.
    struct Known {
        std::string boot;
        std::uint64_t last = 0;
        bool replied = false;
        std::deque<std::pair<std::uint64_t, std::string>> replies;  // oldest first
    };
    void load(const std::string& sender, const std::string& channel, Known known) {
        Entry& e = entries_[{sender, channel}];
        e.boot = std::move(known.boot);
        e.last = known.last;
        e.firing = false;
        e.crashed = !known.replied;
        e.replies = std::move(known.replies);
        e.used = ++clock_;
    }

    Check check(const std::string& sender, const std::string& channel, std::string_view boot, std::uint64_t seq,
                bool resent) {
        auto it = entries_.find({sender, channel});
        if (it == entries_.end() || it->second.boot != boot) return {Verdict::fire, {}, resent};
        Entry& e = it->second;
        e.used = ++clock_;
        if (seq > e.last) return {Verdict::fire, {}, false};
        if (seq == e.last && e.firing) return {Verdict::wait, {}, false};
        for (const auto& [n, reply] : e.replies)
            if (n == seq) return {Verdict::answer, reply, false};
        // The last one begun, with no reply recorded: the node stopped while firing it.
        if (seq == e.last && e.crashed) return {Verdict::fire, {}, true};
        return {Verdict::forgotten, {}, false};
    }

    // A firing of message `seq` begins; then it replied.
    void begin(const std::string& sender, const std::string& channel, std::string_view boot, std::uint64_t seq) {
        auto [it, fresh] = entries_.try_emplace({sender, channel});
        Entry& e = it->second;
        if (e.boot != boot) {  // the sender started again: its numbers start again
            e.boot = std::string(boot);
            e.last = 0;
            e.replies.clear();
        }
        e.last = std::max(e.last, seq);
        e.firing = true;
        e.crashed = false;
        e.used = ++clock_;
        if (fresh && entries_.size() > kept_senders) forget_oldest();
    }
    void done(const std::string& sender, const std::string& channel, std::uint64_t seq, std::string reply) {
        auto it = entries_.find({sender, channel});
        if (it == entries_.end()) return;  // forgotten meanwhile
        Entry& e = it->second;
        if (seq == e.last) e.firing = false;
        e.replies.emplace_back(seq, std::move(reply));
        if (e.replies.size() > kept_replies) e.replies.pop_front();
    }

    std::size_t size() const { return entries_.size(); }

private:
    struct Entry {
        std::string boot;
        std::uint64_t last = 0;  // the highest number begun
        bool firing = false;     // `last` is being fired now
        bool crashed = false;    // `last` was being fired when the node stopped (from --state)
        std::deque<std::pair<std::uint64_t, std::string>> replies;
        std::uint64_t used = 0;
    };
    void forget_oldest() {
        auto oldest = entries_.end();
        for (auto it = entries_.begin(); it != entries_.end(); ++it)
            if (!it->second.firing && (oldest == entries_.end() || it->second.used < oldest->second.used)) oldest = it;
        if (oldest != entries_.end()) entries_.erase(oldest);
    }

    std::map<std::pair<std::string, std::string>, Entry> entries_;
    std::uint64_t clock_ = 0;
};

}  // namespace meshrun::engine
