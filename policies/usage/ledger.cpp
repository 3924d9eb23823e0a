#include "policies/usage/ledger.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <random>
#include <stdexcept>
#include <utility>

#include <spdlog/spdlog.h>

#include "gateway/core/json_text.hpp"
#include "gateway/core/thread_name.hpp"
#include "policies/usage/spill_file.hpp"
#include "store/database_url.hpp"
#include "store/ledger_backend.hpp"

namespace tollgate::policies {
namespace json_text = core::json_text;

namespace {

void create_parent_dirs(const std::string& file, std::string_view what) {
    const std::filesystem::path parent = std::filesystem::path(file).parent_path();
    if (parent.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec)
        throw std::runtime_error("usage ledger: " + std::string(what) + " " + file +
                                 ": cannot create directory " + parent.string() + ": " +
                                 ec.message());
}

// Money sums: print nano-dollar precision so 0.1 + 0.2 reads 0.3.
double round_usd(double v) {
    if (!std::isfinite(v) || std::fabs(v) >= 1e9) return v;
    return std::round(v * 1e9) / 1e9;
}

// Fixed-width decimal digits at s[pos, pos + n) → out; false unless all are digits.
bool read_digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) return false;
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    out = v;
    return true;
}

ledger::options normalized(ledger::options o) {
    if (o.batch_max == 0) o.batch_max = 1;
    if (o.flush_interval.count() < 0) o.flush_interval = std::chrono::milliseconds{0};
    if (o.busy_timeout.count() < 0) o.busy_timeout = std::chrono::milliseconds{0};
    return o;
}

}  // namespace

std::optional<std::int64_t> parse_time_param(std::string_view s) {
    using namespace std::chrono;
    int y = 0, mo = 0, d = 0;
    if (!read_digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' || !read_digits(s, 5, 2, mo) ||
        s[7] != '-' || !read_digits(s, 8, 2, d))
        return std::nullopt;
    const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
                             day{static_cast<unsigned>(d)}};
    if (!ymd.ok()) return std::nullopt;
    std::int64_t ms = duration_cast<milliseconds>(sys_days{ymd}.time_since_epoch()).count();
    if (s.size() == 10) return ms;

    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return std::nullopt;
    int hh = 0, mm = 0, ss = 0;
    if (!read_digits(s, 11, 2, hh) || s.size() < 19 || s[13] != ':' || !read_digits(s, 14, 2, mm) ||
        s[16] != ':' || !read_digits(s, 17, 2, ss))
        return std::nullopt;
    // ss == 60: a leap second, which RFC 3339 allows; unix time has none, so it runs into
    // the next minute.
    if (hh > 23 || mm > 59 || ss > 60) return std::nullopt;
    ms += ((hh * 60LL + mm) * 60 + ss) * 1000;

    std::size_t pos = 19;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        const std::size_t start = pos;
        int frac_ms = 0, scale = 100;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            frac_ms += (s[pos] - '0') * scale;  // digits past milliseconds are truncated
            scale /= 10;
            ++pos;
        }
        if (pos == start) return std::nullopt;
        ms += frac_ms;
    }

    const std::string_view zone = s.substr(pos);
    if (zone == "Z" || zone == "z") return ms;
    // "+hh:mm" / "-hh:mm"; ' ' stands for '+' when a query string was form-decoded.
    if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-' && zone[0] != ' ') || zone[3] != ':')
        return std::nullopt;
    int oh = 0, om = 0;
    if (!read_digits(zone, 1, 2, oh) || !read_digits(zone, 4, 2, om) || oh > 23 || om > 59)
        return std::nullopt;
    const std::int64_t offset_ms = (oh * 60LL + om) * 60'000;
    return zone[0] == '-' ? ms + offset_ms : ms - offset_ms;
}

std::string ledger::spill_path_for(const std::string& database) {
    if (store::is_postgres_url(database)) return "./data/usage.spill";
    return database + ".spill";
}

bool ledger::shared_by_instances() const noexcept {
    return store::is_postgres_url(options_.database);
}

ledger::ledger(options opts) : options_(normalized(std::move(opts))) {
    if (options_.database.empty()) throw std::runtime_error("usage.database: no path given");
    backend_ = store::make_ledger_backend(options_.database, options_.busy_timeout);
    open_jsonl();
    {
        // Batch ids: a random start in [1, 2^62), then one up per batch.
        std::random_device rd;
        const std::uint64_t r = (std::uint64_t{rd()} << 32) ^ rd();
        next_batch_id_ = static_cast<std::int64_t>(r >> 2) | 1;
    }
    replay_spill();
    // Warm capacity so push() does not allocate in the steady state.
    queue_.reserve(std::min(options_.batch_max, options_.queue_capacity) + 1);
    work_.reserve(std::min(options_.batch_max, options_.queue_capacity) + 1);
    writer_ = std::thread([this] {
        core::name_this_thread("tg-ledger");
        run();
    });
}

