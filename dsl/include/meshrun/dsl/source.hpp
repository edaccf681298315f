// Source files and spans: where every piece of the AST came from.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace meshrun::dsl {

// A half-open byte range [begin, end) in one source file.
struct Span {
    std::uint32_t file = 0;
    std::uint32_t begin = 0;
    std::uint32_t end = 0;
};

struct Location {
    std::uint32_t line = 0;    // 1-based
    std::uint32_t column = 0;  // 1-based, in characters (code points): a tab is one, so is `ü`
};

struct SourceFile {
    std::string path;      // as the user named it (or as resolved from an include)
    std::string canonical; // canonical path, for include cycles; empty for in-memory text
    std::string text;  // as read, UTF-8 (a byte order mark at its start is not part of line 1)
    std::vector<std::uint32_t> line_starts;  // byte offset of each line; the first is 3 after a byte order mark

    Location locate(std::uint32_t offset) const;
    std::string_view line_text(std::uint32_t line) const;  // without its newline
};

// Owns every file read while compiling one topology; spans index into it.
// References to its files stay valid as files are added (an include is read
// while the file that includes it is being parsed).
class SourceManager {
public:
    std::uint32_t add(std::string path, std::string canonical, std::string text);
    const SourceFile& file(std::uint32_t id) const { return files_[id]; }
    std::size_t size() const { return files_.size(); }
    std::string_view text(Span s) const {
        return std::string_view(files_[s.file].text).substr(s.begin, s.end - s.begin);
    }

private:
    std::deque<SourceFile> files_;
};

}  // namespace meshrun::dsl
