#define BOOST_TEST_MODULE resp
#include <boost/test/unit_test.hpp>

#include "gateway/state/redis_client.hpp"
#include "gateway/state/resp.hpp"

using tollgate::state::append_command;
using tollgate::state::parse_redis_url;
using tollgate::state::resp_parser;
using tollgate::state::resp_value;

namespace {

// Feeds `bytes` `step` bytes at a time; returns the replies, or throws on a protocol error.
std::vector<resp_value> parse(const std::string& bytes, std::size_t step = 0) {
    resp_parser p;
    std::vector<resp_value> out;
    if (step == 0) step = bytes.size() ? bytes.size() : 1;
    for (std::size_t at = 0; at < bytes.size(); at += step) {
        std::string_view in(bytes.data() + at, std::min(step, bytes.size() - at));
        for (;;) {
            const auto st = p.feed(in);
            if (st == resp_parser::status::error) throw std::runtime_error("protocol error");
            if (st == resp_parser::status::more) break;
            out.push_back(p.take());
        }
    }
    return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(commands_are_arrays_of_bulk_strings) {
    std::string out;
    append_command(out, {"EVALSHA", "ab", "0", std::string("a\r\nb\0c", 6)});
    static const char expected[] =
        "*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n0\r\n$6\r\na\r\nb\0c\r\n";
    BOOST_TEST(out == std::string(expected, sizeof expected - 1));
}

BOOST_AUTO_TEST_CASE(every_reply_kind_whole_and_byte_by_byte) {
    const std::string bytes =
        "+OK\r\n-NOSCRIPT No matching script\r\n:-42\r\n$5\r\nhe\r\no\r\n$-1\r\n*0\r\n"
        "*3\r\n:1\r\n*2\r\n$1\r\na\r\n$0\r\n\r\n$3\r\nend\r\n";
    for (std::size_t step : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{7}}) {
        const auto r = parse(bytes, step);
        BOOST_TEST_REQUIRE(r.size() == 7u);
        BOOST_TEST((r[0].type == resp_value::kind::simple && r[0].str == "OK"));
        BOOST_TEST(r[1].is_error());
        BOOST_TEST(r[1].str.starts_with("NOSCRIPT"));
        BOOST_TEST(r[2].as_int().value() == -42);
        BOOST_TEST(r[3].str == "he\r\no");  // binary-safe: the length counts, not CRLF
        BOOST_TEST((r[4].type == resp_value::kind::nil));
        BOOST_TEST((r[5].type == resp_value::kind::array && r[5].elements.empty()));
        BOOST_TEST_REQUIRE(r[6].elements.size() == 3u);
        BOOST_TEST(r[6].elements[1].elements[0].str == "a");
        BOOST_TEST(r[6].elements[1].elements[1].str == "");
        BOOST_TEST(r[6].elements[2].str == "end");
    }
}

BOOST_AUTO_TEST_CASE(bad_input_is_a_protocol_error_not_an_allocation) {
    for (const std::string bad :
         {"?x\r\n", ":12a\r\n", "$99999999999\r\n", "$3\r\nabcXY", "+OK\n", "*-2\r\n",
          "*9\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"})
        BOOST_CHECK_THROW(parse(bad), std::runtime_error);
    // A line without its end is waiting, not an error, up to a bound.
    BOOST_TEST(parse("+OK").empty());
    BOOST_CHECK_THROW(parse("+" + std::string(70000, 'x')), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(bulk_numbers_read_as_integers) {
    const auto r = parse("$3\r\n120\r\n+7\r\n$2\r\nx1\r\n");
    BOOST_TEST(r[0].as_int().value() == 120);
    BOOST_TEST(r[1].as_int().value() == 7);
    BOOST_TEST(!r[2].as_int().has_value());
}

BOOST_AUTO_TEST_CASE(redis_urls) {
    auto e = parse_redis_url("redis://127.0.0.1:6380/2");
    BOOST_TEST(e.host == "127.0.0.1");
    BOOST_TEST(e.port == 6380);
    BOOST_TEST(e.db == 2u);
    BOOST_TEST(!e.tls);
    BOOST_TEST(e.password.empty());
    e = parse_redis_url("rediss://app:p%40ss%3Aw0rd@redis.internal");
    BOOST_TEST(e.tls);
    BOOST_TEST(e.user == "app");
    BOOST_TEST(e.password == "p@ss:w0rd");
    BOOST_TEST(e.port == 6379);
    BOOST_TEST(e.redacted() == "rediss://redis.internal:6379/0");
    e = parse_redis_url("redis://:secret@[::1]:7000");
    BOOST_TEST(e.host == "::1");
    BOOST_TEST(e.password == "secret");
    BOOST_TEST(e.redacted().find("secret") == std::string::npos);
    for (const char* bad : {"http://x", "redis://", "redis://h:0", "redis://h:99999", "redis://h/x",
                            "redis://:pw@h:port"}) {
        try {
            parse_redis_url(bad);
            BOOST_ERROR("accepted " << bad);
        } catch (const std::invalid_argument& ex) {
            BOOST_TEST(std::string(ex.what()).find("pw") == std::string::npos);
        }
    }
}
