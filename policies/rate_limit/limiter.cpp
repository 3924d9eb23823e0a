#include "policies/rate_limit/limiter.hpp"

#include <charconv>
#include <cstring>

#include <algorithm>
#include <functional>
#include <limits>

namespace tollgate::policies {

namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
    return a > std::numeric_limits<std::uint64_t>::max() - b
               ? std::numeric_limits<std::uint64_t>::max()
               : a + b;
}

// Rounded up: a header that says "0ms" while capacity is still a few µs away would make
// a well-behaved client retry too early.
milliseconds ceil_ms(nanoseconds d) noexcept {
    return d <= nanoseconds::zero() ? milliseconds::zero() : std::chrono::ceil<milliseconds>(d);
}

// retry-after is in whole seconds; never 0, or clients retry in a tight loop.
milliseconds retry_after_from(nanoseconds d) noexcept {
    const auto s = std::max(std::chrono::ceil<seconds>(d), seconds{1});
    return std::chrono::duration_cast<milliseconds>(s);
}

}  // namespace

limiter::shard& limiter::shard_for(const std::string& key) noexcept {
    // Fibonacci hashing on top of std::hash: the top bits pick the shard, so the shard and
    // the shard's own bucket index (hash mod a prime) do not use the same bits.
    const auto h = static_cast<std::uint64_t>(std::hash<std::string>{}(key));
    return shards_[(h * 0x9E3779B97F4A7C15ULL) >> 58];
}

const limiter::shard& limiter::shard_for(const std::string& key) const noexcept {
    return const_cast<limiter*>(this)->shard_for(key);
}

namespace {

// std::lower_bound by id, searching back from the end by doubling steps, then binary within
// the last step. A request that settles was admitted a moment ago, so its entry lies among
// the last few of a log that holds a minute of admissions (a million at 20,000 a second):
// a few probes at the log's tail, which is in cache, instead of twenty across it.
template <class It>
It lower_bound_from_back(It first, It last, std::uint64_t id) {
    const auto below = [](const auto& x, std::uint64_t v) { return x.id < v; };
    It hi = last;  // every entry from hi on has an id of at least `id`
    for (std::ptrdiff_t step = 1;; step *= 2) {
        if (hi - first <= step) return std::lower_bound(first, hi, id, below);
        const It probe = hi - step;
        if (probe->id < id) return std::lower_bound(probe + 1, hi, id, below);
        hi = probe;
    }
}

}  // namespace

void limiter::expire(key_state& k, time_point now) {
    const time_point cutoff = now - window;
    while (!k.log.empty() && k.log.front().at <= cutoff) {
        const entry& e = k.log.front();
        if (e.state != entry_state::released) --k.requests;
        k.tokens -= e.tokens;
        if (e.state == entry_state::in_flight) {
            // Still running: its reservation keeps counting (see the header comment).
            const auto pos =
                std::lower_bound(k.unlogged.begin(), k.unlogged.end(), e.id,
                                 [](const auto& p, std::uint64_t id) { return p.first < id; });
            k.unlogged.insert(pos, {e.id, e.tokens});
            k.unlogged_tokens += e.tokens;
        }
        k.log.pop_front();
    }
}

void limiter::sweep_locked(shard& s, time_point now) {
    s.last_sweep = now;
    for (auto it = s.keys.begin(); it != s.keys.end();) {
        expire(it->second, now);
        it = it->second.empty() ? s.keys.erase(it) : std::next(it);
    }
}

// Time until `count` more requests have left the window (count >= 1): the expiry of the
// count-th oldest entry that still counts as a request.
nanoseconds limiter::wait_for_requests(const key_state& k, std::uint64_t count, time_point now) {
    for (const entry& e : k.log) {
        if (e.state == entry_state::released) continue;
        if (--count == 0) return e.at + window - now;
    }
    return window;  // unreachable while `requests` matches the log
}

// Time until `amount` tokens have left the window. If the log alone cannot free that
// much (in-flight reservations past the window must end first, at a time nobody knows),
// the time until the whole log has left: the earliest moment it could be enough.
nanoseconds limiter::wait_for_tokens(const key_state& k, std::uint64_t amount, time_point now) {
    if (k.log.empty()) return nanoseconds::zero();
    if (amount > k.tokens) return k.log.back().at + window - now;
    std::uint64_t freed = 0;
    for (const entry& e : k.log) {
        freed += e.tokens;
        if (freed >= amount) return e.at + window - now;
    }
    return k.log.back().at + window - now;
}

