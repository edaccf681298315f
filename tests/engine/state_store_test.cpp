// StateStore: the `--state DIR` file on a real file system (a fresh temporary directory each test).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <unistd.h>

#include "state_store.hpp"

using meshrun::engine::StateStore;
using Catch::Matchers::Contains;
using namespace std::string_literals;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string p = (fs::temp_directory_path() / "meshrun-state-XXXXXX").string();
        REQUIRE(::mkdtemp(p.data()) != nullptr);
        path = p;
    }
    ~TempDir() {
        std::error_code ec;
        fs::permissions(path, fs::perms::owner_all, ec);
        fs::remove_all(path, ec);
    }
    std::string str() const { return path.string(); }
};

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void write_file(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << bytes;
}

// All a store shows but its boot, one line a fact, for comparing two stores.
std::string dump(const StateStore& s) {
    std::string out;
    for (const auto& link : s.links()) {
        out += fmt::format("link {} last {}\n", link, s.last_seq(link));
        for (const auto& m : s.outbox(link)) out += fmt::format("  queued {} [{}]\n", m.seq, m.payload);
    }
    for (const auto& [key, f] : s.fired()) {
        out += fmt::format("fired {} {} boot {} seq {} reply {}\n", key.first, key.second, f.boot, f.seq,
                           f.reply ? "[" + *f.reply + "]" : "none");
        for (const auto& [seq, reply] : f.replies) out += fmt::format("  replied {} [{}]\n", seq, reply);
    }
    return out;
}

// A record as docs and state_store.hpp describe it, built here independently: [u32 length]
// [u32 CRC-32 of the length's bytes and the body][body], little-endian.
std::string le32(std::uint32_t v) {
    std::string out;
    for (int i = 0; i < 4; ++i) out += static_cast<char>(v >> (8 * i));
    return out;
}
std::string le64(std::uint64_t v) { return le32(static_cast<std::uint32_t>(v)) + le32(static_cast<std::uint32_t>(v >> 32)); }
std::string str(const std::string& s) { return le32(static_cast<std::uint32_t>(s.size())) + s; }
std::uint32_t crc32(const std::string& bytes) {  // bit by bit, the reflected 0xedb88320
    std::uint32_t crc = 0xffffffffu;
    for (const char b : bytes) {
        crc ^= static_cast<unsigned char>(b);
        for (int k = 0; k < 8; ++k) crc = (crc & 1) ? 0xedb88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}
std::string record(char type, std::initializer_list<std::string> fields) {
    std::string body(1, type);
    for (const auto& f : fields) body += f;
    const std::string length = le32(static_cast<std::uint32_t>(body.size()));
    return length + le32(crc32(length + body)) + body;
}

// A little of everything, binary bytes included.
void fill(StateStore& s) {
    s.queued("buzzer/signal", 1, "one");
    s.queued("buzzer/signal", 2, "two\0with a NUL\n"s);
    s.queued("buzzer/signal", 3, "");
    s.acked("buzzer/signal", 1);
    s.queued("iopin/datafeed", 1, "tick");
    s.acked("iopin/datafeed", 1);
    s.firing("mesh/clock", "datafeed", "0123456789abcdef", 1);
    s.replied("mesh/clock", "datafeed", "0123456789abcdef", 1, "acknowledged");
    s.firing("mesh/clock", "datafeed", "0123456789abcdef", 2);
    s.replied("mesh/clock", "datafeed", "0123456789abcdef", 2, "\xff\x00 binary"s);
    s.firing("mesh/iopin", "signal", "b00t", 7);
    s.sync();
}

}  // namespace

