// The `--state DIR` file: records appended, fsync'd when they must count, replayed at open.
#include "state_store.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace meshrun::engine {

namespace {

constexpr std::string_view magic = "meshrun-state 1\n";
constexpr std::size_t header_size = 8;  // [u32 length][u32 crc32]
// A larger length is corruption wherever it is (no message comes near it), not a torn tail.
constexpr std::uint32_t max_record = 256 * 1024 * 1024;

// The record types.
constexpr char boot_record = 'B';     // boot
constexpr char link_record = 'L';     // link, last_seq
constexpr char queued_record = 'Q';   // link, seq, payload
constexpr char acked_record = 'A';    // link, seq
constexpr char firing_record = 'F';   // sender, channel, boot, seq
constexpr char replied_record = 'R';  // sender, channel, boot, seq, reply
constexpr char done_record = 'D';     // sender, channel, boot, seq, reply: the reply of the last one begun (rewrites only)

// CRC-32 (IEEE 802.3, as zlib's crc32), table-driven; zlib is not otherwise linked.
constexpr std::array<std::uint32_t, 256> crc_table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
    }
    return t;
}();

std::uint32_t crc32(std::string_view bytes, std::uint32_t crc = 0) {
    crc = ~crc;
    for (const char b : bytes) crc = crc_table[(crc ^ static_cast<unsigned char>(b)) & 0xff] ^ (crc >> 8);
    return ~crc;
}

// The CRC of a record: its length field, then its body.
std::uint32_t record_crc(std::string_view length, std::string_view body) { return crc32(body, crc32(length)); }

std::uint32_t get_u32(std::string_view s, std::size_t at) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
    return v;
}

void put_u32(std::string& out, std::size_t at, std::uint32_t v) {
    for (std::size_t i = 0; i < 4; ++i) out[at + i] = static_cast<char>(v >> (8 * i));
}

// Builds one record at the end of `out`: the type and fields, then finish() puts the header.
class Record {
public:
    Record(std::string& out, char type) : out_(out), start_(out.size()) {
        out_.append(header_size, '\0');
        out_ += type;
    }
    Record& u64(std::uint64_t v) {
        for (int i = 0; i < 8; ++i) out_ += static_cast<char>(v >> (8 * i));
        return *this;
    }
    Record& str(std::string_view s) {
        const std::size_t at = out_.size();
        out_.append(4, '\0');
        put_u32(out_, at, static_cast<std::uint32_t>(s.size()));
        out_ += s;
        return *this;
    }
    void finish() {
        const std::size_t length = out_.size() - start_ - header_size;
        if (length > max_record)
            throw std::runtime_error(fmt::format("a state record of {} bytes is larger than the largest kept ({})",
                                                 length, max_record));
        put_u32(out_, start_, static_cast<std::uint32_t>(length));
        const std::string_view all(out_);
        put_u32(out_, start_ + 4, record_crc(all.substr(start_, 4), all.substr(start_ + header_size)));
    }

private:
    std::string& out_;
    std::size_t start_;
};

// A record whose CRC is good but whose fields do not read: not a tear, a bug or another format.
struct BadFields : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Reads a record's fields in order.
class Fields {
public:
    explicit Fields(std::string_view body) : s_(body) {}
    std::uint64_t u64() {
        need(8);
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(s_[at_ + i])) << (8 * i);
        at_ += 8;
        return v;
    }
    std::string str() {
        need(4);
        const std::uint32_t n = get_u32(s_, at_);
        at_ += 4;
        need(n);
        std::string v(s_.substr(at_, n));
        at_ += n;
        return v;
    }
    void end() const {
        if (at_ != s_.size()) throw BadFields(fmt::format("{} bytes left over after its fields", s_.size() - at_));
    }

private:
    void need(std::size_t n) const {
        if (s_.size() - at_ < n) throw BadFields("its fields run past its length");
    }
    std::string_view s_;
    std::size_t at_ = 0;
};

std::string new_boot() {
    std::random_device rd;
    const std::uint64_t v = static_cast<std::uint64_t>(rd()) << 32 | rd();
    return fmt::format("{:016x}", v);
}

