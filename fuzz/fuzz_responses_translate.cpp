// Fuzzes gateway/upstream/providers/responses_translate.cpp, the input read three ways:
//  - as a client's Responses request body: responses_to_chat_request, then (the path of
//    anthropic-kind targets) the chat request through chat_to_messages_request, and the
//    settings it echoes through a Response, answered and streamed;
//  - as an upstream chat completion: chat_to_responses_response;
//  - as an upstream chat chunk stream, cut into events by core::sse_framer as the relay
//    does (so seeds are real streams), fed to chat_stream_to_responses, then finish().
//    An input starting with a NUL byte is instead a list of data payloads separated by
//    NUL: this reaches payloads the framer never produces (with '\r' or "\n\n", say).
//
// Invariants checked (besides ASan/UBSan and "never throws"):
//  - requests: an error has a message, a kind and no body; a success is one valid JSON
//    object whose model is the upstream model (when valid UTF-8), with a non-empty
//    messages array of system/user/assistant/tool messages, tool messages naming their
//    call and tool calls carrying an id, a name and string arguments;
//  - answers: empty, or one valid JSON Response object (completed or incomplete) whose
//    output items are messages or function calls with an id;
//  - streams: every output is "event: T\ndata: <one JSON line, type T>\n\n" with
//    sequence_number 0, 1, 2...; response.created then response.in_progress first; items
//    added at the next output_index; deltas and .done events addressed to a started,
//    unfinished item (and its last part); each .done equal to what its deltas added up
//    to; exactly one terminal event (completed, incomplete or failed), last, matching
//    finished()/failed(); nothing after it.

#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_common.hpp"
#include "gateway/core/sse_framer.hpp"
#include "gateway/upstream/providers/anthropic_translate.hpp"
#include "gateway/upstream/providers/responses_translate.hpp"

namespace {

namespace rx = tollgate::upstream::responses;
namespace dom = simdjson::dom;
using simdjson::SUCCESS;
using tollgate::fuzz::valid_json;

bool utf8(std::string_view s) {
    return simdjson::validate_utf8(s.data(), s.size());
}

std::string_view string_at(dom::element e, std::string_view ptr) {
    std::string_view s;
    if (e.at_pointer(ptr).get(s) != SUCCESS) return "<none>";
    return s;
}

void check_request(std::string_view body, std::string_view model) {
    const rx::translated t = rx::responses_to_chat_request(body, model);
    if (!t.ok()) {
        FUZZ_CHECK(t.body.empty(), t.body);
        FUZZ_CHECK(t.kind != rx::error_kind::none, t.error);
        return;
    }
    FUZZ_CHECK(t.kind == rx::error_kind::none, t.body);
    dom::element root;
    dom::object o;
    FUZZ_CHECK(valid_json(t.body, root) && root.get(o) == SUCCESS, t.body);
    std::string_view m;
    FUZZ_CHECK(o["model"].get(m) == SUCCESS, t.body);
    if (utf8(model)) FUZZ_CHECK(m == model, t.body);
    dom::array messages;
    FUZZ_CHECK(o["messages"].get(messages) == SUCCESS && messages.size() > 0, t.body);
    for (dom::element msg : messages) {
        std::string_view role, s;
        FUZZ_CHECK(msg["role"].get(role) == SUCCESS, t.body);
        FUZZ_CHECK(role == "system" || role == "user" || role == "assistant" || role == "tool",
                   t.body);
        if (role == "tool") FUZZ_CHECK(msg["tool_call_id"].get(s) == SUCCESS, t.body);
        dom::array calls;
        if (msg["tool_calls"].get(calls) != SUCCESS) continue;
        FUZZ_CHECK(role == "assistant" && calls.size() > 0, t.body);
        for (dom::element c : calls) {
            FUZZ_CHECK(c["id"].get(s) == SUCCESS, t.body);
            FUZZ_CHECK(c.at_pointer("/function/name").get(s) == SUCCESS, t.body);
            FUZZ_CHECK(c.at_pointer("/function/arguments").get(s) == SUCCESS, t.body);
        }
    }
    bool stream = false;
    if (o["stream_options"].error() == SUCCESS)
        FUZZ_CHECK(o["stream"].get(stream) == SUCCESS && stream, t.body);

    // The chat request is a well-formed chat request: the Messages translator takes it
    // (or refuses it cleanly).
    const auto messages_request =
        tollgate::upstream::anthropic::chat_to_messages_request(t.body, "claude", 1024);
    if (messages_request.ok())
        FUZZ_CHECK(valid_json(messages_request.body), messages_request.body);
    else
        FUZZ_CHECK(messages_request.body.empty(), messages_request.body);

    // The settings the Response echoes keep it one valid JSON object, answered and streamed.
    const std::string answer = rx::chat_to_responses_response(
        R"({"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"x"}}]})",
        model, 1735689600, "resp_x", t.echo);
    FUZZ_CHECK(valid_json(answer, root) && root.get(o) == SUCCESS, answer);
    rx::chat_stream_to_responses s(std::string(model), 1735689600, "resp_x", t.echo);
    std::string events;
    s.on_chunk("[DONE]", events);
    // The last event's data line (a raw newline never occurs inside the JSON).
    const auto last = events.rfind("\ndata: ");
    FUZZ_CHECK(last != std::string::npos, events);
    const std::string_view line =
        std::string_view(events).substr(last + 7, events.find('\n', last + 7) - last - 7);
    FUZZ_CHECK(valid_json(line, root) && root.get(o) == SUCCESS, events);
}

