#pragma once
// A TCP connection, optionally under TLS, with a deadline on every operation.
// Both the client side (server) and the upstream side use it, so that the relay is one
// piece of code whatever the transports. Not thread-safe: it lives on one worker's
// io_context. At most one read and one write may be pending at a time.

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

namespace tollgate::net {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using duration = std::chrono::steady_clock::duration;

class byte_stream {
  public:
    // An accepted client connection; TLS when `tls` is non-null (then call handshake_server).
    byte_stream(tcp::socket&& socket, asio::ssl::context* tls);
    // An unconnected upstream connection; TLS when `tls` is non-null.
    byte_stream(const asio::any_io_executor& ex, asio::ssl::context* tls);
    ~byte_stream();
    byte_stream(const byte_stream&) = delete;
    byte_stream& operator=(const byte_stream&) = delete;

    bool is_tls() const noexcept { return tls_ != nullptr; }
    boost::beast::tcp_stream& lowest() noexcept;
    tcp::socket& socket() noexcept { return lowest().socket(); }

    asio::awaitable<error_code> handshake_server(duration timeout);
    // Connects to the first reachable endpoint; for TLS also sets SNI, verifies the peer
    // chain and host name (unless verify is false) and handshakes.
    asio::awaitable<error_code> connect(const tcp::resolver::results_type& endpoints,
                                        const std::string& host, bool verify, duration timeout);

    // `short_read_drains` (plain TCP): a read that comes back short took all there was, so
    // the next one waits for the socket's next readiness instead of first trying a recv that
    // would fail with EAGAIN (what Asio does after every read). The price: bytes and the
    // peer's FIN that arrive together are one readiness event, so the FIN is only seen by a
    // recv that does try: after such a read, the next read looks first with one
    // non-blocking recv, unless it is itself a short_read_drains read (a hold with a short
    // timeout, after which the caller reads again: exchange::read_piece).
    asio::awaitable<std::pair<error_code, std::size_t>> read_some(asio::mutable_buffer buffer,
                                                                  duration timeout,
                                                                  bool short_read_drains = false);
    asio::awaitable<error_code> write(std::span<const asio::const_buffer> buffers,
                                      duration timeout);
    // The usual write done at once, without a coroutine: plain TCP, as much of `buffers` as
    // the socket takes now (one non-blocking sendmsg); `sent` says how much. Nothing is
    // written on TLS or past max_gather buffers. An error only when the connection failed.
    // What is left goes by write_rest().
    error_code write_now(std::span<const asio::const_buffer> buffers, std::size_t& sent) noexcept {
        return write_ready(buffers, sent);
    }
    // `buffers` but their first `sent` bytes, under the deadline.
    asio::awaitable<error_code> write_rest(std::span<const asio::const_buffer> buffers,
                                           std::size_t sent, duration timeout);
    // At most this many buffers per write (a head and a body's pieces).
    static constexpr std::size_t max_gather = 16;

    // Plain TCP only: what has already arrived, without waiting (one non-blocking recv).
    // 0 with no error when nothing has; eof when the peer closed.
    std::size_t read_ready(asio::mutable_buffer buffer, error_code& ec) noexcept;

    // Cancels pending operations; they complete with operation_aborted.
    void cancel() noexcept;
    void close() noexcept;
    // What the socket holds now, looked at with a 1-byte MSG_PEEK that consumes nothing.
    enum class peeked { nothing, bytes, closed };  // closed: end of stream or an error
    peeked peek() noexcept;
    // True when the peer has closed or reset the connection, or sent bytes nobody asked
    // for: a pooled keep-alive connection that is not usable.
    bool peer_closed() noexcept { return peek() != peeked::nothing; }

    // Plain TCP: a wait for readability, armed once and left pending on the socket until
    // bytes (or the peer's close) arrive. Asio tries every read at once when its socket
    // has none queued, a recv that fails with EAGAIN when nothing has come yet; a pending
    // wait costs one epoll_ctl, and while it is pending read_some waits for it to end and
    // then takes what came with one non-blocking recv. `observe(ctx, ec)`, when given, is
    // called once when it ends (unless unwatch_readable() came first). False on TLS,
    // whose reads go through the TLS engine: nothing is armed then.
    using readable_fn = void (*)(void* ctx, const error_code& ec);
    bool watch_readable(readable_fn observe = nullptr, void* ctx = nullptr) noexcept;
    void unwatch_readable() noexcept;

    // A kept-alive connection put aside (a pool's idle one) is watched by that wait, and
    // `reusable_after_idle` says whether it may carry a request: with no syscall when the
    // wait was never woken; a woken one (the peer's close, bytes nobody asked for, or a
    // stale event of the last answer) and TLS, where there is no wait, are peeked. The
    // request's answer is then read behind the same wait.
    void watch_idle() noexcept;
    bool reusable_after_idle() noexcept;

  private:
    // Plain TCP: as much of `buffers` as the socket takes now (one non-blocking sendmsg);
    // `sent` says how much. An error only when the connection failed.
    error_code write_ready(std::span<const asio::const_buffer> buffers, std::size_t& sent) noexcept;

    // Plain TCP reads keep their deadline here, not in Beast's per-operation timer (armed
    // and cancelled around every read). One timer per connection stays armed at an
    // earlier deadline; when it fires it cancels the read if the read's own deadline has
    // passed, and otherwise waits again until that deadline. A read re-arms it only when
    // its deadline comes before the timer's.
    struct read_clock {
        explicit read_clock(const asio::any_io_executor& ex) : timer(ex) {}
        asio::steady_timer timer;
        std::chrono::steady_clock::time_point deadline{};  // the pending read's
        bool reading = false;
        bool armed = false;
        bool expired = false;       // the pending read was cancelled for its deadline
        bool waiting = false;       // the readability wait is pending
        bool idle_watch = false;    // watch_idle() until reusable_after_idle()
        bool idle_stirred = false;  // the wait ended while idle_watch
        // The last read reported the socket drained to the event loop (see read_some).
        bool drained = false;
        readable_fn observe = nullptr;
        void* observe_ctx = nullptr;
        // A read waiting for the wait to end.
        std::optional<asio::any_completion_handler<void(error_code)>> reader;
    };
    void arm_read_timer();

    std::unique_ptr<boost::beast::tcp_stream> plain_;
    std::unique_ptr<asio::ssl::stream<boost::beast::tcp_stream>> tls_;
    // Plain TCP only; shared with the timer's handler, which may run after this is gone.
    std::shared_ptr<read_clock> clock_;
};

}  // namespace tollgate::net
