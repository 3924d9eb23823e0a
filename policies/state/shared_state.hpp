#pragma once
// shared_state: rate limits and budgets held in Redis, shared by every instance
// (state.backend: redis).
//
// Admission is ONE atomic Redis step per request: a Lua script (EVALSHA, re-sent as EVAL
// on NOSCRIPT) that checks and reserves the key's rpm/tpm/concurrency AND its budget in
// one go, under Redis's single-threaded execution, so a burst spread over many instances
// admits exactly what one instance would (200 requests for rpm 50 → 50). The requests of
// one key that reach a worker together share one script call, decided one after the
// other inside it (the key's reads and writes are paid once per batch). Time comes from
// Redis (TIME), not from the instances, so their clocks do not matter for the window.
// Settle and release are atomic scripts too.
//
// Data per client key, all under the hash tag {<key id>} so that Redis Cluster keeps
// them in one slot (a script may only touch one slot):
//   <prefix>{id}:r   HASH the 60-s window (rpm, tpm): requests and tokens per 100-ms
//                    bucket, their totals
//   <prefix>{id}:l   ZSET rid → lease expiry ms: requests in flight (concurrency)
//   <prefix>{id}:b   HASH start, per, tok, nano: spent in the period (no expiry)
//   <prefix>{id}:f   HASH rid → "tokens:bucket:nano" of a request in flight (its window
//                    bucket; its budget hold, when it has one), '#rtok' and '#rnano' → the
//                    holds' totals (they expire together with the holds)
//   <prefix>{id}:s   ZSET rid → time: requests released, or settled while a renewal that
//                    named them went unanswered (two leases long; usually absent)
//   <prefix>{id}:q   HASH instance → highest settle sequence counted, instance#t → when;
//                    '#touch' → the last admission or renewal for the key (no expiry)
// Every reservation carries a lease (state.lease). The instance renews the leases of its
// requests in flight every lease/3; a crashed or cut-off instance stops renewing, and
// the next admission for the key drops its expired holds: the capacity returns by itself.
// When nobody could renew (the key untouched for over half a lease: Redis was stopped or
// unreachable for everyone), expired leases get one more lease instead of being dropped,
// and a renewal takes back a lease (and budget hold) another instance dropped while this
// one was cut off: requests still running keep their slots through any outage.
//
// Budgets: the spend of the key's current period lives in Redis, shared. When Redis has
// none for the key (first use, Redis restarted or flushed, the period kind changed), the
// script says so and the instance seeds it from the ledger of record (the max of what
// Redis holds and what the ledger sums, so an instance's restart never resets it) and
// asks again. A settle adds the real spend exactly once per reservation, even after its
// hold expired; requests admitted by per-instance limits while Redis was unreachable
// (fail_mode: open) add theirs when they end.
//
// Settles go through an outbox, per key in order: numbered per instance and key, sent in
// batches (one script call carries every settle that queued while the previous one was
// on its way), retried until Redis takes them, however long it is away; q's sequence
// makes each count exactly once. The outbox is bounded (settle_backlog_limit); past the
// bound a key's oldest settles are dropped and its spend is re-seeded from the ledger
// of record when Redis returns, as when Redis lost the key's data.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "config/config.hpp"
#include "gateway/core/request_context.hpp"
#include "policies/auth/key_store.hpp"
#include "policies/budget/budget_book.hpp"
#include "policies/rate_limit/limiter.hpp"

namespace tollgate::state {
class redis_client;
}

namespace tollgate::policies {

class ledger;

class shared_state {
  public:
    struct request {
        std::string key_id;
        std::optional<limiter::limits> rate;        // nullopt: no rate part
        std::optional<budget_book::budget> budget;  // nullopt: no budget part
        std::uint64_t est_tokens = 0;
        double est_usd = 0;
    };

