// A libFuzzer target for the path from a client's bytes to messages, without sockets:
// MessageCounter (engine/src/message_counter.hpp), which counts the whole websocket
// messages in received bytes as they arrive in pieces, and the codec of messages and
// meshrun.1 frames (engine/src/wire.hpp, docs/delivery.md). Both are plain C++: no Boost.
//
// An input is
//
//     K  SELECTOR*K  STREAM
//
// K (one byte, cut to what follows) selectors say how STREAM arrives: each selector's low
// 7 bits are a piece's size less one (0x7f: all that is left), and its high bit takes a
// message after that piece (what the node does when it reads one). The selectors are used
// in turn until STREAM is spent; with none, STREAM arrives whole.
//
// Checked:
// - MessageCounter against a reference parser below, written apart from it: after every
//   piece, the messages it counts whole, less those taken, are the messages the reference
//   finds whole in the bytes so far (a data frame with FIN whose payload has all arrived),
//   less those taken. Whatever the bytes: the counter only reads lengths and flags.
// - The codec on every text frame the reference finds whole (unmasked), and on STREAM as
//   one frame's payload: parse_numbered accepts only what `numbered` writes (the parts
//   it returns write the frame back byte for byte: no leading zero, no seq 0, one space,
//   a kind it was asked for); `decode` agrees with parse_numbered; and
//   numbered(kind, seq, body) parses back to kind, seq and body, for a kind, seq and body
//   taken from STREAM.
//
// Built and run by tests/fuzz/run_fuzz_wire.sh.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "message_counter.hpp"
#include "wire.hpp"

