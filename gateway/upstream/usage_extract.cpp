#include "gateway/upstream/usage_extract.hpp"

#include <algorithm>
#include <cstring>
#include <initializer_list>

namespace tollgate::upstream {

namespace {

bool is_ws(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::size_t skip_ws(std::string_view s, std::size_t i) noexcept {
    while (i < s.size() && is_ws(s[i])) ++i;
    return i;
}

// Index just past the closing quote of the string starting at s[i] == '"', or npos.
std::size_t end_of_string(std::string_view s, std::size_t i) noexcept {
    for (++i; i < s.size(); ++i) {
        if (s[i] == '\\') {
            ++i;
            continue;
        }
        if (s[i] == '"') return i + 1;
    }
    return std::string_view::npos;
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

// The same for several keys in one pass: f(index of the key, position after its closing
// quote). Every key starts with a quote, so the candidates are the quotes of `s` (what
// memmem would find for each key separately, visited once for all of them).
template <class F>
void for_each_of_keys(std::string_view s, std::initializer_list<std::string_view> quoted_keys,
                      F&& f) noexcept {
    std::size_t pos = 0;
    while (pos < s.size()) {
        const void* hit = std::memchr(s.data() + pos, '"', s.size() - pos);
        if (!hit) return;
        const std::size_t at = static_cast<std::size_t>(static_cast<const char*>(hit) - s.data());
        pos = at + 1;
        if (at > 0 && s[at - 1] == '\\') continue;
        const std::string_view rest = s.substr(at);
        std::size_t k = 0;
        for (const auto key : quoted_keys) {
            if (rest.starts_with(key)) {
                pos = at + key.size();
                f(k, pos);
                break;
            }
            ++k;
        }
    }
}

// Calls f(position of its opening quote, position after its closing quote) for each
// string value of a text member.
template <class F>
void for_each_text_value(std::string_view json, F&& f) noexcept {
    // The members whose string values are generated text, in every API's shape.
    for_each_of_keys(json,
                     {"\"content\"", "\"arguments\"", "\"text\"", "\"reasoning_content\"",
                      "\"partial_json\"", "\"thinking\"", "\"delta\""},
                     [&](std::size_t, std::size_t after) {
                         std::size_t i = skip_ws(json, after);
                         if (i >= json.size() || json[i] != ':') return;
                         i = skip_ws(json, i + 1);
                         if (i >= json.size() || json[i] != '"') return;
                         const std::size_t end = end_of_string(json, i);
                         if (end != std::string_view::npos) f(i, end);
                     });
}

}  // namespace

std::optional<extracted_usage> find_usage(std::string_view json) noexcept {
    std::optional<extracted_usage> found;
    for_each_key(json, "\"usage\"", [&](std::size_t after) {
        std::size_t i = skip_ws(json, after);
        if (i >= json.size() || json[i] != ':') return;
        i = skip_ws(json, i + 1);
        if (i >= json.size() || json[i] != '{') return;
        extracted_usage u;
        bool anthropic = false;
        std::uint64_t cache_creation = 0, cache_read = 0;
        if (read_usage_object(json, i, u, 0, anthropic, cache_creation, cache_read) && u.any()) {
            if (anthropic && u.prompt_tokens) *u.prompt_tokens += cache_read + cache_creation;
            found = u;
        }
    });
    return found;
}

std::size_t generated_text_bytes(std::string_view json) noexcept {
    std::size_t total = 0;
    for_each_text_value(json, [&](std::size_t i, std::size_t end) { total += end - i - 2; });
    return total;
}

text_count generated_text(std::string_view json) noexcept {
    text_count n;
    for_each_text_value(json, [&](std::size_t i, std::size_t end) {
        for (std::size_t k = i + 1; k + 1 < end; ++k) {
            const auto c = static_cast<unsigned char>(json[k]);
            if (c == '\\' && k + 1 < end - 1 && json[k + 1] == 'u') {
                ++n.other;  // \uXXXX: one character
                k += 5;
            } else if (c == '\\') {
                ++n.ascii;  // \n, \", ...: one character
                ++k;
            } else if (c < 0x80) {
                ++n.ascii;
            } else if (c >= 0xC0) {
                ++n.other;
            }
        }
    });
    return n;
}

bool has_empty_choices(std::string_view json) noexcept {
    bool empty = false;
    for_each_key(json, "\"choices\"", [&](std::size_t after) {
        std::size_t i = skip_ws(json, after);
        if (i >= json.size() || json[i] != ':') return;
        i = skip_ws(json, i + 1);
        if (i + 1 < json.size() && json[i] == '[') {
            const std::size_t j = skip_ws(json, i + 1);
            if (j < json.size() && json[j] == ']') empty = true;
        }
    });
    return empty;
}

std::string_view first_string_member(std::string_view json, std::string_view quoted_key) noexcept {
    std::string_view found;
    bool done = false;
    for_each_key(json, quoted_key, [&](std::size_t after) {
        if (done) return;
        std::size_t i = skip_ws(json, after);
        if (i >= json.size() || json[i] != ':') return;
        i = skip_ws(json, i + 1);
        if (i >= json.size() || json[i] != '"') return;
        const std::size_t end = end_of_string(json, i);
        if (end == std::string_view::npos) return;
        found = json.substr(i + 1, end - i - 2);
        done = true;
    });
    return found;
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
