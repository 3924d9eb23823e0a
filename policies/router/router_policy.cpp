#include "policies/router/router_policy.hpp"

#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "gateway/core/coarse_clock.hpp"
#include "gateway/core/config_json.hpp"
#include "gateway/core/json_writer.hpp"
#include "store/usage_record.hpp"

namespace tollgate::policies {

namespace {

std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               core::coarse_now().time_since_epoch())
        .count();
}

// splitmix64: a per-request random stream seeded from the request id (no shared state).
std::uint64_t next_random(std::uint64_t& s) {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

std::uint64_t seed_of(const std::string& s) {
    std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    return h;
}

// Share of requests that try a random target under lowest_latency, so that a target whose
// estimate went stale (or was never measured) gets measured again.
constexpr std::uint64_t explore_per_mille = 100;

}  // namespace

std::vector<std::shared_ptr<target_health>> router_health::take(
    const std::vector<std::string>& keys) {
    std::vector<std::shared_ptr<target_health>> out;
    out.reserve(keys.size());
    const std::lock_guard lock(mutex_);
    // What no router holds any more (its target left the configuration, and the routers
    // of the configurations that had it are gone) starts afresh if it comes back.
    std::erase_if(kept_, [](const auto& kv) { return kv.second.use_count() == 1; });
    for (const auto& k : keys) {
        auto& h = kept_[k];
        if (!h) h = std::make_shared<target_health>();
        out.push_back(h);
    }
    return out;
}

router_policy::router_policy(const config::gateway_config& cfg, std::shared_ptr<router_health> book)
    : cfg_(cfg) {
    // A target is the same across configurations while its model, provider, provider
    // URL and upstream model are.
    std::vector<std::string> keys;
    for (const auto& m : cfg.models)
        for (const auto& t : m.targets) {
            std::string base_url;
            for (const auto& p : cfg.providers)
                if (p.name == t.provider) base_url = p.base_url;
            keys.push_back(m.name + '\n' + t.provider + '\n' + base_url + '\n' + t.model);
        }
    if (!book) book = std::make_shared<router_health>();
    health_ = book->take(keys);
    health_count_ = health_.size();
    std::uint32_t slot = 0;
    for (const auto& m : cfg.models) {
        model_route r;
        r.model = &m;
        for (const auto& t : m.targets) {
            const std::uint32_t this_slot = slot++;
            if (t.weight == 0) continue;
            const auto it = std::find_if(cfg.providers.begin(), cfg.providers.end(),
                                         [&](const auto& p) { return p.name == t.provider; });
            if (it == cfg.providers.end())
                throw std::runtime_error("model " + m.name + ": unknown provider " + t.provider);
            core::route_target rt;
            rt.provider_index = static_cast<std::size_t>(it - cfg.providers.begin());
            rt.provider = &*it;
            rt.upstream_model = t.model;
            rt.health_slot = this_slot;
            rt.model = &m;
            r.targets.push_back(std::move(rt));
            r.weights.push_back(t.weight);
        }
        routes_.emplace(m.name, std::move(r));
    }
    for (const auto& m : cfg.models) {
        auto& r = routes_.at(m.name);
        for (const auto& f : m.fallbacks)
            if (auto it = routes_.find(f); it != routes_.end()) r.fallbacks.push_back(&it->second);
    }
}

core::policy_factory router_policy::factory(std::shared_ptr<router_health> book) {
    return
        [book = std::move(book)](const core::policy_init& init) -> std::unique_ptr<core::policy> {
            return std::make_unique<router_policy>(init.config, book);
        };
}

void router_policy::list_models(core::request_context& ctx) const {
    std::string body = R"({"object":"list","data":[)";
    bool first = true;
    for (const auto& m : cfg_.models) {
        if (ctx.key && ctx.key->models &&
            std::find(ctx.key->models->begin(), ctx.key->models->end(), m.name) ==
                ctx.key->models->end())
            continue;
        if (!first) body += ',';
        first = false;
        body += R"({"id":")";
        core::append_json_escaped(body, m.name);
        body += R"(","object":"model","created":0,"owned_by":"tollgate"})";
    }
    body += "]}";
    ctx.reply.status = 200;
    ctx.reply.error = core::errc::ok;
    ctx.reply.body = std::move(body);
}

