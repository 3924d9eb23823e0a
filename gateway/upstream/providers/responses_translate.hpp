#pragma once
// Translation between the OpenAI Responses API (POST /v1/responses) and OpenAI chat
// completions, so that /v1/responses can be served by any target that speaks chat
// completions: Responses request -> chat request (then, for anthropic-kind targets, the
// chat -> Messages translator of anthropic_translate.hpp); chat answer -> Response
// object; chat chunk stream -> Responses event stream.
//
// Sans-io: JSON text in, JSON text out; SSE payloads in, SSE events out.
// No sockets, no clock (`created` is a parameter), no id generator (the response id is
// a parameter; item ids are derived from it), no globals. Every function is safe on any
// input: malformed JSON gives an error result, never a crash or an exception, and every
// JSON text produced is valid JSON (UTF-8, strings escaped).
//
// Thread-safety: the free functions are reentrant (each parses with its own local
// parser). A stream translator is one stream's state: use it from one thread at a time.
//
// The gateway keeps no state between requests, so everything the Responses API does
// with stored state is refused as unsupported_on_target (previous_response_id,
// conversation, stored prompts, item_reference, background), as is everything only
// OpenAI's servers can run (built-in tools, include). `store` is ignored: it defaults to
// true in the API, and nothing is stored here whatever it says.
//
// Deliberate losses, so nobody is surprised:
//  - requests: metadata is dropped (it annotates a stored response; chat servers reject
//    or ignore it); truncation "disabled" and reasoning without summary are no-ops;
//    unknown top-level fields are ignored, as the chat translators do.
//  - answers and streams: the Response object echoes the request's settings as the API
//    does (instructions, max_output_tokens, metadata, parallel_tool_calls, reasoning,
//    temperature, text, tool_choice, tools, top_p, truncation, user: as sent, the API's
//    default where not sent), except `store` (always false: nothing is stored).
//    Reasoning text some chat servers stream (reasoning_content) is dropped.
//  - streamed function_call items stay open until the model finishes (chat servers may
//    interleave calls by index), so their .done events come at the end; a message item
//    is closed as soon as a function call starts, and later text opens a new one.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace simdjson::dom {
class parser;
}

namespace tollgate::upstream::responses {

// Why a request cannot be translated.
enum class error_kind {
    none,
    invalid_request,        // malformed: not an object, missing input, wrong types (400)
    unsupported_on_target,  // well-formed, but needs something chat completions lacks
};

// The request's settings a Response echoes: each the JSON value the client sent
// (re-serialised), empty where the request did not set it (the API's default is echoed).
struct response_echo {
    std::string instructions, max_output_tokens, metadata, parallel_tool_calls, reasoning,
        temperature, text, tool_choice, tools, top_p, truncation, user;
};

// A translated request body, or why the client's request cannot be translated.
struct translated {
    std::string body;
    std::string error;  // non-empty: the client's fault; the message names the field
    error_kind kind = error_kind::none;
    response_echo echo;  // on success: what the Response echoes
    bool ok() const noexcept { return error.empty(); }
    bool unsupported() const noexcept { return kind == error_kind::unsupported_on_target; }
};

// Responses request -> chat-completions request for `upstream_model`. A streamed request
// also asks for the final usage chunk (stream_options.include_usage).
translated responses_to_chat_request(std::string_view responses_body,
                                     std::string_view upstream_model);

// Chat completion (a 200 answer) -> Response object with id `response_id` ("resp_..."),
// model `client_model`, created_at `created`. Returns an empty string when the body is
// not a chat completion (not JSON, not an object): the caller treats that as an upstream
// failure.
std::string chat_to_responses_response(std::string_view chat_body, std::string_view client_model,
                                       std::int64_t created, std::string_view response_id,
                                       const response_echo& echo = {});

namespace detail {
// One output item of a Response being built; shared by the answer and stream translators
// so that both write the same shapes. Not part of the interface.
enum class item_status { in_progress, completed, incomplete };
struct output_part {
    bool refusal = false;  // a refusal part, else output_text
    std::string text;
};
struct output_item {
    bool function_call = false;  // else an assistant message
    std::string id;              // msg_... / fc_...
    item_status status = item_status::in_progress;
    std::vector<output_part> parts;        // message
    std::string call_id, name, arguments;  // function_call
};
struct usage_counts {
    bool seen = false;
    std::int64_t input = 0, cached = 0, output = 0, reasoning = 0;
};
}  // namespace detail

// Chat chunk stream -> Responses SSE events. Feed the data of each upstream SSE event in
// order, "[DONE]" included, then call finish() when the upstream body ends. Every string
// appended to `out` is a run of complete events ("event: <type>\ndata: {...}\n\n"), each
// JSON carrying "type" and "sequence_number" (0, 1, 2...). The stream always starts with
// response.created and response.in_progress and ends with exactly one of
// response.completed, response.incomplete (finish_reason length or content_filter) or
// response.failed (an upstream error chunk, a malformed chunk, or a stream cut short).
class chat_stream_to_responses {
  public:
    chat_stream_to_responses(std::string client_model, std::int64_t created,
                             std::string response_id, response_echo echo = {});
    ~chat_stream_to_responses();
    chat_stream_to_responses(chat_stream_to_responses&&) noexcept;
    chat_stream_to_responses& operator=(chat_stream_to_responses&&) noexcept;

    // One upstream `data:` payload. Ignored after the end (finished() or failed()).
    void on_chunk(std::string_view chat_chunk_json, std::string& out);

    // The upstream body ended: `complete` when it ended normally, false when it was cut
    // (connection lost, timeout). Ends the stream if [DONE] has not: a normal end after
    // the model's finish_reason completes the response (some servers omit [DONE]);
    // anything else fails it. Does nothing after the end.
    void finish(bool complete, std::string& out);

    bool finished() const noexcept { return finished_; }  // completed or incomplete sent
    bool failed() const noexcept { return failed_; }      // response.failed sent
    std::string error_text() const { return error_text_; }

  private:
    void start(std::string& out);
    void text_delta(bool refusal, std::string_view text, std::string& out);
    void tool_delta(std::int64_t index, std::string_view id, std::string_view name,
                    std::string_view arguments, std::string& out);
    void close_part(std::size_t item, std::string& out);
    void close_item(std::size_t item, detail::item_status status, std::string& out);
    void close_all(detail::item_status status, std::string& out);
    void conclude(std::string& out);
    void fail(std::string message, std::string& out);

    std::unique_ptr<simdjson::dom::parser> parser_;
    std::string model_;
    std::int64_t created_;
    std::string response_id_;
    response_echo echo_;
    std::string id_base_;  // response id without "resp_": item ids are msg_<base>_<n>...
    std::int64_t sequence_ = 0;
    std::vector<detail::output_item> items_;             // in output_index order
    std::map<std::int64_t, std::size_t> call_by_index_;  // chat tool_calls index -> item
    std::int64_t open_message_ = -1;                     // the message item taking text
    std::int64_t last_call_ = 0;  // chat index of the last call: for pieces without index
    std::string finish_reason_;
    detail::usage_counts usage_;
    bool started_ = false, finished_ = false, failed_ = false;
    std::string error_text_;
};

}  // namespace tollgate::upstream::responses
