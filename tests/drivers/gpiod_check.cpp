// The gpiod driver on real chips: gpio-sim chips that this program makes through configfs,
// checks through the driver (and the simulator's sysfs attributes), and removes again.
// Needs root and a kernel with gpio-sim (CONFIG_GPIO_SIM, configfs): the hw harness's VM.
// Exits 77 (skipped) where there is no gpio-sim, as on a machine without GPIO.
//
//   gpiod_check [--load] [--keep]
//     --load   modprobe gpio-sim and mount configfs first, if need be
//     --keep   leave the simulated chips in place afterwards
//
// It prints one line per check and ends with `N passed, N failed`; exit 0 when none failed.
#include <grp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "meshrun/drivers/pin.hpp"

using namespace meshrun::drivers;
using namespace std::chrono_literals;

namespace {

int passed = 0, failed = 0;

void check(bool ok, const std::string& what, const std::string& detail = "") {
    (ok ? passed : failed)++;
    std::cout << (ok ? "ok    " : "FAIL  ") << what;
    if (!ok && !detail.empty()) std::cout << "\n        " << detail;
    std::cout << std::endl;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A group of checks: an exception out of it fails it, and the others still run.
void section(const std::string& name, const std::function<void()>& body) {
    std::cout << "-- " << name << std::endl;
    try {
        body();
    } catch (const LineError& e) {
        check(false, name + ": unexpected LineError (" + std::string(kind_name(e.kind)) + ")", e.message());
    } catch (const std::exception& e) {
        check(false, name + ": unexpected exception", e.what());
    }
}

bool exists(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0;
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
    out.close();
    if (!out) throw std::runtime_error("cannot write " + text + " to " + path);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

void make_dir(const std::string& path) {
    if (mkdir(path.c_str(), 0755) != 0) throw std::runtime_error("cannot make " + path + ": " + std::strerror(errno));
}

std::chrono::nanoseconds monotonic_now() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

// ---- The simulated chips: two banks of one gpio-sim device.

const std::string configfs = "/sys/kernel/config/gpio-sim";

struct SimLine {
    unsigned offset;
    std::string name;
    std::string hog;  // a consumer that the kernel holds the line for (output-high)
};

struct Bank {
    std::string dir;    // in configfs
    std::string label;
    unsigned lines;
    std::vector<SimLine> named;
    std::string chip;   // gpiochipN, once live
    std::string sysfs;  // /sys/devices/platform/gpio-sim.N/gpiochipN
    std::string attribute(unsigned offset, const std::string& what) const {
        return sysfs + "/sim_gpio" + std::to_string(offset) + "/" + what;
    }
};

struct Sim {
    std::string device;
    std::vector<Bank> banks;
    bool live = false;

    void remove() {
        if (device.empty()) return;
        if (live) {
            try {
                write_file(device + "/live", "0");
            } catch (const std::exception& e) {
                std::cerr << e.what() << "\n";
            }
        }
        for (auto& bank : banks) {
            for (auto& line : bank.named) {
                const std::string dir = bank.dir + "/line" + std::to_string(line.offset);
                if (!line.hog.empty()) rmdir((dir + "/hog").c_str());
                rmdir(dir.c_str());
            }
            rmdir(bank.dir.c_str());
        }
        rmdir(device.c_str());
        device.clear();
    }
    ~Sim() { remove(); }
};

// Whether gpio-sim can be used; with `load`, first loads the module and mounts configfs.
bool gpio_sim_available(bool load) {
    if (load && !exists(configfs)) {
        if (system("modprobe gpio-sim >/dev/null 2>&1") != 0) { /* perhaps built in, or no modprobe */ }
        if (!exists(configfs) && exists("/sys/kernel/config")) mount("none", "/sys/kernel/config", "configfs", 0, nullptr);
    }
    return exists(configfs);
}

void make_sim(Sim& sim) {
    sim.device = configfs + "/meshrun-check-" + std::to_string(getpid());
    make_dir(sim.device);
    for (auto& bank : sim.banks) {
        bank.dir = sim.device + "/" + bank.dir;
        make_dir(bank.dir);
        write_file(bank.dir + "/num_lines", std::to_string(bank.lines));
        write_file(bank.dir + "/label", bank.label);
        for (const auto& line : bank.named) {
            const std::string dir = bank.dir + "/line" + std::to_string(line.offset);
            make_dir(dir);
            if (!line.name.empty()) write_file(dir + "/name", line.name);
            if (!line.hog.empty()) {
                make_dir(dir + "/hog");
                write_file(dir + "/hog/name", line.hog);
                write_file(dir + "/hog/direction", "output-high");
            }
        }
    }
    write_file(sim.device + "/live", "1");
    sim.live = true;
    const std::string dev_name = read_file(sim.device + "/dev_name");
    for (auto& bank : sim.banks) {
        bank.chip = read_file(bank.dir + "/chip_name");
        bank.sysfs = "/sys/devices/platform/" + dev_name + "/" + bank.chip;
    }
}

LineConfig output(std::string chip, std::string line, int initial, bool active_low, std::string consumer) {
    return {std::move(chip), std::move(line), Direction::output, active_low, Bias::none, initial, std::move(consumer)};
}

LineConfig input(std::string chip, std::string line, Bias bias, bool active_low, std::string consumer) {
    return {std::move(chip), std::move(line), Direction::input, active_low, bias, 0, std::move(consumer)};
}

bool readable(int fd, std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, static_cast<int>(timeout.count())) == 1 && (p.revents & POLLIN);
}

// Waits until `count` edges have come (or a second has passed), reading them as the engine
// would: poll on edge_fd(), then read_edges().
std::vector<EdgeEvent> wait_edges(Line& line, std::size_t count) {
    std::vector<EdgeEvent> all;
    const auto deadline = std::chrono::steady_clock::now() + 1s;
    while (all.size() < count && std::chrono::steady_clock::now() < deadline) {
        if (!readable(line.edge_fd(), 100ms)) continue;
        for (const auto& e : line.read_edges()) all.push_back(e);
    }
    return all;
}

// The error a request throws, or none.
std::optional<LineError> request_error(PinDriver& driver, const LineConfig& config) {
    try {
        driver.request(config, {});
    } catch (const LineError& e) {
        return e;
    }
    return std::nullopt;
}

void expect_error(PinDriver& driver, const LineConfig& config, LineError::Kind kind, const std::vector<std::string>& words,
                  const std::string& what) {
    const auto e = request_error(driver, config);
    check(e.has_value(), what + ": refused");
    if (!e) return;
    std::istringstream lines(e->message());  // shown, for a person to judge the words
    for (std::string line; std::getline(lines, line);) std::cout << "      | " << line << "\n";
    check(e->kind == kind, what + ": kind " + std::string(kind_name(kind)), "got " + std::string(kind_name(e->kind)) + ": " + e->message());
    for (const auto& w : words) check(contains(e->message(), w), what + ": says " + w, e->message());
}

}  // namespace

int main(int argc, char** argv) {
    bool keep = false, load = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--keep")
            keep = true;
        else if (arg == "--load")
            load = true;
        else {
            std::cerr << "usage: gpiod_check [--load] [--keep]" << std::endl;
            return 2;
        }
    }
    std::cout << "gpiod_check: built against " << gpiod_api() << std::endl;
    if (std::string(gpiod_api()) == "none") {
        std::cout << "skipped: built without libgpiod" << std::endl;
        return 77;
    }
    if (geteuid() != 0 || !gpio_sim_available(load)) {
        std::cout << "skipped: no gpio-sim here (needs root, configfs and a kernel with CONFIG_GPIO_SIM; --load loads it)" << std::endl;
        return 77;
    }

