#define BOOST_TEST_MODULE body_parser
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <simdjson.h>

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/core/body_parser.hpp"

namespace bdata = boost::unit_test::data;
using namespace tollgate::core;

namespace {

struct parsed {
    body_error error;
    request_body req;
};

// Every body a test parses is parsed twice: the top-level members found from simdjson's
// structural indexes (as the gateway does) and by the pass over the text, which must agree
// on the outcome and on every field and offset.
parsed parse(std::string_view body, endpoint ep = endpoint::chat_completions) {
    body_parser parser;
    parsed out;
    out.error = parser.parse(ep, body, out.req);
    body_parser text_walk(false);
    parsed ref;
    ref.error = text_walk.parse(ep, body, ref.req);
    BOOST_TEST((out.error.code == ref.error.code), body);
    BOOST_TEST(out.error.message == ref.error.message, body);
    if (!out.error && !ref.error) {
        BOOST_TEST(out.req.model == ref.req.model, body);
        BOOST_TEST(out.req.stream == ref.req.stream, body);
        BOOST_TEST(out.req.client_include_usage == ref.req.client_include_usage, body);
        BOOST_TEST((out.req.max_tokens == ref.req.max_tokens), body);
        BOOST_TEST(out.req.n == ref.req.n, body);
        BOOST_TEST(out.req.prompt_tokens == ref.req.prompt_tokens, body);
        BOOST_TEST(out.req.model_begin == ref.req.model_begin, body);
        BOOST_TEST(out.req.model_end == ref.req.model_end, body);
        BOOST_TEST(out.req.stream_options_begin == ref.req.stream_options_begin, body);
        BOOST_TEST(out.req.stream_options_end == ref.req.stream_options_end, body);
        BOOST_TEST(out.req.object_end == ref.req.object_end, body);
    }
    return out;
}

std::string_view model_token(std::string_view body, const request_body& req) {
    return body.substr(req.model_begin, req.model_end - req.model_begin);
}

// Chat bodies whose JSON nests exactly `depth` levels (depth >= 2): the top-level object
// is level 1, each array or object inside "x" one more. simdjson counts an empty container
// differently from one with content, so both shapes are tried.
std::vector<std::string> nested_bodies(std::size_t depth) {
    const std::string head = R"({"model":"m","messages":[],"x":)";
    std::string objects = "1";
    for (std::size_t i = 1; i < depth; ++i) objects = R"({"a":)" + objects + "}";
    std::string empty_objects = "{}";
    for (std::size_t i = 2; i < depth; ++i) empty_objects = R"({"a":)" + empty_objects + "}";
    return {
        head + std::string(depth - 1, '[') + "1" + std::string(depth - 1, ']') + "}",
        head + objects + "}",
        head + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}",
        head + empty_objects + "}",
    };
}

struct invalid_case {
    const char* name;
    endpoint ep;
    std::string body;
    std::string message_part;  // a word the message must contain
};

std::ostream& operator<<(std::ostream& os, const invalid_case& c) {
    return os << c.name;
}

