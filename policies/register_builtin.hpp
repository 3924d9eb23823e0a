#pragma once
#include "gateway/core/policy_registry.hpp"

namespace tollgate::policies {

// Registers every built-in policy. A new policy = its folder + one line here.
void register_builtin(core::policy_registry& registry);

}  // namespace tollgate::policies
