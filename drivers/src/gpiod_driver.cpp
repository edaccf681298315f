// The gpiod driver (pin.hpp): which chip, which line, and why not, on top of the one libgpiod
// API the build chose (gpiod_backend.hpp). The words of its errors are in gpio_text.cpp.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "gpio_text.hpp"
#include "gpiod_backend.hpp"

namespace meshrun::drivers {

namespace gpio {

void throw_line_failure(const std::string& what, const std::string& describe, int error) {
    throw LineError(LineError::Kind::other, "cannot " + what + " " + describe + ": " + std::strerror(error));
}

void set_nonblocking(int fd) {
    const int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        throw std::system_error(errno, std::generic_category(), "fcntl O_NONBLOCK");
}

namespace {

LineError built_without() {
    return LineError(LineError::Kind::other, "this meshrun was built without libgpiod: it cannot use real pins",
                     {"build it where pkg-config finds libgpiod (Debian: `apt install libgpiod-dev`), "
                      "or with -DMESHRUN_LIBGPIOD_ROOT=<a libgpiod dev tree>"});
}

bool denied(int error) { return error == EACCES || error == EPERM; }

// The /dev/gpiochip<N> devices, in the order of N, each opened for its name, label and lines.
std::vector<ChipInfo> scan_chips() {
    std::vector<std::pair<unsigned, std::string>> found;
    if (DIR* dir = opendir("/dev")) {
        while (const dirent* entry = readdir(dir)) {
            const std::string_view name = entry->d_name;
            if (!name.starts_with("gpiochip")) continue;
            const auto number = parse_offset(name.substr(8));
            struct stat st {};
            const std::string path = "/dev/" + std::string(name);
            if (number && stat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode)) found.emplace_back(*number, path);
        }
        closedir(dir);
    }
    std::sort(found.begin(), found.end());
    std::vector<ChipInfo> chips;
    for (const auto& [number, path] : found) {
        try {
            chips.push_back(Chip(path).info());
        } catch (const std::system_error& e) {
            chips.push_back({"gpiochip" + std::to_string(number), "", path, 0, e.code().value()});
        }
    }
    return chips;
}

// ---- Who may open a device: /etc/passwd and /etc/group read directly (the binary is static,
// and glibc's NSS does not belong in one).

struct Account {
    std::string name;
    unsigned id = 0, group = 0;
    std::vector<std::string> members;  // groups only
};

std::vector<Account> read_accounts(const char* file, bool groups) {
    std::vector<Account> out;
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
        std::vector<std::string> fields;
        std::stringstream ss(line);
        std::string field;
        while (std::getline(ss, field, ':')) fields.push_back(field);
        if (fields.size() < 3) continue;
        Account a;
        a.name = fields[0];
        a.id = parse_offset(fields[2]).value_or(~0u);
        if (!groups && fields.size() > 3) a.group = parse_offset(fields[3]).value_or(~0u);
        if (groups && fields.size() > 3) {
            std::stringstream ms(fields[3]);
            while (std::getline(ms, field, ',')) a.members.push_back(field);
        }
        out.push_back(std::move(a));
    }
    return out;
}

const Account* by_id(const std::vector<Account>& accounts, unsigned id) {
    auto it = std::find_if(accounts.begin(), accounts.end(), [&](const Account& a) { return a.id == id; });
    return it == accounts.end() ? nullptr : &*it;
}

std::string mode_text(mode_t mode) {
    std::string out = S_ISCHR(mode) ? "c" : S_ISDIR(mode) ? "d" : "-";
    const char* letters = "rwxrwxrwx";
    for (int i = 0; i < 9; ++i) out += (mode & (0400u >> i)) ? letters[i] : '-';
    return out;
}

DeviceAccess access_of(const std::string& path) {
    const auto users = read_accounts("/etc/passwd", false);
    const auto groups = read_accounts("/etc/group", true);
    DeviceAccess a;
    a.path = path;
    a.root = geteuid() == 0;
    const Account* me = by_id(users, geteuid());
    a.user = me ? me->name : std::to_string(geteuid());
    a.gpio_group = std::any_of(groups.begin(), groups.end(), [](const Account& g) { return g.name == "gpio"; });
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return a;
    a.mode = mode_text(st.st_mode);
    const Account* owner = by_id(users, st.st_uid);
    a.owner = owner ? owner->name : std::to_string(st.st_uid);
    const Account* group = by_id(groups, st.st_gid);
    a.group = group ? group->name : std::to_string(st.st_gid);
    a.in_group_file = (me && me->group == st.st_gid) ||
                      (group && std::find(group->members.begin(), group->members.end(), a.user) != group->members.end());
    std::vector<gid_t> ours(static_cast<std::size_t>(std::max(getgroups(0, nullptr), 0)));
    if (!ours.empty()) ours.resize(static_cast<std::size_t>(std::max(getgroups(static_cast<int>(ours.size()), ours.data()), 0)));
    a.in_session = getegid() == st.st_gid || std::find(ours.begin(), ours.end(), st.st_gid) != ours.end();
    return a;
}

// ---- Finding the chip and the line.

LineError chip_failure(const ChipInfo& chip, int error, const std::vector<ChipInfo>& chips) {
    if (denied(error)) return permission_error(access_of(chip.path));
    if (error == ENOENT) return no_chip_error(chip.path, chips);
    return open_error(chip, error);
}

struct Found {
    ChipInfo chip;
    ChipHow how = ChipHow::name;
    std::unique_ptr<Chip> handle;
};

Found open_found(const ChipInfo& listed, ChipHow how, const std::vector<ChipInfo>& chips) {
    try {
        auto handle = std::make_unique<Chip>(listed.path);
        ChipInfo info = handle->info();
        return {std::move(info), how, std::move(handle)};
    } catch (const std::system_error& e) {
        throw chip_failure(listed, e.code().value(), chips);
    }
}

// The chip `spec` names, open; `chips` gets every chip of the machine. Throws LineError.
Found find_chip(const std::string& spec, std::vector<ChipInfo>& chips) {
    if (!library_version()) throw built_without();
    chips = scan_chips();
    if (auto match = match_chip(spec, chips)) {
        const ChipInfo& listed = chips[match->index];
        if (listed.error != 0) throw chip_failure(listed, listed.error, chips);
        return open_found(listed, match->how, chips);
    }
    if (!spec.empty() && spec.front() == '/') {  // not a /dev/gpiochipN: a link to one, or no chip at all
        struct stat st {};
        if (stat(spec.c_str(), &st) != 0) {
            if (denied(errno)) throw permission_error(access_of(spec));
            throw no_chip_error(spec, chips);
        }
        try {
            auto handle = std::make_unique<Chip>(spec);
            ChipInfo info = handle->info();
            return {std::move(info), ChipHow::path, std::move(handle)};
        } catch (const std::system_error& e) {
            if (denied(e.code().value())) throw permission_error(access_of(spec));
            throw not_a_chip_error(spec, e.code().value(), chips);
        }
    }
    // A label, perhaps of a chip that we may not open.
    for (const auto& chip : chips)
        if (denied(chip.error)) {
            DeviceAccess access = access_of(chip.path);
            access.looking_for = "to read its label";
            throw permission_error(access);
        }
    throw no_chip_error(spec, chips);
}

// The name of every line of the chip, by offset ("" when unnamed or unreadable).
std::vector<std::string> line_names(Chip& chip, unsigned lines) {
    std::vector<std::string> names(lines);
    for (unsigned offset = 0; offset < lines; ++offset) {
        try {
            names[offset] = chip.line_info(offset).name;
        } catch (const std::system_error&) {
        }
    }
    return names;
}

unsigned find_line(const LineConfig& config, Found& found, const std::vector<ChipInfo>& chips) {
    if (auto offset = parse_offset(config.line)) {
        if (*offset >= found.chip.lines) throw offset_range_error(*offset, found.chip);
        return *offset;
    }
    if (config.line.empty()) throw LineError(LineError::Kind::no_line, "no line given for " + found.chip.name);
    try {
        if (auto offset = found.handle->find_line(config.line)) return *offset;
    } catch (const std::system_error& e) {
        throw open_error(found.chip, e.code().value());
    }
    std::vector<std::pair<ChipInfo, unsigned>> elsewhere;
    for (const auto& other : chips) {
        if (other.error != 0 || other.path == found.chip.path || other.name == found.chip.name) continue;
        try {
            Chip chip(other.path);
            if (auto offset = chip.find_line(config.line)) elsewhere.emplace_back(other, *offset);
        } catch (const std::system_error&) {
        }
    }
    throw no_line_error(config.line, found.chip, line_names(*found.handle, found.chip.lines), elsewhere);
}

std::optional<LineInfo> line_info(Chip& chip, unsigned offset) {
    try {
        return chip.line_info(offset);
    } catch (const std::system_error&) {
        return std::nullopt;
    }
}

class GpiodDriver final : public PinDriver {
public:
    std::unique_ptr<Line> request(const LineConfig& config, ChangeHandler) override {
        std::vector<ChipInfo> chips;
        Found found = find_chip(config.chip, chips);
        const unsigned offset = find_line(config, found, chips);
        const auto before = line_info(*found.handle, offset);
        const std::string name = before ? before->name : "";
        try {
            return found.handle->request(offset, config, describe_line(found.chip, offset, name));
        } catch (const std::system_error& e) {
            const int error = e.code().value();
            if (error == EBUSY) {
                const auto holder = line_info(*found.handle, offset);
                throw busy_error(found.chip, offset, name, holder ? holder->consumer : "");
            }
            if (denied(error)) throw permission_error(access_of(found.chip.path));
            throw request_error(found.chip, offset, name, config, error);
        }
    }
};

}  // namespace
}  // namespace gpio