    Sim sim;
    sim.banks = {
        {"bank0", "meshrun-check-a", 16,
         {{0, "LED", ""}, {1, "BUTTON", ""}, {2, "GPIO7", ""}, {3, "BELL", ""}, {4, "SWITCH", ""}, {7, "GPIO12", ""},
          {9, "HELD", "hog-of-the-kernel"}},
         "", ""},
        {"bank1", "meshrun-check-b", 8, {{4, "DOOR", ""}}, "", ""},
    };
    try {
        make_sim(sim);
    } catch (const std::exception& e) {
        std::cout << "cannot make the gpio-sim chips: " << e.what() << std::endl;
        return 1;
    }
    const Bank& a = sim.banks[0];
    const Bank& b = sim.banks[1];
    std::cout << "chips: " << a.chip << " `" << a.label << "`, " << b.chip << " `" << b.label << "`" << std::endl;
    auto driver = make_gpiod_driver();

    section("the chips of the machine", [&] {
        int seen = 0;
        for (const auto& chip : gpio_chips()) {
            if (chip.name == a.chip) {
                ++seen;
                check(chip.label == a.label && chip.lines == 16 && chip.path == "/dev/" + a.chip && chip.error.empty(),
                      "gpio_chips lists " + a.chip + " with its label, path and 16 lines");
            }
            if (chip.name == b.chip) ++seen;
        }
        check(seen == 2, "gpio_chips lists both simulated chips");
    });