const std::vector<invalid_case> invalid_cases{
    {"not JSON", endpoint::chat_completions, "model=gpt-4o-mini", "JSON"},
    {"truncated JSON", endpoint::chat_completions, R"({"model":"m","messages":[)", "JSON"},
    {"empty body", endpoint::chat_completions, "", "empty"},
    {"only whitespace", endpoint::chat_completions, " \n", "empty"},
    {"not an object: array", endpoint::chat_completions, R"([{"model":"m"}])", "object"},
    {"not an object: string", endpoint::chat_completions, R"("hello")", "object"},
    {"not an object: null", endpoint::chat_completions, "null", "object"},
    {"missing model", endpoint::chat_completions, R"({"messages":[]})", "model"},
    {"model not a string", endpoint::chat_completions, R"({"model":4,"messages":[]})", "model"},
    {"model null", endpoint::chat_completions, R"({"model":null,"messages":[]})", "model"},
    {"model empty", endpoint::chat_completions, R"({"model":"","messages":[]})", "model"},
    {"missing messages", endpoint::chat_completions, R"({"model":"m"})", "messages"},
    {"messages not an array", endpoint::chat_completions, R"({"model":"m","messages":"hi"})",
     "messages"},
    {"message not an object", endpoint::chat_completions, R"({"model":"m","messages":["hi"]})",
     "messages"},
    {"stream not a bool", endpoint::chat_completions,
     R"({"model":"m","messages":[],"stream":"true"})", "stream"},
    {"stream a number", endpoint::chat_completions, R"({"model":"m","messages":[],"stream":1})",
     "stream"},
    {"stream_options not an object", endpoint::chat_completions,
     R"({"model":"m","messages":[],"stream":true,"stream_options":true})", "stream_options"},
    {"include_usage not a bool", endpoint::chat_completions,
     R"({"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":"yes"}})",
     "include_usage"},
    {"max_tokens negative", endpoint::chat_completions,
     R"({"model":"m","messages":[],"max_tokens":-1})", "max_tokens"},
    {"max_tokens not a number", endpoint::chat_completions,
     R"({"model":"m","messages":[],"max_tokens":"10"})", "max_tokens"},
    {"tools not an array", endpoint::chat_completions, R"({"model":"m","messages":[],"tools":{}})",
     "tools"},
    {"trailing garbage", endpoint::chat_completions, R"({"model":"m","messages":[]} x)", "JSON"},
    {"embeddings without input", endpoint::embeddings, R"({"model":"text-embedding-3-small"})",
     "input"},
    {"embeddings input a number", endpoint::embeddings, R"({"model":"e","input":5})", "input"},
    {"messages endpoint without messages", endpoint::messages,
     R"({"model":"claude-haiku","max_tokens":10})", "messages"},
    // An upstream keeping the last duplicate would see `false` where we checked `true`
    // (found by fuzz_body_parser).
    {"include_usage twice", endpoint::chat_completions,
     R"({"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true,"include_usage":false}})",
     "include_usage"},
    {"include_usage escaped", endpoint::chat_completions,
     R"({"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true,"include\u005fusage":false}})",
     "include_usage"},
};

// The splice result must be JSON whose model is the upstream one.
simdjson::dom::element parse_json(simdjson::dom::parser& p, const std::string& text) {
    simdjson::dom::element doc;
    const auto err = p.parse(text).get(doc);
    BOOST_TEST_REQUIRE(err == simdjson::SUCCESS, "not JSON: " << text);
    return doc;
}

std::string spliced(std::string_view raw, std::string_view upstream_model, bool force_usage,
                    endpoint ep = endpoint::chat_completions) {
    body_parser parser;
    request_body req;
    const auto err = parser.parse(ep, raw, req);
    BOOST_TEST_REQUIRE(!err, err.message);
    spliced_body out;
    splice_body(raw, req, upstream_model, force_usage, out);
    BOOST_TEST(out.count <= out.pieces.size());
    const std::string joined = out.joined();
    BOOST_TEST(out.size() == joined.size());
    return joined;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(valid_chat_body_yields_its_fields_and_splice_points) {
    const std::string body =
        R"({"model": "gpt-4o-mini", "messages": [{"role":"system","content":"Be brief."},)"
        R"({"role":"user","content":[{"type":"text","text":"Hello"}]}],)"
        R"( "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 64,)"
        R"( "temperature": 0.2})"
        "\n";
    const auto r = parse(body);
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(r.req.model == "gpt-4o-mini");
    BOOST_TEST(r.req.stream);
    BOOST_TEST(r.req.client_include_usage);
    BOOST_REQUIRE(r.req.max_tokens.has_value());
    BOOST_TEST(*r.req.max_tokens == 64u);
    // The text the model reads: "Be brief." and "Hello", not roles or types.
    BOOST_TEST(r.req.prompt_tokens == (std::string_view("Be brief.Hello").size() + 3) / 4);
    BOOST_TEST(model_token(body, r.req) == "\"gpt-4o-mini\"");
    BOOST_TEST(body.substr(r.req.stream_options_begin,
                           r.req.stream_options_end - r.req.stream_options_begin) ==
               R"({"include_usage": true})");
    BOOST_TEST(r.req.object_end == body.rfind('}'));
}

