#include "policies/state/admission.hpp"

#include "policies/budget/budget_policy.hpp"

namespace tollgate::policies {

namespace asio = boost::asio;

std::shared_ptr<admission> admission::for_chain(const core::policy_init& init,
                                                std::shared_ptr<shared_state> st) {
    if (!st) return nullptr;
    return init.services.get_or_make<admission>("shared_admission", [&] {
        return std::make_shared<admission>(std::move(st), init.in_chain("rate_limit"),
                                           init.in_chain("budget"), init.services.new_slot());
    });
}

namespace {

bool has_limits(const config::key_config& k) {
    return k.limits.rpm || k.limits.tpm || k.limits.concurrency;
}

bool has_budget(const config::key_config& k) {
    return k.budget && (k.budget->tokens || k.budget->usd);
}

}  // namespace

bool admission::needed(const core::request_context& ctx) const noexcept {
    return ctx.key && ((rate_part_ && has_limits(*ctx.key)) || (budget_part_ && ctx.key->budget));
}

asio::awaitable<const admission::result*> admission::admit(core::request_context& ctx) const {
    if (const auto* done = find(ctx)) co_return done;
    if (!ctx.key) co_return nullptr;
    shared_state::request r;
    r.key_id = ctx.key->id;
    const auto& l = ctx.key->limits;
    if (rate_part_ && has_limits(*ctx.key)) r.rate = limiter::limits{l.rpm, l.tpm, l.concurrency};
    if (budget_part_ && has_budget(*ctx.key)) r.budget = budget_policy::to_budget(*ctx.key->budget);
    if (!r.rate && !r.budget) co_return nullptr;
    r.est_tokens = ctx.estimate.tokens();
    if (r.budget) r.est_usd = ctx.estimate.usd;
    result adm;
    adm.key_id = ctx.key->id;
    adm.with_budget = r.budget.has_value();
    adm.est_tokens = r.est_tokens;
    adm.est_usd = r.est_usd;
    adm.res = co_await state_->admit(std::move(r));
    if (adm.res.how == shared_state::result::kind::unavailable) {
        if (state_->mode() == config::fail_mode::open) {
            adm.fallback = true;
            state_->count_fallback();
        } else {
            state_->count_refusal();
        }
    }
    // Stored only once complete: a request torn down while Redis answered holds nothing
    // to settle.
    co_return &ctx.emplace_state<result>(slot_, std::move(adm));
}

void admission::finish(core::request_context& ctx) const noexcept {
    auto* adm = ctx.state<result>(slot_);
    if (!adm || adm->finished) return;
    const bool fallback_spend = adm->fallback && adm->with_budget && ctx.forwarded;
    if (adm->res.how != shared_state::result::kind::admitted && !fallback_spend) return;
    adm->finished = true;
    if (!ctx.forwarded) {
        state_->release(adm->key_id, adm->res.rid);
        return;
    }
    // The request's final usage (set before any on_settle), else what was reserved.
    std::uint64_t tokens = 0;
    double usd = 0;
    if (ctx.usage_final) {
        tokens = ctx.usage.prompt_tokens + ctx.usage.completion_tokens;
        usd = ctx.cost_usd.value_or(0);
    } else {
        // Not set (cannot happen for a forwarded request): the reserved worst case stands.
        tokens = adm->est_tokens;
        usd = adm->est_usd;
    }
    state_->settle(adm->key_id, adm->res.rid, tokens, usd, adm->with_budget,
                   adm->fallback || adm->res.near_cap);
}

}  // namespace tollgate::policies
