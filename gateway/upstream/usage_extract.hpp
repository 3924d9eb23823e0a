#pragma once
// Reading token usage out of upstream answers without a full JSON parse (sans-io).
//
// The per-event path sees every SSE chunk of every stream, so these scan the bytes once,
// 64 at a time as bit masks of quotes, backslashes and colons, and never allocate (a
// stream's scan_memo keeps one string). They are safe on any input: malformed or
// truncated JSON gives "nothing found", never a crash or an out-of-bounds read.

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

// Everything the stream observers read from one event's JSON, found in one pass over it:
// only the members are visited (each colon outside a string ends a key), and string values
// are looked at only when they are generated text (counted 16 bytes at a time).
// find_usage, generated_text(_bytes) and has_empty_choices return one member each (for
// one-off uses and tests).
struct event_facts {
    std::optional<extracted_usage> usage;  // find_usage
    text_count text;                       // generated_text
    std::size_t text_bytes = 0;            // generated_text_bytes
    bool empty_choices = false;            // has_empty_choices
    bool finish_reason = false;            // a "finish_reason" member with a string value
    // The value of the first "type" member that is a string, as written (escapes not
    // decoded), or empty.
    std::string_view type;
    // The `"usage":null` members append_without_null_usage would cut, each with its
    // comma: [begin, end) offsets into the scanned text. More than fit: cuts_overflow.
    struct cut {
        std::size_t begin = 0, end = 0;
    };
    static constexpr std::size_t max_cuts = 4;
    cut cuts[max_cuts];
    std::size_t cut_count = 0;
    bool cuts_overflow = false;
};
event_facts scan_event(std::string_view json) noexcept;

// scan_event for the events of one stream, which mostly repeat the same bytes around
// their text: an OpenAI chunk repeats its id, object, created, model, fingerprint and
// `"choices":[{"index":0,"delta":{` before each piece of text and
// `"},"logprobs":null,"finish_reason":null}],"usage":null}` after it; Anthropic's
// content_block_delta its types and index. The memo keeps the last event's start, up to
// the opening quote of its first generated text, and its rest after that text, with what
// each gave. An event that begins with the same start has its text counted right there,
// and one that ends with the same rest takes that rest's facts: only the text itself is
// looked at. The facts are those of scan_event(json).
class scan_memo {
  public:
    // Starts and rests longer than this are not kept (memory per stream).
    static constexpr std::size_t max_kept = 512;

    // What kept bytes (at most max_kept) gave, compactly: offsets from their start, and
    // never a usage (bytes with one are not kept). Every open stream holds a memo.
    struct kept_facts {
        std::uint64_t ascii = 0, other = 0, text_bytes = 0;
        std::uint32_t cuts[event_facts::max_cuts][2] = {};
        std::uint16_t type_at = 0, type_size = 0;
        std::uint8_t cut_count = 0;
        bool has_type = false, finish_reason = false, empty_choices = false, cuts_overflow = false;
    };

  private:
    friend event_facts scan_event(std::string_view json, scan_memo& memo) noexcept;
    std::string bytes_;                // the kept start, then the kept rest
    std::uint16_t prefix_len_ = 0;     // 0: no start kept
    std::uint16_t prefix_copied_ = 0;  // the end of the start's last usage:null cut
    bool has_suffix_ = false;
    kept_facts prefix_;  // offsets from the event's start
    kept_facts suffix_;  // offsets from the rest's start
};
event_facts scan_event(std::string_view json, scan_memo& memo) noexcept;

// append_without_null_usage(raw, out) with the cuts of a scan_event of `data`, which lies
// inside `raw` (an SSE event's data line): no second pass over the event. Falls back to
// the scanning version when `data` is not inside `raw` (multi-line data) or the cuts
// overflowed. Returns the number removed.
std::size_t append_without_null_usage(std::string_view raw, std::string_view data,
                                      const event_facts& facts, std::string& out);

// Appends `raw` (one SSE event as received) to `out` without its `"usage":null` members
// (and the comma that joined each to its neighbour): what OpenAI adds to every chunk only
// because stream_options.include_usage was asked. Returns the number removed.
std::size_t append_without_null_usage(std::string_view raw, std::string& out);

}  // namespace tollgate::upstream
