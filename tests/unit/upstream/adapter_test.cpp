#define BOOST_TEST_MODULE upstream_adapter
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "gateway/core/body_parser.hpp"
#include "gateway/core/sse_framer.hpp"
#include "gateway/upstream/adapter.hpp"

using namespace tollgate;
namespace bdata = boost::unit_test::data;

namespace {

// A parsed client request, as the pipeline holds it.
struct request {
    std::string body;
    core::request_context ctx;
    request(core::endpoint ep, std::string b) : body(std::move(b)) {
        ctx.ep = ep;
        ctx.body = body;
        core::body_parser parser;
        const auto err = parser.parse(ep, body, ctx.req);
        BOOST_REQUIRE_MESSAGE(!err, err.message);
    }
};

config::provider_config provider(config::provider_kind kind) {
    config::provider_config p;
    p.name = "p";
    p.kind = kind;
    return p;
}

// What an adapter made of an upstream stream fed in pieces of `piece` bytes.
struct run_result {
    std::string out;
    core::usage_meter meter;
    bool failed = false;
};

run_result feed(upstream::adapter& a, std::string_view stream, std::size_t piece, bool complete) {
    run_result r;
    core::sse_framer framer(1 << 20);
    auto on_event = [&](const core::sse_event& ev) { a.on_event(ev, r.out, r.meter); };
    for (std::size_t i = 0; i < stream.size(); i += piece)
        BOOST_REQUIRE(framer.feed(stream.substr(i, piece), on_event));
    if (complete) framer.finish(on_event);
    a.finish(complete, r.out, r.meter);
    r.failed = a.stream_failed();
    return r;
}

// An OpenAI chunk stream of `n` content deltas ("word<i> "); `usage_null` puts
// "usage":null in every chunk (what include_usage does); `usage` adds the final usage
// chunk with those figures.
std::string openai_stream(int n, bool usage_null, bool usage, int prompt = 11) {
    const std::string tail = usage_null ? R"(,"usage":null})" : "}";
    std::string s =
        R"(data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}])" +
        tail + "\n\n";
    for (int i = 0; i < n; ++i)
        s +=
            R"(data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"word)" +
            std::to_string(i) + R"( "},"finish_reason":null}])" + tail + "\n\n";
    s +=
        R"(data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}])" +
        tail + "\n\n";
    if (usage)
        s +=
            R"(data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":)" +
            std::to_string(prompt) + R"(,"completion_tokens":)" + std::to_string(n) +
            R"(,"total_tokens":)" + std::to_string(prompt + n) + "}}\n\n";
    s += "data: [DONE]\n\n";
    return s;
}

// An Anthropic event stream: message_start (provisional 1 output token), `n` text
// deltas, then (when `complete`) message_delta with the final output count and
// message_stop.
std::string anthropic_stream(int n, bool complete, int prompt = 25) {
    std::string s =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
        "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],"
        "\"stop_reason\":null,\"usage\":{\"input_tokens\":" +
        std::to_string(prompt) + ",\"output_tokens\":1}}}\n\n";
    s += "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
         "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
    s += "event: ping\ndata: {\"type\": \"ping\"}\n\n";
    for (int i = 0; i < n; ++i)
        s += "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
             "\"delta\":{\"type\":\"text_delta\",\"text\":\"word" +
             std::to_string(i) + " \"}}\n\n";
    if (!complete) return s;
    s += "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
    s += "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
         "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":" +
         std::to_string(n) + "}}\n\n";
    s += "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    return s;
}

const std::string chat_stream_request =
    R"({"model":"gpt","stream":true,"messages":[{"role":"user","content":"Hello there, how are you?"}]})";
const std::string chat_stream_request_usage =
    R"({"model":"gpt","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello there, how are you?"}]})";
const std::string messages_stream_request =
    R"({"model":"claude","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Hello there, how are you?"}]})";

