#pragma once
// usage_meter: what one request used, from what its upstream said (sans-io).
//
// One meter per request, fed only by the upstream adapter of the attempt that answers
// (reset at every attempt). It holds three kinds of observation:
// - final figures: the upstream's own final count (OpenAI's usage chunk or body,
//   Anthropic's final message_delta or message body, a Response's usage);
// - provisional figures: counts an upstream gives before it is done (Anthropic's
//   message_start, OpenAI-compatible servers that repeat usage in every chunk);
// - what was received: bytes of generated text and tool-call arguments.
// When the request ends, result() turns them into the request's one usage per SPEC
// ("Usage accounting"): the final figures when they arrived (source upstream); otherwise
// an estimate from the request and what was received that is never below a provisional
// figure (source estimated). Translators' made-up figures never reach a meter: adapters
// observe the upstream's own events, before any translation.
//
// Thread-safety: none; a meter belongs to one request on one worker thread.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tollgate::config {
struct model_config;
}

namespace tollgate::core {

struct usage_counts {
    std::uint64_t prompt_tokens = 0;
    std::uint64_t completion_tokens = 0;
    std::uint64_t cached_tokens = 0;  // part of prompt_tokens read from a prompt cache
    bool from_upstream = false;       // false: estimated
};

// Token estimate for `bytes` of ASCII text: about four bytes a token, rounded up.
constexpr std::uint64_t estimate_tokens(std::size_t bytes) noexcept {
    return (bytes + 3) / 4;
}

// A token estimate of text that aims to be an upper bound for real tokenizers: ASCII at
// four bytes a token (rounded up), every non-ASCII character (a UTF-8 lead byte) one token.
std::uint64_t estimate_text_tokens(std::string_view text) noexcept;

// One observation: a count that is absent was not reported.
struct usage_figures {
    std::optional<std::uint64_t> prompt_tokens;  // cached and cache-write input included
    std::optional<std::uint64_t> completion_tokens;
    std::optional<std::uint64_t> cached_tokens;
};

class usage_meter {
  public:
    // The upstream's final count. Counts it leaves out (Anthropic's message_delta often
    // carries output tokens only) are taken from the provisional figures.
    void final_figures(const usage_figures& f) noexcept;
    // A count the upstream may still raise; the highest seen is kept.
    void provisional(const usage_figures& f) noexcept;
    // Generated text or tool-call arguments received: ASCII bytes, and other characters
    // (each at least a token).
    void received(std::size_t ascii_bytes, std::uint64_t other_chars = 0) noexcept {
        received_ascii_ += ascii_bytes;
        received_other_ += other_chars;
    }

    // A new upstream attempt starts: what the previous one observed is forgotten, unless
    // `keep` (its upstream accepted the request and answered 2xx, then failed): then its
    // usage, estimated, is carried into the request's result.
    void next_attempt(bool keep, std::uint64_t prompt_estimate) noexcept;
    // Forgets everything.
    void reset() noexcept { *this = usage_meter{}; }
    // The current attempt's request reached the upstream (written whole).
    void mark_sent() noexcept { sent_ = true; }
    bool sent() const noexcept { return sent_; }

    bool has_final() const noexcept { return final_; }
    bool has_any() const noexcept {
        return final_ || provisional_seen_ || received_ascii_ > 0 || received_other_ > 0;
    }
    // The completion estimate from what was received.
    std::uint64_t received_tokens() const noexcept {
        return estimate_tokens(received_ascii_) + received_other_;
    }

    // The request's usage. `prompt_estimate` is the request's own prompt estimate;
    // `upstream_took_it`: the answering attempt's upstream accepted the request (answered
    // 2xx, or the client left after it was sent). A request no upstream took costs
    // nothing. Usage carried from an earlier attempt is added, and makes it estimated.
    usage_counts result(std::uint64_t prompt_estimate, bool upstream_took_it) const noexcept;

  private:
    usage_counts attempt_result(std::uint64_t prompt_estimate,
                                bool upstream_took_it) const noexcept;

    bool final_ = false;
    bool sent_ = false;
    bool provisional_seen_ = false;
    usage_counts final_counts_;
    std::uint64_t prov_prompt_ = 0, prov_completion_ = 0, prov_cached_ = 0;
    std::size_t received_ascii_ = 0;
    std::uint64_t received_other_ = 0;
    usage_counts carried_;  // earlier attempts that an upstream took, then failed
};

// Cost of `u` at `model`'s price (cached prompt tokens at cached_input_per_mtok when
// set); 0 when the model has no price.
double price_usage(const config::model_config* model, const usage_counts& u) noexcept;

}  // namespace tollgate::core
