#pragma once
// Typed, validated configuration: the YAML of docs/configuration.md turned into plain structs.
// Built once by load_config() and never mutated afterwards, so any thread may read it.

#include <bitset>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/cidr.hpp"
#include "config/policy_section.hpp"

namespace tollgate::config {

using duration = std::chrono::milliseconds;

struct listen_address {
    std::string host;
    std::uint16_t port = 0;
    std::string text() const { return host + ":" + std::to_string(port); }
    bool operator==(const listen_address&) const = default;
};

struct tls_files {
    std::string cert;
    std::string key;
    bool operator==(const tls_files&) const = default;
};

struct server_config {
    std::vector<listen_address> listen{{"127.0.0.1", 8080}};
    unsigned threads = 0;  // 0 = one per core
    std::size_t max_request_bytes = 8u << 20;
    std::size_t max_header_bytes = 64u << 10;  // request head; 431 past it
    duration header_timeout{10'000};
    duration idle_timeout{75'000};
    duration drain_timeout{30'000};
    duration write_timeout{10'000};  // longest a client may take to accept one piece of the answer
    std::size_t max_connections = 20000;
    std::size_t max_pipelined = 16;  // requests answered on one connection without a read pause
    std::string access_log = "off";
    std::optional<tls_files> tls;
    // Proxies in front of tollgate: from a peer in these, the client address is the last
    // X-Forwarded-For hop not in these (empty: the peer is the client).
    std::vector<cidr> trusted_proxies;
};

struct admin_config {
    std::optional<listen_address> listen;
    std::string token;  // secret
    bool operator==(const admin_config&) const = default;
};

enum class provider_kind { openai, azure, anthropic };
// The config's name of a kind ("openai", "azure", "anthropic").
inline const char* kind_name(provider_kind k) {
    return k == provider_kind::openai  ? "openai"
           : k == provider_kind::azure ? "azure"
                                       : "anthropic";
}

struct provider_config {
    std::string name;
    provider_kind kind = provider_kind::openai;
    std::string base_url;
    std::string api_key;                      // secret; may be empty (self-hosted servers)
    std::string api_version;                  // azure
    std::uint32_t default_max_tokens = 4096;  // anthropic
    duration connect_timeout{5'000};
    duration first_byte_timeout{120'000};
    duration idle_timeout{60'000};
    std::size_t max_connections = 512;
    std::string ca_file;  // empty = system default store
    bool tls_verify = true;
    std::size_t max_response_bytes = 64u << 20;  // non-streamed answers are read whole
    std::size_t max_event_bytes = 1u << 20;      // one SSE event
    // /v1/responses: sent as is (openai, azure) or translated through chat completions
    // (an OpenAI-compatible server without /responses). Anthropic targets always translate.
    enum class responses_mode : std::uint8_t { native, translate };
    responses_mode responses = responses_mode::native;
    // Parsed from base_url.
    bool tls = false;
    std::string host;
    std::uint16_t port = 0;
    std::string base_path;  // without trailing '/'
    bool operator==(const provider_config&) const = default;
};

struct target_config {
    std::string provider;
    std::string model;
    std::uint32_t weight = 1;
};

struct price_config {
    double input_per_mtok = 0;
    double output_per_mtok = 0;
    std::optional<double> cached_input_per_mtok;
};

struct model_config {
    std::string name;
    std::vector<target_config> targets;
    std::vector<std::string> fallbacks;
    std::optional<price_config> price;
};

enum class routing_strategy { weighted, least_busy, lowest_latency };
enum class disconnect_mode { cancel, drain };

// routing.retry_on, read once: which failures send a request on to another target.
struct retry_rule {
    bool connect_error = false;  // refused, reset, pool full, TLS verification
    bool timeout = false;
    std::bitset<200> statuses;  // 400..599

    // From the retry_on strings (the loader has checked them; anything else is ignored).
    static retry_rule from(const std::vector<std::string>& retry_on);
    bool retries_status(int s) const noexcept {
        return s >= 400 && s < 600 && statuses.test(static_cast<std::size_t>(s - 400));
    }
};

struct routing_config {
    routing_strategy strategy = routing_strategy::weighted;
    std::uint32_t retries = 2;
    std::vector<std::string> retry_on{"connect_error", "timeout", "429", "500",
                                      "502",           "503",     "504"};
    retry_rule retry = retry_rule::from(retry_on);  // retry_on, read
    std::uint32_t cooldown_after_failures = 3;
    duration cooldown{30'000};
    disconnect_mode on_client_disconnect = disconnect_mode::cancel;
    duration drain_limit{60'000};
};

struct limits_config {
    std::optional<std::uint64_t> rpm;
    std::optional<std::uint64_t> tpm;
    std::optional<std::uint64_t> concurrency;
};

enum class budget_period { day, month, total };

// "day", "month" or "total", as the config file, the admin API and the key store spell it.
constexpr const char* budget_period_name(budget_period p) noexcept {
    return p == budget_period::day ? "day" : p == budget_period::total ? "total" : "month";
}

struct budget_config {
    std::optional<std::uint64_t> tokens;
    std::optional<double> usd;
    budget_period period = budget_period::month;
};

struct key_config {
    std::string id;
    std::string key_sha256;  // hex; the plain key is hashed while loading and then dropped
    std::optional<std::vector<std::string>> models;  // nullopt = every model
    limits_config limits;
    std::optional<budget_config> budget;
    // With the ip_allow policy: client addresses allowed to use this key (nullopt = any).
    std::optional<std::vector<cidr>> allowed_cidrs;
};

struct usage_config {
    std::string database = "./data/usage.db";
    std::string jsonl;       // empty = off
    std::string spill_file;  // empty = <database>.spill, or ./data/usage.spill for PostgreSQL
};

enum class state_backend { memory, redis };
enum class fail_mode { closed, open };

struct state_config {
    state_backend backend = state_backend::memory;
    std::string redis_url = "redis://127.0.0.1:6379/0";
    fail_mode on_failure = fail_mode::closed;
    duration timeout{200};                 // longest wait for one Redis answer (admission included)
    std::string key_prefix = "tollgate:";  // before every Redis key and channel
    duration lease{30'000};                // a reservation not renewed this long returns by itself
    std::uint32_t pool_size = 1;           // pipelined connections to Redis
    std::string tls_ca_file;               // rediss://: CA bundle; empty = the system's

    bool operator==(const state_config&) const = default;
};

struct gateway_config {
    std::string source_path;
    server_config server;
    admin_config admin;
    std::vector<provider_config> providers;
    std::vector<model_config> models;
    routing_config routing;
    std::vector<key_config> keys;
    usage_config usage;
    state_config state;
    std::vector<std::string> policies;  // chain order; empty = the registry's default chain
    int policies_line = 0;
    // The policies' own sections (policy_section.hpp), by policy name.
    std::map<std::string, policy_section, std::less<>> policy_sections;

    const provider_config* find_provider(std::string_view name) const;
    const model_config* find_model(std::string_view name) const;
};

}  // namespace tollgate::config
