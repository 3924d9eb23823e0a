#define BOOST_TEST_MODULE anthropic_translate
#include <boost/test/unit_test.hpp>

#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/upstream/providers/anthropic_translate.hpp"

namespace xl = tollgate::upstream::anthropic;
namespace dom = simdjson::dom;
using simdjson::SUCCESS;

namespace {

// A parsed output document with JSON-pointer accessors; a missing or mistyped value
// reads as a marker string so the failing check shows what went wrong.
class doc {
  public:
    explicit doc(std::string_view text) : text_(text) {
        ok_ = parser_.parse(text_.data(), text_.size()).get(root_) == SUCCESS;
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
    if (p.parse(text.data(), text.size()).get(e) != SUCCESS) return "<invalid JSON>";
    return simdjson::minify(e);
}

// "data: {...}\n\n" -> "{...}"
std::string data_of(const std::string& event) {
    BOOST_REQUIRE_MESSAGE(event.starts_with("data: ") && event.ends_with("\n\n"),
                          "not one SSE event: " << event);
    const std::string body = event.substr(6, event.size() - 8);
    BOOST_REQUIRE_MESSAGE(body.find('\n') == std::string::npos, "data spans lines: " << event);
    return body;
}

struct named_event {
    std::string name, data;
};

// "event: x\ndata: {...}\n\n" -> {x, {...}}
named_event split_event(const std::string& event) {
    BOOST_REQUIRE_MESSAGE(event.starts_with("event: ") && event.ends_with("\n\n"),
                          "not one SSE event: " << event);
    const auto nl = event.find('\n');
    BOOST_REQUIRE(event.compare(nl + 1, 6, "data: ") == 0);
    named_event e{event.substr(7, nl - 7), event.substr(nl + 7, event.size() - nl - 9)};
    BOOST_REQUIRE_MESSAGE(e.data.find('\n') == std::string::npos, "data spans lines: " << event);
    return e;
}

void require_valid_json(std::string_view text) {
    BOOST_TEST_CONTEXT(text) {
        BOOST_TEST(doc(text).ok());
    }
}

xl::translated to_anthropic(std::string_view openai_body, std::uint32_t default_max = 4096) {
    xl::translated t =
        xl::chat_to_messages_request(openai_body, "claude-3-5-haiku-latest", default_max);
    if (t.ok()) require_valid_json(t.body);
    return t;
}

xl::translated to_openai(std::string_view anthropic_body) {
    xl::translated t = xl::messages_to_chat_request(anthropic_body, "gpt-4o-mini");
    if (t.ok()) require_valid_json(t.body);
    return t;
}

// --- Fixtures: the documented shapes ----------------------------------------------------

// An OpenAI multi-turn conversation with a tool round: the assistant calls two tools,
// the client returns both results, and the user follows up.
constexpr std::string_view openai_tool_conversation = R"({
  "model": "claude-haiku",
  "messages": [
    {"role": "system", "content": "You are a weather bot."},
    {"role": "user", "content": "Weather in Paris and Oslo?"},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
      {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\",\"unit\":\"c\"}"}}
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "4C snow"}]},
    {"role": "assistant", "content": "Paris is 18C, Oslo 4C."},
    {"role": "user", "content": "Thanks!"}
  ],
  "tools": [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "now"}}
  ],
  "tool_choice": "required",
  "parallel_tool_calls": false,
  "max_tokens": 300,
  "temperature": 0.25,
  "stream": true,
  "stream_options": {"include_usage": true},
  "frequency_penalty": 0.5,
  "user": "u-42"
})";

// An Anthropic answer with text, a tool call, and every usage field.
constexpr std::string_view anthropic_tool_answer = R"({
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
  "type": "message",
  "role": "assistant",
  "model": "claude-3-5-haiku-20241022",
  "content": [
    {"type": "text", "text": "Let me check."},
    {"type": "text", "text": " One moment."},
    {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "Paris", "days": [1, 2], "exact": true, "ratio": 0.5}}
  ],
  "stop_reason": "tool_use",
  "stop_sequence": null,
  "usage": {"input_tokens": 100, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 30, "output_tokens": 40}
})";

// A realistic Anthropic stream (event name, data) with text then a tool call.
const std::vector<std::pair<std::string, std::string>> anthropic_stream = {
    {"message_start",
     R"({"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku-20241022","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_read_input_tokens":8,"output_tokens":2}}})"},
    {"content_block_start",
     R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"},
    {"ping", R"({"type": "ping"})"},
    {"content_block_delta",
     R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, let\u0027s check"}})"},
    {"content_block_delta",
     R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the weather \"now\"."}})"},
    {"content_block_stop", R"({"type":"content_block_stop","index":0})"},
    {"content_block_start",
     R"({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}})"},
    {"content_block_delta",
     R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}})"},
    {"content_block_delta",
     R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}})"},
    {"content_block_delta",
     R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San Fra"}})"},
    {"content_block_delta",
     R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ncisco, CA\"}"}})"},
    {"content_block_stop", R"({"type":"content_block_stop","index":1})"},
    {"message_delta",
     R"({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}})"},
    {"message_stop", R"({"type":"message_stop"})"},
};

// A realistic OpenAI chunk stream (data payloads) with text and two tool calls.
const std::vector<std::string> openai_stream = {
    R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null})",
    R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Checking "},"logprobs":null,"finish_reason":null}],"usage":null})",
    R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"both."},"logprobs":null,"finish_reason":null}],"usage":null})",
    R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null})",
    R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\""}}]},"logprobs":null,"finish_reason":null}],"usage":null})",
    R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null})",
    R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_B","type":"function","function":{"name":"get_weather","arguments":"{\"city\": "}}]},"logprobs":null,"finish_reason":null}],"usage":null})",
    R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"Oslo\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null})",
    R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null})",
    R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":35,"total_tokens":155,"prompt_tokens_details":{"cached_tokens":20}}})",
    "[DONE]",
};

// The OpenAI side of a stream, reassembled as a client SDK would.
struct openai_reassembled {
    std::string role, content, finish_reason, id;
    std::map<std::int64_t, std::string> tool_ids, tool_names, tool_arguments;
    std::vector<std::string> usage_chunks;  // JSON of each non-null usage
    bool done = false;
    bool every_chunk_has_usage_key = true;
    std::size_t chunks = 0;
};

