#include "config/digest.hpp"

#include <openssl/evp.h>

namespace tollgate::config {

namespace {

// EVP_Digest(..., EVP_sha256()) looks the algorithm up in OpenSSL's provider store and
// builds a context on every call: most of the cost of hashing a 40-byte key. Each thread
// keeps one context, and the algorithm is fetched once.
struct hasher {
    EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~hasher() {
        EVP_MD_CTX_free(ctx);
        EVP_MD_free(md);
    }
    bool hash(std::string_view data, sha256_digest& d) noexcept {
        unsigned int len = 0;
        return md && ctx && EVP_DigestInit_ex2(ctx, md, nullptr) == 1 &&
               EVP_DigestUpdate(ctx, data.data(), data.size()) == 1 &&
               EVP_DigestFinal_ex(ctx, d.data(), &len) == 1 && len == d.size();
    }
};

}  // namespace

sha256_digest sha256(std::string_view data) noexcept {
    sha256_digest d{};
    thread_local hasher h;
    if (!h.hash(data, d)) {
        unsigned int len = 0;
        EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr);
    }
    return d;
}

std::string sha256_hex(std::string_view data) {
    static constexpr char hex[] = "0123456789abcdef";
    const auto d = sha256(data);
    std::string out;
    out.reserve(d.size() * 2);
    for (unsigned char c : d) {
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
    }
    return out;
}

}  // namespace tollgate::config
