// tollgate: wiring only. Parses the command line, loads and checks the config, builds the
// first snapshot and runs the server.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "config/loader.hpp"
#include "console/console.hpp"
#include "gateway/core/config_json.hpp"
#include "gateway/core/json_text.hpp"
#include "gateway/core/prom_text.hpp"
#include "gateway/core/snapshot.hpp"
#include "gateway/observe/metrics.hpp"
#include "gateway/server/admin_server.hpp"
#include "gateway/server/server.hpp"
#include "gateway/version.hpp"
#include "policies/auth/key_admin.hpp"
#include "policies/register_builtin.hpp"
#include "policies/router/router_policy.hpp"
#include "policies/state/shared_state.hpp"
#include "policies/usage/ledger.hpp"
#include "policies/usage/usage_report.hpp"

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

// One data-plane generation for `snap`: providers whose config did not change are taken
// over from `previous` (so their workers' pools and TLS contexts live on), and so is the
// access log when its target is the same. Throws std::runtime_error (bad CA file, access
// log not writable).
// `open_files`: false for --check, which must not create the access log (nor fail on a
// directory that exists only on the host the config is meant for).
std::shared_ptr<const tollgate::proxy::generation> make_generation(
    std::shared_ptr<const tollgate::core::snapshot> snap,
    const tollgate::proxy::generation* previous, bool open_files = true) {
    auto g = std::make_shared<tollgate::proxy::generation>();
    const auto& cfg = snap->config;
    for (const auto& pc : cfg.providers) {
        std::shared_ptr<const tollgate::upstream::provider> same;
        if (previous)
            for (const auto& old : previous->providers)
                if (old->config() == pc) same = old;
        g->providers.push_back(same ? same
                                    : std::make_shared<const tollgate::upstream::provider>(pc));
    }
    const auto& target = cfg.server.access_log;
    if (open_files && target != "off" && !target.empty()) {
        if (previous && previous->access_log && previous->access_log->target() == target)
            g->access_log = previous->access_log;
        else
            g->access_log = std::make_shared<tollgate::observe::access_log>(target);
    }
    g->snap = std::move(snap);
    return g;
}

// What a reload cannot change in a running process: said in the log, applied at the next
// start.
std::vector<std::string> restart_only_changes(const tollgate::config::gateway_config& a,
                                              const tollgate::config::gateway_config& b) {
    std::vector<std::string> out;
    if (a.server.listen != b.server.listen) out.emplace_back("server.listen");
    if (a.server.threads != b.server.threads) out.emplace_back("server.threads");
    if (a.server.tls != b.server.tls) out.emplace_back("server.tls");
    if (!(a.admin == b.admin)) out.emplace_back("admin");
    if (a.usage.database != b.usage.database || a.usage.jsonl != b.usage.jsonl)
        out.emplace_back("usage");
    if (a.state != b.state) out.emplace_back("state");
    return out;
}

