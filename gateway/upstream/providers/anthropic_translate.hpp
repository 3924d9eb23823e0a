#pragma once
// Translation between the OpenAI chat-completions API and the Anthropic Messages API, in
// both directions: OpenAI clients served by anthropic-kind providers, and Anthropic
// clients (POST /v1/messages) served by openai/azure-kind providers.
//
// Sans-io (STYLE habit 7): JSON text in, JSON text out; SSE events in, SSE events out.
// No sockets, no clock (the `created` timestamp is a parameter), no globals. Every
// function is safe on any input: malformed JSON gives an error result, never a crash or
// an exception, and every JSON text produced is valid JSON (UTF-8, strings escaped).
//
// Thread-safety: the free functions are reentrant (each parses with its own local
// parser). A stream translator is one stream's state: use it from one thread at a time.
//
// Deliberate losses, so nobody is surprised:
//  - OpenAI -> Anthropic requests drop fields Anthropic has no equivalent for:
//    response_format (json_object and json_schema alike: the model is not constrained),
//    frequency/presence_penalty, logit_bias, logprobs, seed, stream_options (Anthropic
//    always reports usage), reasoning_effort, service_tier, store. `n` > 1 is refused.
//    System (and developer) messages anywhere in the conversation all go to `system`,
//    joined by blank lines, because Anthropic has no mid-conversation system turn.
//  - Anthropic -> OpenAI answers drop thinking blocks; text blocks are concatenated.
//  - Anthropic -> OpenAI requests drop top_k, thinking and cache_control; thinking blocks
//    in assistant history are dropped; a tool_result's is_error flag has no OpenAI
//    equivalent and is dropped (its text stays); images inside a tool_result move to a
//    user message right after the tool messages (OpenAI tool messages carry text only).

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace simdjson::dom {
class parser;
}

namespace tollgate::upstream::anthropic {

// The largest token count taken from an upstream (10^15): sums of a few stay far from
// overflowing an int64.
inline constexpr std::int64_t max_token_count = 1'000'000'000'000'000;

// A translated request body, or why the client's request cannot be translated.
struct translated {
    std::string body;
    std::string error;  // non-empty: the client's fault, answer 400 with this message
    bool ok() const noexcept { return error.empty(); }
};

// --- OpenAI clients, Anthropic upstream ------------------------------------------------

// OpenAI chat-completions request -> Anthropic Messages request. `default_max_tokens` is
// sent when the client gives neither max_tokens nor max_completion_tokens (Anthropic
// requires the field).
translated chat_to_messages_request(std::string_view openai_body, std::string_view upstream_model,
                                    std::uint32_t default_max_tokens);

// Anthropic message (a 200 answer) -> OpenAI chat.completion. Returns an empty string
// when the body is not an Anthropic message (not JSON, not an object): the caller treats
// that as an upstream failure.
std::string messages_to_chat_response(std::string_view anthropic_body,
                                      std::string_view client_model, std::int64_t created);

// The human-readable message of an Anthropic (or OpenAI) error body; a generic text when
// the body has none.
std::string error_message(std::string_view anthropic_error_body);

// Anthropic SSE stream -> OpenAI chat.completion.chunk stream. Feed each upstream event
// (its `event:` name and `data:` payload) in order; every string appended to `out` is one
// complete SSE event ("data: {...}\n\n"), produced as soon as the input event allows.
class messages_stream_to_chat {
  public:
    messages_stream_to_chat(std::string client_model, std::int64_t created, bool include_usage);
    ~messages_stream_to_chat();
    messages_stream_to_chat(messages_stream_to_chat&&) noexcept;
    messages_stream_to_chat& operator=(messages_stream_to_chat&&) noexcept;

    // `event_name` may be empty: the data's "type" is used then. Events after the end
    // (message_stop) or after a failure are ignored.
    void on_event(std::string_view event_name, std::string_view data,
                  std::vector<std::string>& out);