TEST_CASE("state store: open, close and reopen keeps everything", "[state]") {
    TempDir d;
    const std::string dir = (d.path / "a" / "b").string();  // made, with its parent
    std::string boot, before, path;
    {
        StateStore s(dir, "buzzer");
        boot = s.boot();
        CHECK(boot.size() == 16);
        CHECK(boot.find_first_not_of("0123456789abcdef") == std::string::npos);
        CHECK(s.fired().empty());
        CHECK(s.links().empty());
        CHECK(s.last_seq("buzzer/signal") == 0);
        fill(s);
        before = dump(s);
        path = s.path();
    }
    CHECK(path == (fs::path(dir) / "buzzer.state").string());
    CHECK(before == "link buzzer/signal last 3\n"
                    "  queued 2 [two\0with a NUL\n]\n"
                    "  queued 3 []\n"
                    "link iopin/datafeed last 1\n"
                    "fired mesh/clock datafeed boot 0123456789abcdef seq 2 reply [\xff\0 binary]\n"
                    "  replied 1 [acknowledged]\n"
                    "  replied 2 [\xff\0 binary]\n"
                    "fired mesh/iopin signal boot b00t seq 7 reply none\n"s);
    for (int i = 0; i < 2; ++i) {  // twice: the first reopen rewrote the file
        StateStore s(dir, "buzzer");
        CHECK(s.boot() == boot);
        CHECK(dump(s) == before);
    }
    // Another node in the same directory is another file, another boot.
    StateStore other(dir, "iopin");
    CHECK(other.boot() != boot);
    CHECK(other.fired().empty());
}

TEST_CASE("state store: a firing without its reply reopens as reply == nullopt", "[state]") {
    TempDir d;
    {
        StateStore s(d.str(), "n");
        for (std::uint64_t seq = 1; seq <= 4; ++seq) {
            s.firing("m/a", "ch", "b1", seq);
            s.replied("m/a", "ch", "b1", seq, fmt::format("r{}", seq));
        }
        s.sync();
        s.firing("m/a", "ch", "b1", 5);  // synced by itself; then the node is killed
    }
    StateStore s(d.str(), "n");
    REQUIRE(s.fired().size() == 1);
    const auto& f = s.fired().at({"m/a", "ch"});
    CHECK(f.boot == "b1");
    CHECK(f.seq == 5);
    CHECK_FALSE(f.reply.has_value());
    REQUIRE(f.replies.size() == 4);
    CHECK(f.replies.front() == std::pair<std::uint64_t, std::string>{1, "r1"});
    CHECK(f.replies.back() == std::pair<std::uint64_t, std::string>{4, "r4"});
}

TEST_CASE("state store: the receiver's table: new boots, stale replies, its bounds", "[state]") {
    TempDir d;
    StateStore s(d.str(), "n");
    s.firing("m/a", "ch", "b1", 1);
    s.replied("m/a", "ch", "b1", 1, "one");
    s.firing("m/a", "ch", "b2", 1);  // the sender restarted: numbering afresh, its old replies gone
    s.replied("m/a", "ch", "b1", 2, "late");  // a reply of the old boot
    const auto& f = s.fired().at({"m/a", "ch"});
    CHECK(f.boot == "b2");
    CHECK(f.seq == 1);
    CHECK_FALSE(f.reply.has_value());
    CHECK(f.replies.empty());

    // 64 replies kept, oldest first; the reply belongs to the last one begun only.
    for (std::uint64_t seq = 1; seq <= 100; ++seq) s.replied("m/b", "ch", "b", seq, fmt::format("r{}", seq));
    s.firing("m/b", "ch", "b", 101);
    s.replied("m/b", "ch", "b", 99, "again");
    {
        const auto& g = s.fired().at({"m/b", "ch"});
        CHECK(g.seq == 101);
        CHECK_FALSE(g.reply.has_value());
        REQUIRE(g.replies.size() == StateStore::max_replies);
        CHECK(g.replies.front().first == 38);
        CHECK(g.replies.back() == std::pair<std::uint64_t, std::string>{99, "again"});
    }

    // 4096 (sender, channel) entries; the least recently written is forgotten, also after a reopen.
    TempDir e;
    {
        StateStore t(e.str(), "n");
        for (std::size_t i = 0; i < StateStore::max_senders; ++i) t.replied(fmt::format("s{}", i), "ch", "b", 1, "r");
        t.replied("s0", "ch", "b", 2, "r");  // s0 written again: s1 is now the oldest
        t.replied("s-new", "ch", "b", 1, "r");
        CHECK(t.fired().size() == StateStore::max_senders);
        CHECK(t.fired().contains({"s0", "ch"}));
        CHECK_FALSE(t.fired().contains({"s1", "ch"}));
        t.sync();
    }
    { StateStore t(e.str(), "n"); }  // read from the log as written, then rewritten in order of age
    StateStore t(e.str(), "n");       // read from the rewrite
    CHECK(t.fired().size() == StateStore::max_senders);
    t.replied("s-newer", "ch", "b", 1, "r");
    CHECK_FALSE(t.fired().contains({"s2", "ch"}));  // the order of age survived the rewrite at open
    CHECK(t.fired().contains({"s3", "ch"}));
    CHECK(t.fired().contains({"s0", "ch"}));
}

