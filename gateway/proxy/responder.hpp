#pragma once
// Writes responses to the client: heads serialised by hand into one buffer and sent with
// the body in one gather-write, chunked framing for streams (close-delimited for
// HTTP/1.0 clients). One per client connection; not thread-safe.

#include <boost/asio/awaitable.hpp>

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/core/request_context.hpp"
#include "gateway/net/byte_stream.hpp"

namespace tollgate::proxy {

using boost::system::error_code;

class responder {
  public:
    responder(net::byte_stream& client, std::chrono::milliseconds write_timeout)
        : client_(client), write_timeout_(write_timeout) {}

    // Per request: the client's HTTP version and whether the connection stays open.
    void begin(bool http11, bool keep_alive) noexcept {
        http11_ = http11;
        keep_alive_ = keep_alive;
        chunked_ = false;
        overhead_ms_.reset();
    }
    bool keep_alive() const noexcept { return keep_alive_; }
    void set_close() noexcept { keep_alive_ = false; }
    // Bytes written to the client on this connection so far (heads and framing included).
    std::uint64_t bytes_written() const noexcept { return bytes_written_; }
    // The overhead reported in this response's head (x-tollgate-overhead-ms), if any.
    std::optional<double> overhead_ms() const noexcept { return overhead_ms_; }

    // A complete response. `ctx` supplies x-request-id and the policies' headers.
    boost::asio::awaitable<error_code> send(const core::request_context& ctx, int status,
                                            std::string_view content_type, std::string_view body,
                                            std::optional<double> overhead_ms = {});
    // An error in the shape of the request's endpoint (OpenAI, or Anthropic on /v1/messages).
    boost::asio::awaitable<error_code> send_error(const core::request_context& ctx, core::errc e,
                                                  std::string_view message = {},
                                                  std::optional<double> overhead_ms = {});
    // The error body for ctx's endpoint.
    static std::string error_body(const core::request_context& ctx, core::errc e,
                                  std::string_view message);

    // Streams: the head, then pieces, then the end (with `last`, the final piece, in the
    // same write).
    boost::asio::awaitable<error_code> start_stream(const core::request_context& ctx, int status,
                                                    std::string_view content_type,
                                                    std::string_view first_piece,
                                                    std::optional<double> overhead_ms = {});
    boost::asio::awaitable<error_code> stream_piece(std::string_view piece);
    // A whole stream in one write (it arrived with its head): the head, `body`, the end.
    boost::asio::awaitable<error_code> whole_stream(const core::request_context& ctx, int status,
                                                    std::string_view content_type,
                                                    std::string_view body,
                                                    std::optional<double> overhead_ms = {});
    boost::asio::awaitable<error_code> end_stream(std::string_view last = {});

    // send() and stream_piece() done at once, without a coroutine, when the socket takes
    // the whole write (the usual case): its error, or nullopt when the rest must go by
    // `co_await write_rest()` before anything else is written (what was handed in must
    // live until then). A coroutine costs ~180 instructions a call; a write went through
    // three.
    std::optional<error_code> send_now(const core::request_context& ctx, int status,
                                       std::string_view content_type, std::string_view body,
                                       std::optional<double> overhead_ms = {});
    std::optional<error_code> stream_piece_now(std::string_view piece);
    boost::asio::awaitable<error_code> write_rest();

  private:
    // The head and the first piece (chunked: with its size line), and with `last` the end
    // of the body, in one write; the head's buffer is released after it.
    boost::asio::awaitable<error_code> head_with(const core::request_context& ctx, int status,
                                                 std::string_view content_type,
                                                 std::string_view piece,
                                                 std::optional<double> overhead_ms, bool last);
    void render_head(const core::request_context& ctx, int status, std::string_view content_type,
                     std::optional<std::size_t> content_length, std::optional<double> overhead_ms);
    boost::asio::awaitable<error_code> write(std::string_view a, std::string_view b = {},
                                             std::string_view c = {});
    // write() done at once (as send_now): the pieces are kept for write_rest().
    std::optional<error_code> write_now(std::string_view a, std::string_view b = {},
                                        std::string_view c = {}, bool a_is_size_line = false);

    net::byte_stream& client_;
    std::chrono::milliseconds write_timeout_;
    bool http11_ = true, keep_alive_ = true, chunked_ = false;
    std::uint64_t bytes_written_ = 0;
    // A write_now the socket took only part of: its pieces and how much went, for
    // write_rest(). Made only then (a connection holds no room for it otherwise: 10,000
    // open streams are 10,000 responders); a chunk size line among the pieces is copied
    // into it, as the caller's is gone by then.
    struct pending_write {
        std::array<boost::asio::const_buffer, 3> pieces{};
        std::size_t count = 0, sent = 0;
        char size_line[24];
    };
    std::unique_ptr<pending_write> pending_;
    std::optional<double> overhead_ms_;
    std::string head_;
};

}  // namespace tollgate::proxy
