#pragma once
// The listeners, the worker threads and the process lifecycle: accept, hand each
// connection to a worker (round robin), drain on SIGTERM/SIGINT.

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "gateway/server/worker.hpp"

namespace tollgate::server {

class server {
  public:
    // Throws std::runtime_error if a listener cannot be bound or TLS files cannot be read.
    // `metrics` (may be null) must outlive the server.
    explicit server(std::shared_ptr<const generation> gen, observe::metrics* metrics = nullptr);
    ~server();

    // /readyz answers 503 while `probe` returns false (called on worker threads). Call before
    // run().
    void set_readiness(std::function<bool()> probe);

    // SIGHUP calls `reload` (on the acceptor thread). Call before run().
    void on_reload(std::function<void()> reload);

    // Swaps in a new configuration generation: requests in flight finish on the one they
    // started with, new requests (and kept-alive connections' next requests) use `gen`.
    // Listeners, threads and TLS of the client side stay as they were. Thread-safe.
    void install(std::shared_ptr<const generation> gen);
    std::shared_ptr<const generation> current() const;

    // Serves until a termination signal, then drains. Returns the process exit code.
    int run();

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace tollgate::server
