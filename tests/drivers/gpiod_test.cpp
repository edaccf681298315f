// The gpiod driver where no chip is needed: how chips and lines are named, which names come
// close, the words of every LineError, and a machine without any GPIO chip (this one, and CI's).
// The driver on a real chip is tests/drivers/gpiod_check.cpp, run where gpio-sim is.
#include <catch2/catch.hpp>

#include <glob.h>

#include <string>
#include <vector>

#include "gpio_text.hpp"
#include "meshrun/drivers/pin.hpp"
#include "meshrun/drivers/sim.hpp"

using namespace meshrun::drivers;
using namespace meshrun::drivers::gpio;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

bool any_contains(const std::vector<std::string>& lines, const std::string& part) {
    for (const auto& line : lines)
        if (contains(line, part)) return true;
    return false;
}

// A Raspberry Pi 4's two chips, and a Pi 5's first.
const ChipInfo bcm2711{"gpiochip0", "pinctrl-bcm2711", "/dev/gpiochip0", 58, 0};
const ChipInfo expander{"gpiochip1", "raspberrypi-exp-gpio", "/dev/gpiochip1", 8, 0};
const ChipInfo rp1{"gpiochip0", "pinctrl-rp1", "/dev/gpiochip0", 54, 0};

// The Pi 4's line names: ID_SDA, ID_SCL, GPIO2 ... GPIO27, then names of no number.
std::vector<std::string> pi_names() {
    std::vector<std::string> names{"ID_SDA", "ID_SCL"};
    for (int i = 2; i <= 27; ++i) names.push_back("GPIO" + std::to_string(i));
    for (const char* n : {"RGMII_MDIO", "RGMIO_MDC", "CTS0", "RTS0", "TXD0", "RXD0"}) names.push_back(n);
    names.resize(58);
    return names;
}

LineConfig config(std::string chip, std::string line, Direction direction = Direction::output, Bias bias = Bias::none) {
    return {std::move(chip), std::move(line), direction, false, bias, 0, "meshrun:test:pin"};
}

bool machine_has_gpio() {
    glob_t g{};
    const bool any = glob("/dev/gpiochip*", 0, nullptr, &g) == 0 && g.gl_pathc > 0;
    globfree(&g);
    return any;
}

}  // namespace

TEST_CASE("a line written in digits is an offset, anything else a name", "[drivers][gpiod]") {
    CHECK(parse_offset("17") == 17u);
    CHECK(parse_offset("0") == 0u);
    CHECK(parse_offset("017") == 17u);
    CHECK_FALSE(parse_offset(""));
    CHECK_FALSE(parse_offset("-1"));
    CHECK_FALSE(parse_offset("+1"));
    CHECK_FALSE(parse_offset(" 17"));
    CHECK_FALSE(parse_offset("17a"));
    CHECK_FALSE(parse_offset("GPIO17"));
    CHECK_FALSE(parse_offset("1234567890"));  // no offset is that large
}

TEST_CASE("a chip is found by name, number, path or label", "[drivers][gpiod]") {
    const std::vector<ChipInfo> chips{bcm2711, expander};
    auto m = match_chip("gpiochip1", chips);
    REQUIRE(m);
    CHECK(m->index == 1);
    CHECK(how_name(m->how) == "name");

    m = match_chip("1", chips);
    REQUIRE(m);
    CHECK(m->index == 1);
    CHECK(m->how == ChipHow::name);

    m = match_chip("/dev/gpiochip0", chips);
    REQUIRE(m);
    CHECK(m->index == 0);
    CHECK(how_name(m->how) == "path");

    m = match_chip("raspberrypi-exp-gpio", chips);
    REQUIRE(m);
    CHECK(m->index == 1);
    CHECK(how_name(m->how) == "label");

    CHECK_FALSE(match_chip("gpiochip4", chips));
    CHECK_FALSE(match_chip("4", chips));
    CHECK_FALSE(match_chip("/dev/gpiochip4", chips));
    CHECK_FALSE(match_chip("pinctrl-rp1", chips));
    CHECK_FALSE(match_chip("", chips));
    CHECK_FALSE(match_chip("gpiochip0", {}));

    // A chip that could not be opened has no known label, but keeps its name.
    ChipInfo closed = expander;
    closed.error = 13;
    CHECK_FALSE(match_chip("raspberrypi-exp-gpio", {bcm2711, closed}));
    CHECK(match_chip("gpiochip1", {bcm2711, closed}));
}