BOOST_AUTO_TEST_CASE(minimal_chat_body_has_defaults) {
    const std::string body = R"({"messages":[{"role":"user","content":"Hi"}],"model":"m"})";
    const auto r = parse(body);
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(r.req.model == "m");
    BOOST_TEST(!r.req.stream);
    BOOST_TEST(!r.req.client_include_usage);
    BOOST_TEST(!r.req.max_tokens.has_value());
    BOOST_TEST(r.req.prompt_tokens > 0u);
    BOOST_TEST(r.req.n == 1u);
    BOOST_TEST(r.req.stream_options_begin == 0u);
    BOOST_TEST(r.req.stream_options_end == 0u);
    BOOST_TEST(model_token(body, r.req) == "\"m\"");
}

BOOST_AUTO_TEST_CASE(max_completion_tokens_is_read_like_max_tokens) {
    const auto r = parse(R"({"model":"m","messages":[],"max_completion_tokens":300})");
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_REQUIRE(r.req.max_tokens.has_value());
    BOOST_TEST(*r.req.max_tokens == 300u);
}

BOOST_AUTO_TEST_CASE(null_optional_fields_count_as_absent) {
    const auto r = parse(
        R"({"model":"m","messages":[],"stream":null,"stream_options":null,"max_tokens":null,"tools":null})");
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(!r.req.stream);
    BOOST_TEST(!r.req.max_tokens.has_value());
}

BOOST_DATA_TEST_CASE(malformed_bodies_are_invalid_requests_with_a_message,
                     bdata::make(invalid_cases), c) {
    const auto r = parse(c.body, c.ep);
    BOOST_TEST(static_cast<bool>(r.error));
    BOOST_TEST(static_cast<int>(r.error.code) == static_cast<int>(errc::invalid_request));
    BOOST_TEST(!r.error.message.empty());
    BOOST_TEST(r.error.message.find(c.message_part) != std::string::npos,
               "message '" << r.error.message << "' lacks '" << c.message_part << "'");
}

// SPEC: "JSON nested deeper than 128 levels → 400". The top-level object is level 1.
BOOST_DATA_TEST_CASE(nesting_up_to_128_levels_is_accepted, bdata::make({2, 64, 127, 128}), depth) {
    for (const auto& body : nested_bodies(depth)) {
        const auto r = parse(body);
        BOOST_TEST(!r.error, "depth " << depth << ": " << r.error.message << " for "
                                      << body.substr(body.size() - 12));
    }
}

BOOST_DATA_TEST_CASE(nesting_deeper_than_128_levels_is_rejected, bdata::make({129, 130, 1000}),
                     depth) {
    for (const auto& body : nested_bodies(depth)) {
        const auto r = parse(body);
        BOOST_TEST(static_cast<int>(r.error.code) == static_cast<int>(errc::invalid_request),
                   "depth " << depth);
        BOOST_TEST(r.error.message.find("128") != std::string::npos, r.error.message);
    }
}