void reassemble(openai_reassembled& r, const std::string& event) {
    if (event == "data: [DONE]\n\n") {
        BOOST_TEST(!r.done);
        r.done = true;
        return;
    }
    BOOST_TEST(!r.done);
    const doc d(data_of(event));
    BOOST_REQUIRE_MESSAGE(d.ok(), "invalid JSON: " << event);
    ++r.chunks;
    BOOST_TEST(d.str("/object") == "chat.completion.chunk");
    BOOST_TEST(d.str("/model") == "claude-haiku");
    BOOST_TEST(d.num("/created") == 1700000123);
    r.id = d.str("/id");
    if (!d.has("/usage")) r.every_chunk_has_usage_key = false;
    if (d.has("/usage") && !d.is_null("/usage")) r.usage_chunks.push_back(d.json("/usage"));
    if (d.size("/choices") == 0) return;
    if (d.has("/choices/0/delta/role")) r.role = d.str("/choices/0/delta/role");
    if (d.has("/choices/0/delta/content")) r.content += d.str("/choices/0/delta/content");
    if (!d.is_null("/choices/0/finish_reason")) r.finish_reason = d.str("/choices/0/finish_reason");
    for (std::size_t i = 0;
         i < d.size("/choices/0/delta/tool_calls") && d.has("/choices/0/delta/tool_calls"); ++i) {
        const std::string p = "/choices/0/delta/tool_calls/" + std::to_string(i);
        const std::int64_t index = d.num(p + "/index");
        if (d.has(p + "/id")) r.tool_ids[index] = d.str(p + "/id");
        if (d.has(p + "/function/name")) r.tool_names[index] = d.str(p + "/function/name");
        if (d.has(p + "/function/arguments"))
            r.tool_arguments[index] += d.str(p + "/function/arguments");
    }
}

// The Anthropic side of a stream, reassembled as the Anthropic SDK would.
struct anthropic_reassembled {
    std::vector<std::string> names;
    std::map<std::int64_t, std::string> block_type, text, tool_id, tool_name, partial_json;
    std::vector<std::int64_t> open;
    std::string id, model, stop_reason;
    std::int64_t input_tokens = -1, output_tokens = -1, cache_read = -1;
};

void reassemble(anthropic_reassembled& r, const std::string& event) {
    const named_event e = split_event(event);
    const doc d(e.data);
    BOOST_REQUIRE_MESSAGE(d.ok(), "invalid JSON: " << event);
    BOOST_TEST(d.str("/type") == e.name);
    r.names.push_back(e.name);
    if (e.name == "message_start") {
        r.id = d.str("/message/id");
        r.model = d.str("/message/model");
        BOOST_TEST(d.str("/message/role") == "assistant");
        BOOST_TEST(d.size("/message/content") == 0u);
        BOOST_TEST(d.num("/message/usage/input_tokens") == 0);
    } else if (e.name == "content_block_start") {
        const std::int64_t i = d.num("/index");
        BOOST_TEST(r.block_type.count(i) == 0u);
        r.block_type[i] = d.str("/content_block/type");
        r.open.push_back(i);
        if (r.block_type[i] == "tool_use") {
            r.tool_id[i] = d.str("/content_block/id");
            r.tool_name[i] = d.str("/content_block/name");
            BOOST_TEST(d.json("/content_block/input") == "{}");
        }
    } else if (e.name == "content_block_delta") {
        const std::int64_t i = d.num("/index");
        BOOST_TEST((std::find(r.open.begin(), r.open.end(), i) != r.open.end()));
        if (d.str("/delta/type") == "text_delta") r.text[i] += d.str("/delta/text");
        if (d.str("/delta/type") == "input_json_delta")
            r.partial_json[i] += d.str("/delta/partial_json");
    } else if (e.name == "content_block_stop") {
        const std::int64_t i = d.num("/index");
        auto it = std::find(r.open.begin(), r.open.end(), i);
        BOOST_TEST((it != r.open.end()));
        if (it != r.open.end()) r.open.erase(it);
    } else if (e.name == "message_delta") {
        r.stop_reason = d.str("/delta/stop_reason");
        if (d.has("/usage/input_tokens")) r.input_tokens = d.num("/usage/input_tokens");
        if (d.has("/usage/cache_read_input_tokens"))
            r.cache_read = d.num("/usage/cache_read_input_tokens");
        r.output_tokens = d.num("/usage/output_tokens");
    }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

// =======================================================================================
// OpenAI request -> Anthropic request

BOOST_AUTO_TEST_CASE(openai_request_basic_fields_map_to_messages_request) {
    const auto t = to_anthropic(R"({
      "model": "claude-haiku",
      "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}, {"type": "text", "text": "No emoji."}]},
        {"role": "user", "content": "Hello"}
      ],
      "temperature": 0.7, "top_p": 0.9, "stop": "END", "stream": false,
      "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
      "logprobs": true, "seed": 7, "n": 1
    })");
    BOOST_REQUIRE_MESSAGE(t.ok(), t.error);
    const doc d(t.body);
    BOOST_TEST(d.str("/model") == "claude-3-5-haiku-latest");
    BOOST_TEST(d.num("/max_tokens") == 4096);  // the provider default: the client gave none
    BOOST_TEST(d.str("/system") == "Be brief.\n\nAnswer in French.\nNo emoji.");
    BOOST_TEST(d.size("/messages") == 1u);
    BOOST_TEST(d.json("/messages/0") ==
               R"({"role":"user","content":[{"type":"text","text":"Hello"}]})");
    BOOST_TEST(d.dbl("/temperature") == 0.7);
    BOOST_TEST(d.dbl("/top_p") == 0.9);
    BOOST_TEST(d.json("/stop_sequences") == R"(["END"])");
    BOOST_TEST(!d.boolean("/stream"));
    BOOST_TEST(d.has("/stream"));
    // Dropped: no Anthropic equivalent.
    for (const char* k : {"/response_format", "/logprobs", "/seed", "/n", "/tools", "/tool_choice"})
        BOOST_TEST(!d.has(k), k);
}

BOOST_AUTO_TEST_CASE(max_completion_tokens_wins_and_stop_array_maps) {
    const auto t = to_anthropic(R"({"model":"m","messages":[{"role":"user","content":"hi"}],
      "max_tokens": 10, "max_completion_tokens": 20, "stop": ["a", "b\n"]})");
    BOOST_REQUIRE_MESSAGE(t.ok(), t.error);
    const doc d(t.body);
    BOOST_TEST(d.num("/max_tokens") == 20);
    BOOST_TEST(d.json("/stop_sequences") == R"(["a","b\n"])");

    const auto only_max = to_anthropic(
        R"({"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":55})");
    BOOST_TEST(doc(only_max.body).num("/max_tokens") == 55);
    const auto custom_default =
        to_anthropic(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})", 777);
    BOOST_TEST(doc(custom_default.body).num("/max_tokens") == 777);
}

BOOST_AUTO_TEST_CASE(consecutive_same_role_turns_are_merged_to_alternate) {
    const auto t = to_anthropic(R"({"model":"m","messages":[
      {"role":"user","content":"one"},
      {"role":"user","content":[{"type":"text","text":"two"}]},
      {"role":"system","content":"mid-conversation system"},
      {"role":"user","content":"three"},
      {"role":"assistant","content":"a"},
      {"role":"assistant","content":[{"type":"text","text":"b"}]},
      {"role":"assistant","content":""},
      {"role":"user","content":"four"}
    ]})");
    BOOST_REQUIRE_MESSAGE(t.ok(), t.error);
    const doc d(t.body);
    BOOST_TEST(d.size("/messages") == 3u);
    BOOST_TEST(d.str("/messages/0/role") == "user");
    BOOST_TEST(d.size("/messages/0/content") == 3u);
    BOOST_TEST(d.str("/messages/0/content/2/text") == "three");
    BOOST_TEST(d.str("/messages/1/role") == "assistant");
    BOOST_TEST(d.json("/messages/1/content") ==
               R"([{"type":"text","text":"a"},{"type":"text","text":"b"}])");
    BOOST_TEST(d.str("/messages/2/role") == "user");
    BOOST_TEST(d.str("/system") == "mid-conversation system");
}

