#include "policies/auth/key_store.hpp"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <climits>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace tollgate::policies {

namespace {

constexpr char list_sep = '\x1f';  // joins a key's model names in one column

struct stmt {
    sqlite3_stmt* s = nullptr;
    stmt(sqlite3* db, const char* sql) {
        if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
            throw std::runtime_error(std::string("key store: ") + sqlite3_errmsg(db));
    }
    ~stmt() { sqlite3_finalize(s); }
    stmt(const stmt&) = delete;
    stmt& operator=(const stmt&) = delete;
    operator sqlite3_stmt*() const noexcept { return s; }
};

std::string to_hex(const key_digest& d) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out(64, '0');
    for (std::size_t i = 0; i < d.size(); ++i) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    return out;
}

void bind_opt(sqlite3_stmt* s, int i, const std::optional<std::uint64_t>& v) {
    if (v)
        sqlite3_bind_int64(s, i,
                           static_cast<sqlite3_int64>(std::min<std::uint64_t>(*v, LLONG_MAX)));
    else
        sqlite3_bind_null(s, i);
}

std::optional<std::uint64_t> column_opt(sqlite3_stmt* s, int i) {
    if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
    return static_cast<std::uint64_t>(sqlite3_column_int64(s, i));
}

std::string column_text(sqlite3_stmt* s, int i) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))) : std::string();
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

key_store::key_store(const std::string& path) : path_(path) {
    std::error_code fec;
    if (const auto dir = std::filesystem::path(path).parent_path(); !dir.empty())
        std::filesystem::create_directories(dir, fec);
    if (sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
        const std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        db_ = nullptr;
        throw std::runtime_error("key store: cannot open " + path + ": " + why);
    }
    sqlite3_busy_timeout(db_, 5000);
    try {
        exec("PRAGMA journal_mode=WAL");
        exec("PRAGMA synchronous=FULL");
        exec(
            "CREATE TABLE IF NOT EXISTS api_keys ("
            " id TEXT PRIMARY KEY, key_sha256 TEXT NOT NULL UNIQUE, models TEXT,"
            " rpm INTEGER, tpm INTEGER, concurrency INTEGER,"
            " budget_tokens INTEGER, budget_usd REAL, budget_period TEXT,"
            " created_at INTEGER NOT NULL)");
        data_version_ = read_data_version();
        publish(load_table());
    } catch (...) {
        sqlite3_close(db_);
        db_ = nullptr;
        throw;
    }
}

key_store::~key_store() {
    {
        std::lock_guard lock(stop_mu_);
        stopping_ = true;
    }
    stop_cv_.notify_all();
    if (refresher_.joinable()) refresher_.join();
    sqlite3_close(db_);
}

std::shared_ptr<key_store::table> key_store::load_table() {
    auto t = std::make_shared<table>();
    stmt q(db_,
           "SELECT id, key_sha256, models, rpm, tpm, concurrency, budget_tokens, budget_usd,"
           " budget_period, created_at FROM api_keys");
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        auto k = std::make_shared<config::key_config>();
        k->id = column_text(q, 0);
        k->key_sha256 = column_text(q, 1);
        key_digest d;
        if (!digest_from_hex(k->key_sha256, d)) continue;
        if (sqlite3_column_type(q, 2) != SQLITE_NULL) {
            std::vector<std::string> models;
            const std::string joined = column_text(q, 2);
            std::size_t start = 0;
            while (start <= joined.size() && !joined.empty()) {
                const auto end = joined.find(list_sep, start);
                models.push_back(joined.substr(start, end - start));
                if (end == std::string::npos) break;
                start = end + 1;
            }
            k->models = std::move(models);
        }
        k->limits.rpm = column_opt(q, 3);
        k->limits.tpm = column_opt(q, 4);
        k->limits.concurrency = column_opt(q, 5);
        if (sqlite3_column_type(q, 8) != SQLITE_NULL) {
            config::budget_config b;
            b.tokens = column_opt(q, 6);
            if (sqlite3_column_type(q, 7) != SQLITE_NULL) b.usd = sqlite3_column_double(q, 7);
            const std::string per = column_text(q, 8);
            b.period = per == "day"     ? config::budget_period::day
                       : per == "total" ? config::budget_period::total
                                        : config::budget_period::month;
            k->budget = b;
        }
        const std::int64_t created = sqlite3_column_int64(q, 9);
        t->by_digest.emplace(d, k);
        t->by_id.emplace(k->id, entry{k, created});
    }
    // A read cut short (a lock, an I/O error) must not pass for the whole table.
    if (rc != SQLITE_DONE)
        throw std::runtime_error("key store: " + std::string(sqlite3_errmsg(db_)));
    return t;
}

