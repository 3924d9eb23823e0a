#include "policies/auth/key_admin.hpp"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <stdexcept>

#include "config/loader.hpp"
#include "gateway/core/errors.hpp"
#include "gateway/core/json_text.hpp"
#include "policies/usage/usage_report.hpp"
#include "store/usage_record.hpp"

namespace tollgate::policies {

namespace json_text = core::json_text;

namespace {

std::pair<int, std::string> error(int status, std::string_view code, std::string_view message) {
    return {status, core::invalid_request_body(code, message)};
}

// Ids of admin-created keys: what a metric label and a URL path carry without escaping.
bool valid_id(std::string_view id) {
    return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.' || c == ':' || c == '@';
    });
}

const config::key_config* config_key(const config::gateway_config& cfg, std::string_view id) {
    for (const auto& k : cfg.keys)
        if (k.id == id) return &k;
    return nullptr;
}

// 400 naming the first unknown model, if any.
std::optional<std::pair<int, std::string>> check_terms(const config::gateway_config& cfg,
                                                       const config::key_config& k) {
    if (k.models)
        for (const auto& m : *k.models)
            if (!cfg.find_model(m))
                return error(400, "invalid_value",
                             "models: unknown model '" + m.substr(0, 200) + "'");
    // As --check: address ranges restrict a key only where ip_allow runs.
    if (k.allowed_cidrs &&
        std::find(cfg.policies.begin(), cfg.policies.end(), "ip_allow") == cfg.policies.end())
        return error(400, "invalid_value",
                     "allowed_cidrs needs the ip_allow policy in the running chain (policies:); "
                     "without it the key would work from any address");
    return std::nullopt;
}

std::pair<int, std::string> bad_body(const std::vector<config::config_error>& errors) {
    std::string message;
    for (const auto& e : errors) {
        if (!message.empty()) message += "; ";
        message += e.message;
    }
    return error(400, "invalid_value", message);
}

}  // namespace

key_admin::key_admin(std::shared_ptr<key_store> store,
                     std::function<std::shared_ptr<const config::gateway_config>()> current_config,
                     std::function<void(const config::key_config&)> on_budget,
                     std::function<void()> on_change)
    : store_(std::move(store)),
      current_config_(std::move(current_config)),
      on_budget_(std::move(on_budget)),
      on_change_(std::move(on_change)) {}

void key_admin::changed() const noexcept {
    if (!on_change_) return;
    try {
        on_change_();
    } catch (const std::exception& e) {
        spdlog::error("admin: key change not announced to other instances: {}", e.what());
    }
}

std::string key_admin::new_secret() {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[33];
    if (RAND_bytes(raw, sizeof raw) != 1) throw std::runtime_error("no randomness for a new key");
    // 33 bytes = 264 bits → 44 base64url digits; keep 43 (258 bits, > 256).
    std::string out = "tg-";
    for (std::size_t i = 0; i < sizeof raw; i += 3) {
        const std::uint32_t v = std::uint32_t{raw[i]} << 16 | std::uint32_t{raw[i + 1]} << 8 |
                                std::uint32_t{raw[i + 2]};
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    out.resize(3 + 43);
    return out;
}

std::string key_admin::key_json(const config::key_config& k, bool from_config,
                                std::int64_t created_at_ms, bool revoked) {
    std::string out = R"({"id":)";
    json_text::append_string(out, k.id);
    out += R"(,"models":)";
    if (k.models) {
        out += '[';
        for (std::size_t i = 0; i < k.models->size(); ++i) {
            if (i) out += ',';
            json_text::append_string(out, (*k.models)[i]);
        }
        out += ']';
    } else {
        out += "null";
    }
    out += R"(,"limits":{)";
    bool first = true;
    const auto limit = [&](const char* name, const std::optional<std::uint64_t>& v) {
        if (!v) return;
        if (!first) out += ',';
        first = false;
        out += '"';
        out += name;
        out += "\":";
        json_text::append_uint(out, *v);
    };
    limit("rpm", k.limits.rpm);
    limit("tpm", k.limits.tpm);
    limit("concurrency", k.limits.concurrency);
    out += R"(},"budget":)";
    if (k.budget) {
        out += '{';
        if (k.budget->tokens) {
            out += R"("tokens":)";
            json_text::append_uint(out, *k.budget->tokens);
            out += ',';
        }
        if (k.budget->usd) {
            out += R"("usd":)";
            json_text::append_double(out, *k.budget->usd);
            out += ',';
        }
        out += R"("period":")";
        out += config::budget_period_name(k.budget->period);
        out += "\"}";
    } else {
        out += "null";
    }
    out += R"(,"allowed_cidrs":)";
    if (k.allowed_cidrs) {
        out += '[';
        for (std::size_t i = 0; i < k.allowed_cidrs->size(); ++i) {
            if (i) out += ',';
            json_text::append_string(out, (*k.allowed_cidrs)[i].text);
        }
        out += ']';
    } else {
        out += "null";
    }
    out += R"(,"source":)";
    out += from_config ? R"("config")" : R"("admin")";
    out += revoked ? R"(,"revoked":true)" : R"(,"revoked":false)";
    out += R"(,"created_at":)";
    if (from_config) {
        out += "null";
    } else {
        out += '"';
        out += store::rfc3339_ms(created_at_ms);
        out += '"';
    }
    out += '}';
    return out;
}

