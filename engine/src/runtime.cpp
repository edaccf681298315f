// The node runtime: the fleet, and each node's runtime around its interpreter.
// Every Asio and Beast header of the engine is in this one translation unit (they
// are heavy), through the headers it includes:
//
//   asio_support.hpp   types on one executor, the steady clock, waits
//   tls.hpp            TLS contexts and stream types
//   server_stream.hpp  the server's fast stream under the websocket, over TCP or TLS
//   node_runtime.hpp   the fleet's shared state, a node's runtime (NodeRt)
//   link.hpp           how a message leaves a node: links
//   session.hpp        how a message enters a node: sessions, the listener
//   registry.hpp       `discovery etcd`: the nodes here registered in etcd
//
// The interpreter (interpreter.cpp), the codec (wire.hpp) and the loggers
// (log.cpp) include no Asio. One thread runs every node of a fleet.
#include <sys/resource.h>
#include <unistd.h>

#include "dashboard_server.hpp"
#include "meshrun/drivers/sim.hpp"
#include "registry.hpp"
#include "session.hpp"

namespace meshrun::engine {

// ---- a node -------------------------------------------------------------------

NodeRt::NodeRt(FleetCore& f, const Graph& graph, int node, std::uint64_t seed)
    : fleet(f), interp(graph, node, *f.clock, f.log, *this, f.observers, seed), sweeper(f.io.get_executor()),
      room(f.io.get_executor()), fired(f.io.get_executor()), boot(fmt::format("{:016x}", std::random_device{}() * 0x100000000ull ^ std::random_device{}())) {}

NodeRt::~NodeRt() = default;

void NodeRt::send(int edge, std::string payload, std::function<void(Delivery)> done) {
    links[static_cast<std::size_t>(edge)]->send(std::move(payload), std::move(done));
}

void NodeRt::done_waiting() {
    if (--waiting > 0) return;
    room.notify();
    interp.resumed();
}

namespace {
drivers::PinDriver& pin_driver(const FleetCore& fleet, int node) {
    const auto& per_node = fleet.options.node_pins;
    const auto index = static_cast<std::size_t>(node);
    return index < per_node.size() && per_node[index] ? *per_node[index] : fleet.pins;
}
}  // namespace

bool FleetCore::simulated(int node) const {
    return dynamic_cast<drivers::SimDriver*>(&pin_driver(*this, node)) != nullptr;
}

std::optional<DriveRefusal> FleetCore::drive(std::string_view node_name, std::string_view pin_name, int level) {
    const int n = graph.find(node_name);
    if (n < 0) return DriveRefusal{http::status::not_found, fmt::format("no node `{}` in mesh `{}`", node_name, graph.name)};
    if (!here[static_cast<std::size_t>(n)])
        return DriveRefusal{http::status::not_found, fmt::format("node `{}` does not run in this process", node_name)};
    const Node& spec = graph.nodes[static_cast<std::size_t>(n)];
    const auto pin = std::find_if(spec.pins.begin(), spec.pins.end(), [&](const Pin& p) { return p.name == pin_name; });
    if (pin == spec.pins.end()) {
        std::vector<std::string> inputs;
        for (const Pin& p : spec.pins)
            if (!p.output) inputs.push_back(p.name);
        return DriveRefusal{http::status::not_found,
                       fmt::format("node `{}` has no pin `{}` (its inputs: {})", node_name, pin_name,
                                   inputs.empty() ? std::string("none") : fmt::format("{}", fmt::join(inputs, ", ")))};
    }
    if (pin->output)
        return DriveRefusal{http::status::conflict,
                       fmt::format("`{}.{}` is an output: the node's rules drive it; drive one of its inputs", node_name, pin_name)};
    if (level != 0 && level != 1) return DriveRefusal{http::status::bad_request, "a level is 0 or 1"};
    auto* sim = dynamic_cast<drivers::SimDriver*>(&pin_driver(*this, n));
    if (!sim)
        return DriveRefusal{http::status::forbidden,
                       fmt::format("`{}.{}` is a real line ({} {}): only simulated pins are driven from outside "
                                   "(`meshrun up`, or `run --sim`)", node_name, pin_name, pin->chip, pin->line)};
    sim->drive(pin->chip, pin->line, pin->active_low ? 1 - level : level);  // the driver takes the physical level
    return std::nullopt;
}

void NodeRt::start_pins() {
    interp.start_pins(pin_driver(fleet, index()), [this](std::function<void()> fn) { asio::post(fleet.io, std::move(fn)); });
    for (std::size_t i = 0; i < spec().pins.size(); ++i) {
        const int fd = interp.line(static_cast<int>(i)).edge_fd();
        if (fd < 0) continue;
        // Waited on in the loop: no thread per line, no polling. The descriptor is the line's:
        // watch a duplicate of it.
        auto watch = std::make_shared<EdgeWatch>(executor(), ::dup(fd));
        edge_watches.push_back(watch);
        asio::co_spawn(executor(), watch_edges(static_cast<int>(i), std::move(watch)),
                       or_log(fleet.log, spec().name, fmt::format("pin `{}`", spec().pins[i].name)));
    }
}

// Reads an input's edges as the kernel reports them, until the node stops or the line fails.
task<void> NodeRt::watch_edges(int pin, std::shared_ptr<EdgeWatch> watch) {
    const std::string& name = spec().pins[static_cast<std::size_t>(pin)].name;
    while (!fleet.stopping) {
        beast::error_code ec;
        co_await watch->async_wait(EdgeWatch::wait_read, asio::redirect_error(use, ec));
        if (ec) co_return;  // closed: the node stops
        std::vector<drivers::EdgeEvent> edges;
        try {
            edges = interp.line(pin).read_edges();
        } catch (const std::exception& e) {
            log(fmt::format("error: pin `{}` reports no more edges: {}", name, e.what()));
            co_return;
        }
        for (const drivers::EdgeEvent& edge : edges) interp.on_input(pin, edge.level, fleet.clock->from_monotonic(edge.when));
    }
}

std::string NodeRt::status() const {
    nlohmann::json page = interp.status();
    page["links"] = nlohmann::json::array();
    for (const auto& link : links) page["links"].push_back(link->status());
    if (fleet.registry) page["registry"] = fleet.registry->status();
    return page.dump();
}

// ---- the fleet ----------------------------------------------------------------

namespace {

// The address to listen on for `host`: an IPv4 or IPv6 address (with or without
// brackets), `localhost` (IPv4's loopback), no host (every interface), or a name,
// resolved. Throws with the reason when it is none of these: never a wider bind.
asio::ip::address listen_address(asio::io_context& io, const std::string& host) {
    if (host.empty()) return asio::ip::address_v4::any();
    if (host == "localhost") return asio::ip::address_v4::loopback();
    const std::string plain = unbracket(host);
    beast::error_code ec;
    const auto a = asio::ip::make_address(plain, ec);
    if (!ec) return a;
    // The resolver would take `0` or `127.1` (inet_aton's shorthands): digits and dots are an
    // IPv4 address written in full, or nothing.
    if (plain.find_first_not_of("0123456789.") == std::string::npos)
        throw std::runtime_error(fmt::format("`{}` is not an IPv4 address (four numbers, as in 127.0.0.1)", host));
    tcp::resolver resolver(io);
    const auto found = resolver.resolve(plain, "", ec);
    if (ec || found.empty())
        throw std::runtime_error(fmt::format("`{}` is not an IP address, and no host of that name was found ({})", host,
                                             ec ? ec.message() : "no address"));
    return found.begin()->endpoint().address();
}

// --metrics or --dashboard (`option`): PORT, ADDR:PORT or [ADDR]:PORT, the address never wider than written.
std::pair<asio::ip::address, std::uint16_t> side_endpoint(asio::io_context& io, std::string_view option, const std::string& spec) {
    if (!spec.empty() && spec.back() == ']')
        throw BadOption(fmt::format("{} `{}`: give a port after the address: {}:PORT", option, spec, spec));
    const auto colon = spec.rfind(':');
    const std::string port_text = colon == std::string::npos ? spec : spec.substr(colon + 1);
    const std::string host = colon == std::string::npos ? "127.0.0.1" : spec.substr(0, colon);
    char* end = nullptr;
    const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end != '\0' || port > 65535 || port_text.find_first_not_of("0123456789") != std::string::npos)
        throw BadOption(fmt::format("{} `{}`: `{}` is not a port (0 to 65535)", option, spec, port_text));
    if (host.empty()) throw BadOption(fmt::format("{} `{}`: give an address before the colon, or only the port", option, spec));
    if (host.back() == ':')
        throw BadOption(fmt::format("{} `{}`: an IPv6 address with a port is written [ADDR]:PORT", option, spec));
    try {
        return {listen_address(io, host), static_cast<std::uint16_t>(port)};
    } catch (const std::exception& e) {
        throw BadOption(fmt::format("{} `{}`: {}", option, spec, e.what()));
    }
}

// Whether a node is declared on this machine: no host, localhost, or a loopback address.
bool on_loopback(const Node& n) {
    const std::string host = unbracket(n.host);
    return host.empty() || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

Acceptor open_acceptor(asio::io_context& io, const tcp::endpoint& endpoint, beast::error_code& ec) {
    Acceptor acceptor(io.get_executor());
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    return acceptor;
}

// A link over TLS when the fleet has `tls`, else over plain TCP.
std::unique_ptr<Link> make_link(FleetCore& f, NodeRt& owner, int edge, int target, const std::string& channel) {
    if (f.graph.tls && !f.options.plain) return std::make_unique<BasicLink<TlsWebsocket>>(owner, edge, target, channel);
    return std::make_unique<BasicLink<websocket::stream<TcpStream>>>(owner, edge, target, channel);
}

// The test runner's sender: a node of a graph of its own, with no rules.
const Graph& tester_graph() {
    static const Graph graph = [] {
        Graph g;
        g.name = "test";
        g.nodes.emplace_back().name = "test";
        return g;
    }();
    return graph;
}

}  // namespace

FleetCore::FleetCore(const Graph& g, drivers::PinDriver& p, Logger& l, FleetOptions o)
    : graph(g), pins(p), log(l), options(std::move(o)), metrics(g, options.nodes), observers(options.observers) {
    if (!options.clock) steady = std::make_unique<SteadyClock>(io);
    clock = options.clock ? options.clock : steady.get();
    observers.push_back(&metrics);
}

struct Fleet::Impl : FleetCore {
    Impl(const Graph& g, drivers::PinDriver& p, Logger& l, FleetOptions o) : FleetCore(g, p, l, std::move(o)) {}
    std::optional<asio::signal_set> signals;
};

Fleet::Fleet(const Graph& graph, drivers::PinDriver& pins, Logger& log, FleetOptions options)
    : impl_(std::make_unique<Impl>(graph, pins, log, std::move(options))) {
    Impl& f = *impl_;
    if (!graph.secrets.empty()) {
        const std::string& var = graph.secrets.front().env;
        if (f.options.token) {
            f.token = *f.options.token;
        } else if (const char* value = std::getenv(var.c_str()); value && *value) {
            f.token = value;
        } else {
            throw std::runtime_error(fmt::format("the file says `secret env {}`, and the environment variable {} is {}: "
                                                 "set it to the fleet's token on every machine of the fleet",
                                                 var, var, value ? "empty" : "not set"));
        }
    }
    std::uint64_t seed = f.options.seed ? f.options.seed : std::random_device{}();
    f.ports.resize(graph.nodes.size());
    for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
        const std::uint16_t declared = graph.nodes[i].port.value_or(0);
        f.ports[i] = i < f.options.ports.size() && f.options.ports[i] ? f.options.ports[i] : declared;
    }
    f.here.resize(graph.nodes.size());
    f.bound.resize(graph.nodes.size());
    for (int n : f.options.nodes) {
        if (f.here[static_cast<std::size_t>(n)]) continue;  // named twice: one node all the same
        f.here[static_cast<std::size_t>(n)] = true;
        auto rt = std::make_unique<NodeRt>(f, graph, n, seed + static_cast<std::uint64_t>(n));
        if (f.options.state_dir) {
            rt->state = std::make_unique<StateStore>(*f.options.state_dir, rt->spec().name);  // throws with the reason
            rt->boot = rt->state->boot();
            for (const auto& [key, fired] : rt->state->fired()) {
                Received::Known known{fired.boot, fired.seq, fired.reply.has_value(), {}};
                for (const auto& r : fired.replies) known.replies.push_back(r);
                rt->received.load(key.first, key.second, std::move(known));
            }
        }
        const auto& edges = rt->spec().edges;
        for (std::size_t e = 0; e < edges.size(); ++e)
            rt->links.push_back(make_link(f, *rt, static_cast<int>(e), edges[e].node, edges[e].channel));
        f.nodes.push_back(std::move(rt));
    }
    if (f.options.dashboard) {
        f.dashboard = std::make_unique<DashboardHub>(graph, f.here);
        f.observers.push_back(f.dashboard.get());
    }
}

