#define BOOST_TEST_MODULE errors
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <simdjson.h>

#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/core/errors.hpp"

namespace bdata = boost::unit_test::data;
using namespace tollgate::core;

namespace {

// SPEC.md "Errors", plus the codes other SPEC sections name (state_unavailable, the
// request-framing 400). An empty code means SPEC gives none.
struct spec_row {
    errc e;
    int status;
    std::string_view type;
    std::string_view code;
    std::string_view anthropic_type;
};

std::ostream& operator<<(std::ostream& os, const spec_row& r) {
    return os << "errc " << static_cast<int>(r.e) << " (" << r.code << ")";
}

const std::vector<spec_row> spec_table{
    {errc::invalid_request, 400, "invalid_request_error", "", "invalid_request_error"},
    {errc::bad_framing, 400, "invalid_request_error", "", "invalid_request_error"},
    {errc::invalid_api_key, 401, "authentication_error", "invalid_api_key", "authentication_error"},
    {errc::model_not_allowed, 403, "permission_error", "model_not_allowed", "permission_error"},
    {errc::ip_not_allowed, 403, "permission_error", "ip_not_allowed", "permission_error"},
    {errc::model_not_found, 404, "invalid_request_error", "model_not_found", "not_found_error"},
    {errc::request_too_large, 413, "invalid_request_error", "request_too_large", ""},
    {errc::headers_too_large, 431, "invalid_request_error", "headers_too_large", ""},
    {errc::rate_limited, 429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_error"},
    {errc::budget_exceeded, 429, "insufficient_quota", "budget_exceeded", "rate_limit_error"},
    {errc::upstream_unavailable, 502, "upstream_error", "upstream_unavailable", ""},
    {errc::upstream_timeout, 504, "upstream_error", "upstream_timeout", ""},
    {errc::shutting_down, 503, "server_error", "shutting_down", ""},
    {errc::state_unavailable, 503, "server_error", "state_unavailable", ""},
};

// Anthropic's error types as SPEC lists them.
const std::set<std::string_view> anthropic_types{
    "authentication_error", "permission_error", "not_found_error", "invalid_request_error",
    "rate_limit_error",     "api_error",        "overloaded_error"};

// Every errc a client can be answered with (all but ok and client_closed).
const std::vector<errc> answerable{
    errc::invalid_request,    errc::bad_framing,       errc::invalid_api_key,
    errc::model_not_allowed,  errc::model_not_found,   errc::not_found,
    errc::method_not_allowed, errc::request_too_large, errc::headers_too_large,
    errc::rate_limited,       errc::budget_exceeded,   errc::upstream_unavailable,
    errc::upstream_timeout,   errc::shutting_down,     errc::state_unavailable,
    errc::overloaded,         errc::internal,          errc::ip_not_allowed};

struct escape_row {
    std::string in, out;
};

std::ostream& operator<<(std::ostream& os, const escape_row& r) {
    os << "input bytes:";
    for (unsigned char c : r.in) os << ' ' << static_cast<int>(c);
    return os;
}

const std::vector<escape_row> escape_table{
    {"", ""},
    {"plain text", "plain text"},
    {"\"", "\\\""},
    {"\\", "\\\\"},
    {"\n\r\t", "\\n\\r\\t"},
    {std::string(1, '\0'), "\\u0000"},
    {"\x1b[31m", "\\u001b[31m"},
    {"\x7f", "\\u007f"},
    {"/", "/"},
    {"\xe2\x82\xac", "\xe2\x82\xac"},
};

std::string_view get_string(simdjson::dom::element doc, const char* pointer) {
    std::string_view s;
    const auto err = doc.at_pointer(pointer).get(s);
    BOOST_TEST(err == simdjson::SUCCESS, pointer << " is not a string");
    return s;
}

}  // namespace

namespace tollgate::core {
std::ostream& operator<<(std::ostream& os, errc e) {
    return os << static_cast<int>(e);
}
}  // namespace tollgate::core

BOOST_AUTO_TEST_SUITE(unit)

BOOST_DATA_TEST_CASE(each_error_maps_to_the_spec_status_type_and_code, bdata::make(spec_table),
                     row) {
    const auto& d = describe(row.e);
    BOOST_TEST(d.status == row.status);
    BOOST_TEST(d.type == row.type);
    if (!row.code.empty()) BOOST_TEST(d.code == row.code);
    BOOST_TEST(!d.code.empty());
    if (!row.anthropic_type.empty()) BOOST_TEST(d.anthropic_type == row.anthropic_type);
    BOOST_TEST(anthropic_types.count(d.anthropic_type) == 1u, d.anthropic_type);
    BOOST_TEST(!d.message.empty());
}

BOOST_DATA_TEST_CASE(every_answerable_error_has_a_full_mapping, bdata::make(answerable), e) {
    const auto& d = describe(e);
    BOOST_TEST(d.status >= 400);
    BOOST_TEST(d.status < 600);
    BOOST_TEST(!d.type.empty());
    BOOST_TEST(!d.code.empty());
    BOOST_TEST(anthropic_types.count(d.anthropic_type) == 1u, d.anthropic_type);
    BOOST_TEST(!d.message.empty());
    // Anthropic's type agrees with the status class.
    if (d.status == 401) BOOST_TEST(d.anthropic_type == "authentication_error");
    if (d.status == 403) BOOST_TEST(d.anthropic_type == "permission_error");
    if (d.status == 429) BOOST_TEST(d.anthropic_type == "rate_limit_error");
    if (d.status >= 500)
        BOOST_TEST((d.anthropic_type == "api_error" || d.anthropic_type == "overloaded_error"));
}

BOOST_AUTO_TEST_CASE(internal_and_out_of_range_codes_are_500) {
    BOOST_TEST(describe(errc::internal).status == 500);
    BOOST_TEST(describe(errc::internal).type == "server_error");
    BOOST_TEST(describe(static_cast<errc>(9999)).status == 500);
    BOOST_TEST(describe(errc::client_closed).status == 499);
    BOOST_TEST(describe(errc::not_found).status == 404);
    BOOST_TEST(describe(errc::method_not_allowed).status == 405);
}

BOOST_AUTO_TEST_CASE(errc_is_a_boost_system_error_code) {
    const boost::system::error_code ec = errc::model_not_found;
    BOOST_TEST(ec.value() == static_cast<int>(errc::model_not_found));
    BOOST_TEST(std::string(ec.category().name()) == "tollgate");
    BOOST_TEST(&ec.category() == &gateway_category());
    BOOST_TEST(ec.message() == std::string(describe(errc::model_not_found).message));
    BOOST_TEST(static_cast<bool>(ec));
    BOOST_TEST(!make_error_code(errc::ok));
    BOOST_TEST(ec == make_error_code(errc::model_not_found));
    BOOST_TEST(ec != make_error_code(errc::model_not_allowed));
    BOOST_TEST(gateway_category().message(-1) == "unknown error");
}

BOOST_DATA_TEST_CASE(openai_error_body_has_the_openai_shape, bdata::make(answerable), e) {
    const std::string body = openai_error_body(e, "model 'x' does not exist");
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    BOOST_TEST_REQUIRE(p.parse(body).get(doc) == simdjson::SUCCESS, body);
    simdjson::dom::object root, error;
    BOOST_REQUIRE(doc.get_object().get(root) == simdjson::SUCCESS);
    BOOST_TEST(root.size() == 1u);
    BOOST_REQUIRE(root["error"].get_object().get(error) == simdjson::SUCCESS);
    BOOST_TEST(error.size() == 4u);
    BOOST_TEST(get_string(doc, "/error/message") == "model 'x' does not exist");
    BOOST_TEST(get_string(doc, "/error/type") == describe(e).type);
    BOOST_TEST(get_string(doc, "/error/code") == describe(e).code);
    BOOST_TEST(doc.at_pointer("/error/param").is_null());
}

BOOST_DATA_TEST_CASE(anthropic_error_body_has_the_anthropic_shape, bdata::make(answerable), e) {
    const std::string body = anthropic_error_body(e, "no such model");
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    BOOST_TEST_REQUIRE(p.parse(body).get(doc) == simdjson::SUCCESS, body);
    simdjson::dom::object root, error;
    BOOST_REQUIRE(doc.get_object().get(root) == simdjson::SUCCESS);
    BOOST_TEST(root.size() == 2u);
    BOOST_TEST(get_string(doc, "/type") == "error");
    BOOST_REQUIRE(root["error"].get_object().get(error) == simdjson::SUCCESS);
    BOOST_TEST(error.size() == 2u);
    BOOST_TEST(get_string(doc, "/error/type") == describe(e).anthropic_type);
    BOOST_TEST(get_string(doc, "/error/message") == "no such model");
}

BOOST_AUTO_TEST_CASE(an_empty_message_uses_the_default_message) {
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    const std::string openai = openai_error_body(errc::invalid_api_key);
    BOOST_REQUIRE(p.parse(openai).get(doc) == simdjson::SUCCESS);
    BOOST_TEST(get_string(doc, "/error/message") == describe(errc::invalid_api_key).message);
    const std::string anthropic = anthropic_error_body(errc::rate_limited, "");
    BOOST_REQUIRE(p.parse(anthropic).get(doc) == simdjson::SUCCESS);
    BOOST_TEST(get_string(doc, "/error/message") == describe(errc::rate_limited).message);
}

BOOST_AUTO_TEST_CASE(exact_openai_error_body) {
    BOOST_TEST(
        openai_error_body(errc::model_not_allowed, "no") ==
        R"({"error":{"message":"no","type":"permission_error","param":null,"code":"model_not_allowed"}})");
    BOOST_TEST(anthropic_error_body(errc::model_not_found, "no") ==
               R"({"type":"error","error":{"type":"not_found_error","message":"no"}})");
}

BOOST_AUTO_TEST_CASE(messages_with_quotes_and_control_characters_are_escaped) {
    // Everything a message might echo back from a client: quotes, backslashes, control
    // characters, DEL, and UTF-8, which passes through as it is.
    const std::string nasty = std::string("say \"hi\" \\ path\n\r\t end") + '\x01' + '\x1f' +
                              '\x7f' + std::string("\0 nul", 5) + " caf\xc3\xa9 \b\f";
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    for (const std::string& body : {openai_error_body(errc::invalid_request, nasty),
                                    anthropic_error_body(errc::invalid_request, nasty)}) {
        // No raw control character survives in the body.
        for (char c : body) BOOST_TEST((static_cast<unsigned char>(c) >= 0x20 && c != 0x7f));
        BOOST_TEST_REQUIRE(p.parse(body).get(doc) == simdjson::SUCCESS, body);
        BOOST_TEST(get_string(doc, "/error/message") == nasty);
    }
    const std::string body = openai_error_body(errc::invalid_request, nasty);
    BOOST_TEST(body.find(R"(say \"hi\" \\ path\n\r\t end\u0001\u001f\u007f\u0000 nul)") !=
               std::string::npos);
}

BOOST_DATA_TEST_CASE(append_json_escaped_table, bdata::make(escape_table), row) {
    std::string out = "prefix:";
    append_json_escaped(out, row.in);
    BOOST_TEST(out == "prefix:" + row.out);
    // And it reads back as the input.
    simdjson::dom::parser p;
    std::string_view back;
    const std::string quoted = "\"" + out.substr(7) + "\"";
    BOOST_TEST_REQUIRE(p.parse(quoted).get(back) == simdjson::SUCCESS);
    BOOST_TEST(back == row.in);
}

BOOST_AUTO_TEST_SUITE_END()
