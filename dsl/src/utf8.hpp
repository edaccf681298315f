// UTF-8 as the front end reads it: source files are UTF-8, columns count code
// points, and source text shown on a terminal never carries a control byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace meshrun::dsl::utf8 {

// One character of UTF-8 text: its code point and length in bytes. A byte that
// does not start a valid sequence (RFC 3629: no overlong forms, no surrogates,
// nothing past U+10FFFF) is a character of its own, one byte long, not valid.
struct Char {
    char32_t code = 0;
    std::uint32_t size = 1;
    bool valid = true;
};
Char decode(std::string_view text, std::size_t at);

// The offset of the first invalid byte at or after `from`, or npos.
std::size_t find_invalid(std::string_view text, std::size_t from = 0);

// How many characters `text` holds (an invalid byte counts as one).
std::size_t length(std::string_view text);

// Characters that are escaped when shown: controls (all but tab), and the
// invisible ones that can make text read differently from what it is
// (bidirectional overrides, zero-width spaces, the byte order mark).
bool hidden(char32_t code);

// How a character is shown on a terminal: `\r`, `\x1b` (an ASCII control or an
// invalid byte), `\u{202e}`, or itself; and how many cells that takes (a wide
// character two, a combining mark none; a tab counts one).
struct Shown {
    std::string text;
    std::size_t cells = 1;
};
Shown show(std::string_view text, std::size_t at, const Char& c);
std::size_t cells(const Char& c);  // show(...).cells, without making the text

// Whether the 8 bytes at `at` are all printable ASCII (one cell each, shown as they are).
bool printable8(std::string_view text, std::size_t at);
// The cells `text` takes when shown.
std::size_t width(std::string_view text);

// `text` with every hidden character and invalid byte escaped, for a terminal.
std::string printable(std::string_view text);

}  // namespace meshrun::dsl::utf8
