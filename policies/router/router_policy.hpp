#pragma once
// router: which upstream serves the request, and what to try when it fails.
//
// A model has weighted targets (provider + upstream model). Per request the router plans
// the attempts: one target chosen by routing.strategy (weighted | least_busy |
// lowest_latency), up to routing.retries other targets of the same model, then each of
// the model's fallbacks in order with its own targets. Targets failing
// cooldown_after_failures times in a row (or answering 429 with retry-after) are skipped
// while they cool down; when all of a model's targets cool down, the one whose cooldown
// ends first still gets one attempt. The proxy reports every attempt back
// (on_attempt_start/end), which keeps in-flight counts, failure streaks and a latency
// EWMA per target. That state is atomics shared by all worker threads, held in a
// router_health book that outlives configurations: a reload keeps each target's health
// (by model, provider, base URL and upstream model) while the target exists. Also
// answers GET /v1/models with the models the key may use.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gateway/core/policy.hpp"
#include "gateway/core/policy_registry.hpp"

namespace tollgate::policies {

// One target's health: atomics, updated by every worker thread.
struct target_health {
    std::atomic<int> in_flight{0};
    std::atomic<std::uint32_t> failures{0};          // in a row
    std::atomic<std::int64_t> cooldown_until_ns{0};  // steady clock
    std::atomic<std::int64_t> ewma_us{-1};           // time to head; -1: no sample yet
};

// Targets' health across configurations (a builtin service): each router takes its
// targets' health from here, so a reload neither forgets a cooling target nor loses the
// in-flight counts of attempts still running on the old configuration.
class router_health {
  public:
    // The health for each key (in order): the one kept for that key, else a new one.
    // Health that no router holds any more is forgotten.
    std::vector<std::shared_ptr<target_health>> take(const std::vector<std::string>& keys);

  private:
    std::mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<target_health>> kept_;
};

class router_policy final : public core::policy {
  public:
    // `book` null: health of this router's own (--check, tests).
    explicit router_policy(const config::gateway_config& cfg,
                           std::shared_ptr<router_health> book = nullptr);

    std::string_view name() const noexcept override { return "router"; }
    core::verdict on_request(core::request_context& ctx) const override;
    void on_attempt_start(core::request_context& ctx, const core::route_target& t) const override;
    void on_attempt_end(core::request_context& ctx, const core::route_target& t,
                        const core::attempt_result& r) const override;

    static core::policy_factory factory(std::shared_ptr<router_health> book);

    // For tests and metrics: a target's state, by model name and target index.
    struct health_view {
        int in_flight;
        std::uint32_t failures;
        bool cooling;
    };
    health_view health(const std::string& model, std::size_t target) const;

    // GET /admin/providers: every target of every model (config order), as it stands.
    struct target_report {
        std::string model, provider, upstream_model;
        std::uint32_t weight = 0;
        int in_flight = 0;
        std::uint32_t failures = 0;   // in a row
        std::int64_t cooling_ms = 0;  // cooldown left; 0 = not cooling
        std::int64_t ttfb_us = -1;    // average time to the answer's head; -1 = none yet
    };
    std::vector<target_report> report() const;

  private:
    struct model_route {
        const config::model_config* model = nullptr;
        std::vector<core::route_target> targets;  // weight > 0, config order
        std::vector<std::uint32_t> weights;
        std::vector<const model_route*> fallbacks;
    };
    void plan_group(const model_route& r, std::uint16_t group, std::uint64_t& rng,
                    std::int64_t now_ns, std::vector<core::route_target>& plan) const;
    void list_models(core::request_context& ctx) const;

    const config::gateway_config& cfg_;
    std::unordered_map<std::string, model_route> routes_;
    std::vector<std::shared_ptr<target_health>> health_;  // by slot: the config's targets
    std::size_t health_count_ = 0;
};

// The body of GET /admin/providers: {"data":[{"provider","kind","base_url","connections":
// {"active","idle"},"targets":[{"model","upstream_model","weight","in_flight",
// "failures_in_a_row","cooling","cooling_until","ttfb_ms_avg"}]}]}. `router` may be null
// (no router in the chain: no targets' health); `connections` gives a provider's open
// upstream connections (active, idle). No secret: keys and headers are not in it.
std::string providers_report_json(
    const config::gateway_config& cfg, const router_policy* router,
    const std::function<std::pair<std::int64_t, std::int64_t>(const std::string&)>& connections,
    std::int64_t now_unix_ms);

}  // namespace tollgate::policies
