// streamgen: a streaming load generator for the benchmarks. wrk measures whole requests; a
// streaming proxy is judged by when the first event arrives and by how evenly the rest
// follow, and by how many streams it can hold open at once. This client measures exactly that:
//
//  - latency mode (--duration S): C keep-alive connections, each sending streamed chat
//    completions one after the other until S seconds have passed. Reports the time to the
//    first SSE data event (TTFB, from the request write) and the gap between consecutive
//    data events of a stream, as percentiles.
//  - capacity mode (--once): C connections, one stream each, opened at most P connects at a
//    time, all held open until their stream ends. Reports how many completed ([DONE] and the
//    end of the message), the most that were streaming at the same time and, with
//    --watch-pid, the RSS of that process when idle, when all streams were open, and at peak.
//
// A plain HTTP/1.1 client over one io_context: a minimal response-head parser, a chunked
// decoder and an SSE line splitter, nothing else. Every run is bounded by --timeout.
// Output: one `key=value` per line on stdout (for bench/run.sh); progress on stderr.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::bench {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

struct options {
    std::string host = "127.0.0.1";
    unsigned short port = 0;
    std::string path = "/v1/chat/completions";
    std::string key = "tg-demo-key";
    std::string model = "gpt-4o-mini";
    std::string mock = "chunks=50 delay_ms=5";  // the #mock directives of the prompt
    int connections = 16;
    double duration_s = 0;  // latency mode; 0 with --once
    bool once = false;      // capacity mode: one stream per connection
    int connect_parallel = 256;
    double timeout_s = 0;  // 0: duration + 30 s, or 120 s with --once
    int watch_pid = 0;
    bool progress = false;
};

// ---------------------------------------------------------------------------------------
// Sans-io response reader: HTTP/1.1 head, chunked / content-length / close-delimited body,
// SSE events. It only looks for what the measurement needs: the status, the end of the
// message, and the boundaries of `data:` events (and whether one was `[DONE]`).

class response_reader {
  public:
    enum class result { more, done, error };

    // Called once per complete SSE event that carried data; `done_marker`: it was [DONE].
    template <class OnEvent>
    result feed(std::string_view in, OnEvent&& on_event) {
        std::size_t i = 0;
        while (i < in.size()) {
            switch (state_) {
                case st::head: {
                    const std::size_t take = std::min(in.size() - i, max_head - line_.size());
                    const std::size_t before = line_.size();
                    line_.append(in.substr(i, take));
                    const auto end = line_.find("\r\n\r\n", before >= 3 ? before - 3 : 0);
                    if (end == std::string::npos) {
                        if (line_.size() >= max_head) return fail();
                        i += take;
                        break;
                    }
                    i += end + 4 - before;
                    if (!parse_head(std::string_view(line_).substr(0, end + 2))) return fail();
                    line_.clear();
                    if (status_ != 200) return fail();
                    state_ = chunked_ ? st::chunk_size : length_ ? st::body_len : st::body_eof;
                    if (length_ && *length_ == 0) return finish();
                    break;
                }
                case st::chunk_size: {
                    const auto nl = in.find('\n', i);
                    const auto piece =
                        in.substr(i, nl == std::string_view::npos ? in.size() - i : nl - i);
                    if (line_.size() + piece.size() > 64) return fail();
                    line_.append(piece);
                    if (nl == std::string_view::npos) {
                        i = in.size();
                        break;
                    }
                    i = nl + 1;
                    std::uint64_t size = 0;
                    const char* b = line_.data();
                    const char* e = b + line_.size();
                    auto [p, ec] = std::from_chars(b, e, size, 16);
                    if (ec != std::errc() || p == b) return fail();
                    line_.clear();
                    if (size == 0) {
                        state_ = st::trailer;
                    } else {
                        remaining_ = size;
                        state_ = st::chunk_data;
                    }
                    break;
                }
                case st::chunk_data: {
                    const auto n = static_cast<std::size_t>(
                        std::min<std::uint64_t>(remaining_, in.size() - i));
                    if (!sse(in.substr(i, n), on_event)) return fail();
                    i += n;
                    remaining_ -= n;
                    if (remaining_ == 0) state_ = st::chunk_crlf;
                    break;
                }
                case st::chunk_crlf: {
                    const char c = in[i++];
                    if (c == '\n')
                        state_ = st::chunk_size;
                    else if (c != '\r')
                        return fail();
                    break;
                }
                case st::trailer: {  // trailer lines until an empty one
                    const char c = in[i++];
                    if (c == '\r') break;
                    if (c == '\n') {
                        if (line_.empty()) return finish();
                        line_.clear();
                    } else if (line_.size() < 4096) {
                        line_ += c;
                    } else {
                        return fail();
                    }
                    break;
                }
                case st::body_len: {
                    const auto n = static_cast<std::size_t>(
                        std::min<std::uint64_t>(*length_ - consumed_, in.size() - i));
                    if (!sse(in.substr(i, n), on_event)) return fail();
                    i += n;
                    consumed_ += n;
                    if (consumed_ == *length_) return finish();
                    break;
                }
                case st::body_eof:
                    if (!sse(in.substr(i), on_event)) return fail();
                    i = in.size();
                    break;
                case st::done:
                case st::failed:
                    return fail();  // bytes after the end of the message: not expected
            }
        }
        return result::more;
    }
    // The peer closed: the end of a close-delimited body, else an error.
    result eof() { return state_ == st::body_eof ? finish() : fail(); }

