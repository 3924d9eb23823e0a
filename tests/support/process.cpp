#include "tests/support/process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace tollgate::test {

child_process::child_process(std::vector<std::string> argv,
                             std::vector<std::pair<std::string, std::string>> env,
                             const std::string& run_as) {
    // Looked up before fork: getpwnam is not async-signal-safe.
    bool switch_user = false;
    uid_t uid = 0;
    gid_t gid = 0;
    if (!run_as.empty() && ::geteuid() == 0) {
        const passwd* pw = ::getpwnam(run_as.c_str());
        if (!pw) throw std::runtime_error("no such user: " + run_as);
        switch_user = true;
        uid = pw->pw_uid;
        gid = pw->pw_gid;
        env.emplace_back("HOME", pw->pw_dir);
        env.emplace_back("USER", run_as);
    }
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        ::dup2(fds[1], 1);
        ::dup2(fds[1], 2);
        for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
        if (switch_user &&
            (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0)) {
            std::fprintf(stderr, "switching to user %s failed: %s\n", run_as.c_str(),
                         std::strerror(errno));
            ::_exit(127);
        }
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(a.data());
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        std::fprintf(stderr, "exec %s failed: %s\n", args[0], std::strerror(errno));
        ::_exit(127);
    }
    ::close(fds[1]);
    out_fd_ = fds[0];
    reader_ = std::thread([this] { reader(); });
}

child_process::~child_process() {
    if (!exit_code_) stop(SIGKILL, std::chrono::seconds(10));
    if (reader_.joinable()) reader_.join();
    if (out_fd_ >= 0) ::close(out_fd_);
}

void child_process::reader() {
    char buf[4096];
    for (;;) {
        const auto n = ::read(out_fd_, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        std::lock_guard lock(mutex_);
        if (n <= 0) {
            eof_ = true;
            cv_.notify_all();
            return;
        }
        output_.append(buf, static_cast<std::size_t>(n));
        cv_.notify_all();
    }
}

std::optional<std::string> child_process::wait_for_line(const std::string& needle,
                                                        std::chrono::milliseconds timeout,
                                                        std::size_t from) {
    std::unique_lock lock(mutex_);
    std::optional<std::string> found;
    cv_.wait_for(lock, timeout, [&] {
        const auto pos = output_.find(needle, from);
        if (pos != std::string::npos) {
            const auto eol = output_.find('\n', pos);
            if (eol == std::string::npos) return eof_;
            const auto bol = output_.rfind('\n', pos);
            const auto start = bol == std::string::npos ? 0 : bol + 1;
            found = output_.substr(start, eol - start);
            return true;
        }
        return eof_;
    });
    return found;
}

std::string child_process::output() const {
    std::lock_guard lock(mutex_);
    return output_;
}

void child_process::signal(int sig) {
    if (!exit_code_) ::kill(pid_, sig);
}

std::optional<int> child_process::wait_exit(std::chrono::milliseconds timeout) {
    if (exit_code_) return exit_code_;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    // waitpid has no timeout: poll with WNOHANG, backing off (bounded by the deadline).
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
        int status = 0;
        const auto r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return exit_code_;
        }
        if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
}

int child_process::stop(int sig, std::chrono::milliseconds timeout) {
    if (exit_code_) return *exit_code_;
    ::kill(pid_, sig);
    if (auto code = wait_exit(timeout)) return *code;
    ::kill(pid_, SIGKILL);
    wait_exit(std::chrono::seconds(10));
    return -1;
}

run_result run_command(std::vector<std::string> argv, std::chrono::milliseconds timeout,
                       std::vector<std::pair<std::string, std::string>> env,
                       const std::string& run_as) {
    child_process p(std::move(argv), std::move(env), run_as);
    auto code = p.wait_exit(timeout);
    if (!code) return {p.stop(SIGKILL, timeout), p.output()};
    // Let the reader drain the pipe to EOF.
    p.wait_for_line("\x01never\x01", std::chrono::seconds(5));
    return {*code, p.output()};
}

}  // namespace tollgate::test
