#include "gateway/net/byte_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>
#include <tuple>
#include <utility>

#include "gateway/core/coarse_clock.hpp"

namespace tollgate::net {
namespace {

// A read buffer whose read tells Asio's reactor, when it comes back short, that the socket
// is drained (see the specialisation below).
struct drain_read_buffer : asio::mutable_buffer {
    explicit drain_read_buffer(asio::mutable_buffer b) noexcept : asio::mutable_buffer(b) {}
};

}  // namespace
}  // namespace tollgate::net

namespace boost::asio::detail {

// Asio 1.81's receive operation reports a socket exhausted only at its end, so after every
// successful read the next one starts with a speculative recv, which fails with EAGAIN when
// the read had taken everything (the usual case: one upstream event, one read). This
// operation (the same as Asio's for one buffer, apart from the status) reports a short read
// as done_and_exhausted: the reactor then clears the descriptor's try-speculative flag
// under its lock, and sets it again at the next readiness event, so that a read started
// before that event waits for it and one started after it reads at once. No event is
// missed; only a FIN that came with the bytes waits for a later try (byte_stream.hpp).
template <>
class reactive_socket_recv_op_base<tollgate::net::drain_read_buffer> : public reactor_op {
  public:
    reactive_socket_recv_op_base(const boost::system::error_code& success_ec, socket_type socket,
                                 socket_ops::state_type state,
                                 const tollgate::net::drain_read_buffer& buffer,
                                 socket_base::message_flags flags, func_type complete_func)
        : reactor_op(success_ec, &reactive_socket_recv_op_base::do_perform, complete_func),
          socket_(socket),
          state_(state),
          buffer_(buffer),
          flags_(flags) {}

    static status do_perform(reactor_op* base) {
        auto* o = static_cast<reactive_socket_recv_op_base*>(base);
        if (!socket_ops::non_blocking_recv1(
                o->socket_, o->buffer_.data(), o->buffer_.size(), o->flags_,
                (o->state_ & socket_ops::stream_oriented) != 0, o->ec_, o->bytes_transferred_))
            return not_done;
        return o->bytes_transferred_ < o->buffer_.size() ? done_and_exhausted : done;
    }

  private:
    socket_type socket_;
    socket_ops::state_type state_;
    tollgate::net::drain_read_buffer buffer_;
    socket_base::message_flags flags_;
};

}  // namespace boost::asio::detail

namespace tollgate::net {

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}

byte_stream::byte_stream(tcp::socket&& socket, asio::ssl::context* tls) {
    if (tls)
        tls_ = std::make_unique<asio::ssl::stream<boost::beast::tcp_stream>>(
            boost::beast::tcp_stream(std::move(socket)), *tls);
    else
        plain_ = std::make_unique<boost::beast::tcp_stream>(std::move(socket));
    if (plain_) clock_ = std::make_shared<read_clock>(plain_->socket().get_executor());
}

byte_stream::byte_stream(const asio::any_io_executor& ex, asio::ssl::context* tls) {
    if (tls)
        tls_ = std::make_unique<asio::ssl::stream<boost::beast::tcp_stream>>(ex, *tls);
    else
        plain_ = std::make_unique<boost::beast::tcp_stream>(ex);
    if (plain_) clock_ = std::make_shared<read_clock>(ex);
}

byte_stream::~byte_stream() {
    if (clock_) {
        clock_->reading = false;
        clock_->timer.cancel();
    }
}

boost::beast::tcp_stream& byte_stream::lowest() noexcept {
    return tls_ ? tls_->next_layer() : *plain_;
}

asio::awaitable<error_code> byte_stream::handshake_server(duration timeout) {
    if (!tls_) co_return error_code{};
    lowest().expires_after(timeout);
    auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::server, use_tuple);
    lowest().expires_never();
    co_return ec;
}

asio::awaitable<error_code> byte_stream::connect(const tcp::resolver::results_type& endpoints,
                                                 const std::string& host, bool verify,
                                                 duration timeout) {
    lowest().expires_after(timeout);
    auto [ec, ep] = co_await lowest().async_connect(endpoints, use_tuple);
    if (ec) co_return ec;
    socket().set_option(tcp::no_delay(true), ec);
    if (tls_) {
        // SNI, then peer verification including the host name.
        if (!SSL_set_tlsext_host_name(tls_->native_handle(), host.c_str()))
            co_return error_code(static_cast<int>(::ERR_get_error()),
                                 asio::error::get_ssl_category());
        if (verify) {
            tls_->set_verify_mode(asio::ssl::verify_peer);
            tls_->set_verify_callback(asio::ssl::host_name_verification(host));
        } else {
            tls_->set_verify_mode(asio::ssl::verify_none);
        }
        auto [hec] = co_await tls_->async_handshake(asio::ssl::stream_base::client, use_tuple);
        if (hec) co_return hec;
    }
    lowest().expires_never();
    co_return error_code{};
}

