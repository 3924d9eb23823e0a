#include "policies/register_builtin.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "policies/auth/auth_policy.hpp"
#include "policies/auth/key_store.hpp"
#include "policies/budget/budget_policy.hpp"
#include "policies/ip_allow/ip_allow_policy.hpp"
#include "policies/rate_limit/rate_limit_policy.hpp"
#include "policies/router/router_policy.hpp"
#include "policies/state/admission.hpp"
#include "policies/state/shared_state.hpp"
#include "policies/usage/ledger.hpp"
#include "policies/usage/usage_policy.hpp"

namespace tollgate::policies {

namespace {

// The default chain, in its order: the one list of it. register_builtin() marks these
// (and only these) as in the default chain, and registers them in this order.
constexpr const char* default_chain[] = {"auth", "rate_limit", "budget", "router", "usage"};

bool in_default_chain(std::string_view name) {
    return std::find(std::begin(default_chain), std::end(default_chain), name) !=
           std::end(default_chain);
}

bool in_chain(const config::gateway_config& cfg, std::string_view name) {
    if (cfg.policies.empty()) return in_default_chain(name);
    return std::find(cfg.policies.begin(), cfg.policies.end(), name) != cfg.policies.end();
}

}  // namespace

builtin_services make_builtin_services(const config::gateway_config& cfg) {
    builtin_services s;
    s.rates = std::make_shared<memory_rate_store>();
    s.budgets = std::make_shared<budget_book>();
    if (in_chain(cfg, "usage") || in_chain(cfg, "budget")) {
        ledger::options o;
        o.database = cfg.usage.database;
        o.jsonl = cfg.usage.jsonl;
        o.spill_path = cfg.usage.spill_file.empty() ? ledger::spill_path_for(cfg.usage.database)
                                                    : cfg.usage.spill_file;
        s.usage_ledger = std::make_shared<ledger>(std::move(o));
        // Rebuild each budget's spend in its current period from the ledger of record,
        // so a restart never resets a budget.
        for (const auto& k : cfg.keys) seed_budget(s, k);
        // A record counts toward its key's budget from the moment it is durable.
        std::weak_ptr<budget_book> book = s.budgets;
        s.usage_ledger->on_commit([book](std::span<const store::usage_record> records) {
            if (auto b = book.lock())
                for (const auto& r : records)
                    if (!r.key_id.empty())
                        b->committed(r.key_id, store::billable_tokens(r), r.cost_usd.value_or(0),
                                     r.ts_ms);
        });
    }
    // Keys created through the admin API live beside the usage records.
    if (s.usage_ledger || cfg.admin.listen) {
        s.keys = std::make_shared<key_store>(cfg.usage.database);
        const auto stored = s.keys->current();
        for (const auto& [id, e] : stored->by_id) {
            if (std::any_of(cfg.keys.begin(), cfg.keys.end(),
                            [&](const config::key_config& k) { return k.id == id; }))
                spdlog::warn(
                    "key {} is defined in the config file and by the admin API: the "
                    "config file's wins",
                    id);
            else
                seed_budget(s, *e.key);
        }
        if (!stored->by_id.empty())
            spdlog::info("{} key(s) created through the admin API loaded", stored->by_id.size());
        // Instances sharing this database see each other's key changes within a second.
        s.keys->set_listener([book = std::weak_ptr<budget_book>(s.budgets),
                              l = std::weak_ptr<ledger>(s.usage_ledger)](
                                 const config::key_config* before, const config::key_config& k) {
            // Only a budget that is new or changed its period: re-seeding one in use would
            // race the records being committed.
            if (!k.budget ||
                (before && before->budget && before->budget->period == k.budget->period))
                return;
            builtin_services view;
            view.budgets = book.lock();
            view.usage_ledger = l.lock();
            seed_budget(view, k);
        });
        s.keys->start_refresh(std::chrono::seconds(1));
    }
    if (cfg.state.backend == config::state_backend::redis) {
        try {
            s.shared = std::make_shared<shared_state>(cfg.state, s.usage_ledger);
        } catch (const std::invalid_argument& e) {
            throw std::runtime_error(e.what());
        }
        // A key changed on another instance: the store's own thread re-reads it now, not
        // at its next 1-s poll (also after each (re)subscription, to catch up on news
        // missed while disconnected). Not on the Redis client's thread: that one serves
        // every admission and must not wait for a database.
        if (s.keys) {
            s.shared->on_keys_changed([keys = std::weak_ptr<key_store>(s.keys)] {
                if (auto k = keys.lock()) k->refresh_soon();
            });
            // Keys travel through Redis too: instances with ledgers of their own share them.
            s.keys->set_mirror(make_key_mirror(s.shared));
        }
    }
    s.routes_health = std::make_shared<router_health>();
    return s;
}

void seed_budget(const builtin_services& services, const config::key_config& key) {
    if (!key.budget || !services.usage_ledger || !services.budgets) return;
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    const auto b = budget_policy::to_budget(*key.budget);
    const auto start = budget_book::period_start_ms(b.per, now_ms);
    const auto t = services.usage_ledger->totals_since(key.id, start);
    services.budgets->seed(key.id, t.tokens, t.usd, b.per, start);
}

void register_builtin(core::policy_registry& registry, const builtin_services& services) {
    registry.add(
        "auth",
        [keys = services.keys](const core::policy_init& init) -> std::unique_ptr<core::policy> {
            return std::make_unique<auth_policy>(init.config, keys);
        },
        in_default_chain("auth"));
    // Not in the default chain: a config that uses allowed_cidrs names it.
    registry.add("ip_allow", &ip_allow_policy::make, in_default_chain("ip_allow"));
    registry.add(
        "rate_limit",
        [rates = services.rates,
         shared = services.shared](const core::policy_init& init) -> std::unique_ptr<core::policy> {
            return std::make_unique<rate_limit_policy>(init.slot, rates,
                                                       admission::for_chain(init, shared));
        },
        in_default_chain("rate_limit"));
    // The ledger opens at start, for a chain that has usage or budget then; a reload that
    // adds them to a chain without it is refused (restart instead). While only checking a
    // config (`--check`: no services at all) nothing is required.
    const bool live = services.rates != nullptr;
    const bool have_ledger = services.usage_ledger != nullptr;
    registry.add(
        "budget",
        [book = services.budgets, live, have_ledger,
         shared = services.shared](const core::policy_init& init) -> std::unique_ptr<core::policy> {
            if (live && !have_ledger)
                throw std::runtime_error(
                    "needs the usage ledger, which opens at start: restart "
                    "tollgate to add budget to the chain");
            return std::make_unique<budget_policy>(init.slot, book,
                                                   admission::for_chain(init, shared));
        },
        in_default_chain("budget"));
    registry.add("router", router_policy::factory(services.routes_health),
                 in_default_chain("router"));
    registry.add(
        "usage",
        [l = services.usage_ledger,
         live](const core::policy_init& init) -> std::unique_ptr<core::policy> {
            if (live && !l)
                throw std::runtime_error(
                    "needs the usage ledger, which opens at start: restart "
                    "tollgate to add usage to the chain");
            return std::make_unique<usage_policy>(l);
        },
        in_default_chain("usage"));
    // The registry lists the default chain in registration order: the same as the list.
    const auto chain = registry.default_chain();
    if (!std::equal(chain.begin(), chain.end(), std::begin(default_chain), std::end(default_chain)))
        throw std::logic_error("register_builtin: registered out of default_chain's order");
}

}  // namespace tollgate::policies
