#include "policies/usage/usage_policy.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>

namespace tollgate::policies {

using core::ms;

usage_policy::usage_policy(std::shared_ptr<ledger> l) : ledger_(std::move(l)) {}

core::verdict usage_policy::on_request(core::request_context& ctx) const {
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

void usage_policy::on_complete(core::request_context& ctx,
                               const core::outcome& out) const noexcept {
    // Refused by a policy, or never sent anywhere: no record (SPEC).
    if (!ctx.forwarded || !ctx.usage_final) return;
    try {
        // Every field is set below: the strings reuse the capacity the thread's earlier
        // records left, and push() copies them into a slot of the same kind.
        thread_local store::usage_record r;
        r.ts_ms = ctx.ended_unix_ms();
        r.request_id = ctx.request_id;
        if (ctx.key)
            r.key_id = ctx.key->id;
        else
            r.key_id.clear();
        r.model = ctx.req.model;
        if (ctx.served_by) {
            r.provider = ctx.served_by->provider->name;
            r.upstream_model = ctx.served_by->upstream_model;
        } else {
            r.provider.clear();
            r.upstream_model.clear();
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
        const auto now = ctx.ended_at();
        r.latency_ms = ms(now - ctx.received_at);
        r.ttft_ms.reset();
        if (ctx.first_byte_at) r.ttft_ms = ms(*ctx.first_byte_at - ctx.received_at);
        if (out.error != core::errc::ok)
            r.error.emplace(core::describe(out.error).code);
        else
            r.error.reset();
        ledger_->push(r);
        store::release_large_strings(r, 256);  // an unusual record's size is not kept
    } catch (...) {
        // Out of memory while building a record: nothing sensible left to do here.
    }
}

}  // namespace tollgate::policies
