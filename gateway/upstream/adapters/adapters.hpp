#pragma once
// The adapters make_adapter() picks from (see gateway/upstream/adapter.hpp):
//   client endpoint          provider kind       adapter
//   chat, embeddings         openai | azure      openai_native
//   messages                 anthropic           anthropic_native
//   chat                     anthropic           chat_via_anthropic   (translates)
//   messages                 openai | azure      messages_via_openai  (translates)
//   responses                openai | azure      responses_native     (responses: native)
//   responses                openai | azure      responses_via_chat   (responses: translate)
//   responses                anthropic           responses_via_anthropic (translates twice)

#include <cstdint>
#include <memory>
#include <string>

#include "gateway/upstream/adapter.hpp"
#include "gateway/upstream/adapters/observe.hpp"
#include "gateway/upstream/providers/anthropic_translate.hpp"
#include "gateway/upstream/providers/responses_translate.hpp"

namespace tollgate::upstream {

// OpenAI-kind upstream, OpenAI client: the body with `model` rewritten (and, streamed,
// stream_options.include_usage forced on); answers copied as they come, minus the usage
// the gateway forced (the usage-only chunk and every chunk's `"usage":null`).
class openai_native final : public adapter {
  public:
    explicit openai_native(core::endpoint ep) : ep_(ep) {}
    core::endpoint upstream_endpoint() const noexcept override { return ep_; }
    std::string render_request(const core::request_context& ctx, std::string_view upstream_model,
                               core::spliced_body& out) override;
    bool on_body(std::string& body, core::usage_meter& meter) override;
    void on_event(const core::sse_event& ev, std::string& out, core::usage_meter& meter) override;
    void finish(bool complete, std::string& out, core::usage_meter& meter) override;

  private:
    core::endpoint ep_;
    bool forced_usage_ = false;  // include_usage is on only because the gateway asked
    openai_observer observer_;
};

// Anthropic upstream, Anthropic client (/v1/messages): the body with `model` rewritten;
// answers copied as they come.
class anthropic_native final : public adapter {
  public:
    core::endpoint upstream_endpoint() const noexcept override { return core::endpoint::messages; }
    std::string render_request(const core::request_context& ctx, std::string_view upstream_model,
                               core::spliced_body& out) override;
    bool on_body(std::string& body, core::usage_meter& meter) override;
    void on_event(const core::sse_event& ev, std::string& out, core::usage_meter& meter) override;

  private:
    anthropic_observer observer_;
};

// Anthropic upstream, OpenAI chat-completions client.
class chat_via_anthropic final : public adapter {
  public:
    chat_via_anthropic(const config::provider_config& provider, std::int64_t created)
        : default_max_tokens_(provider.default_max_tokens), created_(created) {}
    core::endpoint upstream_endpoint() const noexcept override { return core::endpoint::messages; }
    std::string render_request(const core::request_context& ctx, std::string_view upstream_model,
                               core::spliced_body& out) override;
    bool on_body(std::string& body, core::usage_meter& meter) override;
    std::string_view content_type() const noexcept override { return "application/json"; }
    std::optional<std::string> error_message(std::string_view body) const override;
    void on_event(const core::sse_event& ev, std::string& out, core::usage_meter& meter) override;
    void drop_request() noexcept override { std::string().swap(body_); }

  private:
    std::uint32_t default_max_tokens_;
    std::int64_t created_;
    std::string client_model_;
    bool client_include_usage_ = false;
    std::string body_;
    std::optional<anthropic::messages_stream_to_chat> translator_;  // made at the first event
    std::vector<std::string> events_;
    anthropic_observer observer_;
};

// OpenAI-kind upstream, Anthropic Messages client (/v1/messages).
class messages_via_openai final : public adapter {
  public:
    core::endpoint upstream_endpoint() const noexcept override {
        return core::endpoint::chat_completions;
    }
    std::string render_request(const core::request_context& ctx, std::string_view upstream_model,
                               core::spliced_body& out) override;
    bool on_body(std::string& body, core::usage_meter& meter) override;
    std::string_view content_type() const noexcept override { return "application/json"; }
    std::optional<std::string> error_message(std::string_view body) const override;
    void on_event(const core::sse_event& ev, std::string& out, core::usage_meter& meter) override;
    void drop_request() noexcept override { std::string().swap(body_); }
    void finish(bool complete, std::string& out, core::usage_meter& meter) override;

