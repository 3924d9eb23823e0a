// The PostgreSQL storage of the usage ledger: several gateway instances write one ledger
// and each one's /admin/usage and budget seeding see every instance's records.
//
// Writes (writer thread only): one transaction per batch, the batch sent with COPY … FROM
// STDIN (text format) inside BEGIN/COMMIT. Measured with bench/ledger_bench (200k
// records, batches of 1000, fsync on, this 2-core VM): COPY about 50k records/s, a
// 1000-row multi-row INSERT with 19k text parameters 17-24k/s (the server's parse and
// analysis of the huge VALUES list dominates), a prepared one-row INSERT per record
// 16-18k/s (a round trip per record). A broken connection is re-established at the next
// attempt (PQreset); the ledger's retry loop supplies the backoff.
//
// No record twice: when the connection breaks during COMMIT the outcome is unknown. Each
// transaction notes its id (txid_current()) before COMMIT; the next attempt first asks
// txid_status() whether that transaction committed, and if so reports the batch stored
// instead of inserting it again. A transaction still "in progress" (the old session has
// not noticed its client is gone) is ended with pg_terminate_backend, and asked again.
//
// Reads: a second connection, read-only sessions, reconnected once per query when the
// server went away since the last one.
#include <libpq-fe.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>

#include <spdlog/spdlog.h>

#include "store/ledger_backend.hpp"
#include "store/pg_connection.hpp"

namespace tollgate::store {

namespace {

constexpr int schema_version = 1;

// Taken (per transaction) around the schema creation: CREATE TABLE IF NOT EXISTS is not
// safe against a concurrent CREATE of the same table (a unique_violation on the catalog)
// when several instances start at once. 'tollgate' in ASCII; the key store takes it too.
constexpr const char* schema_lock_sql = "SELECT pg_advisory_xact_lock(8389754676633367653)";

// PostgreSQL's own version record, the tables (schema.hpp), and the pruning of batch ids
// older than 30 days (far longer than any shutdown's spill file waits for a start).
std::string schema_sql() {
    return R"sql(
CREATE TABLE IF NOT EXISTS tollgate_schema (
    component TEXT PRIMARY KEY,
    version   INTEGER NOT NULL
);
INSERT INTO tollgate_schema (component, version) VALUES ('usage', 1)
    ON CONFLICT (component) DO NOTHING;
)sql" + create_sql(usage_table(), sql_dialect::postgres) +
           ";\n" + create_sql(usage_batches_table(), sql_dialect::postgres) + R"sql(;
DELETE FROM usage_batches
    WHERE ts_ms < (extract(epoch FROM now()) * 1000)::bigint - 30 * 86400000::bigint;
)sql";
}

const std::string& copy_sql() {
    static const std::string sql = "COPY usage (" + column_list(usage_table()) + ") FROM STDIN";
    return sql;
}

std::string int_text(std::int64_t v) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

// COPY's text format: columns separated by a tab, rows ended by a newline, NULL as \N,
// and backslash escapes for the characters that would break that framing.
class copy_row_writer {
  public:
    explicit copy_row_writer(std::string& out) : out_(out) {}

    void integer(std::int64_t v) {
        sep();
        char buf[24];
        const auto r = std::to_chars(buf, buf + sizeof buf, v);
        out_.append(buf, r.ptr);
    }
    // Tokens are unsigned; BIGINT is signed: clamp rather than wrap negative.
    void uinteger(std::uint64_t v) {
        integer(static_cast<std::int64_t>(
            std::min<std::uint64_t>(v, std::numeric_limits<std::int64_t>::max())));
    }
    void opt_uinteger(const std::optional<std::uint64_t>& v) {
        if (v)
            uinteger(*v);
        else
            null();
    }
    // Shortest text that reads back as the same double: the server stores exactly the
    // value SQLite would. Non-finite: NULL (as the SQLite backend binds them).
    void real(double v) {
        if (!std::isfinite(v)) return null();
        sep();
        char buf[32];
        const auto r = std::to_chars(buf, buf + sizeof buf, v);
        out_.append(buf, r.ptr);
    }
    void opt_real(const std::optional<double>& v) {
        if (v)
            real(*v);
        else
            null();
    }
    void boolean(bool v) {
        sep();
        out_ += v ? 't' : 'f';
    }
    void text(std::string_view v) {
        sep();
        for (const char c : pg_safe_text(v, scratch_)) {
            switch (c) {
                case '\\':
                    out_ += "\\\\";
                    break;
                case '\t':
                    out_ += "\\t";
                    break;
                case '\n':
                    out_ += "\\n";
                    break;
                case '\r':
                    out_ += "\\r";
                    break;
                default:
                    out_ += c;
            }
        }
    }
    void opt_text(const std::optional<std::string>& v) {
        if (v)
            text(*v);
        else
            null();
    }
    void null() {
        sep();
        out_ += "\\N";
    }
    void end_row() {
        out_ += '\n';
        first_ = true;
    }

