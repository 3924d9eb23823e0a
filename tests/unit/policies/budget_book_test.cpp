#define BOOST_TEST_MODULE budget_book
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cstdint>
#include <latch>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "policies/budget/budget_book.hpp"

namespace bdata = boost::unit_test::data;
namespace tt = boost::test_tools;
using tollgate::policies::budget_book;
using period = budget_book::period;
using reason = budget_book::decision::reason;

namespace {

constexpr std::int64_t hour = 3'600'000;
constexpr std::int64_t day = 24 * hour;

// Unix ms of a few UTC instants (checked against Python's datetime).
constexpr std::int64_t jun_15_2025_0830 = 1749976200000;  // 2025-06-15T08:30:00Z
constexpr std::int64_t jun_15_2025 = 1749945600000;
constexpr std::int64_t jun_16_2025 = 1750032000000;
constexpr std::int64_t jun_01_2025 = 1748736000000;
constexpr std::int64_t jul_01_2025 = 1751328000000;
constexpr std::int64_t dec_31_2024_last_ms = 1735689599999;  // 2024-12-31T23:59:59.999Z
constexpr std::int64_t dec_31_2024 = 1735603200000;
constexpr std::int64_t dec_01_2024 = 1733011200000;
constexpr std::int64_t jan_01_2025 = 1735689600000;
constexpr std::int64_t feb_29_2024_noon = 1709208000000;
constexpr std::int64_t feb_29_2024 = 1709164800000;
constexpr std::int64_t feb_01_2024 = 1706745600000;
constexpr std::int64_t mar_01_2024 = 1709251200000;

budget_book::budget tokens_per(std::uint64_t tokens, period p) {
    return {tokens, std::nullopt, p};
}
budget_book::budget usd_per(double usd, period p) {
    return {std::nullopt, usd, p};
}

template <typename F>
void race(int threads, F body) {
    std::latch start(threads);
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int i = 0; i < threads; ++i)
        pool.emplace_back([&, i] {
            start.arrive_and_wait();
            body(i);
        });
    for (auto& t : pool) t.join();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

struct period_case {
    const char* name;
    period per;
    std::int64_t now;
    std::int64_t start;
    std::int64_t end;
};
std::ostream& operator<<(std::ostream& os, const period_case& c) {
    return os << c.name;
}
const period_case period_cases[] = {
    {"day mid-day", period::day, jun_15_2025_0830, jun_15_2025, jun_16_2025},
    {"day at midnight", period::day, jun_15_2025, jun_15_2025, jun_16_2025},
    {"day last ms", period::day, jun_16_2025 - 1, jun_15_2025, jun_16_2025},
    {"day new year's eve", period::day, dec_31_2024_last_ms, dec_31_2024, jan_01_2025},
    {"day leap day", period::day, feb_29_2024_noon, feb_29_2024, mar_01_2024},
    {"day before the epoch", period::day, -3'600'000, -day, 0},
    {"month mid-month", period::month, jun_15_2025_0830, jun_01_2025, jul_01_2025},
    {"month first ms", period::month, jun_01_2025, jun_01_2025, jul_01_2025},
    {"month last ms of June", period::month, jul_01_2025 - 1, jun_01_2025, jul_01_2025},
    {"month December", period::month, dec_31_2024_last_ms, dec_01_2024, jan_01_2025},
    {"month January", period::month, jan_01_2025, jan_01_2025, 1738368000000},  // → Feb 1
    {"month leap February", period::month, feb_29_2024_noon, feb_01_2024, mar_01_2024},
    {"month March after leap", period::month, mar_01_2024, mar_01_2024, 1711929600000},
    {"month non-leap February", period::month, 1677628799999, 1675209600000, 1677628800000},
    {"month 2000 is leap", period::month, 951804000000, 949363200000, 951868800000},
    {"month 2100 is not", period::month, 4107492000000, 4105123200000, 4107542400000},
    {"month epoch", period::month, 0, 0, 2678400000},
    {"month before the epoch", period::month, -3'600'000, -2678400000, 0},
    {"total", period::total, jun_15_2025_0830, 0, std::numeric_limits<std::int64_t>::max()},
};

BOOST_DATA_TEST_CASE(period_start_and_end_follow_the_utc_calendar, bdata::make(period_cases), c) {
    BOOST_TEST(budget_book::period_start_ms(c.per, c.now) == c.start);
    BOOST_TEST(budget_book::period_end_ms(c.per, c.now) == c.end);
}

BOOST_AUTO_TEST_CASE(hundred_racing_reservations_never_exceed_the_token_budget) {
    budget_book book;
    const auto b = tokens_per(10'000, period::month);
    std::atomic<int> admitted{0};
    std::atomic<bool> over{false};
    race(101, [&](int i) {
        if (i == 100) {  // an observer reading the spend while the others reserve
            for (int n = 0; n < 2000; ++n)
                if (book.current("team", jun_15_2025_0830).tokens > 10'000 + 150) over = true;
            return;
        }
        const auto d = book.reserve("team", b, 150, 0.0, jun_15_2025_0830);
        if (d.admitted) ++admitted;
    });
    // Admitted while below the budget: 66 × 150 = 9900 < 10 000 lets a 67th in (10 050),
    // the overshoot of at most one request; none after it.
    BOOST_TEST(admitted.load() == 67);
    BOOST_TEST(!over.load());
    BOOST_TEST(book.current("team", jun_15_2025_0830).tokens == 10'050u);
}

BOOST_AUTO_TEST_CASE(racing_reserve_settle_cycles_stay_within_budget) {
    budget_book book;
    const budget_book::budget b{50'000, 5.0, period::day};
    std::atomic<std::uint64_t> spent_tokens{0};
    race(16, [&](int t) {
        std::mt19937 rng(static_cast<unsigned>(t));
        for (int i = 0; i < 200; ++i) {
            const std::uint64_t est = 50 + rng() % 500;
            auto d =
                book.reserve("team", b, est, static_cast<double>(est) * 1e-4, jun_15_2025_0830);
            if (!d.admitted) continue;
            if (rng() % 4 == 0) {
                book.release(d.held);
                continue;
            }
            const std::uint64_t actual = est / 2 + rng() % (est / 2 + 1);  // <= estimate
            spent_tokens += actual;
            book.settle(d.held, actual, static_cast<double>(actual) * 1e-4);
            if (rng() % 2 == 0)
                book.committed("team", actual, static_cast<double>(actual) * 1e-4,
                               jun_15_2025_0830);
        }
    });
    const auto s = book.current("team", jun_15_2025_0830);
    BOOST_TEST(s.tokens == spent_tokens.load());
    // At most one request (estimate < 550) beyond the budget.
    BOOST_TEST(s.tokens < 50'000u + 550u);
    BOOST_TEST(s.usd < 5.0 + 550 * 1e-4);
}

BOOST_AUTO_TEST_CASE(settle_then_commit_moves_spend_from_pending_to_committed) {
    budget_book book;
    const budget_book::budget b{1000, 1.0, period::month};
    auto d = book.reserve("k", b, 400, 0.40, jun_15_2025_0830);
    BOOST_TEST_REQUIRE(d.admitted);
    BOOST_TEST(*d.remaining_tokens == 600u);
    BOOST_TEST(*d.remaining_usd == 0.60, tt::tolerance(1e-9));
    BOOST_TEST(d.period_end_ms == jul_01_2025);
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 400u);

    book.settle(d.held, 250, 0.25);  // pending: still counted
    auto s = book.current("k", jun_15_2025_0830);
    BOOST_TEST(s.tokens == 250u);
    BOOST_TEST(s.usd == 0.25, tt::tolerance(1e-9));

    book.committed("k", 250, 0.25, jun_15_2025_0830 + 1000);  // durable: moved, not added
    s = book.current("k", jun_15_2025_0830 + 2000);
    BOOST_TEST(s.tokens == 250u);
    BOOST_TEST(s.usd == 0.25, tt::tolerance(1e-9));

    const auto next = book.reserve("k", b, 700, 0.1, jun_15_2025_0830 + 3000);
    BOOST_TEST(next.admitted);
    BOOST_TEST(*next.remaining_tokens == 50u);
}

BOOST_AUTO_TEST_CASE(a_commit_that_overtakes_its_settle_is_counted_once) {
    budget_book book;
    const auto b = tokens_per(1000, period::month);
    auto d = book.reserve("k", b, 300, 0, jun_15_2025_0830);
    book.committed("k", 200, 0, jun_15_2025_0830);                   // the ledger was faster
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 500u);  // never understated
    book.settle(d.held, 200, 0);
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 200u);
}

BOOST_AUTO_TEST_CASE(a_stray_commit_creates_no_credit) {
    budget_book book;
    const auto b = tokens_per(1000, period::month);
    auto d = book.reserve("k", b, 100, 0, jun_15_2025_0830);
    book.settle(d.held, 100, 0);
    book.committed("k", 100, 0, jun_15_2025_0830);
    book.committed("k", 500, 0, jun_15_2025_0830);  // no settle will ever match it
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 600u);
    book.committed("k", 400, 0, jun_15_2025_0830);  // another; now the budget is spent
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 1000u);
    BOOST_TEST(!book.reserve("k", b, 1, 0, jun_15_2025_0830).admitted);

    // A commit for a key the book does not track (no budget) is ignored.
    book.committed("free", 500, 1.0, jun_15_2025_0830);
    BOOST_TEST(book.current("free", jun_15_2025_0830).tokens == 0u);
}

BOOST_AUTO_TEST_CASE(seeded_spend_counts_against_the_budget) {
    budget_book book;
    const budget_book::budget b{1000, 10.0, period::month};
    // Below both caps: admitted, whatever the estimate.
    book.seed("k", 900, 9.0, period::month, jun_01_2025);
    auto in = book.reserve("k", b, 200, 0.5, jun_15_2025_0830);
    BOOST_TEST_REQUIRE(in.admitted);
    BOOST_TEST(*in.remaining_tokens == 0u);
    book.release(in.held);
    // Tokens spent: refused for tokens.
    book.seed("t", 1000, 1.0, period::month, jun_01_2025);
    const auto refused = book.reserve("t", b, 200, 0.5, jun_15_2025_0830);
    BOOST_TEST(!refused.admitted);
    BOOST_TEST((refused.why == reason::tokens));
    BOOST_TEST(*refused.remaining_tokens == 0u);
    // USD spent: refused for USD.
    book.seed("u", 100, 10.0, period::month, jun_01_2025);
    const auto usd_refused = book.reserve("u", b, 100, 1.5, jun_15_2025_0830);
    BOOST_TEST(!usd_refused.admitted);
    BOOST_TEST((usd_refused.why == reason::usd));
    // Spent: even a zero estimate is refused.
    BOOST_TEST(!book.reserve("t", b, 0, 0, jun_15_2025_0830).admitted);
}

BOOST_AUTO_TEST_CASE(stale_seed_for_an_older_period_is_ignored) {
    budget_book book;
    book.seed("k", 100, 0, period::month, jun_01_2025);
    book.seed("k", 900, 0, period::month, dec_01_2024);
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 100u);
}