std::pair<int, std::string> key_admin::create(std::string_view body, std::int64_t now_ms) {
    auto parsed = config::parse_key_patch(body);
    if (!parsed.errors.empty()) return bad_body(parsed.errors);
    auto& p = parsed.patch;
    if (!p.id) return error(400, "missing_field", "id is required");
    if (!valid_id(*p.id))
        return error(400, "invalid_value",
                     "id: 1 to 128 characters of letters, digits and - _ . : @");
    const auto cfg = current_config_();
    if (config_key(*cfg, *p.id))
        return error(409, "key_exists", "a key with this id is defined in the config file");
    config::key_config k = std::move(p.terms);
    k.id = *p.id;
    if (auto bad = check_terms(*cfg, k)) return *bad;
    const std::string secret = new_secret();
    k.key_sha256 = config::sha256_hex(secret);
    const bool has_budget = k.budget.has_value();
    const auto copy = k;
    if (store_->create(std::move(k), now_ms) == key_store::result::exists)
        return error(409, "key_exists", "a key with this id already exists");
    if (has_budget && on_budget_) seed(copy);
    changed();
    spdlog::info("admin: key {} created", copy.id);
    std::string out = R"({"id":)";
    json_text::append_string(out, copy.id);
    out += R"(,"key":)";
    json_text::append_string(out, secret);
    out += '}';
    return {201, std::move(out)};
}

void key_admin::seed(const config::key_config& k) const noexcept {
    // The key is stored already: a failure here must not cost the caller its secret.
    try {
        on_budget_(k);
    } catch (const std::exception& e) {
        spdlog::error("admin: key {}: budget not seeded from the ledger: {}", k.id, e.what());
    }
}

std::pair<int, std::string> key_admin::list() const {
    const auto cfg = current_config_();
    const auto table = store_->current();
    std::string out = R"({"data":[)";
    bool first = true;
    for (const auto& k : cfg->keys) {
        if (!first) out += ',';
        first = false;
        key_digest d;
        const bool revoked = digest_from_hex(k.key_sha256, d) && table->is_revoked(k.id, d);
        out += key_json(k, true, 0, revoked);
    }
    // Stored keys by id, for a stable listing; shadowed ones (config wins) are left out.
    std::map<std::string_view, const key_store::entry*> stored;
    for (const auto& [id, e] : table->by_id)
        if (!config_key(*cfg, id)) stored.emplace(id, &e);
    for (const auto& [id, e] : stored) {
        if (!first) out += ',';
        first = false;
        out += key_json(*e->key, false, e->created_at_ms);
    }
    out += "]}";
    return {200, std::move(out)};
}

std::pair<int, std::string> key_admin::patch(std::string_view raw_id, std::string_view body) {
    const std::string id = url_decode(raw_id);
    const auto cfg = current_config_();
    const auto table = store_->current();
    const auto it = table->by_id.find(id);
    if (config_key(*cfg, id))
        return error(409, "key_in_config",
                     "this key is defined in the config file; change it there and reload");
    if (it == table->by_id.end()) return error(404, "key_not_found", "no key with this id");
    auto parsed = config::parse_key_patch(body);
    if (!parsed.errors.empty()) return bad_body(parsed.errors);
    auto& p = parsed.patch;
    if (p.id && *p.id != id) return error(400, "invalid_value", "id cannot be changed");
    config::key_config k = *it->second.key;
    // The budget book is seeded from the ledger only for a budget that is new or changed
    // its period: re-seeding one in use would race the records being committed.
    const bool reseed =
        p.has_budget && p.terms.budget && (!k.budget || k.budget->period != p.terms.budget->period);
    if (p.has_models) k.models = p.terms.models;
    if (p.has_limits) k.limits = p.terms.limits;
    if (p.has_budget) k.budget = p.terms.budget;
    if (p.has_allowed_cidrs) k.allowed_cidrs = p.terms.allowed_cidrs;
    if (auto bad = check_terms(*cfg, k)) return *bad;
    if (store_->update(k) == key_store::result::not_found)
        return error(404, "key_not_found", "no key with this id");
    if (reseed && on_budget_) seed(k);
    changed();
    spdlog::info("admin: key {} changed", id);
    return {200, key_json(k, false, it->second.created_at_ms)};
}

std::pair<int, std::string> key_admin::remove(std::string_view raw_id) {
    const std::string id = url_decode(raw_id);
    const auto cfg = current_config_();
    if (const auto* k = config_key(*cfg, id)) {
        // A leaked config key is revoked at once, everywhere the key store reaches, and
        // stays revoked across restarts until the config gives this id another secret.
        key_digest d;
        if (!digest_from_hex(k->key_sha256, d))
            return error(500, "internal_error", "the config key has no valid digest");
        const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
        if (store_->revoke(id, d, now_ms) == key_store::result::ok) {
            changed();
            spdlog::info("admin: config key {} revoked", id);
        }
        return {204, std::string()};
    }
    if (store_->remove(id) == key_store::result::not_found)
        return error(404, "key_not_found", "no key with this id");
    changed();
    spdlog::info("admin: key {} revoked", id);
    return {204, std::string()};
}

}  // namespace tollgate::policies
