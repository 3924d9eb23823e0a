#pragma once
// Reading one HTTP/1.1 request from a client connection, without sockets (sans-io): the
// session reads bytes into its buffer and asks the reader what they make; the fuzzer
// (fuzz/fuzz_http_request.cpp) feeds it the same way, so it exercises this code, not a
// copy. The reader owns the framing rules: the head gathered whole (up to
// max_header_bytes), checked for obs-fold (RFC 9112 §5.2), then given to Beast's parser
// in one piece (which refuses CL+TE, differing duplicate Content-Length and bad
// Transfer-Encoding; the reader also refuses a Transfer-Encoding that does not end in
// chunked); the body up to max_request_bytes, Content-Length or chunked; what
// follows the request stays in the caller's buffer for the next one. Time limits are the
// caller's (they need a clock and a socket).

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstddef>
#include <string_view>

#include "gateway/core/errors.hpp"
#include "gateway/core/request_context.hpp"

namespace tollgate::server {

class request_reader {
  public:
    enum class step {
        read_more,   // read more bytes into the buffer, then call the same function again
        head_ready,  // head() only: request() has the head; call body() next
        done,        // body() only: request() has the whole request
        failed,      // error() says why
    };

    request_reader(std::size_t max_header_bytes, std::size_t max_request_bytes);

    // The head, from the bytes buffered so far (`buffered`: the caller's whole buffer).
    // Sets `consumed` to the bytes the caller must drop from the front of its buffer.
    step head(std::string_view buffered, std::size_t& consumed);
    // The body, after head_ready (at once, and after each read that read_more asked for).
    step body(std::string_view buffered, std::size_t& consumed);

    bool body_done() const { return parser_.is_done(); }
    const boost::system::error_code& error() const noexcept { return ec_; }
    boost::beast::http::request<boost::beast::http::string_body>& request() {
        return parser_.get();
    }
    bool chunked() const { return parser_.chunked(); }
    boost::optional<std::uint64_t> content_length() const { return parser_.content_length(); }

    // Read sizes: a request head (and a small body) 4 KiB at a time, so an idle
    // keep-alive connection holds no more than that; body bytes past it 64 KiB at once.
    static constexpr std::size_t head_read_size = 4 * 1024;
    static constexpr std::size_t body_read_size = 64 * 1024;

  private:
    boost::beast::http::request_parser<boost::beast::http::string_body> parser_;
    std::size_t max_header_bytes_;
    std::size_t scanned_ = 0;  // where the search for the head's end resumes
    bool body_started_ = false;
    boost::system::error_code ec_;
};

// The client error for a request that could not be read.
core::errc read_error(const boost::system::error_code& ec);

// RFC 9112 §5.2: obs-fold is refused. True if the head in `head` has a folded line.
bool head_has_obs_fold(std::string_view head);

// An X-Request-Id we may echo back: printable ASCII, no spaces, at most 200 bytes.
bool valid_request_id(std::string_view id);

// The main listener's routes: exact paths (no query string), each with its method.
enum class route { healthz, readyz, api, not_found, bad_method };
route classify(boost::beast::http::verb method, std::string_view path, core::endpoint& ep);

}  // namespace tollgate::server
