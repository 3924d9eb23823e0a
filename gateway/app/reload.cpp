#include "gateway/app/reload.hpp"

#include <spdlog/spdlog.h>

#include "config/loader.hpp"
#include "gateway/observe/access_log.hpp"
#include "gateway/observe/metrics.hpp"
#include "gateway/server/server.hpp"
#include "gateway/upstream/provider.hpp"
#include "policies/register_builtin.hpp"

namespace tollgate::app {

std::shared_ptr<const proxy::generation> make_generation(std::shared_ptr<const core::snapshot> snap,
                                                         const proxy::generation* previous,
                                                         bool open_files) {
    auto g = std::make_shared<proxy::generation>();
    const auto& cfg = snap->config;
    for (const auto& pc : cfg.providers) {
        std::shared_ptr<const upstream::provider> same;
        if (previous)
            for (const auto& old : previous->providers)
                if (old->config() == pc) same = old;
        g->providers.push_back(same ? same : std::make_shared<const upstream::provider>(pc));
    }
    const auto& target = cfg.server.access_log;
    if (open_files && target != "off" && !target.empty()) {
        if (previous && previous->access_log && previous->access_log->target() == target)
            g->access_log = previous->access_log;
        else
            g->access_log = std::make_shared<observe::access_log>(target);
    }
    g->snap = std::move(snap);
    return g;
}

std::vector<std::string> restart_only_changes(const config::gateway_config& a,
                                              const config::gateway_config& b) {
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

std::pair<bool, std::string> reloader::operator()() {
    std::lock_guard lock(mutex_);
    try {
        return once();
    } catch (const std::exception& e) {
        spdlog::error("reload failed: {}", e.what());
        metrics_.count_reload(false);
        return {false, e.what()};
    }
}

std::pair<bool, std::string> reloader::once() {
    auto loaded = config::load_config_file(path_);
    auto errors = std::move(loaded.errors);
    std::shared_ptr<const proxy::generation> next;
    const auto now = srv_.current();
    if (errors.empty()) {
        for (const auto& what : restart_only_changes(now->snap->config, *loaded.config))
            spdlog::warn("reload: {} changed; that takes effect at the next start", what);
        auto built = core::build_snapshot(std::move(*loaded.config), registry_);
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
            spdlog::error("reload refused: {}: {}", path_, e.text());
            text += (text.empty() ? "" : "; ") + e.text();
        }
        metrics_.count_reload(false);
        return {false, text};
    }
    // Keys whose budget is new or changed start from the ledger's figures.
    for (const auto& k : next->snap->config.keys) {
        const config::key_config* before = nullptr;
        for (const auto& o : now->snap->config.keys)
            if (o.id == k.id) before = &o;
        if (k.budget && (!before || !before->budget || before->budget->period != k.budget->period))
            policies::seed_budget(services_, k);
    }
    srv_.install(next);
    metrics_.count_reload(true);
    spdlog::info("configuration reloaded from {}: {} provider(s), {} model(s), {} key(s)", path_,
                 next->snap->config.providers.size(), next->snap->config.models.size(),
                 next->snap->config.keys.size());
    return {true, {}};
}

}  // namespace tollgate::app
