#pragma once
// The access log (server.access_log): one JSON line per API request. Workers only format
// the line and queue it; a writer thread of its own writes batches with write(2) on an
// O_APPEND descriptor, so a slow disk or a stalled stdout reader never blocks the data
// plane. The queue is bounded: past it lines are dropped, counted and reported in the
// log (never the requests). Never a secret: the key appears by id only. reopen()
// (SIGUSR1) opens the path again for logrotate.

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

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
    explicit access_log(std::string target, std::size_t max_queued = 65536);
    ~access_log();  // writes what is queued, then stops the writer
    access_log(const access_log&) = delete;
    access_log& operator=(const access_log&) = delete;

    // Queues the line for `e`; never blocks on I/O. Thread-safe.
    void write(const access_entry& e) noexcept;
    // Reopens the file (after a rotation). Keeps the old descriptor if the path cannot be
    // opened, and says so in the log. Thread-safe.
    void reopen() noexcept;
    // Blocks until every line queued before the call is written (tests, shutdown).
    void flush();
    const std::string& target() const noexcept { return target_; }

    // The JSON line for `e`, newline included (exposed for tests).
    static std::string format(const access_entry& e);

  private:
    void run() noexcept;

    std::string target_;
    std::size_t max_queued_;
    std::mutex mu_;  // guards everything below
    std::condition_variable work_cv_, done_cv_;
    std::string queue_;  // lines waiting, newline-terminated
    std::size_t queued_lines_ = 0;
    std::uint64_t queued_seq_ = 0, written_seq_ = 0, dropped_ = 0;
    bool stop_ = false;
    int fd_ = -1;
    bool reopen_ = false;
    std::thread writer_;
};

}  // namespace tollgate::observe
