#pragma once
// auth: who is calling. Takes the client key from `Authorization: Bearer`, `x-api-key`
// or `api-key`, hashes it (SHA-256) and looks the digest up, first among the config
// file's keys, then among the keys created through the admin API (key_store); keys are
// held only as digests and compared in constant time. A stored key whose id the config
// also defines is ignored (the config wins). Enforces the key's model allow-list.

#include <memory>
#include <set>
#include <unordered_map>
#include <vector>

#include "gateway/core/policy.hpp"
#include "gateway/core/policy_registry.hpp"
#include "policies/auth/key_store.hpp"

namespace tollgate::policies {

class auth_policy final : public core::policy {
  public:
    explicit auth_policy(const config::gateway_config& cfg,
                         std::shared_ptr<const key_store> stored = nullptr);

    std::string_view name() const noexcept override { return "auth"; }
    core::verdict on_request(core::request_context& ctx) const override;

    // The key presented by the request, or empty.
    static std::string_view presented_key(const core::header_source& headers) noexcept;
    // Finds the key whose digest matches `secret` (constant-time comparison of digests).
    // With a connection's memo: first the key its last request presented, if `secret` is
    // the same bytes (compared in constant time) and nothing about the keys has changed
    // since; what is found is remembered there for the next request.
    std::shared_ptr<const config::key_config> find(
        std::string_view secret, core::connection_memo* memo = nullptr) const noexcept;

  private:
    std::shared_ptr<const config::key_config> lookup(
        std::string_view secret,
        const std::shared_ptr<const key_store::table>& table) const noexcept;

    // Tells this policy's memos from those of an earlier one (a reload makes a new policy).
    std::uint64_t instance_;
    std::unordered_map<key_digest, std::shared_ptr<const config::key_config>, digest_hash> keys_;
    std::set<std::string, std::less<>> config_ids_;
    std::shared_ptr<const key_store> stored_;
};

}  // namespace tollgate::policies
