#pragma once
// An HTTP/1.1 response parser (Beast's basic_parser) that keeps only what the relay
// needs from the head and hands body bytes, de-chunked, to the caller as they are
// parsed: no body container, no copy of the fields.

#include <boost/beast/http/basic_parser.hpp>

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

    // put(), with room made first for all the body `input` can hold (at most its size):
    // one allocation, not a doubling per chunk appended (a burst is ~50 chunks in one put).
    std::size_t put_all(boost::asio::const_buffer input, error_code& ec) {
        body_.reserve(body_.size() + input.size());
        return put(input, ec);
    }

  private:
    using string_view = boost::beast::string_view;

    void on_request_impl(boost::beast::http::verb, string_view, string_view, int,
                         error_code&) override {}
    void on_response_impl(int code, string_view, int, error_code&) override { status_ = code; }
    void on_field_impl(boost::beast::http::field name, string_view, string_view value,
                       error_code&) override;
    void on_header_impl(error_code&) override {}
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

    int status_ = 0;
    bool event_stream_ = false;
    std::string content_type_;
    std::string retry_after_;
    std::string body_;
};

}  // namespace tollgate::upstream