namespace {

namespace engine = meshrun::engine;
namespace wire = meshrun::engine::wire;

[[noreturn]] void fail(const char* what, std::uint64_t a = 0, std::uint64_t b = 0) {
    std::fprintf(stderr, "fuzz_wire: %s (%llu, %llu)\n", what, static_cast<unsigned long long>(a),
                 static_cast<unsigned long long>(b));
    std::abort();
}

#define FUZZ_CHECK(cond, ...)                                               \
    do {                                                                    \
        if (!(cond)) fail("check failed: " #cond __VA_OPT__(, ) __VA_ARGS__); \
    } while (0)

// The reference: frames read from the start of the whole stream (RFC 6455 5.2), as far as
// they are whole. A frame's 2-byte head gives FIN, the opcode, the mask bit and a 7-bit
// length; 126 means a 16-bit length follows, 127 a 64-bit one; then the 4-byte mask key
// when masked; then the payload.
struct Frame {
    bool fin;
    unsigned opcode;
    std::size_t payload_at;    // offset of the payload in the stream
    std::uint64_t payload_size;
    bool masked;
    unsigned char key[4];
    std::size_t end;           // offset just past the frame
};

std::vector<Frame> whole_frames(const unsigned char* s, std::size_t size) {
    std::vector<Frame> frames;
    std::size_t at = 0;
    while (size - at >= 2) {
        Frame f{};
        f.fin = (s[at] & 0x80) != 0;
        f.opcode = s[at] & 0x0f;
        f.masked = (s[at + 1] & 0x80) != 0;
        const unsigned len7 = s[at + 1] & 0x7f;
        const std::size_t extended = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        const std::size_t head = 2 + extended + (f.masked ? 4 : 0);
        if (size - at < head) break;
        if (extended == 0) {
            f.payload_size = len7;
        } else {
            f.payload_size = 0;
            for (std::size_t i = 0; i < extended; ++i) f.payload_size = f.payload_size * 256 + s[at + 2 + i];
        }
        if (f.masked) std::copy(s + at + 2 + extended, s + at + head, f.key);
        f.payload_at = at + head;
        if (f.payload_size > size - f.payload_at) break;  // not all arrived (compared without overflow)
        f.end = f.payload_at + static_cast<std::size_t>(f.payload_size);
        frames.push_back(f);
        at = f.end;
    }
    return frames;
}

// A data frame (opcode below 8: continuation, text, binary, or a reserved one) with FIN ends a
// message; control frames (8 and up: close, ping, pong, reserved) ride along.
bool ends_message(const Frame& f) { return f.fin && f.opcode < 8; }

void check_counter(const unsigned char* selectors, std::size_t k, const unsigned char* s, std::size_t size,
                   const std::vector<Frame>& frames) {
    std::vector<std::size_t> ends;  // where each message ends
    for (const Frame& f : frames) {
        if (ends_message(f)) ends.push_back(f.end);
    }
    engine::MessageCounter counter;
    std::size_t at = 0, taken = 0, turn = 0;
    while (at < size) {
        std::size_t piece = size - at;
        bool take = false;
        if (k > 0) {
            const unsigned char sel = selectors[turn++ % k];
            if ((sel & 0x7f) != 0x7f) piece = std::min<std::size_t>(piece, (sel & 0x7fu) + 1);
            take = (sel & 0x80) != 0;
        }
        counter.scan(s + at, piece);
        at += piece;
        const std::size_t arrived =
            static_cast<std::size_t>(std::upper_bound(ends.begin(), ends.end(), at) - ends.begin());
        FUZZ_CHECK(counter.whole() == arrived - taken, counter.whole(), arrived - taken);
        if (take) {
            counter.take();
            if (arrived > taken) ++taken;  // taking from nothing leaves nothing
            FUZZ_CHECK(counter.whole() == arrived - taken, counter.whole(), arrived - taken);
        }
    }
    FUZZ_CHECK(counter.whole() == ends.size() - taken, counter.whole(), ends.size() - taken);
}

// A frame that parse_numbered accepts is one that numbered writes, part for part.
void check_parse(std::string_view frame, std::string_view kinds) {
    const auto n = wire::parse_numbered(frame, kinds);
    if (!n) return;
    FUZZ_CHECK(kinds.find(n->kind) != std::string_view::npos);
    FUZZ_CHECK(n->seq >= 1, n->seq);
    // The body is the frame's tail, not a copy.
    FUZZ_CHECK(n->body.data() >= frame.data() && n->body.data() + n->body.size() == frame.data() + frame.size());
    FUZZ_CHECK(wire::numbered(n->kind, n->seq, n->body) == frame, n->seq, frame.size());
}

// `decode` of a text frame (meshrun.1 or not) agrees with parse_numbered; anything else is refused 1003.
void check_decode(std::string_view frame) {
    check_parse(frame, "mr");
    check_parse(frame, "a");
    check_parse(frame, "mra");
    const auto n = wire::parse_numbered(frame, "mr");

    engine::Message numbered_msg;
    const auto refusal = wire::decode(true, std::string(frame), numbered_msg, true);
    if (n) {
        FUZZ_CHECK(!refusal);
        FUZZ_CHECK(numbered_msg.sequence == n->seq, numbered_msg.sequence, n->seq);
        FUZZ_CHECK(numbered_msg.resent == (n->kind == 'r'));
        FUZZ_CHECK(numbered_msg.payload == n->body);
    } else {
        FUZZ_CHECK(refusal && refusal->code == 1002, refusal ? refusal->code : 0);
    }

    engine::Message plain;
    FUZZ_CHECK(!wire::decode(true, std::string(frame), plain, false));
    FUZZ_CHECK(plain.payload == frame && plain.sequence == 0 && !plain.resent);

    engine::Message binary;
    const auto refused = wire::decode(false, std::string(frame), binary, true);
    FUZZ_CHECK(refused && refused->code == 1003, refused ? refused->code : 0);
    FUZZ_CHECK(wire::decode_reply(true) == std::nullopt);
    FUZZ_CHECK(wire::decode_reply(false) && wire::decode_reply(false)->code == 1003);
    FUZZ_CHECK(wire::encode(frame) == frame);
}

// parse_numbered takes at most 19 digits (below 10^19) while numbered writes any uint64_t: the
// 20-digit numbers from 10^19 to 2^64-1 do not round-trip. A sender numbers from 1 and could not
// reach them in any lifetime; they are left out here (and reported).
constexpr std::uint64_t parsed_seq_limit = 10'000'000'000'000'000'000ull;

// numbered(kind, seq, body) reads back as kind, seq and body; the kind, seq and body from `s`.
void check_round_trip(const unsigned char* s, std::size_t size) {
    if (size < 9) return;
    const char kind = "mra"[s[0] % 3];
    std::uint64_t seq = 0;
    for (std::size_t i = 1; i < 9; ++i) seq = seq << 8 | s[i];
    // Small numbers are the common ones: the top bits of the first byte shorten it.
    seq >>= (s[0] >> 2) % 64;
    if (seq == 0 || seq >= parsed_seq_limit) return;
    const std::string_view body(reinterpret_cast<const char*>(s + 9), size - 9);
    const std::string frame = wire::numbered(kind, seq, body);
    const auto n = wire::parse_numbered(frame, std::string_view(&kind, 1));
    FUZZ_CHECK(n.has_value(), seq, body.size());
    FUZZ_CHECK(n->kind == kind && n->seq == seq && n->body == body, n->seq, seq);
    // And it is refused as any other kind.
    const std::string_view others = kind == 'a' ? "mr" : "a";
    FUZZ_CHECK(!wire::parse_numbered(frame, others));
    check_decode(frame);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t k = std::min<std::size_t>(data[0], size - 1);
    const unsigned char* selectors = data + 1;
    const unsigned char* s = data + 1 + k;
    const std::size_t n = size - 1 - k;

    const std::vector<Frame> frames = whole_frames(s, n);
    check_counter(selectors, k, s, n, frames);

    // The messages as the node would read them: the payload of each whole text frame that is a
    // message alone (FIN, not fragmented), unmasked.
    for (const Frame& f : frames) {
        if (f.opcode != 0x1 || !f.fin) continue;
        std::string payload(reinterpret_cast<const char*>(s + f.payload_at), static_cast<std::size_t>(f.payload_size));
        if (f.masked) {
            for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(payload[i] ^ f.key[i % 4]);
        }
        check_decode(payload);
    }
    // And the stream itself as one frame's payload, and as the parts of one.
    check_decode(std::string_view(reinterpret_cast<const char*>(s), n));
    check_round_trip(s, n);
    return 0;
}