BOOST_AUTO_TEST_CASE(a_parser_is_reusable_after_an_error_and_for_larger_bodies) {
    body_parser parser;
    request_body req;
    BOOST_TEST(static_cast<bool>(parser.parse(endpoint::chat_completions, "{", req)));
    const std::string big = R"({"model":"m","messages":[{"role":"user","content":")" +
                            std::string(200'000, 'a') + R"("}]})";
    const auto err = parser.parse(endpoint::chat_completions, big, req);
    BOOST_TEST(!err, err.message);
    BOOST_TEST(req.prompt_tokens == 50'000u);
    BOOST_TEST(!parser.parse(endpoint::chat_completions, R"({"model":"x","messages":[]})", req));
    BOOST_TEST(req.model == "x");
}

BOOST_DATA_TEST_CASE(
    invalid_utf8_is_rejected,
    bdata::make(std::vector<std::string>{
        "{\"model\":\"m\xff\",\"messages\":[]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\"}]}",
        "{\"model\":\"m\",\"messages\":[],\"x\xed\xa0\x80\":1}",  // surrogate
        "{\"model\":\"m\",\"messages\":[],\"x\":\"\xc0\xaf\"}",   // overlong
    }),
    body) {
    const auto r = parse(body);
    BOOST_TEST(static_cast<int>(r.error.code) == static_cast<int>(errc::invalid_request));
    BOOST_TEST(r.error.message.find("UTF-8") != std::string::npos, r.error.message);
}

BOOST_AUTO_TEST_CASE(valid_utf8_is_accepted) {
    const auto r = parse(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
        "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \\u00e9\"}]}");
    BOOST_TEST(!r.error, r.error.message);
}

BOOST_DATA_TEST_CASE(duplicate_or_escaped_top_level_keys_are_rejected,
                     bdata::make(std::vector<std::string>{
                         R"({"model":"cheap","messages":[],"model":"expensive"})",
                         R"({"model":"a","model":"a","messages":[]})",
                         R"({"mod\u0065l":"expensive","messages":[],"model":"cheap"})",
                         R"({"model":"m","messages":[],"stream":false,"stream":true})",
                         R"({"model":"m","messages":[],"stream_options":{},"stream_options":{}})",
                     }),
                     body) {
    const auto r = parse(body);
    BOOST_TEST(static_cast<int>(r.error.code) == static_cast<int>(errc::invalid_request));
    BOOST_TEST(!r.error.message.empty());
}

BOOST_AUTO_TEST_CASE(a_nested_model_key_is_not_a_duplicate) {
    const std::string body =
        R"({"messages":[{"role":"user","content":"x","model":"inner"}],"metadata":{"model":"z"},"model":"outer"})";
    const auto r = parse(body);
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(r.req.model == "outer");
    BOOST_TEST(model_token(body, r.req) == "\"outer\"");
}

BOOST_AUTO_TEST_CASE(embeddings_require_input) {
    auto r = parse(R"({"model":"text-embedding-3-small","input":"hello"})", endpoint::embeddings);
    BOOST_TEST(!r.error, r.error.message);
    BOOST_TEST(r.req.prompt_tokens == 2u);
    r = parse(R"({"model":"text-embedding-3-small","input":["ab","cde"]})", endpoint::embeddings);
    BOOST_TEST(!r.error, r.error.message);
    BOOST_TEST(r.req.prompt_tokens == 2u);
    // Embeddings need no messages.
    BOOST_TEST(!parse(R"({"model":"e","input":[1,2,3]})", endpoint::embeddings).error);
    r = parse(R"({"model":"text-embedding-3-small"})", endpoint::embeddings);
    BOOST_TEST(static_cast<int>(r.error.code) == static_cast<int>(errc::invalid_request));
}

BOOST_AUTO_TEST_CASE(messages_endpoint_takes_anthropic_bodies) {
    const std::string body =
        R"({"model":"claude-haiku","max_tokens":1024,"system":"Be brief.",)"
        R"("messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}],"stream":true})";
    const auto r = parse(body, endpoint::messages);
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(r.req.model == "claude-haiku");
    BOOST_TEST(r.req.stream);
    BOOST_REQUIRE(r.req.max_tokens.has_value());
    BOOST_TEST(*r.req.max_tokens == 1024u);
    // The system prompt is counted with the messages.
    BOOST_TEST(r.req.prompt_tokens == (std::string_view("Be brief.Hi").size() + 3) / 4);
}

// ---- the prompt estimate aims to be an upper bound (SPEC: admission) ----

