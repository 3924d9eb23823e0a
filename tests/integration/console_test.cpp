// The admin console (/ui/ on the admin listener) against the real gateway.
// 1. Over HTTP: built into the binary, served without the token (it holds no data) but
//    opening no admin route, with a strict Content-Security-Policy and nosniff, cached by
//    content hash (versioned URLs immutable, the page revalidated, 304 on a matching
//    ETag), and every file the page and its modules load is there.
// 2. In a real browser: Debian's chromium, headless, driven by playwright-core (pinned in
//    tests/clients, installed by the clients_npm_ci fixture), through
//    tests/console/console_browser.mjs: sign in (a wrong token refused), the overview,
//    create a key and use it, its usage, edit its limit (enforced) and its allowed
//    addresses (enforced, with ip_allow in the chain), revoke it (refused),
//    providers, config and reload, keyboard and phone width; no request to another host,
//    no console error. Screenshots land in the build tree (console-screenshots/).
#define BOOST_TEST_MODULE console_integration
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <filesystem>
#include <regex>
#include <set>
#include <string>

#include "tests/support/fixtures.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/usage_records.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* admin_token = "console-admin-token-0123456789";

struct console_env {
    std::filesystem::path dir = make_temp_dir();
    mock_upstream mock;
    std::unique_ptr<gateway_process> gw;
    std::uint16_t admin = 0;

