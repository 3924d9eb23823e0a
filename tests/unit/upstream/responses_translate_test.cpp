#define BOOST_TEST_MODULE responses_translate
#include <boost/test/unit_test.hpp>

#include <simdjson.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/core/sse_framer.hpp"
#include "gateway/upstream/providers/anthropic_translate.hpp"
#include "gateway/upstream/providers/responses_translate.hpp"

namespace rx = tollgate::upstream::responses;
namespace core = tollgate::core;
namespace dom = simdjson::dom;
using simdjson::SUCCESS;

namespace {

// A parsed output document with JSON-pointer accessors; a missing or mistyped value
// reads as a marker so the failing check shows what went wrong.
class doc {
  public:
    explicit doc(std::string_view text) : text_(text) {
        ok_ = !text_.empty() && parser_.parse(text_.data(), text_.size()).get(root_) == SUCCESS;
    }
    bool ok() const { return ok_; }
    bool has(std::string_view ptr) const {
        dom::element e;
        return ok_ && root_.at_pointer(ptr).get(e) == SUCCESS;
    }
    bool is_null(std::string_view ptr) const {
        dom::element e;
        return ok_ && root_.at_pointer(ptr).get(e) == SUCCESS && e.is_null();
    }
    std::string str(std::string_view ptr) const {
        std::string_view s;
        if (!ok_ || root_.at_pointer(ptr).get(s) != SUCCESS)
            return "<no string at " + std::string(ptr) + ">";
        return std::string(s);
    }
    std::int64_t num(std::string_view ptr) const {
        std::int64_t v = 0;
        if (!ok_ || root_.at_pointer(ptr).get(v) != SUCCESS) return -999999;
        return v;
    }
    double dbl(std::string_view ptr) const {
        double v = 0;
        if (!ok_ || root_.at_pointer(ptr).get(v) != SUCCESS) return -999999;
        return v;
    }
    bool boolean(std::string_view ptr) const {
        bool v = false;
        return ok_ && root_.at_pointer(ptr).get(v) == SUCCESS && v;
    }
    std::size_t size(std::string_view ptr) const {
        dom::element e;
        dom::array a;
        dom::object o;
        if (!ok_ || root_.at_pointer(ptr).get(e) != SUCCESS) return 999999;
        if (e.get(a) == SUCCESS) return a.size();
        if (e.get(o) == SUCCESS) return o.size();
        return 999999;
    }
    // The value at ptr, minified: for comparing whole sub-documents.
    std::string json(std::string_view ptr) const {
        dom::element e;
        if (!ok_ || root_.at_pointer(ptr).get(e) != SUCCESS)
            return "<missing " + std::string(ptr) + ">";
        return simdjson::minify(e);
    }