void check_answer(std::string_view body, std::string_view model, std::string_view id) {
    const std::string out = rx::chat_to_responses_response(body, model, 1735689600, id);
    if (out.empty()) return;
    dom::element root;
    dom::object o;
    FUZZ_CHECK(valid_json(out, root) && root.get(o) == SUCCESS, out);
    FUZZ_CHECK(string_at(root, "/object") == "response", out);
    const std::string_view status = string_at(root, "/status");
    FUZZ_CHECK(status == "completed" || status == "incomplete", out);
    if (utf8(model)) FUZZ_CHECK(string_at(root, "/model") == model, out);
    dom::array output;
    FUZZ_CHECK(o["output"].get(output) == SUCCESS, out);
    for (dom::element item : output) {
        const std::string_view type = string_at(item, "/type");
        FUZZ_CHECK(type == "message" || type == "function_call", out);
        FUZZ_CHECK(string_at(item, "/id") != "<none>", out);
    }
}

// The Responses event stream, checked as a client SDK would consume it.
struct stream_side {
    struct item {
        bool call = false, done = false;
        std::string id, arguments;
        std::vector<std::string> parts;  // texts
        std::vector<bool> refusal;
    };
    rx::chat_stream_to_responses tr;
    std::int64_t sequence = 0;
    std::vector<item> items;
    bool ended = false;  // a terminal event was seen

    void check(const std::string& out, std::string_view input) {
        std::size_t pos = 0;
        while (pos < out.size()) {
            const std::size_t end = out.find("\n\n", pos);
            FUZZ_CHECK(end != std::string::npos, out);
            const std::string_view ev = std::string_view(out).substr(pos, end - pos);
            pos = end + 2;
            FUZZ_CHECK(!ended, ev);
            FUZZ_CHECK(ev.starts_with("event: "), ev);
            const std::size_t nl = ev.find('\n');
            FUZZ_CHECK(nl != std::string_view::npos && ev.substr(nl + 1, 6) == "data: ", ev);
            const std::string name(ev.substr(7, nl - 7));
            const std::string_view line = ev.substr(nl + 7);
            FUZZ_CHECK(line.find_first_of("\r\n") == std::string_view::npos, ev);
            dom::element e;
            dom::object o;
            FUZZ_CHECK(valid_json(line, e) && e.get(o) == SUCCESS, ev);
            FUZZ_CHECK(string_at(e, "/type") == name, ev);
            std::int64_t seq = -1;
            FUZZ_CHECK(o["sequence_number"].get(seq) == SUCCESS && seq == sequence, ev);
            ++sequence;
            on_event(name, e, ev);
        }
        FUZZ_CHECK(ended == (tr.finished() || tr.failed()), input);
    }

    item& addressed(dom::element e, std::string_view ev) {
        std::int64_t index = -1;
        FUZZ_CHECK(e["output_index"].get(index) == SUCCESS, ev);
        FUZZ_CHECK(index >= 0 && index < static_cast<std::int64_t>(items.size()), ev);
        item& it = items[static_cast<std::size_t>(index)];
        FUZZ_CHECK(!it.done, ev);
        return it;
    }

