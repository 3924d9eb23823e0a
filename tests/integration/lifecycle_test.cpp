// The process: command line, config checking, upstream failures, limits, drain.
#define BOOST_TEST_MODULE lifecycle_integration
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <fstream>
#include <string>

#include "tests/support/fixtures.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(integration)

BOOST_AUTO_TEST_CASE(version_prints_and_exits_zero) {
    auto r = run_command({tollgate_binary(), "--version"}, 10s);
    BOOST_TEST(r.exit_code == 0);
    BOOST_TEST(r.output.find("tollgate ") == 0u);
}

BOOST_AUTO_TEST_CASE(check_accepts_a_good_config_and_lists_every_problem_of_a_bad_one) {
    const auto dir = make_temp_dir();
    std::ofstream(dir / "good.yaml") << standard_config(9);
    auto good =
        run_command({tollgate_binary(), "--check", "--config", (dir / "good.yaml").string()}, 10s);
    BOOST_TEST(good.exit_code == 0);
    BOOST_TEST(good.output.find("OK") != std::string::npos);

    std::ofstream(dir / "bad.yaml") << "server:\n"
                                       "  listen: [\"127.0.0.1:0\"]\n"
                                       "  idle_timeout: forever\n"
                                       "  colour: blue\n"
                                       "providers:\n"
                                       "  p:\n"
                                       "    kind: openai\n"
                                       "    base_url: http://127.0.0.1:1/v1\n"
                                       "    api_key: ${TOLLGATE_TEST_UNSET_VARIABLE}\n"
                                       "models:\n"
                                       "  m: {targets: [{provider: nope, model: x}]}\n";
    auto bad =
        run_command({tollgate_binary(), "--check", "--config", (dir / "bad.yaml").string()}, 10s);
    BOOST_TEST(bad.exit_code == 1);
    BOOST_TEST(bad.output.find("line 3") != std::string::npos);  // idle_timeout
    BOOST_TEST(bad.output.find("line 4") != std::string::npos);  // unknown key colour
    BOOST_TEST(bad.output.find("colour") != std::string::npos);
    BOOST_TEST(bad.output.find("TOLLGATE_TEST_UNSET_VARIABLE") != std::string::npos);
    BOOST_TEST(bad.output.find("unknown provider 'nope'") != std::string::npos);

    // Running (not only checking) a bad config fails the same way.
    auto run = run_command({tollgate_binary(), "--config", (dir / "bad.yaml").string()}, 10s);
    BOOST_TEST(run.exit_code == 1);
    std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(env_substitution_feeds_secrets_that_never_reach_the_log) {
    mock_upstream mock;
    auto yaml = standard_config(mock.port());
    const std::string secret = "sk-from-the-environment-42";
    yaml.replace(yaml.find(provider_key), std::string(provider_key).size(), "${TEST_PROVIDER_KEY}");
    gateway_process gw(yaml, {{"TEST_PROVIDER_KEY", secret}});
    auto r =
        http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(), chat_body("x"));
    BOOST_TEST(r.status == 200);
    BOOST_TEST(mock.last_request().find("Bearer " + secret) != std::string::npos);
    BOOST_TEST(gw.process().output().find(secret) == std::string::npos);
}

BOOST_AUTO_TEST_CASE(upstream_down_is_502) {
    gateway_process gw(standard_config(closed_port()));
    auto r =
        http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(), chat_body("x"));
    BOOST_TEST(r.status == 502);
    BOOST_TEST(r.body.find(R"("code":"upstream_unavailable")") != std::string::npos);
    BOOST_TEST(r.body.find(R"("type":"upstream_error")") != std::string::npos);
    BOOST_TEST(!r.header("x-tollgate-overhead-ms").empty());
    auto s = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("x", true));
    BOOST_TEST(s.status == 502);
}

