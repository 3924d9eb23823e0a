// Scale-out: several real gateway processes sharing one real redis-server (started by
// the fixture on its own port) in front of one mock upstream. Limits, budgets, leases,
// fail modes, NOSCRIPT and key propagation across instances.
#define BOOST_TEST_MODULE scale_integration
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <csignal>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/support/fixtures.hpp"
#include "tests/support/redis_server.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* admin_token = "admin-token-scale-0123456789";
constexpr const char* key_shared = "tg-test-key-shared-0123456789abcdef";

struct cluster_options {
    std::string state_extra;        // more lines under `state:` (2-space indented)
    std::string timeout = "500ms";  // state.timeout
    std::string key_terms = "    limits: {rpm: 50}\n";
    std::string policies = "[auth, rate_limit, budget, router, usage]";
    std::filesystem::path database;  // empty: one of each instance's own
    bool admin = false;
};

std::string cluster_config(std::uint16_t upstream, const redis_server& redis,
                           const cluster_options& c) {
    config_options o;
    o.policies = c.policies;
    o.keys_extra = std::string("  - id: shared\n    key: ") + key_shared + "\n" + c.key_terms;
    o.top_extra = "state:\n  backend: redis\n  redis_url: " + redis.url() +
                  "\n  timeout: " + c.timeout + "\n" + c.state_extra;
    // Each instance its own fresh ledger unless the test shares one.
    const auto db = c.database.empty() ? make_temp_dir() / "usage.db" : c.database;
    o.top_extra += "usage:\n  database: " + db.string() + "\n";
    if (c.admin)
        o.top_extra +=
            std::string("admin: {listen: \"127.0.0.1:0\", token: ") + admin_token + "}\n";
    return standard_config(upstream, o);
}

struct tally {
    std::mutex mu;
    std::map<int, int> by_status;
    std::map<std::string, int> by_code;
    void add(const http_response& r) {
        std::lock_guard lock(mu);
        ++by_status[r.status];
        const auto at = r.body.find("\"code\":\"");
        if (r.status != 200 && at != std::string::npos)
            ++by_code[r.body.substr(at + 8, r.body.find('"', at + 8) - at - 8)];
    }
};

// `total` requests spread round robin over the instances' ports, `parallel` at a time.
void burst(const std::vector<std::uint16_t>& ports, int total, int parallel, tally& t,
           const std::string& body = chat_body("hi")) {
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < parallel; ++i)
        threads.emplace_back([&] {
            for (int n; (n = next.fetch_add(1)) < total;) {
                try {
                    t.add(http_request(ports[static_cast<std::size_t>(n) % ports.size()], "POST",
                                       "/v1/chat/completions", auth_headers(key_shared), body));
                } catch (const std::exception&) {
                    std::lock_guard lock(t.mu);
                    ++t.by_status[-1];
                }
            }
        });
    for (auto& th : threads) th.join();
}

int status_of(std::uint16_t port, const std::string& key = key_shared,
              const std::string& body = chat_body("hi")) {
    return http_request(port, "POST", "/v1/chat/completions", auth_headers(key), body).status;
}

std::string metrics_of(gateway_process& g) {
    return http_request(g.admin_port(), "GET", "/metrics",
                        {{"authorization", std::string("Bearer ") + admin_token}})
        .body;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_AUTO_TEST_CASE(rpm_50_holds_across_three_instances_for_200_concurrent_requests) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    gateway_process a(cluster_config(mock.port(), redis, c));
    gateway_process b(cluster_config(mock.port(), redis, c));
    gateway_process d(cluster_config(mock.port(), redis, c));
    tally t;
    burst({a.port(), b.port(), d.port()}, 200, 200, t);  // all 200 at once
    BOOST_TEST(t.by_status[200] == 50);
    BOOST_TEST(t.by_status[429] == 150);
    BOOST_TEST(t.by_code["rate_limit_exceeded"] == 150);
    BOOST_TEST(mock.wait_for("requests", 50));
    // The window lives in Redis, under the key's hash tag (requests per 100-ms bucket).
    BOOST_TEST(redis.cli({"HGET", "tollgate:{shared}:r", "n"}) == "50");
    // Counted per 100-ms bucket: a few fields, not one per request.
    BOOST_TEST(std::stoi(redis.cli({"HLEN", "tollgate:{shared}:r"})) < 50);
}

BOOST_AUTO_TEST_CASE(a_refusal_by_the_shared_window_says_when_the_oldest_request_leaves_it) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.key_terms = "    limits: {rpm: 2, tpm: 1000000}\n";
    // Left by an instance of the version before the bucketed window (a sorted set under
    // 'w'): not in the way of this one (no WRONGTYPE).
    BOOST_TEST(redis.cli({"ZADD", "tollgate:{shared}:w", "1", "old-entry"}) == "1");
    gateway_process a(cluster_config(mock.port(), redis, c));
    gateway_process b(cluster_config(mock.port(), redis, c));
    BOOST_TEST(status_of(a.port()) == 200);
    BOOST_TEST(status_of(b.port()) == 200);
    const auto r = http_request(a.port(), "POST", "/v1/chat/completions", auth_headers(key_shared),
                                chat_body("hi"));
    BOOST_TEST(r.status == 429);
    // The first request leaves the window 60 s (plus at most its bucket's 100 ms) after it
    // was admitted; Retry-After is in whole seconds, rounded up.
    const int retry = std::stoi(r.header("retry-after").empty() ? "0" : r.header("retry-after"));
    BOOST_TEST(retry >= 59);
    BOOST_TEST(retry <= 61);
    BOOST_TEST(r.header("x-ratelimit-remaining-requests") == "0");
    BOOST_TEST(redis.cli({"HGET", "tollgate:{shared}:r", "n"}) == "2");  // the refusal adds none
    BOOST_TEST(std::stol(redis.cli({"PTTL", "tollgate:{shared}:r"})) > 60000);
}