BOOST_AUTO_TEST_CASE(token_arrays_count_one_token_per_item) {
    auto r = parse(R"({"model":"e","input":[1,2,3,4,5,6,7,8,9,10]})", endpoint::embeddings);
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(r.req.prompt_tokens == 10u);
    r = parse(R"({"model":"e","input":[[1,2,3],[4,5]]})", endpoint::embeddings);
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(r.req.prompt_tokens == 5u);
}

BOOST_AUTO_TEST_CASE(non_ascii_characters_count_a_token_each) {
    // 12 CJK characters (36 bytes): 12 tokens at least, not 36 / 4 = 9.
    const std::string body = R"({"model":"m","messages":[{"role":"user","content":")"
                             "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c"
                             "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c"
                             "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c"
                             R"("}]})";
    const auto r = parse(body);
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(r.req.prompt_tokens == 12u);
}

BOOST_AUTO_TEST_CASE(an_image_counts_a_fixed_figure_not_its_url_bytes) {
    const std::string url = "data:image/png;base64," + std::string(40'000, 'A');
    const std::string body =
        R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},)"
        R"({"type":"image_url","image_url":{"url":")" +
        url + R"("}}]}]})";
    const auto r = parse(body);
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(r.req.prompt_tokens == 1600u + 4u);
    // Anthropic's image block likewise.
    const std::string anth =
        R"({"model":"m","max_tokens":10,"messages":[{"role":"user","content":[)"
        R"({"type":"image","source":{"type":"base64","media_type":"image/png","data":")" +
        std::string(40'000, 'A') + R"("}}]}]})";
    const auto a = parse(anth, endpoint::messages);
    BOOST_TEST_REQUIRE(!a.error, a.error.message);
    BOOST_TEST(a.req.prompt_tokens == 1600u);
}

BOOST_AUTO_TEST_CASE(n_scales_the_estimate_and_is_the_upstreams_to_refuse) {
    auto r = parse(R"({"model":"m","n":3,"messages":[{"role":"user","content":"x"}]})");
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(r.req.n == 3u);
    r = parse(R"({"model":"m","n":2.0,"messages":[{"role":"user","content":"x"}]})");
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(r.req.n == 2u);
    r = parse(R"({"model":"m","n":0,"messages":[{"role":"user","content":"x"}]})");
    BOOST_TEST_REQUIRE(!r.error, r.error.message);  // passed on: the upstream answers 400
    BOOST_TEST(r.req.n == 1u);
}

BOOST_AUTO_TEST_CASE(tool_schemas_count_by_their_json_text) {
    // A schema is mostly keys and "type" values: counted from its text, not its strings.
    std::string props;
    for (int i = 0; i < 20; ++i)
        props += (i ? "," : "") + std::string(R"("field_)") + std::to_string(i) +
                 R"(":{"type":"string"})";
    const std::string tools =
        R"([{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{)" +
        props + "}}}}]";
    const auto r =
        parse(R"({"model":"m","messages":[{"role":"user","content":"x"}],"tools":)" + tools + "}");
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_TEST(r.req.prompt_tokens >= tools.size() / 4);
    const auto f = parse(
        R"({"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":)" +
        std::string(R"({"type":"object","properties":{)") + props + "}}}}}");
    BOOST_TEST_REQUIRE(!f.error, f.error.message);
    BOOST_TEST(f.req.prompt_tokens >= props.size() / 4);
}

BOOST_AUTO_TEST_CASE(with_both_max_tokens_fields_the_larger_bounds_the_estimate) {
    const auto r = parse(
        R"({"model":"m","max_completion_tokens":900,"max_tokens":20,"messages":[{"role":"user","content":"x"}]})");
    BOOST_TEST_REQUIRE(!r.error, r.error.message);
    BOOST_REQUIRE(r.req.max_tokens.has_value());
    BOOST_TEST(*r.req.max_tokens == 900u);
}

