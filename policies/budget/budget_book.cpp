#include "policies/budget/budget_book.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

namespace tollgate::policies {

namespace {

constexpr std::int64_t ms_per_day = 86'400'000;

// Floor division: days before the epoch (negative ms) round towards -infinity.
constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
    const std::int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian calendar, day 0
// = 1970-01-01): pure arithmetic, valid for any date, no time zone involved.
constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
    y -= m <= 2 ? 1 : 0;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);                 // [0, 399]
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            // [0, 146096]
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct civil_date {
    std::int64_t year;
    unsigned month;  // 1..12
    unsigned day;    // 1..31
};

constexpr civil_date civil_from_days(std::int64_t z) noexcept {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);                    // [0, 146096]
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
    const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);  // [0, 365]
    const unsigned mp = (5 * doy + 2) / 153;                       // [0, 11], March = 0
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;               // [1, 31]
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;                  // [1, 12]
    return {y + (m <= 2 ? 1 : 0), m, d};
}

static_assert(days_from_civil(1970, 1, 1) == 0);
static_assert(days_from_civil(2000, 3, 1) == 11017);
static_assert(civil_from_days(11016).month == 2 && civil_from_days(11016).day == 29);

// USD as integer nano-dollars (int64: up to 9.2e9 USD per key and period). Negative or
// NaN amounts are treated as 0; one amount is clamped to 1e9 USD so that the few sums
// made of them (committed + pending + reserved + estimate) cannot overflow.
std::int64_t to_nano(double usd) noexcept {
    if (!(usd > 0)) return 0;
    if (usd >= 1e9) return 1'000'000'000'000'000'000LL;
    return std::llround(usd * 1e9);
}

double from_nano(std::int64_t nano) noexcept {
    return static_cast<double>(nano) / 1e9;
}

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
    return a > std::numeric_limits<std::uint64_t>::max() - b
               ? std::numeric_limits<std::uint64_t>::max()
               : a + b;
}

std::uint64_t positive(std::int64_t v) noexcept {
    return v > 0 ? static_cast<std::uint64_t>(v) : 0;
}

}  // namespace

std::int64_t budget_book::period_start_ms(period p, std::int64_t now_ms) noexcept {
    switch (p) {
        case period::day:
            return floor_div(now_ms, ms_per_day) * ms_per_day;
        case period::month: {
            const civil_date c = civil_from_days(floor_div(now_ms, ms_per_day));
            return days_from_civil(c.year, c.month, 1) * ms_per_day;
        }
        case period::total:
            break;
    }
    return 0;
}

std::int64_t budget_book::period_end_ms(period p, std::int64_t now_ms) noexcept {
    switch (p) {
        case period::day:
            return period_start_ms(p, now_ms) + ms_per_day;
        case period::month: {
            const civil_date c = civil_from_days(floor_div(now_ms, ms_per_day));
            return c.month == 12 ? days_from_civil(c.year + 1, 1, 1) * ms_per_day
                                 : days_from_civil(c.year, c.month + 1, 1) * ms_per_day;
        }
        case period::total:
            break;
    }
    return std::numeric_limits<std::int64_t>::max();
}

budget_book::shard& budget_book::shard_for(const std::string& key) noexcept {
    // Top bits of a Fibonacci-mixed hash pick the shard (see limiter::shard_for).
    const auto h = static_cast<std::uint64_t>(std::hash<std::string>{}(key));
    return shards_[(h * 0x9E3779B97F4A7C15ULL) >> 58];
}

const budget_book::shard& budget_book::shard_for(const std::string& key) const noexcept {
    return const_cast<budget_book*>(this)->shard_for(key);
}

void budget_book::roll_to(key_state& k, period p, std::int64_t now_ms) noexcept {
    k.per = p;
    const std::int64_t start = period_start_ms(p, now_ms);
    if (start > k.start_ms) {
        // A new period: what was committed belonged to the old one. Pending and reserved
        // amounts stay: their requests are still being paid for (see the header).
        k.start_ms = start;
        k.committed_tokens = 0;
        k.committed_nano = 0;
    }
}

void budget_book::seed(const std::string& key, std::uint64_t tokens, double usd, period per,
                       std::int64_t period_start_ms) {
    shard& s = shard_for(key);
    std::lock_guard lock(s.mu);
    const auto [it, inserted] = s.keys.try_emplace(key);
    key_state& k = it->second;
    // Stale: an older period of the same kind (read from the ledger before a rollover).
    if (!inserted && k.per == per && period_start_ms < k.start_ms) return;
    k.per = per;
    k.start_ms = period_start_ms;
    k.committed_tokens = tokens;
    k.committed_nano = to_nano(usd);
}

