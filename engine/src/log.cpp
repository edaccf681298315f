// Where a node's log lines go: `[ buzzer ] ...` for people, or one JSON object a line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "meshrun/engine/log.hpp"

namespace meshrun::engine {

namespace {

// The length of the valid UTF-8 sequence (RFC 3629) that starts `s` with a byte over 0x7f; 0 when
// it is not one: a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, cut short.
std::size_t utf8_sequence(std::string_view s) {
    const auto byte = [&s](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char lead = byte(0);
    std::size_t n = 0;
    unsigned char low = 0x80, high = 0xbf;  // the range of the second byte
    if (lead >= 0xc2 && lead <= 0xdf) {
        n = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        n = 3;
        if (lead == 0xe0) low = 0xa0;   // overlong below
        if (lead == 0xed) high = 0x9f;  // surrogates above
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        n = 4;
        if (lead == 0xf0) low = 0x90;   // overlong below
        if (lead == 0xf4) high = 0x8f;  // past U+10FFFF above
    } else {
        return 0;
    }
    if (s.size() < n || byte(1) < low || byte(1) > high) return 0;
    for (std::size_t k = 2; k < n; ++k)
        if (byte(k) < 0x80 || byte(k) > 0xbf) return 0;
    return n;
}

struct LocalTime {
    std::tm tm{};
    int millis = 0;
};

LocalTime local_time(std::chrono::system_clock::time_point t) {
    const auto seconds = std::chrono::floor<std::chrono::seconds>(t);
    LocalTime out;
    out.millis = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(t - seconds).count());
    const std::time_t whole = std::chrono::system_clock::to_time_t(seconds);
    localtime_r(&whole, &out.tm);
    return out;
}

// `2026-11-30 14:03:05.123`, or `2026-11-30T14:03:05.123+01:00` in ISO 8601 with the UTC offset.
std::string format_time(const LocalTime& t, bool iso) {
    char date[32];
    std::strftime(date, sizeof date, iso ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &t.tm);
    if (!iso) return fmt::format("{}.{:03}", date, t.millis);
    const long offset = t.tm.tm_gmtoff / 60;  // minutes east of UTC
    const long magnitude = offset < 0 ? -offset : offset;
    return fmt::format("{}.{:03}{}{:02}:{:02}", date, t.millis, offset < 0 ? '-' : '+', magnitude / 60, magnitude % 60);
}

class TextLogger final : public Logger {
public:
    TextLogger(std::vector<std::string> names, LogOptions options) : options_(options) {
        for (const auto& n : names) width_ = std::max(width_, n.size());
        for (std::size_t i = 0; i < names.size(); ++i) colors_[names[i]] = 31 + static_cast<int>(i % 6);
    }
    void line(const std::string& node, std::string_view text) override {
        const std::string stamp =
            options_.timestamps ? format_time(local_time(std::chrono::system_clock::now()), false) + " " : "";
        const std::string shown = escape_controls(text);
        const std::string_view priority = !options_.journal                ? ""
                                          : text.starts_with("error:")   ? "<3>"
                                          : text.starts_with("warning:") ? "<4>"
                                                                         : "";
        if (options_.color) {
            const int c = colors_.count(node) ? colors_[node] : 37;
            fmt::print(options_.out, "{}{}\x1b[{}m[ {:<{}} ]\x1b[0m {}\n", priority, stamp, c, node, width_, shown);
        } else {
            fmt::print(options_.out, "{}{}[ {:<{}} ] {}\n", priority, stamp, node, width_, shown);
        }
        std::fflush(options_.out);
    }

private:
    LogOptions options_;
    std::size_t width_ = 0;
    std::map<std::string, int> colors_;
};

class JsonLogger final : public Logger {
public:
    explicit JsonLogger(LogOptions options) : options_(options) {}
    void line(const std::string& node, std::string_view text) override {
        const auto now = std::chrono::system_clock::now();
        nlohmann::json j;
        if (options_.timestamps) j["time"] = format_time(local_time(now), true);
        j["time_us"] = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
        j["node"] = node;
        j["message"] = std::string(text);
        fmt::print(options_.out, "{}\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        std::fflush(options_.out);
    }

private:
    LogOptions options_;
};

}  // namespace

namespace {

// The code point of one well-formed UTF-8 sequence.
char32_t decode(std::string_view seq) {
    const auto b = [&](std::size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(seq[i])); };
    switch (seq.size()) {
        case 2: return ((b(0) & 0x1f) << 6) | (b(1) & 0x3f);
        case 3: return ((b(0) & 0x0f) << 12) | ((b(1) & 0x3f) << 6) | (b(2) & 0x3f);
        default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3f) << 12) | ((b(2) & 0x3f) << 6) | (b(3) & 0x3f);
    }
}

// Characters that move or hide text on a terminal rather than show: C1 controls (U+009B is a
// CSI on some terminals), the line and paragraph separators, and the bidirectional controls
// (U+202E shows `bidi\u202egnp.exe` as `bidiexe.png`).
bool invisible(char32_t cp) {
    return (cp >= 0x80 && cp < 0xa0) || cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

}  // namespace

std::string_view shown_head(std::string_view message) {
    constexpr std::size_t most = 200;
    if (message.size() <= most) return message;
    std::size_t cut = most;
    while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
    return message.substr(0, cut);
}

std::string shown(std::string_view message) {
    const std::string_view head = shown_head(message);
    if (head.size() == message.size()) return std::string(message);
    return fmt::format("{}... ({} bytes)", head, message.size());
}

std::string escape_controls(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x80) {
            switch (c) {
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                default:
                    if (c < 0x20 || c == 0x7f) {
                        fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
                    } else {
                        out += static_cast<char>(c);
                    }
            }
            ++i;
            continue;
        }
        const std::size_t n = utf8_sequence(text.substr(i));
        if (n == 0) {
            fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
            ++i;
        } else if (const char32_t cp = decode(text.substr(i, n)); invisible(cp)) {
            fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<std::uint32_t>(cp));
            i += n;
        } else {
            out.append(text.substr(i, n));
            i += n;
        }
    }
    return out;
}

std::string local_timestamp(std::chrono::system_clock::time_point t) { return format_time(local_time(t), false); }

std::unique_ptr<Logger> make_text_logger(std::vector<std::string> node_names, LogOptions options) {
    return std::make_unique<TextLogger>(std::move(node_names), options);
}
std::unique_ptr<Logger> make_json_logger(LogOptions options) { return std::make_unique<JsonLogger>(options); }

std::unique_ptr<Logger> make_text_logger(std::vector<std::string> node_names, bool color) {
    return make_text_logger(std::move(node_names), LogOptions{color, false, stdout});
}
std::unique_ptr<Logger> make_json_logger() { return make_json_logger(LogOptions{}); }

}  // namespace meshrun::engine
