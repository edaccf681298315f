// The gpiod driver's knowledge that needs no chip: how a chip and a line are named, which
// names come close, and the words of every LineError. Pure functions over what a scan of
// the machine found, so that the unit tests can hand them any machine they like.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meshrun/drivers/pin.hpp"

namespace meshrun::drivers::gpio {

// A chip as a scan of /dev finds it.
struct ChipInfo {
    std::string name;   // `gpiochip0` (the device's name when it could not be opened)
    std::string label;  // `pinctrl-bcm2711`
    std::string path;   // `/dev/gpiochip0`
    unsigned lines = 0;
    int error = 0;      // errno when it could not be opened (then label and lines are unknown)
};

// One line of a chip, as the kernel describes it.
struct LineInfo {
    unsigned offset = 0;
    std::string name;
    bool used = false;
    std::string consumer;
    bool output = false;
    bool active_low = false;
    std::string bias;   // "pull-up", "pull-down", "disabled", "unknown"
    std::string edges;  // "none", "rising", "falling", "both", "unknown"
};

// ---- Names.

// `17` -> 17. Digits only (no sign, no space), and small enough for an offset; otherwise none,
// and the text is a line name.
std::optional<unsigned> parse_offset(std::string_view text);

// How a chip was written. `0` is a number: the chip `gpiochip0`.
enum class ChipHow { name, path, label };
std::string_view how_name(ChipHow how);  // "name", "path", "label"

// The chip `spec` names among the machine's chips: a path (starts with `/`) matches a chip's
// path, digits match `gpiochip<digits>`, anything else a name first, then a label (the first chip
// of that label). None when nothing matches.
struct ChipMatch {
    std::size_t index = 0;
    ChipHow how = ChipHow::name;
};
std::optional<ChipMatch> match_chip(std::string_view spec, const std::vector<ChipInfo>& chips);

// The distance of the optimal string alignment (insertions, deletions, substitutions and
// transpositions of neighbours, each 1), letters compared without case.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The names closest to `wanted`, best first, at most `most`: the ones that differ only in case
// when there are any, else those at the smallest distance found, if it is within a limit that grows
// with the length of `wanted` (1 up to 5 letters, 2 up to 8, 3 beyond). Among equals, the same letters in another order come first
// (`GPIO17` for `GPIO71`), then names of the same length, then the first listed.
// Empty names are skipped; a name listed twice is given once.
std::vector<std::string> closest_names(std::string_view wanted, const std::vector<std::string>& names,
                                       std::size_t most = 3);

// `GPIO17` -> 17: the number of a name that is `GPIO` (any case) followed by digits only.
std::optional<unsigned> gpio_number(std::string_view name);

// ---- Descriptions, as the messages use them.

// gpiochip0 `pinctrl-bcm2711`, 58 lines   (the name alone when the chip could not be opened)
std::string describe_chip(const ChipInfo& chip);
// line 17 (`GPIO17`) of gpiochip0
std::string describe_line(const ChipInfo& chip, unsigned offset, std::string_view name);

// ---- The errors.

// No chip of that name, path or label: the chips there are, the closest of their names and
// labels, and that a label names the same chip on every kernel.
LineError no_chip_error(std::string_view spec, const std::vector<ChipInfo>& chips);

// A path that exists and is no GPIO chip.
LineError not_a_chip_error(std::string_view path, int error, const std::vector<ChipInfo>& chips);

// The chip's line count does not reach the offset.
LineError offset_range_error(unsigned offset, const ChipInfo& chip);

// No line of that name on the chip: the closest of its line names (by `names`, indexed by offset),
// the chips that do have a line of that name (`elsewhere`: chip and offset), or the offset range.
LineError no_line_error(std::string_view name, const ChipInfo& chip, const std::vector<std::string>& names,
                        const std::vector<std::pair<ChipInfo, unsigned>>& elsewhere);

// The line is held by `consumer` (empty: held without a name).
LineError busy_error(const ChipInfo& chip, unsigned offset, std::string_view line_name, std::string_view consumer);

// Who may open a device, and who we are: what a permission error needs to say what to do.
struct DeviceAccess {
    std::string path;         // `/dev/gpiochip0`
    std::string mode;         // `crw-rw----`; empty when unknown
    std::string owner, group; // `root`, `gpio`
    std::string user;         // who runs meshrun: `pi`
    bool root = false;        // we run as root
    bool gpio_group = false;  // the system has a group called `gpio`
    bool in_group_file = false;  // `user` is a member of the device's group by /etc/group
    bool in_session = false;     // this process has the device's group
    std::string looking_for;     // why it was opened, when not for the chip named: `to read its label`
};
LineError permission_error(const DeviceAccess& access);

// Any other failure of a request, with the system's text for `error` (an errno); says what to do
// for the usual ones (a bias or edges the chip cannot do).
LineError request_error(const ChipInfo& chip, unsigned offset, std::string_view line_name, const LineConfig& config,
                        int error);

// A chip that could not be opened for a reason other than permission.
LineError open_error(const ChipInfo& chip, int error);

// ---- Probe.

// What a line's names suggest against its offset: `GPIO17` found at offset 12; offset 17 written
// by number while that line is named `GPIO4` (and where `GPIO17` is, if the chip has one).
// `names` by offset.
std::vector<std::string> name_problems(std::string_view line_spec, unsigned offset, const ChipInfo& chip,
                                       const std::vector<std::string>& names);

// A line held by someone: by this very consumer (the node runs already) or by another.
std::string held_problem(const LineInfo& line, const ChipInfo& chip, std::string_view our_consumer);

}  // namespace meshrun::drivers::gpio