Fleet::~Fleet() = default;

void Fleet::start() {
    Impl& f = *impl_;
    std::optional<asio::ip::address> bind;
    if (f.options.bind) {
        try {
            if (f.options.bind->empty()) throw std::runtime_error("an empty address (0.0.0.0 is every interface)");
            bind = listen_address(f.io, *f.options.bind);
        } catch (const std::exception& e) {
            throw BadOption(fmt::format("--bind: {}", e.what()));
        }
    }
    // The etcd endpoints are checked before anything listens; the nodes register once they do.
    if (!f.graph.discovery.empty() && f.options.discovery) f.registry = std::make_unique<Registry>(f);
    if (f.graph.tls && !f.options.plain) {
        // The files are read now, on the machine that runs the node: an error names the file.
        f.tls_server.emplace(server_context(*f.graph.tls));
        // The links' context only where there are links: without `ca` it loads the system's
        // authorities (0.8 MiB, and most of a node's start).
        const bool links = std::any_of(f.nodes.begin(), f.nodes.end(), [](const auto& n) { return !n->links.empty(); });
        if (links) f.tls_client.emplace(client_context(*f.graph.tls));
    }
    // --metrics and --dashboard are checked, and their ports had, before anything else listens;
    // neither takes the port of a node here or of one the file declares on this machine.
    auto side_port = [&f](std::string_view option, const std::string& spec, std::string_view what) {
        const auto [address, port] = side_endpoint(f.io, option, spec);
        for (std::size_t i = 0; i < f.graph.nodes.size(); ++i)
            if (port != 0 && f.ports[i] == port && (f.here[i] || on_loopback(f.graph.nodes[i])))
                throw BadOption(fmt::format("{} `{}`: port {} is node `{}`'s; give another port", option, spec, port,
                                            f.graph.nodes[i].name));
        beast::error_code ec;
        Acceptor acceptor = open_acceptor(f.io, tcp::endpoint(address, port), ec);
        if (ec)
            throw std::runtime_error(fmt::format("cannot serve {} on {}: {}", what, host_port(address.to_string(), port),
                                                 ec.message()));
        return acceptor;
    };
    if (f.options.metrics) f.metrics_acceptor.emplace(side_port("--metrics", *f.options.metrics, "metrics"));
    if (f.options.dashboard) f.dashboard_acceptor.emplace(side_port("--dashboard", *f.options.dashboard, "the dashboard"));
    {
        rlimit files{};
        ::getrlimit(RLIMIT_NOFILE, &files);
        std::size_t reserve = 32;  // the process: standard streams, the loop, resolving, signals
        for (auto& node : f.nodes) reserve += 2 * (node->links.size() + node->spec().pins.size() + 1);
        const std::size_t limit = files.rlim_cur == RLIM_INFINITY ? std::size_t{1} << 20 : files.rlim_cur;
        f.max_connections = limit > reserve + 8 ? limit - reserve : 8;
        if (f.metrics_acceptor) {
            // The metrics port's connections have a share of their own, a quarter: neither
            // side's crowd can take the other's.
            f.max_metrics_connections = std::max<std::size_t>(1, f.max_connections / 4);
            f.max_connections = std::max<std::size_t>(1, f.max_connections - f.max_metrics_connections);
        }
    }
    std::map<std::uint16_t, std::string> taken;  // `up`: the ports of the nodes already listening
    if (f.options.local) {
        // With --only, the nodes that do not run here are reached where declared: one declared on
        // this machine keeps its port, or a node here would answer in its place.
        for (std::size_t i = 0; i < f.graph.nodes.size(); ++i) {
            const Node& n = f.graph.nodes[i];
            if (!f.here[i] && n.port && *n.port && on_loopback(n)) taken.emplace(*n.port, n.name);
        }
    }
    std::vector<std::string> moved(f.graph.nodes.size());
    for (auto& node : f.nodes) {
        node->start_pins();  // throws PinError
        const auto index = static_cast<std::size_t>(node->index());
        if (!node->spec().port) continue;  // a client: it serves nothing
        const std::uint16_t declared = f.ports[index];  // 0 (`at :0`, with discovery): any free port
        const std::string& host = node->spec().host;
        std::uint16_t port = declared;
        asio::ip::address address;
        if (f.options.any_port || f.options.local) {
            address = unbracket(host) == "::1" ? asio::ip::address(asio::ip::address_v6::loopback())
                                               : asio::ip::address(asio::ip::address_v4::loopback());
            if (f.options.any_port) port = 0;
        } else if (bind) {
            address = *bind;
        } else {
            try {
                address = listen_address(f.io, host);
            } catch (const std::exception& e) {
                throw std::runtime_error(fmt::format("node `{}` cannot listen: {}; run it on that host, or give --bind ADDR",
                                                     node->spec().name, e.what()));
            }
        }
        beast::error_code ec;
        if (f.options.local && port && taken.count(port)) {
            moved[index] = fmt::format("port {} is taken by `{}`", port, taken[port]);
            port = 0;
        }
        Acceptor acceptor = open_acceptor(f.io, tcp::endpoint(address, port), ec);
        if (ec == asio::error::address_in_use && f.options.local) {
            moved[index] = fmt::format("port {} is in use", port);
            acceptor = open_acceptor(f.io, tcp::endpoint(address, 0), ec);
        }
        if (ec) {
            std::string hint;
            if (ec == boost::system::errc::address_not_available && bind)
                hint = fmt::format("; `{}` (--bind) is not an address of this machine", *f.options.bind);
            else if (ec == boost::system::errc::address_not_available)
                hint = fmt::format("; `{}` is not an address of this machine: run the node there, give --bind ADDR, "
                                   "or run the whole fleet here with `meshrun up`", host);
            throw std::runtime_error(fmt::format("node `{}` cannot listen on {}: {}{}", node->spec().name,
                                                 host_port(address.to_string(), port), ec.message(), hint));
        }
        f.ports[index] = acceptor.local_endpoint().port();
        f.bound[index] = address.to_string();
        taken.emplace(f.ports[index], node->spec().name);
        node->acceptor.emplace(std::move(acceptor));
    }
    for (auto& node : f.nodes) {
        const auto index = static_cast<std::size_t>(node->index());
        if (node->acceptor) {
            asio::co_spawn(f.io.get_executor(), listen(*node), or_log(f.log, node->spec().name, "listening"));
            asio::co_spawn(f.io.get_executor(), sweep_idle(*node), or_log(f.log, node->spec().name, "the idle sweep"));
            const auto at = node->acceptor->local_endpoint();
            std::string note;
            if (!moved[index].empty())
                note = fmt::format(" (declared {}: {})", host_port(node->spec().host.empty() ? "" : node->spec().host, *node->spec().port),
                                   moved[index]);
            node->log(fmt::format("listening on {}://{}{}", f.tls_server ? "wss" : "ws", host_port(at.address().to_string(), at.port()),
                                  note));
        } else {
            std::vector<std::string> targets;
            for (const Edge& e : node->spec().edges)
                targets.push_back(fmt::format("{}/{}", f.graph.nodes[static_cast<std::size_t>(e.node)].name, e.channel));
            node->log(targets.empty() ? std::string("started (no port: it serves nothing)")
                                      : fmt::format("started (no port: a client of {})", fmt::join(targets, ", ")));
        }
        if (f.dashboard)
            for (std::size_t p = 0; p < node->spec().pins.size(); ++p)
                f.dashboard->set_pin(node->index(), static_cast<int>(p), node->interp.read_pin(static_cast<int>(p)));
        node->interp.start_timers();
        node->started = f.clock->now();
        f.tell([&](Observer& o) { o.node_started(node->index(), node->started); });
    }
    f.started = f.clock->now();
    if (f.registry) f.registry->start();
    if (f.metrics_acceptor) {
        const auto at = f.metrics_acceptor->local_endpoint();
        asio::co_spawn(f.io.get_executor(), listen_metrics(f), or_log(f.log, "meshrun", "serving metrics"));
        f.log.line("meshrun", fmt::format("metrics of every node here on http://{}/metrics", host_port(at.address().to_string(), at.port())));
    }
    if (f.dashboard_acceptor) {
        const auto at = f.dashboard_acceptor->local_endpoint();
        asio::co_spawn(f.io.get_executor(), listen_dashboard(f), or_log(f.log, "meshrun", "serving the dashboard"));
        asio::co_spawn(f.io.get_executor(), flush_dashboard(f), or_log(f.log, "meshrun", "the dashboard's updates"));
        f.log.line("meshrun", fmt::format("dashboard on http://{}/", host_port(at.address().to_string(), at.port())));
    }
    if (f.options.handle_signals) {
        f.signals.emplace(f.io, SIGINT, SIGTERM);
        f.signals->async_wait([this](beast::error_code ec, int) {
            if (!ec) stop();
        });
    }
}

