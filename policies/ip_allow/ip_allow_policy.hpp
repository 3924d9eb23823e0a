#pragma once
// ip_allow: where a key may be used from. A key with `allowed_cidrs` is refused (403
// permission_error / ip_not_allowed) for a client address outside them; keys without it
// are not restricted. The client address is the connection's peer, or, behind proxies
// listed in `server.trusted_proxies`, the last X-Forwarded-For hop that is not one of them
// (config::client_address). Comes after auth (it needs the key).

#include <memory>

#include "gateway/core/policy.hpp"
#include "gateway/core/policy_registry.hpp"

namespace tollgate::policies {

class ip_allow_policy final : public core::policy {
  public:
    explicit ip_allow_policy(const config::gateway_config& cfg) : cfg_(cfg) {}

    std::string_view name() const noexcept override { return "ip_allow"; }
    core::verdict on_request(core::request_context& ctx) const override;

    static std::unique_ptr<core::policy> make(const core::policy_init& init);

  private:
    const config::gateway_config& cfg_;
};

}  // namespace tollgate::policies
