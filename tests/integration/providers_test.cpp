// Provider kinds through the real binary: Azure OpenAI's URL and key header; Anthropic
// (native /v1/messages, and OpenAI chat translated both ways) against the mock's
// Anthropic mode.
#define BOOST_TEST_MODULE providers_integration
#include <boost/test/unit_test.hpp>

#include <string>

#include "tests/support/fixtures.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

std::string config(const std::string& providers, const std::string& models) {
    return "server: {listen: [\"127.0.0.1:0\"], threads: 2}\nproviders:\n" + providers +
           "models:\n" + models + "keys: [{id: k, key: " + client_key_a + "}]\npolicies: [auth, router]\n";
}

std::string expected_content(int chunks) {
    std::string s;
    for (int i = 0; i < chunks; ++i) s += "word" + std::to_string(i) + " ";
    return s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_AUTO_TEST_CASE(azure_gets_its_deployment_url_and_api_key_header) {
    mock_upstream mock;
    gateway_process gw(config("  az: {kind: azure, base_url: \"http://127.0.0.1:" + std::to_string(mock.port()) +
                                  "\", api_key: " + provider_key + ", api_version: \"2024-10-21\"}\n",
                              "  gpt: {targets: [{provider: az, model: my-deployment}]}\n"));
    auto r = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(), chat_body("az", false, "gpt"));
    BOOST_TEST(r.status == 200);
    const auto last = mock.last_request();
    BOOST_TEST(last.find(R"("target":"/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21")") !=
               std::string::npos);
    BOOST_TEST(last.find(std::string(R"("api-key":")") + provider_key + "\"") != std::string::npos);
    BOOST_TEST(last.find("authorization") == std::string::npos);
    auto e = http_request(gw.port(), "POST", "/v1/embeddings", auth_headers(), R"({"model":"gpt","input":"x"})");
    BOOST_TEST(e.status == 200);
    BOOST_TEST(mock.last_request().find("/openai/deployments/my-deployment/embeddings?api-version=") !=
               std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