TEST_CASE("a name matches before a label", "[drivers][gpiod]") {
    const ChipInfo odd{"gpiochip2", "gpiochip0", "/dev/gpiochip2", 4, 0};
    const auto m = match_chip("gpiochip0", {odd, bcm2711});
    REQUIRE(m);
    CHECK(m->index == 1);
    CHECK(m->how == ChipHow::name);
}

TEST_CASE("edit distance: optimal string alignment, letters without case", "[drivers][gpiod]") {
    CHECK(edit_distance("", "") == 0);
    CHECK(edit_distance("", "abc") == 3);
    CHECK(edit_distance("abc", "") == 3);
    CHECK(edit_distance("kitten", "sitting") == 3);
    CHECK(edit_distance("GPIO17", "GPIO71") == 1);  // one transposition
    CHECK(edit_distance("gpio17", "GPIO17") == 0);
    CHECK(edit_distance("BUTON", "BUTTON") == 1);
    CHECK(edit_distance("ca", "abc") == 3);  // OSA: no edit of a transposed pair
}

TEST_CASE("did you mean: the closest line names", "[drivers][gpiod]") {
    const auto names = pi_names();
    // Case alone: that name and no other.
    CHECK(closest_names("gpio17", names) == std::vector<std::string>{"GPIO17"});
    // A transposition comes first among names as close.
    const auto close = closest_names("GPIO71", names);
    REQUIRE(!close.empty());
    CHECK(close.front() == "GPIO17");
    CHECK(close.size() == 3);
    CHECK(closest_names("GPIO71", names, 1) == std::vector<std::string>{"GPIO17"});
    // Only the closest: `gpiochip1` is one edit further than `gpiochip0`.
    CHECK(closest_names("gpiochp0", {"gpiochip0", "gpiochip1"}) == std::vector<std::string>{"gpiochip0"});
    // Short names allow one edit; nothing close, nothing said.
    CHECK(closest_names("BUTON", {"LED", "BUTTON", "BUZZER"}) == std::vector<std::string>{"BUTTON"});
    CHECK(closest_names("LAMP", {"LED", "BUTTON"}).empty());
    CHECK(closest_names("GPIO17", {}).empty());
    // Unnamed lines are skipped, names listed twice are given once.
    CHECK(closest_names("BUTON", {"", "BUTTON", "", "BUTTON"}) == std::vector<std::string>{"BUTTON"});
}

TEST_CASE("GPIO<n> names carry a number", "[drivers][gpiod]") {
    CHECK(gpio_number("GPIO17") == 17u);
    CHECK(gpio_number("gpio4") == 4u);
    CHECK_FALSE(gpio_number("GPIO"));
    CHECK_FALSE(gpio_number("GPIO_17"));
    CHECK_FALSE(gpio_number("PA7"));
    CHECK_FALSE(gpio_number(""));
}

TEST_CASE("LineError: a summary, help lines, and both in what()", "[drivers][gpiod]") {
    const LineError e(LineError::Kind::busy, "line 17 of gpiochip0 is busy", {"stop it", "$ gpioinfo gpiochip0"});
    CHECK(e.kind == LineError::Kind::busy);
    CHECK(e.message() == "line 17 of gpiochip0 is busy\n  stop it\n  $ gpioinfo gpiochip0");
    CHECK(std::string(e.what()) == e.message());
    CHECK(LineError(LineError::Kind::other, "plain").message() == "plain");
    CHECK(kind_name(LineError::Kind::no_chip) == "no-chip");
    CHECK(kind_name(LineError::Kind::no_line) == "no-line");
    CHECK(kind_name(LineError::Kind::permission) == "permission");
}

