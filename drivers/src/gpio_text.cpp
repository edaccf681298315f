// The gpiod driver's names and words (gpio_text.hpp): no chip needed.
#include "gpio_text.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>

namespace meshrun::drivers::gpio {

namespace {

std::string bt(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out.append("`").append(s).append("`");
    return out;
}

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool same_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

std::string system_text(int error) { return std::strerror(error); }

bool looks_like_number_or_name(std::string_view spec) {
    return parse_offset(spec).has_value() || (spec.starts_with("gpiochip") && parse_offset(spec.substr(8)));
}

// `a`, `b` or `c`
std::string one_of(const std::vector<std::string>& names) {
    std::string out;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
        out += bt(names[i]);
    }
    return out;
}

std::string offset_range(const ChipInfo& chip) {
    return chip.lines == 0 ? "it has no lines" : "offsets 0 to " + std::to_string(chip.lines - 1);
}

}  // namespace

std::optional<unsigned> parse_offset(std::string_view text) {
    if (text.empty() || text.size() > 9) return std::nullopt;
    unsigned value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    return value;
}

std::string_view how_name(ChipHow how) {
    switch (how) {
        case ChipHow::name: return "name";
        case ChipHow::path: return "path";
        case ChipHow::label: return "label";
    }
    return "name";
}

std::optional<ChipMatch> match_chip(std::string_view spec, const std::vector<ChipInfo>& chips) {
    if (spec.empty()) return std::nullopt;
    if (spec.front() == '/') {
        for (std::size_t i = 0; i < chips.size(); ++i)
            if (chips[i].path == spec) return ChipMatch{i, ChipHow::path};
        return std::nullopt;
    }
    const std::string name = parse_offset(spec) ? "gpiochip" + std::string(spec) : std::string(spec);
    for (std::size_t i = 0; i < chips.size(); ++i)
        if (chips[i].name == name) return ChipMatch{i, ChipHow::name};
    for (std::size_t i = 0; i < chips.size(); ++i)
        if (chips[i].error == 0 && chips[i].label == spec) return ChipMatch{i, ChipHow::label};
    return std::nullopt;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    // Three rows of the optimal string alignment table: two back for transpositions.
    std::vector<std::size_t> before(b.size() + 1), previous(b.size() + 1), current(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) previous[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        current[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
            current[j] = std::min({previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost});
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]))
                current[j] = std::min(current[j], before[j - 2] + 1);
        }
        std::swap(before, previous);
        std::swap(previous, current);
    }
    return previous[b.size()];
}

std::vector<std::string> closest_names(std::string_view wanted, const std::vector<std::string>& names, std::size_t most) {
    std::vector<std::string> out;
    std::set<std::string> seen;
    for (const auto& name : names)
        if (!name.empty() && same_ignoring_case(name, wanted) && seen.insert(name).second) out.push_back(name);
    if (!out.empty()) {
        if (out.size() > most) out.resize(most);
        return out;
    }
    const std::size_t limit = wanted.size() <= 5 ? 1 : wanted.size() <= 8 ? 2 : 3;
    struct Scored {
        std::size_t distance;
        bool anagram;  // the same letters in another order (`GPIO71` for `GPIO17`) come first among equals
        std::size_t length_gap, index;
    };
    const auto letters = [](std::string_view s) {
        std::string sorted(s);
        for (char& c : sorted) c = lower(c);
        std::sort(sorted.begin(), sorted.end());
        return sorted;
    };
    const std::string wanted_letters = letters(wanted);
    std::vector<Scored> scored;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i].empty()) continue;
        const std::size_t d = edit_distance(wanted, names[i]);
        if (d > limit) continue;
        const std::size_t gap = names[i].size() > wanted.size() ? names[i].size() - wanted.size() : wanted.size() - names[i].size();
        scored.push_back({d, letters(names[i]) == wanted_letters, gap, i});
    }
    std::stable_sort(scored.begin(), scored.end(), [](const Scored& x, const Scored& y) {
        if (x.distance != y.distance) return x.distance < y.distance;
        if (x.anagram != y.anagram) return x.anagram;
        return x.length_gap < y.length_gap;
    });
    for (const auto& s : scored) {
        if (out.size() == most || s.distance > scored.front().distance) break;  // the closest only
        if (seen.insert(names[s.index]).second) out.push_back(names[s.index]);
    }
    return out;
}