BOOST_AUTO_TEST_CASE(a_seed_for_another_period_kind_replaces_the_old_one) {
    // A reload that changes a budget's period (day → month → total) seeds the new period
    // from the ledger: its start is earlier than the old one's, and it must still count.
    budget_book book;
    book.seed("k", 100, 1.0, period::day, jun_15_2025);
    book.seed("k", 700, 7.0, period::month, jun_01_2025);
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 700u);
    const auto d = book.reserve("k", tokens_per(700, period::month), 10, 0, jun_15_2025_0830);
    BOOST_TEST(!d.admitted);  // the month's 700 are spent
    book.seed("k", 5000, 50.0, period::total, 0);
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 5000u);
    BOOST_TEST(
        !book.reserve("k", tokens_per(5000, period::total), 1, 0, jun_15_2025_0830).admitted);
    BOOST_TEST(book.reserve("k", tokens_per(6000, period::total), 1, 0, jun_15_2025_0830).admitted);
}

BOOST_AUTO_TEST_CASE(refused_reserve_holds_nothing) {
    budget_book book;
    const auto b = tokens_per(1000, period::day);
    auto a = book.reserve("k", b, 1000, 0, jun_15_2025_0830);
    BOOST_TEST_REQUIRE(a.admitted);
    for (int i = 0; i < 10; ++i) {
        const auto r = book.reserve("k", b, 300, 0, jun_15_2025_0830);
        BOOST_TEST(!r.admitted);
        BOOST_TEST(!r.held.valid());
    }
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 1000u);
    book.settle(a.held, 800, 0);
    BOOST_TEST(book.reserve("k", b, 200, 0, jun_15_2025_0830).admitted);
}

