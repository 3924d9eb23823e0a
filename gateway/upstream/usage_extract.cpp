#include "gateway/upstream/usage_extract.hpp"

#include "gateway/core/byte_scan.hpp"

#include <algorithm>
#include <cstring>

namespace tollgate::upstream {

namespace {

bool is_ws(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::size_t skip_ws(std::string_view s, std::size_t i) noexcept {
    while (i < s.size() && is_ws(s[i])) ++i;
    return i;
}

// Index just past the closing quote of the string starting at s[i] == '"', or npos (16 bytes
// at a time between escapes).
std::size_t end_of_string(std::string_view s, std::size_t i) noexcept {
    const char* e = core::bytes::json_string_end(s.data() + i + 1, s.data() + s.size());
    return e ? static_cast<std::size_t>(e - s.data()) : std::string_view::npos;
}

// Index just past the value starting at s[i], or npos if it is cut short.
std::size_t end_of_value(std::string_view s, std::size_t i) noexcept {
    if (i >= s.size()) return std::string_view::npos;
    if (s[i] == '"') return end_of_string(s, i);
    if (s[i] == '{' || s[i] == '[') {
        std::size_t depth = 0;
        while (i < s.size()) {
            const char c = s[i];
            if (c == '"') {
                i = end_of_string(s, i);
                if (i == std::string_view::npos) return i;
                continue;
            }
            if (c == '{' || c == '[') {
                if (++depth > 64) return std::string_view::npos;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) return i + 1;
            }
            ++i;
        }
        return std::string_view::npos;
    }
    while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && !is_ws(s[i])) ++i;
    return i;
}

// A token count; capped at 10^15 (no real count comes near) so that the few counts a
// usage object adds up can never wrap around.
std::optional<std::uint64_t> as_uint(std::string_view v) noexcept {
    if (v.empty() || v.size() > 19) return std::nullopt;
    std::uint64_t n = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return std::nullopt;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return std::min<std::uint64_t>(n, 1'000'000'000'000'000);
}

// Reads the members of the object at s[i] == '{' into `u`. False if malformed.
bool read_usage_object(std::string_view s, std::size_t i, extracted_usage& u, int depth,
                       bool& anthropic, std::uint64_t& cache_creation,
                       std::uint64_t& cache_read) noexcept {
    i = skip_ws(s, i + 1);
    if (i < s.size() && s[i] == '}') return true;
    while (i < s.size()) {
        if (s[i] != '"') return false;
        const std::size_t key_end = end_of_string(s, i);
        if (key_end == std::string_view::npos) return false;
        const std::string_view key = s.substr(i + 1, key_end - i - 2);
        i = skip_ws(s, key_end);
        if (i >= s.size() || s[i] != ':') return false;
        i = skip_ws(s, i + 1);
        const std::size_t value_end = end_of_value(s, i);
        if (value_end == std::string_view::npos) return false;
        const std::string_view value = s.substr(i, value_end - i);
        if (!value.empty() && value[0] == '{') {
            if (depth < 2 && (key == "prompt_tokens_details" || key == "input_tokens_details"))
                if (!read_usage_object(s, i, u, depth + 1, anthropic, cache_creation, cache_read))
                    return false;
        } else if (key == "prompt_tokens") {
            if (depth == 0) u.prompt_tokens = as_uint(value);
        } else if (key == "input_tokens") {
            // Anthropic: input_tokens excludes cache reads and writes; they are added below.
            if (depth == 0) {
                u.prompt_tokens = as_uint(value);
                anthropic = true;
            }
        } else if (key == "cache_creation_input_tokens") {
            if (depth == 0) cache_creation = as_uint(value).value_or(0);
        } else if (key == "completion_tokens" || key == "output_tokens") {
            if (depth == 0) u.completion_tokens = as_uint(value);
        } else if (key == "total_tokens") {
            if (depth == 0) u.total_tokens = as_uint(value);
        } else if (key == "cached_tokens") {
            u.cached_tokens = as_uint(value);
        } else if (key == "cache_read_input_tokens") {
            // Anthropic's cache reads are outside its input_tokens (added below); OpenAI's
            // input_tokens_details.cached_tokens (Responses API) are inside them.
            u.cached_tokens = as_uint(value);
            if (depth == 0) cache_read = u.cached_tokens.value_or(0);
        }
        i = skip_ws(s, value_end);
        if (i < s.size() && s[i] == ',') {
            i = skip_ws(s, i + 1);
            continue;
        }
        return i < s.size() && s[i] == '}';
    }
    return false;
}

// Calls f(position after the key's closing quote) for each `"key"` not inside a string
// value (a quote preceded by a backslash is part of a string).
template <class F>
void for_each_key(std::string_view s, std::string_view quoted_key, F&& f) noexcept {
    std::size_t pos = 0;
    while (pos < s.size()) {
        const void* hit =
            ::memmem(s.data() + pos, s.size() - pos, quoted_key.data(), quoted_key.size());
        if (!hit) return;
        const std::size_t at = static_cast<std::size_t>(static_cast<const char*>(hit) - s.data());
        pos = at + quoted_key.size();
        if (at > 0 && s[at - 1] == '\\') continue;
        f(pos);
    }
}

bool is_hex(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// The string at s[i] == '"' as generated text: counted into `n` and `bytes` (only when it
// ends) the way generated_text documents. Returns the index past its closing quote, or npos.
std::size_t count_text_string(std::string_view s, std::size_t i, text_count& n,
                              std::size_t& bytes) noexcept {
    const char* p = s.data() + i + 1;
    const char* const end = s.data() + s.size();
    core::bytes::utf8_count c;
    for (;;) {
        p = core::bytes::find_either_counting(p, end, '"', '\\', c);
        if (p == end) return std::string_view::npos;
        if (*p == '"') {
            const std::size_t after = static_cast<std::size_t>(p - s.data()) + 1;
            n.ascii += c.ascii;
            n.other += c.other;
            bytes += after - i - 2;
            return after;
        }
        if (end - p < 2) return std::string_view::npos;
        if (p[1] == 'u') {
            ++c.other;  // \uXXXX: one character
            p += 2;
            for (int h = 0; h < 4 && p < end && is_hex(*p); ++h) ++p;
        } else {
            ++c.ascii;  // \n, \", ...: one character
            p += 2;
        }
    }
}

enum class member { other, text, usage, finish_reason, choices, type };

// The lengths of the keys classify tells apart, one bit each: a key of any other length is
// passed over before its value is looked at.
constexpr std::uint32_t member_lengths =
    1u << 4 | 1u << 5 | 1u << 7 | 1u << 8 | 1u << 9 | 1u << 12 | 1u << 13 | 1u << 17;

// The members scan_event looks at. Text: the members whose string values are generated
// text, in every API's shape.
member classify(std::string_view key) noexcept {
    // By length first: most keys of an event ("id", "object", "index", ...) are told apart
    // from these with one comparison. member_lengths lists the cases.
    switch (key.size()) {
        case 4:
            if (key == "text") return member::text;
            if (key == "type") return member::type;
            break;
        case 5:
            if (key == "delta") return member::text;
            if (key == "usage") return member::usage;
            break;
        case 7:
            if (key == "content") return member::text;
            if (key == "choices") return member::choices;
            break;
        case 8:
            if (key == "thinking") return member::text;
            break;
        case 9:
            if (key == "arguments") return member::text;
            break;
        case 12:
            if (key == "partial_json") return member::text;
            break;
        case 13:
            if (key == "finish_reason") return member::finish_reason;
            break;
        case 17:
            if (key == "reasoning_content") return member::text;
            break;
        default:
            break;
    }
    return member::other;
}

constexpr std::size_t none = std::string_view::npos;

// One more usage:null cut after f's, or the overflow mark once they are full.
void add_cut(event_facts& f, std::size_t begin, std::size_t end) noexcept {
    if (f.cut_count < event_facts::max_cuts)
        f.cuts[f.cut_count++] = {begin, end};
    else
        f.cuts_overflow = true;
}

// What the bytes before the first member with generated text (a string value) gave, and
// where that member's key begins (`at`): set only when nothing read for the members before
// it lay past it, so that those bytes alone give those facts in any event.
struct resume_point {
    std::size_t at = none;
    event_facts facts;
    std::size_t copied = 0;
};

// Where scan_from stopped: at the end (or where the text could not be read further), or,
// with StopAtText, just past the first member with generated text (a string value).
struct scan_stop {
    bool at_text = false;
    std::size_t value = none;  // that member's value: its opening quote
    std::size_t after = none;  // just past its closing quote
    std::size_t copied = 0;    // the end of the last usage:null cut before it
};

// scan_event from s[start] with the facts and the end of the last usage:null cut of the
// bytes before it. start is 0, a key's opening quote, or just past a string (whose quotes
// are last_quote and prev_quote). With Track, `resume` is set. `reached_back` (if given)
// is set when a key began before `start` (a string before it followed by a colon).
template <bool Track, bool StopAtText>
scan_stop scan_from(std::string_view s, std::size_t start, std::size_t last_quote,
                    std::size_t prev_quote, event_facts& f, std::size_t copied,
                    resume_point* resume, bool* reached_back = nullptr) noexcept {
    scan_stop stop;
    const std::size_t n = s.size();
    // With Track: the furthest byte read for a member's value so far, and whether the
    // resume point was decided.
    std::size_t reach = 0;
    bool decided = false;

    // One member: the key's quotes at s[open] and s[close], its colon at s[colon]. False
    // when the scan stops: the rest of the text cannot be read (a value cut short), or
    // StopAtText's member was read.
    auto member_at = [&](std::size_t open, std::size_t close, std::size_t colon) -> bool {
        for (std::size_t k = close + 1; k < colon; ++k)
            if (!is_ws(s[k])) return true;  // not a key: something between it and the colon
        const std::size_t v = skip_ws(s, colon + 1);
        if (v >= n) return false;
        const member m = classify(s.substr(open + 1, close - open - 1));
        // With Track, before the resume point: the furthest byte read for a value.
        [[maybe_unused]] const auto reads = [&](std::size_t last) {
            if constexpr (Track) reach = std::max(reach, last);
        };
        if constexpr (Track) {
            if (!decided && m == member::text && s[v] == '"') {
                decided = true;
                if (reach < open) {
                    resume->at = open;
                    resume->facts = f;
                    resume->copied = copied;
                }
            }
            reads(v);
        }
        switch (m) {
            case member::text:
                if (s[v] == '"') {
                    const std::size_t after = count_text_string(s, v, f.text, f.text_bytes);
                    if (after == none) return false;
                    if constexpr (StopAtText) {
                        stop = {true, v, after, copied};
                        return false;
                    }
                }
                break;
            case member::usage:
                if (s[v] == '{') {
                    reads(none);  // to the object's end, or past it
                    extracted_usage u;
                    bool anthropic = false;
                    std::uint64_t cache_creation = 0, cache_read = 0;
                    if (read_usage_object(s, v, u, 0, anthropic, cache_creation, cache_read) &&
                        u.any()) {
                        if (anthropic && u.prompt_tokens)
                            *u.prompt_tokens += cache_read + cache_creation;
                        f.usage = u;
                    }
                } else if (s.substr(v, 4) == "null") {
                    std::size_t end = v + 4;
                    reads(std::min(skip_ws(s, end), n));
                    if (end < n && s[end] != ',' && s[end] != '}' && !is_ws(s[end])) break;
                    if (open < copied) break;
                    // Take the comma before the member, else the one after it.
                    std::size_t begin = open;
                    std::size_t b = begin;
                    while (b > copied && is_ws(s[b - 1])) --b;
                    if (b > copied && s[b - 1] == ',') {
                        begin = b - 1;
                    } else {
                        const std::size_t j = skip_ws(s, end);
                        if (j < n && s[j] == ',') end = j + 1;
                    }
                    add_cut(f, begin, end);
                    copied = end;
                }
                break;
            case member::finish_reason:
                if (s[v] == '"') {
                    f.finish_reason = true;
                    const std::size_t end = end_of_string(s, v);
                    if (end == none) return false;
                    reads(end);
                }
                break;
            case member::choices:
                if (s[v] == '[' && v + 1 < n) {
                    const std::size_t j = skip_ws(s, v + 1);
                    reads(j);
                    if (j < n && s[j] == ']') f.empty_choices = true;
                }
                break;
            case member::type:
                if (s[v] == '"') {
                    const std::size_t end = end_of_string(s, v);
                    if (end == none) return false;
                    reads(end);
                    if (f.type.empty()) f.type = s.substr(v + 1, end - v - 2);
                }
                break;
            case member::other:
                break;
        }
        return true;
    };

    // 64 bytes at a time: the unescaped quotes tell which bytes lie inside strings; every
    // colon outside them ends a key, whose quotes are the last two before it. Only the
    // members are visited, in document order; the bytes between them are looked at once.
    // last_quote, prev_quote: the last two quotes before the current block.
    bool escape_carry = false;
    std::uint64_t inside_carry = 0;  // all ones when the last block ended inside a string
    char tail[64];
    for (std::size_t base = start; base < n; base += 64) {
        const char* p = s.data() + base;
        if (n - base < 64) {
            std::memset(tail, ' ', sizeof tail);
            std::memcpy(tail, p, n - base);
            p = tail;
        }
        core::bytes::block_bits b = core::bytes::classify64(p);
        if (b.backslash || escape_carry)
            b.quote &= ~core::bytes::escaped_bits(b.backslash, escape_carry);
        const std::uint64_t inside = core::bytes::prefix_xor(b.quote) ^ inside_carry;
        inside_carry = static_cast<std::uint64_t>(static_cast<std::int64_t>(inside) >> 63);
        for (std::uint64_t colons = b.colon & ~inside; colons; colons &= colons - 1) {
            const int c = std::countr_zero(colons);
            const std::uint64_t below = b.quote & ((std::uint64_t{1} << c) - 1);
            std::size_t open = prev_quote, close = last_quote;
            if (below) {
                const int hi = 63 - std::countl_zero(below);
                close = base + static_cast<std::size_t>(hi);
                const std::uint64_t rest = below & ~(std::uint64_t{1} << hi);
                open = rest ? base + static_cast<std::size_t>(63 - std::countl_zero(rest))
                            : last_quote;
            }
            if (open == none) continue;  // a colon before any string
            if (reached_back && open < start) *reached_back = true;
            const std::size_t length = close - open - 1;
            if (length >= 32 || !(member_lengths >> length & 1u)) continue;
            if (!member_at(open, close, base + static_cast<std::size_t>(c))) return stop;
        }
        if (b.quote) {
            const int hi = 63 - std::countl_zero(b.quote);
            const std::uint64_t rest = b.quote & ~(std::uint64_t{1} << hi);
            prev_quote =
                rest ? base + static_cast<std::size_t>(63 - std::countl_zero(rest)) : last_quote;
            last_quote = base + static_cast<std::size_t>(hi);
        }
    }
    return stop;
}

// Adds to `f` the facts of the bytes that follow the ones `f` was found in, kept as `g`
// with offsets from `base`: what a scan of the whole finds.
void append_kept(event_facts& f, const scan_memo::kept_facts& g, std::string_view s,
                 std::size_t base) noexcept {
    f.text.ascii += g.ascii;
    f.text.other += g.other;
    f.text_bytes += g.text_bytes;
    f.finish_reason = f.finish_reason || g.finish_reason;
    f.empty_choices = f.empty_choices || g.empty_choices;
    if (f.type.empty() && g.has_type) f.type = s.substr(base + g.type_at, g.type_size);
    for (std::size_t k = 0; k < g.cut_count; ++k)
        add_cut(f, base + g.cuts[k][0], base + g.cuts[k][1]);
    if (g.cuts_overflow) f.cuts_overflow = true;
}

// `g`, found in bytes of `s` from `base` (at most scan_memo::max_kept of them), kept.
// False for facts that are not kept: a usage.
bool keep(const event_facts& g, std::string_view s, std::size_t base,
          scan_memo::kept_facts& out) noexcept {
    if (g.usage) return false;
    out = {};
    out.ascii = g.text.ascii;
    out.other = g.text.other;
    out.text_bytes = g.text_bytes;
    out.finish_reason = g.finish_reason;
    out.empty_choices = g.empty_choices;
    out.has_type = g.type.data() != nullptr;
    if (out.has_type) {
        out.type_at =
            static_cast<std::uint16_t>(static_cast<std::size_t>(g.type.data() - s.data()) - base);
        out.type_size = static_cast<std::uint16_t>(g.type.size());
    }
    out.cut_count = static_cast<std::uint8_t>(g.cut_count);
    for (std::size_t k = 0; k < g.cut_count; ++k) {
        out.cuts[k][0] = static_cast<std::uint32_t>(g.cuts[k].begin - base);
        out.cuts[k][1] = static_cast<std::uint32_t>(g.cuts[k].end - base);
    }
    out.cuts_overflow = g.cuts_overflow;
    return true;
}

}  // namespace

event_facts scan_event(std::string_view s) noexcept {
    event_facts f;
    scan_from<false, false>(s, 0, none, none, f, 0, nullptr);
    return f;
}

event_facts scan_event(std::string_view s, scan_memo& memo) noexcept {
    // Up to the first text member and its value: from the kept start, or from the top. The
    // kept start runs to that member's value (its key, colon and opening quote included):
    // the same bytes mean the same facts, and the value to count right there.
    event_facts f;
    scan_stop stop;
    const std::size_t at = memo.prefix_len_;
    if (at != 0 && s.size() >= at && std::memcmp(s.data(), memo.bytes_.data(), at) == 0) {
        append_kept(f, memo.prefix_, s, 0);
        const std::size_t after = count_text_string(s, at - 1, f.text, f.text_bytes);
        if (after == none) return f;
        stop = {true, at - 1, after, memo.prefix_copied_};
    } else {
        resume_point resume;
        stop = scan_from<true, true>(s, 0, none, none, f, 0, &resume);
        const std::size_t old_len = memo.prefix_len_;
        memo.prefix_len_ = 0;
        if (resume.at != none && stop.at_text && stop.value < scan_memo::max_kept &&
            keep(resume.facts, s, 0, memo.prefix_)) {
            memo.prefix_len_ = static_cast<std::uint16_t>(stop.value + 1);
            memo.prefix_copied_ = static_cast<std::uint16_t>(resume.copied);
        }
        memo.bytes_.replace(0, old_len, s.data(), memo.prefix_len_);  // the rest stays
    }
    if (!stop.at_text) return f;

    // The rest, after that text: scanned as in one pass over the whole (outside a string,
    // its last two quotes those of the text's value). The same bytes as the last event's
    // rest give the same facts, unless a key began before them (the text's value followed
    // by a colon): such a rest is not kept.
    const std::size_t after = stop.after;
    const std::string_view rest = s.substr(after);
    if (memo.has_suffix_ && rest == std::string_view(memo.bytes_).substr(memo.prefix_len_)) {
        append_kept(f, memo.suffix_, s, after);
        return f;
    }
    event_facts g;
    bool reached_back = false;
    scan_from<false, false>(s, after, after - 1, stop.value, g, stop.copied, nullptr,
                            &reached_back);
    memo.bytes_.resize(memo.prefix_len_);
    memo.has_suffix_ =
        !reached_back && rest.size() <= scan_memo::max_kept && keep(g, s, after, memo.suffix_);
    if (memo.has_suffix_) memo.bytes_.append(rest);
    // g's facts follow f's (its cuts and type lie where they were found).
    f.text.ascii += g.text.ascii;
    f.text.other += g.text.other;
    f.text_bytes += g.text_bytes;
    f.finish_reason = f.finish_reason || g.finish_reason;
    f.empty_choices = f.empty_choices || g.empty_choices;
    if (g.usage) f.usage = g.usage;  // the last one
    if (f.type.empty() && g.type.data()) f.type = g.type;
    for (std::size_t k = 0; k < g.cut_count; ++k) add_cut(f, g.cuts[k].begin, g.cuts[k].end);
    if (g.cuts_overflow) f.cuts_overflow = true;
    return f;
}

std::optional<extracted_usage> find_usage(std::string_view json) noexcept {
    return scan_event(json).usage;
}

std::size_t generated_text_bytes(std::string_view json) noexcept {
    return scan_event(json).text_bytes;
}

text_count generated_text(std::string_view json) noexcept {
    return scan_event(json).text;
}

bool has_empty_choices(std::string_view json) noexcept {
    return scan_event(json).empty_choices;
}

std::size_t append_without_null_usage(std::string_view raw, std::string& out) {
    std::size_t removed = 0, copied = 0;
    for_each_key(raw, "\"usage\"", [&](std::size_t after) {
        const std::size_t key_at = after - 7;
        if (key_at < copied) return;
        std::size_t i = skip_ws(raw, after);
        if (i >= raw.size() || raw[i] != ':') return;
        i = skip_ws(raw, i + 1);
        if (raw.substr(i, 4) != "null") return;
        std::size_t end = i + 4;
        if (end < raw.size() && raw[end] != ',' && raw[end] != '}' && !is_ws(raw[end])) return;
        // Take the comma before the member, else the one after it.
        std::size_t begin = key_at;
        std::size_t b = begin;
        while (b > copied && is_ws(raw[b - 1])) --b;
        if (b > copied && raw[b - 1] == ',') {
            begin = b - 1;
        } else {
            const std::size_t j = skip_ws(raw, end);
            if (j < raw.size() && raw[j] == ',') end = j + 1;
        }
        out.append(raw.substr(copied, begin - copied));
        copied = end;
        ++removed;
    });
    out.append(raw.substr(copied));
    return removed;
}

}  // namespace tollgate::upstream

namespace tollgate::upstream {

std::size_t append_without_null_usage(std::string_view raw, std::string_view data,
                                      const event_facts& facts, std::string& out) {
    const auto at = reinterpret_cast<std::uintptr_t>(data.data());
    const auto from = reinterpret_cast<std::uintptr_t>(raw.data());
    if (facts.cuts_overflow || at < from || at + data.size() > from + raw.size())
        return append_without_null_usage(raw, out);
    const std::size_t offset = at - from;
    std::size_t copied = 0;
    for (std::size_t k = 0; k < facts.cut_count; ++k) {
        const auto& c = facts.cuts[k];
        out.append(raw.substr(copied, offset + c.begin - copied));
        copied = offset + c.end;
    }
    out.append(raw.substr(copied));
    return facts.cut_count;
}

}  // namespace tollgate::upstream
