#include "policies/auth/auth_policy.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace tollgate::policies {

namespace {

bool from_hex(std::string_view hex, key_digest& out) {
    if (hex.size() != 64) return false;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < 32; ++i) {
        const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    return true;
}

key_digest digest_of(std::string_view secret) noexcept {
    key_digest d{};
    unsigned int len = 0;
    EVP_Digest(secret.data(), secret.size(), d.data(), &len, EVP_sha256(), nullptr);
    return d;
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

std::size_t auth_policy::digest_hash::operator()(const key_digest& d) const noexcept {
    std::size_t h;
    std::memcpy(&h, d.data(), sizeof h);  // a SHA-256 digest is already uniform
    return h;
}

auth_policy::auth_policy(const config::gateway_config& cfg) {
    for (const auto& k : cfg.keys) {
        key_digest d;
        if (!from_hex(k.key_sha256, d))
            throw std::runtime_error("key " + k.id + ": bad key digest");
        keys_.emplace(d, std::make_shared<const config::key_config>(k));
    }
}

std::unique_ptr<core::policy> auth_policy::make(const core::policy_init& init) {
    return std::make_unique<auth_policy>(init.config);
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
    std::string_view secret) const noexcept {
    if (secret.empty() || secret.size() > 4096) return nullptr;
    const key_digest d = digest_of(secret);
    const auto it = keys_.find(d);
    // The table lookup found a candidate by digest; confirm it without an early exit.
    if (it == keys_.end() || CRYPTO_memcmp(it->first.data(), d.data(), d.size()) != 0)
        return nullptr;
    return it->second;
}

core::verdict auth_policy::on_request(core::request_context& ctx) const {
    if (!ctx.headers) {
        ctx.set_error_reply(core::errc::invalid_api_key);
        return core::verdict::reply;
    }
    auto key = find(presented_key(*ctx.headers));
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
