#include "policies/usage/ledger.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <utility>

#include <spdlog/spdlog.h>

#include "gateway/core/json_text.hpp"

namespace tollgate::policies {
namespace json_text = core::json_text;

namespace {

// Bump when the table changes; a newer file is refused rather than misread.
constexpr int schema_version = 1;

constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS usage (
    id                INTEGER PRIMARY KEY,
    ts_ms             INTEGER NOT NULL,
    day               TEXT    NOT NULL,
    request_id        TEXT    NOT NULL,
    key_id            TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    upstream_model    TEXT    NOT NULL,
    status            INTEGER NOT NULL,
    stream            INTEGER NOT NULL,
    attempts          INTEGER NOT NULL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    total_tokens      INTEGER,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    estimated         INTEGER NOT NULL,
    cost_usd          REAL,
    latency_ms        REAL    NOT NULL,
    ttft_ms           REAL,
    error             TEXT
);
CREATE INDEX IF NOT EXISTS usage_key_day ON usage(key_id, day);
CREATE INDEX IF NOT EXISTS usage_ts ON usage(ts_ms);
)sql";

constexpr const char* insert_sql =
    "INSERT INTO usage (ts_ms, day, request_id, key_id, model, provider, upstream_model, "
    "status, stream, attempts, prompt_tokens, completion_tokens, total_tokens, cached_tokens, "
    "estimated, cost_usd, latency_ms, ttft_ms, error) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)";

// The tokens a row charges: the SQL twin of billable_tokens().
constexpr const char* billable_sql =
    "COALESCE(total_tokens, COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0))";

bool is_postgres_url(std::string_view s) {
    return s.starts_with("postgresql://") || s.starts_with("postgres://");
}

std::runtime_error db_error(const std::string& path, std::string_view what, sqlite3* db) {
    std::string msg = "usage ledger: ";
    msg += path;
    msg += ": ";
    msg += what;
    msg += ": ";
    msg += db ? sqlite3_errmsg(db) : "out of memory";
    return std::runtime_error(msg);
}

void create_parent_dirs(const std::string& file, std::string_view what) {
    const std::filesystem::path parent = std::filesystem::path(file).parent_path();
    if (parent.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec)
        throw std::runtime_error("usage ledger: " + std::string(what) + " " + file +
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
    // SQLITE_STATIC: the record outlives the step, and bindings are cleared per row.
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

// Money sums: print nano-dollar precision so 0.1 + 0.2 reads 0.3.
double round_usd(double v) {
    if (!std::isfinite(v) || std::fabs(v) >= 1e9) return v;
    return std::round(v * 1e9) / 1e9;
}

// Fixed-width decimal digits at s[pos, pos + n) → out; false unless all are digits.
bool read_digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) return false;
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    out = v;
    return true;
}

ledger::options normalized(ledger::options o) {
    if (o.batch_max == 0) o.batch_max = 1;
    if (o.flush_interval.count() < 0) o.flush_interval = std::chrono::milliseconds{0};
    if (o.busy_timeout.count() < 0) o.busy_timeout = std::chrono::milliseconds{0};
    return o;
}

}  // namespace

std::optional<std::int64_t> parse_time_param(std::string_view s) {
    using namespace std::chrono;
    int y = 0, mo = 0, d = 0;
    if (!read_digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' || !read_digits(s, 5, 2, mo) ||
        s[7] != '-' || !read_digits(s, 8, 2, d))
        return std::nullopt;
    const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
                             day{static_cast<unsigned>(d)}};
    if (!ymd.ok()) return std::nullopt;
    std::int64_t ms = duration_cast<milliseconds>(sys_days{ymd}.time_since_epoch()).count();
    if (s.size() == 10) return ms;

    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return std::nullopt;
    int hh = 0, mm = 0, ss = 0;
    if (!read_digits(s, 11, 2, hh) || s.size() < 19 || s[13] != ':' || !read_digits(s, 14, 2, mm) ||
        s[16] != ':' || !read_digits(s, 17, 2, ss))
        return std::nullopt;
    // ss == 60: a leap second, which RFC 3339 allows; unix time has none, so it runs into
    // the next minute.
    if (hh > 23 || mm > 59 || ss > 60) return std::nullopt;
    ms += ((hh * 60LL + mm) * 60 + ss) * 1000;

    std::size_t pos = 19;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        const std::size_t start = pos;
        int frac_ms = 0, scale = 100;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            frac_ms += (s[pos] - '0') * scale;  // digits past milliseconds are truncated
            scale /= 10;
            ++pos;
        }
        if (pos == start) return std::nullopt;
        ms += frac_ms;
    }

    const std::string_view zone = s.substr(pos);
    if (zone == "Z" || zone == "z") return ms;
    // "+hh:mm" / "-hh:mm"; ' ' stands for '+' when a query string was form-decoded.
    if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-' && zone[0] != ' ') || zone[3] != ':')
        return std::nullopt;
    int oh = 0, om = 0;
    if (!read_digits(zone, 1, 2, oh) || !read_digits(zone, 4, 2, om) || oh > 23 || om > 59)
        return std::nullopt;
    const std::int64_t offset_ms = (oh * 60LL + om) * 60'000;
    return zone[0] == '-' ? ms + offset_ms : ms - offset_ms;
}

