// Addresses and CIDR ranges (config/cidr.hpp): parsing, matching, IPv4-mapped IPv6, and
// the client address behind trusted proxies.
#define BOOST_TEST_MODULE cidr
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include "config/cidr.hpp"

using namespace tollgate::config;

namespace {

ip_address ip(const std::string& s) {
    const auto a = parse_ip(s);
    BOOST_TEST_REQUIRE(a.has_value(), s);
    return *a;
}

cidr range(const std::string& s) {
    const auto c = parse_cidr(s);
    BOOST_TEST_REQUIRE(c.has_value(), s);
    return *c;
}

std::vector<cidr> ranges(std::initializer_list<const char*> l) {
    std::vector<cidr> out;
    for (const char* s : l) out.push_back(range(s));
    return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(ranges_parse_and_match) {
    BOOST_TEST(contains(range("10.0.0.0/8"), ip("10.255.1.2")));
    BOOST_TEST(!contains(range("10.0.0.0/8"), ip("11.0.0.1")));
    BOOST_TEST(contains(range("192.168.1.0/25"), ip("192.168.1.127")));
    BOOST_TEST(!contains(range("192.168.1.0/25"), ip("192.168.1.128")));
    BOOST_TEST(contains(range("0.0.0.0/0"), ip("8.8.8.8")));
    BOOST_TEST(contains(range("127.0.0.1"), ip("127.0.0.1")));  // a bare address: /32
    BOOST_TEST(!contains(range("127.0.0.1"), ip("127.0.0.2")));
    BOOST_TEST(contains(range("2001:db8::/32"), ip("2001:db8:1::5")));
    BOOST_TEST(!contains(range("2001:db8::/32"), ip("2001:db9::1")));
    BOOST_TEST(contains(range("::1"), ip("::1")));
    // Host bits are cleared: 10.1.2.3/8 is 10.0.0.0/8.
    BOOST_TEST(contains(range("10.1.2.3/8"), ip("10.200.0.1")));
    // IPv4 never matches an IPv6 range and the other way round...
    BOOST_TEST(!contains(range("::/0"), ip("10.0.0.1")));
    BOOST_TEST(!contains(range("0.0.0.0/0"), ip("::1")));
    // ...but an IPv4-mapped IPv6 address (a dual-stack listener's IPv4 client) is IPv4.
    BOOST_TEST(contains(range("10.0.0.0/8"), ip("::ffff:10.1.2.3")));
    BOOST_TEST(to_string(ip("::ffff:10.1.2.3")) == "10.1.2.3");
    for (const char* bad : {"", "10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "2001:db8::/129",
                            "host.example", "10.0.0.0/8/8", "10.0.0.0/-1", "10.0.0.0/ 8"})
        BOOST_TEST(!parse_cidr(bad).has_value(), bad);
}

BOOST_AUTO_TEST_CASE(the_client_behind_trusted_proxies_is_the_last_untrusted_hop) {
    const auto trusted = ranges({"127.0.0.1/32", "10.0.0.0/8"});
    // Not from a trusted proxy: X-Forwarded-For is the client's own word, ignored.
    BOOST_TEST(to_string(client_address(ip("203.0.113.9"), "10.1.1.1", trusted)) == "203.0.113.9");
    // From a trusted proxy: the nearest hop it did not add itself.
    BOOST_TEST(to_string(client_address(ip("127.0.0.1"), "198.51.100.7", trusted)) ==
               "198.51.100.7");
    // A client that forges a first hop gains nothing: the last untrusted one counts.
    BOOST_TEST(to_string(client_address(ip("127.0.0.1"), "10.9.9.9, 198.51.100.7, 10.0.0.5",
                                        trusted)) == "198.51.100.7");
    // Every hop trusted: the first.
    BOOST_TEST(to_string(client_address(ip("127.0.0.1"), "10.0.0.7,10.0.0.5", trusted)) ==
               "10.0.0.7");
    // No header, or a hop that is not an address: the nearest address known.
    BOOST_TEST(to_string(client_address(ip("127.0.0.1"), "", trusted)) == "127.0.0.1");
    BOOST_TEST(to_string(client_address(ip("127.0.0.1"), "unknown, 10.0.0.5", trusted)) ==
               "10.0.0.5");
    // No trusted proxies: always the peer.
    BOOST_TEST(to_string(client_address(ip("127.0.0.1"), "198.51.100.7", {})) == "127.0.0.1");
}