  private:
    std::string client_model_;
    std::string body_;
    std::optional<anthropic::chat_stream_to_messages> translator_;  // made at the first event
    std::vector<std::string> events_;
    openai_observer observer_;
};

// OpenAI-kind upstream with a Responses API, Responses client: the body with `model`
// rewritten; answers and events copied as they come (a Response always reports usage).
class responses_native final : public adapter {
  public:
    core::endpoint upstream_endpoint() const noexcept override { return core::endpoint::responses; }
    std::string render_request(const core::request_context& ctx, std::string_view upstream_model,
                               core::spliced_body& out) override;
    bool on_body(std::string& body, core::usage_meter& meter) override;
    void on_event(const core::sse_event& ev, std::string& out, core::usage_meter& meter) override;

  private:
    responses_observer observer_;
};

// OpenAI-compatible upstream without /responses (responses: translate), Responses client:
// the request becomes a chat completion; the answer a Response; the chunks the Responses
// event sequence.
class responses_via_chat final : public adapter {
  public:
    explicit responses_via_chat(std::int64_t created) : created_(created) {}
    core::endpoint upstream_endpoint() const noexcept override {
        return core::endpoint::chat_completions;
    }
    std::string render_request(const core::request_context& ctx, std::string_view upstream_model,
                               core::spliced_body& out) override;
    bool on_body(std::string& body, core::usage_meter& meter) override;
    std::string_view content_type() const noexcept override { return "application/json"; }
    void on_event(const core::sse_event& ev, std::string& out, core::usage_meter& meter) override;
    void drop_request() noexcept override { std::string().swap(body_); }
    void finish(bool complete, std::string& out, core::usage_meter& meter) override;

  private:
    std::int64_t created_;
    std::string client_model_, response_id_, body_;
    // The request's settings, echoed by the Response; moved into the stream translator
    // when a stream starts (one per attempt).
    responses::response_echo echo_;
    std::optional<responses::chat_stream_to_responses> translator_;  // made at the first event
    openai_observer observer_;
};

// Anthropic upstream, Responses client: Responses → chat → Messages for the request, and
// back through both translators for the answer and the stream.
class responses_via_anthropic final : public adapter {
  public:
    responses_via_anthropic(const config::provider_config& provider, std::int64_t created)
        : default_max_tokens_(provider.default_max_tokens), created_(created) {}
    core::endpoint upstream_endpoint() const noexcept override { return core::endpoint::messages; }
    std::string render_request(const core::request_context& ctx, std::string_view upstream_model,
                               core::spliced_body& out) override;
    bool on_body(std::string& body, core::usage_meter& meter) override;
    std::string_view content_type() const noexcept override { return "application/json"; }
    std::optional<std::string> error_message(std::string_view body) const override;
    void on_event(const core::sse_event& ev, std::string& out, core::usage_meter& meter) override;
    void drop_request() noexcept override { std::string().swap(body_); }
    void finish(bool complete, std::string& out, core::usage_meter& meter) override;

  private:
    std::uint32_t default_max_tokens_;
    std::int64_t created_;
    std::string client_model_, response_id_, body_;
    // The request's settings, echoed by the Response; moved into the stream translator
    // when a stream starts (one per attempt).
    responses::response_echo echo_;
    std::optional<anthropic::messages_stream_to_chat> to_chat_;
    std::optional<responses::chat_stream_to_responses> to_responses_;
    std::vector<std::string> chunks_;
    anthropic_observer observer_;
};

}  // namespace tollgate::upstream
