#include "gateway/core/chain.hpp"

#include <boost/asio/use_awaitable.hpp>

namespace tollgate::core {

boost::asio::awaitable<verdict> policy::on_request_async(request_context&) const {
    co_return verdict::next;
}

chain::chain(std::vector<std::unique_ptr<policy>> policies) : policies_(std::move(policies)) {}

boost::asio::awaitable<verdict> chain::run_request(request_context& ctx) const {
    if (ctx.states.size() < policies_.size()) ctx.states.resize(policies_.size());
    for (const auto& p : policies_) {
        verdict v = p->on_request(ctx);
        if (v == verdict::suspend) v = co_await p->on_request_async(ctx);
        if (v == verdict::reply) {
            if (ctx.reply.status == 0) ctx.set_error_reply(errc::internal);
            co_return verdict::reply;
        }
    }
    co_return verdict::next;
}

void chain::response_head(request_context& ctx, const struct response_head& head) const {
    for (auto it = policies_.rbegin(); it != policies_.rend(); ++it)
        (*it)->on_response_head(ctx, head);
}

void chain::attempt_start(request_context& ctx, const route_target& t) const {
    for (const auto& p : policies_) p->on_attempt_start(ctx, t);
}

void chain::attempt_end(request_context& ctx, const route_target& t,
                        const attempt_result& r) const {
    for (auto it = policies_.rbegin(); it != policies_.rend(); ++it)
        (*it)->on_attempt_end(ctx, t, r);
}

void chain::settle(request_context& ctx) const noexcept {
    for (auto it = policies_.rbegin(); it != policies_.rend(); ++it) (*it)->on_settle(ctx);
}

void chain::complete(request_context& ctx, const outcome& out) const noexcept {
    for (auto it = policies_.rbegin(); it != policies_.rend(); ++it) (*it)->on_complete(ctx, out);
}

std::vector<std::string> chain::names() const {
    std::vector<std::string> out;
    out.reserve(policies_.size());
    for (const auto& p : policies_) out.emplace_back(p->name());
    return out;
}

const policy* chain::find(std::string_view name) const noexcept {
    for (const auto& p : policies_)
        if (p->name() == name) return p.get();
    return nullptr;
}

}  // namespace tollgate::core
