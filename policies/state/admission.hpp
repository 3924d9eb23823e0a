#pragma once
// The one Redis step that admits a request against its key's limits and budget together
// (state.backend: redis), shared by the rate_limit and budget policies of one chain. Built
// once per chain (for_chain), it knows which parts the chain has; the first of the two
// policies to run performs the step for both, the other reads its result, and the first
// on_settle settles or releases it. Immutable and shared by every worker; the
// per-request result lives in the request's own state slot.

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "gateway/core/policy_registry.hpp"
#include "policies/state/shared_state.hpp"

namespace tollgate::policies {

class admission {
  public:
    // One request's admission.
    struct result final : core::policy_state {
        shared_state::result res;
        bool fallback = false;  // Redis unreachable and fail_mode open: per-instance limits
        bool finished = false;  // settled or released
        bool with_budget = false;
        std::uint64_t est_tokens = 0;
        double est_usd = 0;
        std::string key_id;
    };

    admission(std::shared_ptr<shared_state> st, bool rate_part, bool budget_part,
              std::size_t slot) noexcept
        : state_(std::move(st)), rate_part_(rate_part), budget_part_(budget_part), slot_(slot) {}

    // The chain's one admission (made by the first of rate_limit and budget to ask), or
    // null without a shared state store.
    static std::shared_ptr<admission> for_chain(const core::policy_init& init,
                                                std::shared_ptr<shared_state> st);

    // Whether the request's key has something this chain admits in Redis: limits (with
    // rate_limit in the chain) or a budget (with budget in the chain).
    bool needed(const core::request_context& ctx) const noexcept;
    // The request's admission once performed, else null.
    const result* find(const core::request_context& ctx) const noexcept {
        return ctx.state<result>(slot_);
    }
    // Performs it (once per request: a second call finds the first's result). Null when
    // the request needs none.
    boost::asio::awaitable<const result*> admit(core::request_context& ctx) const;
    // Settles (forwarded: its final usage) or releases the hold once; later calls do
    // nothing.
    void finish(core::request_context& ctx) const noexcept;

  private:
    std::shared_ptr<shared_state> state_;
    bool rate_part_;
    bool budget_part_;
    std::size_t slot_;
};

}  // namespace tollgate::policies