std::optional<unsigned> gpio_number(std::string_view name) {
    if (name.size() <= 4 || !same_ignoring_case(name.substr(0, 4), "gpio")) return std::nullopt;
    return parse_offset(name.substr(4));
}

std::string describe_chip(const ChipInfo& chip) {
    if (chip.error != 0) return chip.name;
    std::string out = chip.name;
    if (!chip.label.empty()) out += " " + bt(chip.label);
    return out + " (" + std::to_string(chip.lines) + (chip.lines == 1 ? " line)" : " lines)");
}

std::string describe_line(const ChipInfo& chip, unsigned offset, std::string_view name) {
    std::string out = "line " + std::to_string(offset);
    if (!name.empty()) out += " (" + bt(name) + ")";
    return out + " of " + chip.name;
}

namespace {

// The chips there are, one help line each, or that there are none.
std::vector<std::string> chip_list(const std::vector<ChipInfo>& chips) {
    if (chips.empty()) return {"none: this machine has no GPIO chip (nothing at /dev/gpiochip*): is it the board this node is for?"};
    std::vector<std::string> out{"the GPIO chips of this machine:"};
    for (const auto& chip : chips) {
        std::string line = "  " + describe_chip(chip);
        if (chip.error != 0) line += ": cannot be opened (" + system_text(chip.error) + ")";
        out.push_back(line);
    }
    return out;
}

}  // namespace

LineError no_chip_error(std::string_view spec, const std::vector<ChipInfo>& chips) {
    std::string summary;
    if (spec.empty())
        summary = "no GPIO chip given";
    else if (spec.front() == '/')
        summary = "no GPIO chip at " + bt(spec);
    else if (looks_like_number_or_name(spec))
        summary = "no GPIO chip " + bt(parse_offset(spec) ? "gpiochip" + std::string(spec) : std::string(spec));
    else
        summary = "no GPIO chip named or labelled " + bt(spec);
    std::vector<std::string> help = chip_list(chips);
    if (!spec.empty() && !chips.empty()) {
        std::vector<std::string> candidates;
        for (const auto& chip : chips) {
            candidates.push_back(spec.front() == '/' ? chip.path : chip.name);
            if (chip.error == 0 && spec.front() != '/') candidates.push_back(chip.label);
        }
        // The list says the names and paths already: only a label, or a misspelt name, gets a guess.
        const bool label = spec.front() != '/' && !looks_like_number_or_name(spec);
        if (auto close = closest_names(spec, candidates); label && !close.empty())
            help.push_back("did you mean " + one_of(close) + "?");
        const auto labelled = std::find_if(chips.begin(), chips.end(), [](const ChipInfo& c) { return c.error == 0 && !c.label.empty(); });
        if ((looks_like_number_or_name(spec) || spec.front() == '/') && labelled != chips.end())
            help.push_back("chip numbers can change from one kernel to the next; a label, such as " + bt(labelled->label) +
                           ", names the same chip on every kernel");
    }
    return LineError(LineError::Kind::no_chip, std::move(summary), std::move(help));
}

LineError not_a_chip_error(std::string_view path, int error, const std::vector<ChipInfo>& chips) {
    std::vector<std::string> help = chip_list(chips);
    return LineError(LineError::Kind::no_chip, bt(path) + " is not a GPIO chip (" + system_text(error) + ")", std::move(help));
}

