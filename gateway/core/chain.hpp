#pragma once
// An ordered, immutable list of policies with the calls that walk it.
// Thread-safe (const); one chain is shared by every request of a config snapshot.

#include <memory>
#include <vector>

#include "gateway/core/policy.hpp"

namespace tollgate::core {

class chain {
  public:
    explicit chain(std::vector<std::unique_ptr<policy>> policies);

    // Runs the request phase in order. verdict::reply: ctx.reply is set, the chain stopped.
    boost::asio::awaitable<verdict> run_request(request_context& ctx) const;

    void response_head(request_context& ctx, const response_head& head) const;
    void attempt_start(request_context& ctx, const route_target& t) const;
    void attempt_end(request_context& ctx, const route_target& t, const attempt_result& r) const;
    // Calls every policy's on_settle in reverse order.
    void settle(request_context& ctx) const noexcept;
    // Calls every policy's on_complete in reverse order.
    void complete(request_context& ctx, const outcome& out) const noexcept;

    std::size_t size() const noexcept { return policies_.size(); }
    const policy* find(std::string_view name) const noexcept;
    // The policies' names, in chain order.
    std::vector<std::string> names() const;

  private:
    std::vector<std::unique_ptr<policy>> policies_;
};

}  // namespace tollgate::core
