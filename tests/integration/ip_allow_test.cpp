// The ip_allow policy against the real binary: keys[].allowed_cidrs from the config file
// and through the admin API (stored, so still restricted after a restart), 403
// permission_error / ip_not_allowed in both error shapes, server.trusted_proxies and
// X-Forwarded-For (a forged first hop gains nothing), and --check refusing ranges that
// nothing would enforce. Every client here is 127.0.0.1.
#define BOOST_TEST_MODULE ip_allow_integration
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/fixtures.hpp"
#include "tests/support/http_client.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* admin_token = "ip-allow-admin-token-0123456789";
constexpr const char* key_net10 = "tg-ip-allow-net10-0123456789abcdef";
constexpr const char* key_local = "tg-ip-allow-local-0123456789abcdef";

std::string keys_extra() {
    return std::string("  - id: net10\n    key: ") + key_net10 +
           "\n    allowed_cidrs: [10.0.0.0/8]\n" + "  - id: local\n    key: " + key_local +
           "\n    allowed_cidrs: [\"127.0.0.0/8\", \"::1\"]\n";
}

struct env {
    std::filesystem::path dir = make_temp_dir();
    mock_upstream mock;
    std::string yaml;
    std::unique_ptr<gateway_process> gw;

    explicit env(const std::string& server_extra = "",
                 const std::string& policies = "[auth, ip_allow, router, usage]",
                 bool restricted_keys = true) {
        config_options o;
        o.policies = policies;
        o.server_extra = server_extra;
        if (restricted_keys) o.keys_extra = keys_extra();
        o.top_extra = std::string("admin: {listen: \"127.0.0.1:0\", token: ") + admin_token +
                      "}\nusage: {database: \"" + (dir / "usage.db").string() + "\"}\n";
        yaml = standard_config(mock.port(), o);
        gw = std::make_unique<gateway_process>(yaml);
    }
    ~env() {
        gw.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    http_response chat(const std::string& key, const header_map& extra = {}) const {
        header_map h = auth_headers(key);
        h.insert(h.end(), extra.begin(), extra.end());
        return http_request(gw->port(), "POST", "/v1/chat/completions", h, chat_body("hi"));
    }
    http_response admin(const std::string& method, const std::string& target,
                        const std::string& body = {}) const {
        return http_request(gw->admin_port(), method, target,
                            {{"authorization", std::string("Bearer ") + admin_token}}, body);
    }
};

bool refused_for_address(const http_response& r) {
    return r.status == 403 && r.body.find(R"("code":"ip_not_allowed")") != std::string::npos &&
           r.body.find(R"("type":"permission_error")") != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_AUTO_TEST_CASE(a_key_is_used_only_from_its_allowed_ranges) {
    env e;
    const auto outside = e.chat(key_net10);
    BOOST_TEST(refused_for_address(outside), outside.body);
    BOOST_TEST(outside.body.find("127.0.0.1") != std::string::npos, outside.body);
    BOOST_TEST(outside.body.find("10.0.0.0") == std::string::npos, outside.body);  // ranges unsaid
    BOOST_TEST(e.chat(key_local).status == 200);
    BOOST_TEST(e.chat(client_key_a).status == 200);  // no allowed_cidrs: any address
    // Without trusted proxies, X-Forwarded-For is the client's word: ignored.
    BOOST_TEST(refused_for_address(e.chat(key_net10, {{"X-Forwarded-For", "10.1.2.3"}})));
    // The Anthropic endpoint answers in its own shape.
    header_map h = {{"x-api-key", key_net10}, {"anthropic-version", "2023-06-01"}};
    const auto msg = http_request(
        e.gw->port(), "POST", "/v1/messages", h,
        R"({"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]})");
    BOOST_TEST(msg.status == 403);
    BOOST_TEST(msg.body.find(R"("type":"error")") != std::string::npos, msg.body);
    BOOST_TEST(msg.body.find(R"("permission_error")") != std::string::npos, msg.body);
}

BOOST_AUTO_TEST_CASE(behind_a_trusted_proxy_the_client_is_the_last_untrusted_hop) {
    env e("  trusted_proxies: [127.0.0.1/32]\n");
    BOOST_TEST(e.chat(key_net10, {{"X-Forwarded-For", "10.1.2.3"}}).status == 200);
    // A client that writes 10.x first gains nothing: the proxy saw 203.0.113.5.
    BOOST_TEST(
        refused_for_address(e.chat(key_net10, {{"X-Forwarded-For", "10.1.2.3, 203.0.113.5"}})));
    // Two X-Forwarded-For lines are one list: the proxy's line (last) counts.
    BOOST_TEST(refused_for_address(
        e.chat(key_net10, {{"X-Forwarded-For", "10.1.2.3"}, {"X-Forwarded-For", "203.0.113.5"}})));
    BOOST_TEST(
        e.chat(key_net10, {{"X-Forwarded-For", "203.0.113.5"}, {"X-Forwarded-For", "10.1.2.3"}})
            .status == 200);
    // The proxy itself, with no header: the peer.
    BOOST_TEST(e.chat(key_local).status == 200);
    BOOST_TEST(refused_for_address(e.chat(key_local, {{"X-Forwarded-For", "198.51.100.7"}})));
}