void Fleet::run() { impl_->io.run(); }

std::size_t Fleet::poll() { return impl_->io.poll(); }

void Fleet::stop() {
    Impl& f = *impl_;
    if (f.stopping) return;
    f.stopping = true;
    f.tell([](Observer& o) { o.fleet_stopping(); });
    if (f.registry) f.registry->stop();
    for (auto& [key, link] : f.test_links) link->stop();
    std::size_t held = 0;
    for (auto& node : f.nodes) {
        for (auto& watch : node->edge_watches) watch->close();
        for (auto& link : node->links) {
            if (link->held() == 0) continue;
            held += link->held();
            node->log(fmt::format("delivering {} held message{} to {} before stopping (at most {} ms)", link->held(),
                                  link->held() == 1 ? "" : "s", link->name(), f.options.grace.count()));
        }
    }
    // Timers, delays and inputs stop at once. Links deliver what they hold for the grace
    // period (a second signal ends it at once) while the nodes go on serving, since a
    // link's target may be a node of this process; then what is left is named, every
    // connection is closed with 1001, and the loop ends after a moment for the close frames.
    auto close = [&f] {
        f.closing = true;
        if (f.metrics_acceptor) f.metrics_acceptor->close();
        if (f.dashboard_acceptor) f.dashboard_acceptor->close();
        for (auto& c : f.dashboard_clients) c->end(websocket::close_code::going_away);
        for (auto& node : f.nodes) {
            if (node->acceptor) node->acceptor->close();
            node->room.notify();
            node->sweeper.cancel();
            for (auto& [id, open] : node->sessions) open.close();
        }
    };
    if (held == 0) close();
    asio::co_spawn(
        f.io,
        [&f, held, close]() -> task<void> {
            bool again = false;
            if (f.signals && held > 0) {
                f.signals->async_wait([&again](beast::error_code ec, int) { again = !ec; });
            }
            Timer tick(f.io.get_executor());
            const auto deadline = std::chrono::steady_clock::now() + f.options.grace;
            auto holding = [&f] {
                for (auto& node : f.nodes)
                    for (auto& link : node->links)
                        if (link->held() > 0) return true;
                return false;
            };
            while (holding() && !again && std::chrono::steady_clock::now() < deadline) {
                tick.expires_after(std::chrono::milliseconds(20));
                beast::error_code ec;
                co_await tick.async_wait(asio::redirect_error(use, ec));
            }
            if (f.signals) f.signals->cancel();
            if (!f.closing) close();
            for (auto& node : f.nodes) {
                for (auto& link : node->links) {
                    if (link->held() > 0)
                        node->log(fmt::format("warning: {} message{} to {} {} not delivered{}", link->held(),
                                              link->held() == 1 ? "" : "s", link->name(), link->held() == 1 ? "was" : "were",
                                              node->state ? fmt::format("; those in its outbox are kept in {} and go at the "
                                                                        "next start", node->state->path())
                                                          : std::string()));
                    link->stop();
                }
            }
            tick.expires_after(std::chrono::milliseconds(300));
            beast::error_code ec;
            co_await tick.async_wait(asio::redirect_error(use, ec));
            f.io.stop();
        },
        or_log(f.log, "meshrun", "the fleet"));
}

