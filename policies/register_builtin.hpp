#pragma once
// The built-in policies and the process-wide services they share.

#include <memory>

#include "gateway/core/policy_registry.hpp"

namespace tollgate::policies {

class ledger;
class rate_store;
class budget_book;
class key_store;
class shared_state;
class router_health;

// Shared by every snapshot (a reload keeps them): the usage ledger, the rate-limit store,
// the budget book and the store of keys created through the admin API. Each is
// thread-safe.
struct builtin_services {
    std::shared_ptr<ledger> usage_ledger;
    std::shared_ptr<rate_store> rates;
    std::shared_ptr<budget_book> budgets;
    std::shared_ptr<key_store> keys;  // null when neither the ledger nor the admin API is on
    // state.backend: redis — limits and budgets shared by every instance; key changes
    // announced to them. Null with the memory backend.
    std::shared_ptr<shared_state> shared;
    // The router's targets' health, kept across reloads.
    std::shared_ptr<router_health> routes_health;
};

// Opens what `cfg` needs: the ledger (usage.database, usage.jsonl) when the chain has
// usage or budget, the rate store (state.backend), the budget book seeded from the
// ledger's records of the current period. Throws std::runtime_error with a message fit
// for the log (never a secret) when something cannot be opened.
builtin_services make_builtin_services(const config::gateway_config& cfg);

// Seeds the budget book with `key`'s spend in its current budget period, summed from the
// ledger of record (no-op without a budget or a ledger). Called at start for every key,
// and for keys whose budget a reload or the admin API introduced or changed.
void seed_budget(const builtin_services& services, const config::key_config& key);

// Registers every built-in policy; registration order is the default chain order.
// `services` may be empty while only checking a config (`--check`).
void register_builtin(core::policy_registry& registry, const builtin_services& services);

}  // namespace tollgate::policies
