#pragma once
// What admission reserves for one request (SPEC "Admission against a budget or tpm"),
// computed once per request from the parsed body and the config, before the request
// phase; rate_limit, budget and the shared state all reserve this same figure.

#include "config/config.hpp"
#include "gateway/core/request_context.hpp"

namespace tollgate::core {

// prompt: the body's upper-bound prompt estimate. completion: 0 for embeddings; else
// max_tokens, or the largest default_max_tokens among the providers of the model's
// targets and its fallbacks' targets, times `n`. usd: those tokens at the most expensive
// input and output prices among the model and its fallbacks. A model that is not
// configured reserves its prompt and the provider-less default completion (4096 × n).
request_estimate estimate_request(const config::gateway_config& cfg, endpoint ep,
                                  const request_body& req);

}  // namespace tollgate::core
