#include "gateway/core/errors.hpp"

#include "gateway/core/json_text.hpp"

#include <array>

namespace tollgate::core {

namespace {

constexpr std::array<error_info, 21> table{{
    {200, "", "", "", "ok"},
    {400, "invalid_request_error", "invalid_request", "invalid_request_error", "invalid request"},
    {400, "invalid_request_error", "bad_request_framing", "invalid_request_error",
     "malformed HTTP request"},
    {401, "authentication_error", "invalid_api_key", "authentication_error",
     "missing or invalid API key"},
    {403, "permission_error", "model_not_allowed", "permission_error",
     "this key may not use the requested model"},
    {404, "invalid_request_error", "model_not_found", "not_found_error",
     "the requested model does not exist"},
    {404, "invalid_request_error", "not_found", "not_found_error", "no such endpoint"},
    {405, "invalid_request_error", "method_not_allowed", "invalid_request_error",
     "method not allowed on this endpoint"},
    {413, "invalid_request_error", "request_too_large", "invalid_request_error",
     "request body is too large"},
    {431, "invalid_request_error", "headers_too_large", "invalid_request_error",
     "request headers are too large"},
    {429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_error", "rate limit exceeded"},
    {429, "insufficient_quota", "budget_exceeded", "rate_limit_error",
     "the key's budget for this period is spent"},
    {502, "upstream_error", "upstream_unavailable", "api_error", "upstream unavailable"},
    {504, "upstream_error", "upstream_timeout", "api_error", "upstream timed out"},
    {503, "server_error", "shutting_down", "overloaded_error", "the gateway is shutting down"},
    {503, "server_error", "state_unavailable", "overloaded_error",
     "shared state store unavailable"},
    {503, "server_error", "overloaded", "overloaded_error", "the gateway is overloaded"},
    {500, "server_error", "internal_error", "api_error", "internal error"},
    {499, "", "client_closed", "", "client closed the connection"},
    {400, "invalid_request_error", "unsupported_on_target", "invalid_request_error",
     "the chosen target cannot serve this request"},
    {403, "permission_error", "ip_not_allowed", "permission_error",
     "this key may not be used from this address"},
}};

class category final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "tollgate"; }
    std::string message(int ev) const override {
        if (ev < 0 || static_cast<std::size_t>(ev) >= table.size()) return "unknown error";
        return std::string(table[static_cast<std::size_t>(ev)].message);
    }
};

}  // namespace

const error_info& describe(errc e) noexcept {
    const auto i = static_cast<std::size_t>(e);
    return i < table.size() ? table[i] : table[static_cast<std::size_t>(errc::internal)];
}

const boost::system::error_category& gateway_category() noexcept {
    static const category c;
    return c;
}

boost::system::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), gateway_category()};
}

void append_json_escaped(std::string& out, std::string_view s) {
    json_text::append_escaped(out, s);
}

std::string invalid_request_body(std::string_view code, std::string_view message) {
    std::string out = R"({"error":{"message":")";
    append_json_escaped(out, message);
    out += R"(","type":"invalid_request_error","param":null,"code":")";
    append_json_escaped(out, code);
    out += "\"}}";
    return out;
}

std::string openai_error_body(errc e, std::string_view message) {
    const auto& d = describe(e);
    std::string out;
    out.reserve(128 + message.size());
    out += R"({"error":{"message":")";
    append_json_escaped(out, message.empty() ? d.message : message);
    out += R"(","type":")";
    out += d.type;
    out += R"(","param":null,"code":")";
    out += d.code;
    out += "\"}}";
    return out;
}

std::string anthropic_error_body(errc e, std::string_view message) {
    const auto& d = describe(e);
    std::string out;
    out.reserve(96 + message.size());
    out += R"({"type":"error","error":{"type":")";
    out += d.anthropic_type;
    out += R"(","message":")";
    append_json_escaped(out, message.empty() ? d.message : message);
    out += "\"}}";
    return out;
}

}  // namespace tollgate::core
