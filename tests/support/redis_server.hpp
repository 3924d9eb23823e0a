#pragma once
// A real redis-server for the scale-out tests: on 127.0.0.1, a port of its own, no
// persistence, data in a temporary directory; stopped (and restartable on the same port,
// as after a crash or an operator's restart) by the test.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/fixtures.hpp"
#include "tests/support/process.hpp"

namespace tollgate::test {

class redis_server {
  public:
    // Starts it (waits for "Ready to accept connections"). Throws if redis-server is
    // missing or does not start.
    redis_server();
    // TLS only (rediss://), with the server certificate and key of `certs` (for
    // 127.0.0.1); clients are not asked for certificates.
    explicit redis_server(const test_certs& certs);
    ~redis_server();
    std::uint16_t port() const noexcept { return port_; }
    std::string url() const {
        return std::string(tls_ ? "rediss" : "redis") + "://127.0.0.1:" + std::to_string(port_) +
               "/0";
    }
    // Stops it (SIGTERM, no save) and waits for the exit.
    void stop();
    // Starts it again on the same port (empty: no persistence, no script cache).
    void start();
    // SIGSTOP / SIGCONT: a Redis that accepts nothing and answers nothing (a hung or
    // partitioned server) without closing its connections.
    void pause();
    void resume();
    bool running() const noexcept { return proc_ != nullptr; }
    // Runs redis-cli against it; returns its output with the trailing newline removed.
    std::string cli(const std::vector<std::string>& args) const;

  private:
    void start_on_free_port();
    std::filesystem::path dir_;
    bool tls_ = false;
    std::filesystem::path cert_, key_, ca_;
    std::uint16_t port_ = 0;
    std::unique_ptr<child_process> proc_;
};

}  // namespace tollgate::test
