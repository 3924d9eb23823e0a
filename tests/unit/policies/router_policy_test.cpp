#define BOOST_TEST_MODULE router_policy
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <simdjson.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.hpp"
#include "policies/router/router_policy.hpp"

namespace bdata = boost::unit_test::data;
using namespace tollgate;
using policies::router_policy;

namespace {

// gpt-4o-mini's first target has weight 0 (switched off): the router must skip it.
const std::string router_yaml = R"yaml(
providers:
  openai:
    kind: openai
    base_url: https://api.openai.com/v1
  local:
    kind: openai
    base_url: http://10.0.0.5:8000/v1
  anthropic:
    kind: anthropic
    base_url: https://api.anthropic.com
models:
  gpt-4o-mini:
    targets:
      - {provider: openai, model: gpt-4o-mini-2024-07-18, weight: 0}
      - {provider: local, model: Qwen/Qwen2.5-7B-Instruct, weight: 1}
      - {provider: openai, model: gpt-4o-mini, weight: 3}
  claude-haiku:
    targets: [{provider: anthropic, model: claude-3-5-haiku-latest}]
  'team "quoted" model':
    targets: [{provider: local, model: x}]
keys:
  - id: restricted
    key: k-restricted
    models: [gpt-4o-mini, 'team "quoted" model']
  - id: all
    key: k-all
  - id: none
    key: k-none
    models: []
)yaml";

config::gateway_config make_config() {
    auto r = config::load_config_text(router_yaml, "router.yaml",
                                      [](std::string_view) { return std::nullopt; });
    BOOST_TEST_REQUIRE(r.errors.empty(), (r.errors.empty() ? "" : r.errors[0].text()));
    return std::move(*r.config);
}

struct fixture {
    // The router keeps a reference to the config, as the snapshot would.
    config::gateway_config cfg = make_config();
    router_policy router{cfg};
    core::request_context ctx;

    std::shared_ptr<const config::key_config> key(std::string_view id) const {
        for (const auto& k : cfg.keys)
            if (k.id == id) return std::make_shared<const config::key_config>(k);
        BOOST_FAIL("no key " << id);
        return nullptr;
    }

    core::verdict route(std::string model, std::string_view key_id = "all") {
        ctx = core::request_context{};
        ctx.ep = core::endpoint::chat_completions;
        ctx.req.model = std::move(model);
        ctx.key = key(key_id);
        return router.on_request(ctx);
    }

