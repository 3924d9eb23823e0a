#pragma once
// Prometheus metrics (SPEC "Metrics"). The data plane records into one shard per worker
// thread (a mutex that only the admin thread's scrape ever contends for), so a request
// costs a few hash lookups (none when its series is the last one's) and no shared cache
// line. Labels are bounded: key *ids*
// (never secrets), model names from the config (anything else is "other"), provider
// names from the config, HTTP statuses.
//
// A scrape (render()) merges the shards and adds the gauges read at scrape time: process
// figures from /proc, upstream connections, in-flight requests, and whatever sources
// main registered (ledger, build info).

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tollgate::observe {

// Buckets (seconds) suited to LLM latencies: milliseconds to minutes.
inline constexpr std::array<double, 18> latency_buckets = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800};
// The gateway's own time per request: microseconds to a second.
inline constexpr std::array<double, 14> overhead_buckets = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};

template <std::size_t N>
struct histogram {
    std::array<std::uint64_t, N + 1> counts{};  // last: +Inf
    double sum = 0;
    void observe(double v, const std::array<double, N>& bounds) noexcept {
        std::size_t i = 0;
        while (i < N && v > bounds[i]) ++i;
        ++counts[i];
        sum += v;
    }
    void merge(const histogram& o) noexcept {
        for (std::size_t i = 0; i <= N; ++i) counts[i] += o.counts[i];
        sum += o.sum;
    }
};
using latency_histogram = histogram<latency_buckets.size()>;
using overhead_histogram = histogram<overhead_buckets.size()>;

// One finished API request, as the pipeline saw it.
struct request_sample {
    std::string_view key;       // key id, "" before/without auth
    std::string_view model;     // a configured model name, or "" (rendered "other")
    std::string_view provider;  // provider that served (or was last tried), or ""
    int status = 0;
    double duration_s = 0;
    std::optional<double> ttft_s;
    std::optional<double> overhead_s;
    std::uint64_t prompt_tokens = 0, completion_tokens = 0;
    double cost_usd = 0;
    std::string_view refusal_reason;  // set for a 429 from a limit: rpm|tpm|concurrency|budget
};

// Open upstream connections of one provider, summed over the workers' pools.
struct connection_gauge {
    std::atomic<std::int64_t> active{0};
    std::atomic<std::int64_t> idle{0};
};

class metrics {
  public:
    explicit metrics(unsigned shards);
    metrics(const metrics&) = delete;
    metrics& operator=(const metrics&) = delete;

    // Data plane, from worker `shard`'s thread.
    void record(unsigned shard, const request_sample& s);
    void upstream_failure(unsigned shard, std::string_view provider, std::string_view reason);

    std::atomic<std::int64_t> inflight{0};

    // A stable gauge for a provider's connections (created on first use). Thread-safe.
    connection_gauge& connections(const std::string& provider);

    // Counted outside the data plane (admin thread, signal handling). Thread-safe.
    void count_reload(bool ok);

    // Extra text appended by main at scrape time (ledger, build info...): complete
    // families in exposition format. Set before serving.
    void add_source(std::function<void(std::string&)> source);

    // The exposition text (text/plain; version=0.0.4). Thread-safe.
    std::string render() const;

  private:
    struct counters {
        std::uint64_t requests = 0;
    };
    struct money {
        std::uint64_t prompt = 0, completion = 0;
        double cost = 0;
    };
    struct hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    template <class V>
    using table = std::unordered_map<std::string, V, hash, std::equal_to<>>;

    struct alignas(64) shard {
        mutable std::mutex mu;
        std::string scratch;
        table<counters> requests;           // key \x1f model \x1f provider \x1f status
        table<money> spend;                 // key \x1f model
        table<std::uint64_t> limited;       // key \x1f reason
        table<std::uint64_t> failures;      // provider \x1f reason
        table<latency_histogram> duration;  // model
        table<latency_histogram> ttft;      // model
        overhead_histogram overhead;
        // The last sample's series: a sample with the same key, model, provider and status
        // (the usual next one) takes its slots from here rather than from three hash
        // lookups. Slots never move or go away (node-based tables, nothing erased).
        std::string last_name;  // as in `requests`; empty: none yet
        counters* last_requests = nullptr;
        money* last_spend = nullptr;                 // looked up on first use
        latency_histogram* last_duration = nullptr;  // the model's
        latency_histogram* last_ttft = nullptr;      // looked up on first use
    };
    std::vector<std::unique_ptr<shard>> shards_;

    mutable std::mutex mu_;  // guards the members below
    std::map<std::string, std::unique_ptr<connection_gauge>> connections_;
    std::uint64_t reloads_ok_ = 0, reloads_failed_ = 0;
    std::vector<std::function<void(std::string&)>> sources_;
};

}  // namespace tollgate::observe