void ledger::db_closer::operator()(sqlite3* db) const noexcept {
    sqlite3_close_v2(db);
}
void ledger::stmt_finalizer::operator()(sqlite3_stmt* s) const noexcept {
    sqlite3_finalize(s);
}

ledger::ledger(options opts) : options_(normalized(std::move(opts))) {
    if (is_postgres_url(options_.database))
        // The URL is not echoed: it may carry a password.
        throw std::runtime_error(
            "usage.database: postgresql:// is not supported yet; give a SQLite file path");
    if (options_.database.empty()) throw std::runtime_error("usage.database: no path given");
    open_writer();
    open_reader();
    open_jsonl();
    // Warm capacity so push() does not allocate in the steady state.
    queue_.reserve(std::min(options_.batch_max, options_.queue_capacity) + 1);
    writer_ = std::thread([this] { run(); });
}

ledger::~ledger() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    work_cv_.notify_one();
    writer_.join();  // the writer drains everything first
    if (jsonl_fd_ >= 0) ::close(jsonl_fd_);
    // Statements and connections close in member order (statements before their db).
}

void ledger::open_writer() {
    const std::string& path = options_.database;
    create_parent_dirs(path, "usage.database");
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(
        path.c_str(), &raw,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,  // one thread uses it
        nullptr);
    db_.reset(raw);
    if (rc != SQLITE_OK) throw db_error(path, "cannot open database", raw);
    sqlite3_extended_result_codes(raw, 1);
    sqlite3_busy_timeout(
        raw, static_cast<int>(std::min<std::int64_t>(options_.busy_timeout.count(), INT_MAX)));

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
    exec(raw, path, "BEGIN IMMEDIATE", "cannot create the schema");
    try {
        exec(raw, path, schema_sql, "cannot create the schema");
        const std::string set_version = "PRAGMA user_version=" + std::to_string(schema_version);
        exec(raw, path, set_version.c_str(), "cannot set the schema version");
        exec(raw, path, "COMMIT", "cannot create the schema");
    } catch (...) {
        sqlite3_exec(raw, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }

    insert_.reset(prepare(raw, path, insert_sql, SQLITE_PREPARE_PERSISTENT));
    // IMMEDIATE takes the write lock up front, so a busy database fails at BEGIN (and is
    // retried) instead of part-way through a batch.
    begin_.reset(prepare(raw, path, "BEGIN IMMEDIATE", SQLITE_PREPARE_PERSISTENT));
    commit_.reset(prepare(raw, path, "COMMIT", SQLITE_PREPARE_PERSISTENT));
    rollback_.reset(prepare(raw, path, "ROLLBACK", SQLITE_PREPARE_PERSISTENT));
}

void ledger::open_reader() {
    const std::string& path = options_.database;
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                                   nullptr);  // serialised by reader_mutex_
    reader_.reset(raw);
    if (rc != SQLITE_OK) throw db_error(path, "cannot open database for reading", raw);
    sqlite3_busy_timeout(
        raw, static_cast<int>(std::min<std::int64_t>(options_.busy_timeout.count(), INT_MAX)));
}

void ledger::open_jsonl() {
    const std::string& path = options_.jsonl;
    if (path.empty()) return;
    create_parent_dirs(path, "usage.jsonl");
    jsonl_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (jsonl_fd_ < 0)
        throw std::runtime_error("usage ledger: usage.jsonl " + path +
                                 ": cannot open for append: " + std::strerror(errno));
}

void ledger::push(usage_record r) {
    bool wake = false;
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(r));
        ++pushed_seq_;
        pending_.fetch_add(1, std::memory_order_relaxed);
        // Wake the writer only on the edges it waits for (first record of an idle queue,
        // a full batch); notifying on every push would wake it a thousand times a batch.
        const std::size_t n = queue_.size();
        wake = n == 1 || n == options_.batch_max;
    }
    if (wake) work_cv_.notify_one();
}

