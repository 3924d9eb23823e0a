#include "gateway/upstream/pool.hpp"

#include <openssl/err.h>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>

#include "gateway/core/coarse_clock.hpp"

namespace tollgate::upstream {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// How long a resolved address list is reused before asking the resolver again.
constexpr auto resolve_ttl = std::chrono::seconds(30);

std::string tls_reason(const error_code& ec) {
    if (ec.category() == asio::error::get_ssl_category()) {
        char buf[256];
        ::ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof buf);
        return buf;
    }
    return ec.message();
}

// A connection that could not be opened, as the attempt's error.
core::attempt_error connect_failure(const config::provider_config& cfg, const error_code& ec) {
    using core::attempt_kind;
    using core::attempt_source;
    if (ec == asio::error::timed_out || ec == boost::beast::error::timeout)
        return core::attempt_error::fail(attempt_source::connect, attempt_kind::timeout,
                                         "provider " + cfg.name + ": connect timed out");
    if (ec.category() == asio::error::get_ssl_category()) {
        spdlog::warn("provider {}: TLS handshake with {} failed: {}", cfg.name, cfg.host,
                     tls_reason(ec));
        return core::attempt_error::fail(attempt_source::tls, attempt_kind::tls_verify,
                                         "provider " + cfg.name + ": TLS verification failed");
    }
    return core::attempt_error::fail(
        attempt_source::connect, attempt_kind::io,
        "provider " + cfg.name + ": cannot connect (" + ec.message() + ")");
}

// The pool went away while the caller waited (shutdown): its provider may be gone too.
core::attempt_error pool_gone() {
    return core::attempt_error::fail(core::attempt_source::pool, core::attempt_kind::io,
                                     "connection pool closed");
}

}  // namespace

lease& lease::operator=(lease&& o) noexcept {
    if (this != &o) {
        release(false);
        owner_ = std::exchange(o.owner_, nullptr);
        conn_ = std::move(o.conn_);
        reused_ = o.reused_;
    }
    return *this;
}

void lease::release(bool reusable) noexcept {
    if (!conn_) return;
    if (owner_)
        owner_->give_back(std::move(conn_), reusable);
    else
        conn_->close();
    conn_.reset();
}

pool::pool(asio::any_io_executor ex, std::shared_ptr<const provider> p, std::size_t limit)
    : ex_(std::move(ex)), provider_(std::move(p)), book_(limit) {}

pool::~pool() {
    *alive_ = false;
    for (auto& c : book_.clear()) c->close();
    publish();
}

void pool::publish() noexcept {
    if (!gauge_) return;
    const auto idle = static_cast<std::int64_t>(book_.idle());
    const auto active = static_cast<std::int64_t>(book_.open()) - idle;
    gauge_->active.fetch_add(active - published_active_, std::memory_order_relaxed);
    gauge_->idle.fetch_add(idle - published_idle_, std::memory_order_relaxed);
    published_active_ = active;
    published_idle_ = idle;
}

asio::awaitable<error_code> pool::resolve() {
    const auto now = core::coarse_now();
    if (!endpoints_.empty() && now - resolved_at_ < resolve_ttl) co_return error_code{};
    const auto& cfg = provider_->config();
    // getaddrinfo runs on Asio's resolver thread and cannot be interrupted (cancel() only
    // stops a lookup not yet started): the request waits on a timer instead, bounded by
    // the connect timeout, which the lookup's completion cuts short. A lookup that hangs
    // finishes (or not) on its own; its result lands in `st`, kept alive by the handler.
    struct state {
        explicit state(const asio::any_io_executor& ex) : timer(ex), resolver(ex) {}
        asio::steady_timer timer;
        asio::ip::tcp::resolver resolver;
        bool done = false;
        error_code ec;
        asio::ip::tcp::resolver::results_type results;
    };
    auto st = std::make_shared<state>(ex_);
    st->timer.expires_after(cfg.connect_timeout);
    st->resolver.async_resolve(cfg.host, std::to_string(cfg.port),
                               [st](const error_code& ec, auto results) {
                                   st->done = true;
                                   st->ec = ec;
                                   st->results = std::move(results);
                                   st->timer.cancel();
                               });
    co_await st->timer.async_wait(use_tuple);
    if (!st->done) {
        st->resolver.cancel();
        co_return error_code(asio::error::timed_out);
    }
    if (st->ec) co_return st->ec;
    endpoints_ = std::move(st->results);
    resolved_at_ = now;
    co_return error_code{};
}

