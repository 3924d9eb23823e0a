// Routing through the real binary: weighted split over two real upstreams, retry on
// another target, cooldown of a failing target, fallbacks, and 502 when all fail.
#define BOOST_TEST_MODULE routing_integration
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/support/fixtures.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

int requests_of(const mock_upstream& m) {
    const auto s = m.stats();
    const auto p = s.find("\"requests\":");
    return std::stoi(s.substr(p + 11));
}

std::string config(std::uint16_t p1, std::uint16_t p2, const std::string& models,
                   const std::string& routing, const std::string& dir) {
    return "server: {listen: [\"127.0.0.1:0\"], threads: 2}\n"
           "providers:\n"
           "  one: {kind: openai, base_url: \"http://127.0.0.1:" +
           std::to_string(p1) +
           "/v1\"}\n"
           "  two: {kind: openai, base_url: \"http://127.0.0.1:" +
           std::to_string(p2) +
           "/v1\"}\n"
           "models:\n" +
           models + "routing:\n" + routing + "keys: [{id: k, key: " + client_key_a +
           "}]\n"
           "usage: {database: " +
           dir + "/usage.db, jsonl: " + dir +
           "/usage.jsonl}\n"
           "policies: [auth, router, usage]\n";
}

std::vector<std::string> jsonl_lines(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_AUTO_TEST_CASE(weighted_targets_split_traffic_by_weight) {
    mock_upstream a, b;
    const auto dir = make_temp_dir().string();
    gateway_process gw(config(a.port(), b.port(),
                              "  m:\n    targets: [{provider: one, model: x, weight: 3}, "
                              "{provider: two, model: y, weight: 1}]\n",
                              "  strategy: weighted\n", dir));
    http_connection c(gw.port());
    for (int i = 0; i < 400; ++i)
        BOOST_REQUIRE(
            c.request("POST", "/v1/chat/completions", auth_headers(), chat_body("w", false, "m"))
                .status == 200);
    const int ra = requests_of(a), rb = requests_of(b);
    BOOST_TEST(ra + rb == 400);
    BOOST_TEST(ra > 240);  // expected 300; the bounds are far outside random noise
    BOOST_TEST(ra < 360);
}

BOOST_AUTO_TEST_CASE(a_dead_target_is_retried_elsewhere_then_cooled_down) {
    mock_upstream b;
    const auto dir = make_temp_dir().string();
    {
        gateway_process gw(config(
            closed_port(), b.port(),
            "  m:\n    targets: [{provider: one, model: x}, {provider: two, model: y}]\n",
            "  strategy: weighted\n  retries: 1\n  cooldown_after_failures: 2\n  cooldown: 60s\n",
            dir));
        http_connection c(gw.port());
        for (int i = 0; i < 30; ++i)
            BOOST_TEST(c.request("POST", "/v1/chat/completions", auth_headers(),
                                 chat_body("r", false, "m"))
                           .status == 200);
    }  // SIGTERM: the ledger is flushed
    BOOST_TEST(requests_of(b) == 30);
    // Attempts: a request that picked the dead target first took 2, but only until the
    // target had failed twice; after that it is skipped (1 attempt each).
    int two_attempts = 0;
    const auto lines = jsonl_lines(dir + "/usage.jsonl");
    BOOST_TEST(lines.size() == 30u);
    for (const auto& l : lines) {
        if (l.find(R"("attempts":2)") != std::string::npos) {
            ++two_attempts;
            BOOST_TEST(l.find(R"("provider":"two")") != std::string::npos);
        }
    }
    BOOST_TEST(two_attempts <= 2);
}

BOOST_AUTO_TEST_CASE(a_cooled_down_target_gets_traffic_again_once_it_recovers) {
    mock_upstream b;
    const std::uint16_t dead = closed_port();
    const auto dir = make_temp_dir().string();
    gateway_process gw(
        config(dead, b.port(),
               "  m:\n    targets: [{provider: one, model: x}, {provider: two, model: y}]\n",
               "  retries: 1\n  cooldown_after_failures: 1\n  cooldown: 300ms\n", dir));
    http_connection c(gw.port());
    for (int i = 0; i < 10; ++i)
        BOOST_REQUIRE(
            c.request("POST", "/v1/chat/completions", auth_headers(), chat_body("a", false, "m"))
                .status == 200);
    // The dead target comes back on its port: once its cooldown ends it is tried again
    // and, succeeding, gets its share.
    mock_upstream revived({"--listen", "127.0.0.1:" + std::to_string(dead)});
    // Bounded in time, not only in count: 2,000 quick requests could all fall inside the
    // 300 ms cooldown.
    bool served = false;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int i = 0; i < 200'000 && !served && std::chrono::steady_clock::now() < give_up; ++i) {
        BOOST_REQUIRE(
            c.request("POST", "/v1/chat/completions", auth_headers(), chat_body("b", false, "m"))
                .status == 200);
        served = requests_of(revived) > 0;
    }
    BOOST_TEST(served);
}