  private:
    std::string text_;
    dom::parser parser_;
    dom::element root_;
    bool ok_ = false;
};

std::string minify(std::string_view text) {
    dom::parser p;
    dom::element e;
    if (text.empty() || p.parse(text.data(), text.size()).get(e) != SUCCESS)
        return "<invalid JSON>";
    return simdjson::minify(e);
}

rx::translated to_chat(std::string_view responses_body) {
    rx::translated t = rx::responses_to_chat_request(responses_body, "upstream-model");
    if (t.ok()) {
        BOOST_TEST((t.kind == rx::error_kind::none));
        BOOST_TEST_CONTEXT(t.body) {
            BOOST_TEST(doc(t.body).ok());
        }
    } else {
        BOOST_TEST(t.body.empty());
        BOOST_TEST((t.kind != rx::error_kind::none));
    }
    return t;
}

// The chat request as a document; fails the test when the translation failed.
struct chat_request {
    explicit chat_request(std::string_view responses_body) : t(to_chat(responses_body)), d(t.body) {
        BOOST_TEST_REQUIRE(t.ok(), t.error);
    }
    rx::translated t;
    doc d;
};

// --- Streams ---------------------------------------------------------------------------

struct event {
    std::string type, data;
};

// The client's view of our output: every event exactly "event: T\ndata: J\n\n", J one
// line of JSON whose "type" is T.
std::vector<event> events_of(const std::string& out) {
    std::vector<event> events;
    std::size_t pos = 0;
    while (pos < out.size()) {
        const std::size_t end = out.find("\n\n", pos);
        BOOST_REQUIRE_MESSAGE(end != std::string::npos, "unterminated event: " << out.substr(pos));
        const std::string ev = out.substr(pos, end - pos);
        pos = end + 2;
        BOOST_REQUIRE_MESSAGE(ev.starts_with("event: "), "no event line: " << ev);
        const std::size_t nl = ev.find('\n');
        BOOST_REQUIRE_MESSAGE(nl != std::string::npos && ev.compare(nl + 1, 6, "data: ") == 0,
                              "no data line: " << ev);
        event e{ev.substr(7, nl - 7), ev.substr(nl + 7)};
        BOOST_REQUIRE_MESSAGE(e.data.find('\n') == std::string::npos, "data spans lines: " << ev);
        const doc d(e.data);
        BOOST_REQUIRE_MESSAGE(d.ok(), "invalid JSON: " << e.data);
        BOOST_TEST(d.str("/type") == e.type);
        events.push_back(std::move(e));
    }
    return events;
}

// The Response rebuilt from the events as the SDKs' stream helpers do, checking the
// protocol on the way: sequence numbers 0, 1, 2..., items added at the next index, deltas
// addressed to a started item and part, each .done equal to what its deltas added up to,
// and one terminal event, last.
struct reassembled {
    struct item {
        std::string type, id;
        std::vector<std::string> part_types, part_texts;
        std::string arguments;
        bool done = false;
    };
    std::vector<std::string> types;
    std::vector<item> items;
    std::string terminal;        // response.completed / incomplete / failed
    std::string final_response;  // its "response", minified
    std::string output_text;     // every output_text delta, as SDKs accumulate it
};

reassembled reassemble(const std::string& out) {
    reassembled r;
    const std::vector<event> events = events_of(out);
    std::int64_t seq = 0;
    for (const event& e : events) {
        const doc d(e.data);
        BOOST_TEST_CONTEXT(e.data) {
            BOOST_TEST(d.num("/sequence_number") == seq);
            ++seq;
            BOOST_TEST(r.terminal.empty());  // nothing after the end
            r.types.push_back(e.type);
            const std::int64_t oi = d.num("/output_index");
            const bool has_item = oi >= 0 && oi < static_cast<std::int64_t>(r.items.size());
            if (e.type == "response.created" || e.type == "response.in_progress") {
                BOOST_TEST(r.types.size() == (e.type == "response.created" ? 1u : 2u));
                BOOST_TEST(d.str("/response/status") == "in_progress");
                BOOST_TEST(d.size("/response/output") == 0u);
                BOOST_TEST(d.str("/response/object") == "response");
            } else if (e.type == "response.output_item.added") {
                BOOST_TEST(oi == static_cast<std::int64_t>(r.items.size()));
                BOOST_TEST(d.str("/item/status") == "in_progress");
                reassembled::item it;
                it.type = d.str("/item/type");
                it.id = d.str("/item/id");
                if (it.type == "message") {
                    BOOST_TEST(d.size("/item/content") == 0u);
                    BOOST_TEST(d.str("/item/role") == "assistant");
                } else {
                    BOOST_TEST(it.type == "function_call");
                    BOOST_TEST(d.str("/item/arguments") == "");
                }
                r.items.push_back(std::move(it));
            } else if (e.type == "response.content_part.added") {
                BOOST_REQUIRE(has_item);
                auto& it = r.items[static_cast<std::size_t>(oi)];
                BOOST_TEST(it.type == "message");
                BOOST_TEST(!it.done);
                BOOST_TEST(d.str("/item_id") == it.id);
                BOOST_TEST(d.num("/content_index") ==
                           static_cast<std::int64_t>(it.part_types.size()));
                it.part_types.push_back(d.str("/part/type"));
                it.part_texts.emplace_back();
                const bool refusal = it.part_types.back() == "refusal";
                BOOST_TEST(d.str(refusal ? "/part/refusal" : "/part/text") == "");
            } else if (e.type == "response.output_text.delta" ||
                       e.type == "response.refusal.delta" ||
                       e.type == "response.output_text.done" || e.type == "response.refusal.done" ||
                       e.type == "response.content_part.done") {
                BOOST_REQUIRE(has_item);
                auto& it = r.items[static_cast<std::size_t>(oi)];
                BOOST_TEST(!it.done);
                BOOST_TEST(d.str("/item_id") == it.id);
                const std::int64_t ci = d.num("/content_index");
                BOOST_REQUIRE(ci >= 0);
                BOOST_REQUIRE(ci < static_cast<std::int64_t>(it.part_types.size()));
                const auto c = static_cast<std::size_t>(ci);
                const bool refusal = it.part_types[c] == "refusal";
                if (e.type.ends_with(".delta")) {
                    BOOST_TEST(refusal == (e.type == "response.refusal.delta"));
                    BOOST_TEST(c + 1 == it.part_types.size());  // only the last part is open
                    it.part_texts[c] += d.str("/delta");
                    if (!refusal) {
                        r.output_text += d.str("/delta");
                        BOOST_TEST(d.json("/logprobs") == "[]");
                    }
                } else if (e.type == "response.output_text.done") {
                    BOOST_TEST(!refusal);
                    BOOST_TEST(d.str("/text") == it.part_texts[c]);
                } else if (e.type == "response.refusal.done") {
                    BOOST_TEST(refusal);
                    BOOST_TEST(d.str("/refusal") == it.part_texts[c]);
                } else {
                    BOOST_TEST(d.str("/part/type") == it.part_types[c]);
                    BOOST_TEST(d.str(refusal ? "/part/refusal" : "/part/text") == it.part_texts[c]);
                }
            } else if (e.type == "response.function_call_arguments.delta" ||
                       e.type == "response.function_call_arguments.done") {
                BOOST_REQUIRE(has_item);
                auto& it = r.items[static_cast<std::size_t>(oi)];
                BOOST_TEST(it.type == "function_call");
                BOOST_TEST(!it.done);
                BOOST_TEST(d.str("/item_id") == it.id);
                if (e.type.ends_with(".delta"))
                    it.arguments += d.str("/delta");
                else
                    BOOST_TEST(d.str("/arguments") == it.arguments);
            } else if (e.type == "response.output_item.done") {
                BOOST_REQUIRE(has_item);
                auto& it = r.items[static_cast<std::size_t>(oi)];
                BOOST_TEST(!it.done);
                it.done = true;
                BOOST_TEST(d.str("/item/id") == it.id);
                BOOST_TEST(d.str("/item/type") == it.type);
                BOOST_TEST(d.str("/item/status") != "in_progress");
                if (it.type == "function_call") {
                    BOOST_TEST(d.str("/item/arguments") == it.arguments);
                } else {
                    BOOST_TEST(d.size("/item/content") == it.part_types.size());
                    for (std::size_t c = 0; c < it.part_types.size(); ++c) {
                        const std::string p = "/item/content/" + std::to_string(c);
                        const bool refusal = it.part_types[c] == "refusal";
                        BOOST_TEST(d.str(p + (refusal ? "/refusal" : "/text")) == it.part_texts[c]);
                    }
                }
            } else if (e.type == "response.completed" || e.type == "response.incomplete" ||
                       e.type == "response.failed") {
                r.terminal = e.type;
                r.final_response = d.json("/response");
                BOOST_TEST(d.str("/response/status") == e.type.substr(9));
                if (e.type != "response.failed") {
                    // Every item is done, and the final output is what the events built.
                    BOOST_TEST(d.size("/response/output") == r.items.size());
                    for (std::size_t i = 0; i < r.items.size(); ++i) {
                        const std::string p = "/response/output/" + std::to_string(i);
                        BOOST_TEST(r.items[i].done);
                        BOOST_TEST(d.str(p + "/id") == r.items[i].id);
                        if (r.items[i].type == "function_call")
                            BOOST_TEST(d.str(p + "/arguments") == r.items[i].arguments);
                        else
                            for (std::size_t c = 0; c < r.items[i].part_texts.size(); ++c)
                                BOOST_TEST(d.str(p + "/content/" + std::to_string(c) +
                                                 (r.items[i].part_types[c] == "refusal"
                                                      ? "/refusal"
                                                      : "/text")) == r.items[i].part_texts[c]);
                    }
                }
            } else {
                BOOST_ERROR("unexpected event type " << e.type);
            }
        }
    }
    return r;
}

constexpr std::string_view model = "client-model";
constexpr std::int64_t created = 1700000123;
constexpr std::string_view response_id = "resp_abc123";

// Each payload fed whole, then finish(complete).
std::string run_whole(const std::vector<std::string>& payloads, bool complete = true) {
    rx::chat_stream_to_responses s(std::string(model), created, std::string(response_id));
    std::string out;
    for (const auto& p : payloads) s.on_chunk(p, out);
    s.finish(complete, out);
    return out;
}

std::string wire_of(const std::vector<std::string>& payloads) {
    std::string wire;
    for (const auto& p : payloads) wire += "data: " + p + "\n\n";
    return wire;
}

// The same stream as upstream bytes cut into 1-7 byte pieces, framed as the relay does.
std::string run_pieces(const std::vector<std::string>& payloads, std::uint32_t seed) {
    const std::string wire = wire_of(payloads);
    rx::chat_stream_to_responses s(std::string(model), created, std::string(response_id));
    std::string out;
    core::sse_framer framer(1 << 20);
    auto on_event = [&](const core::sse_event& e) {
        if (e.has_data) s.on_chunk(e.data, out);
    };
    std::uint32_t state = seed | 1u;
    for (std::size_t pos = 0; pos < wire.size();) {
        state = state * 1664525u + 1013904223u;
        const std::size_t n = 1 + (state >> 24) % 7;
        BOOST_REQUIRE(framer.feed(std::string_view(wire).substr(pos, n), on_event));
        pos += n;
    }
    framer.finish(on_event);
    s.finish(true, out);
    return out;
}

std::string chunk(std::string_view delta, std::string_view finish = "null") {
    return R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":)" +
           std::string(delta) + R"(,"logprobs":null,"finish_reason":)" + std::string(finish) +
           "}],\"usage\":null}";
}

const std::string usage_chunk =
    R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":35,"total_tokens":155,"prompt_tokens_details":{"cached_tokens":20},"completion_tokens_details":{"reasoning_tokens":7}}})";

const std::vector<std::string> text_stream = {
    chunk(R"({"role":"assistant","content":"","refusal":null})"),
    chunk(R"({"content":"Hello"})"),
    chunk(R"({"content":", w\u00f6rld"})"),
    chunk(R"({"content":" \"quoted\"\n\ttab"})"),
    chunk("{}", "\"stop\""),
    usage_chunk,
    "[DONE]",
};

// Text, then two calls one after the other (OpenAI's and vLLM's way).
const std::vector<std::string> tool_stream = {
    chunk(R"({"role":"assistant","content":""})"),
    chunk(R"({"content":"Checking "})"),
    chunk(R"({"content":"both."})"),
    chunk(
        R"({"tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":""}}]})"),
    chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"city\""}}]})"),
    chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":": \"Paris\"}"}}]})"),
    chunk(
        R"({"tool_calls":[{"index":1,"id":"call_B","type":"function","function":{"name":"get_weather","arguments":"{\"city\": "}}]})"),
    chunk(R"({"tool_calls":[{"index":1,"function":{"arguments":"\"Oslo\"}"}}]})"),
    chunk("{}", "\"tool_calls\""),
    usage_chunk,
    "[DONE]",
};

