#include "gateway/net/client_watch.hpp"

#include <poll.h>

#include <boost/asio/steady_timer.hpp>

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

// The watch costs one epoll_ctl per request: a wait for readability, and only when it
// ends is the socket looked at (byte_stream::peek, which consumes nothing: a pipelined
// request stays for the session). The wait is left pending when the scope
// ends: the session's read of the next request then waits for it instead of being tried
// at once (a recv failing with EAGAIN before the client has sent anything). On plain TCP
// it is the byte stream's readability wait (byte_stream::watch_readable), observed while
// the scope lives; on TLS a wait of its own, a chain of plain completion handlers.

void hung_up(client_watch& w) {
    w.gone = true;
    if (w.cancel_upstream && w.upstream) w.upstream->cancel();
}

// Plain TCP. Called only while the scope lives (it stops observing when it ends).
void on_readable(void* ctx, const boost::system::error_code& ec) {
    auto& w = *static_cast<client_watch*>(ctx);
    if (!ec) {
        const auto seen = w.client->peek();
        if (seen == byte_stream::peeked::bytes) return;  // a pipelined request: stop watching
        if (seen == byte_stream::peeked::nothing) {      // nothing there after all
            w.client->watch_readable(&on_readable, &w);
            return;
        }
    }
    // End of stream (the client closed), a reset, another error, or a cancel of the
    // client's operations (a write that timed out).
    hung_up(w);
}

void arm_tls(byte_stream& client, std::shared_ptr<client_watch> w, int tls_rechecks);

void on_tls_readable(byte_stream& client, std::shared_ptr<client_watch> w, int tls_rechecks,
                     boost::system::error_code ec) {
    // After the scope ended the session may be gone: touch nothing but `w` until checked.
    if (!w->active) return;
    if (!ec) {
        const auto seen = client.peek();
        if (seen == byte_stream::peeked::nothing) {
            arm_tls(client, std::move(w), tls_rechecks);
            return;
        }
        if (seen == byte_stream::peeked::bytes && !peer_hung_up(client.socket().native_handle())) {
            // The bytes may be the client's close_notify, with its FIN a moment behind:
            // look again shortly, a few times, before giving up watching.
            if (tls_rechecks == 0) return;
            auto t = std::make_shared<asio::steady_timer>(client.socket().get_executor(),
                                                          std::chrono::milliseconds(50));
            t->async_wait([&client, w = std::move(w), t, tls_rechecks](boost::system::error_code) {
                if (!w->active) return;
                if (!peer_hung_up(client.socket().native_handle()))
                    arm_tls(client, w, tls_rechecks - 1);
                else
                    hung_up(*w);
            });
            return;
        }
    }
    hung_up(*w);
}

void arm_tls(byte_stream& client, std::shared_ptr<client_watch> w, int tls_rechecks) {
    client.socket().async_wait(
        asio::socket_base::wait_read,
        [&client, w = std::move(w), tls_rechecks](boost::system::error_code ec) mutable {
            on_tls_readable(client, std::move(w), tls_rechecks, ec);
        });
}

}  // namespace

client_watch_scope::client_watch_scope(byte_stream& client, bool cancel_upstream)
    : client_(client), w_(std::make_shared<client_watch>()) {
    w_->cancel_upstream = cancel_upstream;
    w_->client = &client;
    if (!client.watch_readable(&on_readable, w_.get())) arm_tls(client, w_, 3);
}

client_watch_scope::~client_watch_scope() {
    // The wait stays pending for the session's next read (see above).
    client_.unwatch_readable();
    w_->active = false;
    w_->upstream = nullptr;
}

}  // namespace tollgate::net
