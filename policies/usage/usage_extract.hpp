#pragma once
// Reading token usage out of upstream answers without a full JSON parse (sans-io).
//
// The per-event path sees every SSE chunk of every stream, so these scan the bytes once
// with memchr/memmem-level work and never allocate. They are safe on any input: malformed
// or truncated JSON gives "nothing found", never a crash or an out-of-bounds read.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tollgate::policies {

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
// "arguments", "text" and "reasoning_content" (escapes counted as written). For estimates.
std::size_t generated_text_bytes(std::string_view json) noexcept;

// An OpenAI usage-only chunk: `"choices":[]` (the final chunk include_usage adds).
bool has_empty_choices(std::string_view json) noexcept;

// Token estimate for `bytes` of text: about four bytes a token, rounded up.
constexpr std::uint64_t estimate_tokens(std::size_t bytes) noexcept {
    return (bytes + 3) / 4;
}

}  // namespace tollgate::policies
