#include "policies/budget/budget_policy.hpp"

#include "gateway/core/coarse_clock.hpp"
#include "policies/rate_limit/rate_limit_policy.hpp"
#include "policies/state/shared_state.hpp"
#include "policies/usage/usage_policy.hpp"

namespace tollgate::policies {

namespace {

struct budget_state final : core::policy_state {
    budget_book::reservation held;
};

std::int64_t now_ms() {
    return core::coarse_unix_ms();
}

}  // namespace

budget_book::budget budget_policy::to_budget(const config::budget_config& b) noexcept {
    budget_book::budget out;
    out.tokens = b.tokens;
    out.usd = b.usd;
    out.per = b.period == config::budget_period::day     ? budget_book::period::day
              : b.period == config::budget_period::month ? budget_book::period::month
                                                         : budget_book::period::total;
    return out;
}

budget_policy::budget_policy(std::size_t slot, std::shared_ptr<budget_book> book,
                             std::shared_ptr<const admission> shared)
    : slot_(slot), book_(std::move(book)), shared_(std::move(shared)) {}

namespace {

void refuse(core::request_context& ctx, budget_book::decision::reason why) {
    ctx.refusal_reason = "budget";
    ctx.set_error_reply(core::errc::budget_exceeded,
                        why == budget_book::decision::reason::usd
                            ? "the key's USD budget for this period is spent"
                            : "the key's token budget for this period is spent");
}

}  // namespace

core::verdict budget_policy::on_request(core::request_context& ctx) const {
    if (!ctx.key || !ctx.key->budget || ctx.ep == core::endpoint::models)
        return core::verdict::next;
    if (shared_) {
        if (const auto* adm = shared_->find(ctx)) return apply_shared(ctx, *adm);
        return core::verdict::suspend;
    }
    return reserve_local(ctx);
}

boost::asio::awaitable<core::verdict> budget_policy::on_request_async(
    core::request_context& ctx) const {
    const auto* adm = co_await shared_->admit(ctx);
    co_return adm ? apply_shared(ctx, *adm) : core::verdict::next;
}

core::verdict budget_policy::apply_shared(core::request_context& ctx,
                                          const admission::result& adm) const {
    switch (adm.res.how) {
        case shared_state::result::kind::unavailable:
            if (adm.fallback) return reserve_local(ctx);
            ctx.refusal_reason = "state_unavailable";
            ctx.set_error_reply(core::errc::state_unavailable,
                                "the shared limits store is unreachable; try again shortly");
            return core::verdict::reply;
        case shared_state::result::kind::refused:
            if (adm.res.budget_why == budget_book::decision::reason::none)
                return core::verdict::next;  // a rate refusal: the rate_limit policy's to answer
            refuse(ctx, adm.res.budget_why);
            return core::verdict::reply;
        case shared_state::result::kind::admitted:
            return core::verdict::next;
    }
    return core::verdict::next;
}

core::verdict budget_policy::reserve_local(core::request_context& ctx) const {
    auto d = book_->reserve(ctx.key->id, to_budget(*ctx.key->budget), ctx.estimate.tokens(),
                            ctx.estimate.usd, now_ms());
    if (!d.admitted) {
        refuse(ctx, d.why);
        return core::verdict::reply;
    }
    if (d.held.valid()) ctx.emplace_state<budget_state>(slot_).held = std::move(d.held);
    return core::verdict::next;
}

void budget_policy::on_settle(core::request_context& ctx) const noexcept {
    if (shared_) shared_->finish(ctx);
    auto* st = ctx.state<budget_state>(slot_);
    if (!st || !st->held.valid()) return;
    if (!ctx.forwarded) {
        book_->release(st->held);
    } else if (ctx.usage_final) {
        book_->settle(st->held, ctx.usage.prompt_tokens + ctx.usage.completion_tokens,
                      ctx.cost_usd.value_or(0));
    } else {
        // Not set (cannot happen for a forwarded request): the reserved worst case stands.
        book_->settle(st->held, st->held.tokens, st->held.usd);
    }
}

}  // namespace tollgate::policies