bool ledger::saturated() const noexcept {
    return pending_.load(std::memory_order_relaxed) >= options_.queue_capacity;
}

std::size_t ledger::pending() const noexcept {
    return pending_.load(std::memory_order_relaxed);
}

bool ledger::healthy() const noexcept {
    return healthy_.load(std::memory_order_relaxed);
}

std::uint64_t ledger::transactions() const noexcept {
    return transactions_.load(std::memory_order_relaxed);
}

void ledger::on_commit(commit_callback cb) {
    std::lock_guard lock(callback_mutex_);
    callback_ = std::move(cb);
}

void ledger::flush() {
    std::unique_lock lock(mutex_);
    const std::uint64_t target = pushed_seq_;
    if (committed_seq_ >= target) return;
    ++flush_waiters_;
    work_cv_.notify_one();  // stop gathering: write what is there now
    done_cv_.wait(lock, [&] { return committed_seq_ >= target; });
    --flush_waiters_;
}

bool ledger::flush_for(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    const std::uint64_t target = pushed_seq_;
    if (committed_seq_ >= target) return true;
    ++flush_waiters_;
    work_cv_.notify_one();
    const bool done = done_cv_.wait_for(lock, timeout, [&] { return committed_seq_ >= target; });
    --flush_waiters_;
    return done;
}

void ledger::run() noexcept {
    // `work` takes the whole queue in one swap (so pushers never wait for the writer's
    // I/O) and hands back its emptied buffer, capacity kept; `batch` is the slice of at
    // most batch_max records written in one transaction.
    std::vector<usage_record> work;
    std::vector<usage_record> batch;
    work.reserve(std::min(options_.batch_max, options_.queue_capacity) + 1);
    batch.reserve(std::min(options_.batch_max, options_.queue_capacity) + 1);
    std::size_t pos = 0;
    for (;;) {
        if (pos == work.size()) {
            work.clear();
            pos = 0;
            // Give back memory a backlog (a long outage) made us grow.
            if (work.capacity() > std::max(options_.queue_capacity, 4 * options_.batch_max))
                work = std::vector<usage_record>();
            std::unique_lock lock(mutex_);
            const bool was_idle = queue_.empty();
            work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) break;  // stopping, and everything is written
            // Group commit: a transaction starts at most every flush_interval unless a full
            // batch is waiting (or someone flushes). Coming out of idle, that gathers a
            // trickle into one fsync; under load it makes batches of hundreds rather than
            // of the few records that arrive during one fsync, which rewrote the same
            // B-tree pages for every few records (most of the ledger's CPU time).
            const auto gather_until =
                was_idle ? std::chrono::steady_clock::now() + options_.flush_interval
                         : last_commit_ + options_.flush_interval;
            if (queue_.size() < options_.batch_max && !stop_ && flush_waiters_ == 0)
                work_cv_.wait_until(lock, gather_until, [&] {
                    return stop_ || flush_waiters_ > 0 || queue_.size() >= options_.batch_max;
                });
            work.swap(queue_);
        }
        const std::size_t n = std::min(options_.batch_max, work.size() - pos);
        batch.clear();
        std::move(work.begin() + static_cast<std::ptrdiff_t>(pos),
                  work.begin() + static_cast<std::ptrdiff_t>(pos + n), std::back_inserter(batch));
        pos += n;

        last_commit_ = std::chrono::steady_clock::now();
        commit_with_retry(batch);
        append_jsonl_batch(batch);
        notify_committed(batch);
        {
            std::lock_guard lock(mutex_);
            committed_seq_ += n;
            pending_.fetch_sub(n, std::memory_order_relaxed);
        }
        done_cv_.notify_all();
    }
}

void ledger::commit_with_retry(const std::vector<usage_record>& batch) {
    using namespace std::chrono_literals;
    std::chrono::milliseconds backoff = 10ms;
    unsigned failures = 0;
    std::string error;
    for (;;) {
        error.clear();
        if (write_batch(batch, error)) {
            transactions_.fetch_add(1, std::memory_order_relaxed);
            if (failures > 0)
                spdlog::info("usage ledger: {}: write recovered after {} failed attempt(s)",
                             options_.database, failures);
            healthy_.store(true, std::memory_order_relaxed);
            return;
        }
        ++failures;
        healthy_.store(false, std::memory_order_relaxed);
        // The batch is kept and retried until it commits: dropping it would lose billing.
        spdlog::error(
            "usage ledger: {}: writing {} record(s) failed (attempt {}): {}; "
            "retrying in {} ms",
            options_.database, batch.size(), failures, error, backoff.count());
        std::this_thread::sleep_for(backoff);
        backoff = std::min<std::chrono::milliseconds>(backoff * 2, 1s);
    }
}

