#pragma once
// budget: per-key token and/or USD budgets per day, month (UTC calendar) or total.
//
// The worst case (prompt estimate + max_tokens, priced) is reserved before forwarding and
// settled to the real usage after; a record counts as spent for good once the ledger made
// it durable (budget_book::committed, wired to the ledger's commit callback). Spent →
// 429 insufficient_quota / budget_exceeded.

#include <memory>

#include "gateway/core/policy.hpp"
#include "gateway/core/policy_registry.hpp"
#include "policies/budget/budget_book.hpp"
#include "policies/state/admission.hpp"

namespace tollgate::policies {

// With a shared state store (`shared` non-null) the budget is checked and held in Redis,
// through the chain's admission (one step with the rate limits when rate_limit is also in
// the chain; whichever of the two runs first asks for both); `book` then serves while
// Redis is unreachable under fail_mode: open.
class budget_policy final : public core::policy {
  public:
    budget_policy(std::size_t slot, std::shared_ptr<budget_book> book,
                  std::shared_ptr<const admission> shared = nullptr);

    std::string_view name() const noexcept override { return "budget"; }
    core::verdict on_request(core::request_context& ctx) const override;
    boost::asio::awaitable<core::verdict> on_request_async(
        core::request_context& ctx) const override;
    void on_settle(core::request_context& ctx) const noexcept override;

    static budget_book::budget to_budget(const config::budget_config& b) noexcept;

  private:
    core::verdict reserve_local(core::request_context& ctx) const;
    core::verdict apply_shared(core::request_context& ctx, const admission::result& adm) const;

    std::size_t slot_;
    std::shared_ptr<budget_book> book_;
    std::shared_ptr<const admission> shared_;
};

}  // namespace tollgate::policies
