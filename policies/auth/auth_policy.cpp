#include "policies/auth/auth_policy.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>

namespace tollgate::policies {

namespace {

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::atomic<std::uint64_t> next_instance{1};

}  // namespace

auth_policy::auth_policy(const config::gateway_config& cfg, std::shared_ptr<const key_store> stored)
    : instance_(next_instance.fetch_add(1, std::memory_order_relaxed)), stored_(std::move(stored)) {
    for (const auto& k : cfg.keys) {
        key_digest d;
        if (!digest_from_hex(k.key_sha256, d))
            throw std::runtime_error("key " + k.id + ": bad key digest");
        keys_.emplace(d, std::make_shared<const config::key_config>(k));
        config_ids_.insert(k.id);
    }
}

std::string_view auth_policy::presented_key(const core::header_source& headers) noexcept {
    const std::string_view auth = trim(headers.get("authorization"));
    if (auth.size() > 7 && (auth[6] == ' ' || auth[6] == '\t')) {
        std::string_view scheme = auth.substr(0, 6);
        if (std::equal(scheme.begin(), scheme.end(), "bearer", [](char a, char b) {
                return std::tolower(static_cast<unsigned char>(a)) == b;
            }))
            return trim(auth.substr(7));
    }
    if (auto k = trim(headers.get("x-api-key")); !k.empty()) return k;
    return trim(headers.get("api-key"));
}

std::shared_ptr<const config::key_config> auth_policy::find(
    std::string_view secret, core::connection_memo* memo) const noexcept {
    if (secret.empty() || secret.size() > 4096) return nullptr;
    auto table = stored_ ? stored_->current() : nullptr;
    if (!memo) return lookup(secret, table);
    auto& m = memo->auth;
    if (m.key && m.resolver == instance_ && m.table.get() == table.get() &&
        m.secret.size() == secret.size() &&
        CRYPTO_memcmp(m.secret.data(), secret.data(), secret.size()) == 0)
        return m.key;
    auto key = lookup(secret, table);
    if (key) {
        try {
            memo->forget_auth();
            m.secret.assign(secret);
            m.resolver = instance_;
            m.table = std::move(table);
            m.key = key;
        } catch (...) {  // out of memory: no memo, the next request is checked in full
            memo->forget_auth();
        }
    }
    return key;
}

std::shared_ptr<const config::key_config> auth_policy::lookup(
    std::string_view secret, const std::shared_ptr<const key_store::table>& table) const noexcept {
    const key_digest d = config::sha256(secret);
    // A table lookup finds a candidate by digest; it is confirmed without an early exit.
    if (const auto it = keys_.find(d); it != keys_.end()) {
        if (CRYPTO_memcmp(it->first.data(), d.data(), d.size()) != 0) return nullptr;
        // A config key revoked through the admin API stays refused until the config gives
        // its id another secret.
        if (table && table->is_revoked(it->second->id, d)) return nullptr;
        return it->second;
    }
    if (!table) return nullptr;
    const auto it = table->by_digest.find(d);
    if (it == table->by_digest.end() || CRYPTO_memcmp(it->first.data(), d.data(), d.size()) != 0)
        return nullptr;
    if (config_ids_.contains(it->second->id)) return nullptr;  // the config file's key wins
    return it->second;
}

core::verdict auth_policy::on_request(core::request_context& ctx) const {
    if (!ctx.headers) {
        ctx.set_error_reply(core::errc::invalid_api_key);
        return core::verdict::reply;
    }
    auto key = find(presented_key(*ctx.headers), ctx.connection);
    if (!key) {
        ctx.set_error_reply(core::errc::invalid_api_key,
                            "missing or invalid API key: send it as 'Authorization: Bearer <key>'");
        return core::verdict::reply;
    }
    if (ctx.ep != core::endpoint::models && key->models &&
        std::find(key->models->begin(), key->models->end(), ctx.req.model) == key->models->end()) {
        ctx.set_error_reply(core::errc::model_not_allowed,
                            "this key may not use model '" + ctx.req.model.substr(0, 200) + "'");
        return core::verdict::reply;
    }
    ctx.key = std::move(key);
    return core::verdict::next;
}

}  // namespace tollgate::policies
