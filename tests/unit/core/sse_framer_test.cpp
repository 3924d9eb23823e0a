#define BOOST_TEST_MODULE sse_framer
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/core/sse_framer.hpp"

namespace bdata = boost::unit_test::data;
using tollgate::core::sse_event;
using tollgate::core::sse_framer;

namespace {

// An sse_event copied out of the callback: its views die with the piece or the framer's
// buffer.
struct event {
    std::string raw, name, data;
    bool has_data = false;
    bool operator==(const event&) const = default;
};

std::ostream& operator<<(std::ostream& os, const event& e) {
    return os << "{raw=\"" << e.raw << "\" event=\"" << e.name << "\" data=\"" << e.data
              << "\" has_data=" << e.has_data << '}';
}

event ev(std::string raw, std::string name, std::string data, bool has_data = true) {
    return {std::move(raw), std::move(name), std::move(data), has_data};
}

struct run_result {
    std::vector<event> events;
    bool ok = true;  // every feed() returned true
    std::size_t pending_before_finish = 0;
};

constexpr std::size_t whole = 0;
constexpr std::size_t default_max = 1u << 20;

// Feeds `input` in pieces of `piece` bytes (0 = in one piece). Each piece lives in a
// buffer that is scribbled over right after feed() returns, as a socket read buffer
// would be, so a framer that kept a view into an old piece shows garbage.
run_result run(std::string_view input, std::size_t piece, bool finish = true,
               std::size_t max_event_bytes = default_max) {
    run_result r;
    sse_framer framer(max_event_bytes);
    auto on_event = [&](const sse_event& e) {
        r.events.push_back(
            {std::string(e.raw), std::string(e.event), std::string(e.data), e.has_data});
    };
    const std::size_t step = piece == whole ? std::max<std::size_t>(input.size(), 1) : piece;
    std::string buffer;
    for (std::size_t at = 0; at < input.size(); at += step) {
        buffer.assign(input.substr(at, step));
        if (!framer.feed(buffer, on_event)) r.ok = false;
        std::fill(buffer.begin(), buffer.end(), '#');
    }
    r.pending_before_finish = framer.pending_bytes();
    if (finish) framer.finish(on_event);
    return r;
}

std::string concat_raw(const std::vector<event>& events) {
    std::string out;
    for (const auto& e : events) out += e.raw;
    return out;
}

std::string concat_raw(const std::vector<event>& events, std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n && i < events.size(); ++i) out += events[i].raw;
    return out;
}

// The stream made of the expected events' raw bytes must give back exactly those events,
// fed whole and in pieces of `piece` bytes.
void check_stream(const std::vector<event>& expected, std::size_t piece) {
    const std::string input = concat_raw(expected);
    const auto w = run(input, whole);
    BOOST_TEST(w.ok);
    BOOST_TEST(w.pending_before_finish == 0u);
    BOOST_TEST(w.events == expected, boost::test_tools::per_element());
    const auto p = run(input, piece);
    BOOST_TEST(p.ok);
    BOOST_TEST(p.pending_before_finish == 0u);
    BOOST_TEST(p.events == w.events, boost::test_tools::per_element());
}

const auto piece_sizes = bdata::xrange(1, 8);

// A realistic OpenAI chat-completions stream with the usage chunk and [DONE].
std::vector<event> openai_stream() {
    const std::string chunks[] = {
        R"({"id":"chatcmpl-9","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null})",
        R"({"id":"chatcmpl-9","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null})",
        R"({"id":"chatcmpl-9","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" wörld \u00e9\n"},"logprobs":null,"finish_reason":null}],"usage":null})",
        R"({"id":"chatcmpl-9","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null})",
        R"({"id":"chatcmpl-9","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0}}})",
        "[DONE]",
    };
    std::vector<event> out;
    for (const auto& c : chunks) out.push_back(ev("data: " + c + "\n\n", "", c));
    return out;
}

