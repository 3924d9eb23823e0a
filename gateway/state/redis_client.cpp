#include "gateway/state/redis_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "gateway/core/thread_name.hpp"

namespace tollgate::state {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace asio::experimental::awaitable_operators;
using clock = std::chrono::steady_clock;

namespace {

// Completion handlers and listeners are the callers' code: an exception from one must not
// unwind a connection's coroutine (its commands would never be answered).
template <class F, class... A>
void invoke_guarded(F& f, A&&... a) noexcept {
    try {
        f(std::forward<A>(a)...);
    } catch (const std::exception& e) {
        spdlog::error("redis: a completion handler threw: {}", e.what());
    } catch (...) {
        spdlog::error("redis: a completion handler threw");
    }
}

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::chrono::milliseconds backoff_min{50};
constexpr std::chrono::milliseconds backoff_max{2000};

std::string percent_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size()) {
            unsigned v = 0;
            const auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
            if (ec == std::errc{} && p == s.data() + i + 3) {
                out += static_cast<char>(v);
                i += 2;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

}  // namespace

std::string redis_endpoint::redacted() const {
    std::string out = tls ? "rediss://" : "redis://";
    if (host.find(':') != std::string::npos)
        out += '[' + host + ']';
    else
        out += host;
    out += ':' + std::to_string(port) + '/' + std::to_string(db);
    return out;
}

redis_endpoint parse_redis_url(std::string_view url) {
    redis_endpoint ep;
    if (url.starts_with("rediss://")) {
        ep.tls = true;
        url.remove_prefix(9);
    } else if (url.starts_with("redis://")) {
        url.remove_prefix(8);
    } else {
        throw std::invalid_argument("state.redis_url: expected redis:// or rediss://");
    }
    if (const auto at = url.rfind('@'); at != std::string_view::npos) {
        const auto cred = url.substr(0, at);
        url.remove_prefix(at + 1);
        if (const auto colon = cred.find(':'); colon != std::string_view::npos) {
            ep.user = percent_decode(cred.substr(0, colon));
            ep.password = percent_decode(cred.substr(colon + 1));
        } else {
            ep.password = percent_decode(cred);  // redis://secret@host: the password alone
        }
    }
    std::string_view hostport = url;
    if (const auto slash = url.find('/'); slash != std::string_view::npos) {
        hostport = url.substr(0, slash);
        const auto db = url.substr(slash + 1);
        if (!db.empty()) {
            const auto [p, ec] = std::from_chars(db.data(), db.data() + db.size(), ep.db);
            if (ec != std::errc{} || p != db.data() + db.size() || ep.db > 65535)
                throw std::invalid_argument("state.redis_url: the database must be a number");
        }
    }
    std::string_view port;
    if (hostport.starts_with('[')) {
        const auto close = hostport.find(']');
        if (close == std::string_view::npos)
            throw std::invalid_argument("state.redis_url: unclosed '[' in the host");
        ep.host = std::string(hostport.substr(1, close - 1));
        const auto rest = hostport.substr(close + 1);
        if (rest.starts_with(':')) port = rest.substr(1);
    } else if (const auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
        ep.host = std::string(hostport.substr(0, colon));
        port = hostport.substr(colon + 1);
    } else {
        ep.host = std::string(hostport);
    }
    if (ep.host.empty()) throw std::invalid_argument("state.redis_url: no host");
    if (!port.empty()) {
        unsigned p = 0;
        const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
        if (ec != std::errc{} || end != port.data() + port.size() || p == 0 || p > 65535)
            throw std::invalid_argument("state.redis_url: bad port");
        ep.port = static_cast<std::uint16_t>(p);
    }
    return ep;
}

redis_client::script::script(std::string src) : source(std::move(src)) {
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(source.data()), source.size(), d);
    static constexpr char hex[] = "0123456789abcdef";
    for (unsigned char c : d) {
        sha1 += hex[c >> 4];
        sha1 += hex[c & 15];
    }
}

struct redis_client::impl {
    explicit impl(redis_options o) : opts(std::move(o)) {}
    redis_options opts;
    // The home: an io_context whose pending handlers can be destroyed while the
    // connections they refer to still exist.
    struct home_context : asio::io_context {
        home_context() : asio::io_context(1) {}
        void destroy_handlers() { shutdown(); }
    };
    home_context ioc;
    asio::executor_work_guard<asio::io_context::executor_type> guard{ioc.get_executor()};
    std::optional<asio::ssl::context> tls;
    std::vector<std::shared_ptr<connection>> conns;  // the home's data connections
    std::shared_ptr<connection> subscriber;
    std::size_t next = 0;  // round robin
    bool stopping = false;
    std::mutex up_mu;
    std::condition_variable up_cv;
    std::thread thread;

