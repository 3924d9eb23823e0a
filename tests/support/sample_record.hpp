#pragma once
// One usage record as the ledger tests use it: a plain answered chat request, 10 + 5
// tokens, at 2026-11-25T10:00:00Z unless told otherwise.

#include <cstdint>
#include <string>

#include "store/usage_record.hpp"

namespace tollgate::test {

inline constexpr std::int64_t nov25_10h = 1795600800000;  // 2026-11-25T10:00:00Z
inline constexpr std::int64_t nov25 = 1795564800000;      // 2026-11-25T00:00:00Z
inline constexpr std::int64_t day_ms = 86'400'000;

inline store::usage_record make_record(std::string id, std::string key = "team-a",
                                       std::string model = "m1", std::int64_t ts_ms = nov25_10h) {
    store::usage_record r;
    r.ts_ms = ts_ms;
    r.request_id = std::move(id);
    r.key_id = std::move(key);
    r.model = std::move(model);
    r.provider = "openai";
    r.upstream_model = "gpt-4o-mini-2024-07-18";
    r.status = 200;
    r.attempts = 1;
    r.prompt_tokens = 10;
    r.completion_tokens = 5;
    r.total_tokens = 15;
    r.cost_usd = 0.000005;
    r.latency_ms = 12.5;
    return r;
}

}  // namespace tollgate::test