TEST_CASE("state store: a file written by hand from the format", "[state]") {
    REQUIRE(crc32("123456789") == 0xcbf43926u);  // the check value of CRC-32/ISO-HDLC (zlib's)
    TempDir d;
    const fs::path path = d.path / "n.state";
    const std::string file = std::string("meshrun-state 1\n") + record('B', {str("cafe0123cafe0123")}) +
                             record('Q', {str("t/c"), le64(7), str("hello")}) +
                             record('F', {str("m/a"), str("ch"), str("b"), le64(3)}) +
                             record('R', {str("m/a"), str("ch"), str("b"), le64(3), str("done")});
    write_file(path, file);
    {
        StateStore s(d.str(), "n");
        CHECK(s.boot() == "cafe0123cafe0123");
        CHECK(dump(s) == "link t/c last 7\n  queued 7 [hello]\nfired m/a ch boot b seq 3 reply [done]\n  replied 3 [done]\n");
    }
    // A last record whole and with its CRC good is no tear, even when it cannot be read.
    const std::uint64_t offset = file.size();
    write_file(path, file + record('Z', {str("from a later version")}));
    CHECK_THROWS_WITH(StateStore(d.str(), "n"),
                      Contains(fmt::format("record at offset {} is corrupt (unknown record type 0x5a)", offset)));
    write_file(path, file + record('Q', {str("t/c"), le64(8)}));  // its payload missing
    CHECK_THROWS_WITH(StateStore(d.str(), "n"),
                      Contains(fmt::format("record at offset {} is corrupt (its fields run past its length)", offset)));
}

TEST_CASE("state store: the outbox after acknowledgements", "[state]") {
    TempDir d;
    {
        StateStore s(d.str(), "n");
        for (std::uint64_t seq = 1; seq <= 5; ++seq) s.queued("t/c", seq, fmt::format("m{}", seq));
        s.acked("t/c", 2);
        s.acked("t/c", 4);
        s.acked("t/c", 9);       // never queued: nothing
        s.acked("other/c", 1);   // an unknown link: nothing
        s.sync();
    }
    {
        StateStore s(d.str(), "n");
        const auto out = s.outbox("t/c");
        REQUIRE(out.size() == 3);
        CHECK(out[0].seq == 1);
        CHECK(out[0].payload == "m1");
        CHECK(out[1].seq == 3);
        CHECK(out[2].seq == 5);
        CHECK(s.last_seq("t/c") == 5);
        CHECK(s.outbox("other/c").empty());
        for (std::uint64_t seq : {1, 3, 5}) s.acked("t/c", seq);
    }
    StateStore s(d.str(), "n");
    CHECK(s.outbox("t/c").empty());
    CHECK(s.last_seq("t/c") == 5);  // the numbering goes on from there
}

TEST_CASE("state store: a torn last record is dropped, wherever it was cut", "[state]") {
    TempDir d;
    std::string before, boot;
    std::uint64_t good = 0, whole_size = 0;
    fs::path path;
    {
        StateStore s(d.str(), "n");
        fill(s);
        before = dump(s);
        boot = s.boot();
        good = s.size();
        s.replied("mesh/iopin", "signal", "b00t", 7, "the last reply, cut anywhere");
        s.sync();
        whole_size = s.size();
        path = s.path();
    }
    const std::string whole = read_file(path);
    REQUIRE(whole.size() == whole_size);
    REQUIRE(whole_size > good + 8);
    SECTION("cut at every length") {
        std::string with_more = before;
        with_more.insert(with_more.find("fired "), "link zz/tear last 1\n");
        for (std::uint64_t length = good; length < whole_size; ++length) {
            INFO("cut at " << length << " of " << whole_size);
            write_file(path, whole.substr(0, length));
            {
                StateStore s(d.str(), "n");
                CHECK(s.boot() == boot);
                CHECK(dump(s) == before);
                CHECK(fs::file_size(path) == s.size());
                s.queued("zz/tear", 1, "appended at a clean end");
            }
            StateStore s(d.str(), "n");
            REQUIRE(s.outbox("zz/tear").size() == 1);
            s.acked("zz/tear", 1);
            CHECK(dump(s) == with_more);
        }
    }
    SECTION("its CRC failing") {
        std::string bad = whole;
        bad[whole_size - 3] ^= 0x20;
        write_file(path, bad);
        StateStore s(d.str(), "n");
        CHECK(dump(s) == before);
    }
    SECTION("zeros in it and after it, where a file system grew the file without its data") {
        for (const std::uint64_t zeros_from : {good, good + 3, good + 8, whole_size - 5}) {
            INFO("zeros from " << zeros_from);
            write_file(path, whole.substr(0, zeros_from) + std::string(whole_size - zeros_from + 300, '\0'));
            StateStore s(d.str(), "n");
            CHECK(dump(s) == before);
        }
    }
}