BOOST_AUTO_TEST_CASE(fallback_model_serves_when_every_target_fails) {
    mock_upstream b;
    const auto dir = make_temp_dir().string();
    gateway_process gw(config(closed_port(), b.port(),
                              "  m:\n    targets: [{provider: one, model: x}]\n    fallbacks: [f]\n"
                              "  f:\n    targets: [{provider: two, model: fallback-model}]\n",
                              "  retries: 0\n", dir));
    auto r = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("fb", false, "m"));
    BOOST_TEST(r.status == 200);
    BOOST_TEST(b.last_request().find(R"(\"model\":\"fallback-model\")") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(every_target_and_fallback_failing_is_502_saying_why) {
    const auto dir = make_temp_dir().string();
    gateway_process gw(
        config(closed_port(), closed_port(),
               "  m:\n    targets: [{provider: one, model: x}, {provider: two, model: y}]\n",
               "  retries: 1\n", dir));
    auto r = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("x", false, "m"));
    BOOST_TEST(r.status == 502);
    BOOST_TEST(r.body.find("cannot connect") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(non_retryable_status_is_not_retried_on_the_same_model) {
    mock_upstream a, b;
    const auto dir = make_temp_dir().string();
    gateway_process gw(
        config(a.port(), b.port(),
               "  m:\n    targets: [{provider: one, model: x}, {provider: two, model: y}]\n",
               "  retries: 1\n  retry_on: [connect_error]\n", dir));
    auto r = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("#mock status=503", false, "m"));
    BOOST_TEST(r.status == 502);
    BOOST_TEST(requests_of(a) + requests_of(b) == 1);  // 503 is not in retry_on
}

BOOST_AUTO_TEST_CASE(drain_mode_keeps_reading_after_the_client_left_and_bills_exact_usage) {
    mock_upstream a;
    const auto dir = make_temp_dir().string();
    {
        gateway_process gw(config(a.port(), closed_port(),
                                  "  m:\n    targets: [{provider: one, model: x}]\n",
                                  "  on_client_disconnect: drain\n  drain_limit: 30s\n", dir));
        {
            http_connection c(gw.port());
            c.send_request("POST", "/v1/chat/completions", auth_headers(),
                           chat_body("d #mock chunks=40 delay_ms=20", true, "m"));
            BOOST_TEST(c.read_head().status == 200);
            BOOST_TEST(!c.read_body_some().empty());
            c.close();
        }
        // The gateway reads the upstream to its end: the mock sees a completed stream.
        BOOST_TEST(a.wait_for("streams_completed", 1, 20000));
        BOOST_TEST(a.stats().find(R"("streams_aborted":0)") != std::string::npos);
    }
    const auto lines = jsonl_lines(dir + "/usage.jsonl");
    BOOST_REQUIRE(lines.size() == 1u);
    BOOST_TEST(lines[0].find(R"("usage_source":"upstream")") != std::string::npos);
    BOOST_TEST(lines[0].find(R"("completion_tokens":40)") != std::string::npos);
    BOOST_TEST(lines[0].find(R"("status":499)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(drain_mode_bills_a_non_streamed_answer_after_the_client_left) {
    mock_upstream a;
    const auto dir = make_temp_dir().string();
    {
        gateway_process gw(config(a.port(), closed_port(),
                                  "  m:\n    targets: [{provider: one, model: x}]\n",
                                  "  on_client_disconnect: drain\n  drain_limit: 30s\n", dir));
        {
            http_connection c(gw.port());
            c.send_request("POST", "/v1/chat/completions", auth_headers(),
                           chat_body("n #mock chunks=9 head_delay_ms=500", false, "m"));
            BOOST_TEST(a.wait_for("requests", 1));
            c.close();
        }
    }  // SIGTERM flushes the ledger
    const auto lines = jsonl_lines(dir + "/usage.jsonl");
    BOOST_REQUIRE(lines.size() == 1u);
    BOOST_TEST(lines[0].find(R"("usage_source":"upstream")") != std::string::npos);
    BOOST_TEST(lines[0].find(R"("completion_tokens":9)") != std::string::npos);
    BOOST_TEST(lines[0].find(R"("status":499)") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