// The same answer, not streamed.
constexpr std::string_view tool_answer = R"({
  "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
  "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null,
    "message": {"role": "assistant", "content": "Checking both.", "refusal": null, "tool_calls": [
      {"id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
      {"id": "call_B", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}
    ]}}],
  "usage": {"prompt_tokens": 120, "completion_tokens": 35, "total_tokens": 155,
            "prompt_tokens_details": {"cached_tokens": 20}, "completion_tokens_details": {"reasoning_tokens": 7}}
})";

// Two calls whose pieces alternate by index, some in the same chunk.
const std::vector<std::string> interleaved_stream = {
    chunk(
        R"({"role":"assistant","tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"f","arguments":"{\"a\":"}}]})"),
    chunk(
        R"({"tool_calls":[{"index":1,"id":"call_B","type":"function","function":{"name":"g","arguments":"{\"b\":"}}]})"),
    chunk(R"({"tool_calls":[{"index":0,"function":{"arguments":"[1,"}}]})"),
    chunk(
        R"({"tool_calls":[{"index":1,"function":{"arguments":"\"x\"}"}},{"index":0,"function":{"arguments":"2]}"}}]})"),
    chunk("{}", "\"tool_calls\""),
    "[DONE]",
};

const std::vector<std::vector<std::string>> all_streams = {text_stream, tool_stream,
                                                           interleaved_stream};

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

// =======================================================================================
// Responses request -> chat request

BOOST_AUTO_TEST_CASE(string_input_and_instructions_become_system_and_user_messages) {
    const chat_request r(
        R"({"model": "gpt-4.1", "instructions": "Be brief.", "input": "Hello there"})");
    BOOST_TEST(r.d.str("/model") == "upstream-model");
    BOOST_TEST(r.d.size("/messages") == 2u);
    BOOST_TEST(r.d.str("/messages/0/role") == "system");
    BOOST_TEST(r.d.str("/messages/0/content") == "Be brief.");
    BOOST_TEST(r.d.str("/messages/1/role") == "user");
    BOOST_TEST(r.d.str("/messages/1/content") == "Hello there");
    BOOST_TEST(!r.d.has("/stream"));
    BOOST_TEST(!r.d.has("/tools"));

    const chat_request no_instructions(R"({"input": "Hi", "instructions": null})");
    BOOST_TEST(no_instructions.d.size("/messages") == 1u);
    BOOST_TEST(no_instructions.d.str("/messages/0/role") == "user");
}

BOOST_AUTO_TEST_CASE(message_items_map_roles_and_content_parts) {
    const chat_request r(R"({"input": [
      {"type": "message", "role": "developer", "content": "Answer in French."},
      {"role": "system", "content": [{"type": "input_text", "text": "No emoji."}]},
      {"role": "user", "content": [
        {"type": "input_text", "text": "What is in these?"},
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
      ]},
      {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
       "content": [{"type": "output_text", "text": "A cat", "annotations": []},
                   {"type": "output_text", "text": " and a dog."}]},
      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]}
    ]})");
    BOOST_TEST(r.d.size("/messages") == 5u);
    BOOST_TEST(r.d.str("/messages/0/role") == "system");  // developer
    BOOST_TEST(r.d.str("/messages/0/content") == "Answer in French.");
    BOOST_TEST(r.d.str("/messages/1/role") == "system");
    BOOST_TEST(r.d.str("/messages/1/content") == "No emoji.");  // one text part: a string
    BOOST_TEST(r.d.str("/messages/2/role") == "user");
    BOOST_TEST(r.d.json("/messages/2/content") ==
               minify(R"([{"type":"text","text":"What is in these?"},
                 {"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"high"}},
                 {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}])"));
    BOOST_TEST(r.d.str("/messages/3/role") == "assistant");
    BOOST_TEST(r.d.json("/messages/3/content") ==
               minify(R"([{"type":"text","text":"A cat"},{"type":"text","text":" and a dog."}])"));
    BOOST_TEST(!r.d.has("/messages/3/tool_calls"));
    BOOST_TEST(r.d.str("/messages/4/content") == "Thanks");
}

BOOST_AUTO_TEST_CASE(
    function_calls_merge_into_one_assistant_turn_and_outputs_become_tool_messages) {
    const chat_request r(R"({"input": [
      {"role": "user", "content": "Weather in Paris and Oslo?"},
      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
      {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
      {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
      {"type": "function_call_output", "call_id": "call_1", "output": "18C sunny"},
      {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "4C"}, {"type": "input_text", "text": " snow"}]},
      {"type": "function_call", "call_id": "call_3", "name": "now"},
      {"type": "function_call_output", "call_id": "call_3", "output": "noon"}
    ]})");
    BOOST_TEST(r.d.size("/messages") == 6u);
    BOOST_TEST(r.d.str("/messages/1/role") == "assistant");
    BOOST_TEST(r.d.str("/messages/1/content") == "Checking.");
    BOOST_TEST(r.d.json("/messages/1/tool_calls") == minify(R"([
                 {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                 {"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}])"));
    BOOST_TEST(r.d.str("/messages/2/role") == "tool");
    BOOST_TEST(r.d.str("/messages/2/tool_call_id") == "call_1");
    BOOST_TEST(r.d.str("/messages/2/content") == "18C sunny");
    BOOST_TEST(r.d.str("/messages/3/tool_call_id") == "call_2");
    BOOST_TEST(r.d.json("/messages/3/content") ==
               minify(R"([{"type":"text","text":"4C"},{"type":"text","text":" snow"}])"));
    // A call after tool results is a new assistant turn, with null content as OpenAI sends.
    BOOST_TEST(r.d.str("/messages/4/role") == "assistant");
    BOOST_TEST(r.d.is_null("/messages/4/content"));
    BOOST_TEST(r.d.str("/messages/4/tool_calls/0/id") == "call_3");
    BOOST_TEST(r.d.str("/messages/4/tool_calls/0/function/arguments") == "{}");
    BOOST_TEST(r.d.str("/messages/5/role") == "tool");
}

BOOST_AUTO_TEST_CASE(function_tools_tool_choice_and_parallel_tool_calls_map) {
    const chat_request r(R"({"input": "hi",
      "tools": [
        {"type": "function", "name": "get_weather", "description": "Current weather",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false},
         "strict": true},
        {"type": "function", "name": "now", "parameters": null}
      ],
      "tool_choice": {"type": "function", "name": "get_weather"},
      "parallel_tool_calls": false})");
    BOOST_TEST(r.d.json("/tools") == minify(R"([
      {"type":"function","function":{"name":"get_weather","description":"Current weather",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false},
        "strict":true}},
      {"type":"function","function":{"name":"now"}}])"));
    BOOST_TEST(r.d.json("/tool_choice") ==
               R"({"type":"function","function":{"name":"get_weather"}})");
    BOOST_TEST(r.d.json("/parallel_tool_calls") == "false");

    for (const std::string choice : {"auto", "none", "required"}) {
        const chat_request c(R"({"input": "hi", "tools": [{"type": "function", "name": "f"}],
                                 "tool_choice": ")" +
                             choice + "\"}");
        BOOST_TEST(c.d.str("/tool_choice") == choice);
    }
}

BOOST_AUTO_TEST_CASE(tool_choice_and_parallel_tool_calls_without_tools_are_not_sent) {
    // Chat servers refuse them without tools (and an empty tools array).
    const chat_request r(
        R"({"input": "hi", "tools": [], "tool_choice": "auto", "parallel_tool_calls": true})");
    BOOST_TEST(!r.d.has("/tools"));
    BOOST_TEST(!r.d.has("/tool_choice"));
    BOOST_TEST(!r.d.has("/parallel_tool_calls"));
}