    void on_event(const std::string& name, dom::element e, std::string_view ev) {
        if (sequence == 1) FUZZ_CHECK(name == "response.created", ev);
        if (sequence == 2) FUZZ_CHECK(name == "response.in_progress", ev);
        if (name == "response.created" || name == "response.in_progress") {
            FUZZ_CHECK(sequence <= 2, ev);
        } else if (name == "response.output_item.added") {
            std::int64_t index = -1;
            FUZZ_CHECK(e["output_index"].get(index) == SUCCESS &&
                           index == static_cast<std::int64_t>(items.size()),
                       ev);
            item it;
            it.call = string_at(e, "/item/type") == "function_call";
            it.id = std::string(string_at(e, "/item/id"));
            items.push_back(std::move(it));
        } else if (name == "response.content_part.added") {
            item& it = addressed(e, ev);
            FUZZ_CHECK(!it.call && string_at(e, "/item_id") == it.id, ev);
            std::int64_t ci = -1;
            FUZZ_CHECK(e["content_index"].get(ci) == SUCCESS &&
                           ci == static_cast<std::int64_t>(it.parts.size()),
                       ev);
            it.parts.emplace_back();
            it.refusal.push_back(string_at(e, "/part/type") == "refusal");
        } else if (name == "response.output_text.delta" || name == "response.refusal.delta" ||
                   name == "response.output_text.done" || name == "response.refusal.done" ||
                   name == "response.content_part.done") {
            item& it = addressed(e, ev);
            FUZZ_CHECK(!it.call && string_at(e, "/item_id") == it.id, ev);
            std::int64_t ci = -1;
            FUZZ_CHECK(e["content_index"].get(ci) == SUCCESS && ci >= 0 &&
                           ci + 1 == static_cast<std::int64_t>(it.parts.size()),
                       ev);
            const bool refusal = it.refusal.back();
            std::string& text = it.parts.back();
            if (name.ends_with(".delta")) {
                FUZZ_CHECK(refusal == (name == "response.refusal.delta"), ev);
                text += string_at(e, "/delta");
            } else if (name == "response.output_text.done") {
                FUZZ_CHECK(!refusal && string_at(e, "/text") == text, ev);
            } else if (name == "response.refusal.done") {
                FUZZ_CHECK(refusal && string_at(e, "/refusal") == text, ev);
            } else {
                FUZZ_CHECK(string_at(e, refusal ? "/part/refusal" : "/part/text") == text, ev);
            }
        } else if (name == "response.function_call_arguments.delta") {
            item& it = addressed(e, ev);
            FUZZ_CHECK(it.call && string_at(e, "/item_id") == it.id, ev);
            it.arguments += string_at(e, "/delta");
        } else if (name == "response.function_call_arguments.done") {
            item& it = addressed(e, ev);
            FUZZ_CHECK(it.call && string_at(e, "/arguments") == it.arguments, ev);
        } else if (name == "response.output_item.done") {
            item& it = addressed(e, ev);
            it.done = true;
            FUZZ_CHECK(string_at(e, "/item/id") == it.id, ev);
            if (it.call) FUZZ_CHECK(string_at(e, "/item/arguments") == it.arguments, ev);
        } else if (name == "response.completed" || name == "response.incomplete") {
            ended = true;
            FUZZ_CHECK(tr.finished() && !tr.failed(), ev);
            dom::array output;
            FUZZ_CHECK(e.at_pointer("/response/output").get(output) == SUCCESS &&
                           output.size() == items.size(),
                       ev);
            for (const item& it : items) FUZZ_CHECK(it.done, ev);
        } else if (name == "response.failed") {
            ended = true;
            FUZZ_CHECK(tr.failed() && !tr.finished(), ev);
            FUZZ_CHECK(string_at(e, "/response/error/code") == "server_error", ev);
        } else {
            FUZZ_CHECK(false && "unknown event", ev);
        }
    }

    void feed(std::string_view data) {
        const bool was_ended = ended;
        std::string out;
        tr.on_chunk(data, out);
        FUZZ_CHECK(!was_ended || out.empty(), data);
        check(out, data);
    }

    void finish(bool complete) {
        std::string out;
        tr.finish(complete, out);
        check(out, "finish");
        FUZZ_CHECK(ended, "a stream always ends with a terminal event");
    }
};

constexpr std::string_view response_ids[] = {"resp_0123456789abcdef", "", "resp_",
                                             "resp_\"q\\\n\xff"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::uint64_t h = tollgate::fuzz::hash(input);
    const std::string_view model =
        tollgate::fuzz::model_names[h % std::size(tollgate::fuzz::model_names)];
    const std::string_view id = response_ids[(h >> 8) % std::size(response_ids)];

    check_request(input, model);
    check_answer(input, model, id);

    stream_side s{rx::chat_stream_to_responses(std::string(model), 1735689600, std::string(id))};
    if (!input.empty() && input[0] == '\0') {
        std::string_view rest = input.substr(1);
        while (!rest.empty()) {
            const std::size_t end = rest.find('\0');
            s.feed(rest.substr(0, end));
            rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
        }
    } else {
        tollgate::core::sse_framer framer(1u << 20);
        auto on_event = [&](const tollgate::core::sse_event& e) {
            if (e.has_data) s.feed(e.data);
        };
        framer.feed(input, on_event);
        framer.finish(on_event);
    }
    s.finish((h >> 16) & 1);
    return 0;
}