std::uint16_t Fleet::port(int node) const { return impl_->ports[static_cast<std::size_t>(node)]; }

std::string Fleet::address(int node) const {
    const auto i = static_cast<std::size_t>(node);
    return impl_->bound[i].empty() ? std::string() : host_port(impl_->bound[i], impl_->ports[i]);
}

std::uint16_t Fleet::metrics_port() const {
    return impl_->metrics_acceptor ? impl_->metrics_acceptor->local_endpoint().port() : 0;
}

std::uint16_t Fleet::dashboard_port() const {
    return impl_->dashboard_acceptor ? impl_->dashboard_acceptor->local_endpoint().port() : 0;
}

namespace {
NodeRt* runtime_of(FleetCore& f, int node) {
    for (auto& n : f.nodes)
        if (n->index() == node) return n.get();
    return nullptr;
}
}  // namespace

std::string Fleet::status_json(int node) const {
    const NodeRt* n = runtime_of(*impl_, node);
    return n ? n->status() : "{}";
}

void Fleet::post(std::function<void()> fn) { asio::post(impl_->io, std::move(fn)); }

std::size_t Fleet::run_one_for(std::chrono::milliseconds limit) { return impl_->io.run_one_for(limit); }

bool Fleet::idle() const { return impl_->in_flight == 0; }

