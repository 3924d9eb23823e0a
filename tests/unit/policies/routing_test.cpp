// Full routing: strategies, retries, fallbacks, cooldowns, retry-after, least_busy and
// lowest_latency, driven through the router's hooks as the proxy drives them.
#define BOOST_TEST_MODULE routing
#include <boost/test/unit_test.hpp>

#include <map>
#include <string>

#include "config/loader.hpp"
#include "policies/router/router_policy.hpp"

using namespace tollgate;
using policies::router_policy;
using kind = core::attempt_kind;

namespace {

std::string yaml(const std::string& strategy, const std::string& extra = "") {
    return R"(
providers:
  a: {kind: openai, base_url: "http://127.0.0.1:1/v1"}
  b: {kind: openai, base_url: "http://127.0.0.1:2/v1"}
  c: {kind: openai, base_url: "http://127.0.0.1:3/v1"}
models:
  main:
    targets:
      - {provider: a, model: ma, weight: 3}
      - {provider: b, model: mb, weight: 1}
    fallbacks: [backup]
  backup:
    targets: [{provider: c, model: mc}]
routing:
  strategy: )" +
           strategy + R"(
  retries: 1
  cooldown_after_failures: 2
  cooldown: 30s
)" + extra;
}

struct fixture {
    explicit fixture(const std::string& strategy = "weighted") {
        auto r = config::load_config_text(yaml(strategy), "t.yaml",
                                          [](std::string_view) { return std::nullopt; });
        BOOST_TEST_REQUIRE(r.errors.empty(), (r.errors.empty() ? "" : r.errors[0].text()));
        cfg = std::move(*r.config);
        router = std::make_unique<router_policy>(cfg);
    }
    config::gateway_config cfg;
    std::unique_ptr<router_policy> router;
    int counter = 0;

