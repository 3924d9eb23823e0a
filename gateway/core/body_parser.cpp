#include "gateway/core/body_parser.hpp"

#include <simdjson.h>

#include <array>

#include <algorithm>

#include "gateway/core/byte_scan.hpp"

namespace tollgate::core {

namespace {

// A minimal scanner over JSON that simdjson already validated: it finds byte offsets
// of top-level members, which simdjson's DOM does not keep.
std::size_t skip_ws(std::string_view s, std::size_t i) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
    return i;
}

std::size_t skip_string(std::string_view s, std::size_t i) {
    const char* e = bytes::json_string_end(s.data() + i + 1, s.data() + s.size());
    return e ? static_cast<std::size_t>(e - s.data()) : s.size();
}

std::size_t skip_value(std::string_view s, std::size_t i) {
    if (i >= s.size()) return i;
    if (s[i] == '"') return skip_string(s, i);
    if (s[i] == '{' || s[i] == '[') {
        std::size_t depth = 0;
        while (i < s.size()) {
            const char c = s[i];
            if (c == '"') {
                i = skip_string(s, i);
                continue;
            }
            if (c == '{' || c == '[') ++depth;
            if (c == '}' || c == ']') {
                if (--depth == 0) return i + 1;
            }
            ++i;
        }
        return i;
    }
    while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' &&
           s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
        ++i;
    return i;
}

struct member_span {
    std::string_view key;  // raw, without quotes
    std::size_t value_begin, value_end;
};

// Calls f(member_span) for each member of the object starting at `begin` ('{');
// returns the offset of its closing '}'.
template <class F>
std::size_t for_each_member(std::string_view s, std::size_t begin, F&& f) {
    std::size_t i = skip_ws(s, begin + 1);
    if (i < s.size() && s[i] == '}') return i;
    while (i < s.size()) {
        const std::size_t key_end = skip_string(s, i);
        const std::string_view key = s.substr(i + 1, key_end - i - 2);
        i = skip_ws(s, key_end);
        i = skip_ws(s, i + 1);  // ':'
        const std::size_t vb = i;
        i = skip_value(s, i);
        f(member_span{key, vb, i});
        i = skip_ws(s, i);
        if (i < s.size() && s[i] == ',') {
            i = skip_ws(s, i + 1);
            continue;
        }
        return i;
    }
    return s.size();
}

bool is_json_ws(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// The same walk as for_each_member over the top-level object, from the structural
// indexes simdjson's stage 1 left behind: the offsets, in order, of every { } [ ] : , and
// of the first byte of every string and scalar. A member costs a few of them (a nested
// value one per bracket, string and scalar in it) instead of a pass over its bytes.
// `idx[0]` is the object's '{'; the document was validated, so the shape holds.
template <class F>
std::size_t for_each_top_member(std::string_view s, const std::uint32_t* idx, std::uint32_t n,
                                F&& f) {
    // Just past the last byte before offset `at` that is not whitespace.
    auto end_before = [&](std::uint32_t at) {
        std::size_t e = at;
        while (e > 0 && is_json_ws(s[e - 1])) --e;
        return e;
    };
    std::uint32_t i = 1;
    if (i < n && s[idx[i]] == '}') return idx[i];
    while (i + 2 < n) {
        const std::uint32_t key_at = idx[i];                 // the key's opening quote
        const std::size_t key_end = end_before(idx[i + 1]);  // past its closing quote
        const std::uint32_t vb = idx[i + 2];
        std::uint32_t j = i + 2;
        std::size_t ve;
        if (s[vb] == '{' || s[vb] == '[') {
            std::size_t depth = 0;
            for (; j < n; ++j) {
                const char c = s[idx[j]];
                if (c == '{' || c == '[') {
                    ++depth;
                } else if (c == '}' || c == ']') {
                    if (--depth == 0) break;
                }
            }
            if (j >= n) return s.size();
            ve = idx[j] + 1;
            ++j;
        } else {
            ++j;
            if (j >= n) return s.size();
            ve = end_before(idx[j]);
        }
        f(member_span{s.substr(key_at + 1, key_end - key_at - 2), vb, ve});
        if (j >= n) return s.size();
        if (s[idx[j]] != ',') return idx[j];  // the closing '}'
        i = j + 1;
    }
    return s.size();
}

// True if the (valid) JSON nests containers deeper than `limit` levels. simdjson counts
// depth differently (an empty innermost container is not counted), so the exact rule is
// checked here; a body with too few brackets to go that deep is passed at once.
bool nested_deeper_than(std::string_view s, std::size_t limit) {
    if (bytes::count_either(s.data(), s.data() + s.size(), '[', '{') <= limit) return false;
    std::size_t depth = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '"') {
            i = skip_string(s, i) - 1;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return true;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return false;
}

// Tokens an image costs in the prompt estimate, whatever its size or encoding (its URL or
// base64 bytes say nothing of it): above what OpenAI (765 for a 1024x1024 tile set) and
// Anthropic (about 1,600 at their largest size) charge for a typical image.
constexpr std::uint64_t image_tokens = 1600;
// Estimates are clamped here (10^15, like the token counts read from upstreams), so sums of
// a few never overflow.
constexpr std::uint64_t max_estimate = 1'000'000'000'000'000;

// The prompt estimate as it accumulates: ASCII bytes and non-ASCII characters apart, so
// rounding happens once, not per string.
struct prompt_count {
    std::size_t ascii = 0;
    std::uint64_t other = 0;
    void add(std::string_view s) noexcept {
        bytes::utf8_count n;
        bytes::count_utf8(s.data(), s.data() + s.size(), n);
        ascii += n.ascii;
        other += n.other;
    }
    std::uint64_t tokens() const noexcept { return estimate_tokens(ascii) + other; }
};

bool is_image_part(std::string_view type) noexcept {
    return type == "image_url" || type == "image" || type == "input_image";
}

// What the model reads in `e`: strings, numbers of token arrays one token each, images a
// fixed figure; the structure around them (roles, types, ids) is not counted.
void count_prompt(simdjson::dom::element e, prompt_count& c, int depth = 0) {
    if (depth > 64) return;
    switch (e.type()) {
        case simdjson::dom::element_type::STRING: {
            std::string_view s;
            if (e.get_string().get(s) == simdjson::SUCCESS) c.add(s);
            return;
        }
        case simdjson::dom::element_type::INT64:
        case simdjson::dom::element_type::UINT64:
            ++c.other;  // an item of a token array (embeddings input, prompt ids)
            return;
        case simdjson::dom::element_type::ARRAY: {
            simdjson::dom::array arr;
            if (e.get_array().get(arr) != simdjson::SUCCESS) return;
            for (simdjson::dom::element v : arr) count_prompt(v, c, depth + 1);
            return;
        }
        case simdjson::dom::element_type::OBJECT: {
            simdjson::dom::object obj;
            if (e.get_object().get(obj) != simdjson::SUCCESS) return;
            std::string_view type;
            if (obj.at_key("type").get_string().get(type) == simdjson::SUCCESS &&
                is_image_part(type)) {
                c.other += image_tokens;
                return;
            }
            for (auto field : obj) {
                if (field.key == "role" || field.key == "type" || field.key == "id") continue;
                count_prompt(field.value, c, depth + 1);
            }
            return;
        }
        default:
            return;
    }
}

}  // namespace

// simdjson refuses a non-empty container whose depth reaches max_depth; SPEC allows
// 128 levels (the top-level object being level 1), hence max_depth + 1 below.
struct body_parser::impl {
    simdjson::dom::parser parser;
    impl() {
        if (parser.allocate(64 * 1024, max_depth + 1) != simdjson::SUCCESS) throw std::bad_alloc();
    }
};

body_parser::body_parser(bool structural_walk)
    : impl_(std::make_unique<impl>()), structural_walk_(structural_walk) {}
body_parser::~body_parser() = default;

body_error body_parser::parse(endpoint ep, std::string_view body, request_body& out) {
    using namespace simdjson;
    out = request_body{};
    auto& parser = impl_->parser;
    if (body.size() > parser.capacity()) {
        if (parser.allocate(body.size(), max_depth + 1) != SUCCESS)
            return {errc::internal, "could not allocate the JSON parser"};
    }
    dom::element doc;
    if (auto err = parser.parse(body.data(), body.size(), true).get(doc); err != SUCCESS) {
        if (err == DEPTH_ERROR)
            return {errc::invalid_request, "JSON is nested deeper than 128 levels"};
        if (err == UTF8_ERROR) return {errc::invalid_request, "body is not valid UTF-8"};
        if (err == EMPTY) return {errc::invalid_request, "request body is empty; expected JSON"};
        return {errc::invalid_request, "request body is not valid JSON"};
    }
    // Each level below the top needs a bracket of its own, and stage 1 left one index per
    // bracket: a body with no more indexes than levels allowed (any usual request) cannot
    // nest too deep, and its bytes need not be counted.
    const auto* stage1 = parser.implementation.get();
    if ((!stage1 || stage1->n_structural_indexes > max_depth) &&
        nested_deeper_than(body, max_depth))
        return {errc::invalid_request, "JSON is nested deeper than 128 levels"};
    dom::object obj;
    if (doc.get_object().get(obj) != SUCCESS)
        return {errc::invalid_request, "request body must be a JSON object"};

    // The members read below, found in one pass over the object (the first of a name, as
    // at_key would find it; one lookup each was a walk over the keys each).
    enum slot : std::size_t {
        s_model,
        s_messages,
        s_system,
        s_tools,
        s_input,
        s_previous_response_id,
        s_prompt,
        s_conversation,
        s_instructions,
        s_stream,
        s_stream_options,
        s_n,
        s_max_tokens,
        s_max_completion_tokens,
        s_max_output_tokens,
        s_count
    };
    static constexpr std::array<std::string_view, s_count> slot_names{"model",
                                                                      "messages",
                                                                      "system",
                                                                      "tools",
                                                                      "input",
                                                                      "previous_response_id",
                                                                      "prompt",
                                                                      "conversation",
                                                                      "instructions",
                                                                      "stream",
                                                                      "stream_options",
                                                                      "n",
                                                                      "max_tokens",
                                                                      "max_completion_tokens",
                                                                      "max_output_tokens"};
    std::array<dom::element, s_count> found{};
    std::uint32_t present = 0;
    for (const auto m : obj) {
        for (std::size_t i = 0; i < s_count; ++i) {
            if (m.key.size() != slot_names[i].size() || m.key != slot_names[i]) continue;
            if (!(present & (1u << i))) {
                found[i] = m.value;
                present |= 1u << i;
            }
            break;
        }
    }
    auto field_at = [&](slot s, dom::element& out_el) {
        if (!(present & (1u << s))) return false;
        out_el = found[s];
        return true;
    };

    std::string_view model;
    {
        dom::element m;
        if (!field_at(s_model, m)) return {errc::invalid_request, "missing required field 'model'"};
        if (m.get_string().get(model) != SUCCESS)
            return {errc::invalid_request, "'model' must be a string"};
    }
    if (model.empty()) return {errc::invalid_request, "'model' must not be empty"};
    out.model.assign(model);

    dom::element el;
    if (ep == endpoint::chat_completions || ep == endpoint::messages) {
        if (!field_at(s_messages, el))
            return {errc::invalid_request, "missing required field 'messages'"};
        dom::array arr;
        if (el.get_array().get(arr) != SUCCESS)
            return {errc::invalid_request, "'messages' must be an array"};
        for (dom::element m : arr)
            if (!m.is_object())
                return {errc::invalid_request, "each item of 'messages' must be an object"};
        prompt_count count;
        count_prompt(el, count);
        if (ep == endpoint::messages && field_at(s_system, el)) count_prompt(el, count);
        if (field_at(s_tools, el) && !el.is_array() && !el.is_null())
            return {errc::invalid_request, "'tools' must be an array"};
        // tools, functions and response_format are counted from their JSON text (below):
        // a schema is mostly keys and structure, which count_prompt() leaves out.
        out.prompt_tokens = count.tokens();
    } else if (ep == endpoint::responses) {
        // `input` is a string or items; without it only a stored prompt or an earlier
        // response can say what to answer (refused later where the target cannot).
        const bool has_input = field_at(s_input, el);
        if (has_input && !el.is_string() && !el.is_array())
            return {errc::invalid_request, "'input' must be a string or an array"};
        prompt_count count;
        if (has_input) count_prompt(el, count);
        dom::element other;
        if (!has_input && !field_at(s_previous_response_id, other) && !field_at(s_prompt, other) &&
            !field_at(s_conversation, other))
            return {errc::invalid_request, "missing required field 'input'"};
        if (field_at(s_instructions, el) && !el.is_null()) {
            if (!el.is_string()) return {errc::invalid_request, "'instructions' must be a string"};
            count_prompt(el, count);
        }
        if (field_at(s_tools, el) && !el.is_array() && !el.is_null())
            return {errc::invalid_request, "'tools' must be an array"};
        out.prompt_tokens = count.tokens();
    } else if (ep == endpoint::embeddings) {
        if (!field_at(s_input, el))
            return {errc::invalid_request, "missing required field 'input'"};
        if (!el.is_string() && !el.is_array())
            return {errc::invalid_request, "'input' must be a string or an array"};
        prompt_count count;
        count_prompt(el, count);
        out.prompt_tokens = count.tokens();
    }

    if (field_at(s_stream, el) && !el.is_null()) {
        if (el.get_bool().get(out.stream) != SUCCESS)
            return {errc::invalid_request, "'stream' must be a boolean"};
    }
    int usage_keys = 0;  // include_usage keys in stream_options, as decoded
    if (field_at(s_stream_options, el) && !el.is_null()) {
        dom::object o;
        if (el.get_object().get(o) != SUCCESS)
            return {errc::invalid_request, "'stream_options' must be an object"};
        for (const auto m : o)
            if (m.key == "include_usage") ++usage_keys;
        dom::element iu;
        if (o.at_key("include_usage").get(iu) == SUCCESS && !iu.is_null()) {
            if (iu.get_bool().get(out.client_include_usage) != SUCCESS)
                return {errc::invalid_request, "'stream_options.include_usage' must be a boolean"};
        }
    }
    // `n` only scales the estimate; a value the upstream refuses is its to refuse.
    if (field_at(s_n, el)) {
        std::uint64_t n = 0;
        double d = 0;
        if (el.get_uint64().get(n) == SUCCESS && n > 0)
            out.n = std::min<std::uint64_t>(n, 1024);
        else if (el.get_double().get(d) == SUCCESS && d >= 1 && d <= 1024)
            out.n = static_cast<std::uint64_t>(d);
    }
    for (const slot s : {s_max_tokens, s_max_completion_tokens, s_max_output_tokens}) {
        const std::string_view name = slot_names[s];
        if (field_at(s, el) && !el.is_null()) {
            std::uint64_t v = 0;
            if (el.get_uint64().get(v) != SUCCESS)
                return {errc::invalid_request,
                        "'" + std::string(name) + "' must be a non-negative integer"};
            out.max_tokens = std::max(out.max_tokens.value_or(0), v);  // both given: the larger
        }
    }

    // Splice points. Keys we rewrite must appear once and unescaped: an upstream that
    // reads the last duplicate would otherwise see a model the policies never checked.
    int model_seen = 0, so_seen = 0, stream_seen = 0;
    prompt_count schemas;  // tools, functions, response_format: their JSON text
    auto on_member = [&](const member_span& m) {
        if (m.key == "model") {
            ++model_seen;
            out.model_begin = m.value_begin;
            out.model_end = m.value_end;
        } else if (m.key == "stream_options") {
            ++so_seen;
            out.stream_options_begin = m.value_begin;
            out.stream_options_end = m.value_end;
        } else if (m.key == "stream") {
            ++stream_seen;
        } else if (m.key == "tools" || m.key == "functions" || m.key == "response_format" ||
                   (m.key == "text" && ep == endpoint::responses)) {
            if (ep != endpoint::embeddings)
                schemas.add(body.substr(m.value_begin, m.value_end - m.value_begin));
        } else if (m.key.find('\\') != std::string_view::npos) {
            // An escaped key might spell one of ours: refuse rather than guess.
            model_seen = 99;
        }
    };
    if (structural_walk_ && stage1)
        out.object_end = for_each_top_member(body, stage1->structural_indexes.get(),
                                             stage1->n_structural_indexes, on_member);
    else
        out.object_end = for_each_member(body, skip_ws(body, 0), on_member);
    if (model_seen != 1 || so_seen > 1 || stream_seen > 1)
        return {errc::invalid_request,
                "duplicate or escaped top-level keys are not accepted in the request body"};
    out.prompt_tokens = std::min<std::uint64_t>(out.prompt_tokens + schemas.tokens(), max_estimate);
    // The same inside stream_options, whose include_usage the gateway may force: a
    // duplicate or escaped spelling could hide a `false` from the check above.
    if (so_seen == 1 && body[out.stream_options_begin] == '{') {
        int usage_seen = 0;  // spelled plainly
        for_each_member(body, out.stream_options_begin, [&](const member_span& m) {
            if (m.key == "include_usage") ++usage_seen;
        });
        if (usage_keys > 1 || usage_seen != usage_keys)
            return {errc::invalid_request,
                    "'stream_options.include_usage' must appear once, unescaped"};
    }
    return {};
}

std::size_t spliced_body::size() const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < count; ++i) n += pieces[i].size();
    return n;
}