std::int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string error_json(std::string_view code, std::string_view message) {
    std::string out = R"({"error":{"message":)";
    tollgate::core::json_text::append_string(out, message);
    out += R"(,"type":"invalid_request_error","param":null,"code":)";
    tollgate::core::json_text::append_string(out, code);
    out += "}}";
    return out;
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
                gen = make_generation(built.snap, nullptr, !check);
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
        const std::int64_t started_ms = unix_ms();
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

        // Reload (SIGHUP, POST /admin/reload): a config that fails --check is refused and
        // the running one stays; a good one is swapped in for new requests.
        std::mutex reload_mu;
        auto reload_once = [&]() -> std::pair<bool, std::string> {
            auto loaded = tollgate::config::load_config_file(config_path);
            auto errors = std::move(loaded.errors);
            std::shared_ptr<const tollgate::proxy::generation> next;
            const auto now = srv.current();
            if (errors.empty()) {
                for (const auto& what : restart_only_changes(now->snap->config, *loaded.config))
                    spdlog::warn("reload: {} changed; that takes effect at the next start", what);
                auto built = tollgate::core::build_snapshot(std::move(*loaded.config), registry);
                errors = std::move(built.errors);
                if (errors.empty()) {
                    try {
                        next = make_generation(std::move(built.snap), now.get());
                    } catch (const std::exception& e) {
                        errors.push_back({0, e.what()});
                    }
                }
            }
            if (!errors.empty()) {
                std::string text;
                for (const auto& e : errors) {
                    spdlog::error("reload refused: {}: {}", config_path, e.text());
                    text += (text.empty() ? "" : "; ") + e.text();
                }
                metrics.count_reload(false);
                return {false, text};
            }
            // Keys whose budget is new or changed start from the ledger's figures.
            for (const auto& k : next->snap->config.keys) {
                const tollgate::config::key_config* before = nullptr;
                for (const auto& o : now->snap->config.keys)
                    if (o.id == k.id) before = &o;
                if (k.budget &&
                    (!before || !before->budget || before->budget->period != k.budget->period))
                    tollgate::policies::seed_budget(services, k);
            }
            srv.install(next);
            metrics.count_reload(true);
            spdlog::info("configuration reloaded from {}: {} provider(s), {} model(s), {} key(s)",
                         config_path, next->snap->config.providers.size(),
                         next->snap->config.models.size(), next->snap->config.keys.size());
            return {true, {}};
        };
        // Never throws: a failure anywhere (e.g. the ledger while seeding a budget) is a
        // refused reload, and the signal handling that called it goes on.
        auto reload = [&]() -> std::pair<bool, std::string> {
            std::lock_guard lock(reload_mu);
            try {
                return reload_once();
            } catch (const std::exception& e) {
                spdlog::error("reload failed: {}", e.what());
                metrics.count_reload(false);
                return {false, e.what()};
            }
        };
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
            std::vector<ts::admin_route> routes;
            const auto reply = [](std::pair<int, std::string> r) {
                return ts::admin_reply{r.first, std::move(r.second)};
            };
            ts::admin_route m{
                "GET", "/metrics", [&metrics](const ts::admin_request&) {
                    return ts::admin_reply{200, metrics.render(), "text/plain; version=0.0.4"};
                }};
            m.open_on_loopback = true;
            routes.push_back(std::move(m));
            if (auto l = services.usage_ledger) {
                routes.push_back({"GET", "/admin/usage", [l, reply](const ts::admin_request& r) {
                                      return reply(tollgate::policies::usage_report(*l, r.query));
                                  }});
            }
            if (keys) {
                routes.push_back({"POST", "/admin/keys", [keys, reply](const ts::admin_request& r) {
                                      return reply(keys->create(r.body, unix_ms()));
                                  }});
                routes.push_back({"GET", "/admin/keys", [keys, reply](const ts::admin_request&) {
                                      return reply(keys->list());
                                  }});
                routes.push_back({"PATCH", "/admin/keys/",
                                  [keys, reply](const ts::admin_request& r) {
                                      return reply(keys->patch(r.path.substr(12), r.body));
                                  },
                                  true});
                routes.push_back({"DELETE", "/admin/keys/",
                                  [keys, reply](const ts::admin_request& r) {
                                      return reply(keys->remove(r.path.substr(12)));
                                  },
                                  true});
            }
            // The running config (redacted) and the providers' health, from the generation
            // serving now.
            routes.push_back({"GET", "/admin/config", [&srv](const ts::admin_request&) {
                                  const auto g = srv.current();
                                  return ts::admin_reply{
                                      200, tollgate::core::config_json(g->snap->config,
                                                                       g->snap->policies->names())};
                              }});
            routes.push_back(
                {"GET", "/admin/providers", [&srv, &metrics](const ts::admin_request&) {
                     const auto g = srv.current();
                     const auto* router = dynamic_cast<const tollgate::policies::router_policy*>(
                         g->snap->policies->find("router"));
                     return ts::admin_reply{
                         200, tollgate::policies::providers_report_json(
                                  g->snap->config, router,
                                  [&metrics](const std::string& provider) {
                                      auto& c = metrics.connections(provider);
                                      return std::pair{c.active.load(), c.idle.load()};
                                  },
                                  unix_ms())};
                 }});
            routes.push_back({"POST", "/admin/reload", [&reload](const ts::admin_request&) {
                                  auto [ok, text] = reload();
                                  if (ok) return ts::admin_reply{200, R"({"status":"reloaded"})"};
                                  return ts::admin_reply{400, error_json("invalid_config", text)};
                              }});
            for (auto& r : tollgate::console::routes()) routes.push_back(std::move(r));
            admin_srv = std::make_unique<ts::admin_server>(*admin, std::move(routes));
        }
        const int code = srv.run();
        // The server's signal handling is gone: a late logrotate or reload signal must not
        // kill the process before the ledger is flushed.
        std::signal(SIGHUP, SIG_IGN);
        std::signal(SIGUSR1, SIG_IGN);
        admin_srv.reset();
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
