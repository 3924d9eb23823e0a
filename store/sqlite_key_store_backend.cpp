// api_keys in the SQLite usage database (moved here from key_store.cpp unchanged in
// behaviour). The change marker is SQLite's data_version: it moves when another
// connection (another process sharing the file) committed.
#include <sqlite3.h>

#include <algorithm>
#include <climits>
#include <filesystem>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>

#include "store/key_store_backend.hpp"
#include "store/schema.hpp"

namespace tollgate::store {

namespace {

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

void bind_opt(sqlite3_stmt* s, int i, const std::optional<std::uint64_t>& v) {
    if (v)
        sqlite3_bind_int64(s, i,
                           static_cast<sqlite3_int64>(std::min<std::uint64_t>(*v, LLONG_MAX)));
    else
        sqlite3_bind_null(s, i);
}

void bind_opt_text(sqlite3_stmt* s, int i, const std::optional<std::string>& v) {
    if (v)
        sqlite3_bind_text(s, i, v->data(), static_cast<int>(v->size()), SQLITE_TRANSIENT);
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

std::optional<std::string> column_opt_text(sqlite3_stmt* s, int i) {
    if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
    return column_text(s, i);
}

class sqlite_key_store_backend final : public key_store_backend {
  public:
    explicit sqlite_key_store_backend(const std::string& path);
    ~sqlite_key_store_backend() override { sqlite3_close(db_); }

    std::vector<key_row> load() override;
    std::int64_t change_marker() override;
    bool insert(const key_row& row) override { return write(row, true); }
    bool update(const key_row& row) override { return write(row, false); }
    bool remove(const std::string& id) override;
    bool upsert(const key_row& row) override;
    std::vector<deletion_row> load_deletions() override;
    void record_deletion(const deletion_row& row) override;
    std::vector<revocation_row> load_revocations() override;
    bool insert_revocation(const revocation_row& row) override;

  private:
    void exec(const char* sql);
    bool write(const key_row& k, bool insert);
    [[noreturn]] void fail() const {
        throw std::runtime_error("key store " + path_ + ": " + sqlite3_errmsg(db_));
    }

    std::string path_;
    sqlite3* db_ = nullptr;
};

sqlite_key_store_backend::sqlite_key_store_backend(const std::string& path) : path_(path) {
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
        constexpr auto lite = sql_dialect::sqlite;
        for (const table* t :
             {&api_keys_table(), &api_key_revocations_table(), &api_key_deletions_table()}) {
            exec(create_sql(*t, lite).c_str());
            // Columns added after the first release: a database made before lacks them.
            std::set<std::string, std::less<>> present;
            stmt q(db_, ("PRAGMA table_info(" + std::string(t->name) + ")").c_str());
            while (sqlite3_step(q) == SQLITE_ROW) present.emplace(column_text(q, 1));
            for (const auto& c : t->columns)
                if (c.added_later && !present.contains(c.name))
                    exec(add_column_sql(*t, c, lite).c_str());
        }
    } catch (...) {
        sqlite3_close(db_);
        db_ = nullptr;
        throw;
    }
}

void sqlite_key_store_backend::exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string why = err ? err : "unknown error";
        sqlite3_free(err);
        throw std::runtime_error("key store " + path_ + ": " + why);
    }
}

std::vector<key_row> sqlite_key_store_backend::load() {
    std::vector<key_row> rows;
    stmt q(db_,
           "SELECT id, key_sha256, models, rpm, tpm, concurrency, budget_tokens, budget_usd,"
           " budget_period, created_at, updated_at, allowed_cidrs FROM api_keys");
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        key_row r;
        r.id = column_text(q, 0);
        r.key_sha256 = column_text(q, 1);
        r.models = column_opt_text(q, 2);
        r.rpm = column_opt(q, 3);
        r.tpm = column_opt(q, 4);
        r.concurrency = column_opt(q, 5);
        r.budget_tokens = column_opt(q, 6);
        if (sqlite3_column_type(q, 7) != SQLITE_NULL) r.budget_usd = sqlite3_column_double(q, 7);
        r.budget_period = column_opt_text(q, 8);
        r.created_at_ms = sqlite3_column_int64(q, 9);
        r.updated_at_ms = std::max<std::int64_t>(sqlite3_column_int64(q, 10), r.created_at_ms);
        r.allowed_cidrs = column_opt_text(q, 11);
        rows.push_back(std::move(r));
    }
    // A read cut short (a lock, an I/O error) must not pass for the whole table.
    if (rc != SQLITE_DONE)
        throw std::runtime_error("key store: " + std::string(sqlite3_errmsg(db_)));
    return rows;
}

std::int64_t sqlite_key_store_backend::change_marker() {
    stmt q(db_, "PRAGMA data_version");
    return sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
}

