// Numbers as the gateway writes them into headers, logs and JSON: append_fixed gives
// printf's "%.*f" digits; append_uint / append_double as to_chars.
#define BOOST_TEST_MODULE json_text
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>

#include "gateway/core/json_text.hpp"

using tollgate::core::json_text::append_fixed;

namespace {

std::string fixed(double v, int decimals) {
    std::string s;
    append_fixed(s, v, decimals);
    return s;
}

std::string printf_fixed(double v, int decimals) {
    char buf[64];
    const int n = std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return std::string(buf, static_cast<std::size_t>(n));
}

}  // namespace

BOOST_AUTO_TEST_CASE(fixed_matches_printf_for_costs_and_durations) {
    for (double v : {0.0, 0.5, 1.0, 0.0005, 0.0015, 2.5e-7, 1.25e-10, 0.000000000049999, 123.4565,
                     999999.9995, 1e14 + 0.5, 3.0000000001, 0.1 + 0.2})
        for (int d : {0, 3, 10}) BOOST_TEST(fixed(v, d) == printf_fixed(v, d), v << " %." << d);
    std::mt19937_64 rng(17);
    std::uniform_real_distribution<double> exponent(-12, 7);
    for (int i = 0; i < 20000; ++i) {
        const double v = std::pow(10.0, exponent(rng));
        BOOST_TEST_REQUIRE(fixed(v, 10) == printf_fixed(v, 10), v);
        BOOST_TEST_REQUIRE(fixed(v, 3) == printf_fixed(v, 3), v);
    }
}

// The fast path (an integer with its point) against printf wherever rounding is close:
// exact halves, a hair either side of them, negatives and -0, every decimals count.
BOOST_AUTO_TEST_CASE(fixed_matches_printf_at_and_around_halves_and_for_negatives) {
    std::mt19937_64 rng(23);
    std::uniform_int_distribution<std::int64_t> whole(0, 2'000'000'000);
    for (int d = 0; d <= 10; ++d) {
        const double scale = std::pow(10.0, d);
        for (int i = 0; i < 20000; ++i) {
            const double half = (static_cast<double>(whole(rng)) + 0.5) / scale;
            for (double v : {half, std::nextafter(half, 0.0), std::nextafter(half, 1e300), -half,
                             half * 1.0000001, half * 0.9999999})
                BOOST_TEST_REQUIRE(fixed(v, d) == printf_fixed(v, d), v << " %." << d);
        }
        for (double v : {0.0, -0.0, -0.0001, -1e-12, 1e11, 999999999999.5 / scale})
            BOOST_TEST_REQUIRE(fixed(v, d) == printf_fixed(v, d), v << " %." << d);
    }
}

BOOST_AUTO_TEST_CASE(fixed_writes_zero_for_what_no_field_holds) {
    BOOST_TEST(fixed(std::numeric_limits<double>::quiet_NaN(), 3) == "0.000");
    BOOST_TEST(fixed(std::numeric_limits<double>::infinity(), 3) == "0.000");
    BOOST_TEST(fixed(1e300, 10) == "0.0000000000");
    BOOST_TEST(fixed(-1.5, 1) == "-1.5");
}
