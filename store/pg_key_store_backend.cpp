// api_keys in the PostgreSQL usage database, shared by every gateway instance on it.
//
// Change marker: the single row of api_keys_version, bumped by the same statement that
// changes api_keys (one data-modifying WITH statement, so one transaction). The 1-s
// refresher reads that one row by primary key, and reloads the table only when it moved.
// Chosen over `SELECT max(updated_at), count(*) FROM api_keys`: that misses a delete and
// a create within the same millisecond, depends on the instances' clocks agreeing, and
// scans the table every second.
//
// Connection: one, used under key_store's mutex. A broken one is re-established before
// the next call; reads are retried once after a reconnect. Writes first check the
// connection with an empty query (admin writes are rare; the round trip is cheap), so a
// connection the server dropped while idle is replaced before the change is sent rather
// than failing it with an unknown outcome.
#include <libpq-fe.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "store/key_store_backend.hpp"
#include "store/pg_connection.hpp"
#include "store/schema.hpp"

namespace tollgate::store {

namespace {

// The same advisory lock as the ledger's schema creation: instances starting at once.
constexpr const char* schema_lock_sql = "SELECT pg_advisory_xact_lock(8389754676633367653)";

// The tables (schema.hpp), the columns added later on a database made before, and the
// version row the 1-s refresher reads.
std::string schema_sql() {
    constexpr auto pg = sql_dialect::postgres;
    std::string s;
    for (const table* t :
         {&api_keys_table(), &api_key_revocations_table(), &api_key_deletions_table()}) {
        s += create_sql(*t, pg) + ";\n";
        for (const auto& c : t->columns)
            if (c.added_later) s += add_column_sql(*t, c, pg) + ";\n";
    }
    return s + R"sql(
CREATE TABLE IF NOT EXISTS api_keys_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version   BIGINT  NOT NULL
);
INSERT INTO api_keys_version (singleton, version) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
)sql";
}

// Each change and its version bump: one statement, one transaction. Answers the number of
// api_keys rows changed.
std::string with_bump(const char* change) {
    return std::string("WITH changed AS (") + change +
           " RETURNING id), bump AS (UPDATE api_keys_version SET version = version + 1 "
           "WHERE EXISTS (SELECT 1 FROM changed)) SELECT count(*) FROM changed";
}

std::optional<std::string> opt_uint_text(const std::optional<std::uint64_t>& v) {
    if (!v) return std::nullopt;
    const auto clamped = std::min<std::uint64_t>(
        *v, static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
    return std::to_string(clamped);
}

std::optional<std::string> opt_double_text(const std::optional<double>& v) {
    if (!v) return std::nullopt;
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, *v);
    return std::string(buf, r.ptr);
}

std::optional<std::uint64_t> opt_uint(const pg_result_ptr& r, int row, int col) {
    if (r.is_null(row, col)) return std::nullopt;
    return r.uint64(row, col);
}

class pg_key_store_backend final : public key_store_backend {
  public:
    explicit pg_key_store_backend(const std::string& url);

    std::vector<key_row> load() override;
    std::int64_t change_marker() override;
    bool insert(const key_row& row) override;
    bool update(const key_row& row) override;
    bool remove(const std::string& id) override;
    bool upsert(const key_row& row) override;
    std::vector<deletion_row> load_deletions() override;
    void record_deletion(const deletion_row& row) override;
    std::vector<revocation_row> load_revocations() override;
    bool insert_revocation(const revocation_row& row) override;

  private:
    // Runs a read; reconnects and runs it again once if the connection had broken.
    pg_result_ptr read(const char* sql, std::string_view context);
    // Runs a change (with_bump); true when it changed a row.
    bool change(const std::string& sql, const std::vector<std::optional<std::string>>& params,
                std::string_view context);

    pg_connection conn_;
};

pg_key_store_backend::pg_key_store_backend(const std::string& url) : conn_(url, "key store") {
    conn_.ensure_or_throw();
    conn_.exec_or_throw("BEGIN", "cannot create the api_keys table");
    try {
        conn_.exec_or_throw(schema_lock_sql, "cannot create the api_keys table");
        conn_.exec_or_throw(schema_sql().c_str(), "cannot create the api_keys table");
        conn_.exec_or_throw("COMMIT", "cannot create the api_keys table");
    } catch (...) {
        if (!conn_.broken()) conn_.exec("ROLLBACK");
        throw;
    }
}

