// Fuzzes the de-chunking of gateway/upstream/response_parser.cpp against Beast's own
// parser. The input is a chunked body (after a fixed head); its first byte picks how it
// arrives: in pieces of 1..16 bytes or all at once, as the exchange's reads would bring it
// (unused bytes are handed in again with the next piece).
//
// Invariants checked:
//  - when Beast parses the whole message, ours does too, with the same body and the same
//    bytes used, unless one of our own limits (a chunk line of more than max_chunk_line
//    bytes, a trailer section of more than max_trailer) refused it first;
//  - when ours completes, Beast completes with the same body, or refused only what ours
//    passes over without keeping: a chunk extension's or a trailer field's syntax (on
//    some malformed extensions Beast waits for more instead).

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <string>
#include <string_view>

#include "fuzz/fuzz_common.hpp"
#include "gateway/upstream/response_parser.hpp"

namespace http = boost::beast::http;

namespace {

constexpr std::string_view head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
constexpr std::uint64_t limit = 1 << 20;

struct outcome {
    bool done = false;
    boost::system::error_code ec;  // the first error other than need_more
    std::string body;
    std::size_t used = 0;  // of the whole message
};

outcome beast_parse(std::string_view message) {
    outcome o;
    http::response_parser<http::string_body> p;
    p.eager(true);
    p.body_limit(limit);
    while (!p.is_done() && o.used < message.size()) {
        boost::system::error_code ec;
        const std::size_t n =
            p.put(boost::asio::buffer(message.data() + o.used, message.size() - o.used), ec);
        o.used += n;
        if (ec == http::error::need_more) break;
        if (ec) {
            o.ec = ec;
            return o;
        }
        if (n == 0) break;
    }
    o.done = p.is_done();
    if (o.done) o.body = p.get().body();
    return o;
}

outcome our_parse(std::string_view message, unsigned piece) {
    outcome o;
    tollgate::upstream::response_parser p;
    p.eager(true);
    p.body_limit(limit);
    std::string pending;  // received and not used yet
    std::size_t received = 0;
    while (!p.is_done()) {
        if (received == message.size()) break;
        const std::size_t n = piece == 0 ? message.size() - received
                                         : std::min<std::size_t>(piece, message.size() - received);
        pending.append(message.substr(received, n));
        received += n;
        boost::system::error_code ec;
        const std::size_t used = p.put_all(boost::asio::buffer(pending), ec);
        FUZZ_CHECK(used <= pending.size(), message);
        pending.erase(0, used);
        o.used += used;
        if (ec && ec != http::error::need_more) {
            o.ec = ec;
            return o;
        }
    }
    o.done = p.is_done();
    o.body = p.body();
    return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const unsigned piece = data[0] % 17;  // 0: all at once
    const std::string message =
        std::string(head) + std::string(reinterpret_cast<const char*>(data) + 1, size - 1);

    const outcome beast = beast_parse(message);
    const outcome ours = our_parse(message, piece);
    const bool our_limit = ours.ec == http::error::header_limit ||
                           (ours.ec == http::error::bad_chunk &&
                            message.size() > tollgate::upstream::response_parser::max_chunk_line);
    if (beast.done && !our_limit) {
        FUZZ_CHECK(ours.done, message);
        FUZZ_CHECK(ours.body == beast.body, message);
        FUZZ_CHECK(ours.used == beast.used, message);
    }
    if (ours.done) {
        // Beast also waits for more on some malformed extensions (an unclosed quoted
        // string), with the whole message in hand.
        const bool extension = message.find(';', head.size()) != std::string::npos;
        const bool lenient = beast.ec == http::error::bad_chunk_extension ||
                             beast.ec == http::error::bad_field ||
                             beast.ec == http::error::bad_value || (!beast.ec && extension);
        FUZZ_CHECK(beast.done || lenient, message + "\n  beast: " + beast.ec.message());
        if (beast.done) FUZZ_CHECK(ours.body == beast.body, message);
    }
    return 0;
}