// A realistic Anthropic Messages stream: named events, a ping, usage in message_start and
// message_delta.
std::vector<event> anthropic_stream() {
    const std::pair<std::string, std::string> events[] = {
        {"message_start",
         R"({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku-20241022","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}})"},
        {"content_block_start",
         R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"},
        {"ping", R"({"type": "ping"})"},
        {"content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}})"},
        {"content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}})"},
        {"content_block_stop", R"({"type":"content_block_stop","index":0})"},
        {"message_delta",
         R"({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}})"},
        {"message_stop", R"({"type":"message_stop"})"},
    };
    std::vector<event> out;
    for (const auto& [name, data] : events)
        out.push_back(ev("event: " + name + "\ndata: " + data + "\n\n", name, data));
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_DATA_TEST_CASE(openai_stream_gives_the_same_events_in_any_pieces, piece_sizes, piece) {
    check_stream(openai_stream(), piece);
}

BOOST_DATA_TEST_CASE(anthropic_stream_gives_the_same_events_in_any_pieces, piece_sizes, piece) {
    check_stream(anthropic_stream(), piece);
}

BOOST_DATA_TEST_CASE(crlf_line_endings_delimit_events, piece_sizes, piece) {
    check_stream(
        {ev("event: message_start\r\ndata: {\"a\":1}\r\n\r\n", "message_start", "{\"a\":1}"),
         ev("data: two\r\n\r\n", "", "two")},
        piece);
}

BOOST_DATA_TEST_CASE(cr_line_endings_delimit_events, piece_sizes, piece) {
    // A lone '\r' at the very end of the input cannot be told from the start of "\r\n", so
    // the stream ends with an event whose blank line is "\r\n".
    check_stream({ev("event: a\rdata: one\r\r", "a", "one"), ev("data: two\r\r", "", "two"),
                  ev("data: three\r\r\n", "", "three")},
                 piece);
}

BOOST_DATA_TEST_CASE(mixed_line_endings_delimit_events, piece_sizes, piece) {
    check_stream({ev("event: a\r\ndata: one\n\r\n", "a", "one"),
                  ev("data: two\rdata: more\n\r", "", "two\nmore"),
                  ev(": keep-alive\r\n\n", "", "", false), ev("data: [DONE]\n\n", "", "[DONE]")},
                 piece);
}

BOOST_AUTO_TEST_CASE(crlf_split_across_two_pieces_is_one_line_end) {
    // If the '\n' after a piece-final '\r' were taken for a blank line, "a" and "b" would
    // come out as two events.
    sse_framer framer(default_max);
    std::vector<event> got;
    auto on_event = [&](const sse_event& e) {
        got.push_back({std::string(e.raw), std::string(e.event), std::string(e.data), e.has_data});
    };
    BOOST_TEST(framer.feed("data: a\r", on_event));
    BOOST_TEST(got.empty());
    BOOST_TEST(framer.feed("\ndata: b\r", on_event));
    BOOST_TEST(got.empty());
    BOOST_TEST(framer.feed("\n\r", on_event));
    BOOST_TEST(got.empty());
    BOOST_TEST(framer.feed("\ndata: c\n\n", on_event));
    const std::vector<event> expected{ev("data: a\r\ndata: b\r\n\r\n", "", "a\nb"),
                                      ev("data: c\n\n", "", "c")};
    BOOST_TEST(got == expected, boost::test_tools::per_element());
    BOOST_TEST(framer.pending_bytes() == 0u);
}

BOOST_DATA_TEST_CASE(comment_lines_are_events_without_data, piece_sizes, piece) {
    // Relayed as they are (OpenAI-compatible servers send ": ping" keep-alives); has_data
    // tells the usage hooks to skip them. An event of only id:/retry: is the same.
    check_stream({ev(": ping\n\n", "", "", false), ev("data: x\n\n", "", "x"),
                  ev(": OPENROUTER PROCESSING\r\n\r\n", "", "", false),
                  ev("id: 7\nretry: 1000\n\n", "", "", false),
                  ev(": a comment inside\ndata: y\n\n", "", "y")},
                 piece);
}

BOOST_DATA_TEST_CASE(error_events_carry_their_event_name, piece_sizes, piece) {
    const std::string err =
        R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})";
    check_stream({ev("event: ping\ndata: {\"type\": \"ping\"}\n\n", "ping", "{\"type\": \"ping\"}"),
                  ev("event: error\ndata: " + err + "\n\n", "error", err),
                  // The name does not carry over to the next event.
                  ev("data: after\n\n", "", "after")},
                 piece);
}

BOOST_DATA_TEST_CASE(multi_line_data_is_joined_with_newlines, piece_sizes, piece) {
    check_stream({ev("data: {\"a\":\ndata: 1}\n\n", "", "{\"a\":\n1}"),
                  ev("data: one\ndata:\ndata: three\n\n", "", "one\n\nthree"),
                  ev("event: x\ndata: p\nid: 3\ndata: q\n\n", "x", "p\nq"),
                  ev("data: single\n\n", "", "single")},
                 piece);
}

BOOST_DATA_TEST_CASE(one_space_after_the_data_colon_is_optional, piece_sizes, piece) {
    check_stream(
        {ev("data:{\"k\":1}\n\n", "", "{\"k\":1}"), ev("data: {\"k\":1}\n\n", "", "{\"k\":1}"),
         // Only the first space is part of the syntax.
         ev("data:  two spaces\n\n", "", " two spaces"),
         ev("event:named\ndata:v\n\n", "named", "v"),
         // A field name alone is that field with an empty value.
         ev("data\n\n", "", "", true)},
        piece);
}

BOOST_DATA_TEST_CASE(done_marker_is_an_ordinary_data_event, piece_sizes, piece) {
    check_stream({ev("data: {\"choices\":[]}\n\n", "", "{\"choices\":[]}"),
                  ev("data: [DONE]\n\n", "", "[DONE]")},
                 piece);
}