    int status() const noexcept { return status_; }
    bool keep_alive() const noexcept { return keep_alive_; }
    bool saw_done() const noexcept { return saw_done_; }

  private:
    enum class st {
        head,
        chunk_size,
        chunk_data,
        chunk_crlf,
        trailer,
        body_len,
        body_eof,
        done,
        failed
    };
    static constexpr std::size_t max_head = 16 * 1024;
    static constexpr std::size_t max_line = 1 << 20;  // one SSE line

    result fail() {
        state_ = st::failed;
        return result::error;
    }
    result finish() {
        state_ = st::done;
        return result::done;
    }
    static bool iequals(std::string_view a, std::string_view b) {
        return a.size() == b.size() &&
               std::equal(a.begin(), a.end(), b.begin(),
                          [](char x, char y) { return (x | 0x20) == (y | 0x20); });
    }
    static std::string_view trim(std::string_view s) {
        while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
        while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
            s.remove_suffix(1);
        return s;
    }
    bool parse_head(std::string_view head) {
        // "HTTP/1.1 200 OK\r\n" then "name: value\r\n" lines.
        auto eol = head.find("\r\n");
        std::string_view status_line = head.substr(0, eol);
        if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12) return false;
        keep_alive_ = status_line[7] == '1';
        auto [p, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, status_);
        if (ec != std::errc()) return false;
        head.remove_prefix(eol + 2);
        while (!head.empty()) {
            eol = head.find("\r\n");
            std::string_view line = head.substr(0, eol);
            head.remove_prefix(eol == std::string_view::npos ? head.size() : eol + 2);
            const auto colon = line.find(':');
            if (colon == std::string_view::npos) continue;
            const auto name = line.substr(0, colon);
            const auto value = trim(line.substr(colon + 1));
            if (iequals(name, "transfer-encoding")) {
                chunked_ = value.find("chunked") != std::string_view::npos;
            } else if (iequals(name, "content-length")) {
                std::uint64_t n = 0;
                auto r = std::from_chars(value.data(), value.data() + value.size(), n);
                if (r.ec != std::errc()) return false;
                length_ = n;
            } else if (iequals(name, "connection")) {
                if (iequals(value, "close")) keep_alive_ = false;
                if (iequals(value, "keep-alive")) keep_alive_ = true;
            }
        }
        if (chunked_) length_.reset();
        if (!chunked_ && !length_) keep_alive_ = false;  // close-delimited
        return true;
    }
    // SSE: lines end with \n (an optional \r before it); a blank line ends an event.
    template <class OnEvent>
    bool sse(std::string_view in, OnEvent& on_event) {
        while (!in.empty()) {
            const auto nl = in.find('\n');
            if (nl == std::string_view::npos) {
                if (sse_line_.size() + in.size() > max_line) return false;
                sse_line_.append(in);
                return true;
            }
            std::string_view line;
            if (sse_line_.empty()) {
                line = in.substr(0, nl);
            } else {
                sse_line_.append(in.substr(0, nl));
                line = sse_line_;
            }
            in.remove_prefix(nl + 1);
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            if (line.empty()) {
                if (event_has_data_) on_event(event_is_done_);
                event_has_data_ = event_is_done_ = false;
            } else if (line.starts_with("data:")) {
                auto v = line.substr(5);
                if (!v.empty() && v.front() == ' ') v.remove_prefix(1);
                event_has_data_ = true;
                if (v == "[DONE]") event_is_done_ = saw_done_ = true;
            }
            sse_line_.clear();
        }
        return true;
    }

    st state_ = st::head;
    std::string line_;  // the head, a chunk-size line or a trailer line
    std::string sse_line_;
    int status_ = 0;
    bool keep_alive_ = true;
    bool chunked_ = false;
    std::optional<std::uint64_t> length_;
    std::uint64_t consumed_ = 0;
    std::uint64_t remaining_ = 0;
    bool event_has_data_ = false;
    bool event_is_done_ = false;
    bool saw_done_ = false;
};

