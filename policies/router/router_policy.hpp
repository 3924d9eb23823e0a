#pragma once
// router: which upstream serves the request. Maps the model name the client asked for
// to its target (provider + upstream model) and answers GET /v1/models with the models
// the key may use.

#include <string>
#include <unordered_map>

#include "gateway/core/policy.hpp"
#include "gateway/core/policy_registry.hpp"

namespace tollgate::policies {

class router_policy final : public core::policy {
public:
    explicit router_policy(const config::gateway_config& cfg);

    std::string_view name() const noexcept override { return "router"; }
    core::verdict on_request(core::request_context& ctx) const override;

    static std::unique_ptr<core::policy> make(const core::policy_init& init);

private:
    struct model_route {
        const config::model_config* model;
        std::vector<core::route_target> targets;  // weight > 0, in config order
    };
    void list_models(core::request_context& ctx) const;

    const config::gateway_config& cfg_;
    std::unordered_map<std::string, model_route> routes_;
};

}  // namespace tollgate::policies