BOOST_AUTO_TEST_CASE(a_first_request_is_admitted_even_above_the_whole_budget) {
    // SPEC: a key with nothing spent is always admitted (issue case 7: a 50-token budget).
    budget_book book;
    const auto b = tokens_per(50, period::day);
    auto d = book.reserve("k", b, 4096 + 12, 0, jun_15_2025_0830);
    BOOST_TEST_REQUIRE(d.admitted);
    BOOST_TEST(*d.remaining_tokens == 0u);
    // The next one waits for it, and is refused once it settled above the budget.
    BOOST_TEST(!book.reserve("k", b, 10, 0, jun_15_2025_0830).admitted);
    book.settle(d.held, 60, 0);
    BOOST_TEST(!book.reserve("k", b, 10, 0, jun_15_2025_0830).admitted);
    // Settled below it: the next is admitted.
    budget_book other;
    auto e = other.reserve("k", b, 4096, 0, jun_15_2025_0830);
    other.settle(e.held, 20, 0);
    BOOST_TEST(other.reserve("k", b, 4096, 0, jun_15_2025_0830).admitted);
}

BOOST_AUTO_TEST_CASE(release_returns_the_reservation_without_spend) {
    budget_book book;
    const auto b = usd_per(1.0, period::month);
    auto a = book.reserve("k", b, 10, 1.0, jun_15_2025_0830);
    BOOST_TEST_REQUIRE(a.admitted);
    BOOST_TEST(!book.reserve("k", b, 10, 0.2, jun_15_2025_0830).admitted);
    book.release(a.held);
    BOOST_TEST(!a.held.valid());
    BOOST_TEST(book.current("k", jun_15_2025_0830).usd == 0.0);
    BOOST_TEST(book.reserve("k", b, 10, 0.2, jun_15_2025_0830).admitted);
}