    console_env() {
        config_options o;
        o.policies = "[auth, ip_allow, rate_limit, budget, router, usage]";
        o.top_extra = std::string("admin: {listen: \"127.0.0.1:0\", token: ") + admin_token +
                      "}\nusage: {database: \"" + (dir / "usage.db").string() + "\", jsonl: \"" +
                      (dir / "usage.jsonl").string() + "\"}\n";
        gw = std::make_unique<gateway_process>(standard_config(mock.port(), o));
        admin = gw->admin_port();
    }
    ~console_env() {
        gw.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    http_response get(const std::string& target, const header_map& h = {}) const {
        return http_request(admin, "GET", target, h);
    }
};

std::string version_of(const std::string& index) {
    std::smatch m;
    BOOST_TEST_REQUIRE(std::regex_search(index, m, std::regex(R"(v/([0-9a-f]{16})/app\.js)")),
                       index);
    return m[1].str();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_AUTO_TEST_CASE(the_console_is_built_in_and_served_with_a_strict_policy) {
    console_env env;
    const auto bare = env.get("/ui");
    BOOST_TEST(bare.status == 308);
    BOOST_TEST(bare.header("location") == "/ui/");

    // No token needed for the page and its files...
    const auto index = env.get("/ui/");
    BOOST_TEST_REQUIRE(index.status == 200);
    BOOST_TEST(index.header("content-type") == "text/html; charset=utf-8");
    const std::string csp = index.header("content-security-policy");
    BOOST_TEST(csp.find("default-src 'self'") != std::string::npos, csp);
    BOOST_TEST(csp.find("script-src 'self'") != std::string::npos, csp);
    BOOST_TEST(csp.find("frame-ancestors 'none'") != std::string::npos, csp);
    BOOST_TEST(csp.find("unsafe") == std::string::npos, csp);
    BOOST_TEST(index.header("x-content-type-options") == "nosniff");
    BOOST_TEST(index.header("cache-control") == "no-cache");
    BOOST_TEST(index.body.find("<script>") == std::string::npos);  // no inline script
    const std::string etag = index.header("etag");
    BOOST_TEST_REQUIRE(!etag.empty());
    const auto again = env.get("/ui/", {{"If-None-Match", etag}});
    BOOST_TEST(again.status == 304);
    BOOST_TEST(again.body.empty());

    // ...but they open no admin route.
    BOOST_TEST(env.get("/admin/keys").status == 401);
    BOOST_TEST(env.get("/admin/config").status == 401);
    // Open only for GET: anything else is checked for the token first, as any admin path.
    BOOST_TEST(http_request(env.admin, "POST", "/ui/", {}, "").status == 401);
    BOOST_TEST(http_request(env.admin, "POST", "/ui/",
                            {{"Authorization", std::string("Bearer ") + admin_token}}, "")
                   .status == 405);

    // Every file the page names and every module a module imports is served, versioned
    // URLs cached for good.
    const std::string v = version_of(index.body);
    std::set<std::string> wanted, seen;
    const std::regex in_page(R"((?:src|href)=\"v/[0-9a-f]{16}/([a-z_]+\.(?:js|css|svg))\")");
    const std::regex import_(R"(from '\./([a-z_]+\.js)')");
    for (std::sregex_iterator it(index.body.begin(), index.body.end(), in_page), end; it != end;
         ++it)
        wanted.insert((*it)[1].str());
    BOOST_TEST(wanted.count("app.js") == 1u);
    BOOST_TEST(wanted.count("style.css") == 1u);
    while (!wanted.empty()) {
        const std::string name = *wanted.begin();
        wanted.erase(wanted.begin());
        if (!seen.insert(name).second) continue;
        BOOST_TEST_CONTEXT(name) {
            const auto r = env.get("/ui/v/" + v + "/" + name);
            BOOST_TEST_REQUIRE(r.status == 200);
            BOOST_TEST(r.header("cache-control") == "public, max-age=31536000, immutable");
            BOOST_TEST(r.header("x-content-type-options") == "nosniff");
            if (name.ends_with(".js")) {
                BOOST_TEST(r.header("content-type") == "text/javascript; charset=utf-8");
                for (std::sregex_iterator it(r.body.begin(), r.body.end(), import_), end; it != end;
                     ++it)
                    wanted.insert((*it)[1].str());
            }
            const auto cached =
                env.get("/ui/v/" + v + "/" + name, {{"If-None-Match", r.header("etag")}});
            BOOST_TEST(cached.status == 304);
        }
    }
    BOOST_TEST(seen.size() >= 8u);  // the shell, its helpers and the five pages

    // Another version's URL still gets today's file, only not cached for good; nothing
    // outside the files is reachable.
    const auto old = env.get("/ui/v/0000000000000000/app.js");
    BOOST_TEST(old.status == 200);
    BOOST_TEST(old.header("cache-control") == "no-cache");
    BOOST_TEST(env.get("/ui/v/" + v + "/nothing.js").status == 404);
    BOOST_TEST(env.get("/ui/v/" + v + "/index.html").status == 404);
    BOOST_TEST(env.get("/ui/v/" + v + "/../../admin/keys").status == 404);
    BOOST_TEST(env.get("/ui/app.js").status == 404);

    // Admin API answers are never cached (they hold secrets and spend).
    const auto keys =
        env.get("/admin/keys", {{"Authorization", std::string("Bearer ") + admin_token}});
    BOOST_TEST(keys.status == 200);
    BOOST_TEST(keys.header("cache-control") == "no-store");
    BOOST_TEST(keys.header("x-content-type-options") == "nosniff");
}

BOOST_AUTO_TEST_CASE(an_operator_runs_the_gateway_from_the_console_in_a_real_browser) {
    const std::filesystem::path clients = TOLLGATE_CLIENTS_DIR;
    BOOST_TEST_REQUIRE(
        std::filesystem::exists(clients / "node_modules/playwright-core/package.json"),
        "playwright-core is not installed in " << clients.string() << " (the clients_npm_ci test)");
    BOOST_TEST_REQUIRE(
        std::filesystem::exists(TOLLGATE_CHROMIUM),
        TOLLGATE_CHROMIUM << " is missing (deploy/install-deps.sh installs chromium)");
    console_env env;
    const std::filesystem::path shots = TOLLGATE_CONSOLE_SHOTS;
    std::error_code ec;
    std::filesystem::remove_all(shots, ec);
    const auto r =
        run_command({TOLLGATE_NODE, (clients / "console_browser.mjs").string()}, 240s,
                    {{"TOLLGATE_ADMIN_URL", "http://127.0.0.1:" + std::to_string(env.admin)},
                     {"TOLLGATE_API_URL", "http://127.0.0.1:" + std::to_string(env.gw->port())},
                     {"TOLLGATE_ADMIN_TOKEN", admin_token},
                     {"TOLLGATE_MODEL", "gpt-4o-mini"},
                     {"TOLLGATE_KEY", client_key_a},
                     {"TOLLGATE_SHOTS", shots.string()},
                     {"CHROMIUM", TOLLGATE_CHROMIUM},
                     {"NO_PROXY", "*"}});
    BOOST_TEST(r.exit_code == 0, "the browser run reported:\n" << r.output);
    BOOST_TEST(r.output.find("CONSOLE OK") != std::string::npos, r.output);
    for (const char* shot :
         {"signin-refused.png", "overview.png", "usage.png", "keys.png", "keys-secret-once.png",
          "providers.png", "config.png", "overview-phone.png"})
        BOOST_TEST(std::filesystem::file_size(shots / shot, ec) > 1000u, shot);

    // The key made in the browser was billed like any other: two answered requests.
    const int code = env.gw->stop(SIGTERM);
    check_clean_exit("tollgate", code, env.gw->process().output());
    int answered = 0;
    for (const auto& rec : read_records(env.dir / "usage.jsonl"))
        if (str(rec.key_id) == "console-made" && rec.status == 200) ++answered;
    BOOST_TEST(answered == 2);
}

BOOST_AUTO_TEST_SUITE_END()
