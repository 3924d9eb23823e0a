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
//
// The common head is read without Beast (read_head_fast): GET or POST, HTTP/1.0 or 1.1, a
// target and fields of printable ASCII, at most one Content-Length within the body limit,
// Connection only as close or keep-alive, and no Transfer-Encoding, Upgrade or
// Proxy-Connection. It reads to the same request Beast's parser would (the fuzzer checks
// this, input by input); any other head, right or wrong, goes to Beast's parser as before,
// so every refusal is Beast's. Beast's parser costs about 4,000 instructions a head, most
// of them on rules a typical SDK request never meets.

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/container/small_vector.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/core/errors.hpp"
#include "gateway/core/request_context.hpp"

namespace tollgate::server {

// One request as read: request line, header fields and body. The head's text is copied
// into one string and each field is a pair of offsets into it (Beast's fields allocate
// every field and keep a tree of them); fields are looked up by name, case-insensitively,
// in the order they came.
class http_request final : public core::header_source {
  public:
    boost::beast::http::verb method() const noexcept { return method_; }
    std::string_view method_string() const noexcept { return piece(method_at_); }
    std::string_view target() const noexcept { return piece(target_at_); }
    unsigned version() const noexcept { return version_; }
    bool keep_alive() const noexcept { return keep_alive_; }
    std::string& body() noexcept { return body_; }
    const std::string& body() const noexcept { return body_; }

    // The first field named `name`; empty if there is none.
    std::string_view operator[](std::string_view name) const noexcept { return get(name); }
    std::string_view get(std::string_view name) const noexcept override;
    std::string get_all(std::string_view name) const override;
    std::size_t count(std::string_view name) const noexcept;
    // f(name, value) for every field, in order.
    template <class F>
    void for_each_field(F&& f) const {
        for (const auto& fl : fields_) f(piece(fl.name), piece(fl.value));
    }

  private:
    friend class request_parser;
    friend class request_reader;
    struct span {
        std::uint32_t at = 0, size = 0;
    };
    struct field {
        span name, value;
    };
    std::string_view piece(span s) const noexcept { return {text_.data() + s.at, s.size}; }
    span keep(std::string_view s) {
        const span r{static_cast<std::uint32_t>(text_.size()),
                     static_cast<std::uint32_t>(s.size())};
        text_.append(s.data(), s.size());
        return r;
    }

    std::string text_;  // method, target, then each field's name and value
    boost::container::small_vector<field, 8> fields_;
    boost::beast::http::verb method_ = boost::beast::http::verb::unknown;
    span method_at_, target_at_;
    unsigned version_ = 11;
    bool keep_alive_ = true;
    std::string body_;
};

// Beast's request parsing (its framing rules and limits) into an http_request.
class request_parser final : public boost::beast::http::basic_parser<true> {
  public:
    explicit request_parser(http_request& req) noexcept : req_(req) {}
    http_request& get() noexcept { return req_; }
    // Room for a head of `bytes` (its text is at most that).
    void reserve_head(std::size_t bytes) { req_.text_.reserve(bytes); }

  private:
    using error_code = boost::system::error_code;
    using string_view = boost::beast::string_view;

    void on_request_impl(boost::beast::http::verb method, string_view method_str,
                         string_view target, int version, error_code&) override;
    void on_response_impl(int, string_view, int, error_code&) override {}
    void on_field_impl(boost::beast::http::field, string_view name, string_view value,
                       error_code&) override;
    void on_header_impl(error_code&) override { req_.keep_alive_ = keep_alive(); }
    void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code& ec) override;
    std::size_t on_body_impl(string_view body, error_code&) override {
        req_.body_.append(body.data(), body.size());
        return body.size();
    }
    void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code&) override {
        req_.body_.append(body.data(), body.size());
        return body.size();
    }
    void on_finish_impl(error_code&) override {}

    http_request& req_;
};

class request_reader {
  public:
    enum class step {
        read_more,   // read more bytes into the buffer, then call the same function again
        head_ready,  // head() only: request() has the head; call body() next
        done,        // body() only: request() has the whole request
        failed,      // error() says why
    };

    // `fast_heads` false: every head goes to Beast's parser (the fuzzer compares the two).
    request_reader(std::size_t max_header_bytes, std::size_t max_request_bytes,
                   bool fast_heads = true);
    request_reader(const request_reader&) = delete;
    request_reader& operator=(const request_reader&) = delete;

    // The head, from the bytes buffered so far (`buffered`: the caller's whole buffer).
    // Sets `consumed` to the bytes the caller must drop from the front of its buffer.
    step head(std::string_view buffered, std::size_t& consumed);
    // The body, after head_ready (at once, and after each read that read_more asked for).
    step body(std::string_view buffered, std::size_t& consumed);

    // After a failed head (before Beast's parser was made): no body, none done.
    bool body_done() const { return fast_ ? body_left_ == 0 : parser_ && parser_->is_done(); }
    const boost::system::error_code& error() const noexcept { return ec_; }
    http_request& request() noexcept { return req_; }
    bool chunked() const { return !fast_ && parser_ && parser_->chunked(); }
    boost::optional<std::uint64_t> content_length() const;
    // True when the head was read without Beast's parser (read_head_fast).
    bool read_fast() const noexcept { return fast_; }

    // Read sizes: a request head (and a small body) 4 KiB at a time, so an idle
    // keep-alive connection holds no more than that; body bytes past it 64 KiB at once.
    static constexpr std::size_t head_read_size = 4 * 1024;
    static constexpr std::size_t body_read_size = 64 * 1024;

  private:
    // The whole head (through its empty line) as the common case, into req_; false, with
    // req_ untouched, for anything else.
    bool read_head_fast(std::string_view head);
    // Beast's parser, made on first use (a head read_head_fast left to it).
    request_parser& beast();
    // A fast head's body, Content-Length framed: what `buf` holds of it.
    std::size_t take_body(std::string_view buf);

    http_request req_;
    std::optional<request_parser> parser_;
    std::size_t max_header_bytes_;
    std::size_t max_request_bytes_;
    std::size_t scanned_ = 0;  // where the search for the head's end resumes
    bool fast_heads_;
    bool fast_ = false;                    // the head was read by read_head_fast
    std::optional<std::uint64_t> length_;  // a fast head's Content-Length
    std::uint64_t body_left_ = 0;          // a fast head's body bytes still to come
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
