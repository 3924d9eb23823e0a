#include "gateway/observe/metrics.hpp"

#include "gateway/core/prom_text.hpp"

#include <dirent.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace tollgate::observe {

namespace {

constexpr char sep = '\x1f';

template <class V>
V& slot(auto& table, std::string& scratch) {
    auto it = table.find(std::string_view(scratch));
    if (it == table.end()) it = table.emplace(scratch, V{}).first;
    return it->second;
}

// Splits "a\x1fb\x1fc" into its parts.
std::vector<std::string_view> parts(std::string_view s) {
    std::vector<std::string_view> out;
    for (;;) {
        const auto p = s.find(sep);
        out.push_back(s.substr(0, p));
        if (p == std::string_view::npos) return out;
        s.remove_prefix(p + 1);
    }
}

using core::prom::append_label_value;
using core::prom::append_number;
using core::prom::family;
using core::prom::sample;

template <std::size_t N>
void histogram_samples(std::string& out, std::string_view name, std::string_view label,
                       std::string_view label_value, const histogram<N>& h,
                       const std::array<double, N>& bounds) {
    std::uint64_t cumulative = 0;
    const std::string bucket = std::string(name) + "_bucket";
    for (std::size_t i = 0; i <= N; ++i) {
        cumulative += h.counts[i];
        out += bucket;
        out += '{';
        if (!label.empty()) {
            out += label;
            out += "=\"";
            append_label_value(out, label_value);
            out += "\",";
        }
        out += "le=\"";
        if (i < N) {
            // Plain decimals ("0.0001", not "1e-04"), as Prometheus clients write them.
            char buf[32];
            const auto [p, ec] =
                std::to_chars(buf, buf + sizeof buf, bounds[i], std::chars_format::fixed);
            out.append(buf, ec == std::errc{} ? static_cast<std::size_t>(p - buf) : 0);
        } else
            out += "+Inf";
        out += "\"} ";
        append_number(out, cumulative);
        out += '\n';
    }
    const auto tail = [&](std::string_view suffix, auto v) {
        out += name;
        out += suffix;
        if (!label.empty()) {
            out += '{';
            out += label;
            out += "=\"";
            append_label_value(out, label_value);
            out += "\"}";
        }
        out += ' ';
        append_number(out, v);
        out += '\n';
    };
    tail("_sum", h.sum);
    tail("_count", cumulative);
}

std::string_view model_label(std::string_view m) {
    return m.empty() ? "other" : m;
}

// Process figures from /proc/self.
struct process_figures {
    std::uint64_t rss_bytes = 0, virtual_bytes = 0, fds = 0, threads = 0;
    double cpu_seconds = 0;
};

process_figures read_process() {
    process_figures p;
    const long page = sysconf(_SC_PAGESIZE);
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
        unsigned long size = 0, resident = 0;
        if (std::fscanf(f, "%lu %lu", &size, &resident) == 2) {
            p.rss_bytes = resident * static_cast<std::uint64_t>(page);
            p.virtual_bytes = size * static_cast<std::uint64_t>(page);
        }
        std::fclose(f);
    }
    if (DIR* d = opendir("/proc/self/fd")) {
        while (const dirent* e = readdir(d))
            if (e->d_name[0] != '.') ++p.fds;
        closedir(d);
        if (p.fds) --p.fds;  // the directory stream's own descriptor
    }
    if (std::FILE* f = std::fopen("/proc/self/stat", "r")) {
        char buf[1024];
        const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
        std::fclose(f);
        buf[n] = 0;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        std::string_view s(buf, n);
        const auto close = s.rfind(')');
        if (close != std::string_view::npos) {
            std::istringstream in(std::string(s.substr(close + 2)));
            std::string field;
            unsigned long utime = 0, stime = 0, threads = 0;
            // state(3) ... utime(14) stime(15) ... num_threads(20); we start at field 3.
            for (int i = 3; i <= 20 && in >> field; ++i) {
                if (i == 14) utime = std::stoul(field);
                if (i == 15) stime = std::stoul(field);
                if (i == 20) threads = std::stoul(field);
            }
            p.threads = threads;
            p.cpu_seconds =
                static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
        }
    }
    return p;
}

}  // namespace

metrics::metrics(unsigned shards) {
    for (unsigned i = 0; i < std::max(1u, shards); ++i)
        shards_.push_back(std::make_unique<shard>());
}

