// The SQLite storage of the usage ledger: WAL, synchronous=FULL, persistent INSERTs
// prepared once, one BEGIN IMMEDIATE … COMMIT per batch (the records, then the batch's
// sums per key, day and model into usage_daily), and a separate read-only connection for
// the queries, which read whole days of a key from usage_daily.
#include <sched.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>

#include <spdlog/spdlog.h>

#include "store/ledger_backend.hpp"

namespace tollgate::store {

namespace {

// Bump when the tables change; a newer file is refused rather than misread.
// 1: usage with indexes on (key_id, day) and ts_ms, usage_batches.
// 2: usage_daily holds each key's sums per day and model; usage loses its (key_id, day)
//    index (opening a version 1 file fills usage_daily from its records and drops it).
constexpr int schema_version = 2;

// The tables (schema.hpp) and their indexes.
std::string schema_sql() {
    return create_sql(usage_table(), sql_dialect::sqlite) + ";\n" +
           create_sql(usage_batches_table(), sql_dialect::sqlite) + ";\n" +
           create_sql(usage_daily_table(), sql_dialect::sqlite) + ";\n";
}

// A batch's sums are added to its keys' rows of usage_daily (or make them): the columns
// after the key (key_id, day, model) each add the batch's figure.
std::string daily_sql() {
    const table& t = usage_daily_table();
    std::string sql = "INSERT INTO usage_daily (" + column_list(t) + ") VALUES (" +
                      placeholders(stored_column_count(t), sql_dialect::sqlite) +
                      ") ON CONFLICT (key_id, day, model) DO UPDATE SET ";
    for (std::size_t i = t.composite_key.size(); i < t.columns.size(); ++i) {
        if (i > t.composite_key.size()) sql += ", ";
        const std::string_view c = t.columns[i].name;
        sql.append(c).append(" = ").append(c).append(" + excluded.").append(c);
    }
    return sql;
}

// Batch ids are kept 30 days: far longer than any shutdown's spill file waits for a start.
constexpr const char* prune_batches_sql =
    "DELETE FROM usage_batches WHERE ts_ms < CAST(strftime('%s','now') AS INTEGER) * 1000 - "
    "30 * 86400000";
constexpr const char* batch_sql =
    "INSERT OR IGNORE INTO usage_batches (batch_id, ts_ms) VALUES (?1, ?2)";

// One row, and rows_per_insert rows in one statement: a batch goes in as few statements
// as it can (each statement's step, halt and reset cost about as much as a row's insert).
constexpr std::size_t rows_per_insert = 32;
// The writer offers its core to other threads after this many statements (see write_batch).
constexpr std::size_t statements_per_yield = 4;

// OR FAIL: a row that fails ends the statement without undoing the rows before it in the
// statement; write_batch then rolls the whole transaction back anyway. With the default
// (ABORT) SQLite keeps a statement journal for every multi-row INSERT inside a
// transaction, a copy of each page the statement changes: ~6 K instructions a record in
// bench/ledger_bench, and past 64 KiB two pwrite calls a page into a temporary file.
std::string insert_sql(std::size_t rows) {
    const std::size_t cols = stored_column_count(usage_table());
    std::string sql = "INSERT OR FAIL INTO usage (" + column_list(usage_table()) + ") VALUES ";
    for (std::size_t r = 0; r < rows; ++r) {
        if (r) sql += ", ";
        sql += '(' + placeholders(cols, sql_dialect::sqlite, r * cols + 1) + ')';
    }
    return sql;
}

struct db_closer {
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct stmt_finalizer {
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using db_ptr = std::unique_ptr<sqlite3, db_closer>;
using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_finalizer>;

std::runtime_error db_error(const std::string& path, std::string_view what, sqlite3* db) {
    std::string msg = "usage ledger: ";
    msg += path;
    msg += ": ";
    msg += what;
    msg += ": ";
    msg += db ? sqlite3_errmsg(db) : "out of memory";
    return std::runtime_error(msg);
}

void create_parent_dirs(const std::string& file) {
    const std::filesystem::path parent = std::filesystem::path(file).parent_path();
    if (parent.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec)
        throw std::runtime_error("usage ledger: usage.database " + file +
                                 ": cannot create directory " + parent.string() + ": " +
                                 ec.message());
}

void exec(sqlite3* db, const std::string& path, const char* sql, std::string_view what) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK)
        throw db_error(path, what, db);
}

sqlite3_stmt* prepare(sqlite3* db, const std::string& path, std::string_view sql,
                      unsigned flags = 0) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), flags, &stmt, nullptr) !=
        SQLITE_OK) {
        sqlite3_finalize(stmt);
        throw db_error(path, "preparing a statement", db);
    }
    return stmt;
}

