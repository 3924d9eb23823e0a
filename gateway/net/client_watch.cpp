#include "gateway/net/client_watch.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cerrno>
#include <chrono>

namespace tollgate::net {

namespace asio = boost::asio;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// True when the peer has shut down its sending side (a FIN arrived), even with unread
// bytes before it.
bool peer_hung_up(int fd) noexcept {
    pollfd p{fd, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

asio::awaitable<void> watch_client(byte_stream& client, std::shared_ptr<client_watch> w) {
    int tls_rechecks = 3;
    while (w->active) {
        auto [ec] =
            co_await client.socket().async_wait(asio::ip::tcp::socket::wait_read, use_tuple);
        // After a cancel the session may be gone: touch nothing but `w` until checked.
        if (!w->active) co_return;
        if (!ec) {
            const int fd = client.socket().native_handle();
            char c;
            const auto r = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (r > 0 && !client.is_tls()) co_return;  // a pipelined request: stop watching
            if (r > 0 && !peer_hung_up(fd)) {
                // TLS: the bytes may be the client's close_notify, with its FIN a moment
                // behind: look again shortly, a few times, before giving up watching.
                if (tls_rechecks-- == 0) co_return;
                asio::steady_timer t(client.socket().get_executor(), std::chrono::milliseconds(50));
                co_await t.async_wait(use_tuple);
                if (!w->active) co_return;
                if (!peer_hung_up(fd)) continue;
            } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                continue;
            }
        }
        w->gone = true;
        if (w->cancel_upstream && w->upstream) w->upstream->cancel();
        co_return;
    }
}

}  // namespace

client_watch_scope::client_watch_scope(byte_stream& client, bool cancel_upstream)
    : client_(client), w_(std::make_shared<client_watch>()) {
    w_->cancel_upstream = cancel_upstream;
    asio::co_spawn(client.socket().get_executor(), watch_client(client, w_), asio::detached);
}

client_watch_scope::~client_watch_scope() {
    w_->active = false;
    w_->upstream = nullptr;
    boost::system::error_code ec;
    client_.socket().cancel(ec);
}

}  // namespace tollgate::net
