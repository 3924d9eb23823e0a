#include "policies/auth/key_store.hpp"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <stdexcept>

#include "policies/auth/key_store_backend.hpp"
#include "policies/usage/pg_connection.hpp"

namespace tollgate::policies {

namespace {

constexpr char list_sep = '\x1f';  // joins a key's model names in one column

std::string to_hex(const key_digest& d) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out(64, '0');
    for (std::size_t i = 0; i < d.size(); ++i) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    return out;
}

const char* period_name(config::budget_period p) {
    switch (p) {
        case config::budget_period::day:
            return "day";
        case config::budget_period::total:
            return "total";
        case config::budget_period::month:
            break;
    }
    return "month";
}

bool same_key(const config::key_config& a, const config::key_config& b) {
    const auto same_budget = [](const std::optional<config::budget_config>& x,
                                const std::optional<config::budget_config>& y) {
        if (x.has_value() != y.has_value()) return false;
        return !x || (x->tokens == y->tokens && x->usd == y->usd && x->period == y->period);
    };
    return a.key_sha256 == b.key_sha256 && a.models == b.models && a.limits.rpm == b.limits.rpm &&
           a.limits.tpm == b.limits.tpm && a.limits.concurrency == b.limits.concurrency &&
           same_budget(a.budget, b.budget);
}

key_row to_row(const config::key_config& k, std::int64_t created_at_ms) {
    key_row r;
    r.id = k.id;
    r.key_sha256 = k.key_sha256;
    if (k.models) {
        std::string joined;
        for (const auto& m : *k.models) {
            if (!joined.empty()) joined += list_sep;
            joined += m;
        }
        r.models = std::move(joined);
    }
    r.rpm = k.limits.rpm;
    r.tpm = k.limits.tpm;
    r.concurrency = k.limits.concurrency;
    if (k.budget) {
        r.budget_tokens = k.budget->tokens;
        r.budget_usd = k.budget->usd;
        r.budget_period = period_name(k.budget->period);
    }
    r.created_at_ms = created_at_ms;
    return r;
}

std::shared_ptr<config::key_config> from_row(const key_row& r) {
    auto k = std::make_shared<config::key_config>();
    k->id = r.id;
    k->key_sha256 = r.key_sha256;
    if (r.models) {
        std::vector<std::string> models;
        const std::string& joined = *r.models;
        std::size_t start = 0;
        while (start <= joined.size() && !joined.empty()) {
            const auto end = joined.find(list_sep, start);
            models.push_back(joined.substr(start, end - start));
            if (end == std::string::npos) break;
            start = end + 1;
        }
        k->models = std::move(models);
    }
    k->limits.rpm = r.rpm;
    k->limits.tpm = r.tpm;
    k->limits.concurrency = r.concurrency;
    if (r.budget_period) {
        config::budget_config b;
        b.tokens = r.budget_tokens;
        b.usd = r.budget_usd;
        const std::string& per = *r.budget_period;
        b.period = per == "day"     ? config::budget_period::day
                   : per == "total" ? config::budget_period::total
                                    : config::budget_period::month;
        k->budget = b;
    }
    return k;
}

}  // namespace

std::size_t digest_hash::operator()(const key_digest& d) const noexcept {
    std::size_t h;
    std::memcpy(&h, d.data(), sizeof h);  // a SHA-256 digest is already uniform
    return h;
}

