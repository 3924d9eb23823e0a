#pragma once
// ledger: the durable usage store (SPEC "Usage accounting", `usage:` config, /admin/usage).
//
// Worker threads push() finished-request records into a mutex-protected queue; ONE
// background writer thread drains it in batches, each batch one database transaction,
// then appends the batch to the optional JSONL log and tells on_commit() listeners. A
// record counts (budgets, flush()) only once its transaction committed. A failed
// transaction is rolled back and the same batch retried with backoff: records are never
// dropped, and never stored twice.
//
// Storage (ledger_backend.hpp): `usage.database` is a SQLite file path (WAL,
// synchronous=FULL: a committed record survives a crash of the process) or a
// postgresql:// URL (one ledger shared by several gateway instances; the writer
// reconnects after the server went away). The queue, batching and retries above are the
// same for both.
//
// Reads (aggregate, totals_since) use a separate connection, so the admin API and budget
// seeding never wait for the writer.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "store/ledger_backend.hpp"
#include "store/usage_record.hpp"

namespace tollgate::policies {

// `since`/`until` of /admin/usage: RFC 3339 ("2026-11-25T10:00:00Z", optional fraction,
// "z", "+hh:mm"/"-hh:mm" offsets, 't' or ' ' for 'T'; a ' ' where the offset's '+' was,
// as form-decoding of an unescaped '+' leaves it) or "YYYY-MM-DD" (midnight UTC).
// Returns unix milliseconds (fraction truncated to ms), or nullopt if malformed or out of
// range (month 13, Feb 30, hour 24...). Thread-safe (pure function).
std::optional<std::int64_t> parse_time_param(std::string_view text);

class ledger {
  public:
    struct options {
        // SQLite file path (parent directories are created), or a postgresql:// or
        // postgres:// URL (libpq's; its password never reaches a log line or a message).
        std::string database;
        std::string jsonl;                             // optional append-only log; empty = none
        std::size_t queue_capacity = 65536;            // saturated() threshold; never a drop point
        std::size_t batch_max = 1000;                  // records per transaction (0 is taken as 1)
        std::chrono::milliseconds flush_interval{20};  // longest wait to gather a batch
        std::chrono::milliseconds busy_timeout{5000};  // SQLite waits this long for a lock
        // Where stop_within() writes the records it could not make durable, and where the
        // constructor looks for them (spill_file.hpp). Empty: spill_path_for(database).
        std::string spill_path;
    };

    // The default spill file: `<database>.spill` beside a SQLite file; for a PostgreSQL
    // URL, ./data/usage.spill (the instance's own, as its queue was).
    static std::string spill_path_for(const std::string& database);

    using totals = store::ledger_totals;

    using commit_callback = std::function<void(std::span<const store::usage_record>)>;

    // Opens (creating it and its parent directories if missing) the SQLite database, sets
    // WAL and synchronous=FULL, or connects to the PostgreSQL server (two connections);
    // creates the schema (IF NOT EXISTS: several instances may start at once), opens the
    // JSONL log for append, applies a spill file an earlier shutdown left (each batch once;
    // the file is removed when all of it is stored), and starts the writer thread. Throws
    // std::runtime_error naming the path (host:port/dbname for a URL) and the cause if any
    // of it fails; a spill file that cannot be applied is kept.
    explicit ledger(options opts);

    // Waits until every pushed record is committed (retrying failures, however long that
    // takes: records are never dropped), then stops the writer and closes the files.
    // Callers wanting a bounded shutdown call flush_for() first.
    ~ledger();

    ledger(const ledger&) = delete;
    ledger& operator=(const ledger&) = delete;

    // Thread-safe; called from worker threads on the request path. Copies the record into
    // the queue and wakes the writer: no I/O, never blocks on the writer's I/O (only on
    // the queue mutex, held for the copy), never drops. The queue may grow past
    // queue_capacity; admission control consults saturated(). The copy goes into a slot
    // an earlier record used, whose strings keep their capacity: in the steady state a
    // push allocates nothing, and no record's memory is freed on another thread.
    void push(const store::usage_record& r);

    // Thread-safe, lock-free: records pushed but not yet committed (the batch being
    // written included) >= queue_capacity.
    bool saturated() const noexcept;

    // Thread-safe, lock-free: records pushed but not yet committed.
    std::size_t pending() const noexcept;

    // Thread-safe, lock-free: false while the last write attempt failed (for /readyz);
    // true again after the next successful commit.
    bool healthy() const noexcept;

    // Thread-safe, lock-free: transactions committed so far (tests check batching).
    std::uint64_t transactions() const noexcept;

    // Sets the listener called on the writer thread after each committed batch (and after
    // its JSONL lines were written), with that batch, each record exactly once. Set it
    // before traffic: batches committed earlier are not replayed. Thread-safe. The
    // callback must not throw (exceptions are logged and swallowed) and must not call
    // flush() (it would wait for itself).
    void on_commit(commit_callback cb);

