#include "gateway/core/snapshot.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>

namespace tollgate::core {

snapshot_result build_snapshot(config::gateway_config cfg, const policy_registry& registry) {
    snapshot_result result;
    auto snap = std::make_shared<snapshot>();
    snap->config = std::move(cfg);
    auto& c = snap->config;
    if (c.policies.empty()) c.policies = registry.default_chain();

    std::set<std::string> seen;
    for (const auto& name : c.policies) {
        if (!registry.find(name)) {
            std::string known;
            for (const auto& n : registry.names()) known += (known.empty() ? "" : ", ") + n;
            result.errors.push_back({c.policies_line, "policies: unknown policy '" + name +
                                                          "' (known: " + known + ")"});
        } else if (!seen.insert(name).second) {
            result.errors.push_back({c.policies_line, "policies: '" + name + "' listed twice"});
        }
    }
    if (!seen.contains("router"))
        result.errors.push_back(
            {c.policies_line, "policies: the chain needs 'router' to send requests anywhere"});
    if (!result.errors.empty()) return result;

    std::vector<std::unique_ptr<policy>> built;
    for (const auto& name : c.policies) {
        try {
            built.push_back((*registry.find(name))(policy_init{c, built.size()}));
        } catch (const std::exception& e) {
            result.errors.push_back({c.policies_line, "policy " + name + ": " + e.what()});
        }
    }
    if (!result.errors.empty()) return result;
    snap->policies = std::make_unique<const chain>(std::move(built));
    result.snap = std::move(snap);
    return result;
}

}  // namespace tollgate::core
