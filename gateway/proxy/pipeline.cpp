#include "gateway/proxy/pipeline.hpp"

#include <poll.h>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "gateway/core/admission_estimate.hpp"
#include "gateway/core/sse_framer.hpp"
#include "gateway/upstream/adapter.hpp"
#include "gateway/upstream/response_parser.hpp"

namespace tollgate::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using core::errc;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// Upstream reads: heads and SSE streams in 4 KiB pieces (an open stream holds no more),
// non-streamed bodies in 16 KiB ones.
constexpr std::size_t upstream_read_chunk = 4 * 1024;
constexpr std::size_t upstream_body_chunk = 16 * 1024;

// Watches the client socket while the upstream works, so that a client that goes away
// is noticed at once rather than at the next write (which may be minutes away).
struct client_watch {
    bool active = true;
    bool gone = false;
    bool cancel_upstream = true;  // routing.on_client_disconnect: cancel
    net::byte_stream* upstream = nullptr;
};

// True when the peer has shut down its sending side (a FIN arrived), even with unread
// bytes before it.
bool peer_hung_up(int fd) noexcept {
    pollfd p{fd, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

asio::awaitable<void> watch_client(net::byte_stream& client, std::shared_ptr<client_watch> w) {
    int tls_rechecks = 3;
    while (w->active) {
        auto [ec] =
            co_await client.socket().async_wait(asio::ip::tcp::socket::wait_read, use_tuple);
        // After a cancel the session may be gone: touch nothing but `w` until checked.
        if (!w->active) co_return;
        if (!ec) {
            const int fd = client.socket().native_handle();
            char c;
            const auto r = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (r > 0 && !client.is_tls()) co_return;  // a pipelined request: stop watching
            if (r > 0 && !peer_hung_up(fd)) {
                // TLS: the bytes may be the client's close_notify, with its FIN a moment
                // behind: look again shortly, a few times, before giving up watching.
                if (tls_rechecks-- == 0) co_return;
                asio::steady_timer t(client.socket().get_executor(), std::chrono::milliseconds(50));
                co_await t.async_wait(use_tuple);
                if (!w->active) co_return;
                if (!peer_hung_up(fd)) continue;
            } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                continue;
            }
        }
        w->gone = true;
        if (w->cancel_upstream && w->upstream) w->upstream->cancel();
        co_return;
    }
}

class watch_scope {
  public:
    watch_scope(net::byte_stream& client, bool cancel_upstream)
        : client_(client), w_(std::make_shared<client_watch>()) {
        w_->cancel_upstream = cancel_upstream;
        asio::co_spawn(client.socket().get_executor(), watch_client(client, w_), asio::detached);
    }
    ~watch_scope() {
        w_->active = false;
        w_->upstream = nullptr;
        boost::system::error_code ec;
        client_.socket().cancel(ec);
    }
    client_watch& operator*() const noexcept { return *w_; }
    client_watch* operator->() const noexcept { return w_.get(); }

  private:
    net::byte_stream& client_;
    std::shared_ptr<client_watch> w_;
};

double ms_between(core::clock::time_point a, core::clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

// The request's final usage and cost, from its meter, before any policy's on_complete:
// rate_limit, budget and the ledger all settle from this one figure, whatever the order of
// `policies:`. A request that reached no upstream has none (its reservations are released).
void finalize_usage(core::request_context& ctx, const core::outcome& out) noexcept {
    if (ctx.usage_final || !ctx.forwarded) return;
    // The prompt counts once an upstream took the request (it answered, or the client
    // left after it was sent); a request no upstream accepted costs nothing.
    const bool upstream_took_it = (ctx.upstream_status >= 200 && ctx.upstream_status < 300) ||
                                  (out.client_gone && ctx.meter.sent());
    ctx.usage = ctx.meter.result(ctx.estimate.prompt_tokens, upstream_took_it);
    ctx.usage_final = true;
    // Priced as the model that served (a fallback may cost more than the one asked for).
    const auto* model = ctx.served_by && ctx.served_by->model ? ctx.served_by->model : ctx.model;
    ctx.cost_usd = core::price_usage(model, ctx.usage);
}

// on_complete exactly once, also when the coroutine is destroyed mid-way. `out` belongs
// to the request's observation, which reads it after the policies' on_complete.
class completion {
  public:
    completion(const core::chain& c, core::request_context& ctx, core::outcome& o)
        : out(o), chain_(c), ctx_(ctx) {
        out.status = 499;
        out.error = errc::client_closed;
    }
    ~completion() {
        finalize_usage(ctx_, out);
        chain_.complete(ctx_, out);
    }
    core::outcome& out;

  private:
    const core::chain& chain_;
    core::request_context& ctx_;
};

std::string_view failure_reason(const core::attempt_result& r) {
    using k = core::attempt_result::kind;
    switch (r.how) {
        case k::connect_error:
            return "connect_error";
        case k::tls:
            return "tls";
        case k::timeout:
            return "timeout";
        case k::status:
            return r.status == 429 ? "status_429" : r.status >= 500 ? "status_5xx" : "status_4xx";
        case k::auth:
            return "auth";
        case k::protocol:
            return "protocol";
        case k::stream_error:
            return "stream_error";
        case k::ok:
        case k::client_gone:
            break;
    }
    return {};
}

// Metrics and the access log for one API request, written when it ends (after the
// policies' on_complete, so usage and cost are final), on every path.
class observation {
  public:
    observation(pipeline_io& io, core::request_context& ctx)
        : io_(io), ctx_(ctx), bytes_before_(io.out.bytes_written()) {
        if (io_.metrics) io_.metrics->inflight.fetch_add(1, std::memory_order_relaxed);
    }
    ~observation() {
        if (io_.metrics) io_.metrics->inflight.fetch_sub(1, std::memory_order_relaxed);
        if (!io_.metrics && !io_.gen.access_log) return;
        try {
            record();
        } catch (...) {
            // Out of memory while recording: the request itself is done.
        }
    }
    core::outcome out;

  private:
    void record() {
        const auto now = core::clock::now();
        const auto& cfg = io_.gen.snap->config;
        const config::model_config* model = ctx_.model;
        if (!model && !ctx_.req.model.empty()) model = cfg.find_model(ctx_.req.model);
        const std::string_view key = ctx_.key ? std::string_view(ctx_.key->id) : "";
        const std::string_view provider = ctx_.served_by && ctx_.served_by->provider
                                              ? std::string_view(ctx_.served_by->provider->name)
                                              : "";
        const double duration_ms = ms_between(ctx_.received_at, now);
        std::optional<double> ttft_ms;
        if (ctx_.first_byte_at) ttft_ms = ms_between(ctx_.received_at, *ctx_.first_byte_at);
        const bool counted = ctx_.usage_final;
        if (io_.metrics) {
            observe::request_sample s;
            s.key = key;
            s.model = model ? std::string_view(model->name) : "";
            s.provider = provider;
            s.status = out.status;
            s.duration_s = duration_ms / 1000;
            if (ttft_ms) s.ttft_s = *ttft_ms / 1000;
            if (auto o = io_.out.overhead_ms()) s.overhead_s = *o / 1000;
            if (counted) {
                s.prompt_tokens = ctx_.usage.prompt_tokens;
                s.completion_tokens = ctx_.usage.completion_tokens;
                s.cost_usd = ctx_.cost_usd.value_or(0);
            }
            if (out.status == 429) s.refusal_reason = ctx_.refusal_reason;
            io_.metrics->record(io_.shard, s);
        }
        if (io_.gen.access_log) {
            observe::access_entry e;
            e.ts_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
            e.request_id = ctx_.request_id;
            e.key = key;
            e.method = ctx_.method;
            const auto q = ctx_.target.find('?');
            e.path = ctx_.target.substr(0, q);
            e.model = model ? std::string_view(model->name) : std::string_view{};
            e.provider = provider;
            e.status = out.status;
            e.stream = out.stream;
            e.attempts = ctx_.attempts;
            e.latency_ms = duration_ms;
            e.ttft_ms = ttft_ms;
            e.overhead_ms = io_.out.overhead_ms();
            if (counted) {
                e.prompt_tokens = ctx_.usage.prompt_tokens;
                e.completion_tokens = ctx_.usage.completion_tokens;
                e.cost_usd = ctx_.cost_usd;
            }
            e.bytes_in = ctx_.body.size();
            e.bytes_out = io_.out.bytes_written() - bytes_before_;
            if (out.error != errc::ok) e.error = core::describe(out.error).code;
            io_.gen.access_log->write(e);
        }
    }

    pipeline_io& io_;
    core::request_context& ctx_;
    std::uint64_t bytes_before_;
};

enum class failure_kind { none, connect_error, tls, timeout, status, auth, protocol, client_gone };

// How an attempt went: `none` is an answer relayed to the client (success, or a
// client-fault 4xx passed through).
struct failure {
    failure_kind kind = failure_kind::none;
    int status = 0;
    std::string message;
    std::optional<std::chrono::milliseconds> retry_after = {};
};

std::optional<std::chrono::milliseconds> parse_retry_after(const std::string& v) {
    if (v.empty() || v.size() > 9) return std::nullopt;
    std::int64_t secs = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return std::nullopt;  // an HTTP-date: not worth honouring
        secs = secs * 10 + (c - '0');
    }
    return std::chrono::milliseconds(std::min<std::int64_t>(secs, 3600) * 1000);
}

core::attempt_result to_attempt_result(const failure& f, bool stream_error,
                                       std::optional<core::clock::duration> time_to_head) {
    using k = core::attempt_result::kind;
    core::attempt_result r;
    r.status = f.status;
    r.retry_after = f.retry_after;
    r.time_to_head = time_to_head;
    switch (f.kind) {
        case failure_kind::none:
            r.how = stream_error ? k::stream_error : k::ok;
            break;
        case failure_kind::connect_error:
            r.how = k::connect_error;
            break;
        case failure_kind::tls:
            r.how = k::tls;
            break;
        case failure_kind::timeout:
            r.how = k::timeout;
            break;
        case failure_kind::status:
            r.how = k::status;
            break;
        case failure_kind::auth:
            r.how = k::auth;
            break;
        case failure_kind::protocol:
            r.how = k::protocol;
            break;
        case failure_kind::client_gone:
            r.how = k::client_gone;
            break;
    }
    return r;
}

bool is_timeout(const boost::system::error_code& ec) {
    return ec == beast::error::timeout || ec == asio::error::timed_out;
}

std::string tls_reason(const boost::system::error_code& ec) {
    if (ec.category() == asio::error::get_ssl_category()) {
        char buf[256];
        ::ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof buf);
        return buf;
    }
    return ec.message();
}

