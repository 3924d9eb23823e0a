// Fuzzes the de-chunking of gateway/upstream/response_parser.cpp against Beast's own
// parser. The input is a chunked body (after a fixed head); its first byte picks how it
// arrives: in pieces of 1..16 bytes or all at once, as the exchange's reads would bring it
// (unused bytes are handed in again with the next piece).
//
// An input whose first byte has its top bit set is instead a whole answer, head included,
// read twice by our parser: with its own reading of common heads, and with every head
// given to Beast's parser. Both must come to the same outcome (done or not, the error,
// the body, the bytes used, status, keep-alive, need_eof, content type, retry-after).
//
// Invariants checked for a chunked body after the fixed head:
//  - when Beast parses the whole message, ours does too, with the same body and the same
//    bytes used, unless one of our own limits (a chunk line of more than max_chunk_line
//    bytes, a trailer section of more than max_trailer) refused it first;
//  - when ours completes, Beast completes with the same body, or refused only what ours
//    passes over without keeping: a chunk extension's or a trailer field's syntax, a
//    framing field in the trailer (on some malformed extensions Beast waits for more
//    instead).

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
    // Our parser's view of the head (whole answers).
    bool head_done = false, keep_alive = false, need_eof = false, event_stream = false;
    int status = 0;
    std::string content_type, retry_after;
    bool operator==(const outcome& o) const {
        return done == o.done && ec == o.ec && body == o.body && used == o.used &&
               head_done == o.head_done && keep_alive == o.keep_alive && need_eof == o.need_eof &&
               event_stream == o.event_stream && status == o.status &&
               content_type == o.content_type && retry_after == o.retry_after;
    }
};

std::string describe(const outcome& o) {
    return std::string(o.done ? "done" : "not done") + " (" + o.ec.message() + "), status " +
           std::to_string(o.status) + ", used " + std::to_string(o.used) + ", body " +
           std::to_string(o.body.size()) + " bytes, keep-alive " + (o.keep_alive ? "yes" : "no") +
           ", need_eof " + (o.need_eof ? "yes" : "no") + ", content-type '" + o.content_type + "'";
}

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

outcome our_parse(std::string_view message, unsigned piece, bool own_heads = true) {
    outcome o;
    tollgate::upstream::response_parser p(own_heads);
    p.header_limit(8192);
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
            break;
        }
    }
    o.head_done = p.is_header_done();
    if (o.head_done) {
        o.status = p.status();
        o.keep_alive = p.keep_alive();
        o.need_eof = p.need_eof();
        o.event_stream = p.event_stream();
        o.content_type = p.content_type();
        o.retry_after = p.retry_after();
    }
    if (o.ec) return o;
    o.done = p.is_done();
    o.body = p.body();
    return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const unsigned piece = data[0] % 17;  // 0: all at once
    if (data[0] & 0x80) {
        const std::string_view answer(reinterpret_cast<const char*>(data) + 1, size - 1);
        const outcome own = our_parse(answer, piece, true);
        const outcome beast_heads = our_parse(answer, piece, false);
        FUZZ_CHECK(own == beast_heads, std::string(answer) + "\n  own heads: " + describe(own) +
                                           "\n  Beast heads: " + describe(beast_heads));
        return 0;
    }
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
        // string), with the whole message in hand. It also reads the trailer's fields as
        // header fields, refusing a Content-Length or Transfer-Encoding there; ours passes
        // the trailer's fields over unread (they frame nothing after the last chunk).
        const bool extension = message.find(';', head.size()) != std::string::npos;
        const bool lenient =
            beast.ec == http::error::bad_chunk_extension || beast.ec == http::error::bad_field ||
            beast.ec == http::error::bad_value || beast.ec == http::error::bad_content_length ||
            beast.ec == http::error::multiple_content_length ||
            beast.ec == http::error::bad_transfer_encoding || (!beast.ec && extension);
        FUZZ_CHECK(beast.done || lenient, message + "\n  beast: " + beast.ec.message());
        if (beast.done) FUZZ_CHECK(ours.body == beast.body, message);
    }
    return 0;
}