BOOST_AUTO_TEST_CASE(tpm_reserves_the_estimate_across_instances_and_settles_to_the_usage) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.key_terms = "    limits: {tpm: 1000}\n";
    gateway_process a(cluster_config(mock.port(), redis, c));
    gateway_process b(cluster_config(mock.port(), redis, c));
    // Each reserves its prompt estimate + max_tokens 200 while in flight (all 20 at once:
    // the mock holds each answer 3 s, long past the burst), and uses 5 completion tokens.
    const std::string body =
        R"({"model":"gpt-4o-mini","max_tokens":200,"messages":[{"role":"user","content":"hi #mock chunks=5 head_delay_ms=3000"}]})";
    tally t;
    burst({a.port(), b.port()}, 20, 20, t, body);
    BOOST_TEST(t.by_status[200] >= 1);
    // Admitted while the held reservations are below 1000: 4 × (200 + prompt) < 1000 lets
    // a 5th in, the one-request overshoot; never a 6th.
    BOOST_TEST(t.by_status[200] <= 5);
    BOOST_TEST(t.by_status[429] == 20 - t.by_status[200]);
    // Settled to the real usage: the window now counts a few tokens per request.
    BOOST_TEST(poll_until([&] {
        const auto sum = redis.cli({"HGET", "tollgate:{shared}:r", "k"});
        return !sum.empty() && std::stol(sum) <= 20L * t.by_status[200];
    }));
    BOOST_TEST(status_of(b.port(), key_shared, body) == 200);
}

BOOST_AUTO_TEST_CASE(a_token_budget_shared_by_two_instances_is_not_overshot) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    const auto dir = make_temp_dir();
    c.database = dir / "usage.db";  // one ledger file: both instances on one host
    c.admin = true;
    // Each request reserves its prompt estimate + max_tokens 40 and uses 30 completion
    // tokens (#mock chunks=30), so the budget admits a bounded number of them.
    c.key_terms = "    budget: {tokens: 1000, period: day}\n";
    gateway_process a(cluster_config(mock.port(), redis, c));
    gateway_process b(cluster_config(mock.port(), redis, c));
    const std::string body =
        R"({"model":"gpt-4o-mini","max_tokens":40,"messages":[{"role":"user","content":"hi #mock chunks=30"}]})";
    tally t;
    burst({a.port(), b.port()}, 80, 16, t, body);
    BOOST_TEST(t.by_status[200] > 0);
    BOOST_TEST(t.by_code["budget_exceeded"] > 0);
    BOOST_TEST(t.by_status[200] + t.by_status[429] == 80);
    // What the ledger of record says was used, through either instance's admin API.
    const header_map admin{{"authorization", std::string("Bearer ") + admin_token}};
    std::string usage;
    BOOST_TEST(poll_until([&] {
        usage = http_request(a.admin_port(), "GET", "/admin/usage?key=shared", admin).body;
        return usage.find("\"requests\":" + std::to_string(t.by_status[200])) != std::string::npos;
    }));
    const auto at = usage.find("\"total_tokens\":");
    BOOST_REQUIRE(at != std::string::npos);
    const long used = std::stol(usage.substr(at + 15));
    const long one_request = 60;  // the largest single request's worth (estimate)
    BOOST_TEST(used <= 1000 + one_request, "used " << used);
    BOOST_TEST(http_request(b.admin_port(), "GET", "/admin/usage?key=shared", admin).body == usage);
}

BOOST_AUTO_TEST_CASE(a_killed_instance_holds_return_when_their_leases_expire) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.key_terms = "    limits: {concurrency: 3}\n    budget: {tokens: 1000000, period: day}\n";
    c.state_extra = "  lease: 3s\n";
    auto victim = std::make_unique<gateway_process>(cluster_config(mock.port(), redis, c));
    gateway_process survivor(cluster_config(mock.port(), redis, c));
    // Three slow requests hold every concurrency slot through the victim.
    std::vector<std::unique_ptr<http_connection>> held;
    for (int i = 0; i < 3; ++i) {
        held.push_back(std::make_unique<http_connection>(victim->port(), 30s));
        held.back()->send_request("POST", "/v1/chat/completions", auth_headers(key_shared),
                                  chat_body("slow #mock head_delay_ms=20000"));
    }
    BOOST_REQUIRE(mock.wait_for("requests", 3));
    BOOST_TEST(status_of(survivor.port()) == 429);
    BOOST_TEST(victim->stop(SIGKILL) == 128 + SIGKILL);
    victim.reset();
    // Nobody renews the victim's leases now: within the lease (3 s) the slots return.
    BOOST_TEST(redis.cli({"ZCARD", "tollgate:{shared}:l"}) == "3");
    BOOST_TEST(poll_until([&] { return status_of(survivor.port()) == 200; }, 20s, 200ms));
    // The victim's budget holds went with its leases: only the survivor's settled spend.
    BOOST_TEST(poll_until([&] {
        const auto h = redis.cli({"HGET", "tollgate:{shared}:f", "#rtok"});
        return h.empty() || h == "0";
    }));
    held.clear();
}