    section("output by chip name and offset, initial 1", [&] {
        auto led = driver->request(output(a.chip, "0", 1, false, "meshrun:check:led"), {});
        check(read_file(a.attribute(0, "value")) == "1", "the line is high from the request on");
        check(led->read() == 1, "read() gives the level driven");
        check(led->edge_fd() == -1, "an output has no edge descriptor");
        led->write(0);
        check(read_file(a.attribute(0, "value")) == "0", "write(0) drives it low");
        check(led->read() == 0, "read() follows");
        led->write(1);
        check(read_file(a.attribute(0, "value")) == "1", "write(1) drives it high");
    });

    section("output by path and line name, active_low, initial 1", [&] {
        auto bell = driver->request(output("/dev/" + a.chip, "BELL", 1, true, "meshrun:check:bell"), {});
        check(read_file(a.attribute(3, "value")) == "0", "logical 1 of an active_low output is physically low");
        check(bell->read() == 1, "read() is logical");
        bell->write(0);
        check(read_file(a.attribute(3, "value")) == "1", "write(0) drives it physically high");
    });

    section("output by label and line name, initial 0", [&] {
        auto bell = driver->request(output(a.label, "BELL", 0, false, "meshrun:check:bell"), {});
        check(read_file(a.attribute(3, "value")) == "0", "initial 0 is low (and the line was released by the last section)");
    });

    section("chip by number", [&] {
        auto led = driver->request(output(a.chip.substr(8), "LED", 1, false, "meshrun:check:led"), {});
        check(read_file(a.attribute(0, "value")) == "1", std::string("`") + a.chip.substr(8) + "` is " + a.chip);
    });

    section("input by label and name, pull_up, both edges", [&] {
        auto button = driver->request(input(a.label, "BUTTON", Bias::pull_up, false, "meshrun:check:button"), {});
        check(button->read() == 1, "pull_up: the input reads 1");
        check(button->edge_fd() >= 0, "an input has an edge descriptor");
        check(!readable(button->edge_fd(), 50ms), "no edge pending after the request");
        const auto start = std::chrono::steady_clock::now();
        check(button->read_edges().empty(), "read_edges() with none pending returns none");
        check(std::chrono::steady_clock::now() - start < 100ms, "and does not block");

        const auto before = monotonic_now();
        write_file(a.attribute(1, "pull"), "pull-down");
        auto edges = wait_edges(*button, 1);
        check(edges.size() == 1 && edges[0].level == 0, "a falling edge: level 0",
              "edges: " + std::to_string(edges.size()));
        check(button->read() == 0, "read() gives 0 after it");
        if (!edges.empty())
            check(edges[0].when >= before && edges[0].when <= monotonic_now(), "its timestamp is CLOCK_MONOTONIC, within the wait",
                  "when " + std::to_string(edges[0].when.count()) + " before " + std::to_string(before.count()));

        write_file(a.attribute(1, "pull"), "pull-up");
        edges = wait_edges(*button, 1);
        check(edges.size() == 1 && edges[0].level == 1, "a rising edge: level 1");

        // Several at once: all read, in order, timestamps increasing.
        for (int i = 0; i < 5; ++i) {
            write_file(a.attribute(1, "pull"), "pull-down");
            write_file(a.attribute(1, "pull"), "pull-up");
        }
        edges = wait_edges(*button, 10);
        check(edges.size() == 10, "ten quick edges, ten events", "got " + std::to_string(edges.size()));
        bool alternate = true, increasing = true;
        for (std::size_t i = 0; i < edges.size(); ++i) {
            if (edges[i].level != (i % 2 == 0 ? 0 : 1)) alternate = false;
            if (i > 0 && edges[i].when <= edges[i - 1].when) increasing = false;
        }
        check(alternate, "their levels alternate 0, 1, ...");
        check(increasing, "their timestamps increase");

        // While it is held: busy, naming the holder; probe sees it.
        expect_error(*driver, input(a.chip, "1", Bias::none, false, "meshrun:check:second"), LineError::Kind::busy,
                     {"is busy: held by `meshrun:check:button`", "BUTTON"}, "the same line again");
        const LineReport held = probe_line(input(a.label, "BUTTON", Bias::pull_up, false, "meshrun:check:button"));
        check(held.chip_found && held.line_found && held.used && held.consumer == "meshrun:check:button",
              "probe: the line is held by meshrun:check:button");
        check(held.bias == "pull-up", "probe: bias pull-up", held.bias);
        check(held.edges == (std::string(gpiod_api()).rfind("libgpiod 1.", 0) == 0 ? "unknown" : "both"),
              "probe: edges as the kernel reports them", held.edges);
        check(!held.problems.empty() && contains(held.problems[0], "this node is running"), "probe: the problem says the node runs",
              held.problems.empty() ? "" : held.problems[0]);
    });