bool all_zero(std::string_view s) {
    return s.find_first_not_of('\0') == std::string_view::npos;
}

void write_all(int fd, std::string_view bytes, std::uint64_t at) {
    while (!bytes.empty()) {
        const ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(at));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category());
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
        at += static_cast<std::uint64_t>(n);
    }
}

// fsync of a directory, so that a name made or renamed in it survives a power loss.
void sync_directory(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(fmt::format("state directory {}: cannot open it: {}", dir, std::strerror(errno)));
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) throw std::runtime_error(fmt::format("state directory {}: fsync: {}", dir, std::strerror(err)));
}

}  // namespace

StateStore::StateStore(const std::string& dir, const std::string& node, std::uint64_t compact_at)
    : dir_(dir.empty() ? std::string(".") : dir), compact_at_(compact_at) {
    if (node.empty() || node.find('/') != std::string::npos || node.find('\0') != std::string::npos || node[0] == '.')
        throw std::runtime_error(fmt::format("state directory {}: the node name `{}` cannot name a file", dir_, node));
    path_ = (std::filesystem::path(dir_) / (node + ".state")).string();

    namespace fs = std::filesystem;
    std::error_code ec;
    const auto status = fs::status(dir_, ec);
    if (fs::exists(status) && !fs::is_directory(status))
        throw std::runtime_error(fmt::format("state directory {}: not a directory", dir_));
    if (!fs::exists(status)) {
        fs::create_directories(dir_, ec);
        if (ec) throw std::runtime_error(fmt::format("state directory {}: cannot create it: {}", dir_, ec.message()));
        fs::path made = fs::absolute(fs::path(dir_)).lexically_normal();
        if (!made.has_filename()) made = made.parent_path();  // "dir/"
        sync_directory(made.parent_path().string());
    }
    if (::access(dir_.c_str(), W_OK | X_OK) != 0)
        throw std::runtime_error(fmt::format("state directory {}: not writable: {}", dir_, std::strerror(errno)));

    // One process at a time: another one's rewrite would leave this one appending to a file no
    // longer in the directory. The lock file is never replaced, unlike NODE.state.
    const std::string lock_path = path_ + ".lock";
    lock_.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (lock_.fd < 0)
        throw std::runtime_error(fmt::format("{}: cannot create it: {}", lock_path, std::strerror(errno)));
    if (::flock(lock_.fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            throw std::runtime_error(fmt::format("{}: in use by another meshrun process ({} is locked)", path_, lock_path));
        throw std::runtime_error(fmt::format("{}: cannot lock it: {}", lock_path, std::strerror(errno)));
    }

    read();
    if (boot_.empty()) boot_ = new_boot();
    // Rewritten at once: a new file made whole, a torn tail gone, and the directory shown to take
    // the rename that compaction will need.
    compact();
}

void StateStore::Fd::reset(int to) {
    if (fd >= 0) ::close(fd);
    fd = to;
}

void StateStore::fail(std::string_view what, int err) const {
    throw std::runtime_error(fmt::format("{}: {}: {}", path_, what, std::strerror(err)));
}

void StateStore::read() {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return;  // a new node
        fail("cannot open it", errno);
    }
    std::string data;
    char buffer[65536];
    for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            fail("cannot read it", err);
        }
        if (n == 0) break;
        data.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    if (data.empty()) return;  // made empty by hand: a new node
    if (!std::string_view(data).starts_with(magic))
        throw std::runtime_error(fmt::format("{}: not a meshrun state file (it does not start with \"meshrun-state 1\")",
                                             path_));

    const std::string_view all(data);
    std::size_t at = magic.size();
    while (at < all.size()) {
        const std::size_t left = all.size() - at;
        // Whether a record that does not read is the torn last one: the file ends inside it, or
        // nothing but zeros follows it (a file system that grew the file but did not write its data).
        std::string reason;
        std::size_t next = at + header_size;  // where the bad record ends, as far as it can be told
        bool bad_fields = false;
        if (left < header_size) break;  // the header itself torn
        const std::uint32_t length = get_u32(all, at);
        if (length == 0 || length > max_record) {
            reason = fmt::format("its length {} is impossible", length);
        } else if (length > left - header_size) {
            break;  // ends past the end of the file: torn
        } else {
            next = at + header_size + length;
            const std::string_view body = all.substr(at + header_size, length);
            if (record_crc(all.substr(at, 4), body) != get_u32(all, at + 4)) {
                reason = "its CRC does not match";  // torn if it is the last one (nothing follows)
            } else {
                try {
                    apply(body);
                } catch (const BadFields& e) {
                    reason = e.what();
                    // whole and its CRC good, yet unreadable: no tear, wherever it is
                    bad_fields = true;
                }
            }
        }
        if (!reason.empty()) {
            if (!bad_fields && all_zero(all.substr(next))) break;
            throw std::runtime_error(fmt::format(
                "{}: the record at offset {} is corrupt ({}){}; the file is left as it is "
                "(move it away to start this node afresh, losing its outbox and what it fired)",
                path_, at, reason, bad_fields ? "" : " and is not the last one"));
        }
        at += header_size + length;
    }
    if (boot_.empty())
        throw std::runtime_error(fmt::format("{}: a state file without its boot record; the file is left as it is", path_));
}