bool ledger::write_batch(const std::vector<usage_record>& batch, std::string& error) {
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
    if (!run_step(begin_.get(), "begin")) {
        rollback();
        return false;
    }
    sqlite3_stmt* ins = insert_.get();
    std::string day;
    for (const usage_record& r : batch) {
        sqlite3_reset(ins);
        sqlite3_clear_bindings(ins);
        day = utc_day(r.ts_ms);
        sqlite3_bind_int64(ins, 1, r.ts_ms);
        bind_text(ins, 2, day);
        bind_text(ins, 3, r.request_id);
        bind_text(ins, 4, r.key_id);
        bind_text(ins, 5, r.model);
        bind_text(ins, 6, r.provider);
        bind_text(ins, 7, r.upstream_model);
        sqlite3_bind_int(ins, 8, r.status);
        sqlite3_bind_int(ins, 9, r.stream ? 1 : 0);
        sqlite3_bind_int64(ins, 10, r.attempts);
        bind_opt_uint(ins, 11, r.prompt_tokens);
        bind_opt_uint(ins, 12, r.completion_tokens);
        bind_opt_uint(ins, 13, r.total_tokens);
        sqlite3_bind_int64(ins, 14, to_sql_int(r.cached_tokens));
        sqlite3_bind_int(ins, 15, r.estimated ? 1 : 0);
        bind_opt_double(ins, 16, r.cost_usd);
        sqlite3_bind_double(ins, 17, std::isfinite(r.latency_ms) ? r.latency_ms : 0.0);
        bind_opt_double(ins, 18, r.ttft_ms);
        if (r.error)
            bind_text(ins, 19, *r.error);
        else
            sqlite3_bind_null(ins, 19);
        if (!run_step(ins, "insert")) {
            rollback();
            return false;
        }
    }
    sqlite3_clear_bindings(ins);  // no pointer into the batch outlives it
    if (!run_step(commit_.get(), "commit")) {
        rollback();
        return false;
    }
    return true;
}

void ledger::append_jsonl_batch(const std::vector<usage_record>& batch) {
    if (jsonl_fd_ < 0) return;
    jsonl_buffer_.clear();
    // An earlier failed write may have left half a line: end it, so later lines parse.
    if (jsonl_line_open_) jsonl_buffer_.push_back('\n');
    for (const usage_record& r : batch) {
        append_jsonl(jsonl_buffer_, r);
        jsonl_buffer_.push_back('\n');
    }
    // One write per batch; O_APPEND. No fsync: the database is the durable record, the
    // log is a convenience copy.
    std::size_t written = 0;
    while (written < jsonl_buffer_.size()) {
        const ssize_t w =
            ::write(jsonl_fd_, jsonl_buffer_.data() + written, jsonl_buffer_.size() - written);
        if (w < 0) {
            if (errno == EINTR) continue;
            spdlog::error(
                "usage ledger: usage.jsonl {}: appending {} line(s) failed: {}; the "
                "records are in the database",
                options_.jsonl, batch.size(), std::strerror(errno));
            break;
        }
        written += static_cast<std::size_t>(w);
    }
    if (written > 0) jsonl_line_open_ = jsonl_buffer_[written - 1] != '\n';
}

void ledger::notify_committed(const std::vector<usage_record>& batch) {
    std::lock_guard lock(callback_mutex_);
    if (!callback_) return;
    try {
        callback_(batch);
    } catch (const std::exception& e) {
        spdlog::error("usage ledger: commit callback threw: {}", e.what());
    } catch (...) {
        spdlog::error("usage ledger: commit callback threw");
    }
}

