// The loggers of `meshrun run` and `meshrun up`, with their options. (runtime.hpp declares
// the Logger interface and the factories without options.)
#pragma once

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "meshrun/engine/runtime.hpp"

namespace meshrun::engine {

struct LogOptions {
    bool color = false;       // text: each node's prefix in a color of its own
    bool timestamps = false;  // text: each line starts with the local time, `2026-11-30 14:03:05.123`;
                              // JSON: each object gains `time`, `2026-11-30T14:03:05.123+01:00`
    std::FILE* out = stdout;
    bool journal = false;     // text: `out` is systemd's journal: a line that starts `error:` or `warning:`
                              // gets the syslog priority prefix `<3>` or `<4>` (sd-daemon(3)'s SD_ERR, SD_WARNING)
};
// `[ buzzer ] ...`, one line per log line: control characters and invalid UTF-8 are escaped.
std::unique_ptr<Logger> make_text_logger(std::vector<std::string> node_names, LogOptions options);
// One JSON object a line: `time_us`, `node`, `message` (and `time` with timestamps).
std::unique_ptr<Logger> make_json_logger(LogOptions options);

// The text with what a terminal would act on made visible: C0 controls and DEL as `\n`, `\r`,
// `\t` or `\xNN`, C1 controls as `\uNNNN`, each byte of invalid UTF-8 as `\xNN`. Printable
// text, UTF-8 included, is unchanged (a backslash too: the JSON log has the exact text).
std::string escape_controls(std::string_view text);

// A message as a log line shows it: past 200 bytes cut (at a character's start), `... (N bytes)`
// after it. `shown_head` is the part of the text that shows.
std::string_view shown_head(std::string_view message);
std::string shown(std::string_view message);

// Local time (TZ) to the millisecond: `2026-11-30 14:03:05.123`.
std::string local_timestamp(std::chrono::system_clock::time_point t);

}  // namespace meshrun::engine