bool retryable(const config::routing_config& r, const failure& f) {
    std::string_view cls;
    std::string status;
    switch (f.kind) {
        case failure_kind::connect_error:
        case failure_kind::tls:  // another target may well have a good certificate
            cls = "connect_error";
            break;
        case failure_kind::timeout:
            cls = "timeout";
            break;
        case failure_kind::status:
            status = std::to_string(f.status);
            cls = status;
            break;
        default:
            return false;
    }
    return std::find(r.retry_on.begin(), r.retry_on.end(), cls) != r.retry_on.end();
}

bool client_fault_status(int s) {
    return s == 400 || s == 404 || s == 413 || s == 415 || s == 422;
}

std::int64_t unix_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// State of one upstream attempt.
struct attempt {
    upstream::lease conn;
    upstream::response_parser parser;
    beast::flat_buffer buf;
    core::clock::time_point sent_at{};
};

// Reads and parses until the head is complete, within `timeout`.
asio::awaitable<boost::system::error_code> read_head(attempt& a, core::clock::duration timeout,
                                                     std::size_t& bytes_in) {
    const auto deadline = core::clock::now() + timeout;
    boost::system::error_code ec;
    a.parser.header_limit(64 * 1024);
    a.parser.eager(true);
    for (;;) {
        if (a.buf.size() > 0) {
            const auto used = a.parser.put(a.buf.data(), ec);
            a.buf.consume(used);
            if (a.parser.is_header_done()) co_return boost::system::error_code{};
            if (ec && ec != http::error::need_more) co_return ec;
        }
        const auto left = deadline - core::clock::now();
        if (left <= core::clock::duration::zero()) co_return beast::error::timeout;
        auto [rec, n] =
            co_await a.conn.stream().read_some(a.buf.prepare(upstream_read_chunk), left);
        if (rec) co_return rec;
        bytes_in += n;
        a.buf.commit(n);
    }
}