BOOST_DATA_TEST_CASE(event_larger_than_max_event_bytes_makes_feed_fail, piece_sizes, piece) {
    const std::size_t max = 64;
    const std::string big = "data: " + std::string(2 * max, 'x') + "\n\n";
    BOOST_TEST(!run(big, piece, false, max).ok);
    // Never completed: the stream must be refused however it arrives.
    const std::string unterminated = "data: " + std::string(2 * max, 'x');
    BOOST_TEST(!run(unterminated, piece, false, max).ok);
    BOOST_TEST(!run(unterminated, whole, false, max).ok);
}

BOOST_DATA_TEST_CASE(events_up_to_max_event_bytes_are_accepted, piece_sizes, piece) {
    const std::size_t max = 64;
    const std::string fits = "data: " + std::string(max - 8, 'y') + "\n\n";  // exactly max bytes
    BOOST_REQUIRE(fits.size() == max);
    const std::string input = fits + fits + fits;
    const auto r = run(input, piece, false, max);
    BOOST_TEST(r.ok);
    BOOST_TEST(r.events.size() == 3u);
    BOOST_TEST(concat_raw(r.events) == input);
}

BOOST_DATA_TEST_CASE(finish_dispatches_a_trailing_event_with_data, piece_sizes, piece) {
    const std::string input = "data: one\n\ndata: last";
    const auto r = run(input, piece);
    BOOST_TEST(r.ok);
    BOOST_TEST(r.pending_before_finish == std::string_view("data: last").size());
    // finish() ends the event with a blank line of its own: the raw of that event is
    // "data: last\n\n", bytes that were never received.
    const std::vector<event> expected{ev("data: one\n\n", "", "one"),
                                      ev("data: last\n\n", "", "last")};
    BOOST_TEST(r.events == expected, boost::test_tools::per_element());

    // A trailing event with its line end but without the blank line.
    const auto r2 = run("event: e\ndata: a\ndata: b\r\n", piece);
    BOOST_REQUIRE(r2.events.size() == 1u);
    BOOST_TEST(r2.events[0].name == "e");
    BOOST_TEST(r2.events[0].data == "a\nb");
    BOOST_TEST(r2.events[0].has_data);
}

BOOST_DATA_TEST_CASE(finish_drops_a_trailing_event_without_data, piece_sizes, piece) {
    BOOST_TEST(run("data: one\n\n: ping", piece).events.size() == 1u);
    BOOST_TEST(run("data: one\n\nevent: message_stop\n", piece).events.size() == 1u);
    BOOST_TEST(run("data: one\n\n", piece).events.size() == 1u);
    BOOST_TEST(run("", piece).events.empty());
}

BOOST_AUTO_TEST_CASE(finish_on_an_empty_framer_dispatches_nothing) {
    sse_framer framer(default_max);
    int calls = 0;
    framer.finish([&](const sse_event&) { ++calls; });
    BOOST_TEST(calls == 0);
    BOOST_TEST(framer.pending_bytes() == 0u);
}

BOOST_DATA_TEST_CASE(concatenated_raw_is_the_input_without_stray_blank_lines, piece_sizes, piece) {
    // Blank lines that end an event belong to its raw; blank lines that end no event
    // (before the first event, or a second blank line after one) are in no raw at all.
    const std::string input =
        "\n\r\n"                 // stray, before the first event
        "event: a\ndata: 1\n\n"  // event a
        "\n\n"                   // stray
        ": ping\r\n\r\n"         // comment event
        "\r"                     // stray "\r"
        "data: 2\r\r"            // event 2
        "\r\n"                   // stray
        "data: [DONE]\n\n";      // event [DONE]
    const std::string expected_raw =
        "event: a\ndata: 1\n\n"
        ": ping\r\n\r\n"
        "data: 2\r\r"
        "data: [DONE]\n\n";
    const auto w = run(input, whole);
    const auto p = run(input, piece);
    BOOST_TEST(w.events.size() == 4u);
    BOOST_TEST(concat_raw(w.events) == expected_raw);
    BOOST_TEST(p.events == w.events, boost::test_tools::per_element());

    // Without stray blank lines the raws are the input, byte for byte.
    const std::string clean = concat_raw(openai_stream()) + concat_raw(anthropic_stream());
    BOOST_TEST(concat_raw(run(clean, piece).events) == clean);
    BOOST_TEST(concat_raw(run(clean, whole).events, 6) == concat_raw(openai_stream()));
}

BOOST_AUTO_TEST_CASE(several_events_in_one_piece_are_views_into_it) {
    // Complete events inside one piece are handed out without a copy.
    const std::string piece = "data: a\n\ndata: b\n\ndata: c";
    sse_framer framer(default_max);
    std::vector<std::string_view> raws;
    BOOST_TEST(framer.feed(piece, [&](const sse_event& e) { raws.push_back(e.raw); }));
    BOOST_REQUIRE(raws.size() == 2u);
    BOOST_TEST(raws[0].data() == piece.data());
    BOOST_TEST(raws[1].data() == piece.data() + 9);
    BOOST_TEST(framer.pending_bytes() == std::string_view("data: c").size());
}

BOOST_AUTO_TEST_SUITE_END()
