#include "gateway/upstream/adapters/adapters.hpp"

namespace tollgate::upstream {

namespace {

void append_all(std::vector<std::string>& events, std::string& out) {
    for (const auto& e : events) out += e;
    events.clear();
}

}  // namespace

// --- chat_via_anthropic -----------------------------------------------------------------

std::string chat_via_anthropic::render_request(const core::request_context& ctx,
                                               std::string_view upstream_model,
                                               core::spliced_body& out) {
    auto t = anthropic::chat_to_messages_request(ctx.body, upstream_model, default_max_tokens_);
    if (!t.ok()) return std::move(t.error);
    body_ = std::move(t.body);
    out = core::spliced_body{};
    out.count = 1;
    out.pieces[0] = body_;
    client_model_ = ctx.req.model;
    // Usage chunks only when the client asked: the meter reads Anthropic's own events.
    client_include_usage_ = ctx.req.client_include_usage;
    return {};
}

bool chat_via_anthropic::on_body(std::string& body, core::usage_meter& meter) {
    anthropic_observer::body(body, meter);
    std::string translated = anthropic::messages_to_chat_response(body, client_model_, created_);
    if (translated.empty()) return false;
    body = std::move(translated);
    return true;
}

std::optional<std::string> chat_via_anthropic::error_message(std::string_view body) const {
    return anthropic::error_message(body);
}

void chat_via_anthropic::on_event(const core::sse_event& ev, std::string& out,
                                  core::usage_meter& meter) {
    // Comments and pings mean nothing in the other API.
    if (!ev.has_data) return;
    if (!translator_) translator_.emplace(client_model_, created_, client_include_usage_);
    if (!observer_.event(ev.event, ev.data, meter)) stream_failed_ = true;
    translator_->on_event(ev.event, ev.data, events_);
    if (translator_->failed()) stream_failed_ = true;
    append_all(events_, out);
}

// --- messages_via_openai ----------------------------------------------------------------

std::string messages_via_openai::render_request(const core::request_context& ctx,
                                                std::string_view upstream_model,
                                                core::spliced_body& out) {
    // A streamed request also asks for the final usage chunk (the translator adds it).
    auto t = anthropic::messages_to_chat_request(ctx.body, upstream_model);
    if (!t.ok()) return std::move(t.error);
    body_ = std::move(t.body);
    out = core::spliced_body{};
    out.count = 1;
    out.pieces[0] = body_;
    client_model_ = ctx.req.model;
    return {};
}

bool messages_via_openai::on_body(std::string& body, core::usage_meter& meter) {
    openai_observer::body(body, meter);
    std::string translated = anthropic::chat_to_messages_response(body, client_model_);
    if (translated.empty()) return false;
    body = std::move(translated);
    return true;
}

std::optional<std::string> messages_via_openai::error_message(std::string_view body) const {
    return anthropic::error_message(body);
}

void messages_via_openai::on_event(const core::sse_event& ev, std::string& out,
                                   core::usage_meter& meter) {
    if (!ev.has_data) return;
    if (!translator_) translator_.emplace(client_model_);
    if (ev.event == "error" || openai_observer::is_error(ev.data)) stream_failed_ = true;
    observer_.chunk(ev.data, meter);
    translator_->on_data(ev.data, events_);
    if (translator_->failed()) stream_failed_ = true;
    append_all(events_, out);
}

void messages_via_openai::finish(bool complete, std::string& out, core::usage_meter& meter) {
    if (!complete) return;
    observer_.complete(meter);
    // A server that ends its stream without `[DONE]`: the Anthropic client still gets
    // its message_delta and message_stop.
    if (translator_ && !translator_->finished() && !translator_->failed()) {
        translator_->on_data("[DONE]", events_);
        append_all(events_, out);
    }
}

}  // namespace tollgate::upstream
