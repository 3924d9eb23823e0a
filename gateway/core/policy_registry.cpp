#include "gateway/core/policy_registry.hpp"

namespace tollgate::core {

void policy_registry::add(std::string name, policy_factory factory, bool in_default_chain) {
    entries_.push_back({std::move(name), std::move(factory), in_default_chain});
}

const policy_factory* policy_registry::find(std::string_view name) const noexcept {
    for (const auto& e : entries_)
        if (e.name == name) return &e.factory;
    return nullptr;
}

std::vector<std::string> policy_registry::default_chain() const {
    std::vector<std::string> out;
    for (const auto& e : entries_)
        if (e.in_default_chain) out.push_back(e.name);
    return out;
}

std::vector<std::string> policy_registry::names() const {
    std::vector<std::string> out;
    for (const auto& e : entries_) out.push_back(e.name);
    return out;
}

}  // namespace tollgate::core
