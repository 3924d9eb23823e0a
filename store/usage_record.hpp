#pragma once
// usage_record: what the gateway knows about one finished request, as the ledger stores it
// and as the JSONL log shows it (SPEC "Usage accounting"). Plain data: built on the request
// path by the usage policy's on_complete and moved into the ledger; no I/O here.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace tollgate::store {

struct usage_record {
    std::int64_t ts_ms = 0;  // unix epoch milliseconds, UTC (when the request completed)
    std::string request_id, key_id, model, provider, upstream_model;
    int status = 0;
    bool stream = false;
    std::uint32_t attempts = 0;
    std::optional<std::uint64_t> prompt_tokens, completion_tokens, total_tokens;
    // Stored in SQLite; NOT in the JSONL line (SPEC lists its exact keys).
    std::uint64_t cached_tokens = 0;
    bool estimated = false;  // usage_source: "estimated" when true else "upstream"
    std::optional<double> cost_usd;
    double latency_ms = 0;
    std::optional<double> ttft_ms;
    std::optional<std::string> error;  // error code or null
};

// One JSONL line (no trailing newline) with exactly SPEC's keys in SPEC's order:
// ts (RFC 3339 UTC with milliseconds, e.g. 2026-11-25T15:04:05.123Z), request_id, key_id,
// model, provider, upstream_model, status, stream, attempts, prompt_tokens,
// completion_tokens, total_tokens, usage_source, cost_usd, latency_ms, ttft_ms, error.
// null where unknown: an unset optional, an empty string field, a non-finite number.
// Strings are JSON-escaped; bytes that are not valid UTF-8 become U+FFFD so every line
// stays valid JSON whatever a client put in its x-request-id.
// Thread-safe (pure function).
std::string to_jsonl(const usage_record& r);

// The same line appended to `out` (no newline): lets the ledger build one buffer per batch.
void append_jsonl(std::string& out, const usage_record& r);

// The tokens a record charges against a budget: total_tokens when the upstream gave it,
// else prompt + completion (unknown counts 0). The ledger's totals_since() sums the same
// rule in SQL, so budgets seeded at start and budgets charged live agree.
std::uint64_t billable_tokens(const usage_record& r) noexcept;

// Gives back the memory of every string of `r` (the error included) whose capacity is
// above `keep` bytes, leaving it empty; smaller ones keep theirs. For a record object that
// is refilled again and again (the ledger's queue slots, the usage policy's record): one
// unusual record, a long model name through a wildcard route, must not leave its size
// behind in it.
void release_large_strings(usage_record& r, std::size_t keep) noexcept;

// "YYYY-MM-DD" (UTC) of a unix-ms instant: the ledger's `day` column and group_by=day.
std::string utc_day(std::int64_t ts_ms);
// "YYYY-MM-DDTHH" (UTC): the hour of a usage record, as GET /admin/usage?group_by=hour
// names it.
std::string utc_hour(std::int64_t ts_ms);

// "YYYY-MM-DDTHH:MM:SS.mmmZ" of a unix-ms instant.
std::string rfc3339_ms(std::int64_t ts_ms);

}  // namespace tollgate::store