  private:
    void sep() {
        if (!first_) out_ += '\t';
        first_ = false;
    }
    std::string& out_;
    std::string scratch_;
    bool first_ = true;
};

void append_copy_row(copy_row_writer& w, const usage_record& r) {
    w.integer(r.ts_ms);
    w.text(utc_day(r.ts_ms));
    w.text(r.request_id);
    w.text(r.key_id);
    w.text(r.model);
    w.text(r.provider);
    w.text(r.upstream_model);
    w.integer(r.status);
    w.boolean(r.stream);
    w.integer(r.attempts);
    w.opt_uinteger(r.prompt_tokens);
    w.opt_uinteger(r.completion_tokens);
    w.opt_uinteger(r.total_tokens);
    w.uinteger(r.cached_tokens);
    w.boolean(r.estimated);
    w.opt_real(r.cost_usd);
    w.real(std::isfinite(r.latency_ms) ? r.latency_ms : 0.0);
    w.opt_real(r.ttft_ms);
    w.opt_text(r.error);
    w.end_row();
}

class pg_ledger_backend final : public ledger_backend {
  public:
    explicit pg_ledger_backend(const std::string& url);

    const std::string& name() const noexcept override { return writer_.name(); }
    write_outcome write_batch(std::span<const usage_record> batch, std::int64_t batch_id,
                              std::string& error) override;
    std::vector<usage_row> aggregate(const usage_query& q) override;
    ledger_totals totals_since(const std::string& key_id, std::int64_t since_ms) override;

  private:
    void create_schema();
    // Settles pending_: true when the earlier attempt committed (the batch is stored),
    // false when it did not; nullopt with `error` set when that cannot be known yet.
    std::optional<bool> settle_pending(std::size_t records, std::string& error);
    // COPY of the whole batch into the open transaction.
    bool copy_rows(std::span<const usage_record> batch, std::string& error);
    void rollback();
    pg_result_ptr read(const ledger_sql& sql);

    pg_connection writer_;
    pg_connection reader_;
    std::uint64_t reader_generation_ = 0;  // the read-only session setting is per connection

    // A transaction whose COMMIT was sent but not answered: its id and server process.
    struct pending_commit {
        std::string xid;
        int backend_pid = 0;
    };
    std::optional<pending_commit> pending_;

    std::string copy_buffer_;  // reused between batches
    std::string scratch_;
};

pg_ledger_backend::pg_ledger_backend(const std::string& url)
    : writer_(url, "usage ledger"), reader_(url, "usage ledger") {
    writer_.ensure_or_throw();
    create_schema();
    reader_.ensure_or_throw();
}

void pg_ledger_backend::create_schema() {
    writer_.exec_or_throw("BEGIN", "cannot create the schema");
    try {
        writer_.exec_or_throw(schema_lock_sql, "cannot create the schema");
        writer_.exec_or_throw(schema_sql().c_str(), "cannot create the schema");
        const pg_result_ptr v =
            writer_.exec_or_throw("SELECT version FROM tollgate_schema WHERE component = 'usage'",
                                  "cannot read the schema version");
        const std::int64_t version = v.rows() > 0 ? v.int64(0, 0) : 0;
        if (version > schema_version)
            throw std::runtime_error(
                writer_.describe("", "schema version " + std::to_string(version) +
                                         " was written by a newer tollgate (this one knows " +
                                         std::to_string(schema_version) + ")"));
        writer_.exec_or_throw("COMMIT", "cannot create the schema");
    } catch (...) {
        rollback();
        throw;
    }
}

