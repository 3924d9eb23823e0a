#pragma once
// One request/response exchange with an upstream on a pooled connection: take a
// connection, send the request, read the head, then the body as a whole or piece by
// piece. Every read has its deadline; a client that leaves is noticed through the
// request's client watch (the upstream connection in use is registered with it, so that
// routing.on_client_disconnect: cancel can cut the wait short). The connection returns
// to the pool only through finish(true) after a complete answer. One per attempt, on the
// request's executor.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <optional>
#include <span>
#include <string>

#include "gateway/core/attempt_error.hpp"
#include "gateway/core/request_context.hpp"
#include "gateway/net/client_watch.hpp"
#include "gateway/upstream/pool.hpp"
#include "gateway/upstream/response_parser.hpp"

namespace tollgate::upstream {

class exchange {
  public:
    using error_code = boost::system::error_code;

    exchange(const config::provider_config& pc, net::client_watch& watch, bool drain) noexcept
        : pc_(pc), watch_(watch), drain_(drain) {}
    exchange(const exchange&) = delete;
    exchange& operator=(const exchange&) = delete;
    ~exchange() { watch_.upstream = nullptr; }

    // Takes a connection from `p`, sends `request` and reads the response head within
    // first_byte_timeout; a kept-alive connection the upstream had closed is replaced by
    // a fresh one once. Sets ctx.forwarded once a connection is held and marks ctx.meter
    // sent once the request is out. With drain, a client that leaves after the request
    // went out does not end the exchange.
    boost::asio::awaitable<core::attempt_error> open(
        pool& p, std::span<const boost::asio::const_buffer> request, core::request_context& ctx);

    // The rest of a non-streamed answer, appended to `body` (bounded by
    // max_response_bytes), each read within idle_timeout. A client that leaves stops the
    // read, or with drain bounds it by `drain_limit`; the caller then sees watch.gone.
    // read_body() when the whole body came with the head (the usual JSON answer), without
    // a coroutine; nullopt when there is more to read.
    std::optional<core::attempt_error> read_body_now(std::string& body);
    boost::asio::awaitable<core::attempt_error> read_body(std::string& body,
                                                          core::clock::duration drain_limit);

    // The next piece of a streamed body, into parser().body(), within `timeout`. A
    // close-delimited body's end is success with parser().is_done(). Reads follow the
    // stream: 4 KiB (64 KiB when the head's read came full), doubled (up to 64 KiB) after
    // a read that filled its buffer, halved after one that brought less than a quarter,
    // so that a burst arrives in few reads (and goes out in as few writes) and a trickle
    // keeps small ones. On plain TCP a stream whose last two reads came within 25 ms keeps
    // the buffer for the next event, for up to 50 ms (one recv an event); other streams
    // wait without one.
    boost::asio::awaitable<error_code> read_piece(core::clock::duration timeout);

    // Ends the exchange: the connection goes back to the pool when `complete` and the
    // upstream keeps it alive with nothing after the answer, else it is closed.
    void finish(bool complete) noexcept;

    response_parser& parser() noexcept { return *parser_; }
    int status() const noexcept { return parser_->status(); }
    // After an event was taken from parser().body(): the read buffer and the parser's
    // body room go back, except on a hot plain-TCP stream, which keeps them for its next
    // event (and gives them back in read_piece when it goes quiet).
    void release_between_events();
    // A buffer given back between events holds at most this (see read_body_piece).
    static constexpr std::size_t idle_buffer = 64;
    core::clock::time_point sent_at() const noexcept { return sent_at_; }
    core::clock::time_point head_at() const noexcept { return head_at_; }

  private:
    boost::asio::awaitable<error_code> read_head(std::size_t& bytes_in);
    void note_read(std::size_t got) noexcept;
    // The read buffer and the parser's (taken) body room go back.
    void shrink_buffer() {
        buf_.shrink_to_fit();
        if (parser_->body().empty()) std::string().swap(parser_->body());
    }
    core::attempt_error head_failure(const error_code& ec) const;

    const config::provider_config& pc_;
    net::client_watch& watch_;
    bool drain_;
    lease conn_;
    std::optional<response_parser> parser_;  // a new one for a fresh connection
    boost::beast::flat_buffer buf_;
    core::clock::time_point sent_at_{};
    core::clock::time_point head_at_{};
    std::size_t stream_read_ = 4 * 1024;  // the next streamed read's size
    // Coarse: the last body read that brought bytes. None at first: the head and the first
    // event often come together, and a stream that then waits (for a slow token, or held
    // by a test's mock) should not hold a buffer for it; two events close together make it
    // hot.
    core::clock::time_point last_data_at_{};
    bool hot_ = false;       // the last two reads came within stream_hot_gap: hold the buffer
    bool streamed_ = false;  // the client asked for a stream
};

// Timeouts of every kind: the stream's deadline (Beast) and a connect's (Asio).
bool is_timeout(const boost::system::error_code& ec) noexcept;

}  // namespace tollgate::upstream
