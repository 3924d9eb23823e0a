#include "tests/support/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <optional>
#include <stdexcept>

namespace tollgate::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct http_connection::impl {
    asio::io_context ioc;
    asio::ip::tcp::socket socket{ioc};
    std::unique_ptr<asio::ssl::context> tls_ctx;
    std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls;
    beast::flat_buffer buffer;
    std::optional<http::response_parser<http::buffer_body>> stream_parser;

    template <class F>
    decltype(auto) with_stream(F&& f) {
        if (tls) return f(*tls);
        return f(socket);
    }
};

namespace {

void set_timeouts(asio::ip::tcp::socket& s, std::chrono::milliseconds t) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(t.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

template <class Fields>
void copy_headers(const Fields& fields, http_response& out) {
    for (const auto& f : fields) {
        std::string name(f.name_string());
        std::transform(name.begin(), name.end(), name.begin(), ::tolower);
        out.headers[name] = std::string(f.value());
    }
}

}  // namespace

http_connection::http_connection(std::uint16_t port, std::chrono::milliseconds timeout, bool tls,
                                 int receive_buffer)
    : impl_(std::make_unique<impl>()) {
    impl_->socket.open(asio::ip::tcp::v4());
    // Before connecting: the window the client announces follows it.
    if (receive_buffer > 0)
        impl_->socket.set_option(asio::socket_base::receive_buffer_size(receive_buffer));
    impl_->socket.connect({asio::ip::make_address("127.0.0.1"), port});
    set_timeouts(impl_->socket, timeout);
    if (tls) {
        impl_->tls_ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
        impl_->tls_ctx->set_verify_mode(asio::ssl::verify_none);
        impl_->tls = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(impl_->socket,
                                                                                 *impl_->tls_ctx);
        impl_->tls->handshake(asio::ssl::stream_base::client);
    }
}

http_connection::~http_connection() = default;

void http_connection::send_raw(const std::string& bytes) {
    impl_->with_stream([&](auto& s) { asio::write(s, asio::buffer(bytes)); });
}

void http_connection::send_request(const std::string& method, const std::string& target,
                                   const header_map& headers, const std::string& body) {
    std::string req = method + " " + target + " HTTP/1.1\r\nhost: 127.0.0.1\r\n";
    bool has_ct = false;
    for (const auto& [k, v] : headers) {
        req += k + ": " + v + "\r\n";
        if (k == "content-type") has_ct = true;
    }
    if (!body.empty() || method == "POST") {
        if (!has_ct) req += "content-type: application/json\r\n";
        req += "content-length: " + std::to_string(body.size()) + "\r\n";
    }
    req += "\r\n";
    req += body;
    send_raw(req);
}

http_response http_connection::read_response() {
    http::response_parser<http::string_body> parser;
    parser.body_limit(256u << 20);
    impl_->with_stream([&](auto& s) { http::read(s, impl_->buffer, parser); });
    http_response out;
    auto& msg = parser.get();
    out.status = static_cast<int>(msg.result_int());
    copy_headers(msg, out);
    out.body = std::move(msg.body());
    out.keep_alive = msg.keep_alive();
    return out;
}

http_response http_connection::request(const std::string& method, const std::string& target,
                                       const header_map& headers, const std::string& body) {
    send_request(method, target, headers, body);
    return read_response();
}

http_response http_connection::read_head() {
    auto& p = impl_->stream_parser.emplace();
    p.body_limit(boost::none);
    impl_->with_stream([&](auto& s) { http::read_header(s, impl_->buffer, p); });
    http_response out;
    out.status = static_cast<int>(p.get().result_int());
    copy_headers(p.get(), out);
    out.keep_alive = p.get().keep_alive();
    return out;
}

std::string http_connection::read_body_some() {
    auto& p = *impl_->stream_parser;
    char buf[8192];
    for (;;) {
        if (p.is_done()) return {};
        p.get().body().data = buf;
        p.get().body().size = sizeof buf;
        boost::system::error_code ec;
        impl_->with_stream([&](auto& s) { http::read_some(s, impl_->buffer, p, ec); });
        if (ec == http::error::need_buffer) ec = {};
        if (ec) throw boost::system::system_error(ec);
        const std::size_t n = sizeof buf - p.get().body().size;
        if (n > 0) return std::string(buf, n);
    }
}

bool http_connection::closed_by_peer() {
    char c;
    boost::system::error_code ec;
    for (;;) {
        const auto n =
            impl_->with_stream([&](auto& s) { return s.read_some(asio::buffer(&c, 1), ec); });
        if (ec == asio::error::eof || ec == asio::error::connection_reset) return true;
        if (ec) return false;  // timeout
        if (n == 0) return true;
    }
}

void http_connection::close() {
    boost::system::error_code ec;
    if (impl_->tls) {
        // As browsers and HTTP libraries do: our close_notify, then the FIN right behind
        // it, without waiting for the server's close_notify (a non-blocking socket makes
        // the shutdown return once ours is written).
        impl_->socket.non_blocking(true, ec);
        impl_->tls->shutdown(ec);
    }
    impl_->socket.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    impl_->socket.close(ec);
}

http_response http_request(std::uint16_t port, const std::string& method, const std::string& target,
                           const header_map& headers, const std::string& body, bool tls) {
    http_connection c(port, std::chrono::seconds(30), tls);
    return c.request(method, target, headers, body);
}

std::vector<std::string> sse_data(const std::string& body) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < body.size()) {
        auto eol = body.find('\n', pos);
        if (eol == std::string::npos) eol = body.size();
        std::string line = body.substr(pos, eol - pos);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.rfind("data:", 0) == 0) {
            std::string v = line.substr(5);
            if (!v.empty() && v[0] == ' ') v.erase(0, 1);
            out.push_back(v);
        }
        pos = eol + 1;
    }
    return out;
}

}  // namespace tollgate::test
