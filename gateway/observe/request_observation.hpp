#pragma once
// Metrics and the access log for one API request. The in-flight gauge counts it from
// construction; finish() writes its sample and its access-log line once it has ended
// (after the policies' on_complete, so usage and cost are final), on every path.
// One per request, on its worker; not thread-safe.

#include <cstdint>
#include <optional>

#include "gateway/core/policy.hpp"
#include "gateway/core/request_context.hpp"
#include "gateway/observe/access_log.hpp"
#include "gateway/observe/metrics.hpp"

namespace tollgate::observe {

class request_observation {
  public:
    // Either sink may be null (not recorded). `bytes_before`: the client connection's
    // byte count before this request's answer.
    request_observation(metrics* m, unsigned shard, access_log* log,
                        const config::gateway_config& cfg, const core::request_context& ctx,
                        std::uint64_t bytes_before) noexcept;
    request_observation(const request_observation&) = delete;
    request_observation& operator=(const request_observation&) = delete;
    ~request_observation();

    // The request has ended with `out`: record it (once; later calls do nothing).
    // `overhead_ms`: the gateway's own time, when the answer's head said it.
    void finish(const core::outcome& out, std::uint64_t bytes_after,
                std::optional<double> overhead_ms) noexcept;

  private:
    void record(const core::outcome& out, std::uint64_t bytes_out,
                std::optional<double> overhead_ms);

    metrics* metrics_;
    unsigned shard_;
    access_log* log_;
    const config::gateway_config& cfg_;
    const core::request_context& ctx_;
    std::uint64_t bytes_before_;
    bool finished_ = false;
};

}  // namespace tollgate::observe
