#define BOOST_TEST_MODULE limiter
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "policies/rate_limit/limiter.hpp"

namespace bdata = boost::unit_test::data;
using namespace std::chrono_literals;
using tollgate::policies::held_reservation;
using tollgate::policies::limiter;
using reason = limiter::decision::reason;

namespace {

// A fake time line: an arbitrary steady-clock origin, never the real clock.
const limiter::time_point t0 = limiter::time_point{} + 1000h;

limiter::limits rpm(std::uint64_t n) {
    return {n, std::nullopt, std::nullopt};
}
limiter::limits tpm(std::uint64_t n) {
    return {std::nullopt, n, std::nullopt};
}
limiter::limits concurrency(std::uint64_t n) {
    return {std::nullopt, std::nullopt, n};
}

// Runs `threads` threads that all start `body(i)` at the same moment.
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

BOOST_AUTO_TEST_CASE(fifty_racing_requests_with_concurrency_ten_admit_exactly_ten) {
    limiter lim;
    std::vector<limiter::decision> results(50);
    race(50, [&](int i) { results[i] = lim.admit("team", concurrency(10), 100, t0); });

    int admitted = 0;
    for (const auto& d : results) {
        if (d.admitted) {
            ++admitted;
            BOOST_TEST(d.held.valid());
        } else {
            BOOST_TEST((d.why == reason::concurrency));
            BOOST_TEST(d.retry_after == 1000ms);
            BOOST_TEST(!d.held.valid());
        }
    }
    BOOST_TEST(admitted == 10);
    BOOST_TEST(lim.usage("team", t0).in_flight == 10u);
}

BOOST_AUTO_TEST_CASE(two_hundred_racing_requests_with_rpm_fifty_admit_exactly_fifty) {
    limiter lim;
    std::atomic<int> admitted{0};
    // Each thread reads "the clock" a little differently, as real workers do.
    race(200, [&](int i) {
        auto d = lim.admit("team", rpm(50), 10, t0 + std::chrono::microseconds(i % 7));
        if (d.admitted) {
            ++admitted;
            lim.settle(d.held, 10, t0);
        }
    });
    BOOST_TEST(admitted.load() == 50);
    BOOST_TEST(lim.usage("team", t0 + 1s).requests == 50u);
}

BOOST_AUTO_TEST_CASE(window_slides_sixty_seconds_from_each_admission) {
    limiter lim;
    for (int i = 0; i < 50; ++i) {
        auto d = lim.admit("k", rpm(50), 1, t0);
        BOOST_TEST_REQUIRE(d.admitted);
        lim.settle(d.held, 1, t0);
    }
    BOOST_TEST(!lim.admit("k", rpm(50), 1, t0 + 59s).admitted);
    const auto at_59_9 = lim.admit("k", rpm(50), 1, t0 + 59900ms);
    BOOST_TEST(!at_59_9.admitted);
    BOOST_TEST((at_59_9.why == reason::rpm));
    BOOST_TEST(at_59_9.retry_after == 1000ms);

    int admitted = 0;
    for (int i = 0; i < 60; ++i) admitted += lim.admit("k", rpm(50), 1, t0 + 60s).admitted;
    BOOST_TEST(admitted == 50);
}

BOOST_AUTO_TEST_CASE(window_is_not_the_clock_minute) {
    limiter lim;
    // A burst in the middle of a minute is not forgiven when the next clock minute starts.
    const auto mid_minute = limiter::time_point{} + 3600s + 30s;
    for (int i = 0; i < 50; ++i)
        BOOST_TEST_REQUIRE(lim.admit("k", rpm(50), 1, mid_minute).admitted);
    const auto next_minute = limiter::time_point{} + 3660s;
    const auto d = lim.admit("k", rpm(50), 1, next_minute);
    BOOST_TEST(!d.admitted);
    BOOST_TEST(d.retry_after == 30s);
    BOOST_TEST(lim.admit("k", rpm(50), 1, mid_minute + 60s).admitted);
}

BOOST_AUTO_TEST_CASE(entries_expire_one_by_one_not_all_at_once) {
    limiter lim;
    for (int i = 0; i < 25; ++i) BOOST_TEST_REQUIRE(lim.admit("k", rpm(50), 1, t0).admitted);
    for (int i = 0; i < 25; ++i) BOOST_TEST_REQUIRE(lim.admit("k", rpm(50), 1, t0 + 30s).admitted);
    BOOST_TEST(!lim.admit("k", rpm(50), 1, t0 + 45s).admitted);

    int admitted = 0;
    for (int i = 0; i < 40; ++i) admitted += lim.admit("k", rpm(50), 1, t0 + 60s).admitted;
    BOOST_TEST(admitted == 25);  // only the first burst left the window
    const auto d = lim.admit("k", rpm(50), 1, t0 + 60s);
    BOOST_TEST(d.retry_after == 30s);  // the second burst leaves at t0 + 90 s
}

BOOST_AUTO_TEST_CASE(token_reservations_count_and_settling_lower_frees_capacity) {
    // SPEC "Admission against a budget or tpm": admitted while window + held < tpm.
    limiter lim;
    auto a = lim.admit("k", tpm(1000), 400, t0);
    auto b = lim.admit("k", tpm(1000), 400, t0 + 1s);
    BOOST_TEST_REQUIRE(a.admitted);
    BOOST_TEST_REQUIRE(b.admitted);
    auto c = lim.admit("k", tpm(1000), 400, t0 + 2s);  // 800 < 1000: in, overshooting
    BOOST_TEST_REQUIRE(c.admitted);
    BOOST_TEST(*c.remaining_tokens == 0u);

    const auto refused = lim.admit("k", tpm(1000), 1, t0 + 2s);
    BOOST_TEST(!refused.admitted);
    BOOST_TEST((refused.why == reason::tpm));
    BOOST_TEST(refused.retry_after == 58s);  // `a` leaves the window at t0 + 60 s
    BOOST_TEST(lim.usage("k", t0 + 2s).tokens == 1200u);

    lim.settle(a.held, 100, t0 + 3s);  // used far less than it reserved
    BOOST_TEST(lim.usage("k", t0 + 3s).tokens == 900u);
    auto d = lim.admit("k", tpm(1000), 50, t0 + 3s);
    BOOST_TEST(d.admitted);
    BOOST_TEST(*d.remaining_tokens == 50u);
}

// Settles and releases find their entry wherever it lies in a long log (near its end, at
// its start, in between), in any order: each one's usage replaces exactly its own estimate.
BOOST_AUTO_TEST_CASE(settling_finds_each_entry_of_a_long_log_in_any_order) {
    limiter lim;
    const auto limits = limiter::limits{1'000'000, 1'000'000'000, 1'000'000};
    constexpr int n = 3000;
    std::vector<limiter::decision> held;
    held.reserve(n);
    for (int i = 0; i < n; ++i) {
        held.push_back(lim.admit("k", limits, 10, t0 + std::chrono::milliseconds(i)));
        BOOST_TEST_REQUIRE(held.back().admitted);
    }
    const auto now = t0 + 5s;
    BOOST_TEST(lim.usage("k", now).tokens == 10u * n);
    BOOST_TEST(lim.usage("k", now).in_flight == std::uint64_t{n});
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(17));
    // The newest and the oldest first, then the rest shuffled; every third one released.
    std::swap(order[0], *std::find(order.begin(), order.end(), n - 1));
    std::swap(order[1], *std::find(order.begin(), order.end(), 0));
    std::uint64_t tokens = 10u * n, requests = n;
    for (int k = 0; k < n; ++k) {
        const int i = order[k];
        if (i % 3 == 0) {
            lim.release(held[i].held, now);
            tokens -= 10;
            --requests;
        } else {
            lim.settle(held[i].held, 1 + i % 7, now);
            tokens = tokens - 10 + 1 + i % 7;
        }
        if (k % 500 == 0 || k == n - 1) {
            const auto u = lim.usage("k", now);
            BOOST_TEST(u.tokens == tokens);
            BOOST_TEST(u.requests == requests);
            BOOST_TEST(u.in_flight == std::uint64_t(n - k - 1));
        }
    }
    // Settled twice: no change.
    lim.settle(held[1].held, 1000, now);
    BOOST_TEST(lim.usage("k", now).tokens == tokens);
}

BOOST_AUTO_TEST_CASE(settling_higher_than_the_estimate_charges_the_real_usage) {
    limiter lim;
    auto a = lim.admit("k", tpm(1000), 100, t0);
    lim.settle(a.held, 1000, t0 + 1s);
    BOOST_TEST(lim.usage("k", t0 + 1s).tokens == 1000u);
    BOOST_TEST(!lim.admit("k", tpm(1000), 1, t0 + 2s).admitted);
    // The real usage keeps the admission time: gone at t0 + 60 s.
    BOOST_TEST(lim.usage("k", t0 + 60s).tokens == 0u);
    BOOST_TEST(lim.admit("k", tpm(1000), 100, t0 + 60s).admitted);
}

BOOST_AUTO_TEST_CASE(an_estimate_above_the_limit_is_admitted_while_below_it) {
    // The first request of an idle key always passes, whatever its estimate.
    limiter lim;
    auto big = lim.admit("k", tpm(1000), 5000, t0);
    BOOST_TEST_REQUIRE(big.admitted);
    BOOST_TEST(*big.remaining_tokens == 0u);
    // It then holds the key's tpm until it settles lower or leaves the window.
    const auto blocked = lim.admit("k", tpm(1000), 1, t0 + 1s);
    BOOST_TEST(!blocked.admitted);
    BOOST_TEST((blocked.why == reason::tpm));
    BOOST_TEST(blocked.retry_after == 59s);
    lim.settle(big.held, 300, t0 + 2s);
    BOOST_TEST(lim.admit("k", tpm(1000), 5000, t0 + 2s).admitted);  // 300 < 1000
    BOOST_TEST(!lim.admit("k", tpm(1000), 1, t0 + 2s).admitted);
}

BOOST_AUTO_TEST_CASE(release_returns_requests_tokens_and_concurrency) {
    limiter lim;
    const limiter::limits l{2, 1000, 1};
    auto a = lim.admit("k", l, 1000, t0);
    BOOST_TEST_REQUIRE(a.admitted);
    const auto refused = lim.admit("k", l, 300, t0);
    BOOST_TEST(!refused.admitted);
    BOOST_TEST((refused.why == reason::tpm));  // tpm waits 60 s, concurrency "1 s"

    lim.release(a.held, t0 + 1s);
    BOOST_TEST(!a.held.valid());
    const auto u = lim.usage("k", t0 + 1s);
    BOOST_TEST(u.requests == 0u);
    BOOST_TEST(u.tokens == 0u);
    BOOST_TEST(u.in_flight == 0u);
    // A released request does not use an rpm slot: two more fit.
    auto b = lim.admit("k", l, 800, t0 + 1s);
    BOOST_TEST_REQUIRE(b.admitted);
    lim.settle(b.held, 800, t0 + 1s);
    auto c = lim.admit("k", l, 100, t0 + 2s);
    BOOST_TEST(c.admitted);
    BOOST_TEST(*c.remaining_requests == 0u);
}

BOOST_AUTO_TEST_CASE(second_settle_or_release_is_a_no_op) {
    limiter lim;
    const limiter::limits l{10, 1000, 5};
    auto a = lim.admit("k", l, 300, t0);
    auto copy = a.held;
    lim.settle(a.held, 100, t0);
    lim.settle(a.held, 999, t0);  // invalid handle now
    lim.release(a.held, t0);
    lim.settle(copy, 999, t0);  // a stale copy: the limiter knows it is done
    lim.release(copy, t0);
    auto u = lim.usage("k", t0);
    BOOST_TEST(u.requests == 1u);
    BOOST_TEST(u.tokens == 100u);
    BOOST_TEST(u.in_flight == 0u);

    auto b = lim.admit("k", l, 300, t0);
    auto b_copy = b.held;
    lim.release(b.held, t0);
    lim.release(b.held, t0);
    lim.settle(b_copy, 500, t0);
    u = lim.usage("k", t0);
    BOOST_TEST(u.requests == 1u);
    BOOST_TEST(u.tokens == 100u);
    BOOST_TEST(u.in_flight == 0u);
}

BOOST_AUTO_TEST_CASE(settle_and_release_after_the_entry_left_the_window_are_safe) {
    limiter lim;
    const limiter::limits l{10, 1000, 2};
    auto a = lim.admit("k", l, 600, t0);
    auto b = lim.admit("k", l, 300, t0 + 10s);
    // a long stream: at t0 + 70 s its entry has left the window, its reservation has not.
    auto u = lim.usage("k", t0 + 65s);
    BOOST_TEST(u.requests == 1u);
    BOOST_TEST(u.tokens == 900u);
    BOOST_TEST(u.in_flight == 2u);
    BOOST_TEST(!lim.admit("k", l, 200, t0 + 65s).admitted);

    lim.settle(a.held, 5000, t0 + 65s);  // charged at its admission time: already gone
    u = lim.usage("k", t0 + 65s);
    BOOST_TEST(u.tokens == 300u);
    BOOST_TEST(u.in_flight == 1u);
    lim.release(b.held, t0 + 200s);
    BOOST_TEST(lim.usage("k", t0 + 200s).in_flight == 0u);
    BOOST_TEST(lim.tracked_keys() == 0u);  // nothing left: the key is gone
    lim.settle(a.held, 1, t0 + 300s);      // after the key is gone: still a no-op
}

BOOST_AUTO_TEST_CASE(concurrency_only_key_tracks_in_flight_without_a_window) {
    limiter lim;
    auto a = lim.admit("k", concurrency(1), 50, t0);
    BOOST_TEST_REQUIRE(a.admitted);
    BOOST_TEST(!a.limit_requests);
    BOOST_TEST(!a.limit_tokens);
    BOOST_TEST(!lim.admit("k", concurrency(1), 50, t0 + 600s).admitted);
    lim.settle(a.held, 50, t0 + 600s);
    BOOST_TEST(lim.admit("k", concurrency(1), 50, t0 + 600s).admitted);
}

BOOST_AUTO_TEST_CASE(key_without_limits_holds_nothing) {
    limiter lim;
    auto d = lim.admit("k", {}, 50, t0);
    BOOST_TEST(d.admitted);
    BOOST_TEST(!d.held.valid());
    lim.settle(d.held, 10, t0);
    BOOST_TEST(lim.tracked_keys() == 0u);
}

BOOST_AUTO_TEST_CASE(zero_limit_refuses_everything) {
    limiter lim;
    const auto d = lim.admit("k", rpm(0), 1, t0);
    BOOST_TEST(!d.admitted);
    BOOST_TEST(d.retry_after == 60s);
    BOOST_TEST(lim.tracked_keys() == 0u);
}

// Admission at t0 with rpm 1; a second request at t0 + offset.
struct retry_case {
    std::chrono::milliseconds offset;
    std::chrono::milliseconds retry_after;
};
std::ostream& operator<<(std::ostream& os, const retry_case& c) {
    return os << "offset " << c.offset.count() << "ms";
}
const retry_case retry_cases[] = {
    {0ms, 60s},     {1ms, 60s},    {500ms, 60s},  {1000ms, 59s},
    {30000ms, 30s}, {58500ms, 2s}, {59000ms, 1s}, {59999ms, 1s},
};

BOOST_DATA_TEST_CASE(retry_after_is_whole_seconds_until_the_oldest_entry_leaves,
                     bdata::make(retry_cases), c) {
    limiter lim;
    BOOST_TEST_REQUIRE(lim.admit("k", rpm(1), 0, t0).admitted);
    const auto d = lim.admit("k", rpm(1), 0, t0 + c.offset);
    BOOST_TEST(!d.admitted);
    BOOST_TEST(d.retry_after == c.retry_after);
    BOOST_TEST(d.reset_requests == 60s - c.offset);
}

BOOST_AUTO_TEST_CASE(retry_after_for_tokens_waits_for_enough_tokens_to_leave) {
    limiter lim;
    // 100, 500, 500 tokens at 0 s, 10 s, 20 s; tpm 1000. Another request needs the window
    // below the limit again: 101 tokens to leave, the first entry is not enough, the
    // first two are, so at 10 s + 60 s.
    const std::uint64_t sizes[] = {100, 500, 500};
    for (int i = 0; i < 3; ++i) {
        auto d = lim.admit("k", tpm(1000), sizes[i], t0 + i * 10s);
        BOOST_TEST_REQUIRE(d.admitted);
        lim.settle(d.held, sizes[i], t0 + i * 10s);
    }
    const auto d = lim.admit("k", tpm(1000), 500, t0 + 30s);
    BOOST_TEST(!d.admitted);
    BOOST_TEST(d.retry_after == 40s);
    BOOST_TEST(d.reset_tokens == 50s);  // the newest token entry leaves at 80 s
}

BOOST_AUTO_TEST_CASE(refusal_reports_the_limit_that_frees_last) {
    limiter lim;
    const limiter::limits l{1, std::nullopt, 1};
    auto a = lim.admit("k", l, 0, t0);
    BOOST_TEST_REQUIRE(a.admitted);
    const auto d = lim.admit("k", l, 0, t0 + 20s);
    BOOST_TEST((d.why == reason::rpm));  // rpm frees at 60 s; concurrency at "1 s"
    BOOST_TEST(d.retry_after == 40s);
    lim.settle(a.held, 0, t0 + 20s);
    BOOST_TEST(!lim.admit("k", l, 0, t0 + 20s).admitted);  // rpm still holds
}

BOOST_AUTO_TEST_CASE(headers_report_limits_and_remaining_counts) {
    limiter lim;
    const limiter::limits l{10, 1000, std::nullopt};
    limiter::decision d;
    for (int i = 0; i < 3; ++i) d = lim.admit("k", l, 100, t0 + i * 1s);
    BOOST_TEST_REQUIRE(d.admitted);
    BOOST_TEST(*d.limit_requests == 10u);
    BOOST_TEST(*d.remaining_requests == 7u);
    BOOST_TEST(*d.limit_tokens == 1000u);
    BOOST_TEST(*d.remaining_tokens == 700u);
    BOOST_TEST(d.reset_requests == 60s);  // the newest admission is now
    BOOST_TEST(d.reset_tokens == 60s);

    lim.settle(d.held, 40, t0 + 5s);
    const auto e = lim.admit("k", l, 100, t0 + 30s);
    BOOST_TEST(*e.remaining_requests == 6u);
    BOOST_TEST(*e.remaining_tokens == 1000u - 100u - 100u - 40u - 100u);
    BOOST_TEST(limiter::format_reset(e.reset_requests) == "1m0s");

    // Admitted while below the limit, whatever the estimate: nothing left after it.
    const auto big = lim.admit("k", l, 900, t0 + 30s);
    BOOST_TEST(big.admitted);
    BOOST_TEST(*big.remaining_tokens == 0u);
    BOOST_TEST(*big.remaining_requests == 5u);
    // Refused: counts without the refused request.
    const auto r = lim.admit("k", l, 1, t0 + 30s);
    BOOST_TEST(!r.admitted);
    BOOST_TEST(*r.remaining_tokens == 0u);
    BOOST_TEST(*r.remaining_requests == 5u);

    // Only the limits the key has.
    const auto only_rpm = lim.admit("other", rpm(5), 100, t0);
    BOOST_TEST(only_rpm.limit_requests.has_value());
    BOOST_TEST(!only_rpm.limit_tokens.has_value());
    BOOST_TEST(!only_rpm.remaining_tokens.has_value());
}

struct format_case {
    std::int64_t ms;
    const char* text;
};
std::ostream& operator<<(std::ostream& os, const format_case& c) {
    return os << c.ms << "ms";
}
const format_case format_cases[] = {
    {0, "0s"},
    {-5, "0s"},
    {1, "1ms"},
    {250, "250ms"},
    {999, "999ms"},
    {1000, "1s"},
    {1500, "1.5s"},
    {1010, "1.01s"},
    {17280, "17.28s"},
    {59999, "59.999s"},
    {60000, "1m0s"},
    {61000, "1m1s"},
    {360000, "6m0s"},
    {3600000, "1h0m0s"},
    {3723456, "1h2m3.456s"},
    {86400000, "24h0m0s"},
};

BOOST_DATA_TEST_CASE(format_reset_follows_openai_duration_style, bdata::make(format_cases), c) {
    BOOST_TEST(limiter::format_reset(std::chrono::milliseconds(c.ms)) == c.text);
}

BOOST_AUTO_TEST_CASE(keys_with_an_empty_window_are_dropped) {
    limiter lim;
    for (int i = 0; i < 1000; ++i) {
        auto d = lim.admit("key-" + std::to_string(i), rpm(5), 1, t0);
        lim.settle(d.held, 1, t0);
    }
    auto held = lim.admit("busy", concurrency(5), 1, t0);
    BOOST_TEST(lim.tracked_keys() == 1001u);

    // Any later admission sweeps its own shard; an explicit sweep covers all of them.
    auto late = lim.admit("late", rpm(5), 1, t0 + 61s);
    lim.settle(late.held, 1, t0 + 61s);
    BOOST_TEST(lim.tracked_keys() < 1002u);
    lim.sweep(t0 + 121s);
    BOOST_TEST(lim.tracked_keys() == 1u);  // "busy" is still in flight
    lim.settle(held.held, 1, t0 + 121s);
    BOOST_TEST(lim.tracked_keys() == 0u);
}

BOOST_AUTO_TEST_CASE(held_reservation_releases_when_dropped) {
    limiter lim;
    {
        auto d = lim.admit("k", {3, 1000, 1}, 500, t0);
        held_reservation h(lim, std::move(d.held), t0);
        BOOST_TEST(h.active());
        BOOST_TEST(!lim.admit("k", {3, 1000, 1}, 500, t0).admitted);
        held_reservation moved = std::move(h);
        BOOST_TEST(!h.active());
        BOOST_TEST(moved.active());
    }
    auto u = lim.usage("k", t0);
    BOOST_TEST(u.in_flight == 0u);
    BOOST_TEST(u.requests == 0u);
    BOOST_TEST(u.tokens == 0u);

    {
        auto d = lim.admit("k", {3, 1000, 1}, 500, t0);
        held_reservation h(lim, std::move(d.held), t0);
        h.settle(200, t0 + 1s);
        BOOST_TEST(!h.active());
    }  // settled: the destructor gives nothing back
    u = lim.usage("k", t0 + 1s);
    BOOST_TEST(u.requests == 1u);
    BOOST_TEST(u.tokens == 200u);
}

BOOST_AUTO_TEST_CASE(out_of_order_now_keeps_the_window_consistent) {
    limiter lim;
    auto a = lim.admit("k", rpm(3), 1, t0 + 10s);
    auto b = lim.admit("k", rpm(3), 1, t0 + 9s);  // a thread that read the clock earlier
    BOOST_TEST(a.admitted);
    BOOST_TEST(b.admitted);
    lim.settle(b.held, 1, t0 + 10s);
    lim.settle(a.held, 1, t0 + 10s);
    // Both count until t0 + 70 s (the late one was clamped to the newest time).
    BOOST_TEST(lim.usage("k", t0 + 69s).requests == 2u);
    BOOST_TEST(lim.usage("k", t0 + 70s).requests == 0u);
}

BOOST_AUTO_TEST_CASE(mixed_concurrent_traffic_never_breaks_the_limits) {
    limiter lim;
    const limiter::limits l{400, 20000, 3};
    std::atomic<int> in_flight{0}, max_in_flight{0}, admitted{0};
    std::atomic<std::uint64_t> reserved_tokens{0};
    race(8, [&](int t) {
        std::mt19937 rng(static_cast<unsigned>(t));
        for (int i = 0; i < 300; ++i) {
            const auto now = t0 + std::chrono::milliseconds(i * 10);
            const std::uint64_t est = rng() % 200;
            auto d = lim.admit("shared", l, est, now);
            if (!d.admitted) continue;
            ++admitted;
            reserved_tokens += est;
            const int n = ++in_flight;
            int m = max_in_flight.load();
            while (n > m && !max_in_flight.compare_exchange_weak(m, n)) {
            }
            --in_flight;
            if (rng() % 3 == 0)
                lim.release(d.held, now);
            else
                lim.settle(d.held, est / 2, now);
        }
    });
    BOOST_TEST(max_in_flight.load() <= 3);
    BOOST_TEST(admitted.load() > 0);
    const auto u = lim.usage("shared", t0 + 3s);
    BOOST_TEST(u.in_flight == 0u);
    BOOST_TEST(u.requests <= 400u);
    BOOST_TEST(u.tokens < 20000u + 200u);  // at most one request's estimate beyond the limit
}

BOOST_AUTO_TEST_SUITE_END()