BOOST_AUTO_TEST_CASE(leases_of_a_live_instance_are_renewed_past_the_lease_time) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.key_terms = "    limits: {concurrency: 1}\n";
    c.state_extra = "  lease: 3s\n";
    gateway_process a(cluster_config(mock.port(), redis, c));
    gateway_process b(cluster_config(mock.port(), redis, c));
    http_connection slow(a.port(), 30s);
    slow.send_request("POST", "/v1/chat/completions", auth_headers(key_shared),
                      chat_body("slow #mock head_delay_ms=7000"));
    BOOST_REQUIRE(mock.wait_for("requests", 1));
    // Well past one lease, the request is still in flight and still holds its slot.
    const auto until = std::chrono::steady_clock::now() + 5s;
    int refusals = 0;
    while (std::chrono::steady_clock::now() < until) {
        BOOST_TEST_REQUIRE(status_of(b.port()) == 429);
        ++refusals;
        std::this_thread::sleep_for(500ms);  // pacing the probe, not synchronisation
    }
    BOOST_TEST(refusals >= 5);
    BOOST_TEST(slow.read_response().status == 200);
    BOOST_TEST(poll_until([&] { return status_of(b.port()) == 200; }));
}

BOOST_AUTO_TEST_CASE(redis_down_fail_closed_refuses_with_503_and_recovers) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.admin = true;
    gateway_process a(cluster_config(mock.port(), redis, c));
    BOOST_TEST(status_of(a.port()) == 200);
    redis.stop();
    const auto r = http_request(a.port(), "POST", "/v1/chat/completions", auth_headers(key_shared),
                                chat_body("hi"));
    BOOST_TEST(r.status == 503);
    BOOST_TEST(r.body.find("\"code\":\"state_unavailable\"") != std::string::npos);
    BOOST_TEST(r.body.find("server_error") != std::string::npos);
    BOOST_TEST(http_request(a.port(), "GET", "/healthz").status == 200);  // never on Redis
    BOOST_TEST(http_request(a.port(), "GET", "/readyz").status == 503);
    // Keys without limits or budget do not need the store.
    BOOST_TEST(status_of(a.port(), client_key_a) == 200);
    const auto m = metrics_of(a);
    BOOST_TEST(m.find("tollgate_state_up 0") != std::string::npos);
    BOOST_TEST(m.find("tollgate_state_redis_commands_total ") != std::string::npos);
    BOOST_TEST(m.find("tollgate_state_redis_writes_total ") != std::string::npos);
    BOOST_TEST(m.find("tollgate_state_failures_handled_total{mode=\"closed\"} 1") !=
               std::string::npos);
    redis.start();
    BOOST_TEST(poll_until([&] { return status_of(a.port()) == 200; }, 15s, 50ms));
    // Ready again once its own connection is back too (the admission that passed may
    // have gone through a worker's lane that reconnected first).
    BOOST_TEST(poll_until([&] { return http_request(a.port(), "GET", "/readyz").status == 200; },
                          15s, 50ms));
    BOOST_TEST(a.process().output().find("reconnecting") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_hung_redis_costs_a_request_at_most_state_timeout_then_503) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.admin = true;
    c.timeout = "300ms";
    gateway_process a(cluster_config(mock.port(), redis, c));
    BOOST_TEST(status_of(a.port()) == 200);
    redis.pause();  // connections stay open; nothing is answered
    // The client gives up after 3 s, ten times state.timeout: the gateway answers first.
    http_connection conn(a.port(), 3s);
    const auto r =
        conn.request("POST", "/v1/chat/completions", auth_headers(key_shared), chat_body("hi"));
    BOOST_TEST(r.status == 503);
    BOOST_TEST(r.body.find("state_unavailable") != std::string::npos);
    BOOST_TEST(metrics_of(a).find("tollgate_state_errors_total{reason=\"timeout\"} 1") !=
               std::string::npos);
    redis.resume();
    BOOST_TEST(poll_until([&] { return status_of(a.port()) == 200; }, 15s, 50ms));
}

BOOST_AUTO_TEST_CASE(redis_down_fail_open_applies_per_instance_limits) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.key_terms = "    limits: {rpm: 3}\n";
    c.state_extra = "  fail_mode: open\n";
    c.admin = true;
    gateway_process a(cluster_config(mock.port(), redis, c));
    redis.stop();
    // The instance's own limiter: rpm 3 still holds, per instance.
    tally t;
    burst({a.port()}, 5, 1, t);
    BOOST_TEST(t.by_status[200] == 3);
    BOOST_TEST(t.by_status[429] == 2);
    BOOST_TEST(http_request(a.port(), "GET", "/readyz").status == 200);
    BOOST_TEST(metrics_of(a).find("tollgate_state_failures_handled_total{mode=\"open\"} 5") !=
               std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_restarted_instance_does_not_reset_the_shared_budget) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    const auto dir = make_temp_dir();
    c.database = dir / "usage.db";
    c.key_terms = "    budget: {tokens: 200, period: day}\n";
    const std::string body =
        R"({"model":"gpt-4o-mini","max_tokens":40,"messages":[{"role":"user","content":"hi #mock chunks=30"}]})";
    gateway_process b(cluster_config(mock.port(), redis, c));
    {
        gateway_process a(cluster_config(mock.port(), redis, c));
        int admitted = 0;
        for (int i = 0; i < 20 && status_of(a.port(), key_shared, body) == 200; ++i) ++admitted;
        BOOST_TEST(admitted >= 3);
        BOOST_TEST(status_of(b.port(), key_shared, body) == 429);
    }  // a stops (and drains)
    gateway_process a2(cluster_config(mock.port(), redis, c));
    const auto r =
        http_request(a2.port(), "POST", "/v1/chat/completions", auth_headers(key_shared), body);
    BOOST_TEST(r.status == 429);
    BOOST_TEST(r.body.find("budget_exceeded") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(spend_admitted_by_the_fallback_reaches_redis_when_it_returns) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.key_terms = "    budget: {tokens: 1000000, period: day}\n";
    c.state_extra = "  fail_mode: open\n";
    c.timeout = "200ms";
    const std::string body =
        R"({"model":"gpt-4o-mini","max_tokens":40,"messages":[{"role":"user","content":"hi #mock chunks=30"}]})";
    gateway_process a(cluster_config(mock.port(), redis, c));
    BOOST_TEST(status_of(a.port(), key_shared, body) == 200);
    std::string before;
    BOOST_TEST(poll_until([&] {
        before = redis.cli({"HGET", "tollgate:{shared}:b", "tok"});
        return !before.empty() && before != "0";
    }));
    redis.pause();
    for (int i = 0; i < 3; ++i) BOOST_TEST(status_of(a.port(), key_shared, body) == 200);
    redis.resume();
    // The three fallback requests' spend (31 tokens each) is added once Redis answers.
    BOOST_TEST(poll_until(
                   [&] {
                       const auto now = redis.cli({"HGET", "tollgate:{shared}:b", "tok"});
                       return !now.empty() && std::stol(now) >= std::stol(before) + 3 * 30;
                   },
                   20s, 50ms),
               redis.cli({"HGETALL", "tollgate:{shared}:b"}));
}