// Reads more of the body into a.parser.body(). Returns eof-as-success when a
// close-delimited body ends.
asio::awaitable<boost::system::error_code> read_body_piece(attempt& a,
                                                           core::clock::duration timeout,
                                                           std::size_t chunk) {
    boost::system::error_code ec;
    if (a.buf.size() > 0) {
        const auto used = a.parser.put(a.buf.data(), ec);
        a.buf.consume(used);
        if (ec != http::error::need_more && ec) co_return ec;
        if (!a.parser.body().empty() || a.parser.is_done()) co_return boost::system::error_code{};
    }
    auto [rec, n] = co_await a.conn.stream().read_some(a.buf.prepare(chunk), timeout);
    if (rec == asio::error::eof || (rec == asio::ssl::error::stream_truncated)) {
        if (a.parser.need_eof()) {
            a.parser.put_eof(ec);
            co_return ec;
        }
        co_return http::error::partial_message;
    }
    if (rec) co_return rec;
    a.buf.commit(n);
    const auto used = a.parser.put(a.buf.data(), ec);
    a.buf.consume(used);
    if (ec == http::error::need_more) ec = {};
    co_return ec;
}

class forwarder {
  public:
    forwarder(pipeline_io& io, core::request_context& ctx, completion& done)
        : io_(io),
          ctx_(ctx),
          done_(done),
          snap_(*io.gen.snap),
          chain_(*snap_.policies),
          watch_(io.client,
                 snap_.config.routing.on_client_disconnect == config::disconnect_mode::cancel) {}

