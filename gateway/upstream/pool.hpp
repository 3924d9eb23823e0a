#pragma once
// Keep-alive connections to one provider, owned by one worker thread (share-nothing,
// so no locks). A connection goes back to the pool only after a clean, complete
// response; after an error, a timeout or a cancel it is closed. The number of open
// connections (idle + in use) never exceeds the limit; a caller that finds the pool full
// waits, up to the connect timeout, for a connection to be returned.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <list>
#include <memory>
#include <vector>

#include "gateway/core/attempt_error.hpp"
#include "gateway/net/byte_stream.hpp"
#include "gateway/observe/metrics.hpp"
#include "gateway/upstream/pool_book.hpp"
#include "gateway/upstream/provider.hpp"

namespace tollgate::upstream {

class pool;

// A connection taken from a pool. Closed on destruction unless release(true) was called
// after a complete response: no path can leak a slot.
class lease {
  public:
    lease() = default;
    lease(pool* owner, std::unique_ptr<net::byte_stream> conn, bool reused)
        : owner_(owner), conn_(std::move(conn)), reused_(reused) {}
    lease(lease&& o) noexcept { *this = std::move(o); }
    lease& operator=(lease&& o) noexcept;
    ~lease() { release(false); }

    explicit operator bool() const noexcept { return conn_ != nullptr; }
    net::byte_stream& stream() noexcept { return *conn_; }
    bool reused() const noexcept { return reused_; }
    void release(bool reusable) noexcept;

  private:
    pool* owner_ = nullptr;
    std::unique_ptr<net::byte_stream> conn_;
    bool reused_ = false;
};

class pool {
  public:
    pool(boost::asio::any_io_executor ex, std::shared_ptr<const provider> p, std::size_t limit);
    ~pool();
    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;

    // An idle connection that is still alive, else a new one, within connect_timeout.
    // `fresh` skips idle ones (used to retry a request whose reused connection turned out
    // dead). A failure comes as the attempt's error (source pool, connect or tls).
    boost::asio::awaitable<std::pair<core::attempt_error, lease>> acquire(bool fresh = false);
    // acquire()'s usual case done at once, without a coroutine: an idle connection that is
    // still alive, or an empty lease (then acquire() opens one or waits).
    lease take_idle_now();

    // Where this pool adds its open connections (active and idle) for /metrics.
    void set_gauge(observe::connection_gauge* g) noexcept {
        gauge_ = g;
        publish();
    }
    std::size_t open() const noexcept { return book_.open(); }
    // The provider left the configuration: idle connections are closed now, busy ones
    // when they come back; nothing is pooled any more.
    void retire() noexcept;

  private:
    friend class lease;
    void give_back(std::unique_ptr<net::byte_stream> conn, bool reusable) noexcept;
    void wake_one() noexcept;
    boost::asio::awaitable<boost::system::error_code> resolve();
    // Adds the change of open/idle counts since the last call to the gauge.
    void publish() noexcept;
    // Closes the connections idle longer than the provider's idle timeout: a middlebox may
    // have dropped them silently, and a request sent on one would wait out
    // first_byte_timeout.
    void close_stale();
    // The first idle connection still usable, or an empty lease. One closed by the server,
    // or holding bytes nobody asked for, while idle is closed and skipped (stray bytes
    // would reach the next request as its answer).
    lease take_reusable_idle();

    boost::asio::any_io_executor ex_;
    std::shared_ptr<const provider> provider_;
    pool_book<std::unique_ptr<net::byte_stream>> book_;
    struct waiter {
        boost::asio::steady_timer* timer;
        bool woken;
    };
    std::list<waiter> waiters_;
    boost::asio::ip::tcp::resolver::results_type endpoints_;
    std::chrono::steady_clock::time_point resolved_at_{};
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    observe::connection_gauge* gauge_ = nullptr;
    std::chrono::steady_clock::time_point last_fd_warning_{};
    std::int64_t published_active_ = 0, published_idle_ = 0;
};

}  // namespace tollgate::upstream