    // Blocks until every record pushed (by any thread) before the call is committed and
    // its callback has run. Thread-safe; not from the commit callback.
    void flush();
    // The same, giving up after `timeout`; true if everything was committed.
    bool flush_for(std::chrono::milliseconds timeout);

    // Shutdown within `timeout` (SPEC: SIGTERM exits within drain_timeout + 10 s, whatever
    // the database does): flushes for up to timeout - 1 s; what is still not durable then
    // (the batch being written included, under its id) goes to the spill file, and the
    // writer is told to stop retrying. Returns true when the writer has stopped (the
    // destructor then returns at once); false when it is still inside a database call,
    // and the caller must end the process without destroying the ledger (everything it
    // held is in the spill file). Call once, after the last push().
    bool stop_within(std::chrono::milliseconds timeout);

    // true for a PostgreSQL ledger (every instance's records), false for a SQLite file
    // (this instance's own).
    bool shared_by_instances() const noexcept;

    // Records stop_within() wrote to the spill file; records the constructor applied from one.
    std::size_t spilled() const noexcept { return spilled_; }
    std::size_t replayed() const noexcept { return replayed_; }

    // Read side. Thread-safe; runs beside the writer on its own read-only connection
    // (serialised among readers by a mutex) and sees every committed record (on
    // PostgreSQL: every instance's). Throws std::runtime_error on a database error (this
    // is the admin path, not the data plane); a broken PostgreSQL connection is
    // re-established once per call before giving up.
    //
    // One row per group of the chosen fields, ordered by them (key, model, day); no
    // grouping = one row of totals (requests 0 when nothing matched). Unknown token counts
    // add 0, except total_tokens falls back to prompt + completion (billable_tokens()).
    std::vector<store::usage_row> aggregate(const store::usage_query& q) const;
    // SPEC's {"data":[{"key":…,"model":…,"day":…,"requests":N,"prompt_tokens":N,
    // "completion_tokens":N,"total_tokens":N,"cost_usd":X}]}, omitting fields not grouped
    // on; cost_usd rounded to 1e-9 so sums print as 0.3, not 0.30000000000000004.
    std::string aggregate_json(const store::usage_query& q) const;
    // Budget seeding at start: billable tokens and cost of `key_id` since `since_ms`.
    totals totals_since(const std::string& key_id, std::int64_t since_ms) const;

  private:
    void open_jsonl();
    void run() noexcept;
    void replay_spill();
    // false only when stop_within() abandoned the batch.
    bool commit_with_retry(std::span<const store::usage_record> batch, std::int64_t batch_id);
    void append_jsonl_batch(std::span<const store::usage_record> batch);
    void notify_committed(std::span<const store::usage_record> batch);

    const options options_;

    // The store: write_batch() from the writer thread only, reads under reader_mutex_.
    std::unique_ptr<store::ledger_backend> backend_;

    // Writer-thread state (the thread is the only user after the constructor).
    int jsonl_fd_ = -1;
    std::string jsonl_buffer_;
    bool jsonl_line_open_ = false;  // a failed write left a partial line behind

    // Serialises the readers on the backend's read connection.
    mutable std::mutex reader_mutex_;

    // Queue and progress: guarded by mutex_.
    mutable std::mutex mutex_;
    std::condition_variable work_cv_;  // writer waits: records, flush request, stop
    std::condition_variable done_cv_;  // flushers wait: committed_seq_ advanced
    // Records pushed and not yet taken by the writer: [0, queued_). The slots past
    // queued_ are kept (with their strings' capacity) for the next pushes.
    std::vector<store::usage_record> queue_;
    std::size_t queued_ = 0;
    std::uint64_t pushed_seq_ = 0;     // records ever pushed
    std::uint64_t committed_seq_ = 0;  // records ever committed (FIFO, so a prefix)
    std::chrono::steady_clock::time_point last_commit_{};  // writer thread only
    std::size_t flush_waiters_ = 0;                        // > 0: stop gathering, write now
    bool stop_ = false;
    // The writer's records: `work_` (taken from queue_ in one swap, slots and all;
    // [pos_, work_end_) not yet written) and the batch being written, a slice of work_.
    // Changed under mutex_ only; the writer reads batch_ unlocked during the write, and
    // stop_within() copies it (and the rest) under the lock, changing no record.
    std::vector<store::usage_record> work_;
    std::size_t pos_ = 0, work_end_ = 0;
    std::span<const store::usage_record> batch_;
    std::int64_t batch_id_ = 0;
    bool in_flight_ = false;          // batch_ is being written
    bool abandon_ = false;            // stop_within() spilled everything: stop retrying
    bool writer_exited_ = false;      // run() returned
    std::int64_t next_batch_id_ = 0;  // random start: instances sharing a database differ
    std::size_t spilled_ = 0, replayed_ = 0;

    std::mutex callback_mutex_;
    commit_callback callback_;

    std::atomic<std::size_t> pending_{0};
    std::atomic<bool> healthy_{true};
    std::atomic<std::uint64_t> transactions_{0};

    std::thread writer_;  // last: starts after everything above is built
};

}  // namespace tollgate::policies