BOOST_AUTO_TEST_CASE(admin_keys_carry_allowed_cidrs_across_a_restart) {
    env e;
    auto r = e.admin("POST", "/admin/keys", R"({"id":"svc-ip","allowed_cidrs":["10.0.0.0/8"]})");
    BOOST_TEST_REQUIRE(r.status == 201, r.body);
    const auto at = r.body.find("tg-");
    BOOST_TEST_REQUIRE(at != std::string::npos);
    const std::string secret = r.body.substr(at, r.body.find('"', at) - at);
    BOOST_TEST(refused_for_address(e.chat(secret)));
    auto list = e.admin("GET", "/admin/keys");
    BOOST_TEST(list.body.find(R"("id":"svc-ip")") != std::string::npos, list.body);
    BOOST_TEST(list.body.find(R"("allowed_cidrs":["10.0.0.0/8"])") != std::string::npos, list.body);
    BOOST_TEST(list.body.find(R"("allowed_cidrs":["127.0.0.0/8","::1"])") != std::string::npos,
               list.body);  // the config key's

    r = e.admin("PATCH", "/admin/keys/svc-ip", R"({"allowed_cidrs":["127.0.0.1/32"]})");
    BOOST_TEST(r.status == 200, r.body);
    BOOST_TEST(e.chat(secret).status == 200);
    r = e.admin("PATCH", "/admin/keys/svc-ip", R"({"allowed_cidrs":["192.0.2.0/24"]})");
    BOOST_TEST(r.status == 200, r.body);
    BOOST_TEST(refused_for_address(e.chat(secret)));

    // Bad ranges are refused with the reason, and change nothing.
    r = e.admin("PATCH", "/admin/keys/svc-ip", R"({"allowed_cidrs":["10.0.0.0/33"]})");
    BOOST_TEST(r.status == 400, r.body);
    BOOST_TEST(r.body.find("10.0.0.0/33") != std::string::npos, r.body);
    r = e.admin("POST", "/admin/keys", R"({"id":"svc-bad","allowed_cidrs":"10.0.0.0/8"})");
    BOOST_TEST(r.status == 400, r.body);

    // Stored: still restricted after a restart on the same database.
    const int code = e.gw->stop(SIGTERM);
    check_clean_exit("tollgate", code, e.gw->process().output());
    e.gw = std::make_unique<gateway_process>(e.yaml);
    BOOST_TEST(refused_for_address(e.chat(secret)));
    r = e.admin("PATCH", "/admin/keys/svc-ip", R"({"allowed_cidrs":null})");
    BOOST_TEST(r.status == 200, r.body);
    BOOST_TEST(r.body.find(R"("allowed_cidrs":null)") != std::string::npos, r.body);
    BOOST_TEST(e.chat(secret).status == 200);
}

BOOST_AUTO_TEST_CASE(ranges_nothing_would_enforce_are_refused) {
    // The running chain has no ip_allow: the admin API refuses ranges.
    env e("", "[auth, router, usage]", false);
    const auto r =
        e.admin("POST", "/admin/keys", R"({"id":"svc-x","allowed_cidrs":["10.0.0.0/8"]})");
    BOOST_TEST(r.status == 400, r.body);
    BOOST_TEST(r.body.find("ip_allow") != std::string::npos, r.body);
}

BOOST_AUTO_TEST_CASE(check_refuses_allowed_cidrs_without_ip_allow_and_bad_ranges) {
    mock_upstream mock;
    const auto dir = make_temp_dir();
    const auto check = [&](const config_options& o) {
        const auto path = dir / "t.yaml";
        std::ofstream(path) << standard_config(mock.port(), o);
        return run_command({tollgate_binary(), "--check", "--config", path.string()}, 30s);
    };
    config_options o;
    o.policies = "[auth, router]";
    o.keys_extra = keys_extra();
    auto r = check(o);
    BOOST_TEST(r.exit_code == 1, r.output);
    BOOST_TEST(r.output.find("keys[net10].allowed_cidrs needs 'ip_allow'") != std::string::npos,
               r.output);
    o.policies = "[ip_allow, auth, router]";
    r = check(o);
    BOOST_TEST(r.exit_code == 1, r.output);
    BOOST_TEST(r.output.find("'ip_allow' must come after 'auth'") != std::string::npos, r.output);
    o.policies = "[auth, ip_allow, router]";
    o.keys_extra = "  - id: bad\n    key: tg-bad-0123456789\n    allowed_cidrs: [10.0.0.0/40]\n";
    o.server_extra = "  trusted_proxies: [proxy.example]\n";
    r = check(o);
    BOOST_TEST(r.exit_code == 1, r.output);
    BOOST_TEST(r.output.find("10.0.0.0/40") != std::string::npos, r.output);
    BOOST_TEST(r.output.find("proxy.example") != std::string::npos, r.output);
    o.keys_extra = keys_extra();
    o.server_extra = "  trusted_proxies: [127.0.0.1/32, \"::1\"]\n";
    r = check(o);
    BOOST_TEST(r.exit_code == 0, r.output);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

BOOST_AUTO_TEST_SUITE_END()
