// Fuzzes the stream translators of anthropic_translate.cpp, fed event by event as the
// relay feeds them: messages_stream_to_chat (Anthropic events -> OpenAI chunks) and
// chat_stream_to_messages (OpenAI chunks -> Anthropic events), both on every event.
//
// Input: an upstream SSE stream, cut into events by core::sse_framer as in production
// (so seeds are real streams). An input starting with a NUL byte is instead a list of
// events separated by NUL, each "name\x01data" (or just data): this reaches data the
// framer never produces (with '\r', say).
//
// Invariants checked (besides ASan/UBSan and "never throws"):
//  - OpenAI side: every output is exactly "data: <one line>\n\n" whose line is [DONE] or a
//    JSON object (an error object, or a chat.completion.chunk with the client's model and
//    sane usage); [DONE] comes last and only with finished();
//  - Anthropic side: every output is "event: NAME\ndata: <JSON object with type NAME>\n\n";
//    message_start comes first and once, content blocks are numbered 0, 1, 2... and one
//    is open at a time, deltas go to a started block, stops close the open one,
//    message_stop comes last and only with finished();
//  - after finished() or failed(), events produce no output; token counts stay >= 0.

#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_common.hpp"
#include "gateway/core/sse_framer.hpp"
#include "gateway/upstream/providers/anthropic_translate.hpp"

namespace {

namespace xl = tollgate::upstream::anthropic;
namespace dom = simdjson::dom;
using simdjson::SUCCESS;
using tollgate::fuzz::valid_json;

bool utf8(std::string_view s) {
    return simdjson::validate_utf8(s.data(), s.size());
}

void check_usage(dom::object u, const std::string& s) {
    std::int64_t p = -1, c = -1, t = -1;
    FUZZ_CHECK(u["prompt_tokens"].get(p) == SUCCESS && p >= 0, s);
    FUZZ_CHECK(u["completion_tokens"].get(c) == SUCCESS && c >= 0, s);
    FUZZ_CHECK(u["total_tokens"].get(t) == SUCCESS && t == p + c, s);
}

// The OpenAI chunk stream produced from Anthropic events.
struct openai_side {
    xl::messages_stream_to_chat tr;
    std::string model;
    bool done_sent = false;

    void feed(std::string_view name, std::string_view data) {
        const bool ended = tr.finished() || tr.failed();
        std::vector<std::string> out;
        tr.on_event(name, data, out);
        FUZZ_CHECK(!ended || out.empty(), data);
        for (const std::string& s : out) {
            FUZZ_CHECK(!done_sent, s);
            FUZZ_CHECK(s.starts_with("data: ") && s.ends_with("\n\n") && s.size() >= 8, s);
            const std::string_view line = std::string_view(s).substr(6, s.size() - 8);
            FUZZ_CHECK(line.find_first_of("\r\n") == std::string_view::npos, s);
            if (line == "[DONE]") {
                done_sent = true;
                continue;
            }
            dom::element e;
            dom::object o;
            FUZZ_CHECK(valid_json(line, e) && e.get(o) == SUCCESS, s);
            if (o["error"].error() == SUCCESS) continue;
            std::string_view v;
            FUZZ_CHECK(o["object"].get(v) == SUCCESS && v == "chat.completion.chunk", s);
            FUZZ_CHECK(o["model"].get(v) == SUCCESS, s);
            if (utf8(model)) FUZZ_CHECK(v == model, s);
            dom::array choices;
            FUZZ_CHECK(o["choices"].get(choices) == SUCCESS, s);
            dom::object u;
            if (o["usage"].get(u) == SUCCESS) check_usage(u, s);
        }
        FUZZ_CHECK(done_sent == tr.finished(), data);
        FUZZ_CHECK(tr.prompt_tokens() >= 0 && tr.completion_tokens() >= 0, data);
    }
};

// The Anthropic event stream produced from OpenAI chunks.
struct anthropic_side {
    xl::chat_stream_to_messages tr;
    std::string model;
    bool started = false, stopped = false, errored = false;
    std::int64_t blocks = 0;  // content blocks started
    std::int64_t open = -1;   // the open block