void ledger::replay_spill() {
    const std::string& path = options_.spill_path;
    std::error_code ec;
    if (path.empty() || !std::filesystem::exists(path, ec)) return;
    std::vector<std::string> problems;
    const std::vector<spill_batch> batches = read_spill(path, problems);
    for (const auto& p : problems) spdlog::warn("usage ledger: spill file {}: {}", path, p);
    std::size_t stored = 0, skipped = 0;
    for (const spill_batch& b : batches) {
        if (b.records.empty()) continue;
        std::string error;
        switch (backend_->write_batch(b.records, b.id, error)) {
            case store::ledger_backend::write_outcome::failed:
                throw std::runtime_error("usage ledger: " + backend_->name() +
                                         ": cannot apply the spill file " + path + ": " + error +
                                         " (the file is kept; start again once the database "
                                         "takes writes)");
            case store::ledger_backend::write_outcome::already_stored:
                skipped += b.records.size();
                break;
            case store::ledger_backend::write_outcome::stored:
                stored += b.records.size();
                append_jsonl_batch(b.records);
                break;
        }
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        throw std::runtime_error("usage ledger: spill file " + path +
                                 ": applied, but cannot remove it: " + std::strerror(errno));
    replayed_ = stored;
    spdlog::info(
        "usage ledger: applied the spill file {}: {} record(s) stored, {} already in the "
        "database",
        path, stored, skipped);
}

ledger::~ledger() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    work_cv_.notify_one();
    writer_.join();  // the writer drains everything first
    if (jsonl_fd_ >= 0) ::close(jsonl_fd_);
    // The backend closes its connections after the writer stopped (member order).
}

void ledger::open_jsonl() {
    const std::string& path = options_.jsonl;
    if (path.empty()) return;
    create_parent_dirs(path, "usage.jsonl");
    jsonl_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (jsonl_fd_ < 0)
        throw std::runtime_error("usage ledger: usage.jsonl " + path +
                                 ": cannot open for append: " + std::strerror(errno));
}

namespace {
// A written slot's strings above this capacity are given back (release_large_strings):
// request ids, key ids, model and provider names are far shorter.
constexpr std::size_t slot_keep_bytes = 256;
}  // namespace

void ledger::push(const store::usage_record& r) {
    bool wake = false;
    {
        std::lock_guard lock(mutex_);
        if (queued_ < queue_.size())
            queue_[queued_] = r;
        else
            queue_.push_back(r);
        const std::size_t n = ++queued_;
        ++pushed_seq_;
        pending_.fetch_add(1, std::memory_order_relaxed);
        // Wake the writer only on the edges it waits for (first record of an idle queue,
        // a full batch); notifying on every push would wake it a thousand times a batch.
        wake = n == 1 || n == options_.batch_max;
    }
    if (wake) work_cv_.notify_one();
}

bool ledger::saturated() const noexcept {
    return pending_.load(std::memory_order_relaxed) >= options_.queue_capacity;
}

std::size_t ledger::pending() const noexcept {
    return pending_.load(std::memory_order_relaxed);
}

bool ledger::healthy() const noexcept {
    return healthy_.load(std::memory_order_relaxed);
}

std::uint64_t ledger::transactions() const noexcept {
    return transactions_.load(std::memory_order_relaxed);
}

void ledger::on_commit(commit_callback cb) {
    std::lock_guard lock(callback_mutex_);
    callback_ = std::move(cb);
}

void ledger::flush() {
    std::unique_lock lock(mutex_);
    const std::uint64_t target = pushed_seq_;
    if (committed_seq_ >= target) return;
    ++flush_waiters_;
    work_cv_.notify_one();  // stop gathering: write what is there now
    done_cv_.wait(lock, [&] { return committed_seq_ >= target; });
    --flush_waiters_;
}

bool ledger::flush_for(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    const std::uint64_t target = pushed_seq_;
    if (committed_seq_ >= target) return true;
    ++flush_waiters_;
    work_cv_.notify_one();
    const bool done = done_cv_.wait_for(lock, timeout, [&] { return committed_seq_ >= target; });
    --flush_waiters_;
    return done;
}