// ---------------------------------------------------------------------------------------
// The run

struct counters {
    std::uint64_t ok = 0;
    std::uint64_t fail_connect = 0;
    std::uint64_t fail_status = 0;   // not 200, or a malformed head (status_0)
    std::uint64_t fail_eof = 0;      // closed, errored or a malformed body
    std::uint64_t fail_no_done = 0;  // the message ended without `data: [DONE]`
    std::uint64_t fail_timeout = 0;  // cut by --timeout
    std::uint64_t events = 0;
    std::map<int, std::uint64_t> statuses;  // answers other than 200, by status
};

struct run_state {
    options opt;
    std::string request;  // the whole request, head and body
    tcp::endpoint endpoint;
    clock_type::time_point start;
    clock_type::time_point stop_starting;  // latency mode: no new stream after this
    bool timed_out = false;
    std::list<tcp::socket*> sockets;  // open sockets, closed by the --timeout watchdog
    counters c;
    std::vector<std::uint32_t> ttfb_us;
    std::vector<std::uint32_t> gap_us;
    int connecting = 0;
    int streaming = 0;  // streams that got their first event and have not ended
    int max_streaming = 0;
    int live = 0;  // connection coroutines still running
    bool spawned_all = false;
    // --watch-pid
    long rss_idle_kb = -1, rss_all_open_kb = -1, rss_peak_kb = -1, hwm_kb = -1;
    bool all_open_sampled = false;
};

long read_status_kb(int pid, std::string_view field) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.starts_with(field) && line.size() > field.size() && line[field.size()] == ':') {
            return std::strtol(line.c_str() + field.size() + 1, nullptr, 10);
        }
    }
    return -1;
}

void sample_rss(run_state& s) {
    if (s.opt.watch_pid <= 0) return;
    const long rss = read_status_kb(s.opt.watch_pid, "VmRSS");
    if (rss > s.rss_peak_kb) s.rss_peak_kb = rss;
    if (s.opt.once && !s.all_open_sampled && s.streaming == s.opt.connections) {
        s.all_open_sampled = true;
        s.rss_all_open_kb = rss;
    }
}

std::uint32_t micros(clock_type::duration d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    return static_cast<std::uint32_t>(std::clamp<long long>(us, 0, UINT32_MAX));
}

