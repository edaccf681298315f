// The gpiod driver's seam (gpiod_backend.hpp) on libgpiod 1.6: gpiod_chip, gpiod_line,
// one request per line; edges through the line's event descriptor.
#include <gpiod.h>

#include <cerrno>
#include <system_error>

#include "gpiod_backend.hpp"

namespace meshrun::drivers::gpio {

namespace {

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

struct ChipCloser {
    void operator()(gpiod_chip* chip) const { gpiod_chip_close(chip); }
};
using ChipHandle = std::unique_ptr<gpiod_chip, ChipCloser>;

ChipHandle open_chip(const std::string& path) {
    errno = 0;
    ChipHandle chip(gpiod_chip_open(path.c_str()));
    if (!chip) {
        if (errno == 0) errno = ENODEV;
        fail("gpiod_chip_open");
    }
    return chip;
}

std::string text(const char* s) { return s ? s : ""; }

const char* bias_name(int bias) {
    switch (bias) {
        case GPIOD_LINE_BIAS_PULL_UP: return "pull-up";
        case GPIOD_LINE_BIAS_PULL_DOWN: return "pull-down";
        case GPIOD_LINE_BIAS_DISABLE: return "disabled";
        default: return "unknown";
    }
}

// A requested line: its own chip handle (closing the chip releases the line), the line of it.
class V1Line final : public Line {
public:
    V1Line(ChipHandle chip, gpiod_line* line, bool output, std::string describe)
        : chip_(std::move(chip)), line_(line), output_(output), describe_(std::move(describe)) {
        if (!output_) set_nonblocking(gpiod_line_event_get_fd(line_));
    }
    ~V1Line() override { gpiod_line_release(line_); }  // then chip_ closes

    int read() override {
        const int value = gpiod_line_get_value(line_);
        if (value < 0) throw_line_failure("read", describe_, errno);
        return value;
    }

    void write(int level) override {
        if (level != 0 && level != 1) throw std::invalid_argument("level " + std::to_string(level) + " is neither 0 nor 1");
        if (!output_) throw std::logic_error(describe_ + " is an input and cannot be written");
        if (gpiod_line_set_value(line_, level) < 0) throw_line_failure("set", describe_, errno);
    }

    int edge_fd() const override { return output_ ? -1 : gpiod_line_event_get_fd(line_); }

    std::vector<EdgeEvent> read_edges() override {
        std::vector<EdgeEvent> out;
        if (output_) return out;
        gpiod_line_event events[16];  // the most one read returns
        for (;;) {
            const int n = gpiod_line_event_read_multiple(line_, events, 16);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                throw_line_failure("read the edges of", describe_, errno);
            }
            for (int i = 0; i < n; ++i) {
                const auto& e = events[i];
                out.push_back({e.event_type == GPIOD_LINE_EVENT_RISING_EDGE ? 1 : 0,
                               std::chrono::seconds(e.ts.tv_sec) + std::chrono::nanoseconds(e.ts.tv_nsec)});
            }
            if (n < 16) break;
        }
        return out;
    }

private:
    ChipHandle chip_;
    gpiod_line* line_;
    bool output_;
    std::string describe_;
};

}  // namespace

const char* library_version() { return gpiod_version_string(); }

struct Chip::Impl {
    std::string path;
    ChipHandle chip;
};

Chip::Chip(const std::string& path) : impl_(new Impl{path, open_chip(path)}) {}
Chip::~Chip() = default;

ChipInfo Chip::info() const {
    gpiod_chip* chip = impl_->chip.get();
    return {text(gpiod_chip_name(chip)), text(gpiod_chip_label(chip)), impl_->path, gpiod_chip_num_lines(chip), 0};
}

std::optional<unsigned> Chip::find_line(const std::string& name) {
    errno = 0;
    gpiod_line* line = gpiod_chip_find_line(impl_->chip.get(), name.c_str());
    if (line) return gpiod_line_offset(line);
    if (errno == ENOENT || errno == 0) return std::nullopt;
    fail("gpiod_chip_find_line");
}

LineInfo Chip::line_info(unsigned offset) {
    gpiod_line* line = gpiod_chip_get_line(impl_->chip.get(), offset);
    if (!line) fail("gpiod_chip_get_line");
    if (gpiod_line_update(line) < 0) fail("gpiod_line_update");
    LineInfo info;
    info.offset = offset;
    info.name = text(gpiod_line_name(line));
    info.used = gpiod_line_is_used(line);
    info.consumer = text(gpiod_line_consumer(line));
    info.output = gpiod_line_direction(line) == GPIOD_LINE_DIRECTION_OUTPUT;
    info.active_low = gpiod_line_active_state(line) == GPIOD_LINE_ACTIVE_STATE_LOW;
    info.bias = bias_name(gpiod_line_bias(line));
    info.edges = "unknown";  // the v1 line info of the kernel does not say
    return info;
}

std::unique_ptr<Line> Chip::request(unsigned offset, const LineConfig& config, const std::string& describe) {
    ChipHandle chip = open_chip(impl_->path);  // the line's own: it lives as long as the line
    gpiod_line* line = gpiod_chip_get_line(chip.get(), offset);
    if (!line) fail("gpiod_chip_get_line");
    int flags = config.active_low ? GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW : 0;
    const bool output = config.direction == Direction::output;
    int rc = 0;
    if (output) {
        if (config.initial != 0 && config.initial != 1)
            throw std::invalid_argument("initial level " + std::to_string(config.initial) + " is neither 0 nor 1");
        rc = gpiod_line_request_output_flags(line, config.consumer.c_str(), flags, config.initial);
    } else {
        if (config.bias == Bias::pull_up) flags |= GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_UP;
        if (config.bias == Bias::pull_down) flags |= GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_DOWN;
        rc = gpiod_line_request_both_edges_events_flags(line, config.consumer.c_str(), flags);
    }
    if (rc < 0) fail("gpiod_line_request");
    return std::make_unique<V1Line>(std::move(chip), line, output, describe);
}

}  // namespace meshrun::drivers::gpio