BOOST_AUTO_TEST_CASE(image_parts_map_to_url_and_base64_sources) {
    const auto t = to_anthropic(R"({"model":"m","messages":[{"role":"user","content":[
      {"type":"text","text":"What is in these?"},
      {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg","detail":"high"}},
      {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
      {"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBERi0="}}
    ]}]})");
    BOOST_REQUIRE_MESSAGE(t.ok(), t.error);
    const doc d(t.body);
    BOOST_TEST(d.json("/messages/0/content/1") ==
               R"({"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}})");
    BOOST_TEST(
        d.json("/messages/0/content/2") ==
        R"({"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}})");
    BOOST_TEST(
        d.json("/messages/0/content/3") ==
        R"({"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}})");
}

BOOST_AUTO_TEST_CASE(tool_calls_and_tool_messages_map_to_tool_use_and_tool_result) {
    const auto t = to_anthropic(openai_tool_conversation);
    BOOST_REQUIRE_MESSAGE(t.ok(), t.error);
    const doc d(t.body);
    BOOST_TEST(d.str("/system") == "You are a weather bot.");
    BOOST_TEST(d.num("/max_tokens") == 300);
    BOOST_TEST(d.dbl("/temperature") == 0.25);
    BOOST_TEST(d.boolean("/stream"));
    BOOST_TEST(!d.has("/stream_options"));
    BOOST_TEST(!d.has("/frequency_penalty"));
    BOOST_TEST(d.str("/metadata/user_id") == "u-42");

    BOOST_REQUIRE(d.size("/messages") == 5u);
    BOOST_TEST(d.str("/messages/1/role") == "assistant");
    BOOST_TEST(
        d.json("/messages/1/content") ==
        R"([{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},)"
        R"({"type":"tool_use","id":"call_2","name":"get_weather","input":{"city":"Oslo","unit":"c"}}])");
    // Both tool messages form one user turn of tool_result blocks.
    BOOST_TEST(d.str("/messages/2/role") == "user");
    BOOST_TEST(
        d.json("/messages/2/content") ==
        R"([{"type":"tool_result","tool_use_id":"call_1","content":"18C sunny"},)"
        R"({"type":"tool_result","tool_use_id":"call_2","content":[{"type":"text","text":"4C snow"}]}])");
    BOOST_TEST(
        d.json("/messages/3") ==
        R"({"role":"assistant","content":[{"type":"text","text":"Paris is 18C, Oslo 4C."}]})");
    BOOST_TEST(d.str("/messages/4/content/0/text") == "Thanks!");

    BOOST_TEST(
        d.json("/tools/0") ==
        R"({"name":"get_weather","description":"Current weather","input_schema":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["c","f"]}},"required":["city"]}})");
    BOOST_TEST(d.json("/tools/1") ==
               R"({"name":"now","input_schema":{"type":"object","properties":{}}})");
    BOOST_TEST(d.json("/tool_choice") == R"({"type":"any","disable_parallel_tool_use":true})");
}

BOOST_AUTO_TEST_CASE(tool_results_come_first_in_a_merged_user_turn) {
    const auto t = to_anthropic(R"({"model":"m","messages":[
      {"role":"user","content":"go"},
      {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":""}}]},
      {"role":"user","content":"also this"},
      {"role":"tool","tool_call_id":"c1","content":"done"}
    ]})");
    BOOST_REQUIRE_MESSAGE(t.ok(), t.error);
    const doc d(t.body);
    BOOST_TEST(d.json("/messages/1/content/0/input") == "{}");  // "" arguments: no arguments
    BOOST_TEST(d.str("/messages/2/content/0/type") == "tool_result");
    BOOST_TEST(d.str("/messages/2/content/1/text") == "also this");
}

BOOST_AUTO_TEST_CASE(tool_choice_forms_map) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"("auto")", R"({"type":"auto"})"},
        {R"("required")", R"({"type":"any"})"},
        {R"("none")", R"({"type":"none"})"},
        {R"({"type":"function","function":{"name":"get_weather"}})",
         R"({"type":"tool","name":"get_weather"})"},
    };
    for (const auto& [in, want] : cases) {
        const std::string body =
            R"({"model":"m","messages":[{"role":"user","content":"x"}],)"
            R"("tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],)"
            R"("tool_choice":)" +
            in + "}";
        const auto t = to_anthropic(body);
        BOOST_TEST_CONTEXT(in) {
            BOOST_REQUIRE_MESSAGE(t.ok(), t.error);
            BOOST_TEST(doc(t.body).json("/tool_choice") == want);
        }
    }
    // Without tools a tool_choice means nothing to Anthropic and is not sent.
    const auto no_tools = to_anthropic(
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"auto"})");
    BOOST_TEST(!doc(no_tools.body).has("/tool_choice"));
    // parallel_tool_calls: false alone still reaches Anthropic.
    const auto serial = to_anthropic(
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"parallel_tool_calls":false,)"
        R"("tools":[{"type":"function","function":{"name":"f"}}]})");
    BOOST_TEST(doc(serial.body).json("/tool_choice") ==
               R"({"type":"auto","disable_parallel_tool_use":true})");
}

BOOST_AUTO_TEST_CASE(invalid_tool_call_arguments_are_a_client_error) {
    const std::vector<std::string> bad_arguments = {R"("{not json")", R"("[1,2]")", R"("{\"a\":1")",
                                                    R"("42")"};
    for (const auto& args : bad_arguments) {
        const std::string body =
            R"({"model":"m","messages":[{"role":"user","content":"x"},)"
            R"({"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":)" +
            args + "}}]}]}";
        BOOST_TEST_CONTEXT(body) {
            BOOST_REQUIRE(doc(body).ok());  // the fixture itself is valid JSON
            const auto t = to_anthropic(body);
            BOOST_TEST(!t.ok());
            BOOST_TEST(t.error.find("arguments") != std::string::npos);
            BOOST_TEST(t.body.empty());
        }
    }
}

BOOST_AUTO_TEST_CASE(n_greater_than_one_is_refused) {
    const auto t =
        to_anthropic(R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":2})");
    BOOST_TEST(!t.ok());
    BOOST_TEST(t.error.find("'n'") != std::string::npos);
    BOOST_TEST(
        to_anthropic(R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":1})").ok());
    BOOST_TEST(
        to_anthropic(R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":null})").ok());
}

BOOST_AUTO_TEST_CASE(malformed_openai_requests_are_client_errors) {
    const std::vector<std::string> bad = {
        "",
        "not json",
        "[1,2,3]",
        R"({"model":"m"})",
        R"({"model":"m","messages":"hi"})",
        R"({"model":"m","messages":[]})",
        R"({"model":"m","messages":[{"role":"system","content":"only system"}]})",
        R"({"model":"m","messages":[42]})",
        R"({"model":"m","messages":[{"content":"no role"}]})",
        R"({"model":"m","messages":[{"role":"wizard","content":"x"}]})",
        R"({"model":"m","messages":[{"role":"user","content":42}]})",
        R"({"model":"m","messages":[{"role":"user"}]})",
        R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]})",
        R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,notbase64"}}]}]})",
        R"({"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]})",
        R"({"model":"m","messages":[{"role":"tool","content":"no id"}]})",
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"stop":5})",
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a",1]})",
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0})",
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"ten"})",
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1.5})",
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"})",
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"})",
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"})",
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"code_interpreter"}]})",
        R"({"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]})",
        std::string(200, '[') + std::string(200, ']'),
    };
    for (const auto& body : bad) {
        BOOST_TEST_CONTEXT(body) {
            const auto t = to_anthropic(body);
            BOOST_TEST(!t.ok());
            BOOST_TEST(!t.error.empty());
        }
    }
}