// One streamed request on an open connection. Returns whether the connection can be reused.
awaitable<bool> one_stream(run_state& s, tcp::socket& sock, std::vector<char>& buf, bool measure) {
    const auto sent = clock_type::now();
    auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(s.request), use_nothrow);
    (void)wn;
    if (wec) {
        ++(s.timed_out ? s.c.fail_timeout : s.c.fail_eof);
        co_return false;
    }
    response_reader reader;
    bool first = true;
    clock_type::time_point last_event;
    clock_type::time_point now;
    auto on_event = [&](bool /*done_marker*/) {
        ++s.c.events;
        if (first) {
            first = false;
            if (measure) s.ttfb_us.push_back(micros(now - sent));
            if (++s.streaming > s.max_streaming) s.max_streaming = s.streaming;
            if (s.opt.once && s.streaming == s.opt.connections) sample_rss(s);
        } else if (measure) {
            s.gap_us.push_back(micros(now - last_event));
        }
        last_event = now;
    };
    response_reader::result r = response_reader::result::more;
    while (r == response_reader::result::more) {
        auto [ec, n] = co_await sock.async_read_some(asio::buffer(buf), use_nothrow);
        now = clock_type::now();
        if (ec == asio::error::eof)
            r = reader.eof();
        else if (ec)
            break;
        else
            r = reader.feed(std::string_view(buf.data(), n), on_event);
    }
    if (!first) --s.streaming;
    if (r == response_reader::result::done) {
        if (reader.saw_done())
            ++s.c.ok;
        else
            ++s.c.fail_no_done;
        co_return reader.keep_alive();
    }
    if (s.timed_out)
        ++s.c.fail_timeout;
    else if (r == response_reader::result::error && reader.status() != 200) {
        ++s.c.fail_status;
        ++s.c.statuses[reader.status()];  // 0: not an HTTP response
    } else
        ++s.c.fail_eof;
    co_return false;
}

awaitable<void> run_connection(run_state& s) {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket sock(ex);
    std::vector<char> buf(8192);
    auto reg = s.sockets.insert(s.sockets.end(), &sock);
    bool first_on_connection = true;
    for (int round = 0;; ++round) {
        if (s.timed_out) break;
        if (s.opt.once ? round > 0 : clock_type::now() >= s.stop_starting) break;
        if (!sock.is_open()) {
            ++s.connecting;
            auto [ec] = co_await sock.async_connect(s.endpoint, use_nothrow);
            --s.connecting;
            if (ec) {
                ++(s.timed_out ? s.c.fail_timeout : s.c.fail_connect);
                boost::system::error_code ignored;
                sock.close(ignored);
                if (s.opt.once) break;
                asio::steady_timer t(ex, 10ms);  // don't spin on a refusing server
                co_await t.async_wait(use_nothrow);
                continue;
            }
            sock.set_option(tcp::no_delay(true), ec);
            first_on_connection = true;
        }
        // Latency mode: the first stream of a connection also pays for the proxy's upstream
        // connect; it is a warm-up and not measured.
        const bool measure = s.opt.once || !first_on_connection;
        first_on_connection = false;
        if (!co_await one_stream(s, sock, buf, measure)) {
            boost::system::error_code ignored;
            sock.close(ignored);
        }
    }
    boost::system::error_code ignored;
    sock.close(ignored);
    s.sockets.erase(reg);
    --s.live;
}

awaitable<void> spawner(run_state& s) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer t(ex);
    for (int i = 0; i < s.opt.connections && !s.timed_out; ++i) {
        // Bounded connects in flight: a burst of 10k SYNs would overflow the listen backlog.
        for (int spins = 0; s.connecting >= s.opt.connect_parallel && !s.timed_out; ++spins) {
            t.expires_after(200us);
            co_await t.async_wait(use_nothrow);
        }
        ++s.live;
        asio::co_spawn(ex, run_connection(s), asio::detached);
    }
    s.spawned_all = true;
}

