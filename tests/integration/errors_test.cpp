// Every error status of SPEC's table, from the real binary, in the SPEC's shapes.
#define BOOST_TEST_MODULE errors_integration
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <string>

#include "tests/support/fixtures.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;
namespace data = boost::unit_test::data;

namespace {

struct env {
    mock_upstream mock;
    gateway_process gw{standard_config(
        mock.port(),
        config_options{.server_extra = "  max_request_bytes: 64KiB\n  max_header_bytes: 8KiB\n"
                                       "  header_timeout: 500ms\n"})};
};

bool openai_error(const http_response& r, const std::string& type, const std::string& code) {
    return r.header("content-type") == "application/json" &&
           r.body.find(R"({"error":{"message":")") == 0 &&
           r.body.find(R"("type":")" + type + "\"") != std::string::npos &&
           r.body.find(R"("code":")" + code + "\"") != std::string::npos &&
           r.body.find(R"("param":null)") != std::string::npos;
}

struct bad_body {
    std::string name, body;
};
std::ostream& operator<<(std::ostream& os, const bad_body& b) {
    return os << b.name;
}

const bad_body bad_bodies[] = {
    {"not json", "this is not json"},
    {"not an object", "[1,2,3]"},
    {"missing model", R"({"messages":[]})"},
    {"model not a string", R"({"model":5,"messages":[]})"},
    {"missing messages", R"({"model":"gpt-4o-mini"})"},
    {"messages not an array", R"({"model":"gpt-4o-mini","messages":"hi"})"},
    {"stream not a bool", R"({"model":"gpt-4o-mini","messages":[],"stream":"yes"})"},
    {"truncated", R"({"model":"gpt-4o-mini","messages":[)"},
    {"empty", ""},
    {"duplicate model", R"({"model":"gpt-4o-mini","model":"other-model","messages":[]})"},
    {"too deep", R"({"model":"gpt-4o-mini","messages":[],"x":)" + std::string(200, '[') +
                     std::string(200, ']') + "}"},
    {"invalid utf-8",
     "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}"},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_DATA_TEST_CASE(bad_bodies_get_400_invalid_request, data::make(bad_bodies), b) {
    static env e;  // one gateway for every row
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(), b.body);
    BOOST_TEST(r.status == 400);
    BOOST_TEST(openai_error(r, "invalid_request_error", "invalid_request"));
    // The gateway is still there.
    BOOST_TEST(http_request(e.gw.port(), "GET", "/healthz").status == 200);
}

BOOST_AUTO_TEST_CASE(missing_or_unknown_key_is_401) {
    env e;
    auto none = http_request(e.gw.port(), "POST", "/v1/chat/completions", {}, chat_body("x"));
    BOOST_TEST(none.status == 401);
    BOOST_TEST(openai_error(none, "authentication_error", "invalid_api_key"));
    BOOST_TEST(!none.header("x-tollgate-overhead-ms").empty());  // every non-streamed answer
    auto wrong = http_request(e.gw.port(), "POST", "/v1/chat/completions",
                              auth_headers("tg-wrong-key-000"), chat_body("x"));
    BOOST_TEST(wrong.status == 401);
    BOOST_TEST(wrong.body.find("tg-wrong-key-000") == std::string::npos);
    auto models = http_request(e.gw.port(), "GET", "/v1/models");
    BOOST_TEST(models.status == 401);
}

BOOST_AUTO_TEST_CASE(model_outside_the_keys_list_is_403) {
    env e;
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(client_key_b),
                          chat_body("x", false, "other-model"));
    BOOST_TEST(r.status == 403);
    BOOST_TEST(openai_error(r, "permission_error", "model_not_allowed"));
}

BOOST_AUTO_TEST_CASE(unknown_model_is_404_and_unknown_path_is_404) {
    env e;
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("x", false, "no-such-model"));
    BOOST_TEST(r.status == 404);
    BOOST_TEST(openai_error(r, "invalid_request_error", "model_not_found"));
    auto p = http_request(e.gw.port(), "GET", "/v2/nothing", auth_headers());
    BOOST_TEST(p.status == 404);
    BOOST_TEST(p.body.find(R"({"error":)") == 0u);
    auto m = http_request(e.gw.port(), "GET", "/v1/chat/completions", auth_headers());
    BOOST_TEST(m.status == 405);
}

