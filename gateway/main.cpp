// tollgate: wiring only. Parses the command line, loads and checks the config, builds the
// first snapshot and runs the server.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "config/loader.hpp"
#include "gateway/core/snapshot.hpp"
#include "gateway/server/admin_server.hpp"
#include "gateway/server/server.hpp"
#include "gateway/version.hpp"
#include "policies/register_builtin.hpp"
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
        tollgate::core::policy_registry registry;
        tollgate::policies::register_builtin(registry, services);
        auto built = tollgate::core::build_snapshot(std::move(*loaded.config), registry);
        errors = std::move(built.errors);
        if (errors.empty()) {
            try {
                auto g = std::make_shared<tollgate::proxy::generation>();
                g->snap = built.snap;
                g->providers = tollgate::upstream::make_providers(built.snap->config);
                gen = std::move(g);
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
        tollgate::server::server srv(gen);
        std::unique_ptr<tollgate::server::admin_server> admin_srv;
        // Ready means: config loaded and the usage store writable.
        if (auto l = services.usage_ledger) srv.set_readiness([l] { return l->healthy(); });
        if (admin) {
            std::vector<tollgate::server::admin_route> routes;
            if (auto l = services.usage_ledger) {
                routes.push_back(
                    {"GET", "/admin/usage", [l](const tollgate::server::admin_request& r) {
                         auto [status, body] = tollgate::policies::usage_report(*l, r.query);
                         return tollgate::server::admin_reply{status, std::move(body)};
                     }});
            }
            admin_srv = std::make_unique<tollgate::server::admin_server>(*admin, std::move(routes));
        }
        const int code = srv.run();
        admin_srv.reset();
        if (services.usage_ledger) services.usage_ledger->flush();
        return code;
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
}
