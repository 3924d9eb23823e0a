#pragma once
// The admin console's routes on the admin listener (SPEC "Admin console"): GET /ui/ is
// the page, GET /ui/v/<version>/<file> its assets, all built into the binary. They answer
// without the admin token (they hold no data: the page asks for the token and sends it
// with each admin API call) and with a strict Content-Security-Policy.

#include <vector>

#include "gateway/server/admin_server.hpp"

namespace tollgate::console {

std::vector<server::admin_route> routes();

}  // namespace tollgate::console
