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
           "models:\n" + models + "keys: [{id: k, key: " + client_key_a +
           "}]\npolicies: [auth, router]\n";
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
    gateway_process gw(
        config("  az: {kind: azure, base_url: \"http://127.0.0.1:" + std::to_string(mock.port()) +
                   "\", api_key: " + provider_key + ", api_version: \"2024-10-21\"}\n",
               "  gpt: {targets: [{provider: az, model: my-deployment}]}\n"));
    auto r = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("az", false, "gpt"));
    BOOST_TEST(r.status == 200);
    const auto last = mock.last_request();
    BOOST_TEST(
        last.find(
            R"("target":"/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21")") !=
        std::string::npos);
    BOOST_TEST(last.find(std::string(R"("api-key":")") + provider_key + "\"") != std::string::npos);
    BOOST_TEST(last.find("authorization") == std::string::npos);
    auto e = http_request(gw.port(), "POST", "/v1/embeddings", auth_headers(),
                          R"({"model":"gpt","input":"x"})");
    BOOST_TEST(e.status == 200);
    BOOST_TEST(
        mock.last_request().find("/openai/deployments/my-deployment/embeddings?api-version=") !=
        std::string::npos);
}

namespace {

struct anthropic_env {
    mock_upstream anth;  // serves /v1/messages (Anthropic mode)
    mock_upstream oai;   // serves /v1/chat/completions
    gateway_process gw{
        config("  anthropic: {kind: anthropic, base_url: \"http://127.0.0.1:" +
                   std::to_string(anth.port()) + "\", api_key: " + provider_key +
                   "}\n"
                   "  openai: {kind: openai, base_url: \"http://127.0.0.1:" +
                   std::to_string(oai.port()) + "/v1\", api_key: " + provider_key + "}\n",
               "  claude: {targets: [{provider: anthropic, model: claude-3-5-haiku-latest}]}\n"
               "  gpt: {targets: [{provider: openai, model: gpt-upstream}]}\n")};
};

std::string reassemble_openai(const std::vector<std::string>& events) {
    std::string out;
    for (const auto& e : events) {
        const std::string key = R"("content":")";
        for (auto p = e.find(key); p != std::string::npos; p = e.find(key, p + 1)) {
            const auto start = p + key.size();
            out += e.substr(start, e.find('"', start) - start);
        }
    }
    return out;
}

std::string reassemble_anthropic(const std::vector<std::string>& events) {
    std::string out;
    for (const auto& e : events) {
        const std::string key = R"("text_delta","text":")";
        const auto p = e.find(key);
        if (p == std::string::npos) continue;
        const auto start = p + key.size();
        out += e.substr(start, e.find('"', start) - start);
    }
    return out;
}

const std::string tools_openai =
    R"("tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{}}}}])";
const std::string tools_anthropic =
    R"("tools":[{"name":"get_weather","description":"d","input_schema":{"type":"object","properties":{}}}])";

}  // namespace

