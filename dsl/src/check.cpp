// Phase 2: the checks. Resolves every name against its node (pins, channels and
// actions share one namespace per node), then checks what the names are used
// for: ranges, addresses, lines, pin options, rule order, tests and unused
// names here; contexts of `ack`/`value`/`tick` and cycles in check_flow.cpp.
//
// Pure and linear: names are looked up by string_view into the AST, in a node's
// few adjacent entries or through open-addressing tables (check_state.hpp);
// edit-distance suggestions are computed only when an error is reported.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "check_state.hpp"

namespace meshrun::dsl {

namespace check_detail {

namespace {

constexpr std::uint64_t us_per_s = 1'000'000;
constexpr std::uint64_t max_duration = 7ULL * 24 * 3600 * us_per_s;  // 7 days
constexpr std::uint64_t max_debounce = 10 * us_per_s;
constexpr std::int64_t max_repeat = 1'000'000;
constexpr std::int64_t max_port = 65535;
constexpr std::size_t max_line_offset = 1023;

const char* const one_namespace = "the pins, channels, actions and variables of a node share one namespace";

// A count as written (the parser saturates counts too large for 64 bits).
std::string format_count(const Count& c) {
    return c.value == INT64_MAX ? "over " + std::to_string(INT64_MAX) : std::to_string(c.value);
}

// A literal as the checks compare it (`1` and `"1"` are both "1"); `-N` counts as one.
struct Literal {
    std::string text;     // its value
    std::string display;  // as written, for messages
};
std::optional<Literal> literal(const Expr& e) {
    if (e.kind == Expr::Kind::number) return Literal{e.text, e.text};
    if (e.kind == Expr::Kind::string && !e.has_interpolation()) {
        std::string t = e.literal_text();
        return Literal{t, "\"" + t + "\""};
    }
    if (e.kind == Expr::Kind::neg && e.operands.size() == 1 && e.operands[0].kind == Expr::Kind::number)
        return Literal{"-" + e.operands[0].text, "-" + e.operands[0].text};
    return std::nullopt;
}

// The level a literal stands for, without building strings: 0, 1, or -1 for anything else.
int literal_level(const Expr& e) {
    std::string_view t;
    if (e.kind == Expr::Kind::number) {
        t = e.text;
    } else if (e.kind == Expr::Kind::string && e.operands.size() == 1 && e.operands[0].kind == Expr::Kind::text) {
        t = e.operands[0].text;
    } else if (e.kind == Expr::Kind::string && e.operands.empty()) {
        return -1;
    } else {
        return literal(e) ? -1 : -2;  // -2: not a literal at all
    }
    return t == "0" ? 0 : t == "1" ? 1 : -1;
}

// `localhost`, `127.0.0.1`, `::1` and no host (`at :PORT`) are one host, the local one.
bool is_local(std::string_view host) {
    return host.empty() || HostEq{}(host, "localhost") || host == "127.0.0.1" || host == "::1";
}

// From the start of `a` to the end of `b` (both in one file).
Span join(Span a, Span b) { return Span{a.file, a.begin, b.end}; }

}  // namespace

// ---------------------------------------------------------------------------
// diagnostics and names

Diagnostic& Checker::error(Kind k, Span s, std::string message) {
    if (!reported_.insert(DiagKey{k, s}).second) {
        scratch_ = Diagnostic{};
        return scratch_;
    }
    return diags_.error(k, s, std::move(message));
}

Diagnostic& Checker::warning(Kind k, Span s, std::string message) {
    if (!reported_.insert(DiagKey{k, s}).second) {
        scratch_ = Diagnostic{};
        return scratch_;
    }
    return diags_.warning(k, s, std::move(message));
}

void Checker::suggest(Diagnostic& d, std::string_view word, const std::vector<std::string_view>& candidates) {
    if (auto best = closest(word, candidates)) d.notes.push_back({std::nullopt, "did you mean " + bt(*best) + "?"});
}

const Names* Checker::find(int node, std::string_view name) const {
    const NodeInfo& ni = nodes_[static_cast<std::size_t>(node)];
    if (ni.hashed) {
        const std::size_t* at = names_.find(NameKey{node, name});
        return at ? &local_names_[*at].second : nullptr;
    }
    // Most nodes have a handful of names: a scan of a few adjacent entries beats hashing.
    for (std::size_t i = ni.name_base, end = ni.name_base + ni.name_count; i < end; ++i)
        if (local_names_[i].first == name) return &local_names_[i].second;
    return nullptr;
}

Names& Checker::slot(int node, std::string_view name) {
    if (const Names* found = find(node, name)) return const_cast<Names&>(*found);
    NodeInfo& ni = nodes_[static_cast<std::size_t>(node)];
    local_names_.push_back({name, Names{}});  // capacity reserved: references stay valid
    ++ni.name_count;
    if (ni.hashed) {
        names_.emplace(NameKey{node, name}, local_names_.size() - 1);
    } else if (ni.name_count > 16) {
        ni.hashed = true;
        for (std::size_t i = ni.name_base; i < ni.name_base + ni.name_count; ++i)
            names_.emplace(NameKey{node, local_names_[i].first}, i);
    }
    return local_names_.back().second;
}

const std::vector<std::string_view>& Checker::node_names() {
    if (node_names_.empty())
        for (const auto& n : program_.nodes) node_names_.push_back(n.name.name);
    return node_names_;
}

std::vector<std::string_view> Checker::pin_names(int n) const {
    std::vector<std::string_view> out;
    for (const auto& p : node(n).pins) out.push_back(p.name.name);
    return out;
}

std::vector<std::string_view> Checker::action_names(int n) const {
    std::vector<std::string_view> out;
    for (const auto& a : node(n).actions) out.push_back(a.name.name);
    return out;
}

std::vector<std::string_view> Checker::var_names(int n) const {
    std::vector<std::string_view> out;
    for (const auto& v : node(n).vars) out.push_back(v.name.name);
    return out;
}

std::vector<std::string_view> Checker::channel_names(int n) const {
    const NodeInfo& ni = nodes_[n];
    return {channel_names_.begin() + static_cast<std::ptrdiff_t>(ni.channel_base),
            channel_names_.begin() + static_cast<std::ptrdiff_t>(ni.channel_base + ni.channel_count)};
}

// ---------------------------------------------------------------------------
// the whole program

Summary Checker::run() {
    Summary s;
    s.nodes = program_.nodes.size();
    s.tests = program_.tests.size();
    for (const auto& n : program_.nodes) {
        s.pins += n.pins.size();
        s.rules += n.rules.size();
        s.timers += n.timers.size();
        s.variables += n.vars.size();
        s.actions += n.actions.size();
    }

    check_discovery();
    check_settings();
    declare_nodes();
    s.channels = channel_names_.size();
    action_vertex_base_ = channel_names_.size();
    measure_actions();
    for (std::size_t i = 0; i < nodes_.size(); ++i) check_node_bodies(static_cast<int>(i));
    // Actions run from message rules (outside `after`): their own bodies may ack twice.
    for (std::size_t a = 0; a < actions_.size(); ++a) {
        if (!(action_ctx_seen_[a] & 1u)) continue;
        std::optional<AckSite> first;
        check_acks(action_node_[a], actions_[a]->body, first);
    }
    check_recursion();
    check_storms();
    resolve_cancels();
    check_tests();
    check_unused();
    return s;
}

// `discovery etcd "http://HOST[:PORT]"`
void Checker::check_discovery() {
    for (const auto& d : program_.discovery) {
        const std::string_view url = d.url;
        auto bad = [&] {
            error(Kind::bad_url, d.span, "discovery URL " + bt(d.url) + " is not `http://HOST[:PORT]`")
                .notes.push_back({std::nullopt, "etcd's client URL looks like `http://127.0.0.1:2379`"});
        };
        std::string_view rest;
        if (url.starts_with("http://")) {
            rest = url.substr(7);
        } else if (url.starts_with("https://")) {
            // Refused here, not only when a node starts: `check` passes what `run` can run.
            error(Kind::bad_url, d.span, "discovery URL " + bt(d.url) + ": etcd over https is not supported yet")
                .notes.push_back({std::nullopt, "give etcd's http:// client URL (`http://HOST[:PORT]`)"});
            continue;
        } else {
            bad();
            continue;
        }
        if (rest.ends_with('/')) rest.remove_suffix(1);
        std::size_t i = 0;
        if (!rest.empty() && rest[0] == '[') {  // [IPv6]
            const std::size_t close = rest.find(']');
            bool ok = close != std::string_view::npos && close > 1;
            for (std::size_t k = 1; ok && k < close; ++k)
                ok = std::isxdigit(static_cast<unsigned char>(rest[k])) || rest[k] == ':' || rest[k] == '.';
            if (!ok) {
                bad();
                continue;
            }
            i = close + 1;
        } else {
            while (i < rest.size() && (std::isalnum(static_cast<unsigned char>(rest[i])) || rest[i] == '.' ||
                                       rest[i] == '-' || rest[i] == '_'))
                ++i;
            if (i == 0) {
                bad();
                continue;
            }
        }
        if (i == rest.size()) continue;
        const std::string_view digits = rest.substr(std::min(i + 1, rest.size()));
        if (rest[i] != ':' || digits.empty() || digits.size() > 5 ||
            !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            bad();
            continue;
        }
        const long port = std::strtol(std::string(digits).c_str(), nullptr, 10);
        if (port < 1 || port > max_port)
            error(Kind::bad_url, d.span,
                  "port " + std::to_string(port) + " of discovery URL " + bt(d.url) + " is out of range (1 to 65535)");
    }
}

// ---------------------------------------------------------------------------
// `secret`, `tls` and `limits`: one of each at most

namespace {

// What a limit takes and its range; the defaults are engine::Limits' (docs/delivery.md).
struct LimitSpec {
    std::string_view name;
    Limit::Unit unit;
    std::uint64_t least, most;
    std::string_view example;  // its default, as the language writes it
};
constexpr LimitSpec limit_specs[] = {
    {"message", Limit::Unit::size, 16, 16 << 20, "64KiB"},
    {"connections", Limit::Unit::count, 1, 1'000'000, "1024"},
    {"handshake", Limit::Unit::duration, 100'000, 3600 * us_per_s, "5s"},
    {"idle", Limit::Unit::duration, us_per_s, 24 * 3600 * us_per_s, "60s"},
    {"outbox", Limit::Unit::count, 1, 1'000'000, "1000"},
};

// A size in the largest unit it is a whole number of: `16B`, `1000B`, `64KiB`, `16MiB`.
std::string format_size(std::uint64_t bytes) {
    if (bytes != 0 && bytes % (1024 * 1024) == 0) return std::to_string(bytes / (1024 * 1024)) + "MiB";
    if (bytes != 0 && bytes % 1024 == 0) return std::to_string(bytes / 1024) + "KiB";
    return std::to_string(bytes) + "B";
}

std::string format_limit(Limit::Unit unit, std::uint64_t value) {
    if (unit == Limit::Unit::size) return format_size(value);
    if (unit == Limit::Unit::duration) return format_duration(value);
    return std::to_string(value);
}

}  // namespace

void Checker::check_settings() {
    const auto& secrets = program_.secrets;
    for (std::size_t i = 1; i < secrets.size(); ++i)
        error(Kind::duplicate_item, secrets[i].span, "`secret` is given twice: a topology has one token")
            .notes.push_back({secrets[0].span, "first given here"});
    for (std::size_t i = 0; i < program_.tls.size(); ++i) {
        if (i > 0)
            error(Kind::duplicate_item, program_.tls[i].keyword,
                  "`tls` is given twice: a topology has one certificate and key")
                .notes.push_back({program_.tls[0].keyword, "first given here"});
        check_tls(program_.tls[i]);
    }
    for (std::size_t i = 0; i < program_.limits.size(); ++i) {
        if (i > 0)
            error(Kind::duplicate_item, program_.limits[i].keyword,
                  "`limits` is given twice: write every limit in one `limits { ... }`")
                .notes.push_back({program_.limits[0].keyword, "first given here"});
        check_limits(program_.limits[i]);
    }
}

// `tls cert "FILE" key "FILE" [ca "FILE"]`: cert and key once each, ca at most once, no file
// name empty. The files are not opened here: they may exist only on the device that runs the node.
void Checker::check_tls(const Tls& tls) {
    for (std::size_t i = 0; i < tls.files.size(); ++i) {
        const Tls::File& f = tls.files[i];
        const Tls::File* first = tls.find(f.option);
        if (first != &f) {
            error(Kind::tls_option, f.span, bt(f.option) + " is given twice in `tls`")
                .notes.push_back({first->span, "first given here"});
            continue;
        }
        if (f.path.empty()) error(Kind::tls_option, f.path_span, bt(f.option) + " has an empty file name");
    }
    const bool cert = tls.find("cert") != nullptr, key = tls.find("key") != nullptr;
    if (cert && key) return;
    const std::string missing =
        !cert && !key ? "`cert \"FILE\"` and `key \"FILE\"`, the certificate the nodes serve and its private key"
        : !cert       ? "`cert \"FILE\"`, the certificate the nodes serve"
                      : "`key \"FILE\"`, the private key of the certificate";
    error(Kind::tls_option, tls.keyword, "`tls` without " + missing)
        .notes.push_back({std::nullopt, "as in `tls cert \"node.crt\" key \"node.key\"`, with `ca \"FILE\"` for mutual TLS"});
}

// Each limit known, once, in its unit and range.
void Checker::check_limits(const Limits& limits) {
    for (std::size_t i = 0; i < limits.limits.size(); ++i) {
        const Limit& l = limits.limits[i];
        const LimitSpec* spec = nullptr;
        for (const LimitSpec& s : limit_specs)
            if (s.name == l.name.name) spec = &s;
        if (!spec) {
            std::vector<std::string_view> names;
            for (const LimitSpec& s : limit_specs) names.push_back(s.name);
            auto& d = error(Kind::unknown_limit, l.name.span, "unknown limit " + bt(l.name.name));
            suggest(d, l.name.name, names);
            d.notes.push_back({std::nullopt, "the limits are `message`, `connections`, `handshake`, `idle` "
                                             "and `outbox`"});
            continue;
        }
        const Limit* first = nullptr;
        for (std::size_t k = 0; k < i && !first; ++k)
            if (limits.limits[k].name.name == l.name.name) first = &limits.limits[k];
        if (first) {
            error(Kind::duplicate_item, l.name.span, "limit " + bt(l.name.name) + " is given twice")
                .notes.push_back({first->name.span, "first given here"});
            continue;
        }
        if (l.unit != spec->unit) {
            const char* what = spec->unit == Limit::Unit::size       ? "a size"
                               : spec->unit == Limit::Unit::duration ? "a duration"
                                                                     : "a count";
            const char* how = spec->unit == Limit::Unit::size ? "a size is a whole number with `B`, `KiB` or `MiB`; "
                                                                "`1KiB` is 1024 bytes"
                              : spec->unit == Limit::Unit::duration
                                  ? "a duration is a whole number with `us`, `ms`, `s`, `m` or `h`"
                                  : "a count is a whole number without a unit";
            error(Kind::limit_unit, l.value_span,
                  "limit " + bt(l.name.name) + " is " + what + ", such as " + bt(spec->example) + ", not " + bt(l.text))
                .notes.push_back({std::nullopt, how});
            continue;
        }
        if (l.value < spec->least || l.value > spec->most)
            error(Kind::out_of_range, l.value_span,
                  bt(l.name.name) + " limit " + l.text + " is out of range (" + format_limit(spec->unit, spec->least) +
                      " to " + format_limit(spec->unit, spec->most) + ")");
    }
}

// ---------------------------------------------------------------------------
// declarations: nodes, addresses, pins, actions, channels

void Checker::declare_nodes() {
    const std::size_t count = program_.nodes.size();
    nodes_.resize(count);
    node_index_.reserve(count);
    std::size_t pins = 0, actions = 0, rules = 0, vars = 0;
    for (const auto& n : program_.nodes) {
        pins += n.pins.size();
        actions += n.actions.size();
        rules += n.rules.size();
        vars += n.vars.size();
    }
    local_names_.reserve(pins + actions + rules + vars);
    pin_used_.assign(pins, 0);
    var_read_.assign(vars, 0);
    var_set_.assign(vars, 0);
    action_called_.assign(actions, 0);
    action_dup_.assign(actions, 0);
    action_ctx_seen_.assign(actions, 0);
    action_on_chain_.assign(actions, 0);
    actions_.reserve(actions);
    action_node_.reserve(actions);
    rule_kind_.assign(rules, RuleKind::invalid);
    rule_ref_.assign(rules, -1);
    channel_names_.reserve(rules);
    channel_node_.reserve(rules);
    edges_.reserve(rules + actions);

    HostMap hosts;  // every host but the local one, which is host 0
    hosts.reserve(count);
    PortMap ports;
    ports.reserve(count);
    LineMap lines;
    lines.reserve(pins);
    pins = actions = rules = vars = 0;
    for (std::size_t i = 0; i < count; ++i) {
        Node& n = program_.nodes[i];
        NodeInfo& ni = nodes_[i];
        ni.node = &n;
        ni.index = static_cast<int>(i);
        ni.has_port = n.address && n.address->port;
        ni.pin_base = pins;
        ni.action_base = actions;
        ni.rule_base = rules;
        ni.var_base = vars;
        ni.name_base = local_names_.size();
        vars += n.vars.size();
        pins += n.pins.size();
        actions += n.actions.size();
        rules += n.rules.size();
        for (const auto& a : n.actions) {
            actions_.push_back(&a);
            action_node_.push_back(static_cast<int>(i));
        }
        if (n.address) {
            ni.host = is_local(n.address->host) ? 0
                                                : *hosts.emplace(n.address->host, static_cast<int>(hosts.size()) + 1).first;
        } else {
            ni.host = -1 - static_cast<int>(i);  // its own host: lines compare within the node only
        }

        if (auto [first, fresh] = node_index_.emplace(n.name.name, static_cast<int>(i)); !fresh) {
            error(Kind::duplicate_name, n.name.span, "node " + bt(n.name.name) + " is declared twice")
                .notes.push_back({program_.nodes[*first].name.span, "first declared here"});
        }
        declare_names(static_cast<int>(i));
        declare_vars(static_cast<int>(i));
        for (const Pin& p : n.pins) check_pin(p);
        declare_rules(static_cast<int>(i));
        check_address(static_cast<int>(i), ports);
        check_lines(static_cast<int>(i), lines);
    }
}

// Lines in use: one chip and line bound twice on one host (or twice in a node without an address).
void Checker::check_lines(int index, LineMap& lines) {
    const Node& n = node(index);
    for (std::size_t p = 0; p < n.pins.size(); ++p) {
        const Pin& pin = n.pins[p];
        auto [owner, fresh] = lines.emplace(LineKey{nodes_[index].host, pin.chip, pin.line, pin.line_quoted},
                                            std::make_pair(index, static_cast<int>(p)));
        if (fresh) continue;
        const auto [fn, fp] = *owner;
        const Pin& first = program_.nodes[fn].pins[fp];
        std::string by = "pin " + bt(first.name.name);
        if (fn != index) by += " of node " + bt(program_.nodes[fn].name.name);
        const std::string line = pin.line_quoted ? "\"" + pin.line + "\"" : pin.line;
        const std::string chip = pin.chip_quoted ? "\"" + pin.chip + "\"" : pin.chip;
        error(Kind::line_in_use, pin.line_span, "line " + bt(line) + " of " + bt(chip) + " is already used by " + by)
            .notes.push_back({first.line_span, "first used here"});
    }
}

void Checker::check_address(int index, PortMap& ports) {
    const Node& n = node(index);
    if (!n.address || !n.address->port) return;
    const Count& port = *n.address->port;
    if (port.value == 0) {
        // Any free port: the node registers the one it got in etcd, where its peers look it up.
        // It never clashes with another node's, so it takes no part in the check below.
        if (!program_.discovery.empty()) return;
        error(Kind::out_of_range, port.span,
              "port 0 means any free port, which peers could find only through `discovery etcd \"URL\"`; "
              "the topology has no `discovery` line")
            .notes.push_back({std::nullopt, "give a port from 1 to 65535, or add etcd's client URL, as in "
                                            "`discovery etcd \"http://127.0.0.1:2379\"`"});
        return;
    }
    if (port.value < 1 || port.value > max_port) {
        error(Kind::out_of_range, port.span, "port " + format_count(port) + " is out of range (1 to 65535)");
        return;
    }
    const std::uint64_t key = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(nodes_[index].host)) << 32) |
                              static_cast<std::uint64_t>(port.value);
    auto [at, fresh] = ports.emplace(key, index);
    if (fresh) return;
    const Node& first = node(*at);
    auto& d = error(Kind::port_in_use, port.span,
                    "port " + std::to_string(port.value) + " is already used by node " + bt(first.name.name) +
                        " on the same host");
    d.notes.push_back({first.address->port->span, "first used here"});
    if (first.address->host != n.address->host) {
        d.notes.push_back({std::nullopt, is_local(n.address->host)
                                             ? "`localhost`, `127.0.0.1`, `[::1]` and `at :PORT` are one host"
                                             : "host names are compared regardless of case"});
    }
}

// Pins and actions: the later of two declarations of one name is the duplicate.
void Checker::declare_names(int index) {
    const Node& n = node(index);
    for (std::size_t p = 0; p < n.pins.size(); ++p) {
        const Ident& name = n.pins[p].name;
        Names& s = slot(index, name.name);
        if (s.pin < 0) {
            s.pin = static_cast<int>(p);
            continue;
        }
        error(Kind::duplicate_name, name.span,
              "pin " + bt(name.name) + " is declared twice in node " + bt(n.name.name))
            .notes.push_back({n.pins[s.pin].name.span, "first declared here"});
    }
    const NodeInfo& ni = nodes_[index];
    for (std::size_t a = 0; a < n.actions.size(); ++a) {
        const Ident& name = n.actions[a].name;
        Names& s = slot(index, name.name);
        if (s.action >= 0) {
            action_dup_[ni.action_base + a] = 1;
            error(Kind::duplicate_name, name.span,
                  "action " + bt(name.name) + " is declared twice in node " + bt(n.name.name))
                .notes.push_back({n.actions[s.action].name.span, "first declared here"});
            continue;
        }
        s.action = static_cast<int>(a);
        if (s.pin < 0) continue;
        // A pin and an action of one name: the later one is the duplicate.
        const Ident& pin = n.pins[s.pin].name;
        const bool pin_first = before(pin.span, name.span);
        const Ident& second = pin_first ? name : pin;
        const Ident& first = pin_first ? pin : name;
        if (pin_first) action_dup_[ni.action_base + a] = 1;
        auto& d = error(Kind::duplicate_name, second.span,
                        bt(name.name) + " is declared twice in node " + bt(n.name.name) + ", as " +
                            (pin_first ? "a pin and as an action" : "an action and as a pin"));
        d.notes.push_back({first.span, std::string("first declared here, as ") + (pin_first ? "a pin" : "an action")});
        d.notes.push_back({std::nullopt, one_namespace});
    }
}

// A variable takes its name only when no pin or action has it (the later declaration of the two
// is the error).
void Checker::declare_vars(int index) {
    const Node& n = node(index);
    for (std::size_t v = 0; v < n.vars.size(); ++v) {
        const Ident& name = n.vars[v].name;
        Names& s = slot(index, name.name);
        if (s.var >= 0) {
            error(Kind::duplicate_name, name.span,
                  "variable " + bt(name.name) + " is declared twice in node " + bt(n.name.name))
                .notes.push_back({n.vars[s.var].name.span, "first declared here"});
            continue;
        }
        if (s.pin < 0 && s.action < 0) {
            s.var = static_cast<int>(v);
            continue;
        }
        const Ident& other = s.pin >= 0 ? n.pins[s.pin].name : n.actions[s.action].name;
        const char* what = s.pin >= 0 ? "a pin" : "an action";
        const bool var_first = before(name.span, other.span);
        auto& d = error(Kind::duplicate_name, var_first ? other.span : name.span,
                        bt(name.name) + " is declared twice in node " + bt(n.name.name) + ", as " +
                            (var_first ? "a variable and as " + std::string(what) : std::string(what) + " and as a variable"));
        d.notes.push_back({var_first ? name.span : other.span,
                           std::string("first declared here, as ") + (var_first ? "a variable" : what)});
        d.notes.push_back({std::nullopt, one_namespace});
    }
}

void Checker::check_pin(const Pin& p) {
    const bool in = p.direction == drivers::Direction::input;
    const std::string_view name = p.name.name;
    const Pin::Option* bias = nullptr;
    for (std::size_t i = 0; i < p.options.size(); ++i) {
        const auto& o = p.options[i];
        const Pin::Option* earlier = nullptr;
        for (std::size_t k = 0; k < i && !earlier; ++k)
            if (p.options[k].name == o.name) earlier = &p.options[k];
        if (earlier) {
            error(Kind::pin_option, o.span, bt(o.name) + " is given twice for pin " + bt(name))
                .notes.push_back({earlier->span, "first given here"});
            continue;
        }
        const bool is_bias = o.name == "pull_up" || o.name == "pull_down";
        if (o.name == "initial" && in) {
            error(Kind::pin_option, o.span,
                  "`initial` on input pin " + bt(name) + "; only outputs have an initial level");
        } else if (is_bias && !in) {
            error(Kind::pin_option, o.span,
                  bt(o.name) + " on output pin " + bt(name) + "; only inputs take a pull resistor");
        } else if (o.name == "debounce" && !in) {
            error(Kind::pin_option, o.span, "`debounce` on output pin " + bt(name) + "; only inputs are debounced");
        } else if (is_bias && bias) {
            error(Kind::pin_option, o.span, "pin " + bt(name) + " has both `pull_up` and `pull_down`")
                .notes.push_back({bias->span, bt(bias->name) + " is given here"});
        }
        if (is_bias && !bias) bias = &o;
    }
    if (p.initial && p.initial->value != 0 && p.initial->value != 1)
        error(Kind::out_of_range, p.initial->span,
              "initial level " + format_count(*p.initial) + " is out of range (0 or 1)");
    if (p.debounce && p.debounce->micros > max_debounce)
        error(Kind::out_of_range, p.debounce->span,
              "debounce " + format_duration(p.debounce->micros) + " is out of range (0 to 10s)");
    if (!p.line_quoted) {
        std::string_view digits = p.line;
        while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
        std::size_t offset = 0;
        for (char c : digits) offset = offset * 10 + static_cast<std::size_t>(c - '0');
        if (digits.size() > 4 || offset > max_line_offset)
            error(Kind::out_of_range, p.line_span, "line offset " + p.line + " is out of range (0 to 1023)")
                .notes.push_back({std::nullopt, "to name a line, put its name in quotes, as in `\"GPIO17\"`"});
    }
}

// `on NAME`: a pin of the node makes a pin rule; an action declared before the
// first such rule makes a misuse; anything else declares (or reuses) a channel.
void Checker::declare_rules(int index) {
    Node& n = node(index);
    NodeInfo& ni = nodes_[index];
    ni.channel_base = channel_names_.size();
    for (std::size_t r = 0; r < n.rules.size(); ++r) {
        const std::size_t g = ni.rule_base + r;
        Ident& src = n.rules[r].source;
        Names& s = slot(index, src.name);
        if (s.pin >= 0) {
            rule_kind_[g] = RuleKind::pin;
            rule_ref_[g] = s.pin;
            src.ref = {Ref::Kind::pin, s.pin};
            pin_used_[ni.pin_base + s.pin] = 1;
            const Pin& pin = n.pins[s.pin];
            if (pin.direction == drivers::Direction::output) {
                error(Kind::rule_on_output, src.span,
                      "rule on output pin " + bt(src.name) + "; only input pins have changes to react to")
                    .notes.push_back({pin.name.span, bt(src.name) + " is declared `out` here"});
            }
            continue;
        }
        if (s.channel >= 0) {
            rule_kind_[g] = RuleKind::channel;
            rule_ref_[g] = s.channel;
            src.ref = {Ref::Kind::channel, s.channel};
            continue;
        }
        if (s.var >= 0) {
            const Ident& var = n.vars[s.var].name;
            auto& d = error(Kind::duplicate_name, src.span,
                            bt(src.name) + " is declared twice in node " + bt(n.name.name) +
                                ", as a variable and as a channel (a rule for it)");
            d.notes.push_back({var.span, "first declared here, as a variable"});
            d.notes.push_back({std::nullopt, one_namespace});
            var_read_[ni.var_base + s.var] = 1;  // misused, but not unused
            continue;
        }
        if (s.action >= 0) {
            const Action& action = n.actions[s.action];
            if (before(action.name.span, src.span)) {
                action_called_[ni.action_base + s.action] = 1;  // misused, but not unused
                auto& d = error(Kind::wrong_kind, src.span, bt(src.name) + " is an action, not a channel or an input pin");
                d.notes.push_back({action.name.span, bt(src.name) + " is declared here"});
                d.notes.push_back({std::nullopt, one_namespace});
                continue;
            }
            // The channel came first: the action is the second declaration of the name.
            action_dup_[ni.action_base + s.action] = 1;
            auto& d = error(Kind::duplicate_name, action.name.span,
                            bt(src.name) + " is declared twice in node " + bt(n.name.name) +
                                ", as a channel and as an action");
            d.notes.push_back({src.span, "first declared here, as a channel"});
            d.notes.push_back({std::nullopt, one_namespace});
        }
        s.channel = static_cast<int>(ni.channel_count++);
        channel_names_.push_back(src.name);
        channel_node_.push_back(index);
        rule_kind_[g] = RuleKind::channel;
        rule_ref_[g] = s.channel;
        src.ref = {Ref::Kind::channel, s.channel};
        if (!ni.has_port) {
            auto& d = error(Kind::channel_without_port, src.span,
                            "rule for channel " + bt(src.name) + " in node " + bt(n.name.name) + ", which has no port");
            if (auto best = closest(src.name, pin_names(index))) {
                d.notes.push_back({std::nullopt, "did you mean pin " + bt(*best) + "?"});
            } else {
                d.notes.push_back({std::nullopt, "a node serves channels only with a port, as in `node " +
                                                     n.name.name + " at localhost:8765`"});
            }
        }
    }
}

// ---------------------------------------------------------------------------
// bodies: names, ranges, edges of the message graph

void Checker::check_node_bodies(int index) {
    Node& n = node(index);
    const NodeInfo& ni = nodes_[index];
    for (std::size_t r = 0; r < n.rules.size(); ++r) {
        Rule& rule = n.rules[r];
        const RuleKind kind = rule_kind_[ni.rule_base + r];
        const int ref = rule_ref_[ni.rule_base + r];
        if (rule.pattern && kind == RuleKind::pin && n.pins[ref].direction == drivers::Direction::input &&
            literal_level(*rule.pattern) == -1) {
            error(Kind::out_of_range, rule.pattern->span,
                  "pattern " + literal(*rule.pattern)->display + " is out of range for pin " + bt(rule.source.name) +
                      " (0 or 1)");
        }
        if (rule.guard) check_expr(index, *rule.guard);
        const int vertex = kind == RuleKind::channel ? static_cast<int>(ni.channel_base) + ref : -1;
        check_stmts(index, vertex, rule.body, 0, -1);
        if (kind != RuleKind::invalid) {
            Context ctx;
            ctx.root = kind == RuleKind::pin ? Root::pin : Root::message;
            ctx.source = rule.source.name;
            if (rule.guard) context_expr(*rule.guard, ctx);
            context_stmts(index, rule.body, ctx, Where{});
        }
        if (!n.actions.empty()) check_depth(index, rule.body, rule.source.span, "rule");
        if (kind == RuleKind::channel) {
            std::optional<AckSite> first;
            check_acks(index, rule.body, first);
        }
    }
    for (Timer& t : n.timers) {
        if (t.period.micros == 0 || t.period.micros > max_duration)
            error(Kind::out_of_range, t.period.span,
                  "timer period " + format_duration(t.period.micros) + " is out of range (1us to 7 days)");
        if (t.times) check_count(*t.times, "`times` count");
        check_stmts(index, -1, t.body, 0, -1);
        context_stmts(index, t.body, Context{Root::timer, {}, false}, Where{});
        if (!n.actions.empty()) check_depth(index, t.body, t.period.span, "timer");
    }
    for (std::size_t a = 0; a < n.actions.size(); ++a) {
        const int global = static_cast<int>(ni.action_base + a);
        check_stmts(index, static_cast<int>(action_vertex_base_) + global, n.actions[a].body, 0, global);
    }
    check_rule_order(index);
}

// Names, ranges and edges of the message graph; where `ack`, `value` and `tick` stand is
// checked by context_stmts. `vertex`: the graph vertex the body belongs to (a channel or an
// action), or -1; `action`: the global index of the action whose body this is, or -1.
void Checker::check_stmts(int index, int vertex, std::vector<Stmt>& body, int after_depth, int action) {
    const NodeInfo& ni = nodes_[index];
    for (Stmt& s : body) {
        switch (s.kind) {
            case Stmt::Kind::assign:
            case Stmt::Kind::toggle: {
                const bool assign = s.kind == Stmt::Kind::assign;
                const int p = resolve_pin(index, s.target.name, s.target.span, true, s.target.ref, assign);
                if (p >= 0 && ni.node->pins[p].direction == drivers::Direction::input) {
                    const Pin& pin = ni.node->pins[p];
                    error(Kind::assign_to_input, s.target.span,
                          std::string(assign ? "assignment to" : "`toggle` of") +
                              " input pin " + bt(pin.name.name) + "; only output pins can be driven")
                        .notes.push_back({pin.name.span, bt(pin.name.name) + " is declared `in` here"});
                }
                if (assign) {
                    check_expr(index, s.expr);
                    if (s.target.ref.kind != Ref::Kind::var) check_level(s.expr);
                }
                break;
            }
            case Stmt::Kind::send: {
                check_expr(index, s.expr);
                const int target = resolve_channel(s.node, s.channel);
                if (target >= 0 && vertex >= 0 && after_depth == 0) edges_.push_back({vertex, target, s.span, true});
                break;
            }
            case Stmt::Kind::ack:
            case Stmt::Kind::log:
                check_expr(index, s.expr);
                break;
            case Stmt::Kind::after:
                check_duration(s.delay, "delay");
                if (!s.target.name.empty()) declare_delay(index, s.target);
                check_stmts(index, vertex, s.body, after_depth + 1, action);
                break;
            case Stmt::Kind::cancel:
                cancels_.push_back({index, &s});  // a delay may be named after its `cancel`
                break;
            case Stmt::Kind::repeat:
                check_count(s.count, "repeat count");
                check_stmts(index, vertex, s.body, after_depth, action);
                break;
            case Stmt::Kind::if_:
                // Conditions are checked as guards are; each branch as the body around it (a send in
                // any branch is an edge of the message graph: it may run).
                for (Branch& b : s.branches) {
                    if (b.condition) check_expr(index, *b.condition);
                    check_stmts(index, vertex, b.body, after_depth, action);
                }
                break;
            case Stmt::Kind::call: {
                const int a = resolve_action(index, s.target);
                if (a < 0) break;
                const int global = static_cast<int>(ni.action_base) + a;
                action_called_[global] = 1;
                if (action >= 0) calls_.push_back({action, global, s.target.span, false});
                if (vertex >= 0 && after_depth == 0)
                    edges_.push_back({vertex, static_cast<int>(action_vertex_base_) + global, s.target.span, false});
                break;
            }
        }
    }
}

void Checker::check_expr(int index, Expr& e) {
    switch (e.kind) {
        case Expr::Kind::name:
            resolve_pin(index, e.text, e.span, false, e.ref, true);
            return;
        case Expr::Kind::random:
            check_random(e);
            break;
        case Expr::Kind::value:
        case Expr::Kind::tick:
        case Expr::Kind::text:
        case Expr::Kind::number:
            return;
        default:
            break;
    }
    for (Expr& o : e.operands) check_expr(index, o);
}

void Checker::check_random(const Expr& e) {
    if (e.operands.empty()) return;
    const Expr& p = e.operands[0];
    const bool number = p.kind == Expr::Kind::number ||
                        (p.kind == Expr::Kind::neg && !p.operands.empty() && p.operands[0].kind == Expr::Kind::number);
    if (!number) return;
    const auto lit = literal(p);
    const double v = std::strtod(lit->text.c_str(), nullptr);
    if (v < 0 || v > 1) error(Kind::out_of_range, p.span, "probability " + lit->display + " is out of range (0 to 1)");
}

// A pin read as a value (`assign` false) or driven (`assign` true): its local index, or -1. With
// `var`, a variable too: its `ref` says so, and the result is -1.
int Checker::resolve_pin(int index, std::string_view name, Span at, bool assign, Ref& ref, bool var) {
    const Names* s = find(index, name);
    if (s && s->pin >= 0) {
        pin_used_[nodes_[index].pin_base + s->pin] = 1;
        ref = {Ref::Kind::pin, s->pin};
        return s->pin;
    }
    const Node& n = node(index);
    if (s && s->var >= 0) {
        (assign ? var_set_ : var_read_)[nodes_[index].var_base + s->var] = 1;
        if (var) {
            ref = {Ref::Kind::var, s->var};
            return -1;
        }
        error(Kind::wrong_kind, at, bt(name) + " is a variable, not a pin")
            .notes.push_back({std::nullopt, "`toggle` drives pins; to change a variable, write `" + std::string(name) +
                                                " = ...`"});
        return -1;
    }
    if (s && s->action >= 0) {
        action_called_[nodes_[index].action_base + s->action] = 1;  // misused, but not unused
        auto& d = error(Kind::wrong_kind, at, bt(name) + " is an action, not a pin" + (var && !n.vars.empty() ? " or variable" : ""));
        if (assign) d.notes.push_back({std::nullopt, "to run it, write " + bt(name) + " on its own"});
        return -1;
    }
    if (s && s->channel >= 0) {
        auto& d = error(Kind::wrong_kind, at, bt(name) + " is a channel, not a pin");
        if (assign)
            d.notes.push_back({std::nullopt, "to send to it, write `send 1 to " + n.name.name + "/" + std::string(name) + "`"});
        else
            d.notes.push_back({std::nullopt, "in a rule for " + bt(name) + ", `value` is the message"});
        return -1;
    }
    unknown_value(index, name, at, assign);
    return -1;
}

// A name that is no pin (nor variable) of the node. In a node with variables it may be a misspelt
// one: `unknown-variable`, with the pins and variables as suggestions.
void Checker::unknown_value(int index, std::string_view name, Span at, bool assign) {
    const Node& n = node(index);
    const bool vars = !n.vars.empty();
    auto& d = vars ? error(Kind::unknown_variable, at, "node " + bt(n.name.name) + " has no pin or variable " + bt(name))
                   : error(Kind::unknown_pin, at, "node " + bt(n.name.name) + " has no pin " + bt(name));
    std::vector<std::string_view> candidates = pin_names(index);
    for (const Var& v : n.vars) candidates.push_back(v.name.name);
    if (!assign) {
        candidates.push_back("value");
        candidates.push_back("tick");
    }
    if (auto best = closest(name, candidates)) {
        d.notes.push_back({std::nullopt, "did you mean " + bt(*best) + "?"});
        return;
    }
    for (const Node& other : program_.nodes) {  // a variable of another node: it is not shared
        for (const Var& v : other.vars) {
            if (v.name.name != name) continue;
            d.notes.push_back({v.name.span, bt(name) + " is a variable of node " + bt(other.name.name) +
                                                "; a node reads only its own (another learns it from a message)"});
            return;
        }
    }
    if (!assign) {
        d.notes.push_back({std::nullopt, "for text, use quotes, as in `\"" + std::string(name) + "\"`"});
    } else if (!vars) {
        d.notes.push_back({std::nullopt, "a variable is declared in its node first, as in `var " + std::string(name) + " = 0`"});
    }
}

// `after D as NAME`: the node's delay of that name, declared by its first use.
void Checker::declare_delay(int index, Ident& id) {
    Node& n = node(index);
    auto [at, fresh] = delay_index_.emplace(NameKey{index, id.name}, static_cast<int>(n.delays.size()));
    if (fresh) n.delays.push_back(Ident{id.name, id.span, {}});
    id.ref = {Ref::Kind::delay, *at};
}

// `cancel NAME`: a name some `after ... as NAME` of the node gives.
void Checker::resolve_cancels() {
    for (auto& [index, s] : cancels_) {
        Ident& id = s->target;
        if (const int* at = delay_index_.find(NameKey{index, id.name})) {
            id.ref = {Ref::Kind::delay, *at};
            continue;
        }
        const Node& n = node(index);
        auto& d = error(Kind::unknown_delay, id.span, "node " + bt(n.name.name) + " has no delay " + bt(id.name));
        std::vector<std::string_view> names;
        for (const Ident& delay : n.delays) names.push_back(delay.name);
        if (auto best = closest(id.name, names)) {
            d.notes.push_back({std::nullopt, "did you mean " + bt(*best) + "?"});
            continue;
        }
        for (std::size_t other = 0; other < nodes_.size(); ++other) {
            const int* there = delay_index_.find(NameKey{static_cast<int>(other), id.name});
            if (!there) continue;
            d.notes.push_back({node(static_cast<int>(other)).delays[static_cast<std::size_t>(*there)].span,
                               bt(id.name) + " is a delay of node " + bt(node(static_cast<int>(other)).name.name) +
                                   "; a node cancels only its own delays"});
            break;
        }
        if (d.notes.empty())
            d.notes.push_back({std::nullopt, "a delay is named where it is set, as in `after 5m as " + id.name + " -> ...`"});
    }
}

// A bare `NAME` statement: the action's local index, or -1.
int Checker::resolve_action(int index, Ident& id) {
    const Names* s = find(index, id.name);
    if (s && s->action >= 0) {
        id.ref = {Ref::Kind::action, s->action};
        return s->action;
    }
    const Node& n = node(index);
    if (s && s->pin >= 0) {
        pin_used_[nodes_[index].pin_base + s->pin] = 1;
        auto& d = error(Kind::wrong_kind, id.span, bt(id.name) + " is a pin, not an action");
        if (n.pins[s->pin].direction == drivers::Direction::output)
            d.notes.push_back({std::nullopt, "to drive it, write `" + id.name + " = 1`"});
        else
            d.notes.push_back({std::nullopt, "to react to it, write `on " + id.name + " -> ...`"});
        return -1;
    }
    if (s && s->channel >= 0) {
        error(Kind::wrong_kind, id.span, bt(id.name) + " is a channel, not an action")
            .notes.push_back({std::nullopt, "to send to it, write `send 1 to " + n.name.name + "/" + id.name + "`"});
        return -1;
    }
    if (s && s->var >= 0) {
        var_read_[nodes_[index].var_base + s->var] = 1;  // misused, but not unused
        error(Kind::wrong_kind, id.span, bt(id.name) + " is a variable, not an action")
            .notes.push_back({std::nullopt, "to change it, write `" + id.name + " = ...`"});
        return -1;
    }
    auto& d = error(Kind::unknown_action, id.span, "node " + bt(n.name.name) + " has no action " + bt(id.name));
    suggest(d, id.name, action_names(index));
    return -1;
}

int Checker::resolve_node(Ident& id) {
    if (const int* at = node_index_.find(id.name)) {
        id.ref = {Ref::Kind::node, *at};
        return *at;
    }
    auto& d = error(Kind::unknown_node, id.span, "unknown node " + bt(id.name));
    suggest(d, id.name, node_names());
    return -1;
}

// `NODE/CHANNEL` of a send: the channel's vertex (its global index), or -1.
int Checker::resolve_channel(Ident& node_id, Ident& channel) {
    const int t = resolve_node(node_id);
    if (t < 0) return -1;
    const NodeInfo& ni = nodes_[t];
    const Node& n = *ni.node;
    if (!ni.has_port) {
        error(Kind::send_to_client, node_id.span, "cannot send to node " + bt(node_id.name) + ", which has no port")
            .notes.push_back({n.name.span, bt(n.name.name) + " is declared here without `at HOST:PORT`"});
        return -1;
    }
    const Names* s = find(t, channel.name);
    if (s && s->channel >= 0) {
        channel.ref = {Ref::Kind::channel, s->channel};
        return static_cast<int>(ni.channel_base) + s->channel;
    }
    if (s && (s->pin >= 0 || s->action >= 0 || s->var >= 0)) {
        if (s->pin >= 0) pin_used_[ni.pin_base + s->pin] = 1;
        if (s->action >= 0) action_called_[ni.action_base + s->action] = 1;
        if (s->var >= 0) var_read_[ni.var_base + s->var] = 1;
        error(Kind::wrong_kind, channel.span,
              bt(channel.name) + " is " + (s->pin >= 0 ? "a pin" : s->action >= 0 ? "an action" : "a variable") +
                  " of node " + bt(n.name.name) + ", not a channel");
        return -1;
    }
    auto& d = error(Kind::unknown_channel, channel.span,
                    "node " + bt(n.name.name) + " has no channel " + bt(channel.name));
    if (ni.channel_count == 0) {
        d.notes.push_back({std::nullopt, "a node's channels are the ones it has `on` rules for, and " +
                                             bt(n.name.name) + " has none"});
    } else {
        suggest(d, channel.name, channel_names(t));
    }
    return -1;
}

void Checker::check_level(const Expr& e) {
    if (literal_level(e) == -1)
        error(Kind::out_of_range, e.span, "pin level " + literal(e)->display + " is out of range (0 or 1)");
}

void Checker::check_duration(const Duration& d, const char* what) {
    if (d.micros > max_duration)
        error(Kind::out_of_range, d.span,
              std::string(what) + " " + format_duration(d.micros) + " is out of range (0 to 7 days)");
}

void Checker::check_count(const Count& c, const char* what) {
    if (c.value < 1 || c.value > max_repeat)
        error(Kind::out_of_range, c.span, std::string(what) + " " + format_count(c) + " is out of range (1 to 1000000)");
}

// A rule after an earlier rule of the same source without pattern or guard, or
// after one with the same pattern and no guard, never fires.
void Checker::check_rule_order(int index) {
    const Node& n = node(index);
    const NodeInfo& ni = nodes_[index];
    auto head = [](const Rule& r) { return join(r.span, r.pattern ? r.pattern->span : r.source.span); };
    auto same_pattern = [](const Expr& a, const Expr& b) { return a.literal_text() == b.literal_text(); };
    // Reports `rule` when the earlier rule `k` (unguarded, same source) takes its messages first.
    auto shadowed_by = [&](const Rule& rule, std::size_t r, std::size_t k) {
        const Rule& earlier = n.rules[k];
        if (earlier.pattern && !(rule.pattern && same_pattern(*earlier.pattern, *rule.pattern))) return false;
        const bool pin = rule_kind_[ni.rule_base + r] == RuleKind::pin;
        std::string what = pin ? "change of pin " + bt(rule.source.name) : "message on " + bt(rule.source.name);
        if (earlier.pattern) what += " equal to " + literal(*earlier.pattern)->display;
        warning(Kind::unreachable_rule, head(rule), "this rule never fires")
            .notes.push_back({head(earlier), "this earlier rule takes every " + what + " first"});
        return true;
    };
    // Earlier unguarded rules of each source: a linear scan in small nodes, an index in large ones.
    const bool small = n.rules.size() <= 32;
    std::unordered_map<std::string_view, std::vector<std::size_t>> unguarded;
    for (std::size_t r = 0; r < n.rules.size(); ++r) {
        if (rule_kind_[ni.rule_base + r] == RuleKind::invalid) continue;
        const Rule& rule = n.rules[r];
        if (small) {
            for (std::size_t k = 0; k < r; ++k) {
                const Rule& earlier = n.rules[k];
                if (earlier.guard || rule_kind_[ni.rule_base + k] == RuleKind::invalid ||
                    earlier.source.name != rule.source.name)
                    continue;
                if (shadowed_by(rule, r, k)) break;
            }
            continue;
        }
        auto& list = unguarded[rule.source.name];
        for (std::size_t k : list)
            if (shadowed_by(rule, r, k)) break;
        if (!rule.guard) list.push_back(r);
    }
}

// ---------------------------------------------------------------------------
// tests

void Checker::check_test_expr(const Expr& e) {
    switch (e.kind) {
        case Expr::Kind::name:
            error(Kind::unknown_pin, e.span, "unknown name " + bt(e.text) + " in a test")
                .notes.push_back({std::nullopt, "for text, use quotes, as in `\"" + e.text + "\"`"});
            return;
        case Expr::Kind::value:
            error(Kind::misplaced_value, e.span, "`value` in a test, which has no message or pin level");
            return;
        case Expr::Kind::tick:
            error(Kind::misplaced_tick, e.span, "`tick` in a test, outside any timer");
            return;
        case Expr::Kind::random:
            check_random(e);
            break;
        case Expr::Kind::text:
            return;
        default:
            break;
    }
    for (const Expr& o : e.operands) check_test_expr(o);
}

// `NODE.PIN` of a test: the pin's local index, or -1.
int Checker::test_pin(TestStmt& s, int index) {
    const Node& n = node(index);
    const Names* names = find(index, s.member.name);
    if (names && names->pin >= 0) {
        pin_used_[nodes_[index].pin_base + names->pin] = 1;
        s.member.ref = {Ref::Kind::pin, names->pin};
        return names->pin;
    }
    if (names && names->var >= 0) {
        var_read_[nodes_[index].var_base + names->var] = 1;
        if (s.kind == TestStmt::Kind::expect_pin) {
            s.member.ref = {Ref::Kind::var, names->var};
            return -1;
        }
        const std::string what = s.node.name + "." + s.member.name;
        error(Kind::wrong_kind, s.member.span, bt(what) + " is a variable, not a pin")
            .notes.push_back({std::nullopt, s.kind == TestStmt::Kind::drive
                                                ? "a test drives input pins; a variable changes only by its node's rules"
                                                : "only pins have a history; to check a variable, write `expect " + what +
                                                      " == ...`"});
        return -1;
    }
    if (names && (names->channel >= 0 || names->action >= 0)) {
        error(Kind::wrong_kind, s.member.span,
              bt(s.member.name) + " is " + (names->channel >= 0 ? "a channel" : "an action") + " of node " +
                  bt(n.name.name) + ", not a pin");
        return -1;
    }
    unknown_value(index, s.member.name, s.member.span, true);
    return -1;
}

void Checker::check_tests() {
    std::unordered_map<std::string_view, const Test*> titles;
    for (Test& t : program_.tests) {
        auto [it, fresh] = titles.emplace(t.title, &t);
        if (!fresh)
            error(Kind::duplicate_name, t.title_span, "test \"" + t.title + "\" is declared twice")
                .notes.push_back({it->second->title_span, "first declared here"});
        for (TestStmt& s : t.body) {
            switch (s.kind) {
                case TestStmt::Kind::send:
                    check_test_expr(s.value);
                    if (s.expect) check_test_expr(*s.expect);
                    resolve_channel(s.node, s.member);
                    break;
                case TestStmt::Kind::drive:
                case TestStmt::Kind::expect_pin: {
                    check_test_expr(s.value);
                    if (s.within) check_duration(*s.within, "duration");
                    const int n = resolve_node(s.node);
                    const int p = n < 0 ? -1 : test_pin(s, n);
                    if (n < 0 || s.member.ref.kind == Ref::Kind::pin) check_level(s.value);
                    if (p < 0 || s.kind != TestStmt::Kind::drive) break;
                    const Pin& pin = node(n).pins[p];
                    if (pin.direction == drivers::Direction::output) {
                        auto& d = error(Kind::drive_output, s.member.span,
                                        "`drive` of output pin " + bt(s.node.name + "." + s.member.name) +
                                            "; a test can only drive inputs");
                        d.notes.push_back({pin.name.span, bt(pin.name.name) + " is declared `out` here"});
                        d.notes.push_back({std::nullopt, "to check an output, write `expect " + s.node.name + "." +
                                                             s.member.name + " == 1`"});
                    }
                    break;
                }
                case TestStmt::Kind::advance:
                    check_duration(s.duration, "duration");
                    break;
                case TestStmt::Kind::expect_logged:
                    resolve_node(s.node);
                    break;
                case TestStmt::Kind::expect_history: {
                    const std::string levels = s.expect->literal_text();
                    if (levels.find_first_not_of("01 ") != std::string::npos)
                        error(Kind::out_of_range, s.expect->span,
                              "pin history " + bt(levels) + " holds something other than the levels `0` and `1`");
                    const int n = resolve_node(s.node);
                    if (n >= 0) test_pin(s, n);
                    break;
                }
                case TestStmt::Kind::expect_received: {
                    const int n = resolve_node(s.node);
                    if (n < 0) break;
                    const Names* names = find(n, s.member.name);
                    if (names && names->channel >= 0) {
                        s.member.ref = {Ref::Kind::channel, names->channel};
                        break;
                    }
                    if (names && (names->pin >= 0 || names->action >= 0 || names->var >= 0)) {
                        error(Kind::wrong_kind, s.member.span,
                              bt(s.member.name) + " is " +
                                  (names->pin >= 0 ? "a pin" : names->action >= 0 ? "an action" : "a variable") +
                                  " of node " + bt(s.node.name) + ", not a channel");
                        break;
                    }
                    auto& d = error(Kind::unknown_channel, s.member.span,
                                    "node " + bt(s.node.name) + " has no channel " + bt(s.member.name));
                    suggest(d, s.member.name, channel_names(n));
                    break;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// unused pins and actions

void Checker::check_unused() {
    for (const NodeInfo& ni : nodes_) {
        const Node& n = *ni.node;
        for (std::size_t p = 0; p < n.pins.size(); ++p) {
            if (pin_used_[ni.pin_base + p]) continue;
            const Pin& pin = n.pins[p];
            // A second pin of one name is a duplicate, already reported.
            if (find(ni.index, pin.name.name)->pin != static_cast<int>(p)) continue;
            warning(Kind::unused_pin, pin.name.span,
                    "pin " + bt(pin.name.name) + " is never " +
                        (pin.direction == drivers::Direction::output ? "driven or read" : "read or watched by a rule"));
        }
        for (std::size_t a = 0; a < n.actions.size(); ++a) {
            if (action_called_[ni.action_base + a] || action_dup_[ni.action_base + a]) continue;
            warning(Kind::unused_action, n.actions[a].name.span,
                    "action " + bt(n.actions[a].name.name) + " is never run");
        }
        for (std::size_t v = 0; v < n.vars.size(); ++v) {
            const Var& var = n.vars[v];
            if (find(ni.index, var.name.name)->var != static_cast<int>(v)) continue;  // a duplicate, reported
            const bool read = var_read_[ni.var_base + v], set = var_set_[ni.var_base + v];
            if (!read) {
                warning(Kind::unread_variable, var.name.span,
                        "variable " + bt(var.name.name) + " is " + (set ? "assigned but never read" : "never read or assigned"));
            } else if (!set) {
                warning(Kind::unassigned_variable, var.name.span,
                        "variable " + bt(var.name.name) + " is read but never assigned: it is always " +
                            bt(literal(var.initial)->display))
                    .notes.push_back({std::nullopt, "a value that never changes can be written where it is used"});
            }
        }
    }
}

}  // namespace check_detail

Summary check(Program& program, Diagnostics& diags) { return check_detail::Checker(program, diags).run(); }

}  // namespace meshrun::dsl