// =======================================================================================
// Anthropic answer -> OpenAI chat.completion

BOOST_AUTO_TEST_CASE(anthropic_answer_maps_to_chat_completion) {
    const std::string out =
        xl::messages_to_chat_response(anthropic_tool_answer, "claude-haiku", 1700000123);
    const doc d(out);
    BOOST_REQUIRE_MESSAGE(d.ok(), out);
    BOOST_TEST(d.str("/id") == "msg_01XFDUDYJgAACzvnptvVoYEL");
    BOOST_TEST(d.str("/object") == "chat.completion");
    BOOST_TEST(d.num("/created") == 1700000123);
    BOOST_TEST(d.str("/model") == "claude-haiku");
    BOOST_TEST(d.size("/choices") == 1u);
    BOOST_TEST(d.num("/choices/0/index") == 0);
    BOOST_TEST(d.str("/choices/0/message/role") == "assistant");
    BOOST_TEST(d.str("/choices/0/message/content") == "Let me check. One moment.");
    BOOST_TEST(d.str("/choices/0/finish_reason") == "tool_calls");
    BOOST_TEST(d.str("/choices/0/message/tool_calls/0/id") == "toolu_01A09q90qw90lq917835lq9");
    BOOST_TEST(d.str("/choices/0/message/tool_calls/0/type") == "function");
    BOOST_TEST(d.str("/choices/0/message/tool_calls/0/function/name") == "get_weather");
    BOOST_TEST(minify(d.str("/choices/0/message/tool_calls/0/function/arguments")) ==
               R"({"city":"Paris","days":[1,2],"exact":true,"ratio":0.5})");
    BOOST_TEST(
        d.json("/usage") ==
        R"({"prompt_tokens":150,"completion_tokens":40,"total_tokens":190,"prompt_tokens_details":{"cached_tokens":30}})");
}

BOOST_AUTO_TEST_CASE(answer_without_text_has_null_content_and_no_tool_calls_key) {
    const std::string out = xl::messages_to_chat_response(
        R"({"id":"msg_x","type":"message","role":"assistant","content":[],"stop_reason":"max_tokens","usage":{"input_tokens":5,"output_tokens":0}})",
        "c", 1);
    const doc d(out);
    BOOST_REQUIRE_MESSAGE(d.ok(), out);
    BOOST_TEST(d.is_null("/choices/0/message/content"));
    BOOST_TEST(!d.has("/choices/0/message/tool_calls"));
    BOOST_TEST(d.str("/choices/0/finish_reason") == "length");
    BOOST_TEST(
        d.json("/usage") ==
        R"({"prompt_tokens":5,"completion_tokens":0,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":0}})");
}

BOOST_AUTO_TEST_CASE(stop_reasons_map_to_finish_reasons) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"end_turn", "stop"},       {"stop_sequence", "stop"},     {"max_tokens", "length"},
        {"tool_use", "tool_calls"}, {"refusal", "content_filter"}, {"pause_turn", "stop"}};
    for (const auto& [reason, finish] : cases) {
        const std::string body =
            R"({"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"x"}],"stop_reason":")" +
            reason + R"(","usage":{"input_tokens":1,"output_tokens":1}})";
        BOOST_TEST(
            doc(xl::messages_to_chat_response(body, "c", 1)).str("/choices/0/finish_reason") ==
                finish,
            reason);
    }
}

BOOST_AUTO_TEST_CASE(malformed_anthropic_answer_gives_empty_result) {
    for (const std::string_view body : {"", "{", "nope", "[]", "\"str\"", "{\"content\":"}) {
        BOOST_TEST(xl::messages_to_chat_response(body, "c", 1).empty(), body);
    }
    // An object with odd types still gives a valid completion rather than a crash.
    const std::string odd = xl::messages_to_chat_response(
        R"({"content":[1,"x",{"type":"text"},{"type":"tool_use"}],"usage":{"input_tokens":"many","output_tokens":-3},"stop_reason":7})",
        "c", 1);
    require_valid_json(odd);
    BOOST_TEST(doc(odd).num("/usage/prompt_tokens") == 0);
}

BOOST_AUTO_TEST_CASE(error_message_is_extracted) {
    BOOST_TEST(
        xl::error_message(
            R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})") ==
        "Overloaded");
    BOOST_TEST(
        xl::error_message(R"({"error":{"message":"bad key","type":"invalid_request_error"}})") ==
        "bad key");
    BOOST_TEST(xl::error_message("<html>502</html>") == "the upstream provider returned an error");
    BOOST_TEST(xl::error_message("") == "the upstream provider returned an error");
    BOOST_TEST(xl::error_message(R"({"error":{"message":""}})") ==
               "the upstream provider returned an error");
}

// =======================================================================================
// Anthropic stream -> OpenAI chunks

