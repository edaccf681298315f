// The diagnostic registry, the collector, and the two renderings (text, JSON).
#include <algorithm>
#include <array>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "meshrun/dsl/diagnostic.hpp"

#include "utf8.hpp"

namespace meshrun::dsl {

std::string_view kind_name(Kind k) {
    static constexpr std::array names = {
#define MESHRUN_X(id, name) std::string_view(name),
        MESHRUN_DIAGNOSTIC_KINDS(MESHRUN_X)
#undef MESHRUN_X
    };
    return names[static_cast<std::size_t>(k)];
}

bool stops_checks(Kind k) {
    return k == Kind::syntax || k == Kind::too_deep || k == Kind::include_not_found || k == Kind::include_cycle;
}

std::string_view severity_name(Severity s) {
    switch (s) {
        case Severity::error: return "error";
        case Severity::warning: return "warning";
        case Severity::note: return "note";
    }
    return "error";
}

Diagnostic& Diagnostics::error(Kind k, Span s, std::string message) {
    return list_.emplace_back(Diagnostic{Severity::error, k, s, std::move(message), {}});
}

Diagnostic& Diagnostics::warning(Kind k, Span s, std::string message) {
    return list_.emplace_back(Diagnostic{Severity::warning, k, s, std::move(message), {}});
}

std::size_t Diagnostics::errors() const {
    return static_cast<std::size_t>(
        std::count_if(list_.begin(), list_.end(), [](const auto& d) { return d.severity == Severity::error; }));
}

std::size_t Diagnostics::warnings() const {
    return static_cast<std::size_t>(
        std::count_if(list_.begin(), list_.end(), [](const auto& d) { return d.severity == Severity::warning; }));
}

void Diagnostics::sort_by_position() {
    std::stable_sort(list_.begin(), list_.end(), [](const Diagnostic& a, const Diagnostic& b) {
        return std::tie(a.span.file, a.span.begin) < std::tie(b.span.file, b.span.begin);
    });
}

namespace {

struct Style {
    bool on;
    std::string_view operator()(std::string_view code) const { return on ? code : std::string_view(); }
};
constexpr std::string_view bold = "\x1b[1m", red = "\x1b[1;31m", magenta = "\x1b[1;35m", cyan = "\x1b[1;36m",
                           green = "\x1b[1;32m", reset = "\x1b[0m";

std::string_view severity_color(Severity s) {
    return s == Severity::error ? red : s == Severity::warning ? magenta : cyan;
}

// A source line is shown whole up to this many cells; a longer one is cut
// around the span, from `excerpt_lead` cells before it, with `...` where cut.
constexpr std::size_t excerpt_width = 100;
constexpr std::size_t excerpt_lead = 40;

// One character of a line: its length in bytes and its width in cells as
// shown (utf8::cells). Printable ASCII, nearly every character, is not decoded.
struct Step {
    std::size_t size, cells;
};
Step step(std::string_view line, std::size_t at) {
    const auto b = static_cast<unsigned char>(line[at]);
    if (b >= 0x20 && b < 0x7F) return {1, 1};
    const utf8::Char c = utf8::decode(line, at);
    return {c.size, utf8::cells(c)};
}

// `   14 |     send led to buzer/signal` and `      |             ^~~~~`.
// The line is shown as utf8::show shows each character: never a control byte.
// The caret line copies the line's tabs, so that both align on a terminal.
void render_excerpt(std::string& out, const SourceFile& f, Span span, Style style) {
    const Location loc = f.locate(span.begin);
    const std::string_view line = f.line_text(loc.line);
    const std::size_t first = static_cast<std::size_t>(line.data() - f.text.data());
    // The span within the line, in bytes: [begin, end), up to the end of its first line.
    const std::size_t begin = std::min<std::size_t>(std::max<std::size_t>(span.begin, first) - first, line.size());
    const std::size_t end = std::clamp<std::size_t>(std::max<std::size_t>(span.end, first) - first, begin, line.size());

    // Cells before the span (`lead`), and in the line (`total`) as far as the
    // window can reach: past `reach`, the line is cut after the window anyway.
    const std::size_t lead = utf8::width(line.substr(0, begin));
    const std::size_t reach = std::max(lead + excerpt_width - excerpt_lead, excerpt_width) + 1;
    std::size_t total = lead, at = begin;
    while (at < line.size() && total < reach) {
        const Step c = step(line, at);
        total += c.cells;
        at += c.size;
    }
    // The cells shown: [from, to).
    std::size_t from = 0, to = total;
    if (total > excerpt_width) {
        from = std::min(lead > excerpt_lead ? lead - excerpt_lead : 0, total - excerpt_width);
        to = from + excerpt_width;
    }
    const bool cut_after = at < line.size() || to < total;

    std::string shown, pad;
    std::size_t caret = 0, cell = 0;
    at = 0;
    if (from > 0) {
        shown += "...";
        pad += "   ";
    }
    while (at < line.size() && cell < from) {  // the part cut off
        if (cell + 8 <= from && utf8::printable8(line, at)) {
            at += 8;
            cell += 8;
            continue;
        }
        const Step c = step(line, at);
        cell += c.cells;
        at += c.size;
    }
    while (at < line.size()) {
        if (const char b = line[at]; b >= 0x20 && b < 0x7F) {  // printable ASCII: as it is, one cell
            if (cell + 1 > to) break;
            shown += b;
            if (at < begin)
                pad += ' ';
            else if (at < end)
                ++caret;
            ++cell;
            ++at;
            continue;
        }
        const utf8::Char c = utf8::decode(line, at);
        const utf8::Shown s = utf8::show(line, at, c);
        if (cell + s.cells > to) break;
        shown += s.text;
        if (at < begin)
            pad.append(c.valid && c.code == '\t' ? std::string("\t") : std::string(s.cells, ' '));
        else if (at < end)
            caret += s.cells;
        cell += s.cells;
        at += c.size;
    }
    if (cut_after) shown += "...";
    fmt::format_to(std::back_inserter(out), "{:>5} | {}\n", loc.line, shown);
    fmt::format_to(std::back_inserter(out), "      | {}{}^{}{}\n", pad, style(green),
                   std::string(std::max<std::size_t>(caret, 1) - 1, '~'), style(reset));
}

std::string location(const SourceManager& sm, Span span) {
    const SourceFile& f = sm.file(span.file);
    const Location loc = f.locate(span.begin);
    return fmt::format("{}:{}:{}", utf8::printable(f.path), loc.line, loc.column);
}

}  // namespace

std::string render_text(const Diagnostic& d, const SourceManager& sm, RenderOptions opt) {
    const Style style{opt.color};
    std::string out;
    fmt::format_to(std::back_inserter(out), "{}{}:{} {}{}:{} {}{}{} [{}]\n", style(bold), location(sm, d.span),
                   style(reset), style(severity_color(d.severity)), severity_name(d.severity), style(reset),
                   style(bold), utf8::printable(d.message), style(reset), kind_name(d.kind));
    render_excerpt(out, sm.file(d.span.file), d.span, style);
    for (const Note& n : d.notes) {
        const Span at = n.span.value_or(d.span);
        fmt::format_to(std::back_inserter(out), "{}{}:{} {}note:{} {}\n", style(bold), location(sm, at), style(reset),
                       style(cyan), style(reset), utf8::printable(n.message));
        if (n.span) render_excerpt(out, sm.file(at.file), at, style);
    }
    return out;
}

std::string render_json(const Diagnostic& d, const SourceManager& sm) {
    auto place = [&](Span s) {
        const SourceFile& f = sm.file(s.file);
        const Location b = f.locate(s.begin), e = f.locate(s.end);
        return nlohmann::json{{"file", f.path},
                              {"line", b.line},
                              {"column", b.column},
                              {"end", {{"line", e.line}, {"column", e.column}}}};
    };
    nlohmann::json j = place(d.span);
    j["severity"] = severity_name(d.severity);
    j["kind"] = kind_name(d.kind);
    j["message"] = d.message;
    j["notes"] = nlohmann::json::array();
    for (const Note& n : d.notes) {
        nlohmann::json note = n.span ? place(*n.span) : nlohmann::json::object();
        note["message"] = n.message;
        j["notes"].push_back(std::move(note));
    }
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<std::string> closest(std::string_view word, const std::vector<std::string_view>& candidates) {
    // The same word in other case (`VISITS` for `visits`) first, however long.
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    for (std::string_view c : candidates)
        if (c != word && c.size() == word.size() &&
            std::equal(c.begin(), c.end(), word.begin(), [&](char a, char b) { return lower(a) == lower(b); }))
            return std::string(c);
    const std::size_t limit = std::max<std::size_t>(1, word.size() / 3);
    std::optional<std::string> best;
    std::size_t best_distance = limit + 1;
    std::vector<std::size_t> before, prev, row;  // rows i-2, i-1 and i of the distance table
    for (std::string_view c : candidates) {
        if (c == word) continue;
        const std::size_t gap = c.size() > word.size() ? c.size() - word.size() : word.size() - c.size();
        if (gap >= best_distance) continue;
        // Edit distance where swapping two neighbours costs one (optimal string alignment).
        before.assign(c.size() + 1, 0);
        prev.resize(c.size() + 1);
        row.resize(c.size() + 1);
        for (std::size_t j = 0; j <= c.size(); ++j) prev[j] = j;
        for (std::size_t i = 1; i <= word.size(); ++i) {
            row[0] = i;
            for (std::size_t j = 1; j <= c.size(); ++j) {
                row[j] = std::min({prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (word[i - 1] == c[j - 1] ? 0 : 1)});
                if (i > 1 && j > 1 && word[i - 1] == c[j - 2] && word[i - 2] == c[j - 1])
                    row[j] = std::min(row[j], before[j - 2] + 1);
            }
            std::swap(before, prev);
            std::swap(prev, row);
        }
        if (prev[c.size()] < best_distance) {
            best_distance = prev[c.size()];
            best = std::string(c);
        }
    }
    return best;
}

}  // namespace meshrun::dsl
