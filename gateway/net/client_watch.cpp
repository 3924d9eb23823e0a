#include "gateway/net/client_watch.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/steady_timer.hpp>

#include <cerrno>
#include <chrono>

namespace tollgate::net {

namespace asio = boost::asio;

namespace {

// True when the peer has shut down its sending side (a FIN arrived), even with unread
// bytes before it.
bool peer_hung_up(int fd) noexcept {
    pollfd p{fd, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

// The watch is a chain of plain completion handlers (asio recycles their memory per
// thread), not a coroutine: one is armed per request that goes upstream. It is a wait for
// readability (one epoll_ctl: Asio re-registers the descriptor for a wait), and only when
// it ends is the socket looked at, with a 1-byte MSG_PEEK that consumes nothing (a
// pipelined request stays for the session). The wait is left pending when the scope
// ends: the session's read of the next request then queues behind it instead of being
// tried at once, which before the client has sent anything is a recv failing with EAGAIN.
void arm(byte_stream& client, std::shared_ptr<client_watch> w, int tls_rechecks);

void hung_up(client_watch& w) {
    w.gone = true;
    if (w.cancel_upstream && w.upstream) w.upstream->cancel();
}

void on_readable(byte_stream& client, std::shared_ptr<client_watch> w, int tls_rechecks,
                 boost::system::error_code ec) {
    // After the scope ended the session may be gone: touch nothing but `w` until checked.
    if (!w->active || ec == asio::error::operation_aborted) return;
    const int fd = client.socket().native_handle();
    if (!ec) {
        const auto r = ::recv(fd, &w->peeked, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            arm(client, std::move(w), tls_rechecks);  // nothing there after all
            return;
        }
        if (r > 0) {
            if (!client.is_tls()) return;  // a pipelined request: stop watching
            if (!peer_hung_up(fd)) {
                // TLS: the bytes may be the client's close_notify, with its FIN a moment
                // behind: look again shortly, a few times, before giving up watching.
                if (tls_rechecks == 0) return;
                auto t = std::make_shared<asio::steady_timer>(client.socket().get_executor(),
                                                              std::chrono::milliseconds(50));
                t->async_wait(
                    [&client, w = std::move(w), t, tls_rechecks](boost::system::error_code) {
                        if (!w->active) return;
                        if (!peer_hung_up(client.socket().native_handle()))
                            arm(client, w, tls_rechecks - 1);
                        else
                            hung_up(*w);
                    });
                return;
            }
        }
    }
    // End of stream (the client closed), a reset, or another error.
    hung_up(*w);
}

void arm(byte_stream& client, std::shared_ptr<client_watch> w, int tls_rechecks) {
    client.socket().async_wait(
        asio::socket_base::wait_read,
        [&client, w = std::move(w), tls_rechecks](boost::system::error_code ec) mutable {
            on_readable(client, std::move(w), tls_rechecks, ec);
        });
}

}  // namespace

client_watch_scope::client_watch_scope(byte_stream& client, bool cancel_upstream)
    : w_(std::make_shared<client_watch>()) {
    w_->cancel_upstream = cancel_upstream;
    arm(client, w_, 3);
}

client_watch_scope::~client_watch_scope() {
    // The wait stays pending (see arm): its handler returns at once when it ends.
    w_->active = false;
    w_->upstream = nullptr;
}

}  // namespace tollgate::net
