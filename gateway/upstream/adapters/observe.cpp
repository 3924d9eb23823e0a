#include "gateway/upstream/adapters/observe.hpp"

#include "gateway/upstream/usage_extract.hpp"

namespace tollgate::upstream {

namespace {

core::usage_figures figures(const extracted_usage& u) noexcept {
    core::usage_figures f;
    f.prompt_tokens = u.prompt_tokens;
    f.completion_tokens = u.completion_tokens;
    if (!f.completion_tokens && u.total_tokens && u.prompt_tokens &&
        *u.total_tokens >= *u.prompt_tokens)
        f.completion_tokens = *u.total_tokens - *u.prompt_tokens;
    f.cached_tokens = u.cached_tokens;
    return f;
}

void receive_text(const event_facts& facts, core::usage_meter& meter) noexcept {
    meter.received(facts.text.ascii, facts.text.other);
}

}  // namespace

void openai_observer::body(std::string_view json, core::usage_meter& meter) noexcept {
    const auto facts = scan_event(json);
    if (const auto& u = facts.usage) {
        auto f = figures(*u);
        // Embeddings report prompt (and total) tokens only: nothing was generated.
        if (!f.completion_tokens) f.completion_tokens = 0;
        meter.final_figures(f);
    } else {
        receive_text(facts, meter);
    }
}

bool openai_observer::chunk(std::string_view data, core::usage_meter& meter) noexcept {
    return chunk(data, scan(data), meter);
}

bool openai_observer::chunk(std::string_view data, const event_facts& facts,
                            core::usage_meter& meter) noexcept {
    if (data == "[DONE]") {
        ended_ = true;
        return false;
    }
    if (data.size() < 2 || data[0] != '{') return false;
    if (is_error(data)) failed_ = true;
    // A choice that finished: the answer is complete (some servers send no [DONE]).
    if (facts.finish_reason) ended_ = true;
    bool usage_only = false;
    if (facts.usage) {
        const auto f = figures(*facts.usage);
        usage_only = facts.empty_choices;
        if (usage_only) {
            meter.final_figures(f);
        } else {
            meter.provisional(f);
            last_ = f;
        }
    }
    if (!usage_only) receive_text(facts, meter);
    return usage_only;
}

void openai_observer::complete(core::usage_meter& meter) noexcept {
    // A running count is the final one only for an answer that ended as it should.
    if (last_ && ended_ && !failed_ && !meter.has_final()) meter.final_figures(*last_);
}

bool openai_observer::is_error(std::string_view data) noexcept {
    return data.starts_with("{\"error\"");
}

void responses_observer::body(std::string_view json, core::usage_meter& meter) noexcept {
    const auto facts = scan_event(json);
    if (facts.usage)
        meter.final_figures(figures(*facts.usage));
    else
        receive_text(facts, meter);
}

bool responses_observer::event(std::string_view name, std::string_view data,
                               core::usage_meter& meter) noexcept {
    // One pass over the event for all it may say.
    const auto facts = scan_event(data);
    std::string_view type = name;
    if (type.empty()) type = facts.type;
    if (type.ends_with(".delta")) {
        receive_text(facts, meter);
    } else if (type == "response.completed" || type == "response.incomplete" ||
               type == "response.failed") {
        if (facts.usage) meter.final_figures(figures(*facts.usage));
        return type != "response.failed";
    } else if (type == "error") {
        return false;
    }
    return true;
}

void anthropic_observer::body(std::string_view json, core::usage_meter& meter) noexcept {
    const auto facts = scan_event(json);
    if (facts.usage)
        meter.final_figures(figures(*facts.usage));
    else
        receive_text(facts, meter);
}

bool anthropic_observer::event(std::string_view name, std::string_view data,
                               core::usage_meter& meter) noexcept {
    // One pass over the event for all it may say.
    const auto facts = scan_event(data, memo_);
    std::string_view type = name;
    if (type.empty()) type = facts.type;
    if (type == "content_block_delta") {
        receive_text(facts, meter);
    } else if (type == "message_start") {
        if (facts.usage) meter.provisional(figures(*facts.usage));
    } else if (type == "message_delta") {
        if (facts.usage) meter.final_figures(figures(*facts.usage));
    } else if (type == "error") {
        return false;
    }
    return true;
}

}  // namespace tollgate::upstream