std::vector<usage_row> ledger::aggregate(const usage_query& q) const {
    std::string group;
    auto add_group = [&](bool on, const char* column) {
        if (!on) return;
        if (!group.empty()) group += ", ";
        group += column;
    };
    add_group(q.by_key, "key_id");
    add_group(q.by_model, "model");
    add_group(q.by_day, "day");

    std::string sql = "SELECT ";
    if (!group.empty()) sql += group + ", ";
    sql += "COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), ";
    sql += "COALESCE(SUM(";
    sql += billable_sql;
    sql += "), 0), TOTAL(cost_usd) FROM usage WHERE 1";
    // Parameters by name, bound below only when present.
    if (q.key) sql += " AND key_id = :key";
    if (q.model) sql += " AND model = :model";
    if (q.since_ms) sql += " AND ts_ms >= :since";
    if (q.until_ms) sql += " AND ts_ms < :until";
    // Redundant day bounds let SQLite range-scan the (key_id, day) index for one key.
    if (q.key && q.since_ms) sql += " AND day >= :since_day";
    if (q.key && q.until_ms) sql += " AND day <= :until_day";
    if (!group.empty()) sql += " GROUP BY " + group + " ORDER BY " + group;

    std::lock_guard lock(reader_mutex_);
    sqlite3* db = reader_.get();
    stmt_ptr stmt{prepare(db, options_.database, sql)};
    sqlite3_stmt* s = stmt.get();
    auto index = [&](const char* name) { return sqlite3_bind_parameter_index(s, name); };
    std::string since_day, until_day;
    if (q.key) bind_text(s, index(":key"), *q.key);
    if (q.model) bind_text(s, index(":model"), *q.model);
    if (q.since_ms) sqlite3_bind_int64(s, index(":since"), *q.since_ms);
    if (q.until_ms) sqlite3_bind_int64(s, index(":until"), *q.until_ms);
    if (q.key && q.since_ms) {
        since_day = utc_day(*q.since_ms);
        bind_text(s, index(":since_day"), since_day);
    }
    if (q.key && q.until_ms) {
        until_day = utc_day(*q.until_ms);
        bind_text(s, index(":until_day"), until_day);
    }

    std::vector<usage_row> rows;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        usage_row row;
        int c = 0;
        if (q.by_key) row.key = column_text(s, c++);
        if (q.by_model) row.model = column_text(s, c++);
        if (q.by_day) row.day = column_text(s, c++);
        row.requests = column_uint(s, c++);
        row.prompt_tokens = column_uint(s, c++);
        row.completion_tokens = column_uint(s, c++);
        row.total_tokens = column_uint(s, c++);
        row.cost_usd = sqlite3_column_double(s, c++);
        rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) throw db_error(options_.database, "usage query failed", db);
    return rows;
}

std::string ledger::aggregate_json(const usage_query& q) const {
    const std::vector<usage_row> rows = aggregate(q);
    std::string out = "{\"data\":[";
    auto text_field = [&](const char* name, const std::optional<std::string>& v) {
        out += '"';
        out += name;
        out += "\":";
        if (v)
            json_text::append_string(out, *v);
        else
            out += "null";
        out += ',';
    };
    bool first = true;
    for (const usage_row& row : rows) {
        if (!first) out += ',';
        first = false;
        out += '{';
        if (q.by_key) text_field("key", row.key);
        if (q.by_model) text_field("model", row.model);
        if (q.by_day) text_field("day", row.day);
        out += "\"requests\":";
        json_text::append_uint(out, row.requests);
        out += ",\"prompt_tokens\":";
        json_text::append_uint(out, row.prompt_tokens);
        out += ",\"completion_tokens\":";
        json_text::append_uint(out, row.completion_tokens);
        out += ",\"total_tokens\":";
        json_text::append_uint(out, row.total_tokens);
        out += ",\"cost_usd\":";
        json_text::append_double(out, round_usd(row.cost_usd));
        out += '}';
    }
    out += "]}";
    return out;
}

ledger::totals ledger::totals_since(const std::string& key_id, std::int64_t since_ms) const {
    std::string sql = "SELECT COALESCE(SUM(";
    sql += billable_sql;
    sql += "), 0), TOTAL(cost_usd) FROM usage WHERE key_id = ?1 AND day >= ?2 AND ts_ms >= ?3";
    const std::string since_day = utc_day(since_ms);

    std::lock_guard lock(reader_mutex_);
    sqlite3* db = reader_.get();
    stmt_ptr stmt{prepare(db, options_.database, sql)};
    sqlite3_stmt* s = stmt.get();
    bind_text(s, 1, key_id);
    bind_text(s, 2, since_day);
    sqlite3_bind_int64(s, 3, since_ms);
    if (sqlite3_step(s) != SQLITE_ROW) throw db_error(options_.database, "usage query failed", db);
    return totals{column_uint(s, 0), sqlite3_column_double(s, 1)};
}

}  // namespace tollgate::policies
