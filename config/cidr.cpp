#include "config/cidr.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace tollgate::config {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

std::optional<ip_address> parse_ip(std::string_view text) {
    text = trim(text);
    if (text.empty() || text.size() > 64) return std::nullopt;
    // [v6] as in a Forwarded-style hop
    if (text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
    const std::string s(text);
    ip_address a;
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
        a.v4 = true;
        return a;
    }
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
    static constexpr std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a.bytes.data(), mapped, 12) == 0) {
        std::memmove(a.bytes.data(), a.bytes.data() + 12, 4);
        std::fill(a.bytes.begin() + 4, a.bytes.end(), std::uint8_t{0});
        a.v4 = true;
    }
    return a;
}

std::optional<cidr> parse_cidr(std::string_view text) {
    text = trim(text);
    const auto slash = text.find('/');
    auto addr = parse_ip(text.substr(0, slash));
    if (!addr) return std::nullopt;
    const unsigned max = addr->v4 ? 32 : 128;
    unsigned prefix = max;
    if (slash != std::string_view::npos) {
        const auto p = text.substr(slash + 1);
        const auto r = std::from_chars(p.data(), p.data() + p.size(), prefix);
        if (p.empty() || r.ec != std::errc() || r.ptr != p.data() + p.size() || prefix > max)
            return std::nullopt;
    }
    cidr c;
    c.net = *addr;
    c.prefix = static_cast<std::uint8_t>(prefix);
    for (unsigned bit = prefix; bit < max; ++bit)
        c.net.bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
    c.text = std::string(text);
    return c;
}

bool contains(const cidr& range, const ip_address& a) noexcept {
    if (range.net.v4 != a.v4) return false;
    const unsigned full = range.prefix / 8, rest = range.prefix % 8;
    if (std::memcmp(range.net.bytes.data(), a.bytes.data(), full) != 0) return false;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xff00u >> rest);
    return (a.bytes[full] & mask) == range.net.bytes[full];
}

bool contains(const std::vector<cidr>& ranges, const ip_address& a) noexcept {
    return std::any_of(ranges.begin(), ranges.end(), [&](const cidr& c) { return contains(c, a); });
}

ip_address client_address(const ip_address& peer, std::string_view xff,
                          const std::vector<cidr>& trusted) {
    if (trusted.empty() || !contains(trusted, peer)) return peer;
    ip_address client = peer;
    // Right to left: each hop was added by the proxy in front of the next one.
    while (!xff.empty()) {
        const auto comma = xff.rfind(',');
        const auto hop = comma == std::string_view::npos ? xff : xff.substr(comma + 1);
        xff = comma == std::string_view::npos ? std::string_view{} : xff.substr(0, comma);
        const auto a = parse_ip(hop);
        if (!a) break;
        client = *a;
        if (!contains(trusted, *a)) break;
    }
    return client;
}

std::string to_string(const ip_address& a) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(a.v4 ? AF_INET : AF_INET6, a.bytes.data(), buf, sizeof buf);
    return buf;
}

}  // namespace tollgate::config