    section("input by offset, pull_down, active_low", [&] {
        auto sw = driver->request(input(a.chip, "4", Bias::pull_down, true, "meshrun:check:switch"), {});
        check(sw->read() == 1, "pulled down, active_low: reads 1");
        write_file(a.attribute(4, "pull"), "pull-up");
        auto edges = wait_edges(*sw, 1);
        check(edges.size() == 1 && edges[0].level == 0, "physically rising is logically falling: level 0");
        check(sw->read() == 0, "read() gives 0");
        write_file(a.attribute(4, "pull"), "pull-down");
        edges = wait_edges(*sw, 1);
        check(edges.size() == 1 && edges[0].level == 1, "and back: level 1");
    });

    section("a line the kernel holds", [&] {
        expect_error(*driver, output(a.label, "HELD", 0, false, "meshrun:check:held"), LineError::Kind::busy,
                     {"held by `hog-of-the-kernel`"}, "a hogged line");
    });

    section("no such line", [&] {
        expect_error(*driver, input(a.label, "BUTON", Bias::none, false, "x"), LineError::Kind::no_line,
                     {"no line named `BUTON`", "did you mean `BUTTON` (offset 1)?"}, "a misspelt name");
        expect_error(*driver, input(a.label, "DOOR", Bias::none, false, "x"), LineError::Kind::no_line,
                     {"`DOOR` is line 4 of " + b.chip}, "a name of the other chip");
        expect_error(*driver, input(a.label, "99", Bias::none, false, "x"), LineError::Kind::no_line,
                     {"no line 99 on " + a.chip, "offset from 0 to 15"}, "an offset out of range");
    });

    section("no such chip", [&] {
        expect_error(*driver, input("meshrun-check-c", "1", Bias::none, false, "x"), LineError::Kind::no_chip,
                     {"no GPIO chip named or labelled `meshrun-check-c`", a.chip + " `meshrun-check-a` (16 lines)",
                      b.chip + " `meshrun-check-b` (8 lines)", "did you mean"},
                     "an unknown label");
        expect_error(*driver, input("/dev/gpiochip999", "1", Bias::none, false, "x"), LineError::Kind::no_chip,
                     {"no GPIO chip at `/dev/gpiochip999`"}, "an unknown path");
        expect_error(*driver, input("/dev/null", "1", Bias::none, false, "x"), LineError::Kind::no_chip,
                     {"`/dev/null` is not a GPIO chip"}, "a path that is no chip");
    });