awaitable<void> watchdog(run_state& s, asio::io_context& ioc) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer t(ex);
    const auto deadline = s.start + std::chrono::duration_cast<clock_type::duration>(
                                        std::chrono::duration<double>(s.opt.timeout_s));
    auto last_progress = s.start;
    for (;;) {
        t.expires_after(100ms);
        co_await t.async_wait(use_nothrow);
        sample_rss(s);
        const auto now = clock_type::now();
        if (s.opt.progress && now - last_progress >= 1s) {
            last_progress = now;
            std::fprintf(stderr,
                         "streamgen: %.0fs live=%d streaming=%d ok=%llu failed=%llu rss=%ldkB\n",
                         std::chrono::duration<double>(now - s.start).count(), s.live, s.streaming,
                         static_cast<unsigned long long>(s.c.ok),
                         static_cast<unsigned long long>(s.c.fail_connect + s.c.fail_status +
                                                         s.c.fail_eof + s.c.fail_no_done),
                         s.opt.watch_pid > 0 ? read_status_kb(s.opt.watch_pid, "VmRSS") : -1L);
        }
        if (s.live == 0 && (s.spawned_all || s.timed_out)) break;
        if (now >= deadline && !s.timed_out) {
            s.timed_out = true;
            for (auto* sock : s.sockets) {
                boost::system::error_code ignored;
                sock->close(ignored);
            }
        }
        if (now >= deadline + 5s) {  // should not happen: every operation was cancelled
            ioc.stop();
            break;
        }
    }
}

std::uint32_t percentile(const std::vector<std::uint32_t>& sorted, double p) {
    if (sorted.empty()) return 0;
    // nearest rank
    auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
    rank = std::clamp<std::size_t>(rank, 1, sorted.size());
    return sorted[rank - 1];
}

void print_dist(const char* name, std::vector<std::uint32_t>& v) {
    std::sort(v.begin(), v.end());
    std::printf("%s_samples=%zu\n", name, v.size());
    for (double p : {50.0, 90.0, 99.0}) std::printf("%s_p%.0f_us=%u\n", name, p, percentile(v, p));
    std::printf("%s_max_us=%u\n", name, v.empty() ? 0u : v.back());
}

std::string json_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) >= 0x20) out += c;
    }
    return out;
}

std::string build_request(const options& o) {
    // The same ~1 KB chat completion as bench/wrk/chat.lua, streamed.
    std::string filler;
    for (int i = 0; i < 32; ++i) filler += "lorem ipsum dolor sit amet ";
    std::string body =
        R"({"model":")" + json_escape(o.model) +
        R"(","stream":true,"messages":[{"role":"system","content":"You are terse."},)"
        R"({"role":"user","content":")" +
        filler + " #mock " + json_escape(o.mock) + R"("}],"temperature":0.2,"max_tokens":64})";
    std::string req = "POST " + o.path + " HTTP/1.1\r\nHost: " + o.host + ":" +
                      std::to_string(o.port) + "\r\nAuthorization: Bearer " + o.key +
                      "\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n"
                      "Content-Length: " +
                      std::to_string(body.size()) + "\r\n\r\n" + body;
    return req;
}

void usage(const char* argv0) {
    std::fprintf(stderr,
                 "usage: %s --target HOST:PORT [--path P] [--key K] [--model M]\n"
                 "          [--mock \"chunks=50 delay_ms=5\"] [--connections C]\n"
                 "          (--duration S | --once [--connect-parallel P])\n"
                 "          [--timeout S] [--watch-pid PID] [--progress]\n",
                 argv0);
}

bool parse_options(int argc, char** argv, options& o) {
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--once") {
            o.once = true;
            continue;
        }
        if (arg == "--progress") {
            o.progress = true;
            continue;
        }
        if (i + 1 >= argc) return false;
        std::string value = argv[++i];
        try {
            if (arg == "--target") {
                const auto colon = value.rfind(':');
                if (colon == std::string::npos) return false;
                o.host = value.substr(0, colon);
                o.port = static_cast<unsigned short>(std::stoi(value.substr(colon + 1)));
            } else if (arg == "--path") {
                o.path = value;
            } else if (arg == "--key") {
                o.key = value;
            } else if (arg == "--model") {
                o.model = value;
            } else if (arg == "--mock") {
                o.mock = value;
            } else if (arg == "--connections") {
                o.connections = std::stoi(value);
            } else if (arg == "--duration") {
                o.duration_s = std::stod(value);
            } else if (arg == "--connect-parallel") {
                o.connect_parallel = std::max(1, std::stoi(value));
            } else if (arg == "--timeout") {
                o.timeout_s = std::stod(value);
            } else if (arg == "--watch-pid") {
                o.watch_pid = std::stoi(value);
            } else {
                return false;
            }
        } catch (const std::exception&) {
            return false;
        }
    }
    if (o.port == 0 || o.connections < 1) return false;
    if (o.once == (o.duration_s > 0)) return false;  // exactly one mode
    if (o.timeout_s <= 0) o.timeout_s = o.once ? 120 : o.duration_s + 30;
    return true;
}

