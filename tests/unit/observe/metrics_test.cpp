#define BOOST_TEST_MODULE metrics
#include <boost/test/unit_test.hpp>

#include <string>
#include <string_view>

#include "gateway/observe/metrics.hpp"

using tollgate::observe::metrics;
using tollgate::observe::request_sample;

namespace {

// The value of the exposition line that starts with `series` ("name{labels}"), or -1.
double value_of(const std::string& text, std::string_view series) {
    const std::string prefix = std::string(series) + ' ';
    for (std::size_t at = 0; at < text.size();) {
        const std::size_t end = text.find('\n', at);
        const std::string_view line(text.data() + at,
                                    (end == std::string::npos ? text.size() : end) - at);
        if (line.substr(0, prefix.size()) == prefix)
            return std::stod(std::string(line.substr(prefix.size())));
        if (end == std::string::npos) break;
        at = end + 1;
    }
    return -1;
}

request_sample sample(std::string_view key, std::string_view model, int status,
                      std::uint64_t prompt, bool ttft) {
    request_sample s;
    s.key = key;
    s.model = model;
    s.provider = "p";
    s.status = status;
    s.duration_s = 0.02;
    if (ttft) s.ttft_s = 0.01;
    s.prompt_tokens = prompt;
    s.completion_tokens = prompt ? 1 : 0;
    return s;
}

}  // namespace

// A worker remembers the last sample's series and takes the next one's slots from it when
// key, model, provider and status repeat: runs of the same series, series that come back
// after others, a first sample without tokens or ttft then one with them, must all land in
// their own series.
BOOST_AUTO_TEST_CASE(samples_land_in_their_series_whatever_came_before) {
    metrics m(2);
    m.record(0, sample("a", "m1", 200, 0, false));  // a/m1/200: no tokens, no ttft yet
    m.record(0, sample("a", "m1", 200, 10, true));  // same series, now with both
    m.record(0, sample("a", "m1", 200, 10, true));
    m.record(0, sample("b", "m1", 200, 5, false));   // another key, same model
    m.record(0, sample("a", "m1", 502, 0, false));   // same key and model, another status
    m.record(0, sample("a", "m1", 200, 10, false));  // back to the first series
    m.record(0, sample("a", "m2", 200, 3, true));    // another model
    m.record(1, sample("a", "m1", 200, 10, true));   // another worker's shard
    m.record(0, sample("ab", "", 200, 0, false));    // a name that prefixes none of the above

    const std::string text = m.render();
    BOOST_TEST(
        value_of(text,
                 R"(tollgate_requests_total{key="a",model="m1",provider="p",status="200"})") == 5);
    BOOST_TEST(
        value_of(text,
                 R"(tollgate_requests_total{key="a",model="m1",provider="p",status="502"})") == 1);
    BOOST_TEST(
        value_of(text,
                 R"(tollgate_requests_total{key="b",model="m1",provider="p",status="200"})") == 1);
    BOOST_TEST(
        value_of(text,
                 R"(tollgate_requests_total{key="a",model="m2",provider="p",status="200"})") == 1);
    BOOST_TEST(
        value_of(text,
                 R"(tollgate_requests_total{key="ab",model="other",provider="p",status="200"})") ==
        1);
    BOOST_TEST(value_of(text, R"(tollgate_tokens_total{key="a",model="m1",type="prompt"})") == 40);
    BOOST_TEST(value_of(text, R"(tollgate_tokens_total{key="a",model="m1",type="completion"})") ==
               4);
    BOOST_TEST(value_of(text, R"(tollgate_tokens_total{key="b",model="m1",type="prompt"})") == 5);
    BOOST_TEST(value_of(text, R"(tollgate_tokens_total{key="a",model="m2",type="prompt"})") == 3);
    BOOST_TEST(value_of(text, R"(tollgate_request_duration_seconds_count{model="m1"})") == 7);
    BOOST_TEST(value_of(text, R"(tollgate_request_duration_seconds_count{model="m2"})") == 1);
    BOOST_TEST(value_of(text, R"(tollgate_request_duration_seconds_count{model="other"})") == 1);
    BOOST_TEST(value_of(text, R"(tollgate_time_to_first_token_seconds_count{model="m1"})") == 3);
    BOOST_TEST(value_of(text, R"(tollgate_time_to_first_token_seconds_count{model="m2"})") == 1);
}
