// Numbers as the gateway writes them into headers, logs and JSON: append_fixed gives
// printf's "%.*f" digits; append_uint / append_double as to_chars.
#define BOOST_TEST_MODULE json_text
#include <boost/test/unit_test.hpp>

#include <cmath>
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

BOOST_AUTO_TEST_CASE(fixed_writes_zero_for_what_no_field_holds) {
    BOOST_TEST(fixed(std::numeric_limits<double>::quiet_NaN(), 3) == "0.000");
    BOOST_TEST(fixed(std::numeric_limits<double>::infinity(), 3) == "0.000");
    BOOST_TEST(fixed(1e300, 10) == "0.0000000000");
    BOOST_TEST(fixed(-1.5, 1) == "-1.5");
}
