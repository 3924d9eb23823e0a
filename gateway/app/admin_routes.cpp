#include "gateway/app/admin_routes.hpp"

#include <chrono>

#include "console/console.hpp"
#include "gateway/app/reload.hpp"
#include "gateway/core/config_json.hpp"
#include "gateway/core/errors.hpp"
#include "gateway/observe/metrics.hpp"
#include "gateway/server/server.hpp"
#include "policies/auth/key_admin.hpp"
#include "policies/register_builtin.hpp"
#include "policies/router/router_policy.hpp"
#include "policies/usage/usage_report.hpp"

namespace tollgate::app {

namespace {

std::int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

server::admin_reply reply(std::pair<int, std::string> r) {
    return server::admin_reply{r.first, std::move(r.second)};
}

}  // namespace

std::vector<server::admin_route> admin_routes(server::server& srv, observe::metrics& metrics,
                                              const policies::builtin_services& services,
                                              std::shared_ptr<policies::key_admin> keys,
                                              reloader& reload) {
    using server::admin_reply;
    using server::admin_request;
    std::vector<server::admin_route> routes;
    server::admin_route m{
        "GET", "/metrics", [&metrics](const admin_request&) {
            return admin_reply{200, metrics.render(), "text/plain; version=0.0.4"};
        }};
    m.open_on_loopback = true;
    routes.push_back(std::move(m));
    if (auto l = services.usage_ledger) {
        routes.push_back({"GET", "/admin/usage", [l](const admin_request& r) {
                              return reply(policies::usage_report(*l, r.query));
                          }});
    }
    if (keys) {
        routes.push_back({"POST", "/admin/keys", [keys](const admin_request& r) {
                              return reply(keys->create(r.body, unix_ms()));
                          }});
        routes.push_back(
            {"GET", "/admin/keys", [keys](const admin_request&) { return reply(keys->list()); }});
        routes.push_back({"PATCH", "/admin/keys/",
                          [keys](const admin_request& r) {
                              return reply(keys->patch(r.path.substr(12), r.body));
                          },
                          true});
        routes.push_back(
            {"DELETE", "/admin/keys/",
             [keys](const admin_request& r) { return reply(keys->remove(r.path.substr(12))); },
             true});
    }
    // The running config (redacted) and the providers' health, from the generation
    // serving now.
    routes.push_back({"GET", "/admin/config", [&srv](const admin_request&) {
                          const auto g = srv.current();
                          return admin_reply{
                              200, core::config_json(g->snap->config, g->snap->policies->names())};
                      }});
    routes.push_back(
        {"GET", "/admin/providers", [&srv, &metrics](const admin_request&) {
             const auto g = srv.current();
             const auto* router =
                 dynamic_cast<const policies::router_policy*>(g->snap->policies->find("router"));
             return admin_reply{200, policies::providers_report_json(
                                         g->snap->config, router,
                                         [&metrics](const std::string& provider) {
                                             auto& c = metrics.connections(provider);
                                             return std::pair{c.active.load(), c.idle.load()};
                                         },
                                         unix_ms())};
         }});
    routes.push_back(
        {"POST", "/admin/reload", [&reload](const admin_request&) {
             auto [ok, text] = reload();
             if (ok) return admin_reply{200, R"({"status":"reloaded"})"};
             return admin_reply{400, core::invalid_request_body("invalid_config", text)};
         }});
    for (auto& r : console::routes()) routes.push_back(std::move(r));
    return routes;
}

}  // namespace tollgate::app
