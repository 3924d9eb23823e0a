#include "gateway/core/usage_meter.hpp"

#include <algorithm>

#include "config/config.hpp"

namespace tollgate::core {

std::uint64_t estimate_text_tokens(std::string_view text) noexcept {
    std::size_t ascii = 0;
    std::uint64_t other = 0;
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x80)
            ++ascii;
        else if (c >= 0xC0)
            ++other;  // a lead byte: one character; continuation bytes add nothing
    }
    return estimate_tokens(ascii) + other;
}

void usage_meter::final_figures(const usage_figures& f) noexcept {
    // A "final" count without any prompt figure (a bare total, Anthropic's message_delta
    // without a message_start) cannot be billed as it is: it only bounds the estimate.
    // A prompt of 0 tokens is no figure either: every request the upstream took has a
    // prompt (Ollama, for one, reports 0 when its cache served the whole prompt).
    const bool prompt_given = f.prompt_tokens && *f.prompt_tokens > 0;
    if (!prompt_given && !(provisional_seen_ && prov_prompt_ > 0)) {
        usage_figures bound = f;
        if (!prompt_given) bound.prompt_tokens.reset();
        provisional(bound);
        return;
    }
    final_ = true;
    final_counts_.prompt_tokens = prompt_given ? *f.prompt_tokens : prov_prompt_;
    final_counts_.completion_tokens = f.completion_tokens.value_or(prov_completion_);
    final_counts_.cached_tokens = f.cached_tokens.value_or(prov_cached_);
    final_counts_.from_upstream = true;
}

void usage_meter::provisional(const usage_figures& f) noexcept {
    provisional_seen_ = true;
    if (f.prompt_tokens) prov_prompt_ = std::max(prov_prompt_, *f.prompt_tokens);
    if (f.completion_tokens) prov_completion_ = std::max(prov_completion_, *f.completion_tokens);
    if (f.cached_tokens) prov_cached_ = std::max(prov_cached_, *f.cached_tokens);
}

usage_counts usage_meter::attempt_result(std::uint64_t prompt_estimate,
                                         bool upstream_took_it) const noexcept {
    if (final_) return final_counts_;
    usage_counts u;
    u.from_upstream = false;
    if (!upstream_took_it && !has_any()) return u;
    // Never below what the upstream itself said, never zero for a prompt it took.
    u.prompt_tokens = std::max({prov_prompt_, prompt_estimate, std::uint64_t{1}});
    u.completion_tokens = std::max(prov_completion_, received_tokens());
    u.cached_tokens = std::min(prov_cached_, u.prompt_tokens);
    return u;
}

void usage_meter::next_attempt(bool keep, std::uint64_t prompt_estimate) noexcept {
    const usage_counts carried = carried_;
    const usage_counts previous = keep ? attempt_result(prompt_estimate, true) : usage_counts{};
    reset();
    carried_ = carried;
    carried_.prompt_tokens += previous.prompt_tokens;
    carried_.completion_tokens += previous.completion_tokens;
    carried_.cached_tokens += previous.cached_tokens;
}

usage_counts usage_meter::result(std::uint64_t prompt_estimate,
                                 bool upstream_took_it) const noexcept {
    usage_counts u = attempt_result(prompt_estimate, upstream_took_it);
    if (carried_.prompt_tokens == 0 && carried_.completion_tokens == 0) return u;
    u.prompt_tokens += carried_.prompt_tokens;
    u.completion_tokens += carried_.completion_tokens;
    u.cached_tokens += carried_.cached_tokens;
    u.from_upstream = false;  // part of it is an estimate
    return u;
}

double price_usage(const config::model_config* model, const usage_counts& u) noexcept {
    if (!model || !model->price) return 0;
    const auto& p = *model->price;
    const std::uint64_t cached = std::min(u.cached_tokens, u.prompt_tokens);
    const double cached_price = p.cached_input_per_mtok.value_or(p.input_per_mtok);
    return (static_cast<double>(u.prompt_tokens - cached) * p.input_per_mtok +
            static_cast<double>(cached) * cached_price +
            static_cast<double>(u.completion_tokens) * p.output_per_mtok) /
           1e6;
}

}  // namespace tollgate::core