BOOST_AUTO_TEST_CASE(anthropic_stream_becomes_openai_chunks_as_events_arrive) {
    xl::messages_stream_to_chat s("claude-haiku", 1700000123, true);
    openai_reassembled r;
    std::vector<std::size_t> produced;
    for (const auto& [name, data] : anthropic_stream) {
        std::vector<std::string> out;
        s.on_event(name, data, out);
        produced.push_back(out.size());
        for (const auto& ev : out) reassemble(r, ev);
    }
    // One output per input as it arrives (nothing held back), except: the empty text
    // start, the ping, the empty partial_json, block stops → none; message_stop → usage + [DONE].
    BOOST_TEST(produced == (std::vector<std::size_t>{1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 2}),
               boost::test_tools::per_element());
    BOOST_TEST(s.finished());
    BOOST_TEST(!s.failed());
    BOOST_TEST(r.done);
    BOOST_TEST(r.id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
    BOOST_TEST(r.role == "assistant");
    BOOST_TEST(r.content == "Okay, let's check the weather \"now\".");
    BOOST_TEST(r.tool_ids[0] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    BOOST_TEST(r.tool_names[0] == "get_weather");
    BOOST_TEST(minify(r.tool_arguments[0]) == R"({"location":"San Francisco, CA"})");
    BOOST_TEST(r.finish_reason == "tool_calls");
    BOOST_TEST(r.every_chunk_has_usage_key);
    BOOST_REQUIRE(r.usage_chunks.size() == 1u);
    BOOST_TEST(
        r.usage_chunks[0] ==
        R"({"prompt_tokens":480,"completion_tokens":89,"total_tokens":569,"prompt_tokens_details":{"cached_tokens":8}})");
    BOOST_TEST(s.prompt_tokens() == 480);
    BOOST_TEST(s.completion_tokens() == 89);

    // Events after the end are ignored.
    std::vector<std::string> late;
    s.on_event("content_block_delta", anthropic_stream[3].second, late);
    BOOST_TEST(late.empty());
}

BOOST_AUTO_TEST_CASE(anthropic_stream_without_include_usage_has_no_usage) {
    xl::messages_stream_to_chat s("claude-haiku", 1700000123, false);
    std::vector<std::string> out;
    for (const auto& [name, data] : anthropic_stream) s.on_event(name, data, out);
    BOOST_REQUIRE(!out.empty());
    BOOST_TEST(out.back() == "data: [DONE]\n\n");
    for (std::size_t i = 0; i + 1 < out.size(); ++i) {
        const doc d(data_of(out[i]));
        BOOST_TEST(d.ok());
        BOOST_TEST(!d.has("/usage"));
        BOOST_TEST(d.size("/choices") == 1u);
    }
    BOOST_TEST(s.completion_tokens() == 89);  // usage is still tracked for billing
}

BOOST_AUTO_TEST_CASE(anthropic_stream_with_empty_event_names_uses_data_type) {
    xl::messages_stream_to_chat s("claude-haiku", 1700000123, false);
    openai_reassembled r;
    for (const auto& [name, data] : anthropic_stream) {
        std::vector<std::string> out;
        s.on_event("", data, out);
        for (const auto& ev : out) reassemble(r, ev);
    }
    BOOST_TEST(s.finished());
    BOOST_TEST(r.content == "Okay, let's check the weather \"now\".");
    BOOST_TEST(r.finish_reason == "tool_calls");
}

BOOST_AUTO_TEST_CASE(tool_call_without_arguments_streams_empty_object) {
    xl::messages_stream_to_chat s("claude-haiku", 1700000123, false);
    openai_reassembled r;
    const std::vector<std::pair<std::string, std::string>> events = {
        anthropic_stream[0],
        {"content_block_start",
         R"({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_a","name":"now","input":{}}})"},
        {"content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}})"},
        {"content_block_stop", R"({"type":"content_block_stop","index":0})"},
        {"content_block_start",
         R"({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_b","name":"get_weather","input":{}}})"},
        {"content_block_delta",
         R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":\"Rome\"}"}})"},
        {"content_block_stop", R"({"type":"content_block_stop","index":1})"},
        {"message_delta",
         R"({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9}})"},
        {"message_stop", R"({"type":"message_stop"})"},
    };
    for (const auto& [name, data] : events) {
        std::vector<std::string> out;
        s.on_event(name, data, out);
        for (const auto& ev : out) reassemble(r, ev);
    }
    BOOST_TEST(r.tool_arguments[0] == "{}");
    BOOST_TEST(r.tool_ids[1] == "toolu_b");
    BOOST_TEST(r.tool_arguments[1] == R"({"city":"Rome"})");
    BOOST_TEST(r.done);
}

BOOST_AUTO_TEST_CASE(anthropic_error_event_becomes_one_error_chunk_and_fails) {
    xl::messages_stream_to_chat s("claude-haiku", 1700000123, true);
    std::vector<std::string> out;
    for (std::size_t i = 0; i < 4; ++i)
        s.on_event(anthropic_stream[i].first, anthropic_stream[i].second, out);
    const std::size_t before = out.size();
    s.on_event("error",
               R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})",
               out);
    BOOST_REQUIRE(out.size() == before + 1);
    const doc d(data_of(out.back()));
    BOOST_TEST(d.str("/error/message") == "Overloaded");
    BOOST_TEST(d.str("/error/type") == "upstream_error");
    BOOST_TEST(d.str("/error/code") == "upstream_error");
    BOOST_TEST(s.failed());
    BOOST_TEST(!s.finished());
    BOOST_TEST(s.error_text() == "Overloaded");
    BOOST_TEST(s.prompt_tokens() == 480);  // seen so far, for the usage record
    // Nothing after the failure: no [DONE], no more chunks.
    const std::size_t after = out.size();
    for (std::size_t i = 4; i < anthropic_stream.size(); ++i)
        s.on_event(anthropic_stream[i].first, anthropic_stream[i].second, out);
    BOOST_TEST(out.size() == after);
}

BOOST_AUTO_TEST_CASE(malformed_anthropic_event_fails_without_crashing) {
    for (const std::string_view bad :
         {"", "{", "not json", "[1]", "{\"type\":\"content_block_delta\"}"}) {
        xl::messages_stream_to_chat s("claude-haiku", 1, true);
        std::vector<std::string> out;
        s.on_event("message_start", anthropic_stream[0].second, out);
        s.on_event("content_block_delta", bad, out);
        BOOST_TEST_CONTEXT(bad) {
            BOOST_TEST(s.failed());
            BOOST_TEST(doc(data_of(out.back())).str("/error/type") == "upstream_error");
        }
    }
    // An error event whose data is not JSON still fails the stream cleanly.
    xl::messages_stream_to_chat s("claude-haiku", 1, true);
    std::vector<std::string> out;
    s.on_event("error", "garbage", out);
    BOOST_TEST(s.failed());
    BOOST_REQUIRE(out.size() == 1u);
    require_valid_json(data_of(out[0]));
    // Unknown event types are ignored, as Anthropic asks.
    xl::messages_stream_to_chat t("claude-haiku", 1, true);
    std::vector<std::string> none;
    t.on_event("future_event", R"({"type":"future_event","x":1})", none);
    BOOST_TEST(none.empty());
    BOOST_TEST(!t.failed());
}

// =======================================================================================
// Anthropic request -> OpenAI request (POST /v1/messages to an OpenAI-kind upstream)

constexpr std::string_view anthropic_tool_request = R"({
  "model": "claude-sonnet-4",
  "max_tokens": 1024,
  "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Be careful."}],
  "messages": [
    {"role": "user", "content": "List the files."},
    {"role": "assistant", "content": [
      {"type": "thinking", "thinking": "hmm", "signature": "sig"},
      {"type": "text", "text": "Running ls."},
      {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "ls -la", "timeout": 30}}
    ]},
    {"role": "user", "content": [
      {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt\nb.txt"},
      {"type": "text", "text": "And the image?"},
      {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
      {"type": "image", "source": {"type": "url", "url": "https://example.com/x.png"}}
    ]},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_2", "name": "read", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
      "content": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}]}]}
  ],
  "tools": [
    {"name": "bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
    {"name": "read", "input_schema": {"type": "object", "properties": {}}}
  ],
  "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
  "stop_sequences": ["</done>"],
  "temperature": 0.3,
  "top_p": 0.8,
  "top_k": 40,
  "stream": true,
  "metadata": {"user_id": "user-7"}
})";