int run(int argc, char** argv) {
    run_state s;
    if (!parse_options(argc, argv, s.opt)) {
        usage(argv[0]);
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    asio::io_context ioc(1);
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(s.opt.host == "localhost" ? "127.0.0.1" : s.opt.host, ec);
    if (ec) {
        std::fprintf(stderr, "streamgen: bad address %s\n", s.opt.host.c_str());
        return 2;
    }
    s.endpoint = tcp::endpoint(addr, s.opt.port);
    s.request = build_request(s.opt);
    s.ttfb_us.reserve(1 << 16);
    s.gap_us.reserve(1 << 20);
    if (s.opt.watch_pid > 0) {
        s.rss_idle_kb = read_status_kb(s.opt.watch_pid, "VmRSS");
        if (s.rss_idle_kb < 0) {
            std::fprintf(stderr, "streamgen: cannot read /proc/%d/status\n", s.opt.watch_pid);
            return 2;
        }
        s.rss_peak_kb = s.rss_idle_kb;
    }
    s.start = clock_type::now();
    s.stop_starting = s.start + std::chrono::duration_cast<clock_type::duration>(
                                    std::chrono::duration<double>(s.opt.duration_s));
    asio::co_spawn(ioc, spawner(s), asio::detached);
    asio::co_spawn(ioc, watchdog(s, ioc), asio::detached);
    ioc.run();
    const double elapsed = std::chrono::duration<double>(clock_type::now() - s.start).count();
    if (s.opt.watch_pid > 0) s.hwm_kb = read_status_kb(s.opt.watch_pid, "VmHWM");

    const auto failed =
        s.c.fail_connect + s.c.fail_status + s.c.fail_eof + s.c.fail_no_done + s.c.fail_timeout;
    std::printf("streams_ok=%llu\n", static_cast<unsigned long long>(s.c.ok));
    std::printf("streams_failed=%llu\n", static_cast<unsigned long long>(failed));
    std::printf(
        "fail_connect=%llu\nfail_status=%llu\nfail_eof=%llu\nfail_no_done=%llu\n"
        "fail_timeout=%llu\n",
        static_cast<unsigned long long>(s.c.fail_connect),
        static_cast<unsigned long long>(s.c.fail_status),
        static_cast<unsigned long long>(s.c.fail_eof),
        static_cast<unsigned long long>(s.c.fail_no_done),
        static_cast<unsigned long long>(s.c.fail_timeout));
    for (const auto& [status, n] : s.c.statuses)
        std::printf("status_%d=%llu\n", status, static_cast<unsigned long long>(n));
    std::printf("events=%llu\n", static_cast<unsigned long long>(s.c.events));
    std::printf("max_streaming=%d\n", s.max_streaming);
    std::printf("elapsed_s=%.3f\n", elapsed);
    print_dist("ttfb", s.ttfb_us);
    print_dist("gap", s.gap_us);
    if (s.opt.watch_pid > 0) {
        std::printf("rss_idle_kb=%ld\nrss_all_open_kb=%ld\nrss_peak_kb=%ld\nhwm_kb=%ld\n",
                    s.rss_idle_kb, s.rss_all_open_kb, s.rss_peak_kb, s.hwm_kb);
    }
    return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace tollgate::bench

int main(int argc, char** argv) {
    return tollgate::bench::run(argc, argv);
}
