#define BOOST_TEST_MODULE usage_meter
#include <boost/test/unit_test.hpp>

#include <limits>

#include "config/config.hpp"
#include "gateway/core/admission_estimate.hpp"
#include "gateway/core/usage_meter.hpp"

using namespace tollgate::core;

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(final_figures_win_and_are_upstream) {
    usage_meter m;
    m.provisional({10, 1, {}});
    m.received(400);
    m.final_figures({12, 40, 3});
    const auto u = m.result(99, true);
    BOOST_TEST(u.from_upstream);
    BOOST_TEST(u.prompt_tokens == 12u);
    BOOST_TEST(u.completion_tokens == 40u);
    BOOST_TEST(u.cached_tokens == 3u);
}

BOOST_AUTO_TEST_CASE(counts_a_final_figure_leaves_out_come_from_the_provisional_ones) {
    // Anthropic: message_start has the prompt, the final message_delta only the output.
    usage_meter m;
    m.provisional({25, 1, 4});
    m.final_figures({{}, 40, {}});
    const auto u = m.result(7, true);
    BOOST_TEST(u.from_upstream);
    BOOST_TEST(u.prompt_tokens == 25u);
    BOOST_TEST(u.completion_tokens == 40u);
    BOOST_TEST(u.cached_tokens == 4u);
}

BOOST_AUTO_TEST_CASE(without_final_figures_the_estimate_is_never_below_a_provisional_one) {
    usage_meter m;
    m.provisional({25, 1, {}});
    m.received(8);  // 2 tokens of text
    auto u = m.result(10, true);
    BOOST_TEST(!u.from_upstream);
    BOOST_TEST(u.prompt_tokens == 25u);     // the upstream's figure, above the estimate of 10
    BOOST_TEST(u.completion_tokens == 2u);  // above the provisional 1
    // A provisional completion figure above what was received stands.
    usage_meter p;
    p.provisional({5, 30, {}});
    p.received(4);
    u = p.result(10, true);
    BOOST_TEST(u.prompt_tokens == 10u);
    BOOST_TEST(u.completion_tokens == 30u);
}

BOOST_AUTO_TEST_CASE(an_estimated_prompt_is_never_zero_once_an_upstream_took_it) {
    usage_meter m;
    const auto u = m.result(0, true);
    BOOST_TEST(!u.from_upstream);
    BOOST_TEST(u.prompt_tokens == 1u);
    BOOST_TEST(u.completion_tokens == 0u);
}

BOOST_AUTO_TEST_CASE(a_request_no_upstream_took_costs_nothing) {
    usage_meter m;
    const auto u = m.result(500, false);
    BOOST_TEST(u.prompt_tokens == 0u);
    BOOST_TEST(u.completion_tokens == 0u);
}

BOOST_AUTO_TEST_CASE(the_highest_provisional_figure_is_kept) {
    usage_meter m;
    m.provisional({10, 5, {}});
    m.provisional({8, 20, {}});
    m.provisional({{}, 12, {}});
    const auto u = m.result(1, true);
    BOOST_TEST(u.prompt_tokens == 10u);
    BOOST_TEST(u.completion_tokens == 20u);
}

BOOST_AUTO_TEST_CASE(reset_forgets_an_earlier_attempt) {
    usage_meter m;
    m.final_figures({100, 100, {}});
    m.reset();
    BOOST_TEST(!m.has_final());
    BOOST_TEST(!m.has_any());
    const auto u = m.result(3, true);
    BOOST_TEST(!u.from_upstream);
    BOOST_TEST(u.prompt_tokens == 3u);
}

BOOST_AUTO_TEST_CASE(text_estimates_count_non_ascii_characters_one_token_each) {
    BOOST_TEST(estimate_text_tokens("") == 0u);
    BOOST_TEST(estimate_text_tokens("abcd") == 1u);
    BOOST_TEST(estimate_text_tokens("abcde") == 2u);
    // 4 CJK characters (12 bytes): 4 tokens, not 3.
    BOOST_TEST(estimate_text_tokens("\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c") == 4u);
}

BOOST_AUTO_TEST_CASE(a_final_count_without_any_prompt_figure_is_only_provisional) {
    // A bare total, or Anthropic's message_delta without its message_start.
    usage_meter m;
    m.final_figures({{}, 40, {}});
    BOOST_TEST(!m.has_final());
    const auto u = m.result(9, true);
    BOOST_TEST(!u.from_upstream);
    BOOST_TEST(u.prompt_tokens == 9u);
    BOOST_TEST(u.completion_tokens == 40u);
}