// total_tokens of an answer's usage (0 if none).
long total_tokens_of(const std::string& body) {
    const auto at = body.find("\"total_tokens\":");
    return at == std::string::npos ? 0 : std::stol(body.substr(at + 15));
}

double metric_of(gateway_process& g, const std::string& name) {
    const std::string m = metrics_of(g);
    const auto at = m.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stod(m.substr(at + name.size() + 2));
}

BOOST_AUTO_TEST_CASE(a_long_outage_keeps_running_requests_slots_and_counts_their_spend_once) {
    // SPEC "Shared spend is never lost": Redis stopped for 3 leases while requests finish
    // under fail_mode open. The settles wait in the outbox (past a lease: they used to be
    // given up then) and reach Redis exactly once when it returns, although the ones sent
    // into the stopped server run when it wakes and are sent again; and the slot of a
    // request still running on the other instance is not freed by the outage.
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.key_terms = "    limits: {concurrency: 1}\n    budget: {tokens: 1000000, period: day}\n";
    c.state_extra = "  fail_mode: open\n  lease: 3s\n";
    c.timeout = "200ms";
    c.admin = true;
    gateway_process a(cluster_config(mock.port(), redis, c));
    gateway_process b(cluster_config(mock.port(), redis, c));
    const std::string quick =
        R"({"model":"gpt-4o-mini","max_tokens":40,"messages":[{"role":"user","content":"hi #mock chunks=30"}]})";
    long expected = 0;
    auto warm =
        http_request(b.port(), "POST", "/v1/chat/completions", auth_headers(key_shared), quick);
    BOOST_TEST_REQUIRE(warm.status == 200);
    expected += total_tokens_of(warm.body);
    // The warm request's slot is free once its settle reached Redis (settles are sent
    // after the answer): until then A would refuse the next request with 429.
    BOOST_TEST_REQUIRE(poll_until([&] {
        return metric_of(b, "tollgate_state_settles_total{result=\"sent\"}") >= 1 &&
               metric_of(b, "tollgate_state_settle_backlog") == 0;
    }));

    // A request on A that runs through the whole outage, holding the key's one slot.
    http_connection slow(a.port(), 60s);
    slow.send_request("POST", "/v1/chat/completions", auth_headers(key_shared),
                      chat_body("slow #mock head_delay_ms=14000"));
    BOOST_REQUIRE(mock.wait_for("requests", 2));
    BOOST_TEST(status_of(b.port(), key_shared, quick) == 429);

    redis.pause();
    // Admitted by B's own limits meanwhile; their spend waits in B's outbox.
    for (int i = 0; i < 3; ++i) {
        auto r =
            http_request(b.port(), "POST", "/v1/chat/completions", auth_headers(key_shared), quick);
        BOOST_TEST(r.status == 200);
        expected += total_tokens_of(r.body);
    }
    BOOST_TEST(poll_until([&] { return metric_of(b, "tollgate_state_settle_backlog") == 3; }));
    std::this_thread::sleep_for(9500ms);  // the outage itself: three leases
    BOOST_TEST(metric_of(b, "tollgate_state_settle_backlog") == 3);
    redis.resume();

    // Once B reaches Redis again, A's request (still running) still holds the slot.
    BOOST_TEST(poll_until([&] { return metric_of(b, "tollgate_state_up") == 1; }, 20s, 20ms));
    BOOST_TEST(status_of(b.port(), key_shared, quick) == 429);
    BOOST_TEST(poll_until([&] { return metric_of(a, "tollgate_state_up") == 1; }, 20s, 20ms));
    BOOST_TEST(poll_until([&] { return metric_of(a, "tollgate_state_lease_renewals_total") > 0; }));
    BOOST_TEST(status_of(b.port(), key_shared, quick) == 429);

    const auto done = slow.read_response();
    BOOST_TEST(done.status == 200);
    expected += total_tokens_of(done.body);
    BOOST_TEST(poll_until([&] {
        return metric_of(a, "tollgate_state_settle_backlog") == 0 &&
               metric_of(b, "tollgate_state_settle_backlog") == 0;
    }));
    // Every request's spend, once.
    BOOST_TEST(
        poll_until([&] {
            return redis.cli({"HGET", "tollgate:{shared}:b", "tok"}) == std::to_string(expected);
        }),
        redis.cli({"HGETALL", "tollgate:{shared}:b"}) << " expected " << expected);
    BOOST_TEST(metric_of(b, "tollgate_state_settles_total{result=\"dropped\"}") <= 0);
}