void router_policy::plan_group(const model_route& r, std::uint16_t group, std::uint64_t& rng,
                               std::int64_t now_ns, std::vector<core::route_target>& plan) const {
    boost::container::small_vector<std::size_t, 8> ready;
    std::size_t soonest = 0;
    std::int64_t soonest_end = INT64_MAX;
    for (std::size_t i = 0; i < r.targets.size(); ++i) {
        const auto until =
            health_[r.targets[i].health_slot]->cooldown_until_ns.load(std::memory_order_relaxed);
        if (until <= now_ns)
            ready.push_back(i);
        else if (until < soonest_end) {
            soonest_end = until;
            soonest = i;
        }
    }
    auto push = [&](std::size_t i) {
        plan.push_back(r.targets[i]);
        plan.back().group = group;
    };
    if (ready.empty()) {
        // Every target cools down: one attempt at the one that recovers first.
        if (!r.targets.empty()) push(soonest);
        return;
    }
    const auto& h = health_;
    switch (cfg_.routing.strategy) {
        case config::routing_strategy::weighted: {
            // Weighted sampling without replacement.
            boost::container::small_vector<std::size_t, 8> order;
            while (!ready.empty()) {
                std::uint64_t total = 0;
                for (auto i : ready) total += r.weights[i];
                std::uint64_t pick = next_random(rng) % total;
                std::size_t k = 0;
                while (pick >= r.weights[ready[k]]) pick -= r.weights[ready[k++]];
                order.push_back(ready[k]);
                ready.erase(ready.begin() + static_cast<std::ptrdiff_t>(k));
            }
            ready = std::move(order);
            break;
        }
        case config::routing_strategy::least_busy: {
            // Random tie-break first, then a stable sort by requests in flight.
            for (std::size_t i = ready.size(); i > 1; --i)
                std::swap(ready[i - 1], ready[next_random(rng) % i]);
            std::stable_sort(ready.begin(), ready.end(), [&](std::size_t a, std::size_t b) {
                return h[r.targets[a].health_slot]->in_flight.load(std::memory_order_relaxed) <
                       h[r.targets[b].health_slot]->in_flight.load(std::memory_order_relaxed);
            });
            break;
        }
        case config::routing_strategy::lowest_latency: {
            for (std::size_t i = ready.size(); i > 1; --i)
                std::swap(ready[i - 1], ready[next_random(rng) % i]);
            if (next_random(rng) % 1000 >= explore_per_mille) {
                // Unmeasured targets (-1) sort first, so that each gets measured.
                std::stable_sort(ready.begin(), ready.end(), [&](std::size_t a, std::size_t b) {
                    return h[r.targets[a].health_slot]->ewma_us.load(std::memory_order_relaxed) <
                           h[r.targets[b].health_slot]->ewma_us.load(std::memory_order_relaxed);
                });
            }
            break;
        }
    }
    const std::size_t attempts = std::min<std::size_t>(ready.size(), 1 + cfg_.routing.retries);
    for (std::size_t k = 0; k < attempts; ++k) push(ready[k]);
}

core::verdict router_policy::on_request(core::request_context& ctx) const {
    if (ctx.ep == core::endpoint::models) {
        list_models(ctx);
        return core::verdict::reply;
    }
    const auto it = routes_.find(ctx.req.model);
    if (it == routes_.end() || it->second.targets.empty()) {
        ctx.set_error_reply(core::errc::model_not_found,
                            "model '" + ctx.req.model.substr(0, 200) + "' does not exist");
        return core::verdict::reply;
    }
    ctx.model = it->second.model;
    std::uint64_t rng = seed_of(ctx.request_id);
    const auto now = steady_ns();
    ctx.plan.clear();
    std::size_t most = it->second.targets.size();
    for (const auto* f : it->second.fallbacks) most += f->targets.size();
    ctx.plan.reserve(std::min<std::size_t>(most, 8));
    plan_group(it->second, 0, rng, now, ctx.plan);
    std::uint16_t group = 1;
    for (const auto* f : it->second.fallbacks) plan_group(*f, group++, rng, now, ctx.plan);
    return core::verdict::next;
}

void router_policy::on_attempt_start(core::request_context&, const core::route_target& t) const {
    if (t.health_slot < health_count_)
        health_[t.health_slot]->in_flight.fetch_add(1, std::memory_order_relaxed);
}