void pg_ledger_backend::rollback() {
    if (!writer_.broken()) writer_.exec("ROLLBACK");
}

std::optional<bool> pg_ledger_backend::settle_pending(std::size_t records, std::string& error) {
    const pending_commit& p = *pending_;
    const pg_result_ptr r = writer_.exec_params("SELECT txid_status($1)", {p.xid.c_str()});
    if (!r.ok()) {
        if (writer_.broken()) {
            error = "checking whether an interrupted commit went through: " + writer_.error(r);
            return std::nullopt;
        }
        // The server does not know the transaction (another cluster now answers this
        // URL): the earlier attempt is not in this database.
        spdlog::warn(
            "usage ledger: {}: the outcome of an interrupted commit is unknown ({}); "
            "writing the batch again",
            writer_.name(), writer_.error(r));
        pending_.reset();
        return false;
    }
    const std::string_view status = r.text(0, 0);
    if (status == "committed") {
        spdlog::info(
            "usage ledger: {}: an interrupted commit had gone through; its {} "
            "record(s) are not written again",
            writer_.name(), records);
        pending_.reset();
        return true;
    }
    if (status == "in progress") {
        // The old session waits for a COMMIT that may never arrive (a network cut): end it,
        // which aborts the transaction, and look again at the next attempt. Only that
        // session: its process id and its current transaction must both match.
        const std::string pid = int_text(p.backend_pid);
        writer_.exec_params(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND "
            "backend_xid::text = ($2::bigint % 4294967296)::text",
            {pid.c_str(), p.xid.c_str()});
        error = "an interrupted commit is still in progress on the server";
        return std::nullopt;
    }
    pending_.reset();  // aborted (or NULL: too old to know, which a retry loop never is)
    return false;
}

bool pg_ledger_backend::copy_rows(std::span<const usage_record> batch, std::string& error) {
    copy_buffer_.clear();
    copy_row_writer w(copy_buffer_);
    for (const usage_record& r : batch) append_copy_row(w, r);
    const pg_result_ptr start = writer_.exec(copy_sql().c_str());
    if (PQresultStatus(start.get()) != PGRES_COPY_IN) {
        error = "copy: " + writer_.error(start);
        return false;
    }
    PGconn* c = writer_.raw();
    if (PQputCopyData(c, copy_buffer_.data(), static_cast<int>(copy_buffer_.size())) != 1 ||
        PQputCopyEnd(c, nullptr) != 1) {
        error = "copy: " + writer_.error(pg_result_ptr());
        return false;
    }
    // The COPY's own result, then nullptr. Bounded: a COPY has one result; a broken
    // connection answers nullptr.
    bool ok = true;
    for (int i = 0; i < 8; ++i) {
        const pg_result_ptr r(PQgetResult(c));
        if (!r.get()) break;
        if (!r.ok()) {
            ok = false;
            error = "copy: " + writer_.error(r);
        }
    }
    // Give back memory that records with huge fields made us grow.
    if (copy_buffer_.capacity() > (std::size_t{16} << 20)) std::string().swap(copy_buffer_);
    return ok;
}