void metrics::record(unsigned index, const request_sample& s) {
    auto& sh = *shards_[index % shards_.size()];
    const std::string_view model = model_label(s.model);
    std::lock_guard lock(sh.mu);
    auto& k = sh.scratch;
    k.assign(s.key);
    k += sep;
    k += model;
    const std::size_t key_model = k.size();
    k += sep;
    k += s.provider;
    k += sep;
    char buf[8];
    const auto [p, ec] = std::to_chars(buf, buf + sizeof buf, s.status);
    k.append(buf, static_cast<std::size_t>(p - buf));
    if (k != sh.last_name) {
        sh.last_requests = &slot<counters>(sh.requests, k);
        sh.last_name = k;
        sh.last_spend = nullptr;
        sh.last_ttft = nullptr;
        k.assign(model);
        sh.last_duration = &slot<latency_histogram>(sh.duration, k);
    }
    ++sh.last_requests->requests;

    if (s.prompt_tokens || s.completion_tokens || s.cost_usd > 0) {
        if (!sh.last_spend) {
            k.assign(sh.last_name, 0, key_model);
            sh.last_spend = &slot<money>(sh.spend, k);
        }
        money& m = *sh.last_spend;
        m.prompt += s.prompt_tokens;
        m.completion += s.completion_tokens;
        m.cost += s.cost_usd;
    }
    if (!s.refusal_reason.empty()) {
        k.assign(s.key);
        k += sep;
        k += s.refusal_reason;
        ++slot<std::uint64_t>(sh.limited, k);
    }
    sh.last_duration->observe(s.duration_s, latency_buckets);
    if (s.ttft_s) {
        if (!sh.last_ttft) {
            k.assign(model);
            sh.last_ttft = &slot<latency_histogram>(sh.ttft, k);
        }
        sh.last_ttft->observe(*s.ttft_s, latency_buckets);
    }
    if (s.overhead_s) sh.overhead.observe(*s.overhead_s, overhead_buckets);
}

void metrics::upstream_failure(unsigned index, std::string_view provider, std::string_view reason) {
    auto& sh = *shards_[index % shards_.size()];
    std::lock_guard lock(sh.mu);
    auto& k = sh.scratch;
    k.assign(provider);
    k += sep;
    k += reason;
    ++slot<std::uint64_t>(sh.failures, k);
}

connection_gauge& metrics::connections(const std::string& provider) {
    std::lock_guard lock(mu_);
    auto& g = connections_[provider];
    if (!g) g = std::make_unique<connection_gauge>();
    return *g;
}

void metrics::count_reload(bool ok) {
    std::lock_guard lock(mu_);
    ++(ok ? reloads_ok_ : reloads_failed_);
}

void metrics::add_source(std::function<void(std::string&)> source) {
    std::lock_guard lock(mu_);
    sources_.push_back(std::move(source));
}

