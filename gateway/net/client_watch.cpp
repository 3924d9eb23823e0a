#include "gateway/net/client_watch.hpp"

#include <poll.h>
#include <sys/socket.h>

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

// The watch is a chain of plain completion handlers (asio recycles their memory per
// thread), not a coroutine: one is armed per request that goes upstream. It is a 1-byte
// MSG_PEEK receive rather than a wait for readability: Asio re-registers the descriptor
// with epoll (one epoll_ctl) for every wait, while a receive is tried at once only when
// the socket may have bytes and is otherwise queued on the registration it has. Peeking
// consumes nothing: a pipelined request stays for the session.
void arm(byte_stream& client, std::shared_ptr<client_watch> w, int tls_rechecks);

void hung_up(client_watch& w) {
    w.gone = true;
    if (w.cancel_upstream && w.upstream) w.upstream->cancel();
}

void on_peeked(byte_stream& client, std::shared_ptr<client_watch> w, int tls_rechecks,
               boost::system::error_code ec, std::size_t n) {
    // After a cancel the session may be gone: touch nothing but `w` until checked.
    if (!w->active) return;
    if (!ec && n > 0) {
        if (!client.is_tls()) return;  // a pipelined request: stop watching
        const int fd = client.socket().native_handle();
        if (!peer_hung_up(fd)) {
            // TLS: the bytes may be the client's close_notify, with its FIN a moment
            // behind: look again shortly, a few times, before giving up watching.
            if (tls_rechecks == 0) return;
            auto t = std::make_shared<asio::steady_timer>(client.socket().get_executor(),
                                                          std::chrono::milliseconds(50));
            t->async_wait([&client, w = std::move(w), t, tls_rechecks](boost::system::error_code) {
                if (!w->active) return;
                if (!peer_hung_up(client.socket().native_handle()))
                    arm(client, w, tls_rechecks - 1);
                else
                    hung_up(*w);
            });
            return;
        }
    }
    // End of stream (the client closed), a reset, or another error.
    hung_up(*w);
}

void arm(byte_stream& client, std::shared_ptr<client_watch> w, int tls_rechecks) {
    auto* peek = &w->peeked;
    client.socket().async_receive(asio::buffer(peek, 1), asio::socket_base::message_peek,
                                  [&client, w = std::move(w), tls_rechecks](
                                      boost::system::error_code ec, std::size_t n) mutable {
                                      on_peeked(client, std::move(w), tls_rechecks, ec, n);
                                  });
}

}  // namespace

client_watch_scope::client_watch_scope(byte_stream& client, bool cancel_upstream)
    : client_(client), w_(std::make_shared<client_watch>()) {
    w_->cancel_upstream = cancel_upstream;
    arm(client, w_, 3);
}

client_watch_scope::~client_watch_scope() {
    w_->active = false;
    w_->upstream = nullptr;
    boost::system::error_code ec;
    client_.socket().cancel(ec);
}

}  // namespace tollgate::net
