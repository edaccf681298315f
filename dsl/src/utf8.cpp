#include "utf8.hpp"

#include <cstring>

#include <fmt/format.h>

namespace meshrun::dsl::utf8 {

namespace {

bool continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// The next 8 bytes are ASCII: the common case, skipped without decoding.
bool ascii8(std::string_view text, std::size_t at) {
    if (at + 8 > text.size()) return false;
    std::uint64_t word = 0;
    std::memcpy(&word, text.data() + at, 8);
    return (word & 0x8080808080808080ULL) == 0;
}

struct Range {
    char32_t first, last;
};

bool in(char32_t code, const Range* ranges, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i)
        if (code >= ranges[i].first && code <= ranges[i].last) return true;
    return false;
}

// East Asian wide and fullwidth characters, and the emoji blocks: two cells.
constexpr Range wide[] = {{0x1100, 0x115F},   {0x2E80, 0x303E},   {0x3041, 0x33FF},   {0x3400, 0x4DBF},
                          {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},   {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},
                          {0xFE30, 0xFE4F},   {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x1F300, 0x1F64F},
                          {0x1F900, 0x1F9FF}, {0x20000, 0x2FFFD}, {0x30000, 0x3FFFD}};
// Combining marks, joiners and variation selectors: no cell of their own.
constexpr Range zero_width[] = {{0x0300, 0x036F}, {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF}, {0x200C, 0x200D},
                                {0x20D0, 0x20FF}, {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F}};
// Invisible characters that change how text reads: zero-width space, direction
// marks, line and paragraph separators, bidirectional embeddings, overrides and
// isolates, invisible operators, the byte order mark.
constexpr Range invisible[] = {{0x200B, 0x200B}, {0x200E, 0x200F}, {0x2028, 0x202E},
                               {0x2060, 0x2064}, {0x2066, 0x2069}, {0xFEFF, 0xFEFF}};

}  // namespace

Char decode(std::string_view text, std::size_t at) {
    const auto b0 = static_cast<unsigned char>(text[at]);
    if (b0 < 0x80) return Char{b0, 1, true};
    const std::size_t left = text.size() - at;
    auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[at + k]); };
    std::uint32_t size = 0;
    char32_t code = 0;
    unsigned char low = 0x80, high = 0xBF;  // the range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        size = 2;
        code = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        size = 3;
        code = b0 & 0x0F;
        if (b0 == 0xE0) low = 0xA0;   // no overlong forms
        if (b0 == 0xED) high = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        size = 4;
        code = b0 & 0x07;
        if (b0 == 0xF0) low = 0x90;   // no overlong forms
        if (b0 == 0xF4) high = 0x8F;  // nothing past U+10FFFF
    } else {
        return Char{b0, 1, false};
    }
    if (left < size || byte(1) < low || byte(1) > high) return Char{b0, 1, false};
    for (std::uint32_t k = 1; k < size; ++k) {
        if (!continuation(byte(k))) return Char{b0, 1, false};
        code = (code << 6) | (byte(k) & 0x3F);
    }
    return Char{code, size, true};
}

std::size_t find_invalid(std::string_view text, std::size_t from) {
    std::size_t at = from;
    while (at < text.size()) {
        if (ascii8(text, at)) {
            at += 8;
            continue;
        }
        const Char c = decode(text, at);
        if (!c.valid) return at;
        at += c.size;
    }
    return std::string_view::npos;
}

std::size_t length(std::string_view text) {
    std::size_t count = 0;
    for (std::size_t at = 0; at < text.size();) {
        if (ascii8(text, at)) {
            at += 8;
            count += 8;
            continue;
        }
        at += decode(text, at).size;
        ++count;
    }
    return count;
}

bool hidden(char32_t code) {
    if (code < 0x20) return code != '\t';
    if (code >= 0x7F && code <= 0x9F) return true;
    return in(code, invisible, std::size(invisible));
}

std::size_t cells(const Char& c) {
    if (c.code >= 0x20 && c.code < 0x7F) return 1;  // printable ASCII, the common case
    if (!c.valid) return 4;                          // \xff
    if (c.code < 0x80 && hidden(c.code)) return c.code == '\r' ? 2 : 4;
    if (hidden(c.code)) return c.code < 0x1000 ? 6 : 8;  // \u{85}, \u{202e}: all hidden ones fit these
    if (in(c.code, zero_width, std::size(zero_width))) return 0;
    return in(c.code, wide, std::size(wide)) ? 2 : 1;
}

bool printable8(std::string_view text, std::size_t at) {
    if (at + 8 > text.size()) return false;
    std::uint64_t word = 0;
    std::memcpy(&word, text.data() + at, 8);
    constexpr std::uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    // No byte with its high bit set, none below 0x20, none equal to 0x7F (bytes that are zero after
    // a subtraction or an xor set their high bit in `(x - ones) & ~x`).
    const std::uint64_t below = (word - 0x20 * ones) & ~word;
    const std::uint64_t del = word ^ (0x7F * ones);
    return ((word | below | ((del - ones) & ~del)) & highs) == 0;
}

std::size_t width(std::string_view text) {
    std::size_t total = 0;
    for (std::size_t at = 0; at < text.size();) {
        if (printable8(text, at)) {
            at += 8;
            total += 8;
            continue;
        }
        const Char c = decode(text, at);
        total += cells(c);
        at += c.size;
    }
    return total;
}

Shown show(std::string_view text, std::size_t at, const Char& c) {
    if (c.code >= 0x20 && c.code < 0x7F) return Shown{std::string(1, text[at]), 1};
    if (!c.valid || (c.code < 0x80 && hidden(c.code))) {
        if (c.valid && c.code == '\r') return Shown{"\\r", 2};
        return Shown{fmt::format("\\x{:02x}", static_cast<unsigned char>(text[at])), 4};
    }
    if (hidden(c.code)) return Shown{fmt::format("\\u{{{:x}}}", static_cast<std::uint32_t>(c.code)), cells(c)};
    return Shown{std::string(text.substr(at, c.size)), cells(c)};
}

std::string printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t at = 0; at < text.size();) {
        const auto b = static_cast<unsigned char>(text[at]);
        if (b >= 0x20 && b < 0x7F) {  // printable ASCII, as it is
            out += static_cast<char>(b);
            ++at;
            continue;
        }
        const Char c = decode(text, at);
        if (c.valid && !hidden(c.code)) {
            out.append(text.substr(at, c.size));
        } else {
            out += show(text, at, c).text;
        }
        at += c.size;
    }
    return out;
}

}  // namespace meshrun::dsl::utf8
