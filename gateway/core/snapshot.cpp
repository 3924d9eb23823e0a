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
    // Orders the gateway cannot run correctly. Settling does not depend on the order (the
    // final usage is set before any on_settle), but admission does: these read the key
    // that auth sets, and without the ledger a budget's spend would not survive a restart.
    const auto position = [&](std::string_view name) -> std::ptrdiff_t {
        const auto it = std::find(c.policies.begin(), c.policies.end(), name);
        return it == c.policies.end() ? -1 : it - c.policies.begin();
    };
    const auto auth_at = position("auth");
    for (const char* name : {"ip_allow", "rate_limit", "budget", "router"}) {
        const auto at = position(name);
        if (at < 0 || !registry.find("auth")) continue;
        if (auth_at < 0 && std::string_view(name) != "router")  // an open gateway may route
            result.errors.push_back({c.policies_line, std::string("policies: '") + name +
                                                          "' needs 'auth' in the chain (it "
                                                          "applies per key, which auth sets)"});
        else if (auth_at >= 0 && at < auth_at)
            result.errors.push_back(
                {c.policies_line, std::string("policies: '") + name +
                                      "' must come after 'auth' (before it, no key is known and "
                                      "every request would pass unchecked)"});
    }
    if (position("budget") >= 0 && position("usage") < 0 && registry.find("usage"))
        result.errors.push_back(
            {c.policies_line,
             "policies: 'budget' needs 'usage' in the chain (spend is kept across restarts "
             "only through the usage ledger)"});
    // A key restricted to addresses is restricted only when ip_allow runs: without it the
    // key would work from anywhere, which the operator did not mean.
    if (position("ip_allow") < 0 && registry.find("ip_allow"))
        for (const auto& k : c.keys)
            if (k.allowed_cidrs)
                result.errors.push_back(
                    {c.policies_line, "keys[" + k.id +
                                          "].allowed_cidrs needs 'ip_allow' in policies (after "
                                          "'auth'); without it the key works from any address"});
    if (!result.errors.empty()) return result;

    std::vector<std::unique_ptr<policy>> built;
    chain_services shared(c.policies.size());
    static const config::policy_section no_section;
    for (const auto& name : c.policies) {
        const auto it = c.policy_sections.find(name);
        const auto& section = it == c.policy_sections.end() ? no_section : it->second;
        try {
            built.push_back(
                (*registry.find(name))(policy_init{c, built.size(), c.policies, shared, section}));
            if (section.present() && !section.read())
                result.errors.push_back(
                    {section.line(), "policy " + name + " takes no settings of its own"});
        } catch (const config::policy_section_error& e) {
            for (const auto& err : e.errors())
                result.errors.push_back({err.line, "policy " + name + ": " + err.message});
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
