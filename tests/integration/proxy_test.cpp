// The real gateway binary in front of the real mock upstream: completions, streams,
// tools, keys, disconnects.
#define BOOST_TEST_MODULE proxy_integration
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/fixtures.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

std::string expected_content(int chunks) {
    std::string s;
    for (int i = 0; i < chunks; ++i) s += "word" + std::to_string(i) + " ";
    return s;
}

// Concatenates delta.content of each chunk (a tiny extraction, enough for the mock's
// content, which has no escapes).
std::string reassemble(const std::vector<std::string>& events) {
    std::string out;
    for (const auto& e : events) {
        const std::string key = R"("delta":{"content":")";
        auto p = e.find(key);
        if (p == std::string::npos) continue;
        p += key.size();
        out += e.substr(p, e.find('"', p) - p);
    }
    return out;
}

struct env {
    mock_upstream mock;
    gateway_process gw{standard_config(mock.port())};
};

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_AUTO_TEST_CASE(non_streamed_completion_is_relayed_with_model_rewritten) {
    env e;
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("hello #mock chunks=5"));
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.header("content-type") == "application/json");
    BOOST_TEST(r.body.find(R"("content":")" + expected_content(5) + "\"") != std::string::npos);
    BOOST_TEST(r.body.find(R"("usage":)") != std::string::npos);
    BOOST_TEST(r.header("x-request-id").size() == 32u);
    BOOST_TEST(!r.header("x-tollgate-overhead-ms").empty());
    // The upstream saw the target's model name, and the rest of the body unchanged.
    const auto last = e.mock.last_request();
    BOOST_TEST(last.find(R"(\"model\":\"mock-gpt\")") != std::string::npos);
    BOOST_TEST(last.find(R"(\"content\":\"hello #mock chunks=5\")") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(streamed_completion_reassembles_to_the_mock_content) {
    env e;
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("hi #mock chunks=40", true));
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.header("content-type") == "text/event-stream");
    BOOST_TEST(r.header("transfer-encoding") == "chunked");
    const auto events = sse_data(r.body);
    BOOST_REQUIRE(!events.empty());
    BOOST_TEST(events.back() == "[DONE]");
    BOOST_TEST(reassemble(events) == expected_content(40));
    // The client did not ask for usage: no usage-only chunk reaches it.
    for (const auto& ev : events) BOOST_TEST(ev.find(R"("choices":[])") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_stream_that_arrives_whole_with_its_head_is_relayed_whole) {
    // The mock writes the whole SSE body at once (burst=1): the gateway reads it with the
    // head and sends head, events and end in one write. Same bytes as any stream.
    env e;
    const std::string body =
        R"({"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},)"
        R"("messages":[{"role":"user","content":"x #mock chunks=30 burst=1 pad=100"}]})";
    for (int i = 0; i < 3; ++i) {
        auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(), body);
        BOOST_TEST(r.status == 200);
        BOOST_TEST(r.header("content-type") == "text/event-stream");
        BOOST_TEST(r.header("transfer-encoding") == "chunked");
        const auto events = sse_data(r.body);
        BOOST_REQUIRE(events.size() >= 3u);
        BOOST_TEST(events.back() == "[DONE]");
        BOOST_TEST(reassemble(events) == expected_content(30));
        BOOST_TEST(events[events.size() - 2].find(R"("choices":[])") != std::string::npos);
    }
    // The connection stays usable: a short answer after a whole stream on one connection.
    http_connection c(e.gw.port());
    c.send_request("POST", "/v1/chat/completions", auth_headers(), body);
    const auto first = c.read_response();
    BOOST_TEST(reassemble(sse_data(first.body)) == expected_content(30));
    c.send_request("POST", "/v1/chat/completions", auth_headers(), chat_body("hi #mock chunks=2"));
    BOOST_TEST(c.read_response().status == 200);
}

BOOST_AUTO_TEST_CASE(stream_pieces_arrive_before_the_stream_ends) {
    env e;
    http_connection c(e.gw.port());
    c.send_request("POST", "/v1/chat/completions", auth_headers(),
                   chat_body("hi #mock chunks=20 delay_ms=50", true));
    auto head = c.read_head();
    BOOST_TEST(head.status == 200);
    // Read pieces as they arrive; the first content arrives while the mock still has
    // chunks to send (the mock's streams_completed counter is still 0).
    std::string got;
    while (got.find("word0") == std::string::npos) got += c.read_body_some();
    BOOST_TEST(e.mock.stats().find(R"("streams_completed":0)") != std::string::npos);
    for (std::string piece; !(piece = c.read_body_some()).empty();) got += piece;
    BOOST_TEST(reassemble(sse_data(got)) == expected_content(20));
}