const auto pieces = bdata::make({1, 2, 3, 5, 7, 4096});

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(the_factory_picks_by_endpoint_and_provider_kind) {
    request chat(core::endpoint::chat_completions, chat_stream_request);
    request emb(core::endpoint::embeddings, R"({"model":"e","input":"hi"})");
    request msg(core::endpoint::messages, messages_stream_request);
    const auto openai = provider(config::provider_kind::openai);
    const auto azure = provider(config::provider_kind::azure);
    const auto anthropic = provider(config::provider_kind::anthropic);
    using ep = core::endpoint;
    BOOST_TEST(
        (upstream::make_adapter(chat.ctx, openai, 0)->upstream_endpoint() == ep::chat_completions));
    BOOST_TEST(
        (upstream::make_adapter(chat.ctx, azure, 0)->upstream_endpoint() == ep::chat_completions));
    BOOST_TEST(
        (upstream::make_adapter(chat.ctx, anthropic, 0)->upstream_endpoint() == ep::messages));
    BOOST_TEST(
        (upstream::make_adapter(msg.ctx, anthropic, 0)->upstream_endpoint() == ep::messages));
    BOOST_TEST(
        (upstream::make_adapter(msg.ctx, openai, 0)->upstream_endpoint() == ep::chat_completions));
    BOOST_TEST((upstream::make_adapter(emb.ctx, openai, 0)->upstream_endpoint() == ep::embeddings));
    BOOST_TEST(!upstream::make_adapter(emb.ctx, anthropic, 0));
}

BOOST_AUTO_TEST_CASE(openai_streams_are_asked_for_usage) {
    request r(core::endpoint::chat_completions, chat_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
    core::spliced_body body;
    BOOST_TEST(a->render_request(r.ctx, "up-model", body).empty());
    const auto sent = body.joined();
    BOOST_TEST(sent.find("\"include_usage\":true") != std::string::npos, sent);
    BOOST_TEST(sent.find("\"up-model\"") != std::string::npos, sent);
}

// Case 6: a client that did not ask for usage sees no trace of it.
BOOST_DATA_TEST_CASE(forced_usage_leaves_no_trace_and_is_final, pieces, piece) {
    request r(core::endpoint::chat_completions, chat_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
    core::spliced_body body;
    a->render_request(r.ctx, "m", body);
    const auto res = feed(*a, openai_stream(5, true, true), static_cast<std::size_t>(piece), true);
    BOOST_TEST(res.out.find("usage") == std::string::npos, res.out);
    BOOST_TEST(res.out == openai_stream(5, false, false));
    BOOST_TEST(res.meter.has_final());
    const auto u = res.meter.result(1, true);
    BOOST_TEST(u.prompt_tokens == 11u);
    BOOST_TEST(u.completion_tokens == 5u);
    BOOST_TEST(!res.failed);
}

BOOST_DATA_TEST_CASE(a_client_that_asked_for_usage_gets_the_stream_unchanged, pieces, piece) {
    request r(core::endpoint::chat_completions, chat_stream_request_usage);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
    core::spliced_body body;
    a->render_request(r.ctx, "m", body);
    const auto stream = openai_stream(4, true, true);
    const auto res = feed(*a, stream, static_cast<std::size_t>(piece), true);
    BOOST_TEST(res.out == stream);
    BOOST_TEST(res.meter.has_final());
}

BOOST_DATA_TEST_CASE(an_openai_stream_without_usage_is_estimated_from_its_text, pieces, piece) {
    request r(core::endpoint::chat_completions, chat_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
    core::spliced_body body;
    a->render_request(r.ctx, "m", body);
    const auto res =
        feed(*a, openai_stream(40, false, false), static_cast<std::size_t>(piece), true);
    BOOST_TEST(!res.meter.has_final());
    const auto u = res.meter.result(r.ctx.req.prompt_tokens, true);
    BOOST_TEST(!u.from_upstream);
    BOOST_TEST(u.prompt_tokens == r.ctx.req.prompt_tokens);
    BOOST_TEST(u.completion_tokens >= 40u);  // "wordN " is at least one token each
}

BOOST_DATA_TEST_CASE(a_running_usage_count_is_final_only_when_the_stream_ends_well, pieces, piece) {
    // Servers that repeat usage in every chunk (vLLM's continuous usage stats).
    std::string chunks;
    for (int i = 1; i <= 3; ++i)
        chunks +=
            R"(data: {"choices":[{"index":0,"delta":{"content":"ab"}}],"usage":{"prompt_tokens":9,"completion_tokens":)" +
            std::to_string(i) + "}}\n\n";
    struct variant {
        std::string stream;
        bool complete, final;
    };
    const variant variants[] = {
        {chunks + "data: [DONE]\n\n", true, true},
        {chunks + "data: [DONE]\n\n", false, false},  // the connection broke
        {chunks, true, false},                        // no [DONE], no finish_reason
        {chunks + R"(data: {"error":{"message":"x"}})"
                  "\n\ndata: [DONE]\n\n",
         true, false},
    };
    for (const auto& v : variants) {
        request r(core::endpoint::chat_completions, chat_stream_request_usage);
        auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
        core::spliced_body body;
        a->render_request(r.ctx, "m", body);
        const auto res = feed(*a, v.stream, static_cast<std::size_t>(piece), v.complete);
        BOOST_TEST(res.meter.has_final() == v.final, v.stream);
        const auto u = res.meter.result(2, true);
        BOOST_TEST(u.prompt_tokens == 9u);
        BOOST_TEST(u.completion_tokens >= 3u);
    }
}

BOOST_DATA_TEST_CASE(cjk_text_received_is_estimated_a_token_a_character, pieces, piece) {
    request r(core::endpoint::chat_completions, chat_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
    core::spliced_body body;
    a->render_request(r.ctx, "m", body);
    std::string stream;
    for (int i = 0; i < 10; ++i)  // 10 × 4 CJK characters, and 10 × 1 escaped one
        stream += R"(data: {"choices":[{"index":0,"delta":{"content":")"
                  "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c\\u4e16"
                  R"("}}]})"
                  "\n\n";
    const auto res = feed(*a, stream, static_cast<std::size_t>(piece), false);
    BOOST_TEST(res.meter.result(1, true).completion_tokens >= 50u);
}

