#pragma once
// The admin listener's routes (SPEC "Admin API"): metrics, usage, keys, config, providers,
// reload, and the console's files; each a thin call into the part that owns the answer.

#include <memory>
#include <vector>

#include "gateway/server/admin_server.hpp"

namespace tollgate::observe {
class metrics;
}
namespace tollgate::server {
class server;
}
namespace tollgate::policies {
struct builtin_services;
class key_admin;
}  // namespace tollgate::policies

namespace tollgate::app {

class reloader;

// `keys` may be null (no key store: the key routes are absent).
std::vector<server::admin_route> admin_routes(server::server& srv, observe::metrics& metrics,
                                              const policies::builtin_services& services,
                                              std::shared_ptr<policies::key_admin> keys,
                                              reloader& reload);

}  // namespace tollgate::app