void router_policy::on_attempt_end(core::request_context&, const core::route_target& t,
                                   const core::attempt_result& r) const {
    if (t.health_slot >= health_count_) return;
    auto& h = *health_[t.health_slot];
    h.in_flight.fetch_sub(1, std::memory_order_relaxed);
    if (r.error.client_gone()) return;  // says nothing about the target
    if (!core::counts_against_target(r.error)) {
        h.failures.store(0, std::memory_order_relaxed);
        if (r.time_to_head) {
            const auto us =
                std::chrono::duration_cast<std::chrono::microseconds>(*r.time_to_head).count();
            const auto old = h.ewma_us.load(std::memory_order_relaxed);
            // EWMA with alpha 0.3; a lost update under a race only skips one sample.
            h.ewma_us.store(old < 0 ? us : (old * 7 + us * 3) / 10, std::memory_order_relaxed);
        }
        return;
    }
    const auto now = steady_ns();
    std::int64_t until = 0;
    const auto streak = h.failures.fetch_add(1, std::memory_order_relaxed) + 1;
    if (streak >= cfg_.routing.cooldown_after_failures)
        until = now +
                std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.routing.cooldown).count();
    if (r.error.retry_after)
        until = std::max(
            until,
            now +
                std::chrono::duration_cast<std::chrono::nanoseconds>(*r.error.retry_after).count());
    if (until > 0) {
        auto cur = h.cooldown_until_ns.load(std::memory_order_relaxed);
        while (cur < until && !h.cooldown_until_ns.compare_exchange_weak(cur, until)) {
        }
        if (streak >= cfg_.routing.cooldown_after_failures)
            h.failures.store(0, std::memory_order_relaxed);
    }
}

router_policy::health_view router_policy::health(const std::string& model,
                                                 std::size_t target) const {
    const auto it = routes_.find(model);
    if (it == routes_.end() || target >= it->second.targets.size()) return {0, 0, false};
    const auto& h = *health_[it->second.targets[target].health_slot];
    return {h.in_flight.load(), h.failures.load(), h.cooldown_until_ns.load() > steady_ns()};
}

std::vector<router_policy::target_report> router_policy::report() const {
    std::vector<target_report> out;
    const std::int64_t now = steady_ns();
    std::size_t slot = 0;
    for (const auto& m : cfg_.models)
        for (const auto& t : m.targets) {
            target_report r;
            r.model = m.name;
            r.provider = t.provider;
            r.upstream_model = t.model;
            r.weight = t.weight;
            if (slot < health_count_) {
                const auto& h = *health_[slot];
                r.in_flight = h.in_flight.load(std::memory_order_relaxed);
                r.failures = h.failures.load(std::memory_order_relaxed);
                const std::int64_t until = h.cooldown_until_ns.load(std::memory_order_relaxed);
                r.cooling_ms = until > now ? (until - now + 999'999) / 1'000'000 : 0;
                r.ttfb_us = h.ewma_us.load(std::memory_order_relaxed);
            }
            ++slot;
            out.push_back(std::move(r));
        }
    return out;
}

std::string providers_report_json(
    const config::gateway_config& cfg, const router_policy* router,
    const std::function<std::pair<std::int64_t, std::int64_t>(const std::string&)>& connections,
    std::int64_t now_unix_ms) {
    const auto targets = router ? router->report() : std::vector<router_policy::target_report>{};
    core::json_writer w;
    w.begin_object().key("data").begin_array();
    for (const auto& p : cfg.providers) {
        w.begin_object();
        w.key("provider").string(p.name);
        w.key("kind").string(config::kind_name(p.kind));
        w.key("base_url").string(core::redact_url(p.base_url));  // as /admin/config shows it
        const auto [active, idle] = connections ? connections(p.name) : std::pair{0L, 0L};
        w.key("connections").begin_object();
        w.key("active").integer(active).key("idle").integer(idle);
        w.end_object();
        w.key("targets").begin_array();
        for (const auto& t : targets) {
            if (t.provider != p.name) continue;
            w.begin_object();
            w.key("model").string(t.model);
            w.key("upstream_model").string(t.upstream_model);
            w.key("weight").uinteger(t.weight);
            w.key("in_flight").integer(t.in_flight);
            w.key("failures_in_a_row").uinteger(t.failures);
            w.key("cooling").boolean(t.cooling_ms > 0);
            w.key("cooling_until");
            if (t.cooling_ms > 0)
                w.string(store::rfc3339_ms(now_unix_ms + t.cooling_ms));
            else
                w.null();
            w.key("ttfb_ms_avg");
            if (t.ttfb_us >= 0)
                w.number(static_cast<double>(t.ttfb_us) / 1000.0);
            else
                w.null();
            w.end_object();
        }
        w.end_array().end_object();
    }
    w.end_array().end_object();
    return w.take();
}

}  // namespace tollgate::policies