budget_book::decision budget_book::reserve(const std::string& key, const budget& b,
                                           std::uint64_t est_tokens, double est_usd,
                                           std::int64_t now_ms) {
    decision d;
    d.period_end_ms = period_end_ms(b.per, now_ms);
    if (!b.tokens && !b.usd) {
        // Nothing capped: nothing to track or hold.
        d.admitted = true;
        return d;
    }
    const std::int64_t est_nano = to_nano(est_usd);

    shard& s = shard_for(key);
    std::lock_guard lock(s.mu);
    const auto [it, inserted] = s.keys.try_emplace(key);
    key_state& k = it->second;
    if (inserted) k.start_ms = period_start_ms(b.per, now_ms);
    roll_to(k, b.per, now_ms);

    const std::uint64_t used_tokens = saturating_add(
        saturating_add(k.committed_tokens, positive(k.pending_tokens)), k.reserved_tokens);
    const std::uint64_t used_nano =
        saturating_add(saturating_add(positive(k.committed_nano), positive(k.pending_nano)),
                       positive(k.reserved_nano));
    // Admitted while below the cap, whatever the estimate (SPEC "Admission against a
    // budget or tpm"): nothing spent always admits; the overshoot is one request.
    const auto exceeds = [](std::uint64_t used, std::uint64_t, std::uint64_t cap) {
        return used >= cap;
    };
    const std::uint64_t cap_nano = b.usd ? positive(to_nano(*b.usd)) : 0;
    const auto est_nano_u = positive(est_nano);

    if (b.tokens && exceeds(used_tokens, est_tokens, *b.tokens))
        d.why = decision::reason::tokens;
    else if (b.usd && exceeds(used_nano, est_nano_u, cap_nano))
        d.why = decision::reason::usd;

    // Remaining after this request when admitted, before it when refused.
    const std::uint64_t add_tokens = d.why == decision::reason::none ? est_tokens : 0;
    const std::uint64_t add_nano = d.why == decision::reason::none ? est_nano_u : 0;
    if (b.tokens) {
        const std::uint64_t after = saturating_add(used_tokens, add_tokens);
        d.remaining_tokens = *b.tokens > after ? *b.tokens - after : 0;
    }
    if (b.usd) {
        const std::uint64_t after = saturating_add(used_nano, add_nano);
        d.remaining_usd =
            from_nano(static_cast<std::int64_t>(cap_nano > after ? cap_nano - after : 0));
    }
    if (d.why != decision::reason::none) return d;

    const std::uint64_t id = s.next_id++;
    k.flights.push_back(flight{id, est_tokens, est_nano});  // largest id so far: stays sorted
    k.reserved_tokens += est_tokens;
    k.reserved_nano += est_nano;
    d.admitted = true;
    d.held = reservation{key, id, est_tokens, est_usd};
    return d;
}

void budget_book::finish(reservation& r, std::uint64_t actual_tokens, double actual_usd,
                         bool release) {
    if (!r.valid()) return;
    shard& s = shard_for(r.key);
    {
        std::lock_guard lock(s.mu);
        const auto it = s.keys.find(r.key);
        if (it != s.keys.end()) {
            key_state& k = it->second;
            const auto f =
                std::lower_bound(k.flights.begin(), k.flights.end(), r.id,
                                 [](const flight& x, std::uint64_t id) { return x.id < id; });
            if (f != k.flights.end() && f->id == r.id) {
                k.reserved_tokens -= f->tokens;
                k.reserved_nano -= f->nano_usd;
                if (!release) {
                    k.pending_tokens += static_cast<std::int64_t>(actual_tokens);
                    k.pending_nano += to_nano(actual_usd);
                }
                k.flights.erase(f);
                if (k.flights.empty()) {
                    // No settle can still match a commit that overtook it.
                    k.pending_tokens = std::max<std::int64_t>(k.pending_tokens, 0);
                    k.pending_nano = std::max<std::int64_t>(k.pending_nano, 0);
                }
            }
        }
    }
    r.id = 0;
}

void budget_book::settle(reservation& r, std::uint64_t actual_tokens, double actual_usd) {
    finish(r, actual_tokens, actual_usd, false);
}

void budget_book::release(reservation& r) {
    finish(r, 0, 0, true);
}

void budget_book::committed(const std::string& key, std::uint64_t tokens, double usd,
                            std::int64_t record_ts_ms) {
    const std::int64_t nano = to_nano(usd);
    shard& s = shard_for(key);
    std::lock_guard lock(s.mu);
    const auto it = s.keys.find(key);
    if (it == s.keys.end()) return;
    key_state& k = it->second;
    if (k.per) roll_to(k, *k.per, record_ts_ms);
    if (record_ts_ms >= k.start_ms) {
        k.committed_tokens += tokens;
        k.committed_nano += nano;
    }
    k.pending_tokens -= static_cast<std::int64_t>(tokens);
    k.pending_nano -= nano;
    if (k.flights.empty()) {
        k.pending_tokens = std::max<std::int64_t>(k.pending_tokens, 0);
        k.pending_nano = std::max<std::int64_t>(k.pending_nano, 0);
    }
}

budget_book::spend budget_book::current(const std::string& key, std::int64_t now_ms) const {
    const shard& s = shard_for(key);
    std::lock_guard lock(s.mu);
    const auto it = s.keys.find(key);
    if (it == s.keys.end()) return {};
    const key_state& k = it->second;
    const bool rolled = k.per && period_start_ms(*k.per, now_ms) > k.start_ms;
    const std::uint64_t committed_tokens = rolled ? 0 : k.committed_tokens;
    const std::int64_t committed_nano = rolled ? 0 : k.committed_nano;
    return spend{
        saturating_add(saturating_add(committed_tokens, positive(k.pending_tokens)),
                       k.reserved_tokens),
        from_nano(committed_nano + std::max<std::int64_t>(k.pending_nano, 0) + k.reserved_nano)};
}

void budget_book::forget(const std::string& key) {
    shard& s = shard_for(key);
    std::lock_guard lock(s.mu);
    s.keys.erase(key);
}

}  // namespace tollgate::policies