BOOST_AUTO_TEST_CASE(slow_upstream_is_504) {
    mock_upstream mock;
    gateway_process gw(
        standard_config(mock.port(), {.provider_extra = "    first_byte_timeout: 300ms\n"}));
    auto r = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("#mock head_delay_ms=5000"));
    BOOST_TEST(r.status == 504);
    BOOST_TEST(r.body.find(R"("code":"upstream_timeout")") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(stalled_stream_ends_with_an_error_event_after_the_idle_timeout) {
    mock_upstream mock;
    gateway_process gw(
        standard_config(mock.port(), {.provider_extra = "    idle_timeout: 300ms\n"}));
    auto r = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("#mock chunks=5 delay_ms=5000", true));
    BOOST_TEST(r.status == 200);
    const auto events = sse_data(r.body);
    BOOST_REQUIRE(!events.empty());
    BOOST_TEST(events.back().find("upstream_timeout") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(provider_refusing_the_gateway_key_is_502_naming_no_key) {
    mock_upstream mock({"--api-key", "sk-the-right-one"});
    gateway_process gw(standard_config(mock.port()));
    auto r =
        http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(), chat_body("x"));
    BOOST_TEST(r.status == 502);
    BOOST_TEST(r.body.find("credentials") != std::string::npos);
    BOOST_TEST(r.body.find(provider_key) == std::string::npos);
    BOOST_TEST(r.body.find("sk-the-right-one") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(connections_beyond_max_connections_are_closed_at_once) {
    mock_upstream mock;
    gateway_process gw(standard_config(mock.port(), {.server_extra = "  max_connections: 2\n"}));
    http_connection a(gw.port()), b(gw.port());
    // Both admitted connections work (and so are counted by the server).
    BOOST_TEST(a.request("GET", "/healthz").status == 200);
    BOOST_TEST(b.request("GET", "/healthz").status == 200);
    http_connection c(gw.port(), 10s);
    BOOST_TEST(c.closed_by_peer());
    a.close();
    b.close();
}

BOOST_AUTO_TEST_CASE(http10_client_gets_a_close_delimited_stream) {
    mock_upstream mock;
    gateway_process gw(standard_config(mock.port()));
    http_connection c(gw.port());
    const auto body = chat_body("old #mock chunks=3", true);
    c.send_raw("POST /v1/chat/completions HTTP/1.0\r\nauthorization: Bearer " +
               std::string(client_key_a) + "\r\ncontent-length: " + std::to_string(body.size()) +
               "\r\n\r\n" + body);
    auto r = c.read_response();
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.header("transfer-encoding").empty());
    BOOST_TEST(sse_data(r.body).back() == "[DONE]");
}

BOOST_AUTO_TEST_CASE(sigterm_lets_a_running_stream_finish_then_exits_zero) {
    mock_upstream mock;
    gateway_process gw(standard_config(mock.port(), {.server_extra = "  drain_timeout: 20s\n"}));
    http_connection c(gw.port());
    c.send_request("POST", "/v1/chat/completions", auth_headers(),
                   chat_body("drain #mock chunks=20 delay_ms=50", true));
    BOOST_TEST(c.read_head().status == 200);
    gw.process().signal(SIGTERM);
    BOOST_TEST(gw.process().wait_for_line("draining", 10s).has_value());
    // New connections are refused while draining.
    std::string got;
    for (std::string piece; !(piece = c.read_body_some()).empty();) got += piece;
    const auto events = sse_data(got);
    BOOST_REQUIRE(!events.empty());
    BOOST_TEST(events.back() == "[DONE]");
    BOOST_TEST((gw.process().wait_exit(20s) == std::optional<int>(0)));
}

BOOST_AUTO_TEST_CASE(idle_keep_alive_connection_is_closed_after_idle_timeout) {
    mock_upstream mock;
    gateway_process gw(standard_config(mock.port(), {.server_extra = "  idle_timeout: 300ms\n"}));
    http_connection c(gw.port(), 20s);
    BOOST_TEST(c.request("GET", "/healthz").status == 200);
    BOOST_TEST(c.closed_by_peer());
}

BOOST_AUTO_TEST_CASE(request_body_that_stops_arriving_is_cut_by_idle_timeout) {
    mock_upstream mock;
    gateway_process gw(standard_config(mock.port(), {.server_extra = "  idle_timeout: 300ms\n"}));
    http_connection c(gw.port(), 20s);
    const auto body = chat_body("never finished");
    c.send_raw("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " +
               std::string(client_key_a) + "\r\ncontent-length: " + std::to_string(body.size()) +
               "\r\n\r\n" + body.substr(0, 10));
    BOOST_TEST(c.closed_by_peer());
    BOOST_TEST(mock.stats().find(R"("requests":0)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_request_pipelined_behind_a_stream_during_drain_gets_503_shutting_down) {
    mock_upstream mock;
    gateway_process gw(standard_config(mock.port(), {.server_extra = "  drain_timeout: 20s\n"}));
    http_connection c(gw.port());
    const auto b1 = chat_body("drain #mock chunks=20 delay_ms=50", true), b2 = chat_body("late");
    std::string both;
    for (const auto& b : {b1, b2})
        both +=
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " +
            std::string(client_key_a) +
            "\r\ncontent-type: application/json\r\ncontent-length: " + std::to_string(b.size()) +
            "\r\n\r\n" + b;
    c.send_raw(both);
    BOOST_TEST(c.read_head().status == 200);
    gw.process().signal(SIGTERM);
    BOOST_TEST(gw.process().wait_for_line("draining", 10s).has_value());
    std::string got;
    for (std::string piece; !(piece = c.read_body_some()).empty();) got += piece;
    BOOST_TEST(sse_data(got).back() == "[DONE]");
    auto late = c.read_response();
    BOOST_TEST(late.status == 503);
    BOOST_TEST(late.body.find(R"("code":"shutting_down")") != std::string::npos);
    BOOST_TEST((gw.process().wait_exit(20s) == std::optional<int>(0)));
}

BOOST_AUTO_TEST_CASE(healthz_and_readyz_answer) {
    mock_upstream mock;
    gateway_process gw(standard_config(mock.port()));
    BOOST_TEST(http_request(gw.port(), "GET", "/healthz").status == 200);
    BOOST_TEST(http_request(gw.port(), "GET", "/readyz").status == 200);
}

BOOST_AUTO_TEST_SUITE_END()