BOOST_AUTO_TEST_CASE(anthropic_request_maps_to_chat_request) {
    const auto t = to_openai(anthropic_tool_request);
    BOOST_REQUIRE_MESSAGE(t.ok(), t.error);
    const doc d(t.body);
    BOOST_TEST(d.str("/model") == "gpt-4o-mini");
    BOOST_TEST(d.num("/max_tokens") == 1024);
    BOOST_TEST(d.dbl("/temperature") == 0.3);
    BOOST_TEST(d.dbl("/top_p") == 0.8);
    BOOST_TEST(!d.has("/top_k"));
    BOOST_TEST(d.json("/stop") == R"(["</done>"])");
    BOOST_TEST(d.boolean("/stream"));
    BOOST_TEST(d.json("/stream_options") == R"({"include_usage":true})");
    BOOST_TEST(d.str("/user") == "user-7");

    BOOST_REQUIRE(d.size("/messages") == 7u);
    BOOST_TEST(d.json("/messages/0") ==
               R"({"role":"system","content":"You are Claude Code.\n\nBe careful."})");
    BOOST_TEST(d.json("/messages/1") == R"({"role":"user","content":"List the files."})");
    BOOST_TEST(d.str("/messages/2/role") == "assistant");
    BOOST_TEST(d.str("/messages/2/content") == "Running ls.");  // thinking dropped
    BOOST_TEST(d.str("/messages/2/tool_calls/0/id") == "toolu_1");
    BOOST_TEST(d.str("/messages/2/tool_calls/0/type") == "function");
    BOOST_TEST(d.str("/messages/2/tool_calls/0/function/name") == "bash");
    BOOST_TEST(minify(d.str("/messages/2/tool_calls/0/function/arguments")) ==
               R"({"command":"ls -la","timeout":30})");
    // The tool message comes straight after the tool call, before the user's own parts.
    BOOST_TEST(d.json("/messages/3") ==
               R"({"role":"tool","tool_call_id":"toolu_1","content":"a.txt\nb.txt"})");
    BOOST_TEST(d.json("/messages/4") ==
               R"({"role":"user","content":[{"type":"text","text":"And the image?"},)"
               R"({"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}},)"
               R"({"type":"image_url","image_url":{"url":"https://example.com/x.png"}}]})");
    BOOST_TEST(d.is_null("/messages/5/content"));
    BOOST_TEST(d.str("/messages/5/tool_calls/0/function/arguments") == "{}");
    BOOST_TEST(d.json("/messages/6") ==
               R"({"role":"tool","tool_call_id":"toolu_2","content":"line 1\nline 2"})");

    BOOST_TEST(
        d.json("/tools/0") ==
        R"({"type":"function","function":{"name":"bash","description":"Run a command","parameters":{"type":"object","properties":{"command":{"type":"string"}},"required":["command"]}}})");
    BOOST_TEST(
        d.json("/tools/1") ==
        R"({"type":"function","function":{"name":"read","parameters":{"type":"object","properties":{}}}})");
    BOOST_TEST(d.str("/tool_choice") == "required");
    BOOST_TEST(!d.boolean("/parallel_tool_calls"));
    BOOST_TEST(d.has("/parallel_tool_calls"));
}

BOOST_AUTO_TEST_CASE(anthropic_tool_choice_and_plain_fields_map) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"type":"auto"})", R"("auto")"},
        {R"({"type":"any"})", R"("required")"},
        {R"({"type":"none"})", R"("none")"},
        {R"({"type":"tool","name":"bash"})", R"({"type":"function","function":{"name":"bash"}})"},
    };
    for (const auto& [in, want] : cases) {
        const std::string body =
            R"({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],)"
            R"("tools":[{"name":"bash","input_schema":{"type":"object"}}],"tool_choice":)" +
            in + "}";
        const auto t = to_openai(body);
        BOOST_TEST_CONTEXT(in) {
            BOOST_REQUIRE_MESSAGE(t.ok(), t.error);
            BOOST_TEST(doc(t.body).json("/tool_choice") == want);
            BOOST_TEST(!doc(t.body).has("/parallel_tool_calls"));
        }
    }
    const auto plain = to_openai(
        R"({"model":"m","max_tokens":5,"system":"sys","stream":false,"messages":[{"role":"user","content":"x"}]})");
    BOOST_REQUIRE_MESSAGE(plain.ok(), plain.error);
    const doc d(plain.body);
    BOOST_TEST(d.json("/messages/0") == R"({"role":"system","content":"sys"})");
    BOOST_TEST(!d.boolean("/stream"));
    BOOST_TEST(!d.has("/stream_options"));
}

BOOST_AUTO_TEST_CASE(malformed_anthropic_requests_are_client_errors) {
    const std::vector<std::string> bad = {
        "",
        "{}",
        "[]",
        "null",
        "{\"messages\":{}}",
        R"({"messages":[{"role":"user"}]})",
        R"({"messages":[{"role":"system","content":"x"}]})",
        R"({"messages":[{"role":"user","content":5}]})",
        R"({"messages":[{"role":"user","content":[{"type":"video"}]}]})",
        R"({"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]})",
        R"({"messages":[{"role":"user","content":[{"type":"tool_result"}]}]})",
        R"({"messages":[{"role":"assistant","content":[{"type":"tool_use","input":{}}]}]})",
        R"({"messages":[{"role":"user","content":"x"}],"max_tokens":-1})",
        R"({"messages":[{"role":"user","content":"x"}],"system":7})",
        R"({"messages":[{"role":"user","content":"x"}],"stop_sequences":[1]})",
        R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]})",
        R"({"messages":[{"role":"user","content":"x"}],"tools":[{"name":"a"}],"tool_choice":{"type":"maybe"}})",
    };
    for (const auto& body : bad) {
        BOOST_TEST_CONTEXT(body) {
            const auto t = to_openai(body);
            BOOST_TEST(!t.ok());
        }
    }
}

// =======================================================================================
// OpenAI answer -> Anthropic message

BOOST_AUTO_TEST_CASE(chat_completion_maps_to_anthropic_message) {
    const std::string out = xl::chat_to_messages_response(R"({
      "id": "chatcmpl-123", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "Sure.", "refusal": null,
        "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "bash", "arguments": "{\"command\":\"ls\"}"}},
                       {"id": "call_10", "type": "function", "function": {"name": "bad", "arguments": "{oops"}}]},
        "logprobs": null, "finish_reason": "tool_calls"}],
      "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62, "prompt_tokens_details": {"cached_tokens": 10}}
    })",
                                                          "claude-sonnet-4");
    const doc d(out);
    BOOST_REQUIRE_MESSAGE(d.ok(), out);
    BOOST_TEST(d.str("/id") == "chatcmpl-123");
    BOOST_TEST(d.str("/type") == "message");
    BOOST_TEST(d.str("/role") == "assistant");
    BOOST_TEST(d.str("/model") == "claude-sonnet-4");
    BOOST_TEST(
        d.json("/content") ==
        R"([{"type":"text","text":"Sure."},{"type":"tool_use","id":"call_9","name":"bash","input":{"command":"ls"}},)"
        R"({"type":"tool_use","id":"call_10","name":"bad","input":{}}])");
    BOOST_TEST(d.str("/stop_reason") == "tool_use");
    BOOST_TEST(d.is_null("/stop_sequence"));
    BOOST_TEST(d.num("/usage/input_tokens") == 40);
    BOOST_TEST(d.num("/usage/cache_read_input_tokens") == 10);
    BOOST_TEST(d.num("/usage/output_tokens") == 12);
}