void ledger::run() noexcept {
    // `work_` takes the whole queue in one swap (so pushers never wait for the writer's
    // I/O) and hands back its written slots for the next pushes; `batch_` is the slice of
    // at most batch_max records written in one transaction, under one batch id.
    for (;;) {
        std::size_t n = 0, first = 0;  // the batch: work_[first, first + n)
        {
            std::unique_lock lock(mutex_);
            if (pos_ == work_end_) {
                pos_ = work_end_ = 0;
                // Give back memory a backlog (a long outage) made us grow.
                if (work_.size() > std::max(options_.queue_capacity, 4 * options_.batch_max))
                    work_ = std::vector<store::usage_record>();
                const bool was_idle = queued_ == 0;
                work_cv_.wait(lock, [&] { return stop_ || abandon_ || queued_ != 0; });
                if (abandon_ || queued_ == 0) break;  // stopping, and everything is written
                // Group commit: a transaction starts at most every flush_interval unless a
                // full batch is waiting (or someone flushes). Coming out of idle, that
                // gathers a trickle into one fsync; under load it makes batches of hundreds
                // rather than of the few records that arrive during one fsync, which rewrote
                // the same B-tree pages for every few records (most of the ledger's CPU).
                const auto gather_until =
                    was_idle ? std::chrono::steady_clock::now() + options_.flush_interval
                             : last_commit_ + options_.flush_interval;
                if (queued_ < options_.batch_max && !stop_ && flush_waiters_ == 0)
                    work_cv_.wait_until(lock, gather_until, [&] {
                        return stop_ || abandon_ || flush_waiters_ > 0 ||
                               queued_ >= options_.batch_max;
                    });
                if (abandon_) break;
                work_.swap(queue_);
                work_end_ = queued_;
                queued_ = 0;
            }
            n = std::min(options_.batch_max, work_end_ - pos_);
            first = pos_;
            batch_ = std::span<const store::usage_record>(work_.data() + first, n);
            pos_ += n;
            batch_id_ = next_batch_id_++;
            in_flight_ = true;
        }

        last_commit_ = std::chrono::steady_clock::now();
        if (!commit_with_retry(batch_, batch_id_)) break;  // abandoned: it is in the spill
        append_jsonl_batch(batch_);
        notify_committed(batch_);
        {
            std::lock_guard lock(mutex_);
            in_flight_ = false;
            committed_seq_ += n;
            pending_.fetch_sub(n, std::memory_order_relaxed);
        }
        done_cv_.notify_all();
        // The written slots go back to the pushers with the next swap: nobody else reads
        // them now (stop_within copies from pos_ on, and the batch no longer).
        for (std::size_t i = first; i < first + n; ++i)
            store::release_large_strings(work_[i], slot_keep_bytes);
    }
    {
        std::lock_guard lock(mutex_);
        writer_exited_ = true;
    }
    done_cv_.notify_all();
}

bool ledger::commit_with_retry(std::span<const store::usage_record> batch, std::int64_t batch_id) {
    using namespace std::chrono_literals;
    std::chrono::milliseconds backoff = 10ms;
    unsigned failures = 0;
    std::string error;
    for (;;) {
        error.clear();
        const auto outcome = backend_->write_batch(batch, batch_id, error);
        if (outcome != store::ledger_backend::write_outcome::failed) {
            transactions_.fetch_add(1, std::memory_order_relaxed);
            if (failures > 0)
                spdlog::info("usage ledger: {}: write recovered after {} failed attempt(s)",
                             backend_->name(), failures);
            if (outcome == store::ledger_backend::write_outcome::already_stored)
                spdlog::info("usage ledger: {}: batch {} was already stored; not written again",
                             backend_->name(), batch_id);
            healthy_.store(true, std::memory_order_relaxed);
            return true;
        }
        ++failures;
        healthy_.store(false, std::memory_order_relaxed);
        // The batch is kept and retried until it commits (or a shutdown spills it):
        // dropping it would lose billing.
        spdlog::error(
            "usage ledger: {}: writing {} record(s) failed (attempt {}): {}; "
            "retrying in {} ms",
            backend_->name(), batch.size(), failures, error, backoff.count());
        std::unique_lock lock(mutex_);
        if (work_cv_.wait_for(lock, backoff, [&] { return abandon_; })) return false;
        backoff = std::min<std::chrono::milliseconds>(backoff * 2, 1s);
    }
}

