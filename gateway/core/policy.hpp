#pragma once
// The policy interface (after Envoy's HTTP filters and Pingora's phases).
//
// A policy is immutable after construction and shared by every request on every worker
// thread, so its const methods must be thread-safe; per-request state lives in the
// request_context (a state slot). Request hooks run in chain order; response hooks,
// on_settle and on_complete in reverse order.

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>

#include "gateway/core/attempt_error.hpp"
#include "gateway/core/request_context.hpp"

namespace tollgate::core {

enum class verdict {
    next,     // go on to the next policy
    reply,    // answer now with ctx.reply; the chain stops
    suspend,  // needs I/O: the chain awaits on_request_async()
};

// One complete Server-Sent Event from the upstream.
struct sse_event {
    std::string_view raw;    // the bytes as received, terminating blank line included
    std::string_view event;  // the `event:` field, empty if none
    std::string_view data;   // the `data:` lines joined with '\n'
    bool has_data = false;
};

// The upstream response head as the policies see it.
struct response_head {
    int status = 0;
    bool stream = false;  // text/event-stream
};

struct outcome {
    int status = 0;  // what the client got (499: client gone before the answer ended)
    errc error = errc::ok;
    bool stream = false;
    bool client_gone = false;
};

class policy {
  public:
    virtual ~policy() = default;
    virtual std::string_view name() const noexcept = 0;

    // Request phase. The synchronous part runs first; returning verdict::suspend makes the
    // chain co_await on_request_async(), which must not return verdict::suspend.
    // Cancellation: the awaitable is destroyed if the client goes away while suspended;
    // on_complete still runs.
    virtual verdict on_request(request_context&) const { return verdict::next; }
    virtual boost::asio::awaitable<verdict> on_request_async(request_context&) const;

    // The upstream answered (head only). May add ctx.response_headers. The answer's
    // bytes and events are the upstream adapter's (gateway/upstream/adapter.hpp): it
    // alone knows the wire formats, and it feeds ctx.meter, whose final figure is in
    // ctx.usage when on_complete runs.
    virtual void on_response_head(request_context&, const response_head&) const {}
    // Around each upstream attempt (several per request with retries and fallbacks).
    virtual void on_attempt_start(request_context&, const route_target&) const {}
    virtual void on_attempt_end(request_context&, const route_target&,
                                const attempt_result&) const {}

    // Exactly once for every request that entered the chain, as soon as what it used is
    // known: when the upstream's answer has ended (or the request failed or was refused),
    // before the answer's last bytes go to the client; at the latest just before
    // on_complete. Limits and budgets give back or settle what the request held here, so a
    // client that sends its next request once it has the answer never finds this one still
    // counted. For a forwarded request, ctx.usage and ctx.cost_usd are final (usage_final).
    virtual void on_settle(request_context&) const noexcept {}

    // Exactly once for every request that entered the chain, whatever its ending, after
    // on_settle and after its last write to the client (`outcome` says how that went).
    virtual void on_complete(request_context&, const outcome&) const noexcept {}
};

}  // namespace tollgate::core
