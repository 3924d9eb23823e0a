#pragma once
// Upstream adapters: the only place that knows which wire format the upstream speaks.
//
// One adapter per attempt, picked by make_adapter() from the client's endpoint and the
// provider's kind (Pingora's upstream_request_filter / response_filter, LiteLLM's
// per-provider transformations). It renders the upstream request from the client's, and
// turns the upstream's answer — a whole body, or a stream event by event — into the
// client's wire format *and* usage observations for the request's usage_meter. The
// pipeline drives it and never branches on a translation itself. Native pass-through is
// an adapter too: it copies the bytes and only observes (and hides usage the gateway
// forced: SPEC "the client sees what a direct client would see").
//
// Sans-io: no sockets, no clock (the `created` time is given), no globals; safe on any
// input (malformed upstream JSON is a failed stream or an unreadable body, never a
// crash). Thread-safety: one attempt's state; use from one thread.
//
// Observations are always taken from the upstream's own events, before any translation,
// so a translator's made-up figures (an Anthropic message_start it invents for an OpenAI
// upstream) can never count as the upstream's.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "gateway/core/body_parser.hpp"
#include "gateway/core/errors.hpp"
#include "gateway/core/policy.hpp"
#include "gateway/core/request_context.hpp"
#include "gateway/core/usage_meter.hpp"

namespace tollgate::upstream {

class adapter {
  public:
    virtual ~adapter() = default;

    // The API the upstream is spoken to in (picks the upstream URL path).
    virtual core::endpoint upstream_endpoint() const noexcept = 0;

    // Renders the upstream request body for `upstream_model` into `out` (its pieces point
    // into ctx.body or into this adapter, valid while both live). Returns an error
    // message when the client's request cannot be sent this way (the client's fault:
    // 400), else empty.
    virtual std::string render_request(const core::request_context& ctx,
                                       std::string_view upstream_model,
                                       core::spliced_body& out) = 0;

    // The answer has begun and no attempt follows: what render_request keeps for the
    // request (a translated body) can go.
    virtual void drop_request() noexcept {}

    // A whole 2xx answer: observes its usage and turns `body` (in place) into the
    // client's body. False when the answer cannot be read as the upstream's API (an
    // upstream failure).
    virtual bool on_body(std::string& body, core::usage_meter& meter) = 0;

    // The content type of a body on_body() rewrote; empty: the upstream's stands.
    virtual std::string_view content_type() const noexcept { return {}; }

    // A client-fault error answer (400, 404, 422...): nullopt to pass the upstream's body
    // through as it is; else the message to send in the client's error shape.
    virtual std::optional<std::string> error_message(std::string_view body) const {
        return std::nullopt;
    }

    // One complete upstream SSE event: observes it and appends what the client gets for
    // it (zero or more complete events, in the client's API) to `out`.
    virtual void on_event(const core::sse_event& ev, std::string& out,
                          core::usage_meter& meter) = 0;

    // The upstream stream ended; `complete`: it ended as its protocol says a stream ends.
    // May append final events and turn the last figures seen into final ones.
    virtual void finish(bool complete, std::string& out, core::usage_meter& meter) {}

    // The upstream reported an error inside the stream (or sent what its API forbids).
    bool stream_failed() const noexcept { return stream_failed_; }

    // What a render_request() error is: invalid_request, or unsupported_on_target (a
    // field the target cannot serve, e.g. previous_response_id through a translation).
    core::errc render_error() const noexcept { return render_error_; }

  protected:
    bool stream_failed_ = false;
    core::errc render_error_ = core::errc::invalid_request;
};

// The adapter for the client's endpoint served by a provider of `provider`'s kind, or
// null when that provider cannot serve the endpoint (the client's error: 400).
// `created` is the Unix time put into translated answers.
std::unique_ptr<adapter> make_adapter(const core::request_context& ctx,
                                      const config::provider_config& provider,
                                      std::int64_t created);

}  // namespace tollgate::upstream
