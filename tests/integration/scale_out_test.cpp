// Scale-out on one PostgreSQL database (`usage.database: postgresql://…`): TWO real gateway
// processes in front of the real mock upstream, both on one real PostgreSQL server the
// test starts (tests/support postgres_server). Requests through both are in one ledger
// that /admin/usage on either instance answers for; a key created or revoked through the
// admin API of one instance takes effect on the other within about a second (its key
// store's 1-s refresher); the URL's password reaches no log line.
//
// Synchronisation: GET /admin/usage and client requests in bounded poll loops
// (poll_until); no sleeps.
#define BOOST_TEST_MODULE scale_out_integration
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <memory>
#include <regex>
#include <string>

#include "tests/support/fixtures.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* admin_token = "adm-scale-test-token-3141592653589793";

struct two_instances {
    postgres_server pg;  // first: outlives both gateways
    mock_upstream mock;
    std::unique_ptr<gateway_process> a, b;

    two_instances() {
        config_options o;
        o.policies = "[auth, rate_limit, budget, router, usage]";
        o.top_extra = std::string("admin: {listen: \"127.0.0.1:0\", token: ") + admin_token +
                      "}\nusage: {database: \"" + pg.url() + "\"}\n";
        const std::string yaml = standard_config(mock.port(), o);
        a = std::make_unique<gateway_process>(yaml);
        b = std::make_unique<gateway_process>(yaml);
        a->admin_port();
        b->admin_port();
    }

    static http_response admin(gateway_process& gw, const std::string& method,
                               const std::string& target, const std::string& body = {}) {
        return http_request(gw.admin_port(), method, target,
                            {{"authorization", std::string("Bearer ") + admin_token}}, body);
    }
    static int chat(gateway_process& gw, const std::string& key) {
        return http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(key),
                            chat_body("hi #mock prompt_tokens=10 chunks=3"))
            .status;
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_AUTO_TEST_CASE(admin_usage_on_either_instance_answers_for_both) {
    two_instances env;
    for (int i = 0; i < 6; ++i) BOOST_TEST(two_instances::chat(*env.a, client_key_a) == 200);
    for (int i = 0; i < 4; ++i) BOOST_TEST(two_instances::chat(*env.b, client_key_b) == 200);

    // Each record: 10 prompt + 3 completion tokens (the mock's directive).
    const std::string want_a =
        R"({"key":"team-a","requests":6,"prompt_tokens":60,"completion_tokens":18,"total_tokens":78,)";
    const std::string want_b =
        R"({"key":"team-b","requests":4,"prompt_tokens":40,"completion_tokens":12,"total_tokens":52,)";
    std::string from_a, from_b;
    const bool both = poll_until(
        [&] {
            from_a = two_instances::admin(*env.a, "GET", "/admin/usage?group_by=key").body;
            from_b = two_instances::admin(*env.b, "GET", "/admin/usage?group_by=key").body;
            return from_a.find(want_a) != std::string::npos &&
                   from_a.find(want_b) != std::string::npos && from_a == from_b;
        },
        10s, 20ms);
    BOOST_TEST(both, "A: " << from_a << "\nB: " << from_b);

    // Totals: the sum of both instances' requests.
    const auto total_a = two_instances::admin(*env.a, "GET", "/admin/usage").body;
    const auto total_b = two_instances::admin(*env.b, "GET", "/admin/usage").body;
    BOOST_TEST(total_a == total_b);
    BOOST_TEST(total_a.find(R"("requests":10,"prompt_tokens":100,"completion_tokens":30,)"
                            R"("total_tokens":130,)") != std::string::npos,
               total_a);

    // Stopped (SIGTERM flushes the ledger), no password in either log.
    for (auto* gw : {env.a.get(), env.b.get()}) {
        const std::string log = gw->process().output();
        BOOST_TEST(log.find(postgres_server::password) == std::string::npos, log);
    }
}

BOOST_AUTO_TEST_CASE(a_key_created_on_one_instance_works_on_the_other_within_a_second) {
    two_instances env;
    const auto created =
        two_instances::admin(*env.a, "POST", "/admin/keys", R"({"id":"svc-shared"})");
    BOOST_TEST_REQUIRE(created.status == 201, created.body);
    std::smatch m;
    BOOST_TEST_REQUIRE(std::regex_search(created.body, m, std::regex(R"re("key":"(tg-[^"]+)")re")),
                       created.body);
    const std::string secret = m[1];
    BOOST_TEST(two_instances::chat(*env.a, secret) == 200);  // at once on its own instance

    // On B after its refresher's next look: within about a second (bound with slack for a
    // loaded machine; the time is printed).
    const auto start = std::chrono::steady_clock::now();
    BOOST_TEST(poll_until([&] { return two_instances::chat(*env.b, secret) == 200; }, 3s, 20ms));
    BOOST_TEST_MESSAGE("key seen by instance B after "
                       << std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count()
                       << " ms");
    const auto listed = two_instances::admin(*env.b, "GET", "/admin/keys");
    BOOST_TEST(listed.body.find(R"("id":"svc-shared")") != std::string::npos, listed.body);

    // The same id on B now: 409 (the table is shared).
    BOOST_TEST(
        two_instances::admin(*env.b, "POST", "/admin/keys", R"({"id":"svc-shared"})").status ==
        409);

    // Revoked on B: stops working on A too.
    BOOST_TEST(two_instances::admin(*env.b, "DELETE", "/admin/keys/svc-shared").status == 204);
    BOOST_TEST(two_instances::chat(*env.b, secret) == 401);
    BOOST_TEST(poll_until([&] { return two_instances::chat(*env.a, secret) == 401; }, 3s, 20ms));
}

BOOST_AUTO_TEST_SUITE_END()
