// Fuzzes the request translators of gateway/upstream/providers/anthropic_translate.cpp in
// both directions, with the input as the client's request body:
//   chat_to_messages_request (OpenAI client -> Anthropic upstream) and
//   messages_to_chat_request (Anthropic client -> OpenAI upstream),
// then feeds each successful output to the other direction (a translated request is
// itself a well-formed request of the other API).
//
// Invariants checked (besides ASan/UBSan and "never throws"):
//  - an error result has a message and no body; a success has a body that is one valid
//    JSON object whose "model" is the upstream model (when that is valid UTF-8);
//  - Anthropic requests: max_tokens is a positive integer; messages is non-empty, roles
//    are user/assistant and alternate, content is a non-empty array of objects with a
//    type, and in a user turn the tool_result blocks come first (Anthropic's rules);
//  - OpenAI requests: messages is an array of objects with a role;
//  - the error_message() reader gives a non-empty text for any input.

#include <string>
#include <string_view>

#include "fuzz/fuzz_common.hpp"
#include "gateway/upstream/providers/anthropic_translate.hpp"

namespace {

namespace xl = tollgate::upstream::anthropic;
namespace dom = simdjson::dom;
using simdjson::SUCCESS;
using tollgate::fuzz::valid_json;

dom::object checked_object(const xl::translated& t, std::string_view model) {
    FUZZ_CHECK(t.body.empty() || t.ok(), t.error);
    dom::element root;
    FUZZ_CHECK(valid_json(t.body, root), t.body);
    dom::object o;
    FUZZ_CHECK(root.get(o) == SUCCESS, t.body);
    std::string_view m;
    FUZZ_CHECK(o["model"].get(m) == SUCCESS, t.body);
    if (simdjson::validate_utf8(model.data(), model.size())) FUZZ_CHECK(m == model, t.body);
    return o;
}

void check_anthropic_request(const xl::translated& t, std::string_view model) {
    const dom::object o = checked_object(t, model);
    std::int64_t max_tokens = 0;
    FUZZ_CHECK(o["max_tokens"].get(max_tokens) == SUCCESS && max_tokens >= 1, t.body);
    dom::array messages;
    FUZZ_CHECK(o["messages"].get(messages) == SUCCESS && messages.size() > 0, t.body);
    std::string_view previous;
    for (dom::element m : messages) {
        std::string_view role;
        dom::array content;
        FUZZ_CHECK(m["role"].get(role) == SUCCESS, t.body);
        FUZZ_CHECK(role == "user" || role == "assistant", t.body);
        FUZZ_CHECK(role != previous, t.body);  // turns alternate
        previous = role;
        FUZZ_CHECK(m["content"].get(content) == SUCCESS && content.size() > 0, t.body);
        bool past_results = false;
        for (dom::element b : content) {
            std::string_view type;
            FUZZ_CHECK(b["type"].get(type) == SUCCESS, t.body);
            if (type == "tool_result") {
                FUZZ_CHECK(role == "user" && !past_results, t.body);
            } else {
                past_results = true;
            }
        }
    }
}

void check_openai_request(const xl::translated& t, std::string_view model) {
    const dom::object o = checked_object(t, model);
    dom::array messages;
    FUZZ_CHECK(o["messages"].get(messages) == SUCCESS, t.body);
    for (dom::element m : messages) {
        std::string_view role;
        FUZZ_CHECK(m["role"].get(role) == SUCCESS, t.body);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    const std::uint64_t h = tollgate::fuzz::hash(body);
    constexpr std::size_t n_models = std::size(tollgate::fuzz::model_names);
    const std::string_view model = tollgate::fuzz::model_names[h % n_models];
    const std::string_view other = tollgate::fuzz::model_names[(h >> 8) % n_models];
    const std::uint32_t default_max = (h >> 16) & 1 ? 4096 : 1;

    const xl::translated to_anthropic = xl::chat_to_messages_request(body, model, default_max);
    if (to_anthropic.ok()) {
        check_anthropic_request(to_anthropic, model);
        const xl::translated back = xl::messages_to_chat_request(to_anthropic.body, other);
        if (back.ok()) check_openai_request(back, other);
    } else {
        FUZZ_CHECK(to_anthropic.body.empty(), to_anthropic.body);
    }

    const xl::translated to_openai = xl::messages_to_chat_request(body, model);
    if (to_openai.ok()) {
        check_openai_request(to_openai, model);
        const xl::translated back = xl::chat_to_messages_request(to_openai.body, other, 1024);
        if (back.ok()) check_anthropic_request(back, other);
    } else {
        FUZZ_CHECK(to_openai.body.empty(), to_openai.body);
    }

    FUZZ_CHECK(!xl::error_message(body).empty(), body);
    return 0;
}
