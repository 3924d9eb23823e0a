#pragma once
// How one upstream attempt ended, described once (after Pingora's errors: a source and a
// kind), and the one place that maps it to what follows from it: the client's status,
// the retry decision (`routing.retry_on`), the router's health and the failure metric.
// Sans-io; unit-tested in tests/unit/core/attempt_error_test.cpp.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "gateway/core/errors.hpp"

namespace tollgate::core {

// Where the attempt stopped.
enum class attempt_source : std::uint8_t {
    none,     // it did not: an answer went to the client
    pool,     // no connection slot within connect_timeout
    connect,  // resolving or connecting
    tls,      // the TLS handshake
    head,     // sending the request or reading the response head
    body,     // reading a non-streamed answer
    stream,   // relaying a streamed answer
    client,   // the client went away
};

// What went wrong there.
enum class attempt_kind : std::uint8_t {
    ok,           // answered (a success, or a client-fault 4xx passed through as sent)
    io,           // refused, reset, closed or cut short
    timeout,      // connect_timeout, first_byte_timeout or idle_timeout
    pool_full,    // every connection of the pool in use
    tls_verify,   // the upstream's certificate failed verification (chain or host name)
    status,       // an error status another target may not give (429, 5xx, other 4xx)
    auth,         // 401/403: the upstream refused the gateway's credentials
    too_large,    // an answer over max_response_bytes or an event over max_event_bytes
    malformed,    // an answer that could not be read or translated
    broken,       // a stream that broke off after its head (no timeout)
    error_event,  // a stream that ended with the upstream's own error event
    client_gone,
};

struct attempt_error {
    attempt_source source = attempt_source::none;
    attempt_kind kind = attempt_kind::ok;
    int status = 0;       // the upstream's status, when a head came
    std::string message;  // for the client's error body and the debug log; no secrets
    std::optional<std::chrono::milliseconds> retry_after;  // from an upstream 429/503

    bool ok() const noexcept { return kind == attempt_kind::ok; }
    bool client_gone() const noexcept { return kind == attempt_kind::client_gone; }

    static attempt_error fail(attempt_source s, attempt_kind k, std::string message,
                              int status = 0) {
        return {s, k, status, std::move(message), std::nullopt};
    }
    static attempt_error gone() { return {attempt_source::client, attempt_kind::client_gone}; }
};

// How one attempt ended, as the policies' on_attempt_end sees it.
struct attempt_result {
    attempt_error error;
    std::optional<std::chrono::steady_clock::duration> time_to_head;  // to the upstream's head
};

// Whether the failure says something against the target (router cooldowns and
// streaks): every failure but the client's leaving.
bool counts_against_target(const attempt_error& e) noexcept;

// Whether the request may go on to another target of the same model. The model's
// fallbacks are tried whatever the failure.
bool retryable(const attempt_error& e, const config::retry_rule& rule) noexcept;

// The `reason` label of tollgate_upstream_failures_total; empty: not a failure.
std::string_view failure_reason(const attempt_error& e) noexcept;

// The client's error when every attempt failed and `last` was the last one: 504 when
// all of them timed out, else 502.
errc client_error(const attempt_error& last, bool all_timed_out) noexcept;

// The Retry-After value of an upstream answer in seconds (an HTTP-date is not honoured),
// capped at an hour.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view v) noexcept;

}  // namespace tollgate::core
