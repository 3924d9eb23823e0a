// Fuzzes the client request path of server::session without sockets: raw bytes -> the
// session's own sans-io request_reader (gateway/server/request_reader.hpp: the head
// gathered whole and checked for obs-fold, Beast's request_parser<string_body>, eager,
// header limit 64 KiB as configured by default, body limit 1 MiB), fed as the session feeds
// it -> for a complete POST to /v1/chat/completions, /v1/messages or /v1/embeddings, the
// body parser -> splice_body for an upstream model. A "read" appends the next piece of the
// input to the buffer; the session's code around the reader is only its socket reads and
// time limits.
//
// Invariants checked (besides ASan/UBSan):
//  - the reader's own parser for common heads and Beast's parser read every input to the
//    same outcome (request, refusal, keep-alive, Content-Length, what is left);
//  - a request is accepted whether its bytes arrive in one read, in small pieces (1 byte
//    for short inputs, else data-derived), or in two reads cut just before the head's
//    final CRLF - or in none of these; when accepted it is the same request (method,
//    target, version, fields, body, and the bytes left for the next request);
//  - a complete request's body is at most the body limit and, with Content-Length, exactly
//    that long; no request smuggles past the fold check;
//  - an accepted body passes fuzz/splice_check.hpp.

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_common.hpp"
#include "fuzz/splice_check.hpp"
#include "gateway/core/body_parser.hpp"
#include "gateway/server/request_reader.hpp"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using boost::system::error_code;
using namespace tollgate;
using server::head_has_obs_fold;
using server::request_reader;

constexpr std::size_t max_header_bytes = 64u << 10;  // config default
constexpr std::size_t max_request_bytes = 1u << 20;  // the brief's 1 MiB, below the default

struct outcome {
    enum kind { incomplete, error, done } k = incomplete;
    error_code ec;
    std::string method, target, fields, body;
    unsigned version = 0;
    bool keep_alive = false, chunked = false;
    std::optional<std::uint64_t> content_length;
    bool operator==(const outcome& o) const {
        return k == o.k && ec == o.ec && method == o.method && target == o.target &&
               fields == o.fields && body == o.body && version == o.version &&
               keep_alive == o.keep_alive && chunked == o.chunked;
    }
};

std::string describe(const outcome& o) {
    static constexpr const char* kinds[] = {"incomplete", "error", "done"};
    std::string s = kinds[o.k];
    if (o.k == outcome::error) s += " (" + o.ec.message() + ")";
    if (o.k == outcome::done)
        s += " " + o.method + " " + o.target + " v" + std::to_string(o.version) + " body " +
             std::to_string(o.body.size()) + " bytes";
    return s;
}

// The bytes of `input`, read in pieces ending at `cuts` (sorted) and at the end.
class reader {
  public:
    reader(std::string_view input, std::vector<std::size_t> cuts)
        : input_(input), cuts_(std::move(cuts)) {}
    bool read(std::string& buf) {
        if (at_ >= input_.size()) return false;
        std::size_t end = input_.size();
        for (std::size_t c : cuts_)
            if (c > at_) {
                end = std::min(c, end);
                break;
            }
        buf.append(input_.substr(at_, end - at_));
        at_ = end;
        return true;
    }

  private:
    std::string_view input_;
    std::vector<std::size_t> cuts_;
    std::size_t at_ = 0;
};