BOOST_AUTO_TEST_CASE(sampling_limits_stream_and_user_map) {
    const chat_request r(R"({"input": "hi", "max_output_tokens": 300, "temperature": 0.25,
      "top_p": 1, "user": "u-42", "stream": true, "metadata": {"k": "v"}, "store": true,
      "reasoning": {"effort": "low"}, "truncation": "disabled", "background": false,
      "include": [], "previous_response_id": null})");
    BOOST_TEST(r.d.num("/max_tokens") == 300);
    BOOST_TEST(!r.d.has("/max_output_tokens"));
    BOOST_TEST(r.d.dbl("/temperature") == 0.25);
    BOOST_TEST(r.d.num("/top_p") == 1);
    BOOST_TEST(r.d.str("/user") == "u-42");
    BOOST_TEST(r.d.boolean("/stream"));
    BOOST_TEST(r.d.json("/stream_options") == R"({"include_usage":true})");
    BOOST_TEST(r.d.str("/reasoning_effort") == "low");
    for (const char* dropped : {"/metadata", "/store", "/reasoning", "/truncation", "/background",
                                "/include", "/previous_response_id", "/input", "/instructions"})
        BOOST_TEST(!r.d.has(dropped), dropped);

    const chat_request unstreamed(R"({"input": "hi", "stream": false, "store": false})");
    BOOST_TEST(unstreamed.d.json("/stream") == "false");
    BOOST_TEST(!unstreamed.d.has("/stream_options"));
}

BOOST_AUTO_TEST_CASE(text_format_maps_to_response_format) {
    const chat_request schema(R"({"input": "hi", "text": {"format": {"type": "json_schema",
      "name": "weather", "description": "A forecast", "strict": true,
      "schema": {"type": "object", "properties": {"t": {"type": "number"}}, "required": ["t"]}},
      "verbosity": "low"}})");
    BOOST_TEST(schema.d.json("/response_format") == minify(R"({"type":"json_schema","json_schema":{
      "name":"weather","description":"A forecast",
      "schema":{"type":"object","properties":{"t":{"type":"number"}},"required":["t"]},"strict":true}})"));
    BOOST_TEST(schema.d.str("/verbosity") == "low");

    const chat_request object(R"({"input": "hi", "text": {"format": {"type": "json_object"}}})");
    BOOST_TEST(object.d.json("/response_format") == R"({"type":"json_object"})");

    const chat_request text(R"({"input": "hi", "text": {"format": {"type": "text"}}})");
    BOOST_TEST(!text.d.has("/response_format"));
}

BOOST_AUTO_TEST_CASE(features_chat_completions_lacks_are_refused_as_unsupported_on_target) {
    // (request, text the message must contain: the field or type refused)
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"input": "hi", "previous_response_id": "resp_1"})", "previous_response_id"},
        {R"({"input": "hi", "conversation": "conv_1"})", "conversation"},
        {R"({"input": "hi", "conversation": {"id": "conv_1"}})", "conversation"},
        {R"({"input": "hi", "background": true})", "background"},
        {R"({"input": "hi", "include": ["file_search_call.results"]})", "file_search_call.results"},
        {R"({"input": "hi", "prompt": {"id": "pmpt_1", "version": "2"}})", "prompt"},
        {R"({"input": "hi", "truncation": "auto"})", "truncation"},
        {R"({"input": "hi", "reasoning": {"effort": "high", "summary": "auto"}})",
         "reasoning.summary"},
        {R"({"input": "hi", "tools": [{"type": "web_search"}]})", "web_search"},
        {R"({"input": "hi", "tools": [{"type": "web_search_preview"}]})", "web_search_preview"},
        {R"({"input": "hi", "tools": [{"type": "function", "name": "f"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}]})",
         "tools[1]"},
        {R"({"input": "hi", "tools": [{"type": "computer_use_preview", "display_width": 1024, "display_height": 768, "environment": "browser"}]})",
         "computer_use_preview"},
        {R"({"input": "hi", "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]})",
         "code_interpreter"},
        {R"({"input": "hi", "tools": [{"type": "mcp", "server_label": "x", "server_url": "https://x"}]})",
         "mcp"},
        {R"({"input": "hi", "tools": [{"type": "image_generation"}]})", "image_generation"},
        {R"({"input": "hi", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "file_search"}})",
         "tool_choice"},
        {R"({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}]}]})",
         "input[0].content[0].file_id"},
        {R"({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]})",
         "input_file"},
        {R"({"input": [{"role": "user", "content": [{"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,AAAA"}]}]})",
         "input_file"},
        {R"({"input": [{"role": "user", "content": "hi"}, {"type": "item_reference", "id": "msg_1"}]})",
         "input[1]: item_reference"},
        {R"({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}, {"role": "user", "content": "hi"}]})",
         "input[0]: reasoning"},
        {R"({"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]})",
         "web_search_call"},
        {R"({"input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]})",
         "input[0].content[0]"},
        {R"({"input": "hi", "text": {"format": {"type": "grammar"}}})", "text.format"},
    };
    for (const auto& [body, field] : cases) {
        BOOST_TEST_CONTEXT(body) {
            const rx::translated t = to_chat(body);
            BOOST_TEST(!t.ok());
            BOOST_TEST(t.unsupported());
            BOOST_TEST((t.kind == rx::error_kind::unsupported_on_target));
            BOOST_TEST(t.error.find(field) != std::string::npos, t.error);
        }
    }
}

BOOST_AUTO_TEST_CASE(malformed_requests_are_invalid_request_errors) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"", "JSON object"},
        {"not json", "JSON object"},
        {"[1, 2]", "JSON object"},
        {R"({"model": "gpt-4.1"})", "input"},
        {R"({"input": null})", "input"},
        {R"({"input": 42})", "input"},
        {R"({"input": []})", "input"},
        {R"({"input": ["hi"]})", "input[0]"},
        {R"({"input": [{"content": "hi"}]})", "input[0]"},
        {R"({"input": [{"type": 7}]})", "input[0].type"},
        {R"({"input": [{"role": "robot", "content": "hi"}]})", "input[0].role"},
        {R"({"input": [{"type": "message", "role": "user"}]})", "input[0].content"},
        {R"({"input": [{"role": "user", "content": 5}]})", "input[0].content"},
        {R"({"input": [{"role": "user", "content": [{"text": "x"}]}]})",
         "input[0].content[0].type"},
        {R"({"input": [{"role": "user", "content": [{"type": "input_text"}]}]})", "text"},
        {R"({"input": [{"role": "user", "content": [{"type": "input_image"}]}]})", "image_url"},
        {R"({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]})", "call_id"},
        {R"({"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]})", "name"},
        {R"({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]})",
         "arguments"},
        {R"({"input": [{"type": "function_call_output", "call_id": "c"}]})", "output"},
        {R"({"input": [{"type": "function_call_output", "output": "x"}]})", "call_id"},
        {R"({"input": "hi", "instructions": 5})", "instructions"},
        {R"({"input": "hi", "tools": {}})", "tools"},
        {R"({"input": "hi", "tools": [{"type": "function"}]})", "tools[0].name"},
        {R"({"input": "hi", "tools": [{"name": "f"}]})", "tools[0].type"},
        {R"({"input": "hi", "tools": [{"type": "function", "name": "f", "parameters": 3}]})",
         "parameters"},
        {R"({"input": "hi", "tool_choice": "sometimes"})", "tool_choice"},
        {R"({"input": "hi", "tool_choice": {"type": "function"}})", "tool_choice.name"},
        {R"({"input": "hi", "parallel_tool_calls": "yes"})", "parallel_tool_calls"},
        {R"({"input": "hi", "max_output_tokens": 0})", "max_output_tokens"},
        {R"({"input": "hi", "max_output_tokens": "many"})", "max_output_tokens"},
        {R"({"input": "hi", "temperature": "hot"})", "temperature"},
        {R"({"input": "hi", "stream": "yes"})", "stream"},
        {R"({"input": "hi", "text": "json"})", "text"},
        {R"({"input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}})",
         "text.format.name"},
        {R"({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}})",
         "text.format.schema"},
        {R"({"input": "hi", "background": "no"})", "background"},
        {R"({"input": "hi", "include": "all"})", "include"},
        {R"({"input": "hi", "truncation": "sometimes"})", "truncation"},
        {R"({"input": "hi", "reasoning": "high"})", "reasoning"},
        {R"({"input": "hi", "user": 5})", "user"},
    };
    for (const auto& [body, field] : cases) {
        BOOST_TEST_CONTEXT(body) {
            const rx::translated t = to_chat(body);
            BOOST_TEST(!t.ok());
            BOOST_TEST(!t.unsupported());
            BOOST_TEST((t.kind == rx::error_kind::invalid_request));
            BOOST_TEST(t.error.find(field) != std::string::npos, t.error);
        }
    }
}