namespace {

// The row's values as ?1..?12 of api_keys' INSERT, UPDATE and upsert statements
// (?10 key_sha256 and ?11 created_at only `with_identity`: an UPDATE keeps them).
void bind_row(sqlite3_stmt* s, const key_row& k, bool with_identity) {
    bind_opt_text(s, 1, k.models);
    bind_opt(s, 2, k.rpm);
    bind_opt(s, 3, k.tpm);
    bind_opt(s, 4, k.concurrency);
    bind_opt(s, 5, k.budget_tokens);
    if (k.budget_usd)
        sqlite3_bind_double(s, 6, *k.budget_usd);
    else
        sqlite3_bind_null(s, 6);
    bind_opt_text(s, 7, k.budget_period);
    sqlite3_bind_int64(s, 8, k.updated_at_ms);
    sqlite3_bind_text(s, 9, k.id.data(), static_cast<int>(k.id.size()), SQLITE_TRANSIENT);
    if (with_identity) {
        sqlite3_bind_text(s, 10, k.key_sha256.data(), static_cast<int>(k.key_sha256.size()),
                          SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 11, k.created_at_ms);
    }
    bind_opt_text(s, 12, k.allowed_cidrs);
}

}  // namespace

bool sqlite_key_store_backend::write(const key_row& k, bool insert) {
    stmt s(db_, insert ? "INSERT INTO api_keys (models, rpm, tpm, concurrency, budget_tokens,"
                         " budget_usd, budget_period, updated_at, id, key_sha256, created_at,"
                         " allowed_cidrs)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                       : "UPDATE api_keys SET models = ?1, rpm = ?2, tpm = ?3, concurrency = ?4,"
                         " budget_tokens = ?5, budget_usd = ?6, budget_period = ?7,"
                         " updated_at = ?8, allowed_cidrs = ?12 WHERE id = ?9");
    bind_row(s, k, insert);
    const int rc = sqlite3_step(s);
    if (insert && (rc & 0xff) == SQLITE_CONSTRAINT) return false;  // id or digest taken
    if (rc != SQLITE_DONE) fail();
    return insert || sqlite3_changes(db_) > 0;
}

bool sqlite_key_store_backend::upsert(const key_row& k) {
    stmt s(db_,
           "INSERT INTO api_keys (models, rpm, tpm, concurrency, budget_tokens, budget_usd,"
           " budget_period, updated_at, id, key_sha256, created_at, allowed_cidrs)"
           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
           " ON CONFLICT(id) DO UPDATE SET models = ?1, rpm = ?2, tpm = ?3, concurrency = ?4,"
           " budget_tokens = ?5, budget_usd = ?6, budget_period = ?7, updated_at = ?8,"
           " key_sha256 = ?10, created_at = ?11, allowed_cidrs = ?12");
    bind_row(s, k, true);
    const int rc = sqlite3_step(s);
    if ((rc & 0xff) == SQLITE_CONSTRAINT) return false;  // the digest is another id's
    if (rc != SQLITE_DONE) fail();
    return true;
}

std::vector<deletion_row> sqlite_key_store_backend::load_deletions() {
    std::vector<deletion_row> rows;
    stmt q(db_, "SELECT id, deleted_at FROM api_key_deletions");
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        rows.push_back({column_text(q, 0), sqlite3_column_int64(q, 1)});
    if (rc != SQLITE_DONE)
        throw std::runtime_error("key store: " + std::string(sqlite3_errmsg(db_)));
    return rows;
}

void sqlite_key_store_backend::record_deletion(const deletion_row& r) {
    stmt s(db_,
           "INSERT INTO api_key_deletions (id, deleted_at) VALUES (?1, ?2)"
           " ON CONFLICT(id) DO UPDATE SET deleted_at = max(deleted_at, ?2)");
    sqlite3_bind_text(s, 1, r.id.data(), static_cast<int>(r.id.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, r.deleted_at_ms);
    if (sqlite3_step(s) != SQLITE_DONE) fail();
}

bool sqlite_key_store_backend::remove(const std::string& id) {
    stmt s(db_, "DELETE FROM api_keys WHERE id = ?1");
    sqlite3_bind_text(s, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(s) != SQLITE_DONE) fail();
    return sqlite3_changes(db_) > 0;
}

std::vector<revocation_row> sqlite_key_store_backend::load_revocations() {
    std::vector<revocation_row> rows;
    stmt q(db_, "SELECT id, key_sha256, revoked_at FROM api_key_revocations");
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        rows.push_back({column_text(q, 0), column_text(q, 1), sqlite3_column_int64(q, 2)});
    if (rc != SQLITE_DONE)
        throw std::runtime_error("key store: " + std::string(sqlite3_errmsg(db_)));
    return rows;
}

bool sqlite_key_store_backend::insert_revocation(const revocation_row& r) {
    stmt s(db_,
           "INSERT OR IGNORE INTO api_key_revocations (id, key_sha256, revoked_at)"
           " VALUES (?1, ?2, ?3)");
    sqlite3_bind_text(s, 1, r.id.data(), static_cast<int>(r.id.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, r.key_sha256.data(), static_cast<int>(r.key_sha256.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, r.revoked_at_ms);
    if (sqlite3_step(s) != SQLITE_DONE) fail();
    return sqlite3_changes(db_) > 0;
}

}  // namespace

std::unique_ptr<key_store_backend> make_sqlite_key_store_backend(const std::string& path) {
    return std::make_unique<sqlite_key_store_backend>(path);
}

}  // namespace tollgate::store
