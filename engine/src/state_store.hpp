// One node's durable state for `meshrun run --state DIR` (docs/delivery.md): its boot, each link's
// numbering and unacknowledged outbox, and what the node fired for each sender and channel.
//
// DIR/NODE.state is a log of append-only records, replayed at open:
//
//   "meshrun-state 1\n"                                    16 bytes, once, at the start
//   [u32 length][u32 crc32][type byte][fields...]          each record; length counts the type
//                                                          byte and the fields, the CRC-32 covers
//                                                          the length's 4 bytes and those
//
// little-endian, strings as [u32 length][bytes]. A crash can tear only the last record: it fails its
// length or its CRC and is dropped at open (so is one followed by nothing but zeros). A bad record
// with good ones after it is not a tear: opening refuses the file and names the offset. (A length
// corrupted to point past the end of the file cannot be told from a tear, and reads as one.) Past a size (4 MiB) the file is rewritten whole
// (NODE.state.new, synced, renamed over the old, the directory synced); it is also rewritten at
// every open, which drops a torn tail and proves at start that the directory takes new files.
// DIR/NODE.state.lock is flock'd while the store is open: one process a node.
//
// Uses plain POSIX calls; not thread-safe: the fleet's one thread uses it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meshrun::engine {

class StateStore {
public:
    static constexpr std::uint64_t default_compact_at = 4 * 1024 * 1024;  // bytes: the file rewritten past this
    static constexpr std::size_t max_senders = 4096;  // (sender, channel) entries; the least recently written goes
    static constexpr std::size_t max_replies = 64;    // replies kept per (sender, channel)

    // Opens DIR/NODE.state (creating DIR and the file if needed) and reads it. Throws
    // std::runtime_error naming the path and the reason: not a directory, not writable, not a
    // state file, a record corrupt before the last one (with its offset).
    StateStore(const std::string& dir, const std::string& node, std::uint64_t compact_at = default_compact_at);
    StateStore(const StateStore&) = delete;
    StateStore& operator=(const StateStore&) = delete;

    // Made once (random, 16 hex digits), then kept.
    const std::string& boot() const { return boot_; }

    // ---- The sender: per link, keyed by "TARGET/CHANNEL".
    struct Outgoing {
        std::uint64_t seq;
        std::string payload;
    };
    // The messages not acknowledged, in order.
    std::vector<Outgoing> outbox(const std::string& link) const;
    // The highest number ever given on the link, 0 if none.
    std::uint64_t last_seq(const std::string& link) const;
    // The links known, with or without an outbox.
    std::vector<std::string> links() const;
    void queued(const std::string& link, std::uint64_t seq, std::string_view payload);  // appended, not synced
    void acked(const std::string& link, std::uint64_t seq);                             // appended, not synced

    // ---- The receiver: per sender and channel.
    struct Fired {
        std::string boot;
        std::uint64_t seq = 0;             // the last one begun
        std::optional<std::string> reply;  // its reply once recorded; none: it was firing when the node stopped
        std::vector<std::pair<std::uint64_t, std::string>> replies;  // the last up to 64 (seq, reply), oldest first
    };
    using Sender = std::pair<std::string, std::string>;  // (sender, channel)
    // Every (sender, channel) remembered: what was read at open and recorded since.
    const std::map<Sender, Fired>& fired() const { return fired_; }
    // Appended AND synced: once it returns, a restart knows the message may have fired.
    void firing(const std::string& sender, const std::string& channel, const std::string& boot, std::uint64_t seq);
    // Appended, not synced: sync() before the reply leaves.
    void replied(const std::string& sender, const std::string& channel, const std::string& boot, std::uint64_t seq,
                 std::string_view reply);

    // fsync of everything appended so far; nothing to do when nothing was.
    void sync();

    std::string path() const { return path_; }
    std::uint64_t size() const { return end_; }  // the file's length in bytes

private:
    struct Link {
        std::uint64_t last_seq = 0;
        std::map<std::uint64_t, std::string> outbox;
    };

    void read();
    void compact();
    void append(std::string_view record);
    void apply(std::string_view record);  // one record's body (type and fields), at open and when written
    Fired& touch(const Sender& key);      // the entry, made most recently written; the oldest evicted past the bound
    [[noreturn]] void fail(std::string_view what, int err) const;

    // A descriptor closed with its owner, also when the constructor throws.
    struct Fd {
        int fd = -1;
        Fd() = default;
        Fd(const Fd&) = delete;
        Fd& operator=(const Fd&) = delete;
        ~Fd() { reset(-1); }
        void reset(int to);
    };

    std::string dir_;
    std::string path_;
    std::uint64_t compact_at_;
    Fd lock_;                         // DIR/NODE.state.lock, flock'd while open
    Fd fd_;                           // DIR/NODE.state
    std::uint64_t end_ = 0;           // the file's length: where the next record goes
    std::uint64_t compacted_ = 0;     // its length after the last rewrite
    bool dirty_ = false;              // appended since the last fsync
    std::string boot_;
    std::map<std::string, Link> links_;
    std::map<Sender, Fired> fired_;
    std::map<Sender, std::uint64_t> written_;  // when each entry was last written (a counter)
    std::map<std::uint64_t, Sender> by_age_;   // the same, oldest first
    std::uint64_t clock_ = 0;
    std::string record_;  // reused to build each record
};

}  // namespace meshrun::engine
