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
    explicit server(std::shared_ptr<const generation> gen);
    ~server();

    // /readyz answers 503 while `probe` returns false (called on worker threads). Call before
    // run().
    void set_readiness(std::function<bool()> probe);

    // Serves until a termination signal, then drains. Returns the process exit code.
    int run();

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace tollgate::server