    std::vector<core::route_target> plan() {
        core::request_context ctx;
        ctx.ep = core::endpoint::chat_completions;
        ctx.req.model = "main";
        ctx.request_id = "req-" + std::to_string(counter++);
        BOOST_TEST((router->on_request(ctx) == core::verdict::next));
        return ctx.plan;
    }
    void attempt(const core::route_target& t, kind how,
                 std::optional<std::chrono::milliseconds> retry_after = {},
                 std::chrono::milliseconds head = std::chrono::milliseconds(10)) {
        core::request_context ctx;
        router->on_attempt_start(ctx, t);
        core::attempt_result r;
        r.error.kind = how;
        if (how != kind::ok) r.error.source = core::attempt_source::head;
        r.error.status = how == kind::status ? 503 : 0;
        r.error.retry_after = retry_after;
        r.time_to_head = head;
        router->on_attempt_end(ctx, t, r);
    }
    core::route_target target(const std::string& upstream) {
        for (int i = 0; i < 100; ++i)
            for (const auto& t : plan())
                if (t.upstream_model == upstream) return t;
        BOOST_FAIL("no target " << upstream);
        return {};
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(weighted_split_follows_the_weights_then_retries_the_other_then_falls_back) {
    fixture f;
    std::map<std::string, int> first;
    for (int i = 0; i < 4000; ++i) {
        const auto p = f.plan();
        BOOST_REQUIRE(p.size() == 3u);
        BOOST_TEST(p[0].upstream_model != p[1].upstream_model);  // the retry goes elsewhere
        BOOST_TEST(p[2].upstream_model == "mc");                 // then the fallback model
        BOOST_TEST(p[2].group == 1);
        BOOST_TEST(p[0].group == 0);
        ++first[std::string(p[0].upstream_model)];
    }
    // 3:1 weights: about 3000 vs 1000 (bounds far outside random noise).
    BOOST_TEST(first["ma"] > 2700);
    BOOST_TEST(first["ma"] < 3300);
    BOOST_TEST(first["ma"] + first["mb"] == 4000);
}

BOOST_AUTO_TEST_CASE(a_target_failing_in_a_row_cools_down_and_is_skipped) {
    fixture f;
    const auto ma = f.target("ma");
    f.attempt(ma, kind::status);
    BOOST_TEST(!f.router->health("main", 0).cooling);  // one failure is not enough
    f.attempt(ma, kind::timeout);
    BOOST_TEST(f.router->health("main", 0).cooling);
    for (int i = 0; i < 200; ++i) {
        const auto p = f.plan();
        BOOST_REQUIRE(!p.empty());
        BOOST_TEST(p[0].upstream_model == "mb");
        for (const auto& t : p) BOOST_TEST(t.upstream_model != "ma");
    }
}

BOOST_AUTO_TEST_CASE(a_success_resets_the_failure_streak) {
    fixture f;
    const auto ma = f.target("ma");
    f.attempt(ma, kind::status);
    f.attempt(ma, kind::ok);
    f.attempt(ma, kind::status);
    BOOST_TEST(!f.router->health("main", 0).cooling);
}

BOOST_AUTO_TEST_CASE(errors_inside_a_stream_count_as_failures_and_client_gone_does_not) {
    fixture f;
    const auto ma = f.target("ma");
    f.attempt(ma, kind::client_gone);
    f.attempt(ma, kind::client_gone);
    BOOST_TEST(!f.router->health("main", 0).cooling);
    f.attempt(ma, kind::error_event);
    f.attempt(ma, kind::error_event);
    BOOST_TEST(f.router->health("main", 0).cooling);
}

BOOST_AUTO_TEST_CASE(upstream_retry_after_cools_the_target_at_once) {
    fixture f;
    const auto mb = f.target("mb");
    f.attempt(mb, kind::status, std::chrono::milliseconds(20000));
    BOOST_TEST(f.router->health("main", 1).cooling);
    for (int i = 0; i < 50; ++i)
        for (const auto& t : f.plan()) BOOST_TEST(t.upstream_model != "mb");
}

BOOST_AUTO_TEST_CASE(when_every_target_cools_one_attempt_goes_to_the_soonest_to_recover) {
    fixture f;
    const auto ma = f.target("ma");
    const auto mb = f.target("mb");
    f.attempt(ma, kind::status, std::chrono::milliseconds(50000));
    f.attempt(mb, kind::status, std::chrono::milliseconds(10000));  // recovers first
    const auto p = f.plan();
    BOOST_REQUIRE(p.size() == 2u);
    BOOST_TEST(p[0].upstream_model == "mb");
    BOOST_TEST(p[0].group == 0);
    BOOST_TEST(p[1].upstream_model == "mc");
}

BOOST_AUTO_TEST_CASE(least_busy_prefers_the_target_with_fewer_in_flight) {
    fixture f("least_busy");
    const auto ma = f.target("ma");
    core::request_context ctx;
    f.router->on_attempt_start(ctx, ma);
    f.router->on_attempt_start(ctx, ma);
    BOOST_TEST(f.router->health("main", 0).in_flight == 2);
    for (int i = 0; i < 50; ++i) BOOST_TEST(f.plan()[0].upstream_model == "mb");
    core::attempt_result ok;
    f.router->on_attempt_end(ctx, ma, ok);
    f.router->on_attempt_end(ctx, ma, ok);
    BOOST_TEST(f.router->health("main", 0).in_flight == 0);
}

BOOST_AUTO_TEST_CASE(lowest_latency_prefers_the_faster_target_and_still_explores) {
    fixture f("lowest_latency");
    const auto ma = f.target("ma");
    const auto mb = f.target("mb");
    for (int i = 0; i < 5; ++i) {
        f.attempt(ma, kind::ok, {}, std::chrono::milliseconds(400));
        f.attempt(mb, kind::ok, {}, std::chrono::milliseconds(40));
    }
    std::map<std::string, int> first;
    for (int i = 0; i < 2000; ++i) ++first[std::string(f.plan()[0].upstream_model)];
    BOOST_TEST(first["mb"] > 1700);  // ~95%: the fast one, except while exploring
    BOOST_TEST(first["ma"] > 20);    // exploration keeps measuring the slow one
}

BOOST_AUTO_TEST_SUITE_END()

// A reload builds a new router on the new config: with the same health book, a target that
// stays (same model, provider, URL and upstream model) keeps its cooldown, its failure
// streak and its in-flight count; a target whose provider moved starts afresh; health no
// router holds any more is forgotten.
BOOST_AUTO_TEST_CASE(a_reload_keeps_the_health_of_the_targets_that_stay) {
    auto book = std::make_shared<policies::router_health>();
    const auto load = [](const std::string& text) {
        auto r =
            config::load_config_text(text, "t.yaml", [](std::string_view) { return std::nullopt; });
        BOOST_TEST_REQUIRE(r.errors.empty(), (r.errors.empty() ? "" : r.errors[0].text()));
        return std::make_unique<config::gateway_config>(std::move(*r.config));
    };
    auto cfg1 = load(yaml("weighted"));
    auto old = std::make_unique<router_policy>(*cfg1, book);
    fixture f;  // for its planning helpers, driven on `old`
    f.router = std::move(old);
    const auto ma = f.target("ma");
    f.attempt(ma, kind::status);
    f.attempt(ma, kind::status);
    BOOST_TEST_REQUIRE(f.router->health("main", 0).cooling);
    const auto mb = f.target("mb");
    f.attempt(mb, kind::status);  // one failure in a row on mb
    core::request_context running;
    f.router->on_attempt_start(running, f.target("mc"));  // an attempt still running

    // The new config: provider b moved to another URL, a model added.
    std::string text = yaml("weighted", "");
    text.replace(text.find("http://127.0.0.1:2/v1"), 21, "http://127.0.0.1:9/v1");
    text.replace(text.find("  backup:"), 0, "  extra:\n    targets: [{provider: a, model: mx}]\n");
    auto cfg2 = load(text);
    router_policy fresh(*cfg2, book);
    BOOST_TEST(fresh.health("main", 0).cooling);         // ma: kept
    BOOST_TEST(fresh.health("main", 1).failures == 0u);  // mb: its provider moved
    BOOST_TEST(fresh.health("backup", 0).in_flight == 1);
    // The running attempt ends on the old router: the count is the same one.
    core::attempt_result ok;
    f.router->on_attempt_end(running, f.target("mc"), ok);
    BOOST_TEST(fresh.health("backup", 0).in_flight == 0);

    // Once the old router is gone, mb's old health is forgotten; a config that brings the
    // old URL back starts it afresh.
    f.router.reset();
    router_policy again(*cfg1, book);
    BOOST_TEST(again.health("main", 1).failures == 0u);
    BOOST_TEST(again.health("main", 0).cooling);  // ma stayed throughout
}
