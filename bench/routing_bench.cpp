// Cost of one routing decision (the router policy's on_request) for a model with 1 and
// with 4 weighted targets plus a fallback, per strategy.
//
//   routing_bench [ITERATIONS]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "config/loader.hpp"
#include "policies/router/router_policy.hpp"

using namespace tollgate;

int main(int argc, char** argv) {
    const long n = argc > 1 ? std::atol(argv[1]) : 2000000;
    for (const char* strategy : {"weighted", "least_busy", "lowest_latency"}) {
        const std::string yaml = std::string(R"(
providers:
  a: {kind: openai, base_url: "http://127.0.0.1:1/v1"}
  b: {kind: openai, base_url: "http://127.0.0.1:2/v1"}
  c: {kind: openai, base_url: "http://127.0.0.1:3/v1"}
  d: {kind: openai, base_url: "http://127.0.0.1:4/v1"}
models:
  one: {targets: [{provider: a, model: x}]}
  four:
    targets:
      - {provider: a, model: x, weight: 4}
      - {provider: b, model: x, weight: 3}
      - {provider: c, model: x, weight: 2}
      - {provider: d, model: x, weight: 1}
    fallbacks: [one]
routing: {strategy: )") + strategy +
                                 "}\n";
        auto loaded =
            config::load_config_text(yaml, "bench", [](std::string_view) { return std::nullopt; });
        if (!loaded.config) {
            std::fprintf(stderr, "config: %s\n", loaded.errors[0].text().c_str());
            return 1;
        }
        policies::router_policy router(*loaded.config);
        for (const char* model : {"one", "four"}) {
            core::request_context ctx;
            ctx.ep = core::endpoint::chat_completions;
            ctx.req.model = model;
            const auto start = std::chrono::steady_clock::now();
            std::size_t planned = 0;
            for (long i = 0; i < n; ++i) {
                ctx.request_id = std::to_string(i);
                router.on_request(ctx);
                planned += ctx.plan.size();
            }
            const double ns =
                std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start)
                    .count() /
                static_cast<double>(n);
            std::printf("%-15s model %-4s: %6.1f ns per decision (%.1f attempts planned)\n",
                        strategy, model, ns, static_cast<double>(planned) / static_cast<double>(n));
        }
    }
    return 0;
}