BOOST_AUTO_TEST_CASE(a_client_sending_one_request_after_another_never_meets_its_concurrency_cap) {
    // A request's settle reaches Redis after its client has the answer (it may linger a
    // few ms, or wait for a renewal), so the next request's admission can get there
    // first. Its slot is free all the same: the instance names its ended requests whose
    // settles are on their way, and Redis does not count them in flight. (Concurrency 3:
    // the first settle lingers, the second is sent at once; the third request used to
    // find both still in flight.)
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.key_terms = "    limits: {concurrency: 3}\n";
    gateway_process a(cluster_config(mock.port(), redis, c));
    int ok = 0;
    for (int i = 0; i < 100; ++i) ok += status_of(a.port()) == 200;
    BOOST_TEST(ok == 100);
    // The cap still holds for requests that are in flight.
    std::vector<std::unique_ptr<http_connection>> slow;
    for (int i = 0; i < 3; ++i) {
        slow.push_back(std::make_unique<http_connection>(a.port(), 30s));
        slow.back()->send_request("POST", "/v1/chat/completions", auth_headers(key_shared),
                                  chat_body("slow #mock head_delay_ms=3000"));
    }
    BOOST_REQUIRE(mock.wait_for("requests", 103));
    BOOST_TEST(status_of(a.port()) == 429);
    for (auto& s : slow) BOOST_TEST(s->read_response().status == 200);
}

BOOST_AUTO_TEST_CASE(a_client_sending_one_request_after_another_is_decided_on_what_it_used) {
    // Until a request's settle reaches Redis, Redis holds its estimate (here above what it
    // uses). The instance names its ended requests with what they used, so a client
    // that sends one request after another gets exactly the requests its budget pays for.
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.key_terms = "    budget: {tokens: 600, period: day}\n";
    gateway_process a(cluster_config(mock.port(), redis, c));
    const std::string body =
        R"({"model":"gpt-4o-mini","max_tokens":200,"messages":[{"role":"user","content":"hi #mock chunks=30"}]})";
    auto first =
        http_request(a.port(), "POST", "/v1/chat/completions", auth_headers(key_shared), body);
    BOOST_TEST_REQUIRE(first.status == 200);
    const long used = total_tokens_of(first.body);
    BOOST_TEST_REQUIRE(used > 0);
    int admitted = 1;
    while (admitted < 100 && status_of(a.port(), key_shared, body) == 200) ++admitted;
    // Admitted while the spend was below the budget: ceil(600 / used).
    BOOST_TEST(admitted == (600 + used - 1) / used);
}

BOOST_AUTO_TEST_CASE(a_settle_marks_its_request_settled_in_redis_only_after_an_unanswered_renewal) {
    // The settled set keeps a renewal that arrives after its request's settle from
    // bringing the lease back. Settles wait while a renewal of their key is on its way,
    // so only a renewal that went unanswered (it may still run later) needs the mark.
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.key_terms = "    limits: {concurrency: 1}\n";
    c.state_extra = "  fail_mode: open\n  lease: 3s\n";  // renewals every second
    c.timeout = "200ms";
    c.admin = true;
    gateway_process a(cluster_config(mock.port(), redis, c));
    // Each request's settle reaches Redis before the next one: the sets checked below
    // then hold nothing of them.
    for (int i = 0; i < 3; ++i) {
        BOOST_TEST(status_of(a.port()) == 200);
        BOOST_TEST(poll_until([&] {
            return metric_of(a, "tollgate_state_settles_total{result=\"sent\"}") >= i + 1 &&
                   metric_of(a, "tollgate_state_settle_backlog") == 0;
        }));
    }
    BOOST_TEST(redis.cli({"ZCARD", "tollgate:{shared}:l"}) == "0");
    BOOST_TEST(redis.cli({"EXISTS", "tollgate:{shared}:s"}) == "0");

    // A request running while Redis is stopped: renewals naming it go unanswered.
    http_connection slow(a.port(), 30s);
    slow.send_request("POST", "/v1/chat/completions", auth_headers(key_shared),
                      chat_body("slow #mock head_delay_ms=4500"));
    BOOST_REQUIRE(mock.wait_for("requests", 4));
    const double renewals = metric_of(a, "tollgate_state_lease_renewals_total");
    redis.pause();
    // Two renewal calls: at least one went into the stopped server.
    BOOST_TEST(poll_until(
        [&] { return metric_of(a, "tollgate_state_lease_renewals_total") >= renewals + 2; }));
    const auto done = slow.read_response();
    BOOST_TEST(done.status == 200);
    BOOST_TEST(poll_until([&] { return metric_of(a, "tollgate_state_settle_backlog") == 1; }));
    redis.resume();
    BOOST_TEST(
        poll_until([&] { return metric_of(a, "tollgate_state_settle_backlog") == 0; }, 20s, 20ms));
    BOOST_TEST(redis.cli({"ZCARD", "tollgate:{shared}:s"}) == "1");
    BOOST_TEST(redis.cli({"ZCARD", "tollgate:{shared}:l"}) == "0");
    BOOST_TEST(status_of(a.port()) == 200);  // the key's one slot is free
}

