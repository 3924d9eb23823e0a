#include "policies/ip_allow/ip_allow_policy.hpp"

#include <string>

namespace tollgate::policies {

core::verdict ip_allow_policy::on_request(core::request_context& ctx) const {
    if (!ctx.key || !ctx.key->allowed_cidrs) return core::verdict::next;
    // Every X-Forwarded-For line: a proxy that adds a line of its own after the client's
    // must not let the client's line pass for the proxy's.
    const std::string forwarded = ctx.headers ? ctx.headers->get_all("x-forwarded-for") : "";
    const auto client = config::client_address(ctx.peer, forwarded, cfg_.server.trusted_proxies);
    if (config::contains(*ctx.key->allowed_cidrs, client)) return core::verdict::next;
    // The message names the address the gateway saw (the caller's own), never the ranges.
    ctx.set_error_reply(core::errc::ip_not_allowed,
                        "this key may not be used from " + config::to_string(client));
    return core::verdict::reply;
}

std::unique_ptr<core::policy> ip_allow_policy::make(const core::policy_init& init) {
    return std::make_unique<ip_allow_policy>(init.config);
}

}  // namespace tollgate::policies