BOOST_AUTO_TEST_CASE(translated_request_feeds_the_chat_to_messages_translator) {
    // The composition used for anthropic-kind targets: Responses -> chat -> Messages.
    const chat_request r(R"({"instructions": "Be a weather bot.", "max_output_tokens": 200,
      "input": [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"}
      ],
      "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
      "tool_choice": "required", "stream": true})");
    const auto m =
        tollgate::upstream::anthropic::chat_to_messages_request(r.t.body, "claude", 4096);
    BOOST_TEST_REQUIRE(m.ok(), m.error);
    const doc d(m.body);
    BOOST_TEST(d.str("/system") == "Be a weather bot.");
    BOOST_TEST(d.num("/max_tokens") == 200);
    BOOST_TEST(d.str("/messages/1/content/0/type") == "tool_use");
    BOOST_TEST(d.str("/messages/1/content/0/id") == "call_1");
    BOOST_TEST(d.str("/messages/2/content/0/type") == "tool_result");
    BOOST_TEST(d.str("/tool_choice/type") == "any");
    BOOST_TEST(d.boolean("/stream"));
}

// =======================================================================================
// Chat answer -> Response

BOOST_AUTO_TEST_CASE(chat_text_answer_maps_to_a_completed_response) {
    const std::string out = rx::chat_to_responses_response(R"({
      "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
      "choices": [{"index": 0, "finish_reason": "stop",
                   "message": {"role": "assistant", "content": "Hello \"world\"", "refusal": null}}],
      "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                "prompt_tokens_details": {"cached_tokens": 3}}})",
                                                           model, created, response_id);
    const doc d(out);
    BOOST_TEST_REQUIRE(d.ok(), out);
    BOOST_TEST(d.str("/id") == "resp_abc123");
    BOOST_TEST(d.str("/object") == "response");
    BOOST_TEST(d.num("/created_at") == created);
    BOOST_TEST(d.str("/status") == "completed");
    BOOST_TEST(d.is_null("/error"));
    BOOST_TEST(d.is_null("/incomplete_details"));
    BOOST_TEST(d.str("/model") == "client-model");
    BOOST_TEST(d.size("/output") == 1u);
    BOOST_TEST(d.str("/output/0/type") == "message");
    BOOST_TEST(d.str("/output/0/id").starts_with("msg_"));
    BOOST_TEST(d.str("/output/0/role") == "assistant");
    BOOST_TEST(d.str("/output/0/status") == "completed");
    BOOST_TEST(d.size("/output/0/content") == 1u);
    BOOST_TEST(d.str("/output/0/content/0/type") == "output_text");
    BOOST_TEST(d.str("/output/0/content/0/text") == "Hello \"world\"");
    BOOST_TEST(d.json("/output/0/content/0/annotations") == "[]");
    BOOST_TEST(d.json("/usage") ==
               minify(R"({"input_tokens":10,"input_tokens_details":{"cached_tokens":3},
      "output_tokens":4,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":14})"));
    BOOST_TEST(d.json("/parallel_tool_calls") == "true");
    BOOST_TEST(d.str("/tool_choice") == "auto");
    BOOST_TEST(d.json("/tools") == "[]");
    BOOST_TEST(!d.has("/output_text"));  // an SDK accessor, not a wire field
}

BOOST_AUTO_TEST_CASE(chat_tool_calls_map_to_function_call_items) {
    const doc d(rx::chat_to_responses_response(tool_answer, model, created, response_id));
    BOOST_TEST_REQUIRE(d.ok());
    BOOST_TEST(d.str("/status") == "completed");
    BOOST_TEST(d.size("/output") == 3u);
    BOOST_TEST(d.str("/output/0/type") == "message");
    BOOST_TEST(d.str("/output/0/content/0/text") == "Checking both.");
    for (int i = 1; i <= 2; ++i) {
        const std::string p = "/output/" + std::to_string(i);
        BOOST_TEST(d.str(p + "/type") == "function_call");
        BOOST_TEST(d.str(p + "/id").starts_with("fc_"));
        BOOST_TEST(d.str(p + "/status") == "completed");
        BOOST_TEST(d.str(p + "/name") == "get_weather");
    }
    BOOST_TEST(d.str("/output/1/call_id") == "call_A");
    BOOST_TEST(d.str("/output/1/arguments") == R"({"city": "Paris"})");
    BOOST_TEST(d.str("/output/2/call_id") == "call_B");
    BOOST_TEST(d.str("/output/2/arguments") == R"({"city": "Oslo"})");
    BOOST_TEST(d.str("/output/1/id") != d.str("/output/2/id"));
    BOOST_TEST(d.num("/usage/output_tokens_details/reasoning_tokens") == 7);
    BOOST_TEST(d.num("/usage/total_tokens") == 155);

    // Only calls, no text: no message item; a call without arguments gets {}.
    const doc calls(rx::chat_to_responses_response(R"({"choices": [{"finish_reason": "tool_calls",
      "message": {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": ""}}]}}]})",
                                                   model, created, response_id));
    BOOST_TEST(calls.size("/output") == 1u);
    BOOST_TEST(calls.str("/output/0/type") == "function_call");
    BOOST_TEST(calls.str("/output/0/arguments") == "{}");
    BOOST_TEST(calls.is_null("/usage"));  // the upstream gave none
}

BOOST_AUTO_TEST_CASE(length_and_content_filter_finishes_give_an_incomplete_response) {
    const doc d(rx::chat_to_responses_response(
        R"({"choices": [{"finish_reason": "length", "message": {"role": "assistant", "content": "Once upon a"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 16}})",
        model, created, response_id));
    BOOST_TEST(d.str("/status") == "incomplete");
    BOOST_TEST(d.str("/incomplete_details/reason") == "max_output_tokens");
    BOOST_TEST(d.str("/output/0/status") == "incomplete");
    BOOST_TEST(d.str("/output/0/content/0/text") == "Once upon a");

    const doc f(rx::chat_to_responses_response(
        R"({"choices": [{"finish_reason": "content_filter", "message": {"role": "assistant", "content": ""}}]})",
        model, created, response_id));
    BOOST_TEST(f.str("/status") == "incomplete");
    BOOST_TEST(f.str("/incomplete_details/reason") == "content_filter");
    BOOST_TEST(f.size("/output") == 0u);
}

BOOST_AUTO_TEST_CASE(refusal_maps_to_a_refusal_part) {
    const doc d(rx::chat_to_responses_response(
        R"({"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}}]})",
        model, created, response_id));
    BOOST_TEST(d.size("/output/0/content") == 1u);
    BOOST_TEST(d.str("/output/0/content/0/type") == "refusal");
    BOOST_TEST(d.str("/output/0/content/0/refusal") == "I can't help with that.");
}

