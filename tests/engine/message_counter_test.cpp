// MessageCounter: where whole messages end in a client's bytes, however they are cut.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "message_counter.hpp"

using meshrun::engine::MessageCounter;

namespace {

// A client's frame with `size` payload bytes, in the shortest length encoding (or the one
// asked for). The payload is all 0x81 bytes, which would read as the start of a text
// frame, so a counter that lost its place would show it.
std::string frame(unsigned opcode, std::uint64_t size, bool fin = true, bool masked = true, int encoding = 0) {
    std::string f(1, static_cast<char>((fin ? 0x80 : 0) | opcode));
    const int enc = encoding ? encoding : size < 126 ? 7 : size < 65536 ? 16 : 64;
    const char mask_bit = masked ? '\x80' : '\0';
    if (enc == 7) {
        f += static_cast<char>(mask_bit | static_cast<char>(size));
    } else {
        f += static_cast<char>(mask_bit | (enc == 16 ? 126 : 127));
        for (int i = enc / 8 - 1; i >= 0; --i) f += static_cast<char>(size >> (8 * i));
    }
    if (masked) f += "\x11\x22\x33\x44";
    return f + std::string(size, '\x81');
}

struct Stream {
    std::string bytes;
    std::vector<std::size_t> ends;  // where each message ends
    void add(const std::string& f, bool ends_message) {
        bytes += f;
        if (ends_message) ends.push_back(bytes.size());
    }
    std::size_t whole_at(std::size_t n) const {
        std::size_t k = 0;
        for (std::size_t e : ends) k += e <= n ? 1 : 0;
        return k;
    }
};

// Every kind of frame a client may send, in an order that mixes them.
Stream mixed() {
    Stream s;
    s.add(frame(0x1, 1), true);                     // "1"
    s.add(frame(0x1, 0), true);                     // an empty message
    s.add(frame(0x9, 2), false);                    // a ping
    s.add(frame(0x1, 3, false), false);             // a message in three fragments...
    s.add(frame(0xA, 0), false);                    // ...a pong between them...
    s.add(frame(0x0, 0, false), false);
    s.add(frame(0x0, 4), true);                     // ...ends here
    s.add(frame(0x1, 126), true);                   // 16-bit length
    s.add(frame(0x1, 65535), true);                 // the largest 16-bit length
    s.add(frame(0x1, 65536), true);                 // 64-bit length
    s.add(frame(0x1, 5, true, true, 64), true);     // a short length written long (Beast refuses it)
    s.add(frame(0x2, 7), true);                     // binary: a whole message too (the session refuses it)
    s.add(frame(0x1, 2, true, false), true);        // unmasked (Beast refuses it; the count still holds)
    s.add(frame(0x8, 2), false);                    // close
    return s;
}

}  // namespace

TEST_CASE("message counter: a whole stream at once", "[engine][counter]") {
    const Stream s = mixed();
    MessageCounter c;
    c.scan(reinterpret_cast<const unsigned char*>(s.bytes.data()), s.bytes.size());
    CHECK(c.whole() == s.ends.size());
    for (std::size_t i = s.ends.size(); i > 0; --i) c.take();
    CHECK(c.whole() == 0);
    c.take();  // nothing to take: stays at zero
    CHECK(c.whole() == 0);
}

TEST_CASE("message counter: one byte at a time, counted at every byte", "[engine][counter]") {
    const Stream s = mixed();
    MessageCounter c;
    for (std::size_t i = 0; i < s.bytes.size(); ++i) {
        c.scan(reinterpret_cast<const unsigned char*>(s.bytes.data()) + i, 1);
        if (c.whole() != s.whole_at(i + 1)) {
            FAIL("after byte " << i + 1 << " of " << s.bytes.size() << ": " << c.whole() << " whole, expected "
                               << s.whole_at(i + 1));
        }
    }
}

TEST_CASE("message counter: random cuts, with messages taken as they come", "[engine][counter]") {
    const Stream s = mixed();
    std::mt19937 rng(7);
    for (int round = 0; round < 200; ++round) {
        MessageCounter c;
        std::size_t at = 0, taken = 0;
        while (at < s.bytes.size()) {
            const std::size_t n = std::min<std::size_t>(s.bytes.size() - at, 1 + rng() % (round % 2 ? 20 : 3000));
            c.scan(reinterpret_cast<const unsigned char*>(s.bytes.data()) + at, n);
            at += n;
            REQUIRE(c.whole() + taken == s.whole_at(at));
            if (c.whole() > 0 && rng() % 2) {
                c.take();
                ++taken;
            }
        }
        CHECK(c.whole() + taken == s.ends.size());
    }
}