    // Lanes by io_context; a lane is owned by its own coroutines (it ends with them), so
    // only weakly here. A context's address may be reused after it is gone: an expired
    // entry is replaced.
    std::mutex lanes_mu;
    std::vector<std::pair<const asio::io_context*, std::weak_ptr<connection>>> lanes;
    std::atomic<bool> closed{false};
    bool thread_joined = false;  // close() ran (the owner's thread only)

    std::atomic<int> up{0};  // home data connections up
    std::atomic<std::uint64_t> commands{0}, writes{0}, failures{0}, reconnects{0}, lanes_opened{0},
        lane_commands{0};
};

class redis_client::connection : public std::enable_shared_from_this<connection> {
  public:
    // A home connection (on the home io_context) or a lane (`lane`: on a worker's).
    connection(std::shared_ptr<impl> im, asio::any_io_executor ex, bool lane,
               std::string channel = {}, std::function<void(std::string_view)> on_message = {})
        : keep_(std::move(im)),
          im_(*keep_),
          ex_(std::move(ex)),
          lane_(lane),
          channel_(std::move(channel)),
          on_message_(std::move(on_message)),
          resolver_(ex_),
          wake_(ex_),
          watchdog_(ex_) {}

    // The coroutines own the connection: it lives until both have ended (stopped, or
    // destroyed with their io_context).
    void start() {
        asio::co_spawn(ex_, run(), [self = shared_from_this()](std::exception_ptr) {});
        asio::co_spawn(ex_, watch(), [self = shared_from_this()](std::exception_ptr) {});
    }

    const asio::any_io_executor& executor() const noexcept { return ex_; }

    bool up() const noexcept { return up_; }

    // On the connection's thread.
    void enqueue(const std::string& bytes, handler done) {
        if (!up_) {
            invoke_guarded(done, redis_reply{});
            return;
        }
        outbox_ += bytes;
        pending_.push_back({clock::now() + im_.opts.timeout, std::move(done)});
        if (pending_.size() == 1) watchdog_.cancel();
        wake_.cancel();
    }

    void stop() {
        stopping_ = true;
        close();
        wake_.cancel();
        watchdog_.cancel();
        backoff_timer_cancel();
    }

  private:
    struct pending {
        clock::time_point deadline;
        handler done;
    };

    bool subscriber() const noexcept { return !channel_.empty(); }
    bool home_data() const noexcept { return !lane_ && !subscriber(); }

    void close() {
        error_code ec;
        if (tls_) {
            tls_->next_layer().shutdown(tcp::socket::shutdown_both, ec);
            tls_->next_layer().close(ec);
        }
        if (plain_) {
            plain_->shutdown(tcp::socket::shutdown_both, ec);
            plain_->close(ec);
        }
    }

    void backoff_timer_cancel() {
        if (backoff_) backoff_->cancel();
    }

    void fail_all(redis_reply::status how) {
        auto list = std::move(pending_);
        pending_.clear();
        outbox_.clear();
        for (auto& p : list) {
            redis_reply r;
            r.how = how;
            invoke_guarded(p.done, std::move(r));
        }
    }