void Fleet::inject(int node, const std::string& channel, std::string value, std::function<void(std::string)> done) {
    Impl& f = *impl_;
    if (!f.tester) f.tester = std::make_unique<NodeRt>(f, tester_graph(), 0, 1);
    auto& link = f.test_links[{node, channel}];
    if (!link) link = make_link(f, *f.tester, -1, node, channel);
    link->send(std::move(value), [done = std::move(done)](Delivery d) {
        done(d.refused ? "error: the message was dropped: " + *d.refused : std::move(d.ack));
    });
}

std::uint64_t Fleet::received(int node, std::string_view channel) const {
    const NodeRt* n = runtime_of(*impl_, node);
    if (!n) return 0;
    const auto& sources = n->spec().sources;
    for (std::size_t i = 0; i < sources.size(); ++i)
        if (sources[i].kind == Source::Kind::channel && sources[i].name == channel) return n->interp.received(static_cast<int>(i));
    return 0;
}

int Fleet::pin_level(int node, int pin) const {
    const NodeRt* n = runtime_of(*impl_, node);
    return n ? n->interp.read_pin(pin) : 0;
}

// ---- meshrun drive ------------------------------------------------------------

namespace {

template<class Stream>
task<void> post_pin(Stream& stream, const std::string& host, std::uint16_t port, const std::string& target, std::string body,
                    const std::string& token, HttpAnswer& out) {
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, host_port(host, port));
    req.set(http::field::user_agent, "meshrun drive");
    req.set(http::field::content_type, "text/plain");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    req.body() = std::move(body);
    req.prepare_payload();
    co_await http::async_write(stream, req, use);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> res;
    res.body_limit(64 * 1024);
    co_await http::async_read(stream, buffer, res, use);
    out.status = static_cast<int>(res.get().result_int());
    out.body = res.get().body();
    const auto server = res.get()[http::field::server];
    out.server.assign(server.data(), server.size());
}