BOOST_AUTO_TEST_CASE(an_instance_that_stops_sends_its_waiting_settles_to_redis_first) {
    // Spend in the outbox when SIGTERM comes (here: Redis stopped meanwhile) is sent
    // before the instance exits, within a bound: Redis's figure never loses it.
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.key_terms = "    budget: {tokens: 1000000, period: day}\n";
    c.state_extra = "  fail_mode: open\n";
    c.timeout = "1s";  // the drain waits up to 4 s: time to reconnect after the pause
    c.admin = true;
    gateway_process a(cluster_config(mock.port(), redis, c));
    const std::string quick =
        R"({"model":"gpt-4o-mini","max_tokens":40,"messages":[{"role":"user","content":"hi #mock chunks=30"}]})";
    auto r =
        http_request(a.port(), "POST", "/v1/chat/completions", auth_headers(key_shared), quick);
    BOOST_TEST_REQUIRE(r.status == 200);
    long expected = total_tokens_of(r.body);
    BOOST_TEST(poll_until([&] {
        return redis.cli({"HGET", "tollgate:{shared}:b", "tok"}) == std::to_string(expected);
    }));
    redis.pause();
    r = http_request(a.port(), "POST", "/v1/chat/completions", auth_headers(key_shared), quick);
    BOOST_TEST_REQUIRE(r.status == 200);  // by the instance's own limits (fail_mode open)
    expected += total_tokens_of(r.body);
    BOOST_TEST(poll_until([&] { return metric_of(a, "tollgate_state_settle_backlog") == 1; }));
    std::thread resumer([&] {
        a.process().wait_for_line("settles to Redis before stopping", 60s);
        redis.resume();
    });
    BOOST_TEST(a.stop(SIGTERM) == 0);
    resumer.join();
    BOOST_TEST(redis.cli({"HGET", "tollgate:{shared}:b", "tok"}) == std::to_string(expected));
}

BOOST_AUTO_TEST_CASE(noscript_after_a_script_flush_or_a_redis_restart_is_handled) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    gateway_process a(cluster_config(mock.port(), redis, c));
    BOOST_TEST(status_of(a.port()) == 200);
    BOOST_TEST(redis.cli({"SCRIPT", "FLUSH"}) == "OK");
    BOOST_TEST(status_of(a.port()) == 200);  // EVALSHA → NOSCRIPT → EVAL, same request
    BOOST_TEST(redis.cli({"HGET", "tollgate:{shared}:r", "n"}) == "2");
    redis.stop();
    redis.start();
    BOOST_TEST(poll_until([&] { return status_of(a.port()) == 200; }, 15s, 50ms));
    BOOST_TEST(redis.cli({"HGET", "tollgate:{shared}:r", "n"}) == "1");
}

BOOST_AUTO_TEST_CASE(admissions_go_out_on_each_workers_own_redis_connection) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.admin = true;
    c.key_terms = "    limits: {rpm: 100000}\n";
    gateway_process a(cluster_config(mock.port(), redis, c));
    const auto counter = [&](const std::string& name) {
        const std::string m = metrics_of(a);
        const auto at = m.find("\n" + name + " ");
        return at == std::string::npos ? -1L : std::stol(m.substr(at + name.size() + 2));
    };
    // A worker opens its lane on its first admission (which goes by the Redis client's
    // thread meanwhile). Connections alternate between the two workers: two requests in a
    // row on lanes means both lanes are up.
    bool both = false;
    for (int i = 0; i < 100 && !both; ++i) {
        const long before = counter("tollgate_state_redis_lane_commands_total");
        BOOST_REQUIRE(status_of(a.port()) == 200);
        BOOST_REQUIRE(status_of(a.port()) == 200);
        both = counter("tollgate_state_redis_lane_commands_total") - before == 2;
        if (!both) std::this_thread::sleep_for(20ms);  // pacing the probe while a lane connects
    }
    BOOST_REQUIRE(both);
    BOOST_TEST(counter("tollgate_state_redis_lanes_total") == 2);  // server.threads: 2
    // A script flush seen on a lane: NOSCRIPT, then EVAL on the same lane.
    BOOST_TEST(redis.cli({"SCRIPT", "FLUSH"}) == "OK");
    const long before = counter("tollgate_state_redis_lane_commands_total");
    for (int i = 0; i < 4; ++i) BOOST_TEST(status_of(a.port()) == 200);
    BOOST_TEST(counter("tollgate_state_redis_lane_commands_total") - before == 5);
    BOOST_TEST(counter("tollgate_state_admissions_total{result=\"admitted\"}") >= 6);
}

BOOST_AUTO_TEST_CASE(requests_arriving_together_share_an_admission_call_and_stay_exact) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.admin = true;
    c.key_terms = "    limits: {rpm: 40}\n    budget: {tokens: 100000000, period: month}\n";
    c.timeout = "3s";  // 160 at once on a busy test machine: no admission may time out
    gateway_process a(cluster_config(mock.port(), redis, c));
    const auto counter = [&](const std::string& name) { return metric_of(a, name); };
    // Bursts of 160 at once: a worker's requests that arrive together go to Redis in one
    // script call, decided one by one inside it, so the limit is exact all the same. One
    // burst almost always shares calls; a few more make it certain.
    tally t;
    int sent = 0;
    for (int round = 0; round < 5; ++round) {
        burst({a.port()}, 160, 160, t);
        sent += 160;
        if (counter("tollgate_state_admission_batches_total") < sent) break;
    }
    BOOST_TEST(t.by_status[200] == 40);
    BOOST_TEST(t.by_status[429] == sent - 40);
    BOOST_TEST(counter("tollgate_state_admissions_total{result=\"admitted\"}") == 40);
    BOOST_TEST(counter("tollgate_state_admissions_total{result=\"refused\"}") == sent - 40);
    const double batches = counter("tollgate_state_admission_batches_total");
    BOOST_TEST_MESSAGE("admission script calls: " << batches << " for " << sent << " requests");
    BOOST_TEST(batches > 0);
    BOOST_TEST(batches < sent);
    BOOST_TEST(redis.cli({"HGET", "tollgate:{shared}:r", "n"}) == "40");
    // Every hold the batches took is given back by the settles: nothing held, 40 spent.
    BOOST_TEST(poll_until([&] {
        return redis.cli({"HGET", "tollgate:{shared}:f", "#rtok"}) == "0" &&
               redis.cli({"HLEN", "tollgate:{shared}:f"}) == "2";
    }));
    BOOST_TEST(redis.cli({"ZCARD", "tollgate:{shared}:l"}) == "0");
    BOOST_TEST(std::stol(redis.cli({"HGET", "tollgate:{shared}:b", "tok"})) > 0);
}

