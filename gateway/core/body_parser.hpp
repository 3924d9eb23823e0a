#pragma once
// The one parse of a client request body: validates the JSON (well-formed, UTF-8, depth
// at most 128), checks the fields the endpoint needs, and finds the splice points used to
// rewrite it for the upstream without re-serialising it. One instance per worker thread
// (it owns a simdjson parser); not thread-safe.

#include <array>
#include <memory>
#include <string>
#include <string_view>

#include "gateway/core/request_context.hpp"

namespace tollgate::core {

struct body_error {
    errc code = errc::ok;
    std::string message;
    explicit operator bool() const noexcept { return code != errc::ok; }
};

class body_parser {
  public:
    static constexpr std::size_t max_depth = 128;

    // structural_walk: the top-level members' offsets (the splice points) are found from
    // simdjson's structural indexes; false finds them with a pass over the text (the
    // reference the unit tests and fuzz_body_parser compare the two with).
    explicit body_parser(bool structural_walk = true);
    ~body_parser();
    body_parser(const body_parser&) = delete;
    body_parser& operator=(const body_parser&) = delete;

    body_error parse(endpoint ep, std::string_view body, request_body& out);

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
    bool structural_walk_;
};

// The upstream body as pieces for one gather-write: the client's bytes with the model
// replaced and, when asked, stream_options.include_usage forced on.
struct spliced_body {
    std::array<std::string_view, 5> pieces{};
    std::size_t count = 0;
    std::string model_token;     // owns the quoted model
    std::string stream_options;  // owns the rewritten stream_options member/value
    std::size_t size() const noexcept;
    std::string joined() const;
};

void splice_body(std::string_view raw, const request_body& req, std::string_view upstream_model,
                 bool force_include_usage, spliced_body& out);

}  // namespace tollgate::core