asio::awaitable<std::pair<error_code, std::size_t>> byte_stream::read_some(
    asio::mutable_buffer buffer, duration timeout, bool short_read_drains) {
    if (tls_) {
        lowest().expires_after(timeout);
        auto [ec, n] = co_await tls_->async_read_some(buffer, use_tuple);
        co_return std::pair{ec, n};
    }
    auto& c = *clock_;
    c.deadline = core::coarse_now() + timeout;
    c.reading = true;
    c.expired = false;
    if (!c.armed || c.timer.expiry() > c.deadline) arm_read_timer();
    error_code ec;
    std::size_t n = 0;
    if (c.drained && !short_read_drains && buffer.size() > 0) {
        // The last read told the event loop the socket was drained, so a read now waits for
        // new readiness, and a FIN (or bytes) that came with that read's bytes brings none:
        // look once, without waiting. (A holding read, short_read_drains, does not: it
        // ends soon anyway, and the read after it looks.)
        n = read_ready(buffer, ec);
        if (ec || n > 0) {
            c.reading = false;
            co_return std::pair{ec, n};
        }
    }
    if (c.waiting && buffer.size() > 0) {
        // The readability wait is pending (watch_readable): its end is this read's
        // readiness. Then one recv takes what came, with no second operation queued.
        std::tie(ec) = co_await asio::async_initiate<decltype(use_tuple), void(error_code)>(
            [&c](auto handler) { c.reader.emplace(std::move(handler)); }, use_tuple);
        if (!ec) n = read_ready(buffer, ec);
    }
    // No wait pending, or nothing there after all: read as usual.
    if (!ec && n == 0) {
        if (short_read_drains) {
            std::tie(ec, n) =
                co_await plain_->socket().async_read_some(drain_read_buffer(buffer), use_tuple);
            c.drained = n < buffer.size();
        } else {
            std::tie(ec, n) = co_await plain_->socket().async_read_some(buffer, use_tuple);
        }
    }
    c.reading = false;
    if (c.expired && ec == asio::error::operation_aborted) ec = boost::beast::error::timeout;
    c.expired = false;
    co_return std::pair{ec, n};
}

void byte_stream::arm_read_timer() {
    auto& c = *clock_;
    c.armed = true;
    c.timer.expires_at(c.deadline);  // a wait already pending ends as aborted
    c.timer.async_wait([clock = clock_, this](const error_code& ec) {
        // Aborted: re-armed meanwhile, or this stream is gone. Touch nothing then.
        if (ec == asio::error::operation_aborted) return;
        clock->armed = false;
        if (!clock->reading) return;  // the next read arms it again
        if (std::chrono::steady_clock::now() >= clock->deadline) {
            clock->expired = true;
            error_code ignored;
            plain_->socket().cancel(ignored);
            return;
        }
        arm_read_timer();
    });
}

asio::awaitable<error_code> byte_stream::write(std::span<const asio::const_buffer> buffers,
                                               duration timeout) {
    // Most writes fit in the socket's send buffer: one non-blocking sendmsg, with no timer
    // to arm and cancel, no reactor operation and no trip through the event loop. What
    // does not fit goes the asynchronous way, under the deadline.
    std::size_t sent = 0;
    if (const auto r = write_ready(buffers, sent); r) co_return r;
    if (sent == asio::buffer_size(buffers)) co_return error_code{};
    co_return co_await write_rest(buffers, sent, timeout);
}

asio::awaitable<error_code> byte_stream::write_rest(std::span<const asio::const_buffer> buffers,
                                                    std::size_t sent, duration timeout) {
    if (tls_) {
        lowest().expires_after(timeout);
        auto [ec, n] = co_await asio::async_write(*tls_, buffers, use_tuple);
        co_return ec;
    }
    if (buffers.size() > max_gather) {
        lowest().expires_after(timeout);
        auto [ec, n] = co_await asio::async_write(*plain_, buffers, use_tuple);
        co_return ec;
    }
    std::array<asio::const_buffer, max_gather> rest;
    std::size_t count = 0;
    for (const auto& b : buffers) {
        if (sent >= b.size()) {
            sent -= b.size();
            continue;
        }
        rest[count++] = asio::buffer(static_cast<const char*>(b.data()) + sent, b.size() - sent);
        sent = 0;
    }
    if (count == 0) co_return error_code{};
    lowest().expires_after(timeout);
    auto [ec, n] = co_await asio::async_write(
        *plain_, std::span<const asio::const_buffer>(rest.data(), count), use_tuple);
    co_return ec;
}