    asio::awaitable<void> run();

  private:
    asio::awaitable<failure> try_target(const core::route_target& target);
    asio::awaitable<void> relay_stream(attempt& a, int status);
    asio::awaitable<void> send_failure(const failure& f, bool all_timeouts);
    // The client's price header for a non-streamed answer whose usage is final.
    void add_cost_header();

    pipeline_io& io_;
    core::request_context& ctx_;
    completion& done_;
    const core::snapshot& snap_;
    const core::chain& chain_;
    watch_scope watch_;
    core::spliced_body body_;
    std::string head_;
    std::string out_;
    std::unique_ptr<upstream::adapter> adapter_;  // this attempt's
    bool answered_ = false;
    bool stream_error_ = false;
    std::optional<core::attempt_result::kind> stream_failure_;  // the stream broke mid-way
    core::clock::duration upstream_time_{};                     // spent in failed attempts so far
    core::clock::time_point attempt_started_{};
    std::optional<core::clock::duration> time_to_head_;
};

asio::awaitable<void> forwarder::run() {
    failure last;
    bool all_timeouts = true;
    const auto& plan = ctx_.plan;
    for (std::size_t i = 0; i < plan.size(); ++i) {
        if (watch_->gone) break;
        const auto& target = plan[i];
        time_to_head_.reset();
        stream_error_ = false;
        stream_failure_.reset();
        chain_.attempt_start(ctx_, target);
        const auto attempt_started = core::clock::now();
        last = co_await try_target(target);
        if (!answered_) upstream_time_ += core::clock::now() - attempt_started;
        auto result = to_attempt_result(last, stream_error_, time_to_head_);
        if (stream_failure_) result.how = *stream_failure_;
        chain_.attempt_end(ctx_, target, result);
        if (io_.metrics)
            if (const auto reason = failure_reason(result); !reason.empty())
                io_.metrics->upstream_failure(io_.shard, target.provider->name, reason);
        if (answered_ || last.kind == failure_kind::client_gone) break;
        if (last.kind != failure_kind::timeout) all_timeouts = false;
        spdlog::debug("request {}: attempt {} at provider {} failed: {}", ctx_.request_id,
                      ctx_.attempts, target.provider->name, last.message);
        // Another target of the same model only for a retryable failure; the model's
        // fallbacks whatever the failure.
        if (!retryable(snap_.config.routing, last))
            while (i + 1 < plan.size() && plan[i + 1].group == target.group) ++i;
    }
    if (answered_) co_return;
    if (watch_->gone || last.kind == failure_kind::client_gone) {
        done_.out.status = 499;
        done_.out.error = errc::client_closed;
        done_.out.client_gone = true;
        io_.out.set_close();
        co_return;
    }
    co_await send_failure(last, all_timeouts && last.kind == failure_kind::timeout);
}

asio::awaitable<void> forwarder::send_failure(const failure& f, bool all_timeouts) {
    const errc e = all_timeouts ? errc::upstream_timeout : errc::upstream_unavailable;
    std::string message = f.message.empty() ? std::string(core::describe(e).message) : f.message;
    done_.out.status = core::describe(e).status;
    done_.out.error = e;
    const double overhead = ms_between(ctx_.received_at, core::clock::now()) -
                            std::chrono::duration<double, std::milli>(upstream_time_).count();
    if (co_await io_.out.send_error(ctx_, e, message, std::max(0.0, overhead))) io_.out.set_close();
}

