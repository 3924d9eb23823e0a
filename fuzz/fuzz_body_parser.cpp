// Fuzzes core::body_parser::parse and core::splice_body (gateway/core/body_parser.cpp)
// with the input as a client request body, for every endpoint kind.
//
// Invariants checked (besides ASan/UBSan):
//  - parse never throws; an accepted body has a non-empty model, the model's splice
//    points delimit a JSON string token, object_end points at the closing '}', and
//    stream_options' points (when set) delimit its value;
//  - the parser that finds the top-level members from simdjson's structural indexes (the
//    gateway's) and the one that finds them with a pass over the text agree: the same
//    refusal, or the same fields and splice offsets;
//  - for every accepted body, splicing in each of a few upstream model names (quotes,
//    backslashes, control bytes, non-ASCII, invalid UTF-8), with and without forcing
//    stream_options.include_usage, passes fuzz/splice_check.hpp.

#include <string_view>

#include "fuzz/fuzz_common.hpp"
#include "fuzz/splice_check.hpp"
#include "gateway/core/body_parser.hpp"

using namespace tollgate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static core::body_parser parser;  // as in production: one per worker, reused
    static core::body_parser text_walk(false);
    const std::string_view body(reinterpret_cast<const char*>(data), size);

    for (core::endpoint ep : {core::endpoint::chat_completions, core::endpoint::embeddings,
                              core::endpoint::messages, core::endpoint::models}) {
        core::request_body req;
        const core::body_error err = parser.parse(ep, body, req);
        core::request_body ref;
        const core::body_error ref_err = text_walk.parse(ep, body, ref);
        FUZZ_CHECK(err.code == ref_err.code && err.message == ref_err.message, body);
        if (!err) {
            FUZZ_CHECK(req.model == ref.model && req.stream == ref.stream &&
                           req.client_include_usage == ref.client_include_usage &&
                           req.max_tokens == ref.max_tokens && req.n == ref.n &&
                           req.prompt_tokens == ref.prompt_tokens,
                       body);
            FUZZ_CHECK(req.model_begin == ref.model_begin && req.model_end == ref.model_end &&
                           req.stream_options_begin == ref.stream_options_begin &&
                           req.stream_options_end == ref.stream_options_end &&
                           req.object_end == ref.object_end,
                       body);
        }
        if (err) {
            FUZZ_CHECK(!err.message.empty(), body);
            continue;
        }
        FUZZ_CHECK(!req.model.empty(), body);
        FUZZ_CHECK(req.model_begin < req.model_end && req.model_end <= size, body);
        FUZZ_CHECK(body[req.model_begin] == '"' && body[req.model_end - 1] == '"', body);
        FUZZ_CHECK(req.object_end < size && body[req.object_end] == '}', body);
        FUZZ_CHECK(req.model_end <= req.object_end, body);
        if (req.stream_options_end != 0) {
            FUZZ_CHECK(req.stream_options_begin < req.stream_options_end, body);
            FUZZ_CHECK(req.stream_options_end <= req.object_end, body);
        }
        for (std::string_view m : fuzz::model_names)
            for (bool force : {false, true}) fuzz::check_splice(parser, ep, body, req, m, force);
    }
    return 0;
}