TEST_CASE("no such chip: on a machine without any, says so", "[drivers][gpiod]") {
    const LineError e = no_chip_error("gpiochip0", {});
    CHECK(e.kind == LineError::Kind::no_chip);
    CHECK(e.summary == "no GPIO chip `gpiochip0`");
    REQUIRE(e.help.size() == 1);
    CHECK(contains(e.help[0], "none: this machine has no GPIO chip"));
}

TEST_CASE("no such chip: lists the chips there are, the closest, and that labels last", "[drivers][gpiod]") {
    ChipInfo closed{"gpiochip1", "", "/dev/gpiochip1", 0, 13};
    const LineError by_number = no_chip_error("4", {rp1, closed});
    CHECK(by_number.summary == "no GPIO chip `gpiochip4`");
    CHECK(any_contains(by_number.help, "gpiochip0 `pinctrl-rp1` (54 lines)"));
    CHECK(any_contains(by_number.help, "gpiochip1: cannot be opened (Permission denied)"));
    CHECK(any_contains(by_number.help, "a label, such as `pinctrl-rp1`, names the same chip on every kernel"));

    const LineError by_label = no_chip_error("pinctrl-rp", {bcm2711, rp1});
    CHECK(by_label.summary == "no GPIO chip named or labelled `pinctrl-rp`");
    CHECK(any_contains(by_label.help, "did you mean `pinctrl-rp1`?"));
    CHECK_FALSE(any_contains(by_label.help, "every kernel"));

    const LineError by_path = no_chip_error("/dev/gpiochip4", {bcm2711, expander});
    CHECK(by_path.summary == "no GPIO chip at `/dev/gpiochip4`");
    CHECK(any_contains(by_path.help, "  gpiochip1 `raspberrypi-exp-gpio` (8 lines)"));
    CHECK_FALSE(any_contains(by_path.help, "did you mean"));  // the list says it
    CHECK(any_contains(no_chip_error("gpiochp0", {bcm2711, expander}).help, "did you mean `gpiochip0`?"));

    const LineError not_chip = not_a_chip_error("/dev/null", 25, {bcm2711});
    CHECK(not_chip.kind == LineError::Kind::no_chip);
    CHECK(contains(not_chip.summary, "`/dev/null` is not a GPIO chip"));
}

TEST_CASE("no such line: the closest names with their offsets, other chips, or the offsets", "[drivers][gpiod]") {
    const auto names = pi_names();
    const LineError typo = no_line_error("GPIO71", bcm2711, names, {});
    CHECK(typo.kind == LineError::Kind::no_line);
    CHECK(typo.summary == "no line named `GPIO71` on gpiochip0 `pinctrl-bcm2711` (58 lines)");
    CHECK(any_contains(typo.help, "did you mean `GPIO17` (offset 17)"));

    const LineError far = no_line_error("LAMP", bcm2711, names, {});
    CHECK(any_contains(far.help, "`gpioinfo gpiochip0` (package gpiod) lists its line names"));
    CHECK(any_contains(far.help, "offsets 0 to 57"));

    const ChipInfo other{"gpiochip4", "pinctrl-rp1", "/dev/gpiochip4", 54, 0};
    const LineError moved = no_line_error("GPIO17", expander, {"BT_ON", "WL_ON"}, {{other, 17}});
    CHECK(any_contains(moved.help, "`GPIO17` is line 17 of gpiochip4 `pinctrl-rp1`: declare the pin on that chip"));

    const LineError unnamed = no_line_error("LED", {"gpiochip3", "sim", "/dev/gpiochip3", 8, 0}, std::vector<std::string>(8), {});
    CHECK(any_contains(unnamed.help, "gpiochip3 gives its lines no names: write the line's offset, offsets 0 to 7"));

    const LineError range = offset_range_error(60, bcm2711);
    CHECK(range.kind == LineError::Kind::no_line);
    CHECK(range.summary == "no line 60 on gpiochip0 `pinctrl-bcm2711` (58 lines)");
    CHECK(any_contains(range.help, "write an offset from 0 to 57, or the line's name"));
}

