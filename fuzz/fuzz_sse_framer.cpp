// Fuzzes core::sse_framer (gateway/core/sse_framer.hpp): upstream SSE bytes in arbitrary
// pieces -> complete events.
//
// Invariants checked:
//  - the events do not depend on how the bytes were cut: the input fed in one piece, cut
//    at data-derived points, and cut right after every '\r' (the "\r\n split across
//    reads" case) all give the same events, before and after finish();
//  - each piece lives in its own heap buffer freed right after feed(), so a view the
//    framer kept into an old piece is a use-after-free ASan reports;
//  - an event's raw bytes end with a line end; data and event names hold no '\r', names
//    no '\n'; has_data is false only with empty data; pending bytes never exceed the input;
//  - with a small max_event_bytes, feed() fails only when the pending tail really is over
//    the bound.

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_common.hpp"
#include "gateway/core/sse_framer.hpp"

namespace {

using tollgate::core::sse_event;
using tollgate::core::sse_framer;

struct event {
    std::string raw, name, data;
    bool has_data = false;
    bool operator==(const event&) const = default;
};

struct result {
    std::vector<event> events;
    std::size_t before_finish = 0;  // events dispatched by feed()
    bool ok = true;
};

void check_event(const sse_event& e, std::size_t input_size) {
    FUZZ_CHECK(!e.raw.empty(), e.raw);
    FUZZ_CHECK(e.raw.size() <= input_size + 2, e.raw);  // finish() appends "\n\n"
    FUZZ_CHECK(e.raw.back() == '\n' || e.raw.back() == '\r', e.raw);
    FUZZ_CHECK(e.data.find('\r') == std::string_view::npos, e.raw);
    FUZZ_CHECK(e.event.find_first_of("\r\n") == std::string_view::npos, e.raw);
    FUZZ_CHECK(e.has_data || e.data.empty(), e.raw);
}

// Feeds `input` cut at `cuts` (sorted offsets); each piece in a fresh heap buffer.
result run(std::string_view input, const std::vector<std::size_t>& cuts,
           std::size_t max_event = 1u << 20) {
    result r;
    sse_framer framer(max_event);
    auto on_event = [&](const sse_event& e) {
        check_event(e, input.size());
        r.events.push_back(
            {std::string(e.raw), std::string(e.event), std::string(e.data), e.has_data});
    };
    std::size_t at = 0;
    auto feed_to = [&](std::size_t end) {
        const std::size_t n = end - at;
        auto piece = std::make_unique<char[]>(n ? n : 1);
        if (n) std::memcpy(piece.get(), input.data() + at, n);
        if (!framer.feed(std::string_view(piece.get(), n), on_event)) r.ok = false;
        at = end;
        FUZZ_CHECK(framer.pending_bytes() <= at, input);
    };
    for (std::size_t c : cuts)
        if (c > at && c < input.size()) feed_to(c);
    feed_to(input.size());
    r.before_finish = r.events.size();
    framer.finish(on_event);
    FUZZ_CHECK(framer.pending_bytes() == 0, input);
    return r;
}

void same(const result& a, const result& b, std::string_view input) {
    FUZZ_CHECK(a.ok && b.ok, input);
    FUZZ_CHECK(a.events.size() == b.events.size(), input);
    FUZZ_CHECK(a.before_finish == b.before_finish, input);
    for (std::size_t i = 0; i < a.events.size(); ++i) FUZZ_CHECK(a.events[i] == b.events[i], input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    const result whole = run(input, {});

    // Up to 8 cuts at data-derived points.
    tollgate::fuzz::rng g{tollgate::fuzz::hash(input) | 1};
    std::vector<std::size_t> cuts;
    const std::size_t ncuts = 1 + g.below(8);
    for (std::size_t i = 0; i < ncuts; ++i) cuts.push_back(g.below(size + 1));
    std::sort(cuts.begin(), cuts.end());
    same(whole, run(input, cuts), input);

    // Cut right after every '\r' (at most 64 of them: each feed rescans the tail).
    cuts.clear();
    for (std::size_t i = 0; i < size && cuts.size() < 64; ++i)
        if (input[i] == '\r') cuts.push_back(i + 1);
    if (!cuts.empty()) same(whole, run(input, cuts), input);

    // A small bound: a failed feed() means the pending tail is over it.
    {
        constexpr std::size_t bound = 64;
        sse_framer framer(bound);
        auto ignore = [&](const sse_event& e) { check_event(e, size); };
        std::size_t at = 0;
        while (at < size) {
            const std::size_t n = std::min<std::size_t>(size - at, 1 + g.below(100));
            const bool ok = framer.feed(input.substr(at, n), ignore);
            FUZZ_CHECK(ok == (framer.pending_bytes() <= bound), input);
            if (!ok) break;
            at += n;
        }
    }
    return 0;
}