    void feed(std::string_view data) {
        const bool ended = tr.finished() || tr.failed();
        std::vector<std::string> out;
        tr.on_data(data, out);
        FUZZ_CHECK(!ended || out.empty(), data);
        for (const std::string& s : out) {
            FUZZ_CHECK(!stopped && !errored, s);
            FUZZ_CHECK(s.starts_with("event: ") && s.ends_with("\n\n"), s);
            const std::size_t nl = s.find('\n');
            FUZZ_CHECK(s.compare(nl + 1, 6, "data: ") == 0, s);
            const std::string_view name = std::string_view(s).substr(7, nl - 7);
            const std::string_view line =
                std::string_view(s).substr(nl + 7, s.size() - 2 - (nl + 7));
            FUZZ_CHECK(line.find_first_of("\r\n") == std::string_view::npos, s);
            dom::element e;
            dom::object o;
            FUZZ_CHECK(valid_json(line, e) && e.get(o) == SUCCESS, s);
            std::string_view type;
            FUZZ_CHECK(o["type"].get(type) == SUCCESS && type == name, s);
            if (name == "error") {
                errored = true;
                continue;
            }
            if (name == "message_start") {
                FUZZ_CHECK(!started, s);
                started = true;
                std::string_view m;
                FUZZ_CHECK(e.at_pointer("/message/model").get(m) == SUCCESS, s);
                if (utf8(model)) FUZZ_CHECK(m == model, s);
                continue;
            }
            FUZZ_CHECK(started, s);
            std::int64_t index = -1;
            if (name == "content_block_start") {
                FUZZ_CHECK(o["index"].get(index) == SUCCESS && index == blocks, s);
                FUZZ_CHECK(open == -1, s);
                open = index;
                ++blocks;
            } else if (name == "content_block_delta") {
                FUZZ_CHECK(o["index"].get(index) == SUCCESS && index >= 0 && index < blocks, s);
            } else if (name == "content_block_stop") {
                FUZZ_CHECK(o["index"].get(index) == SUCCESS && index == open, s);
                open = -1;
            } else if (name == "message_delta") {
                FUZZ_CHECK(open == -1, s);
                dom::object u;
                FUZZ_CHECK(o["usage"].get(u) == SUCCESS, s);
                for (auto kv : u) {
                    std::int64_t n = -1;
                    FUZZ_CHECK(kv.value.get(n) == SUCCESS && n >= 0, s);
                }
            } else if (name == "message_stop") {
                stopped = true;
            } else {
                FUZZ_CHECK(false && "unknown event", s);
            }
        }
        FUZZ_CHECK(stopped == tr.finished(), data);
        FUZZ_CHECK(errored == tr.failed(), data);
        FUZZ_CHECK(tr.prompt_tokens() >= 0 && tr.completion_tokens() >= 0, data);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::uint64_t h = tollgate::fuzz::hash(input);
    const std::string model(
        tollgate::fuzz::model_names[h % std::size(tollgate::fuzz::model_names)]);
    const std::int64_t created = (h >> 8) & 1 ? 1735689600 : static_cast<std::int64_t>(h >> 9);
    openai_side a{xl::messages_stream_to_chat(model, created, (h >> 16) & 1), model};
    anthropic_side b{xl::chat_stream_to_messages(model), model};

    auto feed = [&](std::string_view name, std::string_view payload) {
        a.feed(name, payload);
        b.feed(payload);
    };
    if (!input.empty() && input[0] == '\0') {
        std::string_view rest = input.substr(1);
        while (!rest.empty()) {
            const std::size_t end = rest.find('\0');
            const std::string_view rec = rest.substr(0, end);
            rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
            const std::size_t sep = rec.find('\x01');
            if (sep == std::string_view::npos)
                feed({}, rec);
            else
                feed(rec.substr(0, sep), rec.substr(sep + 1));
        }
        return 0;
    }
    tollgate::core::sse_framer framer(1u << 20);
    auto on_event = [&](const tollgate::core::sse_event& e) {
        if (e.has_data) feed(e.event, e.data);
    };
    framer.feed(input, on_event);
    framer.finish(on_event);
    return 0;
}
