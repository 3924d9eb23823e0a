#pragma once
// Reading token usage out of upstream answers without a full JSON parse (sans-io).
//
// The per-event path sees every SSE chunk of every stream, so these scan the bytes once
// with memchr/memmem-level work and never allocate. They are safe on any input: malformed
// or truncated JSON gives "nothing found", never a crash or an out-of-bounds read.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate::upstream {

struct extracted_usage {
    std::optional<std::uint64_t> prompt_tokens;      // prompt_tokens | input_tokens
    std::optional<std::uint64_t> completion_tokens;  // completion_tokens | output_tokens
    std::optional<std::uint64_t> total_tokens;
    std::optional<std::uint64_t> cached_tokens;  // prompt_tokens_details.cached_tokens |
                                                 // cache_read_input_tokens
    bool any() const noexcept { return prompt_tokens || completion_tokens || total_tokens; }
};

// The last "usage" object in `json` (OpenAI chat/embeddings answers and chunks; Anthropic
// message_start/message_delta), or nothing if there is none or it is `null`.
std::optional<extracted_usage> find_usage(std::string_view json) noexcept;

// Bytes of generated text in a chunk or answer: the string values of "content",
// "arguments", "text", "reasoning_content", and Anthropic's "partial_json" and "thinking"
// (escapes counted as written). For estimates.
std::size_t generated_text_bytes(std::string_view json) noexcept;

// An OpenAI usage-only chunk: `"choices":[]` (the final chunk include_usage adds).
bool has_empty_choices(std::string_view json) noexcept;

// Generated text in a chunk or answer (the same string values as generated_text_bytes),
// counted for a token estimate: ASCII bytes apart from non-ASCII characters (UTF-8 lead
// bytes and \uXXXX escapes, one each), so CJK text is not counted at a quarter token per
// byte.
struct text_count {
    std::size_t ascii = 0;
    std::uint64_t other = 0;
};
text_count generated_text(std::string_view json) noexcept;

// The value of the first top-level-looking string member `key` (e.g. "type"), as
// written (escapes not decoded), or empty.
std::string_view first_string_member(std::string_view json, std::string_view quoted_key) noexcept;

// Appends `raw` (one SSE event as received) to `out` without its `"usage":null` members
// (and the comma that joined each to its neighbour): what OpenAI adds to every chunk only
// because stream_options.include_usage was asked. Returns the number removed.
std::size_t append_without_null_usage(std::string_view raw, std::string& out);

}  // namespace tollgate::upstream
