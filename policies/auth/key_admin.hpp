#pragma once
// The admin API for client keys (SPEC "Admin API"): POST/GET /admin/keys,
// PATCH/DELETE /admin/keys/{id}. Validates bodies with the config loader's rules for a
// `keys:` entry, keeps ids unique across the config file and the key store, and returns
// a new key's secret exactly once (only its SHA-256 is stored).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "config/config.hpp"
#include "policies/auth/key_store.hpp"

namespace tollgate::policies {

class key_admin {
  public:
    // `current_config` returns the configuration in force (reloads change it);
    // `on_budget` is called after a key with a budget was created or its budget changed
    // (the budget book is seeded from the ledger there); `on_change` after every key
    // created, changed or revoked (announced to the other instances there).
    key_admin(std::shared_ptr<key_store> store,
              std::function<std::shared_ptr<const config::gateway_config>()> current_config,
              std::function<void(const config::key_config&)> on_budget,
              std::function<void()> on_change = {});

    // Each returns the HTTP status and the JSON body (OpenAI error shape on errors).
    // Thread-safe.
    std::pair<int, std::string> create(std::string_view body, std::int64_t now_ms);
    std::pair<int, std::string> list() const;
    std::pair<int, std::string> patch(std::string_view id, std::string_view body);
    std::pair<int, std::string> remove(std::string_view id);

    // A new secret: "tg-" and 43 URL-safe characters (256 random bits).
    static std::string new_secret();
    // The key as GET /admin/keys shows it (no secret, no digest).
    static std::string key_json(const config::key_config& k, bool from_config,
                                std::int64_t created_at_ms, bool revoked = false);

  private:
    void seed(const config::key_config& k) const noexcept;
    void changed() const noexcept;

    std::shared_ptr<key_store> store_;
    std::function<std::shared_ptr<const config::gateway_config>()> current_config_;
    std::function<void(const config::key_config&)> on_budget_;
    std::function<void()> on_change_;
};

}  // namespace tollgate::policies
