#pragma once
// The gateway's error codes and the one place that maps them to what a client sees:
// HTTP status, OpenAI error type/code, and the Anthropic error type for /v1/messages.

#include <boost/system/error_code.hpp>

#include <string>
#include <string_view>
#include <type_traits>

namespace tollgate::core {

enum class errc {
    ok = 0,
    invalid_request,        // 400: body not JSON / not an object / wrong types / missing fields
    bad_framing,            // 400: smuggling-shaped request head; the connection is closed
    invalid_api_key,        // 401
    model_not_allowed,      // 403
    model_not_found,        // 404
    not_found,              // 404: unknown path
    method_not_allowed,     // 405
    request_too_large,      // 413
    headers_too_large,      // 431
    rate_limited,           // 429 rate_limit_error
    budget_exceeded,        // 429 insufficient_quota
    upstream_unavailable,   // 502
    upstream_timeout,       // 504
    shutting_down,          // 503
    state_unavailable,      // 503: shared state store unreachable (fail_mode: closed)
    overloaded,             // 503: a bounded resource (pool, queue) is full
    internal,               // 500
    client_closed,          // the client went away; nothing is sent (recorded as 499)
    unsupported_on_target,  // 400: a Responses API field the chosen target cannot serve
    ip_not_allowed,         // 403: the client address is outside the key's allowed_cidrs
};

struct error_info {
    int status;
    std::string_view type;            // OpenAI error.type
    std::string_view code;            // OpenAI error.code
    std::string_view anthropic_type;  // Anthropic error.type
    std::string_view message;         // default message
};

const error_info& describe(errc e) noexcept;
const boost::system::error_category& gateway_category() noexcept;
boost::system::error_code make_error_code(errc e) noexcept;

// Appends `s` to `out` as the inside of a JSON string (no quotes).
void append_json_escaped(std::string& out, std::string_view s);

// {"error":{"message":...,"type":...,"param":null,"code":...}}
std::string openai_error_body(errc e, std::string_view message = {});
// {"type":"error","error":{"type":...,"message":...}}
std::string anthropic_error_body(errc e, std::string_view message = {});
// An invalid_request_error with a code of its own (the admin API's: key_exists,
// invalid_config, ...), in the OpenAI shape.
std::string invalid_request_body(std::string_view code, std::string_view message);

}  // namespace tollgate::core

template <>
struct boost::system::is_error_code_enum<tollgate::core::errc> : std::true_type {};