BOOST_AUTO_TEST_CASE(a_budget_is_reseeded_from_the_ledger_when_redis_lost_it) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    const auto dir = make_temp_dir();
    c.database = dir / "usage.db";
    c.key_terms = "    budget: {tokens: 100000, period: month}\n";
    c.admin = true;
    gateway_process a(cluster_config(mock.port(), redis, c));
    const std::string body =
        R"({"model":"gpt-4o-mini","max_tokens":40,"messages":[{"role":"user","content":"hi #mock chunks=30"}]})";
    for (int i = 0; i < 3; ++i) BOOST_TEST(status_of(a.port(), key_shared, body) == 200);
    // The three records are durable in the ledger (what the seed will read).
    const header_map admin{{"authorization", std::string("Bearer ") + admin_token}};
    BOOST_TEST(poll_until([&] {
        return http_request(a.admin_port(), "GET", "/admin/usage?key=shared", admin)
                   .body.find("\"requests\":3") != std::string::npos;
    }));
    std::string spent;
    BOOST_TEST(poll_until([&] {
        spent = redis.cli({"HGET", "tollgate:{shared}:b", "tok"});
        return spent != "" && spent != "0";
    }));
    BOOST_TEST(redis.cli({"FLUSHALL"}) == "OK");
    BOOST_TEST(status_of(a.port(), key_shared, body) == 200);
    // Seeded from the ledger (the 3 records) + the new request's spend once settled.
    const long before = std::stol(spent);
    BOOST_TEST(poll_until([&] {
        const auto now = redis.cli({"HGET", "tollgate:{shared}:b", "tok"});
        return !now.empty() && std::stol(now) >= before + before / 3;
    }));
}

BOOST_AUTO_TEST_CASE(admin_key_changes_reach_the_other_instance_through_redis) {
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    const auto dir = make_temp_dir();
    c.database = dir / "usage.db";  // the key store both instances read
    c.admin = true;
    gateway_process a(cluster_config(mock.port(), redis, c));
    gateway_process b(cluster_config(mock.port(), redis, c));
    const header_map admin{{"authorization", std::string("Bearer ") + admin_token},
                           {"content-type", "application/json"}};
    const auto created = http_request(a.admin_port(), "POST", "/admin/keys", admin,
                                      R"({"id":"late","limits":{"rpm":5}})");
    BOOST_REQUIRE(created.status == 201);
    const auto at = created.body.find("\"key\":\"");
    const auto secret = created.body.substr(at + 7, created.body.find('"', at + 7) - at - 7);
    BOOST_TEST(poll_until([&] { return status_of(b.port(), secret) == 200; }, 5s));
    // Told through Redis (not only found by the store's own 1-s poll).
    BOOST_TEST(b.process().wait_for_line("keys changed on an instance", 5s).has_value());
    BOOST_TEST(http_request(a.admin_port(), "DELETE", "/admin/keys/late", admin).status == 204);
    BOOST_TEST(poll_until([&] { return status_of(b.port(), secret) == 401; }, 5s));
    BOOST_TEST(b.process().output().find(secret) == std::string::npos);
    BOOST_TEST(a.process().output().find(secret) == std::string::npos);
}

