#pragma once
// IP addresses and CIDR ranges, for `keys[].allowed_cidrs` (the ip_allow policy) and
// `server.trusted_proxies`. IPv4 and IPv6; an IPv4-mapped IPv6 address (::ffff:a.b.c.d,
// as a dual-stack listener reports IPv4 clients) is the IPv4 address.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::config {

struct ip_address {
    std::array<std::uint8_t, 16> bytes{};  // IPv4 in the first 4
    bool v4 = false;
    bool operator==(const ip_address&) const = default;
};

struct cidr {
    ip_address net;           // host bits cleared
    std::uint8_t prefix = 0;  // 0-32 (IPv4) or 0-128 (IPv6)
    std::string text;         // as written, for messages and GET /admin/keys
    bool operator==(const cidr& o) const { return net == o.net && prefix == o.prefix; }
};

std::optional<ip_address> parse_ip(std::string_view text);
// "10.0.0.0/8", "2001:db8::/32"; a bare address is a /32 or /128. Host bits past the
// prefix are cleared (10.1.2.3/8 is 10.0.0.0/8).
std::optional<cidr> parse_cidr(std::string_view text);

bool contains(const cidr& range, const ip_address& a) noexcept;
bool contains(const std::vector<cidr>& ranges, const ip_address& a) noexcept;

// The client's address: the peer's, or, when the peer is one of `trusted` proxies, the
// last X-Forwarded-For hop that is not a trusted proxy (the nearest one a trusted proxy
// saw). All hops trusted: the first. A hop that is not an address ends the walk there:
// the last trusted hop's address is kept.
ip_address client_address(const ip_address& peer, std::string_view x_forwarded_for,
                          const std::vector<cidr>& trusted);

std::string to_string(const ip_address& a);

}  // namespace tollgate::config