    section("probe", [&] {
        LineReport r = probe_line(output(a.label, "GPIO7", 0, false, "meshrun:check:probe"));
        std::cout << "      | " << r.chip_name << " `" << r.chip_label << "` " << r.chip_path << " (by " << r.chip_how << ", "
                  << r.chip_lines << " lines) offset " << r.offset << " `" << r.line_name << "` "
                  << (r.output ? "output" : "input") << (r.active_low ? " active-low" : "") << " bias " << r.bias
                  << " edges " << r.edges << (r.used ? " held by " + r.consumer : " free") << "\n";
        for (const auto& p : r.problems) std::cout << "      | problem: " << p << "\n";
        check(r.chip_found && r.chip_how == "label" && r.chip_name == a.chip && r.chip_label == a.label &&
                  r.chip_path == "/dev/" + a.chip && r.chip_lines == 16,
              "probe finds the chip by label");
        check(r.line_found && r.offset == 2 && r.line_name == "GPIO7" && !r.used && r.consumer.empty(), "probe finds GPIO7 at offset 2, free");
        check(r.problems.size() == 1 && contains(r.problems[0], "`GPIO7` is offset 2 of " + a.chip + ", not offset 7"),
              "probe: a name whose number is not its offset", r.problems.empty() ? "" : r.problems[0]);

        r = probe_line(output("/dev/" + a.chip, "7", 0, false, "meshrun:check:probe"));
        check(r.chip_how == "path" && r.line_found && r.line_name == "GPIO12", "probe by path and offset");
        check(r.problems.size() == 1 && contains(r.problems[0], "offset 7 of " + a.chip + " is the line named `GPIO12`"),
              "probe: an offset whose line is named for another number", r.problems.empty() ? "" : r.problems[0]);

        r = probe_line(output(a.chip, "LED", 0, false, "meshrun:check:probe"));
        check(r.chip_how == "name" && r.line_found && r.offset == 0 && r.problems.empty(), "probe of a free line: no problems");

        r = probe_line(output(a.chip, "HELD", 0, false, "meshrun:check:probe"));
        check(r.used && r.consumer == "hog-of-the-kernel" && r.output && !r.problems.empty() &&
                  contains(r.problems[0], "held by `hog-of-the-kernel`"),
              "probe of a hogged line: held, an output, and said so");

        r = probe_line(output(a.chip, "NOPE", 0, false, "meshrun:check:probe"));
        check(r.chip_found && !r.line_found && r.problems.size() == 1 && contains(r.problems[0], "no line named `NOPE`"),
              "probe of a missing line");
        r = probe_line(output("nochip", "1", 0, false, "meshrun:check:probe"));
        check(!r.chip_found && r.problems.size() == 1 && contains(r.problems[0], a.chip), "probe of a missing chip lists the chips");
    });

    section("permission denied, as an unprivileged user", [&] {
        // A child that gives up root: the chips' devices are root's alone (crw-------) here.
        auto* counts = static_cast<int*>(mmap(nullptr, 2 * sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
        if (counts == MAP_FAILED) throw std::runtime_error("mmap failed");
        counts[0] = counts[1] = 0;
        std::cout.flush();
        const pid_t child = fork();
        if (child == 0) {
            passed = failed = 0;
            if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
                check(false, "become nobody", std::strerror(errno));
            } else {
                auto own = make_gpiod_driver();
                expect_error(*own, output(a.chip, "LED", 0, false, "meshrun:check:nobody"), LineError::Kind::permission,
                             {"permission denied: cannot open /dev/" + a.chip, "udev", "usermod -aG gpio"}, "by name");
                expect_error(*own, output(a.label, "LED", 0, false, "meshrun:check:nobody"), LineError::Kind::permission,
                             {"permission denied: cannot open /dev/", "to read its label"}, "by label, which cannot be read");
                const LineReport r = probe_line(output(a.label, "LED", 0, false, "meshrun:check:nobody"));
                check(!r.chip_found && r.problems.size() == 1 && contains(r.problems[0], "permission denied"),
                      "probe says permission denied");
                const auto chips = gpio_chips();
                check(!chips.empty() && chips[0].error == std::strerror(EACCES), "gpio_chips says which cannot be opened");
            }
            std::cout.flush();
            counts[0] = passed;
            counts[1] = failed;
            _exit(0);
        }
        int status = 0;
        waitpid(child, &status, 0);
        passed += counts[0];
        failed += counts[1];
        check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the unprivileged child ran to its end");
        munmap(counts, 2 * sizeof(int));
    });

    section("lines outlive their driver, and release on destruction", [&] {
        std::unique_ptr<Line> led;
        {
            auto own = make_gpiod_driver();
            led = own->request(output(a.chip, "LED", 1, false, "meshrun:check:led"), {});
        }
        led->write(0);
        check(read_file(a.attribute(0, "value")) == "0", "a line works after its driver is gone");
        led.reset();
        auto again = driver->request(output(a.chip, "LED", 0, false, "meshrun:check:led2"), {});
        check(again != nullptr, "a released line can be requested again");
    });

    if (keep)
        sim.device.clear();  // left for a look: remove with `echo 0 > .../live` and rmdir
    else
        sim.remove();
    std::cout << passed << " passed, " << failed << " failed" << std::endl;
    return failed == 0 ? 0 : 1;
}
