#include "gateway/proxy/pipeline.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

#include "gateway/core/admission_estimate.hpp"
#include "gateway/core/attempt_error.hpp"
#include "gateway/core/coarse_clock.hpp"
#include "gateway/core/json_text.hpp"
#include "gateway/core/sse_framer.hpp"
#include "gateway/net/client_watch.hpp"
#include "gateway/observe/request_observation.hpp"
#include "gateway/upstream/adapter.hpp"
#include "gateway/upstream/exchange.hpp"

// The request path in phases (after Pingora's): admit (body, estimate, the chain's
// request phase) → plan (the router's targets) → attempt (adapter renders, exchange
// sends and reads the head) → relay (whole or streamed, through the adapter) → settle
// (final usage, on_settle: before the answer's last write) → complete (on_complete, the
// observation). Each phase is one function below; how an
// attempt failed is one core::attempt_error, whose consequences (retry, health, metric,
// client status) are mapped in core/attempt_error.cpp.

namespace tollgate::proxy {

namespace asio = boost::asio;
using core::attempt_error;
using core::attempt_kind;
using core::attempt_source;
using core::errc;

using core::ms;
using core::ms_between;

namespace {

bool is_2xx(int status) {
    return status >= 200 && status < 300;
}

// The request's final usage and cost, from its meter, before any policy's on_complete:
// rate_limit, budget and the ledger all settle from this one figure, whatever the order of
// `policies:`. A request that reached no upstream has none (its reservations are released).
void finalize_usage(core::request_context& ctx, const core::outcome& out) noexcept {
    if (ctx.usage_final || !ctx.forwarded) return;
    // The prompt counts once an upstream took the request (it answered, or the client
    // left after it was sent); a request no upstream accepted costs nothing.
    const bool upstream_took_it =
        is_2xx(ctx.upstream_status) || (out.client_gone && ctx.meter.sent());
    ctx.usage = ctx.meter.result(ctx.estimate.prompt_tokens, upstream_took_it);
    ctx.usage_final = true;
    // Priced as the model that served (a fallback may cost more than the one asked for).
    const auto* model = ctx.served_by && ctx.served_by->model ? ctx.served_by->model : ctx.model;
    ctx.cost_usd = core::price_usage(model, ctx.usage);
}

// Settle and complete: on_settle and on_complete exactly once each, also when the
// coroutine is destroyed mid-way. `out` belongs to the request's observation, which reads
// it after the policies' on_complete.
class completion {
  public:
    completion(const core::chain& c, core::request_context& ctx, core::outcome& o)
        : out(o), chain_(c), ctx_(ctx) {
        out.status = 499;
        out.error = errc::client_closed;
    }
    ~completion() {
        settle();
        ctx_.mark_completed();
        chain_.complete(ctx_, out);
    }
    // The request's usage is final (the upstream is done with it, or it never reached
    // one): its limits and budgets settle now, before the answer's last write. A client
    // that has the whole answer and sends its next request (maybe on another worker)
    // never finds this one still counted.
    void settle() noexcept {
        if (settled_) return;
        settled_ = true;
        finalize_usage(ctx_, out);
        chain_.settle(ctx_);
    }
    core::outcome& out;

  private:
    const core::chain& chain_;
    core::request_context& ctx_;
    bool settled_ = false;
};

// The request's metrics and access-log line, written when it ends, on every path.
class observed {
  public:
    observed(pipeline_io& io, const core::request_context& ctx)
        : io_(io),
          obs_(io.metrics, io.shard, io.gen.access_log.get(), io.gen.snap->config, ctx,
               io.out.bytes_written()) {}
    ~observed() { obs_.finish(out, io_.out.bytes_written(), io_.out.overhead_ms()); }
    core::outcome out;

