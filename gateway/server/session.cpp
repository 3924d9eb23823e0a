#include "gateway/server/session.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <cstring>
#include <optional>

#include "gateway/core/coarse_clock.hpp"
#include "gateway/proxy/pipeline.hpp"
#include "gateway/proxy/responder.hpp"
#include "gateway/server/request_reader.hpp"
#include "gateway/server/worker.hpp"

namespace tollgate::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

// Lingering close after an early error answer (as nginx's lingering_close).
constexpr auto lingering_time = std::chrono::seconds(2);
constexpr std::size_t lingering_bytes = 8u << 20;

std::string_view buffered(const beast::flat_buffer& buf) {
    return std::string_view(static_cast<const char*>(buf.data().data()), buf.size());
}

// The peer's address from its bytes (no text round trip per connection); an IPv4-mapped
// IPv6 peer (a dual-stack listener's IPv4 client) is IPv4, as config::parse_ip reads it.
config::ip_address peer_of(const asio::ip::tcp::socket& s) {
    boost::system::error_code ec;
    auto addr = s.remote_endpoint(ec).address();
    config::ip_address out;
    if (ec) return out;
    if (addr.is_v6() && addr.to_v6().is_v4_mapped())
        addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
    if (addr.is_v4()) {
        const auto b = addr.to_v4().to_bytes();
        std::copy(b.begin(), b.end(), out.bytes.begin());
        out.v4 = true;
    } else {
        const auto b = addr.to_v6().to_bytes();
        std::copy(b.begin(), b.end(), out.bytes.begin());
    }
    return out;
}

}  // namespace

session::session(worker& w, asio::ip::tcp::socket socket, asio::ssl::context* tls)
    : worker_(w), peer_(peer_of(socket)), client_(std::move(socket), tls) {
    worker_.sessions_.push_front(this);
    registration_ = worker_.sessions_.begin();
}

session::~session() {
    worker_.sessions_.erase(registration_);
    client_.close();
    worker_.shared().connections.fetch_sub(1, std::memory_order_relaxed);
}

void session::drain() noexcept {
    if (idle_) client_.cancel();
}