    struct result {
        enum class kind { admitted, refused, unavailable };
        kind how = kind::unavailable;
        // Refusals and headers in the limiter's terms (why: rpm/tpm/concurrency).
        limiter::decision rate;
        budget_book::decision::reason budget_why = budget_book::decision::reason::none;
        std::string rid;  // admitted: the reservation, for settle/release
        // Admitted with half of the key's tpm, concurrency or budget in use: its settle
        // goes at once (see settle()).
        bool near_cap = true;
    };

    // Connects (waiting up to state.timeout, at least 1 s, for the first connection; a
    // Redis that is not there yet is not an error: fail_mode applies until it is) and
    // subscribes to the key-change channel when `on_keys_changed` is set.
    shared_state(const config::state_config& cfg, std::shared_ptr<ledger> seed_from);
    ~shared_state();

    // Thread-safe; from a worker coroutine. Never longer than state.timeout (twice in
    // the rare case of a budget seed: then the ledger is read in between).
    boost::asio::awaitable<result> admit(request r);

    // Fire-and-forget from on_settle: into the key's outbox, delivered in order and
    // exactly once whenever Redis is reachable. Thread-safe.
    // `urgent` (the admission saw the key near a cap: result::near_cap): sent at once.
    // Otherwise settles linger up to settle_linger to go in bigger batches; meanwhile the
    // request's holds (its estimate, its concurrency slot) count a few ms longer, which
    // only matters near a cap.
    void settle(const std::string& key_id, const std::string& rid, std::uint64_t tokens, double usd,
                bool with_budget, bool urgent);
    // The request never went upstream: its holds are returned (retried for one lease;
    // after that its lease has run out anyway). Thread-safe.
    void release(const std::string& key_id, const std::string& rid);

    // Shutdown (after the last request): the outbox goes to Redis at once, no lingering;
    // the destructor waits for it until 4 × state.timeout (1-5 s) after this call.
    // Called early by main so that it runs beside the ledger's own flush. Idempotent.
    void start_drain();

    // Settles waiting for Redis, in all (for metrics and tests).
    std::size_t settle_backlog() const;
    // Most settles the outbox keeps (each ~100 bytes); then a key's oldest are dropped.
    static constexpr std::size_t settle_backlog_limit = 200'000;
    // A key's settles go as soon as this many wait, or after the linger.
    static constexpr std::size_t settle_batch = 64;
    static constexpr std::chrono::milliseconds settle_linger{5};

    // Key changes made through the admin API: published to every instance.
    void publish_keys_changed();
    void on_keys_changed(std::function<void()> cb);

    // The keys themselves, for instances that share no database (key_mirror): the hash
    // <prefix>{keys}:data (field → value, values starting with their time) and the counter
    // <prefix>{keys}:version. Blocking (bounded by state.timeout); not from the Redis
    // client's thread.
    std::optional<std::int64_t> keys_version();
    std::optional<std::vector<std::pair<std::string, std::string>>> keys_load();
    bool keys_put(const std::vector<key_mirror::entry>& entries);

    bool connected() const noexcept;
    config::fail_mode mode() const noexcept { return cfg_.on_failure; }
    // Metrics: tollgate_state_*.
    void render_metrics(std::string& out) const;
    void count_fallback() noexcept { fallbacks_.fetch_add(1, std::memory_order_relaxed); }
    void count_refusal() noexcept { refused_503_.fetch_add(1, std::memory_order_relaxed); }

  private:
    std::string key(const std::string& id, char part) const;
    std::vector<std::string> keys_of(const std::string& id) const;
    struct hold {
        std::uint64_t tokens = 0;
        std::int64_t nano = 0;
        bool budget = false;
    };
    void track(const std::string& key_id, const std::string& rid, hold h);
    void untrack(const std::string& key_id, const std::string& rid);
    void send_with_retry(int script, std::vector<std::string> keys, std::vector<std::string> args,
                         std::chrono::steady_clock::time_point give_up);
    boost::asio::awaitable<void> renew_loop();