  private:
    pipeline_io& io_;
    observe::request_observation obs_;
};

bool client_fault_status(int s) {
    return s == 400 || s == 404 || s == 413 || s == 415 || s == 422;
}

std::int64_t unix_seconds() {
    return core::coarse_unix_ms() / 1000;
}

// An upstream error status as the attempt's failure; none for a client-fault 4xx,
// which is passed on as the upstream sent it.
std::optional<attempt_error> status_failure(const config::provider_config& pc, int status,
                                            const upstream::response_parser& parser) {
    if (status == 401 || status == 403) {
        spdlog::warn("provider {} refused the gateway's credentials (HTTP {})", pc.name, status);
        return attempt_error::fail(attempt_source::head, attempt_kind::auth,
                                   "provider " + pc.name +
                                       " refused the gateway's credentials (HTTP " +
                                       std::to_string(status) + ")",
                                   status);
    }
    if (client_fault_status(status)) return std::nullopt;
    auto e = attempt_error::fail(attempt_source::head, attempt_kind::status,
                                 "provider " + pc.name + " answered HTTP " + std::to_string(status),
                                 status);
    e.retry_after = core::parse_retry_after(parser.retry_after());
    return e;
}

class forwarder {
  public:
    forwarder(pipeline_io& io, core::request_context& ctx, completion& done)
        : io_(io),
          ctx_(ctx),
          done_(done),
          snap_(*io.gen.snap),
          chain_(*snap_.policies),
          drain_(snap_.config.routing.on_client_disconnect == config::disconnect_mode::drain),
          watch_(io.client, !drain_) {}

    // The plan's targets in order until one answers, the client leaves, or the plan ends.
    asio::awaitable<void> run();

  private:
    asio::awaitable<attempt_error> attempt(const core::route_target& target);
    struct refusal {
        errc why;
        std::string message;
    };
    std::optional<refusal> prepare(const core::route_target& target);
    asio::awaitable<attempt_error> relay_whole(upstream::exchange& x);
    asio::awaitable<attempt_error> relay_stream(upstream::exchange& x);
    asio::awaitable<attempt_error> end_stream(bool complete, bool client_ok, attempt_error broke);
    asio::awaitable<void> send_failure(const attempt_error& last, bool all_timed_out);
    void answer(int status, errc e) {
        answered_ = true;
        done_.out.status = status;
        done_.out.error = e;
    }
    void client_left() {
        done_.out.client_gone = true;
        done_.out.status = 499;
        done_.out.error = errc::client_closed;
        io_.out.set_close();
    }
    // The client's price header for a non-streamed answer whose usage is final.
    void add_cost_header();
    // The answer has begun: no attempt follows, so the request's bytes go (the client's
    // body, the upstream head and body rendered from it). A stream may last minutes; a
    // long prompt would be most of what it holds meanwhile.
    void drop_request() noexcept {
        body_ = core::spliced_body{};
        std::string().swap(head_);
        adapter_->drop_request();
        ctx_.body = {};
        if (io_.request_body) std::string().swap(*io_.request_body);
    }