TEST_CASE("state store: a corrupt record before the last one is an error naming its offset", "[state]") {
    TempDir d;
    std::uint64_t middle = 0, after = 0;
    fs::path path;
    {
        StateStore s(d.str(), "n");
        s.queued("t/c", 1, "first");
        middle = s.size();
        s.firing("m/a", "ch", "b", 1);
        after = s.size();
        s.queued("t/c", 2, "last");
        path = s.path();
    }
    const std::string whole = read_file(path);
    // Every byte of the middle record but the three low bytes of its length: a length that
    // points past the end of the file reads as a torn last record and cannot be told from one.
    for (std::uint64_t at = middle + 3; at < after; ++at) {
        INFO("byte " << at << " flipped, the record at " << middle << " to " << after);
        std::string bad = whole;
        bad[at] ^= '\xff';
        write_file(path, bad);
        REQUIRE_THROWS_WITH(StateStore(d.str(), "n"),
                            Contains(path.string()) && Contains(fmt::format("record at offset {} is corrupt", middle)));
        CHECK(read_file(path) == bad);  // left as it is
    }
    write_file(path, whole);
    StateStore s(d.str(), "n");
    CHECK(s.outbox("t/c").size() == 2);
}

TEST_CASE("state store: compaction keeps the same state in a smaller file", "[state]") {
    TempDir small_dir, big_dir;
    StateStore small(small_dir.str(), "n", 4096);
    StateStore big(big_dir.str(), "n");  // 4 MiB: never rewritten here
    // Rewritten past 4096 bytes, or past twice the size of the last rewrite (the state itself is
    // some 20 KiB here): what an iteration adds (4 records) comes on top.
    std::uint64_t last_rewrite = small.size(), previous = small.size(), rewrites = 0;
    for (std::uint64_t i = 1; i <= 2000; ++i) {
        for (StateStore* s : {&small, &big}) {
            s->queued("t/c", i, fmt::format("payload {}", i));
            if (i > 10) s->acked("t/c", i - 10);
            s->replied(fmt::format("m/s{}", i % 7), "ch", "b", i, fmt::format("reply {}", i));
            if (i % 100 == 0) s->firing(fmt::format("m/f{}", i % 300), "ch", "b", i);
        }
        if (small.size() < previous) {
            ++rewrites;
            last_rewrite = small.size();
        }
        previous = small.size();
        INFO("iteration " << i << ", last rewritten to " << last_rewrite << " bytes");
        REQUIRE(small.size() <= std::max<std::uint64_t>(4096, 2 * last_rewrite) + 400);
    }
    CHECK(rewrites > 5);
    CHECK(small.size() < big.size() / 4);
    CHECK(dump(small) == dump(big));
    CHECK_FALSE(fs::exists(small.path() + ".new"));
}

TEST_CASE("state store: one process a node", "[state]") {
    TempDir d;
    auto first = std::make_unique<StateStore>(d.str(), "n");
    CHECK_THROWS_WITH(StateStore(d.str(), "n"), Contains("n.state") && Contains("in use by another meshrun process"));
    StateStore other(d.str() + "/", "m");  // another node in the same directory
    CHECK(other.boot() != first->boot());
    const std::string boot = first->boot();
    first.reset();
    StateStore again(d.str(), "n");
    CHECK(again.boot() == boot);
}

