#include "policies/rate_limit/rate_limit_policy.hpp"

#include <charconv>
#include <chrono>
#include <cstring>
#include <string_view>

#include "gateway/core/coarse_clock.hpp"
#include "policies/state/shared_state.hpp"

namespace tollgate::policies {

namespace {

struct rate_state final : core::policy_state {
    limiter::reservation held;
};

// One unit's three header names, each with its ": ". As a template argument, every copy
// below has a size known when compiling: a few moves, not a call to memcpy. (What is left
// of the ~1.1 K instructions a request here is mostly to_chars of the six numbers.)
struct unit_names {
    std::string_view limit, remaining, reset;
};
constexpr unit_names requests_names{
    "x-ratelimit-limit-requests: ", "x-ratelimit-remaining-requests: ",
    "x-ratelimit-reset-requests: "};
constexpr unit_names tokens_names{
    "x-ratelimit-limit-tokens: ", "x-ratelimit-remaining-tokens: ", "x-ratelimit-reset-tokens: "};

[[gnu::always_inline]] inline char* copy(char* p, std::string_view text) noexcept {
    std::memcpy(p, text.data(), text.size());
    return p + text.size();
}

// "x-ratelimit-{limit,remaining,reset}-<unit>: <value>\r\n".
template <const unit_names& U>
char* write_group(char* p, std::uint64_t limit, std::uint64_t remaining,
                  std::chrono::milliseconds reset) noexcept {
    p = copy(p, U.limit);
    p = std::to_chars(p, p + 20, limit).ptr;
    p = copy(p, "\r\n");
    p = copy(p, U.remaining);
    p = std::to_chars(p, p + 20, remaining).ptr;
    p = copy(p, "\r\n");
    p = copy(p, U.reset);
    p = limiter::write_reset(reset, p);
    return copy(p, "\r\n");
}

void add_headers(core::header_block& out, const limiter::decision& d) {
    if (!d.limit_requests && !d.limit_tokens) return;
    // The six lines written into one buffer and appended once (as six appends with two
    // temporary strings they were ~1.8 K instructions a request).
    char buf[6 * (33 + 20 + limiter::reset_text_max + 2)];
    char* p = buf;
    if (d.limit_requests)
        p = write_group<requests_names>(p, *d.limit_requests, d.remaining_requests.value_or(0),
                                        d.reset_requests);
    if (d.limit_tokens)
        p = write_group<tokens_names>(p, *d.limit_tokens, d.remaining_tokens.value_or(0),
                                      d.reset_tokens);
    const auto n = static_cast<std::size_t>(p - buf);
    // Room for the price header a whole answer adds later.
    out.reserve(out.text().size() + n + 64);
    out.append_lines(std::string_view(buf, n));
}

}  // namespace

rate_limit_policy::rate_limit_policy(std::size_t slot, std::shared_ptr<rate_store> store,
                                     std::shared_ptr<const admission> shared)
    : slot_(slot), store_(std::move(store)), shared_(std::move(shared)) {}

namespace {

void refuse(core::request_context& ctx, const limiter::decision& d) {
    ctx.refusal_reason = d.why == limiter::decision::reason::concurrency ? "concurrency"
                         : d.why == limiter::decision::reason::tpm       ? "tpm"
                                                                         : "rpm";
    ctx.set_error_reply(core::errc::rate_limited, d.why == limiter::decision::reason::concurrency
                                                      ? "too many requests in flight for this key"
                                                  : d.why == limiter::decision::reason::tpm
                                                      ? "token rate limit reached for this key"
                                                      : "request rate limit reached for this key");
    const auto secs = std::max<std::int64_t>(1, (d.retry_after.count() + 999) / 1000);
    ctx.reply.headers.add("retry-after", static_cast<std::uint64_t>(secs));
    add_headers(ctx.reply.headers, d);
}

bool has_limits(const core::request_context& ctx) {
    const auto& l = ctx.key->limits;
    return l.rpm || l.tpm || l.concurrency;
}

}  // namespace

core::verdict rate_limit_policy::on_request(core::request_context& ctx) const {
    if (!ctx.key || ctx.ep == core::endpoint::models) return core::verdict::next;
    if (shared_) {
        if (const auto* adm = shared_->find(ctx)) return apply_shared(ctx, *adm);
        return shared_->needed(ctx) ? core::verdict::suspend : core::verdict::next;
    }
    return admit_local(ctx);
}

boost::asio::awaitable<core::verdict> rate_limit_policy::on_request_async(
    core::request_context& ctx) const {
    const auto* adm = co_await shared_->admit(ctx);
    co_return adm ? apply_shared(ctx, *adm) : core::verdict::next;
}

core::verdict rate_limit_policy::apply_shared(core::request_context& ctx,
                                              const admission::result& adm) const {
    switch (adm.res.how) {
        case shared_state::result::kind::unavailable:
            if (adm.fallback) return admit_local(ctx);
            ctx.refusal_reason = "state_unavailable";
            ctx.set_error_reply(core::errc::state_unavailable,
                                "the shared limits store is unreachable; try again shortly");
            return core::verdict::reply;
        case shared_state::result::kind::refused:
            // A budget refusal is the budget policy's to answer.
            if (adm.res.budget_why != budget_book::decision::reason::none)
                return core::verdict::next;
            refuse(ctx, adm.res.rate);
            return core::verdict::reply;
        case shared_state::result::kind::admitted:
            add_headers(ctx.response_headers, adm.res.rate);
            return core::verdict::next;
    }
    return core::verdict::next;
}

core::verdict rate_limit_policy::admit_local(core::request_context& ctx) const {
    if (!has_limits(ctx)) return core::verdict::next;
    const auto& l = ctx.key->limits;
    const limiter::limits limits{l.rpm, l.tpm, l.concurrency};
    auto d = store_->admit(ctx.key->id, limits, ctx.estimate.tokens(), core::coarse_now());
    if (!d.admitted) {
        refuse(ctx, d);
        return core::verdict::reply;
    }
    add_headers(ctx.response_headers, d);
    if (d.held.valid()) ctx.emplace_state<rate_state>(slot_).held = std::move(d.held);
    return core::verdict::next;
}

void rate_limit_policy::on_settle(core::request_context& ctx) const noexcept {
    if (shared_) shared_->finish(ctx);
    auto* st = ctx.state<rate_state>(slot_);
    if (!st || !st->held.valid()) return;
    const auto now = core::coarse_now();  // a 60 s window: a tick (4 ms) behind is nothing
    if (!ctx.forwarded) {
        store_->release(st->held, now);
    } else {
        // The request's final usage (set before any on_settle), else what was reserved.
        const auto tokens = ctx.usage_final ? ctx.usage.prompt_tokens + ctx.usage.completion_tokens
                                            : st->held.tokens;
        store_->settle(st->held, tokens, now);
    }
}

}  // namespace tollgate::policies