    pipeline_io& io_;
    core::request_context& ctx_;
    completion& done_;
    const core::snapshot& snap_;
    const core::chain& chain_;
    const bool drain_;  // routing.on_client_disconnect: drain
    net::client_watch_scope watch_;
    core::spliced_body body_;
    std::string head_;
    std::string out_;
    static constexpr std::size_t out_keep_bytes = 4096;
    std::unique_ptr<upstream::adapter> adapter_;  // this attempt's
    bool answered_ = false;
    core::clock::duration upstream_time_{};  // spent in failed attempts so far
    core::clock::time_point attempt_started_{};
    std::optional<core::clock::duration> time_to_head_;
    // A stream that came whole with its head: its head is written with its end.
    struct unsent_head {
        int status;
        double overhead_ms;
    };
    std::optional<unsent_head> unsent_head_;
};

asio::awaitable<void> forwarder::run() {
    attempt_error last;
    bool all_timed_out = true;
    const auto& plan = ctx_.plan;
    for (std::size_t i = 0; i < plan.size() && !watch_->gone; ++i) {
        const auto& target = plan[i];
        time_to_head_.reset();
        chain_.attempt_start(ctx_, target);
        last = co_await attempt(target);
        // attempt() starts with prepare(), which stamps attempt_started_.
        if (!answered_) upstream_time_ += core::clock::now() - attempt_started_;
        chain_.attempt_end(ctx_, target, core::attempt_result{last, time_to_head_});
        if (io_.metrics)
            if (const auto reason = core::failure_reason(last); !reason.empty())
                io_.metrics->upstream_failure(io_.shard, target.provider->name, reason);
        if (answered_ || last.client_gone()) break;
        if (last.kind != attempt_kind::timeout) all_timed_out = false;
        spdlog::debug("request {}: attempt {} at provider {} failed: {}", ctx_.request_id,
                      ctx_.attempts, target.provider->name, last.message);
        // Another target of the same model only for a retryable failure; the model's
        // fallbacks whatever the failure.
        if (!core::retryable(last, snap_.config.routing.retry))
            while (i + 1 < plan.size() && plan[i + 1].group == target.group) ++i;
    }
    if (answered_) co_return;
    if (watch_->gone || last.client_gone()) {
        client_left();
        co_return;
    }
    co_await send_failure(last, all_timed_out);
}

asio::awaitable<void> forwarder::send_failure(const attempt_error& last, bool all_timed_out) {
    const errc e = core::client_error(last, all_timed_out);
    const std::string message =
        last.message.empty() ? std::string(core::describe(e).message) : last.message;
    done_.out.status = core::describe(e).status;
    done_.out.error = e;
    done_.settle();
    const double overhead = ms_between(ctx_.received_at, core::clock::now()) - ms(upstream_time_);
    if (co_await io_.out.send_error(ctx_, e, message, std::max(0.0, overhead))) io_.out.set_close();
}

// Attempt: the adapter renders the request, the exchange sends it and reads the head,
// then the answer is relayed whole or as a stream.
asio::awaitable<attempt_error> forwarder::attempt(const core::route_target& target) {
    if (auto refused = prepare(target)) {
        // The request cannot go to this target: the client's error, and not a failure
        // of the target (it must not cool it down).
        answer(400, refused->why);
        done_.settle();
        if (co_await io_.out.send_error(ctx_, refused->why, refused->message)) io_.out.set_close();
        co_return attempt_error{};
    }
    const auto& prov = io_.gen.providers.at(target.provider_index);
    std::array<asio::const_buffer, 6> bufs;
    bufs[0] = asio::buffer(head_);
    for (std::size_t i = 0; i < body_.count; ++i)
        bufs[i + 1] = asio::buffer(body_.pieces[i].data(), body_.pieces[i].size());
    upstream::exchange x(prov->config(), *watch_, drain_);
    auto e = co_await x.open(io_.pools.pool_for(prov), {bufs.data(), body_.count + 1}, ctx_);
    if (!e.ok()) co_return e;
    ctx_.upstream_status = x.status();
    time_to_head_ = x.head_at() - x.sent_at();
    if (is_2xx(x.status()) && x.parser().event_stream()) co_return co_await relay_stream(x);
    co_return co_await relay_whole(x);
}

// The attempt's adapter and the upstream request (head_ and body_), or why the request
// cannot go to this target.
std::optional<forwarder::refusal> forwarder::prepare(const core::route_target& target) {
    const auto& prov = *io_.gen.providers.at(target.provider_index);
    const auto& pc = prov.config();
    ctx_.served_by = &target;
    ++ctx_.attempts;
    attempt_started_ = core::clock::now();
    // A new attempt: only what its upstream says counts, plus, estimated, what an earlier
    // upstream used after it accepted the request (a 2xx head, then a broken body).
    ctx_.meter.next_attempt(is_2xx(ctx_.upstream_status), ctx_.estimate.prompt_tokens);
    ctx_.upstream_status = 0;
    adapter_ = upstream::make_adapter(ctx_, pc, unix_seconds());
    if (!adapter_)  // the client asked a model for something its provider cannot do
        return refusal{errc::invalid_request, "model '" + ctx_.req.model.substr(0, 200) +
                                                  "' does not support this endpoint"};
    if (auto error = adapter_->render_request(ctx_, target.upstream_model, body_); !error.empty()) {
        const errc why = adapter_->render_error();
        if (why == errc::unsupported_on_target)
            error += " (target: provider " + pc.name + ", model " +
                     std::string(target.upstream_model) + ")";
        return refusal{why, std::move(error)};
    }
    prov.render_head(head_, adapter_->upstream_endpoint(), target.upstream_model, body_.size(),
                     ctx_.req.stream, ctx_.request_id);
    return std::nullopt;
}

// Relay, whole: the answer read to its end (bounded), through the adapter, in one write.
asio::awaitable<attempt_error> forwarder::relay_whole(upstream::exchange& x) {
    const auto& pc = *ctx_.served_by->provider;
    const int status = x.status();
    std::string body;
    // (No co_await inside a conditional expression: GCC 12 destroys its temporaries twice.)
    auto whole = x.read_body_now(body);
    attempt_error e;
    if (whole)
        e = std::move(*whole);
    else
        e = co_await x.read_body(body, snap_.config.routing.drain_limit);
    if (e.client_gone()) {
        // A drained answer goes to the adapter like any answer: its usage is exact.
        if (drain_ && x.parser().is_done() && is_2xx(status)) adapter_->on_body(body, ctx_.meter);
        co_return e;
    }
    if (!e.ok()) co_return e;
    // An answer whose body came with its head was done when the head was read.
    const auto upstream_done = whole ? x.head_at() : core::clock::now();
    x.finish(true);
    // Views into the parser or the adapter, which outlive the write below.
    std::string_view content_type = x.parser().content_type();
    if (content_type.empty()) content_type = "application/json";
    if (is_2xx(status)) {
        if (!adapter_->on_body(body, ctx_.meter))
            co_return attempt_error::fail(
                attempt_source::body, attempt_kind::malformed,
                "provider " + pc.name + " sent an answer that could not be translated", status);
        if (const auto ct = adapter_->content_type(); !ct.empty()) content_type = ct;
        add_cost_header();
        chain_.response_head(ctx_, core::response_head{status, false});
    } else if (auto failed = status_failure(pc, status, x.parser())) {
        co_return std::move(*failed);
    } else if (auto message = adapter_->error_message(body)) {
        // A client-fault 4xx, in the client's API shape when translating.
        if (message->empty()) *message = "the upstream refused the request";
        body = responder::error_body(ctx_, errc::invalid_request, *message);
        content_type = "application/json";
    }
    const auto now = core::clock::now();
    // Time in the gateway: all of it but the upstream's (this attempt's and any failed
    // earlier ones, connects included).
    const double overhead = ms_between(ctx_.received_at, now) -
                            ms_between(x.sent_at(), upstream_done) - ms(upstream_time_) -
                            ms_between(attempt_started_, x.sent_at());
    answer(status, errc::ok);
    ctx_.first_byte_at = now;
    done_.settle();
    auto wrote = io_.out.send_now(ctx_, status, content_type, body, std::max(0.0, overhead));
    if (!wrote) wrote = co_await io_.out.write_rest();
    if (*wrote) {
        done_.out.client_gone = true;
        io_.out.set_close();
    }
    co_return attempt_error{};
}

void forwarder::add_cost_header() {
    if (!ctx_.meter.has_final()) return;
    const auto* model =
        ctx_.served_by && ctx_.served_by->model ? ctx_.served_by->model : ctx_.model;
    if (!model || !model->price) return;
    const double usd =
        core::price_usage(model, ctx_.meter.result(ctx_.estimate.prompt_tokens, true));
    std::string text;
    core::json_text::append_fixed(text, usd, 10);
    auto n = text.size();
    while (n > 3 && text[n - 1] == '0' && text[n - 2] != '.') --n;
    text.resize(n);
    ctx_.response_headers.add("x-tollgate-cost-usd", text);
}

// Relay, streamed: one upstream read → the framer → the adapter, per event → one client
// write; with drain, reading goes on (bounded by drain_limit) after the client left.
asio::awaitable<attempt_error> forwarder::relay_stream(upstream::exchange& x) {
    const auto& pc = *ctx_.served_by->provider;
    const int status = x.status();
    answer(status, errc::ok);
    drop_request();
    done_.out.stream = true;
    x.parser().body_limit(boost::none);
    chain_.response_head(ctx_, core::response_head{status, true});

    // The adapter turns each upstream event into the client's bytes (in out_) and usage
    // observations; nothing here knows which API either side speaks.
    auto upstream_event = [&](const core::sse_event& ev) {
        adapter_->on_event(ev, out_, ctx_.meter);
    };
    core::sse_framer framer(pc.max_event_bytes);
    auto feed = [&]() {
        // What one read brought goes out in one write: room for all of it at once.
        out_.reserve(out_.size() + x.parser().body().size());
        const bool ok = framer.feed(x.parser().body(), upstream_event);
        x.parser().body().clear();
        // An open stream waits between events most of its life: it holds no read buffer
        // meanwhile once it idles (read_piece; on TLS after every event).
        x.release_between_events();
        return ok;
    };
    bool framing_ok = feed();
    bool client_ok = !watch_->gone;
    // The gateway's time before the upstream took over (failed attempts excluded).
    const double overhead =
        std::max(0.0, ms_between(ctx_.received_at, attempt_started_) - ms(upstream_time_));
    if (client_ok && framing_ok && x.parser().is_done()) {
        // The whole answer came with its head: head, events and end go out in one write,
        // at the end.
        unsent_head_ = unsent_head{status, overhead};
    } else if (client_ok) {
        client_ok =
            !co_await io_.out.start_stream(ctx_, status, "text/event-stream", out_, overhead);
        // The head is out: its parts are not needed for the rest of the stream.
        ctx_.response_headers.release();
        if (!out_.empty()) ctx_.first_byte_at = core::clock::now();
        out_.clear();
    }
    std::optional<core::clock::time_point> drain_deadline;
    attempt_error broke;  // how the stream broke off, if it did
    while (framing_ok && !x.parser().is_done()) {
        if (!client_ok || watch_->gone) {
            client_ok = false;
            if (!drain_) break;
            if (!drain_deadline)
                drain_deadline = core::coarse_now() + snap_.config.routing.drain_limit;
        }
        auto timeout = std::chrono::duration_cast<core::clock::duration>(pc.idle_timeout);
        if (drain_deadline) {
            const auto left = *drain_deadline - core::coarse_now();
            if (left <= core::clock::duration::zero()) break;
            timeout = std::min(timeout, left);
        }
        const auto ec = co_await x.read_piece(timeout);
        framing_ok = feed();
        if (ec) {
            if (watch_->gone || ec == asio::error::operation_aborted) {
                client_ok = false;
                break;
            }
            broke = upstream::is_timeout(ec)
                        ? attempt_error::fail(attempt_source::stream, attempt_kind::timeout,
                                              "upstream stream stalled (idle_timeout)")
                        : attempt_error::fail(
                              attempt_source::stream, attempt_kind::broken,
                              "upstream stream ended abnormally (" + ec.message() + ")");
            break;
        }
        if (!framing_ok) {
            broke = attempt_error::fail(attempt_source::stream, attempt_kind::too_large,
                                        "upstream sent an SSE event larger than max_event_bytes");
            break;
        }
        // The last read: what it brought goes out with the end of the stream, in one write.
        if (x.parser().is_done()) break;
        if (client_ok && !out_.empty()) {
            if (!ctx_.first_byte_at) ctx_.first_byte_at = core::clock::now();
            auto wrote = io_.out.stream_piece_now(out_);
            if (!wrote) wrote = co_await io_.out.write_rest();
            client_ok = !*wrote;
        }
        // A waiting stream keeps no large write buffer (a big read's room goes back).
        if (out_.capacity() > out_keep_bytes)
            std::string().swap(out_);
        else
            out_.clear();
    }
    // The last event may lack its blank line (the body ended inside it).
    if (framing_ok && x.parser().is_done()) framer.finish(upstream_event);
    if (!client_ok) out_.clear();
    // The upstream's events (not the closing or error events added below) are the first
    // byte when nothing went out before them.
    if (!out_.empty() && !ctx_.first_byte_at) ctx_.first_byte_at = core::clock::now();
    const bool complete = x.parser().is_done() && broke.ok() && framing_ok;
    x.finish(complete);
    adapter_->finish(complete, out_, ctx_.meter);
    co_return co_await end_stream(complete, client_ok, std::move(broke));
}

// The stream's last bytes in one write: the last read's events, the adapter's closing
// ones, for a stream that broke the error as one SSE event (its head said 200), and the
// end of the chunked body.
asio::awaitable<attempt_error> forwarder::end_stream(bool complete, bool client_ok,
                                                     attempt_error broke) {
    const bool error_event = adapter_->stream_failed();
    attempt_error ended;
    if (error_event)
        ended = attempt_error::fail(attempt_source::stream, attempt_kind::error_event,
                                    "the upstream ended its stream with an error event");
    if (!client_ok || watch_->gone) {
        client_left();
        co_return ended;
    }
    // Whether upstream events are still to go out: a client that fails to take them left
    // before the answer ended (499); one that fails to take only the end is just closed.
    const bool relaying = !out_.empty();
    // An upstream error event (relayed as it came): the request failed, and its record says so.
    if (complete && error_event) done_.out.error = errc::upstream_unavailable;
    if (!complete) {
        // A stream that broke after its head is a failure of the target, for the router's
        // health and the failure metrics, like one that never started.
        if (broke.ok())
            broke = attempt_error::fail(attempt_source::stream, attempt_kind::broken,
                                        "upstream stream ended abnormally");
        ended = std::move(broke);
        const errc e = core::client_error(ended, true);
        done_.out.error = e;
        if (ctx_.ep == core::endpoint::messages) {
            out_ += "event: error\ndata: ";
            out_ += core::anthropic_error_body(e, ended.message);
        } else {
            out_ += "data: ";
            out_ += core::openai_error_body(e, ended.message);
        }
        out_ += "\n\n";
    }
    done_.settle();
    // What is left (the last read's events, the adapter's closing ones, an error event)
    // and the end of the body, in one write; the head too when the stream came whole.
    const auto failed = unsent_head_ ? co_await io_.out.whole_stream(ctx_, unsent_head_->status,
                                                                     "text/event-stream", out_,
                                                                     unsent_head_->overhead_ms)
                                     : co_await io_.out.end_stream(out_);
    if (failed) {
        if (relaying)
            client_left();
        else
            io_.out.set_close();
    }
    out_.clear();
    co_return ended;
}

// A local answer: all of its time was spent in the gateway.
double overhead_ms(const core::request_context& ctx) {
    return ms_between(ctx.received_at, core::clock::now());
}

asio::awaitable<void> send_local_reply(pipeline_io& io, core::request_context& ctx,
                                       completion& done) {
    done.settle();
    auto& r = ctx.reply;
    ctx.response_headers.append(r.headers);
    r.headers.release();
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
    observed seen(io, ctx);
    // Admit: the body is read as the endpoint's JSON, its cost estimated, and the chain's
    // request phase decides (a local reply stops here).
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
        co_await send_local_reply(io, ctx, done);
        co_return;
    }
    // Plan: the router has put the targets in ctx.plan.
    if (ctx.plan.empty()) {
        done.out.status = 500;
        done.out.error = errc::internal;
        ctx.set_error_reply(errc::internal, "no route for this request");
        co_await send_local_reply(io, ctx, done);
        co_return;
    }
    // Attempt and relay; complete when `done` and `seen` go out of scope.
    done.out.stream = ctx.req.stream;
    forwarder f(io, ctx, done);
    co_await f.run();
}

}  // namespace tollgate::proxy
