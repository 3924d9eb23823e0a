// Official client libraries against the real gateway and the real mock upstream: the
// `openai` npm client (pinned in tests/clients/package-lock.json, installed into the build
// tree by the `clients_npm_ci` test fixture) runs `responses.create`, `responses.stream`,
// a function tool round trip and a streamed chat completion through a native target, a
// `responses: translate` target and an Anthropic target (tests/clients/openai_responses.mjs).
// The SDK's stream helper rebuilds the Response from the event sequence and throws on one
// it cannot follow, so a real consumer checks our translation. Then every request the
// client made has exactly one usage record, with the usage the client was told.
#define BOOST_TEST_MODULE clients_integration
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <simdjson.h>

#include <filesystem>
#include <map>
#include <sstream>
#include <string>

#include "tests/support/fixtures.hpp"
#include "tests/support/usage_records.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* client_key = "tg-clients-key-0123456789abcdefgh";

std::string gateway_yaml(std::uint16_t mock_port, const std::filesystem::path& dir) {
    const std::string base = "http://127.0.0.1:" + std::to_string(mock_port);
    std::string y = "server:\n  listen: [\"127.0.0.1:0\"]\n  threads: 2\n";
    y += "providers:\n";
    y += "  nat: {kind: openai, base_url: \"" + base + "/v1\", api_key: sk-a}\n";
    y += "  tr: {kind: openai, base_url: \"" + base +
         "/v1\", api_key: sk-b, responses: translate}\n";
    y += "  ant: {kind: anthropic, base_url: \"" + base + "\", api_key: sk-c}\n";
    y += "models:\n";
    y += "  m-nat: {targets: [{provider: nat, model: up-nat}]}\n";
    y += "  m-tr: {targets: [{provider: tr, model: up-tr}]}\n";
    y += "  m-ant: {targets: [{provider: ant, model: up-ant}]}\n";
    y += std::string("keys:\n  - id: team-c\n    key: ") + client_key + "\n";
    y += "routing:\n  retries: 0\n";
    y += "usage:\n  database: \"" + (dir / "usage.db").string() + "\"\n  jsonl: \"" +
         (dir / "usage.jsonl").string() + "\"\n";
    y += "policies: [auth, rate_limit, budget, router, usage]\n";
    return y;
}

struct saw_line {
    std::string id;
    std::int64_t input = -1, output = -1;
};

std::vector<saw_line> saw_lines(const std::string& output) {
    std::vector<saw_line> out;
    std::istringstream in(output);
    simdjson::dom::parser parser;
    for (std::string line; std::getline(in, line);) {
        if (!line.starts_with("SAW ")) continue;
        simdjson::dom::element e;
        if (parser.parse(line.substr(4)).get(e)) continue;
        saw_line s;
        std::string_view id;
        if (!e["id"].get(id)) s.id = std::string(id);
        if (e["input"].get(s.input)) s.input = -1;
        if (e["output"].get(s.output)) s.output = -1;
        out.push_back(s);
    }
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_AUTO_TEST_CASE(the_openai_npm_client_speaks_responses_and_chat_through_the_gateway) {
    const std::filesystem::path clients = TOLLGATE_CLIENTS_DIR;
    BOOST_TEST_REQUIRE(std::filesystem::exists(clients / "node_modules/openai/package.json"),
                       "the openai client is not installed in " << clients.string()
                                                                << " (the clients_npm_ci test)");
    mock_upstream mock;
    const auto dir = make_temp_dir();
    std::unique_ptr<gateway_process> gw =
        std::make_unique<gateway_process>(gateway_yaml(mock.port(), dir));
    const auto r = run_command(
        {TOLLGATE_NODE, (clients / "openai_responses.mjs").string()}, 120s,
        {{"TOLLGATE_BASE_URL", "http://127.0.0.1:" + std::to_string(gw->port()) + "/v1"},
         {"TOLLGATE_KEY", client_key},
         {"TOLLGATE_MODELS", "m-nat,m-tr,m-ant"},
         {"TOLLGATE_TRANSLATED", "m-tr,m-ant"},
         {"NODE_PATH", (clients / "node_modules").string()},
         {"NO_PROXY", "*"}});
    BOOST_TEST(r.exit_code == 0, "the client reported:\n" << r.output);

    // One record per request the client made, billed with what the client was told.
    const auto seen = saw_lines(r.output);
    BOOST_TEST(seen.size() == 3u * 6u, r.output);
    const int code = gw->stop(SIGTERM);  // flushes the ledger
    check_clean_exit("tollgate", code, gw->process().output());
    const auto records = read_records(dir / "usage.jsonl");
    std::map<std::string, int> per_id;
    for (const auto& rec : records) ++per_id[str(rec.request_id)];
    for (const auto& s : seen) {
        BOOST_TEST_CONTEXT("request " << s.id) {
            const auto mine = with_id(records, s.id);
            BOOST_TEST_REQUIRE(mine.size() == 1u);
            const auto& rec = mine.front();
            check_shape(rec);
            BOOST_TEST(rec.status == 200);
            BOOST_TEST(str(rec.usage_source) == "upstream");
            BOOST_TEST(num(rec.prompt_tokens) == s.input);
            BOOST_TEST(num(rec.completion_tokens) == s.output);
            BOOST_TEST(str(rec.key_id) == "team-c");
        }
    }
    BOOST_TEST(records.size() == seen.size());
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

BOOST_AUTO_TEST_SUITE_END()
