#pragma once
// ledger_backend: the storage half of the usage ledger. `ledger` keeps the one copy of the
// queue, the batching, the retry-with-backoff and the JSONL log; a backend only stores a
// batch in one transaction and answers the read queries. Two backends: SQLite (a file
// path, one host) and PostgreSQL (a postgresql:// URL, many instances sharing a ledger).
//
// Thread-safety: write_batch() is called only from the ledger's writer thread; aggregate()
// and totals_since() only under the ledger's reader mutex (one reader at a time), beside
// the writer. Each backend keeps a connection for each side.

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "policies/usage/ledger.hpp"
#include "policies/usage/usage_record.hpp"

namespace tollgate::policies {

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
    virtual write_outcome write_batch(const std::vector<usage_record>& batch, std::int64_t batch_id,
                                      std::string& error) = 0;

    // ledger::aggregate / ledger::totals_since; throw std::runtime_error on failure.
    virtual std::vector<usage_row> aggregate(const usage_query& q) = 0;
    virtual ledger::totals totals_since(const std::string& key_id, std::int64_t since_ms) = 0;
};

// Both throw std::runtime_error naming the store (redacted) and the cause.
std::unique_ptr<ledger_backend> make_sqlite_ledger_backend(const ledger::options& o);
std::unique_ptr<ledger_backend> make_pg_ledger_backend(const ledger::options& o);

// The read queries, written once for both dialects so they cannot drift apart: the same
// columns in the same order (group columns, then requests, prompt, completion, total
// tokens, cost), the same filters, the same ordering.
enum class sql_dialect { sqlite, postgres };
struct ledger_sql {
    std::string text;
    std::vector<std::variant<std::string, std::int64_t>> params;  // ?1/$1, ?2/$2… in order
};
ledger_sql aggregate_sql(const usage_query& q, sql_dialect d);
ledger_sql totals_sql(const std::string& key_id, std::int64_t since_ms, sql_dialect d);

}  // namespace tollgate::policies
