// Fuzzes the non-streamed answer translators of anthropic_translate.cpp in both
// directions, with the input as the upstream's answer body:
//   messages_to_chat_response (Anthropic message -> OpenAI chat.completion) and
//   chat_to_messages_response (OpenAI chat.completion -> Anthropic message),
// and error_message() on the same bytes.
//
// Invariants checked (besides ASan/UBSan and "never throws"):
//  - the result is empty exactly when the input is not a JSON object;
//  - otherwise it is one valid JSON object with the client's model (when valid UTF-8);
//  - OpenAI answers: one choice with an assistant message; tool_calls' arguments are
//    strings holding valid JSON; usage counts are non-negative and total = prompt +
//    completion;
//  - Anthropic answers: content is an array of typed blocks, tool_use inputs are
//    objects; usage counts are non-negative;
//  - error_message() is never empty.

#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_common.hpp"
#include "gateway/upstream/providers/anthropic_translate.hpp"

namespace {

namespace xl = tollgate::upstream::anthropic;
namespace dom = simdjson::dom;
using simdjson::SUCCESS;
using tollgate::fuzz::valid_json;

std::int64_t count(dom::object o, std::string_view key, const std::string& text) {
    std::int64_t v = -1;
    FUZZ_CHECK(o[key].get(v) == SUCCESS, text);
    FUZZ_CHECK(v >= 0, text);
    return v;
}

void check_chat_completion(const std::string& out, std::string_view model) {
    dom::element root;
    FUZZ_CHECK(valid_json(out, root), out);
    dom::object o;
    FUZZ_CHECK(root.get(o) == SUCCESS, out);
    std::string_view m;
    FUZZ_CHECK(o["model"].get(m) == SUCCESS, out);
    if (simdjson::validate_utf8(model.data(), model.size())) FUZZ_CHECK(m == model, out);
    dom::array choices;
    FUZZ_CHECK(o["choices"].get(choices) == SUCCESS && choices.size() == 1, out);
    dom::object msg;
    FUZZ_CHECK(choices.at(0)["message"].get(msg) == SUCCESS, out);
    std::string_view role;
    FUZZ_CHECK(msg["role"].get(role) == SUCCESS && role == "assistant", out);
    dom::array calls;
    std::vector<std::string> arguments;
    if (msg["tool_calls"].get(calls) == SUCCESS) {
        for (dom::element c : calls) {
            std::string_view a;
            FUZZ_CHECK(c.at_pointer("/function/arguments").get(a) == SUCCESS, out);
            arguments.emplace_back(a);
        }
    }
    dom::object usage;
    FUZZ_CHECK(o["usage"].get(usage) == SUCCESS, out);
    const std::int64_t p = count(usage, "prompt_tokens", out);
    const std::int64_t c = count(usage, "completion_tokens", out);
    const std::int64_t t = count(usage, "total_tokens", out);
    FUZZ_CHECK(t == p + c, out);
    // Last: valid_json() reuses the parser the views above point into.
    for (const std::string& a : arguments) FUZZ_CHECK(valid_json(a), out);
}

void check_anthropic_message(const std::string& out, std::string_view model) {
    dom::element root;
    FUZZ_CHECK(valid_json(out, root), out);
    dom::object o;
    FUZZ_CHECK(root.get(o) == SUCCESS, out);
    std::string_view m;
    FUZZ_CHECK(o["model"].get(m) == SUCCESS, out);
    if (simdjson::validate_utf8(model.data(), model.size())) FUZZ_CHECK(m == model, out);
    dom::array content;
    FUZZ_CHECK(o["content"].get(content) == SUCCESS, out);
    for (dom::element b : content) {
        std::string_view type;
        FUZZ_CHECK(b["type"].get(type) == SUCCESS, out);
        if (type == "tool_use") FUZZ_CHECK(b["input"].is_object(), out);
    }
    dom::object usage;
    FUZZ_CHECK(o["usage"].get(usage) == SUCCESS, out);
    for (std::string_view k : {"input_tokens", "output_tokens", "cache_read_input_tokens",
                               "cache_creation_input_tokens"})
        count(usage, k, out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    const std::uint64_t h = tollgate::fuzz::hash(body);
    const std::string_view model =
        tollgate::fuzz::model_names[h % std::size(tollgate::fuzz::model_names)];
    // Any timestamp, negative and extreme ones included.
    const std::int64_t created = (h >> 8) & 1 ? 1735689600 : static_cast<std::int64_t>(h);

    bool is_object = false;
    {
        dom::element e;
        is_object = tollgate::fuzz::simdjson_accepts(body, e) && e.is_object();
    }

    const std::string chat = xl::messages_to_chat_response(body, model, created);
    FUZZ_CHECK(chat.empty() == !is_object, chat);
    if (!chat.empty()) check_chat_completion(chat, model);

    const std::string message = xl::chat_to_messages_response(body, model);
    FUZZ_CHECK(message.empty() == !is_object, message);
    if (!message.empty()) check_anthropic_message(message, model);

    FUZZ_CHECK(!xl::error_message(body).empty(), body);
    return 0;
}
