// The sans-io request reader (gateway/server/request_reader.hpp): requests fed whole and in
// pieces of every size, the framing it refuses, the limits, and what it leaves behind for
// a pipelined request.
#define BOOST_TEST_MODULE request_reader
#include <boost/beast/http/error.hpp>
#include <boost/test/unit_test.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "gateway/server/request_reader.hpp"

using namespace tollgate::server;
namespace http = boost::beast::http;

namespace {

struct result {
    request_reader::step last = request_reader::step::read_more;
    boost::system::error_code ec;
    std::string method, target, body, rest, fields;
    unsigned version = 0;
    bool keep_alive = false, chunked = false, read_fast = false;
    boost::optional<std::uint64_t> content_length;
    int reads = 0;
};

// Feeds `input` in pieces of `piece` bytes (0: all at once) as the session does: read
// only when the reader asks, drop from the front what it consumed.
result feed(std::string_view input, std::size_t piece, std::size_t max_header = 1024,
            std::size_t max_body = 4096, bool fast_heads = true) {
    request_reader rr(max_header, max_body, fast_heads);
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
    r.version = rr.request().version();
    r.keep_alive = rr.request().keep_alive();
    r.chunked = rr.chunked();
    r.content_length = rr.content_length();
    r.read_fast = rr.read_fast();
    rr.request().for_each_field([&](std::string_view name, std::string_view value) {
        r.fields.append(name).append("=").append(value).append("|");
    });
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

// After a head that failed before Beast's parser was made (here: an unfinished head past the
// limit, then obs-fold after a request line the fast reader had read), the reader still
// answers safely: no body, nothing chunked, no length, and no request line kept.
BOOST_AUTO_TEST_CASE(a_failed_head_leaves_a_reader_that_answers_safely) {
    for (const std::string& head :
         {"GET / HTTP/1.1\r\nX-Big: " + std::string(2000, 'a'),
          std::string("POST /v1/chat/completions HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n")}) {
        request_reader rr(1024, 4096);
        std::size_t used = 0;
        BOOST_TEST_REQUIRE((rr.head(head, used) == request_reader::step::failed));
        BOOST_TEST(!rr.read_fast());
        BOOST_TEST(!rr.body_done());
        BOOST_TEST(!rr.chunked());
        BOOST_TEST(!rr.content_length());
        BOOST_TEST(rr.request().target().empty());
        BOOST_TEST(rr.request().method_string().empty());
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

// The reader's own parser for common heads (read_head_fast) takes the heads SDKs send and
// reads each as Beast's parser does; every other head, right or wrong, is left to Beast's
// parser and so read or refused as before. fuzz_http_request checks the same on every input.
BOOST_AUTO_TEST_CASE(common_heads_are_read_as_beast_reads_them) {
    const std::string sdk =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept-Encoding: gzip, "
        "deflate\r\nConnection: keep-alive\r\nAccept: application/json\r\nContent-Type: "
        "application/json\r\nUser-Agent: OpenAI/Python 1.99.0\r\nX-Stainless-Lang: "
        "python\r\nAuthorization: Bearer tg-abc\r\nX-Stainless-Retry-Count: 0\r\n"
        "Content-Length: 11\r\n\r\n{\"a\":\"bcd\"}";
    struct head_case {
        std::string input;
        bool fast;  // read without Beast
    };
    const head_case cases[] = {
        {sdk, true},
        {post, true},
        {"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", true},
        {"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}", true},
        {"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}", true},
        {"POST / HTTP/1.1\r\nConnection: CLOSE\r\nContent-Length: 2\r\n\r\n{}", true},
        {"POST / HTTP/1.1\r\nX-A:   spaced  value \t \r\nX-Empty:\r\nContent-Length: 0\r\n\r\n",
         true},
        {"POST /a?b=c%20d HTTP/1.1\r\ncontent-length: 007\r\n\r\n1234567", true},
        {"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", true},
        {"POST / HTTP/1.1\r\nContent-Length: 4096\r\n\r\n" + std::string(4096, 'x'), true},
        // Values and targets past 16 bytes, scanned 16 at a time: HTAB inside, a byte that
        // stops the scan at every offset of a block (below).
        {"POST /v1/chat/completions?a=" + std::string(40, 'q') + " HTTP/1.1\r\nX-Long: " +
             std::string(37, 'v') + "\t" + std::string(20, 'w') + "\r\nContent-Length: 0\r\n\r\n",
         true},
        // Left to Beast's parser.
        {chunked, false},
        {"PUT / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", false},
        {"post / HTTP/1.1\r\n\r\n", false},
        {"POST  / HTTP/1.1\r\n\r\n", false},
        {"POST /caf\xc3\xa9 HTTP/1.1\r\n\r\n", false},
        {"POST / HTTP/2.0\r\n\r\n", false},
        {"POST / HTTP/1.1 \r\n\r\n", false},
        {"POST / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nProxy-Connection: close\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nX-A: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nX-A: a\x01b\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", false},
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", false},
        {"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\na", false},
        {"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\na", false},
        {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", false},  // past the body limit
        {"POST / HTTP/1.1\r\nX-A : b\r\n\r\n", false},
        {"POST / HTTP/1.1\r\n: b\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n", false},  // obs-fold
        {"POST / HTTP/1.1\r\nX-A: b\nX-B: c\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nX-A: b\rX-B: c\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nX-Big: " + std::string(1000, 'a') + "\r\n\r\n", false},
    };
    std::vector<head_case> all(std::begin(cases), std::end(cases));
    for (std::size_t at = 0; at < 40; ++at) {
        for (const char bad : {'\x01', '\x7f', '\x80', '\xff', '\n', '\r'}) {
            std::string value(48, 'v');
            value[at] = bad;
            all.push_back(
                {"POST / HTTP/1.1\r\nX-V: " + value + "\r\nContent-Length: 0\r\n\r\n", false});
            std::string target = "/" + std::string(47, 't');
            target[at + 1] = bad;
            all.push_back({"GET " + target + " HTTP/1.1\r\n\r\n", false});
        }
    }
    for (const auto& c : all) {
        for (std::size_t piece : {0, 1, 7}) {
            BOOST_TEST_CONTEXT("piece " << piece << " of " << c.input) {
                const auto fast = feed(c.input + "GET /next HTTP/1.1\r\n\r\n", piece);
                const auto beast =
                    feed(c.input + "GET /next HTTP/1.1\r\n\r\n", piece, 1024, 4096, false);
                BOOST_TEST(fast.read_fast == c.fast);
                BOOST_TEST(!beast.read_fast);
                BOOST_TEST((fast.last == beast.last));
                BOOST_TEST(fast.ec == beast.ec);
                BOOST_TEST(fast.method == beast.method);
                BOOST_TEST(fast.target == beast.target);
                BOOST_TEST(fast.version == beast.version);
                BOOST_TEST(fast.fields == beast.fields);
                BOOST_TEST(fast.keep_alive == beast.keep_alive);
                BOOST_TEST(fast.chunked == beast.chunked);
                BOOST_TEST((fast.content_length == beast.content_length));
                BOOST_TEST(fast.body == beast.body);
                BOOST_TEST(fast.rest == beast.rest);
            }
        }
    }
    // What the fast reading found, spelled out for the SDK's head.
    const auto r = feed(sdk, 0);
    BOOST_TEST(r.read_fast);
    BOOST_TEST((r.last == request_reader::step::done));
    BOOST_TEST(r.keep_alive);
    BOOST_TEST((r.content_length == boost::optional<std::uint64_t>(11)));
    BOOST_TEST(r.body == R"({"a":"bcd"})");
    BOOST_TEST(r.fields.find("Authorization=Bearer tg-abc|") != std::string::npos);
    const auto spaced = feed("GET / HTTP/1.1\r\nX-A:   spaced  value \t \r\n\r\n", 0);
    BOOST_TEST(spaced.fields == "X-A=spaced  value|");
    const auto http10 = feed("GET / HTTP/1.0\r\n\r\n", 0);
    BOOST_TEST(http10.read_fast);
    BOOST_TEST(!http10.keep_alive);
    BOOST_TEST(http10.version == 10u);
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