asio::awaitable<failure> forwarder::try_target(const core::route_target& target) {
    const auto& prov_ptr = io_.gen.providers.at(target.provider_index);
    const auto& prov = *prov_ptr;
    const auto& pc = prov.config();
    ctx_.served_by = &target;
    ++ctx_.attempts;
    attempt_started_ = core::clock::now();
    // A new attempt: only what its upstream says counts, plus, estimated, what an earlier
    // upstream used after it accepted the request (a 2xx head, then a broken body).
    ctx_.meter.next_attempt(ctx_.upstream_status >= 200 && ctx_.upstream_status < 300,
                            ctx_.estimate.prompt_tokens);
    ctx_.upstream_status = 0;
    adapter_ = upstream::make_adapter(ctx_, pc, unix_seconds());
    if (!adapter_) {
        // The client asked a model for something its provider cannot do: the client's
        // error, and not a failure of the target (it must not cool it down).
        answered_ = true;
        done_.out.status = 400;
        done_.out.error = errc::invalid_request;
        if (co_await io_.out.send_error(
                ctx_, errc::invalid_request,
                "model '" + ctx_.req.model.substr(0, 200) + "' does not support this endpoint"))
            io_.out.set_close();
        co_return failure{};
    }

    if (auto error = adapter_->render_request(ctx_, target.upstream_model, body_); !error.empty()) {
        answered_ = true;
        const errc why = adapter_->render_error();
        done_.out.status = 400;
        done_.out.error = why;
        if (why == errc::unsupported_on_target)
            error += " (target: provider " + pc.name + ", model " + target.upstream_model + ")";
        if (co_await io_.out.send_error(ctx_, why, error)) io_.out.set_close();
        co_return failure{};
    }
    prov.render_head(head_, adapter_->upstream_endpoint(), target.upstream_model, body_.size(),
                     ctx_.req.stream, ctx_.request_id);
    std::array<asio::const_buffer, 6> bufs;
    bufs[0] = asio::buffer(head_);
    for (std::size_t i = 0; i < body_.count; ++i)
        bufs[i + 1] = asio::buffer(body_.pieces[i].data(), body_.pieces[i].size());
    const std::span<const asio::const_buffer> request(bufs.data(), body_.count + 1);

    auto& pool = io_.pools.pool_for(prov_ptr);
    bool fresh = false;
    for (;;) {
        attempt a;
        auto [aec, conn] = co_await pool.acquire(fresh);
        if (watch_->gone) co_return failure{failure_kind::client_gone, 0, {}};
        if (aec) {
            if (aec == asio::error::no_buffer_space)
                co_return failure{failure_kind::connect_error, 0,
                                  "provider " + pc.name + ": connection pool is full"};
            if (is_timeout(aec))
                co_return failure{failure_kind::timeout, 0,
                                  "provider " + pc.name + ": connect timed out"};
            if (aec.category() == asio::error::get_ssl_category()) {
                const std::string reason = tls_reason(aec);
                spdlog::warn("provider {}: TLS handshake with {} failed: {}", pc.name, pc.host,
                             reason);
                co_return failure{failure_kind::tls, 0,
                                  "provider " + pc.name + ": TLS verification failed"};
            }
            co_return failure{failure_kind::connect_error, 0,
                              "provider " + pc.name + ": cannot connect (" + aec.message() + ")"};
        }
        a.conn = std::move(conn);
        ctx_.forwarded = true;
        watch_->upstream = &a.conn.stream();
        a.sent_at = core::clock::now();
        a.parser.body_limit(pc.max_response_bytes);
        auto wec = co_await a.conn.stream().write(request, pc.idle_timeout);
        if (!wec) ctx_.meter.mark_sent();
        std::size_t bytes_in = 0;
        if (!wec) wec = co_await read_head(a, pc.first_byte_timeout, bytes_in);
        const bool drain =
            snap_.config.routing.on_client_disconnect == config::disconnect_mode::drain;
        if (watch_->gone && (!drain || wec)) {
            watch_->upstream = nullptr;
            co_return failure{failure_kind::client_gone, 0, {}};
        }
        if (wec) {
            watch_->upstream = nullptr;
            // A kept-alive connection the upstream had closed: try once on a new one.
            if (a.conn.reused() && bytes_in == 0 && !is_timeout(wec) && !fresh) {
                fresh = true;
                continue;
            }
            if (is_timeout(wec))
                co_return failure{failure_kind::timeout, 0,
                                  "provider " + pc.name + ": no answer within first_byte_timeout"};
            co_return failure{
                failure_kind::connect_error, 0,
                "provider " + pc.name + ": connection failed (" + wec.message() + ")"};
        }

        const int status = a.parser.status();
        ctx_.upstream_status = status;
        time_to_head_ = core::clock::now() - a.sent_at;
        if (status >= 200 && status < 300 && a.parser.event_stream()) {
            co_await relay_stream(a, status);
            watch_->upstream = nullptr;
            co_return failure{};
        }

        // A whole (non-streamed) answer: read it, bounded (body_limit set before the head).
        std::string body = std::move(a.parser.body());
        a.parser.body().clear();
        boost::system::error_code bec;
        // drain: a client that left does not stop the read (bounded by drain_limit), so
        // the answer's exact usage is billed.
        std::optional<core::clock::time_point> drain_deadline;
        while (!a.parser.is_done()) {
            auto timeout = std::chrono::duration_cast<core::clock::duration>(pc.idle_timeout);
            if (watch_->gone) {
                if (!drain) break;
                if (!drain_deadline)
                    drain_deadline = core::clock::now() + snap_.config.routing.drain_limit;
                const auto left = *drain_deadline - core::clock::now();
                if (left <= core::clock::duration::zero()) break;
                timeout = std::min(timeout, left);
            }
            bec = co_await read_body_piece(a, timeout, upstream_body_chunk);
            body += a.parser.body();
            a.parser.body().clear();
            if (bec) break;
        }
        watch_->upstream = nullptr;
        if (watch_->gone) {
            // The drained answer goes to the adapter like any answer: its usage is exact.
            if (drain && !bec && a.parser.is_done() && status >= 200 && status < 300)
                adapter_->on_body(body, ctx_.meter);
            co_return failure{failure_kind::client_gone, 0, {}};
        }
        if (bec) {
            if (is_timeout(bec))
                co_return failure{failure_kind::timeout, 0,
                                  "provider " + pc.name + ": answer stalled"};
            if (bec == http::error::body_limit)
                co_return failure{
                    failure_kind::protocol, 0,
                    "provider " + pc.name + ": answer larger than max_response_bytes"};
            co_return failure{failure_kind::connect_error, 0,
                              "provider " + pc.name + ": answer cut short (" + bec.message() + ")"};
        }
        const auto upstream_done = core::clock::now();
        // Bytes past the end of the answer: the connection is out of step (a broken
        // Content-Length); reusing it could hand them to another client as its answer.
        a.conn.release(a.parser.keep_alive() && a.buf.size() == 0);

        std::string content_type =
            a.parser.content_type().empty() ? "application/json" : a.parser.content_type();
        if (status >= 200 && status < 300) {
            if (!adapter_->on_body(body, ctx_.meter))
                co_return failure{
                    failure_kind::protocol, status,
                    "provider " + pc.name + " sent an answer that could not be translated"};
            if (const auto ct = adapter_->content_type(); !ct.empty()) content_type = ct;
            add_cost_header();
            chain_.response_head(ctx_, core::response_head{status, false});
        } else if (status == 401 || status == 403) {
            spdlog::warn("provider {} refused the gateway's credentials (HTTP {})", pc.name,
                         status);
            co_return failure{failure_kind::auth, status,
                              "provider " + pc.name + " refused the gateway's credentials (HTTP " +
                                  std::to_string(status) + ")"};
        } else if (!client_fault_status(status)) {
            co_return failure{failure_kind::status, status,
                              "provider " + pc.name + " answered HTTP " + std::to_string(status),
                              parse_retry_after(a.parser.retry_after())};
        }
        // Success, or a client-fault 4xx passed through as the upstream sent it (in the
        // client's API shape when translating).
        if (status < 200 || status >= 300)
            if (auto message = adapter_->error_message(body)) {
                if (message->empty()) *message = "the upstream refused the request";
                body = responder::error_body(ctx_, errc::invalid_request, *message);
                content_type = "application/json";
            }
        const auto now = core::clock::now();
        // Time in the gateway: all of it but the upstream's (this attempt's and any
        // failed earlier ones, connects included).
        const double overhead = ms_between(ctx_.received_at, now) -
                                ms_between(a.sent_at, upstream_done) -
                                std::chrono::duration<double, std::milli>(upstream_time_).count() -
                                ms_between(attempt_started_, a.sent_at);
        answered_ = true;
        done_.out.status = status;
        done_.out.error = errc::ok;
        ctx_.first_byte_at = now;
        if (co_await io_.out.send(ctx_, status, content_type, body, std::max(0.0, overhead))) {
            done_.out.client_gone = true;
            io_.out.set_close();
        }
        co_return failure{};
    }
}

