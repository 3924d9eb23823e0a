#pragma once
// GET /admin/config: the running configuration as JSON, as the gateway understood it
// (defaults filled in, durations as "250ms" / "30s"), every secret replaced by "***":
// admin.token, providers' api_key, keys' secrets (their digests too), and the password
// in state.redis_url and in a PostgreSQL usage.database URL. Sans-io, pure.

#include <string>
#include <vector>

#include "config/config.hpp"

namespace tollgate::core {

// `chain`: the names of the policies running, in order (the config's `policies:`, or the
// default chain when it has none).
std::string config_json(const config::gateway_config& cfg, const std::vector<std::string>& chain);

// `url` with the password of its user info (scheme://user:PASSWORD@host) and any
// password=… parameter replaced by ***. Anything else is returned as it is.
std::string redact_url(const std::string& url);

}  // namespace tollgate::core
