// Fuzzes the upstream adapters (gateway/upstream/adapter.hpp) as the relay drives them:
// an upstream SSE stream cut into pieces, framed by core::sse_framer, each event through
// the adapter into the client's bytes and the request's usage meter; then finish().
//
// Input: byte 0 picks the adapter and the client's request (client endpoint × provider
// kind × whether the client asked for usage); byte 1 the piece size (1..32); the rest is
// the upstream stream. Seeds are real streams (fuzz/corpus/fuzz_adapter_stream/).
//
// Invariants checked (besides ASan/UBSan and "never throws"):
//  - a native adapter never adds bytes (it copies events, or drops the usage chunk and
//    `"usage":null` members it forced);
//  - the meter's result is sane: estimated usage never below its provisional figures,
//    a prompt an upstream took never zero, counts below the 10^15 cap (plus text).

#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_common.hpp"
#include "gateway/core/body_parser.hpp"
#include "gateway/core/sse_framer.hpp"
#include "gateway/upstream/adapter.hpp"

namespace {

using namespace tollgate;

struct client {
    core::endpoint ep;
    std::string body;
};

const client clients[] = {
    {core::endpoint::chat_completions,
     R"({"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]})"},
    {core::endpoint::chat_completions,
     R"({"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]})"},
    {core::endpoint::messages,
     R"({"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]})"},
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const client& c = clients[data[0] % 3];
    const auto kind =
        (data[0] / 3) % 2 == 0 ? config::provider_kind::openai : config::provider_kind::anthropic;
    const std::size_t piece = 1 + data[1] % 32;
    const std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);

    static core::body_parser parser;
    core::request_context ctx;
    ctx.ep = c.ep;
    ctx.body = c.body;
    if (parser.parse(c.ep, c.body, ctx.req)) std::abort();
    config::provider_config pc;
    pc.kind = kind;
    auto a = upstream::make_adapter(ctx, pc, 0);
    if (!a) std::abort();
    core::spliced_body body;
    if (!a->render_request(ctx, "up", body).empty()) std::abort();

    std::string out;
    core::usage_meter meter;
    core::sse_framer framer(1 << 16);
    auto on_event = [&](const core::sse_event& ev) { a->on_event(ev, out, meter); };
    bool ok = true;
    for (std::size_t i = 0; i < stream.size() && ok; i += piece)
        ok = framer.feed(stream.substr(i, piece), on_event);
    if (ok) framer.finish(on_event);
    a->finish(ok, out, meter);

    // A native adapter copies events as they came (the framer drops only stray blank
    // lines, and completes a last event without its blank line) or removes forced usage:
    // it never adds bytes.
    const bool native =
        (c.ep == core::endpoint::messages) == (kind == config::provider_kind::anthropic);
    if (native) FUZZ_CHECK(out.size() <= stream.size() + 2, stream);

    const auto u = meter.result(3, true);
    FUZZ_CHECK(u.prompt_tokens >= 1, stream);
    if (!u.from_upstream) FUZZ_CHECK(u.prompt_tokens >= 3, stream);
    FUZZ_CHECK(u.prompt_tokens <= 3'000'000'000'000'000ULL, stream);
    FUZZ_CHECK(u.completion_tokens <= 2'000'000'000'000'000ULL + stream.size(), stream);
    return 0;
}
