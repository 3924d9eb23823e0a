#pragma once
// How each upstream API reports usage, read into a usage_meter (sans-io, no allocation).
// Shared by the native and the translating adapters: both observe the upstream's own
// events, before any translation.

#include <optional>
#include <string_view>

#include "gateway/core/usage_meter.hpp"
#include "gateway/upstream/usage_extract.hpp"

namespace tollgate::upstream {

// OpenAI chat-completions stream (chunks) and bodies (chat, embeddings).
class openai_observer {
  public:
    // A whole answer: its usage is final.
    static void body(std::string_view json, core::usage_meter& meter) noexcept;
    // One chunk's data. Returns true when it is the usage-only chunk (`"choices":[]`
    // with a usage): that one is final at once. Usage in other chunks (servers that
    // repeat a running count) is provisional until the stream completes.
    bool chunk(std::string_view data, core::usage_meter& meter) noexcept;
    // The same with the chunk's scan_event(data), when the caller needs it too.
    bool chunk(std::string_view data, const event_facts& facts, core::usage_meter& meter) noexcept;
    // The stream completed: the last usage seen, if not final yet, is — when the answer
    // ended as it should ([DONE] or a finish_reason) and carried no error.
    void complete(core::usage_meter& meter) noexcept;
    // An error object inside the stream.
    static bool is_error(std::string_view data) noexcept;
    // scan_event of one of this stream's chunks.
    event_facts scan(std::string_view data) noexcept { return scan_event(data, memo_); }

  private:
    scan_memo memo_;
    std::optional<core::usage_figures> last_;
    bool ended_ = false;
    bool failed_ = false;
};

// OpenAI Responses API: a Response object, or its event stream. The Response's `usage`
// (in response.completed, response.incomplete, response.failed) is final; the text of
// `*.delta` events is received text (the `.done` events repeat it, and are not counted).
class responses_observer {
  public:
    static void body(std::string_view json, core::usage_meter& meter) noexcept;
    // One event (`event:` name, may be empty: the data's "type" is used). Returns false
    // for `error` and `response.failed`.
    bool event(std::string_view name, std::string_view data, core::usage_meter& meter) noexcept;
};

// Anthropic Messages stream (events) and bodies.
class anthropic_observer {
  public:
    static void body(std::string_view json, core::usage_meter& meter) noexcept;
    // One event (`event:` name, may be empty: the data's "type" is used). message_start
    // is provisional; message_delta's usage is final (the counts it leaves out are taken
    // from message_start); deltas are received text. Returns false for an error event.
    bool event(std::string_view name, std::string_view data, core::usage_meter& meter) noexcept;

  private:
    scan_memo memo_;
};

}  // namespace tollgate::upstream