namespace {

// The head from what is buffered, without a coroutine: the usual case, a head that came
// whole with the read that woke the session. read_more: the rest by read_more_head().
request_reader::step parse_head(beast::flat_buffer& buf, request_reader& reader) {
    std::size_t used = 0;
    const auto st = reader.head(buffered(buf), used);
    buf.consume(used);
    return st;
}

// The rest of a head that parse_head() found unfinished, read until it is whole, by
// `deadline`.
asio::awaitable<error_code> read_more_head(net::byte_stream& client, beast::flat_buffer& buf,
                                           request_reader& reader,
                                           core::clock::time_point deadline) {
    for (;;) {
        const auto left = deadline - core::coarse_now();
        if (left <= core::clock::duration::zero()) co_return asio::error::timed_out;
        auto [rec, n] =
            co_await client.read_some(buf.prepare(request_reader::head_read_size), left);
        if (rec || n == 0) co_return rec ? rec : error_code(asio::error::eof);
        buf.commit(n);
        const auto st = parse_head(buf, reader);
        if (st == request_reader::step::failed) co_return reader.error();
        if (st != request_reader::step::read_more) co_return error_code{};
    }
}

// The body (after a 100 Continue when the client waits for one), each piece within the
// idle timeout.
asio::awaitable<error_code> read_body(net::byte_stream& client, beast::flat_buffer& buf,
                                      request_reader& reader, const config::server_config& sc) {
    if (beast::iequals(reader.request()["expect"], "100-continue")) {
        static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
        const asio::const_buffer b = asio::buffer(cont.data(), cont.size());
        if (auto wec = co_await client.write(std::span(&b, 1), sc.write_timeout)) co_return wec;
    }
    for (;;) {
        std::size_t used = 0;
        const auto st = reader.body(buffered(buf), used);
        buf.consume(used);
        if (st == request_reader::step::failed) co_return reader.error();
        if (st != request_reader::step::read_more) co_return error_code{};
        auto [rec, n] =
            co_await client.read_some(buf.prepare(request_reader::body_read_size), sc.idle_timeout);
        if (rec || n == 0) co_return rec ? rec : error_code(asio::error::eof);
        buf.commit(n);
    }
}

// A head that could not be read because the client left or took too long: nothing to
// answer.
bool head_abandoned(const error_code& ec) {
    return ec == asio::error::timed_out || ec == asio::error::eof ||
           ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
           ec == beast::error::timeout;
}

// A body the gateway answers before closing (too large, bad chunked framing); anything
// else (the client gone, a timeout) closes without an answer.
std::optional<core::errc> body_refusal(const error_code& ec) {
    if (ec == http::error::body_limit) return core::errc::request_too_large;
    if (ec.category() == make_error_code(http::error::bad_method).category())
        return core::errc::bad_framing;
    return std::nullopt;
}

// The gateway's own endpoints and the refusals that need no pipeline.
asio::awaitable<error_code> answer_locally(worker& w, proxy::responder& out,
                                           core::request_context& ctx, route r,
                                           std::string_view path) {
    const bool draining = w.shared().draining.load(std::memory_order_relaxed);
    switch (r) {
        case route::healthz:
            co_return co_await out.send(ctx, 200, "application/json", R"({"status":"ok"})");
        case route::readyz:
            if ((!w.shared().ready_probe || w.shared().ready_probe()) && !draining)
                co_return co_await out.send(ctx, 200, "application/json", R"({"status":"ready"})");
            co_return co_await out.send(ctx, 503, "application/json", R"({"status":"not ready"})");
        case route::not_found:
            ctx.ep = path.starts_with("/v1/messages") ? core::endpoint::messages
                                                      : core::endpoint::chat_completions;
            co_return co_await out.send_error(
                ctx, core::errc::not_found,
                "no such endpoint: " + std::string(path.substr(0, 100)));
        case route::bad_method:
            co_return co_await out.send_error(ctx, core::errc::method_not_allowed);
        case route::api:
            break;
    }
    co_return error_code{};
}

// After answering before the whole request was read: stop sending, then read and drop
// what the client still sends (bounded), so that closing with unread data does not reset
// the connection before the client has read the answer (nginx's lingering_close).
asio::awaitable<void> linger_close(net::byte_stream& client) {
    boost::system::error_code ignored;
    client.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    const auto deadline = core::coarse_now() + lingering_time;
    std::size_t drained = 0;
    // Not a local: it would sit in every connection's coroutine frame. What is read into
    // it is thrown away, so the worker thread's one buffer serves all sessions.
    static thread_local char sink[16 * 1024];
    while (drained < lingering_bytes) {
        const auto left = deadline - core::coarse_now();
        if (left <= core::clock::duration::zero()) break;
        auto [rec, n] = co_await client.read_some(asio::buffer(sink), left);
        if (rec || n == 0) break;
        drained += n;
    }
}

}  // namespace