error_code byte_stream::write_ready(std::span<const asio::const_buffer> buffers,
                                    std::size_t& sent) noexcept {
    sent = 0;
    if (tls_ || buffers.size() > max_gather) return {};
    std::array<iovec, max_gather> iov;
    std::size_t count = 0;
    for (const auto& b : buffers) {
        if (b.size() == 0) continue;
        iov[count].iov_base = const_cast<void*>(b.data());
        iov[count].iov_len = b.size();
        ++count;
    }
    if (count == 0) return {};
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = count;
    for (;;) {
        const auto r = ::sendmsg(socket().native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0) {
            sent = static_cast<std::size_t>(r);
            return {};
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return {};
        return error_code(errno, boost::system::system_category());
    }
}

std::size_t byte_stream::read_ready(asio::mutable_buffer buffer, error_code& ec) noexcept {
    ec = {};
    if (tls_ || buffer.size() == 0) return 0;
    // What it finds is either what the last read might have hidden (nothing, the end) or
    // bytes that came since, with readiness of their own.
    clock_->drained = false;
    for (;;) {
        const auto r = ::recv(socket().native_handle(), buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (r > 0) return static_cast<std::size_t>(r);
        if (r == 0) {
            ec = asio::error::eof;
            return 0;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            ec = error_code(errno, boost::system::system_category());
        return 0;
    }
}

void byte_stream::cancel() noexcept {
    lowest().cancel();
}

void byte_stream::close() noexcept {
    error_code ec;
    socket().shutdown(tcp::socket::shutdown_both, ec);
    socket().close(ec);
}

bool byte_stream::watch_readable(readable_fn observe, void* ctx) noexcept {
    if (tls_) return false;
    auto& c = *clock_;
    c.observe = observe;
    c.observe_ctx = ctx;
    if (c.waiting) return true;  // the last one is still pending: it watches
    c.waiting = true;
    plain_->socket().async_wait(tcp::socket::wait_read, [clock = clock_](const error_code& ec) {
        clock->waiting = false;
        // Aborted: closed or cancelled meanwhile. Readable, or an error: not reusable idle.
        if (ec != asio::error::operation_aborted && clock->idle_watch) clock->idle_stirred = true;
        if (const auto f = std::exchange(clock->observe, nullptr)) f(clock->observe_ctx, ec);
        if (clock->reader) {
            auto h = std::move(*clock->reader);
            clock->reader.reset();
            std::move(h)(ec);
        }
    });
    return true;
}

void byte_stream::unwatch_readable() noexcept {
    if (clock_) clock_->observe = nullptr;
}

void byte_stream::watch_idle() noexcept {
    if (!watch_readable()) return;  // TLS: reusable_after_idle peeks
    clock_->idle_watch = true;
    clock_->idle_stirred = false;
    // The wait re-arms the socket (epoll_ctl), which reports a FIN the answer's last read
    // hid at once: no look is needed before the next request's answer.
    clock_->drained = false;
}

bool byte_stream::reusable_after_idle() noexcept {
    if (tls_) return !peer_closed();
    auto& c = *clock_;
    const bool watched = c.idle_watch;
    c.idle_watch = false;
    if (!socket().is_open()) return false;
    // Watched and never woken: nothing came. A wake-up is looked at before it condemns the
    // connection: it can be stale, the event of the answer's last bytes (read meanwhile by
    // a non-blocking recv) reaching the wait after the connection came back. That was one
    // stream in ten under load; then the connection is also no longer watched.
    if (watched && !c.idle_stirred) return true;
    return !peer_closed();
}

byte_stream::peeked byte_stream::peek() noexcept {
    if (!socket().is_open()) return peeked::closed;
    for (;;) {
        char c;
        const auto r = ::recv(socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r > 0) return peeked::bytes;
        if (r == 0) return peeked::closed;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? peeked::nothing : peeked::closed;
    }
}

}  // namespace tollgate::net