void limiter::fill_headers(decision& d, const key_state& k, const limits& l, time_point now) {
    if (l.rpm) {
        d.limit_requests = *l.rpm;
        d.remaining_requests = *l.rpm > k.requests ? *l.rpm - k.requests : 0;
        // Newest entry still counting as a request: when it leaves, the limit is whole.
        for (auto it = k.log.rbegin(); it != k.log.rend(); ++it)
            if (it->state != entry_state::released) {
                d.reset_requests = ceil_ms(it->at + window - now);
                break;
            }
    }
    if (l.tpm) {
        const std::uint64_t used = saturating_add(k.tokens, k.unlogged_tokens);
        d.limit_tokens = *l.tpm;
        d.remaining_tokens = *l.tpm > used ? *l.tpm - used : 0;
        for (auto it = k.log.rbegin(); it != k.log.rend(); ++it)
            if (it->tokens > 0) {
                d.reset_tokens = ceil_ms(it->at + window - now);
                break;
            }
    }
}

limiter::decision limiter::admit(const std::string& key, const limits& l,
                                 std::uint64_t estimated_tokens, time_point now) {
    decision d;
    const bool windowed = l.rpm.has_value() || l.tpm.has_value();
    if (!windowed && !l.concurrency) {
        // Nothing to enforce or report: track nothing, hold nothing.
        d.admitted = true;
        return d;
    }

    shard& s = shard_for(key);
    std::lock_guard lock(s.mu);
    if (now - s.last_sweep >= window) sweep_locked(s, now);
    auto it = s.keys.try_emplace(key).first;
    key_state& k = it->second;
    expire(k, now);

    // Each failing limit says how long until it would pass; -1 = it passes.
    constexpr nanoseconds passes{-1};
    nanoseconds wait_rpm = passes, wait_tpm = passes, wait_concurrency = passes;
    if (l.rpm) {
        if (*l.rpm == 0)
            wait_rpm = window;
        else if (k.requests >= *l.rpm)
            wait_rpm = wait_for_requests(k, k.requests + 1 - *l.rpm, now);
    }
    if (l.tpm) {
        const std::uint64_t used = saturating_add(k.tokens, k.unlogged_tokens);
        if (*l.tpm == 0)
            wait_tpm = window;
        else if (used >= *l.tpm)
            // Admitted while below the limit (SPEC "Admission against a budget or tpm"):
            // it waits until enough leaves the window to be below it again.
            wait_tpm = wait_for_tokens(k, used - *l.tpm + 1, now);
    }
    if (l.concurrency) {
        if (*l.concurrency == 0)
            wait_concurrency = window;
        else if (k.in_flight >= *l.concurrency)
            wait_concurrency = nanoseconds::zero();  // unknowable: becomes the 1 s minimum
    }

    if (wait_rpm != passes || wait_tpm != passes || wait_concurrency != passes) {
        nanoseconds longest = passes;
        for (const auto& [w, r] : {std::pair{wait_rpm, decision::reason::rpm},
                                   std::pair{wait_tpm, decision::reason::tpm},
                                   std::pair{wait_concurrency, decision::reason::concurrency}})
            if (w > longest) {
                longest = w;
                d.why = r;
            }
        d.retry_after = retry_after_from(longest);
        fill_headers(d, k, l, now);
        if (k.empty()) s.keys.erase(it);
        return d;
    }

    const std::uint64_t id = s.next_id++;
    if (windowed) {
        // Threads read the clock before taking the lock, so `now` can arrive slightly out
        // of order; clamping keeps the log sorted (expiry and the scans rely on it) at the
        // cost of an entry living a few µs longer.
        k.latest = std::max(k.latest, now);
        k.log.push_back(entry{k.latest, id, estimated_tokens, entry_state::in_flight});
        ++k.requests;
        k.tokens += estimated_tokens;
    } else {
        k.unlogged.emplace_back(id, estimated_tokens);  // largest id so far: stays sorted
        k.unlogged_tokens += estimated_tokens;
    }
    ++k.in_flight;

    d.admitted = true;
    fill_headers(d, k, l, now);
    d.held = reservation{key, id, estimated_tokens};
    return d;
}

void limiter::finish(reservation& r, std::uint64_t actual_tokens, time_point now, bool release) {
    if (!r.valid()) return;
    shard& s = shard_for(r.key);
    {
        std::lock_guard lock(s.mu);
        const auto it = s.keys.find(r.key);
        if (it != s.keys.end()) {
            key_state& k = it->second;
            // First, so that an entry which has just left the window is found in
            // `unlogged` and its settled usage is not charged to a window it left.
            expire(k, now);
            const auto e = lower_bound_from_back(k.log.begin(), k.log.end(), r.id);
            if (e != k.log.end() && e->id == r.id) {
                if (e->state == entry_state::in_flight) {
                    k.tokens -= e->tokens;
                    if (release) {
                        --k.requests;
                        e->tokens = 0;
                        e->state = entry_state::released;
                    } else {
                        e->tokens = actual_tokens;
                        k.tokens += actual_tokens;
                        e->state = entry_state::settled;
                    }
                    --k.in_flight;
                }
            } else {
                const auto u =
                    std::lower_bound(k.unlogged.begin(), k.unlogged.end(), r.id,
                                     [](const auto& p, std::uint64_t id) { return p.first < id; });
                if (u != k.unlogged.end() && u->first == r.id) {
                    k.unlogged_tokens -= u->second;
                    k.unlogged.erase(u);
                    --k.in_flight;
                }
            }
            if (k.empty()) s.keys.erase(it);
        }
    }
    r.id = 0;
}

