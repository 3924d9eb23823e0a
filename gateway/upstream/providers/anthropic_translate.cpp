#include "gateway/upstream/providers/anthropic_translate.hpp"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <utility>

#include "gateway/core/json_writer.hpp"
#include "gateway/upstream/providers/json_element.hpp"

namespace tollgate::upstream::anthropic {

namespace {

using simdjson::SUCCESS;
namespace dom = simdjson::dom;

// Output through core::json_writer (one escaping rule: malformed UTF-8 becomes U+FFFD);
// parsed values are re-serialised by write_element.
using core::json_writer;
using upstream::write_element;

std::string sse_data(std::string body) {
    return "data: " + std::move(body) + "\n\n";
}

std::string sse_event(std::string_view name, std::string body) {
    std::string s;
    s.reserve(name.size() + body.size() + 16);
    s += "event: ";
    s += name;
    s += "\ndata: ";
    s += body;
    s += "\n\n";
    return s;
}

// ---------------------------------------------------------------------------------------
// Mappings shared by both directions.

std::string_view finish_from_stop_reason(std::string_view r) {
    if (r == "max_tokens") return "length";
    if (r == "tool_use") return "tool_calls";
    if (r == "refusal") return "content_filter";
    // end_turn, stop_sequence, pause_turn and anything newer: a normal stop.
    return "stop";
}

std::string_view stop_reason_from_finish(std::string_view f) {
    if (f == "length") return "max_tokens";
    if (f == "tool_calls" || f == "function_call") return "tool_use";
    if (f == "content_filter") return "refusal";
    return "end_turn";
}

void write_openai_usage(json_writer& w, std::int64_t input, std::int64_t cache_read,
                        std::int64_t cache_creation, std::int64_t output) {
    // OpenAI's prompt_tokens counts cached input too; Anthropic's input_tokens does not.
    const std::int64_t prompt = input + cache_read + cache_creation;
    w.begin_object();
    w.key("prompt_tokens").integer(prompt);
    w.key("completion_tokens").integer(output);
    w.key("total_tokens").integer(prompt + output);
    w.key("prompt_tokens_details").begin_object();
    w.key("cached_tokens").integer(cache_read);
    w.end_object();
    w.end_object();
}

// "data:image/png;base64,AAAA" -> media type and payload. False when not a base64 data URL.
bool split_data_url(std::string_view url, std::string_view& media_type, std::string_view& data) {
    if (!url.starts_with("data:")) return false;
    const auto comma = url.find(',');
    if (comma == std::string_view::npos) return false;
    std::string_view header = url.substr(5, comma - 5);
    constexpr std::string_view b64 = ";base64";
    if (!header.ends_with(b64)) return false;
    header.remove_suffix(b64.size());
    media_type = header.substr(0, header.find(';'));  // drop parameters (charset=...)
    data = url.substr(comma + 1);
    return !media_type.empty();
}

bool is_http_url(std::string_view url) {
    return url.starts_with("https://") || url.starts_with("http://");
}

// ---------------------------------------------------------------------------------------
// OpenAI request -> Anthropic request

struct block {
    std::string json;
    bool tool_result = false;
};

struct turn {
    std::string role;  // "user" | "assistant"
    std::vector<block> blocks;
};

std::string text_block(std::string_view text) {
    json_writer w;
    w.begin_object().key("type").string("text").key("text").string(text).end_object();
    return w.take();
}

// System content: a string or an array of text parts.
std::string collect_text(dom::element content, std::string& into, std::string_view what) {
    std::string_view s;
    if (content.get(s) == SUCCESS) {
        into += s;
        return {};
    }
    dom::array parts;
    if (content.get(parts) != SUCCESS)
        return std::string(what) + " content must be a string or an array";
    bool first = true;
    for (dom::element p : parts) {
        dom::object po;
        std::string_view text;
        if (p.get(po) != SUCCESS || string_or(po, "type") != "text" ||
            !member_string(po, "text", text))
            return std::string(what) + " content parts must be text";
        if (!first) into += "\n";
        into += text;
        first = false;
    }
    return {};
}

std::string image_block(dom::object part, std::string& error) {
    std::string_view url;
    dom::object iu;
    if (member_object(part, "image_url", iu))
        url = string_or(iu, "url");
    else
        url = string_or(part, "image_url");  // some clients send the URL directly
    json_writer w;
    w.begin_object().key("type").string("image").key("source").begin_object();
    std::string_view media_type, data;
    if (is_http_url(url)) {
        w.key("type").string("url").key("url").string(url);
    } else if (split_data_url(url, media_type, data)) {
        w.key("type")
            .string("base64")
            .key("media_type")
            .string(media_type)
            .key("data")
            .string(data);
    } else {
        error = "image_url must be an http(s) URL or a base64 data URL";
        return {};
    }
    w.end_object().end_object();
    return w.take();
}

std::string file_block(dom::object part, std::string& error) {
    dom::object file;
    std::string_view data_url, media_type, data;
    if (!member_object(part, "file", file) || !member_string(file, "file_data", data_url) ||
        !split_data_url(data_url, media_type, data)) {
        error = "file content parts need file_data as a base64 data URL (file_id is not supported)";
        return {};
    }
    json_writer w;
    w.begin_object().key("type").string("document").key("source").begin_object();
    w.key("type").string("base64").key("media_type").string(media_type).key("data").string(data);
    w.end_object().end_object();
    return w.take();
}

// User content: a string or an array of text / image_url / file parts.
std::string user_blocks(dom::element content, std::vector<block>& out) {
    std::string_view s;
    if (content.get(s) == SUCCESS) {
        if (!s.empty()) out.push_back({text_block(s)});
        return {};
    }
    dom::array parts;
    if (content.get(parts) != SUCCESS) return "user content must be a string or an array";
    for (dom::element p : parts) {
        dom::object po;
        if (p.get(po) != SUCCESS) return "content parts must be objects";
        const std::string_view type = string_or(po, "type");
        std::string error;
        if (type == "text") {
            std::string_view text;
            if (!member_string(po, "text", text)) return "text parts need a string text";
            if (!text.empty()) out.push_back({text_block(text)});
        } else if (type == "image_url") {
            std::string b = image_block(po, error);
            if (!error.empty()) return error;
            out.push_back({std::move(b)});
        } else if (type == "file") {
            std::string b = file_block(po, error);
            if (!error.empty()) return error;
            out.push_back({std::move(b)});
        } else {
            return "content part type '" + std::string(type) +
                   "' is not supported by this model's provider";
        }
    }
    return {};
}

std::string assistant_blocks(dom::object msg, dom::parser& args_parser, std::vector<block>& out) {
    dom::element content;
    if (member(msg, "content", content)) {
        std::string_view s;
        dom::array parts;
        if (content.get(s) == SUCCESS) {
            if (!s.empty()) out.push_back({text_block(s)});
        } else if (content.get(parts) == SUCCESS) {
            for (dom::element p : parts) {
                dom::object po;
                if (p.get(po) != SUCCESS) return "content parts must be objects";
                const std::string_view type = string_or(po, "type");
                std::string_view text;
                if (type == "text" && member_string(po, "text", text)) {
                    if (!text.empty()) out.push_back({text_block(text)});
                } else if (type == "refusal" && member_string(po, "refusal", text)) {
                    if (!text.empty()) out.push_back({text_block(text)});
                } else {
                    return "assistant content parts must be text or refusal";
                }
            }
        } else {
            return "assistant content must be a string, an array or null";
        }
    }
    dom::array calls;
    if (!member_array(msg, "tool_calls", calls)) return {};
    for (dom::element c : calls) {
        dom::object co, fn;
        std::string_view id, name;
        if (c.get(co) != SUCCESS || !member_string(co, "id", id) ||
            !member_object(co, "function", fn) || !member_string(fn, "name", name))
            return "tool_calls entries need an id and a function name";
        std::string_view arguments = string_or(fn, "arguments");
        const bool blank = arguments.find_first_not_of(" \t\r\n") == std::string_view::npos;
        json_writer w;
        w.begin_object()
            .key("type")
            .string("tool_use")
            .key("id")
            .string(id)
            .key("name")
            .string(name);
        w.key("input");
        if (blank) {
            // Some clients send "" for a call without arguments; Anthropic needs an object.
            w.begin_object().end_object();
        } else {
            dom::element input;
            if (!parse_element(args_parser, arguments, input) || !input.is_object())
                return "tool call '" + std::string(id) + "' arguments are not a JSON object";
            write_element(w, input);
        }
        w.end_object();
        out.push_back({w.take()});
    }
    return {};
}

std::string tool_result_block(dom::object msg, std::vector<block>& out) {
    std::string_view id;
    if (!member_string(msg, "tool_call_id", id)) return "tool messages need a tool_call_id";
    json_writer w;
    w.begin_object().key("type").string("tool_result").key("tool_use_id").string(id);
    dom::element content;
    if (member(msg, "content", content)) {
        std::string_view s;
        dom::array parts;
        if (content.get(s) == SUCCESS) {
            if (!s.empty()) w.key("content").string(s);
        } else if (content.get(parts) == SUCCESS) {
            w.key("content").begin_array();
            for (dom::element p : parts) {
                dom::object po;
                std::string_view text;
                if (p.get(po) != SUCCESS || string_or(po, "type") != "text" ||
                    !member_string(po, "text", text))
                    return "tool message content parts must be text";
                if (!text.empty()) w.raw(text_block(text));
            }
            w.end_array();
        } else {
            return "tool message content must be a string or an array";
        }
    }
    w.end_object();
    out.push_back({w.take(), true});
    return {};
}

// Anthropic wants alternating roles and non-empty turns: merge neighbours of the same
// role, drop empty turns, and put tool results first in a user turn as Anthropic requires.
std::vector<turn> normalise(std::vector<turn> in) {
    std::vector<turn> out;
    for (auto& t : in) {
        if (t.blocks.empty()) continue;
        if (!out.empty() && out.back().role == t.role) {
            for (auto& b : t.blocks) out.back().blocks.push_back(std::move(b));
        } else {
            out.push_back(std::move(t));
        }
    }
    for (auto& t : out)
        if (t.role == "user")
            std::stable_partition(t.blocks.begin(), t.blocks.end(),
                                  [](const block& b) { return b.tool_result; });
    return out;
}

// ---------------------------------------------------------------------------------------
// Anthropic request -> OpenAI request

std::string data_url(std::string_view media_type, std::string_view data) {
    std::string s = "data:";
    s += media_type;
    s += ";base64,";
    s += data;
    return s;
}

// An Anthropic image block -> an OpenAI image_url part (as JSON text).
std::string image_part(dom::object blk, std::string& error) {
    dom::object src;
    if (!member_object(blk, "source", src)) {
        error = "image blocks need a source";
        return {};
    }
    const std::string_view type = string_or(src, "type");
    std::string url;
    if (type == "url") {
        url = std::string(string_or(src, "url"));
    } else if (type == "base64") {
        url = data_url(string_or(src, "media_type"), string_or(src, "data"));
    } else {
        error = "image source type '" + std::string(type) +
                "' is not supported by this model's provider";
        return {};
    }
    json_writer w;
    w.begin_object().key("type").string("image_url").key("image_url").begin_object();
    w.key("url").string(url).end_object().end_object();
    return w.take();
}

std::string document_part(dom::object blk, std::string& error) {
    dom::object src;
    if (!member_object(blk, "source", src) || string_or(src, "type") != "base64") {
        error = "document blocks need a base64 source for this model's provider";
        return {};
    }
    json_writer w;
    w.begin_object().key("type").string("file").key("file").begin_object();
    std::string_view title;
    if (member_string(blk, "title", title)) w.key("filename").string(title);
    w.key("file_data").string(data_url(string_or(src, "media_type"), string_or(src, "data")));
    w.end_object().end_object();
    return w.take();
}

// One user message's parts, written as an OpenAI message (string when it is one text).
void write_user_message(json_writer& w, const std::vector<std::string>& parts,
                        const std::vector<std::string>& texts_only) {
    w.begin_object().key("role").string("user").key("content");
    if (parts.size() == 1 && texts_only.size() == 1) {
        w.string(texts_only.front());
    } else {
        w.begin_array();
        for (const auto& p : parts) w.raw(p);
        w.end_array();
    }
    w.end_object();
}

std::string text_part(std::string_view text) {
    json_writer w;
    w.begin_object().key("type").string("text").key("text").string(text).end_object();
    return w.take();
}

std::string anthropic_user_message(dom::element content, json_writer& msgs) {
    std::string_view s;
    if (content.get(s) == SUCCESS) {
        msgs.begin_object().key("role").string("user").key("content").string(s).end_object();
        return {};
    }
    dom::array blocks;
    if (content.get(blocks) != SUCCESS) return "message content must be a string or an array";
    std::vector<std::string> parts, texts;
    for (dom::element b : blocks) {
        dom::object bo;
        if (b.get(bo) != SUCCESS) return "content blocks must be objects";
        const std::string_view type = string_or(bo, "type");
        std::string error;
        if (type == "text") {
            std::string_view text;
            if (!member_string(bo, "text", text)) return "text blocks need a string text";
            parts.push_back(text_part(text));
            texts.emplace_back(text);
        } else if (type == "image") {
            std::string p = image_part(bo, error);
            if (!error.empty()) return error;
            parts.push_back(std::move(p));
        } else if (type == "document") {
            std::string p = document_part(bo, error);
            if (!error.empty()) return error;
            parts.push_back(std::move(p));
        } else if (type == "tool_result") {
            // OpenAI wants tool messages right after the assistant's tool_calls, and they
            // carry text only: emit them now, and move any image to the user message.
            std::string_view id;
            if (!member_string(bo, "tool_use_id", id))
                return "tool_result blocks need a tool_use_id";
            std::string text;
            dom::element rc;
            if (member(bo, "content", rc)) {
                std::string_view rs;
                dom::array ra;
                if (rc.get(rs) == SUCCESS) {
                    text = rs;
                } else if (rc.get(ra) == SUCCESS) {
                    for (dom::element x : ra) {
                        dom::object xo;
                        if (x.get(xo) != SUCCESS)
                            return "tool_result content blocks must be objects";
                        const std::string_view xt = string_or(xo, "type");
                        if (xt == "text") {
                            if (!text.empty()) text += "\n";
                            text += string_or(xo, "text");
                        } else if (xt == "image") {
                            std::string p = image_part(xo, error);
                            if (!error.empty()) return error;
                            parts.push_back(std::move(p));
                        } else {
                            return "tool_result content block type '" + std::string(xt) +
                                   "' is not supported by this model's provider";
                        }
                    }
                } else {
                    return "tool_result content must be a string or an array";
                }
            }
            msgs.begin_object().key("role").string("tool").key("tool_call_id").string(id);
            msgs.key("content").string(text).end_object();
        } else {
            return "content block type '" + std::string(type) +
                   "' is not supported in user messages";
        }
    }
    if (!parts.empty()) write_user_message(msgs, parts, texts);
    return {};
}

std::string anthropic_assistant_message(dom::element content, json_writer& msgs) {
    std::string text;
    std::vector<std::string> calls;
    std::string_view s;
    dom::array blocks;
    if (content.get(s) == SUCCESS) {
        text = s;
    } else if (content.get(blocks) == SUCCESS) {
        for (dom::element b : blocks) {
            dom::object bo;
            if (b.get(bo) != SUCCESS) return "content blocks must be objects";
            const std::string_view type = string_or(bo, "type");
            if (type == "text") {
                text += string_or(bo, "text");
            } else if (type == "tool_use") {
                std::string_view id, name;
                if (!member_string(bo, "id", id) || !member_string(bo, "name", name))
                    return "tool_use blocks need an id and a name";
                json_writer args;
                dom::element input;
                if (member(bo, "input", input))
                    write_element(args, input);
                else
                    args.begin_object().end_object();
                json_writer w;
                w.begin_object().key("id").string(id).key("type").string("function");
                w.key("function").begin_object().key("name").string(name);
                w.key("arguments").string(args.take()).end_object().end_object();
                calls.push_back(w.take());
            } else if (type == "thinking" || type == "redacted_thinking") {
                // No OpenAI equivalent; the answer text is what the next turn needs.
            } else {
                return "content block type '" + std::string(type) +
                       "' is not supported in assistant messages";
            }
        }
    } else {
        return "message content must be a string or an array";
    }
    msgs.begin_object().key("role").string("assistant").key("content");
    if (text.empty() && !calls.empty())
        msgs.null();
    else
        msgs.string(text);
    if (!calls.empty()) {
        msgs.key("tool_calls").begin_array();
        for (const auto& c : calls) msgs.raw(c);
        msgs.end_array();
    }
    msgs.end_object();
    return {};
}

}  // namespace

// =======================================================================================
// 1. OpenAI chat request -> Anthropic Messages request

translated chat_to_messages_request(std::string_view openai_body, std::string_view upstream_model,
                                    std::uint32_t default_max_tokens) {
    dom::parser parser;
    dom::parser args_parser;  // tool-call arguments: a second document, the first stays live
    dom::object req;
    if (!parse_object(parser, openai_body, req)) return {{}, "request body must be a JSON object"};
    dom::array messages;
    if (!member_array(req, "messages", messages)) return {{}, "'messages' must be an array"};

    dom::element e;
    if (member(req, "n", e)) {
        std::int64_t n = 0;
        if (!as_integer(e, n) || n < 1) return {{}, "'n' must be a positive integer"};
        if (n > 1) return {{}, "'n' greater than 1 is not supported by this model's provider"};
    }

    std::int64_t max_tokens = default_max_tokens;
    for (const std::string_view k : {"max_tokens", "max_completion_tokens"}) {
        // max_completion_tokens is the newer name and wins when both are given.
        if (!member(req, k, e)) continue;
        if (!as_integer(e, max_tokens) || max_tokens < 1)
            return {{}, "'" + std::string(k) + "' must be a positive integer"};
    }

    std::string system;
    std::vector<turn> turns;
    for (dom::element m : messages) {
        dom::object mo;
        std::string_view role;
        if (m.get(mo) != SUCCESS || !member_string(mo, "role", role))
            return {{}, "each message must be an object with a role"};
        std::string error;
        dom::element content;
        const bool has_content = member(mo, "content", content);
        if (role == "system" || role == "developer") {
            if (!has_content) continue;
            std::string text;
            error = collect_text(content, text, "system");
            if (error.empty() && !text.empty()) {
                if (!system.empty()) system += "\n\n";
                system += text;
            }
        } else if (role == "user") {
            turns.push_back({"user", {}});
            if (!has_content) return {{}, "user messages need content"};
            error = user_blocks(content, turns.back().blocks);
        } else if (role == "assistant") {
            turns.push_back({"assistant", {}});
            error = assistant_blocks(mo, args_parser, turns.back().blocks);
        } else if (role == "tool") {
            turns.push_back({"user", {}});
            error = tool_result_block(mo, turns.back().blocks);
        } else {
            error = "message role '" + std::string(role) + "' is not supported";
        }
        if (!error.empty()) return {{}, std::move(error)};
    }
    turns = normalise(std::move(turns));
    if (turns.empty()) return {{}, "'messages' must contain a user or assistant message"};

    json_writer w;
    w.begin_object();
    w.key("model").string(upstream_model);
    w.key("max_tokens").integer(max_tokens);
    if (!system.empty()) w.key("system").string(system);
    w.key("messages").begin_array();
    for (const auto& t : turns) {
        w.begin_object().key("role").string(t.role).key("content").begin_array();
        for (const auto& b : t.blocks) w.raw(b.json);
        w.end_array().end_object();
    }
    w.end_array();

    dom::array tools;
    std::size_t tool_count = 0;
    if (member_array(req, "tools", tools)) {
        w.key("tools").begin_array();
        for (dom::element t : tools) {
            dom::object to, fn;
            std::string_view name, description;
            if (t.get(to) != SUCCESS || string_or(to, "type", "function") != "function" ||
                !member_object(to, "function", fn) || !member_string(fn, "name", name))
                return {{}, "tools must be functions with a name"};
            w.begin_object().key("name").string(name);
            if (member_string(fn, "description", description))
                w.key("description").string(description);
            w.key("input_schema");
            dom::element params;
            if (member(fn, "parameters", params) && params.is_object())
                write_element(w, params);
            else  // Anthropic requires a schema; a function without parameters takes none
                w.begin_object()
                    .key("type")
                    .string("object")
                    .key("properties")
                    .begin_object()
                    .end_object()
                    .end_object();
            w.end_object();
            ++tool_count;
        }
        w.end_array();
    }

    // tool_choice only means something with tools; parallel_tool_calls: false maps onto
    // Anthropic's disable_parallel_tool_use, which lives inside tool_choice.
    bool parallel = true;
    if (member(req, "parallel_tool_calls", e)) {
        bool b = true;
        if (e.get(b) == SUCCESS) parallel = b;
    }
    if (tool_count > 0) {
        std::string_view choice_type = "auto", choice_name;
        if (member(req, "tool_choice", e)) {
            std::string_view s;
            dom::object co, fn;
            if (e.get(s) == SUCCESS) {
                if (s == "auto")
                    choice_type = "auto";
                else if (s == "required")
                    choice_type = "any";
                else if (s == "none")
                    choice_type = "none";
                else
                    return {{}, "'tool_choice' must be auto, required, none or a function"};
            } else if (e.get(co) == SUCCESS && member_object(co, "function", fn) &&
                       member_string(fn, "name", choice_name)) {
                choice_type = "tool";
            } else {
                return {{}, "'tool_choice' must be auto, required, none or a function"};
            }
            w.key("tool_choice").begin_object().key("type").string(choice_type);
            if (choice_type == "tool") w.key("name").string(choice_name);
            if (!parallel && choice_type != "none")
                w.key("disable_parallel_tool_use").boolean(true);
            w.end_object();
        } else if (!parallel) {
            w.key("tool_choice").begin_object().key("type").string("auto");
            w.key("disable_parallel_tool_use").boolean(true).end_object();
        }
    }

    if (member(req, "stop", e)) {
        std::string_view s;
        dom::array a;
        if (e.get(s) == SUCCESS) {
            w.key("stop_sequences").begin_array().string(s).end_array();
        } else if (e.get(a) == SUCCESS) {
            w.key("stop_sequences").begin_array();
            for (dom::element x : a) {
                if (x.get(s) != SUCCESS)
                    return {{}, "'stop' must be a string or an array of strings"};
                w.string(s);
            }
            w.end_array();
        } else {
            return {{}, "'stop' must be a string or an array of strings"};
        }
    }
    for (const std::string_view k : {"temperature", "top_p"}) {
        if (!member(req, k, e)) continue;
        if (!e.is_number()) return {{}, "'" + std::string(k) + "' must be a number"};
        write_element(w.key(k), e);
    }
    if (member(req, "stream", e)) {
        bool b = false;
        if (e.get(b) != SUCCESS) return {{}, "'stream' must be a boolean"};
        w.key("stream").boolean(b);
    }
    std::string_view user;
    if (member_string(req, "user", user))
        w.key("metadata").begin_object().key("user_id").string(user).end_object();
    w.end_object();
    return {w.take(), {}};
}

// =======================================================================================
// 2. Anthropic response -> OpenAI chat.completion

std::string messages_to_chat_response(std::string_view anthropic_body,
                                      std::string_view client_model, std::int64_t created) {
    dom::parser parser;
    dom::object msg;
    if (!parse_object(parser, anthropic_body, msg)) return {};

    std::string text;
    bool has_text = false;
    json_writer calls;
    calls.begin_array();
    bool has_calls = false;
    dom::array content;
    if (member_array(msg, "content", content)) {
        for (dom::element b : content) {
            dom::object bo;
            if (b.get(bo) != SUCCESS) continue;
            const std::string_view type = string_or(bo, "type");
            if (type == "text") {
                text += string_or(bo, "text");
                has_text = true;
            } else if (type == "tool_use") {
                json_writer args;
                dom::element input;
                if (member(bo, "input", input))
                    write_element(args, input);
                else
                    args.begin_object().end_object();
                calls.begin_object().key("id").string(string_or(bo, "id"));
                calls.key("type").string("function").key("function").begin_object();
                calls.key("name").string(string_or(bo, "name"));
                calls.key("arguments").string(args.take()).end_object().end_object();
                has_calls = true;
            }
            // thinking / redacted_thinking: no OpenAI field for them.
        }
    }
    calls.end_array();

    dom::object usage;
    std::int64_t input = 0, output = 0, cache_read = 0, cache_creation = 0;
    if (member_object(msg, "usage", usage)) {
        input = count_of(usage, "input_tokens");
        output = count_of(usage, "output_tokens");
        cache_read = count_of(usage, "cache_read_input_tokens");
        cache_creation = count_of(usage, "cache_creation_input_tokens");
    }

    json_writer w;
    w.begin_object();
    w.key("id").string(string_or(msg, "id", "chatcmpl-tollgate"));
    w.key("object").string("chat.completion");
    w.key("created").integer(created);
    w.key("model").string(client_model);
    w.key("choices").begin_array().begin_object();
    w.key("index").integer(0);
    w.key("message").begin_object().key("role").string("assistant").key("content");
    if (has_text)
        w.string(text);
    else
        w.null();
    if (has_calls) w.key("tool_calls").raw(calls.take());
    w.key("refusal").null();
    w.end_object();
    w.key("logprobs").null();
    w.key("finish_reason");
    std::string_view stop_reason;
    if (member_string(msg, "stop_reason", stop_reason))
        w.string(finish_from_stop_reason(stop_reason));
    else
        w.null();
    w.end_object().end_array();
    w.key("usage");
    write_openai_usage(w, input, cache_read, cache_creation, output);
    w.end_object();
    return w.take();
}

std::string error_message(std::string_view anthropic_error_body) {
    dom::parser parser;
    dom::object body, err;
    std::string_view message;
    if (parse_object(parser, anthropic_error_body, body)) {
        if (member_object(body, "error", err) && member_string(err, "message", message) &&
            !message.empty())
            return std::string(message);
        if (member_string(body, "error", message) && !message.empty()) return std::string(message);
        if (member_string(body, "message", message) && !message.empty())
            return std::string(message);
    }
    return "the upstream provider returned an error";
}

// =======================================================================================
// 3. Anthropic stream -> OpenAI chunks

namespace {

struct chunk_meta {
    std::string_view id, model;
    std::int64_t created;
    bool include_usage;
};

// One chat.completion.chunk with a single choice; `fill` writes the delta's members.
template <class Fill>
std::string chunk(const chunk_meta& m, Fill&& fill, std::string_view finish_reason = {}) {
    json_writer w;
    w.begin_object();
    w.key("id").string(m.id);
    w.key("object").string("chat.completion.chunk");
    w.key("created").integer(m.created);
    w.key("model").string(m.model);
    w.key("choices").begin_array().begin_object();
    w.key("index").integer(0);
    w.key("delta").begin_object();
    fill(w);
    w.end_object();
    w.key("logprobs").null();
    w.key("finish_reason");
    if (finish_reason.empty())
        w.null();
    else
        w.string(finish_reason);
    w.end_object().end_array();
    if (m.include_usage) w.key("usage").null();  // as OpenAI does: only the last chunk has usage
    w.end_object();
    return sse_data(w.take());
}

std::string tool_delta_chunk(const chunk_meta& m, int tool_index, std::string_view arguments) {
    return chunk(m, [&](json_writer& w) {
        w.key("tool_calls").begin_array().begin_object().key("index").integer(tool_index);
        w.key("function").begin_object().key("arguments").string(arguments).end_object();
        w.end_object().end_array();
    });
}

}  // namespace

messages_stream_to_chat::messages_stream_to_chat(std::string client_model, std::int64_t created,
                                                 bool include_usage)
    : parser_(std::make_unique<dom::parser>()),
      model_(std::move(client_model)),
      created_(created),
      include_usage_(include_usage) {}

messages_stream_to_chat::~messages_stream_to_chat() = default;
messages_stream_to_chat::messages_stream_to_chat(messages_stream_to_chat&&) noexcept = default;
messages_stream_to_chat& messages_stream_to_chat::operator=(messages_stream_to_chat&&) noexcept =
    default;

void messages_stream_to_chat::fail(std::string message, std::vector<std::string>& out) {
    failed_ = true;
    error_text_ = std::move(message);
    json_writer w;
    w.begin_object().key("error").begin_object();
    w.key("message").string(error_text_);
    w.key("type").string("upstream_error");
    w.key("param").null();
    w.key("code").string("upstream_error");
    w.end_object().end_object();
    out.push_back(sse_data(w.take()));
}

void messages_stream_to_chat::on_event(std::string_view event_name, std::string_view data,
                                       std::vector<std::string>& out) {
    if (finished_ || failed_ || !parser_) return;
    if (event_name == "ping") return;
    dom::object ev;
    if (!parse_object(*parser_, data, ev)) {
        if (event_name == "error")
            fail("the upstream provider reported an error", out);
        else
            fail("malformed event from the upstream provider", out);
        return;
    }
    const std::string_view type = event_name.empty() ? string_or(ev, "type") : event_name;
    const chunk_meta meta{id_, model_, created_, include_usage_};

    if (type == "message_start") {
        dom::object msg, usage;
        if (member_object(ev, "message", msg)) {
            std::string_view id;
            if (member_string(msg, "id", id) && !id.empty()) id_ = id;
            if (member_object(msg, "usage", usage)) {
                input_tokens_ = count_of(usage, "input_tokens");
                output_tokens_ = count_of(usage, "output_tokens");
                cache_read_tokens_ = count_of(usage, "cache_read_input_tokens");
                cache_creation_tokens_ = count_of(usage, "cache_creation_input_tokens");
            }
        }
        const chunk_meta m{id_, model_, created_, include_usage_};
        out.push_back(chunk(m, [](json_writer& w) {
            w.key("role").string("assistant").key("content").string("");
        }));
    } else if (type == "content_block_start") {
        dom::object cb;
        dom::element ie;
        std::int64_t index = 0;
        if (!member_object(ev, "content_block", cb) || !member(ev, "index", ie) ||
            !as_integer(ie, index))
            return fail("malformed content_block_start from the upstream provider", out);
        const std::string_view bt = string_or(cb, "type");
        if (bt == "text") {
            const std::string_view text = string_or(cb, "text");
            if (!text.empty())
                out.push_back(chunk(meta, [&](json_writer& w) { w.key("content").string(text); }));
        } else if (bt == "tool_use") {
            const int tool_index = static_cast<int>(tools_.size());
            tools_.push_back({index, tool_index, false});
            const std::string_view id = string_or(cb, "id"), name = string_or(cb, "name");
            out.push_back(chunk(meta, [&](json_writer& w) {
                w.key("tool_calls").begin_array().begin_object().key("index").integer(tool_index);
                w.key("id").string(id).key("type").string("function");
                w.key("function")
                    .begin_object()
                    .key("name")
                    .string(name)
                    .key("arguments")
                    .string("");
                w.end_object().end_object().end_array();
            }));
        }
        // thinking, redacted_thinking, server tools: nothing to show an OpenAI client.
    } else if (type == "content_block_delta") {
        dom::object delta;
        dom::element ie;
        std::int64_t index = 0;
        if (!member_object(ev, "delta", delta) || !member(ev, "index", ie) ||
            !as_integer(ie, index))
            return fail("malformed content_block_delta from the upstream provider", out);
        const std::string_view dt = string_or(delta, "type");
        if (dt == "text_delta") {
            const std::string_view text = string_or(delta, "text");
            if (!text.empty())
                out.push_back(chunk(meta, [&](json_writer& w) { w.key("content").string(text); }));
        } else if (dt == "input_json_delta") {
            const std::string_view partial = string_or(delta, "partial_json");
            auto it = std::find_if(tools_.begin(), tools_.end(),
                                   [&](const tool_block& t) { return t.block_index == index; });
            if (it != tools_.end() && !partial.empty()) {
                it->has_arguments = true;
                out.push_back(tool_delta_chunk(meta, it->tool_index, partial));
            }
        }
        // thinking_delta, signature_delta, citations_delta: no OpenAI equivalent.
    } else if (type == "content_block_stop") {
        dom::element ie;
        std::int64_t index = 0;
        if (!member(ev, "index", ie) || !as_integer(ie, index)) return;
        auto it = std::find_if(tools_.begin(), tools_.end(),
                               [&](const tool_block& t) { return t.block_index == index; });
        // A call without arguments streams no JSON at all; OpenAI clients parse the
        // arguments, and "" is not JSON.
        if (it != tools_.end() && !it->has_arguments) {
            it->has_arguments = true;
            out.push_back(tool_delta_chunk(meta, it->tool_index, "{}"));
        }
    } else if (type == "message_delta") {
        dom::object delta, usage;
        std::string_view stop_reason;
        if (member_object(ev, "usage", usage)) {
            // Cumulative counts; newer API versions repeat the input counts here too.
            dom::element x;
            if (member(usage, "output_tokens", x))
                output_tokens_ = count_of(usage, "output_tokens");
            if (member(usage, "input_tokens", x)) input_tokens_ = count_of(usage, "input_tokens");
            if (member(usage, "cache_read_input_tokens", x))
                cache_read_tokens_ = count_of(usage, "cache_read_input_tokens");
            if (member(usage, "cache_creation_input_tokens", x))
                cache_creation_tokens_ = count_of(usage, "cache_creation_input_tokens");
        }
        if (member_object(ev, "delta", delta) && member_string(delta, "stop_reason", stop_reason))
            out.push_back(chunk(
                meta, [](json_writer&) {}, finish_from_stop_reason(stop_reason)));
    } else if (type == "message_stop") {
        if (include_usage_) {
            json_writer w;
            w.begin_object();
            w.key("id").string(id_);
            w.key("object").string("chat.completion.chunk");
            w.key("created").integer(created_);
            w.key("model").string(model_);
            w.key("choices").begin_array().end_array();
            w.key("usage");
            write_openai_usage(w, input_tokens_, cache_read_tokens_, cache_creation_tokens_,
                               output_tokens_);
            w.end_object();
            out.push_back(sse_data(w.take()));
        }
        out.push_back("data: [DONE]\n\n");
        finished_ = true;
    } else if (type == "error") {
        dom::object err;
        std::string_view message;
        if (member_object(ev, "error", err) && member_string(err, "message", message) &&
            !message.empty())
            fail(std::string(message), out);
        else
            fail("the upstream provider reported an error", out);
    }
    // ping and event types added later: ignored, as Anthropic asks of clients.
}

// =======================================================================================
// 4. Anthropic request -> OpenAI request, OpenAI answer -> Anthropic message

translated messages_to_chat_request(std::string_view anthropic_body,
                                    std::string_view upstream_model) {
    dom::parser parser;
    dom::object req;
    if (!parse_object(parser, anthropic_body, req))
        return {{}, "request body must be a JSON object"};
    dom::array messages;
    if (!member_array(req, "messages", messages)) return {{}, "messages: must be an array"};

    json_writer w;
    w.begin_object();
    w.key("model").string(upstream_model);
    w.key("messages").begin_array();

    dom::element e;
    if (member(req, "system", e)) {
        std::string_view s;
        dom::array blocks;
        std::string system;
        if (e.get(s) == SUCCESS) {
            system = s;
        } else if (e.get(blocks) == SUCCESS) {
            for (dom::element b : blocks) {
                dom::object bo;
                std::string_view text;
                if (b.get(bo) != SUCCESS || string_or(bo, "type") != "text" ||
                    !member_string(bo, "text", text))
                    return {{}, "system: blocks must be text"};
                if (!system.empty()) system += "\n\n";
                system += text;
            }
        } else {
            return {{}, "system: must be a string or an array of text blocks"};
        }
        if (!system.empty())
            w.begin_object()
                .key("role")
                .string("system")
                .key("content")
                .string(system)
                .end_object();
    }

    for (dom::element m : messages) {
        dom::object mo;
        std::string_view role;
        dom::element content;
        if (m.get(mo) != SUCCESS || !member_string(mo, "role", role) ||
            !member(mo, "content", content))
            return {{}, "messages: each message needs a role and content"};
        std::string error;
        if (role == "user")
            error = anthropic_user_message(content, w);
        else if (role == "assistant")
            error = anthropic_assistant_message(content, w);
        else
            error = "messages: role '" + std::string(role) + "' is not supported";
        if (!error.empty()) return {{}, std::move(error)};
    }
    w.end_array();

    if (member(req, "max_tokens", e)) {
        std::int64_t n = 0;
        if (!as_integer(e, n) || n < 1) return {{}, "max_tokens: must be a positive integer"};
        w.key("max_tokens").integer(n);
    }
    for (const std::string_view k : {"temperature", "top_p"}) {
        if (!member(req, k, e)) continue;
        if (!e.is_number()) return {{}, std::string(k) + ": must be a number"};
        write_element(w.key(k), e);
    }
    dom::array stops;
    if (member_array(req, "stop_sequences", stops)) {
        w.key("stop").begin_array();
        for (dom::element x : stops) {
            std::string_view s;
            if (x.get(s) != SUCCESS) return {{}, "stop_sequences: must be strings"};
            w.string(s);
        }
        w.end_array();
    }

    dom::array tools;
    std::size_t tool_count = 0;
    if (member_array(req, "tools", tools)) {
        w.key("tools").begin_array();
        for (dom::element t : tools) {
            dom::object to;
            std::string_view name, description;
            if (t.get(to) != SUCCESS || !member_string(to, "name", name))
                return {{}, "tools: each tool needs a name"};
            const std::string_view tt = string_or(to, "type", "custom");
            if (tt != "custom")  // server tools (web search, bash...) run at Anthropic only
                return {{},
                        "tools: tool type '" + std::string(tt) +
                            "' is not supported by this model's provider"};
            w.begin_object().key("type").string("function").key("function").begin_object();
            w.key("name").string(name);
            if (member_string(to, "description", description))
                w.key("description").string(description);
            dom::element schema;
            if (member(to, "input_schema", schema)) write_element(w.key("parameters"), schema);
            w.end_object().end_object();
            ++tool_count;
        }
        w.end_array();
    }
    dom::object choice;
    if (tool_count > 0 && member_object(req, "tool_choice", choice)) {
        const std::string_view ct = string_or(choice, "type");
        if (ct == "auto") {
            w.key("tool_choice").string("auto");
        } else if (ct == "any") {
            w.key("tool_choice").string("required");
        } else if (ct == "none") {
            w.key("tool_choice").string("none");
        } else if (ct == "tool") {
            std::string_view name;
            if (!member_string(choice, "name", name))
                return {{}, "tool_choice: type tool needs a name"};
            w.key("tool_choice").begin_object().key("type").string("function");
            w.key("function").begin_object().key("name").string(name).end_object().end_object();
        } else {
            return {{}, "tool_choice: type must be auto, any, tool or none"};
        }
        if (member(choice, "disable_parallel_tool_use", e)) {
            bool b = false;
            if (e.get(b) == SUCCESS && b && ct != "none")
                w.key("parallel_tool_calls").boolean(false);
        }
    }

    if (member(req, "stream", e)) {
        bool b = false;
        if (e.get(b) != SUCCESS) return {{}, "stream: must be a boolean"};
        w.key("stream").boolean(b);
        // The gateway bills from the final usage chunk, so always ask for it.
        if (b)
            w.key("stream_options").begin_object().key("include_usage").boolean(true).end_object();
    }
    dom::object metadata;
    std::string_view user;
    if (member_object(req, "metadata", metadata) && member_string(metadata, "user_id", user))
        w.key("user").string(user);
    w.end_object();
    return {w.take(), {}};
}

std::string chat_to_messages_response(std::string_view openai_body, std::string_view client_model) {
    dom::parser parser;
    dom::parser args_parser;
    dom::object resp;
    if (!parse_object(parser, openai_body, resp)) return {};

    json_writer content;
    content.begin_array();
    std::string_view finish;
    dom::array choices;
    dom::element first;
    dom::object choice, msg;
    if (member_array(resp, "choices", choices) && choices.at(0).get(first) == SUCCESS &&
        first.get(choice) == SUCCESS) {
        member_string(choice, "finish_reason", finish);
        if (member_object(choice, "message", msg)) {
            dom::element c;
            std::string text;
            if (member(msg, "content", c)) {
                std::string_view s;
                dom::array parts;
                if (c.get(s) == SUCCESS) {
                    text = s;
                } else if (c.get(parts) == SUCCESS) {
                    for (dom::element p : parts) {
                        dom::object po;
                        if (p.get(po) == SUCCESS && string_or(po, "type") == "text")
                            text += string_or(po, "text");
                    }
                }
            }
            if (!text.empty())
                content.begin_object()
                    .key("type")
                    .string("text")
                    .key("text")
                    .string(text)
                    .end_object();
            dom::array calls;
            if (member_array(msg, "tool_calls", calls)) {
                std::size_t n = 0;
                for (dom::element call : calls) {
                    dom::object co, fn;
                    if (call.get(co) != SUCCESS) continue;
                    // A default dom::object has no document behind it: never look into one.
                    const bool has_fn = member_object(co, "function", fn);
                    std::string_view id = string_or(co, "id");
                    std::string fallback_id;
                    if (id.empty()) {
                        fallback_id = "toolu_tollgate_" + std::to_string(n);
                        id = fallback_id;
                    }
                    ++n;
                    content.begin_object().key("type").string("tool_use").key("id").string(id);
                    content.key("name").string(has_fn ? string_or(fn, "name") : std::string_view{});
                    content.key("input");
                    // Anthropic's input is an object; arguments a model got wrong (not a
                    // JSON object) cannot be represented and become {}.
                    dom::element input;
                    if (has_fn && parse_element(args_parser, string_or(fn, "arguments"), input) &&
                        input.is_object())
                        write_element(content, input);
                    else
                        content.begin_object().end_object();
                    content.end_object();
                }
            }
        }
    }
    content.end_array();

    dom::object usage, details;
    std::int64_t prompt = 0, completion = 0, cached = 0;
    if (member_object(resp, "usage", usage)) {
        prompt = count_of(usage, "prompt_tokens");
        completion = count_of(usage, "completion_tokens");
        if (member_object(usage, "prompt_tokens_details", details))
            cached = std::min(count_of(details, "cached_tokens"), prompt);
    }

    json_writer w;
    w.begin_object();
    w.key("id").string(string_or(resp, "id", "msg_tollgate"));
    w.key("type").string("message");
    w.key("role").string("assistant");
    w.key("model").string(client_model);
    w.key("content").raw(content.take());
    w.key("stop_reason");
    if (finish.empty())
        w.string("end_turn");
    else
        w.string(stop_reason_from_finish(finish));
    w.key("stop_sequence").null();
    w.key("usage").begin_object();
    // Anthropic's input_tokens excludes cache reads, which it reports separately.
    w.key("input_tokens").integer(prompt - cached);
    w.key("cache_creation_input_tokens").integer(0);
    w.key("cache_read_input_tokens").integer(cached);
    w.key("output_tokens").integer(completion);
    w.end_object();
    w.end_object();
    return w.take();
}

// =======================================================================================
// 4b. OpenAI chunk stream -> Anthropic events

chat_stream_to_messages::chat_stream_to_messages(std::string client_model)
    : parser_(std::make_unique<dom::parser>()), model_(std::move(client_model)) {}

chat_stream_to_messages::~chat_stream_to_messages() = default;
chat_stream_to_messages::chat_stream_to_messages(chat_stream_to_messages&&) noexcept = default;
chat_stream_to_messages& chat_stream_to_messages::operator=(chat_stream_to_messages&&) noexcept =
    default;

void chat_stream_to_messages::start(std::vector<std::string>& out) {
    if (started_) return;
    started_ = true;
    if (id_.empty()) id_ = "msg_tollgate";
    json_writer w;
    w.begin_object().key("type").string("message_start").key("message").begin_object();
    w.key("id").string(id_);
    w.key("type").string("message");
    w.key("role").string("assistant");
    w.key("model").string(model_);
    w.key("content").begin_array().end_array();
    w.key("stop_reason").null();
    w.key("stop_sequence").null();
    // OpenAI reports usage only at the end; message_delta carries the real counts.
    w.key("usage")
        .begin_object()
        .key("input_tokens")
        .integer(0)
        .key("output_tokens")
        .integer(0)
        .end_object();
    w.end_object().end_object();
    out.push_back(sse_event("message_start", w.take()));
}

void chat_stream_to_messages::close_block(std::vector<std::string>& out) {
    if (open_ == block_kind::none) return;
    json_writer w;
    w.begin_object()
        .key("type")
        .string("content_block_stop")
        .key("index")
        .integer(open_index_)
        .end_object();
    out.push_back(sse_event("content_block_stop", w.take()));
    open_ = block_kind::none;
    open_index_ = -1;
}

void chat_stream_to_messages::fail(std::string message, std::vector<std::string>& out) {
    failed_ = true;
    error_text_ = std::move(message);
    json_writer w;
    w.begin_object().key("type").string("error").key("error").begin_object();
    w.key("type").string("api_error").key("message").string(error_text_);
    w.end_object().end_object();
    out.push_back(sse_event("error", w.take()));
}

void chat_stream_to_messages::on_data(std::string_view data, std::vector<std::string>& out) {
    if (finished_ || failed_ || !parser_) return;
    const auto b = data.find_first_not_of(" \t\r\n");
    const auto e = data.find_last_not_of(" \t\r\n");
    const std::string_view trimmed =
        b == std::string_view::npos ? std::string_view{} : data.substr(b, e - b + 1);

    if (trimmed == "[DONE]") {
        start(out);
        close_block(out);
        json_writer w;
        w.begin_object().key("type").string("message_delta").key("delta").begin_object();
        w.key("stop_reason")
            .string(stop_reason_.empty() ? std::string_view("end_turn") : stop_reason_);
        w.key("stop_sequence").null().end_object();
        w.key("usage").begin_object();
        if (usage_seen_) {
            w.key("input_tokens").integer(prompt_tokens_ - cached_tokens_);
            w.key("cache_read_input_tokens").integer(cached_tokens_);
        }
        w.key("output_tokens").integer(completion_tokens_).end_object();
        w.end_object();
        out.push_back(sse_event("message_delta", w.take()));
        out.push_back(sse_event("message_stop", R"({"type":"message_stop"})"));
        finished_ = true;
        return;
    }

    dom::object chunk;
    if (!parse_object(*parser_, trimmed, chunk))
        return fail("malformed chunk from the upstream provider", out);
    dom::element err;
    if (member(chunk, "error", err)) {
        dom::object eo;
        std::string_view message;
        if (err.get(eo) == SUCCESS && member_string(eo, "message", message) && !message.empty())
            return fail(std::string(message), out);
        if (err.get(message) == SUCCESS && !message.empty()) return fail(std::string(message), out);
        return fail("the upstream provider reported an error", out);
    }

    if (!started_) {
        std::string_view id;
        if (member_string(chunk, "id", id)) id_ = id;
        start(out);
    }

    dom::object usage, details;
    if (member_object(chunk, "usage", usage)) {
        usage_seen_ = true;
        prompt_tokens_ = count_of(usage, "prompt_tokens");
        completion_tokens_ = count_of(usage, "completion_tokens");
        cached_tokens_ = 0;
        if (member_object(usage, "prompt_tokens_details", details))
            cached_tokens_ = std::min(count_of(details, "cached_tokens"), prompt_tokens_);
    }

    dom::array choices;
    if (!member_array(chunk, "choices", choices)) return;  // e.g. the usage-only chunk
    for (dom::element c : choices) {
        dom::object co, delta;
        if (c.get(co) != SUCCESS) continue;
        if (member_object(co, "delta", delta)) {
            std::string_view text;
            if (member_string(delta, "content", text) && !text.empty()) {
                if (open_ != block_kind::text) {
                    close_block(out);
                    open_ = block_kind::text;
                    open_index_ = next_index_++;
                    json_writer w;
                    w.begin_object()
                        .key("type")
                        .string("content_block_start")
                        .key("index")
                        .integer(open_index_);
                    w.key("content_block")
                        .begin_object()
                        .key("type")
                        .string("text")
                        .key("text")
                        .string("");
                    w.end_object().end_object();
                    out.push_back(sse_event("content_block_start", w.take()));
                }
                json_writer w;
                w.begin_object()
                    .key("type")
                    .string("content_block_delta")
                    .key("index")
                    .integer(open_index_);
                w.key("delta")
                    .begin_object()
                    .key("type")
                    .string("text_delta")
                    .key("text")
                    .string(text);
                w.end_object().end_object();
                out.push_back(sse_event("content_block_delta", w.take()));
            }
            dom::array calls;
            if (member_array(delta, "tool_calls", calls)) {
                for (dom::element call : calls) {
                    dom::object tc, fn;
                    if (call.get(tc) != SUCCESS) continue;
                    std::int64_t tool_index = 0;
                    dom::element ie;
                    if (member(tc, "index", ie)) as_integer(ie, tool_index);
                    // A default dom::object has no document behind it: never look into one.
                    const bool has_fn = member_object(tc, "function", fn);
                    auto it = std::find_if(tools_.begin(), tools_.end(), [&](const tool_block& t) {
                        return t.tool_index == tool_index;
                    });
                    std::int64_t block_index = 0;
                    if (it == tools_.end()) {
                        close_block(out);
                        block_index = next_index_++;
                        tools_.push_back({tool_index, block_index});
                        open_ = block_kind::tool;
                        open_index_ = block_index;
                        std::string_view id = string_or(tc, "id");
                        std::string fallback_id;
                        if (id.empty()) {
                            fallback_id = "toolu_tollgate_" + std::to_string(block_index);
                            id = fallback_id;
                        }
                        json_writer w;
                        w.begin_object()
                            .key("type")
                            .string("content_block_start")
                            .key("index")
                            .integer(block_index);
                        w.key("content_block").begin_object().key("type").string("tool_use");
                        w.key("id").string(id).key("name").string(has_fn ? string_or(fn, "name")
                                                                         : std::string_view{});
                        w.key("input").begin_object().end_object();
                        w.end_object().end_object();
                        out.push_back(sse_event("content_block_start", w.take()));
                    } else {
                        // OpenAI and vLLM stream one call at a time; should a server
                        // interleave, the piece still goes to its own block's index.
                        block_index = it->block_index;
                    }
                    const std::string_view arguments =
                        has_fn ? string_or(fn, "arguments") : std::string_view{};
                    if (!arguments.empty()) {
                        json_writer w;
                        w.begin_object()
                            .key("type")
                            .string("content_block_delta")
                            .key("index")
                            .integer(block_index);
                        w.key("delta").begin_object().key("type").string("input_json_delta");
                        w.key("partial_json").string(arguments).end_object().end_object();
                        out.push_back(sse_event("content_block_delta", w.take()));
                    }
                }
            }
        }
        std::string_view finish;
        if (member_string(co, "finish_reason", finish) && !finish.empty()) {
            stop_reason_ = stop_reason_from_finish(finish);
            close_block(out);  // message_delta waits for [DONE]: the usage chunk comes first
        }
    }
}

}  // namespace tollgate::upstream::anthropic
