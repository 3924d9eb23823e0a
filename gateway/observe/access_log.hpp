#pragma once
// The access log (server.access_log): one JSON line per API request, written with one
// write(2) on an O_APPEND descriptor, so lines from several workers never interleave and
// nothing sits in a user-space buffer when the process dies. Never a secret: the key
// appears by id only. reopen() (SIGUSR1) opens the path again for logrotate.

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate::observe {

struct access_entry {
    std::int64_t ts_ms = 0;  // Unix ms when the request finished
    std::string_view request_id, key, model, provider, method, path;
    int status = 0;
    bool stream = false;
    std::uint32_t attempts = 0;
    double latency_ms = 0;
    std::optional<double> ttft_ms, overhead_ms;
    std::optional<std::uint64_t> prompt_tokens, completion_tokens;
    std::optional<double> cost_usd;
    std::uint64_t bytes_in = 0, bytes_out = 0;
    std::string_view error;  // error code, empty if none
};

class access_log {
  public:
    // `target`: "stdout" or a file path (opened for append, created 0640 if missing).
    // Throws std::runtime_error when the file cannot be opened.
    explicit access_log(std::string target);
    ~access_log();
    access_log(const access_log&) = delete;
    access_log& operator=(const access_log&) = delete;

    void write(const access_entry& e) noexcept;
    // Reopens the file (after a rotation). Keeps the old descriptor if the path cannot be
    // opened, and says so in the log. Thread-safe.
    void reopen() noexcept;
    const std::string& target() const noexcept { return target_; }

    // The JSON line for `e`, newline included (exposed for tests).
    static std::string format(const access_entry& e);

  private:
    std::string target_;
    std::mutex mu_;  // guards fd_ against reopen(); writes hold it only to read fd_
    int fd_ = -1;
};

}  // namespace tollgate::observe
