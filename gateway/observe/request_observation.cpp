#include "gateway/observe/request_observation.hpp"

namespace tollgate::observe {

using core::ms_between;

request_observation::request_observation(metrics* m, unsigned shard, access_log* log,
                                         const config::gateway_config& cfg,
                                         const core::request_context& ctx,
                                         std::uint64_t bytes_before) noexcept
    : metrics_(m), shard_(shard), log_(log), cfg_(cfg), ctx_(ctx), bytes_before_(bytes_before) {
    if (metrics_) metrics_->inflight.fetch_add(1, std::memory_order_relaxed);
}

request_observation::~request_observation() {
    // A request that never finished (its coroutine destroyed first) still leaves the
    // in-flight gauge.
    if (!finished_ && metrics_) metrics_->inflight.fetch_sub(1, std::memory_order_relaxed);
}

void request_observation::finish(const core::outcome& out, std::uint64_t bytes_after,
                                 std::optional<double> overhead_ms) noexcept {
    if (finished_) return;
    finished_ = true;
    if (metrics_) metrics_->inflight.fetch_sub(1, std::memory_order_relaxed);
    if (!metrics_ && !log_) return;
    try {
        record(out, bytes_after - bytes_before_, overhead_ms);
    } catch (...) {
        // Out of memory while recording: the request itself is done.
    }
}

void request_observation::record(const core::outcome& out, std::uint64_t bytes_out,
                                 std::optional<double> overhead_ms) {
    const auto now = ctx_.ended_at();
    const config::model_config* model = ctx_.model;
    if (!model && !ctx_.req.model.empty()) model = cfg_.find_model(ctx_.req.model);
    const std::string_view model_name = model ? std::string_view(model->name) : "";
    const std::string_view key = ctx_.key ? std::string_view(ctx_.key->id) : "";
    const std::string_view provider = ctx_.served_by && ctx_.served_by->provider
                                          ? std::string_view(ctx_.served_by->provider->name)
                                          : "";
    const double duration_ms = ms_between(ctx_.received_at, now);
    std::optional<double> ttft_ms;
    if (ctx_.first_byte_at) ttft_ms = ms_between(ctx_.received_at, *ctx_.first_byte_at);
    const bool counted = ctx_.usage_final;
    if (metrics_) {
        request_sample s;
        s.key = key;
        s.model = model_name;
        s.provider = provider;
        s.status = out.status;
        s.duration_s = duration_ms / 1000;
        if (ttft_ms) s.ttft_s = *ttft_ms / 1000;
        if (overhead_ms) s.overhead_s = *overhead_ms / 1000;
        if (counted) {
            s.prompt_tokens = ctx_.usage.prompt_tokens;
            s.completion_tokens = ctx_.usage.completion_tokens;
            s.cost_usd = ctx_.cost_usd.value_or(0);
        }
        if (out.status == 429) s.refusal_reason = ctx_.refusal_reason;
        metrics_->record(shard_, s);
    }
    if (!log_) return;
    access_entry e;
    e.ts_ms = ctx_.ended_unix_ms();
    e.request_id = ctx_.request_id;
    e.key = key;
    e.method = ctx_.method;
    e.path = ctx_.target.substr(0, ctx_.target.find('?'));
    e.model = model_name;
    e.provider = provider;
    e.status = out.status;
    e.stream = out.stream;
    e.attempts = ctx_.attempts;
    e.latency_ms = duration_ms;
    e.ttft_ms = ttft_ms;
    e.overhead_ms = overhead_ms;
    if (counted) {
        e.prompt_tokens = ctx_.usage.prompt_tokens;
        e.completion_tokens = ctx_.usage.completion_tokens;
        e.cost_usd = ctx_.cost_usd;
    }
    e.bytes_in = ctx_.body_bytes;
    e.bytes_out = bytes_out;
    if (out.error != core::errc::ok) e.error = core::describe(out.error).code;
    log_->write(e);
}

}  // namespace tollgate::observe
