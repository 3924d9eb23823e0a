#include "gateway/server/worker.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "gateway/server/session.hpp"

namespace tollgate::server {

worker::worker(shared_state& shared, unsigned index)
    : shared_(shared), index_(index), rng_(std::random_device{}() ^ (std::uint64_t{index} << 32)) {}

worker::~worker() {
    // Coroutines still suspended (after a drain timeout) are destroyed here, while the
    // sessions list and the pools they touch on the way out still exist.
    ioc_.destroy_handlers();
}

upstream::pool& worker::pool_for(const std::shared_ptr<const upstream::provider>& p) {
    auto it = pools_.find(p.get());
    if (it != pools_.end()) return *it->second;
    // A provider seen for the first time (start, or a reload): pools of providers the
    // current generation no longer has are retired (idle connections closed now, busy ones
    // when they come back) and dropped once empty.
    const auto now = shared_.current.load();
    for (auto old = pools_.begin(); old != pools_.end();) {
        const bool current = std::any_of(now->providers.begin(), now->providers.end(),
                                         [&](const auto& q) { return q.get() == old->first; });
        if (!current) old->second->retire();
        if (!current && old->second->open() == 0)
            old = pools_.erase(old);
        else
            ++old;
    }
    // The provider's connection limit is shared out between the workers.
    const auto threads = std::max(1u, shared_.threads);
    const auto limit = (p->config().max_connections + threads - 1) / threads;
    auto& slot = pools_[p.get()];
    slot = std::make_unique<upstream::pool>(ioc_.get_executor(), p, limit);
    if (shared_.metrics) slot->set_gauge(&shared_.metrics->connections(p->config().name));
    return *slot;
}

std::string worker::new_request_id() {
    static constexpr char hex[] = "0123456789abcdef";
    std::string id(32, '0');
    for (int half = 0; half < 2; ++half) {
        auto v = rng_();
        for (int i = 0; i < 16; ++i, v >>= 4)
            id[static_cast<std::size_t>(half * 16 + i)] = hex[v & 15];
    }
    return id;
}

void worker::start_session(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context* tls) {
    auto s = std::make_shared<session>(*this, std::move(socket), tls);
    boost::asio::co_spawn(
        ioc_, [s]() -> boost::asio::awaitable<void> { co_await s->run(); },
        [](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                spdlog::error("connection ended by an unexpected error: {}", ex.what());
            }
        });
}

void worker::begin_drain() {
    for (auto* s : sessions_) s->drain();
}

}  // namespace tollgate::server