BOOST_AUTO_TEST_CASE(keys_travel_through_redis_between_instances_with_ledgers_of_their_own) {
    // SPEC "Keys across instances": created, changed and deleted on A, acting on B within a
    // second although each has its own SQLite file; a config key revoked on A is refused
    // on B and C, and still after restarting all three (and Redis emptied meanwhile: the
    // instances' databases put it back).
    redis_server redis;
    mock_upstream mock;
    cluster_options c;
    c.admin = true;
    c.key_terms = "";
    c.policies = "[auth, ip_allow, rate_limit, budget, router, usage]";
    std::vector<std::filesystem::path> dbs;
    std::vector<std::unique_ptr<gateway_process>> gw;
    for (int i = 0; i < 3; ++i) {
        dbs.push_back(make_temp_dir() / "usage.db");
        c.database = dbs.back();
        gw.push_back(std::make_unique<gateway_process>(cluster_config(mock.port(), redis, c)));
    }
    auto& a = *gw[0];
    auto& b = *gw[1];
    const header_map admin{{"authorization", std::string("Bearer ") + admin_token},
                           {"content-type", "application/json"}};
    const auto created = http_request(a.admin_port(), "POST", "/admin/keys", admin,
                                      R"({"id":"roaming","limits":{"rpm":100}})");
    BOOST_REQUIRE(created.status == 201);
    const auto at = created.body.find("\"key\":\"");
    const auto secret = created.body.substr(at + 7, created.body.find('"', at + 7) - at - 7);
    BOOST_TEST(poll_until([&] { return status_of(b.port(), secret) == 200; }, 1500ms, 20ms));
    // Changed on A (only gpt-4o-mini... then no model at all): acts on B.
    BOOST_TEST(http_request(a.admin_port(), "PATCH", "/admin/keys/roaming", admin,
                            R"({"models":["other-model"]})")
                   .status == 200);
    BOOST_TEST(poll_until([&] { return status_of(b.port(), secret) == 403; }, 1500ms, 20ms));
    // Changed on B (a key B's own database never held): acts on A.
    BOOST_TEST(http_request(b.admin_port(), "PATCH", "/admin/keys/roaming", admin,
                            R"({"models":["gpt-4o-mini"]})")
                   .status == 200);
    BOOST_TEST(poll_until([&] { return status_of(a.port(), secret) == 200; }, 1500ms, 20ms));
    // Address ranges travel too: restricted to 10/8 on A, refused from 127.0.0.1 on B.
    BOOST_TEST(http_request(a.admin_port(), "PATCH", "/admin/keys/roaming", admin,
                            R"({"allowed_cidrs":["10.0.0.0/8"]})")
                   .status == 200);
    BOOST_TEST(poll_until([&] { return status_of(b.port(), secret) == 403; }, 1500ms, 20ms));
    BOOST_TEST(http_request(a.admin_port(), "PATCH", "/admin/keys/roaming", admin,
                            R"({"allowed_cidrs":["127.0.0.0/8"]})")
                   .status == 200);
    BOOST_TEST(poll_until([&] { return status_of(b.port(), secret) == 200; }, 1500ms, 20ms));
    BOOST_TEST(http_request(a.admin_port(), "DELETE", "/admin/keys/roaming", admin).status == 204);
    BOOST_TEST(poll_until([&] { return status_of(b.port(), secret) == 401; }, 1500ms, 20ms));
    // C hears of the deletion on its own subscription, not necessarily by the time B did.
    BOOST_TEST(poll_until([&] { return status_of(gw[2]->port(), secret) == 401; }, 1500ms, 20ms));

    // The config key `shared` revoked on A: refused everywhere.
    BOOST_TEST(status_of(gw[2]->port()) == 200);
    BOOST_TEST(http_request(a.admin_port(), "DELETE", "/admin/keys/shared", admin).status == 204);
    for (auto& g : gw)
        BOOST_TEST(poll_until([&] { return status_of(g->port()) == 401; }, 1500ms, 20ms));

    // Restart all three on their own files, with Redis emptied meanwhile.
    for (auto& g : gw) g.reset();
    BOOST_TEST(redis.cli({"FLUSHALL"}) == "OK");
    for (int i = 0; i < 3; ++i) {
        c.database = dbs[static_cast<std::size_t>(i)];
        gw[static_cast<std::size_t>(i)] =
            std::make_unique<gateway_process>(cluster_config(mock.port(), redis, c));
    }
    for (auto& g : gw) {
        BOOST_TEST(status_of(g->port()) == 401);
        BOOST_TEST(status_of(g->port(), secret) == 401);
    }
    // A's database put the revocation back into Redis.
    BOOST_TEST(poll_until([&] { return redis.cli({"HLEN", "tollgate:{keys}:data"}) != "0"; }));
    for (auto& g : gw) {
        BOOST_TEST(g->process().output().find(secret) == std::string::npos);
        BOOST_TEST(g->process().output().find(key_shared) == std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(a_wrong_redis_password_is_an_outage_and_never_logged) {
    redis_server redis;
    BOOST_TEST(redis.cli({"CONFIG", "SET", "requirepass", "right-pass-123"}) == "OK");
    mock_upstream mock;
    config_options o;
    o.policies = "[auth, rate_limit, router]";
    o.keys_extra =
        std::string("  - id: shared\n    key: ") + key_shared + "\n    limits: {rpm: 5}\n";
    o.top_extra = "state:\n  backend: redis\n  redis_url: redis://:wrong-pass-456@127.0.0.1:" +
                  std::to_string(redis.port()) + "/0\n";
    gateway_process bad(standard_config(mock.port(), o));
    BOOST_TEST(status_of(bad.port()) == 503);
    BOOST_TEST(bad.process().output().find("wrong-pass-456") == std::string::npos);
    BOOST_TEST(bad.process().output().find("WRONGPASS") != std::string::npos);
    o.top_extra = "state:\n  backend: redis\n  redis_url: redis://:right-pass-123@127.0.0.1:" +
                  std::to_string(redis.port()) + "/0\n";
    gateway_process good(standard_config(mock.port(), o));
    BOOST_TEST(status_of(good.port()) == 200);
    BOOST_TEST(good.process().output().find("right-pass-123") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(rediss_verifies_the_server_certificate) {
    const auto certs = make_test_certs();
    redis_server redis(certs);
    mock_upstream mock;
    config_options o;
    o.policies = "[auth, rate_limit, router]";
    o.keys_extra =
        std::string("  - id: shared\n    key: ") + key_shared + "\n    limits: {rpm: 5}\n";
    // Trusting the test CA: admitted through Redis over TLS.
    o.top_extra = "state:\n  backend: redis\n  redis_url: " + redis.url() +
                  "\n  tls_ca_file: " + certs.ca.string() + "\n";
    {
        gateway_process good(standard_config(mock.port(), o));
        BOOST_TEST(status_of(good.port()) == 200);
        BOOST_TEST(redis.cli({"HGET", "tollgate:{shared}:r", "n"}) == "1");
    }
    // Trusting only the system's CAs: the handshake fails, Redis counts as down.
    o.top_extra = "state:\n  backend: redis\n  redis_url: " + redis.url() + "\n";
    gateway_process bad(standard_config(mock.port(), o));
    BOOST_TEST(status_of(bad.port()) == 503);
    BOOST_TEST(bad.process().output().find("TLS handshake failed") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
