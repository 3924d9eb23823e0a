// tollgate: wiring only. Parses the command line, loads and checks the config, builds the
// first snapshot and runs the server.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include "config/loader.hpp"
#include "gateway/app/admin_routes.hpp"
#include "gateway/app/reload.hpp"
#include "gateway/core/prom_text.hpp"
#include "gateway/core/snapshot.hpp"
#include "gateway/observe/metrics.hpp"
#include "gateway/server/admin_server.hpp"
#include "gateway/server/server.hpp"
#include "gateway/version.hpp"
#include "policies/auth/key_admin.hpp"
#include "policies/register_builtin.hpp"
#include "policies/state/shared_state.hpp"
#include "policies/usage/ledger.hpp"

namespace {

void usage(std::FILE* out) {
    std::fprintf(out,
                 "usage: tollgate [--config PATH]          run the gateway\n"
                 "       tollgate --check [--config PATH]  validate the config and exit 0/1\n"
                 "       tollgate --version\n"
                 "Default config: ./tollgate.yaml, then config/tollgate.yaml.\n"
                 "Log level: TOLLGATE_LOG=trace|debug|info|warn|error (default info).\n");
}

std::string default_config_path() {
    for (const char* p : {"tollgate.yaml", "config/tollgate.yaml"})
        if (std::filesystem::exists(p)) return p;
    return "tollgate.yaml";
}

}  // namespace

int main(int argc, char** argv) {
    std::string config_path;
    bool check = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--version") {
            std::printf("tollgate %s\n", tollgate::version);
            return 0;
        } else if (arg == "--check") {
            check = true;
        } else if (arg == "--config" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (arg.starts_with("--config=")) {
            config_path = arg.substr(9);
        } else if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "tollgate: unknown argument '%s'\n", arg.c_str());
            usage(stderr);
            return 2;
        }
    }
    if (config_path.empty()) config_path = default_config_path();
    // Until the server handles them, SIGHUP (reload) and SIGUSR1 (reopen logs) must not
    // kill a starting process (their default action): logrotate or a reload may come early.
    std::signal(SIGHUP, SIG_IGN);
    std::signal(SIGUSR1, SIG_IGN);

    auto logger = spdlog::stderr_color_mt("tollgate");
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
    if (const char* lvl = std::getenv("TOLLGATE_LOG"))
        spdlog::set_level(spdlog::level::from_str(lvl));

    auto loaded = tollgate::config::load_config_file(config_path);
    std::vector<tollgate::config::config_error> errors = std::move(loaded.errors);
    std::shared_ptr<const tollgate::proxy::generation> gen;
    tollgate::policies::builtin_services services;
    std::optional<tollgate::config::admin_config> admin;
    tollgate::core::policy_registry registry;
    if (errors.empty() && !check) {
        // The ledger and the shared counters outlive every config snapshot.
        try {
            services = tollgate::policies::make_builtin_services(*loaded.config);
        } catch (const std::exception& e) {
            errors.push_back({0, e.what()});
        }
    }
    if (errors.empty()) {
        if (loaded.config->admin.listen) admin = loaded.config->admin;
        tollgate::policies::register_builtin(registry, services);
        auto built = tollgate::core::build_snapshot(std::move(*loaded.config), registry);
        errors = std::move(built.errors);
        if (errors.empty()) {
            try {
                gen = tollgate::app::make_generation(built.snap, nullptr, !check);
            } catch (const std::exception& e) {
                errors.push_back({0, e.what()});
            }
        }
    }
    if (!errors.empty()) {
        for (const auto& e : errors)
            std::fprintf(stderr, "%s: %s\n", config_path.c_str(), e.text().c_str());
        std::fprintf(stderr, "%s: %zu problem(s)\n", config_path.c_str(), errors.size());
        return 1;
    }
    if (check) {
        std::printf("%s: OK\n", config_path.c_str());
        return 0;
    }
    try {
        namespace ts = tollgate::server;
        const auto& sc = gen->snap->config.server;
        const unsigned threads =
            sc.threads ? sc.threads : std::max(1u, std::thread::hardware_concurrency());
        tollgate::observe::metrics metrics(threads);
        const std::int64_t started_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count();
        metrics.add_source([started_ms](std::string& out) {
            namespace prom = tollgate::core::prom;
            prom::family(out, "tollgate_build_info", "gauge", "Version of the running binary.");
            prom::sample(out, "tollgate_build_info", {{"version", tollgate::version}},
                         std::uint64_t{1});
            prom::single(out, "tollgate_process_start_time_seconds", "gauge",
                         "Start time of the process, Unix seconds.",
                         std::int64_t{started_ms / 1000});
        });
        if (auto l = services.usage_ledger) {
            metrics.add_source([l](std::string& out) {
                namespace prom = tollgate::core::prom;
                prom::single(out, "tollgate_ledger_queue_depth", "gauge",
                             "Usage records waiting to be made durable.",
                             std::uint64_t{l->pending()});
                prom::single(out, "tollgate_ledger_healthy", "gauge",
                             "1 while the usage ledger accepts writes.",
                             std::uint64_t{l->healthy() ? 1u : 0u});
            });
        }

        if (auto st = services.shared)
            metrics.add_source([st](std::string& out) { st->render_metrics(out); });

        ts::server srv(gen, &metrics);
        gen.reset();  // the server holds it; a reload must be able to let it go
        // Ready means: config loaded, the usage store writable and, with a shared state
        // store under fail_mode closed, Redis reachable (a load balancer then sends the
        // traffic to instances that can admit it). /healthz never depends on either.
        srv.set_readiness([l = services.usage_ledger, st = services.shared] {
            if (l && !l->healthy()) return false;
            if (st && st->mode() == tollgate::config::fail_mode::closed && !st->connected())
                return false;
            return true;
        });

        // Reload (SIGHUP, POST /admin/reload).
        tollgate::app::reloader reload(config_path, registry, services, srv, metrics);
        srv.on_reload([&reload] { reload(); });

        std::unique_ptr<ts::admin_server> admin_srv;
        std::shared_ptr<tollgate::policies::key_admin> keys;
        if (services.keys) {
            keys = std::make_shared<tollgate::policies::key_admin>(
                services.keys,
                [&srv]() {
                    auto g = srv.current();
                    return std::shared_ptr<const tollgate::config::gateway_config>(
                        g, &g->snap->config);
                },
                [&services](const tollgate::config::key_config& k) {
                    tollgate::policies::seed_budget(services, k);
                },
                [st = services.shared] {
                    if (st) st->publish_keys_changed();
                });
        }
        if (admin) {
            auto routes = tollgate::app::admin_routes(srv, metrics, services, keys, reload);
            admin_srv = std::make_unique<ts::admin_server>(*admin, std::move(routes));
        }
        const int code = srv.run();
        // The server's signal handling is gone: a late logrotate or reload signal must not
        // kill the process before the ledger is flushed.
        std::signal(SIGHUP, SIG_IGN);
        std::signal(SIGUSR1, SIG_IGN);
        admin_srv.reset();
        // Settles waiting for Redis go now, beside the ledger's flush (bounded: 1-5 s).
        if (services.shared) services.shared->start_drain();
        // SPEC: SIGTERM exits within drain_timeout + 10 s whatever the database does; what
        // the ledger could not make durable by then is in its spill file.
        if (services.usage_ledger && !services.usage_ledger->stop_within(std::chrono::seconds(9))) {
            // The writer is stuck inside a database call: leave without unwinding it.
            spdlog::warn("usage ledger: the writer is still in a database call; exiting");
            spdlog::shutdown();
            std::_Exit(code);
        }
        return code;
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
}