    asio::awaitable<std::pair<error_code, std::size_t>> read_some(asio::mutable_buffer b) {
        if (tls_) {
            auto [ec, n] = co_await tls_->async_read_some(b, use_tuple);
            co_return std::pair{ec, n};
        }
        auto [ec, n] = co_await plain_->async_read_some(b, use_tuple);
        co_return std::pair{ec, n};
    }
    asio::awaitable<error_code> write_all(const std::string& data) {
        if (tls_) {
            auto [ec, n] = co_await asio::async_write(*tls_, asio::buffer(data), use_tuple);
            co_return ec;
        }
        auto [ec, n] = co_await asio::async_write(*plain_, asio::buffer(data), use_tuple);
        co_return ec;
    }

    // Connect, TLS, AUTH, SELECT, PING; true when the connection is ready for commands.
    asio::awaitable<bool> open() {
        const auto& ep = im_.opts.endpoint;
        plain_.reset();
        tls_.reset();
        parser_ = resp_parser{};
        auto [rec, results] =
            co_await resolver_.async_resolve(ep.host, std::to_string(ep.port), use_tuple);
        if (rec) {
            last_error_ = "cannot resolve the host: " + rec.message();
            co_return false;
        }
        plain_.emplace(ex_);
        auto [cec, endpoint] = co_await asio::async_connect(*plain_, results, use_tuple);
        if (cec) {
            last_error_ = "cannot connect: " + cec.message();
            co_return false;
        }
        error_code ignored;
        plain_->set_option(tcp::no_delay(true), ignored);
        if (ep.tls) {
            tls_.emplace(std::move(*plain_), *im_.tls);
            plain_.reset();
            SSL_set_tlsext_host_name(tls_->native_handle(), ep.host.c_str());
            tls_->set_verify_callback(asio::ssl::host_name_verification(ep.host));
            auto [hec] = co_await tls_->async_handshake(asio::ssl::stream_base::client, use_tuple);
            if (hec) {
                last_error_ = "TLS handshake failed: " + hec.message();
                co_return false;
            }
        }
        std::string hello;
        std::size_t expect = 0;
        std::size_t optional_from = SIZE_MAX;  // replies from here on may be errors
        if (!ep.password.empty()) {
            if (ep.user.empty())
                append_command(hello, {"AUTH", ep.password});
            else
                append_command(hello, {"AUTH", ep.user, ep.password});
            ++expect;
        }
        if (ep.db != 0 && !subscriber()) {
            append_command(hello, {"SELECT", std::to_string(ep.db)});
            ++expect;
        }
        // A PING answered proves a Redis that serves, not just a kernel that accepted the
        // connection into the backlog of a hung (or stopped) server.
        if (!subscriber()) {
            append_command(hello, {"PING"});
            ++expect;
            // Last: a refusal (an ACL without SCRIPT) only costs a NOSCRIPT → EVAL later.
            optional_from = expect;
            for (const auto& src : im_.opts.preload) {
                append_command(hello, {"SCRIPT", "LOAD", src});
                ++expect;
            }
        }
        if (subscriber()) append_command(hello, {"SUBSCRIBE", channel_});
        if (auto ec = co_await write_all(hello)) {
            last_error_ = "write failed: " + ec.message();
            co_return false;
        }
        std::array<char, 4096> buf;
        std::size_t answered = 0;
        while (expect > 0) {
            auto [ec, n] = co_await read_some(asio::buffer(buf));
            if (ec) {
                last_error_ = "closed during AUTH/SELECT: " + ec.message();
                co_return false;
            }
            std::string_view in(buf.data(), n);
            while (expect > 0) {
                const auto st = parser_.feed(in);
                if (st == resp_parser::status::error) {
                    last_error_ = "not a Redis server (protocol error)";
                    co_return false;
                }
                if (st == resp_parser::status::more) break;
                const auto v = parser_.take();
                --expect;
                const bool optional = answered++ >= optional_from;
                if (v.is_error() && optional) {
                    spdlog::warn("redis {}: SCRIPT LOAD refused ({}); scripts go by EVAL",
                                 im_.opts.name, v.str.substr(0, 200));
                    continue;
                }
                if (v.is_error()) {
                    // Redis's own words ("WRONGPASS invalid username-password pair");
                    // they never echo the password.
                    last_error_ = "refused: " + v.str.substr(0, 200);
                    co_return false;
                }
            }
            // Bytes past the handshake replies (the SUBSCRIBE confirmation) are parsed
            // by the reader from the parser's state; nothing else can have arrived.
            if (!in.empty()) leftover_.assign(in);
        }
        co_return true;
    }

