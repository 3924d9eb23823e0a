#define BOOST_TEST_MODULE auth_policy
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/loader.hpp"
#include "policies/auth/auth_policy.hpp"

namespace bdata = boost::unit_test::data;
using namespace tollgate;
using policies::auth_policy;

namespace {

// Request headers as the session would give them: names compared case-insensitively.
class fake_headers final : public core::header_source {
  public:
    fake_headers() = default;
    fake_headers(std::initializer_list<std::pair<std::string, std::string>> headers)
        : headers_(headers) {}

    std::string_view get(std::string_view name) const noexcept override {
        for (const auto& [n, v] : headers_)
            if (std::equal(n.begin(), n.end(), name.begin(), name.end(), [](char a, char b) {
                    return std::tolower(static_cast<unsigned char>(a)) ==
                           std::tolower(static_cast<unsigned char>(b));
                }))
                return v;
        return {};
    }

  private:
    std::vector<std::pair<std::string, std::string>> headers_;
};

constexpr std::string_view team_secret = "tg-team-search-5ecret-aaaaaaaaaaaaaaaaaaaaaaa";
constexpr std::string_view ops_secret = "tg-ops-5ecret-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
    return s;
}

// team-search: a plain key (from the environment) limited to gpt-4o-mini.
// ops: configured by its digest (upper-case hex), every model.
config::gateway_config make_config() {
    const std::string yaml =
        "providers:\n"
        "  openai: {kind: openai, base_url: \"https://api.openai.com/v1\"}\n"
        "models:\n"
        "  gpt-4o-mini:\n"
        "    targets: [{provider: openai, model: gpt-4o-mini}]\n"
        "  gpt-4o:\n"
        "    targets: [{provider: openai, model: gpt-4o}]\n"
        "keys:\n"
        "  - id: team-search\n"
        "    key: ${TEAM_KEY}\n"
        "    models: [gpt-4o-mini]\n"
        "  - id: ops\n"
        "    key_sha256: " +
        upper(config::sha256_hex(ops_secret)) + "\n";
    auto r = config::load_config_text(yaml, "auth.yaml", [](std::string_view name) {
        return name == "TEAM_KEY" ? std::optional<std::string>(team_secret) : std::nullopt;
    });
    BOOST_TEST_REQUIRE(r.errors.empty(), (r.errors.empty() ? "" : r.errors[0].text()));
    return std::move(*r.config);
}

struct fixture {
    config::gateway_config cfg = make_config();
    auth_policy auth{cfg};
    core::request_context ctx;

    core::verdict run(const fake_headers& headers, std::string model = "gpt-4o-mini",
                      core::endpoint ep = core::endpoint::chat_completions) {
        ctx = core::request_context{};
        ctx.ep = ep;
        ctx.headers = &headers;
        ctx.req.model = std::move(model);
        return auth.on_request(ctx);
    }

    void require_refused(core::verdict v, core::errc e, int status) {
        BOOST_TEST((v == core::verdict::reply));
        BOOST_TEST(static_cast<int>(ctx.reply.error) == static_cast<int>(e));
        BOOST_TEST(ctx.reply.status == status);
        BOOST_TEST(!ctx.key);
    }
};