BOOST_AUTO_TEST_CASE(a_stream_that_pauses_between_fast_events_loses_nothing) {
    // Events back to back (the relay keeps its read buffer and reads each as it comes),
    // then a pause held by the mock, then events back to back again. Across the pause the
    // relay gives its buffer back and waits without one; nothing of the stream may be lost
    // or doubled either way, and the usage chunk the client asked for carries the count.
    env e;
    http_connection c(e.gw.port());
    c.send_request(
        "POST", "/v1/chat/completions", auth_headers(),
        R"({"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},)"
        R"("messages":[{"role":"user","content":"x #mock chunks=60 hold=30"}]})");
    BOOST_TEST_REQUIRE(c.read_head().status == 200);
    std::string got;
    while (got.find("word29") == std::string::npos) {
        const auto piece = c.read_body_some();
        BOOST_TEST_REQUIRE(!piece.empty());
        got += piece;
    }
    // The mock holds the stream (until released); this wait is not synchronisation but
    // what makes the pause longer than the relay's 50 ms hold.
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(e.mock.stats().find(R"("streams_completed":0)") != std::string::npos);
    BOOST_TEST(http_request(e.mock.port(), "GET", "/mock/release").status == 200);
    for (std::string piece; !(piece = c.read_body_some()).empty();) got += piece;
    const auto events = sse_data(got);
    BOOST_REQUIRE(!events.empty());
    BOOST_TEST(events.back() == "[DONE]");
    BOOST_TEST(reassemble(events) == expected_content(60));
    bool usage_chunk = false;
    for (const auto& ev : events)
        if (ev.find(R"("choices":[])") != std::string::npos &&
            ev.find(R"("completion_tokens":60)") != std::string::npos)
            usage_chunk = true;
    BOOST_TEST(usage_chunk, got);
}

BOOST_AUTO_TEST_CASE(client_that_asked_for_usage_gets_the_usage_chunk) {
    env e;
    const std::string body =
        R"({"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x #mock chunks=3"}]})";
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(), body);
    BOOST_TEST(r.status == 200);
    const auto events = sse_data(r.body);
    bool usage_chunk = false;
    for (const auto& ev : events)
        if (ev.find(R"("choices":[])") != std::string::npos &&
            ev.find(R"("completion_tokens":3)") != std::string::npos)
            usage_chunk = true;
    BOOST_TEST(usage_chunk);
}

