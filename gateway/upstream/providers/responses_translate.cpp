#include "gateway/upstream/providers/responses_translate.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "gateway/core/json_text.hpp"
#include "gateway/core/json_writer.hpp"
#include "gateway/upstream/providers/json_element.hpp"

namespace tollgate::upstream::responses {

namespace {

using simdjson::SUCCESS;
namespace dom = simdjson::dom;

// ---------------------------------------------------------------------------------------
// Output through core::json_writer; parsed values are re-serialised by write_element.
using core::json_writer;
using upstream::write_element;

// The human-readable message of an upstream error member (object or string).
std::string error_message_of(dom::element err) {
    dom::object eo;
    std::string_view message;
    if (err.get(eo) == SUCCESS && member_string(eo, "message", message) && !message.empty())
        return std::string(message);
    if (err.get(message) == SUCCESS && !message.empty()) return std::string(message);
    return "the upstream provider reported an error";
}

// =======================================================================================
// 1. Responses request -> chat request

translated invalid(std::string message) {
    return {{}, std::move(message), error_kind::invalid_request};
}
translated unsupported(std::string message) {
    return {{}, std::move(message), error_kind::unsupported_on_target};
}

constexpr std::string_view not_supported = " not supported by this model's provider";

// A chat content part. Views point into the request's DOM, alive for the whole call.
struct chat_part {
    bool image = false;
    std::string_view text;         // text part
    std::string_view url, detail;  // image part
};

struct chat_call {
    std::string_view id, name, arguments;
};

struct chat_message {
    std::string_view role;  // system | user | assistant | tool
    std::vector<chat_part> content;
    std::vector<chat_call> calls;   // assistant
    std::string_view tool_call_id;  // tool
};

// Message content (or a function_call_output's output): a string, or an array of
// Responses content parts. `role` is the chat role the parts end up in: only user
// messages can carry images in chat completions.
translated read_parts(dom::element content, std::string_view role, const std::string& where,
                      std::vector<chat_part>& out) {
    std::string_view s;
    if (content.get(s) == SUCCESS) {
        out.push_back({false, s, {}, {}});
        return {};
    }
    dom::array parts;
    if (content.get(parts) != SUCCESS)
        return invalid(where + ": must be a string or an array of content parts");
    std::size_t i = 0;
    for (dom::element p : parts) {
        const std::string at = where + "[" + std::to_string(i++) + "]";
        dom::object po;
        std::string_view type;
        if (p.get(po) != SUCCESS) return invalid(at + ": must be an object");
        if (!member_string(po, "type", type)) return invalid(at + ".type: must be a string");
        std::string_view text;
        if (type == "input_text" || type == "output_text") {
            // output_text comes back when a client replays an earlier answer as input.
            if (!member_string(po, "text", text)) return invalid(at + ".text: must be a string");
            out.push_back({false, text, {}, {}});
        } else if (type == "refusal") {
            if (!member_string(po, "refusal", text))
                return invalid(at + ".refusal: must be a string");
            out.push_back({false, text, {}, {}});
        } else if (type == "input_image") {
            std::string_view url;
            dom::element file_id;
            if (!member_string(po, "image_url", url)) {
                if (member(po, "file_id", file_id))
                    return unsupported(at + ".file_id: images uploaded as files are" +
                                       std::string(not_supported) + " (send image_url)");
                return invalid(at + ".image_url: must be a string");
            }
            if (role != "user")
                return unsupported(at + ": images in " + std::string(role) + " messages are" +
                                   std::string(not_supported));
            out.push_back({true, {}, url, string_or(po, "detail")});
        } else if (type == "input_file") {
            return unsupported(at + ": input_file parts are" + std::string(not_supported));
        } else {
            return unsupported(at + ": content part type '" + std::string(type) + "' is" +
                               std::string(not_supported));
        }
    }
    return {};
}

// One input item appended to `msgs` (function calls may join the last message).
translated read_item(dom::element item, const std::string& at, std::vector<chat_message>& msgs) {
    dom::object o;
    if (item.get(o) != SUCCESS) return invalid(at + ": must be an object");
    std::string_view type;
    dom::element e;
    if (member(o, "type", e)) {
        if (e.get(type) != SUCCESS) return invalid(at + ".type: must be a string");
    } else if (member(o, "role", e)) {
        type = "message";  // the "easy input message" form: {"role", "content"}
    } else {
        return invalid(at + ": needs a type or a role");
    }

    if (type == "message") {
        std::string_view role;
        if (!member_string(o, "role", role)) return invalid(at + ".role: must be a string");
        chat_message m;
        if (role == "user" || role == "assistant" || role == "system")
            m.role = role;
        else if (role == "developer")  // chat servers beyond OpenAI know no developer role
            m.role = "system";
        else
            return invalid(at + ".role: must be user, assistant, system or developer");
        dom::element content;
        if (!member(o, "content", content)) return invalid(at + ".content: is required");
        translated r = read_parts(content, m.role, at + ".content", m.content);
        if (!r.ok()) return r;
        msgs.push_back(std::move(m));
        return {};
    }

    if (type == "function_call") {
        std::string_view call_id, name, arguments = "{}";
        if (!member_string(o, "call_id", call_id))
            return invalid(at + ".call_id: must be a string");
        if (!member_string(o, "name", name)) return invalid(at + ".name: must be a string");
        if (member(o, "arguments", e) && e.get(arguments) != SUCCESS)
            return invalid(at + ".arguments: must be a string");
        // Chat completions wants all of a turn's calls in one assistant message, after
        // that turn's text: consecutive calls, and calls right after the assistant's
        // message, join it.
        if (msgs.empty() || msgs.back().role != "assistant") {
            chat_message m;
            m.role = "assistant";
            msgs.push_back(std::move(m));
        }
        msgs.back().calls.push_back({call_id, name, arguments});
        return {};
    }

    if (type == "function_call_output") {
        chat_message m;
        m.role = "tool";
        if (!member_string(o, "call_id", m.tool_call_id))
            return invalid(at + ".call_id: must be a string");
        dom::element output;
        if (!member(o, "output", output)) return invalid(at + ".output: is required");
        translated r = read_parts(output, m.role, at + ".output", m.content);
        if (!r.ok()) return r;
        msgs.push_back(std::move(m));
        return {};
    }

    if (type == "item_reference")
        return unsupported(at + ": item_reference items (stored items) are" +
                           std::string(not_supported) + " (send the items themselves)");
    if (type == "reasoning")
        return unsupported(at + ": reasoning items are" + std::string(not_supported));
    // Built-in tool calls and their outputs (web_search_call, computer_call_output,
    // mcp_call...) and anything newer.
    return unsupported(at + ": input item type '" + std::string(type) + "' is" +
                       std::string(not_supported));
}

// Chat content: a single text as a string (what every server accepts), anything else as
// an array of parts. With tool calls, no text is written as null, as OpenAI does.
void write_content(json_writer& w, const std::vector<chat_part>& parts, bool has_calls) {
    const bool no_text =
        parts.empty() || (parts.size() == 1 && !parts[0].image && parts[0].text.empty());
    if (no_text && has_calls) {
        w.null();
        return;
    }
    if (parts.empty()) {
        w.string("");
        return;
    }
    if (parts.size() == 1 && !parts[0].image) {
        w.string(parts[0].text);
        return;
    }
    w.begin_array();
    for (const chat_part& p : parts) {
        w.begin_object();
        if (p.image) {
            w.key("type").string("image_url").key("image_url").begin_object();
            w.key("url").string(p.url);
            if (!p.detail.empty()) w.key("detail").string(p.detail);
            w.end_object();
        } else {
            w.key("type").string("text").key("text").string(p.text);
        }
        w.end_object();
    }
    w.end_array();
}

void write_message(json_writer& w, const chat_message& m) {
    w.begin_object().key("role").string(m.role);
    if (m.role == "tool") w.key("tool_call_id").string(m.tool_call_id);
    w.key("content");
    write_content(w, m.content, !m.calls.empty());
    if (!m.calls.empty()) {
        w.key("tool_calls").begin_array();
        for (const chat_call& c : m.calls) {
            w.begin_object().key("id").string(c.id).key("type").string("function");
            w.key("function").begin_object().key("name").string(c.name);
            w.key("arguments").string(c.arguments).end_object().end_object();
        }
        w.end_array();
    }
    w.end_object();
}

// Fields that need state or machinery only OpenAI's servers have. Checked first, so that
// such a request is refused for that reason rather than for whatever else it lacks (an
// input relying on previous_response_id may look incomplete on its own).
translated refuse_stateful_fields(dom::object req) {
    dom::element e;
    if (member(req, "previous_response_id", e))
        return unsupported("previous_response_id: stored responses are" +
                           std::string(not_supported) + " (send the whole conversation in input)");
    if (member(req, "conversation", e))
        return unsupported("conversation: stored conversations are" + std::string(not_supported));
    if (member(req, "prompt", e))
        return unsupported("prompt: stored prompts are" + std::string(not_supported));
    if (member(req, "background", e)) {
        bool b = false;
        if (e.get(b) != SUCCESS) return invalid("background: must be a boolean");
        if (b)
            return unsupported("background: background responses are" + std::string(not_supported));
    }
    if (member(req, "include", e)) {
        dom::array a;
        if (e.get(a) != SUCCESS) return invalid("include: must be an array");
        dom::element first;
        if (a.at(0).get(first) == SUCCESS) {  // an empty list asks for nothing extra
            std::string_view s;
            if (first.get(s) != SUCCESS) return invalid("include: entries must be strings");
            return unsupported("include: '" + std::string(s) + "' is" + std::string(not_supported));
        }
    }
    if (member(req, "truncation", e)) {
        std::string_view s;
        if (e.get(s) != SUCCESS || (s != "auto" && s != "disabled"))
            return invalid("truncation: must be auto or disabled");
        if (s == "auto")  // the default, disabled, is what a chat server does anyway
            return unsupported("truncation: auto is" + std::string(not_supported));
    }
    // store is ignored on purpose: true is the API's default, and the gateway stores
    // nothing whatever it says, so honouring false is free and refusing true would refuse
    // nearly every client.
    return {};
}

}  // namespace

translated responses_to_chat_request(std::string_view responses_body,
                                     std::string_view upstream_model) {
    dom::parser parser;
    dom::object req;
    if (!parse_object(parser, responses_body, req))
        return invalid("request body must be a JSON object");
    if (translated r = refuse_stateful_fields(req); !r.ok()) return r;

    dom::element e;
    std::vector<chat_message> msgs;
    if (member(req, "instructions", e)) {
        std::string_view s;
        if (e.get(s) != SUCCESS) return invalid("instructions: must be a string");
        if (!s.empty()) {
            chat_message m;
            m.role = "system";
            m.content.push_back({false, s, {}, {}});
            msgs.push_back(std::move(m));
        }
    }
    if (!member(req, "input", e)) return invalid("input: is required");
    std::string_view input_text;
    dom::array items;
    if (e.get(input_text) == SUCCESS) {
        chat_message m;
        m.role = "user";
        m.content.push_back({false, input_text, {}, {}});
        msgs.push_back(std::move(m));
    } else if (e.get(items) == SUCCESS) {
        std::size_t i = 0;
        for (dom::element item : items) {
            translated r = read_item(item, "input[" + std::to_string(i++) + "]", msgs);
            if (!r.ok()) return r;
        }
    } else {
        return invalid("input: must be a string or an array of items");
    }
    if (msgs.empty()) return invalid("input: must not be empty");

    json_writer w;
    w.begin_object();
    w.key("model").string(upstream_model);
    w.key("messages").begin_array();
    for (const chat_message& m : msgs) write_message(w, m);
    w.end_array();

    // Tools. Chat servers refuse an empty tools array, and tool_choice or
    // parallel_tool_calls without tools: those are only sent along with a tool.
    std::size_t tool_count = 0;
    if (member(req, "tools", e)) {
        dom::array tools;
        if (e.get(tools) != SUCCESS) return invalid("tools: must be an array");
        std::size_t i = 0;
        for (dom::element t : tools) {
            const std::string at = "tools[" + std::to_string(i++) + "]";
            dom::object to;
            std::string_view type, name, description;
            if (t.get(to) != SUCCESS) return invalid(at + ": must be an object");
            if (!member_string(to, "type", type)) return invalid(at + ".type: must be a string");
            if (type != "function")  // web_search, file_search, mcp...: OpenAI runs those
                return unsupported(at + ": tool type '" + std::string(type) + "' is" +
                                   std::string(not_supported) + " (only function tools are)");
            if (!member_string(to, "name", name)) return invalid(at + ".name: must be a string");
            if (tool_count == 0) w.key("tools").begin_array();
            w.begin_object().key("type").string("function").key("function").begin_object();
            w.key("name").string(name);
            dom::element x;
            if (member(to, "description", x)) {
                if (x.get(description) != SUCCESS)
                    return invalid(at + ".description: must be a string");
                w.key("description").string(description);
            }
            if (member(to, "parameters", x)) {
                if (!x.is_object()) return invalid(at + ".parameters: must be an object");
                write_element(w.key("parameters"), x);
            }
            if (member(to, "strict", x)) {
                bool strict = false;
                if (x.get(strict) != SUCCESS) return invalid(at + ".strict: must be a boolean");
                w.key("strict").boolean(strict);
            }
            w.end_object().end_object();
            ++tool_count;
        }
        if (tool_count > 0) w.end_array();
    }
    if (member(req, "tool_choice", e)) {
        std::string_view s;
        dom::object co;
        if (e.get(s) == SUCCESS) {
            if (s != "auto" && s != "none" && s != "required")
                return invalid("tool_choice: must be auto, none, required or an object");
            if (tool_count > 0) w.key("tool_choice").string(s);
        } else if (e.get(co) == SUCCESS) {
            std::string_view type, name;
            if (!member_string(co, "type", type))
                return invalid("tool_choice.type: must be a string");
            if (type != "function")  // a built-in tool, allowed_tools, mcp, custom
                return unsupported("tool_choice: type '" + std::string(type) + "' is" +
                                   std::string(not_supported));
            if (!member_string(co, "name", name))
                return invalid("tool_choice.name: must be a string");
            if (tool_count > 0) {
                w.key("tool_choice").begin_object().key("type").string("function");
                w.key("function").begin_object().key("name").string(name).end_object();
                w.end_object();
            }
        } else {
            return invalid("tool_choice: must be auto, none, required or an object");
        }
    }
    if (member(req, "parallel_tool_calls", e)) {
        bool b = true;
        if (e.get(b) != SUCCESS) return invalid("parallel_tool_calls: must be a boolean");
        if (tool_count > 0) w.key("parallel_tool_calls").boolean(b);
    }

    // Structured output and verbosity live in `text`.
    if (member(req, "text", e)) {
        dom::object text, format;
        if (e.get(text) != SUCCESS) return invalid("text: must be an object");
        dom::element x;
        if (member(text, "format", x)) {
            std::string_view type;
            if (x.get(format) != SUCCESS) return invalid("text.format: must be an object");
            if (!member_string(format, "type", type))
                return invalid("text.format.type: must be a string");
            if (type == "json_object") {
                w.key("response_format").begin_object().key("type").string("json_object");
                w.end_object();
            } else if (type == "json_schema") {
                std::string_view name, description;
                dom::element schema, y;
                if (!member_string(format, "name", name))
                    return invalid("text.format.name: must be a string");
                if (!member(format, "schema", schema) || !schema.is_object())
                    return invalid("text.format.schema: must be an object");
                w.key("response_format").begin_object().key("type").string("json_schema");
                w.key("json_schema").begin_object().key("name").string(name);
                if (member(format, "description", y)) {
                    if (y.get(description) != SUCCESS)
                        return invalid("text.format.description: must be a string");
                    w.key("description").string(description);
                }
                write_element(w.key("schema"), schema);
                if (member(format, "strict", y)) {
                    bool strict = false;
                    if (y.get(strict) != SUCCESS)
                        return invalid("text.format.strict: must be a boolean");
                    w.key("strict").boolean(strict);
                }
                w.end_object().end_object();
            } else if (type != "text") {  // text is the default: nothing to send
                return unsupported("text.format: type '" + std::string(type) + "' is" +
                                   std::string(not_supported));
            }
        }
        if (member(text, "verbosity", x)) {
            std::string_view verbosity;
            if (x.get(verbosity) != SUCCESS) return invalid("text.verbosity: must be a string");
            w.key("verbosity").string(verbosity);  // chat completions' name for it
        }
    }

    if (member(req, "reasoning", e)) {
        dom::object reasoning;
        if (e.get(reasoning) != SUCCESS) return invalid("reasoning: must be an object");
        dom::element x;
        // Summaries are produced by OpenAI's servers; a chat answer has none to give.
        for (const std::string_view k : {"summary", "generate_summary"})
            if (member(reasoning, k, x))
                return unsupported("reasoning." + std::string(k) + ": reasoning summaries are" +
                                   std::string(not_supported));
        if (member(reasoning, "effort", x)) {
            std::string_view effort;
            if (x.get(effort) != SUCCESS) return invalid("reasoning.effort: must be a string");
            w.key("reasoning_effort").string(effort);
        }
    }

    if (member(req, "max_output_tokens", e)) {
        std::int64_t n = 0;
        if (!as_integer(e, n) || n < 1)
            return invalid("max_output_tokens: must be a positive integer");
        // max_tokens rather than max_completion_tokens: every OpenAI-compatible server
        // accepts it (and the chat -> Messages translator reads both).
        w.key("max_tokens").integer(n);
    }
    for (const std::string_view k : {"temperature", "top_p"}) {
        if (!member(req, k, e)) continue;
        if (!e.is_number()) return invalid(std::string(k) + ": must be a number");
        write_element(w.key(k), e);
    }
    if (member(req, "stream", e)) {
        bool b = false;
        if (e.get(b) != SUCCESS) return invalid("stream: must be a boolean");
        w.key("stream").boolean(b);
        // The final Response carries usage, and the gateway bills from it: always ask.
        if (b)
            w.key("stream_options").begin_object().key("include_usage").boolean(true).end_object();
    }
    if (member(req, "user", e)) {
        std::string_view user;
        if (e.get(user) != SUCCESS) return invalid("user: must be a string");
        w.key("user").string(user);
    }
    // metadata is dropped: it annotates a stored response, and the gateway stores none.
    w.end_object();
    translated out{w.take(), {}, error_kind::none, {}};
    // What the Response echoes: the settings as sent (types were checked above, or are
    // opaque to the translation: metadata, truncation).
    response_echo& echo = out.echo;
    const std::pair<std::string_view, std::string*> echoed[] = {
        {"instructions", &echo.instructions},
        {"max_output_tokens", &echo.max_output_tokens},
        {"metadata", &echo.metadata},
        {"parallel_tool_calls", &echo.parallel_tool_calls},
        {"reasoning", &echo.reasoning},
        {"temperature", &echo.temperature},
        {"text", &echo.text},
        {"tool_choice", &echo.tool_choice},
        {"tools", &echo.tools},
        {"top_p", &echo.top_p},
        {"truncation", &echo.truncation},
        {"user", &echo.user},
    };
    for (const auto& [k, field] : echoed) {
        if (!member(req, k, e)) continue;
        json_writer v;
        write_element(v, e);
        *field = v.take();
    }
    return out;
}

// =======================================================================================
// 2. and 3. Response objects: shared writers

namespace {

using detail::item_status;
using detail::output_item;
using detail::output_part;
using detail::usage_counts;

struct response_head {
    std::string_view id, model;
    std::int64_t created;
    const response_echo& echo;
};

std::string_view status_name(item_status s) {
    switch (s) {
        case item_status::completed:
            return "completed";
        case item_status::incomplete:
            return "incomplete";
        case item_status::in_progress:
            break;
    }
    return "in_progress";
}

// "resp_abc" -> "abc": item ids are msg_abc_0, fc_abc_1... unique within the response
// and the same for an answer and the stream of the same content.
std::string id_base(std::string_view response_id) {
    if (response_id.starts_with("resp_")) response_id.remove_prefix(5);
    return response_id.empty() ? std::string("tollgate") : std::string(response_id);
}

std::string item_id(std::string_view prefix, const std::string& base, std::size_t index) {
    std::string id(prefix);
    id += '_';
    id += base;
    id += '_';
    id += std::to_string(index);
    return id;
}

// finish_reason -> incomplete_details.reason; empty when the response is complete.
std::string_view incomplete_reason(std::string_view finish_reason) {
    if (finish_reason == "length") return "max_output_tokens";
    if (finish_reason == "content_filter") return "content_filter";
    return {};
}

usage_counts read_usage(dom::object u) {
    usage_counts c;
    c.seen = true;
    c.input = count_of(u, "prompt_tokens");
    c.output = count_of(u, "completion_tokens");
    dom::object d;
    if (member_object(u, "prompt_tokens_details", d))
        c.cached = std::min(count_of(d, "cached_tokens"), c.input);
    if (member_object(u, "completion_tokens_details", d))
        c.reasoning = std::min(count_of(d, "reasoning_tokens"), c.output);
    return c;
}

void write_part(json_writer& w, bool refusal, std::string_view text) {
    w.begin_object();
    if (refusal) {
        w.key("type").string("refusal").key("refusal").string(text);
    } else {
        w.key("type").string("output_text");
        w.key("annotations").empty_array();
        w.key("logprobs").empty_array();
        w.key("text").string(text);
    }
    w.end_object();
}

void write_item(json_writer& w, const output_item& it) {
    w.begin_object();
    w.key("id").string(it.id);
    if (it.function_call) {
        w.key("type").string("function_call");
        w.key("status").string(status_name(it.status));
        w.key("arguments").string(it.arguments);
        w.key("call_id").string(it.call_id);
        w.key("name").string(it.name);
    } else {
        w.key("type").string("message");
        w.key("status").string(status_name(it.status));
        w.key("role").string("assistant");
        w.key("content").begin_array();
        for (const output_part& p : it.parts) write_part(w, p.refusal, p.text);
        w.end_array();
    }
    w.end_object();
}

void write_usage(json_writer& w, const usage_counts& u) {
    if (!u.seen) {
        w.null();
        return;
    }
    w.begin_object();
    w.key("input_tokens").integer(u.input);
    w.key("input_tokens_details").begin_object().key("cached_tokens").integer(u.cached);
    w.end_object();
    w.key("output_tokens").integer(u.output);
    w.key("output_tokens_details").begin_object().key("reasoning_tokens").integer(u.reasoning);
    w.end_object();
    w.key("total_tokens").integer(u.input + u.output);
    w.end_object();
}

// A Response object, echoing the request's settings (the API's defaults where the
// request set none).
void write_response(json_writer& w, const response_head& h, std::string_view status,
                    const std::vector<output_item>& items, std::string_view incomplete,
                    std::string_view error_message, const usage_counts& usage) {
    const response_echo& e = h.echo;
    // `key`: the echoed value, or what `otherwise` writes.
    auto echo = [&](std::string_view key, const std::string& value, auto&& otherwise) {
        w.key(key);
        if (value.empty())
            otherwise();
        else
            w.raw(value);
    };
    w.begin_object();
    w.key("id").string(h.id);
    w.key("object").string("response");
    w.key("created_at").integer(h.created);
    w.key("status").string(status);
    w.key("background").boolean(false);
    w.key("error");
    if (status == "failed")
        w.begin_object()
            .key("code")
            .string("server_error")
            .key("message")
            .string(error_message)
            .end_object();
    else
        w.null();
    w.key("incomplete_details");
    if (!incomplete.empty())
        w.begin_object().key("reason").string(incomplete).end_object();
    else
        w.null();
    echo("instructions", e.instructions, [&] { w.null(); });
    echo("max_output_tokens", e.max_output_tokens, [&] { w.null(); });
    w.key("model").string(h.model);
    w.key("output").begin_array();
    for (const output_item& it : items) write_item(w, it);
    w.end_array();
    echo("parallel_tool_calls", e.parallel_tool_calls, [&] { w.boolean(true); });
    w.key("previous_response_id").null();
    echo("reasoning", e.reasoning,
         [&] { w.begin_object().key("effort").null().key("summary").null().end_object(); });
    w.key("store").boolean(false);  // nothing is stored: it cannot be retrieved later
    echo("temperature", e.temperature, [&] { w.number(1.0); });
    echo("text", e.text, [&] {
        w.begin_object().key("format").begin_object().key("type").string("text");
        w.end_object().end_object();
    });
    echo("tool_choice", e.tool_choice, [&] { w.string("auto"); });
    echo("tools", e.tools, [&] { w.empty_array(); });
    echo("top_p", e.top_p, [&] { w.number(1.0); });
    echo("truncation", e.truncation, [&] { w.string("disabled"); });
    w.key("usage");
    write_usage(w, usage);
    echo("user", e.user, [&] { w.null(); });
    echo("metadata", e.metadata, [&] { w.begin_object().end_object(); });
    w.end_object();
}

// A function call without arguments: clients parse the arguments, and "" is not JSON.
void default_arguments(output_item& it) {
    if (it.function_call && it.arguments.empty() && it.status == item_status::completed)
        it.arguments = "{}";
}

}  // namespace

// =======================================================================================
// 2. Chat answer -> Response

std::string chat_to_responses_response(std::string_view chat_body, std::string_view client_model,
                                       std::int64_t created, std::string_view response_id,
                                       const response_echo& echo) {
    dom::parser parser;
    dom::object resp;
    if (!parse_object(parser, chat_body, resp)) return {};
    const std::string base = id_base(response_id);

    std::vector<output_item> items;
    std::string_view finish;
    dom::array choices;
    dom::element first;
    dom::object choice, msg;
    if (member_array(resp, "choices", choices) && choices.at(0).get(first) == SUCCESS &&
        first.get(choice) == SUCCESS) {
        member_string(choice, "finish_reason", finish);
        if (member_object(choice, "message", msg)) {
            std::string text;
            dom::element c;
            if (member(msg, "content", c)) {
                std::string_view s;
                dom::array parts;
                if (c.get(s) == SUCCESS) {
                    text = s;
                } else if (c.get(parts) == SUCCESS) {
                    for (dom::element p : parts) {
                        dom::object po;
                        if (p.get(po) != SUCCESS) continue;
                        const std::string_view type = string_or(po, "type");
                        if (type == "text" || type == "output_text") text += string_or(po, "text");
                    }
                }
            }
            const std::string_view refusal = string_or(msg, "refusal");
            if (!text.empty() || !refusal.empty()) {
                output_item m;
                m.id = item_id("msg", base, items.size());
                if (!text.empty()) m.parts.push_back({false, std::move(text)});
                if (!refusal.empty()) m.parts.push_back({true, std::string(refusal)});
                items.push_back(std::move(m));
            }
            dom::array calls;
            if (member_array(msg, "tool_calls", calls)) {
                for (dom::element call : calls) {
                    dom::object co, fn;
                    if (call.get(co) != SUCCESS) continue;
                    // A default dom::object has no document behind it: never look into one.
                    const bool has_fn = member_object(co, "function", fn);
                    output_item it;
                    it.function_call = true;
                    it.id = item_id("fc", base, items.size());
                    it.call_id = string_or(co, "id");
                    if (it.call_id.empty()) it.call_id = item_id("call", base, items.size());
                    if (has_fn) {
                        it.name = string_or(fn, "name");
                        it.arguments = string_or(fn, "arguments");
                    }
                    items.push_back(std::move(it));
                }
            }
        }
    }

    const std::string_view incomplete = incomplete_reason(finish);
    const item_status final_status =
        incomplete.empty() ? item_status::completed : item_status::incomplete;
    for (std::size_t i = 0; i < items.size(); ++i) {
        // As in a stream: the message is done once a call follows it; what comes last
        // shares the response's fate.
        const bool followed = !items[i].function_call && i + 1 < items.size();
        items[i].status = followed ? item_status::completed : final_status;
        default_arguments(items[i]);
    }

    usage_counts usage;
    dom::object u;
    if (member_object(resp, "usage", u)) usage = read_usage(u);

    json_writer w;
    write_response(w, {response_id, client_model, created, echo},
                   incomplete.empty() ? "completed" : "incomplete", items, incomplete, {}, usage);
    return w.take();
}

// =======================================================================================
// 3. Chat chunk stream -> Responses events

namespace {

// One event: {"type":T,"sequence_number":N, <fill>} as "event: T\ndata: {...}\n\n".
template <class Fill>
void emit(std::string& out, std::string_view type, std::int64_t& sequence, Fill&& fill) {
    json_writer w;
    w.begin_object().key("type").string(type).key("sequence_number").integer(sequence++);
    fill(w);
    w.end_object();
    out += "event: ";
    out += type;
    out += "\ndata: ";
    out += w.take();
    out += "\n\n";
}

}  // namespace

chat_stream_to_responses::chat_stream_to_responses(std::string client_model, std::int64_t created,
                                                   std::string response_id, response_echo echo)
    : parser_(std::make_unique<dom::parser>()),
      model_(std::move(client_model)),
      created_(created),
      response_id_(std::move(response_id)),
      echo_(std::move(echo)),
      id_base_(id_base(response_id_)) {}

chat_stream_to_responses::~chat_stream_to_responses() = default;
chat_stream_to_responses::chat_stream_to_responses(chat_stream_to_responses&&) noexcept = default;
chat_stream_to_responses& chat_stream_to_responses::operator=(chat_stream_to_responses&&) noexcept =
    default;

void chat_stream_to_responses::start(std::string& out) {
    if (started_) return;
    started_ = true;
    const response_head head{response_id_, model_, created_, echo_};
    for (const std::string_view type : {"response.created", "response.in_progress"})
        emit(out, type, sequence_, [&](json_writer& w) {
            w.key("response");
            write_response(w, head, "in_progress", {}, {}, {}, {});
        });
}

void chat_stream_to_responses::text_delta(bool refusal, std::string_view text, std::string& out) {
    if (open_message_ < 0) {
        output_item m;
        m.id = item_id("msg", id_base_, items_.size());
        open_message_ = static_cast<std::int64_t>(items_.size());
        items_.push_back(std::move(m));
        emit(out, "response.output_item.added", sequence_, [&](json_writer& w) {
            w.key("output_index").integer(open_message_);
            w.key("item");
            write_item(w, items_.back());
        });
    }
    const auto index = static_cast<std::size_t>(open_message_);
    // Text and refusal are separate content parts: a switch closes the current one.
    if (items_[index].parts.empty() || items_[index].parts.back().refusal != refusal) {
        if (!items_[index].parts.empty()) close_part(index, out);
        items_[index].parts.push_back({refusal, {}});
        emit(out, "response.content_part.added", sequence_, [&](json_writer& w) {
            w.key("item_id").string(items_[index].id);
            w.key("output_index").integer(open_message_);
            w.key("content_index")
                .integer(static_cast<std::int64_t>(items_[index].parts.size()) - 1);
            w.key("part");
            write_part(w, refusal, {});
        });
    }
    items_[index].parts.back().text += text;
    emit(out, refusal ? "response.refusal.delta" : "response.output_text.delta", sequence_,
         [&](json_writer& w) {
             w.key("item_id").string(items_[index].id);
             w.key("output_index").integer(open_message_);
             w.key("content_index")
                 .integer(static_cast<std::int64_t>(items_[index].parts.size()) - 1);
             w.key("delta").string(text);
             if (!refusal) w.key("logprobs").empty_array();
         });
}

void chat_stream_to_responses::close_part(std::size_t item, std::string& out) {
    const output_item& it = items_[item];
    const output_part& p = it.parts.back();
    const auto content_index = static_cast<std::int64_t>(it.parts.size()) - 1;
    const auto output_index = static_cast<std::int64_t>(item);
    emit(out, p.refusal ? "response.refusal.done" : "response.output_text.done", sequence_,
         [&](json_writer& w) {
             w.key("item_id").string(it.id);
             w.key("output_index").integer(output_index);
             w.key("content_index").integer(content_index);
             if (p.refusal) {
                 w.key("refusal").string(p.text);
             } else {
                 w.key("text").string(p.text);
                 w.key("logprobs").empty_array();
             }
         });
    emit(out, "response.content_part.done", sequence_, [&](json_writer& w) {
        w.key("item_id").string(it.id);
        w.key("output_index").integer(output_index);
        w.key("content_index").integer(content_index);
        w.key("part");
        write_part(w, p.refusal, p.text);
    });
}

void chat_stream_to_responses::close_item(std::size_t item, item_status status, std::string& out) {
    if (items_[item].status != item_status::in_progress) return;
    const auto output_index = static_cast<std::int64_t>(item);
    if (items_[item].function_call) {
        items_[item].status = status;
        if (items_[item].arguments.empty()) {
            default_arguments(items_[item]);
            // The deltas must add up to the final arguments: send the default as one.
            if (!items_[item].arguments.empty())
                emit(out, "response.function_call_arguments.delta", sequence_, [&](json_writer& w) {
                    w.key("item_id").string(items_[item].id);
                    w.key("output_index").integer(output_index);
                    w.key("delta").string(items_[item].arguments);
                });
        }
        emit(out, "response.function_call_arguments.done", sequence_, [&](json_writer& w) {
            w.key("item_id").string(items_[item].id);
            w.key("output_index").integer(output_index);
            w.key("name").string(items_[item].name);
            w.key("arguments").string(items_[item].arguments);
        });
    } else {
        if (!items_[item].parts.empty()) close_part(item, out);
        items_[item].status = status;
        if (open_message_ == output_index) open_message_ = -1;
    }
    emit(out, "response.output_item.done", sequence_, [&](json_writer& w) {
        w.key("output_index").integer(output_index);
        w.key("item");
        write_item(w, items_[item]);
    });
}

void chat_stream_to_responses::close_all(item_status status, std::string& out) {
    for (std::size_t i = 0; i < items_.size(); ++i) close_item(i, status, out);
}

void chat_stream_to_responses::tool_delta(std::int64_t index, std::string_view id,
                                          std::string_view name, std::string_view arguments,
                                          std::string& out) {
    std::size_t item = 0;
    const auto found = call_by_index_.find(index);
    if (found == call_by_index_.end()) {
        // A call starts: the message before it is complete (text arriving later goes to a
        // new message item). Calls stay open until the end: chat servers may interleave
        // them by index.
        if (open_message_ >= 0)
            close_item(static_cast<std::size_t>(open_message_), item_status::completed, out);
        output_item it;
        it.function_call = true;
        it.id = item_id("fc", id_base_, items_.size());
        it.call_id = id.empty() ? item_id("call", id_base_, items_.size()) : std::string(id);
        it.name = name;
        item = items_.size();
        items_.push_back(std::move(it));
        call_by_index_.emplace(index, item);
        emit(out, "response.output_item.added", sequence_, [&](json_writer& w) {
            w.key("output_index").integer(static_cast<std::int64_t>(item));
            w.key("item");
            write_item(w, items_[item]);
        });
    } else {
        item = found->second;
        // A server sending the name after the first piece: the done events carry it.
        if (items_[item].name.empty()) items_[item].name = name;
    }
    last_call_ = index;
    if (arguments.empty()) return;
    items_[item].arguments += arguments;
    emit(out, "response.function_call_arguments.delta", sequence_, [&](json_writer& w) {
        w.key("item_id").string(items_[item].id);
        w.key("output_index").integer(static_cast<std::int64_t>(item));
        w.key("delta").string(arguments);
    });
}

void chat_stream_to_responses::conclude(std::string& out) {
    const std::string_view incomplete = incomplete_reason(finish_reason_);
    close_all(incomplete.empty() ? item_status::completed : item_status::incomplete, out);
    const response_head head{response_id_, model_, created_, echo_};
    emit(out, incomplete.empty() ? "response.completed" : "response.incomplete", sequence_,
         [&](json_writer& w) {
             w.key("response");
             write_response(w, head, incomplete.empty() ? "completed" : "incomplete", items_,
                            incomplete, {}, usage_);
         });
    finished_ = true;
}

void chat_stream_to_responses::fail(std::string message, std::string& out) {
    start(out);
    failed_ = true;
    error_text_ = std::move(message);
    // Items cut off mid-way are reported as they stand, without their done events.
    for (output_item& it : items_)
        if (it.status == item_status::in_progress) it.status = item_status::incomplete;
    const response_head head{response_id_, model_, created_, echo_};
    emit(out, "response.failed", sequence_, [&](json_writer& w) {
        w.key("response");
        write_response(w, head, "failed", items_, {}, error_text_, usage_);
    });
}

void chat_stream_to_responses::on_chunk(std::string_view chat_chunk_json, std::string& out) {
    if (finished_ || failed_ || !parser_) return;
    const auto b = chat_chunk_json.find_first_not_of(" \t\r\n");
    const auto e = chat_chunk_json.find_last_not_of(" \t\r\n");
    const std::string_view data =
        b == std::string_view::npos ? std::string_view{} : chat_chunk_json.substr(b, e - b + 1);
    start(out);
    if (data == "[DONE]") return conclude(out);

    dom::object chunk;
    if (!parse_object(*parser_, data, chunk))
        return fail("malformed chunk from the upstream provider", out);
    dom::element err;
    if (member(chunk, "error", err)) return fail(error_message_of(err), out);

    dom::object usage;
    if (member_object(chunk, "usage", usage)) usage_ = read_usage(usage);

    dom::array choices;
    if (!member_array(chunk, "choices", choices)) return;  // e.g. the usage-only chunk
    for (dom::element c : choices) {
        dom::object co, delta;
        if (c.get(co) != SUCCESS) continue;
        dom::element ie;
        std::int64_t choice_index = 0;
        // Only the first choice is the response (n is never asked for).
        if (member(co, "index", ie) && as_integer(ie, choice_index) && choice_index != 0) continue;
        // After the finish, nothing more belongs to the response.
        if (!finish_reason_.empty()) continue;
        if (member_object(co, "delta", delta)) {
            std::string_view text;
            if (member_string(delta, "content", text) && !text.empty())
                text_delta(false, text, out);
            if (member_string(delta, "refusal", text) && !text.empty()) text_delta(true, text, out);
            dom::array calls;
            if (member_array(delta, "tool_calls", calls)) {
                for (dom::element call : calls) {
                    dom::object tc, fn;
                    if (call.get(tc) != SUCCESS) continue;
                    // A default dom::object has no document behind it: never look into one.
                    const bool has_fn = member_object(tc, "function", fn);
                    const std::string_view id = string_or(tc, "id");
                    std::int64_t index = 0;
                    if (!member(tc, "index", ie) || !as_integer(ie, index)) {
                        // No index (some servers send whole calls without one): a known
                        // id continues its call, a new id starts one, no id continues the
                        // last call.
                        index = last_call_;
                        if (!id.empty()) {
                            index = -1 - static_cast<std::int64_t>(items_.size());  // unused
                            for (const auto& [i, item] : call_by_index_)
                                if (items_[item].call_id == id) index = i;
                        }
                    }
                    tool_delta(index, id, has_fn ? string_or(fn, "name") : std::string_view{},
                               has_fn ? string_or(fn, "arguments") : std::string_view{}, out);
                }
            }
        }
        std::string_view finish;
        if (member_string(co, "finish_reason", finish) && !finish.empty()) {
            finish_reason_ = finish;
            // Items are done now; the Response itself waits for [DONE], because the usage
            // chunk comes after the finish chunk.
            const bool incomplete = !incomplete_reason(finish_reason_).empty();
            close_all(incomplete ? item_status::incomplete : item_status::completed, out);
        }
    }
}

void chat_stream_to_responses::finish(bool complete, std::string& out) {
    if (finished_ || failed_ || !parser_) return;
    start(out);
    if (complete && !finish_reason_.empty()) return conclude(out);
    fail(complete ? "the upstream stream ended before the model finished"
                  : "the upstream stream was cut short",
         out);
}

}  // namespace tollgate::upstream::responses
