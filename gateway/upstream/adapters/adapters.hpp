#pragma once
// The adapters make_adapter() picks from (see gateway/upstream/adapter.hpp):
//   client endpoint          provider kind       adapter
//   chat, embeddings         openai | azure      openai_native
//   messages                 anthropic           anthropic_native
//   chat                     anthropic           chat_via_anthropic   (translates)
//   messages                 openai | azure      messages_via_openai  (translates)

#include <cstdint>
#include <memory>
#include <string>

#include "gateway/upstream/adapter.hpp"
#include "gateway/upstream/adapters/observe.hpp"
#include "gateway/upstream/providers/anthropic_translate.hpp"

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
    void finish(bool complete, std::string& out, core::usage_meter& meter) override;

  private:
    std::string client_model_;
    std::string body_;
    std::optional<anthropic::chat_stream_to_messages> translator_;  // made at the first event
    std::vector<std::string> events_;
    openai_observer observer_;
};

}  // namespace tollgate::upstream
