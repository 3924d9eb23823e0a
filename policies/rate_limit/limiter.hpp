#pragma once
// limiter: the per-key rpm / tpm / concurrency accounting behind the rate_limit policy.
//
// Sans-io: every call takes `now`, nothing here reads a clock or does I/O, so the rules
// are unit-tested with a fake time line. The policy calls it from every worker thread.
//
// Rules (SPEC "Edge rules" → Limits):
// - Limits hold over ANY 60-second sliding window (now - 60 s, now], not the clock
//   minute: each key keeps a log of its admissions (time, tokens) with running sums;
//   entries leave the window exactly 60 s after their admission (amortised O(1): each
//   entry is appended once and popped once).
// - admit() is an atomic check-and-reserve under the key's shard lock: a burst of
//   requests for `rpm: 50` admits exactly 50 (LESSONS: racy limits, litellm#18730).
// - Tokens are reserved at admission (the policy's estimate: prompt + max_tokens) and
//   settle() replaces the estimate by the real usage, keeping the admission time.
// - An in-flight reservation keeps its estimate counted against tpm until it is settled
//   or released, even after its log entry left the window (a stream running longer than
//   60 s holds what it reserved). When such a late request settles, its real usage is
//   charged at its admission time, i.e. already outside the window: nothing more.
// - tpm admits while the tokens in the window plus those reserved in flight are below
//   the limit, whatever this request's estimate (SPEC "Admission against a budget or
//   tpm"): the first request of an idle key always passes, and concurrent requests
//   overshoot by at most one request's (upper-bound) estimate. An admitted request then
//   blocks the key's tpm until enough of the window leaves (or it settles lower).
// - A limit of 0 refuses every request (retry_after 60 s).
// - release() is for requests that never reached the upstream (refused by a later
//   policy, no upstream connection): it gives back the request's tokens AND its rpm slot.
//   Why: SPEC "requests refused by a policy cost nothing", and rpm/tpm exist to bound the
//   load sent upstream and the provider's quota, neither of which such a request used.
//   Counting it would turn a budget 429 or a connect failure into false rate-limit 429s
//   (LESSONS: leaked reservations → false 429s, litellm#27639). A request that was sent
//   upstream, even if it failed, must be settle()d (with its real or estimated usage).
//
// Memory stays bounded: a key whose window is empty and which has nothing in flight is
// removed, on its next call and by a lazy sweep of its shard at most once per 60 s of
// `now` (amortised over the admissions that created the keys).
//
// Thread-safety: every public member function may be called concurrently from any
// thread. Keys are spread over 64 shards with one mutex each; no global lock is taken on
// the request path. A `reservation` object itself is plain data owned by one request:
// do not settle/release the same object from two threads at once (settling two copies of
// one reservation is safe: the second is a no-op).

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tollgate::policies {

class limiter {
  public:
    using clock = std::chrono::steady_clock;
    using time_point = clock::time_point;

    // Length of the sliding window.
    static constexpr std::chrono::seconds window{60};

    // A key's limits; nullopt = not limited. Mirrors config::limits_config.
    struct limits {
        std::optional<std::uint64_t> rpm;          // requests admitted per window
        std::optional<std::uint64_t> tpm;          // tokens per window (reserved + settled)
        std::optional<std::uint64_t> concurrency;  // requests in flight
    };

    // What an admitted request holds; give it back with settle() or release().
    // Invalid (id 0) when nothing is held: after settle/release, or when the key has no
    // limit at all (nothing is tracked then).
    struct reservation {
        std::string key;
        std::uint64_t id = 0;
        std::uint64_t tokens = 0;  // the estimate reserved at admission
        bool valid() const noexcept { return id != 0; }
    };

    struct decision {
        bool admitted = false;
        // Why it was refused. When several limits refuse, the one that frees up last
        // (longest retry_after); ties in the order rpm, tpm, concurrency.
        enum class reason { none, rpm, tpm, concurrency };
        reason why = reason::none;
        // Refused only: when capacity returns, rounded up to whole seconds, at least 1 s
        // (for the `retry-after` header). For concurrency it is unknowable (an in-flight
        // request ends whenever it ends): 1 s.
        std::chrono::milliseconds retry_after{0};
        // For the x-ratelimit-* headers; nullopt when the key has no such limit. Remaining
        // counts are after this request when admitted. reset_* is the time until the
        // window holds no requests (tokens) any more, i.e. until the limit is back to its
        // initial state (OpenAI's definition); 0 when already there.
        std::optional<std::uint64_t> limit_requests, remaining_requests;
        std::optional<std::uint64_t> limit_tokens, remaining_tokens;
        std::chrono::milliseconds reset_requests{0}, reset_tokens{0};
        reservation held;  // valid when admitted and the key has some limit
    };

    // What a key currently counts against its limits (for metrics and tests).
    struct window_usage {
        std::uint64_t requests = 0;   // admissions in the window (released ones excluded)
        std::uint64_t tokens = 0;     // tokens in the window + in-flight reservations past it
        std::uint64_t in_flight = 0;  // admitted, neither settled nor released
    };

    limiter() = default;
    limiter(const limiter&) = delete;
    limiter& operator=(const limiter&) = delete;

    // Atomically checks the key's limits counting this request and, if they all hold,
    // reserves one request, `estimated_tokens` and one in-flight slot. Admitted iff:
    // requests in window + 1 <= rpm; tokens in window + in-flight reservations past the
    // window < tpm (see the header comment); in flight + 1 <= concurrency. A refusal reserves
    // nothing. `limits` may differ between calls (a reload): the new values apply to the existing
    // window. Thread-safe.
    [[nodiscard]] decision admit(const std::string& key, const limits& l,
                                 std::uint64_t estimated_tokens, time_point now);

    // The request finished after reaching the upstream: its reserved tokens are replaced
    // by `actual_tokens` at its admission time, and it stops counting as in flight.
    // Invalidates `r`; a no-op on an invalid/already settled or released reservation and
    // safe after the key's entry left the window. `now` only drives expiry. Thread-safe.
    void settle(reservation& r, std::uint64_t actual_tokens, time_point now);

    // The request never reached the upstream: gives back its tokens, its rpm slot and
    // its in-flight slot. Same idempotence and safety as settle(). Thread-safe.
    void release(reservation& r, time_point now);

    // The key's current counts. Thread-safe; does not modify anything.
    [[nodiscard]] window_usage usage(const std::string& key, time_point now) const;

    // Expires every key's window and drops keys with nothing left. admit() already does
    // this lazily (per shard, at most once per 60 s of `now`); a caller may also run it
    // from a timer. O(number of keys). Thread-safe (locks one shard at a time).
    void sweep(time_point now);

    // Number of keys currently held in memory (for metrics and tests). Thread-safe;
    // a snapshot, each shard counted under its own lock.
    [[nodiscard]] std::size_t tracked_keys() const;

    // A duration in OpenAI's x-ratelimit-reset-* format (Go's duration format at
    // millisecond precision): "0s", "250ms", "1s", "1.5s", "6m0s", "1h2m3.456s".
    [[nodiscard]] static std::string format_reset(std::chrono::milliseconds d);
    // The same text written at `out` (at most reset_text_max bytes); returns its end.
    static constexpr std::size_t reset_text_max = 72;
    static char* write_reset(std::chrono::milliseconds d, char* out) noexcept;

  private:
    enum class entry_state : std::uint8_t { in_flight, settled, released };

    struct entry {
        time_point at;  // admission time; never earlier than the previous entry's
        std::uint64_t id;
        std::uint64_t tokens;  // estimate while in flight, real usage once settled, 0 if released
        entry_state state;
    };

    struct key_state {
        std::deque<entry> log;        // ordered by `at` and by `id`
        std::uint64_t requests = 0;   // entries in `log` not released
        std::uint64_t tokens = 0;     // sum of `log[i].tokens`
        std::uint64_t in_flight = 0;  // in-flight entries in `log` + `unlogged`
        // In-flight reservations not in the log: admitted more than 60 s ago, or while the
        // key had neither rpm nor tpm. (id, reserved tokens), sorted by id. Small: only
        // requests running longer than the window.
        std::vector<std::pair<std::uint64_t, std::uint64_t>> unlogged;
        std::uint64_t unlogged_tokens = 0;
        time_point latest{};  // newest admission time, keeps `log` ordered under racing `now`s

        bool empty() const noexcept { return log.empty() && in_flight == 0; }
    };

    // 64 bytes apart so that two shards' mutexes never share a cache line.
    struct alignas(64) shard {
        mutable std::mutex mu;
        std::unordered_map<std::string, key_state> keys;
        std::uint64_t next_id = 1;  // reservation ids, increasing, unique in the shard
        time_point last_sweep{};
    };

    static constexpr std::size_t shard_count = 64;

    shard& shard_for(const std::string& key) noexcept;
    const shard& shard_for(const std::string& key) const noexcept;
    void finish(reservation& r, std::uint64_t actual_tokens, time_point now, bool release);
    static void sweep_locked(shard& s, time_point now);
    static void expire(key_state& k, time_point now);
    static void fill_headers(decision& d, const key_state& k, const limits& l, time_point now);
    static std::chrono::nanoseconds wait_for_requests(const key_state& k, std::uint64_t count,
                                                      time_point now);
    static std::chrono::nanoseconds wait_for_tokens(const key_state& k, std::uint64_t amount,
                                                    time_point now);

    std::array<shard, shard_count> shards_;
};

// RAII owner of a limiter reservation: releases it on destruction unless it was settled
// or released first (a request that dies on an error path never leaks its slot). The
// destructor's release uses the admission time as `now` (it only drives expiry).
// Move-only; one instance belongs to one request (not itself thread-safe); the limiter it
// points to must outlive it.
class held_reservation {
  public:
    held_reservation() = default;
    held_reservation(limiter& l, limiter::reservation r, limiter::time_point admitted_at) noexcept
        : limiter_(&l), reservation_(std::move(r)), admitted_at_(admitted_at) {}
    held_reservation(held_reservation&& other) noexcept;
    held_reservation& operator=(held_reservation&& other) noexcept;
    held_reservation(const held_reservation&) = delete;
    held_reservation& operator=(const held_reservation&) = delete;
    ~held_reservation();

    void settle(std::uint64_t actual_tokens, limiter::time_point now);
    void release(limiter::time_point now);
    bool active() const noexcept { return limiter_ != nullptr && reservation_.valid(); }
    const limiter::reservation& get() const noexcept { return reservation_; }

  private:
    limiter* limiter_ = nullptr;
    limiter::reservation reservation_;
    limiter::time_point admitted_at_{};
};

}  // namespace tollgate::policies
