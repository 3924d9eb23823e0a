#pragma once
// The plain form of an HTTP/1.1 head's field lines, read without Beast (sans-io,
// header-only): what a client request's head (server::request_reader) and an upstream
// answer's head (upstream::response_parser) nearly always are. Anything else in a line
// (obs-text, control characters, a bare CR or LF, obs-fold, whitespace before the colon)
// is not read here: the caller then gives the whole head to Beast's parser, which reads it
// or refuses it as it always did. What is read here is read as Beast reads it: a token
// name, the value without the whitespace around it.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "gateway/core/byte_scan.hpp"

namespace tollgate::core::http_fields {

// RFC 9110 tchar: the bytes of a field name (Beast's is_token table).
inline constexpr std::array<bool, 256> token_bytes = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 'a' + 'A'] = true;
    for (const char c : std::string_view("!#$%&'*+-.^_`|~"))
        t[static_cast<unsigned char>(c)] = true;
    return t;
}();

// ASCII case-insensitive equality of a name or value read by next_field with `lower`, a
// constant of lower-case letters, digits and '-'. Eight bytes at a time with the 0x20 bit
// set: of the bytes such a name or value can hold (printable ASCII and HTAB), that maps
// only the upper-case letters onto the bytes `lower` holds.
inline bool is_named(std::string_view s, std::string_view lower) noexcept {
    if (s.size() != lower.size()) return false;
    std::size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
        std::uint64_t a, b;
        std::memcpy(&a, s.data() + i, 8);
        std::memcpy(&b, lower.data() + i, 8);
        if ((a | 0x2020202020202020u) != b) return false;
    }
    for (; i < s.size(); ++i)
        if ((s[i] | 0x20) != lower[i]) return false;
    return true;
}

// Printable ASCII, SP and HTAB from p on: where the run ends (a CR, another control
// character, DEL or non-ASCII byte, or end). Targets, reasons and values are scanned 16
// bytes at a time.
inline const char* printable_run(const char* p, const char* end) noexcept {
    for (;;) {
        p = bytes::find_unprintable(p, end, ' ');
        if (p == end || *p != '\t') return p;
        ++p;
    }
}

enum class line {
    field,  // name and value set, p past its CRLF
    end,    // the empty line: p past it
    other,  // not a plain field line: the head is Beast's to read
};

// The line at p: `field-name ":" OWS field-value OWS CRLF` with a token name and a value
// of printable ASCII, SP and HTAB; or the empty line that ends the head. [p, end) is
// (the rest of) a head that ends with its empty line, CRLF CRLF.
inline line next_field(const char*& p, const char* end, std::string_view& name,
                       std::string_view& value) noexcept {
    if (end - p < 2) return line::other;
    if (p[0] == '\r' && p[1] == '\n') {
        p += 2;
        return line::end;
    }
    // A line starting with SP or HTAB (obs-fold) has no name. The name's scan needs no
    // bound: the CR at the head's end is not a token byte.
    const char* q = p;
    while (token_bytes[static_cast<unsigned char>(*q)]) ++q;
    if (q == p || *q != ':') return line::other;
    name = std::string_view(p, static_cast<std::size_t>(q - p));
    ++q;
    while (q < end && (*q == ' ' || *q == '\t')) ++q;
    const char* const value_begin = q;
    q = printable_run(q, end);
    if (end - q < 2 || q[0] != '\r' || q[1] != '\n') return line::other;
    const char* value_end = q;
    while (value_end > value_begin && (value_end[-1] == ' ' || value_end[-1] == '\t')) --value_end;
    value = std::string_view(value_begin, static_cast<std::size_t>(value_end - value_begin));
    p = q + 2;
    return line::field;
}

// A Content-Length value as Beast reads a single one: digits only (leading zeros taken),
// here at most 18 of them so that nothing near overflow is decided here. False otherwise.
inline bool plain_length(std::string_view v, std::uint64_t& out) noexcept {
    if (v.empty() || v.size() > 18) return false;
    std::uint64_t n = 0;
    for (const char c : v) {
        if (c < '0' || c > '9') return false;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    out = n;
    return true;
}

// What a head's framing fields said, as Beast reads them.
struct framing {
    bool close = false, keep_alive = false, chunked = false;
    std::optional<std::uint64_t> length;
    // Beast's keep_alive(): HTTP/1.1 unless "close", HTTP/1.0 only with "keep-alive".
    bool keeps_alive(bool http11) const noexcept { return http11 ? !close : keep_alive; }
};

// One field line into `f`. False for a framing field in a form left to Beast: Upgrade,
// Proxy-Connection, a Connection other than close or keep-alive, a second or unusual
// Content-Length, and Transfer-Encoding unless `chunked_ok` and exactly "chunked", once.
inline bool note_framing(std::string_view name, std::string_view value, framing& f,
                         bool chunked_ok) noexcept {
    switch (name.size()) {
        case 7:
            return !is_named(name, "upgrade");
        case 10:
            if (!is_named(name, "connection")) return true;
            if (is_named(value, "close"))
                f.close = true;
            else if (is_named(value, "keep-alive"))
                f.keep_alive = true;
            else
                return false;
            return true;
        case 14: {
            if (!is_named(name, "content-length")) return true;
            std::uint64_t v = 0;
            if (f.length || !plain_length(value, v)) return false;
            f.length = v;
            return true;
        }
        case 16:
            return !is_named(name, "proxy-connection");
        case 17:
            if (!is_named(name, "transfer-encoding")) return true;
            if (!chunked_ok || f.chunked || !is_named(value, "chunked")) return false;
            f.chunked = true;
            return true;
        default:
            return true;
    }
}

}  // namespace tollgate::core::http_fields
