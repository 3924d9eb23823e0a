#pragma once
// Byte scanning for the per-event path (sans-io, header-only): find the first of two bytes,
// and count a UTF-8 run's ASCII bytes and characters, 16 bytes at a time with SSE2 (every
// x86-64), 8 at a time elsewhere; and a JSON block's quotes, backslashes and colons as
// bit masks, 64 bytes at a time. A streamed answer's bytes are all looked at here (SSE
// line ends, JSON string ends, generated text): a byte loop costs ~5 instructions a byte,
// these well under one.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tollgate::core::bytes {

// Bits set in a 16-bit mask, inline (std::popcount is a library call without -mpopcnt).
inline int popcount16(unsigned x) noexcept {
    x = x - ((x >> 1) & 0x5555u);
    x = (x & 0x3333u) + ((x >> 2) & 0x3333u);
    x = (x + (x >> 4)) & 0x0F0Fu;
    return static_cast<int>((x + (x >> 8)) & 0x1Fu);
}

// The first byte in [p, end) equal to a or b; end if none.
inline const char* find_either(const char* p, const char* end, char a, char b) noexcept {
#if defined(__SSE2__)
    const __m128i va = _mm_set1_epi8(a), vb = _mm_set1_epi8(b);
    while (end - p >= 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const auto m = static_cast<unsigned>(
            _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, va), _mm_cmpeq_epi8(v, vb))));
        if (m) return p + std::countr_zero(m);
        p += 16;
    }
#endif
    for (; p < end; ++p)
        if (*p == a || *p == b) return p;
    return end;
}

// The first byte in [p, end) below `lo` or above '~' (DEL and every non-ASCII byte): with
// lo = '!' the end of a request-target, with lo = ' ' of a header value's printable run.
inline const char* find_unprintable(const char* p, const char* end, char lo) noexcept {
#if defined(__SSE2__)
    // Signed compares: 0x80-0xFF are negative, so below any printable `lo`.
    const __m128i vlo = _mm_set1_epi8(lo), del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const auto m = static_cast<unsigned>(
            _mm_movemask_epi8(_mm_or_si128(_mm_cmplt_epi8(v, vlo), _mm_cmpeq_epi8(v, del))));
        if (m) return p + std::countr_zero(m);
        p += 16;
    }
#endif
    for (; p < end; ++p) {
        const auto c = static_cast<unsigned char>(*p);
        if (c < static_cast<unsigned char>(lo) || c >= 0x7f) return p;
    }
    return end;
}

// The bytes in [p, end) equal to a or b. Each 16-byte block adds its hits to 16 byte
// counters (a compare gives -1 where it hits), summed every 255 blocks, before a counter
// could wrap: ~5 instructions a block where a popcount of the movemask took ~25.
inline std::size_t count_either(const char* p, const char* end, char a, char b) noexcept {
    std::size_t n = 0;
#if defined(__SSE2__)
    const __m128i va = _mm_set1_epi8(a), vb = _mm_set1_epi8(b), zero = _mm_setzero_si128();
    while (end - p >= 16) {
        const std::ptrdiff_t blocks = std::min<std::ptrdiff_t>((end - p) / 16, 255);
        const char* const stop = p + blocks * 16;
        __m128i counts = zero;
        for (; p != stop; p += 16) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            counts =
                _mm_sub_epi8(counts, _mm_or_si128(_mm_cmpeq_epi8(v, va), _mm_cmpeq_epi8(v, vb)));
        }
        const __m128i sums = _mm_sad_epu8(counts, zero);  // two 64-bit lanes
        n += static_cast<std::size_t>(_mm_cvtsi128_si32(sums)) +
             static_cast<std::size_t>(_mm_extract_epi16(sums, 4));
    }
#endif
    for (; p < end; ++p) n += *p == a || *p == b;
    return n;
}

// Just past the closing quote of the JSON string whose opening quote is p[-1]: the first
// quote in [p, end) not escaped by a backslash pair. nullptr if the string does not end.
inline const char* json_string_end(const char* p, const char* end) noexcept {
    for (;;) {
        p = find_either(p, end, '"', '\\');
        if (p == end || (*p == '\\' && end - p < 2)) return nullptr;
        if (*p == '"') return p + 1;
        p += 2;  // an escape pair
    }
}

// ASCII bytes and non-ASCII characters (UTF-8 lead bytes, >= 0xC0) of [p, end).
struct utf8_count {
    std::size_t ascii = 0;
    std::uint64_t other = 0;
};
inline void count_utf8(const char* p, const char* end, utf8_count& n) noexcept {
#if defined(__SSE2__)
    const __m128i below_lead = _mm_set1_epi8(static_cast<char>(0xBF));  // -65 signed
    while (end - p >= 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const auto high = static_cast<unsigned>(_mm_movemask_epi8(v));
        if (high) {
            // Signed, 0xC0..0xFF are -64..-1: above -65, and negative.
            const auto lead =
                static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpgt_epi8(v, below_lead))) & high;
            n.ascii += 16 - static_cast<std::size_t>(popcount16(high));
            n.other += static_cast<std::uint64_t>(popcount16(lead));
        } else {
            n.ascii += 16;
        }
        p += 16;
    }