std::int64_t key_store::read_data_version() {
    stmt q(db_, "PRAGMA data_version");
    return sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
}

bool key_store::refresh() {
    std::lock_guard lock(mu_);
    const auto version = read_data_version();
    if (version == data_version_) return false;  // no other connection committed
    auto fresh = load_table();  // throws on a failed read: retried at the next look
    data_version_ = version;
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
    if (changed.empty() && !removed) return false;
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
        while (!stop_cv_.wait_for(lock, every, [this] { return stopping_; })) {
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

void key_store::exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string why = err ? err : "unknown error";
        sqlite3_free(err);
        throw std::runtime_error("key store " + path_ + ": " + why);
    }
}

bool key_store::write(const config::key_config& k, std::int64_t created_at_ms, bool insert) {
    stmt s(db_, insert ? "INSERT INTO api_keys (models, rpm, tpm, concurrency, budget_tokens,"
                         " budget_usd, budget_period, id, key_sha256, created_at)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                       : "UPDATE api_keys SET models = ?1, rpm = ?2, tpm = ?3, concurrency = ?4,"
                         " budget_tokens = ?5, budget_usd = ?6, budget_period = ?7 WHERE id = ?8");
    std::string joined;
    if (k.models) {
        for (const auto& m : *k.models) {
            if (!joined.empty()) joined += list_sep;
            joined += m;
        }
        sqlite3_bind_text(s, 1, joined.data(), static_cast<int>(joined.size()), SQLITE_TRANSIENT);
    } else {
        sqlite3_bind_null(s, 1);
    }
    bind_opt(s, 2, k.limits.rpm);
    bind_opt(s, 3, k.limits.tpm);
    bind_opt(s, 4, k.limits.concurrency);
    if (k.budget) {
        bind_opt(s, 5, k.budget->tokens);
        if (k.budget->usd)
            sqlite3_bind_double(s, 6, *k.budget->usd);
        else
            sqlite3_bind_null(s, 6);
        sqlite3_bind_text(s, 7, period_name(k.budget->period), -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(s, 5);
        sqlite3_bind_null(s, 6);
        sqlite3_bind_null(s, 7);
    }
    sqlite3_bind_text(s, 8, k.id.data(), static_cast<int>(k.id.size()), SQLITE_TRANSIENT);
    if (insert) {
        sqlite3_bind_text(s, 9, k.key_sha256.data(), static_cast<int>(k.key_sha256.size()),
                          SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 10, created_at_ms);
    }
    const int rc = sqlite3_step(s);
    if (insert && (rc & 0xff) == SQLITE_CONSTRAINT) return false;  // id or digest taken
    if (rc != SQLITE_DONE)
        throw std::runtime_error("key store " + path_ + ": " + sqlite3_errmsg(db_));
    return insert || sqlite3_changes(db_) > 0;
}

key_store::result key_store::create(config::key_config key, std::int64_t now_ms) {
    std::lock_guard lock(mu_);
    const auto old = current();
    key_digest d;
    if (!digest_from_hex(key.key_sha256, d)) throw std::runtime_error("key store: bad digest");
    key.key_sha256 = to_hex(d);
    if (old->by_id.contains(key.id) || old->by_digest.contains(d)) return result::exists;
    if (!write(key, now_ms, true)) return result::exists;  // another instance took it
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
    if (!write(*k, it->second.created_at_ms, false)) return result::not_found;
    auto t = std::make_shared<table>(*old);
    key_digest d;
    digest_from_hex(k->key_sha256, d);
    t->by_digest[d] = k;
    t->by_id[k->id] = entry{k, it->second.created_at_ms};
    publish(std::move(t));
    return result::ok;
}

key_store::result key_store::remove(const std::string& id) {
    std::lock_guard lock(mu_);
    const auto old = current();
    const auto it = old->by_id.find(id);
    if (it == old->by_id.end()) return result::not_found;
    stmt s(db_, "DELETE FROM api_keys WHERE id = ?1");
    sqlite3_bind_text(s, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(s) != SQLITE_DONE)
        throw std::runtime_error("key store " + path_ + ": " + sqlite3_errmsg(db_));
    auto t = std::make_shared<table>(*old);
    key_digest d;
    digest_from_hex(it->second.key->key_sha256, d);
    t->by_digest.erase(d);
    t->by_id.erase(id);
    publish(std::move(t));
    return result::ok;
}

}  // namespace tollgate::policies