BOOST_AUTO_TEST_CASE(a_final_count_with_a_zero_prompt_is_only_provisional) {
    // Ollama reports prompt_tokens 0 when its cache served the whole prompt; a request an
    // upstream took always had a prompt (found by fuzz_adapter_stream).
    usage_meter m;
    m.final_figures({0, 3, {}});
    BOOST_TEST(!m.has_final());
    const auto u = m.result(7, true);
    BOOST_TEST(!u.from_upstream);
    BOOST_TEST(u.prompt_tokens == 7u);
    BOOST_TEST(u.completion_tokens == 3u);

    // With a prompt figure from earlier (Anthropic's message_start), the zero is ignored.
    usage_meter a;
    a.provisional({12, 1, {}});
    a.final_figures({0, 30, {}});
    BOOST_TEST(a.has_final());
    BOOST_TEST(a.result(7, true).prompt_tokens == 12u);
    BOOST_TEST(a.result(7, true).completion_tokens == 30u);
}

BOOST_AUTO_TEST_CASE(received_non_ascii_text_counts_a_token_a_character) {
    usage_meter m;
    m.received(8, 30);  // 8 ASCII bytes and 30 CJK characters
    BOOST_TEST(m.received_tokens() == 2u + 30u);
    BOOST_TEST(m.result(1, true).completion_tokens == 32u);
}

BOOST_AUTO_TEST_CASE(an_earlier_attempt_that_answered_then_failed_is_carried_as_an_estimate) {
    usage_meter m;
    m.mark_sent();
    m.received(40);           // 10 tokens of a body that then broke
    m.next_attempt(true, 5);  // that upstream took it: carried
    BOOST_TEST(!m.sent());
    m.final_figures({7, 3, {}});  // the fallback's exact figures
    const auto u = m.result(5, true);
    BOOST_TEST(!u.from_upstream);  // partly estimated
    BOOST_TEST(u.prompt_tokens == 5u + 7u);
    BOOST_TEST(u.completion_tokens == 10u + 3u);
    // An attempt no upstream took leaves nothing behind.
    usage_meter n;
    n.received(400);
    n.next_attempt(false, 5);
    n.final_figures({7, 3, {}});
    BOOST_TEST(n.result(5, true).from_upstream);
    BOOST_TEST(n.result(5, true).completion_tokens == 3u);
}

BOOST_AUTO_TEST_CASE(the_admission_estimate_is_priced_at_the_dearest_model_and_never_overflows) {
    tollgate::config::gateway_config cfg;
    tollgate::config::provider_config small, big;
    small.name = "small";
    small.default_max_tokens = 100;
    big.name = "big";
    big.default_max_tokens = 8000;
    cfg.providers = {small, big};
    tollgate::config::model_config cheap, dear;
    cheap.name = "cheap";
    cheap.targets = {{"small", "c", 1}};
    cheap.fallbacks = {"dear"};
    cheap.price = tollgate::config::price_config{1.0, 2.0, {}};
    dear.name = "dear";
    dear.targets = {{"big", "d", 1}};
    dear.price = tollgate::config::price_config{10.0, 30.0, {}};
    cfg.models = {cheap, dear};

    request_body req;
    req.model = "cheap";
    req.prompt_tokens = 1000;
    req.n = 2;
    auto e = estimate_request(cfg, endpoint::chat_completions, req);
    BOOST_TEST(e.prompt_tokens == 1000u);
    BOOST_TEST(e.completion_tokens == 16000u);  // the largest default × n
    BOOST_TEST(e.usd == (1000 * 10.0 + 16000 * 30.0) / 1e6, boost::test_tools::tolerance(1e-12));
    req.max_tokens = 50;
    e = estimate_request(cfg, endpoint::chat_completions, req);
    BOOST_TEST(e.completion_tokens == 100u);
    BOOST_TEST(estimate_request(cfg, endpoint::embeddings, req).completion_tokens == 0u);

    req.max_tokens = std::numeric_limits<std::uint64_t>::max();
    req.n = 1024;
    e = estimate_request(cfg, endpoint::chat_completions, req);
    BOOST_TEST(e.tokens() >= e.completion_tokens);  // no wrap-around
    BOOST_TEST(e.completion_tokens == 1'000'000'000'000'000u);
}

BOOST_AUTO_TEST_CASE(price_uses_the_cached_rate_for_cached_prompt_tokens) {
    tollgate::config::model_config m;
    m.price = tollgate::config::price_config{2.0, 8.0, 1.0};
    usage_counts u{1'000'000, 500'000, 400'000, true};
    BOOST_TEST(price_usage(&m, u) == 0.6 * 2.0 + 0.4 * 1.0 + 0.5 * 8.0,
               boost::test_tools::tolerance(1e-12));
    BOOST_TEST(price_usage(nullptr, u) == 0.0);
    tollgate::config::model_config free_model;
    BOOST_TEST(price_usage(&free_model, u) == 0.0);
}

BOOST_AUTO_TEST_SUITE_END()