#endif
    for (; p < end; ++p) {
        const auto c = static_cast<unsigned char>(*p);
        if (c < 0x80)
            ++n.ascii;
        else if (c >= 0xC0)
            ++n.other;
    }
}

// find_either(p, end, a, b), counting the bytes before the hit as count_utf8 does: one
// pass over a string value that is both skipped and counted.
inline const char* find_either_counting(const char* p, const char* end, char a, char b,
                                        utf8_count& n) noexcept {
#if defined(__SSE2__)
    const __m128i va = _mm_set1_epi8(a), vb = _mm_set1_epi8(b);
    const __m128i below_lead = _mm_set1_epi8(static_cast<char>(0xBF));
    while (end - p >= 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const auto m = static_cast<unsigned>(
            _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, va), _mm_cmpeq_epi8(v, vb))));
        // Only the bytes before the hit count.
        const unsigned take = m ? (1u << std::countr_zero(m)) - 1u : 0xFFFFu;
        const auto high = static_cast<unsigned>(_mm_movemask_epi8(v)) & take;
        const auto lead =
            static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpgt_epi8(v, below_lead))) & high;
        n.ascii += static_cast<std::size_t>(popcount16(take) - popcount16(high));
        n.other += static_cast<std::uint64_t>(popcount16(lead));
        if (m) return p + std::countr_zero(m);
        p += 16;
    }
#endif
    const char* hit = find_either(p, end, a, b);
    count_utf8(p, hit, n);
    return hit;
}

// JSON structure of one 64-byte block, one bit per byte (bit i for p[i]): the quotes, the
// backslashes and the colons in it. 64 bytes at a time (four SSE2 compares each), so a
// scanner steps from one structural byte to the next with bit arithmetic instead of
// scanning string by string.
struct block_bits {
    std::uint64_t quote = 0, backslash = 0, colon = 0;
};
inline block_bits classify64(const char* p) noexcept {
    block_bits b;
#if defined(__SSE2__)
    const __m128i vq = _mm_set1_epi8('"'), vb = _mm_set1_epi8('\\'), vc = _mm_set1_epi8(':');
    const auto bits = [&](const char* at, std::uint64_t& q, std::uint64_t& bs, std::uint64_t& c) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
        q = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vq)));
        bs = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vb)));
        c = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vc)));
    };
    std::uint64_t q0, q1, q2, q3, b0, b1, b2, b3, c0, c1, c2, c3;
    bits(p, q0, b0, c0);
    bits(p + 16, q1, b1, c1);
    bits(p + 32, q2, b2, c2);
    bits(p + 48, q3, b3, c3);
    b.quote = q0 | q1 << 16 | q2 << 32 | q3 << 48;
    b.backslash = b0 | b1 << 16 | b2 << 32 | b3 << 48;
    b.colon = c0 | c1 << 16 | c2 << 32 | c3 << 48;
#else
    for (int i = 0; i < 64; ++i) {
        const std::uint64_t bit = std::uint64_t{1} << i;
        if (p[i] == '"') b.quote |= bit;
        if (p[i] == '\\') b.backslash |= bit;
        if (p[i] == ':') b.colon |= bit;
    }
#endif
    return b;
}

// The bits of the bytes escaped by a backslash, given a block's backslashes: each
// backslash not itself escaped escapes the byte after it. `carry` says whether the
// block's first byte is escaped (the last block ended in an unpaired backslash); it is
// updated for the next block. A loop per escape: backslashes are rare in LLM output.
inline std::uint64_t escaped_bits(std::uint64_t backslash, bool& carry) noexcept {
    std::uint64_t escaped = 0;
    if (carry) {
        escaped = 1;
        backslash &= ~std::uint64_t{1};
    }
    carry = false;
    while (backslash) {
        const int i = std::countr_zero(backslash);
        if (i == 63) {
            carry = true;
            break;
        }
        escaped |= std::uint64_t{1} << (i + 1);
        backslash &= ~(std::uint64_t{3} << i);  // the escaped byte escapes nothing
    }
    return escaped;
}

// Bit i set when an odd number of bits 0..i of x are set: with x the unescaped quotes,
// the bytes inside strings (opening quote included, closing quote not).
inline std::uint64_t prefix_xor(std::uint64_t x) noexcept {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    return x;
}

}  // namespace tollgate::core::bytes