task<void> drive_pin_task(const Graph& graph, std::string host, std::uint16_t port, bool tls, std::string target,
                          std::string body, std::string token, HttpAnswer& out) {
    const auto executor = co_await asio::this_coro::executor;
    Resolver resolver(executor);
    const std::string name = unbracket(host), service = std::to_string(port);
    const auto found = co_await resolver.async_resolve(name, service, use);
    TcpStream stream(executor);
    stream.expires_after(std::chrono::seconds(10));
    co_await stream.async_connect(found, use);
    if (!tls) {
        co_await post_pin(stream, host, port, target, std::move(body), token, out);
        co_return;
    }
    ssl::context context = client_context(*graph.tls);
    TlsStream secure(std::move(stream), context);
    expect_host(secure, host);
    co_await secure.async_handshake(ssl::stream_base::client, use);
    co_await post_pin(secure, host, port, target, std::move(body), token, out);
}

}  // namespace

HttpAnswer drive_pin_at(const Graph& graph, const std::string& host, std::uint16_t port, bool tls, const std::string& node,
                        const std::string& pin, int level, const std::string& token) {
    asio::io_context io{1};
    HttpAnswer out;
    std::string error;
    asio::co_spawn(io, drive_pin_task(graph, host, port, tls, fmt::format("/pins/{}/{}", node, pin), std::to_string(level), token, out),
                   [&error](std::exception_ptr e) {
                       if (!e) return;
                       try {
                           std::rethrow_exception(e);
                       } catch (const boost::system::system_error& x) {
                           error = x.code().category() == http::make_error_code(http::error::bad_version).category()
                                       ? fmt::format("it did not answer in HTTP ({})", x.code().message())
                                       : x.code().message();
                       } catch (const std::exception& x) {
                           error = x.what();
                       }
                   });
    io.run();
    if (!error.empty())
        throw std::runtime_error(fmt::format("cannot ask {}{}: {}", tls ? "https://" : "http://", host_port(host, port), error));
    return out;
}

