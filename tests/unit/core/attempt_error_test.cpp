#define BOOST_TEST_MODULE attempt_error
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <string_view>
#include <vector>

#include "gateway/core/attempt_error.hpp"

namespace bdata = boost::unit_test::data;
using namespace tollgate;
using core::attempt_error;
using core::attempt_kind;
using core::attempt_source;

namespace {

// One row per way an attempt ends, with every consequence the one mapping gives it.
struct row {
    attempt_source source;
    attempt_kind kind;
    int status;
    std::string_view reason;  // tollgate_upstream_failures_total's label; empty: none
    bool against_target;      // router health
    bool retried_by_default;  // routing.retry_on's default list
};

std::ostream& operator<<(std::ostream& os, const row& r) {
    return os << static_cast<int>(r.source) << '/' << static_cast<int>(r.kind) << '/' << r.status;
}

const std::vector<row> rows{
    {attempt_source::none, attempt_kind::ok, 200, "", false, false},
    {attempt_source::client, attempt_kind::client_gone, 0, "", false, false},
    {attempt_source::pool, attempt_kind::pool_full, 0, "connect_error", true, true},
    {attempt_source::connect, attempt_kind::io, 0, "connect_error", true, true},
    {attempt_source::connect, attempt_kind::timeout, 0, "timeout", true, true},
    {attempt_source::tls, attempt_kind::tls_verify, 0, "tls", true, true},
    {attempt_source::head, attempt_kind::io, 0, "connect_error", true, true},
    {attempt_source::head, attempt_kind::timeout, 0, "timeout", true, true},
    {attempt_source::head, attempt_kind::status, 429, "status_429", true, true},
    {attempt_source::head, attempt_kind::status, 503, "status_5xx", true, true},
    {attempt_source::head, attempt_kind::status, 501, "status_5xx", true, false},
    {attempt_source::head, attempt_kind::status, 409, "status_4xx", true, false},
    {attempt_source::head, attempt_kind::auth, 401, "auth", true, false},
    {attempt_source::body, attempt_kind::io, 200, "connect_error", true, true},
    {attempt_source::body, attempt_kind::timeout, 200, "timeout", true, true},
    {attempt_source::body, attempt_kind::too_large, 200, "protocol", true, false},
    {attempt_source::body, attempt_kind::malformed, 200, "protocol", true, false},
    {attempt_source::stream, attempt_kind::broken, 200, "protocol", true, false},
    {attempt_source::stream, attempt_kind::too_large, 200, "protocol", true, false},
    {attempt_source::stream, attempt_kind::timeout, 200, "timeout", true, true},
    {attempt_source::stream, attempt_kind::error_event, 200, "stream_error", true, false},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_DATA_TEST_CASE(each_ending_maps_once_to_reason_health_and_retry, bdata::make(rows), r) {
    attempt_error e{r.source, r.kind, r.status, "why", std::nullopt};
    const config::routing_config routing;  // retry_on's defaults
    BOOST_TEST(core::failure_reason(e) == r.reason);
    BOOST_TEST(core::counts_against_target(e) == r.against_target);
    BOOST_TEST(core::retryable(e, routing.retry) == r.retried_by_default);
}

BOOST_AUTO_TEST_CASE(retry_on_is_read_once_into_classes_and_statuses) {
    const auto rule = config::retry_rule::from({"timeout", "409", "500"});
    BOOST_TEST(!rule.connect_error);
    BOOST_TEST(rule.timeout);
    BOOST_TEST(rule.retries_status(409));
    BOOST_TEST(rule.retries_status(500));
    BOOST_TEST(!rule.retries_status(503));
    BOOST_TEST(!rule.retries_status(200));
    BOOST_TEST(!rule.retries_status(999));
    BOOST_TEST(!rule.retries_status(-1));
    using k = attempt_kind;
    BOOST_TEST(!core::retryable({attempt_source::pool, k::pool_full}, rule));
    BOOST_TEST(!core::retryable({attempt_source::tls, k::tls_verify}, rule));
    BOOST_TEST(core::retryable({attempt_source::head, k::timeout}, rule));
    BOOST_TEST(core::retryable({attempt_source::head, k::status, 409}, rule));
    BOOST_TEST(!core::retryable({attempt_source::head, k::status, 503}, rule));
    // Nothing after an answer, nor after the client left, goes to another target.
    BOOST_TEST(!core::retryable({attempt_source::client, k::client_gone}, rule));
    BOOST_TEST(!core::retryable({}, rule));
}

BOOST_AUTO_TEST_CASE(the_client_gets_504_only_when_every_attempt_timed_out) {
    const attempt_error timeout{attempt_source::head, attempt_kind::timeout};
    const attempt_error refused{attempt_source::connect, attempt_kind::io};
    BOOST_TEST((core::client_error(timeout, true) == core::errc::upstream_timeout));
    BOOST_TEST((core::client_error(timeout, false) == core::errc::upstream_unavailable));
    BOOST_TEST((core::client_error(refused, true) == core::errc::upstream_unavailable));
    BOOST_TEST((core::describe(core::client_error(timeout, true)).status == 504));
    BOOST_TEST((core::describe(core::client_error(refused, false)).status == 502));
}

BOOST_AUTO_TEST_CASE(retry_after_takes_seconds_and_ignores_dates) {
    using std::chrono::milliseconds;
    BOOST_TEST(core::parse_retry_after("20").value() == milliseconds(20'000));
    BOOST_TEST(core::parse_retry_after("0").value() == milliseconds(0));
    BOOST_TEST(core::parse_retry_after("99999").value() == milliseconds(3'600'000));  // capped
    BOOST_TEST(!core::parse_retry_after("").has_value());
    BOOST_TEST(!core::parse_retry_after("-1").has_value());
    BOOST_TEST(!core::parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT").has_value());
    BOOST_TEST(!core::parse_retry_after("1234567890").has_value());
}

BOOST_AUTO_TEST_SUITE_END()