BOOST_AUTO_TEST_CASE(openai_request_to_an_anthropic_target_is_translated_both_ways) {
    anthropic_env e;
    auto r = http_request(
        e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
        R"({"model":"claude","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi #mock chunks=4"}]})");
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body.find(R"("object":"chat.completion")") != std::string::npos);
    BOOST_TEST(r.body.find(R"("content":")" + expected_content(4) + "\"") != std::string::npos);
    BOOST_TEST(r.body.find(R"("completion_tokens":4)") != std::string::npos);
    const auto last = e.anth.last_request();
    BOOST_TEST(last.find(R"("target":"/v1/messages")") != std::string::npos);
    BOOST_TEST(last.find(R"(\"system\":\"be brief\")") != std::string::npos);
    BOOST_TEST(last.find(R"(\"max_tokens\":4096)") != std::string::npos);  // default_max_tokens
    BOOST_TEST(last.find(std::string(R"("x-api-key":")") + provider_key) != std::string::npos);
    BOOST_TEST(last.find(client_key_a) == std::string::npos);

    auto s = http_request(
        e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
        R"({"model":"claude","stream":true,"messages":[{"role":"user","content":"hi #mock chunks=6"}]})");
    BOOST_TEST(s.status == 200);
    const auto events = sse_data(s.body);
    BOOST_REQUIRE(!events.empty());
    BOOST_TEST(events.back() == "[DONE]");
    BOOST_TEST(reassemble_openai(events) == expected_content(6));
    for (const auto& ev : events) BOOST_TEST(ev.find(R"("choices":[])") == std::string::npos);

    auto t = http_request(
        e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
        R"({"model":"claude","stream":true,"messages":[{"role":"user","content":"w"}],)" +
            tools_openai + "}");
    BOOST_TEST(t.status == 200);
    BOOST_TEST(t.body.find(R"("name":"get_weather")") != std::string::npos);
    BOOST_TEST(t.body.find(R"("finish_reason":"tool_calls")") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(anthropic_client_reaches_an_anthropic_target_natively) {
    anthropic_env e;
    auto r = http_request(
        e.gw.port(), "POST", "/v1/messages",
        {{"x-api-key", client_key_a}, {"anthropic-version", "2023-06-01"}},
        R"({"model":"claude","max_tokens":100,"messages":[{"role":"user","content":"hi #mock chunks=3"}]})");
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body.find(R"("type":"message")") != std::string::npos);
    BOOST_TEST(r.body.find(expected_content(3)) != std::string::npos);
    BOOST_TEST(e.anth.last_request().find(R"(\"model\":\"claude-3-5-haiku-latest\")") !=
               std::string::npos);
}

BOOST_AUTO_TEST_CASE(anthropic_client_reaches_an_openai_target_through_translation) {
    anthropic_env e;
    const header_map h{{"x-api-key", client_key_a}, {"anthropic-version", "2023-06-01"}};
    auto r = http_request(
        e.gw.port(), "POST", "/v1/messages", h,
        R"({"model":"gpt","max_tokens":100,"system":"sys","messages":[{"role":"user","content":"hi #mock chunks=5"}]})");
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body.find(R"("type":"message")") != std::string::npos);
    BOOST_TEST(r.body.find(R"("text":")" + expected_content(5) + "\"") != std::string::npos);
    BOOST_TEST(r.body.find(R"("output_tokens":5)") != std::string::npos);
    const auto last = e.oai.last_request();
    BOOST_TEST(last.find(R"("target":"/v1/chat/completions")") != std::string::npos);
    BOOST_TEST(last.find(R"(\"model\":\"gpt-upstream\")") != std::string::npos);

    auto s = http_request(
        e.gw.port(), "POST", "/v1/messages", h,
        R"({"model":"gpt","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi #mock chunks=7"}]})");
    BOOST_TEST(s.status == 200);
    BOOST_TEST(s.body.find("event: message_start") != std::string::npos);
    BOOST_TEST(s.body.find("event: message_stop") != std::string::npos);
    BOOST_TEST(reassemble_anthropic(sse_data(s.body)) == expected_content(7));

    auto t = http_request(
        e.gw.port(), "POST", "/v1/messages", h,
        R"({"model":"gpt","max_tokens":100,"messages":[{"role":"user","content":"w"}],)" +
            tools_anthropic + "}");
    BOOST_TEST(t.status == 200);
    BOOST_TEST(t.body.find(R"("type":"tool_use")") != std::string::npos);
    BOOST_TEST(t.body.find(R"("name":"get_weather")") != std::string::npos);
    BOOST_TEST(t.body.find(R"("stop_reason":"tool_use")") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(anthropic_upstream_errors_reach_an_openai_client_in_its_shape) {
    anthropic_env e;
    auto r = http_request(
        e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
        R"({"model":"claude","messages":[{"role":"user","content":"#mock status=400"}]})");
    BOOST_TEST(r.status == 400);
    BOOST_TEST(r.body.find(R"({"error":{"message":"mock error")") == 0u);
    auto s = http_request(
        e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
        R"({"model":"claude","stream":true,"messages":[{"role":"user","content":"#mock chunks=5 sse_error=2"}]})");
    BOOST_TEST(s.status == 200);
    BOOST_TEST(s.body.find(R"("error")") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// The Responses API (POST /v1/responses): native to an openai target, translated through
// chat completions (responses: translate) and through the Messages API (anthropic).

namespace {

struct responses_env {
    mock_upstream mock;  // serves /v1/responses, /v1/chat/completions and /v1/messages
    gateway_process gw{
        config("  nat: {kind: openai, base_url: \"http://127.0.0.1:" + std::to_string(mock.port()) +
                   "/v1\", api_key: " + provider_key +
                   "}\n"
                   "  tr: {kind: openai, base_url: \"http://127.0.0.1:" +
                   std::to_string(mock.port()) + "/v1\", api_key: " + provider_key +
                   ", responses: translate}\n"
                   "  ant: {kind: anthropic, base_url: \"http://127.0.0.1:" +
                   std::to_string(mock.port()) + "\", api_key: " + provider_key + "}\n",
               "  m-nat: {targets: [{provider: nat, model: up-nat}]}\n"
               "  m-tr: {targets: [{provider: tr, model: up-tr}]}\n"
               "  m-ant: {targets: [{provider: ant, model: up-ant}]}\n")};
};

// Concatenated response.output_text.delta deltas, and the sequence numbers in order.
std::string deltas_of(const std::vector<std::string>& events, bool& sequential) {
    std::string text;
    sequential = true;
    long expected = 0;
    for (const auto& e : events) {
        const auto sn = e.find("\"sequence_number\":");
        if (sn == std::string::npos || std::stol(e.substr(sn + 18)) != expected++)
            sequential = false;
        if (e.find("\"type\":\"response.output_text.delta\"") == std::string::npos) continue;
        const auto d = e.find("\"delta\":\"");
        if (d != std::string::npos) text += e.substr(d + 9, e.find('"', d + 9) - d - 9);
    }
    return text;
}

}  // namespace

BOOST_AUTO_TEST_CASE(responses_reach_native_and_translated_targets_streamed_and_not) {
    responses_env e;
    for (const std::string model : {"m-nat", "m-tr", "m-ant"}) {
        BOOST_TEST_CONTEXT(model) {
            auto r = http_request(
                e.gw.port(), "POST", "/v1/responses", auth_headers(),
                R"({"model":")" + model +
                    R"(","instructions":"be brief","max_output_tokens":77,"input":"hi #mock chunks=3"})");
            BOOST_TEST(r.status == 200, r.body);
            BOOST_TEST(r.body.find(R"("object":"response")") != std::string::npos);
            BOOST_TEST(r.body.find(R"("text":"word0 word1 word2 ")") != std::string::npos, r.body);
            BOOST_TEST(r.body.find(R"("output_tokens":3)") != std::string::npos, r.body);
            const auto last = e.mock.last_request();
            if (model == "m-nat") {
                BOOST_TEST(last.find(R"("target":"/v1/responses")") != std::string::npos);
            } else if (model == "m-tr") {
                // instructions and max_output_tokens arrive translated.
                BOOST_TEST(last.find(R"("target":"/v1/chat/completions")") != std::string::npos);
                BOOST_TEST(last.find(R"(\"role\":\"system\")") != std::string::npos, last);
                BOOST_TEST(last.find(R"(\"max_tokens\":77)") != std::string::npos, last);
            } else {
                BOOST_TEST(last.find(R"("target":"/v1/messages")") != std::string::npos);
                BOOST_TEST(last.find(R"(\"system\":)") != std::string::npos, last);
                BOOST_TEST(last.find(R"(\"max_tokens\":77)") != std::string::npos, last);
            }
            auto s = http_request(
                e.gw.port(), "POST", "/v1/responses", auth_headers(),
                R"({"model":")" + model + R"(","stream":true,"input":"hi #mock chunks=4"})");
            BOOST_TEST(s.status == 200);
            const auto events = sse_data(s.body);
            bool sequential = false;
            BOOST_TEST(deltas_of(events, sequential) == expected_content(4));
            BOOST_TEST(sequential);
            BOOST_TEST_REQUIRE(!events.empty());
            BOOST_TEST(events.back().find("\"type\":\"response.completed\"") != std::string::npos);
            BOOST_TEST(events.back().find(R"("output_tokens":4)") != std::string::npos);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_function_tool_round_trip_through_a_translated_target) {
    responses_env e;
    const std::string tools =
        R"("tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}}])";
    for (const std::string model : {"m-tr", "m-ant", "m-nat"}) {
        BOOST_TEST_CONTEXT(model) {
            auto call =
                http_request(e.gw.port(), "POST", "/v1/responses", auth_headers(),
                             R"({"model":")" + model + R"(","input":"weather?",)" + tools + "}");
            BOOST_TEST(call.status == 200, call.body);
            BOOST_TEST(call.body.find(R"("type":"function_call")") != std::string::npos, call.body);
            BOOST_TEST(call.body.find(R"("name":"get_weather")") != std::string::npos);
            const auto at = call.body.find(R"("call_id":")");
            BOOST_TEST_REQUIRE(at != std::string::npos);
            const auto call_id = call.body.substr(at + 11, call.body.find('"', at + 11) - at - 11);
            auto answer = http_request(e.gw.port(), "POST", "/v1/responses", auth_headers(),
                                       R"({"model":")" + model +
                                           R"(","input":[{"role":"user","content":"weather?"},)"
                                           R"({"type":"function_call","call_id":")" +
                                           call_id +
                                           R"(","name":"get_weather","arguments":"{}"},)"
                                           R"({"type":"function_call_output","call_id":")" +
                                           call_id + R"(","output":"sunny"}],)" + tools + "}");
            BOOST_TEST(answer.status == 200, answer.body);
            // Every mock answers a tool's result with text (translated: a `tool` message,
            // a `tool_result` block).
            BOOST_TEST(answer.body.find(R"("type":"output_text")") != std::string::npos,
                       answer.body);
            BOOST_TEST(answer.body.find(R"("type":"function_call")") == std::string::npos,
                       answer.body);
            if (model == "m-tr")
                BOOST_TEST(e.mock.last_request().find(R"(\"role\":\"tool\")") != std::string::npos);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_field_a_translated_target_cannot_serve_is_refused_before_sending) {
    responses_env e;
    const auto requests = [&] {
        const auto st = e.mock.stats();
        const auto at = st.find("\"requests\":");
        return at == std::string::npos ? -1L : std::stol(st.substr(at + 11));
    };
    const long before = requests();
    for (const std::string body :
         {R"({"model":"m-tr","input":"x","previous_response_id":"resp_1"})",
          R"({"model":"m-ant","input":"x","tools":[{"type":"web_search"}]})",
          R"({"model":"m-ant","input":"x","background":true})"}) {
        auto r = http_request(e.gw.port(), "POST", "/v1/responses", auth_headers(), body);
        BOOST_TEST(r.status == 400, body);
        BOOST_TEST(r.body.find(R"("code":"unsupported_on_target")") != std::string::npos, r.body);
        BOOST_TEST(r.body.find("target: provider") != std::string::npos, r.body);
    }
    BOOST_TEST(requests() == before);  // nothing was sent
    // Natively the same field goes through.
    auto n = http_request(e.gw.port(), "POST", "/v1/responses", auth_headers(),
                          R"({"model":"m-nat","input":"x","previous_response_id":"resp_1"})");
    BOOST_TEST(n.status == 200);
    // A body without input is the client's error on any target.
    auto bad =
        http_request(e.gw.port(), "POST", "/v1/responses", auth_headers(), R"({"model":"m-nat"})");
    BOOST_TEST(bad.status == 400);
}
