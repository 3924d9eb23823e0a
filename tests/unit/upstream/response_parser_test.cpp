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

// What a parser made of `answer` fed `piece` bytes at a time, head included.
struct answer_result {
    result r;
    bool own = false, head_done = false, keep_alive = false, need_eof = false, sse = false;
    int status = 0;
    std::string content_type, retry_after;
};
answer_result parse_answer(std::string_view answer, std::size_t piece, bool own_heads) {
    answer_result a;
    response_parser p(own_heads);
    p.header_limit(8192);
    p.eager(true);
    p.body_limit(4096);
    std::string pending;
    std::size_t received = 0;
    while (!p.is_done() && received < answer.size()) {
        const std::size_t n =
            piece ? std::min(piece, answer.size() - received) : answer.size() - received;
        pending.append(answer.substr(received, n));
        received += n;
        boost::system::error_code ec;
        pending.erase(0, p.put_all(boost::asio::buffer(pending), ec));
        if (ec && ec != http::error::need_more) {
            a.r.ec = ec;
            break;
        }
    }
    a.own = p.read_own();
    a.head_done = p.is_header_done();
    if (a.head_done) {
        a.status = p.status();
        a.keep_alive = p.keep_alive();
        a.need_eof = p.need_eof();
        a.sse = p.event_stream();
        a.content_type = p.content_type();
        a.retry_after = p.retry_after();
    }
    a.r.done = !a.r.ec && p.is_done();
    a.r.body = p.body();
    a.r.left = pending + std::string(answer.substr(received));
    return a;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

// The parser's own reading of common heads (read_own_head) takes the heads providers send
// and reads each answer as it does with every head given to Beast's parser; every other
// head is left to Beast. fuzz_response_parser checks the same on every input.
BOOST_AUTO_TEST_CASE(common_answer_heads_are_read_as_beast_reads_them) {
    const std::string provider =
        "HTTP/1.1 200 OK\r\nDate: Mon, 07 Dec 2026 22:00:00 GMT\r\nContent-Type: "
        "application/json\r\nContent-Length: 11\r\nConnection: keep-alive\r\n"
        "access-control-expose-headers: X-Request-ID\r\nopenai-organization: org-x\r\n"
        "openai-processing-ms: 312\r\nx-ratelimit-limit-requests: 10000\r\n"
        "x-ratelimit-remaining-tokens: 199,000\r\nset-cookie: __cf_bm=a; path=/; HttpOnly; "
        "Secure; SameSite=None\r\nx-request-id: req_1\r\ncf-ray: 8f-LHR\r\n\r\n{\"a\":\"bcd\"}";
    struct answer_case {
        std::string input;
        bool own;  // read without Beast
    };
    const answer_case cases[] = {
        {provider, true},
        {std::string(chunked_head) + "5\r\nhello\r\n0\r\n\r\n", true},
        {"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\ncontent-type: application/json"
         "\r\nContent-Length: 2\r\n\r\n{}",
         true},
        {"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n{}", true},
        {"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", true},
        {"HTTP/1.1 500 \r\nConnection: close\r\nContent-Length: 0\r\n\r\n", true},
        {"HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Type: text/event-stream\r\n"
         "transfer-encoding: Chunked\r\n\r\n0\r\n\r\n",
         true},
        // Left to Beast's parser.
        {"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"to\":\"the close\"}", false},
        {"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false},
        {"HTTP/1.1 304 Not Modified\r\n\r\n", false},
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 200 Ok\xc3\xa9\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n", false},  // past the body limit
        {"HTTP/1.1 200 OK\r\nConnection: keep-alive, Upgrade\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\nContent-Length: 0\n\n", false},
        {"HTTP/1.1 200 OK\r\nX-Big: " + std::string(9000, 'a') + "\r\n\r\n", false},
    };
    for (const auto& c : cases) {
        for (std::size_t piece : {0, 1, 5}) {
            BOOST_TEST_CONTEXT("piece " << piece << " of " << c.input) {
                const auto own = parse_answer(c.input, piece, true);
                const auto beast = parse_answer(c.input, piece, false);
                BOOST_TEST(own.own == c.own);
                BOOST_TEST(!beast.own);
                BOOST_TEST(own.r.done == beast.r.done);
                BOOST_TEST(own.r.ec == beast.r.ec);
                BOOST_TEST(own.r.body == beast.r.body);
                BOOST_TEST(own.r.left == beast.r.left);
                BOOST_TEST(own.head_done == beast.head_done);
                BOOST_TEST(own.status == beast.status);
                BOOST_TEST(own.keep_alive == beast.keep_alive);
                BOOST_TEST(own.need_eof == beast.need_eof);
                BOOST_TEST(own.sse == beast.sse);
                BOOST_TEST(own.content_type == beast.content_type);
                BOOST_TEST(own.retry_after == beast.retry_after);
            }
        }
    }
    const auto p = parse_answer(provider, 0, true);
    BOOST_TEST(p.own);
    BOOST_TEST(p.r.done);
    BOOST_TEST(p.status == 200);
    BOOST_TEST(p.keep_alive);
    BOOST_TEST(p.content_type == "application/json");
    BOOST_TEST(p.r.body == R"({"a":"bcd"})");
}

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