void pool::close_stale() {
    const auto stale_before = core::coarse_now() - provider_->config().idle_timeout;
    for (auto& c : book_.take_stale(stale_before)) c->close();
}

lease pool::take_reusable_idle() {
    while (auto conn = book_.take_idle()) {
        if ((*conn)->reusable_after_idle()) return lease(this, std::move(*conn), true);
        (*conn)->close();
        book_.closed();
    }
    return lease{};
}

lease pool::take_idle_now() {
    // As acquire()'s first steps.
    close_stale();
    lease out = take_reusable_idle();
    publish();
    return out;
}

asio::awaitable<std::pair<core::attempt_error, lease>> pool::acquire(bool fresh) {
    const auto& cfg = provider_->config();
    const auto deadline = core::coarse_now() + cfg.connect_timeout;
    auto alive = alive_;
    // The gauge follows every change this call makes, however it returns.
    struct publisher {
        pool* p;
        std::shared_ptr<bool> alive;
        ~publisher() {
            if (*alive) p->publish();
        }
    } on_exit{this, alive};
    for (;;) {
        close_stale();
        if (!fresh)
            if (lease idle = take_reusable_idle())
                co_return std::pair{core::attempt_error{}, std::move(idle)};
        // A fresh connection wanted while the idle ones fill the pool: one makes room.
        if (fresh)
            if (auto oldest = book_.make_room()) (*oldest)->close();
        if (book_.reserve()) {
            publish();
            auto conn = std::make_unique<net::byte_stream>(ex_, provider_->tls());
            error_code ec = co_await resolve();
            if (!*alive) co_return std::pair{pool_gone(), lease{}};
            if (!ec) {
                const auto left = deadline - core::coarse_now();
                ec = left.count() <= 0
                         ? error_code(asio::error::timed_out)
                         : co_await conn->connect(endpoints_, cfg.host, cfg.tls_verify, left);
            }
            if (!*alive) co_return std::pair{pool_gone(), lease{}};
            if (ec) {
                book_.closed();
                if (ec == asio::error::no_descriptors &&
                    std::chrono::steady_clock::now() - last_fd_warning_ >
                        std::chrono::seconds(10)) {
                    // Otherwise only the client's 502 would tell: say it where operators look.
                    last_fd_warning_ = std::chrono::steady_clock::now();
                    spdlog::error(
                        "provider {}: cannot open a connection: out of file descriptors "
                        "(raise the open-files limit, e.g. LimitNOFILE / ulimit -n)",
                        cfg.name);
                }
                endpoints_ = {};  // resolve again next time
                wake_one();
                co_return std::pair{connect_failure(cfg, ec), lease{}};
            }
            co_return std::pair{core::attempt_error{}, lease(this, std::move(conn), false)};
        }
        // Full: wait for a connection to come back or the deadline.
        asio::steady_timer timer(ex_, deadline);
        waiters_.push_back({&timer, false});
        // Leaves the list however this frame ends, also when it is destroyed suspended
        // (forced shutdown), so that give_back() never touches a dead timer.
        struct waiter_guard {
            pool* p;
            std::shared_ptr<bool> alive;
            std::list<waiter>::iterator it;
            ~waiter_guard() {
                if (*alive) p->waiters_.erase(it);
            }
        } guard{this, alive, std::prev(waiters_.end())};
        auto [ec] = co_await timer.async_wait(use_tuple);
        if (!*alive) co_return std::pair{pool_gone(), lease{}};
        if (!ec)
            co_return std::pair{
                core::attempt_error::fail(core::attempt_source::pool, core::attempt_kind::pool_full,
                                          "provider " + cfg.name + ": connection pool is full"),
                lease{}};
    }
}

void pool::retire() noexcept {
    if (book_.retired()) return;
    for (auto& c : book_.retire()) c->close();
    publish();
}

void pool::give_back(std::unique_ptr<net::byte_stream> conn, bool reusable) noexcept {
    const bool keep = reusable && conn->socket().is_open();
    if (keep) {
        conn->lowest().expires_never();
        conn->watch_idle();
    }
    if (auto to_close = book_.give_back(std::move(conn), keep, core::coarse_now()))
        (*to_close)->close();
    publish();
    wake_one();
}

void pool::wake_one() noexcept {
    for (auto& w : waiters_) {
        if (!w.woken) {
            w.woken = true;
            w.timer->cancel();
            break;
        }
    }
}

}  // namespace tollgate::upstream
