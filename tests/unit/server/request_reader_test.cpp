// The sans-io request reader (gateway/server/request_reader.hpp): requests fed whole and in
// pieces of every size, the framing it refuses, the limits, and what it leaves behind for
// a pipelined request.
#define BOOST_TEST_MODULE request_reader
#include <boost/beast/http/error.hpp>
#include <boost/test/unit_test.hpp>

#include <string>
#include <string_view>

#include "gateway/server/request_reader.hpp"

using namespace tollgate::server;
namespace http = boost::beast::http;

namespace {

struct result {
    request_reader::step last = request_reader::step::read_more;
    boost::system::error_code ec;
    std::string method, target, body, rest;
    int reads = 0;
};

// Feeds `input` in pieces of `piece` bytes (0: all at once) as the session does: read
// only when the reader asks, drop from the front what it consumed.
result feed(std::string_view input, std::size_t piece, std::size_t max_header = 1024,
            std::size_t max_body = 4096) {
    request_reader rr(max_header, max_body);
    result r;
    std::string buf;
    std::size_t at = 0;
    const auto read = [&] {
        if (at >= input.size()) return false;
        const std::size_t n = piece ? std::min(piece, input.size() - at) : input.size() - at;
        buf.append(input.substr(at, n));
        at += n;
        ++r.reads;
        return true;
    };
    // Runs one phase (head or body) as the session does: until it stops asking for more.
    // False when the input ran out first or the phase failed.
    const auto phase = [&](auto&& step) {
        for (;;) {
            std::size_t used = 0;
            r.last = step(used);
            buf.erase(0, used);
            if (r.last != request_reader::step::read_more) break;
            if (!read()) return false;
        }
        if (r.last != request_reader::step::failed) return true;
        r.ec = rr.error();
        return false;
    };
    read();
    if (!phase([&](std::size_t& used) { return rr.head(buf, used); })) return r;
    if (rr.body_done())
        r.last = request_reader::step::done;
    else if (!phase([&](std::size_t& used) { return rr.body(buf, used); }))
        return r;
    r.method = std::string(rr.request().method_string());
    r.target = std::string(rr.request().target());
    r.body = rr.request().body();
    r.rest = buf + std::string(input.substr(at));
    return r;
}

const std::string post =
    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{\"a\":\"bcd\"}";
const std::string chunked =
    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5\r\n{\"a\":\r\n6\r\n\"bcd\"}\r\n0\r\n\r\n";

}  // namespace

BOOST_AUTO_TEST_CASE(a_request_reads_the_same_in_pieces_of_every_size) {
    for (const std::string& input : {post, chunked}) {
        for (std::size_t piece : {0, 1, 2, 3, 5, 7, 16, 64}) {
            BOOST_TEST_CONTEXT("piece " << piece << " of " << input) {
                const auto r = feed(input + "GET /healthz HTTP/1.1\r\n\r\n", piece);
                BOOST_TEST_REQUIRE((r.last == request_reader::step::done));
                BOOST_TEST(r.method == "POST");
                BOOST_TEST(r.target == "/v1/chat/completions");
                BOOST_TEST(r.body == R"({"a":"bcd"})");
                // The next request is left for the next reader, byte for byte.
                BOOST_TEST(r.rest == "GET /healthz HTTP/1.1\r\n\r\n");
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(a_request_without_a_body_is_done_with_its_head) {
    const auto r = feed("GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", 1);
    BOOST_TEST((r.last == request_reader::step::done));
    BOOST_TEST(r.method == "GET");
    BOOST_TEST(r.rest.empty());
}

BOOST_AUTO_TEST_CASE(an_unfinished_request_asks_for_more) {
    BOOST_TEST((feed("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", 4).last ==
                request_reader::step::read_more));
    BOOST_TEST((feed(post.substr(0, post.size() - 2), 0).last == request_reader::step::read_more));
}

BOOST_AUTO_TEST_CASE(obs_fold_is_refused_however_the_head_arrives) {
    const std::string folded =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\nContent-Length: "
        "0\r\n\r\n";
    for (std::size_t piece : {0, 1, 9}) {
        const auto r = feed(folded, piece);
        BOOST_TEST((r.last == request_reader::step::failed));
        BOOST_TEST((r.ec == http::error::bad_field));
        BOOST_TEST((read_error(r.ec) == tollgate::core::errc::bad_framing));
    }
}

BOOST_AUTO_TEST_CASE(smuggling_shapes_are_refused) {
    for (const std::string head : {
             "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
             "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
             "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
             "POST / HTTP/1.1\nHost: x\n\n",  // bare LF
         }) {
        BOOST_TEST_CONTEXT(head) {
            const auto r = feed(head + "abc", 0);
            BOOST_TEST((r.last == request_reader::step::failed));
            BOOST_TEST((read_error(r.ec) == tollgate::core::errc::bad_framing));
        }
    }
}

BOOST_AUTO_TEST_CASE(the_limits_hold) {
    // A head past max_header_bytes, whole or never ending.
    const std::string big = "GET / HTTP/1.1\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
    for (std::size_t piece : {0, 100}) {
        const auto r = feed(big, piece);
        BOOST_TEST((r.last == request_reader::step::failed));
        BOOST_TEST((read_error(r.ec) == tollgate::core::errc::headers_too_large));
    }
    // A body past max_request_bytes, by Content-Length or by chunks.
    const auto cl =
        feed("POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'a'), 0);
    BOOST_TEST((read_error(cl.ec) == tollgate::core::errc::request_too_large));
    std::string chunks = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 5; ++i) chunks += "3e8\r\n" + std::string(1000, 'b') + "\r\n";
    const auto ch = feed(chunks + "0\r\n\r\n", 300);
    BOOST_TEST((read_error(ch.ec) == tollgate::core::errc::request_too_large));
    // A chunk header that never ends.
    const auto endless =
        feed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1" + std::string(70 * 1024, '0'),
             4096);
    BOOST_TEST((endless.last == request_reader::step::failed));
}

BOOST_AUTO_TEST_CASE(request_ids_and_routes) {
    BOOST_TEST(valid_request_id("abc-123_X.y"));
    BOOST_TEST(!valid_request_id(""));
    BOOST_TEST(!valid_request_id("a b"));
    BOOST_TEST(!valid_request_id("a\x7f"));
    BOOST_TEST(!valid_request_id(std::string(201, 'a')));
    tollgate::core::endpoint ep{};
    BOOST_TEST((classify(http::verb::post, "/v1/responses", ep) == route::api));
    BOOST_TEST((ep == tollgate::core::endpoint::responses));
    BOOST_TEST((classify(http::verb::get, "/v1/chat/completions", ep) == route::bad_method));
    BOOST_TEST((classify(http::verb::get, "/v1/chat/completions/", ep) == route::not_found));
    BOOST_TEST((classify(http::verb::get, "/healthz", ep) == route::healthz));
}
