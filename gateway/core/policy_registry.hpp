#pragma once
// Factories that build policies from the typed config, registered explicitly (never by
// static initialisers, which the linker drops from static libraries).

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "gateway/core/policy.hpp"

namespace tollgate::core {

// What the policies of one chain share: objects built by the first factory that asks
// (for this chain only; a reload builds new ones) and request-state slots beyond the
// policies' own. Used while the chain is built, on one thread.
class chain_services {
  public:
    explicit chain_services(std::size_t policy_count) : next_slot_(policy_count) {}

    // The object named `name`, made by `make()` (returning std::shared_ptr<T>) the first
    // time it is asked for. Every caller of one name must ask for the same T.
    template <class T, class Make>
    std::shared_ptr<T> get_or_make(std::string_view name, Make&& make) {
        const auto it = objects_.find(name);
        if (it != objects_.end()) return std::static_pointer_cast<T>(it->second);
        std::shared_ptr<T> made = make();
        objects_.emplace(std::string(name), made);
        return made;
    }
    // A request-state slot of its own (request_context::state / emplace_state).
    std::size_t new_slot() noexcept { return next_slot_++; }

  private:
    std::map<std::string, std::shared_ptr<void>, std::less<>> objects_;
    std::size_t next_slot_;
};

// What a factory gets. `slot` is the policy's index in the chain: its state slot.
// `section`: the policy's own settings (config/policy_section.hpp; absent when the config
// has none), which the factory reads into its typed config; a section its factory never
// reads is refused (the policy takes no settings).
struct policy_init {
    const config::gateway_config& config;
    std::size_t slot;
    const std::vector<std::string>& chain;  // the chain's policy names, in order
    chain_services& services;
    const config::policy_section& section;

    bool in_chain(std::string_view name) const {
        return std::find(chain.begin(), chain.end(), name) != chain.end();
    }
};

// Throws std::runtime_error (with a message fit for --check) when the config is unusable,
// or config::policy_section_error for errors in its section (each with its line).
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