// ---- splice_body ----

// The members after a long nested value are found at their offsets wherever the value's
// brackets, quotes and escapes fall against the scanner's 64-byte blocks: brackets and
// escaped quotes inside strings, a backslash pair ending a block, nesting, an empty array.
BOOST_AUTO_TEST_CASE(members_after_nested_values_are_found_at_every_block_offset) {
    const std::string tricky =
        R"([{"role":"system","content":"brackets ] } [ { inside, a quote \" and \\"},)"
        R"({"role":"user","content":[{"type":"text","text":"a\\\"b ]]}} \\\\"},[]]},)"
        R"({"role":"assistant","content":"\u005d\\"}])";
    for (const bool structural : {true, false})
        for (std::size_t pad = 0; pad < 200; ++pad) {
            body_parser parser(structural);
            const std::string body = R"({"pad":")" + std::string(pad, 'p') + R"(","messages":)" +
                                     tricky + R"(,"x":{"y":[1,{"z":"}"}]},"model":"m1",)" +
                                     R"("stream":true,"stream_options":{"include_usage":false}})";
            request_body req;
            const body_error err = parser.parse(endpoint::chat_completions, body, req);
            BOOST_TEST_REQUIRE(!err, "pad " << pad << ": " << err.message);
            const auto model_at = body.find(R"("m1")");
            BOOST_TEST_REQUIRE(req.model_begin == model_at, "pad " << pad);
            BOOST_TEST_REQUIRE(req.model_end == model_at + 4, "pad " << pad);
            const auto so_at = body.find(R"({"include_usage")");
            BOOST_TEST_REQUIRE(req.stream_options_begin == so_at, "pad " << pad);
            BOOST_TEST_REQUIRE(req.stream_options_end == body.size() - 1, "pad " << pad);
            BOOST_TEST_REQUIRE(req.object_end == body.size() - 1, "pad " << pad);
        }
}

// Whitespace wherever JSON allows it, members of every kind of value before and after the
// ones the splice needs, values ending right at a ',' or the '}': both walks (parse()
// compares them) find the same offsets, and the model's is its token.
BOOST_DATA_TEST_CASE(
    members_are_found_around_any_whitespace_and_value,
    bdata::make(std::vector<std::string>{
        R"({"model":"m","messages":[]})",
        " \t\r\n{ \n\"model\" \t:\r \"m\" \n,\"messages\" : [ ] }\n\t ",
        R"({"messages":[],"n":2,"temperature":0.5,"stop":null,"logprobs":false,"model":"m"})",
        R"({"a":{},"b":[],"c":[[]],"d":{"e":{}},"model":"m","messages":[{}],"z":-1.5e3})",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}] ,\n \"model\":\"m\"\n, "
        "\"stream\" :true ,\"stream_options\" : {\"include_usage\" : true } \n}",
        R"({"model":"m","messages":[],"stream_options":{},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"model":{"type":"string"}}}}}]})",
        R"({"model":"m","messages":[],"response_format":{"type":"json_schema"},"functions":[]})",
        R"({"model":"m","messages":[],"k\u0065y":1})",
        R"({"model":"m","messages":[],"stream":true,"stream":false})",
        R"({"messages":[],"model":"m","model":"n"})",
        R"({"messages":[]})",
        R"({})",
        R"({ })",
    }),
    body) {
    const auto r = parse(body);
    if (!r.error) {
        BOOST_TEST(model_token(body, r.req) == R"("m")");
        BOOST_TEST(body[r.req.object_end] == '}');
    }
}

