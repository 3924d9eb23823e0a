#include "gateway/proxy/responder.hpp"

#include <cstring>

#include "gateway/core/json_text.hpp"

#include <boost/beast/http/status.hpp>

#include <array>
#include <charconv>

namespace tollgate::proxy {

namespace asio = boost::asio;
namespace http = boost::beast::http;

void responder::render_head(const core::request_context& ctx, int status,
                            std::string_view content_type,
                            std::optional<std::size_t> content_length,
                            std::optional<double> overhead_ms) {
    head_.clear();
    head_ += "HTTP/1.1 ";
    head_ += std::to_string(status);
    head_ += ' ';
    const auto reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
    head_.append(reason.data(), reason.size());
    head_ += "\r\ncontent-type: ";
    head_ += content_type;
    head_ += "\r\n";
    if (!ctx.request_id.empty()) {
        head_ += "x-request-id: ";
        head_ += ctx.request_id;
        head_ += "\r\n";
    }
    head_ += ctx.response_headers.text();
    overhead_ms_ = overhead_ms;
    if (overhead_ms) {
        head_ += "x-tollgate-overhead-ms: ";
        core::json_text::append_fixed(head_, *overhead_ms, 3);
        head_ += "\r\n";
    }
    if (content_length) {
        head_ += "content-length: ";
        core::json_text::append_uint(head_, *content_length);
        head_ += "\r\n";
    } else if (http11_) {
        head_ += "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n";
        chunked_ = true;
    } else {
        head_ += "cache-control: no-cache\r\n";
        keep_alive_ = false;  // the body ends when the connection does
    }
    if (!keep_alive_)
        head_ += "connection: close\r\n";
    else if (!http11_)
        head_ += "connection: keep-alive\r\n";
    head_ += "\r\n";
}

std::optional<error_code> responder::write_now(std::string_view a, std::string_view b,
                                               std::string_view c, bool a_is_size_line) {
    const std::array<asio::const_buffer, 3> pieces{asio::buffer(a.data(), a.size()),
                                                   asio::buffer(b.data(), b.size()),
                                                   asio::buffer(c.data(), c.size())};
    const std::size_t count = c.empty() ? (b.empty() ? 1 : 2) : 3;
    const std::size_t total = a.size() + b.size() + c.size();
    bytes_written_ += total;
    std::size_t sent = 0;
    if (const auto ec = client_.write_now({pieces.data(), count}, sent)) return ec;
    if (sent == total) return error_code{};
    if (!pending_) pending_ = std::make_unique<pending_write>();
    pending_->pieces = pieces;
    pending_->count = count;
    pending_->sent = sent;
    if (a_is_size_line) {
        std::memcpy(pending_->size_line, a.data(), a.size());
        pending_->pieces[0] = asio::buffer(pending_->size_line, a.size());
    }
    return std::nullopt;
}

asio::awaitable<error_code> responder::write_rest() {
    // Taken for the write: a later write_now that does not finish makes its own.
    const auto p = std::move(pending_);
    co_return co_await client_.write_rest({p->pieces.data(), p->count}, p->sent, write_timeout_);
}

asio::awaitable<error_code> responder::write(std::string_view a, std::string_view b,
                                             std::string_view c) {
    if (const auto done = write_now(a, b, c)) co_return *done;
    co_return co_await write_rest();
}

std::optional<error_code> responder::send_now(const core::request_context& ctx, int status,
                                              std::string_view content_type, std::string_view body,
                                              std::optional<double> overhead_ms) {
    render_head(ctx, status, content_type, body.size(), overhead_ms);
    return write_now(head_, body);
}

asio::awaitable<error_code> responder::send(const core::request_context& ctx, int status,
                                            std::string_view content_type, std::string_view body,
                                            std::optional<double> overhead_ms) {
    if (const auto done = send_now(ctx, status, content_type, body, overhead_ms)) co_return *done;
    co_return co_await write_rest();
}

std::string responder::error_body(const core::request_context& ctx, core::errc e,
                                  std::string_view message) {
    return ctx.ep == core::endpoint::messages ? core::anthropic_error_body(e, message)
                                              : core::openai_error_body(e, message);
}

asio::awaitable<error_code> responder::send_error(const core::request_context& ctx, core::errc e,
                                                  std::string_view message,
                                                  std::optional<double> overhead_ms) {
    const std::string body = error_body(ctx, e, message);
    co_return co_await send(ctx, core::describe(e).status, "application/json", body, overhead_ms);
}

namespace {

// A chunk's size line: its size in hex, then CRLF.
struct size_line {
    explicit size_line(std::size_t n) noexcept {
        auto [p, ec] = std::to_chars(buf, buf + 16, n, 16);
        *p++ = '\r';
        *p++ = '\n';
        len = static_cast<std::size_t>(p - buf);
    }
    std::string_view view() const noexcept { return {buf, len}; }
    char buf[24];
    std::size_t len;
};

}  // namespace

asio::awaitable<error_code> responder::head_with(const core::request_context& ctx, int status,
                                                 std::string_view content_type,
                                                 std::string_view piece,
                                                 std::optional<double> overhead_ms, bool last) {
    render_head(ctx, status, content_type, std::nullopt, overhead_ms);
    // A stream's head is written once; its buffer is not kept for the stream's lifetime.
    struct release {
        std::string& s;
        ~release() { std::string().swap(s); }
    } released{head_};
    if (!chunked_) co_return co_await write(head_, piece);
    if (piece.empty()) co_return co_await write(head_, last ? "0\r\n\r\n" : "");
    head_ += size_line(piece.size()).view();
    co_return co_await write(head_, piece, last ? "\r\n0\r\n\r\n" : "\r\n");
}

asio::awaitable<error_code> responder::start_stream(const core::request_context& ctx, int status,
                                                    std::string_view content_type,
                                                    std::string_view first_piece,
                                                    std::optional<double> overhead_ms) {
    co_return co_await head_with(ctx, status, content_type, first_piece, overhead_ms, false);
}

asio::awaitable<error_code> responder::whole_stream(const core::request_context& ctx, int status,
                                                    std::string_view content_type,
                                                    std::string_view body,
                                                    std::optional<double> overhead_ms) {
    co_return co_await head_with(ctx, status, content_type, body, overhead_ms, true);
}

std::optional<error_code> responder::stream_piece_now(std::string_view piece) {
    // A zero-length chunk would end the response: skip empty pieces.
    if (piece.empty()) return error_code{};
    if (!chunked_) return write_now(piece);
    const size_line size(piece.size());
    return write_now(size.view(), piece, "\r\n", /*a_is_size_line=*/true);
}

asio::awaitable<error_code> responder::stream_piece(std::string_view piece) {
    if (const auto done = stream_piece_now(piece)) co_return *done;
    co_return co_await write_rest();
}

asio::awaitable<error_code> responder::end_stream(std::string_view last) {
    if (!chunked_) co_return last.empty() ? error_code{} : co_await write(last);
    if (last.empty()) co_return co_await write("0\r\n\r\n");
    const size_line size(last.size());
    co_return co_await write(size.view(), last, "\r\n0\r\n\r\n");
}

}  // namespace tollgate::proxy
