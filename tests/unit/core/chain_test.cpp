// The policy chain: order of hooks, local replies stopping the chain, suspension, and
// on_settle and on_complete for every policy in reverse order.
#define BOOST_TEST_MODULE chain
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include "gateway/core/chain.hpp"
#include "gateway/core/policy_registry.hpp"
#include "gateway/core/snapshot.hpp"

namespace asio = boost::asio;
using namespace tollgate::core;

namespace {

struct journal {
    std::vector<std::string> calls;
};

class recording_policy final : public policy {
  public:
    recording_policy(std::string name, journal& j, verdict v = verdict::next)
        : name_(std::move(name)), j_(j), v_(v) {}
    std::string_view name() const noexcept override { return name_; }
    verdict on_request(request_context& ctx) const override {
        j_.calls.push_back(name_ + ".request");
        if (v_ == verdict::reply) ctx.set_error_reply(errc::rate_limited, "no");
        return v_;
    }
    asio::awaitable<verdict> on_request_async(request_context&) const override {
        // Really suspend: resume from the io_context's queue.
        co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        j_.calls.push_back(name_ + ".resumed");
        co_return verdict::next;
    }
    void on_response_head(request_context&, const response_head&) const override {
        j_.calls.push_back(name_ + ".head");
    }
    void on_settle(request_context&) const noexcept override {
        j_.calls.push_back(name_ + ".settle");
    }
    void on_complete(request_context&, const outcome& o) const noexcept override {
        j_.calls.push_back(name_ + ".complete." + std::to_string(o.status));
    }