BOOST_AUTO_TEST_CASE(splice_replaces_only_the_model) {
    const std::string raw =
        R"({ "model" : "gpt-4o-mini" , "messages":[{"role":"user","content":"say \"model\": \"x\""}],)"
        "\n  \"temperature\":0.2,\"tools\":[{\"type\":\"function\"}] }\n";
    const std::string expected =
        R"({ "model" : "gpt-4o-mini-2024-07-18" , "messages":[{"role":"user","content":"say \"model\": \"x\""}],)"
        "\n  \"temperature\":0.2,\"tools\":[{\"type\":\"function\"}] }\n";
    BOOST_TEST(spliced(raw, "gpt-4o-mini-2024-07-18", false) == expected);
    // Not streamed: nothing to force even when asked.
    BOOST_TEST(spliced(raw, "gpt-4o-mini-2024-07-18", true) == expected);
}

BOOST_AUTO_TEST_CASE(splice_escapes_the_upstream_model) {
    const std::string raw = R"({"model":"m","messages":[]})";
    const std::string out = spliced(raw, "we\"ird\\model\n", false);
    BOOST_TEST(out == R"({"model":"we\"ird\\model\n","messages":[]})");
    simdjson::dom::parser p;
    std::string_view model;
    BOOST_TEST(parse_json(p, out)["model"].get(model) == simdjson::SUCCESS);
    BOOST_TEST(model == "we\"ird\\model\n");
}

BOOST_AUTO_TEST_CASE(splice_inserts_include_usage_when_stream_options_is_absent) {
    BOOST_TEST(
        spliced(R"({"model":"a","messages":[],"stream":true})", "b", true) ==
        R"({"model":"b","messages":[],"stream":true,"stream_options":{"include_usage":true}})");
    // Model last; whitespace and a trailing newline kept where they were.
    BOOST_TEST(spliced("{\"messages\":[], \"stream\":true, \"model\":\"a\" }\n", "bb", true) ==
               "{\"messages\":[], \"stream\":true, \"model\":\"bb\" "
               ",\"stream_options\":{\"include_usage\":true}}\n");
}

BOOST_AUTO_TEST_CASE(splice_rewrites_stream_options_keeping_other_client_options) {
    // Model before stream_options.
    BOOST_TEST(
        spliced(
            R"({"model":"a","stream":true,"stream_options":{"include_usage":false,"foo":1},"messages":[]})",
            "up", true) ==
        R"({"model":"up","stream":true,"stream_options":{"include_usage":true,"foo":1},"messages":[]})");
    // Model after stream_options.
    BOOST_TEST(
        spliced(
            R"({"stream_options":{"foo":{"x":[1,2]},"include_usage":false},"messages":[],"model":"a","stream":true})",
            "up", true) ==
        R"({"stream_options":{"include_usage":true,"foo":{"x":[1,2]}},"messages":[],"model":"up","stream":true})");
    // Empty options, and null options.
    BOOST_TEST(
        spliced(R"({"model":"a","messages":[],"stream":true,"stream_options":{}})", "up", true) ==
        R"({"model":"up","messages":[],"stream":true,"stream_options":{"include_usage":true}})");
    BOOST_TEST(
        spliced(R"({"model":"a","messages":[],"stream":true,"stream_options":null})", "up", true) ==
        R"({"model":"up","messages":[],"stream":true,"stream_options":{"include_usage":true}})");
}

BOOST_AUTO_TEST_CASE(splice_leaves_stream_options_when_the_client_asked_for_usage) {
    const std::string raw =
        R"({"stream_options": {"include_usage": true, "foo": 1}, "model": "a", "stream": true, "messages": []})";
    BOOST_TEST(
        spliced(raw, "up", true) ==
        R"({"stream_options": {"include_usage": true, "foo": 1}, "model": "up", "stream": true, "messages": []})");
}

BOOST_AUTO_TEST_CASE(splice_leaves_stream_options_when_not_forced) {
    const std::string raw =
        R"({"model":"a","stream":true,"stream_options":{"include_usage":false},"messages":[]})";
    BOOST_TEST(
        spliced(raw, "up", false) ==
        R"({"model":"up","stream":true,"stream_options":{"include_usage":false},"messages":[]})");
}

struct splice_case {
    const char* name;
    endpoint ep;
    std::string body;
    bool force;
    bool expect_include_usage;  // stream_options.include_usage true in the result
};

