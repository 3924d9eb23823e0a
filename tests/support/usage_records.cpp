#include "tests/support/usage_records.hpp"

#include <boost/test/unit_test.hpp>

#include <simdjson.h>

#include <cmath>
#include <regex>
#include <sstream>

#include "tests/support/fixtures.hpp"

namespace tollgate::test {

// SPEC "Usage accounting": exactly these keys, in this order.
const std::vector<std::string> spec_keys = {"ts",
                                            "request_id",
                                            "key_id",
                                            "model",
                                            "provider",
                                            "upstream_model",
                                            "status",
                                            "stream",
                                            "attempts",
                                            "prompt_tokens",
                                            "completion_tokens",
                                            "total_tokens",
                                            "usage_source",
                                            "cost_usd",
                                            "latency_ms",
                                            "ttft_ms",
                                            "error"};

std::string str(const std::optional<std::string>& v) {
    return v ? *v : "<null>";
}
std::int64_t num(const std::optional<std::uint64_t>& v) {
    return v ? static_cast<std::int64_t>(*v) : -1;
}

record parse_record(const std::string& line) {
    record r;
    r.line = line;
    simdjson::dom::parser parser;
    simdjson::dom::object obj;
    if (parser.parse(line).get_object().get(obj) != simdjson::SUCCESS) {
        r.bad.push_back("<line is not a JSON object>");
        return r;
    }
    for (auto field : obj) {
        const std::string k(field.key);
        r.keys.push_back(k);
        const auto v = field.value;
        auto opt_string = [&](std::optional<std::string>& out) {
            if (v.is_null()) return;
            std::string_view s;
            if (v.get_string().get(s) == simdjson::SUCCESS)
                out = std::string(s);
            else
                r.bad.push_back(k);
        };
        auto opt_uint = [&](std::optional<std::uint64_t>& out) {
            if (v.is_null()) return;
            std::uint64_t n;
            if (v.get_uint64().get(n) == simdjson::SUCCESS)
                out = n;
            else
                r.bad.push_back(k);
        };
        auto opt_double = [&](std::optional<double>& out) {
            if (v.is_null()) return;
            double d;
            if (v.get_double().get(d) == simdjson::SUCCESS)
                out = d;
            else
                r.bad.push_back(k);
        };
        if (k == "ts")
            opt_string(r.ts);
        else if (k == "request_id")
            opt_string(r.request_id);
        else if (k == "key_id")
            opt_string(r.key_id);
        else if (k == "model")
            opt_string(r.model);
        else if (k == "provider")
            opt_string(r.provider);
        else if (k == "upstream_model")
            opt_string(r.upstream_model);
        else if (k == "usage_source")
            opt_string(r.usage_source);
        else if (k == "error")
            opt_string(r.error);
        else if (k == "status") {
            std::int64_t n;
            if (v.get_int64().get(n) == simdjson::SUCCESS)
                r.status = n;
            else
                r.bad.push_back(k);
        } else if (k == "stream") {
            bool b;
            if (v.get_bool().get(b) == simdjson::SUCCESS)
                r.stream = b;
            else
                r.bad.push_back(k);
        } else if (k == "attempts") {
            std::int64_t n;
            if (v.get_int64().get(n) == simdjson::SUCCESS)
                r.attempts = n;
            else
                r.bad.push_back(k);
        } else if (k == "prompt_tokens")
            opt_uint(r.prompt_tokens);
        else if (k == "completion_tokens")
            opt_uint(r.completion_tokens);
        else if (k == "total_tokens")
            opt_uint(r.total_tokens);
        else if (k == "cost_usd")
            opt_double(r.cost_usd);
        else if (k == "latency_ms")
            opt_double(r.latency_ms);
        else if (k == "ttft_ms")
            opt_double(r.ttft_ms);
    }
    return r;
}

std::vector<record> read_records(const std::filesystem::path& jsonl) {
    std::vector<record> out;
    std::istringstream in(read_file(jsonl));
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.push_back(parse_record(line));
    return out;
}

std::vector<record> with_id(const std::vector<record>& all, const std::string& id) {
    std::vector<record> out;
    for (const auto& r : all)
        if (r.request_id == id) out.push_back(r);
    return out;
}

// What every record must satisfy whatever the request was.
void check_shape(const record& r) {
    BOOST_TEST_CONTEXT("record: " << r.line) {
        BOOST_TEST(r.keys == spec_keys, boost::test_tools::per_element());
        BOOST_TEST(r.bad.empty());
        static const std::regex ts_re(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z)");
        BOOST_TEST(std::regex_match(str(r.ts), ts_re));
        BOOST_TEST((r.usage_source == "upstream" || r.usage_source == "estimated"));
        BOOST_TEST(r.latency_ms.has_value());
        if (r.latency_ms) BOOST_TEST(*r.latency_ms >= 0.0);
        if (r.prompt_tokens && r.completion_tokens)
            BOOST_TEST(num(r.total_tokens) ==
                       static_cast<std::int64_t>(*r.prompt_tokens + *r.completion_tokens));
    }
}

// cost_usd = prompt × input price + completion × output price (per million tokens).
void check_cost(const record& r, double in, double out) {
    BOOST_TEST_CONTEXT("record: " << r.line) {
        BOOST_REQUIRE(r.cost_usd.has_value());
        const double expected = (static_cast<double>(r.prompt_tokens.value_or(0)) * in +
                                 static_cast<double>(r.completion_tokens.value_or(0)) * out) /
                                1e6;
        BOOST_TEST(std::fabs(*r.cost_usd - expected) <= 1e-15 + 1e-12 * expected);
    }
}

}  // namespace tollgate::test