std::unique_ptr<PinDriver> make_gpiod_driver() { return std::make_unique<gpio::GpiodDriver>(); }

const char* gpiod_api() {
    static const std::string api = gpio::library_version() ? std::string("libgpiod ") + gpio::library_version() : "none";
    return api.c_str();
}

std::vector<ChipReport> gpio_chips() {
    std::vector<ChipReport> out;
    if (!gpio::library_version()) return out;
    for (const auto& chip : gpio::scan_chips())
        out.push_back({chip.name, chip.label, chip.path, chip.lines, chip.error ? std::strerror(chip.error) : ""});
    return out;
}

LineReport probe_line(const LineConfig& config) {
    using namespace gpio;
    LineReport report;
    std::vector<ChipInfo> chips;
    Found found;
    try {
        found = find_chip(config.chip, chips);
    } catch (const LineError& e) {
        report.problems.push_back(e.message());
        return report;
    }
    report.chip_found = true;
    report.chip_how = how_name(found.how);
    report.chip_name = found.chip.name;
    report.chip_label = found.chip.label;
    report.chip_path = found.chip.path;
    report.chip_lines = found.chip.lines;
    try {
        report.offset = find_line(config, found, chips);
    } catch (const LineError& e) {
        report.problems.push_back(e.message());
        return report;
    }
    const auto info = line_info(*found.handle, report.offset);
    if (!info) {
        report.problems.push_back("cannot read the line's information from " + found.chip.path + ": " + std::strerror(errno));
        return report;
    }
    report.line_found = true;
    report.line_name = info->name;
    report.used = info->used;
    report.consumer = info->consumer;
    report.output = info->output;
    report.active_low = info->active_low;
    report.bias = info->bias;
    report.edges = info->edges;
    if (info->used) report.problems.push_back(held_problem(*info, found.chip, config.consumer));
    for (auto& p : name_problems(config.line, report.offset, found.chip, line_names(*found.handle, found.chip.lines)))
        report.problems.push_back(std::move(p));
    return report;
}

}  // namespace meshrun::drivers