    void dispatch(resp_value v) {
        if (subscriber()) {
            if (v.type != resp_value::kind::array || v.elements.empty()) return;
            const auto& kind = v.elements[0].str;
            if (kind == "message" && v.elements.size() >= 3) {
                if (!v.elements[2].str.empty())
                    invoke_guarded(on_message_, std::string_view(v.elements[2].str));
            } else if (kind == "subscribe") {
                invoke_guarded(on_message_, std::string_view());
            }
            return;
        }
        if (pending_.empty()) {
            protocol_broken_ = true;
            return;
        }
        auto p = std::move(pending_.front());
        pending_.pop_front();
        redis_reply r;
        r.how = redis_reply::status::ok;
        r.value = std::move(v);
        invoke_guarded(p.done, std::move(r));
    }

    asio::awaitable<void> reader() {
        std::array<char, 16384> buf;
        std::string carried = std::move(leftover_);
        leftover_.clear();
        for (;;) {
            std::string_view in;
            std::size_t n = 0;
            if (!carried.empty()) {
                in = carried;
            } else {
                auto [ec, got] = co_await read_some(asio::buffer(buf));
                if (ec) {
                    if (!stopping_) last_error_ = "connection lost: " + ec.message();
                    co_return;
                }
                n = got;
                in = std::string_view(buf.data(), n);
            }
            for (;;) {
                const auto st = parser_.feed(in);
                if (st == resp_parser::status::error) {
                    last_error_ = "protocol error in a reply";
                    co_return;
                }
                if (st == resp_parser::status::more) break;
                dispatch(parser_.take());
                if (protocol_broken_) {
                    last_error_ = "a reply nobody asked for";
                    co_return;
                }
            }
            carried.clear();
        }
    }

    asio::awaitable<void> writer() {
        std::string buf;
        for (;;) {
            if (outbox_.empty()) {
                wake_.expires_at(clock::time_point::max());
                co_await wake_.async_wait(use_tuple);
                const auto cs = co_await asio::this_coro::cancellation_state;
                if (cs.cancelled() != asio::cancellation_type::none || stopping_) co_return;
                continue;
            }
            buf.clear();
            buf.swap(outbox_);
            if (auto ec = co_await write_all(buf)) {
                last_error_ = "write failed: " + ec.message();
                close();  // ends the reader too
                co_return;
            }
            im_.writes.fetch_add(1, std::memory_order_relaxed);
        }
    }

    // Fails the connection when its oldest command is past its deadline.
    asio::awaitable<void> watch() {
        while (!stopping_) {
            watchdog_.expires_at(pending_.empty() || timed_out_ ? clock::time_point::max()
                                                                : pending_.front().deadline);
            co_await watchdog_.async_wait(use_tuple);
            if (stopping_) co_return;
            if (up_ && !pending_.empty() && pending_.front().deadline <= clock::now()) {
                timed_out_ = true;
                last_error_ = "no answer within state.timeout";
                close();
            }
        }
    }

