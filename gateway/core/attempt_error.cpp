#include "gateway/core/attempt_error.hpp"

#include <algorithm>

namespace tollgate::core {

bool counts_against_target(const attempt_error& e) noexcept {
    return !e.ok() && !e.client_gone();
}

bool retryable(const attempt_error& e, const config::retry_rule& rule) noexcept {
    switch (e.kind) {
        case attempt_kind::io:
        case attempt_kind::pool_full:
        case attempt_kind::tls_verify:  // another target may well have a good certificate
            return rule.connect_error;
        case attempt_kind::timeout:
            return rule.timeout;
        case attempt_kind::status:
            return rule.retries_status(e.status);
        default:
            return false;
    }
}

std::string_view failure_reason(const attempt_error& e) noexcept {
    switch (e.kind) {
        case attempt_kind::io:
        case attempt_kind::pool_full:
            return "connect_error";
        case attempt_kind::tls_verify:
            return "tls";
        case attempt_kind::timeout:
            return "timeout";
        case attempt_kind::status:
            return e.status == 429 ? "status_429" : e.status >= 500 ? "status_5xx" : "status_4xx";
        case attempt_kind::auth:
            return "auth";
        case attempt_kind::too_large:
        case attempt_kind::malformed:
        case attempt_kind::broken:
            return "protocol";
        case attempt_kind::error_event:
            return "stream_error";
        case attempt_kind::ok:
        case attempt_kind::client_gone:
            break;
    }
    return {};
}

errc client_error(const attempt_error& last, bool all_timed_out) noexcept {
    return all_timed_out && last.kind == attempt_kind::timeout ? errc::upstream_timeout
                                                               : errc::upstream_unavailable;
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view v) noexcept {
    if (v.empty() || v.size() > 9) return std::nullopt;
    std::int64_t secs = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return std::nullopt;  // an HTTP-date: not worth honouring
        secs = secs * 10 + (c - '0');
    }
    return std::chrono::milliseconds(std::min<std::int64_t>(secs, 3600) * 1000);
}

}  // namespace tollgate::core
