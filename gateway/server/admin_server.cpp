#include "gateway/server/admin_server.hpp"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <thread>

#include "config/digest.hpp"
#include "gateway/core/errors.hpp"
#include "gateway/core/thread_name.hpp"

namespace tollgate::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using digest = config::sha256_digest;
using config::sha256;

}  // namespace

struct admin_server::impl {
    asio::io_context ioc{1};
    tcp::acceptor acceptor{ioc};
    std::vector<admin_route> routes;
    bool has_token = false;
    bool loopback = false;
    digest token_digest{};
    std::thread thread;

    asio::awaitable<void> accept_loop();
    asio::awaitable<void> session(tcp::socket socket);
    admin_reply dispatch(const http::request<http::string_body>& req);
};

admin_server::admin_server(const config::admin_config& cfg, std::vector<admin_route> routes)
    : impl_(std::make_unique<impl>()) {
    impl_->routes = std::move(routes);
    impl_->has_token = !cfg.token.empty();
    if (impl_->has_token) impl_->token_digest = sha256(cfg.token);
    const auto l = cfg.listen.value_or(config::listen_address{"127.0.0.1", 8081});
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(l.host, ec);
    if (ec) throw std::runtime_error("admin.listen: bad address '" + l.host + "'");
    const tcp::endpoint ep(addr, l.port);
    impl_->acceptor.open(ep.protocol(), ec);
    if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) impl_->acceptor.bind(ep, ec);
    if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error("cannot listen on admin " + l.text() + ": " + ec.message());
    const auto bound = impl_->acceptor.local_endpoint();
    impl_->loopback = bound.address().is_loopback();
    spdlog::info("admin listening on {}:{}", bound.address().to_string(), bound.port());
    if (!impl_->has_token)
        spdlog::warn("admin.token is not set: the admin API refuses every request");
    asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
    impl_->thread = std::thread([i = impl_.get()] {
        core::name_this_thread("tg-admin");
        for (;;) {
            try {
                i->ioc.run();
                return;
            } catch (const std::exception& e) {
                spdlog::error("admin: unexpected error: {}", e.what());
            }
        }
    });
}

admin_server::~admin_server() {
    impl_->ioc.stop();
    if (impl_->thread.joinable()) impl_->thread.join();
}

asio::awaitable<void> admin_server::impl::accept_loop() {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
        if (ec == asio::error::operation_aborted) co_return;
        if (ec) continue;
        asio::co_spawn(ioc, session(std::move(socket)), asio::detached);
    }
}

admin_reply admin_server::impl::dispatch(const http::request<http::string_body>& req) {
    const std::string_view target = req.target();
    const auto qpos = target.find('?');
    const admin_request r{
        req.method_string(), target.substr(0, qpos),
        qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1), req.body(),
        req[http::field::if_none_match]};
    const auto matches = [&](const admin_route& route) {
        return route.prefix ? r.path.size() > route.path.size() && r.path.starts_with(route.path)
                            : r.path == route.path;
    };
    // The route first (the first one with this path and method), then the token: only
    // that route's own openness lets a request in without it, and a request without the
    // token learns nothing about the routes (401 whether the path exists or not).
    const admin_route* chosen = nullptr;
    bool path_known = false;
    for (const auto& route : routes) {
        if (!matches(route)) continue;
        path_known = true;
        if (route.method == r.method) {
            chosen = &route;
            break;
        }
    }
    const bool open = chosen && (chosen->open || (loopback && chosen->open_on_loopback));
    if (!open) {
        std::string_view auth = req[http::field::authorization];
        const bool bearer = auth.size() > 7 && beast::iequals(auth.substr(0, 7), "bearer ");
        if (!has_token || !bearer) {
            return {401, core::openai_error_body(
                             core::errc::invalid_api_key,
                             has_token ? "admin token required" : "admin.token is not configured")};
        }
        const digest d = sha256(auth.substr(7));
        if (CRYPTO_memcmp(d.data(), token_digest.data(), d.size()) != 0)
            return {401, core::openai_error_body(core::errc::invalid_api_key, "wrong admin token")};
    }
    if (chosen) {
        try {
            return chosen->handler(r);
        } catch (const std::exception& e) {
            spdlog::error("admin {} {}: {}", chosen->method, chosen->path, e.what());
            return {500, core::openai_error_body(core::errc::internal)};
        }
    }
    return path_known ? admin_reply{405, core::openai_error_body(core::errc::method_not_allowed)}
                      : admin_reply{404, core::openai_error_body(core::errc::not_found)};
}

asio::awaitable<void> admin_server::impl::session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buf;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(16 * 1024);
        parser.body_limit(1 << 20);
        stream.expires_after(std::chrono::seconds(30));
        auto [ec, n] = co_await http::async_read(stream, buf, parser, use_tuple);
        if (ec) co_return;
        const auto& req = parser.get();
        admin_reply reply = dispatch(req);
        http::response<http::string_body> res{static_cast<http::status>(reply.status), 11};
        bool cache_set = false;
        for (auto& [name, value] : reply.headers) {
            cache_set = cache_set || beast::iequals(name, "cache-control");
            res.set(name, value);
        }
        if (!cache_set) res.set(http::field::cache_control, "no-store");
        res.set("X-Content-Type-Options", "nosniff");
        if (reply.status != 204 && reply.status != 304) {
            res.set(http::field::content_type, reply.content_type);
            res.body() = std::move(reply.body);
        }
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        stream.expires_after(std::chrono::seconds(30));
        auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
        if (wec || !res.keep_alive()) co_return;
    }
}

}  // namespace tollgate::server