    asio::awaitable<void> run() {
        auto backoff = backoff_min;
        bool was_up = false;
        bool down_logged = false;  // one warning per outage, not one per retry
        asio::steady_timer timer(ex_);
        backoff_ = &timer;
        while (!stopping_) {
            // The whole connect + handshake is bounded like a command, at least 1 s: the
            // timer closes the socket, which ends whatever open() waits for.
            asio::steady_timer limit(ex_);
            limit.expires_after(
                std::max<std::chrono::milliseconds>(im_.opts.timeout, std::chrono::seconds(1)));
            opening_ = true;
            limit.async_wait([this](error_code ec) {
                if (ec || !opening_) return;
                limit_hit_ = true;
                resolver_.cancel();
                close();
            });
            limit_hit_ = false;
            bool ok = co_await open();
            opening_ = false;
            limit.cancel();
            if (limit_hit_) {
                ok = false;
                last_error_ = "connect timed out";
            }
            if (stopping_) break;
            if (!ok) {
                close();
                im_.failures.fetch_add(1, std::memory_order_relaxed);
                if (!down_logged)
                    spdlog::warn("redis {} {}: {}; retrying", im_.opts.name,
                                 im_.opts.endpoint.redacted(), last_error_);
                was_up = false;
                down_logged = true;
                timer.expires_after(backoff);
                co_await timer.async_wait(use_tuple);
                backoff = std::min(backoff * 2, backoff_max);
                continue;
            }
            if (backoff != backoff_min || was_up)
                im_.reconnects.fetch_add(1, std::memory_order_relaxed);
            if (lane_)
                spdlog::debug("redis {} {}: connected (a worker's lane)", im_.opts.name,
                              im_.opts.endpoint.redacted());
            else
                spdlog::info("redis {} {}: connected{}", im_.opts.name,
                             im_.opts.endpoint.redacted(), subscriber() ? " (subscriber)" : "");
            backoff = backoff_min;
            was_up = true;
            down_logged = false;
            up_ = true;
            timed_out_ = false;
            protocol_broken_ = false;
            if (home_data()) {
                {
                    std::lock_guard lock(im_.up_mu);
                    im_.up.fetch_add(1, std::memory_order_relaxed);
                }
                im_.up_cv.notify_all();
            }
            co_await (reader() || writer());
            up_ = false;
            if (home_data()) im_.up.fetch_sub(1, std::memory_order_relaxed);
            close();
            if (stopping_) break;
            spdlog::warn("redis {} {}: {}; reconnecting", im_.opts.name,
                         im_.opts.endpoint.redacted(), last_error_);
            down_logged = true;
            im_.failures.fetch_add(1, std::memory_order_relaxed);
            fail_all(timed_out_ ? redis_reply::status::timeout : redis_reply::status::lost);
        }
        backoff_ = nullptr;
        fail_all(redis_reply::status::unavailable);
    }

