#include "gateway/core/admission_estimate.hpp"

#include <algorithm>
#include <limits>
#include <vector>

namespace tollgate::core {

namespace {

std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) noexcept {
    if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a)
        return std::numeric_limits<std::uint64_t>::max();
    return a * b;
}

}  // namespace

request_estimate estimate_request(const config::gateway_config& cfg, endpoint ep,
                                  const request_body& req) {
    request_estimate e;
    e.prompt_tokens = req.prompt_tokens;

    // The model and every fallback that may serve it (fallbacks of fallbacks included,
    // each once).
    std::vector<const config::model_config*> models;
    if (const auto* m = cfg.find_model(req.model)) models.push_back(m);
    for (std::size_t i = 0; i < models.size() && models.size() < 64; ++i)
        for (const auto& f : models[i]->fallbacks)
            if (const auto* fm = cfg.find_model(f);
                fm && std::find(models.begin(), models.end(), fm) == models.end())
                models.push_back(fm);

    double input_price = 0, output_price = 0;
    std::uint64_t default_completion = 0;
    for (const auto* m : models) {
        if (m->price) {
            input_price = std::max(input_price, m->price->input_per_mtok);
            output_price = std::max(output_price, m->price->output_per_mtok);
        }
        for (const auto& t : m->targets)
            if (const auto* p = cfg.find_provider(t.provider))
                default_completion =
                    std::max<std::uint64_t>(default_completion, p->default_max_tokens);
    }
    if (models.empty()) default_completion = config::provider_config{}.default_max_tokens;

    // Clamped to 10^15, like every token count: sums of a few never overflow.
    constexpr std::uint64_t cap = 1'000'000'000'000'000;
    e.prompt_tokens = std::min(e.prompt_tokens, cap);
    if (ep != endpoint::embeddings && ep != endpoint::models)
        e.completion_tokens =
            std::min(saturating_mul(req.max_tokens.value_or(default_completion), req.n), cap);
    e.usd = (static_cast<double>(e.prompt_tokens) * input_price +
             static_cast<double>(e.completion_tokens) * output_price) /
            1e6;
    return e;
}

}  // namespace tollgate::core
