#pragma once
// GET /admin/usage: query-string parsing and the aggregate from the ledger.

#include <string>
#include <string_view>
#include <utility>

#include "policies/usage/ledger.hpp"

namespace tollgate::policies {

// Parses `key`, `model`, `since`, `until` (RFC 3339 or YYYY-MM-DD) and `group_by`
// (comma-separated key, model, day, hour). Returns the HTTP status and the JSON body: 200 with
// SPEC's {"data":[...]}, or 400 with an OpenAI-shaped error naming the bad parameter.
// Thread-safe (reads through the ledger's read connection).
std::pair<int, std::string> usage_report(const ledger& l, std::string_view query);

// Decodes one application/x-www-form-urlencoded component (%XX and '+').
std::string url_decode(std::string_view s);

}  // namespace tollgate::policies