// session::run's head and body loops for the first request on a connection.
outcome run_session(std::string_view input, std::vector<std::size_t> cuts, std::string& rest,
                    bool fast_heads = true) {
    outcome o;
    reader in(input, std::move(cuts));
    std::string buf;
    if (!in.read(buf)) return o;

    // As session.cpp: the head until it is whole, then the body.
    request_reader rr(max_header_bytes, max_request_bytes, fast_heads);
    error_code ec;
    for (;;) {
        std::size_t used = 0;
        const auto st = rr.head(buf, used);
        buf.erase(0, used);
        if (st == request_reader::step::failed) ec = rr.error();
        if (st != request_reader::step::read_more) break;
        if (!in.read(buf)) {
            ec = asio::error::eof;
            break;
        }
    }
    if (ec == asio::error::eof) return o;  // client gone: nothing to answer
    if (ec) {
        o.k = outcome::error;
        o.ec = ec;
        return o;
    }

    auto& req = rr.request();
    // What the session reads from the head before the body.
    (void)req.target().starts_with("/v1/messages");
    (void)server::valid_request_id(req["x-request-id"]);
    (void)req.keep_alive();

    if (!rr.body_done()) {
        (void)beast::iequals(req["expect"], "100-continue");
        for (;;) {
            std::size_t used = 0;
            const auto st = rr.body(buf, used);
            buf.erase(0, used);
            if (st == request_reader::step::failed) ec = rr.error();
            if (st != request_reader::step::read_more) break;
            if (!in.read(buf)) {
                ec = asio::error::eof;
                break;
            }
        }
        if (ec == asio::error::eof) return o;
        if (ec) {
            o.k = outcome::error;
            o.ec = ec;
            return o;
        }
    }
    o.k = outcome::done;
    o.method = std::string(req.method_string());
    o.target = std::string(req.target());
    o.version = req.version();
    o.keep_alive = req.keep_alive();
    o.chunked = rr.chunked();
    if (const auto cl = rr.content_length()) o.content_length = *cl;
    req.for_each_field([&](std::string_view name, std::string_view value) {
        o.fields += name;
        o.fields += ": ";
        o.fields += value;
        o.fields += '\n';
    });
    o.body = req.body();
    // What is left for the next (pipelined) request.
    rest = buf;
    std::string more;
    while (in.read(more)) {
    }
    rest += more;
    return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static core::body_parser body_parser;
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    std::string rest_whole;
    const outcome whole = run_session(input, {}, rest_whole);

    // The reader's own head parser (read_head_fast) reads what Beast's parser reads: the
    // same request, the same refusal, the same bytes left for the next request.
    {
        std::string rest_beast;
        const outcome beast_only = run_session(input, {}, rest_beast, false);
        const auto why = [&] {
            return std::string(input) + "\n  fast heads: " + describe(whole) +
                   "\n  Beast only: " + describe(beast_only);
        };
        FUZZ_CHECK(whole == beast_only, why());
        FUZZ_CHECK(whole.content_length == beast_only.content_length, why());
        FUZZ_CHECK(rest_whole == rest_beast, why());
    }

    // A request accepted one way is accepted the other way, identically. Rejections may
    // differ: on a malformed start line Beast fails at once when the whole line is there,
    // but in pieces it waits for the end of the head (and the session's header timeout).
    auto same_as_whole = [&](const std::vector<std::size_t>& cuts) {
        std::string rest;
        const outcome cut = run_session(input, cuts, rest);
        const auto why = [&] {
            return std::string(input) + "\n  in one read: " + describe(whole) +
                   "\n  in pieces:   " + describe(cut);
        };
        // The session rejects obs-fold (RFC 9112 5.2) however the head arrives.
        if (cut.k == outcome::done)
            FUZZ_CHECK(!head_has_obs_fold(input), "obs-fold accepted in pieces: " + why());
        FUZZ_CHECK((whole.k == outcome::done) == (cut.k == outcome::done), why());
        if (whole.k == outcome::done) {
            FUZZ_CHECK(whole == cut, why());
            FUZZ_CHECK(rest_whole == rest, why());
        }
    };
    // 1. Small reads: 1 byte each for short inputs, else data-derived pieces.
    std::vector<std::size_t> cuts;
    if (size <= 256) {
        for (std::size_t i = 1; i < size; ++i) cuts.push_back(i);
    } else {
        fuzz::rng g{fuzz::hash(input) | 1};
        const std::size_t n = 1 + g.below(16);
        for (std::size_t i = 0; i < n; ++i) cuts.push_back(1 + g.below(size));
        std::sort(cuts.begin(), cuts.end());
    }
    same_as_whole(cuts);
    // 2. Two reads: the head but its final CRLF, then the rest (a client's two segments).
    if (const auto eoh = input.find("\r\n\r\n"); eoh != std::string_view::npos)
        same_as_whole({eoh + 2});

    if (whole.k != outcome::done) return 0;
    FUZZ_CHECK(whole.body.size() <= max_request_bytes, input);
    if (whole.content_length) FUZZ_CHECK(whole.body.size() == *whole.content_length, input);
    FUZZ_CHECK(!(whole.chunked && whole.content_length), input);
    FUZZ_CHECK(!head_has_obs_fold(input), input);

    // The session's routes: exact paths, query string ignored.
    const std::string_view target = whole.target;
    const std::string_view path = target.substr(0, target.find('?'));
    core::endpoint ep{};
    const auto verb = http::string_to_verb(whole.method);
    if (server::classify(verb, path, ep) != server::route::api || verb != http::verb::post ||
        ep == core::endpoint::responses)
        return 0;

    core::request_body req;
    if (body_parser.parse(ep, whole.body, req)) return 0;
    const std::string_view upstream =
        fuzz::model_names[fuzz::hash(whole.body) % (std::size(fuzz::model_names) - 1)];
    fuzz::check_splice(body_parser, ep, whole.body, req, upstream, true);
    return 0;
}
