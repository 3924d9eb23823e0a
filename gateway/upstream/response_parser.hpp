#pragma once
// An HTTP/1.1 response parser (Beast's basic_parser) that keeps only what the relay
// needs from the head and hands body bytes, de-chunked, to the caller as they are
// parsed: no body container, no copy of the fields.
//
// The common head is read without Beast (read_own_head): HTTP/1.0 or 1.1, a status of
// 200-599 but 204 and 304, printable ASCII field lines (core/http_fields.hpp), the body
// framed by one Content-Length within the body limit or by Transfer-Encoding: chunked
// alone, Connection only as close or keep-alive, no Upgrade or Proxy-Connection. Its body
// is then taken here too. Any other head (1xx, a body to the close, anything unusual) goes
// to Beast's parser as before. fuzz_response_parser reads answers both ways and requires
// the same outcome. Beast's head parsing cost ~600 instructions a field line, and a
// provider's answer has 15-25 of them.
//
// A chunked body is de-chunked here, not by Beast: an SSE answer is mostly one chunk per
// event, and Beast's chunk parsing (callbacks, extension parsing, a re-scan per element)
// cost ~400 instructions a chunk, this one a memchr and a few compares. The rules are
// RFC 9112's, as strict as Beast's where it matters (CRLF line ends, hex sizes without
// overflow, the body limit over the decoded bytes); a chunk line is at most
// max_chunk_line bytes and the trailer section at most max_trailer bytes.

#include <boost/beast/http/basic_parser.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace tollgate::upstream {

class response_parser final : public boost::beast::http::basic_parser<false> {
  public:
    using error_code = boost::system::error_code;

    // `own_heads` false: every head goes to Beast's parser (the fuzzer compares the two).
    explicit response_parser(bool own_heads = true) noexcept
        : own_(own_heads ? own_state::undecided : own_state::beast) {}

    int status() const noexcept { return status_; }
    bool event_stream() const noexcept { return event_stream_; }
    const std::string& content_type() const noexcept { return content_type_; }
    const std::string& retry_after() const noexcept { return retry_after_; }

    // Body bytes parsed so far and not yet taken.
    std::string& body() noexcept { return body_; }

    static constexpr std::size_t max_chunk_line = 4096;
    static constexpr std::size_t max_trailer = 8192;

    // put() (eager: all the elements `input` holds), with room made first for all the body
    // it can hold (at most its size): one allocation, not a doubling per chunk appended (a
    // burst is ~50 chunks in one put). Returns the bytes used; a partial line is left for
    // the next call, with error::need_more.
    std::size_t put_all(boost::asio::const_buffer input, error_code& ec) {
        body_.reserve(body_.size() + input.size());
        const auto* data = static_cast<const char*>(input.data());
        if (chunked_) return put_chunks(data, input.size(), ec);
        if (own_ == own_state::body) return put_length(data, input.size(), ec);
        if (own_ == own_state::undecided) {
            std::size_t used = 0;
            if (put_own_head(data, input.size(), used, ec)) return used;
        }
        std::size_t used = put(input, ec);
        // A head not yet whole is looked at by Beast as it would be with no reading of our
        // own: it waits too, or reads or refuses what it can already (a head ending in bare
        // LFs, one past its limit), and then the head is its. (Its view of a head that came
        // in pieces depends on the pieces: a head declined later meets the Beast it would
        // have met.)
        if (own_ == own_state::undecided &&
            (used > 0 || (ec && ec != boost::beast::http::error::need_more) ||
             basic_parser::is_header_done()))
            own_ = own_state::beast;
        // The head of a chunked answer ended inside `input`: the chunks after it are ours.
        if (chunked_ && !ec && used < input.size())
            used += put_chunks(data + used, input.size() - used, ec);
        return used;
    }

    // Beast's, with the chunked body's state where this parser de-chunks and the body's
    // where it read the head.
    bool is_done() const noexcept {
        if (chunked_) return chunk_ == chunk_state::done;
        if (own_ == own_state::body) return length_left_ == 0;
        return basic_parser::is_done();
    }
    bool is_header_done() const noexcept {
        return own_ == own_state::body || basic_parser::is_header_done();
    }
    bool keep_alive() const noexcept {
        return own_ == own_state::body ? own_keep_alive_ : basic_parser::keep_alive();
    }
    bool need_eof() const noexcept {
        return !chunked_ && own_ != own_state::body && basic_parser::need_eof();
    }
    void body_limit(boost::optional<std::uint64_t> limit) noexcept {
        limit_ = limit;
        basic_parser::body_limit(limit);
    }
    void header_limit(std::uint32_t limit) noexcept {
        head_limit_ = limit;
        basic_parser::header_limit(limit);
    }
    // True when the head was read here, without Beast's parser.
    bool read_own() const noexcept { return own_ == own_state::body; }

  private:
    using string_view = boost::beast::string_view;

    void on_request_impl(boost::beast::http::verb, string_view, string_view, int,
                         error_code&) override {}
    void on_response_impl(int code, string_view, int, error_code&) override { status_ = code; }
    void on_field_impl(boost::beast::http::field name, string_view, string_view value,
                       error_code&) override;
    void on_header_impl(error_code&) override {
        // A chunked body is ours: Beast stops at the end of the head.
        if (chunked() && !basic_parser::is_done()) {
            chunked_ = true;
            eager(false);
        }
    }
    void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
    std::size_t on_body_impl(string_view body, error_code&) override {
        body_.append(body.data(), body.size());
        return body.size();
    }
    void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code&) override {
        body_.append(body.data(), body.size());
        return body.size();
    }
    void on_finish_impl(error_code&) override {}

    std::size_t put_chunks(const char* data, std::size_t size, error_code& ec);
    bool start_chunk(std::uint64_t size, error_code& ec) noexcept;
    // The head in `data` read here when it is whole and common (then its body's bytes too):
    // true with `used` and `ec` set. False when it is not whole yet, or Beast's from now.
    bool put_own_head(const char* data, std::size_t size, std::size_t& used, error_code& ec);
    bool read_own_head(std::string_view head);
    // A body of Content-Length bytes after a head read here.
    std::size_t put_length(const char* data, std::size_t size, error_code& ec);
    // The fields the relay keeps, from Beast's callback or read_own_head.
    void keep_content_type(std::string_view value);
    void keep_retry_after(std::string_view value);

    // Who reads the head: undecided until it is whole, then this parser (body) or Beast.
    enum class own_state { undecided, body, beast };
    own_state own_;
    bool own_keep_alive_ = false;
    std::uint64_t length_left_ = 0;
    std::uint32_t head_limit_ = 8192;  // Beast's default

    enum class chunk_state { size_line, data, data_end, trailer, done };
    bool chunked_ = false;  // the body is chunked and de-chunked by put_chunks
    chunk_state chunk_ = chunk_state::size_line;
    std::uint64_t chunk_left_ = 0;  // of the current chunk's data
    std::uint64_t decoded_ = 0;     // body bytes so far
    std::size_t trailer_bytes_ = 0;
    boost::optional<std::uint64_t> limit_ = std::uint64_t{8 * 1024 * 1024};  // Beast's default

    int status_ = 0;
    bool event_stream_ = false;
    std::string content_type_;
    std::string retry_after_;
    std::string body_;
};

}  // namespace tollgate::upstream