BOOST_AUTO_TEST_CASE(finish_reasons_map_back_to_stop_reasons) {
    const std::vector<std::pair<std::string, std::string>> cases = {{"stop", "end_turn"},
                                                                    {"length", "max_tokens"},
                                                                    {"tool_calls", "tool_use"},
                                                                    {"function_call", "tool_use"},
                                                                    {"content_filter", "refusal"}};
    for (const auto& [finish, reason] : cases) {
        const std::string body =
            R"({"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":")" +
            finish + R"("}],"usage":{"prompt_tokens":3,"completion_tokens":4}})";
        const doc d(xl::chat_to_messages_response(body, "m"));
        BOOST_TEST(d.str("/stop_reason") == reason, finish);
        BOOST_TEST(d.num("/usage/input_tokens") == 3);
        BOOST_TEST(d.num("/usage/output_tokens") == 4);
    }
}

BOOST_AUTO_TEST_CASE(malformed_chat_completion_gives_empty_or_valid_result) {
    for (const std::string_view body : {"", "{", "[]", "true", "{\"choices\":"})
        BOOST_TEST(xl::chat_to_messages_response(body, "m").empty(), body);
    for (const std::string_view body :
         {R"({})", R"({"choices":[]})", R"({"choices":[1]})",
          R"({"choices":[{"message":{"tool_calls":[{"id":"x"},5]}}]})",
          R"({"choices":[{"message":{"content":[{"type":"text","text":"a"},7]}}]})"}) {
        const std::string out = xl::chat_to_messages_response(body, "m");
        BOOST_TEST_CONTEXT(body) {
            require_valid_json(out);
            BOOST_TEST(doc(out).str("/type") == "message");
        }
    }
}

// =======================================================================================
// OpenAI stream -> Anthropic events

BOOST_AUTO_TEST_CASE(openai_stream_becomes_anthropic_events) {
    xl::chat_stream_to_messages s("claude-sonnet-4");
    anthropic_reassembled r;
    std::vector<std::size_t> produced;
    for (const auto& data : openai_stream) {
        std::vector<std::string> out;
        s.on_data(data, out);
        produced.push_back(out.size());
        for (const auto& ev : out) reassemble(r, ev);
    }
    BOOST_TEST(s.finished());
    BOOST_TEST(!s.failed());
    BOOST_TEST(r.names == (std::vector<std::string>{
                              "message_start", "content_block_start", "content_block_delta",
                              "content_block_delta", "content_block_stop", "content_block_start",
                              "content_block_delta", "content_block_delta", "content_block_stop",
                              "content_block_start", "content_block_delta", "content_block_delta",
                              "content_block_stop", "message_delta", "message_stop"}),
               boost::test_tools::per_element());
    BOOST_TEST(produced == (std::vector<std::size_t>{1, 2, 1, 2, 1, 1, 3, 1, 1, 0, 2}),
               boost::test_tools::per_element());
    BOOST_TEST(r.id == "chatcmpl-abc");
    BOOST_TEST(r.model == "claude-sonnet-4");
    BOOST_TEST(r.block_type[0] == "text");
    BOOST_TEST(r.text[0] == "Checking both.");
    BOOST_TEST(r.block_type[1] == "tool_use");
    BOOST_TEST(r.tool_id[1] == "call_A");
    BOOST_TEST(r.tool_name[1] == "get_weather");
    BOOST_TEST(minify(r.partial_json[1]) == R"({"city":"Paris"})");
    BOOST_TEST(r.tool_id[2] == "call_B");
    BOOST_TEST(minify(r.partial_json[2]) == R"({"city":"Oslo"})");
    BOOST_TEST(r.open.empty());
    BOOST_TEST(r.stop_reason == "tool_use");
    BOOST_TEST(r.input_tokens == 100);
    BOOST_TEST(r.cache_read == 20);
    BOOST_TEST(r.output_tokens == 35);
    BOOST_TEST(s.prompt_tokens() == 120);
    BOOST_TEST(s.completion_tokens() == 35);
}

BOOST_AUTO_TEST_CASE(openai_stream_without_usage_and_with_empty_choices_still_ends_cleanly) {
    xl::chat_stream_to_messages s("m");
    anthropic_reassembled r;
    const std::vector<std::string> stream = {
        R"({"id":"c1","object":"chat.completion.chunk","choices":[]})",
        R"({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]})",
        R"({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]})",
        R"({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" there"},"finish_reason":"stop"}]})",
        " [DONE]\n",
    };
    for (const auto& data : stream) {
        std::vector<std::string> out;
        s.on_data(data, out);
        for (const auto& ev : out) reassemble(r, ev);
    }
    BOOST_TEST(s.finished());
    BOOST_TEST(r.text[0] == "Hi there");
    BOOST_TEST(r.stop_reason == "end_turn");
    BOOST_TEST(r.input_tokens == -1);  // unknown: not sent
    BOOST_TEST(r.output_tokens == 0);
    BOOST_TEST(r.names.back() == "message_stop");

    // [DONE] alone still makes a complete, valid Anthropic stream.
    xl::chat_stream_to_messages empty("m");
    anthropic_reassembled e;
    std::vector<std::string> out;
    empty.on_data("[DONE]", out);
    for (const auto& ev : out) reassemble(e, ev);
    BOOST_TEST(
        e.names == (std::vector<std::string>{"message_start", "message_delta", "message_stop"}),
        boost::test_tools::per_element());
    std::vector<std::string> late;
    empty.on_data(openai_stream[1], late);
    BOOST_TEST(late.empty());
}

BOOST_AUTO_TEST_CASE(openai_stream_error_becomes_anthropic_error_event) {
    xl::chat_stream_to_messages s("m");
    std::vector<std::string> out;
    s.on_data(openai_stream[0], out);
    s.on_data(R"({"error":{"message":"The server had an error","type":"server_error"}})", out);
    BOOST_TEST(s.failed());
    BOOST_TEST(s.error_text() == "The server had an error");
    const named_event e = split_event(out.back());
    BOOST_TEST(e.name == "error");
    const doc d(e.data);
    BOOST_TEST(d.str("/type") == "error");
    BOOST_TEST(d.str("/error/type") == "api_error");
    BOOST_TEST(d.str("/error/message") == "The server had an error");
    const std::size_t n = out.size();
    s.on_data("[DONE]", out);
    BOOST_TEST(out.size() == n);

    xl::chat_stream_to_messages m("m");
    std::vector<std::string> mo;
    m.on_data("{\"id\":", mo);
    BOOST_TEST(m.failed());
    BOOST_REQUIRE(mo.size() == 1u);
    BOOST_TEST(split_event(mo[0]).name == "error");
}

