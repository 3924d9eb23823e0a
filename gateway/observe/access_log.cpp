#include "gateway/observe/access_log.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "gateway/core/json_text.hpp"
#include "gateway/core/thread_name.hpp"

namespace tollgate::observe {

namespace json_text = core::json_text;

namespace {

int open_target(const std::string& target) {
    if (target == "stdout") return ::dup(STDOUT_FILENO);
    return ::open(target.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

void rfc3339(std::string& out, std::int64_t ms) {
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[40];
    const int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                tm.tm_sec, static_cast<int>(ms % 1000));
    out.append(buf, static_cast<std::size_t>(n));
}

void field(std::string& out, std::string_view name) {
    out += ",\"";
    out += name;
    out += "\":";
}

void opt_string(std::string& out, std::string_view name, std::string_view v) {
    field(out, name);
    if (v.empty())
        out += "null";
    else
        json_text::append_string(out, v);
}

void ms_value(std::string& out, double v) {
    // Milliseconds to the microsecond: enough, and short.
    json_text::append_double(out, static_cast<double>(static_cast<std::int64_t>(v * 1000)) / 1000);
}

}  // namespace

access_log::access_log(std::string target, std::size_t max_queued)
    : target_(std::move(target)), max_queued_(std::max<std::size_t>(1, max_queued)) {
    fd_ = open_target(target_);
    if (fd_ < 0)
        throw std::runtime_error("server.access_log: cannot open " + target_ + ": " +
                                 std::strerror(errno));
    writer_ = std::thread([this] {
        core::name_this_thread("tg-access-log");
        run();
    });
}

access_log::~access_log() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    work_cv_.notify_one();
    writer_.join();
    if (fd_ >= 0) ::close(fd_);
}

std::string access_log::format(const access_entry& e) {
    std::string out;
    out.reserve(384);
    out += "{\"ts\":\"";
    rfc3339(out, e.ts_ms);
    out += '"';
    opt_string(out, "request_id", e.request_id);
    opt_string(out, "key_id", e.key);
    opt_string(out, "method", e.method);
    opt_string(out, "path", e.path);
    opt_string(out, "model", e.model);
    opt_string(out, "provider", e.provider);
    field(out, "status");
    json_text::append_int(out, e.status);
    field(out, "stream");
    out += e.stream ? "true" : "false";
    field(out, "attempts");
    json_text::append_uint(out, e.attempts);
    field(out, "latency_ms");
    ms_value(out, e.latency_ms);
    field(out, "ttft_ms");
    if (e.ttft_ms)
        ms_value(out, *e.ttft_ms);
    else
        out += "null";
    field(out, "overhead_ms");
    if (e.overhead_ms)
        ms_value(out, *e.overhead_ms);
    else
        out += "null";
    field(out, "prompt_tokens");
    if (e.prompt_tokens)
        json_text::append_uint(out, *e.prompt_tokens);
    else
        out += "null";
    field(out, "completion_tokens");
    if (e.completion_tokens)
        json_text::append_uint(out, *e.completion_tokens);
    else
        out += "null";
    field(out, "cost_usd");
    if (e.cost_usd)
        json_text::append_double(out, *e.cost_usd);
    else
        out += "null";
    field(out, "bytes_in");
    json_text::append_uint(out, e.bytes_in);
    field(out, "bytes_out");
    json_text::append_uint(out, e.bytes_out);
    opt_string(out, "error", e.error);
    out += "}\n";
    return out;
}

void access_log::write(const access_entry& e) noexcept {
    try {
        const std::string line = format(e);
        bool wake = false;
        {
            std::lock_guard lock(mu_);
            if (queued_lines_ >= max_queued_) {
                ++dropped_;
                return;
            }
            wake = queue_.empty();
            queue_ += line;
            ++queued_lines_;
            ++queued_seq_;
        }
        if (wake) work_cv_.notify_one();
    } catch (...) {
        // Out of memory formatting one line: the request itself is unaffected.
    }
}

void access_log::flush() {
    std::unique_lock lock(mu_);
    const auto target = queued_seq_;
    work_cv_.notify_one();
    done_cv_.wait(lock, [&] { return written_seq_ >= target || stop_; });
}

void access_log::reopen() noexcept {
    if (target_ == "stdout") return;
    {
        std::lock_guard lock(mu_);
        reopen_ = true;
    }
    work_cv_.notify_one();
}

void access_log::run() noexcept {
    std::string batch;
    std::uint64_t reported_drops = 0;
    for (;;) {
        std::uint64_t seq = 0, dropped = 0;
        bool reopen = false;
        int fd = -1;
        {
            std::unique_lock lock(mu_);
            work_cv_.wait(lock, [&] { return stop_ || reopen_ || !queue_.empty(); });
            if (queue_.empty() && !reopen_ && stop_) return;
            batch.swap(queue_);
            queue_.clear();
            queued_lines_ = 0;
            seq = queued_seq_;
            reopen = std::exchange(reopen_, false);
            dropped = dropped_;
            fd = fd_;
        }
        if (reopen) {
            const int nfd = open_target(target_);
            if (nfd < 0) {
                spdlog::error("access log: cannot reopen {}: {}; still writing to the old file",
                              target_, std::strerror(errno));
            } else {
                ::close(fd);
                fd = nfd;
                {
                    std::lock_guard lock(mu_);
                    fd_ = nfd;
                }
                spdlog::info("access log reopened: {}", target_);
            }
        }
        std::size_t done = 0;
        while (done < batch.size()) {
            const ssize_t n = ::write(fd, batch.data() + done, batch.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                spdlog::warn("access log {}: write failed: {}", target_, std::strerror(errno));
                break;
            }
            done += static_cast<std::size_t>(n);
        }
        batch.clear();
        if (dropped > reported_drops) {
            spdlog::warn("access log {}: {} line(s) dropped so far (the writer could not keep up)",
                         target_, dropped);
            reported_drops = dropped;
        }
        {
            std::lock_guard lock(mu_);
            written_seq_ = seq;
        }
        done_cv_.notify_all();
    }
}

}  // namespace tollgate::observe