    // GET /v1/models: the ids listed, in order.
    std::vector<std::string> list_models(std::string_view key_id) {
        ctx = core::request_context{};
        ctx.ep = core::endpoint::models;
        ctx.key = key(key_id);
        BOOST_TEST((router.on_request(ctx) == core::verdict::reply));
        BOOST_TEST(ctx.reply.status == 200);
        BOOST_TEST(static_cast<int>(ctx.reply.error) == static_cast<int>(core::errc::ok));
        BOOST_TEST(ctx.reply.content_type == "application/json");

        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        BOOST_TEST_REQUIRE(parser.parse(ctx.reply.body).get(doc) == simdjson::SUCCESS,
                           ctx.reply.body);
        std::string_view object;
        BOOST_TEST((doc["object"].get(object) == simdjson::SUCCESS && object == "list"));
        simdjson::dom::array data;
        BOOST_TEST_REQUIRE(doc["data"].get_array().get(data) == simdjson::SUCCESS);
        std::vector<std::string> ids;
        for (simdjson::dom::element m : data) {
            std::string_view id, kind;
            BOOST_TEST_REQUIRE(m["id"].get(id) == simdjson::SUCCESS);
            BOOST_TEST((m["object"].get(kind) == simdjson::SUCCESS && kind == "model"));
            ids.emplace_back(id);
        }
        return ids;
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_DATA_TEST_CASE_F(fixture, unknown_model_is_404_model_not_found,
                       bdata::make(std::vector<std::string>{"gpt-5", "GPT-4O-MINI", "gpt-4o-mini ",
                                                            "", "Qwen/Qwen2.5-7B-Instruct"}),
                       model) {
    BOOST_TEST((route(model) == core::verdict::reply));
    BOOST_TEST(ctx.reply.status == 404);
    BOOST_TEST(static_cast<int>(ctx.reply.error) == static_cast<int>(core::errc::model_not_found));
    BOOST_TEST(!ctx.reply.message.empty());
    if (!model.empty()) BOOST_TEST(ctx.reply.message.find(model) != std::string::npos);
    BOOST_TEST(ctx.plan.empty());
    BOOST_TEST(!ctx.model);
}

BOOST_FIXTURE_TEST_CASE(known_model_plans_its_weighted_targets_and_skips_weight_zero, fixture) {
    BOOST_TEST((route("gpt-4o-mini") == core::verdict::next));
    BOOST_REQUIRE(ctx.model);
    BOOST_TEST(ctx.model->name == "gpt-4o-mini");
    BOOST_TEST(ctx.model == cfg.find_model("gpt-4o-mini"));
    // Two targets with weight > 0 and routing.retries (2) > 1: both planned, distinct.
    BOOST_REQUIRE(ctx.plan.size() == 2u);
    BOOST_TEST(ctx.plan[0].upstream_model != ctx.plan[1].upstream_model);
    for (const auto& t : ctx.plan) {
        BOOST_TEST(t.upstream_model != "gpt-4o-mini-2024-07-18");
        BOOST_REQUIRE(t.provider);
        BOOST_REQUIRE(t.provider_index < cfg.providers.size());
        BOOST_TEST(&cfg.providers[t.provider_index] == t.provider);
        BOOST_TEST(t.group == 0);
    }
    BOOST_TEST(ctx.reply.status == 0);
}

BOOST_FIXTURE_TEST_CASE(single_target_model_plans_that_target, fixture) {
    BOOST_TEST((route("claude-haiku") == core::verdict::next));
    BOOST_REQUIRE(ctx.plan.size() >= 1u);
    BOOST_TEST(ctx.plan.front().provider->name == "anthropic");
    BOOST_TEST((ctx.plan.front().provider->kind == config::provider_kind::anthropic));
    BOOST_TEST(ctx.plan.front().upstream_model == "claude-3-5-haiku-latest");
}

BOOST_FIXTURE_TEST_CASE(model_list_shows_only_the_models_the_key_may_use, fixture) {
    BOOST_TEST(list_models("restricted") ==
                   (std::vector<std::string>{"gpt-4o-mini", "team \"quoted\" model"}),
               boost::test_tools::per_element());
}

BOOST_FIXTURE_TEST_CASE(model_list_shows_every_model_to_an_unrestricted_key, fixture) {
    BOOST_TEST(list_models("all") == (std::vector<std::string>{"gpt-4o-mini", "claude-haiku",
                                                               "team \"quoted\" model"}),
               boost::test_tools::per_element());
}

BOOST_FIXTURE_TEST_CASE(model_list_is_empty_for_a_key_with_no_models, fixture) {
    BOOST_TEST(list_models("none").empty());
}

BOOST_FIXTURE_TEST_CASE(model_list_never_shows_upstream_names_or_providers, fixture) {
    list_models("all");
    for (const char* hidden : {"Qwen", "10.0.0.5", "api.openai.com", "claude-3-5-haiku-latest"})
        BOOST_TEST(ctx.reply.body.find(hidden) == std::string::npos, hidden);
}

BOOST_AUTO_TEST_CASE(a_target_naming_an_unknown_provider_is_refused_at_construction) {
    config::gateway_config cfg;
    config::model_config m;
    m.name = "m";
    m.targets.push_back({"nowhere", "x", 1});
    cfg.models.push_back(m);
    BOOST_CHECK_THROW(router_policy{cfg}, std::runtime_error);
}

BOOST_AUTO_TEST_SUITE_END()
