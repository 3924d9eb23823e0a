// The Responses API adapters (adapters.hpp): native pass-through, and the translations
// through chat completions (an OpenAI-compatible server without /responses) and through
// chat completions and then the Messages API (Anthropic).
#include "gateway/upstream/adapters/adapters.hpp"

#include <cctype>

namespace tollgate::upstream {

namespace {

// "resp_" and the request id, kept to the characters a Response id uses.
std::string response_id_for(const core::request_context& ctx) {
    std::string id = "resp_";
    for (char c : ctx.request_id) {
        if (id.size() >= 64) break;
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '_' || c == '-') id += c;
    }
    if (id.size() == 5) id += "tollgate";
    return id;
}

// A chat chunk payload out of one translated SSE event ("data: …\n\n"), or empty.
std::string_view payload_of(std::string_view event) {
    if (!event.starts_with("data: ")) return {};
    event.remove_prefix(6);
    while (!event.empty() && (event.back() == '\n' || event.back() == '\r')) event.remove_suffix(1);
    return event;
}

void use_body(std::string& storage, std::string body, core::spliced_body& out) {
    storage = std::move(body);
    out = core::spliced_body{};
    out.count = 1;
    out.pieces[0] = storage;
}

}  // namespace

// --- responses_native -------------------------------------------------------------------

std::string responses_native::render_request(const core::request_context& ctx,
                                             std::string_view upstream_model,
                                             core::spliced_body& out) {
    core::splice_body(ctx.body, ctx.req, upstream_model, false, out);
    return {};
}

bool responses_native::on_body(std::string& body, core::usage_meter& meter) {
    responses_observer::body(body, meter);
    return true;
}

void responses_native::on_event(const core::sse_event& ev, std::string& out,
                                core::usage_meter& meter) {
    if (ev.has_data && !observer_.event(ev.event, ev.data, meter)) stream_failed_ = true;
    out.append(ev.raw);
}

// --- responses_via_chat -----------------------------------------------------------------

std::string responses_via_chat::render_request(const core::request_context& ctx,
                                               std::string_view upstream_model,
                                               core::spliced_body& out) {
    auto t = responses::responses_to_chat_request(ctx.body, upstream_model);
    if (!t.ok()) {
        if (t.unsupported()) render_error_ = core::errc::unsupported_on_target;
        return std::move(t.error);
    }
    use_body(body_, std::move(t.body), out);
    echo_ = std::move(t.echo);
    client_model_ = ctx.req.model;
    response_id_ = response_id_for(ctx);
    return {};
}

bool responses_via_chat::on_body(std::string& body, core::usage_meter& meter) {
    openai_observer::body(body, meter);
    std::string translated =
        responses::chat_to_responses_response(body, client_model_, created_, response_id_, echo_);
    if (translated.empty()) return false;
    body = std::move(translated);
    return true;
}

void responses_via_chat::on_event(const core::sse_event& ev, std::string& out,
                                  core::usage_meter& meter) {
    if (!ev.has_data) return;  // comments and pings mean nothing in the other API
    if (!translator_) translator_.emplace(client_model_, created_, response_id_, std::move(echo_));
    if (ev.event == "error" || openai_observer::is_error(ev.data)) stream_failed_ = true;
    observer_.chunk(ev.data, meter);
    translator_->on_chunk(ev.data, out);
    if (translator_->failed()) stream_failed_ = true;
}

void responses_via_chat::finish(bool complete, std::string& out, core::usage_meter& meter) {
    if (complete) observer_.complete(meter);
    if (!translator_) translator_.emplace(client_model_, created_, response_id_, std::move(echo_));
    if (!translator_->finished()) translator_->finish(complete, out);
    if (translator_->failed()) stream_failed_ = true;
}

// --- responses_via_anthropic ------------------------------------------------------------

std::string responses_via_anthropic::render_request(const core::request_context& ctx,
                                                    std::string_view upstream_model,
                                                    core::spliced_body& out) {
    auto chat = responses::responses_to_chat_request(ctx.body, upstream_model);
    if (!chat.ok()) {
        if (chat.unsupported()) render_error_ = core::errc::unsupported_on_target;
        return std::move(chat.error);
    }
    auto messages =
        anthropic::chat_to_messages_request(chat.body, upstream_model, default_max_tokens_);
    if (!messages.ok()) return std::move(messages.error);
    use_body(body_, std::move(messages.body), out);
    echo_ = std::move(chat.echo);
    client_model_ = ctx.req.model;
    response_id_ = response_id_for(ctx);
    return {};
}

bool responses_via_anthropic::on_body(std::string& body, core::usage_meter& meter) {
    anthropic_observer::body(body, meter);
    const std::string chat = anthropic::messages_to_chat_response(body, client_model_, created_);
    if (chat.empty()) return false;
    std::string translated =
        responses::chat_to_responses_response(chat, client_model_, created_, response_id_, echo_);
    if (translated.empty()) return false;
    body = std::move(translated);
    return true;
}

std::optional<std::string> responses_via_anthropic::error_message(std::string_view body) const {
    return anthropic::error_message(body);
}

void responses_via_anthropic::on_event(const core::sse_event& ev, std::string& out,
                                       core::usage_meter& meter) {
    if (!ev.has_data) return;
    if (!to_chat_) {
        // The chat leg always carries usage: the Response's usage is built from it.
        to_chat_.emplace(client_model_, created_, true);
        to_responses_.emplace(client_model_, created_, response_id_, std::move(echo_));
    }
    if (!observer_.event(ev.event, ev.data, meter)) stream_failed_ = true;
    to_chat_->on_event(ev.event, ev.data, chunks_);
    for (const auto& c : chunks_)
        if (const auto payload = payload_of(c); !payload.empty())
            to_responses_->on_chunk(payload, out);
    chunks_.clear();
    if (to_chat_->failed() || to_responses_->failed()) stream_failed_ = true;
}

void responses_via_anthropic::finish(bool complete, std::string& out, core::usage_meter&) {
    if (!to_responses_)
        to_responses_.emplace(client_model_, created_, response_id_, std::move(echo_));
    if (!to_responses_->finished()) to_responses_->finish(complete, out);
    if (to_responses_->failed()) stream_failed_ = true;
}

}  // namespace tollgate::upstream
