// The gpiod driver's seam (gpiod_backend.hpp) on libgpiod 2.x: a gpiod_line_request of one
// line built from line settings; edges through the request's descriptor into an event buffer.
#include <gpiod.h>

#include <cerrno>
#include <system_error>

#include "gpiod_backend.hpp"

namespace meshrun::drivers::gpio {

namespace {

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

// unique_ptr for the library's objects, each with its own free function.
template <typename T, void (*Free)(T*)>
struct Freer {
    void operator()(T* p) const { Free(p); }
};
template <typename T, void (*Free)(T*)>
using Owned = std::unique_ptr<T, Freer<T, Free>>;

using ChipHandle = Owned<gpiod_chip, gpiod_chip_close>;
using ChipInfoHandle = Owned<gpiod_chip_info, gpiod_chip_info_free>;
using LineInfoHandle = Owned<gpiod_line_info, gpiod_line_info_free>;
using SettingsHandle = Owned<gpiod_line_settings, gpiod_line_settings_free>;
using LineConfigHandle = Owned<gpiod_line_config, gpiod_line_config_free>;
using RequestConfigHandle = Owned<gpiod_request_config, gpiod_request_config_free>;
using RequestHandle = Owned<gpiod_line_request, gpiod_line_request_release>;
using BufferHandle = Owned<gpiod_edge_event_buffer, gpiod_edge_event_buffer_free>;

// Checks a constructor's result: null means errno says why.
template <typename Handle>
Handle made(Handle h, const char* what) {
    if (!h) {
        if (errno == 0) errno = ENOMEM;
        fail(what);
    }
    return h;
}

void check(int rc, const char* what) {
    if (rc < 0) fail(what);
}

std::string text(const char* s) { return s ? s : ""; }

const char* bias_name(gpiod_line_bias bias) {
    switch (bias) {
        case GPIOD_LINE_BIAS_PULL_UP: return "pull-up";
        case GPIOD_LINE_BIAS_PULL_DOWN: return "pull-down";
        case GPIOD_LINE_BIAS_DISABLED: return "disabled";
        default: return "unknown";
    }
}

const char* edges_name(gpiod_line_edge edge) {
    switch (edge) {
        case GPIOD_LINE_EDGE_NONE: return "none";
        case GPIOD_LINE_EDGE_RISING: return "rising";
        case GPIOD_LINE_EDGE_FALLING: return "falling";
        case GPIOD_LINE_EDGE_BOTH: return "both";
    }
    return "unknown";
}

constexpr std::size_t edge_batch = 16;  // the events read at once; read_edges loops for more

// A requested line: the request alone (it does not need the chip), and for inputs an event buffer.
class V2Line final : public Line {
public:
    V2Line(RequestHandle request, unsigned offset, bool output, std::string describe)
        : request_(std::move(request)), offset_(offset), output_(output), describe_(std::move(describe)) {
        if (!output_) {
            set_nonblocking(gpiod_line_request_get_fd(request_.get()));
            errno = 0;
            buffer_ = made(BufferHandle(gpiod_edge_event_buffer_new(edge_batch)), "gpiod_edge_event_buffer_new");
        }
    }

    int read() override {
        const gpiod_line_value value = gpiod_line_request_get_value(request_.get(), offset_);
        if (value == GPIOD_LINE_VALUE_ERROR) throw_line_failure("read", describe_, errno);
        return value == GPIOD_LINE_VALUE_ACTIVE ? 1 : 0;
    }

    void write(int level) override {
        if (level != 0 && level != 1) throw std::invalid_argument("level " + std::to_string(level) + " is neither 0 nor 1");
        if (!output_) throw std::logic_error(describe_ + " is an input and cannot be written");
        const auto value = level ? GPIOD_LINE_VALUE_ACTIVE : GPIOD_LINE_VALUE_INACTIVE;
        if (gpiod_line_request_set_value(request_.get(), offset_, value) < 0) throw_line_failure("set", describe_, errno);
    }

    int edge_fd() const override { return output_ ? -1 : gpiod_line_request_get_fd(request_.get()); }

    std::vector<EdgeEvent> read_edges() override {
        std::vector<EdgeEvent> out;
        if (output_) return out;
        for (;;) {
            const int n = gpiod_line_request_read_edge_events(request_.get(), buffer_.get(), edge_batch);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                throw_line_failure("read the edges of", describe_, errno);
            }
            for (int i = 0; i < n; ++i) {
                gpiod_edge_event* e = gpiod_edge_event_buffer_get_event(buffer_.get(), static_cast<unsigned long>(i));
                out.push_back({gpiod_edge_event_get_event_type(e) == GPIOD_EDGE_EVENT_RISING_EDGE ? 1 : 0,
                               std::chrono::nanoseconds(gpiod_edge_event_get_timestamp_ns(e))});
            }
            if (static_cast<std::size_t>(n) < edge_batch) break;
        }
        return out;
    }

private:
    RequestHandle request_;
    unsigned offset_;
    bool output_;
    std::string describe_;
    BufferHandle buffer_;
};

}  // namespace

