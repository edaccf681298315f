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

// The largest message (and reply) a node takes: a bigger one closes its connection with 1009.
constexpr std::size_t max_message = 64 * 1024;

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
    std::uint64_t sequence = 0;    // the sender's number for it; 0: not numbered
};

// Why a frame is refused: the close code and reason the connection ends with.
struct Refusal {
    std::uint16_t code;
    std::string_view reason;
};

// The codec. Today's wire is one text frame a message, and one text frame its reply.
namespace wire {

// A data frame that arrived on a channel's session, as that channel's message; or why not.
inline std::optional<Refusal> decode(bool text, std::string&& frame, Message& out) {
    if (!text) return Refusal{1003, "text frames only"};
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