BOOST_DATA_TEST_CASE(an_openai_error_inside_the_stream_fails_it, pieces, piece) {
    request r(core::endpoint::chat_completions, chat_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
    core::spliced_body body;
    a->render_request(r.ctx, "m", body);
    const std::string stream =
        R"(data: {"choices":[{"index":0,"delta":{"content":"ab"}}],"usage":null})"
        "\n\n"
        R"(data: {"error":{"message":"overloaded","type":"server_error"}})"
        "\n\n";
    const auto res = feed(*a, stream, static_cast<std::size_t>(piece), true);
    BOOST_TEST(res.failed);
    BOOST_TEST(res.out.find("overloaded") != std::string::npos);
}

// Case 3: an Anthropic stream cut after 20 of 40 deltas is estimated, above
// message_start's provisional output figure.
BOOST_DATA_TEST_CASE(an_anthropic_stream_cut_short_is_estimated_above_the_provisional_figure,
                     pieces, piece) {
    request r(core::endpoint::messages, messages_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::anthropic), 0);
    core::spliced_body body;
    a->render_request(r.ctx, "m", body);
    const auto stream = anthropic_stream(20, false);
    const auto res = feed(*a, stream, static_cast<std::size_t>(piece), false);
    BOOST_TEST(res.out == stream);  // native: as it came
    BOOST_TEST(!res.meter.has_final());
    const auto u = res.meter.result(r.ctx.req.prompt_tokens, true);
    BOOST_TEST(!u.from_upstream);
    BOOST_TEST(u.prompt_tokens == 25u);  // message_start's input_tokens, above the estimate
    BOOST_TEST(u.completion_tokens >= 20u);
}

BOOST_DATA_TEST_CASE(an_anthropic_stream_is_final_at_its_message_delta, pieces, piece) {
    request r(core::endpoint::messages, messages_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::anthropic), 0);
    core::spliced_body body;
    a->render_request(r.ctx, "m", body);
    const auto res = feed(*a, anthropic_stream(40, true), static_cast<std::size_t>(piece), true);
    BOOST_TEST(res.meter.has_final());
    const auto u = res.meter.result(1, true);
    BOOST_TEST(u.prompt_tokens == 25u);
    BOOST_TEST(u.completion_tokens == 40u);
}