std::string metrics::render() const {
    // Merge the shards (each locked briefly), ordered for a stable output.
    std::map<std::string, std::uint64_t> requests, limited, failures;
    std::map<std::string, money> spend;
    std::map<std::string, latency_histogram> duration, ttft;
    overhead_histogram overhead;
    for (const auto& sh : shards_) {
        std::lock_guard lock(sh->mu);
        for (const auto& [k, v] : sh->requests) requests[k] += v.requests;
        for (const auto& [k, v] : sh->limited) limited[k] += v;
        for (const auto& [k, v] : sh->failures) failures[k] += v;
        for (const auto& [k, v] : sh->spend) {
            auto& m = spend[k];
            m.prompt += v.prompt;
            m.completion += v.completion;
            m.cost += v.cost;
        }
        for (const auto& [k, v] : sh->duration) duration[k].merge(v);
        for (const auto& [k, v] : sh->ttft) ttft[k].merge(v);
        overhead.merge(sh->overhead);
    }

    std::string out;
    out.reserve(8192);
    family(out, "tollgate_requests_total", "counter",
           "API requests answered, by key id, model, provider and HTTP status.");
    for (const auto& [k, v] : requests) {
        const auto p = parts(k);
        sample(out, "tollgate_requests_total",
               {{"key", p[0]}, {"model", p[1]}, {"provider", p[2]}, {"status", p[3]}}, v);
    }
    family(out, "tollgate_request_duration_seconds", "histogram",
           "Time from the request head to the last byte of the answer, by model.");
    for (const auto& [k, v] : duration)
        histogram_samples(out, "tollgate_request_duration_seconds", "model", k, v, latency_buckets);
    family(out, "tollgate_time_to_first_token_seconds", "histogram",
           "Time from the request head to the first byte of the answer sent, by model.");
    for (const auto& [k, v] : ttft)
        histogram_samples(out, "tollgate_time_to_first_token_seconds", "model", k, v,
                          latency_buckets);
    family(out, "tollgate_overhead_seconds", "histogram",
           "Time spent inside tollgate per request, excluding the wait for the upstream.");
    histogram_samples(out, "tollgate_overhead_seconds", "", "", overhead, overhead_buckets);

    family(out, "tollgate_tokens_total", "counter", "Tokens accounted, by key id, model and type.");
    for (const auto& [k, v] : spend) {
        const auto p = parts(k);
        sample(out, "tollgate_tokens_total", {{"key", p[0]}, {"model", p[1]}, {"type", "prompt"}},
               v.prompt);
        sample(out, "tollgate_tokens_total",
               {{"key", p[0]}, {"model", p[1]}, {"type", "completion"}}, v.completion);
    }
    family(out, "tollgate_cost_usd_total", "counter",
           "Cost accounted in USD, by key id and model.");
    for (const auto& [k, v] : spend) {
        const auto p = parts(k);
        sample(out, "tollgate_cost_usd_total", {{"key", p[0]}, {"model", p[1]}}, v.cost);
    }
    family(out, "tollgate_rate_limited_total", "counter",
           "Requests refused by a limit or budget, by key id and reason.");
    for (const auto& [k, v] : limited) {
        const auto p = parts(k);
        sample(out, "tollgate_rate_limited_total", {{"key", p[0]}, {"reason", p[1]}}, v);
    }
    family(out, "tollgate_upstream_failures_total", "counter",
           "Failed upstream attempts, by provider and reason.");
    for (const auto& [k, v] : failures) {
        const auto p = parts(k);
        sample(out, "tollgate_upstream_failures_total", {{"provider", p[0]}, {"reason", p[1]}}, v);
    }
    family(out, "tollgate_inflight_requests", "gauge", "API requests being answered now.");
    sample(out, "tollgate_inflight_requests", {},
           static_cast<double>(inflight.load(std::memory_order_relaxed)));

    std::vector<std::function<void(std::string&)>> sources;
    {
        std::lock_guard lock(mu_);
        family(out, "tollgate_upstream_connections", "gauge",
               "Open upstream connections, by provider and state (active or idle).");
        for (const auto& [name, g] : connections_) {
            sample(out, "tollgate_upstream_connections", {{"provider", name}, {"state", "active"}},
                   static_cast<double>(g->active.load(std::memory_order_relaxed)));
            sample(out, "tollgate_upstream_connections", {{"provider", name}, {"state", "idle"}},
                   static_cast<double>(g->idle.load(std::memory_order_relaxed)));
        }
        family(out, "tollgate_config_reloads_total", "counter",
               "Configuration reloads, by result.");
        sample(out, "tollgate_config_reloads_total", {{"result", "ok"}}, reloads_ok_);
        sample(out, "tollgate_config_reloads_total", {{"result", "error"}}, reloads_failed_);
        sources = sources_;
    }

    const auto proc = read_process();
    family(out, "tollgate_process_resident_memory_bytes", "gauge", "Resident set size.");
    sample(out, "tollgate_process_resident_memory_bytes", {}, proc.rss_bytes);
    family(out, "tollgate_process_virtual_memory_bytes", "gauge", "Virtual memory size.");
    sample(out, "tollgate_process_virtual_memory_bytes", {}, proc.virtual_bytes);
    family(out, "tollgate_process_open_fds", "gauge", "Open file descriptors.");
    sample(out, "tollgate_process_open_fds", {}, proc.fds);
    family(out, "tollgate_process_threads", "gauge", "Threads of the process.");
    sample(out, "tollgate_process_threads", {}, proc.threads);
    family(out, "tollgate_process_cpu_seconds_total", "counter", "User and system CPU time.");
    sample(out, "tollgate_process_cpu_seconds_total", {}, proc.cpu_seconds);

    for (const auto& s : sources) s(out);
    return out;
}

}  // namespace tollgate::observe
