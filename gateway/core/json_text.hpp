#pragma once
// json_text: the few JSON-writing helpers the gateway needs (JSONL lines, admin answers,
// error bodies). Header-only, allocation only through the caller's string; no
// JSON library because the output shapes are fixed and small.

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace tollgate::core::json_text {

// Appends `s` as the inside of a JSON string literal (no quotes). Control characters are
// escaped; bytes that are not well-formed UTF-8 (stray continuation bytes, overlongs,
// surrogates, truncated sequences) become U+FFFD, so the output is valid JSON for any
// input bytes.
inline void append_escaped(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    static constexpr std::string_view replacement = "\xEF\xBF\xBD";
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
                case '"':
                    out += "\\\"";
                    break;
                case '\\':
                    out += "\\\\";
                    break;
                case '\b':
                    out += "\\b";
                    break;
                case '\f':
                    out += "\\f";
                    break;
                case '\n':
                    out += "\\n";
                    break;
                case '\r':
                    out += "\\r";
                    break;
                case '\t':
                    out += "\\t";
                    break;
                default:
                    if (c < 0x20 || c == 0x7f) {
                        out += "\\u00";
                        out.push_back(hex[c >> 4]);
                        out.push_back(hex[c & 0xf]);
                    } else {
                        out.push_back(static_cast<char>(c));
                    }
            }
            ++i;
            continue;
        }
        // Multi-byte sequence: validate per RFC 3629 (Unicode Table 3-7).
        std::size_t len = 0;
        unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;  // no UTF-16 surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        }
        bool ok = len != 0 && i + len <= n;
        for (std::size_t k = 1; ok && k < len; ++k) {
            const auto b = static_cast<unsigned char>(s[i + k]);
            ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        }
        if (ok) {
            out.append(s.data() + i, len);
            i += len;
        } else {
            out += replacement;
            ++i;  // resynchronise on the next byte
        }
    }
}

// Appends `s` as a JSON string literal, quotes included (see append_escaped).
inline void append_string(std::string& out, std::string_view s) {
    out.push_back('"');
    append_escaped(out, s);
    out.push_back('"');
}

inline void append_uint(std::string& out, std::uint64_t v) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

inline void append_int(std::string& out, std::int64_t v) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// Shortest text that reads back as the same double ("12.5", "0.00015", "3"); NaN and
// infinities are not JSON numbers and become null.
inline void append_double(std::string& out, double v) {
    if (!std::isfinite(v)) {
        out += "null";
        return;
    }
    if (v == 0) v = 0;  // -0 prints as "0"
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// `v` with exactly `decimals` digits after the point, as printf's "%.*f" prints it (to_chars
// gives the same digits for a fraction of snprintf's cost); "0" with the decimals for
// what is not finite or not below 1e15 (no header or log field holds such a figure).
inline void append_fixed(std::string& out, double v, int decimals) {
    if (!std::isfinite(v) || std::fabs(v) >= 1e15) v = 0;
    // Most figures (a price, a duration in ms) are v·10^decimals < 10^12 with a remainder
    // far from one half: then the nearest integer, written with its point, is printf's
    // text, at a tenth of to_chars' cost. The product's error is below 1.2e-4, so a
    // remainder more than 1e-3 from one half rounds the same way as the exact value.
    static constexpr double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10};
    if (decimals >= 0 && decimals <= 10) {
        const double scaled = std::fabs(v) * pow10[decimals];
        const double whole = std::floor(scaled);
        const double rest = scaled - whole;
        if (scaled < 1e12 && std::fabs(rest - 0.5) > 1e-3) {
            std::uint64_t n = static_cast<std::uint64_t>(whole) + (rest > 0.5 ? 1 : 0);
            char buf[32];
            char* end = buf + sizeof buf;
            char* p = end;
            for (int i = 0; i < decimals; ++i) {
                *--p = static_cast<char>('0' + n % 10);
                n /= 10;
            }
            if (decimals > 0) *--p = '.';
            do {
                *--p = static_cast<char>('0' + n % 10);
                n /= 10;
            } while (n);
            if (std::signbit(v)) *--p = '-';
            out.append(p, end);
            return;
        }
    }
    char buf[48];
    const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, decimals);
    out.append(buf, r.ptr);
}

}  // namespace tollgate::core::json_text
