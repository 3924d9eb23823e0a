// Fuzzes the usage scanner of gateway/upstream/usage_extract.cpp (scan_event and its
// one-member forms find_usage, generated_text_bytes, has_empty_choices, and
// append_without_null_usage) with the input as an upstream answer body or one event's data.
// The input stays in libFuzzer's exactly-sized buffer, so a read one byte past the end is
// an ASan report.
//
// Invariants checked (scan_event, the one pass the stream observers use, included):
//  - the input's lines scanned as one stream's events with a scan_memo give the facts
//    each gives alone;
//  - appending whitespace changes nothing (the scanner must not depend on what lies past
//    the end of a value);
//  - generated_text_bytes is at most the input size;
//  - an oracle: for valid JSON (simdjson) with no backslash, no '-', at most 60 brackets
//    and exactly one occurrence of "usage", find_usage must agree with a DOM walk that
//    applies the documented rules (the last usage object; prompt_tokens | input_tokens,
//    completion_tokens | output_tokens, total_tokens at its top level; cached tokens also
//    inside *_tokens_details; Anthropic input_tokens plus cache reads and writes; a count
//    is a plain unsigned integer of at most 19 digits; nothing when no count is set).
//
// The source is compiled into this target (not tollgate_policies, which would bring the
// whole policy library, SQLite and Asio into a scanner test).

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz/fuzz_common.hpp"
#include "gateway/upstream/usage_extract.hpp"