BOOST_AUTO_TEST_CASE(second_settle_or_release_is_a_no_op) {
    budget_book book;
    const auto b = tokens_per(1000, period::month);
    auto a = book.reserve("k", b, 300, 0, jun_15_2025_0830);
    auto copy = a.held;
    book.settle(a.held, 100, 0);
    book.settle(a.held, 999, 0);
    book.release(a.held);
    book.settle(copy, 999, 0);  // a stale copy: the book knows it is done
    book.release(copy);
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 100u);

    auto r = book.reserve("k", b, 300, 0, jun_15_2025_0830);
    auto r_copy = r.held;
    book.release(r.held);
    book.release(r_copy);
    book.settle(r_copy, 500, 0);
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 100u);

    auto f = book.reserve("k", b, 300, 0, jun_15_2025_0830);
    book.forget("k");
    book.settle(f.held, 300, 0);  // the key was deleted meanwhile
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 0u);
}

BOOST_AUTO_TEST_CASE(usd_budget_holds_exactly_without_float_drift) {
    budget_book book;
    const auto b = usd_per(1.0, period::total);
    int admitted = 0;
    for (int i = 0; i < 20; ++i) {
        auto d = book.reserve("k", b, 0, 0.1, jun_15_2025_0830);
        if (!d.admitted) break;
        ++admitted;
        book.settle(d.held, 0, 0.1);
        book.committed("k", 0, 0.1, jun_15_2025_0830);
    }
    BOOST_TEST(admitted == 10);
    BOOST_TEST(book.current("k", jun_15_2025_0830).usd == 1.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(day_rollover_resets_committed_and_keeps_in_flight) {
    budget_book book;
    const auto b = tokens_per(1000, period::day);
    book.seed("k", 500, 0, period::day, jun_15_2025);
    auto late = book.reserve("k", b, 300, 0, jun_16_2025 - 60'000);  // 23:59, still running
    BOOST_TEST_REQUIRE(late.admitted);
    auto fill = book.reserve("k", b, 200, 0, jun_16_2025 - 30'000);
    BOOST_TEST_REQUIRE(fill.admitted);  // 800 < 1000
    BOOST_TEST(!book.reserve("k", b, 300, 0, jun_16_2025 - 1).admitted);
    book.release(fill.held);

    const auto next = book.reserve("k", b, 700, 0, jun_16_2025);
    BOOST_TEST(next.admitted);  // committed reset; the 300 in flight carry over
    BOOST_TEST(*next.remaining_tokens == 0u);
    BOOST_TEST(next.period_end_ms == jun_16_2025 + day);

    // The late request settles and its record lands with an old-period timestamp: it is
    // no longer committed anywhere (yesterday is over), only removed from pending.
    book.settle(late.held, 300, 0);
    book.committed("k", 300, 0, jun_16_2025 - 1000);
    BOOST_TEST(book.current("k", jun_16_2025 + hour).tokens == 700u);
}

BOOST_AUTO_TEST_CASE(current_reports_zero_committed_once_the_period_is_over) {
    budget_book book;
    const auto b = tokens_per(1000, period::day);
    auto d = book.reserve("k", b, 400, 0, jun_15_2025_0830);
    book.settle(d.held, 400, 0);
    book.committed("k", 400, 0, jun_15_2025_0830);
    BOOST_TEST(book.current("k", jun_16_2025 - 1).tokens == 400u);
    BOOST_TEST(book.current("k", jun_16_2025).tokens == 0u);
}

BOOST_AUTO_TEST_CASE(commit_in_a_new_period_rolls_the_key_over) {
    budget_book book;
    const auto b = tokens_per(1000, period::day);
    book.seed("k", 900, 0, period::day, jun_15_2025);
    auto d = book.reserve("k", b, 50, 0, jun_15_2025_0830);
    book.settle(d.held, 50, 0);
    book.committed("k", 50, 0, jun_16_2025 + 5);  // finished after midnight
    BOOST_TEST(book.current("k", jun_16_2025 + 10).tokens == 50u);
    BOOST_TEST(book.reserve("k", b, 950, 0, jun_16_2025 + 10).admitted);
}

struct rollover_case {
    const char* name;
    std::int64_t seeded_period;
    std::int64_t later;
    bool rolled;
};
std::ostream& operator<<(std::ostream& os, const rollover_case& c) {
    return os << c.name;
}
const rollover_case month_rollovers[] = {
    {"December to January", dec_01_2024, jan_01_2025, true},
    {"last ms of December", dec_01_2024, dec_31_2024_last_ms, false},
    {"leap day is still February", feb_01_2024, feb_29_2024_noon, false},
    {"March after a leap February", feb_01_2024, mar_01_2024, true},
    {"mid-June", jun_01_2025, jun_15_2025_0830, false},
    {"July", jun_01_2025, jul_01_2025, true},
};

BOOST_DATA_TEST_CASE(month_budget_rolls_over_on_the_first_utc, bdata::make(month_rollovers), c) {
    budget_book book;
    const auto b = tokens_per(1000, period::month);
    book.seed("k", 1000, 0, period::month, c.seeded_period);  // the month is spent
    const auto d = book.reserve("k", b, 100, 0, c.later);
    BOOST_TEST(d.admitted == c.rolled);
    BOOST_TEST(book.current("k", c.later).tokens == (c.rolled ? 100u : 1000u));
}

BOOST_AUTO_TEST_CASE(total_budget_never_rolls_over) {
    budget_book book;
    const auto b = tokens_per(1000, period::total);
    book.seed("k", 950, 0, period::total,
              budget_book::period_start_ms(period::total, jun_15_2025_0830));
    const auto d = book.reserve("k", b, 50, 0, jun_15_2025_0830);
    BOOST_TEST(d.admitted);
    BOOST_TEST(!book.reserve("k", b, 1, 0, jan_01_2025 + 400 * day).admitted);
    BOOST_TEST(d.period_end_ms == std::numeric_limits<std::int64_t>::max());
}

BOOST_AUTO_TEST_CASE(budget_without_caps_holds_nothing) {
    budget_book book;
    auto d = book.reserve("k", budget_book::budget{}, 100, 1.0, jun_15_2025_0830);
    BOOST_TEST(d.admitted);
    BOOST_TEST(!d.held.valid());
    book.settle(d.held, 100, 1.0);
    BOOST_TEST(book.current("k", jun_15_2025_0830).tokens == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