    bool finished() const noexcept { return finished_; }  // message_stop seen, [DONE] sent
    bool failed() const noexcept { return failed_; }      // error event or malformed data
    std::string error_text() const { return error_text_; }

    // Usage seen so far, for billing a stream cut short. prompt_tokens includes cached
    // input (cache reads and cache writes), as OpenAI counts it.
    std::int64_t prompt_tokens() const noexcept {
        return std::min(input_tokens_, max_token_count) +
               std::min(cache_read_tokens_, max_token_count) +
               std::min(cache_creation_tokens_, max_token_count);
    }
    std::int64_t completion_tokens() const noexcept { return output_tokens_; }

  private:
    struct tool_block {
        std::int64_t block_index;  // Anthropic content block index
        int tool_index;            // OpenAI tool_calls index
        bool has_arguments;
    };

    void fail(std::string message, std::vector<std::string>& out);

    std::unique_ptr<simdjson::dom::parser> parser_;
    std::string model_;
    std::int64_t created_;
    bool include_usage_;
    std::string id_ = "chatcmpl-tollgate";
    std::int64_t input_tokens_ = 0, output_tokens_ = 0;
    std::int64_t cache_read_tokens_ = 0, cache_creation_tokens_ = 0;
    std::vector<tool_block> tools_;
    bool finished_ = false, failed_ = false;
    std::string error_text_;
};

// --- Anthropic clients (POST /v1/messages), OpenAI-kind upstream -----------------------

// Anthropic Messages request -> OpenAI chat-completions request. A streamed request also
// asks for the final usage chunk (stream_options.include_usage).
translated messages_to_chat_request(std::string_view anthropic_body,
                                    std::string_view upstream_model);

// OpenAI chat.completion -> Anthropic message. Returns an empty string when the body is
// not a chat completion (not JSON, not an object).
std::string chat_to_messages_response(std::string_view openai_body, std::string_view client_model);

// OpenAI chunk stream -> Anthropic SSE events. Feed the data of each upstream SSE event,
// "[DONE]" included; every string appended to `out` is one complete Anthropic event
// ("event: <name>\ndata: {...}\n\n"). message_delta (stop_reason and usage) and
// message_stop are sent at [DONE], because the usage chunk comes after the finish chunk.
class chat_stream_to_messages {
  public:
    explicit chat_stream_to_messages(std::string client_model);
    ~chat_stream_to_messages();
    chat_stream_to_messages(chat_stream_to_messages&&) noexcept;
    chat_stream_to_messages& operator=(chat_stream_to_messages&&) noexcept;

    void on_data(std::string_view data, std::vector<std::string>& out);

    bool finished() const noexcept { return finished_; }  // message_stop sent
    bool failed() const noexcept { return failed_; }      // upstream error or malformed chunk
    std::string error_text() const { return error_text_; }

    std::int64_t prompt_tokens() const noexcept { return prompt_tokens_; }
    std::int64_t completion_tokens() const noexcept { return completion_tokens_; }

  private:
    enum class block_kind { none, text, tool };
    struct tool_block {
        std::int64_t tool_index;   // OpenAI tool_calls index
        std::int64_t block_index;  // Anthropic content block index
    };

    void start(std::vector<std::string>& out);
    void close_block(std::vector<std::string>& out);
    void fail(std::string message, std::vector<std::string>& out);

    std::unique_ptr<simdjson::dom::parser> parser_;
    std::string model_;
    std::string id_;
    bool started_ = false, finished_ = false, failed_ = false;
    block_kind open_ = block_kind::none;
    std::int64_t open_index_ = -1;  // Anthropic index of the open block
    std::int64_t next_index_ = 0;
    std::vector<tool_block> tools_;
    std::string stop_reason_;
    std::int64_t prompt_tokens_ = 0, completion_tokens_ = 0, cached_tokens_ = 0;
    bool usage_seen_ = false;
    std::string error_text_;
};

}  // namespace tollgate::upstream::anthropic