BOOST_AUTO_TEST_CASE(unreadable_chat_answers_give_an_empty_string) {
    for (const std::string_view body : {"", "   ", "not json", "[1]", "\"text\"", "{\"id\":"})
        BOOST_TEST(rx::chat_to_responses_response(body, model, created, response_id).empty(), body);
    // An object without choices is still a (empty) response.
    const doc d(rx::chat_to_responses_response("{}", model, created, response_id));
    BOOST_TEST(d.str("/status") == "completed");
    BOOST_TEST(d.size("/output") == 0u);
}

// =======================================================================================
// Chat stream -> Responses events

BOOST_AUTO_TEST_CASE(text_stream_gives_the_documented_event_sequence) {
    rx::chat_stream_to_responses s(std::string(model), created, std::string(response_id));
    std::string out;
    std::vector<std::size_t> produced;
    for (const auto& p : text_stream) {
        const std::size_t before = events_of(out).size();
        s.on_chunk(p, out);
        produced.push_back(events_of(out).size() - before);
    }
    BOOST_TEST(s.finished());
    BOOST_TEST(!s.failed());
    // Events come out as soon as the chunk that causes them: response.completed waits
    // for [DONE] because the usage chunk comes after the finish chunk.
    BOOST_TEST(produced == (std::vector<std::size_t>{2, 3, 1, 1, 3, 0, 1}),
               boost::test_tools::per_element());
    std::string tail;
    s.finish(true, tail);  // after the end: nothing
    s.on_chunk(text_stream[1], tail);
    BOOST_TEST(tail.empty());

    const reassembled r = reassemble(out);
    BOOST_TEST(
        r.types == (std::vector<std::string>{
                       "response.created", "response.in_progress", "response.output_item.added",
                       "response.content_part.added", "response.output_text.delta",
                       "response.output_text.delta", "response.output_text.delta",
                       "response.output_text.done", "response.content_part.done",
                       "response.output_item.done", "response.completed"}),
        boost::test_tools::per_element());
    BOOST_TEST(r.output_text == "Hello, w\u00f6rld \"quoted\"\n\ttab");
    const doc d(r.final_response);
    BOOST_TEST(d.str("/id") == "resp_abc123");
    BOOST_TEST(d.str("/model") == "client-model");
    BOOST_TEST(d.num("/created_at") == created);
    BOOST_TEST(d.str("/output/0/content/0/text") == r.output_text);
    BOOST_TEST(d.str("/output/0/status") == "completed");
    BOOST_TEST(d.num("/usage/input_tokens") == 120);
    BOOST_TEST(d.num("/usage/input_tokens_details/cached_tokens") == 20);
    BOOST_TEST(d.num("/usage/output_tokens") == 35);
    BOOST_TEST(d.num("/usage/output_tokens_details/reasoning_tokens") == 7);
    BOOST_TEST(d.num("/usage/total_tokens") == 155);

    // The first delta event, field by field.
    const doc delta(events_of(out)[4].data);
    BOOST_TEST(delta.json("") == minify(R"({"type":"response.output_text.delta","sequence_number":4,
                 "item_id":"msg_abc123_0","output_index":0,"content_index":0,"delta":"Hello","logprobs":[]})"));
}

BOOST_AUTO_TEST_CASE(streams_fed_in_small_pieces_give_identical_output) {
    for (std::size_t i = 0; i < all_streams.size(); ++i) {
        const std::string whole = run_whole(all_streams[i]);
        reassemble(whole);
        for (std::uint32_t seed = 1; seed <= 8; ++seed)
            BOOST_TEST(
                run_pieces(all_streams[i], seed * 7919u + static_cast<std::uint32_t>(i)) == whole,
                "stream " << i << " seed " << seed);
    }
}

BOOST_AUTO_TEST_CASE(text_then_tool_calls_stream_matches_the_unstreamed_answer) {
    const reassembled r = reassemble(run_whole(tool_stream));
    BOOST_TEST(r.types == (std::vector<std::string>{
                              "response.created",
                              "response.in_progress",
                              "response.output_item.added",  // message
                              "response.content_part.added",
                              "response.output_text.delta",
                              "response.output_text.delta",
                              "response.output_text.done",
                              "response.content_part.done",
                              "response.output_item.done",   // the message ends as a call starts
                              "response.output_item.added",  // call_A
                              "response.function_call_arguments.delta",
                              "response.function_call_arguments.delta",
                              "response.output_item.added",  // call_B
                              "response.function_call_arguments.delta",
                              "response.function_call_arguments.delta",
                              "response.function_call_arguments.done",
                              "response.output_item.done",
                              "response.function_call_arguments.done",
                              "response.output_item.done",
                              "response.completed",
                          }),
               boost::test_tools::per_element());
    BOOST_TEST(r.terminal == "response.completed");
    BOOST_TEST_REQUIRE(r.items.size() == 3u);
    BOOST_TEST(r.items[0].part_texts[0] == "Checking both.");
    BOOST_TEST(minify(r.items[1].arguments) == R"({"city":"Paris"})");
    BOOST_TEST(minify(r.items[2].arguments) == R"({"city":"Oslo"})");
    const doc d(r.final_response);
    BOOST_TEST(d.str("/output/1/call_id") == "call_A");
    BOOST_TEST(d.str("/output/1/name") == "get_weather");
    BOOST_TEST(d.str("/output/2/call_id") == "call_B");
    // Streamed or not, the client ends up with the same Response.
    BOOST_TEST(r.final_response ==
               minify(rx::chat_to_responses_response(tool_answer, model, created, response_id)));
}

BOOST_AUTO_TEST_CASE(interleaved_tool_calls_accumulate_per_call) {
    const reassembled r = reassemble(run_whole(interleaved_stream));
    BOOST_TEST(r.terminal == "response.completed");
    BOOST_TEST_REQUIRE(r.items.size() == 2u);
    BOOST_TEST(r.items[0].type == "function_call");
    BOOST_TEST(r.items[0].arguments == R"({"a":[1,2]})");
    BOOST_TEST(r.items[1].arguments == R"({"b":"x"})");
    const doc d(r.final_response);
    BOOST_TEST(d.str("/output/0/call_id") == "call_A");
    BOOST_TEST(d.str("/output/0/name") == "f");
    BOOST_TEST(d.str("/output/1/call_id") == "call_B");
    BOOST_TEST(d.str("/output/1/name") == "g");
    BOOST_TEST(d.is_null("/usage"));  // no usage chunk came
}