// Cases 1 and 2: /v1/messages to an OpenAI-kind target. The translator's made-up
// message_start usage never counts as the upstream's.
BOOST_DATA_TEST_CASE(messages_via_openai_cut_short_is_estimated_never_zero, pieces, piece) {
    request r(core::endpoint::messages, messages_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
    core::spliced_body body;
    BOOST_TEST(a->render_request(r.ctx, "m", body).empty());
    BOOST_TEST(body.joined().find("\"include_usage\":true") != std::string::npos);
    auto stream = openai_stream(10, true, true);
    stream.resize(stream.find("word3"));  // the client left after three deltas
    stream.resize(stream.rfind("\n\n") + 2);
    const auto res = feed(*a, stream, static_cast<std::size_t>(piece), false);
    BOOST_TEST(res.out.find("event: message_start") != std::string::npos);
    BOOST_TEST(!res.meter.has_final());
    const auto u = res.meter.result(r.ctx.req.prompt_tokens, true);
    BOOST_TEST(!u.from_upstream);
    BOOST_TEST(u.prompt_tokens > 0u);
    BOOST_TEST(u.completion_tokens >= 3u);
}

BOOST_DATA_TEST_CASE(messages_via_openai_without_a_usage_chunk_is_estimated, pieces, piece) {
    request r(core::endpoint::messages, messages_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
    core::spliced_body body;
    a->render_request(r.ctx, "m", body);
    const auto res =
        feed(*a, openai_stream(6, false, false), static_cast<std::size_t>(piece), true);
    BOOST_TEST(res.out.find("event: message_stop") != std::string::npos);
    BOOST_TEST(!res.meter.has_final());
    const auto u = res.meter.result(r.ctx.req.prompt_tokens, true);
    BOOST_TEST(!u.from_upstream);
    BOOST_TEST(u.prompt_tokens > 0u);
    BOOST_TEST(u.completion_tokens >= 6u);
}

BOOST_DATA_TEST_CASE(messages_via_openai_with_its_usage_chunk_is_final, pieces, piece) {
    request r(core::endpoint::messages, messages_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
    core::spliced_body body;
    a->render_request(r.ctx, "m", body);
    const auto res =
        feed(*a, openai_stream(6, true, true, 33), static_cast<std::size_t>(piece), true);
    BOOST_TEST(res.meter.has_final());
    const auto u = res.meter.result(1, true);
    BOOST_TEST(u.prompt_tokens == 33u);
    BOOST_TEST(u.completion_tokens == 6u);
    // The client's message_delta carries the real figures.
    BOOST_TEST(res.out.find("\"output_tokens\":6") != std::string::npos, res.out);
}

BOOST_DATA_TEST_CASE(chat_via_anthropic_hides_usage_the_client_did_not_ask_for, pieces, piece) {
    request r(core::endpoint::chat_completions, chat_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::anthropic), 0);
    core::spliced_body body;
    BOOST_TEST(a->render_request(r.ctx, "claude", body).empty());
    const auto res = feed(*a, anthropic_stream(7, true), static_cast<std::size_t>(piece), true);
    BOOST_TEST(res.out.find("usage") == std::string::npos, res.out);
    BOOST_TEST(res.out.find("data: [DONE]") != std::string::npos);
    BOOST_TEST(res.meter.has_final());
    const auto u = res.meter.result(1, true);
    BOOST_TEST(u.prompt_tokens == 25u);
    BOOST_TEST(u.completion_tokens == 7u);
}

BOOST_DATA_TEST_CASE(chat_via_anthropic_reports_an_upstream_error_event, pieces, piece) {
    request r(core::endpoint::chat_completions, chat_stream_request);
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::anthropic), 0);
    core::spliced_body body;
    a->render_request(r.ctx, "claude", body);
    auto stream = anthropic_stream(3, false);
    stream +=
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
        "\"message\":\"busy\"}}\n\n";
    const auto res = feed(*a, stream, static_cast<std::size_t>(piece), true);
    BOOST_TEST(res.failed);
    BOOST_TEST(!res.meter.has_final());
    BOOST_TEST(res.meter.result(1, true).completion_tokens >= 3u);
}

