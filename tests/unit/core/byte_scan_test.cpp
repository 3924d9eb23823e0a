#define BOOST_TEST_MODULE byte_scan
#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <random>
#include <string>

#include "gateway/core/byte_scan.hpp"

namespace bytes = tollgate::core::bytes;

namespace {

// Random bytes where the looked-for ones are common (a third of them), so every lane of a
// 16-byte block is hit many times over the 255 blocks a counter may hold.
std::string sample(std::mt19937& rng, std::size_t n) {
    static constexpr char alphabet[] = {'[', '{', '"', '\\', 'a', ' ', '\x80', '\xC3', '\xFF'};
    std::uniform_int_distribution<std::size_t> pick(0, sizeof alphabet - 1);
    std::string s(n, ' ');
    for (char& c : s) c = alphabet[pick(rng)];
    return s;
}

std::size_t naive_count(const char* p, const char* end, char a, char b) {
    std::size_t n = 0;
    for (; p < end; ++p) n += *p == a || *p == b;
    return n;
}

}  // namespace

// Lengths around the block size and past 255 blocks (4,080 bytes), where the byte counters
// are summed before they wrap, and every start offset within a block.
BOOST_AUTO_TEST_CASE(count_either_counts_as_a_byte_loop) {
    std::mt19937 rng(7);
    for (const std::size_t n : {0, 1, 15, 16, 17, 31, 32, 255, 4079, 4080, 4081, 4096, 8191,
                                8192 + 16 * 255 + 3, 70000}) {
        const std::string s = sample(rng, n + 16);
        for (std::size_t off = 0; off < 16; off += 5) {
            const char* p = s.data() + off;
            BOOST_TEST(bytes::count_either(p, p + n, '[', '{') == naive_count(p, p + n, '[', '{'),
                       "length " << n << " offset " << off);
        }
    }
    // Every byte a hit: the most a counter can take.
    const std::string all(16 * 600 + 9, '{');
    BOOST_TEST(bytes::count_either(all.data(), all.data() + all.size(), '[', '{') == all.size());
}

BOOST_AUTO_TEST_CASE(find_either_and_count_utf8_agree_with_a_byte_loop) {
    std::mt19937 rng(11);
    for (std::size_t n = 0; n < 100; ++n) {
        const std::string s = sample(rng, n);
        const char* end = s.data() + s.size();
        const char* hit = s.data();
        while (hit < end && *hit != '"' && *hit != '\\') ++hit;
        BOOST_TEST(bytes::find_either(s.data(), end, '"', '\\') == hit);

        std::size_t ascii = 0, other = 0;
        for (const char c : s) {
            const auto u = static_cast<unsigned char>(c);
            ascii += u < 0x80;
            other += u >= 0xC0;
        }
        bytes::utf8_count count;
        bytes::count_utf8(s.data(), end, count);
        BOOST_TEST(count.ascii == ascii);
        BOOST_TEST(count.other == other);
    }
}