pg_result_ptr pg_key_store_backend::read(const char* sql, std::string_view context) {
    for (int attempt = 0;; ++attempt) {
        std::string why;
        if (!conn_.ensure(why)) throw std::runtime_error(conn_.describe(context, why));
        pg_result_ptr r = conn_.exec(sql);
        if (r.ok()) return r;
        if (attempt == 0 && conn_.broken()) continue;  // the server restarted since the last call
        throw std::runtime_error(conn_.describe(context, conn_.error(r)));
    }
}

std::vector<key_row> pg_key_store_backend::load() {
    const pg_result_ptr r = read(
        "SELECT id, key_sha256, models, rpm, tpm, concurrency, budget_tokens, budget_usd,"
        " budget_period, created_at, updated_at, allowed_cidrs FROM api_keys",
        "reading api_keys");
    std::vector<key_row> rows;
    rows.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
        key_row k;
        k.id = std::string(r.text(i, 0));
        k.key_sha256 = std::string(r.text(i, 1));
        k.models = r.opt_text(i, 2);
        k.rpm = opt_uint(r, i, 3);
        k.tpm = opt_uint(r, i, 4);
        k.concurrency = opt_uint(r, i, 5);
        k.budget_tokens = opt_uint(r, i, 6);
        if (!r.is_null(i, 7)) k.budget_usd = r.dbl(i, 7);
        k.budget_period = r.opt_text(i, 8);
        k.created_at_ms = r.int64(i, 9);
        k.updated_at_ms = std::max<std::int64_t>(r.int64(i, 10), k.created_at_ms);
        k.allowed_cidrs = r.opt_text(i, 11);
        rows.push_back(std::move(k));
    }
    return rows;
}

std::int64_t pg_key_store_backend::change_marker() {
    const pg_result_ptr r =
        read("SELECT version FROM api_keys_version WHERE singleton", "reading api_keys_version");
    return r.rows() > 0 ? r.int64(0, 0) : 0;
}

