#pragma once
// Everything one client request carries through the policy chain and the proxy.
// A context belongs to one request on one worker thread: no locking, never shared.

#include <string.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "gateway/core/errors.hpp"
#include "gateway/core/usage_meter.hpp"

namespace tollgate::core {

using clock = std::chrono::steady_clock;

// Milliseconds, fractional, as the access log, the usage records and the overhead header
// give them.
inline double ms(clock::duration d) noexcept {
    return std::chrono::duration<double, std::milli>(d).count();
}
inline double ms_between(clock::time_point a, clock::time_point b) noexcept {
    return ms(b - a);
}

enum class endpoint : std::uint8_t { chat_completions, embeddings, messages, models, responses };

// Request headers, looked up by case-insensitive name. Implemented by the session.
class header_source {
  public:
    virtual std::string_view get(std::string_view name) const noexcept = 0;
    // Every field of that name, in order, joined by ", " (RFC 9110 5.3: the same as one
    // field with the values as a list). For list headers such as X-Forwarded-For.
    virtual std::string get_all(std::string_view name) const { return std::string(get(name)); }

  protected:
    ~header_source() = default;
};

// Response header fields added by policies and the pipeline, kept as the lines they are
// written as ("name: value\r\n" each) in one string: one allocation however many fields,
// and what a waiting stream holds until its head goes out is just those bytes. Names and
// values are the gateway's own (no CR or LF).
class header_block {
  public:
    void add(std::string_view name, std::string_view value) {
        // The line put together first, then appended once (four appends cost four times).
        const std::size_t n = name.size() + value.size() + 4;
        char line[192];
        if (n > sizeof line) {
            text_.reserve(text_.size() + n);
            text_.append(name);
            text_.append(": ", 2);
            text_.append(value);
            text_.append("\r\n", 2);
            return;
        }
        char* p = line;
        std::memcpy(p, name.data(), name.size());
        p += name.size();
        *p++ = ':';
        *p++ = ' ';
        std::memcpy(p, value.data(), value.size());
        p += value.size();
        *p++ = '\r';
        *p++ = '\n';
        text_.append(line, n);
    }
    void add(std::string_view name, std::uint64_t value) {
        char digits[20];
        const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
        add(name, std::string_view(digits, static_cast<std::size_t>(end - digits)));
    }
    void append(const header_block& other) { text_ += other.text_; }
    // Whole "name: value\r\n" lines, written by the caller (names and values checked there).
    void append_lines(std::string_view lines) { text_.append(lines); }
    void reserve(std::size_t n) { text_.reserve(n); }
    // Gives the memory back (a stream whose head is out).
    void release() noexcept { std::string().swap(text_); }
    std::string_view text() const noexcept { return text_; }

  private:
    std::string text_;
};

// What the gateway learnt from the request body in its one parse.
struct request_body {
    std::string model;  // the name the client asked for
    bool stream = false;
    bool client_include_usage = false;        // stream_options.include_usage sent by the client
    std::optional<std::uint64_t> max_tokens;  // max_tokens | max_completion_tokens
    std::uint64_t n = 1;                      // choices asked for (`n`)
    // Prompt tokens, estimated to be an upper bound: text of messages/input/system/tools
    // (non-ASCII characters one token each), token arrays by their length, images a
    // fixed figure each.
    std::uint64_t prompt_tokens = 0;
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
    std::string_view upstream_model;  // in the snapshot's config, which outlives the request
    std::uint16_t group = 0;          // 0: the model asked for; n: its n-th fallback
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
    header_block headers;
};

// What admission reserves for a request, computed once (before the request phase) and
// shared by every policy that reserves: the prompt estimate, the completion cap
// (max_tokens, or the largest provider default of the model's targets, times `n`), and
// USD at the most expensive price among the model and its fallbacks (the one that will
// serve is not known yet).
struct request_estimate {
    std::uint64_t prompt_tokens = 0;
    std::uint64_t completion_tokens = 0;
    double usd = 0;
    std::uint64_t tokens() const noexcept { return prompt_tokens + completion_tokens; }
};

// Per-policy per-request state, stored in the context's slot for that policy.
struct policy_state {
    virtual ~policy_state() = default;
};

// What a connection's requests leave for the next one on it: owned by the session, it
// outlives each request's context and ends with the connection.
struct connection_memo {
    // auth: the key the connection's last authenticated request presented, as presented,
    // and what it resolved to, under which auth policy (its instance number) and against
    // which key table. A request presenting the same bytes under the same two is the same
    // caller: its key is not hashed and looked up again. Any change to the keys (a
    // revocation, a deletion, a reload) replaces the table or the policy, and the next
    // request is checked in full. The bytes are wiped when replaced and when the
    // connection ends.
    struct auth_entry {
        std::string secret;
        std::uint64_t resolver = 0;
        std::shared_ptr<const void> table;
        std::shared_ptr<const config::key_config> key;
    } auth;