TEST_CASE("busy: names the consumer that holds the line", "[drivers][gpiod]") {
    const LineError ours = busy_error(bcm2711, 17, "GPIO17", "meshrun:home:porch:lamp");
    CHECK(ours.kind == LineError::Kind::busy);
    CHECK(ours.summary == "line 17 (`GPIO17`) of gpiochip0 is busy: held by `meshrun:home:porch:lamp`");
    CHECK(any_contains(ours.help, "another meshrun holds it"));

    const LineError kernel = busy_error(bcm2711, 8, "GPIO8", "spi0 CS0");
    CHECK(contains(kernel.summary, "held by `spi0 CS0`"));
    CHECK(any_contains(kernel.help, "`gpioinfo gpiochip0`"));

    CHECK(contains(busy_error(bcm2711, 4, "", "").summary, "line 4 of gpiochip0 is busy: held by a consumer that gave no name"));
}

TEST_CASE("permission denied: which device, and the commands that fix it", "[drivers][gpiod]") {
    DeviceAccess a{"/dev/gpiochip0", "crw-rw----", "root", "gpio", "pi", false, true, false, false, ""};
    LineError e = permission_error(a);
    CHECK(e.kind == LineError::Kind::permission);
    CHECK(e.summary == "permission denied: cannot open /dev/gpiochip0 (crw-rw---- root:gpio) as pi");
    CHECK(any_contains(e.help, "$ sudo usermod -aG gpio pi"));

    a.in_group_file = true;  // added already, not logged in again
    e = permission_error(a);
    CHECK(any_contains(e.help, "log out and in again"));
    CHECK(any_contains(e.help, "$ newgrp gpio"));

    a = {"/dev/gpiochip0", "crw-------", "root", "root", "pi", false, false, false, false, ""};
    e = permission_error(a);
    CHECK(any_contains(e.help, "$ sudo groupadd --system gpio"));
    CHECK(any_contains(e.help, "KERNEL==\"gpiochip*\", GROUP=\"gpio\", MODE=\"0660\""));
    CHECK(any_contains(e.help, "$ sudo udevadm control --reload-rules && sudo udevadm trigger --subsystem-match=gpio"));
    CHECK(any_contains(e.help, "$ sudo usermod -aG gpio pi"));
    a.gpio_group = true;
    CHECK_FALSE(any_contains(permission_error(a).help, "groupadd"));

    a.looking_for = "to read its label";
    CHECK(permission_error(a).summary ==
          "permission denied: cannot open /dev/gpiochip0 (crw------- root:root) as pi, to read its label");

    a.root = true;
    CHECK(any_contains(permission_error(a).help, "runs as root and is still refused"));
}

TEST_CASE("other request failures say what to do for a pull or edges the chip cannot do", "[drivers][gpiod]") {
    const auto pulled = config("gpiochip0", "4", Direction::input, Bias::pull_up);
    LineError e = request_error(bcm2711, 4, "GPIO4", pulled, 95 /* EOPNOTSUPP */);
    CHECK(e.kind == LineError::Kind::other);
    CHECK(contains(e.summary, "cannot request line 4 (`GPIO4`) of gpiochip0: Operation not supported"));
    CHECK(any_contains(e.help, "drop `pull_up` and fit a resistor"));
    e = request_error(bcm2711, 4, "GPIO4", config("gpiochip0", "4", Direction::input), 6 /* ENXIO */);
    CHECK(any_contains(e.help, "cannot report its edges"));
    e = request_error(bcm2711, 4, "GPIO4", config("gpiochip0", "4"), 5 /* EIO */);
    CHECK(e.summary == "cannot request line 4 (`GPIO4`) of gpiochip0: Input/output error");
    CHECK(e.help.empty());
}