BOOST_AUTO_TEST_CASE(body_over_max_request_bytes_is_413) {
    env e;
    const std::string big = chat_body(std::string(70 * 1024, 'a'));
    http_connection c(e.gw.port());
    auto r = c.request("POST", "/v1/chat/completions", auth_headers(), big);
    BOOST_TEST(r.status == 413);
    BOOST_TEST(openai_error(r, "invalid_request_error", "request_too_large"));
    // Just under the limit is fine.
    auto ok = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                           chat_body(std::string(60 * 1024, 'a')));
    BOOST_TEST(ok.status == 200);
}

BOOST_AUTO_TEST_CASE(head_over_the_header_limit_is_431) {
    env e;
    auto headers = auth_headers();
    headers.emplace_back("x-padding", std::string(10 * 1024, 'p'));
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", headers, chat_body("x"));
    BOOST_TEST(r.status == 431);
    BOOST_TEST(openai_error(r, "invalid_request_error", "headers_too_large"));
}

BOOST_AUTO_TEST_CASE(messages_endpoint_errors_use_the_anthropic_shape) {
    env e;
    auto r = http_request(e.gw.port(), "POST", "/v1/messages", {},
                          R"({"model":"gpt-4o-mini","max_tokens":10,"messages":[]})");
    BOOST_TEST(r.status == 401);
    BOOST_TEST(r.body.find(R"({"type":"error","error":{"type":"authentication_error")") == 0u);
    auto nf = http_request(e.gw.port(), "POST", "/v1/messages", {{"x-api-key", client_key_a}},
                           R"({"model":"nope","max_tokens":10,"messages":[]})");
    BOOST_TEST(nf.status == 404);
    BOOST_TEST(nf.body.find(R"("type":"not_found_error")") != std::string::npos);
    auto bad =
        http_request(e.gw.port(), "POST", "/v1/messages", {{"x-api-key", client_key_a}}, "nope");
    BOOST_TEST(bad.status == 400);
    BOOST_TEST(bad.body.find(R"("type":"invalid_request_error")") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(smuggling_shaped_heads_get_400_and_the_connection_closed) {
    env e;
    const std::string key = std::string("authorization: Bearer ") + client_key_a + "\r\n";
    const std::string body = chat_body("x");
    const std::vector<std::string> heads = {
        // Content-Length with Transfer-Encoding.
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + key + "content-length: " +
            std::to_string(body.size()) + "\r\ntransfer-encoding: chunked\r\n\r\n",
        // Two different Content-Length values.
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + key +
            "content-length: " + std::to_string(body.size()) + "\r\ncontent-length: 3\r\n\r\n",
        // obs-fold.
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + key +
            "x-folded: a\r\n b\r\ncontent-length: " + std::to_string(body.size()) + "\r\n\r\n",
        // Whitespace before the colon.
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + key +
            "content-length : " + std::to_string(body.size()) + "\r\n\r\n",
    };
    for (const auto& head : heads) {
        http_connection c(e.gw.port());
        c.send_raw(head + body);
        auto r = c.read_response();
        BOOST_TEST(r.status == 400);
        BOOST_TEST(r.header("connection") == "close");
        BOOST_TEST(c.closed_by_peer());
    }
    BOOST_TEST(e.mock.stats().find(R"("requests":0)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(chunked_body_split_inside_a_chunk_header_does_not_stall_the_worker) {
    mock_upstream mock;
    gateway_process gw(standard_config(mock.port(), {.server_extra = "  threads: 1\n"}));
    const std::string body = chat_body("chunked");
    char size_hex[16];
    std::snprintf(size_hex, sizeof size_hex, "%zx", body.size());
    http_connection c(gw.port());
    c.send_raw("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " +
               std::string(client_key_a) + "\r\ntransfer-encoding: chunked\r\n\r\n" + size_hex);
    // The only worker must still serve others while that chunk header is incomplete.
    BOOST_TEST(http_request(gw.port(), "GET", "/healthz").status == 200);
    c.send_raw("\r\n" + body + "\r\n0\r\n\r\n");
    auto r = c.read_response();
    BOOST_TEST(r.status == 200);
}

BOOST_AUTO_TEST_CASE(slow_head_is_cut_by_header_timeout) {
    env e;
    http_connection c(e.gw.port(), 20s);
    c.send_raw("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n");
    // Never finish the head: the server closes the connection (header_timeout 500ms).
    BOOST_TEST(c.closed_by_peer());
}

BOOST_AUTO_TEST_CASE(upstream_client_fault_status_and_body_are_passed_through) {
    env e;
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("#mock status=422"));
    BOOST_TEST(r.status == 422);
    BOOST_TEST(r.body.find("mock error") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
