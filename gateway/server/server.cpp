#include "gateway/server/server.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <stdexcept>

#include "gateway/core/thread_name.hpp"

namespace tollgate::server {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}

struct server::impl {
    shared_state shared;
    worker_context main_ctx;  // acceptors and signals
    // Installed when the server is made, before anything listens: a SIGTERM that comes as
    // soon as the ports are open waits for run() instead of killing the process.
    asio::signal_set signals{main_ctx, SIGTERM, SIGINT};
    std::vector<std::unique_ptr<worker>> workers;
    std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
    std::unique_ptr<asio::ssl::context> tls;
    std::size_t next_worker = 0;
    int exit_code = 0;
    std::function<void()> reload;

    asio::awaitable<void> accept_loop(tcp::acceptor& acceptor);
    asio::awaitable<void> signal_loop();
    asio::awaitable<void> drain();
};

server::server(std::shared_ptr<const generation> gen, observe::metrics* metrics)
    : impl_(std::make_unique<impl>()) {
    impl_->shared.metrics = metrics;
    impl_->signals.add(SIGHUP);
    impl_->signals.add(SIGUSR1);
    const auto& sc = gen->snap->config.server;
    unsigned threads = sc.threads ? sc.threads : std::max(1u, std::thread::hardware_concurrency());
    impl_->shared.threads = threads;
    impl_->shared.current.store(gen);
    for (unsigned i = 0; i < threads; ++i)
        impl_->workers.push_back(std::make_unique<worker>(impl_->shared, i));

    if (sc.tls) {
        impl_->tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
        impl_->tls->set_options(asio::ssl::context::default_workarounds |
                                asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                                asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
        boost::system::error_code ec;
        impl_->tls->use_certificate_chain_file(sc.tls->cert, ec);
        if (!ec) impl_->tls->use_private_key_file(sc.tls->key, asio::ssl::context::pem, ec);
        if (ec)
            throw std::runtime_error("server.tls: cannot load certificate or key: " + ec.message());
    }

    for (const auto& l : sc.listen) {
        boost::system::error_code ec;
        const auto addr = asio::ip::make_address(l.host, ec);
        if (ec) throw std::runtime_error("server.listen: bad address '" + l.host + "'");
        auto acc = std::make_unique<tcp::acceptor>(impl_->main_ctx);
        const tcp::endpoint ep(addr, l.port);
        acc->open(ep.protocol(), ec);
        if (!ec) acc->set_option(tcp::acceptor::reuse_address(true), ec);
        if (!ec) acc->bind(ep, ec);
        if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
        if (ec) throw std::runtime_error("cannot listen on " + l.text() + ": " + ec.message());
        const auto bound = acc->local_endpoint();
        spdlog::info("listening on {}:{}", bound.address().to_string(), bound.port());
        impl_->acceptors.push_back(std::move(acc));
    }
    spdlog::info("{} worker thread(s), {} provider(s), {} model(s), policies: {}", threads,
                 gen->snap->config.providers.size(), gen->snap->config.models.size(), [&] {
                     std::string s;
                     for (const auto& p : gen->snap->config.policies)
                         s += (s.empty() ? "" : ",") + p;
                     return s;
                 }());
}

server::~server() = default;

void server::set_readiness(std::function<bool()> probe) {
    impl_->shared.ready_probe = std::move(probe);
}

void server::on_reload(std::function<void()> reload) {
    impl_->reload = std::move(reload);
}

void server::install(std::shared_ptr<const generation> gen) {
    impl_->shared.current.store(gen);
}

std::shared_ptr<const generation> server::current() const {
    return impl_->shared.current.load();
}

asio::awaitable<void> server::impl::accept_loop(tcp::acceptor& acceptor) {
    for (;;) {
        auto& w = *workers[next_worker];
        next_worker = (next_worker + 1) % workers.size();
        auto [ec, socket] = co_await acceptor.async_accept(w.context(), use_tuple);
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        if (ec) {
            // EMFILE and friends: say so, pause briefly instead of spinning, carry on.
            spdlog::error("accept failed: {}", ec.message());
            asio::steady_timer t(main_ctx, std::chrono::milliseconds(50));
            co_await t.async_wait(use_tuple);
            continue;
        }
        const auto limit = shared.current.load()->snap->config.server.max_connections;
        if (shared.connections.load(std::memory_order_relaxed) >= limit ||
            shared.draining.load(std::memory_order_relaxed)) {
            // Accepted and closed at once, never left waiting in the backlog.
            boost::system::error_code ignored;
            socket.set_option(asio::socket_base::linger(true, 0), ignored);
            socket.close(ignored);
            continue;
        }
        shared.connections.fetch_add(1, std::memory_order_relaxed);
        socket.set_option(tcp::no_delay(true), ec);
        asio::post(w.context(), [&w, s = std::move(socket), t = tls.get()]() mutable {
            w.start_session(std::move(s), t);
        });
    }
}

asio::awaitable<void> server::impl::drain() {
    shared.draining = true;
    for (auto& a : acceptors) {
        boost::system::error_code ec;
        a->close(ec);
    }
    for (auto& w : workers) asio::post(w->context(), [wp = w.get()] { wp->begin_drain(); });
    const auto timeout = shared.current.load()->snap->config.server.drain_timeout;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    spdlog::info("draining: waiting up to {} ms for {} connection(s)", timeout.count(),
                 shared.connections.load());
    asio::steady_timer t(main_ctx);
    while (shared.connections.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        t.expires_after(std::chrono::milliseconds(20));
        co_await t.async_wait(use_tuple);
        // Connections that finished a response since the last look close themselves;
        // idle ones are told again in case they went idle after the first call.
        for (auto& w : workers) asio::post(w->context(), [wp = w.get()] { wp->begin_drain(); });
    }
    if (shared.connections.load() > 0)
        spdlog::warn("drain timeout: closing {} connection(s)", shared.connections.load());
    for (auto& w : workers) w->context().stop();
    main_ctx.stop();
}

asio::awaitable<void> server::impl::signal_loop() {
    // SIGHUP reloads the config, SIGUSR1 reopens the access log (logrotate); neither may
    // ever kill the process and lose the usage queue.
    for (;;) {
        auto [ec, sig] = co_await signals.async_wait(use_tuple);
        if (ec) co_return;
        if (sig == SIGHUP) {
            spdlog::info("SIGHUP: reloading the configuration");
            if (reload)
                reload();
            else
                spdlog::warn("SIGHUP: reload is not available; ignored");
            continue;
        }
        if (sig == SIGUSR1) {
            if (const auto gen = shared.current.load(); gen->access_log)
                gen->access_log->reopen();
            else
                spdlog::info("SIGUSR1: no access log to reopen");
            continue;
        }
        spdlog::info("signal {}: shutting down", sig);
        co_await drain();
        co_return;
    }
}

int server::run() {
    std::vector<std::thread> threads;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
    for (auto& w : impl_->workers) guards.push_back(asio::make_work_guard(w->context()));
    for (auto& w : impl_->workers)
        threads.emplace_back([wp = w.get(), n = threads.size()] {
            core::name_this_thread("tg-worker-" + std::to_string(n));
            for (;;) {
                try {
                    wp->context().run();
                    return;
                } catch (const std::exception& e) {
                    spdlog::error("worker: unexpected error: {}", e.what());
                }
            }
        });
    for (auto& a : impl_->acceptors)
        asio::co_spawn(impl_->main_ctx, impl_->accept_loop(*a), asio::detached);
    asio::co_spawn(impl_->main_ctx, impl_->signal_loop(), asio::detached);
    impl_->main_ctx.run();
    guards.clear();
    for (auto& t : threads) t.join();
    // Pending accepts hold sockets of the workers' contexts: destroy them while the
    // workers still exist.
    impl_->main_ctx.destroy_handlers();
    spdlog::info("stopped");
    return impl_->exit_code;
}

}  // namespace tollgate::server