// ---- meshrun ls ---------------------------------------------------------------

namespace {

class QuietLogger final : public Logger {
public:
    void line(const std::string&, std::string_view) override {}  // ls says what failed itself
};

// A range over the prefix, then each lease's time to live (one request a lease: the nodes of
// one process share theirs).
task<void> list(Etcd& etcd, std::string prefix, RegistryListing& out) {
    const std::string range = "/v3/kv/range";
    nlohmann::json body = prefix_range(prefix);
    Etcd::Answer answer = co_await etcd.call(range, std::move(body));
    out.reached = answer.reached;
    out.endpoint = etcd.url();
    if (!answer.ok()) {
        out.error = answer.error;
        co_return;
    }
    const nlohmann::json kvs = answer.json.value("kvs", nlohmann::json::array());
    std::map<std::string, std::pair<std::int64_t, std::int64_t>> leases;  // ID -> TTL left, granted
    for (const nlohmann::json& kv : kvs) {
        if (!kv.is_object() || !kv.contains("key") || !kv["key"].is_string()) continue;
        RegistryListing::Entry e;
        e.key = unbase64(kv["key"].get<std::string>()).value_or("");
        if (kv.contains("value") && kv["value"].is_string()) e.value = unbase64(kv["value"].get<std::string>()).value_or("");
        e.lease = std::to_string(etcd_int(kv, "lease", 0));
        if (e.lease != "0" && !leases.count(e.lease)) {
            const std::string path = "/v3/lease/timetolive";
            nlohmann::json id = {{"ID", e.lease}};
            Etcd::Answer alive = co_await etcd.call(path, std::move(id));
            leases[e.lease] = alive.ok() ? std::make_pair(etcd_int(alive.json, "TTL", -1), etcd_int(alive.json, "grantedTTL", 0))
                                         : std::make_pair(std::int64_t{-1}, std::int64_t{0});
        }
        if (e.lease != "0") std::tie(e.ttl, e.granted) = leases[e.lease];
        out.entries.push_back(std::move(e));
    }
}

}  // namespace

RegistryListing list_registry(const Graph& graph) {
    asio::io_context io{1};
    SteadyClock clock(io);
    QuietLogger log;
    Etcd etcd(io.get_executor(), log, clock, graph.discovery);  // throws on an https:// URL
    RegistryListing out;
    std::string prefix = fmt::format("/meshrun/{}/nodes/", graph.name);
    asio::co_spawn(io, list(etcd, std::move(prefix), out), [&out](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            out.error = x.what();
        }
    });
    io.run();
    return out;
}

}  // namespace meshrun::engine