BOOST_AUTO_TEST_CASE(stream_cut_before_done_ends_in_response_failed) {
    // Cut mid-text, mid-call, and after the finish chunk but before [DONE].
    for (const std::size_t cut : {std::size_t{3}, std::size_t{5}, std::size_t{9}}) {
        rx::chat_stream_to_responses s(std::string(model), created, std::string(response_id));
        std::string out;
        for (std::size_t i = 0; i < cut; ++i) s.on_chunk(tool_stream[i], out);
        s.finish(false, out);
        BOOST_TEST(s.failed());
        BOOST_TEST(!s.finished());
        BOOST_TEST(s.error_text() == "the upstream stream was cut short");
        const reassembled r = reassemble(out);
        BOOST_TEST(r.terminal == "response.failed");
        const doc d(r.final_response);
        BOOST_TEST(d.str("/status") == "failed");
        BOOST_TEST(d.str("/error/code") == "server_error");
        BOOST_TEST(d.str("/error/message") == "the upstream stream was cut short");
        // What was produced so far; the item cut off mid-way is incomplete.
        BOOST_TEST(d.size("/output") == (cut == 3 ? 1u : 2u + (cut == 9)));
        const std::string last = "/output/" + std::to_string(d.size("/output") - 1) + "/status";
        BOOST_TEST(d.str(last) == (cut == 9 ? "completed" : "incomplete"));
        std::string tail;
        s.on_chunk("[DONE]", tail);
        s.finish(true, tail);
        BOOST_TEST(tail.empty());
    }

    // A clean end without [DONE]: complete after the finish chunk, failed before it.
    std::vector<std::string> no_done(text_stream.begin(), text_stream.end() - 1);
    BOOST_TEST(reassemble(run_whole(no_done)).terminal == "response.completed");
    no_done.resize(4);
    rx::chat_stream_to_responses s(std::string(model), created, std::string(response_id));
    std::string out;
    for (const auto& p : no_done) s.on_chunk(p, out);
    s.finish(true, out);
    BOOST_TEST(s.failed());
    BOOST_TEST(reassemble(out).terminal == "response.failed");

    // Nothing at all: still a well-formed stream.
    const reassembled empty = reassemble(run_whole({}, false));
    BOOST_TEST(empty.types == (std::vector<std::string>{"response.created", "response.in_progress",
                                                        "response.failed"}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(upstream_error_and_malformed_chunks_fail_the_response) {
    rx::chat_stream_to_responses s(std::string(model), created, std::string(response_id));
    std::string out;
    s.on_chunk(text_stream[1], out);
    s.on_chunk(R"({"error":{"message":"The server had an error","type":"server_error"}})", out);
    BOOST_TEST(s.failed());
    BOOST_TEST(s.error_text() == "The server had an error");
    const reassembled r = reassemble(out);
    BOOST_TEST(r.terminal == "response.failed");
    BOOST_TEST(doc(r.final_response).str("/error/message") == "The server had an error");
    BOOST_TEST(doc(r.final_response).str("/output/0/content/0/text") == "Hello");
    const std::size_t n = out.size();
    s.on_chunk("[DONE]", out);
    s.finish(false, out);
    BOOST_TEST(out.size() == n);

    rx::chat_stream_to_responses m(std::string(model), created, std::string(response_id));
    std::string mo;
    m.on_chunk("{\"id\":", mo);
    BOOST_TEST(m.failed());
    const reassembled mr = reassemble(mo);
    BOOST_TEST(mr.types == (std::vector<std::string>{"response.created", "response.in_progress",
                                                     "response.failed"}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(length_finish_in_a_stream_gives_response_incomplete) {
    const reassembled r =
        reassemble(run_whole({chunk(R"({"content":"Once upon"})"), chunk(R"({"content":" a"})"),
                              chunk("{}", "\"length\""), usage_chunk, "[DONE]"}));
    BOOST_TEST(r.terminal == "response.incomplete");
    const doc d(r.final_response);
    BOOST_TEST(d.str("/status") == "incomplete");
    BOOST_TEST(d.str("/incomplete_details/reason") == "max_output_tokens");
    BOOST_TEST(d.str("/output/0/status") == "incomplete");
    BOOST_TEST(d.str("/output/0/content/0/text") == "Once upon a");
    BOOST_TEST(d.num("/usage/output_tokens") == 35);
}

BOOST_AUTO_TEST_CASE(done_alone_gives_an_empty_completed_response) {
    const reassembled r = reassemble(run_whole({"[DONE]"}));
    BOOST_TEST(r.types == (std::vector<std::string>{"response.created", "response.in_progress",
                                                    "response.completed"}),
               boost::test_tools::per_element());
    BOOST_TEST(doc(r.final_response).size("/output") == 0u);
}

BOOST_AUTO_TEST_CASE(calls_without_arguments_or_index_still_make_valid_items) {
    // A call with no arguments streams {}, so deltas add up to parseable JSON; calls
    // without an index (whole calls, one per chunk) are told apart by id; text after a
    // call opens a new message item.
    const reassembled r = reassemble(run_whole({
        chunk(
            R"({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"now"}}]})"),
        chunk(
            R"({"tool_calls":[{"id":"call_2","type":"function","function":{"name":"a","arguments":"{\"x\":1}"}}]})"),
        chunk(
            R"({"tool_calls":[{"id":"call_3","type":"function","function":{"name":"b","arguments":"{\"y\":"}}]})"),
        chunk(R"({"tool_calls":[{"function":{"arguments":"2}"}}]})"),
        chunk(R"({"content":"Done."})"),
        chunk("{}", "\"tool_calls\""),
        "[DONE]",
    }));
    BOOST_TEST(r.terminal == "response.completed");
    BOOST_TEST_REQUIRE(r.items.size() == 4u);
    BOOST_TEST(r.items[0].arguments == "{}");
    BOOST_TEST(r.items[1].arguments == R"({"x":1})");
    BOOST_TEST(r.items[2].arguments == R"({"y":2})");
    BOOST_TEST(r.items[3].type == "message");
    BOOST_TEST(r.items[3].part_texts[0] == "Done.");
    const doc d(r.final_response);
    BOOST_TEST(d.str("/output/1/call_id") == "call_2");
    BOOST_TEST(d.str("/output/2/call_id") == "call_3");
}

BOOST_AUTO_TEST_CASE(refusal_stream_gives_refusal_events) {
    const reassembled r = reassemble(run_whole({
        chunk(R"({"role":"assistant","refusal":"I can't"})"),
        chunk(R"({"refusal":" help."})"),
        chunk("{}", "\"stop\""),
        "[DONE]",
    }));
    BOOST_TEST(r.types == (std::vector<std::string>{
                              "response.created", "response.in_progress",
                              "response.output_item.added", "response.content_part.added",
                              "response.refusal.delta", "response.refusal.delta",
                              "response.refusal.done", "response.content_part.done",
                              "response.output_item.done", "response.completed"}),
               boost::test_tools::per_element());
    const doc d(r.final_response);
    BOOST_TEST(d.str("/output/0/content/0/type") == "refusal");
    BOOST_TEST(d.str("/output/0/content/0/refusal") == "I can't help.");
}

BOOST_AUTO_TEST_CASE(anthropic_answers_reach_the_client_through_both_translators) {
    // The anthropic-kind path: Messages events -> chat chunks -> Responses events.
    namespace ax = tollgate::upstream::anthropic;
    const std::vector<std::pair<std::string, std::string>> messages_stream = {
        {"message_start",
         R"({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_read_input_tokens":8,"output_tokens":2}}})"},
        {"content_block_start",
         R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"},
        {"content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}})"},
        {"content_block_stop", R"({"type":"content_block_stop","index":0})"},
        {"content_block_start",
         R"({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}})"},
        {"content_block_delta",
         R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}})"},
        {"content_block_delta",
         R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"Paris\"}"}})"},
        {"content_block_stop", R"({"type":"content_block_stop","index":1})"},
        {"content_block_start",
         R"({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"now","input":{}}})"},
        {"content_block_stop", R"({"type":"content_block_stop","index":2})"},
        {"message_delta",
         R"({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}})"},
        {"message_stop", R"({"type":"message_stop"})"},
    };
    ax::messages_stream_to_chat chat("client-model", created, /*include_usage=*/true);
    rx::chat_stream_to_responses s(std::string(model), created, std::string(response_id));
    std::string out;
    for (const auto& [name, data] : messages_stream) {
        std::vector<std::string> chunks;
        chat.on_event(name, data, chunks);
        for (const std::string& c : chunks) {
            BOOST_REQUIRE(c.starts_with("data: ") && c.ends_with("\n\n"));
            s.on_chunk(std::string_view(c).substr(6, c.size() - 8), out);
        }
    }
    BOOST_TEST(s.finished());
    const reassembled r = reassemble(out);
    BOOST_TEST(r.terminal == "response.completed");
    BOOST_TEST(r.output_text == "Let me check.");
    const doc d(r.final_response);
    BOOST_TEST(d.size("/output") == 3u);
    BOOST_TEST(d.str("/output/1/call_id") == "toolu_1");
    BOOST_TEST(minify(d.str("/output/1/arguments")) == R"({"city":"Paris"})");
    BOOST_TEST(d.str("/output/2/name") == "now");
    BOOST_TEST(d.str("/output/2/arguments") == "{}");
    BOOST_TEST(d.num("/usage/input_tokens") == 480);
    BOOST_TEST(d.num("/usage/input_tokens_details/cached_tokens") == 8);
    BOOST_TEST(d.num("/usage/output_tokens") == 89);

    // Unstreamed: Messages answer -> chat completion -> Response.
    const std::string completion = ax::messages_to_chat_response(
        R"({"id":"msg_01","type":"message","role":"assistant","model":"claude",
            "content":[{"type":"text","text":"Hi."}],"stop_reason":"max_tokens",
            "usage":{"input_tokens":10,"output_tokens":20}})",
        "client-model", created);
    const doc a(rx::chat_to_responses_response(completion, model, created, response_id));
    BOOST_TEST(a.str("/status") == "incomplete");
    BOOST_TEST(a.str("/incomplete_details/reason") == "max_output_tokens");
    BOOST_TEST(a.str("/output/0/content/0/text") == "Hi.");
    BOOST_TEST(a.num("/usage/total_tokens") == 30);
}

