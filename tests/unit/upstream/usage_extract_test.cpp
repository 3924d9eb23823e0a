// Reading usage out of upstream answers and chunks, on good and hostile input.
#define BOOST_TEST_MODULE usage_extract
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <string>

#include "gateway/core/usage_meter.hpp"
#include "gateway/upstream/usage_extract.hpp"

using namespace tollgate::upstream;
namespace bdata = boost::unit_test::data;

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(openai_answer_usage_with_cached_tokens_is_read) {
    const std::string body =
        R"({"id":"x","choices":[{"message":{"content":"hi \"usage\":{\"prompt_tokens\":99}"}}],)"
        R"("usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,)"
        R"("prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":0}}})";
    auto u = find_usage(body);
    BOOST_REQUIRE(u);
    BOOST_TEST(*u->prompt_tokens == 12u);
    BOOST_TEST(*u->completion_tokens == 7u);
    BOOST_TEST(*u->total_tokens == 19u);
    BOOST_TEST(*u->cached_tokens == 4u);
}

BOOST_AUTO_TEST_CASE(anthropic_usage_is_read) {
    auto start = find_usage(
        R"({"type":"message_start","message":{"usage":{"input_tokens":25,"cache_read_input_tokens":10,"output_tokens":1}}})");
    BOOST_REQUIRE(start);
    // Anthropic's input_tokens excludes cache reads and writes: the prompt is their sum.
    BOOST_TEST(*start->prompt_tokens == 35u);
    BOOST_TEST(*start->cached_tokens == 10u);
    auto delta = find_usage(R"({"type":"message_delta","usage":{"output_tokens":15}})");
    BOOST_REQUIRE(delta);
    BOOST_TEST(*delta->completion_tokens == 15u);
    BOOST_TEST(!delta->prompt_tokens);
}

BOOST_AUTO_TEST_CASE(null_or_absent_usage_is_nothing) {
    BOOST_TEST(!find_usage(R"({"choices":[{"delta":{"content":"a"}}],"usage":null})"));
    BOOST_TEST(!find_usage(R"({"choices":[]})"));
    BOOST_TEST(!find_usage(R"({"usage":{}})"));
    BOOST_TEST(!find_usage("[DONE]"));
}

BOOST_DATA_TEST_CASE(
    truncated_or_garbage_input_never_reads_out_of_bounds,
    bdata::make({std::string(R"({"usage":{"prompt_tokens":1)"),
                 std::string(R"({"usage":{"prompt_tokens":)"), std::string(R"({"usage":)"),
                 std::string(R"({"usage")"), std::string(R"({"usage":{"a":"unterminated)"),
                 std::string(R"({"usage":{"prompt_tokens":-5,"x":[[[[)"),
                 std::string(R"("usage":{"prompt_tokens":123456789012345678901234})"),
                 std::string(200, '{'), std::string(""), std::string("\""),
                 // found by fuzz_usage_extract: only whitespace after the '['
                 std::string(R"({"choices":[ )"), std::string(R"({"choices":[)")}),
    input) {
    // Copy into an exactly-sized buffer so ASan sees any read past the end.
    std::unique_ptr<char[]> buf(new char[input.size()]);
    std::copy(input.begin(), input.end(), buf.get());
    const std::string_view v(buf.get(), input.size());
    auto u = find_usage(v);
    if (u) BOOST_TEST(u->any());
    (void)generated_text_bytes(v);
    (void)has_empty_choices(v);
}

BOOST_AUTO_TEST_CASE(generated_text_counts_content_and_tool_arguments) {
    BOOST_TEST(generated_text_bytes(R"({"choices":[{"delta":{"content":"word0 "}}]})") == 6u);
    BOOST_TEST(
        generated_text_bytes(
            R"({"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]})") ==
        std::string(R"({\"a\":1})").size());
    BOOST_TEST(generated_text_bytes(R"({"choices":[{"delta":{"role":"assistant"}}]})") == 0u);
    BOOST_TEST(
        generated_text_bytes(
            R"({"type":"content_block_delta","delta":{"type":"text_delta","text":"Hello"}})") ==
        5u);
}

BOOST_AUTO_TEST_CASE(usage_only_chunk_is_recognised) {
    BOOST_TEST(has_empty_choices(R"({"id":"x","choices":[],"usage":{"prompt_tokens":1}})"));
    BOOST_TEST(has_empty_choices(R"({"id":"x","choices": [ ],"usage":{"prompt_tokens":1}})"));
    BOOST_TEST(!has_empty_choices(R"({"id":"x","choices":[{"delta":{}}],"usage":null})"));
}