TEST_CASE("state store: reopened after compaction, the same state", "[state]") {
    TempDir d;
    std::string seen, boot;
    {
        StateStore s(d.str(), "n", 2048);
        for (std::uint64_t i = 1; i <= 500; ++i) {
            s.queued("t/c", i, std::string(i % 50, 'x'));
            if (i % 3 != 0) s.acked("t/c", i);
            s.replied("m/a", fmt::format("ch{}", i % 5), "b", i, std::string(i % 40, 'y'));
        }
        s.firing("m/a", "ch0", "b", 501);
        seen = dump(s);
        boot = s.boot();
    }
    StateStore s(d.str(), "n", 2048);
    CHECK(s.boot() == boot);
    CHECK(dump(s) == seen);
}

TEST_CASE("state store: errors name the path and the reason", "[state]") {
    TempDir d;
    SECTION("a file where the directory should be") {
        write_file(d.path / "file", "x");
        CHECK_THROWS_WITH(StateStore((d.path / "file").string(), "n"),
                          Contains((d.path / "file").string()) && Contains("not a directory"));
    }
    SECTION("a node name that is not a file name") {
        CHECK_THROWS_WITH(StateStore(d.str(), "../n"), Contains("cannot name a file"));
        CHECK_THROWS_WITH(StateStore(d.str(), ""), Contains("cannot name a file"));
    }
    SECTION("not a state file") {
        write_file(d.path / "n.state", "hello, this is someone else's file\n");
        CHECK_THROWS_WITH(StateStore(d.str(), "n"), Contains("n.state") && Contains("not a meshrun state file"));
        CHECK(read_file(d.path / "n.state") == "hello, this is someone else's file\n");
    }
    SECTION("the state file is a directory") {
        fs::create_directory(d.path / "n.state");
        CHECK_THROWS_WITH(StateStore(d.str(), "n"), Contains("n.state") && Contains("Is a directory"));
    }
    SECTION("the rewrite cannot make its new file") {
        fs::create_directory(d.path / "n.state.new");
        fs::create_directory(d.path / "n.state.new" / "x");  // not removable by the rewrite
        CHECK_THROWS_WITH(StateStore(d.str(), "n"), Contains("n.state.new"));
    }
}

// Root writes into a 0500 directory anyway: a file written there tells, and the case is then
// skipped through ctest (SKIP_REGULAR_EXPRESSION in tests/CMakeLists.txt).
TEST_CASE("state store: a directory that cannot be written", "[state]") {
    TempDir d;
    const fs::path dir = d.path / "ro";
    fs::create_directory(dir);
    fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
    {
        std::ofstream probe(dir / "probe");
        if (probe) {
            std::cout << "meshrun-test-skipped: this user (root?) writes into a 0500 directory anyway\n";
            return;
        }
    }
    CHECK_THROWS_WITH(StateStore(dir.string(), "n"), Contains(dir.string()) && Contains("not writable"));
}

// 10,000 pairs, or as many as 20 s allow where fsync is slow (a loaded disk: some 3 ms each here
// then, against 100 us idle): the figure is printed, not checked.
TEST_CASE("state store: 10,000 firings with their replies, each synced", "[state]") {
    TempDir d;
    StateStore s(d.str(), "n");
    constexpr std::uint64_t pairs = 10000;
    const auto start = std::chrono::steady_clock::now();
    const auto give_up = start + std::chrono::seconds(20);
    std::uint64_t done = 0;
    while (done < pairs && (done % 100 != 0 || std::chrono::steady_clock::now() < give_up)) {
        ++done;
        s.firing("mesh/clock", "datafeed", "b", done);
        s.replied("mesh/clock", "datafeed", "b", done, "acknowledged");
        s.sync();
    }
    const auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << fmt::format("state store: {} firing+replied pairs{}, 2 fsyncs each, in {}: {:.3f} s, {:.1f} us a pair, "
                             "file {} bytes\n",
                             done, done < pairs ? " (stopped at 20 s)" : "", d.str(), took, took * 1e6 / double(done),
                             s.size());
    CHECK(done >= 100);
    const auto& f = s.fired().at({"mesh/clock", "datafeed"});
    CHECK(f.seq == done);
    CHECK(f.reply == "acknowledged");
    CHECK(f.replies.size() == std::min<std::uint64_t>(done, StateStore::max_replies));
    CHECK(f.replies.back().first == done);
}
