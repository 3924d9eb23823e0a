#pragma once
// budget_book: per-key token / USD budgets per calendar period, reserve → settle → commit.
//
// Sans-io: every call takes the time as Unix milliseconds (budgets follow the UTC
// calendar, so they use wall-clock time, not a steady clock); nothing here reads a clock,
// the time zone or does I/O.
//
// Per key the book holds three amounts, each in tokens and in USD:
// - committed: spend the usage ledger has made durable for the key's current period
//   (seeded from the ledger at start, then added by committed());
// - pending:   requests that finished (settle()) whose ledger record is not yet durable;
// - reserved:  estimates of requests in flight (reserve() until settle()/release()).
// A key's spend is committed + pending + reserved. reserve() admits while that spend is
// below the budget and holds the estimate, atomically under the key's shard lock, so
// concurrent requests cannot all pass a nearly spent budget (LESSONS: litellm#12977, a
// $50 budget → $764): the overshoot is one request (the last one admitted) when
// estimates are upper bounds (prompt + max_tokens × n at the dearest price).
//
// Rules chosen here:
// - SPEC "Admission against a budget or tpm": a request is refused when spend >= budget
//   (reservations of requests in flight included), admitted otherwise, whatever its own
//   estimate: a key with nothing spent always gets its first request, even one whose
//   estimate is larger than the whole budget.
// - Periods are UTC calendar periods: day from 00:00Z, month from the 1st 00:00Z, total
//   from the Unix epoch (never rolls over). When a call sees a later period than the
//   key's, committed spend resets to 0. Pending and reserved amounts carry over: they
//   belong to requests admitted earlier but still being paid for, and a record committed
//   with a timestamp in the old period is then no longer added to committed.
// - A ledger commit follows its own settle (on_settle runs before the usage policy's
//   on_complete queues the record), but the book does not rely on the order: if a
//   commit came first, pending would dip below zero meanwhile; reads count it as 0 so spend is
//   never understated by more than what is in flight, and it is clamped back to >= 0 whenever the
//   key has nothing in flight (then no settle can still match it), so a stray commit cannot create
//   lasting credit.
// - USD is held as integer nano-dollars: settle and commit of the same amount cancel
//   exactly, with no floating-point drift over millions of requests.
// - A period change of a key's budget (reload) needs a new seed() from the ledger: the
//   book only knows the committed spend of the period it tracked. seed() takes the period
//   kind, so that a month seeded after a day (an earlier start) is not taken as stale.
//
// Thread-safety: every public member function may be called concurrently from any
// thread; keys are spread over 64 shards, each with its own mutex, no global lock. A
// `reservation` object is plain data owned by one request: do not settle/release the
// same object from two threads at once (settling two copies of one reservation is safe:
// the second is a no-op).

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace tollgate::policies {

class budget_book {
  public:
    // A key's budget; nullopt = that currency is not capped. Mirrors config::budget_config.
    struct budget {
        std::optional<std::uint64_t> tokens;
        std::optional<double> usd;
        enum class period { day, month, total };
        period per = period::month;
    };
    using period = budget::period;

    // What an admitted request holds; give it back with settle() or release().
    // Invalid (id 0) when nothing is held: after settle/release, or when the budget caps
    // neither tokens nor usd (nothing is tracked then).
    struct reservation {
        std::string key;
        std::uint64_t id = 0;
        std::uint64_t tokens = 0;  // the estimates reserved
        double usd = 0;
        bool valid() const noexcept { return id != 0; }
    };

    struct decision {
        bool admitted = false;
        enum class reason { none, tokens, usd };  // tokens first when both are spent
        reason why = reason::none;
        // Left in the period after this request (when admitted); nullopt = not capped.
        std::optional<std::uint64_t> remaining_tokens;
        std::optional<double> remaining_usd;
        // When the period ends and the budget is whole again (Unix ms); INT64_MAX for total.
        std::int64_t period_end_ms = 0;
        reservation held;
    };

    struct spend {
        std::uint64_t tokens = 0;
        double usd = 0;
    };

    budget_book() = default;
    budget_book(const budget_book&) = delete;
    budget_book& operator=(const budget_book&) = delete;

    // Start of the period containing `now_ms`, in Unix ms, by UTC calendar arithmetic
    // (civil-from-days; no time zone, no mktime). total → 0.
    [[nodiscard]] static std::int64_t period_start_ms(period p, std::int64_t now_ms) noexcept;
    // Start of the next period; total → INT64_MAX.
    [[nodiscard]] static std::int64_t period_end_ms(period p, std::int64_t now_ms) noexcept;

    // Sets (replaces) the key's committed spend for the `per` period starting at
    // `period_start_ms`, as summed from the ledger (at start, or when a reload gives the
    // key a budget or another period kind). A seed for an earlier period of the same kind
    // than the key already tracks is ignored (it was read before a rollover); one for
    // another kind replaces it even though it starts earlier (day → month). Thread-safe.
    void seed(const std::string& key, std::uint64_t tokens, double usd, period per,
              std::int64_t period_start_ms);

    // Atomically refuses if spend + this estimate would exceed a cap of `b`, else holds
    // the estimate as an in-flight reservation. Rolls the key to the period of `now_ms`
    // first. A refusal holds nothing. Thread-safe.
    [[nodiscard]] decision reserve(const std::string& key, const budget& b,
                                   std::uint64_t est_tokens, double est_usd, std::int64_t now_ms);

    // The request finished: its reservation is replaced by the actual spend, pending until
    // the ledger commits it. Invalidates `r`; a no-op on an invalid or already finished
    // reservation, or after forget(). Thread-safe.
    void settle(reservation& r, std::uint64_t actual_tokens, double actual_usd);

    // The request never reached the upstream (so no ledger record will come): its
    // reservation is returned without spend. Same idempotence as settle(). Thread-safe.
    void release(reservation& r);

    // The ledger made a record durable: `tokens`/`usd` move from pending to committed,
    // counted in the period containing `record_ts_ms` (not counted if that period is
    // over). Ignored for a key the book does not track (no budget: nothing to cap).
    // Thread-safe.
    void committed(const std::string& key, std::uint64_t tokens, double usd,
                   std::int64_t record_ts_ms);

    // committed (0 if the period of `now_ms` is later than the key's) + pending + reserved.
    // For metrics and tests; modifies nothing. Thread-safe.
    [[nodiscard]] spend current(const std::string& key, std::int64_t now_ms) const;

    // Drops everything about a key (deleted key). Its reservations still in flight
    // become no-ops. Thread-safe.
    void forget(const std::string& key);

  private:
    struct flight {
        std::uint64_t id;
        std::uint64_t tokens;
        std::int64_t nano_usd;
    };

    struct key_state {
        std::optional<period> per;  // as last given to reserve(); unknown after seed() alone
        std::int64_t start_ms = 0;  // start of the period `committed_*` belongs to
        std::uint64_t committed_tokens = 0;
        std::int64_t committed_nano = 0;
        std::int64_t pending_tokens = 0;  // may dip below 0: a commit overtook its settle
        std::int64_t pending_nano = 0;
        std::uint64_t reserved_tokens = 0;
        std::int64_t reserved_nano = 0;
        std::vector<flight> flights;  // in-flight reservations, sorted by id
    };

    struct alignas(64) shard {
        mutable std::mutex mu;
        std::unordered_map<std::string, key_state> keys;
        std::uint64_t next_id = 1;
    };

    static constexpr std::size_t shard_count = 64;

    shard& shard_for(const std::string& key) noexcept;
    const shard& shard_for(const std::string& key) const noexcept;
    void finish(reservation& r, std::uint64_t actual_tokens, double actual_usd, bool release);
    static void roll_to(key_state& k, period p, std::int64_t now_ms) noexcept;

    std::array<shard, shard_count> shards_;
};

}  // namespace tollgate::policies
