#pragma once
// Everything one client request carries through the policy chain and the proxy.
// A context belongs to one request on one worker thread: no locking, never shared.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "gateway/core/errors.hpp"

namespace tollgate::core {

using clock = std::chrono::steady_clock;

enum class endpoint : std::uint8_t { chat_completions, embeddings, messages, models };

// Request headers, looked up by case-insensitive name. Implemented by the session.
class header_source {
  public:
    virtual std::string_view get(std::string_view name) const noexcept = 0;

  protected:
    ~header_source() = default;
};

using header_list = std::vector<std::pair<std::string, std::string>>;

// What the gateway learnt from the request body in its one parse.
struct request_body {
    std::string model;  // the name the client asked for
    bool stream = false;
    bool client_include_usage = false;  // stream_options.include_usage sent by the client
    std::optional<std::uint64_t> max_tokens;
    std::size_t prompt_bytes = 0;  // text bytes of messages/input/system, for estimates
    // Splice points in the raw body (byte offsets), so that rewriting never
    // re-serialises the rest of the JSON.
    std::size_t model_begin = 0, model_end = 0;  // the model string token, quotes included
    std::size_t stream_options_begin = 0, stream_options_end = 0;  // the value; 0,0 = absent
    std::size_t object_end = 0;  // offset of the closing '}' of the top-level object
};

// One upstream attempt's destination, chosen by the router.
struct route_target {
    std::size_t provider_index = 0;  // index into the snapshot's providers
    const config::provider_config* provider = nullptr;
    std::string upstream_model;
    std::uint16_t group = 0;                      // 0: the model asked for; n: its n-th fallback
    const config::model_config* model = nullptr;  // the model this target belongs to (prices)
    std::uint32_t health_slot = 0;                // the router's index for this target's health
};

// A policy that answers the request itself sets this and returns verdict::reply.
struct local_reply {
    int status = 0;
    errc error = errc::ok;  // != ok: the body is the error shape of the endpoint
    std::string message;    // error message (no secrets)
    std::string body;       // success body (error == ok)
    std::string content_type = "application/json";
    header_list headers;
};

struct usage_counts {
    std::uint64_t prompt_tokens = 0;
    std::uint64_t completion_tokens = 0;
    std::uint64_t cached_tokens = 0;
    bool from_upstream = false;  // false: estimated
};

// Per-policy per-request state, stored in the context's slot for that policy.
struct policy_state {
    virtual ~policy_state() = default;
};

struct request_context {
    // The request.
    std::string request_id;
    endpoint ep = endpoint::chat_completions;
    std::string_view method;
    std::string_view target;
    const header_source* headers = nullptr;
    std::string_view body;  // raw body as received
    request_body req;
    clock::time_point received_at{};

    // Set by auth.
    std::shared_ptr<const config::key_config> key;
    // Set by the router.
    const config::model_config* model = nullptr;
    std::vector<route_target> plan;  // attempts in order

    // Set by a policy that accounts streamed usage: ask OpenAI-kind upstreams for the
    // final usage chunk (stream_options.include_usage) even if the client did not.
    bool want_stream_usage = false;

    // A local answer (verdict::reply).
    local_reply reply;
    // Why a limit refused the request (for metrics): rpm, tpm, concurrency or budget.
    std::string_view refusal_reason;
    // Headers policies add to the client's response (rate-limit headers, ...).
    header_list response_headers;

    // Progress, filled by the proxy; read by on_complete.
    bool forwarded = false;  // at least one upstream attempt was made
    std::uint32_t attempts = 0;
    const route_target* served_by = nullptr;         // last target tried
    std::optional<clock::time_point> first_byte_at;  // first byte of the answer sent to the client
    int upstream_status = 0;   // status of the last upstream answer's head (0: none)
    usage_counts usage;        // filled by the usage policy: from the upstream, or estimated
    bool usage_seen = false;   // an upstream usage object was read
    bool usage_final = false;  // usage and cost_usd hold the request's final figures
    std::optional<double> cost_usd;

    std::vector<std::unique_ptr<policy_state>> states;  // one slot per policy in the chain
    // Shared by the policies that admit together (rate_limit + budget on a shared state
    // store: one Redis step for both).
    std::unique_ptr<policy_state> shared_admission;

    template <class T>
    T* state(std::size_t slot) const noexcept {
        return slot < states.size() ? static_cast<T*>(states[slot].get()) : nullptr;
    }
    template <class T, class... Args>
    T& emplace_state(std::size_t slot, Args&&... args) {
        if (states.size() <= slot) states.resize(slot + 1);
        auto p = std::make_unique<T>(std::forward<Args>(args)...);
        T& ref = *p;
        states[slot] = std::move(p);
        return ref;
    }

    void set_error_reply(errc e, std::string message = {}) {
        reply.status = describe(e).status;
        reply.error = e;
        reply.message = std::move(message);
    }
};

}  // namespace tollgate::core