bool pg_key_store_backend::change(const std::string& sql,
                                  const std::vector<std::optional<std::string>>& params,
                                  std::string_view context) {
    std::string why;
    if (!conn_.ensure(why)) throw std::runtime_error(conn_.describe(context, why));
    // An empty query: a connection dropped while idle shows here, before the change is
    // sent, and is replaced.
    conn_.exec("");
    if (conn_.broken() && !conn_.ensure(why))
        throw std::runtime_error(conn_.describe(context, why));
    std::vector<std::string> safe(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    std::string scratch;
    for (std::size_t i = 0; i < params.size(); ++i) {
        if (!params[i]) continue;
        safe[i] = std::string(pg_safe_text(*params[i], scratch));
        values[i] = safe[i].c_str();
    }
    const pg_result_ptr r = conn_.exec_params(sql, values);
    if (!r.ok()) throw std::runtime_error(conn_.describe(context, conn_.error(r)));
    return r.rows() == 1 && r.int64(0, 0) > 0;
}

// $1..$12 of an INSERT of a whole row (insert and upsert), in the columns' order there.
std::vector<std::optional<std::string>> row_params(const key_row& k) {
    return {k.models,
            opt_uint_text(k.rpm),
            opt_uint_text(k.tpm),
            opt_uint_text(k.concurrency),
            opt_uint_text(k.budget_tokens),
            opt_double_text(k.budget_usd),
            k.budget_period,
            std::to_string(k.updated_at_ms),
            k.id,
            k.key_sha256,
            std::to_string(k.created_at_ms),
            k.allowed_cidrs};
}

bool pg_key_store_backend::insert(const key_row& k) {
    // ON CONFLICT DO NOTHING covers both unique columns: the id and the digest.
    static const std::string sql = with_bump(
        "INSERT INTO api_keys (models, rpm, tpm, concurrency, budget_tokens, budget_usd,"
        " budget_period, updated_at, id, key_sha256, created_at, allowed_cidrs)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING");
    return change(sql, row_params(k), "storing a key");
}

bool pg_key_store_backend::update(const key_row& k) {
    static const std::string sql = with_bump(
        "UPDATE api_keys SET models = $1, rpm = $2, tpm = $3, concurrency = $4,"
        " budget_tokens = $5, budget_usd = $6, budget_period = $7, updated_at = $8,"
        " allowed_cidrs = $10 WHERE id = $9");
    return change(
        sql,
        {k.models, opt_uint_text(k.rpm), opt_uint_text(k.tpm), opt_uint_text(k.concurrency),
         opt_uint_text(k.budget_tokens), opt_double_text(k.budget_usd), k.budget_period,
         std::to_string(k.updated_at_ms), k.id, k.allowed_cidrs},
        "updating a key");
}

bool pg_key_store_backend::upsert(const key_row& k) {
    // A digest that belongs to another id is a conflict on key_sha256: nothing changes.
    static const std::string sql = with_bump(
        "INSERT INTO api_keys (models, rpm, tpm, concurrency, budget_tokens, budget_usd,"
        " budget_period, updated_at, id, key_sha256, created_at, allowed_cidrs)"
        " SELECT $1, $2::bigint, $3::bigint, $4::bigint, $5::bigint, $6::double precision, $7,"
        " $8::bigint, $9, $10, $11::bigint, $12"
        " WHERE NOT EXISTS (SELECT 1 FROM api_keys WHERE key_sha256 = $10 AND id <> $9)"
        " ON CONFLICT (id) DO UPDATE SET models = EXCLUDED.models, rpm = EXCLUDED.rpm,"
        " tpm = EXCLUDED.tpm, concurrency = EXCLUDED.concurrency,"
        " budget_tokens = EXCLUDED.budget_tokens, budget_usd = EXCLUDED.budget_usd,"
        " budget_period = EXCLUDED.budget_period, updated_at = EXCLUDED.updated_at,"
        " key_sha256 = EXCLUDED.key_sha256, created_at = EXCLUDED.created_at,"
        " allowed_cidrs = EXCLUDED.allowed_cidrs");
    return change(sql, row_params(k), "storing a key");
}

bool pg_key_store_backend::remove(const std::string& id) {
    static const std::string sql = with_bump("DELETE FROM api_keys WHERE id = $1");
    return change(sql, {id}, "deleting a key");
}

std::vector<deletion_row> pg_key_store_backend::load_deletions() {
    const pg_result_ptr r =
        read("SELECT id, deleted_at FROM api_key_deletions", "reading api_key_deletions");
    std::vector<deletion_row> rows;
    rows.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) rows.push_back({std::string(r.text(i, 0)), r.int64(i, 1)});
    return rows;
}

void pg_key_store_backend::record_deletion(const deletion_row& row) {
    static const std::string sql = with_bump(
        "INSERT INTO api_key_deletions (id, deleted_at) VALUES ($1, $2) ON CONFLICT (id) DO "
        "UPDATE SET deleted_at = GREATEST(api_key_deletions.deleted_at, EXCLUDED.deleted_at)");
    change(sql, {row.id, std::to_string(row.deleted_at_ms)}, "deleting a key");
}

std::vector<revocation_row> pg_key_store_backend::load_revocations() {
    const pg_result_ptr r = read("SELECT id, key_sha256, revoked_at FROM api_key_revocations",
                                 "reading api_key_revocations");
    std::vector<revocation_row> rows;
    rows.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i)
        rows.push_back({std::string(r.text(i, 0)), std::string(r.text(i, 1)), r.int64(i, 2)});
    return rows;
}

bool pg_key_store_backend::insert_revocation(const revocation_row& row) {
    static const std::string sql = with_bump(
        "INSERT INTO api_key_revocations (id, key_sha256, revoked_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING");
    return change(sql, {row.id, row.key_sha256, std::to_string(row.revoked_at_ms)},
                  "revoking a key");
}

}  // namespace

std::unique_ptr<key_store_backend> make_pg_key_store_backend(const std::string& url) {
    return std::make_unique<pg_key_store_backend>(url);
}

}  // namespace tollgate::store