std::string spliced_body::joined() const {
    std::string out;
    out.reserve(size());
    for (std::size_t i = 0; i < count; ++i) out += pieces[i];
    return out;
}

void splice_body(std::string_view raw, const request_body& req, std::string_view upstream_model,
                 bool force_include_usage, spliced_body& out) {
    out.count = 0;
    out.model_token.clear();
    out.model_token += '"';
    append_json_escaped(out.model_token, upstream_model);
    out.model_token += '"';

    auto add = [&](std::string_view piece) {
        if (!piece.empty()) out.pieces[out.count++] = piece;
    };
    const bool need_usage = force_include_usage && req.stream && !req.client_include_usage;
    const bool has_so = req.stream_options_end != 0;
    if (!need_usage) {
        add(raw.substr(0, req.model_begin));
        add(out.model_token);
        add(raw.substr(req.model_end));
        return;
    }
    if (!has_so) {
        // Insert a member before the closing brace of the top-level object.
        out.stream_options = R"(,"stream_options":{"include_usage":true})";
        add(raw.substr(0, req.model_begin));
        add(out.model_token);
        add(raw.substr(req.model_end, req.object_end - req.model_end));
        add(out.stream_options);
        add(raw.substr(req.object_end));
        return;
    }
    // Rewrite the stream_options value, keeping the client's other options.
    out.stream_options = R"({"include_usage":true)";
    if (raw[req.stream_options_begin] == '{') {
        for_each_member(raw, req.stream_options_begin, [&](const member_span& m) {
            if (m.key == "include_usage") return;
            out.stream_options += ",\"";
            out.stream_options += m.key;
            out.stream_options += "\":";
            out.stream_options += raw.substr(m.value_begin, m.value_end - m.value_begin);
        });
    }
    out.stream_options += '}';
    const bool model_first = req.model_begin < req.stream_options_begin;
    const auto a_begin = model_first ? req.model_begin : req.stream_options_begin;
    const auto a_end = model_first ? req.model_end : req.stream_options_end;
    const auto b_begin = model_first ? req.stream_options_begin : req.model_begin;
    const auto b_end = model_first ? req.stream_options_end : req.model_end;
    add(raw.substr(0, a_begin));
    add(model_first ? std::string_view(out.model_token) : std::string_view(out.stream_options));
    add(raw.substr(a_end, b_begin - a_end));
    add(model_first ? std::string_view(out.stream_options) : std::string_view(out.model_token));
    add(raw.substr(b_end));
}

}  // namespace tollgate::core
