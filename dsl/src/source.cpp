#include <algorithm>
#include <cstring>

#include "meshrun/dsl/source.hpp"

#include "utf8.hpp"

namespace meshrun::dsl {

Location SourceFile::locate(std::uint32_t offset) const {
    offset = std::clamp(offset, line_starts[0], static_cast<std::uint32_t>(text.size()));
    const auto it = std::upper_bound(line_starts.begin(), line_starts.end(), offset);
    const auto line = static_cast<std::uint32_t>(it - line_starts.begin());  // >= 1: offset >= line_starts[0]
    const std::string_view before = std::string_view(text).substr(line_starts[line - 1], offset - line_starts[line - 1]);
    return Location{line, static_cast<std::uint32_t>(utf8::length(before)) + 1};
}

std::string_view SourceFile::line_text(std::uint32_t line) const {
    if (line == 0 || line > line_starts.size()) return {};
    const std::uint32_t begin = line_starts[line - 1];
    std::uint32_t end = line < line_starts.size() ? line_starts[line] - 1 : static_cast<std::uint32_t>(text.size());
    if (end > begin && text[end - 1] == '\r') --end;
    return std::string_view(text).substr(begin, end - begin);
}

std::uint32_t SourceManager::add(std::string path, std::string canonical, std::string text) {
    const bool bom = std::string_view(text).starts_with("\xEF\xBB\xBF");
    SourceFile f{std::move(path), std::move(canonical), std::move(text), {bom ? 3u : 0u}};
    f.line_starts.reserve(f.text.size() / 32 + 1);
    const char* const begin = f.text.data();
    const char* const end = begin + f.text.size();
    for (const char* p = begin; (p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p))));)
        f.line_starts.push_back(static_cast<std::uint32_t>(++p - begin));
    files_.push_back(std::move(f));
    return static_cast<std::uint32_t>(files_.size() - 1);
}

}  // namespace meshrun::dsl
