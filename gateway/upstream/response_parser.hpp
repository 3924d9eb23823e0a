#pragma once
// An HTTP/1.1 response parser (Beast's basic_parser) that keeps only what the relay
// needs from the head and hands body bytes, de-chunked, to the caller as they are
// parsed: no body container, no copy of the fields.
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

    response_parser() = default;

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
        std::size_t used = put(input, ec);
        // The head of a chunked answer ended inside `input`: the chunks after it are ours.
        if (chunked_ && !ec && used < input.size())
            used += put_chunks(data + used, input.size() - used, ec);
        return used;
    }

    // Beast's, with the chunked body's state where this parser de-chunks.
    bool is_done() const noexcept {
        return chunked_ ? chunk_ == chunk_state::done : basic_parser::is_done();
    }
    bool need_eof() const noexcept { return !chunked_ && basic_parser::need_eof(); }
    void body_limit(boost::optional<std::uint64_t> limit) noexcept {
        limit_ = limit;
        basic_parser::body_limit(limit);
    }

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