void StateStore::apply(std::string_view body) {
    Fields f(body.substr(1));
    switch (body[0]) {
    case boot_record: {
        std::string boot = f.str();
        f.end();
        boot_ = std::move(boot);
        return;
    }
    case link_record: {
        std::string link = f.str();
        const std::uint64_t seq = f.u64();
        f.end();
        Link& l = links_[link];
        l.last_seq = std::max(l.last_seq, seq);
        return;
    }
    case queued_record: {
        std::string link = f.str();
        const std::uint64_t seq = f.u64();
        std::string payload = f.str();
        f.end();
        Link& l = links_[link];
        l.last_seq = std::max(l.last_seq, seq);
        l.outbox[seq] = std::move(payload);
        return;
    }
    case acked_record: {
        std::string link = f.str();
        const std::uint64_t seq = f.u64();
        f.end();
        if (auto l = links_.find(link); l != links_.end()) l->second.outbox.erase(seq);
        return;
    }
    case firing_record: {
        Sender key{f.str(), f.str()};
        std::string boot = f.str();
        const std::uint64_t seq = f.u64();
        f.end();
        Fired& e = touch(key);
        if (e.boot != boot) e = Fired{std::move(boot), 0, std::nullopt, {}};  // a new boot numbers afresh
        e.seq = seq;
        e.reply.reset();
        return;
    }
    case replied_record: {
        Sender key{f.str(), f.str()};
        std::string boot = f.str();
        const std::uint64_t seq = f.u64();
        std::string reply = f.str();
        f.end();
        const bool known = fired_.contains(key);
        Fired& e = touch(key);
        if (!known) e = Fired{boot, seq, std::nullopt, {}};  // its firing record was forgotten: as if it fired now
        if (e.boot != boot) return;  // the reply of a boot the sender has since left
        if (seq == e.seq) e.reply = reply;
        e.replies.emplace_back(seq, std::move(reply));
        if (e.replies.size() > max_replies) e.replies.erase(e.replies.begin());
        return;
    }
    case done_record: {
        Sender key{f.str(), f.str()};
        std::string boot = f.str();
        const std::uint64_t seq = f.u64();
        std::string reply = f.str();
        f.end();
        Fired& e = touch(key);
        if (e.boot == boot && e.seq == seq) e.reply = std::move(reply);
        return;
    }
    default:
        throw BadFields(fmt::format("unknown record type {:#04x}", static_cast<unsigned char>(body[0])));
    }
}

StateStore::Fired& StateStore::touch(const Sender& key) {
    if (auto w = written_.find(key); w != written_.end()) {
        by_age_.erase(w->second);
    } else if (fired_.size() >= max_senders) {
        const auto oldest = by_age_.begin();
        fired_.erase(oldest->second);
        written_.erase(oldest->second);
        by_age_.erase(oldest);
    }
    written_[key] = ++clock_;
    by_age_.emplace(clock_, key);
    return fired_[key];
}