bool ledger::stop_within(std::chrono::milliseconds timeout) {
    using namespace std::chrono_literals;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (flush_for(std::max<std::chrono::milliseconds>(timeout - 1s, 0ms))) return true;

    std::vector<spill_batch> out;
    {
        std::lock_guard lock(mutex_);
        abandon_ = true;
        // The batch being written keeps its id: if its commit goes through after all, the
        // replay finds the id and skips it.
        // Copied, not moved: the writer may still be reading batch_ and work_.
        if (in_flight_)
            out.push_back(spill_batch{
                batch_id_, std::vector<store::usage_record>(batch_.begin(), batch_.end())});
        std::vector<store::usage_record> rest;
        rest.reserve(work_end_ - pos_ + queued_);
        rest.insert(rest.end(), work_.begin() + static_cast<std::ptrdiff_t>(pos_),
                    work_.begin() + static_cast<std::ptrdiff_t>(work_end_));
        pos_ = work_end_;
        rest.insert(rest.end(), queue_.begin(),
                    queue_.begin() + static_cast<std::ptrdiff_t>(queued_));
        queued_ = 0;
        for (std::size_t i = 0; i < rest.size(); i += options_.batch_max) {
            spill_batch b;
            b.id = next_batch_id_++;
            const std::size_t end = std::min(rest.size(), i + options_.batch_max);
            b.records.assign(
                std::make_move_iterator(rest.begin() + static_cast<std::ptrdiff_t>(i)),
                std::make_move_iterator(rest.begin() + static_cast<std::ptrdiff_t>(end)));
            out.push_back(std::move(b));
        }
    }
    work_cv_.notify_all();
    std::size_t count = 0;
    for (const auto& b : out) count += b.records.size();
    try {
        write_spill(options_.spill_path, out);
        spilled_ = count;
        spdlog::warn(
            "usage ledger: {}: {} record(s) not durable at shutdown are in the spill file {}; "
            "the next start applies them before it serves",
            backend_->name(), count, options_.spill_path);
    } catch (const std::exception& e) {
        spdlog::critical("usage ledger: {} record(s) lost at shutdown: {}", count, e.what());
    }
    std::unique_lock lock(mutex_);
    return done_cv_.wait_until(lock, std::max(deadline, std::chrono::steady_clock::now() + 100ms),
                               [&] { return writer_exited_; });
}

void ledger::append_jsonl_batch(std::span<const store::usage_record> batch) {
    if (jsonl_fd_ < 0) return;
    jsonl_buffer_.clear();
    // An earlier failed write may have left half a line: end it, so later lines parse.
    if (jsonl_line_open_) jsonl_buffer_.push_back('\n');
    for (const store::usage_record& r : batch) {
        store::append_jsonl(jsonl_buffer_, r);
        jsonl_buffer_.push_back('\n');
    }
    // One write per batch; O_APPEND. No fsync: the database is the durable record, the
    // log is a convenience copy.
    std::size_t written = 0;
    while (written < jsonl_buffer_.size()) {
        const ssize_t w =
            ::write(jsonl_fd_, jsonl_buffer_.data() + written, jsonl_buffer_.size() - written);
        if (w < 0) {
            if (errno == EINTR) continue;
            spdlog::error(
                "usage ledger: usage.jsonl {}: appending {} line(s) failed: {}; the "
                "records are in the database",
                options_.jsonl, batch.size(), std::strerror(errno));
            break;
        }
        written += static_cast<std::size_t>(w);
    }
    if (written > 0) jsonl_line_open_ = jsonl_buffer_[written - 1] != '\n';
}

void ledger::notify_committed(std::span<const store::usage_record> batch) {
    std::lock_guard lock(callback_mutex_);
    if (!callback_) return;
    try {
        callback_(batch);
    } catch (const std::exception& e) {
        spdlog::error("usage ledger: commit callback threw: {}", e.what());
    } catch (...) {
        spdlog::error("usage ledger: commit callback threw");
    }
}

std::vector<store::usage_row> ledger::aggregate(const store::usage_query& q) const {
    std::lock_guard lock(reader_mutex_);
    return backend_->aggregate(q);
}

std::string ledger::aggregate_json(const store::usage_query& q) const {
    const std::vector<store::usage_row> rows = aggregate(q);
    std::string out = "{\"data\":[";
    auto text_field = [&](const char* name, const std::optional<std::string>& v) {
        out += '"';
        out += name;
        out += "\":";
        if (v)
            json_text::append_string(out, *v);
        else
            out += "null";
        out += ',';
    };
    bool first = true;
    for (const store::usage_row& row : rows) {
        if (!first) out += ',';
        first = false;
        out += '{';
        if (q.by_key) text_field("key", row.key);
        if (q.by_model) text_field("model", row.model);
        if (q.by_day) text_field("day", row.day);
        if (q.by_hour) text_field("hour", row.hour);
        out += "\"requests\":";
        json_text::append_uint(out, row.requests);
        out += ",\"prompt_tokens\":";
        json_text::append_uint(out, row.prompt_tokens);
        out += ",\"completion_tokens\":";
        json_text::append_uint(out, row.completion_tokens);
        out += ",\"total_tokens\":";
        json_text::append_uint(out, row.total_tokens);
        out += ",\"cost_usd\":";
        json_text::append_double(out, round_usd(row.cost_usd));
        out += '}';
    }
    out += "]}";
    return out;
}

ledger::totals ledger::totals_since(const std::string& key_id, std::int64_t since_ms) const {
    std::lock_guard lock(reader_mutex_);
    return backend_->totals_since(key_id, since_ms);
}

}  // namespace tollgate::policies
