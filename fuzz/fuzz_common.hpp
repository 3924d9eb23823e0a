#pragma once
// Helpers shared by the fuzz targets: invariant checks that abort (so libFuzzer records
// the input as a crash), a JSON validity check, and cheap data-derived choices.

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace tollgate::fuzz {

[[noreturn]] inline void check_failed(const char* expr, const char* file, int line,
                                      std::string_view detail) {
    std::fprintf(stderr, "\n==FUZZ CHECK FAILED== %s:%d: %s\n", file, line, expr);
    if (!detail.empty()) {
        constexpr std::size_t shown = 600;
        std::fprintf(stderr, "  detail (%zu bytes): %.*s%s\n", detail.size(),
                     static_cast<int>(detail.size() < shown ? detail.size() : shown), detail.data(),
                     detail.size() > shown ? "..." : "");
    }
    std::abort();
}

// FUZZ_CHECK(cond, text): `text` (a string_view) is printed when the check fails.
#define FUZZ_CHECK(cond, detail)                                                        \
    do {                                                                                \
        if (!(cond)) ::tollgate::fuzz::check_failed(#cond, __FILE__, __LINE__, detail); \
    } while (0)

// One parser per process (fuzz targets are single-threaded). Default depth (1024): the
// outputs we check are produced by our own writers, not bounded by the client limit.
inline simdjson::dom::parser& checker() {
    static simdjson::dom::parser p;
    return p;
}

// `text` with every integer literal too long for 64 bits turned into a float literal
// ("18446744073709551616" -> "18446744073709551616.0"): JSON allows such integers (our
// writers print an integral double >= 2^64 that way) but simdjson refuses them.
inline std::string widen_big_integers(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 16);
    bool in_string = false;
    for (std::size_t i = 0; i < text.size();) {
        const char c = text[i];
        if (in_string) {
            out += c;
            if (c == '\\' && i + 1 < text.size())
                out += text[++i];
            else if (c == '"')
                in_string = false;
            ++i;
            continue;
        }
        if (c == '"') in_string = true;
        if (c == '-' || (c >= '0' && c <= '9')) {
            std::size_t j = i + (c == '-');
            while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
            std::size_t k = j;  // fraction and exponent, if any
            while (k < text.size() &&
                   ((text[k] >= '0' && text[k] <= '9') || text[k] == '.' || text[k] == 'e' ||
                    text[k] == 'E' || text[k] == '+' || text[k] == '-'))
                ++k;
            out.append(text.substr(i, k - i));
            if (k == j && j - i > 18) out += ".0";
            i = k;
            continue;
        }
        out += c;
        ++i;
    }
    return out;
}

// True if simdjson (so the gateway) accepts `text` as it is: for inputs.
inline bool simdjson_accepts(std::string_view text, simdjson::dom::element& out) {
    if (text.empty()) return false;
    return checker().parse(text.data(), text.size()).get(out) == simdjson::SUCCESS;
}

// True if `text` is one valid JSON document (UTF-8 included): for what our code writes.
// `out` stays valid until the next call.
inline bool valid_json(std::string_view text, simdjson::dom::element& out) {
    if (text.empty()) return false;
    const auto err = checker().parse(text.data(), text.size()).get(out);
    if (err != simdjson::NUMBER_ERROR) return err == simdjson::SUCCESS;
    static std::string widened;  // the DOM's strings point into the parser, not here
    widened = widen_big_integers(text);
    return checker().parse(widened.data(), widened.size()).get(out) == simdjson::SUCCESS;
}
inline bool valid_json(std::string_view text) {
    simdjson::dom::element e;
    return valid_json(text, e);
}

// FNV-1a: a stable, data-derived number for choices (split points, parameters), so that a
// saved crash input replays the same way.
inline std::uint64_t hash(std::string_view s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

// A small deterministic generator seeded from the input.
struct rng {
    std::uint64_t state;
    std::uint64_t next() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    }
    std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(next() % n); }
};

// Upstream/client model names a config could hold: plain, and with every character that
// needs escaping in JSON (quote, backslash, control, non-ASCII, invalid UTF-8).
inline constexpr std::string_view model_names[] = {
    "gpt-4o-mini",       "claude-3-5-haiku-latest",
    "m\"q\\b/\n\t\x01x", "mod\xc3\xa9le-\xe2\x82\xac",
    "bad-\xff\xfe-utf8", "",
};

}  // namespace tollgate::fuzz