    std::shared_ptr<impl> keep_;
    impl& im_;
    asio::any_io_executor ex_;
    bool lane_ = false;
    std::string channel_;
    std::function<void(std::string_view)> on_message_;
    tcp::resolver resolver_;
    std::optional<tcp::socket> plain_;
    std::optional<asio::ssl::stream<tcp::socket>> tls_;
    resp_parser parser_;
    std::string leftover_;
    std::string outbox_;
    std::deque<pending> pending_;
    asio::steady_timer wake_;
    asio::steady_timer watchdog_;
    asio::steady_timer* backoff_ = nullptr;
    std::string last_error_;
    bool up_ = false;
    bool stopping_ = false;
    bool timed_out_ = false;
    bool protocol_broken_ = false;
    bool opening_ = false;
    bool limit_hit_ = false;
};

redis_client::redis_client(redis_options opts) : impl_(std::make_shared<impl>(std::move(opts))) {
    auto& im = *impl_;
    if (im.opts.endpoint.tls) {
        im.tls.emplace(asio::ssl::context::tls_client);
        im.tls->set_verify_mode(asio::ssl::verify_peer);
        if (im.opts.tls_ca_file.empty())
            im.tls->set_default_verify_paths();
        else
            im.tls->load_verify_file(im.opts.tls_ca_file);
    }
    const auto n = std::max<std::uint32_t>(1, im.opts.pool_size);
    for (std::uint32_t i = 0; i < n; ++i) {
        im.conns.push_back(std::make_shared<connection>(impl_, im.ioc.get_executor(), false));
        im.conns.back()->start();
    }
    im.thread = std::thread([&im] {
        core::name_this_thread("tg-redis");
        for (;;) {
            try {
                im.ioc.run();
                return;
            } catch (const std::exception& e) {
                spdlog::error("redis {}: unexpected error: {}", im.opts.name, e.what());
            }
        }
    });
}

redis_client::~redis_client() {
    close();
}

void redis_client::close() {
    auto& im = *impl_;
    if (im.thread_joined) return;
    im.thread_joined = true;
    // Lanes stop on their own threads (a lane whose io_context no longer runs ends with it).
    std::vector<std::shared_ptr<connection>> lanes;
    {
        std::lock_guard lock(im.lanes_mu);
        im.closed = true;
        for (auto& [ctx, weak] : im.lanes)
            if (auto l = weak.lock()) lanes.push_back(std::move(l));
        im.lanes.clear();
    }
    for (auto& l : lanes) asio::post(l->executor(), [l] { l->stop(); });
    lanes.clear();
    asio::post(im.ioc, [&im] {
        im.stopping = true;
        for (auto& c : im.conns) c->stop();
        if (im.subscriber) im.subscriber->stop();
    });
    im.guard.reset();
    im.thread.join();
    // Whatever never ran goes now, while the connections it refers to exist; then the
    // connections (they hold the impl: a cycle until here).
    im.ioc.destroy_handlers();
    im.conns.clear();
    im.subscriber.reset();
}

void redis_client::send_home(const std::shared_ptr<impl>& im, std::string bytes, handler done) {
    asio::post(im->ioc, [im, bytes = std::move(bytes), done = std::move(done)]() mutable {
        if (!im->stopping)
            for (std::size_t i = 0; i < im->conns.size(); ++i) {
                auto& c = *im->conns[(im->next + i) % im->conns.size()];
                if (!c.up()) continue;
                im->next = (im->next + i + 1) % im->conns.size();
                c.enqueue(bytes, std::move(done));
                return;
            }
        invoke_guarded(done, redis_reply{});
    });
}

void redis_client::send(const std::shared_ptr<impl>& im, const std::shared_ptr<connection>& lane,
                        std::string bytes, handler done) {
    im->commands.fetch_add(1, std::memory_order_relaxed);
    // A lane is only used on its own thread: the caller's (or, for a retry, its reader's).
    if (lane && lane->up()) {
        im->lane_commands.fetch_add(1, std::memory_order_relaxed);
        lane->enqueue(bytes, std::move(done));
        return;
    }
    send_home(im, std::move(bytes), std::move(done));
}

void redis_client::exec(std::vector<std::string> args, handler done) {
    std::string bytes;
    append_command(bytes, args);
    send(impl_, nullptr, std::move(bytes), std::move(done));
}

namespace {

// EVALSHA sha / EVAL source, then `rest` (the key count, the keys and the arguments).
std::string eval_command(std::string_view verb, std::string_view what, std::size_t count,
                         const std::string& rest) {
    std::string out;
    out.reserve(rest.size() + what.size() + 40);
    append_array_header(out, count);
    append_bulk(out, verb);
    append_bulk(out, what);
    out += rest;
    return out;
}

}  // namespace

void redis_client::send_eval(std::shared_ptr<connection> lane, const script& s,
                             std::vector<std::string> keys, std::vector<std::string> args,
                             handler done) {
    // Encoded once; a NOSCRIPT answer sends the same rest again behind the source.
    std::string rest;
    append_bulk(rest, std::to_string(keys.size()));
    for (const auto& k : keys) append_bulk(rest, k);
    for (const auto& a : args) append_bulk(rest, a);
    const std::size_t count = 3 + keys.size() + args.size();
    auto bytes = eval_command("EVALSHA", s.sha1, count, rest);
    send(impl_, lane, std::move(bytes),
         [im = impl_, lane, &s, count, rest = std::move(rest),
          done = std::move(done)](redis_reply r) mutable {
             if (r.how == redis_reply::status::ok && r.value.is_error() &&
                 r.value.str.starts_with("NOSCRIPT")) {
                 send(im, lane, eval_command("EVAL", s.source, count, rest), std::move(done));
                 return;
             }
             done(std::move(r));
         });
}

void redis_client::eval(const script& s, std::vector<std::string> keys,
                        std::vector<std::string> args, handler done) {
    send_eval(nullptr, s, std::move(keys), std::move(args), std::move(done));
}

std::shared_ptr<redis_client::connection> redis_client::lane_for(const asio::any_io_executor& ex) {
    const auto* io = ex.target<asio::io_context::executor_type>();
    if (!io) return nullptr;
    const asio::io_context* ctx = &io->context();
    auto& im = *impl_;
    if (ctx == &im.ioc) return nullptr;
    std::lock_guard lock(im.lanes_mu);
    if (im.closed) return nullptr;
    auto open = [&] {
        auto l = std::make_shared<connection>(impl_, asio::any_io_executor(*io), true);
        l->start();
        im.lanes_opened.fetch_add(1, std::memory_order_relaxed);
        return std::weak_ptr<connection>(l);
    };
    for (auto& [c, weak] : im.lanes) {
        if (c != ctx) continue;
        if (auto l = weak.lock()) return l->up() ? l : nullptr;
        weak = open();  // the io_context at this address is a new one
        return nullptr;
    }
    im.lanes.emplace_back(ctx, open());
    return nullptr;
}

// Not a coroutine itself (GCC 12 mishandles by-value parameters of a coroutine that
// co_returns a co_await of an initiation): the initiation is returned as the awaitable.
asio::awaitable<redis_reply> redis_client::call_eval(const script& s, std::vector<std::string> keys,
                                                     std::vector<std::string> args) {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(redis_reply)>(
        [this, &s](auto handler, std::vector<std::string> keys, std::vector<std::string> args) {
            const auto caller = asio::get_associated_executor(handler);
            auto lane = lane_for(caller);
            // Tracked: the caller's io_context keeps running until the answer is back.
            auto ex = asio::prefer(caller, asio::execution::outstanding_work.tracked);
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            send_eval(std::move(lane), s, std::move(keys), std::move(args), [ex, h](redis_reply r) {
                asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
            });
        },
        asio::use_awaitable, std::move(keys), std::move(args));
}

void redis_client::subscribe(std::string channel,
                             std::function<void(std::string_view)> on_message) {
    asio::post(impl_->ioc, [im = impl_, channel = std::move(channel),
                            on_message = std::move(on_message)]() mutable {
        if (im->stopping) return;
        im->subscriber = std::make_shared<connection>(im, im->ioc.get_executor(), false,
                                                      std::move(channel), std::move(on_message));
        im->subscriber->start();
    });
}

bool redis_client::wait_connected(std::chrono::milliseconds limit) {
    std::unique_lock lock(impl_->up_mu);
    return impl_->up_cv.wait_for(lock, limit, [this] { return connected(); });
}

asio::any_io_executor redis_client::executor() const {
    return impl_->ioc.get_executor();
}

bool redis_client::connected() const noexcept {
    return impl_->up.load(std::memory_order_relaxed) > 0;
}
std::uint64_t redis_client::commands() const noexcept {
    return impl_->commands.load(std::memory_order_relaxed);
}
std::uint64_t redis_client::writes() const noexcept {
    return impl_->writes.load(std::memory_order_relaxed);
}
std::uint64_t redis_client::failures() const noexcept {
    return impl_->failures.load(std::memory_order_relaxed);
}
std::uint64_t redis_client::reconnects() const noexcept {
    return impl_->reconnects.load(std::memory_order_relaxed);
}
std::uint64_t redis_client::lanes() const noexcept {
    return impl_->lanes_opened.load(std::memory_order_relaxed);
}
std::uint64_t redis_client::lane_commands() const noexcept {
    return impl_->lane_commands.load(std::memory_order_relaxed);
}

}  // namespace tollgate::state