std::string bearer(std::string_view scheme, std::string_view secret) {
    return std::string(scheme) + " " + std::string(secret);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_DATA_TEST_CASE_F(fixture, bearer_scheme_is_case_insensitive,
                       bdata::make(std::vector<std::string>{"Bearer", "bearer", "BEARER",
                                                            "bEaReR"}),
                       scheme) {
    const fake_headers h{{"Authorization", bearer(scheme, team_secret)}};
    BOOST_TEST((run(h) == core::verdict::next));
    BOOST_REQUIRE(ctx.key);
    BOOST_TEST(ctx.key->id == "team-search");
    BOOST_TEST(ctx.reply.status == 0);
}

BOOST_FIXTURE_TEST_CASE(bearer_token_is_trimmed, fixture) {
    const fake_headers h{{"authorization", "Bearer\t  " + std::string(ops_secret) + "  "}};
    BOOST_TEST((run(h) == core::verdict::next));
    BOOST_REQUIRE(ctx.key);
    BOOST_TEST(ctx.key->id == "ops");
}

BOOST_DATA_TEST_CASE_F(fixture, x_api_key_and_api_key_headers_are_accepted,
                       bdata::make(std::vector<std::string>{"x-api-key", "X-Api-Key", "api-key",
                                                            "Api-Key"}),
                       header) {
    const fake_headers h{{header, std::string(team_secret)}};
    BOOST_TEST((run(h) == core::verdict::next));
    BOOST_REQUIRE(ctx.key);
    BOOST_TEST(ctx.key->id == "team-search");
}

BOOST_AUTO_TEST_CASE(presented_key_comes_from_any_of_the_three_headers) {
    BOOST_TEST(auth_policy::presented_key(fake_headers{{"authorization", "Bearer abc"}}) == "abc");
    BOOST_TEST(auth_policy::presented_key(fake_headers{{"x-api-key", " abc "}}) == "abc");
    BOOST_TEST(auth_policy::presented_key(fake_headers{{"api-key", "abc"}}) == "abc");
    BOOST_TEST(auth_policy::presented_key(fake_headers{}) == "");
    BOOST_TEST(auth_policy::presented_key(fake_headers{{"authorization", "Basic dXNlcjpwYXNz"}}) ==
               "");
    BOOST_TEST(auth_policy::presented_key(fake_headers{{"authorization", "Bearer"}}) == "");
    BOOST_TEST(auth_policy::presented_key(fake_headers{{"authorization", "Bearerabc"}}) == "");
    // A non-Bearer Authorization (a browser's Basic, say) does not hide an x-api-key.
    BOOST_TEST(auth_policy::presented_key(fake_headers{{"authorization", "Basic dXNlcjpwYXNz"},
                                                       {"x-api-key", "abc"}}) == "abc");
}

BOOST_FIXTURE_TEST_CASE(missing_key_is_401_invalid_api_key, fixture) {
    require_refused(run(fake_headers{}), core::errc::invalid_api_key, 401);
    BOOST_TEST(!ctx.reply.message.empty());
    require_refused(run(fake_headers{{"authorization", "Bearer "}}), core::errc::invalid_api_key,
                    401);
    require_refused(run(fake_headers{{"authorization", "Basic dXNlcjpwYXNz"}}),
                    core::errc::invalid_api_key, 401);
    require_refused(run(fake_headers{{"x-api-key", ""}}), core::errc::invalid_api_key, 401);
}

BOOST_FIXTURE_TEST_CASE(no_headers_at_all_is_401, fixture) {
    ctx.headers = nullptr;
    ctx.req.model = "gpt-4o-mini";
    require_refused(auth.on_request(ctx), core::errc::invalid_api_key, 401);
}

BOOST_DATA_TEST_CASE_F(fixture, unknown_key_is_401_and_the_reply_never_shows_it,
                       bdata::make(std::vector<std::string>{
                           "sk-presented-5ecret-0123456789abcdef",
                           // A configured key with one byte changed, or cut short.
                           std::string(team_secret.substr(0, team_secret.size() - 1)) + "b",
                           std::string(team_secret.substr(0, team_secret.size() - 1)),
                           // The digest itself is not a key.
                           config::sha256_hex(team_secret),
                           std::string(5000, 'k'),
                       }),
                       secret) {
    for (const auto& h : {fake_headers{{"authorization", "Bearer " + secret}},
                          fake_headers{{"x-api-key", secret}}, fake_headers{{"api-key", secret}}}) {
        require_refused(run(h), core::errc::invalid_api_key, 401);
        BOOST_TEST(ctx.reply.message.find(secret) == std::string::npos, ctx.reply.message);
        BOOST_TEST(ctx.reply.message.find("5ecret") == std::string::npos, ctx.reply.message);
        BOOST_TEST(ctx.reply.body.empty());
    }
}

BOOST_FIXTURE_TEST_CASE(model_outside_the_allow_list_is_403_model_not_allowed, fixture) {
    const fake_headers h{{"authorization", bearer("Bearer", team_secret)}};
    require_refused(run(h, "gpt-4o"), core::errc::model_not_allowed, 403);
    BOOST_TEST(ctx.reply.message.find("gpt-4o") != std::string::npos, ctx.reply.message);
    BOOST_TEST(ctx.reply.message.find(team_secret) == std::string::npos, ctx.reply.message);
    // Allow-lists compare the exact name.
    require_refused(run(h, "GPT-4O-MINI"), core::errc::model_not_allowed, 403);
    require_refused(run(h, "gpt-4o-mini "), core::errc::model_not_allowed, 403);
}

BOOST_FIXTURE_TEST_CASE(model_inside_the_allow_list_passes, fixture) {
    const fake_headers h{{"x-api-key", std::string(team_secret)}};
    BOOST_TEST((run(h, "gpt-4o-mini") == core::verdict::next));
    BOOST_REQUIRE(ctx.key);
    BOOST_TEST(ctx.key->models.has_value());
}

BOOST_FIXTURE_TEST_CASE(key_configured_by_sha256_works_for_every_model, fixture) {
    const fake_headers h{{"authorization", bearer("Bearer", ops_secret)}};
    for (const char* model : {"gpt-4o-mini", "gpt-4o", "anything"}) {
        BOOST_TEST((run(h, model) == core::verdict::next), model);
        BOOST_REQUIRE(ctx.key);
        BOOST_TEST(ctx.key->id == "ops");
        BOOST_TEST(!ctx.key->models.has_value());
    }
}

BOOST_FIXTURE_TEST_CASE(model_list_endpoint_skips_the_allow_list, fixture) {
    // GET /v1/models has no model; the router lists what the key may use.
    const fake_headers h{{"authorization", bearer("Bearer", team_secret)}};
    BOOST_TEST((run(h, "", core::endpoint::models) == core::verdict::next));
    BOOST_REQUIRE(ctx.key);
    BOOST_TEST(ctx.key->id == "team-search");
}

BOOST_FIXTURE_TEST_CASE(find_looks_keys_up_by_their_secret, fixture) {
    BOOST_REQUIRE(auth.find(team_secret));
    BOOST_TEST(auth.find(team_secret)->id == "team-search");
    BOOST_REQUIRE(auth.find(ops_secret));
    BOOST_TEST(auth.find(ops_secret)->id == "ops");
    BOOST_TEST(!auth.find(""));
    BOOST_TEST(!auth.find("tg-other"));
    // The same shared key config is handed to every request.
    BOOST_TEST(auth.find(ops_secret).get() == auth.find(ops_secret).get());
    BOOST_TEST(auth.name() == "auth");
}

// A connection's memo: the same key again resolves to the same key, another key to its
// own, a wrong key (one byte off, or cut short) is refused though a key is remembered, and
// the memo holds only the last good key.
BOOST_FIXTURE_TEST_CASE(a_connection_memo_answers_only_for_the_same_bytes, fixture) {
    core::connection_memo memo;
    BOOST_REQUIRE(auth.find(team_secret, &memo));
    BOOST_TEST(memo.auth.secret == team_secret);
    BOOST_TEST(auth.find(team_secret, &memo)->id == "team-search");
    BOOST_TEST(auth.find(ops_secret, &memo)->id == "ops");
    BOOST_TEST(memo.auth.secret == ops_secret);
    std::string near(ops_secret);
    near.back() = 'c';
    BOOST_TEST(!auth.find(near, &memo));
    BOOST_TEST(!auth.find(ops_secret.substr(0, ops_secret.size() - 1), &memo));
    BOOST_TEST(!auth.find("", &memo));
    BOOST_TEST(memo.auth.secret == ops_secret);  // a refused key is not remembered
    BOOST_TEST(auth.find(ops_secret, &memo)->id == "ops");
    memo.forget_auth();
    BOOST_TEST(memo.auth.secret.empty());
    BOOST_TEST(!memo.auth.key);

    // Through the policy: the request's connection memo is used and filled.
    const fake_headers h{{"authorization", bearer("Bearer", team_secret)}};
    ctx = core::request_context{};
    ctx.headers = &h;
    ctx.req.model = "gpt-4o-mini";
    ctx.connection = &memo;
    BOOST_TEST((auth.on_request(ctx) == core::verdict::next));
    BOOST_TEST(memo.auth.secret == team_secret);
    // The allow-list is checked on every request, remembered key or not.
    ctx = core::request_context{};
    ctx.headers = &h;
    ctx.req.model = "gpt-4o";
    ctx.connection = &memo;
    require_refused(auth.on_request(ctx), core::errc::model_not_allowed, 403);
}

// A reload makes a new auth policy: a memo filled by the old one is not taken on trust,
// so a key the new config dropped is refused on a connection that used it.
BOOST_FIXTURE_TEST_CASE(a_memo_from_before_a_reload_is_not_trusted, fixture) {
    core::connection_memo memo;
    BOOST_REQUIRE(auth.find(team_secret, &memo));
    config::gateway_config next = cfg;
    next.keys.erase(
        std::remove_if(next.keys.begin(), next.keys.end(),
                       [](const config::key_config& k) { return k.id == "team-search"; }),
        next.keys.end());
    const auth_policy reloaded{next};
    BOOST_TEST(!reloaded.find(team_secret, &memo));
    BOOST_TEST(reloaded.find(ops_secret, &memo)->id == "ops");
}

BOOST_AUTO_TEST_CASE(a_bad_digest_in_the_config_is_refused_at_construction) {
    config::gateway_config cfg;
    config::key_config k;
    k.id = "broken";
    k.key_sha256 = "not-a-digest";
    cfg.keys.push_back(k);
    BOOST_CHECK_THROW(auth_policy{cfg}, std::runtime_error);
}

BOOST_AUTO_TEST_SUITE_END()