    connection_memo() = default;
    connection_memo(const connection_memo&) = delete;
    connection_memo& operator=(const connection_memo&) = delete;
    ~connection_memo() { forget_auth(); }
    void forget_auth() noexcept;
};

inline void connection_memo::forget_auth() noexcept {
    if (!auth.secret.empty()) ::explicit_bzero(auth.secret.data(), auth.secret.size());
    auth.secret.clear();
    auth.resolver = 0;
    auth.table.reset();
    auth.key.reset();
}

struct request_context {
    // The request.
    std::string request_id;
    endpoint ep = endpoint::chat_completions;
    std::string_view method;
    std::string_view target;
    const header_source* headers = nullptr;
    // The connection's peer (the client, or a proxy in front of it: see
    // server.trusted_proxies and config::client_address).
    config::ip_address peer;
    // The connection's memo (null where a request has no connection, as in tests).
    connection_memo* connection = nullptr;
    // Raw body as received; empty once the answer has begun (no attempt needs it then: a
    // stream may last minutes, and a long prompt is most of what it would hold).
    std::string_view body;
    std::size_t body_bytes = 0;  // its size, for the access log
    request_body req;
    clock::time_point received_at{};

    // Set by auth.
    std::shared_ptr<const config::key_config> key;
    // Set by the router.
    const config::model_config* model = nullptr;
    std::vector<route_target> plan;  // attempts in order

    // Set by the pipeline before the request phase.
    request_estimate estimate;

    // A local answer (verdict::reply).
    local_reply reply;
    // Why a limit refused the request (for metrics): rpm, tpm, concurrency or budget.
    std::string_view refusal_reason;
    // Headers policies add to the client's response (rate-limit headers, ...).
    header_block response_headers;

    // Progress, filled by the proxy; read by on_settle and on_complete.
    bool forwarded = false;  // at least one upstream attempt was made
    std::uint32_t attempts = 0;
    const route_target* served_by = nullptr;         // last target tried
    std::optional<clock::time_point> first_byte_at;  // first byte of the answer sent to the client
    // When the request ended, read once by the pipeline just before on_complete (unset
    // until then): on_complete and the request's observation take their times from it.
    std::optional<clock::time_point> completed_at;
    std::int64_t completed_unix_ms = 0;  // the same moment, Unix milliseconds
    void mark_completed() noexcept {
        completed_at = clock::now();
        completed_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
    }
    // When the request ended: completed_at, or now where the pipeline has not set it.
    clock::time_point ended_at() const noexcept {
        return completed_at ? *completed_at : clock::now();
    }
    std::int64_t ended_unix_ms() const noexcept {
        return completed_at ? completed_unix_ms
                            : std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
    }
    int upstream_status = 0;  // status of the last upstream answer's head (0: none)
    // Fed by the answering attempt's upstream adapter.
    usage_meter meter;
    // The request's final usage and cost (at the serving model's price), set by the
    // pipeline from the meter before any policy's on_settle runs; every policy that
    // settles (rate_limit, budget, usage) reads these, whatever the chain's order.
    usage_counts usage;
    bool usage_final = false;
    std::optional<double> cost_usd;

    // One slot per policy in the chain, then the slots of services the chain's policies
    // share (core::chain_services::new_slot).
    std::vector<std::unique_ptr<policy_state>> states;

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