BOOST_AUTO_TEST_CASE(absurd_token_counts_are_capped_so_sums_cannot_wrap) {
    const auto u = find_usage(
        R"({"usage":{"input_tokens":9999999999999999999,"cache_read_input_tokens":9999999999999999999,"output_tokens":1}})");
    BOOST_TEST_REQUIRE(u.has_value());
    BOOST_TEST(u->prompt_tokens.value_or(0) <= 3'000'000'000'000'000ull);
    BOOST_TEST(u->prompt_tokens.value_or(0) >= 1'000'000'000'000'000ull);
}

BOOST_AUTO_TEST_CASE(estimates_round_up_at_four_bytes_a_token) {
    BOOST_TEST(tollgate::core::estimate_tokens(0) == 0u);
    BOOST_TEST(tollgate::core::estimate_tokens(1) == 1u);
    BOOST_TEST(tollgate::core::estimate_tokens(4) == 1u);
    BOOST_TEST(tollgate::core::estimate_tokens(5) == 2u);
}

// The byte-at-a-time count generated_text documents, as a reference for the scan's
// 16-bytes-at-a-time one: ASCII bytes, non-ASCII lead bytes, an escape one character.
text_count reference_count(std::string_view content) {
    text_count n;
    for (std::size_t k = 0; k < content.size(); ++k) {
        const auto c = static_cast<unsigned char>(content[k]);
        if (c == '\\' && k + 1 < content.size() && content[k + 1] == 'u') {
            ++n.other;
            k += 5;
        } else if (c == '\\') {
            ++n.ascii;
            ++k;
        } else if (c < 0x80) {
            ++n.ascii;
        } else if (c >= 0xC0) {
            ++n.other;
        }
    }
    return n;
}

BOOST_AUTO_TEST_CASE(text_is_counted_the_same_at_every_length_and_offset) {
    // Runs that start, end and put their escapes and UTF-8 on each side of a 16-byte block.
    const std::string pieces[] = {"a",      "\\\"",   "\\n",  "\\u00e9",
                                  "\u00e9", "\u4e16", "\\\\", "xyz "};
    for (std::size_t pad = 0; pad < 20; ++pad) {
        for (std::size_t len = 0; len < 40; ++len) {
            std::string content(pad, 'p');
            for (std::size_t k = 0; content.size() < pad + len; ++k)
                content += pieces[(k * 7 + len) % std::size(pieces)];
            const std::string chunk = R"({"choices":[{"delta":{"content":")" + content + R"("}}]})";
            const auto want = reference_count(content);
            const auto got = scan_event(chunk).text;
            BOOST_TEST_CONTEXT(chunk) {
                BOOST_TEST(got.ascii == want.ascii);
                BOOST_TEST(got.other == want.other);
                BOOST_TEST(scan_event(chunk).text_bytes == content.size());
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(one_scan_finds_all_an_openai_chunk_says) {
    const std::string chunk =
        R"({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":)"
        R"({"content":"he said \"usage\": {\"prompt_tokens\": 9}"},"finish_reason":"stop"}],)"
        R"("usage":{"prompt_tokens":5,"completion_tokens":3}})";
    const auto f = scan_event(chunk);
    BOOST_TEST(f.finish_reason);
    BOOST_TEST(!f.empty_choices);
    BOOST_REQUIRE(f.usage);
    BOOST_TEST(*f.usage->prompt_tokens == 5u);
    BOOST_TEST(*f.usage->completion_tokens == 3u);
    BOOST_TEST(f.text_bytes == generated_text_bytes(chunk));

    // finish_reason null is not an end; the usage-only chunk is recognised.
    BOOST_TEST(!scan_event(R"({"choices":[{"delta":{},"finish_reason":null}]})").finish_reason);
    const auto last = scan_event(R"({"choices": [ ],"usage":{"prompt_tokens":5}})");
    BOOST_TEST(last.empty_choices);
    BOOST_TEST(last.usage.has_value());

    // The first "type" with a string value.
    const std::string anthropic =
        R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}})";
    BOOST_TEST(scan_event(anthropic).type == "content_block_delta");
    BOOST_TEST(scan_event(R"({"type":1,"x":{"type":"inner"}})").type == "inner");
    BOOST_TEST(scan_event(anthropic).text.ascii == 2u);
}

