#define BOOST_TEST_MODULE pool_book
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <vector>

#include "gateway/upstream/pool_book.hpp"

using tollgate::upstream::pool_book;
using namespace std::chrono_literals;

namespace {
const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(open_connections_never_exceed_the_limit) {
    pool_book<int> b(2);
    BOOST_TEST(b.reserve());
    BOOST_TEST(b.reserve());
    BOOST_TEST(!b.reserve());  // the caller waits for a give_back
    BOOST_TEST(b.open() == 2u);
    b.closed();  // one failed to connect
    BOOST_TEST(b.open() == 1u);
    BOOST_TEST(b.reserve());
    BOOST_TEST(!b.reserve());
}

BOOST_AUTO_TEST_CASE(a_zero_limit_is_taken_as_one) {
    pool_book<int> b(0);
    BOOST_TEST(b.limit() == 1u);
    BOOST_TEST(b.reserve());
    BOOST_TEST(!b.reserve());
}

BOOST_AUTO_TEST_CASE(the_warmest_idle_connection_is_reused_first) {
    pool_book<int> b(3);
    for (int i = 0; i < 3; ++i) BOOST_TEST(b.reserve());
    BOOST_TEST(!b.give_back(1, true, t0).has_value());
    BOOST_TEST(!b.give_back(2, true, t0 + 1s).has_value());
    BOOST_TEST(!b.give_back(3, true, t0 + 2s).has_value());
    BOOST_TEST(b.idle() == 3u);
    BOOST_TEST(b.open() == 3u);  // idle ones count as open
    BOOST_TEST(b.take_idle().value() == 3);
    BOOST_TEST(b.take_idle().value() == 2);
    BOOST_TEST(b.open() == 3u);  // taken ones are in use, still open
    BOOST_TEST(b.idle() == 1u);
}

BOOST_AUTO_TEST_CASE(a_connection_that_is_not_reusable_is_handed_back_to_close) {
    pool_book<int> b(2);
    BOOST_TEST(b.reserve());
    BOOST_TEST(b.give_back(7, false, t0).value() == 7);
    BOOST_TEST(b.open() == 0u);
    BOOST_TEST(b.idle() == 0u);
}

BOOST_AUTO_TEST_CASE(stale_idle_connections_leave_oldest_first) {
    pool_book<int> b(4);
    for (int i = 0; i < 3; ++i) BOOST_TEST(b.reserve());
    (void)b.give_back(1, true, t0);
    (void)b.give_back(2, true, t0 + 10s);
    (void)b.give_back(3, true, t0 + 20s);
    const auto stale = b.take_stale(t0 + 15s);
    BOOST_TEST(stale == (std::vector<int>{1, 2}));
    BOOST_TEST(b.open() == 1u);
    BOOST_TEST(b.idle() == 1u);
    BOOST_TEST(b.take_stale(t0 + 15s).empty());
}

BOOST_AUTO_TEST_CASE(a_fresh_connection_makes_room_only_when_the_pool_is_full) {
    pool_book<int> b(2);
    BOOST_TEST(b.reserve());
    BOOST_TEST(b.reserve());
    (void)b.give_back(1, true, t0);
    (void)b.give_back(2, true, t0 + 1s);
    const auto room = b.make_room();
    BOOST_TEST(room.value() == 1);  // the oldest idle one
    BOOST_TEST(b.open() == 1u);
    BOOST_TEST(b.reserve());                 // full again: one idle, one new
    BOOST_TEST(b.make_room().value() == 2);  // the next fresh one pushes out the other
    BOOST_TEST(b.idle() == 0u);
    BOOST_TEST(!b.make_room().has_value());  // full, none idle: nothing to push out
}

BOOST_AUTO_TEST_CASE(no_room_is_made_below_the_limit) {
    pool_book<int> b(3);
    BOOST_TEST(b.reserve());
    (void)b.give_back(1, true, t0);
    BOOST_TEST(!b.make_room().has_value());
    BOOST_TEST(b.idle() == 1u);
}

BOOST_AUTO_TEST_CASE(a_retired_pool_keeps_nothing) {
    pool_book<int> b(3);
    for (int i = 0; i < 3; ++i) BOOST_TEST(b.reserve());
    (void)b.give_back(1, true, t0);
    (void)b.give_back(2, true, t0);
    const auto idle = b.retire();
    BOOST_TEST(idle == (std::vector<int>{1, 2}));
    BOOST_TEST(b.open() == 1u);                         // the one still in use
    BOOST_TEST(b.give_back(3, true, t0).value() == 3);  // comes back: closed, not kept
    BOOST_TEST(b.open() == 0u);
    BOOST_TEST(b.idle() == 0u);
}

BOOST_AUTO_TEST_CASE(clear_hands_back_every_idle_one_and_counts_nothing_open) {
    pool_book<int> b(3);
    for (int i = 0; i < 3; ++i) BOOST_TEST(b.reserve());
    (void)b.give_back(1, true, t0);
    BOOST_TEST(b.clear() == (std::vector<int>{1}));
    BOOST_TEST(b.open() == 0u);
    b.closed();  // a late close never goes below zero
    BOOST_TEST(b.open() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
