#pragma once
// A connection pool's bookkeeping, sans-io (after Boost.MySQL's sansio_connection_node):
// which connections are idle and since when, how many are open (idle + in use), whether a
// new one may be opened, what a retired pool keeps. The pool (pool.hpp) does the I/O and
// asks the book; the book never blocks, does no I/O and closes nothing itself: the
// connections it lets go are handed back for the caller to close. `Conn` is any movable
// handle. Not thread-safe (one per worker, like its pool).

#include <chrono>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

namespace tollgate::upstream {

template <class Conn>
class pool_book {
  public:
    using time_point = std::chrono::steady_clock::time_point;

    explicit pool_book(std::size_t limit) noexcept : limit_(limit == 0 ? 1 : limit) {}

    std::size_t limit() const noexcept { return limit_; }
    std::size_t open() const noexcept { return open_; }  // idle + in use
    std::size_t idle() const noexcept { return idle_.size(); }
    bool retired() const noexcept { return retired_; }

    // Idle connections returned before `stale_before` (a middlebox may have dropped them
    // silently): out of the book, to close.
    std::vector<Conn> take_stale(time_point stale_before) {
        std::vector<Conn> out;
        std::size_t n = 0;
        while (n < idle_.size() && idle_[n].since < stale_before) ++n;
        for (std::size_t i = 0; i < n; ++i) out.push_back(std::move(idle_[i].conn));
        idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(n));
        open_ -= n;
        return out;
    }

    // The most recently returned idle connection (the warmest), still counted open: the
    // caller uses it, or finds it dead and calls closed().
    std::optional<Conn> take_idle() {
        if (idle_.empty()) return std::nullopt;
        Conn c = std::move(idle_.back().conn);
        idle_.pop_back();
        return c;
    }

    // A fresh connection is wanted while every slot is open and some are idle: the oldest
    // idle one leaves, to close, to make room.
    std::optional<Conn> make_room() {
        if (idle_.empty() || open_ < limit_) return std::nullopt;
        Conn c = std::move(idle_.front().conn);
        idle_.erase(idle_.begin());
        --open_;
        return c;
    }

    // A slot for a new connection, counted open from now; false at the limit (the caller
    // waits for a give_back).
    bool reserve() noexcept {
        if (open_ >= limit_) return false;
        ++open_;
        return true;
    }

    // A reserved or taken connection is gone (it failed to open, or was found dead).
    void closed() noexcept {
        if (open_ > 0) --open_;
    }

    // A connection in use comes back: kept idle when `reusable` and the pool is not
    // retired; else handed back, to close.
    std::optional<Conn> give_back(Conn c, bool reusable, time_point now) {
        if (reusable && !retired_) {
            idle_.push_back({std::move(c), now});
            return std::nullopt;
        }
        closed();
        return c;
    }

    // Nothing is pooled from now on: the idle connections, to close. Connections in use
    // are closed when they come back.
    std::vector<Conn> retire() {
        retired_ = true;
        return drain_idle();
    }

    // Every idle connection, to close, and nothing counted open (the pool is going away).
    std::vector<Conn> clear() {
        auto out = drain_idle();
        open_ = 0;
        return out;
    }

  private:
    std::vector<Conn> drain_idle() {
        std::vector<Conn> out;
        for (auto& e : idle_) out.push_back(std::move(e.conn));
        open_ -= idle_.size();
        idle_.clear();
        return out;
    }

    struct idle_conn {
        Conn conn;
        time_point since;
    };
    std::size_t limit_;
    std::size_t open_ = 0;
    std::vector<idle_conn> idle_;  // most recently returned last
    bool retired_ = false;
};

}  // namespace tollgate::upstream
