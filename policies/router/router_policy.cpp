#include "policies/router/router_policy.hpp"

#include <algorithm>
#include <stdexcept>

namespace tollgate::policies {

router_policy::router_policy(const config::gateway_config& cfg) : cfg_(cfg) {
    for (const auto& m : cfg.models) {
        model_route r{&m, {}};
        for (const auto& t : m.targets) {
            if (t.weight == 0) continue;
            const auto it = std::find_if(cfg.providers.begin(), cfg.providers.end(),
                                         [&](const auto& p) { return p.name == t.provider; });
            if (it == cfg.providers.end())
                throw std::runtime_error("model " + m.name + ": unknown provider " + t.provider);
            r.targets.push_back(core::route_target{
                static_cast<std::size_t>(it - cfg.providers.begin()), &*it, t.model});
        }
        routes_.emplace(m.name, std::move(r));
    }
}

std::unique_ptr<core::policy> router_policy::make(const core::policy_init& init) {
    return std::make_unique<router_policy>(init.config);
}

void router_policy::list_models(core::request_context& ctx) const {
    std::string body = R"({"object":"list","data":[)";
    bool first = true;
    for (const auto& m : cfg_.models) {
        if (ctx.key && ctx.key->models &&
            std::find(ctx.key->models->begin(), ctx.key->models->end(), m.name) ==
                ctx.key->models->end())
            continue;
        if (!first) body += ',';
        first = false;
        body += R"({"id":")";
        core::append_json_escaped(body, m.name);
        body += R"(","object":"model","created":0,"owned_by":"tollgate"})";
    }
    body += "]}";
    ctx.reply.status = 200;
    ctx.reply.error = core::errc::ok;
    ctx.reply.body = std::move(body);
}

core::verdict router_policy::on_request(core::request_context& ctx) const {
    if (ctx.ep == core::endpoint::models) {
        list_models(ctx);
        return core::verdict::reply;
    }
    const auto it = routes_.find(ctx.req.model);
    if (it == routes_.end() || it->second.targets.empty()) {
        ctx.set_error_reply(core::errc::model_not_found,
                            "model '" + ctx.req.model.substr(0, 200) + "' does not exist");
        return core::verdict::reply;
    }
    ctx.model = it->second.model;
    // Simple form: the model's first target.
    ctx.plan.assign(it->second.targets.begin(), it->second.targets.begin() + 1);
    return core::verdict::next;
}

}  // namespace tollgate::policies
