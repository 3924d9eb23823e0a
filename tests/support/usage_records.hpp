#pragma once
// Usage records as the gateway writes them to its JSONL log (SPEC "Usage accounting"),
// parsed for integration tests, with the checks every record must pass.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace tollgate::test {

// SPEC "Usage accounting": exactly these keys, in this order.
extern const std::vector<std::string> spec_keys;

struct record {
    std::string line;
    std::vector<std::string> keys;
    std::vector<std::string> bad;  // keys whose value has the wrong JSON type
    std::optional<std::string> ts, request_id, key_id, model, provider, upstream_model,
        usage_source, error;
    std::int64_t status = -1;
    std::optional<bool> stream;
    std::int64_t attempts = -1;
    std::optional<std::uint64_t> prompt_tokens, completion_tokens, total_tokens;
    std::optional<double> cost_usd, latency_ms, ttft_ms;
};

std::string str(const std::optional<std::string>& v);
std::int64_t num(const std::optional<std::uint64_t>& v);

record parse_record(const std::string& line);
std::vector<record> read_records(const std::filesystem::path& jsonl);
std::vector<record> with_id(const std::vector<record>& all, const std::string& id);

// What every record must satisfy whatever the request was (Boost.Test checks).
void check_shape(const record& r);
// cost_usd = prompt × input price + completion × output price (per million tokens).
void check_cost(const record& r, double in, double out);

}  // namespace tollgate::test