BOOST_AUTO_TEST_CASE(tools_are_passed_through_and_tool_calls_come_back) {
    env e;
    const std::string body =
        R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{}}}}],"tool_choice":"auto"})";
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(), body);
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body.find(R"("name":"get_weather")") != std::string::npos);
    BOOST_TEST(r.body.find(R"("finish_reason":"tool_calls")") != std::string::npos);
    const auto last = e.mock.last_request();
    BOOST_TEST(last.find(R"(\"tool_choice\":\"auto\")") != std::string::npos);

    auto s = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          body.substr(0, body.size() - 1) + R"(,"stream":true})");
    BOOST_TEST(s.status == 200);
    BOOST_TEST(s.body.find(R"("name":"get_weather")") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(embeddings_are_forwarded) {
    env e;
    auto r = http_request(e.gw.port(), "POST", "/v1/embeddings", auth_headers(),
                          R"({"model":"gpt-4o-mini","input":["a","b"]})");
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body.find(R"("object":"embedding")") != std::string::npos);
    BOOST_TEST(e.mock.last_request().find(R"("target":"/v1/embeddings")") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(models_lists_only_what_the_key_may_use) {
    env e;
    auto a = http_request(e.gw.port(), "GET", "/v1/models", auth_headers(client_key_a));
    BOOST_TEST(a.status == 200);
    BOOST_TEST(a.body.find(R"("id":"other-model")") != std::string::npos);
    auto b = http_request(e.gw.port(), "GET", "/v1/models", {{"x-api-key", client_key_b}});
    BOOST_TEST(b.status == 200);
    BOOST_TEST(b.body.find(R"("id":"gpt-4o-mini")") != std::string::npos);
    BOOST_TEST(b.body.find("other-model") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(every_header_form_of_the_client_key_is_accepted) {
    env e;
    for (const auto& h :
         std::vector<header_map>{{{"authorization", std::string("bearer ") + client_key_a}},
                                 {{"x-api-key", client_key_a}},
                                 {{"api-key", client_key_a}}}) {
        auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", h, chat_body("k"));
        BOOST_TEST(r.status == 200);
    }
}

BOOST_AUTO_TEST_CASE(provider_key_never_reaches_the_client_nor_client_key_the_upstream) {
    env e;
    auto r = http_request(
        e.gw.port(), "POST", "/v1/chat/completions",
        {{"authorization", std::string("Bearer ") + client_key_a}, {"x-api-key", client_key_a}},
        chat_body("secret check"));
    BOOST_TEST(r.status == 200);
    const auto last = e.mock.last_request();
    BOOST_TEST(last.find(client_key_a) == std::string::npos);
    BOOST_TEST(last.find(std::string("Bearer ") + provider_key) != std::string::npos);
    for (const auto& [k, v] : r.headers) BOOST_TEST(v.find(provider_key) == std::string::npos);
    BOOST_TEST(r.body.find(provider_key) == std::string::npos);
    // Nor through an error.
    auto err = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                            chat_body("#mock status=500"));
    BOOST_TEST(err.status == 502);
    BOOST_TEST(err.body.find(provider_key) == std::string::npos);
    BOOST_TEST(e.gw.process().output().find(provider_key) == std::string::npos);
    BOOST_TEST(e.gw.process().output().find(client_key_a) == std::string::npos);
}

BOOST_AUTO_TEST_CASE(keep_alive_and_pipelined_requests_are_answered_in_order) {
    env e;
    http_connection c(e.gw.port());
    auto r1 =
        c.request("POST", "/v1/chat/completions", auth_headers(), chat_body("one #mock chunks=1"));
    auto r2 =
        c.request("POST", "/v1/chat/completions", auth_headers(), chat_body("two #mock chunks=2"));
    BOOST_TEST(r1.status == 200);
    BOOST_TEST(r2.status == 200);
    BOOST_TEST(r2.body.find("word1") != std::string::npos);

    const auto b1 = chat_body("p1 #mock chunks=1"), b2 = chat_body("p2 #mock chunks=3");
    std::string both;
    for (const auto& b : {b1, b2})
        both +=
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " +
            std::string(client_key_a) +
            "\r\ncontent-type: application/json\r\ncontent-length: " + std::to_string(b.size()) +
            "\r\n\r\n" + b;
    c.send_raw(both);
    auto p1 = c.read_response();
    auto p2 = c.read_response();
    BOOST_TEST(p1.body.find("word1") == std::string::npos);
    BOOST_TEST(p2.body.find("word2") != std::string::npos);
}

// Streams back to back from several clients at once: each ends with its upstream
// connection back in the pool, and the next stream takes it again. (The idle watch's
// wait, woken by the last answer's own event after the connection came back, once cost
// one stream in ten its connection.)
BOOST_AUTO_TEST_CASE(back_to_back_streams_reuse_their_pooled_upstream_connections) {
    env e;
    constexpr int clients = 8, streams = 25;
    std::atomic<int> whole{0};
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c)
        threads.emplace_back([&] {
            http_connection conn(e.gw.port());
            for (int i = 0; i < streams; ++i) {
                const auto r = conn.request("POST", "/v1/chat/completions", auth_headers(),
                                            chat_body("s #mock chunks=20", true));
                if (r.status == 200 && r.body.find("data: [DONE]") != std::string::npos) ++whole;
            }
        });
    for (auto& t : threads) t.join();
    BOOST_TEST(whole.load() == clients * streams);
    // One upstream connection per client at most, plus this stats request's own.
    BOOST_TEST(e.mock.counter("connections_accepted") <= clients + 1);
}

BOOST_AUTO_TEST_CASE(more_pipelined_requests_than_max_pipelined_are_all_answered) {
    // 20 requests in one write, past server.max_pipelined (16): the worker pauses between
    // batches but answers every one on the same connection.
    env e;
    http_connection c(e.gw.port());
    std::string all;
    for (int i = 0; i < 20; ++i) {
        const auto b = chat_body("n" + std::to_string(i) + " #mock chunks=1");
        all += "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " +
               std::string(client_key_a) +
               "\r\ncontent-type: application/json\r\ncontent-length: " + std::to_string(b.size()) +
               "\r\n\r\n" + b;
    }
    c.send_raw(all);
    for (int i = 0; i < 20; ++i) {
        auto r = c.read_response();
        BOOST_TEST_CONTEXT("response " << i) {
            BOOST_TEST(r.status == 200);
            BOOST_TEST(r.keep_alive);
        }
    }
    auto again = c.request("POST", "/v1/chat/completions", auth_headers(), chat_body("after"));
    BOOST_TEST(again.status == 200);
}

BOOST_AUTO_TEST_CASE(client_request_id_is_echoed_and_a_bad_one_replaced) {
    env e;
    auto headers = auth_headers();
    headers.emplace_back("x-request-id", "trace-abc-123");
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", headers, chat_body("id"));
    BOOST_TEST(r.header("x-request-id") == "trace-abc-123");
    BOOST_TEST(e.mock.last_request().find("trace-abc-123") != std::string::npos);
    auto bad = auth_headers();
    bad.emplace_back("x-request-id", "has space");
    auto r2 = http_request(e.gw.port(), "POST", "/v1/chat/completions", bad, chat_body("id"));
    BOOST_TEST(r2.header("x-request-id").size() == 32u);
    auto h = http_request(e.gw.port(), "GET", "/healthz");
    BOOST_TEST(h.status == 200);
    BOOST_TEST(h.header("x-request-id").size() == 32u);
}

BOOST_AUTO_TEST_CASE(client_gone_mid_stream_cancels_the_upstream_request) {
    env e;
    {
        http_connection c(e.gw.port());
        c.send_request("POST", "/v1/chat/completions", auth_headers(),
                       chat_body("long #mock chunks=200 delay_ms=100", true));
        BOOST_TEST(c.read_head().status == 200);
        BOOST_TEST(!c.read_body_some().empty());
        c.close();
    }
    // The gateway closes its upstream connection: the mock sees the stream aborted.
    BOOST_TEST(e.mock.wait_for("streams_aborted", 1, 10000));
    BOOST_TEST(e.mock.stats().find(R"("streams_completed":0)") != std::string::npos);
    // And the gateway keeps serving.
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("after"));
    BOOST_TEST(r.status == 200);
}

BOOST_AUTO_TEST_CASE(client_gone_while_waiting_for_the_head_cancels_the_upstream_request) {
    env e;
    {
        http_connection c(e.gw.port());
        c.send_request("POST", "/v1/chat/completions", auth_headers(),
                       chat_body("slow #mock head_delay_ms=30000", true));
        BOOST_TEST(e.mock.wait_for("streams_started", 1));
        c.close();
    }
    // The gateway notices at once and closes its upstream connection, long before the
    // mock's 30 s head delay ends: the mock counts the stream aborted.
    BOOST_TEST(e.mock.wait_for("streams_aborted", 1, 10000));
}

BOOST_AUTO_TEST_CASE(upstream_reset_mid_stream_ends_with_an_sse_error_event) {
    env e;
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("cut #mock chunks=10 reset_after=3", true));
    BOOST_TEST(r.status == 200);
    const auto events = sse_data(r.body);
    BOOST_REQUIRE(!events.empty());
    BOOST_TEST(events.back().find(R"({"error":{)") == 0u);
    BOOST_TEST(events.back().find("upstream_unavailable") != std::string::npos);
    BOOST_TEST(reassemble(events) == expected_content(3));
}

BOOST_AUTO_TEST_CASE(sse_comments_and_error_events_are_relayed_without_harm) {
    env e;
    auto r = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                          chat_body("c #mock chunks=4 comments=1", true));
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body.find(": ping") != std::string::npos);
    BOOST_TEST(reassemble(sse_data(r.body)) == expected_content(4));
    auto r2 = http_request(e.gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                           chat_body("c #mock chunks=4 sse_error=2", true));
    BOOST_TEST(r2.status == 200);
    BOOST_TEST(r2.body.find("mock_sse_error") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