bool digest_from_hex(std::string_view hex, key_digest& out) noexcept {
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

key_store::key_store(const std::string& path)
    : backend_(is_postgres_url(path) ? make_pg_key_store_backend(path)
                                     : make_sqlite_key_store_backend(path)) {
    change_marker_ = backend_->change_marker();
    publish(load_table());
}

key_store::~key_store() {
    {
        std::lock_guard lock(stop_mu_);
        stopping_ = true;
    }
    stop_cv_.notify_all();
    if (refresher_.joinable()) refresher_.join();
}

std::shared_ptr<key_store::table> key_store::load_table() {
    auto t = std::make_shared<table>();
    for (const key_row& row : backend_->load()) {  // throws on a failed or partial read
        key_digest d;
        if (!digest_from_hex(row.key_sha256, d)) continue;
        std::shared_ptr<const config::key_config> k = from_row(row);
        t->by_digest.emplace(d, k);
        t->by_id.emplace(k->id, entry{k, row.created_at_ms});
    }
    for (const revocation_row& row : backend_->load_revocations()) {
        key_digest d;
        if (digest_from_hex(row.key_sha256, d)) t->revoked.emplace(d, row.id);
    }
    return t;
}

bool key_store::refresh() {
    std::lock_guard lock(mu_);
    // The marker first, then the table: the table read is at least as new as the marker,
    // so a change committed in between is reloaded (again) at the next look, never missed.
    const auto marker = backend_->change_marker();
    if (marker == change_marker_) return false;  // nothing committed since the last look
    auto fresh = load_table();  // throws on a failed read: retried at the next look
    change_marker_ = marker;
    const auto old = current();
    std::vector<std::pair<std::shared_ptr<const config::key_config>,
                          std::shared_ptr<const config::key_config>>>
        changed;  // before (or null), now
    for (const auto& [id, e] : fresh->by_id) {
        const auto it = old->by_id.find(id);
        if (it == old->by_id.end())
            changed.emplace_back(nullptr, e.key);
        else if (!same_key(*it->second.key, *e.key))
            changed.emplace_back(it->second.key, e.key);
    }
    bool removed = false;
    for (const auto& [id, e] : old->by_id) removed = removed || !fresh->by_id.contains(id);
    if (changed.empty() && !removed && fresh->revoked == old->revoked) return false;
    publish(std::move(fresh));
    if (listener_)
        for (const auto& [before, now] : changed) listener_(before.get(), *now);
    return true;
}

void key_store::set_listener(listener l) {
    std::lock_guard lock(mu_);
    listener_ = std::move(l);
}

void key_store::start_refresh(std::chrono::milliseconds every) {
    refresher_ = std::thread([this, every] {
        std::unique_lock lock(stop_mu_);
        for (;;) {
            stop_cv_.wait_for(lock, every, [this] { return stopping_ || wake_; });
            if (stopping_) break;
            wake_ = false;
            lock.unlock();
            try {
                if (refresh()) spdlog::info("keys changed by another instance: reloaded");
            } catch (const std::exception& e) {
                spdlog::warn("key store refresh: {}", e.what());
            }
            lock.lock();
        }
    });
}

void key_store::refresh_soon() {
    {
        std::lock_guard lock(stop_mu_);
        wake_ = true;
    }
    stop_cv_.notify_all();
}

key_store::result key_store::create(config::key_config key, std::int64_t now_ms) {
    std::lock_guard lock(mu_);
    const auto old = current();
    key_digest d;
    if (!digest_from_hex(key.key_sha256, d)) throw std::runtime_error("key store: bad digest");
    key.key_sha256 = to_hex(d);
    if (old->by_id.contains(key.id) || old->by_digest.contains(d)) return result::exists;
    if (!backend_->insert(to_row(key, now_ms))) return result::exists;  // another instance took it
    auto t = std::make_shared<table>(*old);
    auto k = std::make_shared<const config::key_config>(std::move(key));
    t->by_digest.emplace(d, k);
    t->by_id.emplace(k->id, entry{k, now_ms});
    publish(std::move(t));
    return result::ok;
}

key_store::result key_store::update(const config::key_config& updated) {
    std::lock_guard lock(mu_);
    const auto old = current();
    const auto it = old->by_id.find(updated.id);
    if (it == old->by_id.end()) return result::not_found;
    auto k = std::make_shared<config::key_config>(updated);
    k->key_sha256 = it->second.key->key_sha256;  // the secret never changes
    if (!backend_->update(to_row(*k, it->second.created_at_ms))) return result::not_found;
    auto t = std::make_shared<table>(*old);
    key_digest d;
    digest_from_hex(k->key_sha256, d);
    t->by_digest[d] = k;
    t->by_id[k->id] = entry{k, it->second.created_at_ms};
    publish(std::move(t));
    return result::ok;
}

key_store::result key_store::revoke(const std::string& id, const key_digest& digest,
                                    std::int64_t now_ms) {
    std::lock_guard lock(mu_);
    const auto old = current();
    if (old->is_revoked(id, digest)) return result::exists;
    // Revoked already by another instance a moment ago is fine: it is revoked.
    backend_->insert_revocation(revocation_row{id, to_hex(digest), now_ms});
    auto t = std::make_shared<table>(*old);
    t->revoked[digest] = id;
    publish(std::move(t));
    return result::ok;
}

key_store::result key_store::remove(const std::string& id) {
    std::lock_guard lock(mu_);
    const auto old = current();
    const auto it = old->by_id.find(id);
    if (it == old->by_id.end()) return result::not_found;
    // Gone already (another instance deleted it a moment ago) is fine: it is gone.
    backend_->remove(id);
    auto t = std::make_shared<table>(*old);
    key_digest d;
    digest_from_hex(it->second.key->key_sha256, d);
    t->by_digest.erase(d);
    t->by_id.erase(id);
    publish(std::move(t));
    return result::ok;
}

}  // namespace tollgate::policies