  private:
    std::string name_;
    journal& j_;
    verdict v_;
};

verdict run(const chain& c, request_context& ctx) {
    asio::io_context ioc;
    verdict result = verdict::suspend;
    asio::co_spawn(ioc, c.run_request(ctx), [&](std::exception_ptr e, verdict v) {
        if (e) std::rethrow_exception(e);
        result = v;
    });
    ioc.run_for(std::chrono::seconds(5));
    return result;
}

chain make_chain(journal& j, std::vector<std::pair<std::string, verdict>> spec) {
    std::vector<std::unique_ptr<policy>> ps;
    for (std::size_t i = 0; i < spec.size(); ++i)
        ps.push_back(std::make_unique<recording_policy>(spec[i].first, j, spec[i].second));
    return chain(std::move(ps));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(request_hooks_run_in_order_and_response_hooks_in_reverse) {
    journal j;
    auto c = make_chain(j, {{"a", verdict::next}, {"b", verdict::next}, {"c", verdict::next}});
    request_context ctx;
    BOOST_TEST((run(c, ctx) == verdict::next));
    c.response_head(ctx, response_head{200, true});
    c.settle(ctx);
    c.complete(ctx, outcome{200});
    const std::vector<std::string> want{"a.request",      "b.request",      "c.request",
                                        "c.head",         "b.head",         "a.head",
                                        "c.settle",       "b.settle",       "a.settle",
                                        "c.complete.200", "b.complete.200", "a.complete.200"};
    BOOST_TEST(j.calls == want, boost::test_tools::per_element());
    BOOST_TEST(ctx.states.size() == 3u);
}

BOOST_AUTO_TEST_CASE(a_local_reply_stops_the_chain) {
    journal j;
    auto c = make_chain(j, {{"a", verdict::next}, {"b", verdict::reply}, {"c", verdict::next}});
    request_context ctx;
    BOOST_TEST((run(c, ctx) == verdict::reply));
    BOOST_TEST(ctx.reply.status == 429);
    BOOST_TEST(static_cast<int>(ctx.reply.error) == static_cast<int>(errc::rate_limited));
    const std::vector<std::string> want{"a.request", "b.request"};
    BOOST_TEST(j.calls == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_suspending_policy_resumes_before_the_next_one_runs) {
    journal j;
    auto c = make_chain(j, {{"a", verdict::suspend}, {"b", verdict::next}});
    request_context ctx;
    BOOST_TEST((run(c, ctx) == verdict::next));
    const std::vector<std::string> want{"a.request", "a.resumed", "b.request"};
    BOOST_TEST(j.calls == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_reply_without_a_status_becomes_an_internal_error) {
    class silent final : public policy {
        std::string_view name() const noexcept override { return "silent"; }
        verdict on_request(request_context&) const override { return verdict::reply; }
    };
    std::vector<std::unique_ptr<policy>> ps;
    ps.push_back(std::make_unique<silent>());
    chain c(std::move(ps));
    request_context ctx;
    BOOST_TEST((run(c, ctx) == verdict::reply));
    BOOST_TEST(ctx.reply.status == 500);
}

BOOST_AUTO_TEST_CASE(snapshot_refuses_unknown_duplicate_or_routerless_chains) {
    policy_registry reg;
    reg.add(
        "auth", [](const policy_init&) -> std::unique_ptr<policy> { return nullptr; }, true);
    reg.add(
        "router", [](const policy_init&) -> std::unique_ptr<policy> { return nullptr; }, true);
    auto build = [&](std::vector<std::string> names) {
        tollgate::config::gateway_config cfg;
        cfg.policies = std::move(names);
        cfg.policies_line = 7;
        return build_snapshot(std::move(cfg), reg);
    };
    auto unknown = build({"auth", "router", "nope"});
    BOOST_REQUIRE(!unknown.errors.empty());
    BOOST_TEST(unknown.errors[0].line == 7);
    BOOST_TEST(unknown.errors[0].message.find("nope") != std::string::npos);
    BOOST_TEST(!build({"auth", "auth", "router"}).errors.empty());
    BOOST_TEST(!build({"auth"}).errors.empty());
    auto def = build({});
    BOOST_TEST(def.errors.empty());
    BOOST_REQUIRE(def.snap);
    BOOST_TEST(def.snap->config.policies.size() == 2u);
}

// Two policies of one chain share one object made by the first that asks, with a state
// slot past the policies' own; a rebuilt chain (a reload) gets a new one.
BOOST_AUTO_TEST_CASE(policies_of_one_chain_share_a_service_built_once) {
    struct counter {
        std::size_t slot;
    };
    struct user final : policy {
        std::shared_ptr<counter> c;
        std::string_view name() const noexcept override { return "user"; }
    };
    std::vector<std::shared_ptr<counter>> seen;
    std::vector<bool> saw_other;
    policy_factory f = [&](const policy_init& init) -> std::unique_ptr<policy> {
        auto p = std::make_unique<user>();
        p->c = init.services.get_or_make<counter>("counter", [&] {
            return std::make_shared<counter>(counter{init.services.new_slot()});
        });
        seen.push_back(p->c);
        saw_other.push_back(init.in_chain(init.chain[init.slot] == "a" ? "b" : "a"));
        return p;
    };
    policy_registry reg;
    reg.add(
        "auth", [](const policy_init&) -> std::unique_ptr<policy> { return nullptr; }, true);
    reg.add("a", f, false);
    reg.add("b", f, false);
    reg.add(
        "router", [](const policy_init&) -> std::unique_ptr<policy> { return nullptr; }, true);
    auto build = [&] {
        tollgate::config::gateway_config cfg;
        cfg.policies = {"auth", "a", "b", "router"};
        return build_snapshot(std::move(cfg), reg);
    };
    BOOST_TEST_REQUIRE(build().errors.empty());
    BOOST_TEST_REQUIRE(seen.size() == 2u);
    BOOST_TEST(seen[0] == seen[1]);
    BOOST_TEST(seen[0]->slot == 4u);  // after the four policies' own
    BOOST_TEST(saw_other[0]);
    BOOST_TEST(saw_other[1]);
    BOOST_TEST_REQUIRE(build().errors.empty());
    BOOST_TEST(seen[2] != seen[0]);
}

BOOST_AUTO_TEST_SUITE_END()