asio::awaitable<void> session::run() {
    auto gen = worker_.shared().current.load();
    if (client_.is_tls()) {
        if (co_await client_.handshake_server(gen->snap->config.server.header_timeout)) co_return;
    }
    beast::flat_buffer buf;
    proxy::responder out(client_, gen->snap->config.server.write_timeout);
    bool first = true;
    bool linger = false;  // an answer went out before the request was read whole
    std::size_t pipelined = 0;
    const auto accepted_at = core::clock::now();
    core::connection_memo memo;  // what this connection's requests leave for the next
    const auto draining = [this] {
        return worker_.shared().draining.load(std::memory_order_relaxed);
    };

    for (;;) {
        // Draining: an idle connection closes; a request already buffered is answered
        // (503 shutting_down) rather than dropped.
        if (draining() && buf.size() == 0) {
            boost::system::error_code aec;
            if (client_.socket().available(aec) == 0 || aec) break;
        }
        // Wait for the next request: the first one within the header timeout, later ones
        // within the keep-alive idle timeout. A waiting connection holds no configuration
        // generation: the request that comes next runs on the one in force when it
        // arrives (a reload meanwhile applies to it).
        const bool waited = buf.size() == 0;
        if (waited) {
            pipelined = 0;
            const auto wait = first ? gen->snap->config.server.header_timeout
                                    : gen->snap->config.server.idle_timeout;
            gen.reset();
            idle_ = true;
            auto [ec, n] =
                co_await client_.read_some(buf.prepare(request_reader::head_read_size), wait);
            idle_ = false;
            gen = worker_.shared().current.load();
            if (ec || n == 0) break;
            buf.commit(n);
        } else {
            gen = worker_.shared().current.load();
        }
        const auto& sc = gen->snap->config.server;
        if (!waited && ++pipelined > sc.max_pipelined) {
            // Bounded pipelining: after max_pipelined answers from one read, let the
            // worker's other connections run before answering the rest.
            pipelined = 0;
            co_await asio::post(client_.socket().get_executor(), asio::use_awaitable);
        }
        first = false;

        core::request_context ctx;
        ctx.received_at = core::clock::now();
        ctx.peer = peer_;
        ctx.connection = &memo;
        // The whole head within header_timeout: from the accept for a new connection, from
        // its first byte for a kept-alive one.
        const auto head_deadline =
            (first_request_ ? accepted_at : ctx.received_at) + sc.header_timeout;
        first_request_ = false;
        request_reader reader(sc.max_header_bytes, sc.max_request_bytes);
        error_code head_ec;
        if (const auto st = parse_head(buf, reader); st == request_reader::step::failed)
            head_ec = reader.error();
        else if (st == request_reader::step::read_more)
            head_ec = co_await read_more_head(client_, buf, reader, head_deadline);
        if (const auto ec = head_ec) {
            if (head_abandoned(ec)) break;
            out.begin(true, false);
            ctx.request_id = worker_.new_request_id();
            co_await out.send_error(ctx, read_error(ec));
            linger = true;
            break;
        }

        auto& req = reader.request();
        // The endpoint decides the error shape, also for errors while reading the body.
        if (req.target().starts_with("/v1/messages")) ctx.ep = core::endpoint::messages;
        const std::string_view rid = req["x-request-id"];
        ctx.request_id = valid_request_id(rid) ? std::string(rid) : worker_.new_request_id();
        out.begin(req.version() >= 11, req.keep_alive() && !draining());
        if (!reader.body_done())
            if (const auto ec = co_await read_body(client_, buf, reader, sc)) {
                if (const auto refusal = body_refusal(ec)) {
                    out.set_close();
                    co_await out.send_error(ctx, *refusal);
                    linger = true;
                }
                break;
            }

        const std::string_view target = req.target();
        const std::string_view path = target.substr(0, target.find('?'));
        core::endpoint ep{};
        const route r = classify(req.method(), path, ep);
        ctx.ep = ep;
        ctx.method = req.method_string();
        ctx.target = target;
        ctx.headers = &req;
        ctx.body = req.body();
        ctx.body_bytes = ctx.body.size();
        if (draining() && r != route::healthz) {
            out.set_close();
            co_await out.send_error(ctx, core::errc::shutting_down);
            break;
        }
        if (r == route::api) {
            // Nothing buffered behind this request: give the read buffer back while the
            // answer (perhaps a stream of minutes) is relayed.
            if (buf.size() == 0) buf.shrink_to_fit();
            proxy::pipeline_io io{worker_.parser(), worker_,    out,
                                  client_,          *gen,       worker_.shared().metrics,
                                  worker_.index(),  &req.body()};
            co_await proxy::run_pipeline(io, ctx);
        } else if (co_await answer_locally(worker_, out, ctx, r, path)) {
            break;
        }
        if (!out.keep_alive()) break;
    }
    if (linger) co_await linger_close(client_);
}

}  // namespace tollgate::server