    // Admission batches (see admit_lua): a worker's requests for one key, with the same
    // limits, that arrive while it runs what is ready go to Redis in one script call.
    struct admit_outcome;
    struct admit_batch;
    static constexpr std::size_t max_admit_batch = 64;
    boost::asio::awaitable<void> send_batch(std::shared_ptr<admit_batch> b);
    std::mutex batch_mu_;
    std::unordered_map<std::string, std::shared_ptr<admit_batch>> open_batches_;

    // The settle outbox (see the top of this file). Guarded by outbox_mu_; flush_outbox()
    // runs on the Redis client's thread, one batch in flight per key.
    struct settle_item {
        std::uint64_t seq = 0;
        std::string rid;
        std::uint64_t tokens = 0;
        std::int64_t nano = 0;
        bool budget = false;
        std::chrono::steady_clock::time_point ended;  // sent as an age: clocks may differ
        bool unsure = false;  // a renewal naming it went unanswered (see settle_lua)
    };
    struct key_outbox {
        std::deque<settle_item> items;
        std::uint64_t next_seq = 1;
        std::size_t sending = 0;  // items at the front in the batch on its way
        bool dropped = false;     // items were dropped: ask for a re-seed
        int renewing = 0;         // renewal calls of the key on their way: settles wait
        bool urgent = false;      // an item gives back a concurrency slot: no linger
        bool lingering = false;   // a linger timer runs
        std::unordered_set<std::string> unsure;  // rids in renewals that went unanswered
    };
    void flush_outbox(const std::string& key_id);
    // The key's settles not answered yet (the newest max_ended_requests), as 'rid tokens
    // nano-dollars' joined by ',': requests that ended here, which Redis still counts in
    // flight and at their estimates.
    std::string ended_requests(const std::string& key_id);
    static constexpr std::size_t max_ended_requests = 64;
    // What the outbox of a key does next (under outbox_mu_), and doing it (not under it).
    enum class next_step { none, now, linger };
    next_step next_for(key_outbox& box);
    void take(next_step step, const std::string& key_id);
    // A renewal call's answer (client's thread): lets the key's settles go. Unanswered
    // (timed out, cut off): it may still run after them.
    void renewed(const std::string& key_id, const std::vector<std::string>& rids, bool unanswered);
    void retry_outbox(const std::string& key_id);

    config::state_config cfg_;
    std::shared_ptr<ledger> ledger_;
    std::unique_ptr<state::redis_client> redis_;
    boost::asio::steady_timer* renew_timer_ = nullptr;  // the loop's; client's thread only
    std::string instance_;                              // random, in every reservation id
    std::atomic<std::uint64_t> next_rid_{1};

    std::mutex live_mu_;  // the holds this instance must keep renewing
    std::unordered_map<std::string, std::unordered_map<std::string, hold>> live_;

    mutable std::mutex outbox_mu_;
    std::unordered_map<std::string, key_outbox> outbox_;
    std::size_t outbox_size_ = 0;
    std::condition_variable outbox_cv_;  // the outbox shrank or a batch failed (shutdown)

    std::mutex keys_cb_mu_;
    std::function<void()> keys_changed_;

    std::atomic<bool> stopping_{false};
    std::atomic<bool> redis_gone_{false};                // the drain at shutdown is over
    std::chrono::steady_clock::time_point drain_until_;  // set once by start_drain()
    std::atomic<std::uint64_t> admissions_{0}, refusals_{0}, unavailable_{0}, timeouts_{0},
        script_errors_{0}, seeds_{0}, fallbacks_{0}, refused_503_{0}, renewals_{0},
        settle_retries_{0}, settle_dropped_{0}, settles_sent_{0}, reseeds_asked_{0},
        release_retries_{0}, releases_given_up_{0}, admit_batches_{0};
};

// The key_mirror of a shared_state (it may be gone by the time the key store calls: then
// every call answers "unreachable").
std::shared_ptr<key_mirror> make_key_mirror(std::weak_ptr<shared_state> st);

}  // namespace tollgate::policies
