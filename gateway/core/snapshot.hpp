#pragma once
// One immutable generation of the configuration: the typed config and the policy chain
// built from it. Held by shared_ptr; a request keeps the snapshot it started with, so a
// reload never changes anything under a request in flight.

#include <memory>
#include <vector>

#include "config/loader.hpp"
#include "gateway/core/chain.hpp"
#include "gateway/core/policy_registry.hpp"

namespace tollgate::core {

struct snapshot {
    config::gateway_config config;
    std::unique_ptr<const chain> policies;
};

struct snapshot_result {
    std::shared_ptr<const snapshot> snap;  // null when errors is non-empty
    std::vector<config::config_error> errors;
};

snapshot_result build_snapshot(config::gateway_config cfg, const policy_registry& registry);

}  // namespace tollgate::core