void forwarder::add_cost_header() {
    if (!ctx_.meter.has_final()) return;
    const auto* model =
        ctx_.served_by && ctx_.served_by->model ? ctx_.served_by->model : ctx_.model;
    if (!model || !model->price) return;
    const double usd =
        core::price_usage(model, ctx_.meter.result(ctx_.estimate.prompt_tokens, true));
    char buf[48];
    int n = std::snprintf(buf, sizeof buf, "%.10f", usd);
    while (n > 3 && buf[n - 1] == '0' && buf[n - 2] != '.') --n;
    ctx_.response_headers.emplace_back("x-tollgate-cost-usd",
                                       std::string(buf, static_cast<std::size_t>(n)));
}

asio::awaitable<void> forwarder::relay_stream(attempt& a, int status) {
    const auto& pc = ctx_.served_by->provider;
    answered_ = true;
    done_.out.stream = true;
    done_.out.status = status;
    done_.out.error = errc::ok;
    a.parser.body_limit(boost::none);
    chain_.response_head(ctx_, core::response_head{status, true});

    // The adapter turns each upstream event into the client's bytes (in out_) and usage
    // observations; nothing here knows which API either side speaks.
    auto upstream_event = [&](const core::sse_event& ev) {
        adapter_->on_event(ev, out_, ctx_.meter);
    };

    core::sse_framer framer(pc->max_event_bytes);
    auto feed = [&]() {
        const bool ok = framer.feed(a.parser.body(), upstream_event);
        a.parser.body().clear();
        // An open stream waits between events most of its life: it holds no read buffer
        // meanwhile (the next read allocates one again).
        if (a.buf.size() == 0) a.buf.shrink_to_fit();
        return ok;
    };
    bool framing_ok = feed();
    bool client_ok = !watch_->gone;
    if (client_ok) {
        // The gateway's time before the upstream took over (failed attempts excluded).
        const double overhead = ms_between(ctx_.received_at, attempt_started_) -
                                std::chrono::duration<double, std::milli>(upstream_time_).count();
        client_ok = !co_await io_.out.start_stream(ctx_, status, "text/event-stream", out_,
                                                   std::max(0.0, overhead));
        // The head is out: its parts are not needed for the rest of the stream.
        core::header_list().swap(ctx_.response_headers);
        std::string().swap(head_);
        if (!out_.empty()) ctx_.first_byte_at = core::clock::now();
        out_.clear();
    }
    const bool drain = snap_.config.routing.on_client_disconnect == config::disconnect_mode::drain;
    std::optional<core::clock::time_point> drain_deadline;
    errc upstream_error = errc::ok;
    std::string upstream_message;

    while (framing_ok && !a.parser.is_done()) {
        if (!client_ok || watch_->gone) {
            client_ok = false;
            if (!drain) break;
            if (!drain_deadline)
                drain_deadline = core::clock::now() + snap_.config.routing.drain_limit;
        }
        auto timeout = std::chrono::duration_cast<core::clock::duration>(pc->idle_timeout);
        if (drain_deadline) {
            const auto left = *drain_deadline - core::clock::now();
            if (left <= core::clock::duration::zero()) break;
            timeout = std::min(timeout, left);
        }
        const auto ec = co_await read_body_piece(a, timeout, upstream_read_chunk);
        framing_ok = feed();
        if (ec) {
            if (watch_->gone || ec == asio::error::operation_aborted) {
                client_ok = false;
                break;
            }
            upstream_error = is_timeout(ec) ? errc::upstream_timeout : errc::upstream_unavailable;
            upstream_message = is_timeout(ec)
                                   ? "upstream stream stalled (idle_timeout)"
                                   : "upstream stream ended abnormally (" + ec.message() + ")";
            break;
        }
        if (!framing_ok) {
            upstream_error = errc::upstream_unavailable;
            upstream_message = "upstream sent an SSE event larger than max_event_bytes";
            break;
        }
        if (a.parser.is_done()) framer.finish(upstream_event);
        if (client_ok && !out_.empty()) {
            if (!ctx_.first_byte_at) ctx_.first_byte_at = core::clock::now();
            client_ok = !co_await io_.out.stream_piece(out_);
        }
        out_.clear();
    }
    // A stream that arrived whole with its head never entered the loop: flush the last
    // event (one without its blank line) and what is left to write.
    if (framing_ok && a.parser.is_done() && framer.pending_bytes() > 0) {
        framer.finish(upstream_event);
        if (client_ok && !out_.empty()) client_ok = !co_await io_.out.stream_piece(out_);
        out_.clear();
    }
    watch_->upstream = nullptr;
    const bool complete = a.parser.is_done() && upstream_error == errc::ok && framing_ok;
    a.conn.release(complete && a.parser.keep_alive() && a.buf.size() == 0);
    adapter_->finish(complete, out_, ctx_.meter);
    stream_error_ = adapter_->stream_failed();
    if (client_ok && !watch_->gone && !out_.empty())
        client_ok = !co_await io_.out.stream_piece(out_);
    out_.clear();

    if (!client_ok || watch_->gone) {
        done_.out.client_gone = true;
        done_.out.status = 499;
        done_.out.error = errc::client_closed;
        io_.out.set_close();
        co_return;
    }
    if (complete && stream_error_) {
        // The upstream ended the stream with its own error event (relayed as it came):
        // the request failed, and its record says so.
        done_.out.error = errc::upstream_unavailable;
    }
    if (!complete) {
        if (upstream_error == errc::ok) {
            upstream_error = errc::upstream_unavailable;
            upstream_message = "upstream stream ended abnormally";
        }
        // A stream that broke after its head is a failure of the target, for the
        // router's health and the failure metrics, like one that never started.
        stream_failure_ = upstream_error == errc::upstream_timeout
                              ? core::attempt_result::kind::timeout
                              : core::attempt_result::kind::protocol;
        done_.out.error = upstream_error;
        // After a 200 head, the error goes as one SSE event; then the stream ends.
        if (ctx_.ep == core::endpoint::messages) {
            out_ = "event: error\ndata: ";
            out_ += core::anthropic_error_body(upstream_error, upstream_message);
        } else {
            out_ = "data: ";
            out_ += core::openai_error_body(upstream_error, upstream_message);
        }
        out_ += "\n\n";
        if (co_await io_.out.stream_piece(out_)) {
            io_.out.set_close();
            co_return;
        }
        out_.clear();
    }
    if (co_await io_.out.end_stream()) io_.out.set_close();
}

