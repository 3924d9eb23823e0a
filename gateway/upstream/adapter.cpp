#include "gateway/upstream/adapter.hpp"

#include "gateway/upstream/adapters/adapters.hpp"

namespace tollgate::upstream {

std::unique_ptr<adapter> make_adapter(const core::request_context& ctx,
                                      const config::provider_config& provider,
                                      std::int64_t created) {
    const bool anthropic_kind = provider.kind == config::provider_kind::anthropic;
    switch (ctx.ep) {
        case core::endpoint::chat_completions:
            if (anthropic_kind) return std::make_unique<chat_via_anthropic>(provider, created);
            return std::make_unique<openai_native>(ctx.ep);
        case core::endpoint::embeddings:
            if (anthropic_kind) return nullptr;
            return std::make_unique<openai_native>(ctx.ep);
        case core::endpoint::messages:
            if (anthropic_kind) return std::make_unique<anthropic_native>();
            return std::make_unique<messages_via_openai>();
        case core::endpoint::responses:
            if (anthropic_kind) return std::make_unique<responses_via_anthropic>(provider, created);
            if (provider.responses == config::provider_config::responses_mode::translate)
                return std::make_unique<responses_via_chat>(created);
            return std::make_unique<responses_native>();
        case core::endpoint::models:
            break;
    }
    return nullptr;
}

}  // namespace tollgate::upstream
