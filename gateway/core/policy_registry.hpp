#pragma once
// Factories that build policies from the typed config, registered explicitly (never by
// static initialisers, which the linker drops from static libraries).

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "gateway/core/policy.hpp"

namespace tollgate::core {

// What a factory gets. `slot` is the policy's index in the chain: its state slot.
struct policy_init {
    const config::gateway_config& config;
    std::size_t slot;
};

// Throws std::runtime_error (with a message fit for --check) when the config is unusable.
using policy_factory = std::function<std::unique_ptr<policy>(const policy_init&)>;

class policy_registry {
  public:
    void add(std::string name, policy_factory factory, bool in_default_chain);
    const policy_factory* find(std::string_view name) const noexcept;
    // The chain used when the config has no `policies:` list, in registration order.
    std::vector<std::string> default_chain() const;
    std::vector<std::string> names() const;

  private:
    struct entry {
        std::string name;
        policy_factory factory;
        bool in_default_chain;
    };
    std::vector<entry> entries_;
};

}  // namespace tollgate::core
