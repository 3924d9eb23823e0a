#pragma once
// A child process for integration tests: started with its stdout and stderr captured,
// waited on by event (a line appearing), never left running after the test.

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace tollgate::test {

class child_process {
  public:
    // `run_as`: a system user the child switches to (setgid/setuid after fork) when this
    // process is root; ignored otherwise. For servers that refuse to run as root (postgres).
    explicit child_process(std::vector<std::string> argv,
                           std::vector<std::pair<std::string, std::string>> env = {},
                           const std::string& run_as = {});
    ~child_process();
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    // Waits until the captured output has a line containing `needle` (after `from`, an
    // offset into output()); returns that line, or nullopt on timeout or exit.
    std::optional<std::string> wait_for_line(const std::string& needle,
                                             std::chrono::milliseconds timeout,
                                             std::size_t from = 0);
    // Sends `sig` and waits for the exit; returns the exit code (128+signal if killed),
    // or -1 if it did not exit within the timeout (then it is killed).
    int stop(int sig, std::chrono::milliseconds timeout);
    // Waits for exit without sending anything.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout);
    void signal(int sig);
    pid_t pid() const noexcept { return pid_; }
    std::string output() const;

  private:
    void reader();
    pid_t pid_ = -1;
    int out_fd_ = -1;
    std::thread reader_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::string output_;
    bool eof_ = false;
    std::optional<int> exit_code_;
};

// Runs a command to completion (bounded), returning exit code and output.
struct run_result {
    int exit_code;
    std::string output;
};
run_result run_command(std::vector<std::string> argv, std::chrono::milliseconds timeout,
                       std::vector<std::pair<std::string, std::string>> env = {},
                       const std::string& run_as = {});

}  // namespace tollgate::test