BOOST_AUTO_TEST_CASE(usage_null_cuts_from_the_scan_match_the_scanning_stripper) {
    const std::string datas[] = {
        R"({"id":"c","choices":[{"delta":{"content":"a"}}],"usage":null})",
        R"({"usage":null,"id":"c","choices":[]})",
        R"({"usage" : null , "id":"c"})",
        R"({"id":"c","usage":null,"x":{"usage":null},"y":[{"usage":null}]})",
        R"({"a":1,"usage":null,"b":2,"usage":null,"c":3,"usage":null,"d":4,"usage":null,"e":5,"usage":null})",
        R"({"content":"\"usage\":null","usage":nullx})",
        R"({"id":"c"})",
    };
    for (const auto& data : datas) {
        const std::string raw = "data: " + data + "\n\n";
        const std::string_view in_raw = std::string_view(raw).substr(6, data.size());
        std::string want, got;
        const auto removed = append_without_null_usage(raw, want);
        BOOST_TEST_CONTEXT(data) {
            BOOST_TEST(append_without_null_usage(raw, in_raw, scan_event(in_raw), got) == removed);
            BOOST_TEST(got == want);
        }
    }
    // Data that is not inside raw (multi-line data is joined elsewhere): the scanning way.
    const std::string raw = "data: {\"usage\":null,\ndata: \"id\":\"c\"}\n\n";
    const std::string joined = "{\"usage\":null,\n\"id\":\"c\"}";
    std::string want, got;
    append_without_null_usage(raw, want);
    append_without_null_usage(raw, joined, scan_event(joined), got);
    BOOST_TEST(got == want);
}

// Facts compared member by member; `type` must also lie at the same place in the event.
void check_same_facts(const event_facts& got, const event_facts& want, std::string_view event) {
    BOOST_TEST_CONTEXT(event) {
        BOOST_TEST(got.usage.has_value() == want.usage.has_value());
        if (got.usage && want.usage) {
            BOOST_TEST((got.usage->prompt_tokens == want.usage->prompt_tokens));
            BOOST_TEST((got.usage->completion_tokens == want.usage->completion_tokens));
        }
        BOOST_TEST(got.text.ascii == want.text.ascii);
        BOOST_TEST(got.text.other == want.text.other);
        BOOST_TEST(got.text_bytes == want.text_bytes);
        BOOST_TEST(got.empty_choices == want.empty_choices);
        BOOST_TEST(got.finish_reason == want.finish_reason);
        BOOST_TEST(got.type == want.type);
        BOOST_TEST((got.type.data() == want.type.data()));
        BOOST_TEST(got.cut_count == want.cut_count);
        for (std::size_t k = 0; k < got.cut_count && k < want.cut_count; ++k) {
            BOOST_TEST(got.cuts[k].begin == want.cuts[k].begin);
            BOOST_TEST(got.cuts[k].end == want.cuts[k].end);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_stream_scanned_with_a_memo_gives_the_facts_of_each_event_alone) {
    const std::string openai =
        R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",)"
        R"("choices":[{"index":0,"delta":{)";
    const std::string anthropic =
        R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta",)";
    const std::string events[] = {
        openai + R"("role":"assistant","content":""},"finish_reason":null}],"usage":null})",
        openai + R"("content":"Hello"},"finish_reason":null}],"usage":null})",
        openai + R"("content":" w\u00e9rld \"x\""},"finish_reason":null}],"usage":null})",
        openai + R"("content":"日本"},"finish_reason":null}],"usage":null})",
        // The same start, then a different key where the text was: scanned in full.
        openai + R"(},"finish_reason":"stop"}],"usage":null})",
        openai + R"("content":"again"},"finish_reason":null}],"usage":null})",
        // The same bytes up to the text key, and no quote after them.
        openai + R"(  "content":"x"}}]})",
        // A text value followed by a colon (not JSON): the value is a key, and the same
        // bytes after it mean something else after another text.
        openai + R"("content":"usage":null}}]})",
        openai + R"("content":"type":null}}]})",
        openai + R"("content":"type":"t"}}]})",
        openai + R"("content":"other":"t"}}]})",
        R"({"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}})",
        anthropic + R"("text":"Hi"}})",
        anthropic + R"("text":" there"}})",
        R"({"type":"","index":0,"delta":{"type":"text_delta","text":"a"}})",
        R"({"type":"","index":0,"delta":{"type":"text_delta","text":"b"}})",
        R"({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}})",
    };
    scan_memo memo;
    for (int round = 0; round < 2; ++round) {
        for (const auto& e : events) {
            const std::string copy = e;  // another buffer: nothing may point into the last one
            check_same_facts(scan_event(copy, memo), scan_event(copy), copy);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
