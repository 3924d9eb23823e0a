#include "policies/register_builtin.hpp"

#include "policies/auth/auth_policy.hpp"
#include "policies/router/router_policy.hpp"

namespace tollgate::policies {

void register_builtin(core::policy_registry& registry) {
    // Registration order is the default chain order.
    registry.add("auth", &auth_policy::make, true);
    registry.add("router", &router_policy::make, true);
}

}  // namespace tollgate::policies
