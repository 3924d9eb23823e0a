#pragma once
// usage: one usage record per request that reached an upstream, whatever its ending.
//
// Asks OpenAI-kind upstreams for the final usage chunk of a stream and hides it from a
// client that did not ask for it; reads the upstream's usage from answers and events;
// estimates when there is none (cut short, or a server that never sends usage); prices
// the request; and pushes the record to the ledger's queue (no I/O here). Admission
// waits while the ledger's queue is full rather than dropping records.

#include <chrono>
#include <memory>

#include "gateway/core/policy.hpp"
#include "gateway/core/policy_registry.hpp"
#include "policies/usage/ledger.hpp"

namespace tollgate::policies {

class usage_policy final : public core::policy {
  public:
    usage_policy(const config::gateway_config& cfg, std::size_t slot, std::shared_ptr<ledger> l);

    std::string_view name() const noexcept override { return "usage"; }
    core::verdict on_request(core::request_context& ctx) const override;
    boost::asio::awaitable<core::verdict> on_request_async(
        core::request_context& ctx) const override;
    void on_response_body(core::request_context& ctx, std::string_view body) const override;
    core::event_action on_response_event(core::request_context& ctx,
                                         const core::sse_event& ev) const override;
    void on_complete(core::request_context& ctx, const core::outcome& out) const noexcept override;

    // Fills ctx.usage and ctx.cost_usd with the request's final figures (idempotent).
    static void finalize(core::request_context& ctx, const core::outcome& out) noexcept;
    static double price(const config::model_config* model, const core::usage_counts& u) noexcept;

    // How long admission waits for room in a full ledger queue before answering 503.
    static constexpr std::chrono::seconds max_admission_wait{10};

  private:
    std::size_t slot_;
    std::shared_ptr<ledger> ledger_;
};

}  // namespace tollgate::policies