// A local answer: all of its time was spent in the gateway.
double overhead_ms(const core::request_context& ctx) {
    return ms_between(ctx.received_at, core::clock::now());
}

asio::awaitable<void> send_local_reply(pipeline_io& io, core::request_context& ctx) {
    auto& r = ctx.reply;
    for (auto& h : r.headers) ctx.response_headers.push_back(std::move(h));
    r.headers.clear();
    boost::system::error_code ec;
    if (r.error != errc::ok) {
        const std::string body = responder::error_body(ctx, r.error, r.message);
        ec = co_await io.out.send(ctx, r.status, "application/json", body, overhead_ms(ctx));
    } else {
        ec = co_await io.out.send(ctx, r.status, r.content_type, r.body, overhead_ms(ctx));
    }
    if (ec) io.out.set_close();
}

}  // namespace

asio::awaitable<void> run_pipeline(pipeline_io& io, core::request_context& ctx) {
    const auto& snap = *io.gen.snap;
    observation seen(io, ctx);
    if (ctx.ep != core::endpoint::models) {
        if (auto err = io.parser.parse(ctx.ep, ctx.body, ctx.req)) {
            seen.out.status = core::describe(err.code).status;
            seen.out.error = err.code;
            if (co_await io.out.send_error(ctx, err.code, err.message, overhead_ms(ctx)))
                io.out.set_close();
            co_return;
        }
    }
    ctx.estimate = core::estimate_request(snap.config, ctx.ep, ctx.req);
    completion done(*snap.policies, ctx, seen.out);
    const auto v = co_await snap.policies->run_request(ctx);
    if (v == core::verdict::reply) {
        done.out.status = ctx.reply.status;
        done.out.error = ctx.reply.error;
        co_await send_local_reply(io, ctx);
        co_return;
    }
    if (ctx.plan.empty()) {
        done.out.status = 500;
        done.out.error = errc::internal;
        ctx.set_error_reply(errc::internal, "no route for this request");
        co_await send_local_reply(io, ctx);
        co_return;
    }
    done.out.stream = ctx.req.stream;
    forwarder f(io, ctx, done);
    co_await f.run();
}

}  // namespace tollgate::proxy