// Token sums stop at the largest value rather than wrap (they are clamped to SQLite's
// int64 when bound).
void add_saturating(std::uint64_t& sum, std::uint64_t v) {
    sum = v > std::numeric_limits<std::uint64_t>::max() - sum
              ? std::numeric_limits<std::uint64_t>::max()
              : sum + v;
}

std::int64_t count_rows(sqlite3* db, const std::string& path, const char* table) {
    const std::string sql = std::string("SELECT COUNT(*) FROM ") + table;
    stmt_ptr s{prepare(db, path, sql)};
    if (sqlite3_step(s.get()) != SQLITE_ROW) throw db_error(path, "cannot count records", db);
    return sqlite3_column_int64(s.get(), 0);
}

// Tokens are unsigned; SQLite integers are signed 64-bit. Anything past INT64_MAX is
// nonsense from an upstream anyway: clamp rather than wrap negative.
sqlite3_int64 to_sql_int(std::uint64_t v) {
    return v > static_cast<std::uint64_t>(std::numeric_limits<sqlite3_int64>::max())
               ? std::numeric_limits<sqlite3_int64>::max()
               : static_cast<sqlite3_int64>(v);
}

std::uint64_t column_uint(sqlite3_stmt* s, int i) {
    const sqlite3_int64 v = sqlite3_column_int64(s, i);
    return v < 0 ? 0 : static_cast<std::uint64_t>(v);
}

std::optional<std::string> column_text(sqlite3_stmt* s, int i) {
    if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
    return std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(s, i)));
}

