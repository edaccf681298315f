// Counts the whole websocket messages in the bytes a client has sent, as they
// arrive, in pieces of any size. It reads nothing but frame lengths and flags
// (RFC 6455 5.2); Beast checks and decodes everything. A message is whole once
// its final data frame is: control frames (ping, pong, close) only ride along.
//
// The node uses it to read messages already received without a trip through
// the event loop: Beast's synchronous read then finds every byte it needs.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

namespace meshrun::engine {

class MessageCounter {
public:
    void scan(const unsigned char* p, std::size_t n) {
        while (n > 0) {
            if (payload_left_ > 0) {
                const auto skip = static_cast<std::size_t>(std::min<std::uint64_t>(n, payload_left_));
                p += skip;
                n -= skip;
                payload_left_ -= skip;
                if (payload_left_ == 0 && ends_message_) ++whole_;
                continue;
            }
            head_[head_size_++] = *p++;
            --n;
            if (head_size_ < header_size()) continue;
            head_size_ = 0;
            ends_message_ = (head_[0] & 0x80) && !(head_[0] & 0x08);  // FIN, and not a control frame
            payload_left_ = payload_size();
            if (payload_left_ == 0 && ends_message_) ++whole_;
        }
    }

    // Messages received whole and not yet taken.
    std::size_t whole() const { return whole_; }
    void take() {
        if (whole_ > 0) --whole_;
    }

private:
    // The header's size, once its first two bytes tell it.
    std::size_t header_size() const {
        if (head_size_ < 2) return 2;
        const unsigned len = head_[1] & 0x7f;
        return 2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + ((head_[1] & 0x80) ? 4 : 0);
    }
    std::uint64_t payload_size() const {
        const unsigned len = head_[1] & 0x7f;
        if (len < 126) return len;
        std::uint64_t n = 0;
        for (std::size_t i = 0; i < (len == 126 ? 2u : 8u); ++i) n = n << 8 | head_[2 + i];
        return n;
    }

    std::array<unsigned char, 14> head_{};
    std::size_t head_size_ = 0;
    std::uint64_t payload_left_ = 0;
    bool ends_message_ = false;
    std::size_t whole_ = 0;
};

}  // namespace meshrun::engine