// =======================================================================================
// Robustness

BOOST_AUTO_TEST_CASE(strings_are_escaped_and_invalid_utf8_is_replaced) {
    const std::string odd_model = "m\"q\\b\n\x01-\xff\xfe";
    rx::chat_stream_to_responses s(odd_model, created, "resp_\"x\"");
    std::string out;
    s.on_chunk(chunk(R"({"content":"a\u0000b\"c\\d\u2028"})"), out);
    s.on_chunk("[DONE]", out);
    const reassembled r = reassemble(out);
    BOOST_TEST(r.terminal == "response.completed");
    BOOST_TEST(r.output_text == std::string("a\0b\"c\\d\u2028", 10));
    const doc d(r.final_response);
    BOOST_TEST(d.str("/id") == "resp_\"x\"");
    BOOST_TEST(d.str("/model") == "m\"q\\b\n\x01-\xEF\xBF\xBD\xEF\xBF\xBD");

    const doc a(rx::chat_to_responses_response(
        R"({"choices":[{"message":{"content":"\u0001\n"}}]})", odd_model, created, "\xff"));
    BOOST_TEST(a.ok());
    BOOST_TEST(a.str("/output/0/content/0/text") == "\x01\n");
}

BOOST_AUTO_TEST_CASE(truncated_inputs_never_crash_and_outputs_stay_valid_json) {
    const std::string request =
        R"({"instructions":"x","input":[{"role":"user","content":[{"type":"input_text","text":"hi"},{"type":"input_image","image_url":"https://x/y.png"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"ok"}],"tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],"tool_choice":{"type":"function","name":"f"},"text":{"format":{"type":"json_schema","name":"n","schema":{"type":"object"}}},"max_output_tokens":5,"stream":true})";
    BOOST_TEST(to_chat(request).ok());
    for (std::size_t n = 0; n < request.size(); ++n) {
        const rx::translated t = to_chat(std::string_view(request).substr(0, n));
        BOOST_TEST(!t.ok());  // every proper prefix is malformed JSON
    }
    const std::string answer(tool_answer);
    for (std::size_t n = 0; n <= answer.size(); ++n) {
        const std::string out =
            rx::chat_to_responses_response(answer.substr(0, n), model, created, response_id);
        if (!out.empty()) BOOST_TEST(doc(out).ok(), out);
    }
    // Every chunk of a stream cut short at every byte: a failed or completed stream,
    // never a malformed one.
    for (const std::string& p : tool_stream) {
        for (std::size_t n = 0; n < p.size(); ++n) {
            rx::chat_stream_to_responses s(std::string(model), created, std::string(response_id));
            std::string out;
            s.on_chunk(tool_stream[1], out);
            s.on_chunk(std::string_view(p).substr(0, n), out);
            s.finish(true, out);
            BOOST_TEST((s.failed() || s.finished()));
            reassemble(out);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_moved_from_translator_does_nothing) {
    rx::chat_stream_to_responses a(std::string(model), created, std::string(response_id));
    rx::chat_stream_to_responses b(std::move(a));
    std::string out;
    a.on_chunk(text_stream[1], out);  // NOLINT(bugprone-use-after-move): on purpose
    a.finish(false, out);
    BOOST_TEST(out.empty());
    b.on_chunk("[DONE]", out);
    BOOST_TEST(reassemble(out).terminal == "response.completed");
}

BOOST_AUTO_TEST_SUITE_END()

// The Response echoes the request's settings as the API does; unset ones carry the API's
// defaults; `store` stays false (nothing is stored).
BOOST_AUTO_TEST_CASE(the_response_echoes_the_request_settings) {
    const auto t = rx::responses_to_chat_request(
        R"({"model":"m","input":"hi","instructions":"Be brief.","max_output_tokens":64,
            "temperature":0.25,"metadata":{"team":"a"},"user":"u-1","store":true,
            "tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],
            "tool_choice":"required","parallel_tool_calls":false,"truncation":"disabled",
            "text":{"format":{"type":"json_object"}}})",
        "up");
    BOOST_TEST_REQUIRE(t.ok(), t.error);
    const std::string answer = R"({"id":"c","object":"chat.completion","created":1,"model":"up",
      "choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"{}"}}],
      "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}})";
    const std::string out =
        rx::chat_to_responses_response(answer, model, created, response_id, t.echo);
    rx::chat_stream_to_responses s(std::string(model), created, std::string(response_id), t.echo);
    std::string events;
    s.on_chunk(R"({"choices":[{"index":0,"delta":{"content":"{}"},"finish_reason":"stop"}]})",
               events);
    s.on_chunk("[DONE]", events);
    const auto created_at = events.find("data: ") + 6;
    const auto completed_at = events.rfind("data: ") + 6;
    const std::string first = events.substr(created_at, events.find('\n', created_at) - created_at);
    const std::string last =
        events.substr(completed_at, events.find('\n', completed_at) - completed_at);
    for (const std::string& json : {out, first, last}) {
        const doc d(json);
        BOOST_TEST_REQUIRE(d.ok(), json);
        const std::string r = json.starts_with("{\"type\"") ? "/response" : "";
        BOOST_TEST_CONTEXT(json) {
            BOOST_TEST(d.str(r + "/instructions") == "Be brief.");
            BOOST_TEST(d.num(r + "/max_output_tokens") == 64);
            BOOST_TEST(d.json(r + "/temperature") == "0.25");
            BOOST_TEST(d.json(r + "/metadata") == R"({"team":"a"})");
            BOOST_TEST(d.str(r + "/user") == "u-1");
            BOOST_TEST(d.json(r + "/store") == "false");
            BOOST_TEST(d.str(r + "/tools/0/name") == "f");
            BOOST_TEST(d.str(r + "/tool_choice") == "required");
            BOOST_TEST(d.json(r + "/parallel_tool_calls") == "false");
            BOOST_TEST(d.str(r + "/text/format/type") == "json_object");
        }
    }
    // Nothing set: the defaults.
    const doc plain(rx::chat_to_responses_response(answer, model, created, response_id));
    BOOST_TEST(plain.is_null("/instructions"));
    BOOST_TEST(plain.is_null("/max_output_tokens"));
    BOOST_TEST(plain.json("/tools") == "[]");
    BOOST_TEST(plain.str("/tool_choice") == "auto");
    BOOST_TEST(plain.json("/metadata") == "{}");
}
