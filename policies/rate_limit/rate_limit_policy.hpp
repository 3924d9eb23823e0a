#pragma once
// rate_limit: per-key rpm, tpm and concurrency over a sliding 60-second window.
//
// Admission reserves atomically before the request is forwarded (tokens: the prompt
// estimate plus max_tokens, or the model's provider default), the reservation settles
// to the real usage when the request completes and is released on every path that never
// reached an upstream. Refusals are 429 rate_limit_exceeded with retry-after; OpenAI's
// x-ratelimit-* headers go on admitted answers too.

#include <memory>
#include <unordered_map>

#include "gateway/core/policy.hpp"
#include "gateway/core/policy_registry.hpp"
#include "policies/rate_limit/limiter.hpp"
#include "policies/state/admission.hpp"

namespace tollgate::policies {

// Where the counters live (state.backend). `memory` is one limiter shared by every worker
// thread of this process; thread-safe.
class rate_store {
  public:
    virtual ~rate_store() = default;
    virtual limiter::decision admit(const std::string& key, const limiter::limits& l,
                                    std::uint64_t estimated_tokens, limiter::time_point now) = 0;
    virtual void settle(limiter::reservation& r, std::uint64_t actual_tokens,
                        limiter::time_point now) = 0;
    virtual void release(limiter::reservation& r, limiter::time_point now) = 0;
};

class memory_rate_store final : public rate_store {
  public:
    limiter::decision admit(const std::string& key, const limiter::limits& l,
                            std::uint64_t estimated_tokens, limiter::time_point now) override {
        return limiter_.admit(key, l, estimated_tokens, now);
    }
    void settle(limiter::reservation& r, std::uint64_t actual, limiter::time_point now) override {
        limiter_.settle(r, actual, now);
    }
    void release(limiter::reservation& r, limiter::time_point now) override {
        limiter_.release(r, now);
    }

  private:
    limiter limiter_;
};

// With a shared state store (state.backend: redis, `shared` non-null) the limits are
// checked and reserved there, through the chain's admission (one Redis step with the
// budget when the chain has the budget policy too); `store` then holds the per-instance
// limits used while Redis is unreachable under fail_mode: open.
class rate_limit_policy final : public core::policy {
  public:
    rate_limit_policy(std::size_t slot, std::shared_ptr<rate_store> store,
                      std::shared_ptr<const admission> shared = nullptr);

    std::string_view name() const noexcept override { return "rate_limit"; }
    core::verdict on_request(core::request_context& ctx) const override;
    boost::asio::awaitable<core::verdict> on_request_async(
        core::request_context& ctx) const override;
    void on_settle(core::request_context& ctx) const noexcept override;

  private:
    core::verdict admit_local(core::request_context& ctx) const;
    core::verdict apply_shared(core::request_context& ctx, const admission::result& adm) const;

    std::size_t slot_;
    std::shared_ptr<rate_store> store_;
    std::shared_ptr<const admission> shared_;
};

}  // namespace tollgate::policies
