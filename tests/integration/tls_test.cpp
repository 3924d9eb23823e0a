// Upstream TLS: verified by default (chain and host name, SNI sent), refused with 502
// when verification fails, and only unverified with tls_verify: false. Client TLS
// (server.tls): answers and streams over TLS, a plain-HTTP client is closed without harm,
// and a TLS client that leaves (close_notify, then FIN) cancels the upstream request.
#define BOOST_TEST_MODULE tls_integration
#include <boost/test/unit_test.hpp>

#include <string>

#include "tests/support/fixtures.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

const test_certs& certs() {
    static const test_certs c = make_test_certs();
    return c;
}

mock_upstream tls_mock(bool wrong_host = false) {
    const auto& c = certs();
    return mock_upstream({"--tls-cert", (wrong_host ? c.wrong_cert : c.cert).string(), "--tls-key",
                          (wrong_host ? c.wrong_key : c.key).string()});
}

config_options tls_options(const std::string& provider_extra,
                           const std::string& host = "localhost") {
    config_options o;
    o.scheme = "https";
    o.host = host;
    o.provider_extra = provider_extra;
    return o;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_AUTO_TEST_CASE(verified_tls_upstream_serves_streams_and_gets_sni) {
    auto mock = tls_mock();
    gateway_process gw(
        standard_config(mock.port(), tls_options("    ca_file: " + certs().ca.string() + "\n")));
    auto r =
        http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(), chat_body("tls"));
    BOOST_TEST(r.status == 200);
    const auto last = mock.last_request();
    BOOST_TEST(last.find(R"("tls":true)") != std::string::npos);
    BOOST_TEST(last.find(R"("sni":"localhost")") != std::string::npos);
    auto s = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("tls #mock chunks=30", true));
    BOOST_TEST(s.status == 200);
    BOOST_TEST(sse_data(s.body).back() == "[DONE]");
    // Keep-alive over TLS: a second request reuses the pooled connection.
    auto again =
        http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(), chat_body("tls"));
    BOOST_TEST(again.status == 200);
}

BOOST_AUTO_TEST_CASE(certificate_for_another_host_is_refused_with_502) {
    auto mock = tls_mock(true);
    gateway_process gw(
        standard_config(mock.port(), tls_options("    ca_file: " + certs().ca.string() + "\n")));
    auto r =
        http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(), chat_body("x"));
    BOOST_TEST(r.status == 502);
    BOOST_TEST(r.body.find("TLS verification failed") != std::string::npos);
    BOOST_TEST(mock.stats().find(R"("requests":0)") != std::string::npos);  // nothing was sent
    BOOST_TEST(gw.process().wait_for_line("TLS handshake", 10s).has_value());
}

BOOST_AUTO_TEST_CASE(untrusted_ca_is_refused_with_502_and_counted_as_a_tls_failure) {
    auto mock = tls_mock();
    // No ca_file: the system store, which does not hold the test CA.
    auto o = tls_options("");
    o.top_extra = "admin: {listen: \"127.0.0.1:0\", token: adm-tls-test-token-0123456789}\n";
    gateway_process gw(standard_config(mock.port(), o));
    auto r =
        http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(), chat_body("x"));
    BOOST_TEST(r.status == 502);
    BOOST_TEST(mock.stats().find(R"("requests":0)") != std::string::npos);
    // Its own failure reason, for the shipped TollgateUpstreamTLSFailures alert.
    const auto admin = gw.admin_port();
    BOOST_TEST(poll_until([&] {
        return http_request(admin, "GET", "/metrics")
                   .body.find(
                       R"(tollgate_upstream_failures_total{provider="mock",reason="tls"} 1)") !=
               std::string::npos;
    }));
}

BOOST_AUTO_TEST_CASE(tls_verify_false_accepts_what_verification_would_refuse) {
    auto mock = tls_mock(true);
    gateway_process gw(
        standard_config(mock.port(), tls_options("    tls_verify: false\n", "127.0.0.1")));
    auto r =
        http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(), chat_body("x"));
    BOOST_TEST(r.status == 200);
}

std::string server_tls_extra() {
    return "  tls: {cert: \"" + certs().cert.string() + "\", key: \"" + certs().key.string() +
           "\"}\n";
}

BOOST_AUTO_TEST_CASE(client_tls_is_terminated_for_answers_and_streams) {
    mock_upstream mock;
    gateway_process gw(standard_config(mock.port(), {.server_extra = server_tls_extra()}));
    auto r = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("over tls"), true);
    BOOST_TEST(r.status == 200);
    BOOST_TEST(!r.header("x-request-id").empty());
    auto s = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("over tls #mock chunks=20", true), true);
    BOOST_TEST(s.status == 200);
    BOOST_TEST(sse_data(s.body).back() == "[DONE]");
    // Keep-alive over TLS.
    http_connection c(gw.port(), 30s, true);
    BOOST_TEST(c.request("GET", "/healthz").status == 200);
    BOOST_TEST(
        c.request("POST", "/v1/chat/completions", auth_headers(), chat_body("again")).status ==
        200);
}

BOOST_AUTO_TEST_CASE(plain_http_on_a_tls_listener_is_closed_and_serving_goes_on) {
    mock_upstream mock;
    gateway_process gw(standard_config(mock.port(), {.server_extra = server_tls_extra()}));
    {
        http_connection c(gw.port());
        c.send_raw("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
        BOOST_TEST(c.closed_by_peer());
    }
    BOOST_TEST(http_request(gw.port(), "GET", "/healthz", {}, {}, true).status == 200);
    BOOST_TEST(mock.stats().find(R"("requests":0)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(tls_client_gone_while_waiting_for_the_head_cancels_the_upstream_request) {
    // The client's close_notify arrives as bytes before its FIN: the gateway must still see
    // a departure, not a pipelined request, and stop the upstream request long before the
    // mock's 30 s head delay ends.
    mock_upstream mock;
    gateway_process gw(standard_config(mock.port(), {.server_extra = server_tls_extra()}));
    {
        http_connection c(gw.port(), 30s, true);
        c.send_request("POST", "/v1/chat/completions", auth_headers(),
                       chat_body("slow #mock head_delay_ms=30000", true));
        BOOST_TEST(mock.wait_for("streams_started", 1));
        c.close();
    }
    BOOST_TEST(mock.wait_for("streams_aborted", 1, 10000));
    BOOST_TEST(http_request(gw.port(), "GET", "/healthz", {}, {}, true).status == 200);
}

BOOST_AUTO_TEST_SUITE_END()