void bind_text(sqlite3_stmt* s, int i, std::string_view v) {
    // SQLITE_STATIC: the value outlives the step, and bindings are cleared per row.
    sqlite3_bind_text64(s, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
}

void bind_opt_uint(sqlite3_stmt* s, int i, const std::optional<std::uint64_t>& v) {
    if (v)
        sqlite3_bind_int64(s, i, to_sql_int(*v));
    else
        sqlite3_bind_null(s, i);
}

void bind_opt_double(sqlite3_stmt* s, int i, const std::optional<double>& v) {
    if (v && std::isfinite(*v))
        sqlite3_bind_double(s, i, *v);
    else
        sqlite3_bind_null(s, i);
}

// Binds ledger_sql's positional parameters (?1, ?2…); the strings must outlive the step.
void bind_params(sqlite3_stmt* s, const ledger_sql& q) {
    int i = 1;
    for (const auto& p : q.params) {
        if (const auto* text = std::get_if<std::string>(&p))
            bind_text(s, i, *text);
        else
            sqlite3_bind_int64(s, i, std::get<std::int64_t>(p));
        ++i;
    }
}

class sqlite_ledger_backend final : public ledger_backend {
  public:
    sqlite_ledger_backend(const std::string& path, std::chrono::milliseconds busy_timeout)
        : path_(path), busy_timeout_(busy_timeout) {
        open_writer();
        open_reader();
    }

    const std::string& name() const noexcept override { return path_; }
    write_outcome write_batch(std::span<const usage_record> batch, std::int64_t batch_id,
                              std::string& error) override;
    std::vector<usage_row> aggregate(const usage_query& q) override;
    ledger_totals totals_since(const std::string& key_id, std::int64_t since_ms) override;

  private:
    void open_writer();
    void open_reader();
    int busy_ms() const {
        return static_cast<int>(std::min<std::int64_t>(busy_timeout_.count(), INT_MAX));
    }

    const std::string path_;
    const std::chrono::milliseconds busy_timeout_;
    // Writer side (declared before the statements: they finalize first).
    db_ptr db_;
    stmt_ptr insert_, insert_many_, batch_, daily_, begin_, commit_, rollback_;
    // The batch being written, summed per key, day and model (the views point into the
    // batch; cleared per batch).
    struct daily_sum {
        std::uint64_t requests = 0, prompt = 0, completion = 0, total = 0;
        double cost = 0;
    };
    std::map<std::tuple<std::string_view, std::string, std::string_view>, daily_sum> daily_sums_;
    db_ptr reader_;
};

void sqlite_ledger_backend::open_writer() {
    const std::string& path = path_;
    create_parent_dirs(path);
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(
        path.c_str(), &raw,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,  // one thread uses it
        nullptr);
    db_.reset(raw);
    if (rc != SQLITE_OK) throw db_error(path, "cannot open database", raw);
    sqlite3_extended_result_codes(raw, 1);
    sqlite3_busy_timeout(raw, busy_ms());

    // WAL: readers (admin API) never block the writer, and one fsync per commit.
    {
        stmt_ptr wal{prepare(raw, path, "PRAGMA journal_mode=WAL")};
        if (sqlite3_step(wal.get()) != SQLITE_ROW) throw db_error(path, "cannot set WAL mode", raw);
        const auto* mode = reinterpret_cast<const char*>(sqlite3_column_text(wal.get(), 0));
        if (!mode || std::strcmp(mode, "wal") != 0)
            spdlog::warn(
                "usage ledger: {}: WAL mode unavailable (journal mode {}); readers "
                "will wait for the writer",
                path, mode ? mode : "unknown");
    }
    // FULL: a commit is on disk before the ledger reports it (budgets count from there).
    exec(raw, path, "PRAGMA synchronous=FULL", "cannot set synchronous=FULL");
    // The version is read under the write lock: another process opening the same file at
    // the same time upgrades it first, or finds it upgraded.
    exec(raw, path, "BEGIN IMMEDIATE", "cannot create the schema");
    try {
        int version = 0;
        {
            stmt_ptr v{prepare(raw, path, "PRAGMA user_version")};
            if (sqlite3_step(v.get()) != SQLITE_ROW)
                throw db_error(path, "cannot read schema version", raw);
            version = sqlite3_column_int(v.get(), 0);
        }
        if (version > schema_version)
            throw std::runtime_error("usage ledger: " + path + ": schema version " +
                                     std::to_string(version) +
                                     " was written by a newer tollgate (this one knows " +
                                     std::to_string(schema_version) + ")");
        exec(raw, path, schema_sql().c_str(), "cannot create the schema");
        if (version < 2) {
            // The same transaction that makes usage_daily fills it, so the sums and the
            // records cannot disagree; a ledger made with version 1 may hold millions of
            // records, so say what the start is doing.
            const std::int64_t records = count_rows(raw, path, "usage");
            if (records > 0)
                spdlog::info("usage ledger: {}: summing {} records per key and day (once)", path,
                             records);
            exec(raw, path, usage_daily_backfill_sql().c_str(),
                 "cannot fill the per-key daily totals");
            exec(raw, path, "DROP INDEX IF EXISTS usage_key_day",
                 "cannot drop the (key_id, day) index");
        }
        const std::string set_version = "PRAGMA user_version=" + std::to_string(schema_version);
        exec(raw, path, set_version.c_str(), "cannot set the schema version");
        exec(raw, path, prune_batches_sql, "cannot prune old batch ids");
        exec(raw, path, "COMMIT", "cannot create the schema");
    } catch (...) {
        sqlite3_exec(raw, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
    // What SQLite would put in temporary files (a statement journal past 64 KiB) stays in
    // memory: none of it is needed for durability, the WAL has the commit. Set after the
    // upgrade above, whose sort of every record may be larger than memory should hold.
    exec(raw, path, "PRAGMA temp_store=MEMORY", "cannot set temp_store=MEMORY");

    insert_.reset(prepare(raw, path, insert_sql(1), SQLITE_PREPARE_PERSISTENT));
    insert_many_.reset(prepare(raw, path, insert_sql(rows_per_insert), SQLITE_PREPARE_PERSISTENT));
    batch_.reset(prepare(raw, path, batch_sql, SQLITE_PREPARE_PERSISTENT));
    daily_.reset(prepare(raw, path, daily_sql(), SQLITE_PREPARE_PERSISTENT));
    // IMMEDIATE takes the write lock up front, so a busy database fails at BEGIN (and is
    // retried) instead of part-way through a batch.
    begin_.reset(prepare(raw, path, "BEGIN IMMEDIATE", SQLITE_PREPARE_PERSISTENT));
    commit_.reset(prepare(raw, path, "COMMIT", SQLITE_PREPARE_PERSISTENT));
    rollback_.reset(prepare(raw, path, "ROLLBACK", SQLITE_PREPARE_PERSISTENT));
}

void sqlite_ledger_backend::open_reader() {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                                   nullptr);  // serialised by the ledger's reader mutex
    reader_.reset(raw);
    if (rc != SQLITE_OK) throw db_error(path_, "cannot open database for reading", raw);
    sqlite3_busy_timeout(raw, busy_ms());
}

ledger_backend::write_outcome sqlite_ledger_backend::write_batch(
    std::span<const usage_record> batch, std::int64_t batch_id, std::string& error) {
    sqlite3* db = db_.get();
    // Runs `stmt` to completion; on failure records why and rolls the transaction back so
    // the whole batch can be retried (nothing of it committed).
    auto run_step = [&](sqlite3_stmt* stmt, std::string_view what) {
        const int rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE) {
            sqlite3_reset(stmt);
            return true;
        }
        error.assign(what);
        error += ": ";
        error += sqlite3_errmsg(db);
        sqlite3_reset(stmt);
        return false;
    };
    auto rollback = [&] {
        if (!sqlite3_get_autocommit(db)) {
            sqlite3_step(rollback_.get());
            sqlite3_reset(rollback_.get());
        }
    };

    rollback();  // a transaction left open by an earlier failure
    // The sums point into the batch: emptied however this returns.
    struct clear_sums {
        decltype(daily_sums_)& sums;
        ~clear_sums() { sums.clear(); }
    } clear{daily_sums_};
    if (!run_step(begin_.get(), "begin")) {
        rollback();
        return write_outcome::failed;
    }
    sqlite3_bind_int64(batch_.get(), 1, batch_id);
    sqlite3_bind_int64(batch_.get(), 2,
                       batch.empty() ? 0 : static_cast<sqlite3_int64>(batch.front().ts_ms));
    if (!run_step(batch_.get(), "insert batch id")) {
        rollback();
        return write_outcome::failed;
    }
    if (sqlite3_changes(db) == 0) {  // this batch is already in the database
        rollback();
        return write_outcome::already_stored;
    }
    // The day strings of the rows being bound (bound SQLITE_STATIC: alive until the step).
    std::array<std::string, rows_per_insert> days;
    auto bind_row = [&](sqlite3_stmt* ins, int base, const usage_record& r, std::string& day) {
        day = utc_day(r.ts_ms);
        sqlite3_bind_int64(ins, base + 1, r.ts_ms);
        bind_text(ins, base + 2, day);
        bind_text(ins, base + 3, r.request_id);
        bind_text(ins, base + 4, r.key_id);
        bind_text(ins, base + 5, r.model);
        bind_text(ins, base + 6, r.provider);
        bind_text(ins, base + 7, r.upstream_model);
        sqlite3_bind_int(ins, base + 8, r.status);
        sqlite3_bind_int(ins, base + 9, r.stream ? 1 : 0);
        sqlite3_bind_int64(ins, base + 10, r.attempts);
        bind_opt_uint(ins, base + 11, r.prompt_tokens);
        bind_opt_uint(ins, base + 12, r.completion_tokens);
        bind_opt_uint(ins, base + 13, r.total_tokens);
        sqlite3_bind_int64(ins, base + 14, to_sql_int(r.cached_tokens));
        sqlite3_bind_int(ins, base + 15, r.estimated ? 1 : 0);
        bind_opt_double(ins, base + 16, r.cost_usd);
        sqlite3_bind_double(ins, base + 17, std::isfinite(r.latency_ms) ? r.latency_ms : 0.0);
        bind_opt_double(ins, base + 18, r.ttft_ms);
        if (r.error)
            bind_text(ins, base + 19, *r.error);
        else
            sqlite3_bind_null(ins, base + 19);
        // The same sums the backfill and the reads make of the row (billable_sql, TOTAL).
        daily_sum& sum = daily_sums_[{r.key_id, day, r.model}];
        const auto prompt = static_cast<std::uint64_t>(to_sql_int(r.prompt_tokens.value_or(0)));
        const auto completion =
            static_cast<std::uint64_t>(to_sql_int(r.completion_tokens.value_or(0)));
        ++sum.requests;
        add_saturating(sum.prompt, prompt);
        add_saturating(sum.completion, completion);
        add_saturating(sum.total, r.total_tokens
                                      ? static_cast<std::uint64_t>(to_sql_int(*r.total_tokens))
                                      : prompt + completion);
        if (r.cost_usd && std::isfinite(*r.cost_usd)) sum.cost += *r.cost_usd;
    };
    const int cols = static_cast<int>(stored_column_count(usage_table()));
    std::size_t next = 0;
    for (; batch.size() - next >= rows_per_insert; next += rows_per_insert) {
        sqlite3_stmt* many = insert_many_.get();
        sqlite3_reset(many);
        for (std::size_t k = 0; k < rows_per_insert; ++k)
            bind_row(many, static_cast<int>(k) * cols, batch[next + k], days[k]);
        if (!run_step(many, "insert")) {
            sqlite3_clear_bindings(many);
            rollback();
            return write_outcome::failed;
        }
        // A full batch is ~1.6 ms of this thread's CPU. Where it shares a core with a busy
        // worker, the scheduler (EEVDF) lets it run a whole slice while the worker's
        // requests wait: the full chain's p99 was 1.5-1.8 ms against 0.4-0.5 without the
        // ledger (bench/results/2026-12-07-vm-ledger-daily.md). Offering the core back
        // every few statements cut that to 0.9-1.4 ms; with no one waiting it returns at
        // once, and one syscall per 128 rows costs nothing measurable.
        if ((next / rows_per_insert) % statements_per_yield == statements_per_yield - 1)
            ::sched_yield();
    }
    sqlite3_clear_bindings(insert_many_.get());
    sqlite3_stmt* ins = insert_.get();
    for (; next < batch.size(); ++next) {
        sqlite3_reset(ins);
        sqlite3_clear_bindings(ins);
        bind_row(ins, 0, batch[next], days[0]);
        if (!run_step(ins, "insert")) {
            rollback();
            return write_outcome::failed;
        }
    }
    sqlite3_clear_bindings(ins);  // no pointer into the batch outlives it
    sqlite3_stmt* daily = daily_.get();
    for (const auto& [k, sum] : daily_sums_) {
        sqlite3_reset(daily);
        bind_text(daily, 1, std::get<0>(k));
        bind_text(daily, 2, std::get<1>(k));
        bind_text(daily, 3, std::get<2>(k));
        sqlite3_bind_int64(daily, 4, to_sql_int(sum.requests));
        sqlite3_bind_int64(daily, 5, to_sql_int(sum.prompt));
        sqlite3_bind_int64(daily, 6, to_sql_int(sum.completion));
        sqlite3_bind_int64(daily, 7, to_sql_int(sum.total));
        // Finite (a NaN would break NOT NULL): only absurd costs reach the bounds.
        constexpr double max_cost = std::numeric_limits<double>::max();
        sqlite3_bind_double(daily, 8, std::clamp(sum.cost, -max_cost, max_cost));
        if (!run_step(daily, "add to the per-key daily totals")) {
            sqlite3_clear_bindings(daily);
            rollback();
            return write_outcome::failed;
        }
    }
    sqlite3_clear_bindings(daily);
    if (!run_step(commit_.get(), "commit")) {
        rollback();
        return write_outcome::failed;
    }
    return write_outcome::stored;
}

std::vector<usage_row> sqlite_ledger_backend::aggregate(const usage_query& q) {
    const ledger_sql sql = aggregate_sql(q, sql_dialect::sqlite);
    sqlite3* db = reader_.get();
    stmt_ptr stmt{prepare(db, path_, sql.text)};
    sqlite3_stmt* s = stmt.get();
    bind_params(s, sql);

    std::vector<usage_row> rows;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        usage_row row;
        int c = 0;
        if (q.by_key) row.key = column_text(s, c++);
        if (q.by_model) row.model = column_text(s, c++);
        if (q.by_day) row.day = column_text(s, c++);
        if (q.by_hour) row.hour = column_text(s, c++);
        row.requests = column_uint(s, c++);
        row.prompt_tokens = column_uint(s, c++);
        row.completion_tokens = column_uint(s, c++);
        row.total_tokens = column_uint(s, c++);
        row.cost_usd = sqlite3_column_double(s, c++);
        rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) throw db_error(path_, "usage query failed", db);
    return rows;
}

ledger_totals sqlite_ledger_backend::totals_since(const std::string& key_id,
                                                  std::int64_t since_ms) {
    const ledger_sql sql = totals_sql(key_id, since_ms, sql_dialect::sqlite);
    sqlite3* db = reader_.get();
    stmt_ptr stmt{prepare(db, path_, sql.text)};
    sqlite3_stmt* s = stmt.get();
    bind_params(s, sql);
    if (sqlite3_step(s) != SQLITE_ROW) throw db_error(path_, "usage query failed", db);
    return ledger_totals{column_uint(s, 0), sqlite3_column_double(s, 1)};
}

}  // namespace

std::unique_ptr<ledger_backend> make_sqlite_ledger_backend(const std::string& path,
                                                           std::chrono::milliseconds busy_timeout) {
    return std::make_unique<sqlite_ledger_backend>(path, busy_timeout);
}

}  // namespace tollgate::store
