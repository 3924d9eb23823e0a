#pragma once
// usage: one usage record per request that reached an upstream, whatever its ending.
//
// The request's usage and cost are already final when on_complete runs (the pipeline's
// usage meter, fed by the upstream adapters, settles them first), so this policy only
// turns them into a record and pushes it to the ledger's queue (no I/O here), wherever it
// stands in the chain. Admission waits while the ledger's queue is full rather than
// dropping records.

#include <chrono>
#include <memory>

#include "gateway/core/policy.hpp"
#include "gateway/core/policy_registry.hpp"
#include "policies/usage/ledger.hpp"

namespace tollgate::policies {

class usage_policy final : public core::policy {
  public:
    explicit usage_policy(std::shared_ptr<ledger> l);

    std::string_view name() const noexcept override { return "usage"; }
    core::verdict on_request(core::request_context& ctx) const override;
    boost::asio::awaitable<core::verdict> on_request_async(
        core::request_context& ctx) const override;
    void on_complete(core::request_context& ctx, const core::outcome& out) const noexcept override;

    // How long admission waits for room in a full ledger queue before answering 503.
    static constexpr std::chrono::seconds max_admission_wait{10};

  private:
    std::shared_ptr<ledger> ledger_;
};

}  // namespace tollgate::policies
