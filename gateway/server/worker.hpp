#pragma once
// One worker thread: its io_context, the connections pinned to it, its upstream pools
// and its JSON parser. Nothing here is shared with other workers except `shared_state`.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "gateway/core/body_parser.hpp"
#include "gateway/core/snapshot.hpp"
#include "gateway/proxy/pipeline.hpp"
#include "gateway/upstream/pool.hpp"
#include "gateway/upstream/provider.hpp"

namespace tollgate::server {

using proxy::generation;

// State shared by every worker; thread-safe.
struct shared_state {
    std::atomic<std::shared_ptr<const generation>> current;
    std::atomic<bool> draining{false};
    std::atomic<std::size_t> connections{0};
    std::function<bool()> ready_probe;    // set before start; null = always ready
    observe::metrics* metrics = nullptr;  // set before start; null = not recorded
    unsigned threads = 1;
};

class session;

// An io_context whose pending handlers can be destroyed on demand, while everything they
// refer to still exists (io_context's own destructor does it too late for us).
class worker_context : public boost::asio::io_context {
  public:
    worker_context() : boost::asio::io_context(1) {}
    void destroy_handlers() { shutdown(); }
};

class worker final : public proxy::pool_source {
  public:
    worker(shared_state& shared, unsigned index);
    ~worker();

    boost::asio::io_context& context() noexcept { return ioc_; }
    shared_state& shared() noexcept { return shared_; }
    unsigned index() const noexcept { return index_; }
    core::body_parser& parser() noexcept { return parser_; }

    // The pool for a provider of the current generation (created on first use). Pools of
    // providers that a reload removed are dropped once they hold no connection.
    upstream::pool& pool_for(const std::shared_ptr<const upstream::provider>& p) override;

    // A new random request id (32 hex digits).
    std::string new_request_id();

    // Starts a session for an accepted connection (call on this worker's thread).
    void start_session(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context* tls);
    // Called on this worker's thread when draining begins: idle connections are closed,
    // busy ones close after their current response.
    void begin_drain();

  private:
    friend class session;

    // An io_context whose pending handlers can be destroyed on demand, while everything they
    // refer to still exists (io_context's own destructor does it too late for us).
    class worker_context : public boost::asio::io_context {
      public:
        worker_context() : boost::asio::io_context(1) {}
        void destroy_handlers() { shutdown(); }
    };
    shared_state& shared_;
    unsigned index_;
    worker_context ioc_;  // before pools_ and sessions_: destroyed after them
    core::body_parser parser_;
    std::mt19937_64 rng_;
    std::map<const upstream::provider*, std::unique_ptr<upstream::pool>> pools_;
    std::list<session*> sessions_;
};

}  // namespace tollgate::server
