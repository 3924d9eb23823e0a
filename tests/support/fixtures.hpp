#pragma once
// Real processes on 127.0.0.1 with ephemeral ports: the mock upstream and the gateway
// binary, each waited for by its "listening on" log line.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/http_client.hpp"
#include "tests/support/process.hpp"

namespace tollgate::test {

inline constexpr const char* client_key_a = "tg-test-key-a-0123456789abcdef";
inline constexpr const char* client_key_b = "tg-test-key-b-0123456789abcdef";
inline constexpr const char* provider_key = "sk-provider-secret-9876543210";

std::filesystem::path make_temp_dir();

// A port on 127.0.0.1 with nothing listening (bound, then released).
std::uint16_t closed_port();

class mock_upstream {
  public:
    explicit mock_upstream(std::vector<std::string> args = {});
    ~mock_upstream();
    std::uint16_t port() const noexcept { return port_; }
    // GET /mock/wait: true once the counter reaches `at_least` (within timeout_ms).
    bool wait_for(const std::string& field, int at_least, int timeout_ms = 10000) const;
    std::string last_request() const;  // GET /mock/last body
    std::string stats() const;
    // One counter of GET /mock/stats (-1 when it is not there).
    long counter(const std::string& name) const;
    child_process& process() noexcept { return *proc_; }

  private:
    std::unique_ptr<child_process> proc_;
    std::uint16_t port_ = 0;
    bool tls_ = false;
};

class gateway_process {
  public:
    // Writes `yaml` to a temporary tollgate.yaml and starts the gateway on it.
    explicit gateway_process(const std::string& yaml,
                             std::vector<std::pair<std::string, std::string>> env = {});
    // Stops it with SIGTERM and checks it exited 0 with no sanitizer report.
    ~gateway_process();
    std::uint16_t port() const noexcept { return port_; }
    // The admin listener's port, from its "admin listening on" log line (waited for).
    std::uint16_t admin_port();
    // Stops it with `sig` now and returns the exit code (128+signal if killed); the
    // destructor then checks nothing more (the caller judges the exit, e.g. after SIGKILL).
    int stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(60));
    child_process& process() noexcept { return *proc_; }
    const std::filesystem::path& dir() const noexcept { return dir_; }

  private:
    std::filesystem::path dir_;
    std::unique_ptr<child_process> proc_;
    std::uint16_t port_ = 0;
    std::uint16_t admin_port_ = 0;
    bool stopped_ = false;
};

struct config_options {
    std::string server_extra;    // more lines under `server:` (4-space indented)
    std::string provider_extra;  // more lines under the mock provider (4-space indented)
    std::string top_extra;       // more top-level sections
    std::string policies = "[auth, router]";
    std::string scheme = "http";
    std::string host = "127.0.0.1";
    std::string models_extra;  // more models (2-space indented), after the standard ones
    std::string keys_extra;    // more `keys:` items ("  - id: ..."), after team-a and team-b
};

// The standard test config: provider `mock` → the mock upstream, models gpt-4o-mini and
// other-model, keys team-a (every model) and team-b (gpt-4o-mini only).
std::string standard_config(std::uint16_t upstream_port, const config_options& o = {});

// A chat completion body; `content` may carry #mock directives.
std::string chat_body(const std::string& content, bool stream = false,
                      const std::string& model = "gpt-4o-mini");

header_map auth_headers(const std::string& key = client_key_a);

// Fails the running test (or the process, outside a test) if `name` exited non-zero or
// printed a sanitizer report.
void check_clean_exit(const std::string& name, int exit_code, const std::string& output);

// A throwaway CA and two server certificates signed by it: one for 127.0.0.1/localhost,
// one for another host name only (made with the openssl command line).
struct test_certs {
    std::filesystem::path dir, ca, cert, key, wrong_cert, wrong_key;
};
test_certs make_test_certs();

std::string tollgate_binary();

// Polls `done` every `every` until it returns true (true) or `bound` passes (false): a
// bounded wait for an event a test can only observe, never a sleep standing in for one.
template <class F>
bool poll_until(F&& done, std::chrono::milliseconds bound = std::chrono::seconds(10),
                std::chrono::milliseconds every = std::chrono::milliseconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + bound;
    for (;;) {
        if (done()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(every);
    }
}

// A throwaway PostgreSQL server for the PostgreSQL ledger and key store: initdb into a
// temp dir, `postgres` on 127.0.0.1 at a free port (its socket in the same dir), trust
// authentication, one empty database `tollgate`. As root, initdb and postgres run as the
// `postgres` system user (postgres refuses root) and the dir is chowned to it. Ready when
// a connection succeeds (a bounded poll). The destructor stops it (fast shutdown, SIGINT)
// and deletes the dir. Throws std::runtime_error if it cannot start.
class postgres_server {
  public:
    // fsync off unless `durable` (tests do not survive power loss; a benchmark wants real
    // commits).
    explicit postgres_server(bool durable = false);
    ~postgres_server();
    postgres_server(const postgres_server&) = delete;
    postgres_server& operator=(const postgres_server&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    // postgresql://tollgate:<password>@127.0.0.1:<port>/<db>. Trust authentication ignores
    // the password, so tests can check it never reaches a log line.
    std::string url(const std::string& db = "tollgate") const;
    static constexpr const char* password = "pg-s3cret-pw-7f1c";

    // Fast shutdown (SIGINT: sessions are disconnected, open transactions abort), waited for.
    void stop();
    // Starts it again on the same port and data; waits until it accepts connections.
    void start();
    bool running() const noexcept { return proc_ != nullptr; }

    // Runs `sql` (one or more statements) on `db`; returns the first column of the first
    // row of the last result ("" if none). Throws std::runtime_error on failure.
    std::string query(const std::string& sql, const std::string& db = "tollgate") const;

    // The server's log so far (stderr of postgres).
    std::string log() const;

  private:
    void launch();
    std::filesystem::path dir_;
    std::string run_as_;  // "postgres" when we are root
    bool durable_;
    std::uint16_t port_ = 0;
    std::unique_ptr<child_process> proc_;
    std::string old_logs_;
};

// The whole file (empty if it cannot be read).
std::string read_file(const std::filesystem::path& p);
std::string mock_binary();

}  // namespace tollgate::test
