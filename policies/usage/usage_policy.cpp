#include "policies/usage/usage_policy.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdio>

#include "policies/usage/usage_extract.hpp"

namespace tollgate::policies {

namespace {

// Per request: generated text seen so far (for estimates).
struct usage_state final : core::policy_state {
    std::size_t generated_bytes = 0;
};

void take(core::request_context& ctx, const extracted_usage& u) {
    if (u.prompt_tokens) ctx.usage.prompt_tokens = *u.prompt_tokens;
    if (u.completion_tokens) ctx.usage.completion_tokens = *u.completion_tokens;
    if (u.cached_tokens) ctx.usage.cached_tokens = *u.cached_tokens;
    if (!u.completion_tokens && u.total_tokens && u.prompt_tokens &&
        *u.total_tokens >= *u.prompt_tokens)
        ctx.usage.completion_tokens = *u.total_tokens - *u.prompt_tokens;
    ctx.usage.from_upstream = true;
    ctx.usage_seen = true;
}

double ms(core::clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace

usage_policy::usage_policy(const config::gateway_config&, std::size_t slot,
                           std::shared_ptr<ledger> l)
    : slot_(slot), ledger_(std::move(l)) {}

core::verdict usage_policy::on_request(core::request_context& ctx) const {
    ctx.emplace_state<usage_state>(slot_);
    ctx.want_stream_usage = true;
    return ledger_->saturated() ? core::verdict::suspend : core::verdict::next;
}

boost::asio::awaitable<core::verdict> usage_policy::on_request_async(
    core::request_context& ctx) const {
    // Backpressure: the ledger is behind, so admit more slowly instead of dropping records.
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    const auto deadline = core::clock::now() + max_admission_wait;
    while (ledger_->saturated()) {
        if (core::clock::now() >= deadline) {
            ctx.set_error_reply(core::errc::overloaded, "the usage ledger is behind; try again");
            co_return core::verdict::reply;
        }
        timer.expires_after(std::chrono::milliseconds(5));
        co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
    co_return core::verdict::next;
}

void usage_policy::on_response_body(core::request_context& ctx, std::string_view body) const {
    if (auto u = find_usage(body)) {
        take(ctx, *u);
        // The client sees what this answer cost when its model has a price.
        const auto* model =
            ctx.served_by && ctx.served_by->model ? ctx.served_by->model : ctx.model;
        if (model && model->price) {
            char buf[48];
            int n = std::snprintf(buf, sizeof buf, "%.10f", price(model, ctx.usage));
            while (n > 3 && buf[n - 1] == '0' && buf[n - 2] != '.') --n;
            ctx.response_headers.emplace_back("x-tollgate-cost-usd",
                                              std::string(buf, static_cast<std::size_t>(n)));
        }
    } else if (auto* st = ctx.state<usage_state>(slot_))
        st->generated_bytes += generated_text_bytes(body);
}

core::event_action usage_policy::on_response_event(core::request_context& ctx,
                                                   const core::sse_event& ev) const {
    if (!ev.has_data || ev.data.size() < 2 || ev.data[0] != '{') return core::event_action::pass;
    if (auto u = find_usage(ev.data)) {
        take(ctx, *u);
        // The final usage-only chunk we asked for: hidden unless the client asked too.
        if (!ctx.req.client_include_usage && ctx.ep == core::endpoint::chat_completions &&
            has_empty_choices(ev.data))
            return core::event_action::drop;
    }
    if (auto* st = ctx.state<usage_state>(slot_))
        st->generated_bytes += generated_text_bytes(ev.data);
    return core::event_action::pass;
}

double usage_policy::price(const config::model_config* model,
                           const core::usage_counts& u) noexcept {
    if (!model || !model->price) return 0;
    const auto& p = *model->price;
    const std::uint64_t cached = std::min(u.cached_tokens, u.prompt_tokens);
    const double cached_price = p.cached_input_per_mtok.value_or(p.input_per_mtok);
    return (static_cast<double>(u.prompt_tokens - cached) * p.input_per_mtok +
            static_cast<double>(cached) * cached_price +
            static_cast<double>(u.completion_tokens) * p.output_per_mtok) /
           1e6;
}

void usage_policy::finalize(core::request_context& ctx, const core::outcome& out) noexcept {
    if (ctx.usage_final) return;
    ctx.usage_final = true;
    if (!ctx.usage_seen) {
        // No usage from the upstream: estimate. The prompt counts once an upstream took
        // the request (it answered, or we left while it worked); a request that no
        // upstream accepted costs nothing.
        const bool upstream_took_it =
            (ctx.upstream_status >= 200 && ctx.upstream_status < 300) || out.client_gone;
        ctx.usage.prompt_tokens = upstream_took_it ? estimate_tokens(ctx.req.prompt_bytes) : 0;
        ctx.usage.from_upstream = false;
    }
    // Priced as the model that served (a fallback may cost more than the one asked for).
    ctx.cost_usd =
        price(ctx.served_by && ctx.served_by->model ? ctx.served_by->model : ctx.model, ctx.usage);
}

void usage_policy::on_complete(core::request_context& ctx,
                               const core::outcome& out) const noexcept {
    if (!ctx.forwarded) return;  // refused by a policy: no record (SPEC)
    try {
        auto* st = ctx.state<usage_state>(slot_);
        if (!ctx.usage_seen && st)
            ctx.usage.completion_tokens = estimate_tokens(st->generated_bytes);
        finalize(ctx, out);

        usage_record r;
        r.ts_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
        r.request_id = ctx.request_id;
        if (ctx.key) r.key_id = ctx.key->id;
        r.model = ctx.req.model;
        if (ctx.served_by) {
            r.provider = ctx.served_by->provider->name;
            r.upstream_model = ctx.served_by->upstream_model;
        }
        r.status = out.status;
        r.stream = ctx.req.stream;
        r.attempts = ctx.attempts;
        r.prompt_tokens = ctx.usage.prompt_tokens;
        r.completion_tokens = ctx.usage.completion_tokens;
        r.total_tokens = ctx.usage.prompt_tokens + ctx.usage.completion_tokens;
        r.cached_tokens = ctx.usage.cached_tokens;
        r.estimated = !ctx.usage.from_upstream;
        r.cost_usd = ctx.cost_usd;
        const auto now = core::clock::now();
        r.latency_ms = ms(now - ctx.received_at);
        if (ctx.first_byte_at) r.ttft_ms = ms(*ctx.first_byte_at - ctx.received_at);
        if (out.error != core::errc::ok) r.error = std::string(core::describe(out.error).code);
        ledger_->push(std::move(r));
    } catch (...) {
        // Out of memory while building a record: nothing sensible left to do here.
    }
}

}  // namespace tollgate::policies