LineError offset_range_error(unsigned offset, const ChipInfo& chip) {
    std::vector<std::string> help;
    if (chip.lines == 0)
        help.push_back(chip.name + " has no lines");
    else
        help.push_back("write an offset from 0 to " + std::to_string(chip.lines - 1) + ", or the line's name");
    return LineError(LineError::Kind::no_line, "no line " + std::to_string(offset) + " on " + describe_chip(chip),
                     std::move(help));
}

LineError no_line_error(std::string_view name, const ChipInfo& chip, const std::vector<std::string>& names,
                        const std::vector<std::pair<ChipInfo, unsigned>>& elsewhere) {
    std::vector<std::string> help;
    for (const auto& [other, offset] : elsewhere)
    {
        std::string text = bt(name) + " is " + describe_line(other, offset, "");
        if (!other.label.empty()) text.append(" ").append(bt(other.label));
        help.push_back(text + ": declare the pin on that chip");
    }
    const auto close = closest_names(name, names);
    if (!close.empty()) {
        std::string text = "did you mean ";
        for (std::size_t i = 0; i < close.size(); ++i) {
            if (i > 0) text += i + 1 == close.size() ? " or " : ", ";
            const auto at = std::find(names.begin(), names.end(), close[i]) - names.begin();
            text += bt(close[i]) + " (offset " + std::to_string(at) + ")";
        }
        help.push_back(text + "?");
    }
    const bool named = std::any_of(names.begin(), names.end(), [](const std::string& n) { return !n.empty(); });
    if (!named)
        help.push_back(chip.name + " gives its lines no names: write the line's offset, " + offset_range(chip));
    else if (close.empty() && elsewhere.empty())
        help.push_back("`gpioinfo " + chip.name + "` (package gpiod) lists its line names; or write the line's offset, " +
                       offset_range(chip));
    return LineError(LineError::Kind::no_line, "no line named " + bt(name) + " on " + describe_chip(chip), std::move(help));
}

LineError busy_error(const ChipInfo& chip, unsigned offset, std::string_view line_name, std::string_view consumer) {
    const std::string line = describe_line(chip, offset, line_name);
    std::vector<std::string> help;
    if (consumer.starts_with("meshrun:"))
        help.push_back("another meshrun holds it: is this node running already, or does another node of this host declare the line?");
    else {
        help.push_back("stop the program that holds it, or choose another line; `gpioinfo " + chip.name +
                       "` (package gpiod) shows who holds each line");
        help.push_back("a line that a kernel driver holds (an overlay in the boot configuration) stays held until that overlay is removed");
    }
    const std::string who = consumer.empty() ? "a consumer that gave no name" : bt(consumer);
    return LineError(LineError::Kind::busy, line + " is busy: held by " + who, std::move(help));
}

LineError permission_error(const DeviceAccess& a) {
    std::string summary = "permission denied: cannot open " + a.path;
    if (!a.mode.empty()) summary += " (" + a.mode + " " + a.owner + ":" + a.group + ")";
    if (!a.user.empty()) summary += " as " + a.user;
    if (!a.looking_for.empty()) summary += ", " + a.looking_for;
    std::vector<std::string> help;
    const std::string user = a.user.empty() ? "$USER" : a.user;
    if (a.root) {
        help.push_back("meshrun runs as root and is still refused: the device is out of reach here "
                       "(a container without it, or a security module such as AppArmor or SELinux)");
    } else if (!a.group.empty() && a.group != "root" && a.in_group_file && !a.in_session) {
        help.push_back(user + " is in the group " + bt(a.group) + ", but this login is not yet: log out and in again, or");
        help.push_back("$ newgrp " + a.group);
    } else if (!a.group.empty() && a.group != "root" && !a.in_group_file) {
        help.push_back("the group " + bt(a.group) + " may use it: add " + user + " to it, then log out and in again");
        help.push_back("$ sudo usermod -aG " + a.group + " " + user);
    } else {
        help.push_back("no group but root may use the GPIO chips here: give them to the group `gpio` with a udev rule, "
                       "add " + user + " to it, then log out and in again");
        if (!a.gpio_group) help.push_back("$ sudo groupadd --system gpio");
        help.push_back("$ echo 'SUBSYSTEM==\"gpio\", KERNEL==\"gpiochip*\", GROUP=\"gpio\", MODE=\"0660\"' | "
                       "sudo tee /etc/udev/rules.d/60-gpiochip.rules");
        help.push_back("$ sudo udevadm control --reload-rules && sudo udevadm trigger --subsystem-match=gpio");
        help.push_back("$ sudo usermod -aG gpio " + user);
    }
    return LineError(LineError::Kind::permission, std::move(summary), std::move(help));
}

