#include "gateway/upstream/adapters/adapters.hpp"

#include "gateway/upstream/usage_extract.hpp"

namespace tollgate::upstream {

// --- openai_native ----------------------------------------------------------------------

std::string openai_native::render_request(const core::request_context& ctx,
                                          std::string_view upstream_model,
                                          core::spliced_body& out) {
    // Streamed chat: always ask for the final usage chunk; the meter bills from it.
    const bool force = ep_ == core::endpoint::chat_completions && ctx.req.stream;
    forced_usage_ = force && !ctx.req.client_include_usage;
    core::splice_body(ctx.body, ctx.req, upstream_model, force, out);
    return {};
}

bool openai_native::on_body(std::string& body, core::usage_meter& meter) {
    openai_observer::body(body, meter);
    return true;
}

void openai_native::on_event(const core::sse_event& ev, std::string& out,
                             core::usage_meter& meter) {
    if (ev.event == "error" || (ev.has_data && openai_observer::is_error(ev.data)))
        stream_failed_ = true;
    if (!ev.has_data) {
        out.append(ev.raw);  // comments and pings go through as they came
        return;
    }
    // One pass over the chunk for the observer and the usage:null cuts.
    const auto facts = observer_.scan(ev.data);
    const bool usage_only = observer_.chunk(ev.data, facts, meter);
    if (!forced_usage_) {
        out.append(ev.raw);
        return;
    }
    // The client did not ask for usage: a direct client would see no trace of it.
    if (usage_only) return;
    append_without_null_usage(ev.raw, ev.data, facts, out);
}

void openai_native::finish(bool complete, std::string&, core::usage_meter& meter) {
    if (complete) observer_.complete(meter);
}

// --- anthropic_native -------------------------------------------------------------------

std::string anthropic_native::render_request(const core::request_context& ctx,
                                             std::string_view upstream_model,
                                             core::spliced_body& out) {
    core::splice_body(ctx.body, ctx.req, upstream_model, false, out);
    return {};
}

bool anthropic_native::on_body(std::string& body, core::usage_meter& meter) {
    anthropic_observer::body(body, meter);
    return true;
}

void anthropic_native::on_event(const core::sse_event& ev, std::string& out,
                                core::usage_meter& meter) {
    if (ev.has_data && !observer_.event(ev.event, ev.data, meter)) stream_failed_ = true;
    out.append(ev.raw);
}

}  // namespace tollgate::upstream
