// The message boundary: what a session, the node and a link share, and the one
// codec between websocket frames and messages. Sessions and links are the only
// code that touches frames; the interpreter sees messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace meshrun::engine {

// Who is at the other end of a connection: its address, and the identity it proved
// (none yet: authentication attaches here).
struct Peer {
    std::string address;   // HOST:PORT
    std::string identity;  // empty: anonymous
};

struct Message {
    int channel = -1;              // the channel's index among its node's sources
    std::string payload;
    const Peer* from = nullptr;    // the session's peer; null for the node's own firings
    std::uint64_t sequence = 0;    // the sender's number for it (meshrun.1); 0: not numbered
    bool resent = false;           // sent again after a reconnect: it may have been fired already
};

// Why a frame is refused: the close code and reason the connection ends with.
struct Refusal {
    std::uint16_t code;
    std::string_view reason;
};

// The codec. Two protocols (docs/delivery.md): without a subprotocol, one text frame a
// message and one text frame its reply; with `meshrun.1`, numbered frames:
// `m SEQ PAYLOAD` (a message), `r SEQ PAYLOAD` (the same again after a reconnect) and
// `a SEQ REPLY` (its reply).
namespace wire {

constexpr std::string_view protocol = "meshrun.1";

// A numbered frame's parts, or nothing when it is not one of `kinds`.
struct Numbered {
    char kind;
    std::uint64_t seq;
    std::string_view body;
};
inline std::optional<Numbered> parse_numbered(std::string_view frame, std::string_view kinds) {
    if (frame.size() < 4 || kinds.find(frame[0]) == std::string_view::npos || frame[1] != ' ') return std::nullopt;
    std::uint64_t seq = 0;
    std::size_t i = 2;
    for (; i < frame.size() && frame[i] >= '0' && frame[i] <= '9'; ++i) {
        if (i - 2 >= 19) return std::nullopt;  // past 10^19: not a sequence number
        seq = seq * 10 + static_cast<std::uint64_t>(frame[i] - '0');
    }
    if (i == 2 || i == frame.size() || frame[i] != ' ' || seq == 0 || (frame[2] == '0')) return std::nullopt;
    return Numbered{frame[0], seq, frame.substr(i + 1)};
}

// What numbering adds to a message or reply: `m `, up to 20 digits, a space.
constexpr std::size_t numbered_overhead = 24;

// The frame of a numbered message or reply.
inline std::string numbered(char kind, std::uint64_t seq, std::string_view body) {
    std::string frame;
    frame.reserve(body.size() + 24);
    frame += kind;
    frame += ' ';
    frame += std::to_string(seq);
    frame += ' ';
    frame += body;
    return frame;
}

// A data frame that arrived on a channel's session, as that channel's message; or why not.
// `numbered`: the session speaks meshrun.1.
inline std::optional<Refusal> decode(bool text, std::string&& frame, Message& out, bool numbered = false) {
    if (!text) return Refusal{1003, "text frames only"};
    if (numbered) {
        const auto n = parse_numbered(frame, "mr");
        if (!n) return Refusal{1002, "meshrun.1: expected `m SEQ PAYLOAD` or `r SEQ PAYLOAD`"};
        out.sequence = n->seq;
        out.resent = n->kind == 'r';
        out.payload.assign(n->body);
        return std::nullopt;
    }
    out.payload = std::move(frame);
    return std::nullopt;
}

// A reply that arrived on a link, for the request in flight; or why the link refuses it.
inline std::optional<Refusal> decode_reply(bool text) {
    if (!text) return Refusal{1003, "text replies only"};
    return std::nullopt;
}

// The frame payload that carries a message, or a reply.
inline std::string_view encode(std::string_view payload) { return payload; }

}  // namespace wire
}  // namespace meshrun::engine