const char* library_version() { return gpiod_api_version(); }

struct Chip::Impl {
    std::string path;
    ChipHandle chip;
};

Chip::Chip(const std::string& path) {
    errno = 0;
    ChipHandle chip(gpiod_chip_open(path.c_str()));
    if (!chip) {
        if (errno == 0) errno = ENODEV;
        fail("gpiod_chip_open");
    }
    impl_.reset(new Impl{path, std::move(chip)});
}

Chip::~Chip() = default;

ChipInfo Chip::info() const {
    errno = 0;
    ChipInfoHandle info = made(ChipInfoHandle(gpiod_chip_get_info(impl_->chip.get())), "gpiod_chip_get_info");
    return {text(gpiod_chip_info_get_name(info.get())), text(gpiod_chip_info_get_label(info.get())), impl_->path,
            static_cast<unsigned>(gpiod_chip_info_get_num_lines(info.get())), 0};
}

std::optional<unsigned> Chip::find_line(const std::string& name) {
    errno = 0;
    const int offset = gpiod_chip_get_line_offset_from_name(impl_->chip.get(), name.c_str());
    if (offset >= 0) return static_cast<unsigned>(offset);
    if (errno == ENOENT || errno == 0) return std::nullopt;
    fail("gpiod_chip_get_line_offset_from_name");
}

LineInfo Chip::line_info(unsigned offset) {
    errno = 0;
    LineInfoHandle line = made(LineInfoHandle(gpiod_chip_get_line_info(impl_->chip.get(), offset)), "gpiod_chip_get_line_info");
    LineInfo info;
    info.offset = offset;
    info.name = text(gpiod_line_info_get_name(line.get()));
    info.used = gpiod_line_info_is_used(line.get());
    info.consumer = text(gpiod_line_info_get_consumer(line.get()));
    info.output = gpiod_line_info_get_direction(line.get()) == GPIOD_LINE_DIRECTION_OUTPUT;
    info.active_low = gpiod_line_info_is_active_low(line.get());
    info.bias = bias_name(gpiod_line_info_get_bias(line.get()));
    info.edges = edges_name(gpiod_line_info_get_edge_detection(line.get()));
    return info;
}

std::unique_ptr<Line> Chip::request(unsigned offset, const LineConfig& config, const std::string& describe) {
    const bool output = config.direction == Direction::output;
    errno = 0;
    SettingsHandle settings = made(SettingsHandle(gpiod_line_settings_new()), "gpiod_line_settings_new");
    gpiod_line_settings_set_active_low(settings.get(), config.active_low);
    if (output) {
        if (config.initial != 0 && config.initial != 1)
            throw std::invalid_argument("initial level " + std::to_string(config.initial) + " is neither 0 nor 1");
        check(gpiod_line_settings_set_direction(settings.get(), GPIOD_LINE_DIRECTION_OUTPUT), "set direction");
        check(gpiod_line_settings_set_output_value(settings.get(),
                                                   config.initial ? GPIOD_LINE_VALUE_ACTIVE : GPIOD_LINE_VALUE_INACTIVE),
              "set output value");
    } else {
        check(gpiod_line_settings_set_direction(settings.get(), GPIOD_LINE_DIRECTION_INPUT), "set direction");
        const gpiod_line_bias bias = config.bias == Bias::pull_up     ? GPIOD_LINE_BIAS_PULL_UP
                                     : config.bias == Bias::pull_down ? GPIOD_LINE_BIAS_PULL_DOWN
                                                                      : GPIOD_LINE_BIAS_AS_IS;
        check(gpiod_line_settings_set_bias(settings.get(), bias), "set bias");
        check(gpiod_line_settings_set_edge_detection(settings.get(), GPIOD_LINE_EDGE_BOTH), "set edge detection");
        check(gpiod_line_settings_set_event_clock(settings.get(), GPIOD_LINE_CLOCK_MONOTONIC), "set event clock");
    }
    LineConfigHandle line_config = made(LineConfigHandle(gpiod_line_config_new()), "gpiod_line_config_new");
    check(gpiod_line_config_add_line_settings(line_config.get(), &offset, 1, settings.get()), "add line settings");
    RequestConfigHandle request_config = made(RequestConfigHandle(gpiod_request_config_new()), "gpiod_request_config_new");
    gpiod_request_config_set_consumer(request_config.get(), config.consumer.c_str());
    errno = 0;
    RequestHandle request(gpiod_chip_request_lines(impl_->chip.get(), request_config.get(), line_config.get()));
    if (!request) {
        if (errno == 0) errno = EIO;
        fail("gpiod_chip_request_lines");
    }
    return std::make_unique<V2Line>(std::move(request), offset, output, describe);
}

}  // namespace meshrun::drivers::gpio
