#pragma once
// ledger_backend: the storage half of the usage ledger. `ledger` keeps the one copy of the
// queue, the batching, the retry-with-backoff and the JSONL log; a backend only stores a
// batch in one transaction and answers the read queries. Two backends: SQLite (a file
// path, one host) and PostgreSQL (a postgresql:// URL, many instances sharing a ledger).
//
// Thread-safety: write_batch() is called only from the ledger's writer thread; aggregate()
// and totals_since() only under the ledger's reader mutex (one reader at a time), beside
// the writer. Each backend keeps a connection for each side.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "store/schema.hpp"
#include "store/usage_record.hpp"

namespace tollgate::store {

struct usage_query {
    std::optional<std::string> key, model;           // filters (exact match)
    std::optional<std::int64_t> since_ms, until_ms;  // since inclusive, until exclusive
    bool by_key = false, by_model = false, by_day = false, by_hour = false;  // group_by
};

struct usage_row {
    std::optional<std::string> key, model, day, hour;  // set only for the fields grouped on
    std::uint64_t requests = 0, prompt_tokens = 0, completion_tokens = 0, total_tokens = 0;
    double cost_usd = 0;
};

struct ledger_totals {
    std::uint64_t tokens = 0;
    double usd = 0;
};

class ledger_backend {
  public:
    virtual ~ledger_backend() = default;

    // How log lines name the store: the SQLite path, or host:port/dbname (never a password).
    virtual const std::string& name() const noexcept = 0;

    // Stores the whole batch and its id (table usage_batches) in one transaction and
    // returns `stored`; or finds the id already stored (an earlier attempt, or a spill
    // file replayed again) and stores nothing: `already_stored`; or stores none of it and
    // returns `failed` with `error` saying why, and the ledger retries the same batch
    // (same id, same records, same order). A batch is never stored twice, even when an
    // earlier attempt's commit outcome was unknown.
    enum class write_outcome { failed, stored, already_stored };
    virtual write_outcome write_batch(std::span<const usage_record> batch, std::int64_t batch_id,
                                      std::string& error) = 0;

    // ledger::aggregate / ledger_totals_since; throw std::runtime_error on failure.
    virtual std::vector<usage_row> aggregate(const usage_query& q) = 0;
    virtual ledger_totals totals_since(const std::string& key_id, std::int64_t since_ms) = 0;
};

// `database`: a SQLite file path (parent directories are created), or a postgresql:// or
// postgres:// URL (libpq's; its password never reaches a log line or a message).
// `busy_timeout`: how long SQLite waits for a lock. Throws std::runtime_error naming the
// store (redacted) and the cause.
std::unique_ptr<ledger_backend> make_ledger_backend(const std::string& database,
                                                    std::chrono::milliseconds busy_timeout);
std::unique_ptr<ledger_backend> make_sqlite_ledger_backend(const std::string& path,
                                                           std::chrono::milliseconds busy_timeout);
std::unique_ptr<ledger_backend> make_pg_ledger_backend(const std::string& url);

// The read queries, written once for both dialects so they cannot drift apart: the same
// columns in the same order (group columns, then requests, prompt, completion, total
// tokens, cost), the same filters, the same ordering. SQLite reads the whole days of a
// range from usage_daily and only the part-days at its edges (and hours) from usage;
// PostgreSQL reads usage.
struct ledger_sql {
    std::string text;
    std::vector<std::variant<std::string, std::int64_t>> params;  // ?1/$1, ?2/$2… in order
};
ledger_sql aggregate_sql(const usage_query& q, sql_dialect d);
ledger_sql totals_sql(const std::string& key_id, std::int64_t since_ms, sql_dialect d);
// SQLite: fills usage_daily from the records already in usage (a ledger made before it).
std::string usage_daily_backfill_sql();

}  // namespace tollgate::store