// Case 8's adapter half: a whole answer (also a drained one) is read for its usage in
// every translation.
BOOST_AUTO_TEST_CASE(whole_answers_give_final_usage_in_every_direction) {
    {
        request r(core::endpoint::chat_completions,
                  R"({"model":"gpt","messages":[{"role":"user","content":"hi"}]})");
        auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::anthropic), 0);
        core::spliced_body body;
        a->render_request(r.ctx, "claude", body);
        std::string answer =
            R"({"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":8,"cache_read_input_tokens":3}})";
        core::usage_meter m;
        BOOST_TEST(a->on_body(answer, m));
        BOOST_TEST(answer.find("chat.completion") != std::string::npos, answer);
        BOOST_TEST(a->content_type() == "application/json");
        const auto u = m.result(1, true);
        BOOST_TEST(u.from_upstream);
        BOOST_TEST(u.prompt_tokens == 15u);
        BOOST_TEST(u.completion_tokens == 8u);
        BOOST_TEST(u.cached_tokens == 3u);
    }
    {
        request r(
            core::endpoint::messages,
            R"({"model":"claude","max_tokens":50,"messages":[{"role":"user","content":"hi"}]})");
        auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
        core::spliced_body body;
        a->render_request(r.ctx, "gpt", body);
        std::string answer =
            R"({"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}})";
        core::usage_meter m;
        BOOST_TEST(a->on_body(answer, m));
        BOOST_TEST(answer.find("\"type\":\"message\"") != std::string::npos, answer);
        const auto u = m.result(1, true);
        BOOST_TEST(u.from_upstream);
        BOOST_TEST(u.prompt_tokens == 9u);
        BOOST_TEST(u.completion_tokens == 4u);
    }
    {
        request r(core::endpoint::embeddings, R"({"model":"e","input":"hi"})");
        auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
        core::spliced_body body;
        a->render_request(r.ctx, "e", body);
        std::string answer =
            R"({"object":"list","data":[],"usage":{"prompt_tokens":3,"total_tokens":3}})";
        const std::string before = answer;
        core::usage_meter m;
        BOOST_TEST(a->on_body(answer, m));
        BOOST_TEST(answer == before);
        BOOST_TEST(a->content_type().empty());
        const auto u = m.result(1, true);
        BOOST_TEST(u.from_upstream);
        BOOST_TEST(u.prompt_tokens == 3u);
        BOOST_TEST(u.completion_tokens == 0u);
    }
}

BOOST_AUTO_TEST_CASE(an_unreadable_answer_fails_a_translation_and_errors_take_the_client_shape) {
    request r(core::endpoint::chat_completions,
              R"({"model":"gpt","messages":[{"role":"user","content":"hi"}]})");
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::anthropic), 0);
    core::spliced_body body;
    a->render_request(r.ctx, "claude", body);
    std::string junk = "not json";
    core::usage_meter m;
    BOOST_TEST(!a->on_body(junk, m));
    const auto msg = a->error_message(
        R"({"type":"error","error":{"type":"invalid_request_error","message":"bad field"}})");
    BOOST_REQUIRE(msg.has_value());
    BOOST_TEST(*msg == "bad field");
    auto native = upstream::make_adapter(r.ctx, provider(config::provider_kind::openai), 0);
    BOOST_TEST(!native->error_message("{}").has_value());
}

BOOST_AUTO_TEST_CASE(a_request_a_translation_cannot_carry_is_the_clients_error) {
    request r(core::endpoint::chat_completions,
              R"({"model":"gpt","n":2,"messages":[{"role":"user","content":"hi"}]})");
    auto a = upstream::make_adapter(r.ctx, provider(config::provider_kind::anthropic), 0);
    core::spliced_body body;
    BOOST_TEST(!a->render_request(r.ctx, "claude", body).empty());
}

BOOST_AUTO_TEST_SUITE_END()
