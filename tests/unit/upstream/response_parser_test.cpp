#define BOOST_TEST_MODULE response_parser
#include <boost/beast/http/error.hpp>
#include <boost/test/unit_test.hpp>

#include <string>
#include <string_view>

#include "gateway/upstream/response_parser.hpp"

using tollgate::upstream::response_parser;
namespace http = boost::beast::http;

namespace {

constexpr std::string_view chunked_head =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

struct result {
    bool done = false;
    boost::system::error_code ec;  // the first error other than need_more
    std::string body;
    std::string left;  // bytes received and not used
};

// Feeds `message` `piece` bytes at a time (0: all at once), the way the exchange's reads
// do: bytes not used are handed in again with the next ones.
result parse(std::string_view message, std::size_t piece, std::uint64_t limit = 1 << 20) {
    result r;
    response_parser p;
    p.eager(true);
    p.body_limit(limit);
    std::string pending;
    std::size_t received = 0;
    while (!p.is_done() && received < message.size()) {
        const std::size_t n =
            piece ? std::min(piece, message.size() - received) : message.size() - received;
        pending.append(message.substr(received, n));
        received += n;
        boost::system::error_code ec;
        pending.erase(0, p.put_all(boost::asio::buffer(pending), ec));
        if (ec && ec != http::error::need_more) {
            r.ec = ec;
            return r;
        }
    }
    r.done = p.is_done();
    r.body = p.body();
    r.left = pending + std::string(message.substr(received));
    return r;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(a_chunked_body_comes_out_whole_however_its_bytes_arrive) {
    const std::string message = std::string(chunked_head) +
                                "1a\r\ndata: {\"a\":\"bbbbbbbbbb\"}\n\n\r\n"
                                "5;name=value;q=\"x y\"\r\nhello\r\n"
                                "000A\r\n0123456789\r\n"
                                "0\r\nX-Trailer: 1\r\n folded\r\n\r\n";
    const std::string want = "data: {\"a\":\"bbbbbbbbbb\"}\n\nhello0123456789";
    for (std::size_t piece = 0; piece <= 17; ++piece) {
        BOOST_TEST_CONTEXT("piece " << piece) {
            const auto r = parse(message, piece);
            BOOST_TEST(!r.ec);
            BOOST_TEST(r.done);
            BOOST_TEST(r.body == want);
            BOOST_TEST(r.left.empty());
        }
    }
}

BOOST_AUTO_TEST_CASE(bytes_past_the_last_chunk_are_left_unused) {
    const auto r = parse(std::string(chunked_head) + "3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200", 0);
    BOOST_TEST(r.done);
    BOOST_TEST(r.body == "abc");
    BOOST_TEST(r.left == "HTTP/1.1 200");
}

BOOST_AUTO_TEST_CASE(a_body_cut_short_is_not_done) {
    for (std::string_view tail : {"3\r\nab", "3\r\nabc", "3\r\nabc\r", "3\r\nabc\r\n0\r\n",
                                  "3\r\nabc\r\n0\r\nX: 1\r\n", "3"}) {
        BOOST_TEST_CONTEXT(tail) {
            const auto r = parse(std::string(chunked_head) + std::string(tail), 1);
            BOOST_TEST(!r.ec);
            BOOST_TEST(!r.done);
        }
    }
}

BOOST_AUTO_TEST_CASE(malformed_chunks_are_refused) {
    const std::pair<std::string_view, http::error> cases[] = {
        {"x\r\nabc\r\n", http::error::bad_chunk},                  // no size
        {"3\nabc\r\n", http::error::bad_line_ending},              // LF alone
        {"3\r\nabcd\r\n", http::error::bad_chunk},                 // data longer than its size
        {"3 x\r\nabc\r\n", http::error::bad_chunk_extension},      // no ';' before it
        {"3;a\x01\r\nabc\r\n", http::error::bad_chunk_extension},  // a control character
        {"11111111111111111\r\n", http::error::bad_chunk},         // more than 64 bits
        {"0\r\nno colon\r\n\r\n", http::error::bad_field},         // a trailer without ':'
    };
    for (const auto& [tail, want] : cases) {
        BOOST_TEST_CONTEXT(tail) {
            for (std::size_t piece : {0, 1, 3}) {
                const auto r = parse(std::string(chunked_head) + std::string(tail), piece);
                BOOST_TEST(r.ec.message() == boost::system::error_code(want).message());
                BOOST_TEST(!r.done);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(the_limits_hold) {
    // The body limit counts the decoded bytes of every chunk.
    auto r =
        parse(std::string(chunked_head) + "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n", 0, 10);
    BOOST_TEST(r.ec.message() == boost::system::error_code(http::error::body_limit).message());
    r = parse(std::string(chunked_head) + "8\r\n12345678\r\n2\r\n12\r\n0\r\n\r\n", 0, 10);
    BOOST_TEST(r.done);
    // A chunk line, or a trailer section, that goes on without end.
    r = parse(std::string(chunked_head) + "3;" + std::string(response_parser::max_chunk_line, 'x') +
                  "\r\n",
              512);
    BOOST_TEST(r.ec.message() == boost::system::error_code(http::error::bad_chunk).message());
    r = parse(std::string(chunked_head) + "0\r\n" +
                  "X: " + std::string(response_parser::max_trailer, 'x') + "\r\n\r\n",
              512);
    BOOST_TEST(r.ec.message() == boost::system::error_code(http::error::header_limit).message());
}

BOOST_AUTO_TEST_CASE(other_bodies_stay_with_beast) {
    auto r = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 2);
    BOOST_TEST(r.done);
    BOOST_TEST(r.body == "hello");
    r = parse("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", 0);
    BOOST_TEST(r.done);
    BOOST_TEST(r.body.empty());
}

BOOST_AUTO_TEST_SUITE_END()