void limiter::settle(reservation& r, std::uint64_t actual_tokens, time_point now) {
    finish(r, actual_tokens, now, false);
}

void limiter::release(reservation& r, time_point now) {
    finish(r, 0, now, true);
}

limiter::window_usage limiter::usage(const std::string& key, time_point now) const {
    const shard& s = shard_for(key);
    std::lock_guard lock(s.mu);
    const auto it = s.keys.find(key);
    if (it == s.keys.end()) return {};
    const key_state& k = it->second;
    window_usage u{k.requests, saturating_add(k.tokens, k.unlogged_tokens), k.in_flight};
    // What expire() would do, without doing it: expired entries stop counting, except
    // the reservations of those still in flight.
    const time_point cutoff = now - window;
    for (const entry& e : k.log) {
        if (e.at > cutoff) break;
        if (e.state != entry_state::released) --u.requests;
        if (e.state != entry_state::in_flight) u.tokens -= e.tokens;
    }
    return u;
}

void limiter::sweep(time_point now) {
    for (shard& s : shards_) {
        std::lock_guard lock(s.mu);
        sweep_locked(s, now);
    }
}

std::size_t limiter::tracked_keys() const {
    std::size_t n = 0;
    for (const shard& s : shards_) {
        std::lock_guard lock(s.mu);
        n += s.keys.size();
    }
    return n;
}

std::string limiter::format_reset(milliseconds d) {
    char buf[reset_text_max];
    return std::string(buf, write_reset(d, buf));
}

char* limiter::write_reset(milliseconds d, char* p) noexcept {
    if (d <= milliseconds::zero()) {
        *p++ = '0';
        *p++ = 's';
        return p;
    }
    const auto total = static_cast<std::uint64_t>(d.count());
    // At most three numbers of 20 digits, "h", "m", ".ddd" and "s": 69 bytes.
    const auto num = [&](std::uint64_t v) { p = std::to_chars(p, p + 20, v).ptr; };
    if (total < 1000) {
        num(total);
        *p++ = 'm';
        *p++ = 's';
        return p;
    }
    const std::uint64_t h = total / 3'600'000;
    const std::uint64_t m = total / 60'000 % 60;
    const std::uint64_t s = total / 1000 % 60;
    const std::uint64_t ms = total % 1000;
    // Go prints the larger units only when present, and then every smaller one: "6m0s".
    if (h > 0) {
        num(h);
        *p++ = 'h';
    }
    if (h > 0 || m > 0) {
        num(m);
        *p++ = 'm';
    }
    num(s);
    if (ms > 0) {
        const char digits[3] = {static_cast<char>('0' + ms / 100),
                                static_cast<char>('0' + ms / 10 % 10),
                                static_cast<char>('0' + ms % 10)};
        int len = 3;
        while (digits[len - 1] == '0') --len;  // ms > 0: one digit at least stays
        *p++ = '.';
        for (int i = 0; i < len; ++i) *p++ = digits[i];
    }
    *p++ = 's';
    return p;
}

held_reservation::held_reservation(held_reservation&& other) noexcept
    : limiter_(std::exchange(other.limiter_, nullptr)),
      reservation_(std::move(other.reservation_)),
      admitted_at_(other.admitted_at_) {
    other.reservation_.id = 0;
}

held_reservation& held_reservation::operator=(held_reservation&& other) noexcept {
    if (this != &other) {
        if (active()) limiter_->release(reservation_, admitted_at_);
        limiter_ = std::exchange(other.limiter_, nullptr);
        reservation_ = std::move(other.reservation_);
        other.reservation_.id = 0;
        admitted_at_ = other.admitted_at_;
    }
    return *this;
}

held_reservation::~held_reservation() {
    if (active()) limiter_->release(reservation_, admitted_at_);
}

void held_reservation::settle(std::uint64_t actual_tokens, limiter::time_point now) {
    if (active()) limiter_->settle(reservation_, actual_tokens, now);
}

void held_reservation::release(limiter::time_point now) {
    if (active()) limiter_->release(reservation_, now);
}

}  // namespace tollgate::policies