LineError request_error(const ChipInfo& chip, unsigned offset, std::string_view line_name, const LineConfig& config,
                        int error) {
    constexpr int kernel_enotsupp = 524;  // ENOTSUPP: the kernel's own "not supported", seen through some drivers
    const std::string line = describe_line(chip, offset, line_name);
    const bool bias = config.bias != Bias::none;
    const std::string pull = config.bias == Bias::pull_up ? "pull_up" : "pull_down";
    const std::string text = error == kernel_enotsupp ? "Operation not supported" : system_text(error);
    std::vector<std::string> help;
    if (bias && (error == EOPNOTSUPP || error == kernel_enotsupp))
        help.push_back(chip.name + " cannot set a pull on its lines: drop `" + pull + "` and fit a resistor");
    else if (bias && error == EINVAL)
        help.push_back("the kernel may be too old to set a pull (Linux 5.5 or later can): drop `" + pull + "` and fit a resistor");
    else if (config.direction == Direction::input && (error == ENXIO || error == EOPNOTSUPP || error == kernel_enotsupp))
        help.push_back("the line cannot report its edges (it has no interrupt): choose another line for an input");
    return LineError(LineError::Kind::other, "cannot request " + line + ": " + text, std::move(help));
}

LineError open_error(const ChipInfo& chip, int error) {
    return LineError(LineError::Kind::other, "cannot open " + chip.path + ": " + system_text(error));
}

std::vector<std::string> name_problems(std::string_view line_spec, unsigned offset, const ChipInfo& chip,
                                       const std::vector<std::string>& names) {
    std::vector<std::string> out;
    if (!parse_offset(line_spec)) {
        if (auto number = gpio_number(line_spec); number && *number != offset)
            out.push_back(bt(line_spec) + " is offset " + std::to_string(offset) + " of " + chip.name + ", not offset " +
                          std::to_string(*number) + ": a chart that numbers the lines by offset does not match its names");
        return out;
    }
    const std::string own = offset < names.size() ? names[offset] : std::string();
    const auto own_number = gpio_number(own);
    if (!own_number || *own_number == offset) return out;
    std::string text = "offset " + std::to_string(offset) + " of " + chip.name + " is the line named " + bt(own);
    const std::string wanted = "GPIO" + std::to_string(offset);
    for (std::size_t i = 0; i < names.size(); ++i)
        if (same_ignoring_case(names[i], wanted)) {
            text += "; " + bt(names[i]) + " is offset " + std::to_string(i) + ": write the line's name if you meant that one";
            break;
        }
    out.push_back(text);
    return out;
}

std::string held_problem(const LineInfo& line, const ChipInfo& chip, std::string_view our_consumer) {
    const std::string where = describe_line(chip, line.offset, line.name);
    if (!our_consumer.empty() && line.consumer == our_consumer)
        return where + " is held by " + bt(line.consumer) + " already: this node is running";
    return where + " is held by " + (line.consumer.empty() ? std::string("a consumer that gave no name") : bt(line.consumer)) +
           ": requesting it will fail";
}

}  // namespace meshrun::drivers::gpio