std::ostream& operator<<(std::ostream& os, const splice_case& c) {
    return os << c.name << (c.force ? " (forced)" : "");
}

BOOST_DATA_TEST_CASE(
    splice_result_parses_as_json_with_the_upstream_model,
    bdata::make(std::vector<splice_case>{
        {"plain", endpoint::chat_completions, R"({"model":"a","messages":[]})", true, false},
        {"stream, no options", endpoint::chat_completions,
         R"({"model":"a","messages":[],"stream":true})", true, true},
        {"stream, no options, not forced", endpoint::chat_completions,
         R"({"model":"a","messages":[],"stream":true})", false, false},
        {"options before model", endpoint::chat_completions,
         R"({"stream":true,"stream_options":{"include_usage":false,"foo":"}"},"model":"a","messages":[]})",
         true, true},
        {"options after model", endpoint::chat_completions,
         "{\n \"model\" : \"a\",\n \"stream\" : true,\n \"stream_options\" : { \"foo\" : [ 1 , 2 ] "
         "},\n \"messages\" : [ ]\n}",
         true, true},
        {"client asked", endpoint::chat_completions,
         R"({"model":"a","messages":[],"stream":true,"stream_options":{"include_usage":true}})",
         true, true},
        {"whitespace around the object", endpoint::chat_completions,
         " \t\r\n{\"model\":\"a\",\"messages\":[],\"stream\":true} \n", true, true},
        {"escaped key in the options", endpoint::chat_completions,
         R"({"model":"a","messages":[],"stream_options":{"a\"b":1,"include_usage":false},"stream":true})",
         true, true},
        {"embeddings", endpoint::embeddings, R"({"input":"x","model":"a"})", false, false},
        {"anthropic messages", endpoint::messages,
         R"({"model":"a","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"stream":true})",
         false, false},
    }),
    c) {
    const std::string out = spliced(c.body, "upstream/model-1", c.force, c.ep);
    simdjson::dom::parser p;
    const auto doc = parse_json(p, out);
    std::string_view model;
    BOOST_TEST(doc["model"].get(model) == simdjson::SUCCESS);
    BOOST_TEST(model == "upstream/model-1");
    bool include_usage = false;
    const bool has =
        doc.at_pointer("/stream_options/include_usage").get(include_usage) == simdjson::SUCCESS;
    BOOST_TEST((has && include_usage) == c.expect_include_usage);
    // The rest of the request is unchanged.
    simdjson::dom::parser p0;
    const std::string original(c.body);
    const auto before = parse_json(p0, original);
    simdjson::dom::object obj_before, obj_after;
    BOOST_REQUIRE(before.get_object().get(obj_before) == simdjson::SUCCESS);
    BOOST_REQUIRE(doc.get_object().get(obj_after) == simdjson::SUCCESS);
    for (auto field : obj_before) {
        if (field.key == "model" || field.key == "stream_options") continue;
        simdjson::dom::element after;
        BOOST_TEST_REQUIRE(obj_after.at_key(field.key).get(after) == simdjson::SUCCESS, field.key);
        BOOST_TEST(simdjson::minify(after) == simdjson::minify(field.value), field.key);
    }
    if (obj_before.at_key("stream_options").error() == simdjson::SUCCESS) {
        // Other options survive the rewrite.
        simdjson::dom::object so_before, so_after;
        if (obj_before["stream_options"].get_object().get(so_before) == simdjson::SUCCESS) {
            BOOST_REQUIRE(obj_after["stream_options"].get_object().get(so_after) ==
                          simdjson::SUCCESS);
            for (auto field : so_before) {
                if (field.key == "include_usage") continue;
                simdjson::dom::element after;
                BOOST_TEST_REQUIRE(so_after.at_key(field.key).get(after) == simdjson::SUCCESS);
                BOOST_TEST(simdjson::minify(after) == simdjson::minify(field.value));
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
