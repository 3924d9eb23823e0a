#pragma once
// auth: who is calling. Takes the client key from `Authorization: Bearer`, `x-api-key`
// or `api-key`, hashes it (SHA-256) and looks the digest up; keys are held only as
// digests and compared in constant time. Enforces the key's model allow-list.

#include <array>
#include <memory>
#include <unordered_map>
#include <vector>

#include "gateway/core/policy.hpp"
#include "gateway/core/policy_registry.hpp"

namespace tollgate::policies {

using key_digest = std::array<unsigned char, 32>;

class auth_policy final : public core::policy {
  public:
    explicit auth_policy(const config::gateway_config& cfg);

    std::string_view name() const noexcept override { return "auth"; }
    core::verdict on_request(core::request_context& ctx) const override;

    // The key presented by the request, or empty.
    static std::string_view presented_key(const core::header_source& headers) noexcept;
    // Finds the key whose digest matches `secret` (constant-time comparison of digests).
    std::shared_ptr<const config::key_config> find(std::string_view secret) const noexcept;

    static std::unique_ptr<core::policy> make(const core::policy_init& init);

  private:
    struct digest_hash {
        std::size_t operator()(const key_digest& d) const noexcept;
    };
    std::unordered_map<key_digest, std::shared_ptr<const config::key_config>, digest_hash> keys_;
};

}  // namespace tollgate::policies
