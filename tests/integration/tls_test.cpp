// Upstream TLS: verified by default (chain and host name, SNI sent), refused with 502
// when verification fails, and only unverified with tls_verify: false.
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

BOOST_AUTO_TEST_CASE(untrusted_ca_is_refused_with_502) {
    auto mock = tls_mock();
    // No ca_file: the system store, which does not hold the test CA.
    gateway_process gw(standard_config(mock.port(), tls_options("")));
    auto r =
        http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(), chat_body("x"));
    BOOST_TEST(r.status == 502);
    BOOST_TEST(mock.stats().find(R"("requests":0)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(tls_verify_false_accepts_what_verification_would_refuse) {
    auto mock = tls_mock(true);
    gateway_process gw(
        standard_config(mock.port(), tls_options("    tls_verify: false\n", "127.0.0.1")));
    auto r =
        http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(), chat_body("x"));
    BOOST_TEST(r.status == 200);
}

BOOST_AUTO_TEST_SUITE_END()