// =======================================================================================
// Round trips and robustness

BOOST_AUTO_TEST_CASE(multi_turn_tool_conversation_round_trips) {
    // OpenAI -> Anthropic -> OpenAI keeps the conversation: roles, tool call ids,
    // arguments, tool results, tools and the forced tool choice.
    const auto a = to_anthropic(openai_tool_conversation);
    BOOST_REQUIRE_MESSAGE(a.ok(), a.error);
    const auto o = to_openai(a.body);
    BOOST_REQUIRE_MESSAGE(o.ok(), o.error);
    const doc d(o.body);
    BOOST_TEST(d.str("/model") == "gpt-4o-mini");
    BOOST_REQUIRE(d.size("/messages") == 7u);
    const std::vector<std::string> roles = {"system", "user",      "assistant", "tool",
                                            "tool",   "assistant", "user"};
    for (std::size_t i = 0; i < roles.size(); ++i)
        BOOST_TEST(d.str("/messages/" + std::to_string(i) + "/role") == roles[i]);
    BOOST_TEST(d.str("/messages/0/content") == "You are a weather bot.");
    BOOST_TEST(d.str("/messages/2/tool_calls/1/id") == "call_2");
    BOOST_TEST(minify(d.str("/messages/2/tool_calls/1/function/arguments")) ==
               R"({"city":"Oslo","unit":"c"})");
    BOOST_TEST(d.json("/messages/3") ==
               R"({"role":"tool","tool_call_id":"call_1","content":"18C sunny"})");
    BOOST_TEST(d.json("/messages/4") ==
               R"({"role":"tool","tool_call_id":"call_2","content":"4C snow"})");
    BOOST_TEST(d.str("/messages/5/content") == "Paris is 18C, Oslo 4C.");
    BOOST_TEST(d.str("/messages/6/content") == "Thanks!");
    BOOST_TEST(d.str("/tool_choice") == "required");
    BOOST_TEST(d.has("/parallel_tool_calls"));
    BOOST_TEST(d.str("/tools/0/function/name") == "get_weather");
    BOOST_TEST(d.num("/max_tokens") == 300);
    BOOST_TEST(d.json("/stream_options") == R"({"include_usage":true})");

    // And the answers: Anthropic -> OpenAI -> Anthropic keeps text, tool input and usage.
    const std::string chat = xl::messages_to_chat_response(anthropic_tool_answer, "c", 1);
    const doc back(xl::chat_to_messages_response(chat, "c"));
    BOOST_TEST(back.json("/content/0") == R"({"type":"text","text":"Let me check. One moment."})");
    BOOST_TEST(back.json("/content/1/input") ==
               R"({"city":"Paris","days":[1,2],"exact":true,"ratio":0.5})");
    BOOST_TEST(back.str("/stop_reason") == "tool_use");
    BOOST_TEST(back.num("/usage/input_tokens") + back.num("/usage/cache_read_input_tokens") == 150);
    BOOST_TEST(back.num("/usage/output_tokens") == 40);
}

BOOST_AUTO_TEST_CASE(strings_are_escaped_and_unicode_passes_through) {
    // JSON escapes in the request text: quote, backslash, newline, tab, NUL, BEL, U+2028.
    const std::string nasty =
        std::string(R"(quote\" backslash\\ newline\n tab\t nul\u0000 bell\u0007 del)") + "\x7f" +
        R"( é 日本 😀 \u2028)";
    const std::string body =
        R"({"model":"m","messages":[{"role":"user","content":")" + nasty + R"("}]})";
    BOOST_REQUIRE(doc(body).ok());
    const auto t = xl::chat_to_messages_request(body, "up\"stream\n\xff\xfe", 10);
    BOOST_REQUIRE_MESSAGE(t.ok(), t.error);
    require_valid_json(t.body);
    const doc d(t.body);
    const std::string expected = doc(body).str("/messages/0/content");
    BOOST_TEST(d.str("/messages/0/content/0/text") == expected);
    BOOST_TEST(expected.find(std::string(1, '\0')) != std::string::npos);
    BOOST_TEST(t.body.find("日本 😀") != std::string::npos);  // UTF-8 passes through unescaped
    BOOST_TEST(d.str("/model") ==
               "up\"stream\n\xEF\xBF\xBD\xEF\xBF\xBD");  // invalid bytes replaced

    // Stream translators escape too.
    xl::messages_stream_to_chat s("model\x01", 1, true);
    std::vector<std::string> out;
    s.on_event("message_start", anthropic_stream[0].second, out);
    s.on_event(
        "content_block_delta",
        R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\u0000b\"c\n"}})",
        out);
    for (const auto& ev : out) require_valid_json(data_of(ev));
    BOOST_TEST(doc(data_of(out.back())).str("/choices/0/delta/content") ==
               std::string("a\0b\"c\n", 6));
}

BOOST_AUTO_TEST_CASE(truncated_inputs_never_crash_and_outputs_stay_valid_json) {
    // Every prefix of every fixture: a translation error or a valid document, never a crash
    // (the sanitizer build runs this too).
    const std::vector<std::string_view> fixtures = {openai_tool_conversation, anthropic_tool_answer,
                                                    anthropic_tool_request};
    for (const auto f : fixtures) {
        for (std::size_t n = 0; n <= f.size(); ++n) {
            const std::string_view p = f.substr(0, n);
            const auto a = xl::chat_to_messages_request(p, "m", 10);
            if (a.ok()) BOOST_TEST(doc(a.body).ok());
            const auto b = xl::messages_to_chat_request(p, "m");
            if (b.ok()) BOOST_TEST(doc(b.body).ok());
            const std::string c = xl::messages_to_chat_response(p, "m", 1);
            if (!c.empty()) BOOST_TEST(doc(c).ok());
            const std::string d = xl::chat_to_messages_response(p, "m");
            if (!d.empty()) BOOST_TEST(doc(d).ok());
            BOOST_TEST(!xl::error_message(p).empty());
        }
    }
    for (const auto& [name, data] : anthropic_stream) {
        for (std::size_t n = 0; n < data.size(); n += 3) {
            xl::messages_stream_to_chat s("m", 1, true);
            std::vector<std::string> out;
            s.on_event(name, std::string_view(data).substr(0, n), out);
            for (const auto& ev : out) BOOST_TEST(doc(data_of(ev)).ok());
        }
    }
    for (const auto& data : openai_stream) {
        for (std::size_t n = 0; n < data.size(); n += 3) {
            xl::chat_stream_to_messages s("m");
            std::vector<std::string> out;
            s.on_data(std::string_view(data).substr(0, n), out);
            for (const auto& ev : out) BOOST_TEST(doc(split_event(ev).data).ok());
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