namespace {

namespace dom = simdjson::dom;
using simdjson::SUCCESS;
using tollgate::upstream::extracted_usage;

bool same(const std::optional<extracted_usage>& a, const std::optional<extracted_usage>& b) {
    if (a.has_value() != b.has_value()) return false;
    if (!a) return true;
    return a->prompt_tokens == b->prompt_tokens && a->completion_tokens == b->completion_tokens &&
           a->total_tokens == b->total_tokens && a->cached_tokens == b->cached_tokens;
}

std::string describe(const std::optional<extracted_usage>& u) {
    if (!u) return "none";
    auto f = [](const std::optional<std::uint64_t>& v) {
        return v ? std::to_string(*v) : std::string("-");
    };
    return "prompt=" + f(u->prompt_tokens) + " completion=" + f(u->completion_tokens) +
           " total=" + f(u->total_tokens) + " cached=" + f(u->cached_tokens);
}

// A count as the scanner reads it: only a plain unsigned integer of at most 19 digits,
// capped at 10^15 (the scanner's bound against sums wrapping around).
std::optional<std::uint64_t> count(dom::element v) {
    std::uint64_t n = 0;
    if (v.type() == dom::element_type::INT64) {
        std::int64_t i = 0;
        if (v.get(i) != SUCCESS || i < 0) return std::nullopt;
        n = static_cast<std::uint64_t>(i);
    } else if (v.type() == dom::element_type::UINT64) {
        if (v.get(n) != SUCCESS) return std::nullopt;
    } else {
        return std::nullopt;
    }
    if (std::to_string(n).size() > 19) return std::nullopt;
    return std::min<std::uint64_t>(n, 1'000'000'000'000'000);
}

void read_usage(dom::object o, int depth, extracted_usage& u, bool& anthropic,
                std::uint64_t& cache_creation, std::uint64_t& cache_read) {
    for (dom::key_value_pair kv : o) {
        const std::string_view k = kv.key;
        if (kv.value.is_object()) {
            if (depth < 2 && (k == "prompt_tokens_details" || k == "input_tokens_details"))
                read_usage(dom::object(kv.value), depth + 1, u, anthropic, cache_creation,
                           cache_read);
        } else if (k == "prompt_tokens") {
            if (depth == 0) u.prompt_tokens = count(kv.value);
        } else if (k == "input_tokens") {
            if (depth == 0) {
                u.prompt_tokens = count(kv.value);
                anthropic = true;
            }
        } else if (k == "cache_creation_input_tokens") {
            if (depth == 0) cache_creation = count(kv.value).value_or(0);
        } else if (k == "completion_tokens" || k == "output_tokens") {
            if (depth == 0) u.completion_tokens = count(kv.value);
        } else if (k == "total_tokens") {
            if (depth == 0) u.total_tokens = count(kv.value);
        } else if (k == "cached_tokens") {
            u.cached_tokens = count(kv.value);
        } else if (k == "cache_read_input_tokens") {
            // Anthropic's cache reads count toward its prompt (outside input_tokens), even
            // when a later cached_tokens member sets the cached count.
            u.cached_tokens = count(kv.value);
            if (depth == 0) cache_read = u.cached_tokens.value_or(0);
        }
    }
}

// The value of the (only) "usage" key anywhere in the document, if it is an object.
bool find_usage_object(dom::element e, dom::object& out) {
    if (e.is_object()) {
        for (dom::key_value_pair kv : dom::object(e)) {
            if (kv.key == "usage") {
                if (!kv.value.is_object()) return false;
                out = dom::object(kv.value);
                return true;
            }
            if (find_usage_object(kv.value, out)) return true;
        }
    } else if (e.is_array()) {
        for (dom::element x : dom::array(e))
            if (find_usage_object(x, out)) return true;
    }
    return false;
}

std::optional<extracted_usage> oracle(dom::element root) {
    dom::object o;
    if (!find_usage_object(root, o)) return std::nullopt;
    extracted_usage u;
    bool anthropic = false;
    std::uint64_t cache_creation = 0, cache_read = 0;
    read_usage(o, 0, u, anthropic, cache_creation, cache_read);
    if (!u.any()) return std::nullopt;
    if (anthropic && u.prompt_tokens) *u.prompt_tokens += cache_read + cache_creation;
    return u;
}

// What scan_event must find in a document, walked in document order: the text of the text
// members (no backslash in the input, so the bytes as written are the decoded ones), the
// first string "type", a string "finish_reason", an empty "choices".
struct walked {
    std::size_t ascii = 0, other = 0, bytes = 0;
    std::string_view type;
    bool type_seen = false, finish = false, empty_choices = false;
};

bool is_text_member(std::string_view k) {
    return k == "content" || k == "arguments" || k == "text" || k == "reasoning_content" ||
           k == "partial_json" || k == "thinking" || k == "delta";
}

void walk(dom::element e, walked& w) {
    if (e.is_object()) {
        for (dom::key_value_pair kv : dom::object(e)) {
            const std::string_view k = kv.key;
            if (kv.value.is_string()) {
                const std::string_view v = std::string_view(kv.value);
                if (is_text_member(k)) {
                    w.bytes += v.size();
                    for (char c : v) {
                        const auto u = static_cast<unsigned char>(c);
                        if (u < 0x80)
                            ++w.ascii;
                        else if (u >= 0xC0)
                            ++w.other;
                    }
                } else if (k == "type" && !w.type_seen) {
                    w.type = v;
                    w.type_seen = true;
                } else if (k == "finish_reason") {
                    w.finish = true;
                }
            } else if (k == "choices" && kv.value.is_array() && dom::array(kv.value).size() == 0) {
                w.empty_choices = true;
            }
            walk(kv.value, w);
        }
    } else if (e.is_array()) {
        for (dom::element x : dom::array(e)) walk(x, w);
    }
}

std::size_t occurrences(std::string_view s, std::string_view needle) {
    std::size_t n = 0;
    for (std::size_t at = s.find(needle); at != std::string_view::npos; at = s.find(needle, at + 1))
        ++n;
    return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace tollgate::upstream;
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    const auto usage = find_usage(input);
    const std::size_t text = generated_text_bytes(input);
    const bool empty_choices = has_empty_choices(input);
    FUZZ_CHECK(text <= size, input);

    const std::string padded = std::string(input) + " \n\t ";
    FUZZ_CHECK(same(usage, find_usage(padded)), input);
    FUZZ_CHECK(text == generated_text_bytes(padded), input);
    FUZZ_CHECK(empty_choices == has_empty_choices(padded), input);

    // The forced-usage stripper only ever removes bytes (at least one member each time)
    // and removes nothing from text without a `"usage"` key.
    std::string stripped;
    const std::size_t removed = append_without_null_usage(input, stripped);
    FUZZ_CHECK(stripped.size() + removed * 11 <= size, input);
    if (input.find("\"usage\"") == std::string_view::npos) FUZZ_CHECK(stripped == input, input);
    // The one-pass scan's "type" lies inside the input, and its usage:null cuts agree with
    // the scanning stripper, for an event's data on one line.
    const auto facts = scan_event(input);
    FUZZ_CHECK(facts.type.size() <= size, input);
    if (!facts.type.empty())
        FUZZ_CHECK(facts.type.data() >= input.data() &&
                       facts.type.data() + facts.type.size() <= input.data() + size,
                   input);
    if (input.find_first_of("\r\n") == std::string_view::npos) {
        const std::string raw = "data: " + std::string(input) + "\n\n";
        const std::string_view data = std::string_view(raw).substr(6, size);
        std::string by_scan;
        append_without_null_usage(raw, data, scan_event(data), by_scan);
        std::string by_search;
        append_without_null_usage(raw, by_search);
        // The search also finds `"usage"` inside strings and past the data; on valid JSON
        // the two must cut the same.
        dom::element doc;
        if (tollgate::fuzz::simdjson_accepts(input, doc))
            FUZZ_CHECK(by_scan == by_search,
                       std::string(input) + "\n  scan:   " + by_scan + "\n  search: " + by_search);
    }

    // A stream's events scanned with one memo: each gives what it gives alone. The lines
    // of the input are the events, each scanned twice (the second from the memo).
    {
        tollgate::upstream::scan_memo memo;
        std::size_t pos = 0;
        while (pos <= size) {
            const std::size_t nl = std::min(input.find('\n', pos), size);
            const std::string event(input.substr(pos, nl - pos));
            for (int twice = 0; twice < 2; ++twice) {
                const auto with = scan_event(event, memo);
                const auto alone = scan_event(event);
                FUZZ_CHECK(same(with.usage, alone.usage) && with.text.ascii == alone.text.ascii &&
                               with.text.other == alone.text.other &&
                               with.text_bytes == alone.text_bytes &&
                               with.empty_choices == alone.empty_choices &&
                               with.finish_reason == alone.finish_reason &&
                               with.type.data() == alone.type.data() &&
                               with.type.size() == alone.type.size() &&
                               with.cut_count == alone.cut_count &&
                               with.cuts_overflow == alone.cuts_overflow,
                           event);
                for (std::size_t k = 0; k < with.cut_count; ++k)
                    FUZZ_CHECK(with.cuts[k].begin == alone.cuts[k].begin &&
                                   with.cuts[k].end == alone.cuts[k].end,
                               event);
            }
            pos = nl + 1;
        }
    }

    if (input.find_first_of("\\-") != std::string_view::npos) return 0;
    {
        dom::element doc;
        if (!tollgate::fuzz::simdjson_accepts(input, doc)) return 0;
        walked w;
        walk(doc, w);
        const auto t = generated_text(input);
        FUZZ_CHECK(t.ascii == w.ascii && t.other == w.other && text == w.bytes,
                   std::string(input) + "\n  scan: ascii " + std::to_string(t.ascii) + " other " +
                       std::to_string(t.other) + " bytes " + std::to_string(text) +
                       "\n  walk: ascii " + std::to_string(w.ascii) + " other " +
                       std::to_string(w.other) + " bytes " + std::to_string(w.bytes));
        FUZZ_CHECK(facts.type == w.type, input);
        FUZZ_CHECK(facts.finish_reason == w.finish && facts.empty_choices == w.empty_choices,
                   input);
    }
    if (occurrences(input, "\"usage\"") != 1) return 0;
    std::size_t brackets = 0;
    for (char c : input) brackets += c == '{' || c == '[';
    if (brackets > 60) return 0;
    dom::element root;
    if (!tollgate::fuzz::simdjson_accepts(input, root)) return 0;
    const auto expected = oracle(root);
    FUZZ_CHECK(same(usage, expected), std::string(input) + "\n  scanner: " + describe(usage) +
                                          "\n  oracle:  " + describe(expected));
    return 0;
}
