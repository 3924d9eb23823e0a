#pragma once
// The checks shared by fuzz_body_parser and fuzz_http_request: what the upstream receives
// after core::splice_body must be what the policies checked.

#include <simdjson.h>

#include <string>
#include <string_view>

#include "fuzz/fuzz_common.hpp"
#include "gateway/core/body_parser.hpp"

namespace tollgate::fuzz {

// Splices `raw` (already accepted by parser.parse(ep, raw, req)) for `upstream_model` and
// checks the result:
//  - valid JSON, accepted again by the body parser for the same endpoint, with the same
//    stream / max_tokens / prompt size;
//  - exactly one top-level "model" (keys compared unescaped, as an upstream reads them),
//    equal to upstream_model when that is valid UTF-8;
//  - when include_usage is forced on a streamed request, every "include_usage" member of
//    stream_options (again compared unescaped) is true: an upstream that reads the last
//    duplicate must not see false.
inline void check_splice(core::body_parser& parser, core::endpoint ep, std::string_view raw,
                         const core::request_body& req, std::string_view upstream_model,
                         bool force_include_usage) {
    namespace dom = simdjson::dom;
    core::spliced_body sb;
    core::splice_body(raw, req, upstream_model, force_include_usage, sb);
    FUZZ_CHECK(sb.count <= sb.pieces.size(), raw);
    const std::string out = sb.joined();
    FUZZ_CHECK(out.size() == sb.size(), out);

    dom::element root;
    FUZZ_CHECK(valid_json(out, root), out);
    dom::object obj;
    FUZZ_CHECK(root.get_object().get(obj) == simdjson::SUCCESS, out);
    int models = 0;
    std::string_view model;
    dom::element so;
    bool has_so = false;
    for (dom::key_value_pair kv : obj) {
        if (kv.key == "model") {
            ++models;
            FUZZ_CHECK(kv.value.get_string().get(model) == simdjson::SUCCESS, out);
        } else if (kv.key == "stream_options") {
            has_so = true;
            so = kv.value;
        }
    }
    FUZZ_CHECK(models == 1, out);
    if (simdjson::validate_utf8(upstream_model.data(), upstream_model.size()))
        FUZZ_CHECK(model == upstream_model, out);

    const bool forced = force_include_usage && req.stream;
    if (forced) {
        FUZZ_CHECK(has_so, out);
        dom::object o;
        FUZZ_CHECK(so.get_object().get(o) == simdjson::SUCCESS, out);
        int seen = 0;
        for (dom::key_value_pair kv : o) {
            if (kv.key != "include_usage") continue;
            ++seen;
            bool v = false;
            FUZZ_CHECK(kv.value.get_bool().get(v) == simdjson::SUCCESS && v, out);
        }
        FUZZ_CHECK(seen >= 1, out);
    }

    // The body parser must accept what we send upstream (the re-parse also re-checks the
    // duplicate-key rule on our own output). An empty model is refused by design.
    if (upstream_model.empty()) return;
    const std::string copy = out;  // parse() keeps no view, but be safe
    core::request_body again;
    const core::body_error err = parser.parse(ep, copy, again);
    FUZZ_CHECK(!err, copy + "\n  error: " + err.message);
    FUZZ_CHECK(again.stream == req.stream, copy);
    FUZZ_CHECK(again.max_tokens == req.max_tokens, copy);
    FUZZ_CHECK(again.prompt_tokens == req.prompt_tokens, copy);
    if (forced) FUZZ_CHECK(again.client_include_usage, copy);
}

}  // namespace tollgate::fuzz