TEST_CASE("probe: names whose number is not their offset", "[drivers][gpiod]") {
    std::vector<std::string> names(20);
    names[12] = "GPIO17";
    names[17] = "GPIO4";
    names[5] = "GPIO5";
    names[6] = "LED";
    // A name found at another offset than its number.
    auto p = name_problems("GPIO17", 12, bcm2711, names);
    REQUIRE(p.size() == 1);
    CHECK(contains(p[0], "`GPIO17` is offset 12 of gpiochip0, not offset 17"));
    CHECK(name_problems("GPIO5", 5, bcm2711, names).empty());
    CHECK(name_problems("LED", 6, bcm2711, names).empty());
    // An offset whose line is named for another number, and where that number's name is.
    p = name_problems("17", 17, bcm2711, names);
    REQUIRE(p.size() == 1);
    CHECK(contains(p[0], "offset 17 of gpiochip0 is the line named `GPIO4`; `GPIO17` is offset 12"));
    CHECK(name_problems("5", 5, bcm2711, names).empty());
    CHECK(name_problems("6", 6, bcm2711, names).empty());
    CHECK(name_problems("7", 7, bcm2711, names).empty());

    LineInfo held;
    held.offset = 17;
    held.name = "GPIO17";
    held.used = true;
    held.consumer = "meshrun:home:porch:lamp";
    CHECK(contains(held_problem(held, bcm2711, "meshrun:home:porch:lamp"), "this node is running"));
    CHECK(contains(held_problem(held, bcm2711, "meshrun/home/porch/bell"), "is held by `meshrun:home:porch:lamp`: requesting it will fail"));
}

TEST_CASE("gpiod_api names the libgpiod this binary was built against", "[drivers][gpiod]") {
    const std::string api = gpiod_api();
    const std::string built = MESHRUN_LIBGPIOD_API;
    INFO(api);
    if (built == "none")
        CHECK(api == "none");
    else
        CHECK(api.rfind("libgpiod " + built + ".", 0) == 0);
}

TEST_CASE("on a machine without GPIO chips, the gpiod driver says there are none", "[drivers][gpiod]") {
    if (machine_has_gpio()) {
        WARN("this machine has GPIO chips: the test is for one that has none");
        return;
    }
    if (std::string(MESHRUN_LIBGPIOD_API) == "none") {
        CHECK_THROWS_MATCHES(make_gpiod_driver()->request(config("gpiochip0", "17"), {}), LineError,
                             Catch::Predicate<LineError>([](const LineError& e) { return e.kind == LineError::Kind::other; }));
        return;
    }
    CHECK(gpio_chips().empty());
    auto driver = make_gpiod_driver();
    for (const char* chip : {"gpiochip0", "0", "/dev/gpiochip0", "pinctrl-rp1"}) {
        INFO(chip);
        try {
            driver->request(config(chip, "17"), {});
            FAIL("requested a line on a machine without GPIO");
        } catch (const LineError& e) {
            CHECK(e.kind == LineError::Kind::no_chip);
            CHECK(contains(e.message(), "none: this machine has no GPIO chip"));
        }
    }
    const LineReport report = probe_line(config("pinctrl-rp1", "GPIO17", Direction::input));
    CHECK_FALSE(report.chip_found);
    CHECK_FALSE(report.line_found);
    REQUIRE(report.problems.size() == 1);
    CHECK(contains(report.problems[0], "no GPIO chip named or labelled `pinctrl-rp1`"));
    CHECK(contains(report.problems[0], "none: this machine has no GPIO chip"));
}

TEST_CASE("the simulated driver's busy line is a LineError too, with the same words", "[drivers][gpiod]") {
    SimDriver sim;
    auto held = sim.request(config("gpiochip0", "17"), {});
    try {
        sim.request(config("gpiochip0", "17"), {});
        FAIL("requested a line twice");
    } catch (const LineError& e) {
        CHECK(e.kind == LineError::Kind::busy);
        CHECK(e.message() == "line gpiochip0 17 is already requested by meshrun:test:pin");
    }
}
