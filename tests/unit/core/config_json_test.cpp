// GET /admin/config's body: valid JSON for any config, every secret replaced by "***".
#define BOOST_TEST_MODULE config_json
#include <boost/test/unit_test.hpp>

#include <simdjson.h>

#include <string>

#include "gateway/core/config_json.hpp"

using namespace tollgate;

BOOST_AUTO_TEST_CASE(url_passwords_are_hidden_and_the_rest_kept) {
    BOOST_TEST(core::redact_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0");
    BOOST_TEST(core::redact_url("rediss://user:s3cret@h:6380") == "rediss://user:***@h:6380");
    BOOST_TEST(core::redact_url("postgresql://app:p%40ss@db/x?sslmode=require") ==
               "postgresql://app:***@db/x?sslmode=require");
    BOOST_TEST(core::redact_url("postgresql://db/x?user=a&password=pw&sslmode=require") ==
               "postgresql://db/x?user=a&password=***&sslmode=require");
    // Without ':' a Redis URL's user info is the password.
    BOOST_TEST(core::redact_url("redis://s3cret@h:6379/0") == "redis://***@h:6379/0");
    // '/', '?', '#' and '@' inside a password.
    BOOST_TEST(core::redact_url("redis://:pa#ss@h") == "redis://:***@h");
    BOOST_TEST(core::redact_url("redis://:p@ss/x@h/0") == "redis://:***@h/0");
    BOOST_TEST(core::redact_url("postgresql://app:pa?ss@db/x") == "postgresql://app:***@db/x");
    BOOST_TEST(core::redact_url("redis://h:6379/0") == "redis://h:6379/0");
    BOOST_TEST(core::redact_url("./data/usage.db") == "./data/usage.db");
    BOOST_TEST(core::redact_url("http://h/a@b") == "http://***@b");  // more hidden, never less
}

BOOST_AUTO_TEST_CASE(secrets_never_appear_and_the_json_is_valid) {
    config::gateway_config c;
    c.admin.token = "admin-\"tok\"\n";
    config::provider_config p;
    p.name = "p\"1";
    p.api_key = "sk-provider";
    p.base_url = "https://u:inline-pass@api.example.com/v1";
    c.providers.push_back(p);
    config::key_config k;
    k.id = "team";
    k.key_sha256 = "abcdef0123456789";
    k.budget = config::budget_config{};
    k.budget->usd = 12.5;
    c.keys.push_back(k);
    c.state.redis_url = "redis://:redis-pass@127.0.0.1:6379/0";
    c.usage.database = "postgresql://app:pg-pass@db/usage";
    const std::string j = core::config_json(c, {"auth", "router"});
    for (const char* secret :
         {"admin-", "sk-provider", "inline-pass", "abcdef0123456789", "redis-pass", "pg-pass"})
        BOOST_TEST(j.find(secret) == std::string::npos, secret << " in " << j);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    BOOST_TEST_REQUIRE(parser.parse(j).get(doc) == simdjson::SUCCESS, j);
    std::string_view v;
    BOOST_TEST(
        (doc.at_pointer("/providers/p\"1/api_key").get(v) == simdjson::SUCCESS && v == "***"));
    BOOST_TEST((doc.at_pointer("/policies/1").get(v) == simdjson::SUCCESS && v == "router"));
    double usd = 0;
    BOOST_TEST((doc.at_pointer("/keys/0/budget/usd").get(usd) == simdjson::SUCCESS && usd == 12.5));
    BOOST_TEST(
        (doc.at_pointer("/server/header_timeout").get(v) == simdjson::SUCCESS && v == "10s"));
    // No admin token set: null, not "***".
    config::gateway_config plain;
    BOOST_TEST(core::config_json(plain, {}).find(R"("token":null)") != std::string::npos);
}