ledger_backend::write_outcome pg_ledger_backend::write_batch(std::span<const usage_record> batch,
                                                             std::int64_t batch_id,
                                                             std::string& error) {
    if (!writer_.ensure(error)) return write_outcome::failed;
    if (pending_) {
        const std::optional<bool> stored = settle_pending(batch.size(), error);
        if (!stored) return write_outcome::failed;
        if (*stored) return write_outcome::stored;
    }

    pg_result_ptr r = writer_.exec("BEGIN; SELECT txid_current()");
    if (!r.ok() && writer_.broken()) {
        // The server went away while we were idle (a restart): nothing of this batch was
        // sent yet, so reconnect and begin again at once rather than report a failure.
        if (!writer_.ensure(error)) return write_outcome::failed;
        r = writer_.exec("BEGIN; SELECT txid_current()");
    }
    if (!r.ok() || r.rows() != 1) {
        error = "begin: " + writer_.error(r);
        rollback();
        return write_outcome::failed;
    }
    pending_commit txn{std::string(r.text(0, 0)), PQbackendPID(writer_.raw())};

    // The batch's id, in the same transaction: a batch already stored (a spill file
    // applied again) inserts no row, and nothing of it is written twice.
    const std::string id_text = int_text(batch_id);
    const std::string ts_text = int_text(batch.empty() ? 0 : batch.front().ts_ms);
    r = writer_.exec_params(
        "INSERT INTO usage_batches (batch_id, ts_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        {id_text.c_str(), ts_text.c_str()});
    if (!r.ok()) {
        error = "insert batch id: " + writer_.error(r);
        rollback();
        return write_outcome::failed;
    }
    if (std::string_view(PQcmdTuples(r.get())) == "0") {
        rollback();
        return write_outcome::already_stored;
    }

    if (!copy_rows(batch, error)) {
        rollback();
        return write_outcome::failed;
    }
    pending_ = std::move(txn);
    r = writer_.exec("COMMIT");
    // A COMMIT of a transaction that failed answers ROLLBACK: check the tag too.
    if (r.ok() && std::string_view(PQcmdStatus(r.get())) == "COMMIT") {
        pending_.reset();
        return write_outcome::stored;
    }
    error = "commit: " + writer_.error(r);
    // The server answered: it did not commit. No answer (connection gone): unknown, and
    // settled by the next attempt.
    if (!writer_.broken()) {
        pending_.reset();
        rollback();
    }
    return write_outcome::failed;
}

pg_result_ptr pg_ledger_backend::read(const ledger_sql& sql) {
    std::vector<std::string> texts;
    texts.reserve(sql.params.size());
    for (const auto& p : sql.params) {
        if (const auto* s = std::get_if<std::string>(&p))
            texts.emplace_back(pg_safe_text(*s, scratch_));
        else
            texts.push_back(int_text(std::get<std::int64_t>(p)));
    }
    std::vector<const char*> ptrs;
    for (const auto& t : texts) ptrs.push_back(t.c_str());

    // Two attempts: the second only when the first found the connection broken (the server
    // restarted since the last query).
    for (int attempt = 0;; ++attempt) {
        std::string why;
        if (!reader_.ensure(why)) throw std::runtime_error(reader_.describe("usage query", why));
        if (reader_generation_ != reader_.generation()) {
            reader_.exec("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY");
            reader_generation_ = reader_.generation();
        }
        pg_result_ptr r = reader_.exec_params(sql.text, ptrs);
        if (r.ok()) return r;
        if (attempt == 0 && reader_.broken()) continue;
        throw std::runtime_error(reader_.describe("usage query failed", reader_.error(r)));
    }
}

std::vector<usage_row> pg_ledger_backend::aggregate(const usage_query& q) {
    const pg_result_ptr r = read(aggregate_sql(q, sql_dialect::postgres));
    std::vector<usage_row> rows;
    rows.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
        usage_row row;
        int c = 0;
        if (q.by_key) row.key = r.opt_text(i, c++);
        if (q.by_model) row.model = r.opt_text(i, c++);
        if (q.by_day) row.day = r.opt_text(i, c++);
        if (q.by_hour) row.hour = r.opt_text(i, c++);
        row.requests = r.uint64(i, c++);
        row.prompt_tokens = r.uint64(i, c++);
        row.completion_tokens = r.uint64(i, c++);
        row.total_tokens = r.uint64(i, c++);
        row.cost_usd = r.dbl(i, c++);
        rows.push_back(std::move(row));
    }
    return rows;
}

ledger_totals pg_ledger_backend::totals_since(const std::string& key_id, std::int64_t since_ms) {
    const pg_result_ptr r = read(totals_sql(key_id, since_ms, sql_dialect::postgres));
    if (r.rows() != 1) throw std::runtime_error(reader_.describe("usage query", "no result row"));
    return ledger_totals{r.uint64(0, 0), r.dbl(0, 1)};
}

}  // namespace

std::unique_ptr<ledger_backend> make_pg_ledger_backend(const std::string& url) {
    return std::make_unique<pg_ledger_backend>(url);
}

}  // namespace tollgate::store