void StateStore::append(std::string_view record) {
    try {
        write_all(fd_.fd, record, end_);
    } catch (const std::system_error& e) {
        // A part written would be a bad record with the next one after it: cut it off.
        [[maybe_unused]] const int rc = ::ftruncate(fd_.fd, static_cast<off_t>(end_));  // the error below says enough
        fail("cannot append to it", e.code().value());
    }
    end_ += record.size();
    dirty_ = true;
    apply(record.substr(header_size));
    // Rewritten past the bound, or past twice its size after the last rewrite: a state that is
    // itself larger than the bound must not be rewritten at every record.
    if (end_ > std::max(compact_at_, 2 * compacted_)) compact();
}

void StateStore::compact() {
    std::string out(magic);
    Record(out, boot_record).str(boot_).finish();
    for (const auto& [name, link] : links_) {
        Record(out, link_record).str(name).u64(link.last_seq).finish();
        for (const auto& [seq, payload] : link.outbox) Record(out, queued_record).str(name).u64(seq).str(payload).finish();
    }
    // Oldest first, so that reading it back gives the same order of eviction. The replies, then the
    // last one begun, then its reply if it has one (it may have left the last 64 replies since).
    for (const auto& [age, key] : by_age_) {
        const Fired& e = fired_.at(key);
        for (const auto& [seq, reply] : e.replies)
            Record(out, replied_record).str(key.first).str(key.second).str(e.boot).u64(seq).str(reply).finish();
        Record(out, firing_record).str(key.first).str(key.second).str(e.boot).u64(e.seq).finish();
        if (e.reply)
            Record(out, done_record).str(key.first).str(key.second).str(e.boot).u64(e.seq).str(*e.reply).finish();
    }

    const std::string fresh = path_ + ".new";
    const int fd = ::open(fresh.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        throw std::runtime_error(fmt::format("{}: cannot create it: {}", fresh, std::strerror(errno)));
    try {
        write_all(fd, out, 0);
        if (::fsync(fd) != 0) throw std::system_error(errno, std::generic_category());
        if (::rename(fresh.c_str(), path_.c_str()) != 0) throw std::system_error(errno, std::generic_category());
    } catch (const std::system_error& e) {
        ::close(fd);
        ::unlink(fresh.c_str());
        throw std::runtime_error(fmt::format("{}: cannot rewrite it: {}", path_, std::strerror(e.code().value())));
    }
    fd_.reset(fd);
    end_ = compacted_ = out.size();
    dirty_ = false;
    sync_directory(dir_);
}

void StateStore::sync() {
    if (!dirty_) return;
    if (::fsync(fd_.fd) != 0) fail("fsync", errno);
    dirty_ = false;
}

std::vector<StateStore::Outgoing> StateStore::outbox(const std::string& link) const {
    std::vector<Outgoing> out;
    if (auto l = links_.find(link); l != links_.end())
        for (const auto& [seq, payload] : l->second.outbox) out.push_back({seq, payload});
    return out;
}

std::uint64_t StateStore::last_seq(const std::string& link) const {
    const auto l = links_.find(link);
    return l == links_.end() ? 0 : l->second.last_seq;
}

std::vector<std::string> StateStore::links() const {
    std::vector<std::string> out;
    for (const auto& [name, link] : links_) out.push_back(name);
    return out;
}

void StateStore::queued(const std::string& link, std::uint64_t seq, std::string_view payload) {
    record_.clear();
    Record(record_, queued_record).str(link).u64(seq).str(payload).finish();
    append(record_);
}

void StateStore::acked(const std::string& link, std::uint64_t seq) {
    record_.clear();
    Record(record_, acked_record).str(link).u64(seq).finish();
    append(record_);
}

void StateStore::firing(const std::string& sender, const std::string& channel, const std::string& boot,
                        std::uint64_t seq) {
    record_.clear();
    Record(record_, firing_record).str(sender).str(channel).str(boot).u64(seq).finish();
    append(record_);
    sync();
}

void StateStore::replied(const std::string& sender, const std::string& channel, const std::string& boot,
                         std::uint64_t seq, std::string_view reply) {
    record_.clear();
    Record(record_, replied_record).str(sender).str(channel).str(boot).u64(seq).str(reply).finish();
    append(record_);
}

}  // namespace meshrun::engine
